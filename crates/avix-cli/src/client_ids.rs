//! Ids on the command line: a unique prefix of at least four characters stands for the whole
//! id, as in git. Invocation ids are looked up in your run history, session ids in your
//! sessions, approval ids in the approval list; a prefix matching several is refused with the
//! candidates. Anything else goes to the server as given (which says when it does not exist).

use anyhow::bail;
use avix_client::Client;
use avix_proto::agent::{HilRequest, InvocationRecord, SessionRecord};
use avix_proto::op::{HilListArgs, HistoryArgs, Op, UserArgs};

/// The shortest prefix looked up.
const MIN_PREFIX: usize = 4;

/// What kind of id.
#[derive(Debug, Clone, Copy)]
pub(crate) enum IdKind {
    /// A run.
    Invocation,
    /// A session.
    Session,
    /// An approval request.
    Hil,
}

impl IdKind {
    fn name(self) -> &'static str {
        match self {
            IdKind::Invocation => "invocation",
            IdKind::Session => "session",
            IdKind::Hil => "approval",
        }
    }
}

/// The id `given` stands for among `known`: itself when known whole or not a prefix of
/// anything known; the one id it starts; an error naming the candidates when it starts more.
pub(crate) fn pick(kind: IdKind, given: &str, known: &[String]) -> anyhow::Result<String> {
    if given.len() < MIN_PREFIX || known.iter().any(|k| k == given) {
        return Ok(given.to_owned());
    }
    let mut hits: Vec<&String> = known.iter().filter(|k| k.starts_with(given)).collect();
    hits.sort();
    hits.dedup();
    match hits.as_slice() {
        [] => Ok(given.to_owned()),
        [one] => Ok((*one).clone()),
        many => bail!(
            "the {} id prefix {given} is ambiguous: it starts {} ({}); give more characters",
            kind.name(),
            many.len(),
            many.iter()
                .take(10)
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The whole id `given` stands for (see the module).
pub(crate) async fn resolve(c: &Client, kind: IdKind, given: &str) -> anyhow::Result<String> {
    if given.len() < MIN_PREFIX {
        return Ok(given.to_owned());
    }
    let known: Vec<String> = match kind {
        IdKind::Invocation => c
            .run_as::<Vec<InvocationRecord>>(&Op::History(HistoryArgs {
                agent: None,
                user: None,
                limit: Some(10_000),
            }))
            .await?
            .into_iter()
            .map(|r| r.id.to_string())
            .collect(),
        IdKind::Session => c
            .run_as::<Vec<SessionRecord>>(&Op::SessionList(UserArgs { user: None }))
            .await?
            .into_iter()
            .map(|s| s.id.to_string())
            .collect(),
        IdKind::Hil => c
            .run_as::<Vec<HilRequest>>(&Op::HilList(HilListArgs { pid: None }))
            .await?
            .into_iter()
            .map(|h| h.id.to_string())
            .collect(),
    };
    pick(kind, given, &known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unique_prefix_stands_for_the_id() {
        let known: Vec<String> = ["3c347fb0-aaaa", "3c34ffff-bbbb", "9e1f0000-cccc"]
            .map(String::from)
            .to_vec();
        let p = |g: &str| pick(IdKind::Session, g, &known);
        assert_eq!(p("9e1f").unwrap(), "9e1f0000-cccc");
        assert_eq!(p("3c347").unwrap(), "3c347fb0-aaaa");
        assert_eq!(p("3c3").unwrap(), "3c3", "too short to look up");
        assert_eq!(p("zzzz").unwrap(), "zzzz", "unknown: the server says so");
        assert_eq!(p("3c347fb0-aaaa").unwrap(), "3c347fb0-aaaa");
        let e = p("3c34").unwrap_err().to_string();
        assert!(
            e.contains("ambiguous") && e.contains("3c347fb0-aaaa") && e.contains("3c34ffff-bbbb"),
            "{e}"
        );
    }
}
