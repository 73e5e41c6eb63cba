//! Fetching the lines of a stage's log that a node missed from the node that ran the
//! stage: a [`LogRequest`] for the lines after the last one held, answered by the
//! [`LogLines`] the runner wrote, signed by it.

use serde::{Deserialize, Serialize};

use crate::bytes::bounded_vec;
use crate::limits::MAX_LOG_FETCH_LINES;

/// A request, to the node that ran a stage, for lines of its log of the stage: those
/// numbered `after + 1` to `upto` (the runner's numbers, as in a status event's
/// `log_seq`), at most `max_lines` of them and `max_bytes` bytes of text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRequest {
    /// `run`: the run id.
    pub run: String,
    /// `stage`: the stage id.
    pub stage: String,
    /// `after`: the number of the last line the requester holds (0 for none).
    pub after: u64,
    /// `upto`: the number of the last line wanted.
    pub upto: u64,
    /// `max_lines`: the most lines wanted in the answer.
    pub max_lines: u32,
    /// `max_bytes`: the most bytes of text (the lines' UTF-8, together) wanted.
    pub max_bytes: u32,
}

/// Lines of a stage's log, answering a [`LogRequest`]: consecutive lines of the stage's
/// log as the node that ran it wrote them, from `first` on. Travels as the payload of an
/// envelope signed by that node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLines {
    /// `run`: the run id.
    pub run: String,
    /// `stage`: the stage id.
    pub stage: String,
    /// `first`: the number of the first line in `lines` (with none, of the line after the
    /// request's `after`).
    pub first: u64,
    /// `lines`: the lines, without line ends, at most
    /// [`MAX_LOG_FETCH_LINES`]; empty when the node holds no line after `after`.
    #[serde(deserialize_with = "bounded_vec::<_, _, MAX_LOG_FETCH_LINES>")]
    pub lines: Vec<String>,
    /// `last`: the number of the last line of the stage's log the node holds now.
    pub last: u64,
}
