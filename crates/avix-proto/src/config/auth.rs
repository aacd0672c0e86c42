//! `/etc/avix/auth.conf`: who may log in, with which credential, and the login policy.
//! Readable only by admins; the hashes in it are useless without the master key (API keys) or
//! expensive to attack (argon2id passwords).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::duplicates;
use crate::envelope::Kind;
use crate::name::UserName;
use crate::role::Role;
use crate::time::HumanDuration;

/// The body of `auth.conf`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthConfig {
    /// A MAC that proves which master key this installation was initialised with, so the daemon
    /// can refuse a wrong key with a clear message (`hmac-sha256:<hex>`).
    pub master_key_check: String,
    /// Login policy.
    #[serde(default)]
    pub policy: AuthPolicy,
    /// Everyone who may log in.
    pub identities: Vec<Identity>,
}

/// Login policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthPolicy {
    /// Lifetime of an ATP token.
    #[serde(default = "default_ttl")]
    pub session_ttl: HumanDuration,
    /// Refuse plain-text ATP when set.
    #[serde(default)]
    pub require_tls: bool,
    /// Failed logins before an identity or address is locked out.
    #[serde(default = "default_lockout_count")]
    pub failed_auth_lockout_count: u32,
    /// How long a lockout lasts.
    #[serde(default = "default_lockout_ttl")]
    pub failed_auth_lockout_ttl: HumanDuration,
    /// When a client is told its token is about to expire.
    #[serde(default = "default_refresh_window")]
    pub token_refresh_window: HumanDuration,
    /// Shortest accepted password.
    #[serde(default = "default_password_min")]
    pub password_min_length: u32,
    /// Shortest accepted API key.
    #[serde(default = "default_api_key_min")]
    pub api_key_min_length: u32,
}

fn default_ttl() -> HumanDuration {
    HumanDuration::from_secs(8 * 3600)
}
fn default_lockout_count() -> u32 {
    5
}
fn default_lockout_ttl() -> HumanDuration {
    HumanDuration::from_secs(15 * 60)
}
fn default_refresh_window() -> HumanDuration {
    HumanDuration::from_secs(5 * 60)
}
fn default_password_min() -> u32 {
    12
}
fn default_api_key_min() -> u32 {
    32
}

impl Default for AuthPolicy {
    fn default() -> Self {
        Self {
            session_ttl: default_ttl(),
            require_tls: false,
            failed_auth_lockout_count: default_lockout_count(),
            failed_auth_lockout_ttl: default_lockout_ttl(),
            token_refresh_window: default_refresh_window(),
            password_min_length: default_password_min(),
            api_key_min_length: default_api_key_min(),
        }
    }
}

/// One login identity. Its `name` is the Avix user it logs in as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Identity {
    /// The user name.
    pub name: UserName,
    /// The user's Avix uid (same as in users.yaml).
    pub uid: u32,
    /// The role granted at login.
    pub role: Role,
    /// How the identity proves itself.
    pub credential: Credential,
    /// CIDR ranges logins may come from; empty means anywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_allowlist: Vec<String>,
}

/// A stored credential. Only hashes are ever stored.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum Credential {
    /// An API key, stored as `hmac-sha256:<hex>` under the API-key sub-key of the master key.
    ApiKey {
        /// The keyed hash.
        key_hash: String,
    },
    /// A password, stored as an argon2id PHC string.
    Password {
        /// The argon2id hash.
        password_hash: String,
    },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::ApiKey { .. } => f.write_str("ApiKey { key_hash: <redacted> }"),
            Credential::Password { .. } => f.write_str("Password { password_hash: <redacted> }"),
        }
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("master_key_check", &"<redacted>")
            .field("policy", &self.policy)
            .field("identities", &self.identities)
            .finish()
    }
}

impl AuthConfig {
    /// The identity with this name.
    pub fn identity(&self, name: &str) -> Option<&Identity> {
        self.identities.iter().find(|i| i.name.as_str() == name)
    }
}

fn is_hex_mac(s: &str) -> bool {
    s.strip_prefix("hmac-sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Checks `a.b.c.d/n` or `x::y/n` (a bare address means a single host).
pub fn is_cidr(s: &str) -> bool {
    let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
    match addr.parse::<std::net::IpAddr>() {
        Ok(ip) => {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            prefix.is_empty() || prefix.parse::<u8>().is_ok_and(|p| p <= max)
        }
        Err(_) => false,
    }
}

impl Kind for AuthConfig {
    const KIND: &'static str = "AuthConfig";

    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !is_hex_mac(&self.master_key_check) {
            problems.push("masterKeyCheck must be hmac-sha256:<64 hex digits>".to_owned());
        }
        if self.identities.is_empty() {
            problems.push("identities is empty: at least one admin is needed".to_owned());
        } else if !self.identities.iter().any(|i| i.role == Role::Admin) {
            problems.push("no identity has role admin: at least one admin is needed".to_owned());
        }
        duplicates(
            "identity",
            self.identities.iter().map(|i| &i.name),
            &mut problems,
        );
        duplicates("uid", self.identities.iter().map(|i| &i.uid), &mut problems);
        for i in &self.identities {
            match &i.credential {
                Credential::ApiKey { key_hash } if !is_hex_mac(key_hash) => problems.push(format!(
                    "identity {}: keyHash must be hmac-sha256:<64 hex digits>",
                    i.name
                )),
                Credential::Password { password_hash }
                    if !password_hash.starts_with("$argon2id$") =>
                {
                    problems.push(format!(
                        "identity {}: passwordHash must be an argon2id hash",
                        i.name
                    ))
                }
                _ => {}
            }
            for c in &i.ip_allowlist {
                if !is_cidr(c) {
                    problems.push(format!(
                        "identity {}: ipAllowlist entry {c:?} is not a CIDR",
                        i.name
                    ));
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Document;

    fn sample() -> String {
        format!(
            "apiVersion: avix/v1\nkind: AuthConfig\nspec:\n  masterKeyCheck: hmac-sha256:{h}\n  policy: {{sessionTtl: 8h}}\n  identities:\n    - name: alice\n      uid: 1001\n      role: admin\n      credential: {{type: api_key, keyHash: 'hmac-sha256:{h}'}}\n      ipAllowlist: [10.0.0.0/8, '::1']\n",
            h = "ab".repeat(32)
        )
    }

    #[test]
    fn parses_and_redacts_debug() {
        let doc = Document::<AuthConfig>::parse(sample().as_bytes()).unwrap();
        let id = doc.spec.identity("alice").unwrap();
        assert_eq!(id.role, Role::Admin);
        let dbg = format!("{:?}", doc.spec);
        assert!(!dbg.contains(&"ab".repeat(32)), "{dbg}");
    }

    #[test]
    fn needs_an_admin_and_well_formed_hashes() {
        let s = sample().replace("role: admin", "role: user");
        assert!(
            Document::<AuthConfig>::parse(s.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("admin")
        );
        let s = sample().replace("'hmac-sha256:", "'sha1:");
        assert!(
            Document::<AuthConfig>::parse(s.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("keyHash")
        );
        let s = sample().replace("10.0.0.0/8", "10.0.0.0/99");
        assert!(Document::<AuthConfig>::parse(s.as_bytes()).is_err());
    }
}
