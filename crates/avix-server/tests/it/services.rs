//! Services over JSON-RPC: the Python example service is installed, an agent calls its tool
//! and `_caller` arrives; a killed service is restarted and its tool comes back; the router
//! socket answers bad input clearly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use avix_proto::agent::{JournalEvent, ProcState};
use avix_proto::service::ServiceState;

use crate::common::{TestKernel, wait_exit};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/services")
        .join(name)
}

pub(crate) fn tool_results(
    t: &TestKernel,
    proc: &avix_kernel::process::Process,
) -> Vec<(bool, String)> {
    t.journal(proc)
        .into_iter()
        .filter_map(|e| match e.event {
            JournalEvent::ToolResult { result, ok, .. } => Some((ok, result)),
            _ => None,
        })
        .collect()
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_serves_an_agent_and_comes_back_after_a_kill() {
    let t = TestKernel::boot();
    let ipc = avix_ipc::Ipc::start(&t.kernel).unwrap();
    let svc = t.kernel.services().unwrap().clone();
    let st = svc
        .install(&avix_vfs::Caller::kernel(), &example("echo"))
        .await
        .unwrap();
    assert_eq!(st.state, ServiceState::Running, "{st:?}");
    assert_eq!(st.tools, ["echo/say"]);
    assert!(t.read("/tools/echo/say.yaml").contains("owner: echo"));
    assert!(
        t.read("/proc/services/echo/status.yaml")
            .contains("state: running")
    );
    // ATP clients see it happen.
    until("the service events", || {
        let (events, _) = t.kernel.events().since(0);
        let states: Vec<String> = events
            .iter()
            .filter(|e| {
                e.event == avix_proto::event::EventName::ServiceState && e.body["name"] == "echo"
            })
            .map(|e| e.body["state"].as_str().unwrap_or_default().to_owned())
            .collect();
        states.ends_with(&["starting".to_owned(), "running".to_owned()])
    })
    .await;
    assert!(
        t.kernel
            .layout()
            .data()
            .join("services/echo@0.1.0/service.yaml")
            .exists()
    );

    t.agent("echoer", "echo/say");
    t.script(
        "echo",
        "  turns:\n    - toolCalls: [{name: echo/say, args: {text: hello}}]\n    - text: \"got {last}\"\n",
    );
    let proc = t.spawn("echoer", "say hello", Some("echo")).await;
    let exit = wait_exit(&proc).await;
    assert_eq!(exit.state, ProcState::Completed, "{}", exit.reason);
    let results = tool_results(&t, &proc);
    assert_eq!(results.len(), 1);
    assert!(results[0].0, "{}", results[0].1);
    let r: serde_json::Value = serde_json::from_str(&results[0].1).unwrap();
    assert_eq!(r["text"], "echo: hello");
    assert_eq!(r["caller"]["pid"], proc.pid.get());
    assert_eq!(r["caller"]["user"], "alice");
    assert_eq!(r["caller"]["session"], proc.session.as_str());
    // The service checked the token with the kernel, which agreed.
    assert_eq!(r["verified"]["pid"], proc.pid.get());
    assert_eq!(r["verified"]["user"], "alice");

    let st = svc.status("echo").unwrap();
    assert_eq!(
        (st.calls, st.failed_calls, st.in_flight),
        (1, 0, 0),
        "{st:?}"
    );
    assert!(
        t.read("/proc/services/echo/status.yaml")
            .contains("calls: 1")
    );

    // Kill the service's process: it is restarted and its tool comes back.
    let pid = st.pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    until("the restart", || {
        svc.status("echo").is_ok_and(|s| {
            s.state == ServiceState::Running && s.pid != Some(pid) && s.restarts == 1
        })
    })
    .await;
    let after = svc.status("echo").unwrap();
    assert_eq!(after.last_exit.as_deref(), Some("signal 9"));
    assert!(t.read("/tools/echo/say.yaml").contains("state: available"));
    let again = t.spawn("echoer", "say hello again", Some("echo")).await;
    let exit = wait_exit(&again).await;
    assert_eq!(exit.state, ProcState::Completed, "{}", exit.reason);
    assert!(tool_results(&t, &again)[0].0);
    assert!(
        t.read("/proc/services/echo/log")
            .contains("registered: ['echo/say']")
    );

    // The supervisor asks who is asking: a user may not stop it, an operator may not
    // uninstall it, an agent may do neither.
    t.add_user("bob", avix_proto::Role::User, 1101);
    t.add_user("olga", avix_proto::Role::Operator, 1103);
    let bob = t.caller(&avix_proto::UserName::new("bob").unwrap());
    let olga = t.caller(&avix_proto::UserName::new("olga").unwrap());
    let e = svc.stop(&bob, "echo").await.unwrap_err();
    assert_eq!(e.kind, avix_proto::ErrorKind::Denied, "{e}");
    let e = svc.uninstall(&olga, "echo", true).await.unwrap_err();
    assert_eq!(e.kind, avix_proto::ErrorKind::Denied, "{e}");
    let e = svc.stop(&again.caller, "echo").await.unwrap_err();
    assert_eq!(e.kind, avix_proto::ErrorKind::NotPermitted, "{e}");
    assert_eq!(svc.status("echo").unwrap().state, ServiceState::Running);

    // Stop: the tool is gone; start: it is back; uninstall needs it stopped or --force.
    let s = svc.stop(&avix_vfs::Caller::kernel(), "echo").await.unwrap();
    assert_eq!(s.state, ServiceState::Stopped);
    assert!(t.kernel.tools().get("echo/say").is_none());
    let s = svc
        .start(&avix_vfs::Caller::kernel(), "echo")
        .await
        .unwrap();
    assert_eq!(s.state, ServiceState::Running);
    assert_eq!(s.tools, ["echo/say"]);
    // Starting a running service (or stopping a stopped one) answers at once.
    let t0 = std::time::Instant::now();
    assert_eq!(
        svc.start(&avix_vfs::Caller::kernel(), "echo")
            .await
            .unwrap()
            .state,
        ServiceState::Running
    );
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let e = svc
        .uninstall(&avix_vfs::Caller::kernel(), "echo", false)
        .await
        .unwrap_err();
    assert_eq!(e.kind, avix_proto::ErrorKind::Conflict, "{e}");
    svc.uninstall(&avix_vfs::Caller::kernel(), "echo", true)
        .await
        .unwrap();
    assert!(t.kernel.tools().get("echo/say").is_none());
    assert!(
        !t.kernel
            .layout()
            .data()
            .join("services/echo@0.1.0")
            .exists()
    );
    // Only the built-in services are left.
    let names: Vec<String> = svc.list().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["exec"]);
    assert!(svc.status("exec").unwrap().builtin);
    let e = svc
        .stop(&avix_vfs::Caller::kernel(), "exec")
        .await
        .unwrap_err();
    assert_eq!(e.kind, avix_proto::ErrorKind::NotPermitted);
    assert!(e.message.contains("built into the daemon"), "{e}");
    ipc.shutdown().await;
}

const HANG_PY: &str = r#"
print(rpc("ipc.register", {"token": tok, "name": "hang",
      "tools": [{"name": "hang/wait", "description": "never answers"}]}), flush=True)
held = []
while True:
    c, _ = srv.accept(); held.append(c)   # read nothing, answer nothing
"#;

/// What every inline test service starts with: `rpc(method, params)` on its router socket,
/// its token `tok`, and `srv` listening on its socket.
const PY_PRELUDE: &str = r#"
import json, os, socket, struct, threading, time
def rpc(method, params):
    s = socket.socket(socket.AF_UNIX); s.connect(os.environ["AVIX_ROUTER_SOCK"])
    b = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    s.sendall(struct.pack("<I", len(b)) + b)
    n = struct.unpack("<I", s.recv(4))[0]; d = b""
    while len(d) < n: d += s.recv(n - len(d))
    return json.loads(d)
tok = os.environ["AVIX_SVC_TOKEN"]
srv = socket.socket(socket.AF_UNIX); srv.bind(os.environ["AVIX_SVC_SOCK"]); srv.listen(16)
"#;

/// A service directory: `svc.py` (the prelude, then `body`) and a service.yaml for `name`
/// with `spec` lines added.
fn py_service(name: &str, spec: &str, body: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("svc.py"), format!("{PY_PRELUDE}{body}")).unwrap();
    std::fs::write(
        dir.path().join("service.yaml"),
        format!("apiVersion: avix/v1\nkind: Service\nmetadata: {{name: {name}, version: 1.0.0}}\nspec:\n  command: [/usr/bin/python3, svc.py]\n  tools: [{name}]\n{spec}"),
    )
    .unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_never_answers_times_out_and_the_agent_goes_on() {
    let t = TestKernel::boot();
    let ipc = avix_ipc::Ipc::start(&t.kernel).unwrap();
    let dir = py_service("hang", "  callTimeout: 1s\n", HANG_PY);
    let svc = t.kernel.services().unwrap().clone();
    let st = svc
        .install(&avix_vfs::Caller::kernel(), dir.path())
        .await
        .unwrap();
    assert_eq!(st.state, ServiceState::Running, "{st:?}");
    t.agent("waiter", "hang/wait");
    t.script(
        "wait",
        "  turns:\n    - toolCalls: [{name: hang/wait}]\n    - text: \"after {last}\"\n",
    );
    let started = std::time::Instant::now();
    let proc = t.spawn("waiter", "wait", Some("wait")).await;
    let exit = wait_exit(&proc).await;
    assert_eq!(exit.state, ProcState::Completed, "{}", exit.reason);
    assert!(started.elapsed() < Duration::from_secs(10));
    let r = tool_results(&t, &proc);
    assert!(!r[0].0);
    assert!(
        r[0].1.contains("ETIMEOUT") && r[0].1.contains("1000 ms"),
        "{}",
        r[0].1
    );
    let st = t.kernel.services().unwrap().status("hang").unwrap();
    assert_eq!((st.calls, st.failed_calls), (1, 1), "{st:?}");
    ipc.shutdown().await;
}

/// One call on the daemon's router socket, raw.
pub(crate) fn rpc(path: &Path, body: serde_json::Value) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
    let b = body.to_string();
    s.write_all(&u32::try_from(b.len()).unwrap().to_le_bytes())
        .unwrap();
    s.write_all(b.as_bytes()).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    serde_json::from_slice(&all[4..]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_socket_refuses_bad_requests_clearly_and_calls_tools_by_token() {
    let t = TestKernel::boot();
    let ipc = avix_ipc::Ipc::start(&t.kernel).unwrap();
    let sock = t.kernel.layout().run().join("router.sock");
    // An agent waiting for input holds a capability token a local tool can use.
    let mut req = TestKernel::req("assistant", "hello", None);
    req.interactive = Some(true);
    let proc = t.kernel.spawn(&t.alice_caller(), req, None).await.unwrap();
    crate::common::wait_state(&proc, ProcState::Waiting, Some("input")).await;
    let token = proc.token().0;
    let mut events = t.kernel.events().subscribe();
    let s = sock.clone();
    let pid = proc.pid;
    let tok = token.clone();
    tokio::task::spawn_blocking(move || {
        let token = tok;
        let err = |body: serde_json::Value, code: i64, says: &str| {
            let r = rpc(&s, body);
            assert_eq!(r["error"]["code"], code, "{r}");
            let m = r["error"]["message"].as_str().unwrap();
            assert!(m.contains(says), "{m:?} should say {says:?}");
        };
        err(serde_json::json!({"jsonrpc":"2.0","id":1,"method":"ipc.nope"}), -32601, "unknown method ipc.nope");
        err(serde_json::json!({"jsonrpc":"2.0","id":1,"method":"ipc.register","params":{"token":"x","name":"echo"}}), -32001, "unknown service token");
        err(serde_json::json!({"jsonrpc":"2.0","id":1,"method":"ipc.register","params":{"name":"echo"}}), -32602, "missing field `token`");
        err(serde_json::json!({"jsonrpc":"2.0","id":1,"method":"ipc.verify","params":{"token":"avixcap1.forged.00"}}), -32001, "");
        err(serde_json::json!({"jsonrpc":"2.0","id":1,"method":"fs/read","params":{"path":"/etc/avix/users.yaml"}}), -32001, "needs params._caller.token");
        err(serde_json::json!({"jsonrpc":"2.0","id":1,"method":"no/such","params":{"_caller":{"token": token}}}), -32601, "there is no tool no/such");
        // A granted tool through the agent's token: the same policy as the agent's own call.
        let r = rpc(&s, serde_json::json!({"jsonrpc":"2.0","id":"w","method":"fs/write","params":{"path":"via-ipc.txt","content":"hi","_caller":{"token": token}}}));
        assert!(r.get("result").is_some(), "{r}");
        let r = rpc(&s, serde_json::json!({"jsonrpc":"2.0","id":"r","method":"fs/read","params":{"path":"via-ipc.txt","_caller":{"token": token}}}));
        assert_eq!(r["id"], "r");
        assert!(r["result"].to_string().contains("hi"), "{r}");
        // Not granted: refused by the policy.
        err(serde_json::json!({"jsonrpc":"2.0","id":1,"method":"kernel/proc/list","params":{"_caller":{"token": token}}}), -32002, "not granted");
        let r = rpc(&s, serde_json::json!({"jsonrpc":"2.0","id":1,"method":"ipc.verify","params":{"token": token}}));
        assert_eq!(r["result"]["pid"], pid.get());
        assert_eq!(r["result"]["user"], "alice");
    })
    .await
    .unwrap();
    assert_eq!(t.read("/users/alice/workspace/via-ipc.txt"), "hi");
    // The calls made with its token are in the agent's journal, like its own.
    let journal = t.journal(&proc);
    let calls: Vec<&str> = journal
        .iter()
        .filter_map(|e| match &e.event {
            avix_proto::agent::JournalEvent::ToolCall { call_id, tool, .. }
                if call_id.starts_with("ipc-") =>
            {
                Some(tool.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(calls, ["fs/write", "fs/read"]);
    // ... and published like its own (one tool-call path for both).
    let mut published = Vec::new();
    while let Ok(e) = events.try_recv() {
        if e.pid == Some(pid)
            && e.body["callId"]
                .as_str()
                .is_some_and(|c| c.starts_with("ipc-"))
        {
            published.push(format!(
                "{} {}",
                e.event,
                e.body["tool"].as_str().unwrap_or("")
            ));
        }
    }
    assert_eq!(
        published,
        [
            "agent.tool_call fs/write",
            "agent.tool_result fs/write",
            "agent.tool_call fs/read",
            "agent.tool_result fs/read"
        ]
    );
    // Once the agent ends, its token is dead.
    t.kernel
        .signal(
            &avix_vfs::Caller::kernel(),
            &proc,
            avix_kernel::process::Signal::Kill,
        )
        .unwrap();
    wait_exit(&proc).await;
    let s = sock.clone();
    let r = tokio::task::spawn_blocking(move || {
        rpc(&s, serde_json::json!({"jsonrpc":"2.0","id":1,"method":"ipc.verify","params":{"token": token}}))
    })
    .await
    .unwrap();
    assert_eq!(r["error"]["code"], -32001, "{r}");
    ipc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_services_fail_or_back_off_with_a_reason() {
    let t = TestKernel::boot();
    let ipc = avix_ipc::Ipc::start(&t.kernel).unwrap();
    let svc = t.kernel.services().unwrap().clone();
    let unit = |name: &str, cmd: &str, restart: &str| {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("service.yaml"),
            format!("apiVersion: avix/v1\nkind: Service\nmetadata: {{name: {name}, version: 1.0.0}}\nspec:\n  command: {cmd}\n  tools: [{name}]\n  restart: {restart}\n"),
        )
        .unwrap();
        d
    };
    // A program that does not exist: failed, and it says why.
    let d = unit("ghost", "[/nonexistent/prog]", "on-failure");
    let st = svc
        .install(&avix_vfs::Caller::kernel(), d.path())
        .await
        .unwrap();
    assert_eq!(st.state, ServiceState::Failed, "{st:?}");
    assert!(
        st.problem
            .unwrap()
            .contains("cannot start /nonexistent/prog")
    );
    // One that exits at once with an error: backoff, restarts counted, stop ends it.
    let d = unit(
        "crashy",
        "[/bin/sh, -c, 'echo dying >&2; exit 3']",
        "on-failure",
    );
    let st = svc
        .install(&avix_vfs::Caller::kernel(), d.path())
        .await
        .unwrap();
    assert_eq!(st.state, ServiceState::Backoff, "{st:?}");
    assert_eq!(st.last_exit.as_deref(), Some("exit 3"));
    until("a few restarts", || {
        svc.status("crashy").unwrap().restarts >= 2
    })
    .await;
    assert!(
        t.read("/proc/services/crashy/log")
            .contains("stderr: dying")
    );
    let st = svc
        .stop(&avix_vfs::Caller::kernel(), "crashy")
        .await
        .unwrap();
    assert_eq!(st.state, ServiceState::Stopped, "{st:?}");
    // restart: never leaves it failed after one exit.
    let d = unit("once", "[/bin/sh, -c, 'exit 1']", "never");
    let st = svc
        .install(&avix_vfs::Caller::kernel(), d.path())
        .await
        .unwrap();
    assert_eq!(st.state, ServiceState::Failed, "{st:?}");
    assert!(st.problem.unwrap().contains("does not restart it"));
    // A bad unit is refused with every problem named, and nothing is installed.
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("service.yaml"),
        "apiVersion: avix/v1\nkind: Service\nmetadata: {name: Bad, version: x}\nspec:\n  command: []\n",
    )
    .unwrap();
    let e = svc
        .install(&avix_vfs::Caller::kernel(), d.path())
        .await
        .unwrap_err();
    assert_eq!(e.kind, avix_proto::ErrorKind::Invalid);
    assert!(
        e.message.contains("metadata.name") && e.message.contains("command is empty"),
        "{e}"
    );
    ipc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_runs_as_the_user_its_unit_names() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: runAs needs a daemon running as root");
        return;
    }
    let t = TestKernel::boot();
    // The root's parent is a private temporary directory; open it like /var/lib would be.
    use std::os::unix::fs::PermissionsExt;
    let root = t.kernel.layout().root().to_owned();
    std::fs::set_permissions(
        root.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let ipc = avix_ipc::Ipc::start(&t.kernel).unwrap();
    let d = tempfile::tempdir().unwrap();
    for f in ["echo_service.py", "service.yaml"] {
        std::fs::copy(example("echo").join(f), d.path().join(f)).unwrap();
    }
    let unit = std::fs::read_to_string(d.path().join("service.yaml"))
        .unwrap()
        .replace(
            "restart: on-failure",
            "restart: on-failure\n  runAs: nobody",
        );
    std::fs::write(d.path().join("service.yaml"), unit).unwrap();
    let svc = t.kernel.services().unwrap().clone();
    let st = svc
        .install(&avix_vfs::Caller::kernel(), d.path())
        .await
        .unwrap();
    assert_eq!(
        st.state,
        ServiceState::Running,
        "{st:?}\n{}",
        t.read("/proc/services/echo/log")
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", st.pid.unwrap())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid.contains("65534"), "{uid}");
    ipc.shutdown().await;
}

/// Registers drain/slow; a call of it asks the router to remove the tool 200 ms in, then
/// answers after 1 s. The removal's answer is written to removed.json.
const DRAIN_PY: &str = r#"
rpc("ipc.register", {"token": tok, "name": "drain", "tools": [{"name": "drain/slow"}]})
def remove():
    time.sleep(0.2)
    t0 = time.time()
    r = rpc("ipc.tool-remove", {"token": tok, "tools": ["drain/slow"], "reason": "upgrade"})
    r["waitedMs"] = int((time.time() - t0) * 1000)
    open("removed.json", "w").write(json.dumps(r))
while True:
    c, _ = srv.accept()
    n = struct.unpack("<I", c.recv(4))[0]; d = b""
    while len(d) < n: d += c.recv(n - len(d))
    req = json.loads(d)
    threading.Thread(target=remove).start()
    time.sleep(1)
    b = json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": {"done": True}}).encode()
    c.sendall(struct.pack("<I", len(b)) + b); c.close()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_tool_drains_the_calls_in_flight() {
    let t = TestKernel::boot();
    let ipc = avix_ipc::Ipc::start(&t.kernel).unwrap();
    let dir = py_service("drain", "  callTimeout: 5s\n", DRAIN_PY);
    let svc = t.kernel.services().unwrap().clone();
    let st = svc
        .install(&avix_vfs::Caller::kernel(), dir.path())
        .await
        .unwrap();
    assert_eq!(st.state, ServiceState::Running, "{st:?}");
    t.agent("drainer", "drain/slow");
    let mut req = TestKernel::req("drainer", "idle", None);
    req.interactive = Some(true);
    let p = t.kernel.spawn(&t.alice_caller(), req, None).await.unwrap();
    crate::common::wait_state(&p, ProcState::Waiting, Some("input")).await;
    let slow = t.kernel.tools().get("drain/slow").unwrap();
    let k = t.kernel.clone();
    let (p2, slow2) = (p.clone(), slow.clone());
    let call =
        tokio::spawn(async move { k.invoke(&p2, "d1", &slow2, serde_json::json!({})).await });
    // While the removal waits for that call: listed as unavailable, new calls refused.
    until("the drain to start", || {
        t.kernel
            .tools()
            .get("drain/slow")
            .is_some_and(|e| e.descriptor.state == avix_kernel::tools::ToolState::Unavailable)
    })
    .await;
    assert!(
        t.read("/tools/drain/slow.yaml")
            .contains("state: unavailable")
    );
    let e = t.kernel.check_call(&p, "drain/slow");
    assert!(
        matches!(
            e,
            avix_kernel::router::Check::Deny {
                denial: avix_kernel::router::Denial::Unavailable,
                ..
            }
        ),
        "{e:?}"
    );
    // The call in flight completes; then the tool is gone.
    let r = call.await.unwrap().unwrap();
    assert_eq!(r["done"], true);
    let installed = t
        .kernel
        .layout()
        .data()
        .join("services/drain@1.0.0/removed.json");
    until("the removal's answer", || installed.exists()).await;
    let removed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&installed).unwrap()).unwrap();
    assert_eq!(removed["result"]["drained"], true, "{removed}");
    assert!(removed["waitedMs"].as_u64().unwrap() >= 500, "{removed}");
    assert!(t.kernel.tools().get("drain/slow").is_none());
    ipc.shutdown().await;
}

/// Offers multi/a and multi/b on its first run, only multi/a afterwards.
const MULTI_PY: &str = r#"
n = os.path.join(os.environ["HOME"], "runs")
runs = int(open(n).read()) + 1 if os.path.exists(n) else 1
open(n, "w").write(str(runs))
tools = [{"name": "multi/a"}] + ([{"name": "multi/b"}] if runs == 1 else [])
rpc("ipc.register", {"token": tok, "name": "multi", "tools": tools})
time.sleep(3600)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_service_offers_what_it_registers_again() {
    let t = TestKernel::boot();
    let ipc = avix_ipc::Ipc::start(&t.kernel).unwrap();
    let dir = py_service("multi", "", MULTI_PY);
    let svc = t.kernel.services().unwrap().clone();
    let st = svc
        .install(&avix_vfs::Caller::kernel(), dir.path())
        .await
        .unwrap();
    assert_eq!(st.tools, ["multi/a", "multi/b"], "{st:?}");
    let st = svc
        .restart(&avix_vfs::Caller::kernel(), "multi")
        .await
        .unwrap();
    assert_eq!(st.state, ServiceState::Running, "{st:?}");
    assert_eq!(st.tools, ["multi/a"]);
    assert!(t.kernel.tools().get("multi/b").is_none());
    ipc.shutdown().await;
}
