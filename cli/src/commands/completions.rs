//! `otto completions SHELL`: the shell completion script, generated from the commands'
//! definitions by clap_complete so it never falls behind them.

use std::io::Write;

use anyhow::Context as _;

use clap::CommandFactory as _;
use clap_complete::Shell;

/// Print the completion script for a shell.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto completions bash > ~/.local/share/bash-completion/completions/otto
  otto completions zsh > \"${fpath[1]}/_otto\"
  otto completions fish > ~/.config/fish/completions/otto.fish")]
pub(crate) struct Args {
    /// The shell: bash, zsh or fish.
    #[arg(value_parser = ["bash", "zsh", "fish"])]
    shell: String,
}

/// Prints the script; a closed stdout is reported like any write error (not a panic).
pub(crate) fn run(args: &Args) -> Result<(), crate::Failure> {
    let mut script = Vec::new();
    write(args, &mut script);
    std::io::stdout()
        .lock()
        .write_all(&script)
        .context("writing the completion script")?;
    Ok(())
}

/// Writes the script for `args.shell` to `out` (which should not fail: clap_complete
/// panics on a write error).
pub(crate) fn write(args: &Args, out: &mut dyn Write) {
    let shell = match args.shell.as_str() {
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        _ => Shell::Bash,
    };
    let mut command = crate::Cli::command();
    clap_complete::generate(shell, &mut command, "otto", out);
}
