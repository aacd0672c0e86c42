//! Tool names. Canonical names are `/`-separated segments (`fs/read`,
//! `kernel/proc/spawn`, `mcp/github/list-prs`); provider wire formats replace every `/` with
//! `__` (`fs__read`). The mapping is reversible because no name contains `__` and no segment
//! starts or ends with `_` (which could glue into a `__`).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest tool name (providers cap names at 64 characters; mangling keeps the length within
/// `2 × segments`, so 64 is checked on the mangled form).
pub const MAX_WIRE_NAME: usize = 64;

/// Why a string is not a tool name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tool name {name:?}: {why}")]
pub struct ToolNameError {
    name: String,
    why: &'static str,
}

/// A canonical tool name. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ToolName(Arc<str>);

fn check(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.contains("__") {
        return Err("contains \"__\"");
    }
    let mut wire = 0usize;
    for seg in name.split('/') {
        if seg.is_empty() {
            return Err("empty segment");
        }
        if seg.starts_with('_') || seg.ends_with('_') {
            return Err("a segment starts or ends with '_'");
        }
        if !seg
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err("segments use a-z, 0-9, '-' and '_'");
        }
        wire += seg.len() + 2;
    }
    if wire - 2 > MAX_WIRE_NAME {
        return Err("longer than 64 characters on the wire");
    }
    Ok(())
}

impl ToolName {
    /// Validates a canonical name.
    pub fn new(name: &str) -> Result<Self, ToolNameError> {
        check(name).map_err(|why| ToolNameError {
            name: name.to_owned(),
            why,
        })?;
        Ok(Self(Arc::from(name)))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first segment (`fs` for `fs/read`).
    pub fn namespace(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }

    /// The provider wire form: every `/` becomes `__`. No allocation: a valid name's wire
    /// form fits in [`MAX_WIRE_NAME`] bytes.
    pub fn mangle(&self) -> Mangled {
        let mut m = Mangled {
            buf: [0; MAX_WIRE_NAME],
            len: 0,
        };
        for &b in self.0.as_bytes() {
            if b == b'/' {
                m.buf[m.len] = b'_';
                m.buf[m.len + 1] = b'_';
                m.len += 2;
            } else {
                m.buf[m.len] = b;
                m.len += 1;
            }
        }
        m
    }

    /// Parses a provider wire name back (every `__` becomes `/`).
    pub fn unmangle(wire: &str) -> Result<Self, ToolNameError> {
        Self::new(&wire.replace("__", "/"))
    }
}

/// A tool name in wire form, held inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Mangled {
    buf: [u8; MAX_WIRE_NAME],
    len: usize,
}

impl Mangled {
    /// The wire name.
    pub fn as_str(&self) -> &str {
        // Built from the ASCII bytes of a validated name, with '/' replaced by "__".
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl std::ops::Deref for Mangled {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Mangled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Mangled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `fs/read` → `fs__read`, without validation (hot path: one allocation, one pass).
pub fn mangle(name: &str) -> String {
    let mut out = String::with_capacity(name.len() * 2);
    let mut rest = name;
    while let Some(i) = rest.find('/') {
        out.push_str(&rest[..i]);
        out.push_str("__");
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    out
}

impl fmt::Display for ToolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ToolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::borrow::Borrow<str> for ToolName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Serialize for ToolName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ToolName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// A tool pattern in a user's or crew's allow/deny list: a name, `ns/*` (everything below a
/// prefix) or `*` (everything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolPattern(String);

impl Serialize for ToolPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ToolPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

impl ToolPattern {
    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it names one tool (no wildcard).
    pub fn is_exact(&self) -> bool {
        self.0 != "*" && !self.0.ends_with("/*")
    }

    /// Parses a pattern.
    pub fn new(p: &str) -> Result<Self, ToolNameError> {
        if p == "*" {
            return Ok(Self(p.to_owned()));
        }
        let base = p.strip_suffix("/*").unwrap_or(p);
        ToolName::new(base)?;
        Ok(Self(p.to_owned()))
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        if self.0 == "*" {
            return true;
        }
        match self.0.strip_suffix("/*") {
            Some(prefix) => {
                name.len() > prefix.len()
                    && name.starts_with(prefix)
                    && name.as_bytes()[prefix.len()] == b'/'
            }
            None => self.0 == name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_round_trip_through_the_wire() {
        for n in [
            "fs/read",
            "kernel/proc/spawn",
            "mcp/github/list-prs",
            "llm/generate-image",
            "a_b/c",
        ] {
            let t = ToolName::new(n).unwrap();
            assert_eq!(ToolName::unmangle(&t.mangle()).unwrap(), t, "{n}");
            assert_eq!(&*t.mangle(), mangle(n));
        }
        assert_eq!(
            ToolName::new("fs/read").unwrap().mangle().as_str(),
            "fs__read"
        );
        let longest = format!("{}/{}", "a".repeat(31), "b".repeat(31));
        assert_eq!(ToolName::new(&longest).unwrap().mangle().len(), 64);
        assert_eq!(
            ToolName::new("kernel/proc/spawn").unwrap().namespace(),
            "kernel"
        );
    }

    #[test]
    fn names_that_would_not_round_trip_are_refused() {
        for bad in [
            "",
            "fs//read",
            "fs__read",
            "a_/b",
            "_a/b",
            "Fs/read",
            "fs.read",
            "/fs",
            "fs/",
            &"x".repeat(65),
        ] {
            assert!(ToolName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patterns() {
        let all = ToolPattern::new("*").unwrap();
        let fs = ToolPattern::new("fs/*").unwrap();
        let one = ToolPattern::new("fs/read").unwrap();
        assert!(all.matches("exec/shell"));
        assert!(fs.matches("fs/read") && !fs.matches("fsx/read") && !fs.matches("fs"));
        assert!(one.matches("fs/read") && !one.matches("fs/write"));
        assert!(ToolPattern::new("fs/**").is_err());
    }
}
