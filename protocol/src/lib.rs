//! Otto's wire messages: the types that cross between nodes, their CBOR codec with
//! per-kind size limits, and the protocol version rules.
//!
//! This crate is pure data and encoding: no cryptography (that is `otto-trust`), no I/O.

pub mod envelope;

pub use envelope::{Envelope, NodeCertificate, Signature};
