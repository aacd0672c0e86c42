//! The router core: the one place a tool call is checked and dispatched. The policy is
//! evaluated here, at dispatch, for every call: the tool exists and is available, the
//! process holds it (or it is always present), its tool-call budget is not used up, and
//! whether a human must approve it. No path to a tool skips it.

use std::sync::Arc;

use avix_proto::agent::JournalEvent;
use avix_proto::event;
use avix_proto::tool::ToolName;

use crate::Kernel;
use crate::process::Process;
use crate::tools::{ToolContext, ToolEntry, ToolError, ToolState};

/// What the policy says about a call.
#[derive(Debug, Clone)]
pub enum Check {
    /// Go ahead.
    Allow(Arc<ToolEntry>),
    /// Ask a human first (the reason says why).
    NeedsApproval(Arc<ToolEntry>, String),
    /// Refused.
    Deny {
        /// Which rule refused it.
        denial: Denial,
        /// Why, for the model and the journal.
        reason: String,
    },
}

/// Why the policy refused a call. Its [`kind`](Denial::kind) is what the doors report; its
/// [`code`](Denial::code) is what the model reads in the tool result (the tool-result
/// vocabulary of docs/syscalls.md, where a spent budget is `EBUDGET` and ends the run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// The name is not a tool name.
    BadName,
    /// No tool has that name.
    NoSuchTool,
    /// The tool exists but its service is down.
    Unavailable,
    /// The agent does not hold the tool.
    NotGranted,
    /// A budget (tool calls, tokens, wall time) is spent.
    OverBudget,
}

impl Denial {
    /// The error kind.
    pub fn kind(self) -> avix_proto::ErrorKind {
        use avix_proto::ErrorKind;
        match self {
            Denial::BadName => ErrorKind::Invalid,
            Denial::NoSuchTool => ErrorKind::NotFound,
            Denial::Unavailable => ErrorKind::Unavailable,
            Denial::NotGranted => ErrorKind::Denied,
            Denial::OverBudget => ErrorKind::Limit,
        }
    }

    /// The code the model reads in the tool result.
    pub fn code(self) -> &'static str {
        match self {
            Denial::BadName => "EINVAL",
            Denial::NoSuchTool => "ENOENT",
            Denial::Unavailable => "EUNAVAIL",
            Denial::NotGranted => "EPERM",
            Denial::OverBudget => "EBUDGET",
        }
    }
}

impl Kernel {
    /// Evaluates the policy for `process` calling `tool`.
    pub fn check_call(&self, process: &Process, tool: &str) -> Check {
        if let Err(e) = ToolName::new(tool) {
            return Check::Deny {
                denial: Denial::BadName,
                reason: e.to_string(),
            };
        }
        let Some(entry) = self.tools().get(tool) else {
            return Check::Deny {
                denial: Denial::NoSuchTool,
                reason: format!("there is no tool named {tool}"),
            };
        };
        if entry.descriptor.state == ToolState::Unavailable {
            return Check::Deny {
                denial: Denial::Unavailable,
                reason: format!("{tool} is unavailable right now"),
            };
        }
        if !process.allows(tool) {
            return Check::Deny {
                denial: Denial::NotGranted,
                reason: format!(
                    "{tool} is not granted to this agent; ask for it with cap/request-tool"
                ),
            };
        }
        let (used, tokens) = {
            let i = process.inner();
            (i.tool_calls, i.tokens.total())
        };
        let l = process.limits;
        let over = if used >= l.max_tool_calls {
            Some(format!(
                "the tool-call budget (maxToolCalls {}) is used up",
                l.max_tool_calls
            ))
        } else if tokens >= l.max_tokens {
            Some(format!(
                "the token budget (maxTokens {}) is used up",
                l.max_tokens
            ))
        } else if process.started.elapsed().as_secs() >= l.max_wall_time_secs {
            Some(format!(
                "the wall-time budget (maxWallTimeSecs {}) is used up",
                l.max_wall_time_secs
            ))
        } else {
            None
        };
        if let Some(reason) = over {
            return Check::Deny {
                denial: Denial::OverBudget,
                reason,
            };
        }
        if process.hil_required.contains(tool) {
            return Check::NeedsApproval(
                entry,
                format!("{tool} needs a human's approval on every call"),
            );
        }
        Check::Allow(entry)
    }

    /// Dispatches an approved call. Checks the grant again (a `once` grant may have been used
    /// meanwhile) and consumes it.
    pub async fn invoke(
        self: &Arc<Self>,
        process: &Arc<Process>,
        call_id: &str,
        entry: &Arc<ToolEntry>,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, ToolError> {
        let name = entry.descriptor.name.as_str();
        let granted = process.with_grants(|g| {
            let ok = g.allows(name);
            if ok {
                g.consume(name);
            }
            ok
        });
        if !granted {
            return Err(ToolError::new(
                "EPERM",
                format!("{name} is not granted to this agent"),
            ));
        }
        let cx = ToolContext {
            kernel: self.clone(),
            process: process.clone(),
            call_id: call_id.to_owned(),
        };
        let scope = Kernel::change_scope(process, name, &args);
        let call = entry.handler.call(cx, args);
        match scope {
            Some(scope) => self.tracked(process, call_id, scope, call).await,
            None => call.await,
        }
    }

    /// A call made for `process` from outside its executor (a local program holding its
    /// capability token): dispatched like the agent's own, and journaled the same way
    /// (`tool_call` before it runs, `tool_result` after), counted against its budget.
    pub async fn invoke_on_behalf(
        self: &Arc<Self>,
        process: &Arc<Process>,
        call_id: &str,
        entry: &Arc<ToolEntry>,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, ToolError> {
        let name = entry.descriptor.name.to_string();
        self.call_started(process, call_id, &name, &args)
            .await
            .map_err(|e| ToolError::new("EIO", format!("cannot write the journal: {e}")))?;
        let started = std::time::Instant::now();
        let out = self.invoke(process, call_id, entry, args).await;
        self.call_ended(process, call_id, &name, out.clone(), started);
        out
    }

    /// The start of a tool call, wherever it comes from (the executor, a program holding the
    /// process's token): journaled durably before it runs (a crash never loses a call that
    /// ran), counted, then published as `agent.tool_call`.
    pub(crate) async fn call_started(
        &self,
        process: &Process,
        call_id: &str,
        tool: &str,
        args: &serde_json::Value,
    ) -> Result<(), crate::journal::JournalError> {
        process
            .journal
            .append_durable(JournalEvent::ToolCall {
                call_id: call_id.into(),
                tool: tool.into(),
                args: args.clone(),
            })
            .await?;
        process.inner().tool_calls += 1;
        self.events().publish(
            process,
            &event::ToolCall {
                call_id: call_id.into(),
                tool: tool.into(),
                args: args.clone(),
            },
        );
        Ok(())
    }

    /// The end of a tool call: its result journaled (cut to the journal's limit) and
    /// published as `agent.tool_result`. Returns whether it succeeded and its text.
    pub(crate) fn call_ended(
        &self,
        process: &Process,
        call_id: &str,
        tool: &str,
        out: Result<serde_json::Value, ToolError>,
        started: std::time::Instant,
    ) -> (bool, String) {
        let (ok, content) = crate::tools::result_text(out);
        process.journal.append(JournalEvent::ToolResult {
            call_id: call_id.into(),
            tool: tool.into(),
            ok,
            result: crate::journal::truncate_for_journal(
                &content,
                crate::journal::MAX_JOURNALED_RESULT,
            ),
            duration_ms: avix_proto::time::ms(started.elapsed()),
        });
        self.events().publish(
            process,
            &event::ToolResult {
                call_id: call_id.into(),
                tool: tool.into(),
                ok,
                result: Some(crate::journal::truncate_for_journal(&content, 2_000)),
            },
        );
        (ok, content)
    }
}
