//! A deterministic simulator of many Otto nodes handing stages to each other through their
//! [`Machine`]s, in memory, with a virtual clock and a faulty network.
//!
//! The simulator plays every node's part around its machine: it signs offers, answers and
//! receipts with real keys (fixed seeds), keeps each node's "durable" outbox, inbox, runs
//! and receipts in maps that survive a crash, runs stages by waiting a while and signing a
//! receipt, and delivers messages over a network with latency, loss, duplication (and so
//! reordering), partitions and crashed nodes. Plans are real plans, planned from Ottofile
//! text. Everything random comes from one seed, so a failing case replays exactly.
//!
//! ```text
//!  dev-1 ──offer──▶ ops-1 ──offer──▶ qa-1        one node per org; a run starts at its
//!    ▲               │ ▲               │         origin, runs its own stages locally and
//!    └───receipt─────┘ └────receipt────┘         hands each foreign stage to its owner
//! ```
//!
//! # The node it plays
//!
//! - **Runs.** A node runs a stage when every stage it needs has a successful receipt it
//!   knows and it ran the last of them (the run's origin for a first stage): its own stages
//!   locally, other owners' stages by a handoff with the receipt chain so far. Offers are
//!   first attempts and expire after [`SimConfig::offer_ttl`] seconds.
//! - **Durability.** A machine's actions are carried out in order; `Persist*`, `*Outbox`
//!   and `InboxDone` change the node's durable maps, messages go on the network. The
//!   outcome of an answer (accepted, rejected, expired) is recorded durably before the
//!   actions run, as a node would in the transaction that acknowledges the outbox entry.
//! - **Crashes.** A crash drops the machine, every timer and every stage running; the
//!   restart builds a new machine from the durable maps with
//!   [`Command::Restore`](crate::machine::Command::Restore). A *torn* crash happens in the
//!   middle of an action list, after only some of its actions, which is where the order of
//!   the actions matters.
//!
//! # Driving it
//!
//! [`Sim::new`] builds the nodes; [`Sim::start_run`] plans an Ottofile and starts a run
//! at a node; [`Sim::step`] handles the next thing due (a delivery, a timer, a crash, a
//! restart) and moves the clock to it; [`Sim::run_until`] steps until a predicate holds,
//! within a step limit. [`Sim::trace`] records what the nodes said and did, for properties.
#![warn(clippy::unwrap_used)]

mod check;
mod hostile;
mod net;
mod node;
pub mod scale;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use otto_pipeline::plan::Provenance;
use otto_pipeline::{Facts, MemSource, Plan, StepCatalog, plan_text};
use otto_protocol::{Envelope, HandoffId, KeyBytes, RejectCode};
use otto_trust::{NodeKey, OrgKey, TrustStore};

use self::check::{Checks, Log};
pub use self::check::{Observer, Violation};
use self::net::{Item, Rng};
use self::node::{Durable, Node, RunInfo, RunRecord, certificate, open_policy, seed_bytes};
use crate::machine::{Config, InboxState, Machine, Verdict};
use crate::{bind_owners, definition_digest};

/// The simulator's clock at the start: 2025-01-01T00:00:00Z, in milliseconds.
pub const START: u64 = 1_735_689_600_000;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The seed of everything random: latencies, losses, jitter, handoff ids.
    pub seed: u64,
    /// The orgs: org `ops` has nodes `ops-1` … `ops-N` ([`SimConfig::nodes_per_org`]),
    /// which answer to owner `ops`; an offer of an `ops` stage goes to one of them, picked
    /// by the run.
    pub orgs: Vec<String>,
    /// How many nodes each org has (at least 1).
    pub nodes_per_org: usize,
    /// The network's and the nodes' misbehaviour.
    pub faults: Faults,
    /// The machines' configuration.
    pub machine: Config,
    /// How long an offer is valid, in seconds.
    pub offer_ttl: u64,
    /// How long a stage runs: uniform in this range of milliseconds.
    pub stage_time: (u64, u64),
    /// How long fetching a stage's inputs takes: uniform in this range of milliseconds.
    pub fetch_time: (u64, u64),
}

/// Faults: random ones until [`Faults::heal_at`], scheduled ones at their times.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Message latency: uniform in this range of milliseconds.
    pub latency: (u64, u64),
    /// Chance per message (per mille) that it is lost without a trace.
    pub loss: u32,
    /// Chance per message (per mille) that it is delivered twice.
    pub duplicate: u32,
    /// Chance per fetch (per mille) that it fails.
    pub fetch_failure: u32,
    /// Chance per action list (per mille) that the node crashes in the middle of it.
    pub torn: u32,
    /// Most torn crashes in one simulation.
    pub max_torn: u32,
    /// How long a torn crash keeps a node down, in milliseconds.
    pub down_for: u64,
    /// From this time (milliseconds) on, no loss, duplicate, failed fetch or torn crash.
    pub heal_at: u64,
    /// Network partitions between two nodes, by name, over a time window.
    pub partitions: Vec<Partition>,
    /// Crashes of a node, by name, at a time, for a while.
    pub crashes: Vec<Crash>,
    /// How many nodes misbehave (the last node of each of the first orgs): they do their
    /// honest part, and until [`Faults::heal_at`] they also forge receipts for stages
    /// their org does not own, offer stages with forged chains, replay offers and receipts
    /// they saw, and send receipts to nodes that did not give them the stage.
    pub hostile: usize,
    /// Time between two misdeeds of a hostile node: uniform in this range of milliseconds.
    pub mischief_every: (u64, u64),
    /// Whether hostile nodes also send receipts to nodes that gave the stage to nobody
    /// (stray receipts: see `docs/testnet.md`, an open gap the simulator finds).
    pub stray: bool,
}

/// Two nodes that cannot reach each other from `from` until `until` (milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// One node.
    pub a: String,
    /// The other node.
    pub b: String,
    /// Start of the partition.
    pub from: u64,
    /// End of the partition.
    pub until: u64,
}

/// A node that crashes at `at` and restarts `down_for` milliseconds later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crash {
    /// The node.
    pub node: String,
    /// When it crashes.
    pub at: u64,
    /// How long it stays down.
    pub down_for: u64,
}

/// How a run stands, as far as the simulator can see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Stages are still to run.
    Running,
    /// The last stage has a successful receipt.
    Finished,
    /// A handoff was rejected or expired.
    Failed {
        /// The stage that could not be handed off.
        stage: String,
        /// The reject code, or `None` when the offer expired.
        code: Option<RejectCode>,
        /// What the sender was told.
        message: String,
        /// What to do about it.
        hint: Option<String>,
    },
}

/// What the nodes said and did, for checking properties.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// Every offer persisted in an outbox: who sent it where, for which stage.
    pub offers: BTreeMap<HandoffId, OfferInfo>,
    /// Every answer a receiver sent (before the network had its way), per handoff id.
    pub replies: BTreeMap<HandoffId, Vec<Verdict>>,
    /// The answer each receiver persisted first, per handoff id: its decision.
    pub decisions: BTreeMap<HandoffId, Verdict>,
    /// What each sender's machine concluded about its offer, per handoff id, every time.
    pub outcomes: BTreeMap<HandoffId, Vec<SenderOutcome>>,
    /// Every stage started through a handoff.
    pub starts: Vec<Start>,
    /// Crashes per node name.
    pub crashes: BTreeMap<String, u32>,
    /// Messages put on the network, lost and duplicated.
    pub messages: (u64, u64, u64),
    /// Ends of stages the nodes vouched for to the run's other nodes (the stage-end
    /// relay, [`crate::relay`]): what they would publish on the run's gossip.
    pub relays: u64,
}

/// An offer as persisted by its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferInfo {
    /// The sending node.
    pub from: String,
    /// The receiving node.
    pub to: String,
    /// The run.
    pub run: String,
    /// The stage.
    pub stage: String,
}

/// What a sender concluded about an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderOutcome {
    /// Accepted by the owner.
    Accepted,
    /// Rejected by the owner.
    Rejected {
        /// Why.
        code: RejectCode,
        /// The message.
        message: String,
        /// The hint.
        hint: Option<String>,
    },
    /// No answer before the offer expired.
    Expired,
}

/// A stage started on a receiver through [`Action::StartStage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// The receiving node.
    pub node: String,
    /// The handoff id.
    pub id: HandoffId,
    /// The attempt.
    pub attempt: u32,
    /// The receiver's incarnation (how many times it had crashed before).
    pub epoch: u32,
}

/// Why [`Sim::run_until`] stopped before its predicate held.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// Nothing is left to happen.
    #[error("nothing left to do after {steps} steps, at {now} ms")]
    Stalled {
        /// Steps taken.
        steps: usize,
        /// The clock.
        now: u64,
    },
    /// The step limit was reached.
    #[error("step limit of {steps} reached at {now} ms")]
    StepLimit {
        /// Steps taken.
        steps: usize,
        /// The clock.
        now: u64,
    },
}

/// The simulation. See the [module docs](self).
pub struct Sim {
    config: SimConfig,
    now: u64,
    rng: Rng,
    /// The random numbers of the run's gossip (a stream of its own, so a seed plays the
    /// handoffs the same with or without it).
    gossip_rng: Rng,
    seq: u64,
    nodes: Vec<Node>,
    /// Node index by name, by node key, and the nodes of each org.
    by_name: HashMap<String, usize>,
    by_key: HashMap<KeyBytes, usize>,
    by_org: BTreeMap<String, Vec<usize>>,
    queue: BTreeMap<(u64, u64), Item>,
    runs: BTreeMap<String, RunInfo>,
    /// Runs scheduled with [`Sim::schedule_run`], started when their time comes.
    scheduled: Vec<Option<(usize, String)>>,
    torn: u32,
    trace: Trace,
    checks: Checks,
    log: Log,
    steps: u64,
    /// Runs that finished or failed.
    ended: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            orgs: vec!["dev".to_owned(), "ops".to_owned()],
            faults: Faults::default(),
            machine: Config {
                answer_timeout: 2_000,
                backoff_initial: 200,
                backoff_max: 5_000,
                receipt_timeout: 2_000,
                ..Config::default()
            },
            nodes_per_org: 1,
            offer_ttl: 3_600,
            stage_time: (100, 1_000),
            fetch_time: (10, 100),
        }
    }
}

impl Sim {
    /// A network of [`SimConfig::nodes_per_org`] nodes per org, each trusting every org
    /// (including its own) and letting every org hand it any stage with approved inline
    /// steps.
    pub fn new(config: SimConfig) -> Self {
        let orgs: Vec<(String, OrgKey)> = config
            .orgs
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), OrgKey::from_seed(&seed_bytes(0x10, i))))
            .collect();
        let per_org = config.nodes_per_org.max(1);
        let mut nodes = Vec::with_capacity(orgs.len() * per_org);
        for (i, (org, org_key)) in orgs.iter().enumerate() {
            let mut trust = TrustStore::new();
            for (other, other_key) in &orgs {
                // Org names come from the test; a bad one is a bug in the test.
                let _ = trust.pin_org(other, other_key.public_key(), START / 1000);
                // Its own org too: another node of it may hand it a stage of the run's
                // origin.
                let _ = trust.set_policy(other, open_policy());
            }
            for j in 0..per_org {
                let index = nodes.len();
                let key = NodeKey::from_seed(&seed_bytes(0x40, index));
                let name = format!("{org}-{}", j + 1);
                let cert = certificate(org_key, org, &name, &key);
                let hostile = j + 1 == per_org && i < config.faults.hostile;
                nodes.push(Node {
                    names: vec![org.clone(), name.clone()],
                    name,
                    org: org.clone(),
                    key,
                    cert,
                    trust: trust.clone(),
                    machine: None,
                    epoch: 0,
                    wake_at: None,
                    durable: Durable::default(),
                    running: BTreeSet::new(),
                    relays: crate::relay::Relays::default(),
                    followers: BTreeMap::new(),
                    hostile,
                    seen: Vec::new(),
                });
            }
        }
        let by_name = nodes
            .iter()
            .enumerate()
            .map(|(n, node)| (node.name.clone(), n))
            .collect();
        let by_key = nodes
            .iter()
            .enumerate()
            .map(|(n, node)| (KeyBytes(*node.key.public_key().as_bytes()), n))
            .collect();
        let mut by_org: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (n, node) in nodes.iter().enumerate() {
            by_org.entry(node.org.clone()).or_default().push(n);
        }
        let mut sim = Self {
            rng: Rng(config.seed),
            gossip_rng: Rng(crate::machine::mix64(config.seed ^ 0x676f_7373_6970)),
            config,
            now: START,
            seq: 0,
            nodes,
            by_name,
            by_key,
            by_org,
            queue: BTreeMap::new(),
            runs: BTreeMap::new(),
            scheduled: Vec::new(),
            torn: 0,
            trace: Trace::default(),
            checks: Checks::default(),
            log: Log::default(),
            steps: 0,
            ended: 0,
        };
        for n in 0..sim.nodes.len() {
            sim.boot(n);
            if sim.nodes[n].hostile {
                let at = sim.now + sim.rng.range(sim.config.faults.mischief_every);
                sim.schedule(at, Item::Mischief { node: n });
            }
        }
        for crash in sim.config.faults.crashes.clone() {
            if let Some(node) = sim.index(&crash.node) {
                sim.schedule(
                    crash.at,
                    Item::Crash {
                        node,
                        down_for: crash.down_for,
                    },
                );
            }
        }
        sim
    }

    /// Plans `ottofile` and starts a run of it at node `origin`; returns the run id.
    /// Every stage's inline definition is approved on the nodes that answer to its owner.
    pub fn start_run(&mut self, origin: &str, ottofile: &str) -> Result<String, String> {
        let n = self
            .index(origin)
            .ok_or_else(|| format!("no node {origin}"))?;
        self.start_run_at(n, ottofile)
    }

    /// Starts a run of `ottofile` at node `origin` at time `at` (milliseconds), or as soon
    /// as the clock gets there. A plan that does not plan is a [`Violation`] then.
    pub fn schedule_run(&mut self, origin: &str, ottofile: String, at: u64) -> Result<(), String> {
        let n = self
            .index(origin)
            .ok_or_else(|| format!("no node {origin}"))?;
        let index = self.scheduled.len();
        self.scheduled.push(Some((n, ottofile)));
        self.schedule(at, Item::StartRun { index });
        Ok(())
    }

    pub(crate) fn start_run_at(&mut self, n: usize, ottofile: &str) -> Result<String, String> {
        let planned = plan_text(
            &MemSource::new(),
            Path::new("Ottofile"),
            ottofile,
            &Facts::default(),
            &StepCatalog::builtins(),
            None,
        )
        .map_err(|failed| format!("{:?}", failed.diagnostics))?;
        let mut body = planned.plan.body;
        let origin = &self.nodes[n];
        let org_key = origin
            .trust
            .org(&origin.org)
            .map(|o| o.key)
            .ok_or_else(|| format!("node {} does not pin its own org", origin.name))?;
        let answers_to = [origin.org.clone()];
        let binding = bind_owners(
            &body,
            &origin.trust,
            &origin.org,
            &org_key,
            &origin.key.public_key(),
            &answers_to,
            &|_| None,
        );
        if !binding.unresolved.is_empty() {
            return Err(format!("no org for owners {:?}", binding.unresolved));
        }
        body.owners = binding.owners;
        let plan = Arc::new(Plan {
            body,
            provenance: Provenance::default(),
        });
        let run = format!("run-{:05}", self.runs.len() + 1);
        self.runs.insert(
            run.clone(),
            RunInfo {
                origin: n,
                plan: Arc::clone(&plan),
                signed: Vec::new(),
                succeeded: BTreeSet::new(),
                finished: false,
                failed: None,
            },
        );
        let now = self.now / 1000;
        for stage in &plan.body.stages {
            let digest = definition_digest(&plan.body, stage);
            for owner in self.owners_of(&run, stage.owner_name()) {
                self.nodes[owner].trust.approve(&digest, now);
            }
        }
        let who = self.nodes[n].name.clone();
        self.log(format!("{who} starts {run}"));
        self.nodes[n]
            .durable
            .runs
            .insert(run.clone(), RunRecord::new(plan));
        self.advance(n);
        Ok(run)
    }

    /// Handles the next thing due; `false` when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        let Some(((at, _), item)) = self.queue.pop_first() else {
            return false;
        };
        self.steps += 1;
        self.now = self.now.max(at);
        self.process(item);
        true
    }

    /// Steps until `done` holds, at most `max_steps` times; returns the steps taken.
    pub fn run_until(
        &mut self,
        mut done: impl FnMut(&Self) -> bool,
        max_steps: usize,
    ) -> Result<usize, SimError> {
        for steps in 0..max_steps {
            if done(self) {
                return Ok(steps);
            }
            if !self.step() {
                return if done(self) {
                    Ok(steps)
                } else {
                    Err(SimError::Stalled {
                        steps,
                        now: self.now,
                    })
                };
            }
        }
        if done(self) {
            Ok(max_steps)
        } else {
            Err(SimError::StepLimit {
                steps: max_steps,
                now: self.now,
            })
        }
    }

    /// The clock, in milliseconds.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// How run `run` stands.
    pub fn run_state(&self, run: &str) -> RunState {
        match self.runs.get(run) {
            Some(info) if info.failed.is_some() => info.failed.clone().unwrap_or(RunState::Running),
            Some(info) if info.finished => RunState::Finished,
            _ => RunState::Running,
        }
    }

    /// The first broken invariant, if one broke: see [`Violation`].
    pub fn violation(&self) -> Option<&Violation> {
        self.checks.violation.as_ref()
    }

    /// How many runs finished: every stage succeeded and the chain verified.
    pub fn finished_runs(&self) -> usize {
        self.runs.values().filter(|info| info.finished).count()
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The last lines of the simulation's trace, oldest first.
    pub fn recent(&self) -> Vec<String> {
        self.log.recent.iter().cloned().collect()
    }

    /// Gives every line of the trace, as it happens, to `observer` (to print it).
    pub fn observe(&mut self, observer: Observer) {
        self.log.observer = Some(observer);
    }

    /// Checks what must hold once everything settled after the faults healed: every run
    /// finished, and nothing is left in flight; a [`Violation`] says what did not.
    pub fn check_settled(&mut self) -> Option<&Violation> {
        if self.checks.violation.is_none() {
            let failed = self.runs.iter().find_map(|(run, info)| match &info.failed {
                Some(state) => Some(format!("run {run} failed: {state:?}")),
                None if !info.finished => {
                    let origin = &self.nodes[info.origin].name;
                    Some(format!(
                        "run {run} (started on {origin}) never finished: a handoff was lost"
                    ))
                }
                None => None,
            });
            let stuck = || {
                self.nodes.iter().find_map(|node| {
                    if node.machine.is_none() {
                        return Some(format!("{} is still down", node.name));
                    }
                    if let Some(id) = node.durable.outbox.keys().next() {
                        return Some(format!("{} still has offer {id} in its outbox", node.name));
                    }
                    node.durable
                        .inbox
                        .iter()
                        .find(|(_, e)| !matches!(e.state, InboxState::Done | InboxState::Rejected))
                        .map(|(id, e)| {
                            format!(
                                "{} holds offer {id} in state {:?}: accepted but never done",
                                node.name, e.state
                            )
                        })
                })
            };
            if let Some(what) = failed.or_else(stuck) {
                self.violate(what);
            }
        }
        self.checks.violation.as_ref()
    }

    /// The plan of run `run`.
    pub fn plan(&self, run: &str) -> Option<&Plan> {
        self.runs.get(run).map(|info| info.plan.as_ref())
    }

    /// Every receipt any node signed for run `run`, in signing order.
    pub fn receipts(&self, run: &str) -> Vec<Envelope> {
        self.runs
            .get(run)
            .map(|info| info.signed.clone())
            .unwrap_or_default()
    }

    /// Every node's certificate.
    pub fn certificates(&self) -> Vec<Envelope> {
        self.nodes.iter().map(|node| node.cert.clone()).collect()
    }

    /// A trust store that pins every org: what an auditor checks receipt chains against.
    pub fn auditor_trust(&self) -> TrustStore {
        let mut trust = TrustStore::new();
        for (i, org) in self.config.orgs.iter().enumerate() {
            let key = OrgKey::from_seed(&seed_bytes(0x10, i)).public_key();
            let _ = trust.pin_org(org, key, START / 1000);
        }
        trust
    }

    /// The trust store of node `node`, to change policies and approvals.
    pub fn trust_mut(&mut self, node: &str) -> Option<&mut TrustStore> {
        let n = self.index(node)?;
        Some(&mut self.nodes[n].trust)
    }

    /// The machine of node `node`, while it is up.
    pub fn machine(&self, node: &str) -> Option<&Machine> {
        self.index(node)
            .and_then(|n| self.nodes[n].machine.as_ref())
    }

    /// The node names, in org order.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.name.clone()).collect()
    }

    /// What happened so far.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Whether everything settled: every node up, every outbox empty, every received offer
    /// rejected or done, no stage running, no message in flight.
    pub fn is_quiet(&self) -> bool {
        self.queue.values().all(|item| {
            matches!(
                item,
                Item::Crash { .. } | Item::Wake { .. } | Item::Mischief { .. }
            )
        }) && self.nodes.iter().all(|node| {
            node.machine.is_some()
                && node.running.is_empty()
                && node.durable.outbox.is_empty()
                && node
                    .durable
                    .inbox
                    .values()
                    .all(|e| matches!(e.state, InboxState::Done | InboxState::Rejected))
        })
    }

    /// Whether every run started is finished and everything settled.
    pub fn all_finished(&self) -> bool {
        self.runs
            .keys()
            .all(|run| self.run_state(run) == RunState::Finished)
            && self.is_quiet()
    }

    /// The run ids started, in order.
    pub fn runs(&self) -> Vec<String> {
        self.runs.keys().cloned().collect()
    }
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("now", &self.now)
            .field("nodes", &self.node_names())
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}
