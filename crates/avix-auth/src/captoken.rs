//! Capability tokens: what a process presents when a call leaves the daemon (to an external
//! service), so the receiver can ask the kernel who is calling and with which tools. A token
//! is `avixcap1.<base64url(claims JSON)>.<hex HMAC-SHA256>` under the capability sub-key; the
//! MAC covers the whole claims document (pid, user, tools, issue and expiry times), so none of
//! it can be changed without the key.

use serde::{Deserialize, Serialize};

use crate::master_key::SubKey;
pub use crate::signed::{MAX_TOKEN_LEN, TokenError};
use crate::signed::{TokenKey, open, seal};

const PREFIX: &str = "avixcap1.";

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapClaims {
    /// The process.
    pub pid: avix_proto::Pid,
    /// Its user.
    pub user: String,
    /// Its tools, sorted.
    pub tools: Vec<String>,
    /// Issue time (Unix seconds).
    pub issued_at: i64,
    /// Expiry (Unix seconds).
    pub expires_at: i64,
}

/// Mints a token.
pub fn mint(key: &SubKey, claims: &CapClaims) -> String {
    seal(&TokenKey::new(key), PREFIX, claims)
}

/// Checks a token's signature (constant-time) and expiry at `now`.
pub fn verify(key: &SubKey, token: &str, now: i64) -> Result<CapClaims, TokenError> {
    let claims: CapClaims = open(&TokenKey::new(key), PREFIX, token)?;
    if now >= claims.expires_at {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MasterKey, Purpose};

    #[test]
    fn tokens_verify_and_refuse_tampering_other_keys_and_expiry() {
        let m = MasterKey::generate();
        let key = m.derive(Purpose::Capability);
        let claims = CapClaims {
            pid: avix_proto::Pid::new(57),
            user: "alice".into(),
            tools: vec!["fs/read".into()],
            issued_at: 100,
            expires_at: 200,
        };
        let t = mint(&key, &claims);
        assert_eq!(verify(&key, &t, 150).unwrap(), claims);
        assert_eq!(verify(&key, &t, 200).unwrap_err(), TokenError::Expired);
        assert_eq!(
            verify(&MasterKey::generate().derive(Purpose::Capability), &t, 150).unwrap_err(),
            TokenError::BadSignature
        );
        let forged = mint(
            &key,
            &CapClaims {
                pid: avix_proto::Pid::new(58),
                ..claims.clone()
            },
        );
        let (_, mac) = t.rsplit_once('.').unwrap();
        let (body, _) = forged.rsplit_once('.').unwrap();
        assert_eq!(
            verify(&key, &format!("{body}.{mac}"), 150).unwrap_err(),
            TokenError::BadSignature
        );
        assert_eq!(
            verify(&key, "garbage", 150).unwrap_err(),
            TokenError::Malformed
        );
    }
}
