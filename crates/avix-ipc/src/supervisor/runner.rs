//! Running one service: its process (clean environment, own process group), its stop, and
//! the loop that restarts it with backoff.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use avix_kernel::tools::ToolState;
use avix_proto::service::{RestartPolicy, ServiceState};
use avix_proto::time::Timestamp;
use tokio::sync::mpsc;

use super::files::{LogSink, pump};
use super::{BACKOFF_FIRST, BACKOFF_MAX, BACKOFF_RESET, Ctl, STOP_GRACE, Slot, Supervisor};

fn describe(st: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "unknown".into(),
    }
}

impl Supervisor {
    pub(super) fn spawn_child(&self, slot: &Slot) -> Result<tokio::process::Child, String> {
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
        let env = self
            .kernel
            .secrets()
            .resolve_env(&spec.environment)
            .map_err(|e| e.message)?;
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
        crate::children::die_with_daemon(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let pid = child.id();
        self.leftovers.record(&slot.child_name(), pid);
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

    pub(super) async fn terminate(child: &mut tokio::process::Child) -> Option<ExitStatus> {
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

    pub(super) async fn run(
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
                    self.leftovers.forget(&slot.child_name());
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
                    self.leftovers.forget(&slot.child_name());
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
}
