//! The content cache for persistent files: small files are kept in memory so a read costs a
//! hash lookup and a reference-count increment. Every change through the VFS, and every change
//! the disk watcher reports, invalidates the entry.
//!
//! A generation counter closes the race between a reader that loaded old bytes and a writer
//! that committed new ones: a reader inserts only if no invalidation happened since it started.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use rustc_hash::FxBuildHasher;

use crate::path::VfsPath;

/// Files larger than this are read from storage every time.
pub(crate) const MAX_CACHED_FILE: usize = 256 * 1024;
/// Total bytes kept; past it, entries are dropped.
pub(crate) const CACHE_BUDGET: usize = 16 * 1024 * 1024;

#[derive(Debug, Default)]
pub(crate) struct ContentCache {
    // Short critical sections only; never held across storage I/O.
    map: RwLock<HashMap<VfsPath, Bytes, FxBuildHasher>>,
    bytes: AtomicUsize,
    generation: AtomicU64,
}

impl ContentCache {
    pub(crate) fn get(&self, path: &VfsPath) -> Option<Bytes> {
        let map = self
            .map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(path.as_str()).cloned()
    }

    /// The token a reader takes before loading from storage.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Inserts `data` read under generation `seen`, unless something changed since.
    pub(crate) fn insert(&self, path: &VfsPath, data: &Bytes, seen: u64) {
        if data.len() > MAX_CACHED_FILE {
            return;
        }
        let mut map = self
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.generation.load(Ordering::Acquire) != seen {
            return;
        }
        if self.bytes.load(Ordering::Relaxed) + data.len() > CACHE_BUDGET {
            // Crude but bounded: start over. Hot files come back on their next read.
            map.clear();
            self.bytes.store(0, Ordering::Relaxed);
        }
        if let Some(old) = map.insert(path.clone(), data.clone()) {
            self.bytes.fetch_sub(old.len(), Ordering::Relaxed);
        }
        self.bytes.fetch_add(data.len(), Ordering::Relaxed);
    }

    /// Drops `path`.
    pub(crate) fn invalidate(&self, path: &VfsPath) {
        let mut map = self
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(old) = map.remove(path.as_str()) {
            self.bytes.fetch_sub(old.len(), Ordering::Relaxed);
        }
    }

    /// Drops `path` and everything below it (directory renames and removals).
    pub(crate) fn invalidate_tree(&self, path: &VfsPath) {
        let mut map = self
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut freed = 0;
        map.retain(|k, v| {
            let keep = !k.starts_with(path);
            if !keep {
                freed += v.len();
            }
            keep
        });
        self.bytes.fetch_sub(freed, Ordering::Relaxed);
    }

    pub(crate) fn len_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_reads_are_not_inserted() {
        let c = ContentCache::default();
        let p = VfsPath::parse("/users/a/f").unwrap();
        let g = c.generation();
        c.invalidate(&p);
        c.insert(&p, &Bytes::from_static(b"old"), g);
        assert!(c.get(&p).is_none());
        let g = c.generation();
        c.insert(&p, &Bytes::from_static(b"new"), g);
        assert_eq!(&c.get(&p).unwrap()[..], b"new");
        c.invalidate_tree(&VfsPath::parse("/users/a").unwrap());
        assert!(c.get(&p).is_none());
        assert_eq!(c.len_bytes(), 0);
    }
}
