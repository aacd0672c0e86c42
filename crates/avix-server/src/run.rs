//! `avix server run`: one agent, no daemon. Boots the kernel in this process (no mount, no
//! ATP), spawns the agent, prints its progress, and exits with its exit code. A tool call
//! that needs approval is asked on the terminal (denied when there is none).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use avix_kernel::hil::Scope;
use avix_kernel::layout::RootLayout;
use avix_kernel::{BootOptions, Kernel};
use avix_proto::agent::SpawnRequest;
use avix_proto::{AgentName, Role, UserName};
use avix_vfs::{Caller, Door};

use crate::pidfile::PidLock;
use crate::start::{StartError, init_logging};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The runtime root.
    pub root: PathBuf,
    /// The goal.
    pub goal: String,
    /// The agent (default `assistant`).
    pub agent: String,
    /// A provider from llm.yaml (its default model).
    pub provider: Option<String>,
    /// A model string (overrides `provider`).
    pub model: Option<String>,
    /// Run as this user (default: the user mapped to your uid, else the first admin).
    pub user: Option<UserName>,
    /// Log level for the kernel's own messages.
    pub log_level: Option<String>,
    /// The uid to find the default user by.
    pub host_uid: u32,
}

fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(119).collect::<String>())
    } else {
        s
    }
}

/// Runs one agent; returns its exit code.
pub fn run(opts: &RunOptions) -> Result<i32, StartError> {
    let layout = RootLayout::new(&opts.root);
    let auth = layout.etc_file("auth.conf");
    if !auth.exists() {
        return Err(StartError::NotInitialised {
            root: opts.root.display().to_string(),
            path: auth.display().to_string(),
        });
    }
    let kernel_config = avix_kernel::config::read_kernel_config(&layout)?;
    init_logging(opts.log_level.as_deref().unwrap_or("warn"));
    let master = avix_kernel::config::load_master_key(&layout, &kernel_config)?;
    avix_kernel::config::verify_master_key(&layout, &kernel_config, &master)?;
    let _pid = PidLock::acquire(&layout.pid_file(), layout.root())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| StartError::Io {
            what: "cannot start the async runtime",
            source,
        })?;
    rt.block_on(async move {
        let kernel = Kernel::boot(
            layout,
            &master,
            BootOptions::new(tokio::runtime::Handle::current()),
        )?;
        drop(master);
        let config = kernel.config().get();
        let user = match &opts.user {
            Some(u) => u.clone(),
            None => config
                .users
                .users
                .iter()
                .find(|u| u.host_uid == Some(opts.host_uid))
                .map(|u| u.username.clone())
                .or_else(|| {
                    config
                        .auth
                        .identities
                        .iter()
                        .find(|i| i.role == Role::Admin)
                        .map(|i| i.name.clone())
                })
                .ok_or_else(|| StartError::Policy("no user to run as: pass --user".into()))?,
        };
        let agent =
            AgentName::new(opts.agent.clone()).map_err(|e| StartError::Policy(e.to_string()))?;
        let req = SpawnRequest {
            agent,
            goal: opts.goal.clone(),
            model: opts.model.clone().or_else(|| opts.provider.clone()),
            tools: None,
            interactive: Some(false),
            session: None,
            params: Default::default(),
        };
        let mut events = kernel.events().subscribe();
        let caller = kernel
            .config()
            .get()
            .caller_for(&user, avix_vfs::Door::Kernel)
            .ok_or_else(|| StartError::Policy(format!("{user} is not a user of this root")))?;
        let proc = kernel
            .spawn(&caller, req, None)
            .await
            .map_err(|e| StartError::Policy(e.to_string()))?;
        let pid = proc.pid;
        println!(
            "[{pid}] {} started for {user} (model {}): {}",
            proc.agent, proc.model, proc.goal
        );
        let reporter = {
            let kernel = kernel.clone();
            let user = user.clone();
            tokio::spawn(async move {
                while let Ok(e) = events.recv().await {
                    if e.pid != Some(pid) {
                        continue;
                    }
                    use avix_proto::event::{self, EventName};
                    let body = e.body.clone();
                    match e.event {
                        EventName::AgentToolCall => {
                            if let Ok(c) = serde_json::from_value::<event::ToolCall>(body) {
                                println!("[{pid}] → {} {}", c.tool, short(&c.args));
                            }
                        }
                        EventName::AgentToolResult => {
                            if let Ok(r) = serde_json::from_value::<event::ToolResult>(body) {
                                let ok = if r.ok { "ok" } else { "error" };
                                println!("[{pid}] ← {} {ok}", r.tool);
                            }
                        }
                        EventName::AgentToolDenied => {
                            if let Ok(d) = serde_json::from_value::<event::ToolDenied>(body) {
                                println!("[{pid}] ✗ {} refused: {}", d.tool, d.reason);
                            }
                        }
                        EventName::AgentOutput => {
                            if let Ok(o) = serde_json::from_value::<event::Output>(body) {
                                println!("[{pid}] {}", o.text);
                            }
                        }
                        EventName::HilRequest => {
                            if let Ok(h) = serde_json::from_value::<event::HilAsked>(body) {
                                ask(&kernel, &user, &h);
                            }
                        }
                        _ => {}
                    }
                }
            })
        };
        let exit = tokio::select! {
            e = proc.wait() => e,
            _ = tokio::signal::ctrl_c() => {
                let _ = kernel.signal(&Caller::kernel(), &proc, avix_kernel::process::Signal::Kill);
                proc.wait().await
            }
        };
        reporter.abort();
        println!(
            "[{pid}] {} (exit {}): {}",
            exit.state, exit.code, exit.reason
        );
        Ok(exit.code)
    })
}

/// Asks about a HIL request on the terminal, or denies it when there is none.
fn ask(kernel: &Arc<Kernel>, user: &UserName, h: &avix_proto::event::HilAsked) {
    let id = h.hil_id.clone();
    let what = h.tool.as_deref().map_or_else(
        || "guidance".to_owned(),
        |t| {
            format!(
                "{t} {}",
                short(h.args.as_ref().unwrap_or(&serde_json::Value::Null))
            )
        },
    );
    let config = kernel.config().get();
    let caller = Caller::user(
        user.clone(),
        config.role_of(user),
        config.crews_of(user),
        Door::Kernel,
    );
    if !std::io::stdin().is_terminal() {
        println!(
            "[hil {id}] {what}: denied (no terminal to ask; run interactively or use the daemon)"
        );
        let _ = kernel.hil().answer(
            &id,
            false,
            Scope::Session,
            Some("no terminal to ask".into()),
            &caller,
        );
        return;
    }
    let kernel = kernel.clone();
    std::thread::spawn(move || {
        print!("[hil {id}] approve {what}? [y/N] ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        let yes = matches!(line.trim(), "y" | "Y" | "yes");
        let _ = kernel.hil().answer(&id, yes, Scope::Session, None, &caller);
    });
}
