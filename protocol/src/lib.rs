//! Otto's wire messages: the types that cross between nodes, their CBOR codec with
//! per-kind size limits, and the protocol version rules.
//!
//! This crate is pure data and encoding: no cryptography (that is `otto-trust`), no I/O.
//! `docs/protocol.md` is the specification; `protocol/vectors/` holds test vectors for
//! other implementations.
//!
//! # Versions
//!
//! Every message is a CBOR map whose first key is `v`, the protocol major version
//! [`PROTOCOL_VERSION`]. A receiver refuses a major it does not speak
//! ([`DecodeError::UnsupportedVersion`]). Within a major, changes are additive: a newer
//! minor may add fields, and a receiver ignores keys it does not know. A payload type this
//! version does not know is refused with [`DecodeError::UnknownKind`]. Reject codes are
//! open: an unknown code decodes as [`RejectCode::Unknown`].
//!
//! # Using it
//!
//! Build a message, wrap it with [`Envelope::unsigned`], let `otto-trust` sign it, send
//! [`encode_envelope`]'s bytes. On receipt: [`decode_envelope`], verify with `otto-trust`,
//! then [`Envelope::message`] (or [`Envelope::payload_as`]) decodes the payload within the
//! limits of its kind.

pub mod limits;

mod artifact;
mod bytes;
mod codec;
pub mod envelope;
mod handoff;
mod logs;
mod membership;
mod receipt;
pub mod time;

pub use artifact::{ArtifactChunk, ArtifactRequest};
pub use bytes::{Digest, HandoffId, KeyBytes, ParseBytesError};
pub use codec::{
    DecodeError, Kind, Message, Payload, check_len, decode, decode_envelope, decode_payload,
    encode, encode_envelope, encode_payload,
};
pub use envelope::{Envelope, NodeCertificate, Signature, ed25519_keyid, pae};
pub use handoff::{
    Accept, Facts, GitBundle, InputArtifact, Offer, Reject, RejectCode, Retry, RunSource,
};
pub use logs::{LogLines, LogRequest};
pub use membership::{JoinRequest, JoinResponse, Revocation, RevocationList, Scope};
pub use receipt::{Artifact, NodeIdentity, Outcome, Receipt, StageState, Status};

/// The protocol major version this crate speaks, carried as `v` in every message.
///
/// Incompatible changes raise it; the libp2p protocol ids that carry the messages
/// (`/otto/handoff/1`, `/otto/artifact/1`) end with the same number.
pub const PROTOCOL_VERSION: u32 = 1;
