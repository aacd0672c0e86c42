//! Documents the daemon publishes under `/proc`.

use serde::{Deserialize, Serialize};

use crate::envelope::Kind;
use crate::time::Timestamp;

/// `/proc/status.yaml`: the daemon at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SystemStatus {
    /// Avix version.
    pub version: String,
    /// Daemon OS pid.
    pub pid: u32,
    /// When the daemon became ready.
    pub started_at: Timestamp,
    /// Seconds since then.
    pub uptime_secs: u64,
    /// Boot to ready, in milliseconds.
    pub boot_ms: u64,
    /// The runtime root on the host.
    pub root: String,
    /// Where the VFS is mounted on the host, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_point: Option<String>,
    /// How the mount serves data trees: `passthrough` (the host kernel reads and writes the
    /// files itself) or `served` (the daemon does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_io: Option<String>,
    /// ATP address, if the gateway listens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atp_address: Option<String>,
    /// Deployment mode.
    pub mode: String,
    /// kernel.yaml settings changed since the daemon started that take effect only at the
    /// next start (`gateway.port`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restart_needed: Vec<String>,
    /// Counts of things.
    pub counts: StatusCounts,
}

/// Counters in [`SystemStatus`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusCounts {
    /// Users in users.yaml.
    pub users: u64,
    /// Crews in crews.yaml.
    pub crews: u64,
    /// Login identities in auth.conf.
    pub identities: u64,
    /// Entries in the VFS mount table.
    pub mounts: u64,
    /// Live agents.
    pub agents: u64,
    /// Open files through all doors.
    pub open_files: u64,
    /// Config reloads since boot.
    pub config_reloads: u64,
    /// Config writes refused since boot.
    pub config_rejections: u64,
}

impl Kind for SystemStatus {
    const KIND: &'static str = "SystemStatus";
}
