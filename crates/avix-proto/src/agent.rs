//! Agents and their processes: the manifest, spawn requests, the documents under
//! `/proc/<pid>/`, journal events and invocation records.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::envelope::{API_VERSION, Kind};
use crate::llm::{ContentBlock, MessageRole, StopReason, Usage};
use crate::name::AgentName;
use crate::time::Timestamp;
use crate::tool::{ToolName, ToolPattern};
use crate::yaml::{self, YamlError};

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_zero_f(v: &f64) -> bool {
    *v == 0.0
}

/// Tunable parameters of an agent run. The same shape serves defaults (values) and limits
/// (ceilings: a layer's limit caps the value), at every layer: kernel, crew, user, manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentParams {
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Context window the executor budgets for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window_tokens: Option<u64>,
    /// Output tokens per LLM call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    /// LLM turns per run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<u64>,
    /// Tool calls per run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tool_calls: Option<u64>,
    /// Consecutive tool-dispatching turns without a final answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tool_chain_length: Option<u64>,
    /// Tokens (input + output) per run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Wall-clock seconds per run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wall_time_secs: Option<u64>,
    /// Seconds one LLM call may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_timeout_secs: Option<u64>,
    /// Scheduling priority of the agent's LLM calls, 0 to 9 (5 is normal); a limit caps
    /// how high a user or crew may go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u64>,
}

/// The parameter names, in display order.
pub const PARAM_NAMES: [&str; 10] = [
    "temperature",
    "contextWindowTokens",
    "maxOutputTokens",
    "maxTurns",
    "maxToolCalls",
    "maxToolChainLength",
    "maxTokens",
    "maxWallTimeSecs",
    "turnTimeoutSecs",
    "priority",
];

impl AgentParams {
    /// The value of a parameter by its camelCase name.
    pub fn get(&self, name: &str) -> Option<f64> {
        let u = |v: Option<u64>| v.map(|x| x as f64);
        match name {
            "temperature" => self.temperature,
            "contextWindowTokens" => u(self.context_window_tokens),
            "maxOutputTokens" => u(self.max_output_tokens),
            "maxTurns" => u(self.max_turns),
            "maxToolCalls" => u(self.max_tool_calls),
            "maxToolChainLength" => u(self.max_tool_chain_length),
            "maxTokens" => u(self.max_tokens),
            "maxWallTimeSecs" => u(self.max_wall_time_secs),
            "turnTimeoutSecs" => u(self.turn_timeout_secs),
            "priority" => u(self.priority),
            _ => None,
        }
    }

    /// Sets a parameter by name (integers are rounded down; negative values become 0).
    pub fn set(&mut self, name: &str, v: f64) {
        let u = (v.max(0.0)) as u64;
        match name {
            "temperature" => self.temperature = Some(v),
            "contextWindowTokens" => self.context_window_tokens = Some(u),
            "maxOutputTokens" => self.max_output_tokens = Some(u),
            "maxTurns" => self.max_turns = Some(u),
            "maxToolCalls" => self.max_tool_calls = Some(u),
            "maxToolChainLength" => self.max_tool_chain_length = Some(u),
            "maxTokens" => self.max_tokens = Some(u),
            "maxWallTimeSecs" => self.max_wall_time_secs = Some(u),
            "turnTimeoutSecs" => self.turn_timeout_secs = Some(u),
            "priority" => self.priority = Some(u),
            _ => {}
        }
    }

    /// The compiled-in defaults (`/kernel/defaults/agent.yaml`).
    pub fn system_defaults() -> Self {
        Self {
            temperature: Some(0.7),
            context_window_tokens: Some(64_000),
            max_output_tokens: Some(4096),
            max_turns: Some(20),
            max_tool_calls: Some(100),
            max_tool_chain_length: Some(50),
            max_tokens: Some(500_000),
            max_wall_time_secs: Some(3600),
            turn_timeout_secs: Some(300),
            priority: Some(5),
        }
    }

    /// The compiled-in ceilings (`/kernel/limits/agent.yaml`).
    pub fn system_limits() -> Self {
        Self {
            temperature: Some(2.0),
            context_window_tokens: Some(1_000_000),
            max_output_tokens: Some(64_000),
            max_turns: Some(500),
            max_tool_calls: Some(5000),
            max_tool_chain_length: Some(500),
            max_tokens: Some(50_000_000),
            max_wall_time_secs: Some(24 * 3600),
            turn_timeout_secs: Some(1800),
            priority: Some(9),
        }
    }

    fn check(&self, problems: &mut Vec<String>) {
        if self.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
            problems.push("temperature must be between 0 and 2".into());
        }
        if self.priority.is_some_and(|p| p > 9) {
            problems.push("priority must be between 0 and 9".into());
        }
    }
}

/// `kind: AgentDefaults` (`/kernel/defaults/agent.yaml`, `/users/<u>/defaults.yaml`,
/// `/crews/<c>/defaults.yaml`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgentDefaults(pub AgentParams);

impl Kind for AgentDefaults {
    const KIND: &'static str = "AgentDefaults";
    fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        self.0.check(&mut p);
        p
    }
}

/// `kind: AgentLimits` (`/kernel/limits/agent.yaml`, `/users/<u>/limits.yaml`,
/// `/crews/<c>/limits.yaml`): each field caps the value of the same name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgentLimits(pub AgentParams);

impl Kind for AgentLimits {
    const KIND: &'static str = "AgentLimits";
    fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        self.0.check(&mut p);
        p
    }
}

/// Tools an agent asks for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolRequest {
    /// Without these the agent does not start.
    #[serde(default)]
    pub required: Vec<ToolName>,
    /// Granted when permitted, dropped otherwise. Entries may be patterns (`mcp/github/*`),
    /// expanded at spawn to the matching tools installed then.
    #[serde(default)]
    pub optional: Vec<ToolPattern>,
}

/// Manifest metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentMeta {
    /// Agent name.
    pub name: AgentName,
    /// Version, `MAJOR.MINOR.PATCH`.
    pub version: String,
    /// One line for catalogs.
    #[serde(default)]
    pub description: String,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Licence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// The body of an agent manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentSpec {
    /// The system prompt, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// Or a file next to the manifest holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt_path: Option<String>,
    /// Model (`provider/model`, a model of the default provider, or an alias).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Tools requested.
    #[serde(default)]
    pub tools: ToolRequest,
    /// Tools that need a human's approval on every call.
    #[serde(default)]
    pub hil_required: Vec<ToolName>,
    /// After an answer, wait for more input instead of exiting.
    #[serde(default)]
    pub interactive: bool,
    /// Parameter values the agent wants.
    #[serde(default)]
    pub defaults: AgentParams,
    /// Budgets the agent wants (merged with `defaults`; both are clamped by the limits).
    #[serde(default)]
    pub limits: AgentParams,
}

/// An agent manifest (`/bin/<name>@<version>/agent.yaml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentManifest {
    /// `avix/v1`.
    pub api_version: String,
    /// `Agent`.
    pub kind: String,
    /// Name, version, description.
    pub metadata: AgentMeta,
    /// The body.
    pub spec: AgentSpec,
}

/// Parses `MAJOR.MINOR.PATCH` into a comparable triple.
pub fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let mut it = v.split('.').map(|p| p.parse::<u64>().ok());
    let r = (it.next()??, it.next()??, it.next()??);
    it.next().is_none().then_some(r)
}

impl AgentManifest {
    /// Parses and checks a manifest; every problem is listed (kind invalid).
    pub fn parse(bytes: &[u8]) -> Result<Self, crate::Error> {
        Self::check(bytes).map_err(crate::Error::invalid)
    }

    fn check(bytes: &[u8]) -> Result<Self, String> {
        let m: Self = yaml::from_slice(bytes).map_err(|e| e.to_string())?;
        let mut problems = Vec::new();
        if m.api_version != API_VERSION {
            problems.push(format!(
                "apiVersion is {:?}, expected {API_VERSION:?}",
                m.api_version
            ));
        }
        if m.kind != "Agent" {
            problems.push(format!("kind is {:?}, expected \"Agent\"", m.kind));
        }
        if parse_version(&m.metadata.version).is_none() {
            problems.push(format!(
                "metadata.version {:?} must be MAJOR.MINOR.PATCH",
                m.metadata.version
            ));
        }
        if m.spec.system_prompt.is_some() && m.spec.system_prompt_path.is_some() {
            problems.push("give systemPrompt or systemPromptPath, not both".into());
        }
        if let Some(p) = &m.spec.system_prompt_path
            && (p.starts_with('/') || p.split('/').any(|c| c == ".."))
        {
            problems.push(format!(
                "systemPromptPath {p:?} must be a relative path inside the package"
            ));
        }
        m.spec.defaults.check(&mut problems);
        m.spec.limits.check(&mut problems);
        if problems.is_empty() {
            Ok(m)
        } else {
            Err(problems.join("; "))
        }
    }

    /// Writes the manifest as YAML.
    pub fn to_yaml(&self) -> Result<String, YamlError> {
        yaml::to_string(self)
    }
}

/// Where an agent is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `/bin`.
    System,
    /// `/users/<u>/bin`.
    User,
}

/// A catalog line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogEntry {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Scope.
    pub scope: Scope,
    /// Description.
    pub description: String,
}

/// A session: a user's durable group of invocations of one agent, continuing one
/// conversation (`/users/<u>/sessions/<id>.yaml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    /// UUID.
    pub id: String,
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
    pub id: String,
    /// The agent.
    pub agent: String,
    /// PID it ran as.
    pub pid: u64,
    /// The parent process, for a child an agent spawned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u64>,
    /// When.
    pub spawned_at: Timestamp,
}

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
    pub session: Option<String>,
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
    pub pid: u64,
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
    pub parent: Option<u64>,
    /// Child PIDs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<u64>,
    /// Invocation id (the journal's directory).
    pub invocation: String,
    /// The session it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Model in use.
    pub model: String,
    /// LLM turns so far.
    pub turns: u64,
    /// Tool calls so far.
    pub tool_calls: u64,
    /// Tokens used so far.
    pub tokens: Usage,
    /// LLM cost so far in US dollars (calls with configured prices).
    #[serde(default, skip_serializing_if = "is_zero_f")]
    pub cost_usd: f64,
    /// The tool running now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_tool: Option<String>,
    /// Pending HIL request ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_hil: Vec<String>,
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
    pub pid: u64,
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
    pub id: String,
    /// The agent.
    pub pid: u64,
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
        pid: u64,
        /// Agent.
        agent: String,
        /// Version.
        version: String,
        /// User.
        user: String,
        /// Parent PID.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<u64>,
        /// Goal.
        goal: String,
        /// Model.
        model: String,
        /// Tools granted.
        granted: Vec<String>,
        /// The session it belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<String>,
        /// Waits for input after an answer (as spawned: the manifest's or the request's).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        interactive: bool,
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
        #[serde(default, skip_serializing_if = "is_zero")]
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
        hil_id: String,
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
        hil_id: String,
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
        pid: u64,
        /// The PID it had before the restart.
        previous_pid: u64,
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
    pub id: String,
    /// Agent.
    pub agent: String,
    /// Version.
    pub version: String,
    /// User.
    pub user: String,
    /// PID it ran as.
    pub pid: u64,
    /// Parent PID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u64>,
    /// The session it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
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
    #[serde(default, skip_serializing_if = "is_zero_f")]
    pub cost_usd: f64,
    /// Tool calls made.
    pub tool_calls: u64,
    /// LLM turns.
    pub turns: u64,
}

impl Kind for InvocationRecord {
    const KIND: &'static str = "Invocation";
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "\
apiVersion: avix/v1
kind: Agent
metadata: { name: researcher, version: 1.2.0, description: Reads and writes notes }
spec:
  systemPrompt: You research.
  model: scripted/default
  tools: { required: [fs/read], optional: [fs/write, agent/spawn] }
  hilRequired: [fs/delete]
  limits: { maxTurns: 10, maxTokens: 20000 }
  defaults: { temperature: 0.2 }
";

    #[test]
    fn manifest_parses_and_checks() {
        let m = AgentManifest::parse(MANIFEST.as_bytes()).unwrap();
        assert_eq!(m.metadata.name.as_str(), "researcher");
        assert_eq!(m.spec.limits.max_turns, Some(10));
        let bad = MANIFEST
            .replace("1.2.0", "one")
            .replace("temperature: 0.2", "temperature: 9");
        let e = AgentManifest::parse(bad.as_bytes()).unwrap_err().message;
        assert!(
            e.contains("MAJOR.MINOR.PATCH") && e.contains("temperature"),
            "{e}"
        );
        assert!(
            AgentManifest::parse(MANIFEST.replace("fs/read]", "fs__read]").as_bytes()).is_err()
        );
    }

    #[test]
    fn spawn_requests_in_three_forms() {
        let a = SpawnRequest::parse("researcher Find the three largest files\n").unwrap();
        assert_eq!(
            (a.agent.as_str(), a.goal.as_str()),
            ("researcher", "Find the three largest files")
        );
        let b = SpawnRequest::parse("agent: researcher\ngoal: Hello world\n").unwrap();
        assert_eq!(b.goal, "Hello world");
        let c = SpawnRequest::parse(r#"{"agent":"researcher","goal":"Hi","model":"scripted/x"}"#)
            .unwrap();
        assert_eq!(c.model.as_deref(), Some("scripted/x"));
        for bad in [
            "",
            "researcher",
            "Bad/Agent do it",
            "agent: x\ngoal: ''",
            "{\"agent\": 1}",
            "agent: x\nsurprise: 1\ngoal: g",
        ] {
            assert!(SpawnRequest::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn states_and_exit_codes() {
        assert_eq!(ProcState::Killed.exit_code(), Some(137));
        assert!(ProcState::Stopped.is_terminal() && !ProcState::Paused.is_terminal());
    }

    #[test]
    fn journal_lines_are_flat_json() {
        let e = JournalEntry {
            seq: 3,
            ts: Timestamp::from_unix(0),
            event: JournalEvent::ToolCall {
                call_id: "c1".into(),
                tool: "fs/read".into(),
                args: serde_json::json!({"path": "a"}),
            },
        };
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(
            line,
            r#"{"seq":3,"ts":"1970-01-01T00:00:00Z","type":"tool_call","callId":"c1","tool":"fs/read","args":{"path":"a"}}"#
        );
        let back: JournalEntry = serde_json::from_str(&line).unwrap();
        assert_eq!(back, e);
    }
}
