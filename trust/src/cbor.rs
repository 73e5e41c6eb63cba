//! The CBOR encoding of the payloads this crate signs (certificates, invites, revocation
//! lists) and of envelopes inside invite tokens.
//!
//! This is the one place that calls `ciborium`; when `otto-protocol` offers its codec,
//! these two functions switch over to it.

#![warn(clippy::unwrap_used)]

use serde::Serialize;
use serde::de::DeserializeOwned;

/// How deep hostile CBOR may nest before decoding stops.
const RECURSION_LIMIT: usize = 32;

/// The CBOR bytes could not be decoded into the expected type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// The input is larger than the limit for its kind.
    #[error("{len} bytes exceed the limit of {max}")]
    TooLarge { len: usize, max: usize },
    /// The bytes are not CBOR of the expected shape.
    #[error("{0}")]
    Invalid(String),
}

/// Encodes `value` as CBOR.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // SAFETY: writing into a `Vec` cannot fail, and the types this crate encodes contain
    // only strings, bytes, integers, sequences and maps, which ciborium always encodes.
    #[allow(clippy::expect_used)]
    ciborium::into_writer(value, &mut out).expect("cbor encoding into a vec cannot fail");
    out
}

/// Decodes CBOR bytes of at most `max` bytes into `T`; never panics on hostile input.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let mut reader = bytes;
    let value = ciborium::de::from_reader_with_recursion_limit(&mut reader, RECURSION_LIMIT)
        .map_err(|e| DecodeError::Invalid(e.to_string()))?;
    if !reader.is_empty() {
        return Err(DecodeError::Invalid(format!(
            "{} trailing bytes after the value",
            reader.len()
        )));
    }
    Ok(value)
}
