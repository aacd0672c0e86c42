//! The one error kind every door reports.
//!
//! The kernel says *what kind* of refusal or failure happened; each door maps the kind once,
//! here: an errno at the mount (in avix-vfs, which knows errno), an [`ErrorCode`] over ATP, a
//! JSON-RPC code over IPC, an exit status in the CLI. A message travels with the kind and is
//! shown as written; no door looks inside it.

use crate::atp::ErrorCode;
use crate::rpc::code;

/// What kind of failure, whichever door it leaves by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No such thing, or one the caller may not see (the two are never told apart, so
    /// nobody learns what another user has).
    NotFound,
    /// The caller's role or ownership does not allow it.
    Denied,
    /// Nobody may do this here, whatever their rights (a read-only file, an agent asking for
    /// what only people may do).
    NotPermitted,
    /// The request is malformed or names something invalid.
    Invalid,
    /// The state does not allow it now (already exited, already answered, still running,
    /// a name taken).
    Conflict,
    /// A limit or budget is used up.
    Limit,
    /// Not available now (shutting down, a service down or missing).
    Unavailable,
    /// It did not finish in time.
    Timeout,
    /// The storage is full: nothing was changed.
    NoSpace,
    /// Over a size limit (a file, a frame).
    TooLarge,
    /// Not supported here (an unknown operation, a file operation a tree does not have).
    Unsupported,
    /// Something the caller cannot fix failed.
    Internal,
}

impl ErrorKind {
    /// The ATP code (the codes a client knows; a timeout is "unavailable" there).
    pub fn atp(self) -> ErrorCode {
        match self {
            ErrorKind::NotFound => ErrorCode::ENOTFOUND,
            ErrorKind::Denied | ErrorKind::NotPermitted => ErrorCode::EPERM,
            ErrorKind::Invalid => ErrorCode::EINVAL,
            ErrorKind::Conflict => ErrorCode::ECONFLICT,
            ErrorKind::Limit => ErrorCode::ELIMIT,
            ErrorKind::Unavailable | ErrorKind::Timeout => ErrorCode::EUNAVAIL,
            ErrorKind::NoSpace => ErrorCode::ENOSPC,
            ErrorKind::TooLarge => ErrorCode::ETOOBIG,
            ErrorKind::Unsupported => ErrorCode::ENOSYS,
            ErrorKind::Internal => ErrorCode::EINTERNAL,
        }
    }

    /// The kind of an ATP code (what a client makes of a reply).
    pub fn from_atp(c: ErrorCode) -> ErrorKind {
        match c {
            ErrorCode::ENOTFOUND => ErrorKind::NotFound,
            ErrorCode::EPERM | ErrorCode::EAUTH | ErrorCode::EEXPIRED | ErrorCode::ESESSION => {
                ErrorKind::Denied
            }
            ErrorCode::EINVAL | ErrorCode::EPARSE => ErrorKind::Invalid,
            ErrorCode::ENOSYS => ErrorKind::Unsupported,
            ErrorCode::ETOOBIG => ErrorKind::TooLarge,
            ErrorCode::ECONFLICT => ErrorKind::Conflict,
            ErrorCode::ELIMIT => ErrorKind::Limit,
            ErrorCode::EUNAVAIL => ErrorKind::Unavailable,
            ErrorCode::ENOSPC => ErrorKind::NoSpace,
            ErrorCode::EINTERNAL => ErrorKind::Internal,
        }
    }

    /// The JSON-RPC code of the internal IPC.
    pub fn rpc(self) -> i32 {
        match self {
            ErrorKind::NotFound => code::ENOTFOUND,
            ErrorKind::Denied | ErrorKind::NotPermitted => code::EPERM,
            ErrorKind::Invalid => code::INVALID_PARAMS,
            ErrorKind::Conflict => code::ECONFLICT,
            ErrorKind::Limit | ErrorKind::NoSpace => code::ELIMIT,
            ErrorKind::TooLarge => code::ETOOBIG,
            ErrorKind::Unsupported => code::METHOD_NOT_FOUND,
            ErrorKind::Unavailable => code::EUNAVAIL,
            ErrorKind::Timeout => code::ETIMEOUT,
            ErrorKind::Internal => code::INTERNAL,
        }
    }

    /// The exit status of a CLI command that failed this way (documented in docs/cli.md):
    /// 1 anything else, 2 usage (clap's own), 3 not found, 4 denied, 5 invalid or
    /// unsupported, 6 conflict, 7 a limit, full storage or too large, 8 unavailable or timed
    /// out.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Internal => 1,
            ErrorKind::NotFound => 3,
            ErrorKind::Denied | ErrorKind::NotPermitted => 4,
            ErrorKind::Invalid | ErrorKind::Unsupported => 5,
            ErrorKind::Conflict => 6,
            ErrorKind::Limit | ErrorKind::NoSpace | ErrorKind::TooLarge => 7,
            ErrorKind::Unavailable | ErrorKind::Timeout => 8,
        }
    }

    /// A short lowercase name, for logs and documents.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::Denied => "denied",
            ErrorKind::NotPermitted => "not permitted",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Limit => "limit",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::NoSpace => "no space",
            ErrorKind::TooLarge => "too large",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error that knows its kind: what a door needs to map it.
pub trait HasKind: std::fmt::Display {
    /// The kind.
    fn kind(&self) -> ErrorKind;
}

/// A refusal or failure of a kernel operation: its kind and a one-line message that says
/// what was wrong and, where it helps, what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// The kind, which every door maps.
    pub kind: ErrorKind,
    /// What happened, for people.
    pub message: String,
}

impl Error {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// No such thing (or one the caller may not see).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// The caller's role or ownership does not allow it.
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Denied, message)
    }

    /// Nobody may do this here.
    pub fn not_permitted(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotPermitted, message)
    }

    /// A malformed request.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    /// The state does not allow it now.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
}

impl HasKind for Error {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl From<Error> for crate::atp::AtpError {
    fn from(e: Error) -> Self {
        crate::atp::AtpError::new(e.kind.atp(), e.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ErrorKind; 12] = [
        ErrorKind::NotFound,
        ErrorKind::Denied,
        ErrorKind::NotPermitted,
        ErrorKind::Invalid,
        ErrorKind::Conflict,
        ErrorKind::Limit,
        ErrorKind::Unavailable,
        ErrorKind::Timeout,
        ErrorKind::NoSpace,
        ErrorKind::TooLarge,
        ErrorKind::Unsupported,
        ErrorKind::Internal,
    ];

    #[test]
    fn every_kind_survives_the_atp_round_trip_up_to_its_door_s_resolution() {
        for k in ALL {
            let back = ErrorKind::from_atp(k.atp());
            // ATP has one code for denied/not permitted and for unavailable/timeout.
            let same = |a: ErrorKind| match a {
                ErrorKind::NotPermitted => ErrorKind::Denied,
                ErrorKind::Timeout => ErrorKind::Unavailable,
                a => a,
            };
            assert_eq!(same(back), same(k), "{k}");
            assert_eq!(back.exit_code(), k.exit_code(), "{k}");
        }
    }

    #[test]
    fn exit_codes_leave_usage_to_clap_and_tell_the_main_kinds_apart() {
        let codes: std::collections::BTreeSet<u8> = [
            ErrorKind::NotFound,
            ErrorKind::Denied,
            ErrorKind::Invalid,
            ErrorKind::Conflict,
            ErrorKind::Limit,
            ErrorKind::Unavailable,
            ErrorKind::Internal,
        ]
        .iter()
        .map(|k| k.exit_code())
        .collect();
        assert_eq!(codes.len(), 7);
        assert!(ALL.iter().all(|k| k.exit_code() != 0 && k.exit_code() != 2));
    }
}
