//! Host processes the daemon starts (services, MCP servers) must not outlive it: they hold
//! secrets in their environment and tokens of a boot that is gone, and a restarted daemon
//! would start a second copy next to them.
//!
//! Two measures:
//! - [`die_with_daemon`]: the child asks the kernel for SIGKILL when its parent dies
//!   (`PR_SET_PDEATHSIG`), so a daemon killed with SIGKILL takes its direct children along.
//! - [`Leftovers`]: each child's process group and start time are recorded in
//!   `ROOT/state/children/` (root-only: a service cannot forge an entry to make the daemon kill
//!   someone else's processes); at start, every group whose leader is still the recorded
//!   process (same pid, same start time) is killed, grandchildren included.

use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Makes the child started by `cmd` die (SIGKILL) with the daemon.
pub fn die_with_daemon(cmd: &mut tokio::process::Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec the closure only calls async-signal-safe functions
    // (prctl, getppid, kill). It runs after any uid change std makes, which would otherwise
    // clear the death signal again.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The daemon may have died before the prctl: then nobody would send the signal.
            if libc::getppid() != parent {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            Ok(())
        });
    }
}

/// The start time of `pid` (clock ticks since boot, field 22 of `/proc/<pid>/stat`).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// The record of the children one daemon started, under `ROOT/state/children`.
#[derive(Debug, Clone)]
pub struct Leftovers {
    dir: PathBuf,
}

impl Leftovers {
    /// The records of the root whose state directory is `state`.
    pub fn new(state: &Path) -> Self {
        Self {
            dir: state.join("children"),
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{}.pid", name.replace('/', "%")))
    }

    /// Records the child `name` (a process-group leader) as running.
    pub fn record(&self, name: &str, pid: Option<u32>) {
        let Some(pid) = pid else { return };
        let Some(start) = start_time(pid) else { return };
        let r = std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(self.file(name), format!("{pid} {start}\n")));
        if let Err(e) = r {
            tracing::warn!(child = name, error = %e, "cannot record a child process");
        }
    }

    /// Forgets `name` (it ended, or was stopped).
    pub fn forget(&self, name: &str) {
        let _ = std::fs::remove_file(self.file(name));
    }

    /// Kills every recorded child that is still running, with its process group, and clears
    /// the records. Returns the names of those it killed.
    pub fn kill_all(&self) -> Vec<String> {
        let mut killed = Vec::new();
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let path = e.path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let _ = std::fs::remove_file(&path);
            let mut it = text.split_whitespace().map(str::parse::<u64>);
            let (Some(Ok(pid)), Some(Ok(start))) = (it.next(), it.next()) else {
                continue;
            };
            let Ok(pid) = u32::try_from(pid) else {
                continue;
            };
            if pid <= 1 || start_time(pid) != Some(start) {
                // Gone, or the pid now belongs to another process.
                continue;
            }
            let raw = pid as i32;
            let _ = kill(Pid::from_raw(-raw), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().replace('%', "/"))
                .unwrap_or_default();
            tracing::warn!(child = %name, pid, "killed a process left running by a daemon that died");
            killed.push(name);
        }
        killed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_recorded_group_is_killed_and_a_reused_pid_is_not() {
        let d = tempfile::tempdir().unwrap();
        let l = Leftovers::new(d.path());
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "sleep 60 & sleep 60"]).process_group(0);
        let mut child = cmd.spawn().unwrap();
        l.record("svc/one", child.id());
        // A record whose start time does not match: a pid reused by someone else.
        std::fs::write(l.file("other"), format!("{} 1\n", std::process::id())).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(l.kill_all(), ["svc/one"]);
        let st = tokio::time::timeout(std::time::Duration::from_secs(5), child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(!st.success());
        assert!(std::fs::read_dir(&l.dir).unwrap().next().is_none());
    }
}
