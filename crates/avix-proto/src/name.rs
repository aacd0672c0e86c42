//! Validated names. A name that reaches the kernel has already passed these checks, so paths
//! built from it (e.g. `/users/<u>`) can never smuggle a `/` or `..`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid {what} {value:?}: use 1 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit"
)]
pub struct NameError {
    what: &'static str,
    value: String,
}

/// Checks the shared name rule: `^[a-z0-9][a-z0-9-]{0,62}$`.
pub fn check_name(what: &'static str, value: &str) -> Result<(), NameError> {
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(NameError {
            what,
            value: value.to_owned(),
        })
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $ty(String);

        impl $ty {
            /// Validates and wraps `value`.
            pub fn new(value: impl Into<String>) -> Result<Self, NameError> {
                let value = value.into();
                check_name($what, &value)?;
                Ok(Self(value))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// An Avix user name, e.g. `alice`.
    UserName,
    "user name"
);
name_type!(
    /// A crew (group) name, e.g. `researchers`.
    CrewName,
    "crew name"
);
name_type!(
    /// An agent or service name, e.g. `researcher`.
    AgentName,
    "agent name"
);

/// Whether `name` is a valid secret name: 1-64 characters of A-Z, a-z, 0-9 and `_`, not
/// starting with a digit (an environment-variable-like word).
pub fn valid_secret_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for ok in ["alice", "a", "bob-2", "0day", &"x".repeat(63)] {
            assert!(UserName::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_names_that_could_escape_a_path() {
        for bad in [
            "",
            "Alice",
            "../x",
            "a/b",
            "-a",
            "a b",
            "a_b",
            &"x".repeat(64),
            "a\0",
        ] {
            let err = UserName::new(bad).unwrap_err();
            assert!(err.to_string().contains("invalid user name"), "{err}");
        }
    }

    #[test]
    fn deserialize_rejects_bad_name() {
        let r: Result<UserName, _> = serde_json::from_str("\"../etc\"");
        assert!(r.is_err());
    }
}
