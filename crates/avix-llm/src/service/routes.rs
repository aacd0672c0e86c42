//! From a model string (or a modality) to a provider and a model, checked before any call.

use std::sync::Arc;

use avix_proto::config::llm::{Modality, ProviderKind};

use crate::LlmError;
use crate::media::builtin_model;

use super::{LlmService, Routes};

impl LlmService {
    /// Resolves a model string to `(provider, model)`, and checks what can be checked before
    /// any call: the provider exists, the model is one it lists (when it lists any), a
    /// scripted provider has that script. Spawn calls this, so a typo costs no process.
    pub fn resolve(&self, model: &str) -> Result<(String, String), LlmError> {
        let (p, m) = self.route(model)?;
        let routes = self.routes();
        if let Some(entry) = routes.providers.get(&p) {
            let c = &entry.config;
            if !m.is_empty() && !c.models.is_empty() && !c.models.iter().any(|x| x == &m) {
                return Err(LlmError::Config(format!(
                    "provider {p} does not serve the model {m:?}: llm.yaml lists {}",
                    c.models.join(", ")
                )));
            }
            if c.kind == ProviderKind::Scripted && !m.is_empty() && m != "default" {
                let file = self.paths.etc.join("scripts").join(format!("{m}.yaml"));
                if !file.is_file() {
                    let mut have: Vec<String> = std::fs::read_dir(self.paths.etc.join("scripts"))
                        .into_iter()
                        .flatten()
                        .flatten()
                        .filter_map(|e| {
                            e.file_name()
                                .to_str()?
                                .strip_suffix(".yaml")
                                .map(str::to_owned)
                        })
                        .collect();
                    have.sort();
                    return Err(LlmError::Config(format!(
                        "the scripted provider {p} has no script {m:?} (ROOT/etc/scripts/{m}.yaml); scripts: {}; for a real model, configure its provider in llm.yaml",
                        have.join(", ")
                    )));
                }
            }
        }
        Ok((p, m))
    }

    /// Resolves a model string to `(provider, model)`.
    pub(super) fn route(&self, model: &str) -> Result<(String, String), LlmError> {
        let routes = self.routes();
        let model = routes.aliases.get(model).map_or(model, String::as_str);
        if let Some((p, m)) = model.split_once('/') {
            if routes.providers.contains_key(p) || p == "replay" {
                return Ok((p.to_owned(), m.to_owned()));
            }
            let mut known: Vec<&str> = routes.providers.keys().map(String::as_str).collect();
            known.sort_unstable();
            return Err(LlmError::Config(format!(
                "unknown provider {p:?} in {model:?}: llm.yaml configures {}; write PROVIDER/MODEL (a model name with a slash goes after its provider: openrouter/{model})",
                known.join(", ")
            )));
        }
        if let Some(p) = routes.providers.get(model) {
            return Ok((
                model.to_owned(),
                p.config.default_model.clone().unwrap_or_default(),
            ));
        }
        let Some(default) = routes.default_text.clone() else {
            return Err(LlmError::Config(
                "no LLM provider is configured: add one to /etc/avix/llm.yaml".into(),
            ));
        };
        if model.is_empty() {
            let m = routes
                .providers
                .get(&default)
                .and_then(|p| p.config.default_model.clone())
                .unwrap_or_default();
            return Ok((default, m));
        }
        Ok((default, model.to_owned()))
    }

    /// The provider and model for a non-text call.
    pub(super) fn resolve_media(
        &self,
        m: Modality,
        provider: Option<&str>,
        model: Option<&str>,
    ) -> Result<(Arc<Routes>, String, String), LlmError> {
        let routes = self.routes();
        let what = match m {
            Modality::Image => "image generation",
            Modality::Speech => "speech",
            Modality::Transcription => "transcription",
            Modality::Embedding => "embeddings",
            Modality::Text => "text",
        };
        let name = match provider {
            Some(p) => p.to_owned(),
            None => routes
                .defaults
                .get(&m)
                .cloned()
                .or_else(|| {
                    routes
                        .providers
                        .values()
                        .find(|e| e.config.serves(m) && e.problem.is_none())
                        .or_else(|| routes.providers.values().find(|e| e.config.serves(m)))
                        .map(|e| e.config.name.clone())
                })
                .ok_or_else(|| {
                    LlmError::Config(format!(
                        "no provider for {what} is configured: add one that serves {} to /etc/avix/llm.yaml",
                        m.as_str()
                    ))
                })?,
        };
        let e = routes.providers.get(&name).ok_or_else(|| {
            LlmError::Config(format!(
                "provider {name} is not configured in /etc/avix/llm.yaml"
            ))
        })?;
        if !e.config.serves(m) {
            return Err(LlmError::Config(format!(
                "provider {name} does not serve {what}"
            )));
        }
        let model = model
            .map(str::to_owned)
            .or_else(|| e.config.default_models.get(&m).cloned())
            .or_else(|| builtin_model(e.config.kind, m).map(str::to_owned))
            .ok_or_else(|| {
                LlmError::Config(format!(
                    "no {what} model for provider {name}: pass model, or set defaultModels.{} in /etc/avix/llm.yaml",
                    m.as_str()
                ))
            })?;
        Ok((routes, name, model))
    }
}
