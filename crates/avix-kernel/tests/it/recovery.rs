//! Start-up recovery's safety valves, on journals written by hand: a child run is not
//! resumed, a run interrupted too often is left failed, and either is recorded as ended so
//! the next start does not try again.

use avix_proto::agent::{JournalEvent, ProcState};
use avix_proto::llm::{ContentBlock, MessageRole};

use avix_proto::Pid;
use avix_vfs::storage::InvocationKey;

use crate::common::TestKernel;

pub(crate) async fn interrupted_run(
    t: &TestKernel,
    id: &str,
    parent: Option<Pid>,
    resumes: u64,
) -> InvocationKey {
    let key = InvocationKey::new("alice", "assistant", id).unwrap();
    let j = t.kernel.journals().open(&key).unwrap();
    j.append_durable(JournalEvent::Spawned {
        pid: Pid::new(500),
        agent: "assistant".into(),
        version: "1.1.0".into(),
        user: "alice".into(),
        parent,
        goal: "keep notes".into(),
        model: "scripted".into(),
        granted: vec!["fs/read".into()],
        session: Some(id.into()),
        interactive: true,
        workspace: None,
    })
    .await
    .unwrap();
    j.append_durable(JournalEvent::Message {
        role: MessageRole::User,
        content: vec![ContentBlock::Text {
            text: "keep notes".into(),
        }],
    })
    .await
    .unwrap();
    for n in 0..resumes {
        j.append_durable(JournalEvent::Resumed {
            pid: Pid::new(600 + n),
            previous_pid: Pid::new(500 + n),
        })
        .await
        .unwrap();
    }
    key
}

fn exit_reason(t: &TestKernel, key: &InvocationKey) -> Option<String> {
    t.kernel
        .journals()
        .entries(key)
        .into_iter()
        .find_map(|e| match e.event {
            JournalEvent::Exit { state, reason, .. } => {
                assert_eq!(state, ProcState::Failed);
                Some(reason)
            }
            _ => None,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_and_runs_interrupted_too_often_are_not_resumed() {
    let t = TestKernel::boot();
    let child = interrupted_run(
        &t,
        "11111111-1111-4111-8111-111111111111",
        Some(Pid::new(42)),
        0,
    )
    .await;
    let tired = interrupted_run(&t, "22222222-2222-4222-8222-222222222222", None, 3).await;
    let fine = interrupted_run(&t, "33333333-3333-4333-8333-333333333333", None, 1).await;
    let mut out = t.kernel.resume_interrupted().await;
    out.sort_by(|a, b| a.invocation.cmp(&b.invocation));
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(
        out[0]
            .outcome
            .as_ref()
            .unwrap_err()
            .message
            .contains("child runs are not resumed")
    );
    assert!(
        out[1]
            .outcome
            .as_ref()
            .unwrap_err()
            .message
            .contains("interrupted by 4 restarts")
    );
    assert_eq!(out[2].previous_pid, 600);
    let pid = *out[2].outcome.as_ref().unwrap();
    let p = t.kernel.procs().get(pid).unwrap();
    assert_eq!(p.session, "33333333-3333-4333-8333-333333333333");
    assert!(p.interactive, "spawned interactive, resumed interactive");
    // The two left alone are recorded as ended, so the next start leaves them be.
    assert!(exit_reason(&t, &child).unwrap().contains("child runs"));
    assert!(
        exit_reason(&t, &tired)
            .unwrap()
            .contains("not resumed again")
    );
    assert!(exit_reason(&t, &fine).is_none() || p.state().is_terminal());
    // Nor is a run this daemon already resumed.
    let again = t.kernel.resume_interrupted().await;
    assert!(again.is_empty(), "{again:?}");
}
