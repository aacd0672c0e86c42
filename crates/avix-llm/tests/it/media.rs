//! The media endpoints through llm.svc against the loopback server: each provider's real
//! request shape (JSON or multipart) and answer.

use avix_llm::media::{ImageRequest, SpeechRequest, TranscribeRequest};
use avix_llm::{LlmService, ServicePaths};
use avix_proto::config::llm::LlmConfig;
use avix_proto::envelope::Document;
use avix_proto::llm::RequestMeta;
use avix_testkit::mock_llm::{MockLlm, Plan};

const KEY_ENV: &str = "AVIX_TEST_MEDIA_KEY";
const KEY: &str = "sk-media-test-key-1234567890";

fn service(mock: &MockLlm) -> LlmService {
    // SAFETY: set before any thread reads the environment; same value in every test.
    unsafe { std::env::set_var(KEY_ENV, KEY) };
    mock.require_key(KEY);
    let url = mock.url();
    let yaml = format!(
        "apiVersion: avix/v1\nkind: LlmConfig\nspec:\n  defaultProviders: {{image: stability, speech: eleven, embedding: local}}\n  providers:\n    - {{name: openai, kind: openai, baseUrl: \"{url}/v1\", apiKeyEnv: {KEY_ENV}}}\n    - {{name: stability, kind: stability, baseUrl: \"{url}\", apiKeyEnv: {KEY_ENV}}}\n    - {{name: eleven, kind: elevenlabs, baseUrl: \"{url}\", apiKeyEnv: {KEY_ENV}, voice: voice-123}}\n    - {{name: local, kind: ollama, baseUrl: \"{url}\", apiKeyEnv: {KEY_ENV}, defaultModels: {{embedding: nomic-embed-text}}}}\n"
    );
    let config = Document::<LlmConfig>::parse(yaml.as_bytes()).unwrap().spec;
    let dir = std::env::temp_dir();
    LlmService::new(
        Some(&config),
        ServicePaths {
            etc: dir,
            journals: std::sync::Arc::new(avix_llm::replay::NoJournals),
        },
    )
}

fn meta() -> RequestMeta {
    RequestMeta {
        user: "alice".into(),
        ..RequestMeta::default()
    }
}

#[tokio::test]
async fn stability_images_are_multipart_and_come_back_as_png() {
    let mock = MockLlm::start();
    let s = service(&mock);
    let req = ImageRequest {
        prompt: "a lighthouse".into(),
        negative_prompt: Some("fog".into()),
        size: Some("16:9".into()),
        n: None,
    };
    let (provider, model, images) = s.generate_image(None, None, &req, &meta()).await.unwrap();
    assert_eq!((provider.as_str(), model.as_str()), ("stability", "core"));
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].mime, "image/png");
    assert!(images[0].bytes.ends_with(b"a lighthouse"));
    let r = &mock.requests()[0];
    assert_eq!(r.path, "/v2beta/stable-image/generate/core");
    assert_eq!(r.header("accept"), Some("application/json"));
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let body = String::from_utf8_lossy(&r.body);
    assert!(
        body.contains("name=\"negative_prompt\"") && body.contains("16:9"),
        "{body}"
    );

    // OpenAI images by explicit provider, several at once.
    let req = ImageRequest {
        prompt: "cats".into(),
        n: Some(3),
        ..ImageRequest::default()
    };
    let (_, model, images) = s
        .generate_image(Some("openai"), None, &req, &meta())
        .await
        .unwrap();
    assert_eq!(model, "gpt-image-1");
    assert_eq!(images.len(), 3);
}

#[tokio::test]
async fn elevenlabs_and_openai_speech() {
    let mock = MockLlm::start();
    let s = service(&mock);
    let req = SpeechRequest {
        text: "good morning".into(),
        ..SpeechRequest::default()
    };
    let (_, model, audio) = s.generate_speech(None, None, &req, &meta()).await.unwrap();
    assert_eq!(model, "eleven_multilingual_v2");
    assert_eq!(audio.mime, "audio/mpeg");
    assert!(audio.bytes.ends_with(b"good morning"));
    let r = &mock.requests()[0];
    assert!(
        r.path.starts_with("/v1/text-to-speech/voice-123"),
        "{}",
        r.path
    );
    assert_eq!(r.header("xi-api-key"), Some(KEY));

    let req = SpeechRequest {
        text: "hi".into(),
        format: Some("wav".into()),
        voice: Some("nova".into()),
        speed: Some(9.0),
    };
    let (_, _, audio) = s
        .generate_speech(Some("openai"), Some("tts-1"), &req, &meta())
        .await
        .unwrap();
    assert_eq!(
        (audio.mime.as_str(), audio.ext.as_str()),
        ("audio/wav", "wav")
    );
    let body = mock.requests()[1].json();
    assert_eq!(body["speed"], 4.0);
    assert_eq!(body["response_format"], "wav");
}

#[tokio::test]
async fn transcription_uploads_the_file_and_reads_segments() {
    let mock = MockLlm::start();
    let s = service(&mock);
    let req = TranscribeRequest {
        audio: vec![7u8; 1000],
        filename: "talk.mp3".into(),
        language: Some("en".into()),
        prompt: None,
    };
    let (_, model, t) = s.transcribe(None, None, &req, &meta()).await.unwrap();
    assert_eq!(model, "whisper-1");
    assert_eq!(t.text, "heard 1000 bytes");
    assert_eq!(t.segments.len(), 1);
    assert_eq!(t.duration_secs, Some(1.5));
}

#[tokio::test]
async fn embeddings_from_openai_and_ollama_keep_input_order() {
    let mock = MockLlm::start();
    let s = service(&mock);
    let inputs = vec!["a".to_owned(), "bb bb".to_owned()];
    let (p, _, e) = s.embed(None, None, &inputs, &meta()).await.unwrap();
    assert_eq!(p, "local");
    assert_eq!(e.vectors.len(), 2);
    assert_eq!(mock.requests()[0].path, "/api/embed");
    let (_, model, e2) = s
        .embed(Some("openai"), None, &inputs, &meta())
        .await
        .unwrap();
    assert_eq!(model, "text-embedding-3-small");
    assert_eq!(e2.vectors[1][0], 0.05);
    assert_eq!(e2.input_tokens, 3);
    let usage = s.ledger().snapshot();
    assert_eq!(usage.users["alice"].embedded_inputs, 4);
}

#[tokio::test]
async fn media_errors_are_clear() {
    let mock = MockLlm::start();
    let s = service(&mock);
    let e = s
        .transcribe(
            Some("stability"),
            None,
            &TranscribeRequest::default(),
            &meta(),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("does not serve transcription"),
        "{e}"
    );
    mock.plan(Plan::Status {
        code: 400,
        headers: vec![],
        message: "prompt: must not be blank".into(),
    });
    let req = ImageRequest {
        prompt: "x".into(),
        ..ImageRequest::default()
    };
    let e = s
        .generate_image(None, None, &req, &meta())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("must not be blank"), "{e}");
}
