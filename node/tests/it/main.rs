//! Integration tests of this crate, as one test binary (one link, one binary on disk).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod engine_support;
mod mesh_support;

mod blobs;
mod engine;
mod engine_concurrency;
mod engine_gates;
mod engine_recovery;
mod engine_wall;
mod gc;
mod logs;
mod mesh;
mod mesh_artifact;
mod mesh_gossip;
mod mesh_logfetch;
mod mesh_revocation;
mod store;
mod store_crash;
mod ui;
mod vault;
