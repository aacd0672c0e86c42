//! Tokens kept by `avix client login`, one file per server and user, in the XDG state
//! directory (`$XDG_STATE_HOME/avix/tokens/`, by default `~/.local/state/avix/tokens/`): the
//! directory 0700, each file 0600, written whole (temporary file and rename). Only the token
//! (and when it expires) is kept, never the credential it was obtained with. A command finds
//! the token for its server and user and uses it instead of logging in; one past half its life
//! is refreshed; one the server refuses (expired, logged out) is removed.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use avix_proto::atp::LoginResponse;
use avix_proto::time::Timestamp;
use serde::{Deserialize, Serialize};

use crate::ClientError;
use crate::config::Config;

/// One kept token.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Kept {
    /// The server it is for.
    pub server: String,
    /// The user asked for at login (empty: the API key's).
    pub identity: String,
    /// The login.
    pub login: LoginResponse,
    /// When it was obtained (Unix seconds).
    pub obtained: i64,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept")
            .field("server", &self.server)
            .field("identity", &self.identity)
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

impl Kept {
    /// Still usable for a while (a minute or more left).
    pub fn usable(&self) -> bool {
        self.login.expires_at.unix() > Timestamp::now().unix() + 60
    }

    /// Past half its life: worth refreshing.
    pub fn aging(&self) -> bool {
        let exp = self.login.expires_at.unix();
        Timestamp::now().unix() > self.obtained + (exp - self.obtained) / 2
    }
}

/// The token files.
#[derive(Debug, Clone)]
pub struct Tokens {
    dir: PathBuf,
}

fn io(what: &str, p: &Path, e: &std::io::Error) -> ClientError {
    ClientError::Config(format!("cannot {what} {}: {e}", p.display()))
}

impl Tokens {
    /// The default place: `$XDG_STATE_HOME/avix/tokens`, or `~/.local/state/avix/tokens`
    /// (`None` without either variable).
    pub fn default_place() -> Option<Self> {
        let state = std::env::var_os("XDG_STATE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| PathBuf::from(h).join(".local/state"))
            })?;
        Some(Self::at(state.join("avix/tokens")))
    }

    /// Token files in `dir`.
    pub fn at(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The file for `config`'s server and user.
    pub fn file(&self, config: &Config) -> PathBuf {
        let who = if config.identity.is_empty() {
            "_apikey"
        } else {
            config.identity.as_str()
        };
        let name: String = format!("{}@{who}", config.server)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '@') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{name}.json"))
    }

    /// The token kept for `config`'s server and user, if any (a damaged or foreign file is
    /// ignored).
    pub fn load(&self, config: &Config) -> Option<Kept> {
        let p = self.file(config);
        let bytes = std::fs::read(&p).ok()?;
        let k: Kept = serde_json::from_slice(&bytes).ok()?;
        (k.server == config.server && k.identity == config.identity).then_some(k)
    }

    /// Keeps `login` for `config`'s server and user.
    pub fn save(&self, config: &Config, login: &LoginResponse) -> Result<PathBuf, ClientError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io("create", &self.dir, &e))?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io("protect", &self.dir, &e))?;
        let p = self.file(config);
        let k = Kept {
            server: config.server.clone(),
            identity: config.identity.clone(),
            login: login.clone(),
            obtained: Timestamp::now().unix(),
        };
        let body =
            serde_json::to_vec_pretty(&k).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let tmp = p.with_extension(format!("tmp{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io("write", &tmp, &e))?;
        f.write_all(&body)
            .and_then(|()| f.sync_all())
            .map_err(|e| io("write", &tmp, &e))?;
        std::fs::rename(&tmp, &p).map_err(|e| io("write", &p, &e))?;
        Ok(p)
    }

    /// Forgets the token for `config`'s server and user; whether there was one.
    pub fn remove(&self, config: &Config) -> bool {
        std::fs::remove_file(self.file(config)).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn config(identity: &str) -> Config {
        Config {
            server: "http://127.0.0.1:9142".into(),
            identity: identity.into(),
            credential: None,
            ca_cert: None,
        }
    }

    #[test]
    fn kept_per_server_and_user_privately() {
        let d = tempfile::tempdir().unwrap();
        let t = Tokens::at(d.path().join("avix/tokens"));
        let login = LoginResponse {
            token: "tok".into(),
            expires_at: Timestamp::from_unix(Timestamp::now().unix() + 3600),
            session_id: "s1".into(),
            role: avix_proto::Role::User,
        };
        let p = t.save(&config("alice"), &login).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(d.path().join("avix/tokens"))
                .unwrap()
                .mode()
                & 0o777,
            0o700
        );
        let k = t.load(&config("alice")).unwrap();
        assert_eq!(k.login.token, "tok");
        assert!(k.usable() && !k.aging());
        assert!(t.load(&config("bob")).is_none());
        assert!(!format!("{k:?}").contains("tok\""), "{k:?}");
        assert!(t.remove(&config("alice")));
        assert!(t.load(&config("alice")).is_none());
    }
}
