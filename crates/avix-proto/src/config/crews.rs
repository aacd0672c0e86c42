//! `/etc/avix/crews.yaml`: crews (groups) of users and agents.

use serde::{Deserialize, Serialize};

use super::duplicates;
use crate::envelope::Kind;
use crate::name::{CrewName, UserName, check_name};

/// The lowest crew id for ordinary crews; 0–999 are reserved (`all` = 0, `kernel` = 1).
pub const FIRST_CREW_CID: u32 = 1000;

/// The body of `crews.yaml`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Crews {
    /// Every crew.
    #[serde(default)]
    pub crews: Vec<Crew>,
}

/// Whether agents spawned by a member join the crew.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentInheritance {
    /// Agents a member spawns are members.
    #[default]
    Spawn,
    /// Only agents listed in `members`.
    Explicit,
    /// Agents never join.
    None,
}

/// How members reach each other's pipes and the shared paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PipePolicy {
    /// Members read and write without asking.
    #[default]
    AllowIntraCrew,
    /// Every access needs an approved request.
    RequireRequest,
    /// Operators only.
    Deny,
}

/// One crew.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Crew {
    /// Crew name (also its directory under `/crews`).
    pub name: CrewName,
    /// Crew id (≥ 1000), unique.
    pub cid: u32,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `user:<name>`, `agent:<name>` or `*` (everyone).
    #[serde(default)]
    pub members: Vec<String>,
    /// Whether agents spawned by members join.
    #[serde(default)]
    pub agent_inheritance: AgentInheritance,
    /// The crew's base tool set.
    #[serde(default)]
    pub allowed_tools: Vec<String>,
    /// Tools no member gets through this crew, whatever else allows them.
    #[serde(default)]
    pub denied_tools: Vec<String>,
    /// Paths under `/crews/<name>/shared/` the crew shares.
    #[serde(default)]
    pub shared_paths: Vec<String>,
    /// Access policy for pipes and shared paths.
    #[serde(default)]
    pub pipe_policy: PipePolicy,
}

impl Crew {
    /// Whether the user is listed in `members` (directly or through `*`).
    pub fn lists_user(&self, user: &UserName) -> bool {
        self.members
            .iter()
            .any(|m| m == "*" || m.strip_prefix("user:") == Some(user.as_str()))
    }
}

impl Kind for Crews {
    const KIND: &'static str = "Crews";

    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        duplicates("crew", self.crews.iter().map(|c| &c.name), &mut problems);
        duplicates("cid", self.crews.iter().map(|c| &c.cid), &mut problems);
        for c in &self.crews {
            if c.cid < FIRST_CREW_CID {
                problems.push(format!(
                    "crew {}: cid {} is reserved (use {FIRST_CREW_CID} or above)",
                    c.name, c.cid
                ));
            }
            for m in &c.members {
                let ok = m == "*"
                    || m.strip_prefix("user:")
                        .is_some_and(|n| check_name("user", n).is_ok())
                    || m.strip_prefix("agent:")
                        .is_some_and(|n| check_name("agent", n).is_ok());
                if !ok {
                    problems.push(format!(
                        "crew {}: member {m:?} must be user:<name>, agent:<name> or *",
                        c.name
                    ));
                }
            }
            let prefix = format!("/crews/{}/shared/", c.name);
            for p in &c.shared_paths {
                let inside = p.starts_with(&prefix) || *p == prefix.trim_end_matches('/');
                if !inside || p.split('/').any(|s| s == "..") {
                    problems.push(format!(
                        "crew {}: shared path {p:?} must lie under {prefix}",
                        c.name
                    ));
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Document;

    const SAMPLE: &str = "\
apiVersion: avix/v1
kind: Crews
spec:
  crews:
    - name: researchers
      cid: 1001
      description: research team
      members: [user:alice, agent:researcher]
      agentInheritance: spawn
      allowedTools: [fs/read, fs/write]
      deniedTools: [exec/shell]
      sharedPaths: [/crews/researchers/shared/research/]
      pipePolicy: allow-intra-crew
";

    #[test]
    fn parses_the_reference_example() {
        let doc = Document::<Crews>::parse(SAMPLE.as_bytes()).unwrap();
        let c = &doc.spec.crews[0];
        assert!(c.lists_user(&UserName::new("alice").unwrap()));
        assert!(!c.lists_user(&UserName::new("bob").unwrap()));
        assert_eq!(c.pipe_policy, PipePolicy::AllowIntraCrew);
    }

    #[test]
    fn rejects_bad_members_and_paths() {
        let bad = SAMPLE
            .replace("agent:researcher", "root")
            .replace("/shared/research/", "/../x/");
        let e = Document::<Crews>::parse(bad.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("member \"root\""), "{e}");
        assert!(e.contains("shared path"), "{e}");
    }
}
