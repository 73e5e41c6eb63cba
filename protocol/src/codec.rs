//! The CBOR codec: message kinds and payload types, encoding, and a decoder that checks
//! size, version and shape before it trusts a byte.
//!
//! A message is a CBOR map whose **first** key is `"v"`, the protocol major version
//! ([`PROTOCOL_VERSION`]), followed by the message's fields. Decoding a message:
//!
//! 1. refuses bytes longer than the kind's limit ([`Kind::max_bytes`]) without reading them;
//! 2. reads the version from the first map entry and refuses a major it does not speak;
//! 3. decodes the fields with nesting limited to [`MAX_DEPTH`] and every collection capped,
//!    ignoring keys it does not know (so a minor version can add fields);
//! 4. refuses trailing bytes after the map.
#![warn(clippy::unwrap_used)]

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::envelope::{Envelope, NodeCertificate};
use crate::handoff::{Accept, Offer, Reject, RejectCode, Retry};
use crate::limits::{
    MAX_ACCEPT_BYTES, MAX_ARTIFACT_CHUNK_BYTES, MAX_ARTIFACT_REQUEST_BYTES, MAX_DEPTH,
    MAX_ENVELOPE_BYTES, MAX_JOIN_REQUEST_BYTES, MAX_JOIN_RESPONSE_BYTES, MAX_LOG_LINES_BYTES,
    MAX_LOG_REQUEST_BYTES, MAX_NODE_CERTIFICATE_BYTES, MAX_OFFER_BYTES, MAX_RECEIPT_BYTES,
    MAX_REJECT_BYTES, MAX_RETRY_BYTES, MAX_REVOCATION_LIST_BYTES, MAX_STATUS_BYTES,
};
use crate::logs::{LogLines, LogRequest};
use crate::membership::{JoinRequest, JoinResponse, RevocationList};
use crate::receipt::{Receipt, Status};
use crate::{ArtifactChunk, ArtifactRequest, PROTOCOL_VERSION};

/// The kinds of message Otto nodes exchange. Each has a name, a payload type for envelopes
/// and a size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// An [`Offer`] of a stage to its owner.
    Offer,
    /// An [`Accept`] of an offer.
    Accept,
    /// A [`Reject`] of an offer.
    Reject,
    /// A [`Receipt`] for a finished stage attempt.
    Receipt,
    /// A [`Status`] event of a running stage attempt.
    Status,
    /// An [`ArtifactRequest`] for part of an artifact.
    ArtifactRequest,
    /// An [`ArtifactChunk`] answering a request.
    ArtifactChunk,
    /// A [`JoinRequest`] presenting an invite.
    JoinRequest,
    /// A [`JoinResponse`] to a join request.
    JoinResponse,
    /// An org's [`RevocationList`].
    RevocationList,
    /// A [`NodeCertificate`] issued by an org.
    NodeCertificate,
    /// A [`Retry`]: the run's origin asks the node that moves a stage on to run it again.
    Retry,
    /// A [`LogRequest`] for lines of a stage's log.
    LogRequest,
    /// The [`LogLines`] answering a log request.
    LogLines,
}

/// Any message, as decoded from a payload whose kind is known.
// An offer is the largest by far (its plan and chain live on the heap; the inline part is
// its fixed fields), and a message is decoded once and moved a few times: boxing it would
// change every match for no measurable gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// An offer of a stage.
    Offer(Offer),
    /// An accept of an offer.
    Accept(Accept),
    /// A reject of an offer.
    Reject(Reject),
    /// A receipt of a stage attempt.
    Receipt(Receipt),
    /// A status event.
    Status(Status),
    /// A request for artifact bytes.
    ArtifactRequest(ArtifactRequest),
    /// A piece of an artifact.
    ArtifactChunk(ArtifactChunk),
    /// A request to join after an invite.
    JoinRequest(JoinRequest),
    /// The answer to a join request.
    JoinResponse(JoinResponse),
    /// An org's revocation list.
    RevocationList(RevocationList),
    /// A node certificate.
    NodeCertificate(NodeCertificate),
    /// A retry request.
    Retry(Retry),
    /// A request for lines of a stage's log.
    LogRequest(LogRequest),
    /// Lines of a stage's log.
    LogLines(LogLines),
}

/// A type that travels as the payload of one message kind.
pub trait Payload: Serialize + DeserializeOwned {
    /// The kind this type is encoded as.
    const KIND: Kind;
}

/// Why bytes did not decode. Every failure on peer input is one of these, never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes are longer than the kind allows; nothing was decoded.
    #[error("{kind} of {len} bytes is over the limit of {max} bytes")]
    TooLarge {
        /// The kind's name (or `envelope`).
        kind: &'static str,
        /// The length of the bytes.
        len: usize,
        /// The kind's limit.
        max: usize,
    },
    /// The kind or payload type is not one this version knows.
    #[error("unknown message kind `{0}`")]
    UnknownKind(String),
    /// The message is of a protocol major version this node does not speak.
    #[error("unsupported protocol version {got} (this node speaks {supported})")]
    UnsupportedVersion {
        /// The version the message carries.
        got: u64,
        /// The version this node speaks.
        supported: u32,
    },
    /// The bytes are not a well-formed message of the kind.
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Encodes a message as CBOR, with its version first.
///
/// Encoding never fails and does not check the size limit: a sender that builds messages
/// near the limit checks the length with [`check_len`].
pub fn encode(message: &Message) -> Vec<u8> {
    match message {
        Message::Offer(m) => encode_payload(m),
        Message::Accept(m) => encode_payload(m),
        Message::Reject(m) => encode_payload(m),
        Message::Receipt(m) => encode_payload(m),
        Message::Status(m) => encode_payload(m),
        Message::ArtifactRequest(m) => encode_payload(m),
        Message::ArtifactChunk(m) => encode_payload(m),
        Message::JoinRequest(m) => encode_payload(m),
        Message::JoinResponse(m) => encode_payload(m),
        Message::RevocationList(m) => encode_payload(m),
        Message::NodeCertificate(m) => encode_payload(m),
        Message::Retry(m) => encode_payload(m),
        Message::LogRequest(m) => encode_payload(m),
        Message::LogLines(m) => encode_payload(m),
    }
}

/// Decodes a message of the kind named by `kind`, which is either a kind name (`offer`) or
/// a payload type (`application/vnd.otto.offer+cbor`).
pub fn decode(kind: &str, bytes: &[u8]) -> Result<Message, DecodeError> {
    let kind: Kind = kind.parse()?;
    Ok(match kind {
        Kind::Offer => Message::Offer(decode_payload(bytes)?),
        Kind::Accept => Message::Accept(decode_payload(bytes)?),
        Kind::Reject => Message::Reject(decode_payload(bytes)?),
        Kind::Receipt => Message::Receipt(decode_payload(bytes)?),
        Kind::Status => Message::Status(decode_payload(bytes)?),
        Kind::ArtifactRequest => Message::ArtifactRequest(decode_payload(bytes)?),
        Kind::ArtifactChunk => Message::ArtifactChunk(decode_payload(bytes)?),
        Kind::JoinRequest => Message::JoinRequest(decode_payload(bytes)?),
        Kind::JoinResponse => Message::JoinResponse(decode_payload(bytes)?),
        Kind::RevocationList => Message::RevocationList(decode_payload(bytes)?),
        Kind::NodeCertificate => Message::NodeCertificate(decode_payload(bytes)?),
        Kind::Retry => Message::Retry(decode_payload(bytes)?),
        Kind::LogRequest => Message::LogRequest(decode_payload(bytes)?),
        Kind::LogLines => Message::LogLines(decode_payload(bytes)?),
    })
}

/// Encodes one payload type as CBOR, with its version first.
pub fn encode_payload<T: Payload>(value: &T) -> Vec<u8> {
    let body = to_cbor(value);
    // SAFETY: every payload type is a struct, which ciborium writes as a map of definite
    // length; the fallback only exists so that a future non-struct payload cannot panic.
    let Some((entries, header_len)) = map_header(&body) else {
        return body;
    };
    let mut out = Vec::with_capacity(body.len() + 12);
    write_header(&mut out, MAJOR_MAP, entries + 1);
    out.extend_from_slice(&VERSION_KEY);
    write_header(&mut out, MAJOR_UINT, u64::from(PROTOCOL_VERSION));
    out.extend_from_slice(body.get(header_len..).unwrap_or_default());
    out
}

/// Decodes one payload type from CBOR, checking its size limit, version and shape.
pub fn decode_payload<T: Payload>(bytes: &[u8]) -> Result<T, DecodeError> {
    check_len(T::KIND, bytes.len())?;
    let got = read_version(bytes)?;
    if got != u64::from(PROTOCOL_VERSION) {
        return Err(DecodeError::UnsupportedVersion {
            got,
            supported: PROTOCOL_VERSION,
        });
    }
    from_cbor(bytes).map_err(|err| DecodeError::Malformed(format!("{}: {err}", T::KIND)))
}

/// Encodes an envelope in its canonical binary form (deterministic CBOR).
pub fn encode_envelope(envelope: &Envelope) -> Vec<u8> {
    to_cbor(envelope)
}

/// Decodes an envelope from its binary form, at most [`MAX_ENVELOPE_BYTES`] long. The
/// payload is not decoded; see [`Envelope::message`].
pub fn decode_envelope(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(DecodeError::TooLarge {
            kind: "envelope",
            len: bytes.len(),
            max: MAX_ENVELOPE_BYTES,
        });
    }
    from_cbor(bytes).map_err(|err| DecodeError::Malformed(format!("envelope: {err}")))
}

/// Checks that `len` bytes are within the limit of `kind`.
pub fn check_len(kind: Kind, len: usize) -> Result<(), DecodeError> {
    let max = kind.max_bytes();
    if len > max {
        return Err(DecodeError::TooLarge {
            kind: kind.as_str(),
            len,
            max,
        });
    }
    Ok(())
}

impl Kind {
    /// Every kind, in the order of the documentation.
    pub const ALL: [Self; 14] = [
        Self::Offer,
        Self::Accept,
        Self::Reject,
        Self::Receipt,
        Self::Status,
        Self::ArtifactRequest,
        Self::ArtifactChunk,
        Self::JoinRequest,
        Self::JoinResponse,
        Self::RevocationList,
        Self::NodeCertificate,
        Self::Retry,
        Self::LogRequest,
        Self::LogLines,
    ];

    /// The kind's name, e.g. `artifact_request`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offer => "offer",
            Self::Accept => "accept",
            Self::Reject => "reject",
            Self::Receipt => "receipt",
            Self::Status => "status",
            Self::ArtifactRequest => "artifact_request",
            Self::ArtifactChunk => "artifact_chunk",
            Self::JoinRequest => "join_request",
            Self::JoinResponse => "join_response",
            Self::RevocationList => "revocation_list",
            Self::NodeCertificate => "node_certificate",
            Self::Retry => "retry",
            Self::LogRequest => "log_request",
            Self::LogLines => "log_lines",
        }
    }

    /// The DSSE payload type of the kind, e.g. `application/vnd.otto.artifact-request+cbor`.
    pub fn payload_type(self) -> &'static str {
        match self {
            Self::Offer => "application/vnd.otto.offer+cbor",
            Self::Accept => "application/vnd.otto.accept+cbor",
            Self::Reject => "application/vnd.otto.reject+cbor",
            Self::Receipt => "application/vnd.otto.receipt+cbor",
            Self::Status => "application/vnd.otto.status+cbor",
            Self::ArtifactRequest => "application/vnd.otto.artifact-request+cbor",
            Self::ArtifactChunk => "application/vnd.otto.artifact-chunk+cbor",
            Self::JoinRequest => "application/vnd.otto.join-request+cbor",
            Self::JoinResponse => "application/vnd.otto.join-response+cbor",
            Self::RevocationList => "application/vnd.otto.revocation-list+cbor",
            Self::NodeCertificate => "application/vnd.otto.node-certificate+cbor",
            Self::Retry => "application/vnd.otto.retry+cbor",
            Self::LogRequest => "application/vnd.otto.log-request+cbor",
            Self::LogLines => "application/vnd.otto.log-lines+cbor",
        }
    }

    /// The largest encoding of the kind, in bytes (see [`crate::limits`]).
    pub fn max_bytes(self) -> usize {
        match self {
            Self::Offer => MAX_OFFER_BYTES,
            Self::Accept => MAX_ACCEPT_BYTES,
            Self::Reject => MAX_REJECT_BYTES,
            Self::Receipt => MAX_RECEIPT_BYTES,
            Self::Status => MAX_STATUS_BYTES,
            Self::ArtifactRequest => MAX_ARTIFACT_REQUEST_BYTES,
            Self::ArtifactChunk => MAX_ARTIFACT_CHUNK_BYTES,
            Self::JoinRequest => MAX_JOIN_REQUEST_BYTES,
            Self::JoinResponse => MAX_JOIN_RESPONSE_BYTES,
            Self::RevocationList => MAX_REVOCATION_LIST_BYTES,
            Self::NodeCertificate => MAX_NODE_CERTIFICATE_BYTES,
            Self::Retry => MAX_RETRY_BYTES,
            Self::LogRequest => MAX_LOG_REQUEST_BYTES,
            Self::LogLines => MAX_LOG_LINES_BYTES,
        }
    }

    /// The kind named by a kind name or a payload type, if this version knows it.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name || kind.payload_type() == name)
    }
}

impl Message {
    /// The message's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Offer(_) => Kind::Offer,
            Self::Accept(_) => Kind::Accept,
            Self::Reject(_) => Kind::Reject,
            Self::Receipt(_) => Kind::Receipt,
            Self::Status(_) => Kind::Status,
            Self::ArtifactRequest(_) => Kind::ArtifactRequest,
            Self::ArtifactChunk(_) => Kind::ArtifactChunk,
            Self::JoinRequest(_) => Kind::JoinRequest,
            Self::JoinResponse(_) => Kind::JoinResponse,
            Self::RevocationList(_) => Kind::RevocationList,
            Self::NodeCertificate(_) => Kind::NodeCertificate,
            Self::Retry(_) => Kind::Retry,
            Self::LogRequest(_) => Kind::LogRequest,
            Self::LogLines(_) => Kind::LogLines,
        }
    }

    /// The payload type of the message's kind.
    pub fn payload_type(&self) -> &'static str {
        self.kind().payload_type()
    }

    /// The message in its JSON form, as in the test vectors and `--json` output: the same
    /// keys as on the wire including `v`, byte strings as lowercase hex, envelopes in DSSE
    /// JSON form (base64).
    pub fn to_json(&self) -> serde_json::Value {
        let value = match self {
            Self::Offer(m) => serde_json::to_value(m),
            Self::Accept(m) => serde_json::to_value(m),
            Self::Reject(m) => serde_json::to_value(m),
            Self::Receipt(m) => serde_json::to_value(m),
            Self::Status(m) => serde_json::to_value(m),
            Self::ArtifactRequest(m) => serde_json::to_value(m),
            Self::ArtifactChunk(m) => serde_json::to_value(m),
            Self::JoinRequest(m) => serde_json::to_value(m),
            Self::JoinResponse(m) => serde_json::to_value(m),
            Self::RevocationList(m) => serde_json::to_value(m),
            Self::NodeCertificate(m) => serde_json::to_value(m),
            Self::Retry(m) => serde_json::to_value(m),
            Self::LogRequest(m) => serde_json::to_value(m),
            Self::LogLines(m) => serde_json::to_value(m),
        };
        // SAFETY: these types serialize to JSON without error: maps have string keys and
        // no Serialize impl of theirs fails.
        #[allow(clippy::expect_used)]
        let mut value = value.expect("otto messages always convert to JSON");
        if let serde_json::Value::Object(map) = &mut value {
            map.insert("v".to_owned(), PROTOCOL_VERSION.into());
        }
        value
    }

    /// The message of kind `kind` from its JSON form (see [`Message::to_json`]). Meant for
    /// tools and tests; peer input arrives as CBOR through [`decode`].
    pub fn from_json(kind: &str, mut value: serde_json::Value) -> Result<Self, DecodeError> {
        let kind: Kind = kind.parse()?;
        let version = value
            .as_object_mut()
            .and_then(|map| map.remove("v"))
            .ok_or_else(|| DecodeError::Malformed("a message must have a `v`".to_owned()))?;
        let got = version.as_u64().ok_or_else(|| {
            DecodeError::Malformed("the version `v` must be an unsigned integer".to_owned())
        })?;
        if got != u64::from(PROTOCOL_VERSION) {
            return Err(DecodeError::UnsupportedVersion {
                got,
                supported: PROTOCOL_VERSION,
            });
        }
        fn parse<T: Payload + Into<Message>>(
            value: serde_json::Value,
        ) -> Result<Message, DecodeError> {
            serde_json::from_value::<T>(value)
                .map(Into::into)
                .map_err(|err| DecodeError::Malformed(format!("{}: {err}", T::KIND)))
        }
        match kind {
            Kind::Offer => parse::<Offer>(value),
            Kind::Accept => parse::<Accept>(value),
            Kind::Reject => parse::<Reject>(value),
            Kind::Receipt => parse::<Receipt>(value),
            Kind::Status => parse::<Status>(value),
            Kind::ArtifactRequest => parse::<ArtifactRequest>(value),
            Kind::ArtifactChunk => parse::<ArtifactChunk>(value),
            Kind::JoinRequest => parse::<JoinRequest>(value),
            Kind::JoinResponse => parse::<JoinResponse>(value),
            Kind::RevocationList => parse::<RevocationList>(value),
            Kind::NodeCertificate => parse::<NodeCertificate>(value),
            Kind::Retry => parse::<Retry>(value),
            Kind::LogRequest => parse::<LogRequest>(value),
            Kind::LogLines => parse::<LogLines>(value),
        }
    }
}

impl DecodeError {
    /// A stable name for the error's variant, as used in the test vectors: `too_large`,
    /// `unknown_kind`, `unsupported_version` or `malformed`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::UnknownKind(_) => "unknown_kind",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::Malformed(_) => "malformed",
        }
    }

    /// The reject code to answer a peer with when its message failed to decode.
    pub fn reject_code(&self) -> RejectCode {
        match self {
            Self::UnsupportedVersion { .. } => RejectCode::UnsupportedVersion,
            _ => RejectCode::Malformed,
        }
    }
}

impl FromStr for Kind {
    type Err = DecodeError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::parse(name).ok_or_else(|| DecodeError::UnknownKind(name.to_owned()))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! payloads {
    ($($ty:ident),* $(,)?) => {
        $(
            impl Payload for $ty {
                const KIND: Kind = Kind::$ty;
            }

            impl From<$ty> for Message {
                fn from(message: $ty) -> Self {
                    Self::$ty(message)
                }
            }
        )*
    };
}

payloads!(
    Offer,
    Accept,
    Reject,
    Receipt,
    Status,
    ArtifactRequest,
    ArtifactChunk,
    JoinRequest,
    JoinResponse,
    RevocationList,
    NodeCertificate,
    Retry,
    LogRequest,
    LogLines,
);

/// CBOR major type of unsigned integers.
const MAJOR_UINT: u8 = 0;
/// CBOR major type of maps.
const MAJOR_MAP: u8 = 5;
/// The CBOR encoding of the text string `"v"`.
const VERSION_KEY: [u8; 2] = [0x61, b'v'];

fn to_cbor<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // SAFETY: writing to a Vec cannot fail, and no payload type has a Serialize impl that
    // returns an error, so ciborium has nothing to report.
    #[allow(clippy::expect_used)]
    ciborium::into_writer(value, &mut out).expect("otto messages always encode");
    out
}

fn from_cbor<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut reader = bytes;
    let value = ciborium::de::from_reader_with_recursion_limit(&mut reader, MAX_DEPTH)
        .map_err(|err| describe(&err))?;
    if !reader.is_empty() {
        return Err(format!("{} trailing bytes", reader.len()));
    }
    Ok(value)
}

fn describe<E: fmt::Debug>(err: &ciborium::de::Error<E>) -> String {
    match err {
        ciborium::de::Error::Io(_) => "unexpected end of input".to_owned(),
        ciborium::de::Error::Syntax(offset) => format!("invalid cbor at byte {offset}"),
        ciborium::de::Error::Semantic(Some(offset), msg) => format!("{msg} (at byte {offset})"),
        ciborium::de::Error::Semantic(None, msg) => msg.clone(),
        ciborium::de::Error::RecursionLimitExceeded => {
            format!("nested deeper than {MAX_DEPTH} levels")
        }
    }
}

/// Reads the protocol version from the first entry of the message map.
fn read_version(bytes: &[u8]) -> Result<u64, DecodeError> {
    let missing =
        || DecodeError::Malformed("a message must be a map whose first key is `v`".to_owned());
    let first = *bytes.first().ok_or_else(missing)?;
    let rest = match (first >> 5, first & 0x1f) {
        // A map of indefinite length.
        (MAJOR_MAP, 31) => bytes.get(1..).ok_or_else(missing)?,
        (MAJOR_MAP, _) => {
            let (entries, len) = read_header(bytes).ok_or_else(missing)?;
            if entries == 0 {
                return Err(missing());
            }
            bytes.get(len..).ok_or_else(missing)?
        }
        _ => return Err(missing()),
    };
    if rest.get(..2) != Some(&VERSION_KEY[..]) {
        return Err(missing());
    }
    let value = rest.get(2..).ok_or_else(missing)?;
    match value.first() {
        Some(byte) if byte >> 5 == MAJOR_UINT => {}
        _ => {
            return Err(DecodeError::Malformed(
                "the version `v` must be an unsigned integer".to_owned(),
            ));
        }
    }
    read_header(value).map(|(v, _)| v).ok_or_else(missing)
}

/// The entry count and header length of a definite-length map header.
fn map_header(bytes: &[u8]) -> Option<(u64, usize)> {
    match bytes.first() {
        Some(byte) if byte >> 5 == MAJOR_MAP => read_header(bytes),
        _ => None,
    }
}

/// Reads the argument of a CBOR header (the length or the integer value) and the header's
/// length in bytes. `None` for indefinite lengths, reserved values and truncated input.
fn read_header(bytes: &[u8]) -> Option<(u64, usize)> {
    let info = bytes.first()? & 0x1f;
    let width = match info {
        0..=23 => return Some((u64::from(info), 1)),
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return None,
    };
    let arg = bytes.get(1..1 + width)?;
    let value = arg
        .iter()
        .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
    Some((value, 1 + width))
}

/// Writes a CBOR header of `major` type with argument `value`, in its shortest form.
fn write_header(out: &mut Vec<u8>, major: u8, value: u64) {
    let major = major << 5;
    match value {
        0..=23 => out.push(major | value as u8),
        24..=0xff => out.extend_from_slice(&[major | 24, value as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend_from_slice(&(value as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend_from_slice(&(value as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend_from_slice(&value.to_be_bytes());
        }
    }
}
