//! Drawing the [`App`]: a tab bar, the current tab's table (or one agent's output), and a
//! line for keys, prompts and messages; popups for help and the new-agent form. Only the 16
//! ANSI colours are used, and none with `NO_COLOR`; selection is shown reversed either way.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table, TableState, Tabs, Wrap};

use super::app::{App, Mode, SpawnForm, Tab, cut};

fn fg(app: &App, c: Color) -> Style {
    if app.color {
        Style::default().fg(c)
    } else {
        Style::default()
    }
}

fn state_color(app: &App, state: &str) -> Style {
    match state {
        "running" => fg(app, Color::Green),
        "waiting" => fg(app, Color::Yellow),
        "paused" | "stopped" => fg(app, Color::Cyan),
        "failed" | "killed" => fg(app, Color::Red),
        _ => Style::default(),
    }
}

fn name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Draws the whole screen.
pub(crate) fn draw(f: &mut Frame<'_>, app: &App) {
    let [top, body, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(f.area());
    tabs(f, app, top);
    match &app.mode {
        Mode::Attach(pid) | Mode::Input(pid, _) => attach(f, app, *pid, body),
        _ => table(f, app, body),
    }
    status_line(f, app, bottom);
    match &app.mode {
        Mode::Help => help(f, app),
        Mode::Spawn(form) => spawn_form(f, app, form),
        _ => {}
    }
}

fn tabs(f: &mut Frame<'_>, app: &App, area: Rect) {
    let titles: Vec<Line<'_>> = Tab::ALL
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut s = format!("{} {}", i + 1, t.title());
            if *t == Tab::Approvals && app.pending() > 0 {
                s.push_str(&format!(" ({})", app.pending()));
            }
            Line::from(s)
        })
        .collect();
    // The tabs come first: on a narrow screen only the connection's mark is shown.
    let wide = area.width >= 110;
    let conn = match (app.connected, wide) {
        (true, true) => format!("{} ● ", app.who),
        (false, true) => format!("{} ○ reconnecting… ", app.who),
        (true, false) => "● ".to_owned(),
        (false, false) => "○ reconnecting… ".to_owned(),
    };
    let width = u16::try_from(conn.chars().count()).unwrap_or(u16::MAX);
    let [left, right] =
        Layout::horizontal([Constraint::Min(1), Constraint::Length(width)]).areas(area);
    let selected = Tab::ALL.iter().position(|t| *t == app.tab).unwrap_or(0);
    f.render_widget(
        Tabs::new(titles)
            .select(selected)
            .highlight_style(Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD))
            .divider("│"),
        left,
    );
    let style = if app.connected {
        fg(app, Color::Green)
    } else {
        fg(app, Color::Red).add_modifier(Modifier::BOLD)
    };
    f.render_widget(Paragraph::new(Span::styled(conn, style)), right);
}

fn table(f: &mut Frame<'_>, app: &App, area: Rect) {
    let all = app.rows();
    // Only the rows that fit are built: a window around the selection.
    let fit = usize::from(area.height.saturating_sub(1)).max(1);
    let sel = app.selected[Tab::ALL.iter().position(|t| *t == app.tab).unwrap_or(0)]
        .min(all.len().saturating_sub(1));
    let first = if app.tab == Tab::Logs {
        0
    } else {
        sel.saturating_sub(fit - 1)
    };
    let rows_of = if app.tab == Tab::Logs {
        &all[..]
    } else {
        &all[first..all.len().min(first + fit)]
    };
    let (header, widths, rows): (Vec<&str>, Vec<Constraint>, Vec<Row<'_>>) = match app.tab {
        Tab::Agents => (
            vec!["PID", "AGENT", "USER", "STATE", "TURNS", "TOKENS", "GOAL"],
            vec![
                Constraint::Length(7),
                Constraint::Length(14),
                Constraint::Length(10),
                Constraint::Length(22),
                Constraint::Length(6),
                Constraint::Length(8),
                Constraint::Min(10),
            ],
            rows_of
                .iter()
                .filter_map(|&i| app.agents.get(i))
                .map(|p| {
                    let st = name(&p.state);
                    let shown = match &p.waiting_on {
                        Some(w) => format!("{st} ({w})"),
                        None => st.clone(),
                    };
                    Row::new(vec![
                        p.pid.to_string().into(),
                        cut(&p.agent, 14).into(),
                        cut(&p.owner, 10).into(),
                        Span::styled(shown, state_color(app, &st)),
                        p.turns.to_string().into(),
                        p.tokens.total().to_string().into(),
                        cut(&p.goal, 200).into(),
                    ])
                })
                .collect(),
        ),
        Tab::Catalog => (
            vec!["NAME", "VERSION", "SCOPE", "DESCRIPTION"],
            vec![
                Constraint::Length(16),
                Constraint::Length(10),
                Constraint::Length(8),
                Constraint::Min(10),
            ],
            rows_of
                .iter()
                .filter_map(|&i| app.catalog.get(i))
                .map(|c| {
                    Row::new(vec![
                        cut(&c.name, 16),
                        cut(&c.version, 10),
                        name(&c.scope),
                        cut(&c.description, 200),
                    ])
                })
                .collect(),
        ),
        Tab::Approvals => (
            vec!["ID", "PID", "KIND", "TOOL", "STATE", "ARGS"],
            vec![
                Constraint::Length(14),
                Constraint::Length(7),
                Constraint::Length(20),
                Constraint::Length(14),
                Constraint::Length(10),
                Constraint::Min(10),
            ],
            rows_of
                .iter()
                .filter_map(|&i| app.approvals.get(i))
                .map(|h| {
                    let st = name(&h.state);
                    Row::new(vec![
                        cut(h.id.as_str(), 14).into(),
                        h.pid.to_string().into(),
                        name(&h.kind).into(),
                        cut(h.tool.as_deref().unwrap_or(""), 14).into(),
                        Span::styled(
                            st.clone(),
                            if st == "pending" {
                                fg(app, Color::Yellow)
                            } else {
                                Style::default()
                            },
                        ),
                        cut(
                            &h.args.as_ref().map(ToString::to_string).unwrap_or_default(),
                            200,
                        )
                        .into(),
                    ])
                })
                .collect(),
        ),
        Tab::Sessions => (
            vec!["ID", "AGENT", "STATE", "RUNS", "UPDATED", "TITLE"],
            vec![
                Constraint::Length(10),
                Constraint::Length(14),
                Constraint::Length(10),
                Constraint::Length(5),
                Constraint::Length(21),
                Constraint::Min(10),
            ],
            rows_of
                .iter()
                .filter_map(|&i| app.sessions.get(i))
                .map(|s| {
                    Row::new(vec![
                        cut(s.id.as_str(), 9),
                        cut(&s.agent, 14),
                        s.state.as_ref().map(name).unwrap_or_default(),
                        s.invocations.len().to_string(),
                        s.updated_at.to_string(),
                        cut(&s.title, 200),
                    ])
                })
                .collect(),
        ),
        Tab::Services => (
            vec!["NAME", "VERSION", "STATE", "PID", "RESTARTS", "LAST EXIT"],
            vec![
                Constraint::Length(20),
                Constraint::Length(10),
                Constraint::Length(10),
                Constraint::Length(8),
                Constraint::Length(9),
                Constraint::Min(10),
            ],
            rows_of
                .iter()
                .filter_map(|&i| app.services.get(i))
                .map(|s| {
                    let st = name(&s.state);
                    Row::new(vec![
                        cut(&s.name, 20).into(),
                        cut(&s.version, 10).into(),
                        Span::styled(st.clone(), state_color(app, &st)),
                        s.pid.map(|p| p.to_string()).unwrap_or_default().into(),
                        s.restarts.to_string().into(),
                        s.last_exit.clone().unwrap_or_default().into(),
                    ])
                })
                .collect(),
        ),
        Tab::History => (
            vec![
                "INVOCATION",
                "AGENT",
                "STATE",
                "TURNS",
                "TOKENS",
                "SPAWNED",
                "GOAL",
            ],
            vec![
                Constraint::Length(10),
                Constraint::Length(14),
                Constraint::Length(10),
                Constraint::Length(6),
                Constraint::Length(8),
                Constraint::Length(21),
                Constraint::Min(10),
            ],
            rows_of
                .iter()
                .filter_map(|&i| app.history.get(i))
                .map(|r| {
                    let st = name(&r.state);
                    Row::new(vec![
                        cut(r.id.as_str(), 9).into(),
                        cut(&r.agent, 14).into(),
                        Span::styled(st.clone(), state_color(app, &st)),
                        r.turns.to_string().into(),
                        r.tokens.total().to_string().into(),
                        r.spawned_at.to_string().into(),
                        cut(&r.goal, 200).into(),
                    ])
                })
                .collect(),
        ),
        Tab::Logs => {
            // The newest at the bottom, as many as fit.
            let lines: Vec<Line<'_>> = rows_of
                .iter()
                .filter_map(|&i| app.logs.get(i))
                .map(|l| Line::from(cut(l, 500)))
                .collect();
            let skip = lines.len().saturating_sub(usize::from(area.height));
            f.render_widget(
                Paragraph::new(lines.into_iter().skip(skip).collect::<Vec<_>>()),
                area,
            );
            return;
        }
    };
    let n = rows.len();
    let header = Row::new(header).style(Style::default().add_modifier(Modifier::BOLD));
    let mut state = TableState::default();
    if n > 0 {
        state.select(Some((sel - first).min(n - 1)));
    }
    let empty = n == 0;
    f.render_stateful_widget(
        Table::new(rows, widths)
            .header(header)
            .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED)),
        area,
        &mut state,
    );
    if empty && area.height > 2 {
        let what = if app.filter.is_empty() {
            "(none)".to_owned()
        } else {
            format!("(nothing matches /{})", app.filter)
        };
        f.render_widget(
            Paragraph::new(what),
            Rect {
                y: area.y + 1,
                height: 1,
                ..area
            },
        );
    }
}

fn attach(f: &mut Frame<'_>, app: &App, pid: avix_proto::Pid, area: Rect) {
    let p = app.agents.iter().find(|p| p.pid == pid);
    let title = match p {
        Some(p) => format!(
            " {} {} — {}{} ",
            pid,
            p.agent,
            name(&p.state),
            p.waiting_on
                .as_deref()
                .map_or_else(String::new, |w| format!(" ({w})"))
        ),
        None => format!(" {pid} "),
    };
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    let mut lines: Vec<Line<'_>> = Vec::new();
    if let Some(o) = app.outputs.get(&pid) {
        // The last lines only: at most a screenful (each line takes one row or more).
        let keep = usize::from(inner.height).max(1);
        for l in o.lines.iter().skip(o.lines.len().saturating_sub(keep)) {
            let style = if l.starts_with('→') || l.starts_with('←') {
                fg(app, Color::Cyan)
            } else if l.starts_with('✗') {
                fg(app, Color::Red)
            } else if l.starts_with("> ") {
                fg(app, Color::Yellow)
            } else {
                Style::default()
            };
            lines.push(Line::styled(l.clone(), style));
        }
        if !o.partial.is_empty() {
            lines.push(Line::from(o.partial.clone()));
        }
    }
    if lines.is_empty() {
        lines.push(Line::from(
            "(no output yet: it shows here as the agent writes it)",
        ));
    }
    // Keep the end in view: wrap, then show the last lines that fit.
    let w = usize::from(inner.width.max(1));
    let total: usize = lines.iter().map(|l| l.width().max(1).div_ceil(w)).sum();
    let para = Paragraph::new(lines).wrap(Wrap { trim: false });
    let scroll = u16::try_from(total)
        .unwrap_or(u16::MAX)
        .saturating_sub(inner.height);
    f.render_widget(para.block(block).scroll((scroll, 0)), area);
}

fn status_line(f: &mut Frame<'_>, app: &App, area: Rect) {
    let text = match &app.mode {
        Mode::Filter => format!("/{}", app.filter),
        Mode::Command(l) => format!(":{l}"),
        Mode::Input(pid, t) => format!("input for {pid}> {t}"),
        _ if !app.message.is_empty() => app.message.clone(),
        Mode::Attach(_) => "Esc back · i input · p pause · r resume · s stop · K kill".into(),
        _ => match app.tab {
            Tab::Agents => "↑↓ select · Enter attach · n new · i input · p pause · r resume · s stop · K kill · / filter · : command · ? help · q quit".into(),
            Tab::Approvals => "↑↓ select · y approve · d deny · / filter · ? help · q quit".into(),
            Tab::Catalog => "↑↓ select · n spawn the selected agent · / filter · ? help · q quit".into(),
            _ => "↑↓ select · g refresh · / filter · Tab next tab · ? help · q quit".into(),
        },
    };
    let style = if app.message.is_empty() || !matches!(app.mode, Mode::Normal | Mode::Attach(_)) {
        Style::default()
    } else {
        fg(app, Color::Yellow)
    };
    f.render_widget(Paragraph::new(Span::styled(text, style)), area);
}

fn popup(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

const HELP: &[(&str, &str)] = &[
    (
        "1…7, Tab",
        "switch tab: Agents, Catalog, Approvals, Sessions, History, Services, Logs",
    ),
    ("↑↓ j k, PgUp PgDn", "select"),
    (
        "Enter",
        "attach: the agent's output as it streams (Esc back)",
    ),
    ("n", "spawn an agent (in Catalog: the selected one)"),
    ("i", "send input to the agent"),
    ("p r s K", "pause, resume, stop, kill"),
    ("y / d", "approve / deny (Approvals)"),
    ("/", "filter the list (Esc clears)"),
    (
        ":",
        "command: spawn AGENT GOAL, kill PID, stop PID, attach PID, logs, q",
    ),
    ("g", "refresh now"),
    ("q, Ctrl-C", "quit"),
];

fn help(f: &mut Frame<'_>, app: &App) {
    let area = popup(f.area(), 78, u16::try_from(HELP.len()).unwrap_or(20) + 4);
    let lines: Vec<Line<'_>> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(
                    format!("{k:>18}  "),
                    fg(app, Color::Cyan).add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ])
        })
        .collect();
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" keys — any key closes "),
        ),
        area,
    );
}

fn spawn_form(f: &mut Frame<'_>, app: &App, form: &SpawnForm) {
    let area = popup(f.area(), 70, 8);
    let mut lines: Vec<Line<'_>> = SpawnForm::LABELS
        .iter()
        .zip(&form.fields)
        .enumerate()
        .map(|(i, (label, v))| {
            let cursor = if i == form.at { "▏" } else { "" };
            let style = if i == form.at {
                Style::default().add_modifier(Modifier::BOLD)
            } else {
                Style::default()
            };
            Line::from(vec![
                Span::styled(format!("{label:>17}: "), style),
                Span::raw(format!("{v}{cursor}")),
            ])
        })
        .collect();
    lines.push(Line::from(format!(
        "{:>17}: {} (F2 toggles)",
        "interactive",
        if form.interactive { "yes" } else { "no" }
    )));
    lines.push(Line::styled(
        "Tab next field · Enter spawn · Esc cancel",
        fg(app, Color::Cyan),
    ));
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" new agent ")),
        area,
    );
}

#[cfg(test)]
pub(crate) mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::style::Color;
    use serde_json::json;

    use super::*;

    fn agent(pid: u64, agent: &str, state: &str, goal: &str) -> serde_json::Value {
        json!({"pid": pid, "agent": agent, "version": "1.0.0", "state": state, "goal": goal,
               "owner": "alice", "invocation": format!("inv-{pid}"), "model": "scripted",
               "turns": 2, "toolCalls": 1, "tokens": {"inputTokens": 10, "outputTokens": 5},
               "startedAt": "2026-11-29T10:00:00Z", "updatedAt": "2026-11-29T10:00:01Z"})
    }

    pub(crate) fn sample(color: bool) -> App {
        let mut a = App::new("alice@http://127.0.0.1:9142".into(), color);
        a.agents = serde_json::from_value(json!([
            agent(104, "assistant", "running", "keep notes"),
            agent(105, "researcher", "waiting", "research Q3"),
        ]))
        .unwrap();
        a.catalog = serde_json::from_value(json!([
            {"name": "assistant", "version": "1.1.0", "scope": "system", "description": "A general assistant"}
        ]))
        .unwrap();
        a.approvals = serde_json::from_value(json!([
            {"id": "hil-7f3a", "pid": 105, "kind": "tool_call_approval", "tool": "fs/delete",
             "args": {"path": "old.txt"}, "options": [], "state": "pending",
             "createdAt": "2026-11-29T10:00:00Z", "expiresAt": "2026-11-29T10:10:00Z", "onTimeout": "deny", "answerWith": "echo approve > /proc/105/hil/hil-7f3a.yaml"}
        ]))
        .unwrap();
        a.sessions = serde_json::from_value(json!([
            {"id": "9e1f0a2b-0000", "user": "alice", "agent": "assistant", "title": "notes",
             "createdAt": "2026-11-29T10:00:00Z", "updatedAt": "2026-11-29T10:01:00Z", "invocations": []}
        ]))
        .unwrap();
        a.services = serde_json::from_value(json!([
            {"name": "exec", "version": "0.1.0", "builtin": true, "state": "running",
             "since": "2026-11-29T10:00:00Z", "restarts": 0, "tools": ["exec/shell"]}
        ]))
        .unwrap();
        a.logs = ["2026-11-29T10:00:00Z INFO ready".to_owned()].into();
        a.history = serde_json::from_value(json!([
            {"id": "5b0c1d2e-0000", "agent": "researcher", "version": "1.0.0", "user": "alice",
             "pid": 99, "goal": "old research", "model": "scripted",
             "spawnedAt": "2026-11-29T09:00:00Z", "state": "completed",
             "tokens": {"inputTokens": 1, "outputTokens": 2}, "toolCalls": 0, "turns": 1}
        ]))
        .unwrap();
        a
    }

    pub(crate) fn render(app: &App, w: u16, h: u16) -> (String, ratatui::buffer::Buffer) {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| draw(f, app)).unwrap();
        let buf = t.backend().buffer().clone();
        let mut s = String::new();
        for y in 0..h {
            for x in 0..w {
                s.push_str(buf[(x, y)].symbol());
            }
            s.push('\n');
        }
        (s, buf)
    }

    #[test]
    fn every_tab_shows_its_rows() {
        let mut a = sample(true);
        let want: [(Tab, &[&str]); 7] = [
            (
                Tab::History,
                &[
                    "INVOCATION",
                    "5b0c1d2e",
                    "researcher",
                    "completed",
                    "old research",
                ],
            ),
            (
                Tab::Agents,
                &[
                    "PID",
                    "104",
                    "assistant",
                    "running",
                    "keep notes",
                    "waiting",
                ],
            ),
            (
                Tab::Catalog,
                &[
                    "NAME",
                    "assistant",
                    "1.1.0",
                    "system",
                    "A general assistant",
                ],
            ),
            (
                Tab::Approvals,
                &[
                    "hil-7f3a",
                    "fs/delete",
                    "pending",
                    "old.txt",
                    "3 Approvals (1)",
                ],
            ),
            (Tab::Sessions, &["9e1f0a2b", "assistant", "notes"]),
            (Tab::Services, &["exec", "running"]),
            (Tab::Logs, &["INFO ready"]),
        ];
        for (tab, words) in want {
            a.tab = tab;
            let (s, _) = render(&a, 120, 12);
            for w in words {
                assert!(s.contains(w), "{tab:?} lacks {w:?}:\n{s}");
            }
            assert!(s.lines().next().unwrap().contains("1 Agents"), "{s}");
        }
    }

    #[test]
    fn attach_streams_output_tool_calls_and_results() {
        let mut a = sample(true);
        for (event, body) in [
            ("agent.output.chunk", json!({"text": "I will write "})),
            ("agent.output.chunk", json!({"text": "the file.\n"})),
            (
                "agent.tool_call",
                json!({"callId": "c1", "tool": "fs/write", "args": {"path": "n.md"}}),
            ),
            (
                "agent.tool_result",
                json!({"callId": "c1", "tool": "fs/write", "ok": true, "result": "{\"bytes\":3}"}),
            ),
            (
                "agent.exit",
                json!({"state": "completed", "exitCode": 0, "reason": "done"}),
            ),
        ] {
            a.event(&avix_proto::atp::EventFrame {
                seq: 1,
                event: event.into(),
                ts: avix_proto::time::Timestamp::now(),
                pid: Some(avix_proto::Pid::new(104)),
                body,
            });
        }
        a.mode = Mode::Attach(avix_proto::Pid::new(104));
        // Attaching late: what it said before comes first.
        a.seed(
            avix_proto::Pid::new(104),
            &serde_json::from_value::<Vec<avix_proto::llm::Message>>(json!([
                {"role": "user", "content": [{"type": "text", "text": "keep notes"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "Earlier words."}]}
            ]))
            .unwrap(),
        );
        let (s, _) = render(&a, 100, 12);
        let earlier = s.find("Earlier words.").expect("the seeded conversation");
        assert!(earlier < s.find("I will write the file.").unwrap(), "{s}");
        assert!(s.contains("> keep notes"), "{s}");
        for w in [
            "104 assistant",
            "I will write the file.",
            "→ fs/write",
            "← fs/write {\"bytes\":3}",
            "[exited: completed]",
        ] {
            assert!(s.contains(w), "lacks {w:?}:\n{s}");
        }
    }

    #[test]
    fn popups_the_filter_and_tiny_screens() {
        let mut a = sample(true);
        a.mode = Mode::Help;
        assert!(render(&a, 100, 20).0.contains("approve / deny"));
        a.mode = Mode::Spawn(SpawnForm::default());
        assert!(render(&a, 100, 20).0.contains("new agent"));
        a.mode = Mode::Normal;
        a.filter = "research".into();
        let (s, _) = render(&a, 100, 10);
        assert!(s.contains("researcher") && !s.contains("keep notes"), "{s}");
        a.filter = "nothing-like-it".into();
        assert!(
            render(&a, 100, 10)
                .0
                .contains("(nothing matches /nothing-like-it)")
        );
        // Whatever the size, drawing never panics.
        for (w, h) in [(1, 1), (10, 3), (20, 2), (40, 5), (300, 80)] {
            render(&a, w, h);
        }
    }

    #[test]
    fn no_color_means_no_colour() {
        let colored = |app: &App| {
            let (_, buf) = render(app, 120, 10);
            buf.content().iter().any(|c| c.fg != Color::Reset)
        };
        assert!(colored(&sample(true)));
        assert!(!colored(&sample(false)));
    }
}
