//! What a node says about a stage it ran: the final [`Receipt`] and the [`Status`] events
//! it streams while the stage runs.

use serde::{Deserialize, Serialize};

use crate::bytes::{Digest, KeyBytes, bounded_vec};
use crate::limits::{MAX_ARTIFACTS, MAX_LOG_LINES, MAX_UPSTREAM};

/// A node's signed statement of how one attempt of a stage ended.
///
/// Travels as the payload of an [`Envelope`](crate::Envelope) signed by the node key named
/// in `node`. Receipts link into a chain: each names the digests of the receipts of the
/// stages before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// `run`: the run id.
    pub run: String,
    /// `plan_digest`: the digest of the plan the stage ran under (`"sha256:<hex>"`).
    pub plan_digest: String,
    /// `stage`: the stage id in the plan.
    pub stage: String,
    /// `attempt`: the attempt number, 1 for the first.
    pub attempt: u32,
    /// `outcome`: how the attempt ended.
    pub outcome: Outcome,
    /// `outputs`: the artifacts the stage produced.
    #[serde(deserialize_with = "bounded_vec::<_, _, MAX_ARTIFACTS>")]
    pub outputs: Vec<Artifact>,
    /// `log_digest`: sha256 of the stage's complete log as stored by the node.
    pub log_digest: Digest,
    /// `started_at`: when the attempt started, in seconds since the Unix epoch.
    pub started_at: u64,
    /// `finished_at`: when the attempt ended, in seconds since the Unix epoch.
    pub finished_at: u64,
    /// `started_at_ms`: when the attempt started, in milliseconds since the Unix epoch;
    /// counts only inside the second `started_at` signs ([`Receipt::started_ms`]).
    /// Omitted by older nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    /// `finished_at_ms`: when the attempt ended, in milliseconds since the Unix epoch;
    /// counts only inside the second `finished_at` signs ([`Receipt::finished_ms`]).
    /// Omitted by older nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<u64>,
    /// `upstream`: sha256 of the canonical bytes (see
    /// [`Envelope::canonical_bytes`](crate::Envelope::canonical_bytes)) of each receipt
    /// envelope the stage ran on, in the order of the offer's receipt chain; empty for a
    /// stage that ran first.
    #[serde(deserialize_with = "bounded_vec::<_, _, MAX_UPSTREAM>")]
    pub upstream: Vec<Digest>,
    /// `node`: the node that ran the stage and signs this receipt.
    pub node: NodeIdentity,
}

impl Receipt {
    /// When the attempt started, in milliseconds since the Unix epoch: `started_at_ms`
    /// when it lies inside the second `started_at` says, else the start of that second
    /// ([`crate::time::millis`]).
    pub fn started_ms(&self) -> u64 {
        crate::time::millis(self.started_at, self.started_at_ms)
    }

    /// When the attempt ended, in milliseconds since the Unix epoch: `finished_at_ms`
    /// when it lies inside the second `finished_at` says, else the start of that second.
    pub fn finished_ms(&self) -> u64 {
        crate::time::millis(self.finished_at, self.finished_at_ms)
    }

    /// Whether the receipt's times are to the millisecond: both `*_ms` fields are there
    /// and lie inside their seconds (a receipt of an older node gives whole seconds).
    pub fn has_millis(&self) -> bool {
        crate::time::within(self.started_at, self.started_at_ms)
            && crate::time::within(self.finished_at, self.finished_at_ms)
    }
}

/// How an attempt of a stage ended. On the wire a snake_case string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// `success`: every step succeeded.
    Success,
    /// `failure`: a step or gate failed.
    Failure,
    /// `skipped`: the stage's condition did not hold; nothing ran.
    Skipped,
    /// `cancelled`: the attempt was stopped before it ended.
    Cancelled,
}

/// An artifact a stage produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// `name`: the artifact's name in the plan.
    pub name: String,
    /// `sha256`: digest of the artifact's bytes.
    pub sha256: Digest,
    /// `size`: length of the artifact in bytes.
    pub size: u64,
}

/// Who a node is, as named in a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// `name`: the node's name within its org, e.g. `ops-1`.
    pub name: String,
    /// `org`: the org's name, e.g. `acme-ops`.
    pub org: String,
    /// `key`: the node's Ed25519 public key.
    pub key: KeyBytes,
}

/// A signed progress event of one attempt of a stage, streamed while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// `run`: the run id.
    pub run: String,
    /// `stage`: the stage id.
    pub stage: String,
    /// `attempt`: the attempt number.
    pub attempt: u32,
    /// `seq`: the event's number within the attempt, from 0, without gaps; receivers order
    /// by it and spot losses with it.
    pub seq: u64,
    /// `state`: the stage's state as of this event.
    pub state: StageState,
    /// `at`: when the event happened, in seconds since the Unix epoch.
    pub at: u64,
    /// `at_ms`: when the event happened, in milliseconds since the Unix epoch; counts only
    /// inside the second `at` signs ([`Status::at_millis`]). Omitted by older nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
    /// `detail`: a short human note, e.g. which gate is waited on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// `log`: new log lines since the previous event, without line ends (omitted when none,
    /// and when the owner's policy withholds logs).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "bounded_vec::<_, _, MAX_LOG_LINES>"
    )]
    pub log: Vec<String>,
    /// `log_seq`: the number, in the runner's log of the stage, of the first line in `log`
    /// (the lines are numbered 1, 2, 3… across the stage's attempts on the runner, and those
    /// in `log` are consecutive); with no `log`, the number the runner's next line will have.
    /// A receiver drops lines it holds already and shows a jump as a gap. Omitted by older
    /// nodes (their lines are taken as they come, unnumbered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_seq: Option<u64>,
}

impl Status {
    /// When the event happened, in milliseconds since the Unix epoch: `at_ms` when it lies
    /// inside the second `at` says, else the start of that second
    /// ([`crate::time::millis`]).
    pub fn at_millis(&self) -> u64 {
        crate::time::millis(self.at, self.at_ms)
    }
}

/// The state of a stage attempt in a [`Status`] event. On the wire a snake_case string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageState {
    /// `queued`: accepted, waiting for an agent.
    Queued,
    /// `waiting_gate`: waiting for a gate (an approval, a webhook, a poll).
    WaitingGate,
    /// `running`: steps are running.
    Running,
    /// `succeeded`: ended with success.
    Succeeded,
    /// `failed`: ended with failure.
    Failed,
    /// `skipped`: its condition did not hold.
    Skipped,
    /// `cancelled`: stopped before it ended.
    Cancelled,
}
