//! The daemon and its administration: `avix server config init` and `avix server start`.
//!
//! # Layout
//! - [`init`]: creates a runtime root (configuration, keys, data trees).
//! - [`start`]: boots the daemon: kernel, FUSE mount, ATP listener, signals, shutdown.
//! - [`run`]: one agent without a daemon.
//! - [`pidfile`]: one daemon per root.
//! - [`watch`]: picks up edits made on the host disk.
//! - `avix_kernel::fsutil`: atomic, durable file writes with exact modes.
//!
//! This crate composes the kernel with its doors; it is the only one that knows them all.

pub use avix_kernel::root as init;
pub mod pidfile;
pub mod run;
pub mod start;
pub mod watch;
