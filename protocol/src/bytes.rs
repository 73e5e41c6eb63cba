//! Byte values on the wire: fixed-size identifiers and digests, and the serde helpers that
//! give every byte field one form per format.
//!
//! In CBOR a byte field is a byte string. In JSON (the test vectors, `--json` output) it is
//! lowercase hex, except the payload and signature of an [`Envelope`](crate::Envelope),
//! which are base64 as the DSSE JSON form prescribes.
#![warn(clippy::unwrap_used)]

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A SHA-256 digest: 32 bytes on the wire, 64 lowercase hex characters in JSON and text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

/// A handoff id: 16 random bytes chosen by the sender of an offer, unique per handoff.
/// 32 lowercase hex characters in JSON and text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandoffId(pub [u8; 16]);

/// A raw Ed25519 public key, 32 bytes, as it appears in messages. This crate does not check
/// that it is a valid curve point; `otto-trust` does when it uses the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyBytes(pub [u8; 32]);

/// The error of parsing a [`Digest`], [`HandoffId`] or [`KeyBytes`] from hex text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseBytesError {
    /// The text is not lowercase or uppercase hex.
    #[error("not hex: {0}")]
    NotHex(String),
    /// The text decodes to the wrong number of bytes.
    #[error("expected {expected} bytes, got {got}")]
    WrongLength {
        /// How many bytes the value has.
        expected: usize,
        /// How many bytes the text held.
        got: usize,
    },
}

macro_rules! fixed_bytes {
    ($ty:ident, $len:expr, $what:expr) => {
        impl $ty {
            /// The number of bytes in this value.
            pub const LEN: usize = $len;

            /// The bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// The value as lowercase hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The value from a byte slice of exactly the right length.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, ParseBytesError> {
                <[u8; $len]>::try_from(bytes)
                    .map(Self)
                    .map_err(|_| ParseBytesError::WrongLength {
                        expected: $len,
                        got: bytes.len(),
                    })
            }
        }

        impl From<[u8; $len]> for $ty {
            fn from(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }
        }

        impl FromStr for $ty {
            type Err = ParseBytesError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                let bytes =
                    hex::decode(text).map_err(|err| ParseBytesError::NotHex(err.to_string()))?;
                Self::from_slice(&bytes)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($ty), self.to_hex())
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    serializer.serialize_str(&self.to_hex())
                } else {
                    serializer.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let visitor = FixedVisitor::<$len>($what);
                let bytes = if deserializer.is_human_readable() {
                    deserializer.deserialize_str(visitor)?
                } else {
                    deserializer.deserialize_bytes(visitor)?
                };
                Ok(Self(bytes))
            }
        }
    };
}

fixed_bytes!(Digest, 32, "a 32-byte sha256 digest");
fixed_bytes!(HandoffId, 16, "a 16-byte handoff id");
fixed_bytes!(KeyBytes, 32, "a 32-byte ed25519 public key");

/// Reads a fixed number of bytes from a CBOR byte string or a hex string.
struct FixedVisitor<const N: usize>(&'static str);

impl<const N: usize> Visitor<'_> for FixedVisitor<N> {
    type Value = [u8; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
        <[u8; N]>::try_from(bytes).map_err(|_| E::invalid_length(bytes.len(), &self))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        let mut out = [0u8; N];
        hex::decode_to_slice(text, &mut out)
            .map_err(|_| E::invalid_value(de::Unexpected::Str(text), &self))?;
        Ok(out)
    }
}

/// Serde helpers for a `Vec<u8>` field: a byte string in CBOR, lowercase hex in JSON.
pub(crate) mod hex_bytes {
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex::encode(bytes))
        } else {
            serializer.serialize_bytes(bytes)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        super::deserialize_bytes(deserializer, super::TextForm::Hex)
    }
}

/// Serde helpers for a `Vec<u8>` field: a byte string in CBOR, standard base64 in JSON
/// (URL-safe and unpadded base64 are accepted on input, as DSSE allows).
pub(crate) mod base64_bytes {
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&super::base64_encode(bytes))
        } else {
            serializer.serialize_bytes(bytes)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        super::deserialize_bytes(deserializer, super::TextForm::Base64)
    }
}

/// Standard base64 with padding, the form Otto writes.
pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Standard or URL-safe base64, padded or not.
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = text.trim_end_matches('=');
    if text.contains(['-', '_']) {
        URL_SAFE_NO_PAD.decode(text).ok()
    } else {
        STANDARD_NO_PAD
            .decode(text)
            .ok()
            .or_else(|| STANDARD.decode(text).ok())
            .or_else(|| URL_SAFE.decode(text).ok())
    }
}

/// How a byte field is written in a human-readable format.
#[derive(Clone, Copy)]
pub(crate) enum TextForm {
    Hex,
    Base64,
}

fn deserialize_bytes<'de, D: Deserializer<'de>>(
    deserializer: D,
    form: TextForm,
) -> Result<Vec<u8>, D::Error> {
    if deserializer.is_human_readable() {
        deserializer.deserialize_str(ByteBufVisitor(form))
    } else {
        deserializer.deserialize_byte_buf(ByteBufVisitor(form))
    }
}

struct ByteBufVisitor(TextForm);

impl Visitor<'_> for ByteBufVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            TextForm::Hex => f.write_str("a byte string or hex text"),
            TextForm::Base64 => f.write_str("a byte string or base64 text"),
        }
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
        Ok(bytes.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Self::Value, E> {
        Ok(bytes)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        let decoded = match self.0 {
            TextForm::Hex => hex::decode(text).ok(),
            TextForm::Base64 => base64_decode(text),
        };
        decoded.ok_or_else(|| E::invalid_value(de::Unexpected::Str(text), &self))
    }
}

/// Deserializes a sequence of at most `MAX` elements, failing as soon as it holds more, so a
/// hostile length prefix or a long run of tiny elements cannot make the decoder allocate
/// without bound.
pub(crate) fn bounded_vec<'de, D, T, const MAX: usize>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_seq(BoundedVec::<T, MAX>(PhantomData))
}

/// Deserializes a string-keyed map of at most `MAX` entries into a sorted map.
pub(crate) fn bounded_map<'de, D, V, const MAX: usize>(
    deserializer: D,
) -> Result<std::collections::BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    deserializer.deserialize_map(BoundedMap::<V, MAX>(PhantomData))
}

struct BoundedVec<T, const MAX: usize>(PhantomData<T>);

impl<'de, T: Deserialize<'de>, const MAX: usize> Visitor<'de> for BoundedVec<T, MAX> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a sequence of at most {MAX} elements")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if let Some(hint) = seq.size_hint()
            && hint > MAX
        {
            return Err(de::Error::invalid_length(hint, &self));
        }
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX).min(64));
        while let Some(item) = seq.next_element()? {
            if out.len() == MAX {
                return Err(de::Error::invalid_length(MAX + 1, &self));
            }
            out.push(item);
        }
        Ok(out)
    }
}

struct BoundedMap<V, const MAX: usize>(PhantomData<V>);

impl<'de, V: Deserialize<'de>, const MAX: usize> Visitor<'de> for BoundedMap<V, MAX> {
    type Value = std::collections::BTreeMap<String, V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a map of at most {MAX} entries")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if let Some(hint) = map.size_hint()
            && hint > MAX
        {
            return Err(de::Error::invalid_length(hint, &self));
        }
        let mut out = std::collections::BTreeMap::new();
        while let Some((key, value)) = map.next_entry::<String, V>()? {
            if out.len() == MAX {
                return Err(de::Error::invalid_length(MAX + 1, &self));
            }
            if out.insert(key, value).is_some() {
                return Err(de::Error::custom("duplicate map key"));
            }
        }
        Ok(out)
    }
}
