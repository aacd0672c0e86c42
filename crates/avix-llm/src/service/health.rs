//! A provider's recent health, from the outcome of its calls: a provider that is down is
//! skipped for a while in favour of the fallbacks.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use avix_proto::time::Timestamp;

use crate::LlmError;

/// How long a provider that is down is skipped in favour of the fallbacks.
pub(super) const COOLDOWN_SECS: i64 = 30;

/// The last success, and the last error with its time.
pub(super) type LastOutcomes = (Option<Timestamp>, Option<(Timestamp, String)>);

/// A provider's recent health, from the outcome of its calls.
#[derive(Debug, Default)]
pub(super) struct Health {
    failures: AtomicU32,
    last: Mutex<LastOutcomes>,
}

impl Health {
    pub(super) fn ok(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.lock().0 = Some(Timestamp::now());
    }

    pub(super) fn failed(&self, e: &LlmError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.lock().1 = Some((Timestamp::now(), e.to_string()));
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, LastOutcomes> {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Down (3 failures in a row) and the last one recent: worth skipping for a while when
    /// there is a fallback.
    pub(super) fn cooling(&self) -> bool {
        self.failures.load(Ordering::Relaxed) >= 3
            && self
                .lock()
                .1
                .as_ref()
                .is_some_and(|(t, _)| Timestamp::now().unix() - t.unix() < COOLDOWN_SECS)
    }

    pub(super) fn state(&self) -> &'static str {
        match self.failures.load(Ordering::Relaxed) {
            0 if self.lock().0.is_none() => "untried",
            0 => "ok",
            1 | 2 => "degraded",
            _ => "down",
        }
    }
}
