//! `avix tui`: a terminal dashboard over ATP — agents as they run, the catalog, approvals,
//! sessions, services and the log, with keys to spawn, attach, send input, pause, resume,
//! stop, kill, approve and deny. It logs in like `avix client` (a kept token first), follows
//! the daemon's events, and reconnects after the daemon restarts, replaying what it missed.
//!
//! [`app`] is the state and what keys and events do to it (no I/O, tested alone); [`view`]
//! draws it; this module is the loop that connects them to the terminal and the daemon.

pub(crate) mod app;
pub(crate) mod view;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use avix_client::Client;
use avix_client::config::Config;
use avix_client::tokens::Tokens;
use avix_proto::agent::{CatalogEntry, HilRequest, ProcessStatus, SessionRecord, SpawnRequest};
use avix_proto::atp::{SpawnReply, WhoAmI};
use avix_proto::op::{
    HilAnswerArgs, HilListArgs, ListArgs, LogsArgs, NoArgs, Op, SignalArgs, UserArgs,
};
use avix_proto::service::ServiceStatus;
use ratatui::crossterm::event::{self, Event, KeyEventKind};
use tokio::sync::{broadcast, mpsc};

use app::{Action, App, Mode, Tab};

/// What the TUI subscribes to: everything, and the log lines (which `*` leaves out).
const EVENTS: [&str; 2] = ["*", "sys.log"];

/// Runs the TUI until the user quits; returns the exit status.
pub(crate) fn run(config: Config, tokens: Option<Tokens>) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        // Log in before the terminal is taken over, so errors print normally.
        let client = Client::connect_kept(&config, tokens.as_ref()).await?;
        let me: WhoAmI = client.run_as(&Op::Whoami(NoArgs {})).await?;
        let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let mut app = App::new(format!("{}@{}", me.user, config.server), color);
        let mut terminal = ratatui::init();
        let r = Session {
            config,
            tokens,
            client,
        }
        .run(&mut terminal, &mut app)
        .await;
        ratatui::restore();
        r.map(|()| 0)
    })
}

struct Session {
    config: Config,
    tokens: Option<Tokens>,
    client: Client,
}

impl Session {
    async fn run(
        &mut self,
        terminal: &mut ratatui::DefaultTerminal,
        app: &mut App,
    ) -> anyhow::Result<()> {
        let (ktx, mut keys) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            while let Ok(e) = event::read() {
                if ktx.send(e).is_err() {
                    break;
                }
            }
        });
        let mut events = self.client.events();
        self.client.subscribe(&EVENTS, None).await?;
        let mut dirty: HashSet<Tab> = Tab::ALL.into_iter().collect();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut last_poll = Instant::now();
        let mut retry_at = Instant::now();
        loop {
            if !dirty.is_empty() && app.connected {
                for tab in std::mem::take(&mut dirty) {
                    self.refresh(app, tab).await;
                }
            }
            terminal.draw(|f| view::draw(f, app))?;
            if app.quit {
                return Ok(());
            }
            tokio::select! {
                k = keys.recv() => match k {
                    Some(Event::Key(k)) if k.kind != KeyEventKind::Release => {
                        if matches!(app.mode, Mode::Normal | Mode::Attach(_)) {
                            app.message.clear();
                        }
                        for a in app.key(k) {
                            self.perform(app, a, &mut dirty).await;
                        }
                    }
                    Some(_) => {} // a resize: drawn again at the top of the loop
                    None => return Ok(()),
                },
                e = events.recv() => match e {
                    Ok(e) => {
                        for a in app.event(&e) {
                            if let Action::Refresh(t) = a {
                                dirty.insert(t);
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => dirty.extend(Tab::ALL),
                    Err(broadcast::error::RecvError::Closed) => app.connected = false,
                },
                _ = tick.tick() => {
                    if self.client.is_closed() {
                        app.connected = false;
                    }
                    if !app.connected && Instant::now() >= retry_at {
                        retry_at = Instant::now() + Duration::from_secs(1);
                        if let Some(rx) = self.reconnect(app).await {
                            events = rx;
                            dirty.extend(Tab::ALL);
                        }
                    } else if app.connected && last_poll.elapsed() >= Duration::from_secs(5) {
                        // Elapsed times and states the events do not carry.
                        last_poll = Instant::now();
                        dirty.insert(app.tab);
                        dirty.insert(Tab::Agents);
                    }
                }
            }
        }
    }

    /// A new connection after the old one closed, subscribed from where the old one was (the
    /// daemon replays what was missed).
    async fn reconnect(
        &mut self,
        app: &mut App,
    ) -> Option<broadcast::Receiver<avix_proto::atp::EventFrame>> {
        let since = self.client.last_seq();
        let c = Client::connect_kept(&self.config, self.tokens.as_ref())
            .await
            .ok()?;
        let rx = c.events();
        let since = (since > 0).then_some(since);
        if let Err(e) = c.subscribe(&EVENTS, since).await {
            app.message = format!("reconnected, but the subscription failed: {e}");
        } else {
            app.message = "reconnected".into();
        }
        self.client = c;
        app.connected = true;
        Some(rx)
    }

    /// Fetches one tab's rows.
    async fn refresh(&self, app: &mut App, tab: Tab) {
        let c = &self.client;
        let r: Result<(), avix_client::ClientError> = async {
            match tab {
                Tab::Agents => {
                    app.agents = c
                        .run_as::<Vec<ProcessStatus>>(&Op::List(ListArgs::default()))
                        .await?;
                }
                Tab::Catalog => {
                    app.catalog = c
                        .run_as::<Vec<CatalogEntry>>(&Op::Catalog(UserArgs { user: None }))
                        .await?;
                }
                Tab::Approvals => {
                    app.approvals = c
                        .run_as::<Vec<HilRequest>>(&Op::HilList(HilListArgs { pid: None }))
                        .await?;
                }
                Tab::Sessions => {
                    app.sessions = c
                        .run_as::<Vec<SessionRecord>>(&Op::SessionList(UserArgs { user: None }))
                        .await?;
                }
                Tab::Services => {
                    app.services = c
                        .run_as::<Vec<ServiceStatus>>(&Op::ServiceList(NoArgs {}))
                        .await?;
                }
                Tab::History => {
                    app.history = c
                        .run_as::<Vec<avix_proto::agent::InvocationRecord>>(&Op::History(
                            avix_proto::op::HistoryArgs {
                                agent: None,
                                user: None,
                                limit: Some(500),
                            },
                        ))
                        .await?;
                }
                Tab::Logs => {
                    let v = c.run(&Op::Logs(LogsArgs { lines: Some(500) })).await?;
                    app.logs = v["lines"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|l| l.as_str().map(str::to_owned))
                        .collect();
                }
            }
            Ok(())
        }
        .await;
        match r {
            Ok(()) => app.clamp(),
            Err(avix_client::ClientError::Closed(_)) => app.connected = false,
            // The log is for operators: say so on that tab only.
            Err(e) if tab == Tab::Logs => {
                app.logs = [format!("({e})")].into();
            }
            Err(e) => app.message = format!("{}: {e}", tab.title()),
        }
    }

    async fn perform(&self, app: &mut App, a: Action, dirty: &mut HashSet<Tab>) {
        let c = &self.client;
        let r: anyhow::Result<String> = async {
            Ok(match a {
                Action::Quit => String::new(),
                Action::Refresh(t) => {
                    dirty.insert(t);
                    String::new()
                }
                Action::Seed(pid) => {
                    if let Some(inv) = app
                        .agents
                        .iter()
                        .find(|p| p.pid == pid)
                        .map(|p| p.invocation.clone())
                    {
                        let v = c
                            .run(&Op::Show(avix_proto::op::ShowArgs {
                                pid: None,
                                invocation: Some(inv),
                            }))
                            .await?;
                        let conv: Vec<avix_proto::llm::Message> =
                            serde_json::from_value(v["conversation"].clone())?;
                        app.seed(pid, &conv);
                    }
                    String::new()
                }
                Action::Signal(pid, sig, payload) => {
                    c.run(&Op::Signal(SignalArgs {
                        pid,
                        signal: sig.into(),
                        payload,
                    }))
                    .await?;
                    dirty.insert(Tab::Agents);
                    format!("{sig} sent to {pid}")
                }
                Action::Spawn {
                    agent,
                    goal,
                    model,
                    interactive,
                } => {
                    let r: SpawnReply = c
                        .run_as(&Op::Spawn(SpawnRequest {
                            agent: avix_proto::AgentName::new(&agent)?,
                            goal,
                            model,
                            tools: None,
                            interactive: interactive.then_some(true),
                            session: None,
                            params: Default::default(),
                        }))
                        .await?;
                    dirty.insert(Tab::Agents);
                    app.tab = Tab::Agents;
                    app.mode = Mode::Attach(r.pid);
                    format!("spawned {agent} as {}", r.pid)
                }
                Action::Answer(id, approve) => {
                    let args = HilAnswerArgs {
                        id: id.clone(),
                        note: None,
                        scope: approve.then(|| "once".to_owned()),
                        args: None,
                    };
                    let op = if approve {
                        Op::HilApprove(args)
                    } else {
                        Op::HilDeny(args)
                    };
                    c.run(&op).await?;
                    dirty.insert(Tab::Approvals);
                    dirty.insert(Tab::Agents);
                    format!("{} {id}", if approve { "approved" } else { "denied" })
                }
            })
        }
        .await;
        match r {
            Ok(m) if !m.is_empty() => app.message = m,
            Ok(_) => {}
            Err(e) => app.message = format!("{e}"),
        }
    }
}

/// What `cargo bench -p avix-cli --bench tui` measures: the cost of one redraw of a 200×50
/// screen (into ratatui's `TestBackend`, so the terminal's own time is left out) with
/// `agents` agents listed, while `streaming` of them each receive an output chunk per frame;
/// `frames` frames alternate between the agent list and one streaming agent's output.
/// Returns the time per frame (events applied and screen drawn).
#[doc(hidden)]
pub fn redraw_cost(agents: usize, streaming: usize, frames: usize) -> Duration {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    let list: Vec<serde_json::Value> = (0..agents)
        .map(|i| {
            serde_json::json!({"pid": 100 + i, "agent": "assistant", "version": "1.0.0",
                "state": if i % 3 == 0 { "running" } else { "waiting" }, "goal": format!("goal number {i} for the benchmark"),
                "owner": "alice", "invocation": format!("inv-{i}"), "model": "scripted",
                "turns": 3, "toolCalls": 2, "tokens": {"inputTokens": 100, "outputTokens": 50},
                "startedAt": "2026-11-29T10:00:00Z", "updatedAt": "2026-11-29T10:00:01Z"})
        })
        .collect();
    let mut app = App::new("alice@http://127.0.0.1:9142".into(), true);
    app.agents = serde_json::from_value(serde_json::Value::Array(list)).unwrap_or_default();
    let mut t = match Terminal::new(TestBackend::new(200, 50)) {
        Ok(t) => t,
        Err(_) => return Duration::ZERO,
    };
    let watched = avix_proto::Pid::new(100);
    let t0 = Instant::now();
    for f in 0..frames {
        for s in 0..streaming {
            app.event(&avix_proto::atp::EventFrame {
                seq: 0,
                event: "agent.output.chunk".into(),
                ts: avix_proto::time::Timestamp::now(),
                pid: Some(avix_proto::Pid::new(100 + s as u64)),
                body: serde_json::json!({"text": format!("chunk {f} of the streamed answer, with some words in it\n")}),
            });
        }
        app.mode = if f % 2 == 0 {
            Mode::Normal
        } else {
            Mode::Attach(watched)
        };
        let _ = t.draw(|fr| view::draw(fr, &app));
    }
    t0.elapsed() / u32::try_from(frames.max(1)).unwrap_or(u32::MAX)
}
