//! Snapshots: SIGSAVE captures a run, restoring one starts a new process that continues
//! where it was.
//!
//! A snapshot is taken from the journal, the record of truth, at the moment it is asked for —
//! in any state: running, waiting for input or for an approval, paused, or ended. It holds the
//! conversation, the tools the run held, the last turn's calls that had no result (and how far
//! each got), and a copy of the workspace when it is small enough
//! ([`MAX_WORKSPACE_BYTES`], [`MAX_WORKSPACE_FILES`]). It is an ordinary YAML document under
//! `/users/<u>/snapshots/`; writing it to `/proc/spawn` (or `avix client agent restore`)
//! restores it.

use std::sync::Arc;

use avix_proto::agent::{
    CallProgress, JournalEvent, ProcState, Snapshot, SnapshotCall, SpawnRequest, WorkspaceCopy,
};
use avix_proto::time::Timestamp;
use avix_proto::{AgentName, Document, Error, ErrorKind};
use avix_vfs::{Caller, EntryKind, VfsError, VfsPath};

use crate::Kernel;
use crate::executor::{PendingCall, PendingOutcome};
use crate::process::{Grants, Process, Signal};
use crate::spawn::{Origin, Provenance, SpawnError};

/// Largest workspace copied with a snapshot.
pub const MAX_WORKSPACE_BYTES: u64 = 64 * 1024 * 1024;
/// Most files copied with a snapshot.
pub const MAX_WORKSPACE_FILES: u64 = 5_000;

/// Why a tree was not copied.
#[derive(Debug)]
pub(crate) enum CopyError {
    /// It is over the caps.
    TooBig,
    /// Reading or writing failed.
    Io(VfsError),
}

fn vfs_err(e: VfsError) -> Error {
    Error::new(avix_proto::HasKind::kind(&e), e.to_string())
}

fn path(s: &str) -> Result<VfsPath, Error> {
    VfsPath::parse(s).map_err(|e| Error::invalid(format!("{s}: {e}")))
}

impl Kernel {
    /// Captures `p` for `caller` (who must be allowed to signal it): writes
    /// `/users/<u>/snapshots/<agent>-<pid>-<unix time>-<random>.yaml` and returns that path.
    pub fn save_snapshot(&self, caller: &Caller, p: &Arc<Process>) -> Result<String, Error> {
        crate::policy::check_signal(caller, self.procs(), p)?;
        let k = Caller::kernel();
        let vfs = self.vfs();
        let dir = format!("/users/{}/snapshots", p.user);
        match vfs.create_dir(&k, &path(&dir)?) {
            Ok(()) | Err(VfsError::AlreadyExists(_)) => {}
            Err(e) => return Err(vfs_err(e)),
        }
        let now = Timestamp::now();
        let id = format!(
            "{}-{}-{}-{:04x}",
            p.agent,
            p.pid,
            now.unix(),
            rand::random::<u16>()
        );
        let file = format!("{dir}/{id}.yaml");
        // Journaled (durably: everything before it is then readable) before it is read back.
        p.journal
            .append_durable_blocking(JournalEvent::Signal {
                signal: Signal::Save.name().into(),
                from: caller.to_string(),
                payload: Some(serde_json::json!({"snapshot": file})),
            })
            .map_err(|e| Error::new(ErrorKind::Unavailable, e.to_string()))?;
        let entries = self.journals().entries(p.journal.key());
        let messages = crate::journal::conversation(&entries);
        let pending = crate::recovery::pending_calls(&messages, &entries)
            .into_iter()
            .map(|c| SnapshotCall {
                id: c.id,
                tool: c.name,
                input: c.input,
                progress: match c.outcome {
                    PendingOutcome::Done { ok, content } => CallProgress::Done { ok, content },
                    PendingOutcome::Interrupted => CallProgress::Running,
                    PendingOutcome::NotStarted { .. } => CallProgress::NotStarted,
                },
            })
            .collect();
        let status = p.status();
        let workspace = self.copy_workspace(p.user.as_str(), &format!("{dir}/{id}.workspace"));
        let snap = Snapshot {
            agent: p.agent.to_string(),
            version: p.version.clone(),
            user: p.user.to_string(),
            pid: p.pid,
            invocation: p.journal.id().clone(),
            session: Some(p.session.clone()),
            goal: p.goal.clone(),
            model: p.model.clone(),
            interactive: p.interactive,
            state: status.state,
            waiting_on: status.waiting_on,
            captured_at: now,
            journal_seq: entries.last().map_or(0, |e| e.seq),
            grants: p
                .grants()
                .tools
                .into_iter()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            messages,
            pending,
            workspace,
        };
        let yaml = Document::new(snap)
            .to_yaml()
            .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
        vfs.write(&k, &path(&file)?, yaml.as_bytes())
            .map_err(vfs_err)?;
        self.events().publish(
            p,
            &avix_proto::event::Signalled {
                signal: Signal::Save.name().into(),
                from: caller.to_string(),
            },
        );
        tracing::info!(pid = %p.pid, snapshot = %file, "snapshot saved");
        Ok(file)
    }

    /// Copies `/users/<user>/workspace` to `to` when it is within the caps; `None` (logged)
    /// when it is not, or the copy fails (then nothing of it stays).
    fn copy_workspace(&self, user: &str, to: &str) -> Option<WorkspaceCopy> {
        let from = path(&self.default_workspace(user)).ok()?;
        match self.copy_tree(&from, &path(to).ok()?) {
            Ok((files, bytes)) => Some(WorkspaceCopy {
                path: to.to_owned(),
                files,
                bytes,
            }),
            Err(CopyError::TooBig) => {
                tracing::info!(user, "workspace over the snapshot caps: not copied");
                None
            }
            Err(CopyError::Io(e)) => {
                tracing::warn!(user, error = %e, "cannot copy the workspace with a snapshot");
                None
            }
        }
    }

    /// Copies the tree `from` to a new directory `to` when it is within the caps
    /// ([`MAX_WORKSPACE_BYTES`], [`MAX_WORKSPACE_FILES`]); returns the files and bytes copied.
    /// A copy that fails leaves nothing behind.
    pub(crate) fn copy_tree(&self, from: &VfsPath, to: &VfsPath) -> Result<(u64, u64), CopyError> {
        let k = Caller::kernel();
        // Measure first: a tree over the caps is not copied at all.
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        let (mut bytes, mut count) = (0u64, 0u64);
        let mut stack = vec![from.clone()];
        while let Some(d) = stack.pop() {
            let list = match self.vfs().list(&k, &d) {
                Ok(l) => l,
                // A workspace nothing was ever written to.
                Err(VfsError::NotFound(_)) if &d == from => Vec::new(),
                Err(e) => return Err(CopyError::Io(e)),
            };
            for e in list {
                let child = d.join(&e.name).map_err(|e| CopyError::Io(e.into()))?;
                match e.kind {
                    EntryKind::Dir => {
                        dirs.push(child.clone());
                        stack.push(child);
                    }
                    EntryKind::File => {
                        bytes += self.vfs().stat(&k, &child).map_err(CopyError::Io)?.size;
                        count += 1;
                        files.push(child);
                    }
                }
                if bytes > MAX_WORKSPACE_BYTES || count > MAX_WORKSPACE_FILES {
                    return Err(CopyError::TooBig);
                }
            }
        }
        let rel = |p: &VfsPath| -> Result<VfsPath, VfsError> {
            let r = &p.as_str()[from.as_str().len()..];
            Ok(VfsPath::parse(&format!("{}{r}", to.as_str()))?)
        };
        let copied = (|| -> Result<(), VfsError> {
            self.vfs().create_dir(&k, to)?;
            for d in &dirs {
                self.vfs().create_dir(&k, &rel(d)?)?;
            }
            for f in &files {
                let data = self.vfs().read(&k, f)?;
                self.vfs().write(&k, &rel(f)?, &data)?;
            }
            Ok(())
        })();
        match copied {
            Ok(()) => Ok((count, bytes)),
            Err(e) => {
                let _ = self.remove_tree(to);
                Err(CopyError::Io(e))
            }
        }
    }

    /// Removes the tree at `root`, as the kernel.
    pub(crate) fn remove_tree(&self, root: &VfsPath) -> Result<(), VfsError> {
        let k = Caller::kernel();
        for e in self.vfs().list(&k, root)? {
            let child = root.join(&e.name)?;
            match e.kind {
                EntryKind::Dir => self.remove_tree(&child)?,
                EntryKind::File => self.vfs().remove_file(&k, &child)?,
            }
        }
        self.vfs().remove_dir(&k, root)
    }

    /// Restores the snapshot at `file` (a VFS path the caller may read, or the name of one of
    /// the caller's own snapshots) as a new process of the caller's; with `workspace`, first
    /// puts the workspace copy saved with it back (its files replace the current ones of the
    /// same name; other files stay).
    pub async fn restore_file(
        self: &Arc<Self>,
        caller: &Caller,
        file: &str,
        workspace: bool,
    ) -> Result<Arc<Process>, SpawnError> {
        let full = if file.contains('/') {
            file.to_owned()
        } else {
            let me = caller
                .user_name()
                .ok_or_else(|| SpawnError::BadRequest("name the snapshot by its path".into()))?;
            format!("/users/{me}/snapshots/{}", file.trim_end_matches(".yaml")) + ".yaml"
        };
        let p =
            VfsPath::parse(&full).map_err(|e| SpawnError::BadRequest(format!("{full}: {e}")))?;
        let bytes = self.vfs().read(caller, &p).map_err(|e| match e {
            VfsError::NotFound(_) => SpawnError::Refused(Error::not_found(format!(
                "no snapshot {full} (ls /users/<you>/snapshots lists yours)"
            ))),
            e => SpawnError::Io(e.to_string()),
        })?;
        let snap = Document::<Snapshot>::parse(&bytes)
            .map_err(|e| SpawnError::BadRequest(format!("{full} is not a snapshot: {e}")))?
            .spec;
        if workspace {
            self.put_back_workspace(caller, &snap, &full)?;
        }
        self.restore(caller, snap, &full).await
    }

    /// Copies the workspace saved with `snap` back into its user's workspace, reading and
    /// writing as `caller` (so the access rules of both trees apply).
    fn put_back_workspace(
        &self,
        caller: &Caller,
        snap: &Snapshot,
        from: &str,
    ) -> Result<u64, SpawnError> {
        let Some(copy) = &snap.workspace else {
            return Err(SpawnError::BadRequest(format!(
                "snapshot {from} has no workspace copy (the workspace was over {} MiB or {} files when it was saved)",
                MAX_WORKSPACE_BYTES >> 20,
                MAX_WORKSPACE_FILES
            )));
        };
        let io = |e: VfsError| SpawnError::Io(format!("cannot put the workspace back: {e}"));
        let src = VfsPath::parse(&copy.path)
            .map_err(|e| SpawnError::BadRequest(format!("{from}: workspace {}: {e}", copy.path)))?;
        let dst = VfsPath::parse(&format!("/users/{}/workspace", snap.user))
            .map_err(|e| SpawnError::BadRequest(e.to_string()))?;
        let vfs = self.vfs();
        let mut copied = 0;
        let mut stack = vec![(src, dst)];
        while let Some((from_dir, to_dir)) = stack.pop() {
            for e in vfs.list(caller, &from_dir).map_err(io)? {
                let (f, t) = (
                    from_dir.join(&e.name).map_err(VfsError::from).map_err(io)?,
                    to_dir.join(&e.name).map_err(VfsError::from).map_err(io)?,
                );
                match e.kind {
                    EntryKind::Dir => {
                        match vfs.create_dir(caller, &t) {
                            Ok(()) | Err(VfsError::AlreadyExists(_)) => {}
                            Err(e) => return Err(io(e)),
                        }
                        stack.push((f, t));
                    }
                    EntryKind::File => {
                        let data = vfs.read(caller, &f).map_err(io)?;
                        vfs.write(caller, &t, &data).map_err(io)?;
                        copied += 1;
                    }
                }
            }
        }
        tracing::info!(snapshot = from, files = copied, "workspace put back");
        Ok(copied)
    }

    /// Restores `snap` (read from `from`) as a new process of the caller's: a new invocation
    /// in a new session, whose journal starts with the snapshot's conversation, holding the
    /// tools the run held (as far as its user may still use them), and continuing where it
    /// was: calls that had not run run (asking again where the policy says), a call that was
    /// running is reported interrupted, a run that waited for input waits again, a paused run
    /// is paused. The workspace is left as it is now (the copy stays beside the snapshot).
    pub async fn restore(
        self: &Arc<Self>,
        caller: &Caller,
        snap: Snapshot,
        from: &str,
    ) -> Result<Arc<Process>, SpawnError> {
        let user = crate::policy::spawn_for(caller, None)?;
        if snap.user != user.as_str() {
            return Err(SpawnError::Forbidden(format!(
                "snapshot {from} is {}'s run; restore your own snapshots",
                snap.user
            )));
        }
        let agent = AgentName::new(&snap.agent)
            .map_err(|e| SpawnError::BadRequest(format!("{from}: {e}")))?;
        let req = SpawnRequest {
            agent,
            goal: snap.goal.clone(),
            model: (!snap.model.is_empty()).then(|| snap.model.clone()),
            tools: None,
            interactive: Some(snap.interactive),
            session: None,
            params: Default::default(),
        };
        let mut grants = Grants::default();
        grants.tools.extend(snap.grants.iter().cloned());
        let pending = snap
            .pending
            .into_iter()
            .map(|c| PendingCall {
                id: c.id,
                name: c.tool,
                input: c.input,
                outcome: match c.progress {
                    CallProgress::Done { ok, content } => PendingOutcome::Done { ok, content },
                    CallProgress::Running => PendingOutcome::Interrupted,
                    CallProgress::NotStarted => PendingOutcome::NotStarted {
                        hil: None,
                        answer: None,
                    },
                },
            })
            .collect();
        let origin = Origin::Restored {
            from: Provenance::Snapshot(from.to_owned()),
            workspace: None,
            grants,
            messages: snap.messages,
            pending,
        };
        let p = self.spawn_with(&user, req, None, origin).await?;
        if snap.state == ProcState::Paused {
            let _ = self.signal(&Caller::kernel(), &p, Signal::Pause);
        }
        Ok(p)
    }
}
