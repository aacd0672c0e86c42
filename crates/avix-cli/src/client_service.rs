//! `avix client service …`: installed services over ATP (`sys service-*`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use avix_client::Client;
use avix_proto::atp::UploadedFile;
use avix_proto::op::{
    FsReadArgs, NoArgs, Op, ServiceArgs, ServiceInstallArgs, ServiceUninstallArgs,
};
use avix_proto::service::ServiceStatus;
use clap::Subcommand;
use serde_json::json;

use crate::client::{Out, table};

#[derive(Debug, Subcommand)]
pub(crate) enum ServiceCommand {
    /// Installed services and their state.
    List,
    /// One service in detail.
    Status {
        /// Its name.
        name: String,
    },
    /// The end of a service's output (stdout and stderr, timestamped).
    Logs {
        /// Its name.
        name: String,
        /// How many lines.
        #[arg(long, short = 'n', default_value_t = 50)]
        lines: usize,
    },
    /// Start a stopped or failed service (operators).
    Start {
        /// Its name.
        name: String,
    },
    /// Stop a service: SIGTERM, then SIGKILL after 5 s (operators).
    Stop {
        /// Its name.
        name: String,
    },
    /// Stop and start again (operators).
    Restart {
        /// Its name.
        name: String,
    },
    /// Install a service from a directory holding service.yaml (admins). The daemon reads
    /// the directory itself when it runs on this machine; otherwise (or with --upload) the
    /// files are sent over ATP (up to about 700 KiB in all).
    Install {
        /// The directory.
        dir: PathBuf,
        /// Send the files even to a daemon on this machine.
        #[arg(long)]
        upload: bool,
    },
    /// Remove an installed service (admins).
    Uninstall {
        /// Its name.
        name: String,
        /// Stop it first if it runs.
        #[arg(long)]
        force: bool,
    },
}

/// Largest upload, before base64 (the frame limit is 1 MiB).
const MAX_UPLOAD: u64 = 700 * 1024;

/// The regular files under `dir`, for an upload.
fn pack(dir: &std::path::Path) -> anyhow::Result<Vec<UploadedFile>> {
    use base64::Engine;
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))? {
            let e = e?;
            let ty = e.file_type()?;
            if ty.is_dir() {
                stack.push(e.path());
            } else if ty.is_file() {
                let meta = e.metadata()?;
                total += meta.len();
                if total > MAX_UPLOAD {
                    bail!(
                        "{} holds more than {} KiB: too large to upload; copy it to the daemon's host and install it from there",
                        dir.display(),
                        MAX_UPLOAD / 1024
                    );
                }
                let rel = e.path().strip_prefix(dir)?.to_string_lossy().into_owned();
                out.push(UploadedFile {
                    path: rel,
                    mode: Some(meta.permissions().mode() & 0o755),
                    content_base64: base64::engine::general_purpose::STANDARD
                        .encode(std::fs::read(e.path())?),
                });
            }
        }
    }
    Ok(out)
}

fn state(s: &ServiceStatus) -> String {
    serde_json::to_value(s.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn print_status(s: &ServiceStatus) {
    println!("service   {} {}", s.name, s.version);
    println!("state     {} since {}", state(s), s.since);
    if let Some(pid) = s.pid {
        println!("pid       {pid}");
    }
    println!("restarts  {}", s.restarts);
    if let Some(e) = &s.last_exit {
        println!("last exit {e}");
    }
    if let Some(n) = &s.next_start {
        println!("next try  {n}");
    }
    println!(
        "tools     {}",
        if s.tools.is_empty() {
            "-".to_owned()
        } else {
            s.tools.join(", ")
        }
    );
    if let Some(l) = &s.log {
        println!("log       {l}  (or /proc/services/{}/log)", s.name);
    }
    if let Some(p) = &s.problem {
        println!("problem   {p}");
    }
}

/// Whether the daemon at `server` (an http(s) URL) runs on this machine.
pub(crate) fn is_local(server: &str) -> bool {
    let rest = server.split("://").nth(1).unwrap_or(server);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1") || host.starts_with("127.")
}

pub(crate) async fn service(
    c: &Client,
    cmd: ServiceCommand,
    out: &Out,
    local: bool,
) -> anyhow::Result<i32> {
    let op = match cmd {
        ServiceCommand::List => {
            let v: Vec<ServiceStatus> = c.run_as(&Op::ServiceList(NoArgs {})).await?;
            if out.json {
                return out.json(&serde_json::to_value(&v)?).map(|()| 0);
            }
            let rows: Vec<Vec<String>> = v
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        s.version.clone(),
                        state(s),
                        s.pid.map_or_else(|| "-".into(), |p| p.to_string()),
                        s.restarts.to_string(),
                        s.tools.len().to_string(),
                        s.problem.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            table(
                &[
                    "NAME", "VERSION", "STATE", "PID", "RESTARTS", "TOOLS", "PROBLEM",
                ],
                &rows,
            )?;
            return Ok(0);
        }
        ServiceCommand::Status { name } => Op::ServiceStatus(ServiceArgs { name }),
        ServiceCommand::Logs { name, lines } => {
            // The same file the mount shows: /proc/services/<name>/log.
            let v = c
                .run(&Op::FsRead(FsReadArgs {
                    path: format!("/proc/services/{name}/log"),
                    offset: None,
                    length: None,
                }))
                .await?;
            let text = v["content"].as_str().unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            if out.json {
                return out.json(&json!({"name": name, "lines": tail})).map(|()| 0);
            }
            for l in tail {
                println!("{l}");
            }
            return Ok(0);
        }
        ServiceCommand::Start { name } => Op::ServiceStart(ServiceArgs { name }),
        ServiceCommand::Stop { name } => Op::ServiceStop(ServiceArgs { name }),
        ServiceCommand::Restart { name } => Op::ServiceRestart(ServiceArgs { name }),
        ServiceCommand::Install { dir, upload } => {
            let dir = std::fs::canonicalize(&dir)
                .with_context(|| format!("cannot find {}", dir.display()))?;
            Op::ServiceInstall(if upload || !local {
                ServiceInstallArgs {
                    path: None,
                    files: Some(pack(&dir)?),
                }
            } else {
                ServiceInstallArgs {
                    path: Some(dir.to_string_lossy().into_owned()),
                    files: None,
                }
            })
        }
        ServiceCommand::Uninstall { name, force } => {
            let v = c
                .run(&Op::ServiceUninstall(ServiceUninstallArgs {
                    name: name.clone(),
                    force,
                }))
                .await?;
            if out.json {
                return out.json(&v).map(|()| 0);
            }
            println!("uninstalled {name}");
            return Ok(0);
        }
    };
    let s: ServiceStatus = c.run_as(&op).await?;
    if out.json {
        return out.json(&serde_json::to_value(&s)?).map(|()| 0);
    }
    print_status(&s);
    Ok(match s.state {
        avix_proto::service::ServiceState::Failed => 1,
        _ => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::is_local;

    #[test]
    fn loopback_servers_are_local() {
        for s in [
            "http://127.0.0.1:9142",
            "https://localhost:9142/",
            "http://[::1]:9142",
            "127.0.0.2:1",
        ] {
            assert!(is_local(s), "{s}");
        }
        for s in [
            "https://avix.example.com:9142",
            "http://10.0.0.5:9142",
            "http://[fe80::1]:9142",
        ] {
            assert!(!is_local(s), "{s}");
        }
    }
}
