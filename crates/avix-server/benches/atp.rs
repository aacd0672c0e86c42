//! ATP figures: token validation, command round trip over loopback (p50/p99), event latency
//! to a subscribed client, fan-out to 100 subscribers; and a load mode for benches/atp_load.sh.
//!
//! `cargo bench -p avix-server --bench atp`
//! `cargo bench -p avix-server --bench atp -- --load SECS --clients N --server URL`
//!   (the API key in AVIX_API_KEY) drives a running daemon.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use avix_proto::event::EventName;

use avix_auth::atptoken::AtpClaims;
use avix_client::{Client, Config};
use avix_gateway::Gateway;
use avix_gateway::logs::LogRing;
use avix_kernel::layout::RootLayout;
use avix_kernel::{BootOptions, Kernel};
use avix_proto::Role;
use avix_server::init::InitOptions;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

#[allow(clippy::cast_possible_truncation)] // an index into v
fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

struct Setup {
    _dir: tempfile::TempDir,
    kernel: Arc<Kernel>,
    gw: Arc<Gateway>,
    config: Config,
    _stop: tokio_util::sync::DropGuard,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let report = avix_server::init::run(&InitOptions::admin(
        root.clone(),
        avix_proto::UserName::new("alice").unwrap(),
    ))
    .unwrap();
    let key = report.api_key.unwrap().expose().to_owned();
    let layout = RootLayout::new(&root);
    // Hundreds of connections of one user: no session quota.
    let users = layout.etc_file("users.yaml");
    let text = std::fs::read_to_string(&users).unwrap();
    std::fs::write(&users, text.replace("sessions: 4", "sessions: unlimited")).unwrap();
    let master = avix_auth::MasterKey::from_file(&layout.etc_file("master.key")).unwrap();
    let kernel = Kernel::boot(
        layout,
        &master,
        BootOptions::new(tokio::runtime::Handle::current()),
    )
    .unwrap();
    let stop = CancellationToken::new();
    let gw = Gateway::new(kernel.clone(), Arc::new(LogRing::default()), stop.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(avix_gateway::serve(gw.clone(), listener, stop.clone()));
    Setup {
        _dir: dir,
        kernel,
        gw,
        config: Config {
            server: format!("http://{addr}"),
            identity: "alice".into(),
            credential: Some(Zeroizing::new(key)),
            ca_cert: None,
        },
        _stop: stop.drop_guard(),
    }
}

async fn figures() {
    let s = setup().await;
    let now = avix_proto::time::Timestamp::now().unix();

    // Token validation: the signature check (a new token), and the re-check a connection
    // does for the token it already verified.
    let login = avix_client::login(&s.config).await.unwrap();
    let signer = s.gw.auth().signer();
    let n = 200_000;
    let t0 = Instant::now();
    for _ in 0..n {
        std::hint::black_box(
            signer
                .verify(std::hint::black_box(&login.token), now)
                .unwrap(),
        );
    }
    let full = t0.elapsed() / n;
    let mut claims = s.gw.auth().validate(&login.token).unwrap();
    let t0 = Instant::now();
    for _ in 0..n {
        s.gw.auth()
            .recheck(std::hint::black_box(&mut claims))
            .unwrap();
    }
    let recheck = t0.elapsed() / n;
    let forged = signer.mint(&AtpClaims {
        sub: "alice".into(),
        role: Role::Admin,
        sid: "x".into(),
        iat: now,
        exp: now + 10,
    });
    let t0 = Instant::now();
    for _ in 0..n {
        std::hint::black_box(s.gw.auth().validate(std::hint::black_box(&forged)).is_err());
    }
    let refused = t0.elapsed() / n;
    println!(
        "token validation: signature+claims {} ns; cached re-check {} ns; unknown login refused {} ns",
        full.as_nanos(),
        recheck.as_nanos(),
        refused.as_nanos()
    );

    // Command round trip: proc list with 10 agents listed.
    let c = Client::open(&s.config, login).await.unwrap();
    for _ in 0..10 {
        c.call(
            "proc",
            "spawn",
            json!({"agent": "assistant", "goal": "notes"}),
        )
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..500 {
        c.call("proc", "list", json!({})).await.unwrap();
    }
    let mut lat = Vec::new();
    for _ in 0..5000 {
        let t0 = Instant::now();
        c.call("proc", "list", json!({})).await.unwrap();
        lat.push(t0.elapsed());
    }
    let mut who = Vec::new();
    for _ in 0..5000 {
        let t0 = Instant::now();
        c.call("auth", "whoami", json!({})).await.unwrap();
        who.push(t0.elapsed());
    }
    println!(
        "round trip over loopback: proc list (10 agents) p50 {} p99 {}; auth whoami p50 {} p99 {}",
        us(pct(&mut lat, 0.5)),
        us(pct(&mut lat, 0.99)),
        us(pct(&mut who, 0.5)),
        us(pct(&mut who, 0.99))
    );

    // The same over a bare WebSocket (no client library tasks between): the server's share.
    {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let login = avix_client::login(&s.config).await.unwrap();
        let mut req = format!("{}/atp", s.config.server.replace("http://", "ws://"))
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {}", login.token).parse().unwrap(),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let _ready = ws.next().await;
        let raw = |op: &'static str| {
            let frame = format!(
                r#"{{"type":"cmd","id":"x","token":"{}","domain":"{}","op":"{}"}}"#,
                login.token,
                if op == "list" { "proc" } else { "auth" },
                op
            );
            frame
        };
        let mut out = Vec::new();
        for op in ["list", "whoami"] {
            let frame = raw(op);
            let mut lat = Vec::new();
            for i in 0..5500 {
                let t0 = Instant::now();
                ws.send(Message::Text(frame.clone().into())).await.unwrap();
                loop {
                    if let Some(Ok(Message::Text(_))) = ws.next().await {
                        break;
                    }
                }
                if i >= 500 {
                    lat.push(t0.elapsed());
                }
            }
            out.push(format!(
                "{op} p50 {} p99 {}",
                us(pct(&mut lat, 0.5)),
                us(pct(&mut lat, 0.99))
            ));
        }
        println!(
            "round trip, bare WebSocket client in one task: {}",
            out.join("; ")
        );
    }

    // Event latency: emit in the kernel, time until the client library hands it over.
    c.subscribe(&["bench.*"], None).await.unwrap();
    let mut rx = c.events();
    let mut lat = Vec::new();
    for i in 0..2000 {
        let t0 = Instant::now();
        s.kernel.events().emit(
            EventName::AgentStatus,
            Some(avix_proto::Pid::new(i)),
            None,
            json!({}),
        );
        loop {
            let e = rx.recv().await.unwrap();
            if e.event == EventName::AgentStatus && e.pid == Some(avix_proto::Pid::new(i)) {
                break;
            }
        }
        lat.push(t0.elapsed());
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    println!(
        "event to a subscribed client: p50 {} p99 {} max {}",
        us(pct(&mut lat, 0.5)),
        us(pct(&mut lat, 0.99)),
        us(*lat.last().unwrap())
    );

    // Fan-out: 100 subscribers, each event timed until the last of them has it.
    let mut clients = Vec::new();
    for _ in 0..100 {
        let c = Client::connect(&s.config).await.unwrap();
        c.subscribe(&["fan.*"], None).await.unwrap();
        clients.push(c);
    }
    let got = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let events = 500u64;
    for c in &clients {
        let mut rx = c.events();
        let got = got.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while n < events {
                if rx.recv().await.unwrap().event == EventName::AgentOutput {
                    n += 1;
                    got.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut lat = Vec::new();
    let t_all = Instant::now();
    for i in 0..events {
        let target = (i + 1) * 100;
        let t0 = Instant::now();
        s.kernel.events().emit(
            EventName::AgentOutput,
            Some(avix_proto::Pid::new(i)),
            None,
            json!({"n": i}),
        );
        while got.load(Ordering::Relaxed) < target {
            tokio::task::yield_now().await;
        }
        lat.push(t0.elapsed());
    }
    let total = t_all.elapsed();
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "fan-out to 100 subscribers: last delivery p50 {} p99 {}; {} events x 100 in {:.0} ms ({:.0} deliveries/s)",
        us(pct(&mut lat, 0.5)),
        us(pct(&mut lat, 0.99)),
        events,
        total.as_secs_f64() * 1000.0,
        (events * 100) as f64 / total.as_secs_f64()
    );
}

async fn load(secs: u64, clients: usize, server: String, spawn_every: u64) {
    let key = std::env::var("AVIX_API_KEY").expect("AVIX_API_KEY");
    let config = Config {
        server,
        identity: String::new(),
        credential: Some(Zeroizing::new(key)),
        ca_cert: None,
    };
    let deadline = Instant::now() + Duration::from_secs(secs);
    let ok = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..clients {
        let config = config.clone();
        let ok = ok.clone();
        tasks.push(tokio::spawn(async move {
            let c = Client::connect(&config).await.unwrap();
            let mut lat = Vec::new();
            let mut errors = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                // One spawn in every `spawn_every` commands (0: lists only).
                let r = if spawn_every > 0 && n % spawn_every == (i as u64 % spawn_every) {
                    c.call(
                        "proc",
                        "spawn",
                        json!({"agent": "assistant", "goal": "load"}),
                    )
                    .await
                } else {
                    c.call("proc", "list", json!({"live": true})).await
                };
                lat.push(t0.elapsed());
                match r {
                    Ok(_) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => errors.push(e.to_string()),
                }
                n += 1;
            }
            (lat, errors)
        }));
    }
    let started = Instant::now();
    let mut lat = Vec::new();
    let mut errors = Vec::new();
    for t in tasks {
        let (l, e) = t.await.unwrap();
        lat.extend(l);
        errors.extend(e);
    }
    let wall = started.elapsed();
    println!(
        "{clients} clients for {secs} s: {} commands ({:.0}/s), p50 {} p99 {} max {}, {} errors",
        lat.len(),
        lat.len() as f64 / wall.as_secs_f64(),
        us(pct(&mut lat, 0.5)),
        us(pct(&mut lat, 0.99)),
        us(*lat.last().unwrap_or(&Duration::ZERO)),
        errors.len()
    );
    for e in errors.iter().take(5) {
        println!("  error: {e}");
    }
    assert!(errors.is_empty(), "the load run had errors");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match flag("--load") {
        Some(secs) => rt.block_on(load(
            secs.parse().unwrap(),
            flag("--clients").map_or(200, |c| c.parse().unwrap()),
            flag("--server").unwrap_or_else(|| "http://127.0.0.1:9142".into()),
            flag("--spawn-every").map_or(10, |c| c.parse().unwrap()),
        )),
        None => rt.block_on(figures()),
    }
}
