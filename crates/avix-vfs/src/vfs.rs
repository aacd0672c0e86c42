//! The VFS itself: one namespace over the mount table, with the access rules applied to every
//! call, write guards for validated files, a content cache, open files, and change events.
//!
//! Two APIs share the same checks:
//! - path calls (`read`, `write`, `list`, …) for ATP, IPC and kernel code;
//! - open-file calls (`open`, `read_at`, `write_at`, `flush`, `release`) for the FUSE adapter,
//!   where a write is buffered in a storage transaction and committed atomically on flush.

mod handles;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use avix_proto::UserName;
use bytes::Bytes;

use self::handles::OpenFile;
pub use self::handles::{HandleId, OpenOptions};
use crate::access::{self, Access};
use crate::cache::ContentCache;
use crate::caller::{Caller, Door};
use crate::error::VfsError;
use crate::mount::{Backend, Mount, MountTable, Resolved};
use crate::path::VfsPath;
use crate::storage::{DirEntry, EntryKind, SpaceStats, Storage, StorageError, TxnStart};
use crate::synthetic::{Found, PublishError, SynthFile, SyntheticTree};

/// Largest content a guarded (validated) file may have; validators parse it in memory.
pub const MAX_GUARDED_BYTES: u64 = 1024 * 1024;

/// Validates writes to a subtree before they take effect (e.g. `/etc/avix/*.yaml`).
pub trait WriteGuard: Send + Sync {
    /// Checks a new content for `path`. `Err` carries the reason, shown to the writer and
    /// logged; the old content stays. The writer sees `EINVAL` ([`VfsError::Rejected`]).
    fn check_content(&self, path: &VfsPath, content: &[u8]) -> Result<(), avix_proto::Error>;
    /// Checks that `path` may disappear (removed, or renamed away).
    fn check_remove(&self, _path: &VfsPath) -> Result<(), avix_proto::Error> {
        Ok(())
    }
}

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// A new entry.
    Created,
    /// New content or size.
    Modified,
    /// Gone.
    Removed,
    /// Moved here from `from`.
    Renamed {
        /// The old path.
        from: VfsPath,
    },
}

/// A change to a persistent tree, announced to listeners (the FUSE adapter uses it to
/// invalidate the kernel's caches; the daemon to hot-reload configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The path (the new path for renames).
    pub path: VfsPath,
    /// What happened.
    pub kind: ChangeKind,
    /// Through which door.
    pub door: Door,
}

type Listener = Arc<dyn Fn(&Change) + Send + Sync>;

/// Attributes of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// File or directory.
    pub kind: EntryKind,
    /// Size in bytes (for synthetic files: the current rendering).
    pub size: u64,
    /// Last modification.
    pub mtime: SystemTime,
    /// Permission bits to display (the real checks are in [`access`]).
    pub mode: u16,
    /// The user the entry belongs to, for display (`None`: the system).
    pub owner: Option<UserName>,
    /// Computed by the kernel: never cache it.
    pub synthetic: bool,
}

/// Builds a [`Vfs`].
#[derive(Default)]
pub struct VfsBuilder {
    table: MountTable,
    guards: Vec<(VfsPath, Arc<dyn WriteGuard>)>,
}

impl fmt::Debug for VfsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VfsBuilder")
            .field("table", &self.table)
            .finish()
    }
}

impl VfsBuilder {
    /// Mounts a storage driver at `prefix`.
    pub fn mount_storage(mut self, prefix: VfsPath, storage: Arc<dyn Storage>) -> Self {
        self.table.add(prefix, Backend::Storage(storage));
        self
    }

    /// Mounts an empty synthetic tree at `prefix`.
    pub fn mount_synthetic(mut self, prefix: VfsPath) -> Self {
        self.table
            .add(prefix, Backend::Synthetic(Arc::new(SyntheticTree::new())));
        self
    }

    /// Mounts a sealed tree (nothing in it is ever visible) at `prefix`.
    pub fn mount_sealed(mut self, prefix: VfsPath) -> Self {
        self.table.add(prefix, Backend::Sealed);
        self
    }

    /// Guards writes to files under `prefix`.
    pub fn guard(mut self, prefix: VfsPath, guard: Arc<dyn WriteGuard>) -> Self {
        self.guards.push((prefix, guard));
        self
    }

    /// Finishes.
    pub fn build(self) -> Vfs {
        Vfs {
            table: self.table,
            guards: self.guards,
            cache: ContentCache::default(),
            listeners: RwLock::new(Vec::new()),
            handles: Mutex::new(HashMap::new()),
            drafts: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            rejections: AtomicU64::new(0),
            refusals: Mutex::default(),
        }
    }
}

/// The virtual filesystem.
pub struct Vfs {
    table: MountTable,
    guards: Vec<(VfsPath, Arc<dyn WriteGuard>)>,
    cache: ContentCache,
    // Registered at start-up; read on every change.
    listeners: RwLock<Vec<Listener>>,
    // Held only to find or insert an open file; each open file has its own lock.
    handles: Mutex<HashMap<u64, Arc<Mutex<OpenFile>>>>,
    // The drafts open now (new validated documents not committed yet), by handle id. A
    // draft commits only while it is here, and an unlink of its name takes it out, both under
    // this lock: a late last close (the mount's RELEASE is asynchronous) cannot bring back a
    // file whose name was removed. Never held while an open file's lock is taken.
    drafts: Mutex<HashMap<u64, VfsPath>>,
    next_handle: AtomicU64,
    rejections: AtomicU64,
    // The most recent refusals, for `/proc/errors`; short critical sections only.
    refusals: Mutex<std::collections::VecDeque<Refusal>>,
}

/// Refusals kept for `/proc/errors`.
pub const MAX_REFUSALS: usize = 256;

/// A write the VFS or a control file refused: what the writer would otherwise only learn
/// from `EINVAL` and the daemon's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// When.
    pub at: avix_proto::time::Timestamp,
    /// The file.
    pub path: VfsPath,
    /// Who wrote (`None`: the kernel).
    pub user: Option<UserName>,
    /// Why, in the words the writer should read.
    pub reason: String,
}

impl fmt::Debug for Vfs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vfs")
            .field("mounts", &self.table.mounts().len())
            .finish()
    }
}

/// Maps a driver error to a VFS error for `path`.
pub fn storage_err(path: &VfsPath, e: StorageError) -> VfsError {
    match e {
        StorageError::NotFound => VfsError::NotFound(path.clone()),
        StorageError::AlreadyExists => VfsError::AlreadyExists(path.clone()),
        StorageError::NotADirectory => VfsError::NotADirectory(path.clone()),
        StorageError::IsADirectory => VfsError::IsADirectory(path.clone()),
        StorageError::NotEmpty => VfsError::NotEmpty(path.clone()),
        StorageError::Io(source) => VfsError::Io {
            path: path.clone(),
            source,
        },
    }
}

/// The user a persistent path belongs to, for display.
fn path_owner(path: &VfsPath) -> Option<UserName> {
    let mut c = path.components();
    match (c.next(), c.next()) {
        (Some("users" | "services"), Some(name)) => UserName::new(name).ok(),
        _ => None,
    }
}

fn kernel_only(path: &VfsPath) -> VfsError {
    VfsError::NotPermitted {
        path: path.clone(),
        reason: "this tree is written only by the kernel",
    }
}

fn dir_stat(mode: u16, owner: Option<UserName>, mtime: SystemTime, synthetic: bool) -> Stat {
    Stat {
        kind: EntryKind::Dir,
        size: 0,
        mtime,
        mode,
        owner,
        synthetic,
    }
}

fn persistent_file_mode(path: &VfsPath) -> u16 {
    match path.as_str() {
        "/etc/avix/auth.conf" | "/etc/avix/kernel.yaml" => 0o600,
        _ => 0o644,
    }
}

fn synthetic_file_mode(file: &SynthFile) -> u16 {
    if file.is_control() { 0o644 } else { 0o444 }
}

impl Vfs {
    /// Starts building a VFS.
    pub fn builder() -> VfsBuilder {
        VfsBuilder::default()
    }

    /// The mount table.
    pub fn mounts(&self) -> &[Mount] {
        self.table.mounts()
    }

    /// Registers a change listener. Listeners run on the thread that made the change and must
    /// be quick (queue work elsewhere).
    pub fn subscribe(&self, listener: impl Fn(&Change) + Send + Sync + 'static) {
        self.listeners
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Arc::new(listener));
    }

    fn emit(&self, path: &VfsPath, kind: ChangeKind, door: Door) {
        let change = Change {
            path: path.clone(),
            kind,
            door,
        };
        let listeners = self
            .listeners
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for l in listeners {
            l(&change);
        }
    }

    /// Reports a change made outside the VFS (an edit on the host disk): drops cached content
    /// and tells listeners.
    pub fn external_change(&self, path: &VfsPath, kind: ChangeKind) {
        self.cache.invalidate_tree(path);
        self.emit(path, kind, Door::Disk);
    }

    /// Writes refused by a guard since start.
    pub fn rejections(&self) -> u64 {
        self.rejections.load(Ordering::Relaxed)
    }

    /// Files open right now.
    pub fn open_files(&self) -> usize {
        self.handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Bytes held by the content cache.
    pub fn cached_bytes(&self) -> usize {
        self.cache.len_bytes()
    }

    fn guard_for(&self, path: &VfsPath) -> Option<&Arc<dyn WriteGuard>> {
        self.guards
            .iter()
            .find(|(p, _)| path.starts_with(p) && path != p)
            .map(|(_, g)| g)
    }

    fn check_content(
        &self,
        caller: &Caller,
        path: &VfsPath,
        content: &[u8],
    ) -> Result<(), VfsError> {
        let Some(guard) = self.guard_for(path) else {
            return Ok(());
        };
        let result = if content.len() as u64 > MAX_GUARDED_BYTES {
            Err(avix_proto::Error::invalid(format!(
                "content is over the {MAX_GUARDED_BYTES}-byte limit for this file"
            )))
        } else {
            guard.check_content(path, content)
        };
        result.map_err(|e| self.reject(caller, path, e.message))
    }

    fn check_remove(&self, caller: &Caller, path: &VfsPath) -> Result<(), VfsError> {
        let Some(guard) = self.guard_for(path) else {
            return Ok(());
        };
        guard
            .check_remove(path)
            .map_err(|e| self.reject(caller, path, e.message))
    }

    fn reject(&self, caller: &Caller, path: &VfsPath, reason: String) -> VfsError {
        self.rejections.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%path, %caller, %reason, "write refused, old content kept");
        self.record_refusal(caller, path, format!("refused, old content kept: {reason}"));
        VfsError::Rejected {
            path: path.clone(),
            reason,
        }
    }

    /// Keeps a refusal for `/proc/errors` (the most recent [`MAX_REFUSALS`]).
    pub fn record_refusal(&self, caller: &Caller, path: &VfsPath, reason: String) {
        let mut r = self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if r.len() == MAX_REFUSALS {
            r.pop_front();
        }
        r.push_back(Refusal {
            at: avix_proto::time::Timestamp::now(),
            path: path.clone(),
            user: caller.user_name().cloned(),
            reason,
        });
    }

    /// The recent refusals `caller` may see: its own, or everyone's for operators.
    pub fn refusals(&self, caller: &Caller) -> Vec<Refusal> {
        let all = caller.is_kernel() || caller.role >= avix_proto::Role::Operator;
        self.refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|r| all || (r.user.is_some() && r.user.as_ref() == caller.user_name()))
            .cloned()
            .collect()
    }

    fn synthetic_tree(
        &self,
        path: &VfsPath,
    ) -> Result<(&Arc<SyntheticTree>, String), PublishError> {
        match self.table.resolve(path) {
            Resolved::Mounted(
                Mount {
                    backend: Backend::Synthetic(t),
                    ..
                },
                rel,
            ) => Ok((t, rel.to_owned())),
            _ => Err(PublishError::NotSynthetic),
        }
    }

    /// Publishes a synthetic file (kernel only; see [`SynthFile`]).
    pub fn publish(&self, path: &VfsPath, file: SynthFile) -> Result<(), PublishError> {
        let (tree, rel) = self.synthetic_tree(path)?;
        tree.publish(&rel, file)
    }

    /// Creates a synthetic directory; files below it inherit `owner`.
    pub fn publish_dir(&self, path: &VfsPath, owner: Option<UserName>) -> Result<(), PublishError> {
        let (tree, rel) = self.synthetic_tree(path)?;
        tree.publish_dir(&rel, owner)
    }

    /// Removes a synthetic file or directory tree.
    pub fn unpublish(&self, path: &VfsPath) -> bool {
        self.synthetic_tree(path)
            .is_ok_and(|(tree, rel)| tree.remove(&rel))
    }

    /// The host directory of the data tree rooted at `root` (see [`access::data_tree_root`]),
    /// opened as an `O_PATH` descriptor for a door that serves it as plain POSIX files, if
    /// `caller` may look it up and its driver has host files (`None`: serve it through the VFS).
    pub fn data_tree(
        &self,
        caller: &Caller,
        root: &VfsPath,
    ) -> Result<Option<std::os::fd::OwnedFd>, VfsError> {
        if access::data_tree_root(root).as_ref() != Some(root) {
            return Ok(None);
        }
        access::check(caller, root, Access::Lookup)?;
        match self.table.resolve(root) {
            Resolved::Mounted(m, rel) => match &m.backend {
                Backend::Storage(s) => s.open_tree(rel).map_err(|e| storage_err(root, e)),
                _ => Ok(None),
            },
            _ => Err(VfsError::NotFound(root.clone())),
        }
    }

    /// Attributes of `path`.
    pub fn stat(&self, caller: &Caller, path: &VfsPath) -> Result<Stat, VfsError> {
        access::check(caller, path, Access::Lookup)?;
        match self.table.resolve(path) {
            Resolved::Virtual => Ok(dir_stat(0o755, None, SystemTime::UNIX_EPOCH, false)),
            Resolved::Nowhere => Err(VfsError::NotFound(path.clone())),
            Resolved::Mounted(m, rel) => match &m.backend {
                Backend::Sealed => Ok(dir_stat(0o700, None, SystemTime::UNIX_EPOCH, false)),
                Backend::Storage(s) => {
                    let meta = match s.stat(rel) {
                        Err(StorageError::NotFound) if self.guard_for(path).is_some() => {
                            return self
                                .draft_stat(path)
                                .ok_or_else(|| VfsError::NotFound(path.clone()));
                        }
                        r => r.map_err(|e| storage_err(path, e))?,
                    };
                    let mode = match meta.kind {
                        EntryKind::Dir => 0o755,
                        EntryKind::File => persistent_file_mode(path),
                    };
                    Ok(Stat {
                        kind: meta.kind,
                        size: meta.size,
                        mtime: meta.mtime,
                        mode,
                        owner: path_owner(path),
                        synthetic: false,
                    })
                }
                Backend::Synthetic(t) => match t
                    .lookup(rel)
                    .ok_or_else(|| VfsError::NotFound(path.clone()))?
                {
                    Found::Dir { owner, mtime } => {
                        access::check_node(
                            caller,
                            path,
                            owner.as_ref(),
                            Default::default(),
                            Access::Lookup,
                        )?;
                        Ok(dir_stat(0o555, owner, mtime, true))
                    }
                    Found::File { file, owner, mtime } => {
                        access::check_node(
                            caller,
                            path,
                            owner.as_ref(),
                            file.writers,
                            Access::Lookup,
                        )?;
                        // Rendering is the only way to know the size; callers that cannot
                        // see the content still see the entry, with size 0.
                        let size = if access::check_node(
                            caller,
                            path,
                            owner.as_ref(),
                            file.writers,
                            Access::Read,
                        )
                        .is_ok()
                        {
                            match &file.live {
                                Some(live) => (live.size)(),
                                None => (file.render)(caller).map(|b| b.len() as u64).unwrap_or(0),
                            }
                        } else {
                            0
                        };
                        Ok(Stat {
                            kind: EntryKind::File,
                            size,
                            mtime,
                            mode: synthetic_file_mode(&file),
                            owner,
                            synthetic: true,
                        })
                    }
                },
            },
        }
    }

    /// Checks, without doing anything, whether `caller` may read and/or write `path`
    /// (what `access(2)` asks).
    pub fn check_access(
        &self,
        caller: &Caller,
        path: &VfsPath,
        read: bool,
        write: bool,
    ) -> Result<(), VfsError> {
        let st = self.stat(caller, path)?;
        for (wanted, a) in [(read, Access::Read), (write, Access::Write)] {
            if !wanted {
                continue;
            }
            access::check(caller, path, a)?;
            if let Resolved::Mounted(
                Mount {
                    backend: Backend::Synthetic(t),
                    ..
                },
                rel,
            ) = self.table.resolve(path)
            {
                match t.lookup(rel) {
                    Some(Found::File { file, owner, .. }) => {
                        access::check_node(caller, path, owner.as_ref(), file.writers, a)?;
                        if a == Access::Write && !file.is_control() {
                            return Err(kernel_only(path));
                        }
                    }
                    Some(Found::Dir { .. }) if a == Access::Write => return Err(kernel_only(path)),
                    _ => {}
                }
            }
            if a == Access::Write && matches!(self.table.resolve(path), Resolved::Virtual) {
                return Err(kernel_only(path));
            }
        }
        let _ = st;
        Ok(())
    }

    /// The whole content of a file.
    pub fn read(&self, caller: &Caller, path: &VfsPath) -> Result<Bytes, VfsError> {
        access::check(caller, path, Access::Read)?;
        // Only persistent files are cached, so a hit needs no mount resolution.
        if let Some(b) = self.cache.get(path) {
            return Ok(b);
        }
        match self.table.resolve(path) {
            Resolved::Virtual => Err(VfsError::IsADirectory(path.clone())),
            Resolved::Nowhere => Err(VfsError::NotFound(path.clone())),
            Resolved::Mounted(m, rel) => match &m.backend {
                Backend::Sealed => Err(VfsError::IsADirectory(path.clone())),
                Backend::Storage(s) => self.read_persistent(s.as_ref(), path, rel),
                Backend::Synthetic(t) => match t
                    .lookup(rel)
                    .ok_or_else(|| VfsError::NotFound(path.clone()))?
                {
                    Found::Dir { .. } => Err(VfsError::IsADirectory(path.clone())),
                    Found::File { file, owner, .. } => {
                        access::check_node(
                            caller,
                            path,
                            owner.as_ref(),
                            file.writers,
                            Access::Read,
                        )?;
                        (file.render)(caller)
                    }
                },
            },
        }
    }

    pub(crate) fn read_persistent(
        &self,
        s: &dyn Storage,
        path: &VfsPath,
        rel: &str,
    ) -> Result<Bytes, VfsError> {
        if let Some(b) = self.cache.get(path) {
            return Ok(b);
        }
        let seen = self.cache.generation();
        let data = s.read(rel).map_err(|e| storage_err(path, e))?;
        // Data trees change under the VFS (the mount writes them as plain files, the sandbox
        // too): only documents are cached.
        if access::data_tree_root(path).is_none() {
            self.cache.insert(path, &data, seen);
        }
        Ok(data)
    }

    /// The entries of a directory, sorted by name.
    pub fn list(&self, caller: &Caller, path: &VfsPath) -> Result<Vec<DirEntry>, VfsError> {
        access::check(caller, path, Access::Read)?;
        let mut entries = match self.table.resolve(path) {
            Resolved::Nowhere => return Err(VfsError::NotFound(path.clone())),
            Resolved::Virtual => Vec::new(),
            Resolved::Mounted(m, rel) => match &m.backend {
                Backend::Sealed => Vec::new(),
                Backend::Storage(s) => s.list(rel).map_err(|e| storage_err(path, e))?,
                Backend::Synthetic(t) => {
                    if let Some(Found::Dir { owner, .. }) = t.lookup(rel) {
                        // Another user's agent directory is not there for this caller.
                        access::check_node(
                            caller,
                            path,
                            owner.as_ref(),
                            Default::default(),
                            Access::Read,
                        )?;
                    }
                    t.list(rel)
                        .ok_or_else(|| VfsError::NotFound(path.clone()))?
                        .into_iter()
                        .filter(|(e, owner)| {
                            // Entries of other users are not even listed.
                            path.join(&e.name).is_ok_and(|p| {
                                access::check_node(
                                    caller,
                                    &p,
                                    owner.as_ref(),
                                    Default::default(),
                                    Access::Read,
                                )
                                .is_ok()
                            })
                        })
                        .map(|(e, _)| e)
                        .collect()
                }
            },
        };
        for name in self.table.children_of(path) {
            if !entries.iter().any(|e| e.name == name) {
                entries.push(DirEntry {
                    name,
                    kind: EntryKind::Dir,
                });
            }
        }
        entries.retain(|e| path.join(&e.name).is_ok_and(|p| !access::is_hidden(&p)));
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Replaces a file's content (creating it), or sends one command to a control file and
    /// returns its reply.
    pub fn write(
        &self,
        caller: &Caller,
        path: &VfsPath,
        data: &[u8],
    ) -> Result<Option<Bytes>, VfsError> {
        access::check(caller, path, Access::Write)?;
        match self.table.resolve(path) {
            Resolved::Virtual => Err(VfsError::IsADirectory(path.clone())),
            Resolved::Nowhere => Err(VfsError::NotFound(path.clone())),
            Resolved::Mounted(m, rel) => match &m.backend {
                Backend::Sealed => Err(VfsError::NotPermitted {
                    path: path.clone(),
                    reason: "sealed tree",
                }),
                Backend::Storage(s) => {
                    if rel.is_empty() {
                        return Err(VfsError::IsADirectory(path.clone()));
                    }
                    let existed = s.stat(rel).is_ok();
                    self.check_content(caller, path, data)?;
                    s.write(rel, data).map_err(|e| storage_err(path, e))?;
                    self.cache.invalidate(path);
                    let kind = if existed {
                        ChangeKind::Modified
                    } else {
                        ChangeKind::Created
                    };
                    self.emit(path, kind, caller.door);
                    Ok(None)
                }
                Backend::Synthetic(t) => match t.lookup(rel) {
                    None | Some(Found::Dir { .. }) => Err(kernel_only(path)),
                    Some(Found::File { file, owner, .. }) => {
                        access::check_node(
                            caller,
                            path,
                            owner.as_ref(),
                            file.writers,
                            Access::Write,
                        )?;
                        let on_write =
                            file.on_write
                                .as_ref()
                                .ok_or_else(|| VfsError::NotPermitted {
                                    path: path.clone(),
                                    reason: "this file is read-only",
                                })?;
                        on_write(caller, data)
                    }
                },
            },
        }
    }

    fn storage_target<'a>(
        &'a self,
        path: &'a VfsPath,
        what: &'static str,
    ) -> Result<(&'a Arc<dyn Storage>, &'a str, &'a VfsPath), VfsError> {
        match self.table.resolve(path) {
            Resolved::Virtual => Err(VfsError::NotPermitted {
                path: path.clone(),
                reason: "the top-level layout is fixed",
            }),
            Resolved::Nowhere => Err(VfsError::NotFound(path.clone())),
            Resolved::Mounted(m, rel) => match &m.backend {
                Backend::Storage(_) if rel.is_empty() => Err(VfsError::NotPermitted {
                    path: path.clone(),
                    reason: "a mount point cannot be changed",
                }),
                Backend::Storage(s) => Ok((s, rel, &m.prefix)),
                Backend::Synthetic(_) | Backend::Sealed => {
                    tracing::debug!(%path, what, "refused in a kernel tree");
                    Err(kernel_only(path))
                }
            },
        }
    }

    /// Creates a directory.
    pub fn create_dir(&self, caller: &Caller, path: &VfsPath) -> Result<(), VfsError> {
        access::check(caller, path, Access::Write)?;
        if matches!(self.table.resolve(path), Resolved::Virtual)
            || self.mounts().iter().any(|m| &m.prefix == path)
        {
            return Err(VfsError::AlreadyExists(path.clone()));
        }
        let (s, rel, _) = self.storage_target(path, "mkdir")?;
        s.mkdir(rel).map_err(|e| storage_err(path, e))?;
        self.emit(path, ChangeKind::Created, caller.door);
        Ok(())
    }

    /// Removes a file.
    pub fn remove_file(&self, caller: &Caller, path: &VfsPath) -> Result<(), VfsError> {
        access::check(caller, path, Access::Write)?;
        let (s, rel, _) = self.storage_target(path, "unlink")?;
        self.check_remove(caller, path)?;
        if self.guard_for(path).is_some() {
            // A draft (a new document before its last close) exists only in its open file.
            self.remove_document(s.as_ref(), rel, path)?;
        } else {
            s.remove_file(rel).map_err(|e| storage_err(path, e))?;
        }
        self.cache.invalidate(path);
        self.emit(path, ChangeKind::Removed, caller.door);
        Ok(())
    }

    /// Removes an empty directory.
    pub fn remove_dir(&self, caller: &Caller, path: &VfsPath) -> Result<(), VfsError> {
        access::check(caller, path, Access::Write)?;
        let (s, rel, _) = self.storage_target(path, "rmdir")?;
        s.remove_dir(rel).map_err(|e| storage_err(path, e))?;
        self.cache.invalidate_tree(path);
        self.emit(path, ChangeKind::Removed, caller.door);
        Ok(())
    }

    /// Renames `from` to `to`, replacing a file or empty directory at `to`. Both must be in
    /// the same storage tree (else EXDEV, and `mv` copies).
    pub fn rename(&self, caller: &Caller, from: &VfsPath, to: &VfsPath) -> Result<(), VfsError> {
        access::check(caller, from, Access::Write)?;
        access::check(caller, to, Access::Write)?;
        let (s, rel_from, mount_from) = self.storage_target(from, "rename")?;
        let (_, rel_to, mount_to) = self.storage_target(to, "rename")?;
        if mount_from != mount_to {
            return Err(VfsError::CrossDevice(to.clone()));
        }
        let meta = s.stat(rel_from).map_err(|e| storage_err(from, e))?;
        if from == to {
            return Ok(());
        }
        if from.starts_with(to) {
            // The target is an ancestor of the source, so a non-empty directory (as Linux says).
            return Err(VfsError::NotEmpty(to.clone()));
        }
        if meta.kind == EntryKind::Dir && to.starts_with(from) {
            // As on Linux, a missing target parent is reported first.
            let parent = rel_to.rfind('/').map_or("", |i| &rel_to[..i]);
            if s.stat(parent).map_err(|e| storage_err(to, e))?.kind != EntryKind::Dir {
                return Err(VfsError::NotADirectory(to.clone()));
            }
            return Err(VfsError::InvalidInput {
                path: to.clone(),
                reason: "cannot move a directory into itself".into(),
            });
        }
        self.check_remove(caller, from)?;
        if self.guard_for(to).is_some() && meta.kind == EntryKind::File {
            let content = s.read(rel_from).map_err(|e| storage_err(from, e))?;
            self.check_content(caller, to, &content)?;
        }
        s.rename(rel_from, rel_to).map_err(|e| storage_err(to, e))?;
        self.cache.invalidate_tree(from);
        self.cache.invalidate_tree(to);
        self.emit(to, ChangeKind::Renamed { from: from.clone() }, caller.door);
        Ok(())
    }

    /// Truncates or extends a file to `len` (atomically, like every write).
    pub fn truncate(&self, caller: &Caller, path: &VfsPath, len: u64) -> Result<(), VfsError> {
        access::check(caller, path, Access::Write)?;
        if let Resolved::Mounted(
            Mount {
                backend: Backend::Synthetic(t),
                ..
            },
            rel,
        ) = self.table.resolve(path)
        {
            // Truncating a control file (`echo cmd > ctl` sends O_TRUNC first) is a no-op for
            // whoever may write it; anything else here is the kernel's.
            return match t.lookup(rel) {
                Some(Found::File { file, owner, .. }) if file.is_control() => {
                    access::check_node(caller, path, owner.as_ref(), file.writers, Access::Write)
                }
                _ => Err(kernel_only(path)),
            };
        }
        let (s, rel, _) = self.storage_target(path, "truncate")?;
        if s.stat(rel).map_err(|e| storage_err(path, e))?.kind == EntryKind::Dir {
            return Err(VfsError::IsADirectory(path.clone()));
        }
        let mut txn = s
            .begin_write(
                rel,
                if len == 0 {
                    TxnStart::Empty
                } else {
                    TxnStart::Existing
                },
            )
            .map_err(|e| storage_err(path, e))?;
        txn.set_len(len).map_err(|e| storage_err(path, e))?;
        if self.guard_for(path).is_some() {
            let content = txn.contents().map_err(|e| storage_err(path, e))?;
            self.check_content(caller, path, &content)?;
        }
        txn.commit().map_err(|e| storage_err(path, e))?;
        self.cache.invalidate(path);
        self.emit(path, ChangeKind::Modified, caller.door);
        Ok(())
    }

    /// Space figures of the tree holding `path` (the root reports the first storage tree).
    pub fn space(&self, path: &VfsPath) -> SpaceStats {
        let storage = match self.table.resolve(path) {
            Resolved::Mounted(
                Mount {
                    backend: Backend::Storage(s),
                    ..
                },
                _,
            ) => Some(s.clone()),
            _ => self.mounts().iter().find_map(|m| match &m.backend {
                Backend::Storage(s) => Some(s.clone()),
                _ => None,
            }),
        };
        storage.and_then(|s| s.space().ok()).unwrap_or(SpaceStats {
            block_size: 4096,
            ..SpaceStats::default()
        })
    }
}
