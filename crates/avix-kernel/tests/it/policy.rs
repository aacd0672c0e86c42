//! The rules, asked through the kernel API itself (the doors only translate): another user's
//! agent, records and sessions do not exist for a user; operators see them; an approval is in
//! the journal before anyone is told of it.

use avix_kernel::process::Signal;
use avix_proto::agent::{JournalEvent, ProcState};
use avix_proto::event::EventName;
use avix_proto::{ErrorKind, HasKind, Role, UserName};

use crate::common::{TestKernel, wait_exit, wait_state};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_finds_nothing_of_alices_and_an_operator_sees_it_all() {
    let t = TestKernel::boot();
    t.add_user("bob", Role::User, 1101);
    t.add_user("olga", Role::Operator, 1103);
    let bob = t.caller(&UserName::new("bob").unwrap());
    let olga = t.caller(&UserName::new("olga").unwrap());
    let mut req = TestKernel::req("assistant", "wait for me", None);
    req.interactive = Some(true);
    let p = t.kernel.spawn(&t.alice_caller(), req, None).await.unwrap();
    wait_state(&p, ProcState::Waiting, Some("input")).await;
    let id = p.journal.id().to_owned();

    // Bob: every call says "not found" (or, for naming alice's records, "denied"), and
    // nothing happens to the agent.
    let e = t.kernel.signal(&bob, &p, Signal::Kill).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    assert!(e.message.contains(&format!("no process {}", p.pid)), "{e}");
    let e = t.kernel.invocation_as(&bob, &id).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    let e = t.kernel.session_get(&bob, &p.session).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = t
        .kernel
        .history_as(&bob, Some("alice"), None, 10)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Denied, "{e}");
    assert!(
        t.kernel
            .history_as(&bob, None, None, 10)
            .unwrap()
            .is_empty(),
        "bob's own history is empty"
    );
    let e = t
        .kernel
        .session_resume(&bob, &p.session, Some("hi".into()))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    assert!(
        t.kernel
            .processes_as(&bob, false, false)
            .iter()
            .all(|s| s.pid != p.pid)
    );
    assert_eq!(p.state(), ProcState::Waiting, "untouched");

    // Olga, an operator, sees alice's run and may stop it.
    let (rec, _) = t.kernel.invocation_as(&olga, &id).unwrap();
    assert_eq!(rec.id, id);
    assert!(
        t.kernel
            .history_as(&olga, Some("alice"), None, 10)
            .unwrap()
            .iter()
            .any(|r| r.id == id)
    );
    assert!(t.kernel.session_get(&olga, &p.session).is_ok());
    assert!(
        t.kernel
            .processes_as(&olga, false, true)
            .iter()
            .any(|s| s.pid == p.pid)
    );
    assert!(
        t.kernel
            .processes_as(&olga, true, false)
            .iter()
            .all(|s| s.pid != p.pid),
        "mine: only olga's own"
    );
    t.kernel.signal(&olga, &p, Signal::Kill).unwrap();
    assert_eq!(wait_exit(&p).await.state, ProcState::Killed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_request_is_in_the_journal_before_anyone_is_told() {
    let t = TestKernel::boot();
    t.kernel
        .vfs()
        .write(
            &avix_vfs::Caller::kernel(),
            &crate::common::p("/users/alice/workspace/old.txt"),
            b"x",
        )
        .unwrap();
    t.script(
        "delete",
        "  turns:\n    - toolCalls: [{name: fs/delete, args: {path: old.txt}}]\n    - text: finished\n",
    );
    let mut events = t.kernel.events().subscribe();
    let proc = t.spawn("assistant", "remove old.txt", Some("delete")).await;
    let hil_id = loop {
        let e = events.recv().await.unwrap();
        if e.event == EventName::HilRequest && e.pid == Some(proc.pid) {
            break e.body["hilId"].as_str().unwrap().to_owned();
        }
    };
    // Read from disk the moment the event arrives: a client told of the request can always
    // find it again after a crash.
    let on_disk = t.kernel.journals().entries(proc.journal.key());
    assert!(
        on_disk.iter().any(
            |e| matches!(&e.event, JournalEvent::HilRequested { hil_id: h, .. } if *h == hil_id)
        ),
        "hil.request {hil_id} was published before it was journaled"
    );
    t.kernel
        .signal(&t.alice_caller(), &proc, Signal::Kill)
        .unwrap();
    wait_exit(&proc).await;
}
