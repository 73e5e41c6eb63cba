//! Run ids: 16 bytes that sort by creation time, written as 26 Crockford base32 characters.
#![warn(clippy::unwrap_used)]

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// The Crockford base32 alphabet: digits and capital letters without I, L, O and U.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The length of a run id's text.
const TEXT_LEN: usize = 26;

/// A run's id: a 48-bit creation time in milliseconds since the Unix epoch followed by 80
/// random bits, so that ids sort by creation time (the ULID layout).
///
/// Its text is 26 Crockford base32 characters, e.g. `01J9ZQ3M5V8R2K4T6W8Y0A2C4E`.
/// Parsing accepts upper or lower case and nothing else; a run id from an API request or a
/// peer is checked before it reaches the store. The clock and the randomness come from
/// the caller.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId([u8; 16]);

/// Why a text is not a [`RunId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RunIdError {
    /// The text is not 26 characters long.
    #[error("a run id has 26 characters, got {0}")]
    Length(usize),
    /// The text has a character outside the Crockford base32 alphabet.
    #[error("a run id has only the characters 0-9 and A-Z without I, L, O, U")]
    Character,
    /// The first character is above 7, so the value does not fit 128 bits.
    #[error("a run id starts with a character from 0 to 7")]
    Overflow,
}

impl RunId {
    /// The id for a run created at `time_ms` (milliseconds since the Unix epoch; only the
    /// low 48 bits are kept) with 10 random bytes.
    pub fn new(time_ms: u64, random: [u8; 10]) -> Self {
        let mut bytes = [0; 16];
        bytes[..6].copy_from_slice(&time_ms.to_be_bytes()[2..]);
        bytes[6..].copy_from_slice(&random);
        Self(bytes)
    }

    /// The id with these 16 bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The id's 16 bytes; their order is the ids' order.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The creation time in the id, in milliseconds since the Unix epoch.
    pub fn time_ms(&self) -> u64 {
        let mut time = [0; 8];
        time[2..].copy_from_slice(&self.0[..6]);
        u64::from_be_bytes(time)
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = u128::from_be_bytes(self.0);
        let mut text = [0u8; TEXT_LEN];
        for (i, c) in text.iter_mut().enumerate() {
            let shift = 5 * (TEXT_LEN - 1 - i);
            *c = ALPHABET[((value >> shift) & 31) as usize];
        }
        // The alphabet is ASCII, so every byte is a whole character.
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RunId({self})")
    }
}

impl FromStr for RunId {
    type Err = RunIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != TEXT_LEN {
            return Err(RunIdError::Length(text.chars().count()));
        }
        let mut value: u128 = 0;
        for (i, b) in text.bytes().enumerate() {
            let digit = ALPHABET
                .iter()
                .position(|&a| a == b.to_ascii_uppercase())
                .ok_or(RunIdError::Character)?;
            if i == 0 && digit > 7 {
                return Err(RunIdError::Overflow);
            }
            value = (value << 5) | digit as u128;
        }
        Ok(Self(value.to_be_bytes()))
    }
}

/// In text formats (JSON) a run id is its 26-character text; in binary formats (the
/// store's CBOR records) it is its 16 bytes.
impl Serialize for RunId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for RunId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(RunIdVisitor)
        } else {
            deserializer.deserialize_bytes(RunIdVisitor)
        }
    }
}

/// Accepts both forms, whatever the format claims.
struct RunIdVisitor;

impl Visitor<'_> for RunIdVisitor {
    type Value = RunId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a run id")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<RunId, E> {
        text.parse().map_err(E::custom)
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<RunId, E> {
        <[u8; 16]>::try_from(bytes)
            .map(RunId)
            .map_err(|_| E::invalid_length(bytes.len(), &self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_sorts_by_time() {
        let a = RunId::new(1_700_000_000_000, [0xff; 10]);
        let b = RunId::new(1_700_000_000_001, [0; 10]);
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
        assert_eq!(a.to_string().len(), 26);
        assert_eq!(a.to_string().parse::<RunId>(), Ok(a));
        assert_eq!(a.to_string().to_lowercase().parse::<RunId>(), Ok(a));
        assert_eq!(a.time_ms(), 1_700_000_000_000);
    }

    #[test]
    fn known_value() {
        let id = RunId::from_bytes([0; 16]);
        assert_eq!(id.to_string(), "00000000000000000000000000");
        let max = RunId::from_bytes([0xff; 16]);
        assert_eq!(max.to_string(), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
    }

    #[test]
    fn rejects_bad_text() {
        assert_eq!("".parse::<RunId>(), Err(RunIdError::Length(0)));
        assert_eq!(
            "8ZZZZZZZZZZZZZZZZZZZZZZZZZ".parse::<RunId>(),
            Err(RunIdError::Overflow)
        );
        assert_eq!(
            "0000000000000000000000000U".parse::<RunId>(),
            Err(RunIdError::Character)
        );
        assert_eq!(
            "000000000000000000000000/0".parse::<RunId>(),
            Err(RunIdError::Character)
        );
        // 26 bytes but fewer characters: multi-byte UTF-8 is refused, never sliced.
        assert!("ééééééééééééé".parse::<RunId>().is_err());
    }
}
