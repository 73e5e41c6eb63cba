//! The handoff between Otto nodes as a sans-IO state machine: events in, actions out.
//!
//! Filled by the protocol, trust and mesh work; see `docs/architecture.md`.
