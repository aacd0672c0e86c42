//! Installed units: loading them at start, installing from a directory, uninstalling, and
//! setting up a service's run directory and router socket.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use avix_kernel::services::{ServiceControl, ServiceError};
use avix_proto::ErrorKind;
use avix_proto::agent::parse_version;
use avix_proto::service::{ServiceState, ServiceStatus, ServiceUnit};
use avix_proto::time::Timestamp;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{Ctl, Slot, SlotState, Supervisor, err};
use crate::remote::InFlight;
use crate::router::Router;
use crate::server::{self, Peer, ServerConfig};

/// An installed unit found at boot: its version, directory and unit.
type Candidate = ((u64, u64, u64), PathBuf, ServiceUnit);

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let ty = e.file_type()?;
        let dest = to.join(e.file_name());
        if ty.is_dir() {
            copy_dir(&e.path(), &dest)?;
        } else if ty.is_file() {
            std::fs::copy(e.path(), &dest)?;
        }
        // Symlinks and special files are not installed.
    }
    Ok(())
}

fn resolve_user(name: &str) -> Result<(u32, u32), String> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        Ok(None) => Err(format!("runAs user {name:?} does not exist on this host")),
        Err(e) => Err(format!("cannot look up runAs user {name:?}: {e}")),
    }
}

/// Hands `path` itself (never a link's target) to `ids`.
fn chown(path: &Path, ids: Option<(u32, u32)>) -> std::io::Result<()> {
    if let Some((u, g)) = ids {
        std::os::unix::fs::lchown(path, Some(u), Some(g))?;
    }
    Ok(())
}

impl Supervisor {
    /// Loads every installed unit and starts those marked autostart.
    pub fn boot(&self) {
        let dir = self.services_dir();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut best: BTreeMap<String, Candidate> = BTreeMap::new();
        for e in entries.flatten() {
            let path = e.path();
            let fname = e.file_name().to_string_lossy().into_owned();
            if fname.starts_with('.') {
                // An upload or install a crash interrupted.
                let _ = std::fs::remove_dir_all(&path);
                continue;
            }
            let Some((name, version)) = fname.split_once('@') else {
                continue;
            };
            let unit = match std::fs::read(path.join("service.yaml"))
                .map_err(|e| avix_proto::Error::invalid(e.to_string()))
                .and_then(|b| ServiceUnit::parse(&b))
            {
                Ok(u) => u,
                Err(e) => {
                    tracing::warn!(dir = %path.display(), "skipping a service: service.yaml: {e}");
                    continue;
                }
            };
            if unit.metadata.name != name || unit.metadata.version != version {
                tracing::warn!(dir = %path.display(), "skipping a service: its directory is not <metadata.name>@<metadata.version>");
                continue;
            }
            let v = parse_version(version).unwrap_or_default();
            if best.get(name).is_none_or(|(bv, _, _)| v > *bv) {
                best.insert(name.to_owned(), (v, path, unit));
            }
        }
        for (_, (_, path, unit)) in best {
            let autostart = unit.spec.autostart;
            if let Err(e) = self.add_slot(unit, path, autostart) {
                tracing::warn!("cannot set up a service: {e}");
            }
        }
    }

    pub(super) fn add_slot(
        &self,
        unit: ServiceUnit,
        dir: PathBuf,
        start: bool,
    ) -> Result<Arc<Slot>, ServiceError> {
        let name = unit.metadata.name.clone();
        let layout = self.kernel.layout();
        let run_dir = layout.run().join("services").join(&name);
        let log_dir = layout.root().join("logs").join("services");
        let (run_as, problem) = match &unit.spec.run_as {
            None => (None, None),
            Some(u) => match resolve_user(u) {
                Ok(ids) if ids.0 == self.daemon_uid => (None, None),
                Ok(_) if self.daemon_uid != 0 => (
                    None,
                    Some(format!(
                        "runAs {u} needs the daemon to run as root (it runs as uid {})",
                        self.daemon_uid
                    )),
                ),
                Ok(ids) => (Some(ids), None),
                Err(e) => (None, Some(e)),
            },
        };
        let io = |what: &str, e: std::io::Error| err(ErrorKind::Internal, format!("{what}: {e}"));
        // A fresh directory, root's until its socket is in place: what a service (or one a
        // crashed daemon left) put there cannot redirect the daemon's chown.
        match std::fs::remove_dir_all(&run_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("cannot clear the run directory", e)),
        }
        std::fs::create_dir_all(&run_dir).map_err(|e| io("cannot create the run directory", e))?;
        if run_as.is_some() {
            // Another user must reach its own directory: traverse, not list.
            for d in [layout.run(), layout.run().join("services")] {
                let mode = std::fs::metadata(&d).map_or(0o700, |m| m.permissions().mode());
                std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode | 0o111))
                    .map_err(|e| io("cannot open the run directory for traversal", e))?;
            }
        }
        std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io("cannot set the run directory's mode", e))?;
        std::fs::create_dir_all(&log_dir).map_err(|e| io("cannot create the log directory", e))?;
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let slot = Arc::new(Slot {
            name: name.clone(),
            log_path: log_dir.join(format!("{name}.log")),
            unit,
            dir,
            run_dir,
            inflight: Arc::new(InFlight::default()),
            run_as,
            st: Mutex::new(SlotState {
                state: if problem.is_some() {
                    ServiceState::Failed
                } else {
                    ServiceState::Stopped
                },
                pid: None,
                since: Timestamp::now(),
                restarts: 0,
                last_exit: None,
                next_start: None,
                problem: problem.clone(),
                token: String::new(),
            }),
            changed: watch::channel(0).0,
            kernel: self.kernel.clone(),
            ctl: ctl_tx,
            stop_router: CancellationToken::new(),
        });
        // Its own router socket, owned by the user it runs as.
        let listener = server::bind(&slot.router_socket())
            .map_err(|e| io("cannot bind the service's router socket", e))?;
        chown(&slot.router_socket(), run_as)
            .map_err(|e| io("cannot hand the router socket over", e))?;
        chown(&slot.run_dir, run_as).map_err(|e| io("cannot hand the run directory over", e))?;
        let allowed = run_as.map(|(u, _)| u);
        let me = self.daemon_uid;
        let cfg = ServerConfig {
            max_frame: self.max_frame,
            read_timeout: self.read_timeout,
            peers: Arc::new(move |p: &Peer| {
                if p.uid == me || p.uid == 0 || Some(p.uid) == allowed {
                    Ok(())
                } else {
                    Err(avix_proto::Error::denied(format!(
                        "uid {} may not use this service's router socket",
                        p.uid
                    )))
                }
            }),
        };
        let router = Arc::new(Router::new(
            self.kernel.clone(),
            self.arc(),
            Some(name.clone()),
        ));
        tokio::spawn(server::serve(
            listener,
            router,
            cfg,
            slot.stop_router.clone(),
        ));
        self.publish(&slot);
        self.slots
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name, slot.clone());
        let runner = tokio::spawn(
            self.arc()
                .run(slot.clone(), ctl_rx, start && problem.is_none()),
        );
        self.runners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(runner);
        Ok(slot)
    }

    pub(super) async fn install_dir(
        self: Arc<Self>,
        dir: PathBuf,
    ) -> Result<ServiceStatus, ServiceError> {
        let bytes = std::fs::read(dir.join("service.yaml")).map_err(|e| {
            err(
                ErrorKind::Invalid,
                format!("cannot read {}/service.yaml: {e}", dir.display()),
            )
        })?;
        let unit = ServiceUnit::parse(&bytes)
            .map_err(|e| err(ErrorKind::Invalid, format!("service.yaml: {e}")))?;
        let name = unit.metadata.name.clone();
        if let Some(s) = self.read_slots().get(&name) {
            return Err(err(
                ErrorKind::Conflict,
                format!(
                    "service {name} {} is installed; uninstall it first (avix client service uninstall {name})",
                    s.unit.metadata.version
                ),
            ));
        }
        let dest = self
            .services_dir()
            .join(format!("{name}@{}", unit.metadata.version));
        let tmp = self
            .services_dir()
            .join(format!(".{name}@{}.installing", unit.metadata.version));
        let _ = std::fs::remove_dir_all(&tmp);
        let (from, t2) = (dir.clone(), tmp.clone());
        tokio::task::spawn_blocking(move || copy_dir(&from, &t2))
            .await
            .map_err(|e| err(ErrorKind::Internal, e.to_string()))?
            .map_err(|e| {
                err(
                    ErrorKind::Internal,
                    format!("cannot copy {}: {e}", dir.display()),
                )
            })?;
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&tmp, &dest)
            .map_err(|e| err(ErrorKind::Internal, format!("cannot install: {e}")))?;
        let autostart = unit.spec.autostart;
        self.add_slot(unit, dest, false)?;
        tracing::info!(service = %name, "service installed");
        if autostart {
            self.control(&name, Ctl::Start).await
        } else {
            self.status(&name)
        }
    }

    pub(super) async fn uninstall_slot(
        self: Arc<Self>,
        name: String,
        force: bool,
    ) -> Result<(), ServiceError> {
        let slot = self.slot(&name)?;
        let state = slot.lock().state;
        if !matches!(state, ServiceState::Stopped | ServiceState::Failed) {
            if !force {
                return Err(err(
                    ErrorKind::Conflict,
                    format!("service {name} is {state:?}; stop it first or pass --force")
                        .to_lowercase(),
                ));
            }
            self.control(&name, Ctl::Stop).await?;
        }
        let names = self.tools_of(&slot);
        self.remove_tools(&slot, &names, true, Some("service uninstalled"))
            .await;
        let _ = slot.ctl.send(Ctl::Shutdown);
        slot.stop_router.cancel();
        self.slots
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&name);
        self.unpublish(&name);
        let _ = std::fs::remove_dir_all(&slot.run_dir);
        std::fs::remove_dir_all(&slot.dir).map_err(|e| {
            err(
                ErrorKind::Internal,
                format!("cannot remove {}: {e}", slot.dir.display()),
            )
        })?;
        tracing::info!(service = %name, "service uninstalled");
        Ok(())
    }
}
