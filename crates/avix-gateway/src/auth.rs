//! Logins and tokens: credential checks against auth.conf (API keys by keyed hash, passwords
//! by argon2id), IP allow-lists, failed-login lockouts per identity, a slowdown per address,
//! and the logins tokens belong to (refresh keeps the login, logout revokes it).
//!
//! An unknown identity, a wrong credential and a refused address all get the same answer.
//!
//! Lockout is per identity only — the identity named, or the one an API key belongs to when
//! none is named — so guessing one user's password never blocks another user. An address
//! that fails too often is slowed down, never locked out: its failed attempts are answered
//! after [`TARPIT`], while a valid credential from it is answered at once. On a daemon that
//! listens on loopback every local client shares 127.0.0.1, and one of them must not be able
//! to lock everyone out.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use avix_auth::atptoken::{AtpClaims, AtpSigner, TokenError};
use avix_kernel::Kernel;
use avix_proto::Role;
use avix_proto::atp::{AtpError, ErrorCode, LoginResponse};
use avix_proto::config::auth::Credential;
use avix_proto::time::Timestamp;

/// A failed login, and what to tell the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// Wrong identity, credential or address (indistinguishable on purpose).
    Refused,
    /// Too many failures: wait this long.
    Locked(Duration),
}

#[derive(Debug, Clone)]
struct Login {
    user: String,
    issued: i64,
    revoked: bool,
}

#[derive(Debug, Default)]
struct Failures {
    by_identity: HashMap<String, VecDeque<Instant>>,
    by_address: HashMap<IpAddr, VecDeque<Instant>>,
}

/// How many failures an address may make before it is slowed down, as a multiple of the
/// per-identity limit (one address may serve several people).
const ADDRESS_FACTOR: u32 = 4;

/// How long a failed login from a slowed-down address waits for its answer.
pub const TARPIT: Duration = Duration::from_secs(1);

/// The login authority of one gateway.
pub struct Auth {
    kernel: Arc<Kernel>,
    signer: AtpSigner,
    logins: Mutex<HashMap<String, Login>>,
    failures: Mutex<Failures>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

fn uuid() -> String {
    avix_kernel::spawn::invocation_id()
}

/// Whether `ip` is in `cidr` (`10.0.0.0/8`, `::1/128`, or a bare address).
pub fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let (net, bits) = match cidr.split_once('/') {
        Some((n, b)) => (n, b.parse::<u32>().ok()),
        None => (cidr, None),
    };
    let Ok(net) = net.trim().parse::<IpAddr>() else {
        return false;
    };
    let ip = match (ip, net) {
        (IpAddr::V6(v6), IpAddr::V4(_)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        _ => ip,
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn prune(q: &mut VecDeque<Instant>, ttl: Duration, now: Instant) {
    while q.front().is_some_and(|t| now.duration_since(*t) >= ttl) {
        q.pop_front();
    }
}

impl Auth {
    /// A login authority; tokens are signed with a key that dies with this process.
    pub fn new(kernel: Arc<Kernel>) -> Self {
        let nonce: [u8; 32] = rand::random();
        let signer = AtpSigner::new(&kernel.keys().atp_token, &nonce);
        Self {
            kernel,
            signer,
            logins: Mutex::new(HashMap::new()),
            failures: Mutex::new(Failures::default()),
        }
    }

    fn lockout(&self) -> (u32, Duration) {
        let p = &self.kernel.config().get().auth.policy;
        (
            p.failed_auth_lockout_count.max(1),
            p.failed_auth_lockout_ttl.get(),
        )
    }

    /// How long `identity` must still wait, if locked out.
    fn locked(&self, identity: &str) -> Option<Duration> {
        let (count, ttl) = self.lockout();
        let now = Instant::now();
        let mut f = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let q = f.by_identity.get_mut(identity)?;
        prune(q, ttl, now);
        if q.len() < count as usize {
            return None;
        }
        q.front()
            .map(|t| ttl.saturating_sub(now.duration_since(*t)))
    }

    /// Whether `addr` failed often enough lately to be slowed down.
    fn slowed(&self, addr: IpAddr) -> bool {
        let (count, ttl) = self.lockout();
        let mut f = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f.by_address.get_mut(&addr).is_some_and(|q| {
            prune(q, ttl, Instant::now());
            q.len() >= (count * ADDRESS_FACTOR) as usize
        })
    }

    /// Counts a failure against `identity` (when one is known) and `addr`.
    fn fail(&self, identity: Option<&str>, addr: IpAddr) {
        let now = Instant::now();
        let mut f = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(identity) = identity {
            f.by_identity
                .entry(identity.to_owned())
                .or_default()
                .push_back(now);
        }
        f.by_address.entry(addr).or_default().push_back(now);
        // Bound the tables: an attacker cycling names must not grow them forever.
        if f.by_identity.len() > 10_000 {
            f.by_identity.clear();
        }
        if f.by_address.len() > 10_000 {
            f.by_address.clear();
        }
    }

    /// Checks a credential and issues a token.
    pub async fn login(
        &self,
        identity: &str,
        credential: &str,
        addr: IpAddr,
    ) -> Result<LoginResponse, LoginError> {
        if !identity.is_empty()
            && let Some(wait) = self.locked(identity)
        {
            return Err(LoginError::Locked(wait));
        }
        let config = self.kernel.config().get();
        let id = if identity.is_empty() {
            // No name: the API key says whose it is (every key is checked, in constant time).
            let key = &self.kernel.keys().api_key;
            config
                .auth
                .identities
                .iter()
                .find(|i| {
                    matches!(&i.credential, Credential::ApiKey { key_hash }
                        if avix_auth::api_key::verify(credential, key_hash, key))
                })
                .cloned()
        } else {
            config
                .auth
                .identities
                .iter()
                .find(|i| i.name.as_str() == identity)
                .cloned()
        };
        // A key presented without a name is held to its owner's lockout too.
        if identity.is_empty()
            && let Some(i) = &id
            && let Some(wait) = self.locked(i.name.as_str())
        {
            return Err(LoginError::Locked(wait));
        }
        let api_key = self.kernel.keys().api_key.clone();
        let presented = credential.to_owned();
        let ok = tokio::task::spawn_blocking(move || match &id {
            Some(i) => {
                let allowed =
                    i.ip_allowlist.is_empty() || i.ip_allowlist.iter().any(|c| in_cidr(addr, c));
                let good = match &i.credential {
                    Credential::ApiKey { key_hash } => {
                        avix_auth::api_key::verify(&presented, key_hash, &api_key)
                    }
                    Credential::Password { password_hash } => {
                        avix_auth::password::verify(&presented, password_hash)
                    }
                };
                (good && allowed).then(|| (i.name.to_string(), i.role))
            }
            None => {
                // The same work as a wrong API key, so timing tells nothing.
                let _ = avix_auth::api_key::verify(
                    &presented,
                    "hmac-sha256:0000000000000000000000000000000000000000000000000000000000000000",
                    &api_key,
                );
                None
            }
        })
        .await
        .ok()
        .flatten();
        let Some((user, role)) = ok else {
            let slowed = self.slowed(addr);
            self.fail((!identity.is_empty()).then_some(identity), addr);
            tracing::info!(identity = %avix_proto::text::escape(identity), %addr, "login refused");
            if slowed {
                tokio::time::sleep(TARPIT).await;
            }
            return Err(LoginError::Refused);
        };
        let sid = uuid();
        let now = Timestamp::now().unix();
        self.logins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                sid.clone(),
                Login {
                    user: user.clone(),
                    issued: now,
                    revoked: false,
                },
            );
        self.prune_logins();
        tracing::info!(user = %user, %addr, "login");
        Ok(self.issue(&user, role, &sid, now))
    }

    fn ttl(&self) -> i64 {
        i64::try_from(
            self.kernel
                .config()
                .get()
                .auth
                .policy
                .session_ttl
                .get()
                .as_secs(),
        )
        .unwrap_or(8 * 3600)
        .max(60)
    }

    fn issue(&self, user: &str, role: Role, sid: &str, now: i64) -> LoginResponse {
        let claims = AtpClaims {
            sub: user.to_owned(),
            role,
            sid: sid.to_owned(),
            iat: now,
            exp: now + self.ttl(),
        };
        LoginResponse {
            token: self.signer.mint(&claims),
            expires_at: Timestamp::from_unix(claims.exp),
            session_id: sid.to_owned(),
            role,
        }
    }

    fn prune_logins(&self) {
        let horizon = Timestamp::now().unix() - self.ttl() * 2;
        self.logins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, l| l.issued > horizon);
    }

    /// Checks a token: signature, expiry, the login not revoked, the identity still in
    /// auth.conf. The role is the one auth.conf gives now (a demotion takes effect at once).
    pub fn validate(&self, token: &str) -> Result<AtpClaims, AtpError> {
        let mut claims = self.signer.verify(token, Timestamp::now().unix()).map_err(
            |e| match e {
                TokenError::Expired => {
                    AtpError::new(ErrorCode::EEXPIRED, "the token expired: log in again")
                }
                TokenError::Malformed => AtpError::new(
                    ErrorCode::EAUTH,
                    "malformed token: use the token POST /atp/auth/login returned",
                ),
                TokenError::BadSignature => AtpError::new(
                    ErrorCode::EAUTH,
                    "invalid token (forged, or issued before the daemon restarted): log in again",
                ),
            },
        )?;
        self.recheck(&mut claims)?;
        Ok(claims)
    }

    /// Re-checks claims whose signature was verified earlier: not expired, login not
    /// revoked, identity still there (its current role replaces the token's).
    pub fn recheck(&self, claims: &mut AtpClaims) -> Result<(), AtpError> {
        if Timestamp::now().unix() >= claims.exp {
            return Err(AtpError::new(
                ErrorCode::EEXPIRED,
                "the token expired: log in again",
            ));
        }
        let logins = self
            .logins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match logins.get(&claims.sid) {
            Some(l) if !l.revoked && l.user == claims.sub => {}
            _ => {
                return Err(AtpError::new(
                    ErrorCode::EAUTH,
                    "this login was ended (logout): log in again",
                ));
            }
        }
        drop(logins);
        let config = self.kernel.config().get();
        let Some(i) = config.auth.identity(&claims.sub) else {
            return Err(AtpError::new(
                ErrorCode::EAUTH,
                "this identity no longer exists in auth.conf",
            ));
        };
        claims.role = i.role;
        Ok(())
    }

    /// A new token for the same login.
    pub fn refresh(&self, claims: &AtpClaims) -> LoginResponse {
        self.issue(
            &claims.sub,
            claims.role,
            &claims.sid,
            Timestamp::now().unix(),
        )
    }

    /// Ends a login: every token of it is refused from now on.
    pub fn logout(&self, sid: &str) {
        if let Some(l) = self
            .logins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(sid)
        {
            l.revoked = true;
        }
    }

    /// The signer (benchmarks).
    pub fn signer(&self) -> &AtpSigner {
        &self.signer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_matching() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_cidr(ip("10.1.2.3"), "10.0.0.0/8"));
        assert!(!in_cidr(ip("11.1.2.3"), "10.0.0.0/8"));
        assert!(in_cidr(ip("127.0.0.1"), "127.0.0.1"));
        assert!(in_cidr(ip("::ffff:10.0.0.1"), "10.0.0.0/8"));
        assert!(in_cidr(ip("::1"), "::1/128"));
        assert!(in_cidr(ip("1.2.3.4"), "0.0.0.0/0"));
        assert!(!in_cidr(ip("1.2.3.4"), "nonsense"));
    }
}
