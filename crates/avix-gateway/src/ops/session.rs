//! `session`: a user's durable conversations.

use avix_kernel::process::Signal;
use avix_proto::agent::{InvocationRecord, SpawnRequest};
use avix_proto::atp::{AtpError, ErrorCode, SpawnReply};
use avix_proto::op::{DeleteArgs, Op, ResumeArgs, SessionShow};
use avix_proto::{Role, UserName};
use serde_json::json;

use super::{Asker, Body, Done, Effects, atp_error, misrouted, reply};
use crate::Gateway;

impl Gateway {
    pub(super) async fn session_op(&self, a: &Asker, op: Op) -> Done {
        let k = &self.kernel;
        match op {
            Op::SessionList(arg) => reply(
                &k.session_list(&a.caller, arg.user.as_deref())
                    .map_err(atp_error)?,
            ),
            Op::SessionShow(arg) => {
                let session = k.session_get(&a.caller, &arg.id).map_err(atp_error)?;
                let owner = UserName::new(&session.user)
                    .map_err(|e| AtpError::new(ErrorCode::EINTERNAL, e.to_string()))?;
                let ids: Vec<&str> = session.invocations.iter().map(|i| i.id.as_str()).collect();
                let invocations: Vec<InvocationRecord> = k
                    .history(&owner, None)
                    .into_iter()
                    .filter(|r| ids.contains(&r.id.as_str()))
                    .collect();
                reply(&SessionShow {
                    session,
                    invocations,
                })
            }
            Op::SessionResume(arg) => self.resume(a, arg).await,
            Op::SessionDelete(DeleteArgs { id, force }) => {
                a.at_least(Role::User, "session delete")?;
                k.session_delete(&a.caller, &id, force).map_err(atp_error)?;
                Ok((Body::from(json!({"deleted": id})), Effects::default()))
            }
            other => Err(misrouted(&other)),
        }
    }

    /// A live root process of the session is resumed (paused) or handed the input; else the
    /// owner continues the session in a new run.
    async fn resume(&self, a: &Asker, ResumeArgs { id, input }: ResumeArgs) -> Done {
        let k = &self.kernel;
        a.at_least(Role::User, "session resume")?;
        let rec = k.session_get(&a.caller, &id).map_err(atp_error)?;
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
            return reply(&SpawnReply {
                pid: p.pid,
                invocation: p.journal.id().to_owned(),
                session: id,
            });
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
        reply(&SpawnReply {
            pid: p.pid,
            invocation: p.journal.id().to_owned(),
            session: id,
        })
    }
}
