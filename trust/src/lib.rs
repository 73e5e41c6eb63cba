//! Otto's trust: node and org keys, org-signed node certificates, signed envelopes,
//! the trust store and its policies, invites and revocation.
//!
//! Filled by the protocol and trust work; see `docs/architecture.md`.
