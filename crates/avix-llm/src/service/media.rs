//! Images, speech, transcription and embeddings: routed, queued and accounted like text.

use std::sync::Arc;

use avix_proto::config::llm::Modality;
use avix_proto::llm::RequestMeta;

use crate::LlmError;
use crate::media::{
    Embeddings, ImageRequest, Media, MediaClient, SpeechRequest, TranscribeRequest, Transcript,
};
use crate::usage::{CallUsage, cost};

use super::LlmService;

impl LlmService {
    async fn media<T, F, Fut>(
        &self,
        m: Modality,
        provider: Option<&str>,
        model: Option<&str>,
        meta: &RequestMeta,
        call: F,
    ) -> Result<(String, String, T), LlmError>
    where
        F: FnOnce(Arc<MediaClient>, String) -> Fut,
        Fut: Future<Output = Result<(T, CallUsage), LlmError>>,
    {
        let (routes, name, model) = self.resolve_media(m, provider, model)?;
        let e = &routes.providers[&name];
        let client = match (&e.media, &e.problem) {
            (Some(c), _) => c.clone(),
            (None, Some(p)) => {
                return Err(LlmError::Config(format!(
                    "provider {name} is unavailable: {p}"
                )));
            }
            (None, None) => {
                return Err(LlmError::Config(format!(
                    "provider {name} cannot serve {}",
                    m.as_str()
                )));
            }
        };
        let permit = self.admit(&e.shared, &name, meta, 0, None).await;
        let r = call(client, model.clone()).await;
        drop(permit);
        match r {
            Ok((v, usage)) => {
                e.shared.health.ok();
                let price = e.config.prices.get(&model);
                self.ledger
                    .record(&name, &model, &meta.user, &usage, cost(price, usage.tokens));
                Ok((name, model, v))
            }
            Err(err) => {
                e.shared.health.failed(&err);
                self.ledger.record_error(&name, &meta.user);
                Err(err)
            }
        }
    }

    /// Generates images. Returns the provider, the model and the images.
    pub async fn generate_image(
        &self,
        provider: Option<&str>,
        model: Option<&str>,
        req: &ImageRequest,
        meta: &RequestMeta,
    ) -> Result<(String, String, Vec<Media>), LlmError> {
        self.media(
            Modality::Image,
            provider,
            model,
            meta,
            |c, model| async move {
                let images = c.image(&model, req).await?;
                let usage = CallUsage {
                    images: images.len() as u64,
                    ..CallUsage::default()
                };
                Ok((images, usage))
            },
        )
        .await
    }

    /// Speaks text.
    pub async fn generate_speech(
        &self,
        provider: Option<&str>,
        model: Option<&str>,
        req: &SpeechRequest,
        meta: &RequestMeta,
    ) -> Result<(String, String, Media), LlmError> {
        self.media(
            Modality::Speech,
            provider,
            model,
            meta,
            |c, model| async move {
                let audio = c.speech(&model, req).await?;
                let usage = CallUsage {
                    speech_characters: req.text.chars().count() as u64,
                    ..CallUsage::default()
                };
                Ok((audio, usage))
            },
        )
        .await
    }

    /// Transcribes audio.
    pub async fn transcribe(
        &self,
        provider: Option<&str>,
        model: Option<&str>,
        req: &TranscribeRequest,
        meta: &RequestMeta,
    ) -> Result<(String, String, Transcript), LlmError> {
        self.media(
            Modality::Transcription,
            provider,
            model,
            meta,
            |c, model| async move {
                let t = c.transcribe(&model, req).await?;
                let usage = CallUsage {
                    audio_seconds: t.duration_secs.unwrap_or(0.0),
                    ..CallUsage::default()
                };
                Ok((t, usage))
            },
        )
        .await
    }

    /// Embeds texts.
    pub async fn embed(
        &self,
        provider: Option<&str>,
        model: Option<&str>,
        inputs: &[String],
        meta: &RequestMeta,
    ) -> Result<(String, String, Embeddings), LlmError> {
        self.media(
            Modality::Embedding,
            provider,
            model,
            meta,
            |c, model| async move {
                let e = c.embed(&model, inputs).await?;
                let usage = CallUsage {
                    tokens: avix_proto::llm::Usage {
                        input_tokens: e.input_tokens,
                        output_tokens: 0,
                    },
                    embedded_inputs: inputs.len() as u64,
                    ..CallUsage::default()
                };
                Ok((e, usage))
            },
        )
        .await
    }
}
