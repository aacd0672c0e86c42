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
use crate::signed::{TokenKey, open_with, seal};

const PREFIX: &str = "avixatp1.";

/// What an ATP token says.
///
/// On the wire the keys are one letter (`u r s i e`): tokens are opaque to clients, and
/// short claims keep the MAC to two SHA-256 blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AtpClaims {
    /// The user.
    #[serde(rename = "u")]
    pub sub: String,
    /// The role the user logged in with.
    #[serde(rename = "r")]
    pub role: Role,
    /// The login this token belongs to.
    #[serde(rename = "s")]
    pub sid: String,
    /// Issue time (Unix seconds).
    #[serde(rename = "i")]
    pub iat: i64,
    /// Expiry (Unix seconds).
    #[serde(rename = "e")]
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
        let claims: AtpClaims = open_with(&self.0, PREFIX, token, parse_canonical)?;
        if now >= claims.exp {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// Reads claims in exactly the form `mint` writes them (`{"u":…,"r":…,"s":…,"i":…,"e":…}`,
/// no escapes): a quarter of the cost of the JSON parser. Anything else is left to it.
fn parse_canonical(b: &[u8]) -> Option<AtpClaims> {
    let s = std::str::from_utf8(b).ok()?;
    if s.contains('\\') {
        return None;
    }
    let (u, s) = s.strip_prefix("{\"u\":\"")?.split_once('"')?;
    let (r, s) = s.strip_prefix(",\"r\":\"")?.split_once('"')?;
    let (sid, s) = s.strip_prefix(",\"s\":\"")?.split_once('"')?;
    let (i, s) = s.strip_prefix(",\"i\":")?.split_once(',')?;
    let e = s.strip_prefix("\"e\":")?.strip_suffix('}')?;
    Some(AtpClaims {
        sub: u.to_owned(),
        role: r.parse().ok()?,
        sid: sid.to_owned(),
        iat: i.parse().ok()?,
        exp: e.parse().ok()?,
    })
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
    fn the_fast_parser_reads_what_mint_writes_and_leaves_the_rest_to_json() {
        let json = serde_json::to_vec(&claims()).unwrap();
        assert_eq!(parse_canonical(&json), Some(claims()));
        let reordered = br#"{"r":"user","u":"alice","s":"s1","i":100,"e":200}"#;
        assert_eq!(parse_canonical(reordered), None);
        let parsed: AtpClaims = serde_json::from_slice(reordered).unwrap();
        assert_eq!(parsed, claims());
        assert_eq!(
            parse_canonical(br#"{"u":"a\"b","r":"user","s":"s","i":1,"e":2}"#),
            None
        );
        assert_eq!(
            parse_canonical(br#"{"u":"a","r":"root","s":"s","i":1,"e":2}"#),
            None
        );
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
