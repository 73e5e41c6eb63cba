//! Running one job in a freshly spawned `otto-agent`.
//!
//! For each job the node creates a private directory (mode 0700) under the run directory
//! with a unix socket in it (mode 0600), serves the agent protocol there ([`super::serve`]),
//! and starts `otto-agent --socket PATH` with a minimal environment (`PATH`, `HOME`, `LANG`,
//! and `TMPDIR`, `OTTO_LOG` when set): nothing else of the node's environment reaches
//! user code. The agent leads its own process group; each step leads another.
//!
//! The socket serves the agent only: a connection from any other process (a step, which
//! runs as a child of the agent, or anything else on the machine) is closed unread, by
//! the peer's process id as the kernel reports it (`SO_PEERCRED`).
//!
//! The job ends when the agent exits. Without a result, it failed ("the agent exited
//! without a result"), and the process group of its last step is killed, since no agent is
//! left to stop it. Cancelling sends the agent SIGTERM (it stops its step's group and
//! reports "cancelled"); an agent that does not exit in time gets SIGKILL. A stage timeout
//! is enforced by the agent; the node kills an agent that overstays it by a margin.

use std::collections::HashSet;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use otto_agent_protocol::mask::Masker;
use otto_agent_protocol::{Job, PackageRef, RunResult};
use rustix::process::{Pid, Signal, kill_process, kill_process_group};
use tokio::io::AsyncBufReadExt as _;
use tokio::net::UnixListener;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::serve::{self, Served};
use super::util::{self, blocking, lock};
use super::{Shared, stage::cancelled};
use crate::blobs::Digest;
use crate::store::{AttemptUpdate, RunId};

/// How long an agent gets after SIGTERM before SIGKILL, beyond its steps' grace period.
const STOP_PATIENCE: Duration = Duration::from_secs(10);

/// How long past its stage timeout an agent may run before the node stops it.
const TIMEOUT_MARGIN: Duration = Duration::from_secs(30);

/// How many of the agent's own stderr lines are kept to explain a failure.
const STDERR_TAIL: usize = 5;

/// A job to run and where its output goes.
pub(crate) struct AgentJob {
    /// The run.
    pub(crate) run: RunId,
    /// The stage whose log receives the output.
    pub(crate) stage: String,
    /// The attempt the output is logged under.
    pub(crate) attempt: u32,
    /// What the agent runs.
    pub(crate) job: Job,
    /// Masks the job's secrets in what is stored.
    pub(crate) masker: Masker,
    /// The blobs the job names, which the agent may fetch.
    pub(crate) allowed: HashSet<Digest>,
    /// True for the stage's attempt itself (its pid is recorded and its step events
    /// published); false for helper jobs (a poll, `notify` steps).
    pub(crate) own_steps: bool,
}

/// How a job ended.
#[derive(Debug, Default)]
pub(crate) struct AgentEnd {
    /// The agent's result, if it sent one.
    pub(crate) result: Option<RunResult>,
    /// The exit code of the step that failed, if it had one.
    pub(crate) exit_code: Option<i32>,
    /// Why the node stopped the agent, if it did.
    pub(crate) stopped: Option<String>,
    /// Why there is no result.
    pub(crate) failure: Option<String>,
}

impl AgentEnd {
    /// Whether the job succeeded.
    pub(crate) fn succeeded(&self) -> bool {
        self.result
            .as_ref()
            .is_some_and(|r| r.outcome == otto_agent_protocol::Outcome::Success)
    }

    /// Why the job failed, in one line.
    pub(crate) fn error(&self) -> String {
        self.result
            .as_ref()
            .and_then(|r| r.error.clone())
            .or_else(|| self.failure.clone())
            .or_else(|| self.stopped.clone())
            .unwrap_or_else(|| "failed".into())
    }
}

/// Runs `spec` in a new agent to its end. `cancel` carries a reason once the job must stop.
pub(crate) async fn run(
    sh: &Arc<Shared>,
    spec: AgentJob,
    cancel: &mut watch::Receiver<Option<String>>,
) -> AgentEnd {
    let dir = match private_dir(sh) {
        Ok(dir) => dir,
        Err(error) => {
            return AgentEnd {
                failure: Some(format!(
                    "cannot create the agent's socket directory: {error}"
                )),
                ..AgentEnd::default()
            };
        }
    };
    let end = run_in(sh, spec, cancel, &dir).await;
    if let Err(error) = std::fs::remove_dir_all(&dir) {
        tracing::warn!(target: "otto_node::engine", %error, dir = %dir.display(), "cannot remove an agent's socket directory");
    }
    end
}

async fn run_in(
    sh: &Arc<Shared>,
    mut spec: AgentJob,
    cancel: &mut watch::Receiver<Option<String>>,
    dir: &std::path::Path,
) -> AgentEnd {
    let fail = |message: String| AgentEnd {
        failure: Some(message),
        ..AgentEnd::default()
    };
    if !sh.packages.is_empty() {
        let shared = sh.clone();
        match blocking(move || pack_packages(&shared)).await {
            Ok(packed) => {
                for (package, digest) in packed {
                    spec.allowed.insert(digest);
                    spec.job.packages.push(package);
                }
            }
            Err(error) => return fail(error),
        }
    }
    // The job's containers carry its directory's random name, so that they can be found
    // and removed if the agent dies and leaves them behind.
    let job_label = dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned());
    let engine = match (spec.job.container.as_mut(), &job_label, &sh.runtimes.engine) {
        (Some(container), Some(label), Ok(engine)) => {
            container
                .labels
                .insert(crate::capabilities::LABEL_JOB.to_owned(), label.clone());
            Some(engine.clone())
        }
        _ => None,
    };
    let socket = dir.join("agent.sock");
    let listener = match UnixListener::bind(&socket) {
        Ok(listener) => listener,
        Err(error) => return fail(format!("cannot listen on {}: {error}", socket.display())),
    };
    if let Err(error) = std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)) {
        return fail(format!("cannot protect {}: {error}", socket.display()));
    }
    let job = match serde_json::to_vec(&spec.job) {
        Ok(job) => Bytes::from(job),
        Err(error) => return fail(format!("cannot encode the job: {error}")),
    };
    let timeout = spec.job.timeout_secs;
    let grace = spec.job.kill_grace_secs;
    let (result_tx, mut result_rx) = oneshot::channel();
    let served = Arc::new(Served::new(
        sh.clone(),
        spec.run,
        spec.stage.clone(),
        spec.attempt,
        job,
        spec.masker.clone(),
        spec.own_steps,
        spec.allowed,
        result_tx,
    ));
    let app = serve::router(served.clone());
    let (agent_pid, agent_pid_rx) = watch::channel(None);
    let listener = AgentOnly {
        inner: listener,
        pid: agent_pid_rx,
    };
    let server = AbortOnDrop(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::warn!(target: "otto_node::engine", %error, "agent socket server failed");
        }
    }));

    let mut child = match spawn(sh, &socket) {
        Ok(child) => child,
        Err(error) => {
            return fail(format!(
                "cannot start the agent {}: {error}",
                sh.agent_path.display()
            ));
        }
    };
    let Some(pid) = child.id() else {
        return fail("the agent exited at once".into());
    };
    agent_pid.send_replace(Some(pid));
    sh.agent_started(pid);
    if spec.own_steps {
        let store = sh.store.clone();
        let (run, stage, n) = (spec.run, spec.stage.clone(), spec.attempt);
        let update = AttemptUpdate {
            agent_pid: Some(pid),
            ..AttemptUpdate::default()
        };
        if let Err(error) = blocking(move || store.update_attempt(&run, &stage, n, update)).await {
            tracing::warn!(target: "otto_node::engine", %error, "cannot record the agent's pid");
        }
    }
    let tail = Arc::new(Mutex::new(Vec::<String>::new()));
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(read_stderr(stderr, spec.masker.clone(), tail.clone()));
    }

    let mut stopped: Option<String> = None;
    let mut kill_at: Option<Instant> = None;
    let watchdog = timeout.map(|secs| {
        Instant::now() + Duration::from_secs(secs.saturating_add(grace)) + TIMEOUT_MARGIN
    });
    let mut cancel_open = true;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            reason = cancelled(cancel), if cancel_open && stopped.is_none() => {
                signal(pid, Signal::TERM);
                stopped = Some(reason);
                kill_at = Some(Instant::now() + Duration::from_secs(grace) + STOP_PATIENCE);
                cancel_open = false;
            }
            () = sleep_until(watchdog), if stopped.is_none() => {
                signal(pid, Signal::TERM);
                stopped = Some(format!(
                    "the agent overstayed the stage timeout of {}",
                    util::human_secs(timeout.unwrap_or_default())
                ));
                kill_at = Some(Instant::now() + Duration::from_secs(grace) + STOP_PATIENCE);
            }
            () = sleep_until(kill_at) => {
                signal(pid, Signal::KILL);
                kill_at = None;
            }
        }
    };
    sh.agent_ended(pid);
    drop(server);

    let result = result_rx.try_recv().ok();
    let mut end = AgentEnd {
        exit_code: result
            .as_ref()
            .and_then(|r| r.failed_step)
            .and_then(|step| served.exit_code(step)),
        result,
        stopped,
        failure: None,
    };
    if end.result.is_none() {
        // Nothing is left to stop the last step's processes.
        if let Some(pgid) = served.last_pgid() {
            signal_group(pgid, Signal::KILL);
            if engine.is_some() {
                group_gone(pgid).await;
            }
        }
        // A container step's container is not in the step's process group (the engine's
        // monitor runs it): remove what the job left.
        if let (Some(engine), Some(label)) = (engine, job_label) {
            remove_left_behind(engine, label).await;
        }
        let status = match status {
            Ok(status) => status.to_string(),
            Err(error) => format!("unknown status ({error})"),
        };
        let last = lock(&tail).last().cloned();
        end.failure = Some(match last {
            Some(line) => format!("the agent exited without a result ({status}): {line}"),
            None => format!("the agent exited without a result ({status})"),
        });
    }
    end
}

/// How long the processes of a killed step may take to be gone.
const GROUP_PATIENCE: Duration = Duration::from_secs(5);

/// Waits (at most [`GROUP_PATIENCE`]) until no process of group `pgid` is left, so that an
/// engine client killed while creating a container is done before its containers are
/// looked for.
async fn group_gone(pgid: u32) {
    let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) else {
        return;
    };
    let deadline = Instant::now() + GROUP_PATIENCE;
    while rustix::process::test_kill_process_group(pid).is_ok() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Removes the containers labelled with job `label`: those of a dead agent's steps.
async fn remove_left_behind(engine: crate::capabilities::Engine, label: String) {
    let removed =
        blocking(move || engine.remove_labelled(crate::capabilities::LABEL_JOB, &label)).await;
    match removed {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(target: "otto_node::engine", containers = n, "removed the containers of an agent that ended without a result");
        }
        Err(error) => {
            tracing::warn!(target: "otto_node::engine", %error, "cannot remove the containers of an agent that ended without a result");
        }
    }
}

/// A new private directory for one agent's socket.
fn private_dir(sh: &Shared) -> std::io::Result<PathBuf> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&sh.run_dir)?;
    let dir = sh.run_dir.join(util::random_hex(6)?);
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

/// The node's step packages as blobs its agents fetch over their protocol (the agent
/// reads nothing of the node's by path): each package's directory as a snapshot, named
/// by its symbol. Equal packages are equal blobs, stored once.
fn pack_packages(sh: &Shared) -> Result<Vec<(PackageRef, Digest)>, String> {
    let mut packed = Vec::new();
    for dir in &sh.packages {
        let loaded = otto_agent_protocol::packages::load_dir(dir)
            .map_err(|e| format!("step package: {e}"))?;
        for package in loaded {
            let mut tar = Vec::new();
            crate::snapshot::create(package.dir(), &mut tar).map_err(|e| {
                format!("cannot pack step package {}: {e}", package.dir().display())
            })?;
            let digest = sh
                .blobs
                .put_bytes(&tar)
                .map_err(|e| format!("cannot store step package '{}': {e}", package.symbol()))?;
            let name = package.symbol().to_owned();
            packed.push((
                PackageRef {
                    name,
                    digest: digest.to_string(),
                },
                digest,
            ));
        }
    }
    Ok(packed)
}

fn spawn(sh: &Shared, socket: &std::path::Path) -> std::io::Result<tokio::process::Child> {
    let mut command = tokio::process::Command::new(&sh.agent_path);
    command
        .arg("--socket")
        .arg(socket)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
        )
        .env(
            "LANG",
            std::env::var_os("LANG").unwrap_or_else(|| "C.UTF-8".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    for name in ["HOME", "TMPDIR", "OTTO_LOG", "RUSTUP_HOME"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command.spawn()
}

/// Reads the agent's own log (stderr): each line, masked, goes to the node's log, and the
/// last few are kept to explain a failure.
async fn read_stderr(
    stderr: tokio::process::ChildStderr,
    masker: Masker,
    tail: Arc<Mutex<Vec<String>>>,
) {
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = masker.mask(&line).into_owned();
        tracing::debug!(target: "otto_node::agent", "{line}");
        let mut tail = lock(&tail);
        if tail.len() == STDERR_TAIL {
            tail.remove(0);
        }
        tail.push(line);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Signals a process; one that is gone already is fine.
pub(crate) fn signal(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw)
        && let Err(error) = kill_process(pid, signal)
        && error != rustix::io::Errno::SRCH
    {
        tracing::warn!(target: "otto_node::engine", %error, "cannot signal an agent");
    }
}

/// Signals a process group; one that is gone already is fine.
pub(crate) fn signal_group(pgid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw)
        && let Err(error) = kill_process_group(pid, signal)
        && error != rustix::io::Errno::SRCH
    {
        tracing::warn!(target: "otto_node::engine", %error, "cannot signal a step's process group");
    }
}

/// Stops an agent left running by a previous node process, if `pid` is still one of this
/// node's agents (its command line names `otto-agent` and a socket under the run
/// directory), so that a reused pid is never signalled.
pub(crate) fn stop_stale_agent(pid: u32, run_dir: &std::path::Path) {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_agent = args.first().is_some_and(|a| a.ends_with(b"otto-agent"));
    let ours = args
        .iter()
        .any(|a| a.starts_with(run_dir.as_os_str().as_encoded_bytes()));
    if is_agent && ours {
        tracing::info!(target: "otto_node::engine", pid, "stopping an agent left by the previous node process");
        signal(pid, Signal::TERM);
    }
}

/// The agent socket's listener: hands on the connections of the agent process only.
struct AgentOnly {
    inner: UnixListener,
    /// The agent's pid, once it is started.
    pid: watch::Receiver<Option<u32>>,
}

impl axum::serve::Listener for AgentOnly {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(target: "otto_node::engine", %error, "agent socket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let peer = stream.peer_cred().ok().and_then(|c| c.pid());
            let agent = match self.pid.wait_for(Option::is_some).await {
                Ok(pid) => *pid,
                Err(_) => None,
            };
            if peer.is_some() && peer.and_then(|p| u32::try_from(p).ok()) == agent {
                return (stream, addr);
            }
            tracing::warn!(target: "otto_node::engine", ?peer, ?agent, "refused a connection to an agent socket from another process than the agent");
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
