//! Path resolution that cannot leave a directory: every path a driver is given is resolved
//! beneath the tree's root without following any symbolic link, in any component.
//!
//! `O_NOFOLLOW` guards only the last component of a path; a symlinked directory earlier in it
//! (planted by a sandboxed program in a workspace, say) would otherwise take a daemon running
//! as root anywhere on the host. So the driver never hands a whole path to the kernel: it
//! opens the parent directory beneath the root — with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`, or, where the kernel lacks it, one component at a time with
//! `O_NOFOLLOW | O_DIRECTORY` — and acts on the last name with `*at` calls on that
//! descriptor, never following a link there either.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::{Gid, Uid};

use crate::storage::{EntryKind, StorageError};

/// Whether `openat2` may be tried (cleared at the first ENOSYS: kernels before 5.6, or a
/// seccomp filter that does not know it).
static OPENAT2: AtomicBool = AtomicBool::new(true);

/// Flags every descriptor opened here carries.
fn base_flags() -> OFlag {
    OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY
}

/// Turns a resolution failure into what the VFS reports. A path through a symbolic link (or
/// one that would leave the root) is reported missing: links are not part of the VFS.
fn resolve_err(e: Errno) -> StorageError {
    match e {
        Errno::ELOOP | Errno::EXDEV => StorageError::NotFound,
        e => StorageError::from(std::io::Error::from(e)),
    }
}

/// Splits `rel` into its parent directory and last name (`"a/b"` → `("a", "b")`).
pub(crate) fn split(rel: &str) -> (&str, &str) {
    match rel.rfind('/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => ("", rel),
    }
}

/// A component the walk must refuse: the VFS validated paths already, this is a second line.
fn bad_component(c: &str) -> bool {
    c.is_empty() || c == "." || c == ".." || c.contains('\0')
}

/// Opens `rel` beneath `root` with `flags`, following no symbolic link anywhere.
pub(crate) fn open(root: BorrowedFd<'_>, rel: &str, flags: OFlag) -> Result<OwnedFd, StorageError> {
    let mut flags = flags | base_flags();
    if flags.contains(OFlag::O_PATH) {
        // openat2 refuses O_PATH with anything but O_CLOEXEC, O_DIRECTORY and O_NOFOLLOW.
        flags.remove(OFlag::O_NOCTTY);
    }
    if rel.is_empty() {
        return nix::fcntl::openat(root, ".", flags, Mode::empty()).map_err(resolve_err);
    }
    if OPENAT2.load(Ordering::Relaxed) {
        let how = OpenHow::new().flags(flags).resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
        match nix::fcntl::openat2(root, rel, how) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOSYS) => OPENAT2.store(false, Ordering::Relaxed),
            // EAGAIN: a concurrent rename somewhere on the system; resolve by hand.
            Err(Errno::EAGAIN) => {}
            Err(e) => return Err(resolve_err(e)),
        }
    }
    open_walk(root, rel, flags)
}

/// The component-by-component fallback of [`open`].
fn open_walk(root: BorrowedFd<'_>, rel: &str, flags: OFlag) -> Result<OwnedFd, StorageError> {
    let (dir, name) = split(rel);
    let mut cur: Option<OwnedFd> = None;
    let flags = flags | base_flags();
    for c in dir.split('/').filter(|c| !c.is_empty()) {
        if bad_component(c) {
            return Err(StorageError::NotFound);
        }
        let at = cur.as_ref().map_or(root, AsFd::as_fd);
        let next = nix::fcntl::openat(
            at,
            c,
            OFlag::O_PATH | OFlag::O_DIRECTORY | base_flags(),
            Mode::empty(),
        )
        .map_err(|e| not_a_dir(at, c, e))?;
        cur = Some(next);
    }
    if bad_component(name) {
        return Err(StorageError::NotFound);
    }
    let at = cur.as_ref().map_or(root, AsFd::as_fd);
    nix::fcntl::openat(at, name, flags, Mode::from_bits_truncate(0o600)).map_err(resolve_err)
}

/// What a failed directory open at `name` in `at` means: `O_DIRECTORY | O_NOFOLLOW` on a link
/// answers ENOTDIR, which for the VFS is a missing entry (links are not part of it).
fn not_a_dir(at: BorrowedFd<'_>, name: &str, e: Errno) -> StorageError {
    if e != Errno::ENOTDIR {
        return resolve_err(e);
    }
    match stat_at(at, name) {
        Ok(st) if kind_of(&st) == Some(EntryKind::File) => StorageError::NotADirectory,
        _ => StorageError::NotFound,
    }
}

/// Opens `rel` beneath `root` as a path only (`O_PATH`), following no link anywhere (a link at
/// `rel` itself is opened as the link): for a door that resolves names inside a tree it holds.
pub fn open_path_beneath(root: BorrowedFd<'_>, rel: &str) -> std::io::Result<OwnedFd> {
    if rel.is_empty() {
        return root.try_clone_to_owned();
    }
    open(root, rel, OFlag::O_PATH).map_err(|e| match e {
        StorageError::Io(e) => e,
        StorageError::NotADirectory => std::io::Error::from(Errno::ENOTDIR),
        StorageError::IsADirectory => std::io::Error::from(Errno::EISDIR),
        StorageError::AlreadyExists => std::io::Error::from(Errno::EEXIST),
        StorageError::NotEmpty => std::io::Error::from(Errno::ENOTEMPTY),
        StorageError::NotFound => std::io::Error::from(Errno::ENOENT),
    })
}

/// Opens the directory `rel` beneath `root` for listing.
pub(crate) fn open_dir(root: BorrowedFd<'_>, rel: &str) -> Result<OwnedFd, StorageError> {
    open_dir_with(root, rel, OFlag::O_RDONLY)
}

/// Opens the directory `rel` beneath `root` as a path only (`O_PATH`): enough for `*at` calls
/// and `fstat`, and, unlike a real open, invisible to inotify — the daemon watches its own
/// trees, and an open per stat would wake the watcher on every lookup.
pub(crate) fn open_dir_path(root: BorrowedFd<'_>, rel: &str) -> Result<OwnedFd, StorageError> {
    open_dir_with(root, rel, OFlag::O_PATH)
}

fn open_dir_with(root: BorrowedFd<'_>, rel: &str, mode: OFlag) -> Result<OwnedFd, StorageError> {
    match open(root, rel, mode | OFlag::O_DIRECTORY) {
        Err(StorageError::NotADirectory) => {
            // Is the last component a file, or a link? Only on this error path.
            let (dir, name) = split(rel);
            match open(root, dir, OFlag::O_PATH | OFlag::O_DIRECTORY) {
                Ok(parent) => Err(not_a_dir(parent.as_fd(), name, Errno::ENOTDIR)),
                Err(e) => Err(e),
            }
        }
        r => r,
    }
}

/// `fstatat` without following a link at `name` (`""` is the directory itself).
pub(crate) fn stat_at(dir: BorrowedFd<'_>, name: &str) -> Result<FileStat, StorageError> {
    if name.is_empty() {
        return nix::sys::stat::fstat(dir).map_err(|e| StorageError::from(std::io::Error::from(e)));
    }
    nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| StorageError::from(std::io::Error::from(e)))
}

/// What kind of entry a stat describes, if it is one the VFS serves.
pub(crate) fn kind_of(st: &FileStat) -> Option<EntryKind> {
    match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFDIR => Some(EntryKind::Dir),
        SFlag::S_IFREG => Some(EntryKind::File),
        _ => None,
    }
}

/// The entries of an open directory: names with their kinds, links and special files left
/// out (`None` kind), `.` and `..` skipped.
pub(crate) fn entries(dir: OwnedFd) -> Result<Vec<(String, Option<EntryKind>)>, StorageError> {
    let io = |e: Errno| StorageError::from(std::io::Error::from(e));
    let probe = dir.try_clone().map_err(StorageError::from)?;
    let mut d = nix::dir::Dir::from_fd(dir).map_err(io)?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e.map_err(io)?;
        let raw: &CStr = e.file_name();
        let Ok(name) = raw.to_str() else { continue };
        if name == "." || name == ".." {
            continue;
        }
        use nix::dir::Type;
        let kind = match e.file_type() {
            Some(Type::Directory) => Some(EntryKind::Dir),
            Some(Type::File) => Some(EntryKind::File),
            Some(_) => None,
            // DT_UNKNOWN (some filesystems): ask.
            None => stat_at(probe.as_fd(), name).ok().as_ref().and_then(kind_of),
        };
        out.push((name.to_owned(), kind));
    }
    Ok(out)
}

/// The owner new entries in `dir` should have, when it is not this process: entries made in
/// a directory that belongs to another account (a workspace the exec sandbox's account owns)
/// go to that account, so the sandbox can change what the daemon wrote.
pub(crate) fn inherited_owner(dir: &FileStat) -> Option<(Uid, Gid)> {
    let me = nix::unistd::geteuid();
    (dir.st_uid != me.as_raw()).then(|| (Uid::from_raw(dir.st_uid), Gid::from_raw(dir.st_gid)))
}

/// Fsyncs a directory (after entries in it changed); `dir` may be an `O_PATH` descriptor,
/// which cannot be synced itself: the directory is opened through it.
pub(crate) fn sync(dir: BorrowedFd<'_>) -> Result<(), StorageError> {
    let io = |e: Errno| StorageError::from(std::io::Error::from(e));
    let real = nix::fcntl::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io)?;
    nix::unistd::fsync(&real).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_parent_and_name() {
        assert_eq!(split("a/b/c"), ("a/b", "c"));
        assert_eq!(split("c"), ("", "c"));
    }

    #[test]
    fn the_fallback_walk_refuses_symlinked_directories() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("real")).unwrap();
        std::fs::write(d.path().join("real/f"), b"x").unwrap();
        std::os::unix::fs::symlink("real", d.path().join("link")).unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("out")).unwrap();
        let root = nix::fcntl::open(
            d.path(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        let r = root.as_fd();
        assert!(open_walk(r, "real/f", OFlag::O_RDONLY).is_ok());
        assert!(matches!(
            open_walk(r, "link/f", OFlag::O_RDONLY),
            Err(StorageError::NotFound)
        ));
        assert!(matches!(
            open_walk(r, "out/passwd", OFlag::O_RDONLY),
            Err(StorageError::NotFound)
        ));
        assert!(matches!(
            open_walk(r, "real/../real/f", OFlag::O_RDONLY),
            Err(StorageError::NotFound)
        ));
        assert!(matches!(
            open(r, "link/f", OFlag::O_RDONLY),
            Err(StorageError::NotFound)
        ));
        assert!(matches!(
            open(r, "out/passwd", OFlag::O_RDONLY),
            Err(StorageError::NotFound)
        ));
        assert!(matches!(
            open(r, "link", OFlag::O_RDONLY),
            Err(StorageError::NotFound)
        ));
    }
}
