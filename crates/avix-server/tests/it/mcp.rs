//! The MCP bridge against a real MCP server from npm (the reference "everything" server) and
//! against servers that hang or crash.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use avix_proto::agent::ProcState;
use avix_proto::service::ServiceState;

use crate::common::{TestKernel, p, wait_exit, wait_state};

/// The npm package `@modelcontextprotocol/server-everything`, installed by scripts/setup.sh.
fn everything() -> PathBuf {
    let p = std::env::var_os("AVIX_MCP_EVERYTHING").map_or_else(
        || {
            PathBuf::from(std::env::var("HOME").unwrap())
                .join(".cache/avix/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
        },
        PathBuf::from,
    );
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh (it installs the MCP reference server from npm)",
        p.display()
    );
    p
}

fn a_services(t: &TestKernel) -> std::sync::Arc<dyn avix_kernel::services::ServiceControl> {
    t.kernel.services().unwrap().clone()
}

fn fake() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/mcp/fake_server.py"
    )
    .to_owned()
}

fn write_mcp(t: &TestKernel, servers: &str) {
    t.kernel
        .vfs()
        .write(
            &avix_vfs::Caller::kernel(),
            &p("/etc/avix/mcp.yaml"),
            format!("apiVersion: avix/v1\nkind: McpServers\nspec:\n  servers:\n{servers}")
                .as_bytes(),
        )
        .unwrap();
}

async fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn state(ipc: &avix_ipc::Ipc, name: &str) -> Option<(ServiceState, Option<String>)> {
    ipc.mcp
        .statuses()
        .into_iter()
        .find(|s| s.name == format!("mcp/{name}"))
        .map(|s| (s.state, s.problem))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_everything_server_serves_an_agent() {
    let t = TestKernel::boot();
    let ipc = avix_ipc::Ipc::start(&t.kernel).unwrap();
    write_mcp(
        &t,
        &format!(
            "    - name: everything\n      command: [node, {}, stdio]\n",
            everything().display()
        ),
    );
    until("the everything server", 60, || {
        t.kernel.tools().get("mcp/everything/get-sum").is_some()
    })
    .await;
    let d = t.read("/tools/mcp/everything/echo.yaml");
    assert!(
        d.contains("owner: mcp/everything") && d.contains("message"),
        "{d}"
    );
    assert!(
        t.read("/proc/services/mcp/status.yaml")
            .contains("state: running")
    );

    // A manifest may ask for a whole server's tools with a pattern.
    let k = avix_vfs::Caller::kernel();
    for d in ["/users/alice/bin", "/users/alice/bin/mcpall@1.0.0"] {
        let _ = t.kernel.vfs().create_dir(&k, &p(d));
    }
    t.kernel
        .vfs()
        .write(
            &k,
            &p("/users/alice/bin/mcpall@1.0.0/agent.yaml"),
            b"apiVersion: avix/v1\nkind: Agent\nmetadata: {name: mcpall, version: 1.0.0}\nspec:\n  interactive: true\n  tools: {optional: [\"mcp/everything/*\", fs/read]}\n",
        )
        .unwrap();
    let all = t
        .kernel
        .spawn(
            &t.alice_caller(),
            TestKernel::req("mcpall", "idle", None),
            None,
        )
        .await
        .unwrap();
    for tool in ["mcp/everything/echo", "mcp/everything/get-sum", "fs/read"] {
        assert!(all.allows(tool), "{tool} not granted");
    }
    assert!(!all.allows("fs/write"));
    t.kernel
        .signal(
            &avix_vfs::Caller::kernel(),
            &all,
            avix_kernel::process::Signal::Kill,
        )
        .unwrap();

    t.agent("mcpuser", "mcp/everything/echo, mcp/everything/get-sum");
    t.script(
        "mcp",
        "  turns:\n    - toolCalls: [{name: mcp/everything/echo, args: {message: hello mcp}}]\n    - toolCalls: [{name: mcp/everything/get-sum, args: {a: 2, b: 40}}]\n    - text: \"sum: {last}\"\n",
    );
    let proc = t.spawn("mcpuser", "use mcp", Some("mcp")).await;
    let exit = wait_exit(&proc).await;
    assert_eq!(exit.state, ProcState::Completed, "{}", exit.reason);
    let results = crate::services::tool_results(&t, &proc);
    assert!(results.iter().all(|r| r.0), "{results:?}");
    assert!(results[0].1.contains("Echo: hello mcp"), "{}", results[0].1);
    assert!(results[1].1.contains("42"), "{}", results[1].1);

    // Removing the server from mcp.yaml stops it and removes its tools.
    t.kernel
        .vfs()
        .write(
            &avix_vfs::Caller::kernel(),
            &p("/etc/avix/mcp.yaml"),
            b"apiVersion: avix/v1\nkind: McpServers\nspec:\n  servers: []\n",
        )
        .unwrap();
    until("the tools to go", 10, || {
        t.kernel.tools().get("mcp/everything/echo").is_none()
    })
    .await;
    ipc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_and_crashing_servers_never_hang_an_agent() {
    let t = TestKernel::boot();
    let ipc = avix_ipc::Ipc::start(&t.kernel).unwrap();
    let fake = fake();
    write_mcp(
        &t,
        &format!(
            "    - name: mute\n      command: [/usr/bin/python3, {fake}]\n      environment: {{FAKE_MODE: hang-init}}\n      startTimeout: 1s\n    - name: flaky\n      command: [/usr/bin/python3, {fake}]\n      callTimeout: 1s\n"
        ),
    );
    // A server that never finishes the handshake: reported, retried, no tools.
    until("the mute server to be given up on", 10, || {
        state(&ipc, "mute").is_some_and(|(s, p)| {
            s == ServiceState::Backoff
                && p.is_some_and(|p| p.contains("no MCP handshake within 1000 ms"))
        })
    })
    .await;
    until("the flaky server", 10, || {
        t.kernel.tools().get("mcp/flaky/ok").is_some()
    })
    .await;
    assert!(
        t.kernel
            .tools()
            .descriptors()
            .iter()
            .all(|d| !d.name.as_str().starts_with("mcp/mute/"))
    );

    // A call that never gets an answer ends at callTimeout; the agent goes on.
    t.agent(
        "patient",
        "mcp/flaky/ok, mcp/flaky/wait, mcp/flaky/crash, mcp/flaky/grow",
    );
    t.script(
        "patient",
        "  turns:\n    - toolCalls: [{name: mcp/flaky/wait}]\n    - toolCalls: [{name: mcp/flaky/ok}]\n    - text: \"after {last}\"\n",
    );
    let started = Instant::now();
    let proc = t.spawn("patient", "wait", Some("patient")).await;
    let exit = wait_exit(&proc).await;
    assert_eq!(exit.state, ProcState::Completed, "{}", exit.reason);
    assert!(started.elapsed() < Duration::from_secs(10));
    let r = crate::services::tool_results(&t, &proc);
    assert!(
        !r[0].0 && r[0].1.contains("ETIMEOUT") && r[0].1.contains("1000 ms"),
        "{r:?}"
    );
    assert!(r[1].0 && r[1].1.contains("fine"), "{r:?}");

    // A crash: its tools are unavailable meanwhile, then it is back.
    let mut req = TestKernel::req("patient", "idle", None);
    req.interactive = Some(true);
    let idle = t.kernel.spawn(&t.alice_caller(), req, None).await.unwrap();
    wait_state(&idle, ProcState::Waiting, Some("input")).await;
    let crash = t.kernel.tools().get("mcp/flaky/crash").unwrap();
    let e = t
        .kernel
        .invoke(&idle, "c1", &crash, serde_json::json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "EUNAVAIL", "{e}");
    until("the restart", 15, || {
        ipc.mcp
            .statuses()
            .iter()
            .any(|s| s.name == "mcp/flaky" && s.restarts == 1 && s.state == ServiceState::Running)
            && t.read("/tools/mcp/flaky/ok.yaml")
                .contains("state: available")
    })
    .await;
    let ok = t.kernel.tools().get("mcp/flaky/ok").unwrap();
    let v = t
        .kernel
        .invoke(&idle, "c2", &ok, serde_json::json!({}))
        .await
        .unwrap();
    assert!(v.to_string().contains("fine"), "{v}");

    // A timeout marks the server's tools degraded (still callable); two in a row restart it.
    let wait = t.kernel.tools().get("mcp/flaky/wait").unwrap();
    for i in 0..2 {
        let e = t
            .kernel
            .invoke(&idle, &format!("w{i}"), &wait, serde_json::json!({}))
            .await
            .unwrap_err();
        assert_eq!(e.code, "ETIMEOUT");
        if i == 0 {
            assert!(
                t.read("/tools/mcp/flaky/ok.yaml")
                    .contains("state: degraded")
            );
        }
    }
    until("the restart after timeouts", 15, || {
        ipc.mcp
            .statuses()
            .iter()
            .any(|s| s.name == "mcp/flaky" && s.restarts >= 2 && s.state == ServiceState::Running)
    })
    .await;

    // A server that announces new tools gets them published.
    let grow = t.kernel.tools().get("mcp/flaky/grow").unwrap();
    t.kernel
        .invoke(&idle, "g1", &grow, serde_json::json!({}))
        .await
        .unwrap();
    until("the announced tool", 10, || {
        t.kernel.tools().get("mcp/flaky/extra").is_some()
    })
    .await;

    let st = a_services(&t).status("mcp/flaky").unwrap();
    assert!(st.calls >= 5 && st.failed_calls >= 3, "{st:?}");

    // An operator can reconnect a server by hand (no backoff), not stop it.
    let svc = a_services(&t);
    let before = svc.status("mcp/flaky").unwrap().restarts;
    let st = svc
        .restart(&avix_vfs::Caller::kernel(), "mcp/flaky")
        .await
        .unwrap();
    assert_eq!(st.state, ServiceState::Running, "{st:?}");
    assert_eq!(st.restarts, before + 1);
    assert!(t.kernel.tools().get("mcp/flaky/ok").is_some());
    let e = svc
        .stop(&avix_vfs::Caller::kernel(), "mcp/flaky")
        .await
        .unwrap_err();
    assert_eq!(e.kind, avix_proto::ErrorKind::NotPermitted, "{e}");
    assert!(e.message.contains("mcp.yaml"), "{e}");
    ipc.shutdown().await;
}

/// Starts the everything server in streamable-HTTP mode on a free port and waits until it
/// accepts connections. The port is free when chosen but another test may take it before node
/// binds it: node then exits, and the start is tried again on another port.
async fn everything_over_http() -> (u16, tokio::process::Child) {
    let log = tempfile::NamedTempFile::new().unwrap();
    for _ in 0..5 {
        let port = avix_testkit::free_port();
        let mut node = tokio::process::Command::new("node")
            .arg(everything())
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (port, node);
            }
            if node.try_wait().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = node.kill().await;
    }
    panic!(
        "the everything server never listened; it printed:\n{}",
        std::fs::read_to_string(log.path()).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_everything_server_over_streamable_http() {
    let (port, mut node) = everything_over_http().await;
    let t = TestKernel::boot();
    let ipc = avix_ipc::Ipc::start(&t.kernel).unwrap();
    write_mcp(
        &t,
        &format!(
            "    - name: web\n      url: http://127.0.0.1:{port}/mcp\n      callTimeout: 10s\n"
        ),
    );
    until("the HTTP server's tools", 30, || {
        t.kernel.tools().get("mcp/web/get-sum").is_some()
    })
    .await;
    t.agent("webuser", "mcp/web/get-sum");
    let mut req = TestKernel::req("webuser", "idle", None);
    req.interactive = Some(true);
    let p = t.kernel.spawn(&t.alice_caller(), req, None).await.unwrap();
    wait_state(&p, ProcState::Waiting, Some("input")).await;
    let sum = t.kernel.tools().get("mcp/web/get-sum").unwrap();
    let v = t
        .kernel
        .invoke(&p, "s1", &sum, serde_json::json!({"a": 20, "b": 22}))
        .await
        .unwrap();
    assert!(v.to_string().contains("42"), "{v}");
    // The server goes away: its tools become unavailable, and calls say so at once.
    node.kill().await.unwrap();
    let _ = node.wait().await;
    let e = t
        .kernel
        .invoke(&p, "s2", &sum, serde_json::json!({"a": 1, "b": 2}))
        .await
        .unwrap_err();
    assert!(["EUNAVAIL", "ETIMEOUT"].contains(&e.code), "{e}");
    ipc.shutdown().await;
}
