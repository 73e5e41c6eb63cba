//! The Otto node daemon as a library: mesh, trust, handoffs, orchestration, store, API.
//!
//! Filled by the node and agent work; see `docs/architecture.md`.

pub mod blobs;
pub mod store;
pub mod vault;
