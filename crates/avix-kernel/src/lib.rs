//! The Avix kernel: owns the VFS and the configuration, and publishes what the system is
//! doing under `/proc` and `/kernel`. It knows nothing of FUSE, HTTP or sockets; the doors
//! (mount, ATP gateway, IPC) depend on it, never the reverse.
//!
//! # Layout
//! - [`layout`]: where things live under the runtime root.
//! - [`config`]: the configuration in force, identities, hot reload and the `/etc/avix` guard.
//! - [`system`]: the compiled-in `/kernel` files and `/proc/status.yaml`.
//!
//! Boot ([`Kernel::boot`]) loads and checks the configuration, builds the mount table and
//! publishes the synthetic files; the daemon then adds the doors.

pub mod config;
pub mod layout;
pub mod system;

use std::sync::{Arc, RwLock};
use std::time::Instant;

use avix_auth::{MasterKey, Purpose, SubKey};
use avix_proto::config::EtcFile;
use avix_proto::time::Timestamp;
use avix_vfs::{Caller, LocalStorage, Vfs, VfsPath};

use crate::config::{ConfigError, ConfigStore};
use crate::layout::RootLayout;

/// Why the kernel cannot boot.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Configuration missing or invalid, or the wrong master key.
    #[error(transparent)]
    Config(#[from] ConfigError),
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
#[derive(Debug)]
pub struct Kernel {
    layout: RootLayout,
    vfs: Arc<Vfs>,
    config: Arc<ConfigStore>,
    keys: KernelKeys,
    started: Instant,
    started_at: Timestamp,
    // Written by the daemon once the doors are up; read by the status file.
    runtime: RwLock<RuntimeInfo>,
}

impl Kernel {
    /// Boots the kernel for `layout` with `master`: loads the configuration (refusing a
    /// master key that is not this root's), builds the VFS and publishes the synthetic files.
    pub fn boot(layout: RootLayout, master: &MasterKey) -> Result<Arc<Self>, BootError> {
        let started = Instant::now();
        let config = Arc::new(ConfigStore::load(layout.clone(), master)?);
        tracing::debug!(
            elapsed_us = started.elapsed().as_micros() as u64,
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
        let kernel = Arc::new(Self {
            layout,
            vfs,
            config,
            keys,
            started,
            started_at: Timestamp::now(),
            runtime: RwLock::new(RuntimeInfo::default()),
        });
        system::publish(&kernel);
        kernel.ensure_homes();
        kernel.watch_config();
        tracing::debug!(
            elapsed_us = started.elapsed().as_micros() as u64,
            "boot phase 2: VFS ready"
        );
        Ok(kernel)
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
            .runtime
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = info;
    }

    /// What the doors reported.
    pub fn runtime_info(&self) -> RuntimeInfo {
        self.runtime
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
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
            if let Ok(true) = k.config.reload(file)
                && file == EtcFile::Users
            {
                k.ensure_homes();
            }
        });
    }
}

/// Parses a path that is known to be valid.
fn path(s: &str) -> VfsPath {
    VfsPath::parse(s).unwrap_or_else(|_| VfsPath::root())
}
