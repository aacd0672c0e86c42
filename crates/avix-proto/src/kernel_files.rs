//! Compiled-in documents the kernel publishes under `/kernel` at boot, beside the agent
//! defaults and limits ([`crate::agent::AgentDefaults`], [`crate::agent::AgentLimits`]).

use serde::{Deserialize, Serialize};

use crate::envelope::Kind;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Document;

    #[test]
    fn defaults_round_trip_through_yaml() {
        let doc = Document::new(PipeDefaults::default());
        let text = doc.to_yaml().unwrap();
        assert!(text.contains("bufferTokens: 8192"), "{text}");
        assert_eq!(
            Document::<PipeDefaults>::parse(text.as_bytes()).unwrap(),
            doc
        );
    }

    #[test]
    fn agent_defaults_and_limits_round_trip() {
        use crate::agent::{AgentDefaults, AgentLimits, AgentParams};
        let text = Document::new(AgentDefaults(AgentParams::system_defaults()))
            .to_yaml()
            .unwrap();
        assert!(text.contains("contextWindowTokens: 64000"), "{text}");
        assert!(Document::<AgentDefaults>::parse(text.as_bytes()).is_ok());
        let text = Document::new(AgentLimits(AgentParams::system_limits()))
            .to_yaml()
            .unwrap();
        assert!(Document::<AgentLimits>::parse(text.as_bytes()).is_ok());
        let bad = "apiVersion: avix/v1\nkind: AgentLimits\nspec: {maxTurns: 5, turns: 3}\n";
        assert!(Document::<AgentLimits>::parse(bad.as_bytes()).is_err());
    }
}
