//! Agents and their processes: the manifest, spawn requests, the documents under
//! `/proc/<pid>/`, journal events and invocation records. One file per kind of document;
//! every type is at `avix_proto::agent::*`.

mod changes;
mod hil;
mod journal;
mod manifest;
mod proc;
mod session;
mod snapshot;

pub use changes::*;
pub use hil::*;
pub use journal::*;
pub use manifest::*;
pub use proc::*;
pub use session::*;
pub use snapshot::*;

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_zero_f(v: &f64) -> bool {
    *v == 0.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    const MANIFEST: &str = "\
apiVersion: avix/v1
kind: Agent
metadata: { name: researcher, version: 1.2.0, description: Reads and writes notes }
spec:
  systemPrompt: You research.
  model: scripted/default
  tools: { required: [fs/read], optional: [fs/write, agent/spawn] }
  hilRequired: [fs/delete]
  limits: { maxTurns: 10, maxTokens: 20000 }
  defaults: { temperature: 0.2 }
";

    #[test]
    fn manifest_parses_and_checks() {
        let m = AgentManifest::parse(MANIFEST.as_bytes()).unwrap();
        assert_eq!(m.metadata.name.as_str(), "researcher");
        assert_eq!(m.spec.limits.max_turns, Some(10));
        let bad = MANIFEST
            .replace("1.2.0", "one")
            .replace("temperature: 0.2", "temperature: 9");
        let e = AgentManifest::parse(bad.as_bytes()).unwrap_err().message;
        assert!(
            e.contains("MAJOR.MINOR.PATCH") && e.contains("temperature"),
            "{e}"
        );
        assert!(
            AgentManifest::parse(MANIFEST.replace("fs/read]", "fs__read]").as_bytes()).is_err()
        );
    }

    #[test]
    fn spawn_requests_in_three_forms() {
        let a = SpawnRequest::parse("researcher Find the three largest files\n").unwrap();
        assert_eq!(
            (a.agent.as_str(), a.goal.as_str()),
            ("researcher", "Find the three largest files")
        );
        let b = SpawnRequest::parse("agent: researcher\ngoal: Hello world\n").unwrap();
        assert_eq!(b.goal, "Hello world");
        let c = SpawnRequest::parse(r#"{"agent":"researcher","goal":"Hi","model":"scripted/x"}"#)
            .unwrap();
        assert_eq!(c.model.as_deref(), Some("scripted/x"));
        for bad in [
            "",
            "researcher",
            "Bad/Agent do it",
            "agent: x\ngoal: ''",
            "{\"agent\": 1}",
            "agent: x\nsurprise: 1\ngoal: g",
        ] {
            assert!(SpawnRequest::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn states_and_exit_codes() {
        assert_eq!(ProcState::Killed.exit_code(), Some(137));
        assert!(ProcState::Stopped.is_terminal() && !ProcState::Paused.is_terminal());
    }

    #[test]
    fn journal_lines_are_flat_json() {
        let e = JournalEntry {
            seq: 3,
            ts: Timestamp::from_unix(0),
            event: JournalEvent::ToolCall {
                call_id: "c1".into(),
                tool: "fs/read".into(),
                args: serde_json::json!({"path": "a"}),
            },
        };
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(
            line,
            r#"{"seq":3,"ts":"1970-01-01T00:00:00Z","type":"tool_call","callId":"c1","tool":"fs/read","args":{"path":"a"}}"#
        );
        let back: JournalEntry = serde_json::from_str(&line).unwrap();
        assert_eq!(back, e);
    }
}
