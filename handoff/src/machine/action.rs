//! The outputs the node carries out: what to persist, send, fetch and start, and when to
//! wake the machine.
//!
//! Take them in the order [`Machine::poll_action`](super::Machine::poll_action) gives
//! them. An action that speaks to a peer ([`Action::Send`], [`Action::Reply`],
//! [`Action::SendReceipt`], [`Action::AckReceipt`]) waits until every durable write queued
//! before it ([`Action::PersistOutbox`], [`Action::RetryOutbox`], [`Action::AckOutbox`],
//! [`Action::PersistReceipt`], [`Action::PersistInbox`], [`Action::InboxDone`]) has
//! committed. Everything else may run as soon as it is taken.

use std::sync::Arc;

use otto_protocol::{Envelope, HandoffId, InputArtifact, Offer};

use super::{InboxState, Verdict};

/// One thing the node must do for the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Sender: put the offer in the durable outbox (store `outbox_put`). Durable before the
    /// [`Action::Send`] that follows.
    PersistOutbox {
        /// The handoff id.
        id: HandoffId,
        /// The run.
        run: String,
        /// The offered stage.
        stage: String,
        /// Where it goes.
        peer: String,
        /// The signed offer.
        envelope: Arc<Envelope>,
        /// When it was handed over.
        created_at: u64,
        /// When to send it again if no answer comes.
        next_attempt_at: u64,
    },
    /// Sender: send the offer to `peer` (request-response); its answer comes back as
    /// [`Command::Answer`](super::Command::Answer), a transport failure as
    /// [`Command::SendFailed`](super::Command::SendFailed).
    Send {
        /// The handoff id.
        id: HandoffId,
        /// Where it goes.
        peer: String,
        /// The signed offer.
        envelope: Arc<Envelope>,
    },
    /// Sender: record a failed send in the durable outbox (store `outbox_retry`).
    RetryOutbox {
        /// The handoff id.
        id: HandoffId,
        /// When it goes again.
        next_attempt_at: u64,
        /// Failed sends so far.
        tries: u32,
        /// Why the last one failed.
        error: String,
    },
    /// Sender: remove the offer from the durable outbox (store `outbox_ack`): it was
    /// answered or it expired.
    AckOutbox {
        /// The handoff id.
        id: HandoffId,
    },
    /// Sender: store a receipt that came back (store `put_receipt`). Durable before the
    /// [`Action::AckReceipt`] that follows.
    PersistReceipt {
        /// The run.
        run: String,
        /// The stage.
        stage: String,
        /// The attempt the receipt reports.
        attempt: u32,
        /// The signed receipt.
        receipt: Arc<Envelope>,
    },
    /// Sender: acknowledge the receipt to the peer that sent it (the response to its
    /// request).
    AckReceipt {
        /// The peer that sent it.
        peer: String,
        /// The run.
        run: String,
        /// The stage.
        stage: String,
        /// The attempt.
        attempt: u32,
    },
    /// Sender: refuse the receipt to the peer that sent it, with a signed reject (the
    /// response to its request): this node gave the stage to no one, or to another peer, so
    /// the peer stops sending it ([`command::ReceiptRefused`](super::command::ReceiptRefused)
    /// on its side). Nothing is stored.
    RefuseReceipt {
        /// The peer that sent it.
        peer: String,
        /// The run.
        run: String,
        /// The stage.
        stage: String,
        /// The attempt.
        attempt: u32,
        /// Why, in words for the peer's log.
        reason: String,
    },
    /// Receiver: put the offer and its answer in the durable inbox, in one write (store
    /// `inbox_put` of an entry with its state and signed answer). Durable before the
    /// [`Action::Reply`] that follows. If the store already holds the id, it keeps what it
    /// has.
    PersistInbox {
        /// The handoff id.
        id: HandoffId,
        /// The peer that offered it.
        peer: String,
        /// The offer as received.
        offer: Arc<Envelope>,
        /// When it was received.
        received_at: u64,
        /// [`InboxState::Accepted`] or [`InboxState::Rejected`].
        state: InboxState,
        /// The answer to sign and store with it.
        verdict: Verdict,
    },
    /// Receiver: sign `verdict` and send it as the answer to the offer request this
    /// command handled. Every [`Command::OfferReceived`](super::Command::OfferReceived)
    /// queues exactly one.
    Reply {
        /// The handoff id (all zero when the offer did not decode far enough to have one).
        id: HandoffId,
        /// The peer that asked.
        peer: String,
        /// The answer.
        verdict: Verdict,
    },
    /// Receiver: fetch the offer's input artifacts from their providers and check their
    /// digests; report [`Command::ArtifactsReady`](super::Command::ArtifactsReady) or
    /// [`Command::ArtifactsFailed`](super::Command::ArtifactsFailed). With no inputs,
    /// report ready at once.
    FetchArtifacts {
        /// The handoff id.
        id: HandoffId,
        /// The peer that offered the stage.
        peer: String,
        /// What to fetch.
        inputs: Vec<InputArtifact>,
    },
    /// Receiver: record attempt `attempt` of the offered stage as begun (durably), then
    /// run it with this node's agent, environment and secrets; when it ends, sign and
    /// store its receipt and report [`Command::StageFinished`](super::Command::StageFinished).
    StartStage {
        /// The handoff id.
        id: HandoffId,
        /// The attempt number to run and to put in the receipt.
        attempt: u32,
        /// The offer (plan, stage, facts, inputs, receipt chain).
        offer: Arc<Offer>,
    },
    /// Receiver: send the stage's receipt to the peer that offered it; its
    /// acknowledgement comes back as [`Command::ReceiptAcked`](super::Command::ReceiptAcked),
    /// a failure as [`Command::ReceiptFailed`](super::Command::ReceiptFailed).
    SendReceipt {
        /// The handoff id.
        id: HandoffId,
        /// Where it goes.
        peer: String,
        /// The signed receipt.
        receipt: Arc<Envelope>,
    },
    /// Receiver: mark the inbox entry done (store `inbox_done`): the receipt reached the
    /// sender.
    InboxDone {
        /// The handoff id.
        id: HandoffId,
    },
    /// Give the machine a [`Command::Tick`](super::Command::Tick) at `at` (milliseconds);
    /// replaces any earlier wakeup.
    Wakeup {
        /// When.
        at: u64,
    },
}

impl Action {
    /// Whether the action is a durable write that later messages wait for.
    pub fn is_durable_write(&self) -> bool {
        matches!(
            self,
            Self::PersistOutbox { .. }
                | Self::RetryOutbox { .. }
                | Self::AckOutbox { .. }
                | Self::PersistReceipt { .. }
                | Self::PersistInbox { .. }
                | Self::InboxDone { .. }
        )
    }

    /// Whether the action sends something to a peer.
    pub fn is_message(&self) -> bool {
        matches!(
            self,
            Self::Send { .. }
                | Self::Reply { .. }
                | Self::SendReceipt { .. }
                | Self::AckReceipt { .. }
                | Self::RefuseReceipt { .. }
        )
    }
}
