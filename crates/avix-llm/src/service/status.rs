//! What `/proc/services/llm/status.yaml` shows.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use avix_proto::config::llm::{Modality, ProviderKind, ProviderLimits};
use avix_proto::time::Timestamp;
use serde::{Deserialize, Serialize};

use crate::usage::Totals;

use super::LlmService;

impl LlmService {
    /// What `/proc/services/llm/status.yaml` shows. `user`: whose usage to include (`None`:
    /// everyone's, for operators).
    pub fn status(&self, user: Option<&str>) -> ServiceStatus {
        let routes = self.routes();
        let ledger = self.ledger.snapshot();
        let providers = routes
            .providers
            .values()
            .map(|e| {
                let g = e.shared.gate.status();
                let (last_ok, last_error) = e.shared.health.lock().clone();
                ProviderStatus {
                    name: e.config.name.clone(),
                    kind: e.config.kind,
                    base_url: e.config.base_url().map(str::to_owned),
                    modalities: Modality::ALL
                        .iter()
                        .filter(|m| e.config.serves(**m))
                        .map(|m| m.as_str().to_owned())
                        .collect(),
                    default_model: e.config.default_model.clone(),
                    health: if e.problem.is_some() {
                        "unavailable"
                    } else {
                        e.shared.health.state()
                    }
                    .to_owned(),
                    problem: e.problem.clone(),
                    last_ok_at: last_ok,
                    last_error: last_error.as_ref().map(|(_, m)| m.clone()),
                    last_error_at: last_error.map(|(t, _)| t),
                    in_flight: g.in_flight,
                    queued: g.queued,
                    oldest_wait_ms: avix_proto::time::ms(g.oldest_wait),
                    average_wait_ms: if g.waited_requests == 0 {
                        0
                    } else {
                        u64::try_from(g.total_wait.as_millis() / u128::from(g.waited_requests))
                            .unwrap_or(u64::MAX)
                    },
                    longest_wait_ms: avix_proto::time::ms(g.longest_wait),
                    waited_requests: g.waited_requests,
                    last_minute_requests: g.last_minute_requests,
                    last_minute_tokens: g.last_minute_tokens,
                    limits: e.config.limits,
                    retries: e.shared.http.retries.load(Ordering::Relaxed),
                    usage: ledger
                        .providers
                        .get(&e.config.name)
                        .copied()
                        .unwrap_or_default(),
                }
            })
            .collect();
        let mut totals = Totals::default();
        for t in ledger.providers.values() {
            totals.requests += t.requests;
            totals.errors += t.errors;
            totals.input_tokens += t.input_tokens;
            totals.output_tokens += t.output_tokens;
            totals.cost_usd += t.cost_usd;
        }
        let users = ledger
            .users
            .into_iter()
            .filter(|(u, _)| user.is_none_or(|w| w == u))
            .collect();
        let mut defaults: BTreeMap<String, String> = routes
            .defaults
            .iter()
            .map(|(m, p)| (m.as_str().to_owned(), p.clone()))
            .collect();
        if let Some(t) = &routes.default_text {
            defaults.insert("text".into(), t.clone());
        }
        ServiceStatus {
            providers,
            defaults,
            aliases: routes.aliases.clone().into_iter().collect(),
            fallback: routes.fallback.clone(),
            totals,
            users,
        }
    }
}

/// `/proc/services/llm/status.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// Each provider.
    pub providers: Vec<ProviderStatus>,
    /// Default provider per modality.
    pub defaults: BTreeMap<String, String>,
    /// Model aliases.
    pub aliases: BTreeMap<String, String>,
    /// Fallback order.
    pub fallback: Vec<String>,
    /// All calls since start.
    pub totals: Totals,
    /// Usage per user since start (only the reader's own, unless an operator reads).
    pub users: BTreeMap<String, Totals>,
}

impl avix_proto::Kind for ServiceStatus {
    const KIND: &'static str = "LlmStatus";
}

/// One provider in the status.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderStatus {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: ProviderKind,
    /// Base URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// What it serves.
    pub modalities: Vec<String>,
    /// Default text model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_model: Option<String>,
    /// `untried` (no call yet), `ok`, `degraded` (recent failures), `down` (3 or more in a
    /// row), `unavailable` (misconfigured).
    pub health: String,
    /// Why it is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Last success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_ok_at: Option<Timestamp>,
    /// Last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<Timestamp>,
    /// Calls in flight.
    pub in_flight: u32,
    /// Calls waiting.
    pub queued: usize,
    /// Wait of the oldest waiting call.
    pub oldest_wait_ms: u64,
    /// Average wait of calls that waited.
    pub average_wait_ms: u64,
    /// Longest wait.
    pub longest_wait_ms: u64,
    /// Calls that had to wait.
    pub waited_requests: u64,
    /// Calls admitted in the last minute.
    pub last_minute_requests: usize,
    /// Tokens counted in the last minute.
    pub last_minute_tokens: u64,
    /// Configured limits.
    pub limits: ProviderLimits,
    /// Retries made.
    pub retries: u64,
    /// Usage since start.
    pub usage: Totals,
}
