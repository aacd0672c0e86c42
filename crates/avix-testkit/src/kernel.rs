//! A booted kernel in a temporary root, for tests of the kernel and of the doors on it
//! (`features = ["kernel"]`).

use std::sync::Arc;
use std::time::Duration;

use avix_auth::{ApiKey, MasterKey};
use avix_kernel::layout::RootLayout;
use avix_kernel::process::{ExitInfo, Process};
use avix_kernel::root::InitOptions;
use avix_kernel::{BootOptions, Kernel};
use avix_proto::Document;
use avix_proto::agent::{ProcState, SpawnRequest};
use avix_proto::config::auth::{AuthConfig, Credential, Identity};
use avix_proto::config::users::{User, Users};
use avix_proto::{AgentName, Role, UserName};
use avix_vfs::{Caller, Door, VfsPath};

/// A kernel booted on a fresh root (alice, an admin with an API key), without doors.
#[derive(Debug)]
pub struct TestKernel {
    /// The root's temporary directory (removed on drop).
    pub _dir: tempfile::TempDir,
    /// The kernel.
    pub kernel: Arc<Kernel>,
    /// The first user, an admin.
    pub alice: UserName,
}

/// A VFS path (panics when malformed).
pub fn p(s: &str) -> VfsPath {
    VfsPath::parse(s).unwrap()
}

impl TestKernel {
    /// Initialises a root and boots a kernel on it (inside a Tokio runtime).
    pub fn boot() -> Self {
        Self::boot_with(None)
    }

    /// Like [`TestKernel::boot`], keeping journals and invocation records in `invocations`
    /// instead of the users' tree.
    pub fn boot_with(invocations: Option<Arc<dyn avix_vfs::storage::InvocationStore>>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let opts = InitOptions::admin(root.clone(), UserName::new("alice").unwrap());
        avix_kernel::root::run(&opts).unwrap();
        let layout = RootLayout::new(&root);
        let master = MasterKey::from_file(&layout.etc_file("master.key")).unwrap();
        let kernel = Kernel::boot(
            layout,
            &master,
            BootOptions {
                invocations,
                ..BootOptions::new(tokio::runtime::Handle::current())
            },
        )
        .unwrap();
        Self {
            _dir: dir,
            kernel,
            alice: UserName::new("alice").unwrap(),
        }
    }

    /// Alice as the mount sees her.
    pub fn alice_caller(&self) -> Caller {
        Caller::user(self.alice.clone(), Role::Admin, vec![], Door::Fuse)
    }

    /// `user` as the mount sees them (their role and crews from the configuration).
    pub fn caller(&self, user: &UserName) -> Caller {
        self.kernel
            .config()
            .get()
            .caller_for(user, Door::Fuse)
            .expect("a user of this root")
    }

    /// Writes `ROOT/etc/scripts/<name>.yaml`.
    pub fn script(&self, name: &str, turns: &str) {
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

    /// A spawn request; `script` picks `scripted/<script>` as the model.
    pub fn req(agent: &str, goal: &str, script: Option<&str>) -> SpawnRequest {
        SpawnRequest {
            agent: AgentName::new(agent).unwrap(),
            goal: goal.into(),
            model: script.map(|s| format!("scripted/{s}")),
            tools: None,
            interactive: None,
            session: None,
            params: Default::default(),
        }
    }

    /// Spawns as alice.
    pub async fn spawn(&self, agent: &str, goal: &str, script: Option<&str>) -> Arc<Process> {
        self.kernel
            .spawn(&self.alice_caller(), Self::req(agent, goal, script), None)
            .await
            .unwrap()
    }

    /// Installs agent `name` 1.0.0 for alice, requiring `tools` (a YAML list's items, e.g.
    /// `"fs/read, fs/write"`).
    pub fn agent(&self, name: &str, tools: &str) {
        self.agent_for("alice", name, tools);
    }

    /// Installs agent `name` 1.0.0 for `user`, requiring `tools`.
    pub fn agent_for(&self, user: &str, name: &str, tools: &str) {
        for d in [
            format!("/users/{user}/bin"),
            format!("/users/{user}/bin/{name}@1.0.0"),
        ] {
            let _ = self.kernel.vfs().create_dir(&Caller::kernel(), &p(&d));
        }
        self.kernel
            .vfs()
            .write(
                &Caller::kernel(),
                &p(&format!("/users/{user}/bin/{name}@1.0.0/agent.yaml")),
                format!("apiVersion: avix/v1\nkind: Agent\nmetadata: {{name: {name}, version: 1.0.0}}\nspec:\n  tools: {{required: [{tools}]}}\n").as_bytes(),
            )
            .unwrap();
    }

    /// Adds user `name` (`role`, host-independent uid `uid`, every tool allowed) with an API
    /// key, through the VFS as an admin would; returns the key.
    pub fn add_user(&self, name: &str, role: Role, uid: u32) -> String {
        let k = Caller::kernel();
        let key = ApiKey::generate();
        let hash = key.hash(&self.kernel.keys().api_key);
        let auth = self
            .kernel
            .vfs()
            .read(&k, &p("/etc/avix/auth.conf"))
            .unwrap();
        let mut doc = Document::<AuthConfig>::parse(&auth).unwrap();
        doc.spec.identities.push(Identity {
            name: UserName::new(name).unwrap(),
            uid,
            role,
            credential: Credential::ApiKey { key_hash: hash },
            ip_allowlist: vec![],
        });
        self.kernel
            .vfs()
            .write(
                &k,
                &p("/etc/avix/auth.conf"),
                doc.to_yaml().unwrap().as_bytes(),
            )
            .unwrap();
        let users = self
            .kernel
            .vfs()
            .read(&k, &p("/etc/avix/users.yaml"))
            .unwrap();
        let mut doc = Document::<Users>::parse(&users).unwrap();
        let mut u: User = doc.spec.users[0].clone();
        u.username = UserName::new(name).unwrap();
        u.uid = uid;
        u.host_uid = None;
        u.workspace = None;
        u.additional_tools = vec!["*".into()];
        doc.spec.users.push(u);
        self.kernel
            .vfs()
            .write(
                &k,
                &p("/etc/avix/users.yaml"),
                doc.to_yaml().unwrap().as_bytes(),
            )
            .unwrap();
        key.expose().to_owned()
    }

    /// Reads a file through the VFS as the kernel.
    pub fn read(&self, path: &str) -> String {
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
    pub fn edit(&self, path: &str, f: impl FnOnce(String) -> String) {
        let text = f(self.read(path));
        self.kernel
            .vfs()
            .write(&Caller::kernel(), &p(path), text.as_bytes())
            .unwrap();
    }

    /// A process's journal as it stands in the store.
    pub fn journal(&self, proc: &Process) -> Vec<avix_proto::agent::JournalEntry> {
        self.kernel.journals().entries(proc.journal.key())
    }
}

/// Waits (at most 20 s) for `p` to end.
pub async fn wait_exit(p: &Process) -> ExitInfo {
    tokio::time::timeout(Duration::from_secs(20), p.wait())
        .await
        .expect("the agent ended within 20 s")
}

/// Waits (at most 20 s) until `p` is in `want` (and waits on `on`, when given).
pub async fn wait_state(p: &Process, want: ProcState, on: Option<&str>) {
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
