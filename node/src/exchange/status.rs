//! Status events: what this node tells the other nodes of a run about the stages it runs,
//! and how it records what they tell it.
//!
//! The engine's events of a stage this node runs become signed [`Status`] events on the
//! run's gossip topic: one per change of state, gate or note, and log lines gathered into
//! one event per stage every flush (a stage that prints a lot sends a few large events, not
//! many small ones). `seq` counts the events of one attempt from 0.

use std::collections::{BTreeMap, HashSet};

use otto_protocol::{StageState as WireState, Status};

use crate::engine::{EngineEvent, RemoteEnd, RemoteStage};
use crate::store::{GateState, RunId, StageState};

/// The most log lines in one status event (the protocol's limit is higher; smaller events
/// spread better).
const MAX_LINES: usize = 256;

/// Status events waiting to be published.
#[derive(Debug, Default)]
pub(crate) struct Publisher {
    /// Per (run, stage): the status being gathered.
    pending: BTreeMap<(RunId, String), Status>,
    /// Per (run, stage, attempt): the next `seq`.
    seqs: BTreeMap<(RunId, String, u32), u64>,
    /// Stages of other nodes (recorded here from their events): never published.
    remote: HashSet<(RunId, String)>,
}

impl Publisher {
    /// Marks a stage as run by another node: its events here are echoes, not news.
    pub(crate) fn remote(&mut self, run: RunId, stage: &str) {
        self.remote.insert((run, stage.to_owned()));
    }

    /// Gathers an engine event of a stage this node runs.
    pub(crate) fn record(&mut self, event: &EngineEvent) {
        let now = now_secs();
        match event {
            EngineEvent::Stage {
                run,
                stage,
                state,
                attempt,
                note,
            } => {
                let Some(wire) = wire_state(*state) else {
                    return;
                };
                let status = self.entry(*run, stage, attempt.unwrap_or(1), now);
                status.state = wire;
                status.detail.clone_from(note);
            }
            EngineEvent::Gate {
                at,
                gate,
                state,
                note,
            } => {
                let status = self.entry(at.run, &at.stage, 1, now);
                if *state == GateState::Waiting {
                    status.state = WireState::WaitingGate;
                    status.detail = Some(match note {
                        Some(note) => format!("waiting for a {gate:?} gate: {note}").to_lowercase(),
                        None => format!("waiting for a {gate:?} gate").to_lowercase(),
                    });
                } else {
                    status.detail = Some(format!("{gate:?} gate {state:?}").to_lowercase());
                }
            }
            EngineEvent::Log { run, stage, line } => {
                let status = self.entry(*run, stage, line.attempt, now);
                if status.log.len() < MAX_LINES {
                    status.log.push(line.text.clone());
                }
            }
            _ => {}
        }
    }

    /// The gathered events, numbered, and forgets them.
    pub(crate) fn take(&mut self) -> Vec<(RunId, Status)> {
        let pending = std::mem::take(&mut self.pending);
        pending
            .into_iter()
            .map(|((run, stage), mut status)| {
                let seq = self.seqs.entry((run, stage, status.attempt)).or_insert(0);
                status.seq = *seq;
                *seq += 1;
                (run, status)
            })
            .collect()
    }

    fn entry(&mut self, run: RunId, stage: &str, attempt: u32, now: u64) -> &mut Status {
        self.pending
            .entry((run, stage.to_owned()))
            .or_insert_with(|| Status {
                run: run.to_string(),
                stage: stage.to_owned(),
                attempt,
                seq: 0,
                state: WireState::Running,
                at: now,
                detail: None,
                log: Vec::new(),
            })
    }

    /// Whether `event` concerns a stage this node runs, in a run shared with others.
    pub(crate) fn is_local(&self, event: &EngineEvent) -> bool {
        let key = match event {
            EngineEvent::Stage { run, stage, .. } | EngineEvent::Log { run, stage, .. } => {
                (*run, stage.clone())
            }
            EngineEvent::Gate { at, .. } => (at.run, at.stage.clone()),
            _ => return false,
        };
        !self.remote.contains(&key)
    }
}

/// The run an engine event is about.
pub(crate) fn run_of(event: &EngineEvent) -> Option<RunId> {
    match event {
        EngineEvent::Stage { run, .. } | EngineEvent::Log { run, .. } => Some(*run),
        EngineEvent::Gate { at, .. } => Some(at.run),
        _ => None,
    }
}

/// What a status event of another node's stage changes here: its note and log lines.
pub(crate) fn remote_update(run: RunId, who: &str, status: Status) -> RemoteStage {
    let state = match status.state {
        WireState::Queued => "queued",
        WireState::WaitingGate => "waiting",
        WireState::Running => "running",
        WireState::Succeeded => "succeeded, receipt on its way",
        WireState::Failed => "failed, receipt on its way",
        WireState::Skipped => "skipped",
        WireState::Cancelled => "cancelled",
    };
    let note = match &status.detail {
        Some(detail) => format!("{who}: {state} ({detail})"),
        None if status.attempt > 0 => format!("{who}: {state} (attempt {})", status.attempt),
        None => format!("{who}: {state}"),
    };
    // A failure ends the stage here at once: the runner's receipt, when one comes, only
    // confirms it; a stage refused before it ran has no receipt at all.
    let ended = (status.state == WireState::Failed).then(|| {
        let at = status.at * 1000;
        RemoteEnd {
            state: StageState::Failed,
            started_at: at,
            finished_at: at,
            artifacts: Vec::new(),
        }
    });
    let note = match (&ended, &status.detail) {
        (Some(_), Some(detail)) => format!("{who}: {detail}"),
        _ => note,
    };
    RemoteStage {
        run,
        stage: status.stage,
        ended,
        note: Some(note),
        log: status.log,
        attempt: status.attempt.max(1),
    }
}

fn wire_state(state: StageState) -> Option<WireState> {
    Some(match state {
        StageState::Pending => WireState::Queued,
        StageState::Running => WireState::Running,
        StageState::WaitingGate => WireState::WaitingGate,
        StageState::Succeeded => WireState::Succeeded,
        StageState::Failed => WireState::Failed,
        StageState::Skipped => WireState::Skipped,
        StageState::Cancelled => WireState::Cancelled,
        _ => return None,
    })
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
