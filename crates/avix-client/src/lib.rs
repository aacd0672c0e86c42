//! The ATP client library: log in, open the WebSocket, send commands and wait for their
//! replies, receive events. The `avix client` CLI is built on it, and so will the TUI and
//! the web UI be.
//!
//! ```no_run
//! # async fn demo() -> Result<(), avix_client::ClientError> {
//! let config = avix_client::Config::load(&avix_client::Overrides::default())?;
//! let client = avix_client::Client::connect(&config).await?;
//! let agents = client
//!     .run(&avix_proto::op::Op::List(avix_proto::op::ListArgs::default()))
//!     .await?;
//! # Ok(()) }
//! ```

pub mod config;
pub mod tokens;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use avix_proto::atp::{
    AtpError, ClientFrame, Cmd, EventFrame, HttpError, LoginRequest, LoginResponse, PROTOCOL,
    Reply, ServerFrame, Subscribe,
};
use avix_proto::op::Op;
use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

pub use config::{Config, Overrides};

/// How long a command waits for its reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The configuration is incomplete or wrong.
    #[error("{0}")]
    Config(String),
    /// The server cannot be reached.
    #[error("cannot reach the Avix server at {server}: {message}")]
    Connect {
        /// The server URL.
        server: String,
        /// What happened.
        message: String,
    },
    /// The login was refused.
    #[error("login refused ({code}): {message}")]
    Login {
        /// The error code.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The server answered the command with an error.
    #[error("{0}")]
    Atp(AtpError),
    /// No reply in time.
    #[error("no reply to {0} within {REPLY_TIMEOUT:?}")]
    Timeout(String),
    /// The connection closed.
    #[error("the connection to the server closed{0}")]
    Closed(String),
    /// The server sent something that is not ATP.
    #[error("the server sent something that is not ATP: {0}")]
    Protocol(String),
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Reply>>>>;

/// A connected client.
pub struct Client {
    token: Arc<Mutex<String>>,
    login: LoginResponse,
    ready: Value,
    tx: mpsc::Sender<Message>,
    pending: Pending,
    events: broadcast::Sender<EventFrame>,
    last_seq: Arc<AtomicU64>,
    next: AtomicU64,
    closed: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("session", &self.login.session_id)
            .finish_non_exhaustive()
    }
}

fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn http_client(config: &Config) -> Result<reqwest::Client, ClientError> {
    install_crypto();
    let mut b = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
    if let Some(ca) = &config.ca_cert {
        let pem = std::fs::read(ca).map_err(|e| {
            ClientError::Config(format!(
                "cannot read the CA certificate {}: {e}",
                ca.display()
            ))
        })?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
            ClientError::Config(format!("{} is not a PEM certificate: {e}", ca.display()))
        })?;
        b = b.add_root_certificate(cert);
    }
    b.build()
        .map_err(|e| ClientError::Config(format!("cannot build the HTTP client: {e}")))
}

/// Logs in over HTTP.
pub async fn login(config: &Config) -> Result<LoginResponse, ClientError> {
    let http = http_client(config)?;
    let url = format!("{}/atp/auth/login", config.server.trim_end_matches('/'));
    let resp = http
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(
            serde_json::to_vec(&LoginRequest {
                identity: config.identity.clone(),
                credential: config
                    .credential
                    .as_ref()
                    .ok_or_else(|| ClientError::Config(config::NO_CREDENTIAL.into()))?
                    .to_string(),
            })
            .unwrap_or_default(),
        )
        .send()
        .await
        .map_err(|e| ClientError::Connect {
            server: config.server.clone(),
            message: error_chain(&e),
        })?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| ClientError::Connect {
        server: config.server.clone(),
        message: error_chain(&e),
    })?;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(e.to_string()));
    }
    match serde_json::from_slice::<HttpError>(&body) {
        Ok(e) => Err(ClientError::Login {
            code: e.error.to_string(),
            message: e.message,
        }),
        Err(_) => Err(ClientError::Login {
            code: status.as_u16().to_string(),
            message: String::from_utf8_lossy(&body).trim().to_owned(),
        }),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn ws_url(server: &str) -> Result<String, ClientError> {
    let s = server.trim_end_matches('/');
    let rest = if let Some(r) = s.strip_prefix("https://") {
        format!("wss://{r}")
    } else if let Some(r) = s.strip_prefix("http://") {
        format!("ws://{r}")
    } else {
        return Err(ClientError::Config(format!(
            "server {server:?} must start with http:// or https://"
        )));
    };
    Ok(format!("{rest}/atp"))
}

impl Client {
    /// Logs in and opens the WebSocket.
    pub async fn connect(config: &Config) -> Result<Self, ClientError> {
        let login = login(config).await?;
        Self::open(config, login).await
    }

    /// Connects with the token `avix client login` kept for this server and user when there
    /// is a usable one (refreshed once past half its life), else logs in. A kept token the
    /// server refuses (expired, logged out) is forgotten, and a login with the configured
    /// credential takes its place.
    pub async fn connect_kept(
        config: &Config,
        tokens: Option<&tokens::Tokens>,
    ) -> Result<Self, ClientError> {
        let Some((t, kept)) = tokens.and_then(|t| Some((t, t.load(config)?))) else {
            return Self::connect(config).await;
        };
        let refused = if kept.usable() {
            match Self::open(config, kept.login.clone()).await {
                Ok(c) => {
                    if kept.aging()
                        && let Ok(new) = c
                            .call_as::<LoginResponse>("auth", "refresh", serde_json::json!({}))
                            .await
                    {
                        let _ = t.save(config, &new);
                    }
                    return Ok(c);
                }
                Err(ClientError::Atp(e)) => e.message,
                Err(e) => return Err(e),
            }
        } else {
            "it has expired".to_owned()
        };
        t.remove(config);
        if config.credential.is_none() {
            return Err(ClientError::Config(format!(
                "the token `avix client login` kept for {} is no longer accepted ({refused}): run `avix client login` again",
                config.server
            )));
        }
        Self::connect(config).await
    }

    /// Opens the WebSocket with a token from an earlier login.
    pub async fn open(config: &Config, login: LoginResponse) -> Result<Self, ClientError> {
        install_crypto();
        let mut req = ws_url(&config.server)?
            .into_client_request()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let h = req.headers_mut();
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {}", login.token))
                .map_err(|e| ClientError::Protocol(e.to_string()))?,
        );
        h.insert("sec-websocket-protocol", HeaderValue::from_static(PROTOCOL));
        let connector = match &config.ca_cert {
            Some(ca) => Some(tls_connector(ca)?),
            None => None,
        };
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(req, None, true, connector)
            .await
            .map_err(|e| match &e {
                // The server answered the upgrade with an ATP error (a quota, an expired
                // token): say what it said.
                tokio_tungstenite::tungstenite::Error::Http(resp) => {
                    let body: Option<avix_proto::atp::HttpError> = resp
                        .body()
                        .as_deref()
                        .and_then(|b| serde_json::from_slice(b).ok());
                    match body {
                        Some(h) => {
                            ClientError::Atp(avix_proto::atp::AtpError::new(h.error, h.message))
                        }
                        None => ClientError::Connect {
                            server: config.server.clone(),
                            message: error_chain(&e),
                        },
                    }
                }
                _ => ClientError::Connect {
                    server: config.server.clone(),
                    message: error_chain(&e),
                },
            })?;
        let (mut sink, mut stream) = ws.split();
        // The first frame is session.ready.
        let ready = match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str::<ServerFrame>(&t) {
                Ok(ServerFrame::Event(e))
                    if e.event == avix_proto::event::EventName::SessionReady =>
                {
                    e.body
                }
                _ => {
                    return Err(ClientError::Protocol(format!(
                        "expected session.ready, got {t}"
                    )));
                }
            },
            _ => return Err(ClientError::Closed(" before session.ready".into())),
        };
        let (tx, mut rx) = mpsc::channel::<Message>(256);
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let pending: Pending = Arc::default();
        let (events, _) = broadcast::channel(4096);
        let last_seq = Arc::new(AtomicU64::new(0));
        let closed: Arc<Mutex<Option<String>>> = Arc::default();
        {
            let pending = pending.clone();
            let events = events.clone();
            let last_seq = last_seq.clone();
            let closed = closed.clone();
            tokio::spawn(async move {
                let why = loop {
                    let Some(m) = stream.next().await else {
                        break String::new();
                    };
                    let t = match m {
                        Ok(Message::Text(t)) => t,
                        Ok(Message::Close(f)) => {
                            break f.map(|f| format!(": {}", f.reason)).unwrap_or_default();
                        }
                        Ok(_) => continue,
                        Err(e) => break format!(": {e}"),
                    };
                    match serde_json::from_str::<ServerFrame>(&t) {
                        Ok(ServerFrame::Reply(r)) => {
                            let waiter = r.id.as_ref().and_then(|id| {
                                pending
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                                    .remove(id)
                            });
                            match waiter {
                                Some(w) => {
                                    let _ = w.send(r);
                                }
                                None => tracing::debug!(reply = %t, "a reply nobody waits for"),
                            }
                        }
                        Ok(ServerFrame::Event(e)) => {
                            if e.seq > 0 {
                                last_seq.fetch_max(e.seq, Ordering::Relaxed);
                            }
                            let _ = events.send(e);
                        }
                        Err(e) => tracing::warn!(error = %e, "a frame that is not ATP"),
                    }
                };
                *closed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why);
                // Wake everyone waiting: their replies will not come.
                pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clear();
            });
        }
        Ok(Self {
            token: Arc::new(Mutex::new(login.token.clone())),
            login,
            ready,
            tx,
            pending,
            events,
            last_seq,
            next: AtomicU64::new(1),
            closed,
        })
    }

    /// Whether the connection has closed (the daemon stopped, the network went away): calls
    /// fail from then on, and no more events come.
    pub fn is_closed(&self) -> bool {
        self.closed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    /// What the login returned (role, login id, expiry).
    pub fn login_info(&self) -> &LoginResponse {
        &self.login
    }

    /// The body of the server's `session.ready`.
    pub fn ready(&self) -> &Value {
        &self.ready
    }

    /// The highest event sequence number received (for reconnecting with `sinceSeq`).
    pub fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Relaxed)
    }

    /// Events from now on.
    pub fn events(&self) -> broadcast::Receiver<EventFrame> {
        self.events.subscribe()
    }

    fn token(&self) -> String {
        self.token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    async fn send_frame(&self, frame: &ClientFrame) -> Result<(), ClientError> {
        let text =
            serde_json::to_string(frame).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.send_raw(text).await
    }

    /// Sends a raw text frame (the `atp shell`, tests).
    pub async fn send_raw(&self, text: String) -> Result<(), ClientError> {
        self.tx
            .send(Message::Text(text.into()))
            .await
            .map_err(|_| self.closed_error())
    }

    fn closed_error(&self) -> ClientError {
        let why = self
            .closed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or_default();
        ClientError::Closed(why)
    }

    async fn wait(
        &self,
        id: String,
        rx: oneshot::Receiver<Reply>,
        what: &str,
    ) -> Result<Reply, ClientError> {
        match tokio::time::timeout(REPLY_TIMEOUT, rx).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(self.closed_error()),
            Err(_) => {
                self.pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&id);
                Err(ClientError::Timeout(what.to_owned()))
            }
        }
    }

    fn register(&self) -> Result<(String, oneshot::Receiver<Reply>), ClientError> {
        let id = format!("c{}", self.next.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.clone(), tx);
        // The reader marks the connection closed before it drops the waiters: checked after
        // registering, a closed connection is never waited on.
        if self
            .closed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
        {
            self.pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&id);
            return Err(self.closed_error());
        }
        Ok((id, rx))
    }

    /// Sends a command and waits for its reply's body.
    pub async fn call(&self, domain: &str, op: &str, body: Value) -> Result<Value, ClientError> {
        let (id, rx) = self.register()?;
        let frame = ClientFrame::Cmd(Cmd {
            id: id.clone(),
            token: self.token(),
            domain: domain.to_owned(),
            op: op.to_owned(),
            body,
        });
        self.send_frame(&frame).await?;
        let r = self.wait(id, rx, &format!("{domain} {op}")).await?;
        if r.ok {
            if domain == "auth"
                && op == "refresh"
                && let Some(t) = r.body.as_ref().and_then(|b| b["token"].as_str())
            {
                *self
                    .token
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = t.to_owned();
            }
            Ok(r.body.unwrap_or(Value::Null))
        } else {
            Err(ClientError::Atp(r.error.unwrap_or_else(|| {
                AtpError::new(
                    avix_proto::atp::ErrorCode::EINTERNAL,
                    "an error without details",
                )
            })))
        }
    }

    /// Like [`Client::call`], decoding the body.
    pub async fn call_as<T: DeserializeOwned>(
        &self,
        domain: &str,
        op: &str,
        body: Value,
    ) -> Result<T, ClientError> {
        let v = self.call(domain, op, body).await?;
        serde_json::from_value(v).map_err(|e| ClientError::Protocol(format!("{domain} {op}: {e}")))
    }

    /// Runs one operation ([`Op`]: its names and body are the daemon's own types) and waits
    /// for its reply's body.
    pub async fn run(&self, op: &Op) -> Result<Value, ClientError> {
        let (domain, name) = op.names();
        self.call(domain, name, op.body()).await
    }

    /// Like [`Client::run`], decoding the body.
    pub async fn run_as<T: DeserializeOwned>(&self, op: &Op) -> Result<T, ClientError> {
        let (domain, name) = op.names();
        self.call_as(domain, name, op.body()).await
    }

    /// Subscribes to events (patterns like `agent.*`), replaying those after `since`.
    pub async fn subscribe(
        &self,
        events: &[&str],
        since: Option<u64>,
    ) -> Result<Value, ClientError> {
        let (id, rx) = self.register()?;
        let frame = ClientFrame::Subscribe(Subscribe {
            events: events.iter().map(|s| (*s).to_owned()).collect(),
            since_seq: since,
            id: Some(id.clone()),
            token: None,
        });
        self.send_frame(&frame).await?;
        let r = self.wait(id, rx, "subscribe").await?;
        if r.ok {
            Ok(r.body.unwrap_or(Value::Null))
        } else {
            Err(ClientError::Atp(r.error.unwrap_or_else(|| {
                AtpError::new(
                    avix_proto::atp::ErrorCode::EINTERNAL,
                    "an error without details",
                )
            })))
        }
    }
}

fn tls_connector(ca: &std::path::Path) -> Result<tokio_tungstenite::Connector, ClientError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| ClientError::Config(format!("cannot read {}: {e}", ca.display())))?;
    for c in certs {
        let c = c.map_err(|e| ClientError::Config(format!("{} is not PEM: {e}", ca.display())))?;
        roots
            .add(c)
            .map_err(|e| ClientError::Config(format!("{}: {e}", ca.display())))?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_tungstenite::Connector::Rustls(Arc::new(config)))
}
