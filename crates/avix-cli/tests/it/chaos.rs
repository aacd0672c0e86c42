//! The chaos suite (issue 13): the daemon is killed with SIGKILL at random moments while
//! agents run tool calls and a user writes through the mount and over ATP; after every restart
//! the invariants hold. `AVIX_CHAOS_KILLS` sets the number of kills (CI: 50);
//! `AVIX_CHAOS_SEED` replays a run (the seed is printed).

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use avix_testkit::{TestDaemon, require_fuse};

use crate::client::client_piped;
use crate::{bin, journal_lines_are_whole, journals, pids_of};

/// A small deterministic generator (xorshift), so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Every tool call of every journal has at most one recorded call and one result: a call
/// with a result is never run again after a restart.
fn no_call_ran_twice(root: &std::path::Path) {
    for j in journals(root) {
        let Ok(text) = std::fs::read_to_string(&j) else {
            continue;
        };
        let mut calls: HashMap<String, u32> = HashMap::new();
        let mut results: HashMap<String, u32> = HashMap::new();
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let ev = v.get("event").unwrap_or(&v);
            let id = ev.get("callId").and_then(|c| c.as_str()).unwrap_or("");
            match ev.get("type").and_then(|t| t.as_str()) {
                Some("tool_call") => *calls.entry(id.to_owned()).or_default() += 1,
                Some("tool_result") => *results.entry(id.to_owned()).or_default() += 1,
                _ => {}
            }
        }
        for (id, n) in calls.iter().chain(results.iter()) {
            assert!(*n <= 1, "{}: call {id} recorded {n} times", j.display());
        }
    }
}

#[test]
fn the_daemon_killed_at_random_moments_loses_nothing_acknowledged() {
    if !require_fuse() {
        return;
    }
    let kills: u32 = std::env::var("AVIX_CHAOS_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seed: u64 = std::env::var("AVIX_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("chaos: {kills} kills, AVIX_CHAOS_SEED={seed}");
    let mut rng = Rng(seed);
    let mut d = TestDaemon::init(bin());
    d.start();
    d.ok("sed -i 's/agents: 5$/agents: unlimited/' $M/etc/avix/users.yaml");
    d.ok("mkdir -p $M/users/alice/workspace/chaos");
    let root = d.root.display().to_string();
    // Acknowledged writes: (path under the mount, content).
    let mut acked: Vec<(String, String)> = Vec::new();
    let t0 = Instant::now();
    for i in 0..kills {
        // Agents writing and reading their notes (tool calls), spawned through the mount.
        let _ = d.sh(&format!(
            "printf 'assistant chaos run {i}\\n' > $M/proc/spawn; printf 'assistant chaos again {i}\\n' > $M/proc/spawn"
        ));
        // A data-tree file and a document: acknowledged when the writing command succeeds.
        for (path, content) in [
            (
                format!("users/alice/workspace/chaos/w{i}"),
                format!("data {i}"),
            ),
            (format!("users/alice/c{i}.txt"), format!("doc {i}")),
        ] {
            if d.sh(&format!("printf '{content}' > $M/{path}"))
                .status
                .success()
            {
                acked.push((path, content));
            }
        }
        if i % 10 == 0 {
            let path = format!("users/alice/workspace/chaos/atp{i}");
            let mut c = client_piped(&d, &["atp", "shell"]);
            c.stdin
                .take()
                .unwrap()
                .write_all(
                    format!("fs write {{\"path\":\"/{path}\",\"content\":\"atp {i}\"}}\n:q\n")
                        .as_bytes(),
                )
                .unwrap();
            let out = c.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            if out.status.success() && !text.contains("error") {
                acked.push((path, format!("atp {i}")));
            }
        }
        std::thread::sleep(Duration::from_millis(rng.next() % 150));
        let status = d.signal(libc::SIGKILL);
        assert!(!status.success());
        assert!(
            d.wait_unmounted(),
            "kill {i}: the mount guard detaches the mount"
        );
        d.start();

        // Invariants.
        let check: String = acked
            .iter()
            .map(|(p, c)| format!("[ \"$(cat $M/{p})\" = '{c}' ] || echo \"lost $M/{p}\";"))
            .collect();
        let lost = d.ok(&check);
        assert!(lost.is_empty(), "kill {i} (seed {seed}): {lost}");
        journal_lines_are_whole(&d.root);
        no_call_ran_twice(&d.root);
        let ours = pids_of(&root);
        assert_eq!(
            ours,
            vec![d.pid()],
            "kill {i} (seed {seed}): processes of the old daemon are left"
        );
    }
    d.stop();
    // The runs did work: tool calls were journaled (and none ran twice, above).
    let calls: usize = journals(&d.root)
        .iter()
        .filter_map(|j| std::fs::read_to_string(j).ok())
        .map(|t| t.matches("\"tool_result\"").count())
        .sum();
    assert!(
        calls > 0,
        "no tool call ran in {} journals",
        journals(&d.root).len()
    );
    eprintln!(
        "chaos: {kills} kills survived in {:.1} s; {} acknowledged writes intact; {calls} tool results journaled in {} runs",
        t0.elapsed().as_secs_f64(),
        acked.len(),
        journals(&d.root).len()
    );
}
