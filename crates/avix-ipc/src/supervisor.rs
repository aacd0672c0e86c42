//! The service supervisor: installs units into `ROOT/data/services/<name>@<version>`, runs
//! them as host processes with a clean environment, restarts them with backoff, captures
//! their output into `ROOT/logs/services/<name>.log`, and publishes
//! `/proc/services/<name>/{status.yaml,log,ctl}`.
//!
//! Each service gets a directory `ROOT/run/services/<name>/` owned by the user it runs as,
//! holding its own router socket (`router.sock`, served by the daemon) and the socket it
//! serves its tools on (`svc.sock`).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use avix_kernel::Kernel;
use avix_kernel::services::{ServiceControl, ServiceError};
use avix_kernel::tools::ToolState;
use avix_llm::BoxFuture;
use avix_proto::Document;
use avix_proto::agent::parse_version;
use avix_proto::service::{RestartPolicy, ServiceState, ServiceStatus, ServiceUnit};
use avix_proto::time::Timestamp;
use avix_vfs::{SynthFile, VfsError, VfsPath};
use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::remote::InFlight;
use crate::router::Router;
use crate::server::{self, Peer, ServerConfig};

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

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.st
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, f: impl FnOnce(&mut SlotState)) {
        f(&mut self.lock());
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

/// An installed unit found at boot: its version, directory and unit.
type Candidate = ((u64, u64, u64), PathBuf, ServiceUnit);

fn err(code: &'static str, m: impl Into<String>) -> ServiceError {
    ServiceError::new(code, m)
}

fn describe(st: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "unknown".into(),
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let ty = e.file_type()?;
        let dest = to.join(e.file_name());
        if ty.is_dir() {
            copy_dir(&e.path(), &dest)?;
        } else if ty.is_file() {
            std::fs::copy(e.path(), &dest)?;
        }
        // Symlinks and special files are not installed.
    }
    Ok(())
}

fn resolve_user(name: &str) -> Result<(u32, u32), String> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        Ok(None) => Err(format!("runAs user {name:?} does not exist on this host")),
        Err(e) => Err(format!("cannot look up runAs user {name:?}: {e}")),
    }
}

fn chown(path: &Path, ids: Option<(u32, u32)>) -> std::io::Result<()> {
    if let Some((u, g)) = ids {
        std::os::unix::fs::chown(path, Some(u), Some(g))?;
    }
    Ok(())
}

struct LogSink {
    path: PathBuf,
    file: Option<std::fs::File>,
    size: u64,
}

impl LogSink {
    fn open(path: &Path) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok();
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        Self {
            path: path.to_owned(),
            file,
            size,
        }
    }

    fn line(&mut self, stream: &str, text: &str) {
        if self.size > LOG_ROTATE_BYTES {
            let _ = std::fs::rename(&self.path, self.path.with_extension("log.1"));
            *self = Self::open(&self.path);
        }
        let l = format!("{} {stream}: {text}\n", Timestamp::now());
        if let Some(f) = &mut self.file
            && f.write_all(l.as_bytes()).is_ok()
        {
            self.size += l.len() as u64;
        }
    }
}

fn tail(path: &Path, max: u64) -> Bytes {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Bytes::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut v = Vec::new();
    let _ = f.read_to_end(&mut v);
    if len > max
        && let Some(nl) = v.iter().position(|b| *b == b'\n')
    {
        v.drain(..=nl);
    }
    Bytes::from(v)
}

impl Supervisor {
    /// A supervisor; nothing runs until [`Supervisor::boot`].
    pub fn new(kernel: Arc<Kernel>) -> Arc<Self> {
        let ipc = kernel.config().get().kernel.ipc.clone();
        Arc::new_cyclic(|me| Self {
            kernel,
            slots: RwLock::new(BTreeMap::new()),
            runners: Mutex::new(Vec::new()),
            max_frame: (ipc.max_message_bytes as usize).min(avix_proto::rpc::MAX_FRAME_CEILING),
            read_timeout: Duration::from_millis(ipc.timeout_ms.max(1)),
            daemon_uid: nix::unistd::geteuid().as_raw(),
            me: me.clone(),
            builtins: std::sync::OnceLock::new(),
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

    /// Loads every installed unit and starts those marked autostart.
    pub fn boot(&self) {
        let dir = self.services_dir();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut best: BTreeMap<String, Candidate> = BTreeMap::new();
        for e in entries.flatten() {
            let path = e.path();
            let fname = e.file_name().to_string_lossy().into_owned();
            if fname.starts_with('.') {
                // An upload or install a crash interrupted.
                let _ = std::fs::remove_dir_all(&path);
                continue;
            }
            let Some((name, version)) = fname.split_once('@') else {
                continue;
            };
            let unit = match std::fs::read(path.join("service.yaml"))
                .map_err(|e| e.to_string())
                .and_then(|b| ServiceUnit::parse(&b))
            {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(dir = %path.display(), "skipping a service: service.yaml: {e}");
                    continue;
                }
            };
            if unit.metadata.name != name || unit.metadata.version != version {
                tracing::warn!(dir = %path.display(), "skipping a service: its directory is not <metadata.name>@<metadata.version>");
                continue;
            }
            let v = parse_version(version).unwrap_or_default();
            if best.get(name).is_none_or(|(bv, _, _)| v > *bv) {
                best.insert(name.to_owned(), (v, path, unit));
            }
        }
        for (_, (_, path, unit)) in best {
            let autostart = unit.spec.autostart;
            if let Err(e) = self.add_slot(unit, path, autostart) {
                tracing::warn!("cannot set up a service: {e}");
            }
        }
    }

    fn add_slot(
        &self,
        unit: ServiceUnit,
        dir: PathBuf,
        start: bool,
    ) -> Result<Arc<Slot>, ServiceError> {
        let name = unit.metadata.name.clone();
        let layout = self.kernel.layout();
        let run_dir = layout.run().join("services").join(&name);
        let log_dir = layout.root().join("logs").join("services");
        let (run_as, problem) = match &unit.spec.run_as {
            None => (None, None),
            Some(u) => match resolve_user(u) {
                Ok(ids) if ids.0 == self.daemon_uid => (None, None),
                Ok(_) if self.daemon_uid != 0 => (
                    None,
                    Some(format!(
                        "runAs {u} needs the daemon to run as root (it runs as uid {})",
                        self.daemon_uid
                    )),
                ),
                Ok(ids) => (Some(ids), None),
                Err(e) => (None, Some(e)),
            },
        };
        let io = |what: &str, e: std::io::Error| err("EIO", format!("{what}: {e}"));
        std::fs::create_dir_all(&run_dir).map_err(|e| io("cannot create the run directory", e))?;
        if run_as.is_some() {
            // Another user must reach its own directory: traverse, not list.
            for d in [layout.run(), layout.run().join("services")] {
                let mode = std::fs::metadata(&d).map_or(0o700, |m| m.permissions().mode());
                std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode | 0o111))
                    .map_err(|e| io("cannot open the run directory for traversal", e))?;
            }
        }
        std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io("cannot set the run directory's mode", e))?;
        chown(&run_dir, run_as).map_err(|e| io("cannot hand the run directory over", e))?;
        std::fs::create_dir_all(&log_dir).map_err(|e| io("cannot create the log directory", e))?;
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let slot = Arc::new(Slot {
            name: name.clone(),
            log_path: log_dir.join(format!("{name}.log")),
            unit,
            dir,
            run_dir,
            inflight: Arc::new(InFlight::default()),
            run_as,
            st: Mutex::new(SlotState {
                state: if problem.is_some() {
                    ServiceState::Failed
                } else {
                    ServiceState::Stopped
                },
                pid: None,
                since: Timestamp::now(),
                restarts: 0,
                last_exit: None,
                next_start: None,
                problem: problem.clone(),
                token: String::new(),
            }),
            changed: watch::channel(0).0,
            ctl: ctl_tx,
            stop_router: CancellationToken::new(),
        });
        // Its own router socket, owned by the user it runs as.
        let listener = server::bind(&slot.router_socket())
            .map_err(|e| io("cannot bind the service's router socket", e))?;
        chown(&slot.router_socket(), run_as)
            .map_err(|e| io("cannot hand the router socket over", e))?;
        let allowed = run_as.map(|(u, _)| u);
        let me = self.daemon_uid;
        let cfg = ServerConfig {
            max_frame: self.max_frame,
            read_timeout: self.read_timeout,
            peers: Arc::new(move |p: &Peer| {
                if p.uid == me || p.uid == 0 || Some(p.uid) == allowed {
                    Ok(())
                } else {
                    Err(format!(
                        "uid {} may not use this service's router socket",
                        p.uid
                    ))
                }
            }),
        };
        let router = Arc::new(Router::new(
            self.kernel.clone(),
            self.arc(),
            Some(name.clone()),
        ));
        tokio::spawn(server::serve(
            listener,
            router,
            cfg,
            slot.stop_router.clone(),
        ));
        self.publish(&slot);
        self.slots
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name, slot.clone());
        let runner = tokio::spawn(
            self.arc()
                .run(slot.clone(), ctl_rx, start && problem.is_none()),
        );
        self.runners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(runner);
        Ok(slot)
    }

    fn publish(&self, slot: &Arc<Slot>) {
        let vfs = self.kernel.vfs();
        let base = format!("/proc/services/{}", slot.name);
        let Ok(status_p) = VfsPath::parse(&format!("{base}/status.yaml")) else {
            return;
        };
        let (Ok(log_p), Ok(ctl_p)) = (
            VfsPath::parse(&format!("{base}/log")),
            VfsPath::parse(&format!("{base}/ctl")),
        ) else {
            return;
        };
        let (w, p, sup) = (Arc::downgrade(slot), status_p.clone(), self.me.clone());
        let status = SynthFile::computed(move |_| {
            let s = w.upgrade().ok_or_else(|| VfsError::NotFound(p.clone()))?;
            let mut st = status_of(&s);
            if let Some(sup) = sup.upgrade() {
                st.tools = sup.tools_of(&s);
            }
            Ok(Document::new(st)
                .to_yaml()
                .map(Bytes::from)
                .unwrap_or_default())
        });
        let (w, p) = (Arc::downgrade(slot), log_p.clone());
        let log = SynthFile::computed(move |_| {
            let s = w.upgrade().ok_or_else(|| VfsError::NotFound(p.clone()))?;
            Ok(tail(&s.log_path, LOG_TAIL_BYTES))
        });
        let (w, p) = (Arc::downgrade(slot), ctl_p.clone());
        let ctl = SynthFile::control(
            |_| Ok(Bytes::from_static(b"start | stop | restart\n")),
            move |caller, data| {
                if caller.role < avix_proto::Role::Operator {
                    return Err(VfsError::Denied {
                        path: p.clone(),
                        reason: "only operators and admins control services",
                    });
                }
                let s = w.upgrade().ok_or_else(|| VfsError::NotFound(p.clone()))?;
                let c = match std::str::from_utf8(data).map(str::trim) {
                    Ok("start") => Ctl::Start,
                    Ok("stop") => Ctl::Stop,
                    Ok("restart") => Ctl::Restart,
                    _ => {
                        return Err(VfsError::InvalidInput {
                            path: p.clone(),
                            reason: "write start, stop or restart".into(),
                        });
                    }
                };
                let _ = s.ctl.send(c);
                Ok(None)
            },
        );
        for (p, file) in [(status_p, status), (log_p, log), (ctl_p, ctl)] {
            if let Err(e) = vfs.publish(&p, file) {
                tracing::warn!(path = %p, error = %e, "cannot publish a service file");
            }
        }
    }

    fn unpublish(&self, name: &str) {
        for f in ["status.yaml", "log", "ctl"] {
            if let Ok(p) = VfsPath::parse(&format!("/proc/services/{name}/{f}")) {
                self.kernel.vfs().unpublish(&p);
            }
        }
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
                self.kernel.events().emit(
                    "tool.changed",
                    None,
                    None,
                    serde_json::json!({"tool": n, "change": "removed", "service": slot.name, "reason": reason}),
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

    fn spawn_child(&self, slot: &Slot) -> Result<tokio::process::Child, String> {
        let spec = &slot.unit.spec;
        let program = &spec.command[0];
        let program = if program.contains('/') && !program.starts_with('/') {
            slot.dir.join(program)
        } else {
            PathBuf::from(program)
        };
        let token = {
            let bytes: [u8; 32] = rand::random();
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        let env = self.kernel.secrets().resolve_env(&spec.environment)?;
        let _ = std::fs::remove_file(slot.svc_socket());
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&spec.command[1..])
            .current_dir(&slot.dir)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
            )
            .env("LANG", "C.UTF-8")
            .env("HOME", &slot.run_dir)
            .env("AVIX_ROUTER_SOCK", slot.router_socket())
            .env("AVIX_SVC_SOCK", slot.svc_socket())
            .env("AVIX_SVC_TOKEN", &token)
            .env("AVIX_SVC_NAME", &slot.name)
            .env("AVIX_SVC_VERSION", &slot.unit.metadata.version)
            .envs(env.iter().map(|(k, v)| (k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some((u, g)) = slot.run_as {
            cmd.uid(u).gid(g);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let pid = child.id();
        slot.set(|s| {
            s.token = token;
            s.pid = pid;
            s.state = ServiceState::Starting;
            s.since = Timestamp::now();
            s.next_start = None;
        });
        let sink = Arc::new(Mutex::new(LogSink::open(&slot.log_path)));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(pump(out, "stdout", sink.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(pump(err, "stderr", sink));
        }
        tracing::info!(service = %slot.name, pid = ?pid, "service started");
        Ok(child)
    }

    async fn terminate(child: &mut tokio::process::Child) -> Option<ExitStatus> {
        if let Some(pid) = child.id() {
            let pg = nix::unistd::Pid::from_raw(-(pid as i32));
            let _ = nix::sys::signal::kill(pg, nix::sys::signal::Signal::SIGTERM);
            if let Ok(r) = tokio::time::timeout(STOP_GRACE, child.wait()).await {
                let _ = nix::sys::signal::kill(pg, nix::sys::signal::Signal::SIGKILL);
                return r.ok();
            }
            let _ = nix::sys::signal::kill(pg, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = child.start_kill();
        child.wait().await.ok()
    }

    async fn run(
        self: Arc<Self>,
        slot: Arc<Slot>,
        mut rx: mpsc::UnboundedReceiver<Ctl>,
        mut want: bool,
    ) {
        let mut failures = 0u32;
        loop {
            if !want {
                match rx.recv().await {
                    Some(Ctl::Start | Ctl::Restart) => want = true,
                    Some(Ctl::Stop) => {
                        slot.set_state(ServiceState::Stopped);
                        continue;
                    }
                    Some(Ctl::Shutdown) | None => return,
                }
            }
            let started = Instant::now();
            let mut child = match self.spawn_child(&slot) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(service = %slot.name, "{e}");
                    slot.set(|s| {
                        s.state = ServiceState::Failed;
                        s.since = Timestamp::now();
                        s.problem = Some(e);
                        s.token.clear();
                    });
                    want = false;
                    continue;
                }
            };
            // Wait for the process to end or to be told otherwise.
            let ended = loop {
                tokio::select! {
                    st = child.wait() => break Ok(st.ok()),
                    c = rx.recv() => match c {
                        Some(Ctl::Start) => {}
                        Some(c @ (Ctl::Stop | Ctl::Restart)) => break Err(Some(c)),
                        Some(Ctl::Shutdown) | None => break Err(None),
                    },
                }
            };
            match ended {
                Err(c) => {
                    slot.set_state(ServiceState::Stopping);
                    self.mark_tools(&slot, ToolState::Unavailable);
                    let st = Self::terminate(&mut child).await;
                    slot.set(|s| {
                        s.pid = None;
                        s.token.clear();
                        s.last_exit = st.map(describe);
                    });
                    if c != Some(Ctl::Restart) {
                        // A restart keeps them listed (unavailable) until it registers again.
                        let names = self.tools_of(&slot);
                        self.remove_tools(&slot, &names, false, Some("service stopped"))
                            .await;
                    }
                    match c {
                        Some(Ctl::Restart) => {
                            slot.set(|s| s.restarts += 1);
                            want = true;
                            failures = 0;
                        }
                        None => {
                            slot.set_state(ServiceState::Stopped);
                            return;
                        }
                        _ => {
                            slot.set_state(ServiceState::Stopped);
                            want = false;
                        }
                    }
                    tracing::info!(service = %slot.name, "service stopped");
                    continue;
                }
                Ok(st) => {
                    let ok = st.is_some_and(|s| s.success());
                    let how = st.map_or_else(|| "unknown".to_owned(), describe);
                    tracing::warn!(service = %slot.name, exit = %how, "service exited");
                    self.mark_tools(&slot, ToolState::Unavailable);
                    slot.set(|s| {
                        s.pid = None;
                        s.token.clear();
                        s.last_exit = Some(how.clone());
                    });
                    let again = match slot.unit.spec.restart {
                        RestartPolicy::Always => true,
                        RestartPolicy::OnFailure => !ok,
                        RestartPolicy::Never => false,
                    };
                    if !again {
                        let names = self.tools_of(&slot);
                        self.remove_tools(&slot, &names, false, Some("service exited"))
                            .await;
                        slot.set(|s| {
                            s.state = if ok {
                                ServiceState::Stopped
                            } else {
                                ServiceState::Failed
                            };
                            s.since = Timestamp::now();
                            if !ok {
                                s.problem = Some(format!(
                                    "exited ({how}); restart policy {:?} does not restart it",
                                    slot.unit.spec.restart
                                ));
                            }
                        });
                        want = false;
                        continue;
                    }
                    if started.elapsed() >= BACKOFF_RESET {
                        failures = 0;
                    }
                    let delay = BACKOFF_FIRST
                        .saturating_mul(1 << failures.min(10))
                        .min(BACKOFF_MAX);
                    failures += 1;
                    slot.set(|s| {
                        s.state = ServiceState::Backoff;
                        s.since = Timestamp::now();
                        s.next_start = Some(Timestamp::from_unix(
                            Timestamp::now().unix() + delay.as_secs() as i64,
                        ));
                        s.problem = Some(format!(
                            "exited ({how}); starting again in {} ms",
                            delay.as_millis()
                        ));
                    });
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {
                            slot.set(|s| s.restarts += 1);
                        }
                        c = rx.recv() => match c {
                            Some(Ctl::Start | Ctl::Restart) => slot.set(|s| s.restarts += 1),
                            Some(Ctl::Stop) => {
                                let names = self.tools_of(&slot);
                                self.remove_tools(&slot, &names, false, Some("service stopped")).await;
                                slot.set(|s| { s.next_start = None; s.problem = None; });
                                slot.set_state(ServiceState::Stopped);
                                want = false;
                            }
                            Some(Ctl::Shutdown) | None => return,
                        },
                    }
                }
            }
        }
    }

    fn slot(&self, name: &str) -> Result<Arc<Slot>, ServiceError> {
        if self.builtin(name).is_some() {
            return Err(err(
                "EPERM",
                format!(
                    "{name} is built into the daemon and follows its configuration (kernel.yaml exec, mcp.yaml); an MCP server can be restarted"
                ),
            ));
        }
        self.read_slots().get(name).cloned().ok_or_else(|| {
            err(
                "ENOTFOUND",
                format!("there is no service {name} (avix client service list shows them)"),
            )
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

    async fn install_dir(self: Arc<Self>, dir: PathBuf) -> Result<ServiceStatus, ServiceError> {
        let bytes = std::fs::read(dir.join("service.yaml")).map_err(|e| {
            err(
                "EINVAL",
                format!("cannot read {}/service.yaml: {e}", dir.display()),
            )
        })?;
        let unit =
            ServiceUnit::parse(&bytes).map_err(|e| err("EINVAL", format!("service.yaml: {e}")))?;
        let name = unit.metadata.name.clone();
        if let Some(s) = self.read_slots().get(&name) {
            return Err(err(
                "ECONFLICT",
                format!(
                    "service {name} {} is installed; uninstall it first (avix client service uninstall {name})",
                    s.unit.metadata.version
                ),
            ));
        }
        let dest = self
            .services_dir()
            .join(format!("{name}@{}", unit.metadata.version));
        let tmp = self
            .services_dir()
            .join(format!(".{name}@{}.installing", unit.metadata.version));
        let _ = std::fs::remove_dir_all(&tmp);
        let (from, t2) = (dir.clone(), tmp.clone());
        tokio::task::spawn_blocking(move || copy_dir(&from, &t2))
            .await
            .map_err(|e| err("EIO", e.to_string()))?
            .map_err(|e| err("EIO", format!("cannot copy {}: {e}", dir.display())))?;
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&tmp, &dest).map_err(|e| err("EIO", format!("cannot install: {e}")))?;
        let autostart = unit.spec.autostart;
        self.add_slot(unit, dest, false)?;
        tracing::info!(service = %name, "service installed");
        if autostart {
            self.control(&name, Ctl::Start).await
        } else {
            self.status(&name)
        }
    }

    async fn uninstall_slot(
        self: Arc<Self>,
        name: String,
        force: bool,
    ) -> Result<(), ServiceError> {
        let slot = self.slot(&name)?;
        let state = slot.lock().state;
        if !matches!(state, ServiceState::Stopped | ServiceState::Failed) {
            if !force {
                return Err(err(
                    "ECONFLICT",
                    format!("service {name} is {state:?}; stop it first or pass --force")
                        .to_lowercase(),
                ));
            }
            self.control(&name, Ctl::Stop).await?;
        }
        let names = self.tools_of(&slot);
        self.remove_tools(&slot, &names, true, Some("service uninstalled"))
            .await;
        let _ = slot.ctl.send(Ctl::Shutdown);
        slot.stop_router.cancel();
        self.slots
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&name);
        self.unpublish(&name);
        let _ = std::fs::remove_dir_all(&slot.run_dir);
        std::fs::remove_dir_all(&slot.dir)
            .map_err(|e| err("EIO", format!("cannot remove {}: {e}", slot.dir.display())))?;
        tracing::info!(service = %name, "service uninstalled");
        Ok(())
    }
}

async fn futures_join(handles: Vec<tokio::task::JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}

async fn pump(
    r: impl tokio::io::AsyncRead + Unpin,
    stream: &'static str,
    sink: Arc<Mutex<LogSink>>,
) {
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(l)) = lines.next_line().await {
        sink.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .line(stream, &l);
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

    fn start(&self, name: &str) -> BoxFuture<'static, Result<ServiceStatus, ServiceError>> {
        let (me, name) = (self.arc(), name.to_owned());
        Box::pin(async move { me.control(&name, Ctl::Start).await })
    }

    fn stop(&self, name: &str) -> BoxFuture<'static, Result<ServiceStatus, ServiceError>> {
        let (me, name) = (self.arc(), name.to_owned());
        Box::pin(async move { me.control(&name, Ctl::Stop).await })
    }

    fn restart(&self, name: &str) -> BoxFuture<'static, Result<ServiceStatus, ServiceError>> {
        let (me, name) = (self.arc(), name.to_owned());
        Box::pin(async move {
            // An MCP server can be reconnected by hand; the rest follows its configuration.
            if let (Some(server), Some(b)) = (name.strip_prefix("mcp/"), me.builtins.get())
                && b.mcp.restart(server).await
            {
                return me.status(&name);
            }
            me.control(&name, Ctl::Restart).await
        })
    }

    fn install(&self, dir: &Path) -> BoxFuture<'static, Result<ServiceStatus, ServiceError>> {
        Box::pin(self.arc().install_dir(dir.to_owned()))
    }

    fn uninstall(&self, name: &str, force: bool) -> BoxFuture<'static, Result<(), ServiceError>> {
        Box::pin(self.arc().uninstall_slot(name.to_owned(), force))
    }
}
