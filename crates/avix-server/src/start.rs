//! `avix server start`: boots the daemon and runs it until SIGINT or SIGTERM (SIGHUP re-reads
//! the configuration).
//!
//! Phases (each logged with its time):
//! 0. single-threaded preparation: root and configuration present, layout modes repaired,
//!    master key loaded (and overwritten and removed from the environment), pid lock taken, mount point checked (a stale mount left
//!    by a crash is detached), mount guard started;
//! 1. kernel boot: configuration checked against the master key, VFS built, synthetic files
//!    published;
//! 2. doors: ATP listener bound, FUSE mounted, disk watcher started;
//!
//! Then `ready in N ms`.
//!
//! Shutdown: stop the listener, commit buffered writes, unmount, tell the guard, remove the
//! pid file, exit 0.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use avix_auth::{MasterKey, MasterKeyError};
use avix_fuse::guard::MountGuard;
use avix_fuse::{Identities, MountError, MountPointState};
use avix_gateway::logs::LogRing;
use avix_kernel::config::{
    ConfigError, ConfigStore, StartupKeyError, load_master_key, read_kernel_config,
    verify_master_key,
};
use avix_kernel::layout::RootLayout;
use avix_kernel::{BootError, BootOptions, Kernel, RuntimeInfo};
use avix_proto::UserName;
use avix_proto::config::kernel::{KernelConfig, MasterKeySource, Mode};
use avix_proto::time::Timestamp;
use avix_vfs::Caller;
use tokio_util::sync::CancellationToken;

use crate::pidfile::{PidError, PidLock};

/// Where to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountChoice {
    /// `ROOT/mnt` (created if missing).
    Default,
    /// This directory (must exist).
    At(PathBuf),
    /// Do not mount.
    None,
}

/// What `avix server start` was asked.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// The runtime root.
    pub root: PathBuf,
    /// ATP port (overrides kernel.yaml).
    pub port: Option<u16>,
    /// ATP address (overrides kernel.yaml).
    pub bind: Option<IpAddr>,
    /// Allow a non-loopback address outside headless mode.
    pub allow_remote: bool,
    /// Mount point.
    pub mount: MountChoice,
    /// Log level (overrides kernel.yaml).
    pub log_level: Option<String>,
}

/// Why the daemon did not start (or stopped badly).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No runtime root there.
    #[error(
        "{root} is not initialised ({path} not found): run `avix server config init --root {root}` first"
    )]
    NotInitialised {
        /// The root.
        root: String,
        /// The missing file.
        path: String,
    },
    /// Configuration problem.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Master key problem.
    #[error(transparent)]
    MasterKey(#[from] MasterKeyError),
    /// Master key check problem.
    #[error(transparent)]
    KeyCheck(#[from] StartupKeyError),
    /// Another daemon.
    #[error(transparent)]
    Pid(#[from] PidError),
    /// Mount point problem.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// Listener problem.
    #[error(transparent)]
    Bind(#[from] avix_gateway::BindError),
    /// Kernel boot problem.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// A refused setting.
    #[error("{0}")]
    Policy(String),
    /// Anything else.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

/// The ring of recent log lines `sys logs` reads.
pub fn log_ring() -> &'static Arc<LogRing> {
    static RING: std::sync::OnceLock<Arc<LogRing>> = std::sync::OnceLock::new();
    RING.get_or_init(Arc::default)
}

/// Copies each log event into the [`log_ring`].
struct RingLayer;

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            self.0.push_str(&format!(" {}={value}", field.name()));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for RingLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let meta = event.metadata();
        let mut f = Fields(String::new());
        event.record(&mut f);
        let level = meta.level().as_str();
        let line = format!(
            "{} {level} {}",
            Timestamp::now(),
            avix_proto::text::escape(&f.0)
        );
        log_ring().push(level, meta.target(), line);
    }
}

/// The daemon's stderr, one log record per write: control and format characters in a record
/// (a file name with a newline, an escape sequence in a goal) are escaped, so no record can
/// forge another or drive the terminal showing the log. Only the record's final newline stays.
#[derive(Debug, Clone, Copy)]
struct SafeStderr;

impl std::io::Write for SafeStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (body, newline) = match buf.strip_suffix(b"\n") {
            Some(b) => (b, true),
            None => (buf, false),
        };
        let text = String::from_utf8_lossy(body);
        let mut err = std::io::stderr().lock();
        err.write_all(avix_proto::text::escape(&text).as_bytes())?;
        if newline {
            err.write_all(b"\n")?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

type FilterHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// The live log filter, changed when kernel.yaml's `observability.logLevel` changes.
static LOG_FILTER: std::sync::OnceLock<FilterHandle> = std::sync::OnceLock::new();

/// The filter for `level`: `RUST_LOG`'s directives, when set, refine it (`RUST_LOG=avix_llm=debug`
/// adds debug output of one crate to the level in force).
fn log_filter(level: &str) -> tracing_subscriber::EnvFilter {
    let base = format!("{level},fuser=warn");
    match std::env::var("RUST_LOG") {
        Ok(extra) if !extra.trim().is_empty() => {
            tracing_subscriber::EnvFilter::try_new(format!("{base},{extra}")).unwrap_or_else(|e| {
                eprintln!("RUST_LOG ignored: {e}");
                tracing_subscriber::EnvFilter::new(&base)
            })
        }
        _ => tracing_subscriber::EnvFilter::new(base),
    }
}

/// Applies a new log level at once (see [`init_logging`]).
pub fn set_log_level(level: &str) {
    if let Some(h) = LOG_FILTER.get() {
        let _ = h.reload(log_filter(level));
    }
}

/// Sets up logging to stderr at `level` (`RUST_LOG` refines it), copied to [`log_ring`]. The
/// level can be changed later with [`set_log_level`].
pub fn init_logging(level: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (filter, handle) = tracing_subscriber::reload::Layer::new(log_filter(level));
    let _ = LOG_FILTER.set(handle);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(|| SafeStderr)
                .with_ansi(false)
                .with_target(false),
        )
        .with(RingLayer)
        .try_init();
}

/// Applies kernel.yaml's `observability.logLevel` whenever it changes (unless `--log-level`
/// was given, which wins for the daemon's life).
fn follow_log_level(kernel: &Arc<Kernel>) {
    let weak = Arc::downgrade(kernel);
    let current =
        std::sync::Mutex::new(kernel.config().get().kernel.observability.log_level.clone());
    let Ok(kernel_yaml) = avix_vfs::VfsPath::parse("/etc/avix/kernel.yaml") else {
        return;
    };
    kernel.vfs().subscribe(move |change| {
        if change.path != kernel_yaml {
            return;
        }
        let Some(k) = weak.upgrade() else { return };
        let level = k.config().get().kernel.observability.log_level.clone();
        let mut cur = current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *cur != level {
            set_log_level(&level);
            tracing::info!(level = %level, "log level changed by kernel.yaml");
            *cur = level;
        }
    });
}

/// Maps host uids through the configuration in force.
struct ConfigIdentities(Arc<ConfigStore>);

impl Identities for ConfigIdentities {
    fn caller(&self, host_uid: u32) -> Option<Caller> {
        self.0.caller_for_host_uid(host_uid)
    }
    fn host_uid(&self, user: &UserName) -> Option<u32> {
        self.0.host_uid_of(user)
    }
}

/// Everything phase 0 sets up.
struct Prepared {
    layout: RootLayout,
    kernel_config: KernelConfig,
    master: MasterKey,
    pid: PidLock,
    mount_point: Option<PathBuf>,
    guard: Option<MountGuard>,
    port: u16,
    /// `--log-level` was given: kernel.yaml's level does not apply.
    fixed_log_level: bool,
}

/// Removes `name` from the environment, overwriting its value first. `remove_var` alone only
/// drops the entry from `environ`: `/proc/<pid>/environ` shows the process's original
/// environment block, where the value would stay readable for the daemon's life.
///
/// # Safety
/// No other thread may read or change the environment meanwhile.
unsafe fn scrub_env(name: &str) {
    unsafe extern "C" {
        static mut environ: *mut *mut libc::c_char;
    }
    let prefix = format!("{name}=");
    // SAFETY: `environ` is the NUL-terminated array of NUL-terminated strings libc keeps;
    // nothing else touches it (the caller's promise). Each matching string is overwritten
    // within its own length, through volatile writes the optimiser keeps.
    unsafe {
        let mut p = environ;
        while !p.is_null() && !(*p).is_null() {
            let entry = std::ffi::CStr::from_ptr(*p);
            let len = entry.to_bytes().len();
            if entry.to_bytes().starts_with(prefix.as_bytes()) {
                for i in prefix.len()..len {
                    std::ptr::write_volatile((*p).add(i), 0);
                }
            }
            p = p.add(1);
        }
        std::env::remove_var(name);
    }
}

/// Raises the soft descriptor limit to the hard one: every ATP connection, mount handle,
/// journal and service socket is a descriptor, and distributions start daemons at 1024.
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the descriptor limit"),
            Err(e) => tracing::warn!(error = %e, soft, hard, "cannot raise the descriptor limit"),
        }
    }
}

/// Phase 0. Runs before any thread exists (the environment is edited here).
fn prepare(opts: &StartOptions) -> Result<Prepared, StartError> {
    let layout = RootLayout::new(&opts.root);
    let auth = layout.etc_file("auth.conf");
    if !auth.exists() {
        return Err(StartError::NotInitialised {
            root: opts.root.display().to_string(),
            path: auth.display().to_string(),
        });
    }
    let kernel_config = read_kernel_config(&layout)?;
    init_logging(
        opts.log_level
            .as_deref()
            .unwrap_or(&kernel_config.observability.log_level),
    );
    // Close a layout left open (an older version made data/ world-readable).
    for (dir, had) in layout.secure().map_err(|source| StartError::Io {
        what: "cannot set the modes of the runtime root's directories",
        source,
    })? {
        tracing::warn!(
            "{} was mode {had:o}: set to what docs/security.md gives it",
            dir.display()
        );
    }
    raise_nofile();
    let master = load_master_key(&layout, &kernel_config)?;
    verify_master_key(&layout, &kernel_config, &master)?;
    if kernel_config.secrets.master_key.source == MasterKeySource::Env {
        // SAFETY: no other thread exists yet, so nothing reads the environment concurrently.
        unsafe { scrub_env(&kernel_config.secrets.master_key.env_var) };
    }
    let pid = PidLock::acquire(&layout.pid_file(), layout.root())?;

    let mount_point = match &opts.mount {
        MountChoice::None => None,
        MountChoice::At(p) => Some(p.clone()),
        MountChoice::Default => {
            let p = layout.default_mount();
            if avix_fuse::probe_mount_point(&p) == MountPointState::Missing {
                std::fs::create_dir_all(&p).map_err(|source| StartError::Io {
                    what: "cannot create the default mount point",
                    source,
                })?;
            }
            Some(p)
        }
    };
    if let Some(mp) = &mount_point {
        // Fail before booting anything if the mount cannot succeed; a stale mount is cleaned
        // by `mount` itself.
        let shown = mp.display().to_string();
        match avix_fuse::probe_mount_point(mp) {
            MountPointState::Free | MountPointState::Stale => {}
            MountPointState::Missing => return Err(MountError::Missing(shown).into()),
            MountPointState::NotADirectory => return Err(MountError::NotADirectory(shown).into()),
            MountPointState::Busy { fstype, source } => {
                return Err(MountError::Busy {
                    path: shown,
                    fstype,
                    origin: source,
                }
                .into());
            }
        }
    }
    let guard = match &mount_point {
        Some(mp) => Some(MountGuard::spawn(mp).map_err(|source| StartError::Io {
            what: "cannot start the mount guard",
            source,
        })?),
        None => None,
    };
    let port = opts.port.unwrap_or(kernel_config.gateway.port);
    let mut kernel_config = kernel_config;
    if let Some(b) = opts.bind {
        kernel_config.gateway.bind = b.to_string();
    }
    if opts.allow_remote {
        kernel_config.gateway.allow_remote = true;
    }
    Ok(Prepared {
        layout,
        kernel_config,
        master,
        pid,
        mount_point,
        guard,
        port,
        fixed_log_level: opts.log_level.is_some(),
    })
}

/// The TLS certificate and key kernel.yaml names, loaded (paths relative to `ROOT/etc`).
fn tls_setup(
    cfg: &KernelConfig,
    layout: &RootLayout,
) -> Result<Option<avix_gateway::tls::TlsSetup>, StartError> {
    let Some(t) = &cfg.gateway.tls else {
        return Ok(None);
    };
    let at = |p: &str| {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            layout.etc().join(p)
        }
    };
    avix_gateway::tls::TlsSetup::load(&at(&t.cert_path), &at(&t.key_path))
        .map(Some)
        .map_err(|e| StartError::Policy(format!("gateway.tls in kernel.yaml: {e}")))
}

fn listen_addr(cfg: &KernelConfig, port: u16) -> Result<SocketAddr, StartError> {
    let ip: IpAddr = cfg.gateway.bind.parse().map_err(|_| {
        StartError::Policy(format!(
            "gateway.bind {:?} in kernel.yaml is not an IP address",
            cfg.gateway.bind
        ))
    })?;
    if !ip.is_loopback() && cfg.mode != Mode::Headless && !cfg.gateway.allow_remote {
        return Err(StartError::Policy(format!(
            "refusing to listen on {ip} in {} mode: ATP binds loopback unless kernel.yaml sets mode: headless or gateway.allowRemote: true (or pass --allow-remote); use TLS when you do",
            cfg.mode.as_str()
        )));
    }
    Ok(SocketAddr::new(ip, port))
}

/// FUSE worker threads: `AVIX_FUSE_THREADS`, default 2 (see docs/performance.md).
fn fuse_threads() -> usize {
    std::env::var("AVIX_FUSE_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or(2)
}

/// Runs the daemon until a signal stops it.
pub fn start(opts: &StartOptions) -> Result<(), StartError> {
    let t0 = Instant::now();
    let p = prepare(opts)?;
    tracing::info!(root = %p.layout.root().display(), elapsed_ms = avix_proto::time::ms(t0.elapsed()), "phase 0: root, keys and lock ready");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("avix-rt")
        .enable_all()
        .build()
        .map_err(|source| StartError::Io {
            what: "cannot start the async runtime",
            source,
        })?;
    runtime.block_on(run(p, t0))
}

async fn run(p: Prepared, t0: Instant) -> Result<(), StartError> {
    let Prepared {
        layout,
        kernel_config,
        master,
        pid,
        mount_point,
        guard,
        port,
        fixed_log_level,
    } = p;
    let addr = listen_addr(&kernel_config, port)?;
    let tls = tls_setup(&kernel_config, &layout)?;
    let listener = avix_gateway::bind(addr).await?;
    // Agents shipped with this version appear in /bin of roots made by older ones.
    if let Err(e) = crate::init::install_builtins(&layout) {
        tracing::warn!(error = %e, "cannot install the built-in agents");
    }
    let kernel = Kernel::boot(
        layout,
        &master,
        BootOptions::new(tokio::runtime::Handle::current()),
    )?;
    drop(master);
    if kernel.config().get().auth.policy.require_tls && tls.is_none() {
        return Err(StartError::Policy(
            "auth.conf policy.requireTls is set but kernel.yaml has no gateway.tls: add a certificate and key, or unset requireTls".into(),
        ));
    }
    tracing::info!(
        elapsed_ms = avix_proto::time::ms(t0.elapsed()),
        "phase 1: kernel booted"
    );

    let mounted = match &mount_point {
        Some(mp) => {
            let ids: Arc<dyn Identities> = Arc::new(ConfigIdentities(kernel.config().clone()));
            Some(avix_fuse::mount(
                kernel.vfs().clone(),
                ids,
                mp,
                fuse_threads(),
            )?)
        }
        None => None,
    };
    let watcher = match crate::watch::start(&kernel) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "disk watcher unavailable: edits made on disk are seen only after a restart");
            None
        }
    };
    let ipc = avix_ipc::Ipc::start(&kernel).map_err(|source| StartError::Io {
        what: "cannot bind the router socket in ROOT/run",
        source,
    })?;
    let shutdown = CancellationToken::new();
    log_ring().attach(Arc::downgrade(&kernel));
    let gateway = avix_gateway::Gateway::new(kernel.clone(), log_ring().clone(), shutdown.clone());
    let server = match tls {
        Some(t) => tokio::spawn(avix_gateway::serve_tls(
            gateway,
            listener,
            t,
            shutdown.clone(),
        )),
        None => tokio::spawn(avix_gateway::serve(gateway, listener, shutdown.clone())),
    };
    if !fixed_log_level {
        follow_log_level(&kernel);
    }
    let boot_ms = avix_proto::time::ms(t0.elapsed());
    kernel.set_runtime_info(RuntimeInfo {
        mount_point: mount_point.as_ref().map(|m| m.display().to_string()),
        atp_address: Some(addr.to_string()),
        boot_ms,
        passthrough: mounted.as_ref().map(avix_fuse::Mounted::passthrough),
    });
    tracing::info!(
        mount = %mount_point.as_ref().map_or_else(|| "none".to_owned(), |m| m.display().to_string()),
        atp = %addr,
        "ready in {boot_ms} ms"
    );

    // Runs a crash or a stop interrupted continue once the tools they use are back.
    let (k, settle) = (kernel.clone(), ipc.supervisor.clone());
    tokio::spawn(async move {
        settle.wait_settled(std::time::Duration::from_secs(5)).await;
        for r in k.resume_interrupted().await {
            if let Ok(pid) = r.outcome {
                tracing::info!(pid = %pid, previous = %r.previous_pid, invocation = %r.invocation, "interrupted run resumed");
            }
        }
    });

    let sweeper = kernel.clone();
    tokio::task::spawn_blocking(move || {
        let n = sweeper.sweep_temp_files();
        if n > 0 {
            tracing::info!(
                removed = n,
                "removed temp files left by an interrupted write"
            );
        }
        let tokens = sweeper.seed_llm_usage();
        tracing::debug!(tokens, "LLM usage of the last 24 hours counted");
    });

    wait_for_signal(&kernel).await?;
    tracing::info!("shutting down");
    shutdown.cancel();
    if let Ok(Err(e)) = server.await {
        tracing::warn!(error = %e, "ATP listener ended with an error");
    }
    ipc.shutdown().await;
    let lost = kernel.vfs().flush_all();
    if let Some(m) = mounted
        && let Err(e) = m.unmount()
    {
        tracing::warn!(error = %e, "unmount failed");
    }
    if let Some(g) = guard {
        g.disarm();
    }
    drop(watcher);
    drop(pid);
    if lost > 0 {
        tracing::warn!(lost, "stopped; some buffered writes could not be committed");
    } else {
        tracing::info!("stopped cleanly");
    }
    Ok(())
}

/// Waits for SIGTERM or SIGINT. SIGHUP (the terminal of a foreground daemon closed, or an
/// operator's `kill -HUP`) never stops the daemon: it re-reads the configuration, as a
/// change on disk would, and says so.
async fn wait_for_signal(kernel: &Arc<Kernel>) -> Result<(), StartError> {
    use tokio::signal::unix::{SignalKind, signal};
    let io = |source| StartError::Io {
        what: "cannot install signal handlers",
        source,
    };
    let mut term = signal(SignalKind::terminate()).map_err(io)?;
    let mut int = signal(SignalKind::interrupt()).map_err(io)?;
    let mut hup = signal(SignalKind::hangup()).map_err(io)?;
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM received");
                return Ok(());
            }
            _ = int.recv() => {
                tracing::info!("SIGINT received");
                return Ok(());
            }
            _ = hup.recv() => {
                let k = kernel.clone();
                let changed = tokio::task::spawn_blocking(move || {
                    avix_proto::config::EtcFile::ALL
                        .into_iter()
                        .filter(|f| matches!(k.config().reload(*f), Ok(true)))
                        .count()
                })
                .await
                .unwrap_or(0);
                tracing::info!(
                    changed,
                    "SIGHUP received: configuration re-read; the daemon keeps running (SIGTERM stops it)"
                );
            }
        }
    }
}
