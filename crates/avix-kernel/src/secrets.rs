//! The secret store: values sealed with AES-256-GCM (see `avix_auth::secret_box`) in
//! `ROOT/data/secrets/system/<NAME>` and `ROOT/data/secrets/users/<user>/<NAME>`, each file
//! 0600. Values go in through ATP (`secret set`) and come out only into the environment of a
//! process the daemon starts (a service, an MCP server), never through the VFS, ATP or logs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use avix_auth::SubKey;
use avix_auth::secret_box::SecretBox;
use avix_proto::UserName;
use avix_proto::time::Timestamp;
use avix_vfs::Caller;
use zeroize::Zeroizing;

use crate::Kernel;
use crate::fsutil::{ensure_dir, write_atomic};

/// The prefix that makes an environment value a reference to a system secret.
pub const SECRET_REF: &str = "secret:";

/// Whose secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretOwner {
    /// The installation's (services, MCP servers); admins manage them.
    System,
    /// A user's own.
    User(UserName),
}

impl SecretOwner {
    /// Whose secrets `caller` manages: the system's when `system` (admins, never agents),
    /// else their own (users and up).
    pub fn for_caller(caller: &Caller, system: bool) -> Result<Self, avix_proto::Error> {
        if system {
            crate::policy::system_secrets(caller)?;
            return Ok(SecretOwner::System);
        }
        crate::policy::require(caller, avix_proto::Role::User, "secrets")?;
        caller
            .user_name()
            .cloned()
            .map(SecretOwner::User)
            .ok_or_else(|| avix_proto::Error::invalid("the kernel has no secrets of its own"))
    }

    fn aad(&self) -> String {
        match self {
            SecretOwner::System => "system".into(),
            SecretOwner::User(u) => format!("user:{u}"),
        }
    }
}

pub use avix_proto::atp::SecretInfo;

/// Why a secret operation failed. Never carries a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretStoreError {
    /// Bad name.
    #[error(
        "secret name {0:?} must be 1-64 characters of A-Z, a-z, 0-9 and '_', not starting with a digit"
    )]
    BadName(String),
    /// No such secret.
    #[error("secret {0} is not set")]
    NotFound(String),
    /// Over the size limit.
    #[error("secret {0} is over the {max}-byte limit", max = avix_auth::secret_box::MAX_SECRET_BYTES)]
    TooLarge(String),
    /// Sealing or opening failed.
    #[error("secret {name}: {reason}")]
    Crypto {
        /// Which.
        name: String,
        /// Why.
        reason: String,
    },
    /// Disk trouble.
    #[error("secret store: {0}")]
    Io(String),
}

impl avix_proto::HasKind for SecretStoreError {
    fn kind(&self) -> avix_proto::ErrorKind {
        use avix_proto::ErrorKind;
        match self {
            // A value over the limit is a bad argument (EINVAL), as for every argument.
            SecretStoreError::BadName(_) | SecretStoreError::TooLarge(_) => ErrorKind::Invalid,
            SecretStoreError::NotFound(_) => ErrorKind::NotFound,
            SecretStoreError::Crypto { .. } | SecretStoreError::Io(_) => ErrorKind::Internal,
        }
    }
}

pub use avix_proto::name::valid_secret_name;

/// The store.
pub struct SecretStore {
    dir: PathBuf,
    sealer: SecretBox,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretStore({})", self.dir.display())
    }
}

impl SecretStore {
    /// The store under `dir` (`ROOT/data/secrets`).
    pub fn new(dir: PathBuf, key: &SubKey) -> Self {
        Self {
            dir,
            sealer: SecretBox::new(key),
        }
    }

    fn owner_dir(&self, owner: &SecretOwner) -> PathBuf {
        match owner {
            SecretOwner::System => self.dir.join("system"),
            SecretOwner::User(u) => self.dir.join("users").join(u.as_str()),
        }
    }

    fn check(name: &str) -> Result<(), SecretStoreError> {
        if valid_secret_name(name) {
            Ok(())
        } else {
            Err(SecretStoreError::BadName(name.to_owned()))
        }
    }

    /// Seals and stores a value (replacing any earlier one).
    pub(crate) fn set(
        &self,
        owner: &SecretOwner,
        name: &str,
        value: &[u8],
    ) -> Result<(), SecretStoreError> {
        Self::check(name)?;
        let sealed = self
            .sealer
            .seal(&owner.aad(), name, value)
            .map_err(|_| SecretStoreError::TooLarge(name.to_owned()))?;
        let dir = self.owner_dir(owner);
        ensure_dir(&self.dir, 0o700)
            .and_then(|()| ensure_dir(&dir, 0o700))
            .and_then(|()| write_atomic(&dir.join(name), sealed.as_bytes(), 0o600))
            .map_err(|e| SecretStoreError::Io(e.to_string()))
    }

    /// Opens a value: only for the environment of a process being started.
    pub(crate) fn get(
        &self,
        owner: &SecretOwner,
        name: &str,
    ) -> Result<Zeroizing<Vec<u8>>, SecretStoreError> {
        Self::check(name)?;
        let stored = std::fs::read_to_string(self.owner_dir(owner).join(name))
            .map_err(|_| SecretStoreError::NotFound(name.to_owned()))?;
        self.sealer
            .open(&owner.aad(), name, &stored)
            .map_err(|e| SecretStoreError::Crypto {
                name: name.to_owned(),
                reason: e.to_string(),
            })
    }

    /// Removes a secret; false if there was none.
    pub(crate) fn delete(&self, owner: &SecretOwner, name: &str) -> Result<bool, SecretStoreError> {
        Self::check(name)?;
        match std::fs::remove_file(self.owner_dir(owner).join(name)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(SecretStoreError::Io(e.to_string())),
        }
    }

    /// The names of an owner's secrets, sorted.
    pub(crate) fn list(&self, owner: &SecretOwner) -> Vec<SecretInfo> {
        let who = match owner {
            SecretOwner::System => "system".to_owned(),
            SecretOwner::User(u) => u.to_string(),
        };
        let mut v: Vec<SecretInfo> = std::fs::read_dir(self.owner_dir(owner))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                if !valid_secret_name(&name) {
                    return None;
                }
                let updated = e
                    .metadata()
                    .ok()?
                    .modified()
                    .ok()?
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()?
                    .as_secs() as i64;
                Some(SecretInfo {
                    name,
                    owner: who.clone(),
                    updated_at: Timestamp::from_unix(updated),
                })
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// An environment with every `secret:NAME` value replaced by the system secret NAME.
    /// Fails (naming the variable and the secret, never a value) if one is not set.
    pub fn resolve_env(
        &self,
        env: &BTreeMap<String, String>,
    ) -> Result<Vec<(String, Zeroizing<String>)>, avix_proto::Error> {
        env.iter()
            .map(|(k, v)| match v.strip_prefix(SECRET_REF) {
                None => Ok((k.clone(), Zeroizing::new(v.clone()))),
                Some(name) => {
                    let value = self.get(&SecretOwner::System, name).map_err(|e| match e {
                        SecretStoreError::NotFound(_) => avix_proto::Error::not_found(format!(
                            "environment {k}: system secret {name} is not set (avix client secret set {name} --system)"
                        )),
                        other => avix_proto::Error::new(
                            avix_proto::HasKind::kind(&other),
                            format!("environment {k}: {other}"),
                        ),
                    })?;
                    let text = String::from_utf8(value.to_vec()).map_err(|_| {
                        avix_proto::Error::invalid(format!(
                            "environment {k}: system secret {name} is not UTF-8 text"
                        ))
                    })?;
                    Ok((k.clone(), Zeroizing::new(text)))
                }
            })
            .collect()
    }
}

/// Secrets as a caller manages them: values go in, names come out, never a value.
impl Kernel {
    /// Seals `value` as `caller`'s secret `name` (the system's when `system`).
    pub fn secret_set(
        &self,
        caller: &Caller,
        system: bool,
        name: &str,
        value: &[u8],
    ) -> Result<(), avix_proto::Error> {
        let owner = SecretOwner::for_caller(caller, system)?;
        self.secrets().set(&owner, name, value).map_err(kinded)?;
        tracing::info!(%caller, name, system, "secret set");
        Ok(())
    }

    /// The names of `caller`'s secrets (the system's when `system`).
    pub fn secret_list(
        &self,
        caller: &Caller,
        system: bool,
    ) -> Result<Vec<SecretInfo>, avix_proto::Error> {
        Ok(self
            .secrets()
            .list(&SecretOwner::for_caller(caller, system)?))
    }

    /// Removes `caller`'s secret `name` (the system's when `system`); not found when unset.
    pub fn secret_delete(
        &self,
        caller: &Caller,
        system: bool,
        name: &str,
    ) -> Result<(), avix_proto::Error> {
        let owner = SecretOwner::for_caller(caller, system)?;
        if !self.secrets().delete(&owner, name).map_err(kinded)? {
            return Err(avix_proto::Error::not_found(format!(
                "secret {name} is not set"
            )));
        }
        tracing::info!(%caller, name, system, "secret deleted");
        Ok(())
    }
}

fn kinded(e: SecretStoreError) -> avix_proto::Error {
    avix_proto::Error::new(avix_proto::HasKind::kind(&e), e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use avix_auth::{MasterKey, Purpose};
    use std::os::unix::fs::PermissionsExt;

    fn store() -> (tempfile::TempDir, SecretStore) {
        let d = tempfile::tempdir().expect("tempdir");
        let key = MasterKey::generate().derive(Purpose::Secrets);
        let s = SecretStore::new(d.path().join("secrets"), &key);
        (d, s)
    }

    #[test]
    fn values_are_sealed_per_owner_and_name() {
        let (d, s) = store();
        let alice = SecretOwner::User(UserName::new("alice").expect("name"));
        s.set(&alice, "GITHUB_TOKEN", b"ghp_verysecret")
            .expect("set");
        s.set(&SecretOwner::System, "API", b"sys-value")
            .expect("set");
        assert_eq!(
            &*s.get(&alice, "GITHUB_TOKEN").expect("get"),
            b"ghp_verysecret"
        );
        let file = d.path().join("secrets/users/alice/GITHUB_TOKEN");
        let on_disk = std::fs::read_to_string(&file).expect("read");
        assert!(!on_disk.contains("verysecret"));
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Copied to another owner or name, it does not open.
        std::fs::copy(&file, d.path().join("secrets/system/GITHUB_TOKEN")).expect("copy");
        assert!(matches!(
            s.get(&SecretOwner::System, "GITHUB_TOKEN"),
            Err(SecretStoreError::Crypto { .. })
        ));
        let names: Vec<String> = s.list(&alice).into_iter().map(|i| i.name).collect();
        assert_eq!(names, ["GITHUB_TOKEN"]);
        assert!(s.delete(&alice, "GITHUB_TOKEN").expect("delete"));
        assert!(!s.delete(&alice, "GITHUB_TOKEN").expect("delete"));
        assert!(matches!(
            s.get(&alice, "GITHUB_TOKEN"),
            Err(SecretStoreError::NotFound(_))
        ));
        assert!(matches!(
            s.set(&alice, "../x", b"v"),
            Err(SecretStoreError::BadName(_))
        ));
    }

    #[test]
    fn environments_resolve_system_secrets_and_say_which_is_missing() {
        let (_d, s) = store();
        s.set(&SecretOwner::System, "TOKEN", b"t0k").expect("set");
        let env: BTreeMap<String, String> = [
            ("PLAIN".to_owned(), "x".to_owned()),
            ("T".to_owned(), "secret:TOKEN".to_owned()),
        ]
        .into();
        let r = s.resolve_env(&env).expect("resolve");
        assert_eq!(r[1].0, "T");
        assert_eq!(r[1].1.as_str(), "t0k");
        let env: BTreeMap<String, String> = [("T".to_owned(), "secret:NOPE".to_owned())].into();
        let e = s.resolve_env(&env).expect_err("missing").message;
        assert!(
            e.contains("environment T: system secret NOPE is not set"),
            "{e}"
        );
    }
}
