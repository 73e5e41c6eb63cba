//! `otto verify`: checks a run's receipt chain, on the node (its trust store) or offline
//! from a bundle (only the org keys given on the command line).

use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use otto_handoff::Owners;
use otto_handoff::bundle::{AttestationReport, Bundle, MAX_BUNDLE_BYTES, verify_bundle};
use otto_protocol::NodeCertificate;
use otto_trust::cert::verify_cert_with_org_key;
use otto_trust::store::AliasTarget;
use otto_trust::{PublicKey, TrustStore, valid_name};
use serde::Deserialize;
use serde_json::Value;

use super::run::path_segment;
use crate::Failure;
use crate::client::NodeArgs;

/// Check that a run's stages ran, succeeded and were signed by nodes of trusted orgs.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto verify 01J9ZQ3M5V8R2K4T6W8Y0A2C4E
  otto verify 01J9ZQ3M5V8R2K4T6W8Y0A2C4E --json | jq '.stages[] | {stage, status}'
  otto verify --bundle delivery.json --trust acme=ed25519:3b6a27bc…9c7d
  otto verify --bundle delivery.json --trust ed25519:3b6a…9c7d ed25519:8f1e…04aa

With RUN, the node checks the run's receipts against its own trust store. With
--bundle (written by `otto attest export`), the check runs here without a node and
trusts only the org keys given with --trust: NAME=KEYID or a bare KEYID, where KEYID
is ed25519: and the org key's 64 hex digits (`otto-node init` prints it; get it from
the org, never from the bundle). The certificates in a bundle carry no trust.

A stage's receipt counts only if a node of the org its owner is bound to signed it:
the org a --trust NAME names (give one key several names for several owners), else
the org the run's plan binds the owner to, which must be one of the --trust keys.

Exits 0 only if every stage is verified (or skipped by the plan) and every
attestation verifies; 1 otherwise, or on an error.")]
pub(crate) struct Args {
    /// The run to check on the node.
    #[arg(required_unless_present = "bundle", conflicts_with = "bundle")]
    run: Option<String>,
    /// A bundle file to check offline, without a node.
    #[arg(long, value_name = "FILE", requires = "trust")]
    bundle: Option<PathBuf>,
    /// Org keys to trust with --bundle: NAME=KEYID or KEYID (repeatable).
    #[arg(long, value_name = "ORGKEY", num_args = 1.., requires = "bundle")]
    trust: Vec<String>,
    /// Print the report as JSON (schema: docs/api.md, GET /v1/runs/{run}/verify).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    node: NodeArgs,
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let (report, hint) = match (&args.bundle, &args.run) {
        (Some(path), _) => offline(path, &args.trust)?,
        (None, Some(run)) => {
            let client = args.node.client()?;
            let report: Value = client.get(&format!("/v1/runs/{}/verify", path_segment(run)))?;
            (report, None)
        }
        (None, None) => return Err(anyhow!("name a RUN, or a --bundle to check offline").into()),
    };
    let parsed: Report = serde_json::from_value(report.clone())
        .context("the verification report is not what was expected")?;
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report).context("writing json")?;
        writeln!(out).context("writing json")?;
    } else {
        print_report(&parsed, &mut out).context("writing the report")?;
        if let Some(hint) = hint.filter(|_| !parsed.verified) {
            writeln!(io::stderr(), "hint: {hint}").context("writing the report")?;
        }
    }
    if parsed.verified {
        Ok(())
    } else {
        Err(Failure::Reported)
    }
}

/// Checks the bundle at `path` against a trust store of the `trust` keys; returns the
/// report as JSON and a hint for when none of the keys certified anything in it.
fn offline(path: &Path, trust: &[String]) -> anyhow::Result<(Value, Option<String>)> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let keys = trust
        .iter()
        .map(|text| parse_org_key(text))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let text = read_bundle(path)?;
    let bundle = Bundle::from_json(&text).with_context(|| path.display().to_string())?;
    let store = trust_store(&keys, &bundle, now)?;
    let owners = Owners::new(&store, None, &[]);
    let report = verify_bundle(&bundle, &owners, now);
    let hint = no_key_hint(&keys, &bundle);
    let value = serde_json::to_value(&report).context("the report does not serialize")?;
    Ok((value, hint))
}

/// An org key from `--trust`: `NAME=KEYID` or a bare `KEYID`.
fn parse_org_key(text: &str) -> anyhow::Result<(Option<String>, PublicKey)> {
    let (name, keyid) = match text.split_once('=') {
        Some((name, keyid)) => (Some(name.to_owned()), keyid),
        None => (None, text),
    };
    if let Some(name) = name.as_deref().filter(|n| !valid_name(n)) {
        bail!(
            "--trust {text:?}: the name {name:?} is not valid (use 1 to 64 ascii letters, \
             digits, '-', '_' or '.')"
        );
    }
    let key = PublicKey::from_keyid(keyid)
        .map_err(|e| anyhow!("--trust {text:?}: expected NAME=KEYID or KEYID: {e}"))?;
    Ok((name, key))
}

/// Reads a bundle file, refusing one larger than a bundle can be.
fn read_bundle(path: &Path) -> anyhow::Result<String> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_BUNDLE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() > MAX_BUNDLE_BYTES {
        bail!(
            "{}: not an otto bundle: larger than {MAX_BUNDLE_BYTES} bytes",
            path.display()
        );
    }
    String::from_utf8(bytes)
        .map_err(|_| anyhow!("{}: not an otto bundle: not UTF-8 text", path.display()))
}

/// A trust store of exactly these org keys. A key without a name takes the org name its
/// own certificates in the bundle give (they are signed by that key), else `org-` and
/// the start of its hex. A key given again under another name gets that name as an alias.
fn trust_store(
    keys: &[(Option<String>, PublicKey)],
    bundle: &Bundle,
    now: u64,
) -> anyhow::Result<TrustStore> {
    let mut store = TrustStore::new();
    for (name, key) in keys {
        let claimed = bundle
            .certificates
            .iter()
            .filter_map(|env| verify_cert_with_org_key(env, key, now).ok())
            .map(|cert| cert.org().to_owned())
            .find(|org| valid_name(org) && store.org(org).is_none());
        let fallback = || format!("org-{}", &hex_of(key)[..12]);
        let name = name.clone().or(claimed).unwrap_or_else(fallback);
        if let Some(pinned) = store.org_by_key(key).map(|o| o.name.clone()) {
            if pinned != name {
                store
                    .set_alias(&name, AliasTarget::Org(pinned))
                    .with_context(|| format!("--trust {name}={}", key.keyid()))?;
            }
            continue;
        }
        store
            .pin_org(&name, *key, now)
            .with_context(|| format!("--trust {}", key.keyid()))?;
    }
    Ok(store)
}

/// When no `--trust` key signed any certificate in the bundle: which org keys did.
fn no_key_hint(keys: &[(Option<String>, PublicKey)], bundle: &Bundle) -> Option<String> {
    let mut signers: Vec<String> = Vec::new();
    for env in &bundle.certificates {
        let Ok(cert) = env.payload_as::<NodeCertificate>() else {
            continue;
        };
        if keys
            .iter()
            .any(|(_, k)| k.as_bytes().as_slice() == cert.org_key)
        {
            return None;
        }
        let Ok(key) = PublicKey::from_bytes(&cert.org_key) else {
            continue;
        };
        let line = format!("{:?} ({})", cert.org, key.keyid());
        if !signers.contains(&line) {
            signers.push(line);
        }
    }
    Some(if signers.is_empty() {
        "the bundle has no node certificates".to_owned()
    } else {
        format!(
            "none of the --trust keys signed a certificate in the bundle; its certificates \
             claim orgs {} (check keys with each org, never trust them from the bundle)",
            signers.join(", ")
        )
    })
}

fn hex_of(key: &PublicKey) -> String {
    key.keyid().trim_start_matches("ed25519:").to_owned()
}

/// The report as the node and the offline check write it.
#[derive(Debug, Deserialize)]
struct Report {
    run: String,
    plan_digest: String,
    verified: bool,
    stages: Vec<StageLine>,
    #[serde(default)]
    stray: Vec<Stray>,
    #[serde(default)]
    attestations: Vec<AttestationReport>,
}

#[derive(Debug, Deserialize)]
struct StageLine {
    stage: String,
    status: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    receipt: Option<ReceiptLine>,
}

#[derive(Debug, Deserialize)]
struct ReceiptLine {
    attempt: u32,
    outcome: String,
    node: String,
    org: String,
}

#[derive(Debug, Deserialize)]
struct Stray {
    index: usize,
    reason: String,
}

fn print_report(report: &Report, out: &mut impl io::Write) -> io::Result<()> {
    writeln!(out, "run {}  plan {}", report.run, report.plan_digest)?;
    let width = report
        .stages
        .iter()
        .map(|s| s.stage.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    for stage in &report.stages {
        let mark = match stage.status.as_str() {
            "verified" => "✓",
            "skipped" => "-",
            "missing" => "…",
            _ => "✗",
        };
        let mut detail = match &stage.receipt {
            Some(r) => format!(
                "attempt {} {}, signed by {} of org {}",
                r.attempt, r.outcome, r.node, r.org
            ),
            None if stage.status == "skipped" => "skipped by the plan".to_owned(),
            None => String::new(),
        };
        if let Some(reason) = &stage.reason {
            if !detail.is_empty() {
                detail.push_str(": ");
            }
            detail.push_str(reason);
        }
        writeln!(
            out,
            "  {mark} {:width$}  {:8}  {detail}",
            stage.stage, stage.status
        )?;
    }
    for stray in &report.stray {
        writeln!(out, "  ✗ stray receipt {}: {}", stray.index, stray.reason)?;
    }
    if !report.attestations.is_empty() {
        let good = report.attestations.iter().filter(|a| a.verified).count();
        writeln!(
            out,
            "  attestations: {good} of {} verified",
            report.attestations.len()
        )?;
        for bad in report.attestations.iter().filter(|a| !a.verified) {
            writeln!(
                out,
                "  ✗ {}",
                bad.reason
                    .as_deref()
                    .unwrap_or("attestation does not verify")
            )?;
        }
    }
    let total = report.stages.len();
    if report.verified {
        writeln!(
            out,
            "verified: all {total} stages proven by receipts of nodes of trusted orgs"
        )
    } else {
        let bad = report
            .stages
            .iter()
            .filter(|s| !matches!(s.status.as_str(), "verified" | "skipped"))
            .count();
        let mut verdict = format!("NOT verified: {bad} of {total} stages not proven");
        if !report.stray.is_empty() {
            verdict.push_str(&format!(", {} stray receipts", report.stray.len()));
        }
        let failed = report.attestations.iter().filter(|a| !a.verified).count();
        if failed > 0 {
            verdict.push_str(&format!(", {failed} attestations fail"));
        }
        writeln!(out, "{verdict}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ed25519:3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";

    #[test]
    fn org_keys_parse_with_or_without_a_name() {
        let (name, key) = parse_org_key(&format!("acme={KEY}")).unwrap();
        assert_eq!(name.as_deref(), Some("acme"));
        assert_eq!(key.keyid(), KEY);
        let (name, key) = parse_org_key(KEY).unwrap();
        assert_eq!(name, None);
        assert_eq!(key.keyid(), KEY);
        for bad in [
            "acme",
            "ed25519:00",
            &format!("bad name={KEY}"),
            &format!("={KEY}"),
            &KEY.to_uppercase(),
        ] {
            assert!(parse_org_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_failed_stage_prints_who_signed_and_why() {
        let report: Report = serde_json::from_value(serde_json::json!({
            "run": "R", "plan_digest": "sha256:ab", "verified": false,
            "stages": [
                {"stage": "Build", "status": "verified",
                 "receipt": {"digest": "00", "attempt": 1, "outcome": "success", "node": "n1", "org": "acme"}},
                {"stage": "Docs", "status": "skipped"},
                {"stage": "Deploy", "status": "failed", "reason": "stage \"Deploy\" did not succeed",
                 "receipt": {"digest": "01", "attempt": 2, "outcome": "failure", "node": "ops-1", "org": "ops"}},
                {"stage": "Smoke", "status": "missing", "reason": "no receipt for stage \"Smoke\""}
            ],
            "stray": [],
            "attestations": [{"index": 0, "verified": false, "reason": "attestation 0 is forged"}]
        }))
        .unwrap();
        let mut out = Vec::new();
        print_report(&report, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "run R  plan sha256:ab
  ✓ Build   verified  attempt 1 success, signed by n1 of org acme
  - Docs    skipped   skipped by the plan
  ✗ Deploy  failed    attempt 2 failure, signed by ops-1 of org ops: stage \"Deploy\" did not succeed
  … Smoke   missing   no receipt for stage \"Smoke\"
  attestations: 0 of 1 verified
  ✗ attestation 0 is forged
NOT verified: 2 of 4 stages not proven, 1 attestations fail
"
        );
    }
}
