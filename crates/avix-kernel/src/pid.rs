//! PIDs: small integers, allocated monotonically and never reused within one installation.
//! The high-water mark is persisted in `ROOT/state/pid.next` in blocks, so a spawn costs no
//! disk write except once per block, and a restart continues above every PID ever handed out.

use std::path::PathBuf;
use std::sync::Mutex;

/// The first PID handed to an agent (lower numbers are kept for the kernel).
pub const FIRST_PID: Pid = Pid::new(100);
/// PIDs reserved per persisted block.
const BLOCK: u64 = 1024;

pub use avix_proto::Pid;

/// Allocates PIDs.
#[derive(Debug)]
pub struct PidAllocator {
    path: PathBuf,
    // (next to hand out, end of the reserved block)
    state: Mutex<(u64, u64)>,
}

impl PidAllocator {
    /// Opens the allocator persisted at `path` (created on first use).
    pub fn open(path: PathBuf) -> std::io::Result<Self> {
        let next = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<u64>().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is corrupt: {s:?}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FIRST_PID.get(),
            Err(e) => return Err(e),
        };
        let next = next.max(FIRST_PID.get());
        Ok(Self {
            path,
            state: Mutex::new((next, next)),
        })
    }

    /// The next PID.
    pub fn allocate(&self) -> std::io::Result<Pid> {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if s.0 >= s.1 {
            let end = s.0 + BLOCK;
            write_durable(&self.path, &end.to_string())?;
            s.1 = end;
        }
        let pid = Pid::new(s.0);
        s.0 += 1;
        Ok(pid)
    }
}

fn write_durable(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    // Atomic, durable, and no temp file left when the disk is full.
    crate::fsutil::write_atomic(path, text.as_bytes(), 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_are_never_reused_across_restarts() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state/pid.next");
        let a = PidAllocator::open(p.clone()).unwrap();
        let first: Vec<_> = (0..3).map(|_| a.allocate().unwrap()).collect();
        assert_eq!(first, [100, 101, 102]);
        drop(a);
        let b = PidAllocator::open(p.clone()).unwrap();
        assert!(b.allocate().unwrap() > Pid::new(102));
        std::fs::write(&p, "garbage").unwrap();
        assert!(PidAllocator::open(p).is_err());
    }
}
