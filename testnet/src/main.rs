//! `otto-testnet`: local multi-organisation Otto meshes on real processes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use otto_testnet::demo;

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
    }
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
