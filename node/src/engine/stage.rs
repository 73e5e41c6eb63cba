//! The life of one stage of a run, as a task: condition, owner, enter gates, the attempt,
//! exit gates, `notify`.
//!
//! The task reads where the stage stands from the store and goes on from there, so the
//! same code starts a stage and resumes one after a restart: gates that passed are not
//! asked again, a gate still waiting waits again, an interrupted attempt is retried as the
//! next attempt, and a stage whose steps succeeded goes on with its exit gates.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use otto_agent_protocol::{CacheRestore, HandOn, Job, SourceRef, Wall};
use otto_handoff::rules::{self, Mover, Next};
use otto_pipeline::plan::{self, Body, Gate as PlanGate, Step};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use super::agent::{self, AgentEnd, AgentJob};
use super::caches;
use super::dag;
use super::gates;
use super::orchestrator::SUPERSEDED;
use super::outputs::{Handed, Outputs, Record};
use super::receipts::{self, Ended};
use super::util::{self, blocking, lock, now_ms};
use super::{EngineEvent, Notice, Shared, phase_name};
use crate::blobs::Digest;
use crate::failpoint;
use crate::secrets::{self, StageSecrets};
use crate::store::{
    self, AttemptEnd, AttemptState, AttemptUpdate, CacheEntry, Gate, GateKind, GatePhase, GateRef,
    GateResolution, GateState, GroupKind, GroupMember, GroupTurn, Joined, NewLine, RunId, Stage,
    StageState, Stream,
};

/// The directory of the work directory where every step sees its workspace
/// (`Job::stable_workspace`); never a run's directory, whose names are run ids.
pub(crate) const STABLE_WORKSPACE: &str = ".workspace";

/// How often a poll gate polls when its `every` is not given.
const DEFAULT_POLL_EVERY: u64 = 10;

/// The longest a poll of a URL may take.
const URL_POLL_TIMEOUT: Duration = Duration::from_secs(30);

/// What the stage tasks of one run share.
pub(crate) struct RunCtx {
    /// The run.
    pub(crate) id: RunId,
    /// Whether this node started the run (rather than being offered a stage of it).
    pub(crate) started_here: bool,
    /// The org of the node that offered this node a stage of the run, when it did not start it.
    pub(crate) started_by_org: Option<String>,
    /// The plan's digest, `sha256:<hex>`.
    pub(crate) plan_digest: String,
    /// The pipeline's name.
    pub(crate) pipeline: String,
    /// The plan.
    pub(crate) body: Body,
    /// The source snapshot.
    pub(crate) source: Option<Digest>,
    /// The repository URL and commit of a run whose source is a git commit (its snapshot
    /// is `source` once checked out).
    pub(crate) git: Option<(String, String)>,
    /// What finished stages left for later ones.
    pub(crate) outputs: Mutex<Outputs>,
}

/// The slots an attempt holds while its agent runs (see [`StageTask::wait_turn`]).
struct Turn {
    _run: Option<RunSlot>,
    _node: OwnedSemaphorePermit,
}

/// A slot of a run's stages; when the last holder and waiter of the run's slots is gone,
/// the run's semaphore is forgotten.
struct RunSlot {
    sh: Arc<Shared>,
    run: RunId,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for RunSlot {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut slots = lock(&self.sh.run_slots);
        if slots
            .get(&self.run)
            .is_some_and(|slots| Arc::strong_count(slots) == 1)
        {
            slots.remove(&self.run);
        }
    }
}

/// The task that drives one stage.
pub(crate) struct StageTask {
    pub(crate) sh: Arc<Shared>,
    pub(crate) run: Arc<RunCtx>,
    pub(crate) plan: plan::Stage,
    pub(crate) cancel: watch::Receiver<Option<String>>,
    /// Tells the engine task that a stage changed state.
    pub(crate) changed: mpsc::Sender<RunId>,
}

/// What came of taking a stage's concurrency group.
enum Taken {
    /// It holds the group (or has none): its attempt may start.
    Go,
    /// It was cancelled while it waited, or by a newer member: why.
    Cancelled(String),
    /// It cannot take the group: why (the stage fails).
    Refused(String),
}

/// Whether to go on after a gate.
enum Flow {
    Go,
    Stop,
}

/// A failure of the node itself while driving a stage (the store failed).
#[derive(Debug, thiserror::Error)]
enum Trouble {
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl StageTask {
    /// Drives the stage as far as it can go now.
    pub(crate) async fn drive(mut self) {
        if let Err(error) = self.drive_inner().await {
            tracing::error!(target: "otto_node::engine", run = %self.run.id, stage = %self.plan.id, %error, "the stage cannot go on");
            let note = format!("the node failed: {error}");
            let _ = self.set_state(StageState::Failed, Some(note), None).await;
        }
    }

    async fn drive_inner(&mut self) -> Result<(), Trouble> {
        let record = self.load().await?;
        if record.state.is_final() || record.state == StageState::HandedOff {
            return Ok(());
        }
        if let Some(note) = dag::skip_note(&self.plan) {
            self.set_state(StageState::Skipped, Some(note), None)
                .await?;
            return Ok(());
        }
        let owned = self
            .sh
            .owns(self.plan.owner.as_deref(), self.run.started_here);
        let offered = self.sh.was_offered(&self.run.id, &self.plan.id);
        let mover = if owned && offered {
            Mover::Me
        } else {
            self.mover().await?
        };
        match rules::next(&self.plan, owned, offered, &mover) {
            Next::Run => {}
            Next::HandOff { note } => {
                // This node moves it on: the handoff intent is stored with the state.
                let owner = self.plan.owner_name().to_owned();
                self.hand_off(note, Some(owner)).await?;
                return Ok(());
            }
            Next::Wait { note } => {
                self.hand_off(note, None).await?;
                return Ok(());
            }
        }
        if let Some(reason) = self.cancel_reason() {
            self.set_state(StageState::Cancelled, Some(reason), None)
                .await?;
            return Ok(());
        }
        if let Some(refusal) = self.refusal().or_else(|| self.unwalled()) {
            return self.fail_before_steps(refusal).await;
        }
        let mut attempt = record.last_attempt().map(|a| a.n);
        // After a retry, the attempts before it are done with: the steps run again.
        let steps_done = !record.retry_pending()
            && record
                .last_attempt()
                .is_some_and(|a| a.state == AttemptState::Succeeded);
        if !steps_done {
            if let Some(problem) = self.sh.runtimes.problem(&self.plan) {
                return self.fail_before_steps(problem).await;
            }
            let enter = self.plan.gates.enter.clone();
            for (index, gate) in enter.iter().enumerate() {
                if let Flow::Stop = self.gate(GatePhase::Enter, index, gate, None).await? {
                    return self.after_stop(None).await;
                }
            }
            // Its concurrency group, taken once its enter gates passed and held until the
            // stage ends (the store lets go of it with the final state).
            match self.take_group().await? {
                Taken::Go => {}
                Taken::Cancelled(reason) => {
                    self.set_state(StageState::Cancelled, Some(reason), None)
                        .await?;
                    return Ok(());
                }
                Taken::Refused(reason) => return self.fail_before_steps(reason).await,
            }
            match self.attempt(&record).await? {
                Some(n) => attempt = Some(n),
                None => return Ok(()),
            }
        }
        let exit = self.plan.gates.exit.clone();
        for (index, gate) in exit.iter().enumerate() {
            if let Flow::Stop = self.gate(GatePhase::Exit, index, gate, attempt).await? {
                return self.after_stop(attempt).await;
            }
        }
        let current = self.load().await?;
        if current.state != StageState::Succeeded {
            self.set_state(StageState::Succeeded, None, attempt).await?;
        }
        self.notify(true, attempt).await;
        Ok(())
    }

    /// After a gate stopped the stage: runs the failure notifications if it failed.
    async fn after_stop(&mut self, attempt: Option<u32>) -> Result<(), Trouble> {
        let record = self.load().await?;
        self.changed().await;
        if record.state == StageState::Failed {
            self.notify(false, attempt).await;
        }
        Ok(())
    }

    /// Fails the stage before its steps run, as an attempt that failed at once: the
    /// attempt is recorded, so the failure has a receipt the other nodes of the run see.
    async fn fail_before_steps(&mut self, note: String) -> Result<(), Trouble> {
        let (store, run, id) = (self.sh.store.clone(), self.run.id, self.plan.id.clone());
        let floor = self.sh.offered_attempt(&run, &id);
        let here = self.sh.here();
        let n =
            blocking(move || store.begin_attempt_from(&run, &id, now_ms(), floor, here)).await?;
        self.system_line(n, &note).await;
        self.end_attempt(n, Err(note), None).await?;
        Ok(())
    }

    /// Runs one attempt. Returns its number when its steps succeeded, `None` when the
    /// stage ended.
    async fn attempt(&mut self, record: &Stage) -> Result<Option<u32>, Trouble> {
        let turn = match self.wait_turn().await? {
            Ok(turn) => turn,
            Err(reason) => {
                self.set_state(StageState::Cancelled, Some(reason), None)
                    .await?;
                return Ok(None);
            }
        };
        let began = std::time::Instant::now();
        let previous = record.last_attempt().cloned();
        let (store, run, id) = (self.sh.store.clone(), self.run.id, self.plan.id.clone());
        let floor = self.sh.offered_attempt(&run, &id);
        let here = self.sh.here();
        let n =
            blocking(move || store.begin_attempt_from(&run, &id, now_ms(), floor, here)).await?;
        util::took(&self.plan.id, "attempt begun", began);
        if let Some(retry) = record.retries.last().filter(|_| record.retry_pending()) {
            let text = format!(
                "attempt {n}: a retry by {} after attempt {}",
                retry.by, retry.after
            );
            self.system_line(n, &text).await;
        }
        self.publish_stage(StageState::Running, Some(n), None);
        self.changed().await;
        if let Some(previous) = previous.filter(|a| a.state == AttemptState::Interrupted) {
            let text = format!(
                "attempt {} was interrupted (the node stopped while it ran); this is attempt {n}",
                previous.n
            );
            self.system_line(n, &text).await;
        }

        let stage_secrets = match secrets::for_stage(&self.sh.vault, &self.plan) {
            Ok(found) => found,
            Err(error) => {
                let text = format!("{error}; store them with `otto secrets set NAME`");
                drop(turn);
                return self.end_attempt(n, Err(text), None).await;
            }
        };
        let phase = std::time::Instant::now();
        let cache_plan = {
            let (store, blobs) = (self.sh.store.clone(), self.sh.blobs.clone());
            let (pipeline, source) = (self.run.pipeline.clone(), self.run.source);
            let (declared, org) = (self.plan.caches.clone(), self.cache_org());
            blocking(move || {
                caches::plan(
                    &store,
                    &blobs,
                    org.as_deref(),
                    &pipeline,
                    source.as_ref(),
                    &declared,
                )
            })
            .await?
        };
        if !cache_plan.hits.is_empty() || !cache_plan.misses.is_empty() {
            let update = AttemptUpdate {
                cache_hits: cache_plan.hits.clone(),
                cache_misses: cache_plan.misses.clone(),
                ..AttemptUpdate::default()
            };
            let (store, run, id) = (self.sh.store.clone(), self.run.id, self.plan.id.clone());
            blocking(move || store.update_attempt(&run, &id, n, update)).await?;
            let mut text = Vec::new();
            if !cache_plan.hits.is_empty() {
                text.push(format!("cache hit: {}", cache_plan.hits.join(", ")));
            }
            if !cache_plan.misses.is_empty() {
                text.push(format!("cache miss: {}", cache_plan.misses.join(", ")));
            }
            self.system_line(n, &text.join("; ")).await;
        }
        util::took(&self.plan.id, "caches planned and recorded", phase);

        let workspace = self.workspace(Some(n));
        let mut source = match self.stage_source().await {
            Ok(source) => {
                if let (false, Some((url, commit))) = (self.run.started_here, &self.run.git) {
                    let text = format!("source: commit {commit} of {url}, checked out here");
                    self.system_line(n, &text).await;
                }
                source
            }
            Err(text) => {
                // In the stage's log too, so the node that offered it reads why.
                self.system_line(n, &text).await;
                drop(turn);
                return self.end_attempt(n, Err(text), None).await;
            }
        };
        let mut restore = cache_plan.restore.clone();
        let mut start_from = None;
        if let Some(from) = &self.plan.runtime.from {
            let saved = lock(&self.run.outputs).workspace(from);
            let dir = match saved {
                Some(Handed::Dir(attempt)) => {
                    let dir = self.handed_dir(from, attempt);
                    let there = dir.clone();
                    blocking(move || Ok::<_, Trouble>(there.is_dir()))
                        .await?
                        .then_some(dir)
                }
                _ => None,
            };
            // A stage of another node's run keeps the files its approval covers from the
            // source, put over the workspace it starts from (the agent then checks them
            // and refuses a cache entry in their place).
            let keep_source = !self.run.started_here && !self.plan.uses.is_empty();
            match (saved, dir) {
                (Some(Handed::Dir(_)), Some(dir)) => {
                    if !keep_source {
                        source = None;
                    }
                    start_from = Some(dir);
                }
                (Some(Handed::Blob(digest)), _) => {
                    // A run an older node started: its workspace is a blob.
                    if !keep_source {
                        source = None;
                    }
                    restore.insert(
                        0,
                        CacheRestore {
                            name: format!("workspace of {from}"),
                            paths: vec![".".into()],
                            digest: digest.to_string(),
                        },
                    );
                }
                _ => {
                    let text = format!(
                        "the workspace of {from} is not available; starting from the source snapshot"
                    );
                    self.system_line(n, &text).await;
                }
            }
        }
        let save = cache_plan.save.clone();
        // The workspace is left, on this node, for the stages that start from it: copied
        // by the agent into a directory of the node's work directory, without the stage's
        // cache paths (those stages get them from the cache). Workspaces never travel to
        // another node (a stage offered elsewhere starts from the source snapshot).
        let hand_on = dag::workspace_wanted(&self.run.body, &self.plan.id).then(|| HandOn {
            dir: self.handed_dir(&self.plan.id, n),
            exclude: self
                .plan
                .caches
                .iter()
                .flat_map(|c| c.paths.iter().cloned())
                .collect(),
        });
        let artifacts = lock(&self.run.outputs).artifacts_for(&self.run.body, &self.plan.id);
        let mut allowed: HashSet<Digest> = artifacts.values().copied().collect();
        allowed.extend(source);
        allowed.extend(
            restore
                .iter()
                .filter_map(|c| c.digest.parse::<Digest>().ok()),
        );
        let mut job = self.job(n, self.plan.steps.clone(), workspace, &stage_secrets);
        job.source = source.map(|d| SourceRef {
            digest: d.to_string(),
        });
        job.artifacts = artifacts
            .into_iter()
            .map(|(name, digest)| (name, digest.to_string()))
            .collect();
        job.restore_caches = restore;
        job.save_caches = save;
        job.start_from = start_from;
        job.hand_on = hand_on;
        job.timeout_secs = self.plan.timeout.as_ref().map(|t| t.seconds);
        job.container = self.sh.runtimes.container(&self.plan);
        if job.source.is_some()
            && let Some(epoch) = self.source_date_epoch().await
        {
            job.env
                .entry("SOURCE_DATE_EPOCH".into())
                .or_insert_with(|| epoch.to_string());
        }

        let spec = AgentJob {
            run: self.run.id,
            stage: self.plan.id.clone(),
            attempt: n,
            job,
            masker: stage_secrets.masker(),
            allowed,
            own_steps: true,
        };
        util::took(&self.plan.id, "job made", began);
        let phase = std::time::Instant::now();
        let end = agent::run(&self.sh, spec, &mut self.cancel).await;
        util::took(&self.plan.id, "agent ran", phase);
        // Free the slots before the notify steps of a failure, which need one of their own.
        drop(turn);
        let keys = cache_plan.keys;
        let phase = std::time::Instant::now();
        let ended = self.end_attempt(n, Ok(end), Some(keys)).await;
        util::took(&self.plan.id, "attempt ended", phase);
        util::took(&self.plan.id, "whole attempt", began);
        ended
    }

    /// Records how attempt `n` ended. `Err` is a failure before the agent started.
    async fn end_attempt(
        &mut self,
        n: u32,
        end: Result<AgentEnd, String>,
        keys: Option<Vec<(String, Option<Digest>)>>,
    ) -> Result<Option<u32>, Trouble> {
        let now = now_ms();
        let (state, error, failed_step, exit_code) = match &end {
            Err(text) => (AttemptState::Failed, Some(text.clone()), None, None),
            Ok(end) if end.succeeded() => (AttemptState::Succeeded, None, None, None),
            Ok(end) => {
                let state = if end.stopped.is_some() {
                    AttemptState::Cancelled
                } else {
                    AttemptState::Failed
                };
                let step = end.result.as_ref().and_then(|r| r.failed_step);
                let step = step.and_then(|s| u32::try_from(s).ok());
                (state, Some(end.error()), step, end.exit_code)
            }
        };
        if state == AttemptState::Succeeded
            && let Ok(end) = &end
            && let Some(result) = &end.result
        {
            let mut records = Vec::new();
            for artifact in &result.artifacts {
                if let Ok(digest) = artifact.digest.parse() {
                    records.push(Record::Artifact(
                        artifact.name.clone(),
                        digest,
                        artifact.size,
                    ));
                }
            }
            if let Some(handed) = result.handed_on {
                records.push(Record::HandedOn(n, handed.entries, handed.bytes));
            }
            let keys = keys.unwrap_or_default();
            for saved in &result.caches_saved {
                let Ok(digest) = saved.digest.parse::<Digest>() else {
                    continue;
                };
                if let Some((_, key)) = keys.iter().find(|(name, _)| *name == saved.name) {
                    let entry = CacheEntry {
                        name: caches::index_name(
                            self.cache_org().as_deref(),
                            &self.run.pipeline,
                            &saved.name,
                        ),
                        key: *key,
                        blob: digest,
                        size: saved.size,
                        saved_at: now,
                    };
                    let store = self.sh.store.clone();
                    blocking(move || store.cache_put(&entry)).await?;
                }
            }
            if !records.is_empty() {
                let lines: Vec<NewLine> = records.iter().map(|r| system(now, r.line())).collect();
                self.store_lines(n, lines).await?;
                lock(&self.run.outputs).add(&self.plan.id, &records);
            }
        } else if let Some(text) = &error {
            let line = format!("attempt {n} failed: {text}");
            self.system_line(n, &line).await;
        }
        let stage_state = match state {
            AttemptState::Succeeded if self.plan.gates.exit.is_empty() => StageState::Succeeded,
            AttemptState::Succeeded => StageState::WaitingGate,
            AttemptState::Cancelled => StageState::Cancelled,
            _ => StageState::Failed,
        };
        let record = AttemptEnd {
            state,
            finished_at: now,
            exit_code,
            failed_step,
            error: error.clone(),
            log: None,
        };
        // The receipt of an attempt that ends the stage is stored with its end.
        let receipt = self.sign_receipt(stage_state, n, Some(now)).await?;
        let (store, run, id) = (self.sh.store.clone(), self.run.id, self.plan.id.clone());
        let (_, receipt) = blocking(move || {
            store.finish_attempt_with_receipt(&run, &id, n, record, stage_state, receipt.as_deref())
        })
        .await?;
        if stage_state.is_final() {
            failpoint::hit(failpoint::STAGE_ENDED);
            self.sh.groups_changed();
        }
        if let Some(envelope) = receipt {
            self.receipt_signed(n, envelope);
        }
        let note = match (state, &end) {
            (AttemptState::Cancelled, Ok(end)) => end.stopped.clone(),
            _ => error,
        };
        if state == AttemptState::Cancelled {
            // The note says who or what stopped it.
            let (store, run, id, stored) = (
                self.sh.store.clone(),
                self.run.id,
                self.plan.id.clone(),
                note.clone(),
            );
            blocking(move || {
                store.set_stage_state(&run, &id, StageState::Cancelled, stored, now_ms())
            })
            .await?;
        }
        self.publish_stage(stage_state, Some(n), note);
        self.changed().await;
        match state {
            AttemptState::Succeeded => Ok(Some(n)),
            AttemptState::Failed => {
                self.notify(false, Some(n)).await;
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Passes one gate: returns [`Flow::Stop`] when the stage ended there.
    async fn gate(
        &mut self,
        phase: GatePhase,
        index: usize,
        gate: &PlanGate,
        attempt: Option<u32>,
    ) -> Result<Flow, Trouble> {
        let kind = match gate {
            PlanGate::Condition { text, result } => {
                return match dag::condition_failure(text, *result) {
                    Some(note) => {
                        self.system_line(record_attempt(attempt), &note).await;
                        self.set_state(StageState::Failed, Some(note), attempt)
                            .await?;
                        Ok(Flow::Stop)
                    }
                    None => Ok(Flow::Go),
                };
            }
            PlanGate::Input { .. } => GateKind::Input,
            PlanGate::Webhook { .. } => GateKind::Webhook,
            PlanGate::Poll { .. } => GateKind::Poll,
        };
        let at = GateRef::new(
            self.run.id,
            self.plan.id.clone(),
            phase,
            u32::try_from(index).unwrap_or(u32::MAX),
        );
        let store = self.sh.store.clone();
        let key = at.clone();
        let existing = blocking(move || store.gate(&key)).await?;
        let recorded = match existing {
            Some(gate) if gate.state == GateState::Passed => return Ok(Flow::Go),
            Some(gate) if gate.state != GateState::Waiting => return Ok(Flow::Stop),
            Some(gate) => gate,
            None => self.open_gate(&at, kind, gate, attempt).await?,
        };
        match gate {
            PlanGate::Poll {
                command,
                url,
                every,
                ..
            } => {
                let every = every.as_ref().map_or(DEFAULT_POLL_EVERY, |e| e.seconds);
                let check = match (command, url) {
                    (Some(command), _) => Check::Command(command.clone()),
                    (None, Some(url)) => Check::Url(url.clone()),
                    (None, None) => Check::Command("false".into()),
                };
                self.poll(&at, recorded, check, every.max(1), attempt).await
            }
            _ => self.wait(&at, kind, recorded, attempt).await,
        }
    }

    async fn open_gate(
        &mut self,
        at: &GateRef,
        kind: GateKind,
        gate: &PlanGate,
        attempt: Option<u32>,
    ) -> Result<Gate, Trouble> {
        let now = now_ms();
        let mut record = Gate::waiting(at.clone(), kind, now);
        let timeout = match gate {
            PlanGate::Input { timeout, .. }
            | PlanGate::Webhook { timeout, .. }
            | PlanGate::Poll { timeout, .. } => timeout.as_ref().map(|t| t.seconds),
            PlanGate::Condition { .. } => None,
        };
        record.deadline = timeout.map(|secs| now.saturating_add(secs.saturating_mul(1000)));
        let mut shown = None;
        let text = match gate {
            PlanGate::Input {
                message, approvers, ..
            } => {
                let who = if approvers.is_empty() {
                    String::new()
                } else {
                    format!(" (approvers: {})", approvers.join(", "))
                };
                format!(
                    "waiting for approval: {message}{who}; approve with `otto approve {} {}`",
                    self.run.id, self.plan.id
                )
            }
            PlanGate::Webhook { description, .. } => {
                let token = util::random_hex(32).map_err(|e| {
                    store::Error::Encode(format!("no randomness for a webhook token: {e}"))
                })?;
                record.token_hash = Some(Digest::of(token.as_bytes()));
                let url = gates::webhook_url(self.sh.webhook_base.as_deref(), &token);
                shown = Some(url.clone());
                match description {
                    Some(d) => format!("waiting for a callback ({d}): POST {url}"),
                    None => format!("waiting for a callback: POST {url}"),
                }
            }
            PlanGate::Poll {
                command,
                url,
                every,
                ..
            } => {
                let every = every.as_ref().map_or(DEFAULT_POLL_EVERY, |e| e.seconds);
                let what = command
                    .as_ref()
                    .map(|c| format!("`{c}`"))
                    .or_else(|| url.clone())
                    .unwrap_or_default();
                format!("polling {what} every {}", util::human_secs(every))
            }
            PlanGate::Condition { .. } => String::new(),
        };
        let text = match timeout {
            Some(secs) => format!("{text} (times out after {})", util::human_secs(secs)),
            None => text,
        };
        let store = self.sh.store.clone();
        let (record, _) = blocking(move || store.open_gate(record)).await?;
        self.system_line(
            record_attempt(attempt),
            &format!("{} gate: {text}", phase_name(at.phase)),
        )
        .await;
        self.sh.publish(EngineEvent::Gate {
            at: at.clone(),
            gate: kind,
            state: GateState::Waiting,
            note: shown.or(Some(text)),
        });
        self.publish_stage(StageState::WaitingGate, attempt, None);
        self.changed().await;
        Ok(record)
    }

    /// Waits for an input or webhook gate to close: by a person or a callback (through
    /// [`Shared::resolve_gate`]), its deadline, or cancellation.
    async fn wait(
        &mut self,
        at: &GateRef,
        kind: GateKind,
        mut gate: Gate,
        attempt: Option<u32>,
    ) -> Result<Flow, Trouble> {
        loop {
            let notify = self.sh.gate_notify(at);
            let store = self.sh.store.clone();
            let key = at.clone();
            if let Some(current) = blocking(move || store.gate(&key)).await? {
                gate = current;
            }
            match gate.state {
                GateState::Passed => {
                    self.sh.forget_gate(at);
                    return Ok(Flow::Go);
                }
                GateState::Waiting => {}
                _ => {
                    self.sh.forget_gate(at);
                    return Ok(Flow::Stop);
                }
            }
            tokio::select! {
                () = notify.notified() => {}
                () = sleep_until_ms(gate.deadline) => {
                    let note = self.timeout_note(&gate);
                    self.close_gate(at, kind, GateState::TimedOut, note, StageState::Failed, attempt).await?;
                }
                reason = cancelled(&mut self.cancel) => {
                    self.close_gate(at, kind, GateState::Failed, reason, StageState::Cancelled, attempt).await?;
                }
            }
        }
    }

    /// Polls until the check succeeds, the deadline passes, or the stage is cancelled.
    async fn poll(
        &mut self,
        at: &GateRef,
        mut gate: Gate,
        check: Check,
        every: u64,
        attempt: Option<u32>,
    ) -> Result<Flow, Trouble> {
        let kind = GateKind::Poll;
        loop {
            let store = self.sh.store.clone();
            let key = at.clone();
            if let Some(current) = blocking(move || store.gate(&key)).await? {
                gate = current;
            }
            match gate.state {
                GateState::Passed => return Ok(Flow::Go),
                GateState::Waiting => {}
                _ => return Ok(Flow::Stop),
            }
            if let Some(reason) = self.cancel_reason() {
                self.close_gate(
                    at,
                    kind,
                    GateState::Failed,
                    reason,
                    StageState::Cancelled,
                    attempt,
                )
                .await?;
                continue;
            }
            if gate.deadline.is_some_and(|d| now_ms() >= d) {
                let note = self.timeout_note(&gate);
                self.close_gate(
                    at,
                    kind,
                    GateState::TimedOut,
                    note,
                    StageState::Failed,
                    attempt,
                )
                .await?;
                continue;
            }
            let passed = self.check(&check, attempt).await;
            let store = self.sh.store.clone();
            let key = at.clone();
            match blocking(move || store.gate_polled(&key, now_ms())).await {
                Ok(polled) => gate = polled,
                Err(store::Error::GateClosed { .. }) => continue,
                Err(error) => return Err(error.into()),
            }
            if passed {
                let note = format!("the check passed after {} polls", gate.polls);
                let next = next_state(at.phase);
                match self
                    .close_gate(at, kind, GateState::Passed, note, next, attempt)
                    .await
                {
                    Ok(()) => return Ok(Flow::Go),
                    Err(Trouble::Store(store::Error::GateClosed { .. })) => continue,
                    Err(error) => return Err(error),
                }
            }
            let pause = tokio::time::sleep(Duration::from_secs(every));
            tokio::select! {
                () = pause => {}
                () = sleep_until_ms(gate.deadline) => {}
                _ = cancelled(&mut self.cancel) => {}
            }
        }
    }

    /// Runs one poll: the command through a short-lived agent in the stage's workspace,
    /// or a GET of the URL.
    async fn check(&mut self, check: &Check, attempt: Option<u32>) -> bool {
        let command = match check {
            Check::Url(url) if url.starts_with("http://") => {
                return match gates::http_get(url, URL_POLL_TIMEOUT).await {
                    Ok(()) => true,
                    Err(error) => {
                        self.system_line(record_attempt(attempt), &format!("poll: {error}"))
                            .await;
                        false
                    }
                };
            }
            Check::Url(url) => gates::curl_command(url),
            Check::Command(command) => command.clone(),
        };
        let stage_secrets = match secrets::for_stage(&self.sh.vault, &self.plan) {
            Ok(found) => found,
            Err(error) => {
                self.system_line(record_attempt(attempt), &format!("poll: {error}"))
                    .await;
                return false;
            }
        };
        let step = sh_step(&command);
        let end = self
            .helper(attempt, vec![step], &stage_secrets, false)
            .await;
        end.succeeded()
    }

    /// Runs `notify` steps for the stage's outcome, if it has any. What they do does not
    /// change the stage's outcome.
    async fn notify(&mut self, success: bool, attempt: Option<u32>) {
        self.send_messages(success, attempt);
        let notify = &self.plan.notify;
        let mut steps = if success {
            notify.success.clone()
        } else {
            notify.failure.clone()
        };
        steps.extend(notify.complete.iter().cloned());
        if steps.is_empty() {
            return;
        }
        let outcome = if success { "success" } else { "failure" };
        let n = record_attempt(attempt);
        self.system_line(n, &format!("notify: running the steps for {outcome}"))
            .await;
        let stage_secrets = match secrets::for_stage(&self.sh.vault, &self.plan) {
            Ok(found) => found,
            Err(error) => {
                self.system_line(n, &format!("notify: {error}")).await;
                return;
            }
        };
        let end = self.helper(attempt, steps, &stage_secrets, true).await;
        if !end.succeeded() {
            self.system_line(n, &format!("notify failed: {}", end.error()))
                .await;
        }
    }

    /// Sends the stage's `notify` messages for its outcome from a task of their own (the
    /// run never waits for them); what came of each is a line of the stage's log.
    fn send_messages(&self, success: bool, attempt: Option<u32>) {
        let messages = self.plan.notify.messages.for_outcome(success);
        if messages.is_empty() {
            return;
        }
        let about = crate::outbound::notify::About {
            pipeline: self.run.pipeline.clone(),
            stage: self.plan.id.clone(),
            run: self.run.id.to_string(),
            success,
            commit: self.run.body.facts.commit.clone(),
            branch: self.run.body.facts.branch.clone(),
            node: self.sh.node_name.clone(),
        };
        let (sh, run, stage, n) = (
            self.sh.clone(),
            self.run.id,
            self.plan.id.clone(),
            record_attempt(attempt),
        );
        tokio::spawn(async move {
            let lines = match &sh.notifier {
                Some(notifier) => {
                    crate::outbound::notify::send(
                        &notifier.http,
                        &sh.vault,
                        &notifier.config,
                        &about,
                        &messages,
                    )
                    .await
                }
                None => vec!["notify: this node sends no messages; not sent".to_owned()],
            };
            let lines: Vec<NewLine> = lines.into_iter().map(|l| system(now_ms(), l)).collect();
            let (logs, id) = (sh.logs.clone(), stage.clone());
            match blocking(move || logs.append(&run, &id, n, &lines)).await {
                Ok(appended) if appended.first <= appended.last => {
                    sh.publish(EngineEvent::Log {
                        run,
                        stage,
                        attempt: n,
                        first: appended.first,
                        last: appended.last,
                    });
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(target: "otto_node::engine", %error, "cannot store a log line");
                }
            }
        });
    }

    /// Runs steps for a poll or `notify` in the stage's workspace (or a fresh one with
    /// the source snapshot when no attempt ran). A notify job is never cancelled: it runs
    /// because the stage ended.
    async fn helper(
        &mut self,
        attempt: Option<u32>,
        steps: Vec<Step>,
        stage_secrets: &StageSecrets,
        uncancellable: bool,
    ) -> AgentEnd {
        let n = record_attempt(attempt);
        let workspace = self.workspace(attempt);
        let fresh = attempt.is_none() || !workspace.exists();
        let mut job = self.job(n, steps, workspace, stage_secrets);
        let mut allowed = HashSet::new();
        let source = if fresh {
            self.stage_source().await.ok().flatten()
        } else {
            None
        };
        if let Some(source) = source {
            job.source = Some(SourceRef {
                digest: source.to_string(),
            });
            allowed.insert(source);
        }
        let spec = AgentJob {
            run: self.run.id,
            stage: self.plan.id.clone(),
            attempt: n,
            job,
            masker: stage_secrets.masker(),
            allowed,
            own_steps: false,
        };
        // The node's agent slots cap helpers too; they run outside an attempt's turn.
        let _slot = self.sh.slots.clone().acquire_owned().await;
        if uncancellable {
            let (_keep, mut never) = watch::channel(None);
            agent::run(&self.sh, spec, &mut never).await
        } else {
            let mut cancel = self.cancel.clone();
            agent::run(&self.sh, spec, &mut cancel).await
        }
    }

    /// Waits until this stage holds its concurrency group, when it has one: it joins the
    /// group's queue (on this node, the one that runs it) and waits, pending with the note
    /// `queued — waiting for run X in group G`, until the members before it ended. Joining
    /// with `cancel_in_progress` cancels the members before it that came from the same org
    /// (this node's own runs, or the same asking org's). Cancelled while it waits, or by a
    /// newer member; refused when the group is full.
    async fn take_group(&mut self) -> Result<Taken, Trouble> {
        let Some(concurrency) = self.plan.concurrency.clone() else {
            return Ok(Taken::Go);
        };
        let group = concurrency.group.clone();
        if let Err(why) = plan::check_group(&group) {
            return Ok(Taken::Refused(format!("bad concurrency group: {why}")));
        }
        // Subscribed before looking, so no change after the look is missed.
        let mut ticks = self.sh.groups.subscribe();
        let member = GroupMember {
            run: self.run.id,
            stage: Some(self.plan.id.clone()),
            org: if self.run.started_here {
                None
            } else {
                Some(self.run.started_by_org.clone().unwrap_or_default())
            },
            cancel_in_progress: concurrency.cancel_in_progress,
            joined_at: now_ms(),
            superseded_by: None,
        };
        let (store, name) = (self.sh.store.clone(), group.clone());
        let joined = blocking(move || {
            store.join_group(GroupKind::Stage, &name, member, super::MAX_GROUP_MEMBERS)
        })
        .await?;
        let mut turn = match joined {
            Joined::Full { members } => {
                return Ok(Taken::Refused(format!(
                    "concurrency group {group} already has {members} stages running or \
                     waiting, as many as a group holds ({}); the stage was not queued",
                    super::MAX_GROUP_MEMBERS
                )));
            }
            Joined::In { turn, superseded } => {
                let reason = format!("{SUPERSEDED}{group} in favour of run {}", self.run.id);
                for member in &superseded {
                    if let Some(stage) = &member.stage {
                        tracing::info!(target: "otto_node::engine", run = %member.run, %stage, by = %self.run.id, %group, "cancelled in favour of a newer stage of its concurrency group");
                        self.sh.cancel_stage(member.run, stage, reason.clone());
                    }
                }
                if !superseded.is_empty() {
                    self.sh.groups_changed();
                }
                turn
            }
        };
        let mut noted: Option<String> = None;
        let mut cancel_open = true;
        loop {
            match turn {
                GroupTurn::Holds => return Ok(Taken::Go),
                GroupTurn::Superseded { by } => {
                    return Ok(Taken::Cancelled(format!(
                        "{SUPERSEDED}{group} in favour of run {by}"
                    )));
                }
                GroupTurn::Waits { holder, .. } => {
                    let note = format!("queued — waiting for run {} in group {group}", holder.run);
                    if noted.as_ref() != Some(&note) {
                        tracing::info!(target: "otto_node::engine", run = %self.run.id, stage = %self.plan.id, %note, "stage queued");
                        self.set_state(StageState::Pending, Some(note.clone()), None)
                            .await?;
                        noted = Some(note);
                    }
                }
            }
            if let Some(reason) = self.cancel_reason() {
                return Ok(Taken::Cancelled(reason));
            }
            tokio::select! {
                _ = ticks.changed() => {}
                changed = self.cancel.changed(), if cancel_open => {
                    cancel_open = changed.is_ok();
                }
            }
            let (store, name, run, stage) = (
                self.sh.store.clone(),
                group.clone(),
                self.run.id,
                self.plan.id.clone(),
            );
            let now =
                blocking(move || store.group_turn(GroupKind::Stage, &name, &run, Some(&stage)))
                    .await?;
            // Not a member any more (taken out by hand): it takes its turn now rather than
            // wait for nothing.
            turn = now.unwrap_or(GroupTurn::Holds);
        }
    }

    /// Waits until this stage may start an attempt: a slot of its run, when another org
    /// started the run (at most that org's `max_parallel` stages of one run at once), then
    /// one of the node's agent slots. While it waits the stage is pending with a note
    /// saying why (`queued: …`), which the other nodes of the run see. `Err` when the
    /// stage is cancelled while it waits.
    async fn wait_turn(&mut self) -> Result<Result<Turn, String>, Trouble> {
        let run_slots = match (&self.sh.max_parallel, self.run.started_here) {
            (Some(max_parallel), false) => {
                let org = self.run.started_by_org.clone().unwrap_or_default();
                let max = (max_parallel.0)(&org).max(1);
                let slots = lock(&self.sh.run_slots)
                    .entry(self.run.id)
                    .or_insert_with(|| Arc::new(Semaphore::new(max as usize)))
                    .clone();
                Some((org, max, slots))
            }
            _ => None,
        };
        let run = match run_slots {
            Some((org, max, slots)) => {
                let note = format!(
                    "queued: {max} stages of this run run here already, as many as the \
                     policy for {org} allows at once (max_parallel)"
                );
                let taken = self.take(slots, note).await?;
                // Dropping it forgets the run's slots when no other stage uses them.
                let mut slot = RunSlot {
                    sh: self.sh.clone(),
                    run: self.run.id,
                    permit: None,
                };
                match taken {
                    Ok(permit) => {
                        slot.permit = Some(permit);
                        Some(slot)
                    }
                    Err(reason) => return Ok(Err(reason)),
                }
            }
            None => None,
        };
        let note = format!(
            "queued: all {} agent slots of this node are busy ([agent] slots)",
            self.sh.slot_count
        );
        let node = match self.take(self.sh.slots.clone(), note).await? {
            Ok(permit) => permit,
            Err(reason) => return Ok(Err(reason)),
        };
        Ok(Ok(Turn {
            _run: run,
            _node: node,
        }))
    }

    /// A permit of `slots`: at once when one is free, else after saying `note` and
    /// waiting. `Err` with the reason when the stage is cancelled first.
    async fn take(
        &mut self,
        slots: Arc<Semaphore>,
        note: String,
    ) -> Result<Result<OwnedSemaphorePermit, String>, Trouble> {
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            return Ok(Ok(permit));
        }
        tracing::info!(target: "otto_node::engine", run = %self.run.id, stage = %self.plan.id, %note, "stage queued");
        self.set_state(StageState::Pending, Some(note), None)
            .await?;
        loop {
            if let Some(reason) = self.cancel_reason() {
                return Ok(Err(reason));
            }
            tokio::select! {
                permit = slots.clone().acquire_owned() => {
                    // The semaphore is never closed.
                    if let Ok(permit) = permit {
                        return Ok(Ok(permit));
                    }
                }
                changed = self.cancel.changed() => {
                    if changed.is_err() {
                        // Nobody can cancel any more: wait for the slot.
                        return Ok(slots.acquire_owned().await.map_err(|e| e.to_string()));
                    }
                }
            }
        }
    }

    /// The source a fresh workspace of this stage starts from. On the node that started
    /// the run, the run's snapshot. Elsewhere the stage is another org's (or another
    /// node's) definition: its workspace holds only the files it names with `uses`, each
    /// checked against the digest the plan records (and the approved definition covers),
    /// stored as a snapshot of their own; nothing when it names none. `Err` says why the
    /// stage cannot start.
    async fn stage_source(&self) -> Result<Option<Digest>, String> {
        if self.run.started_here {
            return self.run_snapshot().await;
        }
        // A run from a commit: the commit must be here, checked out, whatever the stage
        // uses of it (the exchange fetched it or took it out of the asker's bundle when it
        // accepted the offer; if that failed, this says why).
        let snapshot = if self.run.git.is_some() {
            self.run_snapshot().await?
        } else {
            None
        };
        if self.plan.uses.is_empty() {
            return Ok(None);
        }
        let snapshot = match snapshot {
            Some(snapshot) => Some(snapshot),
            None => self.run_snapshot().await?,
        };
        let Some(snapshot) = snapshot else {
            return Err("the stage uses source files, but the run has no source snapshot".into());
        };
        let (blobs, uses) = (self.sh.blobs.clone(), self.plan.uses.clone());
        let selected = blocking(move || {
            let bytes = blobs
                .read(&snapshot)
                .map_err(|e| format!("the source snapshot is not here: {e}"))?;
            let selected = crate::snapshot::select(&bytes, &uses)
                .map_err(|e| format!("the stage's source files do not match its plan: {e}"))?;
            blobs.put_bytes(&selected).map_err(|e| e.to_string())
        })
        .await?;
        Ok(Some(selected))
    }

    /// The run's source snapshot: the one it was started with, or the checkout of its
    /// commit from this node's mirror of its repository (fetched when missing). `Err`
    /// says why a git source cannot be checked out here.
    async fn run_snapshot(&self) -> Result<Option<Digest>, String> {
        if let Some(digest) = self.run.source {
            return Ok(Some(digest));
        }
        let Some((url, commit)) = &self.run.git else {
            return Ok(None);
        };
        let Some(checkouts) = &self.sh.checkouts else {
            return Err(format!("this node cannot check out {url} at {commit}"));
        };
        let checkout = if self.run.started_here {
            checkouts
                .repos
                .checkout(url, commit, &self.sh.blobs, checkouts.max_bytes)
                .await
        } else {
            checkouts
                .repos
                .checkout_offered(url, commit, &self.sh.blobs, checkouts.max_bytes)
                .await
        };
        checkout
            .map(Some)
            .map_err(|e| format!("cannot check out commit {commit} of {url}: {e}"))
    }

    /// The commit time of the run's commit when its source is one, for reproducible builds'
    /// `SOURCE_DATE_EPOCH` (the checkout's files carry the same time); an environment's
    /// own setting wins.
    async fn source_date_epoch(&self) -> Option<i64> {
        let (url, commit) = self.run.git.as_ref()?;
        let checkouts = self.sh.checkouts.as_ref()?;
        match checkouts.repos.commit_time(url, commit).await {
            Ok(time) => Some(time),
            Err(e) => {
                tracing::warn!(target: "otto_node::engine", run = %self.run.id, "no SOURCE_DATE_EPOCH: {e}");
                None
            }
        }
    }

    /// A job with the stage's settings and secrets; the caller fills in the rest.
    fn job(
        &self,
        attempt: u32,
        steps: Vec<Step>,
        workspace: PathBuf,
        stage_secrets: &StageSecrets,
    ) -> Job {
        let env = self
            .plan
            .environment
            .as_ref()
            .and_then(|e| self.run.body.environments.get(e))
            .map(|e| e.settings.clone())
            .unwrap_or_default();
        Job {
            run: self.run.id.to_string(),
            stage: self.plan.id.clone(),
            attempt,
            steps,
            workspace,
            env,
            secrets: stage_secrets.values.clone(),
            secret_env: stage_secrets.env,
            artifacts: Default::default(),
            source: None,
            // What another org's approval covers, for the agent to keep as approved; on the
            // node that started the run the stage's own plan decides, and the workspace is
            // the whole snapshot.
            uses: if self.run.started_here {
                Vec::new()
            } else {
                self.plan.uses.clone()
            },
            restore_caches: Vec::new(),
            save_caches: Vec::new(),
            packages: Vec::new(),
            timeout_secs: None,
            kill_grace_secs: otto_agent_protocol::DEFAULT_KILL_GRACE_SECS,
            max_artifact_bytes: self.sh.max_artifact_bytes,
            limits: self.sh.wall.limits,
            wall: Some(Wall {
                hidden: self.sh.wall.hidden.clone(),
                writable: self.sh.wall.writable.clone(),
                user: self.sh.wall.user,
                required: self.is_foreign() && self.sh.wall.refuse_foreign_unwalled,
            }),
            container: None,
            start_from: None,
            hand_on: None,
            // One directory for every attempt on this node: each step sees its own
            // workspace there (its own mount namespace), so absolute paths that tools
            // record stay the same from run to run.
            stable_workspace: Some(self.sh.work_dir.join(STABLE_WORKSPACE)),
        }
    }

    /// Where attempt `attempt` of `stage` leaves its workspace for the stages that start
    /// from it: `<work>/<run>/.handed/<stage>-<attempt>`. Beside the attempts' workspaces
    /// (whose names never start with a dot), in the work directory the wall hides from
    /// every step, and removed with the run's directory.
    fn handed_dir(&self, stage: &str, attempt: u32) -> PathBuf {
        self.sh
            .work_dir
            .join(self.run.id.to_string())
            .join(".handed")
            .join(format!("{}-{attempt}", util::dir_name(stage)))
    }

    /// The workspace of an attempt: `<work>/<run>/<stage>-<n>`, or `<stage>-notify`
    /// before any attempt.
    fn workspace(&self, attempt: Option<u32>) -> PathBuf {
        let suffix = attempt.map_or_else(|| "none".to_owned(), |n| n.to_string());
        self.sh
            .work_dir
            .join(self.run.id.to_string())
            .join(format!("{}-{suffix}", util::dir_name(&self.plan.id)))
    }

    async fn close_gate(
        &self,
        at: &GateRef,
        kind: GateKind,
        state: GateState,
        note: String,
        stage_state: StageState,
        attempt: Option<u32>,
    ) -> Result<(), Trouble> {
        let resolution = GateResolution {
            state,
            approved_by: None,
            note: Some(note.clone()),
            at: now_ms(),
        };
        match self
            .sh
            .resolve_gate(at, kind, resolution, stage_state)
            .await
        {
            Ok(()) => {}
            // Someone else closed it first; the caller reads how.
            Err(store::Error::GateClosed { .. }) => return Ok(()),
            Err(error) => return Err(error.into()),
        }
        if state != GateState::Passed {
            self.system_line(record_attempt(attempt), &note).await;
            self.publish_stage(stage_state, attempt, Some(note));
        }
        self.changed().await;
        Ok(())
    }

    fn timeout_note(&self, gate: &Gate) -> String {
        let secs = gate
            .deadline
            .unwrap_or_default()
            .saturating_sub(gate.opened_at)
            / 1000;
        format!(
            "{} gate timed out after {}",
            phase_name(gate.at.phase),
            util::human_secs(secs)
        )
    }

    async fn load(&self) -> Result<Stage, Trouble> {
        let (store, run, id) = (self.sh.store.clone(), self.run.id, self.plan.id.clone());
        let found = blocking(move || store.stage(&run, &id)).await?;
        found.ok_or_else(|| {
            Trouble::Store(store::Error::UnknownStage {
                run: self.run.id,
                stage: self.plan.id.clone(),
            })
        })
    }

    /// Moves the stage to `state`. When an attempt ends it (a final state), its receipt
    /// is signed and stored in the same transaction as the state.
    async fn set_state(
        &self,
        state: StageState,
        note: Option<String>,
        attempt: Option<u32>,
    ) -> Result<(), Trouble> {
        let receipt = match attempt {
            Some(n) if state.is_final() => self.sign_receipt(state, n, None).await?.map(|r| (n, r)),
            _ => None,
        };
        let (store, run, id) = (self.sh.store.clone(), self.run.id, self.plan.id.clone());
        let stored = note.clone();
        let receipt = blocking(move || match receipt {
            Some((n, bytes)) => store
                .end_stage_with_receipt(&run, &id, state, stored, now_ms(), (n, &bytes))
                .map(|kept| Some((n, kept))),
            None => store
                .set_stage_state(&run, &id, state, stored, now_ms())
                .map(|_| None),
        })
        .await?;
        if state.is_final() {
            failpoint::hit(failpoint::STAGE_ENDED);
            // The store let go of its concurrency group with the final state.
            self.sh.groups_changed();
        }
        if let Some((n, envelope)) = receipt {
            self.receipt_signed(n, envelope);
        }
        self.publish_stage(state, attempt, note);
        self.changed().await;
        Ok(())
    }

    /// Marks the stage handed off with `note`; when this node moves it on to `owner`, the
    /// handoff intent goes into the store in the same transaction and the exchange is
    /// told (it also finds the intent there after a crash).
    async fn hand_off(&self, note: String, owner: Option<String>) -> Result<(), Trouble> {
        let (store, run, id) = (self.sh.store.clone(), self.run.id, self.plan.id.clone());
        let (stored, intent) = (note.clone(), owner.clone());
        blocking(move || {
            store.hand_off_stage(&run, &id, Some(stored), intent.as_deref(), now_ms())
        })
        .await?;
        self.publish_stage(StageState::HandedOff, None, Some(note));
        if let Some(owner) = owner {
            failpoint::hit(failpoint::HANDED_OFF);
            self.sh.publish(EngineEvent::HandOff {
                run: self.run.id,
                stage: self.plan.id.clone(),
                owner,
            });
            self.sh.notify(Notice::HandOff {
                run: self.run.id,
                stage: self.plan.id.clone(),
            });
        }
        self.changed().await;
        Ok(())
    }

    /// Why this node must not run this stage, when it is a stage of a run another org
    /// started that no offer asked for (this node moves it on itself): the same scope and
    /// definition rules an offer meets.
    fn refusal(&self) -> Option<String> {
        if self.run.started_here || self.sh.was_offered(&self.run.id, &self.plan.id) {
            return None;
        }
        let org = self.run.started_by_org.as_deref().unwrap_or_default();
        match &self.sh.definitions {
            Some(check) => (check.0)(org, &self.run.body, &self.plan).err(),
            None => Some("this node runs no stage of another org's run without an offer".into()),
        }
    }

    /// Whose caches this stage's run uses: `None` for this node's own org's runs, else the
    /// org that offered it the run (a run whose org is not known shares with no one).
    fn cache_org(&self) -> Option<String> {
        if !self.is_foreign() {
            return None;
        }
        Some(
            self.run
                .started_by_org
                .clone()
                .unwrap_or_else(|| format!("unknown-{}", self.run.id)),
        )
    }

    /// Whether this is a stage of another org's run.
    fn is_foreign(&self) -> bool {
        let mine = self.sh.signer.as_ref().map(|s| s.org.as_str());
        !self.run.started_here && (mine.is_none() || self.run.started_by_org.as_deref() != mine)
    }

    /// Why this node must not run this stage unwalled: it is another org's, the kernel
    /// cannot build the wall and the node is set to refuse such stages.
    fn unwalled(&self) -> Option<String> {
        self.sh.wall.refuses_others().filter(|_| self.is_foreign())
    }

    /// Who moves this stage on ([`rules::mover`]).
    async fn mover(&self) -> Result<Mover, Trouble> {
        let Some(signer) = &self.sh.signer else {
            return Ok(if self.run.started_here {
                Mover::Me
            } else {
                Mover::Other(None)
            });
        };
        let me = otto_protocol::KeyBytes(*signer.key.public_key().as_bytes());
        let (store, run) = (self.sh.store.clone(), self.run.id);
        let stored = blocking(move || receipts::stored(&store, &run)).await?;
        Ok(rules::mover(
            &self.run.body,
            &self.plan,
            &stored,
            &me,
            self.run.started_here,
        ))
    }

    /// Publishes the stored receipt of attempt `n` and tells the exchange.
    fn receipt_signed(&self, n: u32, envelope: Vec<u8>) {
        self.sh.publish(EngineEvent::Receipt {
            run: self.run.id,
            stage: self.plan.id.clone(),
            attempt: n,
            envelope: envelope.clone(),
        });
        self.sh.notify(Notice::Receipt {
            run: self.run.id,
            stage: self.plan.id.clone(),
            attempt: n,
            envelope,
        });
    }

    /// Signs the receipt of attempt `n`, which ends in `state` at `finished_at` (else when
    /// the store says, else now); the caller stores it with the state. `None` when the
    /// node signs no receipts or `state` is not an ending.
    async fn sign_receipt(
        &self,
        state: StageState,
        n: u32,
        finished_at: Option<u64>,
    ) -> Result<Option<Vec<u8>>, Trouble> {
        if self.sh.signer.is_none() || !state.is_final() {
            return Ok(None);
        }
        let outputs = lock(&self.run.outputs)
            .of_stage(&self.plan.id)
            .iter()
            .map(|(name, digest, size)| otto_protocol::Artifact {
                name: name.clone(),
                sha256: otto_protocol::Digest(*digest.as_bytes()),
                size: *size,
            })
            .collect();
        let (sh, ctx, stage) = (self.sh.clone(), self.run.clone(), self.plan.id.clone());
        let signed = blocking(move || {
            let Some(signer) = &sh.signer else {
                return Ok(None);
            };
            let record = sh.store.stage(&ctx.id, &stage)?;
            let attempt = record
                .as_ref()
                .and_then(|r| r.attempts.iter().find(|a| a.n == n));
            let started = attempt.map_or_else(now_ms, |a| a.started_at);
            let finished = attempt
                .and_then(|a| a.finished_at)
                .or(finished_at)
                .unwrap_or_else(now_ms);
            let ended = Ended {
                run: ctx.id,
                plan_digest: ctx.plan_digest.clone(),
                body: &ctx.body,
                stage: &stage,
                attempt: n,
                state,
                started_at_ms: started,
                finished_at_ms: finished,
                outputs,
            };
            receipts::sign_ended(&sh.store, &sh.logs, signer, ended)
        })
        .await?;
        Ok(signed.map(|envelope| otto_protocol::encode_envelope(&envelope)))
    }

    fn publish_stage(&self, state: StageState, attempt: Option<u32>, note: Option<String>) {
        self.sh.publish(EngineEvent::Stage {
            run: self.run.id,
            stage: self.plan.id.clone(),
            state,
            attempt,
            note,
        });
    }

    async fn changed(&self) {
        let _ = self.changed.send(self.run.id).await;
    }

    fn cancel_reason(&self) -> Option<String> {
        self.cancel.borrow().clone()
    }

    /// Stores and publishes a line of the node's own.
    async fn system_line(&self, attempt: u32, text: &str) {
        if let Err(error) = self
            .store_lines(attempt, vec![system(now_ms(), text.to_owned())])
            .await
        {
            tracing::warn!(target: "otto_node::engine", %error, "cannot store a log line");
        }
    }

    async fn store_lines(&self, attempt: u32, lines: Vec<NewLine>) -> Result<(), Trouble> {
        let (logs, run, id) = (self.sh.logs.clone(), self.run.id, self.plan.id.clone());
        let appended = blocking(move || logs.append(&run, &id, attempt, &lines)).await?;
        if appended.first <= appended.last {
            self.sh.publish(EngineEvent::Log {
                run: self.run.id,
                stage: self.plan.id.clone(),
                attempt,
                first: appended.first,
                last: appended.last,
            });
        }
        Ok(())
    }
}

/// What a poll gate checks.
enum Check {
    Command(String),
    Url(String),
}

/// Waits until a stage is cancelled and returns why.
pub(crate) async fn cancelled(cancel: &mut watch::Receiver<Option<String>>) -> String {
    loop {
        if let Some(reason) = cancel.borrow_and_update().clone() {
            return reason;
        }
        if cancel.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Where a gate that passed leaves its stage: pending before the steps, still waiting on
/// the exit gates after them.
pub(crate) fn next_state(phase: GatePhase) -> StageState {
    match phase {
        GatePhase::Enter => StageState::Pending,
        GatePhase::Exit => StageState::WaitingGate,
    }
}

/// The attempt number log lines go under when there may be no attempt yet.
fn record_attempt(attempt: Option<u32>) -> u32 {
    attempt.unwrap_or(0)
}

fn system(time: u64, text: String) -> NewLine {
    NewLine {
        time,
        stream: Stream::System,
        step: None,
        text,
    }
}

fn sh_step(script: &str) -> Step {
    Step {
        args: vec![serde_json::Value::String(script.to_owned())],
        block: Vec::new(),
        kwargs: Default::default(),
        symbol: "sh".into(),
    }
}

async fn sleep_until_ms(deadline: Option<u64>) {
    match deadline {
        Some(at) => {
            let wait = at.saturating_sub(now_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        None => std::future::pending().await,
    }
}
