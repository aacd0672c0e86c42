//! llm.svc: every inference goes through here; agents never call providers directly.
//!
//! # Layout
//! - [`LlmClient`]: the one interface the executor uses (a completion, streamed).
//! - [`service`]: [`LlmService`], which routes a request's model string to a provider built
//!   from `llm.yaml` (aliases, `provider/model`, the default provider).
//! - [`scripted`]: the deterministic scripted provider for tests and demos.

pub mod assemble;
pub mod framing;
pub mod http;
pub mod media;
pub mod provider;
pub mod replay;
pub mod sched;
pub mod scripted;
pub mod service;
pub mod usage;
pub mod wire;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use avix_proto::llm::{LlmRequest, LlmResponse, StreamEvent};

pub use scripted::ScriptedProvider;
pub use service::{LlmService, ServicePaths};

/// A boxed future, for object-safe async traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Receives stream events as a response is produced.
pub type StreamSink = Arc<dyn Fn(&StreamEvent) + Send + Sync>;

/// Why a completion failed. Messages say what to do; none ever includes a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// The model string names nothing configured.
    #[error("{0}")]
    Config(String),
    /// The provider answered with an error.
    #[error("provider {provider} refused the request ({status}): {message}")]
    Provider {
        /// Provider name.
        provider: String,
        /// HTTP status or provider code.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// The provider did not answer in time.
    #[error("provider {0} timed out")]
    Timeout(String),
    /// The connection failed or broke.
    #[error("cannot reach provider {provider}: {message}")]
    Transport {
        /// Provider name.
        provider: String,
        /// What happened.
        message: String,
    },
    /// The provider sent something that is not its protocol.
    #[error("provider {provider} sent a malformed response: {message}")]
    Protocol {
        /// Provider name.
        provider: String,
        /// What was wrong.
        message: String,
    },
    /// A scripted run asked for more turns than the script has, or the script is invalid.
    #[error("{0}")]
    Script(String),
}

/// The model part of `provider/model` for `provider` (the service passes both); the whole
/// string when it does not start with that provider.
pub fn model_part<'a>(provider: &str, model: &'a str) -> &'a str {
    model
        .strip_prefix(provider)
        .and_then(|m| m.strip_prefix('/'))
        .unwrap_or(model)
}

/// Something that completes LLM requests.
pub trait LlmClient: Send + Sync + 'static {
    /// Runs one completion. Stream events go to `sink` as they arrive; the returned response
    /// is the whole answer. Dropping the future cancels the call.
    fn complete(
        &self,
        req: LlmRequest,
        sink: Option<StreamSink>,
    ) -> BoxFuture<'_, Result<LlmResponse, LlmError>>;
}
