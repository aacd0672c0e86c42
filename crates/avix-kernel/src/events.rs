//! The kernel's event bus: agent lifecycle, output chunks, tool calls and results, HIL
//! requests and answers. Every event has a global sequence number. Doors (ATP, `avix server
//! run`) subscribe; with no subscriber an event costs a counter increment.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use avix_proto::time::Timestamp;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::process::Process;

/// Events kept for slow subscribers before they see a gap.
pub const CAPACITY: usize = 4096;

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Global sequence number, from 1.
    pub seq: u64,
    /// When.
    pub ts: Timestamp,
    /// What (`agent.spawned`, `agent.status`, `agent.output.chunk`, …).
    pub event: String,
    /// The process concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u64>,
    /// Its owner (for per-user filtering).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Details.
    pub body: serde_json::Value,
}

/// The bus.
#[derive(Debug)]
pub struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
    seq: AtomicU64,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(CAPACITY).0,
            seq: AtomicU64::new(0),
        }
    }
}

impl EventBus {
    /// Publishes an event.
    pub fn emit(
        &self,
        event: &str,
        pid: Option<u64>,
        user: Option<String>,
        body: serde_json::Value,
    ) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        if self.tx.receiver_count() == 0 {
            return;
        }
        let _ = self.tx.send(Arc::new(Event {
            seq,
            ts: Timestamp::now(),
            event: event.to_owned(),
            pid,
            user,
            body,
        }));
    }

    /// Publishes an event about a process.
    pub fn emit_process(&self, p: &Process, event: &str, body: serde_json::Value) {
        self.emit(event, Some(p.pid), Some(p.user.to_string()), body);
    }

    /// Subscribes to events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// The last sequence number handed out.
    pub fn last_seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }
}
