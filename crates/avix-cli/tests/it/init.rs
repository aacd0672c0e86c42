//! `avix server config init`.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use avix_testkit::TestDaemon;

use crate::{bin, stderr};

#[test]
fn init_writes_private_config_and_shows_the_api_key_once() {
    let d = TestDaemon::init(bin());
    assert!(
        d.api_key.starts_with("sk-avix-") && d.api_key.len() == 51,
        "{}",
        d.init_output
    );
    for f in ["auth.conf", "kernel.yaml", "master.key"] {
        let mode = std::fs::metadata(d.root.join("etc").join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    for f in ["users.yaml", "crews.yaml", "llm.yaml"] {
        assert!(d.root.join("etc").join(f).is_file(), "{f}");
    }
    let auth = std::fs::read_to_string(d.root.join("etc/auth.conf")).unwrap();
    assert!(!auth.contains(&d.api_key), "the key itself is never stored");
    assert!(auth.contains("keyHash: hmac-sha256:"));
    for dir in [
        "data/bin",
        "data/users/alice/workspace",
        "data/services",
        "data/crews",
        "data/secrets",
    ] {
        assert!(d.root.join(dir).is_dir(), "{dir}");
    }
}

#[test]
fn init_on_an_existing_root_refuses_without_force_and_keeps_data_with_it() {
    let d = TestDaemon::init(bin());
    let out = d.avix(&[
        "server",
        "config",
        "init",
        "--root",
        d.root.to_str().unwrap(),
        "--non-interactive",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("already initialised") && err.contains("--force"),
        "{err}"
    );

    let note = d.root.join("data/users/alice/workspace/note.txt");
    std::fs::write(&note, "mine").unwrap();
    let out = d.avix(&[
        "server",
        "config",
        "init",
        "--root",
        d.root.to_str().unwrap(),
        "--user",
        "alice",
        "--non-interactive",
        "--force",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&note).unwrap(), "mine");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Reusing the master key file"));
}

#[test]
fn init_rejects_bad_flags_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("r");
    let run = |args: &[&str]| {
        Command::new(bin())
            .args(["server", "config", "init", "--root"])
            .arg(&root)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--user", "Bad/Name", "--non-interactive"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid user name"),
        "{}",
        stderr(&out)
    );
    let out = run(&["--api-key", "short", "--non-interactive"]);
    assert!(stderr(&out).contains("at least 32"), "{}", stderr(&out));
    let out = run(&["--credential-type", "password", "--non-interactive"]);
    assert!(
        stderr(&out).contains("a password is needed"),
        "{}",
        stderr(&out)
    );
    let out = run(&["--role", "root"]);
    assert!(!out.status.success());
    assert!(
        !root.join("etc/auth.conf").exists(),
        "nothing written on error"
    );
}

#[test]
fn env_mode_prints_the_master_key_once() {
    let d = TestDaemon::init_with(bin(), &["--master-key-source", "env"]);
    let line = d
        .init_output
        .lines()
        .find(|l| l.contains("export AVIX_MASTER_KEY="))
        .expect("export line");
    let key = line.trim().trim_start_matches("export AVIX_MASTER_KEY=");
    assert_eq!(key.len(), 64);
    assert!(!d.root.join("etc/master.key").exists());
}
