//! The engine: the orchestrator that walks each run's plan and runs the stages this node
//! owns, each attempt in a freshly spawned `otto-agent`.
//!
//! # How a run proceeds
//!
//! The daemon records a run in the [`Store`] and calls [`Engine::submit`]. The engine then
//! starts every stage whose dependencies all succeeded or were skipped, several at once
//! when the plan allows it. For each stage, in order:
//!
//! 1. its `when` condition: a stage whose condition fails (or is unknown, because it reads
//!    a fact the run was not given) is skipped;
//! 2. its owner and who moves it on: a stage another node owns, or that another node
//!    moves on, is left `handed_off` (the node that moves it on offers it through the mesh
//!    exchange; see `docs/engine.md`);
//! 3. its enter gates: conditions (a failing one fails the stage and the run) and input
//!    gates (a person approves);
//! 4. an attempt: a workspace, a private unix socket serving the
//!    [agent protocol](otto_agent_protocol), an `otto-agent` process; the attempt ends
//!    with the agent's result, or fails when the agent dies without one;
//! 5. its exit gates: input, webhook (an external system calls back once) and poll (a
//!    command or URL checked until it succeeds);
//! 6. its `notify` steps, through another agent, with the stage's outcome.
//!
//! When a stage fails, the rest of the run is cancelled (running attempts are stopped,
//! waiting gates closed) and the run fails. Every transition is written to the store first
//! and then published on [`Engine::events`].
//!
//! # Crash recovery
//!
//! [`Engine::start`] first calls [`Store::recover`]: attempts that were running when the
//! previous node process died are marked interrupted (their agents, if still alive, are
//! stopped) and retried as the next attempt; waiting gates wait again (a poll restarts its
//! schedule, deadlines are absolute); every unfinished run continues where its stored state
//! says it is. `docs/engine.md` tells the whole story.
//!
//! # Concurrency
//!
//! One task owns the runs and their stage tasks ([`Engine::start`] returns its handle).
//! [`Engine`] is a cheap handle that talks to it over a bounded channel; approvals and
//! webhook callbacks are checked and recorded by the handle itself (the store makes them
//! happen at most once) and then wake the stage task that waits for them.

mod agent;
mod caches;
pub(crate) mod dag;
mod gates;
mod orchestrator;
pub(crate) mod outputs;
pub(crate) mod receipts;
mod remote;
mod serve;
mod stage;
mod util;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{Notify, Semaphore, broadcast, mpsc, oneshot};

use crate::blobs::BlobStore;
use crate::store::{
    self, AttemptNode, GateKind, GatePhase, GateRef, GateResolution, GateState, Logs, Placed,
    RunId, RunState, StageState, Store,
};
use crate::vault::Vault;

pub(crate) use orchestrator::OFFERED_BY;
pub use receipts::ReceiptSigner;

/// How many events [`Engine::events`] receivers may fall behind before they miss some.
pub const EVENT_BUFFER: usize = 4096;

/// How many commands may wait for the engine task.
const COMMAND_BUFFER: usize = 64;

/// How many members a concurrency group holds at most (the one holding it and those
/// waiting): a run or stage past it is refused, not queued, so a flood of runs never grows a
/// queue without bound.
pub const MAX_GROUP_MEMBERS: usize = 100;

/// What cancels a stage task: a reason sent on it.
pub(crate) type StageCancel = tokio::sync::watch::Sender<Option<String>>;

/// How many notices may wait for the exchange ([`NoticeFeed`]).
pub const NOTICE_BUFFER: usize = 256;

/// What the engine tells the handoff exchange, on a bounded channel of its own (never the
/// lossy event broadcast), once the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A stage this node moves on is handed off: its handoff intent is in the store
    /// ([`crate::store::Store::handoff_intents`]).
    HandOff {
        /// The run.
        run: RunId,
        /// The stage id.
        stage: String,
    },
    /// `otto retry` here, the run's origin, retried a stage another node moves on: the
    /// exchange sends that node the signed retry, and it offers the stage again (or runs
    /// it, when it owns it).
    Retry {
        /// The run.
        run: RunId,
        /// The stage id.
        stage: String,
        /// The attempt it runs as.
        attempt: u32,
        /// The node that moves it on, by its key.
        mover: otto_protocol::KeyBytes,
        /// Its name, for people.
        mover_name: String,
        /// Who retried it here.
        by: String,
    },
    /// The receipt of an attempt that ended here is stored.
    Receipt {
        /// The run.
        run: RunId,
        /// The stage id.
        stage: String,
        /// The attempt.
        attempt: u32,
        /// The signed receipt (CBOR envelope bytes).
        envelope: Vec<u8>,
    },
}

/// The exchange's end of the engine's notices ([`Engine::notices`]). A notice that finds
/// the channel full is dropped and [`Self::missed`] says so once: what it told is in the
/// store, so the exchange reads the store again.
#[derive(Debug)]
pub struct NoticeFeed {
    rx: mpsc::Receiver<Notice>,
    missed: Arc<AtomicBool>,
}

impl NoticeFeed {
    /// The next notice; `None` once the engine is gone.
    pub async fn recv(&mut self) -> Option<Notice> {
        self.rx.recv().await
    }

    /// Whether a notice was dropped since the last call.
    pub fn missed(&self) -> bool {
        self.missed.swap(false, Ordering::AcqRel)
    }
}

/// Everything the engine needs from the node, built by the daemon from its home.
#[derive(Debug)]
pub struct Context {
    /// The node's store.
    pub store: Store,
    /// The stages' logs.
    pub logs: Logs,
    /// The node's blob store.
    pub blobs: BlobStore,
    /// The node's vault.
    pub vault: Vault,
    /// This node's name, shown in logs.
    pub node_name: String,
    /// The owner names this node runs stages for; stages without an owner always run here.
    pub answers_to: Vec<String>,
    /// The `otto-agent` executable.
    pub agent_path: PathBuf,
    /// The directory holding the workspaces: `<work_dir>/<run>/<stage>-<attempt>/`.
    pub work_dir: PathBuf,
    /// A private directory (mode 0700) for the per-attempt unix sockets. Keep its path
    /// short: a unix socket path has at most about 100 bytes.
    pub run_dir: PathBuf,
    /// Directories of step packages, handed to every agent.
    pub packages: Vec<PathBuf>,
    /// The largest artifact a stage may archive, in bytes; the agent's default when `None`.
    pub max_artifact_bytes: Option<u64>,
    /// How steps are walled in.
    pub wall: WallSettings,
    /// The base of webhook URLs, e.g. `https://127.0.0.1:8443`; a gate's URL is this
    /// followed by `/hooks/<token>`.
    pub webhook_base: Option<String>,
    /// Signs a receipt for every attempt that ends here (`None`: no receipts, for a node
    /// without an identity, as in some tests).
    pub signer: Option<ReceiptSigner>,
    /// Decides whether this node may run a stage of a run another org started when no offer
    /// asked for it (this node moves it on itself, having run the stage before it): given
    /// the org that started the run, the plan and the stage, `Err` says why not. The same
    /// rules as for an offer (scope and approved definition). `None` refuses every such
    /// stage.
    pub definitions: Option<DefinitionCheck>,
    /// How many agents run at once (at least 1); the others wait, queued.
    pub slots: usize,
    /// How many stages of one run another org started run at once here, given that org
    /// (its policy's `max_parallel`); the others wait, queued. `None`: only [`Self::slots`]
    /// caps them.
    pub max_parallel: Option<MaxParallel>,
    /// Checks out the commit of a run whose source is a git repository (`None`: such a
    /// run's stages start from an empty workspace).
    pub checkouts: Option<Checkouts>,
    /// Sends the messages (`slack`, `webhook`) of `notify` blocks (`None`: they are logged
    /// as not sent).
    pub notifier: Option<Notifier>,
    /// The runtimes this node has: a stage asking for another is refused.
    pub runtimes: crate::capabilities::Runtimes,
}

/// See [`Context::notifier`]: the client and the operator's `[notify]` targets.
#[derive(Debug, Clone)]
pub struct Notifier {
    /// The HTTP client.
    pub http: crate::outbound::http::Http,
    /// Where messages may go.
    pub config: crate::home::NotifyConfig,
}

/// See [`Context::checkouts`]: the node's repositories, and the largest checkout.
#[derive(Clone)]
pub struct Checkouts {
    /// The repositories and their mirrors.
    pub repos: crate::sources::Repos,
    /// The largest checkout, in bytes (as the largest snapshot upload).
    pub max_bytes: usize,
}

impl std::fmt::Debug for Checkouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkouts")
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

/// See [`Context::max_parallel`]: given the org that started a run, how many of its stages
/// run at once.
#[derive(Clone)]
pub struct MaxParallel(pub Arc<dyn Fn(&str) -> u32 + Send + Sync>);

impl std::fmt::Debug for MaxParallel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MaxParallel")
    }
}

/// See [`Context::definitions`]: given the org, the plan and the stage, `Err` says why
/// this node does not run it.
#[derive(Clone)]
pub struct DefinitionCheck(pub Arc<DefinitionFn>);

/// The function inside a [`DefinitionCheck`].
pub type DefinitionFn = dyn Fn(&str, &otto_pipeline::plan::Body, &otto_pipeline::plan::Stage) -> Result<(), String>
    + Send
    + Sync;

impl std::fmt::Debug for DefinitionCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DefinitionCheck")
    }
}

/// What another node reported about a stage it runs, for [`Engine::remote_stage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteStage {
    /// The run.
    pub run: RunId,
    /// The stage id.
    pub stage: String,
    /// How it ended, for a receipt: the attempt, its outcome as a final stage state, when
    /// it started and ended (milliseconds), and its artifacts. `None` while it is in
    /// progress.
    pub ended: Option<RemoteEnd>,
    /// Where it stands, for people (e.g. "running on ops-1").
    pub note: Option<String>,
    /// Log lines it printed, as the owner shared them.
    pub log: Vec<String>,
    /// The attempt the log lines belong to.
    pub attempt: u32,
    /// How the runner numbered the lines: the first 8 bytes of its key and its number of
    /// the first line in `log` (with no lines, of its next line); `None` for lines it did
    /// not number (an older node) or lines of this node's own.
    pub numbered: Option<([u8; 8], u64)>,
    /// Whether a jump in the numbers is held back (this node fetches the missing lines)
    /// rather than written as a gap line.
    pub hold_jumps: bool,
}

/// How a stage run by another node ended, from its verified receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEnd {
    /// The final state.
    pub state: StageState,
    /// When the attempt started, milliseconds since the Unix epoch.
    pub started_at: u64,
    /// When it ended.
    pub finished_at: u64,
    /// The artifacts it archived: name, blob, size.
    pub artifacts: Vec<(String, crate::blobs::Digest, u64)>,
    /// The node that ran it, or refused to, when known.
    pub node: Option<AttemptNode>,
}

/// A handle on the engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

/// What the engine publishes: state changes and log lines, in the order they were
/// recorded. Log lines are masked.
///
/// In JSON (`serde_json::to_value`) an event is an object whose `kind` names the variant
/// in snake case, with the fields below; ids are text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EngineEvent {
    /// A run changed state.
    Run {
        /// The run.
        run: RunId,
        /// Its new state.
        state: RunState,
    },
    /// A stage changed state.
    Stage {
        /// The run.
        run: RunId,
        /// The stage id.
        stage: String,
        /// Its new state.
        state: StageState,
        /// The attempt it concerns, if any.
        attempt: Option<u32>,
        /// Why, for people (e.g. "waiting for the mesh (owner ops)").
        note: Option<String>,
    },
    /// A gate opened or closed.
    Gate {
        /// Which gate.
        #[serde(flatten)]
        at: GateRef,
        /// What it waits for.
        gate: GateKind,
        /// Its state: waiting when it opens, passed, failed or timed out when it closes.
        state: GateState,
        /// For a webhook gate that opens: the URL to call back. Otherwise why it closed.
        note: Option<String>,
    },
    /// A step started.
    StepStarted {
        /// The run.
        run: RunId,
        /// The stage id.
        stage: String,
        /// The attempt.
        attempt: u32,
        /// The step's number, depth-first over the stage's step tree.
        index: u32,
        /// The step's symbol.
        symbol: String,
        /// The process group of the step's processes, when it runs some.
        pgid: Option<u32>,
        /// When it started, in milliseconds since the Unix epoch (the agent's clock).
        time: u64,
    },
    /// A step finished.
    StepFinished {
        /// The run.
        run: RunId,
        /// The stage id.
        stage: String,
        /// The attempt.
        attempt: u32,
        /// The step's number.
        index: u32,
        /// Whether it succeeded.
        success: bool,
        /// Its process's exit code, when it had one.
        exit_code: Option<i32>,
        /// How long it took, in milliseconds.
        duration_ms: u64,
        /// When it finished, in milliseconds since the Unix epoch (the agent's clock).
        time: u64,
    },
    /// A stage owned by another node is to be offered to its owner by this node (it
    /// moves the stage on); the mesh exchange sends the offer.
    HandOff {
        /// The run.
        run: RunId,
        /// The stage id.
        stage: String,
        /// The owner's name in the plan.
        owner: String,
    },
    /// The receipt of an attempt that ended here is signed and stored.
    Receipt {
        /// The run.
        run: RunId,
        /// The stage id.
        stage: String,
        /// The attempt.
        attempt: u32,
        /// The signed receipt (CBOR envelope bytes).
        #[serde(skip_serializing)]
        envelope: Vec<u8>,
    },
    /// Log lines were written to a stage's log (read them with [`Logs::read`]: the event
    /// carries no text, so that a flood of output never piles up in the broadcast).
    Log {
        /// The run.
        run: RunId,
        /// The stage id.
        stage: String,
        /// The attempt that printed them.
        attempt: u32,
        /// The number of the first line written.
        first: u64,
        /// The number of the last.
        last: u64,
    },
}

impl EngineEvent {
    /// The run the event is about.
    pub fn run(&self) -> RunId {
        match self {
            Self::Run { run, .. }
            | Self::Stage { run, .. }
            | Self::StepStarted { run, .. }
            | Self::StepFinished { run, .. }
            | Self::HandOff { run, .. }
            | Self::Receipt { run, .. }
            | Self::Log { run, .. } => *run,
            Self::Gate { at, .. } => at.run,
        }
    }
}

/// Why the engine refused a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// No run has this id.
    #[error("no run {0}")]
    UnknownRun(RunId),
    /// No gate matches: the stage has no such gate, or no webhook has this token.
    #[error("no such gate")]
    UnknownGate,
    /// The gate exists but does not wait (any more): it passed, failed or timed out, or it
    /// has not opened yet.
    #[error("the gate is not waiting")]
    GateNotWaiting,
    /// The stage runs on another node, so its gates wait there.
    #[error(
        "the gates of {stage} wait on {runs_on}, not on this node: approve it there, with \
         `otto approve RUN {stage:?}` and that node's --home"
    )]
    GateElsewhere {
        /// The stage.
        stage: String,
        /// Which node runs it, for people.
        runs_on: String,
    },
    /// The gate names its approvers and this person is not one of them.
    #[error("{who} may not approve this gate (approvers: {})", .approvers.join(", "))]
    NotApprover {
        /// Who tried.
        who: String,
        /// Who may.
        approvers: Vec<String>,
    },
    /// The run is already over.
    #[error("run {0} is already finished")]
    Finished(RunId),
    /// The run has no stage with this id.
    #[error("run {run} has no stage {stage:?}")]
    UnknownStage {
        /// The run.
        run: RunId,
        /// The stage asked for.
        stage: String,
    },
    /// Nothing of the run can be retried as asked, and why.
    #[error("{0}")]
    NotRetryable(String),
    /// The concurrency group of the run's pipeline holds as many runs as it may; the run
    /// was refused (recorded as failed, with the reason).
    #[error(
        "concurrency group {group} already has {members} runs running or waiting, as many as a \
         group holds ({max}); run {run} was refused, not queued"
    )]
    GroupFull {
        /// The run refused.
        run: RunId,
        /// The group.
        group: String,
        /// How many runs it holds.
        members: usize,
        /// The cap, [`MAX_GROUP_MEMBERS`].
        max: usize,
    },
    /// The run's stored plan cannot be read.
    #[error("the plan of run {run} cannot be read: {reason}")]
    Plan {
        /// The run.
        run: RunId,
        /// What is wrong.
        reason: String,
    },
    /// The engine task has stopped (shut down, or failed).
    #[error("the engine has stopped")]
    Stopped,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// The plan of run `run`, stored under `digest`; `EngineError::Plan` when it is missing or
/// unreadable.
pub(crate) fn stored_plan(
    store: &Store,
    run: RunId,
    digest: &crate::blobs::Digest,
) -> Result<otto_pipeline::plan::Body, EngineError> {
    let bad = |reason: String| EngineError::Plan { run, reason };
    let bytes = store
        .plan(digest)?
        .ok_or_else(|| bad("the plan is missing".into()))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))
}

/// How the node walls in the steps it runs (see docs/security.md): what every job's
/// [`otto_agent_protocol::Wall`] and limits say.
#[derive(Debug, Clone)]
pub struct WallSettings {
    /// Directories no step may read: the node's home and the work directory.
    pub hidden: Vec<PathBuf>,
    /// Directories steps may write besides their workspace.
    pub writable: Vec<PathBuf>,
    /// The user steps run as, when not the node's own.
    pub user: Option<otto_agent_protocol::StepUser>,
    /// What one stage may use.
    pub limits: otto_agent_protocol::Limits,
    /// The highest Landlock ABI version the wall uses that the kernel offers; 0 when
    /// it has none.
    pub landlock_abi: i32,
    /// Whether the stages of other orgs' runs are refused when the wall is not complete
    /// (no Landlock, or steps as root).
    pub refuse_foreign_unwalled: bool,
    /// Whether steps run as root: the node runs as root and names no step user (`user`
    /// is none). They have no capabilities, but own what root owns, so the wall is not
    /// complete. The daemon sets it from its user and `[agent] run_as`.
    pub steps_as_root: bool,
    /// Why the agent cannot make the file system read-only around steps, when it cannot
    /// ([`wall_mounts`]): then a step can change the mode of what its user owns.
    pub mounts_missing: Option<String>,
}

impl Default for WallSettings {
    /// Nothing hidden, steps as the node's user, default limits, no Landlock known (set
    /// [`Self::landlock_abi`] from [`wall_abi`]), foreign stages refused without Landlock.
    fn default() -> Self {
        Self {
            hidden: Vec::new(),
            writable: Vec::new(),
            user: None,
            limits: otto_agent_protocol::Limits::default(),
            landlock_abi: 0,
            refuse_foreign_unwalled: true,
            steps_as_root: false,
            mounts_missing: None,
        }
    }
}

/// Why steps cannot be walled in completely with Landlock ABI `abi` (0: none), as root
/// when `steps_as_root`, and with a writable file system when `mounts_missing` says why
/// it cannot be made read-only, if they cannot.
pub fn wall_missing(abi: i32, steps_as_root: bool, mounts_missing: Option<&str>) -> Option<String> {
    let mut missing = Vec::new();
    if abi == 0 {
        missing.push(
            "the kernel has no Landlock (not built in, or not enabled at boot: add \
             `lsm=landlock,…` to the kernel command line)"
                .to_owned(),
        );
    }
    if steps_as_root {
        missing.push(crate::api::types::STEPS_AS_ROOT.to_owned());
    }
    if let Some(why) = mounts_missing {
        missing.push(format!(
            "steps can chmod, chown and touch what their user owns outside their workspace \
             (Landlock does not govern that, and the file system cannot be made read-only \
             around them: {why})"
        ));
    }
    (!missing.is_empty()).then(|| missing.join("; "))
}

/// Whether the agent at `agent` can make the file system read-only around steps (a mount
/// namespace of their own), as `otto-agent --wall-mounts` says; why not when it cannot.
pub fn wall_mounts(agent: &Path) -> Result<(), String> {
    let out = std::process::Command::new(agent)
        .arg("--wall-mounts")
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", agent.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let text = text.trim();
    match text {
        "ok" if out.status.success() => Ok(()),
        _ if out.status.success() && !text.is_empty() => Err(text
            .lines()
            .next()
            .unwrap_or(text)
            .chars()
            .take(300)
            .collect()),
        _ => Err(format!(
            "{} --wall-mounts answered {text:?} ({}): an agent of another version?",
            agent.display(),
            out.status
        )),
    }
}

/// The Landlock ABI version the agent at `agent` builds its walls with, as
/// `otto-agent --wall-abi` prints it (0: the kernel has none). The node links no execution
/// code, so it asks the agent, which is also the one that builds the wall.
pub fn wall_abi(agent: &Path) -> Result<i32, String> {
    let out = std::process::Command::new(agent)
        .arg("--wall-abi")
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", agent.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.trim().parse::<i32>() {
        Ok(abi) if out.status.success() && abi >= 0 => Ok(abi),
        _ => Err(format!(
            "{} --wall-abi answered {:?} ({}): an agent of another version?",
            agent.display(),
            text.trim(),
            out.status
        )),
    }
}

impl WallSettings {
    /// Why this node cannot wall steps in, if it cannot.
    pub fn missing(&self) -> Option<String> {
        wall_missing(
            self.landlock_abi,
            self.steps_as_root,
            self.mounts_missing.as_deref(),
        )
    }

    /// Why this node runs no stage of another org's run, if it runs none: it cannot wall
    /// steps in and `refuse_foreign_unwalled` is set. The exchange refuses such offers with
    /// it before accepting them; the engine refuses such stages it would move on itself.
    pub fn refuses_others(&self) -> Option<String> {
        let missing = self.missing()?;
        self.refuse_foreign_unwalled.then(|| {
            format!(
                "this node cannot wall steps in ({missing}) and refuses other orgs' stages without a wall ([agent] refuse_foreign_unwalled)"
            )
        })
    }
}

impl Engine {
    /// Starts the engine task and returns a handle on it with the task's join handle.
    /// Before it takes any command, the task recovers: it calls [`Store::recover`], stops
    /// agents left by a previous node process, retries interrupted attempts as the next
    /// attempt, resumes waiting gates and continues every unfinished run.
    ///
    /// Must be called inside a tokio runtime.
    pub fn start(ctx: Context) -> (Self, tokio::task::JoinHandle<()>) {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let mut answers_to = ctx.answers_to;
        if !answers_to.contains(&ctx.node_name) {
            answers_to.push(ctx.node_name.clone());
        }
        let (notices, rx) = mpsc::channel(NOTICE_BUFFER);
        let missed = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            store: ctx.store,
            logs: ctx.logs,
            blobs: ctx.blobs,
            vault: ctx.vault,
            node_name: ctx.node_name,
            answers_to,
            agent_path: ctx.agent_path,
            work_dir: ctx.work_dir,
            run_dir: ctx.run_dir,
            packages: ctx.packages,
            max_artifact_bytes: ctx.max_artifact_bytes,
            wall: ctx.wall,
            webhook_base: ctx.webhook_base,
            signer: ctx.signer,
            definitions: ctx.definitions,
            slots: Arc::new(Semaphore::new(ctx.slots.max(1))),
            slot_count: ctx.slots.max(1),
            max_parallel: ctx.max_parallel,
            checkouts: ctx.checkouts,
            notifier: ctx.notifier,
            runtimes: ctx.runtimes,
            run_slots: Mutex::new(HashMap::new()),
            offered: Mutex::new(HashMap::new()),
            groups: tokio::sync::watch::Sender::new(0),
            stage_cancels: Mutex::new(HashMap::new()),
            events,
            notices,
            notices_missed: missed.clone(),
            feed: Mutex::new(Some(NoticeFeed { rx, missed })),
            gates: Mutex::new(HashMap::new()),
            agents: Mutex::new(HashMap::new()),
        });
        let (commands, rx) = mpsc::channel(COMMAND_BUFFER);
        let task = tokio::spawn(orchestrator::Orchestrator::new(shared.clone(), rx).run());
        (Self { commands, shared }, task)
    }

    /// Starts (or continues) a run already recorded in the store. Submitting a run the
    /// engine is already driving changes nothing.
    pub async fn submit(&self, run: RunId) -> Result<(), EngineError> {
        self.ask(|reply| Command::Submit { run, reply }).await
    }

    /// Approves the waiting input gate of `stage` in `run` as `who`, and records who.
    /// Fails with [`EngineError::NotApprover`] when the gate names its approvers and `who`
    /// is not among them, with [`EngineError::GateNotWaiting`] when no input gate of the
    /// stage waits, and with [`EngineError::UnknownGate`] when the stage has no input gate.
    pub async fn approve(&self, run: RunId, stage: String, who: String) -> Result<(), EngineError> {
        gates::approve(&self.shared, run, stage, who).await
    }

    /// Accepts the callback of a webhook gate, given the token from its URL. A token is
    /// accepted once: a second call fails with [`EngineError::GateNotWaiting`], an
    /// unknown token with [`EngineError::UnknownGate`].
    pub async fn webhook(&self, token: String) -> Result<(), EngineError> {
        gates::webhook(&self.shared, &token).await
    }

    /// Cancels a run: running attempts are stopped, waiting gates closed, stages not
    /// started are marked cancelled, and the run ends cancelled. `who` is recorded in the
    /// notes of the stages it stopped.
    pub async fn cancel(&self, run: RunId, who: String) -> Result<(), EngineError> {
        self.ask(|reply| Command::Cancel { run, who, reply }).await
    }

    /// Retries `stage` of `run` (every stage that failed, when `None`) and the stages that
    /// depend on it, as new attempts of the same run: the run must have ended without
    /// succeeding and have been started here; the stages that succeeded keep their
    /// receipts and artifacts, which the retried ones use. A failed stage another node
    /// moves on (a third org's node, or the owner after a stage of its own) is retried by
    /// asking that node, with this node's signed retry ([`Notice::Retry`]); a succeeded
    /// stage never is. Returns the stages retried, in plan order.
    pub async fn retry(
        &self,
        run: RunId,
        stage: Option<String>,
        who: String,
    ) -> Result<Vec<String>, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Retry {
                run,
                stage,
                who,
                reply,
            })
            .await
            .map_err(|_| EngineError::Stopped)?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }

    /// Lets this node run `stage` of `run`, a stage another node offered it and this node
    /// accepted as attempt `attempt`, and starts it when its needs allow (the run must be
    /// recorded: the mesh exchange records the offered run first). Runs in progress move
    /// on at once. A stage that failed here before (an earlier attempt) is retried first,
    /// with what depends on it, as the run's origin asked (`by`); the handoff core made
    /// sure it did not succeed here and that the origin offers it.
    pub async fn start_offered(
        &self,
        run: RunId,
        stage: String,
        attempt: u32,
        by: String,
    ) -> Result<(), EngineError> {
        util::lock(&self.shared.offered).insert((run, stage.clone()), attempt.max(1));
        self.ask(|reply| Command::Offered {
            run,
            stage,
            by,
            reply,
        })
        .await
    }

    /// Reopens `stage` of `run`, a run another node started, with the stages that depend
    /// on it, because the run's origin retried it (`by`) and this node moves it on (the
    /// handoff core checked the origin's signed retry): it goes back to pending and the run
    /// moves on, so this node offers it again or runs it. A stage that did not fail here
    /// (or a run in progress here) changes nothing.
    pub async fn reopen(&self, run: RunId, stage: String, by: String) -> Result<(), EngineError> {
        self.ask(|reply| Command::Offered {
            run,
            stage,
            by,
            reply,
        })
        .await
    }

    /// Records what another node reported about a stage it runs: log lines, where it
    /// stands, and, from its verified receipt, how it ended (then the run moves on: later
    /// stages start or are handed off, and a failure fails the run).
    /// Returns what became of numbered log lines (`None` without any).
    pub async fn remote_stage(&self, update: RemoteStage) -> Result<Option<Placed>, EngineError> {
        let (records, placed) = remote::record(&self.shared, &update).await?;
        let (run, stage) = (update.run, update.stage);
        self.ask(|reply| Command::Remote {
            run,
            stage,
            records,
            reply,
        })
        .await?;
        Ok(placed)
    }

    /// The notices for the handoff exchange; `None` after the first call (there is one
    /// exchange).
    pub fn notices(&self) -> Option<NoticeFeed> {
        util::lock(&self.shared.feed).take()
    }

    /// A receiver of everything the engine publishes from now on. A receiver that falls
    /// more than [`EVENT_BUFFER`] events behind misses the oldest ones (it gets
    /// `RecvError::Lagged`) and should read the store again.
    pub fn events(&self) -> broadcast::Receiver<EngineEvent> {
        self.shared.events.subscribe()
    }

    /// The stages' logs the engine writes.
    pub fn logs(&self) -> &Logs {
        &self.shared.logs
    }

    /// The runtimes this node has.
    pub fn runtimes(&self) -> &crate::capabilities::Runtimes {
        &self.shared.runtimes
    }

    /// Whether this node runs the stages of `owner` in a run it starts.
    pub fn runs_here(&self, owner: Option<&str>) -> bool {
        self.shared.owns(owner, true)
    }

    /// Stops the engine task without marking anything in the store: running agents get
    /// SIGTERM (they stop their steps), gate waits end, and the next start of the node
    /// recovers as after a crash (interrupted attempts are retried). Returns when the task
    /// has stopped.
    pub async fn shutdown(&self) {
        let (reply, done) = oneshot::channel();
        if self
            .commands
            .send(Command::Shutdown { reply })
            .await
            .is_ok()
        {
            let _ = done.await;
        }
    }

    async fn ask(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<(), EngineError>>) -> Command,
    ) -> Result<(), EngineError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| EngineError::Stopped)?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("node", &self.shared.node_name)
            .finish_non_exhaustive()
    }
}

/// A request to the engine task.
enum Command {
    Submit {
        run: RunId,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Cancel {
        run: RunId,
        who: String,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Retry {
        run: RunId,
        stage: Option<String>,
        who: String,
        reply: oneshot::Sender<Result<Vec<String>, EngineError>>,
    },
    /// A stage was offered to this node: retry it if it failed here, then move the run on.
    Offered {
        run: RunId,
        stage: String,
        by: String,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    /// A stage run elsewhere left these outputs; move the run on.
    Remote {
        run: RunId,
        stage: String,
        records: Vec<outputs::Record>,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// What the engine task, the stage tasks and the handle share.
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) logs: Logs,
    pub(crate) blobs: BlobStore,
    pub(crate) vault: Vault,
    pub(crate) node_name: String,
    pub(crate) answers_to: Vec<String>,
    pub(crate) agent_path: PathBuf,
    pub(crate) work_dir: PathBuf,
    pub(crate) run_dir: PathBuf,
    pub(crate) packages: Vec<PathBuf>,
    pub(crate) max_artifact_bytes: Option<u64>,
    pub(crate) wall: WallSettings,
    pub(crate) webhook_base: Option<String>,
    pub(crate) signer: Option<ReceiptSigner>,
    pub(crate) definitions: Option<DefinitionCheck>,
    /// The node's agent slots ([`Context::slots`]).
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) slot_count: usize,
    pub(crate) max_parallel: Option<MaxParallel>,
    pub(crate) checkouts: Option<Checkouts>,
    pub(crate) notifier: Option<Notifier>,
    pub(crate) runtimes: crate::capabilities::Runtimes,
    /// Per run another org started: its stages' slots, while any stage holds or waits
    /// for one.
    pub(crate) run_slots: Mutex<HashMap<RunId, Arc<Semaphore>>>,
    /// Stages other nodes offered this node and it accepted, with the attempt offered.
    pub(crate) offered: Mutex<HashMap<(RunId, String), u32>>,
    /// Bumped whenever a concurrency group may have changed (a member ended or was
    /// cancelled): who waits for a group looks at the store again.
    pub(crate) groups: tokio::sync::watch::Sender<u64>,
    /// The cancel senders of the stage tasks alive now, so that a stage taking its
    /// concurrency group with `cancel_in_progress` cancels the one holding it.
    pub(crate) stage_cancels: Mutex<HashMap<(RunId, String), StageCancel>>,
    pub(crate) events: broadcast::Sender<EngineEvent>,
    /// The notices for the exchange, and whether one was dropped.
    notices: mpsc::Sender<Notice>,
    notices_missed: Arc<AtomicBool>,
    /// The exchange's end, until it takes it.
    feed: Mutex<Option<NoticeFeed>>,
    /// Wakes the stage task waiting on a gate when someone closes it.
    gates: Mutex<HashMap<GateRef, Arc<Notify>>>,
    /// Agents alive now, by pid, so that shutdown can stop them.
    agents: Mutex<HashMap<u32, ()>>,
}

impl Shared {
    /// This node, as its attempts record where they ran (`None` without an identity).
    pub(crate) fn here(&self) -> Option<AttemptNode> {
        self.signer
            .as_ref()
            .map(|s| AttemptNode::ran(&s.name, &s.org))
    }

    /// Publishes an event; nobody listening is fine.
    pub(crate) fn publish(&self, event: EngineEvent) {
        let _ = self.events.send(event);
    }

    /// Tells the exchange something the store now holds; when it is behind (the channel
    /// is full), the notice is dropped and the exchange told to read the store again.
    pub(crate) fn notify(&self, notice: Notice) {
        if let Err(mpsc::error::TrySendError::Full(notice)) = self.notices.try_send(notice) {
            self.notices_missed.store(true, Ordering::Release);
            tracing::debug!(target: "otto_node::engine", ?notice, "the exchange is behind; it reads the store again");
        }
    }

    /// Wakes everyone who waits for a concurrency group to look again.
    pub(crate) fn groups_changed(&self) {
        self.groups.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Cancels the stage task of `stage` in `run` with `reason`, when one is alive.
    pub(crate) fn cancel_stage(&self, run: RunId, stage: &str, reason: String) {
        if let Some(cancel) = util::lock(&self.stage_cancels).get(&(run, stage.to_owned())) {
            let _ = cancel.send(Some(reason));
        }
    }

    /// The wake-up of a gate, created on first use.
    pub(crate) fn gate_notify(&self, at: &GateRef) -> Arc<Notify> {
        let mut gates = util::lock(&self.gates);
        gates.entry(at.clone()).or_default().clone()
    }

    /// Forgets a gate's wake-up once the gate closed.
    pub(crate) fn forget_gate(&self, at: &GateRef) {
        util::lock(&self.gates).remove(at);
    }

    /// Wakes the task waiting on a gate, now or when it starts waiting.
    pub(crate) fn wake_gate(&self, at: &GateRef) {
        self.gate_notify(at).notify_one();
    }

    pub(crate) fn agent_started(&self, pid: u32) {
        util::lock(&self.agents).insert(pid, ());
    }

    pub(crate) fn agent_ended(&self, pid: u32) {
        util::lock(&self.agents).remove(&pid);
    }

    pub(crate) fn live_agents(&self) -> Vec<u32> {
        util::lock(&self.agents).keys().copied().collect()
    }

    /// Whether this node runs the stages of `owner` in a run it started (`started_here`) or
    /// was offered a stage of; `None` is the node that started the run
    /// ([`otto_handoff::rules::owns`], its own name among the names it answers to).
    pub(crate) fn owns(&self, owner: Option<&str>, started_here: bool) -> bool {
        otto_handoff::rules::owns(owner, &self.answers_to, started_here)
    }

    /// Whether another node offered this node `stage` of `run` and it accepted.
    pub(crate) fn was_offered(&self, run: &RunId, stage: &str) -> bool {
        util::lock(&self.offered).contains_key(&(*run, stage.to_owned()))
    }

    /// The attempt another node offered this node `stage` of `run` as (1 when none did).
    pub(crate) fn offered_attempt(&self, run: &RunId, stage: &str) -> u32 {
        util::lock(&self.offered)
            .get(&(*run, stage.to_owned()))
            .copied()
            .unwrap_or(1)
    }

    /// Closes a gate in the store and publishes it.
    pub(crate) async fn resolve_gate(
        self: &Arc<Self>,
        at: &GateRef,
        kind: GateKind,
        resolution: GateResolution,
        stage_state: StageState,
    ) -> Result<(), store::Error> {
        let state = resolution.state;
        let note = resolution.note.clone();
        let store = self.store.clone();
        let gate = at.clone();
        util::blocking(move || store.resolve_gate(&gate, resolution, stage_state)).await?;
        self.publish(EngineEvent::Gate {
            at: at.clone(),
            gate: kind,
            state,
            note,
        });
        self.wake_gate(at);
        Ok(())
    }
}

/// Whether a gate phase is the enter phase, as a number for logs.
pub(crate) fn phase_name(phase: GatePhase) -> &'static str {
    match phase {
        GatePhase::Enter => "enter",
        GatePhase::Exit => "exit",
    }
}
