//! Integration tests of the VFS facade, without FUSE.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod facade;
mod model;
