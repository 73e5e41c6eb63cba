//! The engine task: owns the runs in progress and their stage tasks, starts stages as
//! their dependencies finish, keeps each run's state, and ends runs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use rustix::process::Signal;
use tokio::sync::{mpsc, watch};
use tokio::task::{Id, JoinSet};

use super::agent;
use super::outputs;
use super::stage::{RunCtx, StageTask};
use super::util::{blocking, lock, now_ms};
use super::{Command, EngineError, EngineEvent, MAX_GROUP_MEMBERS, Shared};
use crate::store::{
    GroupKind, GroupMember, GroupTurn, Joined, NewLine, QUEUED_NOTE, RunId, RunState, Source,
    StageState, Stream,
};

/// How the note of a stage cancelled in favour of a newer member of its concurrency group
/// begins (the run then ends cancelled, not failed).
pub(crate) const SUPERSEDED: &str = "cancelled by concurrency group ";

/// How `started_by` begins for a run another node offered a stage of
/// (`node:<name>@<org>`).
pub(crate) const OFFERED_BY: &str = "node:";

/// How many stage state changes may wait for the engine task.
const CHANGES_BUFFER: usize = 1024;

/// The engine task.
pub(crate) struct Orchestrator {
    sh: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    changes_tx: mpsc::Sender<RunId>,
    changes: mpsc::Receiver<RunId>,
    tasks: JoinSet<()>,
    /// Which stage each task drives.
    task_ids: HashMap<Id, (RunId, String)>,
    runs: HashMap<RunId, Active>,
    /// Ticks when a concurrency group may have changed ([`Shared::groups`]).
    groups: watch::Receiver<u64>,
}

/// A run in progress.
struct Active {
    ctx: Arc<RunCtx>,
    state: RunState,
    /// The stages driven by a task now, with the sender that cancels the task.
    tasks: HashMap<String, watch::Sender<Option<String>>>,
    /// Why the run is ending early, once it is.
    ending: Option<Ending>,
    /// Whether the run holds its pipeline's concurrency group (or has none to hold).
    holds_group: bool,
    /// The note last written on the run.
    note: Option<String>,
}

#[derive(Debug, Clone)]
enum Ending {
    /// A stage failed: the rest is cancelled and the run fails.
    Failed(String),
    /// Someone cancelled the run; who.
    Cancelled(String),
    /// The run was refused before it started, and why.
    Refused(String),
}

impl Orchestrator {
    pub(crate) fn new(sh: Arc<Shared>, commands: mpsc::Receiver<Command>) -> Self {
        let (changes_tx, changes) = mpsc::channel(CHANGES_BUFFER);
        let groups = sh.groups.subscribe();
        Self {
            groups,
            sh,
            commands,
            changes_tx,
            changes,
            tasks: JoinSet::new(),
            task_ids: HashMap::new(),
            runs: HashMap::new(),
        }
    }

    /// Recovers, then serves commands and drives runs until shut down. When every handle
    /// is gone, it goes on until no run is in progress.
    pub(crate) async fn run(mut self) {
        self.recover().await;
        let mut open = true;
        loop {
            if !open && self.tasks.is_empty() {
                break;
            }
            tokio::select! {
                command = self.commands.recv(), if open => match command {
                    Some(Command::Submit { run, reply }) => {
                        let _ = reply.send(self.submit(run).await);
                    }
                    Some(Command::Cancel { run, who, reply }) => {
                        let _ = reply.send(self.cancel(run, who).await);
                    }
                    Some(Command::Retry { run, stage, who, reply }) => {
                        let _ = reply.send(self.retry(run, stage, who).await);
                    }
                    Some(Command::Offered { run, stage, by, reply }) => {
                        let _ = reply.send(self.offered(run, stage, by).await);
                    }
                    Some(Command::Remote { run, stage, records, reply }) => {
                        if let Some(active) = self.runs.get(&run) {
                            lock(&active.ctx.outputs).add(&stage, &records);
                        }
                        let _ = reply.send(self.poke(run).await);
                    }
                    Some(Command::Shutdown { reply }) => {
                        self.shutdown().await;
                        let _ = reply.send(());
                        return;
                    }
                    None => open = false,
                },
                Some(done) = self.tasks.join_next_with_id() => {
                    let id = match &done {
                        Ok((id, ())) => *id,
                        Err(error) => {
                            tracing::error!(target: "otto_node::engine", %error, "a stage task failed");
                            error.id()
                        }
                    };
                    if let Some((run, stage)) = self.task_ids.remove(&id) {
                        lock(&self.sh.stage_cancels).remove(&(run, stage.clone()));
                        if let Some(active) = self.runs.get_mut(&run) {
                            active.tasks.remove(&stage);
                        }
                        self.advance(run).await;
                    }
                }
                Some(run) = self.changes.recv() => self.advance(run).await,
                Ok(()) = self.groups.changed() => {
                    // A group may have a new holder: the runs waiting for one look again.
                    let waiting: Vec<RunId> = self
                        .runs
                        .iter()
                        .filter(|(_, a)| !a.holds_group && a.ending.is_none())
                        .map(|(id, _)| *id)
                        .collect();
                    for run in waiting {
                        self.advance(run).await;
                    }
                }
            }
        }
    }

    async fn recover(&mut self) {
        // Socket directories left by a previous node process serve nothing any more.
        let run_dir = self.sh.run_dir.clone();
        blocking(move || clear_dir(&run_dir)).await;
        let store = self.sh.store.clone();
        match blocking(move || store.prune_groups()).await {
            Ok(0) => {}
            Ok(pruned) => {
                tracing::info!(target: "otto_node::engine", pruned, "concurrency group members of ended runs taken out");
            }
            Err(error) => {
                tracing::warn!(target: "otto_node::engine", %error, "cannot prune the concurrency groups");
            }
        }
        let store = self.sh.store.clone();
        let recovery = match blocking(move || store.recover(now_ms())).await {
            Ok(recovery) => recovery,
            Err(error) => {
                tracing::error!(target: "otto_node::engine", %error, "recovery failed; no run is resumed");
                return;
            }
        };
        for interrupted in &recovery.interrupted {
            if let Some(pid) = interrupted.agent_pid {
                agent::stop_stale_agent(pid, &self.sh.run_dir);
            }
            let text = format!(
                "attempt {} was interrupted: the node stopped while it ran",
                interrupted.attempt
            );
            let logs = self.sh.logs.clone();
            let (run, stage, n) = (
                interrupted.run,
                interrupted.stage.clone(),
                interrupted.attempt,
            );
            let line = NewLine {
                time: now_ms(),
                stream: Stream::System,
                step: None,
                text,
            };
            if let Err(error) = blocking(move || logs.append(&run, &stage, n, &[line])).await {
                tracing::warn!(target: "otto_node::engine", %error, "cannot log an interruption");
            }
        }
        if !recovery.runs.is_empty() {
            tracing::info!(target: "otto_node::engine", runs = recovery.runs.len(),
                retries = recovery.retry.len(), gates = recovery.gates.len(), "resuming unfinished runs");
        }
        for run in recovery.runs {
            match self.load(run.id).await {
                Ok(()) => self.advance(run.id).await,
                Err(error) => {
                    tracing::error!(target: "otto_node::engine", run = %run.id, %error, "cannot resume a run");
                }
            }
        }
    }

    async fn submit(&mut self, run: RunId) -> Result<(), EngineError> {
        if self.runs.contains_key(&run) {
            return Ok(());
        }
        self.load(run).await?;
        // A run refused by its concurrency group says so to whoever submitted it.
        match self.try_advance(run).await {
            Err(error @ EngineError::GroupFull { .. }) => Err(error),
            Err(error) => {
                tracing::error!(target: "otto_node::engine", %run, %error, "cannot advance the run");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// Moves a run on, loading it first if it is not in progress here; a finished run
    /// stays finished.
    async fn poke(&mut self, run: RunId) -> Result<(), EngineError> {
        if !self.runs.contains_key(&run) {
            match self.load(run).await {
                Ok(()) => {}
                Err(EngineError::Finished(_)) => return Ok(()),
                Err(error) => return Err(error),
            }
        }
        self.advance(run).await;
        Ok(())
    }

    async fn cancel(&mut self, run: RunId, who: String) -> Result<(), EngineError> {
        if !self.runs.contains_key(&run) {
            self.load(run).await?;
        }
        if let Some(active) = self.runs.get_mut(&run) {
            let reason = format!("cancelled by {who}");
            active.ending = Some(Ending::Cancelled(who));
            for cancel in active.tasks.values() {
                let _ = cancel.send(Some(reason.clone()));
            }
        }
        self.advance(run).await;
        Ok(())
    }

    /// `otto retry`: see [`super::Engine::retry`].
    async fn retry(
        &mut self,
        run: RunId,
        stage: Option<String>,
        who: String,
    ) -> Result<Vec<String>, EngineError> {
        if self.runs.contains_key(&run) {
            return Err(EngineError::NotRetryable(format!(
                "run {run} has not ended; retry its failed stages once it has (or cancel it \
                 first with `otto cancel {run}`)"
            )));
        }
        let store = self.sh.store.clone();
        let me = self
            .sh
            .signer
            .as_ref()
            .map(|s| otto_protocol::KeyBytes(*s.key.public_key().as_bytes()));
        let who_retried = who.clone();
        let (chosen, asked) = blocking(move || -> Result<(Vec<String>, Vec<_>), EngineError> {
            let record = store.run(&run)?.ok_or(EngineError::UnknownRun(run))?;
            if record.started_by.starts_with(OFFERED_BY) {
                return Err(EngineError::NotRetryable(format!(
                    "run {run} was started by {}; only the node that started a run retries \
                     its stages",
                    record.started_by.trim_start_matches(OFFERED_BY)
                )));
            }
            if !record.state.is_final() {
                return Err(EngineError::NotRetryable(format!(
                    "run {run} has not ended"
                )));
            }
            if record.state == RunState::Succeeded {
                return Err(EngineError::NotRetryable(format!(
                    "run {run} succeeded; a succeeded stage never runs again"
                )));
            }
            let body = super::stored_plan(&store, run, &record.plan_digest)?;
            let stages = store.stages(&run)?;
            let states: HashMap<String, StageState> =
                stages.iter().map(|s| (s.id.clone(), s.state)).collect();
            let chosen =
                super::dag::retry_set(&body, &states, stage.as_deref()).map_err(|e| match e {
                    super::dag::RetryRefusal::UnknownStage(stage) => {
                        EngineError::UnknownStage { run, stage }
                    }
                    super::dag::RetryRefusal::Refused(reason) => EngineError::NotRetryable(reason),
                })?;
            // A failed stage another node moves on (a third org's node, or its owner after
            // a stage of its own) is that node's to offer again or run: it is asked to,
            // with this node's signed retry, once the stage is reopened here.
            let mut asked = Vec::new();
            if let Some(me) = me {
                let held = super::receipts::stored(&store, &run)?;
                for id in &chosen {
                    let Some(plan) = body.stages.iter().find(|s| s.id == *id) else {
                        continue;
                    };
                    if !matches!(states.get(id), Some(StageState::Failed)) {
                        continue;
                    }
                    let Some(node) = otto_handoff::rules::mover_node(&body, plan, &held) else {
                        continue;
                    };
                    if node.key == me {
                        continue;
                    }
                    let after = stages
                        .iter()
                        .find(|s| s.id == *id)
                        .and_then(|s| s.attempts.iter().map(|a| a.n).max())
                        .unwrap_or(0);
                    asked.push((id.clone(), after.saturating_add(1), node.clone()));
                }
            }
            store.retry_stages(&run, &chosen, &who, now_ms())?;
            // What the note said of the run's end (cancelled by whom) is over.
            store.set_run_note(&run, None)?;
            Ok((chosen, asked))
        })
        .await?;
        for (stage, attempt, node) in asked {
            tracing::info!(target: "otto_node::engine", %run, %stage, attempt, mover = %node.name, "asking the node that moves the stage on to run it again");
            self.sh.notify(super::Notice::Retry {
                run,
                stage,
                attempt,
                mover: node.key,
                mover_name: node.name,
                by: who_retried.clone(),
            });
        }
        tracing::info!(target: "otto_node::engine", %run, stages = ?chosen, "retrying");
        self.load(run).await?;
        self.advance(run).await;
        Ok(chosen)
    }

    /// A stage offered to this node: when it failed here before (and so did the run),
    /// it is retried with the stages that depend on it, then the run moves on.
    async fn offered(&mut self, run: RunId, stage: String, by: String) -> Result<(), EngineError> {
        if self.runs.contains_key(&run) {
            // In progress here: a stage of it that failed ends it soon, and its origin
            // retries it once it has.
            return self.poke(run).await;
        }
        let store = self.sh.store.clone();
        blocking(move || -> Result<bool, EngineError> {
            let Some(record) = store.stage(&run, &stage)? else {
                return Ok(false);
            };
            if !matches!(record.state, StageState::Failed | StageState::Cancelled) {
                return Ok(false);
            }
            let Some(run_record) = store.run(&run)? else {
                return Ok(false);
            };
            let body = super::stored_plan(&store, run, &run_record.plan_digest)?;
            let states: HashMap<String, StageState> = store
                .stages(&run)?
                .into_iter()
                .map(|s| (s.id, s.state))
                .collect();
            let chosen = super::dag::reopened(&body, &states, &[stage]);
            store.retry_stages(&run, &chosen, &by, now_ms())?;
            Ok(true)
        })
        .await?;
        self.poke(run).await
    }

    /// Stops everything without recording anything: stage tasks are dropped (their socket
    /// servers with them) and live agents get SIGTERM, so they stop their steps. The store
    /// still says the attempts run; the next start recovers them.
    async fn shutdown(&mut self) {
        self.tasks.shutdown().await;
        for pid in self.sh.live_agents() {
            agent::signal(pid, Signal::TERM);
        }
    }

    /// Reads a run from the store and keeps it in progress.
    async fn load(&mut self, id: RunId) -> Result<(), EngineError> {
        let store = self.sh.store.clone();
        let logs = self.sh.logs.clone();
        let ctx = blocking(move || -> Result<(RunCtx, RunState), EngineError> {
            let run = store.run(&id)?.ok_or(EngineError::UnknownRun(id))?;
            if run.state.is_final() {
                return Err(EngineError::Finished(id));
            }
            let bad = |reason: String| EngineError::Plan { run: id, reason };
            let body = super::stored_plan(&store, id, &run.plan_digest)?;
            let stages = store.stages(&id)?;
            if let Some(missing) = body
                .stages
                .iter()
                .find(|s| !stages.iter().any(|r| r.id == s.id))
            {
                return Err(bad(format!("stage {} is not recorded", missing.id)));
            }
            let outputs = outputs::load(&logs, &stages)?;
            let (source, git) = match &run.source {
                Source::Snapshot { digest } => (Some(*digest), None),
                Source::Git { url, commit } => (None, Some((url.clone(), commit.clone()))),
            };
            let ctx = RunCtx {
                id,
                started_here: !run.started_by.starts_with(OFFERED_BY),
                started_by_org: run
                    .started_by
                    .strip_prefix(OFFERED_BY)
                    .and_then(|who| who.rsplit_once('@'))
                    .map(|(_, org)| org.to_owned()),
                plan_digest: run.plan_digest.to_string(),
                pipeline: run.pipeline.clone(),
                body,
                source,
                git,
                outputs: Mutex::new(outputs),
            };
            Ok((ctx, run.state))
        })
        .await?;
        let (mut ctx, state) = ctx;
        // The checkout of a commit this node started a run of is ready (the trigger made
        // it to plan the run); the caches need it before the first stage.
        if ctx.started_here
            && let (Some((url, commit)), Some(checkouts)) = (&ctx.git, &self.sh.checkouts)
        {
            ctx.source = checkouts
                .repos
                .checkout(url, commit, &self.sh.blobs, checkouts.max_bytes)
                .await
                .ok();
        }
        self.runs.insert(
            id,
            Active {
                ctx: Arc::new(ctx),
                state,
                tasks: HashMap::new(),
                ending: None,
                holds_group: false,
                note: None,
            },
        );
        Ok(())
    }

    /// Where a run this node started stands in its pipeline's concurrency group, joining
    /// it first when it is not a member. Runs another org started are not in this node's
    /// pipeline groups (their origin keeps them). The runs the run cancels by joining with
    /// `cancel_in_progress` end cancelled, in favour of it.
    async fn run_turn(&mut self, run: RunId) -> Result<RunTurn, EngineError> {
        let Some(active) = self.runs.get(&run) else {
            return Ok(RunTurn::Go);
        };
        let Some(concurrency) = active
            .ctx
            .body
            .concurrency
            .clone()
            .filter(|_| active.ctx.started_here)
        else {
            return Ok(RunTurn::Go);
        };
        let group = concurrency.group.clone();
        if let Err(why) = otto_pipeline::plan::check_group(&group) {
            return Ok(RunTurn::Refused(format!("bad concurrency group: {why}")));
        }
        let store = self.sh.store.clone();
        let name = group.clone();
        let turn = blocking(move || -> Result<Joined, EngineError> {
            if let Some(turn) = store.group_turn(GroupKind::Run, &name, &run, None)? {
                return Ok(Joined::In {
                    turn,
                    superseded: Vec::new(),
                });
            }
            let member = GroupMember {
                run,
                stage: None,
                org: None,
                cancel_in_progress: concurrency.cancel_in_progress,
                joined_at: now_ms(),
                superseded_by: None,
            };
            Ok(store.join_group(GroupKind::Run, &name, member, MAX_GROUP_MEMBERS)?)
        })
        .await?;
        let (turn, superseded) = match turn {
            Joined::Full { members } => {
                return Ok(RunTurn::Full(EngineError::GroupFull {
                    run,
                    group,
                    members,
                    max: MAX_GROUP_MEMBERS,
                }));
            }
            Joined::In { turn, superseded } => (turn, superseded),
        };
        let who = format!("concurrency group {group} in favour of run {run}");
        for member in &superseded {
            tracing::info!(target: "otto_node::engine", run = %member.run, by = %run, %group, "cancelled in favour of a newer run of its concurrency group");
            if let Some(other) = self.runs.get_mut(&member.run)
                && other.ending.is_none()
            {
                let reason = format!("cancelled by {who}");
                other.ending = Some(Ending::Cancelled(who.clone()));
                for cancel in other.tasks.values() {
                    let _ = cancel.send(Some(reason.clone()));
                }
                let _ = self.changes_tx.try_send(member.run);
            }
        }
        Ok(match turn {
            GroupTurn::Holds => RunTurn::Go,
            GroupTurn::Waits { holder, .. } => {
                RunTurn::Wait(format!("{QUEUED_NOTE} {} in group {group}", holder.run))
            }
            GroupTurn::Superseded { by } => {
                RunTurn::Cancelled(format!("concurrency group {group} in favour of run {by}"))
            }
        })
    }

    /// Starts what can start, cancels the rest after a failure, and keeps the run's state.
    async fn advance(&mut self, run: RunId) {
        if let Err(error) = self.try_advance(run).await {
            tracing::error!(target: "otto_node::engine", %run, %error, "cannot advance the run");
        }
    }

    async fn try_advance(&mut self, run: RunId) -> Result<(), EngineError> {
        let Some(active) = self.runs.get(&run) else {
            return Ok(());
        };
        let mut refusal = None;
        let mut waiting = None;
        if active.ending.is_none() && !active.holds_group {
            let turn = self.run_turn(run).await?;
            let Some(active) = self.runs.get_mut(&run) else {
                return Ok(());
            };
            match turn {
                RunTurn::Go => active.holds_group = true,
                RunTurn::Wait(note) => waiting = Some(note),
                RunTurn::Cancelled(who) => active.ending = Some(Ending::Cancelled(who)),
                RunTurn::Refused(reason) => active.ending = Some(Ending::Refused(reason)),
                RunTurn::Full(error) => {
                    active.ending = Some(Ending::Refused(error.to_string()));
                    refusal = Some(error);
                }
            }
        }
        self.set_run_note(run, waiting.clone()).await?;
        if waiting.is_some() {
            // Queued behind its group's holder: nothing of it starts.
            return Ok(());
        }
        self.try_advance_held(run).await?;
        match refusal {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Writes the run's note when it changed; a queued note goes when the run leaves the
    /// queue, other notes stay.
    async fn set_run_note(&mut self, run: RunId, note: Option<String>) -> Result<(), EngineError> {
        let Some(active) = self.runs.get_mut(&run) else {
            return Ok(());
        };
        let note = match note {
            Some(note) => Some(note),
            None if active
                .note
                .as_deref()
                .is_some_and(|n| n.starts_with(QUEUED_NOTE)) =>
            {
                None
            }
            None => return Ok(()),
        };
        if active.note != note {
            active.note = note.clone();
            let store = self.sh.store.clone();
            blocking(move || store.set_run_note(&run, note)).await?;
        }
        Ok(())
    }

    /// [`Self::try_advance`] once the run holds its concurrency group (or is ending).
    async fn try_advance_held(&mut self, run: RunId) -> Result<(), EngineError> {
        let Some(active) = self.runs.get_mut(&run) else {
            return Ok(());
        };
        let store = self.sh.store.clone();
        let mut records = blocking(move || store.stages(&run)).await?;
        // A stage another node offered this node and it accepted runs here, even if its
        // task set it aside before the offer came (a task still in flight comes back here
        // when it ends).
        for record in &mut records {
            if record.state == StageState::HandedOff
                && !active.tasks.contains_key(&record.id)
                && self.sh.was_offered(&run, &record.id)
            {
                let (store, id) = (self.sh.store.clone(), record.id.clone());
                let note = Some("offered to this node".to_owned());
                *record = blocking(move || {
                    store.set_stage_state(&run, &id, StageState::Pending, note, now_ms())
                })
                .await?;
            }
        }
        let states: HashMap<String, StageState> =
            records.iter().map(|s| (s.id.clone(), s.state)).collect();
        let body = &active.ctx.body;
        if active.ending.is_none()
            && let Some(failed) = super::dag::first_failure(body, &states)
        {
            let reason = format!("cancelled: stage {failed} failed");
            // A stage cancelled in favour of a newer one of its concurrency group ends the
            // run cancelled, by that group.
            let superseded = records
                .iter()
                .find(|r| r.id == failed && r.state == StageState::Cancelled)
                .and_then(|r| r.note.as_deref())
                .and_then(|n| n.strip_prefix("cancelled by "))
                .filter(|who| who.starts_with(SUPERSEDED.trim_start_matches("cancelled by ")))
                .map(str::to_owned);
            active.ending = Some(match superseded {
                Some(who) => Ending::Cancelled(who),
                None => Ending::Failed(failed),
            });
            for cancel in active.tasks.values() {
                let _ = cancel.send(Some(reason.clone()));
            }
        }
        if active.ending.is_none() {
            let busy: HashSet<String> = active.tasks.keys().cloned().collect();
            for id in super::dag::ready(body, &states, &busy) {
                let Some(plan) = body.stages.iter().find(|s| s.id == id).cloned() else {
                    continue;
                };
                let (cancel_tx, cancel) = watch::channel(None);
                let task = StageTask {
                    sh: self.sh.clone(),
                    run: active.ctx.clone(),
                    plan,
                    cancel,
                    changed: self.changes_tx.clone(),
                };
                let handle = self.tasks.spawn(task.drive());
                self.task_ids.insert(handle.id(), (run, id.clone()));
                lock(&self.sh.stage_cancels).insert((run, id.clone()), cancel_tx.clone());
                active.tasks.insert(id, cancel_tx);
            }
        }
        let next = if !active.tasks.is_empty() {
            super::dag::progress(&states)
        } else if let Some(ending) = active.ending.clone() {
            let (note, final_state) = match &ending {
                Ending::Failed(stage) => {
                    (format!("not run: stage {stage} failed"), RunState::Failed)
                }
                Ending::Cancelled(who) => (
                    format!("not run: the run was cancelled by {who}"),
                    RunState::Cancelled,
                ),
                Ending::Refused(reason) => (format!("not run: {reason}"), RunState::Failed),
            };
            let run_note = match &ending {
                Ending::Failed(_) => None,
                Ending::Cancelled(who) => Some(format!("cancelled by {who}")),
                Ending::Refused(reason) => Some(reason.clone()),
            };
            if let Some(note) = run_note {
                active.note = Some(note.clone());
                let store = self.sh.store.clone();
                blocking(move || store.set_run_note(&run, Some(note))).await?;
            }
            for record in records.iter().filter(|s| !s.state.is_final()) {
                let store = self.sh.store.clone();
                let (id, n) = (record.id.clone(), note.clone());
                blocking(move || {
                    store.set_stage_state(&run, &id, StageState::Cancelled, Some(n), now_ms())
                })
                .await?;
                self.sh.publish(EngineEvent::Stage {
                    run,
                    stage: record.id.clone(),
                    state: StageState::Cancelled,
                    attempt: None,
                    note: Some(note.clone()),
                });
            }
            final_state
        } else {
            super::dag::settled(&states).unwrap_or(RunState::Waiting)
        };
        self.set_run_state(run, next).await
    }

    async fn set_run_state(&mut self, run: RunId, state: RunState) -> Result<(), EngineError> {
        let Some(active) = self.runs.get_mut(&run) else {
            return Ok(());
        };
        if active.state != state {
            let store = self.sh.store.clone();
            blocking(move || store.set_run_state(&run, state, now_ms())).await?;
            active.state = state;
            self.sh.publish(EngineEvent::Run { run, state });
        }
        if state.is_final() {
            self.runs.remove(&run);
            // Nothing of an ended run runs here any more.
            lock(&self.sh.offered).retain(|(r, _), _| *r != run);
            // The store took it out of its concurrency groups with its final state.
            self.sh.groups_changed();
        }
        Ok(())
    }
}

/// Where a run stands in its pipeline's concurrency group.
enum RunTurn {
    /// It holds the group, or has none: its stages may start.
    Go,
    /// It waits for the group, with this note (`waiting for run X in group G`).
    Wait(String),
    /// A newer run cancelled it: by whom, for people.
    Cancelled(String),
    /// It cannot take its group, and why.
    Refused(String),
    /// The group is full: the run is refused with this error.
    Full(EngineError),
}

/// Removes everything inside `dir`, keeping the directory; a missing one is fine.
fn clear_dir(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(error) = removed {
            tracing::warn!(target: "otto_node::engine", %error, path = %path.display(), "cannot remove a stale socket");
        }
    }
}
