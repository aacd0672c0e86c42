//! API keys: `sk-avix-` followed by 43 base62 characters (256 bits of randomness), shown once
//! and stored only as HMAC-SHA256 under the [`Purpose::ApiKeyHash`](crate::Purpose) sub-key.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::hex;
use crate::master_key::SubKey;

/// Prefix of every generated key; lets secret scanners recognise a leaked key.
pub const PREFIX: &str = "sk-avix-";
/// Characters after the prefix: 43 × log2(62) ≈ 256 bits.
const BODY_LEN: usize = 43;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// An API key in clear. Exists only between generation (or login) and hashing.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// A key given by a person that is too short to be safe.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the API key is {len} characters; use at least {min} (or let init generate one)")]
pub struct ApiKeyTooShort {
    len: usize,
    min: usize,
}

impl ApiKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut body = String::with_capacity(PREFIX.len() + BODY_LEN);
        body.push_str(PREFIX);
        let mut buf = [0u8; 64];
        while body.len() < PREFIX.len() + BODY_LEN {
            rand::fill(&mut buf);
            // Rejection sampling keeps every character uniform: 248 = 4 × 62.
            for &b in buf.iter().filter(|&&b| b < 248) {
                if body.len() == PREFIX.len() + BODY_LEN {
                    break;
                }
                body.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
        buf.zeroize();
        Self(body)
    }

    /// Wraps a key a person chose, refusing short ones.
    pub fn given(key: String, min_len: usize) -> Result<Self, ApiKeyTooShort> {
        let len = key.chars().count();
        if len < min_len {
            let mut key = key;
            key.zeroize();
            return Err(ApiKeyTooShort { len, min: min_len });
        }
        Ok(Self(key))
    }

    /// The key text, to show once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The stored form: `hmac-sha256:<hex>`.
    pub fn hash(&self, key: &SubKey) -> String {
        format!("hmac-sha256:{}", hex::encode(&key.mac(self.0.as_bytes())))
    }
}

/// Checks a presented key against a stored hash, in constant time.
pub fn verify(presented: &str, stored: &str, key: &SubKey) -> bool {
    let Some(tag) = stored.strip_prefix("hmac-sha256:").and_then(hex::decode) else {
        return false;
    };
    key.verify(presented.as_bytes(), &tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MasterKey, Purpose};

    #[test]
    fn generated_keys_have_the_documented_shape_and_differ() {
        let a = ApiKey::generate();
        let b = ApiKey::generate();
        assert!(a.expose().starts_with(PREFIX));
        assert_eq!(a.expose().len(), PREFIX.len() + BODY_LEN);
        assert!(
            a.expose()[PREFIX.len()..]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric())
        );
        assert_ne!(a.expose(), b.expose());
        assert_eq!(format!("{a:?}"), "ApiKey(<redacted>)");
    }

    #[test]
    fn hash_verifies_only_the_right_key_under_the_right_master() {
        let m = MasterKey::generate();
        let sub = m.derive(Purpose::ApiKeyHash);
        let k = ApiKey::generate();
        let stored = k.hash(&sub);
        assert!(verify(k.expose(), &stored, &sub));
        assert!(!verify(ApiKey::generate().expose(), &stored, &sub));
        assert!(!verify(
            k.expose(),
            &stored,
            &MasterKey::generate().derive(Purpose::ApiKeyHash)
        ));
        assert!(!verify(k.expose(), "hmac-sha256:nothex", &sub));
    }

    #[test]
    fn short_given_keys_are_refused() {
        assert!(ApiKey::given("short".into(), 32).is_err());
        assert!(ApiKey::given("x".repeat(32), 32).is_ok());
    }
}
