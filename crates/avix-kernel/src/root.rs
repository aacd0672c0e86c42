//! Creating a runtime root (`avix server config init`; tests and benchmarks create theirs
//! with [`run`] too): creates it or, with `--force`, re-creates its configuration.
//!
//! Writes `etc/auth.conf` (0600), `users.yaml`, `crews.yaml`, `kernel.yaml` (0600) and
//! `llm.yaml`, creates the data trees, and sets up the master key: written to a 0600 key file
//! (`--master-key-source file`, the default in cli and gui mode) or shown once for the
//! environment (`env`, the default in headless mode). The API key is shown once; only its
//! keyed hash is stored.
//!
//! Re-running on an initialised root refuses without `--force`. With it, configuration files
//! are re-created (each old one is kept as `<name>.bak-<time>`), the current master key is
//! reused when it is available, and nothing under `data/` is ever touched.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::layout::RootLayout;
use avix_auth::{ApiKey, MasterKey, Purpose, password};
use avix_proto::config::auth::{AuthConfig, AuthPolicy, Credential, Identity};
use avix_proto::config::crews::Crews;
use avix_proto::config::kernel::{
    KernelConfig, MASTER_KEY_ENV, MASTER_KEY_FILE, MasterKeySource, Mode,
};
use avix_proto::config::users::{User, Users};
use avix_proto::envelope::Document;
use avix_proto::time::Timestamp;
use avix_proto::{Role, UserName};
use zeroize::Zeroizing;

use crate::fsutil::{ensure_dir, write_atomic};

/// The uid the first user gets.
pub const FIRST_UID: u32 = 1001;

/// Credential kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialType {
    /// A generated (or given) API key.
    ApiKey,
    /// A password (argon2id).
    Password,
}

/// What to initialise.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The runtime root.
    pub root: PathBuf,
    /// The first user.
    pub user: UserName,
    /// Their role.
    pub role: Role,
    /// How they log in.
    pub credential_type: CredentialType,
    /// Deployment mode.
    pub mode: Mode,
    /// Use this API key instead of generating one.
    pub api_key: Option<Zeroizing<String>>,
    /// Use this password instead of prompting.
    pub password: Option<Zeroizing<String>>,
    /// Where the master key lives; defaults by mode.
    pub master_key_source: Option<MasterKeySource>,
    /// The host uid whose calls through the mount act as the user.
    pub host_uid: u32,
    /// Never prompt.
    pub non_interactive: bool,
    /// Re-create configuration on an initialised root.
    pub force: bool,
}

impl InitOptions {
    /// Non-interactive defaults: `user` is an admin with a generated API key, `cli` mode,
    /// mapped to host uid 0 (tests, benchmarks, scripts).
    pub fn admin(root: impl Into<PathBuf>, user: UserName) -> Self {
        Self {
            root: root.into(),
            user,
            role: Role::Admin,
            credential_type: CredentialType::ApiKey,
            mode: Mode::Cli,
            api_key: None,
            password: None,
            master_key_source: None,
            host_uid: 0,
            non_interactive: true,
            force: false,
        }
    }
}

/// Why init failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// Already initialised.
    #[error(
        "{0} is already initialised (etc/auth.conf exists); pass --force to re-create its configuration (data is never touched)"
    )]
    AlreadyInitialised(String),
    /// --force, but the current master key is unavailable and secrets depend on it.
    #[error(
        "cannot re-initialise {root} without its current master key: {secrets} stored secret(s) would become unreadable; set {env} or restore etc/{file}"
    )]
    KeyNeeded {
        /// The root.
        root: String,
        /// How many secrets.
        secrets: usize,
        /// The env var.
        env: &'static str,
        /// The key file.
        file: &'static str,
    },
    /// A password is needed and none was given.
    #[error(
        "a password is needed: pass --password, set AVIX_PASSWORD, or run without --non-interactive to be prompted"
    )]
    PasswordNeeded,
    /// The password breaks the policy.
    #[error("the password is too short: use at least {0} characters")]
    PasswordTooShort(u32),
    /// The prompt's two entries differ.
    #[error("the passwords do not match")]
    PasswordMismatch,
    /// The API key is too short.
    #[error(transparent)]
    ApiKey(#[from] avix_auth::api_key::ApiKeyTooShort),
    /// A filesystem error.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Any other failure.
    #[error("{0}")]
    Other(String),
}

/// What init did, and the secrets to show once.
pub struct InitReport {
    /// The root.
    pub root: PathBuf,
    /// The user.
    pub user: UserName,
    /// The role.
    pub role: Role,
    /// The generated or given API key (shown once).
    pub api_key: Option<ApiKey>,
    /// The master key, when it must be shown (env source, newly generated).
    pub master_key_to_show: Option<Zeroizing<String>>,
    /// The key file, when one was written or reused.
    pub key_file: Option<PathBuf>,
    /// Whether an existing master key was reused.
    pub reused_master_key: bool,
    /// Files kept aside by --force.
    pub backups: Vec<PathBuf>,
    /// Warnings to show.
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for InitReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitReport")
            .field("root", &self.root)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl InitReport {
    /// The text shown to the person who ran init.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let root = self.root.display();
        let _ = writeln!(s, "Initialised {root} for {} ({}).", self.user, self.role);
        for b in &self.backups {
            let _ = writeln!(
                s,
                "Kept the previous {} as {}.",
                b.file_stem()
                    .map(|x| x.to_string_lossy())
                    .unwrap_or_default(),
                b.display()
            );
        }
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        if let Some(k) = &self.key_file {
            let verb = if self.reused_master_key {
                "Reusing"
            } else {
                "Wrote"
            };
            let _ = writeln!(
                s,
                "{verb} the master key file {} (0600). Back it up: secrets cannot be decrypted without it.",
                k.display()
            );
        }
        if let Some(mk) = &self.master_key_to_show {
            let _ = writeln!(
                s,
                "Master key (shown once; store it safely, the daemon reads it from {MASTER_KEY_ENV}):"
            );
            let _ = writeln!(s, "  export {MASTER_KEY_ENV}={}", mk.as_str());
        } else if self.reused_master_key && self.key_file.is_none() {
            let _ = writeln!(s, "Reusing the master key from {MASTER_KEY_ENV}.");
        }
        if let Some(k) = &self.api_key {
            let _ = writeln!(s, "API key for {} (shown once; store it now):", self.user);
            let _ = writeln!(s, "  {}", k.expose());
        }
        let _ = writeln!(s, "Start the daemon:  avix server start --root {root}");
        s
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> InitError + '_ {
    move |source| InitError::Io {
        path: path.display().to_string(),
        source,
    }
}

const HEADER: &str = "# Avix configuration. Edit through the mount (/etc/avix) or on disk: the daemon\n# validates changes and reloads them; an invalid write is refused and the old file kept.\n";

fn doc_text<S: avix_proto::Kind>(spec: S) -> Result<String, InitError> {
    let mut doc = Document::new(spec);
    doc.metadata.last_updated = Some(Timestamp::now());
    let yaml = doc.to_yaml().map_err(|e| InitError::Other(e.to_string()))?;
    Ok(format!("{HEADER}{yaml}"))
}

/// The llm.yaml written at init: the scripted provider works offline; the others are filled
/// from the environment at request time.
pub const LLM_TEMPLATE: &str = r#"# Avix LLM providers (docs/llm.md). API keys never go in this file: apiKeyEnv names the
# environment variable of the daemon that holds the key. A provider whose key is missing is
# listed as unavailable in /proc/services/llm/status.yaml, with the reason.
apiVersion: avix/v1
kind: LlmConfig
spec:
  # The text provider agents use unless their manifest or spawn request names a model.
  defaultProvider: scripted
  defaultProviders: { image: openai, speech: openai, transcription: openai, embedding: openai }
  providers:
    - name: scripted
      kind: scripted
      script: scripts/default.yaml
    - name: anthropic
      kind: anthropic
      apiKeyEnv: ANTHROPIC_API_KEY
      models: [claude-sonnet-4-5, claude-haiku-4-5]
      defaultModel: claude-sonnet-4-5
      limits: { concurrency: 4, requestsPerMinute: 50 }
      # prices: { claude-sonnet-4-5: { input: 3.0, output: 15.0 } }   # USD per million tokens
    - name: openai
      kind: openai
      apiKeyEnv: OPENAI_API_KEY
      models: [gpt-4.1, gpt-4.1-mini]
      defaultModel: gpt-4.1-mini
      defaultModels: { image: gpt-image-1, speech: gpt-4o-mini-tts, transcription: whisper-1, embedding: text-embedding-3-small }
      limits: { concurrency: 4, requestsPerMinute: 60 }
    - name: ollama
      kind: ollama
      baseUrl: http://127.0.0.1:11434
      defaultModel: llama3.2
  aliases:
    fast: anthropic/claude-haiku-4-5
  # Tried in order when the chosen provider fails before any output reached the agent.
  fallback: []
"#;

/// The agents installed in `/bin` by init: (name, version, manifest).
pub const BUILTIN_AGENTS: [(&str, &str, &str); 3] = [
    (
        "assistant",
        "1.1.0",
        include_str!("../assets/agents/assistant/agent.yaml"),
    ),
    (
        "researcher",
        "1.0.0",
        include_str!("../assets/agents/researcher/agent.yaml"),
    ),
    (
        "coordinator",
        "1.0.0",
        include_str!("../assets/agents/coordinator/agent.yaml"),
    ),
];

/// The scripted provider's default script (`ROOT/etc/scripts/default.yaml`).
pub const DEFAULT_SCRIPT: &str = include_str!("../assets/scripts/default.yaml");

/// Installs the built-in agents and the default script where they are missing (an existing
/// file is never overwritten: it may have been edited).
pub fn install_builtins(layout: &RootLayout) -> Result<(), InitError> {
    for (name, version, manifest) in BUILTIN_AGENTS {
        let dir = layout.data().join("bin").join(format!("{name}@{version}"));
        let file = dir.join("agent.yaml");
        if !file.exists() {
            ensure_dir(&dir, 0o755).map_err(io_err(&dir))?;
            write_atomic(&file, manifest.as_bytes(), 0o644).map_err(io_err(&file))?;
        }
    }
    let scripts = layout.etc().join("scripts");
    let default = scripts.join("default.yaml");
    if !default.exists() {
        ensure_dir(&scripts, 0o755).map_err(io_err(&scripts))?;
        write_atomic(&default, DEFAULT_SCRIPT.as_bytes(), 0o644).map_err(io_err(&default))?;
    }
    Ok(())
}

fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

/// The master key already in use for `layout`, if it can be found and matches auth.conf.
fn existing_master_key(
    layout: &RootLayout,
    old_auth: Option<&AuthConfig>,
) -> Option<(MasterKey, bool)> {
    let check = old_auth.map(|a| a.master_key_check.as_str())?;
    let file = layout.etc_file(MASTER_KEY_FILE);
    if let Ok(k) = MasterKey::from_file(&file)
        && k.matches_check_value(check)
    {
        return Some((k, true));
    }
    if let Ok(k) = MasterKey::from_env(MASTER_KEY_ENV)
        && k.matches_check_value(check)
    {
        return Some((k, false));
    }
    None
}

fn obtain_password(opts: &InitOptions, min: u32) -> Result<Zeroizing<String>, InitError> {
    let pw = match &opts.password {
        Some(p) => p.clone(),
        None => match std::env::var("AVIX_PASSWORD") {
            Ok(p) => Zeroizing::new(p),
            Err(_) if opts.non_interactive => return Err(InitError::PasswordNeeded),
            Err(_) => {
                let a = prompt_hidden(&format!("Password for {}: ", opts.user))?;
                let b = prompt_hidden("Again: ")?;
                if *a != *b {
                    return Err(InitError::PasswordMismatch);
                }
                a
            }
        },
    };
    if (pw.chars().count() as u64) < u64::from(min) {
        return Err(InitError::PasswordTooShort(min));
    }
    Ok(pw)
}

/// Reads a line from the terminal with echo off.
fn prompt_hidden(prompt: &str) -> Result<Zeroizing<String>, InitError> {
    use std::io::{BufRead, Write};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| InitError::PasswordNeeded)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&tty);
    // SAFETY: termios is plain data; all zeroes is a valid value (filled by tcgetattr).
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is an open terminal and `term` a valid out-parameter.
    if unsafe { libc::tcgetattr(fd, &mut term) } != 0 {
        return Err(InitError::PasswordNeeded);
    }
    let saved = term;
    term.c_lflag &= !libc::ECHO;
    // SAFETY: as above; the saved settings are restored below.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &term) };
    let mut out = &tty;
    let _ = out.write_all(prompt.as_bytes());
    let mut line = Zeroizing::new(String::new());
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    // SAFETY: restoring the settings read above.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    let _ = out.write_all(b"\n");
    read.map_err(|_| InitError::PasswordNeeded)?;
    let trimmed = Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_owned());
    Ok(trimmed)
}

/// Runs init.
pub fn run(opts: &InitOptions) -> Result<InitReport, InitError> {
    let layout = RootLayout::new(&opts.root);
    let auth_path = layout.etc_file("auth.conf");
    let initialised = auth_path.exists();
    if initialised && !opts.force {
        return Err(InitError::AlreadyInitialised(
            opts.root.display().to_string(),
        ));
    }
    let mut warnings = Vec::new();
    let old_auth: Option<AuthConfig> = if initialised {
        match std::fs::read(&auth_path)
            .ok()
            .map(|b| Document::<AuthConfig>::parse(&b))
        {
            Some(Ok(d)) => Some(d.spec),
            _ => {
                warnings
                    .push("the existing auth.conf is invalid; its identities are not kept".into());
                None
            }
        }
    } else {
        None
    };

    let source = opts.master_key_source.unwrap_or(match opts.mode {
        Mode::Headless => MasterKeySource::Env,
        Mode::Cli | Mode::Gui => MasterKeySource::File,
    });
    let reuse = existing_master_key(&layout, old_auth.as_ref());
    if initialised && reuse.is_none() {
        let secrets = count_files(&layout.secrets());
        if secrets > 0 {
            return Err(InitError::KeyNeeded {
                root: opts.root.display().to_string(),
                secrets,
                env: MASTER_KEY_ENV,
                file: MASTER_KEY_FILE,
            });
        }
    }
    let reused = reuse.is_some();
    let master = reuse.map(|(k, _)| k).unwrap_or_else(MasterKey::generate);

    // Credential.
    let policy = AuthPolicy::default();
    let mut api_key = None;
    let credential = match opts.credential_type {
        CredentialType::ApiKey => {
            let key = match &opts.api_key {
                Some(k) => ApiKey::given(k.to_string(), policy.api_key_min_length as usize)?,
                None => ApiKey::generate(),
            };
            let hash = key.hash(&master.derive(Purpose::ApiKeyHash));
            api_key = Some(key);
            Credential::ApiKey { key_hash: hash }
        }
        CredentialType::Password => {
            let pw = obtain_password(opts, policy.password_min_length)?;
            Credential::Password {
                password_hash: password::hash(&pw).map_err(|e| InitError::Other(e.to_string()))?,
            }
        }
    };

    // Directories, each with its mode (docs/security.md, "On the host").
    layout.secure().map_err(io_err(layout.root()))?;
    for dir in layout.directories() {
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    }
    let home = layout
        .data()
        .join("users")
        .join(opts.user.as_str())
        .join("workspace");
    ensure_dir(&home, 0o755).map_err(io_err(&home))?;

    // Keep any previous configuration aside.
    let stamp = Timestamp::now().unix();
    let mut backups = Vec::new();
    for name in [
        "auth.conf",
        "users.yaml",
        "crews.yaml",
        "kernel.yaml",
        "llm.yaml",
    ] {
        let p = layout.etc_file(name);
        if p.exists() {
            let b = layout.etc_file(&format!("{name}.bak-{stamp}"));
            std::fs::copy(&p, &b).map_err(io_err(&b))?;
            std::fs::set_permissions(&b, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .map_err(io_err(&b))?;
            backups.push(b);
        }
    }

    // Re-initialising never loses or renumbers a user: every identity and users.yaml entry
    // is kept with its uid; `opts.user` gets its new credential and role, under the uid it
    // had (or the next free one).
    let old_users: Option<Users> = if initialised {
        match std::fs::read(layout.etc_file("users.yaml"))
            .ok()
            .map(|b| Document::<Users>::parse(&b))
        {
            Some(Ok(d)) => Some(d.spec),
            _ => {
                warnings.push(
                    "the existing users.yaml is invalid; only the new user is written".into(),
                );
                None
            }
        }
    } else {
        None
    };
    let old_ids = old_auth.as_ref().map_or(&[][..], |a| &a.identities[..]);
    let old_entries = old_users.as_ref().map_or(&[][..], |u| &u.users[..]);
    let uid = old_ids
        .iter()
        .find(|i| i.name == opts.user)
        .map(|i| i.uid)
        .or_else(|| {
            old_entries
                .iter()
                .find(|u| u.username == opts.user)
                .map(|u| u.uid)
        })
        .unwrap_or_else(|| {
            old_ids
                .iter()
                .map(|i| i.uid)
                .chain(old_entries.iter().map(|u| u.uid))
                .max()
                .map_or(FIRST_UID, |m| m.max(FIRST_UID - 1) + 1)
        });
    let mut identities = vec![Identity {
        name: opts.user.clone(),
        uid,
        role: opts.role,
        credential,
        ip_allowlist: old_ids
            .iter()
            .find(|i| i.name == opts.user)
            .map(|i| i.ip_allowlist.clone())
            .unwrap_or_default(),
    }];
    let others: Vec<Identity> = old_ids
        .iter()
        .filter(|i| i.name != opts.user)
        .cloned()
        .collect();
    if !reused
        && let stale = others
            .iter()
            .filter(|i| matches!(i.credential, Credential::ApiKey { .. }))
            .map(|i| i.name.to_string())
            .collect::<Vec<_>>()
        && !stale.is_empty()
    {
        warnings.push(format!(
            "a new master key was generated: the API keys of {} no longer verify; run init --force --user NAME for each to issue a new one",
            stale.join(", ")
        ));
    }
    identities.extend(others);
    if !identities.iter().any(|i| i.role == Role::Admin) {
        warnings.push(format!(
            "{} is not an admin and no other identity is: no one can change /etc/avix",
            opts.user
        ));
        return Err(InitError::Other(
            "auth.conf needs at least one admin: run init with --role admin first, then add other users".into(),
        ));
    }
    let auth = AuthConfig {
        master_key_check: master.check_value(),
        policy,
        identities,
    };

    // users.yaml. A new first user may use every tool; add restrictions (deniedTools, crews)
    // as the installation grows. Existing entries are kept as they are; the re-initialised
    // user's keeps its settings and gets the host uid asked for.
    let mut users = old_users.unwrap_or(Users { users: Vec::new() });
    if let Some(other) = users
        .users
        .iter()
        .find(|u| u.username != opts.user && u.host_uid == Some(opts.host_uid))
    {
        return Err(InitError::Other(format!(
            "host uid {} already acts as {} through the mount: pass --host-uid with the OS account that should act as {}",
            opts.host_uid, other.username, opts.user
        )));
    }
    match users.users.iter_mut().find(|u| u.username == opts.user) {
        Some(u) => {
            u.uid = uid;
            u.host_uid = Some(opts.host_uid);
        }
        None => {
            let mut user = User::new(opts.user.clone(), uid);
            user.host_uid = Some(opts.host_uid);
            user.additional_tools = vec!["*".into()];
            users.users.insert(0, user);
        }
    }

    let mut kernel = KernelConfig {
        mode: opts.mode,
        ..KernelConfig::default()
    };
    kernel.secrets.master_key.source = source;
    if opts.mode == Mode::Headless {
        kernel.gateway.bind = "0.0.0.0".into();
    }

    write_atomic(&auth_path, doc_text(auth)?.as_bytes(), 0o600).map_err(io_err(&auth_path))?;
    for (name, text, mode) in [
        ("users.yaml", doc_text(users)?, 0o644),
        ("crews.yaml", doc_text(Crews::default())?, 0o644),
        ("kernel.yaml", doc_text(kernel)?, 0o600),
        ("llm.yaml", LLM_TEMPLATE.to_owned(), 0o644),
    ] {
        let p = layout.etc_file(name);
        write_atomic(&p, text.as_bytes(), mode).map_err(io_err(&p))?;
    }

    install_builtins(&layout)?;

    let key_path = layout.etc_file(MASTER_KEY_FILE);
    let mut key_file = None;
    let mut master_key_to_show = None;
    match source {
        MasterKeySource::File => {
            if !(reused && key_path.exists()) {
                let hex = Zeroizing::new(master.to_hex());
                write_atomic(&key_path, format!("{}\n", hex.as_str()).as_bytes(), 0o600)
                    .map_err(io_err(&key_path))?;
            }
            key_file = Some(key_path);
        }
        MasterKeySource::Env => {
            if key_path.exists() {
                warnings.push(format!("{} is not used with --master-key-source env; delete it once the key is stored elsewhere", key_path.display()));
            }
            if !reused {
                master_key_to_show = Some(Zeroizing::new(master.to_hex()));
            }
        }
    }

    Ok(InitReport {
        root: opts.root.clone(),
        user: opts.user.clone(),
        role: opts.role,
        api_key,
        master_key_to_show,
        key_file,
        reused_master_key: reused,
        backups,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use avix_proto::config::llm::LlmConfig;

    fn opts(root: &Path) -> InitOptions {
        InitOptions::admin(root, UserName::new("alice").unwrap())
    }

    #[test]
    fn force_never_loses_or_renumbers_a_user() {
        // Issue 10, item 12: `init --force --user bob` dropped alice from users.yaml and gave
        // bob her uid.
        let d = tempfile::tempdir().unwrap();
        let mut o = opts(d.path());
        o.host_uid = 0;
        run(&o).unwrap();
        let mut bob = opts(d.path());
        bob.user = UserName::new("bob").unwrap();
        bob.role = Role::User;
        bob.host_uid = 2001;
        bob.force = true;
        run(&bob).unwrap();
        let uids = |d: &Path| {
            let c = crate::config::Config::load(&RootLayout::new(d)).unwrap();
            let ids: Vec<_> = c
                .auth
                .identities
                .iter()
                .map(|i| (i.name.to_string(), i.uid, i.role))
                .collect();
            let users: Vec<_> = c
                .users
                .users
                .iter()
                .map(|u| (u.username.to_string(), u.uid, u.host_uid))
                .collect();
            (ids, users)
        };
        let (ids, users) = uids(d.path());
        assert!(
            ids.contains(&("alice".into(), 1001, Role::Admin)),
            "{ids:?}"
        );
        assert!(ids.contains(&("bob".into(), 1002, Role::User)), "{ids:?}");
        assert!(
            users.contains(&("alice".into(), 1001, Some(0))),
            "{users:?}"
        );
        assert!(
            users.contains(&("bob".into(), 1002, Some(2001))),
            "{users:?}"
        );
        // Again for alice: a new key, the same uid, bob untouched.
        o.force = true;
        run(&o).unwrap();
        assert_eq!(uids(d.path()).0.len(), 2);
        assert!(uids(d.path()).1.contains(&("bob".into(), 1002, Some(2001))));
        assert!(
            uids(d.path())
                .0
                .contains(&("alice".into(), 1001, Role::Admin))
        );
        // A host uid that already acts as someone else is refused, and nothing changes.
        let before = std::fs::read(RootLayout::new(d.path()).etc_file("users.yaml")).unwrap();
        let mut carol = opts(d.path());
        carol.user = UserName::new("carol").unwrap();
        carol.host_uid = 2001;
        carol.force = true;
        let e = run(&carol).unwrap_err().to_string();
        assert!(e.contains("already acts as bob"), "{e}");
        assert_eq!(
            std::fs::read(RootLayout::new(d.path()).etc_file("users.yaml")).unwrap(),
            before
        );
    }

    #[test]
    fn llm_template_is_valid() {
        Document::<LlmConfig>::parse(LLM_TEMPLATE.as_bytes()).unwrap();
    }

    #[test]
    fn builtin_agents_and_script_are_valid() {
        for (name, version, text) in BUILTIN_AGENTS {
            let m = avix_proto::agent::AgentManifest::parse(text.as_bytes()).unwrap();
            assert_eq!(
                (m.metadata.name.as_str(), m.metadata.version.as_str()),
                (name, version)
            );
        }
        Document::<avix_llm::scripted::LlmScript>::parse(DEFAULT_SCRIPT.as_bytes()).unwrap();
    }

    #[test]
    fn creates_a_root_that_loads_and_refuses_a_second_init() {
        let d = tempfile::tempdir().unwrap();
        let report = run(&opts(d.path())).unwrap();
        let key = report.api_key.as_ref().unwrap().expose().to_owned();
        assert!(report.render().contains(&key));
        let layout = RootLayout::new(d.path());
        let master = MasterKey::from_file(&layout.etc_file(MASTER_KEY_FILE)).unwrap();
        let config = crate::config::Config::load(&layout).unwrap();
        assert!(master.matches_check_value(&config.auth.master_key_check));
        let Credential::ApiKey { key_hash } = &config.auth.identities[0].credential else {
            panic!()
        };
        assert!(avix_auth::api_key::verify(
            &key,
            key_hash,
            &master.derive(Purpose::ApiKeyHash)
        ));
        assert!(
            !report.render().contains(&master.to_hex()),
            "file mode never prints the key"
        );
        use std::os::unix::fs::PermissionsExt;
        for f in ["auth.conf", "kernel.yaml", MASTER_KEY_FILE] {
            let mode = std::fs::metadata(layout.etc_file(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        assert!(layout.data().join("users/alice/workspace").is_dir());
        let e = run(&opts(d.path())).unwrap_err().to_string();
        assert!(
            e.contains("already initialised") && e.contains("--force"),
            "{e}"
        );
    }

    #[test]
    fn force_keeps_data_and_reuses_the_key() {
        let d = tempfile::tempdir().unwrap();
        run(&opts(d.path())).unwrap();
        let layout = RootLayout::new(d.path());
        let data = layout.data().join("users/alice/workspace/notes.md");
        std::fs::write(&data, "keep me").unwrap();
        std::fs::create_dir_all(layout.secrets().join("user/alice")).unwrap();
        std::fs::write(layout.secrets().join("user/alice/gh.enc"), "00").unwrap();
        let before = std::fs::read_to_string(layout.etc_file(MASTER_KEY_FILE)).unwrap();
        let mut o = opts(d.path());
        o.force = true;
        let report = run(&o).unwrap();
        assert!(report.reused_master_key);
        assert_eq!(
            std::fs::read_to_string(layout.etc_file(MASTER_KEY_FILE)).unwrap(),
            before
        );
        assert_eq!(std::fs::read_to_string(&data).unwrap(), "keep me");
        assert!(!report.backups.is_empty());
        // Without the key, secrets block a re-init.
        std::fs::remove_file(layout.etc_file(MASTER_KEY_FILE)).unwrap();
        let e = run(&o).unwrap_err().to_string();
        assert!(e.contains("1 stored secret"), "{e}");
    }

    #[test]
    fn env_mode_shows_the_key_once_and_passwords_hash_with_argon2id() {
        let d = tempfile::tempdir().unwrap();
        let mut o = opts(d.path());
        o.mode = Mode::Headless;
        o.credential_type = CredentialType::Password;
        o.password = Some(Zeroizing::new("correct horse battery".into()));
        let report = run(&o).unwrap();
        let shown = report.master_key_to_show.as_ref().unwrap().to_string();
        assert!(
            report
                .render()
                .contains(&format!("export AVIX_MASTER_KEY={shown}"))
        );
        assert!(!RootLayout::new(d.path()).etc_file(MASTER_KEY_FILE).exists());
        let config = crate::config::Config::load(&RootLayout::new(d.path())).unwrap();
        let Credential::Password { password_hash } = &config.auth.identities[0].credential else {
            panic!()
        };
        assert!(password_hash.starts_with("$argon2id$v=19$m=65536,t=3,p=4$"));
        assert!(password::verify("correct horse battery", password_hash));
        assert_eq!(config.kernel.gateway.bind, "0.0.0.0");
        let mut short = opts(tempfile::tempdir().unwrap().path());
        short.credential_type = CredentialType::Password;
        short.password = Some(Zeroizing::new("short".into()));
        assert!(matches!(run(&short), Err(InitError::PasswordTooShort(12))));
    }
}
