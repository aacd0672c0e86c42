//! The router's socket: services register and manage their tools, any service verifies a
//! caller's capability token, and local programs holding an agent's token call tools on its
//! behalf, through the same policy check as the agent's own calls.

use std::sync::Arc;

use avix_kernel::Kernel;
use avix_kernel::router::{Check, Denial};
use avix_kernel::tools::{Category, ToolDescriptor, ToolState};
use avix_proto::rpc::{
    CALLER_KEY, Register, Request, RpcError, ToolAdd, ToolRemove, ToolSpec, Verified, Verify, code,
};
use avix_proto::tool::ToolName;
use serde_json::value::RawValue;

use crate::remote::RemoteTool;
use crate::server::{BoxFuture, Handler, Notifier, Peer};
use crate::supervisor::{Slot, Supervisor};

/// Serves `ROOT/run/router.sock` (for `bound: None`) and each service's own router socket.
#[derive(Debug, Clone)]
pub struct Router {
    kernel: Arc<Kernel>,
    sup: Arc<Supervisor>,
    /// The service a per-service socket belongs to; only it may register there.
    bound: Option<String>,
}

fn raw<T: serde::Serialize>(v: &T) -> Result<Box<RawValue>, RpcError> {
    serde_json::value::to_raw_value(v)
        .map_err(|e| RpcError::new(code::INTERNAL, format!("cannot encode the result: {e}")))
}

impl Router {
    /// A router handler.
    pub fn new(kernel: Arc<Kernel>, sup: Arc<Supervisor>, bound: Option<String>) -> Self {
        Self { kernel, sup, bound }
    }

    fn slot_for_token(&self, token: &str) -> Result<Arc<Slot>, RpcError> {
        let slot = self.sup.slot_by_token(token).ok_or_else(|| {
            RpcError::new(
                code::EAUTH,
                "unknown service token: use the AVIX_SVC_TOKEN the daemon started you with",
            )
        })?;
        if let Some(b) = &self.bound
            && *b != slot.name
        {
            return Err(RpcError::new(
                code::EAUTH,
                format!("this socket belongs to service {b}"),
            ));
        }
        Ok(slot)
    }

    fn add_tools(&self, slot: &Arc<Slot>, tools: &[ToolSpec]) -> Result<Vec<String>, RpcError> {
        // Check all first: a refused batch adds nothing.
        let mut checked = Vec::with_capacity(tools.len());
        for t in tools {
            let name = ToolName::new(&t.name)
                .map_err(|e| RpcError::new(code::INVALID_PARAMS, e.to_string()))?;
            if name.as_str().split('/').count() < 2
                || !slot.unit.spec.tools.iter().any(|n| n == name.namespace())
            {
                return Err(RpcError::new(
                    code::EPERM,
                    format!(
                        "{name}: service {} may only add tools under the namespaces its service.yaml lists in spec.tools ({}), as <namespace>/<tool>",
                        slot.name,
                        slot.unit.spec.tools.join(", ")
                    ),
                ));
            }
            if let Some(e) = self.kernel.tools().get(name.as_str())
                && e.descriptor.owner != slot.name
            {
                return Err(RpcError::new(
                    code::ECONFLICT,
                    format!("{name} belongs to {}", e.descriptor.owner),
                ));
            }
            checked.push((name, t));
        }
        let mut added = Vec::new();
        for (name, t) in checked {
            let d = ToolDescriptor {
                name: name.clone(),
                description: t.description.clone(),
                owner: slot.name.clone(),
                category: Category::Direct,
                state: ToolState::Available,
                input_schema: t
                    .input_schema
                    .clone()
                    .unwrap_or_else(|| serde_json::json!({"type": "object"})),
            };
            let h = RemoteTool {
                socket: slot.svc_socket(),
                method: t.method.clone().unwrap_or_else(|| name.to_string()),
                timeout: slot.unit.spec.call_timeout.0,
                max_frame: self.sup.max_frame(),
                inflight: slot.inflight.clone(),
            };
            self.kernel
                .tools()
                .register(self.kernel.vfs(), d, Arc::new(h));
            self.kernel.events().publish_to(
                None,
                &avix_proto::event::ToolChanged {
                    tool: name.to_string(),
                    change: avix_proto::event::ToolChange::Added,
                    service: slot.name.to_string(),
                    reason: None,
                },
            );
            added.push(name.to_string());
        }
        Ok(added)
    }

    async fn call(self, peer: Peer, req: Request) -> Result<Box<RawValue>, RpcError> {
        match req.method.as_str() {
            "ipc.register" => {
                let r: Register = req.parse_params()?;
                let slot = self.slot_for_token(&r.token)?;
                if r.name != slot.name {
                    return Err(RpcError::new(
                        code::EAUTH,
                        format!(
                            "this token belongs to service {}, not {}",
                            slot.name, r.name
                        ),
                    ));
                }
                let added = self.add_tools(&slot, &r.tools)?;
                // A registration starts afresh: tools of an earlier run it no longer offers go.
                let stale: Vec<String> = self
                    .kernel
                    .tools()
                    .owned_by(&slot.name)
                    .into_iter()
                    .map(|t| t.to_string())
                    .filter(|t| !added.contains(t))
                    .collect();
                if !stale.is_empty() {
                    self.sup
                        .remove_tools(&slot, &stale, false, Some("not offered after a restart"))
                        .await;
                }
                self.sup.registered(&slot, peer);
                raw(&serde_json::json!({
                    "registered": true,
                    "name": slot.name,
                    "socket": slot.svc_socket(),
                    "tools": added,
                }))
            }
            "ipc.tool-add" => {
                let r: ToolAdd = req.parse_params()?;
                let slot = self.slot_for_token(&r.token)?;
                let added = self.add_tools(&slot, &r.tools)?;
                raw(&serde_json::json!({"added": added}))
            }
            "ipc.tool-remove" => {
                let r: ToolRemove = req.parse_params()?;
                let slot = self.slot_for_token(&r.token)?;
                for t in &r.tools {
                    match self.kernel.tools().get(t) {
                        Some(e) if e.descriptor.owner == slot.name => {}
                        Some(e) => {
                            return Err(RpcError::new(
                                code::EPERM,
                                format!("{t} belongs to {}", e.descriptor.owner),
                            ));
                        }
                        None => {
                            return Err(RpcError::new(
                                code::ENOTFOUND,
                                format!("there is no tool {t}"),
                            ));
                        }
                    }
                }
                let drained = self
                    .sup
                    .remove_tools(&slot, &r.tools, r.drain, r.reason.as_deref())
                    .await;
                raw(&serde_json::json!({"removed": r.tools, "drained": drained}))
            }
            "ipc.verify" => {
                let r: Verify = req.parse_params()?;
                let c = self
                    .kernel
                    .verify_token(&r.token)
                    .map_err(|e| RpcError::new(code::EAUTH, e.message))?;
                raw(&Verified {
                    pid: c.pid,
                    user: c.user,
                    tools: c.tools,
                    expires_at: c.expires_at,
                })
            }
            "ipc.ping" => raw(&serde_json::json!({"pong": true})),
            m if m.starts_with("ipc.") => Err(RpcError::new(
                code::METHOD_NOT_FOUND,
                format!(
                    "unknown method {m}: the router serves ipc.register, ipc.tool-add, ipc.tool-remove, ipc.verify, ipc.ping and tool names"
                ),
            )),
            _ => self.tool_call(req).await,
        }
    }

    /// A tool call on an agent's behalf: `params._caller.token` must be that agent's
    /// capability token in force.
    async fn tool_call(self, req: Request) -> Result<Box<RawValue>, RpcError> {
        let mut args: serde_json::Value = req.parse_params()?;
        let token = args
            .get(CALLER_KEY)
            .and_then(|c| c.get("token"))
            .and_then(|t| t.as_str())
            .map(str::to_owned)
            .ok_or_else(|| {
                RpcError::new(
                    code::EAUTH,
                    format!(
                        "{}: a tool call needs params._caller.token, the capability token of the agent it is made for",
                        req.method
                    ),
                )
            })?;
        if let Some(o) = args.as_object_mut() {
            o.remove(CALLER_KEY);
        }
        let claims = self
            .kernel
            .verify_token(&token)
            .map_err(|e| RpcError::new(code::EAUTH, e.message))?;
        let p = self.kernel.procs().get(claims.pid).ok_or_else(|| {
            RpcError::new(code::EAUTH, format!("process {} has exited", claims.pid))
        })?;
        if self.kernel.tools().get(&req.method).is_none() {
            return Err(RpcError::new(
                code::METHOD_NOT_FOUND,
                format!("there is no tool {} (ls /tools lists them)", req.method),
            ));
        }
        let entry = match self.kernel.check_call(&p, &req.method) {
            Check::Allow(e) => e,
            Check::NeedsApproval(_, why) => {
                return Err(RpcError::new(
                    code::EPERM,
                    format!("{why}; only the agent itself can ask for it"),
                ));
            }
            Check::Deny { denial, reason } => {
                // A tool is a method of this socket: an unknown one is JSON-RPC's own code.
                let rc = match denial {
                    Denial::NoSuchTool => code::METHOD_NOT_FOUND,
                    d => d.kind().rpc(),
                };
                return Err(RpcError::new(rc, reason));
            }
        };
        let id = format!("ipc-{:016x}", rand::random::<u64>());
        let out = self
            .kernel
            .invoke_on_behalf(&p, &id, &entry, args)
            .await
            .map_err(|e| {
                RpcError::new(code::ETOOL, e.message.clone())
                    .with_data(serde_json::json!({"code": e.code}))
            })?;
        raw(&out)
    }
}

impl Handler for Router {
    fn handle(
        &self,
        peer: Peer,
        req: Request,
        _notes: Notifier,
    ) -> BoxFuture<'static, Result<Box<RawValue>, RpcError>> {
        Box::pin(self.clone().call(peer, req))
    }
}
