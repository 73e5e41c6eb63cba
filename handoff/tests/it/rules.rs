//! The rules of a run that the node and the simulator share (`otto_handoff::rules`).

use otto_handoff::rules::{self, Held, Mover, Next};
use otto_protocol::{KeyBytes, Outcome, RejectCode, StageState};
use otto_trust::TrustStore;

use crate::common::{T0, World, digest, plan, sign_receipt};

/// The chain of Deploy as dev holds it: Build by the builder, Test by dev.
fn held(world: &World) -> Vec<Held> {
    world
        .chain()
        .into_iter()
        .map(|envelope| (envelope.payload_as().unwrap(), envelope))
        .collect()
}

fn key(node: &crate::common::Node) -> KeyBytes {
    KeyBytes(*node.key.public_key().as_bytes())
}

#[test]
fn upstream_is_transitive_in_plan_order_and_ends_on_cycles() {
    let plan = plan();
    let ids = |id: &str| -> Vec<String> {
        rules::upstream(&plan.body, id)
            .iter()
            .map(|s| s.id.clone())
            .collect()
    };
    assert_eq!(ids("Smoke"), ["Build", "Test", "Docs", "Deploy"]);
    assert_eq!(ids("Deploy"), ["Build", "Test", "Docs"]);
    assert!(ids("Build").is_empty());
    assert!(ids("Nope").is_empty());
    // A hostile plan whose stages need each other still ends, without the stage itself.
    let mut cyclic = plan.clone();
    cyclic.body.stages[0].needs = vec!["Smoke".to_owned()];
    let up: Vec<String> = rules::upstream(&cyclic.body, "Build")
        .iter()
        .map(|s| s.id.clone())
        .collect();
    assert_eq!(up, ["Test", "Docs", "Deploy", "Smoke"]);
}

#[test]
fn ready_stages_are_open_with_every_need_passed() {
    let plan = plan();
    let ready = |passed: &[&str]| -> Vec<String> {
        rules::ready(
            &plan.body,
            |s| !passed.contains(&s.id.as_str()),
            |need| passed.contains(&need),
        )
        .iter()
        .map(|s| s.id.clone())
        .collect()
    };
    assert_eq!(ready(&[]), ["Build"]);
    assert_eq!(ready(&["Build"]), ["Test", "Lint", "Docs"]);
    assert_eq!(ready(&["Build", "Test"]), ["Lint", "Docs"]);
    assert_eq!(ready(&["Build", "Test", "Docs", "Lint"]), ["Deploy"]);
}

#[test]
fn the_chain_holds_the_latest_receipt_of_every_stage_before_in_plan_order() {
    let world = World::new();
    let mut receipts = held(&world);
    let chain = rules::chain(&world.plan.body, "Deploy", &receipts);
    let stages: Vec<&str> = chain.iter().map(|(r, _)| r.stage.as_str()).collect();
    assert_eq!(stages, ["Build", "Test"]);
    // A second attempt of Build replaces the first in the chain.
    let mut again = world.receipt(&world.builder, "Build", Outcome::Success, vec![]);
    again.attempt = 2;
    let again = sign_receipt(&world.builder, &again);
    receipts.insert(0, (again.payload_as().unwrap(), again.clone()));
    let chain = rules::chain(&world.plan.body, "Deploy", &receipts);
    assert_eq!(chain[0].1, again);
    assert_eq!(
        rules::upstream_digests(&world.plan.body, "Deploy", &receipts),
        vec![digest(&again), digest(&receipts[2].1)]
    );
    // Smoke's chain has no Deploy receipt yet: only what exists is carried.
    assert_eq!(rules::chain(&world.plan.body, "Smoke", &receipts).len(), 2);
}

#[test]
fn the_signer_of_the_last_need_moves_a_stage_on_and_the_origin_the_first() {
    let world = World::new();
    let receipts = held(&world);
    let body = &world.plan.body;
    let deploy = world.plan.stage("Deploy").unwrap();
    let build = world.plan.stage("Build").unwrap();
    let test = world.plan.stage("Test").unwrap();
    // Deploy needs Docs (skipped, no receipt) and Test (dev's receipt): dev moves it on.
    assert_eq!(
        rules::mover(body, deploy, &receipts, &key(&world.dev), false),
        Mover::Me
    );
    assert_eq!(
        rules::mover(body, deploy, &receipts, &key(&world.ops), true),
        Mover::Other(Some("dev-1".to_owned()))
    );
    // Test needs Build, which the builder ran.
    assert_eq!(
        rules::mover(body, test, &receipts, &key(&world.dev), true),
        Mover::Other(Some("build-1".to_owned()))
    );
    // Build needs nothing: whoever started the run.
    assert_eq!(
        rules::mover(body, build, &[], &key(&world.ops), true),
        Mover::Me
    );
    assert_eq!(
        rules::mover(body, build, &[], &key(&world.ops), false),
        Mover::Other(None)
    );
}

#[test]
fn the_mover_runs_what_it_owns_offers_what_it_does_not_and_others_wait() {
    let world = World::new();
    let deploy = world.plan.stage("Deploy").unwrap();
    let other = Mover::Other(Some("dev-1".to_owned()));
    assert_eq!(rules::next(deploy, true, false, &Mover::Me), Next::Run);
    assert_eq!(
        rules::next(deploy, false, false, &Mover::Me),
        Next::HandOff {
            note: "to be offered to ops".to_owned()
        }
    );
    assert_eq!(
        rules::next(deploy, true, false, &other),
        Next::Wait {
            note: "dev-1 moves it on to ops".to_owned()
        }
    );
    assert_eq!(
        rules::next(deploy, false, false, &Mover::Other(None)),
        Next::Wait {
            note: "the node that started the run moves it on to ops".to_owned()
        }
    );
    // An accepted offer runs, whoever moved it on.
    assert_eq!(rules::next(deploy, true, true, &other), Next::Run);
    // Owning a stage is answering to its owner, or having started the run for one without.
    let names = ["ops".to_owned(), "ops-1".to_owned()];
    assert!(rules::owns(Some("ops"), &names, false));
    assert!(!rules::owns(Some("qa"), &names, true));
    assert!(rules::owns(None, &names, true));
    assert!(!rules::owns(None, &names, false));
}

#[test]
fn an_offer_carries_the_chain_its_artifacts_and_the_other_signers() {
    let world = World::new();
    let receipts = held(&world);
    let draft = rules::draft(
        &world.plan.body,
        "Deploy",
        &receipts,
        &key(&world.dev),
        |r| Some(r.node.name.clone()),
    );
    assert_eq!(draft.chain.len(), 2);
    let inputs: Vec<(&str, &str)> = draft
        .inputs
        .iter()
        .map(|i| (i.name.as_str(), i.provider.as_str()))
        .collect();
    assert_eq!(inputs, [("build.tar", "build-1"), ("test.tar", "dev-1")]);
    // dev's own certificate is the sender's; only the builder's goes along.
    assert_eq!(draft.signers, [key(&world.builder)]);
    // A signer without a known provider contributes no inputs.
    let none = rules::draft(
        &world.plan.body,
        "Deploy",
        &receipts,
        &key(&world.dev),
        |_| None,
    );
    assert!(none.inputs.is_empty());
}

#[test]
fn a_stage_moved_on_without_an_offer_meets_the_offer_s_scope_and_definition_checks() {
    let world = World::new();
    let deploy = world.plan.stage("Deploy").unwrap();
    let publishes = |_: &otto_pipeline::plan::Body, _: &otto_pipeline::plan::Stage| false;
    let trust = world.ops_trust();
    assert!(rules::check_stage(&trust, "dev", &world.plan.body, deploy, &publishes).is_ok());
    // An org without a policy here: out of scope, with the hint to give one.
    let refused = rules::check_stage(&trust, "qa", &world.plan.body, deploy, &publishes)
        .expect_err("qa has no policy here");
    assert_eq!(refused.code, RejectCode::OutOfScope);
    assert!(refused.hint.is_some());
    // In scope, but the definition is not approved: the digest and the command to approve.
    let mut unapproved = TrustStore::new();
    unapproved
        .pin_org("dev", world.dev.org.public_key(), T0)
        .unwrap();
    unapproved.set_policy("dev", World::policy()).unwrap();
    let refused = rules::check_stage(&unapproved, "dev", &world.plan.body, deploy, &publishes)
        .expect_err("not approved");
    assert_eq!(refused.code, RejectCode::DefinitionNotApproved);
    assert!(refused.message.contains(&world.deploy_digest()));
    assert!(
        refused
            .hint
            .unwrap()
            .contains(&format!("otto-node approve {}", world.deploy_digest()))
    );
}

#[test]
fn outcomes_and_end_states_map_both_ways_and_nothing_else_is_an_end() {
    for outcome in [
        Outcome::Success,
        Outcome::Failure,
        Outcome::Skipped,
        Outcome::Cancelled,
    ] {
        assert_eq!(rules::outcome_of(rules::state_of(outcome)), Some(outcome));
    }
    for state in [
        StageState::Queued,
        StageState::WaitingGate,
        StageState::Running,
    ] {
        assert_eq!(rules::outcome_of(state), None);
    }
    assert_eq!(rules::verb(Outcome::Success), "ran");
    assert_eq!(rules::verb(Outcome::Failure), "failed");
}

#[test]
fn the_starter_must_resolve_only_the_owners_it_offers_stages_to() {
    let text = "
stage('Build') { steps { sh 'b' } }
stage('Deploy') { owner = 'opps'  steps { sh 'd' } }
stage('Prod') { owner = 'prod'  steps { sh 'p' } }
stage('Back') { owner = 'dev'  steps { sh 'x' } }
stage('Docs') { owner = 'docs'  when { tag != '' }  steps { sh 'x' } }
stage('Audit') { owner = 'audit'  steps { sh 'x' } }
";
    let source = otto_pipeline::source::MemSource::default();
    let plan = otto_pipeline::plan_text(
        &source,
        std::path::Path::new("Ottofile"),
        text,
        &otto_pipeline::Facts::default(),
        &otto_pipeline::StepCatalog::builtins(),
        None,
    )
    .unwrap()
    .plan;
    let body = &plan.body;
    let stage = |id: &str| body.stages.iter().find(|s| s.id == id).unwrap();
    let names = vec!["dev".to_owned()];
    // Build runs here (no owner), so the starter offers Deploy; ops's node moves Prod
    // on; Back is the starter's own, and it moves Docs on, which the plan skips; Audit
    // comes after the skipped Docs, whose skip the starter signs.
    assert!(rules::starter_moves_on(body, stage("Build"), &names));
    assert!(rules::starter_moves_on(body, stage("Deploy"), &names));
    assert!(!rules::starter_moves_on(body, stage("Prod"), &names));
    assert!(!rules::starter_moves_on(body, stage("Back"), &names));
    assert!(rules::starter_moves_on(body, stage("Docs"), &names));
    assert!(!rules::starter_moves_on(body, stage("Audit"), &names));
    let all: Vec<String> = ["opps", "prod", "docs", "audit"].map(String::from).to_vec();
    assert_eq!(rules::unreachable(body, &names, &all), [("Deploy", "opps")]);
    // A name the binding resolved is never listed.
    assert!(rules::unreachable(body, &names, &["prod".to_owned()]).is_empty());
}
