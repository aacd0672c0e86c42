//! Agent manifests (`agent.yaml`), their parameters and the catalog entries built from them.

use serde::{Deserialize, Serialize};

use crate::envelope::{API_VERSION, Kind};
use crate::name::AgentName;
use crate::tool::{ToolName, ToolPattern};
use crate::yaml::{self, YamlError};

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
    #[allow(clippy::cast_possible_truncation)] // a float to an integer saturates, which is what a limit wants
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
