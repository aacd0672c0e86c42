//! End-to-end tests of the `avix` binary: init, the daemon's life, and its FUSE mount driven
//! with shell tools. Mount tests need root and /dev/fuse (see avix-testkit).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agents;
mod chaos;
mod client;
mod daemon;
mod init;
mod mount;
mod providers;
mod security;
mod tui;

use std::path::Path;

pub(crate) fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_avix"))
}

/// The repository root (for scripts under tests/).
pub(crate) fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// stderr as text.
pub(crate) fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts that every line of every journal under `root` (alice's runs) is whole JSON.
pub(crate) fn journal_lines_are_whole(root: &Path) {
    for j in journals(root) {
        let Ok(text) = std::fs::read_to_string(&j) else {
            continue;
        };
        for l in text.lines() {
            assert!(
                serde_json::from_str::<serde_json::Value>(l).is_ok(),
                "{}: a torn line: {l:?}",
                j.display()
            );
        }
    }
}

/// The journal files of alice's runs under `root`.
pub(crate) fn journals(root: &Path) -> Vec<std::path::PathBuf> {
    let users = root.join("data/users/alice/agents");
    let mut out = Vec::new();
    for a in std::fs::read_dir(&users).into_iter().flatten().flatten() {
        for run in std::fs::read_dir(a.path()).into_iter().flatten().flatten() {
            out.push(run.path().join("journal.jsonl"));
        }
    }
    out
}

/// Processes whose command line contains `needle`.
pub(crate) fn pids_of(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd)
            .replace('\0', " ")
            .contains(needle)
        {
            out.push(pid);
        }
    }
    out
}
