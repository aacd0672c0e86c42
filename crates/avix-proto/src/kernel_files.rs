//! The compiled-in documents the kernel publishes under `/kernel` at boot:
//! `/kernel/defaults/<kind>.yaml` and `/kernel/limits/<kind>.yaml`.

use serde::{Deserialize, Serialize};

use crate::envelope::Kind;

/// `/kernel/defaults/agent.yaml`: what an agent gets when nothing else says otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentDefaults {
    /// Context window the executor budgets for.
    pub context_window_tokens: u64,
    /// Tool calls in one chain.
    pub max_tool_chain_length: u32,
    /// LLM turns per goal.
    pub max_turns_per_goal: u32,
    /// Capability token lifetime.
    pub token_ttl_secs: u64,
    /// Renew the token this long before it expires.
    pub renewal_window_secs: u64,
    /// Sampling temperature.
    pub temperature: f64,
    /// Wall-clock limit for one LLM turn.
    pub turn_timeout_secs: u64,
}

impl Default for AgentDefaults {
    fn default() -> Self {
        Self {
            context_window_tokens: 64_000,
            max_tool_chain_length: 50,
            max_turns_per_goal: 20,
            token_ttl_secs: 3600,
            renewal_window_secs: 300,
            temperature: 0.7,
            turn_timeout_secs: 300,
        }
    }
}

impl Kind for AgentDefaults {
    const KIND: &'static str = "AgentDefaults";
}

/// `/kernel/defaults/pipe.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PipeDefaults {
    /// Buffer size in tokens.
    pub buffer_tokens: u64,
    /// `out`, `in` or `bidirectional`.
    pub direction: String,
    /// `block`, `drop` or `error`.
    pub backpressure: String,
}

impl Default for PipeDefaults {
    fn default() -> Self {
        Self {
            buffer_tokens: 8192,
            direction: "out".into(),
            backpressure: "block".into(),
        }
    }
}

impl Kind for PipeDefaults {
    const KIND: &'static str = "PipeDefaults";
}

/// `/kernel/limits/agent.yaml`: ceilings no layer may exceed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentLimits {
    /// Largest context window.
    pub max_context_window_tokens: u64,
    /// Longest tool chain.
    pub max_tool_chain_length: u32,
    /// Most LLM turns per goal.
    pub max_turns_per_goal: u32,
    /// Agents at once, system-wide.
    pub max_concurrent_agents: u32,
    /// Longest wall-clock time for one invocation.
    pub max_wall_time_secs: u64,
}

impl Default for AgentLimits {
    fn default() -> Self {
        Self {
            max_context_window_tokens: 200_000,
            max_tool_chain_length: 200,
            max_turns_per_goal: 200,
            max_concurrent_agents: 100,
            max_wall_time_secs: 24 * 3600,
        }
    }
}

impl Kind for AgentLimits {
    const KIND: &'static str = "AgentLimits";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Document;

    #[test]
    fn defaults_round_trip_through_yaml() {
        let doc = Document::new(AgentDefaults::default());
        let text = doc.to_yaml().unwrap();
        assert!(text.contains("contextWindowTokens: 64000"), "{text}");
        assert_eq!(
            Document::<AgentDefaults>::parse(text.as_bytes()).unwrap(),
            doc
        );
        let limits = Document::new(AgentLimits::default()).to_yaml().unwrap();
        assert!(Document::<AgentLimits>::parse(limits.as_bytes()).is_ok());
    }
}
