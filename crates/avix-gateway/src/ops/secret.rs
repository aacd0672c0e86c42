//! `secret`: a user's own secrets, or (admins) the system's. Values go in, never out.

use avix_kernel::policy;
use avix_kernel::secrets::SecretOwner;
use avix_proto::Role;
use avix_proto::atp::{AtpError, ErrorCode};
use avix_proto::op::Op;
use serde_json::json;

use super::{Asker, Body, Done, Effects, atp_error, misrouted, reply};
use crate::Gateway;

impl Gateway {
    pub(super) fn secret_op(&self, a: &Asker, op: Op) -> Done {
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
        match op {
            Op::SecretSet(arg) => {
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
            Op::SecretList(arg) => reply(&store.list(&owner(arg.system)?)),
            Op::SecretDelete(arg) => {
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
            other => Err(misrouted(&other)),
        }
    }
}
