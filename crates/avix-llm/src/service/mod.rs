//! [`LlmService`]: llm.svc. Resolves what a request asks for to a configured provider, queues
//! it behind that provider's [`Gate`], calls it, falls back to the next provider in
//! `fallback` when it fails before any output, and accounts usage and cost.
//!
//! Model strings: an alias from `llm.yaml`; `provider/model`; a provider name alone (its
//! `defaultModel`); or a bare model of the default provider. `replay/<invocation-id>` replays
//! an invocation of the asking user even when llm.yaml names no replay provider.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use avix_proto::config::llm::{LlmConfig, Modality, Provider, ProviderKind};
use avix_proto::llm::{LlmRequest, LlmResponse, RequestMeta, StreamEvent};

use crate::http::{Credential, HttpStats};
use crate::media::MediaClient;
use crate::provider::HttpText;
use crate::replay::ReplayProvider;
use crate::sched::{Gate, Permit};
use crate::scripted::ScriptedProvider;
use crate::usage::{CallUsage, Ledger, cost};
use crate::{BoxFuture, LlmClient, LlmError, StreamSink};

mod health;
mod media;
mod routes;
mod status;

use health::{COOLDOWN_SECS, Health};
pub use status::{ProviderStatus, ServiceStatus};

/// Where llm.svc finds files.
#[derive(Debug, Clone)]
pub struct ServicePaths {
    /// `ROOT/etc`: relative script paths resolve here.
    pub etc: PathBuf,
    /// The journals replays read (the kernel's).
    pub journals: Arc<dyn crate::replay::JournalSource>,
}

/// What survives a reload, per provider name.
#[derive(Debug, Clone)]
struct Shared {
    gate: Arc<Gate>,
    health: Arc<Health>,
    http: Arc<HttpStats>,
}

struct Entry {
    config: Provider,
    text: Option<Arc<dyn LlmClient>>,
    media: Option<Arc<MediaClient>>,
    problem: Option<String>,
    shared: Shared,
}

#[derive(Default)]
struct Routes {
    providers: BTreeMap<String, Entry>,
    default_text: Option<String>,
    defaults: BTreeMap<Modality, String>,
    aliases: HashMap<String, String>,
    fallback: Vec<String>,
}

/// The routing, scheduling and accounting front of every provider.
pub struct LlmService {
    // Replaced whole when llm.yaml changes.
    routes: RwLock<Arc<Routes>>,
    paths: ServicePaths,
    shared: Mutex<HashMap<String, Shared>>,
    ledger: Ledger,
    replay: Arc<ReplayProvider>,
}

impl std::fmt::Debug for LlmService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmService")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

fn key_of(p: &Provider) -> Result<Option<Credential>, String> {
    let Some(env) = p.key_env() else {
        return Ok(None);
    };
    match std::env::var(env) {
        Ok(k) if !k.trim().is_empty() => Ok(Some(Credential::new(k.trim().to_owned()))),
        _ => Err(format!(
            "it needs an API key: set {env} in the daemon's environment and restart the daemon"
        )),
    }
}

fn scripted(p: &Provider, etc: &Path) -> Arc<dyn LlmClient> {
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

impl LlmService {
    /// A service for `config` (llm.yaml, if any).
    pub fn new(config: Option<&LlmConfig>, paths: ServicePaths) -> Self {
        let replay = Arc::new(ReplayProvider::new("replay", paths.journals.clone()));
        let s = Self {
            routes: RwLock::new(Arc::default()),
            paths,
            shared: Mutex::new(HashMap::new()),
            ledger: Ledger::default(),
            replay,
        };
        s.reload(config);
        s
    }

    fn shared_for(&self, p: &Provider) -> Shared {
        let mut m = self
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let s = m.entry(p.name.clone()).or_insert_with(|| Shared {
            gate: Gate::new(p.limits),
            health: Arc::default(),
            http: Arc::default(),
        });
        s.gate.set_limits(p.limits);
        s.clone()
    }

    fn entry(&self, p: &Provider) -> Entry {
        let shared = self.shared_for(p);
        let mut e = Entry {
            config: p.clone(),
            text: None,
            media: None,
            problem: None,
            shared: shared.clone(),
        };
        match p.kind {
            ProviderKind::Scripted => e.text = Some(scripted(p, &self.paths.etc)),
            ProviderKind::Replay => {
                e.text = Some(Arc::new(ReplayProvider::new(
                    p.name.clone(),
                    self.paths.journals.clone(),
                )));
            }
            _ => {
                let built = key_of(p).and_then(|key| {
                    if p.serves(Modality::Text) {
                        e.text = Some(Arc::new(
                            HttpText::new(p, key.clone(), shared.http.clone())
                                .map_err(|e| e.to_string())?,
                        ));
                    }
                    if Modality::ALL[1..].iter().any(|m| p.serves(*m)) {
                        e.media = Some(Arc::new(
                            MediaClient::new(p, key, shared.http.clone())
                                .map_err(|e| e.to_string())?,
                        ));
                    }
                    Ok(())
                });
                if let Err(problem) = built {
                    e.text = None;
                    e.media = None;
                    e.problem = Some(problem);
                }
            }
        }
        e
    }

    /// Replaces the configuration (hot reload). Queues, health and usage carry over for
    /// providers that keep their name.
    pub fn reload(&self, config: Option<&LlmConfig>) {
        let mut r = Routes::default();
        if let Some(c) = config {
            for p in &c.providers {
                r.providers.insert(p.name.clone(), self.entry(p));
            }
            r.aliases = c.aliases.clone().into_iter().collect();
            r.default_text = c
                .default_provider
                .clone()
                .or_else(|| c.default_providers.get(&Modality::Text).cloned())
                .or_else(|| {
                    c.providers
                        .iter()
                        .find(|p| p.serves(Modality::Text))
                        .map(|p| p.name.clone())
                });
            r.defaults = c.default_providers.clone();
            r.fallback = c.fallback.clone();
        }
        for e in r.providers.values() {
            if let Some(p) = &e.problem {
                tracing::warn!(provider = %e.config.name, "provider unavailable: {p}");
            }
        }
        *self
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(r);
    }

    fn routes(&self) -> Arc<Routes> {
        self.routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The usage ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    async fn admit(
        &self,
        shared: &Shared,
        provider: &str,
        meta: &RequestMeta,
        tokens: u64,
        sink: Option<&StreamSink>,
    ) -> Permit {
        let permit = shared
            .gate
            .acquire(&meta.user, meta.priority, tokens, |position| {
                if let Some(s) = sink {
                    s(&StreamEvent::Queued {
                        provider: provider.to_owned(),
                        position,
                    });
                }
            })
            .await;
        if !permit.queued.is_zero()
            && let Some(s) = sink
        {
            s(&StreamEvent::Dispatched {
                queued_ms: avix_proto::time::ms(permit.queued),
            });
        }
        permit
    }

    async fn complete_on(
        &self,
        routes: &Routes,
        provider: &str,
        req: LlmRequest,
        sink: Option<StreamSink>,
    ) -> Result<LlmResponse, LlmError> {
        if provider == "replay" && !routes.providers.contains_key("replay") {
            return self.replay.complete(req, sink).await;
        }
        let e = routes.providers.get(provider).ok_or_else(|| {
            LlmError::Config(format!(
                "provider {provider} is not configured in /etc/avix/llm.yaml"
            ))
        })?;
        let client = match (&e.text, &e.problem) {
            (Some(c), _) => c.clone(),
            (None, Some(p)) => {
                return Err(LlmError::Config(format!(
                    "provider {provider} is unavailable: {p}"
                )));
            }
            (None, None) => {
                return Err(LlmError::Config(format!(
                    "provider {provider} does not serve text"
                )));
            }
        };
        let tokens = if e.config.limits.tokens_per_minute.is_some() {
            estimate_tokens(&req)
        } else {
            0
        };
        let mut permit = self
            .admit(&e.shared, provider, &req.meta, tokens, sink.as_ref())
            .await;
        let user = req.meta.user.clone();
        match client.complete(req, sink).await {
            Ok(mut resp) => {
                permit.settle_tokens(resp.usage.total());
                e.shared.health.ok();
                resp.queued_ms = avix_proto::time::ms(permit.queued);
                resp.cost_usd = cost(e.config.prices.get(&resp.model), resp.usage);
                self.ledger.record(
                    provider,
                    &resp.model,
                    &user,
                    &CallUsage {
                        tokens: resp.usage,
                        ..CallUsage::default()
                    },
                    resp.cost_usd,
                );
                Ok(resp)
            }
            Err(err) => {
                e.shared.health.failed(&err);
                self.ledger.record_error(provider, &user);
                Err(err)
            }
        }
    }
}

/// A rough count of a request's tokens (4 bytes a token) plus its output cap, for
/// tokens-per-minute limits before the provider says the real figure.
pub fn estimate_tokens(req: &LlmRequest) -> u64 {
    let mut bytes = req.system.len();
    for m in &req.messages {
        for b in &m.content {
            bytes += match b {
                avix_proto::llm::ContentBlock::Text { text } => text.len(),
                avix_proto::llm::ContentBlock::ToolResult { content, .. } => content.len(),
                avix_proto::llm::ContentBlock::ToolUse { input, .. } => input.to_string().len(),
                avix_proto::llm::ContentBlock::Image { .. } => 6000,
            };
        }
    }
    for t in &req.tools {
        bytes += t.name.len() + t.description.len() + 200;
    }
    (bytes / 4) as u64 + u64::from(req.max_tokens)
}

/// Whether another provider may succeed where this error happened.
fn worth_falling_back(e: &LlmError) -> bool {
    !matches!(
        e,
        LlmError::Provider {
            status: 400 | 413 | 422,
            ..
        } | LlmError::Script(_)
    )
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
            // Output that reached the caller rules out a fallback.
            let delivered = Arc::new(AtomicBool::new(false));
            let watched: Option<StreamSink> = sink.map(|s| {
                let d = delivered.clone();
                Arc::new(move |e: &StreamEvent| {
                    if matches!(
                        e,
                        StreamEvent::TextDelta { .. }
                            | StreamEvent::ToolCallStart { .. }
                            | StreamEvent::ToolCallDelta { .. }
                    ) {
                        d.store(true, Ordering::Relaxed);
                    }
                    s(e);
                }) as StreamSink
            });
            req.model = format!("{provider}/{model}");
            let has_fallback = routes
                .fallback
                .iter()
                .any(|f| *f != provider && routes.providers.contains_key(f));
            let cooling = routes
                .providers
                .get(&provider)
                .is_some_and(|e| e.shared.health.cooling());
            let mut err = if cooling && has_fallback {
                LlmError::Transport {
                    provider: provider.clone(),
                    message: format!(
                        "skipped: it failed 3 times in a row; it is tried again {COOLDOWN_SECS} s after its last error"
                    ),
                }
            } else {
                match self
                    .complete_on(&routes, &provider, req.clone(), watched.clone())
                    .await
                {
                    Ok(r) => return Ok(r),
                    Err(e) => e,
                }
            };
            let mut tried = vec![provider.clone()];
            for next in routes.fallback.iter().filter(|f| **f != provider) {
                if delivered.load(Ordering::Relaxed) || !worth_falling_back(&err) {
                    break;
                }
                let Some(e) = routes.providers.get(next) else {
                    continue;
                };
                let Some(m) = e
                    .config
                    .default_model
                    .clone()
                    .or_else(|| (e.config.kind == ProviderKind::Scripted).then(String::new))
                else {
                    continue;
                };
                tracing::warn!(from = %tried.last().map_or("", String::as_str), to = %next, error = %err, "LLM call failed; falling back");
                req.model = format!("{next}/{m}");
                match self
                    .complete_on(&routes, next, req.clone(), watched.clone())
                    .await
                {
                    Ok(r) => return Ok(r),
                    Err(e) => {
                        tried.push(next.clone());
                        err = e;
                    }
                }
            }
            if tried.len() > 1 {
                return Err(LlmError::Config(format!(
                    "every provider failed ({}); the last said: {err}",
                    tried.join(", ")
                )));
            }
            Err(err)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use avix_proto::envelope::Document;

    fn config() -> LlmConfig {
        let text = "apiVersion: avix/v1\nkind: LlmConfig\nspec:\n  defaultProvider: scripted\n  providers:\n    - {name: scripted, kind: scripted, script: scripts/default.yaml}\n    - {name: anthropic, kind: anthropic, apiKeyEnv: AVIX_TEST_NO_SUCH_KEY, models: [m1], defaultModel: m1}\n  aliases: {fast: anthropic/m1}\n";
        Document::<LlmConfig>::parse(text.as_bytes()).unwrap().spec
    }

    fn paths() -> ServicePaths {
        ServicePaths {
            etc: "/etc-root".into(),
            journals: Arc::new(crate::replay::NoJournals),
        }
    }

    #[test]
    fn routes_aliases_providers_and_defaults() {
        let s = LlmService::new(Some(&config()), paths());
        assert_eq!(s.route("fast").unwrap(), ("anthropic".into(), "m1".into()));
        assert_eq!(
            s.route("anthropic").unwrap(),
            ("anthropic".into(), "m1".into())
        );
        assert_eq!(
            s.route("scripted/demo").unwrap(),
            ("scripted".into(), "demo".into())
        );
        assert_eq!(s.route("").unwrap(), ("scripted".into(), "".into()));
        assert_eq!(
            s.route("some-model").unwrap(),
            ("scripted".into(), "some-model".into())
        );
        assert_eq!(
            s.route("replay/abc").unwrap(),
            ("replay".into(), "abc".into())
        );
        let none = LlmService::new(None, paths());
        assert!(
            none.route("x")
                .unwrap_err()
                .to_string()
                .contains("llm.yaml")
        );
    }

    #[test]
    fn resolve_refuses_what_could_never_run() {
        // Issue 13: a model typo was found only when the LLM was called, after a process,
        // a session and a record existed.
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("scripts")).unwrap();
        std::fs::write(d.path().join("scripts/demo.yaml"), "x").unwrap();
        let s = LlmService::new(
            Some(&config()),
            ServicePaths {
                etc: d.path().into(),
                journals: Arc::new(crate::replay::NoJournals),
            },
        );
        assert_eq!(s.resolve("scripted/demo").unwrap().1, "demo");
        assert_eq!(s.resolve("").unwrap().0, "scripted");
        let e = s.resolve("gpt-5").unwrap_err().to_string();
        assert!(
            e.contains("no script \"gpt-5\"") && e.contains("scripts: demo"),
            "{e}"
        );
        let e = s.resolve("nosuch/model").unwrap_err().to_string();
        assert!(
            e.contains("unknown provider \"nosuch\"") && e.contains("anthropic, scripted"),
            "{e}"
        );
        let e = s.resolve("anthropic/m2").unwrap_err().to_string();
        assert!(
            e.contains("does not serve the model \"m2\"") && e.contains("m1"),
            "{e}"
        );
        assert_eq!(
            s.resolve("fast").unwrap(),
            ("anthropic".into(), "m1".into())
        );
    }

    #[tokio::test]
    async fn a_provider_without_its_key_is_unavailable_with_the_reason() {
        let s = LlmService::new(Some(&config()), paths());
        let st = s.status(None);
        let a = st.providers.iter().find(|p| p.name == "anthropic").unwrap();
        assert_eq!(a.health, "unavailable");
        assert!(
            a.problem
                .as_deref()
                .unwrap()
                .contains("AVIX_TEST_NO_SUCH_KEY")
        );
        let req = LlmRequest {
            model: "fast".into(),
            system: String::new(),
            messages: vec![avix_proto::llm::Message::user_text("hi")],
            tools: vec![],
            max_tokens: 10,
            temperature: None,
            meta: RequestMeta::default(),
        };
        let e = s.complete(req, None).await.unwrap_err().to_string();
        assert!(
            e.contains("AVIX_TEST_NO_SUCH_KEY") && e.contains("unavailable"),
            "{e}"
        );
    }
}
