//! The mount table: which backend serves which prefix. Longest prefix wins; ancestors of
//! mount points that no backend serves (`/`, `/etc`) are virtual directories.

use std::sync::Arc;

use crate::path::VfsPath;
use crate::storage::Storage;
use crate::synthetic::SyntheticTree;

/// What serves a mounted tree.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A storage driver (persistent trees).
    Storage(Arc<dyn Storage>),
    /// Kernel-computed files.
    Synthetic(Arc<SyntheticTree>),
    /// A tree whose entries are never visible (`/secrets`): the directory exists, nothing in it
    /// can be read, listed or written through the VFS.
    Sealed,
}

/// One mount.
#[derive(Debug, Clone)]
pub struct Mount {
    /// Where it is mounted.
    pub prefix: VfsPath,
    /// What serves it.
    pub backend: Backend,
}

/// Result of resolving a path.
#[derive(Debug)]
pub enum Resolved<'m, 'p> {
    /// Inside a mount; `rel` is relative to the mount (`""` for the mount point itself).
    Mounted(&'m Mount, &'p str),
    /// A directory that only exists because mount points lie below it.
    Virtual,
    /// Nothing serves this path.
    Nowhere,
}

/// All mounts.
#[derive(Debug, Default, Clone)]
pub struct MountTable {
    /// Sorted by prefix length, longest first.
    mounts: Vec<Mount>,
}

impl MountTable {
    /// Adds a mount (replacing one at the same prefix).
    pub fn add(&mut self, prefix: VfsPath, backend: Backend) {
        self.mounts.retain(|m| m.prefix != prefix);
        self.mounts.push(Mount { prefix, backend });
        self.mounts
            .sort_by_key(|m| std::cmp::Reverse(m.prefix.as_str().len()));
    }

    /// Every mount, longest prefix first.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// Finds what serves `path`.
    pub fn resolve<'m, 'p>(&'m self, path: &'p VfsPath) -> Resolved<'m, 'p> {
        for m in &self.mounts {
            if let Some(rel) = path.strip_prefix(&m.prefix) {
                return Resolved::Mounted(m, rel);
            }
        }
        if self.mounts.iter().any(|m| m.prefix.starts_with(path)) {
            Resolved::Virtual
        } else {
            Resolved::Nowhere
        }
    }

    /// Names of the mount points (or virtual directories) directly below `dir`.
    pub fn children_of(&self, dir: &VfsPath) -> Vec<String> {
        let mut names: Vec<String> = self
            .mounts
            .iter()
            .filter_map(|m| m.prefix.strip_prefix(dir))
            .filter(|rest| !rest.is_empty())
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    #[test]
    fn longest_prefix_wins_and_ancestors_are_virtual() {
        let mut t = MountTable::default();
        let mem: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        t.add(
            VfsPath::parse("/users").unwrap(),
            Backend::Storage(mem.clone()),
        );
        t.add(
            VfsPath::parse("/users/alice/workspace").unwrap(),
            Backend::Sealed,
        );
        t.add(VfsPath::parse("/etc/avix").unwrap(), Backend::Storage(mem));
        let p = VfsPath::parse("/users/alice/workspace/x").unwrap();
        match t.resolve(&p) {
            Resolved::Mounted(m, rel) => {
                assert_eq!(m.prefix.as_str(), "/users/alice/workspace");
                assert_eq!(rel, "x");
            }
            other => panic!("{other:?}"),
        }
        let etc = VfsPath::parse("/etc").unwrap();
        assert!(matches!(t.resolve(&etc), Resolved::Virtual));
        assert!(matches!(t.resolve(&VfsPath::root()), Resolved::Virtual));
        assert!(matches!(
            t.resolve(&VfsPath::parse("/nope").unwrap()),
            Resolved::Nowhere
        ));
        assert_eq!(t.children_of(&VfsPath::root()), ["etc", "users"]);
        assert_eq!(t.children_of(&etc), ["avix"]);
    }
}
