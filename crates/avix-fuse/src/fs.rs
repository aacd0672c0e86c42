//! The `fuser::Filesystem` implementation: each request becomes one VFS call.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use avix_vfs::{
    Caller, ChangeKind, EntryKind, HandleId, OpenOptions, Stat, Vfs, VfsError, VfsPath,
};
use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::Identities;
use crate::inodes::{InodeTable, ROOT};
use crate::posix::{self, Posix, Who};

/// How long the kernel may cache attributes and entries of persistent files. Changes from
/// other doors invalidate them at once, so this only bounds the cost of a missed event.
pub const PERSISTENT_TTL: Duration = Duration::from_secs(5);
/// Synthetic files are computed: never cached.
pub const SYNTHETIC_TTL: Duration = Duration::ZERO;

/// A cache invalidation to send to the kernel (from a separate thread: sending one from a
/// request handler can deadlock on the inode lock the kernel holds for that request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// Drop cached data and attributes of an inode.
    Inode(u64),
    /// Drop a cached directory entry.
    Entry(u64, String),
}

/// A directory snapshot: inode, type and name of each entry, `.` and `..` first.
type Listing = Vec<(u64, FileType, String)>;

/// The filesystem served by the mount.
pub struct AvixFs {
    vfs: Arc<Vfs>,
    identities: Arc<dyn Identities>,
    // Short critical sections; never held across a VFS call.
    inodes: Arc<Mutex<InodeTable>>,
    // Directory listings snapshotted at opendir, served by offset.
    dirs: Mutex<HashMap<u64, Listing>>,
    /// The data trees, served as plain POSIX files.
    posix: Arc<Posix>,
    next_dir: AtomicU64,
    /// Whether reads of persistent files may keep the page cache between opens.
    pub(crate) keep_cache: bool,
    /// Whether to ask the kernel for FUSE passthrough on data trees.
    pub(crate) want_passthrough: bool,
}

impl std::fmt::Debug for AvixFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvixFs").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn errno(e: &VfsError) -> Errno {
    Errno::from_i32(e.errno())
}

fn file_type(kind: EntryKind) -> FileType {
    match kind {
        EntryKind::Dir => FileType::Directory,
        EntryKind::File => FileType::RegularFile,
    }
}

impl AvixFs {
    /// A filesystem over `vfs`. Registers a VFS listener that queues invalidations on `tx`
    /// while `live` is set.
    pub fn new(
        vfs: Arc<Vfs>,
        identities: Arc<dyn Identities>,
        tx: Sender<Invalidation>,
        live: Arc<AtomicBool>,
    ) -> Self {
        let inodes = Arc::new(Mutex::new(InodeTable::default()));
        let table = inodes.clone();
        let posix = Arc::new(Posix::default());
        posix.set_invalidations(tx.clone());
        let trees = posix.clone();
        vfs.subscribe(move |change| {
            if !live.load(Ordering::Relaxed) {
                return;
            }
            let mut t = lock(&table);
            let entry = |t: &InodeTable, p: &VfsPath| {
                let parent = p.parent()?;
                Some(Invalidation::Entry(
                    t.ino(&parent)?,
                    p.file_name()?.to_owned(),
                ))
            };
            let mut out = Vec::new();
            match &change.kind {
                ChangeKind::Created | ChangeKind::Modified => {
                    out.extend(t.ino(&change.path).map(Invalidation::Inode));
                    if let Some(parent) = change.path.parent() {
                        out.extend(t.ino(&parent).map(Invalidation::Inode));
                    }
                }
                ChangeKind::Removed => {
                    out.extend(entry(&t, &change.path));
                    out.extend(t.ino(&change.path).map(Invalidation::Inode));
                }
                ChangeKind::Renamed { from } => {
                    out.extend(entry(&t, from));
                    out.extend(entry(&t, &change.path));
                    t.rename(from, &change.path);
                }
            }
            drop(t);
            trees.invalidations(change, &mut out);
            for i in out {
                let _ = tx.send(i);
            }
        });
        Self {
            vfs,
            identities,
            inodes,
            dirs: Mutex::new(HashMap::new()),
            posix,
            next_dir: AtomicU64::new(1),
            keep_cache: true,
            want_passthrough: true,
        }
    }

    fn caller(&self, req: &Request) -> Result<Caller, Errno> {
        self.identities.caller(req.uid()).ok_or_else(|| {
            tracing::debug!(uid = req.uid(), "request from an unmapped uid refused");
            Errno::EACCES
        })
    }

    fn who(&self, req: &Request) -> Result<Who, Errno> {
        Ok(Who {
            caller: self.caller(req)?,
            uid: req.uid(),
            gid: req.gid(),
            pid: req.pid(),
        })
    }

    /// Set while data-tree I/O is FUSE passthrough (the kernel does it), clear while the
    /// daemon serves it.
    pub fn passthrough(&self) -> Arc<AtomicBool> {
        self.posix.passthrough.clone()
    }

    /// How data-tree files are served: `passthrough` (the kernel does the I/O) or `served`.
    pub fn data_io(&self) -> &'static str {
        if self.posix.passthrough.load(Ordering::Relaxed) {
            "passthrough"
        } else {
            "served"
        }
    }

    fn path(&self, ino: INodeNo) -> Result<VfsPath, Errno> {
        lock(&self.inodes).path(ino.0).ok_or(Errno::ENOENT)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<VfsPath, Errno> {
        let name = name.to_str().ok_or(Errno::EINVAL)?;
        self.path(parent)?
            .join(name)
            .map_err(|e| errno(&VfsError::from(e)))
    }

    fn attr(&self, ino: u64, st: &Stat) -> FileAttr {
        let uid = st
            .owner
            .as_ref()
            .and_then(|u| self.identities.host_uid(u))
            .unwrap_or(0);
        FileAttr {
            ino: INodeNo(ino),
            size: st.size,
            blocks: st.size.div_ceil(512),
            atime: st.mtime,
            mtime: st.mtime,
            ctime: st.mtime,
            crtime: st.mtime,
            kind: file_type(st.kind),
            perm: st.mode,
            nlink: if st.kind == EntryKind::Dir { 2 } else { 1 },
            uid,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn ttl(st: &Stat) -> Duration {
        if st.synthetic {
            SYNTHETIC_TTL
        } else {
            PERSISTENT_TTL
        }
    }

    /// How long the kernel may keep the name `path` (a dentry). The kernel's dentry cache is
    /// shared by every host user and, without `default_permissions`, walks cached names
    /// without asking the daemon; so the first name below a home, a crew or a service
    /// (`/users/<u>/workspace`) is never cached: every walk into another user's tree asks the
    /// daemon, with the caller's uid, and is refused there (ENOENT). Names deeper down are
    /// only reached through that gate and are cached as usual.
    fn entry_ttl(path: &VfsPath, st: &Stat) -> Duration {
        let mut c = path.components();
        let gate = matches!(c.next(), Some("users" | "crews" | "services"))
            && c.next().is_some()
            && c.next().is_some()
            && c.next().is_none();
        if gate { Duration::ZERO } else { Self::ttl(st) }
    }

    fn entry(&self, path: &VfsPath, st: &Stat, reply: ReplyEntry) {
        let ino = lock(&self.inodes).get_or_insert(path, true);
        reply.entry(
            &Self::entry_ttl(path, st),
            &self.attr(ino, st),
            Generation(0),
        );
    }

    fn open_flags(st: &Stat, keep_cache: bool, writing: bool) -> FopenFlags {
        // A file opened only for reading has nothing to commit at close: FOPEN_NOFLUSH spares
        // close(2) a round trip to the daemon.
        let no_flush = if writing {
            FopenFlags::empty()
        } else {
            FopenFlags::FOPEN_NOFLUSH
        };
        if st.synthetic {
            FopenFlags::FOPEN_DIRECT_IO | no_flush
        } else if keep_cache && !writing {
            FopenFlags::FOPEN_KEEP_CACHE | no_flush
        } else {
            no_flush
        }
    }
}

fn open_options(flags: i32) -> OpenOptions {
    let (read, write) = match OpenFlags(flags).acc_mode() {
        OpenAccMode::O_RDONLY => (true, false),
        OpenAccMode::O_WRONLY => (false, true),
        _ => (true, true),
    };
    OpenOptions {
        read,
        write,
        truncate: write && flags & libc::O_TRUNC != 0,
        create: flags & libc::O_CREAT != 0,
        exclusive: flags & libc::O_EXCL != 0,
    }
}

macro_rules! tri {
    ($reply:ident, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return $reply.error(e),
        }
    };
}

macro_rules! vfs {
    ($reply:ident, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return $reply.error(errno(&e)),
        }
    };
}

impl Filesystem for AvixFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // O_TRUNC arrives with open, so truncation is buffered with the write and committed
        // atomically, instead of a separate SETATTR that would empty the file first.
        if config
            .add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC)
            .is_err()
        {
            tracing::warn!("kernel lacks FUSE_ATOMIC_O_TRUNC; O_TRUNC is a separate truncate");
        }
        // Data trees: the kernel reads and writes the host files itself (Linux 6.9+, and the
        // daemon needs CAP_SYS_ADMIN); otherwise the daemon serves their I/O.
        let wanted = self.want_passthrough;
        // Registering a backing file needs CAP_SYS_ADMIN: root only.
        let passthrough = wanted
            && nix::unistd::geteuid().is_root()
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok();
        self.posix.passthrough.store(passthrough, Ordering::Relaxed);
        tracing::debug!(data_io = self.data_io(), "FUSE session initialised");
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if posix::is_posix(parent.0) {
            let who = tri!(reply, self.who(req));
            return self.posix.lookup(&who, parent.0, name, reply);
        }
        let caller = tri!(reply, self.caller(req));
        let path = tri!(reply, self.child(parent, name));
        if avix_vfs::access::data_tree_root(&path).as_ref() == Some(&path) {
            let who = tri!(reply, self.who(req));
            let Some(reply) = self.posix.reenter(&path, &who, reply) else {
                return;
            };
            match self.vfs.data_tree(&caller, &path) {
                Ok(Some(fd)) => {
                    let Some((fd, handles)) = Posix::usable(std::os::fd::AsFd::as_fd(&fd)) else {
                        let st = vfs!(reply, self.vfs.stat(&caller, &path));
                        return self.entry(&path, &st, reply);
                    };
                    let shown = posix::tree_owner(&path).and_then(|u| self.identities.host_uid(&u));
                    return self.posix.enter(&path, fd, handles, shown, &who, reply);
                }
                Ok(None) => {}
                Err(e) => return reply.error(errno(&e)),
            }
            let st = vfs!(reply, self.vfs.stat(&caller, &path));
            return self.entry(&path, &st, reply);
        }
        let st = vfs!(reply, self.vfs.stat(&caller, &path));
        self.entry(&path, &st, reply);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        if posix::is_posix(ino.0) {
            return self.posix.forget(ino.0, nlookup);
        }
        lock(&self.inodes).forget(ino.0, nlookup);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        if posix::is_posix(ino.0) {
            let who = tri!(reply, self.who(req));
            return self.posix.getattr(&who, ino.0, fh, reply);
        }
        let st = match fh.map(|h| self.vfs.stat_handle(HandleId(h.0))) {
            Some(Ok(st)) => st,
            _ => {
                let caller = tri!(reply, self.caller(req));
                let path = tri!(reply, self.path(ino));
                vfs!(reply, self.vfs.stat(&caller, &path))
            }
        };
        reply.attr(&Self::ttl(&st), &self.attr(ino.0, &st));
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if posix::is_posix(ino.0) {
            let who = tri!(reply, self.who(req));
            return self
                .posix
                .setattr(&who, ino.0, mode, uid, gid, size, atime, mtime, fh, reply);
        }
        // Modes and owners follow the access rules, and times are the storage's: only the
        // size can be set. chmod, chown and touch succeed without effect, so tools that
        // preserve attributes (cp -p, tar) keep working.
        let caller = tri!(reply, self.caller(req));
        let path = tri!(reply, self.path(ino));
        if let Some(len) = size {
            match fh {
                Some(h) => vfs!(reply, self.vfs.set_len(HandleId(h.0), len)),
                None => vfs!(reply, self.vfs.truncate(&caller, &path, len)),
            }
        }
        let st = match fh.map(|h| self.vfs.stat_handle(HandleId(h.0))) {
            Some(Ok(st)) => st,
            _ => vfs!(reply, self.vfs.stat(&caller, &path)),
        };
        reply.attr(&Self::ttl(&st), &self.attr(ino.0, &st));
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        if posix::is_posix(parent.0) {
            let who = tri!(reply, self.who(req));
            return self.posix.mkdir(&who, parent.0, name, mode, reply);
        }
        let caller = tri!(reply, self.caller(req));
        let path = tri!(reply, self.child(parent, name));
        vfs!(reply, self.vfs.create_dir(&caller, &path));
        let st = vfs!(reply, self.vfs.stat(&caller, &path));
        self.entry(&path, &st, reply);
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if posix::is_posix(parent.0) {
            let who = tri!(reply, self.who(req));
            return self.posix.remove(&who, parent.0, name, false, reply);
        }
        let caller = tri!(reply, self.caller(req));
        let path = tri!(reply, self.child(parent, name));
        vfs!(reply, self.vfs.remove_file(&caller, &path));
        reply.ok();
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if posix::is_posix(parent.0) {
            let who = tri!(reply, self.who(req));
            return self.posix.remove(&who, parent.0, name, true, reply);
        }
        let caller = tri!(reply, self.caller(req));
        let path = tri!(reply, self.child(parent, name));
        vfs!(reply, self.vfs.remove_dir(&caller, &path));
        reply.ok();
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match (posix::is_posix(parent.0), posix::is_posix(newparent.0)) {
            (true, true) => {
                let who = tri!(reply, self.who(req));
                return self
                    .posix
                    .rename(&who, parent.0, name, newparent.0, newname, flags, reply);
            }
            (false, false) => {}
            // Between a data tree and a document tree: like two filesystems.
            _ => return reply.error(Errno::EXDEV),
        }
        let caller = tri!(reply, self.caller(req));
        let from = tri!(reply, self.child(parent, name));
        let to = tri!(reply, self.child(newparent, newname));
        let bits = flags.bits();
        if bits & libc::RENAME_EXCHANGE != 0 || bits & libc::RENAME_WHITEOUT != 0 {
            return reply.error(Errno::EINVAL);
        }
        if bits & libc::RENAME_NOREPLACE != 0 && self.vfs.stat(&caller, &to).is_ok() {
            return reply.error(Errno::EEXIST);
        }
        vfs!(reply, self.vfs.rename(&caller, &from, &to));
        reply.ok();
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if posix::is_posix(ino.0) {
            let who = tri!(reply, self.who(req));
            return self.posix.open(&who, ino.0, flags.0, reply);
        }
        let caller = tri!(reply, self.caller(req));
        let path = tri!(reply, self.path(ino));
        let mut opts = open_options(flags.0);
        opts.create = false;
        let (h, st) = vfs!(reply, self.vfs.open(&caller, &path, opts));
        reply.opened(
            FileHandle(h.0),
            Self::open_flags(&st, self.keep_cache, opts.write),
        );
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if posix::is_posix_fh(fh.0) {
            return self.posix.read(fh.0, offset, size, reply);
        }
        let data = vfs!(reply, self.vfs.read_at(HandleId(fh.0), offset, size));
        reply.data(&data);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if posix::is_posix_fh(fh.0) {
            return self.posix.write(fh.0, offset, data, reply);
        }
        let n = vfs!(reply, self.vfs.write_at(HandleId(fh.0), offset, data));
        reply.written(u32::try_from(n).unwrap_or(u32::MAX));
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        if posix::is_posix_fh(fh.0) {
            return reply.ok();
        }
        match self.vfs.flush(HandleId(fh.0)) {
            Ok(()) => reply.ok(),
            Err(e) => {
                // The page cache may hold the refused bytes: make readers fetch the kept file.
                self.vfs
                    .external_change(&tri!(reply, self.path(ino)), ChangeKind::Modified);
                reply.error(errno(&e));
            }
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if posix::is_posix_fh(fh.0) {
            self.posix.release(fh.0);
            return reply.ok();
        }
        if let Err(e) = self.vfs.release(HandleId(fh.0)) {
            // close(2) has already returned; the reason is in the log.
            tracing::warn!(ino = ino.0, error = %e, "commit at close failed");
            if let Ok(path) = self.path(ino) {
                self.vfs.external_change(&path, ChangeKind::Modified);
            }
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        if posix::is_posix_fh(fh.0) {
            return self.posix.fsync(fh.0, datasync, reply);
        }
        vfs!(reply, self.vfs.flush(HandleId(fh.0)));
        reply.ok();
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if posix::is_posix(ino.0) {
            let who = tri!(reply, self.who(req));
            let entries = tri!(reply, self.posix.list(&who, ino.0, ROOT));
            let fh = self.next_dir.fetch_add(1, Ordering::Relaxed);
            lock(&self.dirs).insert(fh, entries);
            return reply.opened(FileHandle(fh), FopenFlags::empty());
        }
        let caller = tri!(reply, self.caller(req));
        let path = tri!(reply, self.path(ino));
        let list = vfs!(reply, self.vfs.list(&caller, &path));
        let parent_ino = {
            let mut t = lock(&self.inodes);
            path.parent().map_or(ROOT, |p| t.get_or_insert(&p, false))
        };
        let mut entries = Vec::with_capacity(list.len() + 2);
        entries.push((ino.0, FileType::Directory, ".".to_owned()));
        entries.push((parent_ino, FileType::Directory, "..".to_owned()));
        {
            let mut t = lock(&self.inodes);
            for e in list {
                if let Ok(child) = path.join(&e.name) {
                    let i = t.get_or_insert(&child, false);
                    entries.push((i, file_type(e.kind), e.name));
                }
            }
        }
        let fh = self.next_dir.fetch_add(1, Ordering::Relaxed);
        lock(&self.dirs).insert(fh, entries);
        reply.opened(FileHandle(fh), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let dirs = lock(&self.dirs);
        let Some(entries) = dirs.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        for (i, (ino, kind, name)) in entries
            .iter()
            .enumerate()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        {
            if reply.add(INodeNo(*ino), (i + 1) as u64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.dirs).remove(&fh.0);
        reply.ok();
    }

    fn statfs(&self, req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        tri!(reply, self.caller(req));
        if posix::is_posix(ino.0) {
            return self.posix.statfs(ino.0, reply);
        }
        let path = self.path(ino).unwrap_or_else(|_| VfsPath::root());
        let s = self.vfs.space(&path);
        reply.statfs(
            s.blocks,
            s.blocks_free,
            s.blocks_avail,
            s.files,
            s.files_free,
            s.block_size,
            255,
            s.block_size,
        );
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        if posix::is_posix(ino.0) {
            let who = tri!(reply, self.who(req));
            return self.posix.access(&who, ino.0, mask.bits(), reply);
        }
        let caller = tri!(reply, self.caller(req));
        let path = tri!(reply, self.path(ino));
        let read = mask.contains(AccessFlags::R_OK);
        let write = mask.contains(AccessFlags::W_OK);
        vfs!(reply, self.vfs.check_access(&caller, &path, read, write));
        if mask.contains(AccessFlags::X_OK) {
            // Directories can be entered; nothing in the VFS is executable.
            let st = vfs!(reply, self.vfs.stat(&caller, &path));
            if st.kind != EntryKind::Dir {
                return reply.error(Errno::EACCES);
            }
        }
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        if posix::is_posix(parent.0) {
            let who = tri!(reply, self.who(req));
            return self.posix.create(&who, parent.0, name, mode, flags, reply);
        }
        let caller = tri!(reply, self.caller(req));
        let path = tri!(reply, self.child(parent, name));
        let mut opts = open_options(flags);
        opts.create = true;
        let (h, st) = vfs!(reply, self.vfs.open(&caller, &path, opts));
        let ino = lock(&self.inodes).get_or_insert(&path, true);
        reply.created(
            &Self::entry_ttl(&path, &st),
            &self.attr(ino, &st),
            Generation(0),
            FileHandle(h.0),
            Self::open_flags(&st, self.keep_cache, opts.write),
        );
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        if !posix::is_posix(ino.0) {
            return reply.error(Errno::EINVAL);
        }
        let who = tri!(reply, self.who(req));
        self.posix.readlink(&who, ino.0, reply);
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        if !posix::is_posix(parent.0) {
            // Document trees hold regular files and directories only.
            return reply.error(Errno::EPERM);
        }
        let who = tri!(reply, self.who(req));
        self.posix.mknod(&who, parent.0, name, mode, rdev, reply);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        if !posix::is_posix(parent.0) {
            return reply.error(Errno::EPERM);
        }
        let who = tri!(reply, self.who(req));
        self.posix.symlink(&who, parent.0, link_name, target, reply);
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        match (posix::is_posix(ino.0), posix::is_posix(newparent.0)) {
            (true, true) => {
                let who = tri!(reply, self.who(req));
                self.posix.link(&who, ino.0, newparent.0, newname, reply);
            }
            (false, false) => reply.error(Errno::EPERM),
            _ => reply.error(Errno::EXDEV),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if !posix::is_posix_fh(fh.0) {
            return reply.error(Errno::EOPNOTSUPP);
        }
        self.posix.fallocate(fh.0, offset, length, mode, reply);
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Directory changes in data trees are durable when the host filesystem makes them so;
        // document trees sync every change already.
        reply.ok();
    }
}
