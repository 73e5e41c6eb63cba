//! Signed envelopes and node certificates as they travel: plain data, no cryptography.
//!
//! An [`Envelope`] is the DSSE form: a payload type, the payload bytes (CBOR of one
//! message), and signatures over the DSSE pre-authentication encoding
//! `"DSSEv1" SP len(type) SP type SP len(payload) SP payload`. Signing and verifying live
//! in `otto-trust`, which turns a decoded envelope into a verified one.

use serde::{Deserialize, Serialize};

/// A DSSE envelope in Otto's binary (CBOR) wire form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// What the payload is, e.g. `application/vnd.otto.offer+cbor`.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The CBOR encoding of the message, exactly as signed.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// One or more signatures over the pre-authentication encoding.
    pub signatures: Vec<Signature>,
}

/// One signature in an [`Envelope`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Which key signed (see `docs/protocol.md` for the keyid convention).
    pub keyid: String,
    /// The Ed25519 signature, 64 bytes.
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}

/// A node certificate: an org's statement that a node key belongs to it. Travels as the
/// payload of an [`Envelope`] signed by the org key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCertificate {
    /// The node's name within its org, e.g. `ops-1`.
    pub node: String,
    /// The org's name, e.g. `acme-ops`.
    pub org: String,
    /// The org's Ed25519 public key (32 bytes).
    #[serde(with = "serde_bytes")]
    pub org_key: Vec<u8>,
    /// The node's Ed25519 public key (32 bytes).
    #[serde(with = "serde_bytes")]
    pub node_key: Vec<u8>,
    /// Roles the org grants the node, e.g. `["deploy"]`.
    pub roles: Vec<String>,
    /// Valid from, in seconds since the Unix epoch.
    pub not_before: u64,
    /// Valid until (exclusive), in seconds since the Unix epoch.
    pub not_after: u64,
}
