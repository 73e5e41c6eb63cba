//! The measurements of `otto-testnet bench`, each on real node processes, each with its
//! baseline measured in the same run.
//!
//! ```text
//!   pair/      dev-1 (acme-dev) ── Deploy offers, artifact fetches ──▶ ops-1 (acme-ops)
//!   mesh-2/    org-1-n1 ◀─▶ org-2-n1                        (status propagation baseline)
//!   mesh-N/    orgs × nodes_per_org, every org trusting every other   (the same, large)
//!   solo/      one node with no peers                                  (memory baseline)
//! ```

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use serde_json::Value;

use super::api::Api;
use super::{Figure, Options, median, percentile};
use crate::net::write_file;
use crate::timeline::now_ms;
use crate::{Bins, Net, NodeId, NodeProc, up};

/// How long one run may take to end.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// How many runs of a pipeline may be refused for unapproved steps before giving up.
const MAX_REHEARSALS: usize = 6;

/// The invite ops-1 gives acme-dev: hand ops its `Deploy` stage, with inline steps once
/// ops approved them.
const INVITE: &[&str] = &[
    "--role",
    "deploy",
    "--stages",
    "Deploy",
    "--definitions",
    "approved",
];

/// Build on the starting node, Deploy handed to ops.
const ACROSS: &str = "stage('Build') { steps { sh 'true' } }
stage('Deploy') { owner = 'ops'  steps { sh 'echo deployed' } }
";

/// The same two stages, both on the starting node: a local stage-to-stage transition.
const LOCAL: &str = "stage('Build') { steps { sh 'true' } }
stage('Deploy') { steps { sh 'echo deployed' } }
";

/// Measures every figure, in order: the two-node figures, then status propagation in a
/// 2-node mesh and in the large one, then the memory of the large mesh's nodes.
pub(crate) fn all(
    options: &Options,
    bins: Bins,
    dir: &Path,
    say: &mut dyn FnMut(&str),
) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let mut pair = Pair::set_up(&dir.join("pair"), bins.clone(), say)?;
    figures.extend(pair.latency(options.handoffs.max(1), say)?);
    figures.push(pair.throughput(options.concurrent.max(2), say)?);
    figures.push(pair.artifact(
        options.artifact_mib.max(1),
        options.artifact_runs.max(1),
        say,
    )?);
    pair.net.stop_all();
    drop(pair);

    let runs = options.gossip_runs.max(1);
    let mut small = Mesh::set_up(&dir.join("mesh-2"), bins.clone(), 2, 1, say)?;
    let base = small.propagation(runs, say)?;
    small.net.stop_all();
    drop(small);
    let (orgs, per_org) = (options.orgs.max(2), options.nodes_per_org.max(1));
    let size = orgs * per_org;
    let mut large = Mesh::set_up(
        &dir.join(format!("mesh-{size}")),
        bins.clone(),
        orgs,
        per_org,
        say,
    )?;
    let spread = large.propagation(runs, say)?;
    figures.push(Figure {
        id: "status_propagation".into(),
        title: format!("status propagation, {size}-node mesh"),
        unit: "ms".into(),
        value: spread.median,
        baseline: base.median,
        baseline_label: "2-node mesh".into(),
        lower_is_better: true,
        samples: spread.samples,
        detail: format!(
            "median over {} runs of the time from the last stage's end on its node ({}) to \
             the moment the last of the other nodes of the run shows it ended (observers \
             on each node's run watch); the run crosses {orgs} orgs and is known to {} of \
             the {size} nodes; {} of {} watched views showed the end within {}{} (the \
             2-node baseline: {} of 2 nodes, {} of {} views)",
            spread.samples,
            spread.runner_org,
            spread.knows,
            spread.watched - spread.missed_views,
            spread.watched,
            crate::human(OBSERVE_LIMIT),
            if spread.missed.is_empty() {
                String::new()
            } else {
                format!("; never: {}", spread.missed.join(", "))
            },
            base.knows,
            base.watched - base.missed_views,
            base.watched
        ),
    });

    let mut solo = Net::new(&dir.join("solo"), bins)?;
    let alone = solo.add("solo-org", "solo", &[])?;
    solo.start_all()?;
    say(&format!(
        "the {size} nodes and a fresh node with no peers idle for {}",
        crate::human(options.idle)
    ));
    thread::sleep(options.idle);
    let mut rss = Vec::new();
    for node in large.net.nodes() {
        let pid = node
            .pid()
            .ok_or_else(|| anyhow!("{} does not run", node.name))?;
        rss.push(rss_mib(pid).with_context(|| format!("reading the memory of {}", node.name))?);
    }
    let pid = solo[alone]
        .pid()
        .ok_or_else(|| anyhow!("the solo node does not run"))?;
    let fresh = rss_mib(pid).context("reading the memory of the solo node")?;
    let mean = rss.iter().sum::<f64>() / rss.len() as f64;
    let max = rss.iter().copied().fold(0.0, f64::max);
    figures.push(Figure {
        id: "idle_rss".into(),
        title: format!("idle memory per node, {size}-node mesh"),
        unit: "MiB".into(),
        value: mean,
        baseline: fresh,
        baseline_label: "fresh node, no peers".into(),
        lower_is_better: true,
        samples: rss.len(),
        detail: format!(
            "mean VmRSS (/proc/PID/status) of the {size} otto-node processes after the runs \
             above and {} idle (largest {max:.1} MiB), against one node started with no \
             peers and idle as long",
            crate::human(options.idle)
        ),
    });
    solo.stop_all();
    large.net.stop_all();
    Ok(figures)
}

/// Two nodes of two orgs: dev-1 runs Build and hands Deploy to ops-1.
struct Pair {
    net: Net,
    dev: NodeId,
    ops: NodeId,
    dev_api: Api,
    ops_api: Api,
    across: PathBuf,
    local: PathBuf,
}

impl Pair {
    fn set_up(dir: &Path, bins: Bins, say: &mut dyn FnMut(&str)) -> anyhow::Result<Self> {
        let mut net = Net::new(dir, bins)?;
        let dev = net.add("acme-dev", "dev-1", &["dev"])?;
        let ops = net.add("acme-ops", "ops-1", &["ops"])?;
        net.start_all()?;
        net.connect(ops, dev, INVITE, "ops")?;
        let across = pipeline(dir, "across", ACROSS)?;
        let local = pipeline(dir, "local", LOCAL)?;
        say("dev-1 (acme-dev) and ops-1 (acme-ops) run; ops-1 takes dev's Deploy stages");
        rehearse(&net, &net[dev], &across, say)?;
        Ok(Self {
            dev_api: Api::of_home(&net[dev].home)?,
            ops_api: Api::of_home(&net[ops].home)?,
            net,
            dev,
            ops,
            across,
            local,
        })
    }

    /// Handoff latency p50 and p99: `n` runs across the orgs and `n` local ones,
    /// alternating, after one of each to warm up.
    fn latency(&self, n: usize, say: &mut dyn FnMut(&str)) -> anyhow::Result<Vec<Figure>> {
        say(&format!(
            "handoff latency: {n} runs with Deploy on ops-1, {n} with both stages on dev-1"
        ));
        self.transition(true)?;
        self.transition(false)?;
        let (mut across, mut local) = (Vec::new(), Vec::new());
        for _ in 0..n {
            across.push(self.transition(true)?);
            local.push(self.transition(false)?);
        }
        let figure = |p: f64, id: &str| Figure {
            id: id.into(),
            title: format!("handoff latency p{p}"),
            unit: "ms".into(),
            value: percentile(&across, p).unwrap_or_default(),
            baseline: percentile(&local, p).unwrap_or_default(),
            baseline_label: "both stages on one node".into(),
            lower_is_better: true,
            samples: across.len(),
            detail: format!(
                "Build's end on dev-1 (its attempt's finished_at) to Deploy's start on ops-1 \
                 (its attempt's started_at), both as the nodes recorded them, in ms; {n} \
                 runs one at a time, nearest-rank percentile; baseline: the same pipeline \
                 with Deploy on dev-1"
            ),
        };
        let figures = vec![
            figure(50.0, "handoff_latency_p50"),
            figure(99.0, "handoff_latency_p99"),
        ];
        say(&format!(
            "  across: p50 {} ms, p99 {} ms; local: p50 {} ms, p99 {} ms",
            figures[0].value, figures[1].value, figures[0].baseline, figures[1].baseline
        ));
        Ok(figures)
    }

    /// One run; the milliseconds from Build's end to Deploy's start.
    fn transition(&self, across: bool) -> anyhow::Result<f64> {
        let pipeline = if across { &self.across } else { &self.local };
        let run = start_run(&self.net[self.dev], pipeline)?;
        let status = wait_end(&self.dev_api, &run, RUN_LIMIT)?;
        ensure_succeeded(&status, &run)?;
        let end = attempt_ms(&status, "Build", "finished_at")?;
        let start = if across {
            let owner = self
                .ops_api
                .run(&run)?
                .ok_or_else(|| anyhow!("ops-1 has no record of run {run}"))?;
            attempt_ms(&owner, "Deploy", "started_at")?
        } else {
            attempt_ms(&status, "Deploy", "started_at")?
        };
        Ok(start.saturating_sub(end) as f64)
    }

    /// Handoffs per second: `c` runs started at once, across the orgs and then local.
    fn throughput(&self, c: usize, say: &mut dyn FnMut(&str)) -> anyhow::Result<Figure> {
        say(&format!(
            "handoffs per second: {c} runs started at once, twice"
        ));
        let across = self.batch(true, c)?;
        let local = self.batch(false, c)?;
        say(&format!(
            "  across: {across:.1} handoffs/s; local: {local:.1} transitions/s"
        ));
        Ok(Figure {
            id: "handoffs_per_second".into(),
            title: format!("handoffs per second, {c} runs at once"),
            unit: "1/s".into(),
            value: across,
            baseline: local,
            baseline_label: "both stages on one node".into(),
            lower_is_better: false,
            samples: c,
            detail: format!(
                "{c} runs started at once on dev-1 (Build, then Deploy on ops-1); {c} \
                 divided by the time from the first run's creation on dev-1 to the last \
                 Deploy's start on ops-1 (node records); baseline: the same {c} runs with \
                 Deploy on dev-1"
            ),
        })
    }

    /// Starts `c` runs at once and waits for them; transitions per second.
    fn batch(&self, across: bool, c: usize) -> anyhow::Result<f64> {
        let pipeline = if across { &self.across } else { &self.local };
        let dev = &self.net[self.dev];
        let runs = thread::scope(|s| {
            let started: Vec<_> = (0..c)
                .map(|_| s.spawn(|| start_run(dev, pipeline)))
                .collect();
            started
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("a run did not start")))
                })
                .collect::<anyhow::Result<Vec<String>>>()
        })?;
        let (mut first_created, mut last_start) = (u64::MAX, 0);
        for run in &runs {
            let status = wait_end(&self.dev_api, run, RUN_LIMIT)?;
            ensure_succeeded(&status, run)?;
            let created = status["run"]["created_at"]
                .as_u64()
                .ok_or_else(|| anyhow!("run {run} has no created_at"))?;
            first_created = first_created.min(created);
            let start = if across {
                let owner = self
                    .ops_api
                    .run(run)?
                    .ok_or_else(|| anyhow!("ops-1 has no record of run {run}"))?;
                attempt_ms(&owner, "Deploy", "started_at")?
            } else {
                attempt_ms(&status, "Deploy", "started_at")?
            };
            last_start = last_start.max(start);
        }
        let window_ms = last_start.saturating_sub(first_created).max(1);
        Ok(c as f64 * 1000.0 / window_ms as f64)
    }

    /// Artifact throughput: ops-1 fetches a `mib` MiB artifact of Build over the mesh,
    /// `runs` times; the baseline copies the same blob over plain TCP each time.
    fn artifact(&self, mib: u64, runs: usize, say: &mut dyn FnMut(&str)) -> anyhow::Result<Figure> {
        let dir = self.net.dir();
        let bytes = mib * 1024 * 1024;
        let text = format!(
            "stage('Build') {{ steps {{
  sh 'mkdir -p out && head -c {bytes} /dev/urandom > out/blob.bin'
  archive path: 'out/', name: 'blob'
}} }}
stage('Deploy') {{ owner = 'ops'  steps {{ unarchive name: 'blob'  sh 'true' }} }}
"
        );
        let pipeline = pipeline(dir, "artifact", &text)?;
        say(&format!(
            "artifact throughput: ops-1 fetches a {mib} MiB artifact from dev-1, {runs} times"
        ));
        rehearse(&self.net, &self.net[self.dev], &pipeline, say)?;
        let (mut mesh, mut tcp) = (Vec::new(), Vec::new());
        let copy = dir.join("tcp-copy.bin");
        for _ in 0..runs {
            let run = start_run(&self.net[self.dev], &pipeline)?;
            let status = wait_end(&self.dev_api, &run, RUN_LIMIT)?;
            ensure_succeeded(&status, &run)?;
            let (digest, size) = archived(&self.dev_api, &run)?;
            let owner = self
                .ops_api
                .run(&run)?
                .ok_or_else(|| anyhow!("ops-1 has no record of run {run}"))?;
            let started = attempt_ms(&owner, "Deploy", "started_at")? as f64;
            let accepted = accepted_at(&self.net[self.ops].log_text(), &run, "Deploy")
                .ok_or_else(|| anyhow!("ops-1's log does not show the accept of {run}"))?;
            let fetch_s = ((started - accepted) / 1000.0).max(0.001);
            let size_mib = size as f64 / (1024.0 * 1024.0);
            mesh.push(size_mib / fetch_s);
            let blob = self.net[self.dev]
                .home
                .join("blobs/sha256")
                .join(&digest[..2])
                .join(&digest[2..]);
            let plain = tcp_copy(&blob, &copy)?;
            tcp.push(size_mib / plain.as_secs_f64().max(0.000_001));
            let _ = std::fs::remove_file(&copy);
            say(&format!(
                "  {size} bytes: mesh {:.0} MiB/s ({:.0} ms), plain TCP {:.0} MiB/s",
                size_mib / fetch_s,
                fetch_s * 1000.0,
                size_mib / plain.as_secs_f64().max(0.000_001)
            ));
        }
        Ok(Figure {
            id: "artifact_throughput".into(),
            title: format!("artifact throughput, {mib} MiB"),
            unit: "MiB/s".into(),
            value: median(&mesh).unwrap_or_default(),
            baseline: median(&tcp).unwrap_or_default(),
            baseline_label: "plain TCP on 127.0.0.1".into(),
            lower_is_better: false,
            samples: mesh.len(),
            detail: format!(
                "median of {runs}: the archived blob's size over the time from ops-1 \
                 logging its accept of Deploy to Deploy's start on ops-1, which is the fetch \
                 over /otto/artifact/1 (Noise, chunks, sha256) plus storing the blob and the \
                 stage start; baseline: the same blob file read and sent over a 127.0.0.1 \
                 TCP socket in 1 MiB writes and written to a file, in this process"
            ),
        })
    }
}

/// A mesh of `orgs × nodes_per_org` nodes (as `otto-testnet up` makes it) and the
/// pipeline that crosses every org once.
struct Mesh {
    net: Net,
    orgs: usize,
    chain: PathBuf,
}

/// Status propagation measured in one mesh.
struct Spread {
    /// The median of the samples, in ms.
    median: f64,
    /// How many samples.
    samples: usize,
    /// How many nodes had a record of the last run.
    knows: usize,
    /// The org whose node ran the last stage.
    runner_org: String,
    /// Over all samples: the other nodes of the run that were watched, and those of them
    /// that did not show the end within [`OBSERVE_LIMIT`] (by name, once each).
    watched: usize,
    missed_views: usize,
    missed: Vec<String>,
}

/// How long an observer waits for a node to show the last stage's end, from the moment
/// the stage runs (it lasts a second).
const OBSERVE_LIMIT: Duration = Duration::from_secs(11);

impl Mesh {
    fn set_up(
        dir: &Path,
        bins: Bins,
        orgs: usize,
        nodes_per_org: usize,
        say: &mut dyn FnMut(&str),
    ) -> anyhow::Result<Self> {
        let size = orgs * nodes_per_org;
        say(&format!(
            "a mesh of {orgs} orgs × {nodes_per_org} nodes, every org trusting every other"
        ));
        let began = Instant::now();
        let net = up::build(dir, bins, orgs, nodes_per_org, &mut |_| {})?;
        say(&format!(
            "  {size} nodes up and joined in {}",
            crate::human(began.elapsed())
        ));
        // S1 on org-1's node, then S2 … SN each on a node of org-2 … org-N; the last one
        // lasts a second, so the observers are in place before it ends.
        let mut text = String::from("stage('S1') { steps { sh 'true' } }\n");
        for o in 2..=orgs {
            let step = if o == orgs { "sleep 1" } else { "true" };
            text.push_str(&format!(
                "stage('S{o}') {{ owner = 'org-{o}'  steps {{ sh '{step}' }} }}\n"
            ));
        }
        let chain = pipeline(dir, "chain", &text)?;
        let mesh = Self { net, orgs, chain };
        rehearse(&mesh.net, mesh.first()?, &mesh.chain, say)?;
        Ok(mesh)
    }

    /// The first node of org-1, which starts the runs.
    fn first(&self) -> anyhow::Result<&NodeProc> {
        self.net
            .nodes()
            .first()
            .ok_or_else(|| anyhow!("the mesh has no node"))
    }

    /// `runs` runs across every org; the median time for the last stage's end to reach
    /// every other node of the run.
    fn propagation(&mut self, runs: usize, say: &mut dyn FnMut(&str)) -> anyhow::Result<Spread> {
        let size = self.net.nodes().len();
        let mut samples = Vec::new();
        let (mut knows, mut runner_org) = (0, String::new());
        let (mut watched, mut missed_views, mut missed) = (0, 0, Vec::new());
        let mut tries = 0;
        while samples.len() < runs && tries < runs * 2 {
            tries += 1;
            match self.spread_once()? {
                Some(sample) => {
                    samples.extend(sample.ms);
                    knows = sample.knows;
                    runner_org = sample.runner_org;
                    watched += sample.watched;
                    missed_views += sample.missed.len();
                    for name in sample.missed {
                        say(&format!(
                            "  {name} did not show the last stage's end within {}",
                            crate::human(OBSERVE_LIMIT)
                        ));
                        if !missed.contains(&name) {
                            missed.push(name);
                        }
                    }
                }
                None => say("  the run ended before the observers were in place; again"),
            }
        }
        ensure!(
            !samples.is_empty(),
            "no run of the {size}-node mesh could be observed"
        );
        let mid = median(&samples).unwrap_or_default();
        say(&format!(
            "  {size}-node mesh: median {mid} ms over {} runs (samples {samples:?}); {knows} \
             of {size} nodes know the run",
            samples.len()
        ));
        Ok(Spread {
            median: mid,
            samples: samples.len(),
            knows,
            runner_org,
            watched,
            missed_views,
            missed,
        })
    }

    /// One run: the ms from the last stage's end on its node to the last other node of
    /// the run showing it ended, how many nodes know the run, and the runner's org; `None`
    /// when the run got too far before the observers were in place.
    fn spread_once(&self) -> anyhow::Result<Option<Sample>> {
        let first = self.first()?;
        let api = Api::of_home(&first.home)?;
        let run = start_run(first, &self.chain)?;
        let last = format!("S{}", self.orgs);
        let runner_org = format!("org-{}", self.orgs);
        // The first node learns by gossip that the last stage runs: by then every node of
        // the run follows its topic.
        let deadline = Instant::now() + RUN_LIMIT;
        let mut answer = None;
        loop {
            let seen = match answer.take() {
                Some(a) => a,
                None => api
                    .version(&run)?
                    .ok_or_else(|| anyhow!("no run {run} on {}", first.name))?,
            };
            if runs_now(&seen.body, &last) {
                break;
            }
            match stage_state(&seen.body, &last).as_deref() {
                Some(s) if is_final_state(s) => {
                    wait_end(&api, &run, RUN_LIMIT)?;
                    return Ok(None);
                }
                _ => {}
            }
            if is_final(&seen.body) || Instant::now() > deadline {
                bail!(
                    "run {run} ended or took too long before {last} ran: {}",
                    seen.body["run"]["state"]
                );
            }
            answer = match &seen.etag {
                Some(etag) => api.watch(&run, etag)?,
                None => None,
            };
        }
        let mut members = Vec::new();
        for node in self.net.nodes() {
            let api = Api::of_home(&node.home)?;
            if api.run(&run)?.is_some() {
                members.push((node, api));
            }
        }
        let (runners, others): (Vec<_>, Vec<_>) =
            members.iter().partition(|(n, _)| n.org == runner_org);
        let [(runner, runner_api)] = runners.as_slice() else {
            bail!(
                "{} nodes of {runner_org} know run {run}; expected one",
                runners.len()
            );
        };
        let until = Instant::now() + OBSERVE_LIMIT;
        let seen = thread::scope(|s| {
            let watching: Vec<_> = others
                .iter()
                .map(|(_, api)| s.spawn(|| observe(api, &run, &last, until)))
                .collect();
            watching
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("an observer failed")))
                })
                .collect::<anyhow::Result<Vec<Option<u64>>>>()
        })?;
        let missed = others
            .iter()
            .zip(&seen)
            .filter(|(_, t)| t.is_none())
            .map(|((n, _), _)| n.name.clone())
            .collect();
        wait_end(&api, &run, RUN_LIMIT)?;
        let own = runner_api
            .run(&run)?
            .ok_or_else(|| anyhow!("{} lost run {run}", runner.name))?;
        let ended = attempt_ms(&own, &last, "finished_at")?;
        let spread = seen.iter().flatten().map(|t| t.saturating_sub(ended)).max();
        let mut knows = 0;
        for node in self.net.nodes() {
            if Api::of_home(&node.home)?.run(&run)?.is_some() {
                knows += 1;
            }
        }
        Ok(Some(Sample {
            ms: spread.map(|ms| ms as f64),
            knows,
            runner_org,
            watched: others.len(),
            missed,
        }))
    }
}

/// One run observed in a mesh.
struct Sample {
    /// The ms until the last of the other nodes that showed the end showed it (none when
    /// none did).
    ms: Option<f64>,
    knows: usize,
    runner_org: String,
    watched: usize,
    missed: Vec<String>,
}

/// Writes `ottofile` as `DIR/pipelines/NAME/Ottofile`; the pipeline's directory.
fn pipeline(dir: &Path, name: &str, ottofile: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join("pipelines").join(name);
    write_file(&path.join("Ottofile"), ottofile.as_bytes())?;
    Ok(path)
}

/// `otto run DIR --detach` on `node`; the run id.
fn start_run(node: &NodeProc, pipeline: &Path) -> anyhow::Result<String> {
    let out = node.otto_ok(&["run", &pipeline.to_string_lossy(), "--detach"])?;
    let run = out.trim();
    ensure!(
        !run.is_empty() && !run.contains(char::is_whitespace),
        "otto run --detach printed {out:?}, not a run id"
    );
    Ok(run.to_owned())
}

/// Runs `pipeline` on `starter` until a run succeeds, approving on every node of an org
/// the digests its refusals name.
fn rehearse(
    net: &Net,
    starter: &NodeProc,
    pipeline: &Path,
    say: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    let api = Api::of_home(&starter.home)?;
    let name = pipeline
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut last = String::new();
    for _ in 0..MAX_REHEARSALS {
        let run = start_run(starter, pipeline)?;
        let status = wait_end(&api, &run, RUN_LIMIT)?;
        if status["run"]["state"] == "succeeded" {
            return Ok(());
        }
        let mut refusals = Vec::new();
        for node in net.nodes() {
            let Some(view) = Api::of_home(&node.home)?.run(&run)? else {
                continue;
            };
            for stage in stages(&view) {
                if let Some(found) = approval_hint(stage["note"].as_str().unwrap_or_default()) {
                    refusals.push(found);
                }
            }
        }
        refusals.sort();
        refusals.dedup();
        if refusals.is_empty() {
            last = format!("run {run} {}", status["run"]["state"]);
            thread::sleep(Duration::from_millis(500));
            continue;
        }
        for (digest, on) in refusals {
            let org = net
                .nodes()
                .iter()
                .find(|n| n.name == on)
                .map(|n| n.org.clone())
                .ok_or_else(|| anyhow!("a refusal names {on:?}, not a node of this net"))?;
            for node in net.nodes().iter().filter(|n| n.org == org) {
                node.otto_node_ok(&["approve", &digest])?;
            }
            say(&format!(
                "  {name}: refused by {on}; approved {} on every node of {org}",
                &digest[..15.min(digest.len())]
            ));
        }
    }
    bail!("{name} did not succeed in {MAX_REHEARSALS} runs ({last})")
}

/// Waits (at most `limit`) for run `run` to end on the node of `api`, watching it; its
/// final status.
fn wait_end(api: &Api, run: &str, limit: Duration) -> anyhow::Result<Value> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(mut answer) = api.version(run)? {
            loop {
                if is_final(&answer.body) {
                    return Ok(answer.body);
                }
                if Instant::now() > deadline {
                    break;
                }
                let Some(etag) = answer.etag.clone() else {
                    break;
                };
                if let Some(next) = api.watch(run, &etag)? {
                    answer = next;
                }
            }
        }
        if Instant::now() > deadline {
            return Err(crate::Error::Timeout {
                what: format!("run {run} to end"),
                limit,
            }
            .into());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Watches run `run` on the node of `api` until stage `stage` ended; when it saw that,
/// in ms since the epoch, or `None` if the node did not show it by `deadline`.
fn observe(api: &Api, run: &str, stage: &str, deadline: Instant) -> anyhow::Result<Option<u64>> {
    let mut answer = api
        .version(run)?
        .ok_or_else(|| anyhow!("no record of run {run}"))?;
    loop {
        if stage_state(&answer.body, stage).is_some_and(|s| is_final_state(&s)) {
            return Ok(Some(now_ms()));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        match &answer.etag {
            Some(etag) => {
                if let Some(next) = api.watch(run, etag)? {
                    answer = next;
                }
            }
            None => {
                thread::sleep(Duration::from_millis(5));
                if let Some(next) = api.version(run)? {
                    answer = next;
                }
            }
        }
    }
}

fn ensure_succeeded(status: &Value, run: &str) -> anyhow::Result<()> {
    ensure!(
        status["run"]["state"] == "succeeded",
        "run {run} ended {}: {}",
        status["run"]["state"],
        stages(status)
            .iter()
            .filter(|s| s["state"] != "succeeded")
            .map(|s| format!("{} {} ({})", s["id"], s["state"], s["note"]))
            .collect::<Vec<_>>()
            .join("; ")
    );
    Ok(())
}

fn stages(status: &Value) -> &[Value] {
    status["stages"].as_array().map_or(&[][..], Vec::as_slice)
}

fn stage_state(status: &Value, stage: &str) -> Option<String> {
    stages(status)
        .iter()
        .find(|s| s["id"] == stage)
        .and_then(|s| s["state"].as_str())
        .map(str::to_owned)
}

/// `field` (`started_at`, `finished_at`) of the last attempt of `stage`, in ms.
fn attempt_ms(status: &Value, stage: &str, field: &str) -> anyhow::Result<u64> {
    stages(status)
        .iter()
        .find(|s| s["id"] == stage)
        .and_then(|s| s["attempts"].as_array()?.last()?[field].as_u64())
        .ok_or_else(|| {
            anyhow!(
                "run {} has no {field} for {stage}",
                status["run"]["id"].as_str().unwrap_or("?")
            )
        })
}

/// Whether `stage` runs, as this view tells it: the node runs it, or another node's
/// status event or accept says it runs there.
fn runs_now(status: &Value, stage: &str) -> bool {
    stages(status).iter().any(|s| {
        let note = s["note"].as_str().unwrap_or_default();
        s["id"] == stage
            && (s["state"] == "running"
                || (s["state"] == "handed_off"
                    && (note.contains(": running (attempt") || note.starts_with("accepted by "))))
    })
}

fn is_final(status: &Value) -> bool {
    status["run"]["state"]
        .as_str()
        .is_some_and(|s| ["succeeded", "failed", "cancelled"].contains(&s))
}

fn is_final_state(state: &str) -> bool {
    ["succeeded", "failed", "cancelled", "skipped"].contains(&state)
}

/// The digest and size of the artifact Build archived in `run`, from its log
/// (`otto: archived 'blob': N bytes, sha256:HEX`).
fn archived(api: &Api, run: &str) -> anyhow::Result<(String, u64)> {
    let log = api.logs(run, "Build")?;
    log.lines()
        .find_map(archived_line)
        .ok_or_else(|| anyhow!("Build of run {run} did not log its archive"))
}

fn archived_line(line: &str) -> Option<(String, u64)> {
    let rest = &line[line.find("archived '")?..];
    let (_, rest) = rest.split_once("': ")?;
    let (bytes, rest) = rest.split_once(" bytes, sha256:")?;
    let hex = rest.get(..64)?;
    hex.chars()
        .all(|c| c.is_ascii_hexdigit())
        .then(|| Some((hex.to_owned(), bytes.trim().parse().ok()?)))
        .flatten()
}

/// When the node whose log is `log` accepted the offer of `stage` of `run`, in ms since
/// the epoch (with the log's microseconds).
fn accepted_at(log: &str, run: &str, stage: &str) -> Option<f64> {
    let needle = format!("offer accepted run={run} stage={stage} ");
    let line = log.lines().find(|l| l.contains(&needle))?;
    let stamp = line.trim_start_matches(|c: char| !c.is_ascii_digit());
    log_time_ms(stamp.split_whitespace().next()?)
}

/// An RFC 3339 UTC time as the node logs it (`2026-11-25T02:35:54.003916Z`), in ms since
/// the Unix epoch.
fn log_time_ms(stamp: &str) -> Option<f64> {
    let stamp = stamp.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let secs: f64 = t.next()?.parse().ok()?;
    let days = days_from_civil(y, m, day)?;
    Some(((days * 86_400 + h * 3600 + min * 60) as f64 + secs) * 1000.0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> Option<i64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// Copies the file `src` over a new 127.0.0.1 TCP connection into the file `dst`, in
/// 1 MiB reads and writes; how long it took from the connect to the last byte written.
fn tcp_copy(src: &Path, dst: &Path) -> anyhow::Result<Duration> {
    const CHUNK: usize = 1024 * 1024;
    let limit = Some(Duration::from_secs(60));
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a TCP socket")?;
    let addr = listener.local_addr()?;
    let began = Instant::now();
    // The connection waits in the listener's backlog, so the accept below returns.
    let mut inbound = TcpStream::connect(addr).context("connecting to 127.0.0.1")?;
    inbound.set_read_timeout(limit)?;
    let src = src.to_owned();
    let sender = thread::spawn(move || -> std::io::Result<u64> {
        let (mut out, _) = listener.accept()?;
        out.set_write_timeout(limit)?;
        let mut file = File::open(&src)?;
        let mut buf = vec![0; CHUNK];
        let mut sent = 0;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok(sent);
            }
            out.write_all(&buf[..n])?;
            sent += n as u64;
        }
    });
    let mut file = File::create(dst).with_context(|| format!("creating {}", dst.display()))?;
    let mut buf = vec![0; CHUNK];
    let mut got = 0u64;
    loop {
        let n = inbound.read(&mut buf).context("reading the TCP copy")?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])?;
        got += n as u64;
    }
    file.flush()?;
    let took = began.elapsed();
    let sent = sender
        .join()
        .map_err(|_| anyhow!("the TCP sender panicked"))?
        .context("sending the TCP copy")?;
    ensure!(
        got == sent && got > 0,
        "the TCP copy got {got} of {sent} bytes"
    );
    Ok(took)
}

/// The resident memory of process `pid` in MiB (`VmRSS` of `/proc/PID/status`).
fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kib / 1024.0)
}

/// The digest a refusal's note says to approve and the node it names:
/// `… run `otto-node approve sha256:HEX` on NODE`.
fn approval_hint(note: &str) -> Option<(String, String)> {
    let at = note.find("otto-node approve sha256:")?;
    let rest = &note[at + "otto-node approve sha256:".len()..];
    let hex = rest.get(..64)?;
    if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let node = rest
        .get(64..)?
        .strip_prefix("` on ")?
        .split(|c: char| c.is_whitespace() || c == ';' || c == ',')
        .next()?;
    Some((format!("sha256:{hex}"), node.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_times_are_read_to_the_microsecond() {
        assert_eq!(log_time_ms("1970-01-01T00:00:01.5Z"), Some(1500.0));
        let ms = log_time_ms("2026-11-25T02:35:54.003916Z").unwrap();
        assert!((ms - 1_795_574_154_003.916).abs() < 0.01, "{ms}");
        assert_eq!(log_time_ms("2026-13-25T02:35:54Z"), None);
        assert_eq!(log_time_ms("not a time"), None);
        let log = "2026-11-25T02:35:54.003916Z  INFO otto_node::exchange: offer accepted \
                   run=01M888 stage=Deploy org=acme-dev node=dev-1 id=79fa how=approved";
        assert_eq!(
            accepted_at(log, "01M888", "Deploy"),
            Some(1_795_574_154_003.916)
        );
        assert_eq!(accepted_at(log, "01M888", "Deploy staging"), None);
    }

    #[test]
    fn the_archive_and_the_approval_are_read_from_the_nodes_words() {
        let hex = "fbf1a8194122cdea49aa3a06ad906a9e0f0ad1f7e791b67714ae9441c2d4967b";
        let line = format!("otto: archived 'blob': 4196352 bytes, sha256:{hex}");
        assert_eq!(archived_line(&line), Some((hex.to_owned(), 4_196_352)));
        assert_eq!(archived_line("otto: restored 'blob' (2 entries)"), None);
        let note = format!(
            "ops-1 rejected Deploy: its definition sha256:{hex} is not approved here; run \
             `otto-node approve sha256:{hex}` on ops-1"
        );
        assert_eq!(
            approval_hint(&note),
            Some((format!("sha256:{hex}"), "ops-1".to_owned()))
        );
        assert_eq!(approval_hint("ops-1 rejected Deploy: unknown org"), None);
    }

    #[test]
    fn a_tcp_copy_moves_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("a"), dir.path().join("b"));
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        tcp_copy(&src, &dst).unwrap();
        assert_eq!(std::fs::read(&dst).unwrap(), data);
    }

    #[test]
    fn this_process_has_a_resident_size() {
        assert!(rss_mib(std::process::id()).unwrap() > 0.0);
    }
}
