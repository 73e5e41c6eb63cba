//! The outcome of each command: one type per [`Command`](super::Command) variant, named
//! after it, gathered in [`Event`].
//!
//! Events are for the node's own bookkeeping and for people (`otto status`); the work the
//! node must do comes as [`Action`](super::Action)s.

use otto_protocol::{HandoffId, Outcome, RejectCode};

use super::Verdict;
use crate::{Definition, Rejection};

/// What [`Machine::handle`](super::Machine::handle) did with a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The outcome of [`Command::HandOff`](super::Command::HandOff).
    HandOff(HandOff),
    /// The outcome of [`Command::Answer`](super::Command::Answer).
    Answer(Answer),
    /// The outcome of [`Command::SendFailed`](super::Command::SendFailed).
    SendFailed(Retry),
    /// The outcome of [`Command::Receipt`](super::Command::Receipt).
    Receipt(Receipt),
    /// The outcome of [`Command::OfferReceived`](super::Command::OfferReceived).
    OfferReceived(OfferReceived),
    /// The outcome of [`Command::ArtifactsReady`](super::Command::ArtifactsReady).
    ArtifactsReady(ArtifactsReady),
    /// The outcome of [`Command::ArtifactsFailed`](super::Command::ArtifactsFailed).
    ArtifactsFailed(Retry),
    /// The outcome of [`Command::StageFinished`](super::Command::StageFinished).
    StageFinished(StageFinished),
    /// The outcome of [`Command::ReceiptAcked`](super::Command::ReceiptAcked).
    ReceiptAcked(ReceiptAcked),
    /// The outcome of [`Command::ReceiptRefused`](super::Command::ReceiptRefused).
    ReceiptRefused(ReceiptRefused),
    /// The outcome of [`Command::ReceiptFailed`](super::Command::ReceiptFailed).
    ReceiptFailed(Retry),
    /// The outcome of [`Command::Tick`](super::Command::Tick).
    Tick(Tick),
    /// The outcome of [`Command::Restore`](super::Command::Restore).
    Restore(Restore),
}

/// The outcome of a hand-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandOff {
    /// The offer is persisted and sent; it is retried until answered or expired.
    Queued {
        /// The handoff id.
        id: HandoffId,
        /// When the offer expires (milliseconds).
        expires_at: u64,
    },
    /// An offer with this id is already tracked; nothing changed.
    AlreadyKnown {
        /// The handoff id.
        id: HandoffId,
    },
    /// Back-pressure: [`Config::max_pending`](super::Config::max_pending) offers wait for
    /// an answer already. Nothing was queued; hand the offer over again later.
    Full {
        /// The handoff id.
        id: HandoffId,
        /// Offers waiting now.
        pending: usize,
    },
    /// The offer has expired already; nothing was sent.
    Expired {
        /// The handoff id.
        id: HandoffId,
    },
    /// The envelope does not hold an offer.
    Invalid {
        /// Why.
        reason: String,
    },
}

/// The outcome of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The owner accepted the offer: it is persisted there and will run. The receipt comes
    /// later.
    Accepted {
        /// The handoff id.
        id: HandoffId,
        /// The run.
        run: String,
        /// The stage.
        stage: String,
        /// The owner's peer.
        peer: String,
    },
    /// The owner refused the offer, for a reason to show (e.g. "ops rejected Deploy:
    /// stage definition not approved; run `otto-node approve 3fa1…` on ops-1").
    Rejected {
        /// The handoff id.
        id: HandoffId,
        /// The run.
        run: String,
        /// The stage.
        stage: String,
        /// The owner's peer.
        peer: String,
        /// Why, for programs.
        code: RejectCode,
        /// Why, for people.
        message: String,
        /// What to do about it.
        hint: Option<String>,
    },
    /// The owner is busy (an `internal` reject); the offer goes again after a backoff.
    Busy {
        /// The handoff id.
        id: HandoffId,
        /// The owner's message.
        message: String,
        /// When it goes again.
        retry_at: u64,
    },
    /// No offer with this id waits for an answer (a late copy of an answer, or an offer
    /// that expired); nothing changed.
    Unknown {
        /// The handoff id.
        id: HandoffId,
    },
    /// The envelope is no answer to this offer (another payload type, another handoff id,
    /// stage or attempt); nothing changed.
    Invalid {
        /// The handoff id.
        id: HandoffId,
        /// Why.
        reason: String,
    },
}

/// The outcome of a failure that the machine retries: a send, a fetch or a receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retry {
    /// Scheduled again after a backoff.
    Retrying {
        /// The handoff id.
        id: HandoffId,
        /// Failures so far.
        tries: u32,
        /// When it goes again.
        retry_at: u64,
    },
    /// Nothing with this id is in the state the failure is about; nothing changed.
    Unknown {
        /// The handoff id.
        id: HandoffId,
    },
}

/// The outcome of a receipt that came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    /// A stage this node handed off ended. The receipt is to be stored and acknowledged;
    /// the run moves on from the node that ran the stage.
    StageFinished {
        /// The handoff it answers, when this node still knew it.
        handoff: Option<HandoffId>,
        /// The run.
        run: String,
        /// The stage.
        stage: String,
        /// The attempt it reports.
        attempt: u32,
        /// How it ended.
        outcome: Outcome,
    },
    /// The receipt is for a stage this node handed to another peer: refused (answered
    /// with [`Action::RefuseReceipt`](super::Action::RefuseReceipt), so its sender stops),
    /// not stored; nothing changed.
    Refused {
        /// The peer that sent it.
        peer: String,
        /// The run.
        run: String,
        /// The stage.
        stage: String,
        /// The attempt it reports.
        attempt: u32,
        /// The peer the stage was handed to.
        given_to: String,
    },
    /// The receipt is for a stage this node gave to no peer (it never handed it off, its
    /// offer expired before an accept came and the node restarted since, or that handoff
    /// ended and its receipt is not this one): refused (answered with
    /// [`Action::RefuseReceipt`](super::Action::RefuseReceipt), so its sender stops), not
    /// stored; nothing changed.
    Stray {
        /// The peer that sent it.
        peer: String,
        /// The run.
        run: String,
        /// The stage.
        stage: String,
        /// The attempt it reports.
        attempt: u32,
    },
    /// A copy of a receipt the node already holds, of a handoff that ended: acknowledged
    /// again, nothing stored.
    Again {
        /// The run.
        run: String,
        /// The stage.
        stage: String,
        /// The attempt it reports.
        attempt: u32,
    },
    /// The envelope does not hold a receipt; nothing changed.
    Invalid {
        /// Why.
        reason: String,
    },
}

/// The outcome of an offer received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferReceived {
    /// The offer passed every check: it is persisted, accepted, and its inputs are being
    /// fetched.
    Accepted {
        /// The handoff id.
        id: HandoffId,
        /// The offering peer.
        peer: String,
        /// The run.
        run: String,
        /// The stage.
        stage: String,
        /// The attempt the stage will run as.
        attempt: u32,
        /// The sender's org, by its pinned name here.
        org: String,
        /// The sender's node name.
        node: String,
        /// How the stage is defined.
        definition: Definition,
    },
    /// The offer was refused. A refusal of an offer whose sender was authenticated is
    /// persisted, so copies get the same answer; one of an unauthenticated offer is not
    /// (it must not take a handoff id away from its real sender).
    Rejected {
        /// The handoff id, when the offer decoded far enough.
        id: Option<HandoffId>,
        /// Why.
        rejection: Rejection,
        /// Whether the refusal was persisted.
        persisted: bool,
    },
    /// A copy of an offer answered before: it got the first answer again and nothing else
    /// happened.
    Duplicate {
        /// The handoff id.
        id: HandoffId,
        /// The first answer.
        verdict: Verdict,
    },
    /// Another offer under a handoff id already used: refused as `replayed`, without
    /// touching the first.
    Conflict {
        /// The handoff id.
        id: HandoffId,
    },
    /// Back-pressure: the machine holds [`Config::max_inbox`](super::Config::max_inbox)
    /// offers. The offer got an `internal` reject (not persisted); its sender retries.
    Busy {
        /// The handoff id, when the offer decoded far enough.
        id: Option<HandoffId>,
        /// Offers held now.
        held: usize,
    },
}

/// The outcome of input artifacts being ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactsReady {
    /// The stage starts as `attempt`.
    Started {
        /// The handoff id.
        id: HandoffId,
        /// The attempt.
        attempt: u32,
    },
    /// No accepted offer with this id is fetching; nothing changed.
    Unknown {
        /// The handoff id.
        id: HandoffId,
    },
}

/// The outcome of a stage of an accepted offer ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageFinished {
    /// The receipt goes back to the sender until acknowledged.
    Delivering {
        /// The handoff id.
        id: HandoffId,
        /// The attempt the receipt reports.
        attempt: u32,
        /// How it ended.
        outcome: Outcome,
    },
    /// No accepted offer with this id is fetching or running; nothing changed.
    Unknown {
        /// The handoff id.
        id: HandoffId,
    },
    /// The receipt does not decode or is for another run or stage; nothing changed.
    Invalid {
        /// The handoff id.
        id: HandoffId,
        /// Why.
        reason: String,
    },
}

/// The outcome of a receipt acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptRefused {
    /// The receipt is not sent again: the handoff is done on this side, as if acknowledged
    /// (its accept is kept for duplicates until expiry).
    GivenUp {
        /// The handoff id.
        id: HandoffId,
        /// The sender's words.
        reason: String,
    },
    /// No receipt with this id is being delivered; nothing changed.
    Unknown {
        /// The handoff id.
        id: HandoffId,
    },
}

/// The outcome of a receipt acknowledged by the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptAcked {
    /// The handoff is done on this side; its accept is kept for duplicates until expiry.
    Done {
        /// The handoff id.
        id: HandoffId,
    },
    /// No receipt with this id is being delivered; nothing changed.
    Unknown {
        /// The handoff id.
        id: HandoffId,
    },
}

/// The outcome of time passing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tick {
    /// Offers that expired without an answer; they left the outbox.
    pub expired: Vec<Expired>,
    /// Offers sent again.
    pub resent: usize,
    /// Sends that got no answer in time and now back off.
    pub timed_out: usize,
    /// Fetches asked again.
    pub refetched: usize,
    /// Receipts sent again.
    pub receipts_resent: usize,
    /// Finished received offers forgotten after their expiry.
    pub forgotten: usize,
}

/// An offer that expired without an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The handoff id.
    pub id: HandoffId,
    /// The run.
    pub run: String,
    /// The stage.
    pub stage: String,
    /// Where it went.
    pub peer: String,
}

/// The outcome of a restore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restore {
    /// Offers sent again.
    pub offers: usize,
    /// Offers that expired while the node was down; they leave the outbox.
    pub expired: Vec<Expired>,
    /// Accepted stages that start again (as a new attempt if one had begun).
    pub restarted: usize,
    /// Receipts sent again.
    pub receipts: usize,
    /// Finished offers held to answer duplicates.
    pub answered: usize,
    /// Offers persisted without an answer, checked again when they come again.
    pub unanswered: usize,
    /// Records that could not be restored, and why (an offer that does not decode).
    pub skipped: Vec<String>,
}

macro_rules! events {
    ($($name:ident => $variant:ident),* $(,)?) => {
        $(
            impl From<$name> for Event {
                fn from(event: $name) -> Self {
                    Self::$variant(event)
                }
            }
        )*
    };
}

events!(
    HandOff => HandOff,
    Answer => Answer,
    Receipt => Receipt,
    OfferReceived => OfferReceived,
    ArtifactsReady => ArtifactsReady,
    StageFinished => StageFinished,
    ReceiptAcked => ReceiptAcked,
    ReceiptRefused => ReceiptRefused,
    Tick => Tick,
    Restore => Restore,
);
