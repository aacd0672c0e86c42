//! A workspace on the host, before and after a sandbox uses it.
//!
//! Before a run: the workspace belongs to the sandbox account (so the sandbox can change what
//! the daemon wrote there), `ROOT/data/users` lets only root and the sandbox's group through,
//! and the whole tree is measured against the quota. Before and after a run: no set-user-ID
//! or set-group-ID bit and no device node is left anywhere in it.
//!
//! The walk runs as root over a tree a sandbox may be changing at the same moment, so it goes
//! by descriptors: every entry is opened beneath its directory's descriptor with `O_NOFOLLOW`
//! and acted on through its own descriptor. A name swapped for a link between two calls is
//! never followed.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::{Gid, Uid, UnlinkatFlags};

use super::account::SandboxAccount;

/// What one walk found and changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scan {
    /// Bytes in regular files.
    pub bytes: u64,
    /// Entries seen.
    pub entries: u64,
    /// Entries handed to the sandbox account.
    pub handed_over: u64,
    /// Set-ID bits removed.
    pub stripped: u64,
    /// Device nodes removed.
    pub removed: u64,
}

/// Deepest directory the walk enters.
const MAX_DEPTH: usize = 256;

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn open_dir(at: BorrowedFd<'_>, name: &str) -> nix::Result<OwnedFd> {
    nix::fcntl::openat(at, name, dir_flags(), Mode::empty())
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Makes `fd` belong to the account, with `mode` when given.
fn own(fd: BorrowedFd<'_>, acct: &SandboxAccount, mode: Option<u32>) -> nix::Result<()> {
    let st = nix::sys::stat::fstat(fd)?;
    if st.st_uid != acct.uid || st.st_gid != acct.gid {
        nix::unistd::fchown(
            fd,
            Some(Uid::from_raw(acct.uid)),
            Some(Gid::from_raw(acct.gid)),
        )?;
    }
    if let Some(m) = mode
        && st.st_mode & 0o7777 != m
    {
        nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(m))?;
    }
    Ok(())
}

/// Prepares a workspace of `user` under `users` (`ROOT/data/users`) and returns its path:
/// `tree` names it below the home, one or more plain names (`["workspace"]`, or a fork's
/// `["forks", "assistant-1a2b3c4d"]`). Created if missing; with an account, `users` becomes
/// `root:<its group> 0710` and each directory of `tree` `<account> 0700`.
pub fn prepare(
    users: &Path,
    user: &str,
    tree: &[&str],
    acct: Option<&SandboxAccount>,
) -> std::io::Result<PathBuf> {
    if tree.is_empty()
        || tree
            .iter()
            .any(|c| c.is_empty() || *c == "." || *c == ".." || c.contains('/'))
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("not a workspace below a home: {tree:?}"),
        ));
    }
    let ws = tree.iter().fold(users.join(user), |p, c| p.join(c));
    std::fs::create_dir_all(&ws)?;
    let Some(acct) = acct else {
        return Ok(ws);
    };
    let top = nix::fcntl::open(users, dir_flags(), Mode::empty())?;
    let st = nix::sys::stat::fstat(&top)?;
    if st.st_gid != acct.gid || st.st_mode & 0o7777 != 0o710 {
        nix::unistd::fchown(&top, None, Some(Gid::from_raw(acct.gid)))?;
        nix::sys::stat::fchmod(&top, Mode::from_bits_truncate(0o710))?;
    }
    let mut dir = open_dir(top.as_fd(), user)?;
    for c in tree {
        dir = open_dir(dir.as_fd(), c)?;
        own(dir.as_fd(), acct, Some(0o700))?;
    }
    Ok(ws)
}

/// Walks the workspace at `ws`: measures it, hands entries to `acct` (when given), clears
/// set-ID bits and removes device nodes. Stops counting after `budget` entries.
pub fn scrub(ws: &Path, acct: Option<&SandboxAccount>, budget: u64) -> Scan {
    let mut scan = Scan::default();
    if let Ok(root) = nix::fcntl::open(ws, dir_flags(), Mode::empty()) {
        walk(root, acct, budget, 0, &mut scan);
    }
    scan
}

fn walk(dir: OwnedFd, acct: Option<&SandboxAccount>, budget: u64, depth: usize, scan: &mut Scan) {
    let Ok(probe) = dir.try_clone() else { return };
    let Ok(mut d) = nix::dir::Dir::from_fd(dir) else {
        return;
    };
    let names: Vec<String> = d
        .iter()
        .flatten()
        .filter_map(|e| e.file_name().to_str().ok().map(str::to_owned))
        .filter(|n| n != "." && n != "..")
        .collect();
    drop(d);
    for name in names {
        if scan.entries >= budget {
            return;
        }
        scan.entries += 1;
        let at = probe.as_fd();
        let Ok(st) = nix::sys::stat::fstatat(at, name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
        else {
            continue;
        };
        match kind(&st) {
            SFlag::S_IFCHR | SFlag::S_IFBLK => {
                if nix::unistd::unlinkat(at, name.as_str(), UnlinkatFlags::NoRemoveDir).is_ok() {
                    scan.removed += 1;
                }
                continue;
            }
            SFlag::S_IFREG => scan.bytes += u64::try_from(st.st_size).unwrap_or(0),
            _ => {}
        }
        // The owner is changed on the entry itself (AT_SYMLINK_NOFOLLOW: a name swapped for a
        // link meanwhile gets the owner, never the link's target), without opening it: the
        // daemon watches its trees, and an open per file would flood its watcher.
        if let Some(a) = acct
            && (st.st_uid != a.uid || st.st_gid != a.gid)
            && nix::unistd::fchownat(
                at,
                name.as_str(),
                Some(Uid::from_raw(a.uid)),
                Some(Gid::from_raw(a.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .is_ok()
        {
            scan.handed_over += 1;
        }
        match kind(&st) {
            SFlag::S_IFREG if st.st_mode & 0o6000 != 0 => strip(at, &name, scan),
            SFlag::S_IFDIR if depth < MAX_DEPTH => {
                if let Ok(sub) = open_dir(at, &name) {
                    walk(sub, acct, budget, depth + 1, scan);
                }
            }
            _ => {}
        }
    }
}

/// Clears the set-ID bits of the regular file `name` (rare: only then is it opened, with
/// `O_NOFOLLOW | O_NONBLOCK`, and changed through its own descriptor once it is known to be
/// a regular file).
fn strip(at: BorrowedFd<'_>, name: &str, scan: &mut Scan) {
    let Ok(f) = nix::fcntl::openat(
        at,
        name,
        OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_CLOEXEC
            | OFlag::O_NOCTTY,
        Mode::empty(),
    ) else {
        return;
    };
    if let Ok(st) = nix::sys::stat::fstat(&f)
        && kind(&st) == SFlag::S_IFREG
        && st.st_mode & 0o6000 != 0
        && nix::sys::stat::fchmod(&f, Mode::from_bits_truncate(st.st_mode & 0o1777)).is_ok()
    {
        scan.stripped += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    #[test]
    fn set_id_bits_and_devices_go_and_links_are_not_followed() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let ws = d.path().join("ws");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(ws.join("sub")).unwrap();
        std::fs::write(&outside, b"x").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::fs::write(ws.join("sub/py"), b"#!").unwrap();
        std::fs::set_permissions(ws.join("sub/py"), std::fs::Permissions::from_mode(0o6755))
            .unwrap();
        std::os::unix::fs::symlink(&outside, ws.join("link")).unwrap();
        std::os::unix::fs::symlink(d.path(), ws.join("dirlink")).unwrap();
        nix::sys::stat::mknod(
            &ws.join("null"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
        let acct = SandboxAccount {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
        };
        let scan = scrub(&ws, Some(&acct), 1000);
        assert_eq!(scan.bytes, 2);
        assert_eq!(scan.removed, 1);
        assert!(!ws.join("null").exists());
        let m = std::fs::metadata(ws.join("sub/py")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o755);
        assert_eq!((m.uid(), m.gid()), (65534, 65534));
        // Nothing outside was touched through the links.
        let o = std::fs::metadata(&outside).unwrap();
        assert_eq!((o.mode() & 0o7777, o.uid()), (0o4755, 0));
        assert_eq!(std::fs::metadata(d.path()).unwrap().uid(), 0);
    }
}
