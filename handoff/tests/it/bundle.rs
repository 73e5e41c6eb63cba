//! Delivery bundles: a run's receipts, certificates and attestations in one JSON document,
//! read back and verified offline against the caller's trust only.

use crate::common::*;
use otto_handoff::Owners;
use otto_handoff::StageStatus;
use otto_handoff::attest;
use otto_handoff::bundle::{
    Bundle, BundleError, BundleReport, FORMAT, MAX_BUNDLE_BYTES, verify_bundle,
};
use otto_protocol::{Envelope, Outcome, Payload as _, Receipt};
use otto_trust::{TrustStore, Unverified, dsse};
use proptest::prelude::*;
use serde_json::Value;

thread_local! {
    /// A valid bundle's JSON bytes, made once per test thread.
    static GOOD: Vec<u8> = bundle(&World::new()).to_json().into_bytes();
}

/// The nodes of the world, by the name their receipts give.
fn signer<'a>(world: &'a World, receipt: &Envelope) -> &'a Node {
    let name = receipt.payload_as::<Receipt>().unwrap().node.name;
    [&world.dev, &world.builder, &world.ops, &world.qa]
        .into_iter()
        .find(|n| n.name == name)
        .unwrap()
}

/// A finished run of the world's plan: Build, Test, Lint, Deploy, Smoke (Docs skipped),
/// each receipt attested by the node that signed it.
fn bundle(world: &World) -> Bundle {
    let chain = world.chain();
    let (build, test) = (chain[0].clone(), chain[1].clone());
    let lint = sign_receipt(
        &world.dev,
        &world.receipt(&world.dev, "Lint", Outcome::Success, vec![digest(&build)]),
    );
    let deploy = sign_receipt(
        &world.ops,
        &world.receipt(
            &world.ops,
            "Deploy",
            Outcome::Success,
            vec![digest(&build), digest(&test)],
        ),
    );
    let smoke = sign_receipt(
        &world.qa,
        &world.receipt(
            &world.qa,
            "Smoke",
            Outcome::Success,
            vec![digest(&build), digest(&test), digest(&deploy)],
        ),
    );
    let receipts = vec![build, test, lint, deploy, smoke];
    let attestations = receipts.iter().map(|r| attestation(world, r)).collect();
    Bundle {
        run: RUN.to_owned(),
        plan: world.plan.clone(),
        receipts,
        certificates: [&world.dev, &world.builder, &world.ops, &world.qa]
            .iter()
            .map(|n| n.cert.clone())
            .collect(),
        attestations,
        verification_summary: None,
    }
}

/// The attestation of `receipt` by the node that signed it.
fn attestation(world: &World, receipt: &Envelope) -> Envelope {
    let node = signer(world, receipt);
    let verified = Unverified::new(receipt.clone())
        .verify(&node.key.public_key())
        .unwrap();
    attest::export(&verified, &node.key).unwrap()
}

/// A verifier who trusts exactly the three orgs' keys, nothing else.
fn trust(world: &World) -> TrustStore {
    let mut trust = TrustStore::new();
    trust
        .pin_org("dev", world.dev.org.public_key(), T0)
        .unwrap();
    trust
        .pin_org("ops", world.ops.org.public_key(), T0)
        .unwrap();
    trust.pin_org("qa", world.qa.org.public_key(), T0).unwrap();
    trust
}

/// The bundle through its JSON form, as a verifier receives it.
fn received(bundle: &Bundle) -> Bundle {
    Bundle::from_json(&bundle.to_json()).unwrap()
}

fn stage_reason(report: &BundleReport, stage: &str) -> (StageStatus, String) {
    let s = report.chain.stage(stage).unwrap();
    (s.status, s.reason.clone().unwrap_or_default())
}

#[test]
fn a_complete_bundle_round_trips_and_verifies() {
    let world = World::new();
    let original = bundle(&world);
    let bundle = received(&original);
    assert_eq!(bundle.run, RUN);
    assert_eq!(bundle.plan.body, original.plan.body);
    assert_eq!(bundle.receipts, original.receipts);
    assert_eq!(bundle.certificates, original.certificates);
    assert_eq!(bundle.attestations, original.attestations);

    let report = verify_bundle(&bundle, &Owners::new(&trust(&world), None, &[]), NOW);
    assert!(report.verified, "{report:#?}");
    assert_eq!(report.plan_digest, world.plan.digest());
    let statuses: Vec<_> = report
        .chain
        .stages
        .iter()
        .map(|s| (s.stage.as_str(), s.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("Build", StageStatus::Verified),
            ("Test", StageStatus::Verified),
            ("Lint", StageStatus::Verified),
            ("Docs", StageStatus::Skipped),
            ("Deploy", StageStatus::Verified),
            ("Smoke", StageStatus::Verified),
        ]
    );
    let deploy = report
        .chain
        .stage("Deploy")
        .unwrap()
        .receipt
        .clone()
        .unwrap();
    assert_eq!(
        (deploy.node.as_str(), deploy.org.as_str()),
        ("ops-1", "ops")
    );
    assert_eq!(report.attestations.len(), 5);
    for (a, receipt) in report.attestations.iter().zip(&bundle.receipts) {
        assert!(a.verified, "{a:?}");
        assert_eq!(a.receipt, Some(digest(receipt)));
    }
    assert_eq!(report.attestations[3].stage.as_deref(), Some("Deploy"));
}

#[test]
fn the_document_has_the_documented_shape() {
    let world = World::new();
    let value: Value = serde_json::from_str(&bundle(&world).to_json()).unwrap();
    assert_eq!(value["format"], FORMAT);
    assert_eq!(value["run"], RUN);
    assert_eq!(value["plan_digest"], world.plan.digest());
    assert_eq!(value["plan"]["pipeline"], "webapp");
    let receipt = &value["receipts"][0];
    assert_eq!(receipt["payloadType"], Receipt::KIND.payload_type());
    assert!(receipt["payload"].is_string() && receipt["signatures"][0]["sig"].is_string());
    assert_eq!(
        value["attestations"][0]["payloadType"],
        attest::PAYLOAD_TYPE
    );
    assert_eq!(value["certificates"].as_array().unwrap().len(), 4);

    // The report puts the chain's stages next to the verdict and the attestations.
    let report = verify_bundle(
        &bundle(&world),
        &Owners::new(&trust(&world), None, &[]),
        NOW,
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["verified"], true);
    assert_eq!(json["run"], RUN);
    assert_eq!(json["stages"][4]["stage"], "Deploy");
    assert_eq!(json["stages"][4]["status"], "verified");
    assert_eq!(json["stages"][4]["receipt"]["node"], "ops-1");
    assert_eq!(json["stray"], Value::Array(vec![]));
    assert_eq!(json["attestations"][0]["verified"], true);
}

#[test]
fn a_tampered_receipt_fails_with_its_stage_and_attestation() {
    let world = World::new();
    let mut bundle = bundle(&world);
    // Lint's receipt now says it failed, with the original signature.
    let mut lint: Receipt = bundle.receipts[2].payload_as().unwrap();
    lint.outcome = Outcome::Failure;
    bundle.receipts[2].payload = otto_protocol::encode_payload(&lint);
    let report = verify_bundle(
        &received(&bundle),
        &Owners::new(&trust(&world), None, &[]),
        NOW,
    );
    assert!(!report.verified);
    let (status, reason) = stage_reason(&report, "Lint");
    assert_eq!(status, StageStatus::Invalid);
    assert!(reason.contains("does not verify"), "{reason}");
    assert_eq!(
        report.chain.stage("Smoke").unwrap().status,
        StageStatus::Verified
    );
    // Lint's attestation names the receipt as it was signed, which is no longer there.
    let failed: Vec<_> = report.failed_attestations().collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].index, 2);
    assert!(
        failed[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("not in the bundle"),
        "{failed:?}"
    );
}

#[test]
fn a_receipt_signed_by_an_org_not_trusted_fails() {
    let world = World::new();
    let bundle = received(&bundle(&world));
    let mut trust = TrustStore::new();
    trust
        .pin_org("dev", world.dev.org.public_key(), T0)
        .unwrap();
    trust
        .pin_org("ops", world.ops.org.public_key(), T0)
        .unwrap();
    let report = verify_bundle(&bundle, &Owners::new(&trust, None, &[]), NOW);
    assert!(!report.verified);
    let (status, reason) = stage_reason(&report, "Smoke");
    assert_eq!(status, StageStatus::Invalid);
    assert!(
        reason.contains("qa-1") && reason.contains("not trusted"),
        "{reason}"
    );
    assert_eq!(
        report.chain.stage("Deploy").unwrap().status,
        StageStatus::Verified
    );
    // Smoke's attestation has no trusted receipt to be checked against.
    let failed: Vec<_> = report.failed_attestations().map(|a| a.index).collect();
    assert_eq!(failed, [4]);
    assert!(
        report.attestations[4]
            .reason
            .as_deref()
            .unwrap()
            .contains("of stage \"Smoke\"")
    );

    // Trusting nobody, nothing verifies: the bundle's own certificates carry no trust.
    let report = verify_bundle(&bundle, &Owners::new(&TrustStore::new(), None, &[]), NOW);
    assert!(!report.verified);
    assert!(
        report
            .chain
            .stages
            .iter()
            .all(|s| matches!(s.status, StageStatus::Invalid | StageStatus::Skipped))
    );
    assert!(report.attestations.iter().all(|a| !a.verified));
}

#[test]
fn a_missing_upstream_receipt_fails() {
    let world = World::new();
    let mut bundle = bundle(&world);
    bundle.receipts.remove(0);
    bundle.attestations.remove(0);
    let report = verify_bundle(
        &received(&bundle),
        &Owners::new(&trust(&world), None, &[]),
        NOW,
    );
    assert!(!report.verified);
    let (status, reason) = stage_reason(&report, "Build");
    assert_eq!(status, StageStatus::Missing);
    assert!(reason.contains("no receipt"), "{reason}");
    let (status, reason) = stage_reason(&report, "Test");
    assert_eq!(status, StageStatus::Invalid);
    assert!(reason.contains("names upstream receipt"), "{reason}");
    assert!(report.attestations.iter().all(|a| a.verified));
}

#[test]
fn a_forged_attestation_fails() {
    let world = World::new();
    let good = bundle(&world);

    // Deploy's statement, signed by dev instead of ops, the node that signed the receipt.
    let mut bundle = good.clone();
    let statement = bundle.attestations[3].payload.clone();
    bundle.attestations[3] = dsse::sign(attest::PAYLOAD_TYPE, statement, &world.dev.key).unwrap();
    let report = verify_bundle(
        &received(&bundle),
        &Owners::new(&trust(&world), None, &[]),
        NOW,
    );
    assert!(!report.verified);
    assert!(report.chain.is_verified());
    let forged = &report.attestations[3];
    assert!(!forged.verified);
    assert_eq!(forged.stage.as_deref(), Some("Deploy"));
    let reason = forged.reason.as_deref().unwrap();
    assert!(reason.contains("not signed by node \"ops-1\""), "{reason}");

    // Deploy's statement with another outcome, signed by ops itself: the signature is
    // good, the facts are not the receipt's.
    let mut bundle = good.clone();
    let mut statement: Value = serde_json::from_slice(&bundle.attestations[3].payload).unwrap();
    statement["predicate"]["outcome"] = Value::from("failure");
    let payload = serde_json::to_vec(&statement).unwrap();
    bundle.attestations[3] = dsse::sign(attest::PAYLOAD_TYPE, payload, &world.ops.key).unwrap();
    let report = verify_bundle(
        &received(&bundle),
        &Owners::new(&trust(&world), None, &[]),
        NOW,
    );
    assert!(!report.verified);
    let reason = report.attestations[3].reason.as_deref().unwrap();
    assert!(reason.contains("different outcome"), "{reason}");

    // An attestation about a receipt the bundle does not have.
    let mut bundle = good.clone();
    let mut other = world.receipt(&world.ops, "Deploy", Outcome::Success, vec![]);
    other.attempt = 2;
    bundle.attestations[3] = attestation(&world, &sign_receipt(&world.ops, &other));
    let report = verify_bundle(
        &received(&bundle),
        &Owners::new(&trust(&world), None, &[]),
        NOW,
    );
    assert!(!report.verified);
    let reason = report.attestations[3].reason.as_deref().unwrap();
    assert!(reason.contains("not in the bundle"), "{reason}");

    // Not an in-toto statement at all.
    let mut bundle = good;
    bundle.attestations[0] = bundle.receipts[0].clone();
    let report = verify_bundle(
        &received(&bundle),
        &Owners::new(&trust(&world), None, &[]),
        NOW,
    );
    let reason = report.attestations[0].reason.as_deref().unwrap();
    assert!(reason.contains("payload type"), "{reason}");
}

#[test]
fn texts_that_are_not_bundles_are_refused_with_a_reason() {
    let world = World::new();
    let good: Value = serde_json::from_str(&bundle(&world).to_json()).unwrap();
    let with = |key: &str, value: Value| {
        let mut v = good.clone();
        v[key] = value;
        v.to_string()
    };
    let cases = [
        ("not json".to_owned(), "not an otto bundle"),
        ("[1, 2]".to_owned(), "not an otto bundle"),
        ("{\"run\": \"x\"}".to_owned(), "no \"format\" field"),
        (
            with("format", Value::from("otto.bundle/v2")),
            "unsupported bundle format \"otto.bundle/v2\"",
        ),
        (
            with(
                "plan_digest",
                Value::from(format!("sha256:{}", "0".repeat(64))),
            ),
            "is not the digest of its plan",
        ),
        (with("receipts", Value::from(7)), "malformed bundle"),
        (with("plan", Value::from("webapp")), "malformed bundle"),
    ];
    for (text, expected) in cases {
        let err = Bundle::from_json(&text).unwrap_err();
        assert!(err.to_string().contains(expected), "{text:.80}: {err}");
    }
    let huge = " ".repeat(MAX_BUNDLE_BYTES + 1);
    assert!(matches!(
        Bundle::from_json(&huge),
        Err(BundleError::TooLarge { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = Bundle::from_json(&text);
    }

    /// A valid bundle with bytes changed anywhere is either refused or checked to some
    /// report, never a panic.
    #[test]
    fn a_mutated_bundle_never_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let world = World::new();
        let mut bytes = GOOD.with(Clone::clone);
        for (at, byte) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *byte;
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(bundle) = Bundle::from_json(&text) {
            let _ = verify_bundle(&bundle, &Owners::new(&trust(&world), None, &[]), NOW);
        }
    }
}

fn context() -> otto_handoff::vsa::Context {
    otto_handoff::vsa::Context {
        node: "ops-1".to_owned(),
        org: "ops".to_owned(),
        resource_uri: "git+https://example.com/webapp.git@0123abcd".to_owned(),
        approvals: vec![(
            "Deploy".to_owned(),
            "enter".to_owned(),
            "alice".to_owned(),
            // Gate records keep milliseconds.
            (T0 + 15) * 1000,
        )],
        now: NOW,
    }
}

#[test]
fn a_verification_summary_states_the_verdict_and_its_inputs_and_verifies() {
    use otto_handoff::vsa;
    let world = World::new();
    let bundle = received(&bundle(&world));
    let report = verify_bundle(&bundle, &Owners::new(&trust(&world), None, &[]), NOW);
    let statement = vsa::summary(&bundle, &report, &context());
    let envelope = vsa::sign(&statement, &world.ops.key).unwrap();
    // It verifies with the exporting node's key only, and reads back as it was made.
    let verified = Unverified::new(envelope.clone())
        .verify(&world.ops.key.public_key())
        .unwrap();
    assert!(
        Unverified::new(envelope.clone())
            .verify(&world.qa.key.public_key())
            .is_err()
    );
    assert_eq!(verified.payload_type(), attest::PAYLOAD_TYPE);
    let value: Value = serde_json::from_slice(verified.payload()).unwrap();
    assert_eq!(value["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(
        value["predicateType"],
        "https://slsa.dev/verification_summary/v1"
    );
    let p = &value["predicate"];
    assert_eq!(p["verificationResult"], "PASSED");
    assert_eq!(p["verifiedLevels"][0], vsa::VERIFIED_LEVEL);
    assert_eq!(p["verifier"]["id"], "otto:node/ops/ops-1");
    assert_eq!(
        p["resourceUri"],
        "git+https://example.com/webapp.git@0123abcd"
    );
    assert_eq!(p["slsaVersion"], "1.0");
    assert_eq!(p["timeVerified"].as_str().unwrap().len(), 20);
    // Every receipt is an input, by the digest other receipts name it with.
    let inputs: Vec<String> = p["inputAttestations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["digest"]["sha256"].as_str().unwrap().to_owned())
        .collect();
    let receipts: Vec<String> = bundle.receipts.iter().map(|r| digest(r).to_hex()).collect();
    assert_eq!(inputs, receipts);
    assert_eq!(
        p["inputAttestations"][3]["uri"],
        format!("otto:receipt/{RUN}/Deploy/1")
    );
    // The subjects are the verified stages' outputs; the policy is the plan with who
    // signed each stage and the approvals.
    let subjects: Vec<&str> = value["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        [
            "build.tar",
            "test.tar",
            "lint.tar",
            "deploy.tar",
            "smoke.tar"
        ]
    );
    let plan_hex = world.plan.digest().trim_start_matches("sha256:").to_owned();
    assert_eq!(p["policy"]["digest"]["sha256"], plan_hex);
    let owners = &p["policy"]["annotations"]["owners"];
    assert_eq!(owners[4]["stage"], "Deploy");
    assert_eq!(owners[4]["status"], "verified");
    assert_eq!(owners[4]["node"], "ops-1");
    assert_eq!(owners[3]["status"], "skipped");
    assert_eq!(
        p["policy"]["annotations"]["approvals"][0]["approvedBy"],
        "alice"
    );
    assert_eq!(
        p["policy"]["annotations"]["approvals"][0]["at"],
        "2025-01-01T00:00:15Z"
    );
    assert!(p["policy"]["annotations"].get("problems").is_none());

    // It travels in the bundle and comes back the same.
    let mut with = bundle.clone();
    with.verification_summary = Some(envelope.clone());
    assert_eq!(received(&with).verification_summary, Some(envelope));
    assert!(!bundle.to_json().contains("verification_summary"));
}

#[test]
fn a_chain_that_does_not_verify_is_summarised_as_failed() {
    use otto_handoff::vsa;
    let world = World::new();
    let mut bundle = bundle(&world);
    bundle.receipts.remove(3);
    let report = verify_bundle(&bundle, &Owners::new(&trust(&world), None, &[]), NOW);
    assert!(!report.verified);
    let statement = vsa::summary(&bundle, &report, &context());
    assert_eq!(statement.predicate.verification_result, vsa::FAILED);
    assert_eq!(statement.predicate.verified_levels, [vsa::FAILED]);
    assert_eq!(statement.predicate.input_attestations.len(), 4);
    assert!(statement.subject.iter().all(|s| s.name != "deploy.tar"));
}

#[test]
fn an_output_the_plan_does_not_archive_in_its_stage_is_no_subject_and_fails_the_summary() {
    use otto_handoff::vsa;
    let world = World::new();
    let mut bundle = bundle(&world);
    // ops, which owns Deploy, also claims an artifact named like Build's, with its own
    // digest: a verified receipt, but not an output the plan gives Deploy.
    let mut receipt: Receipt = bundle.receipts[3].payload_as().unwrap();
    assert_eq!(receipt.stage, "Deploy");
    let mut forged = receipt.outputs[0].clone();
    forged.name = "build.tar".to_owned();
    forged.sha256 = sha256(b"something else");
    receipt.outputs.push(forged);
    let forged = sign_receipt(&world.ops, &receipt);
    let smoke: Receipt = bundle.receipts[4].payload_as().unwrap();
    let mut smoke = smoke;
    smoke.upstream[2] = digest(&forged);
    bundle.receipts[3] = forged;
    bundle.receipts[4] = sign_receipt(&world.qa, &smoke);
    bundle.attestations.clear();
    let report = verify_bundle(&bundle, &Owners::new(&trust(&world), None, &[]), NOW);
    assert!(report.verified, "the chain itself verifies: {report:?}");
    let statement = vsa::summary(&bundle, &report, &context());
    assert_eq!(statement.predicate.verification_result, vsa::FAILED);
    assert_eq!(statement.predicate.verified_levels, [vsa::FAILED]);
    let builds: Vec<_> = statement
        .subject
        .iter()
        .filter(|s| s.name == "build.tar")
        .collect();
    assert_eq!(builds.len(), 1, "only Build's own build.tar is a subject");
    assert_eq!(
        builds[0].digest["sha256"],
        sha256(b"output of Build").to_hex()
    );
    assert_eq!(
        statement.predicate.policy.annotations.problems,
        ["stage 'Deploy' output 'build.tar' is not an artifact the plan archives in that stage"]
    );
}
