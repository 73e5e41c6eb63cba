//! The receiving side: offers in, answers out, then fetch, run and deliver the receipt.

use std::sync::Arc;

use otto_protocol::{Accept, Digest, HandoffId, Offer, RejectCode};

use super::command::{self, InboxRecord};
use super::event;
use super::{
    Action, InboxState, Incoming, Machine, Phase, Stage, Verdict, after, millis, offer_digest,
};
use crate::{Rejection, VerifyContext, verify_offer};

impl Machine {
    /// [`command::OfferReceived`]: answer a copy with its first answer; check anything
    /// else, persist the verdict, answer, and on accept fetch the inputs.
    pub(super) fn offer_received(
        &mut self,
        command: command::OfferReceived<'_>,
    ) -> event::OfferReceived {
        let command::OfferReceived {
            peer,
            envelope,
            stored,
            verify,
            now,
        } = command;
        let peeked: Option<Offer> = envelope.peek().payload_as().ok();
        let id = peeked.as_ref().map(|offer| offer.id);
        let digest = offer_digest(envelope.peek());

        // What the machine holds about this id, or else what the node's durable inbox holds:
        // a finished entry the machine forgot answers from the record; an open one the
        // machine never restored resumes.
        let mut held: Option<(Digest, Option<Verdict>)> = id
            .and_then(|id| self.incoming.get(&id))
            .map(|entry| (entry.digest, entry.verdict.clone()));
        if held.is_none()
            && let Some(id) = id
            && let Some(record) = stored
            && let Ok(stored_offer) = record.offer.payload_as::<Offer>()
            && stored_offer.id == id
        {
            let entry = self.entry_from(record, stored_offer, now, &mut event::Restore::default());
            held = Some((entry.digest, entry.verdict.clone()));
            match entry.stage {
                Stage::Finished => self.insert_finished(id, entry),
                _ => {
                    self.incoming.insert(id, entry);
                }
            }
        }

        let mut unanswered = false;
        if let Some(id) = id
            && let Some((held_digest, verdict)) = held
        {
            if held_digest != digest {
                let rejection = Rejection::new(
                    RejectCode::Replayed,
                    format!("handoff {id} was used before by another offer"),
                )
                .hint("a new handoff needs a new handoff id");
                self.reply(id, peer, Verdict::Reject(rejection.to_reject(id)));
                return event::OfferReceived::Conflict { id };
            }
            match verdict {
                Some(verdict) => {
                    self.reply(id, peer, verdict.clone());
                    return event::OfferReceived::Duplicate { id, verdict };
                }
                None => unanswered = true,
            }
        }

        if !unanswered && self.open_offers() >= self.config.max_inbox {
            let held = self.open_offers();
            let rejection = Rejection::new(
                RejectCode::Internal,
                format!("busy: this node has {held} offers open"),
            )
            .hint("the sender tries again later");
            let reply_id = id.unwrap_or(HandoffId([0; 16]));
            self.reply(
                reply_id,
                peer,
                Verdict::Reject(rejection.to_reject(reply_id)),
            );
            return event::OfferReceived::Busy { id, held };
        }

        // The node's inbox says which ids it has seen; a restored entry without an answer
        // is this very offer, so its id does not count as seen.
        let node_seen = verify.seen;
        let seen = |other: &HandoffId| !(unanswered && Some(*other) == id) && node_seen(other);
        let ctx = VerifyContext {
            seen: &seen,
            ..*verify
        };
        let stored = Arc::new(envelope.peek().clone());
        match verify_offer(envelope, &ctx, now / 1000) {
            Ok(accepted) => {
                let verdict = Verdict::Accept(accepted.accept());
                let sender = accepted.sender();
                let event = event::OfferReceived::Accepted {
                    id: accepted.id(),
                    peer: peer.clone(),
                    run: accepted.offer().run.clone(),
                    stage: accepted.offer().stage.clone(),
                    attempt: accepted.offer().attempt,
                    org: sender.org().to_owned(),
                    node: sender.node().to_owned(),
                    definition: accepted.definition().clone(),
                };
                let offer = accepted.into_offer();
                let id = offer.id;
                self.push(Action::PersistInbox {
                    id,
                    peer: peer.clone(),
                    offer: stored,
                    received_at: now,
                    state: InboxState::Accepted,
                    verdict: verdict.clone(),
                });
                self.reply(id, peer.clone(), verdict.clone());
                self.push(Action::FetchArtifacts {
                    id,
                    peer: peer.clone(),
                    inputs: offer.inputs.clone(),
                });
                self.incoming.insert(
                    id,
                    Incoming {
                        peer,
                        digest,
                        expires_at: millis(offer.expires_at),
                        verdict: Some(verdict),
                        stage: Stage::Fetching {
                            attempt: offer.attempt,
                            offer: Arc::new(offer),
                            tries: 0,
                            retry_at: None,
                        },
                    },
                );
                event
            }
            Err(rejection) => {
                let Some(offer) = peeked else {
                    self.reply(
                        HandoffId([0; 16]),
                        peer,
                        Verdict::Reject(rejection.to_reject(HandoffId([0; 16]))),
                    );
                    return event::OfferReceived::Rejected {
                        id: None,
                        rejection,
                        persisted: false,
                    };
                };
                let id = offer.id;
                let verdict = Verdict::Reject(rejection.to_reject(id));
                let persisted = persists(&rejection.code);
                if persisted {
                    self.push(Action::PersistInbox {
                        id,
                        peer: peer.clone(),
                        offer: stored,
                        received_at: now,
                        state: InboxState::Rejected,
                        verdict: verdict.clone(),
                    });
                    self.insert_finished(
                        id,
                        Incoming {
                            peer: peer.clone(),
                            digest,
                            expires_at: millis(offer.expires_at),
                            verdict: Some(verdict.clone()),
                            stage: Stage::Finished,
                        },
                    );
                }
                self.reply(id, peer, verdict);
                event::OfferReceived::Rejected {
                    id: Some(id),
                    rejection,
                    persisted,
                }
            }
        }
    }

    /// [`command::ArtifactsReady`]: start the stage.
    pub(super) fn artifacts_ready(
        &mut self,
        command: command::ArtifactsReady,
    ) -> event::ArtifactsReady {
        let id = command.id;
        let Some(entry) = self.incoming.get_mut(&id) else {
            return event::ArtifactsReady::Unknown { id };
        };
        let Stage::Fetching { offer, attempt, .. } = &entry.stage else {
            return event::ArtifactsReady::Unknown { id };
        };
        let (offer, attempt) = (Arc::clone(offer), *attempt);
        entry.stage = Stage::Running {
            offer: Arc::clone(&offer),
            attempt,
        };
        self.push(Action::StartStage { id, attempt, offer });
        event::ArtifactsReady::Started { id, attempt }
    }

    /// [`command::ArtifactsFailed`]: fetch again after a backoff.
    pub(super) fn artifacts_failed(&mut self, command: command::ArtifactsFailed) -> event::Retry {
        let command::ArtifactsFailed { id, error: _, now } = command;
        let Some(Stage::Fetching { tries, .. }) = self.incoming.get(&id).map(|e| &e.stage) else {
            return event::Retry::Unknown { id };
        };
        let tries = tries.saturating_add(1);
        let retry_at = after(now, self.backoff(&id, tries));
        if let Some(Incoming {
            stage:
                Stage::Fetching {
                    tries: t,
                    retry_at: r,
                    ..
                },
            ..
        }) = self.incoming.get_mut(&id)
        {
            *t = tries;
            *r = Some(retry_at);
        }
        event::Retry::Retrying {
            id,
            tries,
            retry_at,
        }
    }

    /// [`command::StageFinished`]: send the receipt back until acknowledged.
    pub(super) fn stage_finished(
        &mut self,
        command: command::StageFinished,
    ) -> event::StageFinished {
        let command::StageFinished { id, receipt, now } = command;
        let Some(entry) = self.incoming.get(&id) else {
            return event::StageFinished::Unknown { id };
        };
        let (Stage::Fetching { offer, .. } | Stage::Running { offer, .. }) = &entry.stage else {
            return event::StageFinished::Unknown { id };
        };
        let decoded: otto_protocol::Receipt = match receipt.payload_as() {
            Ok(decoded) => decoded,
            Err(err) => {
                return event::StageFinished::Invalid {
                    id,
                    reason: format!("the envelope does not hold a receipt: {err}"),
                };
            }
        };
        if decoded.run != offer.run || decoded.stage != offer.stage {
            return event::StageFinished::Invalid {
                id,
                reason: format!(
                    "the receipt is for stage {:?} of run {:?}, the offer for stage {:?} of \
                     run {:?}",
                    decoded.stage, decoded.run, offer.stage, offer.run
                ),
            };
        }
        let peer = entry.peer.clone();
        let receipt = Arc::new(receipt);
        if let Some(entry) = self.incoming.get_mut(&id) {
            entry.stage = Stage::Delivering {
                receipt: Arc::clone(&receipt),
                tries: 0,
                phase: Phase::Awaiting {
                    deadline: after(now, self.config.receipt_timeout),
                },
            };
        }
        self.push(Action::SendReceipt { id, peer, receipt });
        event::StageFinished::Delivering {
            id,
            attempt: decoded.attempt,
            outcome: decoded.outcome,
        }
    }

    /// [`command::ReceiptAcked`]: the handoff is done here.
    pub(super) fn receipt_acked(&mut self, command: command::ReceiptAcked) -> event::ReceiptAcked {
        let id = command.id;
        match self.incoming.get_mut(&id) {
            Some(entry) if matches!(entry.stage, Stage::Delivering { .. }) => {
                entry.stage = Stage::Finished;
                self.note_finished(id);
                self.push(Action::InboxDone { id });
                event::ReceiptAcked::Done { id }
            }
            _ => event::ReceiptAcked::Unknown { id },
        }
    }

    /// [`command::ReceiptRefused`]: the sender takes the receipt from no one; it is not
    /// sent again, and the handoff is done here (the inbox says so durably).
    pub(super) fn receipt_refused(
        &mut self,
        command: command::ReceiptRefused,
    ) -> event::ReceiptRefused {
        let command::ReceiptRefused { id, reason, now: _ } = command;
        match self.incoming.get_mut(&id) {
            Some(entry) if matches!(entry.stage, Stage::Delivering { .. }) => {
                entry.stage = Stage::Finished;
                self.note_finished(id);
                self.push(Action::InboxDone { id });
                event::ReceiptRefused::GivenUp { id, reason }
            }
            _ => event::ReceiptRefused::Unknown { id },
        }
    }

    /// [`command::ReceiptFailed`]: send the receipt again after a backoff.
    pub(super) fn receipt_failed(&mut self, command: command::ReceiptFailed) -> event::Retry {
        let command::ReceiptFailed { id, error: _, now } = command;
        let Some(Stage::Delivering { tries, phase, .. }) = self.incoming.get(&id).map(|e| &e.stage)
        else {
            return event::Retry::Unknown { id };
        };
        if let Phase::Backoff { until } = phase {
            return event::Retry::Retrying {
                id,
                tries: *tries,
                retry_at: *until,
            };
        }
        let retry_at = self.fail_receipt(id, now);
        let tries = match self.incoming.get(&id).map(|e| &e.stage) {
            Some(Stage::Delivering { tries, .. }) => *tries,
            _ => 0,
        };
        event::Retry::Retrying {
            id,
            tries,
            retry_at,
        }
    }

    /// The receiving side of a tick: fetch again, deliver receipts again, forget what
    /// expired.
    pub(super) fn tick_incoming(&mut self, now: u64, tick: &mut event::Tick) {
        let due: Vec<HandoffId> = self
            .incoming
            .iter()
            .filter(|(_, entry)| entry.due().is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(entry) = self.incoming.get_mut(&id) else {
                continue;
            };
            let peer = entry.peer.clone();
            let action = match &mut entry.stage {
                Stage::Fetching {
                    offer, retry_at, ..
                } => {
                    *retry_at = None;
                    tick.refetched += 1;
                    Some(Action::FetchArtifacts {
                        id,
                        peer,
                        inputs: offer.inputs.clone(),
                    })
                }
                Stage::Delivering {
                    phase: Phase::Awaiting { .. },
                    ..
                } => None,
                Stage::Delivering { receipt, phase, .. } => {
                    *phase = Phase::Awaiting {
                        deadline: after(now, self.config.receipt_timeout),
                    };
                    tick.receipts_resent += 1;
                    Some(Action::SendReceipt {
                        id,
                        peer,
                        receipt: Arc::clone(receipt),
                    })
                }
                Stage::Unanswered | Stage::Running { .. } | Stage::Finished => continue,
            };
            match action {
                Some(action) => self.push(action),
                // The receipt got no acknowledgement in time: back off.
                None => {
                    self.fail_receipt(id, now);
                }
            }
        }
        tick.forgotten += self.forget_expired(now);
    }

    /// The receiving side of a restore: open entries resume (a stage that had begun starts
    /// again as the next attempt, a receipt goes back again), finished ones answer
    /// duplicates until they expire or make room for newer ones.
    pub(super) fn restore_incoming(
        &mut self,
        records: Vec<InboxRecord>,
        now: u64,
        restore: &mut event::Restore,
    ) {
        for record in records {
            self.adopt(record, now, restore);
        }
    }

    /// Takes over one durable inbox record, as a restore does.
    fn adopt(&mut self, record: InboxRecord, now: u64, restore: &mut event::Restore) {
        let offer: Offer = match record.offer.payload_as() {
            Ok(offer) => offer,
            Err(err) => {
                restore.skipped.push(format!(
                    "an inbox entry from {} does not hold an offer: {err}",
                    record.peer
                ));
                return;
            }
        };
        let id = offer.id;
        if self.incoming.contains_key(&id) {
            return;
        }
        let entry = self.entry_from(record, offer, now, restore);
        match entry.stage {
            Stage::Finished => {
                if !entry.forgettable(now, self.config.retain_after_expiry) {
                    restore.answered += 1;
                    self.insert_finished(id, entry);
                }
            }
            Stage::Unanswered => {
                if !entry.forgettable(now, self.config.retain_after_expiry) {
                    restore.unanswered += 1;
                    self.incoming.insert(id, entry);
                }
            }
            _ => {
                self.incoming.insert(id, entry);
            }
        }
    }

    /// The entry a durable inbox record (holding `offer`) stands for. An open one resumes:
    /// its receipt goes back again, or its stage starts again (queued here, counted in
    /// `restore`).
    fn entry_from(
        &mut self,
        record: InboxRecord,
        offer: Offer,
        now: u64,
        restore: &mut event::Restore,
    ) -> Incoming {
        let id = offer.id;
        let expires_at = millis(offer.expires_at);
        let accept = Verdict::Accept(Accept {
            id,
            stage: offer.stage.clone(),
            attempt: offer.attempt,
        });
        let rejected = matches!(record.verdict, Some(Verdict::Reject(_)));
        let (verdict, stage) = match (record.state, record.verdict) {
            (InboxState::Received | InboxState::Rejected, None) => (None, Stage::Unanswered),
            (InboxState::Received | InboxState::Accepted, verdict) if !rejected => {
                let verdict = verdict.unwrap_or(accept);
                let stage = match record.receipt {
                    Some(receipt) => {
                        let receipt = Arc::new(receipt);
                        self.push(Action::SendReceipt {
                            id,
                            peer: record.peer.clone(),
                            receipt: Arc::clone(&receipt),
                        });
                        restore.receipts += 1;
                        Stage::Delivering {
                            receipt,
                            tries: 0,
                            phase: Phase::Awaiting {
                                deadline: after(now, self.config.receipt_timeout),
                            },
                        }
                    }
                    None => {
                        let attempt = record
                            .last_attempt
                            .map_or(offer.attempt, |last| last.saturating_add(1))
                            .max(offer.attempt);
                        self.push(Action::FetchArtifacts {
                            id,
                            peer: record.peer.clone(),
                            inputs: offer.inputs.clone(),
                        });
                        restore.restarted += 1;
                        Stage::Fetching {
                            offer: Arc::new(offer),
                            attempt,
                            tries: 0,
                            retry_at: None,
                        }
                    }
                };
                (Some(verdict), stage)
            }
            (InboxState::Done, verdict) => (Some(verdict.unwrap_or(accept)), Stage::Finished),
            (_, verdict) => (verdict, Stage::Finished),
        };
        Incoming {
            peer: record.peer,
            digest: offer_digest(&record.offer),
            expires_at,
            verdict,
            stage,
        }
    }

    /// Queues the answer to the offer request being handled.
    fn reply(&mut self, id: HandoffId, peer: String, verdict: Verdict) {
        self.push(Action::Reply { id, peer, verdict });
    }

    /// Counts an unacknowledged receipt of handoff `id` and schedules the next send;
    /// returns its time.
    fn fail_receipt(&mut self, id: HandoffId, now: u64) -> u64 {
        let Some(Stage::Delivering { tries, .. }) = self.incoming.get(&id).map(|e| &e.stage) else {
            return now;
        };
        let tries = tries.saturating_add(1);
        let until = after(now, self.backoff(&id, tries));
        if let Some(Incoming {
            stage: Stage::Delivering {
                tries: t, phase, ..
            },
            ..
        }) = self.incoming.get_mut(&id)
        {
            *t = tries;
            *phase = Phase::Backoff { until };
        }
        until
    }

    /// Holds a finished entry, forgetting the oldest finished ones beyond
    /// [`Config::max_finished`](super::Config::max_finished).
    fn insert_finished(&mut self, id: HandoffId, entry: Incoming) {
        if self.config.max_finished == 0 {
            return;
        }
        self.incoming.insert(id, entry);
        self.note_finished(id);
    }

    /// Records that entry `id` just finished; forgets the oldest finished entries beyond
    /// the limit.
    fn note_finished(&mut self, id: HandoffId) {
        self.finished.push_back(id);
        while self.finished.len() > self.config.max_finished {
            if let Some(oldest) = self.finished.pop_front() {
                self.incoming.remove(&oldest);
            }
        }
    }

    /// Forgets finished and unanswered entries whose offer expired (plus the retention);
    /// returns how many.
    fn forget_expired(&mut self, now: u64) -> usize {
        let before = self.incoming.len();
        let retain = self.config.retain_after_expiry;
        self.incoming
            .retain(|_, entry| !entry.forgettable(now, retain));
        let incoming = &self.incoming;
        self.finished.retain(|id| incoming.contains_key(id));
        before - self.incoming.len()
    }
}

/// Whether a refusal with this code is persisted. A refusal is persisted only once the
/// sender is authenticated (the signature and certificate checks passed), so that a
/// forged copy cannot take a handoff id away from its real sender, and never for
/// `replayed` (the id belongs to another entry) or `internal` (the sender may retry).
/// `malformed` may come before or after authentication and is not persisted: the same
/// bytes get the same refusal again anyway.
fn persists(code: &RejectCode) -> bool {
    !matches!(
        code,
        RejectCode::Malformed
            | RejectCode::UnsupportedVersion
            | RejectCode::BadSignature
            | RejectCode::UnknownOrg
            | RejectCode::CertificateExpired
            | RejectCode::CertificateNotYetValid
            | RejectCode::NodeRevoked
            | RejectCode::Replayed
            | RejectCode::Internal
            | RejectCode::Unknown(_)
    )
}
