//! A real daemon on a provider reached over HTTP: keys never leak.

use avix_testkit::mock_llm::{MockLlm, Turn};
use avix_testkit::{TestDaemon, require_fuse};
use serde_json::json;

use crate::bin;

const KEY: &str = "sk-leaktest-right-7Hq2ZpX9wLm4Rt8Kv1Bn";
const WRONG: &str = "sk-leaktest-wrong-3Jd8QsW2eYc6Ua0Fg5Mh";

#[test]
fn provider_keys_never_appear_in_logs_journals_proc_or_errors() {
    if !require_fuse() {
        return;
    }
    let mock = MockLlm::start();
    mock.require_key(KEY);
    mock.script(vec![
        Turn::call(
            "Saving.",
            "fs/write",
            json!({"path": "leak.txt", "content": "nothing secret"}),
        ),
        Turn::text("Saved."),
    ]);
    let mut d = TestDaemon::init(bin());
    let llm = format!(
        "apiVersion: avix/v1\nkind: LlmConfig\nspec:\n  defaultProvider: good\n  providers:\n    - {{name: good, kind: openai, baseUrl: \"{u}/v1\", apiKeyEnv: AVIX_LEAK_KEY, defaultModel: m}}\n    - {{name: bad, kind: anthropic, baseUrl: \"{u}\", apiKeyEnv: AVIX_LEAK_WRONG, defaultModel: m}}\n",
        u = mock.url()
    );
    std::fs::write(d.root.join("etc/llm.yaml"), llm).unwrap();
    d.spawn_env(
        &[],
        &[
            ("AVIX_LEAK_KEY", KEY),
            ("AVIX_LEAK_WRONG", WRONG),
            ("RUST_LOG", "trace"),
        ],
    );
    d.wait_ready();

    let good =
        d.ok("exec 3<>$M/proc/spawn; echo 'assistant save a file' >&3; read -r pid <&3; echo $pid");
    let good = good.trim();
    d.ok(&format!("for i in $(seq 1 200); do grep -q 'state: completed' $M/proc/{good}/status.yaml && exit 0; sleep 0.05; done; cat $M/proc/{good}/status.yaml; exit 1"));
    let bad = d.ok("exec 3<>$M/proc/spawn; echo '{\"agent\": \"assistant\", \"goal\": \"x\", \"model\": \"bad/m\"}' >&3; read -r pid <&3; echo $pid");
    let bad = bad.trim();
    d.ok(&format!("for i in $(seq 1 200); do grep -q 'state: failed' $M/proc/{bad}/status.yaml && exit 0; sleep 0.05; done; cat $M/proc/{bad}/status.yaml; exit 1"));
    // The provider's refusal reached the user, key shown masked by the provider and then
    // scrubbed by Avix.
    let errors = d.ok(&format!(
        "cat $M/proc/{bad}/errors $M/proc/{bad}/status.yaml"
    ));
    assert!(errors.contains("Incorrect API key"), "{errors}");

    // Everything a user or operator can read: the mount (proc, services, the user's
    // tree), the root on disk (journals, records, config), the daemon's trace log.
    let proc_text = d.ok("for f in $(find $M/proc $M/users $M/etc -type f 2>/dev/null); do cat \"$f\" 2>/dev/null; done");
    assert!(proc_text.contains("name: good"), "the status file was read");
    let disk = d.ok(&format!(
        "grep -rIl -e leaktest {} || true",
        d.root.display()
    ));
    let log = d.log_text();
    assert!(log.contains("DEBUG"), "the log is verbose: {log}");
    for secret in [KEY, WRONG, "7Hq2ZpX9wLm4Rt8Kv1Bn", "3Jd8QsW2eYc6Ua0Fg5Mh"] {
        assert!(
            !proc_text.contains(secret),
            "{secret} readable through the mount"
        );
        assert!(!log.contains(secret), "{secret} in the daemon log");
    }
    assert!(disk.trim().is_empty(), "a key is stored on disk in: {disk}");
    // The process environment is the one place keys live; /proc/<pid>/environ of the
    // daemon is the host's business (root only), not Avix's VFS.
}

#[test]
fn an_invalid_llm_yaml_stops_the_start_with_every_problem_listed() {
    let d = TestDaemon::init(bin());
    std::fs::write(
        d.root.join("etc/llm.yaml"),
        "apiVersion: avix/v1\nkind: LlmConfig\nspec:\n  defaultProvider: nowhere\n  providers:\n    - {name: a, kind: anthropic, apiKeyEnv: sk-ant-pasted-key-123456, timeouts: {idleSecs: 0}}\n",
    )
    .unwrap();
    let out = d.start_expecting_failure(&["--no-mount"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for want in [
        "llm.yaml",
        "apiKeyEnv",
        "idleSecs",
        "defaultProvider \"nowhere\"",
    ] {
        assert!(err.contains(want), "{want} in: {err}");
    }
    assert!(
        !err.contains("sk-ant-pasted"),
        "the pasted key is not echoed: {err}"
    );
}
