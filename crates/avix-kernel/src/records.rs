//! The record of past and present runs, asked for by a caller: the invocations a caller may
//! see (its own; every user's for operators), one invocation by id, and the agents a user may
//! run. The rules are `policy`'s; every door calls these.

use std::collections::HashMap;
use std::sync::Arc;

use avix_proto::agent::{CatalogEntry, InvocationRecord};
use avix_proto::llm::Message;
use avix_proto::time::Timestamp;
use avix_proto::{Error, UserName};
use avix_vfs::Caller;
use avix_vfs::storage::InvocationKey;

use crate::process::Process;
use crate::{Kernel, catalog, policy};

impl Kernel {
    /// The processes `caller` may see, by PID: their own, or (operators, unless `mine`)
    /// everyone's; with `live`, only those still running.
    pub fn processes_as(
        &self,
        caller: &Caller,
        mine: bool,
        live: bool,
    ) -> Vec<avix_proto::agent::ProcessStatus> {
        let everyone = policy::sees_everyone(caller) && !mine;
        let me = caller.user_name();
        let mut v: Vec<_> = self
            .procs()
            .all()
            .into_iter()
            .filter(|p| everyone || Some(&p.user) == me)
            .filter(|p| !live || !p.state().is_terminal())
            .map(|p| p.status())
            .collect();
        v.sort_by_key(|s| s.pid);
        v
    }

    /// The invocation record of `p` as it stands.
    pub fn record_of(&self, p: &Process) -> InvocationRecord {
        let i = p.inner();
        InvocationRecord {
            id: p.journal.id().to_owned(),
            agent: p.agent.to_string(),
            version: p.version.clone(),
            user: p.user.to_string(),
            pid: p.pid,
            parent: p.parent,
            session: Some(p.session.clone()),
            goal: p.goal.clone(),
            model: p.model.clone(),
            spawned_at: p.started_at,
            ended_at: i.ended_at,
            state: i.state,
            exit_code: i.exit.as_ref().map(|e| e.code),
            exit_reason: i.exit.as_ref().map(|e| e.reason.clone()),
            tokens: i.tokens,
            cost_usd: i.cost_usd,
            tool_calls: i.tool_calls,
            turns: i.turns,
        }
    }

    /// Counts the LLM tokens each user's invocations of the last 24 hours used, so the
    /// users.yaml token quota holds across restarts. Reads the invocation records: call it
    /// off the boot path.
    pub fn seed_llm_usage(&self) -> u64 {
        let Some(svc) = &self.llm_service else {
            return 0;
        };
        let since = Timestamp::now().unix() - 24 * 3600;
        let users: Vec<UserName> = self
            .config
            .get()
            .users
            .users
            .iter()
            .map(|u| u.username.clone())
            .collect();
        let mut total = 0;
        for u in users {
            for r in self.history(&u, None) {
                let at = r.ended_at.unwrap_or(r.spawned_at);
                // Live runs are counted as they go.
                if at.unix() >= since && r.ended_at.is_some() {
                    svc.ledger()
                        .seed_user_tokens(u.as_str(), at, r.tokens.total());
                    total += r.tokens.total();
                }
            }
        }
        total
    }

    /// Past invocations of `user` (all agents, or one), newest first, from the records next
    /// to the journals (a live run's from its process).
    pub fn history(&self, user: &UserName, agent: Option<&str>) -> Vec<InvocationRecord> {
        let live: HashMap<avix_proto::InvocationId, Arc<Process>> = self
            .procs()
            .all()
            .into_iter()
            .filter(|p| p.user == *user && !p.state().is_terminal())
            .map(|p| (p.journal.id().to_owned(), p))
            .collect();
        let mut out: Vec<InvocationRecord> = self
            .journals()
            .list(user.as_str(), agent)
            .iter()
            .filter_map(|k| self.record_at(k, live.get(k.id())))
            .collect();
        out.sort_by(|a, b| b.spawned_at.cmp(&a.spawned_at).then(b.pid.cmp(&a.pid)));
        out
    }

    /// The record of invocation `key`: the live process's, else the one in the store.
    fn record_at(
        &self,
        key: &InvocationKey,
        live: Option<&Arc<Process>>,
    ) -> Option<InvocationRecord> {
        match live {
            Some(p) => Some(self.record_of(p)),
            None => self.journals().record(key),
        }
    }

    /// The invocations `caller` asks for: of `who` (a user it may see) or of everyone it may
    /// see, of one agent or all, newest first, at most `limit`.
    pub fn history_as(
        &self,
        caller: &Caller,
        who: Option<&str>,
        agent: Option<&str>,
        limit: usize,
    ) -> Result<Vec<InvocationRecord>, Error> {
        let mut v: Vec<InvocationRecord> = self
            .users_asked(caller, who)?
            .iter()
            .flat_map(|u| self.history(u, agent))
            .collect();
        v.sort_by(|x, y| y.spawned_at.cmp(&x.spawned_at).then(y.pid.cmp(&x.pid)));
        v.truncate(limit);
        Ok(v)
    }

    /// One invocation by id, if `caller` may see it, with its conversation. Looks only in the
    /// directories that can hold it (`agents/<agent>/<id>` of the users the caller may see).
    pub fn invocation_as(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(InvocationRecord, Vec<Message>), Error> {
        let missing = || Error::not_found(format!("no invocation {id} (proc history lists yours)"));
        if !avix_vfs::storage::invocations::component(id) {
            return Err(missing());
        }
        for user in self.users_asked(caller, None)? {
            let Some(key) = self.journals().find(user.as_str(), id) else {
                continue;
            };
            let live = self
                .procs()
                .all()
                .into_iter()
                .find(|p| p.journal.id() == id && !p.state().is_terminal());
            if let Some(rec) = self.record_at(&key, live.as_ref()) {
                return Ok((rec, self.journals().conversation(&key)));
            }
        }
        Err(missing())
    }

    /// The agents `who` (the caller's own user when `None`) may run, for a caller that may
    /// see that user.
    pub fn catalog_as(
        &self,
        caller: &Caller,
        who: Option<&str>,
    ) -> Result<Vec<CatalogEntry>, Error> {
        let user = match who {
            Some(u) => self.users_asked(caller, Some(u))?.remove(0),
            None => caller
                .user_name()
                .cloned()
                .ok_or_else(|| Error::invalid("name the user whose catalog to list"))?,
        };
        Ok(catalog::list(self.vfs(), &user))
    }

    pub(crate) fn users_asked(
        &self,
        caller: &Caller,
        who: Option<&str>,
    ) -> Result<Vec<UserName>, Error> {
        let own = caller.user_name().cloned();
        let all = || {
            self.config()
                .get()
                .users
                .users
                .iter()
                .map(|u| u.username.clone())
                .collect()
        };
        match own {
            Some(own) => policy::users_asked(caller, &own, who, all),
            // Kernel code sees everyone.
            None => match who {
                Some(u) => Ok(vec![
                    UserName::new(u).map_err(|e| Error::invalid(e.to_string()))?,
                ]),
                None => Ok(all()),
            },
        }
    }
}
