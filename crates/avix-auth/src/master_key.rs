//! The master key and the sub-keys derived from it with HKDF-SHA256.
//!
//! The master key never signs or encrypts anything itself: each use has its own sub-key
//! ([`Purpose`]), so a leak of one derived key does not expose the others.

use std::fmt;
use std::path::Path;

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::hex;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Length of the master key and of every sub-key, in bytes.
pub const KEY_LEN: usize = 32;

/// HKDF salt: fixed, versioned, so a future key schedule can change it.
const HKDF_SALT: &[u8] = b"avix/v1/hkdf-salt";

/// The message the key check MACs.
const KEY_CHECK_MESSAGE: &[u8] = b"avix master key check v1";

/// What a sub-key is for. Each purpose yields an independent key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// MAC of ATP tokens.
    AtpToken,
    /// MAC of capability tokens.
    Capability,
    /// Keyed hash of stored API keys.
    ApiKeyHash,
    /// Encryption of secrets.
    Secrets,
    /// The check value in auth.conf that detects a wrong master key.
    KeyCheck,
}

impl Purpose {
    fn info(self) -> &'static [u8] {
        match self {
            Purpose::AtpToken => b"avix/v1/atp-token-mac",
            Purpose::Capability => b"avix/v1/capability-mac",
            Purpose::ApiKeyHash => b"avix/v1/api-key-hash",
            Purpose::Secrets => b"avix/v1/secrets-aes-256-gcm",
            Purpose::KeyCheck => b"avix/v1/master-key-check",
        }
    }
}

/// Why a master key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    /// The environment variable is not set.
    #[error(
        "the master key is not set: export {var} with the 64-hex-digit key printed by `avix server config init`"
    )]
    MissingEnv {
        /// The variable name.
        var: String,
    },
    /// The key file is missing or unreadable.
    #[error("cannot read the master key file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key file is readable by others.
    #[error(
        "the master key file {path} is readable by group or others (mode {mode:o}): run chmod 600 {path}"
    )]
    FileMode {
        /// The file.
        path: String,
        /// Its mode.
        mode: u32,
    },
    /// Not 64 hex digits.
    #[error("the master key from {from} is malformed: it must be exactly 64 hex digits (32 bytes)")]
    Malformed {
        /// Where it came from (never the value).
        from: String,
    },
    /// Loaded, but not the key this installation was initialised with.
    #[error(
        "the master key from {from} is not the key this root was initialised with: use the key printed by `avix server config init` for this root"
    )]
    Wrong {
        /// Where it came from.
        from: String,
    },
}

/// The 32-byte master key. Zeroed on drop; `Debug` never shows it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; KEY_LEN]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = [0u8; KEY_LEN];
        rand::fill(&mut k);
        Self(k)
    }

    /// Parses 64 hex digits (surrounding white space allowed). `from` names the source in errors.
    pub fn from_hex(text: &str, from: &str) -> Result<Self, MasterKeyError> {
        let malformed = || MasterKeyError::Malformed {
            from: from.to_owned(),
        };
        let mut bytes = hex::decode(text.trim()).ok_or_else(malformed)?;
        if bytes.len() != KEY_LEN {
            bytes.zeroize();
            return Err(malformed());
        }
        let mut k = [0u8; KEY_LEN];
        k.copy_from_slice(&bytes);
        bytes.zeroize();
        Ok(Self(k))
    }

    /// Reads the key from the environment variable `var`.
    pub fn from_env(var: &str) -> Result<Self, MasterKeyError> {
        let mut value = std::env::var(var).map_err(|_| MasterKeyError::MissingEnv {
            var: var.to_owned(),
        })?;
        let key = Self::from_hex(&value, &format!("${var}"));
        value.zeroize();
        key
    }

    /// Reads the key from a file that only its owner may read.
    pub fn from_file(path: &Path) -> Result<Self, MasterKeyError> {
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| MasterKeyError::File {
            path: shown.clone(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(MasterKeyError::FileMode { path: shown, mode });
        }
        let mut text = std::fs::read_to_string(path).map_err(|source| MasterKeyError::File {
            path: shown.clone(),
            source,
        })?;
        let key = Self::from_hex(&text, &shown);
        text.zeroize();
        key
    }

    /// The key as hex, for showing once at init or writing the key file.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    /// Derives the sub-key for `purpose`.
    pub fn derive(&self, purpose: Purpose) -> SubKey {
        let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), &self.0);
        let mut okm = [0u8; KEY_LEN];
        // 32 bytes is far below HKDF-SHA256's 8160-byte output limit.
        hk.expand(purpose.info(), &mut okm)
            .expect("32-byte HKDF output is always valid");
        SubKey(okm)
    }

    /// The check value stored in auth.conf (`hmac-sha256:<hex>`).
    pub fn check_value(&self) -> String {
        format!(
            "hmac-sha256:{}",
            hex::encode(&self.derive(Purpose::KeyCheck).mac(KEY_CHECK_MESSAGE))
        )
    }

    /// Whether `stored` is this key's check value (constant-time).
    pub fn matches_check_value(&self, stored: &str) -> bool {
        let Some(tag) = stored.strip_prefix("hmac-sha256:").and_then(hex::decode) else {
            return false;
        };
        self.derive(Purpose::KeyCheck)
            .verify(KEY_CHECK_MESSAGE, &tag)
    }
}

/// A derived key. Zeroed on drop; `Debug` never shows it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SubKey([u8; KEY_LEN]);

impl fmt::Debug for SubKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubKey(<redacted>)")
    }
}

impl SubKey {
    /// A sub-key from raw bytes (tests and benchmarks).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// HMAC-SHA256 of `msg`.
    pub fn mac(&self, msg: &[u8]) -> [u8; 32] {
        let mut m = self.hmac();
        m.update(msg);
        m.finalize().into_bytes().into()
    }

    /// Constant-time check that `tag` is the HMAC-SHA256 of `msg`.
    pub fn verify(&self, msg: &[u8], tag: &[u8]) -> bool {
        let mut m = self.hmac();
        m.update(msg);
        m.verify_slice(tag).is_ok()
    }

    /// A keyed HMAC instance, for MACs over several parts.
    pub fn hmac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length.
        <HmacSha256 as KeyInit>::new_from_slice(&self.0).expect("HMAC accepts any key length")
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_keys_differ_by_purpose_and_are_stable() {
        let k = MasterKey::from_hex(&"11".repeat(32), "test").unwrap();
        let a = k.derive(Purpose::AtpToken);
        let b = k.derive(Purpose::Capability);
        assert_ne!(a.bytes(), b.bytes());
        assert_eq!(a.bytes(), k.derive(Purpose::AtpToken).bytes());
    }

    #[test]
    fn check_value_detects_the_wrong_key() {
        let k = MasterKey::generate();
        let stored = k.check_value();
        assert!(k.matches_check_value(&stored));
        assert!(!MasterKey::generate().matches_check_value(&stored));
        assert!(!k.matches_check_value("hmac-sha256:zz"));
        assert!(!k.matches_check_value("garbage"));
    }

    #[test]
    fn debug_never_shows_key_material() {
        let k = MasterKey::from_hex(&"ab".repeat(32), "test").unwrap();
        assert_eq!(format!("{k:?}"), "MasterKey(<redacted>)");
        assert!(!format!("{:?}", k.derive(Purpose::Secrets)).contains("ab"));
    }

    #[test]
    fn malformed_keys_are_refused_without_echoing_them() {
        for bad in ["", "xyz", &"ab".repeat(31), &"ab".repeat(33)] {
            let e = MasterKey::from_hex(bad, "$AVIX_MASTER_KEY")
                .unwrap_err()
                .to_string();
            assert!(e.contains("64 hex digits"), "{e}");
            assert!(bad.is_empty() || !e.contains(bad), "{e}");
        }
        assert!(MasterKey::from_hex(&format!("  {}\n", "AB".repeat(32)), "f").is_ok());
    }

    #[test]
    fn key_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("master.key");
        std::fs::write(&p, "cd".repeat(32)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            MasterKey::from_file(&p),
            Err(MasterKeyError::FileMode { .. })
        ));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(MasterKey::from_file(&p).unwrap().to_hex(), "cd".repeat(32));
    }
}
