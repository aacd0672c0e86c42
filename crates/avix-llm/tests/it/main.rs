//! llm.svc against a loopback server that speaks each provider's real wire format.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod live;
mod media;
mod text;
