//! The protocol between an Otto node and its agents, shared by both sides and holding no
//! execution code: the messages (this module), how secrets are masked in log lines
//! ([`mask`]), and what a step package is ([`packages`]).
//!
//! The node runs each stage attempt in its own `otto-agent` process and serves it over a
//! unix socket that exists only for that attempt. The agent is the HTTP/1.1 client; the
//! node is the server. Both sides use the types of this crate, so a change here is a
//! change of the protocol: bump [`PROTOCOL_VERSION`] when it stops being compatible.
//! Everything the agent uses (steps, step packages, the source, artifacts, caches,
//! secrets) reaches it through this protocol; it reads nothing of the node's by path, but
//! for one directory of the node's work directory the job names: a workspace an earlier
//! stage of the run handed on (`start_from`, `hand_on`).
//!
//! # Wire format
//!
//! Every body is JSON (UTF-8, `content-type: application/json`) except blob bodies, which
//! are raw bytes (`application/octet-stream`). Every request carries the header
//! [`VERSION_HEADER`] with [`PROTOCOL_VERSION`] in decimal. The request target is a plain
//! path; the `host` header is `otto-node` and means nothing. The node answers a request it
//! cannot serve with a 4xx or 5xx status and a short text body; the agent treats any status
//! outside 2xx as an error of that request.
//!
//! | method and path | request body | response body |
//! |---|---|---|
//! | `GET /job` | none | [`Job`] |
//! | `GET /blobs/{digest}` | none | the blob's bytes |
//! | `PUT /blobs` | the blob's bytes | [`BlobRef`] |
//! | `POST /events` | JSON array of [`Event`] | none (`204`) |
//! | `POST /result` | [`RunResult`] | none (`204`) |
//!
//! ## `GET /job`
//!
//! The first request. The answer says what to run:
//!
//! ```json
//! {
//!   "run": "01J9Z4", "stage": "build", "attempt": 1,
//!   "steps": [{"symbol": "sh", "args": ["make"], "kwargs": {}, "block": []}],
//!   "workspace": "/home/otto/.otto/work/01J9Z4/build-1",
//!   "env": {"REGION": "eu-1"},
//!   "secrets": {"DEPLOY_TOKEN": "..."}, "secret_env": false,
//!   "artifacts": {"site": "sha256:9f86d0…"},
//!   "source": {"digest": "sha256:2c26b4…"},
//!   "uses": [{"path": "deploy.sh", "sha256": "sha256:5e1a07…"}],
//!   "restore_caches": [{"name": "deps", "paths": ["vendor/"], "digest": "sha256:…"}],
//!   "save_caches": [{"name": "deps", "paths": ["vendor/"]}],
//!   "packages": [{"name": "greet", "digest": "sha256:…"}],
//!   "timeout_secs": 1800, "kill_grace_secs": 5,
//!   "container": {"engine": "/usr/bin/podman", "kind": "podman", "options": [],
//!                 "image": "localhost/tools:1",
//!                 "labels": {"otto.job": "3f9c0d1e2a4b", "otto.node": "ed25519:…"}}
//! }
//! ```
//!
//! `steps` are the stage's resolved steps exactly as in the plan
//! ([`otto_pipeline::plan::Step`]). `secrets` holds only the secrets of the stage's
//! environment, by name. `artifacts` maps the names `unarchive` may ask for to blob
//! digests. `source` is the snapshot the workspace starts from, a tar blob. `uses`, for a
//! stage of another node's run, names the source files (or directories, by the digest of
//! the files under them) its owner's approval covers: the agent refuses an `unarchive` or
//! cache entry that would replace, shadow or add to one of them, and runs a program step
//! only while they hold their approved digests (see [`uses`]); an agent that does not know
//! the field would ignore it, hence protocol version 6. `packages`
//! are the node's step packages, each a tar blob of its directory (its manifest and
//! executable) named by its symbol, which the agent unpacks into its private directory. Every field
//! after `workspace` may be left out and then means "none" (`kill_grace_secs` defaults to
//! [`DEFAULT_KILL_GRACE_SECS`]). `container`, for a stage of `runtime docker`, names the
//! engine and the image every `sh` step runs in ([`Container`]); an agent that cannot run
//! it must fail the attempt, never run the steps outside (hence protocol version 3).
//!
//! `hand_on` (`{"dir": "/home/otto/.otto/work/01J9Z4/.handed/build-1", "exclude":
//! [".npm"]}`), for a stage a later stage starts from (`runtime { from }`), tells the agent
//! to copy the workspace, without the excluded paths, into that new directory once the
//! steps succeeded, and to say so in the result's `handed_on`; `start_from` names such a
//! directory for the later stage, whose workspace starts as a copy of it instead of
//! `source` ([`HandOn`]). An agent that ignored them would start a later stage from an
//! empty workspace, hence protocol version 5.
//!
//! ## `GET /blobs/{digest}` and `PUT /blobs`
//!
//! Blobs are addressed by their digest, `sha256:` followed by 64 lowercase hex digits
//! (see [`is_digest`]). `GET` streams a stored blob: the source snapshot, an input artifact
//! or a cache, each a tar archive. The agent hashes what it receives and refuses a blob
//! whose bytes do not match the digest it asked for. `PUT` stores the request body and
//! answers with its [`BlobRef`]; the agent checks that the digest the node computed is
//! the one it computed itself.
//!
//! ## `POST /events`
//!
//! The agent reports progress as a JSON array of [`Event`]s, in order. It sends a batch
//! when [`MAX_BATCH_EVENTS`] events are waiting, when one more event would make the body
//! larger than [`MAX_EVENTS_BODY_BYTES`], or [`FLUSH_INTERVAL_MS`] after the first event of
//! the batch was produced, whichever comes first, and one last batch before the result.
//! The node refuses a larger body whole (`413`, none of its events taken; hence protocol
//! version 4). `seq` starts at 0 and grows by one per event over the whole attempt, so the node
//! can spot a gap. A batch the node did not take is sent again (three tries in all), so the
//! node ignores events whose `seq` it already has. Every event has `time`, milliseconds since the Unix epoch, and a `kind`:
//!
//! ```json
//! [
//!   {"seq": 0, "time": 1732480000000, "kind": "step_started", "index": 0, "symbol": "sh", "pgid": 4242},
//!   {"seq": 1, "time": 1732480000004, "kind": "log", "step": 0, "stream": "stdout", "line": "ok"},
//!   {"seq": 2, "time": 1732480000010, "kind": "step_finished", "index": 0, "outcome": "success",
//!    "exit_code": 0, "duration_ms": 10}
//! ]
//! ```
//!
//! Steps are numbered in depth-first order over the whole step tree: the steps inside a
//! `dir` block follow the `dir` step itself. A log line carries the number of the step that
//! wrote it, or `null` for a line from the agent about the attempt as a whole (restoring
//! the source, saving caches). `stream` is `stdout`, `stderr` or `agent` (a message from the
//! agent itself). A line never holds a newline and has at most [`MAX_LINE_BYTES`] bytes;
//! longer output is cut into several lines. Every secret of the job is masked in every line
//! before it is sent (see [`crate::mask`]). `pgid` is the process group of a step that runs
//! as a process: if the agent dies, the node kills that group.
//!
//! ## `POST /result`
//!
//! The last request: the attempt's [`RunResult`].
//!
//! ```json
//! {"outcome": "failure", "failed_step": 2, "error": "'sh' exited with code 1",
//!  "artifacts": [{"name": "site", "digest": "sha256:9f86d0…", "size": 10240}],
//!  "caches_saved": [], "handed_on": null}
//! ```
//!
//! Caches are saved only when the steps succeeded. After the result the agent removes its
//! private files and exits with code 0, whatever the outcome. A non-zero exit code means the
//! agent itself could not do its work (the node was unreachable, the job unreadable).
#![warn(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use otto_pipeline::plan::{Step, Used};
use serde::{Deserialize, Serialize};

pub mod mask;
pub mod packages;
pub mod uses;

/// The version of this protocol, sent in [`VERSION_HEADER`] on every request.
pub const PROTOCOL_VERSION: u32 = 6;

/// The request header that carries [`PROTOCOL_VERSION`].
pub const VERSION_HEADER: &str = "otto-agent-protocol";

/// The path of the job request.
pub const JOB_PATH: &str = "/job";

/// The path of the blob collection; a blob is `/blobs/{digest}`.
pub const BLOBS_PATH: &str = "/blobs";

/// The path events are posted to.
pub const EVENTS_PATH: &str = "/events";

/// The path the result is posted to.
pub const RESULT_PATH: &str = "/result";

/// The largest [`Job`] body the agent reads, in bytes.
pub const MAX_JOB_BYTES: usize = 16 * 1024 * 1024;

/// The most events the agent puts in one `POST /events` (the body is bounded by
/// [`MAX_EVENTS_BODY_BYTES`] too).
pub const MAX_BATCH_EVENTS: usize = 256;

/// How long, in milliseconds, an event may wait before its batch is sent.
pub const FLUSH_INTERVAL_MS: u64 = 100;

/// The longest log line, in bytes; longer output is cut into several lines.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The largest `POST /events` body, in bytes of JSON: the agent ends a batch before it
/// would grow past this, and the node refuses a larger one (`413`). One event always fits,
/// even a line of the longest size made only of characters JSON writes as `\u00XX`.
pub const MAX_EVENTS_BODY_BYTES: usize = 1024 * 1024;

const _: () = assert!(MAX_LINE_BYTES * 6 + 1024 <= MAX_EVENTS_BODY_BYTES);

/// The largest [`RunResult`] body a node needs to accept, in bytes.
pub const MAX_RESULT_BYTES: usize = 1024 * 1024;

/// How long, in seconds, a step's processes get between SIGTERM and SIGKILL by default.
pub const DEFAULT_KILL_GRACE_SECS: u64 = 5;

/// What one agent runs: a stage attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The run's id.
    pub run: String,
    /// The stage's id.
    pub stage: String,
    /// The attempt number, from 1.
    pub attempt: u32,
    /// The steps, in order, as resolved by the planner.
    pub steps: Vec<Step>,
    /// The directory the steps run in; created if missing.
    pub workspace: PathBuf,
    /// The environment's settings, exported to every step as environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The secrets of the stage's environment, by name.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretValue>,
    /// Whether secrets are also exported as environment variables (they are always files).
    #[serde(default)]
    pub secret_env: bool,
    /// The artifacts `unarchive` may restore: name to blob digest.
    #[serde(default)]
    pub artifacts: BTreeMap<String, String>,
    /// The source snapshot the workspace starts from, if any.
    #[serde(default)]
    pub source: Option<SourceRef>,
    /// The source files an approval covers, with their approved digests (a stage of
    /// another node's run that names them with `uses`): nothing unpacked may replace them,
    /// and each program step runs only while they hold what was approved ([`uses`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uses: Vec<Used>,
    /// The caches to restore before the steps run.
    #[serde(default)]
    pub restore_caches: Vec<CacheRestore>,
    /// The caches to save after the steps succeed.
    #[serde(default)]
    pub save_caches: Vec<CacheSave>,
    /// The step packages the steps may call, each a blob of its directory.
    #[serde(default)]
    pub packages: Vec<PackageRef>,
    /// How long the steps may run in all, in seconds; no limit when absent.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Seconds between SIGTERM and SIGKILL when a step is stopped.
    #[serde(default = "default_kill_grace")]
    pub kill_grace_secs: u64,
    /// The largest artifact `archive` may store, in bytes of its tar; when absent,
    /// [`DEFAULT_MAX_ARTIFACT_BYTES`].
    #[serde(default)]
    pub max_artifact_bytes: Option<u64>,
    /// What a stage may use: processes, memory, output.
    #[serde(default)]
    pub limits: Limits,
    /// The wall every step process runs inside; without it steps run unwalled, with the
    /// agent's own rights.
    #[serde(default)]
    pub wall: Option<Wall>,
    /// The container every program step runs in (a stage of `runtime docker`); without
    /// it steps run as processes of the node's machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    /// A directory holding the workspace an earlier stage of the run handed on (see
    /// [`HandOn`]), on this machine: copied into the workspace before the steps, in place
    /// of `source`. The node names it; it is never a path a step chose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_from: Option<PathBuf>,
    /// Where to leave the workspace for later stages of the run, when the steps succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hand_on: Option<HandOn>,
    /// A directory of the node's (the same for every attempt) where each program step
    /// sees the workspace and starts, when the agent can mount it there: each step gets a
    /// mount namespace of its own with the workspace bound over this directory, so tools
    /// that record absolute paths (cargo's fingerprints of its registry sources under a
    /// `CARGO_HOME` in the workspace) find the same paths in every run. Without it, or
    /// where the agent may not mount (not root), steps run at the workspace's own path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_workspace: Option<PathBuf>,
}

/// A workspace handed on to later stages on the same machine: after the steps succeed,
/// the agent copies the workspace, without the paths in `exclude`, into `dir` (which must
/// not exist yet). The copy is the node's: steps never see it (it lies in the node's work
/// directory, which the wall hides), so what later stages start from is the workspace as
/// the steps left it, whatever runs in the stage's workspace afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandOn {
    /// The directory to create and copy the workspace into.
    pub dir: PathBuf,
    /// Paths relative to the workspace left out (the stage's cache paths: later stages
    /// get them from the cache).
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// A container engine and the image a stage's program steps run in (see
/// `otto_agent::container` for what each step's container may do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// The engine's executable.
    pub engine: PathBuf,
    /// Which command line it speaks.
    pub kind: EngineKind,
    /// Options before `run`, as the node's `[containers] options` give them.
    #[serde(default)]
    pub options: Vec<String>,
    /// The image, already present where the engine keeps images: it is never pulled.
    pub image: String,
    /// Labels put on every container of the job (`--label NAME=VALUE`): the node finds by
    /// them the containers an agent that died left behind, and removes them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The container engines the agent can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Podman.
    Podman,
    /// Docker (its command line, talking to a daemon).
    Docker,
}

impl EngineKind {
    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Podman => "podman",
            Self::Docker => "docker",
        }
    }
}

/// What one stage may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// The most processes (and threads) a step's user may have beyond those it had when
    /// the stage started (`RLIMIT_NPROC`).
    pub processes: u64,
    /// The most data memory one step process may map, in bytes (`RLIMIT_DATA`).
    pub memory_bytes: u64,
    /// The most output bytes the stage's steps may log; what comes after is dropped and
    /// one line says so.
    pub output_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            processes: 1024,
            memory_bytes: 8 << 30,
            output_bytes: 64 << 20,
        }
    }
}

/// The wall around each step process: Landlock rules, the user it runs as, and whether a
/// kernel without Landlock refuses to run it.
///
/// A walled step may write only its workspace and its private directory (secrets,
/// scratch files, `TMPDIR`), and read everything else except the `hidden` directories
/// (the node's home and its work directory: other stages' workspaces and secrets). It
/// cannot signal or trace processes outside the wall, nor read their `/proc` files.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Wall {
    /// Directories no step may read, absolute.
    #[serde(default)]
    pub hidden: Vec<PathBuf>,
    /// Directories steps may write besides their workspace (the operator's choice, e.g. a
    /// directory a deploy step publishes to).
    #[serde(default)]
    pub writable: Vec<PathBuf>,
    /// The user steps run as, when the agent may switch (it runs as root).
    #[serde(default)]
    pub user: Option<StepUser>,
    /// Whether a kernel without Landlock fails the stage instead of running it unwalled.
    #[serde(default)]
    pub required: bool,
}

/// A user id and group id to run steps as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUser {
    /// The user id.
    pub uid: u32,
    /// The group id.
    pub gid: u32,
}

/// The largest artifact by default: 2 GiB.
pub const DEFAULT_MAX_ARTIFACT_BYTES: u64 = 2 << 30;

/// A secret's value. Its `Debug` form hides the value, so a job can be logged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretValue(String);

/// The source snapshot of a job: a tar blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    /// The snapshot's blob digest.
    pub digest: String,
}

/// A step package of a job: a tar blob of the package's directory (its manifest and
/// executable, see [`packages`]), named by the package's symbol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRef {
    /// The package's symbol; also the name of the directory the agent unpacks it into.
    pub name: String,
    /// The blob holding it.
    pub digest: String,
}

/// A cache to restore into the workspace before the steps run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRestore {
    /// The cache's name.
    pub name: String,
    /// The paths it holds, relative to the workspace.
    pub paths: Vec<String>,
    /// The blob holding it: a tar of `paths`.
    pub digest: String,
}

/// A cache to save from the workspace after the steps succeed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheSave {
    /// The cache's name.
    pub name: String,
    /// The paths it holds, relative to the workspace; missing ones are left out.
    pub paths: Vec<String>,
}

/// A stored blob, as `PUT /blobs` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    /// `sha256:<hex>` of its bytes.
    pub digest: String,
    /// Its length in bytes.
    pub size: u64,
}

/// One progress event of an attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Its position in the attempt's events, from 0.
    pub seq: u64,
    /// When it happened, in milliseconds since the Unix epoch.
    pub time: u64,
    /// What happened.
    #[serde(flatten)]
    pub body: EventBody,
}

/// What an [`Event`] reports, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    /// A line of output.
    Log(LogLine),
    /// A step started.
    StepStarted(StepStarted),
    /// A step finished.
    StepFinished(StepResult),
}

/// A line of output, secrets masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// The step that wrote it, or `None` for the agent's own lines about the attempt.
    pub step: Option<usize>,
    /// Where it came from.
    pub stream: Stream,
    /// The text, without its line ending.
    pub line: String,
}

/// The origin of a [`LogLine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// The step's standard output (and `echo`).
    Stdout,
    /// The step's standard error.
    Stderr,
    /// A message of the agent itself.
    Agent,
}

/// A step started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepStarted {
    /// The step's number, depth-first over the step tree.
    pub index: usize,
    /// The step's symbol.
    pub symbol: String,
    /// The process group of its processes, when it runs as a process.
    pub pgid: Option<u32>,
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepResult {
    /// The step's number, depth-first over the step tree.
    pub index: usize,
    /// Whether it succeeded.
    pub outcome: Outcome,
    /// The exit code of its process, when it ran one and it exited normally.
    pub exit_code: Option<i32>,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
}

/// Success or failure of a step or an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Everything succeeded.
    Success,
    /// Something failed.
    Failure,
}

/// The result of an attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunResult {
    /// Whether every step succeeded.
    pub outcome: Outcome,
    /// The number of the step that failed (the innermost one, for a step in a block).
    pub failed_step: Option<usize>,
    /// Why the attempt failed, in one line, secrets masked.
    pub error: Option<String>,
    /// The artifacts the steps archived, in order.
    pub artifacts: Vec<Artifact>,
    /// The caches saved after success.
    pub caches_saved: Vec<SavedCache>,
    /// The workspace copied into the job's [`HandOn`] directory after success.
    #[serde(default)]
    pub handed_on: Option<HandedOn>,
}

/// What was copied into the [`HandOn`] directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandedOn {
    /// Files, directories and symbolic links copied.
    pub entries: u64,
    /// Bytes of the files copied.
    pub bytes: u64,
}

/// An artifact stored by an `archive` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// The name given to `archive`.
    pub name: String,
    /// Its blob digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A cache saved after the steps succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCache {
    /// The cache's name.
    pub name: String,
    /// Its blob digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Whether `text` is a blob digest: `sha256:` and 64 lowercase hex digits.
pub fn is_digest(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

impl SecretValue {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(***)")
    }
}

impl From<&str> for SecretValue {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl Outcome {
    /// `success` or `failure`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

fn default_kill_grace() -> u64 {
    DEFAULT_KILL_GRACE_SECS
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn job_with_only_required_fields_parses_with_defaults() {
        let job: Job = serde_json::from_value(json!({
            "run": "r1", "stage": "build", "attempt": 1,
            "steps": [{"symbol": "sh", "args": ["true"], "kwargs": {}, "block": []}],
            "workspace": "/tmp/ws"
        }))
        .expect("valid job");
        assert_eq!(job.steps[0].symbol, "sh");
        assert!(job.secrets.is_empty() && !job.secret_env && job.source.is_none());
        assert_eq!(job.kill_grace_secs, DEFAULT_KILL_GRACE_SECS);
        assert_eq!(job.timeout_secs, None);
    }

    #[test]
    fn events_have_the_documented_shape() {
        let event = Event {
            seq: 3,
            time: 7,
            body: EventBody::Log(LogLine {
                step: Some(1),
                stream: Stream::Stderr,
                line: "oops".into(),
            }),
        };
        let value = serde_json::to_value(&event).expect("serializes");
        assert_eq!(
            value,
            json!({"seq": 3, "time": 7, "kind": "log", "step": 1, "stream": "stderr", "line": "oops"})
        );
        let back: Event = serde_json::from_value(value).expect("parses");
        assert_eq!(back, event);

        let finished = Event {
            seq: 4,
            time: 8,
            body: EventBody::StepFinished(StepResult {
                index: 1,
                outcome: Outcome::Failure,
                exit_code: Some(2),
                duration_ms: 5,
            }),
        };
        let value = serde_json::to_value(&finished).expect("serializes");
        assert_eq!(
            value,
            json!({"seq": 4, "time": 8, "kind": "step_finished", "index": 1,
                   "outcome": "failure", "exit_code": 2, "duration_ms": 5})
        );
    }

    #[test]
    fn secret_values_do_not_show_in_debug_output() {
        let mut secrets = BTreeMap::new();
        secrets.insert("TOKEN".to_string(), SecretValue::new("hunter2-value"));
        let text = format!("{secrets:?}");
        assert!(text.contains("TOKEN") && !text.contains("hunter2"));
    }

    #[test]
    fn digests_are_checked_strictly() {
        let hex = "a".repeat(64);
        assert!(is_digest(&format!("sha256:{hex}")));
        assert!(!is_digest(&format!("sha256:{}", "A".repeat(64))));
        assert!(!is_digest(&format!("sha512:{hex}")));
        assert!(!is_digest("sha256:abc"));
        assert!(!is_digest(&format!("sha256:{hex}/../x")));
    }
}
