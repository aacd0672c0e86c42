//! End-to-end tests of the `avix` binary: init, the daemon's life, and its FUSE mount driven
//! with shell tools. Mount tests need root and /dev/fuse (see avix-testkit).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agents;
mod client;
mod daemon;
mod init;
mod mount;
mod providers;
mod security;

use std::path::Path;

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_avix"))
}

/// The repository root (for scripts under tests/).
pub fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// stderr as text.
pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
