//! [`HttpText`]: a text provider reached over HTTP — a wire format (Anthropic, OpenAI,
//! Ollama) on top of a [`Transport`].

use std::sync::Arc;

use avix_proto::config::llm::{Provider, ProviderKind};
use avix_proto::llm::{LlmRequest, LlmResponse};

use crate::assemble::Assembler;
use crate::http::{AuthStyle, Credential, Failure, HttpStats, Transport};
use crate::wire::TextWire;
use crate::wire::anthropic::{API_VERSION, Anthropic};
use crate::wire::ollama::Ollama;
use crate::wire::openai::OpenAi;
use crate::{BoxFuture, LlmClient, LlmError, StreamSink};

/// A text provider over HTTP.
#[derive(Debug)]
pub struct HttpText {
    name: String,
    wire: Box<dyn TextWire>,
    transport: Transport,
    stream: bool,
}

/// How each kind authenticates, and the headers it always sends.
pub fn auth_of(kind: ProviderKind) -> (AuthStyle, &'static [(&'static str, &'static str)]) {
    match kind {
        ProviderKind::Anthropic => (
            AuthStyle::Header("x-api-key"),
            &[("anthropic-version", API_VERSION)],
        ),
        ProviderKind::Elevenlabs => (AuthStyle::Header("xi-api-key"), &[]),
        _ => (AuthStyle::Bearer, &[]),
    }
}

impl HttpText {
    /// A client for provider `p` (a text kind) with its key.
    pub fn new(
        p: &Provider,
        key: Option<Credential>,
        stats: Arc<HttpStats>,
    ) -> Result<Self, LlmError> {
        let wire: Box<dyn TextWire> = match p.kind {
            ProviderKind::Anthropic => Box::new(Anthropic),
            ProviderKind::Openai => Box::new(OpenAi { official: true }),
            ProviderKind::OpenaiCompatible => Box::new(OpenAi { official: false }),
            ProviderKind::Ollama => Box::new(Ollama),
            other => {
                return Err(LlmError::Config(format!(
                    "provider {}: kind {other:?} does not serve text",
                    p.name
                )));
            }
        };
        let (auth, extra) = auth_of(p.kind);
        Ok(Self {
            name: p.name.clone(),
            wire,
            transport: Transport::new(p, key, auth, extra, stats)?,
            stream: p.stream.unwrap_or(true),
        })
    }

    async fn attempt(
        &self,
        url: &str,
        body: &[u8],
        model: &str,
        sink: Option<StreamSink>,
    ) -> Result<LlmResponse, Failure> {
        let t = &self.transport;
        let mut asm = Assembler::new(sink);
        let req = t
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        let resp = t.send(req).await?;
        if self.stream {
            t.stream(resp, self.wire.framing(), self.wire.stream(), &mut asm)
                .await?;
        } else {
            let bytes = t.body(resp).await?;
            self.wire
                .parse_full(&bytes, &mut asm)
                .map_err(|e| t.wire_failure(e, false))?;
        }
        let usage = asm.usage;
        let answered_by = asm.model.clone();
        let (content, stop_reason) = asm.finish().map_err(|e| {
            Failure::fatal(LlmError::Protocol {
                provider: self.name.clone(),
                message: e.to_string(),
            })
        })?;
        Ok(LlmResponse {
            provider: self.name.clone(),
            model: answered_by.unwrap_or_else(|| model.to_owned()),
            content,
            stop_reason,
            usage,
            cost_usd: None,
            queued_ms: 0,
        })
    }
}

impl LlmClient for HttpText {
    fn complete(
        &self,
        req: LlmRequest,
        sink: Option<StreamSink>,
    ) -> BoxFuture<'_, Result<LlmResponse, LlmError>> {
        Box::pin(async move {
            let model = crate::model_part(&self.name, &req.model).to_owned();
            if model.is_empty() {
                return Err(LlmError::Config(format!(
                    "no model for provider {}: name one (e.g. {}/<model>) or set its defaultModel in /etc/avix/llm.yaml",
                    self.name, self.name
                )));
            }
            let body = self
                .wire
                .body(&req, &model, self.stream)
                .map_err(|e| LlmError::Config(e.to_string()))?;
            let body = serde_json::to_vec(&body)
                .map_err(|e| LlmError::Config(format!("cannot encode the request: {e}")))?;
            let url = self.wire.url(self.transport.base());
            self.transport
                .retrying(|| self.attempt(&url, &body, &model, sink.clone()))
                .await
        })
    }
}
