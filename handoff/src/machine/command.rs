//! The inputs of the [`Machine`](super::Machine): one struct per command.
//!
//! Sender side: [`HandOff`], [`Answer`], [`SendFailed`], [`Receipt`]. Receiver side:
//! [`OfferReceived`], [`ArtifactsReady`], [`ArtifactsFailed`], [`StageFinished`],
//! [`ReceiptAcked`], [`ReceiptRefused`], [`ReceiptFailed`]. Both: [`Tick`], [`Restore`]. Every command carries
//! `now`, in milliseconds since the Unix epoch.

use std::fmt;

use otto_protocol::{Envelope, HandoffId};
use otto_trust::{Unverified, Verified};

use super::{InboxState, Verdict};
use crate::VerifyContext;

/// An input to [`Machine::handle`](super::Machine::handle).
#[derive(Debug)]
pub enum Command<'a> {
    /// Send a signed offer to the stage's owner and track it until answered.
    HandOff(HandOff),
    /// An answer to an offer this node sent arrived.
    Answer(Answer),
    /// Sending an offer failed at the transport.
    SendFailed(SendFailed),
    /// A receipt for a stage this node handed off arrived.
    Receipt(Receipt),
    /// A peer offered a stage to this node.
    OfferReceived(OfferReceived<'a>),
    /// The input artifacts of an accepted offer are here and verified.
    ArtifactsReady(ArtifactsReady),
    /// Fetching the input artifacts of an accepted offer failed.
    ArtifactsFailed(ArtifactsFailed),
    /// The stage of an accepted offer ended and its receipt is signed and stored.
    StageFinished(StageFinished),
    /// The sender acknowledged the receipt of an accepted offer.
    ReceiptAcked(ReceiptAcked),
    /// The sender refused the receipt of an accepted offer: it takes it from no one.
    ReceiptRefused(ReceiptRefused),
    /// Sending the receipt of an accepted offer failed at the transport.
    ReceiptFailed(ReceiptFailed),
    /// Time passed: retry, resend and expire what is due.
    Tick(Tick),
    /// The node restarted: here is what its durable outbox and inbox hold.
    Restore(Restore),
}

/// Send `envelope`, an offer this node built and signed, to `peer`.
///
/// The machine reads the handoff id, run, stage, attempt and expiry from the offer.
#[derive(Debug, Clone)]
pub struct HandOff {
    /// Where the offer goes: the owner's peer, as the node names it.
    pub peer: String,
    /// The signed offer.
    pub envelope: Envelope,
    /// The time now.
    pub now: u64,
}

/// An accept or reject arrived for offer `id`. The node has checked its signature against
/// the peer the offer went to.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The handoff id the answer came back for (the request it answers).
    pub id: HandoffId,
    /// The answer, its signature checked.
    pub envelope: Verified<Envelope>,
    /// The time now.
    pub now: u64,
}

/// Sending offer `id` failed before an answer came: the peer is unreachable, the
/// connection broke, or the request timed out.
#[derive(Debug, Clone)]
pub struct SendFailed {
    /// The handoff id.
    pub id: HandoffId,
    /// Why, for the record.
    pub error: String,
    /// The time now.
    pub now: u64,
}

/// A receipt arrived from `peer` for a stage this node handed off. The node has checked
/// its signature against the peer, and says what its store knows of the stage: the
/// machine may have forgotten the handoff ([`Config::max_awaiting`](super::Config)), or
/// ended it before a restart.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// The peer that sent it.
    pub peer: String,
    /// The receipt, its signature checked.
    pub envelope: Verified<Envelope>,
    /// The peer the node's durable records say the receipt's stage was given to (an
    /// accepted offer whose receipt has not come), if any.
    pub given: Option<String>,
    /// Whether the node's store already holds this very receipt (the same bytes): a copy
    /// the peer sends again because its acknowledgement was lost.
    pub held: bool,
    /// The time now.
    pub now: u64,
}

/// `peer` offers a stage: `envelope` as it came off the wire.
///
/// The machine answers a copy of an offer it already answered with that first answer,
/// from memory or from `stored`; any other offer is checked with
/// [`verify_offer`](crate::verify_offer) against `verify`, whose `seen` is asked only
/// about handoff ids neither holds.
pub struct OfferReceived<'a> {
    /// The offering peer, as the node names it; answers and receipts go there.
    pub peer: String,
    /// The offer, not verified yet.
    pub envelope: Unverified<Envelope>,
    /// The node's durable inbox entry for the offer's handoff id
    /// ([`offer_id`](super::offer_id)), if it has one. Needed only for ids the machine
    /// may have forgotten ([`Config::max_finished`](super::Config::max_finished)); `None`
    /// is always safe, and a copy of a forgotten offer is then refused as `replayed` if
    /// `verify.seen` knows its id.
    pub stored: Option<InboxRecord>,
    /// The node's trust store, names and published blueprints.
    pub verify: &'a VerifyContext<'a>,
    /// The time now.
    pub now: u64,
}

/// The input artifacts of accepted offer `id` are fetched and their digests checked.
#[derive(Debug, Clone, Copy)]
pub struct ArtifactsReady {
    /// The handoff id.
    pub id: HandoffId,
    /// The time now.
    pub now: u64,
}

/// Fetching the input artifacts of accepted offer `id` failed; the machine asks again
/// after a backoff. (A fetch that can never succeed, such as a digest mismatch, is the
/// node's to end with a failed receipt through [`StageFinished`].)
#[derive(Debug, Clone)]
pub struct ArtifactsFailed {
    /// The handoff id.
    pub id: HandoffId,
    /// Why, for the record.
    pub error: String,
    /// The time now.
    pub now: u64,
}

/// The stage of accepted offer `id` ended (or could not start) and `receipt` is its
/// signed receipt, already stored durably by the node.
#[derive(Debug, Clone)]
pub struct StageFinished {
    /// The handoff id.
    pub id: HandoffId,
    /// The signed receipt.
    pub receipt: Envelope,
    /// The time now.
    pub now: u64,
}

/// The sender acknowledged the receipt of accepted offer `id`.
#[derive(Debug, Clone, Copy)]
pub struct ReceiptAcked {
    /// The handoff id.
    pub id: HandoffId,
    /// The time now.
    pub now: u64,
}

/// The sender refused the receipt of accepted offer `id`, with a signed reject (the node
/// checked its signature against the peer the receipt went to): it holds no handoff of the
/// stage to this node (its offer expired before the accept came and it restarted since, or
/// it gave the stage to another node). Sending it again would change nothing: the machine
/// stops.
#[derive(Debug, Clone)]
pub struct ReceiptRefused {
    /// The handoff id.
    pub id: HandoffId,
    /// The sender's words.
    pub reason: String,
    /// The time now.
    pub now: u64,
}

/// Sending the receipt of accepted offer `id` failed; the machine sends it again after a
/// backoff.
#[derive(Debug, Clone)]
pub struct ReceiptFailed {
    /// The handoff id.
    pub id: HandoffId,
    /// Why, for the record.
    pub error: String,
    /// The time now.
    pub now: u64,
}

/// Time passed.
#[derive(Debug, Clone, Copy)]
pub struct Tick {
    /// The time now.
    pub now: u64,
}

/// The node restarted; this is what its durable outbox and inbox hold. Give it to a new
/// machine before any other command.
///
/// `inbox` must hold every entry not finished (received or accepted). Finished entries
/// (rejected or done) are optional: the machine keeps the ones given, up to
/// [`Config::max_finished`](super::Config::max_finished) and until their offer expires,
/// and answers copies of the others from [`OfferReceived::stored`].
#[derive(Debug, Clone, Default)]
pub struct Restore {
    /// The offers in the durable outbox.
    pub outbox: Vec<OutboxRecord>,
    /// The offers this node sent that their owner accepted and whose receipt has not
    /// come, as the node keeps them from the accept to the receipt: only the peer each was
    /// given to may end it (`tries` is not used).
    pub given: Vec<OutboxRecord>,
    /// The offers in the durable inbox.
    pub inbox: Vec<InboxRecord>,
    /// The time now.
    pub now: u64,
}

/// An offer in the node's durable outbox.
#[derive(Debug, Clone)]
pub struct OutboxRecord {
    /// Where it goes.
    pub peer: String,
    /// The signed offer.
    pub envelope: Envelope,
    /// Failed sends so far.
    pub tries: u32,
}

/// An offer in the node's durable inbox.
#[derive(Debug, Clone)]
pub struct InboxRecord {
    /// The peer that offered it.
    pub peer: String,
    /// The offer as received.
    pub offer: Envelope,
    /// When it was first received.
    pub received_at: u64,
    /// Where it is.
    pub state: InboxState,
    /// The answer stored with it (decoded from the signed answer with
    /// [`Verdict::from_envelope`]).
    pub verdict: Option<Verdict>,
    /// The highest attempt of its stage the node began, if any: a stage interrupted by the
    /// restart starts again as the next attempt.
    pub last_attempt: Option<u32>,
    /// The signed receipt, if the stage ended: it goes back to the sender again.
    pub receipt: Option<Envelope>,
}

impl fmt::Debug for OfferReceived<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OfferReceived")
            .field("peer", &self.peer)
            .field("envelope", &self.envelope)
            .field("stored", &self.stored)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

macro_rules! commands {
    ($($name:ident),* $(,)?) => {
        $(
            impl From<$name> for Command<'_> {
                fn from(command: $name) -> Self {
                    Self::$name(command)
                }
            }
        )*
    };
}

commands!(
    HandOff,
    Answer,
    SendFailed,
    Receipt,
    ArtifactsReady,
    ArtifactsFailed,
    StageFinished,
    ReceiptAcked,
    ReceiptRefused,
    ReceiptFailed,
    Tick,
    Restore,
);

impl<'a> From<OfferReceived<'a>> for Command<'a> {
    fn from(command: OfferReceived<'a>) -> Self {
        Self::OfferReceived(command)
    }
}
