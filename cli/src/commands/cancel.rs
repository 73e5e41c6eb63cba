//! `otto cancel`: stop a run.

use std::io::{self, Write as _};

use anyhow::Context as _;
use otto_node::api::types::{Cancel, Cancelled};

use super::run::path_segment;
use crate::Failure;
use crate::client::{NodeArgs, user_name};

/// Cancel a run: stop its running stages, close its waiting gates, start nothing more.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto cancel 01J9ZQ3M5V8R2K4T6W8Y0A2C4E
  otto cancel 01J9ZQ3M5V8R2K4T6W8Y0A2C4E --as alice

Running steps are stopped (their whole process group), the stages not yet started are
marked cancelled with who cancelled them, and the run ends `cancelled`. A run that has
already ended is left as it is (exit status 1).")]
pub(crate) struct Args {
    /// The run.
    run: String,
    /// Who cancels, recorded in the run [default: $USER].
    #[arg(long = "as", value_name = "NAME")]
    who: Option<String>,
    #[command(flatten)]
    node: NodeArgs,
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let client = args.node.client()?;
    let who = args.who.unwrap_or_else(user_name);
    let cancelled: Cancelled = client.post(
        &format!("/v1/runs/{}/cancel", path_segment(&args.run)),
        &Cancel { who: Some(who) },
    )?;
    writeln!(
        io::stdout(),
        "cancelled run {} as {}",
        cancelled.run,
        cancelled.who
    )
    .context("writing the answer")?;
    Ok(())
}
