//! Edits made directly on the host disk under `ROOT/etc` and `ROOT/data` (by someone editing
//! files there, or by sandboxed code in a workspace) reach the VFS: its cache drops the stale
//! content, the mount's caches are invalidated, and configuration files are reloaded (an
//! invalid edit is logged and the old configuration stays).
//!
//! Plain inotify, watching only changes: creations, writes, deletions and renames. Opens are
//! not watched — the mount opens data-tree files on the host for every open made through it,
//! and waking a thread for each would cost every `open(2)` on the mount. Directories created
//! below a watched one are watched as they appear.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use avix_kernel::Kernel;
use avix_vfs::ChangeKind;
use avix_vfs::access::TEMP_PREFIX;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

/// Keeps the watcher thread running; dropping it stops the thread.
pub struct DiskWatcher {
    stop: Option<std::os::fd::OwnedFd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for DiskWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiskWatcher")
    }
}

impl Drop for DiskWatcher {
    fn drop(&mut self) {
        // Closing the write end wakes the thread's poll.
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn mask(recursive: bool) -> WatchMask {
    let m = WatchMask::CREATE
        | WatchMask::MODIFY
        | WatchMask::CLOSE_WRITE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO;
    if recursive {
        m | WatchMask::DELETE_SELF | WatchMask::ONLYDIR
    } else {
        m | WatchMask::ONLYDIR
    }
}

struct Watches {
    inotify: Inotify,
    dirs: HashMap<WatchDescriptor, (PathBuf, bool)>,
}

impl Watches {
    /// Watches `dir` (and, if `recursive`, every directory below it, not following links).
    fn add(&mut self, dir: &Path, recursive: bool) {
        match self.inotify.watches().add(dir, mask(recursive)) {
            Ok(wd) => {
                self.dirs.insert(wd, (dir.to_path_buf(), recursive));
            }
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "cannot watch a directory");
                return;
            }
        }
        if !recursive {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                self.add(&e.path(), true);
            }
        }
    }
}

/// Starts watching the root of `kernel`.
pub fn start(kernel: &Arc<Kernel>) -> std::io::Result<DiskWatcher> {
    let layout = kernel.layout();
    let mut w = Watches {
        inotify: Inotify::init()?,
        dirs: HashMap::new(),
    };
    w.add(&layout.etc(), false);
    for (_, dir) in layout
        .trees()
        .into_iter()
        .filter(|(p, _)| p.as_str() != "/etc/avix")
    {
        w.add(&dir, true);
    }
    let (stop_r, stop_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let weak = Arc::downgrade(kernel);
    let thread = std::thread::Builder::new()
        .name("avix-disk-watch".into())
        .spawn(move || run(w, &stop_r, &weak))?;
    Ok(DiskWatcher {
        stop: Some(stop_w),
        thread: Some(thread),
    })
}

fn run(mut w: Watches, stop: &std::os::fd::OwnedFd, kernel: &Weak<Kernel>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: w.inotify.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfd entries.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        let events = match w.inotify.read_events(&mut buf) {
            Ok(ev) => ev,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                tracing::warn!(error = %e, "disk watcher stopped");
                return;
            }
        };
        let Some(kernel) = kernel.upgrade() else {
            return;
        };
        let mut changes: Vec<(PathBuf, ChangeKind)> = Vec::new();
        let mut new_dirs = Vec::new();
        let mut gone = Vec::new();
        for ev in events {
            if ev.mask.contains(EventMask::Q_OVERFLOW) {
                tracing::warn!("disk watcher queue overflowed; some host edits may be seen late");
                continue;
            }
            if ev.mask.contains(EventMask::IGNORED) {
                gone.push(ev.wd.clone());
                continue;
            }
            let Some((dir, recursive)) = w.dirs.get(&ev.wd) else {
                continue;
            };
            let Some(name) = ev.name else { continue };
            if name.as_encoded_bytes().starts_with(TEMP_PREFIX.as_bytes()) {
                continue;
            }
            let path = dir.join(name);
            let kind = if ev.mask.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
                if *recursive && ev.mask.contains(EventMask::ISDIR) {
                    new_dirs.push(path.clone());
                }
                ChangeKind::Created
            } else if ev
                .mask
                .intersects(EventMask::DELETE | EventMask::MOVED_FROM)
            {
                ChangeKind::Removed
            } else {
                ChangeKind::Modified
            };
            changes.push((path, kind));
        }
        for wd in gone {
            w.dirs.remove(&wd);
        }
        for d in new_dirs {
            w.add(&d, true);
        }
        for (path, kind) in changes {
            if let Some(vp) = kernel.layout().vfs_path_of(&path) {
                kernel.vfs().external_change(&vp, kind);
            }
        }
    }
}
