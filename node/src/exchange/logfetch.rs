//! Fetching the lines of another node's stage log that this node missed, and serving the
//! lines of this node's own stage logs to the nodes that missed them.
//!
//! A copy of a stage's log that jumps (a status event whose lines start past the last
//! line held, or says the runner's next line is further on) holds the arriving lines back
//! and asks the runner for the missing ones over `/otto/handoff/1`: a signed `log_request`,
//! answered by the `log_lines` the runner signs. What to ask, who may ask, what to answer
//! and what to take are [`otto_handoff::logseq`]'s rules; this module sends, reads and
//! writes. The exchange drives it: one fetch at a time per copy, at most
//! [`logseq::FETCH_REQUESTS`] requests per copy, each answered within the mesh's request
//! timeout, all of a fetch within [`FETCH_DEADLINE`]. What is still missing when a fetch
//! fails or runs out stands in one gap line, as when nothing is fetched.

use std::time::Duration;

use otto_handoff::logseq::{self, Ask};
use otto_protocol::{Envelope, LogLines, Reject};
use otto_trust::PublicKey;

use crate::mesh::{self, PeerId};

/// How long one fetch (its requests, one after the other) may take in all before what is
/// still missing is marked as a gap.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(120);

/// The first 8 bytes of a node's key: whose numbering a copy of a log follows.
pub fn runner_tag(key: &PublicKey) -> [u8; 8] {
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&key.as_bytes()[..8]);
    tag
}

/// Sends `request` (a `log_request` for `ask`, signed by this node) to `peer`, whose key
/// is `key`, and judges its answer: the lines [`logseq::accept`] takes, or one line saying
/// why nothing is taken (no answer in time, a reject, a signature that is not `key`'s, an
/// answer outside the gap or the bounds, of another run or stage, or not from the runner
/// the copy follows).
pub async fn request(
    mesh: &mesh::Client,
    peer: PeerId,
    key: &PublicKey,
    request: Envelope,
    ask: &Ask,
    run: &str,
    stage: &str,
) -> Result<(logseq::Taken, Vec<String>), String> {
    let answer = mesh
        .request_log(peer, request)
        .await
        .map_err(|e| format!("asking for the missed lines of stage '{stage}': {e}"))?;
    let answer = answer.verify(key).map_err(|e| {
        format!("the answer for the lines of stage '{stage}' is not signed by the node asked: {e}")
    })?;
    if let Ok(reject) = answer.payload_as::<Reject>() {
        return Err(format!(
            "the node that ran stage '{stage}' refused to send its lines: {}",
            reject.message
        ));
    }
    let lines: LogLines = answer
        .payload_as()
        .map_err(|e| format!("the answer for the lines of stage '{stage}': {e}"))?;
    let taken = logseq::accept(ask, run, stage, runner_tag(key), &lines)
        .map_err(|e| format!("the lines of stage '{stage}' are refused: {e}"))?;
    Ok((taken, lines.lines))
}
