//! Signed envelopes and node certificates as they travel: plain data, no cryptography.
//!
//! An [`Envelope`] is the DSSE form: a payload type, the payload bytes (CBOR of one
//! message), and signatures over the DSSE pre-authentication encoding
//! `"DSSEv1" SP len(type) SP type SP len(payload) SP payload` (see [`pae`]). Signing and
//! verifying live in `otto-trust`, which turns a decoded envelope into a verified one.
//!
//! On the wire an envelope is a CBOR map encoded deterministically (RFC 8949 §4.2.1: keys
//! in bytewise order of their encodings, definite lengths, shortest integers), which is why
//! the fields are declared in the order `payload`, `signatures`, `payloadType`. Its JSON form
//! is the standard DSSE JSON envelope, with base64 payload and signatures.

use serde::{Deserialize, Serialize};

use crate::bytes::{base64_bytes, bounded_vec, hex_bytes};
use crate::codec::{self, DecodeError, Message, Payload};
use crate::limits::{MAX_ENVELOPE_JSON_BYTES, MAX_SCOPE_ENTRIES, MAX_SIGNATURES};

/// A DSSE envelope in Otto's binary (CBOR) wire form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The CBOR encoding of the message, exactly as signed.
    #[serde(with = "base64_bytes")]
    pub payload: Vec<u8>,
    /// One or more signatures over the pre-authentication encoding.
    #[serde(deserialize_with = "bounded_vec::<_, _, MAX_SIGNATURES>")]
    pub signatures: Vec<Signature>,
    /// What the payload is, e.g. `application/vnd.otto.offer+cbor`.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
}

/// One signature in an [`Envelope`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The Ed25519 signature, 64 bytes.
    #[serde(with = "base64_bytes")]
    pub sig: Vec<u8>,
    /// Which key signed (may be empty in DSSE JSON): `"ed25519:"` plus the lowercase hex of the 32-byte public key (see
    /// [`ed25519_keyid`]).
    #[serde(default)]
    pub keyid: String,
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
    #[serde(with = "hex_bytes")]
    pub org_key: Vec<u8>,
    /// The node's Ed25519 public key (32 bytes).
    #[serde(with = "hex_bytes")]
    pub node_key: Vec<u8>,
    /// Roles the org grants the node, e.g. `["deploy"]`.
    #[serde(deserialize_with = "bounded_vec::<_, _, MAX_SCOPE_ENTRIES>")]
    pub roles: Vec<String>,
    /// Valid from, in seconds since the Unix epoch.
    pub not_before: u64,
    /// Valid until (exclusive), in seconds since the Unix epoch.
    pub not_after: u64,
}

/// The DSSE pre-authentication encoding of a payload: the exact bytes a signature covers.
///
/// `"DSSEv1" SP LEN(type) SP type SP LEN(payload) SP payload`, where `SP` is one space and
/// `LEN` is the length in bytes as ASCII decimal without leading zeros.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + payload.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// The key id Otto writes for an Ed25519 public key: `"ed25519:"` plus 64 lowercase hex
/// characters.
pub fn ed25519_keyid(public_key: &[u8; 32]) -> String {
    format!("ed25519:{}", hex::encode(public_key))
}

impl Envelope {
    /// An envelope holding `message` and no signature yet.
    pub fn unsigned(message: &Message) -> Self {
        Self {
            payload: codec::encode(message),
            signatures: Vec::new(),
            payload_type: message.payload_type().to_owned(),
        }
    }

    /// The pre-authentication encoding of this envelope's payload: what its signatures cover.
    pub fn pae(&self) -> Vec<u8> {
        pae(&self.payload_type, &self.payload)
    }

    /// The canonical bytes of this envelope: its deterministic CBOR encoding, the same on
    /// every implementation. A receipt names an upstream receipt by the sha256 of these bytes.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        codec::encode_envelope(self)
    }

    /// Decodes the payload as the message its payload type names, with that kind's limits.
    pub fn message(&self) -> Result<Message, DecodeError> {
        codec::decode(&self.payload_type, &self.payload)
    }

    /// Decodes the payload as a `T`, failing if the payload type is not `T`'s.
    pub fn payload_as<T: Payload>(&self) -> Result<T, DecodeError> {
        let expected = T::KIND.payload_type();
        if self.payload_type != expected {
            return Err(DecodeError::Malformed(format!(
                "expected payload type {expected}, got {}",
                self.payload_type
            )));
        }
        codec::decode_payload(&self.payload)
    }

    /// The standard DSSE JSON form: `{"payload": base64, "payloadType": …, "signatures":
    /// [{"keyid": …, "sig": base64}]}`.
    pub fn to_json(&self) -> String {
        // SAFETY: serializing these plain fields to a String cannot fail.
        #[allow(clippy::expect_used)]
        serde_json::to_string(self).expect("an envelope always serializes to JSON")
    }

    /// Reads the DSSE JSON form (standard or URL-safe base64, padded or not), at most
    /// [`MAX_ENVELOPE_JSON_BYTES`] long.
    pub fn from_json(json: &str) -> Result<Self, DecodeError> {
        if json.len() > MAX_ENVELOPE_JSON_BYTES {
            return Err(DecodeError::TooLarge {
                kind: "envelope",
                len: json.len(),
                max: MAX_ENVELOPE_JSON_BYTES,
            });
        }
        serde_json::from_str(json).map_err(|err| DecodeError::Malformed(format!("envelope: {err}")))
    }
}
