//! A booted kernel in a temporary root.

use std::sync::Arc;
use std::time::Duration;

use avix_auth::MasterKey;
use avix_kernel::layout::RootLayout;
use avix_kernel::process::{ExitInfo, Process};
use avix_kernel::{BootOptions, Kernel};
use avix_proto::agent::{ProcState, SpawnRequest};
use avix_proto::{AgentName, Role, UserName};
use avix_server::init::InitOptions;
use avix_vfs::{Caller, Door, VfsPath};

pub(crate) struct TestKernel {
    pub _dir: tempfile::TempDir,
    pub kernel: Arc<Kernel>,
    pub alice: UserName,
}

pub(crate) fn p(s: &str) -> VfsPath {
    VfsPath::parse(s).unwrap()
}

impl TestKernel {
    pub(crate) fn boot() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let opts = InitOptions::admin(root.clone(), UserName::new("alice").unwrap());
        avix_server::init::run(&opts).unwrap();
        let layout = RootLayout::new(&root);
        let master = MasterKey::from_file(&layout.etc_file("master.key")).unwrap();
        let kernel = Kernel::boot(
            layout,
            &master,
            BootOptions {
                runtime: tokio::runtime::Handle::current(),
                llm: None,
            },
        )
        .unwrap();
        Self {
            _dir: dir,
            kernel,
            alice: UserName::new("alice").unwrap(),
        }
    }

    pub(crate) fn alice_caller(&self) -> Caller {
        Caller::user(self.alice.clone(), Role::Admin, vec![], Door::Fuse)
    }

    /// `user` as the mount sees them (their role and crews from the configuration).
    pub(crate) fn caller(&self, user: &UserName) -> Caller {
        self.kernel
            .config()
            .get()
            .caller_for(user, Door::Fuse)
            .expect("a user of this root")
    }

    /// Writes `ROOT/etc/scripts/<name>.yaml`.
    pub(crate) fn script(&self, name: &str, turns: &str) {
        let text = format!("apiVersion: avix/v1\nkind: LlmScript\nspec:\n{turns}");
        std::fs::write(
            self.kernel
                .layout()
                .etc()
                .join("scripts")
                .join(format!("{name}.yaml")),
            text,
        )
        .unwrap();
    }

    pub(crate) fn req(agent: &str, goal: &str, script: Option<&str>) -> SpawnRequest {
        SpawnRequest {
            agent: AgentName::new(agent).unwrap(),
            goal: goal.into(),
            model: script.map(|s| format!("scripted/{s}")),
            tools: None,
            interactive: None,
            session: None,
        }
    }

    pub(crate) async fn spawn(
        &self,
        agent: &str,
        goal: &str,
        script: Option<&str>,
    ) -> Arc<Process> {
        self.kernel
            .spawn(&self.alice_caller(), Self::req(agent, goal, script), None)
            .await
            .unwrap()
    }

    pub(crate) fn read(&self, path: &str) -> String {
        String::from_utf8(
            self.kernel
                .vfs()
                .read(&Caller::kernel(), &p(path))
                .unwrap()
                .to_vec(),
        )
        .unwrap()
    }

    /// Rewrites a file through the VFS as the kernel (validated like any write).
    pub(crate) fn edit(&self, path: &str, f: impl FnOnce(String) -> String) {
        let text = f(self.read(path));
        self.kernel
            .vfs()
            .write(&Caller::kernel(), &p(path), text.as_bytes())
            .unwrap();
    }

    pub(crate) fn journal(&self, proc: &Process) -> Vec<avix_proto::agent::JournalEntry> {
        avix_kernel::journal::read_entries(proc.journal.path())
    }
}

pub(crate) async fn wait_exit(p: &Process) -> ExitInfo {
    tokio::time::timeout(Duration::from_secs(20), p.wait())
        .await
        .expect("the agent ended within 20 s")
}

pub(crate) async fn wait_state(p: &Process, want: ProcState, on: Option<&str>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (s, w) = (p.state(), p.inner().waiting_on.clone());
        if s == want && (on.is_none() || w.as_deref() == on) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "state {s:?}/{w:?}, wanted {want:?}/{on:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
