//! The Avix virtual filesystem, without FUSE and without the kernel: one namespace of trees
//! served by storage drivers and synthetic files, with the access rules in one place.
//!
//! # Layout
//! - [`path`]: canonical paths ([`VfsPath`]).
//! - [`caller`]: who asks ([`Caller`]).
//! - [`access`]: the rules per tree and per caller.
//! - [`storage`]: the driver trait and the local-disk and memory drivers.
//! - [`synthetic`]: computed and control files.
//! - [`mount`]: the mount table.
//! - [`vfs`]: the [`Vfs`] facade (path calls and open files), write guards and change events.
//! - [`error`]: [`VfsError`] and its errno mapping.

pub mod access;
mod cache;
pub mod caller;
pub mod error;
pub mod mount;
pub mod path;
pub mod storage;
pub mod synthetic;
pub mod vfs;

pub use access::Writers;
pub use caller::{Caller, Door, Principal};
pub use error::VfsError;
pub use path::{PathError, VfsPath};
pub use storage::{DirEntry, EntryKind, LocalStorage, MemoryStorage, Storage};
pub use synthetic::{PublishError, SynthFile};
pub use vfs::{
    Change, ChangeKind, HandleId, OpenOptions, Refusal, Stat, Vfs, VfsBuilder, WriteGuard,
};
