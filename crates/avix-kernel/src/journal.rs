//! The journals: one JSONL file per invocation, the record of truth everything else (status,
//! history, replay) is derived from, plus the `invocation.yaml` summary next to it.
//!
//! Every append goes to one writer thread, which batches what arrives together (group commit):
//! it writes the lines, then makes them durable with one `fdatasync` (one file dirty) or one
//! `syncfs` (several), and only then wakes the callers that asked for durability. A thousand
//! agents reaching a turn boundary at once cost a handful of syncs, not a thousand.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use avix_proto::agent::{InvocationRecord, JournalEntry, JournalEvent};
use avix_proto::envelope::Document;
use avix_proto::llm::{Message, MessageRole};
use avix_proto::time::Timestamp;
use bytes::Bytes;
use tokio::sync::oneshot;

/// Longest tool result kept in the journal (the model still gets all of it).
pub const MAX_JOURNALED_RESULT: usize = 64 * 1024;
/// Open journal files the writer keeps before closing them all.
const MAX_OPEN_FILES: usize = 512;

type Done = oneshot::Sender<std::io::Result<()>>;

enum Cmd {
    Append {
        file: Arc<FileState>,
        bytes: Vec<u8>,
        done: Option<Done>,
    },
    Replace {
        path: PathBuf,
        bytes: Vec<u8>,
        done: Option<Done>,
    },
}

#[derive(Debug)]
struct FileState {
    /// Identity for the writer's maps (cheaper than hashing or comparing paths).
    id: u64,
    path: PathBuf,
    /// Bytes written to disk so far (what readers may read).
    size: AtomicU64,
}

/// The writer thread's handle. Cheap to clone.
#[derive(Debug, Clone)]
pub struct JournalWriter {
    // std channel: the writer is a plain thread doing blocking I/O.
    tx: mpsc::Sender<Cmd>,
    next_id: Arc<AtomicU64>,
}

impl JournalWriter {
    /// Starts the writer thread.
    pub fn start() -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Cmd>();
        std::thread::Builder::new()
            .name("avix-journal".into())
            .spawn(move || writer_loop(rx))?;
        Ok(Self {
            tx,
            next_id: Arc::new(AtomicU64::new(1)),
        })
    }

    /// Opens (creating its directory) the journal of an invocation in `dir`.
    pub fn open(&self, dir: &Path, id: &str) -> std::io::Result<Journal> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("journal.jsonl");
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let seq = match size {
            0 => 0,
            _ => read_entries(&path).last().map_or(0, |e| e.seq),
        };
        Ok(Journal {
            id: id.to_owned(),
            file: Arc::new(FileState {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                path,
                size: AtomicU64::new(size),
            }),
            record_path: dir.join("invocation.yaml"),
            seq: Mutex::new(seq),
            writer: self.clone(),
        })
    }

    fn send(&self, cmd: Cmd) {
        // The thread lives as long as the process; a send error means it died, and the error
        // is reported to durable waiters by their dropped sender.
        let _ = self.tx.send(cmd);
    }
}

/// Makes a batch durable: one `fdatasync` when a single existing file changed, else one
/// `syncfs` (several files, new files whose directory entries must persist, or replaced
/// records).
fn sync_batch(dirty: &[&File], whole_fs: bool) -> std::io::Result<()> {
    match dirty {
        [] => Ok(()),
        [one] if !whole_fs => one.sync_data(),
        [first, ..] => {
            // SAFETY: syncfs on a valid open descriptor.
            if unsafe { libc::syncfs(first.as_raw_fd()) } == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        }
    }
}

fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<File> {
    let tmp = path.with_extension("yaml.tmp");
    let written = File::create(&tmp).and_then(|mut f| f.write_all(bytes));
    if let Err(e) = written {
        // The old record stays; no half-written temp file either.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)?;
    // The directory entry must reach the disk too: sync the directory.
    File::open(path.parent().unwrap_or(Path::new(".")))
}

fn writer_loop(rx: mpsc::Receiver<Cmd>) {
    let mut files: HashMap<u64, File> = HashMap::new();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let mut waiters: Vec<(Done, std::io::Result<()>)> = Vec::new();
        let mut dirty: std::collections::HashSet<u64> = std::collections::HashSet::new();
        // A file created in this batch needs its directory entry synced too: then the whole
        // filesystem is synced at once.
        let mut new_files: Vec<PathBuf> = Vec::new();
        let mut dirs: Vec<File> = Vec::new();
        for cmd in batch {
            match cmd {
                Cmd::Append { file, bytes, done } => {
                    let r = (|| {
                        let f = match files.entry(file.id) {
                            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                            std::collections::hash_map::Entry::Vacant(v) => {
                                if !file.path.exists() {
                                    new_files.push(file.path.clone());
                                }
                                v.insert(
                                    OpenOptions::new()
                                        .create(true)
                                        .append(true)
                                        .open(&file.path)?,
                                )
                            }
                        };
                        if let Err(e) = f.write_all(&bytes) {
                            // A full disk may take part of the line: cut it off, so the journal
                            // stays whole lines and the next append starts where this one did.
                            let _ = f.set_len(file.size.load(Ordering::Acquire));
                            return Err(e);
                        }
                        file.size.fetch_add(bytes.len() as u64, Ordering::Release);
                        Ok(())
                    })();
                    if let Err(e) = &r {
                        tracing::error!(path = %file.path.display(), error = %e, "journal write failed");
                    }
                    if let Some(d) = done {
                        if r.is_ok() {
                            dirty.insert(file.id);
                        }
                        waiters.push((d, r));
                    }
                }
                Cmd::Replace { path, bytes, done } => {
                    let r = replace(&path, &bytes).map(|dir| dirs.push(dir));
                    if let Err(e) = &r {
                        tracing::error!(path = %path.display(), error = %e, "invocation record write failed");
                    }
                    if let Some(d) = done {
                        waiters.push((d, r));
                    }
                }
            }
        }
        if !waiters.is_empty() {
            let mut to_sync: Vec<&File> = dirty.iter().filter_map(|id| files.get(id)).collect();
            let synced = if to_sync.len() == 1 && dirs.is_empty() && new_files.len() <= 1 {
                // One file: its data, and for a new one its directory and that directory's
                // parent (the invocation directory is new too).
                let mut r = to_sync[0].sync_data();
                for f in &new_files {
                    for d in f.ancestors().skip(1).take(2) {
                        if r.is_ok() {
                            r = File::open(d).and_then(|d| d.sync_all());
                        }
                    }
                }
                r
            } else {
                to_sync.extend(dirs.iter());
                sync_batch(&to_sync, true)
            };
            for (d, r) in waiters {
                let r = match (r, &synced) {
                    (Err(e), _) => Err(e),
                    (Ok(()), Ok(())) => Ok(()),
                    (Ok(()), Err(e)) => Err(std::io::Error::new(e.kind(), e.to_string())),
                };
                let _ = d.send(r);
            }
        }
        if files.len() > MAX_OPEN_FILES {
            files.clear();
        }
    }
}

/// One invocation's journal.
#[derive(Debug)]
pub struct Journal {
    id: String,
    file: Arc<FileState>,
    record_path: PathBuf,
    // Held while numbering and queueing a line, so lines reach the file in `seq` order.
    seq: Mutex<u64>,
    writer: JournalWriter,
}

/// The journal could not be made durable.
#[derive(Debug, thiserror::Error)]
#[error("journal {path}: {source}")]
pub struct JournalError {
    path: String,
    #[source]
    source: std::io::Error,
}

impl Journal {
    /// The invocation id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The journal file on the host.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    fn queue(&self, event: JournalEvent, done: Option<Done>) {
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
        self.writer.send(Cmd::Append {
            file: self.file.clone(),
            bytes,
            done,
        });
    }

    /// Appends an event; it reaches the disk soon, durably at the next durable append.
    pub fn append(&self, event: JournalEvent) {
        self.queue(event, None);
    }

    /// Appends an event and waits until it (and everything before it) is durable.
    pub async fn append_durable(&self, event: JournalEvent) -> Result<(), JournalError> {
        let (tx, rx) = oneshot::channel();
        self.queue(event, Some(tx));
        self.wait(rx).await
    }

    /// Appends an event and blocks the calling thread until it is durable: for a synchronous
    /// caller that must not report success before the event is recorded (an answer written
    /// to an approval file). The writer is its own thread, so this cannot deadlock it; the
    /// wait runs on a scoped thread, which keeps it legal inside an async context too.
    pub fn append_durable_blocking(&self, event: JournalEvent) -> Result<(), JournalError> {
        let (tx, rx) = oneshot::channel();
        self.queue(event, Some(tx));
        let err = |source| JournalError {
            path: self.file.path.display().to_string(),
            source,
        };
        match std::thread::scope(|s| s.spawn(move || rx.blocking_recv()).join()) {
            Ok(Ok(r)) => r.map_err(err),
            _ => Err(err(std::io::Error::other("the journal writer stopped"))),
        }
    }

    async fn wait(&self, rx: oneshot::Receiver<std::io::Result<()>>) -> Result<(), JournalError> {
        let err = |source| JournalError {
            path: self.file.path.display().to_string(),
            source,
        };
        match rx.await {
            Ok(r) => r.map_err(err),
            Err(_) => Err(err(std::io::Error::other("the journal writer stopped"))),
        }
    }

    /// Replaces `invocation.yaml`; with `durable`, waits until it is on disk.
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
            self.writer.send(Cmd::Replace {
                path: self.record_path.clone(),
                bytes,
                done: Some(tx),
            });
            self.wait(rx).await
        } else {
            self.writer.send(Cmd::Replace {
                path: self.record_path.clone(),
                bytes,
                done: None,
            });
            Ok(())
        }
    }

    /// Bytes on disk so far.
    pub fn size(&self) -> u64 {
        self.file.size.load(Ordering::Acquire)
    }

    /// Reads up to `len` bytes at `offset` of what is on disk.
    pub fn read_at(&self, offset: u64, len: u32) -> std::io::Result<Bytes> {
        let end = self.size();
        if offset >= end {
            return Ok(Bytes::new());
        }
        let len = usize::try_from(u64::from(len).min(end - offset)).unwrap_or(usize::MAX);
        let f = File::open(&self.file.path)?;
        let mut buf = vec![0u8; len];
        let mut done = 0;
        while done < len {
            match f.read_at(&mut buf[done..], offset + done as u64)? {
                0 => break,
                n => done += n,
            }
        }
        buf.truncate(done);
        Ok(Bytes::from(buf))
    }
}

/// Reads every decodable entry of a journal file (undecodable lines are skipped with a
/// warning, as a torn last line after a crash would be).
pub fn read_entries(path: &Path) -> Vec<JournalEntry> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| match serde_json::from_str::<JournalEntry>(l) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "skipping an undecodable journal line");
                None
            }
        })
        .collect()
}

/// Reads an `invocation.yaml`.
pub fn read_record(path: &Path) -> Option<InvocationRecord> {
    let bytes = std::fs::read(path).ok()?;
    Document::<InvocationRecord>::parse(&bytes)
        .ok()
        .map(|d| d.spec)
}

/// Rebuilds an invocation record from a journal (a run that never wrote its record: it was
/// interrupted). The state is the last one journaled; without an exit it reads `failed`
/// with the reason "interrupted".
pub fn record_from_journal(path: &Path) -> Option<InvocationRecord> {
    use avix_proto::agent::ProcState;
    let entries = read_entries(path);
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
    let id = path.parent()?.file_name()?.to_str()?.to_owned();
    let mut rec = InvocationRecord {
        id,
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
    for e in &entries {
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

    #[tokio::test]
    async fn appends_in_order_and_survive_reopening() {
        let d = tempfile::tempdir().unwrap();
        let w = JournalWriter::start().unwrap();
        let j = w.open(&d.path().join("inv"), "inv").unwrap();
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
        let entries = read_entries(j.path());
        assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(j.read_at(0, 10_000).unwrap().len() as u64, j.size());
        let again = w.open(&d.path().join("inv"), "inv").unwrap();
        again
            .append_durable(JournalEvent::State {
                state: ProcState::Paused,
                waiting_on: None,
            })
            .await
            .unwrap();
        assert_eq!(read_entries(again.path()).last().unwrap().seq, 3);
    }

    #[tokio::test]
    async fn many_journals_commit_together() {
        let d = tempfile::tempdir().unwrap();
        let w = JournalWriter::start().unwrap();
        let journals: Vec<_> = (0..50)
            .map(|i| w.open(&d.path().join(format!("j{i}")), "x").unwrap())
            .collect();
        let all = journals.iter().map(|j| {
            j.append_durable(JournalEvent::State {
                state: ProcState::Running,
                waiting_on: None,
            })
        });
        for r in futures_join(all).await {
            r.unwrap();
        }
        assert!(journals.iter().all(|j| j.size() > 0));
    }

    async fn futures_join<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
        let mut out = Vec::new();
        let fs: Vec<_> = fs.map(Box::pin).collect();
        for f in fs {
            out.push(f.await);
        }
        out
    }

    #[test]
    fn truncation_says_what_it_cut() {
        assert_eq!(truncate_for_journal("short", 10), "short");
        let t = truncate_for_journal("ééééé", 3);
        assert!(t.starts_with('é') && t.contains("more bytes"), "{t}");
    }
}
