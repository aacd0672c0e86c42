//! `session`: a user's durable conversations.

use avix_proto::atp::SpawnReply;
use avix_proto::op::{DeleteArgs, Op, ResumeArgs, SessionShow};
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
                let (session, invocations) =
                    k.session_show(&a.caller, &arg.id).map_err(atp_error)?;
                reply(&SessionShow {
                    session,
                    invocations,
                })
            }
            Op::SessionResume(ResumeArgs { id, input }) => {
                let p = k
                    .session_resume(&a.caller, &id, input)
                    .await
                    .map_err(atp_error)?;
                reply(&SpawnReply {
                    pid: p.pid,
                    invocation: p.journal.id().to_owned(),
                    session: id,
                })
            }
            Op::SessionDelete(DeleteArgs { id, force }) => {
                k.session_delete(&a.caller, &id, force).map_err(atp_error)?;
                Ok((Body::from(json!({"deleted": id})), Effects::default()))
            }
            other => Err(misrouted(&other)),
        }
    }
}
