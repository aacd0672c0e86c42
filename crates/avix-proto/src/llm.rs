//! The Avix-native LLM types: what the executor sends to a provider adapter and what comes
//! back. Adapters (llm.svc) translate these to each provider's wire format; the executor never
//! sees a provider format, and tool names here are canonical (`fs/read`), never mangled.

use serde::{Deserialize, Serialize};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    /// The user, tool results, injected input.
    User,
    /// The model.
    Assistant,
}

/// One piece of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum ContentBlock {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image, inline (base64) or by VFS path.
    Image {
        /// MIME type, e.g. `image/png`.
        media_type: String,
        /// Base64 data, if inline.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<String>,
        /// VFS path, if by reference.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
    /// The model asks for a tool call.
    ToolUse {
        /// Call id, unique within the conversation.
        id: String,
        /// Canonical tool name.
        name: String,
        /// Arguments (a JSON object).
        input: serde_json::Value,
    },
    /// The result of a tool call, sent back to the model.
    ToolResult {
        /// The call it answers.
        tool_use_id: String,
        /// The result (text or JSON as text).
        content: String,
        /// Whether it is an error the model should react to.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Author.
    pub role: MessageRole,
    /// Content.
    pub content: Vec<ContentBlock>,
}

impl Message {
    /// A user message with one text block.
    pub fn user_text(text: impl Into<String>) -> Self {
        Self {
            role: MessageRole::User,
            content: vec![ContentBlock::Text { text: text.into() }],
        }
    }

    /// An assistant message with one text block.
    pub fn assistant_text(text: impl Into<String>) -> Self {
        Self {
            role: MessageRole::Assistant,
            content: vec![ContentBlock::Text { text: text.into() }],
        }
    }

    /// The concatenated text blocks.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for b in &self.content {
            if let ContentBlock::Text { text } = b {
                s.push_str(text);
            }
        }
        s
    }

    /// The tool calls in this message.
    pub fn tool_calls(&self) -> impl Iterator<Item = (&str, &str, &serde_json::Value)> {
        self.content.iter().filter_map(|b| match b {
            ContentBlock::ToolUse { id, name, input } => Some((id.as_str(), name.as_str(), input)),
            _ => None,
        })
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolSpec {
    /// Canonical name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of the arguments.
    pub input_schema: serde_json::Value,
}

/// Who is asking, for accounting, scheduling and logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestMeta {
    /// Agent PID.
    pub pid: crate::Pid,
    /// Invocation id.
    pub invocation_id: crate::InvocationId,
    /// User.
    pub user: String,
    /// Scheduling priority, 0 (lowest) to 9; 5 is normal.
    #[serde(default = "normal_priority")]
    pub priority: u8,
}

/// The priority of a request that names none.
pub const NORMAL_PRIORITY: u8 = 5;

fn normal_priority() -> u8 {
    NORMAL_PRIORITY
}

impl Default for RequestMeta {
    fn default() -> Self {
        Self {
            pid: crate::Pid::new(0),
            invocation_id: crate::InvocationId::from(""),
            user: String::new(),
            priority: NORMAL_PRIORITY,
        }
    }
}

/// A completion request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LlmRequest {
    /// `provider/model`, a model of the default provider, or an alias.
    pub model: String,
    /// System prompt.
    pub system: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    pub tools: Vec<ToolSpec>,
    /// Output token cap.
    pub max_tokens: u32,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Who is asking.
    #[serde(default)]
    pub meta: RequestMeta,
}

/// Why the model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Finished its answer.
    EndTurn,
    /// Wants tool results.
    ToolUse,
    /// Hit the output cap.
    MaxTokens,
    /// Hit a stop sequence.
    StopSequence,
}

/// Token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
}

impl Usage {
    /// Input plus output.
    pub fn total(self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

/// A completed response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LlmResponse {
    /// Provider that answered.
    pub provider: String,
    /// Model that answered.
    pub model: String,
    /// Content (text and tool calls).
    pub content: Vec<ContentBlock>,
    /// Why it stopped.
    pub stop_reason: StopReason,
    /// Tokens used.
    pub usage: Usage,
    /// What it cost, in US dollars, when prices are configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// How long the request waited in the provider's queue.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub queued_ms: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Incremental output while a response streams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum StreamEvent {
    /// More text.
    TextDelta {
        /// The new text.
        text: String,
    },
    /// A tool call begins.
    ToolCallStart {
        /// Call id.
        id: String,
        /// Canonical tool name.
        name: String,
    },
    /// More of a tool call's JSON arguments.
    ToolCallDelta {
        /// Call id.
        id: String,
        /// A fragment of the JSON text.
        json: String,
    },
    /// The request waits in the provider's queue (limits reached).
    Queued {
        /// Provider.
        provider: String,
        /// Place in the queue (1: next).
        position: usize,
    },
    /// The request left the queue and is being sent.
    Dispatched {
        /// Time spent queued.
        queued_ms: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_serialize_with_a_type_tag_and_camel_case() {
        let b = ContentBlock::ToolResult {
            tool_use_id: "c1".into(),
            content: "ok".into(),
            is_error: false,
        };
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            r#"{"type":"tool_result","toolUseId":"c1","content":"ok"}"#
        );
        let m = Message {
            role: MessageRole::Assistant,
            content: vec![
                ContentBlock::Text { text: "hi".into() },
                ContentBlock::ToolUse {
                    id: "c1".into(),
                    name: "fs/read".into(),
                    input: serde_json::json!({"path": "a"}),
                },
            ],
        };
        let back: Message = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.tool_calls().count(), 1);
        assert_eq!(back.text(), "hi");
    }
}
