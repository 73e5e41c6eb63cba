//! `otto-node start`: run the node in the foreground.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use anyhow::Context as _;
use otto_node::home::Home;
use tracing_subscriber::EnvFilter;

/// Run the node in the foreground until SIGINT or SIGTERM.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto-node start --home ~/.otto
  RUST_LOG=otto_node=debug otto-node start

Logs go to standard error (filter with RUST_LOG, default info). The API address is
written to api.addr in the home while the node runs; the CLI finds the node there.
Stopping with Ctrl-C or SIGTERM is clean; after a kill -9 the next start recovers:
interrupted stages run again as their next attempt.")]
pub(crate) struct Args {
    /// The node's home [default: ~/.otto].
    #[arg(long, value_name = "DIR", env = "OTTO_HOME")]
    home: Option<PathBuf>,
    /// Serve the testnet's control endpoints (partitions, the intruder): for nodes that
    /// otto-testnet starts, never for a real node. Hidden from --help.
    #[arg(long, hide = true)]
    testnet_control: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    // No other process of the node's user may read this one's memory or environment
    // through /proc or ptrace it: it holds the node key, the vault key and the API token.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .context("cannot make the node process undumpable")?;
    let home = Home::resolve(args.home)?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime
        .block_on(otto_node::daemon::run_with(
            home.clone(),
            otto_node::daemon::Options::with_testnet_control(args.testnet_control),
        ))
        .with_context(|| format!("node of {}", home.root().display()))?;
    Ok(())
}
