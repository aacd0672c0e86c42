//! Services over JSON-RPC: the Python example service is installed, an agent calls its tool
//! and `_caller` arrives; a killed service is restarted and its tool comes back; the router
//! socket answers bad input clearly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use avix_proto::agent::{JournalEvent, ProcState};
use avix_proto::service::ServiceState;

use crate::common::{TestKernel, p, wait_exit};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/services")
        .join(name)
}

fn agent(t: &TestKernel, name: &str, tools: &str) {
    for d in [
        "/users/alice/bin".to_owned(),
        format!("/users/alice/bin/{name}@1.0.0"),
    ] {
        let _ = t
            .kernel
            .vfs()
            .create_dir(&avix_vfs::Caller::kernel(), &p(&d));
    }
    t.kernel
        .vfs()
        .write(
            &avix_vfs::Caller::kernel(),
            &p(&format!("/users/alice/bin/{name}@1.0.0/agent.yaml")),
            format!("apiVersion: avix/v1\nkind: Agent\nmetadata: {{name: {name}, version: 1.0.0}}\nspec:\n  tools: {{required: [{tools}]}}\n").as_bytes(),
        )
        .unwrap();
}

fn tool_results(t: &TestKernel, proc: &avix_kernel::process::Process) -> Vec<(bool, String)> {
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
    let st = svc.install(&example("echo")).await.unwrap();
    assert_eq!(st.state, ServiceState::Running, "{st:?}");
    assert_eq!(st.tools, ["echo/say"]);
    assert!(t.read("/tools/echo/say.yaml").contains("owner: echo"));
    assert!(
        t.read("/proc/services/echo/status.yaml")
            .contains("state: running")
    );
    assert!(
        t.kernel
            .layout()
            .data()
            .join("services/echo@0.1.0/service.yaml")
            .exists()
    );

    agent(&t, "echoer", "echo/say");
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
    assert_eq!(r["caller"]["pid"], proc.pid);
    assert_eq!(r["caller"]["user"], "alice");
    assert_eq!(r["caller"]["session"], proc.session.as_str());
    // The service checked the token with the kernel, which agreed.
    assert_eq!(r["verified"]["pid"], proc.pid);
    assert_eq!(r["verified"]["user"], "alice");

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

    // Stop: the tool is gone; start: it is back; uninstall needs it stopped or --force.
    let s = svc.stop("echo").await.unwrap();
    assert_eq!(s.state, ServiceState::Stopped);
    assert!(t.kernel.tools().get("echo/say").is_none());
    let s = svc.start("echo").await.unwrap();
    assert_eq!(s.state, ServiceState::Running);
    assert_eq!(s.tools, ["echo/say"]);
    let e = svc.uninstall("echo", false).await.unwrap_err();
    assert_eq!(e.code, "ECONFLICT", "{e}");
    svc.uninstall("echo", true).await.unwrap();
    assert!(t.kernel.tools().get("echo/say").is_none());
    assert!(
        !t.kernel
            .layout()
            .data()
            .join("services/echo@0.1.0")
            .exists()
    );
    assert!(svc.list().is_empty());
    ipc.shutdown().await;
}
