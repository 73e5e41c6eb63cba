//! The Otto node daemon as a library: mesh, trust, handoffs, orchestration, store, API.
//!
//! Filled by the node and agent work; see `docs/architecture.md`.

pub mod api;
pub mod artifacts;
pub mod blobs;
pub mod capabilities;
pub mod daemon;
pub mod engine;
pub mod exchange;
pub mod failpoint;
pub mod gc;
pub mod home;
pub mod membership;
pub mod mesh;
pub mod outbound;
pub mod secrets;
pub mod snapshot;
pub mod sources;
pub mod step_user;
pub mod store;
pub mod ui;
pub mod vault;
