//! The reference implementation's clients against Avix (issue 19): their exact request
//! frames, replayed on a raw WebSocket that negotiates no subprotocol (as they connect), and
//! every reply parsed with the reference client's own types, re-declared here from its code
//! (github avadhpatel/avix, `crates/avix-client-core/src/atp/types.rs`, `…/commands.rs`,
//! `crates/avix-core/src/gateway/atp/error.rs`, `crates/avix-cli/src/util.rs`) as documented
//! facts: field names, which are optional, the closed set of error codes.

use std::time::Duration;

use avix_proto::Role;
use avix_proto::agent::{HilRequest, ProcState};
use futures_util::SinkExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::atp::{next_text, raw_with, start};
use crate::common::{TestKernel, wait_state};

/// `AtpErrorCode`: serde SCREAMING_SNAKE_CASE of `Eauth`… — a code outside this set makes
/// the whole reply unparsable for the reference client (it then times out).
#[derive(Debug, Deserialize, PartialEq)]
#[allow(clippy::upper_case_acronyms, dead_code)]
enum RefCode {
    EAUTH,
    EEXPIRED,
    ESESSION,
    EPERM,
    ENOTFOUND,
    ECONFLICT,
    EUSED,
    ELIMIT,
    EPARSE,
    EINTERNAL,
    EUNAVAIL,
}

/// `AtpError`.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct RefError {
    code: RefCode,
    message: String,
    detail: Option<Value>,
}

/// `Reply` (its `type` is skipped when deserializing).
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct RefReply {
    id: String,
    ok: bool,
    code: Option<String>,
    message: Option<String>,
    body: Option<Value>,
    error: Option<RefError>,
}

/// `ToolListResponse` (`sys tool-list`).
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct RefToolList {
    total: usize,
    available: usize,
    unavailable: usize,
    #[serde(default)]
    tools: Vec<Value>,
}

/// `Event`: its name must be one of `EventKind`'s; `sessionId` optional; any body (its
/// `EventBody` is untagged with a `Raw(Value)` fallback).
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct RefEvent {
    event: RefEventKind,
    #[serde(rename = "sessionId")]
    session_id: Option<String>,
    seq: u64,
    body: Value,
}

/// `EventKind`.
#[derive(Debug, Deserialize, PartialEq)]
#[allow(dead_code)]
enum RefEventKind {
    #[serde(rename = "session.ready")]
    SessionReady,
    #[serde(rename = "session.closing")]
    SessionClosing,
    #[serde(rename = "token.expiring")]
    TokenExpiring,
    #[serde(rename = "agent.spawned")]
    AgentSpawned,
    #[serde(rename = "agent.output")]
    AgentOutput,
    #[serde(rename = "agent.status")]
    AgentStatus,
    #[serde(rename = "agent.tool_call")]
    AgentToolCall,
    #[serde(rename = "agent.tool_result")]
    AgentToolResult,
    #[serde(rename = "agent.exit")]
    AgentExit,
    #[serde(rename = "proc.start")]
    ProcStart,
    #[serde(rename = "proc.signal")]
    ProcSignal,
    #[serde(rename = "hil.request")]
    HilRequest,
    #[serde(rename = "hil.resolved")]
    HilResolved,
    #[serde(rename = "fs.changed")]
    FsChanged,
    #[serde(rename = "tool.changed")]
    ToolChanged,
    #[serde(rename = "cron.fired")]
    CronFired,
    #[serde(rename = "sys.service")]
    SysService,
    #[serde(rename = "sys.alert")]
    SysAlert,
    #[serde(rename = "agent.output.chunk")]
    AgentOutputChunk,
}

/// `AgentSpawnedBody`.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct RefSpawned {
    pid: String,
    name: String,
    goal: String,
    #[serde(rename = "sessionId")]
    session_id: String,
}

/// `AgentStatusBody` (`status` one of running paused stopped crashed).
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct RefStatus {
    pid: String,
    status: RefAgentStatus,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum RefAgentStatus {
    Running,
    Paused,
    Stopped,
    Crashed,
}

/// `HilRequestBody`.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct RefHilRequest {
    hil_id: String,
    pid: u64,
    session_id: String,
    approval_token: String,
    hil_type: String,
    tool: Option<String>,
    reason: Option<String>,
    prompt: String,
    timeout_secs: u32,
    urgency: String,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The reference client's connection: its frames in, every frame out parsed with its types.
struct RefClient {
    ws: Ws,
    token: String,
    /// Every event frame received, as the reference client parsed it.
    events: Vec<RefEvent>,
}

impl RefClient {
    /// Sends a command as the reference's `Cmd::new` builds it and parses the reply as its
    /// `Reply`; event frames met on the way must parse as its `Event`.
    async fn call(&mut self, domain: &str, op: &str, body: Value) -> RefReply {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = format!(
            "00000000-0000-4000-8000-{:012x}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let frame = json!({"type": "cmd", "domain": domain, "op": op, "id": id, "token": self.token, "body": body});
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
        loop {
            let text = tokio::time::timeout(Duration::from_secs(10), next_text(&mut self.ws))
                .await
                .expect("a reply within 10 s");
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["type"] == "event" {
                let e: RefEvent = serde_json::from_value(v).unwrap_or_else(|e| {
                    panic!("the reference client cannot parse the event {text}: {e}")
                });
                self.events.push(e);
                continue;
            }
            if v["type"] != "reply" || v["id"] != id.as_str() {
                continue;
            }
            return serde_json::from_value(v).unwrap_or_else(|e| {
                panic!("{domain} {op}: the reference client cannot parse {text}: {e}")
            });
        }
    }

    async fn ok(&mut self, domain: &str, op: &str, body: Value) -> Value {
        let r = self.call(domain, op, body).await;
        assert!(r.ok, "{domain} {op}: {r:?}");
        r.body.unwrap_or(Value::Null)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_client_s_frames_get_replies_it_parses() {
    let a = start().await;
    let ipc = avix_ipc::Ipc::start(&a.t.kernel).unwrap();
    let key = a.t.add_user("bob", Role::User, 1101);
    let bob = avix_proto::UserName::new("bob").unwrap();
    let login = avix_client::login(&a.config("bob", &key)).await.unwrap();
    let token = login.token.clone();
    let ws = raw_with(&a, &token, None).await;
    let mut c = RefClient {
        ws,
        token,
        events: Vec::new(),
    };
    // As its client does right after connecting.
    c.ws.send(Message::text(
        json!({"type": "subscribe", "events": ["*"]}).to_string(),
    ))
    .await
    .unwrap();

    // auth whoami: `{identity, role, sessionId}`.
    let me = c.ok("auth", "whoami", json!({})).await;
    assert_eq!(
        (&me["identity"], &me["role"]),
        (&json!("bob"), &json!("user"))
    );
    assert!(me["sessionId"].is_string(), "{me}");

    // agent spawn: `{name, goal, capabilities}`, reads `pid` as a u64.
    let spawned = c
        .ok(
            "proc",
            "spawn",
            json!({"name": "assistant", "goal": "keep notes", "capabilities": []}),
        )
        .await;
    let pid = spawned["pid"].as_u64().expect("pid is a number");
    let p = a.t.kernel.procs().get(pid.into()).unwrap();
    crate::common::wait_exit(&p).await;

    // agent list: an array of processes with pid, name, status, goal.
    let mut req = TestKernel::req("assistant", "wait for me", None);
    req.interactive = Some(true);
    let live =
        a.t.kernel
            .spawn(&a.t.caller(&bob), req, None)
            .await
            .unwrap();
    wait_state(&live, ProcState::Waiting, Some("input")).await;
    let list = c.ok("proc", "list", json!({})).await;
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["pid"] == live.pid.get())
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(
        (&entry["name"], &entry["status"], &entry["goal"]),
        (
            &json!("assistant"),
            &json!("waiting"),
            &json!("wait for me")
        )
    );

    // agent catalog: `list-installed {username: ""}` (empty: the caller).
    let cat = c
        .ok("proc", "list-installed", json!({"username": ""}))
        .await;
    let names: Vec<&str> = cat
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert!(c["version"].is_string() && c["scope"].is_string(), "{c}");
            c["name"].as_str().unwrap()
        })
        .collect();
    assert!(names.contains(&"assistant"), "{cat}");

    // agent history: `invocation-list {username, agent_name?}`; format_history reads id,
    // agentName, status, spawnedAt, tokensConsumed.
    let hist = c
        .ok(
            "proc",
            "invocation-list",
            json!({"username": "", "agent_name": "assistant"}),
        )
        .await;
    let rec = hist
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["pid"] == pid)
        .unwrap_or_else(|| panic!("{hist}"))
        .clone();
    assert_eq!(rec["agentName"], "assistant");
    assert_eq!(rec["status"], "completed");
    let tokens = rec["tokens"]["inputTokens"].as_u64().unwrap()
        + rec["tokens"]["outputTokens"].as_u64().unwrap();
    assert!(rec["spawnedAt"].is_string() && tokens > 0, "{rec}");
    assert_eq!(rec["tokensConsumed"], tokens, "{rec}");
    let id = rec["id"].as_str().unwrap().to_owned();

    // agent show: `invocation-get {id}`; format_invocation reads the record's fields and
    // `conversation[{role, content}]`.
    let inv = c.ok("proc", "invocation-get", json!({"id": id})).await;
    assert_eq!(
        (&inv["id"], &inv["goal"]),
        (&json!(id), &json!("keep notes"))
    );
    let conv = inv["conversation"].as_array().expect("a conversation");
    assert!(
        conv.iter()
            .any(|m| m["role"] == "user" && m["content"] == "keep notes"),
        "{inv}"
    );
    let conv = c
        .ok("proc", "invocation-conversation", json!({"id": id}))
        .await;
    assert!(conv.as_array().is_some_and(|c| !c.is_empty()), "{conv}");
    // A missing one: ENOTFOUND, which get_invocation turns into "not found".
    let r = c
        .call(
            "proc",
            "invocation-get",
            json!({"id": "00000000-0000-0000-0000-000000000000"}),
        )
        .await;
    assert_eq!(r.error.unwrap().code, RefCode::ENOTFOUND);

    // session list / show.
    let sessions = c.ok("proc", "session-list", json!({"username": ""})).await;
    let s = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == rec["session"])
        .unwrap_or_else(|| panic!("{sessions}"))
        .clone();
    assert!(s["username"] == "bob" && s["status"].is_string(), "{s}");
    let shown = c.ok("proc", "session-get", json!({"id": s["id"]})).await;
    // session show reads id, title, goal, status, origin_agent, primary_agent, participants.
    assert_eq!(shown["id"], s["id"]);
    assert_eq!(
        (
            &shown["goal"],
            &shown["primary_agent"],
            &shown["participants"]
        ),
        (
            &json!("keep notes"),
            &json!("assistant"),
            &json!(["assistant"])
        ),
        "{shown}"
    );

    // hil approve / deny: SIGRESUME with {hilId, approvalToken, decision}.
    a.t.script(
        "gated",
        "  turns:\n    - toolCalls: [{name: fs/delete, args: {path: x}}]\n    - toolCalls: [{name: fs/delete, args: {path: y}}]\n    - text: done\n",
    );
    let gated =
        a.t.kernel
            .spawn(
                &a.t.caller(&bob),
                TestKernel::req("assistant", "tidy", Some("gated")),
                None,
            )
            .await
            .unwrap();
    let avix = a.client("bob", &key).await;
    let mut answered: Vec<avix_proto::HilId> = Vec::new();
    for decision in ["approved", "denied"] {
        let hil = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let h: Vec<HilRequest> = avix.call_as("hil", "list", json!({})).await.unwrap();
                if let Some(h) = h
                    .into_iter()
                    .find(|h| h.pid == gated.pid && !answered.contains(&h.id))
                {
                    return h;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap();
        c.ok(
            "signal",
            "send",
            json!({"pid": gated.pid, "signal": "SIGRESUME",
                   "payload": {"hilId": hil.id, "approvalToken": "t", "decision": decision}}),
        )
        .await;
        answered.push(hil.id.clone());
        // Answered once: a second answer is a conflict the client can parse.
        let r = c
            .call(
                "signal",
                "send",
                json!({"pid": gated.pid, "signal": "SIGRESUME",
                   "payload": {"hilId": hil.id, "approvalToken": "t", "decision": decision}}),
            )
            .await;
        assert!(!r.ok);
        assert!(
            matches!(
                r.error.unwrap().code,
                RefCode::ECONFLICT | RefCode::ENOTFOUND
            ),
            "an answered approval"
        );
    }

    // agent kill: `signal send {pid, signal: SIGKILL, payload: null}`.
    c.ok(
        "signal",
        "send",
        json!({"pid": live.pid, "signal": "SIGKILL", "payload": null}),
    )
    .await;
    crate::common::wait_exit(&live).await;

    // service list (an array is one of the two shapes it reads) and tool list.
    let services = c.ok("sys", "service-list", json!({})).await;
    assert!(services.is_array() || services.is_object(), "{services}");
    let tools: RefToolList =
        serde_json::from_value(c.ok("sys", "tool-list", json!({})).await).unwrap();
    assert!(tools.total > 0 && tools.total == tools.available + tools.unavailable);
    assert!(tools.tools.iter().any(|t| t["name"] == "fs/read"));

    // service start|stop NAME: `signal send {name, signal}` reaches the service control
    // (which is for operators: bob is a user).
    let r = c
        .call(
            "signal",
            "send",
            json!({"name": "exec", "signal": "SIGSTOP"}),
        )
        .await;
    let e = r.error.unwrap();
    assert_eq!(e.code, RefCode::EPERM);
    assert!(e.message.contains("controlling services"), "{}", e.message);

    // service install from a directory: Avix's service install (for admins).
    let r = c
        .call(
            "proc",
            "package/install-service",
            json!({"source": "file:///tmp/x", "scope": "system", "version": "latest",
                   "checksum": null, "no_verify": false, "session_id": null}),
        )
        .await;
    let e = r.error.unwrap();
    assert_eq!(e.code, RefCode::EPERM);
    assert!(e.message.contains("installing services"), "{}", e.message);
    let r = c
        .call(
            "proc",
            "package/install-service",
            json!({"source": "github:someone/svc"}),
        )
        .await;
    assert_eq!(r.error.unwrap().code, RefCode::EPARSE);

    // Errors stay parsable, with Avix's precise code kept in the message.
    let r = c.call("proc", "explode", json!({})).await;
    let e = r.error.unwrap();
    assert_eq!(e.code, RefCode::ENOTFOUND);
    assert!(e.message.starts_with("ENOSYS: "), "{}", e.message);
    let r = c.call("proc", "kill", json!({"pid": "many"})).await;
    let e = r.error.unwrap();
    assert_eq!(e.code, RefCode::EPARSE);
    assert!(e.message.starts_with("EINVAL: "), "{}", e.message);
    let r = c.call("proc", "kill", json!({"pid": 999_999})).await;
    assert_eq!(r.error.unwrap().code, RefCode::ENOTFOUND);
    // Events: every frame received parsed as its `Event` (checked in `call`); the bodies its
    // UI matches on parse as its types.
    let kinds = |k: RefEventKind| c.events.iter().filter(move |e| e.event == k);
    let spawned: Vec<RefSpawned> = kinds(RefEventKind::AgentSpawned)
        .map(|e| serde_json::from_value(e.body.clone()).unwrap())
        .collect();
    assert!(
        spawned
            .iter()
            .any(|s| s.pid == pid.to_string() && s.name == "assistant" && s.goal == "keep notes"),
        "{spawned:?}"
    );
    let statuses = kinds(RefEventKind::AgentStatus).count();
    assert!(statuses > 0);
    for e in kinds(RefEventKind::AgentStatus) {
        let _: RefStatus = serde_json::from_value(e.body.clone()).unwrap();
    }
    let hil: Vec<RefHilRequest> = kinds(RefEventKind::HilRequest)
        .map(|e| serde_json::from_value(e.body.clone()).unwrap())
        .collect();
    assert_eq!(hil.len(), 2, "{hil:?}");
    assert!(
        hil.iter()
            .all(|h| h.pid == gated.pid.get() && h.tool.as_deref() == Some("fs/delete"))
    );
    assert!(kinds(RefEventKind::AgentOutput).count() > 0);
    ipc.shutdown().await;
}
