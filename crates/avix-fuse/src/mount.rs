//! Mounting and unmounting, and the state of a mount point before we use it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use avix_vfs::Vfs;
use fuser::{BackgroundSession, Config, INodeNo, MountOption, SessionACL};

use crate::Identities;
use crate::fs::{AvixFs, Invalidation};

/// What is at a mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountPointState {
    /// Nothing there.
    Missing,
    /// Something that is not a directory.
    NotADirectory,
    /// A FUSE mount whose daemon is gone (`Transport endpoint is not connected`).
    Stale,
    /// A live mount.
    Busy {
        /// Its filesystem type.
        fstype: String,
        /// Its source.
        source: String,
    },
    /// An empty directory we can mount on.
    Free,
}

/// Why mounting failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount point does not exist.
    #[error(
        "mount point {0} does not exist: create it with `mkdir -p {0}`, or start with --no-mount"
    )]
    Missing(String),
    /// Not a directory.
    #[error("mount point {0} is not a directory: pass a directory to --mount")]
    NotADirectory(String),
    /// Something is mounted there.
    #[error(
        "mount point {path} is busy: {fstype} from {origin} is mounted there (another daemon?); unmount it with `fusermount3 -u {path}` or choose another --mount"
    )]
    Busy {
        /// The mount point.
        path: String,
        /// What is mounted.
        fstype: String,
        /// From where.
        origin: String,
    },
    /// A stale mount could not be cleaned.
    #[error(
        "mount point {path} holds a stale mount that could not be removed ({source}); run `fusermount3 -uz {path}` as root"
    )]
    Stale {
        /// The mount point.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused the mount.
    #[error("cannot mount the VFS at {path}: {source} (the daemon needs root and /dev/fuse)")]
    Mount {
        /// The mount point.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Decodes the octal escapes of /proc/self/mountinfo (`\040` for a space).
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The (fstype, source) of the mount whose mount point is exactly `path`, if any.
fn mounted_at(path: &Path) -> Option<(String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.to_string_lossy();
    info.lines().rev().find_map(|line| {
        let mut fields = line.split(' ');
        let mount_point = unescape(fields.nth(4)?);
        if mount_point != want {
            return None;
        }
        let mut rest = line.split(" - ").nth(1)?.split(' ');
        Some((rest.next()?.to_owned(), unescape(rest.next()?)))
    })
}

/// Looks at a mount point before mounting.
pub fn probe_mount_point(path: &Path) -> MountPointState {
    match std::fs::metadata(path) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => MountPointState::Stale,
        Err(_) => {
            // A stale mount can also show as an unreadable entry; mountinfo tells.
            if mounted_at(path).is_some_and(|(t, _)| t.starts_with("fuse")) {
                MountPointState::Stale
            } else {
                MountPointState::Missing
            }
        }
        Ok(m) if !m.is_dir() => MountPointState::NotADirectory,
        Ok(_) => {
            let canon = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
            match mounted_at(&canon) {
                Some((fstype, source)) => MountPointState::Busy { fstype, source },
                None => MountPointState::Free,
            }
        }
    }
}

/// Lazily detaches whatever is mounted at `path` (`umount -l`).
pub fn detach(path: &Path) -> std::io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated path.
    let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A live mount. Dropping it unmounts.
#[derive(Debug)]
pub struct Mounted {
    session: Option<BackgroundSession>,
    mount_point: PathBuf,
    live: Arc<AtomicBool>,
    notifier: Option<JoinHandle<()>>,
    passthrough: Arc<AtomicBool>,
}

/// Mounts `vfs` at `mount_point`, cleaning a stale mount left by a crash first.
/// `threads` FUSE worker threads serve requests (2 keeps a request on an idle vCPU from
/// waiting for a wake-up of the other one).
pub fn mount(
    vfs: Arc<Vfs>,
    identities: Arc<dyn Identities>,
    mount_point: &Path,
    threads: usize,
) -> Result<Mounted, MountError> {
    let shown = mount_point.display().to_string();
    match probe_mount_point(mount_point) {
        MountPointState::Free => {}
        MountPointState::Missing => return Err(MountError::Missing(shown)),
        MountPointState::NotADirectory => return Err(MountError::NotADirectory(shown)),
        MountPointState::Busy { fstype, source } => {
            return Err(MountError::Busy {
                path: shown,
                fstype,
                origin: source,
            });
        }
        MountPointState::Stale => {
            tracing::warn!(mount_point = %shown, "removing a stale mount left by a crashed daemon");
            detach(mount_point).map_err(|source| MountError::Stale {
                path: shown.clone(),
                source,
            })?;
            if probe_mount_point(mount_point) != MountPointState::Free {
                return Err(MountError::Stale {
                    path: shown,
                    source: std::io::Error::other("still mounted after detach"),
                });
            }
        }
    }
    let (tx, rx) = std::sync::mpsc::channel::<Invalidation>();
    let live = Arc::new(AtomicBool::new(true));
    let fs = AvixFs::new(vfs, identities, tx, live.clone());
    let passthrough = fs.passthrough();
    let mut cfg = Config::default();
    cfg.mount_options = vec![
        MountOption::FSName("avix".into()),
        MountOption::Subtype("avix".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
    ];
    // Every uid reaches the daemon, which maps it to an Avix user or refuses it (EACCES).
    cfg.acl = SessionACL::All;
    cfg.n_threads = Some(threads.max(1));
    cfg.clone_fd = threads > 1;
    let session =
        fuser::spawn_mount(fs, mount_point, &cfg).map_err(|source| MountError::Mount {
            path: shown.clone(),
            source,
        })?;
    let notifier = session.notifier();
    let flag = live.clone();
    let handle = std::thread::Builder::new()
        .name("avix-fuse-inval".into())
        .spawn(move || {
            for inv in rx {
                if !flag.load(Ordering::Relaxed) {
                    break;
                }
                // ENOENT just means the kernel had nothing cached.
                let _ = match inv {
                    Invalidation::Inode(ino) => notifier.inval_inode(INodeNo(ino), 0, 0),
                    Invalidation::Entry(parent, name) => {
                        notifier.inval_entry(INodeNo(parent), name.as_ref())
                    }
                };
            }
        })
        .map_err(|source| MountError::Mount {
            path: shown.clone(),
            source,
        })?;
    Ok(Mounted {
        session: Some(session),
        mount_point: mount_point.to_path_buf(),
        live,
        notifier: Some(handle),
        passthrough,
    })
}

impl Mounted {
    /// Where it is mounted.
    pub fn mount_point(&self) -> &Path {
        &self.mount_point
    }

    /// Set while data trees are served with FUSE passthrough (see [`crate::posix`]).
    pub fn passthrough(&self) -> Arc<AtomicBool> {
        self.passthrough.clone()
    }

    /// Unmounts. If a process still has a file or its working directory inside, the mount is
    /// detached lazily (it disappears from the namespace now and ends when they let go).
    pub fn unmount(mut self) -> std::io::Result<()> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> std::io::Result<()> {
        self.live.store(false, Ordering::Relaxed);
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let result = if session.guard.is_finished() {
            // Someone ran `fusermount3 -u`; the session already ended.
            session.join()
        } else {
            match session.umount_and_join() {
                Ok(()) => Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    tracing::warn!(mount_point = %self.mount_point.display(), "mount busy; detaching lazily");
                    detach(&self.mount_point)
                }
                Err(e) => Err(e),
            }
        };
        // The invalidation thread ends once the listener's sender is gone or the flag is off.
        drop(self.notifier.take());
        result
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_inner() {
            tracing::warn!(error = %e, "unmount failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_fields() {
        assert_eq!(unescape(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape(r"/x\134y"), r"/x\y");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn probes_plain_directories() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(probe_mount_point(d.path()), MountPointState::Free);
        assert_eq!(
            probe_mount_point(&d.path().join("nope")),
            MountPointState::Missing
        );
        let f = d.path().join("f");
        std::fs::write(&f, "").unwrap();
        assert_eq!(probe_mount_point(&f), MountPointState::NotADirectory);
        assert!(matches!(
            probe_mount_point(Path::new("/proc")),
            MountPointState::Busy { .. }
        ));
    }
}
