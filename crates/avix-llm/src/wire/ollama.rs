//! Ollama's native chat API (`POST {base}/api/chat`), streamed as NDJSON: one JSON object per
//! line with `message.content` pieces and whole `message.tool_calls`, the last with
//! `done: true`, `done_reason` and the token counts.

use avix_proto::llm::{ContentBlock, LlmRequest, MessageRole, StopReason};
use avix_proto::tool::mangle;
use serde_json::{Value, json};

use super::{TextWire, WireError, WireStream, image_data, join, temperature};
use crate::assemble::Assembler;
use crate::framing::{Frame, Framing};

/// Ollama `/api/chat`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ollama;

fn messages(req: &LlmRequest) -> Result<Vec<Value>, String> {
    let mut out = Vec::with_capacity(req.messages.len() + 1);
    if !req.system.is_empty() {
        out.push(json!({"role": "system", "content": req.system}));
    }
    // Tool results name the tool, not the call: remember which call was which tool.
    let mut names = std::collections::HashMap::new();
    for m in &req.messages {
        match m.role {
            MessageRole::Assistant => {
                let calls: Vec<Value> = m
                    .tool_calls()
                    .map(|(id, name, input)| {
                        names.insert(id.to_owned(), mangle(name));
                        json!({"function": {"name": mangle(name), "arguments": input}})
                    })
                    .collect();
                let mut msg = json!({"role": "assistant", "content": m.text()});
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(calls);
                }
                out.push(msg);
            }
            MessageRole::User => {
                let mut text = String::new();
                let mut images = Vec::new();
                for b in &m.content {
                    match b {
                        ContentBlock::ToolResult {
                            tool_use_id,
                            content,
                            ..
                        } => {
                            let mut msg = json!({"role": "tool", "content": content});
                            if let Some(n) = names.get(tool_use_id) {
                                msg["tool_name"] = json!(n);
                            }
                            out.push(msg);
                        }
                        ContentBlock::Text { text: t } => {
                            if !text.is_empty() && !t.is_empty() {
                                text.push('\n');
                            }
                            text.push_str(t);
                        }
                        ContentBlock::Image { data, path, .. } => {
                            images.push(json!(image_data(data.as_ref(), path.as_ref())?));
                        }
                        ContentBlock::ToolUse { .. } => {}
                    }
                }
                if !text.is_empty() || !images.is_empty() {
                    let mut msg = json!({"role": "user", "content": text});
                    if !images.is_empty() {
                        msg["images"] = Value::Array(images);
                    }
                    out.push(msg);
                }
            }
        }
    }
    Ok(out)
}

fn error_of(v: &Value) -> Option<WireError> {
    let e = v.get("error")?.as_str()?;
    let status = if e.contains("not found") { 404 } else { 500 };
    Some(WireError::Provider {
        status,
        message: e.to_owned(),
    })
}

/// Takes one response object (a stream line or the whole body). Returns whether it is the
/// last (`done: true`).
fn take(v: &Value, asm: &mut Assembler, calls: &mut u32, nonce: u32) -> Result<bool, WireError> {
    if let Some(e) = error_of(v) {
        return Err(e);
    }
    if let Some(m) = v["model"].as_str() {
        asm.model = Some(m.to_owned());
    }
    let msg = &v["message"];
    if let Some(t) = msg["content"].as_str() {
        asm.text(t);
    }
    for c in msg["tool_calls"].as_array().into_iter().flatten() {
        let f = &c["function"];
        let name = f["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            return Err(WireError::Protocol("a tool call without a name".into()));
        }
        let input = match &f["arguments"] {
            Value::String(s) => serde_json::from_str(s).map_err(|e| {
                WireError::Protocol(format!("tool call arguments are not valid JSON: {e}"))
            })?,
            Value::Null => json!({}),
            v => v.clone(),
        };
        *calls += 1;
        // Ollama gives tool calls no ids (newer versions may): make ones that are unique
        // within the conversation.
        let id = c["id"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map_or_else(|| format!("call_{nonce:08x}_{calls}"), str::to_owned);
        asm.tool_whole(&id, name, input);
    }
    if v["done"].as_bool() == Some(true) {
        asm.stop = Some(match v["done_reason"].as_str() {
            Some("length") => StopReason::MaxTokens,
            _ => StopReason::EndTurn,
        });
        if let Some(p) = v["prompt_eval_count"].as_u64() {
            asm.usage.input_tokens = p;
        }
        if let Some(e) = v["eval_count"].as_u64() {
            asm.usage.output_tokens = e;
        }
        return Ok(true);
    }
    Ok(false)
}

impl TextWire for Ollama {
    fn url(&self, base: &str) -> String {
        join(base, "/api/chat")
    }

    fn framing(&self) -> Framing {
        Framing::Ndjson
    }

    fn body(&self, req: &LlmRequest, model: &str, stream: bool) -> Result<Value, WireError> {
        let mut options = json!({"num_predict": req.max_tokens.max(1)});
        if let Some(t) = temperature(req.temperature, 2.0) {
            options["temperature"] = json!(t);
        }
        let mut body = json!({
            "model": model,
            "messages": messages(req)?,
            "stream": stream,
            "options": options,
        });
        if !req.tools.is_empty() {
            body["tools"] = super::openai::tools(req);
        }
        Ok(body)
    }

    fn stream(&self) -> Box<dyn WireStream> {
        Box::new(Stream {
            calls: 0,
            nonce: rand::random(),
            done: false,
        })
    }

    fn parse_full(&self, body: &[u8], asm: &mut Assembler) -> Result<(), WireError> {
        let v = super::body_json(body)?;
        let mut calls = 0;
        if !take(&v, asm, &mut calls, rand::random())? {
            return Err(WireError::Protocol(
                "the response is not marked done".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Stream {
    calls: u32,
    nonce: u32,
    done: bool,
}

impl WireStream for Stream {
    fn frame(&mut self, frame: Frame, asm: &mut Assembler) -> Result<bool, WireError> {
        let v = super::json(&frame)?;
        self.done = take(&v, asm, &mut self.calls, self.nonce)?;
        Ok(self.done)
    }

    fn complete_enough(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use avix_proto::llm::Message;

    use super::*;

    #[test]
    fn tool_results_name_their_tool() {
        let req = LlmRequest {
            model: "m".into(),
            system: String::new(),
            messages: vec![
                Message::user_text("hi"),
                Message {
                    role: MessageRole::Assistant,
                    content: vec![ContentBlock::ToolUse {
                        id: "c1".into(),
                        name: "fs/read".into(),
                        input: json!({"path": "a"}),
                    }],
                },
                Message {
                    role: MessageRole::User,
                    content: vec![ContentBlock::ToolResult {
                        tool_use_id: "c1".into(),
                        content: "data".into(),
                        is_error: false,
                    }],
                },
            ],
            tools: vec![],
            max_tokens: 10,
            temperature: None,
            meta: Default::default(),
        };
        let b = Ollama.body(&req, "llama3.2", true).unwrap();
        let m = b["messages"].as_array().unwrap();
        assert_eq!(m[1]["tool_calls"][0]["function"]["arguments"]["path"], "a");
        assert_eq!(m[2]["role"], "tool");
        assert_eq!(m[2]["tool_name"], "fs__read");
        assert_eq!(b["options"]["num_predict"], 10);
    }

    #[test]
    fn a_stream_with_a_tool_call_and_counts() {
        let mut a = Assembler::new(None);
        let mut s = Ollama.stream();
        let lines = [
            r#"{"model":"llama3.2","message":{"role":"assistant","content":"Let me look."},"done":false}"#,
            r#"{"model":"llama3.2","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"fs__read","arguments":{"path":"x"}}}]},"done":false}"#,
            r#"{"model":"llama3.2","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":20,"eval_count":7}"#,
        ];
        let mut done = false;
        for l in lines {
            done = s
                .frame(
                    Frame {
                        event: None,
                        data: l.into(),
                    },
                    &mut a,
                )
                .unwrap();
        }
        assert!(done);
        assert_eq!(a.usage.total(), 27);
        let (c, stop) = a.finish().unwrap();
        assert_eq!(stop, StopReason::ToolUse);
        assert_eq!(c.len(), 2);
    }
}
