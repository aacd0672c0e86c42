//! Every wire and file type of Avix, defined once.
//!
//! # Layout
//! - [`name`]: validated identifiers (user, crew and agent names).
//! - [`id`]: ids the daemon hands out ([`Pid`], [`SessionId`], [`InvocationId`], [`HilId`]).
//! - [`text`]: escaping text before it reaches a log or a terminal.
//! - [`time`]: RFC 3339 timestamps and human durations (`8h`, `15m`).
//! - [`yaml`]: the one YAML entry point, with size caps and located errors.
//! - [`envelope`]: the `apiVersion`/`kind`/`metadata`/`spec` envelope shared by documents.
//! - [`role`]: the role ladder `guest < user < operator < admin`.
//! - [`config`]: the files under `/etc/avix` (users, crews, kernel, llm, auth).
//! - [`kernel_files`]: the compiled-in documents published under `/kernel`.
//! - [`agent`]: manifests, spawn requests, `/proc/<pid>` documents, journal events.
//! - [`llm`]: the Avix-native LLM request, response and stream types.
//! - [`tool`]: tool names and their provider wire form.
//! - [`status`]: documents the daemon publishes under `/proc`.
//! - [`event`]: the names of the events the daemon publishes.
//! - [`op`]: every ATP operation and its body as types, and the replies that are not documents.
//! - [`rpc`]: JSON-RPC 2.0 messages of the internal IPC.
//! - [`error`]: the one error kind every door reports, and its mapping to each door's codes.
//! - [`service`]: service units and their status documents.
//!
//! Every document uses camelCase keys (see `docs/decisions.md`).

pub mod agent;
pub mod atp;
pub mod config;
pub mod envelope;
pub mod error;
pub mod event;
pub mod id;
pub mod kernel_files;
pub mod llm;
pub mod name;
pub mod op;
pub mod role;
pub mod rpc;
pub mod service;
pub mod status;
pub mod text;
pub mod time;
pub mod tool;
pub mod yaml;

pub use envelope::{API_VERSION, Document, Kind};
pub use error::{Error, ErrorKind, HasKind};
pub use id::{HilId, InvocationId, Pid, SessionId};
pub use name::{AgentName, CrewName, NameError, UserName};
pub use role::Role;
