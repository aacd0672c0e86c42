//! The FUSE door: mounts the Avix VFS on the host so shell tools work on it.
//!
//! It only translates. Inode numbers map to VFS paths, every request is answered by a
//! [`Vfs`](avix_vfs::Vfs) call made as the [`avix_vfs::Caller`] the calling uid maps
//! to, and errors become errno through [`VfsError::errno`](avix_vfs::VfsError::errno).
//!
//! # Layout
//! - [`inodes`]: the inode ↔ path table.
//! - [`fs`]: the `fuser::Filesystem` implementation.
//! - [`mod@mount`]: mounting, unmounting, and detecting stale or busy mount points.
//! - [`guard`]: a watcher process that lazily unmounts if the daemon dies (even by SIGKILL).
//!
//! Caching: synthetic files have TTL 0 and direct I/O, so `cat` always sees fresh content;
//! persistent files use attribute and entry TTLs and the kernel page cache, invalidated
//! through FUSE notifications whenever the VFS reports a change from any door.

pub mod fs;
pub mod guard;
pub mod inodes;
pub mod mount;
pub mod posix;

use avix_proto::UserName;
use avix_vfs::Caller;

pub use fs::AvixFs;
pub use mount::{
    DataIo, MountError, MountPointState, Mounted, mount, mount_with, probe_mount_point,
};

/// Maps host uids to Avix callers and back (for `ls -l`).
pub trait Identities: Send + Sync + 'static {
    /// The caller a host uid acts as, or `None` (the request then fails with EACCES).
    fn caller(&self, host_uid: u32) -> Option<Caller>;
    /// The host uid to show as the owner of `user`'s files.
    fn host_uid(&self, user: &UserName) -> Option<u32>;
}
