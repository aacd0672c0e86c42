//! The kernel's event bus: agent lifecycle, output chunks, tool calls and results, HIL
//! requests and answers, session changes, log lines. Every event has a global sequence
//! number and is kept in a ring of the last [`RING`] events, so a door can replay what a
//! client missed (`subscribe` with `sinceSeq`) or what a slow subscriber lagged behind on.

use crate::pid::Pid;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use avix_proto::event::EventName;
use avix_proto::time::Timestamp;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::process::Process;

/// Events a subscriber may fall behind by before it must recover from the ring.
pub const CAPACITY: usize = 4096;
/// Events kept for replay.
pub const RING: usize = 8192;

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Global sequence number, from 1.
    pub seq: u64,
    /// When.
    pub ts: Timestamp,
    /// What.
    pub event: EventName,
    /// The process concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<Pid>,
    /// Its owner (for per-user filtering).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Details.
    pub body: serde_json::Value,
    /// The event as a door writes it, computed once for every subscriber.
    #[serde(skip)]
    pub wire: OnceLock<String>,
}

/// The bus.
#[derive(Debug)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
    // The sequence is assigned under this lock, so the ring is always in order.
    ring: Mutex<VecDeque<Arc<Event>>>,
    seq: AtomicU64,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(CAPACITY).0,
            ring: Mutex::new(VecDeque::with_capacity(RING)),
            seq: AtomicU64::new(0),
        }
    }
}

impl EventBus {
    /// Publishes an event.
    pub fn emit(
        &self,
        event: EventName,
        pid: Option<Pid>,
        user: Option<String>,
        body: serde_json::Value,
    ) {
        let mut ring = self
            .ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let e = Arc::new(Event {
            seq,
            ts: Timestamp::now(),
            event,
            pid,
            user,
            body,
            wire: OnceLock::new(),
        });
        if ring.len() == RING {
            ring.pop_front();
        }
        ring.push_back(e.clone());
        // Sent under the lock too, so subscribers see events in sequence order.
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(e);
        }
    }

    /// The buffered events after `seq`, oldest first, and whether the ring still reaches
    /// back to `seq + 1` (if not, events between were lost to the ring's size).
    pub fn since(&self, seq: u64) -> (Vec<Arc<Event>>, bool) {
        let ring = self
            .ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let complete = ring.front().is_none_or(|e| e.seq <= seq + 1);
        let start = ring.partition_point(|e| e.seq <= seq);
        (ring.range(start..).cloned().collect(), complete)
    }

    /// Publishes a typed event about a process.
    pub fn publish<T: avix_proto::event::EventBody>(&self, p: &Process, body: &T) {
        // The body types are plain data with string keys: serializing cannot fail.
        let body = serde_json::to_value(body).unwrap_or_default();
        self.emit_process(p, T::NAME, body);
    }

    /// Publishes a typed event that is about no process: to `user`'s connections (and
    /// operators'), or to everyone when `user` is `None`.
    pub fn publish_to<T: avix_proto::event::EventBody>(&self, user: Option<&str>, body: &T) {
        let body = serde_json::to_value(body).unwrap_or_default();
        self.emit(T::NAME, None, user.map(str::to_owned), body);
    }

    /// Publishes an event about a process.
    pub fn emit_process(&self, p: &Process, event: EventName, body: serde_json::Value) {
        self.emit(event, Some(p.pid), Some(p.user.to_string()), body);
    }

    /// Subscribes to events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        // Under the ring lock: no event is both missed by the receiver and newer than a
        // ring snapshot taken after this returns.
        let _ring = self
            .ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.tx.subscribe()
    }

    /// Subscribes, and says the last sequence number before the subscription: the receiver
    /// gets every event after it.
    pub fn subscribe_at(&self) -> (broadcast::Receiver<Arc<Event>>, u64) {
        let _ring = self
            .ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (self.tx.subscribe(), self.seq.load(Ordering::Relaxed))
    }

    /// The last sequence number handed out.
    pub fn last_seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_replays_after_a_sequence_and_says_when_it_cannot() {
        let bus = EventBus::default();
        for i in 0..10 {
            bus.emit(
                EventName::AgentStatus,
                Some(Pid::new(i)),
                None,
                serde_json::Value::Null,
            );
        }
        let (after, complete) = bus.since(7);
        assert!(complete);
        assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), [8, 9, 10]);
        for _ in 0..RING {
            bus.emit(EventName::ToolChanged, None, None, serde_json::Value::Null);
        }
        let (after, complete) = bus.since(3);
        assert!(!complete);
        assert_eq!(after.len(), RING);
        assert_eq!(bus.since(bus.last_seq()).0.len(), 0);
    }
}
