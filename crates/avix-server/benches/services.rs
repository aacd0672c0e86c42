//! Service figures: a JSON-RPC round trip over a fresh Unix-socket connection to a server in
//! another process; an agent's tool call through the router to the Python example service;
//! exec/python and exec/shell cold starts in the sandbox.
//! Run: `cargo bench -p avix-server --bench services`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use avix_ipc::server::{self, BoxFuture, Handler, Notifier, Peer, ServerConfig};
use avix_ipc::{CallOptions, call};
use avix_kernel::Kernel;
use avix_proto::agent::{ProcState, SpawnRequest};
use avix_proto::rpc::{Request, RpcError};
use avix_proto::{AgentName, UserName};
use avix_vfs::{Caller, VfsPath};
use serde_json::value::RawValue;

struct Echo;

impl Handler for Echo {
    fn handle(
        &self,
        _peer: Peer,
        req: Request,
        _notes: Notifier,
    ) -> BoxFuture<'static, Result<Box<RawValue>, RpcError>> {
        Box::pin(async move {
            Ok(req
                .params
                .unwrap_or_else(|| RawValue::from_string("null".into()).unwrap()))
        })
    }
}

#[allow(clippy::cast_possible_truncation)] // an index into v
fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e6
}

fn report(what: &str, mut v: Vec<Duration>) {
    println!(
        "{what}: n={} p50 {:.1} µs  p99 {:.1} µs  max {:.1} µs",
        v.len(),
        pct(&mut v, 0.5),
        pct(&mut v, 0.99),
        pct(&mut v, 1.0)
    );
}

/// Child mode: serve echo on the socket named by AVIX_BENCH_SOCKET until killed.
fn serve_child(path: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let l = server::bind(Path::new(path)).unwrap();
        let cfg = ServerConfig::same_user(1 << 20, Duration::from_secs(5));
        server::serve(l, Arc::new(Echo), cfg, Default::default()).await;
    });
}

async fn round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("echo.sock");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env("AVIX_BENCH_SOCKET", &sock)
        .spawn()
        .unwrap();
    while !sock.exists() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let params = RawValue::from_string(format!("{{\"text\":\"{}\"}}", "x".repeat(200))).unwrap();
    let opts = CallOptions::default();
    for _ in 0..500 {
        call(&sock, "echo", Some(params.clone()), opts)
            .await
            .unwrap();
    }
    let mut v = Vec::new();
    for _ in 0..5000 {
        let t = Instant::now();
        call(&sock, "echo", Some(params.clone()), opts)
            .await
            .unwrap();
        v.push(t.elapsed());
    }
    report(
        "IPC round trip, fresh connection, server in another process",
        v,
    );
    child.kill().unwrap();
    let _ = child.wait();
}

fn boot() -> (tempfile::TempDir, Arc<Kernel>, UserName) {
    let t = avix_testkit::kernel::TestKernel::boot();
    (t._dir, t.kernel, t.alice)
}

async fn tool_calls() {
    let (_dir, kernel, alice) = boot();
    let ipc = avix_ipc::Ipc::start(&kernel).unwrap();
    let echo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/services/echo");
    let svc = kernel.services().unwrap().clone();
    svc.install(&avix_vfs::Caller::kernel(), &echo)
        .await
        .unwrap();
    let vfs = kernel.vfs();
    for d in ["/users/alice/bin", "/users/alice/bin/bench@1.0.0"] {
        let _ = vfs.create_dir(&Caller::kernel(), &VfsPath::parse(d).unwrap());
    }
    vfs.write(
        &Caller::kernel(),
        &VfsPath::parse("/users/alice/bin/bench@1.0.0/agent.yaml").unwrap(),
        b"apiVersion: avix/v1\nkind: Agent\nmetadata: {name: bench, version: 1.0.0}\nspec:\n  interactive: true\n  tools: {required: [echo/say, exec/python, exec/shell, fs/stat]}\n  limits: {maxToolCalls: 5000}\n",
    )
    .unwrap();
    let req = SpawnRequest {
        agent: AgentName::new("bench").unwrap(),
        goal: "wait".into(),
        model: None,
        tools: None,
        interactive: Some(true),
        session: None,
        params: Default::default(),
    };
    let p = kernel
        .spawn(&caller(&kernel, &alice), req, None)
        .await
        .unwrap();
    while p.state() != ProcState::Waiting {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let entry = kernel.tools().get("echo/say").unwrap();
    let args = serde_json::json!({"text": "hello"});
    for i in 0..50 {
        kernel
            .invoke(&p, &format!("w{i}"), &entry, args.clone())
            .await
            .unwrap();
    }
    let mut v = Vec::new();
    for i in 0..500 {
        let t = Instant::now();
        kernel
            .invoke(&p, &format!("c{i}"), &entry, args.clone())
            .await
            .unwrap();
        v.push(t.elapsed());
    }
    report(
        "agent tool call to the Python example service (router -> service -> ipc.verify -> back)",
        v,
    );

    // A local program calling a tool as the agent, through the router socket with its token.
    let router = kernel.layout().run().join("router.sock");
    let params = RawValue::from_string(
        serde_json::json!({"path": "/users/alice/workspace", "_caller": {"token": p.token().0}})
            .to_string(),
    )
    .unwrap();
    let opts = CallOptions::default();
    for _ in 0..50 {
        call(&router, "fs/stat", Some(params.clone()), opts)
            .await
            .unwrap();
    }
    let mut v = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        call(&router, "fs/stat", Some(params.clone()), opts)
            .await
            .unwrap();
        v.push(t.elapsed());
    }
    report(
        "fs/stat through the router socket with an agent's token (verify, policy, journal)",
        v,
    );

    for (tool, key, code) in [
        ("exec/python", "code", "print(1)"),
        ("exec/shell", "command", "echo 1"),
    ] {
        let entry = kernel.tools().get(tool).unwrap();
        let mut v = Vec::new();
        for i in 0..30 {
            let t = Instant::now();
            let r = kernel
                .invoke(
                    &p,
                    &format!("x{i}"),
                    &entry,
                    serde_json::json!({ key: code }),
                )
                .await
                .unwrap();
            v.push(t.elapsed());
            assert_eq!(r["stdout"], "1\n", "{r}");
        }
        report(&format!("{tool} cold start ({code})"), v);
    }
    ipc.shutdown().await;
}

fn main() {
    if let Ok(p) = std::env::var("AVIX_BENCH_SOCKET") {
        serve_child(&p);
        return;
    }
    // `cargo test --benches` runs benches with no arguments besides the harness flags;
    // only `cargo bench` passes --bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        round_trips().await;
        tool_calls().await;
    });
}

/// `user` as the kernel spawns for them.
fn caller(k: &Kernel, user: &UserName) -> avix_vfs::Caller {
    k.config()
        .get()
        .caller_for(user, avix_vfs::Door::Kernel)
        .unwrap()
}
