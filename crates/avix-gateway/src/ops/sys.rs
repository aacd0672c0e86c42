//! `sys`: the daemon's state, its log, its services.

use avix_kernel::policy;
use avix_proto::Role;
use avix_proto::atp::{AtpError, ErrorCode, UploadedFile};
use avix_proto::op::{LogLines, Op, ServiceInstallArgs};
use base64::Engine;
use serde_json::{Value, json};

use super::{Asker, Body, Done, Effects, atp_error, misrouted, reply};
use crate::Gateway;

/// Most files in one uploaded service.
const MAX_UPLOADED_FILES: usize = 1000;

impl Gateway {
    pub(super) async fn sys_op(&self, a: &Asker, op: Op) -> Done {
        let k = &self.kernel;
        match op {
            Op::Info(_) => reply(&avix_kernel::system::status(k)),
            Op::Tools(_) => reply(&k.tools().descriptors()),
            Op::Services(_) => Ok((Body::from(self.services(a)), Effects::default())),
            Op::Logs(arg) => {
                a.at_least(Role::Operator, "sys logs")?;
                reply(&LogLines {
                    lines: self.logs.recent(arg.lines.unwrap_or(200).min(5000)),
                })
            }
            op => self.service_op(a, op).await,
        }
    }

    async fn service_op(&self, a: &Asker, op: Op) -> Done {
        let sup = self.kernel.services().cloned().ok_or_else(|| {
            AtpError::new(
                ErrorCode::EUNAVAIL,
                "this daemon runs no service supervisor",
            )
        })?;
        match op {
            Op::ServiceList(_) => reply(&sup.list()),
            Op::ServiceStatus(arg) => reply(&sup.status(&arg.name).map_err(atp_error)?),
            Op::ServiceStart(arg) => {
                reply(&sup.start(&a.caller, &arg.name).await.map_err(atp_error)?)
            }
            Op::ServiceStop(arg) => {
                reply(&sup.stop(&a.caller, &arg.name).await.map_err(atp_error)?)
            }
            Op::ServiceRestart(arg) => {
                reply(&sup.restart(&a.caller, &arg.name).await.map_err(atp_error)?)
            }
            Op::ServiceInstall(arg) => {
                // Refused before anything is uploaded.
                policy::install_services(&a.caller)?;
                reply(&self.install(a, sup.as_ref(), arg).await?)
            }
            Op::ServiceUninstall(arg) => {
                sup.uninstall(&a.caller, &arg.name, arg.force)
                    .await
                    .map_err(atp_error)?;
                Ok((
                    Body::from(json!({"uninstalled": arg.name})),
                    Effects::default(),
                ))
            }
            other => Err(misrouted(&other)),
        }
    }

    async fn install(
        &self,
        a: &Asker,
        sup: &dyn avix_kernel::services::ServiceControl,
        arg: ServiceInstallArgs,
    ) -> Result<avix_proto::service::ServiceStatus, AtpError> {
        match (arg.path, arg.files) {
            (Some(path), None) => {
                let path = std::path::PathBuf::from(path);
                if !path.is_absolute() {
                    return Err(AtpError::new(
                        ErrorCode::EINVAL,
                        "path must be an absolute directory on the daemon's host holding service.yaml",
                    ));
                }
                sup.install(&a.caller, &path).await.map_err(atp_error)
            }
            (None, Some(files)) => {
                // Unpacked next to the installed services, installed from there.
                let dir = self
                    .kernel
                    .layout()
                    .data()
                    .join("services")
                    .join(format!(".upload-{:016x}", rand::random::<u64>()));
                let d2 = dir.clone();
                let unpacked = tokio::task::spawn_blocking(move || unpack(&d2, &files))
                    .await
                    .map_err(|e| AtpError::new(ErrorCode::EINTERNAL, e.to_string()))?;
                let st = match unpacked {
                    Ok(()) => sup.install(&a.caller, &dir).await.map_err(atp_error),
                    Err(e) => Err(e),
                };
                let _ = std::fs::remove_dir_all(&dir);
                st
            }
            _ => Err(AtpError::new(
                ErrorCode::EINVAL,
                "service-install takes path (a directory on the daemon's host) or files (an upload), one of them",
            )),
        }
    }

    fn services(&self, a: &Asker) -> Value {
        let k = &self.kernel;
        let mut v = vec![json!({
            "name": "kernel",
            "state": "running",
            "agents": k.procs().live_count(),
            "tools": k.tools().len(),
        })];
        if let Some(llm) = k.llm_service() {
            let s = llm.status(if a.privileged() {
                None
            } else {
                Some(a.user.as_str())
            });
            let ok = s
                .providers
                .iter()
                .filter(|p| p.health != "unavailable")
                .count();
            v.push(json!({
                "name": "llm",
                "state": "running",
                "providers": s.providers.len(),
                "usable": ok,
                "requests": s.totals.requests,
                "status": "/proc/services/llm/status.yaml",
            }));
        }
        v.push(json!({
            "name": "gateway",
            "state": "running",
            "connections": self.connections(),
        }));
        if let Some(sup) = k.services() {
            for s in sup.list() {
                v.push(json!({
                    "name": s.name,
                    "state": s.state,
                    "version": s.version,
                    "tools": s.tools.len(),
                    "status": format!("/proc/services/{}/status.yaml", s.name),
                }));
            }
        }
        let info = k.runtime_info();
        v.push(json!({
            "name": "fuse",
            "state": if info.mount_point.is_some() { "mounted" } else { "off" },
            "mountPoint": info.mount_point,
        }));
        Value::Array(v)
    }
}

/// Writes uploaded files under `dir`, refusing paths that leave it.
fn unpack(dir: &std::path::Path, files: &[UploadedFile]) -> Result<(), AtpError> {
    use std::os::unix::fs::PermissionsExt;
    let bad = |m: String| AtpError::new(ErrorCode::EINVAL, m);
    if files.is_empty() || files.len() > MAX_UPLOADED_FILES {
        return Err(bad(format!(
            "files must hold 1 to {MAX_UPLOADED_FILES} entries"
        )));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    for f in files {
        let rel = std::path::Path::new(&f.path);
        let ok = !f.path.is_empty()
            && rel
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !ok {
            return Err(bad(format!(
                "{:?}: a file path must be relative, without `..`",
                f.path
            )));
        }
        if f.path.chars().any(avix_proto::text::is_unsafe) {
            return Err(bad(format!(
                "{}: a file path may not hold control characters (a NUL, a newline…)",
                avix_proto::text::escape(&f.path)
            )));
        }
        let data = b64
            .decode(f.content_base64.as_bytes())
            .map_err(|e| bad(format!("{}: contentBase64 is not base64: {e}", f.path)))?;
        let dest = dir.join(rel);
        let io = |e: std::io::Error| {
            let code = match e.raw_os_error() {
                Some(libc::ENOSPC | libc::EDQUOT) => ErrorCode::ENOSPC,
                _ => ErrorCode::EINTERNAL,
            };
            AtpError::new(code, format!("cannot write {}: {e}", f.path))
        };
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&dest, data).map_err(io)?;
        let mode = f.mode.unwrap_or(0o644) & 0o755;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    }
    Ok(())
}
