//! `avix client` and raw ATP against a real daemon.

use std::io::Write;
use std::process::{Command, Output};

use avix_testkit::{TestDaemon, require_fuse};

use crate::{bin, repo, stderr};

fn running() -> Option<TestDaemon> {
    if !require_fuse() {
        return None;
    }
    let mut d = TestDaemon::init(bin());
    d.start();
    Some(d)
}

/// `avix client ARGS` with the daemon's address and alice's key, and a HOME of its own (no
/// stray client.yaml).
pub(crate) fn client(d: &TestDaemon, args: &[&str]) -> Output {
    client_cmd(d, args).output().unwrap()
}

/// `avix client ARGS` set up for the daemon, not started.
fn client_cmd(d: &TestDaemon, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("client")
        .args(args)
        .env("HOME", d.dir.path())
        .env_remove("AVIX_CLIENT_CONFIG")
        .env_remove("AVIX_USER")
        .env("AVIX_SERVER", format!("http://127.0.0.1:{}", d.port))
        .env("AVIX_API_KEY", &d.api_key);
    c
}

/// `avix client ARGS` with its standard streams piped.
pub(crate) fn client_piped(d: &TestDaemon, args: &[&str]) -> std::process::Child {
    client_cmd(d, args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn ok(d: &TestDaemon, args: &[&str]) -> String {
    let o = client(d, args);
    assert!(
        o.status.success(),
        "avix client {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_reference_readme_manual_session_works_as_written() {
    let Some(d) = running() else { return };
    let out = Command::new("bash")
        .arg(repo().join("tests/shell/atp_manual.sh"))
        .current_dir(d.dir.path())
        .env("PORT", d.port.to_string())
        .env("AVIX_API_KEY", &d.api_key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out),
        d.log_text()
    );
}

#[test]
fn the_client_cli_drives_agents_sessions_and_approvals() {
    let Some(d) = running() else { return };
    let connect = ok(&d, &["connect"]);
    assert!(connect.contains("as alice (admin)"), "{connect}");
    let catalog = ok(&d, &["agent", "catalog"]);
    assert!(
        catalog.starts_with("NAME") && catalog.contains("researcher"),
        "{catalog}"
    );

    // --follow streams the output and exits with the agent's code.
    let o = client(
        &d,
        &[
            "agent",
            "spawn",
            "assistant",
            "--goal",
            "Keep notes",
            "--follow",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("Done. I wrote notes.md"), "{text}");
    assert!(stderr(&o).contains("→ fs/write"), "{}", stderr(&o));

    let pid = ok(
        &d,
        &[
            "agent",
            "spawn",
            "researcher",
            "--goal",
            "Research Q3 earnings",
        ],
    );
    let pid: u64 = pid.trim().parse().unwrap();
    let list: serde_json::Value =
        serde_json::from_str(&ok(&d, &["agent", "list", "--all", "--json"])).unwrap();
    assert!(
        list.as_array().unwrap().iter().any(|p| p["pid"] == pid),
        "{list}"
    );
    let table = ok(&d, &["agent", "list"]);
    assert!(
        table.lines().next().unwrap().starts_with("PID  "),
        "{table}"
    );

    // Save and restore: the path printed, then restored by name as a new PID.
    let snap = ok(&d, &["agent", "save", &pid.to_string()]);
    let snap = snap.trim();
    assert!(
        snap.starts_with("/users/alice/snapshots/researcher-") && snap.ends_with(".yaml"),
        "{snap}"
    );
    let name = snap.rsplit('/').next().unwrap().trim_end_matches(".yaml");
    let restored: u64 = ok(&d, &["agent", "restore", name]).trim().parse().unwrap();
    assert_ne!(restored, pid);
    // A PID is digits only: a usage error (2), saying so.
    let o = client(&d, &["agent", "kill", "+7"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("is not a process id"), "{}", stderr(&o));

    let hist: serde_json::Value =
        serde_json::from_str(&ok(&d, &["agent", "history", "--json"])).unwrap();
    let id = hist[0]["id"].as_str().unwrap().to_owned();
    let show = ok(&d, &["agent", "show", &id]);
    assert!(
        show.contains("invocation  ") && show.contains("[user] "),
        "{show}"
    );
    // A unique prefix stands for the id; one that two runs share is refused with both.
    let show = ok(&d, &["agent", "show", &id[..8]]);
    assert!(show.contains(&id), "{show}");
    let agent = hist[0]["agent"].as_str().unwrap();
    let runs = d.root.join("data/users/alice/agents").join(agent);
    let twin = format!("{}ffff-0000-4000-8000-000000000000", &id[..4]);
    std::fs::create_dir(runs.join(&twin)).unwrap();
    for f in std::fs::read_dir(runs.join(&id)).unwrap().flatten() {
        let text = std::fs::read_to_string(f.path())
            .unwrap()
            .replace(&id, &twin);
        std::fs::write(runs.join(&twin).join(f.file_name()), text).unwrap();
    }
    let o = client(&d, &["agent", "show", &id[..4]]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("ambiguous") && stderr(&o).contains(&id) && stderr(&o).contains(&twin),
        "{}",
        stderr(&o)
    );

    let sessions: serde_json::Value =
        serde_json::from_str(&ok(&d, &["session", "list", "--json"])).unwrap();
    let sid = sessions[0]["id"].as_str().unwrap().to_owned();
    assert!(ok(&d, &["session", "show", &sid[..6]]).contains("INVOCATION"));
    let o = client(
        &d,
        &[
            "session",
            "resume",
            &sid,
            "--input",
            "and then?",
            "--follow",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    ok(&d, &["session", "delete", &sid]);
    assert!(ok(&d, &["hil", "list"]).contains("(none)"));
    assert!(ok(&d, &["logs", "--lines", "5"]).contains("INFO"));

    // Errors: one line, what was wrong, and an exit status that says its kind (3: not found,
    // as for another user's agent).
    let o = client(&d, &["agent", "kill", "999999"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("ENOTFOUND") && stderr(&o).contains("no process 999999"),
        "{}",
        stderr(&o)
    );
    let o = Command::new(bin())
        .args(["client", "connect"])
        .env("HOME", d.dir.path())
        .env_remove("AVIX_API_KEY")
        .env_remove("AVIX_PASSWORD")
        .env("AVIX_SERVER", format!("http://127.0.0.1:{}", d.port))
        .output()
        .unwrap();
    assert!(stderr(&o).contains("export AVIX_API_KEY"), "{}", stderr(&o));
    let o = Command::new(bin())
        .args(["client", "connect"])
        .env("HOME", d.dir.path())
        .env("AVIX_API_KEY", "sk-avix-wrong")
        .env("AVIX_SERVER", format!("http://127.0.0.1:{}", d.port))
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("login refused (EAUTH)"),
        "{}",
        stderr(&o)
    );
    let o = Command::new(bin())
        .args(["client", "connect"])
        .env("HOME", d.dir.path())
        .env("AVIX_API_KEY", &d.api_key)
        .env("AVIX_SERVER", "http://127.0.0.1:1")
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("cannot reach the Avix server"),
        "{}",
        stderr(&o)
    );
}

/// Waits until `agent list --all --json` shows `pid` in `state`.
fn until_state(d: &TestDaemon, pid: &str, state: &str) {
    for _ in 0..200 {
        let list: serde_json::Value =
            serde_json::from_str(&ok(d, &["agent", "list", "--all", "--json"])).unwrap();
        if list.as_array().unwrap().iter().any(|p| {
            p["pid"].as_u64().map(|n| n.to_string()).as_deref() == Some(pid) && p["state"] == state
        }) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("agent {pid} never reached {state}");
}

#[test]
fn the_client_controls_agents_and_files_like_the_mount_does() {
    let Some(d) = running() else { return };
    let mut put = client_piped(&d, &["fs", "put", "-", "/etc/avix/scripts/chat.yaml"]);
    put.stdin
        .take()
        .unwrap()
        .write_all(b"apiVersion: avix/v1\nkind: LlmScript\nspec:\n  repeatLast: true\n  turns:\n    - text: hello\n    - text: \"you said {last}\"\n")
        .unwrap();
    assert!(put.wait_with_output().unwrap().status.success());

    // spawn --interactive --tool: it waits for input, holding the extra tool.
    let pid = ok(
        &d,
        &[
            "agent",
            "spawn",
            "assistant",
            "-g",
            "chat",
            "--model",
            "scripted/chat",
            "--interactive",
            "--tool",
            "fs/stat",
            "--param",
            "maxTurns=7",
        ],
    );
    let pid = pid.trim().to_owned();
    until_state(&d, &pid, "waiting");
    let tools = ok(&d, &["fs", "cat", &format!("/proc/{pid}/tools.yaml")]);
    assert!(tools.contains("fs/stat"), "{tools}");
    let resolved = ok(&d, &["fs", "cat", &format!("/proc/{pid}/resolved.yaml")]);
    let at = resolved.find("maxTurns:").expect("maxTurns resolved");
    assert!(
        resolved[at..]
            .lines()
            .take(3)
            .any(|l| l.contains("value: 7"))
            && resolved[at..]
                .lines()
                .take(4)
                .any(|l| l.contains("source: spawn")),
        "{resolved}"
    );
    let o = client(
        &d,
        &[
            "agent",
            "spawn",
            "assistant",
            "-g",
            "x",
            "--param",
            "maxTurnz=3",
        ],
    );
    assert!(
        stderr(&o).contains("unknown parameter \"maxTurnz\""),
        "{}",
        stderr(&o)
    );
    // show: a live run in the same shape as a past one, with its current state.
    let show = ok(&d, &["agent", "show", &pid]);
    assert!(
        show.contains("state       waiting (input)") && show.contains("[assistant] hello"),
        "{show}"
    );
    assert!(ok(&d, &["agent", "history", "--owner", "alice"]).contains("assistant"));
    assert!(ok(&d, &["logs", "-n", "3"]).lines().count() <= 4);
    // Live by default; --all adds the ended ones.
    assert!(ok(&d, &["agent", "list"]).contains(&format!("\n{pid} ")));

    // Attach streams what it says until it ends; input, pause, resume, stop.
    let attach = client_piped(&d, &["agent", "attach", &pid]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        ok(&d, &["agent", "pause", &pid]).trim(),
        format!("pausing {pid}")
    );
    until_state(&d, &pid, "paused");
    ok(&d, &["agent", "resume", &pid]);
    until_state(&d, &pid, "waiting");
    ok(&d, &["agent", "input", &pid, "good", "morning"]);
    for _ in 0..200 {
        if ok(&d, &["agent", "logs", &pid, "-n", "50"]).contains("you said good morning") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let logs = ok(&d, &["agent", "logs", &pid, "-n", "3"]);
    assert_eq!(logs.lines().count(), 3, "{logs}");
    assert!(ok(&d, &["agent", "logs", &pid]).contains("assistant you said good morning"));
    ok(&d, &["agent", "stop", &pid]);
    let o = attach.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&o.stdout);
    assert!(
        seen.contains("you said good morning"),
        "{seen}\n{}",
        stderr(&o)
    );
    until_state(&d, &pid, "stopped");
    assert!(!ok(&d, &["agent", "list"]).contains(&format!("\n{pid} ")));
    assert!(ok(&d, &["agent", "list", "-a"]).contains(&format!("\n{pid} ")));
    let o = client(&d, &["agent", "attach", &pid]);
    assert!(stderr(&o).contains("has ended"), "{}", stderr(&o));

    // Files: put, ls, cat, stat, tail, get (binary too), rm; relative paths are in the
    // workspace.
    let local = d.dir.path().join("local.bin");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(700_000).collect();
    std::fs::write(&local, &bytes).unwrap();
    ok(&d, &["fs", "put", local.to_str().unwrap(), "data.bin"]);
    let text = d.dir.path().join("lines.txt");
    std::fs::write(&text, "one\ntwo\nthree\n").unwrap();
    ok(&d, &["fs", "put", text.to_str().unwrap(), "lines.txt"]);
    let ls = ok(&d, &["fs", "ls"]);
    assert!(ls.contains("data.bin") && ls.contains("lines.txt"), "{ls}");
    assert_eq!(ok(&d, &["fs", "cat", "lines.txt"]), "one\ntwo\nthree\n");
    assert_eq!(
        ok(&d, &["fs", "tail", "-n", "2", "lines.txt"]),
        "two\nthree\n"
    );
    assert!(ok(&d, &["fs", "stat", "data.bin"]).contains("700000"));
    let back = d.dir.path().join("back.bin");
    ok(&d, &["fs", "get", "data.bin", back.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&back).unwrap(),
        bytes,
        "a binary file round-trips"
    );
    ok(&d, &["fs", "rm", "data.bin"]);
    let o = client(&d, &["fs", "cat", "data.bin"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    // Another user's home is not there for alice's API key either way.
    let o = client(&d, &["fs", "ls", "/users/nobody-here"]);
    assert!(!o.status.success());
}

#[test]
fn login_keeps_a_token_that_twenty_commands_use_and_logout_ends_it() {
    let Some(d) = running() else { return };
    let logins = || d.log_text().matches("login user=alice").count();
    let before = logins();
    let o = ok(&d, &["login"]);
    assert!(o.contains("logged in to") && o.contains("as alice"), "{o}");
    let kept = d.dir.path().join(".local/state/avix/tokens");
    let files: Vec<_> = std::fs::read_dir(&kept).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(files[0].metadata().unwrap().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(files[0].path()).unwrap();
    assert!(!text.contains(&d.api_key), "the credential is never kept");
    // Twenty commands, no credential in their environment: one login in all.
    for _ in 0..20 {
        let o = client_cmd(&d, &["agent", "list"])
            .env_remove("AVIX_API_KEY")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(logins(), before + 1, "{}", d.log_text());
    // Logout: the server refuses the token, and it is forgotten.
    ok(&d, &["logout"]);
    assert_eq!(std::fs::read_dir(&kept).unwrap().count(), 0);
    let o = client_cmd(&d, &["agent", "list"])
        .env_remove("AVIX_API_KEY")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no credential"), "{}", stderr(&o));
    // The server refuses the old token: put it back, and it is not accepted.
    std::fs::create_dir_all(&kept).unwrap();
    std::fs::write(kept.join(files[0].file_name()), &text).unwrap();
    let o = client_cmd(&d, &["agent", "list"])
        .env_remove("AVIX_API_KEY")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no longer accepted"), "{}", stderr(&o));
    // A kept token the server no longer accepts is dropped, and the credential logs in.
    ok(&d, &["login"]);
    let file = std::fs::read_dir(&kept)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let mut k: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    k["login"]["token"] = "bogus".into();
    std::fs::write(&file, k.to_string()).unwrap();
    assert!(ok(&d, &["agent", "list"]).starts_with("PID"));
    assert!(!file.exists(), "the refused token is forgotten");
}

#[test]
fn completions_load_in_bash_and_man_pages_render() {
    let avix = bin().display().to_string();
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -e; source <({avix} completions bash); COMP_WORDS=(avix client agent fo); COMP_CWORD=3; _avix avix fo agent; echo \"${{COMPREPLY[@]}}\""
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "fork");
    for sh in ["zsh", "fish", "elvish", "powershell"] {
        let o = Command::new(bin())
            .args(["completions", sh])
            .output()
            .unwrap();
        assert!(o.status.success() && o.stdout.len() > 1000, "{sh}");
    }
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(bin())
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let page = std::fs::read_to_string(dir.path().join("avix-client-agent-fork.1")).unwrap();
    assert!(
        page.contains(".TH avix-client-agent-fork 1") && page.contains(r"\-\-at"),
        "{page}"
    );
    let top = Command::new(bin()).arg("man").output().unwrap();
    assert!(String::from_utf8_lossy(&top.stdout).contains(".SH SUBCOMMANDS"));
}

/// Runs `avix ARGS` on a pseudo-terminal (python's pty module), as a person at a shell does:
/// once `prompt` shows, waits a moment and types `typed` and Enter. Returns the outcome, with
/// everything the terminal showed as its stdout. `env` is set (`None`: removed) for the run.
fn on_a_terminal(
    d: &TestDaemon,
    args: &[&str],
    prompt: &str,
    typed: &str,
    env: &[(&str, Option<&str>)],
) -> Output {
    let script = r#"
import os, pty, sys, time
avix, prompt, typed = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode()
pid, fd = pty.fork()
if pid == 0:
    os.execv(avix, [avix] + sys.argv[4:])
out = b""
deadline = time.time() + 20
while prompt not in out and time.time() < deadline:
    out += os.read(fd, 1024)
time.sleep(0.5)  # a person reads the prompt before typing
os.write(fd, typed + b"\n")
while True:
    try:
        chunk = os.read(fd, 1024)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let mut c = Command::new("python3");
    c.arg("-c")
        .arg(script)
        .arg(bin())
        .args([prompt, typed])
        .args(args)
        .env("HOME", d.dir.path())
        .env_remove("AVIX_CLIENT_CONFIG")
        .env_remove("AVIX_USER")
        .env("AVIX_SERVER", format!("http://127.0.0.1:{}", d.port));
    for (k, v) in env {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.output().unwrap()
}

#[test]
fn a_secret_typed_on_a_terminal_is_not_echoed() {
    let Some(d) = running() else { return };
    let o = on_a_terminal(
        &d,
        &["client", "secret", "set", "TYPED_TOKEN"],
        "not shown",
        "hunter2-typed",
        &[("AVIX_API_KEY", Some(&d.api_key))],
    );
    let seen = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{seen}{}", stderr(&o));
    assert!(seen.contains("value (not shown)"), "{seen}");
    assert!(!seen.contains("hunter2"), "the secret was echoed: {seen}");
    assert!(ok(&d, &["secret", "list"]).contains("TYPED_TOKEN"));
}

#[test]
fn login_prompts_for_a_password_without_echo_and_keeps_only_the_token() {
    if !require_fuse() {
        return;
    }
    let mut d = TestDaemon::init_with(
        bin(),
        &[
            "--credential-type",
            "password",
            "--password",
            "pw-correct-horse-42",
        ],
    );
    d.start();
    let o = on_a_terminal(
        &d,
        &["client", "login", "--user", "alice"],
        "password for alice",
        "pw-correct-horse-42",
        &[("AVIX_API_KEY", None), ("AVIX_PASSWORD", None)],
    );
    let seen = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{seen}{}", stderr(&o));
    assert!(seen.contains("logged in to"), "{seen}");
    assert!(
        !seen.contains("pw-correct-horse-42"),
        "the password was echoed: {seen}"
    );
    let kept = d.dir.path().join(".local/state/avix/tokens");
    for f in std::fs::read_dir(&kept).unwrap().flatten() {
        let text = std::fs::read_to_string(f.path()).unwrap();
        assert!(
            !text.contains("pw-correct-horse-42"),
            "the password was kept"
        );
    }
    // The kept token serves the next command, with no credential anywhere.
    let o = Command::new(bin())
        .args(["client", "--user", "alice", "agent", "list"])
        .env("HOME", d.dir.path())
        .env_remove("AVIX_CLIENT_CONFIG")
        .env_remove("AVIX_USER")
        .env_remove("AVIX_API_KEY")
        .env_remove("AVIX_PASSWORD")
        .env("AVIX_SERVER", format!("http://127.0.0.1:{}", d.port))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn every_form_of_server_address_reaches_the_daemon() {
    let Some(d) = running() else { return };
    let port = d.port;
    for server in [
        format!("http://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}/"),
        format!("ws://127.0.0.1:{port}"),
        format!("ws://127.0.0.1:{port}/atp"),
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}/atp"),
    ] {
        let o = client_cmd(&d, &["connect"])
            .env("AVIX_SERVER", &server)
            .output()
            .unwrap();
        assert!(o.status.success(), "{server}: {}", stderr(&o));
    }
    let o = client_cmd(&d, &["connect"])
        .env("AVIX_SERVER", "ftp://127.0.0.1:1")
        .output()
        .unwrap();
    assert!(stderr(&o).contains("not one Avix speaks"), "{}", stderr(&o));
}

#[test]
fn the_atp_shell_sends_commands_and_raw_frames() {
    use std::io::Write;
    let Some(d) = running() else { return };
    let mut child = client_piped(&d, &["atp", "shell"]);
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "auth whoami").unwrap();
    writeln!(stdin, "proc nope").unwrap();
    writeln!(stdin, "proc history {{\"limit\": 1}}").unwrap();
    writeln!(stdin, ":q").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ok {\"") && text.contains("\"user\":\"alice\""),
        "{text}"
    );
    assert!(text.contains("error ENOSYS"), "{text}");
}

#[test]
fn services_are_installed_controlled_and_seen_through_the_client_and_the_mount() {
    let Some(mut d) = running() else { return };
    let dir = repo().join("examples/services/echo");
    let out = ok(&d, &["service", "install", dir.to_str().unwrap()]);
    assert!(
        out.contains("state     running") && out.contains("echo/say"),
        "{out}"
    );
    let list = ok(&d, &["service", "list"]);
    assert!(
        list.starts_with("NAME") && list.contains("echo") && list.contains("running"),
        "{list}"
    );
    // The same service through the mount: status, log, tools, and the installed files.
    let st = d.ok("cat $M/proc/services/echo/status.yaml");
    assert!(
        st.contains("kind: ServiceStatus") && st.contains("state: running"),
        "{st}"
    );
    assert!(d.ok("ls $M/tools/echo").contains("say.yaml"));
    assert!(d.ok("ls $M/services").contains("echo@0.1.0"));
    let log = d.ok("cat $M/proc/services/echo/log");
    assert!(log.contains("registered"), "{log}");
    let logs = ok(&d, &["service", "logs", "echo", "-n", "5"]);
    assert!(logs.contains("stdout: registered: ['echo/say']"), "{logs}");
    let o = client(&d, &["service", "logs", "nope"]);
    assert!(!o.status.success());
    // Restart through the ctl file, then through the client.
    d.ok("echo restart > $M/proc/services/echo/ctl");
    let json = ok(&d, &["--json", "service", "restart", "echo"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["state"], "running", "{v}");
    assert!(v["restarts"].as_u64().unwrap() >= 1, "{v}");
    let bad = d.fails("echo reboot > $M/proc/services/echo/ctl");
    assert!(bad.contains("Invalid argument"), "{bad}");
    // Errors say what to do.
    let o = client(&d, &["service", "uninstall", "echo"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("stop it first or pass --force"),
        "{}",
        stderr(&o)
    );
    let o = client(&d, &["service", "status", "nope"]);
    assert!(
        stderr(&o).contains("there is no service nope"),
        "{}",
        stderr(&o)
    );
    ok(&d, &["service", "stop", "echo"]);
    assert!(
        d.ok("cat $M/proc/services/echo/status.yaml")
            .contains("state: stopped")
    );
    assert!(d.sh("test -e $M/tools/echo/say.yaml").status.code() != Some(0));
    ok(&d, &["service", "uninstall", "echo"]);
    let list = ok(&d, &["service", "list"]);
    assert!(!list.contains("echo") && list.contains("exec"), "{list}");
    // The same service sent over ATP, as a client on another machine does.
    let out = ok(
        &d,
        &["service", "install", "--upload", dir.to_str().unwrap()],
    );
    assert!(out.contains("state     running"), "{out}");
    assert!(
        d.ok("ls $M/services/echo@0.1.0")
            .contains("echo_service.py")
    );
    ok(&d, &["service", "uninstall", "--force", "echo"]);

    // Secrets: the value goes in on stdin, and only the name ever comes back.
    let value = "s3cr3t-value-for-the-cli-test";
    let mut child = client_piped(&d, &["secret", "set", "API_TOKEN", "--system"]);
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(value.as_bytes())
            .unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("system secret API_TOKEN set"));
    let list = ok(&d, &["secret", "list", "--system"]);
    assert!(
        list.starts_with("NAME") && list.contains("API_TOKEN") && !list.contains(value),
        "{list}"
    );
    let o = client(&d, &["secret", "set", "X"]);
    assert!(!o.status.success(), "an empty value is refused");
    assert!(stderr(&o).contains("empty value"), "{}", stderr(&o));
    ok(&d, &["secret", "delete", "API_TOKEN", "--system"]);
    assert!(!d.log_text().contains(value));
    d.stop();
}
