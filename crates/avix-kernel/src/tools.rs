//! The tool registry: every tool an agent can call, with its descriptor (name, description,
//! JSON Schema of the arguments, owner, category, state) and its handler. The registry is
//! also published as `/tools/<name>.yaml`, one file per tool.
//!
//! Categories: `direct` tools are services' and the kernel's syscalls and `fs/*`; `avix` tools
//! (`agent/*`, `pipe/*`, `cap/*`, `job/watch`) are the kernel acting for the calling process.
//! A process can call a tool only if it is in its grant table, which is built at spawn from
//! the grants and dropped at exit.

pub mod agent;
pub mod fs;
pub mod kernel;
pub mod llm;

use crate::pid::Pid;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use avix_llm::BoxFuture;
use avix_proto::tool::ToolName;
use avix_vfs::{SynthFile, Vfs, VfsPath};
use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Serialize};

use crate::Kernel;
use crate::process::Process;

/// The tools every process has, whatever its grants: asking for more, asking a human,
/// listing its grants, waiting for a job.
pub const ALWAYS_PRESENT: [&str; 4] = ["cap/request-tool", "cap/escalate", "cap/list", "job/watch"];

/// Category of a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Served by the kernel or a service.
    Direct,
    /// The kernel acting for the calling process.
    Avix,
}

/// Availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolState {
    /// Callable.
    Available,
    /// Callable, but its owner reports trouble.
    Degraded,
    /// Not callable now.
    Unavailable,
}

/// What the registry and `/tools` show about a tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolDescriptor {
    /// Canonical name.
    pub name: ToolName,
    /// For the model.
    pub description: String,
    /// Who serves it (`kernel` or a service name).
    pub owner: String,
    /// Category.
    pub category: Category,
    /// Availability.
    pub state: ToolState,
    /// JSON Schema of the arguments.
    pub input_schema: serde_json::Value,
}

impl avix_proto::Kind for ToolDescriptor {
    const KIND: &'static str = "ToolDescriptor";
}

/// A failed tool call, returned to the model as an error result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolError {
    /// A short code (`EPERM`, `ENOENT`, `EINVAL`, …).
    pub code: &'static str,
    /// What went wrong, for the model.
    pub message: String,
}

impl ToolError {
    /// An error.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A kernel refusal, with its kind's errno name as the code.
    pub fn of(e: &impl avix_proto::HasKind) -> Self {
        Self::new(avix_vfs::error::errno_name(e.kind()), e.to_string())
    }

    /// A bad argument.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("EINVAL", message)
    }
}

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// A call's outcome as the text the model and the journal get: a string result as is, any
/// other value as JSON, an error as `{"error": {code, message}}`.
pub fn result_text(out: Result<serde_json::Value, ToolError>) -> (bool, String) {
    match out {
        Ok(serde_json::Value::String(s)) => (true, s),
        Ok(other) => (true, other.to_string()),
        Err(e) => (
            false,
            serde_json::json!({"error": {"code": e.code, "message": e.message}}).to_string(),
        ),
    }
}

impl From<avix_proto::Error> for ToolError {
    fn from(e: avix_proto::Error) -> Self {
        Self::of(&e)
    }
}

impl From<avix_vfs::VfsError> for ToolError {
    fn from(e: avix_vfs::VfsError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

/// Everything a handler may use.
#[derive(Clone)]
pub struct ToolContext {
    /// The kernel.
    pub kernel: Arc<Kernel>,
    /// The calling process.
    pub process: Arc<Process>,
    /// The call's id (also its idempotency key).
    pub call_id: String,
}

impl std::fmt::Debug for ToolContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ToolContext(pid {}, call {})",
            self.process.pid, self.call_id
        )
    }
}

/// Serves one tool.
pub trait ToolHandler: Send + Sync + 'static {
    /// Runs the call.
    fn call(
        &self,
        cx: ToolContext,
        args: serde_json::Value,
    ) -> BoxFuture<'static, Result<serde_json::Value, ToolError>>;
}

impl<F, Fut> ToolHandler for F
where
    F: Fn(ToolContext, serde_json::Value) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<serde_json::Value, ToolError>> + Send + 'static,
{
    fn call(
        &self,
        cx: ToolContext,
        args: serde_json::Value,
    ) -> BoxFuture<'static, Result<serde_json::Value, ToolError>> {
        Box::pin(self(cx, args))
    }
}

/// A registered tool.
pub struct ToolEntry {
    /// Descriptor.
    pub descriptor: ToolDescriptor,
    /// Handler.
    pub handler: Arc<dyn ToolHandler>,
}

impl std::fmt::Debug for ToolEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolEntry")
            .field("descriptor", &self.descriptor)
            .finish_non_exhaustive()
    }
}

/// The registry.
#[derive(Default)]
pub struct ToolRegistry {
    // Read on every dispatch, written when tools come and go.
    map: RwLock<HashMap<ToolName, Arc<ToolEntry>, FxBuildHasher>>,
}

impl std::fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ToolRegistry({} tools)", self.len())
    }
}

fn tool_path(name: &ToolName) -> Option<VfsPath> {
    VfsPath::parse(&format!("/tools/{name}.yaml")).ok()
}

impl ToolRegistry {
    /// Looks a tool up by name.
    pub fn get(&self, name: &str) -> Option<Arc<ToolEntry>> {
        self.map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Adds or replaces a tool and publishes its descriptor under `/tools`.
    pub fn register(&self, vfs: &Vfs, descriptor: ToolDescriptor, handler: Arc<dyn ToolHandler>) {
        let name = descriptor.name.clone();
        let yaml = avix_proto::Document::new(descriptor.clone())
            .to_yaml()
            .unwrap_or_default();
        if let Some(p) = tool_path(&name)
            && let Err(e) = vfs.publish(&p, SynthFile::fixed(yaml))
        {
            tracing::warn!(tool = %name, error = %e, "cannot publish the tool descriptor");
        }
        let entry = Arc::new(ToolEntry {
            descriptor,
            handler,
        });
        self.map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name, entry);
    }

    /// Changes a tool's state (and its published descriptor); false if there is no such tool.
    pub fn set_state(&self, vfs: &Vfs, name: &str, state: ToolState) -> bool {
        let Some(e) = self.get(name) else {
            return false;
        };
        if e.descriptor.state == state {
            return true;
        }
        let mut d = e.descriptor.clone();
        d.state = state;
        self.register(vfs, d, e.handler.clone());
        true
    }

    /// The names of the tools `owner` serves.
    pub fn owned_by(&self, owner: &str) -> Vec<ToolName> {
        let mut v: Vec<_> = self
            .map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|e| e.descriptor.owner == owner)
            .map(|e| e.descriptor.name.clone())
            .collect();
        v.sort();
        v
    }

    /// Removes a tool and its descriptor file.
    pub fn remove(&self, vfs: &Vfs, name: &str) -> bool {
        let removed = self
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name);
        if let Some(e) = &removed
            && let Some(p) = tool_path(&e.descriptor.name)
        {
            vfs.unpublish(&p);
        }
        removed.is_some()
    }

    /// Every descriptor, sorted by name.
    pub fn descriptors(&self) -> Vec<ToolDescriptor> {
        let mut v: Vec<_> = self
            .map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .map(|e| e.descriptor.clone())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Number of tools.
    pub fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A descriptor for a kernel tool.
pub(crate) fn kernel_tool(
    name: &str,
    category: Category,
    description: &str,
    schema: serde_json::Value,
) -> ToolDescriptor {
    ToolDescriptor {
        name: ToolName::new(name).expect("built-in tool names are valid"),
        description: description.to_owned(),
        owner: "kernel".into(),
        category,
        state: ToolState::Available,
        input_schema: schema,
    }
}

/// Registers every built-in tool.
pub(crate) fn register_builtins(kernel: &Kernel) {
    for (d, h) in fs::tools()
        .into_iter()
        .chain(kernel::tools())
        .chain(agent::tools())
        .chain(llm::tools())
    {
        kernel.tools().register(kernel.vfs(), d, h);
    }
}

/// A required string argument.
pub(crate) fn arg_str<'a>(args: &'a serde_json::Value, key: &str) -> Result<&'a str, ToolError> {
    args.get(key)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| ToolError::invalid(format!("argument {key:?} (a string) is required")))
}

/// An optional string argument.
pub(crate) fn arg_opt_str<'a>(
    args: &'a serde_json::Value,
    key: &str,
) -> Result<Option<&'a str>, ToolError> {
    match args.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ToolError::invalid(format!(
            "argument {key:?} must be a string"
        ))),
    }
}

/// A required integer argument.
pub(crate) fn arg_u64(args: &serde_json::Value, key: &str) -> Result<u64, ToolError> {
    args.get(key)
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .ok_or_else(|| {
            ToolError::invalid(format!(
                "argument {key:?} (a non-negative integer) is required"
            ))
        })
}

/// An optional integer argument.
/// The PID argument `key`.
pub(crate) fn arg_pid(args: &serde_json::Value, key: &str) -> Result<Pid, ToolError> {
    arg_u64(args, key).map(Pid::new)
}

pub(crate) fn arg_opt_u64(args: &serde_json::Value, key: &str) -> Result<Option<u64>, ToolError> {
    match args.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(_) => arg_u64(args, key).map(Some),
    }
}
