//! A small node for tests: serves the agent protocol on a unix socket in a temporary
//! directory, keeps blobs in memory, records events and the result, and runs the real
//! `otto-agent` binary against it.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use otto_agent::protocol::{BlobRef, Event, EventBody, Job, RunResult, Stream};
use otto_pipeline::plan::Step;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// How long any agent run in a test may take before the test fails.
pub const AGENT_PATIENCE: Duration = Duration::from_secs(120);

/// What the test node saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub blobs: HashMap<String, Vec<u8>>,
    pub events: Vec<Event>,
    pub batches: Vec<usize>,
    /// The size of each `POST /events` body, in bytes.
    pub batch_bytes: Vec<usize>,
    pub result: Option<RunResult>,
    pub job_requests: usize,
}

struct Shared {
    job: Mutex<Job>,
    seen: Mutex<Seen>,
}

/// A test node serving one job.
pub struct TestNode {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    shared: Arc<Shared>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// How an agent run ended.
#[derive(Debug)]
pub struct AgentRun {
    pub status: ExitStatus,
    pub stderr: String,
}

impl TestNode {
    /// Starts a node serving `steps` as the job, with the workspace `ws` in its directory.
    pub async fn start(steps: Vec<Step>) -> Self {
        Self::start_with(steps, |_| {}).await
    }

    /// Starts a node whose job is changed by `edit` first.
    pub async fn start_with(steps: Vec<Step>, edit: impl FnOnce(&mut Job)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("node.sock");
        let mut job = job(steps, dir.path().join("ws"));
        edit(&mut job);
        let shared = Arc::new(Shared {
            job: Mutex::new(job),
            seen: Mutex::new(Seen::default()),
        });
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
        let app = router(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self {
            dir,
            socket,
            shared,
            server: Some(server),
        }
    }

    /// Stops serving, as a node killed with SIGKILL does: the listener is closed and the
    /// socket file stays behind, so connecting to it is refused.
    pub async fn stop_serving(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    /// The job's workspace.
    pub fn workspace(&self) -> PathBuf {
        self.shared.job.lock().expect("lock").workspace.clone()
    }

    /// Changes the job before the agent asks for it.
    pub fn edit_job(&self, edit: impl FnOnce(&mut Job)) {
        edit(&mut self.shared.job.lock().expect("lock"));
    }

    /// Stores a blob under its digest and returns the digest.
    pub fn put_blob(&self, bytes: Vec<u8>) -> String {
        let digest = digest(&bytes);
        self.put_blob_as(&digest, bytes);
        digest
    }

    /// Stores bytes under any digest (a tampered blob when it does not match).
    pub fn put_blob_as(&self, digest: &str, bytes: Vec<u8>) {
        self.seen().blobs.insert(digest.to_owned(), bytes);
    }

    /// What the node saw so far.
    pub fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.shared.seen.lock().expect("lock")
    }

    /// The result the agent posted.
    pub fn result(&self) -> RunResult {
        self.seen()
            .result
            .clone()
            .expect("the agent posted a result")
    }

    /// Every log line, in order.
    pub fn lines(&self) -> Vec<(Option<usize>, Stream, String)> {
        self.seen()
            .events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::Log(l) => Some((l.step, l.stream, l.line.clone())),
                _ => None,
            })
            .collect()
    }

    /// The text of every line of output of the steps (stdout and stderr), in order.
    pub fn output(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|(_, s, _)| *s != Stream::Agent)
            .map(|(_, _, l)| l)
            .collect()
    }

    /// Every line at all, the agent's own included.
    pub fn all_text(&self) -> String {
        let lines: Vec<String> = self.lines().into_iter().map(|(_, _, l)| l).collect();
        lines.join("\n")
    }

    /// Starts the agent binary against this node.
    pub fn spawn_agent(&self) -> tokio::process::Child {
        self.agent_command().spawn().expect("spawn otto-agent")
    }

    /// The command that starts the agent binary against this node (log level `warn`,
    /// stderr piped), to adjust before spawning it.
    pub fn agent_command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_otto-agent"));
        command
            .arg("--socket")
            .arg(&self.socket)
            .env("OTTO_LOG", "warn")
            .env_remove("DEPLOY_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs the agent to its end (bounded by [`AGENT_PATIENCE`]).
    pub async fn run_agent(&self) -> AgentRun {
        let child = self.spawn_agent();
        finish(child).await
    }

    /// Runs the agent and checks that it exited 0 and posted a result.
    pub async fn run(&self) -> RunResult {
        let run = self.run_agent().await;
        assert!(run.status.success(), "agent failed: {}", run.stderr);
        self.result()
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}

/// Waits for an agent to exit (bounded by [`AGENT_PATIENCE`]).
pub async fn finish(child: tokio::process::Child) -> AgentRun {
    let output = tokio::time::timeout(AGENT_PATIENCE, child.wait_with_output())
        .await
        .expect("the agent finished in time")
        .expect("wait for the agent");
    AgentRun {
        status: output.status,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A job for `steps` in workspace `ws`, nothing else set.
pub fn job(steps: Vec<Step>, ws: PathBuf) -> Job {
    serde_json::from_value(serde_json::json!({
        "run": "run-1", "stage": "build", "attempt": 1,
        "steps": steps, "workspace": ws,
    }))
    .expect("job")
}

/// `sha256:<hex>` of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A step with positional and keyword arguments.
pub fn step(symbol: &str, args: Vec<Value>, kwargs: &[(&str, Value)], block: Vec<Step>) -> Step {
    Step {
        symbol: symbol.into(),
        args,
        kwargs: kwargs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        block,
    }
}

pub fn sh(script: &str) -> Step {
    step("sh", vec![script.into()], &[], vec![])
}

pub fn echo(text: &str) -> Step {
    step("echo", vec![text.into()], &[], vec![])
}

pub fn dir(path: &str, block: Vec<Step>) -> Step {
    step("dir", vec![path.into()], &[], block)
}

pub fn archive(path: &str, name: &str) -> Step {
    step(
        "archive",
        vec![],
        &[("path", path.into()), ("name", name.into())],
        vec![],
    )
}

pub fn unarchive(name: &str) -> Step {
    step("unarchive", vec![], &[("name", name.into())], vec![])
}

/// Whether the process `pid` still runs (a zombie counts as gone).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Waits up to ten seconds for `pid` to be gone; returns whether it went.
pub async fn gone(pid: u32) -> bool {
    for _ in 0..200 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Waits up to `limit` for a process the test started to exit; returns how it ended, or
/// `None` if it still runs.
pub async fn exited_within(
    child: &mut tokio::process::Child,
    limit: Duration,
) -> Option<ExitStatus> {
    tokio::time::timeout(limit, child.wait())
        .await
        .ok()
        .map(|status| status.expect("wait for the agent"))
}

/// Waits up to `limit` for `pid` to be gone; returns whether it went.
pub async fn gone_within(pid: u32, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while alive(pid) {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// Sends a signal to a process.
pub fn send_signal(pid: u32, signal: rustix::process::Signal) {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .expect("a process id");
    rustix::process::kill_process(pid, signal).expect("signal");
}

/// Waits up to `AGENT_PATIENCE` for a file to hold a process id, and returns it.
pub async fn read_pid(path: &Path) -> u32 {
    let deadline = tokio::time::Instant::now() + AGENT_PATIENCE;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no pid in {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/job", get(get_job))
        .route("/blobs", put(put_blob))
        .route("/blobs/{digest}", get(get_blob))
        .route("/events", post(post_events))
        .route("/result", post(post_result))
        .layer(DefaultBodyLimit::max(256 * 1024 * 1024))
        .with_state(shared)
}

async fn get_job(State(shared): State<Arc<Shared>>) -> Json<Job> {
    shared.seen.lock().expect("lock").job_requests += 1;
    Json(shared.job.lock().expect("lock").clone())
}

async fn put_blob(State(shared): State<Arc<Shared>>, body: Bytes) -> Json<BlobRef> {
    let digest = digest(&body);
    let size = body.len() as u64;
    shared
        .seen
        .lock()
        .expect("lock")
        .blobs
        .insert(digest.clone(), body.to_vec());
    Json(BlobRef { digest, size })
}

async fn get_blob(
    State(shared): State<Arc<Shared>>,
    UrlPath(digest): UrlPath<String>,
) -> Result<Vec<u8>, StatusCode> {
    shared
        .seen
        .lock()
        .expect("lock")
        .blobs
        .get(&digest)
        .cloned()
        .ok_or(StatusCode::NOT_FOUND)
}

async fn post_events(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let Ok(events) = serde_json::from_slice::<Vec<Event>>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut seen = shared.seen.lock().expect("lock");
    seen.batches.push(events.len());
    seen.batch_bytes.push(body.len());
    seen.events.extend(events);
    StatusCode::NO_CONTENT
}

async fn post_result(
    State(shared): State<Arc<Shared>>,
    Json(result): Json<RunResult>,
) -> StatusCode {
    shared.seen.lock().expect("lock").result = Some(result);
    StatusCode::NO_CONTENT
}
