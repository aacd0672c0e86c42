//! Stream parsing throughput per adapter, and the scheduler's cost per request.
//!
//! `cargo bench -p avix-llm --bench llm`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use avix_llm::assemble::Assembler;
use avix_llm::framing::Decoder;
use avix_llm::sched::Gate;
use avix_llm::wire::TextWire;
use avix_llm::wire::anthropic::Anthropic;
use avix_llm::wire::ollama::Ollama;
use avix_llm::wire::openai::OpenAi;
use avix_proto::config::llm::ProviderLimits;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

const DELTAS: usize = 2000;
const PIECE: &str = "The quick brown fox ";

fn sse(event: Option<&str>, data: &serde_json::Value) -> String {
    match event {
        Some(e) => format!("event: {e}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

/// A long answer (2000 text deltas, then a tool call in 20 fragments) in each format.
fn bodies() -> Vec<(&'static str, Box<dyn TextWire>, String)> {
    let args = json!({"path": "notes.txt", "content": "x".repeat(400)}).to_string();
    let frags: Vec<String> = args
        .as_bytes()
        .chunks(args.len() / 20 + 1)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();

    let mut a = sse(
        Some("message_start"),
        &json!({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "content": [], "model": "claude", "usage": {"input_tokens": 100, "output_tokens": 1}}}),
    );
    a += &sse(
        Some("content_block_start"),
        &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    for _ in 0..DELTAS {
        a += &sse(
            Some("content_block_delta"),
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": PIECE}}),
        );
    }
    a += &sse(
        Some("content_block_stop"),
        &json!({"type": "content_block_stop", "index": 0}),
    );
    a += &sse(
        Some("content_block_start"),
        &json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "fs__write", "input": {}}}),
    );
    for f in &frags {
        a += &sse(
            Some("content_block_delta"),
            &json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": f}}),
        );
    }
    a += &sse(
        Some("content_block_stop"),
        &json!({"type": "content_block_stop", "index": 1}),
    );
    a += &sse(
        Some("message_delta"),
        &json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 4000}}),
    );
    a += &sse(Some("message_stop"), &json!({"type": "message_stop"}));

    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        sse(
            None,
            &json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    let mut o = chunk(
        json!({"role": "assistant", "content": ""}),
        serde_json::Value::Null,
    );
    for _ in 0..DELTAS {
        o += &chunk(json!({"content": PIECE}), serde_json::Value::Null);
    }
    o += &chunk(
        json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "fs__write", "arguments": ""}}]}),
        serde_json::Value::Null,
    );
    for f in &frags {
        o += &chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": f}}]}),
            serde_json::Value::Null,
        );
    }
    o += &chunk(json!({}), json!("tool_calls"));
    o += &sse(
        None,
        &json!({"id": "c", "choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 4000}}),
    );
    o += "data: [DONE]\n\n";

    let mut l = String::new();
    for _ in 0..DELTAS {
        l += &format!(
            "{}\n",
            json!({"model": "llama", "created_at": "2026-11-25T00:00:00Z", "message": {"role": "assistant", "content": PIECE}, "done": false})
        );
    }
    l += &format!(
        "{}\n",
        json!({"model": "llama", "created_at": "2026-11-25T00:00:00Z", "message": {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "fs__write", "arguments": json!({"path": "notes.txt", "content": "x".repeat(400)})}}]}, "done": false})
    );
    l += &format!(
        "{}\n",
        json!({"model": "llama", "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop", "prompt_eval_count": 100, "eval_count": 4000})
    );

    vec![
        ("anthropic", Box::new(Anthropic), a),
        ("openai", Box::new(OpenAi::default()), o),
        ("ollama", Box::new(Ollama), l),
    ]
}

fn decode(wire: &dyn TextWire, body: &[u8]) -> usize {
    let mut asm = Assembler::new(None);
    let mut stream = wire.stream();
    let mut dec = Decoder::new(wire.framing());
    // Network-sized pieces.
    for piece in body.chunks(1460) {
        dec.feed(piece, &mut |f| stream.frame(f, &mut asm).map(|_| ()))
            .unwrap();
    }
    dec.finish(&mut |f| stream.frame(f, &mut asm).map(|_| ()))
        .unwrap();
    asm.finish().unwrap().0.len()
}

fn parsing(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream_parse");
    for (name, wire, body) in bodies() {
        assert_eq!(decode(wire.as_ref(), body.as_bytes()), 2, "{name}");
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| b.iter(|| decode(wire.as_ref(), body.as_bytes())));
    }
    g.finish();
}

fn scheduler(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("scheduler");
    let limited = Gate::new(ProviderLimits {
        concurrency: Some(64),
        requests_per_minute: Some(u32::MAX),
        tokens_per_minute: Some(u64::MAX),
    });
    let open = Gate::new(ProviderLimits::default());
    g.bench_function("acquire_release_uncontended_no_limits", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(open.acquire("alice", 5, 0, |_| {}).await) });
    });
    g.bench_function("acquire_release_uncontended_all_limits", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(limited.acquire("alice", 5, 500, |_| {}).await) });
    });
    // 1000 requests from 10 users through 8 slots: every request but 8 queues.
    let tight = Gate::new(ProviderLimits {
        concurrency: Some(8),
        ..ProviderLimits::default()
    });
    g.throughput(Throughput::Elements(1000));
    g.bench_function("1000_requests_through_8_slots", |b| {
        b.to_async(&rt).iter(|| {
            let tight = tight.clone();
            async move {
                let mut tasks = Vec::with_capacity(1000);
                for i in 0..1000u32 {
                    let g = Arc::clone(&tight);
                    tasks.push(tokio::spawn(async move {
                        let user = format!("user{}", i % 10);
                        let p = g.acquire(&user, (i % 10) as u8, 0, |_| {}).await;
                        tokio::task::yield_now().await;
                        drop(p);
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            }
        });
    });
    g.finish();
}

criterion_group!(benches, parsing, scheduler);
criterion_main!(benches);
