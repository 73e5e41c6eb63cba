//! The records the store keeps, as the callers see them.
//!
//! Every record is plain data with serde derives: the store writes it as CBOR behind a
//! format version byte, and the API may return it as JSON (ids and digests are then text).
//! Fields added later are `#[serde(default)]`, so records written by an older node still
//! read. Times are milliseconds since the Unix epoch, always given by the caller.

use otto_pipeline::plan::Facts;
use otto_protocol::StageState as WireState;
use serde::{Deserialize, Serialize};

use super::RunId;
use crate::blobs::Digest;

/// A handoff id: the 16 random bytes the sender of an offer chose.
pub type HandoffId = [u8; 16];

/// What [`Store::create_run`](super::Store::create_run) needs to record a new run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    /// The run's id, made by the caller from the clock and randomness.
    pub id: RunId,
    /// The pipeline's name.
    pub pipeline: String,
    /// The canonical plan bytes (`Plan::canonical_bytes`); the store records their digest.
    pub plan: Vec<u8>,
    /// Where the run's code came from.
    pub source: Source,
    /// The facts the plan was made with.
    pub facts: Facts,
    /// When the run was created.
    pub created_at: u64,
    /// Who started it: a user name, or `node:<name>` for a run handed over by a peer.
    pub started_by: String,
    /// The stages, in plan order, with their first state (pending or skipped).
    pub stages: Vec<NewStage>,
}

/// A stage of a new run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStage {
    /// The stage id in the plan.
    pub id: String,
    /// Its first state.
    pub state: StageState,
}

/// A run as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// The run's id.
    pub id: RunId,
    /// The pipeline's name.
    pub pipeline: String,
    /// The digest of the canonical plan bytes; [`Store::plan`](super::Store::plan) gives
    /// the bytes.
    pub plan_digest: Digest,
    /// Where the run's code came from.
    pub source: Source,
    /// The facts the plan was made with.
    pub facts: Facts,
    /// When the run was created.
    pub created_at: u64,
    /// When the run's state last changed.
    pub updated_at: u64,
    /// When the run reached a final state.
    #[serde(default)]
    pub finished_at: Option<u64>,
    /// Where the run is.
    pub state: RunState,
    /// Who started it.
    pub started_by: String,
    /// Why it is where it is, for people, e.g. `waiting for run 01J… in group deploy`
    /// while it waits for its concurrency group; left out when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Where a run's code came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Source {
    /// A snapshot of a directory, stored as a blob.
    Snapshot {
        /// The snapshot's blob digest.
        digest: Digest,
    },
    /// A commit of a git repository: a run a trigger started (webhook, poll, schedule,
    /// `otto hook`), or a foreign stage offered from such a run.
    Git {
        /// The repository URL.
        url: String,
        /// The full commit id.
        commit: String,
    },
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Recorded, no stage started yet.
    Queued,
    /// A stage is running.
    Running,
    /// Every stage that could go on waits for a gate or another node.
    Waiting,
    /// Every stage succeeded or was skipped. Final.
    Succeeded,
    /// A stage failed. Final.
    Failed,
    /// Someone cancelled it. Final.
    Cancelled,
}

/// Which runs [`Store::list_runs`](super::Store::list_runs) returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFilter {
    /// Only runs in this state.
    pub state: Option<RunState>,
    /// Only runs of this pipeline.
    pub pipeline: Option<String>,
    /// Only runs older than this one (for paging: pass the last id of the previous page).
    pub before: Option<RunId>,
    /// At most this many runs.
    pub limit: usize,
}

/// A stage of a run as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// The run.
    pub run: RunId,
    /// The stage id in the plan.
    pub id: String,
    /// Its position in the plan.
    pub index: u32,
    /// Where it is.
    pub state: StageState,
    /// Why it is there, for people: a failure or a peer's reject reason. Never a secret.
    #[serde(default)]
    pub note: Option<String>,
    /// Its attempts, first to last, numbered upwards (an offered stage's first attempt
    /// here may be above 1: the offer's attempt).
    pub attempts: Vec<Attempt>,
    /// When it last changed.
    pub updated_at: u64,
    /// The retries of the stage (`otto retry`, or a retry offered by the run's origin),
    /// oldest first: each reopened it after its attempts up to then.
    #[serde(default)]
    pub retries: Vec<Retry>,
}

/// A retry of a stage that failed or was refused: it went back to pending, to run as a
/// new attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    /// The last attempt before the retry (0 when it had none, e.g. refused before a
    /// receipt); the retry's attempt is above it.
    pub after: u32,
    /// Who retried it: a person, or `node:<name>@<org>` for a retry offered by a peer.
    pub by: String,
    /// When.
    pub at: u64,
}

/// Where a stage is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageState {
    /// Not started: its dependencies have not finished, or it is ready to start.
    Pending,
    /// It waits for one of its gates.
    WaitingGate,
    /// An attempt runs (here or, for a handed-off stage, on its owner).
    Running,
    /// It succeeded. Final.
    Succeeded,
    /// It failed. Final.
    Failed,
    /// Its condition did not hold; nothing ran. Final.
    Skipped,
    /// It was cancelled. Final.
    Cancelled,
    /// It was offered to the node that owns it, which has not started it yet.
    HandedOff,
}

/// One attempt at running a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Its number: 1 for the first.
    pub n: u32,
    /// How it went.
    pub state: AttemptState,
    /// When it started.
    pub started_at: u64,
    /// When it ended.
    #[serde(default)]
    pub finished_at: Option<u64>,
    /// The failing step's exit code, when a step's process exited non-zero.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// The index of the step that failed.
    #[serde(default)]
    pub failed_step: Option<u32>,
    /// Why it failed or was interrupted, for people.
    #[serde(default)]
    pub error: Option<String>,
    /// Names of the caches restored for it.
    #[serde(default)]
    pub cache_hits: Vec<String>,
    /// Names of the caches it had to build.
    #[serde(default)]
    pub cache_misses: Vec<String>,
    /// The blob holding its complete log, once archived.
    #[serde(default)]
    pub log: Option<Digest>,
    /// The process id of the agent running it.
    #[serde(default)]
    pub agent_pid: Option<u32>,
    /// The node it ran on, or that refused to run it; `None` in records from before nodes
    /// were recorded, and on a node without an identity.
    #[serde(default)]
    pub node: Option<AttemptNode>,
}

/// The node an attempt ran on, or that refused to run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptNode {
    /// The node's name in its org, e.g. `ops-1`.
    pub name: String,
    /// Its org's name, e.g. `acme-ops`.
    pub org: String,
    /// Whether the node refused the stage: the attempt never ran there.
    #[serde(default)]
    pub refused: bool,
}

impl AttemptNode {
    /// The node `name` of `org`, on which the attempt ran.
    pub fn ran(name: impl Into<String>, org: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            org: org.into(),
            refused: false,
        }
    }
}

impl std::fmt::Display for AttemptNode {
    /// `ops-1 (acme-ops)`, with `, refused` after a refusal.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.org)?;
        if self.refused {
            f.write_str(", refused")?;
        }
        Ok(())
    }
}

/// How an attempt went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    /// It is running.
    Running,
    /// Every step succeeded.
    Succeeded,
    /// A step failed, or the agent died.
    Failed,
    /// The node stopped while it ran; the stage is retried as the next attempt.
    Interrupted,
    /// It was cancelled.
    Cancelled,
}

/// How an attempt ended, for [`Store::finish_attempt`](super::Store::finish_attempt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptEnd {
    /// The final state; not [`AttemptState::Running`].
    pub state: AttemptState,
    /// When it ended.
    pub finished_at: u64,
    /// The failing step's exit code.
    pub exit_code: Option<i32>,
    /// The index of the step that failed.
    pub failed_step: Option<u32>,
    /// Why it failed, for people.
    pub error: Option<String>,
    /// The blob holding its complete log.
    pub log: Option<Digest>,
}

/// Facts learnt while an attempt runs, for
/// [`Store::update_attempt`](super::Store::update_attempt).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttemptUpdate {
    /// The agent's process id, once spawned.
    pub agent_pid: Option<u32>,
    /// Caches restored (added to the attempt's list).
    pub cache_hits: Vec<String>,
    /// Caches missed (added to the attempt's list).
    pub cache_misses: Vec<String>,
}

/// Which gate of a stage: enter gates are checked before its steps, exit gates after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatePhase {
    /// Before the steps.
    Enter,
    /// After the steps succeeded.
    Exit,
}

/// Names one gate of one stage of one run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GateRef {
    /// The run.
    pub run: RunId,
    /// The stage id.
    pub stage: String,
    /// Enter or exit.
    pub phase: GatePhase,
    /// Its position among the stage's gates of that phase.
    pub index: u32,
}

/// A gate that waits: for a person, a callback or a poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gate {
    /// Which gate.
    #[serde(flatten)]
    pub at: GateRef,
    /// What it waits for.
    pub kind: GateKind,
    /// Where it is.
    pub state: GateState,
    /// For a webhook gate, the digest of its callback token (the token itself is never
    /// stored).
    #[serde(default)]
    pub token_hash: Option<Digest>,
    /// Who approved an input gate.
    #[serde(default)]
    pub approved_by: Option<String>,
    /// When it started waiting.
    pub opened_at: u64,
    /// When it times out.
    #[serde(default)]
    pub deadline: Option<u64>,
    /// When a poll gate last polled.
    #[serde(default)]
    pub last_poll: Option<u64>,
    /// How many times a poll gate polled.
    #[serde(default)]
    pub polls: u32,
    /// When it stopped waiting.
    #[serde(default)]
    pub closed_at: Option<u64>,
    /// Why it closed as it did, for people.
    #[serde(default)]
    pub note: Option<String>,
}

/// What a gate waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateKind {
    /// A person's approval.
    Input,
    /// A callback to the node's webhook endpoint.
    Webhook,
    /// A command or URL that must succeed.
    Poll,
}

/// Where a gate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateState {
    /// It waits.
    Waiting,
    /// It passed. Final.
    Passed,
    /// It failed (rejected, or the poll reported failure). Final.
    Failed,
    /// Its deadline passed. Final.
    TimedOut,
}

/// How a gate closed, for [`Store::resolve_gate`](super::Store::resolve_gate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateResolution {
    /// The final state; not [`GateState::Waiting`].
    pub state: GateState,
    /// Who approved it, for an input gate.
    pub approved_by: Option<String>,
    /// Why, for people.
    pub note: Option<String>,
    /// When.
    pub at: u64,
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// A step's standard output.
    Stdout,
    /// A step's standard error.
    Stderr,
    /// The node itself (e.g. "attempt 1 interrupted").
    System,
}

/// A log line to append. Its text is already masked: secret values never reach the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLine {
    /// When it was printed.
    pub time: u64,
    /// Where it came from.
    pub stream: Stream,
    /// The index of the step that printed it.
    pub step: Option<u32>,
    /// The masked text, without the line ending.
    pub text: String,
}

/// A stored log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Its place in the stage's log: 1, 2, 3… across all attempts.
    pub seq: u64,
    /// The attempt that printed it.
    pub attempt: u32,
    /// When it was printed.
    pub time: u64,
    /// Where it came from.
    pub stream: Stream,
    /// The index of the step that printed it.
    pub step: Option<u32>,
    /// The masked text.
    pub text: String,
}

/// A stored receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptEntry {
    /// The stage id.
    pub stage: String,
    /// The attempt it is about.
    pub attempt: u32,
    /// The signed receipt envelope as received or made, opaque to the store.
    pub bytes: Vec<u8>,
}

/// An offer waiting to be delivered to another node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The handoff id.
    pub id: HandoffId,
    /// The run it belongs to.
    pub run: RunId,
    /// The offered stage.
    pub stage: String,
    /// The peer (owner name or peer id) it goes to.
    pub peer: String,
    /// The signed message, opaque to the store.
    #[serde(with = "serde_bytes")]
    pub message: Vec<u8>,
    /// When it was put in the outbox.
    pub created_at: u64,
    /// When to try sending it next.
    pub next_attempt_at: u64,
    /// How many sends failed so far.
    pub tries: u32,
    /// Why the last send failed.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// An offer received from another node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxEntry {
    /// The handoff id.
    pub id: HandoffId,
    /// The signed offer as received, opaque to the store.
    #[serde(with = "serde_bytes")]
    pub offer: Vec<u8>,
    /// When it was first received.
    pub received_at: u64,
    /// Where it is.
    pub state: InboxState,
    /// The signed answer sent for it: every later copy of the offer gets these bytes.
    #[serde(default, with = "serde_bytes")]
    pub answer: Option<Vec<u8>>,
    /// When it was answered.
    #[serde(default)]
    pub answered_at: Option<u64>,
}

/// Where a received offer is: the handoff state machine's type, stored as it names it
/// (`received`, `accepted`, `rejected`, `done`).
pub use otto_handoff::machine::InboxState;

/// A node this node knows: its certificate, checked when it was recorded, and how to
/// reach it. Nodes become known by joining (either side of an invite) and by presenting
/// their certificate in a verified offer, receipt or revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownNode {
    /// The node key's keyid (the key id convention of `docs/protocol.md`).
    pub keyid: String,
    /// The node's libp2p peer id, base58.
    pub peer_id: String,
    /// The node's name within its org, from its certificate.
    pub name: String,
    /// The org name its certificate claims.
    pub org: String,
    /// The node certificate envelope (CBOR), opaque to the store.
    #[serde(with = "serde_bytes")]
    pub cert: Vec<u8>,
    /// Multiaddrs where the node said it can be reached, newest first.
    #[serde(default)]
    pub addrs: Vec<String>,
    /// Whether the node joined through an invite (either way), rather than being seen in
    /// a certificate chain.
    #[serde(default)]
    pub joined: bool,
    /// When it was first recorded.
    pub added_at: u64,
    /// When this node last had a connection with it.
    #[serde(default)]
    pub last_seen: Option<u64>,
}

/// A saved cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The cache's name.
    pub name: String,
    /// The digest of its key files, if it has any.
    pub key: Option<Digest>,
    /// The blob holding its archive.
    pub blob: Digest,
    /// The archive's size in bytes.
    pub size: u64,
    /// When it was saved.
    pub saved_at: u64,
}

/// What [`Store::recover`](super::Store::recover) found after a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Runs not finished, oldest first.
    pub runs: Vec<Run>,
    /// Attempts that were still running and that this call marked interrupted. Empty when
    /// called again.
    pub interrupted: Vec<AttemptRef>,
    /// Stages that were running and have no running attempt: each is to start again as
    /// attempt `last + 1`. The same on a second call until the caller begins the attempt.
    pub retry: Vec<AttemptRef>,
    /// Gates still waiting, to resume (webhook tokens stay valid; polls restart).
    pub gates: Vec<Gate>,
}

/// Names one attempt of one stage.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AttemptRef {
    /// The run.
    pub run: RunId,
    /// The stage id.
    pub stage: String,
    /// The attempt number (0 when a stage was marked running before any attempt).
    pub attempt: u32,
    /// The agent process that ran it, if one was recorded (it may still be alive).
    pub agent_pid: Option<u32>,
}

impl RunState {
    /// Whether the run is over.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

impl StageState {
    /// Whether the stage is over.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Skipped | Self::Cancelled
        )
    }

    /// The state as the protocol names it (status events; a receipt's outcome through
    /// [`otto_handoff::rules::outcome_of`]); `None` for `handed_off`, which only this node
    /// sees.
    pub fn to_wire(self) -> Option<WireState> {
        Some(match self {
            Self::Pending => WireState::Queued,
            Self::Running => WireState::Running,
            Self::WaitingGate => WireState::WaitingGate,
            Self::Succeeded => WireState::Succeeded,
            Self::Failed => WireState::Failed,
            Self::Skipped => WireState::Skipped,
            Self::Cancelled => WireState::Cancelled,
            Self::HandedOff => return None,
        })
    }

    /// The state a protocol state stands for here (a receipt's outcome through
    /// [`otto_handoff::rules::state_of`]).
    pub fn from_wire(state: WireState) -> Self {
        match state {
            WireState::Queued => Self::Pending,
            WireState::Running => Self::Running,
            WireState::WaitingGate => Self::WaitingGate,
            WireState::Succeeded => Self::Succeeded,
            WireState::Failed => Self::Failed,
            WireState::Skipped => Self::Skipped,
            WireState::Cancelled => Self::Cancelled,
        }
    }
}

impl GateRef {
    /// Names a gate.
    pub fn new(run: RunId, stage: impl Into<String>, phase: GatePhase, index: u32) -> Self {
        Self {
            run,
            stage: stage.into(),
            phase,
            index,
        }
    }
}

impl Gate {
    /// A new waiting gate opened at `now`, with no token, deadline or poll yet.
    pub fn waiting(at: GateRef, kind: GateKind, now: u64) -> Self {
        Self {
            at,
            kind,
            state: GateState::Waiting,
            token_hash: None,
            approved_by: None,
            opened_at: now,
            deadline: None,
            last_poll: None,
            polls: 0,
            closed_at: None,
            note: None,
        }
    }
}

impl Stage {
    /// The last attempt, if any.
    pub fn last_attempt(&self) -> Option<&Attempt> {
        self.attempts.last()
    }

    /// Whether the last attempt is one from before the stage's last retry (so the stage
    /// has not begun its retried attempt yet).
    pub fn retry_pending(&self) -> bool {
        self.retries
            .last()
            .is_some_and(|r| self.last_attempt().is_none_or(|a| a.n <= r.after))
    }
}

impl Default for RunFilter {
    /// All runs, at most 50.
    fn default() -> Self {
        Self {
            state: None,
            pipeline: None,
            before: None,
            limit: 50,
        }
    }
}
