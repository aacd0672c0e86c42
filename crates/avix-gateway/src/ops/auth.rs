//! `auth`: who am I, a fresh token, logging out.

use avix_proto::atp::WhoAmI;
use avix_proto::op::Op;
use avix_proto::time::Timestamp;
use serde_json::json;

use super::{Asker, Body, Done, Effects, misrouted, to_body};
use crate::Gateway;

impl Gateway {
    pub(super) fn auth_op(&self, a: &Asker, op: &Op) -> Done {
        match op {
            Op::Whoami(_) => Ok((
                to_body(&WhoAmI {
                    user: a.user.to_string(),
                    role: a.role,
                    session_id: a.sid.clone(),
                    expires_at: Timestamp::from_unix(a.exp),
                })?,
                Effects::default(),
            )),
            Op::Refresh(_) => {
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
            Op::Logout(_) => {
                self.auth.logout(&a.sid);
                Ok((
                    Body::from(json!({"loggedOut": a.sid})),
                    Effects {
                        token: None,
                        close: true,
                    },
                ))
            }
            other => Err(misrouted(other)),
        }
    }
}
