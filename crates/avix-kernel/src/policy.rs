//! The rules above the VFS, in one place: who may see a user's processes and records, who may
//! signal a process, who may see an event. Every door asks here; the VFS keeps the rules for
//! paths in `avix_vfs::access`, and the two agree (a process of another user is "not found"
//! on the mount, over ATP, over IPC and to an agent's tools alike).
//!
//! | what | kernel | a person | an agent |
//! |---|---|---|---|
//! | see a user's processes, records, events | yes | their own; operators and admins everyone's | its user's |
//! | signal a process | yes | one they see; never a guest | its descendants only |
//! | spawn, kill, answer, resume, keep secrets | for a user | users and up | children, through its `agent/spawn` tool |
//! | control services, read the daemon's log | yes | operators and admins | no |
//! | install or remove services, system secrets | yes | admins | no |

use avix_proto::event::EventName;
use avix_proto::{Error, Role, UserName};
use avix_vfs::{Caller, Principal};

use crate::pid::Pid;
use crate::process::{Process, ProcessTable};

/// Whether `caller` may see what belongs to `user` (processes, history, events).
pub fn may_see_user(caller: &Caller, user: &UserName) -> bool {
    match &caller.principal {
        Principal::Kernel => true,
        Principal::User(u) => u == user || caller.role >= Role::Operator,
        Principal::Agent { user: u, .. } => u == user,
    }
}

/// `Ok` when `caller` holds `role` or higher for `what` (`"proc spawn"`), else a denial that
/// says which role it needs.
pub fn require(caller: &Caller, role: Role, what: &str) -> Result<(), Error> {
    if caller.is_kernel() || caller.role >= role {
        return Ok(());
    }
    Err(Error::denied(format!(
        "{what} needs the role {} or higher; you are {}",
        role.as_str(),
        caller.role.as_str()
    )))
}

/// Starting, stopping and restarting services: operators and admins, never agents.
pub fn control_services(caller: &Caller) -> Result<(), Error> {
    people_only(caller, "controlling services")?;
    require(caller, Role::Operator, "controlling services")
}

/// Installing and removing services: admins, never agents.
pub fn install_services(caller: &Caller) -> Result<(), Error> {
    people_only(caller, "installing services")?;
    require(caller, Role::Admin, "installing services")
}

/// Setting and listing the system's secrets (those services get): admins, never agents.
pub fn system_secrets(caller: &Caller) -> Result<(), Error> {
    people_only(caller, "system secrets")?;
    require(caller, Role::Admin, "system secrets")
}

fn people_only(caller: &Caller, what: &str) -> Result<(), Error> {
    if caller.is_agent() {
        return Err(Error::not_permitted(format!(
            "{what} is for people, not agents"
        )));
    }
    Ok(())
}

/// The users whose records `caller` asks for: `who`, which must be visible to it, or (none
/// named) everyone in `all` for those who see everyone, else the caller's own user.
pub fn users_asked(
    caller: &Caller,
    own: &UserName,
    who: Option<&str>,
    all: impl FnOnce() -> Vec<UserName>,
) -> Result<Vec<UserName>, Error> {
    match who {
        Some(u) => {
            let u = UserName::new(u).map_err(|e| Error::invalid(e.to_string()))?;
            if !may_see_user(caller, &u) {
                return Err(Error::denied(
                    "only operators and admins see other users' records",
                ));
            }
            Ok(vec![u])
        }
        None if sees_everyone(caller) => Ok(all()),
        None => Ok(vec![own.clone()]),
    }
}

/// Who a spawn by `caller` runs for: a person spawns for themselves (users and up); an agent
/// spawns only children, through its `agent/spawn` tool (`parent` is then its own process);
/// kernel code names the user by spawning as that user's caller.
pub fn spawn_for(caller: &Caller, parent: Option<&Process>) -> Result<UserName, Error> {
    match (&caller.principal, parent) {
        (Principal::Kernel, _) => Err(Error::invalid(
            "the kernel spawns as the user it spawns for (ConfigStore caller_for)",
        )),
        (Principal::Agent { pid, .. }, Some(p)) if p.pid == *pid => Ok(p.user.clone()),
        (Principal::Agent { .. }, _) => Err(Error::not_permitted(
            "agents spawn with the agent/spawn tool, as children of themselves",
        )),
        (Principal::User(u), None) => {
            require(caller, Role::User, "spawning agents")?;
            Ok(u.clone())
        }
        (Principal::User(_), Some(_)) => Err(Error::invalid(
            "a person spawns top-level agents; children are spawned by their parent agent",
        )),
    }
}

/// Whether `caller` may see every user's things (not only its own).
pub fn sees_everyone(caller: &Caller) -> bool {
    match &caller.principal {
        Principal::Kernel => true,
        Principal::User(_) => caller.role >= Role::Operator,
        Principal::Agent { .. } => false,
    }
}

/// The refusal for a process that does not exist or that the caller may not see: the same
/// words either way, so nobody learns which agents another user runs.
pub fn no_process(pid: Pid) -> Error {
    Error::not_found(format!(
        "no process {pid} (`ls /proc` or `avix client agent list` shows the ones you may see)"
    ))
}

/// `p` if `caller` may see it, else [`no_process`].
pub fn visible<'a>(caller: &Caller, p: &'a Process) -> Result<&'a Process, Error> {
    if may_see_user(caller, &p.user) {
        Ok(p)
    } else {
        Err(no_process(p.pid))
    }
}

/// Whether `caller` may signal `p`: it must see it; an agent signals only its descendants;
/// guests never signal.
pub fn check_signal(caller: &Caller, procs: &ProcessTable, p: &Process) -> Result<(), Error> {
    visible(caller, p)?;
    match &caller.principal {
        Principal::Kernel => Ok(()),
        Principal::Agent { pid, .. } if *pid == p.pid || !procs.is_ancestor(*pid, p.pid) => Err(
            Error::denied(format!("process {} is not a child of this agent", p.pid)),
        ),
        _ if caller.role == Role::Guest => Err(Error::denied("guests cannot signal processes")),
        _ => Ok(()),
    }
}

/// Whether a subscriber (`role`, `user`) may see an event about `owner` (`None`: about no
/// user) named `event`: `sys.*` events are for operators.
pub fn may_see_event(role: Role, user: &str, event: EventName, owner: Option<&str>) -> bool {
    let everyone = role >= Role::Operator;
    if event == EventName::SysLog && !everyone {
        return false;
    }
    owner.is_none_or(|o| everyone || o == user)
}

#[cfg(test)]
mod tests {
    use avix_vfs::Door;

    use super::*;

    fn person(name: &str, role: Role) -> Caller {
        Caller::user(UserName::new(name).unwrap(), role, Vec::new(), Door::Atp)
    }

    fn agent(name: &str, pid: u64) -> Caller {
        Caller {
            principal: Principal::Agent {
                user: UserName::new(name).unwrap(),
                pid: Pid::new(pid),
            },
            role: Role::Admin,
            crews: Vec::new(),
            door: Door::Ipc,
        }
    }

    #[test]
    fn people_see_their_own_and_operators_everyone_s() {
        let alice = UserName::new("alice").unwrap();
        assert!(may_see_user(&person("alice", Role::Guest), &alice));
        assert!(!may_see_user(&person("bob", Role::User), &alice));
        assert!(may_see_user(&person("bob", Role::Operator), &alice));
        assert!(may_see_user(&Caller::kernel(), &alice));
        // An agent sees its user's things only, whatever the user's role.
        assert!(may_see_user(&agent("alice", 7), &alice));
        assert!(!may_see_user(&agent("bob", 7), &alice));
        assert!(!sees_everyone(&agent("root", 7)));
        assert!(sees_everyone(&person("ops", Role::Operator)));
        assert!(!sees_everyone(&person("u", Role::User)));
    }

    #[test]
    fn roles_climb_the_ladder_and_agents_never_run_the_daemon() {
        assert!(require(&person("u", Role::User), Role::User, "x").is_ok());
        let e = require(&person("g", Role::Guest), Role::User, "proc spawn").unwrap_err();
        assert_eq!(e.kind, avix_proto::ErrorKind::Denied);
        assert_eq!(
            e.message,
            "proc spawn needs the role user or higher; you are guest"
        );
        assert!(control_services(&person("o", Role::Operator)).is_ok());
        assert!(control_services(&person("u", Role::User)).is_err());
        assert!(install_services(&person("o", Role::Operator)).is_err());
        assert!(install_services(&person("a", Role::Admin)).is_ok());
        let e = control_services(&agent("root", 9)).unwrap_err();
        assert_eq!(e.kind, avix_proto::ErrorKind::NotPermitted);
        assert!(system_secrets(&agent("root", 9)).is_err());
        assert!(require(&Caller::kernel(), Role::Admin, "x").is_ok());
    }

    #[test]
    fn people_spawn_for_themselves_and_agents_only_children() {
        use avix_proto::ErrorKind;
        let alice = person("alice", Role::User);
        assert_eq!(spawn_for(&alice, None).unwrap().as_str(), "alice");
        let e = spawn_for(&person("gus", Role::Guest), None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Denied);
        // An agent writing to /proc/spawn (no parent process): not its way to spawn.
        let e = spawn_for(&agent("alice", 7), None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotPermitted);
        assert_eq!(
            spawn_for(&Caller::kernel(), None).unwrap_err().kind,
            ErrorKind::Invalid
        );
    }

    #[test]
    fn records_of_other_users_are_for_operators() {
        let alice = UserName::new("alice").unwrap();
        let all = || {
            vec![
                UserName::new("alice").unwrap(),
                UserName::new("bob").unwrap(),
            ]
        };
        let u = person("alice", Role::User);
        assert_eq!(
            users_asked(&u, &alice, None, all).unwrap(),
            vec![alice.clone()]
        );
        assert_eq!(
            users_asked(&u, &alice, Some("alice"), all).unwrap(),
            vec![alice.clone()]
        );
        let e = users_asked(&u, &alice, Some("bob"), all).unwrap_err();
        assert_eq!(e.kind, avix_proto::ErrorKind::Denied);
        let ops = person("olga", Role::Operator);
        assert_eq!(users_asked(&ops, &alice, None, all).unwrap().len(), 2);
        let e = users_asked(&ops, &alice, Some("no body"), all).unwrap_err();
        assert_eq!(e.kind, avix_proto::ErrorKind::Invalid);
    }

    #[test]
    fn unseen_and_missing_processes_read_the_same() {
        assert_eq!(
            no_process(Pid::new(42)).kind,
            avix_proto::ErrorKind::NotFound
        );
        assert!(
            no_process(Pid::new(42))
                .message
                .starts_with("no process 42 ")
        );
    }

    #[test]
    fn events_follow_the_owner_and_sys_events_are_for_operators() {
        assert!(may_see_event(
            Role::User,
            "alice",
            EventName::AgentStatus,
            Some("alice")
        ));
        assert!(!may_see_event(
            Role::User,
            "bob",
            EventName::AgentStatus,
            Some("alice")
        ));
        assert!(may_see_event(
            Role::Operator,
            "bob",
            EventName::AgentStatus,
            Some("alice")
        ));
        assert!(may_see_event(
            Role::User,
            "bob",
            EventName::ToolChanged,
            None
        ));
        assert!(!may_see_event(Role::User, "bob", EventName::SysLog, None));
        assert!(may_see_event(
            Role::Operator,
            "bob",
            EventName::SysLog,
            None
        ));
    }
}
