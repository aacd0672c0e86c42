//! VFS paths: absolute, normalised, `/`-separated, never escaping the root.
//!
//! A [`VfsPath`] is cheap to clone (`Arc<str>`) and is always in canonical form: it starts with
//! `/`, has no empty, `.` or `..` components, no trailing slash (except the root itself), no NUL
//! byte, components of at most [`MAX_NAME`] bytes and at most [`MAX_PATH`] bytes in all.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// Longest component, in bytes (as on Linux).
pub const MAX_NAME: usize = 255;
/// Longest path, in bytes (as on Linux).
pub const MAX_PATH: usize = 4096;

/// Why a string is not a usable path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not starting with `/`.
    #[error("path {0:?} is not absolute")]
    NotAbsolute(String),
    /// Contains a NUL byte.
    #[error("path contains a NUL byte")]
    Nul,
    /// `..` would leave the root.
    #[error("path {0:?} escapes the root with '..'")]
    Escapes(String),
    /// A component is too long.
    #[error("a path component is longer than {MAX_NAME} bytes")]
    NameTooLong,
    /// The whole path is too long.
    #[error("path is longer than {MAX_PATH} bytes")]
    PathTooLong,
    /// A file name is empty, `.`, `..` or holds a `/`.
    #[error("{0:?} is not a valid file name")]
    BadName(String),
}

/// A canonical absolute VFS path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VfsPath(Arc<str>);

impl VfsPath {
    /// The root, `/`.
    pub fn root() -> Self {
        Self(Arc::from("/"))
    }

    /// Parses and normalises `s`: `.` and empty components are dropped and `..` pops one
    /// component; a `..` above the root is an error.
    pub fn parse(s: &str) -> Result<Self, PathError> {
        if is_canonical(s) {
            return Ok(Self(Arc::from(s)));
        }
        if s.as_bytes().contains(&0) {
            return Err(PathError::Nul);
        }
        if !s.starts_with('/') {
            return Err(PathError::NotAbsolute(s.to_owned()));
        }
        let mut parts: Vec<&str> = Vec::new();
        for c in s.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(PathError::Escapes(s.to_owned()));
                    }
                }
                _ if c.len() > MAX_NAME => return Err(PathError::NameTooLong),
                _ => parts.push(c),
            }
        }
        let mut out = String::with_capacity(s.len());
        for p in &parts {
            out.push('/');
            out.push_str(p);
        }
        if out.is_empty() {
            out.push('/');
        }
        if out.len() > MAX_PATH {
            return Err(PathError::PathTooLong);
        }
        Ok(Self(Arc::from(out)))
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is `/`.
    pub fn is_root(&self) -> bool {
        self.0.len() == 1
    }

    /// The child `name` of this path.
    pub fn join(&self, name: &str) -> Result<Self, PathError> {
        check_name(name)?;
        let mut s = String::with_capacity(self.0.len() + 1 + name.len());
        s.push_str(&self.0);
        if !self.is_root() {
            s.push('/');
        }
        s.push_str(name);
        if s.len() > MAX_PATH {
            return Err(PathError::PathTooLong);
        }
        Ok(Self(Arc::from(s)))
    }

    /// The parent, or `None` for the root.
    pub fn parent(&self) -> Option<Self> {
        if self.is_root() {
            return None;
        }
        let i = self.0.rfind('/').unwrap_or(0);
        Some(if i == 0 {
            Self::root()
        } else {
            Self(Arc::from(&self.0[..i]))
        })
    }

    /// The last component, or `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        if self.is_root() {
            None
        } else {
            self.0.rsplit('/').next()
        }
    }

    /// The components, root excluded.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// The first component (`proc` for `/proc/1/status.yaml`), or `None` for the root.
    pub fn first(&self) -> Option<&str> {
        self.components().next()
    }

    /// Whether `prefix` is this path or one of its ancestors (component-wise).
    pub fn starts_with(&self, prefix: &VfsPath) -> bool {
        self.strip_prefix(prefix).is_some()
    }

    /// The remainder after `prefix` without a leading slash (`""` when equal), if `prefix` is
    /// this path or an ancestor.
    pub fn strip_prefix(&self, prefix: &VfsPath) -> Option<&str> {
        if prefix.is_root() {
            return Some(&self.0[1..]);
        }
        let rest = self.0.strip_prefix(&*prefix.0)?;
        if rest.is_empty() {
            Some("")
        } else {
            rest.strip_prefix('/')
        }
    }
}

/// Checks a single file name.
pub fn check_name(name: &str) -> Result<(), PathError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(PathError::BadName(name.to_owned()));
    }
    if name.as_bytes().contains(&0) {
        return Err(PathError::Nul);
    }
    if name.len() > MAX_NAME {
        return Err(PathError::NameTooLong);
    }
    Ok(())
}

/// Fast check for the common case: already canonical.
fn is_canonical(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b[0] != b'/' || b.len() > MAX_PATH {
        return false;
    }
    if b.len() == 1 {
        return true;
    }
    if b[b.len() - 1] == b'/' {
        return false;
    }
    let mut comp_len = 0usize;
    let mut comp_start = 1usize;
    for (i, &c) in b.iter().enumerate().skip(1) {
        match c {
            0 => return false,
            b'/' => {
                if comp_len == 0 || is_dots(&b[comp_start..i]) {
                    return false;
                }
                comp_len = 0;
                comp_start = i + 1;
            }
            _ => {
                comp_len += 1;
                if comp_len > MAX_NAME {
                    return false;
                }
            }
        }
    }
    !is_dots(&b[comp_start..])
}

fn is_dots(c: &[u8]) -> bool {
    c == b"." || c == b".."
}

impl fmt::Display for VfsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for VfsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Borrow<str> for VfsPath {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for VfsPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for VfsPath {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        VfsPath::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises() {
        assert_eq!(p("/"), "/");
        assert_eq!(p("//"), "/");
        assert_eq!(p("/a/./b//c/"), "/a/b/c");
        assert_eq!(p("/a/b/../c"), "/a/c");
        assert_eq!(p("/a/.."), "/");
        assert_eq!(p("/users/alice/workspace"), "/users/alice/workspace");
    }

    #[test]
    fn rejects_escapes_nul_and_long_names() {
        assert!(matches!(VfsPath::parse("/.."), Err(PathError::Escapes(_))));
        assert!(matches!(
            VfsPath::parse("/a/../../etc"),
            Err(PathError::Escapes(_))
        ));
        assert!(matches!(
            VfsPath::parse("relative"),
            Err(PathError::NotAbsolute(_))
        ));
        assert!(matches!(VfsPath::parse("/a\0b"), Err(PathError::Nul)));
        let long = format!("/{}", "x".repeat(256));
        assert!(matches!(VfsPath::parse(&long), Err(PathError::NameTooLong)));
        let deep = "/abcdefgh".repeat(600);
        assert!(matches!(VfsPath::parse(&deep), Err(PathError::PathTooLong)));
    }

    #[test]
    fn canonical_fast_path_agrees_with_slow_path() {
        for s in [
            "/", "/a", "/a/b", "/a/", "/a//b", "/./a", "/a/.", "/a/..", "/..a", "/a../b",
        ] {
            let fast = is_canonical(s);
            let slow = VfsPath::parse(s).map(|x| x.as_str() == s).unwrap_or(false);
            assert_eq!(fast, slow, "{s}");
        }
    }

    #[test]
    fn parent_join_prefix() {
        let x = VfsPath::parse("/users/alice/workspace").unwrap();
        assert_eq!(x.parent().unwrap().as_str(), "/users/alice");
        assert_eq!(
            VfsPath::parse("/users").unwrap().parent().unwrap(),
            VfsPath::root()
        );
        assert_eq!(x.file_name(), Some("workspace"));
        assert_eq!(x.first(), Some("users"));
        assert_eq!(
            x.join("a.txt").unwrap().as_str(),
            "/users/alice/workspace/a.txt"
        );
        assert_eq!(VfsPath::root().join("proc").unwrap().as_str(), "/proc");
        assert!(x.join("..").is_err() && x.join("a/b").is_err() && x.join("").is_err());
        let users = VfsPath::parse("/users").unwrap();
        assert_eq!(x.strip_prefix(&users), Some("alice/workspace"));
        assert_eq!(users.strip_prefix(&users), Some(""));
        assert!(!VfsPath::parse("/usersx").unwrap().starts_with(&users));
        assert_eq!(
            x.strip_prefix(&VfsPath::root()),
            Some("users/alice/workspace")
        );
    }
}
