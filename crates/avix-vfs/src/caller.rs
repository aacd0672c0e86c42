//! Who is asking. Every VFS call carries a [`Caller`]; the doors build it from their own notion
//! of identity (the OS uid on the mount, the token on ATP, the capability token on IPC).

use std::fmt;

use avix_proto::{CrewName, Role, UserName};

/// The door a request came through (for logs and change events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Door {
    /// Kernel code inside the daemon.
    Kernel,
    /// The FUSE mount.
    Fuse,
    /// The ATP gateway.
    Atp,
    /// JSON-RPC over Unix sockets.
    Ipc,
    /// An edit made directly on the host disk, seen by the watcher.
    Disk,
}

/// The acting principal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// Trusted kernel code.
    Kernel,
    /// A person (through the mount, ATP or the CLI).
    User(UserName),
    /// An agent acting for its user; never gets more than its user, and some trees are closed
    /// to agents whatever the user's role.
    Agent {
        /// The user the agent runs for.
        user: UserName,
        /// The agent's PID.
        pid: avix_proto::Pid,
    },
}

/// A request's identity.
#[derive(Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// Their role (admin for the kernel).
    pub role: Role,
    /// Crews they belong to.
    pub crews: Vec<CrewName>,
    /// Which door.
    pub door: Door,
}

impl Caller {
    /// Trusted kernel code.
    pub fn kernel() -> Self {
        Self {
            principal: Principal::Kernel,
            role: Role::Admin,
            crews: Vec::new(),
            door: Door::Kernel,
        }
    }

    /// A person.
    pub fn user(user: UserName, role: Role, crews: Vec<CrewName>, door: Door) -> Self {
        Self {
            principal: Principal::User(user),
            role,
            crews,
            door,
        }
    }

    /// Whether this is kernel code.
    pub fn is_kernel(&self) -> bool {
        matches!(self.principal, Principal::Kernel)
    }

    /// Whether this is an agent.
    pub fn is_agent(&self) -> bool {
        matches!(self.principal, Principal::Agent { .. })
    }

    /// The user acting (the agent's user for agents), `None` for the kernel.
    pub fn user_name(&self) -> Option<&UserName> {
        match &self.principal {
            Principal::Kernel => None,
            Principal::User(u) | Principal::Agent { user: u, .. } => Some(u),
        }
    }

    /// Whether the caller is `user` (or an agent of `user`).
    pub fn is_user(&self, user: &str) -> bool {
        self.user_name().is_some_and(|u| u.as_str() == user)
    }

    /// Whether the caller belongs to `crew`.
    pub fn in_crew(&self, crew: &str) -> bool {
        self.crews.iter().any(|c| c.as_str() == crew)
    }
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.principal {
            Principal::Kernel => f.write_str("kernel"),
            Principal::User(u) => write!(f, "{u}({}) via {:?}", self.role, self.door),
            Principal::Agent { user, pid } => {
                write!(f, "agent {pid} of {user} via {:?}", self.door)
            }
        }
    }
}
