//! [`Assembler`]: builds a response from the pieces a provider streams (text deltas, tool
//! calls whose JSON arguments arrive in fragments), forwarding each piece to the caller's
//! sink as it arrives.

use std::collections::HashMap;

use avix_proto::llm::{ContentBlock, StopReason, StreamEvent, Usage};
use avix_proto::tool::ToolName;

use crate::StreamSink;

#[derive(Debug)]
enum Block {
    Text(String),
    Tool {
        id: String,
        name: String,
        json: String,
        // Ollama sends arguments whole, as an object.
        input: Option<serde_json::Value>,
    },
}

/// Collects a streamed (or whole) response.
pub struct Assembler {
    blocks: Vec<Block>,
    tools: HashMap<String, usize>,
    sink: Option<StreamSink>,
    delivered: bool,
    /// Token counts, as the provider reports them.
    pub usage: Usage,
    /// Why the model stopped, once known.
    pub stop: Option<StopReason>,
    /// The model that answered, if the provider says.
    pub model: Option<String>,
}

impl std::fmt::Debug for Assembler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assembler")
            .field("blocks", &self.blocks.len())
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

/// A provider's wire name back to the canonical tool name (`fs__read` → `fs/read`). A name
/// that is not a valid mangled name is kept as sent; the router refuses it as unknown.
pub fn unmangle(wire: &str) -> String {
    ToolName::unmangle(wire).map_or_else(|_| wire.to_owned(), |n| n.as_str().to_owned())
}

impl Assembler {
    /// An empty response; pieces go to `sink` as they arrive.
    pub fn new(sink: Option<StreamSink>) -> Self {
        Self {
            blocks: Vec::new(),
            tools: HashMap::new(),
            sink,
            delivered: false,
            usage: Usage::default(),
            stop: None,
            model: None,
        }
    }

    /// Whether anything reached the sink (after that, a failed call must not be retried:
    /// the agent has seen part of an answer).
    pub fn delivered(&self) -> bool {
        self.delivered
    }

    fn emit(&mut self, e: &StreamEvent) {
        if let Some(s) = &self.sink {
            self.delivered = true;
            s(e);
        }
    }

    /// More text.
    pub fn text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        match self.blocks.last_mut() {
            Some(Block::Text(t)) => t.push_str(text),
            _ => self.blocks.push(Block::Text(text.to_owned())),
        }
        self.emit(&StreamEvent::TextDelta {
            text: text.to_owned(),
        });
    }

    /// Ends the current text block, so the next text starts a new one.
    pub fn break_text(&mut self) {
        if matches!(self.blocks.last(), Some(Block::Text(_))) {
            self.blocks.push(Block::Text(String::new()));
        }
    }

    /// A tool call begins; `key` is how the provider refers to it in later fragments.
    pub fn tool_start(&mut self, key: &str, id: &str, wire_name: &str) {
        if self.tools.contains_key(key) {
            return;
        }
        let name = unmangle(wire_name);
        self.tools.insert(key.to_owned(), self.blocks.len());
        self.blocks.push(Block::Tool {
            id: id.to_owned(),
            name: name.clone(),
            json: String::new(),
            input: None,
        });
        self.emit(&StreamEvent::ToolCallStart {
            id: id.to_owned(),
            name,
        });
    }

    /// Whether a tool call with this key has started.
    pub fn has_tool(&self, key: &str) -> bool {
        self.tools.contains_key(key)
    }

    /// More of a tool call's JSON arguments.
    pub(crate) fn tool_args(&mut self, key: &str, fragment: &str) -> Result<(), String> {
        let Some(&i) = self.tools.get(key) else {
            return Err(format!(
                "arguments for tool call {key} arrived before the call began"
            ));
        };
        if fragment.is_empty() {
            return Ok(());
        }
        let id = match &mut self.blocks[i] {
            Block::Tool { id, json, .. } => {
                json.push_str(fragment);
                id.clone()
            }
            Block::Text(_) => return Err("internal: tool key points at text".into()),
        };
        self.emit(&StreamEvent::ToolCallDelta {
            id,
            json: fragment.to_owned(),
        });
        Ok(())
    }

    /// A whole tool call at once.
    pub fn tool_whole(&mut self, id: &str, wire_name: &str, input: serde_json::Value) {
        let key = format!("whole:{}", self.blocks.len());
        self.tool_start(&key, id, wire_name);
        let json = input.to_string();
        if let Some(&i) = self.tools.get(&key)
            && let Block::Tool { input: slot, .. } = &mut self.blocks[i]
        {
            *slot = Some(input);
        }
        self.emit(&StreamEvent::ToolCallDelta {
            id: id.to_owned(),
            json,
        });
    }

    /// The number of tool calls so far.
    pub fn tool_count(&self) -> usize {
        self.tools.len()
    }

    /// The finished content and stop reason. A response with tool calls stops for
    /// `tool_use` whatever the provider said (Ollama says `stop`), unless the output limit
    /// cut it: then calls whose arguments were cut are dropped.
    pub fn finish(self) -> Result<(Vec<ContentBlock>, StopReason), crate::wire::WireError> {
        let mut stop = self.stop.unwrap_or(StopReason::EndTurn);
        let mut content = Vec::with_capacity(self.blocks.len());
        let mut calls = 0;
        for b in self.blocks {
            match b {
                Block::Text(t) if t.is_empty() => {}
                Block::Text(text) => content.push(ContentBlock::Text { text }),
                Block::Tool {
                    id,
                    name,
                    json,
                    input,
                } => {
                    let input = match input {
                        Some(v) => v,
                        None if json.trim().is_empty() => serde_json::json!({}),
                        None => match serde_json::from_str::<serde_json::Value>(&json) {
                            Ok(v) => v,
                            Err(_) if stop == StopReason::MaxTokens => continue,
                            Err(e) => {
                                return Err(format!(
                                    "the arguments of tool call {id} ({name}) are not valid JSON: {e}"
                                )
                                .into());
                            }
                        },
                    };
                    if !input.is_object() {
                        return Err(format!(
                            "the arguments of tool call {id} ({name}) are not a JSON object"
                        )
                        .into());
                    }
                    calls += 1;
                    content.push(ContentBlock::ToolUse { id, name, input });
                }
            }
        }
        if calls > 0 && stop != StopReason::MaxTokens {
            stop = StopReason::ToolUse;
        }
        if calls == 0 && stop == StopReason::ToolUse {
            stop = StopReason::EndTurn;
        }
        Ok((content, stop))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn fragments_become_blocks_and_reach_the_sink() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let mut a = Assembler::new(Some(Arc::new(move |e: &StreamEvent| {
            s.lock().unwrap().push(e.clone());
        })));
        assert!(!a.delivered());
        a.text("Hel");
        a.text("lo");
        a.tool_start("0", "c1", "fs__read");
        a.tool_args("0", "{\"pa").unwrap();
        a.tool_args("0", "th\":\"x\"}").unwrap();
        a.tool_whole("c2", "fs__list", serde_json::json!({"path": "/"}));
        a.stop = Some(StopReason::EndTurn);
        assert!(a.delivered());
        let (content, stop) = a.finish().unwrap();
        assert_eq!(stop, StopReason::ToolUse);
        assert_eq!(
            content,
            vec![
                ContentBlock::Text {
                    text: "Hello".into()
                },
                ContentBlock::ToolUse {
                    id: "c1".into(),
                    name: "fs/read".into(),
                    input: serde_json::json!({"path": "x"})
                },
                ContentBlock::ToolUse {
                    id: "c2".into(),
                    name: "fs/list".into(),
                    input: serde_json::json!({"path": "/"})
                },
            ]
        );
        assert_eq!(seen.lock().unwrap().len(), 7);
    }

    #[test]
    fn broken_arguments_fail_unless_the_output_limit_cut_them() {
        let mut a = Assembler::new(None);
        a.tool_start("0", "c1", "fs__read");
        a.tool_args("0", "{\"path\":").unwrap();
        assert!(
            a.finish()
                .unwrap_err()
                .to_string()
                .contains("not valid JSON")
        );
        let mut a = Assembler::new(None);
        a.text("partial");
        a.tool_start("0", "c1", "fs__read");
        a.tool_args("0", "{\"path\":").unwrap();
        a.stop = Some(StopReason::MaxTokens);
        let (content, stop) = a.finish().unwrap();
        assert_eq!(stop, StopReason::MaxTokens);
        assert_eq!(content.len(), 1);
        let mut a = Assembler::new(None);
        assert!(a.tool_args("9", "{}").is_err());
    }
}
