//! `otto verify --bundle` as a user runs it: offline, no node, trust only from `--trust`.
//! The bundle is built here: a two-stage run, `Build` by `n1` of org `acme` and `Deploy`
//! by `ops-1` of org `acme-ops`, each receipt attested by the node that signed it.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use otto_handoff::attest;
use otto_handoff::bundle::Bundle;
use otto_pipeline::plan::OwnerBinding;
use otto_pipeline::{Facts, MemSource, Plan, StepCatalog};
use otto_protocol::{Digest, Envelope, KeyBytes, NodeIdentity, Outcome, Payload as _, Receipt};
use otto_trust::cert::issue_cert;
use otto_trust::{CertSpec, NodeKey, OrgKey, Unverified, dsse};
use serde_json::Value;

use crate::node_support::text;

const OTTOFILE: &str = "pipeline {
  name = 'shop'
  stages {
    stage { name = 'Build'  steps { sh 'make' } }
    stage { name = 'Deploy'  owner = 'ops'  steps { sh './deploy.sh' } }
  }
}
";

const RUN: &str = "01J9ZQ3M5V8R2K4T6W8Y0A2C4E";

struct Org {
    name: &'static str,
    key: OrgKey,
}

struct Signer {
    name: &'static str,
    org: &'static str,
    key: NodeKey,
    cert: Envelope,
}

fn acme() -> Org {
    Org {
        name: "acme",
        key: OrgKey::from_seed(&[0x0a; 32]),
    }
}

fn ops() -> Org {
    Org {
        name: "acme-ops",
        key: OrgKey::from_seed(&[0x0e; 32]),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn node(org: &Org, name: &'static str, seed: u8) -> Signer {
    let key = NodeKey::from_seed(&[seed; 32]);
    let spec = CertSpec {
        node: name.to_owned(),
        org: org.name.to_owned(),
        node_key: key.public_key(),
        roles: vec![],
        not_before: now() - 3_600,
        not_after: now() + 86_400,
    };
    let cert = issue_cert(&spec, &org.key).unwrap();
    Signer {
        name,
        org: org.name,
        key,
        cert,
    }
}

fn plan() -> Plan {
    let source = MemSource::new().with("shop/Ottofile", OTTOFILE);
    otto_pipeline::plan(
        &source,
        Path::new("shop/Ottofile"),
        &Facts::default(),
        &StepCatalog::builtins(),
    )
    .map(|p| bound(p.plan))
    .unwrap_or_else(|f| panic!("plan: {f}"))
}

/// The plan as a node of acme starts it: `origin` bound to acme, `ops` to acme-ops.
fn bound(mut plan: Plan) -> Plan {
    for (owner, org) in [("origin", acme()), ("ops", ops())] {
        plan.body.owners.insert(
            owner.to_owned(),
            OwnerBinding {
                key: keyid(&org),
                org: org.name.to_owned(),
                node: None,
            },
        );
    }
    plan
}

fn receipt(plan: &Plan, by: &Signer, stage: &str, upstream: Vec<Digest>) -> Envelope {
    let receipt = Receipt {
        run: RUN.to_owned(),
        plan_digest: plan.digest(),
        stage: stage.to_owned(),
        attempt: 1,
        outcome: Outcome::Success,
        outputs: vec![],
        log_digest: Digest([3; 32]),
        started_at: now() - 60,
        finished_at: now() - 30,
        started_at_ms: None,
        finished_at_ms: None,
        upstream,
        node: NodeIdentity {
            name: by.name.to_owned(),
            org: by.org.to_owned(),
            key: KeyBytes(*by.key.public_key().as_bytes()),
        },
    };
    dsse::sign(
        Receipt::KIND.payload_type(),
        otto_protocol::encode_payload(&receipt),
        &by.key,
    )
    .unwrap()
}

fn attestation(by: &Signer, receipt: &Envelope) -> Envelope {
    let verified = Unverified::new(receipt.clone())
        .verify(&by.key.public_key())
        .unwrap();
    attest::export(&verified, &by.key).unwrap()
}

fn bundle() -> Bundle {
    bundle_deployed_by(node(&ops(), "ops-1", 0x1e))
}

/// The run's bundle, with `Deploy` run and signed by `ops1`.
fn bundle_deployed_by(ops1: Signer) -> Bundle {
    let plan = plan();
    let n1 = node(&acme(), "n1", 0x1a);
    let build = receipt(&plan, &n1, "Build", vec![]);
    // Receipts name each other by the sha256 of their envelopes' canonical bytes.
    let upstream = otto_pipeline::plan::sha256_digest(&build.canonical_bytes());
    let upstream: Digest = upstream.trim_start_matches("sha256:").parse().unwrap();
    let deploy = receipt(&plan, &ops1, "Deploy", vec![upstream]);
    Bundle {
        run: RUN.to_owned(),
        plan,
        attestations: vec![attestation(&n1, &build), attestation(&ops1, &deploy)],
        receipts: vec![build, deploy],
        certificates: vec![n1.cert.clone(), ops1.cert.clone()],
        verification_summary: None,
    }
}

/// Writes `text` as `bundle.json` in a new directory.
fn file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.json");
    fs::write(&path, text).unwrap();
    (dir, path.to_str().unwrap().to_owned())
}

/// Runs `otto` with no node home around, so nothing but the arguments can be used.
fn otto(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_otto"))
        .args(args)
        .env_remove("OTTO_HOME")
        .env_remove("OTTO_NODE")
        .env_remove("RUST_LOG")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap()
}

fn keyid(org: &Org) -> String {
    org.key.public_key().keyid()
}

#[test]
fn a_bundle_verifies_offline_with_the_org_keys() {
    let (_dir, path) = file(&bundle().to_json());
    let named = [
        format!("acme={}", keyid(&acme())),
        format!("ops={}", keyid(&ops())),
    ];
    let out = otto(&["verify", "--bundle", &path, "--trust", &named[0], &named[1]]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with(&format!("run {RUN}  plan sha256:")),
        "{stdout}"
    );
    assert!(
        lines[1].contains("✓ Build")
            && lines[1].contains("verified")
            && lines[1].contains("attempt 1 success, signed by n1 of org acme"),
        "{stdout}"
    );
    assert!(
        lines[2].contains("✓ Deploy") && lines[2].contains("signed by ops-1 of org ops"),
        "{stdout}"
    );
    assert!(stdout.contains("attestations: 2 of 2 verified"), "{stdout}");
    assert_eq!(
        lines.last(),
        Some(&"verified: all 2 stages proven by receipts of nodes of trusted orgs")
    );

    // Bare key ids, as separate --trust flags: orgs take the names their certificates
    // give, and each owner is the org the plan binds it to. The JSON report is the node's
    // `GET /v1/runs/{run}/verify` shape.
    let out = otto(&[
        "verify",
        "--bundle",
        &path,
        "--trust",
        &keyid(&acme()),
        "--trust",
        &keyid(&ops()),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verified"], true);
    assert_eq!(report["run"], RUN);
    assert_eq!(report["stages"][1]["stage"], "Deploy");
    assert_eq!(report["stages"][1]["status"], "verified");
    assert_eq!(report["stages"][1]["receipt"]["org"], "acme-ops");
    assert_eq!(report["attestations"][1]["verified"], true);
}

#[test]
fn a_bundle_fails_without_the_trust_of_every_signer() {
    let (_dir, path) = file(&bundle().to_json());
    let out = otto(&["verify", "--bundle", &path, "--trust", &keyid(&acme())]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("✓ Build"), "{stdout}");
    let deploy = stdout.lines().find(|l| l.contains("Deploy")).unwrap();
    assert!(
        deploy.contains("✗ Deploy") && deploy.contains("invalid") && deploy.contains("not trusted"),
        "{stdout}"
    );
    assert!(
        stdout.contains("NOT verified: 1 of 2 stages not proven, 1 attestations fail"),
        "{stdout}"
    );
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));

    // A key that signed nothing in the bundle: the output says which orgs did.
    let stranger = OrgKey::from_seed(&[0x55; 32]).public_key().keyid();
    let out = otto(&["verify", "--bundle", &path, "--trust", &stranger]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("hint: none of the --trust keys signed a certificate")
            && stderr.contains(&keyid(&ops())),
        "{stderr}"
    );
}

#[test]
fn a_bundle_whose_stage_another_org_signed_fails_naming_the_stage() {
    // A node of acme ran Deploy, which the plan gives to ops, and signed its receipt.
    let forged = bundle_deployed_by(node(&acme(), "n2", 0x2a));
    let (_dir, path) = file(&forged.to_json());
    let trust = [
        format!("acme={}", keyid(&acme())),
        format!("ops={}", keyid(&ops())),
    ];
    let out = otto(&["verify", "--bundle", &path, "--trust", &trust[0], &trust[1]]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let deploy = stdout.lines().find(|l| l.contains("Deploy")).unwrap();
    assert!(
        deploy.contains("✗ Deploy") && deploy.contains("invalid"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "the receipt of stage \"Deploy\" is signed by node \"n2\" of org \"acme\", but \
             the stage's owner \"ops\" is bound to org \"ops\""
        ),
        "{stdout}"
    );
    assert!(stdout.contains("NOT verified"), "{stdout}");
}

#[test]
fn a_bundle_whose_plan_rebinds_a_named_owner_fails() {
    // The plan binds ops to acme, and a node of acme signed Deploy: consistent, but the
    // verifier knows `ops` as the acme-ops key.
    let mut forged = bundle_deployed_by(node(&acme(), "n2", 0x2a));
    let ops_binding = forged.plan.body.owners.get_mut("ops").unwrap();
    ops_binding.key = keyid(&acme());
    ops_binding.org = "acme".to_owned();
    let n1 = node(&acme(), "n1", 0x1a);
    let n2 = node(&acme(), "n2", 0x2a);
    let build = receipt(&forged.plan, &n1, "Build", vec![]);
    let upstream = otto_pipeline::plan::sha256_digest(&build.canonical_bytes());
    let upstream: Digest = upstream.trim_start_matches("sha256:").parse().unwrap();
    let deploy = receipt(&forged.plan, &n2, "Deploy", vec![upstream]);
    forged.receipts = vec![build, deploy];
    forged.attestations.clear();
    let (_dir, path) = file(&forged.to_json());
    let trust = [
        format!("acme={}", keyid(&acme())),
        format!("ops={}", keyid(&ops())),
    ];
    let out = otto(&["verify", "--bundle", &path, "--trust", &trust[0], &trust[1]]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "the receipt of stage \"Deploy\" is signed by node \"n2\" of org \"acme\", and no \
             org's receipt counts for it: the plan binds owner \"ops\" to org \"acme\", but \
             here \"ops\" is org \"ops\""
        ),
        "{stdout}"
    );

    // Without knowing the name, the verifier goes by the plan: the chain is consistent.
    let bare = [keyid(&acme()), keyid(&ops())];
    let out = otto(&["verify", "--bundle", &path, "--trust", &bare[0], &bare[1]]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn a_tampered_bundle_fails() {
    let mut bundle = bundle();
    let mut deploy: Receipt = bundle.receipts[1].payload_as().unwrap();
    deploy.outcome = Outcome::Failure;
    bundle.receipts[1].payload = otto_protocol::encode_payload(&deploy);
    let (_dir, path) = file(&bundle.to_json());
    let trust = [keyid(&acme()), keyid(&ops())];
    let out = otto(&["verify", "--bundle", &path, "--trust", &trust[0], &trust[1]]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("does not verify"), "{stdout}");
    assert!(stdout.contains("NOT verified"), "{stdout}");
}

#[test]
fn bad_input_is_one_line_and_a_failure() {
    let (dir, path) = file(&bundle().to_json());
    let key = keyid(&acme());
    let (_other, not_json) = file("{\"hello\": 1}");
    let (_third, wrong) = file(
        &bundle()
            .to_json()
            .replace("otto.bundle/v1", "otto.bundle/v9"),
    );
    let missing = dir.path().join("nope.json");
    let cases: [(Vec<&str>, &str); 6] = [
        (
            vec!["--bundle", missing.to_str().unwrap(), "--trust", &key],
            "error: cannot read",
        ),
        (
            vec!["--bundle", &not_json, "--trust", &key],
            "not an otto bundle: the JSON object has no \"format\" field",
        ),
        (
            vec!["--bundle", &wrong, "--trust", &key],
            "unsupported bundle format \"otto.bundle/v9\"",
        ),
        (
            vec!["--bundle", &path, "--trust", "ed25519:abcd"],
            "error: --trust \"ed25519:abcd\": expected NAME=KEYID or KEYID",
        ),
        (
            vec!["--bundle", &path, "--trust", "not a key"],
            "error: --trust \"not a key\"",
        ),
        (
            vec!["--bundle", dir.path().to_str().unwrap(), "--trust", &key],
            "error: cannot read",
        ),
    ];
    for (args, expected) in cases {
        let out = otto(&[&["verify"], args.as_slice()].concat());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }

    // Without a node, `otto verify RUN` says how to get one, on one line.
    let out = otto(&["verify", RUN]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );
}

/// `otto verify RUN` and `otto attest export` against a real node, then the exported
/// bundle checked offline with the node's org key only.
#[test]
fn a_run_on_a_node_verifies_there_and_from_its_exported_bundle() {
    let node = crate::node_support::Node::start_new();
    let dir = crate::node_support::project(&[(
        "Ottofile",
        "pipeline {
  name = 'local'
  stage('Build') { steps { sh 'echo built' } }
  stage('Test') { steps { sh 'echo tested' } }
}
",
    )]);
    let out = node.ok(&["run", dir.path().to_str().unwrap()]);
    let run = out
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .to_owned();
    node.wait_final(&run);

    let out = node.otto(&["verify", &run]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("✓ Build") && stdout.contains("signed by n1 of org acme"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("verified: all 2 stages proven by receipts of nodes of trusted orgs\n")
    );

    let file = node.dir.path().join("delivery.json");
    let out = node.ok(&["attest", "export", &run, "-o", file.to_str().unwrap()]);
    let beside = |suffix: &str| node.dir.path().join(format!("delivery{suffix}"));
    assert_eq!(
        out,
        format!(
            "wrote {}: run {run}, 2 receipts, 2 attestations, 1 certificates\n\
             wrote {}: 2 signer keys (pem, hex, sslib, ssh)\n\
             wrote {}: the in-toto statements as DSSE envelopes, one a line\n\
             wrote {}: verification summary PASSED, signed by this node\n",
            file.display(),
            beside(".keys.json").display(),
            beside(".intoto.jsonl").display(),
            beside(".vsa.json").display(),
        )
    );
    // The signers' keys are the ones `otto-node key show` prints: the node's (receipts,
    // attestations, summary) and the org's (the certificate).
    let keys: Value =
        serde_json::from_str(&fs::read_to_string(beside(".keys.json")).unwrap()).unwrap();
    let shown = |extra: &[&str]| -> Value {
        let out = node.otto_node(&[&["key", "show", "--json"], extra].concat());
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (own, org) = (shown(&[]), shown(&["--org"]));
    assert_eq!(keys["keys"][0]["keyid"], own["keyid"]);
    assert_eq!(keys["keys"][0]["sslib"], own["sslib"]);
    assert_eq!(keys["keys"][0]["pem"], own["pem"]);
    assert_eq!(
        keys["keys"][0]["roles"],
        serde_json::json!(["receipt", "attestation", "verification_summary"])
    );
    assert_eq!(keys["keys"][1]["keyid"], org["keyid"]);
    assert_eq!(keys["keys"][1]["kind"], "org");
    let lines = fs::read_to_string(beside(".intoto.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 3, "two attestations and the summary");
    let summary: Value =
        serde_json::from_str(&fs::read_to_string(beside(".vsa.json")).unwrap()).unwrap();
    assert_eq!(summary["signatures"][0]["keyid"], own["keyid"]);
    let org = otto_trust::persist::load_org_key(&node.home.join("org.key"))
        .unwrap()
        .public_key()
        .keyid();
    let out = otto(&[
        "verify",
        "--bundle",
        file.to_str().unwrap(),
        "--trust",
        &org,
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("attestations: 2 of 2 verified"), "{stdout}");

    let out = node.otto(&["verify", "01J9ZQ3M5V8R2K4T6W8Y0A2C4E"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr, "error: no run 01J9ZQ3M5V8R2K4T6W8Y0A2C4E\n");
}

/// `otto-node key show` prints the node's and the org's public keys in every format, and
/// `otto-node key migrate` finds nothing to do in a new home.
#[test]
fn key_show_prints_the_keys_of_the_home_in_every_format() {
    let node = crate::node_support::Node::init();
    let show = |args: &[&str]| {
        let out = node.otto_node(&[&["key", "show"], args].concat());
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let node_key = otto_trust::persist::load_node_key(&node.home.join("node.key"))
        .unwrap()
        .public_key();
    let org_key = otto_trust::persist::load_org_key(&node.home.join("org.key"))
        .unwrap()
        .public_key();
    assert_eq!(show(&[]), node_key.to_spki_pem());
    assert_eq!(show(&["--format", "pem"]), node_key.to_spki_pem());
    assert_eq!(
        show(&["--format", "hex"]),
        format!("{}\n", node_key.to_hex())
    );
    assert_eq!(
        show(&["--format", "ssh"]),
        format!("{}\n", node_key.to_openssh("n1@acme"))
    );
    let sslib: Value = serde_json::from_str(&show(&["--org", "--format", "sslib"])).unwrap();
    assert_eq!(sslib["keyid"], org_key.keyid());
    assert_eq!(sslib["keyval"]["public"], org_key.to_hex());
    assert_eq!(
        (&sslib["keytype"], &sslib["scheme"]),
        (&"ed25519".into(), &"ed25519".into())
    );
    let json: Value = serde_json::from_str(&show(&["--org", "--json"])).unwrap();
    assert_eq!(json["key"], "org");
    assert_eq!(
        (&json["node"], &json["org"]),
        (&"n1".into(), &"acme".into())
    );
    assert_eq!(json["keyid"], org_key.keyid());

    let out = node.otto_node(&["key", "migrate"]);
    assert_eq!(
        text(&out.stdout),
        "all key files are already PKCS#8 v1; nothing rewritten\n"
    );
    let out = node.otto_node(&["key", "show", "--format", "der"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // --json prints every format; asking for one with it is refused, not ignored.
    let out = node.otto_node(&["key", "show", "--json", "--format", "ssh"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--format"));
    let out = node.otto_node(&["key", "show", "--home", "/nonexistent/otto"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: ")
            && stderr.contains("/nonexistent/otto")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
}

/// An Ed25519 key (seed 32 × 7) as older Otto wrote it: PKCS#8 v2, the public key attached.
const V2_KEY: &str = "-----BEGIN PRIVATE KEY-----
MFECAQEwBQYDK2VwBCIEIAcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH
gSEA6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw=
-----END PRIVATE KEY-----
";

/// `otto-node key migrate` does not replace an old org key kept elsewhere behind a
/// symbolic link with a copy in the home: it says so, `--file` migrates the key where it
/// lives, and the link is then fine as it is.
#[test]
fn key_migrate_refuses_a_symlinked_key_file_and_migrates_its_target_with_file() {
    let node = crate::node_support::Node::init();
    let link = node.home.join("org.key");
    let offline = tempfile::tempdir().unwrap();
    let target = offline.path().join("acme-org.key");
    otto_trust::persist::write_private_file(&target, V2_KEY.as_bytes()).unwrap();
    fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();

    let out = node.otto_node(&["key", "migrate"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: ")
            && stderr.lines().count() == 1
            && stderr.contains("org.key is a symbolic link to")
            && stderr.contains(&format!("migrate {} itself", target.display())),
        "{stderr}"
    );
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), V2_KEY);

    let out = node.otto_node(&["key", "migrate", "--file", target.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("rewrote {} as PKCS#8 v1\n", target.display())
    );
    assert_ne!(fs::read_to_string(&target).unwrap(), V2_KEY);
    let key = otto_trust::persist::load_org_key(&link).unwrap();
    assert_eq!(key.public_key(), OrgKey::from_seed(&[7; 32]).public_key());
    let out = node.otto_node(&["key", "migrate"]);
    assert_eq!(
        text(&out.stdout),
        "all key files are already PKCS#8 v1; nothing rewritten\n",
        "{}",
        text(&out.stderr)
    );
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}
