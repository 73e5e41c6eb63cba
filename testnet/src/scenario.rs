//! The scenario file of `otto-testnet run`: orgs and their nodes, who trusts whom,
//! pipelines, and a timeline of steps, read from TOML and checked before anything starts.
//!
//! ```toml
//! description = "dev hands Deploy to ops"
//! wait_limit_s = 60
//!
//! [[org]]
//! name = "acme-dev"
//! nodes = ["dev-1"]
//! answers_to = ["dev"]
//!
//! [[org]]
//! name = "acme-ops"
//! nodes = ["ops-1"]
//! answers_to = ["ops"]
//! secrets = { DEPLOY_TOKEN = "s3cret" }
//!
//! [[trust]]
//! inviter = "ops-1"
//! joiners = ["dev-1"]
//! alias = "ops"
//! stages = "Deploy*"
//!
//! [[pipeline]]
//! name = "app"
//! ottofile = "stage('Deploy') { owner = 'ops'  steps { echo 'hi' } }"
//!
//! [[expect]]
//! run = "first"
//! outcome = "succeeded"
//!
//! [timeline]
//! steps = ["run app on dev-1 as first"]
//! ```
//!
//! Every table denies unknown keys; an error names the file, the line or the step, and
//! what is wrong with it, on one line.

#![warn(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde::Deserialize;

/// The longest wait a scenario may set for one step.
pub const MAX_WAIT_LIMIT_S: u64 = 120;

/// The longest `sleep` step, in milliseconds.
pub const MAX_SLEEP_MS: u64 = 10_000;

/// The most runs one `run … xN` step starts.
pub const MAX_RUNS: u32 = 100;

/// The longest `latency` a step adds, in milliseconds.
pub const MAX_LATENCY_MS: u64 = 10_000;

/// The stage states a `wait` step may wait for (docs/api.md).
pub const STAGE_STATES: [&str; 8] = [
    "pending",
    "waiting_gate",
    "running",
    "handed_off",
    "succeeded",
    "failed",
    "skipped",
    "cancelled",
];

/// A scenario, as read from its file and checked.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What the scenario shows, for people.
    #[serde(default)]
    pub description: String,
    /// The bound of each wait (a node starting, a `wait` step, a run ending), in seconds.
    #[serde(default = "default_wait_limit")]
    pub wait_limit_s: u64,
    /// The orgs and their nodes.
    #[serde(rename = "org")]
    pub orgs: Vec<Org>,
    /// Who invites whom.
    #[serde(default, rename = "trust")]
    pub trust: Vec<Trust>,
    /// The pipelines the timeline runs.
    #[serde(default, rename = "pipeline")]
    pub pipelines: Vec<Pipeline>,
    /// How refusals for unapproved steps are answered.
    #[serde(default)]
    pub approvals: Approvals,
    /// Give the steps a tally: every node may write the directory `tally` of the net, and
    /// `@TALLY@` in an Ottofile is the file `tally/runs` in it, for steps to append a line
    /// to each time they run (`ran NAME STAGE once` counts them).
    #[serde(default)]
    pub tally: bool,
    /// The steps, in order, as written (see [`Step`]).
    pub timeline: Timeline,
    /// How each named run must end.
    #[serde(default, rename = "expect")]
    pub expect: Vec<Expect>,
    /// The steps, parsed from [`Self::timeline`].
    #[serde(skip)]
    pub steps: Vec<Step>,
}

/// The `[timeline]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeline {
    /// The steps, in order, as written.
    pub steps: Vec<String>,
}

/// An org: its nodes (the first holds the org key) and the owner names they answer to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Org {
    /// The org's name.
    pub name: String,
    /// Its nodes' names, unique across the scenario.
    pub nodes: Vec<String>,
    /// The stage owners its nodes run stages for (`owner = 'ops'`).
    #[serde(default)]
    pub answers_to: Vec<String>,
    /// Secrets set on every node of the org (`otto secrets set NAME`), name to value.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
}

/// An invite from one node and the nodes that join with it (one token each).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trust {
    /// The node that invites.
    pub inviter: String,
    /// The nodes of other orgs that join.
    pub joiners: Vec<String>,
    /// The name the joiners give the inviter's org, the owner name their Ottofiles use
    /// [default: the inviter's org name].
    #[serde(default)]
    pub alias: Option<String>,
    /// The name the inviter gives the joiners' org (an alias on the inviter), e.g. the
    /// owner name their stages have in the Ottofiles; none by default.
    #[serde(default)]
    pub known_as: Option<String>,
    /// The stage ids the joiners' org may hand over, a glob.
    pub stages: String,
    /// The pipelines, a glob.
    #[serde(default = "star")]
    pub pipelines: String,
    /// The environments, globs [default: none].
    #[serde(default)]
    pub envs: Vec<String>,
    /// `owned` or `approved`.
    #[serde(default = "approved")]
    pub definitions: String,
    /// The inviter's secrets the joiners' stages may receive, names or globs
    /// [default: none].
    #[serde(default)]
    pub secrets: Vec<String>,
    /// How many stages of one of the joiners' runs the inviter runs at once
    /// [default: the node's, 2].
    #[serde(default)]
    pub max_parallel: Option<u32>,
    /// The role granted.
    #[serde(default = "deliver")]
    pub role: String,
}

/// A pipeline: a name (its directory) and the text of its Ottofile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Its name.
    pub name: String,
    /// Its Ottofile.
    pub ottofile: String,
}

/// How refusals for unapproved inline steps are answered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approvals {
    /// Before the timeline, rehearse each pipeline the timeline runs and approve the
    /// digests that refusals name on the node they name, until a rehearsal is not refused.
    #[serde(default = "yes")]
    pub auto: bool,
}

/// How a named run must end.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The run's name (`as NAME` in its `run` step).
    pub run: String,
    /// `succeeded`, `failed` or `cancelled`.
    pub outcome: Outcome,
    /// Words that some stage's note must contain on the starting node.
    #[serde(default)]
    pub reason: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every stage succeeded or was skipped.
    Succeeded,
    /// A stage failed.
    Failed,
    /// The run was cancelled.
    Cancelled,
}

/// One step of the timeline. Names with spaces are quoted: `'Deploy staging'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `start NODE`: start its process and wait for its API address.
    Start(String),
    /// `stop NODE`: SIGTERM, then SIGKILL after the grace period.
    Stop(String),
    /// `kill9 NODE`: SIGKILL by PID.
    Kill9(String),
    /// `restart NODE`: stop, then start.
    Restart(String),
    /// `start NODE failing at POINT`: stop it if it runs, then start it with the fail
    /// point `POINT` armed (`OTTO_FAILPOINT`, debug builds of `otto-node`): it kills
    /// itself with SIGKILL when it gets there.
    StartFailing {
        /// The node.
        node: String,
        /// The fail point.
        point: String,
    },
    /// `wait NODE killed`: until its process is gone, killed by SIGKILL (its fail point).
    WaitKilled(String),
    /// `ran NAME STAGE once`: the tally holds exactly one line for the stage of the run.
    RanOnce {
        /// The run.
        run: String,
        /// The stage.
        stage: String,
    },
    /// `run PIPELINE on NODE as NAME [xN]`: `otto run --detach` on the node, N times in a
    /// row without waiting (runs `NAME-1` … `NAME-N`); later steps and `[[expect]]` name
    /// them all by `NAME`.
    Run {
        /// The pipeline.
        pipeline: String,
        /// The node that starts it.
        node: String,
        /// The name later steps and `[[expect]]` use.
        name: String,
        /// How many runs, 1 to [`MAX_RUNS`].
        count: u32,
    },
    /// `wait NAME stage STAGE state STATE on NODE`: until the node shows it.
    Wait {
        /// The run.
        run: String,
        /// The stage.
        stage: String,
        /// The state.
        state: String,
        /// The node that must show it.
        node: String,
    },
    /// `approve NAME STAGE on NODE`: pass the stage's input gate once it waits.
    Approve {
        /// The run.
        run: String,
        /// The stage.
        stage: String,
        /// The node the gate waits on.
        node: String,
    },
    /// `revoke NODE by NODE`: the second (holding its org key) revokes the first.
    Revoke {
        /// The revoked node.
        node: String,
        /// The node that revokes it.
        by: String,
    },
    /// `sleep MS`: at most [`MAX_SLEEP_MS`].
    Sleep(u64),
    /// `partition A B` (two nodes) or `partition org X from org Y` (every node of each):
    /// no connection between them, either way, until healed.
    Partition(Link),
    /// `heal A B` or `heal org X from org Y`: undoes a partition.
    Heal(Link),
    /// `latency A B 200ms`: packets between them are delayed (needs `--netns`).
    Latency {
        /// The nodes.
        link: Link,
        /// The delay, in milliseconds, at most [`MAX_LATENCY_MS`].
        ms: u64,
    },
    /// `loss A B 10%`: that share of packets between them is lost (needs `--netns`).
    Loss {
        /// The nodes.
        link: Link,
        /// The share lost, 0 to 100.
        percent: u8,
    },
    /// `intruder EVIL offers STAGE of PIPELINE to NODE [as NAME]`: a node `EVIL` of a new
    /// org that nobody invited learns `NODE`'s certificate and address, pins its org on its
    /// own, and runs `PIPELINE`, whose `STAGE` it hands to `NODE`. The run is named `NAME`
    /// (default `EVIL`); `NODE` must never record or run it.
    Intruder {
        /// The intruder's node name (its org is `EVIL-org`).
        node: String,
        /// The stage it offers.
        stage: String,
        /// The pipeline it runs.
        pipeline: String,
        /// The node it offers the stage to.
        victim: String,
        /// The run's name.
        name: String,
    },
}

/// The two ends of a fault: two nodes, or every node of two orgs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// `A B`.
    Nodes(String, String),
    /// `org X from org Y`.
    Orgs(String, String),
}

/// A scenario file that cannot be used, with the file and what is wrong, on one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct ScenarioError {
    /// The file.
    pub file: String,
    /// What is wrong, with the line, key or step.
    pub problem: String,
}

impl Scenario {
    /// Reads and checks the scenario in `path`, for the default loopback mode.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        Self::load_with(path, false)
    }

    /// Reads and checks the scenario in `path`, for network namespaces when `netns` (the
    /// only mode with `latency` and `loss`).
    pub fn load_with(path: &Path, netns: bool) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: path.display().to_string(),
            problem: format!("cannot read it: {e}"),
        })?;
        Self::parse_with(&path.display().to_string(), &text, netns)
    }

    /// Parses and checks `text`, read from `file`, for the default loopback mode.
    pub fn parse(file: &str, text: &str) -> Result<Self, ScenarioError> {
        Self::parse_with(file, text, false)
    }

    /// Parses and checks `text`, read from `file`, for network namespaces when `netns`.
    pub fn parse_with(file: &str, text: &str, netns: bool) -> Result<Self, ScenarioError> {
        let error = |problem: String| ScenarioError {
            file: file.to_owned(),
            problem,
        };
        let mut scenario: Self = toml::from_str(text).map_err(|e| {
            let message = e.message().replace('\n', " ");
            match e.span() {
                Some(span) => {
                    let line = text
                        .get(..span.start)
                        .map_or(0, |before| before.matches('\n').count())
                        + 1;
                    error(format!("line {line}: {message}"))
                }
                None => error(message),
            }
        })?;
        scenario.steps = scenario
            .timeline
            .steps
            .iter()
            .enumerate()
            .map(|(i, text)| {
                Step::parse(text).map_err(|p| error(format!("timeline[{i}] {text:?}: {p}")))
            })
            .collect::<Result<_, _>>()?;
        scenario.check(netns).map_err(error)?;
        Ok(scenario)
    }

    /// The org of node `name`.
    pub fn org_of(&self, name: &str) -> Option<&Org> {
        self.orgs.iter().find(|o| o.nodes.iter().any(|n| n == name))
    }

    /// The pipeline `name`.
    pub fn pipeline(&self, name: &str) -> Option<&Pipeline> {
        self.pipelines.iter().find(|p| p.name == name)
    }

    /// Checks the two ends of a fault: known nodes or orgs, not the same.
    fn link_ok(&self, link: &Link) -> Result<(), String> {
        let (a, b) = match link {
            Link::Nodes(a, b) => {
                for n in [a, b] {
                    if self.org_of(n).is_none() {
                        return Err(format!("no node {n:?} in any [[org]]"));
                    }
                }
                (a, b)
            }
            Link::Orgs(a, b) => {
                for o in [a, b] {
                    if !self.orgs.iter().any(|org| org.name == *o) {
                        return Err(format!("no [[org]] named {o:?}"));
                    }
                }
                (a, b)
            }
        };
        if a == b {
            return Err(format!("{a:?} cannot be cut from itself"));
        }
        Ok(())
    }

    /// Checks the names the parts use against each other; `latency` and `loss` steps only
    /// when the scenario runs with `--netns`.
    fn check(&self, netns: bool) -> Result<(), String> {
        if self.wait_limit_s == 0 || self.wait_limit_s > MAX_WAIT_LIMIT_S {
            return Err(format!(
                "wait_limit_s: {} is not between 1 and {MAX_WAIT_LIMIT_S}",
                self.wait_limit_s
            ));
        }
        if self.orgs.is_empty() {
            return Err("no [[org]]: a scenario needs at least one".into());
        }
        let mut orgs = BTreeSet::new();
        let mut nodes = BTreeSet::new();
        for org in &self.orgs {
            name_ok("org name", &org.name)?;
            if !orgs.insert(org.name.as_str()) {
                return Err(format!("org {:?} is declared twice", org.name));
            }
            if org.nodes.is_empty() {
                return Err(format!("org {:?}: nodes is empty", org.name));
            }
            for node in &org.nodes {
                name_ok("node name", node)?;
                if !nodes.insert(node.as_str()) {
                    return Err(format!("node {node:?} is declared twice"));
                }
            }
            for (name, value) in &org.secrets {
                if value.len() < 8 {
                    return Err(format!(
                        "org {:?}: secrets.{name}: a value shorter than 8 characters cannot be told apart from other text when homes are scanned",
                        org.name
                    ));
                }
            }
        }
        let node = |what: &str, name: &str| {
            if nodes.contains(name) {
                Ok(())
            } else {
                Err(format!("{what}: no node {name:?} in any [[org]]"))
            }
        };
        for (i, trust) in self.trust.iter().enumerate() {
            node(&format!("trust[{i}].inviter"), &trust.inviter)?;
            if trust.joiners.is_empty() {
                return Err(format!("trust[{i}].joiners is empty"));
            }
            for joiner in &trust.joiners {
                node(&format!("trust[{i}].joiners"), joiner)?;
                if self.org_of(joiner).map(|o| &o.name)
                    == self.org_of(&trust.inviter).map(|o| &o.name)
                {
                    return Err(format!(
                        "trust[{i}].joiners: {joiner:?} is of the inviter's own org"
                    ));
                }
            }
            if let Some(name) = &trust.known_as {
                name_ok(&format!("trust[{i}].known_as"), name)?;
                let orgs: BTreeSet<_> = trust
                    .joiners
                    .iter()
                    .filter_map(|j| self.org_of(j).map(|o| &o.name))
                    .collect();
                if orgs.len() > 1 {
                    return Err(format!(
                        "trust[{i}].known_as: the joiners are of {} orgs; one name stands for one org",
                        orgs.len()
                    ));
                }
            }
            if !["owned", "approved"].contains(&trust.definitions.as_str()) {
                return Err(format!(
                    "trust[{i}].definitions: {:?} is not owned or approved",
                    trust.definitions
                ));
            }
        }
        let mut pipelines = BTreeSet::new();
        for pipeline in &self.pipelines {
            name_ok("pipeline name", &pipeline.name)?;
            if !pipelines.insert(pipeline.name.as_str()) {
                return Err(format!("pipeline {:?} is declared twice", pipeline.name));
            }
        }
        let mut runs = BTreeSet::new();
        let mut intruders = BTreeSet::new();
        for (i, step) in self.steps.iter().enumerate() {
            let at = |what: String| format!("timeline[{i}] {:?}: {what}", self.timeline.steps[i]);
            let known_run = |run: &str| {
                if runs.contains(run) {
                    Ok(())
                } else {
                    Err(at(format!("no earlier `run … as {run}`")))
                }
            };
            match step {
                Step::Start(n)
                | Step::Stop(n)
                | Step::Kill9(n)
                | Step::Restart(n)
                | Step::WaitKilled(n)
                | Step::StartFailing { node: n, .. } => {
                    node("", n).map_err(at)?;
                }
                Step::RanOnce { run, .. } => {
                    known_run(run)?;
                    if !self.tally {
                        return Err(at("needs `tally = true`".into()));
                    }
                }
                Step::Run {
                    pipeline,
                    node: n,
                    name,
                    ..
                } => {
                    if !pipelines.contains(pipeline.as_str()) {
                        return Err(at(format!("no [[pipeline]] named {pipeline:?}")));
                    }
                    node("", n).map_err(at)?;
                    if !runs.insert(name.as_str()) {
                        return Err(at(format!("the run name {name:?} is used twice")));
                    }
                }
                Step::Wait {
                    run,
                    state,
                    node: n,
                    ..
                } => {
                    known_run(run)?;
                    node("", n).map_err(at)?;
                    if !STAGE_STATES.contains(&state.as_str()) {
                        return Err(at(format!(
                            "{state:?} is not a stage state ({})",
                            STAGE_STATES.join(", ")
                        )));
                    }
                }
                Step::Approve { run, node: n, .. } => {
                    known_run(run)?;
                    node("", n).map_err(at)?;
                }
                Step::Revoke { node: n, by } => {
                    node("", n).map_err(at)?;
                    node("", by).map_err(at)?;
                    if self.org_of(n).map(|o| &o.name) != self.org_of(by).map(|o| &o.name) {
                        return Err(at(format!("{by:?} is not of {n:?}'s org")));
                    }
                }
                Step::Sleep(_) => {}
                Step::Partition(link) | Step::Heal(link) => self.link_ok(link).map_err(at)?,
                Step::Latency { link, .. } | Step::Loss { link, .. } => {
                    self.link_ok(link).map_err(at)?;
                    if !netns {
                        let what = if matches!(step, Step::Latency { .. }) {
                            "latency"
                        } else {
                            "loss"
                        };
                        return Err(at(format!(
                            "{what} needs --netns (not available in loopback mode)"
                        )));
                    }
                }
                Step::Intruder {
                    node: evil,
                    pipeline,
                    victim,
                    name,
                    ..
                } => {
                    name_ok("intruder name", evil).map_err(at)?;
                    if nodes.contains(evil.as_str()) || intruders.contains(evil.as_str()) {
                        return Err(at(format!("the node name {evil:?} is already used")));
                    }
                    if self.orgs.iter().any(|o| o.name == format!("{evil}-org")) {
                        return Err(at(format!("the org {evil}-org is already declared")));
                    }
                    intruders.insert(evil.as_str());
                    if !pipelines.contains(pipeline.as_str()) {
                        return Err(at(format!("no [[pipeline]] named {pipeline:?}")));
                    }
                    node("", victim).map_err(at)?;
                    if !runs.insert(name.as_str()) {
                        return Err(at(format!("the run name {name:?} is used twice")));
                    }
                }
            }
        }
        let mut expected = BTreeSet::new();
        for (i, expect) in self.expect.iter().enumerate() {
            if !runs.contains(expect.run.as_str()) {
                return Err(format!(
                    "expect[{i}].run: no `run … as {}` in the timeline",
                    expect.run
                ));
            }
            if !expected.insert(expect.run.as_str()) {
                return Err(format!(
                    "expect[{i}].run: {:?} is expected twice",
                    expect.run
                ));
            }
        }
        if let Some(run) = runs.difference(&expected).next() {
            return Err(format!(
                "the run {run:?} has no [[expect]]: say how it must end"
            ));
        }
        Ok(())
    }
}

impl Step {
    /// Parses one step as written in `timeline`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let words = words(text)?;
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        let usage = |form: &str| Err(format!("expected `{form}`"));
        let one = |form: &str| match w.as_slice() {
            [_, node] => Ok((*node).to_owned()),
            _ => Err(format!("expected `{form}`")),
        };
        match w.first().copied() {
            Some("start") => match w.as_slice() {
                ["start", node] => Ok(Self::Start((*node).to_owned())),
                ["start", node, "failing", "at", point] => Ok(Self::StartFailing {
                    node: (*node).to_owned(),
                    point: (*point).to_owned(),
                }),
                _ => usage("start NODE [failing at POINT]"),
            },
            Some("ran") => match w.as_slice() {
                ["ran", run, stage, "once"] => Ok(Self::RanOnce {
                    run: (*run).to_owned(),
                    stage: (*stage).to_owned(),
                }),
                _ => usage("ran NAME STAGE once"),
            },
            Some("stop") => one("stop NODE").map(Self::Stop),
            Some("kill9") => one("kill9 NODE").map(Self::Kill9),
            Some("restart") => one("restart NODE").map(Self::Restart),
            Some("run") => {
                let (pipeline, node, name, count) = match w.as_slice() {
                    ["run", pipeline, "on", node, "as", name] => (pipeline, node, name, 1),
                    ["run", pipeline, "on", node, "as", name, times] => {
                        (pipeline, node, name, repeat(times)?)
                    }
                    _ => return usage("run PIPELINE on NODE as NAME [xN]"),
                };
                Ok(Self::Run {
                    pipeline: (*pipeline).to_owned(),
                    node: (*node).to_owned(),
                    name: (*name).to_owned(),
                    count,
                })
            }
            Some(verb @ ("partition" | "heal")) => {
                let link = match w.as_slice() {
                    [_, "org", x, "from", "org", y] => Link::Orgs((*x).to_owned(), (*y).to_owned()),
                    [_, a, b] if *a != "org" => Link::Nodes((*a).to_owned(), (*b).to_owned()),
                    _ => {
                        return usage(&format!(
                            "{verb} NODE NODE` or `{verb} org ORG from org ORG"
                        ));
                    }
                };
                Ok(if verb == "partition" {
                    Self::Partition(link)
                } else {
                    Self::Heal(link)
                })
            }
            Some("latency") => match w.as_slice() {
                ["latency", a, b, delay] => {
                    let ms = delay
                        .strip_suffix("ms")
                        .and_then(|n| n.parse::<u64>().ok())
                        .ok_or_else(|| format!("{delay:?} is not a delay like 200ms"))?;
                    if ms > MAX_LATENCY_MS {
                        return Err(format!("latency {ms}ms: at most {MAX_LATENCY_MS}ms"));
                    }
                    Ok(Self::Latency {
                        link: Link::Nodes((*a).to_owned(), (*b).to_owned()),
                        ms,
                    })
                }
                _ => usage("latency NODE NODE MSms"),
            },
            Some("loss") => match w.as_slice() {
                ["loss", a, b, share] => {
                    let percent = share
                        .strip_suffix('%')
                        .and_then(|n| n.parse::<u8>().ok())
                        .filter(|p| *p <= 100)
                        .ok_or_else(|| format!("{share:?} is not a share like 10%"))?;
                    Ok(Self::Loss {
                        link: Link::Nodes((*a).to_owned(), (*b).to_owned()),
                        percent,
                    })
                }
                _ => usage("loss NODE NODE N%"),
            },
            Some("intruder") => {
                let (node, stage, pipeline, victim, name) = match w.as_slice() {
                    [
                        "intruder",
                        evil,
                        "offers",
                        stage,
                        "of",
                        pipeline,
                        "to",
                        victim,
                    ] => (evil, stage, pipeline, victim, evil),
                    [
                        "intruder",
                        evil,
                        "offers",
                        stage,
                        "of",
                        pipeline,
                        "to",
                        victim,
                        "as",
                        name,
                    ] => (evil, stage, pipeline, victim, name),
                    _ => return usage("intruder NAME offers STAGE of PIPELINE to NODE [as RUN]"),
                };
                Ok(Self::Intruder {
                    node: (*node).to_owned(),
                    stage: (*stage).to_owned(),
                    pipeline: (*pipeline).to_owned(),
                    victim: (*victim).to_owned(),
                    name: (*name).to_owned(),
                })
            }
            Some("wait") => match w.as_slice() {
                ["wait", run, "stage", stage, "state", state, "on", node] => Ok(Self::Wait {
                    run: (*run).to_owned(),
                    stage: (*stage).to_owned(),
                    state: (*state).to_owned(),
                    node: (*node).to_owned(),
                }),
                ["wait", node, "killed"] => Ok(Self::WaitKilled((*node).to_owned())),
                _ => usage("wait NAME stage STAGE state STATE on NODE` or `wait NODE killed"),
            },
            Some("approve") => match w.as_slice() {
                ["approve", run, stage, "on", node] => Ok(Self::Approve {
                    run: (*run).to_owned(),
                    stage: (*stage).to_owned(),
                    node: (*node).to_owned(),
                }),
                _ => usage("approve NAME STAGE on NODE"),
            },
            Some("revoke") => match w.as_slice() {
                ["revoke", node, "by", by] => Ok(Self::Revoke {
                    node: (*node).to_owned(),
                    by: (*by).to_owned(),
                }),
                _ => usage("revoke NODE by NODE"),
            },
            Some("sleep") => {
                let ms = match w.as_slice() {
                    ["sleep", ms] => ms
                        .parse::<u64>()
                        .map_err(|_| format!("{ms:?} is not a number of milliseconds"))?,
                    _ => return usage("sleep MS"),
                };
                if ms > MAX_SLEEP_MS {
                    return Err(format!("sleep {ms}: at most {MAX_SLEEP_MS} ms"));
                }
                Ok(Self::Sleep(ms))
            }
            Some(other) => Err(format!(
                "unknown step `{other}`; expected start, stop, kill9, restart, run, wait, \
                 approve, revoke, sleep, partition, heal, latency, loss or intruder"
            )),
            None => Err("empty step".into()),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        })
    }
}

impl Default for Approvals {
    fn default() -> Self {
        Self { auto: true }
    }
}

/// The words of a step: split on whitespace, `'…'` or `"…"` keeping spaces.
fn words(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' || c == '"' {
            chars.next();
            let mut word = String::new();
            loop {
                match chars.next() {
                    Some(q) if q == c => break,
                    Some(ch) => word.push(ch),
                    None => return Err(format!("unclosed {c}")),
                }
            }
            out.push(word);
        } else {
            let mut word = String::new();
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() {
                    break;
                }
                word.push(ch);
                chars.next();
            }
            out.push(word);
        }
    }
    Ok(out)
}

/// The count of `xN` in `run … as NAME xN`.
fn repeat(times: &str) -> Result<u32, String> {
    times
        .strip_prefix('x')
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| (1..=MAX_RUNS).contains(n))
        .ok_or_else(|| format!("{times:?} is not a count like x50 (x1 to x{MAX_RUNS})"))
}

/// Names become directory names and command arguments: letters, digits, `-`, `_`, `.`.
fn name_ok(what: &str, name: &str) -> Result<(), String> {
    let fine = !name.is_empty()
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if fine {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?}: use letters, digits, '-', '_' and '.', not first '.' or '-'"
        ))
    }
}

fn default_wait_limit() -> u64 {
    60
}

fn star() -> String {
    "*".into()
}

fn approved() -> String {
    "approved".into()
}

fn deliver() -> String {
    "deliver".into()
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
description = "two orgs"

[[org]]
name = "acme-dev"
nodes = ["dev-1"]
answers_to = ["dev"]

[[org]]
name = "acme-ops"
nodes = ["ops-1"]
answers_to = ["ops"]
secrets = { DEPLOY_TOKEN = "hunter2-ops-only" }

[[trust]]
inviter = "ops-1"
joiners = ["dev-1"]
alias = "ops"
stages = "Deploy*"

[[pipeline]]
name = "app"
ottofile = "stage('Deploy staging') { owner = 'ops'  steps { echo 'hi' } }"

[[expect]]
run = "first"
outcome = "succeeded"

[timeline]
steps = [
  "run app on dev-1 as first",
  "wait first stage 'Deploy staging' state running on ops-1",
  "kill9 ops-1",
  "sleep 200",
  "start ops-1",
]
"#;

    fn error(text: &str) -> String {
        Scenario::parse("s.toml", text)
            .expect_err("the scenario is bad")
            .to_string()
    }

    #[test]
    fn a_good_scenario_reads_with_its_defaults_and_steps() {
        let s = Scenario::parse("s.toml", GOOD).expect("the scenario is good");
        assert_eq!(s.wait_limit_s, 60);
        assert!(s.approvals.auto);
        assert_eq!(s.trust[0].definitions, "approved");
        assert_eq!(s.trust[0].pipelines, "*");
        assert_eq!(
            s.steps[1],
            Step::Wait {
                run: "first".into(),
                stage: "Deploy staging".into(),
                state: "running".into(),
                node: "ops-1".into()
            }
        );
        assert_eq!(s.steps[3], Step::Sleep(200));
        assert_eq!(s.expect[0].outcome, Outcome::Succeeded);
    }

    #[test]
    fn an_unknown_key_is_named_with_its_file_and_line() {
        let err = error(&GOOD.replace("alias = \"ops\"", "alais = \"ops\""));
        assert!(
            err.starts_with("s.toml: line 18: unknown field `alais`"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn a_missing_key_and_a_bad_outcome_are_named() {
        let err = error(&GOOD.replace("stages = \"Deploy*\"\n", ""));
        assert!(err.contains("missing field `stages`"), "{err}");
        let err = error(&GOOD.replace("outcome = \"succeeded\"", "outcome = \"green\""));
        assert!(
            err.contains("line 27") && err.contains("unknown variant `green`"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_step_is_named_with_its_index_and_the_form_expected() {
        let err = error(&GOOD.replace("kill9 ops-1", "kil9 ops-1"));
        assert_eq!(
            err,
            "s.toml: timeline[2] \"kil9 ops-1\": unknown step `kil9`; expected start, stop, \
             kill9, restart, run, wait, approve, revoke, sleep, partition, heal, latency, loss \
             or intruder"
        );
        let err = error(&GOOD.replace("sleep 200", "sleep 20000"));
        assert!(err.ends_with("sleep 20000: at most 10000 ms"), "{err}");
        let err = error(&GOOD.replace("\"start ops-1\"", "\"start ops-9\""));
        assert!(err.ends_with("no node \"ops-9\" in any [[org]]"), "{err}");
        let err = error(&GOOD.replace("state running", "state runing"));
        assert!(err.contains("\"runing\" is not a stage state"), "{err}");
        let err = error(&GOOD.replace("'Deploy staging'", "'Deploy staging"));
        assert!(err.ends_with("unclosed '"), "{err}");
    }

    #[test]
    fn runs_and_expectations_must_match() {
        let err = error(&GOOD.replace("run = \"first\"", "run = \"second\""));
        assert_eq!(
            err,
            "s.toml: expect[0].run: no `run … as second` in the timeline"
        );
        let err = error(&GOOD.replace("wait first", "wait other"));
        assert!(err.ends_with("no earlier `run … as other`"), "{err}");
        let err =
            error(&GOOD.replace("[[expect]]\nrun = \"first\"\noutcome = \"succeeded\"\n", ""));
        assert!(err.ends_with("the run \"first\" has no [[expect]]: say how it must end"));
    }

    #[test]
    fn trust_must_cross_orgs_and_name_known_nodes() {
        let err = error(&GOOD.replace("joiners = [\"dev-1\"]", "joiners = [\"ops-1\"]"));
        assert!(
            err.ends_with("\"ops-1\" is of the inviter's own org"),
            "{err}"
        );
        let err = error(&GOOD.replace("inviter = \"ops-1\"", "inviter = \"qa-1\""));
        assert_eq!(
            err,
            "s.toml: trust[0].inviter: no node \"qa-1\" in any [[org]]"
        );
    }

    #[test]
    fn fault_steps_read_with_their_ends() {
        let s = Scenario::parse(
            "s.toml",
            &GOOD.replace(
                "\"sleep 200\",",
                "\"partition dev-1 ops-1\", \"heal org acme-dev from org acme-ops\", \
                 \"run app on dev-1 as many x50\", \"intruder evil offers Deploy of app to ops-1\",",
            )
            .replace(
                "[[expect]]",
                "[[expect]]\nrun = \"many\"\noutcome = \"succeeded\"\n\n\
                 [[expect]]\nrun = \"evil\"\noutcome = \"failed\"\n\n[[expect]]",
            ),
        )
        .expect("the scenario is good");
        assert_eq!(
            s.steps[3],
            Step::Partition(Link::Nodes("dev-1".into(), "ops-1".into()))
        );
        assert_eq!(
            s.steps[4],
            Step::Heal(Link::Orgs("acme-dev".into(), "acme-ops".into()))
        );
        assert!(matches!(&s.steps[5], Step::Run { name, count: 50, .. } if name == "many"));
        assert_eq!(
            s.steps[6],
            Step::Intruder {
                node: "evil".into(),
                stage: "Deploy".into(),
                pipeline: "app".into(),
                victim: "ops-1".into(),
                name: "evil".into(),
            }
        );
    }

    #[test]
    fn a_bad_fault_step_is_one_line_naming_the_step() {
        let with = |step: &str| error(&GOOD.replace("sleep 200", step));
        assert_eq!(
            with("latency dev-1 ops-1 200ms"),
            "s.toml: timeline[3] \"latency dev-1 ops-1 200ms\": latency needs --netns \
             (not available in loopback mode)"
        );
        assert!(
            with("loss dev-1 ops-1 10%")
                .ends_with("loss needs --netns (not available in loopback mode)")
        );
        let netns = Scenario::parse_with(
            "s.toml",
            &GOOD.replace("sleep 200", "loss dev-1 ops-1 10%"),
            true,
        )
        .expect("with --netns, loss is allowed");
        assert!(matches!(netns.steps[3], Step::Loss { percent: 10, .. }));
        assert!(with("latency dev-1 ops-1 fast").ends_with("\"fast\" is not a delay like 200ms"));
        assert!(with("loss dev-1 ops-1 110%").ends_with("\"110%\" is not a share like 10%"));
        assert!(
            with("partition dev-1")
                .ends_with("expected `partition NODE NODE` or `partition org ORG from org ORG`")
        );
        assert!(with("partition dev-1 qa-1").ends_with("no node \"qa-1\" in any [[org]]"));
        assert!(
            with("heal org acme-dev from org acme-qa").ends_with("no [[org]] named \"acme-qa\"")
        );
        assert!(with("partition dev-1 dev-1").ends_with("\"dev-1\" cannot be cut from itself"));
        assert!(
            with("run app on dev-1 as r x0")
                .ends_with("\"x0\" is not a count like x50 (x1 to x100)")
        );
        assert!(
            with("intruder ops-1 offers Deploy of app to ops-1")
                .ends_with("the node name \"ops-1\" is already used")
        );
        assert!(
            with("intruder evil offers Deploy of app to ops-9")
                .ends_with("no node \"ops-9\" in any [[org]]")
        );
        assert!(
            with("intruder evil offers Deploy to ops-1").contains("expected `intruder NAME offers")
        );
        for err in [
            with("latency dev-1 ops-1 200ms"),
            with("intruder evil offers Deploy of nope to ops-1"),
        ] {
            assert!(!err.contains('\n'), "{err}");
        }
        // The intruder's run needs an [[expect]] like any other.
        assert!(
            with("intruder evil offers Deploy of app to ops-1")
                .ends_with("the run \"evil\" has no [[expect]]: say how it must end")
        );
    }

    #[test]
    fn a_short_secret_is_refused() {
        let err = error(&GOOD.replace("hunter2-ops-only", "abc"));
        assert!(
            err.contains("secrets.DEPLOY_TOKEN: a value shorter than 8"),
            "{err}"
        );
    }
}
