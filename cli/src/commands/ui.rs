//! `otto ui`: a one-time sign-in link to the local node's web UI.

use std::io::{self, Write as _};
use std::process::{Command, Stdio};

use anyhow::Context as _;
use otto_node::ui::LoginCreated;

use crate::Failure;
use crate::client::NodeArgs;

/// Print (and optionally open) a one-time sign-in link to the node's web UI.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto ui
  otto ui --open
  otto ui --json | jq -r .url

The link signs one browser in to the UI the node serves under /ui on its API
address. It works once, for 5 minutes; the session it starts lasts 12 hours or until
the node restarts. Anyone holding the link before it is used can sign in as the
node's operator: do not share it.")]
pub(crate) struct Args {
    /// Open the link in the default browser (xdg-open or open), when one is there.
    #[arg(long)]
    open: bool,
    /// Print the answer as JSON: {"url", "expires_in_secs"}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    node: NodeArgs,
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let client = args.node.client()?;
    let login: LoginCreated = client.post("/v1/ui/logins", &serde_json::json!({}))?;
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &login).context("writing json")?;
        writeln!(out).context("writing json")?;
    } else {
        writeln!(out, "{}", login.url).context("writing the link")?;
        writeln!(
            io::stderr(),
            "open it in a browser within {} minutes; it works once",
            login.expires_in_secs / 60
        )
        .context("writing the hint")?;
    }
    if args.open && !open(&login.url) {
        writeln!(
            io::stderr(),
            "no xdg-open or open here: open the link yourself"
        )
        .context("writing the hint")?;
    }
    Ok(())
}

/// Opens `url` with the first of `xdg-open` and `open` that starts; false when none does.
fn open(url: &str) -> bool {
    ["xdg-open", "open"].into_iter().any(|opener| {
        Command::new(opener)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .is_ok()
    })
}
