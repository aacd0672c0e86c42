//! The envelope every authored Avix document shares:
//! `apiVersion: avix/v1`, `kind: <PascalCase>`, `metadata: {...}`, `spec: {...}`.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::time::Timestamp;
use crate::yaml::{self, YamlError};

/// The only API version this build reads and writes.
pub const API_VERSION: &str = "avix/v1";

/// A document body type: names its `kind` and checks what serde cannot (uniqueness,
/// cross-field rules).
pub trait Kind: Serialize + DeserializeOwned {
    /// The `kind:` value, e.g. `Users`.
    const KIND: &'static str;

    /// Checks rules beyond the schema. Each problem is one sentence saying what is wrong.
    fn validate(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Free-form metadata; the common keys are typed, the rest is kept as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// Document name, where the kind has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When the document was last written by a tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<Timestamp>,
    /// Anything else a human put there.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A whole document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Document<S> {
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// Always `S::KIND`.
    pub kind: String,
    /// Metadata.
    #[serde(default)]
    pub metadata: Metadata,
    /// The body.
    pub spec: S,
}

/// A document that does not parse or does not validate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Not YAML, or not the schema.
    #[error(transparent)]
    Yaml(#[from] YamlError),
    /// Wrong `apiVersion`.
    #[error("apiVersion is {found:?}, expected {API_VERSION:?}")]
    ApiVersion {
        /// What the document said.
        found: String,
    },
    /// Wrong `kind`.
    #[error("kind is {found:?}, expected {expected:?}")]
    Kind {
        /// What the document said.
        found: String,
        /// What this file must hold.
        expected: &'static str,
    },
    /// Parsed, but breaks a rule.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
}

impl<S: Kind> Document<S> {
    /// Wraps a body with the standard envelope.
    pub fn new(spec: S) -> Self {
        Self {
            api_version: API_VERSION.to_owned(),
            kind: S::KIND.to_owned(),
            metadata: Metadata::default(),
            spec,
        }
    }

    /// Parses and validates a document.
    pub fn parse(bytes: &[u8]) -> Result<Self, DocumentError> {
        let doc: Self = yaml::from_slice(bytes)?;
        doc.check()?;
        Ok(doc)
    }

    /// Checks the envelope and the body rules.
    pub fn check(&self) -> Result<(), DocumentError> {
        if self.api_version != API_VERSION {
            return Err(DocumentError::ApiVersion {
                found: self.api_version.clone(),
            });
        }
        if self.kind != S::KIND {
            return Err(DocumentError::Kind {
                found: self.kind.clone(),
                expected: S::KIND,
            });
        }
        let problems = self.spec.validate();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(DocumentError::Invalid(problems))
        }
    }

    /// Writes the document as YAML, stamping `metadata.lastUpdated`.
    pub fn to_yaml(&self) -> Result<String, YamlError> {
        yaml::to_string(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Thing {
        n: u32,
    }

    impl Kind for Thing {
        const KIND: &'static str = "Thing";
        fn validate(&self) -> Vec<String> {
            if self.n == 0 {
                vec!["n must be positive".into()]
            } else {
                vec![]
            }
        }
    }

    #[test]
    fn round_trips() {
        let doc = Document::new(Thing { n: 3 });
        let text = doc.to_yaml().unwrap();
        assert_eq!(Document::<Thing>::parse(text.as_bytes()).unwrap(), doc);
    }

    #[test]
    fn checks_version_kind_and_rules() {
        let e = Document::<Thing>::parse(b"apiVersion: avix/v2\nkind: Thing\nspec: {n: 1}\n");
        assert!(matches!(e, Err(DocumentError::ApiVersion { .. })));
        let e = Document::<Thing>::parse(b"apiVersion: avix/v1\nkind: Other\nspec: {n: 1}\n");
        assert!(e.unwrap_err().to_string().contains("expected \"Thing\""));
        let e = Document::<Thing>::parse(b"apiVersion: avix/v1\nkind: Thing\nspec: {n: 0}\n");
        assert_eq!(e.unwrap_err().to_string(), "n must be positive");
        let e =
            Document::<Thing>::parse(b"apiVersion: avix/v1\nkind: Thing\nspec: {n: 1}\nextra: 1\n");
        assert!(e.is_err());
    }
}
