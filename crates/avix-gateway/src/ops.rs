//! The ATP domains and their operations. Each is a thin translation onto a kernel or VFS
//! call made as the connection's user (door `atp`), so the same rules hold as on the mount:
//! a user sees and touches only their own agents, sessions and approvals; operators and
//! admins see all.

use std::sync::Arc;

use avix_kernel::Kernel;
use avix_kernel::hil::Scope;
use avix_kernel::policy;
use avix_kernel::process::{Process, Signal};
use avix_proto::agent::{InvocationRecord, SpawnRequest};
use avix_proto::atp::{AtpError, ErrorCode, SpawnReply, WhoAmI};
use avix_proto::time::Timestamp;
use avix_proto::{HasKind, Role, UserName};
use avix_vfs::{Caller, EntryKind, VfsError, VfsPath};
use base64::Engine;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::Gateway;

/// Who is asking, for one command.
#[derive(Debug, Clone)]
pub struct Asker {
    /// The user.
    pub user: UserName,
    /// Their role now.
    pub role: Role,
    /// The login.
    pub sid: String,
    /// Token expiry.
    pub exp: i64,
    /// The VFS/kernel identity.
    pub caller: Caller,
}

impl Asker {
    fn privileged(&self) -> bool {
        policy::sees_everyone(&self.caller)
    }

    fn at_least(&self, role: Role, what: &str) -> Result<(), AtpError> {
        Ok(policy::require(&self.caller, role, what)?)
    }
}

/// What a command produced, beyond its reply body.
#[derive(Debug, Default)]
pub struct Effects {
    /// A new token the connection adopts (refresh).
    pub token: Option<String>,
    /// The login ended: close the connection after the reply.
    pub close: bool,
}

fn args<T: DeserializeOwned>(domain: &str, op: &str, body: Value) -> Result<T, AtpError> {
    let body = if body.is_null() { json!({}) } else { body };
    serde_json::from_value(body).map_err(|e| {
        AtpError::new(
            ErrorCode::EINVAL,
            format!("bad body for {domain} {op}: {e} (docs/atp.md lists each operation's fields)"),
        )
    })
}

/// The door's one mapping of a kernel or VFS error: its kind's ATP code, its message.
fn atp_error(e: impl HasKind) -> AtpError {
    AtpError::new(e.kind().atp(), e.to_string())
}

/// A reply body, already serialized (replies are written without building a JSON tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body(pub String);

impl From<Value> for Body {
    fn from(v: Value) -> Self {
        Self(v.to_string())
    }
}

fn to_body<T: serde::Serialize>(v: &T) -> Result<Body, AtpError> {
    serde_json::to_string(v)
        .map(Body)
        .map_err(|e| AtpError::new(ErrorCode::EINTERNAL, e.to_string()))
}

/// A process `a` may see ([`policy::visible`]); others do not exist for them.
fn visible(kernel: &Kernel, a: &Asker, pid: u64) -> Result<Arc<Process>, AtpError> {
    let p = kernel
        .procs()
        .get(pid)
        .ok_or_else(|| policy::no_process(pid))?;
    policy::visible(&a.caller, &p)?;
    Ok(p)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PidArg {
    pid: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ShowArg {
    #[serde(default)]
    pid: Option<u64>,
    #[serde(default)]
    invocation: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ListArg {
    /// Operators: only their own (they see everyone's by default).
    #[serde(default)]
    mine: bool,
    /// Only processes still running (not those ended and still listed in /proc).
    #[serde(default)]
    live: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HistoryArg {
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalArg {
    pid: u64,
    signal: String,
    #[serde(default)]
    payload: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdArg {
    id: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UserArg {
    #[serde(default)]
    user: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResumeArg {
    id: String,
    #[serde(default)]
    input: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteArg {
    id: String,
    #[serde(default)]
    force: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HilListArg {
    #[serde(default)]
    pid: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HilAnswerArg {
    id: String,
    #[serde(default)]
    note: Option<String>,
    /// `once` (default) or `session` (for the rest of the process's life).
    #[serde(default)]
    scope: Option<String>,
    /// Edited arguments (`approve` of a tool call only): the call runs with these.
    #[serde(default)]
    args: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FsArg {
    path: String,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    length: Option<u64>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    content_base64: Option<String>,
    #[serde(default)]
    append: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogsArg {
    #[serde(default)]
    lines: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceArg {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceInstallArg {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    files: Option<Vec<avix_proto::atp::UploadedFile>>,
}

/// Most files in one uploaded service.
const MAX_UPLOADED_FILES: usize = 1000;

/// Writes uploaded files under `dir`, refusing paths that leave it.
fn unpack(dir: &std::path::Path, files: &[avix_proto::atp::UploadedFile]) -> Result<(), AtpError> {
    use std::os::unix::fs::PermissionsExt;
    let bad = |m: String| AtpError::new(ErrorCode::EINVAL, m);
    if files.is_empty() || files.len() > MAX_UPLOADED_FILES {
        return Err(bad(format!(
            "files must hold 1 to {MAX_UPLOADED_FILES} entries"
        )));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    for f in files {
        let rel = std::path::Path::new(&f.path);
        let ok = !f.path.is_empty()
            && rel
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !ok {
            return Err(bad(format!(
                "{:?}: a file path must be relative, without `..`",
                f.path
            )));
        }
        if f.path.chars().any(avix_proto::text::is_unsafe) {
            return Err(bad(format!(
                "{}: a file path may not hold control characters (a NUL, a newline…)",
                avix_proto::text::escape(&f.path)
            )));
        }
        let data = b64
            .decode(f.content_base64.as_bytes())
            .map_err(|e| bad(format!("{}: contentBase64 is not base64: {e}", f.path)))?;
        let dest = dir.join(rel);
        let io = |e: std::io::Error| {
            let code = match e.raw_os_error() {
                Some(libc::ENOSPC | libc::EDQUOT) => ErrorCode::ENOSPC,
                _ => ErrorCode::EINTERNAL,
            };
            AtpError::new(code, format!("cannot write {}: {e}", f.path))
        };
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&dest, data).map_err(io)?;
        let mode = f.mode.unwrap_or(0o644) & 0o755;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceUninstallArg {
    name: String,
    #[serde(default)]
    force: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretSetArg {
    name: String,
    value: String,
    #[serde(default)]
    system: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretNameArg {
    name: String,
    #[serde(default)]
    system: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SecretListArg {
    #[serde(default)]
    system: bool,
}

/// The `sys` operations; the `service-*` ones start at index 4.
const SYS_OPS: [&str; 11] = [
    "info",
    "tools",
    "services",
    "logs",
    "service-list",
    "service-status",
    "service-start",
    "service-stop",
    "service-restart",
    "service-install",
    "service-uninstall",
];

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

fn unknown(domain: &str, op: &str, ops: &[&str]) -> AtpError {
    AtpError::new(
        ErrorCode::ENOSYS,
        format!(
            "unknown operation {op:?} in domain {domain}: use one of {}",
            ops.join(", ")
        ),
    )
}

impl Gateway {
    /// Runs one command.
    pub async fn dispatch(
        &self,
        a: &Asker,
        domain: &str,
        op: &str,
        body: Value,
    ) -> Result<(Body, Effects), AtpError> {
        let k = &self.kernel;
        let none = Effects::default;
        match domain {
            "auth" => self.auth_op(a, op),
            "proc" => match op {
                "spawn" => {
                    a.at_least(Role::User, "proc spawn")?;
                    let req: SpawnRequest = args(domain, op, body)?;
                    let p = k.spawn(&a.caller, req, None).await.map_err(atp_error)?;
                    let reply = SpawnReply {
                        pid: p.pid,
                        invocation: p.journal.id().to_owned(),
                        session: p.session.clone(),
                    };
                    Ok((to_body(&reply)?, none()))
                }
                "list" => {
                    let arg: ListArg = args(domain, op, body)?;
                    let everyone = a.privileged() && !arg.mine;
                    let mut v: Vec<_> = k
                        .procs()
                        .all()
                        .into_iter()
                        .filter(|p| everyone || p.user == a.user)
                        .filter(|p| !arg.live || !p.state().is_terminal())
                        .map(|p| p.status())
                        .collect();
                    v.sort_by_key(|s| s.pid);
                    Ok((to_body(&v)?, none()))
                }
                "kill" => {
                    a.at_least(Role::User, "proc kill")?;
                    let PidArg { pid } = args(domain, op, body)?;
                    let p = visible(k, a, pid)?;
                    k.signal(&a.caller, &p, Signal::Kill).map_err(atp_error)?;
                    Ok((Body::from(json!({"pid": pid, "signal": "SIGKILL"})), none()))
                }
                "show" => {
                    let arg: ShowArg = args(domain, op, body)?;
                    match (arg.pid, arg.invocation) {
                        (Some(pid), None) => {
                            let p = visible(k, a, pid)?;
                            Ok((to_body(&p.status())?, none()))
                        }
                        (None, Some(id)) => {
                            let (rec, conv) = k.invocation_as(&a.caller, &id)?;
                            Ok((
                                Body::from(json!({"record": rec, "conversation": conv})),
                                none(),
                            ))
                        }
                        _ => Err(AtpError::new(
                            ErrorCode::EINVAL,
                            "proc show takes either pid or invocation",
                        )),
                    }
                }
                "catalog" => {
                    let UserArg { user } = args(domain, op, body)?;
                    Ok((to_body(&k.catalog_as(&a.caller, user.as_deref())?)?, none()))
                }
                "history" => {
                    let arg: HistoryArg = args(domain, op, body)?;
                    let limit = arg.limit.unwrap_or(200).min(10_000);
                    let v =
                        k.history_as(&a.caller, arg.user.as_deref(), arg.agent.as_deref(), limit)?;
                    Ok((to_body(&v)?, none()))
                }
                _ => Err(unknown(
                    domain,
                    op,
                    &["spawn", "list", "kill", "show", "catalog", "history"],
                )),
            },
            "signal" => match op {
                "send" => {
                    a.at_least(Role::User, "signal send")?;
                    let arg: SignalArg = args(domain, op, body)?;
                    let sig = Signal::parse(&arg.signal, arg.payload.as_ref())
                        .map_err(|e| AtpError::new(ErrorCode::EINVAL, e))?;
                    let name = sig.name();
                    let p = visible(k, a, arg.pid)?;
                    k.signal(&a.caller, &p, sig).map_err(atp_error)?;
                    Ok((Body::from(json!({"pid": arg.pid, "signal": name})), none()))
                }
                _ => Err(unknown(domain, op, &["send"])),
            },
            "session" => self.session_op(a, op, body).await,
            "hil" => match op {
                "list" => {
                    let HilListArg { pid } = args(domain, op, body)?;
                    let v: Vec<_> = k
                        .hil()
                        .list(pid)
                        .into_iter()
                        .filter(|h| visible(k, a, h.pid).is_ok())
                        .collect();
                    Ok((to_body(&v)?, none()))
                }
                "approve" | "deny" => {
                    a.at_least(Role::User, "answering an approval")?;
                    let arg: HilAnswerArg = args(domain, op, body)?;
                    let scope = match arg.scope.as_deref() {
                        None | Some("once") => Scope::Once,
                        Some("session") => Scope::Session,
                        Some(s) => {
                            return Err(AtpError::new(
                                ErrorCode::EINVAL,
                                format!("scope {s:?} must be once or session"),
                            ));
                        }
                    };
                    let r = k
                        .hil()
                        .answer_with(
                            &arg.id,
                            op == "approve",
                            scope,
                            arg.note,
                            arg.args,
                            &a.caller,
                        )
                        .map_err(atp_error)?;
                    Ok((to_body(&r)?, none()))
                }
                _ => Err(unknown(domain, op, &["list", "approve", "deny"])),
            },
            "fs" => self.fs_op(a, op, body).await,
            "secret" => self.secret_op(a, op, body),
            "sys" => match op {
                "info" => Ok((to_body(&avix_kernel::system::status(k))?, none())),
                "tools" => Ok((to_body(&k.tools().descriptors())?, none())),
                "services" => Ok((Body::from(self.services(a)), none())),
                "logs" => {
                    a.at_least(Role::Operator, "sys logs")?;
                    let LogsArg { lines } = args(domain, op, body)?;
                    let lines = self.logs.recent(lines.unwrap_or(200).min(5000));
                    Ok((Body::from(json!({"lines": lines})), none()))
                }
                op if op.starts_with("service-") => self.service_op(a, op, body).await,
                _ => Err(unknown(domain, op, &SYS_OPS)),
            },
            _ => Err(AtpError::new(
                ErrorCode::ENOSYS,
                format!(
                    "unknown domain {domain:?}: use auth, proc, signal, session, hil, fs, secret or sys"
                ),
            )),
        }
    }

    fn auth_op(&self, a: &Asker, op: &str) -> Result<(Body, Effects), AtpError> {
        match op {
            "whoami" => Ok((
                to_body(&WhoAmI {
                    user: a.user.to_string(),
                    role: a.role,
                    session_id: a.sid.clone(),
                    expires_at: Timestamp::from_unix(a.exp),
                })?,
                Effects::default(),
            )),
            "refresh" => {
                let claims = avix_auth::atptoken::AtpClaims {
                    sub: a.user.to_string(),
                    role: a.role,
                    sid: a.sid.clone(),
                    iat: 0,
                    exp: a.exp,
                };
                let r = self.auth.refresh(&claims);
                let token = r.token.clone();
                Ok((
                    to_body(&r)?,
                    Effects {
                        token: Some(token),
                        close: false,
                    },
                ))
            }
            "logout" => {
                self.auth.logout(&a.sid);
                Ok((
                    Body::from(json!({"loggedOut": a.sid})),
                    Effects {
                        token: None,
                        close: true,
                    },
                ))
            }
            _ => Err(unknown("auth", op, &["whoami", "refresh", "logout"])),
        }
    }

    async fn session_op(
        &self,
        a: &Asker,
        op: &str,
        body: Value,
    ) -> Result<(Body, Effects), AtpError> {
        let k = &self.kernel;
        let none = Effects::default;
        match op {
            "list" => {
                let UserArg { user } = args("session", op, body)?;
                let v = k
                    .session_list(&a.caller, user.as_deref())
                    .map_err(atp_error)?;
                Ok((to_body(&v)?, none()))
            }
            "show" => {
                let IdArg { id } = args("session", op, body)?;
                let rec = k.session_get(&a.caller, &id).map_err(atp_error)?;
                let owner = UserName::new(&rec.user)
                    .map_err(|e| AtpError::new(ErrorCode::EINTERNAL, e.to_string()))?;
                let ids: Vec<&str> = rec.invocations.iter().map(|i| i.id.as_str()).collect();
                let invocations: Vec<InvocationRecord> = k
                    .history(&owner, None)
                    .into_iter()
                    .filter(|r| ids.contains(&r.id.as_str()))
                    .collect();
                Ok((
                    Body::from(json!({"session": rec, "invocations": invocations})),
                    none(),
                ))
            }
            "resume" => {
                a.at_least(Role::User, "session resume")?;
                let ResumeArg { id, input } = args("session", op, body)?;
                let rec = k.session_get(&a.caller, &id).map_err(atp_error)?;
                // A live root process: resume it if paused, else hand it the input.
                if let Some(p) = k
                    .session_live(&rec)
                    .into_iter()
                    .find(|p| p.parent.is_none())
                {
                    let sig = match (p.state(), input) {
                        (avix_proto::agent::ProcState::Paused, _) => Signal::Resume,
                        (_, Some(text)) => Signal::Input(text),
                        (_, None) => {
                            return Err(AtpError::new(
                                ErrorCode::ECONFLICT,
                                format!(
                                    "session {id} is running as process {}; give input to send it",
                                    p.pid
                                ),
                            ));
                        }
                    };
                    k.signal(&a.caller, &p, sig).map_err(atp_error)?;
                    let reply = SpawnReply {
                        pid: p.pid,
                        invocation: p.journal.id().to_owned(),
                        session: id,
                    };
                    return Ok((to_body(&reply)?, none()));
                }
                if rec.user != a.user.as_str() {
                    return Err(AtpError::new(
                        ErrorCode::EPERM,
                        "only the owner can continue a session in a new run",
                    ));
                }
                let agent = avix_proto::AgentName::new(&rec.agent)
                    .map_err(|e| AtpError::new(ErrorCode::EINTERNAL, e.to_string()))?;
                let req = SpawnRequest {
                    agent,
                    goal: input.unwrap_or_else(|| "Continue.".into()),
                    model: None,
                    tools: None,
                    interactive: None,
                    session: Some(id.clone()),
                };
                let p = k.spawn(&a.caller, req, None).await.map_err(atp_error)?;
                let reply = SpawnReply {
                    pid: p.pid,
                    invocation: p.journal.id().to_owned(),
                    session: id,
                };
                Ok((to_body(&reply)?, none()))
            }
            "delete" => {
                a.at_least(Role::User, "session delete")?;
                let DeleteArg { id, force } = args("session", op, body)?;
                k.session_delete(&a.caller, &id, force).map_err(atp_error)?;
                Ok((Body::from(json!({"deleted": id})), none()))
            }
            _ => Err(unknown(
                "session",
                op,
                &["list", "show", "resume", "delete"],
            )),
        }
    }

    async fn fs_op(&self, a: &Asker, op: &str, body: Value) -> Result<(Body, Effects), AtpError> {
        let arg: FsArg = args("fs", op, body)?;
        let p = path(&arg.path)?;
        let vfs = self.kernel.vfs().clone();
        let caller = a.caller.clone();
        let b64 = base64::engine::general_purpose::STANDARD;
        let op_owned = op.to_owned();
        let result = tokio::task::spawn_blocking(move || -> Result<Value, AtpError> {
            match op_owned.as_str() {
                "read" => {
                    let data = vfs.read(&caller, &p).map_err(atp_error)?;
                    let size = data.len() as u64;
                    let start = arg.offset.unwrap_or(0).min(size) as usize;
                    let len = arg.length.unwrap_or(MAX_FS_READ).min(MAX_FS_READ);
                    let end = (start as u64 + len).min(size) as usize;
                    let slice = &data[start..end];
                    let mut out = json!({"path": p.as_str(), "size": size, "offset": start});
                    match std::str::from_utf8(slice) {
                        Ok(t) => out["content"] = json!(t),
                        Err(_) => out["contentBase64"] = json!(b64.encode(slice)),
                    }
                    if (end as u64) < size {
                        out["next"] = json!(end);
                    }
                    Ok(out)
                }
                "write" => {
                    let new = match (arg.content, arg.content_base64) {
                        (Some(t), None) => t.into_bytes(),
                        (None, Some(b)) => b64.decode(b.as_bytes()).map_err(|e| {
                            AtpError::new(ErrorCode::EINVAL, format!("contentBase64 is not base64: {e}"))
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
                        match vfs.read(&caller, &p) {
                            Ok(old) => bytes.extend_from_slice(&old),
                            Err(VfsError::NotFound(_)) => {}
                            Err(e) => return Err(atp_error(e)),
                        }
                    }
                    bytes.extend_from_slice(&new);
                    let reply = vfs.write(&caller, &p, &bytes).map_err(atp_error)?;
                    let mut out = json!({"path": p.as_str(), "bytes": bytes.len()});
                    if let Some(r) = reply {
                        out["reply"] = json!(String::from_utf8_lossy(&r));
                    }
                    Ok(out)
                }
                "list" => {
                    let entries: Vec<Value> = vfs
                        .list(&caller, &p)
                        .map_err(atp_error)?
                        .into_iter()
                        .map(|e| json!({"name": e.name, "kind": if e.kind == EntryKind::Dir { "dir" } else { "file" }}))
                        .collect();
                    Ok(json!({"path": p.as_str(), "entries": entries}))
                }
                "stat" => {
                    let st = vfs.stat(&caller, &p).map_err(atp_error)?;
                    Ok(json!({
                        "path": p.as_str(),
                        "kind": if st.kind == EntryKind::Dir { "dir" } else { "file" },
                        "size": st.size,
                        "modified": Timestamp::from(st.mtime),
                        "owner": st.owner.map(|o| o.to_string()),
                    }))
                }
                "delete" => {
                    let st = vfs.stat(&caller, &p).map_err(atp_error)?;
                    if st.kind == EntryKind::Dir {
                        vfs.remove_dir(&caller, &p).map_err(atp_error)?;
                    } else {
                        vfs.remove_file(&caller, &p).map_err(atp_error)?;
                    }
                    Ok(json!({"path": p.as_str(), "deleted": true}))
                }
                other => Err(unknown("fs", other, &["read", "write", "list", "stat", "delete"])),
            }
        })
        .await
        .map_err(|e| AtpError::new(ErrorCode::EINTERNAL, e.to_string()))??;
        Ok((Body::from(result), Effects::default()))
    }

    /// Secrets: a user's own, or (admins) the system's. Values go in, never out.
    fn secret_op(&self, a: &Asker, op: &str, body: Value) -> Result<(Body, Effects), AtpError> {
        use avix_kernel::secrets::SecretOwner;
        let owner = |system: bool| -> Result<SecretOwner, AtpError> {
            if system {
                policy::system_secrets(&a.caller)?;
                Ok(SecretOwner::System)
            } else {
                a.at_least(Role::User, "secrets")?;
                Ok(SecretOwner::User(a.user.clone()))
            }
        };
        let store = self.kernel.secrets();
        let d = "secret";
        match op {
            "set" => {
                let arg: SecretSetArg = args(d, op, body)?;
                let value = zeroize::Zeroizing::new(arg.value);
                store
                    .set(&owner(arg.system)?, &arg.name, value.as_bytes())
                    .map_err(atp_error)?;
                tracing::info!(user = %a.user, name = %arg.name, system = arg.system, "secret set");
                Ok((
                    Body::from(json!({"name": arg.name, "system": arg.system, "set": true})),
                    Effects::default(),
                ))
            }
            "list" => {
                let arg: SecretListArg = args(d, op, body)?;
                Ok((
                    to_body(&store.list(&owner(arg.system)?))?,
                    Effects::default(),
                ))
            }
            "delete" => {
                let arg: SecretNameArg = args(d, op, body)?;
                if !store
                    .delete(&owner(arg.system)?, &arg.name)
                    .map_err(atp_error)?
                {
                    return Err(AtpError::new(
                        ErrorCode::ENOTFOUND,
                        format!("secret {} is not set", arg.name),
                    ));
                }
                tracing::info!(user = %a.user, name = %arg.name, system = arg.system, "secret deleted");
                Ok((
                    Body::from(json!({"name": arg.name, "deleted": true})),
                    Effects::default(),
                ))
            }
            _ => Err(unknown(d, op, &["set", "list", "delete"])),
        }
    }

    async fn service_op(
        &self,
        a: &Asker,
        op: &str,
        body: Value,
    ) -> Result<(Body, Effects), AtpError> {
        let none = Effects::default;
        let sup = self.kernel.services().cloned().ok_or_else(|| {
            AtpError::new(
                ErrorCode::EUNAVAIL,
                "this daemon runs no service supervisor",
            )
        })?;
        let d = "sys";
        match op {
            "service-list" => Ok((to_body(&sup.list())?, none())),
            "service-status" => {
                let ServiceArg { name } = args(d, op, body)?;
                Ok((to_body(&sup.status(&name).map_err(atp_error)?)?, none()))
            }
            "service-start" | "service-stop" | "service-restart" => {
                policy::control_services(&a.caller)?;
                let ServiceArg { name } = args(d, op, body)?;
                let st = match op {
                    "service-start" => sup.start(&name).await,
                    "service-stop" => sup.stop(&name).await,
                    _ => sup.restart(&name).await,
                }
                .map_err(atp_error)?;
                Ok((to_body(&st)?, none()))
            }
            "service-install" => {
                policy::install_services(&a.caller)?;
                let arg: ServiceInstallArg = args(d, op, body)?;
                let st = match (arg.path, arg.files) {
                    (Some(path), None) => {
                        let path = std::path::PathBuf::from(path);
                        if !path.is_absolute() {
                            return Err(AtpError::new(
                                ErrorCode::EINVAL,
                                "path must be an absolute directory on the daemon's host holding service.yaml",
                            ));
                        }
                        sup.install(&path).await.map_err(atp_error)?
                    }
                    (None, Some(files)) => {
                        // Unpacked next to the installed services, installed from there.
                        let dir = self
                            .kernel
                            .layout()
                            .data()
                            .join("services")
                            .join(format!(".upload-{:016x}", rand::random::<u64>()));
                        let d2 = dir.clone();
                        let unpacked = tokio::task::spawn_blocking(move || unpack(&d2, &files))
                            .await
                            .map_err(|e| AtpError::new(ErrorCode::EINTERNAL, e.to_string()))?;
                        let st = match unpacked {
                            Ok(()) => sup.install(&dir).await.map_err(atp_error),
                            Err(e) => Err(e),
                        };
                        let _ = std::fs::remove_dir_all(&dir);
                        st?
                    }
                    _ => {
                        return Err(AtpError::new(
                            ErrorCode::EINVAL,
                            "service-install takes path (a directory on the daemon's host) or files (an upload), one of them",
                        ));
                    }
                };
                Ok((to_body(&st)?, none()))
            }
            "service-uninstall" => {
                policy::install_services(&a.caller)?;
                let ServiceUninstallArg { name, force } = args(d, op, body)?;
                sup.uninstall(&name, force).await.map_err(atp_error)?;
                Ok((Body::from(json!({"uninstalled": name})), none()))
            }
            _ => Err(unknown(d, op, &SYS_OPS[4..])),
        }
    }

    fn services(&self, a: &Asker) -> Value {
        let k = &self.kernel;
        let mut v = vec![json!({
            "name": "kernel",
            "state": "running",
            "agents": k.procs().live_count(),
            "tools": k.tools().len(),
        })];
        if let Some(llm) = k.llm_service() {
            let s = llm.status(if a.privileged() {
                None
            } else {
                Some(a.user.as_str())
            });
            let ok = s
                .providers
                .iter()
                .filter(|p| p.health != "unavailable")
                .count();
            v.push(json!({
                "name": "llm",
                "state": "running",
                "providers": s.providers.len(),
                "usable": ok,
                "requests": s.totals.requests,
                "status": "/proc/services/llm/status.yaml",
            }));
        }
        v.push(json!({
            "name": "gateway",
            "state": "running",
            "connections": self.connections(),
        }));
        if let Some(sup) = k.services() {
            for s in sup.list() {
                v.push(json!({
                    "name": s.name,
                    "state": s.state,
                    "version": s.version,
                    "tools": s.tools.len(),
                    "status": format!("/proc/services/{}/status.yaml", s.name),
                }));
            }
        }
        let info = k.runtime_info();
        v.push(json!({
            "name": "fuse",
            "state": if info.mount_point.is_some() { "mounted" } else { "off" },
            "mountPoint": info.mount_point,
        }));
        Value::Array(v)
    }
}
