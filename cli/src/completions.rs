//! `completions SHELL`: the shell completion script, generated from the commands'
//! definitions by clap_complete so it never falls behind them. Shared by `otto` and
//! `otto-node`.

use std::io::Write;

use anyhow::Context as _;

use clap_complete::Shell;

/// Print the completion script for a shell.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The shell: bash, zsh or fish.
    #[arg(value_parser = ["bash", "zsh", "fish"])]
    shell: String,
}

/// Prints the script of `command`; a closed stdout is reported like any write error (not
/// a panic).
pub(crate) fn run(command: clap::Command, args: &Args) -> anyhow::Result<()> {
    let mut script = Vec::new();
    write(command, args, &mut script);
    std::io::stdout()
        .lock()
        .write_all(&script)
        .context("writing the completion script")?;
    Ok(())
}

/// Writes the script of `command` for `args.shell` to `out` (which should not fail:
/// clap_complete panics on a write error).
pub(crate) fn write(mut command: clap::Command, args: &Args, out: &mut dyn Write) {
    let shell = match args.shell.as_str() {
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        _ => Shell::Bash,
    };
    let name = command.get_name().to_owned();
    clap_complete::generate(shell, &mut command, name, out);
}
