//! A fake LLM provider on loopback that speaks the providers' real wire formats: Anthropic
//! Messages (SSE), OpenAI Chat Completions (SSE, `[DONE]`), Ollama `/api/chat` (NDJSON), and
//! the media endpoints (OpenAI images, speech, transcriptions and embeddings; Ollama
//! `/api/embed`; Stability AI; ElevenLabs).
//!
//! It is written from the providers' documentation, independently of the adapters it tests,
//! and it checks requests the way the real services do (keys, required headers, message
//! order, tool-result ids), answering 400/401 with the provider's error body when they are
//! wrong. Answers come from a script of turns; the turn answered is the number of assistant
//! messages in the request, so retries and replays get the same answer. Plans queued with
//! [`MockLlm::plan`] override the next answers: errors with `Retry-After`, streams split into
//! pieces of a few bytes, cut connections, invalid JSON, silence.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One scripted assistant turn.
#[derive(Debug, Clone, Default)]
pub struct Turn {
    /// Text (`{last}` is replaced by the last tool result or user text in the request).
    pub text: String,
    /// Tool calls: canonical name (`fs/write`) and arguments.
    pub calls: Vec<(String, Value)>,
}

impl Turn {
    /// A text-only turn.
    pub fn text(t: &str) -> Self {
        Self {
            text: t.into(),
            calls: vec![],
        }
    }

    /// A turn with one tool call (and some text before it).
    pub fn call(text: &str, tool: &str, args: Value) -> Self {
        Self {
            text: text.into(),
            calls: vec![(tool.into(), args)],
        }
    }
}

/// How the next answer is given.
#[derive(Debug, Clone)]
pub enum Plan {
    /// The scripted answer, written in pieces of `split` bytes (0: one piece) with
    /// `delay_ms` between them.
    Reply {
        /// Bytes per write.
        split: usize,
        /// Pause between writes.
        delay_ms: u64,
    },
    /// An HTTP error with the dialect's error body.
    Status {
        /// Status code.
        code: u16,
        /// Extra headers (`Retry-After`).
        headers: Vec<(String, String)>,
        /// The error message.
        message: String,
    },
    /// The scripted answer, with the connection cut after this many bytes of body.
    Cut(usize),
    /// The scripted answer, cleanly ended but missing its last `n` frames.
    Truncate(usize),
    /// This body (as the stream's content).
    Raw(String),
    /// Headers and the first frame, then silence until the client hangs up.
    Hang,
    /// Wait this long before answering normally.
    Delay(u64),
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
}

impl Recorded {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Default)]
struct State {
    script: Vec<Turn>,
    plans: VecDeque<Plan>,
    requests: Vec<Recorded>,
    hangups: Vec<Instant>,
    key: Option<String>,
    input_tokens: u64,
}

/// The server. Stops when dropped.
pub struct MockLlm {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for MockLlm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MockLlm({})", self.addr)
    }
}

impl Drop for MockLlm {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The wire dialect of a text route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `/v1/messages`.
    Anthropic,
    /// `/v1/chat/completions`.
    OpenAi,
    /// `/api/chat`.
    Ollama,
}

impl MockLlm {
    /// Starts a server on a free loopback port, on its own thread.
    pub fn start() -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            input_tokens: 12,
            ..State::default()
        }));
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut rx => break,
                        a = listener.accept() => {
                            if let Ok((sock, _)) = a {
                                let st = st.clone();
                                tokio::spawn(async move { let _ = serve(sock, st).await; });
                            }
                        }
                    }
                }
            });
        });
        Self {
            addr,
            state,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requires this API key (in the header each dialect uses).
    pub fn require_key(&self, key: &str) {
        self.state.lock().unwrap().key = Some(key.into());
    }

    /// The turns answered, in order.
    pub fn script(&self, turns: Vec<Turn>) {
        self.state.lock().unwrap().script = turns;
    }

    /// Queues a plan for the next request.
    pub fn plan(&self, p: Plan) {
        self.state.lock().unwrap().plans.push_back(p);
    }

    /// Input tokens reported per answer.
    pub fn input_tokens(&self, n: u64) {
        self.state.lock().unwrap().input_tokens = n;
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// When clients hung up on a [`Plan::Hang`] answer.
    pub fn hangups(&self) -> Vec<Instant> {
        self.state.lock().unwrap().hangups.clone()
    }

    /// Waits until `n` requests arrived (panics after 10 s).
    pub fn wait_requests(&self, n: usize) -> Vec<Recorded> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.requests();
            if r.len() >= n {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} requests, got {}",
                r.len()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Req> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut tmp = [0u8; 8192];
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    buf.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                let mut tmp = [0u8; 8192];
                let n = sock.read(&mut tmp).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&tmp[..n]);
            };
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&buf[..line_end])
                    .split(';')
                    .next()?
                    .trim(),
                16,
            )
            .ok()?;
            buf.drain(..line_end + 2);
            while buf.len() < size + 2 {
                let mut tmp = [0u8; 8192];
                let n = sock.read(&mut tmp).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
            if size == 0 {
                break;
            }
        }
    } else {
        let len: usize = get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < len {
            let mut tmp = [0u8; 65536];
            let n = sock.read(&mut tmp).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&tmp[..n]);
        }
        body = buf.drain(..len).collect();
    }
    Some(Req {
        method,
        path,
        headers,
        body,
    })
}

async fn serve(mut sock: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    sock.set_nodelay(true)?;
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut sock, &mut buf).await {
        let plan = {
            let mut s = state.lock().unwrap();
            s.requests.push(Recorded {
                method: req.method.clone(),
                path: req.path.clone(),
                headers: req.headers.clone(),
                body: req.body.clone(),
                at: Instant::now(),
            });
            s.plans.pop_front()
        };
        let keep = answer(&mut sock, &req, plan, &state).await?;
        if !keep {
            return Ok(());
        }
    }
    Ok(())
}

/// A response under construction.
struct Answer {
    status: u16,
    content_type: &'static str,
    headers: Vec<(String, String)>,
    // Body frames (each an SSE event or NDJSON line, or one whole body).
    frames: Vec<Vec<u8>>,
}

impl Answer {
    fn json(status: u16, v: &Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            headers: vec![],
            frames: vec![v.to_string().into_bytes()],
        }
    }
}

fn dialect_of(path: &str) -> Option<Dialect> {
    if path.ends_with("/messages") {
        Some(Dialect::Anthropic)
    } else if path.ends_with("/chat/completions") {
        Some(Dialect::OpenAi)
    } else if path.ends_with("/api/chat") {
        Some(Dialect::Ollama)
    } else {
        None
    }
}

fn error_body(d: Option<Dialect>, status: u16, message: &str) -> Value {
    match d {
        Some(Dialect::Anthropic) => {
            let kind = match status {
                400 => "invalid_request_error",
                401 => "authentication_error",
                404 => "not_found_error",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
        Some(Dialect::Ollama) => json!({"error": message}),
        _ => {
            json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}})
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        529 => "Overloaded",
        _ => "Status",
    }
}

async fn answer(
    sock: &mut TcpStream,
    req: &Req,
    plan: Option<Plan>,
    state: &Arc<Mutex<State>>,
) -> std::io::Result<bool> {
    let path = req.path.split('?').next().unwrap_or_default().to_owned();
    let dialect = dialect_of(&path);
    let get = |n: &str| {
        req.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let key = state.lock().unwrap().key.clone();
    if let Some(key) = key {
        let sent = if dialect == Some(Dialect::Anthropic) {
            get("x-api-key").map(str::to_owned)
        } else if path.starts_with("/v1/text-to-speech") {
            get("xi-api-key").map(str::to_owned)
        } else {
            get("authorization").and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned))
        };
        if sent.as_deref() != Some(key.as_str()) {
            // Like OpenAI, echo a masked form of the key that was sent.
            let shown = sent.map_or_else(
                || "none".to_owned(),
                |s| {
                    let tail: String = s
                        .chars()
                        .rev()
                        .take(4)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    format!("{}****{tail}", s.chars().take(3).collect::<String>())
                },
            );
            let a = Answer::json(
                401,
                &error_body(
                    dialect,
                    401,
                    &format!("Incorrect API key provided: {shown}"),
                ),
            );
            return write_answer(sock, a, 0, 0, None).await.map(|()| true);
        }
    }
    if let Some(Plan::Delay(ms)) = plan {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(Plan::Status {
        code,
        headers,
        message,
    }) = &plan
    {
        let mut a = Answer::json(*code, &error_body(dialect, *code, message));
        a.headers = headers.clone();
        return write_answer(sock, a, 0, 0, None).await.map(|()| true);
    }
    let mut a = match route(&path, req, dialect, state) {
        Ok(a) => a,
        Err((code, message)) => Answer::json(code, &error_body(dialect, code, &message)),
    };
    match plan {
        Some(Plan::Reply { split, delay_ms }) => {
            write_answer(sock, a, split, delay_ms, None).await?;
        }
        Some(Plan::Cut(n)) => {
            write_answer(sock, a, 0, 0, Some(n)).await?;
            return Ok(false);
        }
        Some(Plan::Truncate(n)) => {
            let keep = a.frames.len().saturating_sub(n);
            a.frames.truncate(keep);
            write_answer(sock, a, 0, 0, None).await?;
        }
        Some(Plan::Raw(body)) => {
            a.frames = vec![body.into_bytes()];
            write_answer(sock, a, 0, 0, None).await?;
        }
        Some(Plan::Hang) => {
            a.frames.truncate(1);
            write_head_and(sock, &a).await?;
            // Wait for the client to hang up.
            let mut tmp = [0u8; 1024];
            loop {
                match sock.read(&mut tmp).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            state.lock().unwrap().hangups.push(Instant::now());
            return Ok(false);
        }
        _ => write_answer(sock, a, 0, 0, None).await?,
    }
    Ok(true)
}

/// The status line and headers of a chunked answer.
fn head(a: &Answer) -> String {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ntransfer-encoding: chunked\r\n",
        a.status,
        reason(a.status),
        a.content_type
    );
    for (k, v) in &a.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

async fn write_head_and(sock: &mut TcpStream, a: &Answer) -> std::io::Result<()> {
    sock.write_all(head(a).as_bytes()).await?;
    let mut buf = Vec::new();
    for f in &a.frames {
        sock.write_all(chunk(&mut buf, f)).await?;
    }
    sock.flush().await
}

/// `data` framed as one HTTP/1.1 chunk, in `buf`.
fn chunk<'a>(buf: &'a mut Vec<u8>, data: &[u8]) -> &'a [u8] {
    buf.clear();
    buf.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    buf.extend_from_slice(data);
    buf.extend_from_slice(b"\r\n");
    buf
}

/// Writes `a` as a chunked body: one HTTP chunk per `split` bytes (0: per frame), so the
/// client sees the stream cut at those points; `cut` closes the connection after that many
/// body bytes, without the final chunk.
async fn write_answer(
    sock: &mut TcpStream,
    a: Answer,
    split: usize,
    delay_ms: u64,
    cut: Option<usize>,
) -> std::io::Result<()> {
    let body: Vec<u8> = a.frames.concat();
    let pieces: Vec<&[u8]> = if split > 0 {
        body.chunks(split).collect()
    } else {
        a.frames.iter().map(Vec::as_slice).collect()
    };
    sock.write_all(head(&a).as_bytes()).await?;
    let mut sent = 0;
    let mut buf = Vec::with_capacity(256);
    for p in pieces {
        let p = match cut {
            Some(c) if sent + p.len() >= c => {
                let part = &p[..c - sent];
                if !part.is_empty() {
                    sock.write_all(chunk(&mut buf, part)).await?;
                }
                sock.flush().await?;
                sock.shutdown().await?;
                return Ok(());
            }
            _ => p,
        };
        if p.is_empty() {
            continue;
        }
        // One write per HTTP chunk, so each arrives as its own piece.
        sock.write_all(chunk(&mut buf, p)).await?;
        sent += p.len();
        if delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
    }
    sock.write_all(b"0\r\n\r\n").await?;
    sock.flush().await
}

fn mangle(name: &str) -> String {
    name.replace('/', "__")
}

fn valid_tool_name(n: &str, max: usize) -> bool {
    !n.is_empty()
        && n.len() <= max
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks a text request as the provider would, and returns the number of assistant
/// messages and the last tool result or user text.
fn check_text(d: Dialect, req: &Req, body: &Value) -> Result<(usize, String), String> {
    let model = body["model"].as_str().unwrap_or_default();
    if model.is_empty() {
        return Err("model: field required".into());
    }
    let msgs = body["messages"]
        .as_array()
        .filter(|m| !m.is_empty())
        .ok_or("messages: at least one message is required")?;
    let mut assistants = 0;
    let mut last = String::new();
    match d {
        Dialect::Anthropic => {
            if !req
                .headers
                .iter()
                .any(|(k, v)| k == "anthropic-version" && !v.is_empty())
            {
                return Err("anthropic-version: header is required".into());
            }
            if !body["max_tokens"].is_u64() {
                return Err("max_tokens: field required".into());
            }
            for t in body["tools"].as_array().into_iter().flatten() {
                let n = t["name"].as_str().unwrap_or_default();
                if !valid_tool_name(n, 128) {
                    return Err(format!(
                        "tools: name {n:?} does not match '^[a-zA-Z0-9_-]{{1,128}}$'"
                    ));
                }
                if t["input_schema"]["type"] != "object" {
                    return Err("tools: input_schema must be an object schema".into());
                }
            }
            let mut prev_role = "";
            let mut prev_calls: Vec<String> = vec![];
            for (i, m) in msgs.iter().enumerate() {
                let role = m["role"].as_str().unwrap_or_default();
                if role != "user" && role != "assistant" {
                    return Err(format!(
                        "messages.{i}.role: Input should be 'user' or 'assistant'"
                    ));
                }
                if i == 0 && role != "user" {
                    return Err("messages: first message must use the \"user\" role".into());
                }
                if role == prev_role {
                    return Err(format!(
                        "messages: roles must alternate between \"user\" and \"assistant\" (message {i})"
                    ));
                }
                prev_role = if role == "user" { "user" } else { "assistant" };
                let blocks: Vec<Value> = match &m["content"] {
                    Value::String(s) => vec![json!({"type": "text", "text": s})],
                    Value::Array(a) => a.clone(),
                    _ => return Err(format!("messages.{i}.content: invalid")),
                };
                let mut calls = vec![];
                for b in &blocks {
                    match b["type"].as_str() {
                        Some("text") => {
                            let t = b["text"].as_str().unwrap_or_default();
                            if t.is_empty() {
                                return Err(format!(
                                    "messages.{i}: text content blocks must be non-empty"
                                ));
                            }
                            if role == "user" {
                                last = t.to_owned();
                            }
                        }
                        Some("tool_use") => {
                            calls.push(b["id"].as_str().unwrap_or_default().to_owned())
                        }
                        Some("tool_result") => {
                            let id = b["tool_use_id"].as_str().unwrap_or_default();
                            if !prev_calls.iter().any(|c| c == id) {
                                return Err(format!(
                                    "messages.{i}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                                ));
                            }
                            last = b["content"].as_str().unwrap_or_default().to_owned();
                        }
                        Some("image") => {}
                        other => return Err(format!("messages.{i}: unknown block type {other:?}")),
                    }
                }
                if role == "assistant" {
                    assistants += 1;
                }
                prev_calls = calls;
            }
            if prev_role != "user" {
                return Err("messages: the last message must be from the user".into());
            }
        }
        Dialect::OpenAi => {
            for t in body["tools"].as_array().into_iter().flatten() {
                let n = t["function"]["name"].as_str().unwrap_or_default();
                if t["type"] != "function" || !valid_tool_name(n, 64) {
                    return Err(format!(
                        "Invalid 'tools': function name {n:?} must match '^[a-zA-Z0-9_-]{{1,64}}$'"
                    ));
                }
            }
            let mut open: Vec<String> = vec![];
            for (i, m) in msgs.iter().enumerate() {
                let role = m["role"].as_str().unwrap_or_default();
                if role != "tool" && !open.is_empty() {
                    return Err(format!(
                        "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                        open.join(", ")
                    ));
                }
                match role {
                    "system" | "developer" => {}
                    "user" => {
                        last = match &m["content"] {
                            Value::String(s) => s.clone(),
                            Value::Array(parts) => parts
                                .iter()
                                .filter_map(|p| p["text"].as_str())
                                .collect::<Vec<_>>()
                                .join(""),
                            _ => return Err(format!("messages[{i}].content: invalid")),
                        };
                    }
                    "assistant" => {
                        assistants += 1;
                        for c in m["tool_calls"].as_array().into_iter().flatten() {
                            if !c["function"]["arguments"].is_string() {
                                return Err(format!(
                                    "messages[{i}].tool_calls: arguments must be a string"
                                ));
                            }
                            open.push(c["id"].as_str().unwrap_or_default().to_owned());
                        }
                    }
                    "tool" => {
                        let id = m["tool_call_id"].as_str().unwrap_or_default();
                        let Some(pos) = open.iter().position(|c| c == id) else {
                            return Err(format!(
                                "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'. (messages[{i}])"
                            ));
                        };
                        open.remove(pos);
                        last = m["content"].as_str().unwrap_or_default().to_owned();
                    }
                    other => return Err(format!("messages[{i}].role: invalid value {other:?}")),
                }
            }
        }
        Dialect::Ollama => {
            for (i, m) in msgs.iter().enumerate() {
                match m["role"].as_str().unwrap_or_default() {
                    "assistant" => {
                        assistants += 1;
                        for c in m["tool_calls"].as_array().into_iter().flatten() {
                            if !c["function"]["arguments"].is_object() {
                                return Err(format!(
                                    "messages[{i}]: tool call arguments must be an object"
                                ));
                            }
                        }
                    }
                    "user" | "tool" => {
                        last = m["content"].as_str().unwrap_or_default().to_owned();
                    }
                    "system" => {}
                    other => return Err(format!("invalid role {other:?}")),
                }
            }
        }
    }
    Ok((assistants, last))
}

fn route(
    path: &str,
    req: &Req,
    dialect: Option<Dialect>,
    state: &Arc<Mutex<State>>,
) -> Result<Answer, (u16, String)> {
    let bad = |m: String| (400u16, m);
    if let Some(d) = dialect {
        let body: Value = serde_json::from_slice(&req.body)
            .map_err(|e| bad(format!("the request body is not JSON: {e}")))?;
        let (n, last) = check_text(d, req, &body).map_err(bad)?;
        let (turn, input) = {
            let s = state.lock().unwrap();
            let t = s
                .script
                .get(n)
                .cloned()
                .unwrap_or_else(|| Turn::text(&format!("(the mock has no turn {n})")));
            (t, s.input_tokens)
        };
        let turn = Turn {
            text: turn.text.replace("{last}", &last),
            calls: turn.calls,
        };
        let model = body["model"].as_str().unwrap_or_default().to_owned();
        let stream = body["stream"].as_bool().unwrap_or(d == Dialect::Ollama);
        return Ok(render_text(d, &turn, &model, stream, input, n));
    }
    let json_body = || -> Result<Value, (u16, String)> {
        serde_json::from_slice(&req.body)
            .map_err(|e| bad(format!("the request body is not JSON: {e}")))
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    match path {
        p if p.ends_with("/images/generations") => {
            let b = json_body()?;
            let prompt = b["prompt"].as_str().unwrap_or_default();
            if prompt.is_empty() {
                return Err(bad("prompt is required".into()));
            }
            let n = b["n"].as_u64().unwrap_or(1);
            let data: Vec<Value> = (0..n)
                .map(|i| json!({"b64_json": b64.encode(fake_png(prompt, i))}))
                .collect();
            Ok(Answer::json(
                200,
                &json!({"created": 1, "data": data, "usage": {"input_tokens": 10, "output_tokens": 100, "total_tokens": 110}}),
            ))
        }
        p if p.ends_with("/audio/speech") => {
            let b = json_body()?;
            if b["input"].as_str().unwrap_or_default().is_empty() || b["voice"].as_str().is_none() {
                return Err(bad("input and voice are required".into()));
            }
            Ok(Answer {
                status: 200,
                content_type: "audio/mpeg",
                headers: vec![],
                frames: vec![fake_audio(b["input"].as_str().unwrap_or_default())],
            })
        }
        p if p.starts_with("/v1/text-to-speech/") => {
            let b = json_body()?;
            let text = b["text"].as_str().unwrap_or_default();
            if text.is_empty() {
                return Err(bad("text is required".into()));
            }
            Ok(Answer {
                status: 200,
                content_type: "audio/mpeg",
                headers: vec![],
                frames: vec![fake_audio(text)],
            })
        }
        p if p.ends_with("/audio/transcriptions") => {
            let parts = multipart(req).map_err(bad)?;
            let file = parts
                .iter()
                .find(|p| p.name == "file")
                .ok_or_else(|| bad("file is required".into()))?;
            if file.filename.is_none() || file.data.is_empty() {
                return Err(bad("the file part needs a filename and content".into()));
            }
            let format = parts
                .iter()
                .find(|p| p.name == "response_format")
                .map(|p| String::from_utf8_lossy(&p.data).to_string());
            let text = format!("heard {} bytes", file.data.len());
            let v = if format.as_deref() == Some("verbose_json") {
                json!({"task": "transcribe", "language": "english", "duration": 1.5, "text": text,
                       "segments": [{"id": 0, "start": 0.0, "end": 1.5, "text": text}]})
            } else {
                json!({"text": text})
            };
            Ok(Answer::json(200, &v))
        }
        p if p.ends_with("/embeddings") => {
            let b = json_body()?;
            let inputs: Vec<String> = match &b["input"] {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
                _ => return Err(bad("input must be a string or an array of strings".into())),
            };
            let data: Vec<Value> = inputs
                .iter()
                .enumerate()
                .map(|(i, s)| json!({"object": "embedding", "index": i, "embedding": fake_vector(s)}))
                .collect();
            let tokens: usize = inputs.iter().map(|s| s.split_whitespace().count()).sum();
            Ok(Answer::json(
                200,
                &json!({"object": "list", "data": data, "model": b["model"], "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
            ))
        }
        "/api/embed" => {
            let b = json_body()?;
            let inputs: Vec<String> = match &b["input"] {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
                _ => return Err(bad("input is required".into())),
            };
            let e: Vec<Value> = inputs.iter().map(|s| fake_vector(s)).collect();
            Ok(Answer::json(
                200,
                &json!({"model": b["model"], "embeddings": e, "prompt_eval_count": inputs.len() * 3}),
            ))
        }
        p if p.starts_with("/v2beta/stable-image/generate/") => {
            let parts = multipart(req).map_err(bad)?;
            let prompt = parts
                .iter()
                .find(|p| p.name == "prompt")
                .map(|p| String::from_utf8_lossy(&p.data).to_string())
                .unwrap_or_default();
            if prompt.is_empty() {
                return Err(bad("prompt: required".into()));
            }
            let accept = req
                .headers
                .iter()
                .find(|(k, _)| k == "accept")
                .map(|(_, v)| v.clone());
            if accept.as_deref() == Some("application/json") {
                Ok(Answer::json(
                    200,
                    &json!({"image": b64.encode(fake_png(&prompt, 0)), "finish_reason": "SUCCESS", "seed": 42}),
                ))
            } else {
                Ok(Answer {
                    status: 200,
                    content_type: "image/png",
                    headers: vec![],
                    frames: vec![fake_png(&prompt, 0)],
                })
            }
        }
        _ => Err((404, format!("no route for {path}"))),
    }
}

fn fake_png(prompt: &str, i: u64) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend_from_slice(format!("image {i} of {prompt}").as_bytes());
    v
}

fn fake_audio(text: &str) -> Vec<u8> {
    let mut v = b"ID3\x04\x00".to_vec();
    v.extend_from_slice(text.as_bytes());
    v
}

fn fake_vector(s: &str) -> Value {
    let n = s.len() as f64;
    json!([
        n / 100.0,
        0.5,
        -0.25,
        (s.bytes().map(u64::from).sum::<u64>() % 100) as f64 / 100.0
    ])
}

struct Part {
    name: String,
    filename: Option<String>,
    data: Vec<u8>,
}

fn multipart(req: &Req) -> Result<Vec<Part>, String> {
    let ct = req
        .headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.clone())
        .ok_or("content-type is required")?;
    let boundary = ct
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .ok_or("the content type must be multipart/form-data with a boundary")?
        .trim_matches('"')
        .to_owned();
    let delim = format!("--{boundary}").into_bytes();
    let body = &req.body;
    let mut parts = Vec::new();
    let mut positions = Vec::new();
    let mut i = 0;
    while let Some(p) = body[i..]
        .windows(delim.len())
        .position(|w| w == delim.as_slice())
    {
        positions.push(i + p);
        i += p + delim.len();
    }
    for w in positions.windows(2) {
        let seg = &body[w[0] + delim.len()..w[1]];
        let seg = seg.strip_prefix(b"\r\n").unwrap_or(seg);
        let Some(h) = seg.windows(4).position(|x| x == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&seg[..h]).to_string();
        let mut data = seg[h + 4..].to_vec();
        if data.ends_with(b"\r\n") {
            data.truncate(data.len() - 2);
        }
        let disp = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
            .unwrap_or_default()
            .to_owned();
        let field = |k: &str| {
            disp.split(';')
                .find_map(|p| p.trim().strip_prefix(&format!("{k}=")))
                .map(|v| v.trim_matches('"').to_owned())
        };
        parts.push(Part {
            name: field("name").unwrap_or_default(),
            filename: field("filename"),
            data,
        });
    }
    Ok(parts)
}

/// Splits `s` in two near the middle (on a char boundary), for fragmented deltas.
fn halves(s: &str) -> (&str, &str) {
    let mut m = s.len() / 2;
    while !s.is_char_boundary(m) {
        m += 1;
    }
    s.split_at(m)
}

fn text_pieces(t: &str) -> Vec<String> {
    let chars: Vec<char> = t.chars().collect();
    chars.chunks(7).map(|c| c.iter().collect()).collect()
}

fn sse(event: Option<&str>, data: &Value) -> Vec<u8> {
    let mut s = String::new();
    if let Some(e) = event {
        s.push_str(&format!("event: {e}\n"));
    }
    s.push_str(&format!("data: {data}\n\n"));
    s.into_bytes()
}

fn render_text(d: Dialect, turn: &Turn, model: &str, stream: bool, input: u64, n: usize) -> Answer {
    let out_tokens = (turn.text.split_whitespace().count() + 5 * turn.calls.len()) as u64 + 1;
    let ids: Vec<String> = (0..turn.calls.len())
        .map(|i| match d {
            Dialect::Anthropic => format!("toolu_{n:02}{i:02}abc"),
            _ => format!("call_{n:02}{i:02}xyz"),
        })
        .collect();
    match d {
        Dialect::Anthropic => {
            let stop = if turn.calls.is_empty() {
                "end_turn"
            } else {
                "tool_use"
            };
            if !stream {
                let mut content = vec![];
                if !turn.text.is_empty() {
                    content.push(json!({"type": "text", "text": turn.text}));
                }
                for (i, (name, args)) in turn.calls.iter().enumerate() {
                    content.push(json!({"type": "tool_use", "id": ids[i], "name": mangle(name), "input": args}));
                }
                return Answer::json(
                    200,
                    &json!({"id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": content, "stop_reason": stop, "stop_sequence": null, "usage": {"input_tokens": input, "output_tokens": out_tokens}}),
                );
            }
            let mut f = vec![sse(
                Some("message_start"),
                &json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message", "role": "assistant", "content": [], "model": model, "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": input, "output_tokens": 1}}}),
            )];
            let mut idx = 0;
            if !turn.text.is_empty() {
                f.push(sse(Some("content_block_start"), &json!({"type": "content_block_start", "index": idx, "content_block": {"type": "text", "text": ""}})));
                f.push(sse(Some("ping"), &json!({"type": "ping"})));
                for p in text_pieces(&turn.text) {
                    f.push(sse(Some("content_block_delta"), &json!({"type": "content_block_delta", "index": idx, "delta": {"type": "text_delta", "text": p}})));
                }
                f.push(sse(
                    Some("content_block_stop"),
                    &json!({"type": "content_block_stop", "index": idx}),
                ));
                idx += 1;
            }
            for (i, (name, args)) in turn.calls.iter().enumerate() {
                f.push(sse(Some("content_block_start"), &json!({"type": "content_block_start", "index": idx, "content_block": {"type": "tool_use", "id": ids[i], "name": mangle(name), "input": {}}})));
                let js = args.to_string();
                let (a, b) = halves(&js);
                for part in ["", a, b] {
                    f.push(sse(Some("content_block_delta"), &json!({"type": "content_block_delta", "index": idx, "delta": {"type": "input_json_delta", "partial_json": part}})));
                }
                f.push(sse(
                    Some("content_block_stop"),
                    &json!({"type": "content_block_stop", "index": idx}),
                ));
                idx += 1;
            }
            f.push(sse(Some("message_delta"), &json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": out_tokens}})));
            f.push(sse(Some("message_stop"), &json!({"type": "message_stop"})));
            Answer {
                status: 200,
                content_type: "text/event-stream",
                headers: vec![],
                frames: f,
            }
        }
        Dialect::OpenAi => {
            let finish = if turn.calls.is_empty() {
                "stop"
            } else {
                "tool_calls"
            };
            let usage = json!({"prompt_tokens": input, "completion_tokens": out_tokens, "total_tokens": input + out_tokens});
            if !stream {
                let mut msg = json!({"role": "assistant", "content": if turn.text.is_empty() { Value::Null } else { json!(turn.text) }});
                if !turn.calls.is_empty() {
                    msg["tool_calls"] = turn
                        .calls
                        .iter()
                        .enumerate()
                        .map(|(i, (name, args))| json!({"id": ids[i], "type": "function", "function": {"name": mangle(name), "arguments": args.to_string()}}))
                        .collect();
                }
                return Answer::json(
                    200,
                    &json!({"id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": model, "choices": [{"index": 0, "message": msg, "finish_reason": finish}], "usage": usage}),
                );
            }
            let chunk = |delta: Value, finish: Value| {
                sse(
                    None,
                    &json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
                )
            };
            let mut f = vec![chunk(
                json!({"role": "assistant", "content": ""}),
                Value::Null,
            )];
            for p in text_pieces(&turn.text) {
                f.push(chunk(json!({"content": p}), Value::Null));
            }
            for (i, (name, args)) in turn.calls.iter().enumerate() {
                f.push(chunk(json!({"tool_calls": [{"index": i, "id": ids[i], "type": "function", "function": {"name": mangle(name), "arguments": ""}}]}), Value::Null));
                let js = args.to_string();
                let (a, b) = halves(&js);
                for part in [a, b] {
                    f.push(chunk(
                        json!({"tool_calls": [{"index": i, "function": {"arguments": part}}]}),
                        Value::Null,
                    ));
                }
            }
            f.push(chunk(json!({}), json!(finish)));
            f.push(sse(None, &json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [], "usage": usage})));
            f.push(b"data: [DONE]\n\n".to_vec());
            Answer {
                status: 200,
                content_type: "text/event-stream",
                headers: vec![],
                frames: f,
            }
        }
        Dialect::Ollama => {
            let line = |v: Value| {
                let mut b = v.to_string().into_bytes();
                b.push(b'\n');
                b
            };
            let calls: Vec<Value> = turn
                .calls
                .iter()
                .map(|(name, args)| json!({"function": {"name": mangle(name), "arguments": args}}))
                .collect();
            let last = json!({"model": model, "created_at": "2026-11-25T00:00:00Z", "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop", "total_duration": 1000, "prompt_eval_count": input, "eval_count": out_tokens});
            if !stream {
                let mut v = last;
                v["message"]["content"] = json!(turn.text);
                if !calls.is_empty() {
                    v["message"]["tool_calls"] = Value::Array(calls);
                }
                return Answer::json(200, &v);
            }
            let mut f = vec![];
            for p in text_pieces(&turn.text) {
                f.push(line(json!({"model": model, "created_at": "2026-11-25T00:00:00Z", "message": {"role": "assistant", "content": p}, "done": false})));
            }
            if !calls.is_empty() {
                f.push(line(json!({"model": model, "created_at": "2026-11-25T00:00:00Z", "message": {"role": "assistant", "content": "", "tool_calls": calls}, "done": false})));
            }
            f.push(line(last));
            Answer {
                status: 200,
                content_type: "application/x-ndjson",
                headers: vec![],
                frames: f,
            }
        }
    }
}
