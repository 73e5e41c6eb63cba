//! `otto`: the user's command-line tool.
//!
//! Thin by design: it parses arguments, calls the libraries (or, for commands that need a
//! node, the node's API through [`client`]) and prints. `explain` and `verify --bundle`
//! work offline; `run`, `status`, `logs`, `approve`, `cancel`, `retry`, `secrets`, `verify RUN` and
//! `attest export` talk to the local node.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod client;
mod commands;
mod completions;
mod errors;
mod manpages;

/// Otto: continuous delivery across teams and organisations, with no hub.
#[derive(Debug, Parser)]
#[command(name = "otto", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Explain(commands::explain::Args),
    Run(commands::run::Args),
    Status(commands::status::Args),
    Logs(commands::logs::Args),
    Approve(commands::approve::Args),
    Cancel(commands::cancel::Args),
    Retry(commands::retry::Args),
    Hook(commands::hook::Args),
    Secrets(commands::secrets::Args),
    Verify(commands::verify::Args),
    Attest(commands::attest::Args),
    Ui(commands::ui::Args),
    #[command(after_help = "Examples:
  otto completions bash > ~/.local/share/bash-completion/completions/otto
  otto completions zsh > \"${fpath[1]}/_otto\"
  otto completions fish > ~/.config/fish/completions/otto.fish")]
    Completions(completions::Args),
    #[command(after_help = "Examples:
  otto manpages ~/.local/share/man/man1 && man otto-run
  otto manpages /usr/local/share/man/man1")]
    Manpages(manpages::Args),
}

/// What a command ends with when it fails.
pub(crate) enum Failure {
    /// Already reported in full on stderr (e.g. rendered Ottofile diagnostics).
    Reported,
    /// An error to print as one line.
    Error(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Error(e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Explain(args) => commands::explain::run(args),
        Command::Run(args) => commands::run::run(args),
        Command::Status(args) => commands::status::run(args),
        Command::Logs(args) => commands::logs::run(args),
        Command::Approve(args) => commands::approve::run(args),
        Command::Cancel(args) => commands::cancel::run(args),
        Command::Retry(args) => commands::retry::run(args),
        Command::Hook(args) => commands::hook::run(args),
        Command::Secrets(args) => commands::secrets::run(args),
        Command::Verify(args) => commands::verify::run(args),
        Command::Attest(args) => commands::attest::run(args),
        Command::Ui(args) => commands::ui::run(args),
        Command::Completions(args) => {
            use clap::CommandFactory as _;
            completions::run(Cli::command(), &args).map_err(Failure::from)
        }
        Command::Manpages(args) => {
            use clap::CommandFactory as _;
            manpages::run(Cli::command(), &args).map_err(Failure::from)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Reported) => ExitCode::FAILURE,
        Err(Failure::Error(e)) if errors::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(Failure::Error(e)) => {
            let _ = writeln!(io::stderr(), "error: {}", errors::chain_text(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("otto").chain(args.iter().copied()))
    }

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
    fn a_man_page_is_written_for_every_command_with_its_flags_and_examples() {
        use clap::CommandFactory as _;
        let dir = tempfile::tempdir().unwrap();
        let written = manpages::write_all(Cli::command(), dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for name in [
            "otto.1",
            "otto-explain.1",
            "otto-run.1",
            "otto-secrets-set.1",
        ] {
            assert!(names.iter().any(|n| n == name), "{name}: {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
        let run = std::fs::read_to_string(dir.path().join("otto-run.1")).unwrap();
        assert!(
            run.starts_with(".ie") || run.contains(".TH otto-run 1"),
            "{run}"
        );
        // A global flag reaches the subcommand's page, and so do the examples.
        assert!(run.contains("home"), "{run}");
        assert!(run.contains("Examples:"), "{run}");
        // A file where the directory should be: an error, not a panic.
        let file = dir.path().join("otto.1");
        assert!(manpages::write_all(Cli::command(), &file).is_err());
    }

    #[test]
    fn the_help_describes_otto() {
        use clap::CommandFactory as _;
        let about = Cli::command().get_about().map(ToString::to_string);
        assert_eq!(
            about.as_deref(),
            Some("Otto: continuous delivery across teams and organisations, with no hub")
        );
    }

    #[test]
    fn completions_are_generated_for_each_shell() {
        use clap::CommandFactory as _;
        for (shell, needle) in [
            ("bash", "_otto()"),
            ("zsh", "#compdef otto"),
            ("fish", "complete -c otto"),
        ] {
            let cli = parse(&["completions", shell]).unwrap();
            let Command::Completions(args) = cli.command else {
                panic!("not completions")
            };
            let mut out = Vec::new();
            completions::write(Cli::command(), &args, &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains(needle), "{shell}: {text}");
            assert!(
                text.contains("explain") && text.contains("branch"),
                "{shell}"
            );
        }
        assert!(parse(&["completions", "tcsh"]).is_err());
    }

    #[test]
    fn run_flags_parse() {
        let cli = parse(&[
            "run",
            "ci",
            "--branch",
            "main",
            "--env",
            "prod",
            "--var",
            "a=b",
            "--var",
            "c=",
            "--detach",
            "--node",
            "127.0.0.1:7070",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        let text = format!("{args:?}");
        assert!(text.contains("detach: true"), "{text}");
        assert!(
            text.contains("(\"a\", \"b\")") && text.contains("(\"c\", \"\")"),
            "{text}"
        );
        assert!(parse(&["run", "--var", "novalue"]).is_err());
        assert!(parse(&["run", "--node", "https://h:1"]).is_err());
        assert!(parse(&["run", "--node", "nohost"]).is_err());
    }

    #[test]
    fn other_commands_parse() {
        assert!(parse(&["status"]).is_ok());
        assert!(parse(&["status", "01J9ZQ3M5V8R2K4T6W8Y0A2C4E", "--json"]).is_ok());
        assert!(parse(&["status", "01J9ZQ3M5V8R2K4T6W8Y0A2C4E", "--limit", "3"]).is_err());
        assert!(parse(&["logs", "R", "Build", "-f"]).is_ok());
        assert!(parse(&["logs"]).is_err());
        assert!(parse(&["approve", "R", "Deploy", "--as", "alice"]).is_ok());
        assert!(parse(&["approve", "R"]).is_err());
        assert!(parse(&["cancel", "R", "--as", "alice"]).is_ok());
        assert!(parse(&["cancel"]).is_err());
        assert!(parse(&["retry", "R"]).is_ok());
        assert!(parse(&["retry", "R", "Deploy", "--as", "alice"]).is_ok());
        assert!(parse(&["retry"]).is_err());
        assert!(parse(&["secrets", "set", "TOKEN"]).is_ok());
        assert!(parse(&["secrets", "set", "TOKEN", "value-on-argv"]).is_err());
        assert!(parse(&["secrets", "list", "--json"]).is_ok());
        assert!(parse(&["secrets", "rm", "TOKEN"]).is_ok());
    }

    #[test]
    fn verify_and_attest_flags_parse() {
        const KEY: &str =
            "ed25519:3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";
        assert!(parse(&["verify", "R"]).is_ok());
        assert!(parse(&["verify", "R", "--json"]).is_ok());
        assert!(parse(&["verify"]).is_err(), "a run or a bundle is needed");
        let two = [
            "verify",
            "--bundle",
            "b.json",
            "--trust",
            KEY,
            &format!("ops={KEY}"),
        ];
        let Command::Verify(args) = parse(&two).unwrap().command else {
            panic!("not verify")
        };
        let text = format!("{args:?}");
        assert!(text.contains(&format!("\"ops={KEY}\"")), "{text}");
        assert!(
            parse(&[
                "verify", "--bundle", "b.json", "--trust", KEY, "--trust", KEY
            ])
            .is_ok()
        );
        assert!(
            parse(&["verify", "--bundle", "b.json"]).is_err(),
            "--bundle needs --trust"
        );
        assert!(
            parse(&["verify", "--trust", KEY]).is_err(),
            "--trust needs --bundle"
        );
        assert!(parse(&["verify", "R", "--bundle", "b.json", "--trust", KEY]).is_err());
        assert!(parse(&["attest", "export", "R", "-o", "out.json"]).is_ok());
        assert!(parse(&["attest", "export", "R", "--output", "out.json"]).is_ok());
        assert!(parse(&["attest", "export", "R"]).is_err(), "-o is required");
        assert!(parse(&["attest", "R"]).is_err());
    }
}
