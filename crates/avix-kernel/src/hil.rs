//! Human in the loop: a process asks a person before a gated tool call, for a tool it lacks,
//! or for guidance. Each request is a file, `/proc/<pid>/hil/<id>.yaml`: reading it shows the
//! request, writing `approve [note]` or `deny [reason]` answers it (the ATP door calls
//! [`HilManager::answer`] the same way). The first answer wins; later ones are refused with
//! who answered and when. A request nobody answers in time resolves as `timeout`, which counts
//! as a denial unless kernel.yaml says otherwise.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use avix_proto::agent::{HilKind, HilRequest, HilState};
use avix_proto::config::kernel::HilTimeoutDecision;
use avix_proto::time::Timestamp;
use avix_proto::{HilId, Role};
use avix_vfs::{Caller, SynthFile, VfsError, VfsPath, Writers};
use bytes::Bytes;
use tokio::sync::oneshot;

use crate::Kernel;
use crate::pid::Pid;
use crate::process::Process;

/// What an approval grants, for capability upgrades.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// For the rest of the process's life.
    Session,
    /// For one call.
    Once,
}

/// A person's (or the timeout's) answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HilAnswer {
    /// Approved, denied, timeout, cancelled.
    pub outcome: HilState,
    /// Who (`kernel` for timeouts).
    pub by: String,
    /// Reason, guidance, chosen option.
    pub note: Option<String>,
    /// For upgrades.
    pub scope: Scope,
    /// Arguments the approver edited: the call runs with these instead of the asked ones.
    pub args: Option<serde_json::Value>,
}

impl HilAnswer {
    /// The `hil.resolved` event for request `hil_id`.
    pub fn event(&self, hil_id: &str) -> avix_proto::event::HilAnswered {
        avix_proto::event::HilAnswered {
            hil_id: hil_id.to_owned().into(),
            outcome: self.outcome,
            by: self.by.clone(),
        }
    }
}

impl HilAnswer {
    /// An answer recorded in the journal before a restart (`hil_answered`).
    pub fn recorded(
        outcome: HilState,
        by: String,
        note: Option<String>,
        args: Option<serde_json::Value>,
    ) -> Self {
        Self {
            outcome,
            by,
            note,
            scope: Scope::Once,
            args,
        }
    }
}

impl HilAnswer {
    /// Whether the request may proceed.
    pub fn approved(&self) -> bool {
        self.outcome == HilState::Approved
    }
}

/// Why an answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HilError {
    /// No such request.
    #[error("no HIL request {0}")]
    NotFound(String),
    /// Someone answered first.
    #[error("HIL request {id} was already answered ({outcome}) by {by} at {at}")]
    AlreadyAnswered {
        /// Request.
        id: String,
        /// Outcome.
        outcome: String,
        /// By whom.
        by: String,
        /// When.
        at: String,
    },
    /// The caller may not answer it.
    #[error("{0}")]
    Forbidden(String),
    /// The answer does not parse.
    #[error("{0}")]
    Invalid(String),
}

impl avix_proto::HasKind for HilError {
    fn kind(&self) -> avix_proto::ErrorKind {
        match self {
            HilError::NotFound(_) => avix_proto::ErrorKind::NotFound,
            HilError::AlreadyAnswered { .. } => avix_proto::ErrorKind::Conflict,
            HilError::Forbidden(_) => avix_proto::ErrorKind::Denied,
            HilError::Invalid(_) => avix_proto::ErrorKind::Invalid,
        }
    }
}

struct Entry {
    pid: Pid,
    owner: String,
    /// The asking process: answers are recorded in its journal before they count.
    process: Weak<Process>,
    doc: Mutex<HilRequest>,
    tx: Mutex<Option<oneshot::Sender<HilAnswer>>>,
}

/// All HIL requests.
#[derive(Default)]
pub struct HilManager {
    // Short critical sections.
    map: Mutex<HashMap<HilId, Arc<Entry>>>,
}

impl std::fmt::Debug for HilManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HilManager")
    }
}

/// A fresh request id. Unguessable: an id says nothing of how many requests exist, or whose
/// they are.
fn new_id() -> HilId {
    HilId::from(format!("h{:016x}", rand::random::<u64>()))
}

/// An answer written to a request file, read: `approve [note]`, `approve once`,
/// `approve {"args": {…}, "note": "…"}` (the call runs with the edited arguments),
/// `deny [reason]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedAnswer {
    /// Approve or deny.
    pub approve: bool,
    /// For upgrades.
    pub scope: Scope,
    /// Note or reason.
    pub note: Option<String>,
    /// Edited arguments.
    pub args: Option<serde_json::Value>,
}

/// Reads an answer, edited arguments included (see [`ParsedAnswer`]).
pub fn parse_answer_full(text: &str) -> Result<ParsedAnswer, HilError> {
    let t = text.trim();
    let (word, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
    let rest = rest.trim();
    if rest.starts_with('{')
        && matches!(
            word.to_ascii_lowercase().as_str(),
            "approve" | "approved" | "yes"
        )
    {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Edit {
            args: serde_json::Map<String, serde_json::Value>,
            #[serde(default)]
            note: Option<String>,
        }
        let e: Edit = serde_json::from_str(rest).map_err(|e| {
            HilError::Invalid(format!(
                "cannot read the edited approval: {e}; write `approve {{\"args\": {{…}}, \"note\": \"…\"}}`"
            ))
        })?;
        return Ok(ParsedAnswer {
            approve: true,
            scope: Scope::Once,
            note: e.note,
            args: Some(serde_json::Value::Object(e.args)),
        });
    }
    let (approve, scope, note) = parse_answer(t)?;
    Ok(ParsedAnswer {
        approve,
        scope,
        note,
        args: None,
    })
}

/// A parsed answer: `approve [note]`, `approve once`, `deny [reason]`.
pub fn parse_answer(text: &str) -> Result<(bool, Scope, Option<String>), HilError> {
    let t = text.trim();
    let (word, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
    let rest = rest.trim();
    let note = (!rest.is_empty()).then(|| rest.to_owned());
    match word.to_ascii_lowercase().as_str() {
        "approve" | "approved" | "yes" => {
            let scope = if rest.eq_ignore_ascii_case("once") {
                Scope::Once
            } else {
                Scope::Session
            };
            Ok((true, scope, note))
        }
        "deny" | "denied" | "no" => Ok((false, Scope::Session, note)),
        _ => Err(HilError::Invalid(format!(
            "cannot read the answer {t:?}: write `approve [note]`, `approve once` or `deny [reason]`"
        ))),
    }
}

/// A question for a human (see [`HilManager::ask`]).
#[derive(Debug, Clone)]
pub struct Ask {
    /// What is asked.
    pub kind: HilKind,
    /// The tool concerned.
    pub tool: Option<String>,
    /// The call's arguments (approvals of a tool call).
    pub args: Option<serde_json::Value>,
    /// Why.
    pub reason: Option<String>,
    /// Choices offered (escalations).
    pub options: Vec<String>,
    /// The tool call it gates, if any.
    pub call_id: Option<String>,
    /// The id it had before a restart, if it is asked again.
    pub reuse: Option<HilId>,
}

impl HilManager {
    /// Asks a human on behalf of `process`: the request is made durable in its journal
    /// first, and only then published (`/proc/<pid>/hil/<id>.yaml`, the `hil.request` event),
    /// so nothing a user was shown is lost by a crash (it is asked again after a restart,
    /// under the same id). Returns the id and where the answer will arrive.
    pub async fn ask(
        &self,
        kernel: &Arc<Kernel>,
        process: &Arc<Process>,
        ask: Ask,
    ) -> Result<(HilId, oneshot::Receiver<HilAnswer>), crate::journal::JournalError> {
        let id = ask.reuse.unwrap_or_else(new_id);
        process
            .journal
            .append_durable(avix_proto::agent::JournalEvent::HilRequested {
                hil_id: id.clone(),
                kind: ask.kind,
                tool: ask.tool.clone(),
                call_id: ask.call_id,
            })
            .await?;
        let (id, rx) = self.open(
            kernel,
            process,
            ask.kind,
            ask.tool.clone(),
            ask.args.clone(),
            ask.reason,
            ask.options,
            Some(id),
        );
        kernel.events().publish(
            process,
            &avix_proto::event::HilAsked {
                hil_id: id.clone(),
                kind: ask.kind,
                tool: ask.tool,
                args: ask.args,
            },
        );
        Ok((id, rx))
    }

    /// Opens a request for `process`; returns its id and where the answer will arrive.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        &self,
        kernel: &Arc<Kernel>,
        process: &Arc<Process>,
        kind: HilKind,
        tool: Option<String>,
        args: Option<serde_json::Value>,
        reason: Option<String>,
        options: Vec<String>,
        reuse: Option<HilId>,
    ) -> (HilId, oneshot::Receiver<HilAnswer>) {
        // Unguessable: an id says nothing of how many requests exist, or whose they are. A
        // request asked again after a restart keeps the id it had (`reuse`), so a script or
        // a client waiting on it keeps track.
        let id = reuse.unwrap_or_else(new_id);
        let safety = kernel.config().get().kernel.safety.clone();
        let timeout = safety.hil_timeout.get();
        let now = Timestamp::now();
        let doc = HilRequest {
            id: id.clone(),
            pid: process.pid,
            kind,
            tool,
            args,
            reason,
            options,
            state: HilState::Pending,
            created_at: now,
            expires_at: Timestamp::from_unix(
                now.unix() + i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX / 2),
            ),
            on_timeout: match safety.hil_timeout_decision {
                HilTimeoutDecision::Deny => "deny".into(),
                HilTimeoutDecision::Approve => "approve".into(),
            },
            answered_by: None,
            answered_at: None,
            note: None,
            answer_with: format!(
                "echo approve > /proc/{}/hil/{id}.yaml   (or: deny <reason>)",
                process.pid
            ),
        };
        let (tx, rx) = oneshot::channel();
        let entry = Arc::new(Entry {
            pid: process.pid,
            owner: process.user.to_string(),
            process: Arc::downgrade(process),
            doc: Mutex::new(doc),
            tx: Mutex::new(Some(tx)),
        });
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.clone(), entry.clone());
        process.inner().pending_hil.push(id.clone());
        self.publish(kernel, process, &id, &entry);
        let weak = Arc::downgrade(kernel);
        let tid = id.clone();
        let decision = safety.hil_timeout_decision;
        kernel.runtime().spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(k) = weak.upgrade() {
                let outcome = match decision {
                    HilTimeoutDecision::Deny => HilState::Timeout,
                    HilTimeoutDecision::Approve => HilState::Approved,
                };
                let _ = k.hil().resolve(
                    &tid,
                    outcome,
                    "kernel",
                    Some("no answer in time".into()),
                    Scope::Session,
                );
            }
        });
        (id, rx)
    }

    fn publish(&self, kernel: &Arc<Kernel>, process: &Arc<Process>, id: &str, entry: &Arc<Entry>) {
        let Ok(path) = VfsPath::parse(&format!("/proc/{}/hil/{id}.yaml", process.pid)) else {
            return;
        };
        let read: Weak<Entry> = Arc::downgrade(entry);
        let k: Weak<Kernel> = Arc::downgrade(kernel);
        let hid = id.to_owned();
        let p2 = path.clone();
        let file = SynthFile::control(
            move |_| {
                let e = read
                    .upgrade()
                    .ok_or_else(|| VfsError::NotFound(VfsPath::root()))?;
                let doc = e
                    .doc
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                Ok(Bytes::from(
                    avix_proto::Document::new(doc).to_yaml().unwrap_or_default(),
                ))
            },
            move |caller, data| {
                let kernel = k.upgrade().ok_or_else(|| VfsError::NotFound(p2.clone()))?;
                let text = String::from_utf8_lossy(data);
                let a = parse_answer_full(&text).map_err(|e| VfsError::InvalidInput {
                    path: p2.clone(),
                    reason: e.to_string(),
                })?;
                let doc = kernel
                    .hil()
                    .answer_with(&hid, a.approve, a.scope, a.note, a.args, caller)
                    .map_err(|e| VfsError::InvalidInput {
                        path: p2.clone(),
                        reason: e.to_string(),
                    })?;
                Ok(Some(Bytes::from(format!(
                    "{}\n",
                    serde_json::to_string(&doc.state)
                        .unwrap_or_default()
                        .trim_matches('"')
                ))))
            },
        )
        .writers(Writers::Owner);
        if let Err(e) = kernel.vfs().publish(&path, file) {
            tracing::warn!(error = %e, "cannot publish the HIL request file");
        }
    }

    /// Answers a request as `caller` (the owner of the process, an operator or an admin;
    /// never an agent).
    pub fn answer(
        &self,
        id: &str,
        approve: bool,
        scope: Scope,
        note: Option<String>,
        caller: &Caller,
    ) -> Result<HilRequest, HilError> {
        self.answer_with(id, approve, scope, note, None, caller)
    }

    /// [`HilManager::answer`], approving with edited arguments when `args` is given (a tool
    /// call's approval only; the arguments must be an object).
    pub fn answer_with(
        &self,
        id: &str,
        approve: bool,
        scope: Scope,
        note: Option<String>,
        args: Option<serde_json::Value>,
        caller: &Caller,
    ) -> Result<HilRequest, HilError> {
        let entry = self.get(id)?;
        if !caller.is_agent() && caller.role < Role::User && !caller.is_kernel() {
            return Err(HilError::Forbidden(
                "answering an approval needs the role user or higher".into(),
            ));
        }
        if caller.is_agent() {
            return Err(HilError::Forbidden(
                "agents cannot answer HIL requests; a person must".into(),
            ));
        }
        if !caller.is_kernel() && !caller.is_user(&entry.owner) && caller.role < Role::Operator {
            // Another user's request is not there for this caller.
            return Err(HilError::NotFound(id.to_owned()));
        }
        let by = caller
            .user_name()
            .map_or_else(|| "kernel".to_owned(), ToString::to_string);
        let outcome = if approve {
            HilState::Approved
        } else {
            HilState::Denied
        };
        if let Some(a) = &args {
            let kind = entry
                .doc
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .kind;
            if !approve || kind != HilKind::ToolCallApproval || !a.is_object() {
                return Err(HilError::Invalid(
                    "edited arguments go with an approval of a tool call, as a JSON object".into(),
                ));
            }
        }
        self.resolve_with(id, outcome, &by, note, scope, args)
    }

    /// Resolves a request (first resolution wins).
    pub fn resolve(
        &self,
        id: &str,
        outcome: HilState,
        by: &str,
        note: Option<String>,
        scope: Scope,
    ) -> Result<HilRequest, HilError> {
        self.resolve_with(id, outcome, by, note, scope, None)
    }

    fn resolve_with(
        &self,
        id: &str,
        outcome: HilState,
        by: &str,
        note: Option<String>,
        scope: Scope,
        args: Option<serde_json::Value>,
    ) -> Result<HilRequest, HilError> {
        let entry = self.get(id)?;
        let tx = entry
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let mut doc = entry
            .doc
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(tx) = tx else {
            return Err(HilError::AlreadyAnswered {
                id: id.to_owned(),
                outcome: serde_json::to_string(&doc.state)
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_owned(),
                by: doc.answered_by.clone().unwrap_or_else(|| "?".into()),
                at: doc.answered_at.map(|t| t.to_string()).unwrap_or_default(),
            });
        };
        // Recorded before it counts: an answer whose write succeeded survives a crash (the
        // run resumed after a restart uses it instead of asking again).
        if let Some(p) = entry.process.upgrade()
            && let Err(e) =
                p.journal
                    .append_durable_blocking(avix_proto::agent::JournalEvent::HilAnswered {
                        hil_id: id.to_owned().into(),
                        outcome,
                        by: by.to_owned(),
                        note: note.clone(),
                        args: args.clone(),
                    })
        {
            // Not answered: the request stays open for another try.
            *entry
                .tx
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tx);
            return Err(HilError::Invalid(format!(
                "the answer could not be recorded ({e}); nothing was decided, try again"
            )));
        }
        doc.state = outcome;
        doc.answered_by = Some(by.to_owned());
        doc.answered_at = Some(Timestamp::now());
        doc.note.clone_from(&note);
        let answered = doc.clone();
        drop(doc);
        // The process may have ended; then nobody listens, and that is fine.
        let _ = tx.send(HilAnswer {
            outcome,
            by: by.to_owned(),
            note,
            scope,
            args,
        });
        Ok(answered)
    }

    fn get(&self, id: &str) -> Result<Arc<Entry>, HilError> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
            .ok_or_else(|| HilError::NotFound(id.to_owned()))
    }

    /// Requests, optionally of one process, pending ones first.
    pub fn list(&self, pid: Option<Pid>) -> Vec<HilRequest> {
        let map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut v: Vec<HilRequest> = map
            .values()
            .filter(|e| pid.is_none_or(|p| p == e.pid))
            .map(|e| {
                e.doc
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            })
            .collect();
        v.sort_by_key(|d| (d.state != HilState::Pending, d.created_at, d.id.clone()));
        v
    }

    /// Cancels every pending request of an ended process.
    pub fn cancel_for(&self, pid: Pid) {
        let ids: Vec<HilId> = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(_, e)| e.pid == pid)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let _ = self.resolve(
                &id,
                HilState::Cancelled,
                "kernel",
                Some("the agent ended".into()),
                Scope::Session,
            );
        }
    }

    /// Forgets the requests of a reaped process.
    pub fn forget(&self, pid: Pid) {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, e| e.pid != pid);
    }
}

/// How long a HIL timeout is, from kernel.yaml.
pub fn timeout_of(kernel: &Kernel) -> Duration {
    kernel.config().get().kernel.safety.hil_timeout.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse() {
        assert_eq!(
            parse_answer("approve\n").unwrap(),
            (true, Scope::Session, None)
        );
        let edit = parse_answer_full("approve {\"args\": {\"path\": \"b\"}}").unwrap();
        assert!(edit.approve && edit.args.unwrap()["path"] == "b");
        assert!(parse_answer_full("approve {\"args\": 1}").is_err());
        assert!(parse_answer_full("approve {\"arg\": {}}").is_err());
        assert_eq!(
            parse_answer_full("deny {x}").unwrap().note.as_deref(),
            Some("{x}")
        );
        assert_eq!(parse_answer("approve once").unwrap().1, Scope::Once);
        assert_eq!(
            parse_answer("deny too risky").unwrap(),
            (false, Scope::Session, Some("too risky".into()))
        );
        assert!(
            parse_answer("maybe")
                .unwrap_err()
                .to_string()
                .contains("approve [note]")
        );
    }
}
