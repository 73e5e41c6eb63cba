//! The handoff state machine of one node: offers it sends and offers it receives, without
//! I/O.
//!
//! A [`Machine`] holds what one node knows about handoffs in flight. The node feeds it
//! [`Command`]s (an offer to send, an answer that arrived, an offer that arrived, a stage
//! that finished, the time passing) through [`Machine::handle`], which returns one
//! [`Event`] saying what the command did, and queues [`Action`]s (persist, send, reply,
//! fetch, start, wake up) that the node then drains with [`Machine::poll_action`] and
//! carries out **in order**. The machine never touches a disk, a socket or a clock:
//! durability and transport are what the node does with the actions, and time comes in as
//! `now` with every command. `docs/handoff.md` draws the states and explains how the node
//! drives the machine.
//!
//! # Method kinds and call order
//!
//! - **Construction**: [`Machine::new`] with a [`Config`] and a seed for the retry jitter.
//!   After a restart, feed [`Command::Restore`] first, with what the node's durable outbox
//!   and inbox hold.
//! - **Input**: [`Machine::handle`] takes one [`Command`] and returns its [`Event`]. Every
//!   command carries `now`; commands must come with a `now` that does not go backwards.
//! - **Output**: [`Machine::poll_action`] (or [`Machine::drain_actions`]) hands out the
//!   actions queued by `handle`, oldest first. Drain them after every `handle` call: the
//!   queue grows by a few actions per command and is not bounded by itself.
//! - **Timers**: [`Action::Wakeup`] says when the machine next wants a
//!   [`Command::Tick`]; [`Machine::next_wakeup`] gives the same time on demand. Ticking
//!   early is harmless, ticking late only delays retries.
//! - **Getters**: [`Machine::config`], [`Machine::outgoing`], [`Machine::incoming`],
//!   [`Machine::given_to`],
//!   [`Machine::pending_offers`], [`Machine::held_offers`], [`Machine::open_offers`] read
//!   the state without
//!   changing it.
//!
//! # The durability contract
//!
//! The order of the actions is the durability contract: an action that tells a peer
//! something ([`Action::Send`], [`Action::Reply`], [`Action::SendReceipt`],
//! [`Action::AckReceipt`]) may be carried out only once every `Persist*`, `RetryOutbox`,
//! `AckOutbox` and `InboxDone` action queued before it is durable. The node may batch the
//! durable writes of many actions (of many commands) into one transaction, as long as no
//! message that follows them in the queue leaves before that transaction commits. A node
//! that commits each write on its own may crash between any two: every prefix of one
//! command's writes must be a state the node can restart from without losing a stage (a
//! receipt is stored before the outbox entry that says whom its stage was given to goes).
//!
//! # Time
//!
//! Times in this module are **milliseconds** since the Unix epoch, as in the node's store.
//! Times inside signed messages (an offer's `expires_at`, a receipt's `started_at`) are
//! seconds, as on the wire; the machine converts where it compares them.
#![warn(clippy::unwrap_used)]

pub mod action;
pub mod command;
pub mod event;

mod receiver;
mod sender;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use otto_protocol::{
    Accept, DecodeError, Digest, Envelope, HandoffId, Kind, Offer, Payload as _, Reject,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use action::Action;
pub use command::Command;
pub use event::Event;

/// Default for [`Config::max_pending`].
pub const MAX_PENDING: usize = 1024;
/// Default for [`Config::max_inbox`].
pub const MAX_INBOX: usize = 1024;
/// Default for [`Config::max_finished`].
pub const MAX_FINISHED: usize = 4096;

/// Limits and timings of a [`Machine`]. Durations are in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Most offers this node has sent and not had answered yet. A
    /// [`HandOff`](command::HandOff) beyond it is refused with
    /// [`event::HandOff::Full`], and the node tries again later.
    pub max_pending: usize,
    /// Most accepted offers whose receipt this node still waits for, remembered to match
    /// receipts to handoffs, and after their receipt came, to refuse copies from other
    /// peers. Beyond it the oldest is forgotten (its receipt is still taken, without a
    /// handoff id).
    pub max_awaiting: usize,
    /// Most received offers open at once (accepted and not yet done, or persisted without
    /// an answer). Beyond it a new offer is answered with an `internal` reject saying the
    /// node is busy, which the sender retries later: this is the receiver's back-pressure.
    pub max_inbox: usize,
    /// Most finished received offers (rejected, or done) whose answer is kept in memory for
    /// duplicates; beyond it the oldest is forgotten, and a later copy of it is answered from
    /// the node's durable inbox record passed with
    /// [`OfferReceived`](command::OfferReceived).
    pub max_finished: usize,
    /// How long a sender waits for an answer after sending an offer before it counts the
    /// send as failed and backs off.
    pub answer_timeout: u64,
    /// The first retry delay; each failure doubles it.
    pub backoff_initial: u64,
    /// The longest retry delay.
    pub backoff_max: u64,
    /// How long a receiver waits for a receipt to be acknowledged before it backs off and
    /// sends it again.
    pub receipt_timeout: u64,
    /// How long after an offer's expiry the answer of a finished one is still kept in
    /// memory, to cover clock differences between nodes. (Later copies are answered from
    /// the durable record, or refused as expired.)
    pub retain_after_expiry: u64,
}

/// The answer to an offer: an accept or a reject, unsigned. The node signs it (Ed25519
/// signatures are deterministic, so signing the same answer again gives the same bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// The offer is persisted and its stage will run.
    Accept(Accept),
    /// The offer is refused, with the reason.
    Reject(Reject),
}

/// Where a received offer is, as the node's durable inbox records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboxState {
    /// Persisted, not answered yet.
    Received,
    /// Accepted; the stage is to run, runs, or its receipt is on its way back.
    Accepted,
    /// Rejected. Final.
    Rejected,
    /// The stage ran and its receipt was acknowledged by the sender. Final.
    Done,
}

/// Where an offer this node sent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutgoingState {
    /// Sent; waiting for the answer until `deadline`.
    Awaiting {
        /// When the send counts as failed.
        deadline: u64,
        /// Failed sends so far.
        tries: u32,
    },
    /// A send failed; the next one leaves at `until`.
    Backoff {
        /// When to send again.
        until: u64,
        /// Failed sends so far.
        tries: u32,
    },
    /// Accepted; waiting for the receipt.
    Accepted,
}

/// Where an offer this node received is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncomingState {
    /// Restored from a durable entry that has no answer: the next copy of the offer is
    /// checked as if new.
    Unanswered,
    /// Accepted; its input artifacts are being fetched for `attempt`.
    Fetching {
        /// The attempt the stage will start as.
        attempt: u32,
        /// Failed fetches so far.
        tries: u32,
    },
    /// Its stage runs as `attempt`.
    Running {
        /// The attempt that runs.
        attempt: u32,
    },
    /// Its stage ended; the receipt goes back to the sender until acknowledged.
    Delivering {
        /// Failed or unacknowledged sends of the receipt so far.
        tries: u32,
    },
    /// Rejected; the reject is kept to answer duplicates.
    Rejected,
    /// Its receipt was acknowledged; the accept is kept to answer duplicates.
    Done,
}

/// The handoff state machine of one node. See the [module docs](self).
#[derive(Debug)]
pub struct Machine {
    config: Config,
    seed: u64,
    /// Offers sent and not answered, by handoff id.
    outgoing: BTreeMap<HandoffId, Outgoing>,
    /// Offers accepted by their owner whose receipt has not come, by handoff id.
    awaiting: BTreeMap<HandoffId, Awaiting>,
    /// The order in which `awaiting` entries came, oldest first, to forget the oldest.
    awaiting_order: VecDeque<HandoffId>,
    /// Offers received, by handoff id.
    incoming: BTreeMap<HandoffId, Incoming>,
    /// The finished ones among `incoming`, oldest first, to forget the oldest.
    finished: VecDeque<HandoffId>,
    /// Actions not yet taken by the node.
    actions: VecDeque<Action>,
    /// The last wakeup time announced with [`Action::Wakeup`].
    announced: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_pending: MAX_PENDING,
            max_awaiting: MAX_PENDING,
            max_inbox: MAX_INBOX,
            max_finished: MAX_FINISHED,
            answer_timeout: 10_000,
            backoff_initial: 500,
            backoff_max: 60_000,
            receipt_timeout: 10_000,
            retain_after_expiry: 600_000,
        }
    }
}

impl Machine {
    /// A machine with nothing in flight. `seed` makes the jitter of retry delays
    /// deterministic: the same seed and the same commands give the same actions.
    pub fn new(config: Config, seed: u64) -> Self {
        Self {
            config,
            seed,
            outgoing: BTreeMap::new(),
            awaiting: BTreeMap::new(),
            awaiting_order: VecDeque::new(),
            incoming: BTreeMap::new(),
            finished: VecDeque::new(),
            actions: VecDeque::new(),
            announced: None,
        }
    }

    /// Handles one command: updates the state, queues the actions the node must take, and
    /// returns what happened.
    pub fn handle(&mut self, command: Command<'_>) -> Event {
        let event = match command {
            Command::HandOff(c) => self.hand_off(c).into(),
            Command::Answer(c) => self.answer(c).into(),
            Command::SendFailed(c) => Event::SendFailed(self.send_failed(c)),
            Command::Receipt(c) => self.receipt(c).into(),
            Command::OfferReceived(c) => self.offer_received(c).into(),
            Command::ArtifactsReady(c) => self.artifacts_ready(c).into(),
            Command::ArtifactsFailed(c) => Event::ArtifactsFailed(self.artifacts_failed(c)),
            Command::StageFinished(c) => self.stage_finished(c).into(),
            Command::ReceiptAcked(c) => self.receipt_acked(c).into(),
            Command::ReceiptRefused(c) => self.receipt_refused(c).into(),
            Command::ReceiptFailed(c) => Event::ReceiptFailed(self.receipt_failed(c)),
            Command::Tick(c) => self.tick(c).into(),
            Command::Restore(c) => self.restore(c).into(),
        };
        self.announce_wakeup();
        event
    }

    /// The oldest action the node has not taken yet.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Every action the node has not taken yet, oldest first.
    pub fn drain_actions(&mut self) -> impl Iterator<Item = Action> + '_ {
        self.actions.drain(..)
    }

    /// When the machine next wants a [`Command::Tick`], if it waits for anything.
    pub fn next_wakeup(&self) -> Option<u64> {
        let outgoing = self.outgoing.values().map(Outgoing::due);
        let incoming = self.incoming.values().filter_map(Incoming::due);
        outgoing.chain(incoming).min()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where the offer `id` that this node sent is, if it still tracks it.
    pub fn outgoing(&self, id: &HandoffId) -> Option<OutgoingState> {
        if let Some(out) = self.outgoing.get(id) {
            return Some(match out.phase {
                Phase::Awaiting { deadline } => OutgoingState::Awaiting {
                    deadline,
                    tries: out.tries,
                },
                Phase::Backoff { until } => OutgoingState::Backoff {
                    until,
                    tries: out.tries,
                },
            });
        }
        self.awaiting
            .get(id)
            .filter(|a| !a.ended)
            .map(|_| OutgoingState::Accepted)
    }

    /// Where the offer `id` that this node received is, if it still holds it.
    pub fn incoming(&self, id: &HandoffId) -> Option<IncomingState> {
        self.incoming.get(id).map(Incoming::state)
    }

    /// The peer this node offered `stage` of `run` to, while it remembers the offer: sent
    /// and not answered, or accepted (also after its receipt came, while remembered).
    pub fn given_to(&self, run: &str, stage: &str) -> Option<&str> {
        self.outgoing
            .values()
            .filter(|out| out.run == run && out.stage == stage)
            .map(|out| out.peer.as_str())
            .chain(
                self.awaiting
                    .values()
                    .filter(|a| a.run == run && a.stage == stage)
                    .map(|a| a.peer.as_str()),
            )
            .next()
    }

    /// How many offers this node sent that have no answer yet.
    pub fn pending_offers(&self) -> usize {
        self.outgoing.len()
    }

    /// How many received offers the machine holds (open or kept for duplicates).
    pub fn held_offers(&self) -> usize {
        self.incoming.len()
    }

    /// How many received offers are open: accepted and not done, or without an answer.
    pub fn open_offers(&self) -> usize {
        self.incoming.len() - self.finished.len()
    }
}

/// The handoff id of the offer in `envelope`, if it holds one: what the node looks up in
/// its durable inbox before it hands the offer to the machine
/// ([`OfferReceived::stored`](command::OfferReceived::stored)).
pub fn offer_id(envelope: &Envelope) -> Option<HandoffId> {
    envelope.payload_as::<Offer>().ok().map(|offer| offer.id)
}

impl Verdict {
    /// The handoff id the answer is for.
    pub fn id(&self) -> HandoffId {
        match self {
            Self::Accept(accept) => accept.id,
            Self::Reject(reject) => reject.id,
        }
    }

    /// Reads an answer from a (signed) envelope: an accept or a reject.
    pub fn from_envelope(envelope: &Envelope) -> Result<Self, DecodeError> {
        if envelope.payload_type == Accept::KIND.payload_type() {
            envelope.payload_as().map(Self::Accept)
        } else {
            envelope.payload_as().map(Self::Reject)
        }
    }

    /// The envelope of this answer, not signed yet: what the node signs.
    pub fn to_unsigned(&self) -> Envelope {
        let (kind, payload) = match self {
            Self::Accept(accept) => (Kind::Accept, otto_protocol::encode_payload(accept)),
            Self::Reject(reject) => (Kind::Reject, otto_protocol::encode_payload(reject)),
        };
        Envelope {
            payload,
            signatures: Vec::new(),
            payload_type: kind.payload_type().to_owned(),
        }
    }
}

/// An offer this node sent that has no answer yet.
#[derive(Debug, Clone)]
struct Outgoing {
    run: String,
    stage: String,
    attempt: u32,
    peer: String,
    envelope: Arc<Envelope>,
    /// When the offer expires, in milliseconds.
    expires_at: u64,
    /// Failed sends so far.
    tries: u32,
    phase: Phase,
}

/// Whether a message is out and awaited, or waits to be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Sent; counts as failed at `deadline`.
    Awaiting { deadline: u64 },
    /// Failed; goes again at `until`.
    Backoff { until: u64 },
}

/// An offer accepted by its owner, waiting for the receipt.
#[derive(Debug, Clone)]
struct Awaiting {
    run: String,
    stage: String,
    attempt: u32,
    /// The peer that accepted it: the only one whose receipt ends it.
    peer: String,
    /// Its receipt came: kept only to refuse copies from other peers.
    ended: bool,
}

/// An offer this node received.
#[derive(Debug, Clone)]
struct Incoming {
    peer: String,
    /// sha256 of the offer's payload type and payload: a copy with the same id and other
    /// bytes is not a duplicate.
    digest: Digest,
    /// When the offer expires, in milliseconds.
    expires_at: u64,
    /// The first answer, replayed to every duplicate; `None` only while unanswered.
    verdict: Option<Verdict>,
    stage: Stage,
}

/// Where the stage of a received offer is.
#[derive(Debug, Clone)]
enum Stage {
    /// Restored without an answer: checked afresh when the offer comes again.
    Unanswered,
    /// Accepted; fetching the inputs for `attempt` (again at `retry_at` after a failure).
    Fetching {
        offer: Arc<Offer>,
        attempt: u32,
        tries: u32,
        retry_at: Option<u64>,
    },
    /// Running as `attempt`.
    Running { offer: Arc<Offer>, attempt: u32 },
    /// Ended; the receipt goes back until acknowledged.
    Delivering {
        receipt: Arc<Envelope>,
        tries: u32,
        phase: Phase,
    },
    /// Rejected or done; only the answer is kept.
    Finished,
}

impl Machine {
    /// [`command::Tick`]: whatever is due on either side.
    fn tick(&mut self, command: command::Tick) -> event::Tick {
        let mut tick = event::Tick::default();
        self.tick_outgoing(command.now, &mut tick);
        self.tick_incoming(command.now, &mut tick);
        tick
    }

    /// [`command::Restore`]: rebuild both sides from the durable records.
    fn restore(&mut self, command: command::Restore) -> event::Restore {
        let command::Restore {
            outbox,
            given,
            inbox,
            now,
        } = command;
        let mut restore = event::Restore::default();
        self.restore_given(given, &mut restore);
        self.restore_outgoing(outbox, now, &mut restore);
        self.restore_incoming(inbox, now, &mut restore);
        restore
    }

    /// Queues an action.
    fn push(&mut self, action: Action) {
        self.actions.push_back(action);
    }

    /// Queues [`Action::Wakeup`] when the next wakeup time changed since the last one.
    fn announce_wakeup(&mut self) {
        let next = self.next_wakeup();
        if next != self.announced {
            self.announced = next;
            if let Some(at) = next {
                self.push(Action::Wakeup { at });
            }
        }
    }

    /// The delay before the next try after `tries` failures of handoff `id`: exponential
    /// from [`Config::backoff_initial`], capped at [`Config::backoff_max`], with "equal
    /// jitter" (half fixed, half drawn from the seed, the id and the try count), so nodes
    /// that fail together do not retry together, and the same inputs give the same delay.
    fn backoff(&self, id: &HandoffId, tries: u32) -> u64 {
        let doublings = tries.saturating_sub(1).min(40);
        let full = self
            .config
            .backoff_initial
            .saturating_mul(1u64 << doublings)
            .min(self.config.backoff_max)
            .max(1);
        let half = full / 2;
        let draw = mix64(self.seed ^ fold(id) ^ (u64::from(tries) << 40));
        (half + draw % (full - half + 1)).max(1)
    }
}

impl Outgoing {
    /// When this offer next needs attention: its phase's time, or its expiry if earlier.
    fn due(&self) -> u64 {
        let at = match self.phase {
            Phase::Awaiting { deadline } => deadline,
            Phase::Backoff { until } => until,
        };
        at.min(self.expires_at)
    }
}

impl Incoming {
    /// When this entry next needs attention, if it waits for a timer.
    fn due(&self) -> Option<u64> {
        match &self.stage {
            Stage::Fetching { retry_at, .. } => *retry_at,
            Stage::Delivering { phase, .. } => Some(match phase {
                Phase::Awaiting { deadline } => *deadline,
                Phase::Backoff { until } => *until,
            }),
            Stage::Unanswered | Stage::Running { .. } | Stage::Finished => None,
        }
    }

    fn state(&self) -> IncomingState {
        match &self.stage {
            Stage::Unanswered => IncomingState::Unanswered,
            Stage::Fetching { attempt, tries, .. } => IncomingState::Fetching {
                attempt: *attempt,
                tries: *tries,
            },
            Stage::Running { attempt, .. } => IncomingState::Running { attempt: *attempt },
            Stage::Delivering { tries, .. } => IncomingState::Delivering { tries: *tries },
            Stage::Finished => match self.verdict {
                Some(Verdict::Accept(_)) => IncomingState::Done,
                _ => IncomingState::Rejected,
            },
        }
    }

    /// Whether the entry is finished (or unanswered) and may be forgotten at `now`.
    fn forgettable(&self, now: u64, retain: u64) -> bool {
        matches!(self.stage, Stage::Finished | Stage::Unanswered)
            && self.expires_at.saturating_add(retain) <= now
    }
}

/// The digest by which a copy of an offer is recognised as the same offer.
fn offer_digest(envelope: &Envelope) -> Digest {
    let mut hasher = Sha256::new();
    hasher.update(envelope.payload_type.as_bytes());
    hasher.update([0]);
    hasher.update(&envelope.payload);
    Digest(hasher.finalize().into())
}

/// The time `delay` after `now`, at least one millisecond later, so that whatever a tick
/// schedules falls after that tick.
fn after(now: u64, delay: u64) -> u64 {
    now.saturating_add(delay.max(1))
}

/// Seconds (as on the wire) to milliseconds.
fn millis(seconds: u64) -> u64 {
    seconds.saturating_mul(1000)
}

/// The SplitMix64 finaliser: a well-mixed 64-bit value from any 64-bit input.
pub(crate) fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A handoff id folded to 64 bits.
fn fold(id: &HandoffId) -> u64 {
    let x = u128::from_le_bytes(id.0);
    // Truncation is the point: the two halves are mixed into one word.
    #[allow(clippy::cast_possible_truncation)]
    let (lo, hi) = (x as u64, (x >> 64) as u64);
    lo ^ hi.rotate_left(17)
}
