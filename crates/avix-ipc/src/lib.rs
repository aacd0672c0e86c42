//! Avix's internal IPC and the services that use it.
//!
//! - [`frame`]: length-prefixed JSON frames.
//! - [`server`] and [`client`]: JSON-RPC 2.0 over Unix sockets, one call per connection.
//! - [`router`]: the router's socket (registration, token checks, tool calls by token).
//! - [`remote`]: tools served by external processes.
//! - [`supervisor`]: installed services as supervised host processes.
//! - [`children`]: host processes that must not outlive the daemon.
//! - [`exec`]: exec.svc, code in a bubblewrap sandbox.
//! - [`mcp`]: the MCP bridge (rmcp).
//!
//! The wire types live in `avix_proto::rpc`; `docs/ipc.md` describes the protocol.

pub mod children;
pub mod client;
pub mod exec;
pub mod frame;
pub mod mcp;
pub mod remote;
pub mod router;
pub mod server;
pub mod supervisor;

pub use client::{CallOptions, call, call_streaming};
pub use server::{Handler, Notifier, Peer, ServerConfig};

use std::sync::Arc;

use avix_kernel::Kernel;
use tokio_util::sync::CancellationToken;

/// The daemon's IPC side, running.
#[derive(Debug)]
pub struct Ipc {
    /// The service supervisor.
    pub supervisor: Arc<supervisor::Supervisor>,
    /// The MCP bridge.
    pub mcp: Arc<mcp::McpBridge>,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl Ipc {
    /// Binds `ROOT/run/router.sock`, loads and starts the installed services and attaches
    /// the supervisor to the kernel.
    pub fn start(kernel: &Arc<Kernel>) -> std::io::Result<Self> {
        // Services and MCP servers a crashed daemon left running go before new ones start.
        children::Leftovers::new(&kernel.layout().state()).kill_all();
        let exec = exec::ExecService::new(kernel.clone());
        exec.register();
        let sup = supervisor::Supervisor::new(kernel.clone());
        kernel.set_services(sup.clone());
        let path = kernel.layout().run().join("router.sock");
        let listener = server::bind(&path)?;
        let cfg = ServerConfig::same_user(sup.max_frame(), sup.read_timeout());
        let stop = CancellationToken::new();
        let handler = Arc::new(router::Router::new(kernel.clone(), sup.clone(), None));
        let server = tokio::spawn(server::serve(listener, handler, cfg, stop.clone()));
        sup.boot();
        let mcp = mcp::McpBridge::start(kernel.clone(), stop.clone());
        sup.set_builtins(supervisor::Builtins {
            exec,
            mcp: mcp.clone(),
        });
        Ok(Self {
            supervisor: sup,
            mcp,
            stop,
            server,
        })
    }

    /// Stops every service and the router socket.
    pub async fn shutdown(self) {
        self.supervisor.shutdown().await;
        self.stop.cancel();
        self.mcp.wait_stopped().await;
        let _ = self.server.await;
    }
}
