//! Attacks, written from the attacker's side (issue 10): each test does what the attack run in
//! `shared/reviews/security-2026-11.md` did and checks that it no longer works.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use avix_proto::Role;
use avix_proto::atp::{ErrorCode, SpawnReply};
use serde_json::json;

use crate::atp::{Atp, code, start};
use crate::common::{TestKernel, p};

/// Installs `/users/<user>/bin/<name>@1.0.0` needing `tools`.
/// An ATP daemon with exec.svc, bob (role user, every tool granted) and his API key.
async fn with_bob() -> (Atp, avix_ipc::Ipc, String) {
    let a = start().await;
    let ipc = avix_ipc::Ipc::start(&a.t.kernel).unwrap();
    let key = a.t.add_user("bob", Role::User, 1101);
    (a, ipc, key)
}

/// Runs bob's agent `name` on `script` over ATP and waits for it to end; returns the journal's
/// tool results.
async fn run_as_bob(a: &Atp, key: &str, name: &str, script: &str) -> Vec<(bool, String)> {
    let c = a.client("bob", key).await;
    a.t.script(name, script);
    let r: SpawnReply = c
        .call_as(
            "proc",
            "spawn",
            json!({"agent": name, "goal": "go", "model": format!("scripted/{name}")}),
        )
        .await
        .unwrap();
    let proc = a.t.kernel.procs().get(r.pid).expect("the agent runs");
    crate::common::wait_exit(&proc).await;
    crate::services::tool_results(&a.t, &proc)
}

fn host_path(a: &Atp, rel: &str) -> std::path::PathBuf {
    a.t.kernel.layout().data().join("users").join(rel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_made_in_the_sandbox_leads_nowhere_through_atp_or_agent_tools() {
    // Issue 10, item 1: the sandbox plants `r -> /` (and `w -> the daemon's own root`), then
    // bob reads and writes through it, over ATP and with his agent's fs tools.
    let (a, _ipc, key) = with_bob().await;
    a.t.agent_for("bob", "esc", "exec/shell, fs/read, fs/write, fs/list");
    let victim = a.t.kernel.layout().root().join("pwned-by-bob");
    let script = format!(
        "  turns:\n    - toolCalls: [{{name: exec/shell, args: {{command: 'ln -sfn / /workspace/r; ln -sfn .. /workspace/up; ls -l /workspace'}}}}]\n    - toolCalls: [{{name: fs/read, args: {{path: r/etc/shadow}}}}]\n    - toolCalls: [{{name: fs/write, args: {{path: 'r{}', content: x}}}}]\n    - toolCalls: [{{name: fs/list, args: {{path: r/etc}}}}]\n    - toolCalls: [{{name: fs/read, args: {{path: up/alice/workspace/secret.txt}}}}]\n    - text: done\n",
        victim.display()
    );
    a.t.kernel
        .vfs()
        .write(
            &a.t.alice_caller(),
            &p("/users/alice/workspace/secret.txt"),
            b"alice's",
        )
        .unwrap();
    let results = run_as_bob(&a, &key, "esc", &script).await;
    assert_eq!(results.len(), 5, "{results:?}");
    assert!(results[0].0, "the sandbox made its links: {}", results[0].1);
    assert!(
        std::fs::symlink_metadata(host_path(&a, "bob/workspace/r"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link exists on the host"
    );
    for (ok, text) in &results[1..] {
        assert!(!ok, "an agent tool went through the link: {text}");
        assert!(!text.contains("root:"), "{text}");
    }
    // Bob himself, over ATP.
    let c = a.client("bob", &key).await;
    for path in [
        "/users/bob/workspace/r/etc/shadow",
        "/users/bob/workspace/r/proc/self/environ",
        "/users/bob/workspace/up/alice/workspace/secret.txt",
    ] {
        let e = c
            .call("fs", "read", json!({"path": path}))
            .await
            .unwrap_err();
        assert_eq!(code(&e), ErrorCode::ENOTFOUND, "{path}: {e}");
    }
    let e = c
        .call("fs", "list", json!({"path": "/users/bob/workspace/r/etc"}))
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::ENOTFOUND, "{e}");
    let e = c
        .call(
            "fs",
            "stat",
            json!({"path": "/users/bob/workspace/r/etc/passwd"}),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::ENOTFOUND, "{e}");
    let w = format!("/users/bob/workspace/r{}", victim.display());
    assert!(
        c.call("fs", "write", json!({"path": w, "content": "x"}))
            .await
            .is_err()
    );
    assert!(
        c.call(
            "fs",
            "delete",
            json!({"path": "/users/bob/workspace/r/etc/hostname"})
        )
        .await
        .is_err()
    );
    assert!(!victim.exists(), "nothing was written outside the tree");
    // The link itself is not part of the VFS: not listed, not readable.
    let list = c
        .call("fs", "list", json!({"path": "/users/bob/workspace"}))
        .await
        .unwrap();
    assert!(!list.to_string().contains("\"r\""), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setuid_copy_made_in_the_sandbox_makes_no_one_root() {
    // Issue 10, item 2: `cp /usr/bin/python3 py; chmod 4755 py` in the sandbox, then a local
    // account runs it on the host.
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let (a, _ipc, key) = with_bob().await;
    a.t.agent_for("bob", "suid", "exec/shell");
    let script = "  turns:\n    - toolCalls: [{name: exec/shell, args: {command: 'cp /usr/bin/python3 py && chmod 4755 py && cp py py2 && chmod 6755 py2 && ls -ln py py2; grep \" /workspace \" /proc/self/mountinfo'}}]\n    - text: done\n";
    let results = run_as_bob(&a, &key, "suid", script).await;
    assert!(results[0].0, "{}", results[0].1);
    let out = &results[0].1;
    assert!(out.contains("rwsr-xr-x"), "chmod worked inside: {out}");
    assert!(
        out.contains("nosuid") && out.contains("nodev"),
        "the workspace is nosuid,nodev: {out}"
    );
    let sandbox = nix::unistd::User::from_name("avix-sandbox")
        .unwrap()
        .expect("the account exists");
    for f in ["py", "py2"] {
        let m = std::fs::metadata(host_path(&a, &format!("bob/workspace/{f}"))).unwrap();
        assert_eq!(
            m.uid(),
            sandbox.uid.as_raw(),
            "{f} belongs to the sandbox account, not root"
        );
        assert_eq!(
            m.mode() & 0o6000,
            0,
            "{f}: the set-ID bits were removed after the run"
        );
    }
    // A local account cannot even reach it on the host, nor become root through it.
    let py = host_path(&a, "bob/workspace/py");
    let run = std::process::Command::new("setpriv")
        .args(["--reuid", "2001", "--regid", "2001", "--clear-groups"])
        .arg(&py)
        .args(["-c", "import os; os.setuid(0); print('ROOT')"])
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(!String::from_utf8_lossy(&run.stdout).contains("ROOT"));
    let users = a.t.kernel.layout().data().join("users");
    let mode = std::fs::metadata(&users).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o710,
        "data/users lets only root and the sandbox's group through"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_of_the_daemon_is_readable_inside_the_sandbox() {
    // Issue 10, item 3: bubblewrap is the sandbox's PID 1; its environ was the daemon's.
    // SAFETY: nextest runs each test in its own process, and this one sets the variable
    // before the runtime's other threads read the environment.
    unsafe { std::env::set_var("OPENAI_API_KEY", "sk-test-LEAKCHECK-openai-7f3a") };
    let (a, _ipc, key) = with_bob().await;
    a.t.agent_for("bob", "env", "exec/shell");
    let script = "  turns:\n    - toolCalls: [{name: exec/shell, args: {command: 'for f in /proc/[0-9]*/environ; do tr \"\\\\0\" \"\\\\n\" < $f; done; env'}}]\n    - text: done\n";
    let results = run_as_bob(&a, &key, "env", script).await;
    assert!(results[0].0, "{}", results[0].1);
    assert!(
        results[0].1.contains("PATH="),
        "the sandbox's own environment was read: {}",
        results[0].1
    );
    assert!(!results[0].1.contains("LEAKCHECK"), "{}", results[0].1);
}

/// Runs `cmd path` as host uid `uid` (no groups); true when it succeeded.
fn as_uid(uid: u32, cmd: &str, path: &Path) -> bool {
    std::process::Command::new("setpriv")
        .args([
            "--reuid",
            &uid.to_string(),
            "--regid",
            &uid.to_string(),
            "--clear-groups",
            cmd,
        ])
        .arg(path)
        .output()
        .unwrap()
        .status
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_host_account_reads_nothing_of_the_root() {
    // Issue 10, item 7: data/, workspaces and journals were 0755/0644 on the host.
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let t = TestKernel::boot();
    t.kernel
        .vfs()
        .write(
            &t.alice_caller(),
            &p("/users/alice/workspace/secret.txt"),
            b"top secret",
        )
        .unwrap();
    let proc = t.spawn("assistant", "keep notes", None).await;
    crate::common::wait_exit(&proc).await;
    let l = t.kernel.layout();
    let data = l.data();
    for f in [
        data.join("users/alice/workspace/secret.txt"),
        data.join("users/alice/agents/assistant")
            .join(proc.journal.id().as_str())
            .join("journal.jsonl"),
        l.etc_file("users.yaml"),
        l.etc_file("auth.conf"),
        l.etc_file("master.key"),
    ] {
        assert!(f.exists(), "{}", f.display());
        assert!(!as_uid(2001, "cat", &f), "uid 2001 read {}", f.display());
    }
    for d in [
        l.root().to_path_buf(),
        data.clone(),
        data.join("users"),
        l.etc(),
        l.logs(),
        l.run(),
    ] {
        assert!(!as_uid(2001, "ls", &d), "uid 2001 listed {}", d.display());
    }
    // The mount point stays reachable by name.
    assert!(as_uid(2001, "stat", &l.default_mount()));
}

/// A login from the local address `from` (loopback has a whole /8 to pick from).
async fn login_from(a: &Atp, from: &str, identity: &str, credential: &str) -> u16 {
    let client = reqwest::Client::builder()
        .local_address(from.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    client
        .post(format!("http://{}/atp/auth/login", a.addr))
        .json(&json!({"identity": identity, "credential": credential}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_from_a_shared_address_never_lock_out_a_valid_credential() {
    // Issue 10, items 6 and 13.
    let (a, _ipc, bob) = with_bob().await;
    let carol = a.t.add_user("carol", Role::Admin, 1102);
    // Lock out after 2 failures per identity (the address is slowed after 8).
    a.t.edit("/etc/avix/auth.conf", |auth| {
        assert!(auth.contains("failedAuthLockoutCount: 5"), "{auth}");
        auth.replace("failedAuthLockoutCount: 5", "failedAuthLockoutCount: 2")
    });

    // Anyone on the machine floods logins for made-up users from the shared address…
    for i in 0..8 {
        assert_eq!(
            login_from(&a, "127.0.0.2", &format!("ghost{i}"), "sk-avix-wrong").await,
            401
        );
    }
    assert_eq!(
        login_from(&a, "127.0.0.2", "ghost", "sk-avix-wrong").await,
        401,
        "slowed, refused"
    );
    // …and the admin behind the same address still logs in, with and without naming herself.
    assert_eq!(login_from(&a, "127.0.0.2", "carol", &carol).await, 200);
    assert_eq!(login_from(&a, "127.0.0.2", "", &carol).await, 200);

    // Bob's own lockout holds, also when the key is presented without his name.
    for _ in 0..2 {
        assert_eq!(
            login_from(&a, "127.0.0.3", "bob", "sk-avix-wrong").await,
            401
        );
    }
    assert_eq!(login_from(&a, "127.0.0.3", "bob", &bob).await, 429);
    assert_eq!(
        login_from(&a, "127.0.0.4", "", &bob).await,
        429,
        "no bypass by omitting the name"
    );

    // Wrong keys without a name lock out nobody: there is no one to lock out.
    for _ in 0..3 {
        assert_eq!(login_from(&a, "127.0.0.5", "", "sk-avix-wrong").await, 401);
    }
    assert_eq!(login_from(&a, "127.0.0.5", "", &carol).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_sessions_caps_a_users_open_connections() {
    // Issue 10, item 11: `quota.sessions` was parsed but never enforced.
    let (a, _ipc, bob) = with_bob().await;
    // bob's entry is the last one: give him two.
    a.t.edit("/etc/avix/users.yaml", |users| {
        let at = users.rfind("sessions: 4").expect("bob's quota");
        format!(
            "{}sessions: 2{}",
            &users[..at],
            &users[at + "sessions: 4".len()..]
        )
    });
    let one = a.client("bob", &bob).await;
    let two = a.client("bob", &bob).await;
    let third = a.try_client("bob", &bob).await.unwrap_err().to_string();
    assert!(third.contains("quota.sessions allows 2"), "{third}");
    // Another user is not affected by bob's count.
    let carol = a.t.add_user("carol", Role::User, 1102);
    a.client("carol", &carol).await;
    // Closing one frees a place.
    drop(one);
    let mut ok = false;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if a.try_client("bob", &bob).await.is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok, "a place was freed");
    drop(two);
}
