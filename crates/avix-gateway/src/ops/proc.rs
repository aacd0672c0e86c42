//! `proc`, `signal` and `hil`: agents, their signals and their approvals.

use avix_kernel::hil::Scope;
use avix_kernel::process::Signal;
use avix_proto::atp::{AtpError, ErrorCode, SpawnReply};
use avix_proto::op::{InvocationShow, Op, Saved, ShowArgs, Signalled};

use super::{Asker, Done, atp_error, misrouted, reply, visible};
use crate::Gateway;

/// The reply to a request that started a process (spawn, restore, fork).
fn started(p: &avix_kernel::process::Process) -> SpawnReply {
    SpawnReply {
        pid: p.pid,
        invocation: p.journal.id().to_owned(),
        session: p.session.clone(),
    }
}

impl Gateway {
    pub(super) async fn proc_op(&self, a: &Asker, op: Op) -> Done {
        let k = &self.kernel;
        match op {
            Op::Spawn(req) => {
                let p = k.spawn(&a.caller, req, None).await.map_err(atp_error)?;
                reply(&started(&p))
            }
            Op::Save(arg) => {
                let p = visible(k, a, arg.pid)?;
                let snapshot = k.save_snapshot(&a.caller, &p).map_err(atp_error)?;
                reply(&Saved {
                    pid: arg.pid,
                    snapshot,
                })
            }
            Op::Restore(arg) => {
                let p = k
                    .restore_file(&a.caller, &arg.snapshot, arg.workspace)
                    .await
                    .map_err(atp_error)?;
                reply(&started(&p))
            }
            Op::Fork(arg) => {
                let p = k
                    .fork(
                        &a.caller,
                        arg.pid,
                        arg.invocation.as_ref().map(|i| i.as_str()),
                        arg.at,
                        arg.goal,
                    )
                    .await
                    .map_err(atp_error)?;
                reply(&started(&p))
            }
            Op::Diff(arg) => reply(
                &k.workspace_diff(
                    &a.caller,
                    arg.pid,
                    arg.invocation.as_ref().map(|i| i.as_str()),
                    arg.at,
                )
                .map_err(atp_error)?,
            ),
            Op::List(arg) => reply(&k.processes_as(&a.caller, arg.mine, arg.live)),
            Op::Kill(arg) => {
                let p = visible(k, a, arg.pid)?;
                k.signal(&a.caller, &p, Signal::Kill).map_err(atp_error)?;
                reply(&Signalled {
                    pid: arg.pid,
                    signal: "SIGKILL".into(),
                })
            }
            Op::Show(ShowArgs { pid, invocation }) => match (pid, invocation) {
                (Some(pid), None) => reply(&visible(k, a, pid)?.status()),
                (None, Some(id)) => {
                    let (record, conversation) = k.invocation_as(&a.caller, &id)?;
                    reply(&InvocationShow {
                        record,
                        conversation,
                    })
                }
                _ => Err(AtpError::new(
                    ErrorCode::EINVAL,
                    "proc show takes either pid or invocation",
                )),
            },
            Op::Catalog(arg) => reply(&k.catalog_as(&a.caller, arg.user.as_deref())?),
            Op::History(arg) => {
                let limit = arg.limit.unwrap_or(200).min(10_000);
                reply(&k.history_as(&a.caller, arg.user.as_deref(), arg.agent.as_deref(), limit)?)
            }
            Op::Signal(arg) => {
                let sig = Signal::parse(&arg.signal, arg.payload.as_ref()).map_err(atp_error)?;
                let signal = sig.name().to_owned();
                let p = visible(k, a, arg.pid)?;
                k.signal(&a.caller, &p, sig).map_err(atp_error)?;
                reply(&Signalled {
                    pid: arg.pid,
                    signal,
                })
            }
            Op::HilList(arg) => {
                let v: Vec<_> = k
                    .hil()
                    .list(arg.pid)
                    .into_iter()
                    .filter(|h| visible(k, a, h.pid).is_ok())
                    .collect();
                reply(&v)
            }
            Op::HilApprove(arg) => self.answer(a, true, arg),
            Op::HilDeny(arg) => self.answer(a, false, arg),
            other => Err(misrouted(&other)),
        }
    }

    fn answer(&self, a: &Asker, approve: bool, arg: avix_proto::op::HilAnswerArgs) -> Done {
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
        let r = self
            .kernel
            .hil()
            .answer_with(&arg.id, approve, scope, arg.note, arg.args, &a.caller)
            .map_err(atp_error)?;
        reply(&r)
    }
}
