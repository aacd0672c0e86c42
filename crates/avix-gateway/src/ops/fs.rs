//! `fs`: the VFS as the connection's user sees it (the same rules as on the mount).

use avix_proto::atp::{AtpError, ErrorCode};
use avix_proto::op::{FsReadArgs, FsWriteArgs, Op};
use avix_proto::time::Timestamp;
use avix_vfs::{Caller, EntryKind, Vfs, VfsError, VfsPath};
use base64::Engine;
use serde_json::{Value, json};

use super::{Asker, Body, Done, Effects, atp_error};
use crate::Gateway;

/// Largest `fs read` reply.
pub const MAX_FS_READ: u64 = 512 * 1024;

fn path(p: &str) -> Result<VfsPath, AtpError> {
    if !p.starts_with('/') {
        return Err(AtpError::new(
            ErrorCode::EINVAL,
            format!("path {p:?} must be absolute (ATP has no working directory)"),
        ));
    }
    VfsPath::parse(p).map_err(|e| AtpError::new(ErrorCode::EINVAL, e.to_string()))
}

fn kind(k: EntryKind) -> &'static str {
    if k == EntryKind::Dir { "dir" } else { "file" }
}

impl Gateway {
    pub(super) async fn fs_op(&self, a: &Asker, op: Op) -> Done {
        let vfs = self.kernel.vfs().clone();
        let caller = a.caller.clone();
        // The VFS is synchronous: its calls run off the reactor.
        let result = tokio::task::spawn_blocking(move || fs(&vfs, &caller, op))
            .await
            .map_err(|e| AtpError::new(ErrorCode::EINTERNAL, e.to_string()))??;
        Ok((Body::from(result), Effects::default()))
    }
}

fn fs(vfs: &Vfs, caller: &Caller, op: Op) -> Result<Value, AtpError> {
    match op {
        Op::FsRead(arg) => read(vfs, caller, &arg),
        Op::FsWrite(arg) => write(vfs, caller, arg),
        Op::FsList(arg) => {
            let p = path(&arg.path)?;
            let entries: Vec<Value> = vfs
                .list(caller, &p)
                .map_err(atp_error)?
                .into_iter()
                .map(|e| json!({"name": e.name, "kind": kind(e.kind)}))
                .collect();
            Ok(json!({"path": p.as_str(), "entries": entries}))
        }
        Op::FsStat(arg) => {
            let p = path(&arg.path)?;
            let st = vfs.stat(caller, &p).map_err(atp_error)?;
            Ok(json!({
                "path": p.as_str(),
                "kind": kind(st.kind),
                "size": st.size,
                "modified": Timestamp::from(st.mtime),
                "owner": st.owner.map(|o| o.to_string()),
            }))
        }
        Op::FsDelete(arg) => {
            let p = path(&arg.path)?;
            let st = vfs.stat(caller, &p).map_err(atp_error)?;
            if st.kind == EntryKind::Dir {
                vfs.remove_dir(caller, &p).map_err(atp_error)?;
            } else {
                vfs.remove_file(caller, &p).map_err(atp_error)?;
            }
            Ok(json!({"path": p.as_str(), "deleted": true}))
        }
        other => Err(super::misrouted(&other)),
    }
}

fn read(vfs: &Vfs, caller: &Caller, arg: &FsReadArgs) -> Result<Value, AtpError> {
    let p = path(&arg.path)?;
    let data = vfs.read(caller, &p).map_err(atp_error)?;
    let size = data.len() as u64;
    let start = arg.offset.unwrap_or(0).min(size);
    let len = arg.length.unwrap_or(MAX_FS_READ).min(MAX_FS_READ);
    let end = (start + len).min(size);
    // Both are at most the length of data, which is in memory: they fit a usize.
    let slice = &data
        [usize::try_from(start).unwrap_or(data.len())..usize::try_from(end).unwrap_or(data.len())];
    let mut out = json!({"path": p.as_str(), "size": size, "offset": start});
    match std::str::from_utf8(slice) {
        Ok(t) => out["content"] = json!(t),
        Err(_) => {
            out["contentBase64"] = json!(base64::engine::general_purpose::STANDARD.encode(slice));
        }
    }
    if end < size {
        out["next"] = json!(end);
    }
    Ok(out)
}

fn write(vfs: &Vfs, caller: &Caller, arg: FsWriteArgs) -> Result<Value, AtpError> {
    let p = path(&arg.path)?;
    let new = match (arg.content, arg.content_base64) {
        (Some(t), None) => t.into_bytes(),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b.as_bytes())
            .map_err(|e| {
                AtpError::new(
                    ErrorCode::EINVAL,
                    format!("contentBase64 is not base64: {e}"),
                )
            })?,
        _ => {
            return Err(AtpError::new(
                ErrorCode::EINVAL,
                "fs write takes content (text) or contentBase64, one of them",
            ));
        }
    };
    let mut bytes = Vec::new();
    if arg.append {
        match vfs.read(caller, &p) {
            Ok(old) => bytes.extend_from_slice(&old),
            Err(VfsError::NotFound(_)) => {}
            Err(e) => return Err(atp_error(e)),
        }
    }
    bytes.extend_from_slice(&new);
    let reply = vfs.write(caller, &p, &bytes).map_err(atp_error)?;
    let mut out = json!({"path": p.as_str(), "bytes": bytes.len()});
    if let Some(r) = reply {
        out["reply"] = json!(String::from_utf8_lossy(&r));
    }
    Ok(out)
}
