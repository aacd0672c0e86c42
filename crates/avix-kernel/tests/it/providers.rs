//! Agents on the real provider adapters (Anthropic, OpenAI, Ollama wire formats) against a
//! loopback server; llm.yaml hot reload; queueing; fallback; the media tools.

use std::time::Duration;

use avix_proto::agent::{JournalEvent, ProcState};
use avix_proto::llm::StopReason;
use avix_testkit::mock_llm::{Dialect, MockLlm, Plan, Turn};
use serde_json::json;

use crate::common::{TestKernel, p, wait_exit, wait_state};

const KEY_ENV: &str = "AVIX_TEST_PROVIDER_KEY";
const KEY: &str = "sk-test-provider-key-9f8e7d6c5b4a";

fn set_key() {
    // SAFETY: set before the kernel starts threads that read the environment; every test
    // sets the same value, and nextest runs each test in its own process.
    unsafe { std::env::set_var(KEY_ENV, KEY) };
}

fn kind(d: Dialect) -> (&'static str, &'static str) {
    match d {
        Dialect::Anthropic => ("anthropic", ""),
        Dialect::OpenAi => ("openai", "/v1"),
        Dialect::Ollama => ("ollama", ""),
    }
}

/// Writes llm.yaml through the VFS as alice (an admin): validated, then hot-reloaded.
fn configure(t: &TestKernel, body: &str) {
    let yaml = format!("apiVersion: avix/v1\nkind: LlmConfig\nspec:\n{body}");
    t.kernel
        .vfs()
        .write(&t.alice_caller(), &p("/etc/avix/llm.yaml"), yaml.as_bytes())
        .unwrap();
}

fn provider_yaml(name: &str, d: Dialect, mock: &MockLlm, extra: &str) -> String {
    let (kind, suffix) = kind(d);
    format!(
        "    - name: {name}\n      kind: {kind}\n      baseUrl: {}{suffix}\n      apiKeyEnv: {KEY_ENV}\n      models: [test-model]\n      defaultModel: test-model\n      prices: {{test-model: {{input: 3.0, output: 15.0}}}}\n{extra}",
        mock.url()
    )
}

fn task_script(mock: &MockLlm, tag: &str) {
    mock.script(vec![
        Turn::call(
            "Writing the note.",
            "fs/write",
            json!({"path": "notes.txt", "content": format!("hello from {tag}")}),
        ),
        Turn::call("Reading it back.", "fs/read", json!({"path": "notes.txt"})),
        Turn::text("Done. The file says: {last}"),
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_completes_a_multi_turn_task_through_each_text_adapter() {
    set_key();
    for d in [Dialect::Anthropic, Dialect::OpenAi, Dialect::Ollama] {
        let t = TestKernel::boot();
        let mock = MockLlm::start();
        mock.require_key(KEY);
        let tag = kind(d).0;
        task_script(&mock, tag);
        configure(
            &t,
            &format!(
                "  defaultProvider: mock\n  providers:\n{}",
                provider_yaml("mock", d, &mock, "")
            ),
        );
        let proc = t
            .spawn("assistant", "write a note and read it back", None)
            .await;
        let exit = wait_exit(&proc).await;
        assert_eq!(exit.state, ProcState::Completed, "{tag}: {}", exit.reason);
        let out = exit.output.unwrap_or_default();
        assert!(out.contains(&format!("hello from {tag}")), "{tag}: {out}");
        assert_eq!(
            t.read("/users/alice/workspace/notes.txt"),
            format!("hello from {tag}")
        );
        let calls: Vec<_> = t
            .journal(&proc)
            .into_iter()
            .filter_map(|e| match e.event {
                JournalEvent::LlmCall {
                    provider,
                    usage,
                    stop_reason,
                    cost_usd,
                    ..
                } => Some((provider, usage, stop_reason, cost_usd)),
                _ => None,
            })
            .collect();
        assert_eq!(calls.len(), 3, "{tag}");
        assert!(
            calls.iter().all(|(p, u, _, c)| p == "mock"
                && u.input_tokens > 0
                && c.is_some_and(|c| c > 0.0)),
            "{tag}: {calls:?}"
        );
        assert_eq!(calls[0].2, StopReason::ToolUse);
        assert_eq!(mock.requests().len(), 3, "{tag}");
        // The tool schemas went out mangled and came back canonical.
        let first = mock.requests()[0].json();
        let text = first.to_string();
        assert!(
            text.contains("fs__write") && !text.contains("\"fs/write\""),
            "{tag}"
        );

        let status = t.read("/proc/services/llm/status.yaml");
        assert!(
            status.contains("name: mock") && status.contains("health: ok"),
            "{status}"
        );
        assert!(status.contains("requests: 3"), "{status}");
        let st = t.read(&format!("/proc/{}/status.yaml", proc.pid));
        assert!(st.contains("costUsd:"), "{st}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_at_its_concurrency_limit_queues_and_status_shows_it() {
    set_key();
    let t = TestKernel::boot();
    let mock = MockLlm::start();
    mock.require_key(KEY);
    mock.script(vec![Turn::text("ok")]);
    configure(
        &t,
        &format!(
            "  defaultProvider: mock\n  providers:\n{}",
            provider_yaml(
                "mock",
                Dialect::OpenAi,
                &mock,
                "      limits: {concurrency: 1}\n"
            )
        ),
    );
    mock.plan(Plan::Delay(800));
    let a = t.spawn("assistant", "first", None).await;
    mock.wait_requests(1);
    let b = t.spawn("assistant", "second", None).await;
    wait_state(&b, ProcState::Waiting, Some("llm-queue (mock, position 1)")).await;
    let status = t.read("/proc/services/llm/status.yaml");
    assert!(
        status.contains("inFlight: 1") && status.contains("queued: 1"),
        "{status}"
    );
    assert_eq!(wait_exit(&a).await.state, ProcState::Completed);
    assert_eq!(wait_exit(&b).await.state, ProcState::Completed);
    let queued = t.journal(&b).into_iter().find_map(|e| match e.event {
        JournalEvent::LlmCall { queued_ms, .. } => Some(queued_ms),
        _ => None,
    });
    assert!(queued.unwrap() >= 300, "{queued:?}");
    let r = mock.requests();
    assert!(
        r[1].at - r[0].at >= Duration::from_millis(700),
        "one at a time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_provider_falls_back_and_its_health_shows_the_error() {
    set_key();
    let t = TestKernel::boot();
    let dead = avix_testkit::free_port();
    configure(
        &t,
        &format!(
            "  defaultProvider: broken\n  providers:\n    - name: broken\n      kind: ollama\n      baseUrl: http://127.0.0.1:{dead}\n      defaultModel: llama\n      retry: {{maxAttempts: 1}}\n    - name: scripted\n      kind: scripted\n      script: scripts/default.yaml\n  fallback: [scripted]\n"
        ),
    );
    let proc = t.spawn("assistant", "anything", None).await;
    let exit = wait_exit(&proc).await;
    assert_eq!(exit.state, ProcState::Completed, "{}", exit.reason);
    let provider = t.journal(&proc).into_iter().find_map(|e| match e.event {
        JournalEvent::LlmCall { provider, .. } => Some(provider),
        _ => None,
    });
    assert_eq!(provider.as_deref(), Some("scripted"));
    let status = t.read("/proc/services/llm/status.yaml");
    assert!(status.contains("health: down"), "{status}");
    assert!(status.contains("cannot reach provider broken"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_llm_yaml_is_refused_and_the_old_config_stays() {
    let t = TestKernel::boot();
    let e = t
        .kernel
        .vfs()
        .write(
            &t.alice_caller(),
            &p("/etc/avix/llm.yaml"),
            b"apiVersion: avix/v1\nkind: LlmConfig\nspec:\n  providers:\n    - {name: x, kind: anthropic, timeouts: {idleSecs: -1}}\n",
        )
        .unwrap_err();
    assert!(e.to_string().contains("idleSecs"), "{e}");
    let status = t.read("/proc/services/llm/status.yaml");
    assert!(status.contains("name: scripted"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_media_tools_write_images_and_audio_to_the_scratch_directory() {
    set_key();
    let t = TestKernel::boot();
    let mock = MockLlm::start();
    mock.require_key(KEY);
    configure(
        &t,
        &format!(
            "  defaultProvider: scripted\n  defaultProviders: {{image: openai, speech: openai, transcription: openai, embedding: openai}}\n  providers:\n    - name: scripted\n      kind: scripted\n      script: scripts/default.yaml\n    - name: openai\n      kind: openai\n      baseUrl: {}/v1\n      apiKeyEnv: {KEY_ENV}\n",
            mock.url()
        ),
    );
    for d in ["/users/alice/bin", "/users/alice/bin/media@1.0.0"] {
        t.kernel
            .vfs()
            .create_dir(&avix_vfs::Caller::kernel(), &p(d))
            .unwrap();
    }
    t.kernel.vfs().write(
        &avix_vfs::Caller::kernel(),
        &p("/users/alice/bin/media@1.0.0/agent.yaml"),
        b"apiVersion: avix/v1\nkind: Agent\nmetadata: {name: media, version: 1.0.0}\nspec:\n  tools: {required: [llm/generate-image, llm/generate-speech, llm/transcribe, llm/embed, llm/complete]}\n",
    ).unwrap();
    t.script(
        "media",
        "  turns:\n    - toolCalls: [{name: llm/generate-image, args: {prompt: a red fox, \"n\": 2}}]\n    - toolCalls: [{name: llm/generate-speech, args: {text: hello there, voice: nova}}]\n    - match:\n        - when: {contains: speech-}\n          toolCalls: [{name: llm/embed, args: {input: [one, two words]}}]\n        - text: no speech file\n    - text: done\n",
    );
    let proc = t.spawn("media", "make media", Some("media")).await;
    let exit = wait_exit(&proc).await;
    assert_eq!(exit.state, ProcState::Completed, "{}", exit.reason);
    let results: Vec<String> = t
        .journal(&proc)
        .into_iter()
        .filter_map(|e| match e.event {
            JournalEvent::ToolResult {
                result, ok, tool, ..
            } => {
                assert!(ok, "{tool}: {result}");
                Some(result)
            }
            _ => None,
        })
        .collect();
    assert_eq!(results.len(), 3, "{results:?}");
    let img: serde_json::Value = serde_json::from_str(&results[0]).unwrap();
    let paths: Vec<&str> = img["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths.len(), 2);
    for path in &paths {
        assert!(
            path.starts_with(&format!("/users/alice/scratch/{}/image-", proc.pid)),
            "{path}"
        );
        let bytes = t
            .kernel
            .vfs()
            .read(&avix_vfs::Caller::kernel(), &p(path))
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG at {path}");
    }
    let speech: serde_json::Value = serde_json::from_str(&results[1]).unwrap();
    assert_eq!(speech["mimeType"], "audio/mpeg");
    let audio_path = speech["path"].as_str().unwrap().to_owned();
    let emb: serde_json::Value = serde_json::from_str(&results[2]).unwrap();
    assert_eq!(emb["embeddings"].as_array().unwrap().len(), 2);
    assert_eq!(emb["dimensions"], 4);

    // Transcribe the speech just made (the upload is a real multipart form).
    t.script(
        "listen",
        &format!("  turns:\n    - toolCalls: [{{name: llm/transcribe, args: {{path: \"{audio_path}\"}}}}]\n    - text: \"{{last}}\"\n"),
    );
    let proc = t.spawn("media", "listen", Some("listen")).await;
    assert_eq!(wait_exit(&proc).await.state, ProcState::Completed);
    let heard = t.journal(&proc).into_iter().find_map(|e| match e.event {
        JournalEvent::ToolResult { result, .. } => Some(result),
        _ => None,
    });
    let heard: serde_json::Value = serde_json::from_str(&heard.unwrap()).unwrap();
    assert!(
        heard["text"].as_str().unwrap().starts_with("heard "),
        "{heard}"
    );
    assert_eq!(heard["durationSecs"], 1.5);
    let form = mock
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/audio/transcriptions"))
        .unwrap();
    assert!(
        form.header("content-type")
            .unwrap()
            .starts_with("multipart/form-data")
    );

    let status = t.read("/proc/services/llm/status.yaml");
    assert!(
        status.contains("images: 2") && status.contains("speechCharacters: 11"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_replays_from_its_journal_without_a_model() {
    let t = TestKernel::boot();
    let first = t.spawn("assistant", "keep notes", None).await;
    let exit = wait_exit(&first).await;
    assert_eq!(exit.state, ProcState::Completed);
    let id = first.journal.id().to_owned();
    std::fs::remove_file(
        t.kernel
            .layout()
            .data()
            .join("users/alice/workspace/notes.md"),
    )
    .unwrap();
    let mut req = TestKernel::req("assistant", "keep notes", None);
    req.model = Some(format!("replay/{id}"));
    let again = t.kernel.spawn(&t.alice_caller(), req, None).await.unwrap();
    let exit2 = wait_exit(&again).await;
    assert_eq!(exit2.state, ProcState::Completed, "{}", exit2.reason);
    assert_eq!(exit2.output, exit.output);
    // The replayed tool calls ran again for real.
    assert!(t.read("/users/alice/workspace/notes.md").contains("Notes"));
    let calls = |p| {
        t.journal(p)
            .into_iter()
            .filter(|e| matches!(e.event, JournalEvent::ToolCall { .. }))
            .count()
    };
    assert_eq!(calls(&again), calls(&first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_an_agent_hangs_up_on_the_provider_and_resume_replays_the_turn() {
    set_key();
    let t = TestKernel::boot();
    let mock = MockLlm::start();
    mock.require_key(KEY);
    mock.script(vec![Turn::text("the whole answer")]);
    configure(
        &t,
        &format!(
            "  defaultProvider: mock\n  providers:\n{}",
            provider_yaml("mock", Dialect::Anthropic, &mock, "")
        ),
    );
    mock.plan(Plan::Hang);
    let proc = t.spawn("assistant", "answer", None).await;
    mock.wait_requests(1);
    t.kernel
        .signal(
            &t.alice_caller(),
            &proc,
            avix_kernel::process::Signal::Pause,
        )
        .unwrap();
    wait_state(&proc, ProcState::Paused, None).await;
    // Generous: on a loaded 2-vCPU machine the mock notices the hang-up late (seen at 5 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while mock.hangups().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the HTTP stream was not aborted: {} request(s) reached the mock, the agent is {:?} \
             ({:?}), journal: {:?}",
            mock.requests().len(),
            proc.state(),
            proc.inner().waiting_on,
            t.journal(&proc)
                .iter()
                .map(|e| format!("{:?}", e.event))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t.kernel
        .signal(
            &t.alice_caller(),
            &proc,
            avix_kernel::process::Signal::Resume,
        )
        .unwrap();
    let exit = wait_exit(&proc).await;
    assert_eq!(exit.output.as_deref(), Some("the whole answer"));
    assert_eq!(mock.requests().len(), 2);
}
