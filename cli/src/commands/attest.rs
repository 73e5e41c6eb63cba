//! `otto attest export`: writes a run's bundle (plan, receipts, certificates and in-toto
//! attestations) from the node to a file.

use std::fs::{self, File, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use otto_handoff::bundle::Bundle;
use serde_json::Value;

use super::run::path_segment;
use crate::Failure;
use crate::client::NodeArgs;

/// Export a run's receipts as attestations, for offline checks and supply-chain tools.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto attest export 01J9ZQ3M5V8R2K4T6W8Y0A2C4E -o delivery.json
  otto verify --bundle delivery.json --trust acme=ed25519:3b6a27bc…9c7d
  jq '.attestations[0]' delivery.json > deploy.intoto.json

The bundle (format otto.bundle/v1, see docs/attestations.md) holds the run's plan,
every receipt the node has for it, the node certificates of their signers, and an
in-toto attestation (DSSE JSON) of each receipt this node signed. It carries no trust:
whoever checks it names the org keys they trust.")]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Write a run's bundle to a file.
    Export {
        /// The run.
        run: String,
        /// The file to write (replaced atomically if it exists).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let Command::Export { run, output } = args.command;
    let client = args.node.client()?;
    let answer: Value = client.get(&format!("/v1/runs/{}/bundle", path_segment(&run)))?;
    let bundle = Bundle::from_json(&answer.to_string())
        .context("the node's answer is not an otto bundle")?;
    write_atomically(&output, bundle.to_json().as_bytes())
        .with_context(|| format!("cannot write {}", output.display()))?;
    writeln!(
        io::stdout(),
        "wrote {}: run {}, {} receipts, {} attestations, {} certificates",
        output.display(),
        bundle.run,
        bundle.receipts.len(),
        bundle.attestations.len(),
        bundle.certificates.len()
    )
    .context("writing the answer")?;
    Ok(())
}

/// Writes `bytes` to `path` with mode 0644: to a temporary file next to it, then renamed
/// over it, so a reader never sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("not a file name"))?
        .to_string_lossy();
    let temp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| -> io::Result<()> {
        let mut file = File::create(&temp)?;
        file.set_permissions(Permissions::from_mode(0o644))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    Ok(written?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_replaces_the_old_one_readable_by_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle.json");
        fs::write(&path, "old").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
        assert!(write_atomically(&dir.path().join("missing/b.json"), b"x").is_err());
    }
}
