//! Sessions: a user's durable group of invocations of one agent that continue one
//! conversation. Each spawn without a session starts one; `session resume` (and a spawn
//! naming a session) starts a new invocation that carries the conversation over from the
//! session's last invocation. Children spawned by agents are recorded in their parent's
//! session. Records live in `/users/<u>/sessions/<id>.yaml`.

use std::sync::{Arc, Mutex};

use avix_proto::agent::{ProcState, SessionInvocation, SessionRecord};
use avix_proto::llm::Message;
use avix_proto::time::Timestamp;
use avix_proto::{Document, Role, UserName};
use avix_vfs::{Caller, VfsError, VfsPath};

use crate::Kernel;
use crate::process::{Process, Signal};
use avix_vfs::storage::InvocationKey;

/// Serialises updates of session records (a record is read, changed and written back).
#[derive(Debug, Default)]
pub struct SessionLock(Mutex<()>);

/// Why a session operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// No such session (or not the caller's).
    #[error("no session {0}; `session list` shows yours")]
    NotFound(String),
    /// Someone else's.
    #[error("session {0} belongs to another user")]
    Forbidden(String),
    /// The state does not allow it.
    #[error("{0}")]
    Conflict(String),
    /// Storage failed.
    #[error("cannot store the session: {0}")]
    Io(String),
}

impl avix_proto::HasKind for SessionError {
    fn kind(&self) -> avix_proto::ErrorKind {
        match self {
            SessionError::NotFound(_) => avix_proto::ErrorKind::NotFound,
            SessionError::Forbidden(_) => avix_proto::ErrorKind::Denied,
            SessionError::Conflict(_) => avix_proto::ErrorKind::Conflict,
            SessionError::Io(_) => avix_proto::ErrorKind::Internal,
        }
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

fn dir(user: &str) -> Result<VfsPath, SessionError> {
    VfsPath::parse(&format!("/users/{user}/sessions")).map_err(|e| SessionError::Io(e.to_string()))
}

fn path(user: &str, id: &str) -> Result<VfsPath, SessionError> {
    if !valid_id(id) {
        return Err(SessionError::NotFound(id.to_owned()));
    }
    dir(user)?
        .join(&format!("{id}.yaml"))
        .map_err(|e| SessionError::Io(e.to_string()))
}

fn io(e: VfsError) -> SessionError {
    SessionError::Io(e.to_string())
}

/// Closes tool calls a run left unanswered (it was killed or crashed mid-call): each gets an
/// error result, so the conversation stays one every provider accepts.
pub fn repair(messages: Vec<Message>) -> Vec<Message> {
    use avix_proto::llm::{ContentBlock, MessageRole};
    let mut out: Vec<Message> = Vec::with_capacity(messages.len() + 1);
    let mut open: Vec<String> = Vec::new();
    for m in messages {
        if m.role == MessageRole::User {
            for b in &m.content {
                if let ContentBlock::ToolResult { tool_use_id, .. } = b {
                    open.retain(|id| id != tool_use_id);
                }
            }
        }
        if !open.is_empty() {
            out.push(Message {
                role: MessageRole::User,
                content: open
                    .drain(..)
                    .map(|id| ContentBlock::ToolResult {
                        tool_use_id: id,
                        content: "interrupted: the run ended before this call completed".into(),
                        is_error: true,
                    })
                    .collect(),
            });
        }
        if m.role == MessageRole::Assistant {
            open = m.tool_calls().map(|(id, _, _)| id.to_owned()).collect();
        }
        out.push(m);
    }
    if !open.is_empty() {
        out.push(Message {
            role: MessageRole::User,
            content: open
                .into_iter()
                .map(|id| ContentBlock::ToolResult {
                    tool_use_id: id,
                    content: "interrupted: the run ended before this call completed".into(),
                    is_error: true,
                })
                .collect(),
        });
    }
    out
}

impl Kernel {
    fn session_store(&self, rec: &SessionRecord) -> Result<(), SessionError> {
        let k = Caller::kernel();
        let d = dir(&rec.user)?;
        match self.vfs().create_dir(&k, &d) {
            Ok(()) | Err(VfsError::AlreadyExists(_)) => {}
            Err(e) => return Err(io(e)),
        }
        let mut stored = rec.clone();
        stored.state = None;
        let yaml = Document::new(stored)
            .to_yaml()
            .map_err(|e| SessionError::Io(e.to_string()))?;
        self.vfs()
            .write(&k, &path(&rec.user, &rec.id)?, yaml.as_bytes())
            .map(|_| ())
            .map_err(io)
    }

    fn session_read(&self, user: &str, id: &str) -> Result<SessionRecord, SessionError> {
        let bytes = self
            .vfs()
            .read(&Caller::kernel(), &path(user, id)?)
            .map_err(|e| match e {
                VfsError::NotFound(_) => SessionError::NotFound(id.to_owned()),
                e => io(e),
            })?;
        Document::<SessionRecord>::parse(&bytes)
            .map(|d| d.spec)
            .map_err(|e| SessionError::Io(format!("session {id} is unreadable: {e}")))
    }

    /// Where the journal of a session's invocation is kept (`None` for a damaged record).
    fn invocation_key(user: &str, inv: &SessionInvocation) -> Option<InvocationKey> {
        InvocationKey::new(user, &inv.agent, &inv.id)
    }

    /// The session's last invocation that an agent did not spawn.
    fn last_root(rec: &SessionRecord) -> Option<&SessionInvocation> {
        rec.invocations.iter().rev().find(|i| i.parent.is_none())
    }

    /// The state of a session: that of its last root invocation, live or recorded.
    fn session_state(&self, rec: &SessionRecord) -> Option<ProcState> {
        let last = Self::last_root(rec)?;
        if let Some(p) = self.procs().get(last.pid)
            && p.journal.id() == last.id
        {
            return Some(p.state());
        }
        self.journals()
            .record(&Self::invocation_key(&rec.user, last)?)
            .map(|r| r.state)
    }

    /// Records an invocation in its session, creating the session for a new root spawn
    /// (one durable write per spawn). Blocking: call it off the async threads.
    pub(crate) fn session_record(
        &self,
        user: &UserName,
        id: &str,
        create: Option<(&str, &str)>,
        inv: SessionInvocation,
    ) -> Result<(), SessionError> {
        let _g = self.sessions_lock().0.lock();
        let now = Timestamp::now();
        let mut rec = match create {
            Some((agent, goal)) => SessionRecord {
                id: id.to_owned().into(),
                user: user.to_string(),
                agent: agent.to_owned(),
                title: goal.chars().take(120).collect(),
                created_at: now,
                updated_at: now,
                invocations: Vec::new(),
                state: None,
            },
            None => self.session_read(user.as_str(), id)?,
        };
        rec.updated_at = now;
        rec.invocations.push(inv);
        self.session_store(&rec)?;
        let info = avix_proto::event::SessionInfo {
            session: id.to_owned().into(),
            agent: rec.agent.clone(),
            title: rec.title.clone(),
            invocations: rec.invocations.len() as u64,
        };
        let events = self.events();
        if create.is_some() {
            events.publish_to(
                Some(user.as_str()),
                &avix_proto::event::SessionCreated(info),
            );
        } else {
            events.publish_to(
                Some(user.as_str()),
                &avix_proto::event::SessionUpdated(info),
            );
        }
        Ok(())
    }

    /// The conversation a new invocation of the session continues: the messages of the
    /// session's last invocation that has a journal.
    pub(crate) fn session_conversation(
        &self,
        user: &UserName,
        id: &str,
        agent: &str,
    ) -> Result<Vec<Message>, SessionError> {
        let rec = self.session_read(user.as_str(), id)?;
        if rec.agent != agent {
            return Err(SessionError::Conflict(format!(
                "session {id} is a conversation with agent {}, not {agent}",
                rec.agent
            )));
        }
        if let Some(live) = self
            .session_live(&rec)
            .into_iter()
            .find(|p| p.parent.is_none())
        {
            return Err(SessionError::Conflict(format!(
                "session {id} is still running as process {}; send it input instead, or stop it first",
                live.pid
            )));
        }
        let Some(last) = Self::last_root(&rec) else {
            return Ok(Vec::new());
        };
        Ok(repair(
            Self::invocation_key(user.as_str(), last)
                .map(|k| self.journals().conversation(&k))
                .unwrap_or_default(),
        ))
    }

    /// The sessions `caller` may see: their own, or `user`'s for operators (everyone's when
    /// `user` is `None`).
    pub fn session_list(
        &self,
        caller: &Caller,
        user: Option<&str>,
    ) -> Result<Vec<SessionRecord>, SessionError> {
        let me = caller.user_name().map(|u| u.as_str().to_owned());
        let privileged = caller.is_kernel() || caller.role >= Role::Operator;
        let users: Vec<String> = match (user, privileged) {
            (Some(u), true) => vec![u.to_owned()],
            (Some(u), false) if me.as_deref() == Some(u) => vec![u.to_owned()],
            (Some(_), false) => {
                return Err(SessionError::Forbidden(
                    "another user's sessions (operators only)".into(),
                ));
            }
            (None, true) => self
                .config()
                .get()
                .users
                .users
                .iter()
                .map(|u| u.username.to_string())
                .collect(),
            (None, false) => me.into_iter().collect(),
        };
        let mut out = Vec::new();
        for u in users {
            let Ok(entries) = self.vfs().list(&Caller::kernel(), &dir(&u)?) else {
                continue;
            };
            for e in entries {
                let Some(id) = e.name.strip_suffix(".yaml") else {
                    continue;
                };
                if let Ok(mut rec) = self.session_read(&u, id) {
                    rec.state = self.session_state(&rec);
                    out.push(rec);
                }
            }
        }
        out.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
        Ok(out)
    }

    /// One session, if `caller` may see it.
    pub fn session_get(&self, caller: &Caller, id: &str) -> Result<SessionRecord, SessionError> {
        if let Some(me) = caller.user_name()
            && let Ok(mut rec) = self.session_read(me.as_str(), id)
        {
            rec.state = self.session_state(&rec);
            return Ok(rec);
        }
        let privileged = caller.is_kernel() || caller.role >= Role::Operator;
        for u in &self.config().get().users.users {
            if let Ok(mut rec) = self.session_read(u.username.as_str(), id) {
                if !privileged {
                    // Another user's session is not there for this caller.
                    return Err(SessionError::NotFound(id.to_owned()));
                }
                rec.state = self.session_state(&rec);
                return Ok(rec);
            }
        }
        Err(SessionError::NotFound(id.to_owned()))
    }

    /// The live processes of a session.
    pub fn session_live(
        &self,
        rec: &SessionRecord,
    ) -> Vec<std::sync::Arc<crate::process::Process>> {
        rec.invocations
            .iter()
            .filter_map(|i| {
                self.procs()
                    .get(i.pid)
                    .filter(|p| p.journal.id() == i.id && !p.state().is_terminal())
            })
            .collect()
    }

    /// Deletes a session and the journals of its invocations. Live processes of the
    /// session refuse it unless `force`, which kills them first.
    pub fn session_delete(
        &self,
        caller: &Caller,
        id: &str,
        force: bool,
    ) -> Result<SessionRecord, SessionError> {
        crate::policy::require(caller, Role::User, "deleting a session")
            .map_err(|e| SessionError::Forbidden(e.message))?;
        let rec = self.session_get(caller, id)?;
        let live = self.session_live(&rec);
        if !live.is_empty() && !force {
            let pids: Vec<String> = live.iter().map(|p| p.pid.to_string()).collect();
            return Err(SessionError::Conflict(format!(
                "session {id} has running processes ({}); kill them or delete with force",
                pids.join(", ")
            )));
        }
        for p in &live {
            let _ = self.signal(caller, p, crate::process::Signal::Kill);
        }
        let _g = self.sessions_lock().0.lock();
        for key in rec
            .invocations
            .iter()
            .filter_map(|i| Self::invocation_key(&rec.user, i))
        {
            if let Err(e) = self.journals().remove(&key) {
                tracing::warn!(invocation = %key, error = %e, "cannot remove an invocation of a deleted session");
            }
        }
        self.vfs()
            .remove_file(&Caller::kernel(), &path(&rec.user, id)?)
            .map_err(io)?;
        self.events().publish_to(
            Some(&rec.user),
            &avix_proto::event::SessionDeleted {
                session: id.to_owned().into(),
            },
        );
        Ok(rec)
    }
}

/// Showing and continuing a session.
impl Kernel {
    /// Session `id` as `caller` may see it, with the records of its runs.
    pub fn session_show(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(SessionRecord, Vec<avix_proto::agent::InvocationRecord>), SessionError> {
        let session = self.session_get(caller, id)?;
        let owner = UserName::new(&session.user).map_err(|e| SessionError::Io(e.to_string()))?;
        let ids: Vec<&str> = session.invocations.iter().map(|i| i.id.as_str()).collect();
        let runs = self
            .history(&owner, None)
            .into_iter()
            .filter(|r| ids.contains(&r.id.as_str()))
            .collect();
        Ok((session, runs))
    }

    /// Continues session `id` as `caller` asks: a live root run of it is resumed when paused
    /// or handed `input`; else the owner continues the conversation in a new run, with
    /// `input` as its goal ("Continue." when absent). Returns the run that goes on.
    pub async fn session_resume(
        self: &Arc<Self>,
        caller: &Caller,
        id: &str,
        input: Option<String>,
    ) -> Result<Arc<Process>, avix_proto::Error> {
        use avix_proto::HasKind;
        let kinded = |e: &dyn HasKind, m: String| avix_proto::Error::new(e.kind(), m);
        crate::policy::require(caller, Role::User, "resuming a session")?;
        let rec = self
            .session_get(caller, id)
            .map_err(|e| kinded(&e, e.to_string()))?;
        if let Some(p) = self
            .session_live(&rec)
            .into_iter()
            .find(|p| p.parent.is_none())
        {
            let sig = match (p.state(), input) {
                (avix_proto::agent::ProcState::Paused, _) => Signal::Resume,
                (_, Some(text)) => Signal::Input(text),
                (_, None) => {
                    return Err(avix_proto::Error::conflict(format!(
                        "session {id} is running as process {}; give input to send it",
                        p.pid
                    )));
                }
            };
            self.signal(caller, &p, sig)?;
            return Ok(p);
        }
        if caller.user_name().map(UserName::as_str) != Some(rec.user.as_str()) {
            return Err(avix_proto::Error::denied(
                "only the owner can continue a session in a new run",
            ));
        }
        let agent = avix_proto::AgentName::new(&rec.agent)
            .map_err(|e| avix_proto::Error::new(avix_proto::ErrorKind::Internal, e.to_string()))?;
        let req = avix_proto::agent::SpawnRequest {
            agent,
            goal: input.unwrap_or_else(|| "Continue.".into()),
            model: None,
            tools: None,
            interactive: None,
            session: Some(id.to_owned().into()),
            params: Default::default(),
        };
        self.spawn(caller, req, None)
            .await
            .map_err(|e| kinded(&e, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use avix_proto::llm::{ContentBlock, MessageRole};

    use super::*;

    fn call(id: &str) -> Message {
        Message {
            role: MessageRole::Assistant,
            content: vec![ContentBlock::ToolUse {
                id: id.into(),
                name: "fs/read".into(),
                input: serde_json::json!({}),
            }],
        }
    }

    #[test]
    fn unanswered_calls_get_error_results() {
        let m = vec![Message::user_text("go"), call("a")];
        let r = repair(m);
        assert_eq!(r.len(), 3);
        assert!(
            matches!(&r[2].content[0], ContentBlock::ToolResult { tool_use_id, is_error: true, .. } if tool_use_id == "a")
        );
        let answered = vec![
            Message::user_text("go"),
            call("a"),
            Message {
                role: MessageRole::User,
                content: vec![ContentBlock::ToolResult {
                    tool_use_id: "a".into(),
                    content: "ok".into(),
                    is_error: false,
                }],
            },
        ];
        assert_eq!(repair(answered.clone()), answered);
        assert!(valid_id("3f2a9c1e-0000-4000-8000-000000000000"));
        assert!(!valid_id("../etc") && !valid_id(""));
    }
}
