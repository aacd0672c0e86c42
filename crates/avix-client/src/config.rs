//! Where the client finds its server and credential: flags, then the environment
//! (`AVIX_SERVER`, `AVIX_USER`, `AVIX_API_KEY`, `AVIX_PASSWORD`), then the config file
//! (`--config`, `$AVIX_CLIENT_CONFIG`, or `~/.config/avix/client.yaml`), then the default
//! server `http://127.0.0.1:9142`.
//!
//! ```yaml
//! server: http://127.0.0.1:9142
//! identity: alice
//! credential: sk-avix-…        # the file must then be private (chmod 600)
//! caCert: /etc/avix-ca.pem     # for a server with a private certificate
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::ClientError;

/// The default server.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:9142";

/// Settings from the command line (highest precedence).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--server`.
    pub server: Option<String>,
    /// `--user`.
    pub identity: Option<String>,
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--ca-cert`.
    pub ca_cert: Option<PathBuf>,
}

/// The resolved settings.
#[derive(Clone)]
pub struct Config {
    /// `http://host:port` or `https://…`.
    pub server: String,
    /// The user (empty: the server finds the user by API key).
    pub identity: String,
    /// An API key or password (`None`: only a token saved by `avix client login` can be
    /// used).
    pub credential: Option<Zeroizing<String>>,
    /// A CA certificate to trust.
    pub ca_cert: Option<PathBuf>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("server", &self.server)
            .field("identity", &self.identity)
            .field("credential", &"<redacted>")
            .finish()
    }
}

/// The file. The reference implementation's clients keep theirs at the same path, with
/// `server_url` and two settings of their own; it is read as it is (docs/client.md).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    #[serde(default, alias = "server_url")]
    server: Option<String>,
    #[serde(default, rename = "runtime_root")]
    _runtime_root: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "auto_start_server")]
    _auto_start_server: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    identity: Option<String>,
    #[serde(default)]
    credential: Option<String>,
    #[serde(default)]
    ca_cert: Option<PathBuf>,
}

fn default_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AVIX_CLIENT_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("avix").join("client.yaml"))
}

fn read_file(path: &Path, explicit: bool) -> Result<File, ClientError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(File::default());
        }
        Err(e) => {
            return Err(ClientError::Config(format!(
                "cannot read the client config {}: {e}",
                path.display()
            )));
        }
    };
    let f: File = avix_proto::yaml::from_slice(&bytes).map_err(|e| {
        ClientError::Config(format!(
            "the client config {} is invalid: {e}",
            path.display()
        ))
    })?;
    if f.credential.is_some() {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path)
            && m.permissions().mode() & 0o077 != 0
        {
            return Err(ClientError::Config(format!(
                "{} holds a credential but others can read it: chmod 600 {}",
                path.display(),
                path.display()
            )));
        }
    }
    Ok(f)
}

/// The server's base URL (`http(s)://host:port`) from any form people write:
/// `http(s)://host:port`, `ws(s)://host:port`, either with `/atp` (the WebSocket's path, as
/// the ATP docs show it) or a trailing `/`, or a bare `host:port`.
pub fn server_url(given: &str) -> Result<String, ClientError> {
    let s = given.trim();
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("http".to_owned(), s),
    };
    let scheme = match scheme.as_str() {
        "http" | "ws" => "http",
        "https" | "wss" => "https",
        other => {
            return Err(ClientError::Config(format!(
                "server {given:?}: the scheme {other}:// is not one Avix speaks; write http://HOST:PORT, https://HOST:PORT, ws://HOST:PORT/atp, wss://… or HOST:PORT"
            )));
        }
    };
    let rest = rest.trim_end_matches('/');
    let rest = rest
        .strip_suffix("/atp")
        .unwrap_or(rest)
        .trim_end_matches('/');
    if rest.is_empty() || rest.starts_with(':') || rest.contains(['/', '?', '#', ' ']) {
        return Err(ClientError::Config(format!(
            "server {given:?}: expected a host and port (e.g. 127.0.0.1:9142), with nothing after it but /atp"
        )));
    }
    Ok(format!("{scheme}://{rest}"))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// What a login without a credential says.
pub const NO_CREDENTIAL: &str = "no credential: export AVIX_API_KEY (the key `avix server config init` printed) or AVIX_PASSWORD, or put credential in ~/.config/avix/client.yaml; `avix client login` then keeps a token so later commands need neither";

impl Config {
    /// Resolves the settings.
    pub fn load(o: &Overrides) -> Result<Self, ClientError> {
        let file = match (&o.config, default_path()) {
            (Some(p), _) => read_file(p, true)?,
            (None, Some(p)) => read_file(&p, false)?,
            (None, None) => File::default(),
        };
        let server = o
            .server
            .clone()
            .or_else(|| env("AVIX_SERVER"))
            .or(file.server)
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        let server = server_url(&server)?;
        let identity = o
            .identity
            .clone()
            .or_else(|| env("AVIX_USER"))
            .or(file.identity)
            .unwrap_or_default();
        let credential = env("AVIX_API_KEY")
            .or_else(|| env("AVIX_PASSWORD"))
            .or(file.credential);
        Ok(Self {
            server,
            identity,
            credential: credential.map(Zeroizing::new),
            ca_cert: o.ca_cert.clone().or(file.ca_cert),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn every_form_of_server_address_works() {
        for (given, want) in [
            ("http://127.0.0.1:9142", "http://127.0.0.1:9142"),
            ("http://127.0.0.1:9142/", "http://127.0.0.1:9142"),
            ("ws://127.0.0.1:9142", "http://127.0.0.1:9142"),
            ("ws://127.0.0.1:9142/atp", "http://127.0.0.1:9142"),
            ("WSS://avix.example:443/atp/", "https://avix.example:443"),
            ("https://avix.example", "https://avix.example"),
            ("127.0.0.1:9142", "http://127.0.0.1:9142"),
            ("localhost:9142/atp", "http://localhost:9142"),
            ("[::1]:9142", "http://[::1]:9142"),
        ] {
            assert_eq!(server_url(given).unwrap(), want, "{given}");
        }
        for bad in ["ftp://x:1", "http://", "http://host:1/other", ""] {
            let e = server_url(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn the_reference_clients_file_is_read_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("client.yaml");
        std::fs::write(
            &p,
            "server_url: http://127.0.0.1:19142\nidentity: alice\ncredential: sk-avix-x\nruntime_root: /var/lib/avix\nauto_start_server: false\n",
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let f = read_file(&p, true).unwrap();
        assert_eq!(f.server.as_deref(), Some("http://127.0.0.1:19142"));
        assert_eq!(f.identity.as_deref(), Some("alice"));
        std::fs::write(&p, "server: x\nnonsense: 1\n").unwrap();
        let e = read_file(&p, true).err().unwrap().to_string();
        assert!(e.contains("unknown field `nonsense`"), "{e}");
    }
}
