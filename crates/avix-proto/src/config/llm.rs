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
    /// The provider used for other modalities when a request names none (`image: openai`).
    /// A modality without an entry uses the first provider that serves it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub default_providers: BTreeMap<Modality, String>,
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
    /// Plays back an earlier invocation's answers from its journal.
    Replay,
}

/// What a provider can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    /// Chat completions with tool calls.
    Text,
    /// Image generation.
    Image,
    /// Text to speech.
    Speech,
    /// Speech to text.
    Transcription,
    /// Embeddings.
    Embedding,
}

impl Modality {
    /// Every modality.
    pub const ALL: [Modality; 5] = [
        Modality::Text,
        Modality::Image,
        Modality::Speech,
        Modality::Transcription,
        Modality::Embedding,
    ];

    /// Its name in llm.yaml.
    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Text => "text",
            Modality::Image => "image",
            Modality::Speech => "speech",
            Modality::Transcription => "transcription",
            Modality::Embedding => "embedding",
        }
    }
}

impl ProviderKind {
    /// The modalities this kind of provider can serve.
    pub fn modalities(self) -> &'static [Modality] {
        use Modality::*;
        match self {
            ProviderKind::Anthropic | ProviderKind::Scripted | ProviderKind::Replay => &[Text],
            ProviderKind::Openai | ProviderKind::OpenaiCompatible => {
                &[Text, Image, Speech, Transcription, Embedding]
            }
            ProviderKind::Ollama => &[Text, Embedding],
            ProviderKind::Stability => &[Image],
            ProviderKind::Elevenlabs => &[Speech],
        }
    }

    /// The base URL used when llm.yaml gives none. OpenAI-style URLs include `/v1`, as
    /// OpenAI's own clients expect; the others are the server root.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::Anthropic => Some("https://api.anthropic.com"),
            ProviderKind::Openai => Some("https://api.openai.com/v1"),
            ProviderKind::Ollama => Some("http://127.0.0.1:11434"),
            ProviderKind::Stability => Some("https://api.stability.ai"),
            ProviderKind::Elevenlabs => Some("https://api.elevenlabs.io"),
            ProviderKind::OpenaiCompatible | ProviderKind::Scripted | ProviderKind::Replay => None,
        }
    }

    /// The environment variable read for the key when llm.yaml names none (`None`: the
    /// kind needs no key unless one is configured).
    pub fn default_key_env(self) -> Option<&'static str> {
        match self {
            ProviderKind::Anthropic => Some("ANTHROPIC_API_KEY"),
            ProviderKind::Openai => Some("OPENAI_API_KEY"),
            ProviderKind::Stability => Some("STABILITY_API_KEY"),
            ProviderKind::Elevenlabs => Some("ELEVENLABS_API_KEY"),
            ProviderKind::OpenaiCompatible
            | ProviderKind::Ollama
            | ProviderKind::Scripted
            | ProviderKind::Replay => None,
        }
    }
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
    /// The modalities to use this provider for; all its kind can serve when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modalities: Option<Vec<Modality>>,
    /// Default models of the other modalities (`image: gpt-image-1`); text uses
    /// `defaultModel`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub default_models: BTreeMap<Modality, String>,
    /// Default voice for speech.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    /// Stream text responses (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Network timeouts.
    #[serde(default, skip_serializing_if = "Timeouts::is_empty")]
    pub timeouts: Timeouts,
    /// Retries of failed calls.
    #[serde(default, skip_serializing_if = "RetryPolicy::is_empty")]
    pub retry: RetryPolicy,
    /// Scheduling limits.
    #[serde(default)]
    pub limits: ProviderLimits,
    /// Prices per million tokens, by model.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prices: BTreeMap<String, Price>,
}

/// Network timeouts, in seconds (fractions allowed).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timeouts {
    /// Establishing the connection (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_secs: Option<f64>,
    /// From sending the request to the first byte of the answer (default 120).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte_secs: Option<f64>,
    /// Longest silence inside a streamed answer (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_secs: Option<f64>,
}

impl Timeouts {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// How failed calls are retried (429, 5xx, connection resets), never once part of the
/// answer has reached the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (default 4; 1 disables retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// First backoff; it doubles per attempt, with jitter (default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_backoff_ms: Option<u64>,
    /// Longest backoff (default 30000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff_ms: Option<u64>,
    /// A `Retry-After` longer than this fails the call instead of waiting (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retry_after_secs: Option<u64>,
}

impl RetryPolicy {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
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

fn kind_name(k: ProviderKind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl Provider {
    /// Whether this provider is used for `m`.
    pub fn serves(&self, m: Modality) -> bool {
        match &self.modalities {
            Some(list) => list.contains(&m),
            None => self.kind.modalities().contains(&m),
        }
    }

    /// The base URL: the configured one or the kind's default.
    pub fn base_url(&self) -> Option<&str> {
        self.base_url
            .as_deref()
            .or_else(|| self.kind.default_base_url())
    }

    /// The environment variable holding the key, if any.
    pub fn key_env(&self) -> Option<&str> {
        self.api_key_env
            .as_deref()
            .or_else(|| self.kind.default_key_env())
    }
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
            if let Some(url) = &p.base_url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    problems.push(format!(
                        "provider {}: baseUrl {url:?} must start with http:// or https://",
                        p.name
                    ));
                } else if url
                    .split("://")
                    .nth(1)
                    .and_then(|rest| rest.split('/').next())
                    .is_some_and(|host| host.contains('@'))
                {
                    // Not echoed: it holds a password.
                    problems.push(format!(
                        "provider {}: baseUrl must not carry credentials (user:password@); put the key in the variable apiKeyEnv names",
                        p.name
                    ));
                }
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
            let serves = p.kind.modalities();
            for m in p.modalities.iter().flatten().chain(p.default_models.keys()) {
                if !serves.contains(m) {
                    problems.push(format!(
                        "provider {}: kind {} cannot serve {} (it serves {})",
                        p.name,
                        kind_name(p.kind),
                        m.as_str(),
                        serves
                            .iter()
                            .map(|m| m.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            for (what, v) in [
                ("connectSecs", p.timeouts.connect_secs),
                ("firstByteSecs", p.timeouts.first_byte_secs),
                ("idleSecs", p.timeouts.idle_secs),
            ] {
                if let Some(v) = v
                    && !(v.is_finite() && v > 0.0 && v <= 86_400.0)
                {
                    problems.push(format!(
                        "provider {}: timeouts.{what} must be a number of seconds above 0 and at most 86400",
                        p.name
                    ));
                }
            }
            if let Some(n) = p.retry.max_attempts
                && !(1..=10).contains(&n)
            {
                problems.push(format!(
                    "provider {}: retry.maxAttempts must be between 1 and 10",
                    p.name
                ));
            }
            if p.limits.concurrency == Some(0)
                || p.limits.requests_per_minute == Some(0)
                || p.limits.tokens_per_minute == Some(0)
            {
                problems.push(format!(
                    "provider {}: limits must be above 0 (leave a limit out for none)",
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
        for (m, name) in &self.default_providers {
            match self.providers.iter().find(|p| &p.name == name) {
                None => problems.push(format!(
                    "defaultProviders.{}: {name:?} is not a configured provider",
                    m.as_str()
                )),
                Some(p) if !p.serves(*m) => problems.push(format!(
                    "defaultProviders.{}: provider {name} does not serve {}",
                    m.as_str(),
                    m.as_str()
                )),
                Some(_) => {}
            }
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

    #[test]
    fn modalities_defaults_timeouts_and_urls_are_checked() {
        let bad = |from: &str, to: &str| {
            let s = SAMPLE.replace(from, to);
            Document::<LlmConfig>::parse(s.as_bytes())
                .unwrap_err()
                .to_string()
        };
        let e = bad(
            "      kind: ollama\n",
            "      kind: ollama\n      modalities: [image]\n",
        );
        assert!(e.contains("kind ollama cannot serve image"), "{e}");
        let e = bad(
            "  fallback: [local]",
            "  fallback: [local]\n  defaultProviders: {speech: local, image: nope}",
        );
        assert!(
            e.contains("defaultProviders.speech: provider local does not serve speech"),
            "{e}"
        );
        assert!(e.contains("defaultProviders.image: \"nope\""), "{e}");
        let e = bad(
            "baseUrl: http://127.0.0.1:11434",
            "baseUrl: http://me:hunter2@127.0.0.1:11434",
        );
        assert!(
            e.contains("must not carry credentials") && !e.contains("hunter2"),
            "{e}"
        );
        let e = bad(
            "      limits: {concurrency: 4, requestsPerMinute: 50}",
            "      limits: {concurrency: 0}\n      retry: {maxAttempts: 11}",
        );
        assert!(
            e.contains("limits must be above 0") && e.contains("maxAttempts"),
            "{e}"
        );
        let ok = SAMPLE.replace(
            "      kind: ollama\n",
            "      kind: ollama\n      defaultModels: {embedding: nomic-embed-text}\n      timeouts: {firstByteSecs: 0.5}\n",
        );
        let doc = Document::<LlmConfig>::parse(ok.as_bytes()).unwrap();
        assert!(doc.spec.providers[1].serves(Modality::Embedding));
        assert!(!doc.spec.providers[0].serves(Modality::Image));
        assert_eq!(
            doc.spec.providers[0].base_url(),
            Some("https://api.anthropic.com")
        );
    }
}
