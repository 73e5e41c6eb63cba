//! Local multi-organisation Otto meshes built from real node processes.
//!
//! Filled by the testnet work; see `docs/architecture.md`. Today it holds the workspace's
//! tidy checks (`tests/tidy.rs`).
