//! `secret`: a user's own secrets, or (admins) the system's. Values go in, never out.

use avix_proto::op::Op;
use serde_json::json;

use super::{Asker, Body, Done, Effects, atp_error, misrouted, reply};
use crate::Gateway;

impl Gateway {
    pub(super) fn secret_op(&self, a: &Asker, op: Op) -> Done {
        let k = &self.kernel;
        match op {
            Op::SecretSet(arg) => {
                let value = zeroize::Zeroizing::new(arg.value);
                k.secret_set(&a.caller, arg.system, &arg.name, value.as_bytes())
                    .map_err(atp_error)?;
                Ok((
                    Body::from(json!({"name": arg.name, "system": arg.system, "set": true})),
                    Effects::default(),
                ))
            }
            Op::SecretList(arg) => reply(&k.secret_list(&a.caller, arg.system).map_err(atp_error)?),
            Op::SecretDelete(arg) => {
                k.secret_delete(&a.caller, arg.system, &arg.name)
                    .map_err(atp_error)?;
                Ok((
                    Body::from(json!({"name": arg.name, "deleted": true})),
                    Effects::default(),
                ))
            }
            other => Err(misrouted(&other)),
        }
    }
}
