//! exec.svc: `exec/python` and `exec/shell` run code in the calling agent's workspace inside
//! a bubblewrap sandbox.
//!
//! The sandbox sees `/usr` (and the `/bin`, `/lib` links) read-only, a few files of `/etc`,
//! fresh `/proc`, `/dev` and a size-capped `/tmp`, and the workspace read-write at
//! `/workspace` (`nosuid,nodev`); nothing else of the host. Its root is remounted read-only.
//! It runs in new user, PID, IPC, UTS and (unless the agent holds `exec/network` and asks for
//! it) network namespaces, as uid 65534 with no capabilities, with a clean environment —
//! bubblewrap's own included, so no key of the daemon's is readable in `/proc/1/environ`.
//! A root daemon starts bubblewrap as the unprivileged sandbox account (`account.rs`), which
//! owns the workspaces on disk; the workspace is scrubbed of set-ID bits and device nodes
//! before and after each run ([`workspace`]). Limits: RLIMIT_CPU,
//! RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_NOFILE, no core dumps; processes through a pids cgroup
//! (v1 or v2, found at start), or RLIMIT_NPROC when there is none; a wall-clock timeout; output
//! truncated at `exec.outputBytes`. The run dies with its tool call: killing the agent drops
//! the call, which kills bubblewrap, whose sandbox dies with it (`--die-with-parent`, PID
//! namespace).

mod account;
pub mod workspace;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use avix_kernel::Kernel;
use avix_kernel::tools::{Category, ToolContext, ToolDescriptor, ToolError, ToolState};
use avix_proto::config::kernel::Exec as ExecConfig;
use avix_proto::tool::ToolName;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use self::account::SandboxAccount;

/// The grant that lets exec runs use the network.
pub const NETWORK_GRANT: &str = "exec/network";

/// Where the sandbox's process limit comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessLimit {
    /// A pids cgroup under this directory (one child per run).
    Cgroup(PathBuf),
    /// RLIMIT_NPROC on the daemon's uid (not enforced for root).
    Rlimit,
}

/// The exec service.
#[derive(Debug)]
pub struct ExecService {
    kernel: Arc<Kernel>,
    bwrap: Option<PathBuf>,
    limit: ProcessLimit,
    runs: AtomicU64,
    /// `passwd` and `group` files naming only the sandbox user (the host's stay hidden).
    identity: Option<(PathBuf, PathBuf)>,
    /// The host account bubblewrap runs as (a root daemon), or why there is none. `Ok(None)`:
    /// the daemon is not root and sandboxes run as its own uid.
    account: Result<Option<SandboxAccount>, String>,
    /// When it started.
    since: avix_proto::time::Timestamp,
}

/// Writes the sandbox's own `/etc/passwd` and `/etc/group` under `dir`.
fn write_identity(dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    // bubblewrap binds these as the sandbox account, which must reach them.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    let (passwd, group) = (dir.join("passwd"), dir.join("group"));
    std::fs::write(
        &passwd,
        "sandbox:x:65534:65534:Avix sandbox:/workspace:/bin/sh\n",
    )?;
    std::fs::write(&group, "sandbox:x:65534:\n")?;
    Ok((passwd, group))
}

fn which(prog: &str) -> Option<PathBuf> {
    if prog.contains('/') {
        let p = PathBuf::from(prog);
        return p.is_file().then_some(p);
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_else(|| vec!["/usr/bin".into(), "/bin".into()])
        .into_iter()
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// Finds a pids cgroup hierarchy this process may create children in, and prepares
/// `<hierarchy>/avix-exec`.
pub fn find_pids_cgroup() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut v1 = None;
    let mut v2 = None;
    for line in info.lines() {
        let (pre, post) = line.split_once(" - ")?;
        let mnt = pre.split(' ').nth(4)?;
        let mut post = post.split(' ');
        let fstype = post.next()?;
        let opts = post.nth(1).unwrap_or("");
        if fstype == "cgroup" && opts.split(',').any(|o| o == "pids") {
            v1 = Some(PathBuf::from(mnt));
        } else if fstype == "cgroup2" {
            v2 = Some(PathBuf::from(mnt));
        }
    }
    if let Some(m) = v1 {
        let base = m.join("avix-exec");
        if std::fs::create_dir_all(&base).is_ok() && base.join("cgroup.procs").exists() {
            return Some(base);
        }
    }
    let m = v2?;
    let has_pids = |d: &Path| {
        std::fs::read_to_string(d.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|x| x == "pids"))
    };
    if !has_pids(&m) {
        return None;
    }
    let _ = std::fs::write(m.join("cgroup.subtree_control"), "+pids");
    let base = m.join("avix-exec");
    std::fs::create_dir_all(&base).ok()?;
    std::fs::write(base.join("cgroup.subtree_control"), "+pids").ok()?;
    has_pids(&base).then_some(base)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RunArgs {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    timeout_secs: Option<u64>,
    #[serde(default)]
    network: bool,
}

/// One pids cgroup for one run; removed when dropped (once its processes are gone).
struct RunCgroup {
    dir: PathBuf,
    procs: OwnedFd,
}

impl RunCgroup {
    fn new(base: &Path, name: &str, max: u64) -> std::io::Result<Self> {
        let dir = base.join(name);
        std::fs::create_dir(&dir)?;
        std::fs::write(dir.join("pids.max"), max.to_string())?;
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))?;
        Ok(Self {
            dir,
            procs: procs.into(),
        })
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        if std::fs::remove_dir(&self.dir).is_ok() {
            return;
        }
        let dir = self.dir.clone();
        // The sandbox's processes die with bubblewrap; the directory can go once they have.
        std::thread::spawn(move || {
            for _ in 0..100 {
                if std::fs::remove_dir(&dir).is_ok() || !dir.exists() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            tracing::warn!(cgroup = %dir.display(), "cannot remove an exec cgroup");
        });
    }
}

/// Reads a stream, keeping the first `keep` bytes; returns them and the total length.
async fn capture(mut r: impl AsyncRead + Unpin, keep: usize) -> (Vec<u8>, u64) {
    let mut kept = Vec::new();
    let mut total = 0u64;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n as u64;
                let room = keep.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, total)
}

/// Entries a workspace walk counts at most (the quota check stops there).
const WALK_BUDGET: u64 = 200_000;

/// Scrubs a workspace once a run is over: before the call returns, or — when the call is
/// dropped (the agent killed) — in the background.
struct ScrubAfter {
    ws: PathBuf,
    /// `None` once done. (The inner `None`: no sandbox account.)
    acct: Option<Option<SandboxAccount>>,
    pid: avix_kernel::pid::Pid,
}

impl ScrubAfter {
    fn job(&mut self) -> Option<impl FnOnce() + Send + 'static> {
        let acct = self.acct.take()?;
        let (ws, pid) = (self.ws.clone(), self.pid);
        Some(move || {
            let after = workspace::scrub(&ws, acct.as_ref(), WALK_BUDGET);
            if after.stripped + after.removed > 0 {
                tracing::warn!(
                    %pid,
                    stripped = after.stripped,
                    removed = after.removed,
                    "exec: set-ID bits or device nodes a run left in the workspace were removed"
                );
            }
        })
    }

    async fn finish(mut self) {
        if let Some(job) = self.job() {
            let _ = tokio::task::spawn_blocking(job).await;
        }
    }
}

impl Drop for ScrubAfter {
    fn drop(&mut self) {
        let Some(job) = self.job() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(job)),
            Err(_) => job(),
        }
    }
}

fn processes_of_uid(uid: u32) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .filter(|e| e.metadata().is_ok_and(|m| m.uid() == uid))
                .count() as u64
        })
        .unwrap_or(0)
}

impl ExecService {
    /// Finds bubblewrap and a pids cgroup.
    pub fn new(kernel: Arc<Kernel>) -> Arc<Self> {
        let cfg = kernel.config().get().kernel.exec.clone();
        let bwrap = which(&cfg.bwrap);
        let limit = find_pids_cgroup().map_or(ProcessLimit::Rlimit, ProcessLimit::Cgroup);
        if let ProcessLimit::Cgroup(base) = &limit {
            // Run groups of daemons that are gone (`run-<daemon pid>-<n>`); one still holding
            // processes stays.
            for e in std::fs::read_dir(base).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let owner = name
                    .strip_prefix("run-")
                    .and_then(|r| r.split('-').next())
                    .and_then(|p| p.parse::<u32>().ok());
                if let Some(pid) = owner
                    && !Path::new(&format!("/proc/{pid}")).exists()
                {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
        if bwrap.is_none() {
            tracing::warn!(
                "exec.svc: {} not found; exec/python and exec/shell are unavailable (apt-get install bubblewrap)",
                cfg.bwrap
            );
        }
        if limit == ProcessLimit::Rlimit && nix::unistd::geteuid().is_root() {
            tracing::warn!(
                "exec.svc: no pids cgroup; the process limit is not enforced for a daemon running as root"
            );
        }
        let identity = write_identity(&kernel.layout().run().join("exec"))
            .map_err(|e| tracing::warn!(error = %e, "exec.svc: cannot write the sandbox's passwd"))
            .ok();
        let account = account::ensure(&cfg.sandbox_user);
        if let Err(e) = &account {
            tracing::warn!("exec.svc: {e}; exec/python and exec/shell are unavailable");
        }
        Arc::new(Self {
            kernel,
            bwrap,
            limit,
            runs: AtomicU64::new(0),
            identity,
            account,
            since: avix_proto::time::Timestamp::now(),
        })
    }

    /// Its line in `service list`.
    pub fn status(&self) -> avix_proto::service::ServiceStatus {
        use avix_proto::service::{ServiceState, ServiceStatus};
        let tools = ["exec/network", "exec/python", "exec/shell"]
            .map(str::to_owned)
            .to_vec();
        let cfg = self.kernel.config().get().kernel.exec.clone();
        let (state, problem) = match (&self.bwrap, &self.limit) {
            _ if self.account.is_err() => {
                (ServiceState::Failed, self.account.as_ref().err().cloned())
            }
            (None, _) => (
                ServiceState::Failed,
                Some(format!(
                    "{} not found: apt-get install bubblewrap, then restart the daemon",
                    cfg.bwrap
                )),
            ),
            (Some(_), ProcessLimit::Rlimit) if nix::unistd::geteuid().is_root() => (
                ServiceState::Running,
                Some("no pids cgroup: the process limit is not enforced for root".into()),
            ),
            _ => (ServiceState::Running, None),
        };
        ServiceStatus {
            name: "exec".into(),
            version: avix_kernel::system::VERSION.into(),
            builtin: true,
            state,
            pid: None,
            since: self.since,
            restarts: 0,
            last_exit: None,
            next_start: None,
            tools,
            socket: None,
            log: None,
            problem,
            calls: 0,
            failed_calls: 0,
            in_flight: 0,
        }
    }

    /// How the process limit is enforced.
    pub fn process_limit(&self) -> &ProcessLimit {
        &self.limit
    }

    /// Registers exec/python, exec/shell and exec/network.
    pub fn register(self: &Arc<Self>) {
        let state = if self.bwrap.is_some() && self.account.is_ok() {
            ToolState::Available
        } else {
            ToolState::Unavailable
        };
        let common = serde_json::json!({
            "timeoutSecs": {"type": "integer", "minimum": 1, "description": "wall-clock limit (capped by kernel.yaml exec.timeoutSecs)"},
            "network": {"type": "boolean", "description": "allow network access (needs the exec/network grant)"},
        });
        let schema = |key: &str, what: &str| {
            let mut props = common.clone();
            props[key] = serde_json::json!({"type": "string", "description": what});
            serde_json::json!({"type": "object", "properties": props, "required": [key], "additionalProperties": false})
        };
        let tools = [
            (
                "exec/python",
                "Run Python 3 code in a sandbox whose working directory is your workspace (/workspace). Returns exitCode, stdout, stderr.",
                schema("code", "the program"),
            ),
            (
                "exec/shell",
                "Run a POSIX shell script in a sandbox whose working directory is your workspace (/workspace). Returns exitCode, stdout, stderr.",
                schema("command", "the script"),
            ),
            (
                NETWORK_GRANT,
                "Tells whether exec/python and exec/shell may use the network (granting this tool allows it).",
                serde_json::json!({"type": "object", "additionalProperties": false}),
            ),
        ];
        for (name, desc, schema) in tools {
            let d = ToolDescriptor {
                name: ToolName::new(name).expect("exec tool names are valid"),
                description: desc.to_owned(),
                owner: "exec".into(),
                category: Category::Direct,
                state,
                input_schema: schema,
            };
            let me = self.clone();
            let tool = name;
            self.kernel.tools().register(
                self.kernel.vfs(),
                d,
                Arc::new(move |cx: ToolContext, args: serde_json::Value| {
                    let me = me.clone();
                    async move { me.call(tool, cx, args).await }
                }),
            );
        }
    }

    /// The account bubblewrap runs as (`None`: the daemon's own uid).
    fn account(&self) -> Result<Option<&SandboxAccount>, ToolError> {
        self.account
            .as_ref()
            .map(Option::as_ref)
            .map_err(|e| ToolError::new("EUNAVAIL", e.clone()))
    }

    async fn call(
        &self,
        tool: &str,
        cx: ToolContext,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, ToolError> {
        let args = if args.is_null() {
            serde_json::json!({})
        } else {
            args
        };
        let granted = cx.process.allows(NETWORK_GRANT);
        if tool == NETWORK_GRANT {
            return Ok(serde_json::json!({"network": granted}));
        }
        let a: RunArgs =
            serde_json::from_value(args).map_err(|e| ToolError::invalid(format!("{tool}: {e}")))?;
        let (interp, code) = match (tool, a.code, a.command) {
            ("exec/python", Some(c), None) => (true, c),
            ("exec/shell", None, Some(c)) => (false, c),
            ("exec/python", ..) => {
                return Err(ToolError::invalid("exec/python takes code (a string)"));
            }
            _ => return Err(ToolError::invalid("exec/shell takes command (a string)")),
        };
        if a.network && !granted {
            return Err(ToolError::new(
                "EPERM",
                "network access needs the exec/network grant (add it to the agent's tools)",
            ));
        }
        let cfg = self.kernel.config().get().kernel.exec.clone();
        let acct = self.account()?.cloned();
        let users = self.kernel.layout().data().join("users");
        let user = cx.process.user.as_str().to_owned();
        // The process's workspace below its home: its user's, or a fork's own copy.
        let home = format!("/users/{user}/");
        let tree: Vec<String> = cx
            .process
            .workspace
            .strip_prefix(&home)
            .unwrap_or("workspace")
            .split('/')
            .map(str::to_owned)
            .collect();
        let (ws, scan) = tokio::task::spawn_blocking(move || {
            let tree: Vec<&str> = tree.iter().map(String::as_str).collect();
            let ws = workspace::prepare(&users, &user, &tree, acct.as_ref())?;
            let scan = workspace::scrub(&ws, acct.as_ref(), WALK_BUDGET);
            Ok::<_, std::io::Error>((ws, scan))
        })
        .await
        .map_err(|e| ToolError::new("EIO", format!("workspace preparation failed: {e}")))?
        .map_err(|e| ToolError::new("EIO", format!("cannot prepare the workspace: {e}")))?;
        let quota = cfg.workspace_quota_mb.saturating_mul(1 << 20);
        let used = scan.bytes;
        if used > quota {
            return Err(ToolError::new(
                "ENOSPC",
                format!(
                    "the workspace holds {} MiB, over its quota of {} MiB (kernel.yaml exec.workspaceQuotaMb): delete files first",
                    used >> 20,
                    cfg.workspace_quota_mb
                ),
            ));
        }
        let timeout = Duration::from_secs(
            a.timeout_secs
                .unwrap_or(cfg.timeout_secs)
                .clamp(1, cfg.timeout_secs),
        );
        // Whatever the run leaves — also when the call is dropped (the agent killed): no
        // set-ID bits, no device nodes.
        let after = ScrubAfter {
            ws: ws.clone(),
            acct: Some(self.account()?.cloned()),
            pid: cx.process.pid,
        };
        let out = self.run(&cfg, &ws, interp, &code, a.network, timeout).await;
        after.finish().await;
        out
    }

    fn command(
        &self,
        cfg: &ExecConfig,
        ws: &Path,
        python: bool,
        network: bool,
    ) -> Result<tokio::process::Command, ToolError> {
        let bwrap = self.bwrap.as_ref().ok_or_else(|| {
            ToolError::new(
                "EUNAVAIL",
                format!(
                    "{} is not installed on the daemon's host (apt-get install bubblewrap)",
                    cfg.bwrap
                ),
            )
        })?;
        let mut c = tokio::process::Command::new(bwrap);
        // bubblewrap is the sandbox's PID 1: its environment is readable from inside
        // (/proc/1/environ), so it gets none of the daemon's.
        c.env_clear();
        c.args([
            "--die-with-parent",
            "--new-session",
            "--unshare-user",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
        ]);
        if !network {
            c.arg("--unshare-net");
        }
        c.args(["--uid", "65534", "--gid", "65534", "--cap-drop", "ALL"]);
        c.args(["--ro-bind", "/usr", "/usr"]);
        for d in ["/bin", "/sbin", "/lib", "/lib32", "/lib64"] {
            match std::fs::read_link(d) {
                Ok(target) => {
                    c.arg("--symlink").arg(target).arg(d);
                }
                Err(_) if Path::new(d).is_dir() => {
                    c.args(["--ro-bind", d, d]);
                }
                Err(_) => {}
            }
        }
        let mut etc = vec![
            "/etc/alternatives",
            "/etc/ld.so.cache",
            "/etc/ld.so.conf",
            "/etc/ld.so.conf.d",
            "/etc/localtime",
        ];
        if network {
            etc.extend([
                "/etc/resolv.conf",
                "/etc/hosts",
                "/etc/nsswitch.conf",
                "/etc/ssl",
                "/etc/ca-certificates",
                "/etc/gai.conf",
            ]);
        }
        for f in etc {
            c.args(["--ro-bind-try", f, f]);
        }
        if let Some((passwd, group)) = &self.identity {
            c.arg("--ro-bind").arg(passwd).arg("/etc/passwd");
            c.arg("--ro-bind").arg(group).arg("/etc/group");
        }
        c.args(["--proc", "/proc", "--dev", "/dev"]);
        c.arg("--size")
            .arg((cfg.tmp_mb << 20).to_string())
            .args(["--tmpfs", "/tmp"]);
        c.arg("--bind").arg(ws).arg("/workspace");
        c.args(["--chdir", "/workspace", "--remount-ro", "/"]);
        c.args([
            "--clearenv",
            "--setenv",
            "PATH",
            "/usr/local/bin:/usr/bin:/bin",
            "--setenv",
            "HOME",
            "/workspace",
            "--setenv",
            "TMPDIR",
            "/tmp",
            "--setenv",
            "LANG",
            "C.UTF-8",
            "--",
        ]);
        if python {
            c.args([cfg.python.as_str(), "-"]);
        } else {
            c.args([cfg.shell.as_str(), "-s"]);
        }
        Ok(c)
    }

    async fn run(
        &self,
        cfg: &ExecConfig,
        ws: &Path,
        python: bool,
        code: &str,
        network: bool,
        timeout: Duration,
    ) -> Result<serde_json::Value, ToolError> {
        let mut cmd = self.command(cfg, ws, python, network)?;
        let n = self.runs.fetch_add(1, Ordering::Relaxed);
        let cgroup = match &self.limit {
            ProcessLimit::Cgroup(base) => Some(
                RunCgroup::new(
                    base,
                    &format!("run-{}-{n}", std::process::id()),
                    cfg.processes,
                )
                .map_err(|e| {
                    ToolError::new("EIO", format!("cannot set up the run's cgroup: {e}"))
                })?,
            ),
            ProcessLimit::Rlimit => None,
        };
        let procs_fd = cgroup.as_ref().map(|c| c.procs.as_raw_fd());
        let acct = self.account()?.cloned();
        let ids = acct.as_ref().map(|a| (a.uid, a.gid));
        let uid = ids.map_or_else(|| nix::unistd::geteuid().as_raw(), |(u, _)| u);
        // Without a cgroup: this uid's processes now, plus the run's allowance.
        let nproc = (procs_fd.is_none() && uid != 0).then(|| processes_of_uid(uid) + cfg.processes);
        let limits = [
            (libc::RLIMIT_CPU, cfg.cpu_secs),
            (libc::RLIMIT_AS, cfg.memory_mb << 20),
            (libc::RLIMIT_FSIZE, cfg.file_size_mb << 20),
            (libc::RLIMIT_NOFILE, 256),
            (libc::RLIMIT_CORE, 0),
        ];
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
        // system calls (write, setrlimit, setgroups, setgid, setuid) on values prepared
        // before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(fd) = procs_fd
                    && libc::write(fd, b"0".as_ptr().cast(), 1) != 1
                {
                    return Err(std::io::Error::last_os_error());
                }
                for (res, v) in limits {
                    let r = libc::rlimit {
                        rlim_cur: v,
                        rlim_max: v,
                    };
                    if libc::setrlimit(res, &r) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(v) = nproc {
                    let r = libc::rlimit {
                        rlim_cur: v,
                        rlim_max: v,
                    };
                    if libc::setrlimit(libc::RLIMIT_NPROC, &r) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // Last, once the cgroup is joined: become the sandbox account, with no
                // supplementary group of the daemon's.
                if let Some((u, g)) = ids
                    && (libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(g) != 0
                        || libc::setuid(u) != 0)
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| ToolError::new("EIO", format!("cannot start the sandbox: {e}")))?;
        let keep = usize::try_from(cfg.output_bytes).unwrap_or(usize::MAX);
        let out = tokio::spawn(capture(child.stdout.take().expect("piped"), keep));
        let err = tokio::spawn(capture(child.stderr.take().expect("piped"), keep));
        if let Some(mut stdin) = child.stdin.take() {
            let code = code.as_bytes().to_vec();
            tokio::spawn(async move {
                let _ = stdin.write_all(&code).await;
            });
        }
        let (status, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(s) => (s.ok(), false),
            Err(_) => {
                let _ = child.start_kill();
                (child.wait().await.ok(), true)
            }
        };
        let (stdout, out_total) = out.await.unwrap_or_default();
        let (stderr, err_total) = err.await.unwrap_or_default();
        drop(cgroup);
        let code = status.and_then(|s| s.code());
        let truncated = out_total > stdout.len() as u64 || err_total > stderr.len() as u64;
        Ok(serde_json::json!({
            "exitCode": if timed_out { None } else { code },
            "stdout": String::from_utf8_lossy(&stdout),
            "stderr": String::from_utf8_lossy(&stderr),
            "truncated": truncated,
            "stdoutBytes": out_total,
            "stderrBytes": err_total,
            "timedOut": timed_out,
            "elapsedMs": avix_proto::time::ms(started.elapsed()),
        }))
    }
}
