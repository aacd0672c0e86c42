//! The kernel syscalls, `kernel/*` (docs/syscalls.md has the table). They are ordinary
//! tools: an agent calls one only if it is granted. Agents act on their own user's processes,
//! and control (kill, pause, resume, signal) only their own descendants.

use std::sync::Arc;
use std::time::Duration;

use avix_proto::agent::SpawnRequest;
use avix_proto::{AgentName, tool::ToolName};
use serde_json::{Value, json};

use super::{
    Category, ToolContext, ToolDescriptor, ToolError, ToolHandler, arg_opt_str, arg_opt_u64,
    arg_pid, arg_str, kernel_tool,
};
use crate::pid::Pid;
use crate::policy;
use crate::process::{Process, Signal};

/// The process `pid` if the calling agent may see it ([`policy::visible`]: its user's).
pub(crate) fn visible(cx: &ToolContext, pid: Pid) -> Result<Arc<Process>, ToolError> {
    let p = cx
        .kernel
        .procs()
        .get(pid)
        .ok_or_else(|| policy::no_process(pid))?;
    policy::visible(&cx.process.caller, &p)?;
    Ok(p)
}

/// The process `pid` if the calling agent may signal it ([`policy::check_signal`]: a
/// descendant).
pub(crate) fn controllable(cx: &ToolContext, pid: Pid) -> Result<Arc<Process>, ToolError> {
    let p = visible(cx, pid)?;
    policy::check_signal(&cx.process.caller, cx.kernel.procs(), &p)?;
    Ok(p)
}

/// Spawns a child of the calling process from tool arguments.
pub(crate) async fn spawn_child(cx: &ToolContext, args: &Value) -> Result<Arc<Process>, ToolError> {
    let agent =
        AgentName::new(arg_str(args, "agent")?).map_err(|e| ToolError::invalid(e.to_string()))?;
    let goal = arg_str(args, "goal")?.to_owned();
    let tools = match args.get("tools") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| ToolError::invalid("tools must be tool names"))
                        .and_then(|s| {
                            ToolName::new(s).map_err(|e| ToolError::invalid(e.to_string()))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err(ToolError::invalid("tools must be a list of tool names")),
    };
    let req = SpawnRequest {
        agent,
        goal,
        model: arg_opt_str(args, "model")?.map(str::to_owned),
        tools,
        interactive: None,
        session: None,
        params: Default::default(),
    };
    cx.kernel
        .spawn(&cx.process.caller, req, Some(cx.process.clone()))
        .await
        .map_err(|e| ToolError::of(&e))
}

/// Waits for `p` to end (up to `timeout` seconds; 0 or none waits as long as it takes).
pub(crate) async fn wait_exit(
    cx: &ToolContext,
    p: &Arc<Process>,
    timeout: Option<u64>,
) -> Result<Value, ToolError> {
    cx.kernel.set_state(
        &cx.process,
        avix_proto::agent::ProcState::Waiting,
        Some("child"),
    );
    let result = match timeout.filter(|t| *t > 0) {
        Some(t) => tokio::time::timeout(Duration::from_secs(t), p.wait())
            .await
            .ok(),
        None => Some(p.wait().await),
    };
    cx.kernel
        .set_state(&cx.process, avix_proto::agent::ProcState::Running, None);
    match result {
        Some(e) => Ok(
            json!({"pid": p.pid, "state": e.state, "exitCode": e.code, "reason": e.reason, "output": e.output}),
        ),
        None => Ok(json!({"pid": p.pid, "state": p.state(), "timedOut": true})),
    }
}

fn summary(p: &Process) -> Value {
    let s = p.status();
    json!({"pid": s.pid, "agent": s.agent, "state": s.state, "goal": s.goal, "parent": s.parent, "user": s.owner})
}

async fn spawn(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let p = spawn_child(&cx, &args).await?;
    Ok(json!({"pid": p.pid}))
}

async fn list(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let state = arg_opt_str(&args, "state")?;
    let procs: Vec<Value> = cx
        .kernel
        .procs()
        .all()
        .into_iter()
        .filter(|p| p.user == cx.process.user)
        .filter(|p| state.is_none_or(|s| p.state().as_str() == s))
        .map(|p| summary(&p))
        .collect();
    Ok(json!({"processes": procs}))
}

async fn stat(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let p = visible(&cx, arg_pid(&args, "pid")?)?;
    serde_json::to_value(p.status()).map_err(|e| ToolError::new("EIO", e.to_string()))
}

async fn wait(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let p = visible(&cx, arg_pid(&args, "pid")?)?;
    if p.pid == cx.process.pid {
        return Err(ToolError::invalid("a process cannot wait for itself"));
    }
    wait_exit(&cx, &p, arg_opt_u64(&args, "timeoutSecs")?).await
}

fn signal_to(cx: &ToolContext, pid: Pid, sig: Signal) -> Result<Value, ToolError> {
    let p = controllable(cx, pid)?;
    let name = sig.name();
    cx.kernel.signal(&cx.process.caller, &p, sig)?;
    Ok(json!({"pid": pid, "signal": name, "delivered": true}))
}

async fn kill(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    signal_to(&cx, arg_pid(&args, "pid")?, Signal::Kill)
}

async fn pause(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    signal_to(&cx, arg_pid(&args, "pid")?, Signal::Pause)
}

async fn resume(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    signal_to(&cx, arg_pid(&args, "pid")?, Signal::Resume)
}

async fn send(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let sig = Signal::parse(arg_str(&args, "signal")?, args.get("payload"))
        .map_err(|e| ToolError::of(&e))?;
    signal_to(&cx, arg_pid(&args, "pid")?, sig)
}

async fn hil_list(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let pid = arg_opt_u64(&args, "pid")?.map(Pid::new);
    let items: Vec<Value> = cx
        .kernel
        .hil()
        .list(pid)
        .into_iter()
        .filter(|h| {
            cx.kernel
                .procs()
                .get(h.pid)
                .is_some_and(|p| p.user == cx.process.user)
        })
        .filter_map(|h| serde_json::to_value(h).ok())
        .collect();
    Ok(json!({"requests": items}))
}

async fn info(cx: ToolContext, _args: Value) -> Result<Value, ToolError> {
    serde_json::to_value(crate::system::status(&cx.kernel))
        .map_err(|e| ToolError::new("EIO", e.to_string()))
}

async fn tools_list(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let ns = arg_opt_str(&args, "namespace")?;
    let tools: Vec<Value> = cx
        .kernel
        .tools()
        .descriptors()
        .into_iter()
        .filter(|d| ns.is_none_or(|n| d.name.namespace() == n))
        .map(|d| json!({"name": d.name, "description": d.description, "state": d.state, "granted": cx.process.allows(d.name.as_str())}))
        .collect();
    Ok(json!({"tools": tools}))
}

async fn inspect(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let p = visible(&cx, arg_pid(&args, "pid")?)?;
    let g = p.grants();
    Ok(json!({"pid": p.pid, "granted": g.names(), "once": g.once}))
}

fn pid_schema() -> Value {
    json!({"type": "object", "properties": {"pid": {"type": "integer"}}, "required": ["pid"]})
}

/// The syscalls.
pub fn tools() -> Vec<(ToolDescriptor, Arc<dyn ToolHandler>)> {
    let d =
        |name: &str, desc: &str, schema: Value| kernel_tool(name, Category::Direct, desc, schema);
    vec![
        (
            d(
                "kernel/proc/spawn",
                "Spawn an agent as a child of this one; returns its pid.",
                json!({"type": "object", "properties": {"agent": {"type": "string"}, "goal": {"type": "string"}, "model": {"type": "string"}, "tools": {"type": "array", "items": {"type": "string"}}}, "required": ["agent", "goal"]}),
            ),
            Arc::new(spawn) as Arc<dyn ToolHandler>,
        ),
        (
            d(
                "kernel/proc/list",
                "List this user's processes, optionally by state.",
                json!({"type": "object", "properties": {"state": {"type": "string"}}}),
            ),
            Arc::new(list),
        ),
        (
            d(
                "kernel/proc/stat",
                "The status of a process of this user.",
                pid_schema(),
            ),
            Arc::new(stat),
        ),
        (
            d(
                "kernel/proc/wait",
                "Wait for a process to end (timeoutSecs 0 waits forever).",
                json!({"type": "object", "properties": {"pid": {"type": "integer"}, "timeoutSecs": {"type": "integer"}}, "required": ["pid"]}),
            ),
            Arc::new(wait),
        ),
        (
            d(
                "kernel/proc/kill",
                "Kill a descendant process.",
                pid_schema(),
            ),
            Arc::new(kill),
        ),
        (
            d(
                "kernel/proc/pause",
                "Pause a descendant process.",
                pid_schema(),
            ),
            Arc::new(pause),
        ),
        (
            d(
                "kernel/proc/resume",
                "Resume a descendant process.",
                pid_schema(),
            ),
            Arc::new(resume),
        ),
        (
            d(
                "kernel/signal/send",
                "Send SIGPAUSE, SIGRESUME, SIGSTOP, SIGKILL, SIGPIPE {text}, SIGSTART {goal} or SIGSAVE to a descendant.",
                json!({"type": "object", "properties": {"pid": {"type": "integer"}, "signal": {"type": "string"}, "payload": {"type": "object"}}, "required": ["pid", "signal"]}),
            ),
            Arc::new(send),
        ),
        (
            d(
                "kernel/hil/list",
                "Human-approval requests of this user's processes.",
                json!({"type": "object", "properties": {"pid": {"type": "integer"}}}),
            ),
            Arc::new(hil_list),
        ),
        (
            d(
                "kernel/cap/inspect",
                "The grants of a process of this user.",
                pid_schema(),
            ),
            Arc::new(inspect),
        ),
        (
            d(
                "kernel/sys/info",
                "The daemon's status: version, uptime, counts.",
                json!({"type": "object", "properties": {}}),
            ),
            Arc::new(info),
        ),
        (
            d(
                "kernel/sys/tools",
                "Every tool, with whether this agent holds it.",
                json!({"type": "object", "properties": {"namespace": {"type": "string"}}}),
            ),
            Arc::new(tools_list),
        ),
    ]
}
