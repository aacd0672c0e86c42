//! A JSON-RPC server on a Unix socket: one call per connection, peer credentials checked
//! before anything is read, every request answered exactly once.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use avix_proto::rpc::{Id, Request, Response, RpcError, code};
use serde_json::value::RawValue;
use tokio::io::AsyncReadExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::frame::{self, FrameError};

/// A boxed future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who is on the other end of a connection (SO_PEERCRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Process id, when the kernel reports it.
    pub pid: Option<i32>,
}

/// Streams notifications to the caller before the final response.
#[derive(Debug, Clone)]
pub struct Notifier(Option<mpsc::Sender<Request>>);

impl Notifier {
    /// A notifier that drops everything (for notifications, which get no reply).
    pub fn none() -> Self {
        Self(None)
    }

    /// Sends a notification; returns false when the caller has gone.
    pub async fn send(&self, method: &str, params: Box<RawValue>) -> bool {
        match &self.0 {
            Some(tx) => tx
                .send(Request::notification(method, Some(params)))
                .await
                .is_ok(),
            None => false,
        }
    }
}

/// Answers calls.
pub trait Handler: Send + Sync + 'static {
    /// Serves one request. Dropped if the caller hangs up first.
    fn handle(
        &self,
        peer: Peer,
        req: Request,
        notes: Notifier,
    ) -> BoxFuture<'static, Result<Box<RawValue>, RpcError>>;
}

/// Decides which peers may talk to a socket; a refusal (kind denied) says who may.
pub type PeerCheck = Arc<dyn Fn(&Peer) -> Result<(), avix_proto::Error> + Send + Sync>;

/// Server settings.
#[derive(Clone)]
pub struct ServerConfig {
    /// Largest frame read or written.
    pub max_frame: usize,
    /// How long a client may take to send its request.
    pub read_timeout: Duration,
    /// Who may connect.
    pub peers: PeerCheck,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("max_frame", &self.max_frame)
            .field("read_timeout", &self.read_timeout)
            .finish_non_exhaustive()
    }
}

impl ServerConfig {
    /// Only this process's own uid (and root) may connect.
    pub fn same_user(max_frame: usize, read_timeout: Duration) -> Self {
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        Self {
            max_frame,
            read_timeout,
            peers: Arc::new(move |p: &Peer| {
                if p.uid == me || p.uid == 0 {
                    Ok(())
                } else {
                    Err(avix_proto::Error::denied(format!(
                        "uid {} may not use this socket (only uid {me} and root)",
                        p.uid
                    )))
                }
            }),
        }
    }
}

/// Binds `path` as a 0600 socket, replacing a stale socket file left by a crash.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(_) => {}
    }
    // The socket is created with the umask's mode; tighten it before anyone can be told
    // its name.
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Connections one socket serves at once. Past it, new ones wait in the listen backlog
/// until one ends (a silent one ends at `ipc.timeoutMs`): a service flooding its own socket
/// holds at most this many descriptors, and no other socket's.
pub const MAX_CONNECTIONS_PER_SOCKET: usize = 256;

/// Accepts connections until `shutdown`, each served on its own task.
pub async fn serve(
    listener: UnixListener,
    handler: Arc<dyn Handler>,
    cfg: ServerConfig,
    shutdown: CancellationToken,
) {
    let tracker = tokio_util::task::TaskTracker::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS_PER_SOCKET));
    let mut failures = 0u64;
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    failures += 1;
                    if failures.is_power_of_two() {
                        if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                            tracing::error!("IPC accept failed: the daemon is out of file descriptors (EMFILE)");
                        } else {
                            tracing::warn!(error = %e, "IPC accept failed");
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let handler = handler.clone();
        let cfg = cfg.clone();
        tracker.spawn(async move {
            let _slot = permit;
            if let Err(e) = connection(stream, handler, cfg).await {
                tracing::debug!(error = %e, "IPC connection ended with an error");
            }
        });
    }
    tracker.close();
    // Calls in flight get a moment to answer.
    let _ = tokio::time::timeout(Duration::from_secs(2), tracker.wait()).await;
}

async fn reply(stream: &mut UnixStream, resp: &Response, max: usize) -> Result<(), FrameError> {
    let f = match frame::encode(resp, max) {
        Ok(f) => f,
        Err(FrameError::TooBig { len, max }) => frame::encode(
            &Response::err(
                resp.id.clone(),
                RpcError::new(
                    code::ETOOBIG,
                    format!(
                        "the result of {len} bytes is larger than the frame limit of {max} bytes; ask for less (a narrower path, a limit)"
                    ),
                ),
            ),
            max,
        )?,
        Err(e) => return Err(e),
    };
    frame::write_frame(stream, &f).await
}

/// Parses and checks a request frame (see [`Request::parse`]).
pub fn parse_request(bytes: &[u8]) -> Result<Request, (Option<Id>, RpcError)> {
    Request::parse(bytes)
}

/// After an early error reply: lets the caller read it. Closing a Unix socket with unread
/// input resets the connection, which can discard the reply, so the rest of the request is
/// read and dropped (briefly, up to 16 MiB).
async fn linger(mut stream: UnixStream) {
    use tokio::io::AsyncWriteExt;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 8192];
    let mut left = avix_proto::rpc::MAX_FRAME_CEILING;
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

async fn connection(
    mut stream: UnixStream,
    handler: Arc<dyn Handler>,
    cfg: ServerConfig,
) -> Result<(), FrameError> {
    let cred = stream.peer_cred()?;
    let peer = Peer {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: cred.pid(),
    };
    if let Err(why) = (cfg.peers)(&peer) {
        tracing::warn!(uid = peer.uid, pid = ?peer.pid, "IPC peer refused: {why}");
        let resp = Response::err(None, RpcError::new(code::EAUTH, why.message));
        reply(&mut stream, &resp, cfg.max_frame).await?;
        linger(stream).await;
        return Ok(());
    }
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        cfg.read_timeout,
        frame::read_frame(&mut stream, cfg.max_frame, &mut buf),
    )
    .await;
    let err = |e: RpcError| Response::err(None, e);
    match read {
        Err(_) => {
            let e = RpcError::new(
                code::ETIMEOUT,
                format!(
                    "no complete request within {} ms; send one length-prefixed frame per connection",
                    cfg.read_timeout.as_millis()
                ),
            );
            return reply(&mut stream, &err(e), cfg.max_frame).await;
        }
        Ok(Err(FrameError::Closed)) => return Ok(()),
        Ok(Err(e @ FrameError::TooBig { .. })) => {
            let e = RpcError::new(code::ETOOBIG, e.to_string());
            reply(&mut stream, &err(e), cfg.max_frame).await?;
            linger(stream).await;
            return Ok(());
        }
        Ok(Err(e @ FrameError::Truncated { .. })) => {
            // The caller may have only half-closed: tell it.
            let e = RpcError::new(
                code::PARSE,
                format!("{e}; send a 4-byte little-endian length, then the JSON"),
            );
            return reply(&mut stream, &err(e), cfg.max_frame).await;
        }
        Ok(Err(e)) => return Err(e),
        Ok(Ok(())) => {}
    }
    let req = match parse_request(&buf) {
        Ok(r) => r,
        Err((id, e)) => return reply(&mut stream, &Response::err(id, e), cfg.max_frame).await,
    };
    drop(buf);
    let Some(id) = req.id.clone() else {
        // A notification: served, never answered.
        let _ = handler.handle(peer, req, Notifier::none()).await;
        return Ok(());
    };
    let (tx, mut rx) = mpsc::channel::<Request>(64);
    let mut call = handler.handle(peer, req, Notifier(Some(tx)));
    let (mut rd, mut wr) = stream.split();
    let mut probe = [0u8; 1];
    let mut probing = true;
    let result = loop {
        tokio::select! {
            r = &mut call => break r,
            Some(note) = rx.recv() => {
                let f = frame::encode(&note, cfg.max_frame)?;
                frame::write_frame(&mut wr, &f).await?;
            }
            // End of input is a half-close (the caller still waits for the answer); an
            // error means the caller hung up: the call is dropped.
            r = rd.read(&mut probe), if probing => match r {
                Ok(_) => probing = false,
                Err(_) => return Ok(()),
            },
        }
    };
    // Notifications sent just before the end go first.
    while let Ok(note) = rx.try_recv() {
        let f = frame::encode(&note, cfg.max_frame)?;
        frame::write_frame(&mut wr, &f).await?;
    }
    let resp = match result {
        Ok(r) => Response::ok(Some(id), r),
        Err(e) => Response::err(Some(id), e),
    };
    reply(&mut stream, &resp, cfg.max_frame).await
}
