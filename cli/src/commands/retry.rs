//! `otto retry`: run a failed or refused stage again, as a new attempt of the same run.

use std::io::{self, Write as _};

use anyhow::Context as _;
use otto_node::api::types::{Retried, Retry};

use super::run::path_segment;
use crate::Failure;
use crate::client::{NodeArgs, user_name};

/// Retry a run's failed or refused stage and what depends on it, as new attempts of the
/// same run.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto retry 01J9ZQ3M5V8R2K4T6W8Y0A2C4E
  otto retry 01J9ZQ3M5V8R2K4T6W8Y0A2C4E Deploy --as alice

With no STAGE, every stage that failed is retried (every cancelled one in a cancelled run).
The stages that succeeded keep their receipts and artifacts and are not run again; the
retried stages start from them. A stage owned by another node is offered to it again as the
next attempt, with this node's signed retry, and that node checks it as any offer (an
approval given since the refusal counts). A stage another node moves on (a third org's node
after its own stage, or the owner after a stage of its own) is retried through that node:
this node sends it the signed retry and it offers the stage again, or runs it. Run it on the
node that started the run, once the run has ended; follow the run with `otto status RUN`.")]
pub(crate) struct Args {
    /// The run.
    run: String,
    /// The stage to retry [default: every stage that failed].
    stage: Option<String>,
    /// Who retries, recorded on the stages retried [default: $USER].
    #[arg(long = "as", value_name = "NAME")]
    who: Option<String>,
    #[command(flatten)]
    node: NodeArgs,
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let client = args.node.client()?;
    let who = args.who.unwrap_or_else(user_name);
    let retried: Retried = client.post(
        &format!("/v1/runs/{}/retry", path_segment(&args.run)),
        &Retry {
            stage: args.stage,
            who: Some(who),
        },
    )?;
    writeln!(
        io::stdout(),
        "retrying {} of run {} as {}; follow it with `otto status {}`",
        retried.stages.join(", "),
        retried.run,
        retried.who,
        retried.run
    )
    .context("writing the answer")?;
    Ok(())
}
