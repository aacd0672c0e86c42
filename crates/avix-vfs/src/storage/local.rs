//! The local-disk driver. Every change is atomic and durable: content is written to a temp file
//! in the same directory (`.avix-tmp-…`, hidden from listings), fsynced, renamed over the
//! target, and the directory is fsynced. A crash leaves the old file or the new one, never a
//! torn one; left-over temp files are swept by [`LocalStorage::sweep_temp_files`].
//!
//! Every path is resolved beneath the root with no symbolic link followed in any component
//! (`beneath`): the VFS has no links, and a link planted on the host or by a sandboxed program
//! must not take the daemon outside the tree. Links and special files are neither listed nor
//! opened. New entries in a directory owned by another account are given to that account
//! (`beneath::inherited_owner`), and a replaced file keeps its owner and mode.

mod beneath;

pub use beneath::open_path_beneath;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode};
use nix::unistd::{Gid, Uid, UnlinkatFlags};

use super::{DirEntry, EntryKind, Meta, SpaceStats, Storage, StorageError, TxnStart, WriteTxn};
use crate::access::TEMP_PREFIX;

/// A tree on the local disk.
#[derive(Debug)]
pub struct LocalStorage {
    root: PathBuf,
    /// The root directory, opened once: every path is resolved beneath this descriptor, so
    /// even a root path swapped for a link after start is not followed.
    root_fd: OwnedFd,
}

fn errno(e: nix::errno::Errno) -> StorageError {
    StorageError::from(std::io::Error::from(e))
}

impl LocalStorage {
    /// A driver rooted at `root`, which must be a directory (not a link to one).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        let root_fd = nix::fcntl::open(
            &root,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| match e {
            nix::errno::Errno::ENOTDIR | nix::errno::Errno::ELOOP => StorageError::NotADirectory,
            e => errno(e),
        })?;
        Ok(Self { root, root_fd })
    }

    /// The host directory this driver serves.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The parent directory of `rel` and the last name: the root's own descriptor for a name
    /// at the top (no open at all), else the directory opened (as a path) beneath the root.
    fn parent<'a>(&self, rel: &'a str) -> Result<(Dir<'_>, &'a str), StorageError> {
        let (dir, name) = beneath::split(rel);
        if dir.is_empty() {
            return Ok((Dir::Root(self.root_fd.as_fd()), name));
        }
        Ok((
            Dir::Opened(beneath::open_dir_path(self.root_fd.as_fd(), dir)?),
            name,
        ))
    }

    /// Opens the regular file `rel` for reading. `O_NONBLOCK` keeps a FIFO from hanging the
    /// open; anything but a regular file is refused after it.
    fn open_file(&self, rel: &str) -> Result<(File, FileStat), StorageError> {
        let fd = beneath::open(
            self.root_fd.as_fd(),
            rel,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK,
        )?;
        let st = nix::sys::stat::fstat(&fd).map_err(errno)?;
        match beneath::kind_of(&st) {
            Some(EntryKind::File) => Ok((File::from(fd), st)),
            Some(EntryKind::Dir) => Err(StorageError::IsADirectory),
            None => Err(StorageError::NotFound),
        }
    }

    /// Removes temp files left by a crash anywhere under the root, if they were last modified
    /// before `cutoff` (so a write in progress keeps its own). Returns how many it removed.
    /// The walk goes by descriptors and never follows a link.
    pub fn sweep_temp_files(&self, cutoff: std::time::SystemTime) -> usize {
        let cutoff = cutoff
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        fn walk(dir: OwnedFd, cutoff: i64, depth: usize, n: &mut usize) {
            let Ok(probe) = dir.try_clone() else { return };
            let Ok(list) = beneath::entries(dir) else {
                return;
            };
            for (name, kind) in list {
                match kind {
                    Some(EntryKind::Dir) if depth < 256 => {
                        if let Ok(sub) = beneath::open_dir(probe.as_fd(), &name) {
                            walk(sub, cutoff, depth + 1, n);
                        }
                    }
                    Some(EntryKind::File) if name.starts_with(TEMP_PREFIX) => {
                        let stale = beneath::stat_at(probe.as_fd(), &name)
                            .is_ok_and(|st| st.st_mtime < cutoff);
                        if stale
                            && nix::unistd::unlinkat(
                                probe.as_fd(),
                                name.as_str(),
                                UnlinkatFlags::NoRemoveDir,
                            )
                            .is_ok()
                        {
                            *n += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut n = 0;
        if let Ok(root) = beneath::open_dir(self.root_fd.as_fd(), "") {
            walk(root, cutoff, 0, &mut n);
        }
        n
    }
}

/// A directory to act in with `*at` calls.
#[derive(Debug)]
enum Dir<'a> {
    /// The tree's root.
    Root(std::os::fd::BorrowedFd<'a>),
    /// A directory below it, opened for this operation.
    Opened(OwnedFd),
}

impl Dir<'_> {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Dir::Root(fd) => *fd,
            Dir::Opened(fd) => fd.as_fd(),
        }
    }

    /// A descriptor of its own (a write transaction outlives the call).
    fn into_owned(self) -> Result<OwnedFd, StorageError> {
        match self {
            Dir::Root(fd) => Ok(fd.try_clone_to_owned()?),
            Dir::Opened(fd) => Ok(fd),
        }
    }
}

/// Reads up to `len` bytes at `offset` (fewer only at end of file).
pub(crate) fn read_upto(f: &File, offset: u64, len: usize) -> std::io::Result<Bytes> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match f.read_at(&mut buf[done..], offset + done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    buf.truncate(done);
    Ok(Bytes::from(buf))
}

fn meta_of(st: &FileStat) -> Result<Meta, StorageError> {
    // Links, sockets, devices: not part of the VFS.
    let kind = beneath::kind_of(st).ok_or(StorageError::NotFound)?;
    let mtime = std::time::UNIX_EPOCH
        + std::time::Duration::new(
            u64::try_from(st.st_mtime).unwrap_or(0),
            u32::try_from(st.st_mtime_nsec).unwrap_or(0),
        );
    Ok(Meta {
        kind,
        size: if kind == EntryKind::File {
            u64::try_from(st.st_size).unwrap_or(0)
        } else {
            0
        },
        mtime,
    })
}

fn temp_name() -> String {
    format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>())
}

/// Gives a new entry the owner its directory passes on (see [`beneath::inherited_owner`]).
fn hand_over(fd: impl AsFd, owner: Option<(Uid, Gid)>) -> Result<(), StorageError> {
    if let Some((u, g)) = owner {
        nix::unistd::fchown(fd, Some(u), Some(g)).map_err(errno)?;
    }
    Ok(())
}

impl Storage for LocalStorage {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn stat(&self, rel: &str) -> Result<Meta, StorageError> {
        if rel.is_empty() {
            return meta_of(&beneath::stat_at(self.root_fd.as_fd(), "")?);
        }
        let (dir, name) = self.parent(rel)?;
        meta_of(&beneath::stat_at(dir.as_fd(), name)?)
    }

    fn read(&self, rel: &str) -> Result<Bytes, StorageError> {
        let (mut f, st) = self.open_file(rel)?;
        let mut buf = Vec::with_capacity(usize::try_from(st.st_size).unwrap_or(0));
        f.read_to_end(&mut buf)?;
        Ok(Bytes::from(buf))
    }

    fn read_at(&self, rel: &str, offset: u64, len: usize) -> Result<Bytes, StorageError> {
        let (f, _) = self.open_file(rel)?;
        Ok(read_upto(&f, offset, len)?)
    }

    fn list(&self, rel: &str) -> Result<Vec<DirEntry>, StorageError> {
        let dir = beneath::open_dir(self.root_fd.as_fd(), rel)?;
        Ok(beneath::entries(dir)?
            .into_iter()
            .filter(|(name, _)| !name.starts_with(TEMP_PREFIX))
            .filter_map(|(name, kind)| Some(DirEntry { name, kind: kind? }))
            .collect())
    }

    fn begin_write(&self, rel: &str, start: TxnStart) -> Result<Box<dyn WriteTxn>, StorageError> {
        let (dir, name) = self.parent(rel)?;
        // A replaced file keeps its permission bits (auth.conf stays 0600) and its owner.
        let (mode, owner) = match beneath::stat_at(dir.as_fd(), name) {
            Ok(st) => match beneath::kind_of(&st) {
                Some(EntryKind::Dir) => return Err(StorageError::IsADirectory),
                Some(EntryKind::File) => (
                    st.st_mode & 0o777,
                    (st.st_uid != nix::unistd::geteuid().as_raw())
                        .then(|| (Uid::from_raw(st.st_uid), Gid::from_raw(st.st_gid))),
                ),
                // A link or special file is replaced by a regular file, never written through.
                None => (0o644, None),
            },
            Err(StorageError::NotFound) => (
                0o644,
                beneath::inherited_owner(&beneath::stat_at(dir.as_fd(), "")?),
            ),
            Err(e) => return Err(e),
        };
        // The transaction holds the directory: the commit renames within the directory
        // resolved here, whatever happens to the path meanwhile.
        let dir = dir.into_owned()?;
        let tmp = temp_name();
        let fd = nix::fcntl::openat(
            dir.as_fd(),
            tmp.as_str(),
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
        .map_err(errno)?;
        let mut file = File::from(fd);
        let mut txn = LocalTxn {
            file: None,
            dir,
            tmp,
            name: name.to_owned(),
            len: 0,
        };
        // From here on, dropping `txn` removes the temp file.
        txn.file = Some(file.try_clone()?);
        // The umask may have narrowed `mode`; set it exactly (after the owner: chown clears
        // set-id bits, of which there are none here anyway).
        hand_over(&file, owner)?;
        nix::sys::stat::fchmod(&file, Mode::from_bits_truncate(mode)).map_err(errno)?;
        if start == TxnStart::Existing {
            match self.open_file(rel) {
                Ok((mut src, _)) => {
                    txn.len = std::io::copy(&mut src, &mut file)?;
                }
                Err(StorageError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Box::new(txn))
    }

    fn mkdir(&self, rel: &str) -> Result<(), StorageError> {
        let (dir, name) = self.parent(rel)?;
        nix::sys::stat::mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o755))
            .map_err(errno)?;
        if let Some((u, g)) = beneath::inherited_owner(&beneath::stat_at(dir.as_fd(), "")?) {
            // Never follows a link: one swapped in meanwhile is what gets the owner.
            nix::unistd::fchownat(
                dir.as_fd(),
                name,
                Some(u),
                Some(g),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(errno)?;
        }
        beneath::sync(dir.as_fd())
    }

    fn remove_file(&self, rel: &str) -> Result<(), StorageError> {
        let (dir, name) = self.parent(rel)?;
        if beneath::kind_of(&beneath::stat_at(dir.as_fd(), name)?) == Some(EntryKind::Dir) {
            return Err(StorageError::IsADirectory);
        }
        nix::unistd::unlinkat(dir.as_fd(), name, UnlinkatFlags::NoRemoveDir).map_err(errno)?;
        beneath::sync(dir.as_fd())
    }

    fn remove_dir(&self, rel: &str) -> Result<(), StorageError> {
        let (dir, name) = self.parent(rel)?;
        let sub = beneath::open_dir(self.root_fd.as_fd(), rel)?;
        // Temp files are invisible, so a directory that looks empty may hold one left by a
        // crash; it must not block rmdir.
        let probe = sub.try_clone()?;
        for (n, kind) in beneath::entries(sub)? {
            if kind == Some(EntryKind::File) && n.starts_with(TEMP_PREFIX) {
                let _ =
                    nix::unistd::unlinkat(probe.as_fd(), n.as_str(), UnlinkatFlags::NoRemoveDir);
            }
        }
        nix::unistd::unlinkat(dir.as_fd(), name, UnlinkatFlags::RemoveDir).map_err(errno)?;
        beneath::sync(dir.as_fd())
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), StorageError> {
        let (da, na) = self.parent(from)?;
        let (db, nb) = self.parent(to)?;
        beneath::stat_at(da.as_fd(), na)?;
        nix::fcntl::renameat(da.as_fd(), na, db.as_fd(), nb).map_err(errno)?;
        beneath::sync(db.as_fd())?;
        if beneath::split(from).0 != beneath::split(to).0 {
            beneath::sync(da.as_fd())?;
        }
        Ok(())
    }

    fn open_tree(&self, rel: &str) -> Result<Option<OwnedFd>, StorageError> {
        beneath::open_dir_path(self.root_fd.as_fd(), rel).map(Some)
    }

    fn space(&self) -> Result<SpaceStats, StorageError> {
        let s = nix::sys::statvfs::fstatvfs(&self.root_fd).map_err(errno)?;
        Ok(SpaceStats {
            blocks: s.blocks(),
            blocks_free: s.blocks_free(),
            blocks_avail: s.blocks_available(),
            files: s.files(),
            files_free: s.files_free(),
            block_size: u32::try_from(s.block_size()).unwrap_or(4096),
        })
    }
}

/// A pending write: a temp file next to the target, in a directory held open, so the commit
/// renames within the directory that was resolved at the start, whatever happens to the path.
#[derive(Debug)]
struct LocalTxn {
    /// `None` only after commit.
    file: Option<File>,
    dir: OwnedFd,
    tmp: String,
    name: String,
    len: u64,
}

impl LocalTxn {
    fn file(&mut self) -> Result<&mut File, StorageError> {
        self.file.as_mut().ok_or(StorageError::NotFound)
    }
}

impl WriteTxn for LocalTxn {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        if data.is_empty() {
            return Ok(());
        }
        self.file()?.write_all_at(data, offset)?;
        self.len = self.len.max(offset + data.len() as u64);
        Ok(())
    }

    fn read_at(&mut self, offset: u64, len: usize) -> Result<Bytes, StorageError> {
        let avail = self.len.saturating_sub(offset);
        let len = len.min(usize::try_from(avail).unwrap_or(usize::MAX));
        Ok(read_upto(self.file()?, offset, len)?)
    }

    fn set_len(&mut self, len: u64) -> Result<(), StorageError> {
        self.file()?.set_len(len)?;
        self.len = len;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn contents(&mut self) -> Result<Vec<u8>, StorageError> {
        let f = self.file()?;
        f.seek(SeekFrom::Start(0))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(buf)
    }

    fn commit(mut self: Box<Self>) -> Result<Meta, StorageError> {
        let mut file = self.file()?.try_clone()?;
        file.flush()?;
        file.sync_all()?;
        let meta = meta_of(&nix::sys::stat::fstat(&file).map_err(errno)?)?;
        drop(file);
        nix::fcntl::renameat(
            self.dir.as_fd(),
            self.tmp.as_str(),
            self.dir.as_fd(),
            self.name.as_str(),
        )
        .map_err(errno)?;
        // Renamed: nothing left for Drop to remove.
        self.file = None;
        beneath::sync(self.dir.as_fd())?;
        Ok(meta)
    }
}

impl Drop for LocalTxn {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = nix::unistd::unlinkat(
                self.dir.as_fd(),
                self.tmp.as_str(),
                UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    fn store() -> (tempfile::TempDir, LocalStorage) {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(d.path()).unwrap();
        (d, s)
    }

    #[test]
    fn write_read_list_rename_remove() {
        let (_d, s) = store();
        s.mkdir("a").unwrap();
        s.write("a/f.txt", b"hello").unwrap();
        assert_eq!(&s.read("a/f.txt").unwrap()[..], b"hello");
        assert_eq!(&s.read_at("a/f.txt", 1, 3).unwrap()[..], b"ell");
        assert_eq!(s.stat("a/f.txt").unwrap().size, 5);
        let names: Vec<_> = s.list("a").unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["f.txt"]);
        s.rename("a/f.txt", "g.txt").unwrap();
        assert!(matches!(s.stat("a/f.txt"), Err(StorageError::NotFound)));
        assert!(s.remove_dir("").is_err());
        s.remove_file("g.txt").unwrap();
        s.remove_dir("a").unwrap();
        assert!(s.list("").unwrap().is_empty());
    }

    #[test]
    fn abandoned_txn_leaves_old_content_and_no_temp_file() {
        let (d, s) = store();
        s.write("f", b"old").unwrap();
        {
            let mut t = s.begin_write("f", TxnStart::Existing).unwrap();
            t.write_at(3, b"-more").unwrap();
            assert_eq!(t.contents().unwrap(), b"old-more");
        }
        assert_eq!(&s.read("f").unwrap()[..], b"old");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn replacing_a_file_keeps_its_mode() {
        let (d, s) = store();
        s.write("secret.conf", b"a").unwrap();
        std::fs::set_permissions(
            d.path().join("secret.conf"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        s.write("secret.conf", b"b").unwrap();
        let mode = fs::metadata(d.path().join("secret.conf"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn temp_files_are_hidden_and_swept() {
        let (d, s) = store();
        std::fs::write(d.path().join(format!("{TEMP_PREFIX}x")), b"junk").unwrap();
        assert!(s.list("").unwrap().is_empty());
        assert_eq!(
            s.sweep_temp_files(std::time::SystemTime::UNIX_EPOCH),
            0,
            "too recent"
        );
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(1);
        assert_eq!(s.sweep_temp_files(later), 1);
    }

    #[test]
    fn symlinks_are_not_followed() {
        let (d, s) = store();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("link")).unwrap();
        assert!(s.read("link").is_err());
        assert!(s.list("").unwrap().is_empty());
        assert!(matches!(s.stat("link"), Err(StorageError::NotFound)));
    }

    /// A tree with a symlinked directory planted inside it (as `exec/shell` can: `ln -sfn /
    /// /workspace/r`), and a host directory outside it that must stay out of reach.
    fn planted() -> (tempfile::TempDir, LocalStorage, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("tree");
        let outside = d.path().join("outside");
        fs::create_dir_all(tree.join("ws")).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("shadow"), b"root:secret").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("ws/r")).unwrap();
        std::os::unix::fs::symlink("../..", tree.join("ws/up")).unwrap();
        let s = LocalStorage::new(&tree).unwrap();
        (d, s, outside)
    }

    #[test]
    fn no_operation_follows_a_symlinked_directory() {
        // Regression for issue 10 item 1 (directory symlinks escape the tree).
        let (_d, s, outside) = planted();
        for p in ["ws/r/shadow", "ws/up/outside/shadow"] {
            assert!(matches!(s.read(p), Err(StorageError::NotFound)), "{p}");
            assert!(
                matches!(s.read_at(p, 0, 4), Err(StorageError::NotFound)),
                "{p}"
            );
            assert!(matches!(s.stat(p), Err(StorageError::NotFound)), "{p}");
            assert!(s.write(p, b"pwned").is_err(), "{p}");
            assert!(s.begin_write(p, TxnStart::Existing).is_err(), "{p}");
            assert!(s.remove_file(p).is_err(), "{p}");
            assert!(s.rename(p, "ws/stolen").is_err(), "{p}");
        }
        assert!(matches!(s.list("ws/r"), Err(StorageError::NotFound)));
        assert!(s.list("ws/up").is_err());
        assert!(s.mkdir("ws/r/newdir").is_err());
        assert!(s.remove_dir("ws/r").is_err());
        assert!(s.write("ws/x", b"in").is_ok());
        assert!(
            s.rename("ws/x", "ws/r/x").is_err(),
            "a rename into the link"
        );
        assert!(s.stat("ws/r").is_err(), "the link itself is not an entry");
        // Nothing outside changed.
        assert_eq!(fs::read(outside.join("shadow")).unwrap(), b"root:secret");
        let names: Vec<_> = fs::read_dir(&outside)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_link_swapped_in_for_the_root_after_start_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("tree");
        fs::create_dir(&tree).unwrap();
        fs::write(tree.join("f"), b"mine").unwrap();
        let s = LocalStorage::new(&tree).unwrap();
        fs::rename(&tree, d.path().join("moved")).unwrap();
        std::os::unix::fs::symlink("/etc", &tree).unwrap();
        assert_eq!(&s.read("f").unwrap()[..], b"mine");
        assert!(s.read("passwd").is_err());
        assert!(matches!(
            LocalStorage::new(&tree),
            Err(StorageError::NotADirectory)
        ));
    }

    #[test]
    fn fifos_and_other_special_files_are_neither_listed_nor_opened() {
        let (d, s) = store();
        nix::unistd::mkfifo(&d.path().join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        assert!(s.list("").unwrap().is_empty());
        // Would block forever without O_NONBLOCK.
        assert!(matches!(s.read("fifo"), Err(StorageError::NotFound)));
        // Writing replaces the entry with a regular file; nothing is written through it.
        s.write("fifo", b"x").unwrap();
        assert_eq!(&s.read("fifo").unwrap()[..], b"x");
    }

    #[test]
    fn new_entries_take_the_owner_of_a_foreign_directory() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let (d, s) = store();
        s.mkdir("ws").unwrap();
        std::os::unix::fs::chown(d.path().join("ws"), Some(65534), Some(65534)).unwrap();
        s.write("ws/f", b"x").unwrap();
        s.mkdir("ws/sub").unwrap();
        s.write("top", b"x").unwrap();
        for p in ["ws/f", "ws/sub"] {
            let m = fs::metadata(d.path().join(p)).unwrap();
            assert_eq!((m.uid(), m.gid()), (65534, 65534), "{p}");
        }
        assert_eq!(fs::metadata(d.path().join("top")).unwrap().uid(), 0);
        // A replaced file keeps its owner, even in a directory of ours.
        std::os::unix::fs::chown(d.path().join("top"), Some(1234), Some(1234)).unwrap();
        s.write("top", b"y").unwrap();
        assert_eq!(fs::metadata(d.path().join("top")).unwrap().uid(), 1234);
    }
}
