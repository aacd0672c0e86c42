//! Shared helpers: a VFS laid out like the daemon's, on memory or local storage.

use std::sync::Arc;

use avix_proto::{CrewName, Role, UserName};
use avix_vfs::{Caller, Door, LocalStorage, MemoryStorage, Storage, Vfs, VfsPath, WriteGuard};

pub(crate) fn p(s: &str) -> VfsPath {
    VfsPath::parse(s).unwrap()
}

pub(crate) fn user(name: &str, role: Role) -> Caller {
    Caller::user(
        UserName::new(name).unwrap(),
        role,
        vec![CrewName::new("team").unwrap()],
        Door::Atp,
    )
}

/// Refuses any content that does not start with `ok`, and the removal of `keep.yaml`.
pub(crate) struct OkGuard;

impl WriteGuard for OkGuard {
    fn check_content(&self, _path: &VfsPath, content: &[u8]) -> Result<(), avix_proto::Error> {
        if content.starts_with(b"ok") {
            Ok(())
        } else {
            Err(avix_proto::Error::invalid("content must start with ok"))
        }
    }
    fn check_remove(&self, path: &VfsPath) -> Result<(), avix_proto::Error> {
        if path.file_name() == Some("keep.yaml") {
            Err(avix_proto::Error::invalid("keep.yaml is required"))
        } else {
            Ok(())
        }
    }
}

pub(crate) struct Layout {
    pub vfs: Vfs,
    pub _dir: Option<tempfile::TempDir>,
}

fn storage(dir: Option<&std::path::Path>, sub: &str) -> Arc<dyn Storage> {
    match dir {
        Some(d) => {
            let root = d.join(sub);
            std::fs::create_dir_all(&root).unwrap();
            Arc::new(LocalStorage::new(root).unwrap())
        }
        None => Arc::new(MemoryStorage::new()),
    }
}

/// `/users`, `/etc/avix` (guarded), `/proc` (synthetic), `/secrets` (sealed).
pub(crate) fn layout(local: bool) -> Layout {
    let dir = local.then(|| tempfile::tempdir().unwrap());
    let d = dir.as_ref().map(|d| d.path());
    let vfs = Vfs::builder()
        .mount_storage(p("/users"), storage(d, "users"))
        .mount_storage(p("/etc/avix"), storage(d, "etc"))
        .mount_storage(p("/crews"), storage(d, "crews"))
        .mount_synthetic(p("/proc"))
        .mount_sealed(p("/secrets"))
        .guard(p("/etc/avix"), Arc::new(OkGuard))
        .build();
    let k = Caller::kernel();
    for d in [
        "/users/alice",
        "/users/alice/workspace",
        "/users/bob",
        "/users/bob/workspace",
    ] {
        vfs.create_dir(&k, &p(d)).unwrap();
    }
    vfs.write(&k, &p("/etc/avix/keep.yaml"), b"ok: 1").unwrap();
    Layout { vfs, _dir: dir }
}
