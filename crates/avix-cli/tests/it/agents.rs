//! Agents driven through the mount with shell tools.

use avix_testkit::{TestDaemon, require_fuse};

use crate::{bin, repo};

fn running() -> Option<TestDaemon> {
    if !require_fuse() {
        return None;
    }
    let mut d = TestDaemon::init(bin());
    d.start();
    Some(d)
}

fn run_script(d: &TestDaemon, name: &str) {
    let out = std::process::Command::new("bash")
        .arg(repo().join("tests/shell").join(name))
        .env("M", &d.mount)
        .env("AVIX_USER", "alice")
        .env("AVIX", bin())
        .env("HOME", d.dir.path())
        .env_remove("AVIX_CLIENT_CONFIG")
        .env("AVIX_SERVER", format!("http://127.0.0.1:{}", d.port))
        .env("AVIX_API_KEY", &d.api_key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name}:\n{}{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        d.log_text()
    );
}

#[test]
fn a_bash_script_drives_an_agent_through_proc() {
    let Some(d) = running() else { return };
    run_script(&d, "agent_lifecycle.sh");
}

#[test]
fn a_snapshot_is_saved_and_restored_with_echo_and_cat() {
    let Some(d) = running() else { return };
    run_script(&d, "agent_snapshot.sh");
}

#[test]
fn a_run_is_forked_at_a_turn_and_diffed_with_the_ctl_file_and_the_cli() {
    let Some(d) = running() else { return };
    run_script(&d, "agent_fork.sh");
}

#[test]
fn approvals_through_the_hil_file() {
    let Some(d) = running() else { return };
    run_script(&d, "agent_hil.sh");
}

#[test]
fn other_users_cannot_see_or_control_an_agent_and_bad_requests_fail() {
    let Some(d) = running() else { return };
    let pid = d
        .ok("exec 3<>$M/proc/spawn; echo 'assistant keep notes' >&3; read -r pid <&3; echo $pid")
        .trim()
        .to_owned();
    d.ok(&format!("for i in $(seq 1 200); do grep -q 'state: completed' $M/proc/{pid}/status.yaml && exit 0; sleep 0.05; done; exit 1"));
    // Bob (uid 65534) joins through users.yaml.
    let users = d.ok("cat $M/etc/avix/users.yaml");
    std::fs::write(d.dir.path().join("u.yaml"), format!("{users}  - username: bob\n    uid: 1002\n    hostUid: 65534\n    additionalTools: ['*']\n")).unwrap();
    d.ok(&format!(
        "cp {} $M/etc/avix/users.yaml",
        d.dir.path().join("u.yaml").display()
    ));
    let bob = |s: &str| format!("setpriv --reuid=65534 --regid=65534 --clear-groups bash -c '{s}'");
    assert!(
        !d.ok(&bob("ls $M/proc")).contains(&pid),
        "alice's agent is not listed for bob"
    );
    // Not listed, and not there either: another user's agent answers "no such file", so
    // nobody learns which PIDs others run (issue 10 item 10).
    let err = d.fails(&bob(&format!("cat $M/proc/{pid}/status.yaml")));
    assert!(err.contains("No such file or directory"), "{err}");
    let err = d.fails(&bob(&format!("stat $M/proc/{pid}")));
    assert!(err.contains("No such file or directory"), "{err}");
    let err = d.fails(&bob(&format!("echo kill > $M/proc/{pid}/ctl")));
    assert!(err.contains("No such file or directory"), "{err}");
    // Bob spawns his own.
    let bobs = d.ok(&bob(
        "exec 3<>$M/proc/spawn; echo \"assistant my notes\" >&3; read -r p <&3; echo $p",
    ));
    assert!(bobs.trim().parse::<u64>().is_ok(), "{bobs}");
    // Bad requests.
    let err = d.fails("exec 3<>$M/proc/spawn; echo 'nosuchagent do things' >&3");
    assert!(err.contains("No such file or directory"), "{err}");
    let reason =
        d.ok("exec 3<>$M/proc/spawn; echo 'nosuchagent do things' >&3 2>/dev/null; cat <&3");
    assert!(
        reason.contains(
            "unknown agent \"nosuchagent\": installed agents are assistant, coordinator, researcher"
        ),
        "{reason}"
    );
    let err = d.fails("echo '{\"agent\": 5}' > $M/proc/spawn");
    assert!(err.contains("Invalid argument"), "{err}");
    let err = d.fails("echo kill > $M/proc/99999/ctl");
    assert!(err.contains("No such file or directory"), "{err}");
    let err = d.fails(&format!("echo explode > $M/proc/{pid}/ctl"));
    assert!(err.contains("Invalid argument"), "{err}");
    let log = d.log_text();
    assert!(
        log.contains("spawn refused") && log.contains("ctl command refused"),
        "{log}"
    );
}

#[test]
fn server_run_prints_progress_and_exits_with_the_agent_status() {
    let d = TestDaemon::init(bin());
    let root = d.root.to_str().unwrap();
    let out = d.avix(&["server", "run", "--root", root, "--goal", "Keep notes"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("assistant started for alice (model scripted)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("→ fs/write") && stdout.contains("← fs/read ok"),
        "{stdout}"
    );
    assert!(stdout.contains("completed (exit 0)"), "{stdout}");
    assert!(d.root.join("data/users/alice/workspace/notes.md").exists());

    // A gated call with no terminal to ask is denied; a budget failure exits 1.
    std::fs::write(
        d.root.join("etc/scripts/rm.yaml"),
        "apiVersion: avix/v1\nkind: LlmScript\nspec:\n  turns:\n    - toolCalls: [{name: fs/delete, args: {path: notes.md}}]\n    - text: tried\n",
    )
    .unwrap();
    let out = d.avix(&[
        "server",
        "run",
        "--root",
        root,
        "--goal",
        "clean",
        "--model",
        "scripted/rm",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("denied (no terminal to ask"), "{stdout}");
    assert!(
        d.root.join("data/users/alice/workspace/notes.md").exists(),
        "not deleted"
    );
    let out = d.avix(&[
        "server", "run", "--root", root, "--goal", "x", "--name", "ghost",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown agent \"ghost\""));
}

#[test]
fn runs_continue_after_the_daemon_is_killed_with_their_approvals_pending() {
    let Some(mut d) = running() else { return };
    let mount = d.mount.clone();
    let script = |name: &str, args: &[&str]| {
        std::process::Command::new("bash")
            .arg(repo().join("tests/shell").join(name))
            .args(args)
            .env("M", &mount)
            .env("AVIX_USER", "alice")
            .output()
            .unwrap()
    };
    let out = script("agent_resume_before.sh", &[]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log_text()
    );
    let ids = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let ids: Vec<&str> = ids.split(' ').collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    d.signal(libc::SIGKILL);
    assert!(d.wait_unmounted());
    d.start();
    let out = script("agent_resume_after.sh", &ids);
    assert!(
        out.status.success(),
        "{}{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        d.log_text()
    );
    assert!(d.log_text().contains("interrupted run resumed"));
    d.stop();
}

#[test]
fn every_spawn_idiom_reads_back_its_own_whole_pid() {
    // Issue 11 (control-file protocol): `cat req.yaml >&3; echo >&3; read pid <&3` read `07`
    // for PID 107; line-by-line `printf … >&3` spawned nothing (the close of each duplicate
    // ran the partial request); after a refusal `cat <&3` printed the reason, then a tail of
    // it again.
    let Some(d) = running() else { return };
    d.ok("sed -i 's/agents: 5$/agents: unlimited/' $M/etc/avix/users.yaml");
    let req = d.dir.path().join("req.yaml");
    std::fs::write(&req, "agent: assistant\ngoal: from a file\n").unwrap();
    let is_pid = |s: &str| {
        let p = s.trim();
        assert!(
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()),
            "not a pid: {s:?}"
        );
        p.parse::<u64>().unwrap()
    };
    let from_file = is_pid(&d.ok(&format!(
        "exec 3<>$M/proc/spawn; cat {} >&3; echo >&3; read -r pid <&3; echo $pid",
        req.display()
    )));
    let lines = is_pid(&d.ok(
        "exec 3<>$M/proc/spawn; printf 'agent: assistant\\n' >&3; printf 'goal: line by line\\n' >&3; \
         printf 'interactive: true\\n' >&3; printf '\\n' >&3; read -r pid <&3; echo $pid",
    ));
    let heredoc = is_pid(&d.ok(
        "exec 3<>$M/proc/spawn; cat >&3 <<'EOF'\nagent: assistant\ngoal: a heredoc\n\nEOF\nread -r pid <&3; echo $pid",
    ));
    assert!(from_file < lines && lines < heredoc);
    // The line-by-line request kept its last field: the agent waits for input.
    let st = d.ok(&format!("cat $M/proc/{lines}/status.yaml"));
    assert!(st.contains("goal: line by line"), "{st}");
    // A refusal: the write fails, the reason reads back exactly once.
    let out = d.ok("exec 3<>$M/proc/spawn; echo 'nosuchagent x' >&3 2>/dev/null; cat <&3");
    assert_eq!(out.matches("unknown agent").count(), 1, "{out:?}");
    assert!(
        out.starts_with("error: ") && out.contains("unknown agent \"nosuchagent\""),
        "{out:?}"
    );
    // A request written in one go runs at the close.
    d.ok("printf 'agent: assistant\\ngoal: one shot\\n' > $M/proc/spawn");
    let mut found = false;
    for _ in 0..100 {
        if d.ok("grep -l 'goal: one shot' $M/proc/*/status.yaml 2>/dev/null || true")
            .contains("status.yaml")
        {
            found = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(found, "the one-shot request ran at its close");
    // Fifty shells at once each read their own PID.
    let out = d.ok(
        "for i in $(seq 50); do (exec 3<>$M/proc/spawn; echo \"assistant shell $i\" >&3; read -r p <&3; echo $p) & done; wait",
    );
    let mut pids: Vec<u64> = out.lines().map(is_pid).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 50, "{out}");
}
