//! An in-memory driver for tests and for trees that need no persistence.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use bytes::Bytes;

use super::{DirEntry, EntryKind, Meta, SpaceStats, Storage, StorageError, TxnStart, WriteTxn};

#[derive(Debug, Clone)]
enum Node {
    File(Bytes, SystemTime),
    Dir(SystemTime),
}

/// Entries keyed by relative path; `""` is the root directory.
type Tree = BTreeMap<String, Node>;

/// A tree held in memory.
#[derive(Debug, Clone)]
pub struct MemoryStorage {
    // Held only for short map operations, never across calls out of this module.
    tree: Arc<Mutex<Tree>>,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        let mut t = Tree::new();
        t.insert(String::new(), Node::Dir(SystemTime::now()));
        Self {
            tree: Arc::new(Mutex::new(t)),
        }
    }
}

fn parent(rel: &str) -> &str {
    rel.rfind('/').map_or("", |i| &rel[..i])
}

fn lock(tree: &Mutex<Tree>) -> MutexGuard<'_, Tree> {
    tree.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn need_dir(t: &Tree, rel: &str) -> Result<(), StorageError> {
    match t.get(rel) {
        Some(Node::Dir(_)) => Ok(()),
        Some(Node::File(..)) => Err(StorageError::NotADirectory),
        None => Err(StorageError::NotFound),
    }
}

fn children<'a>(t: &'a Tree, rel: &'a str) -> impl Iterator<Item = (&'a String, &'a Node)> + 'a {
    let prefix = if rel.is_empty() {
        String::new()
    } else {
        format!("{rel}/")
    };
    let plen = prefix.len();
    t.range(prefix.clone()..)
        .take_while(move |(k, _)| k.starts_with(&prefix))
        .filter(move |(k, _)| !k.is_empty() && !k[plen..].contains('/'))
}

impl MemoryStorage {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }
}

fn meta(n: &Node) -> Meta {
    match n {
        Node::File(b, t) => Meta {
            kind: EntryKind::File,
            size: b.len() as u64,
            mtime: *t,
        },
        Node::Dir(t) => Meta {
            kind: EntryKind::Dir,
            size: 0,
            mtime: *t,
        },
    }
}

impl Storage for MemoryStorage {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn stat(&self, rel: &str) -> Result<Meta, StorageError> {
        lock(&self.tree)
            .get(rel)
            .map(meta)
            .ok_or(StorageError::NotFound)
    }

    fn read(&self, rel: &str) -> Result<Bytes, StorageError> {
        match lock(&self.tree).get(rel) {
            Some(Node::File(b, _)) => Ok(b.clone()),
            Some(Node::Dir(_)) => Err(StorageError::IsADirectory),
            None => Err(StorageError::NotFound),
        }
    }

    fn read_at(&self, rel: &str, offset: u64, len: usize) -> Result<Bytes, StorageError> {
        let b = self.read(rel)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
        Ok(b.slice(start..(start.saturating_add(len)).min(b.len())))
    }

    fn list(&self, rel: &str) -> Result<Vec<DirEntry>, StorageError> {
        let t = lock(&self.tree);
        need_dir(&t, rel)?;
        Ok(children(&t, rel)
            .map(|(k, n)| DirEntry {
                name: k.rsplit('/').next().unwrap_or(k).to_owned(),
                kind: meta(n).kind,
            })
            .collect())
    }

    fn begin_write(&self, rel: &str, start: TxnStart) -> Result<Box<dyn WriteTxn>, StorageError> {
        let t = lock(&self.tree);
        need_dir(&t, parent(rel))?;
        let buf = match (t.get(rel), start) {
            (Some(Node::Dir(_)), _) => return Err(StorageError::IsADirectory),
            (Some(Node::File(b, _)), TxnStart::Existing) => b.to_vec(),
            _ => Vec::new(),
        };
        Ok(Box::new(MemTxn {
            tree: self.tree.clone(),
            rel: rel.to_owned(),
            buf,
        }))
    }

    fn mkdir(&self, rel: &str) -> Result<(), StorageError> {
        let mut t = lock(&self.tree);
        need_dir(&t, parent(rel))?;
        if t.contains_key(rel) {
            return Err(StorageError::AlreadyExists);
        }
        t.insert(rel.to_owned(), Node::Dir(SystemTime::now()));
        Ok(())
    }

    fn remove_file(&self, rel: &str) -> Result<(), StorageError> {
        let mut t = lock(&self.tree);
        match t.get(rel) {
            Some(Node::File(..)) => {
                t.remove(rel);
                Ok(())
            }
            Some(Node::Dir(_)) => Err(StorageError::IsADirectory),
            None => Err(StorageError::NotFound),
        }
    }

    fn remove_dir(&self, rel: &str) -> Result<(), StorageError> {
        let mut t = lock(&self.tree);
        need_dir(&t, rel)?;
        if rel.is_empty() {
            return Err(StorageError::Io(std::io::Error::from_raw_os_error(
                libc::EBUSY,
            )));
        }
        if children(&t, rel).next().is_some() {
            return Err(StorageError::NotEmpty);
        }
        t.remove(rel);
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), StorageError> {
        let mut t = lock(&self.tree);
        let src = t.get(from).cloned().ok_or(StorageError::NotFound)?;
        need_dir(&t, parent(to))?;
        if from == to {
            return Ok(());
        }
        if to.starts_with(&format!("{from}/")) {
            return Err(StorageError::Io(std::io::Error::from_raw_os_error(
                libc::EINVAL,
            )));
        }
        match (&src, t.get(to)) {
            (Node::File(..), Some(Node::Dir(_))) => return Err(StorageError::IsADirectory),
            (Node::Dir(_), Some(Node::File(..))) => return Err(StorageError::NotADirectory),
            (Node::Dir(_), Some(Node::Dir(_))) if children(&t, to).next().is_some() => {
                return Err(StorageError::NotEmpty);
            }
            _ => {}
        }
        let moved: Vec<(String, Node)> = {
            let sub = format!("{from}/");
            t.range(sub.clone()..)
                .take_while(|(k, _)| k.starts_with(&sub))
                .map(|(k, v)| (format!("{to}/{}", &k[sub.len()..]), v.clone()))
                .collect()
        };
        let sub = format!("{from}/");
        t.retain(|k, _| k != from && !k.starts_with(&sub));
        t.insert(to.to_owned(), src);
        t.extend(moved);
        Ok(())
    }

    fn space(&self) -> Result<SpaceStats, StorageError> {
        Ok(SpaceStats {
            block_size: 4096,
            ..SpaceStats::default()
        })
    }
}

#[derive(Debug)]
struct MemTxn {
    tree: Arc<Mutex<Tree>>,
    rel: String,
    buf: Vec<u8>,
}

impl WriteTxn for MemTxn {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        if data.is_empty() {
            return Ok(());
        }
        let off = usize::try_from(offset)
            .map_err(|_| StorageError::Io(std::io::Error::from_raw_os_error(libc::EFBIG)))?;
        let end = off + data.len();
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        self.buf[off..end].copy_from_slice(data);
        Ok(())
    }

    fn read_at(&mut self, offset: u64, len: usize) -> Result<Bytes, StorageError> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.buf.len());
        let end = start.saturating_add(len).min(self.buf.len());
        Ok(Bytes::copy_from_slice(&self.buf[start..end]))
    }

    fn set_len(&mut self, len: u64) -> Result<(), StorageError> {
        let len = usize::try_from(len)
            .map_err(|_| StorageError::Io(std::io::Error::from_raw_os_error(libc::EFBIG)))?;
        self.buf.resize(len, 0);
        Ok(())
    }

    fn len(&self) -> u64 {
        self.buf.len() as u64
    }

    fn contents(&mut self) -> Result<Vec<u8>, StorageError> {
        Ok(self.buf.clone())
    }

    fn commit(self: Box<Self>) -> Result<Meta, StorageError> {
        let mut t = lock(&self.tree);
        need_dir(&t, parent(&self.rel))?;
        if let Some(Node::Dir(_)) = t.get(&self.rel) {
            return Err(StorageError::IsADirectory);
        }
        let node = Node::File(Bytes::from(self.buf), SystemTime::now());
        let m = meta(&node);
        t.insert(self.rel, node);
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_tree() {
        let s = MemoryStorage::new();
        s.mkdir("a").unwrap();
        s.mkdir("a/b").unwrap();
        s.write("a/b/f", b"x").unwrap();
        assert!(matches!(s.remove_dir("a"), Err(StorageError::NotEmpty)));
        s.rename("a", "c").unwrap();
        assert_eq!(&s.read("c/b/f").unwrap()[..], b"x");
        assert!(matches!(s.stat("a/b/f"), Err(StorageError::NotFound)));
        let names: Vec<_> = s.list("").unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["c"]);
        assert!(matches!(
            s.write("nope/f", b""),
            Err(StorageError::NotFound)
        ));
        assert!(s.rename("c", "c/b/x").is_err());
    }
}
