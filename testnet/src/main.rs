//! `otto-testnet`: local multi-organisation Otto meshes on real processes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use otto_testnet::scenario::Scenario;
use otto_testnet::{Net, bench, demo, netns, play, up};

/// Start real Otto nodes of several orgs on this machine and drive them.
#[derive(Debug, Parser)]
#[command(name = "otto-testnet", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Demo(DemoArgs),
    Up(UpArgs),
    Run(RunArgs),
    Bench(BenchArgs),
    Sim(SimArgs),
}

/// Start a mesh of orgs whose nodes trust each other, and keep it running until Ctrl-C.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto-testnet up --orgs 3 --nodes-per-org 2
  otto-testnet up --orgs 2 --nodes-per-org 1 --dir /tmp/mesh

Makes orgs org-1..N with nodes org-I-n1..nM (the first node of each org holds its org
key), starts every node, and lets every org hand every other org any stage: each org's
first node invites every node of the other orgs (--stages '*' --pipelines '*'
--definitions approved), and each other node invites the first node of every other org,
so any node takes any other org's stages. Prints how to point otto at each node, then waits for Ctrl-C
(SIGINT or SIGTERM) and stops every node by PID. The work directory is kept.")]
struct UpArgs {
    /// How many orgs.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=20))]
    orgs: u16,
    /// How many nodes each org runs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=10))]
    nodes_per_org: u16,
    /// Run each node in a network namespace of its own (Linux, root, iproute2).
    #[arg(long)]
    netns: bool,
    #[command(flatten)]
    common: CommonArgs,
}

/// Play a scenario file: make its nodes, run its timeline, check the invariants.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto-testnet run testnet/scenarios/happy.toml
  otto-testnet run testnet/scenarios/ops-killed-mid-stage.toml --json report.json

The scenario format, the steps and the invariants are in docs/testnet.md. Exit status:
0 only if the timeline ran to its end and every invariant held, 1 if not, 2 if the
scenario file is bad.")]
struct RunArgs {
    /// The scenario file.
    scenario: PathBuf,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "OUT")]
    json: Option<PathBuf>,
    /// Run each node in a network namespace of its own (Linux, root, iproute2): partitions
    /// drop packets, and latency and loss steps work (with tc netem in the kernel).
    #[arg(long)]
    netns: bool,
    #[command(flatten)]
    common: CommonArgs,
}

/// Measure handoff latency and rate, status propagation, artifact throughput and idle
/// memory on real nodes, each next to a baseline measured in the same run.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  cargo run --release --bin otto-testnet -- bench
  otto-testnet bench --quick --json bench.json --svg bench.svg

Prints a table (figure, value, baseline, ratio) and writes it as JSON and as an SVG
chart. The figures and the JSON are described in docs/performance.md. Exit status: 0
when every figure was measured, 1 otherwise.")]
struct BenchArgs {
    /// Write the figures as JSON here [default: DIR/bench.json].
    #[arg(long, value_name = "OUT")]
    json: Option<PathBuf>,
    /// Write the chart as SVG here [default: DIR/bench.svg].
    #[arg(long, value_name = "OUT")]
    svg: Option<PathBuf>,
    /// Small counts and a mesh of 2 orgs x 2 nodes, to check that everything works.
    #[arg(long)]
    quick: bool,
    /// Runs of each kind for the handoff latency [default: 30, quick: 3].
    #[arg(long, value_name = "N")]
    handoffs: Option<usize>,
    /// Runs started at once for handoffs per second [default: 20, quick: 3].
    #[arg(long, value_name = "N")]
    concurrent: Option<usize>,
    /// The artifact's size in MiB [default: 64, quick: 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=4096))]
    artifact_mib: Option<u64>,
    /// Orgs of the large mesh [default: 4, quick: 2].
    #[arg(long, value_parser = clap::value_parser!(u16).range(2..=20))]
    orgs: Option<u16>,
    /// Nodes per org of the large mesh [default: 5, quick: 2].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=10))]
    nodes_per_org: Option<u16>,
    /// Seconds the nodes idle before their memory is read [default: 10, quick: 1].
    #[arg(long, value_name = "S")]
    idle_secs: Option<u64>,
    #[command(flatten)]
    common: CommonArgs,
}

/// Simulate many orgs and nodes handing stages to each other on the nodes' own rules,
/// with a faulty network, crashes and hostile nodes, checking every invariant on every
/// step.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto-testnet sim --orgs 10 --nodes 50 --runs 200 --seed 1
  cargo run --release --bin otto-testnet -- sim --orgs 100 --nodes 1000 --runs 10000 --seed 42
  otto-testnet sim --orgs 6 --nodes 18 --runs 40 --seeds 20 --faults hostile=3,crashes=3
  otto-testnet sim --orgs 6 --nodes 18 --runs 40 --seed 17 --replay

No process, socket or file: one process plays every node around the handoff state
machine, the offer checks and the run rules the nodes use (otto-handoff), over a
simulated network and clock. Faults (--faults, comma-separated KEY=VALUE, or none):
loss=PERMILLE, dup=PERMILLE, torn=PERMILLE (a crash half-way through an action
list), latency=LO-HI (ms), crashes=N, partitions=N, hostile=N (nodes that forge
receipts, forge chains and replay offers), stray=0|1 (hostile nodes also send receipts
to nodes that gave the stage to nobody). Faults heal 30 s after the last run starts;
then every run must finish. The default: loss=20,dup=20,torn=5,latency=5-80, a crash
and a partition per 20 nodes, a hostile node per 50 (at least one), stray=1. Exit
status: 0 when every
invariant held for every seed, 1 when one broke (its seed, what broke and the trace's
last steps are printed; --seed S --replay plays it again step by step), 2 on bad
arguments.")]
struct SimArgs {
    /// How many orgs.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    orgs: u64,
    /// How many nodes in all, spread evenly over the orgs.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    nodes: u64,
    /// How many runs, started at random nodes over the first seconds.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    runs: u64,
    /// The seed of everything random.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Try this many seeds, from --seed on, stopping at the first that breaks an invariant.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    seeds: u64,
    /// The faults, over the default (see below).
    #[arg(long, value_name = "SPEC")]
    faults: Option<String>,
    /// Print every step of the simulation as it happens.
    #[arg(long)]
    replay: bool,
    /// The most steps per seed before the simulation counts as stuck [default: 400 per run].
    #[arg(long, value_name = "N")]
    max_steps: Option<u64>,
}

/// Where the binaries and the work directory are.
#[derive(Debug, clap::Args)]
struct CommonArgs {
    /// The directory holding otto, otto-node and otto-agent [default: the directory of
    /// otto-testnet, built with cargo first when it is this workspace's target directory].
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// The work directory for homes and logs; new or empty [default: a new temporary
    /// directory].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Do not run cargo to build the binaries next to otto-testnet.
    #[arg(long)]
    no_build: bool,
}

/// Two orgs deliver a sample application together: dev builds and tests, ops deploys.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  cargo run --release --bin otto-testnet -- demo
  otto-testnet demo --dir /tmp/otto-demo      # keep everything in a directory you name
  otto-testnet demo --bin-dir ~/otto/bin      # use otto, otto-node, otto-agent from there
  otto-testnet demo --keep                    # then keep the nodes up to look at in the browser

Makes two node homes (acme-dev/dev-1 and acme-ops/ops-1), starts both nodes, joins
them with an invite, runs the sample pipeline until ops accepts the handoff (the first
run is refused until ops approves dev's steps), passes a poll gate and a webhook gate
on ops, then checks the receipt chain (otto verify), exports the attestations and
checks them offline. Prints a timeline of who did what. The work directory (homes,
node logs, attestations) is kept; the nodes are stopped. Exit status: 0 only if
every check held, 1 otherwise.")]
struct DemoArgs {
    /// The directory holding otto, otto-node and otto-agent [default: the directory of
    /// otto-testnet, built with cargo first when it is this workspace's target directory].
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// The work directory for homes, logs, the sample and the attestations; new or empty
    /// [default: a new temporary directory].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Do not run cargo to build the binaries next to otto-testnet.
    #[arg(long)]
    no_build: bool,
    /// Once every check held, keep both nodes running until Ctrl-C: print each node's web
    /// UI login URL and write nodes.json (name, org, home, api) to the work directory.
    #[arg(long)]
    keep: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => demo_command(&args),
        Command::Up(args) => up_command(&args),
        Command::Run(args) => run_command(&args),
        Command::Bench(args) => bench_command(&args),
        Command::Sim(args) => sim_command(&args),
    }
}

fn up_command(args: &UpArgs) -> ExitCode {
    if args.netns
        && let Err(reason) = netns::available()
    {
        eprintln!("error: {reason}");
        return ExitCode::from(2);
    }
    let (bins, dir) = match prepare(&args.common, "otto-up-") {
        Ok(found) => found,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut say = |line: &str| println!("  {line}");
    let made = if args.netns {
        Net::with_namespaces(&dir, bins).map_err(anyhow::Error::from)
    } else {
        Net::new(&dir, bins).map_err(anyhow::Error::from)
    };
    let mut net = match made.and_then(|net| {
        up::build_on(
            net,
            usize::from(args.orgs),
            usize::from(args.nodes_per_org),
            &mut say,
        )
    }) {
        Ok(net) => net,
        Err(error) => {
            eprintln!("error: {error:#}");
            eprintln!("the work directory is {}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    println!("\nthe mesh is up; point otto at a node:");
    for node in net.nodes() {
        // In a namespace, the node's API is on the namespace's own loopback.
        let within = node
            .host()
            .map_or_else(String::new, |h| format!("ip netns exec {} ", h.namespace()));
        println!(
            "  OTTO_HOME={} {within}{} status      # {} of {}",
            node.home.display(),
            net.bins().otto.display(),
            node.name,
            node.org
        );
    }
    println!("logs: {}/*.log", dir.display());
    println!("press Ctrl-C to stop every node");
    let signal = up::wait_for_signal();
    let unclean = net.stop_all();
    // With --netns, this deletes the namespaces, now that no node runs in them.
    drop(net);
    match signal {
        Ok(name) => println!("\n{name}: stopped every node"),
        Err(error) => eprintln!("error: waiting for a signal: {error:#}"),
    }
    if !unclean.is_empty() {
        println!("not stopped cleanly: {}", unclean.join(", "));
    }
    println!("the work directory is kept: {}", dir.display());
    ExitCode::SUCCESS
}

fn run_command(args: &RunArgs) -> ExitCode {
    let scenario = match Scenario::load_with(&args.scenario, args.netns) {
        Ok(scenario) => scenario,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if args.netns
        && let Err(reason) = netns::available()
    {
        eprintln!("error: {reason}");
        return ExitCode::from(2);
    }
    let name = args
        .scenario
        .file_stem()
        .map_or_else(|| "scenario".into(), |s| s.to_string_lossy().into_owned());
    let (bins, dir) = match prepare(&args.common, &format!("otto-{name}-")) {
        Ok(found) => found,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    println!("scenario {name}: {}", scenario.description);
    let report = if args.netns {
        println!("each node runs in a network namespace of its own");
        play::play_with(&scenario, &name, bins, &dir, &mut play::Netns::default())
    } else {
        play::play(&scenario, &name, bins, &dir)
    };
    println!("\nresult");
    if let Some(error) = &report.error {
        println!("  ✗ the timeline did not finish: {error}");
    }
    for check in &report.checks {
        println!(
            "  {} {}: {}",
            if check.held { "✓" } else { "✗" },
            check.name,
            check.detail
        );
    }
    println!("work directory: {}", dir.display());
    if let Some(out) = &args.json {
        let text = serde_json::to_string_pretty(&report.to_json()).unwrap_or_default();
        if let Err(error) = std::fs::write(out, text + "\n") {
            eprintln!("error: writing {}: {error}", out.display());
            return ExitCode::FAILURE;
        }
    }
    if report.held() {
        println!("\n{name} passed in {}", otto_testnet::human(report.took));
        ExitCode::SUCCESS
    } else {
        println!("\n{name} failed after {}", otto_testnet::human(report.took));
        ExitCode::FAILURE
    }
}

/// The executables and a new or empty work directory (a new temporary one, kept, by
/// default).
fn prepare(common: &CommonArgs, prefix: &str) -> anyhow::Result<(otto_testnet::Bins, PathBuf)> {
    let bins = demo::find_bins(&demo::Options {
        bin_dir: common.bin_dir.clone(),
        dir: None,
        build: !common.no_build,
        keep: false,
    })?;
    let dir = match &common.dir {
        Some(dir) => {
            if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
                anyhow::bail!(
                    "{} is not empty: name a new or empty directory",
                    dir.display()
                );
            }
            std::fs::create_dir_all(dir)?;
            std::fs::canonicalize(dir)?
        }
        None => tempfile::Builder::new().prefix(prefix).tempdir()?.keep(),
    };
    Ok((bins, dir))
}

fn demo_command(args: &DemoArgs) -> ExitCode {
    let options = demo::Options {
        bin_dir: args.bin_dir.clone(),
        dir: args.dir.clone(),
        build: !args.no_build,
        keep: args.keep,
    };
    let outcome = match demo::run(&options) {
        Ok(outcome) => outcome,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    println!("\nresult");
    for (check, held) in &outcome.checks {
        println!("  {} {check}", if *held { "✓" } else { "✗" });
    }
    let dir = outcome.dir.display();
    println!("\nlook around in {dir}:");
    println!(
        "  dev-1/, ops-1/          the nodes' homes (OTTO_HOME={dir}/dev-1 {} status)",
        outcome.bins.otto.display()
    );
    println!("  dev-1.log, ops-1.log    what each node logged");
    println!("  attestations.json       the run's plan, receipts and in-toto attestations");
    println!("  shop/                   the sample application and its Ottofile");
    println!("remove it with: rm -rf {dir}");
    if !args.keep {
        println!(
            "to follow the delivery in the browser, run it again with --keep: the nodes stay up \
             and print their web UI's login URLs"
        );
    }
    if outcome.held() {
        println!("\neverything held");
        ExitCode::SUCCESS
    } else {
        println!("\nnot everything held (✗ above)");
        ExitCode::FAILURE
    }
}

fn bench_command(args: &BenchArgs) -> ExitCode {
    let mut options = if args.quick {
        bench::Options::quick()
    } else {
        bench::Options::full()
    };
    options.handoffs = args.handoffs.unwrap_or(options.handoffs);
    options.concurrent = args.concurrent.unwrap_or(options.concurrent);
    options.artifact_mib = args.artifact_mib.unwrap_or(options.artifact_mib);
    options.orgs = args.orgs.map_or(options.orgs, usize::from);
    options.nodes_per_org = args
        .nodes_per_org
        .map_or(options.nodes_per_org, usize::from);
    if let Some(secs) = args.idle_secs {
        options.idle = std::time::Duration::from_secs(secs);
    }
    let (bins, dir) = match prepare(&args.common, "otto-bench-") {
        Ok(found) => found,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "otto-testnet bench: real nodes on this machine, each figure next to a same-run baseline"
    );
    println!("  work dir  {}", dir.display());
    let mut say = |line: &str| println!("  {line}");
    let report = match bench::run(&options, bins, &dir, &mut say) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("error: {error:#}");
            eprintln!("the work directory is {}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    println!("\n{}", report.table());
    let command = std::env::args()
        .enumerate()
        .map(|(i, a)| if i == 0 { "otto-testnet".to_owned() } else { a })
        .collect::<Vec<_>>()
        .join(" ");
    let json = args.json.clone().unwrap_or_else(|| dir.join("bench.json"));
    let svg = args.svg.clone().unwrap_or_else(|| dir.join("bench.svg"));
    let text = serde_json::to_string_pretty(&report.to_json(&command)).unwrap_or_default();
    for (path, text) in [(&json, text + "\n"), (&svg, report.svg())] {
        if let Err(error) = std::fs::write(path, text) {
            eprintln!("error: writing {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
    }
    println!("wrote {} and {}", json.display(), svg.display());
    println!(
        "took {}; the work directory is kept: {}",
        otto_testnet::human(report.took),
        dir.display()
    );
    ExitCode::SUCCESS
}

fn sim_command(args: &SimArgs) -> ExitCode {
    use otto_handoff::sim::scale::{FaultSpec, Scale};
    let (Ok(orgs), Ok(nodes), Ok(runs)) = (
        usize::try_from(args.orgs),
        usize::try_from(args.nodes),
        usize::try_from(args.runs),
    ) else {
        eprintln!("error: the sizes do not fit this machine");
        return ExitCode::from(2);
    };
    let base = FaultSpec::for_nodes(nodes);
    let faults = match args.faults.as_deref() {
        Some(text) => match FaultSpec::parse(text, base) {
            Ok(faults) => faults,
            Err(error) => {
                eprintln!("error: --faults: {error}");
                return ExitCode::from(2);
            }
        },
        None => base,
    };
    let mut scale = Scale {
        orgs,
        nodes,
        runs,
        seed: args.seed,
        faults,
        max_steps: args.max_steps.unwrap_or(args.runs.saturating_mul(400)),
    };
    if nodes < orgs || nodes % orgs != 0 {
        eprintln!(
            "error: --nodes {nodes} is not a multiple of --orgs {orgs}: every org gets as many nodes"
        );
        return ExitCode::from(2);
    }
    println!(
        "otto-testnet sim: {orgs} orgs, {nodes} nodes, {runs} runs, faults {}",
        scale.faults
    );
    let last = args.seed.saturating_add(args.seeds - 1);
    let started = std::time::Instant::now();
    for seed in args.seed..=last {
        scale.seed = seed;
        let observe: Option<otto_handoff::sim::Observer> = if args.replay {
            Some(Box::new(|line: &str| println!("  {line}")))
        } else {
            None
        };
        let outcome = match otto_testnet::sim::run(&scale, observe) {
            Ok(outcome) => outcome,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(2);
            }
        };
        if let Some(violation) = &outcome.report.violation {
            println!("\nseed {seed}: an invariant broke at {violation}");
            if !args.replay {
                println!("the last steps:");
                for line in &outcome.report.recent {
                    println!("  {line}");
                }
            }
            println!(
                "\nreplay it step by step: otto-testnet sim --orgs {orgs} --nodes {nodes} --runs {runs} \
                 --faults {} --max-steps {} --seed {seed} --replay",
                scale.faults, scale.max_steps
            );
            println!(
                "found after {} seed(s) in {:.1} s",
                seed - args.seed + 1,
                started.elapsed().as_secs_f64()
            );
            return ExitCode::FAILURE;
        }
        if args.seeds == 1 {
            println!("seed {seed}: every invariant held");
            print!("{}", outcome.describe(&scale));
        } else {
            println!(
                "seed {seed}: every invariant held ({} runs, {} handoffs, {:.1} s)",
                outcome.report.finished,
                outcome.report.handoffs,
                outcome.run.as_secs_f64()
            );
        }
    }
    if args.seeds > 1 {
        println!(
            "{} seeds, every invariant held, in {:.1} s",
            args.seeds,
            started.elapsed().as_secs_f64()
        );
    }
    ExitCode::SUCCESS
}
