//! `/etc/avix/users.yaml`: the users of this installation and their quotas.

use serde::{Deserialize, Serialize};

use super::{Limit, duplicates};
use crate::envelope::Kind;
use crate::name::{CrewName, UserName};

/// The lowest uid for people; 0–999 are reserved (root, kernel internals, system agents).
pub const FIRST_USER_UID: u32 = 1000;

/// The body of `users.yaml`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Users {
    /// Every user.
    #[serde(default)]
    pub users: Vec<User>,
}

/// One user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct User {
    /// Login and directory name.
    pub username: UserName,
    /// Avix uid (≥ 1000), unique.
    pub uid: u32,
    /// The host (OS) uid whose calls through the FUSE mount act as this user. Unique. A uid
    /// that no user claims gets EACCES on the mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_uid: Option<u32>,
    /// Where the user's agents work by default; `/users/<username>/workspace` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// Informational; `nologin` for service accounts.
    #[serde(default = "default_shell")]
    pub shell: String,
    /// Crews the user belongs to (also see each crew's `members`).
    #[serde(default)]
    pub crews: Vec<CrewName>,
    /// Tools added on top of what the crews allow.
    #[serde(default)]
    pub additional_tools: Vec<String>,
    /// Tools removed even if a crew allows them.
    #[serde(default)]
    pub denied_tools: Vec<String>,
    /// Limits on what the user may consume.
    #[serde(default)]
    pub quota: Quota,
}

fn default_shell() -> String {
    "/bin/sh".to_owned()
}

/// Per-user quotas.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Quota {
    /// LLM tokens per rolling 24 hours.
    #[serde(default = "default_tokens")]
    pub tokens: Limit,
    /// Concurrent agents.
    #[serde(default = "default_agents")]
    pub agents: Limit,
    /// Concurrent sessions.
    #[serde(default = "default_sessions")]
    pub sessions: Limit,
}

fn default_tokens() -> Limit {
    Limit::Limited(500_000)
}
fn default_agents() -> Limit {
    Limit::Limited(5)
}
fn default_sessions() -> Limit {
    Limit::Limited(4)
}

impl Default for Quota {
    fn default() -> Self {
        Self {
            tokens: default_tokens(),
            agents: default_agents(),
            sessions: default_sessions(),
        }
    }
}

impl User {
    /// A user with default settings.
    pub fn new(username: UserName, uid: u32) -> Self {
        Self {
            username,
            uid,
            host_uid: None,
            workspace: None,
            shell: default_shell(),
            crews: Vec::new(),
            additional_tools: Vec::new(),
            denied_tools: Vec::new(),
            quota: Quota::default(),
        }
    }

    /// The workspace path in the VFS.
    pub fn workspace_path(&self) -> String {
        self.workspace
            .clone()
            .unwrap_or_else(|| format!("/users/{}/workspace", self.username))
    }
}

impl Users {
    /// The user with this name.
    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.username.as_str() == name)
    }
}

impl Kind for Users {
    const KIND: &'static str = "Users";

    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        duplicates(
            "username",
            self.users.iter().map(|u| &u.username),
            &mut problems,
        );
        duplicates("uid", self.users.iter().map(|u| &u.uid), &mut problems);
        duplicates(
            "hostUid",
            self.users.iter().filter_map(|u| u.host_uid.as_ref()),
            &mut problems,
        );
        for u in &self.users {
            if u.uid < FIRST_USER_UID {
                problems.push(format!(
                    "user {}: uid {} is reserved (use {FIRST_USER_UID} or above)",
                    u.username, u.uid
                ));
            }
            if let Some(ws) = &u.workspace
                && (!ws.starts_with('/') || ws.split('/').any(|c| c == ".."))
            {
                problems.push(format!(
                    "user {}: workspace {ws:?} must be an absolute VFS path without '..'",
                    u.username
                ));
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
kind: Users
metadata: { lastUpdated: 2026-03-15T07:38:00-05:00 }
spec:
  users:
    - username: alice
      uid: 1001
      hostUid: 0
      workspace: /users/alice/workspace
      shell: /bin/sh
      crews: [researchers]
      additionalTools: [python]
      deniedTools: []
      quota: { tokens: 500000, agents: 5, sessions: unlimited }
";

    #[test]
    fn parses_the_reference_example() {
        let doc = Document::<Users>::parse(SAMPLE.as_bytes()).unwrap();
        let alice = doc.spec.get("alice").unwrap();
        assert_eq!(alice.host_uid, Some(0));
        assert_eq!(alice.quota.sessions, Limit::UNLIMITED);
        assert_eq!(alice.workspace_path(), "/users/alice/workspace");
    }

    #[test]
    fn rejects_duplicates_reserved_uids_and_typos() {
        let dup = SAMPLE.to_owned() + "    - username: alice\n      uid: 1001\n";
        let e = Document::<Users>::parse(dup.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("username alice appears more than once"), "{e}");
        assert!(e.contains("uid 1001 appears more than once"), "{e}");
        let low = SAMPLE.replace("uid: 1001", "uid: 5");
        assert!(
            Document::<Users>::parse(low.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("reserved")
        );
        let typo = SAMPLE.replace("shell:", "shel:");
        assert!(Document::<Users>::parse(typo.as_bytes()).is_err());
    }
}
