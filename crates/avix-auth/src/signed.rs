//! Signed tokens: `<prefix><base64url(claims JSON)>.<hex HMAC-SHA256>`, the MAC covering the
//! prefix and the claims JSON, checked in constant time before the claims are parsed. Capability tokens and ATP tokens are
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

    fn mac(&self, prefix: &str, claims: &[u8]) -> HmacSha256 {
        let mut m = self.0.clone();
        m.update(prefix.as_bytes());
        m.update(claims);
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

/// base64url digit values; 0xFF marks bytes that are not digits.
#[allow(clippy::cast_possible_truncation)] // indices below 64 fit a byte
const B64_DECODE: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let mut i = 0;
    while i < 64 {
        t[B64[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// Hex digit values; 0xFF marks bytes that are not hex digits.
#[allow(clippy::cast_possible_truncation)] // digit values below 16 fit a byte
const HEX_DECODE: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Decodes base64url without padding.
pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    b64_decode_into(s, &mut out).then_some(out)
}

/// Decodes base64url without padding, appending to `out`.
fn b64_decode_into(s: &str, out: &mut Vec<u8>) -> bool {
    let at = out.len();
    out.resize(at + s.len() / 4 * 3 + 2, 0);
    match b64_decode_to(s, &mut out[at..]) {
        Some(n) => {
            out.truncate(at + n);
            true
        }
        None => {
            out.truncate(at);
            false
        }
    }
}

/// Decodes base64url into `out` when it fits and is valid; returns the length.
#[allow(clippy::cast_possible_truncation)] // taking the bytes of a 24-bit group is the point
fn b64_decode_to(s: &str, out: &mut [u8]) -> Option<usize> {
    let b = s.as_bytes();
    if b.len() % 4 == 1 || b.len() / 4 * 3 + 2 > out.len() {
        return None;
    }
    let mut n_out = 0;
    let mut chunks = b.chunks_exact(4);
    for c in &mut chunks {
        let (v0, v1, v2, v3) = (
            B64_DECODE[c[0] as usize],
            B64_DECODE[c[1] as usize],
            B64_DECODE[c[2] as usize],
            B64_DECODE[c[3] as usize],
        );
        if (v0 | v1 | v2 | v3) & 0x80 != 0 {
            return None;
        }
        let n =
            (u32::from(v0) << 18) | (u32::from(v1) << 12) | (u32::from(v2) << 6) | u32::from(v3);
        out[n_out..n_out + 3].copy_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
        n_out += 3;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut n = 0u32;
        for (i, &c) in rest.iter().enumerate() {
            let v = B64_DECODE[c as usize];
            if v & 0x80 != 0 {
                return None;
            }
            n |= u32::from(v) << (18 - 6 * i);
        }
        out[n_out] = (n >> 16) as u8;
        n_out += 1;
        if rest.len() > 2 {
            out[n_out] = (n >> 8) as u8;
            n_out += 1;
        }
    }
    Some(n_out)
}

/// Decodes 64 lowercase or uppercase hex digits.
fn hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (i, o) in out.iter_mut().enumerate() {
        let (hi, lo) = (
            HEX_DECODE[b[2 * i] as usize],
            HEX_DECODE[b[2 * i + 1] as usize],
        );
        bad |= hi | lo;
        *o = (hi << 4) | (lo & 0x0F);
    }
    (bad & 0x80 == 0).then_some(out)
}

/// Signs `claims` under `key` with `prefix`.
pub fn seal<T: Serialize>(key: &TokenKey, prefix: &str, claims: &T) -> String {
    let json = serde_json::to_vec(claims).unwrap_or_default();
    let mac = key.mac(prefix, &json).finalize().into_bytes();
    format!("{prefix}{}.{}", b64_encode(&json), hex::encode(&mac))
}

/// Checks a token's signature (constant time) and returns its claims. Expiry is the
/// caller's to check (claims differ by kind).
pub fn open<T: DeserializeOwned>(
    key: &TokenKey,
    prefix: &str,
    token: &str,
) -> Result<T, TokenError> {
    open_with(key, prefix, token, |_| None)
}

/// [`open`] with a fast parser for the canonical claims `seal` writes; `None` from it falls
/// back to the JSON parser. The parser only ever sees claims whose MAC verified.
pub fn open_with<T: DeserializeOwned>(
    key: &TokenKey,
    prefix: &str,
    token: &str,
    fast: impl FnOnce(&[u8]) -> Option<T>,
) -> Result<T, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let rest = token.strip_prefix(prefix).ok_or(TokenError::Malformed)?;
    let (body, mac) = rest.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let tag = hex32(mac).ok_or(TokenError::Malformed)?;
    // Claims are small: decode them on the stack when they fit. The MAC covers the decoded
    // claims (fewer bytes to hash than their base64 text).
    let mut stack = [0u8; 256];
    let heap: Vec<u8>;
    let claims: &[u8] = match b64_decode_to(body, &mut stack) {
        Some(n) => &stack[..n],
        None => {
            let mut v = Vec::new();
            if !b64_decode_into(body, &mut v) {
                return Err(TokenError::Malformed);
            }
            heap = v;
            &heap
        }
    };
    key.mac(prefix, claims)
        .verify_slice(&tag)
        .map_err(|_| TokenError::BadSignature)?;
    if let Some(t) = fast(claims) {
        return Ok(t);
    }
    serde_json::from_slice(claims).map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::cast_possible_truncation)] // wrapping test bytes
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
