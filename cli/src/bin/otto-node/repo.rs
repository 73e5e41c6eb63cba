//! `otto-node repo`: the repositories whose pushes start runs.

use std::io::{self, Write as _};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use otto_node::api::types::{Looked, RepoAdd, RepoList, RepoView};

use crate::client::NodeArgs;

/// Watch repositories: a push (webhook, poll or local hook) starts a run at its commit.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto-node repo add https://github.com/acme/app.git --forge github --secret-file hook.secret
  otto-node repo add /srv/git/app.git --poll 60s
  otto-node repo list
  otto-node repo fetch app
  otto-node repo rm app

The node keeps a bare mirror of each repository in its home and fetches into it; a run
checks out exactly the commit that started it. Point the forge's webhook at
https://NODE:PORT/hooks/FORGE/NAME (the node's webhook listener; `repo list` shows the
path) with the same secret. Without --secret-file the node makes a secret and prints it
once.")]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Add a repository: make its mirror, fetch it, and start runs for later pushes.
    #[command(after_help = "Examples:
  otto-node repo add https://github.com/acme/app.git --forge github --secret-file hook.secret
  otto-node repo add /srv/git/app.git --poll 60s")]
    Add {
        /// Where to fetch from: https://, ssh://, git://, file://, user@host:path or an
        /// absolute path.
        url: String,
        /// Its name on this node [default: the URL's last segment without .git].
        #[arg(long)]
        name: Option<String>,
        /// Which forge sends its webhooks.
        #[arg(long, default_value = "generic", value_parser = ["github", "gitlab", "gitea", "generic"])]
        forge: String,
        /// A file holding the webhook secret [default: the node makes one].
        #[arg(long, value_name = "FILE")]
        secret_file: Option<PathBuf>,
        /// The branch `schedule` triggers run on [default: the remote's default branch].
        #[arg(long)]
        branch: Option<String>,
        /// Also poll with `git ls-remote` this often (e.g. 60s, 5m; at least 10s).
        #[arg(long, value_name = "INTERVAL", value_parser = parse_interval)]
        poll: Option<u64>,
        /// The forge's API URL, for commit statuses.
        #[arg(long, value_name = "URL")]
        api_url: Option<String>,
        /// The node secret holding the forge's API token.
        #[arg(long, value_name = "SECRET")]
        token_secret: Option<String>,
        /// Print the repository as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the repositories.
    #[command(after_help = "Examples:
  otto-node repo list")]
    List {
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fetch now and start runs for what changed (what `otto hook install`'s hook does).
    #[command(after_help = "Examples:
  otto-node repo fetch app")]
    Fetch {
        /// The repository's name.
        name: String,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a repository and its mirror.
    #[command(after_help = "Examples:
  otto-node repo rm app")]
    Rm {
        /// The repository's name.
        name: String,
    },
}

/// `60`, `60s`, `5m`, `1h` as seconds.
fn parse_interval(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not an interval like 60s or 5m"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("{text:?} is not an interval like 60s or 5m")),
    };
    if secs < 10 {
        return Err("poll at most every 10 seconds".into());
    }
    Ok(secs)
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let client = args.node.client()?;
    let mut out = io::stdout().lock();
    match args.command {
        Command::Add {
            url,
            name,
            forge,
            secret_file,
            branch,
            poll,
            api_url,
            token_secret,
            json,
        } => {
            let secret = match secret_file {
                None => None,
                Some(path) => {
                    let text = std::fs::read_to_string(&path).with_context(|| {
                        format!("cannot read the secret file {}", path.display())
                    })?;
                    let text = text.trim_end_matches(['\n', '\r']).to_owned();
                    if text.is_empty() {
                        bail!("the secret file {} is empty", path.display());
                    }
                    Some(text)
                }
            };
            let repo: RepoView = client.post(
                "/v1/repos",
                &RepoAdd {
                    url,
                    name,
                    forge: Some(forge),
                    secret,
                    branch,
                    poll_secs: poll,
                    api_url,
                    token_secret,
                },
            )?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&repo)?)?;
            } else {
                writeln!(
                    out,
                    "added {} ({}), branch {}",
                    repo.config.name, repo.config.url, repo.config.branch
                )?;
                writeln!(
                    out,
                    "webhook: {} ({} signature)",
                    repo.webhook_path,
                    repo.config.forge.name()
                )?;
                if let Some(secret) = &repo.secret {
                    writeln!(out, "webhook secret (shown once): {secret}")?;
                }
            }
        }
        Command::List { json } => {
            let list: RepoList = client.get("/v1/repos")?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&list)?)?;
            } else if list.repos.is_empty() {
                writeln!(out, "no repositories (add one with otto-node repo add URL)")?;
            } else {
                for repo in &list.repos {
                    let poll = repo
                        .config
                        .poll_secs
                        .map_or_else(|| "no polling".to_owned(), |s| format!("polled every {s}s"));
                    writeln!(
                        out,
                        "{}  {}  branch {}  {}  {}",
                        repo.config.name,
                        repo.config.url,
                        repo.config.branch,
                        repo.webhook_path,
                        poll
                    )?;
                }
            }
        }
        Command::Fetch { name, json } => {
            let looked: Looked = client.post(&format!("/v1/repos/{name}/fetch"), &())?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&looked)?)?;
            } else {
                print_looked(&mut out, &looked)?;
            }
        }
        Command::Rm { name } => {
            client.delete(&format!("/v1/repos/{name}"))?;
            writeln!(out, "removed {name}")?;
        }
    }
    Ok(())
}

/// What a look started, one line each.
pub(crate) fn print_looked(out: &mut impl io::Write, looked: &Looked) -> io::Result<()> {
    for run in &looked.runs {
        let short = run.commit.get(..12).unwrap_or(&run.commit);
        writeln!(
            out,
            "started run {} of {} ({} {} at {short})",
            run.run, run.pipeline, run.event, run.reference
        )?;
    }
    for skipped in &looked.skipped {
        let short = skipped.commit.get(..12).unwrap_or(&skipped.commit);
        writeln!(
            out,
            "no run for {} at {short}: {}",
            skipped.reference, skipped.reason
        )?;
    }
    if looked.runs.is_empty() && looked.skipped.is_empty() {
        writeln!(out, "nothing changed")?;
    }
    Ok(())
}
