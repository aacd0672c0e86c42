//! Synthetic files: content computed by the kernel on each open (`/proc`, `/kernel`, `/tools`),
//! and control files whose writes run a handler (`/proc/<pid>/ctl`, `/proc/spawn`).
//!
//! Publishing is a few lines:
//!
//! ```
//! # use avix_vfs::{SynthFile, Vfs, VfsPath};
//! # let vfs = Vfs::builder().mount_synthetic(VfsPath::parse("/kernel").unwrap()).build();
//! let path = VfsPath::parse("/kernel/hello.txt").unwrap();
//! vfs.publish(&path, SynthFile::computed(|_caller| Ok("hello\n".into()))).unwrap();
//! ```
//!
//! A control file's handler gets each `write(2)` as one command; it may return a reply that
//! later reads *on the same open file* return (a transaction file: write a request, read back
//! the answer).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use avix_proto::UserName;
use bytes::Bytes;

use crate::access::Writers;
use crate::caller::Caller;
use crate::error::VfsError;
use crate::storage::{DirEntry, EntryKind};

/// Renders a file's content for a caller.
pub type Render = Arc<dyn Fn(&Caller) -> Result<Bytes, VfsError> + Send + Sync>;
/// Handles one write; `Some(reply)` is what later reads on the same open file return.
pub type OnWrite = Arc<dyn Fn(&Caller, &[u8]) -> Result<Option<Bytes>, VfsError> + Send + Sync>;

/// Reads `len` bytes at `offset` of a live file.
pub type ReadAt = Arc<dyn Fn(u64, u32) -> Result<Bytes, VfsError> + Send + Sync>;
/// The current size of a live file.
pub type SizeOf = Arc<dyn Fn() -> u64 + Send + Sync>;

/// A file read in place at every read, not rendered once per open: an append-only log that
/// `tail -f` follows (its size grows while the file is open).
#[derive(Clone)]
pub(crate) struct Live {
    pub(crate) size: SizeOf,
    pub(crate) read_at: ReadAt,
}

/// A synthetic file.
#[derive(Clone)]
pub struct SynthFile {
    pub(crate) render: Render,
    pub(crate) on_write: Option<OnWrite>,
    pub(crate) owner: Option<UserName>,
    pub(crate) writers: Writers,
    pub(crate) live: Option<Live>,
    /// For buffered control files: runs at close on what is still pending.
    pub(crate) on_close: Option<OnWrite>,
}

impl fmt::Debug for SynthFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SynthFile")
            .field("live", &self.live.is_some())
            .field("owner", &self.owner)
            .field("writers", &self.writers)
            .field("control", &self.on_write.is_some())
            .finish()
    }
}

impl SynthFile {
    /// A read-only file rendered on every open.
    pub fn computed(
        render: impl Fn(&Caller) -> Result<Bytes, VfsError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            render: Arc::new(render),
            on_write: None,
            owner: None,
            writers: Writers::Nobody,
            live: None,
            on_close: None,
        }
    }

    /// A read-only file read in place (`size` and `read_at` are called at every stat and
    /// read), for logs that grow while open: `tail -f` follows it.
    pub fn live(
        size: impl Fn() -> u64 + Send + Sync + 'static,
        read_at: impl Fn(u64, u32) -> Result<Bytes, VfsError> + Send + Sync + 'static,
    ) -> Self {
        let size: SizeOf = Arc::new(size);
        let read_at: ReadAt = Arc::new(read_at);
        let (s, r) = (size.clone(), read_at.clone());
        let render = move |_: &Caller| -> Result<Bytes, VfsError> {
            r(0, u32::try_from(s()).unwrap_or(u32::MAX))
        };
        Self {
            render: Arc::new(render),
            on_write: None,
            owner: None,
            writers: Writers::Nobody,
            live: Some(Live { size, read_at }),
            on_close: None,
        }
    }

    /// A read-only file with fixed content.
    pub fn fixed(content: impl Into<Bytes>) -> Self {
        let content = content.into();
        Self::computed(move |_| Ok(content.clone()))
    }

    /// A control file: `render` gives what a plain read shows (usage, current state), and
    /// `on_write` handles each write. Writable by the owner (and operators) unless
    /// [`SynthFile::writers`] says otherwise.
    pub fn control(
        render: impl Fn(&Caller) -> Result<Bytes, VfsError> + Send + Sync + 'static,
        on_write: impl Fn(&Caller, &[u8]) -> Result<Option<Bytes>, VfsError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            render: Arc::new(render),
            on_write: Some(Arc::new(on_write)),
            owner: None,
            writers: Writers::Owner,
            live: None,
            on_close: None,
        }
    }

    /// Restricts reading (and owner-writes) to `owner` and operators.
    pub fn owned_by(mut self, owner: UserName) -> Self {
        self.owner = Some(owner);
        self
    }

    /// Makes a control file buffered: writes on one open file accumulate, and the write
    /// handler sees everything written since its last complete command; it answers
    /// [`VfsError::NeedMore`] to keep waiting. At close, `on_close` gets what is still pending
    /// (a request written without its terminator).
    pub fn buffered(
        mut self,
        on_close: impl Fn(&Caller, &[u8]) -> Result<Option<Bytes>, VfsError> + Send + Sync + 'static,
    ) -> Self {
        self.on_close = Some(Arc::new(on_close));
        self
    }

    /// Sets who may write.
    pub fn writers(mut self, writers: Writers) -> Self {
        self.writers = writers;
        self
    }

    /// Whether the file accepts writes at all.
    pub fn is_control(&self) -> bool {
        self.on_write.is_some()
    }
}

enum Node {
    Dir {
        children: BTreeMap<String, Node>,
        owner: Option<UserName>,
        mtime: SystemTime,
    },
    File {
        file: Arc<SynthFile>,
        mtime: SystemTime,
    },
}

impl Node {
    fn dir(owner: Option<UserName>) -> Self {
        Node::Dir {
            children: BTreeMap::new(),
            owner,
            mtime: SystemTime::now(),
        }
    }
}

/// What a lookup finds.
#[derive(Debug, Clone)]
pub(crate) enum Found {
    /// A directory and its effective owner.
    Dir {
        owner: Option<UserName>,
        mtime: SystemTime,
    },
    /// A file and its effective owner.
    File {
        file: Arc<SynthFile>,
        owner: Option<UserName>,
        mtime: SystemTime,
    },
}

/// Why publishing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// A file stands where a directory is needed.
    #[error("a file stands where a directory is needed")]
    NotADirectory,
    /// A directory stands where the file would go.
    #[error("a directory stands where the file would go")]
    IsADirectory,
    /// The path is not in a synthetic tree.
    #[error("not a synthetic tree")]
    NotSynthetic,
}

/// One synthetic tree (mounted at `/proc`, `/kernel`, …).
#[derive(Default)]
pub struct SyntheticTree {
    // Held only for map operations; renders and handlers run after it is released.
    root: RwLock<Option<Node>>,
}

impl fmt::Debug for SyntheticTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SyntheticTree")
    }
}

fn split(rel: &str) -> impl Iterator<Item = &str> {
    rel.split('/').filter(|c| !c.is_empty())
}

impl SyntheticTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self {
            root: RwLock::new(Some(Node::dir(None))),
        }
    }

    fn write_root(&self) -> std::sync::RwLockWriteGuard<'_, Option<Node>> {
        self.root
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read_root(&self) -> std::sync::RwLockReadGuard<'_, Option<Node>> {
        self.root
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn dir_mut<'a>(mut node: &'a mut Node, rel: &str) -> Result<&'a mut Node, PublishError> {
        for c in split(rel) {
            let Node::Dir { children, .. } = node else {
                return Err(PublishError::NotADirectory);
            };
            node = children
                .entry(c.to_owned())
                .or_insert_with(|| Node::dir(None));
        }
        match node {
            Node::Dir { .. } => Ok(node),
            Node::File { .. } => Err(PublishError::NotADirectory),
        }
    }

    /// Publishes (or replaces) a file at `rel`, creating parent directories.
    pub fn publish(&self, rel: &str, file: SynthFile) -> Result<(), PublishError> {
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let mut root = self.write_root();
        let root = root.get_or_insert_with(|| Node::dir(None));
        let Node::Dir { children, .. } = Self::dir_mut(root, dir)? else {
            return Err(PublishError::NotADirectory);
        };
        if let Some(Node::Dir { .. }) = children.get(name) {
            return Err(PublishError::IsADirectory);
        }
        children.insert(
            name.to_owned(),
            Node::File {
                file: Arc::new(file),
                mtime: SystemTime::now(),
            },
        );
        Ok(())
    }

    /// Creates (or re-owns) a directory at `rel`; files below inherit `owner`.
    pub fn publish_dir(&self, rel: &str, owner: Option<UserName>) -> Result<(), PublishError> {
        let mut root = self.write_root();
        let root = root.get_or_insert_with(|| Node::dir(None));
        if let Node::Dir { owner: o, .. } = Self::dir_mut(root, rel)? {
            *o = owner;
        }
        Ok(())
    }

    /// Removes `rel` and everything below it. Returns whether something was there.
    pub fn remove(&self, rel: &str) -> bool {
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let mut root = self.write_root();
        let Some(root) = root.as_mut() else {
            return false;
        };
        let mut node = root;
        for c in split(dir) {
            match node {
                Node::Dir { children, .. } => match children.get_mut(c) {
                    Some(n) => node = n,
                    None => return false,
                },
                Node::File { .. } => return false,
            }
        }
        match node {
            Node::Dir { children, .. } => children.remove(name).is_some(),
            Node::File { .. } => false,
        }
    }

    /// Walks to `rel`, returning the node and the owner inherited from its ancestors.
    fn walk<'a>(root: &'a Node, rel: &str) -> Option<(&'a Node, Option<UserName>)> {
        let mut node = root;
        let mut owner = None;
        for c in split(rel) {
            let Node::Dir {
                children, owner: o, ..
            } = node
            else {
                return None;
            };
            if o.is_some() {
                owner.clone_from(o);
            }
            node = children.get(c)?;
        }
        Some((node, owner))
    }

    pub(crate) fn lookup(&self, rel: &str) -> Option<Found> {
        let root = self.read_root();
        let (node, inherited) = Self::walk(root.as_ref()?, rel)?;
        Some(match node {
            Node::Dir { owner, mtime, .. } => Found::Dir {
                owner: owner.clone().or(inherited),
                mtime: *mtime,
            },
            Node::File { file, mtime } => {
                let owner = file.owner.clone().or(inherited);
                Found::File {
                    file: file.clone(),
                    owner,
                    mtime: *mtime,
                }
            }
        })
    }

    /// Entries of the directory `rel` with each entry's effective owner.
    pub(crate) fn list(&self, rel: &str) -> Option<Vec<(DirEntry, Option<UserName>)>> {
        let root = self.read_root();
        let (node, inherited) = Self::walk(root.as_ref()?, rel)?;
        let Node::Dir {
            children, owner, ..
        } = node
        else {
            return None;
        };
        let owner = owner.clone().or(inherited);
        Some(
            children
                .iter()
                .map(|(name, n)| {
                    let (kind, own) = match n {
                        Node::Dir { owner: o, .. } => (EntryKind::Dir, o.clone()),
                        Node::File { file, .. } => (EntryKind::File, file.owner.clone()),
                    };
                    (
                        DirEntry {
                            name: name.clone(),
                            kind,
                        },
                        own.or_else(|| owner.clone()),
                    )
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_lookup_list_remove() {
        let t = SyntheticTree::new();
        let alice = UserName::new("alice").unwrap();
        t.publish_dir("57", Some(alice.clone())).unwrap();
        t.publish("57/status.yaml", SynthFile::fixed("state: running\n"))
            .unwrap();
        t.publish("defaults/agent.yaml", SynthFile::fixed("x"))
            .unwrap();
        match t.lookup("57/status.yaml").unwrap() {
            Found::File { owner, file, .. } => {
                assert_eq!(owner, Some(alice.clone()));
                assert_eq!(
                    &(file.render)(&Caller::kernel()).unwrap()[..],
                    b"state: running\n"
                );
            }
            Found::Dir { .. } => panic!("expected a file"),
        }
        let names: Vec<_> = t
            .list("")
            .unwrap()
            .into_iter()
            .map(|(e, _)| e.name)
            .collect();
        assert_eq!(names, ["57", "defaults"]);
        assert_eq!(
            t.publish("57/status.yaml/x", SynthFile::fixed("")),
            Err(PublishError::NotADirectory)
        );
        assert_eq!(
            t.publish("57", SynthFile::fixed("")),
            Err(PublishError::IsADirectory)
        );
        assert!(t.remove("57"));
        assert!(t.lookup("57/status.yaml").is_none());
        assert!(!t.remove("57"));
    }
}
