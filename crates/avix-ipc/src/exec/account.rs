//! The host account sandboxes run as.
//!
//! A daemon running as root must not start bubblewrap as root: the sandbox's uid would map to
//! host root, so what it creates in the workspace (a bind of a host directory) would belong to
//! root, and `chmod 4755` on a copy of a shell would leave a set-user-ID-root program on the
//! host. So bubblewrap runs as a dedicated unprivileged account (`exec.sandboxUser`,
//! `avix-sandbox` by default, created here when missing), which owns the workspaces on disk.
//! A daemon that is not root runs sandboxes as itself.

use std::process::Command;
use std::time::Duration;

use nix::unistd::User;

/// The account bubblewrap runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxAccount {
    /// Its name.
    pub name: String,
    /// Host uid.
    pub uid: u32,
    /// Host gid (its own group).
    pub gid: u32,
}

fn lookup(name: &str) -> Result<Option<SandboxAccount>, String> {
    match User::from_name(name) {
        Ok(Some(u)) if u.uid.is_root() || u.gid.as_raw() == 0 => Err(format!(
            "the sandbox account {name} is root or in group root: set kernel.yaml exec.sandboxUser to an unprivileged account"
        )),
        Ok(Some(u)) => Ok(Some(SandboxAccount {
            name: name.to_owned(),
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        })),
        Ok(None) => Ok(None),
        Err(e) => Err(format!("cannot look up the sandbox account {name}: {e}")),
    }
}

/// The account sandboxes run as: `None` when the daemon is not root (sandboxes then run as
/// the daemon's own uid). Creates the account (a system user with its own group, no home, no
/// shell) when it is missing.
pub(crate) fn ensure(name: &str) -> Result<Option<SandboxAccount>, String> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    if let Some(a) = lookup(name)? {
        return Ok(Some(a));
    }
    let hint = format!(
        "create it with `useradd --system --user-group --no-create-home --shell /usr/sbin/nologin {name}`, then restart the daemon"
    );
    let mut last = String::new();
    // Another daemon on this host may be creating it at the same moment (useradd then fails
    // on its lock): look again before giving up.
    for attempt in 0..5 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(200 * attempt));
        }
        match Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                "Avix exec sandbox",
                name,
            ])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output()
        {
            Ok(out) => last = String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            Err(e) => last = format!("cannot run useradd: {e}"),
        }
        if let Some(a) = lookup(name)? {
            tracing::info!(account = name, uid = a.uid, "created the sandbox account");
            return Ok(Some(a));
        }
    }
    Err(format!(
        "the sandbox account {name} is missing and could not be created ({last}): {hint}"
    ))
}
