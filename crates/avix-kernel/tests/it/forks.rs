//! Workspace change sets, diffs and forks: each call of `fs/write` and `fs/delete` journals
//! what it changed; the diff of a run lists exactly the files it changed (at any turn); a fork
//! at turn N starts with the conversation up to N and its own copy of the workspace as it was
//! then, without the run's later changes.

use avix_proto::agent::{ChangeStatus, JournalEvent, ProcState};
use avix_vfs::Caller;

use crate::common::{TestKernel, p, wait_exit};

const SCRIPT: &str = "  turns:
    - toolCalls:
        - {name: fs/write, args: {path: a.txt, content: one}}
        - {name: fs/write, args: {path: docs/b.txt, content: bee}}
    - match:
        - when: {contains: other way}
          toolCalls:
            - {name: fs/write, args: {path: a.txt, content: alt}}
        - toolCalls:
            - {name: fs/write, args: {path: a.txt, content: two}}
            - {name: fs/delete, args: {path: docs/b.txt}}
            - {name: fs/write, args: {path: /users/alice/workspace/old.txt, content: new}}
    - toolCalls:
        - {name: fs/write, args: {path: c.txt, content: sea}}
    - text: done
";

fn write(t: &TestKernel, path: &str, data: &str) {
    t.kernel
        .vfs()
        .write(&Caller::kernel(), &p(path), data.as_bytes())
        .unwrap();
}

fn exists(t: &TestKernel, path: &str) -> bool {
    t.kernel.vfs().stat(&Caller::kernel(), &p(path)).is_ok()
}

fn files(d: &avix_proto::agent::WorkspaceDiff) -> Vec<(char, &str)> {
    d.files
        .iter()
        .map(|f| (f.status.letter(), f.path.as_str()))
        .collect()
}

async fn finished_run(t: &TestKernel) -> std::sync::Arc<avix_kernel::process::Process> {
    t.agent("writer", "fs/read, fs/write, fs/delete");
    t.script("forks", SCRIPT);
    write(t, "/users/alice/workspace/keep.txt", "keep");
    write(t, "/users/alice/workspace/old.txt", "old");
    t.kernel
        .vfs()
        .create_dir(&Caller::kernel(), &p("/users/alice/workspace/docs"))
        .unwrap();
    let proc = t
        .kernel
        .spawn(
            &t.alice_caller(),
            TestKernel::req("writer", "write files", Some("forks")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(wait_exit(&proc).await.state, ProcState::Completed);
    proc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_diff_lists_exactly_the_files_a_run_changed_at_any_turn() {
    let t = TestKernel::boot();
    let proc = finished_run(&t).await;
    let k = &t.kernel;
    // Each changing call journals its changes, after its result.
    let lines: Vec<_> = t
        .journal(&proc)
        .into_iter()
        .filter_map(|e| match e.event {
            JournalEvent::Workspace { changes, .. } => Some(changes),
            _ => None,
        })
        .collect();
    assert_eq!(lines.len(), 6, "{lines:?}");

    let whole = k
        .workspace_diff(&t.alice_caller(), Some(proc.pid), None, None)
        .unwrap();
    assert_eq!(whole.turns, 4);
    assert_eq!(whole.workspace, "/users/alice/workspace");
    // docs/b.txt came and went: no change.
    assert_eq!(
        files(&whole),
        [('A', "a.txt"), ('A', "c.txt"), ('M', "old.txt")]
    );
    let a = &whole.files[0];
    assert_eq!(a.turns, [1, 2]);
    assert_eq!(
        a.after.as_deref(),
        Some(avix_kernel::changes::content_id(b"two").as_str())
    );
    // The content a file had before is kept.
    let old = &whole.files[2];
    assert_eq!(
        &k.read_object("alice", old.before.as_deref().unwrap())
            .unwrap()[..],
        b"old"
    );

    // By invocation, up to a turn.
    let id = proc.journal.id().as_str().to_owned();
    let one = k
        .workspace_diff(&t.alice_caller(), None, Some(&id), Some(1))
        .unwrap();
    assert_eq!(files(&one), [('A', "a.txt"), ('A', "docs/b.txt")]);
    assert!(one.files.iter().all(|f| f.status == ChangeStatus::Added));
    let none = k
        .workspace_diff(&t.alice_caller(), None, Some(&id), Some(0))
        .unwrap();
    assert!(none.files.is_empty());
    let e = k
        .workspace_diff(&t.alice_caller(), None, Some(&id), Some(9))
        .unwrap_err();
    assert!(e.message.contains("4 turns"), "{e}");

    // Another user does not even see the run.
    t.add_user("bob", avix_proto::Role::User, 2001);
    let bob = t.caller(&avix_proto::UserName::new("bob").unwrap());
    let e = k.workspace_diff(&bob, None, Some(&id), None).unwrap_err();
    assert_eq!(e.kind, avix_proto::ErrorKind::NotFound, "{e}");
    assert!(k.fork(&bob, None, Some(&id), Some(1), None).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_at_turn_n_sees_the_workspace_as_of_n_and_goes_its_own_way() {
    let t = TestKernel::boot();
    let proc = finished_run(&t).await;
    let k = &t.kernel;

    let fork = k
        .fork(
            &t.alice_caller(),
            Some(proc.pid),
            None,
            Some(1),
            Some("try it the other way".into()),
        )
        .await
        .unwrap();
    let ws = fork.workspace.clone();
    assert!(ws.starts_with("/users/alice/forks/writer-"), "{ws}");
    // Its journal says where it comes from, and it carries turn 1 over.
    let journal = t.journal(&fork);
    assert!(matches!(
        &journal[0].event,
        JournalEvent::Spawned { workspace: Some(w), .. } if *w == ws
    ));
    assert!(journal.iter().any(|e| matches!(
        &e.event,
        JournalEvent::Forked { from, at: 1 } if from == proc.journal.id()
    )));
    assert_eq!(wait_exit(&fork).await.state, ProcState::Completed);

    // The fork's workspace: as of turn 1 (a.txt "one", docs/b.txt, old.txt "old", no c.txt),
    // then its own turns: "other way" wrote a.txt "alt", and its turn 3 wrote c.txt.
    assert_eq!(t.read(&format!("{ws}/a.txt")), "alt");
    assert_eq!(t.read(&format!("{ws}/docs/b.txt")), "bee");
    assert_eq!(t.read(&format!("{ws}/old.txt")), "old");
    assert_eq!(t.read(&format!("{ws}/keep.txt")), "keep");
    assert_eq!(t.read(&format!("{ws}/c.txt")), "sea");
    // The parent's workspace is untouched by the fork.
    assert_eq!(t.read("/users/alice/workspace/a.txt"), "two");
    assert_eq!(t.read("/users/alice/workspace/old.txt"), "new");
    assert!(!exists(&t, "/users/alice/workspace/docs/b.txt"));

    // The fork's own diff: what it changed in its copy.
    let d = k
        .workspace_diff(&t.alice_caller(), Some(fork.pid), None, None)
        .unwrap();
    assert_eq!(d.workspace, ws);
    assert_eq!(files(&d), [('M', "a.txt"), ('A', "c.txt")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_through_ctl_replies_its_pid_and_a_bad_turn_is_refused() {
    let t = TestKernel::boot();
    let proc = finished_run(&t).await;
    let vfs = t.kernel.vfs();
    let ctl = p(&format!("/proc/{}/ctl", proc.pid));
    let reply = vfs
        .write(&t.alice_caller(), &ctl, b"fork 2\n")
        .unwrap()
        .expect("the new PID");
    let pid: avix_proto::Pid = std::str::from_utf8(&reply).unwrap().trim().parse().unwrap();
    let fork = t.kernel.procs().get(pid).unwrap();
    assert_eq!(wait_exit(&fork).await.state, ProcState::Completed);
    // As of turn 2: c.txt not yet written, b.txt gone; then it ran turns 3 and 4 itself.
    let ws = &fork.workspace;
    assert_eq!(t.read(&format!("{ws}/a.txt")), "two");
    assert!(!exists(&t, &format!("{ws}/docs/b.txt")));
    assert_eq!(t.read(&format!("{ws}/c.txt")), "sea");

    let e = vfs.write(&t.alice_caller(), &ctl, b"fork 7\n").unwrap_err();
    assert!(e.to_string().contains("4 turns"), "{e}");
}
