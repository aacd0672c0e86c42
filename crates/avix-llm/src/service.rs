//! [`LlmService`]: resolves a request's model string to a configured provider and forwards the
//! call.
//!
//! Model strings: an alias from `llm.yaml`; `provider/model`; a provider name alone (its
//! `defaultModel`); or a bare model of the default provider.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use avix_proto::config::llm::{LlmConfig, ProviderKind};
use avix_proto::llm::{LlmRequest, LlmResponse};

use crate::http::Credential;
use crate::provider::HttpText;
use crate::scripted::ScriptedProvider;
use crate::{BoxFuture, LlmClient, LlmError, StreamSink};

struct Provider {
    client: Arc<dyn LlmClient>,
    default_model: String,
}

struct Routes {
    providers: HashMap<String, Provider>,
    default_provider: Option<String>,
    aliases: HashMap<String, String>,
}

/// The routing front of llm.svc.
pub struct LlmService {
    // Replaced whole when llm.yaml changes.
    routes: RwLock<Arc<Routes>>,
    etc: PathBuf,
}

impl std::fmt::Debug for LlmService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmService")
            .field("etc", &self.etc)
            .finish_non_exhaustive()
    }
}

fn build(config: Option<&LlmConfig>, etc: &Path) -> Routes {
    let mut providers = HashMap::new();
    let mut aliases = HashMap::new();
    let mut default_provider = None;
    if let Some(c) = config {
        for p in &c.providers {
            let client: Arc<dyn LlmClient> = match p.kind {
                ProviderKind::Scripted => {
                    let script = p.script.as_deref().unwrap_or("scripts/default.yaml");
                    let path = if Path::new(script).is_absolute() {
                        PathBuf::from(script)
                    } else {
                        etc.join(script)
                    };
                    Arc::new(ScriptedProvider::new(
                        p.name.clone(),
                        etc.join("scripts"),
                        path,
                    ))
                }
                _ => match text_client(p) {
                    Ok(c) => c,
                    Err(reason) => Arc::new(Unavailable {
                        provider: p.name.clone(),
                        reason,
                    }),
                },
            };
            providers.insert(
                p.name.clone(),
                Provider {
                    client,
                    default_model: p.default_model.clone().unwrap_or_default(),
                },
            );
        }
        aliases = c.aliases.clone().into_iter().collect();
        default_provider = c
            .default_provider
            .clone()
            .or_else(|| c.providers.first().map(|p| p.name.clone()));
    }
    Routes {
        providers,
        default_provider,
        aliases,
    }
}

fn text_client(p: &avix_proto::config::llm::Provider) -> Result<Arc<dyn LlmClient>, String> {
    let key = match p.key_env() {
        None => None,
        Some(env) => match std::env::var(env) {
            Ok(k) if !k.trim().is_empty() => Some(Credential::new(k.trim().to_owned())),
            _ if p.api_key_env.is_none() && p.kind.default_key_env().is_none() => None,
            _ => {
                return Err(format!(
                    "provider {} needs an API key: set {env} in the daemon's environment and restart it (or edit llm.yaml to reload)",
                    p.name
                ));
            }
        },
    };
    Ok(Arc::new(HttpText::new(p, key, Arc::default())?))
}

/// A provider that cannot be used, and why.
struct Unavailable {
    provider: String,
    reason: String,
}

impl LlmClient for Unavailable {
    fn complete(
        &self,
        _req: LlmRequest,
        _sink: Option<StreamSink>,
    ) -> BoxFuture<'_, Result<LlmResponse, LlmError>> {
        let msg = format!("provider {} is unavailable: {}", self.provider, self.reason);
        Box::pin(async move { Err(LlmError::Config(msg)) })
    }
}

impl LlmService {
    /// A service for `config` (llm.yaml, if any); relative script paths resolve against
    /// `etc` (`ROOT/etc`).
    pub fn new(config: Option<&LlmConfig>, etc: impl Into<PathBuf>) -> Self {
        let etc = etc.into();
        Self {
            routes: RwLock::new(Arc::new(build(config, &etc))),
            etc,
        }
    }

    /// Replaces the configuration (hot reload).
    pub fn reload(&self, config: Option<&LlmConfig>) {
        let routes = build(config, &self.etc);
        *self
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(routes);
    }

    fn routes(&self) -> Arc<Routes> {
        self.routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Resolves a model string to `(provider, model)`.
    pub fn resolve(&self, model: &str) -> Result<(String, String), LlmError> {
        let routes = self.routes();
        let model = routes.aliases.get(model).map_or(model, String::as_str);
        if let Some((p, m)) = model.split_once('/')
            && routes.providers.contains_key(p)
        {
            return Ok((p.to_owned(), m.to_owned()));
        }
        if let Some(p) = routes.providers.get(model) {
            return Ok((model.to_owned(), p.default_model.clone()));
        }
        let Some(default) = routes.default_provider.clone() else {
            return Err(LlmError::Config(
                "no LLM provider is configured: add one to /etc/avix/llm.yaml".into(),
            ));
        };
        if model.is_empty() {
            let m = routes
                .providers
                .get(&default)
                .map(|p| p.default_model.clone())
                .unwrap_or_default();
            return Ok((default, m));
        }
        Ok((default, model.to_owned()))
    }
}

impl LlmClient for LlmService {
    fn complete(
        &self,
        mut req: LlmRequest,
        sink: Option<StreamSink>,
    ) -> BoxFuture<'_, Result<LlmResponse, LlmError>> {
        Box::pin(async move {
            let (provider, model) = self.resolve(&req.model)?;
            let routes = self.routes();
            let p = routes.providers.get(&provider).ok_or_else(|| {
                LlmError::Config(format!(
                    "provider {provider} is not configured in /etc/avix/llm.yaml"
                ))
            })?;
            req.model = format!("{provider}/{model}");
            let client = p.client.clone();
            drop(routes);
            client.complete(req, sink).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use avix_proto::envelope::Document;

    fn config() -> LlmConfig {
        let text = "apiVersion: avix/v1\nkind: LlmConfig\nspec:\n  defaultProvider: scripted\n  providers:\n    - {name: scripted, kind: scripted, script: scripts/default.yaml}\n    - {name: anthropic, kind: anthropic, apiKeyEnv: ANTHROPIC_API_KEY, models: [m1], defaultModel: m1}\n  aliases: {fast: anthropic/m1}\n";
        Document::<LlmConfig>::parse(text.as_bytes()).unwrap().spec
    }

    #[test]
    fn resolves_aliases_providers_and_defaults() {
        let s = LlmService::new(Some(&config()), "/etc-root");
        assert_eq!(
            s.resolve("fast").unwrap(),
            ("anthropic".into(), "m1".into())
        );
        assert_eq!(
            s.resolve("anthropic").unwrap(),
            ("anthropic".into(), "m1".into())
        );
        assert_eq!(
            s.resolve("scripted/demo").unwrap(),
            ("scripted".into(), "demo".into())
        );
        assert_eq!(s.resolve("").unwrap(), ("scripted".into(), "".into()));
        assert_eq!(
            s.resolve("some-model").unwrap(),
            ("scripted".into(), "some-model".into())
        );
        let none = LlmService::new(None, "/x");
        assert!(
            none.resolve("x")
                .unwrap_err()
                .to_string()
                .contains("llm.yaml")
        );
    }
}
