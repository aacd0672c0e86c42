//! `/etc/avix/mcp.yaml`: the MCP servers whose tools the bridge publishes as
//! `mcp/<server>/<tool>`.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::envelope::Kind;
use crate::time::HumanDuration;

/// The body of `mcp.yaml`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpConfig {
    /// The servers.
    #[serde(default)]
    pub servers: Vec<McpServer>,
}

/// One MCP server: a program spoken to over stdio, or a streamable-HTTP URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpServer {
    /// Its name: the middle segment of its tools' names (`a-z`, `0-9`, `-`).
    pub name: String,
    /// Program and arguments (stdio transport).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Streamable HTTP endpoint (HTTP transport).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Environment for a stdio server (it gets PATH, HOME and LANG besides; nothing else of
    /// the daemon's).
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// How long the connection and handshake may take.
    #[serde(default = "default_start")]
    pub start_timeout: HumanDuration,
    /// How long one tool call may take.
    #[serde(default = "default_call")]
    pub call_timeout: HumanDuration,
    /// Off: declared but not started.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn default_start() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}
fn default_call() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(60))
}
fn yes() -> bool {
    true
}

impl Kind for McpConfig {
    const KIND: &'static str = "McpServers";

    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut seen = HashSet::new();
        for s in &self.servers {
            let n = &s.name;
            if n.is_empty()
                || n.len() > 24
                || !n.starts_with(|c: char| c.is_ascii_lowercase())
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                problems.push(format!(
                    "server name {n:?} must be 1-24 characters of a-z, 0-9 and '-', starting with a letter"
                ));
            }
            if !seen.insert(n.clone()) {
                problems.push(format!("server {n:?} is declared twice"));
            }
            match (&s.command, &s.url) {
                (Some(c), None) if c.is_empty() => {
                    problems.push(format!("server {n}: command is empty"));
                }
                (Some(_), None) => {}
                (None, Some(u)) if u.starts_with("http://") || u.starts_with("https://") => {
                    if u.split("://")
                        .nth(1)
                        .is_some_and(|r| r.split('/').next().is_some_and(|h| h.contains('@')))
                    {
                        problems.push(format!(
                            "server {n}: put credentials in environment, not in the url"
                        ));
                    }
                }
                (None, Some(u)) => problems.push(format!(
                    "server {n}: url {u:?} must start with http:// or https://"
                )),
                _ => problems.push(format!(
                    "server {n}: give exactly one of command (stdio) and url (streamable HTTP)"
                )),
            }
            for (k, v) in &s.environment {
                if let Some(name) = v.strip_prefix("secret:")
                    && !crate::name::valid_secret_name(name)
                {
                    problems.push(format!(
                        "server {n}: environment {k}: {v:?} does not name a secret (secret:NAME)"
                    ));
                }
            }
            if s.call_timeout.0.is_zero() || s.start_timeout.0.is_zero() {
                problems.push(format!("server {n}: timeouts must be more than 0"));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Document;

    #[test]
    fn servers_are_checked() {
        let ok = "apiVersion: avix/v1\nkind: McpServers\nspec:\n  servers:\n    - name: everything\n      command: [npx, server-everything]\n    - name: remote\n      url: http://127.0.0.1:3001/mcp\n      callTimeout: 5s\n";
        let d = Document::<McpConfig>::parse(ok.as_bytes()).expect("valid");
        assert_eq!(d.spec.servers[1].call_timeout.0.as_secs(), 5);
        let bad = "apiVersion: avix/v1\nkind: McpServers\nspec:\n  servers:\n    - name: Bad_Name\n    - name: x\n      url: ftp://a\n    - name: x\n      url: http://u:p@host/mcp\n";
        let e = Document::<McpConfig>::parse(bad.as_bytes())
            .expect_err("invalid")
            .to_string();
        for want in ["Bad_Name", "exactly one", "ftp://", "twice", "credentials"] {
            assert!(e.contains(want), "{want} missing from {e}");
        }
    }
}
