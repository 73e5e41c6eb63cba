//! `verify_chain`: a whole run's receipts against its plan.

use crate::common::*;
use otto_handoff::Owners;
use otto_handoff::{ChainReport, StageStatus, verify_chain};
use otto_protocol::{Digest, Envelope, Outcome};

/// Every receipt of a finished run, in the order the stages ended.
struct Run {
    receipts: Vec<Envelope>,
    certificates: Vec<Envelope>,
}

fn run(world: &World, deploy: Outcome) -> Run {
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
            deploy,
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
    Run {
        receipts: vec![build, test, lint, deploy, smoke],
        certificates: [&world.dev, &world.builder, &world.ops, &world.qa]
            .iter()
            .map(|n| n.cert.clone())
            .collect(),
    }
}

fn report(world: &World, run: &Run, now: u64) -> ChainReport {
    verify_chain(
        RUN,
        &world.plan,
        &run.receipts,
        &run.certificates,
        &Owners::new(&world.ops_trust(), None, &[]),
        now,
    )
}

fn status(report: &ChainReport, stage: &str) -> StageStatus {
    report.stage(stage).unwrap().status
}

#[test]
fn a_finished_run_verifies_stage_by_stage() {
    let world = World::new();
    let run = run(&world, Outcome::Success);
    let report = report(&world, &run, NOW);
    assert!(report.is_verified(), "{report:#?}");
    let statuses: Vec<_> = report
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
    let deploy = report.stage("Deploy").unwrap().receipt.as_ref().unwrap();
    assert_eq!(deploy.node, "ops-1");
    assert_eq!(deploy.org, "ops");
    assert_eq!(deploy.digest, digest(&run.receipts[3]));
    assert_eq!(deploy.outcome, Outcome::Success);
    assert!(report.stray.is_empty());

    // Receipts may come in any order.
    let mut shuffled = run;
    shuffled.receipts.reverse();
    assert!(self::report(&world, &shuffled, NOW).is_verified());
}

#[test]
fn a_run_in_progress_has_missing_stages() {
    let world = World::new();
    let mut run = run(&world, Outcome::Success);
    run.receipts.pop();
    let report = report(&world, &run, NOW);
    assert!(!report.is_verified());
    assert_eq!(status(&report, "Smoke"), StageStatus::Missing);
    assert!(
        report
            .stage("Smoke")
            .unwrap()
            .reason
            .as_ref()
            .unwrap()
            .contains("no receipt")
    );
    assert_eq!(status(&report, "Deploy"), StageStatus::Verified);
}

#[test]
fn a_failed_stage_is_reported_with_its_receipt() {
    let world = World::new();
    let run = run(&world, Outcome::Failure);
    let report = report(&world, &run, NOW);
    assert!(!report.is_verified());
    let deploy = report.stage("Deploy").unwrap();
    assert_eq!(deploy.status, StageStatus::Failed);
    assert!(
        deploy
            .reason
            .as_ref()
            .unwrap()
            .contains("ended with failure")
    );
    assert_eq!(deploy.receipt.as_ref().unwrap().outcome, Outcome::Failure);
}

#[test]
fn a_tampered_receipt_makes_its_stage_invalid() {
    let world = World::new();
    let mut run = run(&world, Outcome::Success);
    run.receipts[2].signatures[0].sig[0] ^= 0x01;
    let report = report(&world, &run, NOW);
    assert!(!report.is_verified());
    let lint = report.stage("Lint").unwrap();
    assert_eq!(lint.status, StageStatus::Invalid);
    assert!(lint.reason.as_ref().unwrap().contains("does not verify"));
    assert_eq!(status(&report, "Smoke"), StageStatus::Verified);
}

#[test]
fn receipts_of_another_run_or_plan_or_none_are_stray() {
    let world = World::new();
    let mut run = run(&world, Outcome::Success);
    let mut other = world.receipt(&world.dev, "Lint", Outcome::Success, vec![]);
    other.run = "run-0002".to_owned();
    run.receipts.push(sign_receipt(&world.dev, &other));
    let mut other = world.receipt(&world.dev, "Lint", Outcome::Success, vec![]);
    other.plan_digest = format!("sha256:{}", "2".repeat(64));
    run.receipts.push(sign_receipt(&world.dev, &other));
    let ghost = world.receipt(&world.dev, "Ghost", Outcome::Success, vec![]);
    run.receipts.push(sign_receipt(&world.dev, &ghost));
    run.receipts.push(world.dev.cert.clone());
    let report = report(&world, &run, NOW);
    assert!(!report.is_verified());
    let stray: Vec<_> = report.stray.iter().map(|s| s.index).collect();
    assert_eq!(stray, [5, 6, 7, 8]);
    assert!(report.stray[0].reason.contains("run \"run-0002\""));
    assert!(report.stray[1].reason.contains("for plan"));
    assert!(report.stray[2].reason.contains("no stage \"Ghost\""));
    assert!(report.stray[3].reason.contains("does not decode"));
    assert!(
        report
            .stages
            .iter()
            .all(|s| matches!(s.status, StageStatus::Verified | StageStatus::Skipped))
    );
}

#[test]
fn a_receipt_must_name_only_receipts_of_stages_it_needs() {
    let world = World::new();
    let mut run = run(&world, Outcome::Success);
    let lint = digest(&run.receipts[2]);
    for upstream in [vec![Digest([9; 32])], vec![lint]] {
        let deploy = world.receipt(&world.ops, "Deploy", Outcome::Success, upstream);
        run.receipts[3] = sign_receipt(&world.ops, &deploy);
        let report = report(&world, &run, NOW);
        let deploy = report.stage("Deploy").unwrap();
        assert_eq!(deploy.status, StageStatus::Invalid, "{deploy:?}");
        assert!(
            deploy
                .reason
                .as_ref()
                .unwrap()
                .contains("names upstream receipt")
        );
    }
}

#[test]
fn receipts_of_signers_whose_certificates_expired_no_longer_count() {
    let world = World::new();
    let mut run = run(&world, Outcome::Success);
    run.certificates[2] = certificate(
        &world.ops.org,
        "acme-ops",
        "ops-1",
        &world.ops.key,
        T0,
        T0 + 1_000,
    );
    assert!(report(&world, &run, NOW).is_verified());
    let later = report(&world, &run, T0 + 2_000);
    assert_eq!(status(&later, "Deploy"), StageStatus::Invalid);
    assert!(
        later
            .stage("Deploy")
            .unwrap()
            .reason
            .as_ref()
            .unwrap()
            .contains("expired")
    );
}

#[test]
fn the_report_serializes_for_json_output() {
    let world = World::new();
    let mut run = run(&world, Outcome::Success);
    run.receipts.pop();
    let json = serde_json::to_value(report(&world, &run, NOW)).unwrap();
    assert_eq!(json["stages"][0]["stage"], "Build");
    assert_eq!(json["stages"][0]["status"], "verified");
    assert_eq!(
        json["stages"][0]["receipt"]["digest"],
        digest(&run.receipts[0]).to_hex()
    );
    assert_eq!(json["stages"][3]["status"], "skipped");
    assert_eq!(json["stages"][5]["status"], "missing");
    assert_eq!(json["stray"], serde_json::json!([]));
    assert_eq!(StageStatus::Invalid.to_string(), "invalid");
}
