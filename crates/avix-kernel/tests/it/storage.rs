//! The record of runs behind the storage seam: a kernel whose journals and invocation records
//! live in another store (memory here) runs, shows, continues, deletes and recovers agents
//! exactly as with the default files in the users' tree, and writes none of those files.

use std::sync::Arc;

use avix_proto::agent::{JournalEvent, ProcState};
use avix_vfs::storage::{InvocationStore, MemoryInvocations};

use crate::common::{TestKernel, wait_exit};
use crate::recovery::interrupted_run;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journals_and_records_in_another_store() {
    let store = Arc::new(MemoryInvocations::new());
    let t = TestKernel::boot_with(Some(store.clone() as Arc<dyn InvocationStore>));
    t.script(
        "chat2",
        "  turns:\n    - text: first answer\n    - text: second answer\n",
    );
    let first = t.spawn("assistant", "hello", Some("chat2")).await;
    assert_eq!(
        wait_exit(&first).await.output.as_deref(),
        Some("first answer")
    );

    // The journal is in the store, and /proc serves it from there.
    assert_eq!(
        store.list("alice", None).unwrap(),
        [first.journal.key().clone()]
    );
    assert!(
        store.has_record(first.journal.key()),
        "the record is written at exit"
    );
    let proc_journal = t.read(&format!("/proc/{}/journal.jsonl", first.pid));
    assert_eq!(
        proc_journal.as_bytes(),
        &store.read_journal(first.journal.key()).unwrap()[..]
    );
    assert!(matches!(
        t.journal(&first).first().map(|e| &e.event),
        Some(JournalEvent::Spawned { .. })
    ));

    // History and show read it back.
    let history = t.kernel.history(&t.alice, None);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].state, ProcState::Completed);
    let me = t.alice_caller();
    let (rec, conv) = t.kernel.invocation_as(&me, first.journal.id()).unwrap();
    assert_eq!(rec.pid, first.pid);
    assert!(conv.len() >= 2, "{conv:?}");

    // A session continues from it.
    let mut req = TestKernel::req("assistant", "and then?", Some("chat2"));
    req.session = Some(first.session.clone());
    let second = t.kernel.spawn(&me, req, None).await.unwrap();
    assert_eq!(
        wait_exit(&second).await.output.as_deref(),
        Some("second answer")
    );

    // None of it was written as files in the users' tree.
    let agents = t.kernel.layout().data().join("users/alice/agents");
    assert!(!agents.exists(), "{} exists", agents.display());

    // Deleting the session deletes its runs from the store.
    t.kernel.session_delete(&me, &first.session, false).unwrap();
    assert!(store.list("alice", None).unwrap().is_empty());
    assert!(t.kernel.history(&t.alice, None).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_reads_interrupted_runs_from_the_store() {
    let store = Arc::new(MemoryInvocations::new());
    let t = TestKernel::boot_with(Some(store.clone() as Arc<dyn InvocationStore>));
    let key = interrupted_run(&t, "44444444-4444-4444-8444-444444444444", None, 0).await;
    let out = t.kernel.resume_interrupted().await;
    assert_eq!(out.len(), 1, "{out:?}");
    let pid = *out[0].outcome.as_ref().unwrap();
    assert_eq!(out[0].previous_pid, 500);
    let p = t.kernel.procs().get(pid).unwrap();
    assert_eq!(p.journal.key(), &key, "resumed in the same journal");
    assert!(t.journal(&p).iter().any(|e| matches!(
        e.event,
        JournalEvent::Resumed { previous_pid, .. } if previous_pid == 500
    )));
}
