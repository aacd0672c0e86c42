//! Ids the daemon hands out, each its own type: a PID cannot be mixed up with a count or a
//! sequence number, nor a session id with an invocation id or an approval's. On the wire and
//! in files they are what they always were: a number, or a string.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A process (agent) id: a small integer, never reused within one installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Pid(u64);

impl Pid {
    /// The PID `n`.
    pub const fn new(n: u64) -> Self {
        Self(n)
    }

    /// Its number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<u64> for Pid {
    fn from(n: u64) -> Self {
        Self(n)
    }
}

impl From<Pid> for u64 {
    fn from(p: Pid) -> Self {
        p.0
    }
}

/// Tests and literals compare PIDs with plain numbers.
impl PartialEq<u64> for Pid {
    fn eq(&self, other: &u64) -> bool {
        self.0 == *other
    }
}

/// Why a string is not a PID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a process id: PIDs are whole numbers (see `avix client agent list`)")]
pub struct PidError(String);

impl FromStr for Pid {
    type Err = PidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Digits only: no sign, no spaces, no `+7`.
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PidError(s.chars().take(40).collect()));
        }
        s.parse::<u64>()
            .map(Self)
            .map_err(|_| PidError(s.chars().take(40).collect()))
    }
}

/// Declares a string id: serialized as the plain string, shown as it is, compared with
/// strings, and borrowed as `&str` wherever one is needed.
macro_rules! string_id {
    ($(#[doc = $doc:literal])* $name:ident) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &$name {
            fn eq(&self, other: &$name) -> bool {
                self.0 == other.0
            }
        }

        impl PartialEq<String> for &$name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<str> for &$name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

string_id! {
    /// A session: the conversation that invocations of one agent continue.
    SessionId
}

string_id! {
    /// One run of an agent (its journal's id).
    InvocationId
}

string_id! {
    /// One approval request (`/proc/<pid>/hil/<id>.yaml`).
    HilId
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_is_a_number_on_the_wire_and_in_text() {
        let p = Pid::new(101);
        assert_eq!(serde_json::to_string(&p).unwrap(), "101");
        assert_eq!(serde_json::from_str::<Pid>("101").unwrap(), p);
        assert_eq!(p.to_string(), "101");
        assert_eq!("101".parse::<Pid>().unwrap(), p);
        for bad in ["", "-1", "+1", " 1", "1a", "99999999999999999999999"] {
            assert!(bad.parse::<Pid>().is_err(), "{bad:?}");
        }
        assert_eq!(p, 101);
    }

    #[test]
    fn string_ids_are_plain_strings() {
        let s = SessionId::from("1f0e");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"1f0e\"");
        assert_eq!(s, "1f0e");
        assert_eq!(s.to_string(), "1f0e");
        assert_eq!(HilId::from("h1".to_owned()).as_str(), "h1");
        assert_eq!(String::from(InvocationId::from("i")), "i");
    }
}
