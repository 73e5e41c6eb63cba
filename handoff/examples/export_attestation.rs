//! Writes a deterministic signed attestation, for checking Otto's export with other tools.
//!
//! `cargo run -q -p otto-handoff --example export_attestation -- DIR` writes into `DIR`:
//!
//! - `attestation.json`: the DSSE JSON envelope of the in-toto statement for the receipt of
//!   stage `Deploy` of a made-up run, signed by node `ops-1`;
//! - `node.pub`: that node's Ed25519 public key as 64 lowercase hex digits;
//! - `receipt.digest`: the sha256 of the Otto receipt's canonical bytes, in hex.
//!
//! The node key comes from a fixed seed, so the output is the same on every run.
//! `.ci/attest-check.py` verifies it with the reference DSSE implementation.

use std::error::Error;
use std::path::PathBuf;

use otto_handoff::attest;
use otto_protocol::{Artifact, Digest, KeyBytes, NodeIdentity, Outcome, Payload as _, Receipt};
use otto_trust::{NodeKey, Unverified, dsse};
use sha2::{Digest as _, Sha256};

fn main() -> Result<(), Box<dyn Error>> {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .ok_or("usage: export_attestation DIR")?
        .into();
    std::fs::create_dir_all(&dir)?;

    let node = NodeKey::from_seed(&[0x1e; 32]);
    let receipt = Receipt {
        run: "run-0001".to_owned(),
        plan_digest: format!("sha256:{}", hex(b"plan of webapp")),
        stage: "Deploy".to_owned(),
        attempt: 1,
        outcome: Outcome::Success,
        outputs: vec![
            Artifact {
                name: "site.tar".to_owned(),
                sha256: digest(b"site.tar contents"),
                size: 17,
            },
            Artifact {
                name: "release-notes.md".to_owned(),
                sha256: digest(b"release notes"),
                size: 13,
            },
        ],
        log_digest: digest(b"log of Deploy"),
        started_at: 1_735_689_610,
        finished_at: 1_735_689_670,
        started_at_ms: None,
        finished_at_ms: None,
        upstream: vec![digest(b"receipt of Build"), digest(b"receipt of Test")],
        node: NodeIdentity {
            name: "ops-1".to_owned(),
            org: "acme-ops".to_owned(),
            key: KeyBytes(*node.public_key().as_bytes()),
        },
    };
    let signed = dsse::sign(
        Receipt::KIND.payload_type(),
        otto_protocol::encode_payload(&receipt),
        &node,
    )?;
    let receipt_digest = digest(&signed.canonical_bytes());
    let verified = Unverified::new(signed).verify(&node.public_key())?;
    let attestation = attest::export(&verified, &node)?;

    std::fs::write(dir.join("attestation.json"), attestation.to_json() + "\n")?;
    std::fs::write(
        dir.join("node.pub"),
        hex::encode(node.public_key().as_bytes()) + "\n",
    )?;
    std::fs::write(dir.join("receipt.digest"), receipt_digest.to_hex() + "\n")?;
    Ok(())
}

fn digest(bytes: &[u8]) -> Digest {
    Digest(Sha256::digest(bytes).into())
}

fn hex(bytes: &[u8]) -> String {
    digest(bytes).to_hex()
}
