//! A node's engine in a temporary directory, driven by tests with real `otto-agent`
//! processes.
//!
//! # Finding the agent
//!
//! A test of `otto-node` cannot use `env!("CARGO_BIN_EXE_otto-agent")`: that works only in
//! the agent's own crate. The agent binary is built into the same target directory as this
//! test, as `target/<profile>/otto-agent`, and the test executable lives in
//! `target/<profile>/deps/`, so [`agent_path`] looks in the parent of the test's directory.
//! Under `cargo test --workspace` the binary is always there and up to date (the agent is a
//! workspace member with a bin target). When it is missing (e.g. `cargo test -p otto-node`
//! in a fresh target directory), it is built once with `cargo build -p otto-agent`, with
//! the same target directory and profile. After changing `agent/`, run
//! `cargo build -p otto-agent` (or test the workspace) so that these tests use the new
//! agent.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use otto_node::blobs::BlobStore;
use otto_node::engine::{Context, Engine, EngineEvent};
use otto_node::store::{
    LogLine, NewRun, NewStage, RunId, RunState, Source, Stage, StageState, Store,
};
use otto_node::vault::Vault;
use otto_pipeline::plan::Plan;
use otto_pipeline::{Facts, MemSource, StepCatalog};
use rand::SeedableRng as _;
use tokio::sync::broadcast;

/// The longest a test waits for any one thing.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The test's node secret: any 32 bytes do.
const NODE_SECRET: [u8; 32] = [42; 32];

/// The agent slots of a test engine unless a test asks for others: more than any test
/// runs at once.
pub const SLOTS: usize = 64;

/// A node home with a running engine.
pub struct TestNode {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub blobs: BlobStore,
    pub vault: Vault,
    pub engine: Engine,
    pub task: tokio::task::JoinHandle<()>,
    pub events: broadcast::Receiver<EngineEvent>,
    pub answers_to: Vec<String>,
}

impl TestNode {
    /// A new home with an engine that runs stages without an owner.
    pub fn start() -> Self {
        Self::start_with(Vec::new())
    }

    /// A new home with an engine that also runs the stages of these owners.
    pub fn start_with(answers_to: Vec<String>) -> Self {
        Self::start_as(answers_to, None)
    }

    /// A new home with an engine whose steps run as `user` (the test must run as root).
    /// The home and its work directory can be passed through (mode 0711), as a node's
    /// work directory is.
    pub fn start_as(answers_to: Vec<String>, user: Option<otto_agent_protocol::StepUser>) -> Self {
        Self::start_full(answers_to, user, SLOTS)
    }

    /// A new home with an engine that runs at most `slots` agents at once.
    pub fn start_with_slots(answers_to: Vec<String>, slots: usize) -> Self {
        Self::start_full(answers_to, None, slots)
    }

    /// A new home with an engine whose step packages are these directories of the home
    /// (which the wall hides from steps).
    pub fn start_with_packages(packages: &[&str]) -> Self {
        let packages: Vec<String> = packages.iter().map(|p| (*p).to_owned()).collect();
        Self::start_full_with(Vec::new(), None, SLOTS, packages)
    }

    /// A new home whose stages may log at most `max_log_bytes` an attempt on the node's
    /// side and `output_bytes` on the agent's.
    pub fn start_bounded(max_log_bytes: u64, output_bytes: u64) -> Self {
        Self::start_limits(
            Vec::new(),
            None,
            SLOTS,
            Vec::new(),
            Some((max_log_bytes, output_bytes)),
            None,
        )
    }

    /// A new home whose engine starts `agent` instead of `otto-agent` (a test's stand-in
    /// that speaks the agent protocol as a hostile agent would).
    pub fn start_with_agent(agent: PathBuf) -> Self {
        Self::start_limits(Vec::new(), None, SLOTS, Vec::new(), None, Some(agent))
    }

    fn start_full(
        answers_to: Vec<String>,
        user: Option<otto_agent_protocol::StepUser>,
        slots: usize,
    ) -> Self {
        Self::start_limits(answers_to, user, slots, Vec::new(), None, None)
    }

    fn start_full_with(
        answers_to: Vec<String>,
        user: Option<otto_agent_protocol::StepUser>,
        slots: usize,
        packages: Vec<String>,
    ) -> Self {
        Self::start_limits(answers_to, user, slots, packages, None, None)
    }

    fn start_limits(
        answers_to: Vec<String>,
        user: Option<otto_agent_protocol::StepUser>,
        slots: usize,
        packages: Vec<String>,
        bounds: Option<(u64, u64)>,
        agent: Option<PathBuf>,
    ) -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("store.redb")).expect("store");
        let blobs = BlobStore::open(dir.path().join("blobs")).expect("blobs");
        let vault = Vault::new(store.clone(), &NODE_SECRET);
        let mut ctx = context(dir.path(), &store, &blobs, &vault, &answers_to);
        ctx.slots = slots;
        ctx.packages = packages.iter().map(|p| dir.path().join(p)).collect();
        if let Some(agent) = agent {
            ctx.agent_path = agent;
        }
        if let Some((max_log_bytes, output_bytes)) = bounds {
            ctx.logs =
                otto_node::store::Logs::open(dir.path().join("logs"), max_log_bytes).expect("logs");
            ctx.wall.limits.output_bytes = output_bytes;
        }
        if user.is_some() {
            std::fs::create_dir_all(&ctx.work_dir).expect("work dir");
            for path in [dir.path(), ctx.work_dir.as_path()] {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o711))
                    .expect("chmod");
            }
            ctx.wall.user = user;
        }
        let (engine, task) = Engine::start(ctx);
        let events = engine.events();
        Self {
            dir,
            store,
            blobs,
            vault,
            engine,
            task,
            events,
            answers_to,
        }
    }

    /// Starts a new engine on the same home, as a node started again after a crash.
    pub fn restart(&mut self) {
        let (engine, task) = Engine::start(context(
            self.dir.path(),
            &self.store,
            &self.blobs,
            &self.vault,
            &self.answers_to,
        ));
        self.events = engine.events();
        self.engine = engine;
        self.task = task;
    }

    /// A path in the test's directory (outside every workspace).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Stores a secret in the vault.
    pub fn set_secret(&self, name: &str, value: &str) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        self.vault
            .set(name, value.as_bytes(), &mut rng)
            .expect("set secret");
    }

    /// Plans `ottofile` with `facts`, records a run whose source snapshot holds the
    /// Ottofile and `files`, submits it and returns its id.
    pub async fn submit(&self, ottofile: &str, facts: Facts, files: &[(&str, &str)]) -> RunId {
        let plan = plan(ottofile, &facts);
        let run = self.create_run(&plan, ottofile, files);
        self.engine.submit(run).await.expect("submit");
        run
    }

    /// Records a run of `plan` (not submitted).
    pub fn create_run(&self, plan: &Plan, ottofile: &str, files: &[(&str, &str)]) -> RunId {
        self.create_run_by(plan, ottofile, files, "test")
    }

    /// Records a run of `plan` started by `started_by` (`node:NAME@ORG` for a run another
    /// node offered a stage of), not submitted.
    pub fn create_run_by(
        &self,
        plan: &Plan,
        ottofile: &str,
        files: &[(&str, &str)],
        started_by: &str,
    ) -> RunId {
        let mut all: Vec<(&str, &str)> = vec![("Ottofile", ottofile)];
        all.extend_from_slice(files);
        let snapshot = self.blobs.put_bytes(&tar_of(&all)).expect("snapshot");
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let mut random = [0u8; 10];
        random[..8].copy_from_slice(&NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        random[8..].copy_from_slice(&(std::process::id() as u16).to_be_bytes());
        let id = RunId::new(now_ms(), random);
        let stages = plan
            .body
            .stages
            .iter()
            .map(|s| NewStage {
                id: s.id.clone(),
                state: if s.skipped {
                    StageState::Skipped
                } else {
                    StageState::Pending
                },
            })
            .collect();
        self.store
            .create_run(NewRun {
                id,
                pipeline: plan.body.pipeline.clone(),
                plan: plan.canonical_bytes(),
                source: Source::Snapshot { digest: snapshot },
                facts: plan.body.facts.clone(),
                created_at: now_ms(),
                started_by: started_by.into(),
                stages,
            })
            .expect("create run");
        id
    }

    /// Waits for the first event that `matches` accepts.
    pub async fn wait_for(
        &mut self,
        what: &str,
        matches: impl Fn(&EngineEvent) -> bool,
    ) -> EngineEvent {
        let found = tokio::time::timeout(PATIENCE, async {
            loop {
                match self.events.recv().await {
                    Ok(event) if matches(&event) => return event,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        eprintln!("missed {n} events");
                    }
                    Err(broadcast::error::RecvError::Closed) => panic!("the engine stopped"),
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    /// Waits until the run is in a final state (or in `Waiting`, with `waiting`) and
    /// returns it.
    pub async fn wait_run(&mut self, run: RunId) -> RunState {
        let current = self.store.run(&run).expect("run").expect("exists").state;
        if current.is_final() {
            return current;
        }
        match self
            .wait_for("the run to end", |e| {
                matches!(e, EngineEvent::Run { run: r, state } if *r == run && state.is_final())
            })
            .await
        {
            EngineEvent::Run { state, .. } => state,
            _ => unreachable!(),
        }
    }

    /// Waits until a gate of `stage` starts waiting and returns the event's note.
    pub async fn wait_gate(&mut self, run: RunId, stage: &str) -> Option<String> {
        match self
            .wait_for("a gate to wait", |e| {
                matches!(e, EngineEvent::Gate { at, state: otto_node::store::GateState::Waiting, .. }
                    if at.run == run && at.stage == stage)
            })
            .await
        {
            EngineEvent::Gate { note, .. } => note,
            _ => unreachable!(),
        }
    }

    /// A stage as recorded.
    pub fn stage(&self, run: RunId, stage: &str) -> Stage {
        self.store
            .stage(&run, stage)
            .expect("store")
            .unwrap_or_else(|| panic!("no stage {stage}"))
    }

    /// A stage's stored log.
    pub fn log(&self, run: RunId, stage: &str) -> Vec<LogLine> {
        let mut lines: Vec<LogLine> = Vec::new();
        loop {
            let after = lines.last().map_or(0, |l| l.seq);
            let page = self
                .engine
                .logs()
                .read(&run, stage, after, 100_000)
                .expect("log lines");
            lines.extend(page.lines);
            if page.end {
                return lines;
            }
        }
    }

    /// A stage's stored log as text, one line per line.
    pub fn log_text(&self, run: RunId, stage: &str) -> String {
        let lines: Vec<String> = self.log(run, stage).into_iter().map(|l| l.text).collect();
        lines.join("\n")
    }
}

/// Plans Ottofile text with the built-in steps.
pub fn plan(ottofile: &str, facts: &Facts) -> Plan {
    let source = MemSource::new().with("pipeline/Ottofile", ottofile);
    otto_pipeline::plan(
        &source,
        Path::new("pipeline/Ottofile"),
        facts,
        &StepCatalog::builtins(),
    )
    .map(|p| p.plan)
    .unwrap_or_else(|failed| panic!("the test's Ottofile does not plan:\n{failed}"))
}

/// Facts with a branch.
pub fn on_branch(branch: &str) -> Facts {
    Facts {
        branch: Some(branch.into()),
        ..Facts::default()
    }
}

/// A tar of text files.
pub fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, path, text.as_bytes())
            .expect("append");
    }
    builder.into_inner().expect("tar")
}

/// The `otto-agent` executable next to the test's own directory, built once if missing.
pub fn agent_path() -> PathBuf {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(path) = built.as_ref() {
        return path.clone();
    }
    let exe = std::env::current_exe().expect("the test's path");
    // target/<profile>/deps/<test> → target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps")
        .to_path_buf();
    let agent = profile_dir.join("otto-agent");
    if !agent.exists() {
        let target_dir = profile_dir.parent().expect("a target directory");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = std::process::Command::new(cargo);
        command
            .args(["build", "-p", "otto-agent", "--bin", "otto-agent"])
            .env("CARGO_TARGET_DIR", target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            command.arg("--release");
        }
        let status = command.status().expect("run cargo build -p otto-agent");
        assert!(status.success(), "cargo build -p otto-agent failed");
        assert!(agent.exists(), "no agent at {}", agent.display());
    }
    *built = Some(agent.clone());
    agent
}

fn context(
    home: &Path,
    store: &Store,
    blobs: &BlobStore,
    vault: &Vault,
    answers_to: &[String],
) -> Context {
    Context {
        store: store.clone(),
        logs: otto_node::store::Logs::open(
            home.join("logs"),
            otto_node::store::logs::DEFAULT_MAX_BYTES,
        )
        .expect("logs"),
        blobs: blobs.clone(),
        vault: vault.clone(),
        node_name: "test-node".into(),
        answers_to: answers_to.to_vec(),
        agent_path: agent_path(),
        work_dir: home.join("work"),
        run_dir: home.join("run"),
        packages: Vec::new(),
        max_artifact_bytes: None,
        wall: otto_node::engine::WallSettings {
            hidden: vec![home.to_path_buf()],
            landlock_abi: otto_node::engine::wall_abi(&agent_path())
                .expect("the agent says its wall"),
            ..otto_node::engine::WallSettings::default()
        },
        webhook_base: Some("https://127.0.0.1:8443".into()),
        signer: Some(otto_node::engine::ReceiptSigner {
            key: otto_trust::NodeKey::from_seed(&[7; 32]),
            name: "test-1".into(),
            org: "test".into(),
        }),
        definitions: None,
        slots: SLOTS,
        max_parallel: None,
        checkouts: None,
        notifier: None,
        runtimes: otto_node::capabilities::Runtimes::default(),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The states of a run's stages, by id.
pub fn states(stages: &[Stage]) -> BTreeMap<String, StageState> {
    stages.iter().map(|s| (s.id.clone(), s.state)).collect()
}
