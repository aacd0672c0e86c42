//! Sealing secrets at rest: AES-256-GCM under the [`Purpose::Secrets`](crate::Purpose)
//! sub-key, a random 96-bit nonce per write, and associated data binding the owner and the
//! secret's name, so a blob copied to another owner or name no longer opens.
//!
//! Stored form: lowercase hex of `nonce || ciphertext || tag`.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use zeroize::Zeroizing;

use crate::hex;
use crate::master_key::SubKey;

/// Largest secret value, so a corrupt or hostile blob cannot cost unbounded memory.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why a secret cannot be sealed or opened. Messages never include the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Over [`MAX_SECRET_BYTES`].
    #[error("secret is over the {MAX_SECRET_BYTES}-byte limit")]
    TooLarge,
    /// Not hex, or too short to hold a nonce and tag.
    #[error("stored secret is malformed")]
    Malformed,
    /// Wrong key, wrong owner or name, or tampered data.
    #[error("stored secret does not open: wrong master key, or it was moved or altered")]
    Decrypt,
}

/// Seals and opens secrets.
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox(<redacted>)")
    }
}

fn aad(owner: &str, name: &str) -> Vec<u8> {
    format!("avix-secret/v1\0{owner}\0{name}").into_bytes()
}

impl SecretBox {
    /// A box keyed with the secrets sub-key.
    pub fn new(key: &SubKey) -> Self {
        let key = Key::<Aes256Gcm>::from(*key.bytes());
        Self {
            cipher: Aes256Gcm::new(&key),
        }
    }

    /// Seals `value` for `owner` (e.g. `user:alice`) under `name`.
    pub fn seal(&self, owner: &str, name: &str, value: &[u8]) -> Result<String, SecretError> {
        if value.len() > MAX_SECRET_BYTES {
            return Err(SecretError::TooLarge);
        }
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let aad = aad(owner, name);
        let ct = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: value,
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::TooLarge)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(hex::encode(&out))
    }

    /// Opens a sealed value; fails unless owner and name match what it was sealed for.
    pub fn open(
        &self,
        owner: &str,
        name: &str,
        stored: &str,
    ) -> Result<Zeroizing<Vec<u8>>, SecretError> {
        if stored.len() > 2 * (MAX_SECRET_BYTES + NONCE_LEN + TAG_LEN) {
            return Err(SecretError::TooLarge);
        }
        let raw = hex::decode(stored.trim()).ok_or(SecretError::Malformed)?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretError::Malformed);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SecretError::Malformed)?;
        let aad = aad(owner, name);
        self.cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| SecretError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MasterKey, Purpose};

    fn sbox() -> (MasterKey, SecretBox) {
        let m = MasterKey::generate();
        let b = SecretBox::new(&m.derive(Purpose::Secrets));
        (m, b)
    }

    #[test]
    fn round_trip_with_fresh_nonces() {
        let (_, b) = sbox();
        let a1 = b.seal("user:alice", "gh-token", b"ghp_123").unwrap();
        let a2 = b.seal("user:alice", "gh-token", b"ghp_123").unwrap();
        assert_ne!(a1, a2, "nonces must differ");
        assert_eq!(
            &**b.open("user:alice", "gh-token", &a1).unwrap(),
            b"ghp_123"
        );
    }

    #[test]
    fn binding_to_owner_name_and_key() {
        let (_, b) = sbox();
        let s = b.seal("user:alice", "gh-token", b"v").unwrap();
        assert_eq!(
            b.open("user:bob", "gh-token", &s).unwrap_err(),
            SecretError::Decrypt
        );
        assert_eq!(
            b.open("user:alice", "other", &s).unwrap_err(),
            SecretError::Decrypt
        );
        let (_, other) = sbox();
        assert_eq!(
            other.open("user:alice", "gh-token", &s).unwrap_err(),
            SecretError::Decrypt
        );
        let mut tampered = s.clone();
        tampered.replace_range(30..32, if &s[30..32] == "00" { "01" } else { "00" });
        assert_eq!(
            b.open("user:alice", "gh-token", &tampered).unwrap_err(),
            SecretError::Decrypt
        );
        assert_eq!(
            b.open("user:alice", "gh-token", "abcd").unwrap_err(),
            SecretError::Malformed
        );
        assert!(b.seal("o", "n", &vec![0; MAX_SECRET_BYTES + 1]).is_err());
    }
}
