//! The ATP domains and their operations. Each is a thin translation of an [`Op`] onto a
//! kernel or VFS call made as the connection's user (door `atp`), so the same rules hold as on
//! the mount: a user sees and touches only their own agents, sessions and approvals; operators
//! and admins see all. One file per domain.

use std::sync::Arc;

use avix_kernel::Kernel;
use avix_kernel::policy;
use avix_kernel::process::Process;
use avix_proto::atp::{AtpError, ErrorCode};
use avix_proto::op::Op;
use avix_proto::{HasKind, Role, UserName};
use avix_vfs::Caller;
use serde_json::Value;

use crate::Gateway;

mod auth;
mod fs;
mod proc;
mod secret;
mod session;
mod sys;

pub use fs::MAX_FS_READ;

/// Who is asking, for one command.
#[derive(Debug, Clone)]
pub struct Asker {
    /// The user.
    pub user: UserName,
    /// Their role now.
    pub role: Role,
    /// The login.
    pub sid: String,
    /// Token expiry.
    pub exp: i64,
    /// The VFS/kernel identity.
    pub caller: Caller,
}

impl Asker {
    fn privileged(&self) -> bool {
        policy::sees_everyone(&self.caller)
    }

    fn at_least(&self, role: Role, what: &str) -> Result<(), AtpError> {
        Ok(policy::require(&self.caller, role, what)?)
    }
}

/// What a command produced, beyond its reply body.
#[derive(Debug, Default)]
pub struct Effects {
    /// A new token the connection adopts (refresh).
    pub token: Option<String>,
    /// The login ended: close the connection after the reply.
    pub close: bool,
}

/// What one operation answers: its reply body and its effects on the connection.
type Done = Result<(Body, Effects), AtpError>;

/// The door's one mapping of a kernel or VFS error: its kind's ATP code, its message.
fn atp_error(e: impl HasKind) -> AtpError {
    AtpError::new(e.kind().atp(), e.to_string())
}

/// A reply body, already serialized (replies are written without building a JSON tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body(pub String);

impl From<Value> for Body {
    fn from(v: Value) -> Self {
        Self(v.to_string())
    }
}

fn to_body<T: serde::Serialize>(v: &T) -> Result<Body, AtpError> {
    serde_json::to_string(v)
        .map(Body)
        .map_err(|e| AtpError::new(ErrorCode::EINTERNAL, e.to_string()))
}

/// A reply without effects on the connection.
fn reply<T: serde::Serialize>(v: &T) -> Done {
    Ok((to_body(v)?, Effects::default()))
}

/// An operation handed to a domain it does not belong to: a bug in [`Gateway::run`].
fn misrouted(op: &Op) -> AtpError {
    let (d, o) = op.names();
    AtpError::new(
        ErrorCode::EINTERNAL,
        format!("{d} {o} reached the wrong handler"),
    )
}

/// A process `a` may see ([`policy::visible`]); others do not exist for them.
fn visible(kernel: &Kernel, a: &Asker, pid: avix_proto::Pid) -> Result<Arc<Process>, AtpError> {
    let p = kernel
        .procs()
        .get(pid)
        .ok_or_else(|| policy::no_process(pid))?;
    policy::visible(&a.caller, &p)?;
    Ok(p)
}

impl Gateway {
    /// Runs one command: its operation is parsed ([`Op::parse`]), then run.
    pub async fn dispatch(&self, a: &Asker, domain: &str, op: &str, body: Value) -> Done {
        self.run(a, Op::parse(domain, op, body)?).await
    }

    /// Runs one operation.
    pub async fn run(&self, a: &Asker, op: Op) -> Done {
        match op {
            Op::Whoami(_) | Op::Refresh(_) | Op::Logout(_) => self.auth_op(a, &op),
            Op::Spawn(_)
            | Op::List(_)
            | Op::Kill(_)
            | Op::Show(_)
            | Op::Catalog(_)
            | Op::History(_)
            | Op::Save(_)
            | Op::Restore(_)
            | Op::Fork(_)
            | Op::Diff(_)
            | Op::Signal(_)
            | Op::HilList(_)
            | Op::HilApprove(_)
            | Op::HilDeny(_) => self.proc_op(a, op).await,
            Op::SessionList(_)
            | Op::SessionShow(_)
            | Op::SessionResume(_)
            | Op::SessionDelete(_) => self.session_op(a, op).await,
            Op::FsRead(_) | Op::FsWrite(_) | Op::FsList(_) | Op::FsStat(_) | Op::FsDelete(_) => {
                self.fs_op(a, op).await
            }
            Op::SecretSet(_) | Op::SecretList(_) | Op::SecretDelete(_) => self.secret_op(a, op),
            Op::Info(_)
            | Op::Tools(_)
            | Op::Services(_)
            | Op::Logs(_)
            | Op::ServiceList(_)
            | Op::ServiceStatus(_)
            | Op::ServiceStart(_)
            | Op::ServiceStop(_)
            | Op::ServiceRestart(_)
            | Op::ServiceInstall(_)
            | Op::ServiceUninstall(_) => self.sys_op(a, op).await,
        }
    }
}
