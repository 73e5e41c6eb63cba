//! Status events: what this node tells the other nodes of a run about the stages it runs,
//! and how it records what they tell it.
//!
//! The engine's events of a stage this node runs become signed [`Status`] events on the
//! run's gossip topic: one per change of state, gate or note, and log lines gathered into
//! events of up to [`MAX_LINES`] lines per stage every flush (a stage that prints a lot
//! sends a few large events, not many small ones). `seq` counts the events of one attempt
//! from 0. Every event says the number of its first line in this node's log of the stage
//! (`log_seq`), so the others keep the lines in order, drop repeats and see what they
//! missed; lines not yet sent wait for the next flush, and a stage more than
//! [`MAX_BACKLOG`] lines behind skips to its latest lines (the others fetch what they
//! missed, `logfetch.rs`, or mark it as not received).
//!
//! # Relayed ends
//!
//! Trust is pairwise: a node records gossip only from nodes it trusts, so in a run that
//! crosses orgs which do not all trust each other, the end of a stage would never reach
//! the nodes two orgs away. So a node vouches for every end it learns of a stage it does
//! not run (a verified receipt, a trusted node's failure event, a trusted node's relay):
//! the first time, it publishes one status event of its own with the final state, the
//! stage's attempt, `seq` [`RELAY_SEQ`] and a `detail` saying who ran the stage and who
//! relays it ([`Publisher::relay`]). Nodes that trust it record the end
//! ([`relayed_end`]) and relay it once in turn, so the end spreads org by org; "the first
//! time" stops the echo.

use std::collections::{BTreeMap, HashSet};

use otto_pipeline::plan::Body;
use otto_protocol::{StageState as WireState, Status};

use crate::engine::{EngineEvent, RemoteEnd, RemoteStage};
use crate::store::{AttemptNode, GateState, RunId, StageState};

/// The most log lines in one status event (the protocol's limit).
pub(crate) const MAX_LINES: usize = otto_protocol::limits::MAX_LOG_LINES;

/// The most status events with log lines one stage publishes per flush.
pub(crate) const MAX_EVENTS_PER_FLUSH: usize = 4;

/// How many lines a stage's published log may lag behind its written log before the
/// publisher skips to the latest lines.
pub(crate) const MAX_BACKLOG: u64 = 256 * MAX_LINES as u64;

pub(crate) use otto_handoff::relay::RELAY_SEQ;

/// Status events waiting to be published.
#[derive(Debug, Default)]
pub(crate) struct Publisher {
    /// Per (run, stage): the status being gathered.
    pending: BTreeMap<(RunId, String), Status>,
    /// Per (run, stage): the last line of its log written (the lines themselves are read
    /// from the log when the status leaves).
    written: BTreeMap<(RunId, String), u64>,
    /// Per (run, stage): the last line of its log published (from the line before the
    /// first this publisher learnt of: a restarted node does not send its old lines again).
    published: BTreeMap<(RunId, String), u64>,
    /// Per (run, stage): the last event published, without its lines (gathered again
    /// when a node subscribes to the run, so it learns where the stage and its log stand).
    last: BTreeMap<(RunId, String), Status>,
    /// Per (run, stage, attempt): the next `seq`.
    seqs: BTreeMap<(RunId, String, u32), u64>,
    /// Stages of other nodes (recorded here from their events): never published.
    remote: HashSet<(RunId, String)>,
    /// Ends of other nodes' stages this node already vouched for (or found already
    /// recorded): the core's stage-end relay.
    relays: otto_handoff::relay::Relays,
}

/// The end of a stage another node ran, as this node learnt it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LearntEnd {
    /// The run.
    pub(crate) run: RunId,
    /// The stage.
    pub(crate) stage: String,
    /// The attempt that ended.
    pub(crate) attempt: u32,
    /// How it ended.
    pub(crate) state: StageState,
    /// Who ran it and how it ended, for people (e.g. "ran on ops-4 (acme-ops4)").
    pub(crate) origin: String,
}

/// What this node knows of a run's plan: the plan, and the stages it gives to this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunView {
    body: Body,
    owned: HashSet<String>,
}

impl RunView {
    /// The view of `body` for a node answering to `answers_to` (its own name included);
    /// `started_here` says whether this node started the run (it runs the stages without
    /// an owner).
    pub(crate) fn new(body: &Body, started_here: bool, answers_to: &[String]) -> Self {
        let owned = body
            .stages
            .iter()
            .filter(|stage| {
                otto_handoff::rules::owns(stage.owner.as_deref(), answers_to, started_here)
            })
            .map(|stage| stage.id.clone())
            .collect();
        Self {
            body: body.clone(),
            owned,
        }
    }

    /// Whether `stage` is this node's: it runs here now (`state` running or waiting for a
    /// gate, or an offer of it runs here), it ended here (this node signed a receipt of
    /// it), or it has not started and the plan gives it to this node. Another node's word
    /// never changes such a stage.
    pub(crate) fn runs_here(
        &self,
        stage: &str,
        state: Option<StageState>,
        offered_here: bool,
        signed_here: bool,
    ) -> bool {
        offered_here
            || signed_here
            || match state {
                Some(StageState::Running | StageState::WaitingGate) => true,
                None | Some(StageState::Pending) => self.owned.contains(stage),
                Some(_) => false,
            }
    }

    /// Whether a relayed end of `stage` may be recorded now, given the stages that ended
    /// here (`ended`): [`otto_handoff::relay::may_record`].
    pub(crate) fn may_record(
        &self,
        stage: &str,
        state: StageState,
        ended: &HashSet<String>,
    ) -> bool {
        let Some(outcome) = state.to_wire().and_then(otto_handoff::rules::outcome_of) else {
            return true;
        };
        otto_handoff::relay::may_record(&self.body, stage, outcome, |s| ended.contains(s))
    }
}

impl Publisher {
    /// Marks a stage as run by another node: its events here are echoes, not news.
    pub(crate) fn remote(&mut self, run: RunId, stage: &str) {
        self.remote.insert((run, stage.to_owned()));
    }

    /// Forgets everything about `run` (it ended).
    pub(crate) fn forget(&mut self, run: RunId) {
        self.pending.retain(|(r, _), _| *r != run);
        self.written.retain(|(r, _), _| *r != run);
        self.published.retain(|(r, _), _| *r != run);
        self.last.retain(|(r, _), _| *r != run);
        self.seqs.retain(|(r, _, _), _| *r != run);
        self.remote.retain(|(r, _)| *r != run);
        self.relays.forget(&run.to_string());
    }

    /// Gathers an engine event of a stage this node runs.
    pub(crate) fn record(&mut self, event: &EngineEvent) {
        let now = now_ms();
        match event {
            EngineEvent::Stage {
                run,
                stage,
                state,
                attempt,
                note,
            } => {
                let Some(wire) = state.to_wire() else {
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
            EngineEvent::Log {
                run,
                stage,
                attempt,
                first,
                last,
            } => {
                self.entry(*run, stage, *attempt, now);
                let key = (*run, stage.clone());
                self.published
                    .entry(key.clone())
                    .or_insert(first.saturating_sub(1));
                let written = self.written.entry(key).or_insert(0);
                *written = (*written).max(*last);
            }
            _ => {}
        }
    }

    /// The gathered events, and forgets them; with each, the number of the last line
    /// published of its stage (`None` when this publisher knows of no line of it): its
    /// lines are read after that one ([`Self::next`]). A stage more than [`MAX_BACKLOG`]
    /// lines behind skips to its last [`MAX_LINES`] lines.
    pub(crate) fn take(&mut self) -> Vec<(RunId, Status, Option<u64>)> {
        let pending = std::mem::take(&mut self.pending);
        pending
            .into_iter()
            .map(|((run, stage), status)| {
                let key = (run, stage);
                let written = self.written.get(&key).copied();
                let after = written.map(|written| {
                    let published = self.published.entry(key.clone()).or_insert(0);
                    if written.saturating_sub(*published) > MAX_BACKLOG {
                        *published = written - MAX_LINES as u64;
                    }
                    *published
                });
                (run, status, after)
            })
            .collect()
    }

    /// Numbers `status` (the next `seq` of its attempt) and notes that the log lines it
    /// carries, `lines` (the first's and the last's numbers) when it has any, are
    /// published; returns whether more lines wait. `log_seq` is the first line's number,
    /// or with no lines the next line's when every line written is published.
    pub(crate) fn next(
        &mut self,
        run: RunId,
        status: &mut Status,
        lines: Option<(u64, u64)>,
    ) -> bool {
        let key = (run, status.stage.clone());
        let seq = self
            .seqs
            .entry((run, key.1.clone(), status.attempt))
            .or_insert(0);
        status.seq = *seq;
        *seq += 1;
        self.last.insert(
            key.clone(),
            Status {
                log: Vec::new(),
                log_seq: None,
                ..status.clone()
            },
        );
        let written = self.written.get(&key).copied();
        let Some(published) = self.published.get_mut(&key) else {
            return false;
        };
        match lines {
            Some((first, last)) => {
                status.log_seq = Some(first);
                *published = (*published).max(last);
            }
            None if written == Some(*published) => {
                status.log_seq = Some(published.saturating_add(1));
            }
            None => {}
        }
        written.is_some_and(|w| w > *published)
    }

    /// Gathers the last event of each stage of `run` again for the next flush: a node
    /// (re)subscribed to the run, and learns from them where each stage and its log stand
    /// (a node that restarted sees the lines it missed meanwhile as a gap).
    pub(crate) fn subscribed(&mut self, run: RunId) {
        let again: Vec<Status> = self
            .last
            .range((run, String::new())..)
            .take_while(|((r, _), _)| *r == run)
            .map(|(_, status)| status.clone())
            .collect();
        for status in again {
            self.again(run, status);
        }
    }

    /// Gathers `status` again for the next flush (its stage has lines waiting), unless an
    /// event of its stage is gathered already.
    pub(crate) fn again(&mut self, run: RunId, status: Status) {
        self.pending
            .entry((run, status.stage.clone()))
            .or_insert(Status {
                log: Vec::new(),
                log_seq: None,
                ..status
            });
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
                at: now / 1000,
                detail: None,
                log: Vec::new(),
                log_seq: None,
                at_ms: Some(now),
            })
    }

    /// Decides whether this node vouches for `end`, which it just learnt: the first time
    /// it learns the end of an attempt of a stage it does not run (`runs_here`), and had
    /// not recorded it before (`known`), it returns the status event to publish, signed by
    /// this node (named `me`) at `now` (milliseconds). Never for a state that is not final.
    pub(crate) fn relay(
        &mut self,
        end: &LearntEnd,
        runs_here: bool,
        known: bool,
        me: &str,
        now: u64,
    ) -> Option<Status> {
        let outcome = end
            .state
            .to_wire()
            .filter(|_| end.state.is_final())
            .and_then(otto_handoff::rules::outcome_of)?;
        let end = otto_handoff::relay::End {
            run: end.run.to_string(),
            stage: end.stage.clone(),
            attempt: end.attempt,
            outcome,
            origin: end.origin.clone(),
        };
        self.relays.relay(&end, runs_here, known, me, now)
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

/// A log line as it goes into a status event: [`otto_handoff::logseq::wire_text`].
pub(crate) fn relay_text(text: String) -> String {
    otto_handoff::logseq::wire_text(text)
}

/// What a status event of another node's stage changes here: its note and log lines,
/// numbered by `runner` (the first 8 bytes of the author's key) when the event numbers
/// them.
pub(crate) fn remote_update(
    run: RunId,
    who: &str,
    by: Option<AttemptNode>,
    runner: [u8; 8],
    status: Status,
) -> RemoteStage {
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
        let at = status.at_millis();
        RemoteEnd {
            state: StageState::Failed,
            started_at: at,
            finished_at: at,
            artifacts: Vec::new(),
            node: by,
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
        numbered: status.log_seq.map(|first| (runner, first)),
        hold_jumps: false,
    }
}

/// The end a relayed status event (`seq` [`RELAY_SEQ`], a final state) vouches for, as
/// recorded here on the word of its author `who`, with what this node learnt; `None` for
/// any other event.
pub(crate) fn relayed_end(
    run: RunId,
    who: &str,
    status: &Status,
) -> Option<(RemoteStage, LearntEnd)> {
    // Only an end is relayed; the account up to the last relayer's name, which is
    // replaced by the author's.
    let end = otto_handoff::relay::relayed(status)?;
    let state = StageState::from_wire(otto_handoff::rules::state_of(end.outcome));
    let origin = end.origin;
    let at = status.at_millis();
    let attempt = end.attempt;
    let update = RemoteStage {
        run,
        stage: status.stage.clone(),
        ended: Some(RemoteEnd {
            state,
            started_at: at,
            finished_at: at,
            artifacts: Vec::new(),
            node: None,
        }),
        note: Some(format!("{origin}; relayed by {who}")),
        log: Vec::new(),
        attempt,
        numbered: None,
        hold_jumps: false,
    };
    let end = LearntEnd {
        run,
        stage: status.stage.clone(),
        attempt,
        state,
        origin,
    };
    Some((update, end))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use otto_pipeline::{Facts, MemSource, StepCatalog};

    use super::*;

    const CHAIN: &str = "
stage('Build') { steps { sh 'b' } }
stage('Test') { owner = 'qa'  steps { sh 't' } }
stage('Deploy') { owner = 'ops'  steps { sh 'd' } }
";

    fn body(text: &str) -> Body {
        let source = MemSource::new().with("p/Ottofile", text);
        otto_pipeline::plan(
            &source,
            std::path::Path::new("p/Ottofile"),
            &Facts::default(),
            &StepCatalog::builtins(),
        )
        .map(|p| p.plan.body)
        .unwrap_or_else(|f| panic!("plan: {f}"))
    }

    fn run() -> RunId {
        RunId::new(1_700_000_000_000, [7; 10])
    }

    fn end(stage: &str, state: StageState) -> LearntEnd {
        LearntEnd {
            run: run(),
            stage: stage.to_owned(),
            attempt: 1,
            state,
            origin: "ran on ops-1 (acme-ops)".to_owned(),
        }
    }

    #[test]
    fn the_first_end_learnt_is_relayed_once_with_who_ran_it_and_who_vouches() {
        let mut publisher = Publisher::default();
        let deploy = end("Deploy", StageState::Succeeded);
        let status = publisher
            .relay(&deploy, false, false, "qa-1", 42_250)
            .expect("relayed");
        assert_eq!(status.state, WireState::Succeeded);
        assert_eq!(status.seq, RELAY_SEQ);
        assert_eq!(
            (status.attempt, status.at, status.at_ms),
            (1, 42, Some(42_250))
        );
        assert_eq!(
            status.detail.as_deref(),
            Some("ran on ops-1 (acme-ops); relayed by qa-1")
        );
        assert!(status.log.is_empty());
        // The same end again (its receipt after its relay, or a relay echoed back): silence.
        assert_eq!(publisher.relay(&deploy, false, false, "qa-1", 43), None);
        // The next attempt is news.
        let again = LearntEnd {
            attempt: 2,
            ..deploy
        };
        assert!(publisher.relay(&again, false, false, "qa-1", 44).is_some());
    }

    #[test]
    fn own_stages_ends_known_before_and_unfinished_states_are_never_relayed() {
        let mut publisher = Publisher::default();
        let failed = end("Build", StageState::Failed);
        assert_eq!(publisher.relay(&failed, true, false, "dev-1", 1), None);
        let known = end("Test", StageState::Succeeded);
        assert_eq!(publisher.relay(&known, false, true, "dev-1", 1), None);
        for state in [
            StageState::Running,
            StageState::HandedOff,
            StageState::Pending,
        ] {
            assert_eq!(
                publisher.relay(&end("Deploy", state), false, false, "dev-1", 1),
                None
            );
        }
        // A skip and a cancellation are ends too.
        for (stage, state) in [("A", StageState::Skipped), ("B", StageState::Cancelled)] {
            assert!(
                publisher
                    .relay(&end(stage, state), false, false, "dev-1", 1)
                    .is_some()
            );
        }
    }

    #[test]
    fn a_relay_is_recorded_as_the_end_in_the_relaying_nodes_words() {
        let mut publisher = Publisher::default();
        let status = publisher
            .relay(
                &end("Deploy", StageState::Succeeded),
                false,
                false,
                "qa-1",
                42_250,
            )
            .expect("relayed");
        let (update, learnt) = relayed_end(run(), "qa-1", &status).expect("an end");
        let ended = update.ended.expect("ended");
        assert_eq!(ended.state, StageState::Succeeded);
        assert_eq!((ended.started_at, ended.finished_at), (42_250, 42_250));
        assert!(ended.artifacts.is_empty());
        assert_eq!(
            update.note.as_deref(),
            Some("ran on ops-1 (acme-ops); relayed by qa-1")
        );
        assert_eq!(learnt.origin, "ran on ops-1 (acme-ops)");
        // Relayed on by dev, it still names the node that ran it, and dev as the voucher.
        let mut dev = Publisher::default();
        let again = dev
            .relay(&learnt, false, false, "dev-1", 43)
            .expect("relayed");
        assert_eq!(
            again.detail.as_deref(),
            Some("ran on ops-1 (acme-ops); relayed by dev-1")
        );
        // The runner's own events are not relays, whatever their state.
        let own = Status { seq: 3, ..status };
        assert_eq!(relayed_end(run(), "ops-1", &own), None);
        let running = Status {
            state: WireState::Running,
            ..again
        };
        assert_eq!(relayed_end(run(), "dev-1", &running), None);
    }

    fn failed_at(at: u64, at_ms: Option<u64>) -> Status {
        Status {
            run: run().to_string(),
            stage: "Deploy".to_owned(),
            attempt: 1,
            seq: 4,
            state: WireState::Failed,
            at,
            detail: Some("'sh' exited with code 1".to_owned()),
            log: Vec::new(),
            log_seq: None,
            at_ms,
        }
    }

    #[test]
    fn a_peers_times_count_to_the_millisecond_only_inside_their_signed_second() {
        let ended = |status: Status| {
            let update = remote_update(run(), "ops-1", None, [1; 8], status);
            let end = update.ended.expect("a failure ends the stage");
            (end.started_at, end.finished_at)
        };
        assert_eq!(
            ended(failed_at(1_700_000_042, Some(1_700_000_042_317))),
            (1_700_000_042_317, 1_700_000_042_317)
        );
        // An older node sends whole seconds.
        assert_eq!(
            ended(failed_at(1_700_000_042, None)),
            (1_700_000_042_000, 1_700_000_042_000)
        );
        // Milliseconds that contradict the signed second are not taken.
        assert_eq!(
            ended(failed_at(1_700_000_042, Some(1_600_000_000_000))),
            (1_700_000_042_000, 1_700_000_042_000)
        );
        // A hostile peer's largest times neither panic nor wrap.
        assert_eq!(ended(failed_at(u64::MAX, Some(0))), (u64::MAX, u64::MAX));
        assert_eq!(ended(failed_at(u64::MAX, None)), (u64::MAX, u64::MAX));
        let relay = Status {
            seq: RELAY_SEQ,
            detail: Some("failed on ops-1 (acme-ops); relayed by qa-1".to_owned()),
            ..failed_at(u64::MAX, Some(u64::MAX))
        };
        let (update, _) = relayed_end(run(), "qa-1", &relay).expect("an end");
        let end = update.ended.expect("ended");
        assert_eq!((end.started_at, end.finished_at), (u64::MAX, u64::MAX));
    }

    #[test]
    fn own_events_carry_their_time_to_the_millisecond() {
        let mut publisher = Publisher::default();
        publisher.record(&EngineEvent::Stage {
            run: run(),
            stage: "Build".to_owned(),
            state: StageState::Running,
            attempt: Some(1),
            note: None,
        });
        let taken = publisher.take();
        let (_, status, _) = taken.first().expect("an event");
        let ms = status.at_ms.expect("milliseconds");
        assert_eq!(ms / 1000, status.at);
        assert_eq!(status.at_millis(), ms);
    }

    #[test]
    fn only_the_stages_the_plan_gives_this_node_are_its_own() {
        let plan = body(CHAIN);
        let names = ["qa".to_owned(), "qa-1".to_owned()];
        let qa = RunView::new(&plan, false, &names);
        assert!(qa.runs_here("Test", Some(StageState::Pending), false, false));
        assert!(qa.runs_here("Test", None, false, false));
        assert!(qa.runs_here("Deploy", Some(StageState::Running), false, false));
        assert!(qa.runs_here("Deploy", Some(StageState::WaitingGate), false, false));
        assert!(qa.runs_here("Build", Some(StageState::Succeeded), false, true));
        assert!(qa.runs_here("Deploy", Some(StageState::HandedOff), true, false));
        assert!(!qa.runs_here("Build", Some(StageState::Pending), false, false));
        assert!(!qa.runs_here("Deploy", Some(StageState::HandedOff), false, false));
        assert!(!qa.runs_here("Deploy", Some(StageState::Succeeded), false, false));
        // The node that started the run owns the stages without an owner.
        let dev = RunView::new(&plan, true, &["dev".to_owned()]);
        assert!(dev.runs_here("Build", Some(StageState::Pending), false, false));
        assert!(!dev.runs_here("Test", Some(StageState::Pending), false, false));
    }

    #[test]
    fn a_relayed_success_waits_for_the_stages_that_need_it() {
        let view = RunView::new(&body(CHAIN), true, &["dev".to_owned()]);
        let mut ended = HashSet::new();
        assert!(view.may_record("Deploy", StageState::Succeeded, &ended));
        assert!(!view.may_record("Test", StageState::Succeeded, &ended));
        assert!(!view.may_record("Test", StageState::Skipped, &ended));
        assert!(view.may_record("Test", StageState::Failed, &ended));
        assert!(view.may_record("Test", StageState::Cancelled, &ended));
        ended.insert("Deploy".to_owned());
        assert!(view.may_record("Test", StageState::Succeeded, &ended));
    }
}
