//! The sending side: offers out, answers and receipts in, retries and expiry.

use std::sync::Arc;

use otto_protocol::{HandoffId, Offer, RejectCode};

use super::command::{self, OutboxRecord};
use super::event::{self, Expired};
use super::{Action, Awaiting, Machine, Outgoing, Phase, Verdict, after, millis};

impl Machine {
    /// [`command::HandOff`]: persist the offer, send it, and wait for the answer.
    pub(super) fn hand_off(&mut self, command: command::HandOff) -> event::HandOff {
        let command::HandOff {
            peer,
            envelope,
            now,
        } = command;
        let offer: Offer = match envelope.payload_as() {
            Ok(offer) => offer,
            Err(err) => {
                return event::HandOff::Invalid {
                    reason: format!("the envelope does not hold an offer: {err}"),
                };
            }
        };
        let id = offer.id;
        if self.outgoing.contains_key(&id) || self.awaiting.contains_key(&id) {
            return event::HandOff::AlreadyKnown { id };
        }
        let expires_at = millis(offer.expires_at);
        if now >= expires_at {
            return event::HandOff::Expired { id };
        }
        if self.outgoing.len() >= self.config.max_pending {
            return event::HandOff::Full {
                id,
                pending: self.outgoing.len(),
            };
        }
        let envelope = Arc::new(envelope);
        let deadline = after(now, self.config.answer_timeout);
        self.push(Action::PersistOutbox {
            id,
            run: offer.run.clone(),
            stage: offer.stage.clone(),
            peer: peer.clone(),
            envelope: Arc::clone(&envelope),
            created_at: now,
            next_attempt_at: deadline,
        });
        self.push(Action::Send {
            id,
            peer: peer.clone(),
            envelope: Arc::clone(&envelope),
        });
        self.outgoing.insert(
            id,
            Outgoing {
                run: offer.run,
                stage: offer.stage,
                attempt: offer.attempt,
                peer,
                envelope,
                expires_at,
                tries: 0,
                phase: Phase::Awaiting { deadline },
            },
        );
        event::HandOff::Queued { id, expires_at }
    }

    /// [`command::Answer`]: an accept or a final reject ends the offer; a busy reject
    /// backs off.
    pub(super) fn answer(&mut self, command: command::Answer) -> event::Answer {
        let command::Answer { id, envelope, now } = command;
        let Some(out) = self.outgoing.get(&id) else {
            return event::Answer::Unknown { id };
        };
        let verdict = match Verdict::from_envelope(envelope.get()) {
            Ok(verdict) => verdict,
            Err(err) => {
                return event::Answer::Invalid {
                    id,
                    reason: format!("the answer does not decode: {err}"),
                };
            }
        };
        if verdict.id() != id {
            return event::Answer::Invalid {
                id,
                reason: format!("the answer is for handoff {}", verdict.id()),
            };
        }
        match verdict {
            Verdict::Accept(accept) => {
                if accept.stage != out.stage || accept.attempt != out.attempt {
                    return event::Answer::Invalid {
                        id,
                        reason: format!(
                            "the accept is for stage {:?} attempt {}, the offer for stage {:?} \
                             attempt {}",
                            accept.stage, accept.attempt, out.stage, out.attempt
                        ),
                    };
                }
                let Some(out) = self.outgoing.remove(&id) else {
                    return event::Answer::Unknown { id };
                };
                self.push(Action::AckOutbox { id });
                self.remember_awaiting(id, given(&out));
                event::Answer::Accepted {
                    id,
                    run: out.run,
                    stage: out.stage,
                    peer: out.peer,
                }
            }
            Verdict::Reject(reject) if reject.code == RejectCode::Internal => {
                let retry_at = self.fail_send(id, reject.message.clone(), now);
                event::Answer::Busy {
                    id,
                    message: reject.message,
                    retry_at,
                }
            }
            Verdict::Reject(reject) => {
                let Some(out) = self.outgoing.remove(&id) else {
                    return event::Answer::Unknown { id };
                };
                self.push(Action::AckOutbox { id });
                event::Answer::Rejected {
                    id,
                    run: out.run,
                    stage: out.stage,
                    peer: out.peer,
                    code: reject.code,
                    message: reject.message,
                    hint: reject.hint,
                }
            }
        }
    }

    /// [`command::SendFailed`]: back off and send again, unless already backing off.
    pub(super) fn send_failed(&mut self, command: command::SendFailed) -> event::Retry {
        let command::SendFailed { id, error, now } = command;
        let Some(out) = self.outgoing.get(&id) else {
            return event::Retry::Unknown { id };
        };
        // A failure reported for an older send while a backoff runs changes nothing.
        if let Phase::Backoff { until } = out.phase {
            return event::Retry::Retrying {
                id,
                tries: out.tries,
                retry_at: until,
            };
        }
        let retry_at = self.fail_send(id, error, now);
        let tries = self.outgoing.get(&id).map_or(0, |out| out.tries);
        event::Retry::Retrying {
            id,
            tries,
            retry_at,
        }
    }

    /// [`command::Receipt`]: store and acknowledge it, and end the handoff it answers;
    /// refuse it if that handoff went to another peer, or if the stage was given to no
    /// peer (acknowledging again, without storing, a copy the node already holds).
    pub(super) fn receipt(&mut self, command: command::Receipt) -> event::Receipt {
        let command::Receipt {
            peer,
            envelope,
            given: stored_given,
            held,
            now: _,
        } = command;
        let receipt: otto_protocol::Receipt = match envelope.decode::<otto_protocol::Receipt>() {
            Ok(receipt) => receipt.into_inner(),
            Err(err) => {
                return event::Receipt::Invalid {
                    reason: format!("the envelope does not hold a receipt: {err}"),
                };
            }
        };
        // Only the peer a stage was given to may end it: a receipt of the same run, stage
        // and attempt from anyone else is refused before anything is stored, also after
        // the handoff ended (while the machine remembers it).
        let given_to = self
            .awaiting
            .values()
            .find(|a| answers(&receipt, &a.run, &a.stage, a.attempt))
            .map(|a| &a.peer)
            .or_else(|| {
                self.outgoing
                    .values()
                    .find(|out| answers(&receipt, &out.run, &out.stage, out.attempt))
                    .map(|out| &out.peer)
            })
            .or(stored_given.as_ref());
        match given_to {
            Some(given_to) if *given_to != peer => {
                let given_to = given_to.clone();
                self.refuse_receipt(
                    &peer,
                    &receipt,
                    "this node gave the stage to another node; it takes its receipt from that \
                     node only",
                );
                return event::Receipt::Refused {
                    given_to,
                    peer,
                    run: receipt.run,
                    stage: receipt.stage,
                    attempt: receipt.attempt,
                };
            }
            Some(_) => {}
            // A handoff that ended before a restart (or was forgotten): its peer sends
            // again a receipt the node took, because the acknowledgement was lost.
            None if held => {
                self.push(Action::AckReceipt {
                    peer,
                    run: receipt.run.clone(),
                    stage: receipt.stage.clone(),
                    attempt: receipt.attempt,
                });
                return event::Receipt::Again {
                    run: receipt.run,
                    stage: receipt.stage,
                    attempt: receipt.attempt,
                };
            }
            // Nobody was given the stage: whoever sends it, it is no one's to end. The
            // answer says so, so that the sender stops: sending it again changes nothing
            // (a late receipt of an offer that expired here before the node restarted).
            None => {
                self.refuse_receipt(
                    &peer,
                    &receipt,
                    "this node holds no handoff of the stage to the sending node (its offer \
                     expired, or none was made); the receipt is not taken",
                );
                return event::Receipt::Stray {
                    peer,
                    run: receipt.run,
                    stage: receipt.stage,
                    attempt: receipt.attempt,
                };
            }
        }
        let mut unanswered = None;
        let handoff = self.take_awaiting(&receipt).or_else(|| {
            // The stage ran, so the offer was accepted even if the accept was lost.
            let id = self
                .outgoing
                .iter()
                .find(|(_, out)| answers(&receipt, &out.run, &out.stage, out.attempt))
                .map(|(id, _)| *id)?;
            let out = self.outgoing.remove(&id)?;
            unanswered = Some(id);
            // Remembered as ended, to know whom the stage was given to.
            self.remember_awaiting(id, given(&out));
            self.take_awaiting(&receipt).or(Some(id))
        });
        self.push(Action::PersistReceipt {
            run: receipt.run.clone(),
            stage: receipt.stage.clone(),
            attempt: receipt.attempt,
            receipt: Arc::new(envelope.into_inner()),
        });
        // The outbox entry of an offer whose accept never came is the only durable record
        // of whom the stage was given to (no `given` entry was written): it goes only once
        // the receipt is stored, or a crash in between leaves a receipt that is neither
        // held nor anyone's, refused as stray on every resend.
        if let Some(id) = unanswered {
            self.push(Action::AckOutbox { id });
        }
        self.push(Action::AckReceipt {
            peer,
            run: receipt.run.clone(),
            stage: receipt.stage.clone(),
            attempt: receipt.attempt,
        });
        event::Receipt::StageFinished {
            handoff,
            run: receipt.run,
            stage: receipt.stage,
            attempt: receipt.attempt,
            outcome: receipt.outcome,
        }
    }

    /// Queues the refusal of `receipt`, sent by `peer`.
    fn refuse_receipt(&mut self, peer: &str, receipt: &otto_protocol::Receipt, reason: &str) {
        self.push(Action::RefuseReceipt {
            peer: peer.to_owned(),
            run: receipt.run.clone(),
            stage: receipt.stage.clone(),
            attempt: receipt.attempt,
            reason: reason.to_owned(),
        });
    }

    /// The sending side of a tick: expire, time out and resend.
    pub(super) fn tick_outgoing(&mut self, now: u64, tick: &mut event::Tick) {
        let ids: Vec<HandoffId> = self.outgoing.keys().copied().collect();
        for id in ids {
            let Some(out) = self.outgoing.get_mut(&id) else {
                continue;
            };
            if now >= out.expires_at {
                if let Some(out) = self.outgoing.remove(&id) {
                    self.push(Action::AckOutbox { id });
                    // The accept may have been lost while the owner runs the stage: its
                    // receipt, from that peer only, is still taken.
                    let late = Awaiting {
                        ended: true,
                        ..given(&out)
                    };
                    self.remember_awaiting(id, late);
                    tick.expired.push(expired(id, out));
                }
                continue;
            }
            match out.phase {
                Phase::Awaiting { deadline } if deadline <= now => {
                    let waited = self.config.answer_timeout;
                    self.fail_send(id, format!("no answer within {waited} ms"), now);
                    tick.timed_out += 1;
                }
                Phase::Backoff { until } if until <= now => {
                    out.phase = Phase::Awaiting {
                        deadline: after(now, self.config.answer_timeout),
                    };
                    let action = Action::Send {
                        id,
                        peer: out.peer.clone(),
                        envelope: Arc::clone(&out.envelope),
                    };
                    self.push(action);
                    tick.resent += 1;
                }
                Phase::Awaiting { .. } | Phase::Backoff { .. } => {}
            }
        }
    }

    /// The sending side of a restore: every offer in the outbox goes again, unless it
    /// expired.
    pub(super) fn restore_outgoing(
        &mut self,
        records: Vec<OutboxRecord>,
        now: u64,
        restore: &mut event::Restore,
    ) {
        for record in records {
            let offer: Offer = match record.envelope.payload_as() {
                Ok(offer) => offer,
                Err(err) => {
                    restore.skipped.push(format!(
                        "an outbox entry for {} does not hold an offer: {err}",
                        record.peer
                    ));
                    continue;
                }
            };
            let id = offer.id;
            if self.outgoing.contains_key(&id) {
                continue;
            }
            let out = Outgoing {
                run: offer.run,
                stage: offer.stage,
                attempt: offer.attempt,
                peer: record.peer,
                envelope: Arc::new(record.envelope),
                expires_at: millis(offer.expires_at),
                tries: record.tries,
                phase: Phase::Awaiting {
                    deadline: after(now, self.config.answer_timeout),
                },
            };
            if now >= out.expires_at {
                self.push(Action::AckOutbox { id });
                restore.expired.push(expired(id, out));
                continue;
            }
            self.push(Action::Send {
                id,
                peer: out.peer.clone(),
                envelope: Arc::clone(&out.envelope),
            });
            self.outgoing.insert(id, out);
            restore.offers += 1;
        }
    }

    /// The accepted side of a restore: offers whose receipt is awaited, from the peer each
    /// was given to.
    pub(super) fn restore_given(
        &mut self,
        records: Vec<OutboxRecord>,
        restore: &mut event::Restore,
    ) {
        for record in records {
            let offer: Offer = match record.envelope.payload_as() {
                Ok(offer) => offer,
                Err(err) => {
                    restore.skipped.push(format!(
                        "an accepted offer to {} does not hold an offer: {err}",
                        record.peer
                    ));
                    continue;
                }
            };
            if self.awaiting.contains_key(&offer.id) {
                continue;
            }
            self.remember_awaiting(
                offer.id,
                Awaiting {
                    run: offer.run,
                    stage: offer.stage,
                    attempt: offer.attempt,
                    peer: record.peer,
                    ended: false,
                },
            );
        }
    }

    /// Counts a failed send of offer `id` and schedules the next; returns its time.
    fn fail_send(&mut self, id: HandoffId, error: String, now: u64) -> u64 {
        let Some(tries) = self
            .outgoing
            .get(&id)
            .map(|out| out.tries.saturating_add(1))
        else {
            return now;
        };
        let until = after(now, self.backoff(&id, tries));
        if let Some(out) = self.outgoing.get_mut(&id) {
            out.tries = tries;
            out.phase = Phase::Backoff { until };
        }
        self.push(Action::RetryOutbox {
            id,
            next_attempt_at: until,
            tries,
            error,
        });
        until
    }

    /// Remembers an accepted offer until its receipt comes, forgetting the oldest beyond
    /// [`Config::max_awaiting`](super::Config::max_awaiting).
    fn remember_awaiting(&mut self, id: HandoffId, awaiting: Awaiting) {
        if self.config.max_awaiting == 0 {
            return;
        }
        while self.awaiting.len() >= self.config.max_awaiting {
            let Some(oldest) = self.awaiting_order.pop_front() else {
                break;
            };
            self.awaiting.remove(&oldest);
        }
        self.awaiting.insert(id, awaiting);
        self.awaiting_order.push_back(id);
    }

    /// Ends and returns the accepted offer that `receipt` answers, if one is known.
    fn take_awaiting(&mut self, receipt: &otto_protocol::Receipt) -> Option<HandoffId> {
        let (id, awaiting) = self
            .awaiting
            .iter_mut()
            .find(|(_, a)| !a.ended && answers(receipt, &a.run, &a.stage, a.attempt))?;
        // Kept, ended, to know whom the stage was given to when a copy comes.
        awaiting.ended = true;
        Some(*id)
    }
}

/// Whether `receipt` reports on the offer of `stage` of `run` as `attempt`: an owner that
/// restarted a stage reports a later attempt than the one offered, never an earlier one.
fn answers(receipt: &otto_protocol::Receipt, run: &str, stage: &str, attempt: u32) -> bool {
    receipt.run == run && receipt.stage == stage && receipt.attempt >= attempt
}

/// The accepted offer `out`, awaiting its receipt from the peer it was given to.
fn given(out: &Outgoing) -> Awaiting {
    Awaiting {
        run: out.run.clone(),
        stage: out.stage.clone(),
        attempt: out.attempt,
        peer: out.peer.clone(),
        ended: false,
    }
}

fn expired(id: HandoffId, out: Outgoing) -> Expired {
    Expired {
        id,
        run: out.run,
        stage: out.stage,
        peer: out.peer,
    }
}
