//! Signed tokens: `<prefix><base64url(claims JSON)>.<hex HMAC-SHA256>`, the MAC covering the
//! prefix and the claims, checked in constant time. Capability tokens and ATP tokens are
//! both of this form, with their own prefix and key.

use hmac::Mac;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::hex;
use crate::master_key::{HmacSha256, SubKey};

/// Longest token accepted.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of this kind.
    #[error("malformed token")]
    Malformed,
    /// Signed with another key, or altered.
    #[error("token signature is invalid")]
    BadSignature,
    /// Past its expiry.
    #[error("token expired")]
    Expired,
}

/// A signing key with its HMAC state precomputed: each token costs two hash blocks
/// fewer than keying from scratch.
#[derive(Clone)]
pub struct TokenKey(HmacSha256);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    /// A key for tokens signed under `key`.
    pub fn new(key: &SubKey) -> Self {
        Self(key.hmac())
    }

    fn mac(&self, prefix: &str, body: &str) -> HmacSha256 {
        let mut m = self.0.clone();
        m.update(prefix.as_bytes());
        m.update(body.as_bytes());
        m
    }
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

fn b64_value(c: u8) -> Option<u32> {
    Some(u32::from(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    }))
}

/// Decodes base64url without padding.
pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    b64_decode_into(s, &mut out).then_some(out)
}

/// Decodes base64url without padding, appending to `out`.
fn b64_decode_into(s: &str, out: &mut Vec<u8>) -> bool {
    let b = s.as_bytes();
    if b.len() % 4 == 1 {
        return false;
    }
    let val = |c: u8| b64_value(c);
    for chunk in b.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let Some(v) = val(c) else {
                return false;
            };
            n |= v << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    true
}

/// Decodes 64 lowercase or uppercase hex digits.
fn hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nib(b[2 * i])? << 4) | nib(b[2 * i + 1])?;
    }
    Some(out)
}

/// Signs `claims` under `key` with `prefix`.
pub fn seal<T: Serialize>(key: &TokenKey, prefix: &str, claims: &T) -> String {
    let body = b64_encode(&serde_json::to_vec(claims).unwrap_or_default());
    let mac = key.mac(prefix, &body).finalize().into_bytes();
    format!("{prefix}{body}.{}", hex::encode(&mac))
}

/// Checks a token's signature (constant time) and returns its claims. Expiry is the
/// caller's to check (claims differ by kind).
pub fn open<T: DeserializeOwned>(
    key: &TokenKey,
    prefix: &str,
    token: &str,
) -> Result<T, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let rest = token.strip_prefix(prefix).ok_or(TokenError::Malformed)?;
    let (body, mac) = rest.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let tag = hex32(mac).ok_or(TokenError::Malformed)?;
    key.mac(prefix, body)
        .verify_slice(&tag)
        .map_err(|_| TokenError::BadSignature)?;
    let mut json = Vec::with_capacity(body.len() * 3 / 4 + 3);
    if !b64_decode_into(body, &mut json) {
        return Err(TokenError::Malformed);
    }
    serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_prefix_is_covered_by_the_mac() {
        let k = TokenKey::new(&SubKey::from_bytes([7; 32]));
        let t = seal(&k, "a1.", &serde_json::json!({"x": 1}));
        let swapped = t.replacen("a1.", "b1.", 1);
        assert_eq!(
            open::<serde_json::Value>(&k, "b1.", &swapped).unwrap_err(),
            TokenError::BadSignature
        );
        assert_eq!(open::<serde_json::Value>(&k, "a1.", &t).unwrap()["x"], 1);
    }
}
