//! `avix tui` driven in tmux against a real daemon, as a person at a terminal would: keys
//! with `send-keys`, the screen with `capture-pane`.

use std::process::Command;
use std::time::{Duration, Instant};

use avix_testkit::{TestDaemon, require_fuse};

use crate::bin;

/// A tmux session running `avix tui` against `d`, 120×30.
struct Tui {
    name: String,
}

impl Tui {
    fn start(d: &TestDaemon) -> Option<Self> {
        if Command::new("tmux").arg("-V").output().is_err() {
            eprintln!("tmux is missing: scripts/setup.sh installs it");
            return None;
        }
        let name = format!("avix-tui-{}", std::process::id());
        let cmd = format!(
            "env -u AVIX_USER -u AVIX_CLIENT_CONFIG HOME={} AVIX_SERVER=http://127.0.0.1:{} AVIX_API_KEY={} TERM=xterm-256color {} tui",
            d.dir.path().display(),
            d.port,
            d.api_key,
            bin().display()
        );
        let ok = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                "120",
                "-y",
                "30",
                &cmd,
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux new-session failed");
        let t = Self { name };
        t.wait("the tab bar", |s| s.contains("1 Agents"));
        Some(t)
    }

    fn keys(&self, keys: &[&str]) {
        let ok = Command::new("tmux")
            .args(["send-keys", "-t", &self.name])
            .args(keys)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Escape, alone: followed at once by another key, a terminal reads it as Alt+key.
    fn esc(&self) {
        self.keys(&["Escape"]);
        std::thread::sleep(Duration::from_millis(300));
    }

    /// Types `text` literally.
    fn text(&self, text: &str) {
        let ok = Command::new("tmux")
            .args(["send-keys", "-l", "-t", &self.name, text])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    fn screen(&self) -> String {
        let o = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn wait(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            if f(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

#[test]
fn the_tui_spawns_attaches_approves_kills_and_resizes() {
    if !require_fuse() {
        return;
    }
    let mut d = TestDaemon::init(bin());
    d.start();
    let Some(t) = Tui::start(&d) else { return };

    // The Catalog tab lists the built-in agents.
    t.keys(&["2"]);
    t.wait("the catalog", |s| {
        s.contains("assistant") && s.contains("researcher") && s.contains("coordinator")
    });

    // `:spawn` starts an agent; the view attaches and streams its output and tool calls.
    t.keys(&[":"]);
    t.text("spawn assistant keep notes please");
    t.keys(&["Enter"]);
    t.wait("the streamed output", |s| {
        s.contains("→ fs/write")
            && s.contains("Done. I wrote notes.md")
            && s.contains("[exited: completed]")
    });
    t.esc();
    t.wait("the agent in the list, completed", |s| {
        s.lines().any(|l| {
            l.contains("assistant") && l.contains("completed") && l.contains("keep notes please")
        })
    });

    // A gated call: the agent waits, the Approvals tab shows it, `y` approves, it goes on.
    d.ok("cat > $M/etc/avix/scripts/gated.yaml <<'YAML'\napiVersion: avix/v1\nkind: LlmScript\nspec:\n  turns:\n    - toolCalls: [{name: fs/delete, args: {path: notes.md}}]\n    - text: deleted it\nYAML");
    t.keys(&["n"]);
    t.text("assistant");
    t.keys(&["Tab"]);
    t.text("clean up");
    t.keys(&["Tab"]);
    t.text("scripted/gated");
    t.keys(&["Enter"]);
    t.wait("the agent waiting for approval", |s| {
        s.contains("human-approval")
    });
    t.esc();
    t.keys(&["3"]);
    t.wait("the pending request", |s| {
        s.contains("3 Approvals (1)")
            && s.lines()
                .any(|l| l.contains("fs/delete") && l.contains("pending"))
    });
    t.keys(&["y"]);
    t.wait("the approval", |s| s.contains("approved"));
    t.keys(&["1"]);
    t.wait("the gated agent done", |s| {
        s.lines()
            .any(|l| l.contains("clean up") && l.contains("completed"))
    });
    assert!(!d.mount.join("users/alice/workspace/notes.md").exists());

    // Kill: a slow agent, found with the filter, killed with K.
    d.ok("cat > $M/etc/avix/scripts/slow.yaml <<'YAML'\napiVersion: avix/v1\nkind: LlmScript\nspec:\n  turns:\n    - {delayMs: 60000, text: late}\nYAML");
    t.keys(&["n"]);
    t.text("assistant");
    t.keys(&["Tab"]);
    t.text("take forever");
    t.keys(&["Tab"]);
    t.text("scripted/slow");
    t.keys(&["Enter"]);
    t.wait("attached to the slow agent", |s| {
        s.contains("take forever") || s.contains("no output yet")
    });
    t.esc();
    t.wait("the slow agent running", |s| {
        s.lines()
            .any(|l| l.contains("take forever") && l.contains("running"))
    });
    t.keys(&["/"]);
    t.text("forever");
    t.keys(&["Enter", "K"]);
    t.wait("the kill", |s| {
        s.lines()
            .any(|l| l.contains("take forever") && l.contains("killed"))
    });

    // The daemon restarts: the TUI says it is reconnecting, then comes back by itself.
    d.stop();
    t.wait("the lost connection", |s| s.contains("reconnecting"));
    d.start();
    t.wait("the new connection", |s| {
        s.contains("reconnected") && !s.contains("reconnecting")
    });
    // /proc starts empty after a restart; the runs are in History, read over the new link.
    t.keys(&["5"]);
    t.wait("the runs in History", |s| {
        s.contains("take forever") && s.contains("clean up") && s.contains("keep notes please")
    });

    // Resizing keeps the layout whole: tabs on top, the key line at the bottom.
    let ok = Command::new("tmux")
        .args(["resize-window", "-t", &t.name, "-x", "70", "-y", "14"])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let s = t.wait("the smaller layout", |s| {
        s.lines().count() <= 14 && s.contains("1 Agents")
    });
    assert!(s.lines().next().unwrap().starts_with(" 1 Agents"), "{s}");
    t.keys(&["?"]);
    t.wait("the help", |s| s.contains("keys"));
    t.keys(&["x", "q"]);
}
