//! One stage attempt: prepare the workspace, run the steps, save caches, build the result.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::future::Future;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant};

use otto_pipeline::plan::Step;
use serde_json::Value;

use crate::client::Client;
use crate::container;
use crate::error::Error;
use crate::events::Events;
use crate::files;
use crate::mask::Masker;
use crate::packages::{self, Invocation, Package};
use crate::process::{self, Budget, Ended};
use crate::protocol::uses::{self, Covered};
use crate::protocol::{
    Artifact, EventBody, HandedOn, Job, LogLine, Outcome, PackageRef, RunResult, SavedCache,
    StepResult, StepStarted, Stream,
};
use crate::stop::Stop;
use crate::wall::{self, StepWall};

/// The environment variable naming the secrets directory.
pub(crate) const SECRETS_DIR_VAR: &str = "OTTO_SECRETS_DIR";

/// The environment variable naming a step package's invocation file.
pub(crate) const INVOCATION_VAR: &str = "OTTO_INVOCATION";

/// Runs the job to its end and returns its result. Every problem, from a bad workspace to
/// a failing step, ends up in the result and in the events.
pub(crate) async fn run(
    job: Job,
    client: Client,
    events: Events,
    masker: Masker,
    stop: Stop,
) -> RunResult {
    let mut stage = Stage {
        grace: Duration::from_secs(job.kill_grace_secs),
        budget: Budget::new(job.limits.output_bytes),
        job,
        client,
        events,
        masker,
        stop,
        wall_spec: String::new(),
        holder: None,
        root: PathBuf::new(),
        private: None,
        env: Vec::new(),
        packages: BTreeMap::new(),
        covered: None,
        artifacts: Vec::new(),
        next_index: 0,
        next_file: 0,
    };
    let outcome = match stage.prepare().await {
        Ok(()) => {
            let steps = std::mem::take(&mut stage.job.steps);
            let root = stage.root.clone();
            stage.run_steps(&steps, &root).await
        }
        Err(message) => {
            stage
                .say(None, format!("cannot prepare the stage: {message}"))
                .await;
            Err(Failure::new(
                None,
                format!("cannot prepare the stage: {message}"),
            ))
        }
    };
    let (caches_saved, handed_on) = match outcome {
        Ok(()) => (stage.save_caches().await, stage.hand_on().await),
        Err(_) => (Vec::new(), None),
    };
    let (outcome, failed_step, error) = match outcome {
        Ok(()) => (Outcome::Success, None, None),
        Err(failure) => (
            Outcome::Failure,
            failure.step,
            Some(stage.masker.mask_text(&failure.message)),
        ),
    };
    RunResult {
        outcome,
        failed_step,
        error,
        artifacts: std::mem::take(&mut stage.artifacts),
        caches_saved,
        handed_on,
    }
}

/// The state of a running stage.
struct Stage {
    job: Job,
    client: Client,
    events: Events,
    masker: Masker,
    stop: Stop,
    grace: Duration,
    /// The output the steps may still log.
    budget: Budget,
    /// The wall around each step process (`otto-agent --wall`'s SPEC), made once the
    /// directories exist.
    wall_spec: String,
    /// The process holding the stage's read-only mount namespace, which the steps enter;
    /// ended before the private directory is removed.
    holder: Option<wall::Holder>,
    /// The canonical workspace.
    root: PathBuf,
    /// The private directory: `secrets/` and `scratch/`; removed when dropped.
    private: Option<tempfile::TempDir>,
    /// What every step process gets in its environment, on top of the agent's own.
    env: Vec<(String, String)>,
    packages: BTreeMap<String, Package>,
    /// The source files the approval covers, once found as approved (a stage with `uses`
    /// of another node's run); `None` for a stage without.
    covered: Option<Covered>,
    artifacts: Vec<Artifact>,
    next_index: usize,
    next_file: u64,
}

/// Why the steps stopped.
#[derive(Debug)]
struct Failure {
    /// The step that failed, if the failure belongs to one.
    step: Option<usize>,
    /// What went wrong.
    message: String,
    /// The exit code of the step's process, if it exited with one.
    exit_code: Option<i32>,
}

type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Failure>> + 'a>>;

impl Stage {
    /// Creates the workspace and the private directory, writes the secrets, loads the step
    /// packages, restores the source snapshot and the caches.
    async fn prepare(&mut self) -> Result<(), String> {
        let began = Instant::now();
        fs::create_dir_all(&self.job.workspace)
            .map_err(|e| format!("workspace {}: {e}", self.job.workspace.display()))?;
        self.root = fs::canonicalize(&self.job.workspace)
            .map_err(|e| format!("workspace {}: {e}", self.job.workspace.display()))?;
        let user = self.job.wall.as_ref().and_then(|w| w.user);
        if self.job.wall.is_some() {
            close_run_dir(&self.root, user)?;
        }
        let private = private_dir(&self.root)?;
        let secrets_dir = private.path().join("secrets");
        write_secrets(&secrets_dir, &self.job)?;
        // A walled step may write only its own directories, so it gets a HOME of its own
        // there (tools write to it: npm, pip, cargo, nyc), as does a step of its own user.
        let own_home = user.is_some() || self.job.wall.is_some();
        self.env = step_env(&self.job, &self.root, private.path(), own_home)?;
        if let Some(user) = user {
            files::chown_tree(&self.root, user.uid, user.gid)
                .and_then(|()| files::chown_tree(private.path(), user.uid, user.gid))
                .map_err(|e| format!("cannot hand the workspace to the step user: {e}"))?;
        }
        let mut wall = StepWall::new(
            self.job.wall.as_ref(),
            &[&self.root, private.path()],
            &self.job.limits,
            self.stable_workspace(),
        )?;
        self.holder = wall.hold();
        if self.job.wall.is_some() && !wall.is_landlocked() {
            self.say(
                None,
                "warning: this kernel has no Landlock; the steps run without a wall".into(),
            )
            .await;
        }
        self.wall_spec = wall.spec()?;
        self.private = Some(private);
        took("workspace, private directory and wall", began);

        for package in self.job.packages.clone() {
            self.add_package(&package).await?;
        }

        // The workspace handed on, by the name the node gave it (`<stage>-<attempt>`).
        let handed = self.job.start_from.as_ref().map(|from| {
            from.file_name().map_or_else(
                || from.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        });
        // A workspace handed on comes first; for a stage of another node's run the source
        // (only the files its approval covers) is put over it, so the copy cannot stand in
        // for them.
        if let Some(from) = self.job.start_from.clone() {
            let began = Instant::now();
            let root = self.root.clone();
            let copied = tokio::task::spawn_blocking(move || files::copy_tree(&from, &root, &[]))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| {
                    format!(
                        "cannot copy the workspace handed on by '{}': {e}",
                        handed.as_deref().unwrap_or_default()
                    )
                })?;
            self.hand_over(&self.root)?;
            self.say(
                None,
                format!(
                    "started from the workspace handed on ({} entries, {} bytes)",
                    copied.entries, copied.bytes
                ),
            )
            .await;
            took("workspace handed on copied", began);
        }
        if let Some(source) = self.job.source.clone() {
            let began = Instant::now();
            let root = self.root.clone();
            let restored = self.restore(&source.digest, &root, false).await;
            let entries = match (restored, &handed) {
                (Ok(done), _) => done.written,
                (Err(e), Some(handed)) => {
                    return Err(format!(
                        "cannot put the source's files over the workspace handed on by '{handed}': {e}"
                    ));
                }
                (Err(e), None) => return Err(e),
            };
            self.hand_over(&root)?;
            self.say(
                None,
                format!("restored the source snapshot ({entries} entries)"),
            )
            .await;
            took("source snapshot restored", began);
        }
        if !self.job.uses.is_empty() {
            // What the approval covers must be here as approved before anything else is
            // unpacked around it.
            let mut found = Vec::new();
            for used in &self.job.uses {
                let files = uses::check(used, &files::find_used(&self.root, &used.path))
                    .map_err(|e| e.to_string())?;
                found.push((used.clone(), files));
            }
            let covered = Covered::new(&found);
            if self.job.start_from.is_some() {
                files::find_stray(&self.root, &covered).map_err(|why| {
                    format!("the workspace handed on holds what the approval does not cover: {why}")
                })?;
            }
            self.covered = Some(covered);
        }
        for cache in self.job.restore_caches.clone() {
            let began = Instant::now();
            let root = self.root.clone();
            match self.restore(&cache.digest, &root, true).await {
                Ok(done) => {
                    self.hand_over(&root)?;
                    self.say(
                        None,
                        format!("restored cache '{}' ({})", cache.name, entries_text(done)),
                    )
                    .await;
                }
                Err(message) => {
                    self.say(
                        None,
                        format!("cache '{}' not restored: {message}", cache.name),
                    )
                    .await;
                }
            }
            took(&format!("cache '{}' restored", cache.name), began);
        }
        Ok(())
    }

    /// The workspace and the stable directory its steps see it at (created here), when the
    /// job names one that exists or can be made and lies apart from the workspace.
    fn stable_workspace(&self) -> Option<(PathBuf, PathBuf)> {
        let dir = self.job.stable_workspace.as_ref()?;
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true).mode(0o755);
        builder.create(dir).ok()?;
        let dir = fs::canonicalize(dir).ok()?;
        let apart = !dir.starts_with(&self.root) && !self.root.starts_with(&dir);
        apart.then(|| (self.root.clone(), dir))
    }

    fn run_steps<'a>(&'a mut self, steps: &'a [Step], cwd: &'a Path) -> StepFuture<'a> {
        Box::pin(async move {
            for step in steps {
                self.run_step(step, cwd).await?;
            }
            Ok(())
        })
    }

    async fn run_step(&mut self, step: &Step, cwd: &Path) -> Result<(), Failure> {
        let index = self.next_index;
        self.next_index += 1;
        if let Some(reason) = self.stop.reason() {
            return Err(Failure::new(Some(index), reason.to_string()));
        }
        let started = Instant::now();
        let symbol = step.symbol.as_str();
        let is_process = symbol == "sh" || !is_builtin(symbol);
        if !is_process {
            self.started(index, symbol, None).await;
        }
        let result = match symbol {
            "sh" => self.sh(index, step, cwd).await,
            "echo" => self.echo(index, step).await,
            "dir" => self.dir(index, step, cwd).await,
            "archive" => self.archive(index, step, cwd).await,
            "unarchive" => self.unarchive(index, step, cwd).await,
            _ => self.package(index, step, cwd).await,
        };
        let (outcome, exit_code) = match &result {
            Ok(code) => (Outcome::Success, *code),
            Err(failure) if failure.step == Some(index) => {
                self.say(Some(index), failure.message.clone()).await;
                (Outcome::Failure, failure.exit_code)
            }
            Err(_) => (Outcome::Failure, None),
        };
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        took(&format!("step {index} ({symbol})"), started);
        self.events
            .send(EventBody::StepFinished(StepResult {
                index,
                outcome,
                exit_code,
                duration_ms,
            }))
            .await;
        result.map(|_| ())
    }

    /// `sh 'script'`: `/bin/sh -e -c script`.
    async fn sh(&mut self, index: usize, step: &Step, cwd: &Path) -> Result<Option<i32>, Failure> {
        let script = match string_arg(step, 0, None) {
            Ok(script) => script,
            Err(message) => {
                self.started(index, "sh", None).await;
                return Err(Failure::new(Some(index), message));
            }
        };
        let args = ["-e".into(), "-c".into(), script.into()];
        self.run_process(index, "sh", Path::new("/bin/sh"), &args, None, cwd)
            .await
    }

    /// `echo 'text'`: the text as output lines.
    async fn echo(&mut self, index: usize, step: &Step) -> Result<Option<i32>, Failure> {
        let text = string_arg(step, 0, None).map_err(|m| Failure::new(Some(index), m))?;
        for line in text.split('\n') {
            let line = self.masker.mask(line).into_owned();
            for piece in process::pieces(&line, crate::protocol::MAX_LINE_BYTES) {
                self.events
                    .send(EventBody::Log(LogLine {
                        step: Some(index),
                        stream: Stream::Stdout,
                        line: piece.to_owned(),
                    }))
                    .await;
            }
        }
        Ok(None)
    }

    /// `dir 'path' { steps }`: the block in a subdirectory of the workspace.
    async fn dir(&mut self, index: usize, step: &Step, cwd: &Path) -> Result<Option<i32>, Failure> {
        let fail = |m| Failure::new(Some(index), m);
        let path = string_arg(step, 0, None).map_err(fail)?;
        let rel = files::relative(&path).map_err(fail)?;
        let target = files::enter_dir(&self.root, cwd, &rel).map_err(fail)?;
        self.run_steps(&step.block, &target).await?;
        Ok(None)
    }

    /// `archive path: 'p', name: 'n'`: a tar of `p` stored as artifact `n`.
    async fn archive(
        &mut self,
        index: usize,
        step: &Step,
        cwd: &Path,
    ) -> Result<Option<i32>, Failure> {
        let fail = |m| Failure::new(Some(index), m);
        let path = string_arg(step, usize::MAX, Some("path")).map_err(fail)?;
        let name = string_arg(step, usize::MAX, Some("name")).map_err(fail)?;
        if name.is_empty() {
            return Err(fail("an artifact needs a name".into()));
        }
        if self.artifacts.iter().any(|a| a.name == name) {
            return Err(fail(format!(
                "artifact '{name}' is archived twice in this stage"
            )));
        }
        let rel = files::relative(&path).map_err(fail)?;
        let source = files::existing(&self.root, cwd, &rel)
            .map_err(fail)?
            .ok_or_else(|| fail(format!("nothing at '{path}' to archive")))?;
        let limit = self
            .job
            .max_artifact_bytes
            .unwrap_or(crate::protocol::DEFAULT_MAX_ARTIFACT_BYTES);
        let (digest, size) = self
            .store_tar(vec![(rel, source)], files::Times::Drop, limit)
            .await
            .map_err(|e| match e {
                StoreError::TooLarge => fail(format!(
                    "artifact '{name}' is larger than the limit of {limit} bytes ({}); the node sets it with [agent] max_artifact_bytes",
                    human_bytes(limit)
                )),
                StoreError::Other(message) => fail(message),
            })?;
        self.say(
            Some(index),
            format!("archived '{name}': {size} bytes, {digest}"),
        )
        .await;
        self.artifacts.push(Artifact { name, digest, size });
        Ok(None)
    }

    /// `unarchive name: 'n'`: extracts artifact `n` into the current directory.
    async fn unarchive(
        &mut self,
        index: usize,
        step: &Step,
        cwd: &Path,
    ) -> Result<Option<i32>, Failure> {
        let fail = |m| Failure::new(Some(index), m);
        let name = string_arg(step, usize::MAX, Some("name")).map_err(fail)?;
        let digest = self
            .job
            .artifacts
            .get(&name)
            .cloned()
            .or_else(|| {
                self.artifacts
                    .iter()
                    .find(|a| a.name == name)
                    .map(|a| a.digest.clone())
            })
            .ok_or_else(|| {
                let known: Vec<&str> = self
                    .job
                    .artifacts
                    .keys()
                    .map(String::as_str)
                    .chain(self.artifacts.iter().map(|a| a.name.as_str()))
                    .collect();
                fail(if known.is_empty() {
                    format!("no artifact named '{name}': none is available to this stage")
                } else {
                    format!(
                        "no artifact named '{name}' (available: {})",
                        known.join(", ")
                    )
                })
            })?;
        let done = self
            .restore(&digest, cwd, true)
            .await
            .map_err(|e| fail(format!("artifact '{name}': {e}")))?;
        self.hand_over(cwd).map_err(fail)?;
        self.say(
            Some(index),
            format!("restored '{name}' ({})", entries_text(done)),
        )
        .await;
        Ok(None)
    }

    /// A step package: arguments checked, invocation file written, entrypoint run.
    async fn package(
        &mut self,
        index: usize,
        step: &Step,
        cwd: &Path,
    ) -> Result<Option<i32>, Failure> {
        let symbol = step.symbol.as_str();
        if let Some(c) = &self.job.container {
            self.started(index, symbol, None).await;
            return Err(Failure::new(
                Some(index),
                format!(
                    "step package '{symbol}' runs on the node's machine, not in the container of image {}: a stage of runtime docker runs sh steps and the built-in steps",
                    c.image
                ),
            ));
        }
        let prepared = self.prepare_package(step);
        let (package, file) = match prepared {
            Ok(ready) => ready,
            Err(message) => {
                self.started(index, symbol, None).await;
                return Err(Failure::new(Some(index), message));
            }
        };
        let entrypoint = package.entrypoint();
        self.run_process(index, symbol, &entrypoint, &[], Some(&file), cwd)
            .await
    }

    fn prepare_package(&mut self, step: &Step) -> Result<(Package, PathBuf), String> {
        let symbol = step.symbol.as_str();
        let package = self.packages.get(symbol).cloned().ok_or_else(|| {
            format!("unknown step '{symbol}': not a built-in step and no step package defines it")
        })?;
        let args = package.bind(step).map_err(|e| e.to_string())?;
        let invocation = Invocation {
            symbol: symbol.to_owned(),
            args,
            workspace: self.root.clone(),
        };
        let file = self.scratch_file("invocation", "json")?;
        let json = serde_json::to_vec(&invocation).map_err(|e| e.to_string())?;
        write_private(&file, &json)
            .map_err(|e| format!("cannot write the invocation file: {e}"))?;
        Ok((package, file))
    }

    /// Runs `program` with `args` (and the invocation file, for a step package) inside
    /// the stage's wall to its end, and turns how it ended into the step's result.
    async fn run_process(
        &mut self,
        index: usize,
        symbol: &str,
        program: &Path,
        args: &[OsString],
        invocation: Option<&Path>,
        cwd: &Path,
    ) -> Result<Option<i32>, Failure> {
        if let Err(mismatch) = self.check_uses() {
            self.started(index, symbol, None).await;
            return Err(Failure::new(
                Some(index),
                format!("'{symbol}' not run: {mismatch}; a step before it changed it"),
            ));
        }
        let container = self.step_container(index, cwd);
        let mut input = None;
        let command = match &container {
            Some(Ok(step)) => step.command(program, args),
            Some(Err(e)) => Err(e.clone()),
            None => wall::command(&self.wall_spec, program, args)
                .map(|mut command| {
                    command.current_dir(cwd);
                    // The agent's own environment, then the step's variables over it.
                    let mut env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
                    env.extend(
                        self.env
                            .iter()
                            .map(|(k, v)| (OsString::from(k), OsString::from(v))),
                    );
                    if let Some(file) = invocation {
                        env.insert(INVOCATION_VAR.into(), file.as_os_str().to_owned());
                    }
                    input = Some(wall::encode_env(
                        env.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str())),
                    ));
                    command
                })
                .map_err(|e| e.to_string()),
        };
        let command = match command {
            Ok(command) => command,
            Err(e) => {
                self.started(index, symbol, None).await;
                return Err(Failure::new(
                    Some(index),
                    format!("cannot start '{symbol}': {e}"),
                ));
            }
        };
        // A container's engine is its own process group; a wall process makes its own
        // session (so no step has the node's controlling terminal).
        let own_session = container.is_none();
        let ended = self
            .spawn_and_wait(index, symbol, command, own_session, input)
            .await;
        if let Some(Ok(step)) = &container {
            step.remove().await;
        }
        ended
    }

    /// Whether every used path still holds what the approval covers.
    fn check_uses(&self) -> Result<(), uses::Mismatch> {
        if self.covered.is_none() {
            return Ok(());
        }
        for used in &self.job.uses {
            uses::check(used, &files::find_used(&self.root, &used.path))?;
        }
        Ok(())
    }

    /// The container step `index` runs in, for a stage of `runtime docker`.
    fn step_container(
        &self,
        index: usize,
        cwd: &Path,
    ) -> Option<Result<container::StepContainer, String>> {
        let c = self.job.container.as_ref()?;
        let Some(private) = self.private.as_ref() else {
            return Some(Err("the private directory is missing".into()));
        };
        let user = self
            .job
            .wall
            .as_ref()
            .and_then(|w| w.user)
            .unwrap_or_else(|| crate::protocol::StepUser {
                uid: rustix::process::getuid().as_raw(),
                gid: rustix::process::getgid().as_raw(),
            });
        let secret = |name: &str| self.job.secret_env && self.job.secrets.contains_key(name);
        let (secrets, settings) = self.env.iter().cloned().partition(|(name, _)| secret(name));
        Some(Ok(container::StepContainer {
            container: c.clone(),
            name: format!("otto-{}-{index}", std::process::id()),
            workspace: self.root.clone(),
            private: private.path().to_owned(),
            cwd: cwd.to_owned(),
            user,
            limits: self.job.limits,
            settings,
            secrets,
        }))
    }

    /// Starts `command` and waits for it, turning how it ended into the step's result.
    async fn spawn_and_wait(
        &self,
        index: usize,
        symbol: &str,
        command: tokio::process::Command,
        own_session: bool,
        input: Option<Vec<u8>>,
    ) -> Result<Option<i32>, Failure> {
        let spawned = process::spawn(
            command,
            own_session,
            input,
            index,
            &self.events,
            &self.masker,
            &self.budget,
        );
        let running = match spawned {
            Ok(running) => running,
            Err(e) => {
                self.started(index, symbol, None).await;
                return Err(Failure::new(
                    Some(index),
                    format!("cannot start '{symbol}': {e}"),
                ));
            }
        };
        // The process is watched while its start is reported: a stop must reach it even when
        // the event queue is full because the node does not take events.
        let pgid = running.pgid();
        let (_, ended) = tokio::join!(
            self.started(index, symbol, pgid),
            running.wait(&self.stop, self.grace)
        );
        match ended {
            Ok(Ended::Exited(status)) if status.success() => Ok(Some(0)),
            Ok(Ended::Exited(status)) => Err(match (status.code(), status.signal()) {
                (Some(code), _) => Failure {
                    step: Some(index),
                    message: format!("'{symbol}' exited with code {code}"),
                    exit_code: Some(code),
                },
                (None, Some(signal)) => Failure::new(
                    Some(index),
                    format!("'{symbol}' was killed by signal {signal}"),
                ),
                (None, None) => Failure::new(Some(index), format!("'{symbol}' failed")),
            }),
            Ok(Ended::Stopped(reason)) => Err(Failure::new(Some(index), reason.to_string())),
            Err(e) => Err(Failure::new(
                Some(index),
                format!("lost track of '{symbol}': {e}"),
            )),
        }
    }

    /// Copies the workspace into the job's `hand_on` directory, if it has one; a copy that
    /// cannot be made is reported, removed, and leaves later stages without it.
    async fn hand_on(&mut self) -> Option<HandedOn> {
        let hand_on = self.job.hand_on.clone()?;
        let began = Instant::now();
        let exclude: Result<Vec<PathBuf>, String> =
            hand_on.exclude.iter().map(|p| files::relative(p)).collect();
        let root = self.root.clone();
        let dir = hand_on.dir.clone();
        let copied = match exclude {
            Err(message) => Err(message),
            Ok(exclude) => tokio::task::spawn_blocking(move || {
                // Its own new directory, which only the agent's user may enter.
                let mut builder = fs::DirBuilder::new();
                builder.mode(0o700);
                if let Some(parent) = dir.parent() {
                    builder
                        .recursive(true)
                        .create(parent)
                        .map_err(|e| format!("{}: {e}", parent.display()))?;
                }
                builder
                    .recursive(false)
                    .create(&dir)
                    .map_err(|e| format!("{}: {e}", dir.display()))?;
                files::copy_tree(&root, &dir, &exclude)
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string())),
        };
        match copied {
            Ok(copied) => {
                let left_out = if hand_on.exclude.is_empty() {
                    String::new()
                } else {
                    format!(", without {}", hand_on.exclude.join(", "))
                };
                self.say(
                    None,
                    format!(
                        "workspace handed on to later stages: {} entries, {} bytes{left_out}",
                        copied.entries, copied.bytes
                    ),
                )
                .await;
                took("workspace handed on", began);
                Some(HandedOn {
                    entries: copied.entries,
                    bytes: copied.bytes,
                })
            }
            Err(message) => {
                let _ = fs::remove_dir_all(&hand_on.dir);
                self.say(None, format!("workspace not handed on: {message}"))
                    .await;
                None
            }
        }
    }

    /// Saves each cache of the job; a cache that cannot be saved is reported and skipped.
    async fn save_caches(&mut self) -> Vec<SavedCache> {
        let mut saved = Vec::new();
        for cache in self.job.save_caches.clone() {
            let began = Instant::now();
            let phase = format!("cache '{}' saved", cache.name);
            match self.save_cache(&cache.paths).await {
                Ok(Some((digest, size))) => {
                    self.say(None, format!("saved cache '{}': {size} bytes", cache.name))
                        .await;
                    saved.push(SavedCache {
                        name: cache.name,
                        digest,
                        size,
                    });
                }
                Ok(None) => {
                    self.say(
                        None,
                        format!("cache '{}' not saved: none of its paths exist", cache.name),
                    )
                    .await;
                }
                Err(message) => {
                    self.say(None, format!("cache '{}' not saved: {message}", cache.name))
                        .await;
                }
            }
            took(&phase, began);
        }
        saved
    }

    async fn save_cache(&mut self, paths: &[String]) -> Result<Option<(String, u64)>, String> {
        let mut items = Vec::new();
        for path in paths {
            let rel = files::relative(path)?;
            if let Some(source) = files::existing(&self.root, &self.root, &rel)? {
                items.push((rel, source));
            }
        }
        if items.is_empty() {
            return Ok(None);
        }
        match self.store_tar(items, files::Times::Keep, u64::MAX).await {
            Ok(stored) => Ok(Some(stored)),
            Err(StoreError::TooLarge) => Err("the cache is too large".to_owned()),
            Err(StoreError::Other(message)) => Err(message),
        }
    }

    /// Writes a tar of `items` in the scratch directory and stores it as a blob.
    async fn store_tar(
        &mut self,
        items: Vec<(PathBuf, PathBuf)>,
        times: files::Times,
        max_bytes: u64,
    ) -> Result<(String, u64), StoreError> {
        let file = self.scratch_file("archive", "tar")?;
        let target = file.clone();
        let written = tokio::task::spawn_blocking(move || {
            files::write_tar(&target, &items, times, max_bytes)
        })
        .await
        .map_err(|e| e.to_string())?;
        let written = match written {
            Ok(written) => written,
            Err(e) => {
                // What was written so far goes at once, not with the workspace.
                let _ = fs::remove_file(&file);
                return Err(if e.kind() == std::io::ErrorKind::FileTooLarge {
                    StoreError::TooLarge
                } else {
                    StoreError::Other(format!("cannot write the archive: {e}"))
                });
            }
        };
        let stored = self
            .interruptible(self.client.put_blob(&file, &written.digest))
            .await;
        let _ = fs::remove_file(&file);
        let blob = stored?;
        if blob.size != written.size {
            return Err(StoreError::Other(format!(
                "the node stored {} bytes of a {}-byte archive",
                blob.size, written.size
            )));
        }
        Ok((blob.digest, blob.size))
    }

    /// Fetches the tar blob `digest`, checks it, and extracts it into `dest`; `guarded`,
    /// with no entry over what the approval covers.
    async fn restore(
        &mut self,
        digest: &str,
        dest: &Path,
        guarded: bool,
    ) -> Result<files::Extracted, String> {
        let file = self.scratch_file("blob", "tar")?;
        let began = Instant::now();
        let fetched = self
            .interruptible(self.client.get_blob(digest, &file))
            .await;
        took("blob fetched", began);
        if let Err(message) = fetched {
            let _ = fs::remove_file(&file);
            return Err(message);
        }
        let target = file.clone();
        let dest = dest.to_owned();
        let root = self.root.clone();
        let covered = self.covered.clone().filter(|_| guarded);
        let extracted = tokio::task::spawn_blocking(move || {
            let guard = covered.as_ref().map(|covered| files::Guard {
                root: &root,
                covered,
            });
            files::extract_tar(&target, &dest, guard)
        })
        .await
        .map_err(|e| e.to_string());
        took("blob extracted", began);
        let _ = fs::remove_file(&file);
        extracted?
    }

    /// Gives what the agent wrote under `dir` to the step user, if steps run as another.
    fn hand_over(&self, dir: &Path) -> Result<(), String> {
        match self.job.wall.as_ref().and_then(|w| w.user) {
            Some(user) => files::chown_tree(dir, user.uid, user.gid)
                .map_err(|e| format!("cannot hand {} to the step user: {e}", dir.display())),
            None => Ok(()),
        }
    }

    /// Runs `future` unless the stage is stopped first.
    async fn interruptible<T>(
        &self,
        future: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, String> {
        tokio::select! {
            result = future => result.map_err(|e| e.to_string()),
            reason = self.stop.wait() => Err(reason.to_string()),
        }
    }

    /// Fetches step package `package` into `packages/<name>` of the private directory and
    /// loads it. The package must define the step it is named after.
    async fn add_package(&mut self, package: &PackageRef) -> Result<(), String> {
        let name = &package.name;
        if !is_file_name(name) {
            return Err(format!(
                "step package name '{name}' cannot be a directory name"
            ));
        }
        let private = self
            .private
            .as_ref()
            .ok_or("the private directory is missing")?;
        let dir = private.path().join("packages").join(name);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(format!("two step packages are named '{name}'"));
            }
            Err(e) => return Err(format!("step package '{name}': {e}")),
        }
        self.restore(&package.digest, &dir, false)
            .await
            .map_err(|e| format!("step package '{name}': {e}"))?;
        self.hand_over(&dir)?;
        let loaded = packages::load(&dir).map_err(|e| e.to_string())?;
        if loaded.symbol() != name {
            return Err(format!(
                "step package '{name}' defines step '{}', not '{name}'",
                loaded.symbol()
            ));
        }
        self.packages.insert(name.clone(), loaded);
        Ok(())
    }

    /// A new file name in the private scratch directory.
    fn scratch_file(&mut self, stem: &str, ext: &str) -> Result<PathBuf, String> {
        let private = self
            .private
            .as_ref()
            .ok_or("the private directory is missing")?;
        self.next_file += 1;
        Ok(private
            .path()
            .join("scratch")
            .join(format!("{stem}-{}.{ext}", self.next_file)))
    }

    async fn started(&self, index: usize, symbol: &str, pgid: Option<u32>) {
        self.events
            .send(EventBody::StepStarted(StepStarted {
                index,
                symbol: symbol.to_owned(),
                pgid,
            }))
            .await;
    }

    /// A line from the agent itself, masked.
    async fn say(&self, step: Option<usize>, text: String) {
        for line in self.masker.mask_text(&text).split('\n') {
            for piece in process::pieces(line, crate::protocol::MAX_LINE_BYTES) {
                self.events
                    .send(EventBody::Log(LogLine {
                        step,
                        stream: Stream::Agent,
                        line: piece.to_owned(),
                    }))
                    .await;
            }
        }
    }
}

impl Failure {
    fn new(step: Option<usize>, message: String) -> Self {
        Self {
            step,
            message,
            exit_code: None,
        }
    }
}

fn is_builtin(symbol: &str) -> bool {
    packages::BUILTIN_SYMBOLS.contains(&symbol)
}

/// The string argument at `position`, or the keyword argument `name`.
fn string_arg(step: &Step, position: usize, name: Option<&str>) -> Result<String, String> {
    let symbol = &step.symbol;
    let value = match name {
        Some(name) => step.kwargs.get(name),
        None => step.args.get(position),
    };
    match value {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => Err(match name {
            Some(name) => format!("'{symbol}' expects a string for '{name}:'"),
            None => format!("'{symbol}' expects a string"),
        }),
        None => Err(match name {
            Some(name) => format!("'{symbol}' needs '{name}:'"),
            None => format!("'{symbol}' needs a string argument"),
        }),
    }
}

/// Closes the directory that holds the workspace `root` (the run's directory, which also
/// holds the stages' private directories and the workspaces handed on) to every user but
/// the agent's and, when steps run as another user, that user's group, which may pass
/// through it but not list it (mode 0710; 0700 otherwise). Then a process of another user
/// (another node's step, or `nobody` running a set-user-id copy a uid-0 step left in its
/// workspace, #12 F3a) cannot reach a workspace or private directory by a name it guesses.
/// Left as it is when the agent's user does not own it or it is open to all (a workspace
/// right under `/tmp`).
fn close_run_dir(root: &Path, user: Option<crate::protocol::StepUser>) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    let Some(parent) = root.parent() else {
        return Ok(());
    };
    let meta = fs::metadata(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    if meta.uid() != rustix::process::geteuid().as_raw() || meta.mode() & 0o1002 != 0 {
        return Ok(());
    }
    let mode = match user {
        Some(user) => {
            std::os::unix::fs::chown(parent, None, Some(user.gid))
                .map_err(|e| format!("cannot hand {} to the step user: {e}", parent.display()))?;
            0o710
        }
        None => 0o700,
    };
    fs::set_permissions(parent, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot close {}: {e}", parent.display()))
}

/// Creates the private directory (mode 0700) with `secrets/`, `scratch/` and `tmp/` (the
/// steps' `TMPDIR`), next to the workspace: under the node's work directory, where no
/// other stage's wall lets it in.
fn private_dir(root: &Path) -> Result<tempfile::TempDir, String> {
    let parent = root
        .parent()
        .ok_or("the workspace cannot be the root directory")?;
    let dir = tempfile::Builder::new()
        .prefix(".otto-private-")
        // A name no step of another stage guesses.
        .rand_bytes(24)
        .tempdir_in(parent)
        .map_err(|e| format!("cannot create a private directory: {e}"))?;
    let path = fs::canonicalize(dir.path()).map_err(|e| e.to_string())?;
    if path.starts_with(root) || root.starts_with(&path) {
        return Err(format!(
            "the private directory {} would overlap the workspace; point TMPDIR elsewhere",
            path.display()
        ));
    }
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))
        .map_err(|e| e.to_string())?;
    for sub in ["secrets", "scratch", "tmp", "home", "packages"] {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(dir.path().join(sub))
            .map_err(|e| format!("cannot create a private directory: {e}"))?;
    }
    Ok(dir)
}

/// Writes each secret to a file of its name (mode 0600).
fn write_secrets(dir: &Path, job: &Job) -> Result<(), String> {
    for (name, value) in &job.secrets {
        if !is_file_name(name) {
            return Err(format!(
                "secret name '{name}' cannot be used as a file name (use letters, digits, '_', '-' and '.')"
            ));
        }
        write_private(&dir.join(name), value.expose().as_bytes())
            .map_err(|e| format!("cannot write secret '{name}': {e}"))?;
    }
    Ok(())
}

/// Creates a new file only its owner can read, with these contents.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)
}

/// The variables every step gets: the settings, the secrets when `secret_env`, and
/// `OTTO_RUN`, `OTTO_STAGE`, `OTTO_ATTEMPT`, `OTTO_WORKSPACE`, `OTTO_SECRETS_DIR`, `TMPDIR`
/// (in the private directory) and, for a step user of its own, `HOME` there too.
fn step_env(
    job: &Job,
    root: &Path,
    private: &Path,
    own_home: bool,
) -> Result<Vec<(String, String)>, String> {
    let secrets_dir = private.join("secrets");
    let mut env = Vec::new();
    for (name, value) in &job.env {
        if !is_env_name(name) || value.contains('\0') {
            return Err(format!(
                "setting '{name}' cannot be an environment variable"
            ));
        }
        env.push((name.clone(), value.clone()));
    }
    if job.secret_env {
        for (name, value) in &job.secrets {
            if !is_env_name(name) || value.expose().contains('\0') {
                return Err(format!("secret '{name}' cannot be an environment variable"));
            }
            env.push((name.clone(), value.expose().to_owned()));
        }
    }
    env.push(("OTTO_RUN".into(), job.run.clone()));
    env.push(("OTTO_STAGE".into(), job.stage.clone()));
    env.push(("OTTO_ATTEMPT".into(), job.attempt.to_string()));
    env.push(("OTTO_WORKSPACE".into(), root.display().to_string()));
    env.push((SECRETS_DIR_VAR.into(), secrets_dir.display().to_string()));
    env.push(("TMPDIR".into(), private.join("tmp").display().to_string()));
    if own_home {
        env.push(("HOME".into(), private.join("home").display().to_string()));
        // rustup keeps its toolchains under the agent's HOME unless told otherwise; the
        // steps still find them there (they only read them).
        if std::env::var_os("RUSTUP_HOME").is_none()
            && let Some(home) = std::env::var_os("HOME")
        {
            let rustup = Path::new(&home).join(".rustup");
            if rustup.is_dir() {
                env.push(("RUSTUP_HOME".into(), rustup.display().to_string()));
            }
        }
    }
    Ok(env)
}

fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_for_files_and_variables() {
        assert!(is_file_name("DEPLOY_TOKEN") && is_file_name("key.pem"));
        assert!(!is_file_name("../x") && !is_file_name(".hidden") && !is_file_name("a/b"));
        assert!(is_env_name("DEPLOY_TOKEN") && is_env_name("_x1"));
        assert!(!is_env_name("1X") && !is_env_name("A-B") && !is_env_name(""));
    }
}

/// Why [`Stage::store_tar`] stored nothing.
#[derive(Debug)]
enum StoreError {
    /// The tar would be larger than its limit.
    TooLarge,
    Other(String),
}

impl From<String> for StoreError {
    fn from(message: String) -> Self {
        Self::Other(message)
    }
}

/// `6 entries`, or `6 entries, 1 already here as the approval covers them`.
fn entries_text(done: files::Extracted) -> String {
    match done.kept {
        0 => format!("{} entries", done.written),
        kept => format!(
            "{} entries, {kept} already here as the approval covers them",
            done.written
        ),
    }
}

/// `2147483648` as `2 GiB`, for messages: the largest whole unit.
fn human_bytes(bytes: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

/// Logs at debug level how long a phase of the attempt took, for measuring where an
/// attempt's time goes (`OTTO_LOG=otto_agent::timing=debug`).
pub(crate) fn took(phase: &str, since: Instant) {
    tracing::debug!(target: "otto_agent::timing", ms = since.elapsed().as_millis() as u64, "{phase}");
}
