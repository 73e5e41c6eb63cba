//! `otto approve`: pass a stage's waiting input gate.

use std::io::{self, Write as _};

use anyhow::Context as _;
use otto_node::api::types::{Approve, Approved};

use super::run::path_segment;
use crate::Failure;
use crate::client::{NodeArgs, user_name};

/// Approve a stage's waiting input gate.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto approve 01J9ZQ3M5V8R2K4T6W8Y0A2C4E 'Deploy production'
  otto approve 01J9ZQ3M5V8R2K4T6W8Y0A2C4E Deploy --as alice

The approval is recorded with the approver's name; a gate with `approvers: [...]`
accepts only those names.")]
pub(crate) struct Args {
    /// The run.
    run: String,
    /// The stage whose gate to approve.
    stage: String,
    /// Who approves [default: $USER].
    #[arg(long = "as", value_name = "NAME")]
    who: Option<String>,
    #[command(flatten)]
    node: NodeArgs,
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let client = args.node.client()?;
    let who = args.who.unwrap_or_else(user_name);
    let approved: Approved = client.post(
        &format!(
            "/v1/runs/{}/gates/{}/approve",
            path_segment(&args.run),
            path_segment(&args.stage)
        ),
        &Approve { who: Some(who) },
    )?;
    writeln!(
        io::stdout(),
        "approved {} of run {} as {}",
        approved.stage,
        approved.run,
        approved.who
    )
    .context("writing the answer")?;
    Ok(())
}
