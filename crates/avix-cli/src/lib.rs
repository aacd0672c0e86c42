//! The `avix` command line: clap structures, turned into validated options for the server,
//! client and packaging libraries.
//!
//! # Layout
//! - [`Args`] and its subcommands: what the user typed.
//! - [`run`]: dispatch to the libraries.

mod client;
mod client_fs;
mod client_ids;
mod client_secret;
mod client_service;
mod tui;

#[doc(hidden)]
pub use tui::redraw_cost as tui_redraw_cost;

use std::path::{Path, PathBuf};

use anyhow::Context;
use avix_proto::config::kernel::{MasterKeySource, Mode};
use avix_proto::{Role, UserName};
use avix_server::init::{CredentialType, InitOptions};
use avix_server::start::{MountChoice, StartOptions};
use clap::{Parser, Subcommand, ValueEnum};
use zeroize::Zeroizing;

/// Avix: an agent operating system. Agents are processes, the LLM is the CPU, and everything
/// is a file.
#[derive(Debug, Parser)]
#[command(name = "avix", version, propagate_version = true)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run and administer a daemon on this machine.
    #[command(subcommand)]
    Server(ServerCommand),
    /// Talk to a running daemon over ATP (AVIX_API_KEY, AVIX_SERVER).
    Client(client::ClientArgs),
    /// A terminal dashboard: agents as they run, the catalog, approvals, sessions, services
    /// and the log; spawn, attach, input, pause, resume, stop, kill, approve, deny (`?` lists
    /// the keys). Logs in like `avix client`.
    Tui(client::ConnectArgs),
    /// Print a shell completion script: `source <(avix completions bash)`, or save it where
    /// your shell loads completions from.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Manual pages from the command definitions: `avix man | man -l -` shows the top page;
    /// `--dir DIR` writes one page per command (avix.1, avix-client-agent-spawn.1, …).
    Man {
        /// Write every page into this directory instead.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ServerCommand {
    /// Configuration of a runtime root.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Start the daemon in the foreground (stop it with Ctrl-C, SIGTERM or `server stop`).
    Start(StartArgs),
    /// Whether a daemon runs on a root (exit 0 if it does, 3 if not).
    Status(RootArgs),
    /// Stop the daemon of a root: SIGTERM, then wait until it has stopped.
    Stop(StopArgs),
    /// Run one agent without a daemon, print its progress, exit with its status.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct RootArgs {
    /// The runtime root.
    #[arg(long, env = "AVIX_ROOT")]
    root: PathBuf,
}

#[derive(Debug, clap::Args)]
struct StopArgs {
    /// The runtime root.
    #[arg(long, env = "AVIX_ROOT")]
    root: PathBuf,
    /// How long to wait for a clean stop, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The runtime root.
    #[arg(long, env = "AVIX_ROOT")]
    root: PathBuf,
    /// The goal.
    #[arg(short, long)]
    goal: String,
    /// The agent to run.
    #[arg(long, default_value = "assistant")]
    name: String,
    /// A provider from llm.yaml (its default model).
    #[arg(long)]
    provider: Option<String>,
    /// A model: provider/model, an alias, or a model of the default provider.
    #[arg(long)]
    model: Option<String>,
    /// Run as this user (default: the user mapped to your uid, else the first admin).
    #[arg(long)]
    user: Option<String>,
    /// Log level of the kernel's own messages (default warn).
    #[arg(long, value_parser = ["off", "error", "warn", "info", "debug", "trace"])]
    log_level: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Create a runtime root: configuration, master key, first user and data trees.
    Init(InitArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    Admin,
    Operator,
    User,
    Guest,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CredentialArg {
    #[value(name = "api_key", alias = "api-key")]
    ApiKey,
    Password,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    Gui,
    Cli,
    Headless,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KeySourceArg {
    Env,
    File,
}

#[derive(Debug, clap::Args)]
struct InitArgs {
    /// The runtime root to create.
    #[arg(long, env = "AVIX_ROOT")]
    root: PathBuf,
    /// The first user.
    #[arg(long, default_value = "admin")]
    user: String,
    /// The first user's role.
    #[arg(long, value_enum, default_value = "admin")]
    role: RoleArg,
    /// How the first user logs in.
    #[arg(long, value_enum, default_value = "api_key")]
    credential_type: CredentialArg,
    /// Deployment mode: decides where the master key lives and what ATP may bind.
    #[arg(long, value_enum, default_value = "cli")]
    mode: ModeArg,
    /// Use this API key (at least 32 characters) instead of generating one.
    #[arg(long, conflicts_with = "password")]
    api_key: Option<String>,
    /// Use this password instead of prompting (visible in `ps`; prefer AVIX_PASSWORD).
    #[arg(long)]
    password: Option<String>,
    /// Where the master key lives: a 0600 file under ROOT/etc, or $AVIX_MASTER_KEY.
    /// Default: file in cli and gui mode, env in headless mode.
    #[arg(long, value_enum)]
    master_key_source: Option<KeySourceArg>,
    /// The host uid whose calls through the FUSE mount act as this user
    /// (default: $SUDO_UID, else your uid).
    #[arg(long)]
    host_uid: Option<u32>,
    /// Never prompt (fail instead).
    #[arg(long)]
    non_interactive: bool,
    /// Re-create the configuration of an initialised root (data is never touched).
    #[arg(long)]
    force: bool,
}

#[derive(Debug, clap::Args)]
struct StartArgs {
    /// The runtime root.
    #[arg(long, env = "AVIX_ROOT")]
    root: PathBuf,
    /// ATP port (default: kernel.yaml, 9142).
    #[arg(long)]
    port: Option<u16>,
    /// Where to mount the VFS (default: ROOT/mnt).
    #[arg(long, conflicts_with = "no_mount")]
    mount: Option<PathBuf>,
    /// Do not mount the VFS.
    #[arg(long)]
    no_mount: bool,
    /// The address ATP listens on (default: kernel.yaml, 127.0.0.1). Another than loopback
    /// needs --allow-remote (or headless mode).
    #[arg(long)]
    bind: Option<std::net::IpAddr>,
    /// Allow ATP on a non-loopback address outside headless mode (use TLS).
    #[arg(long)]
    allow_remote: bool,
    /// error, warn, info, debug or trace (default: kernel.yaml, info).
    #[arg(long, value_parser = ["off", "error", "warn", "info", "debug", "trace"])]
    log_level: Option<String>,
}

fn default_host_uid() -> u32 {
    std::env::var("SUDO_UID")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            // SAFETY: getuid has no preconditions.
            unsafe { libc::getuid() }
        })
}

fn init(a: InitArgs) -> anyhow::Result<()> {
    let opts = InitOptions {
        root: a.root,
        user: UserName::new(a.user).context("--user")?,
        role: match a.role {
            RoleArg::Admin => Role::Admin,
            RoleArg::Operator => Role::Operator,
            RoleArg::User => Role::User,
            RoleArg::Guest => Role::Guest,
        },
        credential_type: match a.credential_type {
            CredentialArg::ApiKey => CredentialType::ApiKey,
            CredentialArg::Password => CredentialType::Password,
        },
        mode: match a.mode {
            ModeArg::Gui => Mode::Gui,
            ModeArg::Cli => Mode::Cli,
            ModeArg::Headless => Mode::Headless,
        },
        api_key: a.api_key.map(Zeroizing::new),
        password: a.password.map(Zeroizing::new),
        master_key_source: a.master_key_source.map(|s| match s {
            KeySourceArg::Env => MasterKeySource::Env,
            KeySourceArg::File => MasterKeySource::File,
        }),
        host_uid: a.host_uid.unwrap_or_else(default_host_uid),
        non_interactive: a.non_interactive,
        force: a.force,
    };
    let report = avix_server::init::run(&opts)?;
    print!("{}", report.render());
    Ok(())
}

fn start(a: StartArgs) -> anyhow::Result<()> {
    let mount = match (a.no_mount, a.mount) {
        (true, _) => MountChoice::None,
        (false, Some(p)) => MountChoice::At(p),
        (false, None) => MountChoice::Default,
    };
    avix_server::start::start(&StartOptions {
        root: a.root,
        port: a.port,
        mount,
        log_level: a.log_level,
        bind: a.bind,
        allow_remote: a.allow_remote,
    })?;
    Ok(())
}

/// The exit status of a failed command: the kind of what the server refused (see
/// [`avix_proto::ErrorKind::exit_code`]: 3 not found, 4 denied, 5 invalid, 6 conflict, 7 a
/// limit, 8 the server unreachable or not answering), else 1.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    use avix_client::ClientError;
    use avix_proto::ErrorKind;
    let kind = e
        .chain()
        .find_map(|c| match c.downcast_ref::<ClientError>()? {
            ClientError::Atp(a) => Some(ErrorKind::from_atp(a.code)),
            ClientError::Connect { .. } | ClientError::Timeout(_) | ClientError::Closed(_) => {
                Some(ErrorKind::Unavailable)
            }
            ClientError::Login { .. } => Some(ErrorKind::Denied),
            ClientError::Config(_) => Some(ErrorKind::Invalid),
            ClientError::Protocol(_) => None,
        });
    kind.map_or(1, ErrorKind::exit_code)
}

/// An error and its causes on one line, each cause shown once (library messages often
/// already include their source's text).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn run_agent(a: RunArgs) -> anyhow::Result<i32> {
    let opts = avix_server::run::RunOptions {
        root: a.root,
        goal: a.goal,
        agent: a.name,
        provider: a.provider,
        model: a.model,
        user: a.user.map(UserName::new).transpose().context("--user")?,
        log_level: a.log_level,
        host_uid: default_host_uid(),
    };
    Ok(avix_server::run::run(&opts)?)
}

/// Runs a parsed command line; returns the process exit code.
/// `server status`: 0 when a daemon holds the root's pid lock, 3 (LSB "not running") if not.
fn server_status(root: &Path) -> i32 {
    let layout = avix_kernel::layout::RootLayout::new(root);
    match avix_server::pidfile::holder(&layout.pid_file()) {
        Some(pid) => {
            println!("running: pid {pid} on {}", root.display());
            0
        }
        None => {
            println!("not running on {}", root.display());
            3
        }
    }
}

/// `server stop`: SIGTERM to the daemon holding the lock, then wait for the lock to go.
fn server_stop(a: &StopArgs) -> anyhow::Result<i32> {
    let layout = avix_kernel::layout::RootLayout::new(&a.root);
    let pid_file = layout.pid_file();
    let Some(pid) = avix_server::pidfile::holder(&pid_file) else {
        println!("not running on {}", a.root.display());
        return Ok(0);
    };
    let target = nix::unistd::Pid::from_raw(i32::try_from(pid).context("a pid out of range")?);
    nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM)
        .with_context(|| format!("cannot signal the daemon (pid {pid}): run this as its user"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(a.timeout);
    while avix_server::pidfile::holder(&pid_file).is_some() {
        if std::time::Instant::now() >= deadline {
            anyhow::bail!(
                "the daemon (pid {pid}) did not stop within {} s; see its log, or kill -9 {pid}",
                a.timeout
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    println!("stopped: pid {pid}");
    Ok(0)
}

/// Writes `bytes` to standard output; a reader that stopped early (`| head`) is no error.
fn print_all(bytes: &[u8]) -> anyhow::Result<i32> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    match o.write_all(bytes).and_then(|()| o.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(0),
    }
}

/// Runs the parsed command line; the exit status on success (a command such as `server
/// status` or `agent spawn --follow` has its own), an error otherwise (see [`exit_code`]).
pub fn run(args: Args) -> anyhow::Result<i32> {
    match args.command {
        Command::Server(ServerCommand::Config(ConfigCommand::Init(a))) => init(a).map(|()| 0),
        Command::Server(ServerCommand::Start(a)) => start(a).map(|()| 0),
        Command::Server(ServerCommand::Run(a)) => run_agent(a),
        Command::Server(ServerCommand::Status(a)) => Ok(server_status(&a.root)),
        Command::Server(ServerCommand::Stop(a)) => server_stop(&a),
        Command::Client(a) => client::run(a),
        Command::Tui(a) => tui::run(a.config()?, avix_client::tokens::Tokens::default_place()),
        Command::Completions { shell } => {
            let mut cmd = <Args as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "avix", &mut script);
            print_all(&script)
        }
        Command::Man { dir } => {
            let cmd = <Args as clap::CommandFactory>::command();
            match dir {
                Some(d) => {
                    std::fs::create_dir_all(&d)
                        .with_context(|| format!("cannot create {}", d.display()))?;
                    clap_mangen::generate_to(cmd, &d)
                        .with_context(|| format!("cannot write the pages to {}", d.display()))?;
                    let n = std::fs::read_dir(&d).map_or(0, Iterator::count);
                    eprintln!("{n} pages in {}", d.display());
                }
                None => {
                    let mut page = Vec::new();
                    clap_mangen::Man::new(cmd).render(&mut page)?;
                    return print_all(&page);
                }
            }
            Ok(0)
        }
    }
}
