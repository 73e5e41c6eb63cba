//! `otto-node init`: create a node's home.

use std::io::{self, Write as _};
use std::path::PathBuf;

use anyhow::Context as _;
use otto_node::daemon::{system_rng, unix_now};
use otto_node::home::{self, Home, InitOptions};

/// Create a node's home: configuration, keys, certificate, trust store, CA, store.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto-node init --home ~/.otto --org acme --name ci-1
  otto-node init --home /srv/otto-ops --org acme --name ops-1 --answers-to ops
  otto-node init --home /srv/otto-2 --org acme --name ci-2 --org-key ~/.otto/org.key --json

The first node of an org makes the org key (org.key in its home; keep a copy somewhere
safe and off the node). Further nodes of the org are made with --org-key FILE: their
certificate is signed with that key, which is not copied into their home.
An existing non-empty directory is refused.")]
pub(crate) struct Args {
    /// The home directory to create [default: ~/.otto].
    #[arg(long, value_name = "DIR", env = "OTTO_HOME")]
    home: Option<PathBuf>,
    /// The org's name.
    #[arg(long, value_name = "NAME")]
    org: String,
    /// The node's name within its org.
    #[arg(long, value_name = "NAME")]
    name: String,
    /// The org key file of an existing org (for the org's second and later nodes).
    #[arg(long, value_name = "FILE")]
    org_key: Option<PathBuf>,
    /// A stage owner this node runs (repeatable), e.g. --answers-to ops.
    #[arg(long = "answers-to", value_name = "NAME")]
    answers_to: Vec<String>,
    /// Print what was made as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let home = Home::resolve(args.home)?;
    let options = InitOptions {
        org: args.org,
        name: args.name,
        org_key: args.org_key,
        answers_to: args.answers_to,
    };
    let made = home::init(home.root(), &options, &mut system_rng(), unix_now())
        .with_context(|| format!("cannot create a node home in {}", home.root().display()))?;
    let mut out = io::stdout().lock();
    if args.json {
        let value = serde_json::json!({
            "home": made.home,
            "node": made.node,
            "org": made.org,
            "peer_id": made.peer_id,
            "org_key": made.org_key,
        });
        writeln!(out, "{value}")?;
    } else {
        writeln!(
            out,
            "created node {} of org {} in {}",
            made.node,
            made.org,
            made.home.display()
        )?;
        writeln!(out, "  peer id  {}", made.peer_id)?;
        writeln!(
            out,
            "  org key  {} ({})",
            made.org_key,
            made.org_key_file.display()
        )?;
        writeln!(
            out,
            "start it with: otto-node start --home {}",
            made.home.display()
        )?;
    }
    Ok(())
}
