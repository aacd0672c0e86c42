//! ATP over TLS (rustls, ring): a certificate chain and key in PEM, named in kernel.yaml
//! (`gateway.tls: {certPath, keyPath}`). Handshakes run in their own tasks with a timeout, so a
//! slow or silent client never holds up the others.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::limits::{self, Admission, Guarded};

/// How long a client has to finish the handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// A loaded certificate and key.
#[derive(Clone)]
pub struct TlsSetup(Arc<rustls::ServerConfig>);

impl std::fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsSetup")
    }
}

impl TlsSetup {
    /// Loads a PEM certificate chain and private key. A file that cannot be read or does not
    /// hold what it should is an error of kind invalid naming the file.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, avix_proto::Error> {
        let invalid = |m: String| avix_proto::Error::invalid(m);
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| {
                invalid(format!(
                    "cannot read the TLS certificate {}: {e}",
                    cert.display()
                ))
            })?
            .collect::<Result<_, _>>()
            .map_err(|e| {
                invalid(format!(
                    "the TLS certificate {} is not valid PEM: {e}",
                    cert.display()
                ))
            })?;
        if certs.is_empty() {
            return Err(invalid(format!(
                "the TLS certificate file {} holds no certificate",
                cert.display()
            )));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| invalid(format!("cannot read the TLS key {}: {e}", key.display())))?;
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                invalid(format!(
                    "the TLS certificate and key do not fit together: {e}"
                ))
            })?;
        Ok(Self(Arc::new(config)))
    }
}

/// A listener that yields connections whose TLS handshake completed.
pub struct TlsListener {
    rx: mpsc::Receiver<(Guarded<TlsStream<TcpStream>>, SocketAddr)>,
    local: SocketAddr,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsListener({})", self.local)
    }
}

impl TlsListener {
    /// Starts accepting on `listener`.
    pub fn new(listener: TcpListener, setup: TlsSetup, adm: Arc<Admission>) -> Self {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (tx, rx) = mpsc::channel(128);
        let acceptor = TlsAcceptor::from(setup.0);
        tokio::spawn(async move {
            loop {
                // Admitted before the handshake: a handshake in progress is a pending
                // connection like any other (limits, eviction).
                let (tcp, addr, ticket) = limits::accept(&listener, &adm).await;
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let out = tx.clone();
                let l = adm.limits();
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(
                        HANDSHAKE.min(l.request_timeout),
                        acceptor.accept(tcp),
                    );
                    let r = tokio::select! {
                        r = handshake => r,
                        () = ticket.evicted() => return,
                    };
                    match r {
                        Ok(Ok(tls)) => {
                            let _ = out.send((Guarded::new(tls, ticket, l), addr)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    break;
                }
            }
        });
        Self { rx, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = Guarded<TlsStream<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept loop ended (its listener failed for good): wait forever, as a
            // listener with no more connections does.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
