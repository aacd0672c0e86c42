//! `fs/read`, `fs/write`, `fs/list`, `fs/stat`, `fs/delete`: the VFS for agents, with the
//! agent's rights (its user's, minus what agents may never do). Relative paths are in the
//! user's workspace.

use std::sync::Arc;

use avix_vfs::{EntryKind, VfsPath};

use crate::process::Process;
use serde_json::{Value, json};

use super::{
    Category, ToolContext, ToolDescriptor, ToolError, ToolHandler, arg_opt_str, arg_opt_u64,
    arg_str, kernel_tool,
};

/// Largest read returned to a model (larger files are read in pieces with offset/length).
pub const MAX_READ: u64 = 1024 * 1024;

/// Resolves `path` against the process's workspace.
pub fn resolve(cx: &ToolContext, path: &str) -> Result<VfsPath, ToolError> {
    resolve_in(&cx.process, path)
}

/// Resolves `path` for `p`: a relative path is in its workspace; for a fork (which works in
/// its own copy), a path in its user's workspace is the same path in the copy, so the
/// conversation it carries over keeps meaning the files it sees.
pub fn resolve_in(p: &Process, path: &str) -> Result<VfsPath, ToolError> {
    let parse = |s: &str| VfsPath::parse(s).map_err(|e| ToolError::invalid(e.to_string()));
    if !path.starts_with('/') {
        return parse(&format!("{}/{path}", p.workspace));
    }
    let full = parse(path)?;
    let home = format!("/users/{}/workspace", p.user);
    if p.workspace != home
        && let Some(rest) = full.as_str().strip_prefix(&home)
        && (rest.is_empty() || rest.starts_with('/'))
    {
        return parse(&format!("{}{rest}", p.workspace));
    }
    Ok(full)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ToolError> + Send + 'static,
) -> Result<T, ToolError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ToolError::new("EIO", format!("the tool task failed: {e}")))?
}

async fn read(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let path = resolve(&cx, arg_str(&args, "path")?)?;
    let offset = arg_opt_u64(&args, "offset")?.unwrap_or(0);
    let length = arg_opt_u64(&args, "length")?
        .unwrap_or(MAX_READ)
        .min(MAX_READ);
    let caller = cx.process.caller.clone();
    let vfs = cx.kernel.vfs().clone();
    blocking(move || {
        let data = vfs.read(&caller, &path)?;
        let size = data.len() as u64;
        // Both are at most data.len(): they fit a usize.
        let start = usize::try_from(offset.min(size)).unwrap_or(data.len());
        let end = usize::try_from(offset.saturating_add(length).min(size)).unwrap_or(data.len());
        let slice = &data[start..end];
        let content = std::str::from_utf8(slice).map_err(|_| {
            ToolError::new(
                "EINVAL",
                format!("{path} is not UTF-8 text ({size} bytes); it cannot be shown to the model"),
            )
        })?;
        let mut out = json!({"path": path.as_str(), "size": size, "content": content});
        if (end as u64) < size {
            out["truncated"] = json!(true);
            out["next"] = json!(end);
        }
        Ok(out)
    })
    .await
}

async fn write(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let path = resolve(&cx, arg_str(&args, "path")?)?;
    let content = arg_str(&args, "content")?.to_owned();
    let append = args.get("append").and_then(Value::as_bool).unwrap_or(false);
    let caller = cx.process.caller.clone();
    let vfs = cx.kernel.vfs().clone();
    blocking(move || {
        let mut bytes = Vec::new();
        if append {
            match vfs.read(&caller, &path) {
                Ok(old) => bytes.extend_from_slice(&old),
                Err(avix_vfs::VfsError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        bytes.extend_from_slice(content.as_bytes());
        vfs.write(&caller, &path, &bytes)?;
        Ok(json!({"path": path.as_str(), "bytes": bytes.len()}))
    })
    .await
}

async fn list(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let path = resolve(&cx, arg_opt_str(&args, "path")?.unwrap_or("."))?;
    let caller = cx.process.caller.clone();
    let vfs = cx.kernel.vfs().clone();
    blocking(move || {
        let entries: Vec<Value> = vfs
            .list(&caller, &path)?
            .into_iter()
            .map(|e| json!({"name": e.name, "kind": if e.kind == EntryKind::Dir { "dir" } else { "file" }}))
            .collect();
        Ok(json!({"path": path.as_str(), "entries": entries}))
    })
    .await
}

async fn stat(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let path = resolve(&cx, arg_str(&args, "path")?)?;
    let caller = cx.process.caller.clone();
    let vfs = cx.kernel.vfs().clone();
    blocking(move || {
        let st = vfs.stat(&caller, &path)?;
        let modified = avix_proto::time::Timestamp::from(st.mtime);
        Ok(json!({
            "path": path.as_str(),
            "kind": if st.kind == EntryKind::Dir { "dir" } else { "file" },
            "size": st.size,
            "modified": modified.to_string(),
        }))
    })
    .await
}

async fn delete(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let path = resolve(&cx, arg_str(&args, "path")?)?;
    let caller = cx.process.caller.clone();
    let vfs = cx.kernel.vfs().clone();
    blocking(move || {
        let st = vfs.stat(&caller, &path)?;
        if st.kind == EntryKind::Dir {
            vfs.remove_dir(&caller, &path)?;
        } else {
            vfs.remove_file(&caller, &path)?;
        }
        Ok(json!({"path": path.as_str(), "deleted": true}))
    })
    .await
}

fn path_schema(extra: Value) -> Value {
    let mut props = json!({"path": {"type": "string", "description": "A path; relative paths are in the workspace"}});
    if let (Some(p), Some(e)) = (props.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    props
}

/// The fs tools.
pub fn tools() -> Vec<(ToolDescriptor, Arc<dyn ToolHandler>)> {
    vec![
        (
            kernel_tool(
                "fs/read",
                Category::Direct,
                "Read a text file (up to 1 MiB per call; use offset and length for more).",
                json!({"type": "object", "properties": path_schema(json!({"offset": {"type": "integer"}, "length": {"type": "integer"}})), "required": ["path"]}),
            ),
            Arc::new(read),
        ),
        (
            kernel_tool(
                "fs/write",
                Category::Direct,
                "Write a text file, replacing it (or appending with append: true). The write is atomic.",
                json!({"type": "object", "properties": path_schema(json!({"content": {"type": "string"}, "append": {"type": "boolean"}})), "required": ["path", "content"]}),
            ),
            Arc::new(write),
        ),
        (
            kernel_tool(
                "fs/list",
                Category::Direct,
                "List a directory (the workspace when path is omitted).",
                json!({"type": "object", "properties": path_schema(json!({}))}),
            ),
            Arc::new(list),
        ),
        (
            kernel_tool(
                "fs/stat",
                Category::Direct,
                "Kind, size and modification time of a file or directory.",
                json!({"type": "object", "properties": path_schema(json!({})), "required": ["path"]}),
            ),
            Arc::new(stat),
        ),
        (
            kernel_tool(
                "fs/delete",
                Category::Direct,
                "Delete a file or an empty directory.",
                json!({"type": "object", "properties": path_schema(json!({})), "required": ["path"]}),
            ),
            Arc::new(delete),
        ),
    ]
}
