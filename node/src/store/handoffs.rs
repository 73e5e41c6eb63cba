//! The handoffs this node owes. A stage this node moves on to another node's owner is
//! marked handed off and its *intent* (run, stage, owner) recorded in one transaction
//! ([`Store::hand_off_stage`]). The intent stays until the offer that carries it is in the
//! outbox ([`Store::outbox_put`] removes it in the same transaction) or the stage ended
//! otherwise, so a crash anywhere between the two loses nothing: the exchange reads the
//! intents again when it starts ([`Store::handoff_intents`]).
//!
//! An offer its owner accepted leaves the outbox, but the store keeps it as *given*
//! ([`Store::outbox_given`]) until its receipt comes: after a restart only the peer it was
//! given to may still end the stage.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::codec::{self, GIVEN, HANDOFF_INTENTS, OUTBOX};
use super::stages::set_state_in;
use super::{Error, HandoffId, OutboxEntry, RunId, Stage, StageState, Store};

/// A stage this node is to offer to the node that answers to `owner`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffIntent {
    /// The run.
    pub run: RunId,
    /// The stage.
    pub stage: String,
    /// The owner's name in the plan.
    pub owner: String,
    /// When the stage was handed off.
    pub created_at: u64,
}

impl Store {
    /// Marks a stage [`StageState::HandedOff`] at `now` with `note`, and, when this node
    /// moves it on (`owner` is given), records the intent to offer it to `owner`, in one
    /// transaction. A stage in a final state fails with [`Error::StageFinished`].
    pub fn hand_off_stage(
        &self,
        run: &RunId,
        stage: &str,
        note: Option<String>,
        owner: Option<&str>,
        now: u64,
    ) -> Result<Stage, Error> {
        self.write(|txn| {
            let record = set_state_in(txn, run, stage, StageState::HandedOff, note, now)?;
            if let Some(owner) = owner {
                let intent = HandoffIntent {
                    run: *run,
                    stage: stage.to_owned(),
                    owner: owner.to_owned(),
                    created_at: now,
                };
                txn.open_table(HANDOFF_INTENTS)?.insert(
                    codec::stage_key(run, stage).as_slice(),
                    codec::encode(&intent)?.as_slice(),
                )?;
            }
            Ok(record)
        })
    }

    /// Every handoff intent not yet carried by an offer in the outbox, oldest run first.
    pub fn handoff_intents(&self) -> Result<Vec<HandoffIntent>, Error> {
        self.read(|txn| {
            let table = txn.open_table(HANDOFF_INTENTS)?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (_, value) = entry?;
                out.push(codec::decode("handoff_intents", value.value())?);
            }
            Ok(out)
        })
    }

    /// The handoff intent of a stage, if it has one.
    pub fn handoff_intent(&self, run: &RunId, stage: &str) -> Result<Option<HandoffIntent>, Error> {
        self.read(|txn| {
            codec::get(
                &txn.open_table(HANDOFF_INTENTS)?,
                "handoff_intents",
                &codec::stage_key(run, stage),
            )
        })
    }

    /// Forgets the handoff intent of a stage (it ended without an offer); `false` if it
    /// had none.
    pub fn drop_handoff_intent(&self, run: &RunId, stage: &str) -> Result<bool, Error> {
        self.write(|txn| {
            let mut table = txn.open_table(HANDOFF_INTENTS)?;
            let removed = table.remove(codec::stage_key(run, stage).as_slice())?;
            Ok(removed.is_some())
        })
    }

    /// Keeps the offer `id` of the outbox as given to its peer (the owner accepted it),
    /// until [`Self::drop_given`]; `false` when the outbox does not hold it.
    pub fn outbox_given(&self, id: &HandoffId) -> Result<bool, Error> {
        self.write(|txn| {
            let Some(entry) = codec::get::<OutboxEntry>(&txn.open_table(OUTBOX)?, "outbox", id)?
            else {
                return Ok(false);
            };
            txn.open_table(GIVEN)?.insert(
                codec::stage_key(&entry.run, &entry.stage).as_slice(),
                codec::encode(&entry)?.as_slice(),
            )?;
            Ok(true)
        })
    }

    /// The offers kept as given whose receipt has not come, as they were in the outbox.
    pub fn given(&self) -> Result<Vec<OutboxEntry>, Error> {
        self.read(|txn| {
            let table = txn.open_table(GIVEN)?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (_, value) = entry?;
                out.push(codec::decode("given", value.value())?);
            }
            Ok(out)
        })
    }

    /// The given offer of `stage` of `run`: accepted by its owner, its receipt not come.
    pub fn given_of(&self, run: &RunId, stage: &str) -> Result<Option<OutboxEntry>, Error> {
        self.read(|txn| {
            let table = txn.open_table(GIVEN)?;
            match table.get(codec::stage_key(run, stage).as_slice())? {
                Some(value) => Ok(Some(codec::decode("given", value.value())?)),
                None => Ok(None),
            }
        })
    }

    /// Forgets the given offer of a stage (its receipt came, or the stage ended); `false`
    /// if it had none.
    pub fn drop_given(&self, run: &RunId, stage: &str) -> Result<bool, Error> {
        self.write(|txn| {
            let mut table = txn.open_table(GIVEN)?;
            let removed = table.remove(codec::stage_key(run, stage).as_slice())?;
            Ok(removed.is_some())
        })
    }
}
