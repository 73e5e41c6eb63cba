//! The simulator at scale: many orgs of many nodes, many runs of random plans, a faulty
//! network, crashes and hostile nodes, every invariant of [`Violation`] checked on the
//! step that could break it. What `otto-testnet sim` runs.
//!
//! Everything comes from one seed: the plans, where each run starts and when, the faults.
//! The same seed and sizes replay the same simulation step by step, so a failure is
//! reproduced by running it again (with [`Sim::observe`] to see every step).
#![warn(clippy::unwrap_used)]

use super::net::Rng;
use super::{Crash, Faults, Partition, START, Sim, SimConfig, Violation};
use crate::machine::{Config, Verdict, mix64};

/// What to simulate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scale {
    /// How many orgs.
    pub orgs: usize,
    /// How many nodes in all (spread evenly over the orgs, at least one each).
    pub nodes: usize,
    /// How many runs.
    pub runs: usize,
    /// The seed of everything random.
    pub seed: u64,
    /// The faults.
    pub faults: FaultSpec,
    /// The most steps before the simulation counts as stuck.
    pub max_steps: u64,
}

/// The faults of a scaled simulation, as `otto-testnet sim --faults` writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec {
    /// Chance per message (per mille) that it is lost.
    pub loss: u32,
    /// Chance per message (per mille) that it arrives twice.
    pub duplicate: u32,
    /// Message latency, uniform in this range of milliseconds (so messages overtake each
    /// other: reordering).
    pub latency: (u64, u64),
    /// Chance per action list (per mille) that the node crashes half-way through it.
    pub torn: u32,
    /// Crashes of random nodes at random times, each down for up to 10 s.
    pub crashes: usize,
    /// Partitions between random pairs of nodes, each up to 20 s.
    pub partitions: usize,
    /// Hostile nodes.
    pub hostile: usize,
    /// Whether hostile nodes also send stray receipts, to nodes that gave the stage to
    /// nobody.
    pub stray: bool,
}

/// What a scaled simulation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Steps taken.
    pub steps: u64,
    /// Simulated time, milliseconds.
    pub sim_ms: u64,
    /// Runs started.
    pub runs: usize,
    /// Runs whose every stage succeeded (and whose chain verified).
    pub finished: usize,
    /// Offers sent (distinct handoffs).
    pub offers: usize,
    /// Offers accepted: the handoffs.
    pub handoffs: usize,
    /// Offers refused, hostile ones among them.
    pub refused: usize,
    /// Messages sent, lost and duplicated.
    pub messages: (u64, u64, u64),
    /// Crashes.
    pub crashes: u32,
    /// Ends of stages nodes vouched for (the stage-end relay).
    pub relays: u64,
    /// The first broken invariant.
    pub violation: Option<Violation>,
    /// The last lines of the trace.
    pub recent: Vec<String>,
}

impl Default for FaultSpec {
    /// A lossy network: 2 % loss, 2 % duplicates, 5–80 ms latency, 0.5 % torn crashes.
    fn default() -> Self {
        Self {
            loss: 20,
            duplicate: 20,
            latency: (5, 80),
            torn: 5,
            crashes: 0,
            partitions: 0,
            hostile: 0,
            stray: false,
        }
    }
}

impl FaultSpec {
    /// No faults at all, 5–80 ms latency.
    pub fn none() -> Self {
        Self {
            loss: 0,
            duplicate: 0,
            torn: 0,
            ..Self::default()
        }
    }

    /// The default faults for `nodes` nodes: [`FaultSpec::default`] with a crash and a
    /// partition per 20 nodes and a hostile node per 50 (at least one of each), whose
    /// misdeeds include stray receipts.
    pub fn for_nodes(nodes: usize) -> Self {
        Self {
            crashes: (nodes / 20).max(1),
            partitions: (nodes / 20).max(1),
            hostile: (nodes / 50).max(1),
            stray: true,
            ..Self::default()
        }
    }

    /// Reads `none`, or comma-separated `key=value` over `base`: `loss=PERMILLE`,
    /// `dup=PERMILLE`, `torn=PERMILLE`, `latency=LO-HI` (ms), `crashes=N`,
    /// `partitions=N`, `hostile=N`, `stray=0|1`.
    pub fn parse(text: &str, base: Self) -> Result<Self, String> {
        if text.trim() == "none" {
            return Ok(Self::none());
        }
        let mut spec = base;
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("fault {part:?}: expected KEY=VALUE"))?;
            let number = |v: &str| -> Result<u64, String> {
                v.parse::<u64>()
                    .map_err(|_| format!("fault {key}: {v:?} is not a whole number"))
            };
            let permille = |v: &str| -> Result<u32, String> {
                let n = number(v)?;
                u32::try_from(n)
                    .ok()
                    .filter(|n| *n <= 1000)
                    .ok_or_else(|| format!("fault {key}: {n} is not a per-mille chance (0-1000)"))
            };
            let count = |v: &str| -> Result<usize, String> {
                usize::try_from(number(v)?).map_err(|_| format!("fault {key}: too large"))
            };
            match key {
                "loss" => spec.loss = permille(value)?,
                "dup" => spec.duplicate = permille(value)?,
                "torn" => spec.torn = permille(value)?,
                "crashes" => spec.crashes = count(value)?,
                "partitions" => spec.partitions = count(value)?,
                "hostile" => spec.hostile = count(value)?,
                "stray" => spec.stray = number(value)? != 0,
                "latency" => {
                    let (lo, hi) = value
                        .split_once('-')
                        .ok_or_else(|| format!("fault latency: expected LO-HI, got {value:?}"))?;
                    let (lo, hi) = (number(lo)?, number(hi)?);
                    if lo > hi {
                        return Err(format!("fault latency: {lo} is more than {hi}"));
                    }
                    spec.latency = (lo, hi);
                }
                other => {
                    return Err(format!(
                        "unknown fault {other:?} (known: loss, dup, torn, latency, crashes, \
                         partitions, hostile, stray)"
                    ));
                }
            }
        }
        Ok(spec)
    }
}

impl std::fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "loss={},dup={},torn={},latency={}-{},crashes={},partitions={},hostile={},stray={}",
            self.loss,
            self.duplicate,
            self.torn,
            self.latency.0,
            self.latency.1,
            self.crashes,
            self.partitions,
            self.hostile,
            u8::from(self.stray)
        )
    }
}

impl Scale {
    /// How long runs keep starting: 10 ms per run, at least 10 s.
    fn spread(&self) -> u64 {
        (self.runs as u64 * 10).max(10_000)
    }

    /// Builds the network and schedules the runs and faults, without stepping.
    pub fn build(&self) -> Result<Sim, String> {
        if self.orgs == 0 || self.nodes < self.orgs {
            return Err(format!(
                "{} nodes cannot make {} orgs: every org needs a node",
                self.nodes, self.orgs
            ));
        }
        if self.faults.hostile > self.orgs {
            return Err(format!(
                "{} hostile nodes in {} orgs: at most one per org",
                self.faults.hostile, self.orgs
            ));
        }
        let mut rng = Rng(mix64(self.seed ^ 0x5ca1e));
        let orgs: Vec<String> = (1..=self.orgs).map(|i| format!("org{i:03}")).collect();
        let per_org = self.nodes / self.orgs;
        let spread = self.spread();
        let heal = START + spread + 30_000;
        let names: Vec<String> = orgs
            .iter()
            .flat_map(|org| (1..=per_org).map(move |j| format!("{org}-{j}")))
            .collect();
        let pick = |rng: &mut Rng, len: usize| -> usize {
            usize::try_from(rng.next() % (len as u64).max(1)).unwrap_or(0)
        };
        let mut crashes = Vec::new();
        for _ in 0..self.faults.crashes {
            crashes.push(Crash {
                node: names[pick(&mut rng, names.len())].clone(),
                at: START + rng.range((1_000, spread)),
                down_for: rng.range((500, 10_000)),
            });
        }
        let mut partitions = Vec::new();
        for _ in 0..self.faults.partitions {
            let from = START + rng.range((1_000, spread));
            partitions.push(Partition {
                a: names[pick(&mut rng, names.len())].clone(),
                b: names[pick(&mut rng, names.len())].clone(),
                from,
                until: from + rng.range((1_000, 20_000)),
            });
        }
        let config = SimConfig {
            seed: self.seed,
            orgs: orgs.clone(),
            nodes_per_org: per_org,
            faults: Faults {
                latency: self.faults.latency,
                loss: self.faults.loss,
                duplicate: self.faults.duplicate,
                fetch_failure: self.faults.loss,
                torn: self.faults.torn,
                max_torn: u32::MAX,
                down_for: 2_000,
                heal_at: heal,
                partitions,
                crashes,
                hostile: self.faults.hostile,
                mischief_every: (200, 2_000),
                stray: self.faults.stray,
            },
            machine: Config {
                answer_timeout: 2_000,
                backoff_initial: 200,
                backoff_max: 5_000,
                receipt_timeout: 2_000,
                ..Config::default()
            },
            offer_ttl: 3_600,
            stage_time: (100, 2_000),
            fetch_time: (10, 100),
        };
        let mut sim = Sim::new(config);
        for _ in 0..self.runs {
            let origin = &names[pick(&mut rng, names.len())];
            let text = random_plan(&mut rng, &orgs);
            let at = START + rng.range((0, spread));
            sim.schedule_run(origin, text, at)?;
        }
        Ok(sim)
    }

    /// Builds and runs the simulation until every run ended and everything settled, an
    /// invariant broke, or [`Scale::max_steps`] passed.
    pub fn run(&self) -> Result<Report, String> {
        let mut sim = self.build()?;
        Ok(self.drive(&mut sim))
    }

    /// Runs a simulation [`Scale::build`] made (see [`Scale::run`]).
    pub fn drive(&self, sim: &mut Sim) -> Report {
        let heal = START + self.spread() + 30_000;
        loop {
            if sim.violation().is_some() {
                break;
            }
            if sim.steps() >= self.max_steps {
                let open = self.runs.saturating_sub(sim.ended);
                sim.violate(format!(
                    "step limit of {} reached with {open} runs not ended",
                    self.max_steps
                ));
                break;
            }
            if sim.ended == self.runs
                && sim.now() >= heal
                && sim.steps().is_multiple_of(256)
                && sim.is_quiet()
            {
                break;
            }
            if !sim.step() {
                break;
            }
        }
        if sim.violation().is_none() {
            sim.check_settled();
        }
        let trace = sim.trace();
        let handoffs = trace
            .decisions
            .values()
            .filter(|v| matches!(v, Verdict::Accept(_)))
            .count();
        Report {
            seed: self.seed,
            steps: sim.steps(),
            sim_ms: sim.now().saturating_sub(START),
            runs: self.runs,
            finished: sim.finished_runs(),
            offers: trace.offers.len(),
            handoffs,
            refused: trace.decisions.len() - handoffs,
            messages: trace.messages,
            crashes: trace.crashes.values().sum(),
            relays: trace.relays,
            violation: sim.violation().cloned(),
            recent: sim.recent(),
        }
    }
}

/// A random plan: two to five stages, each owned by a random org or by the node that
/// starts the run, one after the other, the last two sometimes in parallel. (A stage
/// after a parallel group, a join, would be moved on by the node that ran the later
/// branch, which learns of the other branch's receipt only from the run's gossip: the
/// simulator plays the handoffs and only the gossip a node that follows a run again gets, so
/// its plans have no joins.)
fn random_plan(rng: &mut Rng, orgs: &[String]) -> String {
    let stages = 2 + usize::try_from(rng.next() % 4).unwrap_or(0);
    let parallel = rng.next().is_multiple_of(3);
    let mut text = String::new();
    for i in 0..stages {
        let owner = if rng.next().is_multiple_of(4) {
            String::new()
        } else {
            let org = &orgs[usize::try_from(rng.next() % orgs.len() as u64).unwrap_or(0)];
            format!("owner = '{org}' ")
        };
        let stage = format!(
            "stage('S{i}') {{ {owner}steps {{ sh 'make step{}' }} }}\n",
            i % 4
        );
        match (parallel, stages - i) {
            (true, 2) => {
                text.push_str("parallel {\n");
                text.push_str(&stage);
            }
            (true, 1) => {
                text.push_str(&stage);
                text.push_str("}\n");
            }
            _ => text.push_str(&stage),
        }
    }
    text
}
