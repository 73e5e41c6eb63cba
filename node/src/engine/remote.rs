//! Recording stages that other nodes run: their log lines and progress as their status
//! events tell, and how they ended as their verified receipts tell.
//!
//! A stage run elsewhere stays [`StageState::HandedOff`] here while it is in progress (its
//! note says where it stands), so a restart of this node never mistakes it for a local
//! attempt to recover. Its end is recorded as a finished attempt with the receipt's
//! number and times, and its artifacts as output lines, so later stages find them.

use std::sync::Arc;

use super::outputs::Record;
use super::util::{blocking, now_ms};
use super::{EngineError, EngineEvent, RemoteStage, Shared};
use crate::store::{Attempt, AttemptState, NewLine, Placed, StageState, Stream};

/// Stores what `update` says and publishes it; returns the outputs a receipt recorded, and
/// what became of numbered log lines.
pub(crate) async fn record(
    sh: &Arc<Shared>,
    update: &RemoteStage,
) -> Result<(Vec<Record>, Option<Placed>), EngineError> {
    let (run, stage) = (update.run, update.stage.clone());
    let now = now_ms();
    let as_lines = |texts: &mut dyn Iterator<Item = (Stream, String)>| -> Vec<NewLine> {
        texts
            .map(|(stream, text)| NewLine {
                time: now,
                stream,
                step: None,
                text,
            })
            .collect()
    };
    let log = as_lines(&mut update.log.iter().map(|t| (Stream::Stdout, t.clone())));
    let records: Vec<Record> = update
        .ended
        .iter()
        .flat_map(|end| end.artifacts.iter())
        .map(|(name, digest, size)| Record::Artifact(name.clone(), *digest, *size))
        .collect();
    let mut own = as_lines(&mut records.iter().map(|r| (Stream::System, r.line())));
    let numbered = update.numbered;
    let hold = update.hold_jumps;
    let mut placed = None;
    if numbered.is_some() || !log.is_empty() || !own.is_empty() {
        let (store, logs) = (sh.store.clone(), sh.logs.clone());
        let (id, n) = (stage.clone(), update.attempt);
        // Only a stage of the run has a log: a peer's word makes no file of any other name.
        let (first, last, outcome) = blocking(move || {
            store
                .stage(&run, &id)?
                .ok_or_else(|| crate::store::Error::UnknownStage {
                    run,
                    stage: id.clone(),
                })?;
            let mut outcome = None;
            let mut first = None;
            let mut last = 0;
            match numbered {
                Some((runner, from)) => {
                    let result = logs.append_numbered(&run, &id, n, runner, from, &log, hold)?;
                    if let Placed::Written { appended, .. } = result {
                        first = Some(appended.first);
                        last = appended.last;
                    }
                    outcome = Some(result);
                }
                None => {
                    let mut lines = log;
                    lines.append(&mut own);
                    own = lines;
                }
            }
            if !own.is_empty() {
                let appended = logs.append(&run, &id, n, &own)?;
                first = first.or(Some(appended.first));
                last = appended.last;
            }
            Ok::<_, crate::store::Error>((first.unwrap_or(last + 1), last, outcome))
        })
        .await?;
        if first <= last {
            sh.publish(EngineEvent::Log {
                run,
                stage: stage.clone(),
                attempt: update.attempt,
                first,
                last,
            });
        }
        placed = outcome;
    }
    let store = sh.store.clone();
    let (id, note) = (stage.clone(), update.note.clone());
    let (state, attempt) = match &update.ended {
        Some(end) => {
            let attempt_state = match end.state {
                StageState::Succeeded => AttemptState::Succeeded,
                StageState::Cancelled => AttemptState::Cancelled,
                _ => AttemptState::Failed,
            };
            let attempt = Attempt {
                n: update.attempt,
                state: attempt_state,
                started_at: end.started_at,
                finished_at: Some(end.finished_at),
                exit_code: None,
                failed_step: None,
                error: None,
                cache_hits: Vec::new(),
                cache_misses: Vec::new(),
                log: None,
                agent_pid: None,
                node: end.node.clone(),
            };
            let state = end.state;
            let n = update.attempt;
            let result = blocking(move || {
                // The same end of the same attempt again (a receipt delivered twice, or
                // the receipt after a relay or a failed status event): recorded, with
                // what it adds, but no news for those who follow the stage's state.
                let again = store.stage(&run, &id)?.is_some_and(|s| {
                    s.state == state
                        && s.attempts
                            .iter()
                            .any(|a| a.n == n && a.state == attempt_state)
                });
                store
                    .record_remote_attempt(&run, &id, attempt, state, note)
                    .map(|_| again)
            })
            .await;
            match result {
                Ok(false) => {}
                Ok(true) => return Ok((records, placed)),
                // An end that contradicts the recorded one, or of an attempt from before a
                // retry: nothing new.
                Err(crate::store::Error::StageFinished { .. }) => return Ok((Vec::new(), placed)),
                Err(error) => return Err(error.into()),
            }
            (end.state, Some(update.attempt))
        }
        None => {
            let current = blocking({
                let (store, id) = (store.clone(), id.clone());
                move || store.stage(&run, &id)
            })
            .await?;
            if current.is_none_or(|s| s.state.is_final()) || note.is_none() {
                return Ok((records, placed));
            }
            blocking(move || store.set_stage_state(&run, &id, StageState::HandedOff, note, now))
                .await?;
            (StageState::HandedOff, None)
        }
    };
    sh.publish(EngineEvent::Stage {
        run,
        stage,
        state,
        attempt,
        note: update.note.clone(),
    });
    Ok((records, placed))
}
