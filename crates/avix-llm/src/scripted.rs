//! The scripted provider: a YAML script gives the assistant's text and tool calls turn by
//! turn, so runs are deterministic for tests and demos.
//!
//! ```yaml
//! apiVersion: avix/v1
//! kind: LlmScript
//! spec:
//!   chunkChars: 16        # text is streamed in chunks of this many characters
//!   chunkDelayMs: 0       # pause between chunks (lets tests pause mid-stream)
//!   repeatLast: false     # answer turns past the end with the last one
//!   turns:
//!     - text: I will write the file.
//!       toolCalls:
//!         - name: fs/write
//!           args: { path: notes.txt, content: hello }
//!     - match:            # the first alternative whose `when` holds answers
//!         - when: { contains: error }     # in the last tool result or user message
//!           text: It failed.
//!         - text: Done.
//! ```
//!
//! The turn answered is the number of assistant messages already in the conversation, so a
//! replayed or resumed conversation gets the same answers. A turn may also say
//! `error: <message>` (the call fails), `delayMs` (wait before answering) or
//! `stop: max_tokens`. In `text`, `{last}` stands for the last user message or tool result.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use avix_proto::envelope::{Document, Kind};
use avix_proto::llm::{
    ContentBlock, LlmRequest, LlmResponse, MessageRole, StopReason, StreamEvent, Usage,
};
use serde::{Deserialize, Serialize};

use crate::{BoxFuture, LlmClient, LlmError, StreamSink};

/// A script.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LlmScript {
    /// Characters per streamed text chunk.
    #[serde(default = "default_chunk")]
    pub chunk_chars: usize,
    /// Milliseconds between chunks.
    #[serde(default)]
    pub chunk_delay_ms: u64,
    /// Answer turns past the end with the last turn (a conversation continued in a new
    /// session run asks for more turns than the script was written for).
    #[serde(default)]
    pub repeat_last: bool,
    /// The turns, in order.
    pub turns: Vec<ScriptTurn>,
}

fn default_chunk() -> usize {
    16
}

/// One turn: a response, or alternatives picked by `when`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScriptTurn {
    /// The response (when there are no alternatives).
    #[serde(flatten)]
    pub response: ScriptResponse,
    /// Alternatives: the first whose `when` holds (or that has none) answers.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<ScriptAlternative>,
}

/// One possible answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScriptAlternative {
    /// The condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<ScriptWhen>,
    /// The answer.
    #[serde(flatten)]
    pub response: ScriptResponse,
}

/// A condition on the last user message or tool result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScriptWhen {
    /// Holds when the text contains this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    /// Holds when the last tool result is (or is not) an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
}

/// What the assistant answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScriptResponse {
    /// Text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Tool calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ScriptCall>,
    /// Fail the call with this message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Wait this long before answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Force a stop reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopReason>,
}

/// A scripted tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScriptCall {
    /// Canonical tool name.
    pub name: String,
    /// Arguments.
    #[serde(default = "empty_args")]
    pub args: serde_json::Value,
}

fn empty_args() -> serde_json::Value {
    serde_json::json!({})
}

impl Kind for LlmScript {
    const KIND: &'static str = "LlmScript";
    fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.turns.is_empty() {
            p.push("turns is empty".into());
        }
        if self.chunk_chars == 0 {
            p.push("chunkChars must be at least 1".into());
        }
        for (i, t) in self.turns.iter().enumerate() {
            if !t.alternatives.is_empty() && t.response != ScriptResponse::default() {
                p.push(format!(
                    "turn {}: give a response or `match`, not both",
                    i + 1
                ));
            }
            let responses =
                std::iter::once(&t.response).chain(t.alternatives.iter().map(|a| &a.response));
            for r in responses {
                for c in &r.tool_calls {
                    if avix_proto::tool::ToolName::new(&c.name).is_err() {
                        p.push(format!("turn {}: {:?} is not a tool name", i + 1, c.name));
                    }
                }
            }
        }
        p
    }
}

impl ScriptWhen {
    fn holds(&self, text: &str, is_error: Option<bool>) -> bool {
        self.contains
            .as_ref()
            .is_none_or(|c| text.contains(c.as_str()))
            && self.is_error.is_none_or(|e| is_error == Some(e))
    }
}

/// The text of the last user message (tool results included) and whether its last tool
/// result is an error.
fn last_input(req: &LlmRequest) -> (String, Option<bool>) {
    let Some(m) = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == MessageRole::User)
    else {
        return (String::new(), None);
    };
    let mut text = String::new();
    let mut err = None;
    for b in &m.content {
        match b {
            ContentBlock::Text { text: t } => text.push_str(t),
            ContentBlock::ToolResult {
                content, is_error, ..
            } => {
                text.push_str(content);
                err = Some(*is_error);
            }
            _ => {}
        }
    }
    (text, err)
}

impl LlmScript {
    /// The response for `req`.
    pub fn respond(&self, req: &LlmRequest) -> Result<&ScriptResponse, LlmError> {
        let k = req
            .messages
            .iter()
            .filter(|m| m.role == MessageRole::Assistant)
            .count();
        let turn = self
            .turns
            .get(k)
            .or_else(|| self.repeat_last.then(|| self.turns.last()).flatten())
            .ok_or_else(|| {
                LlmError::Script(format!(
                    "the script has {} turn(s) and the conversation asks for turn {} (set repeatLast: true to answer later turns with the last one)",
                    self.turns.len(),
                    k + 1
                ))
            })?;
        if turn.alternatives.is_empty() {
            return Ok(&turn.response);
        }
        let (text, is_error) = last_input(req);
        turn.alternatives
            .iter()
            .find(|a| a.when.as_ref().is_none_or(|w| w.holds(&text, is_error)))
            .map(|a| &a.response)
            .ok_or_else(|| {
                LlmError::Script(format!(
                    "turn {}: no alternative matches the last input",
                    k + 1
                ))
            })
    }
}

/// Rough token count: a token is about four characters.
fn tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

/// The provider: finds scripts by name in a directory and caches them by modification time.
#[derive(Debug)]
pub struct ScriptedProvider {
    name: String,
    dir: PathBuf,
    default_script: PathBuf,
    // Parsed scripts by path, with the mtime they were read at.
    cache: Mutex<HashMap<PathBuf, (SystemTime, std::sync::Arc<LlmScript>)>>,
}

impl ScriptedProvider {
    /// A provider named `name` whose `<model>` is `dir/<model>.yaml`, and whose default model
    /// is the script `default_script` (absolute, or relative to `dir`'s parent).
    pub fn new(
        name: impl Into<String>,
        dir: impl Into<PathBuf>,
        default_script: impl Into<PathBuf>,
    ) -> Self {
        Self {
            name: name.into(),
            dir: dir.into(),
            default_script: default_script.into(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn script_path(&self, model: &str) -> Result<PathBuf, LlmError> {
        if model.is_empty() || model == "default" {
            return Ok(self.default_script.clone());
        }
        if !model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(LlmError::Config(format!(
                "scripted model {model:?} must be a script name ([a-z0-9_-])"
            )));
        }
        Ok(self.dir.join(format!("{model}.yaml")))
    }

    /// Loads (or reuses) the script at `path`.
    pub fn load(&self, path: &Path) -> Result<std::sync::Arc<LlmScript>, LlmError> {
        let shown = path.display();
        let mtime = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map_err(|e| LlmError::Config(format!("cannot read the script {shown}: {e}")))?;
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((t, s)) = cache.get(path)
            && *t == mtime
        {
            return Ok(s.clone());
        }
        let bytes = std::fs::read(path)
            .map_err(|e| LlmError::Config(format!("cannot read the script {shown}: {e}")))?;
        let doc = Document::<LlmScript>::parse(&bytes)
            .map_err(|e| LlmError::Script(format!("the script {shown} is invalid: {e}")))?;
        let s = std::sync::Arc::new(doc.spec);
        cache.insert(path.to_path_buf(), (mtime, s.clone()));
        Ok(s)
    }

    fn model_of<'a>(&self, req: &'a LlmRequest) -> &'a str {
        crate::model_part(&self.name, &req.model)
    }
}

impl LlmClient for ScriptedProvider {
    fn complete(
        &self,
        req: LlmRequest,
        sink: Option<StreamSink>,
    ) -> BoxFuture<'_, Result<LlmResponse, LlmError>> {
        Box::pin(async move {
            let model = self.model_of(&req).to_owned();
            let script = self.load(&self.script_path(&model)?)?;
            let r = script.respond(&req)?.clone();
            if let Some(ms) = r.delay_ms {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if let Some(e) = &r.error {
                return Err(LlmError::Provider {
                    provider: self.name.clone(),
                    status: 500,
                    message: e.clone(),
                });
            }
            let mut content = Vec::new();
            let k = req
                .messages
                .iter()
                .filter(|m| m.role == MessageRole::Assistant)
                .count();
            if let Some(text) = &r.text {
                // `{last}` stands for the last user message or tool result.
                let text = &if text.contains("{last}") {
                    text.replace("{last}", &last_input(&req).0)
                } else {
                    text.clone()
                };
                let chars: Vec<char> = text.chars().collect();
                for chunk in chars.chunks(script.chunk_chars) {
                    if script.chunk_delay_ms > 0 {
                        tokio::time::sleep(Duration::from_millis(script.chunk_delay_ms)).await;
                    }
                    if let Some(s) = &sink {
                        s(&StreamEvent::TextDelta {
                            text: chunk.iter().collect(),
                        });
                    }
                }
                content.push(ContentBlock::Text { text: text.clone() });
            }
            for (i, c) in r.tool_calls.iter().enumerate() {
                let id = format!("call-{}-{}", k + 1, i + 1);
                if let Some(s) = &sink {
                    s(&StreamEvent::ToolCallStart {
                        id: id.clone(),
                        name: c.name.clone(),
                    });
                    s(&StreamEvent::ToolCallDelta {
                        id: id.clone(),
                        json: c.args.to_string(),
                    });
                }
                content.push(ContentBlock::ToolUse {
                    id,
                    name: c.name.clone(),
                    input: c.args.clone(),
                });
            }
            let stop_reason = r.stop.unwrap_or(if r.tool_calls.is_empty() {
                StopReason::EndTurn
            } else {
                StopReason::ToolUse
            });
            let in_chars = req.system.len()
                + req
                    .messages
                    .iter()
                    .map(|m| serde_json::to_string(&m.content).map_or(0, |s| s.len()))
                    .sum::<usize>();
            let out_chars = serde_json::to_string(&content).map_or(0, |s| s.len());
            Ok(LlmResponse {
                provider: self.name.clone(),
                model: if model.is_empty() {
                    "default".into()
                } else {
                    model
                },
                content,
                stop_reason,
                usage: Usage {
                    input_tokens: tokens(in_chars),
                    output_tokens: tokens(out_chars),
                },
                cost_usd: None,
                queued_ms: 0,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use avix_proto::llm::Message;

    const SCRIPT: &str = "\
apiVersion: avix/v1
kind: LlmScript
spec:
  chunkChars: 4
  turns:
    - text: Writing.
      toolCalls:
        - { name: fs/write, args: { path: a.txt, content: hi } }
    - match:
        - when: { isError: true }
          text: It failed.
        - text: Done.
";

    fn req(messages: Vec<Message>) -> LlmRequest {
        LlmRequest {
            model: "scripted/t".into(),
            system: "s".into(),
            messages,
            tools: vec![],
            max_tokens: 100,
            temperature: None,
            meta: Default::default(),
        }
    }

    fn provider() -> (tempfile::TempDir, ScriptedProvider) {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("t.yaml"), SCRIPT).unwrap();
        let p = ScriptedProvider::new("scripted", d.path(), d.path().join("t.yaml"));
        (d, p)
    }

    #[tokio::test]
    async fn answers_turn_by_turn_and_streams() {
        let (_d, p) = provider();
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let sink: StreamSink = std::sync::Arc::new(move |e| s2.lock().unwrap().push(e.clone()));
        let r = p
            .complete(req(vec![Message::user_text("go")]), Some(sink))
            .await
            .unwrap();
        assert_eq!(r.stop_reason, StopReason::ToolUse);
        assert_eq!(r.content.len(), 2);
        let deltas: Vec<_> = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, StreamEvent::TextDelta { .. }))
            .cloned()
            .collect();
        assert_eq!(deltas.len(), 2, "'Writing.' in chunks of 4");
        let assistant = Message {
            role: MessageRole::Assistant,
            content: r.content.clone(),
        };
        let failed = Message {
            role: MessageRole::User,
            content: vec![ContentBlock::ToolResult {
                tool_use_id: "call-1-1".into(),
                content: "denied".into(),
                is_error: true,
            }],
        };
        let r2 = p
            .complete(
                req(vec![Message::user_text("go"), assistant.clone(), failed]),
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            r2.content,
            vec![ContentBlock::Text {
                text: "It failed.".into()
            }]
        );
        let ok = Message {
            role: MessageRole::User,
            content: vec![ContentBlock::ToolResult {
                tool_use_id: "call-1-1".into(),
                content: "ok".into(),
                is_error: false,
            }],
        };
        let r3 = p
            .complete(
                req(vec![
                    Message::user_text("go"),
                    assistant.clone(),
                    ok.clone(),
                ]),
                None,
            )
            .await
            .unwrap();
        assert_eq!(r3.stop_reason, StopReason::EndTurn);
        let e = p
            .complete(
                req(vec![
                    Message::user_text("go"),
                    assistant.clone(),
                    ok,
                    Message::assistant_text("Done."),
                    Message::user_text("more"),
                ]),
                None,
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("2 turn(s)"), "{e}");
    }

    #[tokio::test]
    async fn bad_scripts_and_names_are_clear_errors() {
        let (d, p) = provider();
        std::fs::write(
            d.path().join("bad.yaml"),
            "apiVersion: avix/v1\nkind: LlmScript\nspec: {turns: []}\n",
        )
        .unwrap();
        let mut r = req(vec![Message::user_text("x")]);
        r.model = "scripted/bad".into();
        assert!(
            p.complete(r.clone(), None)
                .await
                .unwrap_err()
                .to_string()
                .contains("turns is empty")
        );
        r.model = "scripted/../etc".into();
        assert!(
            p.complete(r.clone(), None)
                .await
                .unwrap_err()
                .to_string()
                .contains("script name")
        );
        r.model = "scripted/missing".into();
        assert!(
            p.complete(r, None)
                .await
                .unwrap_err()
                .to_string()
                .contains("cannot read the script")
        );
    }
}
