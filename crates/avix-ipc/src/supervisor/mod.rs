//! The service supervisor: installs units into `ROOT/data/services/<name>@<version>`, runs
//! them as host processes with a clean environment, restarts them with backoff, captures
//! their output into `ROOT/logs/services/<name>.log`, and publishes
//! `/proc/services/<name>/{status.yaml,log,ctl}`.
//!
//! Each service gets a directory `ROOT/run/services/<name>/` owned by the user it runs as,
//! holding its own router socket (`router.sock`, served by the daemon) and the socket it
//! serves its tools on (`svc.sock`).
//!
//! - `install`: units on disk, loading at start, install and uninstall, a service's run
//!   directory and router socket.
//! - `runner`: one service's process and the loop that restarts it.
//! - `files`: its log and its files under `/proc/services`.

mod files;
mod install;
mod runner;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use avix_kernel::services::{ServiceControl, ServiceError};
use avix_kernel::tools::ToolState;
use avix_kernel::{Kernel, policy};
use avix_llm::BoxFuture;
use avix_proto::ErrorKind;
use avix_proto::service::{ServiceState, ServiceStatus, ServiceUnit};
use avix_proto::time::Timestamp;
use avix_vfs::Caller;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::remote::InFlight;
use crate::server::Peer;

/// A log file is rotated to `<name>.log.1` past this size.
pub const LOG_ROTATE_BYTES: u64 = 1024 * 1024;
/// `/proc/services/<name>/log` shows this much of the end of the log.
pub const LOG_TAIL_BYTES: u64 = 64 * 1024;
/// How long a stopped service gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// First restart delay; doubles per consecutive failure up to [`BACKOFF_MAX`].
pub const BACKOFF_FIRST: Duration = Duration::from_millis(500);
/// Longest restart delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A service that ran this long before exiting starts again from the first delay.
pub const BACKOFF_RESET: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctl {
    Start,
    Stop,
    Restart,
    Shutdown,
}

#[derive(Debug)]
struct SlotState {
    state: ServiceState,
    pid: Option<u32>,
    since: Timestamp,
    restarts: u32,
    last_exit: Option<String>,
    next_start: Option<Timestamp>,
    problem: Option<String>,
    token: String,
}

/// One installed service.
pub struct Slot {
    /// Its name.
    pub name: String,
    /// Its unit.
    pub unit: ServiceUnit,
    /// Where it is installed.
    pub dir: PathBuf,
    run_dir: PathBuf,
    log_path: PathBuf,
    /// Calls in flight to it.
    pub inflight: Arc<InFlight>,
    run_as: Option<(u32, u32)>,
    st: Mutex<SlotState>,
    changed: watch::Sender<u64>,
    kernel: Arc<Kernel>,
    ctl: mpsc::UnboundedSender<Ctl>,
    stop_router: CancellationToken,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Slot {
    /// The socket the service serves its tools on.
    pub fn svc_socket(&self) -> PathBuf {
        self.run_dir.join("svc.sock")
    }

    fn router_socket(&self) -> PathBuf {
        self.run_dir.join("router.sock")
    }

    /// Its name among the daemon's child processes.
    fn child_name(&self) -> String {
        format!("service/{}", self.name)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.st
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, f: impl FnOnce(&mut SlotState)) {
        let changed = {
            let mut st = self.lock();
            let before = st.state;
            f(&mut st);
            (st.state != before).then(|| (st.state, st.pid, st.problem.clone()))
        };
        if let Some((state, pid, problem)) = changed {
            // For ATP clients watching services.
            self.kernel.events().publish_to(
                None,
                &avix_proto::event::ServiceStateChanged {
                    name: self.name.to_string(),
                    state,
                    pid,
                    problem,
                },
            );
        }
        self.changed.send_modify(|n| *n += 1);
    }

    fn set_state(&self, state: ServiceState) {
        self.set(|s| {
            if s.state != state {
                s.state = state;
                s.since = Timestamp::now();
            }
        });
    }
}

/// Supervises every installed service.
pub struct Supervisor {
    kernel: Arc<Kernel>,
    slots: RwLock<BTreeMap<String, Arc<Slot>>>,
    runners: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    max_frame: usize,
    read_timeout: Duration,
    daemon_uid: u32,
    me: std::sync::Weak<Supervisor>,
    builtins: std::sync::OnceLock<Builtins>,
    /// Where running services are recorded, so a daemon that died leaves none behind.
    leftovers: crate::children::Leftovers,
}

/// The built-in services, listed with the installed ones.
#[derive(Debug, Clone)]
pub struct Builtins {
    /// exec.svc.
    pub exec: Arc<crate::exec::ExecService>,
    /// The MCP bridge (one line per server).
    pub mcp: Arc<crate::mcp::McpBridge>,
}

impl Builtins {
    fn statuses(&self) -> Vec<ServiceStatus> {
        let mut v = vec![self.exec.status()];
        v.extend(self.mcp.statuses());
        v
    }
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Supervisor({} services)", self.read_slots().len())
    }
}

fn err(kind: ErrorKind, m: impl Into<String>) -> ServiceError {
    ServiceError::new(kind, m)
}

impl Supervisor {
    /// A supervisor; nothing runs until [`Supervisor::boot`].
    pub fn new(kernel: Arc<Kernel>) -> Arc<Self> {
        let ipc = kernel.config().get().kernel.ipc.clone();
        Arc::new_cyclic(|me| Self {
            slots: RwLock::new(BTreeMap::new()),
            runners: Mutex::new(Vec::new()),
            max_frame: (ipc.max_message_bytes as usize).min(avix_proto::rpc::MAX_FRAME_CEILING),
            read_timeout: Duration::from_millis(ipc.timeout_ms.max(1)),
            daemon_uid: nix::unistd::geteuid().as_raw(),
            me: me.clone(),
            builtins: std::sync::OnceLock::new(),
            leftovers: crate::children::Leftovers::new(&kernel.layout().state()),
            kernel,
        })
    }

    fn arc(&self) -> Arc<Self> {
        self.me
            .upgrade()
            .expect("the supervisor is alive while used")
    }

    /// Lists the built-in services with the installed ones (once, at start).
    pub fn set_builtins(&self, b: Builtins) {
        let _ = self.builtins.set(b);
    }

    fn builtin(&self, name: &str) -> Option<ServiceStatus> {
        self.builtins
            .get()?
            .statuses()
            .into_iter()
            .find(|s| s.name == name)
    }

    /// Largest IPC frame.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// How long a client has to send its request.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    fn read_slots(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Slot>>> {
        self.slots
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn services_dir(&self) -> PathBuf {
        self.kernel.layout().data().join("services")
    }

    /// The slot whose current token is `token` (constant-time comparison).
    pub fn slot_by_token(&self, token: &str) -> Option<Arc<Slot>> {
        use subtle::ConstantTimeEq;
        let mut found = None;
        for s in self.read_slots().values() {
            let st = s.lock();
            if !st.token.is_empty() && bool::from(st.token.as_bytes().ct_eq(token.as_bytes())) {
                found = Some(s.clone());
            }
        }
        found
    }

    /// A service registered on its router socket.
    pub fn registered(&self, slot: &Arc<Slot>, peer: Peer) {
        tracing::info!(service = %slot.name, pid = ?peer.pid, "service registered");
        slot.set(|s| {
            s.state = ServiceState::Running;
            s.since = Timestamp::now();
            s.problem = None;
        });
    }

    /// Takes tools of `slot` out of service: unavailable at once, removed once calls in
    /// flight finished (with `drain`, at most the call timeout). Returns whether the drain
    /// completed.
    pub async fn remove_tools(
        &self,
        slot: &Arc<Slot>,
        names: &[String],
        drain: bool,
        reason: Option<&str>,
    ) -> bool {
        let vfs = self.kernel.vfs();
        for n in names {
            self.kernel
                .tools()
                .set_state(vfs, n, ToolState::Unavailable);
        }
        let drained = !drain || slot.inflight.drained(slot.unit.spec.call_timeout.0).await;
        for n in names {
            if self.kernel.tools().remove(vfs, n) {
                self.kernel.events().publish_to(
                    None,
                    &avix_proto::event::ToolChanged {
                        tool: n.to_string(),
                        change: avix_proto::event::ToolChange::Removed,
                        service: slot.name.to_string(),
                        reason: reason.map(str::to_owned),
                    },
                );
            }
        }
        drained
    }

    fn tools_of(&self, slot: &Slot) -> Vec<String> {
        self.kernel
            .tools()
            .owned_by(&slot.name)
            .into_iter()
            .map(|t| t.to_string())
            .collect()
    }

    fn mark_tools(&self, slot: &Slot, state: ToolState) {
        for t in self.kernel.tools().owned_by(&slot.name) {
            self.kernel
                .tools()
                .set_state(self.kernel.vfs(), t.as_str(), state);
        }
    }

    fn slot(&self, name: &str) -> Result<Arc<Slot>, ServiceError> {
        if self.builtin(name).is_some() {
            return Err(err(
                ErrorKind::NotPermitted,
                format!(
                    "{name} is built into the daemon and follows its configuration (kernel.yaml exec, mcp.yaml); an MCP server can be restarted"
                ),
            ));
        }
        self.read_slots().get(name).cloned().ok_or_else(|| {
            err(
                ErrorKind::NotFound,
                format!("there is no service {name} (avix client service list shows them)"),
            )
        })
    }

    /// [`Self::control`] for `caller`, if policy lets them control services.
    fn control_as(
        &self,
        caller: &Caller,
        name: &str,
        c: Ctl,
    ) -> BoxFuture<'static, Result<ServiceStatus, ServiceError>> {
        let allowed = policy::control_services(caller);
        let (me, name) = (self.arc(), name.to_owned());
        Box::pin(async move {
            allowed?;
            me.control(&name, c).await
        })
    }

    /// Sends `c` and waits until the service settles (running, stopped, failed or in
    /// backoff), at most 10 s. Starting a running service or stopping a stopped one changes
    /// nothing.
    async fn control(&self, name: &str, c: Ctl) -> Result<ServiceStatus, ServiceError> {
        let slot = self.slot(name)?;
        let before = slot.lock().state;
        let noop = match c {
            Ctl::Start => before == ServiceState::Running,
            Ctl::Stop => matches!(before, ServiceState::Stopped | ServiceState::Failed),
            _ => false,
        };
        if noop {
            return self.status(name);
        }
        let mut rx = slot.changed.subscribe();
        rx.mark_unchanged();
        let _ = slot.ctl.send(c);
        let settled = |s: ServiceState| match c {
            Ctl::Stop => matches!(s, ServiceState::Stopped | ServiceState::Failed),
            _ => matches!(
                s,
                ServiceState::Running
                    | ServiceState::Failed
                    | ServiceState::Backoff
                    | ServiceState::Stopped
            ),
        };
        let wait = async {
            // Only states reached after the command count.
            while rx.changed().await.is_ok() {
                if settled(slot.lock().state) {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), wait).await;
        let mut st = self.status(name)?;
        if st.state == ServiceState::Starting && st.problem.is_none() {
            st.problem = Some(
                "running but not registered after 10 s: a service calls ipc.register on AVIX_ROUTER_SOCK once it listens on AVIX_SVC_SOCK (see its log)"
                    .into(),
            );
        }
        Ok(st)
    }

    /// Waits until no service or MCP server is still starting, at most `limit`, so that
    /// work resumed at start finds their tools.
    pub async fn wait_settled(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if !self
                .list()
                .iter()
                .any(|s| s.state == ServiceState::Starting)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every service (daemon shutdown).
    pub async fn shutdown(&self) {
        let slots: Vec<_> = self.read_slots().values().cloned().collect();
        for s in &slots {
            let _ = s.ctl.send(Ctl::Shutdown);
            s.stop_router.cancel();
        }
        let runners: Vec<_> = std::mem::take(
            &mut *self
                .runners
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let all = futures_join(runners);
        let _ = tokio::time::timeout(STOP_GRACE + Duration::from_secs(1), all).await;
    }
}

async fn futures_join(handles: Vec<tokio::task::JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}

fn status_of(slot: &Slot) -> ServiceStatus {
    let s = slot.lock();
    ServiceStatus {
        name: slot.name.clone(),
        version: slot.unit.metadata.version.clone(),
        builtin: false,
        state: s.state,
        pid: s.pid,
        since: s.since,
        restarts: s.restarts,
        last_exit: s.last_exit.clone(),
        next_start: s.next_start,
        tools: Vec::new(),
        socket: Some(slot.svc_socket().display().to_string()),
        log: Some(slot.log_path.display().to_string()),
        problem: s.problem.clone(),
        calls: slot.inflight.totals().0,
        failed_calls: slot.inflight.totals().1,
        in_flight: slot.inflight.count() as u64,
    }
}

impl ServiceControl for Supervisor {
    fn list(&self) -> Vec<ServiceStatus> {
        let mut v: Vec<ServiceStatus> = self
            .read_slots()
            .values()
            .map(|s| {
                let mut st = status_of(s);
                st.tools = self.tools_of(s);
                st
            })
            .collect();
        if let Some(b) = self.builtins.get() {
            v.extend(b.statuses());
        }
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn status(&self, name: &str) -> Result<ServiceStatus, ServiceError> {
        if let Some(b) = self.builtin(name) {
            return Ok(b);
        }
        let s = self.slot(name)?;
        let mut st = status_of(&s);
        st.tools = self.tools_of(&s);
        Ok(st)
    }

    fn start(
        &self,
        caller: &Caller,
        name: &str,
    ) -> BoxFuture<'static, Result<ServiceStatus, ServiceError>> {
        self.control_as(caller, name, Ctl::Start)
    }

    fn stop(
        &self,
        caller: &Caller,
        name: &str,
    ) -> BoxFuture<'static, Result<ServiceStatus, ServiceError>> {
        self.control_as(caller, name, Ctl::Stop)
    }

    fn restart(
        &self,
        caller: &Caller,
        name: &str,
    ) -> BoxFuture<'static, Result<ServiceStatus, ServiceError>> {
        let allowed = policy::control_services(caller);
        let (me, name) = (self.arc(), name.to_owned());
        Box::pin(async move {
            allowed?;
            // An MCP server can be reconnected by hand; the rest follows its configuration.
            if let (Some(server), Some(b)) = (name.strip_prefix("mcp/"), me.builtins.get())
                && b.mcp.restart(server).await
            {
                return me.status(&name);
            }
            me.control(&name, Ctl::Restart).await
        })
    }

    fn install(
        &self,
        caller: &Caller,
        dir: &Path,
    ) -> BoxFuture<'static, Result<ServiceStatus, ServiceError>> {
        let allowed = policy::install_services(caller);
        let (me, dir) = (self.arc(), dir.to_owned());
        Box::pin(async move {
            allowed?;
            me.install_dir(dir).await
        })
    }

    fn uninstall(
        &self,
        caller: &Caller,
        name: &str,
        force: bool,
    ) -> BoxFuture<'static, Result<(), ServiceError>> {
        let allowed = policy::install_services(caller);
        let (me, name) = (self.arc(), name.to_owned());
        Box::pin(async move {
            allowed?;
            me.uninstall_slot(name, force).await
        })
    }
}
