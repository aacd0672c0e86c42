//! Crash recovery: at start, runs that a crash (or a stop) interrupted continue from their
//! journals under new PIDs (PIDs are never reused). The conversation is rebuilt from the
//! journal; the calls of the last turn get the result the journal holds, an "interrupted"
//! error if they were dispatched without a recorded result (they are never run twice), or go
//! through the policy again if they never started, so an approval that was pending is asked
//! again. Child runs are not resumed (their parents see their calls interrupted); a run
//! interrupted [`MAX_RESUMES`] times is left failed, so a run that crashes the daemon cannot
//! do it forever.

use crate::pid::Pid;
use std::collections::HashMap;
use std::sync::Arc;

use avix_proto::agent::{JournalEntry, JournalEvent, ProcState, SpawnRequest};
use avix_proto::llm::{ContentBlock, Message, MessageRole};
use avix_proto::{AgentName, UserName};

use crate::Kernel;
use crate::executor::{PendingCall, PendingOutcome};
use crate::process::{Grants, Signal};
use crate::spawn::Adopt;
use avix_vfs::storage::InvocationKey;

/// A run is resumed at most this many times.
pub const MAX_RESUMES: usize = 3;

/// What start-up recovery did with one interrupted run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Its invocation.
    pub invocation: String,
    /// The PID it had.
    pub previous_pid: Pid,
    /// The new PID, or why it was not resumed (then it is recorded as failed).
    pub outcome: Result<Pid, avix_proto::Error>,
}

/// The last turn's calls, if the conversation ends with an assistant message that made some.
pub(crate) fn pending_calls(messages: &[Message], entries: &[JournalEntry]) -> Vec<PendingCall> {
    let Some(last) = messages.last().filter(|m| m.role == MessageRole::Assistant) else {
        return Vec::new();
    };
    let mut results: HashMap<&str, (bool, String)> = HashMap::new();
    let mut dispatched: HashMap<&str, ()> = HashMap::new();
    // Approval requests still waiting, by the call they gate, and the answers recorded.
    let mut asked: HashMap<&str, &avix_proto::HilId> = HashMap::new();
    let mut answered: HashMap<&str, crate::hil::HilAnswer> = HashMap::new();
    for e in entries {
        match &e.event {
            JournalEvent::HilRequested {
                hil_id,
                call_id: Some(call_id),
                ..
            } => {
                asked.insert(call_id, hil_id);
                answered.remove(call_id.as_str());
            }
            JournalEvent::HilAnswered {
                hil_id,
                outcome,
                by,
                note,
                args,
            } => {
                if let Some((&call, _)) = asked.iter().find(|(_, h)| *h == hil_id) {
                    answered.insert(
                        call,
                        crate::hil::HilAnswer::recorded(
                            *outcome,
                            by.clone(),
                            note.clone(),
                            args.clone(),
                        ),
                    );
                }
                asked.retain(|_, h| h != hil_id);
            }
            JournalEvent::ToolResult {
                call_id,
                ok,
                result,
                ..
            } => {
                results.insert(call_id, (*ok, result.clone()));
            }
            JournalEvent::PolicyDenied {
                call_id, reason, ..
            } => {
                let content =
                    serde_json::json!({"error": {"code": "EPERM", "message": reason}}).to_string();
                results.insert(call_id, (false, content));
            }
            JournalEvent::ToolCall { call_id, .. } => {
                dispatched.insert(call_id, ());
            }
            _ => {}
        }
    }
    last.content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::ToolUse { id, name, input } => Some((id, name, input)),
            _ => None,
        })
        .map(|(id, name, input)| PendingCall {
            id: id.clone(),
            name: name.clone(),
            input: input.clone(),
            outcome: match (
                results.get(id.as_str()),
                dispatched.contains_key(id.as_str()),
            ) {
                (Some((ok, content)), _) => PendingOutcome::Done {
                    ok: *ok,
                    content: content.clone(),
                },
                (None, true) => PendingOutcome::Interrupted,
                (None, false) => PendingOutcome::NotStarted {
                    hil: asked.get(id.as_str()).map(|h| (*h).clone()),
                    answer: answered.get(id.as_str()).cloned(),
                },
            },
        })
        .collect()
}

impl Kernel {
    /// Continues every run a restart interrupted (kernel.yaml `scheduler.resumeInterrupted`,
    /// on by default). Call once at start, after the services that serve tools are up.
    pub async fn resume_interrupted(self: &Arc<Self>) -> Vec<Recovered> {
        let config = self.config().get();
        if !config.kernel.scheduler.resume_interrupted {
            return Vec::new();
        }
        let users: Vec<UserName> = config
            .users
            .users
            .iter()
            .map(|u| u.username.clone())
            .collect();
        let mut out = Vec::new();
        for user in users {
            let journals = self.journals();
            let runs: Vec<InvocationKey> = journals
                .list(user.as_str(), None)
                .into_iter()
                .filter(|k| !journals.has_record(k))
                .collect();
            for key in runs {
                if let Some(r) = self.resume_one(&user, &key).await {
                    out.push(r);
                }
            }
        }
        out
    }

    async fn resume_one(
        self: &Arc<Self>,
        user: &UserName,
        key: &InvocationKey,
    ) -> Option<Recovered> {
        let id = key.id().to_owned();
        // Already running (resumed once already by this daemon).
        if self
            .procs()
            .all()
            .iter()
            .any(|p| p.journal.id() == id && !p.state().is_terminal())
        {
            return None;
        }
        let entries = self.journals().entries(key);
        if entries
            .iter()
            .any(|e| matches!(e.event, JournalEvent::Exit { .. }))
        {
            return None;
        }
        let JournalEvent::Spawned {
            pid,
            agent,
            parent,
            goal,
            model,
            granted,
            session,
            interactive,
            workspace,
            ..
        } = &entries.first()?.event
        else {
            return None;
        };
        let mut previous_pid = *pid;
        let mut resumes = 0;
        let mut grants = Grants::default();
        grants.tools.extend(granted.iter().cloned());
        let mut paused = false;
        for e in &entries {
            match &e.event {
                JournalEvent::Resumed { pid, .. } => {
                    previous_pid = *pid;
                    resumes += 1;
                }
                JournalEvent::Grant { tool, .. } => {
                    grants.tools.insert(tool.clone());
                }
                JournalEvent::State { state, .. } => paused = *state == ProcState::Paused,
                _ => {}
            }
        }
        let why_not = if parent.is_some() {
            Some(avix_proto::Error::conflict(
                "interrupted by a restart; child runs are not resumed (the parent sees its call interrupted)",
            ))
        } else if resumes >= MAX_RESUMES {
            Some(avix_proto::Error::new(
                avix_proto::ErrorKind::Limit,
                format!("interrupted by {} restarts; not resumed again", resumes + 1),
            ))
        } else {
            None
        };
        let outcome = match why_not {
            Some(reason) => Err(reason),
            None => {
                let messages = crate::journal::conversation(&entries);
                let pending = pending_calls(&messages, &entries);
                let req = SpawnRequest {
                    agent: AgentName::new(agent).ok()?,
                    goal: goal.clone(),
                    model: (!model.is_empty()).then(|| model.clone()),
                    tools: None,
                    interactive: Some(*interactive),
                    session: None,
                    params: Default::default(),
                };
                let adopt = Adopt {
                    key: key.clone(),
                    session: session.clone().unwrap_or_else(|| id.clone().into()),
                    previous_pid,
                    grants,
                    messages,
                    pending,
                    workspace: workspace.clone(),
                };
                match self
                    .spawn_with(user, req, None, crate::spawn::Origin::Interrupted(adopt))
                    .await
                {
                    Ok(p) => {
                        if paused {
                            let _ = self.signal(&avix_vfs::Caller::kernel(), &p, Signal::Pause);
                        }
                        Ok(p.pid)
                    }
                    Err(e) => Err(avix_proto::Error::new(
                        avix_proto::HasKind::kind(&e),
                        format!("could not be resumed after a restart: {e}"),
                    )),
                }
            }
        };
        if let Err(reason) = &outcome {
            // Recorded as ended, so it is not tried again at every start.
            match self.journals().open(key) {
                Ok(j) => {
                    if let Err(e) = j
                        .append_durable(JournalEvent::Exit {
                            state: ProcState::Failed,
                            code: 1,
                            reason: reason.message.clone(),
                        })
                        .await
                    {
                        tracing::warn!(invocation = %id, error = %e, "cannot record an interrupted run as failed");
                    }
                }
                Err(e) => {
                    tracing::warn!(invocation = %id, error = %e, "cannot open an interrupted run's journal");
                }
            }
            tracing::warn!(invocation = %id, previous_pid = %previous_pid, "{reason}");
        }
        Some(Recovered {
            invocation: id,
            previous_pid,
            outcome,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use avix_proto::time::Timestamp;

    fn e(seq: u64, event: JournalEvent) -> JournalEntry {
        JournalEntry {
            seq,
            ts: Timestamp::now(),
            event,
        }
    }

    fn text(role: MessageRole, t: &str) -> JournalEvent {
        JournalEvent::Message {
            role,
            content: vec![ContentBlock::Text { text: t.into() }],
        }
    }

    #[test]
    fn the_last_turn_s_calls_are_sorted_by_how_far_they_got() {
        let calls = JournalEvent::Message {
            role: MessageRole::Assistant,
            content: ["c1", "c2", "c3", "c4"]
                .iter()
                .map(|id| ContentBlock::ToolUse {
                    id: (*id).into(),
                    name: "fs/read".into(),
                    input: serde_json::json!({}),
                })
                .collect(),
        };
        let entries = vec![
            e(1, text(MessageRole::User, "goal")),
            e(2, text(MessageRole::User, "more input")),
            e(3, calls),
            e(
                4,
                JournalEvent::ToolCall {
                    call_id: "c1".into(),
                    tool: "fs/read".into(),
                    args: serde_json::json!({}),
                },
            ),
            e(
                5,
                JournalEvent::ToolResult {
                    call_id: "c1".into(),
                    tool: "fs/read".into(),
                    ok: true,
                    result: "contents".into(),
                    duration_ms: 1,
                },
            ),
            e(
                6,
                JournalEvent::PolicyDenied {
                    call_id: "c2".into(),
                    tool: "fs/read".into(),
                    reason: "not granted".into(),
                },
            ),
            e(
                7,
                JournalEvent::ToolCall {
                    call_id: "c3".into(),
                    tool: "fs/read".into(),
                    args: serde_json::json!({}),
                },
            ),
        ];
        let messages = crate::journal::conversation(&entries);
        assert_eq!(messages.len(), 2, "consecutive user messages merge");
        assert_eq!(messages[0].content.len(), 2);
        let p = pending_calls(&messages, &entries);
        assert!(
            matches!(&p[0].outcome, PendingOutcome::Done { ok: true, content } if content == "contents")
        );
        assert!(
            matches!(&p[1].outcome, PendingOutcome::Done { ok: false, content } if content.contains("not granted"))
        );
        assert!(matches!(p[2].outcome, PendingOutcome::Interrupted));
        assert!(matches!(p[3].outcome, PendingOutcome::NotStarted { .. }));
        // A conversation that ends with a user message has nothing pending.
        assert!(pending_calls(&messages[..1], &entries).is_empty());
    }
}
