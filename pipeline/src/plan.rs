//! The plan: what a pipeline will do, fully resolved, as a DAG of stages.
//!
//! A [`Plan`] has two parts. The [`Body`] holds everything that affects execution (stages,
//! owners, gates, steps, environments, facts) and is covered by the digest. The
//! [`Provenance`] records where the plan came from (source files, the convention used,
//! the path given) and is not. The serde form of these types is the documented
//! `otto explain --json` schema (see `docs/plan-format.md`); [`Document`] is that JSON
//! document as a whole.
//!
//! # Canonical encoding
//!
//! [`Plan::canonical_bytes`] is the body as JSON with object keys sorted by their UTF-8
//! bytes and no whitespace. The body holds only strings, whole numbers, booleans, null,
//! lists and objects, so this is the JSON Canonicalization Scheme (RFC 8785) for it.
//! [`Plan::digest`] is `sha256:` followed by the lowercase hex SHA-256 of those bytes.
//!
//! The fields of the body's structs are declared in sorted order (and [`Gate`] writes its
//! fields sorted by hand), so serde writes the canonical encoding directly, without
//! building and sorting a JSON tree. Map keys are identifiers (ASCII), so sorting by UTF-8
//! bytes is the same as RFC 8785's sorting by UTF-16 code units.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// The schema name written into every plan body.
pub const SCHEMA: &str = "otto.plan/v1";

/// The name shown for the node that started the run, used where a stage has no owner.
pub const ORIGIN: &str = "origin";

/// A planned pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// What will run; covered by the digest.
    pub body: Body,
    /// Where it came from; not covered by the digest.
    pub provenance: Provenance,
}

/// Everything in a plan that affects execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    /// The pipeline's `concurrency { }`: at most one run in its group at a time on the node
    /// that starts the run. Left out when not written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// The `configure { }` tree as a JSON object.
    pub config: Value,
    /// The environments some stage uses, by name.
    pub environments: BTreeMap<String, Environment>,
    /// The facts the plan was made with, and the pipeline's resolved vars.
    pub facts: Facts,
    /// The libraries used, sorted by name.
    pub libraries: Vec<Library>,
    /// The org each owner name of the plan stands for, bound by the node that started the
    /// run (its own org under [`ORIGIN`]). Empty in a plan no node has started; not written
    /// then, so such a plan's digest does not depend on it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub owners: BTreeMap<String, OwnerBinding>,
    /// The pipeline's name.
    pub pipeline: String,
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The stages in a topological order that follows the file.
    pub stages: Vec<Stage>,
    /// The events that start the pipeline (`triggers { }`); left out when none are
    /// written, which means a push to any branch (see [`Body::started_by`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<Trigger>,
}

/// What kind of event may start a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A pull (merge) request opened or updated; its branch is the target branch.
    PullRequest,
    /// Commits pushed to a branch.
    Push,
    /// A cron schedule came due.
    Schedule,
    /// A tag pushed.
    Tag,
}

impl EventKind {
    /// The event's name as written in `triggers { }` and given to `--event`.
    pub fn name(self) -> &'static str {
        match self {
            Self::PullRequest => "pull_request",
            Self::Push => "push",
            Self::Schedule => "schedule",
            Self::Tag => "tag",
        }
    }
}

/// One `triggers { }` entry. Fields are sorted (see the module docs); only the fields of
/// its event are set: `branches` for push and pull_request (empty: any branch), `pattern`
/// for tag (none: any tag), `cron` and `timezone` for schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// Branch patterns (`*` within a path segment, `**` across, `?` one character).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<String>,
    /// A five-field cron expression (minute hour day-of-month month day-of-week).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// The event.
    pub event: EventKind,
    /// A tag pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The time zone the cron expression is read in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// An event to test against a plan's triggers: what happened, on which branch or tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The branch pushed to, or a pull request's target branch.
    pub branch: Option<String>,
    /// The tag pushed.
    pub tag: Option<String>,
}

/// Whether an event starts a pipeline, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started<'a> {
    /// This trigger matches the event.
    By(&'a Trigger),
    /// The pipeline has no `triggers { }` and the event is a push: every push starts it.
    ByDefault,
    /// No trigger matches.
    No,
}

impl Trigger {
    /// Whether this trigger matches `event`. A pattern that is not a valid glob matches
    /// nothing (the planner refuses such patterns, so a plan it made has none).
    pub fn matches(&self, event: &Event) -> bool {
        if self.event != event.kind {
            return false;
        }
        let any = |patterns: &[String], name: Option<&str>| match name {
            None => false,
            Some(name) => patterns.is_empty() || patterns.iter().any(|p| glob_matches(p, name)),
        };
        match self.event {
            EventKind::Push | EventKind::PullRequest => {
                any(&self.branches, event.branch.as_deref())
            }
            EventKind::Tag => any(self.pattern.as_slice(), event.tag.as_deref()),
            EventKind::Schedule => true,
        }
    }
}

impl Trigger {
    /// The trigger for people: `push to main, release/*`, `tag v*`,
    /// `schedule '0 3 * * *' (UTC)`.
    pub fn describe(&self) -> String {
        let branches = || match self.branches.as_slice() {
            [] => "any branch".to_owned(),
            list => list.join(", "),
        };
        match self.event {
            EventKind::Push => format!("push to {}", branches()),
            EventKind::PullRequest => format!("pull_request to {}", branches()),
            EventKind::Tag => format!("tag {}", self.pattern.as_deref().unwrap_or("(any)")),
            EventKind::Schedule => format!(
                "schedule '{}' ({})",
                self.cron.as_deref().unwrap_or_default(),
                self.timezone.as_deref().unwrap_or("UTC")
            ),
        }
    }
}

impl Body {
    /// Whether `event` starts this pipeline: the first trigger that matches it; without
    /// any `triggers { }`, every push does (and nothing else).
    pub fn started_by(&self, event: &Event) -> Started<'_> {
        if self.triggers.is_empty() {
            return if event.kind == EventKind::Push {
                Started::ByDefault
            } else {
                Started::No
            };
        }
        self.triggers
            .iter()
            .find(|t| t.matches(event))
            .map_or(Started::No, Started::By)
    }
}

/// A branch or tag pattern as a matcher: `*` and `?` stay within a `/`-separated segment,
/// `**` crosses segments; an error when the pattern is not a valid glob.
pub fn glob(pattern: &str) -> Result<globset::GlobMatcher, globset::Error> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
}

fn glob_matches(pattern: &str, name: &str) -> bool {
    glob(pattern).is_ok_and(|m| m.is_match(name))
}

/// The facts a plan was made with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// The branch being delivered, or null when not given.
    pub branch: Option<String>,
    /// The commit being delivered, or null when not given.
    pub commit: Option<String>,
    /// `sha256:<hex>` of the uncommitted changes on top of `commit` the run was started
    /// with (`otto run --dirty`); left out when there were none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty: Option<String>,
    /// The target environment of the run, or null when not given.
    pub environment: Option<String>,
    /// The repository `commit` is from (a URL without credentials, or a work tree's path);
    /// left out when not known, so plans made without it keep their digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The tag being delivered, or null when not given.
    pub tag: Option<String>,
    /// The pipeline's vars with their resolved values.
    pub vars: BTreeMap<String, Value>,
}

/// An environment's settings and the names of its secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    /// Names of secrets held by the node that runs the stage, sorted. Never values.
    pub secrets: Vec<String>,
    /// Plain settings given to stages, by name.
    pub settings: BTreeMap<String, String>,
}

/// The org an owner name is bound to: its public key decides, its name is what the
/// binding node calls it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerBinding {
    /// The org's public key as a key id, `ed25519:` and 64 lowercase hex digits.
    pub key: String,
    /// The org's name on the node that bound it.
    pub org: String,
    /// For [`ORIGIN`] only: the key id of the node that started the run, the one node
    /// that runs the stages without an owner (and signs their receipts). Left out
    /// otherwise, and in plans bound before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A library the plan used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Library {
    /// Its content digest, `sha256:<hex>`.
    pub digest: String,
    /// `stdlib`, an in-repository path, or an external library's location.
    pub name: String,
}

/// One stage of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// The blueprint it came from, if any.
    pub blueprint: Option<BlueprintRef>,
    /// The caches it restores and saves, sorted by name.
    pub caches: Vec<Cache>,
    /// Its `concurrency { }`: one running instance of a stage in its group at a time on the
    /// node that runs it. Part of its definition (the owner approves it with the steps).
    /// Left out when not written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// The environment it runs in.
    pub environment: Option<String>,
    /// Its gates.
    pub gates: Gates,
    /// Names of the grouping stages around it, outermost first.
    pub group: Vec<String>,
    /// Owners of its dependencies that differ from its own, sorted ([`ORIGIN`] for null).
    /// A stage with any is a handoff point.
    pub handoffs_from: Vec<String>,
    /// The stage's unique id (its name).
    pub id: String,
    /// The stage's name.
    pub name: String,
    /// Ids of the stages it depends on, sorted.
    pub needs: Vec<String>,
    /// Steps run after it, by outcome.
    pub notify: Notify,
    /// The logical owner that runs it; null means the node that started the run.
    pub owner: Option<String>,
    /// The id of the parallel group or matrix it belongs to, if any.
    pub parallel: Option<String>,
    /// What it runs on.
    pub runtime: Runtime,
    /// Names of the secrets its environment gives it, sorted.
    pub secrets: Vec<String>,
    /// True when `when` fails for the given facts: the stage will not run.
    pub skipped: bool,
    /// Its steps, fully resolved.
    pub steps: Vec<Step>,
    /// How long it may run.
    pub timeout: Option<Duration>,
    /// The source files and directories it names with `uses`, sorted by path, with their
    /// digests. A node that did not start the run gives the stage only these (and its input
    /// artifacts); left out of the JSON when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uses: Vec<Used>,
    /// Its `when` condition (all lines ANDed, a group's included).
    pub when: Option<Condition>,
}

/// A `concurrency { }` block: a group that holds one run (of a pipeline) or one running
/// stage at a time; a newer one waits its turn, in arrival order, or, with
/// `cancel_in_progress`, has the one in progress cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Concurrency {
    /// Whether a newer member cancels the one in progress (and those waiting) instead of
    /// waiting for it.
    pub cancel_in_progress: bool,
    /// The group's name ([`check_group`] holds for it).
    pub group: String,
}

impl Concurrency {
    /// The block for people: `group 'deploy' (one run at a time; a newer run cancels the
    /// one in progress)`, `member` naming what the group holds.
    pub fn describe(&self, member: &str) -> String {
        let then = if self.cancel_in_progress {
            format!("a newer {member} cancels the one in progress")
        } else {
            "the others wait their turn".to_owned()
        };
        format!("group '{}' (one {member} at a time; {then})", self.group)
    }
}

/// The longest concurrency group name, in bytes.
pub const MAX_GROUP_BYTES: usize = 128;

/// Whether `group` may name a concurrency group: 1 to [`MAX_GROUP_BYTES`] bytes, no
/// control characters (a name is shown on one line in status, logs and the UI). The reason
/// otherwise, which never repeats the name.
pub fn check_group(group: &str) -> Result<(), String> {
    if group.is_empty() {
        return Err("a group name must not be empty".into());
    }
    if group.len() > MAX_GROUP_BYTES {
        return Err(format!(
            "a group name has at most {MAX_GROUP_BYTES} bytes, this one has {}",
            group.len()
        ));
    }
    if let Some(c) = group.chars().find(|c| c.is_control()) {
        return Err(format!(
            "a group name must not hold control characters (found U+{:04X})",
            u32::from(c)
        ));
    }
    Ok(())
}

/// A condition and what it gives for the plan's facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// Its value for the given facts.
    pub result: Outcome,
    /// The condition, printed canonically.
    pub text: String,
}

/// The value of a condition for a set of facts, in three-valued logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It holds.
    Pass,
    /// It does not hold.
    Fail,
    /// It depends on a fact that was not given.
    Unknown,
}

/// The gates of a stage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gates {
    /// Checked before the stage starts, in order.
    pub enter: Vec<Gate>,
    /// Checked after its steps succeed, in order.
    pub exit: Vec<Gate>,
}

/// One gate. In JSON, an object whose `kind` is `condition`, `input`, `webhook` or `poll`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Gate {
    /// A condition over facts and vars; a failing one stops the run at this stage.
    Condition {
        /// The condition, printed canonically.
        text: String,
        /// Its value for the given facts.
        result: Outcome,
    },
    /// A person approves.
    Input {
        /// The question shown.
        message: String,
        /// Who may approve; empty means anyone the node allows.
        approvers: Vec<String>,
        /// How long to wait.
        timeout: Option<Duration>,
    },
    /// An external system calls back.
    Webhook {
        /// What the callback means.
        description: Option<String>,
        /// How long to wait.
        timeout: Option<Duration>,
    },
    /// A command or URL is polled until it succeeds.
    Poll {
        /// The command to run.
        command: Option<String>,
        /// The URL to GET.
        url: Option<String>,
        /// How often.
        every: Option<Duration>,
        /// How long to keep trying.
        timeout: Option<Duration>,
    },
}

/// A duration, normalised (`90m` becomes `1h30m`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duration {
    /// The length in seconds.
    pub seconds: u64,
    /// The normalised text: units `d`, `h`, `m`, `s` in that order, zero parts left out.
    pub text: String,
}

/// What a stage runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    /// The stage whose workspace and outputs it starts from.
    pub from: Option<String>,
    /// The container image, for `docker`.
    pub image: Option<String>,
    /// The kind of runtime.
    pub kind: RuntimeKind,
    /// The machine label, for `computer`.
    pub label: Option<String>,
}

/// Whether `image` is a container image reference a node may pass to its engine:
/// `[registry/]name[:tag][@digest]`, lowercase name components of letters, digits and
/// `._-`, at most 255 bytes. Anything else (a leading `-` an engine would read as an option,
/// a path, spaces) is refused with the reason.
pub fn check_image(image: &str) -> Result<(), String> {
    if image.is_empty() || image.len() > 255 {
        return Err("an image reference has 1 to 255 characters".into());
    }
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        let ok = digest.split_once(':').is_some_and(|(algo, hex)| {
            !algo.is_empty()
                && algo
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && hex.len() >= 32
                && hex.bytes().all(|b| b.is_ascii_hexdigit())
        });
        if !ok {
            return Err("a digest after '@' is ALGORITHM:HEX (sha256:…)".into());
        }
    }
    // A tag follows the last ':' after the last '/' (a ':' before it is a registry port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest.get(last_slash..).and_then(|t| t.rfind(':')) {
        Some(i) => rest.split_at(last_slash + i),
        None => (rest, ""),
    };
    if let Some(tag) = tag.strip_prefix(':') {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(format!("'{tag}' is not an image tag"));
        }
    }
    let parts: Vec<&str> = name.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        // The first of several parts may be a registry host with a port.
        let registry = i == 0 && parts.len() > 1;
        let ok = !part.is_empty()
            && part
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && part
                .bytes()
                .last()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && part.bytes().all(|b| {
                b.is_ascii_digit()
                    || matches!(b, b'.' | b'_' | b'-')
                    || if registry {
                        b.is_ascii_alphabetic() || b == b':'
                    } else {
                        b.is_ascii_lowercase()
                    }
            });
        if !ok {
            return Err(format!(
                "'{part}' is not a part of an image name (lowercase letters, digits, '.', '_' and '-', starting and ending with a letter or digit)"
            ));
        }
    }
    Ok(())
}

/// The kinds of runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Plain processes on the node's machine.
    Local,
    /// A container.
    Docker,
    /// A machine with a label.
    Computer,
}

/// A cache a stage restores before it runs and saves after it succeeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cache {
    /// True in the stage that defines it, false where it is reused with `use`.
    pub defined_here: bool,
    /// Files whose digest keys it.
    pub key_files: Vec<String>,
    /// The cache's name.
    pub name: String,
    /// The paths it holds.
    pub paths: Vec<String>,
}

/// A source file or directory a stage names with `uses`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Used {
    /// Its path relative to the source root, `/`-separated, without `./` or a trailing `/`.
    pub path: String,
    /// For a file, `sha256:<hex>` of its bytes; for a directory, [`tree_digest`] of the
    /// regular files under it.
    pub sha256: String,
}

/// The digest of a directory named by `uses`: `sha256:<hex>` of one line per regular file
/// under it, `<sha256 of the file> <path relative to the source root>\n`, sorted by path.
/// `files` holds (path, digest) pairs in any order.
pub fn tree_digest(files: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = files.iter().collect();
    sorted.sort();
    let mut text = String::new();
    for (path, digest) in sorted {
        text.push_str(digest);
        text.push(' ');
        text.push_str(path);
        text.push('\n');
    }
    sha256_digest(text.as_bytes())
}

/// A resolved step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Nested steps; empty when none.
    pub block: Vec<Self>,
    /// Keyword arguments.
    pub kwargs: BTreeMap<String, Value>,
    /// The step's symbol.
    pub symbol: String,
}

/// Steps run after a stage, and messages sent about it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    /// Either way.
    pub complete: Vec<Step>,
    /// When it failed.
    pub failure: Vec<Step>,
    /// The messages (`slack`, `webhook`) the node that runs the stage sends, by outcome,
    /// to targets its operator configured; left out of the JSON when there are none.
    #[serde(default, skip_serializing_if = "Messages::is_empty")]
    pub messages: Messages,
    /// When it succeeded.
    pub success: Vec<Step>,
}

/// A stage's messages by outcome: `complete` either way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Messages {
    /// Either way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub complete: Vec<Message>,
    /// When it failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failure: Vec<Message>,
    /// When it succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub success: Vec<Message>,
}

impl Messages {
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.complete.is_empty() && self.failure.is_empty() && self.success.is_empty()
    }

    /// The messages for an outcome: those of `success` or `failure`, then `complete`'s.
    pub fn for_outcome(&self, success: bool) -> Vec<Message> {
        let first = if success {
            &self.success
        } else {
            &self.failure
        };
        first.iter().chain(&self.complete).cloned().collect()
    }
}

/// One message about a stage's outcome. Where it goes is the node's to decide: the Ottofile
/// only picks among the targets the node's operator configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    /// `slack ['text'] [, channel: '#c']`: to the node's Slack-compatible incoming webhook.
    Slack {
        /// The channel, when given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        /// The text, when given (otherwise the node words the outcome).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// `webhook url: '...'`: a signed JSON POST to that URL, when the node allows it.
    Webhook {
        /// The URL; the node sends only to URLs its operator listed.
        url: String,
    },
}

/// The blueprint a stage came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlueprintRef {
    /// The library holding it (`stdlib`, a path relative to the root, or a location).
    pub library: String,
    /// The blueprint's name.
    pub name: String,
}

/// Where a plan came from. Not covered by the digest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The path the planner was given.
    pub root: String,
    /// Every file read, with its SHA-256, in the order read.
    pub sources: Vec<SourceRecord>,
    /// The convention that wrote the Ottofile, when there was none.
    pub convention: Option<Convention>,
}

/// One file read for a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// Its path, relative to the root where possible (`<stdlib>/…` for stdlib files).
    pub path: String,
    /// `sha256:<hex>` of its text.
    pub sha256: String,
}

/// The convention that stood in for a missing Ottofile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Convention {
    /// Its name, e.g. `cargo`.
    pub name: String,
    /// Why it matched, e.g. "found Cargo.toml".
    pub reason: String,
}

/// The `otto explain --json` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// [`Plan::digest`] of the plan.
    pub digest: String,
    /// The plan's body.
    pub plan: Body,
    /// The plan's provenance.
    pub provenance: Provenance,
}

impl Plan {
    /// The canonical encoding of the body: JSON, keys sorted, no whitespace.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // The body's types serialize with string keys only, so this cannot fail.
        serde_json::to_vec(&self.body).unwrap_or_default()
    }

    /// The plan's digest: `sha256:` and the lowercase hex SHA-256 of [`Self::canonical_bytes`].
    pub fn digest(&self) -> String {
        sha256_digest(&self.canonical_bytes())
    }

    /// The `--json` document for this plan.
    pub fn to_document(&self) -> Document {
        Document {
            digest: self.digest(),
            plan: self.body.clone(),
            provenance: self.provenance.clone(),
        }
    }

    /// The stage with this id.
    pub fn stage(&self, id: &str) -> Option<&Stage> {
        self.body.stages.iter().find(|s| s.id == id)
    }

    /// Every owner name the plan's stages use, [`ORIGIN`] for stages without one, sorted.
    pub fn owner_names(&self) -> Vec<&str> {
        self.body.owner_names()
    }

    /// The handoff points: for each stage with a dependency run by another owner, the
    /// stage and the owners it is handed over from.
    pub fn handoffs(&self) -> impl Iterator<Item = &Stage> {
        self.body
            .stages
            .iter()
            .filter(|s| !s.handoffs_from.is_empty())
    }
}

impl Document {
    /// Reads a document written by `otto explain --json`.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The plan the document describes.
    pub fn into_plan(self) -> Plan {
        Plan {
            body: self.plan,
            provenance: self.provenance,
        }
    }

    /// Whether the recorded digest is the digest of the plan.
    pub fn digest_matches(&self) -> bool {
        let plan = Plan {
            body: self.plan.clone(),
            provenance: Provenance::default(),
        };
        plan.digest() == self.digest
    }
}

impl Body {
    /// Every owner name the stages use, [`ORIGIN`] for stages without one, sorted and
    /// without repeats.
    pub fn owner_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.stages.iter().map(Stage::owner_name).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The org that runs `stage`, by the plan's owner bindings: its owner's bound org, or
    /// for a stage without an owner the org of the node that started the run (bound under
    /// [`ORIGIN`]); `None` when the plan binds no such name (a plan no node has started).
    /// An owner name is the starting node's own word for the org (an alias); the binding
    /// says the org's name as that node knows it, which every node of the run reads alike.
    pub fn org_of(&self, stage: &Stage) -> Option<&str> {
        self.owners
            .get(stage.owner_name())
            .map(|binding| binding.org.as_str())
    }

    /// The orgs that run the stages ([`Self::org_of`]), sorted and without repeats; a
    /// stage whose owner the plan does not bind counts under its owner name as written.
    pub fn orgs(&self) -> Vec<&str> {
        let mut orgs: Vec<&str> = self
            .stages
            .iter()
            .map(|s| self.org_of(s).unwrap_or_else(|| s.owner_name()))
            .collect();
        orgs.sort_unstable();
        orgs.dedup();
        orgs
    }
}

impl Stage {
    /// The owner as shown to people: the owner's name, or [`ORIGIN`].
    pub fn owner_name(&self) -> &str {
        self.owner.as_deref().unwrap_or(ORIGIN)
    }
}

impl Outcome {
    /// Kleene conjunction.
    pub fn and(self, other: Self) -> Self {
        match (self, other) {
            (Self::Fail, _) | (_, Self::Fail) => Self::Fail,
            (Self::Pass, Self::Pass) => Self::Pass,
            _ => Self::Unknown,
        }
    }

    /// Kleene disjunction.
    pub fn or(self, other: Self) -> Self {
        match (self, other) {
            (Self::Pass, _) | (_, Self::Pass) => Self::Pass,
            (Self::Fail, Self::Fail) => Self::Fail,
            _ => Self::Unknown,
        }
    }

    /// `pass`, `fail` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Unknown => "unknown",
        }
    }
}

impl std::ops::Not for Outcome {
    type Output = Self;

    /// Kleene negation: `unknown` stays `unknown`.
    fn not(self) -> Self {
        match self {
            Self::Pass => Self::Fail,
            Self::Fail => Self::Pass,
            Self::Unknown => Self::Unknown,
        }
    }
}

impl Serialize for Gate {
    /// Writes the fields in sorted order, `kind` included, as the canonical encoding needs.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(None)?;
        match self {
            Self::Condition { text, result } => {
                map.serialize_entry("kind", "condition")?;
                map.serialize_entry("result", result)?;
                map.serialize_entry("text", text)?;
            }
            Self::Input {
                message,
                approvers,
                timeout,
            } => {
                map.serialize_entry("approvers", approvers)?;
                map.serialize_entry("kind", "input")?;
                map.serialize_entry("message", message)?;
                map.serialize_entry("timeout", timeout)?;
            }
            Self::Webhook {
                description,
                timeout,
            } => {
                map.serialize_entry("description", description)?;
                map.serialize_entry("kind", "webhook")?;
                map.serialize_entry("timeout", timeout)?;
            }
            Self::Poll {
                command,
                url,
                every,
                timeout,
            } => {
                map.serialize_entry("command", command)?;
                map.serialize_entry("every", every)?;
                map.serialize_entry("kind", "poll")?;
                map.serialize_entry("timeout", timeout)?;
                map.serialize_entry("url", url)?;
            }
        }
        map.end()
    }
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A serializable value as a JSON tree with every object's keys in sorted order, whether or
/// not serde_json keeps insertion order.
pub fn to_sorted_value<T: Serialize>(value: &T) -> Value {
    sorted(to_value(value))
}

/// The canonical JSON encoding of a value: keys sorted, no whitespace, as for plans. The
/// one place Otto sorts JSON for a digest (plans here, stage definitions in
/// `otto_handoff::definition_digest`).
pub fn canonical_json<T: Serialize>(value: &T) -> Vec<u8> {
    // A sorted `Value` always serializes.
    serde_json::to_vec(&to_sorted_value(value)).unwrap_or_default()
}

fn to_value<T: Serialize>(value: &T) -> Value {
    // The plan types are plain structs, strings, numbers and string-keyed maps, which always
    // serialize.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn sorted(value: Value) -> Value {
    match value {
        Value::Object(mut map) if map.keys().is_sorted() => {
            // Already in order (always, unless serde_json keeps insertion order).
            for v in map.values_mut() {
                *v = sorted(std::mem::take(v));
            }
            Value::Object(map)
        }
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::check_image;

    #[test]
    fn image_references_an_engine_could_misread_are_refused() {
        for good in [
            "busybox",
            "localhost/otto-test:1",
            "docker.io/library/rust:1.90",
            "registry.example:5000/team/app:v1.2-rc_1",
            "alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(check_image(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "--privileged",
            "-v/:/host",
            "/etc/passwd",
            "../image",
            "team/Upper",
            "a b",
            "img:",
            "img:-tag",
            "img@sha256:zz",
            "img;rm -rf",
            "a//b",
            "name:tag:more",
        ] {
            assert!(check_image(bad).is_err(), "{bad:?} was taken");
        }
        assert!(check_image(&"a".repeat(256)).is_err());
    }
}
