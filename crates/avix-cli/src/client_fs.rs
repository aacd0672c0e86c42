//! `avix client fs …`: the VFS over ATP, for users who do not have the mount (a remote
//! daemon): list, read, write, remove, and follow files, with the same rules as every door.
//! A relative path is in your workspace (`/users/<you>/workspace`).

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::Context;
use avix_client::Client;
use avix_proto::atp::WhoAmI;
use avix_proto::op::{FsReadArgs, FsWriteArgs, NoArgs, Op, PathArgs};
use base64::Engine;
use clap::Subcommand;
use serde_json::Value;

use crate::client::{Out, safe, table};

#[derive(Debug, Subcommand)]
pub(crate) enum FsCommand {
    /// List a directory (default: your workspace).
    Ls {
        /// The directory.
        path: Option<String>,
    },
    /// Print a file.
    Cat {
        /// The file.
        path: String,
    },
    /// Write a file from a local file (or standard input with `-`).
    Put {
        /// The local file, or `-`.
        local: String,
        /// Where to write it.
        path: String,
        /// Add to the end instead of replacing.
        #[arg(long)]
        append: bool,
    },
    /// Copy a file to a local file (default: its name, in the current directory; `-`:
    /// standard output).
    Get {
        /// The file.
        path: String,
        /// The local file.
        local: Option<String>,
    },
    /// Remove a file or an empty directory.
    Rm {
        /// It.
        path: String,
    },
    /// Kind, size, time and owner of a path.
    Stat {
        /// It.
        path: String,
    },
    /// The last lines of a file; with --follow, then what is added to it.
    Tail {
        /// The file.
        path: String,
        /// How many lines.
        #[arg(long, short = 'n', default_value_t = 10)]
        lines: usize,
        /// Keep printing what is added (checked every half second).
        #[arg(long, short)]
        follow: bool,
    },
}

/// Largest piece asked for at once (the server's limit).
const PIECE: u64 = 512 * 1024;

async fn absolute(c: &Client, path: &str) -> anyhow::Result<String> {
    if path.starts_with('/') {
        return Ok(path.to_owned());
    }
    let me: WhoAmI = c.run_as(&Op::Whoami(NoArgs {})).await?;
    let rel = path.trim_start_matches("./");
    Ok(if rel.is_empty() || rel == "." {
        format!("/users/{}/workspace", me.user)
    } else {
        format!("/users/{}/workspace/{rel}", me.user)
    })
}

/// The bytes of one piece of a read reply.
fn piece(v: &Value) -> anyhow::Result<Vec<u8>> {
    if let Some(t) = v["content"].as_str() {
        return Ok(t.as_bytes().to_vec());
    }
    let b = v["contentBase64"].as_str().unwrap_or("");
    base64::engine::general_purpose::STANDARD
        .decode(b)
        .context("the server sent content that is not base64")
}

/// Reads `path` from `offset` to its end; returns the bytes and the file's size.
async fn read_from(c: &Client, path: &str, mut offset: u64) -> anyhow::Result<(Vec<u8>, u64)> {
    let mut out = Vec::new();
    loop {
        let v = c
            .run(&Op::FsRead(FsReadArgs {
                path: path.to_owned(),
                offset: Some(offset),
                length: Some(PIECE),
            }))
            .await?;
        let data = piece(&v)?;
        out.extend_from_slice(&data);
        let size = v["size"].as_u64().unwrap_or(0);
        match v["next"].as_u64() {
            Some(n) if n > offset => offset = n,
            _ => return Ok((out, size)),
        }
    }
}

pub(crate) async fn fs(c: &Client, cmd: FsCommand, out: &Out) -> anyhow::Result<i32> {
    match cmd {
        FsCommand::Ls { path } => {
            let path = absolute(c, path.as_deref().unwrap_or(".")).await?;
            let v = c.run(&Op::FsList(PathArgs { path })).await?;
            if out.json {
                return out.json(&v).map(|()| 0);
            }
            for e in v["entries"].as_array().into_iter().flatten() {
                let name = e["name"].as_str().unwrap_or("");
                let slash = if e["kind"] == "dir" { "/" } else { "" };
                println!("{}{slash}", safe(name));
            }
        }
        FsCommand::Cat { path } => {
            let path = absolute(c, &path).await?;
            let (data, _) = read_from(c, &path, 0).await?;
            std::io::stdout().lock().write_all(&data)?;
        }
        FsCommand::Get { path, local } => {
            let path = absolute(c, &path).await?;
            let (data, _) = read_from(c, &path, 0).await?;
            let local =
                local.unwrap_or_else(|| path.rsplit('/').next().unwrap_or("file").to_owned());
            if local == "-" {
                std::io::stdout().lock().write_all(&data)?;
            } else {
                std::fs::write(&local, &data).with_context(|| format!("cannot write {local}"))?;
                if !out.json {
                    eprintln!("{path} -> {local} ({} bytes)", data.len());
                }
            }
        }
        FsCommand::Put {
            local,
            path,
            append,
        } => {
            let path = absolute(c, &path).await?;
            let mut data = Vec::new();
            if local == "-" {
                std::io::stdin().read_to_end(&mut data)?;
            } else {
                data = std::fs::read(&local).with_context(|| format!("cannot read {local}"))?;
            }
            let (content, content_base64) = match String::from_utf8(data) {
                Ok(t) => (Some(t), None),
                Err(e) => (
                    None,
                    Some(base64::engine::general_purpose::STANDARD.encode(e.as_bytes())),
                ),
            };
            let v = c
                .run(&Op::FsWrite(FsWriteArgs {
                    path,
                    content,
                    content_base64,
                    append,
                }))
                .await?;
            if out.json {
                return out.json(&v).map(|()| 0);
            }
            eprintln!(
                "{} ({} bytes)",
                safe(v["path"].as_str().unwrap_or("")),
                v["bytes"]
            );
        }
        FsCommand::Rm { path } => {
            let path = absolute(c, &path).await?;
            let v = c.run(&Op::FsDelete(PathArgs { path })).await?;
            if out.json {
                return out.json(&v).map(|()| 0);
            }
        }
        FsCommand::Stat { path } => {
            let path = absolute(c, &path).await?;
            let v = c.run(&Op::FsStat(PathArgs { path })).await?;
            if out.json {
                return out.json(&v).map(|()| 0);
            }
            let s = |k: &str| {
                v[k].as_str()
                    .map_or_else(|| v[k].to_string(), str::to_owned)
            };
            table(
                &["PATH", "KIND", "SIZE", "MODIFIED", "OWNER"],
                &[vec![
                    s("path"),
                    s("kind"),
                    s("size"),
                    s("modified"),
                    s("owner"),
                ]],
            )?;
        }
        FsCommand::Tail {
            path,
            lines,
            follow,
        } => {
            let path = absolute(c, &path).await?;
            let (data, mut size) = read_from(c, &path, 0).await?;
            let text = String::from_utf8_lossy(&data);
            let all: Vec<&str> = text.split_inclusive('\n').collect();
            let mut o = std::io::stdout().lock();
            for l in &all[all.len().saturating_sub(lines)..] {
                o.write_all(l.as_bytes())?;
            }
            o.flush()?;
            drop(o);
            if !follow {
                return Ok(0);
            }
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let st = c.run(&Op::FsStat(PathArgs { path: path.clone() })).await?;
                let now = st["size"].as_u64().unwrap_or(0);
                if now < size {
                    eprintln!("{path}: file truncated");
                    size = 0;
                }
                if now > size {
                    let (more, new) = read_from(c, &path, size).await?;
                    let mut o = std::io::stdout().lock();
                    o.write_all(&more)?;
                    o.flush()?;
                    size = new;
                }
            }
        }
    }
    Ok(0)
}
