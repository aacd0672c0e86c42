//! Storage drivers: where the bytes of persistent trees live. The VFS mounts one driver per
//! tree; a driver sees only paths relative to its own root (`""` is the root, components are
//! joined with `/` and already validated by [`VfsPath`](crate::VfsPath)).
//!
//! Every change a driver makes is atomic: a reader sees the old content or the new, never a
//! mix, and a crash leaves one or the other.
//!
//! [`invocations`] is the same seam for the record of runs (journals and invocation records),
//! which the kernel keeps outside the VFS's write path.

pub mod invocations;
pub mod local;
pub mod memory;

use std::fmt;
use std::time::SystemTime;

use bytes::Bytes;

pub use invocations::{
    InvocationKey, InvocationStore, JournalLog, LocalInvocations, MemoryInvocations,
};
pub use local::LocalStorage;
pub use memory::MemoryStorage;

/// File or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

/// Attributes a driver reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// File or directory.
    pub kind: EntryKind,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Last modification.
    pub mtime: SystemTime,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name within its directory.
    pub name: String,
    /// File or directory.
    pub kind: EntryKind,
}

/// Space figures for `statfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpaceStats {
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub blocks_free: u64,
    /// Blocks available to unprivileged users.
    pub blocks_avail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub files_free: u64,
    /// Block size.
    pub block_size: u32,
}

/// Why a driver operation failed. The VFS turns it into a [`VfsError`](crate::VfsError) with the
/// full path.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Missing.
    #[error("not found")]
    NotFound,
    /// Exists already.
    #[error("already exists")]
    AlreadyExists,
    /// A file where a directory is needed.
    #[error("not a directory")]
    NotADirectory,
    /// A directory where a file is needed.
    #[error("is a directory")]
    IsADirectory,
    /// Directory has entries.
    #[error("directory not empty")]
    NotEmpty,
    /// Any other OS error.
    #[error(transparent)]
    Io(std::io::Error),
}

impl From<std::io::Error> for StorageError {
    fn from(e: std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ENOENT) => StorageError::NotFound,
            Some(libc::EEXIST) => StorageError::AlreadyExists,
            Some(libc::ENOTDIR) => StorageError::NotADirectory,
            Some(libc::EISDIR) => StorageError::IsADirectory,
            Some(libc::ENOTEMPTY) => StorageError::NotEmpty,
            _ => StorageError::Io(e),
        }
    }
}

/// How a write transaction starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnStart {
    /// Empty (O_TRUNC, or a new file).
    Empty,
    /// A copy of the current content (missing file = empty).
    Existing,
}

/// A pending replacement of one file's content. Nothing is visible until [`WriteTxn::commit`];
/// dropping the transaction abandons it.
pub trait WriteTxn: Send + fmt::Debug {
    /// Writes `data` at `offset`, growing the file (holes read as zeros).
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError>;
    /// Reads up to `len` bytes at `offset` of the pending content.
    fn read_at(&mut self, offset: u64, len: usize) -> Result<Bytes, StorageError>;
    /// Truncates or extends the pending content.
    fn set_len(&mut self, len: u64) -> Result<(), StorageError>;
    /// Current pending length.
    fn len(&self) -> u64;
    /// Whether the pending content is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The whole pending content (used to validate small files before commit).
    fn contents(&mut self) -> Result<Vec<u8>, StorageError>;
    /// Makes the pending content the file's content, atomically and durably.
    fn commit(self: Box<Self>) -> Result<Meta, StorageError>;
}

/// A storage driver.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Short driver name (`local`, `memory`) for status output.
    fn kind(&self) -> &'static str;
    /// Attributes of `rel`.
    fn stat(&self, rel: &str) -> Result<Meta, StorageError>;
    /// The whole content of the file `rel`.
    fn read(&self, rel: &str) -> Result<Bytes, StorageError>;
    /// Up to `len` bytes of `rel` at `offset`.
    fn read_at(&self, rel: &str, offset: u64, len: usize) -> Result<Bytes, StorageError>;
    /// The entries of the directory `rel` (unsorted; no `.` or `..`).
    fn list(&self, rel: &str) -> Result<Vec<DirEntry>, StorageError>;
    /// Starts replacing the content of `rel` (its parent must exist).
    fn begin_write(&self, rel: &str, start: TxnStart) -> Result<Box<dyn WriteTxn>, StorageError>;
    /// Replaces the content of `rel` with `data`, atomically and durably.
    fn write(&self, rel: &str, data: &[u8]) -> Result<Meta, StorageError> {
        let mut txn = self.begin_write(rel, TxnStart::Empty)?;
        txn.write_at(0, data)?;
        txn.commit()
    }
    /// Creates the directory `rel` (its parent must exist).
    fn mkdir(&self, rel: &str) -> Result<(), StorageError>;
    /// Removes the file `rel`.
    fn remove_file(&self, rel: &str) -> Result<(), StorageError>;
    /// Removes the empty directory `rel`.
    fn remove_dir(&self, rel: &str) -> Result<(), StorageError>;
    /// Renames `from` to `to` atomically, replacing a file or an empty directory at `to`.
    fn rename(&self, from: &str, to: &str) -> Result<(), StorageError>;
    /// Space figures.
    fn space(&self) -> Result<SpaceStats, StorageError>;
    /// The directory `rel` as an `O_PATH` descriptor on the host, for a door that serves it as
    /// an ordinary POSIX tree (the mount's data trees); `None` when the driver has no host
    /// files (memory).
    fn open_tree(&self, rel: &str) -> Result<Option<std::os::fd::OwnedFd>, StorageError> {
        let _ = rel;
        Ok(None)
    }
}
