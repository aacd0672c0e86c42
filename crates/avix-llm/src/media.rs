//! The other modalities: image generation (OpenAI images, Stability AI), speech (OpenAI
//! speech, ElevenLabs), transcription (OpenAI audio transcriptions) and embeddings (OpenAI,
//! Ollama). Binary results come back as bytes; the kernel writes them into the agent's
//! scratch directory and gives the agent the path.

use std::sync::Arc;

use avix_proto::config::llm::{Modality, Provider, ProviderKind};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::LlmError;
use crate::http::{Credential, Failure, HttpStats, Transport};
use crate::provider::auth_of;
use crate::wire::join;

/// Generated media.
#[derive(Clone, PartialEq, Eq)]
pub struct Media {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// MIME type.
    pub mime: String,
    /// File extension (without the dot).
    pub ext: String,
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Media({}, {} bytes)", self.mime, self.bytes.len())
    }
}

/// An image request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRequest {
    /// What to draw.
    pub prompt: String,
    /// What to avoid (Stability).
    #[serde(default)]
    pub negative_prompt: Option<String>,
    /// `1024x1024` (OpenAI) or an aspect ratio `16:9` (Stability).
    #[serde(default)]
    pub size: Option<String>,
    /// How many (OpenAI; Stability makes one).
    #[serde(default)]
    pub n: Option<u32>,
}

/// A speech request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpeechRequest {
    /// What to say.
    pub text: String,
    /// Voice (OpenAI voice name or ElevenLabs voice id).
    #[serde(default)]
    pub voice: Option<String>,
    /// `mp3` (default), `opus`, `aac`, `flac`, `wav`, `pcm`.
    #[serde(default)]
    pub format: Option<String>,
    /// Speed (OpenAI, 0.25–4).
    #[serde(default)]
    pub speed: Option<f64>,
}

/// A transcription request.
#[derive(Clone, Default, PartialEq)]
pub struct TranscribeRequest {
    /// The audio.
    pub audio: Vec<u8>,
    /// Its file name (the provider guesses the format from it).
    pub filename: String,
    /// Spoken language (ISO-639-1), if known.
    pub language: Option<String>,
    /// Context for the model.
    pub prompt: Option<String>,
}

impl std::fmt::Debug for TranscribeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TranscribeRequest({}, {} bytes)",
            self.filename,
            self.audio.len()
        )
    }
}

/// A piece of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Start, seconds.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
    /// Text.
    pub text: String,
}

/// A transcript.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transcript {
    /// The text.
    pub text: String,
    /// Detected language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Audio length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<f64>,
    /// Timed segments, when the model gives them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<Segment>,
}

/// Embeddings, one vector per input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Embeddings {
    /// The vectors, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// Input tokens, as the provider counts them.
    pub input_tokens: u64,
}

/// A provider's non-text endpoints.
#[derive(Debug)]
pub struct MediaClient {
    name: String,
    kind: ProviderKind,
    transport: Transport,
    voice: Option<String>,
    // For images a provider returns by URL: fetched without the provider's credentials.
    plain: reqwest::Client,
}

/// The model used for a modality when neither the request nor llm.yaml names one.
pub fn builtin_model(kind: ProviderKind, m: Modality) -> Option<&'static str> {
    use Modality::*;
    match (kind, m) {
        (ProviderKind::Openai, Image) => Some("gpt-image-1"),
        (ProviderKind::Openai, Speech) => Some("gpt-4o-mini-tts"),
        (ProviderKind::Openai, Transcription) => Some("whisper-1"),
        (ProviderKind::Openai, Embedding) => Some("text-embedding-3-small"),
        (ProviderKind::Stability, Image) => Some("core"),
        (ProviderKind::Elevenlabs, Speech) => Some("eleven_multilingual_v2"),
        (ProviderKind::Ollama, Embedding) => Some("nomic-embed-text"),
        _ => None,
    }
}

fn audio_mime(format: &str) -> &'static str {
    match format {
        "opus" => "audio/ogg",
        "aac" => "audio/aac",
        "flac" => "audio/flac",
        "wav" => "audio/wav",
        "pcm" => "audio/pcm",
        _ => "audio/mpeg",
    }
}

fn image_format(bytes: &[u8]) -> (&'static str, &'static str) {
    if bytes.starts_with(b"\xff\xd8\xff") {
        ("image/jpeg", "jpg")
    } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        ("image/webp", "webp")
    } else {
        ("image/png", "png")
    }
}

impl MediaClient {
    /// A client for provider `p`.
    pub fn new(
        p: &Provider,
        key: Option<Credential>,
        stats: Arc<HttpStats>,
    ) -> Result<Self, LlmError> {
        let (auth, extra) = auth_of(p.kind);
        Ok(Self {
            name: p.name.clone(),
            kind: p.kind,
            transport: Transport::new(p, key, auth, extra, stats)?,
            voice: p.voice.clone(),
            plain: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(|e| {
                    LlmError::Config(format!(
                        "provider {}: cannot build the HTTP client: {e}",
                        p.name
                    ))
                })?,
        })
    }

    fn unsupported(&self, what: &str) -> LlmError {
        LlmError::Config(format!(
            "provider {} ({:?}) cannot do {what}; pick a provider that can in /etc/avix/llm.yaml defaultProviders",
            self.name, self.kind
        ))
    }

    fn protocol(&self, message: impl Into<String>) -> Failure {
        Failure::fatal(LlmError::Protocol {
            provider: self.name.clone(),
            message: message.into(),
        })
    }

    async fn post_json(&self, url: &str, body: &Value) -> Result<Value, Failure> {
        let t = &self.transport;
        let resp = t
            .send(
                t.post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string()),
            )
            .await?;
        self.json(resp).await
    }

    /// Reads a JSON answer.
    async fn json(&self, resp: reqwest::Response) -> Result<Value, Failure> {
        let bytes = self.transport.body(resp).await?;
        crate::wire::body_json(&bytes).map_err(|e| self.transport.wire_failure(e, false))
    }

    async fn post_bytes(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<(Vec<u8>, Option<String>), Failure> {
        let t = &self.transport;
        let resp = t.send(req).await?;
        let ct = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((t.body(resp).await?, ct))
    }

    /// Generates images.
    pub async fn image(&self, model: &str, req: &ImageRequest) -> Result<Vec<Media>, LlmError> {
        match self.kind {
            ProviderKind::Openai | ProviderKind::OpenaiCompatible => {
                self.transport
                    .retrying(|| self.openai_image(model, req))
                    .await
            }
            ProviderKind::Stability => {
                self.transport
                    .retrying(|| self.stability_image(model, req))
                    .await
            }
            _ => Err(self.unsupported("image generation")),
        }
    }

    async fn openai_image(&self, model: &str, req: &ImageRequest) -> Result<Vec<Media>, Failure> {
        let mut body =
            json!({"model": model, "prompt": req.prompt, "n": req.n.unwrap_or(1).max(1)});
        if let Some(s) = &req.size {
            body["size"] = json!(s);
        }
        // DALL·E answers with URLs unless asked; GPT image models always send base64 and
        // refuse the parameter.
        if model.starts_with("dall-e") {
            body["response_format"] = json!("b64_json");
        }
        let v = self
            .post_json(&join(self.transport.base(), "/images/generations"), &body)
            .await?;
        let data = v["data"]
            .as_array()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| self.protocol("the answer has no images (data is empty)"))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut out = Vec::new();
        for d in data {
            let bytes = if let Some(s) = d["b64_json"].as_str() {
                b64.decode(s)
                    .map_err(|e| self.protocol(format!("an image is not valid base64: {e}")))?
            } else if let Some(url) = d["url"].as_str() {
                let sent = tokio::time::timeout(
                    self.transport.settings().first_byte,
                    self.plain.get(url).send(),
                )
                .await;
                let r = match sent {
                    Ok(Ok(r)) => r.error_for_status().map_err(|e| e.to_string()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("no answer in time".into()),
                }
                .map_err(|e| {
                    Failure::fatal(LlmError::Transport {
                        provider: self.name.clone(),
                        message: format!("cannot download the generated image: {e}"),
                    })
                })?;
                // Same size limit and stall timeouts as any answer.
                self.transport.body(r).await?
            } else {
                return Err(self.protocol("an image has neither b64_json nor url"));
            };
            let (mime, ext) = image_format(&bytes);
            out.push(Media {
                bytes,
                mime: mime.into(),
                ext: ext.into(),
            });
        }
        Ok(out)
    }

    async fn stability_image(
        &self,
        model: &str,
        req: &ImageRequest,
    ) -> Result<Vec<Media>, Failure> {
        // `core`, `ultra`, or an SD3 model (`sd3.5-large`…) on the sd3 endpoint.
        let (endpoint, sd3_model) = match model {
            "core" | "ultra" => (model, None),
            m if m.starts_with("sd3") => ("sd3", Some(m.to_owned())),
            _ => ("core", None),
        };
        let mut form = reqwest::multipart::Form::new()
            .text("prompt", req.prompt.clone())
            .text("output_format", "png");
        if let Some(m) = sd3_model {
            form = form.text("model", m);
        }
        if let Some(n) = &req.negative_prompt {
            form = form.text("negative_prompt", n.clone());
        }
        if let Some(s) = req.size.as_deref().filter(|s| s.contains(':')) {
            form = form.text("aspect_ratio", s.to_owned());
        }
        let url = join(
            self.transport.base(),
            &format!("/v2beta/stable-image/generate/{endpoint}"),
        );
        let t = &self.transport;
        let resp = t
            .send(
                t.post(&url)
                    .header(reqwest::header::ACCEPT, "application/json")
                    .multipart(form),
            )
            .await?;
        let v = self.json(resp).await?;
        if v["finish_reason"] == "CONTENT_FILTERED" {
            return Err(Failure::fatal(LlmError::Provider {
                provider: self.name.clone(),
                status: 200,
                message:
                    "the image was withheld by the provider's content filter; change the prompt"
                        .into(),
            }));
        }
        let data = v["image"]
            .as_str()
            .ok_or_else(|| self.protocol("the answer has no image"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| self.protocol(format!("the image is not valid base64: {e}")))?;
        let (mime, ext) = image_format(&bytes);
        Ok(vec![Media {
            bytes,
            mime: mime.into(),
            ext: ext.into(),
        }])
    }

    /// Speaks text.
    pub async fn speech(&self, model: &str, req: &SpeechRequest) -> Result<Media, LlmError> {
        let format = req.format.clone().unwrap_or_else(|| "mp3".into());
        let voice = req.voice.clone().or_else(|| self.voice.clone());
        match self.kind {
            ProviderKind::Openai | ProviderKind::OpenaiCompatible => {
                let mut body = json!({"model": model, "input": req.text, "voice": voice.unwrap_or_else(|| "alloy".into()), "response_format": format});
                if let Some(s) = req.speed {
                    body["speed"] = json!(s.clamp(0.25, 4.0));
                }
                let url = join(self.transport.base(), "/audio/speech");
                let (bytes, _) = self
                    .transport
                    .retrying(|| {
                        let t = &self.transport;
                        self.post_bytes(
                            t.post(&url)
                                .header(reqwest::header::CONTENT_TYPE, "application/json")
                                .body(body.to_string()),
                        )
                    })
                    .await?;
                Ok(Media {
                    bytes,
                    mime: audio_mime(&format).into(),
                    ext: format,
                })
            }
            ProviderKind::Elevenlabs => {
                let Some(voice) = voice else {
                    return Err(LlmError::Config(format!(
                        "provider {}: ElevenLabs needs a voice id: pass voice, or set voice for the provider in /etc/avix/llm.yaml",
                        self.name
                    )));
                };
                let url = join(
                    self.transport.base(),
                    &format!("/v1/text-to-speech/{voice}?output_format=mp3_44100_128"),
                );
                let body = json!({"text": req.text, "model_id": model});
                let (bytes, _) = self
                    .transport
                    .retrying(|| {
                        let t = &self.transport;
                        self.post_bytes(
                            t.post(&url)
                                .header(reqwest::header::CONTENT_TYPE, "application/json")
                                .header(reqwest::header::ACCEPT, "audio/mpeg")
                                .body(body.to_string()),
                        )
                    })
                    .await?;
                Ok(Media {
                    bytes,
                    mime: "audio/mpeg".into(),
                    ext: "mp3".into(),
                })
            }
            _ => Err(self.unsupported("speech")),
        }
    }

    /// Transcribes audio.
    pub async fn transcribe(
        &self,
        model: &str,
        req: &TranscribeRequest,
    ) -> Result<Transcript, LlmError> {
        if !matches!(
            self.kind,
            ProviderKind::Openai | ProviderKind::OpenaiCompatible
        ) {
            return Err(self.unsupported("transcription"));
        }
        let url = join(self.transport.base(), "/audio/transcriptions");
        // whisper-1 gives segments and the language with verbose_json; the newer models
        // accept only json.
        let verbose = model.starts_with("whisper");
        let v = self
            .transport
            .retrying(|| async {
                let part = reqwest::multipart::Part::bytes(req.audio.clone())
                    .file_name(req.filename.clone());
                let mut form = reqwest::multipart::Form::new()
                    .part("file", part)
                    .text("model", model.to_owned())
                    .text(
                        "response_format",
                        if verbose { "verbose_json" } else { "json" },
                    );
                if let Some(l) = &req.language {
                    form = form.text("language", l.clone());
                }
                if let Some(p) = &req.prompt {
                    form = form.text("prompt", p.clone());
                }
                let t = &self.transport;
                let resp = t.send(t.post(&url).multipart(form)).await?;
                self.json(resp).await
            })
            .await?;
        let text = v["text"]
            .as_str()
            .ok_or_else(|| LlmError::Protocol {
                provider: self.name.clone(),
                message: "the answer has no text".into(),
            })?
            .to_owned();
        let segments = v["segments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                Some(Segment {
                    start: s["start"].as_f64()?,
                    end: s["end"].as_f64()?,
                    text: s["text"].as_str()?.trim().to_owned(),
                })
            })
            .collect();
        Ok(Transcript {
            text,
            language: v["language"].as_str().map(str::to_owned),
            duration_secs: v["duration"].as_f64(),
            segments,
        })
    }

    /// Embeds texts.
    pub async fn embed(&self, model: &str, inputs: &[String]) -> Result<Embeddings, LlmError> {
        let floats = |v: &Value| -> Option<Vec<f32>> {
            v.as_array()?
                .iter()
                .map(|x| {
                    // Embeddings are f32 on every provider's side: the JSON number was one.
                    #[allow(clippy::cast_possible_truncation)]
                    x.as_f64().map(|f| f as f32)
                })
                .collect()
        };
        match self.kind {
            ProviderKind::Openai | ProviderKind::OpenaiCompatible => {
                let url = join(self.transport.base(), "/embeddings");
                let body = json!({"model": model, "input": inputs, "encoding_format": "float"});
                let v = self
                    .transport
                    .retrying(|| self.post_json(&url, &body))
                    .await?;
                let mut rows: Vec<(u64, Vec<f32>)> = Vec::new();
                for d in v["data"].as_array().into_iter().flatten() {
                    let e = floats(&d["embedding"]).ok_or_else(|| LlmError::Protocol {
                        provider: self.name.clone(),
                        message: "an embedding is not a list of numbers".into(),
                    })?;
                    rows.push((d["index"].as_u64().unwrap_or(rows.len() as u64), e));
                }
                rows.sort_by_key(|(i, _)| *i);
                self.check_count(rows.len(), inputs.len())?;
                Ok(Embeddings {
                    vectors: rows.into_iter().map(|(_, v)| v).collect(),
                    input_tokens: v
                        .pointer("/usage/prompt_tokens")
                        .and_then(Value::as_u64)
                        .unwrap_or(0),
                })
            }
            ProviderKind::Ollama => {
                let url = join(self.transport.base(), "/api/embed");
                let body = json!({"model": model, "input": inputs});
                let v = self
                    .transport
                    .retrying(|| self.post_json(&url, &body))
                    .await?;
                let vectors: Option<Vec<Vec<f32>>> = v["embeddings"]
                    .as_array()
                    .map(|a| a.iter().filter_map(floats).collect());
                let vectors = vectors.unwrap_or_default();
                self.check_count(vectors.len(), inputs.len())?;
                Ok(Embeddings {
                    vectors,
                    input_tokens: v["prompt_eval_count"].as_u64().unwrap_or(0),
                })
            }
            _ => Err(self.unsupported("embeddings")),
        }
    }

    fn check_count(&self, got: usize, want: usize) -> Result<(), LlmError> {
        if got == want {
            return Ok(());
        }
        Err(LlmError::Protocol {
            provider: self.name.clone(),
            message: format!("asked for {want} embeddings, got {got}"),
        })
    }
}
