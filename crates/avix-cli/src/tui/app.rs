//! The TUI's state and what keys and events do to it: a reducer with no I/O. Keys and ATP
//! events change the state and return [`Action`]s, which the runtime (`super::run`) carries
//! out against the daemon; their results come back through the `set_*` methods.

use std::collections::{HashMap, VecDeque};

use avix_proto::Pid;
use avix_proto::agent::{CatalogEntry, HilRequest, HilState, ProcessStatus, SessionRecord};
use avix_proto::atp::EventFrame;
use avix_proto::event::EventName;
use avix_proto::service::ServiceStatus;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Lines kept per agent's output, and in the log tab.
const KEEP: usize = 2_000;

/// The tabs, in order (`1`…`6`, `Tab`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Tab {
    /// Live agents.
    Agents,
    /// Installed agents.
    Catalog,
    /// Approval requests.
    Approvals,
    /// Sessions.
    Sessions,
    /// Services.
    Services,
    /// The daemon's log.
    Logs,
    /// Past runs.
    History,
}

impl Tab {
    pub(crate) const ALL: [Tab; 7] = [
        Tab::Agents,
        Tab::Catalog,
        Tab::Approvals,
        Tab::Sessions,
        Tab::History,
        Tab::Services,
        Tab::Logs,
    ];

    pub(crate) fn title(self) -> &'static str {
        match self {
            Tab::Agents => "Agents",
            Tab::Catalog => "Catalog",
            Tab::Approvals => "Approvals",
            Tab::Sessions => "Sessions",
            Tab::Services => "Services",
            Tab::Logs => "Logs",
            Tab::History => "History",
        }
    }

    fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }
}

/// The new-agent form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SpawnForm {
    /// Agent, goal, model.
    pub(crate) fields: [String; 3],
    /// The field being typed in.
    pub(crate) at: usize,
    /// Waits for input after each answer.
    pub(crate) interactive: bool,
}

impl SpawnForm {
    pub(crate) const LABELS: [&'static str; 3] = ["agent", "goal", "model (optional)"];
}

/// What the keyboard is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Moving around.
    Normal,
    /// Typing a filter (`/`).
    Filter,
    /// Typing a command (`:`).
    Command(String),
    /// Typing input for an agent (`i`).
    Input(Pid, String),
    /// The new-agent form (`n`).
    Spawn(SpawnForm),
    /// The keys (`?`).
    Help,
    /// One agent's output, streaming (`Enter`).
    Attach(Pid),
}

/// What the runtime is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Fetch a tab's rows again.
    Refresh(Tab),
    /// Send a signal (`SIGPAUSE`, `SIGRESUME`, `SIGSTOP`, `SIGKILL`, `SIGPIPE`).
    Signal(Pid, &'static str, Option<serde_json::Value>),
    /// Start an agent.
    Spawn {
        /// Agent.
        agent: String,
        /// Goal.
        goal: String,
        /// Model.
        model: Option<String>,
        /// Interactive.
        interactive: bool,
    },
    /// Fill an agent's output from its journal (attaching to a run that began earlier).
    Seed(Pid),
    /// Approve (true) or deny an approval request.
    Answer(avix_proto::HilId, bool),
    /// Leave.
    Quit,
}

/// One agent's output as it streams.
#[derive(Debug, Clone, Default)]
pub(crate) struct Output {
    /// Whole lines.
    pub(crate) lines: VecDeque<String>,
    /// The line being written.
    pub(crate) partial: String,
}

impl Output {
    fn push_text(&mut self, text: &str) {
        for (i, piece) in text.split('\n').enumerate() {
            if i > 0 {
                let line = std::mem::take(&mut self.partial);
                self.line(line);
            }
            self.partial.push_str(piece);
        }
    }

    fn line(&mut self, l: String) {
        if self.lines.len() >= KEEP {
            self.lines.pop_front();
        }
        self.lines.push_back(l);
    }

    fn end_line(&mut self) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(line);
        }
    }
}

/// Everything on the screen.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) tab: Tab,
    pub(crate) mode: Mode,
    pub(crate) filter: String,
    pub(crate) selected: [usize; 7],
    pub(crate) agents: Vec<ProcessStatus>,
    pub(crate) catalog: Vec<CatalogEntry>,
    pub(crate) approvals: Vec<HilRequest>,
    pub(crate) sessions: Vec<SessionRecord>,
    pub(crate) services: Vec<ServiceStatus>,
    pub(crate) history: Vec<avix_proto::agent::InvocationRecord>,
    pub(crate) logs: VecDeque<String>,
    pub(crate) outputs: HashMap<Pid, Output>,
    /// The last thing to tell the user (a result or an error).
    pub(crate) message: String,
    pub(crate) connected: bool,
    /// `alice@http://127.0.0.1:9142`.
    pub(crate) who: String,
    /// Colours (off with `NO_COLOR`).
    pub(crate) color: bool,
    pub(crate) quit: bool,
}

impl App {
    pub(crate) fn new(who: String, color: bool) -> Self {
        Self {
            tab: Tab::Agents,
            mode: Mode::Normal,
            filter: String::new(),
            selected: [0; 7],
            agents: Vec::new(),
            catalog: Vec::new(),
            approvals: Vec::new(),
            sessions: Vec::new(),
            services: Vec::new(),
            history: Vec::new(),
            logs: VecDeque::new(),
            outputs: HashMap::new(),
            message: String::new(),
            connected: true,
            who,
            color,
            quit: false,
        }
    }

    /// Whether `text` passes the filter.
    pub(crate) fn shown(&self, text: &str) -> bool {
        self.filter.is_empty() || text.to_lowercase().contains(&self.filter.to_lowercase())
    }

    /// The rows of the current tab after the filter, as their index in the tab's list.
    pub(crate) fn rows(&self) -> Vec<usize> {
        if self.filter.is_empty() {
            let n = match self.tab {
                Tab::Agents => self.agents.len(),
                Tab::Catalog => self.catalog.len(),
                Tab::Approvals => self.approvals.len(),
                Tab::Sessions => self.sessions.len(),
                Tab::Services => self.services.len(),
                Tab::Logs => self.logs.len(),
                Tab::History => self.history.len(),
            };
            return (0..n).collect();
        }
        let keep = |i: usize, s: String| self.shown(&s).then_some(i);
        match self.tab {
            Tab::Agents => self
                .agents
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    keep(i, format!("{} {} {} {}", p.pid, p.agent, p.owner, p.goal))
                })
                .collect(),
            Tab::Catalog => self
                .catalog
                .iter()
                .enumerate()
                .filter_map(|(i, c)| keep(i, format!("{} {}", c.name, c.description)))
                .collect(),
            Tab::Approvals => self
                .approvals
                .iter()
                .enumerate()
                .filter_map(|(i, h)| {
                    keep(
                        i,
                        format!("{} {} {}", h.id, h.pid, h.tool.clone().unwrap_or_default()),
                    )
                })
                .collect(),
            Tab::Sessions => self
                .sessions
                .iter()
                .enumerate()
                .filter_map(|(i, s)| keep(i, format!("{} {} {}", s.id, s.agent, s.title)))
                .collect(),
            Tab::Services => self
                .services
                .iter()
                .enumerate()
                .filter_map(|(i, s)| keep(i, s.name.clone()))
                .collect(),
            Tab::Logs => self
                .logs
                .iter()
                .enumerate()
                .filter_map(|(i, l)| keep(i, l.clone()))
                .collect(),
            Tab::History => self
                .history
                .iter()
                .enumerate()
                .filter_map(|(i, r)| keep(i, format!("{} {} {}", r.id, r.agent, r.goal)))
                .collect(),
        }
    }

    fn cursor(&self) -> usize {
        self.selected[self.tab.index()]
    }

    fn move_cursor(&mut self, by: isize) {
        let n = self.rows().len();
        let i = self.tab.index();
        self.selected[i] = if n == 0 {
            0
        } else {
            self.selected[i].saturating_add_signed(by).min(n - 1)
        };
    }

    /// The selected agent (Agents tab).
    pub(crate) fn selected_agent(&self) -> Option<&ProcessStatus> {
        let rows = self.rows();
        (self.tab == Tab::Agents)
            .then(|| rows.get(self.cursor()).and_then(|&i| self.agents.get(i)))
            .flatten()
    }

    fn selected_approval(&self) -> Option<&HilRequest> {
        let rows = self.rows();
        (self.tab == Tab::Approvals)
            .then(|| rows.get(self.cursor()).and_then(|&i| self.approvals.get(i)))
            .flatten()
    }

    /// Approval requests still waiting.
    pub(crate) fn pending(&self) -> usize {
        self.approvals
            .iter()
            .filter(|h| h.state == HilState::Pending)
            .count()
    }

    fn go(&mut self, tab: Tab) -> Vec<Action> {
        self.tab = tab;
        self.mode = Mode::Normal;
        self.filter.clear();
        vec![Action::Refresh(tab)]
    }

    /// A key press.
    pub(crate) fn key(&mut self, k: KeyEvent) -> Vec<Action> {
        if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
            self.quit = true;
            return vec![Action::Quit];
        }
        match self.mode.clone() {
            Mode::Normal => self.key_normal(k),
            Mode::Help => {
                self.mode = Mode::Normal;
                Vec::new()
            }
            Mode::Attach(pid) => self.key_attach(pid, k),
            Mode::Filter => {
                match k.code {
                    KeyCode::Esc => {
                        self.filter.clear();
                        self.mode = Mode::Normal;
                    }
                    KeyCode::Enter => self.mode = Mode::Normal,
                    KeyCode::Backspace => {
                        self.filter.pop();
                    }
                    KeyCode::Char(c) => self.filter.push(c),
                    _ => {}
                }
                self.selected[self.tab.index()] = 0;
                Vec::new()
            }
            Mode::Command(mut line) => match k.code {
                KeyCode::Esc => {
                    self.mode = Mode::Normal;
                    Vec::new()
                }
                KeyCode::Enter => {
                    self.mode = Mode::Normal;
                    self.command(&line)
                }
                KeyCode::Backspace => {
                    line.pop();
                    self.mode = Mode::Command(line);
                    Vec::new()
                }
                KeyCode::Char(c) => {
                    line.push(c);
                    self.mode = Mode::Command(line);
                    Vec::new()
                }
                _ => Vec::new(),
            },
            Mode::Input(pid, mut text) => match k.code {
                KeyCode::Esc => {
                    self.mode = Mode::Normal;
                    Vec::new()
                }
                KeyCode::Enter => {
                    self.mode = Mode::Attach(pid);
                    if text.trim().is_empty() {
                        return Vec::new();
                    }
                    self.outputs
                        .entry(pid)
                        .or_default()
                        .line(format!("> {text}"));
                    vec![Action::Signal(
                        pid,
                        "SIGPIPE",
                        Some(serde_json::json!({ "text": text })),
                    )]
                }
                KeyCode::Backspace => {
                    text.pop();
                    self.mode = Mode::Input(pid, text);
                    Vec::new()
                }
                KeyCode::Char(c) => {
                    text.push(c);
                    self.mode = Mode::Input(pid, text);
                    Vec::new()
                }
                _ => Vec::new(),
            },
            Mode::Spawn(mut f) => match k.code {
                KeyCode::Esc => {
                    self.mode = Mode::Normal;
                    Vec::new()
                }
                KeyCode::Tab | KeyCode::Down => {
                    f.at = (f.at + 1) % 3;
                    self.mode = Mode::Spawn(f);
                    Vec::new()
                }
                KeyCode::BackTab | KeyCode::Up => {
                    f.at = (f.at + 2) % 3;
                    self.mode = Mode::Spawn(f);
                    Vec::new()
                }
                KeyCode::F(2) => {
                    f.interactive = !f.interactive;
                    self.mode = Mode::Spawn(f);
                    Vec::new()
                }
                KeyCode::Enter => {
                    let [agent, goal, model] = f.fields.clone().map(|s| s.trim().to_owned());
                    if agent.is_empty() || goal.is_empty() {
                        self.message = "the agent and the goal are needed".into();
                        self.mode = Mode::Spawn(f);
                        return Vec::new();
                    }
                    self.mode = Mode::Normal;
                    vec![Action::Spawn {
                        agent,
                        goal,
                        model: (!model.is_empty()).then_some(model),
                        interactive: f.interactive,
                    }]
                }
                KeyCode::Backspace => {
                    f.fields[f.at].pop();
                    self.mode = Mode::Spawn(f);
                    Vec::new()
                }
                KeyCode::Char(c) => {
                    f.fields[f.at].push(c);
                    self.mode = Mode::Spawn(f);
                    Vec::new()
                }
                _ => Vec::new(),
            },
        }
    }

    fn key_normal(&mut self, k: KeyEvent) -> Vec<Action> {
        if let Some(pid) = self.selected_agent().map(|p| p.pid) {
            let sig = match k.code {
                KeyCode::Enter => return self.attach(pid),
                KeyCode::Char('i') => {
                    self.mode = Mode::Input(pid, String::new());
                    return Vec::new();
                }
                KeyCode::Char('p') => Some("SIGPAUSE"),
                KeyCode::Char('r') => Some("SIGRESUME"),
                KeyCode::Char('s') => Some("SIGSTOP"),
                KeyCode::Char('K') => Some("SIGKILL"),
                _ => None,
            };
            if let Some(sig) = sig {
                return vec![Action::Signal(pid, sig, None)];
            }
        }
        match k.code {
            KeyCode::Char('q') => {
                self.quit = true;
                vec![Action::Quit]
            }
            KeyCode::Char('?') => {
                self.mode = Mode::Help;
                Vec::new()
            }
            KeyCode::Char('/') => {
                self.mode = Mode::Filter;
                Vec::new()
            }
            KeyCode::Char(':') => {
                self.mode = Mode::Command(String::new());
                Vec::new()
            }
            KeyCode::Tab => {
                let next = Tab::ALL[(self.tab.index() + 1) % Tab::ALL.len()];
                self.go(next)
            }
            KeyCode::BackTab => {
                let prev = Tab::ALL[(self.tab.index() + Tab::ALL.len() - 1) % Tab::ALL.len()];
                self.go(prev)
            }
            KeyCode::Char(c @ '1'..='7') => {
                let i = (c as usize) - ('1' as usize);
                self.go(Tab::ALL[i])
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.move_cursor(-1);
                Vec::new()
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.move_cursor(1);
                Vec::new()
            }
            KeyCode::PageUp => {
                self.move_cursor(-20);
                Vec::new()
            }
            KeyCode::PageDown => {
                self.move_cursor(20);
                Vec::new()
            }
            KeyCode::Char('g') => vec![Action::Refresh(self.tab)],
            KeyCode::Char('n') => {
                let mut f = SpawnForm::default();
                if let (Tab::Catalog, Some(c)) = (
                    self.tab,
                    self.rows()
                        .get(self.cursor())
                        .and_then(|&i| self.catalog.get(i)),
                ) {
                    f.fields[0] = c.name.clone();
                    f.at = 1;
                }
                self.mode = Mode::Spawn(f);
                Vec::new()
            }
            KeyCode::Char('y') | KeyCode::Char('a') if self.tab == Tab::Approvals => self
                .selected_approval()
                .map(|h| vec![Action::Answer(h.id.clone(), true)])
                .unwrap_or_default(),
            KeyCode::Char('d') if self.tab == Tab::Approvals => self
                .selected_approval()
                .map(|h| vec![Action::Answer(h.id.clone(), false)])
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    fn key_attach(&mut self, pid: Pid, k: KeyEvent) -> Vec<Action> {
        match k.code {
            KeyCode::Esc | KeyCode::Char('q') => {
                self.mode = Mode::Normal;
                Vec::new()
            }
            KeyCode::Char('i') => {
                self.mode = Mode::Input(pid, String::new());
                Vec::new()
            }
            KeyCode::Char('p') => vec![Action::Signal(pid, "SIGPAUSE", None)],
            KeyCode::Char('r') => vec![Action::Signal(pid, "SIGRESUME", None)],
            KeyCode::Char('s') => vec![Action::Signal(pid, "SIGSTOP", None)],
            KeyCode::Char('K') => vec![Action::Signal(pid, "SIGKILL", None)],
            _ => Vec::new(),
        }
    }

    /// Shows `pid`'s output, asking for what it said before the TUI saw it.
    fn attach(&mut self, pid: Pid) -> Vec<Action> {
        self.mode = Mode::Attach(pid);
        match self.outputs.entry(pid) {
            std::collections::hash_map::Entry::Occupied(_) => Vec::new(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Output::default());
                vec![Action::Seed(pid)]
            }
        }
    }

    /// Fills `pid`'s output from its conversation so far (before what streamed since).
    pub(crate) fn seed(&mut self, pid: Pid, conversation: &[avix_proto::llm::Message]) {
        let mut o = Output::default();
        for m in conversation {
            use avix_proto::llm::{ContentBlock, MessageRole};
            for b in &m.content {
                match b {
                    ContentBlock::Text { text } if m.role == MessageRole::User => {
                        o.line(format!("> {}", cut(text, 500)));
                    }
                    ContentBlock::Text { text } => {
                        o.push_text(text);
                        o.end_line();
                    }
                    ContentBlock::ToolUse { name, input, .. } => {
                        o.line(format!("→ {name} {}", cut(&input.to_string(), 120)));
                    }
                    ContentBlock::ToolResult {
                        content, is_error, ..
                    } => {
                        let mark = if *is_error { "✗" } else { "←" };
                        o.line(format!("{mark} {}", cut(content, 120)));
                    }
                    _ => {}
                }
            }
        }
        let streamed = self.outputs.remove(&pid).unwrap_or_default();
        o.lines.extend(streamed.lines);
        o.partial = streamed.partial;
        while o.lines.len() > KEEP {
            o.lines.pop_front();
        }
        self.outputs.insert(pid, o);
    }

    /// A `:` command: `spawn AGENT GOAL…`, `kill PID`, `logs`, `attach PID`, `q`.
    pub(crate) fn command(&mut self, line: &str) -> Vec<Action> {
        let mut words = line.split_whitespace();
        let cmd = words.next().unwrap_or("");
        let rest: Vec<&str> = words.collect();
        let pid = || rest.first().and_then(|p| p.parse::<Pid>().ok());
        match (cmd, pid()) {
            ("q" | "quit", _) => {
                self.quit = true;
                vec![Action::Quit]
            }
            ("spawn", _) if rest.len() >= 2 => vec![Action::Spawn {
                agent: rest[0].to_owned(),
                goal: rest[1..].join(" ").trim_matches('"').to_owned(),
                model: None,
                interactive: false,
            }],
            ("kill", Some(pid)) => vec![Action::Signal(pid, "SIGKILL", None)],
            ("stop", Some(pid)) => vec![Action::Signal(pid, "SIGSTOP", None)],
            ("pause", Some(pid)) => vec![Action::Signal(pid, "SIGPAUSE", None)],
            ("resume", Some(pid)) => vec![Action::Signal(pid, "SIGRESUME", None)],
            ("attach", Some(pid)) => {
                self.tab = Tab::Agents;
                self.attach(pid)
            }
            ("logs" | "log", _) => self.go(Tab::Logs),
            ("help" | "h", _) => {
                self.mode = Mode::Help;
                Vec::new()
            }
            _ => {
                self.message = format!(
                    "unknown command :{line} — try :spawn AGENT GOAL, :kill PID, :stop PID, :pause PID, :resume PID, :attach PID, :logs, :q"
                );
                Vec::new()
            }
        }
    }

    /// An ATP event.
    pub(crate) fn event(&mut self, e: &EventFrame) -> Vec<Action> {
        let Some(name) = EventName::parse(&e.event) else {
            return Vec::new();
        };
        let pid = e.pid;
        fn out(app: &mut App, pid: Option<Pid>) -> Option<&mut Output> {
            pid.map(|p| app.outputs.entry(p).or_default())
        }
        match name {
            EventName::AgentOutputChunk => {
                if let Some(o) = out(self, pid) {
                    o.push_text(e.body["text"].as_str().unwrap_or(""));
                }
                Vec::new()
            }
            EventName::AgentOutput => {
                if let Some(o) = out(self, pid) {
                    o.end_line();
                }
                Vec::new()
            }
            EventName::AgentToolCall => {
                if let Some(o) = out(self, pid) {
                    o.end_line();
                    o.line(format!(
                        "→ {} {}",
                        e.body["tool"].as_str().unwrap_or("?"),
                        cut(&e.body["args"].to_string(), 120)
                    ));
                }
                Vec::new()
            }
            EventName::AgentToolResult => {
                if let Some(o) = out(self, pid) {
                    let mark = if e.body["ok"].as_bool().unwrap_or(true) {
                        "←"
                    } else {
                        "✗"
                    };
                    let text = e.body["result"]
                        .as_str()
                        .map_or_else(|| e.body["result"].to_string(), str::to_owned);
                    o.line(format!(
                        "{mark} {} {}",
                        e.body["tool"].as_str().unwrap_or("?"),
                        cut(&text, 120)
                    ));
                }
                Vec::new()
            }
            EventName::AgentExit => {
                if let Some(o) = out(self, pid) {
                    o.end_line();
                    o.line(format!(
                        "[exited: {}]",
                        e.body["state"].as_str().unwrap_or("?")
                    ));
                }
                vec![Action::Refresh(Tab::Agents)]
            }
            EventName::SysLog => {
                if let Some(l) = e.body["line"].as_str() {
                    if self.logs.len() >= KEEP {
                        self.logs.pop_front();
                    }
                    self.logs.push_back(l.to_owned());
                }
                Vec::new()
            }
            n => {
                let s = n.as_str();
                if s.starts_with("hil.") {
                    vec![
                        Action::Refresh(Tab::Approvals),
                        Action::Refresh(Tab::Agents),
                    ]
                } else if s.starts_with("session.") {
                    vec![Action::Refresh(Tab::Sessions)]
                } else if s.starts_with("service.") {
                    vec![Action::Refresh(Tab::Services)]
                } else if s.starts_with("agent.") || s.starts_with("proc.") {
                    vec![Action::Refresh(Tab::Agents)]
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// Keeps the cursor on the list after it changed.
    pub(crate) fn clamp(&mut self) {
        self.move_cursor(0);
    }
}

/// `s` cut to `n` characters, on one line.
pub(crate) fn cut(s: &str, n: usize) -> String {
    let one: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one.chars().count() <= n {
        one
    } else {
        let mut t: String = one.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    fn app() -> App {
        crate::tui::view::tests::sample(false)
    }

    #[test]
    fn keys_on_the_selected_agent_become_signals() {
        let mut a = app();
        let p104 = avix_proto::Pid::new(104);
        let p105 = avix_proto::Pid::new(105);
        assert_eq!(
            a.key(key(KeyCode::Char('p'))),
            [Action::Signal(p104, "SIGPAUSE", None)]
        );
        a.key(key(KeyCode::Down));
        assert_eq!(
            a.key(key(KeyCode::Char('K'))),
            [Action::Signal(p105, "SIGKILL", None)]
        );
        a.key(key(KeyCode::Down));
        assert_eq!(
            a.key(key(KeyCode::Char('s'))),
            [Action::Signal(p105, "SIGSTOP", None)],
            "the cursor stays on the list"
        );
        a.key(key(KeyCode::Char('i')));
        for c in "hi".chars() {
            a.key(key(KeyCode::Char(c)));
        }
        assert_eq!(
            a.key(key(KeyCode::Enter)),
            [Action::Signal(
                p105,
                "SIGPIPE",
                Some(serde_json::json!({"text": "hi"}))
            )]
        );
        assert_eq!(a.mode, Mode::Attach(p105));
    }

    #[test]
    fn tabs_filter_commands_and_the_form() {
        let mut a = app();
        assert_eq!(
            a.key(key(KeyCode::Char('3'))),
            [Action::Refresh(Tab::Approvals)]
        );
        assert_eq!(
            a.key(key(KeyCode::Char('y'))),
            [Action::Answer("hil-7f3a".into(), true)]
        );
        assert_eq!(a.key(key(KeyCode::Tab)), [Action::Refresh(Tab::Sessions)]);
        a.key(key(KeyCode::Char('1')));
        a.key(key(KeyCode::Char('/')));
        for c in "resea".chars() {
            a.key(key(KeyCode::Char(c)));
        }
        a.key(key(KeyCode::Enter));
        assert_eq!(a.rows(), [1]);
        assert_eq!(
            a.command("spawn researcher look at \"Q3\""),
            [Action::Spawn {
                agent: "researcher".into(),
                goal: "look at \"Q3".into(),
                model: None,
                interactive: false
            }]
        );
        assert_eq!(
            a.command("kill 104"),
            [Action::Signal(avix_proto::Pid::new(104), "SIGKILL", None)]
        );
        assert!(a.command("frobnicate").is_empty());
        assert!(a.message.contains("unknown command"));
        // The form: Catalog's `n` fills the agent; Enter needs a goal.
        a.key(key(KeyCode::Esc));
        a.key(key(KeyCode::Char('2')));
        a.key(key(KeyCode::Char('n')));
        assert!(a.key(key(KeyCode::Enter)).is_empty());
        for c in "go".chars() {
            a.key(key(KeyCode::Char(c)));
        }
        a.key(key(KeyCode::F(2)));
        assert_eq!(
            a.key(key(KeyCode::Enter)),
            [Action::Spawn {
                agent: "assistant".into(),
                goal: "go".into(),
                model: None,
                interactive: true
            }]
        );
        assert_eq!(
            a.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            [Action::Quit]
        );
    }
}
