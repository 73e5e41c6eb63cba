//! `otto`: the user's command-line tool.
//!
//! Thin by design: it parses arguments, calls the libraries (or, for commands that need a
//! node, the node's API) and prints. `explain` works offline.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

/// Otto: continuous delivery across teams and organisations, with no hub.
#[derive(Debug, Parser)]
#[command(name = "otto", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Explain(commands::explain::Args),
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Reported) => ExitCode::FAILURE,
        Err(Failure::Error(e)) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(Failure::Error(e)) => {
            let chain: Vec<String> = e.chain().map(ToString::to_string).collect();
            let _ = writeln!(io::stderr(), "error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}

/// A closed stdout (`otto explain | head`) is not a failure.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<io::Error>())
        .any(|io| io.kind() == io::ErrorKind::BrokenPipe)
}
