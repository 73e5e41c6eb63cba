//! `otto attest export`: writes a run's bundle (plan, receipts, certificates, in-toto
//! attestations and the node's verification summary) from the node to a file, and beside
//! it the signers' public keys, the statements one a line, and the summary alone.

use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

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
every receipt the node has for it, the node certificates of their signers, an in-toto
attestation (DSSE JSON) of each receipt this node signed, and this node's SLSA
verification summary of the chain. Beside it (delivery.json -> delivery.*):
  delivery.keys.json     every signer's public key as PEM, hex, sslib and ssh
  delivery.intoto.jsonl  the attestations and the summary, one DSSE envelope a line
  delivery.vsa.json      the verification summary (PASSED or FAILED) alone
None of it carries trust: whoever checks it names the keys they trust.")]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Write a run's bundle to a file.
    #[command(after_help = "Examples:
  otto attest export 01J9ZQ3M5V8R2K4T6W8Y0A2C4E -o delivery.json
  otto attest export 01J9ZQ3M5V8R2K4T6W8Y0A2C4E -o delivery.json --home /srv/otto")]
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
    let files = Beside::new(&output)?;
    let keys = keys_document(&bundle);
    let mut lines = String::new();
    for envelope in bundle
        .attestations
        .iter()
        .chain(&bundle.verification_summary)
    {
        lines.push_str(&envelope.to_json());
        lines.push('\n');
    }
    let mut written = vec![
        (output.clone(), bundle.to_json()),
        (files.keys.clone(), format!("{keys:#}\n")),
        (files.statements.clone(), lines),
    ];
    if let Some(summary) = &bundle.verification_summary {
        written.push((files.summary.clone(), format!("{}\n", summary.to_json())));
    } else {
        // A summary from an earlier export must not pass for this one's.
        match fs::remove_file(&files.summary) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(anyhow!("cannot remove {}: {e}", files.summary.display()).into());
            }
            _ => {}
        }
    }
    for (path, text) in &written {
        write_atomically(path, text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut report = format!(
        "wrote {}: run {}, {} receipts, {} attestations, {} certificates\n",
        output.display(),
        bundle.run,
        bundle.receipts.len(),
        bundle.attestations.len(),
        bundle.certificates.len()
    );
    report.push_str(&format!(
        "wrote {}: {} signer keys (pem, hex, sslib, ssh)\n",
        files.keys.display(),
        keys["keys"].as_array().map_or(0, Vec::len)
    ));
    report.push_str(&format!(
        "wrote {}: the in-toto statements as DSSE envelopes, one a line\n",
        files.statements.display()
    ));
    report.push_str(&match summary_result(&bundle) {
        Some(result) => format!(
            "wrote {}: verification summary {result}, signed by this node\n",
            files.summary.display()
        ),
        None => "the node sent no verification summary\n".to_owned(),
    });
    io::stdout()
        .write_all(report.as_bytes())
        .context("writing the answer")?;
    Ok(())
}

/// The files written beside the bundle `delivery.json`: `delivery.keys.json`,
/// `delivery.intoto.jsonl` and `delivery.vsa.json`.
struct Beside {
    keys: PathBuf,
    statements: PathBuf,
    summary: PathBuf,
}

impl Beside {
    fn new(output: &Path) -> anyhow::Result<Self> {
        let name = output
            .file_name()
            .ok_or_else(|| anyhow!("{} is not a file name", output.display()))?
            .to_string_lossy();
        let stem = name.strip_suffix(".json").unwrap_or(&name);
        let with = |suffix: &str| output.with_file_name(format!("{stem}{suffix}"));
        Ok(Self {
            keys: with(".keys.json"),
            statements: with(".intoto.jsonl"),
            summary: with(".vsa.json"),
        })
    }
}

/// `{"keys": [...]}`: every key that signed something in the bundle, in every format
/// `otto-node key show` prints, with what the bundle's certificates claim about it.
fn keys_document(bundle: &Bundle) -> Value {
    let keys: Vec<Value> = bundle
        .signer_keys()
        .into_iter()
        .map(|signer| {
            let comment = match (&signer.node, &signer.org) {
                (Some(node), Some(org)) => format!("{node}@{org}"),
                (None, Some(org)) => format!("org {org}"),
                _ => String::new(),
            };
            serde_json::json!({
                "keyid": signer.key.keyid(),
                "kind": signer.kind,
                "node": signer.node,
                "org": signer.org,
                "roles": signer.roles,
                "pem": signer.key.to_spki_pem(),
                "hex": signer.key.to_hex(),
                "sslib": signer.key.to_sslib(),
                "ssh": signer.key.to_openssh(&comment),
            })
        })
        .collect();
    serde_json::json!({ "run": bundle.run, "keys": keys })
}

/// `PASSED` or `FAILED`, from the summary's statement (as the node sent it).
fn summary_result(bundle: &Bundle) -> Option<String> {
    let envelope = bundle.verification_summary.as_ref()?;
    let statement: Value = serde_json::from_slice(&envelope.payload).ok()?;
    Some(
        statement["predicate"]["verificationResult"]
            .as_str()
            .unwrap_or("of unknown result")
            .to_owned(),
    )
}

/// Writes `bytes` to `path` with mode 0644: to a new temporary file next to it, then
/// renamed over it, so a reader never sees half a file. The temporary file is made with
/// `O_CREAT|O_EXCL` under a name not used before, so a file or symbolic link another user
/// planted in the directory is never opened, written or chmod-ed.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("not a file name"))?
        .to_string_lossy();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut created = None;
    for attempt in 0..16u32 {
        let temp = path.with_file_name(format!(
            ".{name}.tmp-{}-{nanos:08x}-{attempt}",
            std::process::id()
        ));
        let mut options = OpenOptions::new();
        options.write(true).create_new(true).mode(0o644);
        match options.open(&temp) {
            Ok(file) => {
                created = Some((temp, file));
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
    }
    let (temp, mut file) =
        created.ok_or_else(|| anyhow!("cannot make a temporary file: every name is taken"))?;
    let written = (|| -> io::Result<()> {
        // The umask may have taken bits away; the file is ours alone, by its descriptor.
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

    #[test]
    fn a_symlink_planted_where_the_temporary_file_goes_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "secret").unwrap();
        fs::set_permissions(&victim, Permissions::from_mode(0o600)).unwrap();
        let path = dir.path().join("bundle.json");
        // Links at the names a temporary file of this process could get, as another
        // user of a shared directory would plant them.
        let pid = std::process::id();
        let mut planted = vec![dir.path().join(format!(".bundle.json.tmp-{pid}"))];
        for nanos in [0u32, 1] {
            for attempt in 0..2 {
                planted.push(
                    dir.path()
                        .join(format!(".bundle.json.tmp-{pid}-{nanos:08x}-{attempt}")),
                );
            }
        }
        for link in &planted {
            std::os::unix::fs::symlink(&victim, link).unwrap();
        }
        write_atomically(&path, b"bundle").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "bundle");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "secret");
        let mode = fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the victim keeps its mode");
        for link in &planted {
            assert!(fs::symlink_metadata(link).unwrap().file_type().is_symlink());
        }
        let count = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(count, planted.len() + 2, "no temporary file is left behind");
    }
}
