//! Processes: the process table, each process's live state, grants and signal channel.
//!
//! The executor ([`crate::executor`]) owns a process's conversation and runs its turns; this
//! module holds what others may look at or poke: state for `status.yaml`, the grant table,
//! the signal sender, the kill switch and the exit notification.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use avix_proto::agent::{ProcState, ProcessStatus, Resolved};
use avix_proto::llm::Usage;
use avix_proto::time::Timestamp;
use avix_proto::{AgentName, UserName};
use avix_vfs::Caller;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::journal::Journal;
use crate::pid::Pid;
use crate::tools::ALWAYS_PRESENT;

/// A signal, as the executor receives it. See docs/agents.md for where each one lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// SIGPAUSE: stop consuming; an LLM call in flight is cancelled.
    Pause,
    /// SIGRESUME: continue.
    Resume,
    /// SIGSTOP: finish the current step, then exit (state `stopped`).
    Stop,
    /// SIGKILL: end now (state `killed`).
    Kill,
    /// SIGPIPE / `input`: a user message, delivered at the next turn boundary.
    Input(String),
    /// SIGSTART: a new goal for an agent waiting for input.
    Start(String),
    /// SIGSAVE: write a snapshot at the next turn boundary.
    Save,
}

impl Signal {
    /// The wire name.
    pub fn name(&self) -> &'static str {
        match self {
            Signal::Pause => "SIGPAUSE",
            Signal::Resume => "SIGRESUME",
            Signal::Stop => "SIGSTOP",
            Signal::Kill => "SIGKILL",
            Signal::Input(_) => "SIGPIPE",
            Signal::Start(_) => "SIGSTART",
            Signal::Save => "SIGSAVE",
        }
    }

    /// Parses `SIGNAME [json payload]` (the name with or without `SIG`, any case).
    pub fn parse(
        name: &str,
        payload: Option<&serde_json::Value>,
    ) -> Result<Self, avix_proto::Error> {
        let upper = name.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        let text = |what: &str| -> Result<String, avix_proto::Error> {
            payload
                .and_then(|p| {
                    p.get("text")
                        .or_else(|| p.get("goal"))
                        .and_then(serde_json::Value::as_str)
                        .or_else(|| p.as_str())
                })
                .map(str::to_owned)
                .ok_or_else(|| {
                    avix_proto::Error::invalid(format!(
                        "SIG{bare} needs a payload with {what}, e.g. {{\"{what}\": \"…\"}}"
                    ))
                })
        };
        Ok(match bare {
            "PAUSE" => Signal::Pause,
            "RESUME" => Signal::Resume,
            "STOP" => Signal::Stop,
            "KILL" => Signal::Kill,
            "SAVE" => Signal::Save,
            "PIPE" => Signal::Input(text("text")?),
            "START" => Signal::Start(text("goal")?),
            "ESCALATE" => {
                return Err(avix_proto::Error::invalid(
                    "SIGESCALATE is sent by agents (cap/escalate), not to them",
                ));
            }
            _ => {
                return Err(avix_proto::Error::invalid(format!(
                    "unknown signal {name:?}: use SIGPAUSE, SIGRESUME, SIGSTOP, SIGKILL, SIGPIPE, SIGSTART or SIGSAVE"
                )));
            }
        })
    }
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    /// Terminal state.
    pub state: ProcState,
    /// Exit code.
    pub code: i32,
    /// Why.
    pub reason: String,
    /// The final answer, if any.
    pub output: Option<String>,
}

impl ExitInfo {
    /// An exit in `state` for `reason`.
    pub fn new(state: ProcState, reason: impl Into<String>) -> Self {
        Self {
            state,
            code: state.exit_code().unwrap_or(1),
            reason: reason.into(),
            output: None,
        }
    }
}

/// The numeric limits a run is held to (from resolved.yaml).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunLimits {
    /// Temperature.
    pub temperature: f64,
    /// Output tokens per call.
    pub max_output_tokens: u64,
    /// Turns per run.
    pub max_turns: u64,
    /// Tool calls per run.
    pub max_tool_calls: u64,
    /// Consecutive tool-dispatching turns.
    pub max_tool_chain_length: u64,
    /// Tokens per run.
    pub max_tokens: u64,
    /// Wall-clock seconds per run.
    pub max_wall_time_secs: u64,
    /// Seconds per LLM call.
    pub turn_timeout_secs: u64,
    /// Scheduling priority of LLM calls (0–9).
    pub priority: u8,
}

/// A process's tool grants: permanent ones, and `once` grants with calls left.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Granted for the life of the process.
    pub tools: HashSet<String>,
    /// Granted for a number of calls.
    pub once: HashMap<String, u32>,
}

impl Grants {
    /// Whether `tool` may be called now.
    pub fn allows(&self, tool: &str) -> bool {
        ALWAYS_PRESENT.contains(&tool)
            || self.tools.contains(tool)
            || self.once.get(tool).is_some_and(|n| *n > 0)
    }

    /// Uses up one call of a `once` grant (no effect on permanent grants).
    pub fn consume(&mut self, tool: &str) {
        if self.tools.contains(tool) {
            return;
        }
        if let Some(n) = self.once.get_mut(tool) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.once.remove(tool);
            }
        }
    }

    /// Sorted granted names (permanent and once).
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tools.iter().chain(self.once.keys()).cloned().collect();
        v.sort();
        v.dedup();
        v
    }
}

/// What changes while a process runs.
#[derive(Debug, Clone)]
pub struct ProcInner {
    /// State.
    pub state: ProcState,
    /// What a waiting process waits on.
    pub waiting_on: Option<String>,
    /// LLM turns.
    pub turns: u64,
    /// Tool calls.
    pub tool_calls: u64,
    /// Tokens used.
    pub tokens: Usage,
    /// LLM cost in US dollars.
    pub cost_usd: f64,
    /// Tool running now.
    pub current_tool: Option<String>,
    /// Children.
    pub children: Vec<Pid>,
    /// Pending HIL ids.
    pub pending_hil: Vec<avix_proto::HilId>,
    /// Last change.
    pub updated_at: Timestamp,
    /// How it ended.
    pub exit: Option<ExitInfo>,
    /// When it ended.
    pub ended_at: Option<Timestamp>,
    /// Recent errors (control-file refusals and the like), newest last.
    pub errors: VecDeque<String>,
}

/// Errors kept per process for `/proc/<pid>/errors`.
pub const MAX_ERRORS: usize = 50;

/// A process. Its spawn-time facts ([`ProcessSpec`]) read as its own fields (`p.pid`,
/// `p.user`…).
pub struct Process {
    /// What it was spawned as.
    pub spec: ProcessSpec,
    /// Spawn time.
    pub started_at: Timestamp,
    /// Spawn instant.
    pub started: Instant,
    // Short critical sections only; never held across an await.
    inner: Mutex<ProcInner>,
    grants: RwLock<Grants>,
    signals: mpsc::Sender<Signal>,
    kill: CancellationToken,
    exit_tx: watch::Sender<Option<ExitInfo>>,
    // The capability token in force and its expiry; empty once the process ended (revoked).
    token: Mutex<(String, i64)>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.pid)
            .field("agent", &self.agent)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for Process {
    type Target = ProcessSpec;

    fn deref(&self) -> &ProcessSpec {
        &self.spec
    }
}

/// The executor's end of a process.
#[derive(Debug)]
pub struct ProcessEnds {
    /// Signals.
    pub signals: mpsc::Receiver<Signal>,
}

/// What a process is spawned as: fixed for its life.
#[derive(Debug)]
pub struct ProcessSpec {
    /// PID.
    pub pid: Pid,
    /// Owner.
    pub user: UserName,
    /// Agent.
    pub agent: AgentName,
    /// Version.
    pub version: String,
    /// Goal.
    pub goal: String,
    /// Parent.
    pub parent: Option<Pid>,
    /// Session.
    pub session: avix_proto::SessionId,
    /// Model.
    pub model: String,
    /// Interactive.
    pub interactive: bool,
    /// Identity.
    pub caller: Caller,
    /// Journal.
    pub journal: Journal,
    /// Resolved config.
    pub resolved: Resolved,
    /// Limits.
    pub limits: RunLimits,
    /// System prompt.
    pub system_prompt: String,
    /// HIL-required tools.
    pub hil_required: HashSet<String>,
    /// The workspace it works in (a VFS path): its user's, or a fork's own copy.
    pub workspace: String,
}

impl Process {
    /// Creates a process holding `grants`, and the executor's end of it.
    pub fn new(spec: ProcessSpec, grants: Grants) -> (Arc<Self>, ProcessEnds) {
        let (tx, rx) = mpsc::channel(64);
        let (exit_tx, _) = watch::channel(None);
        let now = Timestamp::now();
        let p = Arc::new(Self {
            spec,
            started_at: now,
            started: Instant::now(),
            inner: Mutex::new(ProcInner {
                state: ProcState::Pending,
                waiting_on: None,
                turns: 0,
                tool_calls: 0,
                tokens: Usage::default(),
                cost_usd: 0.0,
                current_tool: None,
                children: Vec::new(),
                pending_hil: Vec::new(),
                updated_at: now,
                exit: None,
                ended_at: None,
                errors: VecDeque::new(),
            }),
            grants: RwLock::new(grants),
            signals: tx,
            kill: CancellationToken::new(),
            exit_tx,
            token: Mutex::new((String::new(), 0)),
        });
        (p, ProcessEnds { signals: rx })
    }

    /// Locks the live state.
    pub fn inner(&self) -> MutexGuard<'_, ProcInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Current state.
    pub fn state(&self) -> ProcState {
        self.inner().state
    }

    /// Sets the state (and what it waits on).
    pub fn set_state(&self, state: ProcState, waiting_on: Option<&str>) {
        let mut i = self.inner();
        i.state = state;
        i.waiting_on = waiting_on.map(str::to_owned);
        i.updated_at = Timestamp::now();
    }

    /// Records an error for `/proc/<pid>/errors`.
    pub fn push_error(&self, msg: impl Into<String>) {
        let mut i = self.inner();
        if i.errors.len() == MAX_ERRORS {
            i.errors.pop_front();
        }
        i.errors
            .push_back(format!("{} {}", Timestamp::now(), msg.into()));
    }

    /// A snapshot of the grant table.
    pub fn grants(&self) -> Grants {
        self.grants
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether `tool` may be called now.
    pub fn allows(&self, tool: &str) -> bool {
        self.grants
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .allows(tool)
    }

    /// Changes the grant table.
    pub fn with_grants<R>(&self, f: impl FnOnce(&mut Grants) -> R) -> R {
        f(&mut self
            .grants
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Sends a signal (Kill also trips the kill switch at once). Fails if the process ended.
    pub fn send(&self, sig: Signal) -> Result<(), avix_proto::Error> {
        if let Some(e) = &self.inner().exit {
            return Err(avix_proto::Error::conflict(format!(
                "process {} has already exited ({})",
                self.pid, e.state
            )));
        }
        if sig == Signal::Kill {
            self.kill.cancel();
        }
        self.signals.try_send(sig).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => avix_proto::Error::new(
                avix_proto::ErrorKind::Limit,
                format!("process {} has 64 signals pending; try again", self.pid),
            ),
            mpsc::error::TrySendError::Closed(_) => {
                avix_proto::Error::conflict(format!("process {} has already exited", self.pid))
            }
        })
    }

    /// The kill switch (cancelled by SIGKILL).
    pub fn kill_token(&self) -> CancellationToken {
        self.kill.clone()
    }

    /// The capability token in force and its expiry (Unix seconds); empty once revoked.
    pub fn token(&self) -> (String, i64) {
        self.token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Installs a new capability token.
    pub fn set_token(&self, token: String, expires_at: i64) {
        *self
            .token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (token, expires_at);
    }

    /// Marks the process ended and wakes everyone waiting for it.
    pub fn set_exit(&self, exit: ExitInfo) {
        self.set_token(String::new(), 0);
        {
            let mut i = self.inner();
            i.state = exit.state;
            i.waiting_on = None;
            i.current_tool = None;
            i.ended_at = Some(Timestamp::now());
            i.updated_at = Timestamp::now();
            i.exit = Some(exit.clone());
        }
        self.exit_tx.send_replace(Some(exit));
    }

    /// How it ended, if it has.
    pub fn exit(&self) -> Option<ExitInfo> {
        self.inner().exit.clone()
    }

    /// Waits until the process ends.
    pub async fn wait(&self) -> ExitInfo {
        let mut rx = self.exit_tx.subscribe();
        loop {
            if let Some(e) = rx.borrow_and_update().clone() {
                return e;
            }
            if rx.changed().await.is_err() {
                return ExitInfo::new(ProcState::Failed, "the process vanished");
            }
        }
    }

    /// The status document.
    pub fn status(&self) -> ProcessStatus {
        let i = self.inner();
        ProcessStatus {
            pid: self.pid,
            agent: self.agent.to_string(),
            version: self.version.clone(),
            state: i.state,
            waiting_on: i.waiting_on.clone(),
            goal: self.goal.clone(),
            owner: self.user.to_string(),
            parent: self.parent,
            children: i.children.clone(),
            invocation: self.journal.id().to_owned(),
            session: Some(self.session.clone()),
            model: self.model.clone(),
            turns: i.turns,
            tool_calls: i.tool_calls,
            tokens: i.tokens,
            cost_usd: i.cost_usd,
            current_tool: i.current_tool.clone(),
            pending_hil: i.pending_hil.clone(),
            started_at: self.started_at,
            updated_at: i.updated_at,
            ended_at: i.ended_at,
            exit_code: i.exit.as_ref().map(|e| e.code),
            exit_reason: i.exit.as_ref().map(|e| e.reason.clone()),
        }
    }
}

/// All processes, live and recently exited.
#[derive(Debug, Default)]
pub struct ProcessTable {
    // BTreeMap: listings come out in PID order.
    procs: RwLock<BTreeMap<Pid, Arc<Process>>>,
}

impl ProcessTable {
    /// Adds a process.
    pub fn insert(&self, p: Arc<Process>) {
        self.procs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(p.pid, p);
    }

    /// The process with this PID.
    pub fn get(&self, pid: Pid) -> Option<Arc<Process>> {
        self.procs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&pid)
            .cloned()
    }

    /// Removes a process (reaping).
    pub fn remove(&self, pid: Pid) -> Option<Arc<Process>> {
        self.procs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&pid)
    }

    /// Every process, in PID order.
    pub fn all(&self) -> Vec<Arc<Process>> {
        self.procs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Processes that have not ended.
    pub fn live_count(&self) -> usize {
        self.procs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|p| !p.state().is_terminal())
            .count()
    }

    /// Live processes of `user`.
    pub fn live_count_of(&self, user: &UserName) -> usize {
        self.procs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|p| &p.user == user && !p.state().is_terminal())
            .count()
    }

    /// Whether `ancestor` is `pid` or one of its ancestors.
    pub fn is_ancestor(&self, ancestor: Pid, pid: Pid) -> bool {
        let mut cur = Some(pid);
        let mut steps = 0;
        while let Some(p) = cur {
            if p == ancestor {
                return true;
            }
            steps += 1;
            if steps > 10_000 {
                return false;
            }
            cur = self.get(p).and_then(|x| x.parent);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_parse() {
        assert_eq!(Signal::parse("sigpause", None).unwrap(), Signal::Pause);
        assert_eq!(Signal::parse("KILL", None).unwrap(), Signal::Kill);
        let p = serde_json::json!({"text": "hello"});
        assert_eq!(
            Signal::parse("SIGPIPE", Some(&p)).unwrap(),
            Signal::Input("hello".into())
        );
        assert!(
            Signal::parse("SIGPIPE", None)
                .unwrap_err()
                .message
                .contains("payload")
        );
        assert!(
            Signal::parse("SIGHUP", None)
                .unwrap_err()
                .message
                .contains("unknown signal")
        );
        assert!(Signal::parse("SIGESCALATE", None).is_err());
    }

    #[test]
    fn once_grants_run_out() {
        let mut g = Grants::default();
        g.once.insert("fs/delete".into(), 1);
        assert!(g.allows("fs/delete") && g.allows("cap/list") && !g.allows("fs/read"));
        g.consume("fs/delete");
        assert!(!g.allows("fs/delete"));
    }
}
