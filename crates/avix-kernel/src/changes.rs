//! Workspace change sets, and what is built from them: the diff of a run and forks.
//!
//! A tool call that can change the calling run's workspace is tracked: `fs/write` and
//! `fs/delete` for the one file they name, `exec/*` for the whole workspace (a walk before
//! and after the call). What changed is journaled after the call as a `workspace` line
//! ([`avix_proto::agent::FileChange`]: each file's content id before and after). The content a
//! file had before a change is kept in the user's object store
//! (`/users/<u>/snapshots/objects/<sha256>`, written once per content), so a fork can put the
//! workspace back as it was at any turn.
//!
//! Content ids are cached by path, size and modification time, so a walk reads only the
//! files that changed since the last one. A workspace over the snapshot caps
//! ([`crate::snapshots::MAX_WORKSPACE_BYTES`], [`crate::snapshots::MAX_WORKSPACE_FILES`]) is
//! not walked: the call's line says its changes are untracked.
//!
//! Turns: turn N is the run's N-th answer from the model and the tool calls it asked for; the
//! changes of a call belong to the turn that asked for it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use avix_proto::agent::{
    DiffEntry, FileChange, JournalEntry, JournalEvent, SpawnRequest, WorkspaceDiff,
};
use avix_proto::llm::{ContentBlock, MessageRole};
use avix_proto::{AgentName, Error, ErrorKind, Pid};
use avix_vfs::storage::InvocationKey;
use avix_vfs::{Caller, EntryKind, VfsError, VfsPath};
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::Kernel;
use crate::process::{Grants, Process};
use crate::snapshots::{MAX_WORKSPACE_BYTES, MAX_WORKSPACE_FILES};
use crate::spawn::{Origin, Provenance, SpawnError};

/// The content id of `data`: `sha256:` and 64 hex digits.
pub fn content_id(data: &[u8]) -> String {
    format!("sha256:{}", avix_auth::hex::encode(&Sha256::digest(data)))
}

/// The object file name of a content id (its hex digits), if it is one.
fn object_name(id: &str) -> Option<&str> {
    let hex = id.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// Most entries the content-id cache holds before it starts again.
const CACHE_ENTRIES: usize = 200_000;

/// Content ids of files already read, by VFS path, valid while size and modification time
/// are the same; `stored` once the content is in the object store.
#[derive(Debug, Default)]
pub(crate) struct IdCache(Mutex<HashMap<String, Known>>);

#[derive(Debug, Clone)]
struct Known {
    size: u64,
    mtime: SystemTime,
    id: String,
    stored: bool,
}

impl IdCache {
    fn get(&self, path: &VfsPath, size: u64, mtime: SystemTime) -> Option<Known> {
        let m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.get(path.as_str())
            .filter(|k| k.size == size && k.mtime == mtime)
            .cloned()
    }

    fn put(&self, path: &VfsPath, k: Known) {
        let mut m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if m.len() >= CACHE_ENTRIES {
            m.clear();
        }
        m.insert(path.as_str().to_owned(), k);
    }
}

/// What a tool call may change in its run's workspace.
#[derive(Debug, Clone)]
pub(crate) enum Scope {
    /// One file.
    File(String),
    /// Anything in it.
    Tree,
}

/// Files of a workspace (relative path → content id), or why they could not be listed.
type Manifest = Result<BTreeMap<String, String>, String>;

fn vfs_err(e: VfsError) -> Error {
    Error::new(avix_proto::HasKind::kind(&e), e.to_string())
}

fn path(s: &str) -> Result<VfsPath, Error> {
    VfsPath::parse(s).map_err(|e| Error::invalid(format!("{s}: {e}")))
}

/// The turn each journal entry belongs to: the number of answers from the model before it
/// (an answer's own line included).
fn turns(entries: &[JournalEntry]) -> Vec<u32> {
    let mut t = 0u32;
    entries
        .iter()
        .map(|e| {
            if let JournalEvent::Message {
                role: MessageRole::Assistant,
                ..
            } = e.event
            {
                t += 1;
            }
            t
        })
        .collect()
}

/// The workspace a run worked in, from its first journal line (`default` when it is its
/// user's).
fn workspace_in(entries: &[JournalEntry], default: String) -> String {
    match entries.first().map(|e| &e.event) {
        Some(JournalEvent::Spawned {
            workspace: Some(w), ..
        }) => w.clone(),
        _ => default,
    }
}

impl Kernel {
    /// `/users/<user>/snapshots/objects`.
    fn objects_dir(user: &str) -> String {
        format!("/users/{user}/snapshots/objects")
    }

    /// Keeps `data` (whose id is `id`) in `user`'s object store, unless it is there already.
    fn store_object(&self, user: &str, id: &str, data: &[u8]) -> Result<(), VfsError> {
        let k = Caller::kernel();
        let vfs = self.vfs();
        let Some(name) = object_name(id) else {
            return Ok(());
        };
        let dir = VfsPath::parse(&Self::objects_dir(user))?;
        let file = dir.join(name)?;
        if vfs.stat(&k, &file).is_ok() {
            return Ok(());
        }
        for d in [dir.parent(), Some(dir.clone())].into_iter().flatten() {
            match vfs.create_dir(&k, &d) {
                Ok(()) | Err(VfsError::AlreadyExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        vfs.write(&k, &file, data).map(drop)
    }

    /// The content `id` from `user`'s object store, checked against its id.
    pub fn read_object(&self, user: &str, id: &str) -> Result<Bytes, Error> {
        let name = object_name(id)
            .ok_or_else(|| Error::invalid(format!("{id:?} is not a content id (sha256:…)")))?;
        let file = path(&format!("{}/{name}", Self::objects_dir(user)))?;
        let data = self
            .vfs()
            .read(&Caller::kernel(), &file)
            .map_err(|e| match e {
                VfsError::NotFound(_) => Error::not_found(format!(
                    "the content {id} is no longer kept (it was removed from {})",
                    Self::objects_dir(user)
                )),
                e => vfs_err(e),
            })?;
        if content_id(&data) != id {
            return Err(Error::new(
                ErrorKind::Internal,
                format!("{file} does not hold the content {id} (it was changed or cut short)"),
            ));
        }
        Ok(data)
    }

    /// The content id of the file at `file` (`None`: no such file), from the cache when its
    /// size and time are unchanged; with `store`, its content is also kept in `user`'s object
    /// store.
    fn file_id(&self, user: &str, file: &VfsPath, store: bool) -> Result<Option<String>, VfsError> {
        let k = Caller::kernel();
        let st = match self.vfs().stat(&k, file) {
            Ok(st) if st.kind == EntryKind::File => st,
            Ok(_) | Err(VfsError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        if let Some(known) = self.ids.get(file, st.size, st.mtime)
            && (known.stored || !store)
        {
            return Ok(Some(known.id));
        }
        let data = match self.vfs().read(&k, file) {
            Ok(d) => d,
            Err(VfsError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let id = content_id(&data);
        if store {
            self.store_object(user, &id, &data)?;
        }
        self.ids.put(
            file,
            Known {
                size: st.size,
                mtime: st.mtime,
                id: id.clone(),
                stored: store,
            },
        );
        Ok(Some(id))
    }

    /// The files `scope` covers in the workspace `root`, with their content ids.
    fn manifest(&self, user: &str, root: &VfsPath, scope: &Scope, store: bool) -> Manifest {
        let io = |e: VfsError| format!("cannot read the workspace: {e}");
        let mut out = BTreeMap::new();
        match scope {
            Scope::File(rel) => {
                let f = VfsPath::parse(&format!("{}/{rel}", root.as_str()))
                    .map_err(|e| e.to_string())?;
                if let Some(id) = self.file_id(user, &f, store).map_err(io)? {
                    out.insert(rel.clone(), id);
                }
            }
            Scope::Tree => {
                let k = Caller::kernel();
                let (mut files, mut bytes) = (0u64, 0u64);
                let mut stack = vec![root.clone()];
                while let Some(d) = stack.pop() {
                    let list = match self.vfs().list(&k, &d) {
                        Ok(l) => l,
                        Err(VfsError::NotFound(_)) if &d == root => return Ok(out),
                        Err(e) => return Err(io(e)),
                    };
                    for e in list {
                        let child = d.join(&e.name).map_err(|e| e.to_string())?;
                        if e.kind == EntryKind::Dir {
                            stack.push(child);
                            continue;
                        }
                        files += 1;
                        bytes += self.vfs().stat(&k, &child).map_or(0, |s| s.size);
                        if files > MAX_WORKSPACE_FILES || bytes > MAX_WORKSPACE_BYTES {
                            return Err(format!(
                                "the workspace is over {} MiB or {} files: its changes are not tracked",
                                MAX_WORKSPACE_BYTES >> 20,
                                MAX_WORKSPACE_FILES
                            ));
                        }
                        let rel = child.as_str()[root.as_str().len() + 1..].to_owned();
                        if let Some(id) = self.file_id(user, &child, store).map_err(io)? {
                            out.insert(rel, id);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// What `tool` called with `args` may change in `p`'s workspace (`None`: nothing tracked).
    pub(crate) fn change_scope(p: &Process, tool: &str, args: &serde_json::Value) -> Option<Scope> {
        match tool {
            "fs/write" | "fs/delete" => {
                let given = args.get("path")?.as_str()?;
                let full = crate::tools::fs::resolve_in(p, given).ok()?;
                let rel = full
                    .as_str()
                    .strip_prefix(p.workspace.as_str())?
                    .strip_prefix('/')?;
                Some(Scope::File(rel.to_owned()))
            }
            _ if tool.starts_with("exec/") && tool != "exec/network" => Some(Scope::Tree),
            _ => None,
        }
    }

    /// Runs a tool call (`call`) that may change `scope` of `p`'s workspace
    /// ([`Kernel::change_scope`]), and journals what it changed.
    pub(crate) async fn tracked<T>(
        self: &Arc<Self>,
        p: &Arc<Process>,
        call_id: &str,
        scope: Scope,
        call: impl std::future::Future<Output = T>,
    ) -> T {
        let Ok(root) = VfsPath::parse(&p.workspace) else {
            return call.await;
        };
        let walk = |store: bool| {
            let (k, user, root, scope) = (
                self.clone(),
                p.user.to_string(),
                root.clone(),
                scope.clone(),
            );
            tokio::task::spawn_blocking(move || k.manifest(&user, &root, &scope, store))
        };
        let before = walk(true).await;
        let out = call.await;
        let after = walk(false).await;
        let (changes, untracked) = match (before, after) {
            (Ok(Ok(b)), Ok(Ok(a))) => (compare(&b, &a), None),
            (Ok(Err(why)), _) | (_, Ok(Err(why))) => (Vec::new(), Some(why)),
            (Err(e), _) | (_, Err(e)) => (Vec::new(), Some(format!("the walk failed: {e}"))),
        };
        if !changes.is_empty() || untracked.is_some() {
            p.journal.append(JournalEvent::Workspace {
                call_id: call_id.to_owned(),
                changes,
                untracked,
            });
        }
        out
    }

    /// The journal of a run `caller` may see — a process (`pid`) or an invocation, one of
    /// them — with its user.
    fn run_as(
        &self,
        caller: &Caller,
        pid: Option<Pid>,
        invocation: Option<&str>,
    ) -> Result<InvocationKey, Error> {
        match (pid, invocation) {
            (Some(pid), None) => {
                let missing = || Error::not_found(format!("no process {pid}"));
                let p = self.procs().get(pid).ok_or_else(missing)?;
                self.users_asked(caller, Some(p.user.as_str()))
                    .map_err(|_| missing())?;
                Ok(p.journal.key().clone())
            }
            (None, Some(id)) => {
                let missing =
                    || Error::not_found(format!("no invocation {id} (proc history lists yours)"));
                if !avix_vfs::storage::invocations::component(id) {
                    return Err(missing());
                }
                self.users_asked(caller, None)?
                    .iter()
                    .find_map(|u| self.journals().find(u.as_str(), id))
                    .ok_or_else(missing)
            }
            _ => Err(Error::invalid(
                "name the run by pid or by invocation, one of them",
            )),
        }
    }

    /// What a run changed in its workspace, file by file — the whole run, or turns 1 to `at`.
    pub fn workspace_diff(
        &self,
        caller: &Caller,
        pid: Option<Pid>,
        invocation: Option<&str>,
        at: Option<u32>,
    ) -> Result<WorkspaceDiff, Error> {
        let key = self.run_as(caller, pid, invocation)?;
        let entries = self.journals().entries(&key);
        let turn_of = turns(&entries);
        let last = turn_of.last().copied().unwrap_or(0);
        if let Some(n) = at
            && n > last
        {
            return Err(Error::invalid(format!(
                "the run has taken {last} turns; there is no turn {n}"
            )));
        }
        let upto = at.unwrap_or(u32::MAX);
        let mut files: BTreeMap<String, DiffEntry> = BTreeMap::new();
        let mut firsts: HashMap<String, Option<String>> = HashMap::new();
        let mut untracked = Vec::new();
        for (e, &t) in entries.iter().zip(&turn_of) {
            let JournalEvent::Workspace {
                changes,
                untracked: why,
                ..
            } = &e.event
            else {
                continue;
            };
            if t > upto {
                break;
            }
            if let Some(why) = why {
                untracked.push(format!("turn {t}: {why}"));
            }
            for c in changes {
                let before = firsts
                    .entry(c.path.clone())
                    .or_insert_with(|| c.before.clone());
                let whole = FileChange {
                    path: c.path.clone(),
                    before: before.clone(),
                    after: c.after.clone(),
                };
                match whole.status() {
                    Some(status) => {
                        let d = files.entry(c.path.clone()).or_insert_with(|| DiffEntry {
                            path: c.path.clone(),
                            status,
                            before: None,
                            after: None,
                            turns: Vec::new(),
                        });
                        d.status = status;
                        d.before = whole.before;
                        d.after = whole.after;
                        if d.turns.last() != Some(&t) {
                            d.turns.push(t);
                        }
                    }
                    // Back as it was: no change.
                    None => {
                        files.remove(&c.path);
                    }
                }
            }
        }
        Ok(WorkspaceDiff {
            invocation: key.id().to_owned().into(),
            workspace: workspace_in(&entries, self.default_workspace(key.user())),
            at,
            turns: last,
            files: files.into_values().collect(),
            untracked,
        })
    }

    /// Forks a run `caller` owns — a process (`pid`) or an invocation — at turn `at` (default:
    /// its last): a new process of the same agent whose conversation is the run's up to the
    /// end of that turn (then `goal`, when given, as a new message), holding what the run
    /// held, working in its own copy of the workspace as it was at that turn
    /// (`/users/<u>/forks/<agent>-<id>`): the run's later changes are undone in the copy
    /// from the change sets.
    pub async fn fork(
        self: &Arc<Self>,
        caller: &Caller,
        pid: Option<Pid>,
        invocation: Option<&str>,
        at: Option<u32>,
        goal: Option<String>,
    ) -> Result<Arc<Process>, SpawnError> {
        let user = crate::policy::spawn_for(caller, None)?;
        let key = self.run_as(caller, pid, invocation)?;
        if key.user() != user.as_str() {
            return Err(SpawnError::Forbidden(format!(
                "invocation {} is {}'s run; fork your own runs",
                key.id(),
                key.user()
            )));
        }
        let entries = self.journals().entries(&key);
        let turn_of = turns(&entries);
        let last = turn_of.last().copied().unwrap_or(0);
        let at = at.unwrap_or(last);
        if at > last {
            return Err(SpawnError::BadRequest(format!(
                "the run has taken {last} turns; there is no turn {at} to fork at"
            )));
        }
        let Some(JournalEvent::Spawned {
            agent,
            goal: first_goal,
            model,
            granted,
            interactive,
            ..
        }) = entries.first().map(|e| e.event.clone())
        else {
            return Err(SpawnError::Io(format!(
                "the journal of {} has no start",
                key.id()
            )));
        };
        // The entries up to the end of turn `at`: everything before the next answer.
        let cut = turn_of
            .iter()
            .position(|&t| t > at)
            .unwrap_or(entries.len());
        let kept = &entries[..cut];
        let mut messages = crate::journal::conversation(kept);
        if let Some(g) = goal.as_deref().map(str::trim).filter(|g| !g.is_empty()) {
            let text = ContentBlock::Text { text: g.to_owned() };
            match messages.last_mut() {
                Some(m) if m.role == MessageRole::User => m.content.push(text),
                _ => messages.push(avix_proto::llm::Message {
                    role: MessageRole::User,
                    content: vec![text],
                }),
            }
        }
        let pending = crate::recovery::pending_calls(&messages, kept);
        let mut grants = Grants::default();
        grants.tools.extend(granted);
        for e in kept {
            if let JournalEvent::Grant { tool, .. } = &e.event {
                grants.tools.insert(tool.clone());
            }
        }
        let from = workspace_in(&entries, self.default_workspace(key.user()));
        let (k, u, a) = (self.clone(), user.to_string(), agent.clone());
        let later = entries[cut..].to_vec();
        let workspace =
            tokio::task::spawn_blocking(move || k.fork_workspace(&u, &a, &from, &later))
                .await
                .map_err(|e| SpawnError::Io(format!("the workspace copy failed: {e}")))??;
        let req = SpawnRequest {
            agent: AgentName::new(&agent).map_err(|e| SpawnError::BadRequest(e.to_string()))?,
            goal: first_goal,
            model: (!model.is_empty()).then_some(model),
            tools: None,
            interactive: Some(interactive),
            session: None,
            params: Default::default(),
        };
        let origin = Origin::Restored {
            from: Provenance::Fork {
                from: key.id().to_owned().into(),
                at,
            },
            grants,
            messages,
            pending,
            workspace: Some(workspace),
        };
        self.spawn_with(&user, req, None, origin).await
    }

    /// Copies the workspace `from` to a new `/users/<user>/forks/<agent>-<random>` and undoes
    /// there the changes journaled in `later` (each file gets back the content it had before
    /// the first of them). Returns the copy's path.
    fn fork_workspace(
        &self,
        user: &str,
        agent: &str,
        from: &str,
        later: &[JournalEntry],
    ) -> Result<String, SpawnError> {
        let k = Caller::kernel();
        let vfs = self.vfs();
        let io = |e: VfsError| SpawnError::Io(format!("cannot make the fork's workspace: {e}"));
        let forks = path(&format!("/users/{user}/forks"))?;
        match vfs.create_dir(&k, &forks) {
            Ok(()) | Err(VfsError::AlreadyExists(_)) => {}
            Err(e) => return Err(io(e)),
        }
        let to = forks
            .join(&format!("{agent}-{:08x}", rand::random::<u32>()))
            .map_err(|e| SpawnError::BadRequest(e.to_string()))?;
        let src = path(from)?;
        match self.copy_tree(&src, &to) {
            Ok(_) => {}
            Err(crate::snapshots::CopyError::TooBig) => {
                return Err(SpawnError::Refused(Error::new(
                    ErrorKind::Limit,
                    format!(
                        "{from} is over {} MiB or {} files: too big to copy for a fork",
                        MAX_WORKSPACE_BYTES >> 20,
                        MAX_WORKSPACE_FILES
                    ),
                )));
            }
            Err(crate::snapshots::CopyError::Io(e)) => return Err(io(e)),
        }
        let mut undo: BTreeMap<String, Option<String>> = BTreeMap::new();
        for e in later {
            if let JournalEvent::Workspace { changes, .. } = &e.event {
                for c in changes {
                    undo.entry(c.path.clone())
                        .or_insert_with(|| c.before.clone());
                }
            }
        }
        let undone = (|| -> Result<(), SpawnError> {
            for (rel, before) in &undo {
                let f = path(&format!("{}/{rel}", to.as_str()))?;
                match before {
                    None => match vfs.remove_file(&k, &f) {
                        Ok(()) | Err(VfsError::NotFound(_)) => {}
                        Err(e) => return Err(io(e)),
                    },
                    Some(id) => {
                        let data = self.read_object(user, id).map_err(|e| {
                            SpawnError::Refused(Error::new(
                                e.kind,
                                format!("cannot put {rel} back as it was: {}", e.message),
                            ))
                        })?;
                        create_parents(&k, vfs, &f).map_err(io)?;
                        vfs.write(&k, &f, &data).map_err(io)?;
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = undone {
            let _ = self.remove_tree(&to);
            return Err(e);
        }
        Ok(to.as_str().to_owned())
    }
}

/// Creates the directories above `file` that are missing.
fn create_parents(k: &Caller, vfs: &avix_vfs::Vfs, file: &VfsPath) -> Result<(), VfsError> {
    let mut missing = Vec::new();
    let mut d = file.parent();
    while let Some(dir) = d {
        if vfs.stat(k, &dir).is_ok() {
            break;
        }
        d = dir.parent();
        missing.push(dir);
    }
    for dir in missing.into_iter().rev() {
        match vfs.create_dir(k, &dir) {
            Ok(()) | Err(VfsError::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The files whose content differs between `before` and `after`.
fn compare(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<FileChange> {
    let mut out = Vec::new();
    for (path, b) in before {
        match after.get(path) {
            Some(a) if a == b => {}
            a => out.push(FileChange {
                path: path.clone(),
                before: Some(b.clone()),
                after: a.cloned(),
            }),
        }
    }
    for (path, a) in after {
        if !before.contains_key(path) {
            out.push(FileChange {
                path: path.clone(),
                before: None,
                after: Some(a.clone()),
            });
        }
    }
    out.sort_by(|x, y| x.path.cmp(&y.path));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ids_name_objects() {
        let id = content_id(b"hello");
        assert_eq!(
            id,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(object_name(&id).map(str::len), Some(64));
        assert_eq!(object_name("sha256:../../etc/passwd"), None);
        assert_eq!(object_name("md5:abc"), None);
    }

    #[test]
    fn compare_lists_added_modified_and_deleted() {
        let m = |v: &[(&str, &str)]| -> BTreeMap<String, String> {
            v.iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect()
        };
        let c = compare(
            &m(&[("a", "1"), ("b", "2"), ("c", "3")]),
            &m(&[("a", "1"), ("b", "9"), ("d", "4")]),
        );
        let got: Vec<_> = c
            .iter()
            .map(|c| (c.path.as_str(), c.status().map(|s| s.letter())))
            .collect();
        assert_eq!(got, [("b", Some('M')), ("c", Some('D')), ("d", Some('A'))]);
    }
}
