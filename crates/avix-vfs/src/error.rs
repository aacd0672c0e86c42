//! The one VFS error type and its mapping to errno, used by every door.

use avix_proto::{ErrorKind, HasKind};

use crate::path::{PathError, VfsPath};

/// The errno of an error kind: the mount's one mapping for what the kernel refuses (a
/// control file's handler, say). The VFS's own errors keep their finer POSIX errno.
pub fn errno_of(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::NotFound => libc::ENOENT,
        ErrorKind::Denied => libc::EACCES,
        ErrorKind::NotPermitted => libc::EPERM,
        ErrorKind::Invalid => libc::EINVAL,
        ErrorKind::Conflict => libc::EBUSY,
        ErrorKind::Limit | ErrorKind::Unavailable => libc::EAGAIN,
        ErrorKind::Timeout => libc::ETIMEDOUT,
        ErrorKind::NoSpace => libc::ENOSPC,
        ErrorKind::TooLarge => libc::EFBIG,
        ErrorKind::Unsupported => libc::ENOTSUP,
        ErrorKind::Internal => libc::EIO,
    }
}

/// The name of [`errno_of`]'s errno (`ENOENT`): the codes an agent's tools report.
pub fn errno_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "ENOENT",
        ErrorKind::Denied => "EACCES",
        ErrorKind::NotPermitted => "EPERM",
        ErrorKind::Invalid => "EINVAL",
        ErrorKind::Conflict => "EBUSY",
        ErrorKind::Limit | ErrorKind::Unavailable => "EAGAIN",
        ErrorKind::Timeout => "ETIMEDOUT",
        ErrorKind::NoSpace => "ENOSPC",
        ErrorKind::TooLarge => "EFBIG",
        ErrorKind::Unsupported => "ENOTSUP",
        ErrorKind::Internal => "EIO",
    }
}

/// Why a VFS operation failed. Messages are one line and say what to do where that helps.
#[derive(Debug, thiserror::Error)]
pub enum VfsError {
    /// No such file or directory.
    #[error("{0}: no such file or directory")]
    NotFound(VfsPath),
    /// The target exists.
    #[error("{0}: already exists")]
    AlreadyExists(VfsPath),
    /// A file where a directory is needed.
    #[error("{0}: not a directory")]
    NotADirectory(VfsPath),
    /// A directory where a file is needed.
    #[error("{0}: is a directory")]
    IsADirectory(VfsPath),
    /// `rmdir` of a directory with entries.
    #[error("{0}: directory not empty")]
    NotEmpty(VfsPath),
    /// The caller lacks the right (EACCES).
    #[error("{path}: permission denied: {reason}")]
    Denied {
        /// The path.
        path: VfsPath,
        /// Which rule refused it.
        reason: &'static str,
    },
    /// Nobody may do this here, whatever their rights (EPERM).
    #[error("{path}: operation not permitted: {reason}")]
    NotPermitted {
        /// The path.
        path: VfsPath,
        /// Which rule refused it.
        reason: &'static str,
    },
    /// The content was refused by the file's validator (EINVAL); the old content stays.
    #[error("{path}: rejected, old content kept: {reason}")]
    Rejected {
        /// The path.
        path: VfsPath,
        /// What is wrong with the content.
        reason: String,
    },
    /// A bad request to a control file (EINVAL).
    #[error("{path}: {reason}")]
    InvalidInput {
        /// The path.
        path: VfsPath,
        /// What is wrong with the request.
        reason: String,
    },
    /// A control file's handler (the kernel) refused the request.
    #[error("{path}: {reason}")]
    Refused {
        /// The path.
        path: VfsPath,
        /// What kind of refusal.
        kind: ErrorKind,
        /// Why.
        reason: String,
    },
    /// A buffered control file's handler wants more input before acting (not an error a
    /// caller sees: the write succeeds and the data waits for the rest).
    #[error("incomplete request")]
    NeedMore,
    /// A bad path.
    #[error(transparent)]
    Path(#[from] PathError),
    /// Rename across storage drivers (EXDEV); `mv` then copies.
    #[error("{0}: cannot rename across trees")]
    CrossDevice(VfsPath),
    /// Over a size limit (EFBIG).
    #[error("{path}: file too large (limit {limit} bytes)")]
    TooLarge {
        /// The path.
        path: VfsPath,
        /// The limit.
        limit: u64,
    },
    /// The file handle is not open (EBADF).
    #[error("bad file handle")]
    BadHandle,
    /// Not open for this kind of access (EBADF).
    #[error("{0}: not open for writing")]
    NotWritable(VfsPath),
    /// Not supported here (ENOTSUP).
    #[error("{path}: {what} is not supported here")]
    Unsupported {
        /// The path.
        path: VfsPath,
        /// The operation.
        what: &'static str,
    },
    /// The backing storage failed (EIO, or the OS error's errno).
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: VfsPath,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl VfsError {
    /// The kernel's refusal `e` of a request written to the control file `path`.
    pub fn refused(path: &VfsPath, e: &impl HasKind) -> Self {
        VfsError::Refused {
            path: path.clone(),
            kind: e.kind(),
            reason: e.to_string(),
        }
    }

    /// The errno a POSIX door (FUSE) reports.
    pub fn errno(&self) -> i32 {
        match self {
            VfsError::NotFound(_) => libc::ENOENT,
            VfsError::AlreadyExists(_) => libc::EEXIST,
            VfsError::NotADirectory(_) => libc::ENOTDIR,
            VfsError::IsADirectory(_) => libc::EISDIR,
            VfsError::NotEmpty(_) => libc::ENOTEMPTY,
            VfsError::Denied { .. } => libc::EACCES,
            VfsError::NotPermitted { .. } => libc::EPERM,
            VfsError::Rejected { .. } | VfsError::InvalidInput { .. } => libc::EINVAL,
            VfsError::Refused { kind, .. } => errno_of(*kind),
            VfsError::NeedMore => libc::EINVAL,
            VfsError::Path(PathError::NameTooLong | PathError::PathTooLong) => libc::ENAMETOOLONG,
            VfsError::Path(_) => libc::EINVAL,
            VfsError::CrossDevice(_) => libc::EXDEV,
            VfsError::TooLarge { .. } => libc::EFBIG,
            VfsError::BadHandle | VfsError::NotWritable(_) => libc::EBADF,
            VfsError::Unsupported { .. } => libc::ENOTSUP,
            VfsError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        }
    }

    /// A short machine code for non-POSIX doors (ATP, JSON-RPC).
    pub fn code(&self) -> &'static str {
        match self {
            VfsError::NotFound(_) => "ENOENT",
            VfsError::AlreadyExists(_) => "EEXIST",
            VfsError::NotADirectory(_) => "ENOTDIR",
            VfsError::IsADirectory(_) => "EISDIR",
            VfsError::NotEmpty(_) => "ENOTEMPTY",
            VfsError::Denied { .. } => "EACCES",
            VfsError::NotPermitted { .. } => "EPERM",
            VfsError::Rejected { .. } | VfsError::InvalidInput { .. } | VfsError::Path(_) => {
                "EINVAL"
            }
            VfsError::Refused { kind, .. } => errno_name(*kind),
            VfsError::NeedMore => "EINVAL",
            VfsError::CrossDevice(_) => "EXDEV",
            VfsError::TooLarge { .. } => "EFBIG",
            VfsError::BadHandle | VfsError::NotWritable(_) => "EBADF",
            VfsError::Unsupported { .. } => "ENOTSUP",
            VfsError::Io { source, .. }
                if matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) =>
            {
                "ENOSPC"
            }
            VfsError::Io { .. } => "EIO",
        }
    }
}

impl HasKind for VfsError {
    fn kind(&self) -> ErrorKind {
        match self {
            VfsError::NotFound(_) => ErrorKind::NotFound,
            VfsError::AlreadyExists(_)
            | VfsError::NotADirectory(_)
            | VfsError::IsADirectory(_)
            | VfsError::NotEmpty(_)
            | VfsError::CrossDevice(_) => ErrorKind::Conflict,
            VfsError::Denied { .. } => ErrorKind::Denied,
            VfsError::NotPermitted { .. } => ErrorKind::NotPermitted,
            VfsError::Rejected { .. }
            | VfsError::InvalidInput { .. }
            | VfsError::NeedMore
            | VfsError::Path(_)
            | VfsError::BadHandle
            | VfsError::NotWritable(_) => ErrorKind::Invalid,
            VfsError::Refused { kind, .. } => *kind,
            VfsError::TooLarge { .. } => ErrorKind::TooLarge,
            VfsError::Unsupported { .. } => ErrorKind::Unsupported,
            VfsError::Io { source, .. }
                if matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) =>
            {
                ErrorKind::NoSpace
            }
            VfsError::Io { .. } => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        let p = VfsPath::parse("/x").unwrap();
        assert_eq!(VfsError::NotFound(p.clone()).errno(), libc::ENOENT);
        assert_eq!(
            VfsError::Denied {
                path: p.clone(),
                reason: "r"
            }
            .errno(),
            libc::EACCES
        );
        assert_eq!(
            VfsError::NotPermitted {
                path: p.clone(),
                reason: "r"
            }
            .errno(),
            libc::EPERM
        );
        assert_eq!(
            VfsError::Rejected {
                path: p.clone(),
                reason: "bad".into()
            }
            .errno(),
            libc::EINVAL
        );
        assert_eq!(
            VfsError::from(PathError::NameTooLong).errno(),
            libc::ENAMETOOLONG
        );
        let io = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(
            VfsError::Io {
                path: p,
                source: io
            }
            .errno(),
            libc::ENOSPC
        );
    }
}
