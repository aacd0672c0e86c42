//! IPC frame encode and decode of a 1 KiB tool call. Run: `cargo bench -p avix-ipc`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use avix_ipc::{frame, server};
use avix_proto::rpc::{Id, Request};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::value::RawValue;

fn call_1k() -> Request {
    let content = "x".repeat(900);
    let params = format!(
        r#"{{"path":"notes/today.md","content":"{content}","_caller":{{"pid":123,"user":"alice","session":"9b2f1c1e-8d4b-4a57-9d0e-2f1c0e7b5a11","token":"avixcap1.eyJwIjoxMjN9.0123456789abcdef"}}}}"#
    );
    Request::new(
        Id::Num(42),
        "fs/write",
        Some(RawValue::from_string(params).unwrap()),
    )
}

fn benches(c: &mut Criterion) {
    let req = call_1k();
    let bytes = frame::encode(&req, 1 << 20).unwrap();
    assert!((1024..1200).contains(&bytes.len()), "{}", bytes.len());
    c.bench_function("frame encode 1 KiB call", |b| {
        b.iter(|| frame::encode(black_box(&req), 1 << 20).unwrap())
    });
    c.bench_function("frame decode 1 KiB call", |b| {
        b.iter(|| server::parse_request(black_box(&bytes[4..])).unwrap())
    });
    c.bench_function("frame encode + decode 1 KiB call", |b| {
        b.iter(|| {
            let f = frame::encode(black_box(&req), 1 << 20).unwrap();
            server::parse_request(&f[4..]).unwrap()
        })
    });
}

criterion_group!(ipc_benches, benches);
criterion_main!(ipc_benches);
