//! The journals: one JSONL log per invocation, the record of truth everything else (status,
//! history, replay) is derived from, plus the invocation record (`invocation.yaml`) written
//! when a run ends. The bytes live in an [`InvocationStore`] (the storage seam, DESIGN §10);
//! this module gives them their meaning: numbered, typed entries, records, conversations.

use std::sync::{Arc, Mutex};

use avix_proto::InvocationId;
use avix_proto::agent::{InvocationRecord, JournalEntry, JournalEvent};
use avix_proto::envelope::Document;
use avix_proto::llm::{Message, MessageRole};
use avix_proto::time::Timestamp;
use avix_vfs::storage::StorageError;
use avix_vfs::storage::invocations::Durable;
use avix_vfs::storage::{InvocationKey, InvocationStore, JournalLog};
use bytes::Bytes;
use tokio::sync::oneshot;

/// Longest tool result kept in the journal (the model still gets all of it).
pub const MAX_JOURNALED_RESULT: usize = 64 * 1024;

/// The journals and records of every run, typed, over the store that keeps their bytes.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Journals {
    store: Arc<dyn InvocationStore>,
}

impl Journals {
    /// Journals kept by `store`.
    pub fn new(store: Arc<dyn InvocationStore>) -> Self {
        Self { store }
    }

    /// The store's driver name.
    pub fn kind(&self) -> &'static str {
        self.store.kind()
    }

    /// Opens (creating it when new) the journal of `key`, numbering on from its last entry.
    pub fn open(&self, key: &InvocationKey) -> Result<Journal, JournalError> {
        let err = |e: StorageError| JournalError {
            path: self.store.describe(key),
            source: std::io::Error::other(e.to_string()),
        };
        let log = self.store.open(key).map_err(err)?;
        let seq = match log.size() {
            0 => 0,
            _ => self.entries(key).last().map_or(0, |e| e.seq),
        };
        Ok(Journal {
            id: InvocationId::from(key.id()),
            key: key.clone(),
            describe: self.store.describe(key),
            log,
            seq: Mutex::new(seq),
        })
    }

    /// Every decodable entry of `key`'s journal (undecodable lines are skipped with a
    /// warning, as a torn last line after a crash would be); empty when there is none.
    pub fn entries(&self, key: &InvocationKey) -> Vec<JournalEntry> {
        match self.store.read_journal(key) {
            Ok(bytes) => decode(&bytes, &self.store.describe(key)),
            Err(StorageError::NotFound) => Vec::new(),
            Err(e) => {
                tracing::warn!(invocation = %key, error = %e, "cannot read a journal");
                Vec::new()
            }
        }
    }

    /// The record written when `key`'s run ended, if any.
    pub fn written_record(&self, key: &InvocationKey) -> Option<InvocationRecord> {
        let bytes = self.store.read_record(key).ok()?;
        Document::<InvocationRecord>::parse(&bytes)
            .ok()
            .map(|d| d.spec)
    }

    /// Whether `key`'s run wrote its record (it ended while the daemon ran).
    pub fn has_record(&self, key: &InvocationKey) -> bool {
        self.store.has_record(key)
    }

    /// The record of `key`: the one written at exit, else (a run interrupted by a crash) one
    /// rebuilt from its journal.
    pub fn record(&self, key: &InvocationKey) -> Option<InvocationRecord> {
        self.written_record(key)
            .or_else(|| record_from_journal(key.id(), &self.entries(key)))
    }

    /// The conversation `key`'s journal records.
    pub fn conversation(&self, key: &InvocationKey) -> Vec<Message> {
        conversation(&self.entries(key))
    }

    /// The invocations of `user` (one agent's, or all), unsorted.
    pub fn list(&self, user: &str, agent: Option<&str>) -> Vec<InvocationKey> {
        self.store.list(user, agent).unwrap_or_else(|e| {
            tracing::warn!(user, error = %e, "cannot list the runs");
            Vec::new()
        })
    }

    /// `user`'s invocation `id`, whichever agent ran it.
    pub fn find(&self, user: &str, id: &str) -> Option<InvocationKey> {
        self.store.find(user, id).ok().flatten()
    }

    /// Deletes `key`'s journal and record; a missing one is not an error.
    pub fn remove(&self, key: &InvocationKey) -> Result<(), StorageError> {
        match self.store.remove(key) {
            Err(StorageError::NotFound) => Ok(()),
            r => r,
        }
    }
}

impl avix_llm::replay::JournalSource for Journals {
    fn entries(&self, user: &str, id: &str) -> Option<Vec<JournalEntry>> {
        let key = self.find(user, id)?;
        Some(Journals::entries(self, &key))
    }
}

/// Decodes the lines of a journal read from `what`.
fn decode(bytes: &[u8], what: &str) -> Vec<JournalEntry> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
        .filter_map(|l| match serde_json::from_slice::<JournalEntry>(l) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!(journal = what, error = %e, "skipping an undecodable journal line");
                None
            }
        })
        .collect()
}

/// One invocation's journal, open for appending.
#[derive(Debug)]
pub struct Journal {
    id: InvocationId,
    key: InvocationKey,
    describe: String,
    log: Arc<dyn JournalLog>,
    // Held while numbering and queueing a line, so lines reach the store in `seq` order.
    seq: Mutex<u64>,
}

/// The journal could not be made durable.
#[derive(Debug, thiserror::Error)]
#[error("journal {path}: {source}")]
pub struct JournalError {
    path: String,
    #[source]
    source: std::io::Error,
}

fn notify(tx: oneshot::Sender<std::io::Result<()>>) -> Durable {
    Box::new(move |r| {
        let _ = tx.send(r);
    })
}

impl Journal {
    /// The invocation id.
    pub fn id(&self) -> &InvocationId {
        &self.id
    }

    /// The invocation's key in the store.
    pub fn key(&self) -> &InvocationKey {
        &self.key
    }

    fn queue(&self, event: JournalEvent, done: Option<Durable>) {
        let mut seq = self
            .seq
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *seq += 1;
        let entry = JournalEntry {
            seq: *seq,
            ts: Timestamp::now(),
            event,
        };
        let mut bytes = serde_json::to_vec(&entry)
            .unwrap_or_else(|e| format!("{{\"encodeError\":\"{e}\"}}").into_bytes());
        bytes.push(b'\n');
        self.log.append(bytes, done);
    }

    fn err(&self, source: std::io::Error) -> JournalError {
        JournalError {
            path: self.describe.clone(),
            source,
        }
    }

    /// Appends an event; it reaches the store soon, durably at the next durable append.
    pub fn append(&self, event: JournalEvent) {
        self.queue(event, None);
    }

    /// Appends an event and waits until it (and everything before it) is durable.
    pub async fn append_durable(&self, event: JournalEvent) -> Result<(), JournalError> {
        let (tx, rx) = oneshot::channel();
        self.queue(event, Some(notify(tx)));
        self.wait(rx).await
    }

    /// Appends an event and blocks the calling thread until it is durable: for a synchronous
    /// caller that must not report success before the event is recorded (an answer written
    /// to an approval file). The local store's writer is its own thread, so this cannot
    /// deadlock it; the wait runs on a scoped thread, which keeps it legal inside an async
    /// context too.
    pub fn append_durable_blocking(&self, event: JournalEvent) -> Result<(), JournalError> {
        let (tx, rx) = oneshot::channel();
        self.queue(event, Some(notify(tx)));
        match std::thread::scope(|s| s.spawn(move || rx.blocking_recv()).join()) {
            Ok(Ok(r)) => r.map_err(|e| self.err(e)),
            _ => Err(self.err(std::io::Error::other("the journal writer stopped"))),
        }
    }

    async fn wait(&self, rx: oneshot::Receiver<std::io::Result<()>>) -> Result<(), JournalError> {
        match rx.await {
            Ok(r) => r.map_err(|e| self.err(e)),
            Err(_) => Err(self.err(std::io::Error::other("the journal writer stopped"))),
        }
    }

    /// Replaces the invocation record; with `durable`, waits until it is durable.
    pub async fn write_record(
        &self,
        record: &InvocationRecord,
        durable: bool,
    ) -> Result<(), JournalError> {
        let bytes = Document::new(record.clone())
            .to_yaml()
            .map(String::into_bytes)
            .unwrap_or_default();
        if durable {
            let (tx, rx) = oneshot::channel();
            self.log.write_record(bytes, Some(notify(tx)));
            self.wait(rx).await
        } else {
            self.log.write_record(bytes, None);
            Ok(())
        }
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.log.size()
    }

    /// Reads up to `len` bytes at `offset` of what is written.
    pub fn read_at(&self, offset: u64, len: u32) -> Result<Bytes, StorageError> {
        self.log
            .read_at(offset, usize::try_from(len).unwrap_or(usize::MAX))
    }
}

/// Rebuilds the record of invocation `id` from its journal's entries (a run that never wrote
/// its record: it was interrupted). The state is the last one journaled; without an exit it
/// reads `failed` with the reason "interrupted".
pub fn record_from_journal(id: &str, entries: &[JournalEntry]) -> Option<InvocationRecord> {
    use avix_proto::agent::ProcState;
    let first = entries.first()?;
    let JournalEvent::Spawned {
        pid,
        agent,
        version,
        user,
        parent,
        goal,
        model,
        session,
        ..
    } = &first.event
    else {
        return None;
    };
    let mut rec = InvocationRecord {
        id: id.to_owned().into(),
        agent: agent.clone(),
        version: version.clone(),
        user: user.clone(),
        pid: *pid,
        parent: *parent,
        session: session.clone(),
        goal: goal.clone(),
        model: model.clone(),
        spawned_at: first.ts,
        ended_at: None,
        state: ProcState::Failed,
        exit_code: Some(1),
        exit_reason: Some("interrupted: the daemon stopped before the agent ended".into()),
        tokens: Default::default(),
        cost_usd: 0.0,
        tool_calls: 0,
        turns: 0,
    };
    for e in entries {
        match &e.event {
            JournalEvent::LlmCall {
                usage, cost_usd, ..
            } => {
                rec.turns += 1;
                rec.cost_usd += cost_usd.unwrap_or(0.0);
                rec.tokens.input_tokens += usage.input_tokens;
                rec.tokens.output_tokens += usage.output_tokens;
            }
            JournalEvent::ToolCall { .. } => rec.tool_calls += 1,
            JournalEvent::Resumed { pid, .. } => rec.pid = *pid,
            JournalEvent::Exit {
                state,
                code,
                reason,
            } => {
                rec.state = *state;
                rec.exit_code = Some(*code);
                rec.exit_reason = Some(reason.clone());
                rec.ended_at = Some(e.ts);
            }
            _ => {}
        }
    }
    Some(rec)
}

/// Cuts `s` to at most `max` bytes on a character boundary, saying how much was cut.
pub fn truncate_for_journal(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… [{} more bytes not journaled]",
        &s[..end],
        s.len() - end
    )
}

/// The conversation a journal records, with consecutive user messages merged (inputs
/// delivered at a boundary are journaled as their own message but join the last one).
pub fn conversation(entries: &[JournalEntry]) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::new();
    for e in entries {
        if let JournalEvent::Message { role, content } = &e.event {
            match out.last_mut() {
                Some(m) if m.role == *role && *role == MessageRole::User => {
                    m.content.extend(content.iter().cloned());
                }
                _ => out.push(Message {
                    role: *role,
                    content: content.clone(),
                }),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use avix_proto::agent::ProcState;
    use avix_vfs::storage::{LocalInvocations, MemoryInvocations};

    fn key(id: &str) -> InvocationKey {
        InvocationKey::new("alice", "assistant", id).unwrap()
    }

    async fn appends_in_order_and_survive_reopening(journals: Journals) {
        let j = journals.open(&key("inv")).unwrap();
        j.append(JournalEvent::State {
            state: ProcState::Running,
            waiting_on: None,
        });
        j.append_durable(JournalEvent::Exit {
            state: ProcState::Completed,
            code: 0,
            reason: "done".into(),
        })
        .await
        .unwrap();
        let entries = journals.entries(&key("inv"));
        assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(j.read_at(0, 10_000).unwrap().len() as u64, j.size());
        let again = journals.open(&key("inv")).unwrap();
        again
            .append_durable(JournalEvent::State {
                state: ProcState::Paused,
                waiting_on: None,
            })
            .await
            .unwrap();
        assert_eq!(journals.entries(&key("inv")).last().unwrap().seq, 3);
        assert!(journals.entries(&key("none")).is_empty());
    }

    #[tokio::test]
    async fn appends_in_order_and_survive_reopening_on_disk() {
        let d = tempfile::tempdir().unwrap();
        let store = LocalInvocations::new(d.path()).unwrap();
        appends_in_order_and_survive_reopening(Journals::new(Arc::new(store))).await;
    }

    #[tokio::test]
    async fn appends_in_order_and_survive_reopening_in_memory() {
        appends_in_order_and_survive_reopening(Journals::new(Arc::new(MemoryInvocations::new())))
            .await;
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let good = serde_json::to_string(&JournalEntry {
            seq: 1,
            ts: Timestamp::now(),
            event: JournalEvent::State {
                state: ProcState::Running,
                waiting_on: None,
            },
        })
        .unwrap();
        let text = format!("{good}\n{{\"seq\":2,\"ts\":");
        assert_eq!(decode(text.as_bytes(), "test").len(), 1);
    }

    #[test]
    fn truncation_says_what_it_cut() {
        assert_eq!(truncate_for_journal("short", 10), "short");
        let t = truncate_for_journal("ééééé", 3);
        assert!(t.starts_with('é') && t.contains("more bytes"), "{t}");
    }
}
