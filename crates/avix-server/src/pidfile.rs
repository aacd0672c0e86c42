//! One daemon per root: `ROOT/run/avix.pid` holds the daemon's pid under an exclusive
//! `flock`. The lock, not the file's existence, decides: a pid file left by a killed daemon is
//! simply taken over.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum PidError {
    /// Another daemon holds it.
    #[error("another daemon (pid {pid}) is already running on {root}: stop it first (kill {pid})")]
    Running {
        /// Its pid, as written in the file.
        pid: String,
        /// The root.
        root: String,
    },
    /// I/O.
    #[error("cannot use the pid file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The held lock. Dropping it removes the file and releases the lock.
#[derive(Debug)]
pub struct PidLock {
    file: File,
    path: PathBuf,
}

impl PidLock {
    /// Takes the lock at `path` and writes our pid. `root` is only for the message.
    pub fn acquire(path: &Path, root: &Path) -> Result<Self, PidError> {
        let io = |source| PidError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map_err(io)?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim().to_owned();
            return Err(PidError::Running {
                pid: if pid.is_empty() { "?".into() } else { pid },
                root: root.display().to_string(),
            });
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }
}

/// The pid of the daemon holding the lock at `path`, if one does (the lock, not the file,
/// says so: a file left by a killed daemon names nobody).
pub fn holder(path: &Path) -> Option<u32> {
    let mut file = File::open(path).ok()?;
    // SAFETY: flock on a descriptor we own; a shared lock we get is released at once.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
        // SAFETY: as above.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
        return None;
    }
    let mut pid = String::new();
    file.read_to_string(&mut pid).ok()?;
    pid.trim().parse().ok()
}

impl Drop for PidLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        // SAFETY: unlocking our own descriptor (closing it would too).
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_and_stale_files_are_taken_over() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("avix.pid");
        std::fs::write(&p, "999999\n").unwrap();
        let lock = PidLock::acquire(&p, d.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap().trim(),
            std::process::id().to_string()
        );
        // flock locks are per open file description: a second open conflicts even in-process.
        let e = PidLock::acquire(&p, d.path()).unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert_eq!(holder(&p), Some(std::process::id()));
        drop(lock);
        assert!(!p.exists());
        std::fs::write(&p, "999999\n").unwrap();
        assert_eq!(holder(&p), None, "a stale file names nobody");
    }
}
