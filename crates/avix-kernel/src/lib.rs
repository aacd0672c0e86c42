//! The Avix kernel: owns the VFS and the configuration, and publishes what the system is
//! doing under `/proc` and `/kernel`. It knows nothing of FUSE, HTTP or sockets; the doors
//! (mount, ATP gateway, IPC) depend on it, never the reverse.
//!
//! # Layout
//! - [`layout`]: where things live under the runtime root.
//! - [`root`]: creating a runtime root (configuration, keys, the built-in agents).
//! - [`config`]: the configuration in force, identities, hot reload and the `/etc/avix` guard.
//! - [`system`]: the compiled-in `/kernel` files and `/proc/status.yaml`.
//! - [`process`]: the process table, states, signals, grants.
//! - [`spawn`]: from a spawn request to a running process (manifest, parameters, grants).
//! - [`executor`]: the turn loop that is each process's body.
//! - [`router`]: the policy check and dispatch of every tool call.
//! - [`tools`]: the tool registry, `/tools`, and the built-in tools.
//! - [`hil`]: human-in-the-loop requests.
//! - [`journal`]: per-invocation journals and invocation records, typed, over the
//!   storage seam (`avix_vfs::storage::InvocationStore`).
//! - [`snapshots`]: SIGSAVE snapshots and restoring them.
//! - [`procfs`]: `/proc/spawn` and `/proc/<pid>/…`.
//! - [`catalog`]: installed agents.
//! - [`events`]: the event bus the doors subscribe to.
//! - [`pipes`]: pipes between agents, and jobs.
//! - [`pid`]: PID allocation.
//!
//! Boot ([`Kernel::boot`]) loads and checks the configuration, builds the mount table and
//! publishes the synthetic files; the daemon then adds the doors.

mod caps;
pub mod catalog;
pub mod changes;
pub mod config;
pub mod events;
pub mod executor;
pub mod fsutil;
pub mod hil;
pub mod journal;
pub mod layout;
pub mod pid;
pub mod pipes;
pub mod policy;
pub mod process;
pub mod procfs;
mod reap;
pub mod records;
pub mod recovery;
pub mod root;
pub mod router;
pub mod secrets;
pub mod services;
pub mod sessions;
pub mod snapshots;
pub mod spawn;
pub mod system;
pub mod tools;

use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use avix_auth::{MasterKey, Purpose, SubKey};
use avix_llm::{LlmClient, LlmService, ServicePaths};
use avix_proto::UserName;
use avix_proto::agent::{JournalEvent, ProcState};
use avix_proto::config::EtcFile;
use avix_proto::time::Timestamp;
use avix_vfs::{Caller, LocalStorage, Vfs, VfsPath};

use crate::config::{ConfigError, ConfigStore};
use crate::events::EventBus;
use crate::hil::HilManager;
use crate::journal::Journals;
use crate::layout::RootLayout;
use crate::pid::PidAllocator;
use crate::pipes::{Jobs, Pipes};
use crate::process::{Process, ProcessTable, Signal};
use crate::tools::ToolRegistry;

/// Lifetime of a capability token.
pub const TOKEN_TTL_SECS: i64 = 3600;
/// A token is renewed when less than this is left.
pub const TOKEN_RENEWAL_SECS: i64 = 300;

/// How long an exited process stays in `/proc` before it is reaped.
pub const EXITED_RETENTION: Duration = Duration::from_secs(600);
/// Exited processes kept at most; past it the oldest are reaped at once.
pub const MAX_EXITED: usize = 1000;

/// What the kernel needs besides the root and the key.
pub struct BootOptions {
    /// The async runtime executors run on.
    pub runtime: tokio::runtime::Handle,
    /// The LLM client; by default llm.svc built from llm.yaml.
    pub llm: Option<Arc<dyn LlmClient>>,
    /// Where journals and invocation records are kept; by default files in the users' tree
    /// (`/users/<u>/agents/<agent>/<id>/`).
    pub invocations: Option<Arc<dyn avix_vfs::storage::InvocationStore>>,
}

impl BootOptions {
    /// The defaults: llm.svc from llm.yaml, journals in the users' tree.
    pub fn new(runtime: tokio::runtime::Handle) -> Self {
        Self {
            runtime,
            llm: None,
            invocations: None,
        }
    }
}

impl std::fmt::Debug for BootOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootOptions")
            .field("custom_llm", &self.llm.is_some())
            .field(
                "invocations",
                &self.invocations.as_ref().map_or("local", |s| s.kind()),
            )
            .finish()
    }
}

/// Why the kernel cannot boot.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Configuration missing or invalid, or the wrong master key.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Kernel state (PID counter, journal writer) cannot be set up.
    #[error("cannot set up {what}: {reason}")]
    State {
        /// What.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A data directory is missing or unusable.
    #[error(
        "cannot use {path}: {reason}; run `avix server config init --root {root}` to create the layout"
    )]
    Layout {
        /// The directory.
        path: String,
        /// What is wrong.
        reason: String,
        /// The root.
        root: String,
    },
}

/// Facts about the running daemon that the doors report back (shown in `/proc/status.yaml`).
#[derive(Debug, Clone, Default)]
pub struct RuntimeInfo {
    /// Where the VFS is mounted.
    pub mount_point: Option<String>,
    /// Where ATP listens.
    pub atp_address: Option<String>,
    /// Boot to ready, in milliseconds.
    pub boot_ms: u64,
    /// Set while the mount serves data trees with FUSE passthrough (the kernel does their
    /// I/O); clear while the daemon serves it. `None` without a mount.
    pub passthrough: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// Keys derived from the master key at boot; the master key itself is not kept.
pub struct KernelKeys {
    /// ATP token MAC.
    pub atp_token: SubKey,
    /// Capability token MAC.
    pub capability: SubKey,
    /// API-key hashing.
    pub api_key: SubKey,
    /// Secrets encryption.
    pub secrets: SubKey,
}

impl std::fmt::Debug for KernelKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KernelKeys(<redacted>)")
    }
}

/// The kernel.
pub struct Kernel {
    layout: RootLayout,
    vfs: Arc<Vfs>,
    config: Arc<ConfigStore>,
    keys: KernelKeys,
    started: Instant,
    started_at: Timestamp,
    /// kernel.yaml as it was at boot: what the settings that need a restart are still set to.
    started_with: avix_proto::config::kernel::KernelConfig,
    // Written by the daemon once the doors are up; read by the status file.
    runtime_info: RwLock<RuntimeInfo>,
    rt: tokio::runtime::Handle,
    pids: PidAllocator,
    procs: ProcessTable,
    tools: ToolRegistry,
    hil: HilManager,
    journals: Journals,
    sessions: sessions::SessionLock,
    llm: Arc<dyn LlmClient>,
    llm_service: Option<Arc<LlmService>>,
    events: EventBus,
    pipes: Pipes,
    jobs: Jobs,
    services: OnceLock<Arc<dyn services::ServiceControl>>,
    secrets: secrets::SecretStore,
    ids: changes::IdCache,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("root", &self.layout.root())
            .finish_non_exhaustive()
    }
}

impl Kernel {
    /// Boots the kernel for `layout` with `master`: loads the configuration (refusing a
    /// master key that is not this root's), builds the VFS and publishes the synthetic files.
    pub fn boot(
        layout: RootLayout,
        master: &MasterKey,
        opts: BootOptions,
    ) -> Result<Arc<Self>, BootError> {
        let started = Instant::now();
        let config = Arc::new(ConfigStore::load(layout.clone(), master)?);
        tracing::debug!(
            elapsed_us = avix_proto::time::us(started.elapsed()),
            "boot phase 1: configuration loaded"
        );

        let mut builder = Vfs::builder();
        for (prefix, dir) in layout.trees() {
            let storage = LocalStorage::new(&dir).map_err(|e| BootError::Layout {
                path: dir.display().to_string(),
                reason: e.to_string(),
                root: layout.root().display().to_string(),
            })?;
            builder = builder.mount_storage(prefix, Arc::new(storage));
        }
        let vfs = builder
            .mount_synthetic(path("/proc"))
            .mount_synthetic(path("/kernel"))
            .mount_synthetic(path("/tools"))
            .mount_sealed(path("/secrets"))
            .guard(path("/etc/avix"), Arc::new(config.guard()))
            .build();
        let vfs = Arc::new(vfs);
        let keys = KernelKeys {
            atp_token: master.derive(Purpose::AtpToken),
            capability: master.derive(Purpose::Capability),
            api_key: master.derive(Purpose::ApiKeyHash),
            secrets: master.derive(Purpose::Secrets),
        };
        let pids =
            PidAllocator::open(layout.state().join("pid.next")).map_err(|e| BootError::State {
                what: "the PID counter",
                reason: e.to_string(),
            })?;
        let journals = Journals::new(match opts.invocations {
            Some(store) => store,
            None => Arc::new(
                avix_vfs::storage::LocalInvocations::new(layout.data().join("users")).map_err(
                    |e| BootError::State {
                        what: "the journal writer",
                        reason: e.to_string(),
                    },
                )?,
            ),
        });
        let (llm, llm_service) = match opts.llm {
            Some(l) => (l, None),
            None => {
                let svc = Arc::new(LlmService::new(
                    config.get().llm.as_ref(),
                    ServicePaths {
                        etc: layout.etc(),
                        journals: Arc::new(journals.clone()),
                    },
                ));
                (svc.clone() as Arc<dyn LlmClient>, Some(svc))
            }
        };
        let secrets_store = secrets::SecretStore::new(layout.secrets(), &keys.secrets);
        let started_with = config.get().kernel.clone();
        let kernel = Arc::new(Self {
            layout,
            vfs,
            started_with,
            config,
            keys,
            started,
            started_at: Timestamp::now(),
            runtime_info: RwLock::new(RuntimeInfo::default()),
            rt: opts.runtime,
            pids,
            procs: ProcessTable::default(),
            tools: ToolRegistry::default(),
            hil: HilManager::default(),
            journals,
            sessions: sessions::SessionLock::default(),
            llm,
            llm_service,
            events: EventBus::default(),
            pipes: Pipes::default(),
            jobs: Jobs::default(),
            services: OnceLock::new(),
            secrets: secrets_store,
            ids: changes::IdCache::default(),
        });
        system::publish(&kernel);
        tools::register_builtins(&kernel);
        procfs::publish_spawn(&kernel);
        kernel.ensure_homes();
        kernel.watch_config();
        tracing::debug!(
            elapsed_us = avix_proto::time::us(started.elapsed()),
            "boot phase 2: VFS ready"
        );
        Ok(kernel)
    }

    /// Attaches the service supervisor (once, by the daemon).
    pub fn set_services(&self, s: Arc<dyn services::ServiceControl>) {
        let _ = self.services.set(s);
    }

    /// The secret store.
    pub fn secrets(&self) -> &secrets::SecretStore {
        &self.secrets
    }

    /// The service supervisor, when the daemon runs one.
    pub fn services(&self) -> Option<&Arc<dyn services::ServiceControl>> {
        self.services.get()
    }

    /// The VFS.
    pub fn vfs(&self) -> &Arc<Vfs> {
        &self.vfs
    }

    /// The configuration store.
    pub fn config(&self) -> &Arc<ConfigStore> {
        &self.config
    }

    /// The runtime root layout.
    pub fn layout(&self) -> &RootLayout {
        &self.layout
    }

    /// The derived keys.
    pub fn keys(&self) -> &KernelKeys {
        &self.keys
    }

    /// When boot started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Records what the doors report (mount point, ATP address, boot time).
    pub fn set_runtime_info(&self, info: RuntimeInfo) {
        *self
            .runtime_info
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = info;
    }

    /// What the doors reported.
    pub fn runtime_info(&self) -> RuntimeInfo {
        self.runtime_info
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The async runtime.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.rt
    }

    /// Runs `fut` to completion from synchronous code (a FUSE request thread, or a blocking
    /// section of an async task).
    pub fn block_on<F: std::future::Future>(&self, fut: F) -> F::Output {
        match tokio::runtime::Handle::try_current() {
            Ok(h) => tokio::task::block_in_place(|| h.block_on(fut)),
            Err(_) => self.rt.block_on(fut),
        }
    }

    /// PID allocation.
    pub fn pids(&self) -> &PidAllocator {
        &self.pids
    }

    /// The process table.
    pub fn procs(&self) -> &ProcessTable {
        &self.procs
    }

    /// The tool registry.
    pub fn tools(&self) -> &ToolRegistry {
        &self.tools
    }

    /// HIL requests.
    pub fn hil(&self) -> &HilManager {
        &self.hil
    }

    /// The journals and invocation records of every run.
    pub fn journals(&self) -> &Journals {
        &self.journals
    }

    /// The lock session updates take.
    pub(crate) fn sessions_lock(&self) -> &sessions::SessionLock {
        &self.sessions
    }

    /// llm.svc, unless the kernel was booted with another LLM client (tests, benchmarks).
    pub fn llm_service(&self) -> Option<&Arc<LlmService>> {
        self.llm_service.as_ref()
    }

    /// The LLM client agents use.
    pub fn llm(&self) -> Arc<dyn LlmClient> {
        self.llm.clone()
    }

    /// The event bus.
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// Pipes between agents.
    pub fn pipes(&self) -> &Pipes {
        &self.pipes
    }

    /// Jobs.
    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    /// The workspace of `user` (users.yaml, or `/users/<u>/workspace`).
    pub fn workspace_of(&self, user: &UserName) -> String {
        self.default_workspace(user.as_str())
    }

    /// [`Kernel::workspace_of`] by name.
    pub fn default_workspace(&self, user: &str) -> String {
        self.config.get().users.get(user).map_or_else(
            || format!("/users/{user}/workspace"),
            avix_proto::config::users::User::workspace_path,
        )
    }

    /// Sets a process's state, journals it and tells subscribers.
    pub fn set_state(&self, p: &Process, state: ProcState, waiting_on: Option<&str>) {
        if p.state().is_terminal()
            || (p.state() == state && p.inner().waiting_on.as_deref() == waiting_on)
        {
            return;
        }
        p.set_state(state, waiting_on);
        p.journal.append(JournalEvent::State {
            state,
            waiting_on: waiting_on.map(str::to_owned),
        });
        self.events.publish(
            p,
            &avix_proto::event::Status {
                state,
                waiting_on: waiting_on.map(str::to_owned),
            },
        );
    }

    /// Sends `sig` to `p` as `caller`: the owner, an operator or admin, the kernel, or an agent
    /// that is an ancestor of `p`. Kill, stop, pause and resume also reach `p`'s live
    /// descendants.
    pub fn signal(
        &self,
        caller: &Caller,
        p: &Arc<Process>,
        sig: Signal,
    ) -> Result<(), avix_proto::Error> {
        policy::check_signal(caller, &self.procs, p)?;
        if sig == Signal::Save {
            // The kernel takes snapshots itself, from the journal, in any state.
            return self.save_snapshot(caller, p).map(drop);
        }
        p.send(sig.clone())?;
        p.journal.append(JournalEvent::Signal {
            signal: sig.name().into(),
            from: caller.to_string(),
            payload: None,
        });
        self.events.publish(
            p,
            &avix_proto::event::Signalled {
                signal: sig.name().into(),
                from: caller.to_string(),
            },
        );
        if matches!(
            sig,
            Signal::Kill | Signal::Stop | Signal::Pause | Signal::Resume
        ) {
            let children = p.inner().children.clone();
            for c in children.into_iter().filter_map(|c| self.procs.get(c)) {
                if !c.state().is_terminal() {
                    let _ = self.signal(&Caller::kernel(), &c, sig.clone());
                }
            }
        }
        Ok(())
    }

    /// Removes temp files that writes interrupted by a crash left under the persistent trees
    /// (only those older than this boot). Slow on large trees: call it off the boot path.
    pub fn sweep_temp_files(&self) -> usize {
        let boot = std::time::SystemTime::now() - self.started.elapsed();
        self.layout
            .trees()
            .into_iter()
            .filter_map(|(_, dir)| LocalStorage::new(dir).ok())
            .map(|s| s.sweep_temp_files(boot))
            .sum()
    }

    /// Creates `/users/<u>/workspace` for every user that lacks it.
    fn ensure_homes(&self) {
        let k = Caller::kernel();
        for u in &self.config.get().users.users {
            for dir in [
                format!("/users/{}", u.username),
                format!("/users/{}/workspace", u.username),
            ] {
                let Ok(p) = VfsPath::parse(&dir) else {
                    continue;
                };
                if self.vfs.stat(&k, &p).is_err()
                    && let Err(e) = self.vfs.create_dir(&k, &p)
                {
                    tracing::warn!(error = %e, "cannot create a home directory");
                }
            }
        }
    }

    /// Settings of kernel.yaml changed since boot that take effect only at the next start.
    pub fn restart_needed(&self) -> Vec<&'static str> {
        self.config.get().kernel.restart_needed(&self.started_with)
    }

    /// Reloads configuration whenever a file in `/etc/avix` changes, through any door or on
    /// disk.
    fn watch_config(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let etc = path("/etc/avix");
        self.vfs.subscribe(move |change| {
            let Some(k) = weak.upgrade() else { return };
            if change.path.parent().as_ref() != Some(&etc) {
                return;
            }
            let Some(file) = change.path.file_name().and_then(EtcFile::from_name) else {
                return;
            };
            if let Ok(true) = k.config.reload(file) {
                match file {
                    EtcFile::Kernel => {
                        let pending = k.restart_needed();
                        if !pending.is_empty() {
                            tracing::warn!(
                                settings = %pending.join(", "),
                                "kernel.yaml changed settings that take effect at the next start (avix server stop, then start); the rest applies now"
                            );
                        }
                    }
                    EtcFile::Users => k.ensure_homes(),
                    EtcFile::Llm => {
                        if let Some(svc) = &k.llm_service {
                            svc.reload(k.config.get().llm.as_ref());
                        }
                    }
                    _ => {}
                }
            }
        });
    }
}

/// Parses a path that is known to be valid.
fn path(s: &str) -> VfsPath {
    VfsPath::parse(s).unwrap_or_else(|_| VfsPath::root())
}
