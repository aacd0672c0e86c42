//! The path API and open files, with access rules, guards, synthetic files and events.

use std::sync::{Arc, Mutex};

use avix_proto::{Role, UserName};
use avix_vfs::{Caller, ChangeKind, EntryKind, OpenOptions, SynthFile, VfsError, Writers};

use crate::common::{layout, p, user};

#[test]
fn users_read_and_write_their_own_workspace_only() {
    for local in [false, true] {
        let l = layout(local);
        let alice = user("alice", Role::User);
        let bob = user("bob", Role::User);
        let f = p("/users/alice/workspace/notes.md");
        l.vfs.write(&alice, &f, b"hello").unwrap();
        assert_eq!(&l.vfs.read(&alice, &f).unwrap()[..], b"hello");
        // What bob may not read is not there for him (issue 10 item 10).
        let e = l.vfs.read(&bob, &f).unwrap_err();
        assert_eq!(e.errno(), libc::ENOENT, "{e}");
        let e = l.vfs.stat(&bob, &f).unwrap_err();
        assert_eq!(e.errno(), libc::ENOENT, "{e}");
        assert!(l.vfs.write(&bob, &f, b"x").is_err());
        let names: Vec<_> = l
            .vfs
            .list(&alice, &p("/users/alice/workspace"))
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["notes.md"]);
    }
}

#[test]
fn root_lists_mount_points_and_virtual_dirs() {
    let l = layout(false);
    let alice = user("alice", Role::User);
    let names: Vec<_> = l
        .vfs
        .list(&alice, &p("/"))
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["crews", "etc", "proc", "secrets", "users"]);
    let st = l.vfs.stat(&alice, &p("/etc")).unwrap();
    assert_eq!(st.kind, EntryKind::Dir);
    assert!(l.vfs.create_dir(&Caller::kernel(), &p("/etc")).is_err());
}

#[test]
fn secrets_refuse_everyone() {
    let l = layout(false);
    let admin = user("root1", Role::Admin);
    assert!(l.vfs.stat(&admin, &p("/secrets")).is_ok());
    for e in [
        l.vfs.list(&admin, &p("/secrets")).unwrap_err(),
        l.vfs.read(&admin, &p("/secrets/alice/k.enc")).unwrap_err(),
        l.vfs
            .write(&Caller::kernel(), &p("/secrets/x"), b"x")
            .unwrap_err(),
    ] {
        assert_eq!(e.errno(), libc::EPERM, "{e}");
    }
}

#[test]
fn guard_refuses_bad_content_and_keeps_the_old_file() {
    for local in [false, true] {
        let l = layout(local);
        let admin = user("boss", Role::Admin);
        let f = p("/etc/avix/keep.yaml");
        let e = l.vfs.write(&admin, &f, b"broken").unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL);
        assert!(e.to_string().contains("content must start with ok"), "{e}");
        assert_eq!(&l.vfs.read(&admin, &f).unwrap()[..], b"ok: 1");
        // Through an open file: the whole content is checked at flush.
        let (h, _) = l.vfs.open(&admin, &f, OpenOptions::write_new()).unwrap();
        l.vfs.write_at(h, 0, b"bro").unwrap();
        l.vfs.write_at(h, 3, b"ken").unwrap();
        assert_eq!(l.vfs.flush(h).unwrap_err().errno(), libc::EINVAL);
        l.vfs.release(h).unwrap();
        assert_eq!(&l.vfs.read(&admin, &f).unwrap()[..], b"ok: 1");
        // Removing or renaming away a required file is refused; renaming bad content in too.
        assert_eq!(
            l.vfs.remove_file(&admin, &f).unwrap_err().errno(),
            libc::EINVAL
        );
        assert!(
            l.vfs
                .rename(&admin, &f, &p("/etc/avix/other.yaml"))
                .is_err()
        );
        l.vfs
            .write(&admin, &p("/etc/avix/new.yaml"), b"ok: 2")
            .unwrap();
        l.vfs
            .write(&Caller::kernel(), &p("/etc/avix/x.tmp"), b"ok: 3")
            .unwrap();
        l.vfs.rename(&admin, &p("/etc/avix/new.yaml"), &f).unwrap();
        assert_eq!(&l.vfs.read(&admin, &f).unwrap()[..], b"ok: 2");
        assert!(l.vfs.rejections() >= 3);
        assert_eq!(
            l.vfs
                .write(&user("alice", Role::User), &f, b"ok")
                .unwrap_err()
                .errno(),
            libc::EACCES
        );
    }
}

#[test]
fn writes_through_an_open_file_are_invisible_until_flush() {
    for local in [false, true] {
        let l = layout(local);
        let alice = user("alice", Role::User);
        let f = p("/users/alice/workspace/a.txt");
        l.vfs.write(&alice, &f, b"old").unwrap();
        assert_eq!(&l.vfs.read(&alice, &f).unwrap()[..], b"old");
        let (h, _) = l
            .vfs
            .open(
                &alice,
                &f,
                OpenOptions {
                    read: true,
                    write: true,
                    ..Default::default()
                },
            )
            .unwrap();
        l.vfs.write_at(h, 3, b"-new").unwrap();
        assert_eq!(
            &l.vfs.read_at(h, 0, 100).unwrap()[..],
            b"old-new",
            "the writer sees its own writes"
        );
        assert_eq!(
            &l.vfs.read(&alice, &f).unwrap()[..],
            b"old",
            "others see the committed file"
        );
        assert_eq!(l.vfs.stat_handle(h).unwrap().size, 7);
        l.vfs.flush(h).unwrap();
        assert_eq!(&l.vfs.read(&alice, &f).unwrap()[..], b"old-new");
        l.vfs.release(h).unwrap();
        assert_eq!(l.vfs.open_files(), 0);
        assert!(matches!(l.vfs.read_at(h, 0, 1), Err(VfsError::BadHandle)));
    }
}

#[test]
fn create_exclusive_and_truncate() {
    let l = layout(true);
    let alice = user("alice", Role::User);
    let f = p("/users/alice/workspace/b.txt");
    let (h, st) = l
        .vfs
        .open(
            &alice,
            &f,
            OpenOptions {
                write: true,
                create: true,
                exclusive: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(st.size, 0);
    assert!(l.vfs.stat(&alice, &f).is_ok(), "exists right after create");
    l.vfs.write_at(h, 0, b"abc").unwrap();
    l.vfs.release(h).unwrap();
    let e = l
        .vfs
        .open(
            &alice,
            &f,
            OpenOptions {
                write: true,
                create: true,
                exclusive: true,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.errno(), libc::EEXIST);
    l.vfs.truncate(&alice, &f, 1).unwrap();
    assert_eq!(&l.vfs.read(&alice, &f).unwrap()[..], b"a");
    let (h, _) = l.vfs.open(&alice, &f, OpenOptions::write_new()).unwrap();
    l.vfs.release(h).unwrap();
    assert_eq!(
        l.vfs.read(&alice, &f).unwrap().len(),
        0,
        "O_TRUNC with no write empties the file"
    );
}

#[test]
fn synthetic_files_render_per_open_and_control_files_reply() {
    let l = layout(false);
    let alice = user("alice", Role::User);
    let bob = user("bob", Role::User);
    let counter = Arc::new(Mutex::new(0u32));
    let c = counter.clone();
    l.vfs
        .publish(
            &p("/proc/counter"),
            SynthFile::computed(move |_| {
                let mut n = c.lock().unwrap();
                *n += 1;
                Ok(format!("{n}\n").into())
            }),
        )
        .unwrap();
    let (h, st) = l
        .vfs
        .open(&alice, &p("/proc/counter"), OpenOptions::read())
        .unwrap();
    assert!(st.synthetic);
    let first = l.vfs.read_at(h, 0, 100).unwrap();
    assert_eq!(
        l.vfs.read_at(h, 0, 100).unwrap(),
        first,
        "one open, one rendering"
    );
    l.vfs.release(h).unwrap();
    assert_ne!(l.vfs.read(&alice, &p("/proc/counter")).unwrap(), first);

    let owner = UserName::new("alice").unwrap();
    l.vfs.publish_dir(&p("/proc/57"), Some(owner)).unwrap();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let lg = log.clone();
    l.vfs
        .publish(
            &p("/proc/57/ctl"),
            SynthFile::control(
                |_| Ok("usage: pause|resume\n".into()),
                move |caller, data| {
                    let cmd = String::from_utf8_lossy(data).trim().to_owned();
                    if cmd != "pause" && cmd != "resume" {
                        return Err(VfsError::InvalidInput {
                            path: p("/proc/57/ctl"),
                            reason: format!("unknown command {cmd:?}"),
                        });
                    }
                    lg.lock().unwrap().push(format!("{caller}: {cmd}"));
                    Ok(Some(format!("ok {cmd}\n").into()))
                },
            )
            .writers(Writers::Owner),
        )
        .unwrap();
    let (h, _) = l
        .vfs
        .open(
            &alice,
            &p("/proc/57/ctl"),
            OpenOptions {
                read: true,
                write: true,
                truncate: true,
                ..Default::default()
            },
        )
        .unwrap();
    l.vfs.set_len(h, 0).unwrap();
    l.vfs.write_at(h, 0, b"pause\n").unwrap();
    assert_eq!(&l.vfs.read_at(h, 0, 100).unwrap()[..], b"ok pause\n");
    assert_eq!(
        l.vfs.write_at(h, 0, b"explode").unwrap_err().errno(),
        libc::EINVAL
    );
    l.vfs.release(h).unwrap();
    assert_eq!(log.lock().unwrap().len(), 1);
    assert_eq!(
        l.vfs
            .write(&bob, &p("/proc/57/ctl"), b"pause")
            .unwrap_err()
            .errno(),
        libc::ENOENT
    );
    assert!(
        l.vfs
            .list(&bob, &p("/proc"))
            .unwrap()
            .iter()
            .all(|e| e.name != "57"),
        "other users' entries are not listed"
    );
    assert!(
        l.vfs
            .list(&alice, &p("/proc"))
            .unwrap()
            .iter()
            .any(|e| e.name == "57")
    );
    assert_eq!(
        l.vfs
            .write(&alice, &p("/proc/counter"), b"1")
            .unwrap_err()
            .errno(),
        libc::EPERM
    );
    assert_eq!(
        l.vfs
            .open(&alice, &p("/proc/new"), OpenOptions::write_new())
            .unwrap_err()
            .errno(),
        libc::EPERM
    );
    assert!(l.vfs.unpublish(&p("/proc/57")));
    assert_eq!(
        l.vfs.stat(&alice, &p("/proc/57/ctl")).unwrap_err().errno(),
        libc::ENOENT
    );
}

#[test]
fn changes_are_announced_and_renames_across_trees_are_exdev() {
    let l = layout(false);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    l.vfs
        .subscribe(move |c| s.lock().unwrap().push((c.path.to_string(), c.kind.clone())));
    let admin = user("boss", Role::Admin);
    l.vfs
        .write(&admin, &p("/users/alice/workspace/x"), b"1")
        .unwrap();
    l.vfs
        .rename(
            &admin,
            &p("/users/alice/workspace/x"),
            &p("/users/alice/workspace/y"),
        )
        .unwrap();
    l.vfs
        .remove_file(&admin, &p("/users/alice/workspace/y"))
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen[0],
        ("/users/alice/workspace/x".into(), ChangeKind::Created)
    );
    assert!(matches!(seen[1].1, ChangeKind::Renamed { .. }));
    assert_eq!(seen[2].1, ChangeKind::Removed);
    l.vfs
        .write(&admin, &p("/users/alice/workspace/z"), b"1")
        .unwrap();
    let e = l
        .vfs
        .rename(&admin, &p("/users/alice/workspace/z"), &p("/crews/z"))
        .unwrap_err();
    assert_eq!(e.errno(), libc::EXDEV);
    assert_eq!(
        l.vfs.remove_dir(&admin, &p("/users")).unwrap_err().errno(),
        libc::EPERM
    );
}

#[test]
fn path_errors_are_clear() {
    assert!(avix_vfs::VfsPath::parse("/users/../../etc").is_err());
    let l = layout(false);
    let e = l
        .vfs
        .read(&user("alice", Role::User), &p("/nowhere"))
        .unwrap_err();
    assert_eq!(e.errno(), libc::ENOENT);
    assert_eq!(e.to_string(), "/nowhere: no such file or directory");
}

#[test]
fn a_flush_before_any_write_does_not_commit_the_truncation() {
    // What a shell does for `cmd > file`: open with O_TRUNC, dup2, close (a flush), write,
    // close. The first flush must not publish an empty file, nor feed it to a guard.
    let l = layout(true);
    let admin = user("boss", Role::Admin);
    let f = p("/etc/avix/keep.yaml");
    let before = l.vfs.rejections();
    let (h, _) = l.vfs.open(&admin, &f, OpenOptions::write_new()).unwrap();
    // The empty pending content would be refused: the flush says so, commits nothing.
    assert_eq!(l.vfs.flush(h).unwrap_err().errno(), libc::EINVAL);
    assert_eq!(&l.vfs.read(&admin, &f).unwrap()[..], b"ok: 1");
    l.vfs.write_at(h, 0, b"ok: 9").unwrap();
    l.vfs.flush(h).unwrap();
    l.vfs.release(h).unwrap();
    assert_eq!(&l.vfs.read(&admin, &f).unwrap()[..], b"ok: 9");
    assert_eq!(l.vfs.rejections(), before);
}

#[test]
fn truncating_a_guarded_file_fails_at_close_and_keeps_it() {
    // `cp /dev/null users.yaml`: open with O_TRUNC, no write, close.
    let l = layout(true);
    let admin = user("boss", Role::Admin);
    let f = p("/etc/avix/keep.yaml");
    let (h, _) = l.vfs.open(&admin, &f, OpenOptions::write_new()).unwrap();
    assert_eq!(l.vfs.flush(h).unwrap_err().errno(), libc::EINVAL);
    assert_eq!(l.vfs.release(h).unwrap_err().errno(), libc::EINVAL);
    assert_eq!(&l.vfs.read(&admin, &f).unwrap()[..], b"ok: 1");
}

#[test]
fn live_files_grow_under_an_open_handle() {
    let l = layout(false);
    let log = Arc::new(Mutex::new(b"one\n".to_vec()));
    let (a, b) = (log.clone(), log.clone());
    l.vfs
        .publish(
            &p("/proc/log"),
            SynthFile::live(
                move || a.lock().unwrap().len() as u64,
                move |off, len| {
                    let d = b.lock().unwrap();
                    let start = usize::try_from(off).unwrap().min(d.len());
                    let end = (start + len as usize).min(d.len());
                    Ok(bytes::Bytes::copy_from_slice(&d[start..end]))
                },
            ),
        )
        .unwrap();
    let alice = user("alice", Role::User);
    let (h, st) = l
        .vfs
        .open(&alice, &p("/proc/log"), OpenOptions::read())
        .unwrap();
    assert_eq!(st.size, 4);
    assert_eq!(&l.vfs.read_at(h, 0, 100).unwrap()[..], b"one\n");
    log.lock().unwrap().extend_from_slice(b"two\n");
    assert_eq!(
        l.vfs.stat_handle(h).unwrap().size,
        8,
        "what `tail -f` polls"
    );
    assert_eq!(&l.vfs.read_at(h, 4, 100).unwrap()[..], b"two\n");
    assert_eq!(
        &l.vfs.read(&alice, &p("/proc/log")).unwrap()[..],
        b"one\ntwo\n"
    );
    l.vfs.release(h).unwrap();
}

#[test]
fn a_failed_control_write_leaves_its_reason_readable() {
    let l = layout(false);
    l.vfs
        .publish(
            &p("/proc/spawn"),
            SynthFile::control(
                |_| Ok("".into()),
                |_, data| {
                    if data.starts_with(b"ok") {
                        Ok(Some("42\n".into()))
                    } else {
                        Err(VfsError::InvalidInput {
                            path: p("/proc/spawn"),
                            reason: "unknown agent \"nope\"".into(),
                        })
                    }
                },
            )
            .writers(Writers::AnyUser),
        )
        .unwrap();
    let alice = user("alice", Role::User);
    let rw = OpenOptions {
        read: true,
        write: true,
        ..Default::default()
    };
    let (h, _) = l.vfs.open(&alice, &p("/proc/spawn"), rw).unwrap();
    assert_eq!(
        l.vfs.write_at(h, 0, b"nope go").unwrap_err().errno(),
        libc::EINVAL
    );
    let reason = l.vfs.read_at(h, 7, 200).unwrap();
    assert_eq!(&reason[..], b"error: /proc/spawn: unknown agent \"nope\"\n");
    l.vfs.write_at(h, 0, b"ok").unwrap();
    assert_eq!(&l.vfs.read_at(h, 2, 10).unwrap()[..], b"42\n");
    l.vfs.release(h).unwrap();
}

#[test]
fn refusals_are_kept_for_their_writer_and_operators() {
    let l = layout(false);
    let (alice, bob) = (user("alice", Role::User), user("bob", Role::User));
    let (olga, boss) = (user("olga", Role::Operator), user("boss", Role::Admin));
    // A guard's refusal is recorded by the VFS itself; control files record theirs the same
    // way (record_refusal).
    l.vfs
        .write(&boss, &p("/etc/avix/a.yaml"), b"broken")
        .unwrap_err();
    l.vfs
        .record_refusal(&alice, &p("/proc/spawn"), "unknown agent".into());
    let mine: Vec<_> = l.vfs.refusals(&alice).into_iter().map(|r| r.path).collect();
    assert_eq!(mine, [p("/proc/spawn")]);
    assert!(l.vfs.refusals(&bob).is_empty(), "nobody else's");
    assert_eq!(l.vfs.refusals(&olga).len(), 2, "operators see everyone's");
    let r = &l.vfs.refusals(&boss)[0];
    assert!(
        r.reason.contains("content must start with ok"),
        "{}",
        r.reason
    );
    // Bounded: the oldest go first.
    for _ in 0..avix_vfs::vfs::MAX_REFUSALS {
        l.vfs
            .record_refusal(&bob, &p("/proc/spawn"), "again".into());
    }
    assert!(l.vfs.refusals(&alice).is_empty());
    assert_eq!(l.vfs.refusals(&olga).len(), avix_vfs::vfs::MAX_REFUSALS);
}
