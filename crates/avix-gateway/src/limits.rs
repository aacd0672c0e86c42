//! Connection limits of the ATP listener: nobody, credential or not, can hold the daemon's
//! descriptors or memory with sockets that do nothing.
//!
//! - A connection must send a whole request (or finish its TLS handshake and then send one)
//!   within `gateway.requestTimeout`: until the server has answered something, it is
//!   *pending*.
//! - At most `gateway.maxPending` connections are pending at once. When that many are, the
//!   one pending longest is closed to admit the new one: a flood of idle sockets churns
//!   itself and a real client, which sends its request at once, gets through.
//! - A remote address may hold `gateway.maxPendingPerPeer` pending connections (loopback is
//!   shared by every local client, so it relies on the eviction above).
//! - At most `gateway.maxConnections` connections are open at all (and never more than the
//!   descriptors the process may open, less a reserve for the kernel, the VFS and the mount).
//! - A connection with no traffic either way for `gateway.idleTimeout` is closed.
//!
//! Accept errors (EMFILE: out of descriptors) are logged as what they are, and answered by
//! closing the oldest pending connection.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Descriptors kept for everything but ATP connections: journals, the mount, services,
/// sockets of the IPC doors.
pub const FD_RESERVE: u64 = 1024;

/// The limits in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Pending connections at once.
    pub max_pending: usize,
    /// Pending connections per remote address.
    pub max_pending_per_peer: usize,
    /// Time to the first whole request.
    pub request_timeout: Duration,
    /// Longest silence either way.
    pub idle_timeout: Duration,
}

impl Limits {
    /// The limits of `cfg`, capped by the descriptors this process may open.
    pub fn from_config(cfg: &avix_proto::config::kernel::Gateway) -> Self {
        let fds = nofile().saturating_sub(FD_RESERVE).max(64);
        let max_connections =
            usize::try_from(u64::from(cfg.max_connections).min(fds)).unwrap_or(usize::MAX);
        Self {
            max_connections,
            max_pending: (cfg.max_pending as usize).clamp(1, max_connections),
            max_pending_per_peer: (cfg.max_pending_per_peer as usize).max(1),
            request_timeout: cfg.request_timeout.get().max(Duration::from_millis(100)),
            idle_timeout: cfg.idle_timeout.get().max(Duration::from_secs(40)),
        }
    }
}

/// The soft descriptor limit of this process.
pub fn nofile() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft)
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    /// Pending connections by admission order: the first is the oldest.
    pending: BTreeMap<u64, (IpAddr, CancellationToken)>,
    pending_per_peer: HashMap<IpAddr, usize>,
    open: usize,
    /// Connections refused or closed to make room, for the log.
    turned_away: u64,
}

/// Who may connect: shared by the accept loop and every connection.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    // Short critical sections, never across an await.
    state: Mutex<State>,
}

impl Admission {
    /// An admission with `limits`.
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Open connections.
    pub fn open(&self) -> usize {
        self.lock().open
    }

    /// Pending connections.
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// Closes the oldest pending connection; true if there was one.
    pub fn evict_oldest(&self) -> bool {
        evict_oldest(&mut self.lock())
    }

    /// Admits a connection from `peer`, or says no (the caller closes it).
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Ticket> {
        let l = self.limits;
        let mut st = self.lock();
        let remote = !peer.is_loopback();
        let mine = st.pending_per_peer.get(&peer).copied().unwrap_or(0);
        if st.open >= l.max_connections && st.pending.is_empty()
            || remote && mine >= l.max_pending_per_peer
        {
            st.turned_away += 1;
            if st.turned_away.is_power_of_two() {
                tracing::warn!(
                    %peer,
                    open = st.open,
                    turned_away = st.turned_away,
                    "ATP connection refused: the connection limit is reached (kernel.yaml gateway.maxConnections, gateway.maxPendingPerPeer)"
                );
            }
            return None;
        }
        // Full: the oldest pending connection makes room.
        while (st.open >= l.max_connections || st.pending.len() >= l.max_pending)
            && evict_oldest(&mut st)
        {}
        st.next += 1;
        let id = st.next;
        let kill = CancellationToken::new();
        st.pending.insert(id, (peer, kill.clone()));
        *st.pending_per_peer.entry(peer).or_default() += 1;
        st.open += 1;
        drop(st);
        Some(Ticket {
            adm: self.clone(),
            id,
            peer,
            kill,
            pending: true,
        })
    }

    fn leave_pending(&self, id: u64, peer: IpAddr) {
        let mut st = self.lock();
        if st.pending.remove(&id).is_some()
            && let Some(n) = st.pending_per_peer.get_mut(&peer)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.pending_per_peer.remove(&peer);
            }
        }
    }
}

/// Closes the oldest pending connection: it leaves the counts at once (its task ends it at
/// its next poll). Cancelling under the lock keeps a concurrent drop of its ticket from
/// counting it twice.
fn evict_oldest(st: &mut State) -> bool {
    let Some((_, (peer, kill))) = st.pending.pop_first() else {
        return false;
    };
    if let Some(n) = st.pending_per_peer.get_mut(&peer) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            st.pending_per_peer.remove(&peer);
        }
    }
    st.open = st.open.saturating_sub(1);
    st.turned_away += 1;
    kill.cancel();
    true
}

/// One admitted connection; dropping it gives its place back.
#[derive(Debug)]
pub struct Ticket {
    adm: Arc<Admission>,
    id: u64,
    peer: IpAddr,
    kill: CancellationToken,
    pending: bool,
}

impl Ticket {
    /// Resolves when the connection was closed to make room.
    pub fn evicted(&self) -> WaitForCancellationFutureOwned {
        self.kill.clone().cancelled_owned()
    }

    /// The connection answered something: it is no longer pending.
    fn answered(&mut self) {
        if self.pending {
            self.pending = false;
            self.adm.leave_pending(self.id, self.peer);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.pending {
            self.adm.leave_pending(self.id, self.peer);
        }
        let mut st = self.adm.lock();
        // An evicted connection left the counts when it was evicted.
        if !self.kill.is_cancelled() {
            st.open = st.open.saturating_sub(1);
        }
    }
}

/// Accepts the next connection `adm` admits. Refused ones are closed at once; accept errors
/// are logged and, when descriptors ran out, answered by closing the oldest pending
/// connection.
pub async fn accept(
    listener: &TcpListener,
    adm: &Arc<Admission>,
) -> (TcpStream, SocketAddr, Ticket) {
    let mut failures = 0u64;
    loop {
        match listener.accept().await {
            Ok((tcp, addr)) => {
                if let Some(t) = adm.admit(addr.ip()) {
                    return (tcp, addr, t);
                }
            }
            Err(e) => {
                failures += 1;
                let out_of_fds = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                if failures.is_power_of_two() {
                    if out_of_fds {
                        tracing::error!(
                            open = adm.open(),
                            limit = nofile(),
                            "ATP accept failed: out of file descriptors (EMFILE); closing the oldest pending connection"
                        );
                    } else {
                        tracing::warn!(error = %e, "ATP accept failed");
                    }
                }
                if !(out_of_fds && adm.evict_oldest()) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// A connection under the limits: closed when evicted, when it sends no whole request in
/// time, or after a silence.
pub struct Guarded<Io> {
    io: Io,
    ticket: Ticket,
    evicted: Pin<Box<WaitForCancellationFutureOwned>>,
    timer: Pin<Box<tokio::time::Sleep>>,
    last: Instant,
    idle: Duration,
}

impl<Io> std::fmt::Debug for Guarded<Io> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

impl<Io> Guarded<Io> {
    /// Wraps `io` admitted with `ticket`: it has `limits.request_timeout` from now to be
    /// answered.
    pub fn new(io: Io, ticket: Ticket, limits: Limits) -> Self {
        let now = Instant::now();
        Self {
            evicted: Box::pin(ticket.evicted()),
            io,
            ticket,
            timer: Box::pin(tokio::time::sleep(limits.request_timeout)),
            last: now,
            idle: limits.idle_timeout,
        }
    }

    /// Ends the connection (with an error for the reader) if it was evicted or timed out.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.evicted.as_mut().poll(cx).is_ready() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to make room for another connection",
            ));
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            if self.ticket.pending {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no whole request in time",
                ));
            }
            let due = self.last + self.idle;
            if tokio::time::Instant::from_std(due) <= tokio::time::Instant::now() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "idle"));
            }
            self.timer
                .as_mut()
                .reset(tokio::time::Instant::from_std(due));
        }
        Ok(())
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for Guarded<Io> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        me.check(cx)?;
        let before = buf.filled().len();
        ready!(Pin::new(&mut me.io).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            me.last = Instant::now();
        }
        Poll::Ready(Ok(()))
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Guarded<Io> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        me.check(cx)?;
        let n = ready!(Pin::new(&mut me.io).poll_write(cx, data))?;
        if n > 0 {
            me.last = Instant::now();
            if me.ticket.pending {
                me.ticket.answered();
                // From now on only silence ends it.
                me.timer
                    .as_mut()
                    .reset(tokio::time::Instant::from_std(me.last + me.idle));
            }
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The plain-TCP listener under the limits.
#[derive(Debug)]
pub struct LimitedListener {
    tcp: TcpListener,
    adm: Arc<Admission>,
}

impl LimitedListener {
    /// `tcp` under `adm`.
    pub fn new(tcp: TcpListener, adm: Arc<Admission>) -> Self {
        Self { tcp, adm }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = Guarded<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, addr, ticket) = accept(&self.tcp, &self.adm).await;
        // Events and replies are small: never wait for Nagle.
        let _ = tcp.set_nodelay(true);
        (Guarded::new(tcp, ticket, self.adm.limits()), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, pending: usize, per_peer: usize) -> Limits {
        Limits {
            max_connections: max,
            max_pending: pending,
            max_pending_per_peer: per_peer,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
        }
    }

    #[test]
    fn the_oldest_pending_connection_makes_room() {
        let adm = Admission::new(limits(100, 2, 10));
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let a = adm.admit(lo).unwrap();
        let b = adm.admit(lo).unwrap();
        let c = adm.admit(lo).unwrap();
        assert!(a.kill.is_cancelled(), "the oldest was evicted");
        assert!(!b.kill.is_cancelled() && !c.kill.is_cancelled());
        assert_eq!(adm.pending(), 2);
        assert_eq!(adm.open(), 2);
        drop(a);
        assert_eq!(
            adm.open(),
            2,
            "dropping the evicted one counts nothing twice"
        );
        drop(b);
        assert_eq!(adm.open(), 1);
    }

    #[test]
    fn a_remote_address_is_capped_and_answered_connections_are_not_evicted() {
        let adm = Admission::new(limits(3, 3, 2));
        let far: IpAddr = "192.0.2.7".parse().unwrap();
        let mut a = adm.admit(far).unwrap();
        let _b = adm.admit(far).unwrap();
        assert!(adm.admit(far).is_none(), "per-peer cap");
        a.answered();
        let _c = adm.admit(far).unwrap();
        // Three open, one answered: a fourth evicts a pending one, never the answered one.
        let _d = adm.admit("127.0.0.1".parse().unwrap()).unwrap();
        assert!(!a.kill.is_cancelled());
        assert_eq!(adm.open(), 3, "the evicted one no longer counts");
        assert_eq!(adm.pending(), 2);
    }
}
