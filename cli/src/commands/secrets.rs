//! `otto secrets`: set, list and remove the node's secrets. Values are read from
//! standard input, never from the command line, and never printed.

use std::io::{self, IsTerminal as _, Read as _, Write as _};

use anyhow::{Context as _, bail};
use otto_node::api::types::SecretNames;
use zeroize::Zeroizing;

use super::run::path_segment;
use crate::Failure;
use crate::client::NodeArgs;

/// The largest secret value, as the vault allows.
const MAX_VALUE: usize = 64 * 1024;

/// Manage the node's secrets.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  printf %s \"$TOKEN\" | otto secrets set DEPLOY_TOKEN
  otto secrets set TLS_KEY < key.pem
  otto secrets list
  otto secrets rm DEPLOY_TOKEN

A value is read from standard input exactly as given (a trailing newline is kept:
use printf %s rather than echo). Reading from a terminal is refused, so a value is
never echoed on screen or kept in the shell's history.")]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Store a secret; the value comes from standard input.
    #[command(after_help = "Examples:
  printf %s \"$TOKEN\" | otto secrets set DEPLOY_TOKEN
  otto secrets set TLS_KEY < key.pem")]
    Set {
        /// The secret's name: A-Z, 0-9 and _, not starting with a digit.
        name: String,
    },
    /// List the secrets' names (never their values).
    #[command(after_help = "Examples:
  otto secrets list
  otto secrets list --json --home /srv/otto")]
    List {
        /// Print the names as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a secret.
    #[command(after_help = "Examples:
  otto secrets rm DEPLOY_TOKEN")]
    Rm {
        /// The secret's name.
        name: String,
    },
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    match args.command {
        Command::Set { name } => {
            let stdin = io::stdin();
            if stdin.is_terminal() {
                bail_failure(&format!(
                    "refusing to read a secret from a terminal, where it would be echoed; \
                     pipe it in: printf %s \"$VALUE\" | otto secrets set {name}"
                ))?;
            }
            let mut value = Zeroizing::new(Vec::new());
            stdin
                .lock()
                .take(MAX_VALUE as u64 + 1)
                .read_to_end(&mut value)
                .context("reading the value from standard input")?;
            if value.len() > MAX_VALUE {
                bail_failure("a secret value is at most 64 KiB")?;
            }
            if value.is_empty() {
                bail_failure("the value on standard input is empty")?;
            }
            let client = args.node.client()?;
            client.put_bytes(
                &format!("/v1/secrets/{}", path_segment(&name)),
                value.to_vec(),
            )?;
            writeln!(io::stderr(), "secret {name} set").context("writing the answer")?;
        }
        Command::List { json } => {
            let client = args.node.client()?;
            let names: SecretNames = client.get("/v1/secrets")?;
            let mut out = io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &names).context("writing json")?;
                writeln!(out).context("writing json")?;
            } else {
                for name in &names.secrets {
                    writeln!(out, "{name}").context("writing the names")?;
                }
            }
        }
        Command::Rm { name } => {
            let client = args.node.client()?;
            client.delete(&format!("/v1/secrets/{}", path_segment(&name)))?;
            writeln!(io::stderr(), "secret {name} removed").context("writing the answer")?;
        }
    }
    Ok(())
}

fn bail_failure(message: &str) -> anyhow::Result<()> {
    bail!("{message}")
}
