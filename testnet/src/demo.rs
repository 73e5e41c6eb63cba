//! `otto-testnet demo`: two organisations deliver the sample application together, on
//! real processes, and the timeline shows who did what.
//!
//! ```text
//!   acme-dev                                   acme-ops
//!   ┌────────────────────┐   invite / join     ┌──────────────────────────────┐
//!   │ dev-1 (answers dev)│ ◀────────────────── │ ops-1 (answers ops)          │
//!   │  Build, Test       │ ── signed offer ──▶ │  Deploy staging   (poll gate)│
//!   │                    │ ◀── receipts ────── │  Deploy production (webhook) │
//!   └────────────────────┘                     │  secret DEPLOY_TOKEN         │
//!                                              └──────────────────────────────┘
//! ```
//!
//! The first run is refused by ops-1 (it has not approved dev's inline steps); the demo
//! approves the digest the refusal names, as ops would after reading them, and runs again.
//! It calls the webhook as the production monitor would, then checks the whole chain with
//! `otto verify`, exports the attestations and checks them offline with only the two org
//! keys, and checks that ops's secret never reached dev.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use serde_json::Value;

use crate::net::COMMAND_LIMIT;
use crate::timeline::{Event, Fact, Timeline, Watch, now_ms};
use crate::{Bins, Net, NodeId, bins, human, sample, webhook};

/// What `otto-testnet demo` is told.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where `otto`, `otto-node` and `otto-agent` are; default: next to this program.
    pub bin_dir: Option<PathBuf>,
    /// The work directory (new or empty); default: a new temporary directory, kept.
    pub dir: Option<PathBuf>,
    /// Whether to run cargo to build the binaries next to this program first, when it
    /// runs from this workspace's target directory and no `bin_dir` is given.
    pub build: bool,
    /// Whether to keep both nodes running once every check held, until SIGINT or
    /// SIGTERM: the login URLs of their web UI are printed and `nodes.json` is written
    /// to the work directory.
    pub keep: bool,
}

/// How the demo ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The work directory: homes, node logs, the sample and the attestations.
    pub dir: PathBuf,
    /// The executables it ran.
    pub bins: Bins,
    /// The checks, each with whether it held.
    pub checks: Vec<(String, bool)>,
}

impl Outcome {
    /// Whether every check held.
    pub fn held(&self) -> bool {
        self.checks.iter().all(|(_, ok)| *ok)
    }
}

/// How long one run may take from its start to its end on both nodes.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// How often the demo looks at the nodes.
const TICK: Duration = Duration::from_millis(150);

/// How many runs the demo starts before it gives up on getting one accepted.
const MAX_RUNS: usize = 3;

/// The invite ops-1 gives acme-dev: hand ops its `Deploy*` stages, for staging and
/// production, with inline steps once ops approved them, which may use ops's
/// `DEPLOY_TOKEN` and no other secret.
const INVITE: &[&str] = &[
    "--role",
    "deploy",
    "--stages",
    "Deploy*",
    "--envs",
    "staging,production",
    "--definitions",
    "approved",
    "--secrets",
    "DEPLOY_TOKEN",
];

/// Runs the demo, printing its timeline on standard output. Fails on what stopped it
/// (a node that exited, a wait that ran out); otherwise the outcome says which checks
/// held.
pub fn run(options: &Options) -> anyhow::Result<Outcome> {
    let bins = find_bins(options)?;
    let dir = work_dir(options.dir.as_deref())?;
    println!("otto-testnet demo: two orgs deliver one application across their own nodes");
    println!("  work dir  {}", dir.display());
    println!("  binaries  {}", bins.dir.display());
    let result = Demo::set_up(&dir, bins.clone()).and_then(|mut demo| {
        demo.keep = options.keep;
        let mut checks = demo.deliver()?;
        if demo.keep && checks.iter().all(|(_, held)| *held) {
            checks.push(demo.keep_running()?);
        }
        Ok(checks)
    });
    if result.is_err() {
        eprintln!(
            "the nodes' logs are in {} (dev-1.log, ops-1.log)",
            dir.display()
        );
    }
    result.map(|checks| Outcome { dir, bins, checks })
}

/// The net, its two nodes and what the demo remembers while it goes.
struct Demo {
    net: Net,
    dev: NodeId,
    ops: NodeId,
    tl: Timeline,
    app: PathBuf,
    secret: String,
    /// The node each stage owner name stands for.
    owners: BTreeMap<String, NodeId>,
    /// Whether the nodes keep running after the checks held (`--keep`).
    keep: bool,
}

/// What one run came to.
struct Ended {
    run: String,
    /// The final state on each node that knows the run.
    states: BTreeMap<String, String>,
    /// Refusals: the stage, the refusing node and the definition digest it names.
    refusals: Vec<(String, String, Option<String>)>,
}

impl Demo {
    fn set_up(dir: &Path, bins: Bins) -> anyhow::Result<Self> {
        let tl = Timeline::new();
        tl.heading("setup");
        let mut net = Net::new(dir, bins)?;
        let dev = net.add("acme-dev", "dev-1", &["dev"])?;
        tl.say(
            "dev-1",
            &format!(
                "otto-node init: node dev-1 of org acme-dev, answers to 'dev' (org key {})",
                short_key(&net[dev].org_key)
            ),
        );
        let ops = net.add("acme-ops", "ops-1", &["ops"])?;
        tl.say(
            "ops-1",
            &format!(
                "otto-node init: node ops-1 of org acme-ops, answers to 'ops' (org key {})",
                short_key(&net[ops].org_key)
            ),
        );
        net.start_all()?;
        for id in [dev, ops] {
            let node = &net[id];
            tl.say(
                &node.name,
                &format!(
                    "otto-node start: pid {}, API {}, log {}",
                    node.pid().unwrap_or_default(),
                    node.api_addr().unwrap_or_default(),
                    node.log.display()
                ),
            );
        }
        net.connect(ops, dev, INVITE, "ops")?;
        tl.say(
            "ops-1",
            "otto-node invite: acme-dev may hand ops-1 its Deploy* stages for staging and \
             production, running inline steps only once ops-1 approved them, with no \
             secret but DEPLOY_TOKEN",
        );
        tl.say(
            "dev-1",
            "otto-node join TOKEN --alias ops: both orgs pin each other's org key",
        );
        let secret = format!(
            "ops-secret-{:x}{:x}",
            now_ms(),
            std::process::id().wrapping_mul(2_654_435_761)
        );
        let set = net[ops]
            .otto_with_input(&["secrets", "set", "DEPLOY_TOKEN"], Some(secret.as_bytes()))?;
        if !set.status.success() {
            bail!(
                "otto secrets set DEPLOY_TOKEN on ops-1 failed: {}",
                String::from_utf8_lossy(&set.stderr).trim()
            );
        }
        tl.say(
            "ops-1",
            "otto secrets set DEPLOY_TOKEN: ops's deploy credential, kept in ops-1's vault",
        );
        let app = dir.join("shop");
        sample::write_to(&app)?;
        tl.say(
            "dev-1",
            &format!(
                "the sample application shop {} is in {} (Ottofile: Build, Test on dev; \
                 Deploy staging, Deploy production on ops)",
                sample::version(),
                app.display()
            ),
        );
        let owners = BTreeMap::from([("dev".to_owned(), dev), ("ops".to_owned(), ops)]);
        Ok(Self {
            net,
            dev,
            ops,
            tl,
            app,
            secret,
            owners,
            keep: false,
        })
    }

    /// Runs the pipeline until a run is not refused, then checks what it left behind.
    fn deliver(&mut self) -> anyhow::Result<Vec<(String, bool)>> {
        let mut ended = None;
        for n in 1..=MAX_RUNS {
            let started = now_ms();
            let run = self.net[self.dev]
                .otto_ok(&["run", &self.app.to_string_lossy(), "--detach"])?
                .trim()
                .to_owned();
            self.tl.heading(&format!(
                "run {n}: dev-1 starts the pipeline shop (otto run --detach → {run})"
            ));
            let this = self.watch(&run, started)?;
            if this.refusals.is_empty() {
                ended = Some(this);
                break;
            }
            for (stage, by, digest) in &this.refusals {
                let Some(digest) = digest else {
                    bail!("{by} refused {stage} and named nothing to approve");
                };
                let id = self.node_named(by)?;
                self.net[id].otto_node_ok(&["approve", digest])?;
                self.tl.say(
                    by,
                    &format!(
                        "ops approves dev's steps for {stage} by the digest the refusal \
                         names: otto-node approve {digest}"
                    ),
                );
            }
        }
        let Some(ended) = ended else {
            bail!("every one of {MAX_RUNS} runs was refused");
        };
        self.check(&ended)
    }

    /// Follows a run started at `started` (ms since the epoch) on both nodes to its end,
    /// printing the timeline, and calls webhook gates back as the production monitor
    /// would.
    fn watch(&mut self, run: &str, started: u64) -> anyhow::Result<Ended> {
        let owners: Vec<(&str, &str)> = self
            .owners
            .iter()
            .map(|(owner, id)| (owner.as_str(), self.net[*id].name.as_str()))
            .collect();
        let mut watch = Watch::new(&self.net[self.dev].name, &owners);
        let mut logs: HashMap<(NodeId, String), Log> = HashMap::new();
        let mut called = HashSet::new();
        let mut refusals = Vec::new();
        let deadline = Instant::now() + RUN_LIMIT;
        let mut looked = started;
        // Facts seen but not printed yet: a fact is printed once every node has been
        // looked at after it happened, so one node's news never jumps ahead of another's.
        let mut pending: Vec<(NodeId, Fact)> = Vec::new();
        // The nodes whose accept of a handed-off stage was told.
        let mut told: HashSet<String> = HashSet::new();
        loop {
            let tick = now_ms();
            self.net[self.dev].check_running()?;
            self.net[self.ops].check_running()?;
            let mut facts = Vec::new();
            let mut states = BTreeMap::new();
            let mut ops_knows = false;
            for id in [self.dev, self.ops] {
                let node = &self.net[id];
                let status = match node.otto_json(&["status", run]) {
                    Ok(status) => status,
                    // The owner knows the run only once it accepted a stage of it.
                    Err(_) if id == self.ops => continue,
                    Err(e) => return Err(e.into()),
                };
                ops_knows |= id == self.ops;
                states.insert(node.name.clone(), text(&status["run"]["state"]));
                facts.extend(watch.news(&node.name, &status).into_iter().map(|f| (id, f)));
                self.fetch_logs(id, run, &status, &mut logs)?;
            }
            // A fact happened since the last look began. A node's time before that is not
            // precise (a stage run elsewhere is timed by its runner's clock, and an older
            // runner's receipt gives whole seconds): such a fact is placed when it was
            // seen, so the timeline stays in order.
            let now = now_ms();
            for (_, fact) in &mut facts {
                if !(looked..=now).contains(&fact.at_ms) {
                    fact.at_ms = now;
                }
            }
            looked = tick;
            pending.extend(facts);
            order(&mut pending);
            let ended = |name: &str| {
                states
                    .get(name)
                    .is_some_and(|s| ["succeeded", "failed", "cancelled"].contains(&s.as_str()))
            };
            let done = ended("dev-1") && (!ops_knows || ended("ops-1"));
            // Every node was looked at after `tick`: what happened before it is complete.
            // A node that was handed a stage tells nothing before the accept is told.
            let horizon = if done { u64::MAX } else { tick };
            let mut ready = Vec::new();
            let mut queue = std::mem::take(&mut pending);
            let mut next = 0;
            while let Some((id, fact)) = queue.get(next).cloned() {
                next += 1;
                if fact.at_ms > horizon || !(done || id == self.dev || told.contains(&fact.node)) {
                    pending.push((id, fact));
                    continue;
                }
                let accepted_by = match &fact.event {
                    Event::Accepted { by, .. } => Some(by.clone()),
                    _ => None,
                };
                ready.push((id, fact));
                if let Some(by) = accepted_by {
                    told.insert(by.clone());
                    // The receipts the offer carried, as the owner recorded them, come
                    // with the accept: the owner has them from that moment on. What was
                    // held back for the accept is looked at again.
                    let later = queue.split_off(next);
                    for (id, f) in pending.drain(..).chain(later).collect::<Vec<_>>() {
                        if f.node == by && matches!(f.event, Event::Receipt { .. }) {
                            ready.push((id, f));
                        } else {
                            queue.push((id, f));
                        }
                    }
                }
            }
            for (id, fact) in &ready {
                self.show(*id, fact, &mut logs);
                if let Event::Refused {
                    stage,
                    by,
                    hint,
                    reason,
                } = &fact.event
                {
                    let digest = digest_in(hint.as_deref().unwrap_or(reason));
                    refusals.push((stage.clone(), by.clone(), digest));
                }
                if let Event::GateWaiting { stage, kind, .. } = &fact.event
                    && kind == "webhook"
                    && called.insert(stage.clone())
                {
                    self.call_webhook(*id, run, stage, &mut logs)?;
                }
            }
            // What a stage printed since, unless a fact of it waits to be printed first.
            for ((id, stage), log) in &mut logs {
                let name = &self.net[*id].name;
                if !pending
                    .iter()
                    .any(|(_, f)| &f.node == name && stage_of(&f.event) == Some(stage.as_str()))
                {
                    self.tl.detail(&log.take_new(false));
                }
            }
            if done {
                return Ok(Ended {
                    run: run.to_owned(),
                    states,
                    refusals,
                });
            }
            if Instant::now() > deadline {
                bail!(
                    "gave up after {} waiting for run {run} to end on dev-1 and ops-1 \
                     (states now: {states:?})",
                    human(RUN_LIMIT)
                );
            }
            thread::sleep(TICK);
        }
    }

    /// Prints a fact, with the log lines of its stage around it: what the stage printed
    /// before it ended or reached a gate comes first, what it prints once running after.
    fn show(&self, id: NodeId, fact: &Fact, logs: &mut HashMap<(NodeId, String), Log>) {
        let stage = match &fact.event {
            Event::Stage { stage, .. }
            | Event::GateWaiting { stage, .. }
            | Event::GateClosed { stage, .. } => Some(stage.clone()),
            _ => None,
        };
        let running = matches!(&fact.event, Event::Stage { state, .. } if state == "running");
        let gate = matches!(&fact.event, Event::GateWaiting { .. });
        let log = stage.and_then(|s| logs.get_mut(&(id, s)));
        match (log, running) {
            (Some(log), false) => {
                self.tl.detail(&log.take_new(gate));
                self.print(fact, log);
            }
            (Some(log), true) => {
                self.print(fact, log);
                self.tl.detail(&log.take_new(true));
            }
            (None, _) => self.tl.fact(fact),
        }
    }

    /// Prints a fact; a gate that waits is described the way its node's log does.
    fn print(&self, fact: &Fact, log: &Log) {
        match (&fact.event, log.gate_line()) {
            (Event::GateWaiting { stage, phase, .. }, Some(line)) => self.tl.at(
                fact.at_ms,
                &fact.node,
                &format!("{stage}: waits at its {phase} gate: {line}"),
            ),
            _ => self.tl.fact(fact),
        }
    }

    /// Reads the log of every stage a node runs that is running, waiting or just ended.
    fn fetch_logs(
        &self,
        id: NodeId,
        run: &str,
        status: &Value,
        logs: &mut HashMap<(NodeId, String), Log>,
    ) -> anyhow::Result<()> {
        for stage in status["stages"].as_array().into_iter().flatten() {
            let owner = stage["owner"].as_str().unwrap_or("dev");
            if self.owners.get(owner) != Some(&id) {
                continue;
            }
            let state = text(&stage["state"]);
            let name = text(&stage["id"]);
            let log = logs
                .entry((id, name.clone()))
                .or_insert_with(|| Log::new(&name));
            let active = ["running", "waiting_gate"].contains(&state.as_str());
            let ended = ["succeeded", "failed", "cancelled"].contains(&state.as_str())
                && stage["attempts"].as_array().is_some_and(|a| !a.is_empty());
            if active || (ended && !log.complete) {
                let out = self.net[id].otto_ok(&["logs", run, &name])?;
                log.lines = out.lines().map(str::to_owned).collect();
                log.complete = ended;
            }
        }
        Ok(())
    }

    /// Calls the webhook URL the stage's log shows, as the system that checks the
    /// deployment would, trusting only the node's CA.
    fn call_webhook(
        &self,
        id: NodeId,
        run: &str,
        stage: &str,
        logs: &mut HashMap<(NodeId, String), Log>,
    ) -> anyhow::Result<()> {
        let node = &self.net[id];
        let deadline = Instant::now() + COMMAND_LIMIT;
        let url = loop {
            let found = logs
                .get(&(id, stage.to_owned()))
                .and_then(Log::gate_line)
                .and_then(|line| {
                    line.split_whitespace()
                        .find(|w| w.starts_with("https://"))
                        .map(str::to_owned)
                });
            if let Some(url) = found {
                break url;
            }
            if Instant::now() > deadline {
                bail!("no webhook URL in the log of {stage} on {}", node.name);
            }
            thread::sleep(TICK);
            let out = node.otto_ok(&["logs", run, stage])?;
            let log = logs
                .entry((id, stage.to_owned()))
                .or_insert_with(|| Log::new(stage));
            log.lines = out.lines().map(str::to_owned).collect();
        };
        let answer = webhook::post(
            &node.ca_pem()?,
            &url,
            "{\"status\":\"healthy\"}",
            COMMAND_LIMIT,
        )?;
        self.tl.say(
            "monitor",
            &format!(
                "production looks healthy: POST {} (TLS checked against {}'s CA) → {} {}",
                short_url(&url),
                node.name,
                answer.status,
                answer.body.trim()
            ),
        );
        if answer.status != 200 {
            bail!("the webhook answered {}: {}", answer.status, answer.body);
        }
        Ok(())
    }

    /// The checks after the run: both views, `otto verify`, the exported bundle offline,
    /// the secret, a clean stop.
    fn check(&mut self, ended: &Ended) -> anyhow::Result<Vec<(String, bool)>> {
        let run = ended.run.as_str();
        let mut checks = Vec::new();
        let state = |name: &str| ended.states.get(name).map_or("unknown", String::as_str);
        let succeeded = state("dev-1") == "succeeded" && state("ops-1") == "succeeded";
        checks.push((
            if succeeded {
                format!("run {run} succeeded on dev-1 and on ops-1")
            } else {
                format!(
                    "run {run}: {} on dev-1, {} on ops-1",
                    state("dev-1"),
                    state("ops-1")
                )
            },
            succeeded,
        ));

        self.tl.heading("the whole chain");
        let dev = &self.net[self.dev];
        let verify = dev.otto(&["verify", run])?;
        self.tl.say("dev-1", &format!("otto verify {run}"));
        self.tl.detail(&String::from_utf8_lossy(&verify.stdout));
        checks.push((
            "otto verify on dev-1: every stage proven by a receipt of a trusted org's node".into(),
            verify.status.success(),
        ));

        let bundle = self.net.dir().join("attestations.json");
        let exported = dev.otto_ok(&["attest", "export", run, "-o", &bundle.to_string_lossy()])?;
        self.tl.say("dev-1", "otto attest export");
        self.tl.detail(&exported);
        // Each key under the name the verifier knows its org by: ops's under the owner name
        // the plan gives Deploy, so Deploy's receipt counts only from a node of that org.
        let dev_key = format!("{}={}", self.net[self.dev].org, self.net[self.dev].org_key);
        let ops_key = format!("ops={}", self.net[self.ops].org_key);
        let offline = dev.otto(&[
            "verify",
            "--bundle",
            &bundle.to_string_lossy(),
            "--trust",
            &dev_key,
            &ops_key,
        ])?;
        self.tl.say(
            "anyone",
            "otto verify --bundle attestations.json --trust acme-dev=KEY ops=KEY (no node)",
        );
        let report = String::from_utf8_lossy(&offline.stdout);
        self.tl.detail(&format!(
            "{} verify --bundle {} --trust {dev_key} {ops_key}\n{}",
            self.net.bins().otto.display(),
            bundle.display(),
            report.lines().last().unwrap_or_default()
        ));
        checks.push((
            format!(
                "{} verifies offline with only the two org keys",
                bundle.display()
            ),
            offline.status.success(),
        ));

        let (kept, where_) = self.secret_stayed_on_ops(run)?;
        checks.push((
            format!("DEPLOY_TOKEN was used on ops-1 (its log shows ***) and {where_}"),
            kept,
        ));

        if self.keep && checks.iter().all(|(_, held)| *held) {
            return Ok(checks);
        }
        self.tl.heading("stopping");
        let pids: Vec<String> = self
            .net
            .nodes()
            .iter()
            .map(|n| format!("{} (pid {})", n.name, n.pid().unwrap_or_default()))
            .collect();
        let unclean = self.net.stop_all();
        self.tl.say(
            "testnet",
            &format!("SIGTERM to {}: stopped", pids.join(", ")),
        );
        checks.push((
            if unclean.is_empty() {
                "both nodes stopped cleanly on SIGTERM".to_owned()
            } else {
                format!("{} did not stop cleanly", unclean.join(", "))
            },
            unclean.is_empty(),
        ));
        Ok(checks)
    }

    /// Whether ops's secret value shows masked on ops and nowhere on dev: not in its
    /// logs, not in its status, not in any file of its home.
    fn secret_stayed_on_ops(&self, run: &str) -> anyhow::Result<(bool, String)> {
        let ops_log = self.net[self.ops].otto_ok(&["logs", run, "Deploy production"])?;
        if ops_log.contains(&self.secret) || !ops_log.contains("token ***") {
            return Ok((false, "ops-1's log does not mask it".into()));
        }
        let dev = &self.net[self.dev];
        let views = [
            dev.otto_ok(&["logs", run])?,
            dev.otto_ok(&["status", run, "--json"])?,
        ];
        if views.iter().any(|v| v.contains(&self.secret)) {
            return Ok((false, "dev-1 shows it".into()));
        }
        let needle = self.secret.as_bytes();
        for file in files_under(&dev.home) {
            let bytes = fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            if bytes.windows(needle.len()).any(|w| w == needle) {
                return Ok((false, format!("it is in {}", file.display())));
            }
        }
        Ok((
            true,
            "is nowhere on dev-1 (logs, status, every file of its home)".into(),
        ))
    }

    /// Keeps both nodes running after the checks held: prints how to open each node's
    /// web UI, writes `nodes.json` to the work directory, waits for SIGINT or SIGTERM,
    /// then stops the nodes by PID. The check that they stopped cleanly.
    fn keep_running(&mut self) -> anyhow::Result<(String, bool)> {
        self.tl.heading("the nodes keep running (--keep)");
        let mut listed = Vec::new();
        for node in self.net.nodes() {
            let api = node.api_addr().unwrap_or_default();
            let home = node.home.display().to_string();
            let login = node
                .otto(&["ui", "--json"])
                .ok()
                .filter(|out| out.status.success())
                .and_then(|out| serde_json::from_slice::<Value>(&out.stdout).ok())
                .and_then(|answer| answer["url"].as_str().map(str::to_owned));
            let otto = self.net.bins().otto.display();
            let how = login.map_or_else(
                || format!("the URL OTTO_HOME={home} {otto} ui prints (one-time)"),
                |url| format!("{url}   (one-time; a new one: OTTO_HOME={home} {otto} ui)"),
            );
            println!("  {} of {}: open {how}", node.name, node.org);
            println!("    home {home}, API {api}");
            listed.push(serde_json::json!({
                "name": node.name,
                "org": node.org,
                "home": home,
                "api": api,
            }));
        }
        let file = self.net.dir().join("nodes.json");
        let text = serde_json::to_string_pretty(&serde_json::json!({ "nodes": listed }))?;
        fs::write(&file, text + "\n").with_context(|| format!("writing {}", file.display()))?;
        println!("  the nodes are listed in {}", file.display());
        println!("  press Ctrl-C to stop both nodes");
        let signal = crate::up::wait_for_signal();
        let unclean = self.net.stop_all();
        if let Ok(name) = signal {
            println!("\n{name}: stopping both nodes");
        }
        signal?;
        Ok(if unclean.is_empty() {
            ("both nodes stopped cleanly when asked to".to_owned(), true)
        } else {
            (
                format!("{} did not stop cleanly", unclean.join(", ")),
                false,
            )
        })
    }

    fn node_named(&self, name: &str) -> anyhow::Result<NodeId> {
        [self.dev, self.ops]
            .into_iter()
            .find(|id| self.net[*id].name == name)
            .ok_or_else(|| anyhow!("no node {name} in this net"))
    }
}

/// A stage's log on the node that runs it, and how much of it was printed.
#[derive(Debug)]
struct Log {
    stage: String,
    lines: Vec<String>,
    shown: usize,
    /// Whether the stage had ended when the lines were read.
    complete: bool,
}

impl Log {
    fn new(stage: &str) -> Self {
        Self {
            stage: stage.to_owned(),
            lines: Vec::new(),
            shown: 0,
            complete: false,
        }
    }

    /// The lines the stage printed that were not shown yet (the node's own `otto:`
    /// lines are told by the timeline), as `STAGE | line`; with `to_gate`, only those
    /// before the last gate opened.
    fn take_new(&mut self, to_gate: bool) -> String {
        let new = self.lines.get(self.shown..).unwrap_or_default();
        let end = if to_gate {
            new.iter()
                .rposition(|l| Self::gate_text(l).is_some())
                .map_or(new.len(), |at| at + 1)
        } else {
            new.len()
        };
        let new = &new[..end];
        self.shown += end;
        new.iter()
            .filter(|l| !l.starts_with("otto: ") && !l.trim().is_empty())
            .map(|l| format!("{} | {l}\n", self.stage))
            .collect()
    }

    /// What the node's log says of the gate that opened last.
    fn gate_line(&self) -> Option<&str> {
        self.lines.iter().rev().find_map(|l| Self::gate_text(l))
    }

    /// What a log line says of a gate that opened, if it is such a line.
    fn gate_text(line: &str) -> Option<&str> {
        line.strip_prefix("otto: exit gate: ")
            .or_else(|| line.strip_prefix("otto: enter gate: "))
    }
}

/// The executables: from `--bin-dir`, else next to this program (built first when asked,
/// this program runs from a cargo target directory and the workspace it was built from
/// is still there).
pub fn find_bins(options: &Options) -> anyhow::Result<Bins> {
    if let Some(dir) = &options.bin_dir {
        return Ok(Bins::in_dir(dir)?);
    }
    let dir = Bins::exe_dir()?;
    if options.build
        && bins::is_cargo_profile_dir(&dir)
        && let Some(workspace) = bins::workspace()
    {
        println!(
            "checking that otto, otto-node and otto-agent are built ({})",
            bins::build_command(&dir, &bins::BINARIES).join(" ")
        );
        return Ok(bins::build(&dir, &workspace)?);
    }
    Ok(Bins::in_dir(&dir)?)
}

/// The work directory: `dir` if it is new or empty, else a new temporary one that is kept.
fn work_dir(dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    match dir {
        Some(dir) => {
            if dir.exists()
                && fs::read_dir(dir)
                    .with_context(|| format!("reading {}", dir.display()))?
                    .next()
                    .is_some()
            {
                bail!(
                    "{} is not empty: name a new or empty directory",
                    dir.display()
                );
            }
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            Ok(fs::canonicalize(dir)?)
        }
        None => Ok(tempfile::Builder::new()
            .prefix("otto-demo-")
            .tempdir()
            .context("creating a temporary directory")?
            .keep()),
    }
}

/// Puts the facts of one look in the order they happened, as far as the nodes' clocks
/// tell and causality demands: an offer or accept comes before anything the owner did
/// in the same look, the receipts the offer carried right after the accept, any other
/// verified receipt after the owner's own fact of the stage, and a run ends after
/// everything its node told of it.
fn order(facts: &mut [(NodeId, Fact)]) {
    let times = |facts: &[(NodeId, Fact)], keep: &dyn Fn(&Fact) -> bool| -> Vec<u64> {
        facts
            .iter()
            .filter(|(_, f)| keep(f))
            .map(|(_, f)| f.at_ms)
            .collect()
    };
    for i in 0..facts.len() {
        let fact = facts[i].1.clone();
        let at = match &fact.event {
            Event::Offered { to: owner, .. } | Event::Accepted { by: owner, .. } => {
                times(facts, &|f| &f.node == owner)
                    .into_iter()
                    .min()
                    .map(|e| e.min(fact.at_ms))
            }
            // The receipts an accepted offer carried come right after the accept.
            Event::Receipt { stage, ran_on, .. } => times(
                facts,
                &|f| matches!(&f.event, Event::Accepted { by, .. } if *by == fact.node),
            )
            .into_iter()
            .min()
            .or_else(|| {
                times(facts, &|f| {
                    &f.node == ran_on && stage_of(&f.event) == Some(stage.as_str())
                })
                .into_iter()
                .max()
                .map(|e| fact.at_ms.max(e + 1))
            }),
            _ => None,
        };
        if let Some(at) = at {
            facts[i].1.at_ms = at;
        }
    }
    for i in 0..facts.len() {
        if matches!(facts[i].1.event, Event::RunEnded { .. }) {
            let node = facts[i].1.node.clone();
            let last = times(facts, &|f| {
                f.node == node && !matches!(f.event, Event::RunEnded { .. })
            });
            if let Some(last) = last.into_iter().max() {
                facts[i].1.at_ms = facts[i].1.at_ms.max(last);
            }
        }
    }
    facts.sort_by_key(|(_, f)| f.at_ms);
}

/// The stage a fact is about, if it is about one.
fn stage_of(event: &Event) -> Option<&str> {
    match event {
        Event::Stage { stage, .. }
        | Event::Offered { stage, .. }
        | Event::Accepted { stage, .. }
        | Event::Refused { stage, .. }
        | Event::Receipt { stage, .. }
        | Event::GateWaiting { stage, .. }
        | Event::GateClosed { stage, .. } => Some(stage),
        Event::RunEnded { .. } => None,
    }
}

/// The first `sha256:` and 64 hex digits in `text`.
fn digest_in(text: &str) -> Option<String> {
    text.match_indices("sha256:").find_map(|(at, _)| {
        let hex = text.get(at + 7..at + 7 + 64)?;
        hex.chars()
            .all(|c| c.is_ascii_hexdigit())
            .then(|| format!("sha256:{hex}"))
    })
}

/// `ed25519:6d9b3004…` for people; the whole key is in the node's home.
fn short_key(key: &str) -> String {
    match key.get(..20) {
        Some(start) if key.len() > 24 => format!("{start}…"),
        _ => key.to_owned(),
    }
}

/// A webhook URL with its one-time token shortened.
fn short_url(url: &str) -> String {
    match url.rsplit_once("/hooks/") {
        Some((base, token)) if token.len() > 12 => format!("{base}/hooks/{}…", &token[..8]),
        _ => url.to_owned(),
    }
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => out.push(path),
                _ => {}
            }
        }
    }
    out
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_to_approve_is_read_from_a_refusal() {
        let hex = "8c1209ac600db51cef72b14bc184167074f49e2dd32923581f9b56d5cc59389d";
        let hint = format!("run `otto-node approve sha256:{hex}` on this node");
        assert_eq!(digest_in(&hint), Some(format!("sha256:{hex}")));
        assert_eq!(digest_in("sha256:abc is too short"), None);
        assert_eq!(digest_in("no digest"), None);
    }

    #[test]
    fn a_log_shows_only_what_the_stage_printed_and_each_line_once() {
        let mut log = Log::new("Deploy staging");
        log.lines = vec![
            "otto: restored the source snapshot (7 entries)".into(),
            "deployed shop 1.4.2 to staging".into(),
            "otto: exit gate: polling `sh ./healthy.sh staging` every 1s".into(),
        ];
        log.lines.push("warming up".into());
        assert_eq!(
            log.take_new(true),
            "Deploy staging | deployed shop 1.4.2 to staging\n"
        );
        assert_eq!(log.take_new(false), "Deploy staging | warming up\n");
        assert_eq!(log.take_new(false), "");
        assert_eq!(
            log.gate_line(),
            Some("polling `sh ./healthy.sh staging` every 1s")
        );
    }

    #[test]
    fn a_work_dir_must_be_new_or_empty() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("x"), "").unwrap();
        let err = work_dir(Some(dir.path())).unwrap_err().to_string();
        assert!(
            err.ends_with("is not empty: name a new or empty directory"),
            "{err}"
        );
        let fresh = dir.path().join("new");
        assert_eq!(
            work_dir(Some(&fresh)).unwrap(),
            fs::canonicalize(&fresh).unwrap()
        );
    }
}
