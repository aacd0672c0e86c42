//! Compatibility with the reference implementation's clients (its CLI, TUI and desktop app):
//! one translation table from their operations and bodies to Avix's, and from Avix's replies
//! and errors to what they read. Used only on connections that did not negotiate the
//! `avix.atp.v1` subprotocol (the reference clients never do); Avix's own clients see Avix's
//! operations, shapes and codes unchanged. Replies only gain fields, never lose Avix's.
//! The table is documented in docs/atp.md ("Compatibility with the reference clients").

use avix_proto::atp::{AtpError, ErrorCode, EventFrame, ServerFrame};
use serde_json::{Map, Value, json};

/// How to reshape the reply of a translated command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// As Avix answers (with the reference's field names added where they differ).
    Same,
    /// `{ok: true}` added.
    Ok,
    /// A process list: each entry gains `name` and `status`.
    Procs,
    /// One process status: `name` and `status` added.
    Proc,
    /// Invocation records: `agentName`, `status`, `tokensConsumed`… added.
    Records,
    /// One invocation: the record's fields, plus `conversation` as `{role, content}` entries.
    Invocation,
    /// Only the conversation, as `{role, content}` entries.
    Conversation,
    /// Session records: `username`, `status`, `spawnedAt`… added.
    Sessions,
    /// One session record.
    Session,
    /// `{deleted: <id>}` added (the id asked for).
    Deleted,
    /// The tool list as `{total, available, unavailable, tools}`.
    Tools,
    /// The spawn reply: `status: "running"` added.
    Spawned,
    /// `auth whoami`: `identity` added.
    WhoAmI,
}

/// A command as Avix reads it.
#[derive(Debug)]
pub(crate) struct Translated {
    pub(crate) domain: String,
    pub(crate) op: String,
    pub(crate) body: Value,
    pub(crate) shape: Shape,
    /// Keep only records of this session (`invocation-list {session_id}`).
    session: Option<String>,
    /// The id a `session-delete` named.
    deleted: Option<String>,
}

fn bad(message: impl Into<String>) -> AtpError {
    AtpError::new(ErrorCode::EINVAL, message)
}

fn take(body: &mut Map<String, Value>, key: &str) -> Option<Value> {
    body.remove(key).filter(|v| !v.is_null())
}

/// Avix's `{user?}` from the reference's `username` (`""` means "the caller").
fn user(body: &mut Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(u) = take(body, "username").filter(|v| v.as_str() != Some("")) {
        out.insert("user".into(), u);
    }
    out
}

/// Translates a reference command into Avix's. Commands Avix knows as they are pass through
/// (their fields are Avix's already).
pub(crate) fn request(domain: &str, op: &str, body: Value) -> Result<Translated, AtpError> {
    let mut b = match body {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        other => return Err(bad(format!("the body must be an object, not {other}"))),
    };
    let t = |domain: &str, op: &str, body: Value, shape: Shape| Translated {
        domain: domain.into(),
        op: op.into(),
        body,
        shape,
        session: None,
        deleted: None,
    };
    let out = match (domain, op) {
        ("proc", "spawn") => {
            let mut out = Map::new();
            let agent = take(&mut b, "agent").or_else(|| take(&mut b, "name"));
            out.insert("agent".into(), agent.unwrap_or(Value::Null));
            if let Some(g) = take(&mut b, "goal") {
                out.insert("goal".into(), g);
            }
            // The reference's `capabilities` narrow the tools like Avix's `tools`.
            match take(&mut b, "capabilities").or_else(|| take(&mut b, "tools")) {
                Some(Value::Array(a)) if a.is_empty() => {}
                Some(v) => {
                    out.insert("tools".into(), v);
                }
                None => {}
            }
            for (from, to) in [
                ("session_id", "session"),
                ("session", "session"),
                ("model", "model"),
                ("interactive", "interactive"),
            ] {
                if let Some(v) = take(&mut b, from).filter(|v| v.as_str() != Some("")) {
                    out.insert(to.into(), v);
                }
            }
            t("proc", "spawn", Value::Object(out), Shape::Spawned)
        }
        ("proc", "list") => t("proc", "list", Value::Object(b), Shape::Procs),
        ("proc", "kill") => {
            let pid = take(&mut b, "pid").or_else(|| take(&mut b, "id"));
            t("proc", "kill", json!({"pid": pid}), Shape::Ok)
        }
        ("proc", "stat") => {
            let pid = take(&mut b, "pid").or_else(|| take(&mut b, "id"));
            t("proc", "show", json!({"pid": pid}), Shape::Proc)
        }
        ("proc", "pause" | "resume") => {
            let pid = take(&mut b, "pid").or_else(|| take(&mut b, "id"));
            let signal = if op == "pause" {
                "SIGPAUSE"
            } else {
                "SIGRESUME"
            };
            t(
                "signal",
                "send",
                json!({"pid": pid, "signal": signal}),
                Shape::Ok,
            )
        }
        ("proc", "list-installed") => {
            let out = user(&mut b);
            t("proc", "catalog", Value::Object(out), Shape::Same)
        }
        ("proc", "invocation-list") => {
            let mut out = user(&mut b);
            if let Some(a) = take(&mut b, "agent_name") {
                out.insert("agent".into(), a);
            }
            let mut tr = t("proc", "history", Value::Object(out), Shape::Records);
            tr.session = take(&mut b, "session_id").and_then(|v| v.as_str().map(str::to_owned));
            tr
        }
        ("proc", "invocation-get" | "invocation-conversation" | "invocation-snapshot") => {
            let id = take(&mut b, "id").or_else(|| take(&mut b, "invocation_id"));
            let shape = if op == "invocation-conversation" {
                Shape::Conversation
            } else {
                Shape::Invocation
            };
            t("proc", "show", json!({"invocation": id}), shape)
        }
        ("proc", "session-list") => {
            let out = user(&mut b);
            t("session", "list", Value::Object(out), Shape::Sessions)
        }
        ("proc", "session-get") => {
            let id = take(&mut b, "id").or_else(|| take(&mut b, "session_id"));
            t("session", "show", json!({"id": id}), Shape::Session)
        }
        ("proc", "session-delete") => {
            let id = take(&mut b, "session_id").or_else(|| take(&mut b, "id"));
            let mut tr = t(
                "session",
                "delete",
                json!({"id": id, "force": true}),
                Shape::Deleted,
            );
            tr.deleted = id.and_then(|v| v.as_str().map(str::to_owned));
            tr
        }
        ("proc", "session-resume") => {
            let mut out = Map::new();
            out.insert(
                "id".into(),
                take(&mut b, "session_id")
                    .or_else(|| take(&mut b, "id"))
                    .unwrap_or(Value::Null),
            );
            if let Some(g) = take(&mut b, "input").or_else(|| take(&mut b, "goal")) {
                out.insert("goal".into(), g);
            }
            t("session", "resume", Value::Object(out), Shape::Same)
        }
        ("proc", "package/install-service") => {
            let source = take(&mut b, "source").unwrap_or_default();
            let source = source.as_str().unwrap_or_default();
            let path = source.strip_prefix("file://").unwrap_or(source);
            if !path.starts_with('/') {
                return Err(bad(format!(
                    "Avix installs a service from a directory on the daemon's machine (file:///…) or from uploaded files (avix client service install); {source:?} is neither: download it there first"
                )));
            }
            t("sys", "service-install", json!({"path": path}), Shape::Same)
        }
        ("proc", "package/uninstall-service") => {
            let name = take(&mut b, "name").unwrap_or_default();
            t("sys", "service-uninstall", json!({"name": name}), Shape::Ok)
        }
        ("signal", "send") => signal(&mut b)?,
        ("sys", "tool-list") => t("sys", "tools", json!({}), Shape::Tools),
        ("auth", "whoami") => t("auth", "whoami", Value::Object(b), Shape::WhoAmI),
        _ => t(domain, op, Value::Object(b), Shape::Same),
    };
    Ok(out)
}

/// `signal send`: a `SIGRESUME` carrying an approval token answers an approval (the
/// reference's HIL answer); any other signal is sent as Avix sends it.
fn signal(b: &mut Map<String, Value>) -> Result<Translated, AtpError> {
    let payload = take(b, "payload");
    let is_answer = b.get("signal").and_then(Value::as_str) == Some("SIGRESUME")
        && payload
            .as_ref()
            .is_some_and(|p| p.get("approvalToken").is_some() || p.get("hilId").is_some());
    let mk = |domain: &str, op: &str, body: Value| Translated {
        domain: domain.into(),
        op: op.into(),
        body,
        shape: Shape::Ok,
        session: None,
        deleted: None,
    };
    // The reference CLI's `service start|stop|restart NAME`: a signal to a service by name.
    if b.get("pid").is_none_or(Value::is_null)
        && let Some(name) = b.get("name").cloned()
    {
        let op = match b.get("signal").and_then(Value::as_str) {
            Some("SIGSTART") => "service-start",
            Some("SIGTERM" | "SIGSTOP" | "SIGKILL") => "service-stop",
            _ => "service-restart",
        };
        return Ok(mk("sys", op, json!({"name": name})));
    }
    if is_answer {
        let p = payload.unwrap_or_default();
        let id = p
            .get("hilId")
            .cloned()
            .ok_or_else(|| bad("an approval's answer needs payload.hilId"))?;
        let approve = p.get("decision").and_then(Value::as_str) == Some("approved");
        let mut body = json!({"id": id});
        if let Some(n) = p.get("note").filter(|n| !n.is_null()) {
            body["note"] = n.clone();
        }
        return Ok(mk("hil", if approve { "approve" } else { "deny" }, body));
    }
    let mut body = std::mem::take(b);
    if let Some(p) = payload {
        body.insert("payload".into(), p);
    }
    Ok(mk("signal", "send", Value::Object(body)))
}

/// The reference's name for a process state (`running paused waiting stopped crashed
/// pending`).
fn proc_status(state: &str) -> &'static str {
    match state {
        "pending" => "pending",
        "running" => "running",
        "waiting" => "waiting",
        "paused" => "paused",
        "failed" => "crashed",
        _ => "stopped",
    }
}

/// The reference's name for an invocation's state (`running idle paused completed failed
/// killed`).
fn invocation_status(state: &str) -> &'static str {
    match state {
        "pending" | "running" => "running",
        "waiting" => "idle",
        "paused" => "paused",
        "failed" => "failed",
        "killed" => "killed",
        _ => "completed",
    }
}

fn add(v: &mut Value, key: &str, value: Value) {
    if let Value::Object(m) = v {
        m.entry(key.to_owned()).or_insert(value);
    }
}

fn reshape_proc(p: &mut Value) {
    let state = p["state"].as_str().unwrap_or_default().to_owned();
    add(p, "name", p["agent"].clone());
    add(p, "status", json!(proc_status(&state)));
}

fn reshape_record(r: &mut Value) {
    let state = r["state"].as_str().unwrap_or_default().to_owned();
    let tokens = r["tokens"]["inputTokens"].as_u64().unwrap_or(0)
        + r["tokens"]["outputTokens"].as_u64().unwrap_or(0);
    add(r, "agentName", r["agent"].clone());
    add(r, "agentVersion", r["version"].clone());
    add(r, "username", r["user"].clone());
    add(r, "sessionId", r["session"].clone());
    add(r, "status", json!(invocation_status(&state)));
    add(r, "tokensConsumed", json!(tokens));
    add(r, "toolCallsTotal", r["toolCalls"].clone());
}

fn reshape_session(s: &mut Value) {
    let state = s["state"].as_str().unwrap_or("completed").to_owned();
    add(s, "username", s["user"].clone());
    add(s, "goal", s["title"].clone());
    add(s, "spawnedAt", s["createdAt"].clone());
    add(s, "lastUpdated", s["updatedAt"].clone());
    add(s, "status", json!(invocation_status(&state)));
    add(s, "primaryAgent", s["agent"].clone());
    add(s, "originAgent", s["agent"].clone());
}

/// Avix's conversation (messages of content blocks) as the reference's entries: `role` and
/// the text as `content`, tool calls as `toolCalls`.
fn conversation(messages: &Value) -> Value {
    let entries = messages
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|m| {
            let blocks = m["content"]
                .as_array()
                .map(|a| a.as_slice())
                .unwrap_or_default();
            let text: Vec<&str> = blocks
                .iter()
                .filter(|b| b["type"] == "text")
                .filter_map(|b| b["text"].as_str())
                .collect();
            let calls: Vec<Value> = blocks
                .iter()
                .filter(|b| b["type"] == "tool_use")
                .map(|b| json!({"id": b["id"], "name": b["name"], "args": b["input"]}))
                .collect();
            let results: Vec<&str> = blocks
                .iter()
                .filter(|b| b["type"] == "tool_result")
                .filter_map(|b| b["content"].as_str())
                .collect();
            let role = if results.is_empty() {
                m["role"].clone()
            } else {
                json!("tool")
            };
            let content = if text.is_empty() {
                results.join("\n")
            } else {
                text.join("\n")
            };
            json!({"role": role, "content": content, "toolCalls": calls, "filesChanged": []})
        })
        .collect();
    Value::Array(entries)
}

/// Reshapes a reply body for a reference client.
pub(crate) fn reply(t: &Translated, body: &str) -> String {
    if t.shape == Shape::Same {
        return body.to_owned();
    }
    let Ok(mut v) = serde_json::from_str::<Value>(body) else {
        return body.to_owned();
    };
    match t.shape {
        Shape::Same => {}
        Shape::Ok | Shape::Deleted => {
            add(&mut v, "ok", json!(true));
            if let Some(id) = &t.deleted {
                add(&mut v, "deleted", json!(id));
            }
        }
        Shape::Spawned => add(&mut v, "status", json!("running")),
        Shape::WhoAmI => {
            let user = v["user"].clone();
            add(&mut v, "identity", user);
        }
        Shape::Procs => {
            if let Value::Array(a) = &mut v {
                a.iter_mut().for_each(reshape_proc);
            }
        }
        Shape::Proc => reshape_proc(&mut v),
        Shape::Records => {
            if let Value::Array(a) = &mut v {
                if let Some(s) = &t.session {
                    a.retain(|r| r["session"].as_str() == Some(s));
                }
                a.iter_mut().for_each(reshape_record);
            }
        }
        Shape::Invocation => {
            let mut rec = v["record"].take();
            reshape_record(&mut rec);
            add(&mut rec, "conversation", conversation(&v["conversation"]));
            v = rec;
        }
        Shape::Conversation => v = conversation(&v["conversation"]),
        Shape::Sessions => {
            if let Value::Array(a) = &mut v {
                a.iter_mut().for_each(reshape_session);
            }
        }
        Shape::Session => {
            // `session show` answers {session, invocations}; the reference reads the
            // session's fields at the top, its agents in snake_case.
            let invocations = v["invocations"].take();
            let mut rec = v["session"].take();
            reshape_session(&mut rec);
            let mut agents: Vec<Value> = Vec::new();
            for i in invocations
                .as_array()
                .map(|a| a.as_slice())
                .unwrap_or_default()
            {
                if !agents.contains(&i["agent"]) {
                    agents.push(i["agent"].clone());
                }
            }
            let agent = rec["agent"].clone();
            add(&mut rec, "origin_agent", agent.clone());
            add(&mut rec, "primary_agent", agent);
            add(&mut rec, "participants", Value::Array(agents));
            add(&mut rec, "invocations", invocations);
            v = rec;
        }
        Shape::Tools => {
            let tools: Vec<Value> = v
                .as_array()
                .map(|a| a.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|d| {
                    let name = d["name"].as_str().unwrap_or_default();
                    let mut d = d.clone();
                    add(
                        &mut d,
                        "namespace",
                        json!(name.split('/').next().unwrap_or("")),
                    );
                    d
                })
                .collect();
            let available = tools.iter().filter(|d| d["state"] != "unavailable").count();
            v = json!({
                "total": tools.len(),
                "available": available,
                "unavailable": tools.len() - available,
                "tools": tools,
            });
        }
    }
    v.to_string()
}

/// An error as a reference client can parse it: a code from its set (`EAUTH EEXPIRED
/// ESESSION EPERM ENOTFOUND ECONFLICT EUSED ELIMIT EPARSE EINTERNAL EUNAVAIL`), with Avix's
/// precise code in front of the message when they differ.
pub(crate) fn error(e: AtpError) -> AtpError {
    let code = match e.code {
        ErrorCode::EINVAL | ErrorCode::ETOOBIG => ErrorCode::EPARSE,
        ErrorCode::ENOSYS => ErrorCode::ENOTFOUND,
        ErrorCode::ENOSPC => ErrorCode::ELIMIT,
        c => c,
    };
    if code == e.code {
        return e;
    }
    AtpError::new(code, format!("{}: {}", e.code, e.message))
}

/// The event names the reference client's `EventKind` knows: a frame with any other name
/// fails to parse there (it logs a warning per frame), so such events are not sent to it.
const KNOWN_EVENTS: [&str; 19] = [
    "session.ready",
    "session.closing",
    "token.expiring",
    "agent.spawned",
    "agent.output",
    "agent.status",
    "agent.tool_call",
    "agent.tool_result",
    "agent.exit",
    "proc.start",
    "proc.signal",
    "hil.request",
    "hil.resolved",
    "fs.changed",
    "tool.changed",
    "cron.fired",
    "sys.service",
    "sys.alert",
    "agent.output.chunk",
];

/// An event as a reference client reads it, or `None` for one it does not know. Its bodies
/// carry `pid` as a string (as the reference sends it) and the fields its types name; Avix's
/// own fields stay.
pub(crate) fn event(f: &EventFrame) -> Option<String> {
    if !KNOWN_EVENTS.contains(&f.event.as_str()) {
        return None;
    }
    let mut body = f.body.clone();
    if !body.is_object() {
        body = json!({"value": body});
    }
    let pid = f.pid.map_or(0, avix_proto::Pid::get);
    let set = |b: &mut Value, k: &str, v: Value| b[k] = v;
    let b = &mut body;
    match f.event.as_str() {
        "agent.spawned" => {
            set(b, "pid", json!(pid.to_string()));
            add(b, "name", b["agent"].clone());
            add(b, "sessionId", b["session"].clone());
        }
        "agent.status" => {
            let status = match b["state"].as_str().unwrap_or_default() {
                "paused" => "paused",
                "failed" => "crashed",
                "completed" | "stopped" | "killed" => "stopped",
                _ => "running",
            };
            set(b, "pid", json!(pid.to_string()));
            set(b, "status", json!(status));
        }
        "agent.output" | "agent.exit" | "agent.tool_call" | "agent.tool_result" => {
            set(b, "pid", json!(pid.to_string()));
        }
        "agent.output.chunk" => {
            set(b, "pid", json!(pid.to_string()));
            add(b, "text_delta", b["text"].clone());
            add(b, "turn_id", json!(""));
            add(b, "seq", json!(f.seq));
            add(b, "is_final", json!(false));
        }
        "hil.request" => {
            let id = b["hilId"].clone();
            let prompt = match b["tool"].as_str() {
                Some(t) => format!("Approve a call of {t}?"),
                None => "An agent asks for a decision".to_owned(),
            };
            set(b, "pid", json!(pid));
            add(b, "hil_id", id.clone());
            add(b, "session_id", json!(""));
            // Avix needs no approval token: the id is the answer's key.
            add(b, "approval_token", id);
            add(b, "hil_type", b["kind"].clone());
            add(b, "prompt", json!(prompt));
            add(b, "timeout_secs", json!(0));
            add(b, "urgency", json!("normal"));
        }
        "hil.resolved" => {
            set(b, "pid", json!(pid));
            add(b, "hil_id", b["hilId"].clone());
            add(b, "session_id", json!(""));
            add(b, "resolved_by", b["by"].clone());
            add(b, "resolved_at", json!(f.ts));
        }
        _ => {}
    }
    serde_json::to_string(&ServerFrame::Event(EventFrame {
        seq: f.seq,
        event: f.event.clone(),
        ts: f.ts,
        pid: f.pid,
        body,
    }))
    .ok()
}
