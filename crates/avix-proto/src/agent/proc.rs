//! Spawn requests and the documents under `/proc/<pid>/`: state, status, resolved parameters.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::envelope::Kind;
use crate::llm::Usage;
use crate::name::AgentName;
use crate::time::Timestamp;
use crate::tool::ToolName;
use crate::yaml;

/// A request to start an agent (`/proc/spawn`, ATP `proc spawn`, `agent/spawn`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SpawnRequest {
    /// Installed agent name (`name` is accepted too).
    #[serde(alias = "name")]
    pub agent: AgentName,
    /// The goal.
    pub goal: String,
    /// Override the manifest's model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Narrow the tools to these (never widens what the agent would get).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ToolName>>,
    /// Override `interactive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interactive: Option<bool>,
    /// The session to continue (its conversation is carried over); a new one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<crate::SessionId>,
    /// Parameters for this run (`maxTurns`, `temperature`, … — [`super::PARAM_NAMES`]):
    /// above the manifest's and the defaults, still under every limit.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub params: std::collections::BTreeMap<String, f64>,
}

impl SpawnRequest {
    /// Parses a spawn request: a YAML or JSON document, or one line `AGENT GOAL…`.
    /// Every refusal is of kind invalid and says what to write.
    pub fn parse(text: &str) -> Result<Self, crate::Error> {
        Self::read(text).map_err(crate::Error::invalid)
    }

    fn read(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("empty spawn request: write `AGENT GOAL…` or a YAML/JSON document with agent and goal".into());
        }
        let first = t.lines().next().unwrap_or("");
        let looks_structured = t.starts_with('{') || first.contains(": ") || first.ends_with(':');
        if looks_structured {
            let r: Self = yaml::from_str(t).map_err(|e| format!("malformed spawn request: {e}"))?;
            if r.goal.trim().is_empty() {
                return Err("the goal is empty".into());
            }
            return Ok(r);
        }
        if t.lines().count() > 1 {
            return Err(
                "a one-line spawn request is `AGENT GOAL…`; use YAML or JSON for more".into(),
            );
        }
        let (agent, goal) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
        let goal = goal.trim();
        if goal.is_empty() {
            return Err(format!("no goal given: write `{agent} <goal>`"));
        }
        let agent = AgentName::new(agent).map_err(|e| e.to_string())?;
        Ok(Self {
            agent,
            goal: goal.to_owned(),
            model: None,
            tools: None,
            interactive: None,
            session: None,
            params: Default::default(),
        })
    }
}

/// A process state. See docs/agents.md for the transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcState {
    /// Created, first turn not started.
    Pending,
    /// Calling the model or running a tool.
    Running,
    /// Blocked: on a human, a child or input.
    Waiting,
    /// Paused by a signal; consumes nothing.
    Paused,
    /// Finished its goal (exit 0).
    Completed,
    /// Stopped on request after finishing its current step (exit 0).
    Stopped,
    /// Ended by an error or a budget (exit 1).
    Failed,
    /// Killed (exit 137).
    Killed,
}

impl ProcState {
    /// Whether the process has ended.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ProcState::Completed | ProcState::Stopped | ProcState::Failed | ProcState::Killed
        )
    }

    /// The exit code of a terminal state.
    pub fn exit_code(self) -> Option<i32> {
        match self {
            ProcState::Completed | ProcState::Stopped => Some(0),
            ProcState::Failed => Some(1),
            ProcState::Killed => Some(137),
            _ => None,
        }
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcState::Pending => "pending",
            ProcState::Running => "running",
            ProcState::Waiting => "waiting",
            ProcState::Paused => "paused",
            ProcState::Completed => "completed",
            ProcState::Stopped => "stopped",
            ProcState::Failed => "failed",
            ProcState::Killed => "killed",
        }
    }
}

impl fmt::Display for ProcState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `/proc/<pid>/status.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessStatus {
    /// PID.
    pub pid: crate::Pid,
    /// Agent name.
    pub agent: String,
    /// Agent version.
    pub version: String,
    /// State.
    pub state: ProcState,
    /// What a waiting process waits for (`human-approval`, `child`, `input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_on: Option<String>,
    /// The goal.
    pub goal: String,
    /// Owner.
    pub owner: String,
    /// Parent PID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<crate::Pid>,
    /// Child PIDs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<crate::Pid>,
    /// Invocation id (the journal's directory).
    pub invocation: crate::InvocationId,
    /// The session it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<crate::SessionId>,
    /// Model in use.
    pub model: String,
    /// LLM turns so far.
    pub turns: u64,
    /// Tool calls so far.
    pub tool_calls: u64,
    /// Tokens used so far.
    pub tokens: Usage,
    /// LLM cost so far in US dollars (calls with configured prices).
    #[serde(default, skip_serializing_if = "super::is_zero_f")]
    pub cost_usd: f64,
    /// The tool running now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_tool: Option<String>,
    /// Pending HIL request ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_hil: Vec<crate::HilId>,
    /// Spawn time.
    pub started_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// End time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    /// Exit code (terminal states).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_reason: Option<String>,
}

impl Kind for ProcessStatus {
    const KIND: &'static str = "ProcessStatus";
}

/// Where a resolved value came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedValue {
    /// The value in force.
    pub value: f64,
    /// The layer that set it (`system-defaults`, `crew-defaults:<c>`, `user-defaults`, `manifest`, `spawn`).
    pub source: String,
    /// The value asked for, when a limit lowered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clamped_from: Option<f64>,
    /// The limit that lowered it (`system-limits`, `crew-limits:<c>`, `user-limits`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clamped_by: Option<String>,
}

/// A tool left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeniedTool {
    /// The tool.
    pub tool: String,
    /// Why.
    pub reason: String,
}

/// `/proc/<pid>/resolved.yaml`: the parameters and tools in force, with provenance. Fixed
/// for the life of the process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolved {
    /// PID.
    pub pid: crate::Pid,
    /// Agent.
    pub agent: String,
    /// User.
    pub user: String,
    /// Model and where it came from.
    pub model: String,
    /// Model source.
    pub model_source: String,
    /// Parameters.
    pub params: BTreeMap<String, ResolvedValue>,
    /// Tools granted.
    pub granted: Vec<String>,
    /// Tools asked for but not granted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied: Vec<DeniedTool>,
    /// Tools that need approval on every call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hil_required: Vec<String>,
}

impl Kind for Resolved {
    const KIND: &'static str = "Resolved";
}
