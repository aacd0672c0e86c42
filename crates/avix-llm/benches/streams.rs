//! 1,000 concurrent streaming completions against a loopback server speaking each wire
//! format: wall time, and the client's memory (the server runs as a separate process, so
//! the RSS figures are Avix's alone).
//!
//! `cargo bench -p avix-llm --bench streams` (add `-- 5000` for another count).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::Instant;

use avix_llm::LlmClient;
use avix_llm::http::HttpStats;
use avix_llm::provider::HttpText;
use avix_proto::config::llm::Provider;
use avix_proto::llm::{LlmRequest, Message};
use avix_testkit::mock_llm::{MockLlm, Turn};

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

const TEXT: &str = "streamed words arrive one small piece at a time ";

/// Server mode: serve the scripted answer, print the URL, exit when stdin closes.
fn serve() {
    let mock = MockLlm::start();
    mock.script(vec![Turn::text(&TEXT.repeat(20))]);
    println!("{}", mock.url());
    let mut sink = String::new();
    let _ = std::io::stdin().read_line(&mut sink);
}

fn main() {
    if std::env::args().any(|a| a == "--serve") {
        return serve();
    }
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{n} concurrent streaming requests, {} bytes of text each (about 140 stream frames)",
        TEXT.len() * 20
    );
    let mut server = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--serve")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let url = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        line.trim().to_owned()
    };
    for (kind, suffix) in [("anthropic", ""), ("openai", "/v1"), ("ollama", "")] {
        let yaml = format!(
            "name: p\nkind: {kind}\nbaseUrl: {url}{suffix}\ntimeouts: {{firstByteSecs: 60, idleSecs: 60}}\nretry: {{maxAttempts: 1}}\n"
        );
        let p: Provider = avix_proto::yaml::from_str(&yaml).unwrap();
        let key = avix_llm::http::Credential::new("sk-bench-key-0000000000".into());
        let client =
            Arc::new(HttpText::new(&p, Some(key), Arc::new(HttpStats::default())).unwrap());
        let before = rss_kib("VmRSS:");
        let started = Instant::now();
        let done = rt.block_on(async {
            let mut tasks = Vec::with_capacity(n);
            for i in 0..n {
                let c = client.clone();
                tasks.push(tokio::spawn(async move {
                    let req = LlmRequest {
                        model: "p/m".into(),
                        system: String::new(),
                        messages: vec![Message::user_text(format!("request {i}"))],
                        tools: vec![],
                        max_tokens: 100,
                        temperature: None,
                        meta: Default::default(),
                    };
                    c.complete(req, None).await.map(|r| r.content.len())
                }));
            }
            let mut ok = 0;
            for t in tasks {
                if t.await.unwrap().is_ok() {
                    ok += 1;
                }
            }
            ok
        });
        let wall = started.elapsed();
        let after = rss_kib("VmRSS:");
        println!(
            "{kind:>9}: {done}/{n} ok in {:.0} ms ({:.2} ms per request amortised); RSS {} -> {} MiB, peak {} MiB",
            wall.as_secs_f64() * 1000.0,
            wall.as_secs_f64() * 1000.0 / n as f64,
            before / 1024,
            after / 1024,
            rss_kib("VmHWM:") / 1024,
        );
        assert_eq!(done, n, "{kind}: every request completed");
    }
    drop(server.stdin.take());
    let _ = server.wait();
}
