//! The VFS checked against a simple reference model over random sequences of create, write,
//! truncate, rename, unlink, mkdir and rmdir, on both the memory and the local-disk driver.
//! Shrunk failures are frozen below as `regression_*` tests.

use std::collections::BTreeMap;

use avix_vfs::{Caller, EntryKind, OpenOptions, VfsError, VfsPath};
use proptest::prelude::*;

use crate::common::layout;

const BASE: &str = "/users/alice/workspace";

#[derive(Debug, Clone)]
enum Op {
    Create(String),
    Write(String, u16, Vec<u8>),
    Truncate(String, u16),
    Rename(String, String),
    Unlink(String),
    Mkdir(String),
    Rmdir(String),
}

/// `None` is a directory.
type Model = BTreeMap<String, Option<Vec<u8>>>;

fn name() -> impl Strategy<Value = String> {
    prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(str::to_owned)
}

fn rel() -> impl Strategy<Value = String> {
    prop::collection::vec(name(), 1..=3).prop_map(|v| v.join("/"))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        rel().prop_map(Op::Create),
        (rel(), 0u16..64, prop::collection::vec(any::<u8>(), 0..16))
            .prop_map(|(p, o, d)| Op::Write(p, o, d)),
        (rel(), 0u16..64).prop_map(|(p, l)| Op::Truncate(p, l)),
        (rel(), rel()).prop_map(|(a, b)| Op::Rename(a, b)),
        rel().prop_map(Op::Unlink),
        rel().prop_map(Op::Mkdir),
        rel().prop_map(Op::Rmdir),
    ]
}

fn parent(p: &str) -> &str {
    p.rfind('/').map_or("", |i| &p[..i])
}

/// The errno the model expects, with ENOTDIR folded into ENOENT (drivers differ on which one a
/// path through a file gives).
fn fold(e: i32) -> i32 {
    if e == libc::ENOTDIR { libc::ENOENT } else { e }
}

fn parent_ok(m: &Model, p: &str) -> Result<(), i32> {
    let par = parent(p);
    if par.is_empty() {
        return Ok(());
    }
    match m.get(par) {
        Some(None) => Ok(()),
        Some(Some(_)) => Err(libc::ENOENT),
        None => parent_ok(m, par).and(Err(libc::ENOENT)),
    }
}

fn apply_model(m: &mut Model, op: &Op) -> Result<(), i32> {
    match op {
        Op::Create(p) => {
            parent_ok(m, p)?;
            match m.get(p) {
                Some(None) => Err(libc::EISDIR),
                Some(Some(_)) => Ok(()),
                None => {
                    m.insert(p.clone(), Some(Vec::new()));
                    Ok(())
                }
            }
        }
        Op::Write(p, off, data) => {
            parent_ok(m, p)?;
            match m.get_mut(p) {
                Some(Some(_)) if data.is_empty() => Ok(()),
                Some(Some(content)) => {
                    let off = usize::from(*off);
                    if content.len() < off + data.len() {
                        content.resize(off + data.len(), 0);
                    }
                    content[off..off + data.len()].copy_from_slice(data);
                    Ok(())
                }
                Some(None) => Err(libc::EISDIR),
                None => Err(libc::ENOENT),
            }
        }
        Op::Truncate(p, len) => {
            parent_ok(m, p)?;
            match m.get_mut(p) {
                Some(Some(content)) => {
                    content.resize(usize::from(*len), 0);
                    Ok(())
                }
                Some(None) => Err(libc::EISDIR),
                None => Err(libc::ENOENT),
            }
        }
        Op::Unlink(p) => {
            parent_ok(m, p)?;
            match m.get(p) {
                Some(Some(_)) => {
                    m.remove(p);
                    Ok(())
                }
                Some(None) => Err(libc::EISDIR),
                None => Err(libc::ENOENT),
            }
        }
        Op::Mkdir(p) => {
            parent_ok(m, p)?;
            if m.contains_key(p) {
                return Err(libc::EEXIST);
            }
            m.insert(p.clone(), None);
            Ok(())
        }
        Op::Rmdir(p) => {
            parent_ok(m, p)?;
            match m.get(p) {
                Some(None) => {
                    let prefix = format!("{p}/");
                    if m.keys().any(|k| k.starts_with(&prefix)) {
                        return Err(libc::ENOTEMPTY);
                    }
                    m.remove(p);
                    Ok(())
                }
                Some(Some(_)) => Err(libc::ENOTDIR),
                None => Err(libc::ENOENT),
            }
        }
        Op::Rename(a, b) => {
            parent_ok(m, a)?;
            let src = m.get(a).cloned().ok_or(libc::ENOENT)?;
            parent_ok(m, b)?;
            if a == b {
                return Ok(());
            }
            if a.starts_with(&format!("{b}/")) {
                return Err(libc::ENOTEMPTY);
            }
            if b.starts_with(&format!("{a}/")) {
                return Err(libc::EINVAL);
            }
            match (&src, m.get(b)) {
                (Some(_), Some(None)) => return Err(libc::EISDIR),
                (None, Some(Some(_))) => return Err(libc::ENOTDIR),
                (None, Some(None)) if m.keys().any(|k| k.starts_with(&format!("{b}/"))) => {
                    return Err(libc::ENOTEMPTY);
                }
                _ => {}
            }
            let sub = format!("{a}/");
            let moved: Vec<(String, Option<Vec<u8>>)> = m
                .iter()
                .filter(|(k, _)| k.starts_with(&sub))
                .map(|(k, v)| (format!("{b}/{}", &k[sub.len()..]), v.clone()))
                .collect();
            m.retain(|k, _| k != a && !k.starts_with(&sub));
            m.insert(b.clone(), src);
            m.extend(moved);
            Ok(())
        }
    }
}

fn vp(rel: &str) -> VfsPath {
    VfsPath::parse(&format!("{BASE}/{rel}")).unwrap()
}

fn apply_vfs(vfs: &avix_vfs::Vfs, op: &Op) -> Result<(), i32> {
    let k = Caller::kernel();
    let r: Result<(), VfsError> = match op {
        Op::Create(p) => vfs
            .open(
                &k,
                &vp(p),
                OpenOptions {
                    write: true,
                    create: true,
                    ..Default::default()
                },
            )
            .and_then(|(h, _)| vfs.release(h)),
        Op::Write(p, off, data) => vfs
            .open(
                &k,
                &vp(p),
                OpenOptions {
                    write: true,
                    ..Default::default()
                },
            )
            .and_then(|(h, _)| {
                let w = vfs.write_at(h, u64::from(*off), data).map(drop);
                let r = vfs.release(h);
                w.and(r)
            }),
        Op::Truncate(p, len) => vfs.truncate(&k, &vp(p), u64::from(*len)),
        Op::Rename(a, b) => vfs.rename(&k, &vp(a), &vp(b)),
        Op::Unlink(p) => vfs.remove_file(&k, &vp(p)),
        Op::Mkdir(p) => vfs.create_dir(&k, &vp(p)),
        Op::Rmdir(p) => vfs.remove_dir(&k, &vp(p)),
    };
    r.map_err(|e| e.errno())
}

/// Reads the whole tree back through the VFS.
fn snapshot(vfs: &avix_vfs::Vfs) -> Model {
    fn walk(vfs: &avix_vfs::Vfs, rel: &str, out: &mut Model) {
        let k = Caller::kernel();
        let dir = if rel.is_empty() {
            VfsPath::parse(BASE).unwrap()
        } else {
            vp(rel)
        };
        for e in vfs.list(&k, &dir).unwrap() {
            let child = if rel.is_empty() {
                e.name.clone()
            } else {
                format!("{rel}/{}", e.name)
            };
            match e.kind {
                EntryKind::Dir => {
                    out.insert(child.clone(), None);
                    walk(vfs, &child, out);
                }
                EntryKind::File => {
                    out.insert(
                        child.clone(),
                        Some(vfs.read(&k, &vp(&child)).unwrap().to_vec()),
                    );
                }
            }
        }
    }
    let mut m = Model::new();
    walk(vfs, "", &mut m);
    m
}

fn check(ops: &[Op], local: bool) -> Result<(), TestCaseError> {
    let l = layout(local);
    let mut model = Model::new();
    for (i, op) in ops.iter().enumerate() {
        let want = apply_model(&mut model, op).map_err(fold);
        let got = apply_vfs(&l.vfs, op).map_err(fold);
        prop_assert_eq!(got, want, "step {} {:?} (local: {})", i, op, local);
        prop_assert_eq!(&snapshot(&l.vfs), &model, "state after step {} {:?}", i, op);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn memory_driver_matches_the_model(ops in prop::collection::vec(op(), 1..40)) {
        check(&ops, false)?;
    }

    #[test]
    fn local_driver_matches_the_model(ops in prop::collection::vec(op(), 1..25)) {
        check(&ops, true)?;
    }
}

fn regression(ops: &[Op]) {
    for local in [false, true] {
        check(ops, local).unwrap();
    }
}

fn s(x: &str) -> String {
    x.to_owned()
}

#[test]
fn regression_rename_missing_dir_into_itself_is_enoent() {
    regression(&[Op::Rename(s("a"), s("a/a"))]);
}

#[test]
fn regression_rename_file_below_itself_is_enotdir() {
    regression(&[Op::Create(s("b")), Op::Rename(s("b"), s("b/a"))]);
}

#[test]
fn regression_rename_dir_into_missing_subdir_is_enoent() {
    regression(&[Op::Mkdir(s("a")), Op::Rename(s("a"), s("a/a/a"))]);
}

#[test]
fn regression_rename_dir_below_a_file_in_itself_is_enotdir() {
    regression(&[
        Op::Mkdir(s("b")),
        Op::Create(s("b/a")),
        Op::Rename(s("b"), s("b/a/a")),
    ]);
}

#[test]
fn regression_empty_write_past_the_end_changes_nothing() {
    regression(&[Op::Create(s("b")), Op::Write(s("b"), 1, vec![])]);
}

#[test]
fn regression_rename_onto_an_ancestor_is_enotempty() {
    regression(&[
        Op::Mkdir(s("a")),
        Op::Create(s("a/b")),
        Op::Rename(s("a/b"), s("a")),
    ]);
}
