//! The doors on a real kernel: ATP over loopback WebSockets, the reference clients' frames,
//! JSON-RPC over Unix sockets, services, exec and MCP servers, attacks from a second user (the
//! kernel's own tests are in avix-kernel, the mount's in avix-cli).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod atp;
mod common;
mod exec;
mod mcp;
mod reference;
mod security;
mod services;
