//! `otto-node key`: the node's and org's public keys in the forms other tools take, and
//! the rewrite of key files from older Otto versions.

use std::io::{self, Write as _};
use std::path::PathBuf;

use anyhow::Context as _;
use otto_node::daemon::unix_now;
use otto_node::home::Home;
use otto_trust::{PublicKey, persist};

/// Show the node's or org's public key, or rewrite old key files.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto-node key show
  otto-node key show --org --format sslib > acme.sslib.json
  otto-node key show --format pem > node.pub.pem
  otto-node key show --format ssh >> allowed_signers
  otto-node key migrate
  otto-node key migrate --file /media/offline/acme-org.key

Formats: pem (SubjectPublicKeyInfo, what `openssl pkey -pubin` reads), hex (the 32 key
bytes), sslib (a securesystemslib/in-toto key object whose keyid is the one Otto puts in
its signatures), ssh (an OpenSSH public key line). The org key is the one the node's
certificate names. See docs/attestations.md for verifying with these keys.")]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
    /// The node's home [default: ~/.otto].
    #[arg(long, value_name = "DIR", env = "OTTO_HOME", global = true)]
    home: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print the node's public key (or the org's, with --org).
    #[command(after_help = "Examples:
  otto-node key show
  otto-node key show --org --format ssh")]
    Show {
        /// The org's key instead of the node's.
        #[arg(long)]
        org: bool,
        /// The form to print it in.
        #[arg(long, value_enum, default_value_t = Format::Pem)]
        format: Format,
        /// Print the key in every form, with whose key it is, as one JSON object.
        #[arg(long, conflicts_with = "format")]
        json: bool,
    },
    /// Rewrite the home's key files still in the PKCS#8 v2 form older Otto wrote as
    /// PKCS#8 v1 (RFC 8410); the keys do not change. A key file that is a symbolic link
    /// is refused: migrate the file it points to with --file.
    #[command(after_help = "Examples:
  otto-node key migrate
  otto-node key migrate --file /media/offline/acme-org.key")]
    Migrate {
        /// Rewrite this key file (e.g. an org key kept off the node) instead of the
        /// home's; may be given several times.
        #[arg(long, value_name = "FILE")]
        file: Vec<PathBuf>,
        /// Print the files rewritten as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Pem,
    Hex,
    Sslib,
    Ssh,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let home = Home::resolve(args.home)?;
    let mut out = io::stdout().lock();
    match args.command {
        Command::Show { org, format, json } => {
            home.load_config()?;
            let identity = home
                .identity(unix_now())
                .with_context(|| format!("cannot read the node of {}", home.root().display()))?;
            let cert = &identity.cert;
            let (key, whose, comment) = if org {
                (*cert.org_key(), "org", format!("org {}", cert.org()))
            } else {
                (
                    *cert.node_key(),
                    "node",
                    format!("{}@{}", cert.node(), cert.org()),
                )
            };
            if json {
                let value = serde_json::json!({
                    "key": whose,
                    "node": cert.node(),
                    "org": cert.org(),
                    "keyid": key.keyid(),
                    "pem": key.to_spki_pem(),
                    "hex": key.to_hex(),
                    "sslib": key.to_sslib(),
                    "ssh": key.to_openssh(&comment),
                });
                writeln!(out, "{value}")?;
            } else {
                out.write_all(formatted(&key, format, &comment).as_bytes())?;
            }
        }
        Command::Migrate { file, json } => {
            let rewritten = if file.is_empty() {
                home.migrate_keys().with_context(|| {
                    format!("cannot migrate the keys of {}", home.root().display())
                })?
            } else {
                let mut rewritten = Vec::new();
                for path in file {
                    if persist::migrate_key_file(&path)? {
                        rewritten.push(path);
                    }
                }
                rewritten
            };
            if json {
                writeln!(out, "{}", serde_json::json!({ "rewritten": rewritten }))?;
            } else if rewritten.is_empty() {
                writeln!(
                    out,
                    "all key files are already PKCS#8 v1; nothing rewritten"
                )?;
            } else {
                for path in rewritten {
                    writeln!(out, "rewrote {} as PKCS#8 v1", path.display())?;
                }
            }
        }
    }
    Ok(())
}

/// `key` in `format`, ending with a newline.
fn formatted(key: &PublicKey, format: Format, comment: &str) -> String {
    match format {
        Format::Pem => key.to_spki_pem(),
        Format::Hex => format!("{}\n", key.to_hex()),
        Format::Sslib => {
            // SAFETY: a key object is four strings, which always serialize.
            #[allow(clippy::expect_used)]
            let text = serde_json::to_string_pretty(&key.to_sslib()).expect("serializes");
            format!("{text}\n")
        }
        Format::Ssh => format!("{}\n", key.to_openssh(comment)),
    }
}
