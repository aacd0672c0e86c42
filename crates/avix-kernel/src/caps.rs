//! Capability tokens: what a process may call, signed, for the services it calls through the
//! router. Minted at spawn and at every grant change, renewed before they expire, revoked at
//! exit (only the token in force of a live process verifies).

use avix_proto::time::Timestamp;

use crate::process::Process;
use crate::{Kernel, TOKEN_RENEWAL_SECS, TOKEN_TTL_SECS};

impl Kernel {
    /// Mints a capability token for `p`'s current grants. `keep_expiry` keeps the current
    /// expiry (a grant change), otherwise the token lives [`TOKEN_TTL_SECS`].
    pub fn mint_token(&self, p: &Process, keep_expiry: bool) {
        let now = Timestamp::now().unix();
        let (_, old_exp) = p.token();
        let expires_at = if keep_expiry && old_exp > now {
            old_exp
        } else {
            now + TOKEN_TTL_SECS
        };
        let claims = avix_auth::captoken::CapClaims {
            pid: p.pid,
            user: p.user.to_string(),
            tools: p.grants().names(),
            issued_at: now,
            expires_at,
        };
        p.set_token(
            avix_auth::captoken::mint(&self.keys.capability, &claims),
            expires_at,
        );
    }

    /// Renews `p`'s token if it is within [`TOKEN_RENEWAL_SECS`] of expiring.
    pub fn renew_token_if_due(&self, p: &Process) {
        let (_, exp) = p.token();
        if exp - Timestamp::now().unix() < TOKEN_RENEWAL_SECS {
            self.mint_token(p, false);
        }
    }

    /// Verifies a capability token presented by a service: signature, expiry, and that it is
    /// the token in force of a live process (an older or revoked one is refused).
    /// Every refusal is [`ErrorKind::Denied`](avix_proto::ErrorKind::Denied).
    pub fn verify_token(
        &self,
        token: &str,
    ) -> Result<avix_auth::captoken::CapClaims, avix_proto::Error> {
        let denied = |m: String| avix_proto::Error::denied(m);
        let claims =
            avix_auth::captoken::verify(&self.keys.capability, token, Timestamp::now().unix())
                .map_err(|e| denied(e.to_string()))?;
        let p = self
            .procs
            .get(claims.pid)
            .ok_or_else(|| denied(format!("process {} does not exist", claims.pid)))?;
        let (current, _) = p.token();
        if current.is_empty() || current != token {
            return Err(denied("capability token revoked or superseded".into()));
        }
        Ok(claims)
    }
}
