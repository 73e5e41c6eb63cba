//! The handoff between Otto nodes, without I/O: the checks an owner makes before it accepts
//! an offered stage, the verification of a run's receipt chain, and the export of receipts
//! as in-toto attestations.
//!
//! # Contract
//!
//! This crate is pure. It reads no clock, opens no file or socket, draws no randomness and
//! keeps no state between calls: the caller passes the time as `now` (seconds since the
//! Unix epoch), the trust store, and what it remembers (which handoff ids it has seen,
//! which blueprints it publishes). Every function gives the same answer for the same
//! inputs, so tests move time by passing another `now` and never sleep.
//!
//! Bytes from peers enter as [`Unverified`](otto_trust::Unverified) envelopes. Nothing in
//! them is acted on until a signature has been checked against a key the caller trusts;
//! hostile input is answered with a [`Rejection`] (or a report entry), never a panic.
//!
//! # Map
//!
//! - [`verify`]: [`verify_offer`] turns an unverified offer into an [`AcceptedOffer`] or a
//!   [`Rejection`] carrying the reject code, message and hint the sender will see. The
//!   checks and their order are listed there.
//! - [`chain`]: [`verify_chain`] checks every receipt of a run against its plan and reports
//!   each stage as verified, skipped, failed, missing or invalid (what `otto verify` shows).
//! - [`attest`]: [`attest::export`] writes a receipt as an in-toto Statement v1 in a DSSE
//!   envelope signed by the node key; [`attest::verify`] reads one back.
//!
//! The handoff state machine (offers waiting in the outbox, retries, accept and reject
//! bookkeeping) will live here too, as a `handle(input) -> outputs` core the node drives;
//! it calls [`verify_offer`] when an offer arrives.
//!
//! # Trust that the caller sets up
//!
//! Receipt signers are checked like offer senders: through a node certificate that chains
//! to an org pinned in the trust store. A node's own receipts come back to it in later
//! offers, so a node pins its own org in its trust store.

pub mod attest;
pub mod chain;
pub mod verify;

mod dag;

pub use chain::{ChainReport, ReceiptSummary, StageReport, StageStatus, verify_chain};
pub use verify::{
    AcceptedOffer, Definition, Rejection, VerifyContext, definition_digest, verify_offer,
};
