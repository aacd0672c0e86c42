//! Provider wire formats. Each text format translates an [`LlmRequest`] into the provider's
//! request body and decodes its response — streamed frames or one whole body — into an
//! [`Assembler`]. Pure translation: no I/O here (that is [`crate::http`]).

pub mod anthropic;
pub mod ollama;
pub mod openai;

use avix_proto::llm::LlmRequest;
use serde_json::Value;

use crate::assemble::Assembler;
use crate::framing::{Frame, Framing};

/// What went wrong while building a request body or decoding a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The body is not the provider's protocol.
    Protocol(String),
    /// The provider reported an error inside the stream; `status` is the HTTP status that
    /// error type corresponds to (so 429 and 5xx-like errors can be retried).
    Provider {
        /// Equivalent HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
    },
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Protocol(m) => f.write_str(m),
            WireError::Provider { status, message } => write!(f, "{message} (status {status})"),
        }
    }
}

impl std::error::Error for WireError {}

impl From<String> for WireError {
    fn from(s: String) -> Self {
        Self::Protocol(s)
    }
}

/// A text-completion wire format.
pub trait TextWire: Send + Sync + std::fmt::Debug + 'static {
    /// The endpoint, from the provider's base URL.
    fn url(&self, base: &str) -> String;
    /// How a streamed body is framed.
    fn framing(&self) -> Framing;
    /// The request body.
    fn body(&self, req: &LlmRequest, model: &str, stream: bool) -> Result<Value, WireError>;
    /// A decoder for one streamed response.
    fn stream(&self) -> Box<dyn WireStream>;
    /// Decodes a whole (non-streamed) response body.
    fn parse_full(&self, body: &[u8], asm: &mut Assembler) -> Result<(), WireError>;
}

/// Decodes the frames of one streamed response.
pub trait WireStream: Send {
    /// Takes one frame. Returns `true` when the stream says it is complete.
    fn frame(&mut self, frame: Frame, asm: &mut Assembler) -> Result<bool, WireError>;
    /// Whether the stream got far enough that a clean close is not a truncation (for
    /// servers that end without their terminator after the final chunk).
    fn complete_enough(&self) -> bool {
        false
    }
}

/// Joins a base URL and a path without doubling or dropping the slash.
pub fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// The JSON Schema of a tool's parameters, as providers want it: an object schema.
pub fn object_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(m) if m.get("type").and_then(Value::as_str) == Some("object") => {
            schema.clone()
        }
        Value::Object(m) if !m.contains_key("type") => {
            let mut m = m.clone();
            m.insert("type".into(), Value::String("object".into()));
            m.entry("properties")
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            Value::Object(m)
        }
        _ => serde_json::json!({"type": "object", "properties": {}}),
    }
}

/// The most useful message in a provider's error body: `error.message`, `error` (a
/// string), `message` or `detail`, else the body itself (cut short).
pub fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let pick = [
            v.pointer("/error/message"),
            v.get("error"),
            v.get("message"),
            v.pointer("/detail/message"),
            v.get("detail"),
            v.get("errors").and_then(|e| e.get(0)),
        ];
        for p in pick.into_iter().flatten() {
            if let Some(s) = p.as_str()
                && !s.is_empty()
            {
                return s.to_owned();
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".into();
    }
    let mut cut: String = text.chars().take(500).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

/// Parses a whole response body as JSON.
pub fn body_json(body: &[u8]) -> Result<Value, WireError> {
    serde_json::from_slice(body)
        .map_err(|e| WireError::Protocol(format!("the response is not JSON: {e}")))
}

/// Parses a frame's JSON.
pub fn json(frame: &Frame) -> Result<Value, WireError> {
    serde_json::from_str(&frame.data).map_err(|e| {
        let mut shown: String = frame.data.chars().take(120).collect();
        if shown.len() < frame.data.len() {
            shown.push('…');
        }
        WireError::Protocol(format!("invalid JSON in the stream ({e}): {shown}"))
    })
}

/// The data of an inline image, or an error for an image that was never loaded.
pub(crate) fn image_data<'a>(
    data: Option<&'a String>,
    path: Option<&String>,
) -> Result<&'a str, String> {
    data.map(String::as_str).ok_or_else(|| {
        format!(
            "the image {} was not loaded; images are sent inline",
            path.map_or("(no path)", String::as_str)
        )
    })
}

/// Sampling temperature clamped to a provider's range.
pub fn temperature(t: Option<f64>, max: f64) -> Option<f64> {
    t.filter(|t| t.is_finite()).map(|t| t.clamp(0.0, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_from_every_shape() {
        assert_eq!(
            error_message(br#"{"type":"error","error":{"type":"x","message":"bad key"}}"#),
            "bad key"
        );
        assert_eq!(
            error_message(br#"{"error":"model not found"}"#),
            "model not found"
        );
        assert_eq!(error_message(b"  upstream down "), "upstream down");
        assert_eq!(error_message(b""), "(empty body)");
        assert!(error_message(&[b'x'; 900]).ends_with('…'));
    }

    #[test]
    fn schemas_become_object_schemas() {
        assert_eq!(
            object_schema(&serde_json::json!({"properties": {"a": {}}}))["type"],
            "object"
        );
        assert_eq!(object_schema(&Value::Null)["type"], "object");
        assert_eq!(join("http://h/v1/", "/chat"), "http://h/v1/chat");
    }
}
