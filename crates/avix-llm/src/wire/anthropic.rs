//! The Anthropic Messages API (`POST /v1/messages`), streamed as SSE: `message_start`,
//! `content_block_start`, `content_block_delta` (`text_delta`, `input_json_delta`),
//! `content_block_stop`, `message_delta`, `message_stop`, `ping` and `error`.

use std::collections::HashMap;

use avix_proto::llm::{ContentBlock, LlmRequest, MessageRole, StopReason};
use avix_proto::tool::mangle;
use serde_json::{Value, json};

use super::{TextWire, WireError, WireStream, image_data, join, object_schema, temperature};
use crate::assemble::Assembler;
use crate::framing::{Frame, Framing};

/// The API version header value this adapter speaks.
pub const API_VERSION: &str = "2023-06-01";

/// Anthropic Messages.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anthropic;

fn block(b: &ContentBlock) -> Result<Option<Value>, String> {
    Ok(Some(match b {
        ContentBlock::Text { text } if text.is_empty() => return Ok(None),
        ContentBlock::Text { text } => json!({"type": "text", "text": text}),
        ContentBlock::Image {
            media_type,
            data,
            path,
        } => json!({
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": image_data(data.as_ref(), path.as_ref())?},
        }),
        ContentBlock::ToolUse { id, name, input } => {
            json!({"type": "tool_use", "id": id, "name": mangle(name), "input": input})
        }
        ContentBlock::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => {
            let mut v =
                json!({"type": "tool_result", "tool_use_id": tool_use_id, "content": content});
            if *is_error {
                v["is_error"] = json!(true);
            }
            v
        }
    }))
}

/// The conversation as Anthropic messages: consecutive messages of one role are merged
/// (the API wants them alternating) and tool results come first in their message.
fn messages(req: &LlmRequest) -> Result<Vec<Value>, String> {
    let mut out: Vec<(MessageRole, Vec<Value>)> = Vec::new();
    for m in &req.messages {
        let mut blocks = Vec::with_capacity(m.content.len());
        for b in &m.content {
            blocks.extend(block(b)?);
        }
        if blocks.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((role, prev)) if *role == m.role => prev.extend(blocks),
            _ => out.push((m.role, blocks)),
        }
    }
    Ok(out
        .into_iter()
        .map(|(role, mut blocks)| {
            blocks.sort_by_key(|b| b["type"] != "tool_result");
            let role = match role {
                MessageRole::User => "user",
                MessageRole::Assistant => "assistant",
            };
            json!({"role": role, "content": blocks})
        })
        .collect())
}

fn stop_reason(s: &str) -> StopReason {
    match s {
        "tool_use" => StopReason::ToolUse,
        "max_tokens" | "model_context_window_exceeded" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        _ => StopReason::EndTurn,
    }
}

/// The HTTP status an in-stream error type stands for.
fn error_status(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "overloaded_error" => 529,
        "timeout_error" => 504,
        _ => 500,
    }
}

fn usage_into(u: &Value, asm: &mut Assembler) {
    let n = |k: &str| u.get(k).and_then(Value::as_u64);
    let input = [
        "input_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    ]
    .iter()
    .filter_map(|k| n(k))
    .sum::<u64>();
    if input > 0 {
        asm.usage.input_tokens = input;
    }
    if let Some(o) = n("output_tokens") {
        asm.usage.output_tokens = o;
    }
}

impl TextWire for Anthropic {
    fn url(&self, base: &str) -> String {
        join(base, "/v1/messages")
    }

    fn framing(&self) -> Framing {
        Framing::Sse
    }

    fn body(&self, req: &LlmRequest, model: &str, stream: bool) -> Result<Value, WireError> {
        let mut body = json!({
            "model": model,
            "max_tokens": req.max_tokens.max(1),
            "messages": messages(req)?,
        });
        if !req.system.is_empty() {
            body["system"] = json!(req.system);
        }
        if !req.tools.is_empty() {
            body["tools"] = req
                .tools
                .iter()
                .map(|t| {
                    json!({
                        "name": mangle(&t.name),
                        "description": t.description,
                        "input_schema": object_schema(&t.input_schema),
                    })
                })
                .collect();
        }
        if let Some(t) = temperature(req.temperature, 1.0) {
            body["temperature"] = json!(t);
        }
        if stream {
            body["stream"] = json!(true);
        }
        Ok(body)
    }

    fn stream(&self) -> Box<dyn WireStream> {
        Box::new(Stream::default())
    }

    fn parse_full(&self, body: &[u8], asm: &mut Assembler) -> Result<(), WireError> {
        let v = super::body_json(body)?;
        if v["type"] == "error" {
            return Err(in_stream_error(&v));
        }
        let content = v["content"]
            .as_array()
            .ok_or_else(|| WireError::Protocol("the response has no content array".into()))?;
        for b in content {
            match b["type"].as_str() {
                Some("text") => {
                    asm.text(b["text"].as_str().unwrap_or_default());
                    asm.break_text();
                }
                Some("tool_use") => asm.tool_whole(
                    b["id"].as_str().unwrap_or_default(),
                    b["name"].as_str().unwrap_or_default(),
                    b["input"].clone(),
                ),
                _ => {}
            }
        }
        asm.stop = v["stop_reason"].as_str().map(stop_reason);
        asm.model = v["model"].as_str().map(str::to_owned);
        usage_into(&v["usage"], asm);
        Ok(())
    }
}

fn in_stream_error(v: &Value) -> WireError {
    let kind = v
        .pointer("/error/type")
        .and_then(Value::as_str)
        .unwrap_or("api_error");
    let message = v
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("unknown error");
    WireError::Provider {
        status: error_status(kind),
        message: format!("{kind}: {message}"),
    }
}

#[derive(Debug, Default)]
struct Stream {
    // Content block index → whether it is a tool call.
    blocks: HashMap<u64, bool>,
    started: bool,
    stopped: bool,
}

impl WireStream for Stream {
    fn frame(&mut self, frame: Frame, asm: &mut Assembler) -> Result<bool, WireError> {
        let v = super::json(&frame)?;
        let kind = v["type"]
            .as_str()
            .or(frame.event.as_deref())
            .unwrap_or_default();
        let index = || {
            v["index"]
                .as_u64()
                .ok_or_else(|| WireError::Protocol(format!("{kind} without an index")))
        };
        match kind {
            "message_start" => {
                self.started = true;
                let m = &v["message"];
                asm.model = m["model"].as_str().map(str::to_owned);
                usage_into(&m["usage"], asm);
            }
            "content_block_start" => {
                let i = index()?;
                let b = &v["content_block"];
                match b["type"].as_str() {
                    Some("tool_use") => {
                        self.blocks.insert(i, true);
                        let id = b["id"].as_str().unwrap_or_default();
                        let name = b["name"].as_str().unwrap_or_default();
                        asm.tool_start(&i.to_string(), id, name);
                    }
                    Some("text") => {
                        self.blocks.insert(i, false);
                        asm.text(b["text"].as_str().unwrap_or_default());
                    }
                    // thinking, redacted_thinking, server tools: not part of the answer.
                    _ => {}
                }
            }
            "content_block_delta" => {
                let i = index()?;
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => asm.text(d["text"].as_str().unwrap_or_default()),
                    Some("input_json_delta") if self.blocks.get(&i) == Some(&true) => {
                        asm.tool_args(
                            &i.to_string(),
                            d["partial_json"].as_str().unwrap_or_default(),
                        )?;
                    }
                    Some("input_json_delta") => {
                        return Err(WireError::Protocol(format!(
                            "input_json_delta for block {i}, which is not a tool call"
                        )));
                    }
                    _ => {}
                }
            }
            "content_block_stop" if self.blocks.get(&index()?) == Some(&false) => {
                asm.break_text();
            }
            "message_delta" => {
                if let Some(s) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    asm.stop = Some(stop_reason(s));
                }
                usage_into(&v["usage"], asm);
            }
            "message_stop" => {
                self.stopped = true;
                return Ok(true);
            }
            "error" => return Err(in_stream_error(&v)),
            // ping, and event types added later: ignored, as the API asks.
            _ => {}
        }
        Ok(false)
    }

    fn complete_enough(&self) -> bool {
        self.stopped
    }
}

#[cfg(test)]
mod tests {
    use avix_proto::llm::{Message, ToolSpec};

    use super::*;

    fn req() -> LlmRequest {
        LlmRequest {
            model: "m".into(),
            system: "be brief".into(),
            messages: vec![
                Message::user_text("hi"),
                Message {
                    role: MessageRole::Assistant,
                    content: vec![ContentBlock::ToolUse {
                        id: "t1".into(),
                        name: "fs/read".into(),
                        input: json!({"path": "a"}),
                    }],
                },
                Message {
                    role: MessageRole::User,
                    content: vec![ContentBlock::ToolResult {
                        tool_use_id: "t1".into(),
                        content: "boom".into(),
                        is_error: true,
                    }],
                },
                Message::user_text("and then?"),
            ],
            tools: vec![ToolSpec {
                name: "fs/read".into(),
                description: "read".into(),
                input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
            }],
            max_tokens: 100,
            temperature: Some(1.5),
            meta: Default::default(),
        }
    }

    #[test]
    fn request_body_is_the_messages_shape() {
        let b = Anthropic.body(&req(), "claude-x", true).unwrap();
        assert_eq!(b["system"], "be brief");
        assert_eq!(b["temperature"], 1.0);
        assert_eq!(b["tools"][0]["name"], "fs__read");
        assert_eq!(b["messages"][1]["content"][0]["name"], "fs__read");
        // The tool result and the next user text are merged, the result first.
        assert_eq!(b["messages"].as_array().unwrap().len(), 3);
        assert_eq!(b["messages"][2]["content"][0]["type"], "tool_result");
        assert_eq!(b["messages"][2]["content"][0]["is_error"], true);
        assert_eq!(b["messages"][2]["content"][1]["text"], "and then?");
        assert_eq!(b["stream"], true);
    }

    #[test]
    fn a_whole_response_parses() {
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"ok"},{"type":"tool_use","id":"t2","name":"fs__list","input":{"path":"/"}}],"stop_reason":"tool_use","usage":{"input_tokens":10,"output_tokens":4}}"#;
        let mut a = Assembler::new(None);
        Anthropic.parse_full(body, &mut a).unwrap();
        assert_eq!(a.usage.total(), 14);
        let (c, stop) = a.finish().unwrap();
        assert_eq!(stop, StopReason::ToolUse);
        assert_eq!(c.len(), 2);
    }
}
