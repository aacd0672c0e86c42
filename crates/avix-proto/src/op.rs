//! ATP operations as types: every `{domain, op, body}` a client may send, and the bodies of
//! the replies that are not documents of their own.
//!
//! [`Op`] is the one table of operations. The gateway dispatches on it ([`Op::parse`] turns a
//! command into one, refusing an unknown operation or a malformed body with a message that
//! names what is accepted); clients build one and send [`Op::names`] and [`Op::body`]. So the
//! daemon and its clients cannot disagree on a field's name. docs/atp.md describes each
//! operation.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agent::{InvocationRecord, SessionRecord, SpawnRequest};
use crate::atp::{AtpError, ErrorCode, UploadedFile};
use crate::llm::Message;

/// A body the operation ignores (`auth whoami`, `sys info`…).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoArgs {}

/// `proc kill`: one process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PidArgs {
    /// The process.
    pub pid: crate::Pid,
}

/// `proc restore`: a snapshot to start again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreArgs {
    /// The snapshot: its path (`/users/alice/snapshots/….yaml`) or the name of one of the
    /// caller's own (`assistant-104-1764…`).
    pub snapshot: String,
    /// Put the workspace saved with it back first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub workspace: bool,
}

/// `proc fork`: a new run that starts from another one (a process or an invocation, one of
/// them) at a turn.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ForkArgs {
    /// A live or recently ended process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<crate::Pid>,
    /// An invocation id (a run, live or past).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation: Option<crate::InvocationId>,
    /// The turn to fork at: the conversation up to the end of that turn (its tool results
    /// included), the workspace as it was then. Default: the last turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u32>,
    /// A message the fork starts with, after the conversation (to steer it elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
}

/// `proc diff`: what a run (a process or an invocation, one of them) changed in its
/// workspace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiffArgs {
    /// A live or recently ended process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<crate::Pid>,
    /// An invocation id (a run, live or past).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation: Option<crate::InvocationId>,
    /// Only the changes of turns 1 to this one. Default: the whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u32>,
}

/// `proc show`: a process (`pid`) or a past run (`invocation`), one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ShowArgs {
    /// A live or recently ended process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<crate::Pid>,
    /// An invocation id (a run, live or past).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation: Option<crate::InvocationId>,
}

/// `proc list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListArgs {
    /// Operators: only their own (they see everyone's by default).
    #[serde(default)]
    pub mine: bool,
    /// Only processes still running (not those ended and still listed in /proc).
    #[serde(default)]
    pub live: bool,
}

/// `proc history`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HistoryArgs {
    /// Only this agent's runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Whose runs (operators and admins; default: the caller's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// At most this many, newest first (default 200, at most 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// `signal send`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalArgs {
    /// The process.
    pub pid: crate::Pid,
    /// `SIGKILL`, `SIGSTOP`, `SIGCONT`, `SIGPAUSE`, `SIGRESUME`, `SIGINPUT`, `SIGSAVE`… (or
    /// without the `SIG` prefix).
    pub signal: String,
    /// The signal's argument (`SIGINPUT`: the text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

/// An operation on one thing named by its id (`session show`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdArgs {
    /// The id.
    pub id: crate::SessionId,
}

/// An operation on one user's things (`proc catalog`, `session list`): the caller's own
/// when absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserArgs {
    /// Whose (operators and admins may name another user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// `session resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeArgs {
    /// The session.
    pub id: crate::SessionId,
    /// What to say: the input of a live run, the goal of a new one ("Continue." when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
}

/// `session delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteArgs {
    /// The session.
    pub id: crate::SessionId,
    /// Kill its live processes first.
    #[serde(default)]
    pub force: bool,
}

/// `hil list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HilListArgs {
    /// Only this process's requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<crate::Pid>,
}

/// `hil approve` and `hil deny`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HilAnswerArgs {
    /// The request.
    pub id: crate::HilId,
    /// A note for the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// `once` (default) or `session` (for the rest of the process's life).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Edited arguments (`approve` of a tool call only): the call runs with these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
}

/// `fs read`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FsReadArgs {
    /// An absolute path.
    pub path: String,
    /// Where to start (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// How much (default and most: 512 KiB); the reply's `next` says where to go on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
}

/// `fs write`: `content` (text) or `contentBase64`, one of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FsWriteArgs {
    /// An absolute path.
    pub path: String,
    /// The content as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// The content, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_base64: Option<String>,
    /// Add to the end instead of replacing.
    #[serde(default)]
    pub append: bool,
}

/// `fs list`, `fs stat`, `fs delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathArgs {
    /// An absolute path.
    pub path: String,
}

/// `sys logs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsArgs {
    /// The last this many lines (default 200, at most 5,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<usize>,
}

/// An operation on one service (`sys service-status|start|stop|restart`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceArgs {
    /// The service.
    pub name: String,
}

/// `sys service-install`: `path` (a directory on the daemon's host) or `files` (an upload),
/// one of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceInstallArgs {
    /// An absolute directory on the daemon's host holding `service.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The service's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<UploadedFile>>,
}

/// `sys service-uninstall`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceUninstallArgs {
    /// The service.
    pub name: String,
    /// Stop it first when it runs.
    #[serde(default)]
    pub force: bool,
}

/// `secret set`. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSetArgs {
    /// The secret's name.
    pub name: String,
    /// Its value.
    pub value: String,
    /// The system's secret (admins) instead of the caller's.
    #[serde(default)]
    pub system: bool,
}

impl std::fmt::Debug for SecretSetArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSetArgs")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .field("system", &self.system)
            .finish()
    }
}

/// `secret delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretNameArgs {
    /// The secret's name.
    pub name: String,
    /// The system's secret (admins) instead of the caller's.
    #[serde(default)]
    pub system: bool,
}

/// `secret list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretListArgs {
    /// The system's secrets (admins) instead of the caller's.
    #[serde(default)]
    pub system: bool,
}

/// Declares [`Op`]: each operation's domain, name, variant and body type, in one table.
macro_rules! ops {
    ($( $domain:literal : [ $( $op:literal => $variant:ident($body:ty) ),* $(,)? ] )*) => {
        /// One ATP operation with its body.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Op {
            $($(
                #[doc = concat!("`", $domain, " ", $op, "`")]
                $variant($body),
            )*)*
        }

        impl Op {
            /// Every domain and its operations, in the order docs/atp.md lists them.
            pub const TABLE: &'static [(&'static str, &'static [&'static str])] =
                &[$( ($domain, &[$($op),*]) ),*];

            /// The operation a command names, with its body checked: an unknown domain or
            /// operation is `ENOSYS`, a body with a missing, mistyped or unknown field
            /// `EINVAL`; both messages say what is accepted.
            pub fn parse(domain: &str, op: &str, body: Value) -> Result<Self, AtpError> {
                $($(
                    if domain == $domain && op == $op {
                        return Ok(Self::$variant(args(domain, op, body)?));
                    }
                )*)*
                Err(unknown(domain, op))
            }

            /// Its domain and operation names.
            pub fn names(&self) -> (&'static str, &'static str) {
                match self {
                    $($( Self::$variant(_) => ($domain, $op), )*)*
                }
            }

            /// Its body, as sent on the wire.
            pub fn body(&self) -> Value {
                match self {
                    $($( Self::$variant(b) => to_value(b), )*)*
                }
            }
        }
    };
}

ops! {
    "auth": [
        "whoami" => Whoami(NoArgs),
        "refresh" => Refresh(NoArgs),
        "logout" => Logout(NoArgs),
    ]
    "proc": [
        "spawn" => Spawn(SpawnRequest),
        "list" => List(ListArgs),
        "kill" => Kill(PidArgs),
        "show" => Show(ShowArgs),
        "catalog" => Catalog(UserArgs),
        "history" => History(HistoryArgs),
        "save" => Save(PidArgs),
        "restore" => Restore(RestoreArgs),
        "fork" => Fork(ForkArgs),
        "diff" => Diff(DiffArgs),
    ]
    "signal": [
        "send" => Signal(SignalArgs),
    ]
    "session": [
        "list" => SessionList(UserArgs),
        "show" => SessionShow(IdArgs),
        "resume" => SessionResume(ResumeArgs),
        "delete" => SessionDelete(DeleteArgs),
    ]
    "hil": [
        "list" => HilList(HilListArgs),
        "approve" => HilApprove(HilAnswerArgs),
        "deny" => HilDeny(HilAnswerArgs),
    ]
    "fs": [
        "read" => FsRead(FsReadArgs),
        "write" => FsWrite(FsWriteArgs),
        "list" => FsList(PathArgs),
        "stat" => FsStat(PathArgs),
        "delete" => FsDelete(PathArgs),
    ]
    "secret": [
        "set" => SecretSet(SecretSetArgs),
        "list" => SecretList(SecretListArgs),
        "delete" => SecretDelete(SecretNameArgs),
    ]
    "sys": [
        "info" => Info(NoArgs),
        "tools" => Tools(NoArgs),
        "services" => Services(NoArgs),
        "logs" => Logs(LogsArgs),
        "service-list" => ServiceList(NoArgs),
        "service-status" => ServiceStatus(ServiceArgs),
        "service-start" => ServiceStart(ServiceArgs),
        "service-stop" => ServiceStop(ServiceArgs),
        "service-restart" => ServiceRestart(ServiceArgs),
        "service-install" => ServiceInstall(ServiceInstallArgs),
        "service-uninstall" => ServiceUninstall(ServiceUninstallArgs),
    ]
}

fn to_value<T: Serialize>(v: &T) -> Value {
    // Every body type is plain data with string keys: serializing cannot fail.
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn args<T: DeserializeOwned>(domain: &str, op: &str, body: Value) -> Result<T, AtpError> {
    let body = if body.is_null() {
        Value::Object(serde_json::Map::new())
    } else {
        body
    };
    serde_json::from_value(body).map_err(|e| {
        AtpError::new(
            ErrorCode::EINVAL,
            format!("bad body for {domain} {op}: {e} (docs/atp.md lists each operation's fields)"),
        )
    })
}

fn unknown(domain: &str, op: &str) -> AtpError {
    match Op::TABLE.iter().find(|(d, _)| *d == domain) {
        Some((_, ops)) => AtpError::new(
            ErrorCode::ENOSYS,
            format!(
                "unknown operation {op:?} in domain {domain}: use one of {}",
                ops.join(", ")
            ),
        ),
        None => AtpError::new(
            ErrorCode::ENOSYS,
            format!(
                "unknown domain {domain:?}: use {}",
                Op::TABLE
                    .iter()
                    .map(|(d, _)| *d)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    }
}

/// The reply to `proc kill` and `signal send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signalled {
    /// The process.
    pub pid: crate::Pid,
    /// The signal's name (`SIGKILL`…).
    pub signal: String,
}

/// The reply to `proc save`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// The process.
    pub pid: crate::Pid,
    /// The snapshot written (a VFS path).
    pub snapshot: String,
}

/// The reply to `proc show {invocation}`: the run's record and its conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvocationShow {
    /// The record.
    pub record: InvocationRecord,
    /// The conversation, from its journal.
    pub conversation: Vec<Message>,
}

/// The reply to `session show`: the session and its runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionShow {
    /// The session.
    pub session: SessionRecord,
    /// Its runs' records.
    pub invocations: Vec<InvocationRecord>,
}

/// The reply to `sys logs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLines {
    /// The daemon's last log lines, oldest first.
    pub lines: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_operation_goes_round_the_wire() {
        for (domain, ops) in Op::TABLE {
            for op in *ops {
                let body = match (*domain, *op) {
                    ("proc", "spawn") => json!({"agent": "a", "goal": "g"}),
                    ("proc", "kill" | "save") => json!({"pid": 3}),
                    ("proc", "restore") => json!({"snapshot": "s"}),
                    ("signal", _) => json!({"pid": 3, "signal": "SIGKILL"}),
                    ("session", "show" | "resume" | "delete") | ("hil", "approve" | "deny") => {
                        json!({"id": "x"})
                    }
                    ("fs", _) => json!({"path": "/x"}),
                    ("secret", "set") => json!({"name": "n", "value": "v"}),
                    ("secret", "delete") => json!({"name": "n"}),
                    ("sys", "service-install") => json!({"path": "/x"}),
                    ("sys", o) if o.starts_with("service-") && o != "service-list" => {
                        json!({"name": "s"})
                    }
                    _ => json!({}),
                };
                let parsed = Op::parse(domain, op, body).unwrap();
                assert_eq!(parsed.names(), (*domain, *op));
                assert_eq!(Op::parse(domain, op, parsed.body()).unwrap(), parsed);
            }
        }
    }

    #[test]
    fn docs_atp_md_lists_every_operation() {
        let docs = include_str!("../../../docs/atp.md");
        for (domain, ops) in Op::TABLE {
            for op in *ops {
                let row = docs.lines().any(|l| {
                    l.starts_with(&format!("| {domain} |")) && l.contains(&format!("`{op}`"))
                });
                assert!(row, "docs/atp.md has no row for {domain} {op}");
            }
        }
    }

    #[test]
    fn refusals_say_what_is_accepted() {
        let e = Op::parse("proc", "nope", Value::Null).unwrap_err();
        assert_eq!(e.code, ErrorCode::ENOSYS);
        assert!(e.message.contains("spawn, list, kill"), "{e:?}");
        let e = Op::parse("nope", "x", Value::Null).unwrap_err();
        assert!(e.message.contains("auth, proc, signal"), "{e:?}");
        let e = Op::parse("proc", "kill", json!({"pid": 1, "pdi": 2})).unwrap_err();
        assert_eq!(e.code, ErrorCode::EINVAL);
        assert!(e.message.contains("unknown field `pdi`"), "{e:?}");
        assert!(Op::parse("auth", "whoami", Value::Null).is_ok());
    }

    #[test]
    fn a_secret_never_shows_in_debug() {
        let op = Op::parse(
            "secret",
            "set",
            json!({"name": "k", "value": "hunter2-very-secret"}),
        )
        .unwrap();
        assert!(!format!("{op:?}").contains("hunter2"));
    }
}
