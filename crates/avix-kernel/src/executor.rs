//! The RuntimeExecutor: the process body. It owns the conversation and runs the turn loop:
//! build the request, call the LLM (racing signals), dispatch the tool calls through the
//! router (with HIL gating), append the results, repeat until the model answers, a budget or
//! the tool-chain limit is reached, or a signal ends the run.
//!
//! Where signals land (docs/agents.md has the table):
//! - SIGKILL: at once, whatever the process is doing (its kill switch is raced everywhere);
//! - SIGPAUSE: an LLM call in flight is cancelled and retried after SIGRESUME; a tool call
//!   or a wait runs on, and its result is held until SIGRESUME;
//! - SIGSTOP: after the current step (LLM call or the turn's tool calls); a wait for a human,
//!   a child or input is abandoned;
//! - input / SIGPIPE / SIGSTART: a user message at the next turn boundary, or at once for an
//!   agent waiting for input;
//! - SIGSAVE: taken by the kernel from the journal, in any state (`snapshots.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use avix_llm::StreamSink;
use avix_proto::agent::{HilKind, JournalEvent, ProcState};
use avix_proto::llm::{
    ContentBlock, LlmRequest, LlmResponse, Message, MessageRole, RequestMeta, StopReason,
    StreamEvent, ToolSpec,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Kernel;
use crate::process::{ExitInfo, Process, ProcessEnds, Signal};
use crate::router::{Check, Denial};
use crate::tools::ALWAYS_PRESENT;

/// How long a resumed run waits for a tool of its last turn to come back (a service or MCP
/// server restarting with the daemon) before the call goes through the policy anyway.
const RESUME_TOOL_WAIT: Duration = Duration::from_secs(30);

/// `Err` ends the run with this exit.
type Flow<T> = Result<T, ExitInfo>;

/// How a run begins.
#[derive(Debug)]
pub(crate) enum Begin {
    /// A new run: the conversation carried over from a session (journaled before the goal),
    /// then the goal.
    Fresh(Vec<Message>),
    /// A run a restart interrupted: its conversation (already in the journal) and the calls of
    /// its last turn, which had no results yet.
    Resume {
        /// The conversation so far.
        messages: Vec<Message>,
        /// The last turn's calls.
        pending: Vec<PendingCall>,
    },
}

/// A call of the last turn of an interrupted run.
#[derive(Debug, Clone)]
pub(crate) struct PendingCall {
    /// Call id.
    pub id: String,
    /// Tool.
    pub name: String,
    /// Arguments.
    pub input: serde_json::Value,
    /// How far it got.
    pub outcome: PendingOutcome,
}

/// How far a call got before the restart.
#[derive(Debug, Clone)]
pub(crate) enum PendingOutcome {
    /// It finished; its result is in the journal.
    Done {
        /// Succeeded.
        ok: bool,
        /// The result text.
        content: String,
    },
    /// It was dispatched and had no result: it may have had effects, so it is not run again.
    Interrupted,
    /// It was never dispatched (waiting for approval, or not reached): it goes through the
    /// policy and, if gated, asks again — under the id of the request it was waiting on,
    /// when there was one.
    NotStarted {
        /// The unanswered approval request of the call.
        hil: Option<avix_proto::HilId>,
        /// The answer to its approval request, recorded before the restart: it stands.
        answer: Option<crate::hil::HilAnswer>,
    },
}

/// What an approval's answer means for a call: the note for the model (approved; `input`
/// replaced by arguments the approver edited), or the call's error result (not approved).
fn apply_answer(
    id: &str,
    name: &str,
    input: &mut serde_json::Value,
    answer: crate::hil::HilAnswer,
) -> Result<ContentBlock, ContentBlock> {
    let note = answer
        .note
        .as_deref()
        .map(|n| format!(": {n}"))
        .unwrap_or_default();
    if !answer.approved() {
        let msg = format!(
            "the call was not approved ({:?}) by {}{note}",
            answer.outcome, answer.by
        )
        .to_lowercase();
        return Err(error_result(id, "EDENIED", &msg));
    }
    let text = match answer.args {
        // The approver changed the arguments: the call runs with theirs, and the model is
        // told so.
        Some(edited) => {
            let text = format!(
                "[approval] {name} ({id}) was approved by {} with edited arguments {edited}{note}",
                answer.by
            );
            *input = edited;
            text
        }
        None => format!(
            "[approval] {name} ({id}) was approved by {}{note}",
            answer.by
        ),
    };
    Ok(ContentBlock::Text { text })
}

/// Starts the executor of `process` on the kernel's runtime.
pub(crate) fn start(kernel: Arc<Kernel>, process: Arc<Process>, ends: ProcessEnds, begin: Begin) {
    let rt = kernel.runtime().clone();
    rt.spawn(async move {
        let mut ex = Executor {
            kill: process.kill_token(),
            kernel,
            p: process,
            signals: ends.signals,
            messages: Vec::new(),
            begin: Some(begin),
            paused: false,
            stop_requested: false,
            inputs: Vec::new(),
            chain: 0,
        };
        // A panic anywhere in the run (a tool, a provider adapter, the loop itself) ends this
        // agent, not the daemon: it exits failed, with the reason, and stays controllable.
        let run = std::panic::AssertUnwindSafe(ex.run());
        let exit = match futures_util::FutureExt::catch_unwind(run).await {
            Ok(exit) => exit,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                tracing::error!(pid = %ex.p.pid, panic = %what, "the agent's run panicked");
                failed(format!(
                    "internal error (a bug in the daemon, please report it): {what}"
                ))
            }
        };
        ex.finish(exit).await;
    });
}

struct Executor {
    kernel: Arc<Kernel>,
    p: Arc<Process>,
    signals: mpsc::Receiver<Signal>,
    kill: CancellationToken,
    messages: Vec<Message>,
    /// How the run begins (taken when it does).
    begin: Option<Begin>,
    paused: bool,
    stop_requested: bool,
    inputs: Vec<String>,
    /// Consecutive turns that dispatched tools.
    chain: u64,
}

fn killed() -> ExitInfo {
    ExitInfo::new(ProcState::Killed, "killed")
}

fn failed(reason: impl Into<String>) -> ExitInfo {
    ExitInfo::new(ProcState::Failed, reason)
}

fn error_result(id: &str, code: &str, message: &str) -> ContentBlock {
    ContentBlock::ToolResult {
        tool_use_id: id.to_owned(),
        content: serde_json::json!({"error": {"code": code, "message": message}}).to_string(),
        is_error: true,
    }
}

impl Executor {
    fn state(&self, state: ProcState, waiting_on: Option<&str>) {
        self.kernel.set_state(&self.p, state, waiting_on);
    }

    async fn durable(&self, event: JournalEvent) -> Flow<()> {
        self.p
            .journal
            .append_durable(event)
            .await
            .map_err(|e| failed(format!("cannot write the journal: {e}")))
    }

    async fn push_message(&mut self, m: Message) -> Flow<()> {
        self.durable(JournalEvent::Message {
            role: m.role,
            content: m.content.clone(),
        })
        .await?;
        self.messages.push(m);
        Ok(())
    }

    async fn run(&mut self) -> ExitInfo {
        match self.main().await {
            Ok(exit) | Err(exit) => exit,
        }
    }

    async fn main(&mut self) -> Flow<ExitInfo> {
        self.state(ProcState::Running, None);
        match self.begin.take() {
            Some(Begin::Fresh(history)) => {
                for m in history {
                    self.push_message(m).await?;
                }
                self.push_message(Message::user_text(self.p.goal.clone()))
                    .await?;
            }
            Some(Begin::Resume { messages, pending }) => {
                if let Some(exit) = self.resume(messages, pending).await? {
                    return Ok(exit);
                }
            }
            None => {}
        }
        loop {
            self.boundary().await?;
            self.check_budgets()?;
            let started = Instant::now();
            let Some(resp) = self.call_llm().await? else {
                continue;
            };
            let duration_ms = avix_proto::time::ms(started.elapsed());
            {
                let mut i = self.p.inner();
                i.turns += 1;
                i.tokens.input_tokens += resp.usage.input_tokens;
                i.tokens.output_tokens += resp.usage.output_tokens;
                i.cost_usd += resp.cost_usd.unwrap_or(0.0);
            }
            self.p.journal.append(JournalEvent::LlmCall {
                model: resp.model.clone(),
                provider: resp.provider.clone(),
                stop_reason: resp.stop_reason,
                usage: resp.usage,
                duration_ms,
                cost_usd: resp.cost_usd,
                queued_ms: resp.queued_ms,
            });
            let answer = Message {
                role: MessageRole::Assistant,
                content: resp.content.clone(),
            };
            let text = answer.text();
            let calls: Vec<(String, String, serde_json::Value)> = answer
                .tool_calls()
                .map(|(id, name, input)| (id.to_owned(), name.to_owned(), input.clone()))
                .collect();
            self.push_message(answer).await?;
            if !text.is_empty() {
                self.kernel
                    .events()
                    .publish(&self.p, &avix_proto::event::Output { text: text.clone() });
            }
            if calls.is_empty() || resp.stop_reason != StopReason::ToolUse {
                self.chain = 0;
                if resp.stop_reason == StopReason::MaxTokens && calls.is_empty() {
                    self.inputs.push("[System]: your answer was cut at the output limit; continue where you stopped.".into());
                    continue;
                }
                if self.p.interactive && !self.stop_requested {
                    self.wait_input().await?;
                    continue;
                }
                let mut exit = ExitInfo::new(ProcState::Completed, "the agent answered");
                if self.stop_requested {
                    exit = ExitInfo::new(ProcState::Stopped, "stopped on request");
                }
                exit.output = Some(text);
                return Ok(exit);
            }
            self.chain += 1;
            if self.chain > self.p.limits.max_tool_chain_length {
                return Err(failed(format!(
                    "exceeded the tool chain limit (maxToolChainLength {}) without an answer",
                    self.p.limits.max_tool_chain_length
                )));
            }
            let mut results = Vec::new();
            let mut notes = Vec::new();
            for (id, name, input) in calls {
                let (block, note) = self.run_tool(&id, &name, input, None, None).await?;
                results.push(block);
                notes.extend(note);
            }
            results.extend(notes);
            self.push_message(Message {
                role: MessageRole::User,
                content: results,
            })
            .await?;
        }
    }

    /// Between turns: handle what arrived, block while paused, deliver input.
    async fn boundary(&mut self) -> Flow<()> {
        while let Ok(sig) = self.signals.try_recv() {
            self.on_signal(sig);
        }
        if self.kill.is_cancelled() {
            return Err(killed());
        }
        if self.stop_requested {
            return Err(ExitInfo::new(ProcState::Stopped, "stopped on request"));
        }
        if self.paused {
            self.wait_resumed().await?;
        }
        // Transparent to the model: the token never lapses mid-run.
        self.kernel.renew_token_if_due(&self.p);
        self.deliver_inputs().await
    }

    fn on_signal(&mut self, sig: Signal) {
        self.p.journal.append(JournalEvent::Signal {
            signal: sig.name().into(),
            from: "kernel".into(),
            payload: None,
        });
        match sig {
            Signal::Pause => {
                self.paused = true;
                self.state(ProcState::Paused, None);
            }
            Signal::Resume => self.paused = false,
            Signal::Stop => self.stop_requested = true,
            Signal::Kill => self.kill.cancel(),
            Signal::Input(t) | Signal::Start(t) => self.inputs.push(t),
            // The kernel captures snapshots itself (`snapshots.rs`); none reach here.
            Signal::Save => {}
        }
    }

    async fn wait_resumed(&mut self) -> Flow<()> {
        let before = (self.p.state(), self.p.inner().waiting_on.clone());
        self.state(ProcState::Paused, None);
        while self.paused {
            tokio::select! {
                biased;
                () = self.kill.cancelled() => return Err(killed()),
                sig = self.signals.recv() => match sig {
                    Some(sig) => self.on_signal(sig),
                    None => return Err(killed()),
                },
            }
            if self.stop_requested {
                return Err(ExitInfo::new(
                    ProcState::Stopped,
                    "stopped on request while paused",
                ));
            }
        }
        let (state, on) = before;
        let state = if state == ProcState::Paused {
            ProcState::Running
        } else {
            state
        };
        self.state(state, on.as_deref());
        Ok(())
    }

    async fn deliver_inputs(&mut self) -> Flow<()> {
        if self.inputs.is_empty() {
            return Ok(());
        }
        let text = std::mem::take(&mut self.inputs).join("\n\n");
        let block = ContentBlock::Text { text };
        // Providers want roles to alternate: join the last user message if there is one.
        match self.messages.last_mut() {
            Some(m) if m.role == MessageRole::User => {
                m.content.push(block.clone());
                self.durable(JournalEvent::Message {
                    role: MessageRole::User,
                    content: vec![block],
                })
                .await
            }
            _ => {
                self.push_message(Message {
                    role: MessageRole::User,
                    content: vec![block],
                })
                .await
            }
        }
    }

    async fn wait_input(&mut self) -> Flow<()> {
        self.state(ProcState::Waiting, Some("input"));
        while self.inputs.is_empty() {
            tokio::select! {
                biased;
                () = self.kill.cancelled() => return Err(killed()),
                sig = self.signals.recv() => match sig {
                    Some(sig) => self.on_signal(sig),
                    None => return Err(killed()),
                },
            }
            if self.stop_requested {
                return Err(ExitInfo::new(ProcState::Stopped, "stopped on request"));
            }
            if self.paused {
                self.wait_resumed().await?;
                self.state(ProcState::Waiting, Some("input"));
            }
        }
        self.state(ProcState::Running, None);
        Ok(())
    }

    /// Waits for `fut` while handling signals: kill ends the run, stop abandons the wait, pause
    /// holds the result until resume.
    async fn wait_for<F: std::future::Future>(&mut self, fut: F) -> Flow<F::Output> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                biased;
                () = self.kill.cancelled() => return Err(killed()),
                sig = self.signals.recv() => {
                    match sig {
                        Some(sig) => self.on_signal(sig),
                        None => return Err(killed()),
                    }
                    if self.stop_requested {
                        return Err(ExitInfo::new(ProcState::Stopped, "stopped on request while waiting"));
                    }
                }
                out = &mut fut => {
                    if self.paused {
                        self.wait_resumed().await?;
                    }
                    return Ok(out);
                }
            }
        }
    }

    /// Output tokens for the next call: the per-call cap, or what is left of the run's token
    /// budget if that is less, so a run ends at its budget rather than past it.
    fn output_cap(&self) -> u64 {
        let used = self.p.inner().tokens.total();
        let left = self.p.limits.max_tokens.saturating_sub(used).max(1);
        self.p.limits.max_output_tokens.min(left)
    }

    fn check_budgets(&self) -> Flow<()> {
        let l = self.p.limits;
        let (turns, tokens) = {
            let i = self.p.inner();
            (i.turns, i.tokens.total())
        };
        if turns >= l.max_turns {
            return Err(failed(format!(
                "reached the turn limit (maxTurns {})",
                l.max_turns
            )));
        }
        if tokens >= l.max_tokens {
            return Err(failed(format!(
                "reached the token budget (maxTokens {}, used {tokens})",
                l.max_tokens
            )));
        }
        if let Some(svc) = self.kernel.llm_service() {
            let quota = self
                .kernel
                .config()
                .get()
                .users
                .get(self.p.user.as_str())
                .map(|u| u.quota.tokens);
            let used = svc.ledger().user_tokens_last_day(self.p.user.as_str());
            if let Some(q) = quota
                && !q.allows(used.saturating_add(1))
            {
                return Err(failed(format!(
                    "user {} has used {used} LLM tokens in the last 24 hours, the quota.tokens users.yaml allows; an admin can raise it",
                    self.p.user
                )));
            }
        }
        let elapsed = self.p.started.elapsed().as_secs();
        if elapsed >= l.max_wall_time_secs {
            return Err(failed(format!(
                "reached the wall-time limit (maxWallTimeSecs {})",
                l.max_wall_time_secs
            )));
        }
        Ok(())
    }

    fn tool_specs(&self) -> Vec<ToolSpec> {
        let grants = self.p.grants();
        let mut names = grants.names();
        names.extend(ALWAYS_PRESENT.iter().map(|s| (*s).to_owned()));
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter_map(|n| self.kernel.tools().get(&n))
            .map(|e| ToolSpec {
                name: e.descriptor.name.to_string(),
                description: e.descriptor.description.clone(),
                input_schema: e.descriptor.input_schema.clone(),
            })
            .collect()
    }

    fn system_prompt(&self) -> String {
        let p = &self.p;
        let l = p.limits;
        let workspace = &p.workspace;
        format!(
            "You are {agent}, an AI agent running inside Avix as process {pid} for user {user}.\n\n{prompt}\n\n\
             Use the tools provided to reach the goal. Relative paths are in your workspace {workspace}. \
             If you need a tool you do not have, call cap/request-tool; if you need a person's judgement, \
             call cap/escalate. When the goal is reached, answer directly without calling tools.\n\n\
             Limits for this run: {turns} turns, {calls} tool calls, {tokens} tokens.",
            agent = p.agent,
            pid = p.pid,
            user = p.user,
            prompt = p.system_prompt.trim(),
            turns = l.max_turns,
            calls = l.max_tool_calls,
            tokens = l.max_tokens,
        )
    }

    /// One LLM call. `Ok(None)`: cancelled by a pause; the turn is retried after resume.
    async fn call_llm(&mut self) -> Flow<Option<LlmResponse>> {
        self.state(ProcState::Running, None);
        let req = LlmRequest {
            model: self.p.model.clone(),
            system: self.system_prompt(),
            messages: self.messages.clone(),
            tools: self.tool_specs(),
            max_tokens: u32::try_from(self.output_cap()).unwrap_or(u32::MAX),
            temperature: Some(self.p.limits.temperature),
            meta: RequestMeta {
                pid: self.p.pid,
                invocation_id: self.p.journal.id().to_owned(),
                user: self.p.user.to_string(),
                priority: self.p.limits.priority,
            },
        };
        let weak = Arc::downgrade(&self.kernel);
        let proc = self.p.clone();
        let sink: StreamSink = Arc::new(move |e: &StreamEvent| {
            let Some(k) = weak.upgrade() else {
                return;
            };
            match e {
                StreamEvent::TextDelta { text } => k.events().publish(
                    &proc,
                    &avix_proto::event::OutputChunk { text: text.clone() },
                ),
                // Limits of the provider hold the call back: status.yaml says so.
                StreamEvent::Queued { provider, position } => k.set_state(
                    &proc,
                    ProcState::Waiting,
                    Some(&format!("llm-queue ({provider}, position {position})")),
                ),
                StreamEvent::Dispatched { .. } => k.set_state(&proc, ProcState::Running, None),
                _ => {}
            }
        });
        let started = Instant::now();
        let llm = self.kernel.llm();
        // Boxed (not pinned on the stack) so a pause can drop it — closing the provider
        // connection — before waiting for the resume.
        let mut call = llm.complete(req, Some(sink));
        let deadline = tokio::time::sleep(Duration::from_secs(self.p.limits.turn_timeout_secs));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                biased;
                () = self.kill.cancelled() => {
                    self.p.journal.append(JournalEvent::LlmAbandoned { reason: "killed".into() });
                    return Err(killed());
                }
                sig = self.signals.recv() => {
                    match sig {
                        Some(sig) => self.on_signal(sig),
                        None => return Err(killed()),
                    }
                    if self.paused {
                        break;
                    }
                }
                () = &mut deadline => {
                    self.p.journal.append(JournalEvent::LlmAbandoned { reason: "timeout".into() });
                    return Err(failed(format!("the LLM call took longer than turnTimeoutSecs ({})", self.p.limits.turn_timeout_secs)));
                }
                r = &mut call => {
                    return match r {
                        Ok(resp) => {
                            tracing::debug!(pid = %self.p.pid, ms = avix_proto::time::ms(started.elapsed()), "LLM call done");
                            Ok(Some(resp))
                        }
                        Err(e) => {
                            self.p.journal.append(JournalEvent::LlmAbandoned { reason: e.to_string() });
                            Err(failed(format!("the LLM call failed: {e}")))
                        }
                    };
                }
            }
        }
        drop(call);
        self.p.journal.append(JournalEvent::LlmAbandoned {
            reason: "paused; the turn is retried after SIGRESUME".into(),
        });
        self.wait_resumed().await?;
        Ok(None)
    }

    /// Picks up a run a restart interrupted: the last turn's calls get their results (from
    /// the journal, an "interrupted" error, or by running them now if they never started), or
    /// an answer given just before the restart ends the run as it would have.
    async fn resume(
        &mut self,
        messages: Vec<Message>,
        pending: Vec<PendingCall>,
    ) -> Flow<Option<ExitInfo>> {
        self.messages = messages;
        if pending.is_empty() {
            let answered = self
                .messages
                .last()
                .filter(|m| m.role == MessageRole::Assistant)
                .map(Message::text);
            if let Some(text) = answered {
                if self.p.interactive {
                    self.wait_input().await?;
                    return Ok(None);
                }
                let mut exit = ExitInfo::new(ProcState::Completed, "the agent answered");
                exit.output = Some(text);
                return Ok(Some(exit));
            }
            return Ok(None);
        }
        let mut results = Vec::new();
        let mut notes = Vec::new();
        for c in pending {
            match c.outcome {
                PendingOutcome::Done { ok, content } => results.push(ContentBlock::ToolResult {
                    tool_use_id: c.id,
                    content,
                    is_error: !ok,
                }),
                PendingOutcome::Interrupted => results.push(error_result(
                    &c.id,
                    "EINTERRUPTED",
                    "the daemon stopped while this call ran and it was not run again: check what it did before you retry it",
                )),
                PendingOutcome::NotStarted { hil, answer } => {
                    // A service or MCP server may still be coming up after the restart.
                    self.wait_for_tool(&c.name, RESUME_TOOL_WAIT).await?;
                    let (block, note) = self
                        .run_tool(&c.id, &c.name, c.input, hil, answer)
                        .await?;
                    results.push(block);
                    notes.extend(note);
                }
            }
        }
        results.extend(notes);
        self.push_message(Message {
            role: MessageRole::User,
            content: results,
        })
        .await?;
        Ok(None)
    }

    /// Waits (at most `limit`, killable) until `name` is registered and not unavailable.
    async fn wait_for_tool(&mut self, name: &str, limit: Duration) -> Flow<()> {
        let deadline = Instant::now() + limit;
        loop {
            let ready = self
                .kernel
                .tools()
                .get(name)
                .is_some_and(|e| e.descriptor.state != crate::tools::ToolState::Unavailable);
            if ready || Instant::now() >= deadline {
                return Ok(());
            }
            tokio::select! {
                () = self.kill.cancelled() => return Err(killed()),
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// One tool call: policy, approval, dispatch. Returns the result block and maybe a note.
    async fn run_tool(
        &mut self,
        id: &str,
        name: &str,
        mut input: serde_json::Value,
        reuse_hil: Option<avix_proto::HilId>,
        recorded: Option<crate::hil::HilAnswer>,
    ) -> Flow<(ContentBlock, Option<ContentBlock>)> {
        let entry = match self.kernel.check_call(&self.p, name) {
            Check::Deny { denial, reason } => {
                self.p.journal.append(JournalEvent::PolicyDenied {
                    call_id: id.into(),
                    tool: name.into(),
                    reason: reason.clone(),
                });
                self.kernel.events().publish(
                    &self.p,
                    &avix_proto::event::ToolDenied {
                        call_id: id.into(),
                        tool: name.into(),
                        reason: reason.clone(),
                    },
                );
                if denial == Denial::OverBudget {
                    return Err(failed(reason));
                }
                return Ok((error_result(id, denial.code(), &reason), None));
            }
            Check::Allow(entry) => (entry, None),
            Check::NeedsApproval(entry, reason) => {
                let answer = match recorded {
                    // Answered before a restart: the recorded answer stands; nobody is asked
                    // again.
                    Some(answer) => answer,
                    None => {
                        let kernel = self.kernel.clone();
                        let (hid, rx) = kernel
                            .hil()
                            .ask(
                                &kernel,
                                &self.p,
                                crate::hil::Ask {
                                    kind: HilKind::ToolCallApproval,
                                    tool: Some(name.into()),
                                    args: Some(input.clone()),
                                    reason: Some(reason),
                                    options: vec![],
                                    call_id: Some(id.into()),
                                    reuse: reuse_hil,
                                },
                            )
                            .await
                            .map_err(|e| failed(format!("cannot write the journal: {e}")))?;
                        self.state(ProcState::Waiting, Some("human-approval"));
                        let answer = self.wait_for(rx).await;
                        self.p.inner().pending_hil.retain(|h| h != hid);
                        let answer = answer?;
                        self.state(ProcState::Running, None);
                        let Ok(answer) = answer else {
                            return Err(failed("the HIL request vanished"));
                        };
                        // The answer is in the journal already (recorded before it counted).
                        self.kernel.events().publish(&self.p, &answer.event(&hid));
                        answer
                    }
                };
                match apply_answer(id, name, &mut input, answer) {
                    Ok(note) => (entry, Some(note)),
                    Err(refused) => return Ok((refused, None)),
                }
            }
        };
        let (entry, note) = entry;
        self.kernel
            .call_started(&self.p, id, name, &input)
            .await
            .map_err(|e| failed(format!("cannot write the journal: {e}")))?;
        self.p.inner().current_tool = Some(name.to_owned());
        let started = Instant::now();
        let kernel = self.kernel.clone();
        let p = self.p.clone();
        let out = self.wait_for(kernel.invoke(&p, id, &entry, input)).await;
        self.p.inner().current_tool = None;
        let (ok, content) = self.kernel.call_ended(&self.p, id, name, out?, started);
        Ok((
            ContentBlock::ToolResult {
                tool_use_id: id.into(),
                content,
                is_error: !ok,
            },
            note,
        ))
    }

    async fn finish(&mut self, exit: ExitInfo) {
        self.kernel.hil().cancel_for(self.p.pid);
        if let Err(e) = self
            .p
            .journal
            .append_durable(JournalEvent::Exit {
                state: exit.state,
                code: exit.code,
                reason: exit.reason.clone(),
            })
            .await
        {
            tracing::error!(pid = %self.p.pid, error = %e, "cannot journal the exit");
        }
        // The record goes to disk before anyone waiting for the exit is woken, so history
        // read right after `wait` includes this run.
        let mut record = self.kernel.record_of(&self.p);
        record.state = exit.state;
        record.exit_code = Some(exit.code);
        record.exit_reason = Some(exit.reason.clone());
        record.ended_at = Some(avix_proto::time::Timestamp::now());
        if let Err(e) = self.p.journal.write_record(&record, true).await {
            tracing::error!(pid = %self.p.pid, error = %e, "cannot write the invocation record");
        }
        self.p.set_exit(exit.clone());
        self.kernel.events().publish(
            &self.p,
            &avix_proto::event::Exit {
                state: exit.state,
                exit_code: exit.code,
                reason: exit.reason.clone(),
            },
        );
        tracing::info!(pid = %self.p.pid, state = %exit.state, reason = %exit.reason, "exited");
        self.kernel.schedule_reap(self.p.pid);
    }
}
