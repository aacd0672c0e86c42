//! Agents as processes: the turn loop, the policy at dispatch, HIL, signals, budgets and
//! the journal.

use std::time::Duration;

use avix_kernel::hil::Scope;
use avix_kernel::process::Signal;
use avix_kernel::spawn::SpawnError;
use avix_proto::agent::{HilState, JournalEvent, ProcState};
use avix_vfs::{Caller, OpenOptions};

use crate::common::{TestKernel, p, wait_exit, wait_state};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_script_writes_and_reads_a_file_in_the_workspace() {
    let t = TestKernel::boot();
    let proc = t.spawn("assistant", "Keep notes", None).await;
    let exit = wait_exit(&proc).await;
    assert_eq!(exit.state, ProcState::Completed, "{exit:?}");
    assert!(exit.output.unwrap().starts_with("Done."));
    assert!(
        t.read("/users/alice/workspace/notes.md")
            .contains("Written by a scripted Avix agent")
    );
    let status = t.read(&format!("/proc/{}/status.yaml", proc.pid));
    assert!(
        status.contains("state: completed") && status.contains("exitCode: 0"),
        "{status}"
    );
    let journal = t.journal(&proc);
    let kinds: Vec<&str> = journal
        .iter()
        .map(|e| match &e.event {
            JournalEvent::Spawned { .. } => "spawned",
            JournalEvent::ToolCall { .. } => "tool_call",
            JournalEvent::ToolResult { .. } => "tool_result",
            JournalEvent::Exit { .. } => "exit",
            _ => "",
        })
        .filter(|k| !k.is_empty())
        .collect();
    assert_eq!(
        kinds,
        [
            "spawned",
            "tool_call",
            "tool_result",
            "tool_call",
            "tool_result",
            "exit"
        ]
    );
    let history = t.kernel.history(&t.alice, Some("assistant"));
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].pid, history[0].tool_calls, history[0].turns),
        (proc.pid, 2, 3)
    );
    assert!(
        t.read(&format!("/proc/{}/resolved.yaml", proc.pid))
            .contains("maxTurns")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_outside_the_grants_is_refused_at_dispatch_and_journaled() {
    let t = TestKernel::boot();
    t.script("sneaky", "  turns:\n    - toolCalls: [{name: kernel/proc/list}]\n    - match:\n        - when: {contains: EPERM}\n          text: refused as expected\n        - text: it ran\n");
    let proc = t
        .spawn("researcher", "list processes", Some("sneaky"))
        .await;
    let exit = wait_exit(&proc).await;
    assert_eq!(exit.output.as_deref(), Some("refused as expected"));
    assert!(t.journal(&proc).iter().any(|e| matches!(&e.event, JournalEvent::PolicyDenied { tool, .. } if tool == "kernel/proc/list")));
    assert_eq!(proc.inner().tool_calls, 0, "nothing was dispatched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_gets_only_what_its_parent_holds() {
    let t = TestKernel::boot();
    // The coordinator lacks fs/delete; the assistant it spawns asks for it (optional).
    t.script("child", "  turns:\n    - toolCalls: [{name: cap/request-tool, args: {tool: fs/delete, reason: cleanup}}]\n    - text: done\n");
    t.script("parent", "  turns:\n    - toolCalls: [{name: agent/spawn, args: {agent: assistant, goal: tidy up, wait: true, model: scripted/child}}]\n    - text: all done\n");
    let parent = t.spawn("coordinator", "delegate", Some("parent")).await;
    let exit = wait_exit(&parent).await;
    assert_eq!(exit.state, ProcState::Completed, "{exit:?}");
    let child_pid = parent.inner().children[0];
    let child = t.kernel.procs().get(child_pid).unwrap();
    assert!(
        !child.allows("fs/delete"),
        "the parent does not hold fs/delete"
    );
    assert!(child.allows("fs/read"));
    let resolved = t.read(&format!("/proc/{child_pid}/resolved.yaml"));
    assert!(resolved.contains("does not hold it"), "{resolved}");
    let asked = t.journal(&child).into_iter().find_map(|e| match e.event {
        JournalEvent::Message {
            role: avix_proto::llm::MessageRole::User,
            content,
        } => content.into_iter().find_map(|b| match b {
            avix_proto::llm::ContentBlock::ToolResult { content, .. } => Some(content),
            _ => None,
        }),
        _ => None,
    });
    assert!(
        asked.unwrap().contains("does not hold it"),
        "cap/request-tool is refused too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_tool_waits_and_runs_once_when_approved_through_the_file() {
    let t = TestKernel::boot();
    t.kernel
        .vfs()
        .write(
            &Caller::kernel(),
            &p("/users/alice/workspace/old.txt"),
            b"x",
        )
        .unwrap();
    t.script("delete", "  turns:\n    - toolCalls: [{name: fs/delete, args: {path: old.txt}}]\n    - text: finished\n");
    let proc = t.spawn("assistant", "remove old.txt", Some("delete")).await;
    wait_state(&proc, ProcState::Waiting, Some("human-approval")).await;
    let hid = proc.inner().pending_hil[0].clone();
    let file = p(&format!("/proc/{}/hil/{hid}.yaml", proc.pid));
    let shown = t.read(file.as_str());
    assert!(
        shown.contains("kind: tool_call_approval") && shown.contains("tool: fs/delete"),
        "{shown}"
    );
    assert!(
        t.kernel
            .vfs()
            .stat(&Caller::kernel(), &p("/users/alice/workspace/old.txt"))
            .is_ok(),
        "not run before approval"
    );
    let alice = t.alice_caller();
    t.kernel
        .vfs()
        .write(&alice, &file, b"approve go ahead\n")
        .unwrap();
    let second = t.kernel.vfs().write(&alice, &file, b"deny\n").unwrap_err();
    assert!(
        second
            .to_string()
            .contains("already answered (approved) by alice"),
        "{second}"
    );
    let exit = wait_exit(&proc).await;
    assert_eq!(exit.state, ProcState::Completed);
    assert!(
        t.kernel
            .vfs()
            .stat(&Caller::kernel(), &p("/users/alice/workspace/old.txt"))
            .is_err(),
        "deleted"
    );
    let j = t.journal(&proc);
    assert_eq!(
        j.iter()
            .filter(
                |e| matches!(&e.event, JournalEvent::ToolCall { tool, .. } if tool == "fs/delete")
            )
            .count(),
        1
    );
    assert!(j.iter().any(|e| matches!(&e.event, JournalEvent::HilAnswered { outcome: HilState::Approved, by, .. } if by == "alice")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_call_is_skipped_and_the_agent_sees_the_denial() {
    let t = TestKernel::boot();
    t.kernel
        .vfs()
        .write(
            &Caller::kernel(),
            &p("/users/alice/workspace/keep.txt"),
            b"x",
        )
        .unwrap();
    t.script("deny", "  turns:\n    - toolCalls: [{name: fs/delete, args: {path: keep.txt}}]\n    - match:\n        - when: {contains: not approved}\n          text: ok, kept it\n        - text: deleted\n");
    let proc = t.spawn("assistant", "remove keep.txt", Some("deny")).await;
    wait_state(&proc, ProcState::Waiting, Some("human-approval")).await;
    let hid = proc.inner().pending_hil[0].clone();
    t.kernel
        .hil()
        .answer(
            &hid,
            false,
            Scope::Session,
            Some("keep it".into()),
            &t.alice_caller(),
        )
        .unwrap();
    let exit = wait_exit(&proc).await;
    assert_eq!(exit.output.as_deref(), Some("ok, kept it"));
    assert!(
        t.kernel
            .vfs()
            .stat(&Caller::kernel(), &p("/users/alice/workspace/keep.txt"))
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_mid_stream_cancels_the_call_and_resume_completes_the_turn() {
    let t = TestKernel::boot();
    t.script("slow", "  chunkChars: 4\n  chunkDelayMs: 40\n  turns:\n    - text: a fairly long answer that streams slowly\n");
    let mut events = t.kernel.events().subscribe();
    let proc = t.spawn("assistant", "answer slowly", Some("slow")).await;
    // Wait for the first chunk, then pause.
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap()
            .unwrap();
        if e.event == avix_proto::event::EventName::AgentOutputChunk && e.pid == Some(proc.pid) {
            break;
        }
    }
    t.kernel
        .signal(&t.alice_caller(), &proc, Signal::Pause)
        .unwrap();
    wait_state(&proc, ProcState::Paused, None).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(proc.inner().turns, 0, "the cancelled call did not count");
    t.kernel
        .signal(&t.alice_caller(), &proc, Signal::Resume)
        .unwrap();
    let exit = wait_exit(&proc).await;
    assert_eq!(
        exit.output.as_deref(),
        Some("a fairly long answer that streams slowly")
    );
    let j = t.journal(&proc);
    assert!(j.iter().any(|e| matches!(&e.event, JournalEvent::LlmAbandoned { reason } if reason.starts_with("paused"))));
    let answers = j
        .iter()
        .filter(|e| {
            matches!(
                &e.event,
                JournalEvent::Message {
                    role: avix_proto::llm::MessageRole::Assistant,
                    ..
                }
            )
        })
        .count();
    assert_eq!(answers, 1, "one answer, not a partial plus a full one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_reaches_an_interactive_agent_and_stop_ends_it() {
    let t = TestKernel::boot();
    t.script("chat", "  turns:\n    - text: hello, what next?\n    - match:\n        - when: {contains: summarise}\n          text: here is the summary\n        - text: pardon?\n");
    let mut req = TestKernel::req("assistant", "chat with me", Some("chat"));
    req.interactive = Some(true);
    let proc = t.kernel.spawn(&t.alice_caller(), req, None).await.unwrap();
    wait_state(&proc, ProcState::Waiting, Some("input")).await;
    t.kernel
        .signal(
            &t.alice_caller(),
            &proc,
            Signal::Input("please summarise".into()),
        )
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while proc.inner().turns < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the input was not answered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_state(&proc, ProcState::Waiting, Some("input")).await;
    let last = t
        .journal(&proc)
        .into_iter()
        .rev()
        .find_map(|e| match e.event {
            JournalEvent::Message {
                role: avix_proto::llm::MessageRole::Assistant,
                content,
            } => Some(content),
            _ => None,
        });
    assert_eq!(
        last.unwrap(),
        vec![avix_proto::llm::ContentBlock::Text {
            text: "here is the summary".into()
        }]
    );
    t.kernel
        .signal(&t.alice_caller(), &proc, Signal::Stop)
        .unwrap();
    let exit = wait_exit(&proc).await;
    assert_eq!((exit.state, exit.code), (ProcState::Stopped, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_ends_a_running_agent_with_137_and_signals_after_exit_are_refused() {
    let t = TestKernel::boot();
    t.script(
        "forever",
        "  turns:\n    - delayMs: 60000\n      text: never\n",
    );
    let proc = t.spawn("assistant", "wait", Some("forever")).await;
    wait_state(&proc, ProcState::Running, None).await;
    t.kernel
        .signal(&t.alice_caller(), &proc, Signal::Kill)
        .unwrap();
    let exit = wait_exit(&proc).await;
    assert_eq!((exit.state, exit.code), (ProcState::Killed, 137));
    let e = t
        .kernel
        .signal(&t.alice_caller(), &proc, Signal::Pause)
        .unwrap_err();
    assert!(e.message.contains("already exited"), "{e}");
    assert_eq!(e.kind, avix_proto::ErrorKind::Conflict);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_clamp_the_manifest_and_budgets_stop_the_agent() {
    let t = TestKernel::boot();
    std::fs::write(
        t.kernel.layout().data().join("users/alice/limits.yaml"),
        "apiVersion: avix/v1\nkind: AgentLimits\nspec: {maxTurns: 1}\n",
    )
    .unwrap();
    let proc = t.spawn("assistant", "keep notes", None).await;
    let exit = wait_exit(&proc).await;
    assert_eq!(exit.state, ProcState::Failed);
    assert!(exit.reason.contains("maxTurns 1"), "{}", exit.reason);
    let resolved = t.read(&format!("/proc/{}/resolved.yaml", proc.pid));
    assert!(
        resolved.contains("clampedFrom: 30") && resolved.contains("clampedBy: user-limits"),
        "{resolved}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let t = TestKernel::boot();
    let e = t
        .kernel
        .spawn(
            &t.alice_caller(),
            TestKernel::req("nobody", "x", None),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SpawnError::UnknownAgent { .. })
            && e.to_string().contains("assistant, coordinator, researcher"),
        "{e}"
    );
    assert_eq!(
        avix_proto::HasKind::kind(&e),
        avix_proto::ErrorKind::NotFound
    );
    let k = Caller::kernel();
    for d in ["/users/alice/bin", "/users/alice/bin/broken@1.0.0"] {
        t.kernel.vfs().create_dir(&k, &p(d)).unwrap();
    }
    let manifest = p("/users/alice/bin/broken@1.0.0/agent.yaml");
    t.kernel.vfs().write(&k, &manifest, b"apiVersion: avix/v1\nkind: Agent\nmetadata: {name: broken, version: 1.0.0}\nspec: {tools: {required: [no/such-tool]}}\n").unwrap();
    let e = t
        .kernel
        .spawn(
            &t.alice_caller(),
            TestKernel::req("broken", "x", None),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("requires no/such-tool") && e.to_string().contains("no such tool"),
        "{e}"
    );
    t.kernel
        .vfs()
        .write(&k, &manifest, b"kind: Agent\nspec: [")
        .unwrap();
    let e = t
        .kernel
        .spawn(
            &t.alice_caller(),
            TestKernel::req("broken", "x", None),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, SpawnError::BadManifest { .. }), "{e}");

    // The spawn file: a bad request fails the write, and the reason is read back.
    let alice = t.alice_caller();
    let rw = OpenOptions {
        read: true,
        write: true,
        ..Default::default()
    };
    let (h, _) = t.kernel.vfs().open(&alice, &p("/proc/spawn"), rw).unwrap();
    let err = t
        .kernel
        .vfs()
        .write_at(h, 0, b"nobody do something\n")
        .unwrap_err();
    assert_eq!(err.errno(), libc::ENOENT);
    let reason = String::from_utf8(t.kernel.vfs().read_at(h, 20, 4096).unwrap().to_vec()).unwrap();
    assert!(
        reason.starts_with("error:") && reason.contains("unknown agent \"nobody\""),
        "{reason}"
    );
    t.kernel.vfs().release(h).unwrap();
    let e = t
        .kernel
        .vfs()
        .write(&alice, &p("/proc/spawn"), b"agent: [\n")
        .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);

    // ctl: an unknown command is refused and recorded.
    t.script(
        "forever",
        "  turns:\n    - delayMs: 60000\n      text: never\n",
    );
    let proc = t.spawn("assistant", "wait", Some("forever")).await;
    let ctl = p(&format!("/proc/{}/ctl", proc.pid));
    let e = t
        .kernel
        .vfs()
        .write(&alice, &ctl, b"explode\n")
        .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    assert!(
        t.read(&format!("/proc/{}/errors", proc.pid))
            .contains("unknown command \"explode\"")
    );
    assert_eq!(
        t.kernel
            .vfs()
            .write(&alice, &p("/proc/99999/ctl"), b"kill")
            .unwrap_err()
            .errno(),
        libc::EPERM
    );
    t.kernel.vfs().write(&alice, &ctl, b"kill\n").unwrap();
    assert_eq!(wait_exit(&proc).await.state, ProcState::Killed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_tokens_bind_pid_user_and_tools_and_die_with_the_process() {
    let t = TestKernel::boot();
    t.script("ask", "  turns:\n    - toolCalls: [{name: cap/request-tool, args: {tool: kernel/sys/info, reason: need it}}]\n    - delayMs: 60000\n      text: later\n");
    let proc = t.spawn("researcher", "x", Some("ask")).await;
    let (first, _) = proc.token();
    let claims = t.kernel.verify_token(&first).unwrap();
    assert_eq!((claims.pid, claims.user.as_str()), (proc.pid, "alice"));
    assert!(
        claims.tools.contains(&"fs/read".to_owned())
            && !claims.tools.contains(&"kernel/sys/info".to_owned())
    );
    let mut tampered = first.clone();
    tampered.insert(12, 'x');
    assert!(t.kernel.verify_token(&tampered).is_err());
    // An approved upgrade re-mints the token with the new tool; the old one is superseded.
    wait_state(&proc, ProcState::Waiting, Some("human-approval")).await;
    let hid = proc.inner().pending_hil[0].clone();
    t.kernel
        .hil()
        .answer(&hid, true, Scope::Session, None, &t.alice_caller())
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while proc.token().0 == first {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (second, _) = proc.token();
    assert!(
        t.kernel
            .verify_token(&second)
            .unwrap()
            .tools
            .contains(&"kernel/sys/info".to_owned())
    );
    assert!(
        t.kernel
            .verify_token(&first)
            .unwrap_err()
            .message
            .contains("superseded")
    );
    t.kernel
        .signal(&t.alice_caller(), &proc, Signal::Kill)
        .unwrap();
    wait_exit(&proc).await;
    assert!(t.kernel.verify_token(&second).is_err(), "revoked at exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_an_agents_run_fails_that_agent_cleanly() {
    // Issue 13: a panic in an agent's task (the Retry-After case) left it `running` forever,
    // and `kill` answered "already exited".
    use avix_kernel::tools::{Category, ToolContext, ToolDescriptor, ToolError, ToolState};
    let t = TestKernel::boot();
    let d = ToolDescriptor {
        name: avix_proto::tool::ToolName::new("test/boom").unwrap(),
        description: "panics".into(),
        owner: "test".into(),
        category: Category::Direct,
        state: ToolState::Available,
        input_schema: serde_json::json!({"type": "object"}),
    };
    t.kernel.tools().register(
        t.kernel.vfs(),
        d,
        std::sync::Arc::new(|_cx: ToolContext, _args: serde_json::Value| async move {
            if true {
                panic!("the tool blew up");
            }
            Ok::<_, ToolError>(serde_json::json!({}))
        }),
    );
    t.agent("boomer", "test/boom");
    t.script(
        "boom",
        "  turns:\n    - toolCalls: [{name: test/boom, args: {}}]\n    - text: never\n",
    );
    let proc = t.spawn("boomer", "go", Some("boom")).await;
    let exit = wait_exit(&proc).await;
    assert_eq!(exit.state, ProcState::Failed);
    assert!(
        exit.reason.contains("internal error") && exit.reason.contains("the tool blew up"),
        "{}",
        exit.reason
    );
    assert_ne!(exit.code, 0);
    let status = t.read(&format!("/proc/{}/status.yaml", proc.pid));
    assert!(status.contains("state: failed"), "{status}");
    // The daemon goes on: another agent runs to completion.
    let ok = t.spawn("assistant", "notes", None).await;
    assert_eq!(wait_exit(&ok).await.state, ProcState::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_typo_is_refused_at_spawn_and_creates_nothing() {
    // Issue 13: `--model gpt-5` on a scripted root, or `nosuch/model`, failed only at the
    // first LLM call, after a process, a session and a record were created.
    let t = TestKernel::boot();
    let before = t.kernel.procs().all().len();
    for (model, says) in [
        ("gpt-5", "has no script \"gpt-5\""),
        ("nosuch/model", "unknown provider \"nosuch\""),
    ] {
        let mut req = TestKernel::req("assistant", "x", None);
        req.model = Some(model.into());
        let e = t
            .kernel
            .spawn(&t.alice_caller(), req, None)
            .await
            .unwrap_err();
        assert!(matches!(e, SpawnError::BadRequest(_)), "{e:?}");
        assert!(e.to_string().contains(says), "{e}");
    }
    assert_eq!(t.kernel.procs().all().len(), before, "no process");
    let k = Caller::kernel();
    let sessions = t.kernel.vfs().list(&k, &p("/users/alice/sessions"));
    assert!(sessions.map_or(true, |s| s.is_empty()), "no session");
    let agents = t.kernel.layout().data().join("users/alice/agents");
    assert!(
        std::fs::read_dir(&agents).map_or(true, |mut d| d.next().is_none()),
        "no journal or record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_with_edited_arguments_runs_the_call_with_them() {
    // Issue 13, item 2: "edit before approve".
    let t = TestKernel::boot();
    for f in ["a.txt", "b.txt"] {
        t.kernel
            .vfs()
            .write(
                &Caller::kernel(),
                &p(&format!("/users/alice/workspace/{f}")),
                b"x",
            )
            .unwrap();
    }
    t.script("edit", "  turns:\n    - toolCalls: [{name: fs/delete, args: {path: a.txt}}]\n    - match:\n        - when: {contains: edited arguments}\n          text: deleted what you chose\n        - text: deleted a.txt\n");
    let proc = t.spawn("assistant", "remove a.txt", Some("edit")).await;
    wait_state(&proc, ProcState::Waiting, Some("human-approval")).await;
    let hid = proc.inner().pending_hil[0].clone();
    let file = p(&format!("/proc/{}/hil/{hid}.yaml", proc.pid));
    let alice = t.alice_caller();
    // Malformed edits are refused with the reason; the request stays open.
    let bad = t
        .kernel
        .vfs()
        .write(&alice, &file, b"approve {\"args\": 3}\n")
        .unwrap_err();
    assert!(bad.to_string().contains("edited approval"), "{bad}");
    t.kernel
        .vfs()
        .write(
            &alice,
            &file,
            b"approve {\"args\": {\"path\": \"b.txt\"}, \"note\": \"not that one\"}\n",
        )
        .unwrap();
    let exit = wait_exit(&proc).await;
    assert_eq!(exit.output.as_deref(), Some("deleted what you chose"));
    let exists = |f: &str| {
        t.kernel
            .vfs()
            .stat(
                &Caller::kernel(),
                &p(&format!("/users/alice/workspace/{f}")),
            )
            .is_ok()
    };
    assert!(exists("a.txt") && !exists("b.txt"), "the edited call ran");
    let j = t.journal(&proc);
    assert!(j.iter().any(|e| matches!(&e.event,
        JournalEvent::HilAnswered { args: Some(a), note: Some(n), .. } if a["path"] == "b.txt" && n == "not that one")));
    assert!(j.iter().any(|e| matches!(&e.event,
        JournalEvent::ToolCall { tool, args, .. } if tool == "fs/delete" && args["path"] == "b.txt")));
}
