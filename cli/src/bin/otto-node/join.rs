//! `otto-node join`: join the node that issued an invite token.

use std::io::{self, Read as _, Write as _};

use anyhow::{Context as _, bail};
use otto_node::membership::{JoinOptions, Joined, Policy};

use crate::client::NodeArgs;
use crate::invite::{ScopeArgs, definitions_name, list_or_none};

/// The longest token read from standard input, in bytes.
const MAX_TOKEN: u64 = 64 * 1024;

/// Join the node that issued an invite token; both nodes then trust each other's org.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto-node join otto1ab3…
  otto-node join otto1ab3… --alias ops
  otto-node join - < token.txt
  otto-node join otto1ab3… --alias ops --stages 'Notify*'

The node must be running: it dials the inviting node at an address in the token,
presents the token with its own certificate, and on success pins the inviting org's key
under the org's name, with --alias as a second name for it (stage owners in Ottofiles
use that name, e.g. owner = 'ops').

By default the inviting org may ask nothing of this node. To let it hand stages to this
node in return, name them with --stages (and --pipelines, --envs, --definitions, as for
`otto-node invite`). A token works once and only before it expires.")]
pub(crate) struct Args {
    #[command(flatten)]
    node: NodeArgs,
    /// The invite token, or - to read it from standard input.
    #[arg(value_name = "TOKEN")]
    token: String,
    /// The local name for the inviting org [default: its org name].
    #[arg(long, value_name = "NAME")]
    alias: Option<String>,
    #[command(flatten)]
    grant: ScopeArgs,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let token = if args.token == "-" {
        let mut text = String::new();
        io::stdin()
            .lock()
            .take(MAX_TOKEN)
            .read_to_string(&mut text)
            .context("reading the token from standard input")?;
        text
    } else {
        args.token
    };
    if token.trim().is_empty() {
        bail!("the token is empty");
    }
    let grant = if args.grant.stages.is_empty() {
        if !args.grant.pipelines.is_empty() || !args.grant.envs.is_empty() {
            bail!("--pipelines and --envs grant nothing without --stages");
        }
        None
    } else {
        Some(Policy {
            roles: Vec::new(),
            pipelines: if args.grant.pipelines.is_empty() {
                vec!["*".to_owned()]
            } else {
                args.grant.pipelines
            },
            stages: args.grant.stages,
            environments: args.grant.envs,
            definitions: args.grant.definitions.into(),
            secrets: args.grant.secrets,
            max_parallel: args
                .grant
                .max_parallel
                .unwrap_or(Policy::default().max_parallel),
            repos: Vec::new(),
        })
    };
    let options = JoinOptions {
        token,
        alias: args.alias,
        grant,
    };
    let client = args.node.client()?;
    let joined: Joined = client.post("/v1/join", &options)?;
    let mut out = io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&joined)?)?;
        return Ok(());
    }
    let alias = joined
        .alias
        .as_ref()
        .map(|alias| format!(" as {alias}"))
        .unwrap_or_default();
    writeln!(
        out,
        "joined {} of org {}{alias} ({})",
        joined.node, joined.org, joined.org_key
    )?;
    writeln!(
        out,
        "  this node may hand it: stages {}; pipelines {}; environments {}",
        list_or_none(&joined.scope.stages),
        list_or_none(&joined.scope.pipelines),
        list_or_none(&joined.scope.environments),
    )?;
    match &joined.granted {
        Some(policy) => writeln!(
            out,
            "  it may hand this node: stages {}; pipelines {}; environments {}; definitions {}",
            list_or_none(&policy.stages),
            list_or_none(&policy.pipelines),
            list_or_none(&policy.environments),
            definitions_name(policy.definitions),
        )?,
        None => writeln!(out, "  it may hand this node: nothing")?,
    }
    Ok(())
}
