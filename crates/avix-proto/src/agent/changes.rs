//! Workspace change sets and what is built from them: the diff of a run, and forks.
//!
//! A run's tools that change its workspace (`fs/write`, `fs/delete`, `exec/*`) journal what
//! they changed, file by file, as a `workspace` line after the call's result: each file's
//! content before and after as a content id (`sha256:` + 64 hex digits; absent: the file did
//! not exist). The content a file had before a change is kept in the user's object store
//! (`/users/<u>/snapshots/objects/`), so a fork can put it back.

use serde::{Deserialize, Serialize};

/// One file a tool call changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileChange {
    /// The file, relative to the run's workspace.
    pub path: String,
    /// Its content id before the call (`None`: it did not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Its content id after the call (`None`: it was deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

impl FileChange {
    /// Added, modified or deleted (`None`: the content is the same on both sides).
    pub fn status(&self) -> Option<ChangeStatus> {
        match (&self.before, &self.after) {
            (None, Some(_)) => Some(ChangeStatus::Added),
            (Some(_), None) => Some(ChangeStatus::Deleted),
            (Some(b), Some(a)) if a != b => Some(ChangeStatus::Modified),
            _ => None,
        }
    }
}

/// What happened to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeStatus {
    /// It is new.
    Added,
    /// Its content changed.
    Modified,
    /// It is gone.
    Deleted,
}

impl ChangeStatus {
    /// `A`, `M` or `D`, as `git status --short` writes them.
    pub fn letter(self) -> char {
        match self {
            ChangeStatus::Added => 'A',
            ChangeStatus::Modified => 'M',
            ChangeStatus::Deleted => 'D',
        }
    }
}

/// One file in a diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffEntry {
    /// The file, relative to the run's workspace.
    pub path: String,
    /// Added, modified or deleted.
    pub status: ChangeStatus,
    /// Its content id before the run (or before turn 1 of the range).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Its content id at the end of the range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// The turns that changed it.
    pub turns: Vec<u32>,
}

/// What a run changed in its workspace (`proc diff`, `avix client agent diff`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceDiff {
    /// The run.
    pub invocation: crate::InvocationId,
    /// Its workspace (a VFS path).
    pub workspace: String,
    /// The diff covers turns 1 to this one (`None`: the whole run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u32>,
    /// The turns the run has taken.
    pub turns: u32,
    /// The files changed, by path.
    pub files: Vec<DiffEntry>,
    /// Why some calls' changes are not known (a workspace over the tracking caps).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub untracked: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_from_both_sides() {
        let c = |b: Option<&str>, a: Option<&str>| FileChange {
            path: "f".into(),
            before: b.map(Into::into),
            after: a.map(Into::into),
        };
        assert_eq!(c(None, Some("x")).status(), Some(ChangeStatus::Added));
        assert_eq!(c(Some("x"), None).status(), Some(ChangeStatus::Deleted));
        assert_eq!(
            c(Some("x"), Some("y")).status(),
            Some(ChangeStatus::Modified)
        );
        assert_eq!(c(Some("x"), Some("x")).status(), None);
        assert_eq!(c(None, None).status(), None);
    }
}
