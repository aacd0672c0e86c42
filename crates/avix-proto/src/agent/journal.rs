//! Journal entries and invocation records (the run as it is kept on disk).

use serde::{Deserialize, Serialize};

use crate::envelope::Kind;
use crate::llm::{ContentBlock, MessageRole, StopReason, Usage};
use crate::time::Timestamp;

use super::{HilKind, HilState, ProcState};

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalEntry {
    /// Position in the journal, from 1.
    pub seq: u64,
    /// When.
    pub ts: Timestamp,
    /// What.
    #[serde(flatten)]
    pub event: JournalEvent,
}

/// What a journal line records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum JournalEvent {
    /// The process was created.
    Spawned {
        /// PID.
        pid: crate::Pid,
        /// Agent.
        agent: String,
        /// Version.
        version: String,
        /// User.
        user: String,
        /// Parent PID.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<crate::Pid>,
        /// Goal.
        goal: String,
        /// Model.
        model: String,
        /// Tools granted.
        granted: Vec<String>,
        /// The session it belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<crate::SessionId>,
        /// Waits for input after an answer (as spawned: the manifest's or the request's).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        interactive: bool,
        /// Its workspace, when it is not its user's (a fork's own copy).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        workspace: Option<String>,
    },
    /// The run is a fork of another one: it starts with that run's conversation up to a turn
    /// and a copy of its workspace as it was then.
    Forked {
        /// The run forked.
        from: crate::InvocationId,
        /// The turn it was forked at.
        at: u32,
    },
    /// What a tool call changed in the workspace (see [`super::FileChange`]).
    Workspace {
        /// The call.
        call_id: String,
        /// The files, by path.
        changes: Vec<super::FileChange>,
        /// Set when the changes could not be tracked, and why.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        untracked: Option<String>,
    },
    /// A state change.
    State {
        /// New state.
        state: ProcState,
        /// What it waits on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        waiting_on: Option<String>,
    },
    /// A conversation message (the record the conversation is rebuilt from).
    Message {
        /// Author.
        role: MessageRole,
        /// Content.
        content: Vec<ContentBlock>,
    },
    /// An LLM call finished.
    LlmCall {
        /// Model.
        model: String,
        /// Provider.
        provider: String,
        /// Why it stopped.
        stop_reason: StopReason,
        /// Tokens.
        usage: Usage,
        /// Duration.
        duration_ms: u64,
        /// Cost in US dollars, when prices are configured.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
        /// Time spent in the provider's queue.
        #[serde(default, skip_serializing_if = "super::is_zero")]
        queued_ms: u64,
    },
    /// An LLM call was abandoned (signal, timeout, error).
    LlmAbandoned {
        /// Why.
        reason: String,
    },
    /// A tool call is dispatched.
    ToolCall {
        /// Call id (also the idempotency key).
        call_id: String,
        /// Tool.
        tool: String,
        /// Arguments.
        args: serde_json::Value,
    },
    /// A tool call's result.
    ToolResult {
        /// Call id.
        call_id: String,
        /// Tool.
        tool: String,
        /// Whether it succeeded.
        ok: bool,
        /// The result text (cut at 64 KiB in the journal).
        result: String,
        /// Duration.
        duration_ms: u64,
    },
    /// The policy refused a call at dispatch.
    PolicyDenied {
        /// Call id.
        call_id: String,
        /// Tool.
        tool: String,
        /// Why.
        reason: String,
    },
    /// A signal arrived.
    Signal {
        /// Signal name.
        signal: String,
        /// Who sent it.
        from: String,
        /// Payload.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload: Option<serde_json::Value>,
    },
    /// A human was asked.
    HilRequested {
        /// Request id.
        hil_id: crate::HilId,
        /// Kind.
        kind: HilKind,
        /// Tool.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool: Option<String>,
        /// The tool call it gates (a resumed run asks again under the same id).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
    },
    /// A human answered (or the timeout did).
    HilAnswered {
        /// Request id.
        hil_id: crate::HilId,
        /// The outcome.
        outcome: HilState,
        /// Who (`kernel` for a timeout).
        by: String,
        /// Note.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        /// Arguments the approver edited (the call ran with these).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        args: Option<serde_json::Value>,
    },
    /// Grants changed.
    Grant {
        /// Tool.
        tool: String,
        /// `session` or `once`.
        scope: String,
    },
    /// The daemon restarted and the run continues under a new PID (PIDs are never reused).
    Resumed {
        /// The new PID.
        pid: crate::Pid,
        /// The PID it had before the restart.
        previous_pid: crate::Pid,
    },
    /// The process ended.
    Exit {
        /// Final state.
        state: ProcState,
        /// Exit code.
        code: i32,
        /// Why.
        reason: String,
    },
}

/// `invocation.yaml` next to a journal: the summary history is built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationRecord {
    /// UUID.
    pub id: crate::InvocationId,
    /// Agent.
    pub agent: String,
    /// Version.
    pub version: String,
    /// User.
    pub user: String,
    /// PID it ran as.
    pub pid: crate::Pid,
    /// Parent PID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<crate::Pid>,
    /// The session it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<crate::SessionId>,
    /// Goal.
    pub goal: String,
    /// Model.
    pub model: String,
    /// Spawn time.
    pub spawned_at: Timestamp,
    /// End time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    /// State (last known).
    pub state: ProcState,
    /// Exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_reason: Option<String>,
    /// Tokens used.
    pub tokens: Usage,
    /// LLM cost in US dollars (calls with configured prices).
    #[serde(default, skip_serializing_if = "super::is_zero_f")]
    pub cost_usd: f64,
    /// Tool calls made.
    pub tool_calls: u64,
    /// LLM turns.
    pub turns: u64,
}

impl Kind for InvocationRecord {
    const KIND: &'static str = "Invocation";
}
