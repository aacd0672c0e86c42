//! Usage accounting: what each call used (tokens, images, characters, audio seconds) and
//! cost where prices are configured, summed per provider, per model and per user since the
//! daemon started, plus each user's tokens over the last 24 hours (the users.yaml quota).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use avix_proto::config::llm::Price;
use avix_proto::llm::Usage;
use avix_proto::time::Timestamp;
use serde::{Deserialize, Serialize};

/// Sums of usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Totals {
    /// Calls that succeeded.
    pub requests: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost in US dollars (calls with configured prices only).
    pub cost_usd: f64,
    /// Images generated.
    #[serde(skip_serializing_if = "is_zero")]
    pub images: u64,
    /// Characters spoken.
    #[serde(skip_serializing_if = "is_zero")]
    pub speech_characters: u64,
    /// Seconds of audio transcribed.
    #[serde(skip_serializing_if = "is_zero_f")]
    pub audio_seconds: f64,
    /// Texts embedded.
    #[serde(skip_serializing_if = "is_zero")]
    pub embedded_inputs: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_zero_f(v: &f64) -> bool {
    *v == 0.0
}

/// What one call used.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CallUsage {
    /// Tokens.
    pub tokens: Usage,
    /// Images generated.
    pub images: u64,
    /// Characters spoken.
    pub speech_characters: u64,
    /// Audio seconds transcribed.
    pub audio_seconds: f64,
    /// Texts embedded.
    pub embedded_inputs: u64,
}

impl Totals {
    fn add(&mut self, u: &CallUsage, cost: Option<f64>) {
        self.requests += 1;
        self.input_tokens += u.tokens.input_tokens;
        self.output_tokens += u.tokens.output_tokens;
        self.cost_usd += cost.unwrap_or(0.0);
        self.images += u.images;
        self.speech_characters += u.speech_characters;
        self.audio_seconds += u.audio_seconds;
        self.embedded_inputs += u.embedded_inputs;
    }
}

/// The cost of `usage` at `price` (per million tokens).
pub fn cost(price: Option<&Price>, usage: Usage) -> Option<f64> {
    price.map(|p| {
        (usage.input_tokens as f64 * p.input + usage.output_tokens as f64 * p.output) / 1e6
    })
}

/// Minutes kept for the rolling 24-hour window.
const DAY_MINUTES: i64 = 24 * 60;

#[derive(Debug, Default)]
struct Book {
    providers: BTreeMap<String, Totals>,
    models: BTreeMap<String, Totals>,
    users: BTreeMap<String, Totals>,
    // Per user: (minute since epoch, tokens) for the last 24 hours.
    days: HashMap<String, VecDeque<(i64, u64)>>,
}

/// The usage ledger.
#[derive(Debug, Default)]
pub struct Ledger {
    book: Mutex<Book>,
}

/// A snapshot of the ledger.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerSnapshot {
    /// Per provider.
    pub providers: BTreeMap<String, Totals>,
    /// Per `provider/model`.
    pub models: BTreeMap<String, Totals>,
    /// Per user.
    pub users: BTreeMap<String, Totals>,
}

fn minute(t: Timestamp) -> i64 {
    t.unix().div_euclid(60)
}

impl Ledger {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a successful call.
    pub fn record(
        &self,
        provider: &str,
        model: &str,
        user: &str,
        u: &CallUsage,
        cost: Option<f64>,
    ) {
        let mut b = self.book();
        b.providers
            .entry(provider.to_owned())
            .or_default()
            .add(u, cost);
        b.models
            .entry(format!("{provider}/{model}"))
            .or_default()
            .add(u, cost);
        if !user.is_empty() {
            b.users.entry(user.to_owned()).or_default().add(u, cost);
            let tokens = u.tokens.total();
            if tokens > 0 {
                add_day(&mut b, user, Timestamp::now(), tokens);
            }
        }
    }

    /// Records a failed call.
    pub fn record_error(&self, provider: &str, user: &str) {
        let mut b = self.book();
        b.providers.entry(provider.to_owned()).or_default().errors += 1;
        if !user.is_empty() {
            b.users.entry(user.to_owned()).or_default().errors += 1;
        }
    }

    /// Counts tokens a user spent before this daemon started (from invocation records), so
    /// the 24-hour quota survives a restart.
    pub fn seed_user_tokens(&self, user: &str, at: Timestamp, tokens: u64) {
        if tokens > 0 {
            add_day(&mut self.book(), user, at, tokens);
        }
    }

    /// A user's tokens over the last 24 hours.
    pub fn user_tokens_last_day(&self, user: &str) -> u64 {
        let mut b = self.book();
        let now = minute(Timestamp::now());
        let Some(d) = b.days.get_mut(user) else {
            return 0;
        };
        while d.front().is_some_and(|(m, _)| now - m >= DAY_MINUTES) {
            d.pop_front();
        }
        d.iter().map(|(_, t)| t).sum()
    }

    /// The sums so far.
    pub fn snapshot(&self) -> LedgerSnapshot {
        let b = self.book();
        LedgerSnapshot {
            providers: b.providers.clone(),
            models: b.models.clone(),
            users: b.users.clone(),
        }
    }
}

fn add_day(b: &mut Book, user: &str, at: Timestamp, tokens: u64) {
    let m = minute(at);
    if minute(Timestamp::now()) - m >= DAY_MINUTES {
        return;
    }
    let d = b.days.entry(user.to_owned()).or_default();
    match d.iter_mut().rev().find(|(x, _)| *x == m) {
        Some(e) => e.1 += tokens,
        None => {
            // Seeds may arrive out of order; keep the deque sorted by minute.
            let pos = d.iter().position(|(x, _)| *x > m).unwrap_or(d.len());
            d.insert(pos, (m, tokens));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_per_provider_model_and_user_with_cost() {
        let l = Ledger::default();
        let price = Price {
            input: 3.0,
            output: 15.0,
        };
        let u = CallUsage {
            tokens: Usage {
                input_tokens: 1_000_000,
                output_tokens: 100_000,
            },
            ..CallUsage::default()
        };
        let c = cost(Some(&price), u.tokens);
        assert!((c.unwrap() - 4.5).abs() < 1e-9);
        l.record("anthropic", "sonnet", "alice", &u, c);
        l.record("anthropic", "sonnet", "bob", &u, c);
        l.record_error("anthropic", "bob");
        let s = l.snapshot();
        assert_eq!(s.providers["anthropic"].requests, 2);
        assert_eq!(s.providers["anthropic"].errors, 1);
        assert!((s.models["anthropic/sonnet"].cost_usd - 9.0).abs() < 1e-9);
        assert_eq!(s.users["alice"].input_tokens, 1_000_000);
        assert_eq!(l.user_tokens_last_day("alice"), 1_100_000);
        let old = Timestamp::from_unix(Timestamp::now().unix() - 25 * 3600);
        l.seed_user_tokens("carol", old, 50);
        l.seed_user_tokens(
            "carol",
            Timestamp::from_unix(Timestamp::now().unix() - 3600),
            70,
        );
        assert_eq!(l.user_tokens_last_day("carol"), 70);
    }
}
