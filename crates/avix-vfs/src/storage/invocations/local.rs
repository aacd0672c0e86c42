//! Journals and records as files in the users' tree on local disk:
//! `<users>/<user>/agents/<agent>/<id>/journal.jsonl` and `invocation.yaml` beside it, so they
//! show through the VFS and the mount as `/users/<user>/agents/…`.
//!
//! Every write goes to one writer thread, which batches what arrives together (group commit):
//! it writes the lines, then makes them durable with one `fdatasync` (one file dirty) or one
//! `syncfs` (several), and only then tells the callers that asked for durability. A thousand
//! agents reaching a turn boundary at once cost a handful of syncs, not a thousand.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use bytes::Bytes;

use super::{Durable, InvocationKey, InvocationStore, JournalLog, component};
use crate::storage::StorageError;

/// The journal's file name in an invocation directory.
pub const JOURNAL_FILE: &str = "journal.jsonl";
/// The record's file name in an invocation directory.
pub const RECORD_FILE: &str = "invocation.yaml";
/// Open journal files the writer keeps before closing them all.
const MAX_OPEN_FILES: usize = 512;

enum Cmd {
    Append {
        file: Arc<FileState>,
        bytes: Vec<u8>,
        done: Option<Durable>,
    },
    Replace {
        path: PathBuf,
        bytes: Vec<u8>,
        done: Option<Durable>,
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

/// Journals and records under a users' tree on local disk.
#[derive(Debug, Clone)]
pub struct LocalInvocations {
    users: PathBuf,
    // std channel: the writer is a plain thread doing blocking I/O.
    tx: mpsc::Sender<Cmd>,
    next_id: Arc<AtomicU64>,
}

impl LocalInvocations {
    /// Keeps journals under `users` (the host directory of `/users`) and starts the writer
    /// thread.
    pub fn new(users: impl Into<PathBuf>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Cmd>();
        std::thread::Builder::new()
            .name("avix-journal".into())
            .spawn(move || writer_loop(rx))?;
        Ok(Self {
            users: users.into(),
            tx,
            next_id: Arc::new(AtomicU64::new(1)),
        })
    }

    /// The directory holding `user`'s runs, one directory per agent.
    fn agents(&self, user: &str) -> PathBuf {
        self.users.join(user).join("agents")
    }

    /// The directory of one invocation.
    pub fn dir(&self, key: &InvocationKey) -> PathBuf {
        self.agents(key.user()).join(key.agent()).join(key.id())
    }
}

/// The names of the subdirectories of `dir` that can be key parts.
fn subdirs(dir: &Path) -> Result<Vec<String>, StorageError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    Ok(entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| component(n))
        .collect())
}

impl InvocationStore for LocalInvocations {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn open(&self, key: &InvocationKey) -> Result<Arc<dyn JournalLog>, StorageError> {
        let dir = self.dir(key);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(JOURNAL_FILE);
        let size = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e.into()),
        };
        Ok(Arc::new(LocalLog {
            file: Arc::new(FileState {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                path,
                size: AtomicU64::new(size),
            }),
            record: dir.join(RECORD_FILE),
            tx: self.tx.clone(),
        }))
    }

    fn read_journal(&self, key: &InvocationKey) -> Result<Bytes, StorageError> {
        Ok(Bytes::from(std::fs::read(
            self.dir(key).join(JOURNAL_FILE),
        )?))
    }

    fn read_record(&self, key: &InvocationKey) -> Result<Bytes, StorageError> {
        Ok(Bytes::from(std::fs::read(self.dir(key).join(RECORD_FILE))?))
    }

    fn has_record(&self, key: &InvocationKey) -> bool {
        self.dir(key).join(RECORD_FILE).exists()
    }

    fn list(&self, user: &str, agent: Option<&str>) -> Result<Vec<InvocationKey>, StorageError> {
        if !component(user) {
            return Ok(Vec::new());
        }
        let base = self.agents(user);
        let agents = match agent {
            Some(a) if component(a) => vec![a.to_owned()],
            Some(_) => return Ok(Vec::new()),
            None => subdirs(&base)?,
        };
        let mut out = Vec::new();
        for a in agents {
            for id in subdirs(&base.join(&a))? {
                out.extend(InvocationKey::new(user, &a, &id));
            }
        }
        Ok(out)
    }

    fn find(&self, user: &str, id: &str) -> Result<Option<InvocationKey>, StorageError> {
        if !component(user) || !component(id) {
            return Ok(None);
        }
        // One stat per agent, not a listing of every run.
        Ok(subdirs(&self.agents(user))?
            .into_iter()
            .filter_map(|a| InvocationKey::new(user, &a, id))
            .find(|k| self.dir(k).is_dir()))
    }

    fn remove(&self, key: &InvocationKey) -> Result<(), StorageError> {
        Ok(std::fs::remove_dir_all(self.dir(key))?)
    }

    fn describe(&self, key: &InvocationKey) -> String {
        self.dir(key).join(JOURNAL_FILE).display().to_string()
    }
}

/// One journal file and the record beside it.
#[derive(Debug)]
struct LocalLog {
    file: Arc<FileState>,
    record: PathBuf,
    tx: mpsc::Sender<Cmd>,
}

impl LocalLog {
    fn send(&self, cmd: Cmd) {
        // The thread lives as long as the process; should it have died, the caller waiting
        // for durability is told.
        if let Err(mpsc::SendError(cmd)) = self.tx.send(cmd) {
            let (Cmd::Append { done, .. } | Cmd::Replace { done, .. }) = cmd;
            if let Some(d) = done {
                d(Err(std::io::Error::other("the journal writer stopped")));
            }
        }
    }
}

impl JournalLog for LocalLog {
    fn append(&self, bytes: Vec<u8>, durable: Option<Durable>) {
        self.send(Cmd::Append {
            file: self.file.clone(),
            bytes,
            done: durable,
        });
    }

    fn write_record(&self, bytes: Vec<u8>, durable: Option<Durable>) {
        self.send(Cmd::Replace {
            path: self.record.clone(),
            bytes,
            done: durable,
        });
    }

    fn size(&self) -> u64 {
        self.file.size.load(Ordering::Acquire)
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Bytes, StorageError> {
        let end = self.size();
        if offset >= end {
            return Ok(Bytes::new());
        }
        let len = len.min(usize::try_from(end - offset).unwrap_or(usize::MAX));
        let f = File::open(&self.file.path)?;
        Ok(crate::storage::local::read_upto(&f, offset, len)?)
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

/// Replaces the file at `path` by renaming a complete temporary file over it; returns its
/// directory, whose entry must be synced too.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<File> {
    let tmp = path.with_extension("yaml.tmp");
    let written = File::create(&tmp).and_then(|mut f| f.write_all(bytes));
    if let Err(e) = written {
        // The old record stays; no half-written temp file either.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)?;
    File::open(path.parent().unwrap_or(Path::new(".")))
}

/// Writes one append to its file, cutting a partial write off again.
fn append(
    files: &mut HashMap<u64, File>,
    file: &FileState,
    bytes: &[u8],
    new_files: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
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
    if let Err(e) = f.write_all(bytes) {
        // A full disk may take part of the line: cut it off, so the journal stays whole lines
        // and the next append starts where this one did.
        let _ = f.set_len(file.size.load(Ordering::Acquire));
        return Err(e);
    }
    file.size.fetch_add(bytes.len() as u64, Ordering::Release);
    Ok(())
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
        let mut waiters: Vec<(Durable, std::io::Result<()>)> = Vec::new();
        let mut dirty: HashSet<u64> = HashSet::new();
        // A file created in this batch needs its directory entry synced too.
        let mut new_files: Vec<PathBuf> = Vec::new();
        let mut dirs: Vec<File> = Vec::new();
        for cmd in batch {
            match cmd {
                Cmd::Append { file, bytes, done } => {
                    let r = append(&mut files, &file, &bytes, &mut new_files);
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
                d(match (r, &synced) {
                    (Err(e), _) => Err(e),
                    (Ok(()), Ok(())) => Ok(()),
                    (Ok(()), Err(e)) => Err(std::io::Error::new(e.kind(), e.to_string())),
                });
            }
        }
        if files.len() > MAX_OPEN_FILES {
            files.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_contract() {
        let d = tempfile::tempdir().unwrap();
        let store = LocalInvocations::new(d.path()).unwrap();
        super::super::contract::check(&store);
        // The files are where the users' tree shows them.
        let k = InvocationKey::new("bob", "assistant", "inv-3").unwrap();
        assert!(
            d.path()
                .join("bob/agents/assistant/inv-3/journal.jsonl")
                .is_file()
        );
        assert_eq!(
            store.describe(&k),
            d.path()
                .join("bob/agents/assistant/inv-3/journal.jsonl")
                .display()
                .to_string()
        );
    }

    #[test]
    fn many_journals_commit_together() {
        let d = tempfile::tempdir().unwrap();
        let store = LocalInvocations::new(d.path()).unwrap();
        let (tx, rx) = mpsc::channel();
        let logs: Vec<_> = (0..50)
            .map(|i| {
                store
                    .open(&InvocationKey::new("u", "a", &format!("j{i}")).unwrap())
                    .unwrap()
            })
            .collect();
        for l in &logs {
            let tx = tx.clone();
            l.append(
                b"{}\n".to_vec(),
                Some(Box::new(move |r| tx.send(r).unwrap())),
            );
        }
        for _ in &logs {
            rx.recv().unwrap().unwrap();
        }
        assert!(logs.iter().all(|l| l.size() == 3));
    }
}
