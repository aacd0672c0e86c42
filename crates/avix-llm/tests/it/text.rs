//! The text adapters: streaming and whole answers, tool calls split across chunks, streams
//! cut at every awkward byte boundary, retries, broken streams, cancellation, keys.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use avix_llm::http::{Credential, HttpStats};
use avix_llm::provider::HttpText;
use avix_llm::{LlmClient, LlmError, StreamSink};
use avix_proto::config::llm::{Provider, ProviderKind};
use avix_proto::llm::{
    ContentBlock, LlmRequest, Message, MessageRole, StopReason, StreamEvent, ToolSpec,
};
use avix_testkit::mock_llm::{Dialect, MockLlm, Plan, Turn};
use serde_json::json;

const KEY: &str = "sk-test-0123456789abcdefghijklmnop";
const DIALECTS: [Dialect; 3] = [Dialect::Anthropic, Dialect::OpenAi, Dialect::Ollama];

fn provider(d: Dialect, mock: &MockLlm, stream: bool) -> Provider {
    let (kind, base) = match d {
        Dialect::Anthropic => (ProviderKind::Anthropic, mock.url()),
        Dialect::OpenAi => (ProviderKind::Openai, format!("{}/v1", mock.url())),
        Dialect::Ollama => (ProviderKind::Ollama, mock.url()),
    };
    let yaml = format!(
        "name: p\nkind: {}\nbaseUrl: {base}\nstream: {stream}\ntimeouts: {{firstByteSecs: 2, idleSecs: 0.5}}\nretry: {{maxAttempts: 3, initialBackoffMs: 10, maxBackoffMs: 50}}\n",
        serde_json::to_value(kind).unwrap().as_str().unwrap()
    );
    avix_proto::yaml::from_str(&yaml).unwrap()
}

fn client(d: Dialect, mock: &MockLlm, stream: bool) -> HttpText {
    mock.require_key(KEY);
    HttpText::new(
        &provider(d, mock, stream),
        Some(Credential::new(KEY.into())),
        Arc::new(HttpStats::default()),
    )
    .unwrap()
}

fn request(messages: Vec<Message>) -> LlmRequest {
    LlmRequest {
        model: "p/test-model".into(),
        system: "You are a test.".into(),
        messages,
        tools: vec![ToolSpec {
            name: "fs/write".into(),
            description: "Write a file".into(),
            input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}}),
        }],
        max_tokens: 256,
        temperature: Some(0.2),
        meta: Default::default(),
    }
}

fn collect() -> (StreamSink, Arc<Mutex<Vec<StreamEvent>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    (
        Arc::new(move |e: &StreamEvent| s.lock().unwrap().push(e.clone())),
        seen,
    )
}

fn script(mock: &MockLlm) {
    mock.script(vec![
        Turn::call(
            "I will write the note.",
            "fs/write",
            json!({"path": "notes/é.txt", "content": "hello \"world\" ünïcode"}),
        ),
        Turn::text("Done: {last}"),
    ]);
}

#[tokio::test]
async fn every_adapter_streams_text_and_tool_calls() {
    for d in DIALECTS {
        let mock = MockLlm::start();
        script(&mock);
        let c = client(d, &mock, true);
        let (sink, seen) = collect();
        let r = c
            .complete(request(vec![Message::user_text("write it")]), Some(sink))
            .await
            .unwrap_or_else(|e| panic!("{d:?}: {e}"));
        assert_eq!(r.stop_reason, StopReason::ToolUse, "{d:?}");
        assert_eq!(
            r.content[0],
            ContentBlock::Text {
                text: "I will write the note.".into()
            },
            "{d:?}"
        );
        let ContentBlock::ToolUse { name, input, id } = &r.content[1] else {
            panic!("{d:?}: {:?}", r.content)
        };
        assert_eq!(name, "fs/write");
        assert_eq!(input["content"], "hello \"world\" ünïcode", "{d:?}");
        assert!(
            r.usage.input_tokens > 0 && r.usage.output_tokens > 0,
            "{d:?}: {:?}",
            r.usage
        );
        let events = seen.lock().unwrap().clone();
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::TextDelta { text } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text, "I will write the note.", "{d:?}");
        assert!(
            events
                .iter()
                .filter(|e| matches!(e, StreamEvent::TextDelta { .. }))
                .count()
                > 1,
            "{d:?}: text arrives in pieces"
        );
        assert!(
            events.iter().any(
                |e| matches!(e, StreamEvent::ToolCallStart { name, .. } if name == "fs/write")
            )
        );

        // The second turn: the tool result goes back in the provider's shape (the mock
        // refuses misplaced results with a 400, as the real APIs do).
        let conv = vec![
            Message::user_text("write it"),
            Message {
                role: MessageRole::Assistant,
                content: r.content.clone(),
            },
            Message {
                role: MessageRole::User,
                content: vec![ContentBlock::ToolResult {
                    tool_use_id: id.clone(),
                    content: "wrote 24 bytes".into(),
                    is_error: false,
                }],
            },
        ];
        let r2 = c
            .complete(request(conv), None)
            .await
            .unwrap_or_else(|e| panic!("{d:?}: {e}"));
        assert_eq!(r2.stop_reason, StopReason::EndTurn);
        assert_eq!(
            r2.content,
            vec![ContentBlock::Text {
                text: "Done: wrote 24 bytes".into()
            }],
            "{d:?}"
        );
        let reqs = mock.requests();
        assert_eq!(reqs.len(), 2);
        if d == Dialect::Anthropic {
            assert_eq!(reqs[0].header("anthropic-version"), Some("2023-06-01"));
            assert_eq!(reqs[0].header("x-api-key"), Some(KEY));
        } else {
            assert_eq!(
                reqs[0].header("authorization"),
                Some(format!("Bearer {KEY}").as_str())
            );
        }
    }
}

#[tokio::test]
async fn whole_answers_without_streaming() {
    for d in DIALECTS {
        let mock = MockLlm::start();
        script(&mock);
        let c = client(d, &mock, false);
        let r = c
            .complete(request(vec![Message::user_text("go")]), None)
            .await
            .unwrap();
        assert_eq!(r.stop_reason, StopReason::ToolUse, "{d:?}");
        assert_eq!(r.content.len(), 2, "{d:?}");
        let body = mock.requests()[0].json();
        assert_ne!(body["stream"], true, "{d:?}");
    }
}

#[tokio::test]
async fn streams_split_at_every_few_bytes_decode_the_same() {
    for d in DIALECTS {
        for split in [1, 2, 3, 5, 7, 13] {
            let mock = MockLlm::start();
            script(&mock);
            mock.plan(Plan::Reply { split, delay_ms: 0 });
            let c = client(d, &mock, true);
            let r = c
                .complete(request(vec![Message::user_text("go")]), None)
                .await
                .unwrap_or_else(|e| panic!("{d:?} split {split}: {e}"));
            assert_eq!(r.content.len(), 2, "{d:?} split {split}");
            let ContentBlock::ToolUse { input, .. } = &r.content[1] else {
                panic!()
            };
            assert_eq!(input["path"], "notes/é.txt", "{d:?} split {split}");
        }
    }
}

#[tokio::test]
async fn rate_limits_are_retried_after_the_time_the_provider_asks() {
    for d in DIALECTS {
        let mock = MockLlm::start();
        script(&mock);
        mock.plan(Plan::Status {
            code: 429,
            headers: vec![("retry-after".into(), "1".into())],
            message: "rate limited".into(),
        });
        let c = client(d, &mock, true);
        let started = Instant::now();
        let r = c
            .complete(request(vec![Message::user_text("go")]), None)
            .await
            .unwrap();
        assert_eq!(r.content.len(), 2);
        let reqs = mock.requests();
        assert_eq!(reqs.len(), 2, "{d:?}");
        let gap = reqs[1].at - reqs[0].at;
        assert!(
            gap >= Duration::from_millis(950),
            "{d:?}: retried after {gap:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}

#[tokio::test]
async fn server_errors_are_retried_and_client_errors_are_not() {
    for d in DIALECTS {
        let mock = MockLlm::start();
        script(&mock);
        mock.plan(Plan::Status {
            code: 500,
            headers: vec![],
            message: "boom".into(),
        });
        mock.plan(Plan::Status {
            code: 503,
            headers: vec![],
            message: "busy".into(),
        });
        let c = client(d, &mock, true);
        c.complete(request(vec![Message::user_text("go")]), None)
            .await
            .unwrap();
        assert_eq!(mock.requests().len(), 3, "{d:?}");

        mock.plan(Plan::Status {
            code: 400,
            headers: vec![],
            message: "your request is wrong".into(),
        });
        let e = c
            .complete(request(vec![Message::user_text("go")]), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, LlmError::Provider { status: 400, message, .. } if message.contains("your request is wrong")),
            "{d:?}: {e}"
        );
        assert_eq!(mock.requests().len(), 4, "{d:?}: a 400 is not retried");

        for _ in 0..3 {
            mock.plan(Plan::Status {
                code: 529,
                headers: vec![],
                message: "overloaded".into(),
            });
        }
        let e = c
            .complete(request(vec![Message::user_text("go")]), None)
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("gave up after 3 attempts"),
            "{d:?}: {e}"
        );
    }
}

#[tokio::test]
async fn a_cut_connection_is_retried_only_before_output_reached_the_agent() {
    for d in DIALECTS {
        let mock = MockLlm::start();
        script(&mock);
        // Cut inside the first frame: nothing reached the agent, so the call is retried.
        mock.plan(Plan::Cut(20));
        let c = client(d, &mock, true);
        let (sink, seen) = collect();
        let r = c
            .complete(request(vec![Message::user_text("go")]), Some(sink))
            .await
            .unwrap();
        assert_eq!(r.content.len(), 2);
        assert_eq!(mock.requests().len(), 2, "{d:?}");
        let text: usize = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, StreamEvent::TextDelta { .. }))
            .count();
        assert!(text > 0);

        // Cut after some text went out: the error says so and there is no retry.
        mock.plan(Plan::Cut(if d == Dialect::Anthropic { 700 } else { 400 }));
        let (sink, seen) = collect();
        let e = c
            .complete(request(vec![Message::user_text("go")]), Some(sink))
            .await
            .unwrap_err();
        assert!(
            !seen.lock().unwrap().is_empty(),
            "{d:?}: some output went out"
        );
        assert!(e.to_string().contains("not retried"), "{d:?}: {e}");
        assert_eq!(mock.requests().len(), 3, "{d:?}");
    }
}

#[tokio::test]
async fn truncated_and_malformed_streams_give_clear_errors() {
    for d in DIALECTS {
        let mock = MockLlm::start();
        script(&mock);
        let c = client(d, &mock, true);
        // A stream that ends cleanly but without its last frames (no message_stop /
        // [DONE] / done:true and no finish reason).
        mock.plan(Plan::Truncate(3));
        mock.plan(Plan::Truncate(3));
        mock.plan(Plan::Truncate(3));
        let e = c
            .complete(request(vec![Message::user_text("go")]), None)
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("ended before the response was complete"),
            "{d:?}: {e}"
        );

        let garbage = match d {
            Dialect::Ollama => "{\"model\": \"x\", \"message\": {\"content\": \"hi\"\n".to_owned(),
            _ => "data: {\"type\": \"message_start\", \"oops\n\n".to_owned(),
        };
        mock.plan(Plan::Raw(garbage));
        let e = c
            .complete(request(vec![Message::user_text("go")]), None)
            .await
            .unwrap_err();
        assert!(matches!(e, LlmError::Protocol { .. }), "{d:?}: {e}");
        assert!(e.to_string().contains("invalid JSON"), "{d:?}: {e}");
    }
}

#[tokio::test]
async fn an_in_stream_error_event_reaches_the_caller() {
    let mock = MockLlm::start();
    script(&mock);
    let c = client(Dialect::Anthropic, &mock, true);
    mock.plan(Plan::Raw(
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"prompt is too long\"}}\n\n".into(),
    ));
    let e = c
        .complete(request(vec![Message::user_text("go")]), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("prompt is too long"), "{e}");
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn silence_times_out_and_dropping_the_call_hangs_up() {
    for d in DIALECTS {
        let mock = MockLlm::start();
        script(&mock);
        let c = client(d, &mock, true);
        // A provider that goes silent mid-stream: the idle timeout (0.5 s) fires.
        for _ in 0..3 {
            mock.plan(Plan::Hang);
        }
        let started = Instant::now();
        let e = c
            .complete(request(vec![Message::user_text("go")]), None)
            .await
            .unwrap_err();
        assert!(matches!(e, LlmError::Timeout(_)), "{d:?}: {e}");
        assert!(started.elapsed() < Duration::from_secs(5));

        // Dropping the future (what a signal to the agent does) closes the connection.
        let mock = MockLlm::start();
        script(&mock);
        let c = client(d, &mock, true);
        mock.plan(Plan::Hang);
        let call = c.complete(request(vec![Message::user_text("go")]), None);
        let r = tokio::time::timeout(Duration::from_millis(200), call).await;
        assert!(r.is_err());
        let dropped = Instant::now();
        let deadline = dropped + Duration::from_secs(3);
        while mock.hangups().is_empty() {
            assert!(
                Instant::now() < deadline,
                "{d:?}: the connection stayed open"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test]
async fn a_wrong_key_is_refused_with_the_providers_message_and_never_echoed() {
    for d in DIALECTS {
        let mock = MockLlm::start();
        script(&mock);
        mock.require_key("sk-the-right-key-000000000000");
        let c = HttpText::new(
            &provider(d, &mock, true),
            Some(Credential::new(KEY.into())),
            Arc::new(HttpStats::default()),
        )
        .unwrap();
        let e = c
            .complete(request(vec![Message::user_text("go")]), None)
            .await
            .unwrap_err();
        let text = format!("{e} {e:?} {c:?}");
        assert!(
            text.contains("401") && text.contains("Incorrect API key"),
            "{d:?}: {text}"
        );
        assert!(text.contains("check the API key"), "{text}");
        assert!(
            !text.contains(KEY) && !text.contains("0123456789abcdef"),
            "{d:?}: {text}"
        );
        assert_eq!(mock.requests().len(), 1, "{d:?}: a 401 is not retried");
    }
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p: Provider = avix_proto::yaml::from_str(&format!(
        "name: p\nkind: ollama\nbaseUrl: http://127.0.0.1:{port}\nretry: {{maxAttempts: 2, initialBackoffMs: 10}}\n"
    ))
    .unwrap();
    let c = HttpText::new(&p, None, Arc::new(HttpStats::default())).unwrap();
    let e = c
        .complete(request(vec![Message::user_text("go")]), None)
        .await
        .unwrap_err();
    assert!(matches!(e, LlmError::Transport { .. }), "{e}");
    assert!(e.to_string().contains("gave up after 2 attempts"), "{e}");
}
