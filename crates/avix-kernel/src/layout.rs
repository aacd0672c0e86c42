//! Where things live under the runtime root (`ROOT`). The only path Avix needs at boot; every
//! tree derives from it.
//!
//! ```text
//! ROOT/etc/            /etc/avix   auth.conf users.yaml crews.yaml kernel.yaml llm.yaml (master.key)
//! ROOT/data/bin/       /bin
//! ROOT/data/users/     /users      (journals: users/<u>/agents/<agent>/<id>/, see avix_vfs::storage::invocations)
//! ROOT/data/services/  /services
//! ROOT/data/crews/     /crews
//! ROOT/data/secrets/   /secrets    (sealed: never visible through the VFS)
//! ROOT/run/            pid file, sockets
//! ROOT/state/          kernel-private durable state (PID counter)
//! ROOT/logs/           daemon logs
//! ROOT/mnt/            default mount point
//! ```

use std::path::{Path, PathBuf};

use avix_vfs::VfsPath;

/// The persistent trees: VFS prefix and directory under `ROOT/data` (or `ROOT/etc`).
pub const PERSISTENT_TREES: [(&str, &str); 5] = [
    ("/etc/avix", "etc"),
    ("/bin", "data/bin"),
    ("/users", "data/users"),
    ("/services", "data/services"),
    ("/crews", "data/crews"),
];

/// Paths under one runtime root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootLayout {
    root: PathBuf,
}

impl RootLayout {
    /// The layout of `root` (not checked).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `ROOT/etc`.
    pub fn etc(&self) -> PathBuf {
        self.root.join("etc")
    }

    /// A file in `ROOT/etc`.
    pub fn etc_file(&self, name: &str) -> PathBuf {
        self.etc().join(name)
    }

    /// `ROOT/data`.
    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    /// `ROOT/data/secrets`.
    pub fn secrets(&self) -> PathBuf {
        self.data().join("secrets")
    }

    /// `ROOT/run`.
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }

    /// The daemon's pid file (also its lock).
    pub fn pid_file(&self) -> PathBuf {
        self.run().join("avix.pid")
    }

    /// `ROOT/state`: kernel-private durable state (the PID counter), outside the VFS.
    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }

    /// `ROOT/logs`.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// The default mount point, `ROOT/mnt`.
    pub fn default_mount(&self) -> PathBuf {
        self.root.join("mnt")
    }

    /// Host directories of the persistent trees with their VFS prefixes.
    pub fn trees(&self) -> Vec<(VfsPath, PathBuf)> {
        PERSISTENT_TREES
            .iter()
            .filter_map(|(vfs, dir)| Some((VfsPath::parse(vfs).ok()?, self.root.join(dir))))
            .collect()
    }

    /// The VFS path of a host path under a persistent tree, if it is one.
    pub fn vfs_path_of(&self, host: &Path) -> Option<VfsPath> {
        for (prefix, dir) in self.trees() {
            if let Ok(rest) = host.strip_prefix(&dir) {
                let rest = rest.to_str()?;
                return if rest.is_empty() {
                    Some(prefix)
                } else {
                    VfsPath::parse(&format!("{prefix}/{rest}")).ok()
                };
            }
        }
        None
    }

    /// The mode of each directory of the layout, and why: other host accounts may traverse
    /// the root (to the mount point and `run/`) but read nothing of the data, the
    /// configuration, the logs or the state. `data/users` also lets the sandbox's group
    /// through (bubblewrap binds a workspace as the sandbox account; see avix-ipc `exec`).
    pub fn modes(&self) -> Vec<(PathBuf, u32)> {
        let data = self.data();
        vec![
            (self.root.clone(), 0o711),
            (self.etc(), 0o700),
            (self.state(), 0o700),
            (self.logs(), 0o700),
            // Run-as services and the sandbox reach their own sockets and files by name.
            (self.run(), 0o711),
            (data.clone(), 0o711),
            (data.join("users"), 0o710),
            (data.join("crews"), 0o700),
            (data.join("bin"), 0o700),
            (self.secrets(), 0o700),
            // A run-as service reads its own installed files.
            (data.join("services"), 0o711),
        ]
    }

    /// Creates the directories of [`modes`](Self::modes) that are missing and gives every one
    /// its mode, repairing a layout left open (by an older version, or by hand). Returns the
    /// directories whose mode it changed, with the mode they had.
    pub fn secure(&self) -> std::io::Result<Vec<(PathBuf, u32)>> {
        use std::os::unix::fs::PermissionsExt;
        let mut changed = Vec::new();
        for (dir, mode) in self.modes() {
            std::fs::create_dir_all(&dir)?;
            let meta = std::fs::symlink_metadata(&dir)?;
            if !meta.is_dir() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{} is not a directory (a link?)", dir.display()),
                ));
            }
            let had = meta.permissions().mode() & 0o7777;
            if had != mode {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))?;
                changed.push((dir, had));
            }
        }
        Ok(changed)
    }

    /// Every directory `config init` creates.
    pub fn directories(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.trees().into_iter().map(|(_, d)| d).collect();
        dirs.extend([
            self.secrets(),
            self.run(),
            self.logs(),
            self.default_mount(),
        ]);
        dirs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_closes_an_open_layout_and_reports_what_it_changed() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let l = RootLayout::new(d.path().join("r"));
        l.secure().unwrap();
        std::fs::set_permissions(l.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(
            l.data().join("users"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let changed = l.secure().unwrap();
        assert_eq!(changed.len(), 2, "{changed:?}");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(l.root()), 0o711);
        assert_eq!(mode(&l.data().join("users")), 0o710);
        assert_eq!(mode(&l.etc()), 0o700);
        assert!(l.secure().unwrap().is_empty());
    }

    #[test]
    fn maps_host_paths_to_vfs_paths() {
        let l = RootLayout::new("/r");
        assert_eq!(
            l.vfs_path_of(Path::new("/r/etc/users.yaml"))
                .unwrap()
                .as_str(),
            "/etc/avix/users.yaml"
        );
        assert_eq!(
            l.vfs_path_of(Path::new("/r/data/users/a/x"))
                .unwrap()
                .as_str(),
            "/users/a/x"
        );
        assert_eq!(
            l.vfs_path_of(Path::new("/r/data/bin")).unwrap().as_str(),
            "/bin"
        );
        assert!(l.vfs_path_of(Path::new("/r/data/secrets/a")).is_none());
        assert!(l.vfs_path_of(Path::new("/elsewhere")).is_none());
    }
}
