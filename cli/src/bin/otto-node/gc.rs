//! `otto-node gc`: remove the logs, workspaces and blobs of runs that ended long ago.

use std::io::{self, Write as _};

use anyhow::Context as _;
use otto_node::api::GcRequest;
use otto_node::gc::Report;

use crate::client::NodeArgs;

/// Remove the logs, workspaces and blobs of runs that ended more than DAYS days ago.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto-node gc --dry-run
  otto-node gc --older-than 7

Removes, for every run that ended (succeeded, failed or was cancelled) more than DAYS
days ago: its stage logs (logs/RUN/ in the home), its workspaces ([agent] work_dir/RUN/)
and the blobs only it names (snapshot, artifacts, saved workspaces). A blob another run
still names, a cache holds, or that was stored in the last day stays. Nothing of a run
that has not ended is touched; the runs themselves stay in `otto status`. The node does
this by itself every day with [node] retention_days (default 30). Talks to the running
node; with the node stopped, works on the home directly.")]
pub(crate) struct Args {
    #[command(flatten)]
    node: NodeArgs,
    /// Runs that ended more than this many days ago [default: [node] retention_days].
    #[arg(long, value_name = "DAYS")]
    older_than: Option<u32>,
    /// Say what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let home = args.node.home()?;
    let request = GcRequest {
        older_than_days: args.older_than,
        dry_run: args.dry_run,
    };
    let report: Report = if home.read_api_addr().is_ok() {
        let client = args.node.client()?;
        client.post("/v1/gc", &request)?
    } else {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        otto_node::gc::collect_home(&home, args.older_than, now, args.dry_run)
            .with_context(|| format!("cannot collect in {}", home.root().display()))?
    };
    let mut out = io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        for line in report.lines() {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}
