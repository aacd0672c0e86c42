//! The local-disk driver. Every change is atomic and durable: content is written to a temp file
//! in the same directory (`.avix-tmp-…`, hidden from listings), fsynced, renamed over the
//! target, and the directory is fsynced. A crash leaves the old file or the new one, never a
//! torn one; left-over temp files are swept by [`LocalStorage::sweep_temp_files`].
//!
//! Symbolic links are never followed at the last component and never listed: the VFS has no
//! links, and a link planted on the host must not leak files from outside the root.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{DirEntry, EntryKind, Meta, SpaceStats, Storage, StorageError, TxnStart, WriteTxn};
use crate::access::TEMP_PREFIX;

/// A tree on the local disk.
#[derive(Debug)]
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    /// A driver rooted at `root`, which must exist.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        let meta = fs::metadata(&root)?;
        if !meta.is_dir() {
            return Err(StorageError::NotADirectory);
        }
        Ok(Self { root })
    }

    /// The host directory this driver serves.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn abs(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    /// Removes temp files left by a crash anywhere under the root, if they were last modified
    /// before `cutoff` (so a write in progress keeps its own). Returns how many it removed.
    pub fn sweep_temp_files(&self, cutoff: std::time::SystemTime) -> usize {
        fn walk(dir: &Path, cutoff: std::time::SystemTime, n: &mut usize) {
            let Ok(rd) = fs::read_dir(dir) else { return };
            for e in rd.flatten() {
                let Ok(ft) = e.file_type() else { continue };
                if ft.is_dir() {
                    walk(&e.path(), cutoff, n);
                    continue;
                }
                let stale = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < cutoff);
                if ft.is_file()
                    && stale
                    && e.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
                    && fs::remove_file(e.path()).is_ok()
                {
                    *n += 1;
                }
            }
        }
        let mut n = 0;
        walk(&self.root, cutoff, &mut n);
        n
    }
}

fn open_nofollow(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Reads up to `len` bytes at `offset` (fewer only at end of file).
fn read_upto(f: &File, offset: u64, len: usize) -> std::io::Result<Bytes> {
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

fn meta_of(m: &fs::Metadata) -> Result<Meta, StorageError> {
    let kind = if m.is_dir() {
        EntryKind::Dir
    } else if m.is_file() {
        EntryKind::File
    } else {
        // Links, sockets, devices: not part of the VFS.
        return Err(StorageError::NotFound);
    };
    Ok(Meta {
        kind,
        size: if kind == EntryKind::File { m.len() } else { 0 },
        mtime: m.modified().unwrap_or(std::time::UNIX_EPOCH),
    })
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

fn parent_of(p: &Path) -> &Path {
    p.parent().unwrap_or(p)
}

fn temp_name() -> String {
    format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>())
}

impl Storage for LocalStorage {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn stat(&self, rel: &str) -> Result<Meta, StorageError> {
        meta_of(&fs::symlink_metadata(self.abs(rel))?)
    }

    fn read(&self, rel: &str) -> Result<Bytes, StorageError> {
        let mut f = open_nofollow(&self.abs(rel))?;
        let m = f.metadata()?;
        if m.is_dir() {
            return Err(StorageError::IsADirectory);
        }
        let mut buf = Vec::with_capacity(usize::try_from(m.len()).unwrap_or(0));
        f.read_to_end(&mut buf)?;
        Ok(Bytes::from(buf))
    }

    fn read_at(&self, rel: &str, offset: u64, len: usize) -> Result<Bytes, StorageError> {
        let f = open_nofollow(&self.abs(rel))?;
        if f.metadata()?.is_dir() {
            return Err(StorageError::IsADirectory);
        }
        Ok(read_upto(&f, offset, len)?)
    }

    fn list(&self, rel: &str) -> Result<Vec<DirEntry>, StorageError> {
        let dir = self.abs(rel);
        let rd = fs::read_dir(&dir).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOTDIR) {
                StorageError::NotADirectory
            } else {
                e.into()
            }
        })?;
        let mut out = Vec::new();
        for e in rd {
            let e = e?;
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if name.starts_with(TEMP_PREFIX) {
                continue;
            }
            let ft = e.file_type()?;
            let kind = if ft.is_dir() {
                EntryKind::Dir
            } else if ft.is_file() {
                EntryKind::File
            } else {
                continue;
            };
            out.push(DirEntry { name, kind });
        }
        Ok(out)
    }

    fn begin_write(&self, rel: &str, start: TxnStart) -> Result<Box<dyn WriteTxn>, StorageError> {
        let target = self.abs(rel);
        // A replaced file keeps its permission bits (auth.conf stays 0600).
        let mode = match fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => return Err(StorageError::IsADirectory),
            Ok(m) => m.permissions().mode() & 0o777,
            Err(_) => 0o644,
        };
        let dir = parent_of(&target).to_path_buf();
        let tmp = dir.join(temp_name());
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed `mode`; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        let mut txn = LocalTxn {
            file: None,
            tmp,
            target,
            dir,
            len: 0,
        };
        if start == TxnStart::Existing {
            match open_nofollow(&txn.target) {
                Ok(mut src) => {
                    txn.len = std::io::copy(&mut src, &mut file)?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        txn.file = Some(file);
        Ok(Box::new(txn))
    }

    fn mkdir(&self, rel: &str) -> Result<(), StorageError> {
        let p = self.abs(rel);
        fs::create_dir(&p)?;
        sync_dir(parent_of(&p))
    }

    fn remove_file(&self, rel: &str) -> Result<(), StorageError> {
        let p = self.abs(rel);
        if fs::symlink_metadata(&p)?.is_dir() {
            return Err(StorageError::IsADirectory);
        }
        fs::remove_file(&p)?;
        sync_dir(parent_of(&p))
    }

    fn remove_dir(&self, rel: &str) -> Result<(), StorageError> {
        let p = self.abs(rel);
        if !fs::symlink_metadata(&p)?.is_dir() {
            return Err(StorageError::NotADirectory);
        }
        // Temp files are invisible, so a directory that looks empty may hold one left by a
        // crash; it must not block rmdir.
        for e in fs::read_dir(&p)?.flatten() {
            if e.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                let _ = fs::remove_file(e.path());
            }
        }
        fs::remove_dir(&p)?;
        sync_dir(parent_of(&p))
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), StorageError> {
        let (a, b) = (self.abs(from), self.abs(to));
        fs::symlink_metadata(&a)?;
        fs::rename(&a, &b)?;
        sync_dir(parent_of(&b))?;
        if parent_of(&a) != parent_of(&b) {
            sync_dir(parent_of(&a))?;
        }
        Ok(())
    }

    fn space(&self) -> Result<SpaceStats, StorageError> {
        let c = std::ffi::CString::new(self.root.as_os_str().as_encoded_bytes())
            .map_err(|_| StorageError::NotFound)?;
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a valid NUL-terminated path and `s` a properly sized out-parameter.
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(SpaceStats {
            blocks: s.f_blocks,
            blocks_free: s.f_bfree,
            blocks_avail: s.f_bavail,
            files: s.f_files,
            files_free: s.f_ffree,
            block_size: u32::try_from(s.f_bsize).unwrap_or(4096),
        })
    }
}

/// A pending write: a temp file next to the target.
#[derive(Debug)]
struct LocalTxn {
    /// `None` only after commit.
    file: Option<File>,
    tmp: PathBuf,
    target: PathBuf,
    dir: PathBuf,
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
        let mut file = self.file.take().ok_or(StorageError::NotFound)?;
        file.flush()?;
        file.sync_all()?;
        let meta = meta_of(&file.metadata()?)?;
        drop(file);
        fs::rename(&self.tmp, &self.target)?;
        sync_dir(&self.dir)?;
        Ok(meta)
    }
}

impl Drop for LocalTxn {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
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
}
