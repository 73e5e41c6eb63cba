//! `otto-testnet run SCENARIO.toml`: makes the scenario's net, rehearses its pipelines
//! until no refusal for unapproved steps is left (approving the digests refusals name),
//! plays the timeline step by step, then checks the invariants and reports.
//!
//! The invariants (each a [`Check`]):
//!
//! - **outcome**: every named run ended as its `[[expect]]` says on the node that
//!   started it, with `reason` in one of its stage notes when given, and ended the same
//!   way on every other node that has a record of it (`otto status RUN` succeeds there);
//! - **accepted once**: for every named run and stage, the nodes' logs show at most one
//!   accepted offer (`offer accepted` with one offer id, across all nodes), and on every
//!   node the stage's attempt numbers strictly increase (none repeats) and at most one
//!   attempt succeeded;
//! - **verify**: `otto verify RUN` passes on the starting node for each run expected to
//!   succeed;
//! - **secrets**: no secret value of an org appears in any file of another org's node
//!   home or in that node's log (checked after every node stopped);
//! - **intruder turned away** (for each `intruder` step): the victim has no record of the
//!   intruder's run, its log accepted no offer of it, and its log shows that it refused a
//!   request from the intruder's peer id (`request refused: peer not allowed`).
//!
//! # Faults
//!
//! `partition`, `heal`, `latency` and `loss` steps go to a [`Faults`]: how the network is
//! cut. [`Loopback`], the default, has every node on 127.0.0.1 and partitions with each
//! node's block list (the testnet's control, `PUT /v1/testnet/blocked`): both ends refuse
//! connections with each other. It cannot delay or drop packets. [`Netns`] (`run
//! --netns`) runs each node in a network namespace of its own ([`Net::with_namespaces`]):
//! a partition makes the packets between two nodes vanish silently, and latency and loss
//! are `tc netem` on the nodes' links (on a kernel that has netem).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::scenario::{Link, Outcome, Scenario, Step};
use crate::{Bins, Error, Net, NodeId, human};

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(100);

/// How many rehearsals of one pipeline may be refused before giving up.
const MAX_REHEARSALS: usize = 6;

/// What a scenario did and whether its invariants held.
#[derive(Debug, Clone)]
pub struct Report {
    /// The scenario's name (its file name without `.toml`).
    pub scenario: String,
    /// The work directory.
    pub dir: PathBuf,
    /// How long it took from the first node's init to the last check.
    pub took: Duration,
    /// The timeline steps that ran, with how long each took.
    pub steps: Vec<(String, Duration)>,
    /// The run ids of the named runs.
    pub runs: BTreeMap<String, String>,
    /// What stopped the scenario before its checks, if anything.
    pub error: Option<String>,
    /// The invariants and whether each held.
    pub checks: Vec<Check>,
}

/// One invariant, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What it checks.
    pub name: String,
    /// Whether it held.
    pub held: bool,
    /// What was seen.
    pub detail: String,
}

impl Report {
    /// Whether the scenario got through its timeline and every check held.
    pub fn held(&self) -> bool {
        self.error.is_none() && !self.checks.is_empty() && self.checks.iter().all(|c| c.held)
    }

    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "scenario": self.scenario,
            "passed": self.held(),
            "dir": self.dir,
            "took_ms": u64::try_from(self.took.as_millis()).unwrap_or(u64::MAX),
            "error": self.error,
            "runs": self.runs,
            "steps": self.steps.iter().map(|(s, d)| json!({
                "step": s,
                "took_ms": u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            })).collect::<Vec<_>>(),
            "checks": self.checks.iter().map(|c| json!({
                "check": c.name, "held": c.held, "detail": c.detail,
            })).collect::<Vec<_>>(),
        })
    }
}

/// How a scenario's network faults are made. Each method gets the net and the nodes
/// concerned; an error stops the timeline.
pub trait Faults {
    /// Makes the scenario's (empty) net in `dir`; by default [`Net::new`].
    fn net(&mut self, dir: &Path, bins: Bins) -> Result<Net, Error> {
        Net::new(dir, bins)
    }
    /// Whether the nodes must be started with the testnet's control on.
    fn needs_control(&self) -> bool;
    /// Cuts `a` from `b`, both ways, until [`Self::heal`].
    fn partition(&mut self, net: &Net, a: NodeId, b: NodeId) -> anyhow::Result<()>;
    /// Undoes [`Self::partition`] of `a` and `b`.
    fn heal(&mut self, net: &Net, a: NodeId, b: NodeId) -> anyhow::Result<()>;
    /// Delays packets between `a` and `b` by `delay`.
    fn latency(&mut self, net: &Net, a: NodeId, b: NodeId, delay: Duration) -> anyhow::Result<()>;
    /// Drops `percent` of the packets between `a` and `b`.
    fn loss(&mut self, net: &Net, a: NodeId, b: NodeId, percent: u8) -> anyhow::Result<()>;
    /// `node` was started (again): applies what it lost with its process.
    fn started(&mut self, net: &Net, node: NodeId) -> anyhow::Result<()>;
}

/// The faults of nodes on loopback: partitions by each node's block list, kept here and
/// set again when a node restarts; no latency or loss.
#[derive(Debug, Default)]
pub struct Loopback {
    blocked: BTreeMap<NodeId, BTreeSet<NodeId>>,
}

/// The faults of nodes in network namespaces ([`Net::with_namespaces`]): a partition
/// drops the packets between two nodes' hosts ([`crate::netns::Topology::partition`]);
/// latency and loss are `tc netem` on both nodes' links, so they apply to everything the
/// two nodes send, to any node. The network keeps all of it across restarts.
#[derive(Debug, Default)]
pub struct Netns {
    /// The delay and loss (percent) set on each node's link.
    impaired: BTreeMap<NodeId, (Duration, u8)>,
}

/// Plays `scenario` named `name` in the work directory `dir` with the executables `bins`,
/// printing progress; every node it started is stopped when it returns. Faults are made
/// on loopback ([`Loopback`]).
pub fn play(scenario: &Scenario, name: &str, bins: Bins, dir: &Path) -> Report {
    play_with(scenario, name, bins, dir, &mut Loopback::default())
}

/// [`play`] with the network faults made by `faults`.
pub fn play_with(
    scenario: &Scenario,
    name: &str,
    bins: Bins,
    dir: &Path,
    faults: &mut dyn Faults,
) -> Report {
    let start = Instant::now();
    let mut report = Report {
        scenario: name.to_owned(),
        dir: dir.to_owned(),
        took: Duration::ZERO,
        steps: Vec::new(),
        runs: BTreeMap::new(),
        error: None,
        checks: Vec::new(),
    };
    let mut player = match Player::set_up(scenario, bins, dir, start, faults) {
        Ok(player) => player,
        Err(e) => {
            report.error = Some(format!("setting up: {e:#}"));
            report.took = start.elapsed();
            return report;
        }
    };
    for (i, step) in scenario.steps.iter().enumerate() {
        let text = &scenario.timeline.steps[i];
        let began = Instant::now();
        player.say(&format!("step {}: {text}", i + 1));
        if let Err(e) = player.step(step) {
            report.error = Some(format!("step {} {text:?}: {e:#}", i + 1));
            break;
        }
        report.steps.push((text.clone(), began.elapsed()));
    }
    report.runs = player
        .runs
        .iter()
        .map(|(n, (id, _))| (n.clone(), id.clone()))
        .collect();
    if report.error.is_none() {
        player.say("checking the invariants");
        report.checks = player.check();
    }
    player.net.stop_all();
    if report.error.is_none() {
        report.checks.push(player.secrets_stayed_home());
    }
    report.took = start.elapsed();
    report
}

/// The net of a scenario while it plays.
struct Player<'a> {
    scenario: &'a Scenario,
    net: Net,
    ids: BTreeMap<String, NodeId>,
    /// Run name → (run id, starting node); a `run … xN` adds `NAME-1` … `NAME-N`.
    runs: BTreeMap<String, (String, String)>,
    /// The name of a `run … xN` → the names of its runs.
    groups: BTreeMap<String, Vec<String>>,
    /// The intruders, as their steps made them.
    intruders: Vec<Intrusion>,
    faults: &'a mut dyn Faults,
    limit: Duration,
    start: Instant,
}

/// What an `intruder` step did.
struct Intrusion {
    /// The intruder node.
    node: String,
    /// Its peer id.
    peer_id: String,
    /// The node it offered the stage to.
    victim: String,
    /// Its run's name.
    run: String,
}

impl<'a> Player<'a> {
    fn set_up(
        scenario: &'a Scenario,
        bins: Bins,
        dir: &Path,
        start: Instant,
        faults: &'a mut dyn Faults,
    ) -> anyhow::Result<Self> {
        let mut net = faults.net(dir, bins)?;
        let mut ids = BTreeMap::new();
        for org in &scenario.orgs {
            let answers: Vec<&str> = org.answers_to.iter().map(String::as_str).collect();
            let mut first = None;
            for node in &org.nodes {
                let id = match first {
                    None => net.add(&org.name, node, &answers)?,
                    Some(first) => net.add_to_org(first, node, &answers)?,
                };
                first.get_or_insert(id);
                ids.insert(node.clone(), id);
                net[id].testnet_control = faults.needs_control();
                if scenario.tally {
                    net[id].allow_writes(&tally_dir(dir))?;
                }
            }
        }
        if scenario.tally {
            fs::create_dir_all(tally_dir(dir))?;
        }
        let mut player = Self {
            scenario,
            net,
            ids,
            runs: BTreeMap::new(),
            groups: BTreeMap::new(),
            intruders: Vec::new(),
            faults,
            limit: Duration::from_secs(scenario.wait_limit_s),
            start,
        };
        player.net.start_all()?;
        for node in player.net.nodes() {
            player.say(&format!(
                "{} ({}) started: pid {}, API {}",
                node.name,
                node.org,
                node.pid().unwrap_or_default(),
                node.api_addr().unwrap_or_default()
            ));
        }
        for org in &scenario.orgs {
            for node in &org.nodes {
                for (name, value) in &org.secrets {
                    let out = player
                        .node(node)
                        .otto_with_input(&["secrets", "set", name], Some(value.as_bytes()))?;
                    anyhow::ensure!(
                        out.status.success(),
                        "otto secrets set {name} on {node}: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
            }
        }
        for trust in &scenario.trust {
            let envs = trust.envs.join(",");
            let mut args = vec![
                "--role",
                &trust.role,
                "--stages",
                &trust.stages,
                "--pipelines",
                &trust.pipelines,
                "--definitions",
                &trust.definitions,
            ];
            if !envs.is_empty() {
                args.extend(["--envs", &envs]);
            }
            let secrets = trust.secrets.join(",");
            if !secrets.is_empty() {
                args.extend(["--secrets", &secrets]);
            }
            let max_parallel = trust.max_parallel.map(|n| n.to_string());
            if let Some(n) = &max_parallel {
                args.extend(["--max-parallel", n]);
            }
            let inviter_org = player.net[player.id(&trust.inviter)].org.clone();
            let alias = trust.alias.clone().unwrap_or(inviter_org);
            for joiner in &trust.joiners {
                player
                    .net
                    .connect(player.id(&trust.inviter), player.id(joiner), &args, &alias)?;
                player.say(&format!(
                    "{} invited {joiner}, which joined as {alias:?} (stages {})",
                    trust.inviter, trust.stages
                ));
            }
            if let (Some(name), Some(joiner)) = (&trust.known_as, trust.joiners.first()) {
                let org = player.net[player.id(joiner)].org.clone();
                player.net[player.id(&trust.inviter)]
                    .otto_node_ok(&["trust", "alias", name, &org])?;
                player.say(&format!("{} knows {org} as {name:?}", trust.inviter));
            }
        }
        for pipeline in &scenario.pipelines {
            let tally = tally_dir(dir).join("runs");
            let text = pipeline
                .ottofile
                .replace("@TALLY@", &tally.display().to_string());
            crate::net::write_file(
                &player.pipeline_dir(&pipeline.name).join("Ottofile"),
                text.as_bytes(),
            )?;
        }
        if scenario.approvals.auto {
            let mut rehearsed = BTreeSet::new();
            for step in &scenario.steps {
                if let Step::Run { pipeline, node, .. } = step
                    && rehearsed.insert((pipeline.clone(), node.clone()))
                {
                    player.rehearse(pipeline, node)?;
                }
            }
        }
        Ok(player)
    }

    /// Runs `pipeline` on `node` until a run is not refused for unapproved steps,
    /// approving each digest a refusal names on the node it names.
    fn rehearse(&mut self, pipeline: &str, node: &str) -> anyhow::Result<()> {
        let mut last = String::new();
        for _ in 0..MAX_REHEARSALS {
            let run = self.start_run(pipeline, node)?;
            let mut approved = false;
            for (digest, on) in self.wait_rehearsal(node, &run)? {
                let Some(&id) = self.ids.get(&on) else {
                    anyhow::bail!("a refusal names the node {on:?}, which is not in the scenario");
                };
                self.net[id].otto_node_ok(&["approve", &digest])?;
                self.say(&format!(
                    "rehearsal of {pipeline} on {node}: refused; approved {digest} on {on}"
                ));
                approved = true;
            }
            if approved {
                continue;
            }
            let i = self.index(node);
            let status = self.status_on(i, &run).unwrap_or_default();
            if status["run"]["state"] == "succeeded" {
                self.say(&format!(
                    "rehearsal of {pipeline} on {node}: succeeded, no refusal left"
                ));
                return Ok(());
            }
            // Ended otherwise without a refusal to answer: a node that has only just
            // joined may not be reachable yet. Try again, and accept the end at last.
            let why: Vec<String> = stages(&status)
                .iter()
                .filter(|s| s["state"] == "failed")
                .map(|s| format!("{}: {}", s["id"], s["note"]))
                .collect();
            last = format!("{} ({})", status["run"]["state"], why.join("; "));
            self.say(&format!("rehearsal of {pipeline} on {node}: {last}"));
            thread::sleep(Duration::from_millis(500));
        }
        if last.is_empty() {
            anyhow::bail!(
                "{pipeline} on {node} was still refused after {MAX_REHEARSALS} rehearsals"
            )
        }
        self.say(&format!(
            "rehearsal of {pipeline} on {node}: no refusal left; it ends {last}"
        ));
        Ok(())
    }

    /// Waits until some node shows a refusal of `run` that names a digest to approve (its
    /// refusals), or the run ended on `node` without one (none), passing input gates.
    /// A refusal on a later node need not reach the starting node, so every node is read.
    fn wait_rehearsal(
        &mut self,
        node: &str,
        run: &str,
    ) -> anyhow::Result<BTreeSet<(String, String)>> {
        let began = Instant::now();
        let i = self.index(node);
        loop {
            let refusals = self.refusals(run);
            if !refusals.is_empty() {
                return Ok(refusals);
            }
            if self.status_on(i, run).is_some_and(|s| is_final(&s)) {
                // The refusal may have come with the end: read every view once more.
                return Ok(self.refusals(run));
            }
            self.approve_waiting_gates(run);
            if began.elapsed() > self.limit {
                return Err(Error::Timeout {
                    what: format!("rehearsal run {run} to end on {node} or be refused"),
                    limit: self.limit,
                }
                .into());
            }
            thread::sleep(POLL);
        }
    }

    /// The digests refusals of `run` name and the nodes they name, from every running
    /// node's view.
    fn refusals(&mut self, run: &str) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for i in 0..self.net.nodes().len() {
            let Some(status) = self.status_on(i, run) else {
                continue;
            };
            for stage in stages(&status) {
                let note = stage["note"].as_str().unwrap_or_default();
                if let Some(found) = approval_hint(note) {
                    out.insert(found);
                }
            }
        }
        out
    }

    fn step(&mut self, step: &Step) -> anyhow::Result<()> {
        match step {
            Step::Start(n) => {
                let id = self.id(n);
                self.net[id].start()?;
                self.faults.started(&self.net, id)?;
                self.say(&format!(
                    "{n} started: pid {}",
                    self.net[id].pid().unwrap_or_default()
                ));
            }
            Step::Stop(n) => {
                let id = self.id(n);
                let clean = self.net[id].stop();
                self.say(&format!(
                    "{n} stopped ({})",
                    if clean { "cleanly" } else { "not cleanly" }
                ));
            }
            Step::Kill9(n) => {
                let id = self.id(n);
                let pid = self.net[id].pid();
                anyhow::ensure!(self.net[id].kill9(), "{n} does not run");
                self.say(&format!("{n} killed: SIGKILL to pid {}", pid.unwrap_or(0)));
            }
            Step::StartFailing { node: n, point } => {
                let id = self.id(n);
                self.net[id].stop();
                self.net[id].failpoint = Some(point.clone());
                let started = self.net[id].start();
                self.net[id].failpoint = None;
                started?;
                self.faults.started(&self.net, id)?;
                self.say(&format!(
                    "{n} started with the fail point {point} armed: pid {}",
                    self.net[id].pid().unwrap_or_default()
                ));
            }
            Step::WaitKilled(n) => {
                use std::os::unix::process::ExitStatusExt as _;
                let id = self.id(n);
                let status = self.net[id].wait_exit(self.limit).map_err(|e| {
                    anyhow::anyhow!("{e}: its fail point was not reached (only debug builds of otto-node have fail points)")
                })?;
                anyhow::ensure!(
                    status.signal() == Some(9),
                    "{n} ended {status}, not by SIGKILL at its fail point"
                );
                self.say(&format!("{n} killed itself at its fail point (SIGKILL)"));
            }
            Step::RanOnce { run, stage } => {
                let id = self.run_id(run);
                let text =
                    fs::read_to_string(tally_dir(self.net.dir()).join("runs")).unwrap_or_default();
                let times = text
                    .lines()
                    .filter(|l| {
                        let mut words = l.split_whitespace();
                        words.next() == Some(id.as_str()) && words.next() == Some(stage.as_str())
                    })
                    .count();
                anyhow::ensure!(
                    times == 1,
                    "stage {stage} of {run} ({id}) ran {times} times, not once"
                );
                self.say(&format!("{run}: {stage} ran once"));
            }
            Step::Restart(n) => {
                let id = self.id(n);
                self.net[id].stop();
                self.net[id].start()?;
                self.faults.started(&self.net, id)?;
                self.say(&format!(
                    "{n} restarted: pid {}",
                    self.net[id].pid().unwrap_or_default()
                ));
            }
            Step::Run {
                pipeline,
                node,
                name,
                count: 1,
            } => {
                let run = self.start_run(pipeline, node)?;
                self.say(&format!("{name} is run {run}"));
                self.runs.insert(name.clone(), (run, node.clone()));
            }
            Step::Run {
                pipeline,
                node,
                name,
                count,
            } => {
                let mut members = Vec::new();
                for i in 1..=*count {
                    let member = format!("{name}-{i}");
                    let run = self.start_run(pipeline, node)?;
                    self.runs.insert(member.clone(), (run, node.clone()));
                    members.push(member);
                }
                self.say(&format!(
                    "{name}: {count} runs started on {node} ({} … {})",
                    self.runs[&members[0]].0,
                    self.runs[&members[members.len() - 1]].0
                ));
                self.groups.insert(name.clone(), members);
            }
            Step::Wait {
                run,
                stage,
                state,
                node,
            } => {
                for member in self.members(run) {
                    let id = self.run_id(&member);
                    self.wait_stage(node, &id, stage, state)?;
                }
            }
            Step::Approve { run, stage, node } => {
                for member in self.members(run) {
                    let id = self.run_id(&member);
                    self.wait_stage(node, &id, stage, "waiting_gate")?;
                    self.node(node).otto_ok(&["approve", &id, stage])?;
                }
            }
            Step::Revoke { node, by } => self.revoke(node, by)?,
            Step::Sleep(ms) => thread::sleep(Duration::from_millis(*ms)),
            Step::Partition(link) => {
                for (a, b) in self.pairs(link) {
                    self.faults.partition(&self.net, a, b)?;
                }
                self.say(&format!("partitioned {}", self.link_text(link)));
            }
            Step::Heal(link) => {
                for (a, b) in self.pairs(link) {
                    self.faults.heal(&self.net, a, b)?;
                }
                self.say(&format!("healed {}", self.link_text(link)));
            }
            Step::Latency { link, ms } => {
                for (a, b) in self.pairs(link) {
                    self.faults
                        .latency(&self.net, a, b, Duration::from_millis(*ms))?;
                }
            }
            Step::Loss { link, percent } => {
                for (a, b) in self.pairs(link) {
                    self.faults.loss(&self.net, a, b, *percent)?;
                }
            }
            Step::Intruder {
                node,
                stage,
                pipeline,
                victim,
                name,
            } => self.intrude(node, stage, pipeline, victim, name)?,
        }
        Ok(())
    }

    /// The runs a run name stands for: itself, or the runs of a `run … xN`.
    fn members(&self, name: &str) -> Vec<String> {
        self.groups
            .get(name)
            .cloned()
            .unwrap_or_else(|| vec![name.to_owned()])
    }

    /// The node pairs a fault step cuts.
    fn pairs(&self, link: &Link) -> Vec<(NodeId, NodeId)> {
        match link {
            Link::Nodes(a, b) => vec![(self.id(a), self.id(b))],
            Link::Orgs(x, y) => {
                let of = |org: &str| -> Vec<NodeId> {
                    self.scenario
                        .orgs
                        .iter()
                        .filter(|o| o.name == org)
                        .flat_map(|o| o.nodes.iter().map(|n| self.id(n)))
                        .collect()
                };
                let ys = of(y);
                of(x)
                    .into_iter()
                    .flat_map(|a| ys.iter().map(move |&b| (a, b)))
                    .collect()
            }
        }
    }

    fn link_text(&self, link: &Link) -> String {
        match link {
            Link::Nodes(a, b) => format!("{a} and {b}"),
            Link::Orgs(x, y) => format!("org {x} from org {y}"),
        }
    }

    /// The `intruder` step: a node of a new org, uninvited, learns `victim`'s certificate
    /// and addresses, pins its org one-sidedly under the owner name of `stage`, and runs
    /// `pipeline`, so that it offers `stage` to `victim`.
    fn intrude(
        &mut self,
        evil: &str,
        stage: &str,
        pipeline: &str,
        victim: &str,
        name: &str,
    ) -> anyhow::Result<()> {
        let org = format!("{evil}-org");
        let id = self.net.add(&org, evil, &[])?;
        self.net[id].testnet_control = true;
        self.net[id].start()?;
        self.ids.insert(evil.to_owned(), id);
        let peer_id = self.net[id].peer_id.clone();
        self.say(&format!(
            "intruder {evil} ({org}, nobody invited it) started: peer {peer_id}"
        ));
        let dir = self.pipeline_dir(pipeline);
        let plan = self.net[id].otto_json(&["explain", &dir.to_string_lossy()])?;
        let owner = plan["plan"]["stages"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == stage))
            .ok_or_else(|| anyhow::anyhow!("{pipeline} has no stage {stage:?}"))?["owner"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("{stage} of {pipeline} has no owner to offer it to"))?
            .to_owned();
        let v = &self.net[self.id(victim)];
        let cert = fs::read(v.home.join("node.cert"))
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", v.home.join("node.cert").display()))?;
        let addrs: Vec<String> = fs::read_to_string(v.home.join("mesh.addrs"))
            .or_else(|_| fs::read_to_string(v.home.join("mesh.last")))
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        let learnt = self.net[id].api_ok(
            "POST",
            "/v1/testnet/learn",
            &json!({ "cert": hex(&cert), "addrs": addrs, "alias": owner }),
        )?;
        self.say(&format!(
            "{evil} learnt {victim}'s certificate and address, pinned {} as {owner:?} \
             (one-sided; connected: {})",
            learnt["org"].as_str().unwrap_or_default(),
            learnt["connected"]
        ));
        let run = self.start_run(pipeline, evil)?;
        self.say(&format!(
            "{name} is run {run}: {evil} offers {stage} to {victim}"
        ));
        self.runs.insert(name.to_owned(), (run, evil.to_owned()));
        self.intruders.push(Intrusion {
            node: evil.to_owned(),
            peer_id,
            victim: victim.to_owned(),
            run: name.to_owned(),
        });
        Ok(())
    }

    /// The victim of an intruder kept no trace of its run and logged that it refused it.
    fn turned_away(&mut self, intrusion: &Intrusion) -> Check {
        let (run, _) = self.runs[&intrusion.run].clone();
        let i = self.index(&intrusion.victim);
        let mut problems = Vec::new();
        if self.status_on(i, &run).is_some() {
            problems.push(format!("{} has a record of run {run}", intrusion.victim));
        }
        let log = self.net.nodes()[i].log_text();
        if accepted_offers(&log).iter().any(|(r, _, _)| *r == run) {
            problems.push(format!(
                "{} accepted an offer of run {run}",
                intrusion.victim
            ));
        }
        let refused = log.lines().any(|l| {
            l.contains("request refused: peer not allowed")
                && l.contains(&format!("peer={}", intrusion.peer_id))
        });
        if !refused {
            problems.push(format!(
                "{}'s log shows no refused request from {} ({})",
                intrusion.victim, intrusion.node, intrusion.peer_id
            ));
        }
        Check {
            name: format!(
                "{} turned the intruder {} away",
                intrusion.victim, intrusion.node
            ),
            held: problems.is_empty(),
            detail: if problems.is_empty() {
                format!(
                    "no record of run {run}, no offer accepted, and its log shows the \
                     refusal of {}",
                    intrusion.peer_id
                )
            } else {
                problems.join("; ")
            },
        }
    }

    /// `by` revokes `node`'s key; waits until every running node of another org that
    /// knows `node` lists it as revoked.
    fn revoke(&mut self, node: &str, by: &str) -> anyhow::Result<()> {
        let org = self.net[self.id(node)].org.clone();
        let others: Vec<NodeId> = self
            .ids
            .values()
            .copied()
            .filter(|&i| self.net[i].org != org && self.net[i].pid().is_some())
            .collect();
        let key = others
            .iter()
            .find_map(|&i| {
                peers(&self.net, i)
                    .into_iter()
                    .find(|p| p["node"] == node)
                    .and_then(|p| p["node_key"].as_str().map(str::to_owned))
            })
            .ok_or_else(|| anyhow::anyhow!("no running node of another org knows {node}"))?;
        self.node(by).otto_node_ok(&[
            "trust",
            "revoke",
            &key,
            "--reason",
            "revoked by the scenario",
        ])?;
        self.say(&format!("{by} revoked {node} ({key})"));
        let limit = self.limit;
        let began = Instant::now();
        loop {
            let pending: Vec<String> = others
                .iter()
                .filter(|&&i| {
                    let list = peers(&self.net, i);
                    list.iter()
                        .any(|p| p["node"] == node && p["status"] != "revoked")
                })
                .map(|&i| self.net[i].name.clone())
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            if began.elapsed() > limit {
                return Err(Error::Timeout {
                    what: format!("{} to learn that {node} is revoked", pending.join(", ")),
                    limit,
                }
                .into());
            }
            thread::sleep(POLL);
        }
    }

    /// The invariants, after every node was started again.
    fn check(&mut self) -> Vec<Check> {
        let mut checks = Vec::new();
        for id in self.ids.values().copied().collect::<Vec<_>>() {
            let started = self.net[id].start().map_err(anyhow::Error::from);
            if let Err(e) = started.and_then(|()| self.faults.started(&self.net, id)) {
                checks.push(Check {
                    name: format!("{} starts again for the checks", self.net[id].name),
                    held: false,
                    detail: e.to_string(),
                });
            }
        }
        for expect in &self.scenario.expect {
            for run in self.members(&expect.run) {
                checks.push(self.outcome(&run, expect.outcome, expect.reason.as_deref()));
            }
        }
        for name in self.scenario.expect.iter().map(|e| &e.run) {
            for run in self.members(name) {
                checks.push(self.accepted_once(&run));
            }
        }
        for expect in &self.scenario.expect {
            for name in self.members(&expect.run) {
                if expect.outcome != Outcome::Succeeded {
                    continue;
                }
                let (run, starter) = self.runs[&name].clone();
                let (held, detail) = self.verify(&starter, &run);
                checks.push(Check {
                    name: format!("otto verify {name} on {starter}"),
                    held,
                    detail,
                });
            }
        }
        for intrusion in std::mem::take(&mut self.intruders) {
            let check = self.turned_away(&intrusion);
            checks.push(check);
            self.intruders.push(intrusion);
        }
        checks
    }

    fn outcome(&mut self, name: &str, outcome: Outcome, reason: Option<&str>) -> Check {
        let (run, starter) = self.runs[name].clone();
        let check = |held: bool, detail: String| Check {
            name: format!("{name} {outcome} on every node that has it"),
            held,
            detail,
        };
        let status = match self.wait_final(&starter, &run) {
            Ok(status) => status,
            Err(e) => return check(false, e.to_string()),
        };
        let state = status["run"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if state != outcome.to_string() {
            return check(false, format!("{state} on {starter}"));
        }
        if let Some(reason) = reason
            && !stages(&status)
                .iter()
                .any(|s| s["note"].as_str().is_some_and(|n| n.contains(reason)))
        {
            return check(false, format!("no stage note on {starter} says {reason:?}"));
        }
        let mut seen = vec![starter.clone()];
        for i in 0..self.net.nodes().len() {
            let node = self.net.nodes()[i].name.clone();
            if node == starter || self.status_on(i, &run).is_none() {
                continue;
            }
            match self.wait_final(&node, &run) {
                Ok(s) if s["run"]["state"] == outcome.to_string() => seen.push(node),
                Ok(s) => return check(false, format!("{} on {node}", s["run"]["state"])),
                Err(e) => return check(false, e.to_string()),
            }
        }
        check(true, format!("{outcome} on {}", seen.join(", ")))
    }

    fn accepted_once(&mut self, name: &str) -> Check {
        let (run, _) = self.runs[name].clone();
        let mut accepted: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
        let mut problems = Vec::new();
        let mut attempts = 0;
        for i in 0..self.net.nodes().len() {
            let node = self.net.nodes()[i].name.clone();
            for (r, stage, id) in accepted_offers(&self.net.nodes()[i].log_text()) {
                if r == run {
                    accepted
                        .entry(stage)
                        .or_default()
                        .insert((node.clone(), id));
                }
            }
            let Some(status) = self.status_on(i, &run) else {
                continue;
            };
            for stage in stages(&status) {
                let list = stage["attempts"].as_array().map_or(&[][..], Vec::as_slice);
                attempts += list.len();
                let numbers: Vec<u64> = list.iter().filter_map(|a| a["n"].as_u64()).collect();
                let succeeded = list.iter().filter(|a| a["state"] == "succeeded").count();
                let id = stage["id"].as_str().unwrap_or_default();
                // A node that mirrors another's stage keeps only the attempt of its
                // receipt (`[2]`), so numbers need not start at 1; they never repeat.
                if numbers.len() != list.len() || numbers.windows(2).any(|w| w[0] >= w[1]) {
                    problems.push(format!("{id} on {node}: attempts numbered {numbers:?}"));
                }
                if succeeded > 1 {
                    problems.push(format!("{id} on {node}: {succeeded} attempts succeeded"));
                }
            }
        }
        for (stage, by) in &accepted {
            if by.len() > 1 {
                let who: Vec<String> = by.iter().map(|(n, id)| format!("{n} ({id})")).collect();
                problems.push(format!(
                    "{stage}: {} offers accepted: {}",
                    by.len(),
                    who.join(", ")
                ));
            }
        }
        Check {
            name: format!("{name}: no stage accepted twice"),
            held: problems.is_empty(),
            detail: if problems.is_empty() {
                format!(
                    "{} handed-off stage(s) accepted once each; {attempts} attempt(s) on all \
                     nodes, numbered in order, at most one success per stage per node",
                    accepted.len()
                )
            } else {
                problems.join("; ")
            },
        }
    }

    /// No secret value of an org in any file of another org's homes or logs.
    fn secrets_stayed_home(&self) -> Check {
        let mut problems = Vec::new();
        let mut scanned = 0;
        for org in &self.scenario.orgs {
            for (name, value) in &org.secrets {
                for node in self.net.nodes().iter().filter(|n| n.org != org.name) {
                    let mut files = files_under(&node.home);
                    files.push(node.log.clone());
                    for file in files {
                        scanned += 1;
                        let bytes = fs::read(&file).unwrap_or_default();
                        if bytes.windows(value.len()).any(|w| w == value.as_bytes()) {
                            problems.push(format!("{name} of {} in {}", org.name, file.display()));
                        }
                    }
                }
            }
        }
        Check {
            name: "no secret in another org's home or log".into(),
            held: problems.is_empty(),
            detail: if problems.is_empty() {
                format!("{scanned} file reads")
            } else {
                problems.join("; ")
            },
        }
    }

    fn start_run(&self, pipeline: &str, node: &str) -> anyhow::Result<String> {
        let dir = self.pipeline_dir(pipeline);
        let out = self
            .node(node)
            .otto_ok(&["run", &dir.to_string_lossy(), "--detach"])?;
        Ok(out.trim().to_owned())
    }

    /// Waits until `run` is final on `node`; its status there.
    /// `otto verify RUN` on `node`, again until it passes (bounded by the wait limit): a
    /// run may end on a relayed end before the runner's receipt arrives (a node that
    /// restarted learns both again, in any order). Whether it passed, and its last line.
    fn verify(&mut self, node: &str, run: &str) -> (bool, String) {
        let began = Instant::now();
        loop {
            let (held, detail) = match self.node(node).otto(&["verify", run]) {
                Ok(out) => {
                    let (stdout, stderr) = (
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr),
                    );
                    let said = if out.status.success() || stderr.trim().is_empty() {
                        stdout
                    } else {
                        stderr
                    };
                    (out.status.success(), crate::process::tail(&said, 1))
                }
                Err(e) => (false, e.to_string()),
            };
            if held || began.elapsed() > self.limit {
                return (held, detail);
            }
            thread::sleep(POLL);
        }
    }

    fn wait_final(&mut self, node: &str, run: &str) -> anyhow::Result<Value> {
        let began = Instant::now();
        let i = self.index(node);
        loop {
            if let Some(status) = self.status_on(i, run)
                && is_final(&status)
            {
                return Ok(status);
            }
            if began.elapsed() > self.limit {
                return Err(Error::Timeout {
                    what: format!("run {run} to end on {node}"),
                    limit: self.limit,
                }
                .into());
            }
            thread::sleep(POLL);
        }
    }

    fn approve_waiting_gates(&mut self, run: &str) {
        for i in 0..self.net.nodes().len() {
            let Some(status) = self.status_on(i, run) else {
                continue;
            };
            for stage in stages(&status) {
                let waiting_input = stage["gates"].as_array().is_some_and(|g| {
                    g.iter()
                        .any(|g| g["kind"] == "input" && g["state"] == "waiting")
                });
                if waiting_input && let Some(id) = stage["id"].as_str() {
                    let _ = self.net.nodes()[i].otto(&["approve", run, id]);
                }
            }
        }
    }

    fn wait_stage(
        &mut self,
        node: &str,
        run: &str,
        stage: &str,
        state: &str,
    ) -> anyhow::Result<()> {
        let began = Instant::now();
        let i = self.index(node);
        let mut last = String::from("no record of the run");
        loop {
            if let Some(status) = self.status_on(i, run) {
                match stages(&status).iter().find(|s| s["id"] == stage) {
                    Some(s) if s["state"] == state => return Ok(()),
                    Some(s) => {
                        last = format!("{stage} is {}", s["state"]);
                        if let Some(note) = s["note"].as_str() {
                            last = format!("{last}: {note}");
                        }
                        // A stage that ended does not change any more.
                        if is_final_stage(&s["state"]) {
                            return Err(anyhow::anyhow!(
                                "{stage} of run {run} on {node} ended before it was {state} ({last})"
                            ));
                        }
                    }
                    None => last = format!("the run has no stage {stage:?}"),
                }
            }
            if began.elapsed() > self.limit {
                return Err(Error::Timeout {
                    what: format!("{stage} of run {run} to be {state} on {node} (last: {last})"),
                    limit: self.limit,
                }
                .into());
            }
            thread::sleep(POLL);
        }
    }

    /// `otto status RUN --json` on the `i`th node, if it runs and has the run.
    fn status_on(&mut self, i: usize, run: &str) -> Option<Value> {
        let node = &self.net.nodes()[i];
        node.pid()?;
        node.otto_json(&["status", run]).ok()
    }

    fn id(&self, node: &str) -> NodeId {
        // The scenario was checked: every node a step names is in `ids`.
        self.ids[node]
    }

    fn index(&self, node: &str) -> usize {
        self.net
            .nodes()
            .iter()
            .position(|n| n.name == node)
            .unwrap_or_default()
    }

    fn node(&self, node: &str) -> &crate::NodeProc {
        &self.net[self.id(node)]
    }

    fn run_id(&self, name: &str) -> String {
        // The scenario was checked: a step names only runs started before it.
        self.runs[name].0.clone()
    }

    fn pipeline_dir(&self, name: &str) -> PathBuf {
        self.net.dir().join("pipelines").join(name)
    }

    fn say(&self, what: &str) {
        println!("{:>7}  {what}", human(self.start.elapsed()));
    }
}

/// The directory steps may write when the scenario has a tally.
fn tally_dir(net: &Path) -> PathBuf {
    net.join("tally")
}

/// Whether a `otto status --json` answer shows the run ended.
fn is_final(status: &Value) -> bool {
    ["succeeded", "failed", "cancelled"]
        .contains(&status["run"]["state"].as_str().unwrap_or_default())
}

/// Whether a stage state is one it keeps.
fn is_final_stage(state: &Value) -> bool {
    ["succeeded", "failed", "skipped", "cancelled"].contains(&state.as_str().unwrap_or_default())
}

/// The stages of a `otto status --json` answer.
fn stages(status: &Value) -> Vec<Value> {
    status["stages"].as_array().cloned().unwrap_or_default()
}

/// The peers a node lists (`otto-node peers --json`), empty if it cannot tell.
fn peers(net: &Net, id: NodeId) -> Vec<Value> {
    net[id]
        .otto_node(&["peers", "--json"])
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
        .and_then(|v| v["peers"].as_array().cloned())
        .unwrap_or_default()
}

impl Loopback {
    /// Sends `node` its whole block list.
    fn send(&self, net: &Net, node: NodeId) -> anyhow::Result<()> {
        let peers: Vec<&str> = self
            .blocked
            .get(&node)
            .into_iter()
            .flatten()
            .map(|&other| net[other].peer_id.as_str())
            .collect();
        if net[node].pid().is_none() {
            // Not running: it gets the list when it starts.
            return Ok(());
        }
        net[node].api_ok("PUT", "/v1/testnet/blocked", &json!({ "peers": peers }))?;
        Ok(())
    }

    fn set(&mut self, net: &Net, a: NodeId, b: NodeId, cut: bool) -> anyhow::Result<()> {
        for (x, y) in [(a, b), (b, a)] {
            let list = self.blocked.entry(x).or_default();
            if cut {
                list.insert(y);
            } else {
                list.remove(&y);
            }
            self.send(net, x)?;
        }
        Ok(())
    }
}

impl Faults for Loopback {
    fn needs_control(&self) -> bool {
        true
    }

    fn partition(&mut self, net: &Net, a: NodeId, b: NodeId) -> anyhow::Result<()> {
        self.set(net, a, b, true)
    }

    fn heal(&mut self, net: &Net, a: NodeId, b: NodeId) -> anyhow::Result<()> {
        self.set(net, a, b, false)
    }

    fn latency(&mut self, _: &Net, _: NodeId, _: NodeId, _: Duration) -> anyhow::Result<()> {
        anyhow::bail!("latency needs --netns (not available in loopback mode)")
    }

    fn loss(&mut self, _: &Net, _: NodeId, _: NodeId, _: u8) -> anyhow::Result<()> {
        anyhow::bail!("loss needs --netns (not available in loopback mode)")
    }

    fn started(&mut self, net: &Net, node: NodeId) -> anyhow::Result<()> {
        if self.blocked.get(&node).is_some_and(|b| !b.is_empty()) {
            self.send(net, node)?;
        }
        Ok(())
    }
}

impl Netns {
    /// The net's namespaces and the hosts of `a` and `b`.
    fn hosts(
        net: &Net,
        a: NodeId,
        b: NodeId,
    ) -> anyhow::Result<(&crate::netns::Topology, [&crate::netns::Host; 2])> {
        let host = |id: NodeId| {
            net[id]
                .host()
                .ok_or_else(|| anyhow::anyhow!("{} has no network namespace", net[id].name))
        };
        let topology = net
            .topology()
            .ok_or_else(|| anyhow::anyhow!("the net has no network namespaces"))?;
        Ok((topology, [host(a)?, host(b)?]))
    }

    /// Sets `change` on the links of `a` and `b`, each keeping the rest of what it had.
    fn impair(
        &mut self,
        net: &Net,
        a: NodeId,
        b: NodeId,
        change: impl Fn(&mut (Duration, u8)),
    ) -> anyhow::Result<()> {
        let (topology, hosts) = Self::hosts(net, a, b)?;
        for (id, host) in [a, b].into_iter().zip(hosts) {
            let mut now = self.impaired.get(&id).copied().unwrap_or_default();
            change(&mut now);
            topology
                .impair(host, now.0, f32::from(now.1))
                // One line, whatever tc printed.
                .map_err(|e| anyhow::anyhow!("{}", e.to_string().replace('\n', " ")))?;
            self.impaired.insert(id, now);
        }
        Ok(())
    }
}

impl Faults for Netns {
    fn net(&mut self, dir: &Path, bins: Bins) -> Result<Net, Error> {
        Net::with_namespaces(dir, bins)
    }

    fn needs_control(&self) -> bool {
        false
    }

    fn partition(&mut self, net: &Net, a: NodeId, b: NodeId) -> anyhow::Result<()> {
        let (topology, [x, y]) = Self::hosts(net, a, b)?;
        Ok(topology.partition(x, y)?)
    }

    fn heal(&mut self, net: &Net, a: NodeId, b: NodeId) -> anyhow::Result<()> {
        let (topology, [x, y]) = Self::hosts(net, a, b)?;
        Ok(topology.heal(x, y)?)
    }

    fn latency(&mut self, net: &Net, a: NodeId, b: NodeId, delay: Duration) -> anyhow::Result<()> {
        self.impair(net, a, b, |now| now.0 = delay)
    }

    fn loss(&mut self, net: &Net, a: NodeId, b: NodeId, percent: u8) -> anyhow::Result<()> {
        self.impair(net, a, b, |now| now.1 = percent)
    }

    fn started(&mut self, _: &Net, _: NodeId) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// From a refusal's note, the digest it names and the node to approve it on:
/// ``… run `otto-node approve sha256:HEX` on ops-1``.
fn approval_hint(note: &str) -> Option<(String, String)> {
    let at = note.find("otto-node approve sha256:")?;
    let rest = &note[at + "otto-node approve ".len()..];
    let hex = rest.get(7..7 + 64)?;
    if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let after = rest.get(7 + 64..)?;
    let node = after
        .strip_prefix("` on ")?
        .split(|c: char| c.is_whitespace() || c == ';' || c == ',')
        .next()?
        .trim_end_matches('.');
    Some((format!("sha256:{hex}"), node.to_owned()))
}

/// The accepted offers a node's log tells of: (run, stage, offer id).
fn accepted_offers(log: &str) -> Vec<(String, String, String)> {
    log.lines()
        .filter_map(|line| {
            let rest = &line[line.find("offer accepted ")?..];
            let run = rest.split(" run=").nth(1)?.split(' ').next()?;
            let stage = rest.split(" stage=").nth(1)?.split(" org=").next()?;
            let id = rest.split(" id=").nth(1)?.split(' ').next()?;
            Some((run.to_owned(), stage.to_owned(), id.to_owned()))
        })
        .collect()
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => out.push(entry.path()),
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_and_node_to_approve_are_read_from_a_refusal() {
        let hex = "8c1209ac600db51cef72b14bc184167074f49e2dd32923581f9b56d5cc59389d";
        let note = format!(
            "ops-1 rejected Deploy: stage \"Deploy\" has inline steps; its definition \
             sha256:{hex} is not approved here; run `otto-node approve sha256:{hex}` on ops-1"
        );
        assert_eq!(
            approval_hint(&note),
            Some((format!("sha256:{hex}"), "ops-1".into()))
        );
        assert_eq!(
            approval_hint("ran on ops-1 (acme-ops), receipt verified"),
            None
        );
    }

    #[test]
    fn accepted_offers_are_read_from_a_node_log() {
        let log = "2026-11-25T01:21:46.543600Z  INFO otto_node::exchange: offer accepted \
                   run=01M884 stage=Deploy staging org=acme-dev node=dev-1 id=3d17 how=approved steps sha256:8c\n\
                   2026-11-25T01:21:47Z  INFO otto_node::exchange: offering the stage run=01M884";
        assert_eq!(
            accepted_offers(log),
            vec![("01M884".into(), "Deploy staging".into(), "3d17".into())]
        );
    }
}
