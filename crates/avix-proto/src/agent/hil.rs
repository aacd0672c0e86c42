//! Human-in-the-loop requests (`/proc/<pid>/hil/<id>.yaml`).

use serde::{Deserialize, Serialize};

use crate::envelope::Kind;
use crate::time::Timestamp;

/// HIL request kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HilKind {
    /// Approve one call of a granted tool.
    ToolCallApproval,
    /// Grant a tool the agent lacks.
    CapabilityUpgrade,
    /// The agent asks a human for guidance.
    Escalation,
}

/// HIL request states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HilState {
    /// Waiting for an answer.
    Pending,
    /// Approved.
    Approved,
    /// Denied.
    Denied,
    /// Nobody answered in time.
    Timeout,
    /// The agent ended before an answer.
    Cancelled,
}

/// `/proc/<pid>/hil/<id>.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HilRequest {
    /// Request id.
    pub id: crate::HilId,
    /// The agent.
    pub pid: crate::Pid,
    /// Kind.
    pub kind: HilKind,
    /// The tool concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The call's arguments (approval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<serde_json::Value>,
    /// Why the agent asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Choices offered (escalation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// State.
    pub state: HilState,
    /// When asked.
    pub created_at: Timestamp,
    /// When it times out.
    pub expires_at: Timestamp,
    /// What a timeout means.
    pub on_timeout: String,
    /// Who answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<Timestamp>,
    /// The answer's text (reason, guidance, chosen option).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// How to answer.
    pub answer_with: String,
}

impl Kind for HilRequest {
    const KIND: &'static str = "HilRequest";
}
