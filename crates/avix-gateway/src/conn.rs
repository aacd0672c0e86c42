//! One ATP WebSocket connection: frames in, replies and events out.
//!
//! Every frame gets an answer: a command exactly one reply, a broken frame an error reply
//! (with its id when it can be read). Events flow once the client subscribes; a client that
//! reads too slowly falls behind on the kernel's bus, catches up from the replay ring, and is
//! told of a gap (`events.gap`) only for what the ring no longer holds. The kernel never
//! waits for a client.

use std::sync::Arc;
use std::time::Duration;

use avix_auth::atptoken::AtpClaims;
use avix_kernel::events::Event;
use avix_proto::UserName;
use avix_proto::atp::{
    AtpError, ClientFrame, ErrorCode, EventFrame, Reply, ServerFrame, Subscribe, event_matches,
};
use avix_proto::event::{self, EventBody, EventName};
use avix_proto::time::Timestamp;
use avix_vfs::{Caller, Door};
use axum::extract::ws::{Message, WebSocket};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::Gateway;
use crate::ops::Asker;

/// How often the server pings an idle client.
const PING_EVERY: Duration = Duration::from_secs(30);

struct State {
    claims: AtpClaims,
    token: String,
    subs: Vec<String>,
    // The highest event sequence handled (delivered or filtered out).
    last_seq: u64,
    // The kernel bus, joined at the first subscription: a connection that only sends
    // commands costs the bus nothing.
    rx: Option<tokio::sync::broadcast::Receiver<Arc<Event>>>,
    // A reference client (no `avix.atp.v1` subprotocol): answered in its terms.
    compat: bool,
}

/// The frame of `e` for this connection: Avix's (computed once for every subscriber), or the
/// reference's (compat.rs; `None` for an event it does not know).
fn frame_for(st: &State, e: &Event) -> Option<String> {
    if st.compat {
        return crate::compat::event(&EventFrame {
            seq: e.seq,
            event: e.event.as_str().to_owned(),
            ts: e.ts,
            pid: e.pid,
            body: e.body.clone(),
        });
    }
    Some(wire(e).to_owned())
}

fn wire(e: &Event) -> &str {
    e.wire.get_or_init(|| {
        serde_json::to_string(&ServerFrame::Event(EventFrame {
            seq: e.seq,
            event: e.event.as_str().to_owned(),
            ts: e.ts,
            pid: e.pid,
            body: e.body.clone(),
        }))
        .unwrap_or_default()
    })
}

fn direct<T: EventBody>(body: &T) -> String {
    let body = serde_json::to_value(body).unwrap_or_default();
    serde_json::to_string(&ServerFrame::Event(EventFrame {
        seq: 0,
        event: T::NAME.as_str().to_owned(),
        ts: Timestamp::now(),
        pid: None,
        body,
    }))
    .unwrap_or_default()
}

/// A success reply around an already serialized body.
fn reply_ok(id: &str, body: &str) -> String {
    let id = serde_json::to_string(id).unwrap_or_else(|_| "null".into());
    let mut s = String::with_capacity(body.len() + id.len() + 40);
    s.push_str(r#"{"type":"reply","id":"#);
    s.push_str(&id);
    s.push_str(r#","ok":true,"body":"#);
    s.push_str(body);
    s.push('}');
    s
}

fn reply(r: Reply) -> String {
    serde_json::to_string(&ServerFrame::Reply(r)).unwrap_or_default()
}

impl State {
    fn visible(&self, e: &Event) -> bool {
        avix_kernel::policy::may_see_event(
            self.claims.role,
            &self.claims.sub,
            e.event,
            e.user.as_deref(),
        )
    }

    fn wants(&self, e: &Event) -> bool {
        // Log lines are many: only a subscription that names them gets them, not `*`.
        let named = |p: &String| p != "*" || e.event != EventName::SysLog;
        self.subs
            .iter()
            .any(|p| named(p) && event_matches(p, e.event.as_str()))
            && self.visible(e)
    }
}

impl Gateway {
    fn asker(&self, claims: &AtpClaims) -> Result<Asker, AtpError> {
        let user = UserName::new(&claims.sub)
            .map_err(|e| AtpError::new(ErrorCode::EAUTH, e.to_string()))?;
        let config = self.kernel.config().get();
        let crews = config.crews_of(&user);
        Ok(Asker {
            caller: Caller::user(user.clone(), claims.role, crews, Door::Atp),
            user,
            role: claims.role,
            sid: claims.sid.clone(),
            exp: claims.exp,
        })
    }

    /// Checks the token of a frame against the connection's login.
    fn check_token(&self, st: &mut State, token: &str) -> Result<(), AtpError> {
        if token == st.token {
            // Verified when it was adopted: only what can change since is re-checked.
            return self.auth.recheck(&mut st.claims);
        }
        let claims = self.auth.validate(token)?;
        if claims.sid != st.claims.sid {
            return Err(AtpError::new(
                ErrorCode::ESESSION,
                "this token belongs to another login than this connection: use the token you connected with (or reconnect)",
            ));
        }
        // Adopt it: it may be a refreshed one, or carry a changed role.
        st.claims = claims;
        st.token = token.to_owned();
        Ok(())
    }

    /// Serves an upgraded connection until the client leaves, logs out, or the daemon stops.
    pub(crate) async fn serve_connection(
        self: Arc<Self>,
        mut ws: WebSocket,
        claims: AtpClaims,
        token: String,
        compat: bool,
    ) {
        let _guard = self.connection_opened();
        let bus = self.kernel.events();
        let mut st = State {
            claims,
            token,
            subs: Vec::new(),
            last_seq: bus.last_seq(),
            rx: None,
            compat,
        };
        let ready = direct(&event::Ready {
            session_id: st.claims.sid.clone(),
            user: st.claims.sub.clone(),
            role: st.claims.role,
            protocol: avix_proto::atp::PROTOCOL.to_owned(),
            last_seq: st.last_seq,
        });
        if ws.send(Message::text(ready)).await.is_err() {
            return;
        }
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        let shutdown = self.shutdown.clone();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    let _ = ws.send(Message::text(direct(&event::Closing { reason: "the daemon is stopping".into() }))).await;
                    let _ = ws.send(Message::Close(None)).await;
                    break;
                }
                msg = ws.recv() => {
                    let Some(Ok(msg)) = msg else { break };
                    let text = match msg {
                        Message::Text(t) => t,
                        Message::Binary(_) => {
                            let r = reply(Reply::err(None, AtpError::new(ErrorCode::EPARSE, "binary frames are not ATP: send JSON text frames")));
                            if ws.send(Message::text(r)).await.is_err() { break }
                            continue;
                        }
                        Message::Close(_) => break,
                        Message::Ping(_) | Message::Pong(_) => continue,
                    };
                    let (out, close) = self.on_frame(&mut st, text.as_str()).await;
                    let mut failed = false;
                    for frame in out {
                        if ws.send(Message::text(frame)).await.is_err() {
                            failed = true;
                            break;
                        }
                    }
                    if failed || close {
                        let _ = ws.send(Message::Close(None)).await;
                        break;
                    }
                }
                ev = async {
                    match st.rx.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let frames = match ev {
                        Ok(e) => {
                            if e.seq <= st.last_seq { continue }
                            st.last_seq = e.seq;
                            if !st.wants(&e) { continue }
                            frame_for(&st, &e).into_iter().collect()
                        }
                        Err(RecvError::Lagged(_)) => self.catch_up(&mut st),
                        Err(RecvError::Closed) => break,
                    };
                    let mut failed = false;
                    for f in frames {
                        if ws.send(Message::text(f)).await.is_err() {
                            failed = true;
                            break;
                        }
                    }
                    if failed { break }
                }
                _ = ping.tick() => {
                    if ws.send(Message::Ping(bytes::Bytes::new())).await.is_err() { break }
                }
            }
        }
    }

    /// Frames for the events after `st.last_seq`: from the ring, with a gap event first if
    /// the ring no longer reaches back that far.
    fn catch_up(&self, st: &mut State) -> Vec<String> {
        let (events, complete) = self.kernel.events().since(st.last_seq);
        let mut out = Vec::new();
        if !complete && !st.subs.is_empty() {
            let to = events.first().map_or(st.last_seq, |e| e.seq - 1);
            out.push(direct(&event::Gap {
                from: st.last_seq + 1,
                to,
                reason: "the client read too slowly; these events are gone from the replay ring (journals keep the history)".into(),
            }));
        }
        for e in events {
            if e.seq <= st.last_seq {
                continue;
            }
            st.last_seq = e.seq;
            if st.wants(&e) {
                out.extend(frame_for(st, &e));
            }
        }
        out
    }

    fn subscribe(&self, st: &mut State, s: Subscribe) -> Result<Vec<String>, AtpError> {
        if let Some(t) = &s.token {
            self.check_token(st, t)?;
        } else {
            // The connection's own token must still be good (not logged out, not expired).
            let t = st.token.clone();
            self.check_token(st, &t)?;
        }
        if s.events.len() > 256 || s.events.iter().any(|e| e.len() > 200) {
            return Err(AtpError::new(
                ErrorCode::EINVAL,
                "at most 256 event patterns of 200 characters",
            ));
        }
        st.subs = s.events;
        // Joined before the ring is read: nothing falls between the two.
        let joined_at = match &st.rx {
            Some(_) => None,
            None => {
                let (rx, at) = self.kernel.events().subscribe_at();
                st.rx = Some(rx);
                Some(at)
            }
        };
        let mut out = Vec::new();
        match (s.since_seq, joined_at) {
            (Some(since), _) => {
                st.last_seq = since;
                out = self.catch_up(st);
            }
            // From now on: everything the new receiver gets.
            (None, Some(at)) => st.last_seq = at,
            // Already joined: the receiver continues where it is.
            (None, None) => {}
        }
        if let Some(id) = s.id {
            out.insert(
                0,
                reply(Reply::ok(
                    Some(id),
                    json!({"events": st.subs, "replayed": out.len(), "lastSeq": st.last_seq}),
                )),
            );
        }
        Ok(out)
    }

    /// Answers one frame. Returns the frames to send and whether to close afterwards.
    async fn on_frame(&self, st: &mut State, text: &str) -> (Vec<String>, bool) {
        let compat = st.compat;
        let err = |e: AtpError| if compat { crate::compat::error(e) } else { e };
        let frame = match avix_proto::atp::parse_client_frame(text) {
            Ok(f) => f,
            Err((id, e)) => return (vec![reply(Reply::err(id, err(e)))], false),
        };
        match frame {
            ClientFrame::Subscribe(s) => {
                let id = s.id.clone();
                match self.subscribe(st, s) {
                    Ok(out) => (out, false),
                    Err(e) => (vec![reply(Reply::err(id, err(e)))], false),
                }
            }
            ClientFrame::Cmd(c) => {
                if let Err(e) = self.check_token(st, &c.token) {
                    let close = e.code == ErrorCode::EAUTH && c.token == st.token;
                    return (vec![reply(Reply::err(Some(c.id), err(e)))], close);
                }
                let asker = match self.asker(&st.claims) {
                    Ok(a) => a,
                    Err(e) => return (vec![reply(Reply::err(Some(c.id), err(e)))], true),
                };
                // A reference client's command, in Avix's terms (docs/atp.md).
                let (t, done) = if compat {
                    let mut t = match crate::compat::request(&c.domain, &c.op, c.body) {
                        Ok(t) => t,
                        Err(e) => return (vec![reply(Reply::err(Some(c.id), err(e)))], false),
                    };
                    let body = std::mem::take(&mut t.body);
                    let done = self.dispatch(&asker, &t.domain, &t.op, body).await;
                    (Some(t), done)
                } else {
                    (None, self.dispatch(&asker, &c.domain, &c.op, c.body).await)
                };
                match done {
                    Ok((body, effects)) => {
                        if let Some(tok) = effects.token {
                            st.token = tok;
                        }
                        let body = match &t {
                            Some(t) => crate::compat::reply(t, &body.0),
                            None => body.0,
                        };
                        (vec![reply_ok(&c.id, &body)], effects.close)
                    }
                    Err(e) => (vec![reply(Reply::err(Some(c.id), err(e)))], false),
                }
            }
        }
    }
}
