//! Capability tokens: what a process presents when a call leaves the daemon (to an external
//! service), so the receiver can ask the kernel who is calling and with which tools. A token
//! is `avixcap1.<base64url(claims JSON)>.<hex HMAC-SHA256>` under the capability sub-key; the
//! MAC covers the whole claims document (pid, user, tools, issue and expiry times), so none of
//! it can be changed without the key.

use serde::{Deserialize, Serialize};

use crate::hex;
use crate::master_key::SubKey;

const PREFIX: &str = "avixcap1.";
/// Longest token accepted (a process with hundreds of tools stays well below).
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapClaims {
    /// The process.
    pub pid: u64,
    /// Its user.
    pub user: String,
    /// Its tools, sorted.
    pub tools: Vec<String>,
    /// Issue time (Unix seconds).
    pub issued_at: i64,
    /// Expiry (Unix seconds).
    pub expires_at: i64,
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token.
    #[error("malformed capability token")]
    Malformed,
    /// Signed with another key, or altered.
    #[error("capability token signature is invalid")]
    BadSignature,
    /// Past its expiry.
    #[error("capability token expired")]
    Expired,
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding.
pub fn b64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        let emit = chunk.len() + 1;
        for i in 0..emit {
            out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Decodes base64url without padding.
pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| B64.iter().position(|&x| x == c).map(|p| p as u32);
    let b = s.as_bytes();
    if b.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(b.len() * 3 / 4);
    for chunk in b.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    Some(out)
}

/// Mints a token.
pub fn mint(key: &SubKey, claims: &CapClaims) -> String {
    let body = b64_encode(&serde_json::to_vec(claims).unwrap_or_default());
    let mac = key.mac(format!("{PREFIX}{body}").as_bytes());
    format!("{PREFIX}{body}.{}", hex::encode(&mac))
}

/// Checks a token's signature (constant-time) and expiry at `now`.
pub fn verify(key: &SubKey, token: &str, now: i64) -> Result<CapClaims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let rest = token.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
    let (body, mac) = rest.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let tag = hex::decode(mac).ok_or(TokenError::Malformed)?;
    if !key.verify(format!("{PREFIX}{body}").as_bytes(), &tag) {
        return Err(TokenError::BadSignature);
    }
    let claims: CapClaims = serde_json::from_slice(&b64_decode(body).ok_or(TokenError::Malformed)?)
        .map_err(|_| TokenError::Malformed)?;
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
    fn base64url_round_trips() {
        for n in 0..20 {
            let data: Vec<u8> = (0..n).map(|i| (i * 37) as u8).collect();
            assert_eq!(b64_decode(&b64_encode(&data)).unwrap(), data);
        }
        assert_eq!(b64_encode(b"hi?"), "aGk_");
        assert!(b64_decode("a").is_none() && b64_decode("a$bc").is_none());
    }

    #[test]
    fn tokens_verify_and_refuse_tampering_other_keys_and_expiry() {
        let m = MasterKey::generate();
        let key = m.derive(Purpose::Capability);
        let claims = CapClaims {
            pid: 57,
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
                pid: 58,
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
