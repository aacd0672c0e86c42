//! The FUSE adapter mounted for real and driven with shell tools. Needs root and /dev/fuse
//! (CI runs as root); set AVIX_SKIP_FUSE_TESTS=1 to skip on a machine without them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod posix;

use std::process::{Command, Output};
use std::sync::Arc;

use avix_fuse::Identities;
use avix_proto::{Role, UserName};
use avix_vfs::{Caller, Door, LocalStorage, SynthFile, Vfs, VfsError, VfsPath, WriteGuard};

struct Ids;

impl Identities for Ids {
    fn caller(&self, uid: u32) -> Option<Caller> {
        match uid {
            0 => Some(Caller::user(
                UserName::new("alice").unwrap(),
                Role::Admin,
                vec![],
                Door::Fuse,
            )),
            65534 => Some(Caller::user(
                UserName::new("bob").unwrap(),
                Role::User,
                vec![],
                Door::Fuse,
            )),
            _ => None,
        }
    }
    fn host_uid(&self, user: &UserName) -> Option<u32> {
        (user.as_str() == "bob").then_some(65534)
    }
}

struct YamlGuard;

impl WriteGuard for YamlGuard {
    fn check_content(&self, p: &VfsPath, c: &[u8]) -> Result<(), avix_proto::Error> {
        // Like the kernel's guard, which checks only the documents it knows: an editor's
        // hidden swap file is anything.
        if c.starts_with(b"valid") || p.file_name().is_some_and(|n| n.starts_with('.')) {
            Ok(())
        } else {
            Err(avix_proto::Error::invalid("must start with 'valid'"))
        }
    }
}

fn p(s: &str) -> VfsPath {
    VfsPath::parse(s).unwrap()
}

fn fuse_available() -> bool {
    avix_testkit::require_fuse()
}

struct Fixture {
    vfs: Arc<Vfs>,
    mnt: tempfile::TempDir,
    _data: tempfile::TempDir,
    mounted: Option<avix_fuse::Mounted>,
}

impl Fixture {
    fn new() -> Self {
        Self::with(avix_fuse::DataIo::Auto)
    }

    fn with(io: avix_fuse::DataIo) -> Self {
        let data = tempfile::tempdir().unwrap();
        for d in ["users/alice/workspace", "users/bob/workspace", "etc"] {
            std::fs::create_dir_all(data.path().join(d)).unwrap();
        }
        std::fs::write(data.path().join("etc/conf.yaml"), "valid: 1\n").unwrap();
        let vfs = Arc::new(
            Vfs::builder()
                .mount_storage(
                    p("/users"),
                    Arc::new(LocalStorage::new(data.path().join("users")).unwrap()),
                )
                .mount_storage(
                    p("/etc/avix"),
                    Arc::new(LocalStorage::new(data.path().join("etc")).unwrap()),
                )
                .mount_synthetic(p("/proc"))
                .mount_sealed(p("/secrets"))
                .guard(p("/etc/avix"), Arc::new(YamlGuard))
                .build(),
        );
        let mnt = tempfile::tempdir().unwrap();
        let mounted = avix_fuse::mount_with(vfs.clone(), Arc::new(Ids), mnt.path(), 2, io).unwrap();
        Self {
            vfs,
            mnt,
            _data: data,
            mounted: Some(mounted),
        }
    }

    fn sh(&self, script: &str) -> Output {
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .env("M", self.mnt.path())
            .output()
            .unwrap()
    }

    fn ok(&self, script: &str) -> String {
        let o = self.sh(script);
        assert!(
            o.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    fn fails(&self, script: &str) -> String {
        let o = self.sh(script);
        assert!(!o.status.success(), "{script} should fail");
        String::from_utf8(o.stderr).unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(m) = self.mounted.take() {
            m.unmount().unwrap();
        }
    }
}

#[test]
fn shell_tools_work_in_a_workspace() {
    if !fuse_available() {
        return;
    }
    let f = Fixture::new();
    let ws = "$M/users/alice/workspace";
    assert_eq!(f.ok("ls $M"), "etc\nproc\nsecrets\nusers\n");
    f.ok(&format!("echo hello > {ws}/a.txt"));
    assert_eq!(f.ok(&format!("cat {ws}/a.txt")), "hello\n");
    f.ok(&format!("echo more >> {ws}/a.txt"));
    assert_eq!(f.ok(&format!("cat {ws}/a.txt")), "hello\nmore\n");
    f.ok(&format!("mkdir {ws}/d && mv {ws}/a.txt {ws}/d/b.txt"));
    assert_eq!(f.ok(&format!("ls {ws}/d")), "b.txt\n");
    f.ok(&format!(
        "cp {ws}/d/b.txt {ws}/c.txt && rm {ws}/d/b.txt && rmdir {ws}/d"
    ));
    assert_eq!(f.ok(&format!("ls {ws}")), "c.txt\n");
    f.ok(&format!(
        "touch {ws}/c.txt && chmod 600 {ws}/c.txt && truncate -s 2 {ws}/c.txt"
    ));
    assert_eq!(f.ok(&format!("cat {ws}/c.txt")), "he");
    assert_eq!(f.ok(&format!("stat -c %s {ws}/c.txt")), "2\n");
    assert!(
        f.fails(&format!("rmdir {ws}/nope"))
            .contains("No such file")
    );
    // The data really is on disk.
    assert_eq!(
        std::fs::read(f._data.path().join("users/alice/workspace/c.txt")).unwrap(),
        b"he"
    );
}

#[test]
fn secrets_proc_and_other_users_are_refused() {
    if !fuse_available() {
        return;
    }
    let f = Fixture::new();
    assert!(f.fails("ls $M/secrets").contains("Operation not permitted"));
    assert!(
        f.fails("cat $M/secrets/alice/key.enc")
            .contains("Operation not permitted")
    );
    f.vfs
        .publish(&p("/proc/status.yaml"), SynthFile::fixed("state: ok\n"))
        .unwrap();
    assert_eq!(f.ok("cat $M/proc/status.yaml"), "state: ok\n");
    assert!(
        f.fails("echo x > $M/proc/status.yaml")
            .contains("Operation not permitted")
    );
    assert!(
        f.fails("echo x > $M/proc/new")
            .contains("Operation not permitted")
    );
    assert!(
        f.fails("mkdir $M/proc/d")
            .contains("Operation not permitted")
    );
    // uid 65534 is bob: his workspace yes, alice's no; an unmapped uid gets nothing.
    let as_bob =
        |s: &str| format!("setpriv --reuid=65534 --regid=65534 --clear-groups sh -c '{s}'");
    f.ok(&as_bob(
        "echo mine > $M/users/bob/workspace/x && cat $M/users/bob/workspace/x",
    ));
    assert!(
        f.fails(&as_bob(
            "cat $M/users/alice/workspace/../workspace/nothing; ls $M/users/alice/workspace"
        ))
        .contains("No such file or directory")
    );
    // The home itself is listed in /users, but not readable.
    assert!(
        f.fails(&as_bob("ls $M/users/alice"))
            .contains("Permission denied")
    );
    assert!(
        f.fails(&as_bob("echo no > $M/etc/avix/conf.yaml"))
            .contains("Permission denied")
    );
    assert!(
        f.fails("setpriv --reuid=4242 --regid=4242 --clear-groups ls $M")
            .contains("Permission denied")
    );
    assert_eq!(f.ok("stat -c %u $M/users/bob/workspace/x"), "65534\n");
}

#[test]
fn invalid_config_is_refused_and_the_old_content_stays() {
    if !fuse_available() {
        return;
    }
    let f = Fixture::new();
    let conf = "$M/etc/avix/conf.yaml";
    assert_eq!(f.ok(&format!("cat {conf}")), "valid: 1\n");
    let err = f.fails(&format!("printf 'broken: [' | tee {conf} >/dev/null"));
    assert!(err.contains("Invalid argument"), "{err}");
    let err = f.fails(&format!("/bin/echo broken > {conf}"));
    assert!(err.contains("Invalid argument"), "{err}");
    // The shell builtin: bash reports the error of close(2) only for some redirections,
    // so only the content is checked here.
    let _ = f.sh(&format!("echo broken > {conf}"));
    assert_eq!(f.ok(&format!("cat {conf}")), "valid: 1\n");
    let err = f.fails(&format!("cat > {conf} <<< broken"));
    assert!(err.contains("Invalid argument"), "{err}");
    assert_eq!(f.ok(&format!("cat {conf}")), "valid: 1\n");
    f.ok(&format!("echo 'valid: 2' > {conf}"));
    assert_eq!(f.ok(&format!("cat {conf}")), "valid: 2\n");
    assert!(f.vfs.rejections() >= 2);
}

#[test]
fn control_files_and_fresh_reads() {
    if !fuse_available() {
        return;
    }
    let f = Fixture::new();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let s = seen.clone();
    f.vfs
        .publish(
            &p("/proc/ctl"),
            SynthFile::control(
                |_| Ok("commands: ping\n".into()),
                move |c, d| {
                    let cmd = String::from_utf8_lossy(d).trim().to_owned();
                    if cmd != "ping" {
                        return Err(VfsError::InvalidInput {
                            path: p("/proc/ctl"),
                            reason: format!("unknown command {cmd:?}"),
                        });
                    }
                    s.lock().unwrap().push(format!("{c}"));
                    Ok(Some("pong\n".into()))
                },
            )
            .writers(avix_vfs::Writers::AnyUser),
        )
        .unwrap();
    f.ok("echo ping > $M/proc/ctl");
    let err = f.fails("echo nonsense > $M/proc/ctl");
    assert!(err.contains("Invalid argument"), "{err}");
    // A transaction: write the request and read the reply on the same open file.
    assert_eq!(
        f.ok("exec 3<>$M/proc/ctl; echo ping >&3; cat <&3"),
        "pong\n"
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
    // Another door changes a file: the mount shows the new content at once.
    let path = p("/users/alice/workspace/live.txt");
    f.vfs.write(&Caller::kernel(), &path, b"one\n").unwrap();
    assert_eq!(f.ok("cat $M/users/alice/workspace/live.txt"), "one\n");
    f.vfs
        .write(&Caller::kernel(), &path, b"two, longer\n")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(
        f.ok("cat $M/users/alice/workspace/live.txt"),
        "two, longer\n"
    );
}

#[test]
fn a_new_document_unlinked_before_its_release_stays_unlinked() {
    // vim's swap-name probe in /etc/avix: `open(O_CREAT|O_EXCL); close; unlink` of an empty
    // file. The mount's RELEASE is asynchronous, so the daemon can see the unlink first,
    // while the file is still a draft; the release that follows must not bring it back
    // (seen as `.users.yaml.swp` and `.swx` left over).
    if !fuse_available() {
        return;
    }
    let f = Fixture::new();
    let k = Caller::kernel();
    let path = p("/etc/avix/.users.yaml.swp");
    let opts = avix_vfs::OpenOptions {
        read: false,
        write: true,
        truncate: true,
        create: true,
        exclusive: true,
    };
    // vim's probe: create .swp and .swx empty, close them (FLUSH commits nothing: an empty
    // new document is a draft until its last close), remove them.
    let (h, _) = f.vfs.open(&k, &path, opts).unwrap();
    f.vfs.flush(h).unwrap();
    f.vfs.remove_file(&k, &path).unwrap();
    f.vfs.release(h).unwrap();
    assert!(
        f.vfs.stat(&k, &path).is_err(),
        "the unlinked draft came back"
    );
}

#[test]
fn a_draft_closing_while_its_name_is_removed_never_comes_back() {
    // The same probe with the RELEASE and the unlink at the same moment (two daemon threads):
    // the unlink comes wholly before or after the draft's commit, so it always succeeds and
    // the name is always gone (the flaky sed/vim test once the ordered case was fixed).
    if !fuse_available() {
        return;
    }
    let f = Fixture::new();
    let k = Caller::kernel();
    let path = p("/etc/avix/.users.yaml.swx");
    let opts = avix_vfs::OpenOptions {
        write: true,
        truncate: true,
        create: true,
        exclusive: true,
        ..Default::default()
    };
    for round in 0..400 {
        let (h, _) = f.vfs.open(&k, &path, opts).unwrap();
        f.vfs.flush(h).unwrap();
        let start = std::sync::Barrier::new(2);
        let unlinked = std::thread::scope(|s| {
            s.spawn(|| {
                start.wait();
                f.vfs.release(h).unwrap();
            });
            start.wait();
            f.vfs.remove_file(&k, &path)
        });
        assert!(unlinked.is_ok(), "round {round}: {unlinked:?}");
        assert!(
            f.vfs.stat(&k, &path).is_err(),
            "round {round}: the unlinked draft came back"
        );
    }
}
