//! Ended processes stay in the table and in `/proc` for a while, then are reaped.

use std::sync::Arc;

use crate::pid::Pid;
use crate::process::Process;
use crate::{EXITED_RETENTION, Kernel, MAX_EXITED, procfs};

impl Kernel {
    /// Reaps `pid` after [`EXITED_RETENTION`] (or at once, oldest first, past
    /// [`MAX_EXITED`] exited processes).
    pub fn schedule_reap(self: &Arc<Self>, pid: Pid) {
        self.pipes.close_for(pid);
        let exited: Vec<Arc<Process>> = self
            .procs
            .all()
            .into_iter()
            .filter(|p| p.state().is_terminal())
            .collect();
        if exited.len() > MAX_EXITED {
            for p in exited.iter().take(exited.len() - MAX_EXITED) {
                self.reap(p.pid);
            }
        }
        let weak = Arc::downgrade(self);
        self.rt.spawn(async move {
            tokio::time::sleep(EXITED_RETENTION).await;
            if let Some(k) = weak.upgrade() {
                k.reap(pid);
            }
        });
    }

    /// Removes an exited process from the table and from `/proc`.
    pub fn reap(&self, pid: Pid) {
        if self.procs.get(pid).is_some_and(|p| p.state().is_terminal()) {
            self.procs.remove(pid);
            procfs::unpublish_process(self, pid);
            self.hil.forget(pid);
            self.pipes.forget(pid);
            self.jobs.forget(pid);
        }
    }
}
