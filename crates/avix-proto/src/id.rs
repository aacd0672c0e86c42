//! Ids the daemon hands out. A process id is its own type, so a PID cannot be mixed up with a
//! count, a Unix pid or a sequence number; on the wire and in files it is a plain number.

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
}
