//! `otto hook`: a local git hook that tells the node a watched repository changed.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use anyhow::{Context as _, bail};
use otto_node::api::types::Looked;

use crate::Failure;
use crate::client::NodeArgs;

/// The line that marks a hook as written by `otto hook install`.
const MARK: &str = "# Written by `otto hook install`";

/// Install a git hook that makes the node fetch a repository it watches, or notify it now.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto-node repo add /srv/git/app.git --name app
  cd /srv/git/app.git && otto hook install app      # a bare repository: post-receive
  cd ~/src/app && otto hook install app             # a work tree: post-commit, post-merge, post-rewrite
  otto hook notify app

The hook runs `otto hook notify NAME` with this node's home: the node fetches the
repository from its URL (never from the hook) and starts a run for each branch or tag that
moved, as a webhook would. A hook file that `otto hook install` did not write is left
alone.")]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Write the hooks into the git repository of the current directory (or --repo).
    #[command(after_help = "Examples:
  cd ~/src/app && otto hook install app
  otto hook install app --repo /srv/git/app.git")]
    Install {
        /// The repository's name on the node (`otto-node repo list`).
        name: String,
        /// The git repository [default: the current directory's].
        #[arg(long, value_name = "DIR")]
        repo: Option<PathBuf>,
    },
    /// Tell the node now that the repository changed, and print the runs it started.
    #[command(after_help = "Examples:
  otto hook notify app
  otto hook notify app --home /srv/otto")]
    Notify {
        /// The repository's name on the node.
        name: String,
    },
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    match args.command {
        Command::Install { name, repo } => install(&args.node, &name, repo.as_deref())?,
        Command::Notify { name } => {
            let looked: Looked = args
                .node
                .client()?
                .post(&format!("/v1/repos/{name}/fetch"), &())?;
            let mut out = io::stdout().lock();
            for run in &looked.runs {
                let short = run.commit.get(..12).unwrap_or(&run.commit);
                writeln!(
                    out,
                    "otto: started run {} of {} ({} {} at {short})",
                    run.run, run.pipeline, run.event, run.reference
                )
                .map_err(anyhow::Error::from)?;
            }
            for skipped in &looked.skipped {
                writeln!(
                    out,
                    "otto: no run for {}: {}",
                    skipped.reference, skipped.reason
                )
                .map_err(anyhow::Error::from)?;
            }
        }
    }
    Ok(())
}

fn install(node: &NodeArgs, name: &str, repo: Option<&Path>) -> anyhow::Result<()> {
    let client = node.client()?;
    // The repository must exist on the node: a typo fails now, not at every commit.
    let list: otto_node::api::types::RepoList = client.get("/v1/repos")?;
    if !list.repos.iter().any(|r| r.config.name == name) {
        bail!("the node has no repository named {name:?} (see otto-node repo list)");
    }
    let git = |args: &[&str]| -> anyhow::Result<String> {
        let mut cmd = Process::new("git");
        if let Some(dir) = repo {
            cmd.arg("-C").arg(dir);
        }
        let out = cmd.args(args).output().context("cannot run git")?;
        if !out.status.success() {
            bail!(
                "not in a git repository ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let bare = git(&["rev-parse", "--is-bare-repository"])? == "true";
    let hooks = PathBuf::from(git(&[
        "rev-parse",
        "--path-format=absolute",
        "--git-path",
        "hooks",
    ])?);
    std::fs::create_dir_all(&hooks)
        .with_context(|| format!("cannot create {}", hooks.display()))?;
    let otto = std::env::current_exe().context("cannot find this otto executable")?;
    let home = node.home()?;
    let home = std::fs::canonicalize(home.root()).unwrap_or_else(|_| home.root().to_owned());
    let script = format!(
        "#!/bin/sh\n{MARK}: tells the Otto node that repository {name} changed.\n{} hook notify {} --home {} >&2 || true\n",
        quote(&otto.to_string_lossy()),
        quote(name),
        quote(&home.to_string_lossy()),
    );
    let names: &[&str] = if bare {
        &["post-receive"]
    } else {
        &["post-commit", "post-merge", "post-rewrite"]
    };
    // Check every file first, so nothing is half-installed.
    for hook in names {
        let path = hooks.join(hook);
        if let Ok(existing) = std::fs::read_to_string(&path)
            && !existing.contains(MARK)
        {
            bail!(
                "{} exists and was not written by otto hook install; add `{} hook notify {name}` to it yourself",
                path.display(),
                otto.display()
            );
        }
    }
    let mut out = io::stdout().lock();
    for hook in names {
        let path = hooks.join(hook);
        write_executable(&path, &script)?;
        writeln!(out, "installed {}", path.display())?;
    }
    Ok(())
}

fn write_executable(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text)
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `text` as one single-quoted shell word.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting_keeps_a_word_whole() {
        assert_eq!(super::quote("a b"), "'a b'");
        assert_eq!(super::quote("it's"), r"'it'\''s'");
    }
}
