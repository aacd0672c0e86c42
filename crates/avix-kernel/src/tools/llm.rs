//! `llm/complete`, `llm/generate-image`, `llm/generate-speech`, `llm/transcribe`,
//! `llm/embed`: llm.svc for agents. Images and audio are written to the agent's scratch
//! directory (`/users/<u>/scratch/<pid>/`) with the agent's rights, and the tool returns the
//! paths; the tokens of `llm/complete` count against the agent's budget.

use std::sync::Arc;

use avix_llm::LlmError;
use avix_llm::media::{ImageRequest, Media, SpeechRequest, TranscribeRequest};
use avix_proto::llm::{LlmRequest, Message, RequestMeta};
use avix_vfs::VfsPath;
use serde_json::{Value, json};

use super::fs::resolve;
use super::{
    Category, ToolContext, ToolDescriptor, ToolError, ToolHandler, arg_opt_str, arg_opt_u64,
    arg_str, kernel_tool,
};

/// Largest audio file `llm/transcribe` uploads (OpenAI's limit).
pub const MAX_AUDIO: u64 = 25 * 1024 * 1024;

fn meta(cx: &ToolContext) -> RequestMeta {
    RequestMeta {
        pid: cx.process.pid,
        invocation_id: cx.process.journal.id().to_owned(),
        user: cx.process.user.to_string(),
        priority: cx.process.limits.priority,
    }
}

fn llm_error(e: LlmError) -> ToolError {
    let code = match &e {
        LlmError::Config(_) | LlmError::Script(_) => "EINVAL",
        LlmError::Timeout(_) => "ETIMEDOUT",
        LlmError::Provider { status: 429, .. } => "EAGAIN",
        _ => "EIO",
    };
    ToolError::new(code, e.to_string())
}

fn service(cx: &ToolContext) -> Result<Arc<avix_llm::LlmService>, ToolError> {
    cx.kernel.llm_service().cloned().ok_or_else(|| {
        ToolError::new(
            "ENOSYS",
            "llm.svc is not running in this kernel (it was booted with a custom LLM client)",
        )
    })
}

/// The scratch directory of the calling process.
fn scratch(cx: &ToolContext) -> Result<VfsPath, ToolError> {
    VfsPath::parse(&format!(
        "/users/{}/scratch/{}",
        cx.process.user, cx.process.pid
    ))
    .map_err(|e| ToolError::new("EIO", e.to_string()))
}

/// A file-name-safe form of the call id.
fn stem(cx: &ToolContext) -> String {
    let s: String = cx
        .call_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(32)
        .collect();
    if s.is_empty() { "call".into() } else { s }
}

/// Writes media into the scratch directory; returns their paths.
async fn save(cx: &ToolContext, kind: &str, media: Vec<Media>) -> Result<Vec<Value>, ToolError> {
    let dir = scratch(cx)?;
    let caller = cx.process.caller.clone();
    let vfs = cx.kernel.vfs().clone();
    let stem = stem(cx);
    let kind = kind.to_owned();
    tokio::task::spawn_blocking(move || {
        let parent = dir.parent().unwrap_or_else(VfsPath::root);
        for d in [&parent, &dir] {
            match vfs.create_dir(&caller, d) {
                Ok(()) | Err(avix_vfs::VfsError::AlreadyExists(_)) => {}
                Err(e) => return Err(ToolError::from(e)),
            }
        }
        let mut out = Vec::new();
        let many = media.len() > 1;
        for (i, m) in media.into_iter().enumerate() {
            let name = if many {
                format!("{kind}-{stem}-{}.{}", i + 1, m.ext)
            } else {
                format!("{kind}-{stem}.{}", m.ext)
            };
            let path = dir
                .join(&name)
                .map_err(|e| ToolError::new("EIO", e.to_string()))?;
            vfs.write(&caller, &path, &m.bytes)?;
            out.push(json!({"path": path.as_str(), "mimeType": m.mime, "bytes": m.bytes.len()}));
        }
        Ok(out)
    })
    .await
    .map_err(|e| ToolError::new("EIO", format!("the tool task failed: {e}")))?
}

async fn complete(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let prompt = arg_str(&args, "prompt")?.to_owned();
    let max = arg_opt_u64(&args, "maxTokens")?.unwrap_or(1024);
    let l = cx.process.limits;
    let req = LlmRequest {
        model: arg_opt_str(&args, "model")?.map_or_else(|| cx.process.model.clone(), str::to_owned),
        system: arg_opt_str(&args, "system")?.unwrap_or_default().to_owned(),
        messages: vec![Message::user_text(prompt)],
        tools: vec![],
        max_tokens: u32::try_from(max.min(l.max_output_tokens)).unwrap_or(u32::MAX),
        temperature: args
            .get("temperature")
            .and_then(Value::as_f64)
            .or(Some(l.temperature)),
        meta: meta(&cx),
    };
    let resp = cx
        .kernel
        .llm()
        .complete(req, None)
        .await
        .map_err(llm_error)?;
    {
        let mut i = cx.process.inner();
        i.tokens.input_tokens += resp.usage.input_tokens;
        i.tokens.output_tokens += resp.usage.output_tokens;
        i.cost_usd += resp.cost_usd.unwrap_or(0.0);
    }
    let text: String = resp
        .content
        .iter()
        .filter_map(|b| match b {
            avix_proto::llm::ContentBlock::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    Ok(json!({
        "text": text,
        "provider": resp.provider,
        "model": resp.model,
        "stopReason": resp.stop_reason,
        "usage": resp.usage,
    }))
}

async fn generate_image(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let svc = service(&cx)?;
    let req = ImageRequest {
        prompt: arg_str(&args, "prompt")?.to_owned(),
        negative_prompt: arg_opt_str(&args, "negativePrompt")?.map(str::to_owned),
        size: arg_opt_str(&args, "size")?.map(str::to_owned),
        n: arg_opt_u64(&args, "n")?.map(|n| n.clamp(1, 4) as u32),
    };
    let (provider, model, images) = svc
        .generate_image(
            arg_opt_str(&args, "provider")?,
            arg_opt_str(&args, "model")?,
            &req,
            &meta(&cx),
        )
        .await
        .map_err(llm_error)?;
    let files = save(&cx, "image", images).await?;
    Ok(json!({"provider": provider, "model": model, "images": files}))
}

async fn generate_speech(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let svc = service(&cx)?;
    let req = SpeechRequest {
        text: arg_str(&args, "text")?.to_owned(),
        voice: arg_opt_str(&args, "voice")?.map(str::to_owned),
        format: arg_opt_str(&args, "format")?.map(str::to_owned),
        speed: args.get("speed").and_then(Value::as_f64),
    };
    if let Some(f) = &req.format
        && !["mp3", "opus", "aac", "flac", "wav", "pcm"].contains(&f.as_str())
    {
        return Err(ToolError::invalid(format!(
            "format {f:?} is not one of mp3, opus, aac, flac, wav, pcm"
        )));
    }
    let (provider, model, audio) = svc
        .generate_speech(
            arg_opt_str(&args, "provider")?,
            arg_opt_str(&args, "model")?,
            &req,
            &meta(&cx),
        )
        .await
        .map_err(llm_error)?;
    let mut files = save(&cx, "speech", vec![audio]).await?;
    let mut out = files.pop().unwrap_or(Value::Null);
    out["provider"] = json!(provider);
    out["model"] = json!(model);
    Ok(out)
}

async fn transcribe(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let svc = service(&cx)?;
    let path = resolve(&cx, arg_str(&args, "path")?)?;
    let caller = cx.process.caller.clone();
    let vfs = cx.kernel.vfs().clone();
    let p = path.clone();
    let audio = tokio::task::spawn_blocking(move || {
        let st = vfs.stat(&caller, &p)?;
        if st.size > MAX_AUDIO {
            return Err(ToolError::invalid(format!(
                "{p} is {} bytes; transcription takes files up to {MAX_AUDIO} bytes",
                st.size
            )));
        }
        Ok(vfs.read(&caller, &p)?.to_vec())
    })
    .await
    .map_err(|e| ToolError::new("EIO", format!("the tool task failed: {e}")))??;
    if audio.is_empty() {
        return Err(ToolError::invalid(format!("{path} is empty")));
    }
    let req = TranscribeRequest {
        audio,
        filename: path.file_name().unwrap_or("audio.mp3").to_owned(),
        language: arg_opt_str(&args, "language")?.map(str::to_owned),
        prompt: arg_opt_str(&args, "prompt")?.map(str::to_owned),
    };
    let (provider, model, t) = svc
        .transcribe(
            arg_opt_str(&args, "provider")?,
            arg_opt_str(&args, "model")?,
            &req,
            &meta(&cx),
        )
        .await
        .map_err(llm_error)?;
    let mut out = serde_json::to_value(&t).unwrap_or_default();
    out["provider"] = json!(provider);
    out["model"] = json!(model);
    out["path"] = json!(path.as_str());
    Ok(out)
}

async fn embed(cx: ToolContext, args: Value) -> Result<Value, ToolError> {
    let svc = service(&cx)?;
    let inputs: Vec<String> = match args.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| ToolError::invalid("input must be a string or a list of strings"))?,
        _ => {
            return Err(ToolError::invalid(
                "argument \"input\" (a string or a non-empty list of strings) is required",
            ));
        }
    };
    if inputs.len() > 256 {
        return Err(ToolError::invalid("at most 256 inputs per call"));
    }
    let (provider, model, e) = svc
        .embed(
            arg_opt_str(&args, "provider")?,
            arg_opt_str(&args, "model")?,
            &inputs,
            &meta(&cx),
        )
        .await
        .map_err(llm_error)?;
    {
        let mut i = cx.process.inner();
        i.tokens.input_tokens += e.input_tokens;
    }
    Ok(json!({
        "provider": provider,
        "model": model,
        "dimensions": e.vectors.first().map_or(0, Vec::len),
        "embeddings": e.vectors,
        "inputTokens": e.input_tokens,
    }))
}

fn provider_props(extra: Value) -> Value {
    let mut props = json!({
        "provider": {"type": "string", "description": "A provider from llm.yaml (default: the configured one for this modality)"},
        "model": {"type": "string", "description": "A model of that provider (default: its configured default)"},
    });
    if let (Some(p), Some(e)) = (props.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    props
}

/// The llm tools.
pub fn tools() -> Vec<(ToolDescriptor, Arc<dyn ToolHandler>)> {
    let d = |name: &str, desc: &str, props: Value, required: &[&str]| {
        kernel_tool(
            name,
            Category::Direct,
            desc,
            json!({"type": "object", "properties": props, "required": required}),
        )
    };
    vec![
        (
            d(
                "llm/complete",
                "Ask a language model one question, outside your conversation (summaries, classification, drafts). Counts against your token budget.",
                json!({
                    "prompt": {"type": "string"},
                    "system": {"type": "string"},
                    "model": {"type": "string", "description": "provider/model or an alias (default: your own model)"},
                    "maxTokens": {"type": "integer"},
                    "temperature": {"type": "number"},
                }),
                &["prompt"],
            ),
            Arc::new(complete),
        ),
        (
            d(
                "llm/generate-image",
                "Generate images from a prompt. They are saved in your scratch directory; the result gives their paths.",
                provider_props(json!({
                    "prompt": {"type": "string"},
                    "negativePrompt": {"type": "string"},
                    "size": {"type": "string", "description": "e.g. 1024x1024 (OpenAI) or 16:9 (Stability)"},
                    "n": {"type": "integer", "minimum": 1, "maximum": 4},
                })),
                &["prompt"],
            ),
            Arc::new(generate_image),
        ),
        (
            d(
                "llm/generate-speech",
                "Turn text into speech. The audio is saved in your scratch directory; the result gives its path.",
                provider_props(json!({
                    "text": {"type": "string"},
                    "voice": {"type": "string"},
                    "format": {"type": "string", "enum": ["mp3", "opus", "aac", "flac", "wav", "pcm"]},
                    "speed": {"type": "number"},
                })),
                &["text"],
            ),
            Arc::new(generate_speech),
        ),
        (
            d(
                "llm/transcribe",
                "Transcribe an audio file (up to 25 MiB) to text.",
                provider_props(json!({
                    "path": {"type": "string", "description": "The audio file; relative paths are in the workspace"},
                    "language": {"type": "string", "description": "ISO-639-1 code, if known"},
                    "prompt": {"type": "string"},
                })),
                &["path"],
            ),
            Arc::new(transcribe),
        ),
        (
            d(
                "llm/embed",
                "Compute embedding vectors for one text or a list of texts.",
                provider_props(json!({
                    "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                })),
                &["input"],
            ),
            Arc::new(embed),
        ),
    ]
}
