//! Optional smoke tests against the real providers. Each runs when its variable is set
//! (`ANTHROPIC_API_KEY`, `OPENAI_API_KEY`, `OLLAMA_HOST`) and is skipped, saying so,
//! otherwise. Models can be changed with `AVIX_LIVE_ANTHROPIC_MODEL`,
//! `AVIX_LIVE_OPENAI_MODEL` and `AVIX_LIVE_OLLAMA_MODEL`.

use std::sync::Arc;

use avix_llm::LlmClient;
use avix_llm::http::{Credential, HttpStats};
use avix_llm::provider::HttpText;
use avix_proto::config::llm::Provider;
use avix_proto::llm::{ContentBlock, LlmRequest, Message, StopReason, ToolSpec};
use serde_json::json;

async fn smoke(name: &str, yaml: String, key: Option<String>, model: String) {
    let p: Provider = avix_proto::yaml::from_str(&yaml).unwrap();
    let c = HttpText::new(&p, key.map(Credential::new), Arc::new(HttpStats::default())).unwrap();
    let req = LlmRequest {
        model: format!("{}/{model}", p.name),
        system: "You are a test. Use the tool when asked.".into(),
        messages: vec![Message::user_text(
            "Call the tool fs/read with path notes.txt. Do not answer in text.",
        )],
        tools: vec![ToolSpec {
            name: "fs/read".into(),
            description: "Read a file".into(),
            input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
        }],
        max_tokens: 200,
        temperature: Some(0.0),
        meta: Default::default(),
    };
    let r = c
        .complete(req, None)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!("{name}: {:?} {:?} {:?}", r.stop_reason, r.usage, r.content);
    assert!(r.usage.output_tokens > 0, "{name}: usage reported");
    let called = r.content.iter().any(|b| matches!(b, ContentBlock::ToolUse { name, input, .. } if name == "fs/read" && input["path"] == "notes.txt"));
    assert!(
        called && r.stop_reason == StopReason::ToolUse,
        "{name}: the model called the tool: {:?}",
        r.content
    );
}

fn var(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.trim().is_empty())
}

#[tokio::test]
async fn live_anthropic() {
    let Some(key) = var("ANTHROPIC_API_KEY") else {
        eprintln!("skipped: ANTHROPIC_API_KEY is not set");
        return;
    };
    let model = var("AVIX_LIVE_ANTHROPIC_MODEL").unwrap_or_else(|| "claude-haiku-4-5".into());
    smoke(
        "anthropic",
        "name: anthropic\nkind: anthropic\n".into(),
        Some(key),
        model,
    )
    .await;
}

#[tokio::test]
async fn live_openai() {
    let Some(key) = var("OPENAI_API_KEY") else {
        eprintln!("skipped: OPENAI_API_KEY is not set");
        return;
    };
    let model = var("AVIX_LIVE_OPENAI_MODEL").unwrap_or_else(|| "gpt-4.1-mini".into());
    smoke(
        "openai",
        "name: openai\nkind: openai\n".into(),
        Some(key),
        model,
    )
    .await;
}

#[tokio::test]
async fn live_ollama() {
    let Some(host) = var("OLLAMA_HOST") else {
        eprintln!("skipped: OLLAMA_HOST is not set");
        return;
    };
    let base = if host.starts_with("http") {
        host
    } else {
        format!("http://{host}")
    };
    let model = var("AVIX_LIVE_OLLAMA_MODEL").unwrap_or_else(|| "llama3.2".into());
    smoke(
        "ollama",
        format!("name: ollama\nkind: ollama\nbaseUrl: {base}\n"),
        None,
        model,
    )
    .await;
}
