//! `/etc/avix/kernel.yaml`: daemon-wide settings. Every field has a default.

use serde::{Deserialize, Serialize};

use crate::envelope::Kind;
use crate::time::HumanDuration;

/// How the installation is deployed; decides defaults for binding and key storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Desktop app: loopback only, key file.
    Gui,
    /// Personal machine: loopback only, key file.
    #[default]
    Cli,
    /// Server or container: may bind other addresses; key from the environment.
    Headless,
}

impl Mode {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Gui => "gui",
            Mode::Cli => "cli",
            Mode::Headless => "headless",
        }
    }
}

/// Where the master key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MasterKeySource {
    /// The environment variable named by `envVar` (default `AVIX_MASTER_KEY`).
    #[default]
    Env,
    /// A 0600 file under `ROOT/etc` named by `keyFile` (default `master.key`).
    File,
}

/// The body of `kernel.yaml`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KernelConfig {
    /// Deployment mode.
    #[serde(default)]
    pub mode: Mode,
    /// The ATP gateway.
    #[serde(default)]
    pub gateway: Gateway,
    /// Scheduling limits.
    #[serde(default)]
    pub scheduler: Scheduler,
    /// Safety policy.
    #[serde(default)]
    pub safety: Safety,
    /// Model choices.
    #[serde(default)]
    pub models: Models,
    /// Internal IPC (restart required to change).
    #[serde(default)]
    pub ipc: Ipc,
    /// exec.svc: the sandbox for exec/python and exec/shell.
    #[serde(default)]
    pub exec: Exec,
    /// Logging.
    #[serde(default)]
    pub observability: Observability,
    /// Secrets and the master key.
    #[serde(default)]
    pub secrets: Secrets,
}

impl KernelConfig {
    /// The settings of `self` that differ from `running` (the configuration the daemon started
    /// with) and take effect only at the next start: the deployment mode, the ATP gateway (its
    /// listener and limits are set up once) and the master-key source. Everything else in
    /// kernel.yaml applies at once.
    pub fn restart_needed(&self, running: &KernelConfig) -> Vec<&'static str> {
        let g = (&self.gateway, &running.gateway);
        [
            ("mode", self.mode != running.mode),
            ("gateway.bind", g.0.bind != g.1.bind),
            ("gateway.port", g.0.port != g.1.port),
            ("gateway.allowRemote", g.0.allow_remote != g.1.allow_remote),
            ("gateway.tls", g.0.tls != g.1.tls),
            (
                "gateway.maxConnections",
                g.0.max_connections != g.1.max_connections,
            ),
            ("gateway.maxPending", g.0.max_pending != g.1.max_pending),
            (
                "gateway.maxPendingPerPeer",
                g.0.max_pending_per_peer != g.1.max_pending_per_peer,
            ),
            (
                "gateway.requestTimeout",
                g.0.request_timeout != g.1.request_timeout,
            ),
            ("gateway.idleTimeout", g.0.idle_timeout != g.1.idle_timeout),
            ("secrets", self.secrets != running.secrets),
        ]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
    }
}

/// ATP gateway settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gateway {
    /// Address to bind; loopback unless the mode is headless or `allowRemote` is set.
    #[serde(default = "default_bind")]
    pub bind: String,
    /// TCP port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Explicitly allow a non-loopback bind outside headless mode.
    #[serde(default)]
    pub allow_remote: bool,
    /// TLS certificate and key (PEM), if TLS is wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// Connections open at once (WebSockets and HTTP); further ones are closed at accept.
    /// Also capped by the descriptors the daemon may open, less a reserve for the kernel.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Connections that have not yet sent a whole request (or finished TLS) at once; when
    /// full, the oldest is closed to admit a new one, so idle sockets cannot lock others out.
    #[serde(default = "default_max_pending")]
    pub max_pending: u32,
    /// Pending connections from one remote address (loopback, which all local clients
    /// share, relies on the eviction above instead).
    #[serde(default = "default_max_pending_per_peer")]
    pub max_pending_per_peer: u32,
    /// Time a connection has to send its first whole request.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: crate::time::HumanDuration,
    /// A connection with no traffic either way for this long is closed (WebSockets are
    /// pinged every 30 s, so a live one never is).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: crate::time::HumanDuration,
}

fn default_max_connections() -> u32 {
    4096
}
fn default_max_pending() -> u32 {
    1024
}
fn default_max_pending_per_peer() -> u32 {
    64
}
fn default_request_timeout() -> crate::time::HumanDuration {
    crate::time::HumanDuration::from_secs(10)
}
fn default_idle_timeout() -> crate::time::HumanDuration {
    crate::time::HumanDuration::from_secs(120)
}

/// TLS files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain.
    pub cert_path: String,
    /// PEM private key.
    pub key_path: String,
}

/// The default ATP port.
pub const DEFAULT_PORT: u16 = 9142;

fn default_bind() -> String {
    "127.0.0.1".to_owned()
}
fn default_port() -> u16 {
    DEFAULT_PORT
}

impl Default for Gateway {
    fn default() -> Self {
        Self {
            bind: default_bind(),
            port: default_port(),
            allow_remote: false,
            tls: None,
            max_connections: default_max_connections(),
            max_pending: default_max_pending(),
            max_pending_per_peer: default_max_pending_per_peer(),
            request_timeout: default_request_timeout(),
            idle_timeout: default_idle_timeout(),
        }
    }
}

/// Scheduling limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scheduler {
    /// Agents running at once across all users.
    #[serde(default = "default_max_agents")]
    pub max_concurrent_agents: u32,
    /// At start, continue the runs a crash or stop interrupted (from their journals, under
    /// new PIDs), pending approvals included.
    #[serde(default = "default_resume")]
    pub resume_interrupted: bool,
}

fn default_max_agents() -> u32 {
    100
}

fn default_resume() -> bool {
    true
}

impl Default for Scheduler {
    fn default() -> Self {
        Self {
            max_concurrent_agents: default_max_agents(),
            resume_interrupted: default_resume(),
        }
    }
}

/// What a HIL request that times out means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HilTimeoutDecision {
    /// Timeout counts as a denial.
    #[default]
    Deny,
    /// Timeout counts as an approval (only for trusted setups).
    Approve,
}

/// Safety policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Safety {
    /// Tool calls in one chain before the agent is stopped.
    #[serde(default = "default_chain")]
    pub max_tool_chain_length: u32,
    /// How long a HIL request waits for a human.
    #[serde(default = "default_hil_timeout")]
    pub hil_timeout: HumanDuration,
    /// What a HIL timeout means.
    #[serde(default)]
    pub hil_timeout_decision: HilTimeoutDecision,
    /// Tools that need a human's approval on every call, even when granted.
    #[serde(default)]
    pub hil_required_tools: Vec<String>,
    /// Whether `cap/request-tool` always asks a human.
    #[serde(default = "yes")]
    pub cap_upgrade_requires_hil: bool,
}

fn default_chain() -> u32 {
    50
}
fn default_hil_timeout() -> HumanDuration {
    HumanDuration::from_secs(600)
}
fn yes() -> bool {
    true
}

impl Default for Safety {
    fn default() -> Self {
        Self {
            max_tool_chain_length: default_chain(),
            hil_timeout: default_hil_timeout(),
            hil_timeout_decision: HilTimeoutDecision::default(),
            hil_required_tools: Vec::new(),
            cap_upgrade_requires_hil: true,
        }
    }
}

/// Model choices.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Models {
    /// Model (or alias from llm.yaml) agents use when their manifest names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// Internal IPC settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ipc {
    /// Largest JSON-RPC frame.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: u32,
    /// Per-call timeout in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_max_message() -> u32 {
    1024 * 1024
}
fn default_timeout_ms() -> u64 {
    5000
}

impl Default for Ipc {
    fn default() -> Self {
        Self {
            max_message_bytes: default_max_message(),
            timeout_ms: default_timeout_ms(),
        }
    }
}

/// Sandbox limits for exec/python and exec/shell (see docs/services.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Exec {
    /// The bubblewrap binary.
    #[serde(default = "default_bwrap")]
    pub bwrap: String,
    /// Python inside the sandbox.
    #[serde(default = "default_python")]
    pub python: String,
    /// Shell inside the sandbox.
    #[serde(default = "default_shell")]
    pub shell: String,
    /// Wall-clock limit per run (a call may ask for less).
    #[serde(default = "d60")]
    pub timeout_secs: u64,
    /// CPU seconds per run (RLIMIT_CPU).
    #[serde(default = "d30")]
    pub cpu_secs: u64,
    /// Address space per process (RLIMIT_AS), MiB.
    #[serde(default = "d1024")]
    pub memory_mb: u64,
    /// Processes and threads per run (pids cgroup; RLIMIT_NPROC without one).
    #[serde(default = "d64")]
    pub processes: u64,
    /// Largest file a run may write (RLIMIT_FSIZE), MiB.
    #[serde(default = "d64")]
    pub file_size_mb: u64,
    /// Room in the sandbox's /tmp (tmpfs), MiB.
    #[serde(default = "d64")]
    pub tmp_mb: u64,
    /// Output kept per stream; the rest is counted and dropped.
    #[serde(default = "d65536")]
    pub output_bytes: u64,
    /// A run is refused while the workspace holds more than this, MiB.
    #[serde(default = "d1024")]
    pub workspace_quota_mb: u64,
    /// The host account sandboxes run as when the daemon runs as root (created at start if
    /// missing). Never root: a sandbox that owned its files as root could leave set-user-ID
    /// programs behind.
    #[serde(default = "default_sandbox_user")]
    pub sandbox_user: String,
}

fn default_bwrap() -> String {
    "bwrap".into()
}
fn default_sandbox_user() -> String {
    "avix-sandbox".into()
}
fn default_python() -> String {
    "python3".into()
}
fn default_shell() -> String {
    "/bin/sh".into()
}
fn d30() -> u64 {
    30
}
fn d60() -> u64 {
    60
}
fn d64() -> u64 {
    64
}
fn d1024() -> u64 {
    1024
}
fn d65536() -> u64 {
    65536
}

impl Default for Exec {
    fn default() -> Self {
        Self {
            bwrap: default_bwrap(),
            python: default_python(),
            shell: default_shell(),
            timeout_secs: d60(),
            cpu_secs: d30(),
            memory_mb: d1024(),
            processes: d64(),
            file_size_mb: d64(),
            tmp_mb: d64(),
            output_bytes: d65536(),
            workspace_quota_mb: d1024(),
            sandbox_user: default_sandbox_user(),
        }
    }
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Observability {
    /// Default log level (`error`, `warn`, `info`, `debug`, `trace`); `--log-level` overrides.
    #[serde(default = "default_log_level")]
    pub log_level: String,
}

fn default_log_level() -> String {
    "info".to_owned()
}

impl Default for Observability {
    fn default() -> Self {
        Self {
            log_level: default_log_level(),
        }
    }
}

/// Secrets settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Secrets {
    /// Where the master key comes from.
    #[serde(default)]
    pub master_key: MasterKey,
}

/// Master key location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MasterKey {
    /// `env` or `file`.
    #[serde(default)]
    pub source: MasterKeySource,
    /// Environment variable for `env`.
    #[serde(default = "default_env_var")]
    pub env_var: String,
    /// File name under `ROOT/etc` for `file`.
    #[serde(default = "default_key_file")]
    pub key_file: String,
}

/// The default environment variable holding the master key.
pub const MASTER_KEY_ENV: &str = "AVIX_MASTER_KEY";
/// The default key file name under `ROOT/etc`.
pub const MASTER_KEY_FILE: &str = "master.key";

fn default_env_var() -> String {
    MASTER_KEY_ENV.to_owned()
}
fn default_key_file() -> String {
    MASTER_KEY_FILE.to_owned()
}

impl Default for MasterKey {
    fn default() -> Self {
        Self {
            source: MasterKeySource::default(),
            env_var: default_env_var(),
            key_file: default_key_file(),
        }
    }
}

const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

impl Kind for KernelConfig {
    const KIND: &'static str = "KernelConfig";

    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.gateway.bind.parse::<std::net::IpAddr>().is_err() {
            problems.push(format!(
                "gateway.bind {:?} is not an IP address",
                self.gateway.bind
            ));
        }
        if !LOG_LEVELS.contains(&self.observability.log_level.as_str()) {
            problems.push(format!(
                "observability.logLevel {:?} must be one of {}",
                self.observability.log_level,
                LOG_LEVELS.join(", ")
            ));
        }
        let kf = &self.secrets.master_key.key_file;
        if kf.is_empty() || kf.contains('/') || kf.starts_with('.') {
            problems.push(format!(
                "secrets.masterKey.keyFile {kf:?} must be a plain file name"
            ));
        }
        let e = &self.exec;
        for (name, v) in [
            ("timeoutSecs", e.timeout_secs),
            ("cpuSecs", e.cpu_secs),
            ("memoryMb", e.memory_mb),
            ("processes", e.processes),
            ("fileSizeMb", e.file_size_mb),
            ("outputBytes", e.output_bytes),
        ] {
            if v == 0 {
                problems.push(format!("exec.{name} must be more than 0"));
            }
        }
        if e.memory_mb < 64 {
            problems
                .push("exec.memoryMb must be at least 64 (interpreters need it to start)".into());
        }
        if self.ipc.max_message_bytes < 1024 {
            problems.push("ipc.maxMessageBytes must be at least 1024".to_owned());
        }
        if self.scheduler.max_concurrent_agents == 0 {
            problems.push("scheduler.maxConcurrentAgents must be at least 1".to_owned());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Document;

    #[test]
    fn minimal_document_takes_defaults() {
        let doc =
            Document::<KernelConfig>::parse(b"apiVersion: avix/v1\nkind: KernelConfig\nspec: {}\n")
                .unwrap();
        assert_eq!(doc.spec.gateway.port, DEFAULT_PORT);
        assert_eq!(doc.spec.safety.hil_timeout.get().as_secs(), 600);
        assert_eq!(doc.spec.secrets.master_key.env_var, MASTER_KEY_ENV);
    }

    #[test]
    fn rejects_bad_values() {
        let text = "apiVersion: avix/v1\nkind: KernelConfig\nspec:\n  gateway: {bind: everywhere}\n  observability: {logLevel: loud}\n";
        let e = Document::<KernelConfig>::parse(text.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("gateway.bind") && e.contains("logLevel"), "{e}");
    }
}
