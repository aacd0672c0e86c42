//! Snapshots: `save` on the ctl file captures a run in any state (once, from the journal),
//! and restoring it starts a new process that continues where it was — through the kernel
//! API, through `/proc/spawn`, and refused for another user.

use avix_kernel::process::Signal;
use avix_proto::Document;
use avix_proto::agent::{CallProgress, JournalEvent, ProcState, Snapshot};
use avix_vfs::Caller;

use crate::common::{TestKernel, p, wait_exit, wait_state};

const CHAT: &str =
    "  turns:\n    - text: first answer\n    - text: \"second answer, after: {last}\"\n";

fn snapshot(t: &TestKernel, path: &str) -> Snapshot {
    Document::<Snapshot>::parse(t.read(path).as_bytes())
        .unwrap()
        .spec
}

/// Opens, writes and closes `path` as `caller` (as `cat FILE > path` does).
fn write_closed(
    t: &TestKernel,
    caller: &Caller,
    path: &str,
    data: &[u8],
) -> Result<(), avix_vfs::VfsError> {
    let vfs = t.kernel.vfs();
    let w = avix_vfs::OpenOptions {
        write: true,
        ..Default::default()
    };
    let (h, _) = vfs.open(caller, &p(path), w)?;
    let written = vfs.write_at(h, 0, data);
    let closed = vfs.release(h);
    written.and(closed)
}

/// The last thing the agent said, from its journal.
fn last_answer(t: &TestKernel, proc: &avix_kernel::process::Process) -> String {
    t.journal(proc)
        .into_iter()
        .rev()
        .find_map(|e| match e.event {
            JournalEvent::Message {
                role: avix_proto::llm::MessageRole::Assistant,
                content,
            } => Some(
                avix_proto::llm::Message {
                    role: avix_proto::llm::MessageRole::Assistant,
                    content,
                }
                .text(),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

fn saves(t: &TestKernel, proc: &avix_kernel::process::Process) -> usize {
    t.journal(proc)
        .iter()
        .filter(|e| matches!(&e.event, JournalEvent::Signal { signal, .. } if signal == "SIGSAVE"))
        .count()
}

/// Runs the chat agent, waits for its first answer, then says `then?`; returns the output.
async fn uninterrupted(t: &TestKernel) -> String {
    let mut req = TestKernel::req("assistant", "hello", Some("chat"));
    req.interactive = Some(true);
    let proc = t.kernel.spawn(&t.alice_caller(), req, None).await.unwrap();
    wait_state(&proc, ProcState::Waiting, Some("input")).await;
    t.kernel
        .signal(&t.alice_caller(), &proc, Signal::Input("then?".into()))
        .unwrap();
    while proc.inner().turns < 2 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    wait_state(&proc, ProcState::Waiting, Some("input")).await;
    let answer = last_answer(t, &proc);
    t.kernel
        .signal(&t.alice_caller(), &proc, Signal::Stop)
        .unwrap();
    wait_exit(&proc).await;
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_waiting_for_input_is_saved_once_and_restored_continues_the_same() {
    let t = TestKernel::boot();
    t.script("chat", CHAT);
    t.kernel
        .vfs()
        .write(
            &Caller::kernel(),
            &p("/users/alice/workspace/notes.md"),
            b"before the snapshot",
        )
        .unwrap();
    let mut req = TestKernel::req("assistant", "hello", Some("chat"));
    req.interactive = Some(true);
    let proc = t.kernel.spawn(&t.alice_caller(), req, None).await.unwrap();
    wait_state(&proc, ProcState::Waiting, Some("input")).await;

    // `echo save > /proc/<pid>/ctl`, as the owner.
    t.kernel
        .vfs()
        .write(
            &t.alice_caller(),
            &p(&format!("/proc/{}/ctl", proc.pid)),
            b"save\n",
        )
        .unwrap();
    assert_eq!(saves(&t, &proc), 1, "SIGSAVE is journaled once");
    let files = t
        .kernel
        .vfs()
        .list(&Caller::kernel(), &p("/users/alice/snapshots"))
        .unwrap();
    let file = files
        .iter()
        .find(|e| e.name.ends_with(".yaml"))
        .expect("a snapshot file");
    let path = format!("/users/alice/snapshots/{}", file.name);
    let snap = snapshot(&t, &path);
    assert_eq!(
        (snap.state, snap.waiting_on.as_deref()),
        (ProcState::Waiting, Some("input"))
    );
    assert_eq!(snap.pid, proc.pid);
    assert_eq!(&snap.invocation, proc.journal.id());
    assert_eq!(snap.messages.len(), 2, "{:?}", snap.messages);
    assert!(snap.pending.is_empty());
    let ws = snap
        .workspace
        .as_ref()
        .expect("a small workspace is copied");
    assert_eq!(ws.files, 1);
    assert_eq!(
        t.read(&format!("{}/notes.md", ws.path)),
        "before the snapshot"
    );
    // The original goes on and ends.
    t.kernel
        .signal(&t.alice_caller(), &proc, Signal::Kill)
        .unwrap();
    wait_exit(&proc).await;

    // Restored: a new process, a new run, waiting for input where the snapshot was.
    let restored = t
        .kernel
        .restore_file(&t.alice_caller(), &path, false)
        .await
        .unwrap();
    assert_ne!(restored.pid, proc.pid);
    assert_ne!(restored.journal.id(), proc.journal.id());
    wait_state(&restored, ProcState::Waiting, Some("input")).await;
    t.kernel
        .signal(&t.alice_caller(), &restored, Signal::Input("then?".into()))
        .unwrap();
    while restored.inner().turns < 1 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    wait_state(&restored, ProcState::Waiting, Some("input")).await;
    let after_restore = last_answer(&t, &restored);
    t.kernel
        .signal(&t.alice_caller(), &restored, Signal::Stop)
        .unwrap();
    wait_exit(&restored).await;
    assert_eq!(after_restore, uninterrupted(&t).await);
    assert!(
        after_restore.starts_with("second answer"),
        "{after_restore}"
    );
    // Its journal holds the whole conversation from its first lines on.
    let conv = t
        .kernel
        .invocation_as(&t.alice_caller(), restored.journal.id())
        .unwrap()
        .1;
    assert_eq!(conv.len(), 4, "{conv:?}");

    // Bob can neither read alice's snapshot nor restore it.
    t.add_user("bob", avix_proto::Role::User, 1102);
    let bob = t.caller(&avix_proto::UserName::new("bob").unwrap());
    assert!(t.kernel.restore_file(&bob, &path, false).await.is_err());
    let mut stolen = snap.clone();
    stolen.user = "alice".into();
    let e = t.kernel.restore(&bob, stolen, "test").await.unwrap_err();
    assert!(e.to_string().contains("restore your own snapshots"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_waiting_for_approval_asks_again_when_restored_through_proc_spawn() {
    let t = TestKernel::boot();
    t.kernel
        .vfs()
        .write(
            &Caller::kernel(),
            &p("/users/alice/workspace/old.txt"),
            b"x",
        )
        .unwrap();
    t.script(
        "delete",
        "  turns:\n    - toolCalls: [{name: fs/delete, args: {path: old.txt}}]\n    - text: finished\n",
    );
    let proc = t.spawn("assistant", "remove old.txt", Some("delete")).await;
    wait_state(&proc, ProcState::Waiting, Some("human-approval")).await;
    let path = t.kernel.save_snapshot(&t.alice_caller(), &proc).unwrap();
    let snap = snapshot(&t, &path);
    assert_eq!(snap.pending.len(), 1);
    assert_eq!(snap.pending[0].tool, "fs/delete");
    assert_eq!(snap.pending[0].progress, CallProgress::NotStarted);
    t.kernel
        .signal(&t.alice_caller(), &proc, Signal::Kill)
        .unwrap();
    wait_exit(&proc).await;

    // `cat snapshot.yaml > /proc/spawn`.
    let text = t.read(&path);
    write_closed(&t, &t.alice_caller(), "/proc/spawn", text.as_bytes()).unwrap();
    let restored = loop {
        let found = t
            .kernel
            .procs()
            .all()
            .into_iter()
            .find(|q| q.pid != proc.pid && !q.state().is_terminal());
        if let Some(q) = found {
            break q;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    wait_state(&restored, ProcState::Waiting, Some("human-approval")).await;
    let hid = restored.inner().pending_hil[0].clone();
    t.kernel
        .vfs()
        .write(
            &t.alice_caller(),
            &p(&format!("/proc/{}/hil/{hid}.yaml", restored.pid)),
            b"approve\n",
        )
        .unwrap();
    let exit = wait_exit(&restored).await;
    assert_eq!(exit.state, ProcState::Completed, "{exit:?}");
    assert_eq!(exit.output.as_deref(), Some("finished"));
    assert!(
        t.kernel
            .vfs()
            .stat(&Caller::kernel(), &p("/users/alice/workspace/old.txt"))
            .is_err(),
        "the approved call ran in the restored run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_run_restores_paused_and_a_bad_snapshot_is_refused() {
    let t = TestKernel::boot();
    t.script("chat", CHAT);
    let mut req = TestKernel::req("assistant", "hello", Some("chat"));
    req.interactive = Some(true);
    let proc = t.kernel.spawn(&t.alice_caller(), req, None).await.unwrap();
    wait_state(&proc, ProcState::Waiting, Some("input")).await;
    t.kernel
        .signal(&t.alice_caller(), &proc, Signal::Pause)
        .unwrap();
    wait_state(&proc, ProcState::Paused, None).await;
    let path = t.kernel.save_snapshot(&t.alice_caller(), &proc).unwrap();
    assert_eq!(snapshot(&t, &path).state, ProcState::Paused);
    let name = path.rsplit('/').next().unwrap().trim_end_matches(".yaml");
    let restored = t
        .kernel
        .restore_file(&t.alice_caller(), name, false)
        .await
        .unwrap();
    wait_state(&restored, ProcState::Paused, None).await;

    let e = write_closed(
        &t,
        &t.alice_caller(),
        "/proc/spawn",
        b"apiVersion: avix/v1\nkind: Snapshot\nspec:\n  agent: assistant\n",
    )
    .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL, "{e}");
    assert!(e.to_string().contains("not a snapshot"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_with_the_workspace_puts_the_saved_files_back() {
    let t = TestKernel::boot();
    t.script("chat", CHAT);
    let notes = "/users/alice/workspace/notes.md";
    t.kernel
        .vfs()
        .write(&Caller::kernel(), &p(notes), b"as it was")
        .unwrap();
    let mut req = TestKernel::req("assistant", "hello", Some("chat"));
    req.interactive = Some(true);
    let proc = t.kernel.spawn(&t.alice_caller(), req, None).await.unwrap();
    wait_state(&proc, ProcState::Waiting, Some("input")).await;
    let path = t.kernel.save_snapshot(&t.alice_caller(), &proc).unwrap();
    t.kernel
        .vfs()
        .write(&Caller::kernel(), &p(notes), b"changed since")
        .unwrap();
    t.kernel
        .vfs()
        .write(
            &Caller::kernel(),
            &p("/users/alice/workspace/new.md"),
            b"new",
        )
        .unwrap();
    let restored = t
        .kernel
        .restore_file(&t.alice_caller(), &path, true)
        .await
        .unwrap();
    assert_eq!(t.read(notes), "as it was");
    assert_eq!(
        t.read("/users/alice/workspace/new.md"),
        "new",
        "other files stay"
    );
    wait_state(&restored, ProcState::Waiting, Some("input")).await;
}
