//! Attacks and faults on a real daemon (issue 10), from the attacker's or the unlucky user's
//! side: a full disk, descriptor exhaustion, orphaned services, the master key in environ.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use avix_testkit::{TestDaemon, require_fuse};

use crate::client::{client, client_piped};
use crate::{bin, journal_lines_are_whole, pids_of};

/// A tmpfs of `mb` MiB mounted in a fresh temp directory; unmounted when dropped.
struct SmallDisk {
    dir: Option<tempfile::TempDir>,
    at: PathBuf,
}

impl SmallDisk {
    fn new(mb: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("small");
        std::fs::create_dir(&at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(&at)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs");
        Self { dir: Some(dir), at }
    }

    /// Fills it with a file on the host until writes fail.
    fn fill(&self) {
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", self.at.join("fill").display()))
            .output()
            .unwrap();
        // A few KiB may be left over after the last full block: take them too.
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .open(self.at.join("fill"))
        {
            let _ = f.write_all(&[0u8; 65536]);
            while f.write_all(&[0u8; 512]).is_ok() {}
        }
    }

    fn unfill(&self) {
        std::fs::remove_file(self.at.join("fill")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        drop(self.dir.take());
    }
}

fn atp_shell(d: &TestDaemon, lines: &str) -> String {
    let mut c = client_piped(d, &["atp", "shell"]);
    c.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn a_full_disk_fails_writes_loudly_and_loses_nothing() {
    // Issue 10, item 4: `echo new > precious.txt` on a full disk committed an empty file.
    if !require_fuse() {
        return;
    }
    let disk = SmallDisk::new(24);
    let dir = tempfile::tempdir().unwrap();
    let mut d = TestDaemon::init_in(bin(), dir, disk.at.join("root"), &[]);
    d.start();
    // A document (atomic commits) and a data tree (plain POSIX files).
    let doc = "$M/users/alice";
    let w = "$M/users/alice/workspace";
    d.ok(&format!("echo precious original > {doc}/p.txt"));
    d.ok(&format!("echo precious original > {w}/p.txt"));
    let s = client(&d, &["secret", "set", "TOKEN"]);
    assert!(!s.status.success(), "no value on stdin is refused");
    let mut c = client_piped(&d, &["secret", "set", "TOKEN"]);
    c.stdin.take().unwrap().write_all(b"first-value").unwrap();
    assert!(c.wait_with_output().unwrap().status.success());
    disk.fill();

    // Through the mount, a document: the shell's redirection, and a program that checks
    // close(); the old content stays.
    let err = d.fails(&format!("echo new > {doc}/p.txt"));
    assert!(err.contains("No space left"), "{err}");
    let py = d.sh(&format!(
        "python3 -c \"f=open('{doc}/p.txt','w'); f.write('X'*200000); f.close()\""
    ));
    assert!(!py.status.success(), "write or close reports the error");
    assert!(String::from_utf8_lossy(&py.stderr).contains("No space left"));
    assert_eq!(d.ok(&format!("cat {doc}/p.txt")), "precious original\n");
    // A data tree is POSIX: the write that does not fit fails loudly (what fitted stays).
    let py = d.sh(&format!(
        "python3 -c \"f=open('{w}/big','w'); f.write('X'*2000000); f.close()\""
    ));
    assert!(
        !py.status.success(),
        "a write past the end of the disk fails"
    );
    assert!(String::from_utf8_lossy(&py.stderr).contains("No space left"));
    d.ok(&format!("rm {w}/big"));
    let host = d.root.join("data/users/alice/workspace/p.txt");
    assert_eq!(
        std::fs::read_to_string(&host).unwrap(),
        "precious original\n"
    );

    // Over ATP: a clear code, the old content kept.
    let out = atp_shell(
        &d,
        "fs write {\"path\":\"/users/alice/workspace/p.txt\",\"content\":\"overwritten\"}\n:q\n",
    );
    assert!(out.contains("ENOSPC"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&host).unwrap(),
        "precious original\n"
    );

    // A secret: refused, the old value kept.
    let mut c = client_piped(&d, &["secret", "set", "TOKEN"]);
    c.stdin
        .take()
        .unwrap()
        .write_all(&vec![b'v'; 4000])
        .unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(!o.status.success(), "a secret on a full disk is refused");
    // An agent: spawned or refused, but whatever it journals is whole lines.
    let _ = client(
        &d,
        &[
            "agent",
            "spawn",
            "assistant",
            "--goal",
            "notes on a full disk",
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(500));

    // The daemon is alive and everything works again once there is room.
    disk.unfill();
    let health = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{}/atp/health", d.port)])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&health.stdout).contains("ok"));
    d.ok(&format!("echo after > {w}/p.txt"));
    assert_eq!(d.ok(&format!("cat {w}/p.txt")), "after\n");
    let list = client(&d, &["secret", "list"]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("TOKEN"));
    journal_lines_are_whole(&d.root);
    let leftovers: Vec<_> = walk(&d.root)
        .into_iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(".avix-tmp") || n.ends_with(".tmp")
        })
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    d.stop();
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn services_die_with_a_killed_daemon_and_leftovers_are_killed_at_start() {
    // Issue 10, item 8: after `kill -9` of the daemon a runAs service kept running with its
    // secrets, and the next daemon started a second copy.
    if !require_fuse() {
        return;
    }
    let mut d = TestDaemon::init(bin());
    d.start();
    // The example service, run as nobody, with a child of its own (a grandchild of the
    // daemon, which PR_SET_PDEATHSIG alone would not reach).
    let marker = format!("{}", 900_000 + std::process::id());
    let svc = d.dir.path().join("svc");
    std::fs::create_dir(&svc).unwrap();
    std::fs::copy(
        crate::repo().join("examples/services/echo/echo_service.py"),
        svc.join("echo_service.py"),
    )
    .unwrap();
    let unit = std::fs::read_to_string(crate::repo().join("examples/services/echo/service.yaml"))
        .unwrap()
        .replace(
            "command: [python3, echo_service.py]",
            &format!("command: [sh, -c, 'sleep {marker} & exec python3 echo_service.py']\n  runAs: nobody"),
        );
    std::fs::write(svc.join("service.yaml"), unit).unwrap();
    let o = client(&d, &["service", "install", svc.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let status = d.ok("cat $M/proc/services/echo/status.yaml");
    let pid: u32 = status
        .lines()
        .find_map(|l| l.trim().strip_prefix("pid: "))
        .and_then(|p| p.parse().ok())
        .expect("the service runs");
    wait_until("the service's child started", || {
        pids_of(&format!("sleep {marker}")).len() == 1
    });

    let st = d.signal(libc::SIGKILL);
    assert!(!st.success());
    wait_until("the service died with the daemon", || {
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z"))
    });
    assert!(d.wait_unmounted());
    d.start();
    wait_until("the leftover child was killed at start", || {
        pids_of(&format!("sleep {marker}")).len() <= 1
    });
    // Exactly one copy runs: the new daemon's.
    wait_until("one service", || {
        d.ok("cat $M/proc/services/echo/status.yaml")
            .contains("state: running")
    });
    let sleeps = pids_of(&format!("sleep {marker}"));
    assert_eq!(sleeps.len(), 1, "the new service's child only: {sleeps:?}");
    let services = pids_of(&format!("{}", svc.display()))
        .into_iter()
        .chain(pids_of("echo_service.py").into_iter().filter(|p| {
            std::fs::read_link(format!("/proc/{p}/cwd")).is_ok_and(|c| c.starts_with(&d.root))
        }))
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(
        services.len(),
        1,
        "one echo service for this root: {services:?}"
    );
    d.stop();
    wait_until("stopped with the daemon", || {
        pids_of(&format!("sleep {marker}")).is_empty()
    });
}

#[test]
fn the_master_key_is_not_left_in_the_daemons_environ() {
    // Issue 10, item 9: remove_var left the value in /proc/<daemon>/environ.
    if !require_fuse() {
        return;
    }
    let mut d = TestDaemon::init_with(bin(), &["--master-key-source", "env"]);
    let key = d
        .init_output
        .split_whitespace()
        .find_map(|w| w.strip_prefix("AVIX_MASTER_KEY="))
        .expect("init shows the key once")
        .to_owned();
    d.spawn_env(
        &[],
        &[("AVIX_MASTER_KEY", &key), ("AVIX_OTHER_SETTING", "kept")],
    );
    d.wait_ready();
    let environ = std::fs::read(format!("/proc/{}/environ", d.pid())).unwrap();
    let text = String::from_utf8_lossy(&environ);
    assert!(!text.contains(&key), "the key is still in environ");
    assert!(
        !text.contains(&key[..16]),
        "part of the key is still in environ"
    );
    assert!(
        text.contains("AVIX_OTHER_SETTING=kept"),
        "other variables are untouched"
    );
    // And the daemon works: it booted with that key.
    assert!(d.ok("cat $M/proc/status.yaml").contains("SystemStatus"));
    d.stop();
}

#[test]
fn control_characters_in_names_and_goals_are_escaped_in_logs_and_tables() {
    // Issue 10, item 13: a newline forges a log line, U+202E reverses what a terminal shows.
    if !require_fuse() {
        return;
    }
    let mut d = TestDaemon::init(bin());
    d.start();
    let forged = "ghost\nFORGED login of admin\u{202e}";
    let r = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-H",
            "Content-Type: application/json",
            "-d",
        ])
        .arg(serde_json::json!({"identity": forged, "credential": "sk-avix-wrong"}).to_string())
        .arg(format!("http://127.0.0.1:{}/atp/auth/login", d.port))
        .status()
        .unwrap();
    assert!(r.success());
    // A file with such a name, and an agent whose goal holds one.
    d.ok("touch \"$M/users/alice/workspace/$(printf 'a\\nb\\xe2\\x80\\xaetxt.exe')\"");
    let goal = "line one\nline two \u{1b}[2J\u{202e}reversed";
    let o = client(&d, &["agent", "spawn", "assistant", "--goal", goal]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = d.log_text();
    assert!(
        !log.lines().any(|l| l.starts_with("FORGED")),
        "a forged log line:\n{log}"
    );
    assert!(
        log.contains("ghost\\nFORGED login of admin\\u{202e}"),
        "{log}"
    );
    assert!(
        !log.contains('\u{202e}') && !log.contains('\u{1b}'),
        "{log}"
    );
    let list = client(&d, &["agent", "list", "--all"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        !text.contains('\u{202e}') && !text.contains('\u{1b}'),
        "{text}"
    );
    assert!(text.contains("line one\\nline two"), "{text}");
    let logs = client(&d, &["logs", "-n", "200"]);
    let text = String::from_utf8_lossy(&logs.stdout);
    assert!(
        !text.contains('\u{202e}') && !text.lines().any(|l| l.starts_with("FORGED")),
        "{text}"
    );
    d.stop();
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn health(port: u16) -> bool {
    let o = Command::new("curl")
        .args([
            "-s",
            "-m",
            "5",
            &format!("http://127.0.0.1:{port}/atp/health"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).contains("\"status\":\"ok\"")
}

#[test]
fn thousands_of_idle_sockets_cannot_take_the_daemon_down() {
    // Issue 10, item 5: ~20k idle or half-sent connections exhausted the daemon's
    // descriptors: ATP, the mount and spawn all failed.
    if !require_fuse() {
        return;
    }
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    // As many as the attack run held (20,000), as far as this process may open.
    let want = hard.saturating_sub(500).min(20_000) as usize;
    let mut d = TestDaemon::init(bin());
    d.start();
    let before = rss_kib(d.pid());
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", d.port).parse().unwrap();
    let t0 = std::time::Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // From several loopback addresses: one source address runs out of ephemeral ports.
    let held: Vec<std::net::TcpStream> = rt.block_on(async {
        let mut held = Vec::with_capacity(want);
        for i in 0..want {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            let from = format!("127.0.0.{}:0", 2 + i % 16).parse().unwrap();
            s.bind(from).unwrap();
            let Ok(s) = s.connect(addr).await else { break };
            let mut s = s.into_std().unwrap();
            if i % 2 == 0 {
                // Half a request, never finished.
                let _ = s.write_all(b"GET /atp/health HTTP/1.1\r\nHost: x\r\n");
            }
            held.push(s);
        }
        held
    });
    assert!(held.len() > want / 2, "opened {} of {want}", held.len());
    eprintln!("opened {} sockets in {:?}", held.len(), t0.elapsed());
    // Everything still works, while the sockets are held.
    assert!(
        health(d.port),
        "health check with {} idle sockets open",
        held.len()
    );
    eprintln!("health after {:?}", t0.elapsed());
    d.ok("echo still > $M/users/alice/workspace/during.txt && cat $M/users/alice/workspace/during.txt");
    let pid = d
        .ok("exec 3<>$M/proc/spawn; echo 'assistant notes under load' >&3; read -r p <&3; echo $p");
    assert!(pid.trim().parse::<u64>().is_ok(), "spawn under load: {pid}");
    let o = client(&d, &["agent", "list"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let during = rss_kib(d.pid());
    drop(held);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(health(d.port));
    eprintln!(
        "daemon RSS: {} MiB before, {} MiB with {want} idle sockets held",
        before / 1024,
        during / 1024
    );
    assert!(
        during < before + 200 * 1024,
        "memory is bounded: {before} → {during} KiB"
    );
    d.stop();
}
