//! The Otto agent: the process that runs one stage's steps, each as its own OS process.
//!
//! Filled by the node and agent work; see `docs/architecture.md`.
