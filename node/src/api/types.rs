//! The JSON bodies of the API, shared with clients (the `otto` CLI deserializes these).
//!
//! Records from the store ([`Run`], [`Stage`], [`Gate`], [`LogLine`]) appear as they are
//! stored, with ids and digests as text. None of these types can hold a secret value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::blobs::Digest;
use crate::store::{Gate, LogLine, Run, RunId, Source, Stage, StageState};

/// `POST /v1/snapshots` answers this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotCreated {
    /// The snapshot's digest, to name it in `POST /v1/runs`.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// How many files it holds.
    pub files: u64,
}

/// The body of `POST /v1/runs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    /// Where the code comes from: `{"kind": "snapshot", "digest": "sha256:…"}`.
    pub source: Source,
    /// The Ottofile, or the directory holding it, relative to the snapshot's root;
    /// default the root (its `Ottofile`, else the stack's convention).
    #[serde(default)]
    pub path: Option<String>,
    /// The name of the directory the snapshot was made from: the pipeline's name when
    /// the Ottofile sets none.
    #[serde(default)]
    pub root_name: Option<String>,
    /// The facts to plan with.
    #[serde(default)]
    pub facts: FactsInput,
    /// Who starts the run, for people (e.g. the user name).
    #[serde(default)]
    pub started_by: Option<String>,
}

/// The facts of a run as given by a client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactsInput {
    /// The branch being delivered.
    #[serde(default)]
    pub branch: Option<String>,
    /// The tag being delivered.
    #[serde(default)]
    pub tag: Option<String>,
    /// The target environment.
    #[serde(default)]
    pub environment: Option<String>,
    /// The commit being delivered.
    #[serde(default)]
    pub commit: Option<String>,
    /// The repository the commit is from: a URL without credentials, or a path.
    #[serde(default)]
    pub repository: Option<String>,
    /// `sha256:<hex>` of the uncommitted changes the snapshot has on top of `commit`.
    #[serde(default)]
    pub dirty: Option<String>,
    /// Values for the pipeline's vars, as text.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
}

/// `POST /v1/runs` answers this (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCreated {
    /// The new run's id.
    pub run: RunId,
    /// The pipeline's name.
    pub pipeline: String,
    /// The digest of the canonical plan.
    pub plan_digest: Digest,
    /// The stage ids, in plan order.
    pub stages: Vec<String>,
}

/// `GET /v1/runs` answers this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunList {
    /// The runs, newest first.
    pub runs: Vec<ListedRun>,
}

/// A run in `GET /v1/runs`: the run, and the orgs that run its stages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedRun {
    /// The run.
    #[serde(flatten)]
    pub run: Run,
    /// The orgs that run its stages, by the plan's owner bindings (org names, never this
    /// node's aliases), sorted: [`otto_pipeline::plan::Body::orgs`].
    pub orgs: Vec<String>,
}

/// `GET /v1/runs/{run}` answers this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDetail {
    /// The run.
    pub run: Run,
    /// Its stages in plan order, with their attempts, gates and what the plan says.
    pub stages: Vec<StageDetail>,
}

/// A stage in [`RunDetail`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageDetail {
    /// The stage as recorded: state, note, attempts (with cache hits and misses).
    #[serde(flatten)]
    pub stage: Stage,
    /// Its name in the Ottofile.
    pub name: String,
    /// Its owner, `null` for the node that started the run.
    pub owner: Option<String>,
    /// The stages it needs.
    pub needs: Vec<String>,
    /// Its `when` condition and what it gave for the run's facts.
    pub when: Option<ConditionView>,
    /// Its gates that waited or wait.
    pub gates: Vec<Gate>,
}

/// A condition with its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionView {
    /// The condition, printed canonically.
    pub text: String,
    /// `pass`, `fail` or `unknown`.
    pub result: String,
}

/// `GET /v1/runs/{run}/logs` answers this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPage {
    /// The run.
    pub run: RunId,
    /// The stage.
    pub stage: String,
    /// The lines after `after`, in order, masked.
    pub lines: Vec<LogLine>,
    /// The number of the last line returned, or `after` when none: pass it as `after`
    /// to read on.
    pub last: u64,
    /// The stage's state when the lines were read.
    pub state: StageState,
    /// Whether the stage is over and every line has been read: following can stop.
    pub done: bool,
}

/// The body of `POST /v1/runs/{run}/gates/{stage}/approve`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    /// Who approves (checked against the gate's approvers); default `local`.
    #[serde(default)]
    pub who: Option<String>,
}

/// `POST /v1/runs/{run}/gates/{stage}/approve` answers this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approved {
    /// The run.
    pub run: RunId,
    /// The stage whose gate passed.
    pub stage: String,
    /// Who approved.
    pub who: String,
}

/// `POST /v1/runs/{run}/cancel` takes this body (optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    /// Who cancels, recorded in the notes of the stages the cancel stopped; default `local`.
    #[serde(default)]
    pub who: Option<String>,
}

/// `POST /v1/runs/{run}/cancel` answers this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancelled {
    /// The run.
    pub run: RunId,
    /// Who cancelled it.
    pub who: String,
}

/// `POST /v1/runs/{run}/retry` takes this body (optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// The stage to retry; default every stage that failed.
    #[serde(default)]
    pub stage: Option<String>,
    /// Who retries, recorded on the stages retried; default `local`.
    #[serde(default)]
    pub who: Option<String>,
}

/// `POST /v1/runs/{run}/retry` answers this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retried {
    /// The run.
    pub run: RunId,
    /// The stages retried, in plan order: the ones asked for and those that depend on them.
    pub stages: Vec<String>,
    /// Who retried them.
    pub who: String,
}

/// `GET /v1/secrets` answers this: names, never values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretNames {
    /// The secret names, sorted.
    pub secrets: Vec<String>,
}

/// `GET /v1/secrets/{name}` answers this: whether it exists, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    /// The secret's name.
    pub name: String,
}

/// `POST /hooks/{token}` answers this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookAccepted {
    /// Always `true`: the callback was accepted.
    pub accepted: bool,
}

/// `GET /v1/node` answers this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// Its org.
    pub org: String,
    /// Its libp2p peer id.
    pub peer_id: String,
    /// Its node key's id (`ed25519:<hex>`).
    pub node_key: String,
    /// Its org key's id.
    pub org_key: String,
    /// The stage owners it runs.
    pub answers_to: Vec<String>,
    /// When its certificate expires, in seconds since the Unix epoch.
    pub cert_not_after: u64,
    /// The base URL of its webhook callbacks, when it listens for them.
    pub webhook_base: Option<String>,
    /// The Otto version it runs.
    pub version: String,
    /// The wall around the steps it runs.
    #[serde(default)]
    pub wall: WallInfo,
    /// The runtimes its stages may ask for.
    #[serde(default)]
    pub runtimes: RuntimesInfo,
}

/// What a node's stages may run on, as `GET /v1/node` says: its machine's processes
/// always, containers when an engine answered at start, and the labels that
/// `runtime computer { label }` matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimesInfo {
    /// The container engine (`podman 4.3.1 at /usr/bin/podman`), when there is one.
    pub containers: Option<String>,
    /// Why `runtime docker` stages are refused, when there is no engine.
    pub containers_missing: Option<String>,
    /// The node's labels (`[node] labels`).
    pub labels: Vec<String>,
}

impl From<&crate::capabilities::Runtimes> for RuntimesInfo {
    fn from(runtimes: &crate::capabilities::Runtimes) -> Self {
        let (containers, containers_missing) = match &runtimes.engine {
            Ok(engine) => (
                Some(format!(
                    "{} {} at {}",
                    engine.kind.name(),
                    engine.version,
                    engine.path.display()
                )),
                None,
            ),
            Err(why) => (None, Some(why.clone())),
        };
        Self {
            containers,
            containers_missing,
            labels: runtimes.labels.clone(),
        }
    }
}

/// What a node says when it runs as root and names no step user.
pub const STEPS_AS_ROOT: &str = "steps run as root: set [agent] run_as to an unprivileged user \
     of this node's own (otto-node init as root creates one for a new home); as root they can \
     read what root owns, other nodes' homes on this machine included, and chmod what they \
     make in their workspace set-user-id root";

/// How a node walls in the steps it runs, as `GET /v1/node` says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WallInfo {
    /// Whether steps run inside the complete wall: Landlock, and as an unprivileged user
    /// when the node runs as root.
    pub walled: bool,
    /// The kernel's Landlock ABI version; 0 when it has none.
    pub landlock_abi: i32,
    /// Why the node cannot wall steps in, when it cannot.
    pub missing: Option<String>,
    /// The user steps run as, when not the node's own.
    pub run_as: Option<String>,
    /// Whether steps run as root: the node runs as root and names no step user. They
    /// have no capabilities, but own what root owns (#12 F3).
    #[serde(default)]
    pub steps_as_root: bool,
    /// Whether the file system is read-only around steps but for their own directories
    /// (a mount namespace of their own), so that they cannot chmod, chown or touch what
    /// their user owns elsewhere (#12 F3a).
    #[serde(default)]
    pub read_only_mounts: bool,
    /// Where workspaces live.
    pub work_dir: String,
    /// Whether other orgs' stages are refused when the node cannot wall them in.
    pub refuse_foreign_unwalled: bool,
}

impl WallInfo {
    /// One line for people: whether and how the node walls in its steps (the mesh page
    /// and `otto explain --home` show it).
    pub fn summary(&self) -> String {
        match &self.missing {
            None => format!(
                "steps run walled in (Landlock ABI {}) as {}, in {}{}",
                self.landlock_abi,
                self.run_as
                    .as_deref()
                    .map_or_else(|| "the node's own user".to_owned(), |u| format!("user {u}")),
                self.work_dir,
                if self.read_only_mounts {
                    ", on a file system read-only but for their own directories"
                } else {
                    ""
                }
            ),
            Some(why) => format!(
                "steps run without a wall: {why}; other orgs' stages are {}",
                if self.refuse_foreign_unwalled {
                    "refused"
                } else {
                    "run anyway ([agent] refuse_foreign_unwalled = false)"
                },
            ),
        }
    }
}

/// The body of `POST /v1/repos`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoAdd {
    /// Where the node fetches from: `https://`, `ssh://`, `git://`, `file://`,
    /// `user@host:path`, or an absolute path.
    pub url: String,
    /// Its name on this node; default the URL's last segment without `.git`.
    #[serde(default)]
    pub name: Option<String>,
    /// `github`, `gitlab`, `gitea` or `generic` (the default).
    #[serde(default)]
    pub forge: Option<String>,
    /// The webhook secret; default a new random one, given back once in the answer.
    #[serde(default)]
    pub secret: Option<String>,
    /// The branch schedules run on; default the remote's default branch.
    #[serde(default)]
    pub branch: Option<String>,
    /// Poll with `git ls-remote` every this many seconds (at least 10).
    #[serde(default)]
    pub poll_secs: Option<u64>,
    /// The forge's API URL, for commit statuses.
    #[serde(default)]
    pub api_url: Option<String>,
    /// The vault secret holding the forge API token.
    #[serde(default)]
    pub token_secret: Option<String>,
}

/// A repository as the API shows it (never its webhook secret, except once in the answer
/// of `POST /v1/repos` when the node made the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoView {
    /// Its settings.
    #[serde(flatten)]
    pub config: crate::sources::RepoConfig,
    /// The path of its webhook on the node's listeners: `/hooks/{forge}/{name}`.
    pub webhook_path: String,
    /// The webhook secret the node made, only in the answer that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `GET /v1/repos` answers this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoList {
    /// The repositories, by name.
    pub repos: Vec<RepoView>,
}

/// A run a change started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggeredRun {
    /// The run.
    pub run: RunId,
    /// Its pipeline.
    pub pipeline: String,
    /// The event: `push`, `tag`, `pull_request` or `schedule`.
    pub event: String,
    /// The ref that changed, e.g. `refs/heads/main`.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The commit the run checks out.
    pub commit: String,
}

/// A change that started no run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotTriggered {
    /// The ref that changed.
    #[serde(rename = "ref")]
    pub reference: String,
    /// Its commit.
    pub commit: String,
    /// Why no run: no trigger matches, or the Ottofile does not plan.
    pub reason: String,
}

/// `POST /v1/repos/{name}/fetch` answers this: what changed since the node last looked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Looked {
    /// The runs started.
    pub runs: Vec<TriggeredRun>,
    /// The changes that started nothing.
    pub skipped: Vec<NotTriggered>,
}

/// `POST /hooks/{forge}/{name}` answers this (202): the delivery is taken, the node
/// fetches and starts runs after answering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookAccepted {
    /// Always `true`.
    pub accepted: bool,
    /// What the node does: `fetch`, `pull_request`, `ping` or `ignored: <event>`.
    pub action: String,
}
