//! The access rules, in one place: which caller may look up, read or write which path.
//!
//! | tree | look up / read | write |
//! |---|---|---|
//! | `/` and `/etc` | everyone | nobody (the layout is fixed) |
//! | `/proc`, `/kernel`, `/tools` | everyone; a node owned by a user only that user and operators | only the kernel; control files decide through their own writer rule |
//! | `/secrets` | the directory itself can be looked up; nothing under it, by anyone | nobody |
//! | `/etc/avix` | everyone, but `auth.conf` and `kernel.yaml` only admins; `*.key` files never | admins (people only, never agents) |
//! | `/bin` | everyone | admins (people only) |
//! | `/users`, `/crews`, `/services` | everyone lists them | admins create and remove entries |
//! | `/users/<u>/…` | `u` and operators | `u` and admins; agents never touch `memory/` |
//! | `/crews/<c>/…` | members and operators | members (under `shared/`) and admins |
//! | `/services/<s>/…` | the service account `s` and operators | `s` and admins |
//!
//! Guests never write. The kernel may do anything except read secrets or key files through the
//! VFS (it uses the secrets store directly).
//!
//! What a caller may not read below a home, a crew or a service (`/users/<u>/…`,
//! `/crews/<c>/…`, `/services/<s>/…`), and a synthetic node owned by another user
//! (`/proc/<pid>` of someone else's agent), it may not see either: every access to it is
//! answered "no such file" (ENOENT), never "permission denied", so nobody learns which files
//! or agents another user has.

use avix_proto::{Role, UserName};

use crate::caller::Caller;
use crate::error::VfsError;
use crate::path::VfsPath;

/// What the caller wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// See that the entry exists and its attributes.
    Lookup,
    /// Read a file or list a directory.
    Read,
    /// Create, change, rename or remove.
    Write,
}

/// Who may write a synthetic control file (on top of the tree rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Writers {
    /// Nobody but the kernel (read-only file).
    #[default]
    Nobody,
    /// The node's owner, operators and admins.
    Owner,
    /// Any user who is not a guest.
    AnyUser,
    /// Admins only.
    Admin,
}

/// Names that never appear through the VFS: temp files of atomic writes.
pub const TEMP_PREFIX: &str = ".avix-tmp-";

/// Whether the entry is invisible to everyone (temp files of atomic writes and key files under
/// `/etc/avix`).
pub fn is_hidden(path: &VfsPath) -> bool {
    let Some(name) = path.file_name() else {
        return false;
    };
    if name.starts_with(TEMP_PREFIX) {
        return true;
    }
    name.ends_with(".key") && path.parent().is_some_and(|p| p.as_str() == "/etc/avix")
}

/// The data tree `path` lies in, if any: `/users/<u>/workspace`, `/users/<u>/scratch`,
/// `/users/<u>/forks` (the workspaces of forked runs), `/crews/<c>/shared` or
/// `/services/<s>/workspace` (the root itself included). Data trees
/// hold plain user data: the mount serves them as ordinary POSIX files (links, modes, times,
/// offsets), unlike documents, which are validated and replaced atomically.
pub fn data_tree_root(path: &VfsPath) -> Option<VfsPath> {
    let mut c = path.components();
    let top = c.next()?;
    let owner = c.next()?;
    let tree = c.next()?;
    let data = matches!(
        (top, tree),
        ("users", "workspace" | "scratch" | "forks")
            | ("crews", "shared")
            | ("services", "workspace")
    );
    if !data {
        return None;
    }
    VfsPath::parse(&format!("/{top}/{owner}/{tree}")).ok()
}

fn denied(path: &VfsPath, reason: &'static str) -> VfsError {
    VfsError::Denied {
        path: path.clone(),
        reason,
    }
}

/// What is invisible to the caller: the same answer as for a name that does not exist.
fn unseen(path: &VfsPath) -> VfsError {
    VfsError::NotFound(path.clone())
}

fn not_permitted(path: &VfsPath, reason: &'static str) -> VfsError {
    VfsError::NotPermitted {
        path: path.clone(),
        reason,
    }
}

/// Checks the tree rules for `caller` doing `access` on `path`.
pub fn check(caller: &Caller, path: &VfsPath, access: Access) -> Result<(), VfsError> {
    if is_hidden(path) {
        return Err(not_permitted(
            path,
            "key and temporary files are never visible through the VFS",
        ));
    }
    let mut parts = path.components();
    let top = parts.next();
    if top == Some("secrets") {
        return if path.as_str() == "/secrets" && access == Access::Lookup {
            Ok(())
        } else {
            Err(not_permitted(
                path,
                "secrets are never readable or writable through the VFS; they are injected into agents at spawn",
            ))
        };
    }
    if caller.is_kernel() {
        return Ok(());
    }
    let Some(top) = top else {
        return match access {
            Access::Write => Err(not_permitted(path, "the top-level layout is fixed")),
            _ => Ok(()),
        };
    };
    if access == Access::Write && caller.role == Role::Guest {
        return Err(denied(path, "guests are read-only"));
    }
    let second = parts.next();
    match top {
        // Synthetic trees: each node carries its own writer rule (see `check_node`); the VFS
        // refuses every write that does not land on a control file.
        "proc" | "kernel" | "tools" => Ok(()),
        "etc" => check_etc(caller, path, second, access),
        "bin" => match access {
            Access::Write if caller.is_agent() => {
                Err(not_permitted(path, "agents never install system agents"))
            }
            Access::Write if caller.role < Role::Admin => {
                Err(denied(path, "only admins install system agents"))
            }
            _ => Ok(()),
        },
        "users" | "crews" | "services" => {
            let Some(owner) = second else {
                return match access {
                    Access::Write if caller.role < Role::Admin => {
                        Err(denied(path, "only admins create or remove entries here"))
                    }
                    _ => Ok(()),
                };
            };
            match top {
                "users" => check_user_tree(caller, path, owner, parts.next(), access),
                "crews" => check_crew_tree(caller, path, owner, parts.next(), access),
                _ => check_service_tree(caller, path, owner, access),
            }
        }
        // Nothing else exists at the top; resolution reports ENOENT.
        _ => Ok(()),
    }
}

fn check_etc(
    caller: &Caller,
    path: &VfsPath,
    second: Option<&str>,
    access: Access,
) -> Result<(), VfsError> {
    if second.is_none() {
        return match access {
            Access::Write => Err(not_permitted(path, "the top-level layout is fixed")),
            _ => Ok(()),
        };
    }
    match access {
        Access::Lookup => Ok(()),
        Access::Read => {
            let private = matches!(
                path.as_str(),
                "/etc/avix/auth.conf" | "/etc/avix/kernel.yaml"
            );
            if private && caller.role < Role::Admin {
                Err(denied(path, "only admins read auth.conf and kernel.yaml"))
            } else {
                Ok(())
            }
        }
        Access::Write if caller.is_agent() => Err(not_permitted(
            path,
            "agents never change system configuration",
        )),
        Access::Write if caller.role < Role::Admin => {
            Err(denied(path, "only admins change /etc/avix"))
        }
        Access::Write => Ok(()),
    }
}

fn check_user_tree(
    caller: &Caller,
    path: &VfsPath,
    owner: &str,
    third: Option<&str>,
    access: Access,
) -> Result<(), VfsError> {
    let own = caller.is_user(owner);
    if third.is_some() && !own && caller.role < Role::Operator {
        return Err(unseen(path));
    }
    if caller.is_agent() && third == Some("memory") && access != Access::Lookup {
        return Err(not_permitted(
            path,
            "agent memory is reached only through memory.svc",
        ));
    }
    match access {
        Access::Lookup => Ok(()),
        Access::Read if own || caller.role >= Role::Operator => Ok(()),
        Access::Write if (own && third.is_some()) || caller.role == Role::Admin => Ok(()),
        Access::Write if own => Err(denied(
            path,
            "a user's home directory itself is managed by admins",
        )),
        _ => Err(denied(path, "this belongs to another user")),
    }
}

fn check_crew_tree(
    caller: &Caller,
    path: &VfsPath,
    crew: &str,
    third: Option<&str>,
    access: Access,
) -> Result<(), VfsError> {
    let member = caller.in_crew(crew);
    if third.is_some() && !member && caller.role < Role::Operator {
        return Err(unseen(path));
    }
    match access {
        Access::Lookup => Ok(()),
        Access::Read if member || caller.role >= Role::Operator => Ok(()),
        Access::Write if caller.role == Role::Admin => Ok(()),
        Access::Write if member && third == Some("shared") && path.components().count() > 3 => {
            Ok(())
        }
        Access::Write if member => Err(denied(path, "crew members write only under shared/")),
        _ => Err(denied(path, "only members of this crew may use it")),
    }
}

fn check_service_tree(
    caller: &Caller,
    path: &VfsPath,
    service: &str,
    access: Access,
) -> Result<(), VfsError> {
    let own = caller.is_user(service);
    let below = path.components().count() > 2;
    if below && !own && caller.role < Role::Operator {
        return Err(unseen(path));
    }
    match access {
        Access::Lookup => Ok(()),
        Access::Read if own || caller.role >= Role::Operator => Ok(()),
        Access::Write if own || caller.role == Role::Admin => Ok(()),
        _ => Err(denied(path, "this belongs to a service account")),
    }
}

/// Checks a synthetic node's own rules on top of [`check`]: a node with an owner is visible only
/// to that owner and operators; writes follow `writers`.
pub fn check_node(
    caller: &Caller,
    path: &VfsPath,
    owner: Option<&UserName>,
    writers: Writers,
    access: Access,
) -> Result<(), VfsError> {
    if caller.is_kernel() {
        return Ok(());
    }
    let own = owner.is_none_or(|o| caller.is_user(o.as_str()));
    if !own && caller.role < Role::Operator {
        return Err(unseen(path));
    }
    match access {
        Access::Lookup => Ok(()),
        Access::Read => Ok(()),
        Access::Write if caller.role == Role::Guest => Err(denied(path, "guests are read-only")),
        Access::Write => match writers {
            Writers::Nobody => Err(not_permitted(
                path,
                "this file is written only by the kernel",
            )),
            Writers::AnyUser => Ok(()),
            Writers::Owner if own || caller.role >= Role::Operator => Ok(()),
            Writers::Owner => Err(denied(path, "this belongs to another user")),
            Writers::Admin if caller.role == Role::Admin && !caller.is_agent() => Ok(()),
            Writers::Admin => Err(denied(path, "only admins may write this file")),
        },
    }
}

#[cfg(test)]
mod tests {
    use avix_proto::CrewName;

    use super::*;
    use crate::caller::{Door, Principal};

    fn who(name: &str, role: Role) -> Caller {
        Caller::user(
            UserName::new(name).unwrap(),
            role,
            vec![CrewName::new("team").unwrap()],
            Door::Fuse,
        )
    }

    fn agent(name: &str, role: Role) -> Caller {
        let mut c = who(name, role);
        c.principal = Principal::Agent {
            user: UserName::new(name).unwrap(),
            pid: avix_proto::Pid::new(7),
        };
        c
    }

    fn ok(c: &Caller, p: &str, a: Access) -> bool {
        check(c, &VfsPath::parse(p).unwrap(), a).is_ok()
    }

    #[test]
    fn secrets_are_closed_to_everyone_including_the_kernel() {
        let admin = who("root1", Role::Admin);
        for c in [&admin, &Caller::kernel()] {
            assert!(ok(c, "/secrets", Access::Lookup));
            assert!(!ok(c, "/secrets", Access::Read));
            assert!(!ok(c, "/secrets/alice/x.enc", Access::Lookup));
            assert!(!ok(c, "/secrets/alice/x.enc", Access::Write));
        }
        let e = check(&admin, &VfsPath::parse("/secrets/a").unwrap(), Access::Read).unwrap_err();
        assert_eq!(e.errno(), libc::EPERM);
    }

    #[test]
    fn proc_and_kernel_are_kernel_written() {
        let admin = who("boss", Role::Admin);
        assert!(ok(&admin, "/proc/status.yaml", Access::Read));
        // Writes are decided per node (control files); see `check_node` and the VFS tests.
        let p = VfsPath::parse("/proc/x").unwrap();
        let e = check_node(&admin, &p, None, Writers::Nobody, Access::Write).unwrap_err();
        assert_eq!(e.errno(), libc::EPERM);
        assert!(ok(&Caller::kernel(), "/proc/x", Access::Write));
    }

    #[test]
    fn etc_is_admin_written_and_partly_admin_read() {
        let alice = who("alice", Role::User);
        let admin = who("boss", Role::Admin);
        assert!(ok(&alice, "/etc/avix/users.yaml", Access::Read));
        assert!(!ok(&alice, "/etc/avix/users.yaml", Access::Write));
        assert!(!ok(&alice, "/etc/avix/auth.conf", Access::Read));
        assert!(ok(&alice, "/etc/avix/auth.conf", Access::Lookup));
        assert!(ok(&admin, "/etc/avix/auth.conf", Access::Read));
        assert!(ok(&admin, "/etc/avix/users.yaml", Access::Write));
        assert!(!ok(
            &agent("boss", Role::Admin),
            "/etc/avix/users.yaml",
            Access::Write
        ));
        assert!(!ok(&admin, "/etc/avix/master.key", Access::Lookup));
        assert!(!ok(&Caller::kernel(), "/etc/avix/master.key", Access::Read));
        assert!(!ok(&admin, "/etc", Access::Write));
    }

    #[test]
    fn user_trees_are_private() {
        let alice = who("alice", Role::User);
        let bob = who("bob", Role::User);
        let op = who("olga", Role::Operator);
        let admin = who("boss", Role::Admin);
        let p = "/users/alice/workspace/a.txt";
        assert!(ok(&alice, p, Access::Read) && ok(&alice, p, Access::Write));
        assert!(!ok(&bob, p, Access::Read) && !ok(&bob, p, Access::Write));
        // Not even its existence (issue 10 item 10): ENOENT, as for a missing name.
        let e = check(&bob, &VfsPath::parse(p).unwrap(), Access::Lookup).unwrap_err();
        assert_eq!(e.errno(), libc::ENOENT);
        assert!(
            ok(&bob, "/users/alice", Access::Lookup),
            "homes are listed in /users"
        );
        assert!(ok(&op, p, Access::Read) && !ok(&op, p, Access::Write));
        assert!(ok(&admin, p, Access::Write));
        assert!(
            !ok(&alice, "/users/alice", Access::Write),
            "home itself is admin-managed"
        );
        assert!(!ok(&alice, "/users/carol", Access::Write));
        assert!(ok(&admin, "/users/carol", Access::Write));
        assert!(!ok(
            &agent("alice", Role::User),
            "/users/alice/memory/x",
            Access::Read
        ));
        assert!(ok(&agent("alice", Role::User), p, Access::Write));
        let guest = who("gus", Role::Guest);
        assert!(!ok(&guest, "/users/gus/workspace/x", Access::Write));
    }

    #[test]
    fn crews_and_services() {
        let alice = who("alice", Role::User);
        assert!(ok(&alice, "/crews/team/shared/notes.md", Access::Write));
        assert!(!ok(&alice, "/crews/team/defaults.yaml", Access::Write));
        assert!(ok(&alice, "/crews/team/defaults.yaml", Access::Read));
        assert!(!ok(&alice, "/crews/other/shared/x", Access::Read));
        assert!(!ok(&alice, "/services/github/workspace/x", Access::Read));
        assert!(ok(
            &who("github", Role::User),
            "/services/github/workspace/x",
            Access::Write
        ));
    }

    #[test]
    fn hidden_names() {
        assert!(is_hidden(
            &VfsPath::parse("/users/a/.avix-tmp-123").unwrap()
        ));
        assert!(is_hidden(&VfsPath::parse("/etc/avix/master.key").unwrap()));
        assert!(!is_hidden(
            &VfsPath::parse("/users/a/workspace/my.key").unwrap()
        ));
    }

    #[test]
    fn synthetic_nodes_follow_owner_and_writers() {
        let alice = who("alice", Role::User);
        let bob = who("bob", Role::User);
        let op = who("olga", Role::Operator);
        let owner = UserName::new("alice").unwrap();
        let p = VfsPath::parse("/proc/57/ctl").unwrap();
        let chk = |c: &Caller, w, a| check_node(c, &p, Some(&owner), w, a).is_ok();
        assert!(chk(&alice, Writers::Owner, Access::Write));
        assert!(!chk(&bob, Writers::Owner, Access::Write));
        assert!(!chk(&bob, Writers::Owner, Access::Read));
        assert!(chk(&op, Writers::Owner, Access::Write));
        assert!(!chk(&alice, Writers::Nobody, Access::Write));
        assert!(!chk(&alice, Writers::Admin, Access::Write));
    }
}
