//! `/proc` for agents:
//!
//! - `/proc/spawn`: a transaction file. Write a spawn request (one line `AGENT GOAL…`, or YAML
//!   or JSON with `agent` and `goal`), read back the new PID on the same open file. A failed
//!   spawn fails the write with an errno, and the reason is read back instead.
//! - `/proc/<pid>/status.yaml`, `resolved.yaml`, `tools.yaml`, `errors`;
//! - `/proc/<pid>/journal.jsonl`: the journal, live (`tail -f` follows it);
//! - `/proc/<pid>/ctl`: one command per write: `pause`, `resume`, `stop`, `kill`,
//!   `input <text>`, `signal <SIGNAME> [json]`;
//! - `/proc/<pid>/hil/<id>.yaml`: approvals (see [`crate::hil`]).
//!
//! Agents cannot use these files (they have `agent/*` tools); people and scripts do. After
//! exit, `/proc/<pid>` stays, showing the final state, until the process is reaped.

use crate::pid::Pid;
use std::sync::{Arc, Weak};

use avix_proto::agent::{ProcState, SpawnRequest};
use avix_proto::envelope::Document;
use avix_vfs::{Caller, SynthFile, VfsError, VfsPath, Writers};
use bytes::Bytes;

use crate::Kernel;
use crate::process::{Process, Signal};

fn path(s: &str) -> VfsPath {
    VfsPath::parse(s).unwrap_or_else(|_| VfsPath::root())
}

fn yaml<S: avix_proto::Kind>(s: S) -> Bytes {
    Bytes::from(Document::new(s).to_yaml().unwrap_or_default())
}

fn invalid(p: &VfsPath, reason: impl Into<String>) -> VfsError {
    VfsError::InvalidInput {
        path: p.clone(),
        reason: reason.into(),
    }
}

/// How far a spawn request written so far has come.
#[derive(Debug, PartialEq)]
pub enum Pending {
    /// Complete: spawn it.
    Complete(SpawnRequest),
    /// A snapshot (complete at the close of the file): restore it.
    Restore(Box<avix_proto::agent::Snapshot>),
    /// Wait for more writes (or the close).
    More,
    /// Malformed.
    Bad(String),
}

/// Decides whether the text written so far is a complete spawn request: a one-line request
/// at its newline, JSON when the object closes, YAML at an empty line, `---` or `...` (or,
/// with `closing`, at the close of the file).
pub fn spawn_pending(text: &str, closing: bool) -> Pending {
    let t = text.trim_start();
    if t.is_empty() {
        return if closing {
            Pending::Bad("empty spawn request".into())
        } else {
            Pending::More
        };
    }
    let done = |t: &str| {
        SpawnRequest::parse(t).map_or_else(|e| Pending::Bad(e.message), Pending::Complete)
    };
    // A snapshot document (`cat snapshot.yaml > /proc/spawn`): its text may hold empty
    // lines, so it is whole only at the close.
    if t.lines().any(|l| l.trim_end() == "kind: Snapshot") {
        if !closing {
            return Pending::More;
        }
        return match avix_proto::Document::<avix_proto::agent::Snapshot>::parse(t.as_bytes()) {
            Ok(d) => Pending::Restore(Box::new(d.spec)),
            Err(e) => Pending::Bad(format!("not a snapshot Avix can restore: {e}")),
        };
    }
    if t.starts_with('{') {
        return match serde_json::from_str::<serde_json::Value>(t) {
            Ok(_) => done(t),
            Err(e) if e.is_eof() && !closing => Pending::More,
            Err(e) => Pending::Bad(format!("malformed JSON spawn request: {e}")),
        };
    }
    let first = t.lines().next().unwrap_or("");
    let yaml = first.contains(": ") || first.trim_end().ends_with(':');
    if !yaml {
        return if t.contains('\n') || closing {
            done(t.lines().next().unwrap_or(""))
        } else {
            Pending::More
        };
    }
    let last = t
        .trim_end_matches([' ', '\t'])
        .lines()
        .last()
        .unwrap_or("")
        .trim();
    let ended = t.ends_with("\n\n") || t.ends_with("\r\n\r\n") || last == "---" || last == "...";
    if ended || closing {
        let body: String = t
            .lines()
            .filter(|l| !matches!(l.trim(), "---" | "..."))
            .collect::<Vec<_>>()
            .join("\n");
        done(&body)
    } else {
        Pending::More
    }
}

/// Publishes `/proc/spawn`.
pub(crate) fn publish_spawn(kernel: &Arc<Kernel>) {
    let p = path("/proc/spawn");
    let run = move |weak: &Weak<Kernel>,
                    p: &VfsPath,
                    caller: &Caller,
                    data: &[u8],
                    closing: bool|
          -> Result<Option<Bytes>, VfsError> {
        let kernel = weak
            .upgrade()
            .ok_or_else(|| VfsError::NotFound(p.clone()))?;
        // Who may spawn, and for whom, is the kernel's rule (policy::spawn_for); refused
        // before the request is even read.
        let user = crate::policy::spawn_for(caller, None).map_err(|e| VfsError::refused(p, &e))?;
        let text =
            std::str::from_utf8(data).map_err(|_| invalid(p, "the spawn request is not UTF-8"))?;
        let spawned = match spawn_pending(text, closing) {
            Pending::More => return Err(VfsError::NeedMore),
            Pending::Bad(e) => return Err(invalid(p, e)),
            Pending::Complete(req) => kernel.block_on(kernel.spawn(caller, req, None)),
            Pending::Restore(snap) => {
                let from = format!(
                    "the snapshot of invocation {} written to /proc/spawn",
                    snap.invocation
                );
                kernel.block_on(kernel.restore(caller, *snap, &from))
            }
        };
        match spawned {
            Ok(proc) => Ok(Some(Bytes::from(format!("{}\n", proc.pid)))),
            Err(e) => {
                tracing::info!(user = %user, error = %e, "spawn refused");
                Err(VfsError::refused(p, &e))
            }
        }
    };
    let (w1, w2) = (Arc::downgrade(kernel), Arc::downgrade(kernel));
    let (p1, p2) = (p.clone(), p.clone());
    let file = SynthFile::control(
        |_| Ok(Bytes::from_static(b"# Write `AGENT GOAL...` (or JSON, or YAML ended by an empty line) and read the new PID back on the same open file; write a snapshot (cat it here) to restore it.\n")),
        move |caller, data| run(&w1, &p1, caller, data, false),
    )
    .buffered(move |caller, data| run(&w2, &p2, caller, data, true))
    .writers(Writers::AnyUser);
    if let Err(e) = kernel.vfs().publish(&p, file) {
        tracing::error!(error = %e, "cannot publish /proc/spawn");
    }
}

/// Parses one ctl command.
pub fn parse_ctl(text: &str) -> Result<Signal, avix_proto::Error> {
    use avix_proto::Error;
    let t = text.trim_end_matches(['\n', '\r']);
    let (cmd, rest) = t
        .trim_start()
        .split_once(char::is_whitespace)
        .unwrap_or((t.trim(), ""));
    match cmd {
        "pause" if rest.trim().is_empty() => Ok(Signal::Pause),
        "resume" if rest.trim().is_empty() => Ok(Signal::Resume),
        "stop" if rest.trim().is_empty() => Ok(Signal::Stop),
        "kill" if rest.trim().is_empty() => Ok(Signal::Kill),
        "save" if rest.trim().is_empty() => Ok(Signal::Save),
        "input" if !rest.trim().is_empty() => Ok(Signal::Input(rest.trim().to_owned())),
        "input" => Err(Error::invalid("input needs text: `input <text>`")),
        "signal" => {
            let rest = rest.trim();
            let (name, payload) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let payload = if payload.trim().is_empty() {
                None
            } else {
                Some(
                    serde_json::from_str::<serde_json::Value>(payload.trim()).map_err(|e| {
                        Error::invalid(format!("the signal payload is not JSON: {e}"))
                    })?,
                )
            };
            Signal::parse(name, payload.as_ref())
        }
        "" => Err(Error::invalid("empty command")),
        other => Err(Error::invalid(format!(
            "unknown command {other:?}: use pause, resume, stop, kill, save, input <text> or signal <SIGNAME> [json]"
        ))),
    }
}

/// A `fork` ctl command: the turn (`None`: the last) and the message to start with.
pub type ForkCommand = (Option<u32>, Option<String>);

/// Parses `fork [N] [message]` (`None`: another command): the turn to fork at (default: the
/// last) and a message the fork starts with.
pub fn parse_fork(text: &str) -> Option<Result<ForkCommand, avix_proto::Error>> {
    let t = text.trim();
    let rest = t.strip_prefix("fork")?;
    if !(rest.is_empty() || rest.starts_with(char::is_whitespace)) {
        return None;
    }
    let rest = rest.trim();
    let (first, more) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let (at, goal) = match first.parse::<u32>() {
        Ok(n) => (Some(n), more.trim()),
        Err(_) if first.chars().all(|c| c.is_ascii_digit() || c == '-') && !first.is_empty() => {
            return Some(Err(avix_proto::Error::invalid(format!(
                "fork takes a turn number (0 or more), not {first:?}: `fork [turn] [message]`"
            ))));
        }
        Err(_) => (None, rest),
    };
    Some(Ok((at, (!goal.is_empty()).then(|| goal.to_owned()))))
}

/// Publishes `/proc/<pid>/…` for a new process.
pub(crate) fn publish_process(kernel: &Arc<Kernel>, p: &Arc<Process>) {
    let vfs = kernel.vfs();
    let base = format!("/proc/{}", p.pid);
    if let Err(e) = vfs.publish_dir(&path(&base), Some(p.user.clone())) {
        tracing::error!(pid = %p.pid, error = %e, "cannot publish /proc/<pid>");
        return;
    }
    let weak: Weak<Process> = Arc::downgrade(p);
    let gone = |s: &str| VfsError::NotFound(path(s));

    let w = weak.clone();
    let b = base.clone();
    let _ = vfs.publish(
        &path(&format!("{base}/status.yaml")),
        SynthFile::computed(move |_| {
            let p = w.upgrade().ok_or_else(|| gone(&b))?;
            Ok(yaml(p.status()))
        }),
    );
    let _ = vfs.publish(
        &path(&format!("{base}/resolved.yaml")),
        SynthFile::fixed(yaml(p.resolved.clone())),
    );

    let w = weak.clone();
    let b = base.clone();
    let _ = vfs.publish(&path(&format!("{base}/tools.yaml")), SynthFile::computed(move |_| {
        let p = w.upgrade().ok_or_else(|| gone(&b))?;
        let g = p.grants();
        let doc = serde_json::json!({"granted": g.names(), "once": g.once, "alwaysPresent": crate::tools::ALWAYS_PRESENT});
        Ok(Bytes::from(avix_proto::yaml::to_string(&doc).unwrap_or_default()))
    }));

    let w = weak.clone();
    let b = base.clone();
    let _ = vfs.publish(
        &path(&format!("{base}/errors")),
        SynthFile::computed(move |_| {
            let p = w.upgrade().ok_or_else(|| gone(&b))?;
            let mut s = String::new();
            for e in &p.inner().errors {
                s.push_str(e);
                s.push('\n');
            }
            Ok(Bytes::from(s))
        }),
    );

    let (w1, w2) = (weak.clone(), weak.clone());
    let journal = path(&format!("{base}/journal.jsonl"));
    let journal2 = journal.clone();
    let _ = vfs.publish(
        &journal,
        SynthFile::live(
            move || w1.upgrade().map_or(0, |p| p.journal.size()),
            move |off, len| {
                let p = w2
                    .upgrade()
                    .ok_or_else(|| VfsError::NotFound(journal2.clone()))?;
                p.journal
                    .read_at(off, len)
                    .map_err(|e| avix_vfs::vfs::storage_err(&journal2, e))
            },
        ),
    );

    let w = weak.clone();
    let k = Arc::downgrade(kernel);
    let ctl = path(&format!("{base}/ctl"));
    let ctl2 = ctl.clone();
    let _ = vfs.publish(
        &ctl,
        SynthFile::control(
            |_| Ok(Bytes::from_static(b"# One command per write: pause | resume | stop | kill | save | fork [turn] [message] | input <text> | signal <SIGNAME> [json]\n")),
            move |caller: &Caller, data| {
                let p = w.upgrade().ok_or_else(|| VfsError::NotFound(ctl2.clone()))?;
                let kernel = k.upgrade().ok_or_else(|| VfsError::NotFound(ctl2.clone()))?;
                if caller.is_agent() {
                    return Err(VfsError::NotPermitted { path: ctl2.clone(), reason: "agents control processes with agent/* tools" });
                }
                let text = String::from_utf8_lossy(data);
                let outcome = match parse_fork(&text) {
                    // `fork [N] [message]`: the new PID is the reply.
                    Some(Ok((at, goal))) => kernel
                        .block_on(kernel.fork(caller, Some(p.pid), None, at, goal))
                        .map(|child| Some(Bytes::from(format!("{}\n", child.pid))))
                        .map_err(|e| avix_proto::Error::new(avix_proto::HasKind::kind(&e), e.to_string())),
                    Some(Err(e)) => Err(e),
                    None => parse_ctl(&text)
                        .and_then(|sig| kernel.signal(caller, &p, sig))
                        .map(|()| None),
                };
                match outcome {
                    Ok(reply) => Ok(reply),
                    Err(e) => {
                        tracing::info!(pid = %p.pid, %caller, reason = %e, "ctl command refused");
                        p.push_error(format!("ctl: {e}"));
                        Err(VfsError::refused(&ctl2, &e))
                    }
                }
            },
        )
        .writers(Writers::Owner),
    );
}

/// Removes `/proc/<pid>`.
pub(crate) fn unpublish_process(kernel: &Kernel, pid: Pid) {
    kernel.vfs().unpublish(&path(&format!("/proc/{pid}")));
}

/// Whether a state accepts ctl commands.
pub fn accepts_signals(state: ProcState) -> bool {
    !state.is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_requests_complete_when_unambiguous() {
        assert!(matches!(
            spawn_pending("assistant do it", false),
            Pending::More
        ));
        assert!(matches!(
            spawn_pending("assistant do it\n", false),
            Pending::Complete(_)
        ));
        assert!(matches!(
            spawn_pending("{\"agent\": \"a\",", false),
            Pending::More
        ));
        assert!(matches!(
            spawn_pending("{\"agent\": \"a\", \"goal\": \"g\"}\n", false),
            Pending::Complete(_)
        ));
        assert!(matches!(
            spawn_pending("{\"agent\": ]", false),
            Pending::Bad(_)
        ));
        let yaml = "agent: assistant\ngoal: g\n";
        assert!(matches!(spawn_pending(yaml, false), Pending::More));
        assert!(
            matches!(spawn_pending(&format!("{yaml}model: scripted/x\n\n"), false), Pending::Complete(r) if r.model.as_deref() == Some("scripted/x"))
        );
        assert!(matches!(
            spawn_pending(&format!("{yaml}...\n"), false),
            Pending::Complete(_)
        ));
        assert!(matches!(spawn_pending(yaml, true), Pending::Complete(_)));
        assert!(matches!(spawn_pending("agent: a\n", true), Pending::Bad(_)));
    }

    #[test]
    fn fork_commands() {
        assert_eq!(parse_fork("fork\n").unwrap().unwrap(), (None, None));
        assert_eq!(parse_fork("fork 2\n").unwrap().unwrap(), (Some(2), None));
        assert_eq!(
            parse_fork("fork 0 try the other way\n").unwrap().unwrap(),
            (Some(0), Some("try the other way".into()))
        );
        assert_eq!(
            parse_fork("fork be brief").unwrap().unwrap(),
            (None, Some("be brief".into()))
        );
        assert!(parse_fork("fork -1").unwrap().is_err());
        assert!(parse_fork("forkful").is_none());
        assert!(parse_fork("pause").is_none());
    }

    #[test]
    fn ctl_commands() {
        assert_eq!(parse_ctl("pause\n").unwrap(), Signal::Pause);
        assert_eq!(
            parse_ctl("input  hello there\n").unwrap(),
            Signal::Input("hello there".into())
        );
        assert_eq!(
            parse_ctl("signal SIGPIPE {\"text\": \"hi\"}").unwrap(),
            Signal::Input("hi".into())
        );
        assert_eq!(parse_ctl("signal sigkill").unwrap(), Signal::Kill);
        for bad in ["", "jump", "pause now", "input", "signal SIGPIPE {bad"] {
            assert!(parse_ctl(bad).is_err(), "{bad:?}");
        }
        assert!(
            parse_ctl("jump")
                .unwrap_err()
                .message
                .contains("unknown command \"jump\"")
        );
    }
}
