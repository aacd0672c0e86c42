//! Installed agents: `/bin/<name>@<version>/agent.yaml` (system) and
//! `/users/<u>/bin/<name>@<version>/agent.yaml` (per user). The highest version wins within a
//! scope, and a system agent wins a name clash with a user's.

use avix_proto::UserName;
use avix_proto::agent::{AgentManifest, parse_version};
pub use avix_proto::agent::{CatalogEntry, Scope};
use avix_vfs::{Caller, EntryKind, Vfs, VfsError, VfsPath};

use crate::spawn::SpawnError;

/// An installed agent, loaded.
#[derive(Debug, Clone)]
pub struct InstalledAgent {
    /// Its manifest.
    pub manifest: AgentManifest,
    /// Its directory.
    pub dir: VfsPath,
    /// Where it is installed.
    pub scope: Scope,
}

fn bin_dirs(user: &UserName) -> [(Scope, String); 2] {
    [
        (Scope::System, "/bin".to_owned()),
        (Scope::User, format!("/users/{user}/bin")),
    ]
}

/// `(name, version, dir)` of every `<name>@<version>` directory in `dir`, highest version
/// first per name.
/// A directory that cannot be read for another reason than being absent (EMFILE, EIO) is an
/// error: it must not pass for "no agents installed".
fn versions(vfs: &Vfs, dir: &str) -> Result<Vec<(String, String, VfsPath)>, VfsError> {
    let k = Caller::kernel();
    let Ok(dir) = VfsPath::parse(dir) else {
        return Ok(Vec::new());
    };
    let entries = match vfs.list(&k, &dir) {
        Ok(e) => e,
        Err(VfsError::NotFound(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out: Vec<(String, String, VfsPath)> = entries
        .into_iter()
        .filter(|e| e.kind == EntryKind::Dir)
        .filter_map(|e| {
            let (name, version) = e.name.split_once('@')?;
            parse_version(version)?;
            Some((name.to_owned(), version.to_owned(), dir.join(&e.name).ok()?))
        })
        .collect();
    out.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| parse_version(&b.1).cmp(&parse_version(&a.1)))
    });
    Ok(out)
}

/// Loads the agent `name` as seen by `user`.
pub fn find(vfs: &Vfs, user: &UserName, name: &str) -> Result<InstalledAgent, SpawnError> {
    for (scope, dir) in bin_dirs(user) {
        let found = versions(vfs, &dir)
            .map_err(|e| SpawnError::Io(format!("cannot read the installed agents: {e}")))?;
        if let Some((_, _, path)) = found.into_iter().find(|(n, _, _)| n == name) {
            return load(vfs, &path, scope);
        }
    }
    let available: Vec<String> = list(vfs, user).into_iter().map(|e| e.name).collect();
    Err(SpawnError::UnknownAgent {
        name: name.to_owned(),
        available,
    })
}

fn load(vfs: &Vfs, dir: &VfsPath, scope: Scope) -> Result<InstalledAgent, SpawnError> {
    let k = Caller::kernel();
    let file = dir
        .join("agent.yaml")
        .map_err(|e| SpawnError::BadManifest {
            path: dir.to_string(),
            reason: e.to_string(),
        })?;
    let bytes = vfs.read(&k, &file).map_err(|e| SpawnError::BadManifest {
        path: file.to_string(),
        reason: e.to_string(),
    })?;
    let manifest = AgentManifest::parse(&bytes).map_err(|reason| SpawnError::BadManifest {
        path: file.to_string(),
        reason: reason.message,
    })?;
    let dirname = dir.file_name().unwrap_or_default();
    let expected = format!("{}@{}", manifest.metadata.name, manifest.metadata.version);
    if dirname != expected {
        return Err(SpawnError::BadManifest {
            path: file.to_string(),
            reason: format!("the manifest says {expected} but it is installed as {dirname}"),
        });
    }
    Ok(InstalledAgent {
        manifest,
        dir: dir.clone(),
        scope,
    })
}

/// The system prompt of an installed agent.
pub fn system_prompt(vfs: &Vfs, agent: &InstalledAgent) -> Result<String, SpawnError> {
    if let Some(p) = &agent.manifest.spec.system_prompt {
        return Ok(p.clone());
    }
    let Some(rel) = &agent.manifest.spec.system_prompt_path else {
        return Ok(String::new());
    };
    let path =
        VfsPath::parse(&format!("{}/{rel}", agent.dir)).map_err(|e| SpawnError::BadManifest {
            path: agent.dir.to_string(),
            reason: e.to_string(),
        })?;
    let bytes = vfs
        .read(&Caller::kernel(), &path)
        .map_err(|e| SpawnError::BadManifest {
            path: path.to_string(),
            reason: format!("systemPromptPath: {e}"),
        })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Every agent `user` can spawn (system agents shadow user agents of the same name).
pub fn list(vfs: &Vfs, user: &UserName) -> Vec<CatalogEntry> {
    let mut out: Vec<CatalogEntry> = Vec::new();
    for (scope, dir) in bin_dirs(user) {
        let mut last = String::new();
        for (name, version, path) in versions(vfs, &dir).unwrap_or_default() {
            if name == last || out.iter().any(|e| e.name == name) {
                continue;
            }
            last.clone_from(&name);
            let description = load(vfs, &path, scope)
                .map(|a| a.manifest.metadata.description)
                .unwrap_or_else(|e| format!("(invalid: {e})"));
            out.push(CatalogEntry {
                name,
                version,
                scope,
                description,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
