//! The IPC transport against raw sockets: every malformed input gets a clear error and
//! nothing hangs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream as StdStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use avix_ipc::server::{self, BoxFuture, Handler, Notifier, Peer, ServerConfig};
use avix_ipc::{CallOptions, call, call_streaming};
use avix_proto::rpc::{Request, RpcError, code};
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
struct Echo;

impl Handler for Echo {
    fn handle(
        &self,
        _peer: Peer,
        req: Request,
        notes: Notifier,
    ) -> BoxFuture<'static, Result<Box<RawValue>, RpcError>> {
        Box::pin(async move {
            match req.method.as_str() {
                "echo" => Ok(req
                    .params
                    .unwrap_or_else(|| RawValue::from_string("null".into()).unwrap())),
                "stream" => {
                    for i in 0..3 {
                        let p = RawValue::from_string(format!("{{\"n\":{i}}}")).unwrap();
                        notes.send("chunk", p).await;
                    }
                    Ok(RawValue::from_string("\"done\"".into()).unwrap())
                }
                "hang" => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    unreachable!()
                }
                m => Err(RpcError::new(
                    code::METHOD_NOT_FOUND,
                    format!("unknown method {m}"),
                )),
            }
        })
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    stop: CancellationToken,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(cfg: ServerConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sock");
    let l = server::bind(&path).unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(server::serve(l, Arc::new(Echo), cfg, stop.clone()));
    Fixture {
        _dir: dir,
        path,
        stop,
    }
}

fn cfg() -> ServerConfig {
    ServerConfig::same_user(4096, Duration::from_millis(300))
}

/// Writes raw bytes, half-closes, and reads the one reply frame (None: closed silently).
fn raw(path: &Path, bytes: &[u8]) -> Option<serde_json::Value> {
    let mut s = StdStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    if all.is_empty() {
        return None;
    }
    let len = u32::from_le_bytes(all[..4].try_into().unwrap()) as usize;
    assert_eq!(all.len(), 4 + len, "exactly one frame");
    Some(serde_json::from_slice(&all[4..]).unwrap())
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = u32::try_from(body.len()).unwrap().to_le_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_clear_errors_and_the_server_survives() {
    let f = serve(cfg()).await;
    let path = f.path.clone();
    tokio::task::spawn_blocking(move || {
        let check = |bytes: &[u8], code: i32, id: serde_json::Value, says: &str| {
            let r = raw(&path, bytes).expect("a reply");
            assert_eq!(r["jsonrpc"], "2.0");
            assert_eq!(r["error"]["code"], code, "{r}");
            assert_eq!(r["id"], id, "{r}");
            let m = r["error"]["message"].as_str().unwrap();
            assert!(m.contains(says), "{m:?} should say {says:?}");
        };
        check(
            &frame(b"this is not json"),
            code::PARSE,
            serde_json::Value::Null,
            "not valid JSON",
        );
        check(
            &frame(b"{\"id\":5}"),
            code::INVALID_REQUEST,
            5.into(),
            "not a JSON-RPC 2.0 request",
        );
        check(
            &frame(br#"{"jsonrpc":"1.0","id":"a","method":"echo"}"#),
            code::INVALID_REQUEST,
            "a".into(),
            "unsupported jsonrpc version",
        );
        check(
            &frame(br#"{"jsonrpc":"2.0","id":7,"method":"nope"}"#),
            code::METHOD_NOT_FOUND,
            7.into(),
            "unknown method nope",
        );
        // Oversized: refused from the header alone.
        check(
            &(1_000_000u32).to_le_bytes(),
            code::ETOOBIG,
            serde_json::Value::Null,
            "larger than the limit of 4096 bytes",
        );
        // A truncated header or body.
        check(
            &[1, 0],
            code::PARSE,
            serde_json::Value::Null,
            "closed inside a frame (2 of 4 bytes)",
        );
        check(
            &frame(b"{\"jsonrpc\"")[..8],
            code::PARSE,
            serde_json::Value::Null,
            "closed inside a frame (4 of 10 bytes)",
        );
        // A notification gets no reply.
        assert!(raw(&path, &frame(br#"{"jsonrpc":"2.0","method":"echo"}"#)).is_none());
        // Numeric and string ids come back as sent.
        let r = raw(
            &path,
            &frame(br#"{"jsonrpc":"2.0","id":42,"method":"echo","params":{"a":[1,2]}}"#),
        )
        .unwrap();
        assert_eq!(r["id"], 42);
        assert_eq!(r["result"]["a"][1], 2);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_cut_off_and_a_silent_server_times_out() {
    let f = serve(cfg()).await;
    // A client that connects and sends nothing gets ETIMEOUT after the read timeout.
    let path = f.path.clone();
    let r = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let mut s = StdStream::connect(&path).unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        (
            t.elapsed(),
            serde_json::from_slice::<serde_json::Value>(&all[4..]).unwrap(),
        )
    })
    .await
    .unwrap();
    assert!(r.0 < Duration::from_secs(3), "{:?}", r.0);
    assert_eq!(r.1["error"]["code"], code::ETIMEOUT);

    // A handler that never answers: the caller's timeout ends the call.
    let opts = CallOptions {
        timeout: Duration::from_millis(300),
        max_frame: 4096,
    };
    let e = call(&f.path, "hang", None, opts).await.unwrap_err();
    assert_eq!(e.code, code::ETIMEOUT);
    assert!(e.message.contains("no answer"), "{e}");

    // A socket nobody listens on: EUNAVAIL at once.
    let e = call(Path::new("/nonexistent/x.sock"), "echo", None, opts)
        .await
        .unwrap_err();
    assert_eq!(e.code, code::EUNAVAIL);
    assert!(e.message.contains("is the service running"), "{e}");

    // Oversized params are refused before sending.
    let big = avix_ipc::client::params(&"x".repeat(5000)).unwrap();
    let e = call(&f.path, "echo", Some(big), opts).await.unwrap_err();
    assert_eq!(e.code, code::ETOOBIG);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_sends_notifications_then_the_response() {
    let f = serve(cfg()).await;
    let mut seen = Vec::new();
    let r = call_streaming(&f.path, "stream", None, CallOptions::default(), |n| {
        seen.push(n.params.unwrap().get().to_owned());
    })
    .await
    .unwrap();
    assert_eq!(r.get(), "\"done\"");
    assert_eq!(seen, [r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_are_0600_and_other_users_are_refused_by_peer_credentials() {
    let f = serve(cfg()).await;
    let mode = std::fs::metadata(&f.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: cannot test another uid");
        return;
    }
    // Open the socket to everyone, so only the peer check stands in the way.
    std::fs::set_permissions(f._dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&f.path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let script = format!(
        "import socket,struct,json\ns=socket.socket(socket.AF_UNIX)\ns.connect({:?})\nb=json.dumps({{'jsonrpc':'2.0','id':1,'method':'echo'}}).encode()\ns.sendall(struct.pack('<I',len(b))+b)\nd=b''\nwhile True:\n  c=s.recv(4096)\n  if not c: break\n  d+=c\nprint(d[4:].decode())\n",
        f.path.to_str().unwrap()
    );
    let out = tokio::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            &script,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["error"]["code"], code::EAUTH, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("uid 65534 may not use this socket")
    );
}
