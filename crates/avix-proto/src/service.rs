//! Service units (`service.yaml`) and the status documents of supervised services
//! (`/proc/services/<name>/status.yaml`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::agent::parse_version;
use crate::envelope::API_VERSION;
use crate::time::{HumanDuration, Timestamp};
use crate::yaml;

/// When a service that exited is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Whatever the exit status.
    Always,
    /// Only after a failure (non-zero exit or a signal).
    #[default]
    OnFailure,
    /// Never.
    Never,
}

/// Service metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceMeta {
    /// Service name (`a-z0-9-`, starts with a letter).
    pub name: String,
    /// `MAJOR.MINOR.PATCH`.
    pub version: String,
    /// One line.
    #[serde(default)]
    pub description: String,
}

/// The body of a service unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    /// Program and arguments. A relative program path is taken inside the installed
    /// directory; a bare name is looked up on the daemon's PATH. The working directory is the
    /// installed directory.
    pub command: Vec<String>,
    /// Extra environment variables (the service gets a clean environment otherwise).
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Tool namespaces the service may register (`echo` lets it add `echo/*`).
    #[serde(default)]
    pub tools: Vec<String>,
    /// Restart policy.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Host user to run as (needs a daemon running as root); default: the daemon's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<String>,
    /// How long one tool call may take.
    #[serde(default = "default_call_timeout")]
    pub call_timeout: HumanDuration,
    /// Start with the daemon.
    #[serde(default = "yes")]
    pub autostart: bool,
}

fn default_call_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}

fn yes() -> bool {
    true
}

/// A whole `service.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceUnit {
    /// `avix/v1`.
    pub api_version: String,
    /// `Service`.
    pub kind: String,
    /// Name and version.
    pub metadata: ServiceMeta,
    /// The body.
    pub spec: ServiceSpec,
}

/// Whether `name` is a valid service name.
pub fn valid_service_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl ServiceUnit {
    /// Parses and checks a unit; every problem is listed.
    pub fn parse(bytes: &[u8]) -> Result<Self, crate::Error> {
        Self::check(bytes).map_err(crate::Error::invalid)
    }

    fn check(bytes: &[u8]) -> Result<Self, String> {
        let u: Self = yaml::from_slice(bytes).map_err(|e| e.to_string())?;
        let mut problems = Vec::new();
        if u.api_version != API_VERSION {
            problems.push(format!(
                "apiVersion is {:?}, expected {API_VERSION:?}",
                u.api_version
            ));
        }
        if u.kind != "Service" {
            problems.push(format!("kind is {:?}, expected \"Service\"", u.kind));
        }
        if !valid_service_name(&u.metadata.name) {
            problems.push(format!(
                "metadata.name {:?} must be 1-32 characters of a-z, 0-9 and '-', starting with a letter",
                u.metadata.name
            ));
        }
        if ["exec", "mcp", "llm", "kernel", "router", "gateway", "fuse"]
            .contains(&u.metadata.name.as_str())
        {
            problems.push(format!(
                "metadata.name {:?} is the name of a built-in service",
                u.metadata.name
            ));
        }
        if parse_version(&u.metadata.version).is_none() {
            problems.push(format!(
                "metadata.version {:?} must be MAJOR.MINOR.PATCH",
                u.metadata.version
            ));
        }
        match u.spec.command.first() {
            None => {
                problems.push("spec.command is empty: give the program and its arguments".into())
            }
            Some(p) if p.split('/').any(|c| c == "..") => problems.push(format!(
                "spec.command program {p:?} must not leave the service directory"
            )),
            Some(_) => {}
        }
        for ns in &u.spec.tools {
            if crate::tool::ToolName::new(ns).is_err() || ns.contains('/') {
                problems.push(format!(
                    "spec.tools entry {ns:?} must be one tool-name segment (a-z, 0-9, '-', '_')"
                ));
            }
            if [
                "fs", "agent", "pipe", "cap", "job", "llm", "exec", "mcp", "kernel", "sys", "proc",
            ]
            .contains(&ns.as_str())
            {
                problems.push(format!("spec.tools namespace {ns:?} is reserved for Avix"));
            }
        }
        for (k, v) in &u.spec.environment {
            if let Some(name) = v.strip_prefix("secret:")
                && !crate::name::valid_secret_name(name)
            {
                problems.push(format!(
                    "spec.environment {k}: {v:?} does not name a secret (secret:NAME, NAME of A-Z, a-z, 0-9, '_')"
                ));
            }
        }
        for k in u.spec.environment.keys() {
            if k.is_empty() || k.contains('=') || k.starts_with("AVIX_") {
                problems.push(format!(
                    "spec.environment key {k:?} is not allowed (empty, contains '=', or AVIX_*, which the daemon sets)"
                ));
            }
        }
        if u.spec.call_timeout.0.is_zero() {
            problems.push("spec.callTimeout must be more than 0".into());
        }
        if problems.is_empty() {
            Ok(u)
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Where a supervised service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// Installed, not running.
    Stopped,
    /// Process started, not registered yet.
    Starting,
    /// Registered; its tools are callable.
    Running,
    /// Exited; will be started again after a delay.
    Backoff,
    /// Being stopped.
    Stopping,
    /// Exited and will not be restarted (policy, or it cannot be started).
    Failed,
}

/// `/proc/services/<name>/status.yaml` and the ATP `sys service-status` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Built into the daemon (exec, mcp) or an installed unit.
    pub builtin: bool,
    /// State.
    pub state: ServiceState,
    /// Host PID of the running process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Since when it is in this state.
    pub since: Timestamp,
    /// Restarts since the daemon started.
    pub restarts: u32,
    /// The last exit (`exit 1`, `signal 9`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
    /// When the next start is due (state backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_start: Option<Timestamp>,
    /// Its tools.
    pub tools: Vec<String>,
    /// Its socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// Where its output goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// What is wrong, when something is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Tool calls routed to it since the daemon started.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub calls: u64,
    /// Of those, the ones that failed (an error answer, a timeout, no answer).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_calls: u64,
    /// Calls in flight now.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub in_flight: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl crate::Kind for ServiceStatus {
    const KIND: &'static str = "ServiceStatus";
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: &str = "apiVersion: avix/v1\nkind: Service\nmetadata:\n  name: echo\n  version: 0.1.0\nspec:\n  command: [python3, echo.py]\n  tools: [echo]\n";

    #[test]
    fn a_minimal_unit_parses_with_defaults() {
        let u = ServiceUnit::parse(UNIT.as_bytes()).expect("parse");
        assert_eq!(u.spec.restart, RestartPolicy::OnFailure);
        assert_eq!(u.spec.call_timeout.0.as_secs(), 30);
        assert!(u.spec.autostart);
    }

    #[test]
    fn every_problem_is_listed() {
        let bad = UNIT
            .replace("name: echo", "name: Echo")
            .replace("0.1.0", "1")
            .replace("[echo]", "[fs, a/b]");
        let e = ServiceUnit::parse(bad.as_bytes())
            .expect_err("invalid")
            .message;
        for want in [
            "metadata.name",
            "metadata.version",
            "reserved",
            "one tool-name segment",
        ] {
            assert!(e.contains(want), "{want} missing from {e}");
        }
        let e = ServiceUnit::parse(b"apiVersion: avix/v1\nkind: Service\n")
            .expect_err("invalid")
            .message;
        assert!(e.contains("metadata"), "{e}");
    }
}
