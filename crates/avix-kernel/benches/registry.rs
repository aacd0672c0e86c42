//! Tool registry lookup and tool-name mangling. Run: `cargo bench -p avix-kernel --bench registry`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use avix_kernel::tools::{
    Category, ToolContext, ToolDescriptor, ToolError, ToolHandler, ToolRegistry, ToolState,
};
use avix_proto::tool::{ToolName, mangle};
use avix_vfs::{Vfs, VfsPath};
use criterion::{Criterion, criterion_group, criterion_main};

async fn noop(_cx: ToolContext, _args: serde_json::Value) -> Result<serde_json::Value, ToolError> {
    Ok(serde_json::Value::Null)
}

fn benches(c: &mut Criterion) {
    let vfs = Vfs::builder()
        .mount_synthetic(VfsPath::parse("/tools").unwrap())
        .build();
    let reg = ToolRegistry::default();
    let names: Vec<String> = (0..200)
        .map(|i| format!("ns{}/tool-{i}", i % 10))
        .chain(["fs/read".to_owned()])
        .collect();
    for n in &names {
        let d = ToolDescriptor {
            name: ToolName::new(n).unwrap(),
            description: String::new(),
            owner: "bench".into(),
            category: Category::Direct,
            state: ToolState::Available,
            input_schema: serde_json::json!({}),
        };
        reg.register(&vfs, d, Arc::new(noop) as Arc<dyn ToolHandler>);
    }
    c.bench_function("registry_lookup", |b| {
        b.iter(|| reg.get(black_box("fs/read")).unwrap())
    });
    let name = ToolName::new("mcp/github/list-prs").unwrap();
    c.bench_function("mangle_tool_name", |b| b.iter(|| black_box(&name).mangle()));
    c.bench_function("mangle_str_allocating", |b| {
        b.iter(|| mangle(black_box("mcp/github/list-prs")))
    });
    c.bench_function("tool_name_validate", |b| {
        b.iter(|| ToolName::new(black_box("mcp/github/list-prs")).unwrap())
    });
}

criterion_group!(registry_benches, benches);
criterion_main!(registry_benches);
