//! The mount as users see it: shell tools, refusals, config validation and hot reload.

use std::time::{Duration, Instant};

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

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn shell_tools_work_in_the_workspace() {
    let Some(d) = running() else { return };
    let script = repo().join("tests/shell/workspace_tools.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .env("M", &d.mount)
        .env("AVIX_USER", "alice")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // It all reached the disk under ROOT/data.
    let copy = std::fs::read_to_string(d.root.join("data/users/alice/workspace/copy.txt")).unwrap();
    assert_eq!(copy, "1st line\nsecond line\n");
}

#[test]
fn secrets_proc_and_kernel_refuse_what_they_must() {
    let Some(d) = running() else { return };
    assert!(
        d.fails("cat $M/secrets/alice/token.enc")
            .contains("Permission denied")
            || d.fails("cat $M/secrets/alice/token.enc")
                .contains("Operation not permitted")
    );
    std::fs::create_dir_all(d.root.join("data/secrets/user/alice")).unwrap();
    std::fs::write(d.root.join("data/secrets/user/alice/gh.enc"), "00ff").unwrap();
    assert!(d.fails("ls $M/secrets").contains("Operation not permitted"));
    assert!(
        d.fails("cat $M/secrets/user/alice/gh.enc")
            .contains("Operation not permitted")
    );
    assert!(
        d.fails("echo x > $M/proc/status.yaml")
            .contains("Operation not permitted")
    );
    assert!(
        d.fails("echo x > $M/proc/new-file")
            .contains("Operation not permitted")
    );
    assert!(
        d.fails("mkdir $M/kernel/x")
            .contains("Operation not permitted")
    );
    assert!(
        d.fails("rm $M/kernel/defaults/agent.yaml")
            .contains("Operation not permitted")
    );
    assert!(
        d.fails("echo x > $M/kernel/limits/agent.yaml")
            .contains("Operation not permitted")
    );
    assert!(
        d.ok("cat $M/kernel/defaults/agent.yaml")
            .contains("kind: AgentDefaults")
    );
    assert!(
        d.fails("cat $M/etc/avix/master.key")
            .contains("Operation not permitted")
    );
    assert!(!d.ok("ls $M/etc/avix").contains("master.key"));
    // An unmapped uid gets nothing at all.
    assert!(
        d.fails("setpriv --reuid=4242 --regid=4242 --clear-groups ls $M")
            .contains("Permission denied")
    );
}

#[test]
fn a_broken_users_yaml_is_refused_and_the_old_one_stays() {
    let Some(d) = running() else { return };
    let users = "$M/etc/avix/users.yaml";
    let before = d.ok(&format!("cat {users}"));
    for write in [
        format!("printf 'spec: [' | tee {users} > /dev/null"),
        format!("/bin/echo 'kind: Users' > {users}"),
        format!("cp /dev/null {users}"),
        format!(
            "cat > {users} <<< 'apiVersion: avix/v1\nkind: Users\nspec: {{users: [{{username: Eve, uid: 5}}]}}'"
        ),
    ] {
        let err = d.fails(&write);
        assert!(err.contains("Invalid argument"), "{write}: {err}");
        assert_eq!(d.ok(&format!("cat {users}")), before, "{write}");
    }
    assert_eq!(
        std::fs::read_to_string(d.root.join("etc/users.yaml")).unwrap(),
        before
    );
    assert!(d.fails(&format!("rm {users}")).contains("Invalid argument"));
    // The reasons are readable from the mount too (issue 11): one line per refusal.
    let errors = d.ok("cat $M/proc/errors");
    assert!(
        errors
            .lines()
            .filter(|l| l.contains("/etc/avix/users.yaml"))
            .count()
            >= 5,
        "{errors}"
    );
    assert!(
        errors.contains("alice /etc/avix/users.yaml: refused, old content kept:"),
        "{errors}"
    );
    // A request that runs at the last close can only be refused there: its reason too.
    d.ok("printf 'agent: nosuchagent\ngoal: x\n' > $M/proc/spawn");
    eventually("the refused spawn in /proc/errors", || {
        d.ok("cat $M/proc/errors")
            .contains("/proc/spawn: unknown agent \"nosuchagent\"")
    });
    let log = d.log_text();
    assert!(log.contains("write refused, old content kept"), "{log}");
    assert!(
        d.ok("cat $M/proc/status.yaml")
            .contains("configRejections: "),
        "counted in status"
    );
}

#[test]
fn a_user_added_through_the_mount_or_on_disk_is_mapped_without_restart() {
    let Some(d) = running() else { return };
    let as_uid = |uid: u32, s: &str| {
        format!("setpriv --reuid={uid} --regid={uid} --clear-groups bash -c '{s}'")
    };
    let bob_writes = as_uid(
        65534,
        "echo hi > $M/users/bob/workspace/x && cat $M/users/bob/workspace/x",
    );
    assert!(
        d.fails(&bob_writes).contains("Permission denied"),
        "bob is unknown at first"
    );

    let users = d.ok("cat $M/etc/avix/users.yaml");
    let with_bob = format!("{users}  - username: bob\n    uid: 1002\n    hostUid: 65534\n");
    std::fs::write(d.dir.path().join("users.new"), &with_bob).unwrap();
    d.ok(&format!(
        "cp {} $M/etc/avix/users.yaml",
        d.dir.path().join("users.new").display()
    ));
    eventually("bob's home", || {
        d.root.join("data/users/bob/workspace").is_dir()
    });
    assert_eq!(d.ok(&bob_writes), "hi\n");
    // Bob cannot read alice's files, nor tell which exist.
    d.ok("echo private > $M/users/alice/workspace/p.txt");
    assert!(
        d.fails(&as_uid(65534, "cat $M/users/alice/workspace/p.txt"))
            .contains("No such file or directory")
    );
    // Even right after alice's own stat put the name in the kernel's cache.
    d.ok("stat $M/users/alice/workspace/p.txt");
    assert_eq!(
        d.fails(&as_uid(65534, "stat $M/users/alice/workspace/p.txt"))
            .replace("p.txt", "X"),
        d.fails(&as_uid(65534, "stat $M/users/alice/workspace/nothing"))
            .replace("nothing", "X"),
        "an existing file and a missing one look the same"
    );

    // An edit made on disk is picked up too.
    let with_carol = format!("{with_bob}  - username: carol\n    uid: 1003\n    hostUid: 65533\n");
    std::fs::write(d.root.join("etc/users.yaml"), &with_carol).unwrap();
    let carol = as_uid(65533, "ls $M/users/carol/workspace");
    eventually("carol mapped", || d.sh(&carol).status.success());
    // An invalid edit on disk is logged and changes nothing.
    std::fs::write(d.root.join("etc/users.yaml"), "spec: [").unwrap();
    eventually("the failed reload", || {
        d.log_text().contains("configuration reload failed")
    });
    assert!(
        d.sh(&carol).status.success(),
        "the previous configuration stays in force"
    );
}

#[test]
fn a_new_document_is_created_with_cp_cat_and_tee() {
    // Issue 11: `cp mcp.yaml /etc/avix/mcp.yaml` failed with EINVAL, because the empty file
    // O_CREAT makes was validated before anything was written.
    let Some(d) = running() else { return };
    let src = d.dir.path().join("mcp.yaml");
    let doc = "apiVersion: avix/v1\nkind: McpServers\nspec:\n  servers: []\n";
    std::fs::write(&src, doc).unwrap();
    let e = "$M/etc/avix/mcp.yaml";
    d.ok(&format!("cp {} {e}", src.display()));
    assert_eq!(d.ok(&format!("cat {e}")), doc);
    d.ok(&format!("rm {e}"));
    d.ok(&format!("cat > {e} < {}", src.display()));
    assert_eq!(d.ok(&format!("cat {e}")), doc);
    d.ok(&format!("rm {e}"));
    d.ok(&format!("tee {e} < {} > /dev/null", src.display()));
    assert_eq!(d.ok(&format!("cat {e}")), doc);
    // A new invalid document is refused at close, and never appears.
    d.ok(&format!("rm {e}"));
    let err = d.fails(&format!(
        "printf 'kind: McpServers\\nspec: [oops\\n' | tee {e} > /dev/null"
    ));
    assert!(err.contains("Invalid argument"), "{err}");
    eventually("the refused draft is gone", || {
        !d.mount.join("etc/avix/mcp.yaml").exists()
    });
    assert!(!d.root.join("etc/mcp.yaml").exists());
}

#[test]
fn sed_i_and_vim_edit_a_document_in_place() {
    // Issue 11: editors write a temp file (sed) or a swap file (vim) next to the document
    // and replace it; both must work, and a bad edit must be refused with the old file kept.
    let Some(d) = running() else { return };
    let users = "$M/etc/avix/users.yaml";
    let sed = d.sh(&format!("sed -i 's/agents: 5/agents: 6/' {users}"));
    assert!(
        sed.status.success(),
        "{}",
        String::from_utf8_lossy(&sed.stderr)
    );
    assert!(
        sed.stderr.is_empty(),
        "sed says nothing: {}",
        String::from_utf8_lossy(&sed.stderr)
    );
    assert!(d.ok(&format!("cat {users}")).contains("agents: 6"));
    d.ok(&format!(
        "vim -es -u NONE -c '%s/agents: 6/agents: 7/' -c 'wq' {users}"
    ));
    assert!(d.ok(&format!("cat {users}")).contains("agents: 7"));
    let before = d.ok(&format!("cat {users}"));
    assert!(
        !d.sh(&format!("sed -i 's/uid: 1001/uid: 5/' {users}"))
            .status
            .success()
    );
    assert_eq!(d.ok(&format!("cat {users}")), before, "the old file stays");
    assert!(d.ok("cat $M/proc/errors").contains("users.yaml"));
    let left = d.ok("ls -a $M/etc/avix");
    assert!(!left.contains(".swp") && !left.contains("sed"), "{left}");
}

#[test]
fn an_ordinary_user_runs_the_daemon_and_its_mount() {
    // `avix server start` as an unprivileged account: mounted through fusermount3, the
    // daemon's uid mapped to its init user, data trees still POSIX (I/O served by the daemon:
    // passthrough needs root). Runs as uid 65534 (needs root to switch, and /dev/fuse open
    // to everyone, as Debian ships it; scripts/setup.sh makes sure).
    if !require_fuse() || !nix::unistd::geteuid().is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("u");
    std::fs::create_dir(&base).unwrap();
    std::fs::create_dir(base.join("m")).unwrap();
    for p in [dir.path().to_path_buf(), base.clone(), base.join("m")] {
        std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
    }
    let port = avix_testkit::free_port();
    let as_user = |script: &str| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .args(["sh", "-c", script])
            .env("AVIX", bin())
            .env("B", &base)
            .env("HOME", &base)
            .env_remove("AVIX_MASTER_KEY")
            .output()
            .unwrap()
    };
    let init = as_user(
        "$AVIX server config init --root $B/r --user me --role admin --non-interactive --host-uid 65534",
    );
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let mut daemon = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin())
        .args(["server", "start", "--root"])
        .arg(base.join("r"))
        .arg("--mount")
        .arg(base.join("m"))
        .args(["--port", &port.to_string()])
        .env("HOME", &base)
        .env_remove("AVIX_MASTER_KEY")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    eventually("the unprivileged mount", || {
        as_user("test -f $B/m/proc/status.yaml").status.success()
    });
    let out = as_user(
        "set -e; cd $B/m/users/me/workspace; echo hi > a; ln -s a l; cat l; ln a h; \
         stat -c %h a; chmod +x a; stat -c %a a; sed -n 's/.*dataIo: //p' $B/m/proc/status.yaml",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hi\n2\n755\nserved\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Other users (root included) cannot use someone else's unprivileged mount.
    assert!(std::fs::metadata(base.join("m/proc")).is_err());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = daemon.wait().unwrap();
    assert!(status.success(), "clean stop");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(base.join("m").to_str().unwrap()),
        "unmounted at stop"
    );
}
