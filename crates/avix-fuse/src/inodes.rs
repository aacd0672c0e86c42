//! Inode numbers ↔ VFS paths. Numbers are never reused within a mount (generation 0 is then
//! always right); an entry lives while the kernel holds lookups on it.

use std::collections::HashMap;

use avix_vfs::VfsPath;

/// The root inode.
pub const ROOT: u64 = 1;
/// The first inode number of path-served nodes; data-tree nodes use the host's inode numbers,
/// which lie below it (see [`crate::posix`]).
pub const PATH_BASE: u64 = 1 << 48;

#[derive(Debug)]
struct Entry {
    /// `None` once another entry was renamed over this one (like an unlinked open file).
    path: Option<VfsPath>,
    lookups: u64,
}

/// The table.
#[derive(Debug)]
pub struct InodeTable {
    by_ino: HashMap<u64, Entry>,
    by_path: HashMap<VfsPath, u64>,
    next: u64,
}

impl Default for InodeTable {
    fn default() -> Self {
        let mut t = Self {
            by_ino: HashMap::new(),
            by_path: HashMap::new(),
            next: PATH_BASE,
        };
        t.by_ino.insert(
            ROOT,
            Entry {
                path: Some(VfsPath::root()),
                lookups: 1,
            },
        );
        t.by_path.insert(VfsPath::root(), ROOT);
        t
    }
}

impl InodeTable {
    /// The path of `ino`.
    pub fn path(&self, ino: u64) -> Option<VfsPath> {
        self.by_ino.get(&ino).and_then(|e| e.path.clone())
    }

    /// The inode of `path`, if it has one.
    pub fn ino(&self, path: &VfsPath) -> Option<u64> {
        self.by_path.get(path).copied()
    }

    /// The inode for `path`, allocating one; `lookup` counts a kernel reference.
    pub fn get_or_insert(&mut self, path: &VfsPath, lookup: bool) -> u64 {
        let ino = match self.by_path.get(path) {
            Some(&ino) => ino,
            None => {
                let ino = self.next;
                self.next += 1;
                self.by_path.insert(path.clone(), ino);
                self.by_ino.insert(
                    ino,
                    Entry {
                        path: Some(path.clone()),
                        lookups: 0,
                    },
                );
                ino
            }
        };
        if lookup && let Some(e) = self.by_ino.get_mut(&ino) {
            e.lookups += 1;
        }
        ino
    }

    /// The kernel dropped `n` references.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        let Some(e) = self.by_ino.get_mut(&ino) else {
            return;
        };
        e.lookups = e.lookups.saturating_sub(n);
        if e.lookups == 0 {
            let path = e.path.clone();
            self.by_ino.remove(&ino);
            if let Some(path) = path
                && self.by_path.get(&path) == Some(&ino)
            {
                self.by_path.remove(&path);
            }
        }
    }

    /// `from` (and everything below it) is now at `to`.
    pub fn rename(&mut self, from: &VfsPath, to: &VfsPath) {
        // Whatever stood at `to` is replaced; its inode keeps its old path, which now resolves
        // to nothing (ENOENT) or to the new entry, like an unlinked open file.
        let moved: Vec<(VfsPath, u64)> = self
            .by_path
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, &i)| (p.clone(), i))
            .collect();
        for (old, ino) in moved {
            self.by_path.remove(&old);
            let rest = old.strip_prefix(from).unwrap_or("");
            let new = if rest.is_empty() {
                to.clone()
            } else {
                VfsPath::parse(&format!("{to}/{rest}")).unwrap_or_else(|_| to.clone())
            };
            if let Some(stale) = self.by_path.insert(new.clone(), ino)
                && let Some(e) = self.by_ino.get_mut(&stale)
            {
                e.path = None;
            }
            if let Some(e) = self.by_ino.get_mut(&ino) {
                e.path = Some(new);
            }
        }
    }

    /// Number of live inodes.
    pub fn len(&self) -> usize {
        self.by_ino.len()
    }

    /// Whether only the root is known.
    pub fn is_empty(&self) -> bool {
        self.by_ino.len() <= 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> VfsPath {
        VfsPath::parse(s).unwrap()
    }

    #[test]
    fn allocate_forget_rename() {
        let mut t = InodeTable::default();
        let a = t.get_or_insert(&p("/users"), true);
        let b = t.get_or_insert(&p("/users/a/x"), true);
        assert_ne!(a, b);
        assert_eq!(t.get_or_insert(&p("/users"), true), a);
        t.rename(&p("/users/a"), &p("/users/b"));
        assert_eq!(t.path(b).unwrap().as_str(), "/users/b/x");
        assert_eq!(t.ino(&p("/users/b/x")), Some(b));
        t.forget(a, 1);
        assert!(t.path(a).is_some(), "two lookups, one forget");
        t.forget(a, 1);
        assert!(t.path(a).is_none());
        t.forget(ROOT, 100);
        assert_eq!(t.path(ROOT).unwrap(), VfsPath::root());
    }

    #[test]
    fn rename_over_an_existing_entry_orphans_it() {
        let mut t = InodeTable::default();
        let x = t.get_or_insert(&p("/u/x"), true);
        let y = t.get_or_insert(&p("/u/y"), true);
        t.rename(&p("/u/x"), &p("/u/y"));
        assert_eq!(t.ino(&p("/u/y")), Some(x));
        assert!(t.path(y).is_none());
    }
}
