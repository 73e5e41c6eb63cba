//! The handoff between Otto nodes, without I/O: the checks an owner makes before it accepts
//! an offered stage, the verification of a run's receipt chain, and the export of receipts
//! as in-toto attestations.
//!
//! # Contract
//!
//! This crate is pure. It reads no clock, opens no file or socket and draws no randomness:
//! the caller passes the time as `now`, the trust store, and what it remembers (which
//! handoff ids it has seen, which blueprints it publishes). The functions keep no state
//! between calls and give the same answer for the same inputs; the state machine keeps
//! only what its commands gave it and is seeded for its retry jitter. Tests move time by
//! passing another `now` and never sleep.
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
//! - [`owners`]: [`bind_owners`] binds a plan's owner names to orgs when a run starts;
//!   [`Owners`] says which org must have signed each stage's receipt. Both checks above
//!   use it.
//! - [`attest`]: [`attest::export`] writes a receipt as an in-toto Statement v1 in a DSSE
//!   envelope signed by the node key; [`attest::verify`] reads one back.
//! - [`bundle`]: a run's plan, receipts, certificates and attestations as one JSON
//!   document, and [`bundle::verify_bundle`], which checks it offline against the
//!   caller's trust (what `otto verify --bundle` shows).
//! - [`machine`]: the handoff state machine of one node, [`machine::Machine`]. The node
//!   feeds it commands (an offer to send, an answer, an offer received, a stage finished,
//!   `Tick { now }`) and carries out the actions it queues (persist to the outbox or
//!   inbox, send, reply, fetch, start the stage, wake up), in order: that order is the
//!   durability contract. It calls [`verify_offer`] when an offer arrives, retries with
//!   seeded, capped exponential backoff until an offer expires, answers a duplicate with
//!   the first answer, and resumes from the durable records after a crash
//!   (`docs/handoff.md`). Unlike the functions above it keeps state between calls, but
//!   only what commands gave it: still no clock, no I/O, no ambient randomness.
//! - [`rules`]: the rules of a run every node applies, written once for the node and the
//!   simulator: which stages may start, the upstream chain, ownership, who moves a stage
//!   on and what a node does with it, what an offer carries, whether a peer org may have a
//!   stage run here, and how outcomes read as stage states.
//! - [`retry`]: retries across handoffs: the run's origin signs a [`Retry`](otto_protocol::Retry),
//!   the node that moves the stage on checks it ([`retry::check_request`]) and offers the
//!   stage again carrying it, the owner checks it ([`retry::check_offered`], check 12b).
//! - [`relay`]: the stage-end relay, what a node tells the run's other nodes when it
//!   learns that a stage it does not run ended, and how it reads such a word back.
//! - `sim` (with the `sim` feature, and in this crate's tests): a deterministic
//!   simulator of many nodes of several orgs passing real signed offers and receipts
//!   through their machines over a faulty in-memory network, with a virtual clock.
//!
//! # Trust that the caller sets up
//!
//! Receipt signers are checked like offer senders: through a node certificate that chains
//! to an org pinned in the trust store. A node's own receipts come back to it in later
//! offers, so a node pins its own org in its trust store.

pub mod attest;
pub mod bundle;
pub mod chain;
pub mod logseq;
pub mod machine;
pub mod outputs;
pub mod owners;
pub mod relay;
pub mod retry;
pub mod rules;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod source;
pub mod verify;
pub mod vsa;

mod dag;

pub use chain::{ChainReport, ReceiptSummary, StageReport, StageStatus, verify_chain};
pub use owners::{Binding, OwnerPolicy, Owners, bind_owners};
pub use verify::{
    AcceptedOffer, Definition, Rejection, VerifyContext, definition_digest, verify_offer,
};
