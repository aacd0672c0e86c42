//! The names of the events the daemon publishes (ATP `event` frames, the kernel's bus).
//!
//! Emitters and clients name an event by [`EventName`], never by a string of their own, so a
//! renamed event is a compile error rather than a silently deaf client. On the wire the name is
//! the dotted string (`agent.output.chunk`); docs/atp.md "Events" gives each body.

use serde::{Deserialize, Serialize};

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

#[cfg(test)]
mod tests {
    use super::*;

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
