//! The daemon's life: start, readiness, refusals, clean stops, crashes and restarts.

use std::net::TcpListener;

use avix_testkit::{TestDaemon, require_fuse};

use crate::{bin, stderr};

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn one_line_error(o: &std::process::Output, needle: &str) {
    assert!(!o.status.success(), "expected a failure");
    let err = stderr(o);
    let errors: Vec<_> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{err}");
    assert!(errors[0].contains(needle), "{needle:?} not in:\n{err}");
}

#[test]
fn start_without_init_says_which_command_fixes_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin())
        .args(["server", "start", "--no-mount", "--root"])
        .arg(dir.path())
        .output()
        .unwrap();
    one_line_error(&out, "avix server config init --root");
}

#[test]
fn a_missing_wrong_or_malformed_master_key_is_refused() {
    let d = TestDaemon::init_with(bin(), &["--master-key-source", "env"]);
    let out = d.start_expecting_failure(&["--no-mount"], &[("AVIX_MASTER_KEY", None)]);
    one_line_error(&out, "export AVIX_MASTER_KEY");
    let wrong = "ab".repeat(32);
    let out = d.start_expecting_failure(&["--no-mount"], &[("AVIX_MASTER_KEY", Some(&wrong))]);
    one_line_error(&out, "not the key this root was initialised with");
    let out = d.start_expecting_failure(&["--no-mount"], &[("AVIX_MASTER_KEY", Some("not-hex"))]);
    one_line_error(&out, "64 hex digits");
    assert!(
        !stderr(&out).contains("not-hex"),
        "the value is never echoed"
    );

    let f = TestDaemon::init(bin());
    let key_file = f.root.join("etc/master.key");
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let out = f.start_expecting_failure(&["--no-mount"], &[]);
    one_line_error(&out, "chmod 600");
    std::fs::remove_file(&key_file).unwrap();
    let out = f.start_expecting_failure(&["--no-mount"], &[]);
    one_line_error(&out, "master key file");
}

#[test]
fn a_port_in_use_is_refused() {
    let d = TestDaemon::init(bin());
    let _busy = TcpListener::bind(("127.0.0.1", d.port)).unwrap();
    let out = d.start_expecting_failure(&["--no-mount"], &[]);
    one_line_error(
        &out,
        &format!("port {} on 127.0.0.1 is already in use", d.port),
    );
}

#[test]
fn a_missing_mount_point_is_refused() {
    let d = TestDaemon::init(bin());
    let out = d.start_expecting_failure(&["--mount", "/nonexistent/avix-mnt"], &[]);
    one_line_error(&out, "mount point /nonexistent/avix-mnt does not exist");
}

#[test]
fn a_busy_mount_point_and_a_second_daemon_are_refused() {
    if !require_fuse() {
        return;
    }
    let mut a = TestDaemon::init(bin());
    a.start();
    // Same root: the pid lock.
    let out = a.start_expecting_failure(&["--no-mount"], &[]);
    one_line_error(&out, &format!("another daemon (pid {})", a.pid()));
    // Another root on the same mount point.
    let b = TestDaemon::init(bin());
    let mnt = a.mount.to_str().unwrap().to_owned();
    let out = b.start_expecting_failure(&["--mount", &mnt], &[]);
    one_line_error(&out, "is busy");
    assert_eq!(
        a.ok("cat $M/proc/status.yaml | grep -c mountPoint"),
        "1\n",
        "the first daemon is unharmed"
    );
    a.stop();
}

#[test]
fn boots_reports_ready_and_stops_cleanly_on_sigterm_and_sigint() {
    if !require_fuse() {
        return;
    }
    let mut d = TestDaemon::init(bin());
    d.start();
    let log = d.log_text();
    assert!(log.contains("ready in") && log.contains("phase 1"), "{log}");
    let status = d.ok("cat $M/proc/status.yaml");
    assert!(
        status.contains("kind: SystemStatus") && status.contains(&format!("pid: {}", d.pid())),
        "{status}"
    );
    assert!(
        status.contains(&format!("mountPoint: {}", d.mount.display())),
        "{status}"
    );
    assert!(d.root.join("run/avix.pid").exists());
    // The ATP port answers its health check over real HTTP.
    let health = http_get(d.port, "/atp/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains(r#""status":"ok""#), "{health}");
    d.stop();
    assert!(d.wait_unmounted(), "unmounted at exit");
    assert!(!d.root.join("run/avix.pid").exists(), "pid file removed");
    assert!(d.log_text().contains("stopped cleanly"));

    d.start();
    let status = d.signal(libc::SIGINT);
    assert!(status.success(), "SIGINT exit: {status}");
    assert!(d.wait_unmounted());
}

#[test]
fn data_survives_a_clean_restart_and_sigkill_and_the_mount_point_is_reused() {
    if !require_fuse() {
        return;
    }
    let mut d = TestDaemon::init(bin());
    d.start();
    d.ok("echo one > $M/users/alice/workspace/a.txt && mkdir $M/users/alice/workspace/dir");
    d.stop();
    d.start();
    assert_eq!(d.ok("cat $M/users/alice/workspace/a.txt"), "one\n");
    d.ok("echo two > $M/users/alice/workspace/b.txt");
    let status = d.signal(libc::SIGKILL);
    assert!(!status.success());
    assert!(
        d.wait_unmounted(),
        "the guard removes the mount of a killed daemon"
    );
    d.start();
    assert_eq!(
        d.ok("cat $M/users/alice/workspace/a.txt $M/users/alice/workspace/b.txt"),
        "one\ntwo\n"
    );
    assert_eq!(d.ok("ls $M/users/alice/workspace"), "a.txt\nb.txt\ndir\n");
    d.stop();
}

#[test]
fn a_stale_mount_left_by_a_crash_is_cleaned_at_start() {
    if !require_fuse() {
        return;
    }
    let mut d = TestDaemon::init(bin());
    d.start();
    d.ok("echo kept > $M/users/alice/workspace/x");
    // Kill the guard first, then the daemon: the mount stays behind, disconnected.
    let guard = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                c.starts_with("avix-mount-guard\0") && c.contains(d.mount.to_str().unwrap())
            })
        })
        .expect("the mount guard runs");
    // SAFETY: signalling a process this test started (through the daemon).
    unsafe { libc::kill(guard, libc::SIGKILL) };
    d.signal(libc::SIGKILL);
    assert!(d.sh("ls $M").status.code() != Some(0), "the mount is stale");
    assert!(
        String::from_utf8_lossy(&d.sh("ls $M").stderr)
            .contains("Transport endpoint is not connected")
    );
    d.start();
    assert!(d.log_text().contains("stale mount"), "{}", d.log_text());
    assert_eq!(d.ok("cat $M/users/alice/workspace/x"), "kept\n");
    d.stop();
}

#[test]
fn sighup_rereads_the_configuration_and_never_stops_the_daemon() {
    // Issue 13: closing the terminal of a foreground daemon (SIGHUP) killed it without a
    // log line and left its pid file behind.
    if !require_fuse() {
        return;
    }
    let mut d = TestDaemon::init(bin());
    d.start();
    let pid = d.pid();
    // An edit on disk, then SIGHUP.
    let users = d.root.join("etc/users.yaml");
    let text = std::fs::read_to_string(&users).unwrap();
    std::fs::write(&users, text.replace("agents: 5", "agents: 9")).unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !d.log_text().contains("SIGHUP received") {
        assert!(std::time::Instant::now() < deadline, "{}", d.log_text());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "still running"
    );
    assert!(d.ok("cat $M/etc/avix/users.yaml").contains("agents: 9"));
    assert!(http_get(d.port, "/atp/health").starts_with("HTTP/1.1 200"));
    assert!(d.root.join("run/avix.pid").exists());
    d.stop();
    assert!(d.log_text().contains("stopped cleanly"));
}

#[test]
fn server_status_and_stop_find_the_daemon_by_its_root() {
    // Issue 13: `avix server status` and `avix server stop` (SIGTERM, then wait).
    if !require_fuse() {
        return;
    }
    let mut d = TestDaemon::init(bin());
    let root = d.root.to_str().unwrap().to_owned();
    let status = d.avix(&["server", "status", "--root", &root]);
    assert_eq!(status.status.code(), Some(3), "not running yet");
    d.start();
    let status = d.avix(&["server", "status", "--root", &root]);
    assert_eq!(status.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains(&format!("running: pid {}", d.pid())),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    let stop = d.avix(&["server", "stop", "--root", &root]);
    assert!(stop.status.success(), "{}", stderr(&stop));
    assert!(String::from_utf8_lossy(&stop.stdout).contains("stopped"));
    assert!(d.wait_unmounted());
    assert!(d.log_text().contains("stopped cleanly"));
    assert_eq!(
        d.avix(&["server", "status", "--root", &root]).status.code(),
        Some(3)
    );
    let again = d.avix(&["server", "stop", "--root", &root]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("not running"));
}

#[test]
fn reloads_say_what_needs_a_restart_and_the_log_level_applies_at_once() {
    // Issue 13, item 6: a valid change that needs a restart was accepted silently; logLevel
    // changed nothing until a restart.
    if !require_fuse() {
        return;
    }
    let mut d = TestDaemon::init(bin());
    d.start();
    let wait_log = |d: &TestDaemon, needle: &str| {
        for _ in 0..250 {
            if d.log_text().contains(needle) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("no {needle:?} in the log:\n{}", d.log_text());
    };
    assert!(!d.ok("cat $M/proc/status.yaml").contains("restartNeeded"));
    d.ok("sed -i 's/logLevel: info/logLevel: debug/' $M/etc/avix/kernel.yaml");
    wait_log(&d, "log level changed by kernel.yaml");
    // Debug lines flow at once: a request from an unmapped uid is logged at debug.
    let before = d.log_text().matches("DEBUG").count();
    let _ = d.sh("setpriv --reuid=4242 --regid=4242 --clear-groups ls $M");
    for _ in 0..100 {
        if d.log_text().matches("DEBUG").count() > before {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        d.log_text().matches("DEBUG").count() > before,
        "{}",
        d.log_text()
    );
    d.ok("sed -i 's/    port: 9142/    port: 9199/' $M/etc/avix/kernel.yaml");
    wait_log(&d, "take effect at the next start");
    let status = d.ok("cat $M/proc/status.yaml");
    assert!(
        status.contains("restartNeeded:") && status.contains("- gateway.port"),
        "{status}"
    );
    // The daemon still answers on the port it started with.
    assert!(http_get(d.port, "/atp/health").contains("ok"));
}
