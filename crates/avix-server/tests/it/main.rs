//! The kernel with real storage, journals, the scripted provider and real provider adapters
//! against a loopback server: agents as processes,
//! driven through the kernel API and the VFS (the mount is tested in avix-cli).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agents;
mod atp;
mod common;
mod exec;
mod mcp;
mod providers;
mod recovery;
mod reference;
mod security;
mod services;
mod sessions;
