//! The configuration files under `/etc/avix` (on disk: `ROOT/etc`).
//!
//! Each file is a [`Document`] whose body type lives in its own module. [`EtcFile`]
//! names them and validates a candidate content before it may replace a file.

pub mod auth;
pub mod crews;
pub mod kernel;
pub mod llm;
pub mod mcp;
pub mod users;

use crate::envelope::{Document, DocumentError, Kind};
use crate::yaml;

/// A limit that is either a number or `unlimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Limit {
    /// At most this many.
    Limited(u64),
    /// No limit; written as the string `unlimited`.
    Unlimited(UnlimitedWord),
}

/// The word `unlimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnlimitedWord {
    /// `unlimited`
    Unlimited,
}

impl Limit {
    /// No limit.
    pub const UNLIMITED: Limit = Limit::Unlimited(UnlimitedWord::Unlimited);

    /// Whether `n` fits under the limit.
    pub fn allows(self, n: u64) -> bool {
        match self {
            Limit::Limited(max) => n <= max,
            Limit::Unlimited(_) => true,
        }
    }
}

/// The files Avix knows under `/etc/avix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtcFile {
    /// `users.yaml`
    Users,
    /// `crews.yaml`
    Crews,
    /// `kernel.yaml`
    Kernel,
    /// `llm.yaml`
    Llm,
    /// `mcp.yaml`
    Mcp,
    /// `auth.conf`
    Auth,
}

impl EtcFile {
    /// Every known file.
    pub const ALL: [EtcFile; 6] = [
        EtcFile::Users,
        EtcFile::Crews,
        EtcFile::Kernel,
        EtcFile::Llm,
        EtcFile::Mcp,
        EtcFile::Auth,
    ];

    /// The file name in `/etc/avix`.
    pub fn file_name(self) -> &'static str {
        match self {
            EtcFile::Users => "users.yaml",
            EtcFile::Crews => "crews.yaml",
            EtcFile::Kernel => "kernel.yaml",
            EtcFile::Llm => "llm.yaml",
            EtcFile::Mcp => "mcp.yaml",
            EtcFile::Auth => "auth.conf",
        }
    }

    /// The known file with this name, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.file_name() == name)
    }

    /// Whether the daemon cannot run without this file (it may not be deleted or renamed away).
    pub fn required(self) -> bool {
        !matches!(self, EtcFile::Llm | EtcFile::Mcp)
    }

    /// Checks that `bytes` is a valid document for this file.
    pub fn validate(self, bytes: &[u8]) -> Result<(), DocumentError> {
        fn check<S: Kind>(bytes: &[u8]) -> Result<(), DocumentError> {
            Document::<S>::parse(bytes).map(drop)
        }
        match self {
            EtcFile::Users => check::<users::Users>(bytes),
            EtcFile::Crews => check::<crews::Crews>(bytes),
            EtcFile::Kernel => check::<kernel::KernelConfig>(bytes),
            EtcFile::Llm => check::<llm::LlmConfig>(bytes),
            EtcFile::Mcp => check::<mcp::McpConfig>(bytes),
            EtcFile::Auth => check::<auth::AuthConfig>(bytes),
        }
    }
}

/// Validates a candidate content for the file `name` in `/etc/avix`: known files must be valid
/// documents of their kind, other `*.yaml` files must at least be YAML; anything else is free.
pub fn validate_etc_file(name: &str, bytes: &[u8]) -> Result<(), DocumentError> {
    if let Some(file) = EtcFile::from_name(name) {
        return file.validate(bytes);
    }
    if name.ends_with(".yaml") || name.ends_with(".yml") {
        yaml::from_slice::<serde_json::Value>(bytes)?;
    }
    Ok(())
}

/// Pushes a problem for every value that appears twice.
pub(crate) fn duplicates<'a, T: PartialEq + std::fmt::Display + 'a>(
    what: &str,
    values: impl IntoIterator<Item = &'a T>,
    problems: &mut Vec<String>,
) {
    let mut seen: Vec<&T> = Vec::new();
    for v in values {
        if seen.contains(&v) {
            problems.push(format!("{what} {v} appears more than once"));
        } else {
            seen.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_parses_numbers_and_unlimited() {
        let l: Limit = crate::yaml::from_str("5").unwrap();
        assert_eq!(l, Limit::Limited(5));
        let l: Limit = crate::yaml::from_str("unlimited").unwrap();
        assert_eq!(l, Limit::UNLIMITED);
        assert!(crate::yaml::from_str::<Limit>("lots").is_err());
        assert!(Limit::Limited(2).allows(2) && !Limit::Limited(2).allows(3));
    }

    #[test]
    fn unknown_yaml_files_must_still_be_yaml() {
        assert!(validate_etc_file("notes.yaml", b"a: [").is_err());
        assert!(validate_etc_file("notes.yaml", b"a: 1").is_ok());
        assert!(validate_etc_file("README", b"a: [").is_ok());
    }
}
