//! Tools served by an external process: the router forwards each call to the service's
//! socket, with the caller added as `_caller`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use avix_kernel::tools::{ToolContext, ToolError, ToolHandler};
use avix_llm::BoxFuture;
use avix_proto::rpc::{CALLER_KEY, Caller, code};
use tokio::sync::Notify;

use crate::client::{self, CallOptions};

/// Calls in flight to one service, so removal can wait for them (drain).
#[derive(Debug, Default)]
pub struct InFlight {
    n: AtomicUsize,
    idle: Notify,
    calls: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
}

/// Holds one call in flight.
#[derive(Debug)]
pub struct InFlightGuard(Arc<InFlight>);

impl InFlight {
    /// Counts a call until the guard drops.
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.n.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    /// Calls in flight now.
    pub fn count(&self) -> usize {
        self.n.load(Ordering::SeqCst)
    }

    /// Calls made and calls failed so far.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.calls.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// Counts a finished call.
    pub fn record(&self, ok: bool) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until no call is in flight, at most `limit`; false on timeout.
    pub async fn drained(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.idle.notified();
                if self.count() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.n.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Forwards calls of one tool to a service socket.
#[derive(Debug)]
pub struct RemoteTool {
    /// The service's socket.
    pub socket: PathBuf,
    /// The JSON-RPC method to call.
    pub method: String,
    /// How long a call may take.
    pub timeout: Duration,
    /// Largest frame.
    pub max_frame: usize,
    /// Calls in flight to the service.
    pub inflight: Arc<InFlight>,
}

/// The `_caller` object for a call from `cx`'s process.
pub fn caller_of(cx: &ToolContext) -> Caller {
    let p = &cx.process;
    cx.kernel.renew_token_if_due(p);
    Caller {
        pid: p.pid,
        user: p.user.to_string(),
        session: (!p.session.is_empty()).then(|| p.session.clone()),
        token: p.token().0,
    }
}

/// `args` with `_caller` set (replacing anything the model put there).
pub fn with_caller(
    args: serde_json::Value,
    caller: &Caller,
) -> Result<serde_json::Value, ToolError> {
    let mut obj = match args {
        serde_json::Value::Object(m) => m,
        serde_json::Value::Null => serde_json::Map::new(),
        _ => {
            return Err(ToolError::invalid("the arguments must be a JSON object"));
        }
    };
    obj.insert(
        CALLER_KEY.to_owned(),
        serde_json::to_value(caller).map_err(|e| ToolError::new("EIO", e.to_string()))?,
    );
    Ok(serde_json::Value::Object(obj))
}

/// A JSON-RPC error as a tool error.
pub fn tool_error(e: avix_proto::rpc::RpcError) -> ToolError {
    let c = match e.code {
        code::ETOOL => e
            .data
            .as_ref()
            .and_then(|d| d.get("code"))
            .and_then(|c| c.as_str())
            .map_or("ETOOL", |c| match c {
                "EINVAL" => "EINVAL",
                "ENOENT" => "ENOENT",
                "EPERM" => "EPERM",
                "EACCES" => "EACCES",
                _ => "ETOOL",
            }),
        other => code::name(other),
    };
    ToolError::new(c, e.message)
}

impl ToolHandler for RemoteTool {
    fn call(
        &self,
        cx: ToolContext,
        args: serde_json::Value,
    ) -> BoxFuture<'static, Result<serde_json::Value, ToolError>> {
        let socket = self.socket.clone();
        let method = self.method.clone();
        let opts = CallOptions {
            timeout: self.timeout,
            max_frame: self.max_frame,
        };
        let guard = self.inflight.enter();
        let stats = self.inflight.clone();
        Box::pin(async move {
            let _guard = guard;
            let params = with_caller(args, &caller_of(&cx))?;
            let raw = client::params(&params).map_err(tool_error)?;
            let out = client::call(&socket, &method, Some(raw), opts).await;
            stats.record(out.is_ok());
            serde_json::from_str(out.map_err(tool_error)?.get())
                .map_err(|e| ToolError::new("EIO", e.to_string()))
        })
    }
}
