//! The kernel tested through its own API, without doors: agents as processes with real storage,
//! journals, the scripted provider and the real provider adapters against a loopback server;
//! the rules (grants, a child within its parent's rights, budgets, approvals), sessions and
//! crash recovery. The doors' tests are in avix-server (ATP, IPC, services) and avix-cli (the
//! mount, the binaries).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agents;
mod common;
mod forks;
mod policy;
mod providers;
mod recovery;
mod sessions;
mod snapshots;
mod storage;
