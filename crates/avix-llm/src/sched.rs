//! The scheduler in front of each provider: a [`Gate`] admits a request when the provider's
//! limits allow it (requests in flight, requests per minute, tokens per minute) and queues it
//! otherwise. Queued requests are admitted by priority (the agent's, raised by one step for
//! every 10 s of waiting so nothing starves), then fair share (the user with the fewest
//! requests in flight on this provider first), then arrival order.
//!
//! A request that gives up while queued (its agent was paused or killed) leaves the queue;
//! a [`Permit`] returns its slot when dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use avix_proto::config::llm::ProviderLimits;
use tokio::sync::oneshot;

/// The window rate limits are counted over.
const WINDOW: Duration = Duration::from_secs(60);
/// Waiting this long raises a request's priority by one step.
const AGING: Duration = Duration::from_secs(10);

struct Waiter {
    id: u64,
    user: Arc<str>,
    priority: u8,
    tokens: u64,
    since: Instant,
    tx: oneshot::Sender<Instant>,
}

/// Waiting requests: per priority level, per user, in arrival order. Picking the next is
/// O(levels × users), not O(waiting).
#[derive(Default)]
struct Queue {
    levels: [HashMap<Arc<str>, VecDeque<Waiter>>; 10],
    len: usize,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, w: Waiter) {
        let level = usize::from(w.priority.min(9));
        self.levels[level]
            .entry(w.user.clone())
            .or_default()
            .push_back(w);
        self.len += 1;
    }

    fn remove(&mut self, priority: u8, user: &Arc<str>, id: u64) -> bool {
        let level = &mut self.levels[usize::from(priority.min(9))];
        let Some(q) = level.get_mut(user) else {
            return false;
        };
        let Some(i) = q.iter().position(|w| w.id == id) else {
            return false;
        };
        q.remove(i);
        if q.is_empty() {
            level.remove(user);
        }
        self.len -= 1;
        true
    }

    fn oldest(&self) -> Option<Instant> {
        self.levels
            .iter()
            .flat_map(|l| l.values())
            .filter_map(|q| q.front().map(|w| w.since))
            .min()
    }

    /// The next to admit: the level whose oldest request has the highest aged priority
    /// (ties: the higher level); in it, the user with the fewest requests in flight (ties:
    /// the earliest).
    fn pick(&self, by_user: &HashMap<Arc<str>, u32>, now: Instant) -> Option<(usize, Arc<str>)> {
        let mut best_level = None;
        let mut best_key = (0u64, 0usize);
        for (i, l) in self.levels.iter().enumerate() {
            let Some(since) = l.values().filter_map(|q| q.front().map(|w| w.since)).min() else {
                continue;
            };
            let aged = i as u64
                + u64::try_from(now.duration_since(since).as_millis() / AGING.as_millis())
                    .unwrap_or(u64::MAX);
            if best_level.is_none() || (aged, i) > best_key {
                best_key = (aged, i);
                best_level = Some(i);
            }
        }
        let level = best_level?;
        let user = self.levels[level]
            .iter()
            .filter_map(|(u, q)| q.front().map(|w| (u, w.id)))
            .min_by_key(|(u, id)| (by_user.get(*u).copied().unwrap_or(0), *id))
            .map(|(u, _)| u.clone())?;
        Some((level, user))
    }

    fn peek(&self, level: usize, user: &Arc<str>) -> Option<&Waiter> {
        self.levels[level].get(user).and_then(VecDeque::front)
    }

    fn pop(&mut self, level: usize, user: &Arc<str>) -> Option<Waiter> {
        let l = &mut self.levels[level];
        let q = l.get_mut(user)?;
        let w = q.pop_front();
        if q.is_empty() {
            l.remove(user);
        }
        if w.is_some() {
            self.len -= 1;
        }
        w
    }
}

#[derive(Default)]
struct State {
    limits: ProviderLimits,
    in_flight: u32,
    by_user: HashMap<Arc<str>, u32>,
    // Admissions in the last minute: when, and the tokens counted for them.
    window: VecDeque<(Instant, u64)>,
    window_tokens: u64,
    waiting: Queue,
    next_id: u64,
    timer: Option<Instant>,
    admitted: u64,
    queued: u64,
    waited: Duration,
    longest_wait: Duration,
}

/// What the queue looks like now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GateStatus {
    /// Requests admitted and not yet finished.
    pub in_flight: u32,
    /// Requests waiting.
    pub queued: usize,
    /// How long the oldest waiting request has waited.
    pub oldest_wait: Duration,
    /// Requests admitted since start.
    pub admitted: u64,
    /// Of those, how many had to wait.
    pub waited_requests: u64,
    /// Total time requests spent waiting.
    pub total_wait: Duration,
    /// Longest wait so far.
    pub longest_wait: Duration,
    /// Requests admitted in the last minute.
    pub last_minute_requests: usize,
    /// Tokens counted in the last minute.
    pub last_minute_tokens: u64,
}

/// One provider's admission control.
pub struct Gate {
    state: Mutex<State>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("status", &self.status())
            .finish()
    }
}

/// A slot on a provider, returned when dropped.
pub struct Permit {
    gate: Arc<Gate>,
    user: Arc<str>,
    at: Instant,
    tokens: u64,
    /// How long the request waited in the queue.
    pub queued: Duration,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Permit({}, queued {:?})", self.user, self.queued)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut s = self.gate.lock();
        release(&mut s, &self.user);
        self.gate.dispatch(&mut s);
    }
}

impl Permit {
    /// Corrects the tokens counted for this request once the real usage is known.
    pub fn settle_tokens(&mut self, actual: u64) {
        let mut s = self.gate.lock();
        let (at, est) = (self.at, self.tokens);
        if let Some(e) = s.window.iter_mut().find(|(t, n)| *t == at && *n == est) {
            e.1 = actual;
            s.window_tokens = s.window_tokens - est + actual;
            self.tokens = actual;
        }
    }
}

fn release(s: &mut State, user: &Arc<str>) {
    s.in_flight = s.in_flight.saturating_sub(1);
    if let Some(n) = s.by_user.get_mut(user) {
        *n -= 1;
        if *n == 0 {
            s.by_user.remove(user);
        }
    }
}

struct WaitGuard {
    gate: Arc<Gate>,
    id: u64,
    priority: u8,
    user: Arc<str>,
    done: bool,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut s = self.gate.lock();
        if !s.waiting.remove(self.priority, &self.user, self.id) {
            // Admitted just as the caller gave up: give the slot back.
            release(&mut s, &self.user);
            self.gate.dispatch(&mut s);
        }
    }
}

impl Gate {
    /// A gate with these limits.
    pub fn new(limits: ProviderLimits) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                limits,
                ..State::default()
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes the limits (hot reload); waiting requests are re-examined.
    pub fn set_limits(self: &Arc<Self>, limits: ProviderLimits) {
        let mut s = self.lock();
        s.limits = limits;
        self.dispatch(&mut s);
    }

    /// The queue now.
    pub fn status(&self) -> GateStatus {
        let mut s = self.lock();
        prune(&mut s, Instant::now());
        let now = Instant::now();
        GateStatus {
            in_flight: s.in_flight,
            queued: s.waiting.len,
            oldest_wait: s.waiting.oldest().map(|t| now - t).unwrap_or_default(),
            admitted: s.admitted,
            waited_requests: s.queued,
            total_wait: s.waited,
            longest_wait: s.longest_wait,
            last_minute_requests: s.window.len(),
            last_minute_tokens: s.window_tokens,
        }
    }

    /// Waits for a slot. `tokens` is the estimate counted against tokens-per-minute.
    /// `on_queued` is called (with the queue position) if the request has to wait.
    pub async fn acquire(
        self: &Arc<Self>,
        user: &str,
        priority: u8,
        tokens: u64,
        on_queued: impl FnOnce(usize),
    ) -> Permit {
        let user: Arc<str> = Arc::from(user);
        let since = Instant::now();
        let (rx, id, position) = {
            let mut s = self.lock();
            if s.waiting.is_empty() && Self::room(&mut s, tokens, since).is_ok() {
                admit(&mut s, &user, tokens, since);
                return Permit {
                    gate: self.clone(),
                    user,
                    at: since,
                    tokens,
                    queued: Duration::ZERO,
                };
            }
            let (tx, rx) = oneshot::channel();
            let id = s.next_id;
            s.next_id += 1;
            s.waiting.push(Waiter {
                id,
                user: user.clone(),
                priority,
                tokens,
                since,
                tx,
            });
            // Someone may be admissible already (e.g. we were only behind the queue).
            self.dispatch(&mut s);
            (rx, id, s.waiting.len)
        };
        let mut guard = WaitGuard {
            gate: self.clone(),
            id,
            priority,
            user: user.clone(),
            done: false,
        };
        if position > 0 {
            on_queued(position);
        }
        // The sender lives in the queue until it is used, and the gate outlives its queue.
        let at = rx.await.unwrap_or_else(|_| Instant::now());
        guard.done = true;
        let queued = since.elapsed();
        {
            let mut s = self.lock();
            s.queued += 1;
            s.waited += queued;
            s.longest_wait = s.longest_wait.max(queued);
        }
        Permit {
            gate: self.clone(),
            user,
            at,
            tokens,
            queued,
        }
    }

    fn room(s: &mut State, tokens: u64, now: Instant) -> Result<(), Instant> {
        prune(s, now);
        let l = s.limits;
        if l.concurrency.is_some_and(|c| s.in_flight >= c) {
            // A release will dispatch; no timer needed.
            return Err(now + Duration::from_secs(3600));
        }
        let oldest = s.window.front().map(|(t, _)| *t + WINDOW);
        if l.requests_per_minute
            .is_some_and(|r| s.window.len() >= r as usize)
        {
            return Err(oldest.unwrap_or(now));
        }
        if let Some(tpm) = l.tokens_per_minute
            && !s.window.is_empty()
            && s.window_tokens + tokens > tpm
        {
            return Err(oldest.unwrap_or(now));
        }
        Ok(())
    }

    /// Admits waiting requests while there is room; arms a timer when a rate limit is what
    /// holds them back.
    fn dispatch(self: &Arc<Self>, s: &mut State) {
        let now = Instant::now();
        while let Some((level, user)) = s.waiting.pick(&s.by_user, now) {
            let tokens = s.waiting.peek(level, &user).map_or(0, |w| w.tokens);
            match Self::room(s, tokens, now) {
                Ok(()) => {
                    let Some(w) = s.waiting.pop(level, &user) else {
                        return;
                    };
                    admit(s, &w.user, w.tokens, now);
                    // If the receiver is already gone, its wait guard has not run yet (it
                    // would have removed the waiter); it will find the waiter admitted and
                    // give the slot back.
                    let _ = w.tx.send(now);
                }
                Err(at) => {
                    if at < now + Duration::from_secs(3600) && s.timer.is_none_or(|t| at < t) {
                        s.timer = Some(at);
                        let gate = self.clone();
                        // Outside a runtime (a Drop on a plain thread) there is no timer;
                        // the next release or arrival dispatches instead.
                        if let Ok(h) = tokio::runtime::Handle::try_current() {
                            h.spawn(async move {
                                tokio::time::sleep_until(at).await;
                                let mut s = gate.lock();
                                if s.timer == Some(at) {
                                    s.timer = None;
                                }
                                gate.dispatch(&mut s);
                            });
                        }
                    }
                    return;
                }
            }
        }
    }
}

fn prune(s: &mut State, now: Instant) {
    while let Some(&(t, tokens)) = s.window.front() {
        if now.duration_since(t) < WINDOW {
            break;
        }
        s.window.pop_front();
        s.window_tokens -= tokens;
    }
}

fn admit(s: &mut State, user: &Arc<str>, tokens: u64, now: Instant) {
    s.in_flight += 1;
    *s.by_user.entry(user.clone()).or_default() += 1;
    s.window.push_back((now, tokens));
    s.window_tokens += tokens;
    s.admitted += 1;
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use super::*;

    fn limits(c: Option<u32>, rpm: Option<u32>, tpm: Option<u64>) -> ProviderLimits {
        ProviderLimits {
            concurrency: c,
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
        }
    }

    #[tokio::test]
    async fn concurrency_queues_and_releases_in_priority_then_fair_order() {
        let g = Gate::new(limits(Some(1), None, None));
        let first = g.acquire("alice", 5, 0, |_| {}).await;
        let order = Arc::new(StdMutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // alice (again) and bob at the same priority, carol higher.
        for (user, prio) in [("alice", 5u8), ("bob", 5), ("carol", 7)] {
            let g = g.clone();
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                let p = g.acquire(user, prio, 0, |_| {}).await;
                order.lock().unwrap().push(user);
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(p);
            }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(g.status().queued, 3);
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        // carol by priority; then bob before alice? Both have none in flight at that
        // point, so arrival order decides: alice, then bob.
        assert_eq!(*order.lock().unwrap(), ["carol", "alice", "bob"]);
        let s = g.status();
        assert_eq!(
            (s.in_flight, s.queued, s.admitted, s.waited_requests),
            (0, 0, 4, 3)
        );
    }

    #[tokio::test]
    async fn fair_share_prefers_the_user_with_less_in_flight() {
        let g = Gate::new(limits(Some(2), None, None));
        let a1 = g.acquire("alice", 5, 0, |_| {}).await;
        let b1 = g.acquire("bob", 5, 0, |_| {}).await;
        let ga = g.clone();
        let alice = tokio::spawn(async move { ga.acquire("alice", 5, 0, |_| {}).await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let gb = g.clone();
        let carol = tokio::spawn(async move { gb.acquire("carol", 5, 0, |_| {}).await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        // bob finishes: alice still has one in flight, carol none, so carol goes first.
        drop(b1);
        let c = carol.await.unwrap();
        assert!(!alice.is_finished());
        drop(a1);
        let a = alice.await.unwrap();
        drop((a, c));
    }

    #[tokio::test(start_paused = true)]
    async fn requests_per_minute_hold_the_rest_until_the_window_moves() {
        let g = Gate::new(limits(None, Some(2), None));
        let _a = g.acquire("u", 5, 0, |_| {}).await;
        let _b = g.acquire("u", 5, 0, |_| {}).await;
        let queued_at = Arc::new(StdMutex::new(None));
        let q = queued_at.clone();
        let started = tokio::time::Instant::now();
        let p = g
            .acquire("u", 5, 0, move |pos| *q.lock().unwrap() = Some(pos))
            .await;
        assert_eq!(*queued_at.lock().unwrap(), Some(1));
        assert!(
            started.elapsed() >= Duration::from_secs(59),
            "{:?}",
            started.elapsed()
        );
        assert!(p.queued >= Duration::from_secs(59));
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_per_minute_count_estimates_and_settle_to_actuals() {
        let g = Gate::new(limits(None, None, Some(1000)));
        let mut a = g.acquire("u", 5, 800, |_| {}).await;
        a.settle_tokens(100);
        // 100 + 800 fits now that the first settled at 100.
        let b = g.acquire("u", 5, 800, |_| {}).await;
        assert_eq!(b.queued, Duration::ZERO);
        let started = tokio::time::Instant::now();
        let c = g.acquire("u", 5, 500, |_| {}).await;
        assert!(started.elapsed() >= Duration::from_secs(59));
        drop((a, b, c));
        // A single request larger than the whole budget still goes when the window is empty.
        tokio::time::sleep(Duration::from_secs(61)).await;
        let d = g.acquire("u", 5, 5000, |_| {}).await;
        assert_eq!(d.queued, Duration::ZERO);
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_leaves_the_queue() {
        let g = Gate::new(limits(Some(1), None, None));
        let a = g.acquire("u", 5, 0, |_| {}).await;
        let g2 = g.clone();
        let waiting = tokio::spawn(async move { g2.acquire("u", 5, 0, |_| {}).await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(g.status().queued, 1);
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(g.status().queued, 0);
        drop(a);
        assert_eq!(g.status().in_flight, 0);
        let _b = g.acquire("u", 5, 0, |_| {}).await;
        assert_eq!(g.status().in_flight, 1);
    }
}
