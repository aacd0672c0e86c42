//! The HTTP side of every provider: one client per provider (rustls, HTTP/2 where the
//! server offers it), credentials as sensitive headers, timeouts (connect, first byte,
//! idle), and retries with jittered exponential backoff on 429, 5xx and broken connections,
//! honouring `Retry-After` — never once part of an answer has reached the agent.
//!
//! Dropping a call's future drops its connection: that is how a signal to the agent aborts
//! a stream.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use avix_proto::config::llm::{Provider, RetryPolicy, Timeouts};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use zeroize::Zeroizing;

use crate::LlmError;
use crate::assemble::Assembler;
use crate::framing::{Decoder, Framing};
use crate::wire::{WireError, WireStream, error_message};

/// Largest non-streamed body read (a base64 image is a few MiB).
pub const MAX_BODY: usize = 64 * 1024 * 1024;
/// Largest error body read.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// An API key. Never printed, zeroed when dropped.
#[derive(Clone)]
pub struct Credential(Arc<Zeroizing<String>>);

impl Credential {
    /// Wraps a key.
    pub fn new(key: String) -> Self {
        Self(Arc::new(Zeroizing::new(key)))
    }

    /// The key, for building a header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Removes the key (and anything shaped like a provider key) from `text`, so a
    /// provider's error message that echoes it does not leak it.
    pub fn scrub(&self, text: &str) -> String {
        scrub(text, Some(self.expose()))
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(<redacted>)")
    }
}

/// Redacts `key` and key-shaped words (`sk-…`, `sk-ant-…`, `xai-…`, `Bearer …`) from text.
pub fn scrub(text: &str, key: Option<&str>) -> String {
    let mut out = match key {
        Some(k) if k.len() >= 8 => text.replace(k, "<redacted>"),
        _ => text.to_owned(),
    };
    for prefix in ["sk-", "xai-", "Bearer "] {
        let mut from = 0;
        while let Some(i) = out[from..].find(prefix).map(|i| i + from) {
            let start = i + prefix.len();
            let end = out[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '*'))
                .map_or(out.len(), |e| e + start);
            if end - start >= 12 {
                out.replace_range(start..end, "<redacted>");
            }
            from = start.min(out.len());
        }
    }
    out
}

/// Timeouts and retry settings, with the defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Connect timeout.
    pub connect: Duration,
    /// Request sent to first byte of the body.
    pub first_byte: Duration,
    /// Longest gap between two pieces of a body.
    pub idle: Duration,
    /// Attempts in all.
    pub max_attempts: u32,
    /// First backoff.
    pub initial_backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
    /// Longest `Retry-After` waited for.
    pub max_retry_after: Duration,
}

fn secs(v: Option<f64>, default: f64) -> Duration {
    Duration::from_secs_f64(v.filter(|v| v.is_finite() && *v > 0.0).unwrap_or(default))
}

impl Settings {
    /// From llm.yaml.
    pub fn from_config(t: &Timeouts, r: &RetryPolicy) -> Self {
        Self {
            connect: secs(t.connect_secs, 10.0),
            first_byte: secs(t.first_byte_secs, 120.0),
            idle: secs(t.idle_secs, 60.0),
            max_attempts: r.max_attempts.unwrap_or(4).clamp(1, 10),
            initial_backoff: Duration::from_millis(r.initial_backoff_ms.unwrap_or(500)),
            max_backoff: Duration::from_millis(r.max_backoff_ms.unwrap_or(30_000)),
            max_retry_after: Duration::from_secs(r.max_retry_after_secs.unwrap_or(60)),
        }
    }
}

/// A failed attempt, and whether another may follow.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub error: LlmError,
    /// Whether trying again can help (and nothing reached the agent).
    pub retryable: bool,
    /// What the provider asked us to wait.
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A failure that retrying cannot fix.
    pub fn fatal(error: LlmError) -> Self {
        Self {
            error,
            retryable: false,
            retry_after: None,
        }
    }
}

/// Whether an HTTP status is worth retrying.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 409 | 425 | 429 | 500 | 502 | 503 | 504 | 529)
}

/// Counters a provider's status shows.
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Retries made.
    pub retries: AtomicU64,
}

/// One provider's HTTP client.
#[derive(Debug, Clone)]
pub struct Transport {
    client: reqwest::Client,
    provider: String,
    base: String,
    headers: HeaderMap,
    key: Option<Credential>,
    settings: Settings,
    stats: Arc<HttpStats>,
}

fn install_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Fails only if another provider is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// How the key is presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// A header of its own (`x-api-key`, `xi-api-key`).
    Header(&'static str),
}

impl Transport {
    /// A client for provider `p`. `key` is its credential, if it has one.
    pub fn new(
        p: &Provider,
        key: Option<Credential>,
        auth: AuthStyle,
        extra: &[(&'static str, &'static str)],
        stats: Arc<HttpStats>,
    ) -> Result<Self, LlmError> {
        install_crypto();
        let settings = Settings::from_config(&p.timeouts, &p.retry);
        let base = p
            .base_url()
            .ok_or_else(|| LlmError::Config(format!("provider {} has no baseUrl", p.name)))?
            .trim_end_matches('/')
            .to_owned();
        let mut headers = HeaderMap::new();
        for (k, v) in extra {
            headers.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        if let Some(k) = &key {
            let (name, value) = match auth {
                AuthStyle::Bearer => (
                    reqwest::header::AUTHORIZATION,
                    format!("Bearer {}", k.expose()),
                ),
                AuthStyle::Header(h) => (HeaderName::from_static(h), k.expose().to_owned()),
            };
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                LlmError::Config(format!(
                    "provider {}: the API key contains characters that cannot go in an HTTP header",
                    p.name
                ))
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect)
            .user_agent(concat!("avix/", env!("CARGO_PKG_VERSION")))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| {
                LlmError::Config(format!(
                    "provider {}: cannot build the HTTP client: {e}",
                    p.name
                ))
            })?;
        Ok(Self {
            client,
            provider: p.name.clone(),
            base,
            headers,
            key,
            settings,
            stats,
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// A POST to `url` with the provider's headers.
    pub fn post(&self, url: &str) -> reqwest::RequestBuilder {
        self.client.post(url).headers(self.headers.clone())
    }

    /// A GET to `url` with the provider's headers.
    pub fn get(&self, url: &str) -> reqwest::RequestBuilder {
        self.client.get(url).headers(self.headers.clone())
    }

    fn scrub(&self, text: &str) -> String {
        scrub(text, self.key.as_ref().map(Credential::expose))
    }

    fn transport_error(&self, e: &reqwest::Error) -> LlmError {
        // reqwest's Display names the URL and the cause; the key is never part of either.
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        LlmError::Transport {
            provider: self.provider.clone(),
            message: self.scrub(&msg),
        }
    }

    fn timeout(&self, what: &str, d: Duration) -> LlmError {
        LlmError::Timeout(format!(
            "{}: {what} ({:.1} s; raise timeouts in /etc/avix/llm.yaml if the provider is just slow)",
            self.provider,
            d.as_secs_f64()
        ))
    }

    /// Sends a request and waits for the response head. A non-2xx answer is a failure
    /// carrying the provider's message.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, Failure> {
        let resp = match tokio::time::timeout(self.settings.first_byte, req.send()).await {
            Err(_) => {
                return Err(Failure {
                    error: self.timeout("no answer", self.settings.first_byte),
                    retryable: true,
                    retry_after: None,
                });
            }
            Ok(Err(e)) => {
                return Err(Failure {
                    error: self.transport_error(&e),
                    // Connection refused, reset or timed out: worth another try.
                    retryable: e.is_connect() || e.is_timeout() || e.is_request(),
                    retry_after: None,
                });
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let retry_after = retry_after(resp.headers());
        let body = self
            .read_limited(resp, MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        let mut message = self.scrub(&error_message(&body));
        match status {
            401 | 403 => message.push_str(
                " (check the API key in the environment variable llm.yaml names for this provider)",
            ),
            404 => message.push_str(" (check baseUrl and the model name in /etc/avix/llm.yaml; OpenAI-compatible servers usually want a baseUrl ending in /v1)"),
            _ => {}
        }
        Err(Failure {
            error: LlmError::Provider {
                provider: self.provider.clone(),
                status,
                message,
            },
            retryable: retryable_status(status),
            retry_after,
        })
    }

    async fn read_limited(
        &self,
        mut resp: reqwest::Response,
        max: usize,
    ) -> Result<Vec<u8>, Failure> {
        let mut body = Vec::new();
        loop {
            let wait = if body.is_empty() {
                self.settings.first_byte
            } else {
                self.settings.idle
            };
            match tokio::time::timeout(wait, resp.chunk()).await {
                Err(_) => {
                    return Err(Failure {
                        error: self.timeout("the answer stalled", wait),
                        retryable: true,
                        retry_after: None,
                    });
                }
                Ok(Err(e)) => {
                    return Err(Failure {
                        error: self.transport_error(&e),
                        retryable: true,
                        retry_after: None,
                    });
                }
                Ok(Ok(None)) => return Ok(body),
                Ok(Ok(Some(b))) => {
                    if body.len() + b.len() > max {
                        return Err(Failure::fatal(LlmError::Protocol {
                            provider: self.provider.clone(),
                            message: format!("the answer is larger than {max} bytes"),
                        }));
                    }
                    body.extend_from_slice(&b);
                }
            }
        }
    }

    /// Reads a whole (non-streamed) body.
    pub async fn body(&self, resp: reqwest::Response) -> Result<Vec<u8>, Failure> {
        self.read_limited(resp, MAX_BODY).await
    }

    /// Maps a decoding error to a failure.
    pub fn wire_failure(&self, e: WireError, delivered: bool) -> Failure {
        match e {
            WireError::Protocol(message) => Failure::fatal(LlmError::Protocol {
                provider: self.provider.clone(),
                message: self.scrub(&message),
            }),
            WireError::Provider { status, message } => Failure {
                error: LlmError::Provider {
                    provider: self.provider.clone(),
                    status,
                    message: self.scrub(&message),
                },
                retryable: retryable_status(status) && !delivered,
                retry_after: None,
            },
        }
    }

    /// Reads a streamed body frame by frame into `asm`, until the stream says it is done.
    pub async fn stream(
        &self,
        mut resp: reqwest::Response,
        framing: Framing,
        mut wire: Box<dyn WireStream>,
        asm: &mut Assembler,
    ) -> Result<(), Failure> {
        let mut decoder = Decoder::new(framing);
        let mut done = false;
        let mut first = true;
        while !done {
            let wait = if first {
                self.settings.first_byte
            } else {
                self.settings.idle
            };
            first = false;
            let chunk = match tokio::time::timeout(wait, resp.chunk()).await {
                Err(_) => {
                    return Err(Failure {
                        error: self.timeout(
                            if asm.delivered() {
                                "the stream went silent"
                            } else {
                                "no answer"
                            },
                            wait,
                        ),
                        retryable: !asm.delivered(),
                        retry_after: None,
                    });
                }
                Ok(Err(e)) => {
                    let mut f = Failure {
                        error: self.transport_error(&e),
                        retryable: !asm.delivered(),
                        retry_after: None,
                    };
                    if asm.delivered() {
                        f.error = self.cut(&f.error);
                    }
                    return Err(f);
                }
                Ok(Ok(c)) => c,
            };
            // The wire's own error (a provider error inside the stream) or the framing's.
            let mut on_frame = |frame| {
                if done {
                    return Ok(());
                }
                done = wire.frame(frame, asm)?;
                Ok(())
            };
            let fed = match &chunk {
                Some(bytes) => decoder.feed(bytes, &mut on_frame),
                None => decoder.finish(&mut on_frame),
            };
            if let Err(e) = fed {
                return Err(self.wire_failure(e, asm.delivered()));
            }
            if chunk.is_none() && !done {
                if wire.complete_enough() {
                    break;
                }
                let error = LlmError::Protocol {
                    provider: self.provider.clone(),
                    message: "the stream ended before the response was complete (connection cut or truncated answer)".into(),
                };
                return Err(Failure {
                    error,
                    retryable: !asm.delivered(),
                    retry_after: None,
                });
            }
        }
        Ok(())
    }

    fn cut(&self, e: &LlmError) -> LlmError {
        LlmError::Transport {
            provider: self.provider.clone(),
            message: format!(
                "the stream broke after part of the answer reached the agent, so it is not retried: {e}"
            ),
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the attempts run out, sleeping
    /// between attempts (exponential backoff with full jitter, or what `Retry-After` asks).
    pub async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T, LlmError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let s = self.settings;
        let mut n = 1;
        loop {
            let f = match attempt().await {
                Ok(v) => return Ok(v),
                Err(f) => f,
            };
            if !f.retryable || n >= s.max_attempts {
                return Err(if f.retryable && n > 1 {
                    annotate(f.error, &format!("gave up after {n} attempts"))
                } else {
                    f.error
                });
            }
            let wait = match f.retry_after {
                Some(ra) if ra > s.max_retry_after => {
                    return Err(annotate(
                        f.error,
                        &format!(
                            "the provider asks to retry after {} s, longer than retry.maxRetryAfterSecs ({} s)",
                            ra.as_secs(),
                            s.max_retry_after.as_secs()
                        ),
                    ));
                }
                Some(ra) => ra + jitter(Duration::from_millis(100)),
                None => {
                    let cap = s
                        .initial_backoff
                        .saturating_mul(1 << (n - 1).min(16))
                        .min(s.max_backoff);
                    jitter(cap).max(cap / 4)
                }
            };
            tracing::info!(
                provider = %self.provider,
                attempt = n,
                wait_ms = avix_proto::time::ms(wait),
                error = %f.error,
                "retrying the LLM call"
            );
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
            n += 1;
        }
    }
}

fn annotate(e: LlmError, note: &str) -> LlmError {
    match e {
        LlmError::Provider {
            provider,
            status,
            message,
        } => LlmError::Provider {
            provider,
            status,
            message: format!("{message} ({note})"),
        },
        LlmError::Transport { provider, message } => LlmError::Transport {
            provider,
            message: format!("{message} ({note})"),
        },
        LlmError::Protocol { provider, message } => LlmError::Protocol {
            provider,
            message: format!("{message} ({note})"),
        },
        LlmError::Timeout(m) => LlmError::Timeout(format!("{m} ({note})")),
        other => other,
    }
}

/// A uniformly random duration in `[0, max]`.
fn jitter(max: Duration) -> Duration {
    let ms = avix_proto::time::ms(max);
    if ms == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(rand::random_range(0..=ms))
}

/// `Retry-After` (seconds; OpenAI's `retry-after-ms` is preferred when present).
pub fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    // A delay too large for a Duration (`1e30`) is "very long": the caller's cap applies.
    let secs = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX);
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(secs(ms / 1000.0));
    }
    let v = get("retry-after")?;
    if let Ok(s) = v.parse::<f64>()
        && s.is_finite()
        && s >= 0.0
    {
        return Some(secs(s));
    }
    http_date_delay(v)
}

/// The delay until an HTTP-date.
fn http_date_delay(v: &str) -> Option<Duration> {
    let at = avix_proto::time::Timestamp::from_http_date(v)?;
    let now = avix_proto::time::Timestamp::now();
    Some(Duration::from_secs(
        u64::try_from(at.unix() - now.unix()).unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_scrubbed_from_messages() {
        let k = Credential::new("sk-ant-api03-abcdefghijklmnop".into());
        let m = k.scrub("Incorrect API key provided: sk-ant-api03-abcdefghijklmnop.");
        assert!(!m.contains("abcdefghijklmnop"), "{m}");
        let m = scrub("key sk-proj-********************1234 is bad", None);
        assert!(!m.contains("1234"), "{m}");
        assert_eq!(scrub("sk-short ok", None), "sk-short ok");
        assert_eq!(format!("{k:?}"), "Credential(<redacted>)");
    }

    #[test]
    fn retry_after_in_every_form() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("150"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        let later = httpdate_in(3600);
        h.insert("retry-after", HeaderValue::from_str(&later).unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(3500) && d <= Duration::from_secs(3600),
            "{d:?}"
        );
        // Regression: `1e30` panicked in Duration::from_secs_f64 (issue 13).
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("1e30"));
        assert_eq!(retry_after(&h), Some(Duration::MAX));
        h.insert("retry-after-ms", HeaderValue::from_static("1e300"));
        assert_eq!(retry_after(&h), Some(Duration::MAX));
    }

    fn httpdate_in(secs: i64) -> String {
        let now = avix_proto::time::Timestamp::now().unix();
        avix_proto::time::Timestamp::from_unix(now + secs).to_http_date()
    }

    #[test]
    fn statuses_worth_retrying() {
        assert!(retryable_status(429) && retryable_status(529) && retryable_status(503));
        assert!(!retryable_status(400) && !retryable_status(401) && !retryable_status(404));
    }
}
