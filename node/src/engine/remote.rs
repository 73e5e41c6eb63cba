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
use crate::store::{Attempt, AttemptState, NewLine, StageState, Stream};

/// Stores what `update` says and publishes it; returns the outputs a receipt recorded.
pub(crate) async fn record(
    sh: &Arc<Shared>,
    update: &RemoteStage,
) -> Result<Vec<Record>, EngineError> {
    let (run, stage) = (update.run, update.stage.clone());
    let now = now_ms();
    let mut lines: Vec<NewLine> = update
        .log
        .iter()
        .map(|text| NewLine {
            time: now,
            stream: Stream::Stdout,
            step: None,
            text: text.clone(),
        })
        .collect();
    let records: Vec<Record> = update
        .ended
        .iter()
        .flat_map(|end| end.artifacts.iter())
        .map(|(name, digest, size)| Record::Artifact(name.clone(), *digest, *size))
        .collect();
    lines.extend(records.iter().map(|r| NewLine {
        time: now,
        stream: Stream::System,
        step: None,
        text: r.line(),
    }));
    if !lines.is_empty() {
        let (store, logs) = (sh.store.clone(), sh.logs.clone());
        let (id, n) = (stage.clone(), update.attempt);
        // Only a stage of the run has a log: a peer's word makes no file of any other name.
        let appended = blocking(move || {
            store
                .stage(&run, &id)?
                .ok_or_else(|| crate::store::Error::UnknownStage {
                    run,
                    stage: id.clone(),
                })?;
            logs.append(&run, &id, n, &lines)
        })
        .await?;
        if appended.first <= appended.last {
            sh.publish(EngineEvent::Log {
                run,
                stage: stage.clone(),
                attempt: update.attempt,
                first: appended.first,
                last: appended.last,
            });
        }
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
            };
            let state = end.state;
            let result =
                blocking(move || store.record_remote_attempt(&run, &id, attempt, state, note))
                    .await;
            match result {
                Ok(_) => {}
                // The same end again (a receipt delivered twice): nothing new.
                Err(crate::store::Error::StageFinished { .. }) => return Ok(Vec::new()),
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
                return Ok(records);
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
    Ok(records)
}
