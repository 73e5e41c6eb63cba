//! `otto-node`: the Otto node daemon. `init` creates a node's home, `start` runs the node
//! in the foreground; both are thin over `otto_node::home` and `otto_node::daemon`. `invite`,
//! `join`, `peers`, `trust`, `approve` and `repo` talk to the running node through its API; `key`
//! shows the node's and org's public keys and migrates old key files.

use std::io::{self, Write as _};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The `otto` binary's client of the node API; this binary uses a part of it.
#[allow(dead_code)]
#[path = "../../client.rs"]
mod client;
#[path = "../../completions.rs"]
mod completions;
#[path = "../../errors.rs"]
mod errors;
#[path = "../../manpages.rs"]
mod manpages;

mod approve;
mod gc;
mod init;
mod invite;
mod join;
mod key;
mod peers;
mod repo;
mod start;
mod trust;

/// The Otto node: runs pipelines, keeps secrets, waits on gates, survives restarts.
#[derive(Debug, Parser)]
#[command(name = "otto-node", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Init(init::Args),
    Start(start::Args),
    Invite(invite::Args),
    Join(join::Args),
    Peers(peers::Args),
    Trust(trust::Args),
    Approve(approve::Args),
    Repo(repo::Args),
    Key(key::Args),
    Gc(gc::Args),
    #[command(after_help = "Examples:
  otto-node manpages ~/.local/share/man/man1 && man otto-node-start
  otto-node manpages /usr/local/share/man/man1")]
    Manpages(manpages::Args),
    #[command(after_help = "Examples:
  otto-node completions bash > ~/.local/share/bash-completion/completions/otto-node
  otto-node completions zsh > \"${fpath[1]}/_otto-node\"
  otto-node completions fish > ~/.config/fish/completions/otto-node.fish")]
    Completions(completions::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(args) => init::run(args),
        Command::Start(args) => start::run(args),
        Command::Invite(args) => invite::run(args),
        Command::Join(args) => join::run(args),
        Command::Peers(args) => peers::run(args),
        Command::Trust(args) => trust::run(args),
        Command::Approve(args) => approve::run(args),
        Command::Repo(args) => repo::run(args),
        Command::Key(args) => key::run(args),
        Command::Gc(args) => gc::run(args),
        Command::Manpages(args) => {
            use clap::CommandFactory as _;
            manpages::run(Cli::command(), &args)
        }
        Command::Completions(args) => {
            use clap::CommandFactory as _;
            completions::run(Cli::command(), &args)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if errors::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr(), "error: {}", errors::chain_text(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leaf subcommands (those without subcommands of their own) whose `--help` has
    /// no example, by their full names.
    fn leaves_without_examples(cmd: &clap::Command, path: &str) -> Vec<String> {
        let path = format!("{path} {}", cmd.get_name());
        if cmd.get_subcommands().next().is_none() {
            let help = cmd.get_after_help().map(ToString::to_string);
            return match help {
                Some(text) if text.contains("Examples:") => Vec::new(),
                _ => vec![path.trim().to_owned()],
            };
        }
        cmd.get_subcommands()
            .filter(|c| c.get_name() != "help")
            .flat_map(|c| leaves_without_examples(c, &path))
            .collect()
    }

    #[test]
    fn every_leaf_subcommand_shows_an_example() {
        use clap::CommandFactory as _;
        let cmd = Cli::command();
        assert_eq!(leaves_without_examples(&cmd, ""), Vec::<String>::new());
    }

    #[test]
    fn the_help_describes_otto_node_and_completions_are_generated() {
        use clap::CommandFactory as _;
        let about = Cli::command().get_about().map(ToString::to_string);
        assert_eq!(
            about.as_deref(),
            Some("The Otto node: runs pipelines, keeps secrets, waits on gates, survives restarts")
        );
        for (shell, needle) in [
            ("bash", "_otto__node()"),
            ("zsh", "#compdef otto-node"),
            ("fish", "complete -c otto-node"),
        ] {
            let cli = Cli::try_parse_from(["otto-node", "completions", shell]).unwrap();
            let Command::Completions(args) = cli.command else {
                panic!("not completions")
            };
            let mut out = Vec::new();
            completions::write(Cli::command(), &args, &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains(needle), "{shell}: {text}");
            assert!(text.contains("init") && text.contains("org-key"), "{shell}");
        }
    }
}
