//! ATP, the protocol of remote clients: an HTTP login, then JSON frames over one WebSocket
//! (docs/atp.md). Client frames are `cmd` (exactly one `reply` each, carrying its `id`) and
//! `subscribe`; server frames are `reply` and `event`. Field names are camelCase; `since_seq`
//! is accepted for `sinceSeq`, and `name` for `agent` in a spawn body.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Role;
use crate::time::Timestamp;

/// The protocol's name and version (also the WebSocket subprotocol).
pub const PROTOCOL: &str = "avix.atp.v1";
/// Largest frame the gateway reads; a larger one gets `ETOOBIG` and the connection stays.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// `POST /atp/auth/login`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginRequest {
    /// The user name; may be empty with an API key (the key says whose it is).
    #[serde(default)]
    pub identity: String,
    /// An API key or a password.
    pub credential: String,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("identity", &self.identity)
            .field("credential", &"<redacted>")
            .finish()
    }
}

/// The answer to a login or a refresh.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    /// The bearer token.
    pub token: String,
    /// When it expires.
    pub expires_at: Timestamp,
    /// The login this token belongs to (what `auth logout` ends). Not a conversation
    /// session.
    pub session_id: String,
    /// The role granted.
    pub role: Role,
}

impl std::fmt::Debug for LoginResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginResponse")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("session_id", &self.session_id)
            .field("role", &self.role)
            .finish()
    }
}

/// An HTTP error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpError {
    /// The code.
    pub error: ErrorCode,
    /// What went wrong and what to do.
    pub message: String,
}

/// A command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cmd {
    /// Chosen by the client; the reply carries it.
    pub id: String,
    /// The bearer token (checked on every command).
    pub token: String,
    /// `auth`, `proc`, `signal`, `session`, `hil`, `fs`, `sys`.
    pub domain: String,
    /// The operation within the domain.
    pub op: String,
    /// Its arguments.
    #[serde(default)]
    pub body: Value,
}

/// Chooses which events the connection receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscribe {
    /// Event names or patterns: `*`, `agent.*`, `hil.request`. Replaces the previous list.
    pub events: Vec<String>,
    /// Replay the buffered events after this sequence number first.
    #[serde(default, alias = "since_seq", skip_serializing_if = "Option::is_none")]
    pub since_seq: Option<u64>,
    /// When given, the subscription is acknowledged with a reply carrying it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Accepted and checked like a command's, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// A frame from the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientFrame {
    /// A command.
    Cmd(Cmd),
    /// A subscription.
    Subscribe(Subscribe),
}

/// The id of a frame, when it has one (a string, or a number written as one).
pub fn frame_id(v: &serde_json::Value) -> Option<String> {
    match v.get("id")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses a text frame from a client. A refusal carries the frame's id when it can be read
/// (every `cmd` gets exactly one reply, a malformed one included) and an error that says
/// what is wrong: over the size limit `ETOOBIG`, not JSON `EPARSE`, an unknown or missing
/// `type` `EPARSE`, a `cmd` or `subscribe` with missing or mistyped fields `EINVAL`.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, (Option<String>, AtpError)> {
    if text.len() > MAX_FRAME_BYTES {
        let id = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| frame_id(&v));
        return Err((
            id,
            AtpError::new(
                ErrorCode::ETOOBIG,
                format!(
                    "frame of {} bytes is over the limit of {MAX_FRAME_BYTES} bytes; send large files in pieces (fs write with append)",
                    text.len()
                ),
            ),
        ));
    }
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        (
            None,
            AtpError::new(ErrorCode::EPARSE, format!("the frame is not JSON: {e}")),
        )
    })?;
    let id = frame_id(&v);
    let kind = v
        .get("type")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    match kind.as_deref() {
        Some("cmd" | "subscribe") => {}
        Some(other) => {
            return Err((
                id,
                AtpError::new(
                    ErrorCode::EPARSE,
                    format!("unknown frame type {other:?}: send cmd or subscribe"),
                ),
            ));
        }
        None => {
            return Err((
                id,
                AtpError::new(
                    ErrorCode::EPARSE,
                    "the frame has no type: send cmd or subscribe",
                ),
            ));
        }
    }
    serde_json::from_value(v).map_err(|e| {
        (
            id,
            AtpError::new(
                ErrorCode::EINVAL,
                format!("malformed {}: {e}", kind.unwrap_or_default()),
            ),
        )
    })
}

/// Error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum ErrorCode {
    /// No valid credential or token.
    EAUTH,
    /// The token expired: log in again.
    EEXPIRED,
    /// The token belongs to another login than the connection.
    ESESSION,
    /// The role or ownership does not allow it.
    EPERM,
    /// No such process, invocation, session, request or file.
    ENOTFOUND,
    /// The state does not allow it (already answered, still running…).
    ECONFLICT,
    /// Too many attempts; wait.
    ELIMIT,
    /// The frame is not JSON or not a frame.
    EPARSE,
    /// A field is missing or wrong.
    EINVAL,
    /// Unknown domain or operation.
    ENOSYS,
    /// The frame is larger than the limit.
    ETOOBIG,
    /// Something the client cannot fix failed.
    EINTERNAL,
    /// Not available now (shutting down, service missing).
    EUNAVAIL,
    /// The storage is full (no space, or the disk quota is used up): nothing was changed;
    /// free space and try again.
    ENOSPC,
}

impl ErrorCode {
    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::EAUTH => "EAUTH",
            ErrorCode::EEXPIRED => "EEXPIRED",
            ErrorCode::ESESSION => "ESESSION",
            ErrorCode::EPERM => "EPERM",
            ErrorCode::ENOTFOUND => "ENOTFOUND",
            ErrorCode::ECONFLICT => "ECONFLICT",
            ErrorCode::ELIMIT => "ELIMIT",
            ErrorCode::EPARSE => "EPARSE",
            ErrorCode::EINVAL => "EINVAL",
            ErrorCode::ENOSYS => "ENOSYS",
            ErrorCode::ETOOBIG => "ETOOBIG",
            ErrorCode::EINTERNAL => "EINTERNAL",
            ErrorCode::EUNAVAIL => "EUNAVAIL",
            ErrorCode::ENOSPC => "ENOSPC",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error in a reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AtpError {
    /// The code.
    pub code: ErrorCode,
    /// What went wrong and what to do.
    pub message: String,
}

impl AtpError {
    /// An error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for AtpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for AtpError {}

/// The one answer to a command (or to an acknowledged subscription).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reply {
    /// The command's id; `null` when the frame was too broken to find it.
    pub id: Option<String>,
    /// Whether it worked.
    pub ok: bool,
    /// The result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// The error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<AtpError>,
}

impl Reply {
    /// A success.
    pub fn ok(id: Option<String>, body: Value) -> Self {
        Self {
            id,
            ok: true,
            body: Some(body),
            error: None,
        }
    }

    /// A failure.
    pub fn err(id: Option<String>, error: AtpError) -> Self {
        Self {
            id,
            ok: false,
            body: None,
            error: Some(error),
        }
    }
}

/// An event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventFrame {
    /// Global sequence number (0 for events about the connection itself).
    pub seq: u64,
    /// `agent.status`, `agent.output.chunk`, `hil.request`, `events.gap`, …
    pub event: String,
    /// When it happened.
    pub ts: Timestamp,
    /// The process concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<crate::Pid>,
    /// Details.
    pub body: Value,
}

/// A frame from the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame {
    /// The answer to a command.
    Reply(Reply),
    /// An event.
    Event(EventFrame),
}

/// `auth whoami`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmI {
    /// The user.
    pub user: String,
    /// The role.
    pub role: Role,
    /// The login.
    pub session_id: String,
    /// When the token expires.
    pub expires_at: Timestamp,
}

/// `proc spawn` and `session resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpawnReply {
    /// The new process.
    pub pid: crate::Pid,
    /// Its invocation.
    pub invocation: crate::InvocationId,
    /// Its session.
    pub session: crate::SessionId,
}

/// Matches an event name against a subscription pattern: `*`, `prefix.*`, or exact.
pub fn event_matches(pattern: &str, event: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix(".*") {
        Some(prefix) => {
            event.len() > prefix.len()
                && event.starts_with(prefix)
                && event.as_bytes()[prefix.len()] == b'.'
        }
        None => pattern == event,
    }
}

/// One file of a service uploaded with `sys service-install {files}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadedFile {
    /// Relative path inside the service directory (`/`-separated, no `..`).
    pub path: String,
    /// Permission bits (e.g. 0o755 for a program); default 0o644.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// The content, base64.
    pub content_base64: String,
}

/// A secret as `secret list` shows it: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretInfo {
    /// Its name.
    pub name: String,
    /// `system` or the user.
    pub owner: String,
    /// Last written.
    pub updated_at: crate::time::Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_examples_parse_verbatim() {
        let f: ClientFrame =
            serde_json::from_str(r#"{"type":"subscribe","events":["*"]}"#).unwrap();
        assert!(matches!(f, ClientFrame::Subscribe(ref s) if s.events == ["*"]));
        let f: ClientFrame = serde_json::from_str(
            r#"{"type":"cmd","id":"req-1","token":"<token>","domain":"proc","op":"spawn","body":{"agent":"researcher","goal":"Hello world"}}"#,
        )
        .unwrap();
        let ClientFrame::Cmd(c) = f else { panic!() };
        assert_eq!(
            (c.id.as_str(), c.domain.as_str(), c.op.as_str()),
            ("req-1", "proc", "spawn")
        );
        let req: crate::agent::SpawnRequest = serde_json::from_value(c.body).unwrap();
        assert_eq!(req.agent.as_str(), "researcher");
        let f: ClientFrame =
            serde_json::from_str(r#"{"type":"subscribe","events":["agent.*"],"since_seq":41}"#)
                .unwrap();
        assert!(matches!(f, ClientFrame::Subscribe(ref s) if s.since_seq == Some(41)));
        let l: LoginRequest =
            serde_json::from_str(r#"{"identity":"alice","credential":"<api_key>"}"#).unwrap();
        assert!(!format!("{l:?}").contains("api_key"));
    }

    #[test]
    fn replies_and_events_serialize_with_their_type() {
        let r = ServerFrame::Reply(Reply::err(
            Some("c1".into()),
            AtpError::new(ErrorCode::EPERM, "no"),
        ));
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"type":"reply","id":"c1","ok":false,"error":{"code":"EPERM","message":"no"}}"#
        );
        let r = ServerFrame::Reply(Reply::err(None, AtpError::new(ErrorCode::EPARSE, "x")));
        assert!(serde_json::to_string(&r).unwrap().contains(r#""id":null"#));
    }

    #[test]
    fn patterns() {
        assert!(event_matches("*", "agent.status"));
        assert!(event_matches("agent.*", "agent.output.chunk"));
        assert!(!event_matches("agent.*", "agent"));
        assert!(!event_matches("agent.*", "agentx.y"));
        assert!(event_matches("hil.request", "hil.request"));
        assert!(!event_matches("hil.request", "hil.resolved"));
    }
}
