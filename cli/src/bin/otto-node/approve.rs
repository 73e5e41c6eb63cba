//! `otto-node approve`: approve a foreign stage's inline steps by their digest.

use std::io::{self, Write as _};

use otto_node::api::ApproveRequest;
use otto_node::membership::ApprovalView;

use crate::client::NodeArgs;

/// Approve a stage definition (inline steps written by another org) by its digest.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto-node approve sha256:3fa1c0…

A node runs a stage handed to it by another org only when the stage names a blueprint
the node publishes, or carries inline steps whose digest was approved here and the org's
policy allows approved definitions (`otto-node invite --definitions approved`). A
rejected handoff shows the digest and this command on the asking side.")]
pub(crate) struct Args {
    #[command(flatten)]
    node: NodeArgs,
    /// The definition digest: sha256: and 64 lowercase hex digits.
    #[arg(value_name = "DIGEST")]
    digest: String,
    /// Print the approval as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let client = args.node.client()?;
    let approval: ApprovalView = client.post(
        "/v1/approvals",
        &ApproveRequest {
            digest: args.digest,
        },
    )?;
    let mut out = io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&approval)?)?;
    } else {
        writeln!(out, "approved {}", approval.digest)?;
    }
    Ok(())
}
