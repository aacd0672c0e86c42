//! The names of the events the daemon publishes (ATP `event` frames, the kernel's bus).
//!
//! Emitters and clients name an event by [`EventName`], never by a string of their own, so a
//! renamed event is a compile error rather than a silently deaf client. On the wire the name is
//! the dotted string (`agent.output.chunk`); docs/atp.md "Events" gives each body.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agent::{HilKind, HilState, ProcState};

/// Declares [`EventName`] from one table of variants and wire names.
macro_rules! events {
    ($( $(#[doc = $doc:literal])* $variant:ident = $wire:literal, )*) => {
        /// An event's name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum EventName {
            $(
                $(#[doc = $doc])*
                #[serde(rename = $wire)]
                $variant,
            )*
        }

        impl EventName {
            /// Every event, in the order docs/atp.md lists them.
            pub const ALL: &'static [EventName] = &[$(EventName::$variant),*];

            /// The name on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventName::$variant => $wire,)*
                }
            }

            /// The event a wire name is, if it is one of Avix's.
            pub fn parse(name: &str) -> Option<Self> {
                match name {
                    $($wire => Some(EventName::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

events! {
    /// The connection's first frame: who it is and the last sequence number.
    SessionReady = "session.ready",
    /// A process started.
    AgentSpawned = "agent.spawned",
    /// A process's state changed.
    AgentStatus = "agent.status",
    /// A piece of streamed model output.
    AgentOutputChunk = "agent.output.chunk",
    /// A whole answer.
    AgentOutput = "agent.output",
    /// A tool call started.
    AgentToolCall = "agent.tool_call",
    /// A tool call's result.
    AgentToolResult = "agent.tool_result",
    /// A tool call refused before it ran.
    AgentToolDenied = "agent.tool_denied",
    /// A process ended.
    AgentExit = "agent.exit",
    /// An approval is asked for.
    HilRequest = "hil.request",
    /// An approval was answered, timed out or withdrawn.
    HilResolved = "hil.resolved",
    /// A session was created.
    SessionCreated = "session.created",
    /// A session changed.
    SessionUpdated = "session.updated",
    /// A session was deleted.
    SessionDeleted = "session.deleted",
    /// A run continued after a restart.
    AgentResumed = "agent.resumed",
    /// A signal was delivered to a process.
    ProcSignal = "proc.signal",
    /// An installed service changed state.
    ServiceState = "service.state",
    /// A tool was added or removed.
    ToolChanged = "tool.changed",
    /// A line of the daemon's log.
    SysLog = "sys.log",
    /// Events a slow connection lost.
    EventsGap = "events.gap",
    /// The daemon is stopping.
    SessionClosing = "session.closing",
}

/// A wire name (an `EventFrame`'s `event`) is this event.
impl PartialEq<EventName> for String {
    fn eq(&self, other: &EventName) -> bool {
        self == other.as_str()
    }
}

/// A wire name (an `EventFrame`'s `event`) is this event.
impl PartialEq<EventName> for str {
    fn eq(&self, other: &EventName) -> bool {
        self == other.as_str()
    }
}

impl std::fmt::Display for EventName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of an event, and the name it goes by: emitters publish these types, clients read
/// them back (`serde_json::from_value::<ToolCall>(frame.body)`), so the two cannot drift.
pub trait EventBody: Serialize {
    /// The event's name.
    const NAME: EventName;
}

macro_rules! body {
    ($ty:ident => $name:ident) => {
        impl EventBody for $ty {
            const NAME: EventName = EventName::$name;
        }
    };
}

/// `agent.spawned` (and `agent.resumed`, as [`Resumed`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spawned {
    /// The agent.
    pub agent: String,
    /// Its goal.
    pub goal: String,
    /// Its session.
    pub session: crate::SessionId,
    /// Its invocation id.
    pub invocation: crate::InvocationId,
}
body!(Spawned => AgentSpawned);

/// `agent.resumed`: a run continued after a restart (the same fields as [`Spawned`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Resumed(pub Spawned);
body!(Resumed => AgentResumed);

/// `agent.status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The new state.
    pub state: ProcState,
    /// What it waits on (`input`, `human-approval`, `llm`…), if waiting.
    pub waiting_on: Option<String>,
}
body!(Status => AgentStatus);

/// `agent.output.chunk`: a piece of streamed model output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputChunk {
    /// The text.
    pub text: String,
}
body!(OutputChunk => AgentOutputChunk);

/// `agent.output`: a whole answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// The text.
    pub text: String,
}
body!(Output => AgentOutput);

/// `agent.tool_call`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolCall {
    /// The call's id.
    pub call_id: String,
    /// The tool.
    pub tool: String,
    /// Its arguments.
    pub args: Value,
}
body!(ToolCall => AgentToolCall);

/// `agent.tool_result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolResult {
    /// The call's id.
    pub call_id: String,
    /// The tool.
    pub tool: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// The start of the result (at most 2,000 characters; the journal has more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}
body!(ToolResult => AgentToolResult);

/// `agent.tool_denied`: refused before it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolDenied {
    /// The call's id.
    pub call_id: String,
    /// The tool.
    pub tool: String,
    /// Why.
    pub reason: String,
}
body!(ToolDenied => AgentToolDenied);

/// `agent.exit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exit {
    /// The final state.
    pub state: ProcState,
    /// The exit code (0 completed, 137 killed…).
    pub exit_code: i32,
    /// Why it ended.
    pub reason: String,
}
body!(Exit => AgentExit);

/// `hil.request`: a person is asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HilAsked {
    /// The request's id.
    pub hil_id: crate::HilId,
    /// What is asked.
    pub kind: HilKind,
    /// The tool, for a tool call's approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The call's arguments, for a tool call's approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
}
body!(HilAsked => HilRequest);

/// `hil.resolved`: answered, timed out or withdrawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HilAnswered {
    /// The request's id.
    pub hil_id: crate::HilId,
    /// The outcome.
    pub outcome: HilState,
    /// Who answered (`kernel` for a timeout).
    pub by: String,
}
body!(HilAnswered => HilResolved);

/// `proc.signal`: a signal was delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signalled {
    /// The signal (`SIGKILL`…).
    pub signal: String,
    /// Who sent it.
    pub from: String,
}
body!(Signalled => ProcSignal);

/// `session.ready`: a connection's first frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ready {
    /// The login this connection belongs to.
    pub session_id: String,
    /// The user.
    pub user: String,
    /// The role the user logged in with.
    pub role: crate::Role,
    /// The protocol version ([`crate::atp::PROTOCOL`]).
    pub protocol: String,
    /// The last event sequence number: subscribe with `sinceSeq` to replay from it.
    pub last_seq: u64,
}
body!(Ready => SessionReady);

/// `session.closing`: the daemon is stopping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closing {
    /// Why.
    pub reason: String,
}
body!(Closing => SessionClosing);

/// `events.gap`: events a slow connection lost (sequence numbers `from..=to`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// The first lost sequence number.
    pub from: u64,
    /// The last lost sequence number.
    pub to: u64,
    /// Why, and where to look instead.
    pub reason: String,
}
body!(Gap => EventsGap);

/// A session as `session.created` and `session.updated` describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session id.
    pub session: crate::SessionId,
    /// The agent it is a conversation with.
    pub agent: String,
    /// Its title (the first goal).
    pub title: String,
    /// How many invocations it holds.
    pub invocations: u64,
}

/// `session.created`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionCreated(pub SessionInfo);
body!(SessionCreated => SessionCreated);

/// `session.updated`: an invocation joined the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionUpdated(pub SessionInfo);
body!(SessionUpdated => SessionUpdated);

/// `session.deleted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDeleted {
    /// The session id.
    pub session: crate::SessionId,
}
body!(SessionDeleted => SessionDeleted);

/// `service.state`: an installed service changed state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStateChanged {
    /// The service.
    pub name: String,
    /// Its new state.
    pub state: crate::service::ServiceState,
    /// Its process, while it has one.
    pub pid: Option<u32>,
    /// What keeps it from running, if anything.
    pub problem: Option<String>,
}
body!(ServiceStateChanged => ServiceState);

/// What happened to a tool (`tool.changed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolChange {
    /// Registered: callable now.
    Added,
    /// Gone.
    Removed,
}

/// `tool.changed`: a service's tool was added or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolChanged {
    /// The tool (`github/list-prs`).
    pub tool: String,
    /// Added or removed.
    pub change: ToolChange,
    /// The service that provides it.
    pub service: String,
    /// Why it was removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
body!(ToolChanged => ToolChanged);

/// `sys.log`: a line of the daemon's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// `error`, `warn`, `info`, `debug`, `trace`.
    pub level: String,
    /// The module that logged it.
    pub target: String,
    /// The line as the log file has it.
    pub line: String,
}
body!(LogLine => SysLog);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_has_one_body_type() {
        let mut named = vec![
            Ready::NAME,
            Spawned::NAME,
            Status::NAME,
            OutputChunk::NAME,
            Output::NAME,
            ToolCall::NAME,
            ToolResult::NAME,
            ToolDenied::NAME,
            Exit::NAME,
            HilAsked::NAME,
            HilAnswered::NAME,
            SessionCreated::NAME,
            SessionUpdated::NAME,
            SessionDeleted::NAME,
            Resumed::NAME,
            Signalled::NAME,
            ServiceStateChanged::NAME,
            ToolChanged::NAME,
            LogLine::NAME,
            Gap::NAME,
            Closing::NAME,
        ];
        let mut all = EventName::ALL.to_vec();
        let key = |e: &EventName| e.as_str();
        named.sort_by_key(key);
        all.sort_by_key(key);
        assert_eq!(named, all);
    }

    #[test]
    fn names_go_round_the_wire() {
        for e in EventName::ALL {
            assert_eq!(EventName::parse(e.as_str()), Some(*e));
            let json = serde_json::to_string(e).unwrap();
            assert_eq!(json, format!("\"{e}\""));
            assert_eq!(serde_json::from_str::<EventName>(&json).unwrap(), *e);
        }
        assert_eq!(EventName::parse("agent.nope"), None);
    }

    #[test]
    fn bodies_keep_the_documented_field_names() {
        let v = serde_json::to_value(Exit {
            state: ProcState::Killed,
            exit_code: 137,
            reason: "killed".into(),
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"state": "killed", "exitCode": 137, "reason": "killed"})
        );
        let v = serde_json::to_value(Status {
            state: ProcState::Waiting,
            waiting_on: None,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"state": "waiting", "waitingOn": null})
        );
        let v = serde_json::to_value(HilAsked {
            hil_id: "h".into(),
            kind: HilKind::ToolCallApproval,
            tool: None,
            args: None,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"hilId": "h", "kind": "tool_call_approval"})
        );
        let started = Spawned {
            agent: "a".into(),
            goal: "g".into(),
            session: "s".into(),
            invocation: "i".into(),
        };
        assert_eq!(
            serde_json::to_value(Resumed(started.clone())).unwrap(),
            serde_json::to_value(started).unwrap()
        );
        assert_eq!(<Resumed as EventBody>::NAME, EventName::AgentResumed);
    }

    #[test]
    fn docs_atp_md_lists_every_event() {
        let docs = include_str!("../../../docs/atp.md");
        let events = &docs[docs.find("## Events").unwrap()..];
        for e in EventName::ALL {
            assert!(
                events.contains(&format!("`{e}`")),
                "docs/atp.md \"Events\" does not list {e}"
            );
        }
    }
}
