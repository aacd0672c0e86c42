//! `/etc/avix/llm.yaml`: LLM providers, model aliases and the fallback order. Owned by llm.svc;
//! the daemon validates it on load and on every write.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::duplicates;
use crate::envelope::Kind;
use crate::name::check_name;

/// The body of `llm.yaml`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LlmConfig {
    /// The provider used for text when a request names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_provider: Option<String>,
    /// Every configured provider.
    #[serde(default)]
    pub providers: Vec<Provider>,
    /// Short names for `provider/model` pairs, e.g. `fast: anthropic/claude-haiku-4`.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// Providers tried in order when the chosen one fails.
    #[serde(default)]
    pub fallback: Vec<String>,
}

/// Which wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// Anthropic Messages API.
    Anthropic,
    /// OpenAI (Chat Completions, images, audio, embeddings).
    Openai,
    /// Any OpenAI-compatible server (vLLM, llama.cpp, LM Studio) at `baseUrl`.
    OpenaiCompatible,
    /// Ollama native API.
    Ollama,
    /// Stability AI image generation.
    Stability,
    /// ElevenLabs speech.
    Elevenlabs,
    /// A deterministic YAML script (tests and demos).
    Scripted,
}

/// One provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Provider {
    /// Name used in aliases, fallback and requests.
    pub name: String,
    /// Wire format.
    pub kind: ProviderKind,
    /// API base URL; each kind has a default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The environment variable that holds the API key (never the key itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// For `scripted`: the script file (absolute host path or relative to `ROOT/etc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// Models this provider serves.
    #[serde(default)]
    pub models: Vec<String>,
    /// The model used when a request names only the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_model: Option<String>,
    /// Scheduling limits.
    #[serde(default)]
    pub limits: ProviderLimits,
    /// Prices per million tokens, by model.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prices: BTreeMap<String, Price>,
}

/// Scheduling limits of one provider.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderLimits {
    /// Requests in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Tokens per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
}

/// Price per million tokens, in US dollars.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Price {
    /// Input tokens.
    pub input: f64,
    /// Output tokens.
    pub output: f64,
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

impl Kind for LlmConfig {
    const KIND: &'static str = "LlmConfig";

    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        duplicates(
            "provider",
            self.providers.iter().map(|p| &p.name),
            &mut problems,
        );
        let known = |n: &str| self.providers.iter().any(|p| p.name == n);
        for p in &self.providers {
            if let Err(e) = check_name("provider name", &p.name) {
                problems.push(e.to_string());
            }
            if let Some(env) = &p.api_key_env
                && !is_env_name(env)
            {
                // The value is not echoed: someone may have pasted the key itself here.
                problems.push(format!(
                        "provider {}: apiKeyEnv must name an environment variable (A-Z, 0-9, _) that holds the key, not the key itself",
                        p.name
                    ));
            }
            if let Some(url) = &p.base_url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                problems.push(format!(
                    "provider {}: baseUrl {url:?} must start with http:// or https://",
                    p.name
                ));
            }
            if p.kind == ProviderKind::Scripted && p.script.is_none() {
                problems.push(format!(
                    "provider {}: kind scripted needs a script file",
                    p.name
                ));
            }
            if p.kind == ProviderKind::OpenaiCompatible && p.base_url.is_none() {
                problems.push(format!(
                    "provider {}: kind openai-compatible needs baseUrl",
                    p.name
                ));
            }
            if let Some(m) = &p.default_model
                && !p.models.is_empty()
                && !p.models.contains(m)
            {
                problems.push(format!(
                    "provider {}: defaultModel {m:?} is not in models",
                    p.name
                ));
            }
        }
        if let Some(d) = &self.default_provider
            && !known(d)
        {
            problems.push(format!(
                "defaultProvider {d:?} is not a configured provider"
            ));
        }
        for (alias, target) in &self.aliases {
            let provider = target.split_once('/').map_or(target.as_str(), |(p, _)| p);
            if !known(provider) {
                problems.push(format!(
                    "alias {alias}: {target:?} does not start with a configured provider"
                ));
            }
        }
        for f in &self.fallback {
            if !known(f) {
                problems.push(format!("fallback {f:?} is not a configured provider"));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Document;

    const SAMPLE: &str = "\
apiVersion: avix/v1
kind: LlmConfig
spec:
  defaultProvider: anthropic
  providers:
    - name: anthropic
      kind: anthropic
      apiKeyEnv: ANTHROPIC_API_KEY
      models: [claude-sonnet-4-5, claude-haiku-4-5]
      defaultModel: claude-sonnet-4-5
      limits: {concurrency: 4, requestsPerMinute: 50}
      prices: {claude-sonnet-4-5: {input: 3.0, output: 15.0}}
    - name: local
      kind: ollama
      baseUrl: http://127.0.0.1:11434
  aliases: {fast: anthropic/claude-haiku-4-5}
  fallback: [local]
";

    #[test]
    fn parses_a_full_config() {
        let doc = Document::<LlmConfig>::parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(doc.spec.providers.len(), 2);
    }

    #[test]
    fn refuses_a_key_in_place_of_an_env_name_and_dangling_names() {
        let s = SAMPLE.replace("apiKeyEnv: ANTHROPIC_API_KEY", "apiKeyEnv: sk-ant-123");
        let e = Document::<LlmConfig>::parse(s.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("apiKeyEnv") && !e.contains("sk-ant-123"), "{e}");
        let s = SAMPLE.replace("fallback: [local]", "fallback: [nowhere]");
        assert!(Document::<LlmConfig>::parse(s.as_bytes()).is_err());
    }
}
