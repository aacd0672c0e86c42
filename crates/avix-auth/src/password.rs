//! Password hashes: argon2id with m = 65536 KiB, t = 3, p = 4, stored as a PHC string.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl PasswordParams {
    /// What Avix stores: m = 64 MiB, t = 3, p = 4.
    pub const PRODUCTION: Self = Self {
        m_kib: 65_536,
        t: 3,
        p: 4,
    };
}

/// Hashing failed (only with impossible parameters).
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot hash the password: {0}")]
pub struct PasswordError(String);

fn hasher(params: PasswordParams) -> Result<Argon2<'static>, PasswordError> {
    let p = Params::new(params.m_kib, params.t, params.p, None)
        .map_err(|e| PasswordError(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, p))
}

/// Hashes with the production parameters and a random salt.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    hash_with(password, PasswordParams::PRODUCTION)
}

/// Hashes with the given parameters (tests use cheaper ones).
pub fn hash_with(password: &str, params: PasswordParams) -> Result<String, PasswordError> {
    hasher(params)?
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| PasswordError(e.to_string()))
}

/// Checks `password` against a stored PHC string. The parameters come from the string; the
/// comparison inside argon2 is constant-time.
pub fn verify(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: PasswordParams = PasswordParams {
        m_kib: 64,
        t: 1,
        p: 1,
    };

    #[test]
    fn verifies_the_right_password_only() {
        let h = hash_with("correct horse battery", CHEAP).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterx", &h));
        assert!(!verify("x", "not a hash"));
    }

    #[test]
    fn production_parameters_are_the_documented_ones() {
        let h = hash("a long enough password").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=65536,t=3,p=4$"), "{h}");
        assert!(verify("a long enough password", &h));
    }
}
