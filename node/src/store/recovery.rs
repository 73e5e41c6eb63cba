//! What a node does with its store when it starts again after a crash.

use redb::ReadableTable;

use super::codec::{self, ACTIVE_RUNS, GATES, OPEN_GATES, RUNS, STAGES};
use super::stages::interrupt_running;
use super::{AttemptRef, AttemptState, Error, Recovery, Run, RunId, Stage, StageState, Store};

impl Store {
    /// Prepares the store for a node that starts again, at `now`, in one transaction:
    /// every attempt still marked running belongs to an agent of the previous node process
    /// and is marked [`AttemptState::Interrupted`]; the result lists those attempts, the
    /// stages to retry as their next attempt, the gates to resume and the unfinished runs.
    ///
    /// Calling it again adds nothing: no attempt is interrupted twice and no attempt is
    /// created here (the caller begins the retry with [`Store::begin_attempt`], which
    /// numbers it), so a node that crashes during recovery recovers the same way.
    pub fn recover(&self, now: u64) -> Result<Recovery, Error> {
        self.write(|txn| {
            let mut ids = Vec::new();
            for entry in txn.open_table(ACTIVE_RUNS)?.iter()? {
                let (key, _) = entry?;
                if let Some(run) = codec::run_of_key(key.value()) {
                    ids.push(run);
                }
            }
            let mut recovery = Recovery::default();
            for id in &ids {
                for (stage, n) in interrupt_running(txn, id, now)? {
                    let agent_pid = stage.attempts.last().and_then(|a| a.agent_pid);
                    recovery.interrupted.push(AttemptRef {
                        run: *id,
                        stage: stage.id,
                        attempt: n,
                        agent_pid,
                    });
                }
            }
            let runs = txn.open_table(RUNS)?;
            let stages = txn.open_table(STAGES)?;
            for id in &ids {
                if let Some(run) = codec::get::<Run>(&runs, "runs", id.as_bytes())? {
                    recovery.runs.push(run);
                }
                recovery.retry.extend(to_retry(&stages, id)?);
            }
            let open = txn.open_table(OPEN_GATES)?;
            let gates = txn.open_table(GATES)?;
            for entry in open.iter()? {
                let (key, _) = entry?;
                if let Some(gate) = codec::get(&gates, "gates", key.value())? {
                    recovery.gates.push(gate);
                }
            }
            Ok(recovery)
        })
    }
}

/// The stages of a run that are running with no running attempt.
fn to_retry(
    stages: &impl ReadableTable<&'static [u8], &'static [u8]>,
    run: &RunId,
) -> Result<Vec<AttemptRef>, Error> {
    let prefix = run.as_bytes().as_slice();
    let mut out = Vec::new();
    for entry in stages.range(prefix..)? {
        let (key, value) = entry?;
        if !key.value().starts_with(prefix) {
            break;
        }
        let stage: Stage = codec::decode("stages", value.value())?;
        let last = stage.attempts.last();
        if stage.state == StageState::Running
            && last.is_none_or(|a| a.state != AttemptState::Running)
        {
            out.push(AttemptRef {
                run: *run,
                stage: stage.id.clone(),
                attempt: last.map_or(0, |a| a.n),
                agent_pid: last.and_then(|a| a.agent_pid),
            });
        }
    }
    Ok(out)
}
