//! ATP tokens: what a client gets at login and presents on the WebSocket and with every
//! command. `avixatp1.<base64url(claims)>.<hex HMAC-SHA256>`; the claims name the user, the
//! role they logged in with, the login (what logout revokes) and the validity window.
//!
//! The gateway signs them with a key derived from the ATP sub-key and a random value drawn at
//! each start, so a restart invalidates every token (and with them every revocation list);
//! clients log in again with their credential.

use avix_proto::Role;
use serde::{Deserialize, Serialize};

use crate::master_key::SubKey;
pub use crate::signed::TokenError;
use crate::signed::{TokenKey, open, seal};

const PREFIX: &str = "avixatp1.";

/// What an ATP token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AtpClaims {
    /// The user.
    pub sub: String,
    /// The role the user logged in with.
    pub role: Role,
    /// The login this token belongs to.
    pub sid: String,
    /// Issue time (Unix seconds).
    pub iat: i64,
    /// Expiry (Unix seconds).
    pub exp: i64,
}

/// Signs and checks ATP tokens.
#[derive(Debug, Clone)]
pub struct AtpSigner(TokenKey);

impl AtpSigner {
    /// A signer for this run of the daemon: the ATP sub-key mixed with `boot_nonce`.
    pub fn new(atp_key: &SubKey, boot_nonce: &[u8]) -> Self {
        let key = SubKey::from_bytes(atp_key.mac(boot_nonce));
        Self(TokenKey::new(&key))
    }

    /// Mints a token.
    pub fn mint(&self, claims: &AtpClaims) -> String {
        seal(&self.0, PREFIX, claims)
    }

    /// Checks a token's signature (constant time) and expiry at `now`.
    pub fn verify(&self, token: &str, now: i64) -> Result<AtpClaims, TokenError> {
        let claims: AtpClaims = open(&self.0, PREFIX, token)?;
        if now >= claims.exp {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> AtpClaims {
        AtpClaims {
            sub: "alice".into(),
            role: Role::User,
            sid: "s1".into(),
            iat: 100,
            exp: 200,
        }
    }

    #[test]
    fn tokens_verify_and_die_with_the_boot_nonce() {
        let k = SubKey::from_bytes([3; 32]);
        let s = AtpSigner::new(&k, b"boot-1");
        let t = s.mint(&claims());
        assert!(t.starts_with("avixatp1."));
        assert_eq!(s.verify(&t, 150).unwrap(), claims());
        assert_eq!(s.verify(&t, 200).unwrap_err(), TokenError::Expired);
        let after_restart = AtpSigner::new(&k, b"boot-2");
        assert_eq!(
            after_restart.verify(&t, 150).unwrap_err(),
            TokenError::BadSignature
        );
        // A capability token is not an ATP token.
        assert_eq!(
            s.verify("avixcap1.e30.00", 150).unwrap_err(),
            TokenError::Malformed
        );
        let admin = s.mint(&AtpClaims {
            role: Role::Admin,
            ..claims()
        });
        let (_, mac) = t.rsplit_once('.').unwrap();
        let (body, _) = admin.rsplit_once('.').unwrap();
        assert_eq!(
            s.verify(&format!("{body}.{mac}"), 150).unwrap_err(),
            TokenError::BadSignature
        );
    }
}
