//! The configuration in force: the parsed files of `/etc/avix`, the identities they define,
//! and hot reload. A reload that fails keeps the old configuration and says why.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use avix_auth::{MasterKey, MasterKeyError};
use avix_proto::config::auth::AuthConfig;
use avix_proto::config::crews::Crews;
use avix_proto::config::kernel::{KernelConfig, MasterKeySource};
use avix_proto::config::llm::LlmConfig;
use avix_proto::config::users::Users;
use avix_proto::config::{EtcFile, validate_etc_file};
use avix_proto::envelope::{Document, DocumentError, Kind};
use avix_proto::{CrewName, Role, UserName};
use avix_vfs::{Caller, Door, VfsPath, WriteGuard};

use crate::layout::RootLayout;

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing.
    #[error("{path} not found: run `avix server config init --root {root}` first")]
    Missing {
        /// The file.
        path: String,
        /// The root, for the hint.
        root: String,
    },
    /// Unreadable.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not a valid document.
    #[error("{path} is invalid: {source}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        #[source]
        source: DocumentError,
    },
    /// auth.conf was written for another master key.
    #[error(
        "{path}: masterKeyCheck does not match the master key in use; the file belongs to another installation"
    )]
    ForeignAuth {
        /// The file.
        path: String,
    },
}

/// The configuration files, parsed.
#[derive(Debug, Clone)]
pub struct Config {
    /// users.yaml
    pub users: Users,
    /// crews.yaml
    pub crews: Crews,
    /// kernel.yaml
    pub kernel: KernelConfig,
    /// auth.conf
    pub auth: AuthConfig,
    /// llm.yaml, if present.
    pub llm: Option<LlmConfig>,
    /// mcp.yaml, if present.
    pub mcp: Option<avix_proto::config::mcp::McpConfig>,
}

fn read_doc<S: Kind>(layout: &RootLayout, file: EtcFile) -> Result<S, ConfigError> {
    let path = layout.etc_file(file.file_name());
    let shown = path.display().to_string();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::Missing {
                path: shown,
                root: layout.root().display().to_string(),
            });
        }
        Err(source) => {
            return Err(ConfigError::Io {
                path: shown,
                source,
            });
        }
    };
    Document::<S>::parse(&bytes)
        .map(|d| d.spec)
        .map_err(|source| ConfigError::Invalid {
            path: shown,
            source,
        })
}

/// Reads kernel.yaml alone (boot needs it to find the master key).
pub fn read_kernel_config(layout: &RootLayout) -> Result<KernelConfig, ConfigError> {
    read_doc(layout, EtcFile::Kernel)
}

/// Where kernel.yaml says the master key comes from, for messages (`$AVIX_MASTER_KEY` or the
/// key file's path).
pub fn master_key_origin(layout: &RootLayout, kernel: &KernelConfig) -> String {
    let mk = &kernel.secrets.master_key;
    match mk.source {
        MasterKeySource::Env => format!("${}", mk.env_var),
        MasterKeySource::File => layout.etc_file(&mk.key_file).display().to_string(),
    }
}

/// Checks that `master` is the key this root was initialised with (auth.conf's check value).
pub fn verify_master_key(
    layout: &RootLayout,
    kernel: &KernelConfig,
    master: &MasterKey,
) -> Result<(), StartupKeyError> {
    let auth: AuthConfig = read_doc(layout, EtcFile::Auth)?;
    if master.matches_check_value(&auth.master_key_check) {
        Ok(())
    } else {
        Err(MasterKeyError::Wrong {
            from: master_key_origin(layout, kernel),
        }
        .into())
    }
}

/// A master key that cannot be used at start.
#[derive(Debug, thiserror::Error)]
pub enum StartupKeyError {
    /// The key itself.
    #[error(transparent)]
    Key(#[from] MasterKeyError),
    /// auth.conf cannot be read.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Loads the master key from the source kernel.yaml names.
pub fn load_master_key(
    layout: &RootLayout,
    kernel: &KernelConfig,
) -> Result<MasterKey, MasterKeyError> {
    let mk = &kernel.secrets.master_key;
    match mk.source {
        MasterKeySource::Env => MasterKey::from_env(&mk.env_var),
        MasterKeySource::File => MasterKey::from_file(&layout.etc_file(&mk.key_file)),
    }
}

impl Config {
    /// Loads every file; llm.yaml is optional.
    pub fn load(layout: &RootLayout) -> Result<Self, ConfigError> {
        Ok(Self {
            auth: read_doc(layout, EtcFile::Auth)?,
            users: read_doc(layout, EtcFile::Users)?,
            crews: read_doc(layout, EtcFile::Crews)?,
            kernel: read_doc(layout, EtcFile::Kernel)?,
            llm: match read_doc(layout, EtcFile::Llm) {
                Ok(l) => Some(l),
                Err(ConfigError::Missing { .. }) => None,
                Err(e) => return Err(e),
            },
            mcp: match read_doc(layout, EtcFile::Mcp) {
                Ok(l) => Some(l),
                Err(ConfigError::Missing { .. }) => None,
                Err(e) => return Err(e),
            },
        })
    }

    /// The role `user` logs in with (`user` when auth.conf has no identity for them).
    pub fn role_of(&self, user: &UserName) -> Role {
        self.auth
            .identity(user.as_str())
            .map_or(Role::User, |i| i.role)
    }

    /// The crews `user` belongs to: from users.yaml and from each crew's members.
    pub fn crews_of(&self, user: &UserName) -> Vec<CrewName> {
        let mut crews: Vec<CrewName> = self
            .users
            .get(user.as_str())
            .map(|u| u.crews.clone())
            .unwrap_or_default();
        for c in &self.crews.crews {
            if c.lists_user(user) && !crews.contains(&c.name) {
                crews.push(c.name.clone());
            }
        }
        crews
    }

    /// The caller for a known user through `door`.
    pub fn caller_for(&self, user: &UserName, door: Door) -> Option<Caller> {
        let known =
            self.users.get(user.as_str()).is_some() || self.auth.identity(user.as_str()).is_some();
        known.then(|| Caller::user(user.clone(), self.role_of(user), self.crews_of(user), door))
    }
}

/// The configuration in force, reloadable.
#[derive(Debug)]
pub struct ConfigStore {
    layout: RootLayout,
    master_check: String,
    // Replaced whole on reload; readers clone the Arc.
    current: RwLock<Arc<Config>>,
    // hostUid → caller, derived from `current`.
    host_uids: RwLock<Arc<HashMap<u32, Caller>>>,
    // Last content hash per file, to skip reloads of unchanged files (our own writes are
    // also seen by the disk watcher).
    hashes: Mutex<HashMap<EtcFile, u64>>,
    reloads: AtomicU64,
    failed_reloads: AtomicU64,
}

fn host_uid_map(c: &Config) -> HashMap<u32, Caller> {
    c.users
        .users
        .iter()
        .filter_map(|u| Some((u.host_uid?, c.caller_for(&u.username, Door::Fuse)?)))
        .collect()
}

fn hash_file(layout: &RootLayout, file: EtcFile) -> Option<u64> {
    let bytes = std::fs::read(layout.etc_file(file.file_name())).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

impl ConfigStore {
    /// Loads the configuration and checks that auth.conf belongs to `master`.
    pub fn load(layout: RootLayout, master: &MasterKey) -> Result<Self, ConfigError> {
        let config = Config::load(&layout)?;
        if !master.matches_check_value(&config.auth.master_key_check) {
            return Err(ConfigError::ForeignAuth {
                path: layout.etc_file("auth.conf").display().to_string(),
            });
        }
        let hashes = EtcFile::ALL
            .iter()
            .filter_map(|&f| Some((f, hash_file(&layout, f)?)))
            .collect();
        Ok(Self {
            host_uids: RwLock::new(Arc::new(host_uid_map(&config))),
            current: RwLock::new(Arc::new(config)),
            master_check: master.check_value(),
            layout,
            hashes: Mutex::new(hashes),
            reloads: AtomicU64::new(0),
            failed_reloads: AtomicU64::new(0),
        })
    }

    /// The configuration in force.
    pub fn get(&self) -> Arc<Config> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The caller a host uid acts as on the mount.
    pub fn caller_for_host_uid(&self, uid: u32) -> Option<Caller> {
        self.host_uids
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&uid)
            .cloned()
    }

    /// The host uid shown as owner of `user`'s files.
    pub fn host_uid_of(&self, user: &UserName) -> Option<u32> {
        self.get().users.get(user.as_str()).and_then(|u| u.host_uid)
    }

    /// Successful reloads since boot.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Reloads that failed (old configuration kept) since boot.
    pub fn failed_reloads(&self) -> u64 {
        self.failed_reloads.load(Ordering::Relaxed)
    }

    /// Re-reads `file` from disk. Returns whether the configuration changed. On error the old
    /// configuration stays in force.
    pub fn reload(&self, file: EtcFile) -> Result<bool, ConfigError> {
        let hash = hash_file(&self.layout, file);
        if hash.is_some()
            && self
                .hashes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&file)
                == hash.as_ref()
        {
            return Ok(false);
        }
        let result = self.reload_inner(file);
        match &result {
            Ok(()) => {
                self.reloads.fetch_add(1, Ordering::Relaxed);
                if let Some(h) = hash {
                    self.hashes
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(file, h);
                }
                tracing::info!(file = file.file_name(), "configuration reloaded");
            }
            Err(e) => {
                self.failed_reloads.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "configuration reload failed; the previous configuration stays in force");
            }
        }
        result.map(|()| true)
    }

    fn reload_inner(&self, file: EtcFile) -> Result<(), ConfigError> {
        let mut next = (*self.get()).clone();
        match file {
            EtcFile::Users => next.users = read_doc(&self.layout, file)?,
            EtcFile::Crews => next.crews = read_doc(&self.layout, file)?,
            EtcFile::Kernel => next.kernel = read_doc(&self.layout, file)?,
            EtcFile::Llm => {
                next.llm = match read_doc(&self.layout, file) {
                    Ok(l) => Some(l),
                    Err(ConfigError::Missing { .. }) => None,
                    Err(e) => return Err(e),
                }
            }
            EtcFile::Mcp => {
                next.mcp = match read_doc(&self.layout, file) {
                    Ok(l) => Some(l),
                    Err(ConfigError::Missing { .. }) => None,
                    Err(e) => return Err(e),
                }
            }
            EtcFile::Auth => {
                let auth: AuthConfig = read_doc(&self.layout, file)?;
                if auth.master_key_check != self.master_check {
                    return Err(ConfigError::ForeignAuth {
                        path: self.layout.etc_file("auth.conf").display().to_string(),
                    });
                }
                next.auth = auth;
            }
        }
        let uids = host_uid_map(&next);
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(next);
        *self
            .host_uids
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(uids);
        Ok(())
    }

    /// The guard that validates writes to `/etc/avix`.
    pub fn guard(&self) -> EtcGuard {
        EtcGuard {
            master_check: self.master_check.clone(),
        }
    }
}

/// Validates every write to `/etc/avix` before it replaces a file.
#[derive(Debug, Clone)]
pub struct EtcGuard {
    master_check: String,
}

impl EtcGuard {
    /// A guard for the installation whose master key has this check value.
    pub fn new(master_check: String) -> Self {
        Self { master_check }
    }
}

fn direct_name(path: &VfsPath) -> Option<&str> {
    (path.parent()?.as_str() == "/etc/avix")
        .then(|| path.file_name())
        .flatten()
}

impl WriteGuard for EtcGuard {
    fn check_content(&self, path: &VfsPath, content: &[u8]) -> Result<(), avix_proto::Error> {
        let invalid = |e: &dyn std::fmt::Display| avix_proto::Error::invalid(e.to_string());
        let Some(name) = direct_name(path) else {
            return Ok(());
        };
        validate_etc_file(name, content).map_err(|e| invalid(&e))?;
        if EtcFile::from_name(name) == Some(EtcFile::Auth) {
            let doc = Document::<AuthConfig>::parse(content).map_err(|e| invalid(&e))?;
            if doc.spec.master_key_check != self.master_check {
                return Err(avix_proto::Error::invalid(
                    "masterKeyCheck does not match this installation's master key; keep the value init wrote",
                ));
            }
        }
        Ok(())
    }

    fn check_remove(&self, path: &VfsPath) -> Result<(), avix_proto::Error> {
        match direct_name(path).and_then(EtcFile::from_name) {
            Some(f) if f.required() => Err(avix_proto::Error::invalid(format!(
                "{} is required by the daemon: replace its content instead of removing or renaming it",
                f.file_name()
            ))),
            _ => Ok(()),
        }
    }
}
