//! Snapshots: a run captured at one moment (`/users/<u>/snapshots/<id>.yaml`), enough to
//! start a new process that continues where it was.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ProcState;
use crate::envelope::Kind;
use crate::llm::Message;
use crate::time::Timestamp;
use crate::{InvocationId, Pid, SessionId};

/// A run captured by SIGSAVE (`echo save > /proc/<pid>/ctl`, `avix client agent save PID`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// The agent.
    pub agent: String,
    /// Its version then.
    pub version: String,
    /// Whose run it is.
    pub user: String,
    /// The process it was.
    pub pid: Pid,
    /// Its invocation.
    pub invocation: InvocationId,
    /// Its session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionId>,
    /// Its goal.
    pub goal: String,
    /// The model it ran on (`provider/model`).
    pub model: String,
    /// Whether it waits for input after answering.
    pub interactive: bool,
    /// Its state when captured.
    pub state: ProcState,
    /// What it waited on, if waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_on: Option<String>,
    /// When it was captured.
    pub captured_at: Timestamp,
    /// The last journal entry it includes.
    pub journal_seq: u64,
    /// The tools it held (granted at spawn or since).
    pub grants: Vec<String>,
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// The last turn's tool calls that had no result yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<SnapshotCall>,
    /// The copy of the workspace taken with it, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<WorkspaceCopy>,
}

impl Kind for Snapshot {
    const KIND: &'static str = "Snapshot";

    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.agent.is_empty() {
            problems.push("agent is empty".to_owned());
        }
        if self.goal.trim().is_empty() {
            problems.push("goal is empty".to_owned());
        }
        problems
    }
}

/// A tool call of the last turn, without a result when the snapshot was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotCall {
    /// The call id the model gave.
    pub id: String,
    /// The tool.
    pub tool: String,
    /// Its arguments.
    pub input: Value,
    /// How far it got.
    pub progress: CallProgress,
}

/// How far a call got before the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum CallProgress {
    /// Not run yet (waiting for approval, or not reached): the restored run runs it, asking
    /// again where the policy says so.
    NotStarted,
    /// Running: it may have had effects, so the restored run does not run it again and tells
    /// the model so.
    Running,
    /// Finished; its result goes to the model.
    Done {
        /// Succeeded.
        ok: bool,
        /// The result text.
        content: String,
    },
}

/// The workspace as it was, copied beside the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceCopy {
    /// Where the copy is (`/users/<u>/snapshots/<id>.workspace`).
    pub path: String,
    /// Files copied.
    pub files: u64,
    /// Bytes copied.
    pub bytes: u64,
}
