//! What the mesh keeps: receipts, the outbox of offers to send and the inbox of offers
//! received.

use redb::{ReadableTable, WriteTransaction};

use super::codec::{self, HANDOFF_INTENTS, INBOX, INBOX_OPEN, OUTBOX, OUTBOX_DUE, RECEIPTS};
use super::{Error, HandoffId, InboxEntry, InboxState, OutboxEntry, ReceiptEntry, RunId, Store};

impl Store {
    /// Stores the signed receipt of an attempt. Storing the same bytes again changes nothing
    /// and returns `false`; different bytes for the same attempt fail with
    /// [`Error::ReceiptConflict`].
    pub fn put_receipt(
        &self,
        run: &RunId,
        stage: &str,
        attempt: u32,
        bytes: &[u8],
    ) -> Result<bool, Error> {
        self.write(|txn| {
            let mut table = txn.open_table(RECEIPTS)?;
            let key = codec::receipt_key(run, stage, attempt);
            if let Some(existing) = table.get(key.as_slice())? {
                if existing.value() == bytes {
                    return Ok(false);
                }
                return Err(Error::ReceiptConflict {
                    run: *run,
                    stage: stage.to_owned(),
                    attempt,
                });
            }
            table.insert(key.as_slice(), bytes)?;
            Ok(true)
        })
    }

    /// The receipt of one attempt.
    pub fn receipt(
        &self,
        run: &RunId,
        stage: &str,
        attempt: u32,
    ) -> Result<Option<Vec<u8>>, Error> {
        self.read(|txn| {
            let table = txn.open_table(RECEIPTS)?;
            let value = table.get(codec::receipt_key(run, stage, attempt).as_slice())?;
            Ok(value.map(|v| v.value().to_vec()))
        })
    }

    /// Every receipt of a run, by stage id and attempt.
    pub fn receipts(&self, run: &RunId) -> Result<Vec<ReceiptEntry>, Error> {
        self.read(|txn| {
            let table = txn.open_table(RECEIPTS)?;
            let prefix = run.as_bytes().as_slice();
            let mut out = Vec::new();
            for entry in table.range(prefix..)? {
                let (key, value) = entry?;
                let key = key.value();
                if !key.starts_with(prefix) {
                    break;
                }
                let corrupt = || Error::Corrupt {
                    table: "receipts",
                    reason: "bad key".into(),
                };
                let (stage, rest) = codec::stage_of_key(run, key).ok_or_else(corrupt)?;
                let attempt = rest.first_chunk::<4>().ok_or_else(corrupt)?;
                out.push(ReceiptEntry {
                    stage: stage.to_owned(),
                    attempt: u32::from_be_bytes(*attempt),
                    bytes: value.value().to_vec(),
                });
            }
            Ok(out)
        })
    }

    /// Puts an offer in the outbox and, in the same transaction, removes the handoff
    /// intent of its stage ([`Store::hand_off_stage`]): the offer carries it now. An entry
    /// with the same handoff id already there is kept as it is and the call returns
    /// `false`.
    pub fn outbox_put(&self, entry: &OutboxEntry) -> Result<bool, Error> {
        self.write(|txn| {
            let mut outbox = txn.open_table(OUTBOX)?;
            if outbox.get(entry.id.as_slice())?.is_some() {
                return Ok(false);
            }
            txn.open_table(HANDOFF_INTENTS)?
                .remove(codec::stage_key(&entry.run, &entry.stage).as_slice())?;
            outbox.insert(entry.id.as_slice(), codec::encode(entry)?.as_slice())?;
            txn.open_table(OUTBOX_DUE)?.insert(
                codec::due_key(entry.next_attempt_at, &entry.id).as_slice(),
                [].as_slice(),
            )?;
            Ok(true)
        })
    }

    /// An outbox entry.
    pub fn outbox_get(&self, id: &HandoffId) -> Result<Option<OutboxEntry>, Error> {
        self.read(|txn| codec::get(&txn.open_table(OUTBOX)?, "outbox", id))
    }

    /// Up to `limit` outbox entries due at `now` (next attempt at or before it), the
    /// longest due first.
    pub fn outbox_due(&self, now: u64, limit: usize) -> Result<Vec<OutboxEntry>, Error> {
        self.read(|txn| {
            let due = txn.open_table(OUTBOX_DUE)?;
            let outbox = txn.open_table(OUTBOX)?;
            let end = codec::due_key(now, &[0xff; 16]);
            let mut out = Vec::new();
            for entry in due.range(..=end.as_slice())? {
                if out.len() >= limit {
                    break;
                }
                let (key, _) = entry?;
                let id = key.value().get(8..).unwrap_or_default();
                if let Some(entry) = codec::get(&outbox, "outbox", id)? {
                    out.push(entry);
                }
            }
            Ok(out)
        })
    }

    /// When the next outbox entry is due, if there is one: the time to wake up at.
    pub fn outbox_next_due(&self) -> Result<Option<u64>, Error> {
        self.read(|txn| {
            let due = txn.open_table(OUTBOX_DUE)?;
            let first = due.first()?;
            Ok(first.and_then(|(key, _)| {
                key.value()
                    .first_chunk::<8>()
                    .map(|b| u64::from_be_bytes(*b))
            }))
        })
    }

    /// Records a failed send: one more try, the error, and the time to try again.
    pub fn outbox_retry(
        &self,
        id: &HandoffId,
        next_attempt_at: u64,
        error: &str,
    ) -> Result<OutboxEntry, Error> {
        self.write(|txn| {
            let mut outbox = txn.open_table(OUTBOX)?;
            let mut entry: OutboxEntry =
                codec::get(&outbox, "outbox", id)?.ok_or(Error::UnknownHandoff(*id))?;
            let mut due = txn.open_table(OUTBOX_DUE)?;
            due.remove(codec::due_key(entry.next_attempt_at, id).as_slice())?;
            entry.next_attempt_at = next_attempt_at;
            entry.tries = entry.tries.saturating_add(1);
            entry.last_error = Some(error.to_owned());
            due.insert(
                codec::due_key(next_attempt_at, id).as_slice(),
                [].as_slice(),
            )?;
            outbox.insert(id.as_slice(), codec::encode(&entry)?.as_slice())?;
            Ok(entry)
        })
    }

    /// Removes an answered offer from the outbox and returns it; `None` if it was not
    /// there (already acknowledged).
    pub fn outbox_ack(&self, id: &HandoffId) -> Result<Option<OutboxEntry>, Error> {
        self.write(|txn| {
            let mut outbox = txn.open_table(OUTBOX)?;
            let Some(entry) = codec::get::<OutboxEntry>(&outbox, "outbox", id)? else {
                return Ok(None);
            };
            outbox.remove(id.as_slice())?;
            txn.open_table(OUTBOX_DUE)?
                .remove(codec::due_key(entry.next_attempt_at, id).as_slice())?;
            Ok(Some(entry))
        })
    }

    /// Persists a received offer before it is answered. Idempotent by handoff id: if the
    /// id is known, nothing changes and the stored entry comes back with `false` (with its
    /// answer, if it has one, which is what a duplicate offer gets).
    pub fn inbox_put(
        &self,
        id: &HandoffId,
        offer: &[u8],
        now: u64,
    ) -> Result<(InboxEntry, bool), Error> {
        self.write(|txn| put_inbox(txn, id, offer, now))
    }

    /// [`Self::inbox_put`] for several offers in one transaction (one disk flush), for a
    /// node receiving many offers at once. Results are in the order given.
    pub fn inbox_put_many(
        &self,
        offers: &[(HandoffId, &[u8])],
        now: u64,
    ) -> Result<Vec<(InboxEntry, bool)>, Error> {
        self.write(|txn| {
            offers
                .iter()
                .map(|(id, offer)| put_inbox(txn, id, offer, now))
                .collect()
        })
    }

    /// Persists a received offer together with its signed answer and state
    /// ([`InboxState::Accepted`] or [`InboxState::Rejected`]) in one transaction: what the
    /// handoff machine's `PersistInbox` asks for. The first answer wins: an offer already
    /// answered keeps its stored entry, which comes back; an offer stored without an answer
    /// takes this one.
    pub fn inbox_put_answered(
        &self,
        id: &HandoffId,
        offer: &[u8],
        received_at: u64,
        answer: &[u8],
        state: InboxState,
        now: u64,
    ) -> Result<InboxEntry, Error> {
        if !matches!(state, InboxState::Accepted | InboxState::Rejected) {
            return Err(Error::Invalid("an answer accepts or rejects"));
        }
        self.write(|txn| {
            let (entry, _) = put_inbox(txn, id, offer, received_at)?;
            answer_entry(txn, entry, answer, state, now)
        })
    }

    /// Records the signed answer to a received offer and moves it to `state`
    /// ([`InboxState::Accepted`] or [`InboxState::Rejected`]). The first answer wins: if
    /// the offer was already answered, nothing changes and the stored entry comes back.
    pub fn inbox_answer(
        &self,
        id: &HandoffId,
        answer: &[u8],
        state: InboxState,
        now: u64,
    ) -> Result<InboxEntry, Error> {
        if !matches!(state, InboxState::Accepted | InboxState::Rejected) {
            return Err(Error::Invalid("an answer accepts or rejects"));
        }
        self.write(|txn| {
            let entry: InboxEntry = codec::get(&txn.open_table(INBOX)?, "inbox", id)?
                .ok_or(Error::UnknownHandoff(*id))?;
            answer_entry(txn, entry, answer, state, now)
        })
    }

    /// Marks an accepted offer done: its stage ran and its receipt went back.
    pub fn inbox_done(&self, id: &HandoffId) -> Result<InboxEntry, Error> {
        self.write(|txn| {
            let mut inbox = txn.open_table(INBOX)?;
            let mut entry: InboxEntry =
                codec::get(&inbox, "inbox", id)?.ok_or(Error::UnknownHandoff(*id))?;
            match entry.state {
                InboxState::Done => return Ok(entry),
                InboxState::Accepted => {}
                InboxState::Received | InboxState::Rejected => {
                    return Err(Error::Invalid("only an accepted offer can be done"));
                }
            }
            entry.state = InboxState::Done;
            inbox.insert(id.as_slice(), codec::encode(&entry)?.as_slice())?;
            txn.open_table(INBOX_OPEN)?.remove(id.as_slice())?;
            Ok(entry)
        })
    }

    /// A received offer.
    pub fn inbox_get(&self, id: &HandoffId) -> Result<Option<InboxEntry>, Error> {
        self.read(|txn| codec::get(&txn.open_table(INBOX)?, "inbox", id))
    }

    /// Received offers not finished (received but not answered, or accepted but not
    /// done), by handoff id: what a restarted node still has to answer or run.
    pub fn inbox_pending(&self) -> Result<Vec<InboxEntry>, Error> {
        self.read(|txn| {
            let open = txn.open_table(INBOX_OPEN)?;
            let inbox = txn.open_table(INBOX)?;
            let mut out = Vec::new();
            for entry in open.iter()? {
                let (key, _) = entry?;
                if let Some(entry) = codec::get(&inbox, "inbox", key.value())? {
                    out.push(entry);
                }
            }
            Ok(out)
        })
    }

    /// The `limit` most recently received offers, answered or not, newest first (for
    /// people: the UI shows the ones rejected for want of an approval).
    pub fn inbox_recent(&self, limit: usize) -> Result<Vec<InboxEntry>, Error> {
        self.read(|txn| {
            let inbox = txn.open_table(INBOX)?;
            let mut out: Vec<InboxEntry> = Vec::new();
            for entry in inbox.iter()? {
                let (_, value) = entry?;
                out.push(codec::decode("inbox", value.value())?);
            }
            out.sort_by_key(|e| std::cmp::Reverse(e.received_at));
            out.truncate(limit);
            Ok(out)
        })
    }
}

/// Gives an unanswered inbox entry its answer and state; an answered one stays as it is.
fn answer_entry(
    txn: &WriteTransaction,
    mut entry: InboxEntry,
    answer: &[u8],
    state: InboxState,
    now: u64,
) -> Result<InboxEntry, Error> {
    if entry.answer.is_some() {
        return Ok(entry);
    }
    entry.answer = Some(answer.to_vec());
    entry.answered_at = Some(now);
    entry.state = state;
    txn.open_table(INBOX)?
        .insert(entry.id.as_slice(), codec::encode(&entry)?.as_slice())?;
    if state == InboxState::Rejected {
        txn.open_table(INBOX_OPEN)?.remove(entry.id.as_slice())?;
    }
    Ok(entry)
}

fn put_inbox(
    txn: &WriteTransaction,
    id: &HandoffId,
    offer: &[u8],
    now: u64,
) -> Result<(InboxEntry, bool), Error> {
    let mut inbox = txn.open_table(INBOX)?;
    if let Some(existing) = codec::get(&inbox, "inbox", id)? {
        return Ok((existing, false));
    }
    let entry = InboxEntry {
        id: *id,
        offer: offer.to_vec(),
        received_at: now,
        state: InboxState::Received,
        answer: None,
        answered_at: None,
    };
    inbox.insert(id.as_slice(), codec::encode(&entry)?.as_slice())?;
    txn.open_table(INBOX_OPEN)?
        .insert(id.as_slice(), [].as_slice())?;
    Ok((entry, true))
}

/// Stores `bytes` as the receipt of an attempt inside `txn` unless one is stored already;
/// returns the receipt the store holds afterwards.
pub(super) fn put_receipt_in(
    txn: &WriteTransaction,
    run: &RunId,
    stage: &str,
    attempt: u32,
    bytes: &[u8],
) -> Result<Vec<u8>, Error> {
    let mut table = txn.open_table(RECEIPTS)?;
    let key = codec::receipt_key(run, stage, attempt);
    if let Some(existing) = table.get(key.as_slice())? {
        return Ok(existing.value().to_vec());
    }
    table.insert(key.as_slice(), bytes)?;
    Ok(bytes.to_vec())
}
