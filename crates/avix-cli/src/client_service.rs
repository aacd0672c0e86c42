//! `avix client service …`: installed services over ATP (`sys service-*`).

use std::path::PathBuf;

use anyhow::Context;
use avix_client::Client;
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
    /// Install a service from a directory holding service.yaml (admins; the directory must
    /// be on the daemon's host).
    Install {
        /// The directory.
        dir: PathBuf,
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

pub(crate) async fn service(c: &Client, cmd: ServiceCommand, out: &Out) -> anyhow::Result<i32> {
    let one = |op: &'static str, name: String| (op, json!({ "name": name }));
    let (op, body) = match cmd {
        ServiceCommand::List => {
            let v: Vec<ServiceStatus> = c.call_as("sys", "service-list", json!({})).await?;
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
        ServiceCommand::Status { name } => one("service-status", name),
        ServiceCommand::Logs { name, lines } => {
            // The same file the mount shows: /proc/services/<name>/log.
            let v = c
                .call(
                    "fs",
                    "read",
                    json!({"path": format!("/proc/services/{name}/log")}),
                )
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
        ServiceCommand::Start { name } => one("service-start", name),
        ServiceCommand::Stop { name } => one("service-stop", name),
        ServiceCommand::Restart { name } => one("service-restart", name),
        ServiceCommand::Install { dir } => {
            let dir = std::fs::canonicalize(&dir)
                .with_context(|| format!("cannot find {}", dir.display()))?;
            ("service-install", json!({ "path": dir }))
        }
        ServiceCommand::Uninstall { name, force } => {
            let v = c
                .call(
                    "sys",
                    "service-uninstall",
                    json!({"name": name, "force": force}),
                )
                .await?;
            if out.json {
                return out.json(&v).map(|()| 0);
            }
            println!("uninstalled {name}");
            return Ok(0);
        }
    };
    let s: ServiceStatus = c.call_as("sys", op, body).await?;
    if out.json {
        return out.json(&serde_json::to_value(&s)?).map(|()| 0);
    }
    print_status(&s);
    Ok(match s.state {
        avix_proto::service::ServiceState::Failed => 1,
        _ => 0,
    })
}
