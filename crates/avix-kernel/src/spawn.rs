//! Spawning: from a request to a running process. Finds the manifest, resolves parameters
//! (defaults and limits at every layer, with provenance) and grants, allocates the PID,
//! opens the journal, publishes `/proc/<pid>` and starts the executor.

use crate::pid::Pid;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use avix_proto::agent::{
    AgentDefaults, AgentLimits, AgentParams, DeniedTool, JournalEvent, PARAM_NAMES, Resolved,
    ResolvedValue, SpawnRequest,
};
use avix_proto::envelope::{Document, Kind};
use avix_proto::tool::ToolPattern;
use avix_proto::{ErrorKind, Role, UserName};
use avix_vfs::{Caller, Principal, VfsPath};

use crate::Kernel;
use crate::catalog::{self, InstalledAgent};
use crate::config::Config;
use crate::process::{Grants, Process, ProcessSpec, RunLimits};

/// Why a spawn failed; its [`ErrorKind`] is what every door reports.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpawnError {
    /// No such agent.
    #[error("unknown agent {name:?}: installed agents are {}", if .available.is_empty() { "none".to_owned() } else { .available.join(", ") })]
    UnknownAgent {
        /// Asked for.
        name: String,
        /// What exists.
        available: Vec<String>,
    },
    /// The manifest is broken.
    #[error("the manifest {path} is invalid: {reason}")]
    BadManifest {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A defaults or limits file is broken.
    #[error("{path} is invalid: {reason}")]
    BadConfig {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A required tool cannot be granted.
    #[error("agent {agent} requires {tool}, which cannot be granted: {reason}")]
    ToolRequired {
        /// Agent.
        agent: String,
        /// Tool.
        tool: String,
        /// Why not.
        reason: String,
    },
    /// A quota is reached.
    #[error("{0}")]
    Quota(String),
    /// Not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The session to resume cannot be (missing, another user's, still running).
    #[error(transparent)]
    Session(#[from] crate::sessions::SessionError),
    /// The caller may not spawn this way (`policy::spawn_for`).
    #[error(transparent)]
    Refused(#[from] avix_proto::Error),
    /// Storage failed.
    #[error("{0}")]
    Io(String),
}

impl avix_proto::HasKind for SpawnError {
    fn kind(&self) -> ErrorKind {
        match self {
            SpawnError::UnknownAgent { .. } => ErrorKind::NotFound,
            SpawnError::BadManifest { .. }
            | SpawnError::BadConfig { .. }
            | SpawnError::BadRequest(_) => ErrorKind::Invalid,
            SpawnError::ToolRequired { .. } | SpawnError::Forbidden(_) => ErrorKind::Denied,
            SpawnError::Session(e) => e.kind(),
            SpawnError::Refused(e) => e.kind,
            SpawnError::Quota(_) => ErrorKind::Limit,
            SpawnError::Io(_) => ErrorKind::Internal,
        }
    }
}

fn read_layer<S: Kind>(kernel: &Kernel, path: &str) -> Result<Option<S>, SpawnError> {
    let Ok(p) = VfsPath::parse(path) else {
        return Ok(None);
    };
    match kernel.vfs().read(&Caller::kernel(), &p) {
        Ok(bytes) => Document::<S>::parse(&bytes)
            .map(|d| Some(d.spec))
            .map_err(|e| SpawnError::BadConfig {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        Err(avix_vfs::VfsError::NotFound(_)) => Ok(None),
        Err(e) => Err(SpawnError::BadConfig {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Parameters resolved for one spawn.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// Values with provenance.
    pub params: BTreeMap<String, ResolvedValue>,
    /// The numbers the executor enforces.
    pub limits: RunLimits,
}

/// Resolves parameters: the value comes from the highest layer that sets it
/// (manifest > user defaults > crew defaults > system defaults); the lowest ceiling of the
/// limit layers (system, crews, user) caps it.
pub fn resolve_params(
    kernel: &Kernel,
    user: &UserName,
    manifest: &AgentParams,
    asked: &BTreeMap<String, f64>,
) -> Result<Resolution, SpawnError> {
    let mut spawn = AgentParams::default();
    for (name, v) in asked {
        if !PARAM_NAMES.contains(&name.as_str()) {
            return Err(SpawnError::BadRequest(format!(
                "unknown parameter {name:?}: the parameters are {}",
                PARAM_NAMES.join(", ")
            )));
        }
        if !v.is_finite() || *v < 0.0 {
            return Err(SpawnError::BadRequest(format!(
                "parameter {name} must be a number of 0 or more, not {v}"
            )));
        }
        spawn.set(name, *v);
    }
    let config = kernel.config().get();
    let crews = config.crews_of(user);
    let mut defaults: Vec<(String, AgentParams)> =
        vec![("system-defaults".into(), AgentParams::system_defaults())];
    let mut limits: Vec<(String, AgentParams)> =
        vec![("system-limits".into(), AgentParams::system_limits())];
    for c in &crews {
        if let Some(d) = read_layer::<AgentDefaults>(kernel, &format!("/crews/{c}/defaults.yaml"))?
        {
            defaults.push((format!("crew-defaults:{c}"), d.0));
        }
        if let Some(l) = read_layer::<AgentLimits>(kernel, &format!("/crews/{c}/limits.yaml"))? {
            limits.push((format!("crew-limits:{c}"), l.0));
        }
    }
    if let Some(d) = read_layer::<AgentDefaults>(kernel, &format!("/users/{user}/defaults.yaml"))? {
        defaults.push(("user-defaults".into(), d.0));
    }
    if let Some(l) = read_layer::<AgentLimits>(kernel, &format!("/users/{user}/limits.yaml"))? {
        limits.push(("user-limits".into(), l.0));
    }
    defaults.push(("manifest".into(), manifest.clone()));
    defaults.push(("spawn".into(), spawn));

    let mut params = BTreeMap::new();
    let mut values = AgentParams::default();
    for name in PARAM_NAMES {
        let Some((source, mut value)) = defaults
            .iter()
            .rev()
            .find_map(|(src, p)| p.get(name).map(|v| (src.clone(), v)))
        else {
            continue;
        };
        let ceiling = limits
            .iter()
            .filter_map(|(src, p)| p.get(name).map(|v| (src, v)))
            .min_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal));
        let mut clamped_from = None;
        let mut clamped_by = None;
        if let Some((src, max)) = ceiling
            && value > max
        {
            clamped_from = Some(value);
            clamped_by = Some(src.clone());
            value = max;
        }
        values.set(name, value);
        params.insert(
            name.to_owned(),
            ResolvedValue {
                value,
                source,
                clamped_from,
                clamped_by,
            },
        );
    }
    let d = AgentParams::system_defaults();
    let pick = |v: Option<u64>, dflt: Option<u64>| v.or(dflt).unwrap_or(1);
    let limits = RunLimits {
        temperature: values.temperature.or(d.temperature).unwrap_or(0.7),
        max_output_tokens: pick(values.max_output_tokens, d.max_output_tokens),
        max_turns: pick(values.max_turns, d.max_turns),
        max_tool_calls: pick(values.max_tool_calls, d.max_tool_calls),
        max_tool_chain_length: pick(values.max_tool_chain_length, d.max_tool_chain_length),
        max_tokens: pick(values.max_tokens, d.max_tokens),
        max_wall_time_secs: pick(values.max_wall_time_secs, d.max_wall_time_secs),
        turn_timeout_secs: pick(values.turn_timeout_secs, d.turn_timeout_secs),
        priority: u8::try_from(values.priority.or(d.priority).unwrap_or(5).min(9)).unwrap_or(5),
    };
    Ok(Resolution { params, limits })
}

/// The user's allow and deny patterns (users.yaml and their crews).
fn user_patterns(
    kernel: &Kernel,
    user: &UserName,
) -> Result<(Vec<ToolPattern>, Vec<ToolPattern>), SpawnError> {
    let config = kernel.config().get();
    let crews = config.crews_of(user);
    let mut allow: Vec<&str> = Vec::new();
    let mut deny: Vec<&str> = Vec::new();
    if let Some(u) = config.users.get(user.as_str()) {
        allow.extend(u.additional_tools.iter().map(String::as_str));
        deny.extend(u.denied_tools.iter().map(String::as_str));
    }
    for c in config
        .crews
        .crews
        .iter()
        .filter(|c| crews.contains(&c.name))
    {
        allow.extend(c.allowed_tools.iter().map(String::as_str));
        deny.extend(c.denied_tools.iter().map(String::as_str));
    }
    let parse = |v: Vec<&str>| -> Result<Vec<ToolPattern>, SpawnError> {
        v.into_iter()
            .map(|p| {
                ToolPattern::new(p).map_err(|e| SpawnError::BadConfig {
                    path: "/etc/avix/users.yaml or crews.yaml".into(),
                    reason: e.to_string(),
                })
            })
            .collect()
    };
    Ok((parse(allow)?, parse(deny)?))
}

/// Whether `user` may use `tool` at all (users.yaml and crews).
pub fn permitted(kernel: &Kernel, user: &UserName, tool: &str) -> Result<(), avix_proto::Error> {
    let (allow, deny) = user_patterns(kernel, user)
        .map_err(|e| avix_proto::Error::new(avix_proto::HasKind::kind(&e), e.to_string()))?;
    if deny.iter().any(|p| p.matches(tool)) {
        return Err(avix_proto::Error::denied(format!(
            "{tool} is denied to user {user} (deniedTools in users.yaml or crews.yaml)"
        )));
    }
    if !allow.iter().any(|p| p.matches(tool)) {
        return Err(avix_proto::Error::denied(format!(
            "{tool} is not permitted for user {user} (additionalTools in users.yaml or a crew's allowedTools)"
        )));
    }
    Ok(())
}

/// The grants for a spawn: what the manifest asks (narrowed by the request), that the user
/// may use and, for a child, that its parent holds. Fails if a required tool is left out.
pub fn compute_grants(
    kernel: &Kernel,
    user: &UserName,
    agent: &InstalledAgent,
    req: &SpawnRequest,
    parent: Option<&Process>,
) -> Result<(Grants, Vec<DeniedTool>), SpawnError> {
    let (allow, deny) = user_patterns(kernel, user)?;
    let spec = &agent.manifest.spec;
    let narrowed: Option<HashSet<&str>> = req
        .tools
        .as_ref()
        .map(|t| t.iter().map(|n| n.as_str()).collect());
    let mut grants = Grants::default();
    let mut denied = Vec::new();
    let required: HashSet<&str> = spec.tools.required.iter().map(|t| t.as_str()).collect();
    // Exact names as written; optional patterns expanded to the tools installed now (those a
    // pattern brings in are granted when permitted and silently left out otherwise).
    let mut candidates: Vec<(String, bool)> = spec
        .tools
        .required
        .iter()
        .map(|t| (t.to_string(), true))
        .collect();
    for p in &spec.tools.optional {
        if p.is_exact() {
            candidates.push((p.as_str().to_owned(), true));
        } else {
            for d in kernel.tools().descriptors() {
                let n = d.name.as_str();
                if p.matches(n) && !candidates.iter().any(|(c, _)| c == n) {
                    candidates.push((n.to_owned(), false));
                }
            }
        }
    }
    for (name, exact) in &candidates {
        let name = name.as_str();
        let reason = if kernel.tools().get(name).is_none() {
            Some("no such tool is installed".to_owned())
        } else if deny.iter().any(|p| p.matches(name)) {
            Some(format!(
                "denied to user {user} (deniedTools in users.yaml or crews.yaml)"
            ))
        } else if !allow.iter().any(|p| p.matches(name)) {
            Some(format!(
                "not permitted for user {user} (add it to additionalTools in users.yaml or allowedTools of a crew)"
            ))
        } else if let Some(p) = parent
            && !p.allows(name)
        {
            Some(format!("the parent (pid {}) does not hold it", p.pid))
        } else if let Some(n) = &narrowed
            && !n.contains(name)
        {
            Some("not in the tools the spawn request asked for".to_owned())
        } else {
            None
        };
        match reason {
            None => {
                grants.tools.insert(name.to_owned());
            }
            Some(r)
                if required.contains(name)
                    && narrowed.as_ref().is_none_or(|n| n.contains(name)) =>
            {
                return Err(SpawnError::ToolRequired {
                    agent: agent.manifest.metadata.name.to_string(),
                    tool: name.to_owned(),
                    reason: r,
                });
            }
            Some(r) if *exact => denied.push(DeniedTool {
                tool: name.to_owned(),
                reason: r,
            }),
            Some(_) => {}
        }
    }
    if let Some(n) = &narrowed {
        for t in n {
            if !spec.tools.required.iter().any(|x| x.as_str() == *t)
                && !spec.tools.optional.iter().any(|p| p.matches(t))
            {
                denied.push(DeniedTool {
                    tool: (*t).to_owned(),
                    reason: "the manifest does not request it".into(),
                });
            }
        }
    }
    Ok((grants, denied))
}

/// A fresh invocation id (UUID v4 form).
pub fn invocation_id() -> String {
    let b: [u8; 16] = rand::random();
    let h = avix_auth::hex::encode(&b);
    format!(
        "{}-{}-4{}-{:x}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        (b[8] & 0x3) | 0x8,
        &h[17..20],
        &h[20..32]
    )
}

/// Where a run comes from.
#[derive(Debug)]
pub(crate) enum Origin {
    /// A new run.
    New,
    /// A run a restart interrupted, continued in its own journal under a new PID.
    Interrupted(Adopt),
    /// A snapshot restored (`snapshots.rs`) or a run forked (`changes.rs`): a new invocation
    /// that starts with a conversation so far.
    Restored {
        /// Where it comes from.
        from: Provenance,
        /// Its own workspace (`None`: its user's).
        workspace: Option<String>,
        /// What the run held.
        grants: Grants,
        /// The conversation.
        messages: Vec<avix_proto::llm::Message>,
        /// The last turn's calls without results.
        pending: Vec<crate::executor::PendingCall>,
    },
}

/// What a restored run comes from.
#[derive(Debug, Clone)]
pub(crate) enum Provenance {
    /// A snapshot file.
    Snapshot(String),
    /// Another run, forked at a turn.
    Fork {
        /// The run.
        from: avix_proto::InvocationId,
        /// The turn.
        at: u32,
    },
}

impl std::fmt::Display for Provenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Provenance::Snapshot(s) => write!(f, "snapshot {s}"),
            Provenance::Fork { from, at } => write!(f, "fork of {from} at turn {at}"),
        }
    }
}

impl Origin {
    /// The workspace it asks for, if not its user's.
    fn workspace(&self) -> Option<&str> {
        match self {
            Origin::Interrupted(a) => a.workspace.as_deref(),
            Origin::Restored { workspace, .. } => workspace.as_deref(),
            Origin::New => None,
        }
    }

    fn adopted(&self) -> Option<&Adopt> {
        match self {
            Origin::Interrupted(a) => Some(a),
            _ => None,
        }
    }
}

/// A run a restart interrupted, to continue under a new PID (see `recovery.rs`).
#[derive(Debug)]
pub(crate) struct Adopt {
    /// Its journal.
    pub key: avix_vfs::storage::InvocationKey,
    /// Its session.
    pub session: avix_proto::SessionId,
    /// The PID it had.
    pub previous_pid: Pid,
    /// What it held.
    pub grants: Grants,
    /// The conversation so far.
    pub messages: Vec<avix_proto::llm::Message>,
    /// The last turn's calls without results.
    pub pending: Vec<crate::executor::PendingCall>,
    /// Its own workspace (`None`: its user's).
    pub workspace: Option<String>,
}

impl Kernel {
    /// Spawns `req` as `caller` asks ([`crate::policy::spawn_for`]: a person for themselves;
    /// an agent a child, `parent` being its own process, whose grants the child's are a subset
    /// of). Returns once the spawn is durable in the journal.
    pub async fn spawn(
        self: &Arc<Self>,
        caller: &Caller,
        req: SpawnRequest,
        parent: Option<Arc<Process>>,
    ) -> Result<Arc<Process>, SpawnError> {
        let user = crate::policy::spawn_for(caller, parent.as_deref())?;
        self.spawn_with(&user, req, parent, Origin::New).await
    }

    /// [`Kernel::spawn`], or (by `origin`) the continuation of an interrupted run or a restored
    /// snapshot: admitted
    /// ([`Kernel::admit`]), planned ([`Kernel::plan`]), given a PID, an invocation and its
    /// journal ([`Kernel::allocate`]), then made durable and started ([`Kernel::launch`]).
    pub(crate) async fn spawn_with(
        self: &Arc<Self>,
        user: &UserName,
        req: SpawnRequest,
        parent: Option<Arc<Process>>,
        origin: Origin,
    ) -> Result<Arc<Process>, SpawnError> {
        let config = self.config().get();
        self.admit(&config, user, &req)?;
        let plan = self.plan(&config, user, &req, parent.as_deref(), &origin)?;
        let slot = self.allocate(user, &req, &plan, parent.as_deref(), origin.adopted())?;
        self.launch(&config, user, req, plan, slot, parent, origin)
            .await
    }

    /// Whether `user` may start one more agent now: not a guest, known, a goal, within the
    /// daemon's and the user's agent quotas.
    fn admit(
        &self,
        config: &Config,
        user: &UserName,
        req: &SpawnRequest,
    ) -> Result<(), SpawnError> {
        if config.role_of(user) == Role::Guest {
            return Err(SpawnError::Forbidden(format!(
                "user {user} is a guest; guests cannot spawn agents"
            )));
        }
        if config.users.get(user.as_str()).is_none()
            && config.auth.identity(user.as_str()).is_none()
        {
            return Err(SpawnError::Forbidden(format!("unknown user {user}")));
        }
        if req.goal.trim().is_empty() {
            return Err(SpawnError::BadRequest("the goal is empty".into()));
        }
        let max = config.kernel.scheduler.max_concurrent_agents as usize;
        if self.procs().live_count() >= max {
            return Err(SpawnError::Quota(format!(
                "{max} agents are running, the most kernel.yaml scheduler.maxConcurrentAgents allows"
            )));
        }
        if let Some(u) = config.users.get(user.as_str())
            && !u
                .quota
                .agents
                .allows(self.procs().live_count_of(user) as u64 + 1)
        {
            return Err(SpawnError::Quota(format!(
                "user {user} already runs as many agents as quota.agents in users.yaml allows"
            )));
        }
        Ok(())
    }

    /// Everything the run will be, decided before anything is allocated (so a refusal costs
    /// nothing): the agent and its prompt, parameters, grants, the resolved model, the tools
    /// that need approval, and the conversation a resumed session carries over.
    fn plan(
        &self,
        config: &Config,
        user: &UserName,
        req: &SpawnRequest,
        parent: Option<&Process>,
        origin: &Origin,
    ) -> Result<Plan, SpawnError> {
        let agent = catalog::find(self.vfs(), user, req.agent.as_str())?;
        let system_prompt = catalog::system_prompt(self.vfs(), &agent)?;
        let mut manifest_params = agent.manifest.spec.defaults.clone();
        for name in PARAM_NAMES {
            if let Some(v) = agent.manifest.spec.limits.get(name) {
                manifest_params.set(name, v);
            }
        }
        let resolution = resolve_params(self, user, &manifest_params, &req.params)?;
        let (grants, denied) = match origin {
            // What it held, as far as the user may still use it.
            Origin::Interrupted(Adopt { grants, .. }) | Origin::Restored { grants, .. } => {
                let mut g = grants.clone();
                g.tools.retain(|t| permitted(self, user, t).is_ok());
                g.once.retain(|t, _| permitted(self, user, t).is_ok());
                (g, Vec::new())
            }
            Origin::New => compute_grants(self, user, &agent, req, parent)?,
        };
        let (model, model_source) = match (
            &req.model,
            &agent.manifest.spec.model,
            &config.kernel.models.default,
        ) {
            (Some(m), _, _) => (m.clone(), "spawn"),
            (None, Some(m), _) => (m.clone(), "manifest"),
            (None, None, Some(m)) => (m.clone(), "kernel.yaml"),
            (None, None, None) => (String::new(), "llm.yaml defaultProvider"),
        };
        // Resolve the model now: a spawn with no usable provider fails here, clearly, and
        // status and journal show the provider/model the run uses.
        let model = match &self.llm_service {
            Some(svc) => match svc.resolve(&model) {
                Ok((p, m)) if m.is_empty() => p,
                Ok((p, m)) => format!("{p}/{m}"),
                Err(e) => return Err(SpawnError::BadRequest(e.to_string())),
            },
            None => model,
        };
        let mut hil_required: HashSet<String> = agent
            .manifest
            .spec
            .hil_required
            .iter()
            .map(|t| t.to_string())
            .collect();
        hil_required.extend(config.kernel.safety.hil_required_tools.iter().cloned());
        let history = match (parent, &req.session) {
            _ if !matches!(origin, Origin::New) => Vec::new(),
            (None, Some(sid)) => self
                .session_conversation(user, sid, agent.manifest.metadata.name.as_str())
                .map_err(|e| match e {
                    crate::sessions::SessionError::Io(m) => SpawnError::Io(m),
                    e => SpawnError::Session(e),
                })?,
            _ => Vec::new(),
        };
        Ok(Plan {
            agent,
            system_prompt,
            resolution,
            grants,
            denied,
            model,
            model_source,
            hil_required,
            history,
        })
    }

    /// A PID, the invocation's id, directory and open journal, and its session.
    fn allocate(
        &self,
        user: &UserName,
        req: &SpawnRequest,
        plan: &Plan,
        parent: Option<&Process>,
        adopt: Option<&Adopt>,
    ) -> Result<Slot, SpawnError> {
        let pid = self
            .pids()
            .allocate()
            .map_err(|e| SpawnError::Io(format!("cannot allocate a PID: {e}")))?;
        let (key, session, new_session) = match adopt {
            Some(a) => (a.key.clone(), a.session.clone(), false),
            None => {
                let id = invocation_id();
                let (session, new_session) = match (parent, &req.session) {
                    (Some(p), _) => (p.session.clone(), false),
                    (None, Some(sid)) => (sid.clone(), false),
                    (None, None) => (avix_proto::SessionId::from(invocation_id()), true),
                };
                let agent = plan.agent.manifest.metadata.name.as_str();
                let key = avix_vfs::storage::InvocationKey::new(user.as_str(), agent, &id)
                    .ok_or_else(|| {
                        SpawnError::Io(format!(
                            "cannot name the journal of {user}'s run {id} of {agent}"
                        ))
                    })?;
                (key, session, new_session)
            }
        };
        let id = key.id().to_owned();
        let journal = self
            .journals()
            .open(&key)
            .map_err(|e| SpawnError::Io(format!("cannot open the journal: {e}")))?;
        Ok(Slot {
            pid,
            id,
            session,
            new_session,
            journal,
        })
    }

    /// Builds the process, makes its first journal line durable, then makes it visible
    /// (process table, session record, `/proc`, the event) and starts its executor.
    #[allow(clippy::too_many_arguments)]
    async fn launch(
        self: &Arc<Self>,
        config: &Config,
        user: &UserName,
        req: SpawnRequest,
        plan: Plan,
        slot: Slot,
        parent: Option<Arc<Process>>,
        origin: Origin,
    ) -> Result<Arc<Process>, SpawnError> {
        let Slot {
            pid,
            id,
            session,
            new_session,
            journal,
        } = slot;
        let name = plan.agent.manifest.metadata.name.clone();
        let granted = plan.grants.names();
        let resolved = Resolved {
            pid,
            agent: name.to_string(),
            user: user.to_string(),
            model: plan.model.clone(),
            model_source: plan.model_source.to_owned(),
            params: plan.resolution.params,
            granted: granted.clone(),
            denied: plan.denied,
            hil_required: {
                let mut v: Vec<String> = plan.hil_required.iter().cloned().collect();
                v.sort();
                v
            },
        };
        let caller = Caller {
            principal: Principal::Agent {
                user: user.clone(),
                pid,
            },
            role: config.role_of(user),
            crews: config.crews_of(user),
            door: avix_vfs::Door::Kernel,
        };
        let interactive = req
            .interactive
            .unwrap_or(plan.agent.manifest.spec.interactive);
        // A fork works in its own copy; a child in its parent's workspace.
        let own_workspace = origin
            .workspace()
            .map(str::to_owned)
            .or_else(|| parent.as_ref().map(|p| p.workspace.clone()))
            .filter(|w| *w != self.workspace_of(user));
        let workspace = own_workspace
            .clone()
            .unwrap_or_else(|| self.workspace_of(user));
        let (process, ends) = Process::new(
            ProcessSpec {
                pid,
                user: user.clone(),
                agent: name.clone(),
                version: plan.agent.manifest.metadata.version.clone(),
                goal: req.goal.clone(),
                parent: parent.as_ref().map(|p| p.pid),
                session: session.clone(),
                model: plan.model.clone(),
                interactive,
                caller,
                journal,
                resolved,
                limits: plan.resolution.limits,
                system_prompt: plan.system_prompt,
                hil_required: plan.hil_required,
                workspace,
            },
            plan.grants,
        );
        let first = match &origin {
            Origin::Interrupted(a) => JournalEvent::Resumed {
                pid,
                previous_pid: a.previous_pid,
            },
            Origin::New | Origin::Restored { .. } => JournalEvent::Spawned {
                pid,
                agent: name.to_string(),
                version: process.version.clone(),
                user: user.to_string(),
                parent: process.parent,
                goal: req.goal.clone(),
                model: plan.model,
                granted,
                session: Some(session.clone()),
                interactive,
                workspace: own_workspace,
            },
        };
        let mut lines = vec![first];
        if let Origin::Restored { from, messages, .. } = &origin {
            // The restored conversation is this run's own record from its first lines on.
            lines.push(match from {
                Provenance::Snapshot(file) => JournalEvent::Signal {
                    signal: "SIGRESTORE".into(),
                    from: "kernel".into(),
                    payload: Some(serde_json::json!({"snapshot": file})),
                },
                Provenance::Fork { from, at } => JournalEvent::Forked {
                    from: from.clone(),
                    at: *at,
                },
            });
            lines.extend(messages.iter().map(|m| JournalEvent::Message {
                role: m.role,
                content: m.content.clone(),
            }));
        }
        let last = lines.pop().unwrap_or(JournalEvent::State {
            state: avix_proto::agent::ProcState::Running,
            waiting_on: None,
        });
        for l in lines {
            process.journal.append(l);
        }
        process
            .journal
            .append_durable(last)
            .await
            .map_err(|e| SpawnError::Io(e.to_string()))?;
        self.mint_token(&process, false);
        self.procs().insert(process.clone());
        let inv = avix_proto::agent::SessionInvocation {
            id: id.clone().into(),
            agent: name.to_string(),
            pid,
            parent: process.parent,
            spawned_at: process.started_at,
        };
        let (k, u, sid, agent_name, goal) = (
            self.clone(),
            user.clone(),
            session.clone(),
            name.to_string(),
            req.goal.clone(),
        );
        let adopted = origin.adopted().is_some();
        let recorded = tokio::task::spawn_blocking(move || {
            if adopted {
                // The session lists this invocation already.
                return Ok(());
            }
            let create = new_session.then_some((agent_name.as_str(), goal.as_str()));
            k.session_record(&u, &sid, create, inv)
        })
        .await;
        if let Ok(Err(e)) | Err(e) =
            recorded.map_err(|e| crate::sessions::SessionError::Io(e.to_string()))
        {
            tracing::warn!(pid = %pid, session = %session, error = %e, "cannot record the invocation in its session");
        }
        if let Some(p) = &parent {
            p.inner().children.push(pid);
        }
        crate::procfs::publish_process(self, &process);
        let started = avix_proto::event::Spawned {
            agent: name.to_string(),
            goal: req.goal,
            session,
            invocation: id.into(),
        };
        let begin = match origin {
            Origin::Interrupted(a) => {
                tracing::info!(pid = %pid, previous = %a.previous_pid, agent = %name, user = %user, "resumed after a restart");
                self.events()
                    .publish(&process, &avix_proto::event::Resumed(started));
                crate::executor::Begin::Resume {
                    messages: a.messages,
                    pending: a.pending,
                }
            }
            Origin::Restored {
                from,
                messages,
                pending,
                ..
            } => {
                tracing::info!(pid = %pid, agent = %name, user = %user, from = %from, "restored");
                self.events().publish(&process, &started);
                crate::executor::Begin::Resume { messages, pending }
            }
            Origin::New => {
                tracing::info!(pid = %pid, agent = %name, user = %user, "spawned");
                self.events().publish(&process, &started);
                crate::executor::Begin::Fresh(plan.history)
            }
        };
        crate::executor::start(self.clone(), process.clone(), ends, begin);
        Ok(process)
    }
}

/// What a spawn will run ([`Kernel::plan`]).
struct Plan {
    agent: InstalledAgent,
    system_prompt: String,
    resolution: Resolution,
    grants: Grants,
    denied: Vec<DeniedTool>,
    model: String,
    model_source: &'static str,
    hil_required: HashSet<String>,
    history: Vec<avix_proto::llm::Message>,
}

/// Where a spawn runs ([`Kernel::allocate`]).
struct Slot {
    pid: Pid,
    id: String,
    session: avix_proto::SessionId,
    new_session: bool,
    journal: crate::journal::Journal,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocation_ids_look_like_uuids() {
        let id = invocation_id();
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(id.as_bytes()[14], b'4');
        assert_ne!(invocation_id(), id);
    }
}
