//! `avix client secret …`: values sealed by the daemon; they go in and never come out.

use std::io::{IsTerminal, Read};

use anyhow::{Context, bail};
use avix_client::Client;
use avix_proto::atp::SecretInfo;
use avix_proto::op::{Op, SecretListArgs, SecretNameArgs, SecretSetArgs};
use clap::Subcommand;
use zeroize::Zeroizing;

use crate::client::{Out, table};

#[derive(Debug, Subcommand)]
pub(crate) enum SecretCommand {
    /// Store a secret. The value is read from standard input (one line or all of it), or
    /// from an environment variable with --from-env; never from the command line.
    Set {
        /// Its name (A-Z, a-z, 0-9, '_').
        name: String,
        /// A system secret (admins), usable as `secret:NAME` in service.yaml and mcp.yaml.
        #[arg(long)]
        system: bool,
        /// Take the value from this environment variable.
        #[arg(long, value_name = "VAR")]
        from_env: Option<String>,
    },
    /// The names of your secrets (or the system's): never their values.
    List {
        /// The system's (admins).
        #[arg(long)]
        system: bool,
    },
    /// Remove a secret.
    Delete {
        /// Its name.
        name: String,
        /// A system secret (admins).
        #[arg(long)]
        system: bool,
    },
}

fn read_value(from_env: Option<&str>) -> anyhow::Result<Zeroizing<String>> {
    if let Some(var) = from_env {
        return std::env::var(var)
            .map(Zeroizing::new)
            .with_context(|| format!("environment variable {var} is not set"));
    }
    let mut v = Zeroizing::new(String::new());
    if std::io::stdin().is_terminal() {
        // Read from the terminal without echo.
        *v = rpassword::prompt_password("value (not shown): ")
            .context("cannot read the value from the terminal")?;
    } else {
        std::io::stdin().read_to_string(&mut v)?;
    }
    let trimmed = Zeroizing::new(v.trim_end_matches(['\n', '\r']).to_owned());
    if trimmed.is_empty() {
        bail!(
            "empty value: pipe the value in, e.g. printf %s \"$TOKEN\" | avix client secret set NAME"
        );
    }
    Ok(trimmed)
}

pub(crate) async fn secret(c: &Client, cmd: SecretCommand, out: &Out) -> anyhow::Result<i32> {
    match cmd {
        SecretCommand::Set {
            name,
            system,
            from_env,
        } => {
            let value = read_value(from_env.as_deref())?;
            let v = c
                .run(&Op::SecretSet(SecretSetArgs {
                    name: name.clone(),
                    value: value.as_str().to_owned(),
                    system,
                }))
                .await?;
            if out.json {
                return out.json(&v).map(|()| 0);
            }
            println!(
                "{} secret {name} set",
                if system { "system" } else { "your" }
            );
        }
        SecretCommand::List { system } => {
            let v: Vec<SecretInfo> = c.run_as(&Op::SecretList(SecretListArgs { system })).await?;
            if out.json {
                return out.json(&serde_json::to_value(&v)?).map(|()| 0);
            }
            let rows: Vec<Vec<String>> = v
                .iter()
                .map(|s| vec![s.name.clone(), s.owner.clone(), s.updated_at.to_string()])
                .collect();
            table(&["NAME", "OWNER", "UPDATED"], &rows)?;
        }
        SecretCommand::Delete { name, system } => {
            let v = c
                .run(&Op::SecretDelete(SecretNameArgs {
                    name: name.clone(),
                    system,
                }))
                .await?;
            if out.json {
                return out.json(&v).map(|()| 0);
            }
            println!("deleted {name}");
        }
    }
    Ok(0)
}
