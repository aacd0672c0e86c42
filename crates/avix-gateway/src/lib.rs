//! The ATP door (docs/atp.md): `GET /atp/health`, `POST /atp/auth/login|refresh|logout`,
//! and the WebSocket at `GET /atp`, over plain TCP on loopback by default or TLS (rustls).
//!
//! The gateway only translates: logins against auth.conf, commands onto kernel and VFS calls
//! made as the user, kernel events onto frames. It holds no agent logic of its own.
//!
//! # Layout
//! - [`auth`]: logins, lockouts, tokens.
//! - [`limits`]: connection limits and timeouts of the listener.
//! - [`conn`]: one WebSocket connection.
//! - [`ops`]: the domains and operations.
//! - [`logs`]: the ring of recent log lines behind `sys logs`.
//! - [`tls`]: the TLS listener.

pub mod auth;
mod compat;
pub mod conn;
pub mod limits;
pub mod logs;
pub mod ops;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use avix_kernel::Kernel;
use avix_kernel::system::VERSION;
use avix_proto::atp::{ErrorCode, HttpError, LoginRequest, MAX_FRAME_BYTES, PROTOCOL};
use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::{Auth, LoginError};
use crate::logs::LogRing;

/// Why the gateway cannot listen.
#[derive(Debug)]
pub struct BindError {
    /// The address.
    pub addr: SocketAddr,
    /// The OS error.
    pub source: std::io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.source.kind() == std::io::ErrorKind::AddrInUse {
            write!(
                f,
                "port {} on {} is already in use (another daemon?): stop it or pass --port",
                self.addr.port(),
                self.addr.ip()
            )
        } else {
            write!(f, "cannot listen on {}: {}", self.addr, self.source)
        }
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Connections the kernel queues for the gateway before it accepts them. Larger than
/// tokio's default (1024): under a flood of connections a real client's handshake must not
/// be dropped (and retried only a second later) while the gateway works through the queue.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds the gateway's listener (separately from serving, so the daemon can fail early).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    let err = |source| BindError { addr, source };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(LISTEN_BACKLOG).map_err(err)
}

/// The gateway.
pub struct Gateway {
    kernel: Arc<Kernel>,
    auth: Auth,
    logs: Arc<LogRing>,
    connections: AtomicUsize,
    /// Open WebSocket connections per user, against users.yaml `quota.sessions`. Short
    /// critical sections only.
    per_user: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    shutdown: CancellationToken,
}

/// One user's place among their open connections; dropping it gives the place back.
struct SessionSlot {
    per_user: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    user: String,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut m = self
            .per_user
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.user);
            }
        }
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}

struct ConnectionGuard<'a>(&'a AtomicUsize);

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Gateway {
    /// A gateway for `kernel`; `logs` feeds `sys logs`.
    pub fn new(kernel: Arc<Kernel>, logs: Arc<LogRing>, shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            auth: Auth::new(kernel.clone()),
            kernel,
            logs,
            connections: AtomicUsize::new(0),
            per_user: Arc::default(),
            shutdown,
        })
    }

    /// Open WebSocket connections.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    fn connection_opened(&self) -> ConnectionGuard<'_> {
        self.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(&self.connections)
    }

    /// Takes one of `user`'s places under users.yaml `quota.sessions` (concurrent
    /// connections), or says how many are open.
    fn session_slot(&self, user: &str) -> Result<SessionSlot, (usize, u64)> {
        let limit = self
            .kernel
            .config()
            .get()
            .users
            .get(user)
            .map(|u| u.quota.sessions);
        let mut m = self
            .per_user
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let open = m.get(user).copied().unwrap_or(0);
        if let Some(avix_proto::config::Limit::Limited(max)) = limit
            && open as u64 >= max
        {
            return Err((open, max));
        }
        m.insert(user.to_owned(), open + 1);
        Ok(SessionSlot {
            per_user: self.per_user.clone(),
            user: user.to_owned(),
        })
    }

    /// The login authority.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The connection limits of a listener, from kernel.yaml `gateway` as it is now.
    pub fn admission(&self) -> Arc<limits::Admission> {
        limits::Admission::new(limits::Limits::from_config(
            &self.kernel.config().get().kernel.gateway,
        ))
    }

    /// The HTTP routes.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/atp/health", get(health))
            .route("/atp/auth/login", post(login))
            .route("/atp/auth/refresh", post(refresh))
            .route("/atp/auth/logout", post(logout))
            .route("/atp", get(upgrade))
            .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
            .with_state(self.clone())
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Health {
    status: &'static str,
    version: &'static str,
    protocol: &'static str,
    uptime_secs: u64,
}

async fn health(State(gw): State<Arc<Gateway>>) -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok",
        version: VERSION,
        protocol: PROTOCOL,
        uptime_secs: gw.kernel.started().elapsed().as_secs(),
    })
}

fn http_error(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(HttpError {
            error: code,
            message: message.into(),
        }),
    )
        .into_response()
}

async fn login(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Response {
    let req: LoginRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return http_error(
                StatusCode::BAD_REQUEST,
                ErrorCode::EPARSE,
                format!("the body must be JSON {{\"identity\": …, \"credential\": …}}: {e}"),
            );
        }
    };
    match gw
        .auth
        // The socket peer: proxies in front are not trusted to say who the client is.
        .login(&req.identity, &req.credential, addr.ip())
        .await
    {
        Ok(r) => axum::Json(r).into_response(),
        Err(LoginError::Refused) => http_error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::EAUTH,
            "invalid identity or credential",
        ),
        Err(LoginError::Locked(wait)) => {
            let secs = wait.as_secs().max(1);
            let mut r = http_error(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::ELIMIT,
                format!("too many failed logins: try again in {secs} s"),
            );
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

async fn refresh(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let Some(token) = bearer(&headers) else {
        return http_error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::EAUTH,
            "send the token as Authorization: Bearer <token>",
        );
    };
    match gw.auth.validate(token) {
        Ok(c) => axum::Json(gw.auth.refresh(&c)).into_response(),
        Err(e) => http_error(StatusCode::UNAUTHORIZED, e.code, e.message),
    }
}

async fn logout(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let Some(token) = bearer(&headers) else {
        return http_error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::EAUTH,
            "send the token as Authorization: Bearer <token>",
        );
    };
    match gw.auth.validate(token) {
        Ok(c) => {
            gw.auth.logout(&c.sid);
            axum::Json(serde_json::json!({"loggedOut": c.sid})).into_response()
        }
        Err(e) => http_error(StatusCode::UNAUTHORIZED, e.code, e.message),
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The token of an upgrade request: `Authorization: Bearer`, else the subprotocol
/// `bearer.<token>` (what browsers can send), else `?token=`.
fn upgrade_token(headers: &HeaderMap, q: &TokenQuery) -> Option<String> {
    if let Some(t) = bearer(headers) {
        return Some(t.to_owned());
    }
    let protocols = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    for p in protocols.split(',') {
        if let Some(t) = p.trim().strip_prefix("bearer.") {
            return Some(t.to_owned());
        }
    }
    q.token.clone()
}

async fn upgrade(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(token) = upgrade_token(&headers, &q) else {
        return http_error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::EAUTH,
            "no token: log in with POST /atp/auth/login, then connect with Authorization: Bearer <token> (or the subprotocol bearer.<token>, or ?token=)",
        );
    };
    let claims = match gw.auth.validate(&token) {
        Ok(c) => c,
        Err(e) => return http_error(StatusCode::UNAUTHORIZED, e.code, e.message),
    };
    let slot = match gw.session_slot(&claims.sub) {
        Ok(s) => s,
        Err((open, max)) => {
            return http_error(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::ELIMIT,
                format!(
                    "{open} connections of {} are open, and users.yaml quota.sessions allows {max}: close one (or raise the quota)",
                    claims.sub
                ),
            );
        }
    };
    // Larger frames are refused with a reply (ETOOBIG); far larger ones end the connection.
    // A small read buffer: tungstenite zeroes the whole buffer on every read, and the
    // default (128 KiB) made that most of the gateway's CPU time under load.
    // A client that does not negotiate Avix's subprotocol (the reference implementation's
    // clients never do) is answered in the reference's terms (compat.rs).
    let compat = !headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(',')
        .any(|p| p.trim() == PROTOCOL);
    ws.protocols([PROTOCOL])
        .read_buffer_size(8 * 1024)
        .max_message_size(MAX_FRAME_BYTES * 16)
        .max_frame_size(MAX_FRAME_BYTES * 16)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            gw.serve_connection(socket, claims, token, compat).await;
        })
}

/// Serves plain HTTP on `listener` until `shutdown` is cancelled.
pub async fn serve(
    gw: Arc<Gateway>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Wrapped so the connect-info extractor knows the peer address.
    let listener = limits::LimitedListener::new(listener, gw.admission()).tap_io(|_| {});
    axum::serve(
        listener,
        gw.router()
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
}

/// Serves HTTPS on `listener` with `tls` until `shutdown` is cancelled.
pub async fn serve_tls(
    gw: Arc<Gateway>,
    listener: TcpListener,
    tls: tls::TlsSetup,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Wrapped so the connect-info extractor knows the peer address.
    let listener = tls::TlsListener::new(listener, tls, gw.admission()).tap_io(|_| {});
    axum::serve(
        listener,
        gw.router()
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
}
