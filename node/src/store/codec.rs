//! The redb tables, their key layouts and the record encoding.
//!
//! Every table maps bytes to bytes. Keys are built so that redb's byte order is the order
//! the store reads them in: run ids first (16 bytes, time-ordered), then a stage id with a
//! 4-byte length in front (so no stage id is a prefix problem for another), then
//! big-endian numbers. Values are a format version byte followed by CBOR, except log lines
//! (a compact fixed layout, see [`encode_line`]) and index tables (empty values).
#![warn(clippy::unwrap_used)]

use redb::{ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::records::{GatePhase, GateRef, LogLine, NewLine, Stream};
use super::{Error, RunId};

/// A table of byte keys and byte values.
pub(crate) type Bytes = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// `"format"` → the store's format number (u32 big-endian).
pub(crate) const META: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("meta");
/// run id → [`Run`](super::Run).
pub(crate) const RUNS: Bytes = TableDefinition::new("runs");
/// run id → nothing: the runs not in a final state.
pub(crate) const ACTIVE_RUNS: Bytes = TableDefinition::new("active_runs");
/// plan digest (32 bytes) → canonical plan bytes.
pub(crate) const PLANS: Bytes = TableDefinition::new("plans");
/// run id, stage → [`Stage`](super::Stage).
pub(crate) const STAGES: Bytes = TableDefinition::new("stages");
/// run id, stage, phase, index → [`Gate`](super::Gate).
pub(crate) const GATES: Bytes = TableDefinition::new("gates");
/// gate key → nothing: the gates still waiting.
pub(crate) const OPEN_GATES: Bytes = TableDefinition::new("open_gates");
/// webhook token digest (32 bytes) → gate key.
pub(crate) const GATE_TOKENS: Bytes = TableDefinition::new("gate_tokens");
/// run id, stage, seq → log line.
pub(crate) const LOGS: Bytes = TableDefinition::new("logs");
/// run id, stage, attempt → receipt bytes (no version byte: stored as given).
pub(crate) const RECEIPTS: Bytes = TableDefinition::new("receipts");
/// handoff id → [`OutboxEntry`](super::OutboxEntry).
pub(crate) const OUTBOX: Bytes = TableDefinition::new("outbox");
/// next attempt time, handoff id → nothing: the outbox in sending order.
pub(crate) const OUTBOX_DUE: Bytes = TableDefinition::new("outbox_due");
/// handoff id → [`InboxEntry`](super::InboxEntry).
pub(crate) const INBOX: Bytes = TableDefinition::new("inbox");
/// handoff id → nothing: received offers not finished.
pub(crate) const INBOX_OPEN: Bytes = TableDefinition::new("inbox_open");
/// run id, stage → [`HandoffIntent`](super::HandoffIntent): stages handed off here whose
/// offer is not in the outbox yet.
pub(crate) const HANDOFF_INTENTS: Bytes = TableDefinition::new("handoff_intents");
/// run id, stage → [`OutboxEntry`](super::OutboxEntry): offers accepted by their owner
/// whose receipt has not come.
pub(crate) const GIVEN: Bytes = TableDefinition::new("given");
/// cache name, key digest → [`CacheEntry`](super::CacheEntry).
pub(crate) const CACHES: Bytes = TableDefinition::new("caches");
/// Known nodes of other orgs (and of this one): node keyid → [`KnownNode`](super::KnownNode).
pub(crate) const NODES: Bytes = TableDefinition::new("nodes");
/// secret name → sealed value (the vault's own format).
pub(crate) const SECRETS: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("secrets");

/// group kind, name, arrival seq → [`GroupMember`](super::GroupMember): the concurrency
/// groups' queues.
pub(crate) const GROUPS: Bytes = TableDefinition::new("groups");
/// run id, stage (empty for a run's own membership) → its key in [`GROUPS`].
pub(crate) const GROUP_MEMBERS: Bytes = TableDefinition::new("group_members");

/// Every byte table, created when the store is opened.
pub(crate) const BYTE_TABLES: [Bytes; 19] = [
    RUNS,
    ACTIVE_RUNS,
    PLANS,
    STAGES,
    GATES,
    OPEN_GATES,
    GATE_TOKENS,
    LOGS,
    RECEIPTS,
    OUTBOX,
    OUTBOX_DUE,
    INBOX,
    INBOX_OPEN,
    HANDOFF_INTENTS,
    GIVEN,
    CACHES,
    NODES,
    GROUPS,
    GROUP_MEMBERS,
];

/// The version byte in front of every CBOR record.
const RECORD_VERSION: u8 = 1;

/// The first byte of a log line value holding the line itself. (Other values are kept
/// free for lines moved to a blob.)
const LINE_INLINE: u8 = 0;

/// The longest log line text kept, in bytes; longer lines are cut at a character boundary.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// Encodes a record: the version byte, then CBOR.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    let mut out = vec![RECORD_VERSION];
    ciborium::into_writer(value, &mut out).map_err(|err| Error::Encode(err.to_string()))?;
    Ok(out)
}

/// Decodes a record written by [`encode`].
pub(crate) fn decode<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T, Error> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, body)) => {
            ciborium::from_reader(body).map_err(|err| Error::Corrupt {
                table,
                reason: err.to_string(),
            })
        }
        Some((&version, _)) => Err(Error::Version { table, version }),
        None => Err(Error::Corrupt {
            table,
            reason: "empty record".into(),
        }),
    }
}

/// Reads and decodes one record.
pub(crate) fn get<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    name: &'static str,
    key: &[u8],
) -> Result<Option<T>, Error> {
    match table.get(key)? {
        Some(value) => decode(name, value.value()).map(Some),
        None => Ok(None),
    }
}

/// The stage key: run id, then the stage id with its length in front.
pub(crate) fn stage_key(run: &RunId, stage: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(16 + 4 + stage.len() + 8);
    key.extend_from_slice(run.as_bytes());
    key.extend_from_slice(&(stage.len() as u32).to_be_bytes());
    key.extend_from_slice(stage.as_bytes());
    key
}

/// The gate key: the stage key, then the phase and the index.
pub(crate) fn gate_key(gate: &GateRef) -> Vec<u8> {
    let mut key = stage_key(&gate.run, &gate.stage);
    key.push(match gate.phase {
        GatePhase::Enter => 0,
        GatePhase::Exit => 1,
    });
    key.extend_from_slice(&gate.index.to_be_bytes());
    key
}

/// The log key: the stage key, then the line's sequence number.
pub(crate) fn log_key(run: &RunId, stage: &str, seq: u64) -> Vec<u8> {
    let mut key = stage_key(run, stage);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The receipt key: the stage key, then the attempt.
pub(crate) fn receipt_key(run: &RunId, stage: &str, attempt: u32) -> Vec<u8> {
    let mut key = stage_key(run, stage);
    key.extend_from_slice(&attempt.to_be_bytes());
    key
}

/// The outbox order key: the next attempt time, then the handoff id.
pub(crate) fn due_key(next_at: u64, id: &[u8; 16]) -> [u8; 24] {
    let mut key = [0; 24];
    key[..8].copy_from_slice(&next_at.to_be_bytes());
    key[8..].copy_from_slice(id);
    key
}

/// The cache key: the name with its length in front, then the key digest or nothing.
pub(crate) fn cache_key(name: &str, digest: Option<&crate::blobs::Digest>) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + name.len() + 32);
    key.extend_from_slice(&(name.len() as u32).to_be_bytes());
    key.extend_from_slice(name.as_bytes());
    if let Some(digest) = digest {
        key.extend_from_slice(digest.as_bytes());
    }
    key
}

/// Splits a stage key back into the stage id, if the key is one of `run`'s.
pub(crate) fn stage_of_key<'k>(run: &RunId, key: &'k [u8]) -> Option<(&'k str, &'k [u8])> {
    let rest = key.strip_prefix(run.as_bytes().as_slice())?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return None;
    }
    let (stage, rest) = rest.split_at(len);
    Some((std::str::from_utf8(stage).ok()?, rest))
}

/// The run id at the front of a key.
pub(crate) fn run_of_key(key: &[u8]) -> Option<RunId> {
    let bytes = key.first_chunk::<16>()?;
    Some(RunId::from_bytes(*bytes))
}

/// Encodes a log line compactly: kind byte, stream byte, attempt (u32), time (u64), step
/// (u32, `u32::MAX` for none), then the UTF-8 text. All numbers big-endian.
pub(crate) fn encode_line(attempt: u32, line: &NewLine) -> Vec<u8> {
    let text = truncate(&line.text, MAX_LINE);
    let mut out = Vec::with_capacity(18 + text.len());
    out.push(LINE_INLINE);
    out.push(match line.stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
        Stream::System => 2,
    });
    out.extend_from_slice(&attempt.to_be_bytes());
    out.extend_from_slice(&line.time.to_be_bytes());
    out.extend_from_slice(&line.step.unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

/// Decodes a line written by [`encode_line`].
pub(crate) fn decode_line(seq: u64, bytes: &[u8]) -> Result<LogLine, Error> {
    let corrupt = |reason: &str| Error::Corrupt {
        table: "logs",
        reason: reason.into(),
    };
    let (&[kind, stream], rest) = bytes
        .split_first_chunk::<2>()
        .ok_or_else(|| corrupt("short line"))?;
    if kind != LINE_INLINE {
        return Err(Error::Version {
            table: "logs",
            version: kind,
        });
    }
    let stream = match stream {
        0 => Stream::Stdout,
        1 => Stream::Stderr,
        2 => Stream::System,
        _ => return Err(corrupt("unknown stream")),
    };
    let (attempt, rest) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("short line"))?;
    let (time, rest) = rest
        .split_first_chunk::<8>()
        .ok_or_else(|| corrupt("short line"))?;
    let (step, text) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("short line"))?;
    let step = u32::from_be_bytes(*step);
    Ok(LogLine {
        seq,
        attempt: u32::from_be_bytes(*attempt),
        time: u64::from_be_bytes(*time),
        stream,
        step: (step != u32::MAX).then_some(step),
        text: String::from_utf8(text.to_vec()).map_err(|_| corrupt("text is not utf-8"))?,
    })
}

/// The longest prefix of `text` of at most `max` bytes that ends at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_round_trips() {
        let line = NewLine {
            time: 42,
            stream: Stream::Stderr,
            step: Some(3),
            text: "héllo".into(),
        };
        let decoded = decode_line(7, &encode_line(2, &line)).ok();
        assert_eq!(
            decoded,
            Some(LogLine {
                seq: 7,
                attempt: 2,
                time: 42,
                stream: Stream::Stderr,
                step: Some(3),
                text: "héllo".into(),
            })
        );
    }

    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        let text = "é".repeat(MAX_LINE);
        let cut = truncate(&text, MAX_LINE);
        assert_eq!(cut.len(), MAX_LINE);
        assert!(truncate("ab", 10) == "ab");
        assert_eq!(truncate("aé", 2), "a");
    }
}
