//! Where the record of runs lives: each invocation's journal (an append-only log of JSON lines)
//! and its record (a small YAML summary written when the run ends). The kernel gives the
//! meaning; a driver keeps the bytes — in the user's tree on local disk by default
//! ([`LocalInvocations`]), in memory for tests ([`MemoryInvocations`]), and later in a shared
//! store that serves several nodes, without the kernel changing.
//!
//! A driver keeps, per journal, the order in which lines were appended, and tells a caller
//! that asked for durability only once the line (and every line appended before it) survives
//! a crash.

mod local;
mod memory;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use super::StorageError;

pub use local::{JOURNAL_FILE, LocalInvocations, RECORD_FILE};
pub use memory::MemoryInvocations;

/// Names one invocation: whose it is, which agent ran it and its id. Each part is one path
/// component (checked by [`InvocationKey::new`]), so no driver can be led outside its place.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InvocationKey {
    user: String,
    agent: String,
    id: String,
}

impl InvocationKey {
    /// The key of `user`'s invocation `id` of `agent`; `None` when a part is empty, `.`,
    /// `..`, holds a `/` or a NUL, or starts with a dot (drivers keep their own files there).
    pub fn new(user: &str, agent: &str, id: &str) -> Option<Self> {
        [user, agent, id]
            .iter()
            .all(|p| component(p))
            .then(|| Self {
                user: user.to_owned(),
                agent: agent.to_owned(),
                id: id.to_owned(),
            })
    }

    /// The user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The agent.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// The invocation id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for InvocationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.user, self.agent, self.id)
    }
}

/// Whether `s` can be one part of a key.
pub fn component(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('.') && !s.contains(['/', '\0'])
}

/// Called once with the outcome when a write the caller waits for is durable (or failed).
pub type Durable = Box<dyn FnOnce(std::io::Result<()>) + Send>;

/// A driver for journals and invocation records.
pub trait InvocationStore: Send + Sync + fmt::Debug + 'static {
    /// Short driver name (`local`, `memory`) for status output.
    fn kind(&self) -> &'static str;
    /// Opens the journal of `key` for appending, creating it (empty) when it is new.
    fn open(&self, key: &InvocationKey) -> Result<Arc<dyn JournalLog>, StorageError>;
    /// The whole journal of `key` as it stands (what was appended and written so far).
    fn read_journal(&self, key: &InvocationKey) -> Result<Bytes, StorageError>;
    /// The record of `key`; `NotFound` until one is written (a run that has not ended, or
    /// was interrupted).
    fn read_record(&self, key: &InvocationKey) -> Result<Bytes, StorageError>;
    /// Whether `key` has a record.
    fn has_record(&self, key: &InvocationKey) -> bool {
        self.read_record(key).is_ok()
    }
    /// The invocations of `user`: of one agent, or of all (unsorted).
    fn list(&self, user: &str, agent: Option<&str>) -> Result<Vec<InvocationKey>, StorageError>;
    /// `user`'s invocation `id`, whichever agent ran it.
    fn find(&self, user: &str, id: &str) -> Result<Option<InvocationKey>, StorageError> {
        if !component(id) {
            return Ok(None);
        }
        Ok(self.list(user, None)?.into_iter().find(|k| k.id == id))
    }
    /// Deletes the journal and record of `key` (`NotFound` when there is none).
    fn remove(&self, key: &InvocationKey) -> Result<(), StorageError>;
    /// Where `key`'s journal lives, for messages (a host path, a URL).
    fn describe(&self, key: &InvocationKey) -> String;
}

/// One open journal.
pub trait JournalLog: Send + Sync + fmt::Debug {
    /// Appends `bytes` (whole lines) after everything appended before; with `durable`, calls it
    /// once these bytes and all before them are durable. On a failed write nothing of `bytes`
    /// stays, so the journal remains whole lines.
    fn append(&self, bytes: Vec<u8>, durable: Option<Durable>);
    /// Replaces the invocation record with `bytes`, atomically; with `durable`, calls it once
    /// the new record is durable.
    fn write_record(&self, bytes: Vec<u8>, durable: Option<Durable>);
    /// Bytes written so far: what a reader may read.
    fn size(&self) -> u64;
    /// Up to `len` bytes at `offset` of what is written.
    fn read_at(&self, offset: u64, len: usize) -> Result<Bytes, StorageError>;
}

pub mod contract {
    //! The behaviour every driver must have: call [`check`] from a driver's tests (the local
    //! and memory drivers do). It panics on the first difference.

    use std::sync::mpsc;

    use super::*;

    fn key(user: &str, agent: &str, id: &str) -> InvocationKey {
        InvocationKey::new(user, agent, id).expect("a valid key")
    }

    #[allow(clippy::expect_used)]
    fn durably(log: &dyn JournalLog, bytes: &[u8]) -> std::io::Result<()> {
        let (tx, rx) = mpsc::channel();
        log.append(
            bytes.to_vec(),
            Some(Box::new(move |r| {
                let _ = tx.send(r);
            })),
        );
        rx.recv().expect("the driver answers")
    }

    /// Runs the contract on an empty `store` (it writes the users `alice` and `bob`).
    #[allow(clippy::unwrap_used, clippy::expect_used)]
    pub fn check(store: &dyn InvocationStore) {
        let a = key("alice", "assistant", "inv-1");
        let log = store.open(&a).unwrap();
        assert_eq!(log.size(), 0);
        assert!(matches!(store.read_record(&a), Err(StorageError::NotFound)));
        assert!(!store.has_record(&a));
        log.append(b"{\"seq\":1}\n".to_vec(), None);
        durably(&*log, b"{\"seq\":2}\n").unwrap();
        assert_eq!(
            store.read_journal(&a).unwrap(),
            &b"{\"seq\":1}\n{\"seq\":2}\n"[..]
        );
        assert_eq!(log.size(), 20);
        assert_eq!(log.read_at(10, 100).unwrap(), &b"{\"seq\":2}\n"[..]);
        assert_eq!(log.read_at(25, 100).unwrap(), Bytes::new());

        // Reopening continues the same journal.
        let again = store.open(&a).unwrap();
        assert_eq!(again.size(), 20);
        durably(&*again, b"{\"seq\":3}\n").unwrap();
        assert_eq!(store.read_journal(&a).unwrap().len(), 30);

        // Records replace each other whole.
        let (tx, rx) = mpsc::channel();
        log.write_record(
            b"state: running\n".to_vec(),
            Some(Box::new(move |r| {
                let _ = tx.send(r);
            })),
        );
        rx.recv().unwrap().unwrap();
        let (tx, rx) = mpsc::channel();
        log.write_record(
            b"state: done\n".to_vec(),
            Some(Box::new(move |r| {
                let _ = tx.send(r);
            })),
        );
        rx.recv().unwrap().unwrap();
        assert_eq!(store.read_record(&a).unwrap(), &b"state: done\n"[..]);
        assert!(store.has_record(&a));

        // Listing and finding, per user and agent.
        let b = key("alice", "coder", "inv-2");
        let c = key("bob", "assistant", "inv-3");
        for k in [&b, &c] {
            durably(&*store.open(k).unwrap(), b"{}\n").unwrap();
        }
        let mut all = store.list("alice", None).unwrap();
        all.sort();
        assert_eq!(all, [a.clone(), b.clone()]);
        assert_eq!(
            store.list("alice", Some("coder")).unwrap(),
            std::slice::from_ref(&b)
        );
        assert!(store.list("carol", None).unwrap().is_empty());
        assert_eq!(store.find("alice", "inv-2").unwrap(), Some(b.clone()));
        assert_eq!(store.find("alice", "inv-3").unwrap(), None);
        assert_eq!(store.find("alice", "../bob").unwrap(), None);

        // Removal takes journal and record.
        store.remove(&a).unwrap();
        assert!(matches!(
            store.read_journal(&a),
            Err(StorageError::NotFound)
        ));
        assert!(matches!(store.read_record(&a), Err(StorageError::NotFound)));
        assert!(matches!(store.remove(&a), Err(StorageError::NotFound)));
        assert_eq!(store.list("alice", None).unwrap(), [b]);
        assert!(!store.describe(&c).is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_single_components() {
        assert!(InvocationKey::new("alice", "assistant", "x").is_some());
        for bad in ["", ".", "..", ".hidden", "a/b", "a\0b"] {
            assert!(
                InvocationKey::new("alice", "assistant", bad).is_none(),
                "{bad:?}"
            );
            assert!(
                InvocationKey::new(bad, "assistant", "x").is_none(),
                "{bad:?}"
            );
            assert!(InvocationKey::new("alice", bad, "x").is_none(), "{bad:?}");
        }
    }
}
