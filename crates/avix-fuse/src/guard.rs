//! The mount guard: a tiny process that unmounts the VFS if the daemon dies without doing so
//! (SIGKILL, a crash), so the mount never outlives the daemon.
//!
//! The daemon starts the guard (its own binary, re-executed as `avix-mount-guard <mount
//! point>`, in a session of its own so Ctrl-C and `pkill -f "avix server"` do not reach it)
//! and keeps the write end of a pipe whose read end the guard holds as fd 3. The guard blocks
//! reading it:
//! - one byte (`D`) means the daemon shut down cleanly and unmounted itself: exit;
//! - end-of-file without it means the daemon is gone: if the mount point now answers
//!   `ENOTCONN` (a FUSE mount whose server died), detach it lazily. A live mount there (a new
//!   daemon, quickly restarted) is left alone.
//!
//! This does the job of fusermount3's `auto_unmount` without a setuid helper.

use std::ffi::{CString, OsStr, OsString};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The program name the guard runs under.
pub const GUARD_NAME: &str = "avix-mount-guard";
/// The descriptor the guard reads.
const GUARD_FD: i32 = 3;

/// The daemon's end of the guard.
#[derive(Debug)]
pub struct MountGuard {
    pipe: Option<std::fs::File>,
    child: Child,
}

impl MountGuard {
    /// Starts the guard for `mount_point`, re-executing the current binary.
    pub fn spawn(mount_point: &Path) -> std::io::Result<Self> {
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nothing else.
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let read_raw = read_end.as_raw_fd();
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg0(GUARD_NAME)
            .arg(mount_point)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec the closure only calls async-signal-safe functions
        // (setsid, dup2) on descriptors that exist.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                // dup2 clears close-on-exec on the copy, so fd 3 survives the exec.
                if libc::dup2(read_raw, GUARD_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(read_end);
        Ok(Self {
            pipe: Some(std::fs::File::from(write_end)),
            child,
        })
    }

    /// The guard's OS pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Tells the guard the daemon unmounted cleanly, and reaps it.
    pub fn disarm(mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(b"D");
        }
        let _ = self.child.wait();
    }
}

/// If this process was started as the guard, runs it and exits; otherwise returns. Call it
/// first thing in `main`.
pub fn run_if_guard() {
    let mut args = std::env::args_os();
    let is_guard = args
        .next()
        .is_some_and(|a0| Path::new(&a0).file_name() == Some(OsStr::new(GUARD_NAME)));
    if !is_guard {
        return;
    }
    let mount_point: OsString = args.next().unwrap_or_default();
    let Ok(path) = CString::new(mount_point.as_bytes()) else {
        std::process::exit(2)
    };
    guard_main(&path)
}

fn guard_main(mount_point: &CString) -> ! {
    // SAFETY: plain syscalls on our own descriptor and a valid path.
    unsafe {
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGPIPE,
            libc::SIGQUIT,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
        let mut byte = 0u8;
        let n = loop {
            let n = libc::read(GUARD_FD, (&raw mut byte).cast(), 1);
            if n < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            break n;
        };
        if n != 1 || byte != b'D' {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::stat(mount_point.as_ptr(), &mut st) != 0
                && *libc::__errno_location() == libc::ENOTCONN
                && libc::umount2(mount_point.as_ptr(), libc::MNT_DETACH) != 0
            {
                // Not root: the setuid helper may detach our own mount.
                let path = std::path::Path::new(OsStr::from_bytes(mount_point.as_bytes()));
                let _ = crate::mount::fusermount_unmount(path, true);
            }
        }
        libc::_exit(0)
    }
}
