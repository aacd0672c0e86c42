//! exec.svc: each sandbox promise, tested by running code that tries to break it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use avix_kernel::process::Process;
use avix_proto::agent::ProcState;

use crate::common::{TestKernel, p, wait_exit, wait_state};

struct Sandbox {
    t: TestKernel,
    _ipc: avix_ipc::Ipc,
    proc: Arc<Process>,
}

/// A kernel with exec.svc, kernel.yaml `exec:` set to `exec_yaml`, and an idle agent holding
/// `tools`.
async fn sandbox(exec_yaml: &str, tools: &str) -> Sandbox {
    let t = TestKernel::boot();
    let path = p("/etc/avix/kernel.yaml");
    let mut k = String::from_utf8(
        t.kernel
            .vfs()
            .read(&avix_vfs::Caller::kernel(), &path)
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    if !exec_yaml.is_empty() {
        // Set each `key: value` in the exec section config init wrote.
        for kv in exec_yaml.split(", ") {
            let key = kv.split(':').next().unwrap();
            let at = k
                .find("  exec:\n")
                .expect("kernel.yaml has an exec section");
            let start = at + k[at..].find(&format!(" {key}: ")).expect(key) + 1;
            let end = start + k[start..].find('\n').unwrap();
            k.replace_range(start..end, kv);
        }
        t.kernel
            .vfs()
            .write(&avix_vfs::Caller::kernel(), &path, k.as_bytes())
            .unwrap();
    }
    let ipc = avix_ipc::Ipc::start(&t.kernel).unwrap();
    t.agent("runner", tools);
    let mut req = TestKernel::req("runner", "wait", None);
    req.interactive = Some(true);
    let proc = t.kernel.spawn(&t.alice_caller(), req, None).await.unwrap();
    wait_state(&proc, ProcState::Waiting, Some("input")).await;
    Sandbox { t, _ipc: ipc, proc }
}

impl Sandbox {
    async fn run(&self, tool: &str, args: serde_json::Value) -> Result<serde_json::Value, String> {
        let entry = self.t.kernel.tools().get(tool).unwrap();
        self.t
            .kernel
            .invoke(&self.proc, "call-1", &entry, args)
            .await
            .map_err(|e| e.to_string())
    }

    async fn py(&self, code: &str) -> serde_json::Value {
        self.run("exec/python", serde_json::json!({ "code": code }))
            .await
            .unwrap()
    }
}

const EXEC: &str = "exec/python, exec/shell";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_runs_in_the_workspace_and_cannot_read_outside_it() {
    let s = sandbox("", EXEC).await;
    let ws = s.t.kernel.layout().data().join("users/alice/workspace");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("in.txt"), "inside").unwrap();
    let r = s
        .py("import os\nprint(os.getcwd(), open('in.txt').read())\nopen('out.txt','w').write('made here')")
        .await;
    assert_eq!(r["exitCode"], 0, "{r}");
    assert_eq!(r["stdout"], "/workspace inside\n");
    assert_eq!(
        std::fs::read_to_string(ws.join("out.txt")).unwrap(),
        "made here"
    );
    // The daemon's files, other trees and host secrets are simply not there.
    let users_yaml = s.t.kernel.layout().etc_file("users.yaml");
    let code = format!(
        "import os\nfor p in [{:?}, '/etc/shadow', '/root', '/proc/1/root/etc/hostname', '../../../etc/avix']:\n    try:\n        open(p).read(); print('READ', p)\n    except OSError as e:\n        print('no', p, type(e).__name__)\nprint(sorted(os.listdir('/')))",
        users_yaml.display().to_string()
    );
    let r = s.py(&code).await;
    let out = r["stdout"].as_str().unwrap();
    assert!(!out.contains("READ"), "{out}");
    assert!(
        out.contains(
            "['bin', 'dev', 'etc', 'lib', 'lib64', 'proc', 'sbin', 'tmp', 'usr', 'workspace']"
        ),
        "{out}"
    );
    // exec/shell too, with its own argument name.
    let r = s
        .run(
            "exec/shell",
            serde_json::json!({"command": "cat in.txt; id -u; echo $HOME"}),
        )
        .await
        .unwrap();
    assert_eq!(r["stdout"], "inside65534\n/workspace\n", "{r}");
    // Its /etc/passwd names only the sandbox user, not the host's accounts.
    let r = s.py("print(open('/etc/passwd').read(), end='')").await;
    assert_eq!(
        r["stdout"], "sandbox:x:65534:65534:Avix sandbox:/workspace:/bin/sh\n",
        "{r}"
    );
    let e = s
        .run("exec/shell", serde_json::json!({"code": "x"}))
        .await
        .unwrap_err();
    assert!(e.contains("exec/shell takes command"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_cannot_write_etc_or_anything_outside_the_workspace() {
    let s = sandbox("", EXEC).await;
    let marker = format!("avix-sandbox-{}", std::process::id());
    let r = s
        .py(&format!(
            "for p in ['/etc/{marker}', '/usr/{marker}', '/{marker}']:\n    try:\n        open(p,'w').write('x'); print('WROTE', p)\n    except OSError as e:\n        print('no', p, e.errno)"
        ))
        .await;
    let out = r["stdout"].as_str().unwrap();
    assert!(!out.contains("WROTE"), "{out}");
    assert!(out.contains("no /etc/"), "{out}");
    assert!(!std::path::Path::new(&format!("/etc/{marker}")).exists());
    // /tmp is writable, private and gone afterwards.
    let r = s.py("open('/tmp/t','w').write('x'); print('ok')").await;
    assert_eq!(r["stdout"], "ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_network_unless_granted() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let code = format!(
        "import socket\ntry:\n    s = socket.create_connection(('127.0.0.1', {port}), timeout=2); print('CONNECTED')\nexcept OSError as e:\n    print('refused', e)"
    );
    let s = sandbox("", EXEC).await;
    let r = s.py(&code).await;
    assert!(r["stdout"].as_str().unwrap().starts_with("refused"), "{r}");
    let e = s
        .run(
            "exec/python",
            serde_json::json!({"code": code, "network": true}),
        )
        .await
        .unwrap_err();
    assert!(e.contains("needs the exec/network grant"), "{e}");

    let granted = sandbox("", "exec/python, exec/network").await;
    let r = granted
        .run(
            "exec/python",
            serde_json::json!({"code": code, "network": true}),
        )
        .await
        .unwrap();
    assert_eq!(r["stdout"], "CONNECTED\n", "{r}");
    // Granted but not asked for: still no network.
    let r = granted.py(&code).await;
    assert!(r["stdout"].as_str().unwrap().starts_with("refused"), "{r}");
    let r = granted
        .run("exec/network", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(r["network"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_hits_the_process_limit_and_ends() {
    let s = sandbox("processes: 16, timeoutSecs: 20", EXEC).await;
    let t = Instant::now();
    let r = s
        .run(
            "exec/shell",
            serde_json::json!({"command": "bomb() { bomb | bomb & }; bomb; sleep 2; echo survived", "timeoutSecs": 10}),
        )
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    let err = r["stderr"].as_str().unwrap();
    assert!(
        err.contains("fork") || err.contains("Resource temporarily unavailable"),
        "{r}"
    );
    let r = s
        .py("import os\nn=0\ntry:\n    while True:\n        if os.fork() == 0:\n            import time; time.sleep(5); os._exit(0)\n        n += 1\nexcept OSError as e:\n    print('stopped after', n, e.errno)")
        .await;
    let out = r["stdout"].as_str().unwrap();
    let n: u32 = out.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(n < 16, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_memory_time_and_output_are_capped() {
    let s = sandbox(
        "fileSizeMb: 4, memoryMb: 256, outputBytes: 1000, tmpMb: 2",
        EXEC,
    )
    .await;
    // A file cannot grow past fileSizeMb.
    let r = s
        .py("f = open('big.bin','wb')\ntry:\n    for i in range(100): f.write(b'x' * (1 << 20))\nexcept OSError as e:\n    print('stopped', e.errno)")
        .await;
    assert_eq!(r["stdout"], "stopped 27\n", "{r}"); // EFBIG
    let ws = s.t.kernel.layout().data().join("users/alice/workspace");
    assert!(std::fs::metadata(ws.join("big.bin")).unwrap().len() <= 4 << 20);
    // /tmp is a small tmpfs.
    let r = s
        .py("try:\n    open('/tmp/fill','wb').write(b'x' * (3 << 20))\nexcept OSError as e:\n    print('full', e.errno)")
        .await;
    assert_eq!(r["stdout"], "full 28\n", "{r}"); // ENOSPC
    // Memory.
    let r = s
        .py("try:\n    b = bytearray(512 << 20)\nexcept MemoryError:\n    print('no memory')")
        .await;
    assert_eq!(r["stdout"], "no memory\n", "{r}");
    // Output is truncated, and says so.
    let r = s.py("print('y' * 5000)").await;
    assert_eq!(r["stdout"].as_str().unwrap().len(), 1000);
    assert_eq!(r["truncated"], true);
    assert_eq!(r["stdoutBytes"], 5001);
    // Wall-clock timeout.
    let t = Instant::now();
    let r = s
        .run(
            "exec/shell",
            serde_json::json!({"command": "echo started; sleep 30", "timeoutSecs": 1}),
        )
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(r["timedOut"], true, "{r}");
    assert_eq!(r["stdout"], "started\n");
    // A workspace over its quota refuses new runs.
    std::fs::write(ws.join("pad.bin"), vec![0u8; 2 << 20]).unwrap();
    let s2 = sandbox("workspaceQuotaMb: 1", EXEC).await;
    let ws2 = s2.t.kernel.layout().data().join("users/alice/workspace");
    std::fs::create_dir_all(&ws2).unwrap();
    std::fs::write(ws2.join("pad.bin"), vec![0u8; 2 << 20]).unwrap();
    let e = s2
        .run("exec/python", serde_json::json!({"code": "print(1)"}))
        .await
        .unwrap_err();
    assert!(e.contains("over its quota"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_agent_kills_its_code() {
    let t = TestKernel::boot();
    let _ipc = avix_ipc::Ipc::start(&t.kernel).unwrap();
    t.agent("sleeper", EXEC);
    // The code reaches the sandbox on stdin; the sleep's own argv is what shows in ps.
    let marker = format!("sleep {}.{}", 300 + std::process::id() % 600, 37);
    t.script(
        "sleep",
        &format!("  turns:\n    - toolCalls: [{{name: exec/shell, args: {{command: \"{marker}\"}}}}]\n    - text: done\n"),
    );
    let proc = t.spawn("sleeper", "sleep", Some("sleep")).await;
    let running = || {
        std::process::Command::new("pgrep")
            .args(["-f", &marker])
            .output()
            .unwrap()
            .status
            .success()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !running() {
        assert!(
            Instant::now() < deadline,
            "the sandboxed sleep never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.kernel
        .signal(
            &avix_vfs::Caller::kernel(),
            &proc,
            avix_kernel::process::Signal::Kill,
        )
        .unwrap();
    let exit = wait_exit(&proc).await;
    assert_eq!(exit.state, ProcState::Killed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while running() {
        assert!(
            Instant::now() < deadline,
            "the sandboxed sleep outlived its agent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_loop_is_stopped_at_its_cpu_limit() {
    let s = sandbox("cpuSecs: 1, timeoutSecs: 20", EXEC).await;
    let t = Instant::now();
    let r = s.py("while True:\n    pass").await;
    // SIGXCPU at the soft limit (which is also the hard one): killed, not timed out.
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert_eq!(r["timedOut"], false, "{r}");
    assert_ne!(r["exitCode"], 0, "{r}");
}

/// The workspace lines of `proc`'s journal, once there are some (the journal is written a
/// moment after the call).
fn workspace_lines(t: &TestKernel, proc: &Process) -> Vec<avix_proto::agent::JournalEvent> {
    let lines = || -> Vec<_> {
        t.journal(proc)
            .into_iter()
            .map(|e| e.event)
            .filter(|e| matches!(e, avix_proto::agent::JournalEvent::Workspace { .. }))
            .collect()
    };
    for _ in 0..500 {
        let l = lines();
        if !l.is_empty() {
            return l;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    lines()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_code_changes_is_journaled_and_a_fork_runs_code_in_its_own_copy() {
    let s = sandbox("", EXEC).await;
    let ws = s.t.kernel.layout().data().join("users/alice/workspace");
    std::fs::create_dir_all(ws.join("src")).unwrap();
    std::fs::write(ws.join("src/keep.txt"), "keep").unwrap();
    std::fs::write(ws.join("edit.txt"), "v1").unwrap();
    std::fs::write(ws.join("gone.txt"), "bye").unwrap();
    let r = s
        .run(
            "exec/shell",
            serde_json::json!({"command": "echo v2 > edit.txt; rm gone.txt; mkdir -p out; echo hi > out/new.txt; ln -s /etc/shadow secret; ln -s ../../.. up"}),
        )
        .await
        .unwrap();
    assert_eq!(r["exitCode"], 0, "{r}");
    let got = workspace_lines(&s.t, &s.proc);
    let [
        avix_proto::agent::JournalEvent::Workspace {
            changes, untracked, ..
        },
    ] = &got[..]
    else {
        panic!("one workspace line: {got:?}");
    };
    assert_eq!(untracked, &None);
    let files: Vec<_> = changes
        .iter()
        .map(|c| (c.status().unwrap().letter(), c.path.as_str()))
        .collect();
    // Links are not followed (nor counted as files): the host's /etc/shadow stays out.
    assert_eq!(
        files,
        [('M', "edit.txt"), ('D', "gone.txt"), ('A', "out/new.txt")]
    );
    let objects =
        s.t.kernel
            .layout()
            .data()
            .join("users/alice/snapshots/objects");
    for e in std::fs::read_dir(&objects).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        assert!(
            !String::from_utf8_lossy(&data).contains("root:"),
            "a host file was stored"
        );
    }
    // The earlier contents are kept for forks.
    let c = |p: &str| changes.iter().find(|c| c.path == p).unwrap();
    let k = &s.t.kernel;
    assert_eq!(
        &k.read_object("alice", c("edit.txt").before.as_deref().unwrap())
            .unwrap()[..],
        b"v1"
    );
    assert_eq!(
        &k.read_object("alice", c("gone.txt").before.as_deref().unwrap())
            .unwrap()[..],
        b"bye"
    );

    // A fork of the waiting run at turn 0, i.e. before any of it: the workspace as it was,
    // and code it runs works there, not in the parent's workspace.
    let fork = k
        .fork(&s.t.alice_caller(), Some(s.proc.pid), None, Some(0), None)
        .await
        .unwrap();
    wait_state(&fork, ProcState::Waiting, Some("input")).await;
    let entry = k.tools().get("exec/shell").unwrap();
    let r = k
        .invoke(
            &fork,
            "call-f",
            &entry,
            serde_json::json!({"command": "cat edit.txt gone.txt; ls out 2>&1; echo forked > edit.txt"}),
        )
        .await
        .unwrap();
    assert!(r["stdout"].as_str().unwrap().starts_with("v1bye"), "{r}");
    let host = k
        .layout()
        .data()
        .join(fork.workspace.trim_start_matches('/'));
    assert_eq!(
        std::fs::read_to_string(host.join("edit.txt")).unwrap(),
        "forked\n"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("src/keep.txt")).unwrap(),
        "keep"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("edit.txt")).unwrap(),
        "v2\n"
    );
    // The fork's own change set.
    let got = workspace_lines(&s.t, &fork);
    assert_eq!(got.len(), 1, "{got:?}");
}
