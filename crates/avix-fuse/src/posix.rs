//! Data trees (`/users/<u>/workspace`, `…/scratch`, `/crews/<c>/shared`,
//! `/services/<s>/workspace`) served as ordinary POSIX files.
//!
//! Documents and synthetic files go through the VFS by path; data trees do not. Entering a
//! data tree's root (a lookup the VFS access rules allow) gives the mount an `O_PATH`
//! descriptor on the tree's host directory, and from there every node is the host file itself:
//!
//! - **Identity.** A node is known by its kernel *file handle* (`name_to_handle_at`), so it
//!   follows renames, hard links share it, and nothing is pinned open (a `grep -r` over a
//!   million files holds no descriptors). Its inode number is the host inode number (below
//!   [`PATH_BASE`], where path-served inode numbers start): stable across renames, lookups and
//!   restarts, and what `ls -i` shows on the host.
//! - **I/O.** An open file is the host file opened with the caller's flags (`O_APPEND`
//!   appends at the real end; an unlinked or renamed open file keeps its data). Where the
//!   kernel supports FUSE passthrough, reads, writes and mmap run in the kernel against it and
//!   the daemon sees only open and release; otherwise they are served with `pread`/`pwrite`.
//!   Nothing is synced that was not asked for: `fsync` syncs.
//! - **Access.** The VFS tree rules decide who may see and change a tree (checked at every
//!   operation, so a descriptor or working directory handed to another user is no key); inside
//!   it, POSIX modes decide, checked here against the caller's uid and gid (the daemon acts
//!   as root on the host). Files on disk belong to the account that owns the tree's host
//!   directory (the exec sandbox's) and are shown as the tree owner's; `chown` to anyone else
//!   is stored as is.
//! - **Links.** Symbolic links are stored and read back verbatim; the calling process's own
//!   kernel resolves them, with the caller's host rights. The other doors (ATP `fs`, agents'
//!   `fs/*` tools) never follow them (see avix-vfs `storage::local::beneath`).

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use avix_proto::UserName;
use avix_vfs::access::{self, Access, TEMP_PREFIX};
use avix_vfs::storage::local::open_path_beneath;
use avix_vfs::{Caller, Change, ChangeKind, VfsPath};
use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    TimeOrNow,
};

use crate::fs::Invalidation;
use crate::inodes::{PATH_BASE, ROOT};

/// The bit that marks data-tree file handles (path-served ones are small counters).
pub const TAG: u64 = 1 << 63;

/// How long the kernel may cache a data-tree entry or attributes. Changes made through other
/// doors, or on the host by the sandbox, are invalidated as they are seen; this bounds a miss.
pub const DATA_TTL: Duration = Duration::from_secs(1);

const MAX_HANDLE_SZ: usize = 128;

/// Whether the inode `ino` belongs to a data tree.
pub fn is_posix(ino: u64) -> bool {
    ino != ROOT && ino < PATH_BASE
}

/// Whether the open file or directory handle `fh` belongs to a data tree.
pub fn is_posix_fh(fh: u64) -> bool {
    fh & TAG != 0
}

/// The mount's inode number of a host file: its own, when it fits below [`ALIAS_BASE`] (ext4,
/// xfs, btrfs and tmpfs numbers do); a host whose numbers do not cannot serve data trees.
fn ino_of(st: &libc::stat) -> Result<u64, Errno> {
    if st.st_ino >= ALIAS_BASE || st.st_ino == ROOT {
        return Err(Errno::EOVERFLOW);
    }
    Ok(st.st_ino)
}

fn os(e: io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

fn last() -> Errno {
    os(io::Error::last_os_error())
}

fn cstr(name: &OsStr) -> Result<CString, Errno> {
    CString::new(name.as_bytes()).map_err(|_| Errno::EINVAL)
}

/// Names no door shows: the temp files of the other doors' atomic writes.
fn hidden(name: &OsStr) -> bool {
    name.as_bytes().starts_with(TEMP_PREFIX.as_bytes())
}

fn fstat(fd: BorrowedFd<'_>) -> Result<libc::stat, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is open; `st` is written by the kernel on success.
    let rc = unsafe {
        libc::fstatat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            st.as_mut_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(last());
    }
    // SAFETY: fstatat succeeded.
    Ok(unsafe { st.assume_init() })
}

fn open_at(dir: BorrowedFd<'_>, name: &CString, flags: i32, mode: u32) -> Result<OwnedFd, Errno> {
    // SAFETY: valid descriptor and NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode,
        )
    };
    if fd < 0 {
        return Err(last());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn check(rc: libc::c_int) -> Result<(), Errno> {
    if rc == 0 { Ok(()) } else { Err(last()) }
}

/// The kernel file handle of the object `fd` is open on.
fn handle_of(fd: BorrowedFd<'_>) -> Result<Box<[u32]>, Errno> {
    let mut buf = vec![0u32; 2 + MAX_HANDLE_SZ / 4];
    buf[0] = u32::try_from(MAX_HANDLE_SZ).unwrap_or(u32::MAX);
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `buf` is a `file_handle` header followed by MAX_HANDLE_SZ bytes, 4-aligned.
    check(unsafe {
        libc::name_to_handle_at(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast::<libc::file_handle>(),
            &mut mount_id,
            libc::AT_EMPTY_PATH,
        )
    })?;
    let words = 2 + (buf[0] as usize).div_ceil(4);
    buf.truncate(words);
    Ok(buf.into_boxed_slice())
}

fn time(sec: i64, nsec: i64) -> SystemTime {
    let nsec = u32::try_from(nsec).unwrap_or(0);
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec.unsigned_abs(), nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs()) + Duration::new(0, nsec)
    }
}

fn timespec(t: Option<TimeOrNow>) -> libc::timespec {
    match t {
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(TimeOrNow::Now) => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(TimeOrNow::SpecificTime(t)) => {
            let (sec, nsec) = match t.duration_since(UNIX_EPOCH) {
                Ok(d) => (
                    i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                    d.subsec_nanos(),
                ),
                Err(e) => {
                    let d = e.duration();
                    if d.subsec_nanos() == 0 {
                        (-i64::try_from(d.as_secs()).unwrap_or(i64::MAX), 0)
                    } else {
                        (
                            -i64::try_from(d.as_secs()).unwrap_or(i64::MAX) - 1,
                            1_000_000_000 - d.subsec_nanos(),
                        )
                    }
                }
            };
            libc::timespec {
                tv_sec: sec,
                tv_nsec: i64::from(nsec),
            }
        }
    }
}

fn kind(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

fn proc_path(fd: BorrowedFd<'_>) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
}

/// Whose files the tree's disk owner stands for.
#[derive(Debug, Clone, Copy)]
enum Shown {
    /// The tree owner's host uid (a user or service with `hostUid`).
    Uid(u32),
    /// Whoever asks (a crew share: every member's own).
    Caller,
    /// The disk uid itself (no mapping known).
    Disk,
}

/// One data tree the mount has entered.
#[derive(Debug)]
pub(crate) struct Tree {
    root: VfsPath,
    fd: OwnedFd,
    ino: u64,
    /// The uid that owns the tree's host directory (the sandbox account's, or the daemon's).
    disk_uid: u32,
    /// Whether nodes are kept as file handles (else as held descriptors).
    handles: bool,
    shown: Shown,
}

impl Tree {
    fn owner_uid(&self, caller_uid: u32) -> u32 {
        match self.shown {
            Shown::Uid(u) => u,
            Shown::Caller => caller_uid,
            Shown::Disk => self.disk_uid,
        }
    }

    /// The uid shown for a file whose disk owner is `disk`.
    fn shown_uid(&self, disk: u32, caller_uid: u32) -> u32 {
        if disk == self.disk_uid {
            self.owner_uid(caller_uid)
        } else {
            disk
        }
    }

    /// The disk owner for a file to be shown as `uid`.
    fn stored_uid(&self, uid: u32, caller_uid: u32) -> u32 {
        if uid == self.owner_uid(caller_uid) {
            self.disk_uid
        } else {
            uid
        }
    }

    /// A path below the root, for the tree rules (which depend only on the tree).
    fn probe(&self) -> VfsPath {
        self.root.join("f").unwrap_or_else(|_| self.root.clone())
    }
}

/// How a node is found again.
#[derive(Debug, Clone)]
enum NodeRef {
    /// Its kernel file handle (nothing held open).
    Handle(Arc<[u32]>),
    /// An `O_PATH` descriptor held while the kernel knows the node (a daemon without
    /// `CAP_DAC_READ_SEARCH` cannot open by handle).
    Fd(Arc<OwnedFd>),
}

#[derive(Debug)]
struct Node {
    tree: Arc<Tree>,
    handle: NodeRef,
    lookups: u64,
    /// The host inode number.
    host: u64,
}

/// The nodes the kernel holds, by the mount's inode number, with the current node of each host
/// inode number. The mount's number is the host's, except when the host reused the number of
/// a deleted file the kernel still holds: the new file then gets a number of its own (from
/// [`ALIAS_BASE`]), since one number must name one object while the kernel knows it.
#[derive(Debug, Default)]
struct NodeTable {
    by_id: HashMap<u64, Node>,
    by_host: HashMap<u64, u64>,
    next_alias: u64,
}

/// Where the numbers of nodes whose host number is taken start (host numbers lie below it).
const ALIAS_BASE: u64 = 1 << 47;

#[derive(Debug)]
struct OpenFile {
    file: File,
    _backing: Option<Arc<BackingId>>,
}

/// Who asks, as the host and the VFS know them.
#[derive(Debug)]
pub(crate) struct Who {
    pub caller: Caller,
    pub uid: u32,
    pub gid: u32,
    /// The calling process (its supplementary groups are read only when a check needs them).
    pub pid: u32,
}

impl Who {
    fn root(&self) -> bool {
        self.uid == 0
    }

    /// Whether the caller is in group `gid`: its own, or one of its process's supplementary
    /// groups.
    fn in_group(&self, gid: u32) -> bool {
        if gid == self.gid {
            return true;
        }
        let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", self.pid)) else {
            return false;
        };
        status
            .lines()
            .find_map(|l| l.strip_prefix("Groups:"))
            .is_some_and(|g| g.split_whitespace().any(|x| x.parse() == Ok(gid)))
    }
}

const R: u32 = 4;
const W: u32 = 2;
const X: u32 = 1;

/// The data trees of one mount.
#[derive(Debug, Default)]
pub(crate) struct Posix {
    trees: Mutex<HashMap<VfsPath, Arc<Tree>>>,
    nodes: Mutex<NodeTable>,
    files: Mutex<HashMap<u64, OpenFile>>,
    backings: Mutex<HashMap<u64, Weak<BackingId>>>,
    next_fh: AtomicU64,
    inval: Mutex<Option<std::sync::mpsc::Sender<Invalidation>>>,
    /// Whether opens are handed to the kernel (FUSE passthrough); shared with the daemon's
    /// status.
    pub passthrough: Arc<AtomicBool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

macro_rules! tri {
    ($reply:ident, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return $reply.error(e),
        }
    };
}

impl Posix {
    /// The tree's host directory opened for reading (`open_by_handle_at` refuses an `O_PATH`
    /// descriptor as its mount reference), and whether nodes can be kept as file handles
    /// (the daemon has `CAP_DAC_READ_SEARCH` and the host filesystem exports handles); if
    /// not, each node the kernel knows holds an `O_PATH` descriptor.
    pub(crate) fn usable(fd: BorrowedFd<'_>) -> Option<(OwnedFd, bool)> {
        let dir = open_at(
            fd,
            &CString::from(c"."),
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        )
        .ok()?;
        let handles = handle_of(dir.as_fd())
            .and_then(|h| open_handle(dir.as_fd(), &h, libc::O_PATH))
            .is_ok();
        Some((dir, handles))
    }

    fn node(&self, ino: u64) -> Result<(Arc<Tree>, NodeRef), Errno> {
        let nodes = lock(&self.nodes);
        let n = nodes.by_id.get(&ino).ok_or(Errno::ESTALE)?;
        Ok((n.tree.clone(), n.handle.clone()))
    }

    /// The node `ino` opened with `flags`, and its tree.
    fn reopen(&self, ino: u64, flags: i32) -> Result<(Arc<Tree>, OwnedFd), Errno> {
        let (tree, r) = self.node(ino)?;
        let fd = match r {
            NodeRef::Handle(h) => open_handle(tree.fd.as_fd(), &h, flags)?,
            NodeRef::Fd(fd) if flags == libc::O_PATH => fd.try_clone().map_err(os)?,
            NodeRef::Fd(fd) => {
                let p = proc_path(fd.as_fd());
                // SAFETY: NUL-terminated path.
                let n = unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC) };
                if n < 0 {
                    return Err(last());
                }
                // SAFETY: a fresh descriptor we own.
                unsafe { OwnedFd::from_raw_fd(n) }
            }
        };
        Ok((tree, fd))
    }

    /// An `O_PATH` descriptor on the node `ino`, and its tree.
    fn path_fd(&self, ino: u64) -> Result<(Arc<Tree>, OwnedFd), Errno> {
        self.reopen(ino, libc::O_PATH)
    }

    /// The tree rules for `who` on `tree`: anything at all needs read; changes need write.
    fn allowed(&self, who: &Who, tree: &Tree, write: bool) -> Result<(), Errno> {
        let probe = tree.probe();
        let want = if write { Access::Write } else { Access::Read };
        access::check(&who.caller, &probe, want).map_err(|e| Errno::from_i32(e.errno()))
    }

    fn attr(&self, id: u64, tree: &Tree, st: &libc::stat, who: &Who) -> FileAttr {
        let mtime = time(st.st_mtime, st.st_mtime_nsec);
        FileAttr {
            ino: INodeNo(id),
            size: u64::try_from(st.st_size).unwrap_or(0),
            blocks: u64::try_from(st.st_blocks).unwrap_or(0),
            atime: time(st.st_atime, st.st_atime_nsec),
            mtime,
            ctime: time(st.st_ctime, st.st_ctime_nsec),
            crtime: mtime,
            kind: kind(st.st_mode),
            perm: (st.st_mode & 0o7777) as u16,
            nlink: u32::try_from(st.st_nlink).unwrap_or(u32::MAX),
            uid: tree.shown_uid(st.st_uid, who.uid),
            gid: st.st_gid,
            rdev: u32::try_from(st.st_rdev).unwrap_or(0),
            blksize: u32::try_from(st.st_blksize).unwrap_or(4096),
            flags: 0,
        }
    }

    /// Whether the POSIX mode of `st` grants `want` (R, W, X bits) to `who`.
    fn permits(tree: &Tree, st: &libc::stat, who: &Who, want: u32) -> bool {
        if who.root() {
            return want & X == 0
                || st.st_mode & libc::S_IFMT == libc::S_IFDIR
                || st.st_mode & 0o111 != 0;
        }
        let mode = st.st_mode;
        let bits = if tree.shown_uid(st.st_uid, who.uid) == who.uid {
            (mode >> 6) & 7
        } else if (mode >> 3) & 7 == mode & 7 {
            // Group and others get the same: no need to know the caller's groups.
            mode & 7
        } else if who.in_group(st.st_gid) {
            (mode >> 3) & 7
        } else {
            mode & 7
        };
        bits & want == want
    }

    fn need(tree: &Tree, st: &libc::stat, who: &Who, want: u32) -> Result<(), Errno> {
        if Self::permits(tree, st, who, want) {
            Ok(())
        } else {
            Err(Errno::EACCES)
        }
    }

    fn is_owner(tree: &Tree, st: &libc::stat, who: &Who) -> bool {
        who.root() || tree.shown_uid(st.st_uid, who.uid) == who.uid
    }

    /// Registers the object `fd` is open on as a node (one more kernel reference).
    fn remember(
        &self,
        tree: &Arc<Tree>,
        fd: BorrowedFd<'_>,
        st: &libc::stat,
    ) -> Result<u64, Errno> {
        let host = ino_of(st)?;
        let handle = if tree.handles {
            Some(handle_of(fd)?)
        } else {
            None
        };
        let mut t = lock(&self.nodes);
        if let Some(&id) = t.by_host.get(&host)
            && let Some(n) = t.by_id.get_mut(&id)
        {
            // The same object, unless the number now names another file (a handle carries
            // the inode's generation; a held descriptor pins its inode, so no reuse).
            let same = match (&n.handle, &handle) {
                (NodeRef::Handle(old), Some(new)) => old[..] == new[..],
                _ => true,
            };
            if same {
                n.lookups += 1;
                return Ok(id);
            }
        }
        let id = if t.by_id.contains_key(&host) {
            t.next_alias += 1;
            ALIAS_BASE + t.next_alias
        } else {
            host
        };
        let handle = match handle {
            Some(h) => NodeRef::Handle(h.into()),
            None => NodeRef::Fd(Arc::new(fd.try_clone_to_owned().map_err(os)?)),
        };
        t.by_id.insert(
            id,
            Node {
                tree: tree.clone(),
                handle,
                lookups: 1,
                host,
            },
        );
        t.by_host.insert(host, id);
        Ok(id)
    }

    fn ttl(tree: &Tree, st: &libc::stat) -> Duration {
        // The root of a tree is the gate other users are refused at: never cached.
        if st.st_ino == tree.ino {
            Duration::ZERO
        } else {
            DATA_TTL
        }
    }

    /// How long the kernel may keep the name of `st` in the directory `dir`. The kernel walks
    /// cached names without asking (the mount has no `default_permissions`, since document
    /// trees follow the VFS rules, not modes), and its cache is shared by every host user; so
    /// a name is cached only in a directory everyone may search. In any other, every walk
    /// comes here and the search permission is checked for the caller.
    fn entry_ttl(tree: &Tree, dir: &libc::stat, st: &libc::stat) -> Duration {
        if dir.st_mode & 0o111 == 0o111 {
            Self::ttl(tree, st)
        } else {
            Duration::ZERO
        }
    }

    /// Enters the data tree `root` (a lookup from the path-served parent), whose host
    /// directory is `fd`.
    pub(crate) fn enter(
        &self,
        root: &VfsPath,
        fd: OwnedFd,
        handles: bool,
        shown_uid: Option<u32>,
        who: &Who,
        reply: ReplyEntry,
    ) {
        let st = tri!(reply, fstat(fd.as_fd()));
        let tree = {
            let mut trees = lock(&self.trees);
            match trees.get(root) {
                Some(t) if t.ino == st.st_ino && t.disk_uid == st.st_uid => t.clone(),
                _ => {
                    let crew = root.components().next() == Some("crews");
                    let shown = match (crew, shown_uid) {
                        (true, _) => Shown::Caller,
                        (false, Some(u)) => Shown::Uid(u),
                        (false, None) => Shown::Disk,
                    };
                    let t = Arc::new(Tree {
                        root: root.clone(),
                        ino: st.st_ino,
                        disk_uid: st.st_uid,
                        handles,
                        shown,
                        fd,
                    });
                    trees.insert(root.clone(), t.clone());
                    t
                }
            }
        };
        tri!(reply, self.allowed(who, &tree, false));
        let id = tri!(reply, self.remember(&tree, tree.fd.as_fd(), &st));
        let attr = self.attr(id, &tree, &st, who);
        reply.entry(&Duration::ZERO, &attr, Generation(0));
    }

    /// Whether a tree root is known, by its VFS path.
    pub(crate) fn tree(&self, root: &VfsPath) -> Option<Arc<Tree>> {
        lock(&self.trees).get(root).cloned()
    }

    /// Enters a tree the mount knows again (the root's entry is never cached, so every walk
    /// from outside comes here): the rules are checked for `who`, nothing is opened. `None`
    /// when the tree's directory is gone (then it is looked up afresh).
    pub(crate) fn reenter(
        &self,
        root: &VfsPath,
        who: &Who,
        reply: ReplyEntry,
    ) -> Option<ReplyEntry> {
        let Some(tree) = self.tree(root) else {
            return Some(reply);
        };
        let Ok(st) = fstat(tree.fd.as_fd()) else {
            return Some(reply);
        };
        if st.st_nlink == 0 {
            lock(&self.trees).remove(root);
            return Some(reply);
        }
        if let Err(e) = access::check(&who.caller, root, Access::Lookup) {
            reply.error(Errno::from_i32(e.errno()));
            return None;
        }
        if let Err(e) = self.allowed(who, &tree, false) {
            reply.error(e);
            return None;
        }
        match self.remember(&tree, tree.fd.as_fd(), &st) {
            Ok(id) => {
                let attr = self.attr(id, &tree, &st, who);
                reply.entry(&Duration::ZERO, &attr, Generation(0));
            }
            Err(e) => reply.error(e),
        }
        None
    }

    pub(crate) fn forget(&self, ino: u64, n: u64) {
        let mut t = lock(&self.nodes);
        if let Some(node) = t.by_id.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
            if node.lookups == 0 {
                let host = node.host;
                t.by_id.remove(&ino);
                if t.by_host.get(&host) == Some(&ino) {
                    t.by_host.remove(&host);
                }
            }
        }
    }

    /// The mount's number for a host inode number (the host's own when the kernel holds no
    /// node for it).
    fn id_of(&self, host: u64) -> u64 {
        lock(&self.nodes)
            .by_host
            .get(&host)
            .copied()
            .unwrap_or(host)
    }

    /// Looks up `name` in the directory `parent`: needs search (x) on it.
    pub(crate) fn lookup(&self, who: &Who, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let (tree, dir) = tri!(reply, self.path_fd(parent));
        tri!(reply, self.allowed(who, &tree, false));
        let dst = tri!(reply, fstat(dir.as_fd()));
        tri!(reply, Self::need(&tree, &dst, who, X));
        if hidden(name) {
            return reply.error(Errno::ENOENT);
        }
        let c = tri!(reply, cstr(name));
        self.reply_entry(&tree, dir.as_fd(), &dst, &c, who, reply);
    }

    fn reply_entry(
        &self,
        tree: &Arc<Tree>,
        dir: BorrowedFd<'_>,
        dst: &libc::stat,
        name: &CString,
        who: &Who,
        reply: ReplyEntry,
    ) {
        let fd = tri!(
            reply,
            open_at(dir, name, libc::O_PATH | libc::O_NOFOLLOW, 0)
        );
        let st = tri!(reply, fstat(fd.as_fd()));
        let id = tri!(reply, self.remember(tree, fd.as_fd(), &st));
        let attr = self.attr(id, tree, &st, who);
        reply.entry(&Self::entry_ttl(tree, dst, &st), &attr, Generation(0));
    }

    pub(crate) fn getattr(&self, who: &Who, ino: u64, fh: Option<FileHandle>, reply: ReplyAttr) {
        let open = fh.and_then(|h| {
            let files = lock(&self.files);
            files.get(&h.0).and_then(|f| f.file.try_clone().ok())
        });
        let (tree, _) = tri!(reply, self.node(ino));
        tri!(reply, self.allowed(who, &tree, false));
        let st = match open {
            Some(f) => tri!(reply, fstat(f.as_fd())),
            None => {
                let (_, fd) = tri!(reply, self.path_fd(ino));
                tri!(reply, fstat(fd.as_fd()))
            }
        };
        let attr = self.attr(ino, &tree, &st, who);
        reply.attr(&Self::ttl(&tree, &st), &attr);
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn setattr(
        &self,
        who: &Who,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<FileHandle>,
        reply: ReplyAttr,
    ) {
        let (tree, fd) = tri!(reply, self.path_fd(ino));
        tri!(reply, self.allowed(who, &tree, true));
        let open = fh.and_then(|h| {
            let files = lock(&self.files);
            files.get(&h.0).and_then(|f| f.file.try_clone().ok())
        });
        let st = tri!(reply, fstat(fd.as_fd()));
        let link = st.st_mode & libc::S_IFMT == libc::S_IFLNK;
        if uid.is_some() || gid.is_some() {
            // As on the host: only root gives a file away; its owner may set its group to
            // one of theirs; nobody else may even restate the owner.
            let owner = Self::is_owner(&tree, &st, who);
            let cur = tree.shown_uid(st.st_uid, who.uid);
            let uid_ok = uid.is_none_or(|u| owner && u == cur);
            let gid_ok = gid.is_none_or(|g| owner && (g == st.st_gid || who.in_group(g)));
            if !(who.root() || uid_ok && gid_ok) {
                return reply.error(Errno::EPERM);
            }
            let disk_uid = uid.map_or(u32::MAX, |u| tree.stored_uid(u, who.uid));
            let disk_gid = gid.unwrap_or(u32::MAX);
            tri!(
                reply,
                // SAFETY: valid descriptor, empty path with AT_EMPTY_PATH.
                check(unsafe {
                    libc::fchownat(
                        fd.as_raw_fd(),
                        c"".as_ptr(),
                        disk_uid,
                        disk_gid,
                        libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
                    )
                })
            );
        }
        if let Some(len) = size {
            let len = tri!(reply, i64::try_from(len).map_err(|_| Errno::EFBIG));
            match &open {
                Some(f) => tri!(reply, f.set_len(len as u64).map_err(os)),
                None => {
                    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                        return reply.error(Errno::EISDIR);
                    }
                    tri!(reply, Self::need(&tree, &st, who, W));
                    let p = proc_path(fd.as_fd());
                    // SAFETY: NUL-terminated path.
                    tri!(reply, check(unsafe { libc::truncate(p.as_ptr(), len) }));
                }
            }
        }
        if let Some(m) = mode {
            // The kernel clears set-ID bits of a file written by someone else by a mode
            // change made as the writer: allowed to whoever may write it.
            let changed = (st.st_mode ^ m) & 0o7777;
            let kill_priv =
                changed != 0 && changed & !m_setid(&st) == 0 && Self::permits(&tree, &st, who, W);
            if !Self::is_owner(&tree, &st, who) && !kill_priv {
                return reply.error(Errno::EPERM);
            }
            if link {
                return reply.error(Errno::EOPNOTSUPP);
            }
            let mut m = m & 0o7777;
            // Like the host: setgid on a file is dropped for someone not in its group.
            if !who.root() && st.st_mode & libc::S_IFMT != libc::S_IFDIR && !who.in_group(st.st_gid)
            {
                m &= !libc::S_ISGID;
            }
            let p = proc_path(fd.as_fd());
            // SAFETY: NUL-terminated path.
            tri!(reply, check(unsafe { libc::chmod(p.as_ptr(), m) }));
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR && m & 0o111 != 0o111 {
                // Names cached while everyone could search it must be looked up again.
                self.forget_names(ino, fd.as_fd());
            }
        }
        if atime.is_some() || mtime.is_some() {
            let now_only = matches!(atime, None | Some(TimeOrNow::Now))
                && matches!(mtime, None | Some(TimeOrNow::Now));
            let owner = Self::is_owner(&tree, &st, who);
            if !owner {
                if !now_only {
                    return reply.error(Errno::EPERM);
                }
                tri!(reply, Self::need(&tree, &st, who, W));
            }
            let times = [timespec(atime), timespec(mtime)];
            // SAFETY: valid descriptor, empty path with AT_EMPTY_PATH, two timespecs. The
            // descriptor is the node itself, a symbolic link included (lutimes).
            let r = check(unsafe {
                libc::utimensat(
                    fd.as_raw_fd(),
                    c"".as_ptr(),
                    times.as_ptr(),
                    libc::AT_EMPTY_PATH,
                )
            });
            match r {
                Err(Errno::EINVAL) if !link => {
                    // Kernels without AT_EMPTY_PATH for utimensat: through /proc.
                    let p = proc_path(fd.as_fd());
                    tri!(
                        reply,
                        // SAFETY: NUL-terminated path, two timespecs.
                        check(unsafe {
                            libc::utimensat(libc::AT_FDCWD, p.as_ptr(), times.as_ptr(), 0)
                        })
                    );
                }
                r => tri!(reply, r),
            }
        }
        let st = match &open {
            Some(f) => tri!(reply, fstat(f.as_fd())),
            None => tri!(reply, fstat(fd.as_fd())),
        };
        let attr = self.attr(ino, &tree, &st, who);
        reply.attr(&Self::ttl(&tree, &st), &attr);
    }

    pub(crate) fn readlink(&self, who: &Who, ino: u64, reply: ReplyData) {
        let (tree, fd) = tri!(reply, self.path_fd(ino));
        tri!(reply, self.allowed(who, &tree, false));
        let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
        // SAFETY: valid descriptor and buffer.
        let n = unsafe {
            libc::readlinkat(
                fd.as_raw_fd(),
                c"".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return reply.error(last());
        }
        reply.data(&buf[..n as usize]);
    }

    /// The directory `parent` ready for a new entry: tree write rights, w+x on it.
    fn writable_dir(
        &self,
        who: &Who,
        parent: u64,
        name: &OsStr,
    ) -> Result<(Arc<Tree>, OwnedFd, libc::stat, CString), Errno> {
        let (tree, dir) = self.path_fd(parent)?;
        self.allowed(who, &tree, true)?;
        if hidden(name) {
            return Err(Errno::EPERM);
        }
        let c = cstr(name)?;
        let st = fstat(dir.as_fd())?;
        Self::need(&tree, &st, who, W | X)?;
        Ok((tree, dir, st, c))
    }

    /// Gives a new entry its owner and mode: the caller's uid (stored as the tree's disk
    /// owner when it is the tree owner), the caller's gid or a setgid directory's.
    fn adopt(
        &self,
        tree: &Tree,
        dir: BorrowedFd<'_>,
        dst: &libc::stat,
        name: &CString,
        who: &Who,
        mode: Option<u32>,
    ) -> Result<(), Errno> {
        let uid = tree.stored_uid(who.uid, who.uid);
        let gid = if dst.st_mode & libc::S_ISGID != 0 {
            dst.st_gid
        } else {
            who.gid
        };
        // SAFETY: valid descriptor and NUL-terminated name.
        check(unsafe {
            libc::fchownat(
                dir.as_raw_fd(),
                name.as_ptr(),
                uid,
                gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
        if let Some(m) = mode {
            // SAFETY: as above (never a link here).
            check(unsafe { libc::fchmodat(dir.as_raw_fd(), name.as_ptr(), m, 0) })?;
        }
        Ok(())
    }

    pub(crate) fn mknod(
        &self,
        who: &Who,
        parent: u64,
        name: &OsStr,
        mode: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let (tree, dir, dst, c) = tri!(reply, self.writable_dir(who, parent, name));
        let fmt = mode & libc::S_IFMT;
        if matches!(fmt, libc::S_IFCHR | libc::S_IFBLK) && !who.root() {
            return reply.error(Errno::EPERM);
        }
        if fmt == libc::S_IFREG || fmt == 0 {
            let fd = tri!(
                reply,
                open_at(
                    dir.as_fd(),
                    &c,
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                    0o600
                )
            );
            drop(fd);
        } else {
            tri!(
                reply,
                // SAFETY: valid descriptor and NUL-terminated name.
                check(unsafe {
                    libc::mknodat(
                        dir.as_raw_fd(),
                        c.as_ptr(),
                        fmt | 0o600,
                        libc::dev_t::from(rdev),
                    )
                })
            );
        }
        if let Err(e) = self.adopt(&tree, dir.as_fd(), &dst, &c, who, Some(mode & 0o7777)) {
            // SAFETY: as above.
            unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) };
            return reply.error(e);
        }
        self.reply_entry(&tree, dir.as_fd(), &dst, &c, who, reply);
    }

    pub(crate) fn mkdir(&self, who: &Who, parent: u64, name: &OsStr, mode: u32, reply: ReplyEntry) {
        let (tree, dir, dst, c) = tri!(reply, self.writable_dir(who, parent, name));
        tri!(
            reply,
            // SAFETY: valid descriptor and NUL-terminated name.
            check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o700) })
        );
        let mut m = mode & 0o7777;
        if dst.st_mode & libc::S_ISGID != 0 {
            m |= libc::S_ISGID;
        }
        if let Err(e) = self.adopt(&tree, dir.as_fd(), &dst, &c, who, Some(m)) {
            // SAFETY: as above.
            unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) };
            return reply.error(e);
        }
        self.reply_entry(&tree, dir.as_fd(), &dst, &c, who, reply);
    }

    pub(crate) fn symlink(
        &self,
        who: &Who,
        parent: u64,
        name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let (tree, dir, dst, c) = tri!(reply, self.writable_dir(who, parent, name));
        let t = tri!(reply, cstr(target.as_os_str()));
        tri!(
            reply,
            // SAFETY: NUL-terminated strings, valid descriptor.
            check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), c.as_ptr()) })
        );
        if let Err(e) = self.adopt(&tree, dir.as_fd(), &dst, &c, who, None) {
            // SAFETY: as above.
            unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) };
            return reply.error(e);
        }
        self.reply_entry(&tree, dir.as_fd(), &dst, &c, who, reply);
    }

    pub(crate) fn link(
        &self,
        who: &Who,
        ino: u64,
        newparent: u64,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let (tree, fd) = tri!(reply, self.path_fd(ino));
        let (ntree, dir, dst, c) = tri!(reply, self.writable_dir(who, newparent, newname));
        if !Arc::ptr_eq(&tree, &ntree) {
            return reply.error(Errno::EXDEV);
        }
        tri!(
            reply,
            // SAFETY: valid descriptors, NUL-terminated name.
            check(unsafe {
                libc::linkat(
                    fd.as_raw_fd(),
                    c"".as_ptr(),
                    dir.as_raw_fd(),
                    c.as_ptr(),
                    libc::AT_EMPTY_PATH,
                )
            })
        );
        self.reply_entry(&tree, dir.as_fd(), &dst, &c, who, reply);
    }

    /// The sticky-bit rule: in a sticky directory only the entry's owner, the directory's
    /// owner or root may remove or rename it.
    fn sticky_ok(
        tree: &Tree,
        dir: BorrowedFd<'_>,
        dst: &libc::stat,
        name: &CString,
        who: &Who,
    ) -> Result<(), Errno> {
        if dst.st_mode & libc::S_ISVTX == 0 || Self::is_owner(tree, dst, who) {
            return Ok(());
        }
        let fd = open_at(dir, name, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
        let st = fstat(fd.as_fd())?;
        if Self::is_owner(tree, &st, who) {
            Ok(())
        } else {
            Err(Errno::EPERM)
        }
    }

    pub(crate) fn remove(
        &self,
        who: &Who,
        parent: u64,
        name: &OsStr,
        dir_flag: bool,
        reply: ReplyEmpty,
    ) {
        let (tree, dir, dst, c) = match self.writable_dir(who, parent, name) {
            Ok(v) => v,
            Err(Errno::EPERM) if hidden(name) => return reply.error(Errno::ENOENT),
            Err(e) => return reply.error(e),
        };
        tri!(reply, Self::sticky_ok(&tree, dir.as_fd(), &dst, &c, who));
        let flags = if dir_flag { libc::AT_REMOVEDIR } else { 0 };
        tri!(
            reply,
            // SAFETY: valid descriptor, NUL-terminated name.
            check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) })
        );
        reply.ok();
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rename(
        &self,
        who: &Who,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (tree, from, fst, fc) = tri!(reply, self.writable_dir(who, parent, name));
        let (ntree, to, tst, tc) = tri!(reply, self.writable_dir(who, newparent, newname));
        if !Arc::ptr_eq(&tree, &ntree) {
            return reply.error(Errno::EXDEV);
        }
        tri!(reply, Self::sticky_ok(&tree, from.as_fd(), &fst, &fc, who));
        if parent != newparent && !who.root() {
            // A directory moved to another parent has its `..` rewritten: that needs write
            // permission on the directory itself.
            let src = tri!(
                reply,
                open_at(from.as_fd(), &fc, libc::O_PATH | libc::O_NOFOLLOW, 0)
            );
            let sst = tri!(reply, fstat(src.as_fd()));
            if sst.st_mode & libc::S_IFMT == libc::S_IFDIR {
                tri!(reply, Self::need(&tree, &sst, who, W));
            }
        }
        if let Ok(t) = open_at(to.as_fd(), &tc, libc::O_PATH | libc::O_NOFOLLOW, 0) {
            drop(t);
            tri!(reply, Self::sticky_ok(&tree, to.as_fd(), &tst, &tc, who));
        }
        // SAFETY: valid descriptors, NUL-terminated names.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                from.as_raw_fd(),
                fc.as_ptr(),
                to.as_raw_fd(),
                tc.as_ptr(),
                flags.bits(),
            )
        };
        if rc != 0 {
            return reply.error(last());
        }
        reply.ok();
    }

    fn open_rights(flags: i32) -> u32 {
        let mut want = match flags & libc::O_ACCMODE {
            libc::O_RDONLY => R,
            libc::O_WRONLY => W,
            _ => R | W,
        };
        if flags & libc::O_TRUNC != 0 {
            want |= W;
        }
        want
    }

    fn fopen_flags() -> FopenFlags {
        // Closing has nothing to commit: spare close(2) a round trip.
        FopenFlags::FOPEN_NOFLUSH
    }

    fn register(
        &self,
        file: File,
        ino: u64,
        reply_backing: impl FnOnce(&File) -> io::Result<BackingId>,
    ) -> (u64, Option<Arc<BackingId>>) {
        let backing = if self.passthrough.load(Ordering::Relaxed) {
            let mut b = lock(&self.backings);
            match b.get(&ino).and_then(Weak::upgrade) {
                Some(id) => Some(id),
                None => match reply_backing(&file) {
                    Ok(id) => {
                        let id = Arc::new(id);
                        // Entries of closed files go at the next registration past a bound.
                        if b.len() > 1024 {
                            b.retain(|_, w| w.strong_count() > 0);
                        }
                        b.insert(ino, Arc::downgrade(&id));
                        Some(id)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "FUSE passthrough refused by the kernel; data trees are served by the daemon from now on");
                        self.passthrough.store(false, Ordering::Relaxed);
                        None
                    }
                },
            }
        } else {
            None
        };
        let fh = TAG | self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.files).insert(
            fh,
            OpenFile {
                file,
                _backing: backing.clone(),
            },
        );
        (fh, backing)
    }

    pub(crate) fn open(&self, who: &Who, ino: u64, flags: i32, reply: ReplyOpen) {
        let want = Self::open_rights(flags);
        let flags = flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_NOFOLLOW);
        let fd = if want == R {
            // Opening for reading changes nothing: open, then check on what was opened.
            let (tree, fd) = tri!(reply, self.reopen(ino, flags));
            tri!(reply, self.allowed(who, &tree, false));
            let st = tri!(reply, fstat(fd.as_fd()));
            tri!(reply, Self::need(&tree, &st, who, want));
            fd
        } else {
            let (tree, pfd) = tri!(reply, self.path_fd(ino));
            let st = tri!(reply, fstat(pfd.as_fd()));
            tri!(reply, self.allowed(who, &tree, true));
            tri!(reply, Self::need(&tree, &st, who, want));
            tri!(reply, self.reopen(ino, flags)).1
        };
        let file = File::from(fd);
        let (fh, backing) = self.register(file, ino, |f| reply.open_backing(f));
        match backing {
            Some(id) => reply.opened_passthrough(FileHandle(fh), Self::fopen_flags(), &id),
            None => reply.opened(FileHandle(fh), Self::fopen_flags()),
        }
    }

    pub(crate) fn create(
        &self,
        who: &Who,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (tree, dir, dst, c) = tri!(reply, self.writable_dir(who, parent, name));
        let open_flags = flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY);
        let fd = match open_at(
            dir.as_fd(),
            &c,
            open_flags | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            0o600,
        ) {
            Ok(fd) => {
                if let Err(e) = self
                    .adopt(&tree, dir.as_fd(), &dst, &c, who, None)
                    .and_then(|()| {
                        // SAFETY: valid descriptor.
                        check(unsafe { libc::fchmod(fd.as_raw_fd(), mode & 0o7777) })
                    })
                {
                    // SAFETY: as above.
                    unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) };
                    return reply.error(e);
                }
                fd
            }
            Err(Errno::EEXIST) if flags & libc::O_EXCL == 0 => {
                let pfd = tri!(
                    reply,
                    open_at(dir.as_fd(), &c, libc::O_PATH | libc::O_NOFOLLOW, 0)
                );
                let st = tri!(reply, fstat(pfd.as_fd()));
                tri!(reply, Self::need(&tree, &st, who, Self::open_rights(flags)));
                tri!(
                    reply,
                    open_at(dir.as_fd(), &c, open_flags | libc::O_NOFOLLOW, 0)
                )
            }
            Err(e) => return reply.error(e),
        };
        let st = tri!(reply, fstat(fd.as_fd()));
        let ino = tri!(reply, self.remember(&tree, fd.as_fd(), &st));
        let attr = self.attr(ino, &tree, &st, who);
        let (fh, backing) = self.register(File::from(fd), ino, |f| reply.open_backing(f));
        let ttl = Self::entry_ttl(&tree, &dst, &st);
        match backing {
            Some(id) => reply.created_passthrough(
                &ttl,
                &attr,
                Generation(0),
                FileHandle(fh),
                Self::fopen_flags(),
                &id,
            ),
            None => reply.created(
                &ttl,
                &attr,
                Generation(0),
                FileHandle(fh),
                Self::fopen_flags(),
            ),
        }
    }

    fn file(&self, fh: u64) -> Result<File, Errno> {
        let files = lock(&self.files);
        let f = files.get(&fh).ok_or(Errno::EBADF)?;
        f.file.try_clone().map_err(os)
    }

    pub(crate) fn read(&self, fh: u64, offset: u64, size: u32, reply: ReplyData) {
        let f = tri!(reply, self.file(fh));
        let mut buf = vec![0u8; size as usize];
        let mut n = 0;
        while n < buf.len() {
            match f.read_at(&mut buf[n..], offset + n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return reply.error(os(e)),
            }
        }
        reply.data(&buf[..n]);
    }

    pub(crate) fn write(&self, fh: u64, offset: u64, data: &[u8], reply: ReplyWrite) {
        let f = tri!(reply, self.file(fh));
        // A descriptor opened with O_APPEND appends at the real end whatever the offset.
        match f.write_at(data, offset) {
            Ok(n) => reply.written(u32::try_from(n).unwrap_or(u32::MAX)),
            Err(e) => reply.error(os(e)),
        }
    }

    pub(crate) fn release(&self, fh: u64) {
        lock(&self.files).remove(&fh);
    }

    pub(crate) fn fsync(&self, fh: u64, datasync: bool, reply: ReplyEmpty) {
        let f = tri!(reply, self.file(fh));
        let r = if datasync {
            f.sync_data()
        } else {
            f.sync_all()
        };
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(os(e)),
        }
    }

    pub(crate) fn fallocate(
        &self,
        fh: u64,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let f = tri!(reply, self.file(fh));
        let (Ok(off), Ok(len)) = (i64::try_from(offset), i64::try_from(length)) else {
            return reply.error(Errno::EFBIG);
        };
        tri!(
            reply,
            // SAFETY: valid descriptor.
            check(unsafe { libc::fallocate(f.as_raw_fd(), mode, off, len) })
        );
        reply.ok();
    }

    /// The entries of the directory `ino` (with `.` and `..`), for a snapshot at opendir.
    pub(crate) fn list(
        &self,
        who: &Who,
        ino: u64,
        parent_ino: u64,
    ) -> Result<Vec<(u64, FileType, String)>, Errno> {
        let (tree, pfd) = self.path_fd(ino)?;
        self.allowed(who, &tree, false)?;
        let st = fstat(pfd.as_fd())?;
        Self::need(&tree, &st, who, R)?;
        let (_, fd) = self.reopen(ino, libc::O_RDONLY | libc::O_DIRECTORY)?;
        let probe = fd.try_clone().map_err(os)?;
        let mut d = nix::dir::Dir::from_fd(fd).map_err(|e| Errno::from_i32(e as i32))?;
        let mut out = vec![(ino, FileType::Directory, ".".to_owned())];
        let up = if st.st_ino == tree.ino {
            parent_ino
        } else {
            match open_at(probe.as_fd(), &CString::from(c".."), libc::O_PATH, 0)
                .and_then(|p| fstat(p.as_fd()))
            {
                Ok(p) => ino_of(&p).map_or(parent_ino, |h| self.id_of(h)),
                Err(_) => parent_ino,
            }
        };
        out.push((up, FileType::Directory, "..".to_owned()));
        for e in d.iter() {
            let e = e.map_err(|e| Errno::from_i32(e as i32))?;
            let name = e.file_name();
            let bytes = name.to_bytes();
            if bytes == b"." || bytes == b".." || bytes.starts_with(TEMP_PREFIX.as_bytes()) {
                continue;
            }
            let Ok(name) = name.to_str() else {
                // The listing keeps names as strings; a non-UTF-8 name is still reachable by
                // lookup.
                continue;
            };
            use nix::dir::Type;
            let kind = match e.file_type() {
                Some(Type::Directory) => FileType::Directory,
                Some(Type::File) => FileType::RegularFile,
                Some(Type::Symlink) => FileType::Symlink,
                Some(Type::Fifo) => FileType::NamedPipe,
                Some(Type::Socket) => FileType::Socket,
                Some(Type::CharacterDevice) => FileType::CharDevice,
                Some(Type::BlockDevice) => FileType::BlockDevice,
                None => {
                    let c = cstr(OsStr::new(name))?;
                    match open_at(probe.as_fd(), &c, libc::O_PATH | libc::O_NOFOLLOW, 0)
                        .and_then(|f| fstat(f.as_fd()))
                    {
                        Ok(st) => kind(st.st_mode),
                        Err(_) => continue,
                    }
                }
            };
            let ino = e.ino();
            if !is_posix(ino) {
                continue;
            }
            out.push((self.id_of(ino), kind, name.to_owned()));
        }
        Ok(out)
    }

    pub(crate) fn statfs(&self, ino: u64, reply: ReplyStatfs) {
        let (_, fd) = tri!(reply, self.path_fd(ino));
        let mut s = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        tri!(
            reply,
            // SAFETY: valid descriptor; `s` written on success.
            check(unsafe { libc::fstatvfs(fd.as_raw_fd(), s.as_mut_ptr()) })
        );
        // SAFETY: fstatvfs succeeded.
        let s = unsafe { s.assume_init() };
        reply.statfs(
            s.f_blocks,
            s.f_bfree,
            s.f_bavail,
            s.f_files,
            s.f_ffree,
            u32::try_from(s.f_bsize).unwrap_or(4096),
            u32::try_from(s.f_namemax).unwrap_or(255),
            u32::try_from(s.f_frsize).unwrap_or(4096),
        );
    }

    pub(crate) fn access(&self, who: &Who, ino: u64, mask: i32, reply: ReplyEmpty) {
        let (tree, fd) = tri!(reply, self.path_fd(ino));
        let mut want = 0;
        if mask & libc::R_OK != 0 {
            want |= R;
        }
        if mask & libc::W_OK != 0 {
            want |= W;
        }
        if mask & libc::X_OK != 0 {
            want |= X;
        }
        tri!(reply, self.allowed(who, &tree, want & W != 0));
        let st = tri!(reply, fstat(fd.as_fd()));
        tri!(reply, Self::need(&tree, &st, who, want));
        reply.ok();
    }

    /// Drops the kernel's cached names in the directory `ino` (open as `fd`).
    fn forget_names(&self, ino: u64, fd: BorrowedFd<'_>) {
        let Some(tx) = lock(&self.inval).clone() else {
            return;
        };
        let Ok(dir) = open_at(
            fd,
            &CString::from(c"."),
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        ) else {
            return;
        };
        let Ok(mut d) = nix::dir::Dir::from_fd(dir) else {
            return;
        };
        for e in d.iter().flatten() {
            if let Ok(name) = e.file_name().to_str()
                && name != "."
                && name != ".."
            {
                let _ = tx.send(Invalidation::Entry(ino, name.to_owned()));
            }
        }
    }

    /// Where invalidations go (the mount's notifier thread).
    pub(crate) fn set_invalidations(&self, tx: std::sync::mpsc::Sender<Invalidation>) {
        *lock(&self.inval) = Some(tx);
    }

    /// The kernel caches to drop after `change` (made through another door, or on the host):
    /// nodes the mount knows, found by resolving the path beneath the tree.
    pub(crate) fn invalidations(&self, change: &Change, out: &mut Vec<Invalidation>) {
        // A tree root renamed or removed elsewhere: found afresh at the next lookup.
        if matches!(
            change.kind,
            ChangeKind::Removed | ChangeKind::Renamed { .. }
        ) {
            let from = match &change.kind {
                ChangeKind::Renamed { from } => Some(from),
                _ => None,
            };
            for p in [Some(&change.path), from].into_iter().flatten() {
                if access::data_tree_root(p).as_ref() == Some(p) {
                    lock(&self.trees).remove(p);
                }
            }
        }
        let name_gone = |path: &VfsPath, out: &mut Vec<Invalidation>| {
            if let Some(t) = self.resolve(path) {
                out.extend(t.parent.map(|p| Invalidation::Entry(p, t.name.clone())));
                out.extend(t.parent.map(Invalidation::Inode));
            }
        };
        let name_new = |path: &VfsPath, out: &mut Vec<Invalidation>| {
            if let Some(t) = self.resolve(path) {
                out.extend(t.parent.map(|p| Invalidation::Entry(p, t.name.clone())));
                out.extend(t.parent.map(Invalidation::Inode));
                out.extend(t.target.map(Invalidation::Inode));
            }
        };
        match &change.kind {
            ChangeKind::Created => name_new(&change.path, out),
            ChangeKind::Modified => {
                let Some(t) = self.resolve(&change.path) else {
                    return;
                };
                match t.target {
                    // The same file changed: its attributes and pages only.
                    Some(id) => out.push(Invalidation::Inode(id)),
                    // Another file now has this name (an atomic replace): the kernel may hold
                    // the old one under it.
                    None if t.exists => {
                        out.extend(t.parent.map(|p| Invalidation::Entry(p, t.name.clone())));
                        out.extend(t.parent.map(Invalidation::Inode));
                    }
                    None => {}
                }
            }
            ChangeKind::Removed => name_gone(&change.path, out),
            ChangeKind::Renamed { from } => {
                name_gone(from, out);
                name_new(&change.path, out);
            }
        }
    }

    /// What the kernel may hold for `path` in a known data tree: its directory's node, its
    /// own node (by its current host file), and whether a file is there now.
    fn resolve(&self, path: &VfsPath) -> Option<Resolved> {
        let root = access::data_tree_root(path)?;
        let tree = self.tree(&root)?;
        let rel = path.strip_prefix(&root)?;
        if rel.is_empty() {
            return None;
        }
        let (dir, name) = match rel.rfind('/') {
            Some(i) => (&rel[..i], &rel[i + 1..]),
            None => ("", rel),
        };
        let known = |st: &libc::stat| {
            ino_of(st)
                .ok()
                .and_then(|h| lock(&self.nodes).by_host.get(&h).copied())
        };
        let dfd = open_path_beneath(tree.fd.as_fd(), dir).ok()?;
        let parent = fstat(dfd.as_fd()).ok().as_ref().and_then(known);
        let target = CString::new(name)
            .ok()
            .and_then(|c| open_at(dfd.as_fd(), &c, libc::O_PATH | libc::O_NOFOLLOW, 0).ok())
            .and_then(|fd| fstat(fd.as_fd()).ok());
        Some(Resolved {
            parent,
            name: name.to_owned(),
            target: target.as_ref().and_then(known),
            exists: target.is_some(),
        })
    }
}

/// See [`Posix::resolve`].
struct Resolved {
    parent: Option<u64>,
    name: String,
    target: Option<u64>,
    exists: bool,
}

/// The set-ID bits a writer's mode change may clear.
fn m_setid(st: &libc::stat) -> u32 {
    st.st_mode & (libc::S_ISUID | libc::S_ISGID)
}

fn open_handle(mount: BorrowedFd<'_>, handle: &[u32], flags: i32) -> Result<OwnedFd, Errno> {
    let mut h = handle.to_vec();
    // SAFETY: `h` is a complete `file_handle` as the kernel returned it.
    let fd = unsafe {
        libc::open_by_handle_at(
            mount.as_raw_fd(),
            h.as_mut_ptr().cast::<libc::file_handle>(),
            flags | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(last());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The host uid shown as the owner of a data tree rooted at `root`, by its owner's name.
pub(crate) fn tree_owner(root: &VfsPath) -> Option<UserName> {
    let mut c = root.components();
    match c.next()? {
        "users" | "services" => UserName::new(c.next()?).ok(),
        _ => None,
    }
}
