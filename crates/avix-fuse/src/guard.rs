//! The mount guard: a tiny child process that unmounts the VFS if the daemon dies without
//! doing so (SIGKILL, a crash), so the mount never outlives the daemon.
//!
//! The daemon forks the guard before it starts any thread, keeping the write end of a pipe.
//! The guard blocks reading the other end:
//! - one byte (`D`) means the daemon shut down cleanly and unmounted itself: exit;
//! - end-of-file without it means the daemon is gone: if the mount point now answers
//!   `ENOTCONN` (a FUSE mount whose server died), detach it lazily. A live mount there (a new
//!   daemon, quickly restarted) is left alone.
//!
//! This does the job of fusermount3's `auto_unmount` without a setuid helper, and costs a
//! fork instead of an exec.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The daemon's end of the guard's pipe.
#[derive(Debug)]
pub struct MountGuard {
    pipe: Option<OwnedFd>,
    pid: libc::pid_t,
}

impl MountGuard {
    /// Forks the guard for `mount_point`.
    ///
    /// # Safety
    /// Must be called while the process has a single thread (before the async runtime, the
    /// FUSE session or any other thread starts): the child continues with a copy of this one
    /// thread only.
    pub unsafe fn fork(mount_point: &Path) -> std::io::Result<Self> {
        let path =
            CString::new(mount_point.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nothing else.
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: the caller guarantees a single-threaded process, so the child may run
        // ordinary code.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if pid == 0 {
            drop(write_end);
            guard_main(read_end.as_raw_fd(), &path);
        }
        drop(read_end);
        Ok(Self {
            pipe: Some(write_end),
            pid,
        })
    }

    /// The guard's OS pid.
    pub fn pid(&self) -> u32 {
        u32::try_from(self.pid).unwrap_or(0)
    }

    /// Tells the guard the daemon unmounted cleanly, and reaps it.
    pub fn disarm(mut self) {
        if let Some(fd) = self.pipe.take() {
            // SAFETY: writing one byte from a valid buffer to a descriptor we own.
            unsafe { libc::write(fd.as_raw_fd(), b"D".as_ptr().cast(), 1) };
            drop(fd);
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
    }
}

/// The guard process. Never returns.
fn guard_main(fd: i32, mount_point: &CString) -> ! {
    // SAFETY: plain syscalls in a single-threaded child; nothing here touches shared state.
    unsafe {
        // Ctrl-C in the daemon's terminal reaches the whole process group; the guard must
        // outlive the daemon's reaction to it.
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGPIPE,
            libc::SIGQUIT,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
        libc::prctl(libc::PR_SET_NAME, c"avix-mnt-guard".as_ptr(), 0, 0, 0);
        // Keep no other descriptor of the daemon open (a listening socket, a lock, stdio).
        for other in 0..1024 {
            if other != fd {
                libc::close(other);
            }
        }
        let mut byte = 0u8;
        let n = loop {
            let n = libc::read(fd, (&mut byte as *mut u8).cast(), 1);
            if n < 0 && *libc::__errno_location() == libc::EINTR {
                continue;
            }
            break n;
        };
        if n != 1 || byte != b'D' {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::stat(mount_point.as_ptr(), &mut st) != 0
                && *libc::__errno_location() == libc::ENOTCONN
            {
                libc::umount2(mount_point.as_ptr(), libc::MNT_DETACH);
            }
        }
        libc::_exit(0);
    }
}
