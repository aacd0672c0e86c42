//! The tools through which an agent uses Avix itself: `agent/*` (children), `pipe/*`
//! (messages between agents), `cap/*` (its rights, and asking a person) and `job/watch`.

use std::sync::Arc;
use std::time::Duration;

use avix_proto::agent::{HilKind, JournalEvent, ProcState};
use avix_proto::tool::ToolName;
use serde_json::{Value, json};

use super::kernel::{controllable, spawn_child, visible, wait_exit};
use super::{
    Category, ToolContext, ToolDescriptor, ToolError, ToolHandler, arg_opt_str, arg_opt_u64,
    arg_pid, arg_str, kernel_tool,
};
use crate::hil::Scope;
use crate::process::Signal;

async fn spawn(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let child = spawn_child(&cx, &args).await?;
    if args.get("wait").and_then(Value::as_bool).unwrap_or(false) {
        return wait_exit(&cx, &child, arg_opt_u64(&args, "timeoutSecs")?).await;
    }
    let job = cx.kernel.jobs().add_agent(cx.process.pid, child.pid);
    Ok(json!({"pid": child.pid, "jobId": job, "state": child.state()}))
}

async fn wait(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let pid = arg_pid(&args, "pid")?;
    let p = visible(&cx, pid)?;
    if p.pid == cx.process.pid {
        return Err(ToolError::invalid("an agent cannot wait for itself"));
    }
    wait_exit(&cx, &p, arg_opt_u64(&args, "timeoutSecs")?).await
}

async fn kill(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let p = controllable(&cx, arg_pid(&args, "pid")?)?;
    cx.kernel.signal(&cx.process.caller, &p, Signal::Kill)?;
    Ok(json!({"pid": p.pid, "killed": true}))
}

async fn list(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let state = arg_opt_str(&args, "state")?;
    let agents: Vec<Value> = cx
        .kernel
        .procs()
        .all()
        .into_iter()
        .filter(|p| p.pid != cx.process.pid && cx.kernel.procs().is_ancestor(cx.process.pid, p.pid))
        .filter(|p| state.is_none_or(|s| s == "all" || p.state().as_str() == s))
        .map(|p| json!({"pid": p.pid, "agent": p.agent.as_str(), "state": p.state(), "goal": p.goal, "parent": p.parent}))
        .collect();
    Ok(json!({"agents": agents}))
}

async fn pipe_open(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let peer = visible(&cx, arg_pid(&args, "pid")?)?;
    if peer.pid == cx.process.pid {
        return Err(ToolError::invalid("a pipe joins two different agents"));
    }
    if peer.state().is_terminal() {
        return Err(ToolError::new(
            "ESRCH",
            format!("process {} has exited", peer.pid),
        ));
    }
    let id = cx.kernel.pipes().open(cx.process.pid, peer.pid);
    Ok(json!({"pipeId": id, "peer": peer.pid}))
}

async fn pipe_write(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let id = arg_str(&args, "pipeId")?;
    let text = arg_str(&args, "text")?.to_owned();
    let queued = cx
        .kernel
        .pipes()
        .write(id, cx.process.pid, text)
        .map_err(|e| ToolError::new(e.0, e.1))?;
    Ok(json!({"pipeId": id, "queued": queued}))
}

async fn pipe_read(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let id = arg_str(&args, "pipeId")?.to_owned();
    let timeout = arg_opt_u64(&args, "timeoutSecs")?.unwrap_or(0);
    cx.kernel
        .set_state(&cx.process, ProcState::Waiting, Some("pipe"));
    let r = cx
        .kernel
        .pipes()
        .read(
            &id,
            cx.process.pid,
            (timeout > 0).then(|| Duration::from_secs(timeout)),
        )
        .await;
    cx.kernel.set_state(&cx.process, ProcState::Running, None);
    match r.map_err(|e| ToolError::new(e.0, e.1))? {
        Some(text) => Ok(json!({"pipeId": id, "text": text})),
        None => Ok(json!({"pipeId": id, "closed": true})),
    }
}

async fn request_tool(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let tool = arg_str(&args, "tool")?;
    let name = ToolName::new(tool).map_err(|e| ToolError::invalid(e.to_string()))?;
    let reason = arg_opt_str(&args, "reason")?
        .unwrap_or("no reason given")
        .to_owned();
    if cx.process.allows(tool) {
        return Ok(json!({"granted": true, "tool": tool, "already": true}));
    }
    if cx.kernel.tools().get(tool).is_none() {
        return Ok(json!({"granted": false, "tool": tool, "reason": "there is no such tool"}));
    }
    if let Err(why) = crate::spawn::permitted(&cx.kernel, &cx.process.user, name.as_str()) {
        return Ok(json!({"granted": false, "tool": tool, "reason": why.message}));
    }
    if let Some(parent) = cx.process.parent.and_then(|p| cx.kernel.procs().get(p))
        && !parent.allows(tool)
    {
        return Ok(
            json!({"granted": false, "tool": tool, "reason": format!("the parent agent (pid {}) does not hold it", parent.pid)}),
        );
    }
    let config = cx.kernel.config().get();
    let (scope, by) = if config.kernel.safety.cap_upgrade_requires_hil {
        let answer = ask_person(
            &cx,
            crate::hil::Ask {
                kind: HilKind::CapabilityUpgrade,
                tool: Some(tool.into()),
                args: None,
                reason: Some(reason),
                options: vec![],
                call_id: None,
                reuse: None,
            },
            "the approval request vanished",
        )
        .await?;
        if !answer.approved() {
            return Ok(
                json!({"granted": false, "tool": tool, "reason": format!("{:?} by {}", answer.outcome, answer.by).to_lowercase(), "note": answer.note}),
            );
        }
        (answer.scope, answer.by)
    } else {
        (
            Scope::Session,
            "policy (capUpgradeRequiresHil: false)".to_owned(),
        )
    };
    cx.process.with_grants(|g| match scope {
        Scope::Session => {
            g.tools.insert(tool.to_owned());
        }
        Scope::Once => {
            *g.once.entry(tool.to_owned()).or_insert(0) += 1;
        }
    });
    cx.kernel.mint_token(&cx.process, true);
    let scope_name = if scope == Scope::Once {
        "once"
    } else {
        "session"
    };
    cx.process.journal.append(JournalEvent::Grant {
        tool: tool.into(),
        scope: scope_name.into(),
    });
    Ok(json!({"granted": true, "tool": tool, "scope": scope_name, "approvedBy": by}))
}

/// Asks a person and waits for the answer: the request is durable before anyone is told
/// (`HilManager::ask`), the agent shows `waiting` on `human-approval` meanwhile, and the answer
/// (journaled before it counted) is published once it is in.
async fn ask_person(
    cx: &ToolContext,
    ask: crate::hil::Ask,
    vanished: &str,
) -> Result<crate::hil::HilAnswer, ToolError> {
    let (hid, rx) = cx
        .kernel
        .hil()
        .ask(&cx.kernel, &cx.process, ask)
        .await
        .map_err(|e| ToolError::new("EIO", e.to_string()))?;
    cx.kernel
        .set_state(&cx.process, ProcState::Waiting, Some("human-approval"));
    let answer = rx.await;
    cx.process.inner().pending_hil.retain(|h| h != hid);
    cx.kernel.set_state(&cx.process, ProcState::Running, None);
    let answer = answer.map_err(|_| ToolError::new("EIO", vanished))?;
    cx.kernel.events().publish(&cx.process, &answer.event(&hid));
    Ok(answer)
}

async fn escalate(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let reason = arg_str(&args, "reason")?.to_owned();
    let options: Vec<String> = match args.get("options") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let answer = ask_person(
        &cx,
        crate::hil::Ask {
            kind: HilKind::Escalation,
            tool: None,
            args: None,
            reason: Some(reason),
            options,
            call_id: None,
            reuse: None,
        },
        "the escalation vanished",
    )
    .await?;
    Ok(json!({"outcome": answer.outcome, "by": answer.by, "guidance": answer.note}))
}

async fn cap_list(cx: ToolContext, _args: Value) -> Result<Value, ToolError> {
    let g = cx.process.grants();
    let l = cx.process.limits;
    let (used_calls, used_tokens) = {
        let i = cx.process.inner();
        (i.tool_calls, i.tokens.total())
    };
    let mut hil: Vec<&String> = cx.process.hil_required.iter().collect();
    hil.sort();
    Ok(json!({
        "granted": g.names(),
        "once": g.once,
        "alwaysPresent": super::ALWAYS_PRESENT,
        "hilRequired": hil,
        "budgets": {"maxToolCalls": l.max_tool_calls, "toolCallsUsed": used_calls, "maxTokens": l.max_tokens, "tokensUsed": used_tokens, "maxTurns": l.max_turns},
        "capabilityTokenExpiresAt": avix_proto::time::Timestamp::from_unix(cx.process.token().1).to_string(),
    }))
}

async fn job_watch(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let id = arg_str(&args, "jobId")?;
    let target = cx
        .kernel
        .jobs()
        .target(id, cx.process.pid)
        .ok_or_else(|| ToolError::new("ENOENT", format!("no job {id} of this agent")))?;
    let p =
        cx.kernel.procs().get(target).ok_or_else(|| {
            ToolError::new("ESRCH", format!("the job's process {target} is gone"))
        })?;
    let mut out = wait_exit(&cx, &p, arg_opt_u64(&args, "timeoutSecs")?).await?;
    out["jobId"] = json!(id);
    Ok(out)
}

/// The Avix tools.
pub fn tools() -> Vec<(ToolDescriptor, Arc<dyn ToolHandler>)> {
    let d = |name: &str, desc: &str, schema: Value| kernel_tool(name, Category::Avix, desc, schema);
    let pid =
        json!({"type": "object", "properties": {"pid": {"type": "integer"}}, "required": ["pid"]});
    vec![
        (
            d(
                "agent/spawn",
                "Start a sub-agent with a goal. With wait: true, returns its final answer; otherwise its pid and a jobId for job/watch.",
                json!({"type": "object", "properties": {"agent": {"type": "string"}, "goal": {"type": "string"}, "wait": {"type": "boolean"}, "timeoutSecs": {"type": "integer"}, "tools": {"type": "array", "items": {"type": "string"}}}, "required": ["agent", "goal"]}),
            ),
            Arc::new(spawn) as Arc<dyn ToolHandler>,
        ),
        (
            d(
                "agent/wait",
                "Wait for a sub-agent to finish and get its answer.",
                json!({"type": "object", "properties": {"pid": {"type": "integer"}, "timeoutSecs": {"type": "integer"}}, "required": ["pid"]}),
            ),
            Arc::new(wait),
        ),
        (
            d("agent/kill", "Kill one of your sub-agents.", pid.clone()),
            Arc::new(kill),
        ),
        (
            d(
                "agent/list",
                "List your sub-agents (state: running, waiting, paused, completed, failed, killed, or all).",
                json!({"type": "object", "properties": {"state": {"type": "string"}}}),
            ),
            Arc::new(list),
        ),
        (
            d(
                "pipe/open",
                "Open a message pipe to another agent of your user.",
                pid,
            ),
            Arc::new(pipe_open),
        ),
        (
            d(
                "pipe/write",
                "Send a text message through a pipe.",
                json!({"type": "object", "properties": {"pipeId": {"type": "string"}, "text": {"type": "string"}}, "required": ["pipeId", "text"]}),
            ),
            Arc::new(pipe_write),
        ),
        (
            d(
                "pipe/read",
                "Receive the next message from a pipe (waits; timeoutSecs 0 waits forever).",
                json!({"type": "object", "properties": {"pipeId": {"type": "string"}, "timeoutSecs": {"type": "integer"}}, "required": ["pipeId"]}),
            ),
            Arc::new(pipe_read),
        ),
        (
            d(
                "cap/request-tool",
                "Ask for a tool you do not have; a person may approve it for this run (or once).",
                json!({"type": "object", "properties": {"tool": {"type": "string"}, "reason": {"type": "string"}}, "required": ["tool", "reason"]}),
            ),
            Arc::new(request_tool),
        ),
        (
            d(
                "cap/escalate",
                "Ask a person for guidance; returns their answer.",
                json!({"type": "object", "properties": {"reason": {"type": "string"}, "options": {"type": "array", "items": {"type": "string"}}}, "required": ["reason"]}),
            ),
            Arc::new(escalate),
        ),
        (
            d(
                "cap/list",
                "Your granted tools, approvals needed and budgets.",
                json!({"type": "object", "properties": {}}),
            ),
            Arc::new(cap_list),
        ),
        (
            d(
                "job/watch",
                "Wait for a job (such as a sub-agent started without wait) to finish.",
                json!({"type": "object", "properties": {"jobId": {"type": "string"}, "timeoutSecs": {"type": "integer"}}, "required": ["jobId"]}),
            ),
            Arc::new(job_watch),
        ),
    ]
}
