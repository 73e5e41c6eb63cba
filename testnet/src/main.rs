//! `otto-testnet`: local multi-organisation Otto meshes on real processes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use otto_testnet::scenario::Scenario;
use otto_testnet::{demo, play, up};

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
}

/// Start a mesh of orgs whose nodes trust each other, and keep it running until Ctrl-C.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto-testnet up --orgs 3 --nodes-per-org 2
  otto-testnet up --orgs 2 --nodes-per-org 1 --dir /tmp/mesh

Makes orgs org-1..N with nodes org-I-n1..nM (the first node of each org holds its org
key), starts every node, and lets every org hand every other org any stage: each org's
first node invites every node of the other orgs (--stages '*' --pipelines '*'
--definitions approved). Prints how to point otto at each node, then waits for Ctrl-C
(SIGINT or SIGTERM) and stops every node by PID. The work directory is kept.")]
struct UpArgs {
    /// How many orgs.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=20))]
    orgs: u16,
    /// How many nodes each org runs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=10))]
    nodes_per_org: u16,
    /// Network namespaces per node (not built yet).
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
    /// Network namespaces per node, which latency and loss steps need (not built yet).
    #[arg(long)]
    netns: bool,
    #[command(flatten)]
    common: CommonArgs,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => demo_command(&args),
        Command::Up(args) => up_command(&args),
        Command::Run(args) => run_command(&args),
    }
}

fn up_command(args: &UpArgs) -> ExitCode {
    if args.netns {
        eprintln!("error: --netns is not built yet");
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
    let mut net = match up::build(
        &dir,
        bins,
        usize::from(args.orgs),
        usize::from(args.nodes_per_org),
        &mut say,
    ) {
        Ok(net) => net,
        Err(error) => {
            eprintln!("error: {error:#}");
            eprintln!("the work directory is {}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    println!("\nthe mesh is up; point otto at a node:");
    for node in net.nodes() {
        println!(
            "  OTTO_HOME={} {} status      # {} of {}",
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
    if args.netns {
        eprintln!("error: --netns is not built yet");
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
    let report = play::play(&scenario, &name, bins, &dir);
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
    if outcome.held() {
        println!("\neverything held");
        ExitCode::SUCCESS
    } else {
        println!("\nnot everything held (✗ above)");
        ExitCode::FAILURE
    }
}
