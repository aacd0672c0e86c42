//! Pipes between agents: ordered text messages, both ways, between two processes of one
//! user. A pipe closes when either end exits; a reader then gets `closed`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::pid::Pid;

/// Messages queued per direction before writes fail (backpressure as an error the model
/// can react to).
pub const PIPE_CAPACITY: usize = 256;

struct Pipe {
    ends: [Pid; 2],
    // queues[i]: messages waiting for ends[i] to read.
    queues: Mutex<[VecDeque<String>; 2]>,
    notify: Notify,
    closed: AtomicBool,
}

/// A pipe error: (code, message).
pub type PipeError = (&'static str, String);

/// All pipes.
#[derive(Default)]
pub struct Pipes {
    map: Mutex<HashMap<String, Arc<Pipe>>>,
    next: AtomicU64,
}

impl std::fmt::Debug for Pipes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pipes")
    }
}

impl Pipes {
    /// Opens a pipe between `a` and `b`.
    pub fn open(&self, a: Pid, b: Pid) -> String {
        let id = format!("p{}", self.next.fetch_add(1, Ordering::Relaxed) + 1);
        let pipe = Arc::new(Pipe {
            ends: [a, b],
            queues: Mutex::new([VecDeque::new(), VecDeque::new()]),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
        });
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.clone(), pipe);
        id
    }

    fn get(&self, id: &str, pid: Pid) -> Result<(Arc<Pipe>, usize), PipeError> {
        let pipe = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
            .ok_or_else(|| ("ENOENT", format!("no pipe {id}")))?;
        let end = pipe
            .ends
            .iter()
            .position(|e| *e == pid)
            .ok_or_else(|| ("EPERM", format!("pipe {id} does not belong to this agent")))?;
        Ok((pipe, end))
    }

    /// Writes a message from `pid` to the other end; returns how many are queued there.
    pub fn write(&self, id: &str, pid: Pid, text: String) -> Result<usize, PipeError> {
        let (pipe, end) = self.get(id, pid)?;
        if pipe.closed.load(Ordering::Acquire) {
            return Err((
                "EPIPE",
                format!("pipe {id} is closed: the other agent has exited"),
            ));
        }
        let mut q = pipe
            .queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let other = &mut q[1 - end];
        if other.len() >= PIPE_CAPACITY {
            return Err((
                "EAGAIN",
                format!("pipe {id} is full ({PIPE_CAPACITY} unread messages); try later"),
            ));
        }
        other.push_back(text);
        let n = other.len();
        drop(q);
        pipe.notify.notify_waiters();
        Ok(n)
    }

    /// Reads the next message for `pid`; `None` once the pipe is closed and drained.
    pub async fn read(
        &self,
        id: &str,
        pid: Pid,
        timeout: Option<Duration>,
    ) -> Result<Option<String>, PipeError> {
        let (pipe, end) = self.get(id, pid)?;
        let wait = async {
            loop {
                let notified = pipe.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(m) = pipe
                    .queues
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)[end]
                    .pop_front()
                {
                    return Some(m);
                }
                if pipe.closed.load(Ordering::Acquire) {
                    return None;
                }
                notified.await;
            }
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, wait).await.map_err(|_| {
                (
                    "ETIMEDOUT",
                    format!("no message on pipe {id} within {}s", t.as_secs()),
                )
            }),
            None => Ok(wait.await),
        }
    }

    /// Closes every pipe of an exited process.
    pub fn close_for(&self, pid: Pid) {
        let map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for p in map.values().filter(|p| p.ends.contains(&pid)) {
            p.closed.store(true, Ordering::Release);
            p.notify.notify_waiters();
        }
    }

    /// Drops the pipes of a reaped process.
    pub fn forget(&self, pid: Pid) {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, p| !p.ends.contains(&pid));
    }
}

/// Jobs: long-running work an agent started and can wait for with `job/watch` (today,
/// sub-agents started without waiting).
#[derive(Debug, Default)]
pub struct Jobs {
    // job id -> (owner pid, target pid)
    map: Mutex<HashMap<String, (Pid, Pid)>>,
}

impl Jobs {
    /// Records a sub-agent job.
    pub fn add_agent(&self, owner: Pid, target: Pid) -> String {
        let id = format!("job-{target}");
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.clone(), (owner, target));
        id
    }

    /// The process a job of `owner` runs.
    pub fn target(&self, id: &str, owner: Pid) -> Option<Pid> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .filter(|(o, _)| *o == owner)
            .map(|(_, t)| *t)
    }

    /// Drops the jobs of a reaped process.
    pub fn forget(&self, pid: Pid) {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, (o, t)| *o != pid && *t != pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_flow_both_ways_and_close() {
        let pipes = Pipes::default();
        let id = pipes.open(Pid::new(1), Pid::new(2));
        pipes.write(&id, Pid::new(1), "hello".into()).unwrap();
        assert_eq!(
            pipes.read(&id, Pid::new(2), None).await.unwrap().as_deref(),
            Some("hello")
        );
        assert!(
            pipes
                .read(&id, Pid::new(1), Some(Duration::from_millis(20)))
                .await
                .is_err(),
            "nothing for 1"
        );
        assert_eq!(
            pipes.write(&id, Pid::new(3), "x".into()).unwrap_err().0,
            "EPERM"
        );
        pipes.close_for(Pid::new(2));
        assert_eq!(pipes.read(&id, Pid::new(1), None).await.unwrap(), None);
        assert_eq!(
            pipes.write(&id, Pid::new(1), "x".into()).unwrap_err().0,
            "EPIPE"
        );
    }
}
