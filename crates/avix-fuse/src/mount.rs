//! Mounting and unmounting, and the state of a mount point before we use it.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
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
    #[error(
        "cannot mount the VFS at {path}: {source} (as root, /dev/fuse must exist; as another user, fusermount3 must be installed and /dev/fuse readable and writable by everyone: chmod 0666 /dev/fuse); or start with --no-mount"
    )]
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

/// Lazily detaches whatever is mounted at `path` (`umount -l`; `fusermount3 -uz` for a
/// daemon that is not root).
pub fn detach(path: &Path) -> std::io::Result<()> {
    if !privileged() {
        return fusermount_unmount(path, true);
    }
    let c = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated path.
    let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether this process mounts itself (root), or through the setuid `fusermount3`.
fn privileged() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The setuid helper's name (`FUSERMOUNT_PATH` overrides it, as for libfuse).
fn fusermount_bin() -> std::ffi::OsString {
    std::env::var_os("FUSERMOUNT_PATH").unwrap_or_else(|| "fusermount3".into())
}

/// Unmounts through `fusermount3 -u` (`-z`: lazily).
pub(crate) fn fusermount_unmount(path: &Path, lazy: bool) -> std::io::Result<()> {
    let out = std::process::Command::new(fusermount_bin())
        .arg(if lazy { "-uz" } else { "-u" })
        .arg("--")
        .arg(path)
        .stdin(std::process::Stdio::null())
        .output()?;
    if out.status.success() {
        return Ok(());
    }
    let msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if msg.contains("busy") {
        return Err(std::io::Error::from_raw_os_error(libc::EBUSY));
    }
    Err(std::io::Error::other(msg))
}

/// Mounts through the setuid `fusermount3`, as libfuse does for unprivileged users: the helper
/// opens /dev/fuse, mounts, and hands the descriptor back over a socket (`_FUSE_COMMFD`).
fn fusermount_mount(path: &Path, options: &str) -> std::io::Result<OwnedFd> {
    use std::os::unix::net::UnixStream;
    use std::os::unix::process::CommandExt;
    let (ours, theirs) = UnixStream::pair()?;
    let child_fd = theirs.as_raw_fd();
    let mut cmd = std::process::Command::new(fusermount_bin());
    cmd.arg("-o")
        .arg(options)
        .arg("--")
        .arg(path)
        .env("_FUSE_COMMFD", child_fd.to_string())
        .stdin(std::process::Stdio::null());
    // SAFETY: only async-signal-safe fcntl between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // The helper inherits its end of the socket.
            let flags = libc::fcntl(child_fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(child_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.stderr(std::process::Stdio::piped()).spawn()?;
    drop(theirs);
    let received = receive_fd(&ours);
    let out = child.wait_with_output()?;
    match received {
        Ok(fd) => Ok(fd),
        Err(e) => {
            let msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            Err(std::io::Error::new(
                e.kind(),
                if msg.is_empty() { e.to_string() } else { msg },
            ))
        }
    }
}

/// Receives one descriptor (SCM_RIGHTS) from `sock`.
fn receive_fd(sock: &std::os::unix::net::UnixStream) -> std::io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // Room for one descriptor's control message, 8-aligned.
    let mut cbuf = [0u64; 8];
    // SAFETY: a zeroed msghdr is valid; the buffers outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    let n = loop {
        // SAFETY: valid socket and msghdr.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        break n;
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel filled `msg`; CMSG_* walk the buffer it describes.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "fusermount3 did not mount (no descriptor received)",
            ));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>());
        Ok(OwnedFd::from_raw_fd(fd))
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
    /// Mounted through fusermount3 (the session cannot unmount itself).
    helper: bool,
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
    // `AVIX_FUSE_PASSTHROUGH=0` forces served I/O (for comparisons).
    let io = match std::env::var("AVIX_FUSE_PASSTHROUGH").as_deref() {
        Ok("0") => DataIo::Served,
        _ => DataIo::Auto,
    };
    mount_with(vfs, identities, mount_point, threads, io)
}

/// How the mount does the I/O of data-tree files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataIo {
    /// FUSE passthrough where the kernel and the daemon's privileges allow, else served.
    Auto,
    /// Always served by the daemon (`pread`/`pwrite` on the host file).
    Served,
}

/// [`mount`], choosing how data-tree I/O is done.
pub fn mount_with(
    vfs: Arc<Vfs>,
    identities: Arc<dyn Identities>,
    mount_point: &Path,
    threads: usize,
    io: DataIo,
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
    let mut fs = AvixFs::new(vfs, identities, tx, live.clone());
    fs.want_passthrough = io == DataIo::Auto;
    let passthrough = fs.passthrough();
    let mut cfg = Config::default();
    cfg.mount_options = vec![
        MountOption::FSName("avix".into()),
        MountOption::Subtype("avix".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
    ];
    cfg.n_threads = Some(threads.max(1));
    cfg.clone_fd = threads > 1;
    let privileged = privileged();
    let session = if privileged {
        // Every uid reaches the daemon, which maps it to an Avix user or refuses it (EACCES).
        cfg.acl = SessionACL::All;
        fuser::spawn_mount(fs, mount_point, &cfg)
    } else {
        // Not root: mounted through fusermount3, for the daemon's own uid only (others would
        // need `user_allow_other` in /etc/fuse.conf; the daemon's uid maps to its user).
        cfg.acl = SessionACL::Owner;
        fusermount_mount(mount_point, "nosuid,nodev,noatime,fsname=avix,subtype=avix")
            .and_then(|fd| fuser::Session::from_fd(fs, fd, SessionACL::Owner, cfg))
            .and_then(fuser::Session::spawn)
    }
    .map_err(|source| MountError::Mount {
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
        helper: !privileged,
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
        } else if self.helper {
            let r = match fusermount_unmount(&self.mount_point, false) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    tracing::warn!(mount_point = %self.mount_point.display(), "mount busy; detaching lazily");
                    fusermount_unmount(&self.mount_point, true)
                }
                r => r,
            };
            // The session ends once the kernel closes the connection.
            r.and_then(|()| session.join())
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
