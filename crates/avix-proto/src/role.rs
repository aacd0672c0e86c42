//! The role ladder. Roles order: `guest < user < operator < admin`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What an identity may do in general; per-object rules live in the VFS access module and the
/// kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only access to what the user could read.
    Guest,
    /// Own agents and own workspace.
    User,
    /// Sees and controls every agent; installs services.
    Operator,
    /// Full control, including system configuration.
    Admin,
}

impl Role {
    /// The lowercase name used in files and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Guest => "guest",
            Role::User => "user",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown role name.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown role {0:?}: use guest, user, operator or admin")]
pub struct RoleParseError(String);

impl FromStr for Role {
    type Err = RoleParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "guest" => Ok(Role::Guest),
            "user" => Ok(Role::User),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            _ => Err(RoleParseError(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_is_ordered() {
        assert!(Role::Guest < Role::User && Role::User < Role::Operator);
        assert!(Role::Operator < Role::Admin);
        assert_eq!("operator".parse::<Role>().unwrap(), Role::Operator);
        assert!("root".parse::<Role>().is_err());
    }
}
