//! The replay provider: plays back the answers an earlier invocation got, from its journal.
//! The model `replay/<invocation-id>` answers turn N (the number of assistant messages
//! already in the conversation) with that invocation's Nth assistant message, streamed as
//! the original was, with the token counts the original call reported.
//!
//! Only the asking user's own invocations can be replayed: the journal is asked of a
//! [`JournalSource`] (the kernel's journals) by the asking user and the invocation id.

use std::sync::Arc;

use avix_proto::agent::{JournalEntry, JournalEvent};
use avix_proto::llm::{
    ContentBlock, LlmRequest, LlmResponse, MessageRole, StopReason, StreamEvent, Usage,
};

use crate::{BoxFuture, LlmClient, LlmError, StreamSink};

/// Where a replay finds past invocations' journals: the kernel's, by user and invocation id
/// (this crate never reads the kernel's files itself).
pub trait JournalSource: Send + Sync + std::fmt::Debug {
    /// The journal of `user`'s invocation `id` (torn lines left out), or `None` when `user` has
    /// no invocation by that id.
    fn entries(&self, user: &str, id: &str) -> Option<Vec<JournalEntry>>;
}

/// A source without journals: every replay is "no invocation" (a service built without a
/// kernel, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoJournals;

impl JournalSource for NoJournals {
    fn entries(&self, _user: &str, _id: &str) -> Option<Vec<JournalEntry>> {
        None
    }
}

/// Replays the journals a [`JournalSource`] holds.
#[derive(Debug, Clone)]
pub struct ReplayProvider {
    name: String,
    journals: Arc<dyn JournalSource>,
}

/// One recorded answer.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    content: Vec<ContentBlock>,
    stop: Option<StopReason>,
    usage: Usage,
    model: Option<String>,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl ReplayProvider {
    /// A provider named `name` replaying the journals of `journals`.
    pub fn new(name: impl Into<String>, journals: Arc<dyn JournalSource>) -> Self {
        Self {
            name: name.into(),
            journals,
        }
    }

    fn not_found(&self, id: &str) -> LlmError {
        LlmError::Config(format!(
            "no invocation {id} among your agents' journals; the model for a replay is {}/<invocation-id> (see /users/<you>/agents/<agent>/)",
            self.name
        ))
    }

    fn answers(entries: Vec<JournalEntry>) -> Vec<Answer> {
        let mut answers: Vec<Answer> = Vec::new();
        let mut calls: Vec<(Usage, StopReason, String)> = Vec::new();
        for e in entries {
            match e.event {
                JournalEvent::Message {
                    role: MessageRole::Assistant,
                    content,
                } => answers.push(Answer {
                    content,
                    stop: None,
                    usage: Usage::default(),
                    model: None,
                }),
                JournalEvent::LlmCall {
                    usage,
                    stop_reason,
                    model,
                    ..
                } => calls.push((usage, stop_reason, model)),
                _ => {}
            }
        }
        for (a, (usage, stop, model)) in answers.iter_mut().zip(calls) {
            a.usage = usage;
            a.stop = Some(stop);
            a.model = Some(model);
        }
        answers
    }
}

impl LlmClient for ReplayProvider {
    fn complete(
        &self,
        req: LlmRequest,
        sink: Option<StreamSink>,
    ) -> BoxFuture<'_, Result<LlmResponse, LlmError>> {
        Box::pin(async move {
            let id = crate::model_part(&self.name, &req.model).to_owned();
            if !valid_id(&id) {
                return Err(self.not_found(&id));
            }
            if req.meta.user.is_empty() {
                return Err(LlmError::Config(
                    "a replay needs to know who asks; it replays only your own invocations".into(),
                ));
            }
            let (journals, user, inv) = (self.journals.clone(), req.meta.user.clone(), id.clone());
            let entries = tokio::task::spawn_blocking(move || journals.entries(&user, &inv))
                .await
                .map_err(|e| LlmError::Config(format!("the replay task failed: {e}")))?
                .ok_or_else(|| self.not_found(&id))?;
            let answers = Self::answers(entries);
            let turn = req
                .messages
                .iter()
                .filter(|m| m.role == MessageRole::Assistant)
                .count();
            let Some(a) = answers.get(turn).cloned() else {
                return Err(LlmError::Script(format!(
                    "invocation {id} has {} recorded answers; this conversation asks for answer {}",
                    answers.len(),
                    turn + 1
                )));
            };
            if let Some(s) = &sink {
                for b in &a.content {
                    match b {
                        ContentBlock::Text { text } => {
                            s(&StreamEvent::TextDelta { text: text.clone() })
                        }
                        ContentBlock::ToolUse { id, name, input } => {
                            s(&StreamEvent::ToolCallStart {
                                id: id.clone(),
                                name: name.clone(),
                            });
                            s(&StreamEvent::ToolCallDelta {
                                id: id.clone(),
                                json: input.to_string(),
                            });
                        }
                        _ => {}
                    }
                }
            }
            let calls = a
                .content
                .iter()
                .any(|b| matches!(b, ContentBlock::ToolUse { .. }));
            Ok(LlmResponse {
                provider: self.name.clone(),
                model: a.model.unwrap_or(id),
                stop_reason: a.stop.unwrap_or(if calls {
                    StopReason::ToolUse
                } else {
                    StopReason::EndTurn
                }),
                content: a.content,
                usage: a.usage,
                cost_usd: None,
                queued_ms: 0,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use avix_proto::llm::Message;
    use avix_proto::time::Timestamp;

    use super::*;

    fn entry(seq: u64, event: JournalEvent) -> JournalEntry {
        JournalEntry {
            seq,
            ts: Timestamp::now(),
            event,
        }
    }

    /// Alice's invocation inv-1, and nothing else.
    #[derive(Debug)]
    struct AliceInv1(Vec<JournalEntry>);

    impl JournalSource for AliceInv1 {
        fn entries(&self, user: &str, id: &str) -> Option<Vec<JournalEntry>> {
            (user == "alice" && id == "inv-1").then(|| self.0.clone())
        }
    }

    #[tokio::test]
    async fn replays_answers_turn_by_turn_for_their_owner_only() {
        let call = ContentBlock::ToolUse {
            id: "c1".into(),
            name: "fs/read".into(),
            input: serde_json::json!({"path": "a"}),
        };
        let lines = [
            entry(
                1,
                JournalEvent::Message {
                    role: MessageRole::User,
                    content: vec![ContentBlock::Text { text: "go".into() }],
                },
            ),
            entry(
                2,
                JournalEvent::LlmCall {
                    model: "m1".into(),
                    provider: "p".into(),
                    stop_reason: StopReason::ToolUse,
                    usage: Usage {
                        input_tokens: 10,
                        output_tokens: 3,
                    },
                    duration_ms: 5,
                    cost_usd: None,
                    queued_ms: 0,
                },
            ),
            entry(
                3,
                JournalEvent::Message {
                    role: MessageRole::Assistant,
                    content: vec![call.clone()],
                },
            ),
            entry(
                4,
                JournalEvent::LlmCall {
                    model: "m1".into(),
                    provider: "p".into(),
                    stop_reason: StopReason::EndTurn,
                    usage: Usage {
                        input_tokens: 20,
                        output_tokens: 4,
                    },
                    duration_ms: 5,
                    cost_usd: None,
                    queued_ms: 0,
                },
            ),
            entry(
                5,
                JournalEvent::Message {
                    role: MessageRole::Assistant,
                    content: vec![ContentBlock::Text {
                        text: "done".into(),
                    }],
                },
            ),
        ];
        let p = ReplayProvider::new("replay", Arc::new(AliceInv1(lines.to_vec())));
        let mut req = LlmRequest {
            model: "replay/inv-1".into(),
            system: String::new(),
            messages: vec![Message::user_text("go")],
            tools: vec![],
            max_tokens: 10,
            temperature: None,
            meta: Default::default(),
        };
        req.meta.user = "alice".into();
        let r = p.complete(req.clone(), None).await.unwrap();
        assert_eq!(r.content, vec![call.clone()]);
        assert_eq!(r.stop_reason, StopReason::ToolUse);
        assert_eq!(r.usage.input_tokens, 10);
        req.messages.push(Message {
            role: MessageRole::Assistant,
            content: vec![call],
        });
        let r = p.complete(req.clone(), None).await.unwrap();
        assert_eq!(
            r.content,
            vec![ContentBlock::Text {
                text: "done".into()
            }]
        );
        req.messages.push(Message::assistant_text("done"));
        let e = p.complete(req.clone(), None).await.unwrap_err();
        assert!(e.to_string().contains("has 2 recorded answers"), "{e}");
        req.meta.user = "bob".into();
        assert!(
            p.complete(req.clone(), None)
                .await
                .unwrap_err()
                .to_string()
                .contains("no invocation")
        );
        req.model = "replay/../alice".into();
        assert!(p.complete(req, None).await.is_err());
    }
}
