//! Sessions: every root spawn starts or continues one; resuming carries the conversation
//! over; only the owner (or an operator) sees or deletes it.

use avix_proto::agent::{JournalEvent, ProcState};
use avix_proto::llm::MessageRole;
use avix_proto::{Role, UserName};
use avix_vfs::{Caller, Door};

use crate::common::{TestKernel, wait_exit};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_groups_invocations_and_resume_continues_the_conversation() {
    let t = TestKernel::boot();
    t.script(
        "chat",
        "  turns:\n    - text: first answer\n    - text: \"second answer, after: {last}\"\n",
    );
    t.script(
        "chat2",
        "  turns:\n    - text: first answer\n    - text: second answer\n",
    );
    let first = t.spawn("assistant", "hello", Some("chat2")).await;
    assert_eq!(
        wait_exit(&first).await.output.as_deref(),
        Some("first answer")
    );
    let sid = first.session.clone();
    let me = t.alice_caller();
    let list = t.kernel.session_list(&me, None).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, sid);
    assert_eq!(list[0].title, "hello");
    assert_eq!(list[0].state, Some(ProcState::Completed));
    assert!(
        t.read(&format!("/users/alice/sessions/{sid}.yaml"))
            .contains("kind: Session")
    );

    // Continue it: the new invocation starts with the old conversation, so the script
    // answers its second turn.
    let mut req = TestKernel::req("assistant", "and then?", Some("chat2"));
    req.session = Some(sid.clone());
    let second = t.kernel.spawn(&t.alice_caller(), req, None).await.unwrap();
    assert_eq!(
        wait_exit(&second).await.output.as_deref(),
        Some("second answer")
    );
    assert_eq!(second.session, sid);
    let users: Vec<String> = t
        .journal(&second)
        .into_iter()
        .filter_map(|e| match e.event {
            JournalEvent::Message {
                role: MessageRole::User,
                content,
            } => Some(
                avix_proto::llm::Message {
                    role: MessageRole::User,
                    content,
                }
                .text(),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(users, ["hello", "and then?"]);
    let rec = t.kernel.session_get(&me, &sid).unwrap();
    assert_eq!(rec.invocations.len(), 2);

    // A session of another agent, or one that does not exist, is refused clearly.
    let mut req = TestKernel::req("researcher", "x", None);
    req.session = Some(sid.clone());
    let e = t
        .kernel
        .spawn(&t.alice_caller(), req, None)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("conversation with agent assistant"),
        "{e}"
    );
    let mut req = TestKernel::req("assistant", "x", None);
    req.session = Some("00000000-0000-4000-8000-000000000000".into());
    let e = t
        .kernel
        .spawn(&t.alice_caller(), req, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no session"), "{e}");

    // Another user neither lists nor reads nor deletes it.
    let bob = Caller::user(UserName::new("bob").unwrap(), Role::User, vec![], Door::Atp);
    assert!(t.kernel.session_list(&bob, None).unwrap().is_empty());
    assert!(
        t.kernel
            .session_get(&bob, &sid)
            .unwrap_err()
            .to_string()
            .contains("no session")
    );
    assert!(t.kernel.session_delete(&bob, &sid, true).is_err());

    // Deleting removes the record and the journals (the local store's files, too).
    let dir = t
        .kernel
        .layout()
        .data()
        .join("users/alice/agents/assistant")
        .join(first.journal.id().as_str());
    assert!(dir.exists());
    assert!(!t.kernel.journals().entries(first.journal.key()).is_empty());
    t.kernel.session_delete(&me, &sid, false).unwrap();
    assert!(!dir.exists());
    assert!(t.kernel.journals().entries(first.journal.key()).is_empty());
    assert!(t.kernel.session_list(&me, None).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_session_refuses_resume_and_plain_delete() {
    let t = TestKernel::boot();
    t.script("slow", "  turns:\n    - text: done\n      delayMs: 3000\n");
    let p = t.spawn("assistant", "wait a bit", Some("slow")).await;
    let mut req = TestKernel::req("assistant", "more", Some("slow"));
    req.session = Some(p.session.clone());
    let e = t
        .kernel
        .spawn(&t.alice_caller(), req, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("still running as process"), "{e}");
    let me = t.alice_caller();
    let e = t.kernel.session_delete(&me, &p.session, false).unwrap_err();
    assert!(e.to_string().contains("running processes"), "{e}");
    t.kernel.session_delete(&me, &p.session, true).unwrap();
    assert_eq!(wait_exit(&p).await.state, ProcState::Killed);
}
