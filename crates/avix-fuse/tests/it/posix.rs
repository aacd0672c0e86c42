//! Data trees are ordinary POSIX files: each test is a bug users hit (issue 11) or a workload
//! they run, through the real mount.

use avix_vfs::Caller;

use super::{Fixture, fuse_available, p};

const WS: &str = "cd $M/users/alice/workspace";

#[test]
fn appends_are_never_lost() {
    if !fuse_available() {
        return;
    }
    let f = Fixture::new();
    // A writer that fstat()s its own O_APPEND descriptor kept only its last write.
    let out = f.ok(&format!(
        "{WS} && : > lb && python3 -c \"import os; fd=os.open('lb',os.O_WRONLY|os.O_APPEND); \
         [(os.write(fd,b'p%d\\n'%i), os.fstat(fd)) for i in range(4)]; os.close(fd)\" && cat lb"
    ));
    assert_eq!(out, "p0\np1\np2\np3\n");
    // Two shells appending to one file lost ~40 % of the lines.
    let out = f.ok(&format!(
        "set -e; {WS}; : > two; (for i in $(seq 400); do echo a$i >> two; done) & \
         (for i in $(seq 400); do echo b$i >> two; done); wait; sort two | uniq | wc -l"
    ));
    assert_eq!(out.trim(), "800");
    // `tail -f` sees lines while the writer still runs (and keeps them all).
    let out = f.ok(&format!(
        "set -e; {WS}; : > log; tail -f log > tail.out & tp=$!; \
         exec 4>>log; for i in 1 2 3; do echo line$i >&4; sleep 0.2; done; \
         sleep 1.2; cat tail.out; kill $tp; exec 4>&-; cat log | wc -l"
    ));
    assert_eq!(out, "line1\nline2\nline3\n3\n");
}

#[test]
fn truncation_and_sizes_are_seen_at_once() {
    if !fuse_available() {
        return;
    }
    let f = Fixture::new();
    let out = f.ok(&format!(
        "{WS} && n=0; for i in $(seq 200); do echo 12345678 > f; : > f; [ -s f ] && n=$((n+1)); done; echo $n"
    ));
    assert_eq!(out, "0\n", "a stale size after O_TRUNC");
}

#[test]
fn open_files_follow_unlink_and_rename() {
    if !fuse_available() {
        return;
    }
    let f = Fixture::new();
    let out = f.ok(&format!(
        "{WS} && python3 - <<'EOF'
import os
f = open('u', 'w'); f.write('x' * 10); f.flush()
os.unlink('u'); f.write('y'); f.flush()
print(os.fstat(f.fileno()).st_size); f.close()
print(os.path.exists('u'))
f = open('r', 'w'); f.write('one'); f.flush()
ino = os.stat('r').st_ino
os.rename('r', 'r2'); f.write('two'); f.close()
print(open('r2').read(), os.path.exists('r'), os.stat('r2').st_ino == ino)
EOF"
    ));
    assert_eq!(out, "11\nFalse\nonetwo False True\n");
}

#[test]
fn links_modes_times_and_special_files() {
    if !fuse_available() {
        return;
    }
    let f = Fixture::new();
    let out = f.ok(&format!(
        "{WS} && echo hi > a && ln -s a l && readlink l && cat l && ln a h && stat -c '%h' a && \
         [ $(stat -c %i a) = $(stat -c %i h) ] && echo same-inode && \
         mkfifo p && stat -c %F p && \
         printf '#!/bin/sh\\necho ran\\n' > s.sh && chmod 750 s.sh && stat -c %a s.sh && ./s.sh && \
         touch -d '2001-02-03 04:05:06' a && stat -c %Y a && \
         mkdir d && chmod 2755 d && stat -c %a d && ls -l | wc -l"
    ));
    assert_eq!(
        out,
        "a\nhi\n2\nsame-inode\nfifo\n750\nran\n981173106\n2755\n7\n"
    );
    // Inode numbers survive renames and new lookups.
    let out = f.ok(&format!(
        "{WS} && i=$(stat -c %i a) && mv a b && mkdir -p x && mv b x/c && [ $(stat -c %i x/c) = $i ] && echo stable"
    ));
    assert_eq!(out, "stable\n");
    // A document tree has no links or special files.
    assert!(
        f.fails("ln -s x $M/etc/avix/l")
            .contains("Operation not permitted")
    );
}

#[test]
fn modes_bind_other_users_and_the_tree_rules_still_apply() {
    if !fuse_available() {
        return;
    }
    let f = Fixture::new();
    let as_bob =
        |s: &str| format!("setpriv --reuid=65534 --regid=65534 --clear-groups sh -c '{s}'");
    f.ok(&as_bob(
        "cd $M/users/bob/workspace && echo mine > x && chmod 600 x",
    ));
    assert_eq!(
        f.ok(&as_bob("cat $M/users/bob/workspace/x")),
        "mine\n",
        "bob reads his own 0600 file"
    );
    f.ok(&as_bob("chmod 000 $M/users/bob/workspace/x"));
    assert!(
        f.fails(&as_bob("cat $M/users/bob/workspace/x"))
            .contains("Permission denied")
    );
    assert!(
        f.fails(&as_bob("chown 0 $M/users/bob/workspace/x"))
            .contains("Operation not permitted")
    );
    // A working directory inside alice's workspace is no key for bob.
    let err = f.fails(&format!(
        "{WS} && setpriv --reuid=65534 --regid=65534 --clear-groups ls ."
    ));
    assert!(err.contains("No such file"), "{err}");
}

#[test]
fn other_doors_see_mount_writes_and_never_follow_links() {
    if !fuse_available() {
        return;
    }
    let f = Fixture::new();
    let k = Caller::kernel();
    f.ok(&format!(
        "{WS} && echo v1 > doc && ln -s / root && ln -s doc alias"
    ));
    assert_eq!(
        &f.vfs.read(&k, &p("/users/alice/workspace/doc")).unwrap()[..],
        b"v1\n"
    );
    f.ok(&format!("{WS} && echo v2 > doc"));
    assert_eq!(
        &f.vfs.read(&k, &p("/users/alice/workspace/doc")).unwrap()[..],
        b"v2\n",
        "no stale copy in the VFS cache"
    );
    // Links made on the mount are never followed by the VFS doors.
    for path in [
        "/users/alice/workspace/root/etc/passwd",
        "/users/alice/workspace/alias",
    ] {
        assert!(f.vfs.read(&k, &p(path)).is_err(), "{path} followed");
    }
    // Another door's write shows on the mount at once.
    f.vfs
        .write(&k, &p("/users/alice/workspace/doc"), b"from atp, longer\n")
        .unwrap();
    assert_eq!(f.ok(&format!("{WS} && cat doc")), "from atp, longer\n");
}

#[test]
fn everyday_workloads_run_in_a_workspace() {
    if !fuse_available() {
        return;
    }
    let f = Fixture::new();
    let git = "git -c user.email=t@example.com -c user.name=t -c init.defaultBranch=main";
    let out = f.ok(&format!(
        "set -e; {WS}; mkdir repo; cd repo; {git} init -q; echo one > f; {git} add f; \
         {git} commit -qm one; echo two > f; {git} commit -qam two; cd ..; \
         {git} clone -q --local repo clone; cd clone; {git} checkout -q HEAD~1; cat f; \
         {git} checkout -q main; cat f; {git} status --porcelain | wc -l"
    ));
    assert_eq!(out, "one\ntwo\n0\n");
    let out = f.ok(&format!(
        "set -e; {WS}; mkdir src; for i in $(seq 50); do echo $i > src/f$i; done; \
         ln -s f1 src/link; tar czf t.tgz src; mkdir out; tar xzf t.tgz -C out; \
         diff -r src out/src && echo same"
    ));
    assert_eq!(out, "same\n");
    let out = f.ok(&format!(
        "set -e; {WS}; printf 'built: in\\n\\tcp in built\\n' > Makefile; echo a > in; make -s; \
         sleep 1.1; echo b > in; touch in; make -s; cat built"
    ));
    assert_eq!(out, "b\n", "make rebuilds after touch");
    let out = f.ok(&format!(
        "set -e; {WS}; python3 -m venv venv; ./venv/bin/python -c 'import sys; print(sys.prefix.endswith(\"venv\"))'"
    ));
    assert_eq!(out, "True\n");
    let out = f.ok(&format!(
        "set -e; {WS}; sqlite3 db 'pragma journal_mode=wal; create table t(x); \
         insert into t values (1),(2),(3);' >/dev/null; sqlite3 db 'select sum(x) from t'; \
         ls | grep -c 'db-shm' || true"
    ));
    assert_eq!(out, "6\n0\n", "sqlite WAL works and leaves no -shm");
    let out = f.ok(&format!(
        "set -e; {WS}; printf 'alpha\\nbeta\\n' > v.txt; vim -es -c '%s/beta/gamma/' -c wq v.txt; cat v.txt"
    ));
    assert_eq!(out, "alpha\ngamma\n");
    let out = f.ok(&format!(
        "set -e; {WS}; head -c 209715200 /dev/urandom > /tmp/avix-big-$$; cp /tmp/avix-big-$$ big; \
         a=$(sha256sum < /tmp/avix-big-$$); b=$(sha256sum < big); rm -f /tmp/avix-big-$$ big; \
         [ \"$a\" = \"$b\" ] && echo same"
    ));
    assert_eq!(out, "same\n", "a 200 MB file reads back intact");
}

#[test]
fn served_io_keeps_the_same_semantics() {
    // Where the kernel or the daemon's privileges rule out passthrough, the daemon serves
    // data-tree I/O itself: the same bugs must stay fixed.
    if !fuse_available() {
        return;
    }
    let f = Fixture::with(avix_fuse::DataIo::Served);
    let out = f.ok(&format!(
        "set -e; {WS}; : > lb; python3 -c \"import os; fd=os.open('lb',os.O_WRONLY|os.O_APPEND); \
         [(os.write(fd,b'p%d\\n'%i), os.fstat(fd)) for i in range(4)]; os.close(fd)\"; cat lb; \
         : > two; (for i in $(seq 300); do echo a$i >> two; done) & \
         (for i in $(seq 300); do echo b$i >> two; done); wait; sort -u two | wc -l; \
         n=0; for i in $(seq 100); do echo 12345678 > f; : > f; [ -s f ] && n=$((n+1)); done; echo $n; \
         head -c 3000000 /dev/urandom > r; cp r r2; cmp r r2 && echo same; \
         sqlite3 db 'pragma journal_mode=wal; create table t(x); insert into t values (7);' >/dev/null; \
         sqlite3 db 'select x from t'"
    ));
    assert_eq!(out, "p0\np1\np2\np3\n600\n0\nsame\n7\n");
    let out = f.ok(&format!(
        "{WS} && python3 - <<'EOF'
import os
f = open('u', 'w'); f.write('x' * 10); f.flush()
os.unlink('u'); f.write('y'); f.flush()
print(os.fstat(f.fileno()).st_size); f.close()
f = open('r', 'w'); f.write('one'); f.flush()
os.rename('r', 'r3'); f.write('two'); f.close()
print(open('r3').read())
EOF"
    ));
    assert_eq!(out, "11\nonetwo\n");
}

#[test]
fn a_reused_host_inode_number_is_a_new_file() {
    // ext4 hands the number of a deleted file to the next one at once, while the kernel may
    // still hold the deleted one: the new file must not be taken for the old (ESTALE, or the
    // old file's attributes).
    if !fuse_available() {
        return;
    }
    let f = Fixture::new();
    let out = f.ok(&format!(
        "{WS} && bad=0; for i in $(seq 300); do echo $i > a; exec 5<a; rm a; echo x$i > b; exec 5<&-; \
         [ \"$(cat b)\" = x$i ] || bad=$((bad+1)); rm b; done; echo $bad"
    ));
    assert_eq!(out, "0\n");
    let out = f.ok(&format!(
        "{WS} && python3 - <<'EOF'
import os
seen = bad = 0
for i in range(300):
    with open('old', 'w') as f:
        f.write('old')
    held = os.open('old', os.O_RDONLY)
    before = os.fstat(held).st_ino
    os.unlink('old')
    os.close(held)
    with open('new', 'w') as f:
        f.write('new%d' % i)
    st = os.stat('new')
    seen += st.st_ino == before
    bad += open('new').read() != 'new%d' % i or st.st_size != len('new%d' % i)
    os.unlink('new')
print(bad)
EOF"
    ));
    assert_eq!(out, "0\n");
}
