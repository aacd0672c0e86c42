//! OpenAI Chat Completions (`POST {base}/chat/completions`), streamed as SSE chunks with
//! `delta.content` and `delta.tool_calls` fragments, usage in the last chunk, then `[DONE]`.
//! Also any OpenAI-compatible server (vLLM, llama.cpp server, LM Studio) at its base URL.

use std::collections::HashMap;

use avix_proto::llm::{ContentBlock, LlmRequest, MessageRole, StopReason};
use avix_proto::tool::mangle;
use serde_json::{Value, json};

use super::{TextWire, WireError, WireStream, image_data, join, object_schema, temperature};
use crate::assemble::Assembler;
use crate::framing::{Frame, Framing};

/// OpenAI Chat Completions.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenAi {
    /// `true` for OpenAI itself: the output cap is sent as `max_completion_tokens` and
    /// reasoning models get no temperature. Compatible servers get `max_tokens`.
    pub official: bool,
}

/// Models that accept only the default temperature (reasoning models).
fn fixed_temperature(model: &str) -> bool {
    ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|p| model == *p || model.starts_with(&format!("{p}-")))
}

fn user_parts(blocks: &[&ContentBlock]) -> Result<Value, String> {
    if let [ContentBlock::Text { text }] = blocks {
        return Ok(json!(text));
    }
    let mut parts = Vec::new();
    for b in blocks {
        match b {
            ContentBlock::Text { text } => parts.push(json!({"type": "text", "text": text})),
            ContentBlock::Image {
                media_type,
                data,
                path,
            } => {
                let data = image_data(data.as_ref(), path.as_ref())?;
                parts.push(json!({"type": "image_url", "image_url": {"url": format!("data:{media_type};base64,{data}")}}));
            }
            _ => {}
        }
    }
    Ok(Value::Array(parts))
}

/// The conversation as chat messages: tool results become `tool` messages right after the
/// assistant message that asked for them.
pub(crate) fn messages(req: &LlmRequest) -> Result<Vec<Value>, String> {
    let mut out = Vec::with_capacity(req.messages.len() + 1);
    if !req.system.is_empty() {
        out.push(json!({"role": "system", "content": req.system}));
    }
    for m in &req.messages {
        match m.role {
            MessageRole::Assistant => {
                let text = m.text();
                let calls: Vec<Value> = m
                    .tool_calls()
                    .map(|(id, name, input)| {
                        json!({"id": id, "type": "function", "function": {"name": mangle(name), "arguments": input.to_string()}})
                    })
                    .collect();
                let mut msg = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(calls);
                }
                out.push(msg);
            }
            MessageRole::User => {
                let mut rest = Vec::new();
                for b in &m.content {
                    match b {
                        ContentBlock::ToolResult {
                            tool_use_id,
                            content,
                            ..
                        } => out.push(
                            json!({"role": "tool", "tool_call_id": tool_use_id, "content": content}),
                        ),
                        ContentBlock::Text { text } if text.is_empty() => {}
                        ContentBlock::Text { .. } | ContentBlock::Image { .. } => rest.push(b),
                        ContentBlock::ToolUse { .. } => {}
                    }
                }
                if !rest.is_empty() {
                    out.push(json!({"role": "user", "content": user_parts(&rest)?}));
                }
            }
        }
    }
    Ok(out)
}

/// Tools in the `function` shape (shared with Ollama).
pub(crate) fn tools(req: &LlmRequest) -> Value {
    req.tools
        .iter()
        .map(|t| {
            json!({"type": "function", "function": {
                "name": mangle(&t.name),
                "description": t.description,
                "parameters": object_schema(&t.input_schema),
            }})
        })
        .collect()
}

fn finish_reason(s: &str) -> StopReason {
    match s {
        "length" => StopReason::MaxTokens,
        "tool_calls" | "function_call" => StopReason::ToolUse,
        _ => StopReason::EndTurn,
    }
}

fn usage_into(u: &Value, asm: &mut Assembler) {
    if let Some(p) = u["prompt_tokens"].as_u64() {
        asm.usage.input_tokens = p;
    }
    if let Some(c) = u["completion_tokens"].as_u64() {
        asm.usage.output_tokens = c;
    }
}

fn error_of(v: &Value) -> Option<WireError> {
    let e = v.get("error")?;
    if e.is_null() {
        return None;
    }
    let message = e["message"]
        .as_str()
        .or(e.as_str())
        .unwrap_or("unknown error")
        .to_owned();
    let status = e["code"]
        .as_u64()
        .and_then(|c| u16::try_from(c).ok())
        .or_else(|| match e["type"].as_str() {
            Some("rate_limit_exceeded" | "requests" | "tokens") => Some(429),
            Some("invalid_request_error") => Some(400),
            _ => None,
        })
        .unwrap_or(500);
    Some(WireError::Provider { status, message })
}

impl TextWire for OpenAi {
    fn url(&self, base: &str) -> String {
        join(base, "/chat/completions")
    }

    fn framing(&self) -> Framing {
        Framing::Sse
    }

    fn body(&self, req: &LlmRequest, model: &str, stream: bool) -> Result<Value, WireError> {
        let mut body = json!({"model": model, "messages": messages(req)?});
        let cap = if self.official {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        body[cap] = json!(req.max_tokens.max(1));
        if !req.tools.is_empty() {
            body["tools"] = tools(req);
        }
        if !(self.official && fixed_temperature(model))
            && let Some(t) = temperature(req.temperature, 2.0)
        {
            body["temperature"] = json!(t);
        }
        if stream {
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
        }
        Ok(body)
    }

    fn stream(&self) -> Box<dyn WireStream> {
        Box::new(Stream::default())
    }

    fn parse_full(&self, body: &[u8], asm: &mut Assembler) -> Result<(), WireError> {
        let v = super::body_json(body)?;
        if let Some(e) = error_of(&v) {
            return Err(e);
        }
        let choice = &v["choices"][0];
        let msg = choice
            .get("message")
            .ok_or_else(|| WireError::Protocol("the response has no choices[0].message".into()))?;
        if let Some(t) = msg["content"].as_str() {
            asm.text(t);
        }
        for (i, c) in msg["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let args = c.pointer("/function/arguments");
            let input = match args {
                Some(Value::String(s)) if s.trim().is_empty() => json!({}),
                Some(Value::String(s)) => serde_json::from_str(s).map_err(|e| {
                    WireError::Protocol(format!("tool call arguments are not valid JSON: {e}"))
                })?,
                Some(v) => v.clone(),
                None => json!({}),
            };
            let id = c["id"]
                .as_str()
                .map_or_else(|| format!("call_{i}"), str::to_owned);
            asm.tool_whole(
                &id,
                c.pointer("/function/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                input,
            );
        }
        asm.stop = choice["finish_reason"].as_str().map(finish_reason);
        asm.model = v["model"].as_str().map(str::to_owned);
        usage_into(&v["usage"], asm);
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Stream {
    // Tool call index → key (the index as text).
    seen: HashMap<u64, String>,
    finished: bool,
}

impl WireStream for Stream {
    fn frame(&mut self, frame: Frame, asm: &mut Assembler) -> Result<bool, WireError> {
        if frame.data.trim() == "[DONE]" {
            return Ok(true);
        }
        let v = super::json(&frame)?;
        if let Some(e) = error_of(&v) {
            return Err(e);
        }
        if let Some(m) = v["model"].as_str() {
            asm.model = Some(m.to_owned());
        }
        if v["usage"].is_object() {
            usage_into(&v["usage"], asm);
        }
        let Some(choice) = v["choices"].as_array().and_then(|c| c.first()) else {
            return Ok(false);
        };
        let d = &choice["delta"];
        if let Some(t) = d["content"].as_str() {
            asm.text(t);
        }
        for (pos, c) in d["tool_calls"].as_array().into_iter().flatten().enumerate() {
            let index = c["index"].as_u64().unwrap_or(pos as u64);
            let key = self
                .seen
                .entry(index)
                .or_insert_with(|| index.to_string())
                .clone();
            if !asm.has_tool(&key) {
                let id = c["id"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map_or_else(|| format!("call_{index}"), str::to_owned);
                let name = c
                    .pointer("/function/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if name.is_empty() {
                    return Err(WireError::Protocol(format!(
                        "tool call {index} began without a function name"
                    )));
                }
                asm.tool_start(&key, &id, name);
            }
            match c.pointer("/function/arguments") {
                Some(Value::String(s)) => asm.tool_args(&key, s)?,
                // Some servers send the arguments as an object.
                Some(v @ Value::Object(_)) => asm.tool_args(&key, &v.to_string())?,
                _ => {}
            }
        }
        if let Some(r) = choice["finish_reason"].as_str() {
            asm.stop = Some(finish_reason(r));
            self.finished = true;
        }
        Ok(false)
    }

    fn complete_enough(&self) -> bool {
        self.finished
    }
}

#[cfg(test)]
mod tests {
    use avix_proto::llm::Message;

    use super::*;

    #[test]
    fn tool_results_become_tool_messages_after_the_call() {
        let req = LlmRequest {
            model: "m".into(),
            system: "sys".into(),
            messages: vec![
                Message::user_text("hi"),
                Message {
                    role: MessageRole::Assistant,
                    content: vec![
                        ContentBlock::Text {
                            text: "reading".into(),
                        },
                        ContentBlock::ToolUse {
                            id: "c1".into(),
                            name: "fs/read".into(),
                            input: json!({"path": "a"}),
                        },
                    ],
                },
                Message {
                    role: MessageRole::User,
                    content: vec![
                        ContentBlock::ToolResult {
                            tool_use_id: "c1".into(),
                            content: "data".into(),
                            is_error: false,
                        },
                        ContentBlock::Text {
                            text: "note".into(),
                        },
                    ],
                },
            ],
            tools: vec![],
            max_tokens: 10,
            temperature: Some(0.5),
            meta: Default::default(),
        };
        let b = OpenAi { official: true }
            .body(&req, "gpt-5-mini", true)
            .unwrap();
        let m = b["messages"].as_array().unwrap();
        assert_eq!(m[0]["role"], "system");
        assert_eq!(m[2]["tool_calls"][0]["function"]["name"], "fs__read");
        assert_eq!(
            m[2]["tool_calls"][0]["function"]["arguments"],
            "{\"path\":\"a\"}"
        );
        assert_eq!(m[3]["role"], "tool");
        assert_eq!(m[4]["content"], "note");
        assert!(b.get("temperature").is_none());
        assert_eq!(b["max_completion_tokens"], 10);
        let b = OpenAi { official: false }
            .body(&req, "llama", false)
            .unwrap();
        assert_eq!(b["temperature"], 0.5);
        assert_eq!(b["max_tokens"], 10);
        assert!(b.get("stream").is_none());
    }

    #[test]
    fn a_whole_response_parses() {
        let body = br#"{"id":"c","object":"chat.completion","model":"gpt-x","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_9","type":"function","function":{"name":"fs__read","arguments":"{\"path\":\"x\"}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#;
        let mut a = Assembler::new(None);
        OpenAi::default().parse_full(body, &mut a).unwrap();
        assert_eq!(a.usage.total(), 10);
        let (c, stop) = a.finish().unwrap();
        assert_eq!(stop, StopReason::ToolUse);
        assert!(matches!(&c[0], ContentBlock::ToolUse { name, .. } if name == "fs/read"));
    }
}
