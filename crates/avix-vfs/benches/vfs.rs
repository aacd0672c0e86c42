//! VFS micro-benchmarks: a small-file read in-process (the cached path), path resolution,
//! and a synthetic-file render. Run: `cargo bench -p avix-vfs`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use avix_proto::{Role, UserName};
use avix_vfs::{Caller, Door, LocalStorage, SynthFile, Vfs, VfsPath};
use criterion::{Criterion, criterion_group, criterion_main};

fn setup() -> (tempfile::TempDir, Vfs, Caller) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("alice/workspace")).unwrap();
    let vfs = Vfs::builder()
        .mount_storage(
            VfsPath::parse("/users").unwrap(),
            Arc::new(LocalStorage::new(dir.path()).unwrap()),
        )
        .mount_storage(
            VfsPath::parse("/bin").unwrap(),
            Arc::new(avix_vfs::MemoryStorage::new()),
        )
        .mount_storage(
            VfsPath::parse("/etc/avix").unwrap(),
            Arc::new(avix_vfs::MemoryStorage::new()),
        )
        .mount_storage(
            VfsPath::parse("/crews").unwrap(),
            Arc::new(avix_vfs::MemoryStorage::new()),
        )
        .mount_storage(
            VfsPath::parse("/services").unwrap(),
            Arc::new(avix_vfs::MemoryStorage::new()),
        )
        .mount_synthetic(VfsPath::parse("/proc").unwrap())
        .mount_synthetic(VfsPath::parse("/kernel").unwrap())
        .mount_sealed(VfsPath::parse("/secrets").unwrap())
        .build();
    let alice = Caller::user(
        UserName::new("alice").unwrap(),
        Role::User,
        vec![],
        Door::Kernel,
    );
    (dir, vfs, alice)
}

fn benches(c: &mut Criterion) {
    let (_dir, vfs, alice) = setup();
    let file = VfsPath::parse("/users/alice/workspace/notes.md").unwrap();
    vfs.write(&alice, &file, &[b'x'; 512]).unwrap();
    vfs.read(&alice, &file).unwrap();
    c.bench_function("vfs_read_small_file_cached", |b| {
        b.iter(|| vfs.read(&alice, black_box(&file)).unwrap())
    });

    c.bench_function("path_parse_canonical", |b| {
        b.iter(|| VfsPath::parse(black_box("/users/alice/workspace/notes.md")).unwrap())
    });
    c.bench_function("path_parse_normalise", |b| {
        b.iter(|| {
            VfsPath::parse(black_box("/users/alice/./workspace//drafts/../notes.md")).unwrap()
        })
    });
    c.bench_function("vfs_stat_resolve_and_check", |b| {
        b.iter(|| vfs.stat(&alice, black_box(&file)).unwrap())
    });

    let status = VfsPath::parse("/proc/status.yaml").unwrap();
    vfs.publish(
        &status,
        SynthFile::computed(|_| {
            Ok(format!(
                "apiVersion: avix/v1\nkind: SystemStatus\nspec:\n  uptimeSecs: {}\n  agents: 3\n",
                42
            )
            .into())
        }),
    )
    .unwrap();
    c.bench_function("synthetic_render_read", |b| {
        b.iter(|| vfs.read(&alice, black_box(&status)).unwrap())
    });
}

criterion_group!(vfs_benches, benches);
criterion_main!(vfs_benches);
