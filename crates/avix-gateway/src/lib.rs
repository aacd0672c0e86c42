//! The ATP door: HTTP on the gateway port. It serves `GET /atp/health` today; login and the
//! WebSocket protocol build on this router.
//!
//! The gateway only translates requests into kernel calls; it holds no logic of its own.

use std::net::SocketAddr;
use std::sync::Arc;

use avix_kernel::Kernel;
use avix_kernel::system::VERSION;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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

/// Binds the gateway's listener (separately from serving, so the daemon can fail early).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Health {
    status: &'static str,
    version: &'static str,
    uptime_secs: u64,
}

async fn health(State(kernel): State<Arc<Kernel>>) -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok",
        version: VERSION,
        uptime_secs: kernel.started().elapsed().as_secs(),
    })
}

/// The HTTP routes.
pub fn router(kernel: Arc<Kernel>) -> Router {
    Router::new()
        .route("/atp/health", get(health))
        .with_state(kernel)
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    kernel: Arc<Kernel>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(kernel))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
