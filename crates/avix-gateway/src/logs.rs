//! The ring of recent log lines behind `sys logs`, fed by the daemon's logger. Once a kernel
//! is attached, each line is also published as a `sys.log` event (operators only), which is
//! how `avix client logs --follow` follows the daemon.

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock, Weak};

use avix_kernel::Kernel;

/// Lines kept.
pub const LINES: usize = 2000;

/// Recent log lines.
#[derive(Debug, Default)]
pub struct LogRing {
    lines: Mutex<VecDeque<String>>,
    kernel: OnceLock<Weak<Kernel>>,
}

impl LogRing {
    /// Publishes lines as events from now on.
    pub fn attach(&self, kernel: Weak<Kernel>) {
        let _ = self.kernel.set(kernel);
    }

    /// Adds a line.
    pub fn push(&self, level: &str, target: &str, line: String) {
        if let Some(k) = self.kernel.get().and_then(Weak::upgrade) {
            k.events().publish_to(
                None,
                &avix_proto::event::LogLine {
                    level: level.to_owned(),
                    target: target.to_owned(),
                    line: line.clone(),
                },
            );
        }
        let mut l = self
            .lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if l.len() == LINES {
            l.pop_front();
        }
        l.push_back(line);
    }

    /// The last `n` lines, oldest first.
    pub fn recent(&self, n: usize) -> Vec<String> {
        let l = self
            .lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        l.iter().skip(l.len().saturating_sub(n)).cloned().collect()
    }
}
