//! Edits made directly on the host disk under `ROOT/etc` and `ROOT/data` reach the VFS: its
//! cache drops the stale content, the mount's page cache is invalidated, and configuration
//! files are reloaded (an invalid edit is logged and the old configuration stays).

use std::sync::Arc;

use avix_kernel::Kernel;
use avix_vfs::ChangeKind;
use avix_vfs::access::TEMP_PREFIX;
use notify::event::{EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

/// Keeps the watcher alive.
pub struct DiskWatcher {
    _watcher: RecommendedWatcher,
}

impl std::fmt::Debug for DiskWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiskWatcher")
    }
}

/// Starts watching the root of `kernel`.
pub fn start(kernel: &Arc<Kernel>) -> notify::Result<DiskWatcher> {
    let weak = Arc::downgrade(kernel);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        let Some(kernel) = weak.upgrade() else { return };
        let kind = match event.kind {
            EventKind::Create(_) => ChangeKind::Created,
            EventKind::Remove(_) => ChangeKind::Removed,
            EventKind::Modify(ModifyKind::Metadata(_)) | EventKind::Access(_) => return,
            EventKind::Modify(_) => ChangeKind::Modified,
            EventKind::Any | EventKind::Other => ChangeKind::Modified,
        };
        for path in &event.paths {
            let temp = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(TEMP_PREFIX));
            if temp {
                continue;
            }
            if let Some(vp) = kernel.layout().vfs_path_of(path) {
                kernel.vfs().external_change(&vp, kind.clone());
            }
        }
    })?;
    let layout = kernel.layout();
    watcher.watch(&layout.etc(), RecursiveMode::NonRecursive)?;
    for (_, dir) in layout
        .trees()
        .into_iter()
        .filter(|(p, _)| p.as_str() != "/etc/avix")
    {
        watcher.watch(&dir, RecursiveMode::Recursive)?;
    }
    Ok(DiskWatcher { _watcher: watcher })
}
