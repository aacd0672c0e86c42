//! Sessions: a user's durable conversations and the invocations in them.

use serde::{Deserialize, Serialize};

use crate::envelope::Kind;
use crate::time::Timestamp;

use super::ProcState;

/// A session: a user's durable group of invocations of one agent, continuing one
/// conversation (`/users/<u>/sessions/<id>.yaml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    /// UUID.
    pub id: crate::SessionId,
    /// Owner.
    pub user: String,
    /// The agent.
    pub agent: String,
    /// The first goal (cut to 120 characters).
    pub title: String,
    /// Created.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Its invocations, oldest first.
    #[serde(default)]
    pub invocations: Vec<SessionInvocation>,
    /// State now: that of its live process, else of its last invocation (computed when read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ProcState>,
}

impl Kind for SessionRecord {
    const KIND: &'static str = "Session";
}

/// One invocation of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInvocation {
    /// Invocation id.
    pub id: crate::InvocationId,
    /// The agent.
    pub agent: String,
    /// PID it ran as.
    pub pid: crate::Pid,
    /// The parent process, for a child an agent spawned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<crate::Pid>,
    /// When.
    pub spawned_at: Timestamp,
}
