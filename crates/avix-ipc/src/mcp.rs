//! mcp-bridge: the MCP servers of `/etc/avix/mcp.yaml`, spoken to with the official Rust SDK
//! (rmcp) over stdio or streamable HTTP; their tools appear as `mcp/<server>/<tool>`.
//!
//! Each server has a task that connects (handshake bounded by `startTimeout`), lists the
//! tools and publishes them, then watches the connection. A crash or a closed connection marks
//! its tools unavailable and reconnects with backoff; two calls in a row that time out
//! (`callTimeout`) mark the server degraded and restart it. No call waits longer than its
//! timeout, so a hung server never hangs an agent, and nothing of a server runs on the
//! daemon's own tasks. Edits to mcp.yaml are applied within a second: servers added, removed
//! or changed are started, stopped or restarted.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use avix_kernel::Kernel;
use avix_kernel::tools::{Category, ToolContext, ToolDescriptor, ToolError, ToolState};
use avix_proto::Document;
use avix_proto::config::mcp::McpServer as ServerConfig;
use avix_proto::service::{ServiceState, ServiceStatus};
use avix_proto::time::Timestamp;
use avix_proto::tool::ToolName;
use avix_vfs::{SynthFile, VfsPath};
use bytes::Bytes;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{Peer, RoleClient, ServiceExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// First reconnect delay; doubles per failure up to [`BACKOFF_MAX`].
pub const BACKOFF_FIRST: Duration = Duration::from_millis(500);
/// Longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Consecutive timed-out calls after which a server is restarted.
pub const TIMEOUTS_BEFORE_RESTART: u32 = 2;

/// The Avix name of MCP tool `tool` of `server`, or None when it cannot be one (too long).
pub fn avix_name(server: &str, tool: &str) -> Option<ToolName> {
    let mut seg: String = tool
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    while seg.contains("__") {
        seg = seg.replace("__", "_");
    }
    let seg = seg.trim_matches('_');
    ToolName::new(&format!("mcp/{server}/{seg}")).ok()
}

#[derive(Debug)]
struct Live {
    state: ServiceState,
    since: Timestamp,
    problem: Option<String>,
    restarts: u32,
    pid: Option<u32>,
    tools: Vec<String>,
}

/// One configured server.
struct Server {
    cfg: ServerConfig,
    peer: RwLock<Option<Peer<RoleClient>>>,
    live: Mutex<Live>,
    timeouts: AtomicU32,
    /// Calls made, failed and in flight.
    stats: Arc<crate::remote::InFlight>,
    restart: Notify,
    /// The server said its tools changed (`notifications/tools/list_changed`).
    tools_changed: Arc<Notify>,
    /// The pending restart was asked for by an operator (no backoff, another reason).
    manual: std::sync::atomic::AtomicBool,
    stop: CancellationToken,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("name", &self.cfg.name)
            .finish_non_exhaustive()
    }
}

impl Server {
    fn set(&self, state: ServiceState, problem: Option<String>) {
        let mut l = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if l.state != state {
            l.since = Timestamp::now();
        }
        l.state = state;
        l.problem = problem;
    }

    fn status(&self) -> ServiceStatus {
        let l = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ServiceStatus {
            name: format!("mcp/{}", self.cfg.name),
            version: "-".into(),
            builtin: true,
            state: l.state,
            pid: l.pid,
            since: l.since,
            restarts: l.restarts,
            last_exit: None,
            next_start: None,
            tools: l.tools.clone(),
            socket: None,
            log: None,
            problem: l.problem.clone(),
            calls: self.stats.totals().0,
            failed_calls: self.stats.totals().1,
            in_flight: self.stats.count() as u64,
        }
    }
}

/// The bridge's MCP client: it listens for `notifications/tools/list_changed`.
#[derive(Debug, Clone)]
pub struct BridgeClient {
    changed: Arc<Notify>,
}

impl BridgeClient {
    fn new(changed: &Arc<Notify>) -> Self {
        Self {
            changed: changed.clone(),
        }
    }
}

impl rmcp::ClientHandler for BridgeClient {
    fn on_tool_list_changed(
        &self,
        _cx: rmcp::service::NotificationContext<RoleClient>,
    ) -> impl std::future::Future<Output = ()> + Send + '_ {
        self.changed.notify_one();
        std::future::ready(())
    }
}

/// The bridge.
pub struct McpBridge {
    kernel: Arc<Kernel>,
    servers: Mutex<HashMap<String, Arc<Server>>>,
    log_dir: PathBuf,
}

impl std::fmt::Debug for McpBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("McpBridge")
    }
}

/// A call of one MCP tool.
struct McpTool {
    server: Arc<Server>,
    /// The MCP server's own name for it.
    remote: String,
}

impl avix_kernel::tools::ToolHandler for McpTool {
    fn call(
        &self,
        cx: ToolContext,
        args: serde_json::Value,
    ) -> avix_llm::BoxFuture<'static, Result<serde_json::Value, ToolError>> {
        let server = self.server.clone();
        let remote = self.remote.clone();
        Box::pin(async move {
            let name = &server.cfg.name;
            let peer = server
                .peer
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .ok_or_else(|| {
                    ToolError::new(
                        "EUNAVAIL",
                        format!("MCP server {name} is not connected (it is starting or restarting); try again shortly"),
                    )
                })?;
            let arguments = match args {
                serde_json::Value::Object(m) => m,
                serde_json::Value::Null => serde_json::Map::new(),
                _ => return Err(ToolError::invalid("the arguments must be a JSON object")),
            };
            let params = CallToolRequestParams::new(remote).with_arguments(arguments);
            let limit = server.cfg.call_timeout.0;
            let _in_flight = server.stats.enter();
            let answer = tokio::time::timeout(limit, peer.call_tool(params)).await;
            server
                .stats
                .record(matches!(&answer, Ok(Ok(r)) if !r.is_error.unwrap_or(false)));
            match answer {
                Err(_) => {
                    let n = server.timeouts.fetch_add(1, Ordering::SeqCst) + 1;
                    server.set(
                        ServiceState::Running,
                        Some(format!("degraded: {n} call(s) in a row timed out")),
                    );
                    mark_tools(&cx.kernel, name, ToolState::Degraded);
                    if n >= TIMEOUTS_BEFORE_RESTART {
                        server.restart.notify_one();
                    }
                    Err(ToolError::new(
                        "ETIMEOUT",
                        format!(
                            "MCP server {name} did not answer within {} ms (mcp.yaml callTimeout)",
                            limit.as_millis()
                        ),
                    ))
                }
                Ok(Err(e)) => Err(ToolError::new(
                    "EUNAVAIL",
                    format!("MCP server {name}: {e}"),
                )),
                Ok(Ok(r)) => {
                    if server.timeouts.swap(0, Ordering::SeqCst) > 0 {
                        mark_tools(&cx.kernel, name, ToolState::Available);
                        server.set(ServiceState::Running, None);
                    }
                    let is_error = r.is_error.unwrap_or(false);
                    let mut v = serde_json::to_value(&r)
                        .map_err(|e| ToolError::new("EIO", e.to_string()))?;
                    if let Some(o) = v.as_object_mut() {
                        o.remove("resultType");
                    }
                    if is_error {
                        let text: Vec<String> = r
                            .content
                            .iter()
                            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                            .collect();
                        return Err(ToolError::new("ETOOL", text.join("\n")));
                    }
                    Ok(v)
                }
            }
        })
    }
}

fn tools_of_server(kernel: &Kernel, server: &str) -> Vec<ToolName> {
    kernel.tools().owned_by(&format!("mcp/{server}"))
}

/// Sets the state of every tool of `server`.
fn mark_tools(kernel: &Kernel, server: &str, state: ToolState) {
    for t in tools_of_server(kernel, server) {
        kernel.tools().set_state(kernel.vfs(), t.as_str(), state);
    }
}

impl McpBridge {
    /// Starts the servers of mcp.yaml and follows edits to it.
    pub fn start(kernel: Arc<Kernel>, stop: CancellationToken) -> Arc<Self> {
        let log_dir = kernel.layout().root().join("logs").join("mcp");
        let me = Arc::new(Self {
            kernel,
            servers: Mutex::new(HashMap::new()),
            log_dir,
        });
        me.publish();
        let bridge = me.clone();
        tokio::spawn(async move {
            let mut seen = u64::MAX;
            loop {
                let n = bridge.kernel.config().reloads();
                if n != seen {
                    seen = n;
                    bridge.reconcile();
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            bridge.stop_all();
        });
        me
    }

    fn publish(self: &Arc<Self>) {
        let w = Arc::downgrade(self);
        if let Ok(p) = VfsPath::parse("/proc/services/mcp/status.yaml") {
            let _ = self.kernel.vfs().publish(
                &p,
                SynthFile::computed(move |_| {
                    let list = w.upgrade().map(|b| b.statuses()).unwrap_or_default();
                    Ok(Document::new(McpStatus { servers: list })
                        .to_yaml()
                        .map(Bytes::from)
                        .unwrap_or_default())
                }),
            );
        }
    }

    /// Waits (up to 3 s) until every server task has stopped and its process is gone.
    pub async fn wait_stopped(&self) {
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            let busy = self
                .servers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .values()
                .any(|s| s.status().state != ServiceState::Stopped);
            let tools = self
                .kernel
                .tools()
                .descriptors()
                .iter()
                .any(|d| d.owner.starts_with("mcp/"));
            if !busy && !tools {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Reconnects one server (it restarts a stdio server); false if there is no such server.
    /// Resolves once it is running again or gave up for now, at most its start timeout.
    pub async fn restart(&self, name: &str) -> bool {
        let server = self
            .servers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned();
        let Some(s) = server else {
            return false;
        };
        let before = s
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .restarts;
        s.manual.store(true, Ordering::SeqCst);
        s.restart.notify_one();
        let deadline = Instant::now() + s.cfg.start_timeout.0 + Duration::from_secs(2);
        while Instant::now() < deadline {
            let st = s.status();
            if st.restarts > before && st.state != ServiceState::Starting {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Every server's status.
    pub fn statuses(&self) -> Vec<ServiceStatus> {
        let mut v: Vec<_> = self
            .servers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .map(|s| s.status())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn stop_all(&self) {
        for s in self
            .servers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
        {
            s.stop.cancel();
        }
    }

    /// Starts, stops and restarts servers to match mcp.yaml.
    fn reconcile(self: &Arc<Self>) {
        let cfg = self.kernel.config().get();
        let wanted: BTreeMap<String, ServerConfig> = cfg
            .mcp
            .as_ref()
            .map(|m| {
                m.servers
                    .iter()
                    .filter(|s| s.enabled)
                    .map(|s| (s.name.clone(), s.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut servers = self
            .servers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        servers.retain(|name, s| {
            let keep = wanted.get(name).is_some_and(|w| *w == s.cfg);
            if !keep {
                s.stop.cancel();
            }
            keep
        });
        for (name, c) in wanted {
            if servers.contains_key(&name) {
                continue;
            }
            let s = Arc::new(Server {
                cfg: c,
                peer: RwLock::new(None),
                live: Mutex::new(Live {
                    state: ServiceState::Starting,
                    since: Timestamp::now(),
                    problem: None,
                    restarts: 0,
                    pid: None,
                    tools: Vec::new(),
                }),
                timeouts: AtomicU32::new(0),
                stats: Arc::default(),
                restart: Notify::new(),
                tools_changed: Arc::new(Notify::new()),
                manual: std::sync::atomic::AtomicBool::new(false),
                stop: CancellationToken::new(),
            });
            servers.insert(name, s.clone());
            tokio::spawn(self.clone().run(s));
        }
    }

    fn mark(&self, server: &Server, state: ToolState) {
        mark_tools(&self.kernel, &server.cfg.name, state);
    }

    async fn connect(
        &self,
        s: &Server,
    ) -> Result<
        (
            rmcp::service::RunningService<RoleClient, BridgeClient>,
            Option<u32>,
        ),
        String,
    > {
        let c = &s.cfg;
        let limit = c.start_timeout.0;
        let fut = async {
            if let Some(cmd) = &c.command {
                let env = self
                    .kernel
                    .secrets()
                    .resolve_env(&c.environment)
                    .map_err(|e| e.message)?;
                let mut command = tokio::process::Command::new(&cmd[0]);
                command
                    .args(&cmd[1..])
                    .env_clear()
                    .env(
                        "PATH",
                        std::env::var_os("PATH")
                            .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
                    )
                    .env(
                        "HOME",
                        std::env::var_os("HOME").unwrap_or_else(|| "/".into()),
                    )
                    .env("LANG", "C.UTF-8")
                    .envs(env.iter().map(|(k, v)| (k, v.as_str())))
                    .process_group(0)
                    .kill_on_drop(true);
                let _ = std::fs::create_dir_all(&self.log_dir);
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.log_dir.join(format!("{}.log", c.name)))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null());
                crate::children::die_with_daemon(&mut command);
                let (transport, _) = rmcp::transport::TokioChildProcess::builder(command)
                    .stderr(log)
                    .spawn()
                    .map_err(|e| format!("cannot start {}: {e}", cmd[0]))?;
                let pid = transport.id();
                crate::children::Leftovers::new(&self.kernel.layout().state())
                    .record(&format!("mcp/{}", c.name), pid);
                let running = BridgeClient::new(&s.tools_changed)
                    .serve(transport)
                    .await
                    .map_err(|e| format!("the MCP handshake failed: {e}"));
                match running {
                    Ok(r) => Ok((r, pid)),
                    Err(e) => {
                        kill_group(pid);
                        Err(e)
                    }
                }
            } else {
                let url = c.url.clone().unwrap_or_default();
                let transport =
                    rmcp::transport::StreamableHttpClientTransport::from_uri(url.as_str());
                BridgeClient::new(&s.tools_changed)
                    .serve(transport)
                    .await
                    .map(|r| (r, None))
                    .map_err(|e| format!("cannot connect to {url}: {e}"))
            }
        };
        tokio::time::timeout(limit, fut).await.map_err(|_| {
            format!(
                "no MCP handshake within {} ms (mcp.yaml startTimeout)",
                limit.as_millis()
            )
        })?
    }

    fn register(&self, s: &Arc<Server>, tools: Vec<rmcp::model::Tool>) -> Vec<String> {
        let owner = format!("mcp/{}", s.cfg.name);
        let mut names = Vec::new();
        for t in tools {
            let Some(name) = avix_name(&s.cfg.name, &t.name) else {
                tracing::warn!(server = %s.cfg.name, tool = %t.name, "MCP tool skipped: its name cannot be an Avix tool name (too long?)");
                continue;
            };
            if let Some(e) = self.kernel.tools().get(name.as_str())
                && e.descriptor.owner != owner
            {
                tracing::warn!(tool = %name, "MCP tool skipped: the name is taken");
                continue;
            }
            let d = ToolDescriptor {
                name: name.clone(),
                description: t
                    .description
                    .as_deref()
                    .map(str::to_owned)
                    .or(t.title.clone())
                    .unwrap_or_default(),
                owner: owner.clone(),
                category: Category::Direct,
                state: ToolState::Available,
                input_schema: serde_json::Value::Object((*t.input_schema).clone()),
            };
            self.kernel.tools().register(
                self.kernel.vfs(),
                d,
                Arc::new(McpTool {
                    server: s.clone(),
                    remote: t.name.to_string(),
                }),
            );
            names.push(name.to_string());
        }
        // Tools the server no longer offers.
        for old in tools_of_server(&self.kernel, &s.cfg.name) {
            if !names.iter().any(|n| n == old.as_str()) {
                self.kernel.tools().remove(self.kernel.vfs(), old.as_str());
            }
        }
        names
    }

    async fn run(self: Arc<Self>, s: Arc<Server>) {
        let mut failures = 0u32;
        let name = s.cfg.name.clone();
        loop {
            if s.stop.is_cancelled() {
                break;
            }
            s.set(ServiceState::Starting, None);
            let started = Instant::now();
            let connected = tokio::select! {
                _ = s.stop.cancelled() => break,
                r = self.connect(&s) => r,
            };
            let ended = match connected {
                Err(e) => Some(e),
                Ok((running, pid)) => {
                    let listed = tokio::time::timeout(
                        s.cfg.start_timeout.0,
                        running.peer().list_all_tools(),
                    )
                    .await;
                    match listed {
                        Err(_) | Ok(Err(_)) => {
                            running.cancellation_token().cancel();
                            kill_group(pid);
                            Some(match listed {
                                Ok(Err(e)) => format!("tools/list failed: {e}"),
                                _ => "tools/list did not answer in time".into(),
                            })
                        }
                        Ok(Ok(tools)) => {
                            let names = self.register(&s, tools);
                            tracing::info!(server = %name, tools = names.len(), "MCP server connected");
                            *s.peer
                                .write()
                                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                                Some(running.peer().clone());
                            s.timeouts.store(0, Ordering::SeqCst);
                            {
                                let mut l = s
                                    .live
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                                l.pid = pid;
                                l.tools = names;
                            }
                            s.set(ServiceState::Running, None);
                            let ct = running.cancellation_token();
                            let peer = running.peer().clone();
                            let waiting = running.waiting();
                            tokio::pin!(waiting);
                            let why = loop {
                                tokio::select! {
                                    _ = &mut waiting => break "the connection closed (the server exited?)".to_owned(),
                                    _ = s.restart.notified() => {
                                        ct.cancel();
                                        break if s.manual.load(Ordering::SeqCst) {
                                            "restarted on request".to_owned()
                                        } else {
                                            "restarted after calls timed out".to_owned()
                                        };
                                    }
                                    _ = s.stop.cancelled() => {
                                        ct.cancel();
                                        break String::new();
                                    }
                                    _ = s.tools_changed.notified() => {
                                        let listed = tokio::time::timeout(
                                            s.cfg.start_timeout.0,
                                            peer.list_all_tools(),
                                        )
                                        .await;
                                        if let Ok(Ok(tools)) = listed {
                                            let names = self.register(&s, tools);
                                            tracing::info!(server = %name, tools = names.len(), "MCP server's tools changed");
                                            s.live
                                                .lock()
                                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                                .tools = names;
                                        }
                                    }
                                }
                            };
                            *s.peer
                                .write()
                                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                            kill_group(pid);
                            s.live
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .pid = None;
                            (!s.stop.is_cancelled()).then_some(why)
                        }
                    }
                }
            };
            let Some(why) = ended else { break };
            tracing::warn!(server = %name, "MCP server: {why}");
            self.mark(&s, ToolState::Unavailable);
            if s.manual.swap(false, Ordering::SeqCst) {
                failures = 0;
                s.live
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .restarts += 1;
                continue;
            }
            if started.elapsed() > Duration::from_secs(60) {
                failures = 0;
            }
            let delay = BACKOFF_FIRST
                .saturating_mul(1 << failures.min(8))
                .min(BACKOFF_MAX);
            failures += 1;
            s.set(
                ServiceState::Backoff,
                Some(format!("{why}; retrying in {} ms", delay.as_millis())),
            );
            tokio::select! {
                _ = s.stop.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
            s.live
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .restarts += 1;
        }
        // Stopped: its tools go.
        for t in tools_of_server(&self.kernel, &name) {
            self.kernel.tools().remove(self.kernel.vfs(), t.as_str());
        }
        s.set(ServiceState::Stopped, None);
    }
}

fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(-(pid as i32)),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// `/proc/services/mcp/status.yaml`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct McpStatus {
    /// One entry per configured server.
    pub servers: Vec<ServiceStatus>,
}

impl avix_proto::Kind for McpStatus {
    const KIND: &'static str = "McpStatus";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcp_names_become_avix_names() {
        let n = |t| avix_name("everything", t).map(|n| n.to_string());
        assert_eq!(n("echo").as_deref(), Some("mcp/everything/echo"));
        assert_eq!(n("get_Sum").as_deref(), Some("mcp/everything/get_sum"));
        assert_eq!(n("a.b c__d_").as_deref(), Some("mcp/everything/a-b-c_d"));
        assert_eq!(n(&"x".repeat(80)), None);
    }
}
