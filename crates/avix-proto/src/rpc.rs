//! Internal IPC: JSON-RPC 2.0 messages between the router, services and local tools.
//!
//! On the wire each message is one frame: a 4-byte little-endian length, then that many bytes
//! of UTF-8 JSON. One connection carries one call: the caller writes a request, the server
//! may write notifications (streaming), then exactly one response, and closes. See
//! `docs/ipc.md`.
//!
//! `params` and `result` are kept as raw JSON text: the router forwards them without building
//! a tree, and a handler parses only what it reads.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The only protocol version.
pub const JSONRPC: &str = "2.0";

/// The hard ceiling on a frame, whatever kernel.yaml `ipc.maxMessageBytes` says.
pub const MAX_FRAME_CEILING: usize = 16 * 1024 * 1024;

/// Error codes. The JSON-RPC ones, then Avix's (-32001 … -32010), one meaning each.
pub mod code {
    /// The frame is not JSON.
    pub const PARSE: i32 = -32700;
    /// JSON, but not a JSON-RPC 2.0 request (wrong `jsonrpc`, no `method`, bad `id`).
    pub const INVALID_REQUEST: i32 = -32600;
    /// No such method (or tool).
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// Missing or mistyped parameters.
    pub const INVALID_PARAMS: i32 = -32602;
    /// A bug or an unexpected failure on the serving side.
    pub const INTERNAL: i32 = -32603;
    /// The caller did not prove who it is (bad token, wrong peer).
    pub const EAUTH: i32 = -32001;
    /// The caller is known but not allowed.
    pub const EPERM: i32 = -32002;
    /// The thing named does not exist.
    pub const ENOTFOUND: i32 = -32003;
    /// A limit or budget is used up.
    pub const ELIMIT: i32 = -32004;
    /// The service or tool is not available now (down, draining, restarting).
    pub const EUNAVAIL: i32 = -32005;
    /// The request conflicts with the current state (a name owned by another service).
    pub const ECONFLICT: i32 = -32006;
    /// The call did not finish in time.
    pub const ETIMEOUT: i32 = -32007;
    /// Too many calls in flight.
    pub const EBUSY: i32 = -32008;
    /// The frame is larger than the limit.
    pub const ETOOBIG: i32 = -32009;
    /// The tool ran and failed; `data.code` carries the tool's own code.
    pub const ETOOL: i32 = -32010;

    /// The short name of a code (`EPERM`), for logs and tool errors.
    pub fn name(code: i32) -> &'static str {
        match code {
            PARSE => "EPARSE",
            INVALID_REQUEST => "EINVAL",
            METHOD_NOT_FOUND => "ENOENT",
            INVALID_PARAMS => "EINVAL",
            INTERNAL => "EINTERNAL",
            EAUTH => "EAUTH",
            EPERM => "EPERM",
            ENOTFOUND => "ENOENT",
            ELIMIT => "ELIMIT",
            EUNAVAIL => "EUNAVAIL",
            ECONFLICT => "ECONFLICT",
            ETIMEOUT => "ETIMEOUT",
            EBUSY => "EBUSY",
            ETOOBIG => "ETOOBIG",
            ETOOL => "ETOOL",
            _ => "EIO",
        }
    }
}

/// A request or notification id: JSON-RPC allows a string or a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    /// A number.
    Num(i64),
    /// A string.
    Str(String),
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Id::Num(n) => write!(f, "{n}"),
            Id::Str(s) => f.write_str(s),
        }
    }
}

/// A request (with `id`) or a notification (without).
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// Absent for a notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Id>,
    /// The method: a tool name (`echo/say`) or an `ipc.*` method.
    pub method: String,
    /// The parameters, as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Box<RawValue>>,
}

/// Reads the id out of a frame that is JSON but not a valid request, so the error can carry it.
fn salvage_id(bytes: &[u8]) -> Option<Id> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    serde_json::from_value(v.get("id")?.clone()).ok()
}

impl Request {
    /// Parses and checks the body of a request frame. A refusal carries the request's id
    /// when it can be read, and an error that says what to send instead.
    pub fn parse(bytes: &[u8]) -> Result<Request, (Option<Id>, RpcError)> {
        match serde_json::from_slice::<Request>(bytes) {
            Ok(r) if r.jsonrpc != JSONRPC => Err((
                r.id,
                RpcError::new(
                    code::INVALID_REQUEST,
                    format!(
                        "unsupported jsonrpc version {:?}: send \"jsonrpc\": \"2.0\"",
                        r.jsonrpc
                    ),
                ),
            )),
            Ok(r) => Ok(r),
            Err(e) if e.is_syntax() || e.is_eof() => Err((
                None,
                RpcError::new(code::PARSE, format!("the frame is not valid JSON: {e}")),
            )),
            Err(e) => Err((
                salvage_id(bytes),
                RpcError::new(
                    code::INVALID_REQUEST,
                    format!(
                        "not a JSON-RPC 2.0 request ({e}); send {{\"jsonrpc\":\"2.0\",\"id\":…,\"method\":…,\"params\":{{…}}}}"
                    ),
                ),
            )),
        }
    }

    /// A request.
    pub fn new(id: Id, method: impl Into<String>, params: Option<Box<RawValue>>) -> Self {
        Self {
            jsonrpc: JSONRPC.to_owned(),
            id: Some(id),
            method: method.into(),
            params,
        }
    }

    /// A notification (no reply).
    pub fn notification(method: impl Into<String>, params: Option<Box<RawValue>>) -> Self {
        Self {
            jsonrpc: JSONRPC.to_owned(),
            id: None,
            method: method.into(),
            params,
        }
    }

    /// The parameters parsed as `T` (`null` when absent).
    pub fn parse_params<T: serde::de::DeserializeOwned>(&self) -> Result<T, RpcError> {
        let text = self.params.as_deref().map_or("null", RawValue::get);
        serde_json::from_str(text).map_err(|e| {
            RpcError::new(
                code::INVALID_PARAMS,
                format!("invalid params for {}: {e}", self.method),
            )
        })
    }
}

/// A response: exactly one of `result` and `error`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// The request's id; `null` when it could not be read.
    pub id: Option<Id>,
    /// On success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Box<RawValue>>,
    /// On failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

impl Response {
    /// A success.
    pub fn ok(id: Option<Id>, result: Box<RawValue>) -> Self {
        Self {
            jsonrpc: JSONRPC.to_owned(),
            id,
            result: Some(result),
            error: None,
        }
    }

    /// A failure.
    pub fn err(id: Option<Id>, error: RpcError) -> Self {
        Self {
            jsonrpc: JSONRPC.to_owned(),
            id,
            result: None,
            error: Some(error),
        }
    }

    /// The outcome.
    pub fn into_result(self) -> Result<Box<RawValue>, RpcError> {
        match (self.result, self.error) {
            (_, Some(e)) => Err(e),
            (Some(r), None) => Ok(r),
            (None, None) => Err(RpcError::new(
                code::INVALID_REQUEST,
                "the response has neither result nor error",
            )),
        }
    }
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({})", code::name(*code))]
pub struct RpcError {
    /// One of [`code`].
    pub code: i32,
    /// What went wrong and what to do.
    pub message: String,
    /// Details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl RpcError {
    /// An error without data.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// With details.
    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }
}

/// Who a routed call is for. Added by the router to the params of every call it sends to a
/// service, as the single key `_caller`; anything a client put under that key is replaced.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Caller {
    /// The calling agent's PID.
    pub pid: crate::Pid,
    /// The user it runs for.
    pub user: String,
    /// Its session, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<crate::SessionId>,
    /// Its capability token; a service checks it with `ipc.verify`.
    pub token: String,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("pid", &self.pid)
            .field("user", &self.user)
            .field("session", &self.session)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The key the router puts the caller under.
pub const CALLER_KEY: &str = "_caller";

/// `ipc.register`: a supervised service announces itself (and optionally its tools).
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Register {
    /// The service token from `AVIX_SVC_TOKEN`.
    pub token: String,
    /// The service's name; must match the token.
    pub name: String,
    /// Tools to add at once.
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
}

impl std::fmt::Debug for Register {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Register")
            .field("name", &self.name)
            .field("tools", &self.tools.len())
            .finish_non_exhaustive()
    }
}

/// One tool a service serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolSpec {
    /// Avix tool name (`echo/say`); its first segment must be a namespace the service
    /// declared in service.yaml `tools:`.
    pub name: String,
    /// For the model.
    #[serde(default)]
    pub description: String,
    /// JSON Schema of the arguments (default: any object).
    #[serde(default)]
    pub input_schema: Option<serde_json::Value>,
    /// The JSON-RPC method the router calls (default: the tool name).
    #[serde(default)]
    pub method: Option<String>,
}

/// `ipc.tool-add`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolAdd {
    /// The service token.
    pub token: String,
    /// The tools.
    pub tools: Vec<ToolSpec>,
}

/// `ipc.tool-remove`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolRemove {
    /// The service token.
    pub token: String,
    /// Tool names.
    pub tools: Vec<String>,
    /// Why (logged and shown in events).
    #[serde(default)]
    pub reason: Option<String>,
    /// Wait for calls in flight to finish (default true); new calls are refused meanwhile.
    #[serde(default = "yes")]
    pub drain: bool,
}

fn yes() -> bool {
    true
}

macro_rules! redacted_debug {
    ($($t:ty),*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t)).finish_non_exhaustive()
            }
        }
    )*};
}
redacted_debug!(ToolAdd, ToolRemove, Verify);

/// `ipc.verify`: is this capability token one the kernel issued, still in force?
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verify {
    /// The token from `_caller.token`.
    pub token: String,
}

/// The answer to `ipc.verify` for a valid token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    /// The agent.
    pub pid: crate::Pid,
    /// Its user.
    pub user: String,
    /// The tools it holds.
    pub tools: Vec<String>,
    /// Unix seconds.
    pub expires_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_may_be_numbers_or_strings() {
        let r: Request =
            serde_json::from_str(r#"{"jsonrpc":"2.0","id":7,"method":"a/b"}"#).expect("parse");
        assert_eq!(r.id, Some(Id::Num(7)));
        let r: Request =
            serde_json::from_str(r#"{"jsonrpc":"2.0","id":"x","method":"a/b","params":{"k":1}}"#)
                .expect("parse");
        assert_eq!(r.id, Some(Id::Str("x".into())));
        assert_eq!(r.params.as_deref().map(RawValue::get), Some(r#"{"k":1}"#));
    }

    #[test]
    fn caller_debug_hides_the_token() {
        let c = Caller {
            pid: crate::Pid::new(1),
            user: "u".into(),
            session: None,
            token: "avixcap1.secret".into(),
        };
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn response_has_one_outcome() {
        let r: Response = serde_json::from_str(r#"{"jsonrpc":"2.0","id":1}"#).expect("parse");
        assert!(r.into_result().is_err());
        let r: Response = serde_json::from_str(
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#,
        )
        .expect("parse");
        assert_eq!(
            r.into_result().expect_err("error").code,
            code::METHOD_NOT_FOUND
        );
    }
}
