//! Runs and their plans.

use std::collections::BTreeSet;

use redb::ReadableTable;

use super::codec::{self, ACTIVE_RUNS, PLANS, RUNS, STAGES};
use super::{Error, NewRun, Run, RunFilter, RunId, RunState, Stage, Store};
use crate::blobs::Digest;

/// How the note of a run waiting for its concurrency group begins.
pub const QUEUED_NOTE: &str = "waiting for run";

impl Store {
    /// Records a new run in state [`RunState::Queued`] with its plan and its stages, in
    /// one transaction. Fails with [`Error::RunExists`] if the id is taken.
    pub fn create_run(&self, new: NewRun) -> Result<Run, Error> {
        let mut ids = BTreeSet::new();
        if !new.stages.iter().all(|s| ids.insert(s.id.as_str())) {
            return Err(Error::Invalid("two stages have the same id"));
        }
        let plan_digest = Digest::of(&new.plan);
        let run = Run {
            id: new.id,
            pipeline: new.pipeline,
            plan_digest,
            source: new.source,
            facts: new.facts,
            created_at: new.created_at,
            updated_at: new.created_at,
            finished_at: None,
            state: RunState::Queued,
            started_by: new.started_by,
            note: None,
        };
        self.write(|txn| {
            let mut runs = txn.open_table(RUNS)?;
            let key = run.id.as_bytes().as_slice();
            if runs.get(key)?.is_some() {
                return Err(Error::RunExists(run.id));
            }
            runs.insert(key, codec::encode(&run)?.as_slice())?;
            txn.open_table(ACTIVE_RUNS)?.insert(key, [].as_slice())?;
            let mut plans = txn.open_table(PLANS)?;
            if plans.get(plan_digest.as_bytes().as_slice())?.is_none() {
                plans.insert(plan_digest.as_bytes().as_slice(), new.plan.as_slice())?;
            }
            let mut stages = txn.open_table(STAGES)?;
            for (index, stage) in new.stages.iter().enumerate() {
                let record = Stage {
                    run: run.id,
                    id: stage.id.clone(),
                    index: u32::try_from(index).map_err(|_| Error::Invalid("too many stages"))?,
                    state: stage.state,
                    note: None,
                    attempts: Vec::new(),
                    updated_at: run.created_at,
                    retries: Vec::new(),
                };
                stages.insert(
                    codec::stage_key(&run.id, &stage.id).as_slice(),
                    codec::encode(&record)?.as_slice(),
                )?;
            }
            Ok(())
        })?;
        Ok(run)
    }

    /// The run with this id.
    pub fn run(&self, id: &RunId) -> Result<Option<Run>, Error> {
        self.read(|txn| codec::get(&txn.open_table(RUNS)?, "runs", id.as_bytes()))
    }

    /// The canonical plan bytes with this digest.
    pub fn plan(&self, digest: &Digest) -> Result<Option<Vec<u8>>, Error> {
        self.read(|txn| {
            let plans = txn.open_table(PLANS)?;
            let plan = plans.get(digest.as_bytes().as_slice())?;
            Ok(plan.map(|bytes| bytes.value().to_vec()))
        })
    }

    /// The runs that match `filter`, newest first.
    pub fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>, Error> {
        self.read(|txn| {
            let runs = txn.open_table(RUNS)?;
            let range = match &filter.before {
                Some(before) => runs.range(..before.as_bytes().as_slice())?,
                None => runs.range::<&[u8]>(..)?,
            };
            let mut out = Vec::new();
            for entry in range.rev() {
                if out.len() >= filter.limit {
                    break;
                }
                let (_, value) = entry?;
                let run: Run = codec::decode("runs", value.value())?;
                let state_ok = filter.state.is_none_or(|s| s == run.state);
                let pipeline_ok = filter.pipeline.as_ref().is_none_or(|p| *p == run.pipeline);
                if state_ok && pipeline_ok {
                    out.push(run);
                }
            }
            Ok(out)
        })
    }

    /// The runs not in a final state, oldest first.
    pub fn unfinished_runs(&self) -> Result<Vec<Run>, Error> {
        self.read(|txn| {
            let active = txn.open_table(ACTIVE_RUNS)?;
            let runs = txn.open_table(RUNS)?;
            let mut out = Vec::new();
            for entry in active.iter()? {
                let (key, _) = entry?;
                if let Some(run) = codec::get(&runs, "runs", key.value())? {
                    out.push(run);
                }
            }
            Ok(out)
        })
    }

    /// Moves a run to `state` at `now`. A run in a final state stays there: moving it
    /// elsewhere fails with [`Error::RunFinished`]; setting the state it has changes
    /// nothing.
    pub fn set_run_state(&self, id: &RunId, state: RunState, now: u64) -> Result<Run, Error> {
        self.write(|txn| {
            let mut runs = txn.open_table(RUNS)?;
            let key = id.as_bytes().as_slice();
            let mut run: Run = codec::get(&runs, "runs", key)?.ok_or(Error::UnknownRun(*id))?;
            if run.state == state {
                return Ok(run);
            }
            if run.state.is_final() {
                return Err(Error::RunFinished {
                    run: *id,
                    state: run.state,
                });
            }
            run.state = state;
            run.updated_at = now;
            if state.is_final() {
                run.finished_at = Some(now);
                txn.open_table(ACTIVE_RUNS)?.remove(key)?;
                // An ended run holds no concurrency group, nor do its stages.
                super::groups::leave_in(txn, id, None)?;
            }
            if state != RunState::Queued
                && run
                    .note
                    .as_deref()
                    .is_some_and(|n| n.starts_with(QUEUED_NOTE))
            {
                run.note = None;
            }
            runs.insert(key, codec::encode(&run)?.as_slice())?;
            Ok(run)
        })
    }

    /// Sets the note of a run (why it is where it is, for people), or clears it; the note
    /// stays when the run's state changes, except that a queued run's note (starting with
    /// [`QUEUED_NOTE`]) goes when it leaves the queue.
    pub fn set_run_note(&self, id: &RunId, note: Option<String>) -> Result<Run, Error> {
        self.write(|txn| {
            let mut runs = txn.open_table(RUNS)?;
            let key = id.as_bytes().as_slice();
            let mut run: Run = codec::get(&runs, "runs", key)?.ok_or(Error::UnknownRun(*id))?;
            if run.note != note {
                run.note = note;
                runs.insert(key, codec::encode(&run)?.as_slice())?;
            }
            Ok(run)
        })
    }
}
