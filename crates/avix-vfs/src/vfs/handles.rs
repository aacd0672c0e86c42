//! Open files. A persistent file opened for writing buffers its changes in a storage
//! transaction (a temp file for the local driver) and commits them atomically on flush, so a
//! reader never sees a half-written file and a validated file is checked as a whole. A
//! synthetic file is rendered once at open, so every read of one open sees the same text; a
//! write to a control file runs its handler, whose reply later reads return.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::{ChangeKind, Stat, Vfs, storage_err};
use crate::access::{self, Access};
use crate::caller::Caller;
use crate::error::VfsError;
use crate::mount::{Backend, Resolved};
use crate::path::VfsPath;
use crate::storage::{EntryKind, Storage, TxnStart, WriteTxn};
use crate::synthetic::{Found, SynthFile};

/// An open file, as seen by a door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandleId(pub u64);

/// How to open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// For reading.
    pub read: bool,
    /// For writing.
    pub write: bool,
    /// Start empty (O_TRUNC); takes effect on commit.
    pub truncate: bool,
    /// Create if missing (O_CREAT).
    pub create: bool,
    /// Fail if it exists (O_EXCL).
    pub exclusive: bool,
}

impl OpenOptions {
    /// Read only.
    pub fn read() -> Self {
        Self {
            read: true,
            ..Self::default()
        }
    }

    /// Write, creating and truncating (what `>` does in a shell).
    pub fn write_new() -> Self {
        Self {
            write: true,
            truncate: true,
            create: true,
            ..Self::default()
        }
    }
}

pub(crate) struct OpenFile {
    id: u64,
    path: VfsPath,
    caller: Caller,
    read: bool,
    kind: Kind,
}

enum Kind {
    Persistent {
        storage: Arc<dyn Storage>,
        rel: String,
        write: bool,
        txn: Option<Box<dyn WriteTxn>>,
        /// Something is pending (an O_TRUNC at open counts).
        dirty: bool,
        /// A write or truncate arrived since the last commit. A flush before any write (the
        /// `dup2` + `close` a shell does around a redirection) must not commit the bare
        /// truncation: that is left to the last close.
        written: bool,
        /// A write or truncate failed (a full disk): the pending change was thrown away, and
        /// every later write, flush and close of this handle fails with the same errno, so
        /// nothing half-written — an O_TRUNC with no data, say — is ever committed.
        failed: Option<i32>,
        /// A validated document created by this open: a draft that exists only in the
        /// handle until its content is validated at the last close (an empty new file is
        /// not a refusal: `cp`, `cat >` and `tee` create before they write).
        draft: bool,
    },
    Synthetic {
        file: Arc<SynthFile>,
        snapshot: Bytes,
        /// The last reply, and the file position it starts at for this open file: the
        /// position of the first read after the reply was produced (a script that wrote a
        /// request reads on from where its descriptor is, whatever the writes did to it — a
        /// failed write does not move it); `None` until that read. A read before that
        /// position (a fresh `pread` at 0) reads the reply from its start.
        reply: Option<(Bytes, Option<u64>)>,
        /// Buffered control files: what was written since the last complete command.
        pending: Vec<u8>,
    },
}

/// Marks a handle failed after a write or truncate failed: the pending change is thrown away
/// (the old content stays) and the errno is kept for every later call.
fn poison(
    path: &VfsPath,
    e: crate::storage::StorageError,
    txn: &mut Option<Box<dyn WriteTxn>>,
    dirty: &mut bool,
    failed: &mut Option<i32>,
) -> VfsError {
    let e = storage_err(path, e);
    *txn = None;
    *dirty = false;
    *failed = Some(e.errno());
    tracing::debug!(%path, error = %e, "a write failed: the file keeps its old content");
    e
}

/// The error a failed handle answers with.
fn poisoned(path: &VfsPath, errno: i32) -> VfsError {
    VfsError::Io {
        path: path.clone(),
        source: std::io::Error::from_raw_os_error(errno),
    }
}

fn lock(f: &Mutex<OpenFile>) -> MutexGuard<'_, OpenFile> {
    f.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn slice(data: &Bytes, offset: u64, size: u32) -> Bytes {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(data.len());
    let end = start.saturating_add(size as usize).min(data.len());
    data.slice(start..end)
}

impl Vfs {
    /// Opens `path`. Permission is checked here, as on Unix; later calls on the handle use
    /// the identity it was opened with.
    pub fn open(
        &self,
        caller: &Caller,
        path: &VfsPath,
        opts: OpenOptions,
    ) -> Result<(HandleId, Stat), VfsError> {
        let wants_write = opts.write || opts.truncate;
        access::check(
            caller,
            path,
            if wants_write {
                Access::Write
            } else {
                Access::Read
            },
        )?;
        let kind = match self.table.resolve(path) {
            Resolved::Virtual => return Err(VfsError::IsADirectory(path.clone())),
            Resolved::Nowhere => return Err(VfsError::NotFound(path.clone())),
            Resolved::Mounted(m, rel) => match &m.backend {
                Backend::Sealed => return Err(VfsError::IsADirectory(path.clone())),
                Backend::Synthetic(t) => match t.lookup(rel) {
                    None if opts.create => {
                        return Err(VfsError::NotPermitted {
                            path: path.clone(),
                            reason: "this tree is written only by the kernel",
                        });
                    }
                    None => return Err(VfsError::NotFound(path.clone())),
                    Some(Found::Dir { .. }) => return Err(VfsError::IsADirectory(path.clone())),
                    Some(Found::File { file, owner, .. }) => {
                        if opts.create && opts.exclusive {
                            return Err(VfsError::AlreadyExists(path.clone()));
                        }
                        let w = file.writers;
                        if opts.read {
                            access::check_node(caller, path, owner.as_ref(), w, Access::Read)?;
                        }
                        if wants_write {
                            access::check_node(caller, path, owner.as_ref(), w, Access::Write)?;
                            if !file.is_control() {
                                return Err(VfsError::NotPermitted {
                                    path: path.clone(),
                                    reason: "this file is read-only",
                                });
                            }
                        }
                        let snapshot = if opts.read && file.live.is_none() {
                            (file.render)(caller)?
                        } else {
                            Bytes::new()
                        };
                        Kind::Synthetic {
                            file,
                            snapshot,
                            reply: None,
                            pending: Vec::new(),
                        }
                    }
                },
                Backend::Storage(s) => {
                    if rel.is_empty() {
                        return Err(VfsError::IsADirectory(path.clone()));
                    }
                    let mut draft = false;
                    match s.stat(rel) {
                        Ok(meta) if meta.kind == EntryKind::Dir => {
                            return Err(VfsError::IsADirectory(path.clone()));
                        }
                        Ok(_) if opts.create && opts.exclusive => {
                            return Err(VfsError::AlreadyExists(path.clone()));
                        }
                        Ok(_) => {}
                        Err(crate::storage::StorageError::NotFound)
                            if opts.create && self.guard_for(path).is_some() =>
                        {
                            access::check(caller, path, Access::Write)?;
                            draft = true;
                        }
                        Err(crate::storage::StorageError::NotFound) if opts.create => {
                            access::check(caller, path, Access::Write)?;
                            // The file exists from now on, empty, as after creat(2).
                            s.write(rel, b"").map_err(|e| storage_err(path, e))?;
                            self.cache.invalidate(path);
                            self.emit(path, ChangeKind::Created, caller.door);
                        }
                        Err(e) => return Err(storage_err(path, e)),
                    }
                    let txn = if opts.truncate || draft {
                        Some(
                            s.begin_write(rel, TxnStart::Empty)
                                .map_err(|e| storage_err(path, e))?,
                        )
                    } else {
                        None
                    };
                    Kind::Persistent {
                        storage: s.clone(),
                        rel: rel.to_owned(),
                        write: opts.write,
                        dirty: txn.is_some(),
                        written: false,
                        failed: None,
                        draft,
                        txn,
                    }
                }
            },
        };
        let id = self.next_handle.fetch_add(1, Ordering::Relaxed);
        if matches!(kind, Kind::Persistent { draft: true, .. }) {
            self.lock_drafts().insert(id, path.clone());
        }
        let file = OpenFile {
            id,
            path: path.clone(),
            caller: caller.clone(),
            read: opts.read,
            kind,
        };
        let stat = match self.stat_open(&file) {
            Ok(st) => st,
            Err(e) => {
                self.lock_drafts().remove(&id);
                return Err(e);
            }
        };
        self.handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, Arc::new(Mutex::new(file)));
        Ok((HandleId(id), stat))
    }

    fn handle(&self, h: HandleId) -> Result<Arc<Mutex<OpenFile>>, VfsError> {
        self.handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&h.0)
            .cloned()
            .ok_or(VfsError::BadHandle)
    }

    fn stat_open(&self, f: &OpenFile) -> Result<Stat, VfsError> {
        match &f.kind {
            Kind::Synthetic {
                file,
                snapshot,
                reply,
                ..
            } => {
                let mut st = self.stat(&f.caller, &f.path)?;
                st.size = match (&file.live, reply) {
                    (_, Some((r, _))) => r.len() as u64,
                    (Some(live), None) => (live.size)(),
                    // Opened write-only: the rendering was skipped.
                    (None, None) if !f.read => 0,
                    (None, None) => snapshot.len() as u64,
                };
                Ok(st)
            }
            Kind::Persistent {
                txn: Some(t),
                draft,
                ..
            } => {
                let mut st = if *draft {
                    // Not committed yet: as it will be (never asked of the storage, which
                    // does not have it).
                    Stat {
                        kind: EntryKind::File,
                        size: 0,
                        mtime: std::time::SystemTime::now(),
                        mode: super::persistent_file_mode(&f.path),
                        owner: None,
                        synthetic: false,
                    }
                } else {
                    self.stat(&Caller::kernel(), &f.path)?
                };
                st.size = t.len();
                Ok(st)
            }
            Kind::Persistent { .. } => self.stat(&Caller::kernel(), &f.path),
        }
    }

    /// Every open file now (a snapshot: the table's lock is not held while they are used).
    fn open_handles(&self) -> Vec<Arc<Mutex<OpenFile>>> {
        self.handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    fn lock_drafts(&self) -> MutexGuard<'_, std::collections::HashMap<u64, VfsPath>> {
        self.drafts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Removes the validated document `rel` (at `path`), or, when only drafts of it exist (new
    /// documents before their last close), forgets those: a late close must not bring the
    /// file back (vim's swap-name probe is `close(swap); unlink(swap)`, and the mount's RELEASE
    /// can reach the daemon after the unlink).
    pub(super) fn remove_document(
        &self,
        s: &dyn Storage,
        rel: &str,
        path: &VfsPath,
    ) -> Result<(), VfsError> {
        let mut drafts = self.lock_drafts();
        match s.remove_file(rel) {
            Err(crate::storage::StorageError::NotFound) => {
                let before = drafts.len();
                drafts.retain(|_, p| p != path);
                if drafts.len() == before {
                    return Err(VfsError::NotFound(path.clone()));
                }
                Ok(())
            }
            r => r.map_err(|e| storage_err(path, e)),
        }
    }

    /// The attributes of a draft (a new document not committed yet) open at `path`, for a
    /// caller that names it by path while it is being written (`sed -i` chmods its temp file).
    pub(super) fn draft_stat(&self, path: &VfsPath) -> Option<Stat> {
        let ids: Vec<u64> = self
            .lock_drafts()
            .iter()
            .filter(|(_, p)| *p == path)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter().find_map(|id| {
            let f = self.handle(HandleId(id)).ok()?;
            let f = lock(&f);
            match &f.kind {
                Kind::Persistent { draft: true, .. } => self.stat_open(&f).ok(),
                _ => None,
            }
        })
    }

    /// Attributes as seen through an open file (pending size while a write is buffered).
    pub fn stat_handle(&self, h: HandleId) -> Result<Stat, VfsError> {
        let f = self.handle(h)?;
        let f = lock(&f);
        self.stat_open(&f)
    }

    /// Reads up to `size` bytes at `offset`.
    pub fn read_at(&self, h: HandleId, offset: u64, size: u32) -> Result<Bytes, VfsError> {
        let f = self.handle(h)?;
        let mut f = lock(&f);
        let path = f.path.clone();
        match &mut f.kind {
            Kind::Synthetic {
                file,
                snapshot,
                reply: None,
                ..
            } => match &file.live {
                Some(live) => (live.read_at)(offset, size),
                None => Ok(slice(snapshot, offset, size)),
            },
            Kind::Synthetic {
                reply: Some((r, base)),
                ..
            } => {
                let base = *base.get_or_insert(offset);
                let at = if offset >= base {
                    offset - base
                } else {
                    offset
                };
                Ok(slice(r, at, size))
            }
            Kind::Persistent { txn: Some(t), .. } => t
                .read_at(offset, size as usize)
                .map_err(|e| storage_err(&path, e)),
            Kind::Persistent { storage, rel, .. } => {
                let data = self.read_persistent(storage.as_ref(), &path, rel);
                match data {
                    Ok(d) => Ok(slice(&d, offset, size)),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Writes `data` at `offset` (buffered until flush for persistent files; one command for
    /// control files). Returns the bytes accepted.
    pub fn write_at(&self, h: HandleId, offset: u64, data: &[u8]) -> Result<usize, VfsError> {
        let f = self.handle(h)?;
        let mut f = lock(&f);
        let path = f.path.clone();
        let caller = f.caller.clone();
        match &mut f.kind {
            Kind::Synthetic {
                file,
                reply,
                pending,
                ..
            } => {
                let on_write = file
                    .on_write
                    .as_ref()
                    .ok_or_else(|| VfsError::NotWritable(path.clone()))?;
                let outcome = if file.on_close.is_some() {
                    pending.extend_from_slice(data);
                    let r = on_write(&caller, pending);
                    if !matches!(r, Err(VfsError::NeedMore)) {
                        pending.clear();
                    }
                    r
                } else {
                    on_write(&caller, data)
                };
                match outcome {
                    Ok(Some(r)) => *reply = Some((r, None)),
                    Ok(None) | Err(VfsError::NeedMore) => {}
                    Err(e) => {
                        // The write fails with the errno; the message stays readable on
                        // this open file, for scripts that want the reason, and in
                        // /proc/errors.
                        *reply = Some((Bytes::from(format!("error: {e}\n")), None));
                        self.record_refusal(&caller, &path, e.to_string());
                        return Err(e);
                    }
                }
                Ok(data.len())
            }
            Kind::Persistent {
                write: false,
                txn: None,
                ..
            } => Err(VfsError::NotWritable(path)),
            Kind::Persistent {
                storage,
                rel,
                txn,
                dirty,
                written,
                failed,
                ..
            } => {
                if let Some(errno) = *failed {
                    return Err(poisoned(&path, errno));
                }
                let t = match txn {
                    Some(t) => t,
                    None => txn.insert(
                        storage
                            .begin_write(rel, TxnStart::Existing)
                            .map_err(|e| storage_err(&path, e))?,
                    ),
                };
                if let Err(e) = t.write_at(offset, data) {
                    return Err(poison(&path, e, txn, dirty, failed));
                }
                *dirty = true;
                *written = true;
                Ok(data.len())
            }
        }
    }

    /// Truncates or extends through an open file (buffered like a write).
    pub fn set_len(&self, h: HandleId, len: u64) -> Result<(), VfsError> {
        let f = self.handle(h)?;
        let mut f = lock(&f);
        let path = f.path.clone();
        match &mut f.kind {
            Kind::Synthetic { .. } => Ok(()),
            Kind::Persistent {
                storage,
                rel,
                txn,
                dirty,
                failed,
                ..
            } => {
                if let Some(errno) = *failed {
                    return Err(poisoned(&path, errno));
                }
                let t = match txn {
                    Some(t) => t,
                    None => {
                        let start = if len == 0 {
                            TxnStart::Empty
                        } else {
                            TxnStart::Existing
                        };
                        txn.insert(
                            storage
                                .begin_write(rel, start)
                                .map_err(|e| storage_err(&path, e))?,
                        )
                    }
                };
                if let Err(e) = t.set_len(len) {
                    return Err(poison(&path, e, txn, dirty, failed));
                }
                *dirty = true;
                Ok(())
            }
        }
    }

    /// Commits buffered writes, atomically and durably. A guard that refuses the content fails
    /// the flush (EINVAL) and the file keeps its old content.
    pub fn flush(&self, h: HandleId) -> Result<(), VfsError> {
        let f = self.handle(h)?;
        let mut f = lock(&f);
        self.commit(&mut f, false)
    }

    /// Commits what is pending; `last` is the final close, which also commits a truncation
    /// nobody wrote after.
    fn commit(&self, f: &mut OpenFile, last: bool) -> Result<(), VfsError> {
        let path = f.path.clone();
        let caller = f.caller.clone();
        if let Kind::Synthetic {
            file,
            reply,
            pending,
            ..
        } = &mut f.kind
        {
            // A buffered control file's request written without its terminator runs at the
            // last close, never at the flush of a duplicate's close: a shell's `printf … >&3`
            // closes a duplicate of the descriptor after every line.
            let Some(on_close) = file.on_close.as_ref() else {
                return Ok(());
            };
            if !last || pending.is_empty() {
                return Ok(());
            }
            let data = std::mem::take(pending);
            return match on_close(&caller, &data) {
                Ok(r) => {
                    if let Some(r) = r {
                        *reply = Some((r, None));
                    }
                    Ok(())
                }
                Err(VfsError::NeedMore) => {
                    let e = VfsError::InvalidInput {
                        path: path.clone(),
                        reason: "the request is incomplete".into(),
                    };
                    self.record_refusal(&caller, &path, e.to_string());
                    Err(e)
                }
                Err(e) => {
                    // At the last close nobody may read the reply any more: keep the reason.
                    self.record_refusal(&caller, &path, e.to_string());
                    Err(e)
                }
            };
        }
        let Kind::Persistent {
            txn,
            dirty,
            written,
            failed,
            draft,
            ..
        } = &mut f.kind
        else {
            return Ok(());
        };
        if let Some(errno) = *failed {
            return Err(poisoned(&path, errno));
        }
        if !*dirty {
            return Ok(());
        }
        if !last && !*written {
            // Only a truncation is pending: leave it to the last close, but tell this close
            // already if a guard would refuse it (`cp /dev/null users.yaml` must fail), without
            // counting or logging a rejection: the writer may still write valid content. A
            // draft is not refused before its last close.
            if *draft {
                return Ok(());
            }
            if let (Some(guard), Some(t)) = (self.guard_for(&path), txn.as_mut())
                && t.len() <= super::MAX_GUARDED_BYTES
            {
                let content = t.contents().map_err(|e| storage_err(&path, e))?;
                if let Err(e) = guard.check_content(&path, &content) {
                    tracing::debug!(%path, reason = %e, "pending truncation would be refused");
                    return Err(VfsError::Rejected {
                        path,
                        reason: e.message,
                    });
                }
            }
            return Ok(());
        }
        *dirty = false;
        *written = false;
        let Some(mut t) = txn.take() else {
            return Ok(());
        };
        if self.guard_for(&path).is_some() {
            if t.len() > super::MAX_GUARDED_BYTES {
                return Err(self.reject(
                    &caller,
                    &path,
                    format!(
                        "content is over the {}-byte limit for this file",
                        super::MAX_GUARDED_BYTES
                    ),
                ));
            }
            let content = t.contents().map_err(|e| storage_err(&path, e))?;
            self.check_content(&caller, &path, &content)?;
        }
        let committed = if *draft {
            // Under the drafts lock, so an unlink of this name comes wholly before or after.
            let mut drafts = self.lock_drafts();
            if drafts.remove(&f.id).is_none() {
                // Its name was removed before this close: nothing to commit.
                *draft = false;
                return Ok(());
            }
            t.commit()
        } else {
            t.commit()
        };
        if let Err(e) = committed {
            // The commit removed its temp file: the old content stays, and so does the error.
            let e = storage_err(&path, e);
            *failed = Some(e.errno());
            return Err(e);
        }
        self.cache.invalidate(&path);
        let kind = if std::mem::take(draft) {
            ChangeKind::Created
        } else {
            ChangeKind::Modified
        };
        self.emit(&path, kind, caller.door);
        Ok(())
    }

    /// Commits every buffered write of every open file (daemon shutdown). Returns how many
    /// commits failed; each failure is logged.
    pub fn flush_all(&self) -> usize {
        let open = self.open_handles();
        let mut failed = 0;
        for f in open {
            let mut f = lock(&f);
            if let Err(e) = self.commit(&mut f, true) {
                tracing::warn!(error = %e, "buffered write lost at shutdown");
                failed += 1;
            }
        }
        failed
    }

    /// Closes an open file, committing what is still buffered.
    pub fn release(&self, h: HandleId) -> Result<(), VfsError> {
        let f = self
            .handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&h.0)
            .ok_or(VfsError::BadHandle)?;
        let mut f = lock(&f);
        let r = self.commit(&mut f, true);
        // A draft that did not commit (a refused or failed one) is gone with its handle.
        self.lock_drafts().remove(&f.id);
        r
    }
}
