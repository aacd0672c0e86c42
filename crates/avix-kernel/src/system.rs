//! The system's own synthetic files: the compiled-in `/kernel/defaults/*` and
//! `/kernel/limits/*` documents, and `/proc/status.yaml`.

use std::sync::{Arc, Weak};

use avix_proto::Document;
use avix_proto::Role;
use avix_proto::agent::{AgentDefaults, AgentLimits, AgentParams};
use avix_proto::kernel_files::PipeDefaults;
use avix_proto::status::{StatusCounts, SystemStatus};
use avix_vfs::{Caller, SynthFile, VfsError, VfsPath};
use bytes::Bytes;

use crate::Kernel;

/// The Avix version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn yaml<S: avix_proto::Kind>(spec: S) -> Bytes {
    Document::new(spec)
        .to_yaml()
        .map(Bytes::from)
        .unwrap_or_default()
}

/// Publishes the kernel's synthetic files.
pub(crate) fn publish(kernel: &Arc<Kernel>) {
    let vfs = kernel.vfs();
    let files = [
        (
            "/kernel/defaults/agent.yaml",
            yaml(AgentDefaults(AgentParams::system_defaults())),
        ),
        ("/kernel/defaults/pipe.yaml", yaml(PipeDefaults::default())),
        (
            "/kernel/limits/agent.yaml",
            yaml(AgentLimits(AgentParams::system_limits())),
        ),
    ];
    for (p, content) in files {
        if let Ok(p) = VfsPath::parse(p)
            && let Err(e) = vfs.publish(&p, SynthFile::fixed(content))
        {
            tracing::error!(path = %p, error = %e, "cannot publish a kernel file");
        }
    }
    let weak = Arc::downgrade(kernel);
    if let Ok(p) = VfsPath::parse("/proc/status.yaml") {
        let _ = vfs.publish(&p, SynthFile::computed(move |_| render_status(&weak)));
    }
    let weak = Arc::downgrade(kernel);
    if let Ok(p) = VfsPath::parse("/proc/errors") {
        let _ = vfs.publish(
            &p,
            SynthFile::computed(move |caller| render_refusals(&weak, caller)),
        );
    }
    if kernel.llm_service().is_some()
        && let Ok(p) = VfsPath::parse("/proc/services/llm/status.yaml")
    {
        let weak = Arc::downgrade(kernel);
        let _ = vfs.publish(
            &p,
            SynthFile::computed(move |caller| render_llm_status(&weak, caller)),
        );
    }
}

/// `/proc/errors`: the recent writes the VFS or a control file refused, one line each (time,
/// who, path, why), oldest first; a user sees their own, operators everyone's. So the reason
/// behind an `Invalid argument` is one `cat` away, not in the daemon's log.
fn render_refusals(kernel: &Weak<Kernel>, caller: &Caller) -> Result<Bytes, VfsError> {
    use std::fmt::Write;
    let k = kernel
        .upgrade()
        .ok_or(VfsError::NotFound(VfsPath::root()))?;
    let mut out = String::new();
    for r in k.vfs().refusals(caller) {
        let who = r.user.as_ref().map_or("kernel", |u| u.as_str());
        let _ = writeln!(
            out,
            "{} {who} {}: {}",
            r.at,
            avix_proto::text::escape(r.path.as_str()),
            avix_proto::text::escape(&r.reason)
        );
    }
    Ok(Bytes::from(out))
}

/// llm.svc's status: providers, health, queues, usage. Operators see every user's usage;
/// others only their own.
fn render_llm_status(kernel: &Weak<Kernel>, caller: &Caller) -> Result<Bytes, VfsError> {
    let k = kernel
        .upgrade()
        .ok_or(VfsError::NotFound(VfsPath::root()))?;
    let Some(svc) = k.llm_service() else {
        return Ok(Bytes::new());
    };
    let who = if caller.is_kernel() || caller.role >= Role::Operator {
        None
    } else {
        Some(caller.user_name().map_or("", |u| u.as_str()))
    };
    Ok(yaml(svc.status(who)))
}

/// The status document of a live kernel.
pub fn status(kernel: &Kernel) -> SystemStatus {
    let config = kernel.config().get();
    let info = kernel.runtime_info();
    SystemStatus {
        version: VERSION.to_owned(),
        pid: std::process::id(),
        started_at: kernel.started_at,
        uptime_secs: kernel.started().elapsed().as_secs(),
        boot_ms: info.boot_ms,
        root: kernel.layout().root().display().to_string(),
        mount_point: info.mount_point,
        data_io: info.passthrough.map(|p| {
            if p.load(std::sync::atomic::Ordering::Relaxed) {
                "passthrough".to_owned()
            } else {
                "served".to_owned()
            }
        }),
        atp_address: info.atp_address,
        mode: config.kernel.mode.as_str().to_owned(),
        restart_needed: kernel
            .restart_needed()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        counts: StatusCounts {
            users: config.users.users.len() as u64,
            crews: config.crews.crews.len() as u64,
            identities: config.auth.identities.len() as u64,
            mounts: kernel.vfs().mounts().len() as u64,
            agents: kernel.procs().live_count() as u64,
            open_files: kernel.vfs().open_files() as u64,
            config_reloads: kernel.config().reloads(),
            config_rejections: kernel.vfs().rejections() + kernel.config().failed_reloads(),
        },
    }
}

fn render_status(kernel: &Weak<Kernel>) -> Result<Bytes, VfsError> {
    let k = kernel
        .upgrade()
        .ok_or(VfsError::NotFound(VfsPath::root()))?;
    Ok(yaml(status(&k)))
}
