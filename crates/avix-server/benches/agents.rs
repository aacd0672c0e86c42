//! Agent figures on this machine, with an in-process mock LLM (no provider, no YAML) so the
//! kernel's own costs show: spawn to first LLM request, 1,000 spawns, memory per idle
//! agent, 1,000 concurrent agents of 10 turns with a tool call each, the router's dispatch
//! overhead per tool call, and snapshot save/restore of a long run with a 10 MB workspace.
//! Run: `cargo bench -p avix-server --bench agents` (`AVIX_BENCH_ONLY=snapshot` runs one
//! section; `AVIX_BENCH_LOG=debug` shows the kernel's log).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use avix_auth::MasterKey;
use avix_kernel::layout::RootLayout;
use avix_kernel::router::Check;
use avix_kernel::tools::{
    Category, ToolContext, ToolDescriptor, ToolError, ToolHandler, ToolState,
};
use avix_kernel::{BootOptions, Kernel};
use avix_llm::{BoxFuture, LlmClient, LlmError, StreamSink};
use avix_proto::agent::{ProcState, SpawnRequest};
use avix_proto::llm::{ContentBlock, LlmRequest, LlmResponse, MessageRole, StopReason, Usage};
use avix_proto::tool::ToolName;
use avix_proto::{AgentName, UserName};
use avix_server::init::InitOptions;
use avix_vfs::{Caller, VfsPath};

/// Answers instantly: a `bench/noop` call until turn `turns`, then a final answer.
struct MockLlm {
    turns: usize,
    /// The tool each turn calls: `bench/noop`, or a write of a new 100-byte file in the
    /// workspace by `fs/write` (its changes tracked) or `bench/write` (the same, untracked).
    tool: Mutex<&'static str>,
    first_call: Mutex<HashMap<avix_proto::Pid, Instant>>,
}

impl LlmClient for MockLlm {
    fn complete(
        &self,
        req: LlmRequest,
        _sink: Option<StreamSink>,
    ) -> BoxFuture<'_, Result<LlmResponse, LlmError>> {
        self.first_call
            .lock()
            .unwrap()
            .entry(req.meta.pid)
            .or_insert_with(Instant::now);
        let k = req
            .messages
            .iter()
            .filter(|m| m.role == MessageRole::Assistant)
            .count();
        let tool = *self.tool.lock().unwrap();
        let input = if tool == "bench/noop" {
            serde_json::json!({})
        } else {
            serde_json::json!({"path": format!("w-{}-{k}.txt", req.meta.pid), "content": "x".repeat(100)})
        };
        let (content, stop) = if k + 1 < self.turns {
            (
                vec![ContentBlock::ToolUse {
                    id: format!("c{k}"),
                    name: tool.into(),
                    input,
                }],
                StopReason::ToolUse,
            )
        } else {
            (
                vec![ContentBlock::Text {
                    text: "done".into(),
                }],
                StopReason::EndTurn,
            )
        };
        Box::pin(async move {
            Ok(LlmResponse {
                provider: "mock".into(),
                model: "mock".into(),
                content,
                stop_reason: stop,
                usage: Usage {
                    input_tokens: 10,
                    output_tokens: 5,
                },
                cost_usd: None,
                queued_ms: 0,
            })
        })
    }
}

async fn noop(_cx: ToolContext, _args: serde_json::Value) -> Result<serde_json::Value, ToolError> {
    Ok(serde_json::json!({"ok": true}))
}

/// `fs/write` without the change tracking (the kernel tracks tools by name).
async fn write(cx: ToolContext, args: serde_json::Value) -> Result<serde_json::Value, ToolError> {
    let path = avix_kernel::tools::fs::resolve(&cx, args["path"].as_str().unwrap_or("x"))?;
    let content = args["content"].as_str().unwrap_or("").to_owned();
    let caller = cx.process.caller.clone();
    let vfs = cx.kernel.vfs().clone();
    tokio::task::spawn_blocking(move || vfs.write(&caller, &path, content.as_bytes()))
        .await
        .map_err(|e| ToolError::new("EIO", e.to_string()))?
        .map_err(|e| ToolError::new("EIO", e.to_string()))?;
    Ok(serde_json::json!({"ok": true}))
}

const MANIFEST: &str = "apiVersion: avix/v1\nkind: Agent\nmetadata: {name: bench, version: 1.0.0}\nspec:\n  tools: {required: [bench/noop, bench/write, fs/write]}\n  limits: {maxTurns: 50, maxToolCalls: 50}\n";

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn hwm_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn setup(turns: usize) -> (tempfile::TempDir, Arc<Kernel>, Arc<MockLlm>, UserName) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let alice = UserName::new("alice").unwrap();
    avix_server::init::run(&InitOptions::admin(root.clone(), alice.clone())).unwrap();
    // Room for 1,000 agents.
    let kpath = root.join("etc/kernel.yaml");
    let k = std::fs::read_to_string(&kpath)
        .unwrap()
        .replace("maxConcurrentAgents: 100", "maxConcurrentAgents: 5000");
    std::fs::write(&kpath, k).unwrap();
    let users = std::fs::read_to_string(root.join("etc/users.yaml"))
        .unwrap()
        .replace("agents: 5", "agents: unlimited");
    std::fs::write(root.join("etc/users.yaml"), users).unwrap();
    let layout = RootLayout::new(&root);
    let master = MasterKey::from_file(&layout.etc_file("master.key")).unwrap();
    let llm = Arc::new(MockLlm {
        turns,
        tool: Mutex::new("bench/noop"),
        first_call: Mutex::new(HashMap::new()),
    });
    let kernel = Kernel::boot(
        layout,
        &master,
        BootOptions {
            llm: Some(llm.clone()),
            ..BootOptions::new(tokio::runtime::Handle::current())
        },
    )
    .unwrap();
    let d = ToolDescriptor {
        name: ToolName::new("bench/noop").unwrap(),
        description: "does nothing".into(),
        owner: "bench".into(),
        category: Category::Direct,
        state: ToolState::Available,
        input_schema: serde_json::json!({"type": "object"}),
    };
    kernel.tools().register(
        kernel.vfs(),
        d.clone(),
        Arc::new(noop) as Arc<dyn ToolHandler>,
    );
    kernel.tools().register(
        kernel.vfs(),
        ToolDescriptor {
            name: ToolName::new("bench/write").unwrap(),
            description: "writes a file".into(),
            ..d
        },
        Arc::new(write) as Arc<dyn ToolHandler>,
    );
    let k = Caller::kernel();
    kernel
        .vfs()
        .create_dir(&k, &VfsPath::parse("/bin/bench@1.0.0").unwrap())
        .unwrap();
    kernel
        .vfs()
        .write(
            &k,
            &VfsPath::parse("/bin/bench@1.0.0/agent.yaml").unwrap(),
            MANIFEST.as_bytes(),
        )
        .unwrap();
    (dir, kernel, llm, alice)
}

fn req(interactive: bool) -> SpawnRequest {
    SpawnRequest {
        agent: AgentName::new("bench").unwrap(),
        goal: "bench".into(),
        model: None,
        tools: None,
        interactive: Some(interactive),
        session: None,
        params: Default::default(),
    }
}

#[allow(clippy::cast_possible_truncation)] // an index into v
fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // AVIX_BENCH_ONLY=snapshot (first-llm, spawns, turns, changes, router, snapshot) runs one section.
    let only = std::env::var("AVIX_BENCH_ONLY").ok();
    if let Ok(filter) = std::env::var("AVIX_BENCH_LOG") {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    // 1. Spawn to first LLM request, one at a time.
    if run("first-llm") {
        let (_d, kernel, llm, alice) = setup(1);
        let mut lat = Vec::new();
        for _ in 0..200 {
            let t0 = Instant::now();
            let p = kernel
                .spawn(&caller(&kernel, &alice), req(false), None)
                .await
                .unwrap();
            loop {
                if let Some(t) = llm.first_call.lock().unwrap().get(&p.pid) {
                    lat.push(*t - t0);
                    break;
                }
                tokio::task::yield_now().await;
            }
            p.wait().await;
        }
        println!(
            "spawn to first LLM request (200 spawns, one at a time): p50 {:?}, p99 {:?}",
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99)
        );
    }
    // 2. 1,000 spawns: sequential and concurrent; 3. memory per idle agent.
    if run("spawns") {
        let (_d, kernel, _llm, alice) = setup(1);
        let before = rss_kib();
        let t0 = Instant::now();
        let mut procs = Vec::new();
        for _ in 0..1000 {
            procs.push(
                kernel
                    .spawn(&caller(&kernel, &alice), req(true), None)
                    .await
                    .unwrap(),
            );
        }
        let seq = t0.elapsed();
        for p in &procs {
            while p.state() != ProcState::Waiting {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let idle = rss_kib().saturating_sub(before);
        println!("1,000 agents spawned one after another: {seq:?}");
        println!(
            "memory per idle agent (RSS growth / 1,000 agents waiting for input): {} KiB",
            idle / 1000
        );
        for p in &procs {
            let _ = kernel.signal(&Caller::kernel(), p, avix_kernel::process::Signal::Kill);
        }
        let t0 = Instant::now();
        let spawns = (0..1000).map(|_| {
            let k = kernel.clone();
            let a = alice.clone();
            tokio::spawn(async move { k.spawn(&caller(&k, &a), req(false), None).await.unwrap() })
        });
        let handles: Vec<_> = spawns.collect();
        let mut done = Vec::new();
        for h in handles {
            done.push(h.await.unwrap());
        }
        println!("1,000 agents spawned concurrently: {:?}", t0.elapsed());
        for p in done {
            p.wait().await;
        }
    }
    // 4. 1,000 concurrent agents x 10 turns, a tool call per turn.
    if run("turns") {
        let (_d, kernel, _llm, alice) = setup(10);
        let (wall, calls, ok) = thousand_by_ten(&kernel, &alice).await;
        println!(
            "1,000 concurrent agents x 10 turns ({ok} completed, {calls} tool calls): wall {wall:?}, {:.1} µs of wall per tool call, peak RSS {} MiB",
            wall.as_secs_f64() * 1e6 / calls.max(1) as f64,
            hwm_kib() / 1024,
        );
    }
    // 4b. The same where every call writes a new file: tracked (fs/write, whose change set
    // is journaled) against untracked (bench/write, the same write), alternating rounds.
    if run("changes") {
        let (_d, kernel, llm, alice) = setup(10);
        let (mut tracked, mut untracked) = (Vec::new(), Vec::new());
        for round in 0..6 {
            let tool = if round % 2 == 0 {
                "bench/write"
            } else {
                "fs/write"
            };
            *llm.tool.lock().unwrap() = tool;
            let (wall, calls, ok) = thousand_by_ten(&kernel, &alice).await;
            assert_eq!(ok, 1000, "{tool}: every run completes");
            assert_eq!(calls, 9000);
            if tool == "fs/write" {
                tracked.push(wall);
            } else {
                untracked.push(wall);
            }
        }
        let (t, u) = (pct(&mut tracked, 0.5), pct(&mut untracked, 0.5));
        println!(
            "1,000 agents x 10 turns, each call writing a new file: with change sets {t:?}, without {u:?} (median of 3 each): {:+.1} % per turn",
            (t.as_secs_f64() / u.as_secs_f64() - 1.0) * 100.0
        );
    }
    // 5. Router dispatch overhead: policy check + invoke of a no-op tool, in-process.
    if run("router") {
        let (_d, kernel, _llm, alice) = setup(1);
        let mut r = req(true);
        r.interactive = Some(true);
        let p = kernel
            .spawn(&caller(&kernel, &alice), r, None)
            .await
            .unwrap();
        let n = 100_000;
        let t0 = Instant::now();
        for i in 0..n {
            let Check::Allow(entry) = kernel.check_call(&p, "bench/noop") else {
                panic!("not allowed")
            };
            let _ = kernel
                .invoke(&p, &format!("c{i}"), &entry, serde_json::json!({}))
                .await
                .unwrap();
        }
        println!(
            "router dispatch (policy check + invoke of a no-op tool): {:.2} µs per call",
            t0.elapsed().as_secs_f64() * 1e6 / f64::from(n)
        );
    }
    // 6. Snapshot and restore of an agent with a 200-message conversation and a 10 MB
    // workspace (the workspace copied with the snapshot).
    if run("snapshot") {
        let (_d, kernel, _llm, alice) = setup(45);
        let k = Caller::kernel();
        kernel
            .vfs()
            .create_dir(&k, &VfsPath::parse("/bin/benchlong@1.0.0").unwrap())
            .unwrap();
        kernel
            .vfs()
            .write(
                &k,
                &VfsPath::parse("/bin/benchlong@1.0.0/agent.yaml").unwrap(),
                MANIFEST
                    .replace("name: bench,", "name: benchlong,")
                    .replace(
                        "maxTurns: 50, maxToolCalls: 50",
                        "maxTurns: 200, maxToolCalls: 200",
                    )
                    .as_bytes(),
            )
            .unwrap();
        let chunk = vec![b'x'; 1024 * 1024];
        for i in 0..10 {
            kernel
                .vfs()
                .write(
                    &k,
                    &VfsPath::parse(&format!("/users/alice/workspace/blob{i}.bin")).unwrap(),
                    &chunk,
                )
                .unwrap();
        }
        let mut r = req(true);
        r.agent = AgentName::new("benchlong").unwrap();
        let me = caller(&kernel, &alice);
        let p = kernel.spawn(&me, r, None).await.unwrap();
        // 44 tool turns (under kernel.yaml's tool-chain limit) and an answer, then 55 inputs
        // answered: 200 messages.
        let waiting = |p: &avix_kernel::process::Process, turns: u64| {
            p.state() == ProcState::Waiting && p.inner().turns >= turns
        };
        let t0 = Instant::now();
        let mut want = 45;
        for n in 0..=55 {
            if n > 0 {
                kernel
                    .signal(&me, &p, avix_kernel::process::Signal::Input("more".into()))
                    .unwrap();
                want += 1;
            }
            while !waiting(&p, want) {
                assert!(
                    !p.state().is_terminal(),
                    "the long run ended: {:?}",
                    p.exit()
                );
                assert!(
                    t0.elapsed() < Duration::from_secs(120),
                    "the long run is stuck"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let (mut save, mut restore) = (Vec::new(), Vec::new());
        for _ in 0..10 {
            let t0 = Instant::now();
            let path = kernel.save_snapshot(&me, &p).unwrap();
            save.push(t0.elapsed());
            let t0 = Instant::now();
            let q = kernel.restore_file(&me, &path, false).await.unwrap();
            while q.state() != ProcState::Waiting {
                assert!(
                    !q.state().is_terminal(),
                    "the restored run ended: {:?}",
                    q.exit()
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            restore.push(t0.elapsed());
            kernel
                .signal(&me, &q, avix_kernel::process::Signal::Kill)
                .unwrap();
        }
        let conv = kernel
            .invocation_as(&me, p.journal.id())
            .map(|(_, c)| c.len())
            .unwrap_or(0);
        println!(
            "snapshot of an agent with {conv} messages and a 10 MB workspace: save p50 {:.1} ms, \
             restore (to waiting again) p50 {:.1} ms",
            pct(&mut save, 0.5).as_secs_f64() * 1e3,
            pct(&mut restore, 0.5).as_secs_f64() * 1e3
        );
        let mut fork = Vec::new();
        for _ in 0..10 {
            let t0 = Instant::now();
            let q = kernel
                .fork(&me, Some(p.pid), None, Some(20), None)
                .await
                .unwrap();
            fork.push(t0.elapsed());
            let _ = kernel.signal(&me, &q, avix_kernel::process::Signal::Kill);
        }
        println!(
            "fork of that agent at turn 20 (its conversation to turn 20, a copy of the 10 MB workspace): p50 {:.1} ms",
            pct(&mut fork, 0.5).as_secs_f64() * 1e3
        );
    }
}

/// Runs 1,000 agents of 10 turns at once; returns the wall time, tool calls and completed runs.
async fn thousand_by_ten(kernel: &Arc<Kernel>, alice: &UserName) -> (Duration, u64, usize) {
    let t0 = Instant::now();
    let handles: Vec<_> = (0..1000)
        .map(|_| {
            let k = kernel.clone();
            let a = alice.clone();
            tokio::spawn(async move {
                let p = k.spawn(&caller(&k, &a), req(false), None).await.unwrap();
                let e = p.wait().await;
                (e.state, p.inner().tool_calls)
            })
        })
        .collect();
    let (mut calls, mut ok) = (0, 0);
    for h in handles {
        let (state, n) = h.await.unwrap();
        calls += n;
        if state == ProcState::Completed {
            ok += 1;
        }
    }
    (t0.elapsed(), calls, ok)
}

/// `user` as the kernel spawns for them.
fn caller(k: &Kernel, user: &UserName) -> avix_vfs::Caller {
    k.config()
        .get()
        .caller_for(user, avix_vfs::Door::Kernel)
        .unwrap()
}
