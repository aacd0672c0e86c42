//! `avix client …`: the ATP client commands. Every command accepts `--json` (one JSON value
//! on stdout, for scripts); without it, output is aligned tables and plain lines.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use avix_client::{Client, ClientError, Config, Overrides};
use avix_proto::agent::{HilRequest, InvocationRecord, ProcessStatus, SessionRecord, SpawnRequest};
use avix_proto::atp::{EventFrame, SpawnReply, WhoAmI};
use avix_proto::event::{self, EventName};
use avix_proto::op::{
    DeleteArgs, HilAnswerArgs, HilListArgs, HistoryArgs, IdArgs, ListArgs, LogsArgs, NoArgs, Op,
    PidArgs, ResumeArgs, ShowArgs, UserArgs,
};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::client_ids::IdKind;

/// Where to connect and as whom: `avix client` and `avix tui` take the same settings.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConnectArgs {
    /// The server (default: $AVIX_SERVER, the config file, http://127.0.0.1:9142).
    #[arg(long, global = true)]
    server: Option<String>,
    /// The user to log in as (default: $AVIX_USER, the config file, or whoever the API key
    /// belongs to).
    #[arg(long, global = true)]
    user: Option<String>,
    /// The client config file (default: ~/.config/avix/client.yaml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// A CA certificate to trust (a server with a private certificate).
    #[arg(long, global = true)]
    ca_cert: Option<PathBuf>,
}

impl ConnectArgs {
    /// The resolved settings.
    pub(crate) fn config(&self) -> anyhow::Result<Config> {
        Ok(Config::load(&Overrides {
            server: self.server.clone(),
            identity: self.user.clone(),
            config: self.config.clone(),
            ca_cert: self.ca_cert.clone(),
        })?)
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct ClientArgs {
    #[command(flatten)]
    conn: ConnectArgs,
    /// Print one JSON value instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Log in and check the connection.
    Connect,
    /// Log in once and keep the token (in ~/.local/state/avix/tokens, 0600) so that later
    /// commands for this server and user use it instead of logging in; never keeps the
    /// credential.
    Login,
    /// End the kept login (the server refuses its token from now on) and forget it.
    Logout,
    /// Agents: run, list, control, inspect, save, fork.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Files over ATP (for when you do not have the mount): ls, cat, put, get, rm, stat, tail.
    #[command(subcommand)]
    Fs(crate::client_fs::FsCommand),
    /// Sessions: conversations that span runs.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Approvals agents are waiting for.
    #[command(subcommand)]
    Hil(HilCommand),
    /// The daemon's recent log lines (operators and admins).
    Logs {
        /// Keep printing new lines.
        #[arg(long, short)]
        follow: bool,
        /// How many recent lines.
        #[arg(long, short = 'n', default_value_t = 50)]
        lines: usize,
    },
    /// Installed services: list, control, install, remove.
    #[command(subcommand)]
    Service(crate::client_service::ServiceCommand),
    /// Secrets: stored sealed, injected into services and MCP servers, never shown.
    #[command(subcommand)]
    Secret(crate::client_secret::SecretCommand),
    /// Raw ATP.
    #[command(subcommand)]
    Atp(AtpCommand),
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// Agents that are running (with --all, also those that ended in the last minutes).
    List {
        /// Operators: only your own.
        #[arg(long)]
        mine: bool,
        /// Also agents that ended and are still in /proc.
        #[arg(long, short)]
        all: bool,
    },
    /// Start an agent.
    Spawn {
        /// The installed agent.
        agent: avix_proto::AgentName,
        /// What it should do.
        #[arg(long, short)]
        goal: String,
        /// Override its model (provider/model or an alias).
        #[arg(long)]
        model: Option<String>,
        /// Continue this session's conversation.
        #[arg(long)]
        session: Option<String>,
        /// Wait for input after each answer (`agent input PID TEXT`).
        #[arg(long, short)]
        interactive: bool,
        /// A tool to hold besides the manifest's (repeat for more; your rights permitting).
        #[arg(long = "tool", short = 't', value_name = "TOOL")]
        tools: Vec<String>,
        /// A parameter for this run, e.g. `--param maxTurns=5 --param temperature=0.2`
        /// (above the manifest's, under every limit; resolved.yaml shows what applied).
        #[arg(long = "param", short = 'p', value_name = "NAME=VALUE", value_parser = parse_param)]
        params: Vec<(String, f64)>,
        /// Stream its output until it ends; exit with its exit code.
        #[arg(long, short)]
        follow: bool,
    },
    /// Kill an agent (at once; its running tool calls are abandoned).
    Kill {
        /// Its PID.
        pid: avix_proto::Pid,
    },
    /// Stop an agent at its next boundary (it ends as stopped).
    Stop {
        /// Its PID.
        pid: avix_proto::Pid,
    },
    /// Pause an agent at its next boundary.
    Pause {
        /// Its PID.
        pid: avix_proto::Pid,
    },
    /// Resume a paused agent.
    Resume {
        /// Its PID.
        pid: avix_proto::Pid,
    },
    /// Say something to an agent (one waiting for input answers it).
    Input {
        /// Its PID.
        pid: avix_proto::Pid,
        /// What to say (the words are joined with spaces).
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Stream an agent's output, tool calls and results until it ends (Ctrl-C leaves it
    /// running); exits with its exit code.
    Attach {
        /// Its PID.
        pid: avix_proto::Pid,
    },
    /// An agent's journal: the last lines, one event per line.
    Logs {
        /// Its PID.
        pid: avix_proto::Pid,
        /// How many lines.
        #[arg(long, short = 'n', default_value_t = 20)]
        lines: usize,
        /// Keep printing new lines until it ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// Snapshot an agent (in any state) to /users/<you>/snapshots/.
    Save {
        /// Its PID.
        pid: avix_proto::Pid,
    },
    /// Start a snapshot again as a new agent that continues where it was.
    Restore {
        /// The snapshot's path, or its name among yours (`avix client agent save` prints it).
        snapshot: String,
        /// Put the workspace saved with it back first (its files replace yours of the same
        /// name; other files stay).
        #[arg(long)]
        workspace: bool,
        /// Stream its output until it ends; exit with its exit code.
        #[arg(long, short)]
        follow: bool,
    },
    /// Start a new agent from a run at a turn: the conversation up to the end of that turn and
    /// its own copy of the workspace as it was then (in /users/<you>/forks/).
    Fork {
        /// The run: a PID, or an invocation id (`agent history` lists them).
        run: String,
        /// The turn to fork at (default: the last).
        #[arg(long)]
        at: Option<u32>,
        /// A message the fork starts with, after the conversation.
        #[arg(long, short)]
        goal: Option<String>,
        /// Stream its output until it ends; exit with its exit code.
        #[arg(long, short)]
        follow: bool,
    },
    /// What a run changed in its workspace, file by file (A added, M modified, D deleted).
    Diff {
        /// The run: a PID, or an invocation id (`agent history` lists them).
        run: String,
        /// Only turns 1 to this one.
        #[arg(long)]
        at: Option<u32>,
    },
    /// Installed agents.
    Catalog {
        /// Another user's (operators): whose, not who you log in as (that is --user).
        #[arg(long = "owner", alias = "username", value_name = "USER")]
        username: Option<String>,
    },
    /// Past runs.
    History {
        /// One agent only.
        #[arg(long)]
        agent: Option<String>,
        /// Another user's (operators): whose, not who you log in as (that is --user).
        #[arg(long = "owner", alias = "username", value_name = "USER")]
        username: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// A running agent (PID) or a past run (invocation id) with its conversation.
    Show {
        /// A PID or an invocation id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum SessionCommand {
    /// Your sessions (operators: everyone's).
    List {
        /// Another user's (operators): whose, not who you log in as (that is --user).
        #[arg(long = "owner", alias = "username", value_name = "USER")]
        username: Option<String>,
        /// Only sessions in this state (running, waiting, paused, completed, failed…).
        #[arg(long)]
        status: Option<String>,
    },
    /// A session and its runs.
    Show {
        /// Its id.
        id: String,
    },
    /// Continue a session: resume it if paused, give input to a live run, or start a new
    /// run that carries the conversation over.
    Resume {
        /// Its id.
        id: String,
        /// What to say.
        #[arg(long, short)]
        input: Option<String>,
        /// Stream the run's output until it ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// Delete a session and its journals.
    Delete {
        /// Its id.
        id: String,
        /// Kill its running processes first.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum HilCommand {
    /// Pending and recent approval requests.
    List {
        /// One agent's only.
        #[arg(long)]
        pid: Option<avix_proto::Pid>,
    },
    /// Approve a request.
    Approve {
        /// The request id.
        id: String,
        /// A note for the agent.
        #[arg(long)]
        note: Option<String>,
        /// `once` (this call) or `session` (this tool for the rest of the run).
        #[arg(long, default_value = "once")]
        scope: String,
    },
    /// Deny a request.
    Deny {
        /// The request id.
        id: String,
        /// Why (the agent sees it).
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AtpCommand {
    /// An interactive shell: type `DOMAIN OP [JSON]` or a raw JSON frame; events print as
    /// they arrive; `:sub PATTERN…` subscribes; `:q` or end of input leaves.
    Shell,
}

fn rt() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs `avix client …`; returns the exit code.
pub(crate) fn run(a: ClientArgs) -> anyhow::Result<i32> {
    let config = a.conn.config()?;
    rt()?.block_on(async move {
        let tokens = avix_client::tokens::Tokens::default_place();
        let out = Out { json: a.json };
        if matches!(a.command, ClientCommand::Login) {
            return login(&config, tokens.as_ref(), &out).await;
        }
        let client =
            with_progress("connecting", Client::connect_kept(&config, tokens.as_ref())).await?;
        match a.command {
            ClientCommand::Login => unreachable!("handled above"),
            ClientCommand::Logout => {
                let v = client.run(&Op::Logout(NoArgs {})).await;
                let forgot = tokens.as_ref().is_some_and(|t| t.remove(&config));
                v?;
                if out.json {
                    out.json(&json!({"loggedOut": true, "tokenForgotten": forgot}))?;
                } else {
                    println!("logged out");
                }
                Ok(0)
            }
            ClientCommand::Connect => connect(&client, &config, &out).await,
            ClientCommand::Agent(c) => agent(&client, c, &out).await,
            ClientCommand::Fs(c) => crate::client_fs::fs(&client, c, &out).await,
            ClientCommand::Session(c) => session(&client, c, &out).await,
            ClientCommand::Hil(c) => hil(&client, c, &out).await,
            ClientCommand::Logs { follow, lines } => logs(&client, follow, lines, &out).await,
            ClientCommand::Service(c) => {
                let local = crate::client_service::is_local(&config.server);
                crate::client_service::service(&client, c, &out, local).await
            }
            ClientCommand::Secret(c) => crate::client_secret::secret(&client, c, &out).await,
            ClientCommand::Atp(AtpCommand::Shell) => shell(&client).await,
        }
    })
}

/// Waits for `fut`, showing a spinner on a terminal after a second.
async fn with_progress<T>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    let tty = std::io::stderr().is_terminal();
    tokio::pin!(fut);
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_millis(250),
    );
    let frames = ['|', '/', '-', '\\'];
    let mut n = 0;
    loop {
        tokio::select! {
            r = &mut fut => {
                if tty && n > 0 {
                    eprint!("\r\x1b[K");
                }
                return r;
            }
            _ = tick.tick(), if tty => {
                eprint!("\r{} {what}…", frames[n % frames.len()]);
                n += 1;
            }
        }
    }
}

pub(crate) struct Out {
    pub(crate) json: bool,
}

impl Out {
    pub(crate) fn json(&self, v: &Value) -> anyhow::Result<()> {
        let mut o = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut o, v)?;
        writeln!(o)?;
        Ok(())
    }
}

/// Text from the server (names, goals, messages) as it may be shown: control and format
/// characters escaped, so a file name or a goal cannot forge lines or drive the terminal.
pub(crate) fn safe(s: &str) -> std::borrow::Cow<'_, str> {
    avix_proto::text::escape(s)
}

/// Prints rows as an aligned table (every cell through [`safe`]).
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| safe(c).into_owned()).collect())
        .collect();
    let rows = &rows[..];
    let mut w: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    let mut o = std::io::stdout().lock();
    let line = |cells: Vec<&str>| -> String {
        let n = cells.len();
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            s.push_str(c);
            if i + 1 < n {
                let pad = w[i] - c.chars().count() + 2;
                s.extend(std::iter::repeat_n(' ', pad));
            }
        }
        s
    };
    writeln!(o, "{}", line(headers.to_vec()))?;
    for r in rows {
        writeln!(o, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    if rows.is_empty() {
        writeln!(o, "(none)")?;
    }
    Ok(())
}

fn cut(s: &str, n: usize) -> String {
    let one_line = safe(s).into_owned();
    if one_line.chars().count() <= n {
        return one_line;
    }
    let mut t: String = one_line.chars().take(n.saturating_sub(1)).collect();
    t.push('…');
    t
}

fn state_name<T: serde::Serialize>(s: &T) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// `client login`: a fresh login whose token is kept.
async fn login(
    config: &Config,
    tokens: Option<&avix_client::tokens::Tokens>,
    out: &Out,
) -> anyhow::Result<i32> {
    let Some(tokens) = tokens else {
        bail!("nowhere to keep the token: set HOME or XDG_STATE_HOME");
    };
    // No credential configured, at a terminal, a user named: ask for the password, unechoed.
    let mut config = config.clone();
    if config.credential.is_none() && std::io::stdin().is_terminal() && !config.identity.is_empty()
    {
        let p = rpassword::prompt_password(format!(
            "password for {} at {}: ",
            config.identity, config.server
        ))
        .context("cannot read the password from the terminal")?;
        config.credential = Some(zeroize::Zeroizing::new(p));
    }
    let config = &config;
    let r = with_progress("logging in", avix_client::login(config)).await?;
    // Check it opens a connection before keeping it.
    let c = Client::open(config, r.clone()).await?;
    let me: WhoAmI = c.run_as(&Op::Whoami(NoArgs {})).await?;
    let path = tokens.save(config, &r)?;
    if out.json {
        out.json(
            &json!({"user": me.user, "role": me.role, "expiresAt": r.expires_at, "kept": path}),
        )?;
    } else {
        println!(
            "logged in to {} as {} ({}) until {}; later commands use the token kept in {}",
            config.server,
            me.user,
            state_name(&me.role),
            r.expires_at,
            path.display()
        );
    }
    Ok(0)
}

async fn connect(c: &Client, config: &Config, out: &Out) -> anyhow::Result<i32> {
    let me: WhoAmI = c.run_as(&Op::Whoami(NoArgs {})).await?;
    let info = c.run(&Op::Info(NoArgs {})).await?;
    if out.json {
        out.json(&json!({"server": config.server, "whoami": me, "info": info}))?;
    } else {
        println!(
            "Connected to {} (Avix {}) as {} ({}); token valid until {}",
            config.server,
            info["version"].as_str().unwrap_or("?"),
            me.user,
            state_name(&me.role),
            me.expires_at
        );
    }
    Ok(0)
}

async fn agent(c: &Client, cmd: AgentCommand, out: &Out) -> anyhow::Result<i32> {
    match cmd {
        AgentCommand::List { mine, all } => {
            let v: Vec<ProcessStatus> = c.run_as(&Op::List(ListArgs { mine, live: !all })).await?;
            if out.json {
                return out.json(&serde_json::to_value(&v)?).map(|()| 0);
            }
            let rows = v
                .iter()
                .map(|p| {
                    vec![
                        p.pid.to_string(),
                        p.agent.clone(),
                        p.owner.clone(),
                        match &p.waiting_on {
                            Some(w) => format!("{} ({})", state_name(&p.state), w),
                            None => state_name(&p.state),
                        },
                        p.turns.to_string(),
                        p.tokens.total().to_string(),
                        cut(&p.goal, 50),
                    ]
                })
                .collect::<Vec<_>>();
            table(
                &["PID", "AGENT", "USER", "STATE", "TURNS", "TOKENS", "GOAL"],
                &rows,
            )?;
            Ok(0)
        }
        AgentCommand::Spawn {
            agent,
            goal,
            model,
            session,
            interactive,
            tools,
            params,
            follow,
        } => {
            let mut events = c.events();
            if follow {
                c.subscribe(&["agent.*", "hil.*"], None).await?;
            }
            let tools = tools
                .iter()
                .map(|t| {
                    avix_proto::tool::ToolName::new(t)
                        .map_err(|e| anyhow::anyhow!("--tool {t}: {e}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let r: SpawnReply = c
                .run_as(&Op::Spawn(SpawnRequest {
                    agent,
                    goal,
                    model,
                    tools: (!tools.is_empty()).then_some(tools),
                    interactive: interactive.then_some(true),
                    session: session.map(Into::into),
                    params: params.into_iter().collect(),
                }))
                .await?;
            started(&mut events, &r, follow, "spawned", out).await
        }
        AgentCommand::Kill { pid } => {
            let v = c.run(&Op::Kill(PidArgs { pid })).await?;
            if out.json {
                out.json(&v)?;
            } else {
                println!("killed {pid}");
            }
            Ok(0)
        }
        AgentCommand::Stop { pid } => signal(c, pid, "SIGSTOP", None, "stopping", out).await,
        AgentCommand::Pause { pid } => signal(c, pid, "SIGPAUSE", None, "pausing", out).await,
        AgentCommand::Resume { pid } => signal(c, pid, "SIGRESUME", None, "resumed", out).await,
        AgentCommand::Input { pid, text } => {
            let payload = json!({"text": text.join(" ")});
            signal(c, pid, "SIGPIPE", Some(payload), "sent to", out).await
        }
        AgentCommand::Attach { pid } => {
            let mut events = c.events();
            c.subscribe(&["agent.*", "hil.*"], None).await?;
            let p: ProcessStatus = c
                .run_as(&Op::Show(ShowArgs {
                    pid: Some(pid),
                    invocation: None,
                }))
                .await?;
            if p.state.is_terminal() {
                bail!(
                    "agent {pid} has ended ({}): `avix client agent show {pid}` shows what it did",
                    state_name(&p.state)
                );
            }
            if !out.json {
                eprintln!(
                    "attached to {pid} ({}, {}); Ctrl-C leaves it running",
                    safe(&p.agent),
                    state_name(&p.state)
                );
            }
            follow_pid(&mut events, pid, out).await
        }
        AgentCommand::Logs { pid, lines, follow } => {
            journal_lines(c, pid, lines, follow, out).await
        }
        AgentCommand::Save { pid } => {
            let r: avix_proto::op::Saved = c.run_as(&Op::Save(PidArgs { pid })).await?;
            if out.json {
                out.json(&serde_json::to_value(&r)?)?;
            } else {
                println!("{}", r.snapshot);
            }
            Ok(0)
        }
        AgentCommand::Restore {
            snapshot,
            workspace,
            follow,
        } => {
            let mut events = c.events();
            if follow {
                c.subscribe(&["agent.*", "hil.*"], None).await?;
            }
            let r: SpawnReply = c
                .run_as(&Op::Restore(avix_proto::op::RestoreArgs {
                    snapshot,
                    workspace,
                }))
                .await?;
            started(&mut events, &r, follow, "restored as", out).await
        }
        AgentCommand::Fork {
            run,
            at,
            goal,
            follow,
        } => {
            let mut events = c.events();
            if follow {
                c.subscribe(&["agent.*", "hil.*"], None).await?;
            }
            let (pid, invocation) = run_ref(c, &run).await?;
            let r: SpawnReply = c
                .run_as(&Op::Fork(avix_proto::op::ForkArgs {
                    pid,
                    invocation,
                    at,
                    goal,
                }))
                .await?;
            started(&mut events, &r, follow, "forked as", out).await
        }
        AgentCommand::Diff { run, at } => {
            let (pid, invocation) = run_ref(c, &run).await?;
            let d: avix_proto::agent::WorkspaceDiff = c
                .run_as(&Op::Diff(avix_proto::op::DiffArgs {
                    pid,
                    invocation,
                    at,
                }))
                .await?;
            if out.json {
                return out.json(&serde_json::to_value(&d)?).map(|()| 0);
            }
            let upto =
                d.at.map_or_else(String::new, |n| format!(" up to turn {n}"));
            eprintln!(
                "{} file(s) changed in {}{upto} ({} turns)",
                d.files.len(),
                d.workspace,
                d.turns
            );
            for f in &d.files {
                println!("{} {}", f.status.letter(), f.path);
            }
            for u in &d.untracked {
                eprintln!("not tracked: {u}");
            }
            Ok(0)
        }
        AgentCommand::Catalog { username } => {
            let v: Vec<avix_proto::agent::CatalogEntry> =
                c.run_as(&Op::Catalog(UserArgs { user: username })).await?;
            if out.json {
                return out.json(&serde_json::to_value(&v)?).map(|()| 0);
            }
            let rows = v
                .iter()
                .map(|e| {
                    vec![
                        e.name.clone(),
                        e.version.clone(),
                        state_name(&e.scope),
                        cut(&e.description, 60),
                    ]
                })
                .collect::<Vec<_>>();
            table(&["NAME", "VERSION", "SCOPE", "DESCRIPTION"], &rows)?;
            Ok(0)
        }
        AgentCommand::History {
            agent,
            username,
            limit,
        } => {
            let v: Vec<InvocationRecord> = c
                .run_as(&Op::History(HistoryArgs {
                    agent,
                    user: username,
                    limit: Some(limit),
                }))
                .await?;
            if out.json {
                return out.json(&serde_json::to_value(&v)?).map(|()| 0);
            }
            let rows = v
                .iter()
                .map(|r| {
                    vec![
                        r.id.to_string(),
                        r.agent.clone(),
                        r.pid.to_string(),
                        state_name(&r.state),
                        r.spawned_at.to_string(),
                        r.tokens.total().to_string(),
                        cut(&r.goal, 40),
                    ]
                })
                .collect::<Vec<_>>();
            table(
                &["ID", "AGENT", "PID", "STATE", "SPAWNED", "TOKENS", "GOAL"],
                &rows,
            )?;
            Ok(0)
        }
        AgentCommand::Show { id } => {
            let (pid, invocation) = run_ref(c, &id).await?;
            let v = c.run(&Op::Show(ShowArgs { pid, invocation })).await?;
            if out.json {
                return out.json(&v).map(|()| 0);
            }
            // A process: its status, then its run shown the way a past run is.
            let (live, v) = if v.get("record").is_none() {
                let p: ProcessStatus = serde_json::from_value(v)?;
                let run = c
                    .run(&Op::Show(ShowArgs {
                        pid: None,
                        invocation: Some(p.invocation.clone()),
                    }))
                    .await?;
                (Some(p), run)
            } else {
                (None, v)
            };
            {
                let rec: InvocationRecord = serde_json::from_value(v["record"].clone())?;
                println!("invocation  {}", rec.id);
                println!("agent       {} {}", rec.agent, safe(&rec.version));
                println!("user        {}", rec.user);
                println!("pid         {}", rec.pid);
                match &live {
                    Some(p) => println!(
                        "state       {}{}",
                        state_name(&p.state),
                        p.waiting_on
                            .as_deref()
                            .map_or_else(String::new, |w| format!(" ({w})"))
                    ),
                    None => println!("state       {}", state_name(&rec.state)),
                }
                if let Some(r) = &rec.exit_reason {
                    println!(
                        "exit        {} ({})",
                        rec.exit_code.unwrap_or_default(),
                        safe(r)
                    );
                }
                println!("tokens      {}", rec.tokens.total());
                println!("goal        {}", safe(&rec.goal));
                println!();
                let conv: Vec<avix_proto::llm::Message> =
                    serde_json::from_value(v["conversation"].clone())?;
                for m in conv {
                    let who = state_name(&m.role);
                    let text = m.text();
                    if !text.is_empty() {
                        println!("[{who}] {}", avix_proto::text::escape_lines(&text));
                    }
                    for (_, name, input) in m.tool_calls() {
                        println!("[{who}] → {} {}", safe(name), cut(&input.to_string(), 100));
                    }
                    for b in &m.content {
                        if let avix_proto::llm::ContentBlock::ToolResult {
                            content, is_error, ..
                        } = b
                        {
                            let mark = if *is_error { "✗" } else { "←" };
                            println!("[tool] {mark} {}", cut(content, 100));
                        }
                    }
                }
            }
            Ok(0)
        }
    }
}

/// `NAME=VALUE` of `--param`.
fn parse_param(s: &str) -> Result<(String, f64), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: write NAME=VALUE, e.g. maxTurns=5"))?;
    let v: f64 = v
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: the value of {k} is not a number"))?;
    Ok((k.trim().to_owned(), v))
}

/// Sends `sig` to `pid`; says `done` (e.g. "pausing 104").
async fn signal(
    c: &Client,
    pid: avix_proto::Pid,
    sig: &str,
    payload: Option<Value>,
    done: &str,
    out: &Out,
) -> anyhow::Result<i32> {
    let v = c
        .run(&Op::Signal(avix_proto::op::SignalArgs {
            pid,
            signal: sig.into(),
            payload,
        }))
        .await?;
    if out.json {
        out.json(&v)?;
    } else {
        println!("{done} {pid}");
    }
    Ok(0)
}

/// One journal line as a person reads it: time, event, the essentials.
fn journal_line(l: &str) -> String {
    let Ok(e) = serde_json::from_str::<avix_proto::agent::JournalEntry>(l) else {
        return l.to_owned();
    };
    use avix_proto::agent::JournalEvent as J;
    let what = match &e.event {
        J::Spawned { agent, goal, .. } => format!("spawned {agent}: {}", cut(goal, 60)),
        J::State { state, waiting_on } => match waiting_on {
            Some(w) => format!("state {} ({w})", state_name(state)),
            None => format!("state {}", state_name(state)),
        },
        J::Message { role, content } => {
            let m = avix_proto::llm::Message {
                role: *role,
                content: content.clone(),
            };
            format!("{} {}", state_name(role), cut(&m.text(), 80))
        }
        J::LlmCall {
            model,
            usage,
            duration_ms,
            ..
        } => format!(
            "llm {model}: {} tokens in {duration_ms} ms",
            usage.input_tokens + usage.output_tokens
        ),
        J::ToolCall { tool, args, .. } => format!("call {tool} {}", cut(&args.to_string(), 60)),
        J::ToolResult {
            tool, ok, result, ..
        } => format!(
            "{} {tool}: {}",
            if *ok { "result" } else { "failed" },
            cut(result, 60)
        ),
        J::Workspace { changes, .. } => format!(
            "workspace {}",
            changes
                .iter()
                .filter_map(|c| c.status().map(|s| format!("{}{}", s.letter(), c.path)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        J::Signal { signal, from, .. } => format!("{signal} from {from}"),
        J::Exit {
            state,
            code,
            reason,
        } => {
            format!("exit {} ({code}): {}", state_name(state), cut(reason, 60))
        }
        other => cut(&serde_json::to_string(other).unwrap_or_default(), 80),
    };
    format!("{:>4} {} {}", e.seq, e.ts, what)
}

/// `agent logs`: the last `n` journal lines of `pid`, then with `follow` the new ones until it
/// ends.
async fn journal_lines(
    c: &Client,
    pid: avix_proto::Pid,
    n: usize,
    follow: bool,
    out: &Out,
) -> anyhow::Result<i32> {
    let path = format!("/proc/{pid}/journal.jsonl");
    let mut offset = 0u64;
    let mut first = true;
    loop {
        let v = c
            .run(&Op::FsRead(avix_proto::op::FsReadArgs {
                path: path.clone(),
                offset: Some(offset),
                length: None,
            }))
            .await
            .map_err(|e| anyhow::anyhow!("agent {pid}: {e}"))?;
        let text = v["content"].as_str().unwrap_or("");
        // Only whole lines: a line still being written is read next time.
        let whole = text.rfind('\n').map_or(0, |i| i + 1);
        let lines: Vec<&str> = text[..whole].lines().collect();
        let shown = if first {
            &lines[lines.len().saturating_sub(n)..]
        } else {
            &lines[..]
        };
        for l in shown {
            if out.json {
                println!("{l}");
            } else {
                println!("{}", safe(&journal_line(l)));
            }
        }
        first = false;
        offset += whole as u64;
        if v["next"].as_u64().is_some() {
            continue;
        }
        if !follow {
            return Ok(0);
        }
        let p: ProcessStatus = c
            .run_as(&Op::Show(ShowArgs {
                pid: Some(pid),
                invocation: None,
            }))
            .await?;
        if p.state.is_terminal() && whole == 0 {
            return Ok(0);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A run named on the command line: a PID (digits) or an invocation id (or a unique prefix
/// of one; digits that start an invocation id are that id).
async fn run_ref(
    c: &Client,
    run: &str,
) -> anyhow::Result<(Option<avix_proto::Pid>, Option<avix_proto::InvocationId>)> {
    let pid = run.parse::<avix_proto::Pid>().ok();
    // Digits are a PID, unless (six or more of them) they start an invocation id.
    if let Some(pid) = pid
        && run.len() < 6
    {
        return Ok((Some(pid), None));
    }
    let id = crate::client_ids::resolve(c, IdKind::Invocation, run).await?;
    Ok(match pid {
        Some(pid) if id == run => (Some(pid), None),
        _ => (None, Some(id.into())),
    })
}

/// Reports a new agent: its PID (or the reply as JSON), or with `follow` its output until it
/// exits (then the agent's exit code).
async fn started(
    events: &mut tokio::sync::broadcast::Receiver<EventFrame>,
    r: &SpawnReply,
    follow: bool,
    how: &str,
    out: &Out,
) -> anyhow::Result<i32> {
    if !follow {
        if out.json {
            out.json(&serde_json::to_value(r)?)?;
        } else {
            println!("{}", r.pid);
        }
        return Ok(0);
    }
    if !out.json {
        eprintln!("{how} pid {} (session {})", r.pid, r.session);
    }
    follow_pid(events, r.pid, out).await
}

/// Prints an agent's events until it exits; returns its exit code.
async fn follow_pid(
    events: &mut tokio::sync::broadcast::Receiver<EventFrame>,
    pid: avix_proto::Pid,
    out: &Out,
) -> anyhow::Result<i32> {
    let mut stdout = std::io::stdout();
    loop {
        let e = match events.recv().await {
            Ok(e) => e,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                eprintln!("(missed {n} events)");
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                bail!("the connection closed before the agent ended")
            }
        };
        if e.pid != Some(pid) {
            continue;
        }
        if out.json {
            println!("{}", serde_json::to_string(&e)?);
        }
        match EventName::parse(&e.event) {
            Some(EventName::AgentOutputChunk) if !out.json => {
                if let Some(c) = body::<event::OutputChunk>(&e) {
                    print!("{}", avix_proto::text::escape_lines(&c.text));
                    stdout.flush()?;
                }
            }
            Some(EventName::AgentOutput) if !out.json => println!(),
            Some(EventName::AgentToolCall) if !out.json => {
                if let Some(c) = body::<event::ToolCall>(&e) {
                    eprintln!("→ {} {}", safe(&c.tool), cut(&c.args.to_string(), 100));
                }
            }
            Some(EventName::AgentToolResult) if !out.json => {
                if let Some(r) = body::<event::ToolResult>(&e) {
                    let ok = if r.ok { "ok" } else { "error" };
                    let text = r.result.as_deref().unwrap_or("");
                    eprintln!("← {} {ok}: {}", safe(&r.tool), cut(text, 100));
                }
            }
            Some(EventName::AgentToolDenied) if !out.json => {
                if let Some(d) = body::<event::ToolDenied>(&e) {
                    eprintln!("✗ {} refused: {}", safe(&d.tool), safe(&d.reason));
                }
            }
            Some(EventName::HilRequest) if !out.json => {
                if let Some(h) = body::<event::HilAsked>(&e) {
                    eprintln!(
                        "⏸ approval needed for {}: avix client hil approve {} (or deny)",
                        safe(h.tool.as_deref().unwrap_or("a request")),
                        h.hil_id
                    );
                }
            }
            Some(EventName::AgentExit) => {
                let (state, code, reason) = body::<event::Exit>(&e).map_or_else(
                    || ("ended".to_owned(), 1, String::new()),
                    |x| (state_name(&x.state), x.exit_code, x.reason),
                );
                if !out.json {
                    eprintln!("pid {pid} {state} ({}): exit {code}", safe(&reason));
                }
                return Ok(code);
            }
            _ => {}
        }
    }
}

/// An event's body as its type (`None` for a body of another shape: an older daemon).
fn body<T: serde::de::DeserializeOwned>(e: &EventFrame) -> Option<T> {
    serde_json::from_value(e.body.clone()).ok()
}

async fn session(c: &Client, cmd: SessionCommand, out: &Out) -> anyhow::Result<i32> {
    match cmd {
        SessionCommand::List { username, status } => {
            let mut v: Vec<SessionRecord> = c
                .run_as(&Op::SessionList(UserArgs { user: username }))
                .await?;
            if let Some(s) = &status {
                v.retain(|r| r.state.as_ref().map(state_name).as_deref() == Some(s.as_str()));
            }
            if out.json {
                return out.json(&serde_json::to_value(&v)?).map(|()| 0);
            }
            let rows = v
                .iter()
                .map(|r| {
                    vec![
                        r.id.to_string(),
                        r.agent.clone(),
                        r.user.clone(),
                        r.state
                            .as_ref()
                            .map(state_name)
                            .unwrap_or_else(|| "-".into()),
                        r.invocations.len().to_string(),
                        r.updated_at.to_string(),
                        cut(&r.title, 40),
                    ]
                })
                .collect::<Vec<_>>();
            table(
                &["ID", "AGENT", "USER", "STATE", "RUNS", "UPDATED", "TITLE"],
                &rows,
            )?;
            Ok(0)
        }
        SessionCommand::Show { id } => {
            let id = crate::client_ids::resolve(c, IdKind::Session, &id).await?;
            let v = c
                .run(&Op::SessionShow(IdArgs {
                    id: id.clone().into(),
                }))
                .await?;
            if out.json {
                return out.json(&v).map(|()| 0);
            }
            let s: SessionRecord = serde_json::from_value(v["session"].clone())?;
            println!("session  {}", s.id);
            println!("agent    {}", s.agent);
            println!("user     {}", s.user);
            println!(
                "state    {}",
                s.state.as_ref().map(state_name).unwrap_or_default()
            );
            println!("title    {}", safe(&s.title));
            println!();
            let runs: Vec<InvocationRecord> = serde_json::from_value(v["invocations"].clone())?;
            let rows = runs
                .iter()
                .map(|r| {
                    vec![
                        r.id.to_string(),
                        r.pid.to_string(),
                        state_name(&r.state),
                        r.spawned_at.to_string(),
                        cut(&r.goal, 50),
                    ]
                })
                .collect::<Vec<_>>();
            table(&["INVOCATION", "PID", "STATE", "SPAWNED", "GOAL"], &rows)?;
            Ok(0)
        }
        SessionCommand::Resume { id, input, follow } => {
            let id = crate::client_ids::resolve(c, IdKind::Session, &id).await?;
            let mut events = c.events();
            if follow {
                c.subscribe(&["agent.*", "hil.*"], None).await?;
            }
            let r: SpawnReply = c
                .run_as(&Op::SessionResume(ResumeArgs {
                    id: id.into(),
                    input,
                }))
                .await?;
            if follow {
                return follow_pid(&mut events, r.pid, out).await;
            }
            if out.json {
                out.json(&serde_json::to_value(&r)?)?;
            } else {
                println!("{}", r.pid);
            }
            Ok(0)
        }
        SessionCommand::Delete { id, force } => {
            let id = crate::client_ids::resolve(c, IdKind::Session, &id).await?;
            let v = c
                .run(&Op::SessionDelete(DeleteArgs {
                    id: id.clone().into(),
                    force,
                }))
                .await?;
            if out.json {
                out.json(&v)?;
            } else {
                println!("deleted session {id}");
            }
            Ok(0)
        }
    }
}

async fn hil(c: &Client, cmd: HilCommand, out: &Out) -> anyhow::Result<i32> {
    let op = match cmd {
        HilCommand::List { pid } => {
            let v: Vec<HilRequest> = c.run_as(&Op::HilList(HilListArgs { pid })).await?;
            if out.json {
                return out.json(&serde_json::to_value(&v)?).map(|()| 0);
            }
            let rows = v
                .iter()
                .map(|h| {
                    vec![
                        h.id.to_string(),
                        h.pid.to_string(),
                        state_name(&h.kind),
                        h.tool.clone().unwrap_or_default(),
                        state_name(&h.state),
                        h.expires_at.to_string(),
                        cut(h.reason.as_deref().unwrap_or(""), 40),
                    ]
                })
                .collect::<Vec<_>>();
            table(
                &["ID", "PID", "KIND", "TOOL", "STATE", "EXPIRES", "REASON"],
                &rows,
            )?;
            return Ok(0);
        }
        HilCommand::Approve { id, note, scope } => Op::HilApprove(HilAnswerArgs {
            id: crate::client_ids::resolve(c, IdKind::Hil, &id)
                .await?
                .into(),
            note,
            scope: Some(scope),
            args: None,
        }),
        HilCommand::Deny { id, note } => Op::HilDeny(HilAnswerArgs {
            id: crate::client_ids::resolve(c, IdKind::Hil, &id)
                .await?
                .into(),
            note,
            scope: None,
            args: None,
        }),
    };
    let r: HilRequest = c.run_as(&op).await?;
    if out.json {
        out.json(&serde_json::to_value(&r)?)?;
    } else {
        println!(
            "{} {} ({})",
            r.id,
            state_name(&r.state),
            r.tool.unwrap_or_default()
        );
    }
    Ok(0)
}

async fn logs(c: &Client, follow: bool, lines: usize, out: &Out) -> anyhow::Result<i32> {
    let mut events = c.events();
    if follow {
        c.subscribe(&["sys.log"], None).await?;
    }
    let v = c.run(&Op::Logs(LogsArgs { lines: Some(lines) })).await?;
    if out.json && !follow {
        return out.json(&v).map(|()| 0);
    }
    for l in v["lines"].as_array().into_iter().flatten() {
        println!("{}", safe(l.as_str().unwrap_or_default()));
    }
    if !follow {
        return Ok(0);
    }
    loop {
        match events.recv().await {
            Ok(e) if e.event == EventName::SysLog => {
                println!("{}", safe(e.body["line"].as_str().unwrap_or_default()));
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                eprintln!("(missed {n} lines)");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                bail!("the connection closed")
            }
        }
    }
}

async fn shell(c: &Client) -> anyhow::Result<i32> {
    use tokio::io::AsyncBufReadExt;
    let mut events = c.events();
    tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            println!(
                "event {}",
                safe(&serde_json::to_string(&e).unwrap_or_default())
            );
        }
    });
    eprintln!("ATP shell: `DOMAIN OP [JSON]`, a raw JSON frame, `:sub PATTERN…`, `:q` to leave");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == ":q" || line == ":quit" {
            break;
        }
        if let Some(rest) = line.strip_prefix(":sub") {
            let pats: Vec<&str> = rest.split_whitespace().collect();
            let pats = if pats.is_empty() { vec!["*"] } else { pats };
            match c.subscribe(&pats, None).await {
                Ok(v) => println!("ok {}", safe(&v.to_string())),
                Err(e) => println!("error {}", safe(&e.to_string())),
            }
            continue;
        }
        if line.starts_with('{') {
            c.send_raw(line.to_owned()).await?;
            continue;
        }
        let mut parts = line.splitn(3, char::is_whitespace);
        let (Some(domain), Some(op)) = (parts.next(), parts.next()) else {
            println!("error: type DOMAIN OP [JSON], e.g. proc list");
            continue;
        };
        let body = match parts.next().map(str::trim) {
            None | Some("") => json!({}),
            Some(j) => match serde_json::from_str(j) {
                Ok(v) => v,
                Err(e) => {
                    println!("error: the body is not JSON: {e}");
                    continue;
                }
            },
        };
        match c.call(domain, op, body).await {
            Ok(v) => println!("ok {}", safe(&serde_json::to_string(&v)?)),
            Err(e) => println!("error {}", safe(&e.to_string())),
        }
    }
    Ok(0)
}
