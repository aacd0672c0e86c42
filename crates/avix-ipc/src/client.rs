//! The JSON-RPC client: a fresh connection per call, a timeout over the whole call.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use avix_proto::rpc::{Id, Request, Response, RpcError, code};
use serde_json::value::RawValue;
use tokio::net::UnixStream;

use crate::frame::{self, FrameError};

/// How a call is made.
#[derive(Debug, Clone, Copy)]
pub struct CallOptions {
    /// Connect, send and the whole answer must fit in this.
    pub timeout: Duration,
    /// Largest frame sent or accepted.
    pub max_frame: usize,
}

impl Default for CallOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            max_frame: 1024 * 1024,
        }
    }
}

static NEXT_ID: AtomicI64 = AtomicI64::new(1);

/// Serializes `params` for a call.
pub fn params<T: serde::Serialize>(p: &T) -> Result<Box<RawValue>, RpcError> {
    serde_json::value::to_raw_value(p)
        .map_err(|e| RpcError::new(code::INVALID_PARAMS, format!("cannot encode params: {e}")))
}

/// Calls `method` on the socket at `path`.
pub async fn call(
    path: &Path,
    method: &str,
    params: Option<Box<RawValue>>,
    opts: CallOptions,
) -> Result<Box<RawValue>, RpcError> {
    call_streaming(path, method, params, opts, |_| {}).await
}

/// Calls `method`, handing each notification the server streams to `on_note` before the
/// final response.
pub async fn call_streaming(
    path: &Path,
    method: &str,
    params: Option<Box<RawValue>>,
    opts: CallOptions,
    mut on_note: impl FnMut(Request) + Send,
) -> Result<Box<RawValue>, RpcError> {
    let id = Id::Num(NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let req = Request::new(id.clone(), method, params);
    let fut = async {
        let f = frame::encode(&req, opts.max_frame).map_err(|e| {
            RpcError::new(
                if matches!(e, FrameError::TooBig { .. }) {
                    code::ETOOBIG
                } else {
                    code::INVALID_PARAMS
                },
                e.to_string(),
            )
        })?;
        let mut s = UnixStream::connect(path).await.map_err(|e| {
            RpcError::new(
                code::EUNAVAIL,
                format!(
                    "cannot connect to {}: {e}; is the service running?",
                    path.display()
                ),
            )
        })?;
        let broken = |e: FrameError| {
            RpcError::new(
                code::EUNAVAIL,
                format!("the call to {} broke off: {e}", path.display()),
            )
        };
        frame::write_frame(&mut s, &f).await.map_err(broken)?;
        let mut buf = Vec::new();
        loop {
            frame::read_frame(&mut s, opts.max_frame, &mut buf)
                .await
                .map_err(broken)?;
            let v: serde_json::Value = serde_json::from_slice(&buf).map_err(|e| {
                RpcError::new(
                    code::INTERNAL,
                    format!("{} answered with invalid JSON: {e}", path.display()),
                )
            })?;
            if v.get("method").is_some() && v.get("id").is_none() {
                if let Ok(n) = serde_json::from_value::<Request>(v) {
                    on_note(n);
                }
                continue;
            }
            let resp: Response = serde_json::from_value(v).map_err(|e| {
                RpcError::new(
                    code::INTERNAL,
                    format!("{} answered with an invalid response: {e}", path.display()),
                )
            })?;
            if resp.id.as_ref().is_some_and(|i| *i != id) {
                return Err(RpcError::new(
                    code::INTERNAL,
                    format!("{} answered another request's id", path.display()),
                ));
            }
            return resp.into_result();
        }
    };
    match tokio::time::timeout(opts.timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(RpcError::new(
            code::ETIMEOUT,
            format!(
                "{method}: no answer from {} within {} ms",
                path.display(),
                opts.timeout.as_millis()
            ),
        )),
    }
}
