//! Owners bound to orgs: a receipt counts only when a node of the org its stage's owner
//! is bound to signed it, at the owner before it runs a stage and in `verify_chain`.

use crate::common::*;
use otto_handoff::{
    OwnerPolicy, Owners, Rejection, StageStatus, VerifyContext, bind_owners, verify_chain,
    verify_offer,
};
use otto_pipeline::plan::{ORIGIN, OwnerBinding};
use otto_protocol::{Offer, Outcome, RejectCode};
use otto_trust::store::AliasTarget;
use otto_trust::{OrgKey, TrustStore};

/// A second node of the dev org, set up to answer to `qa` as well.
fn rogue() -> Node {
    Node::new("dev-2", "acme-dev", 0x0d, 0x3d)
}

/// The world with `Test` owned by `owner` instead of the origin.
fn tested_by_owner(owner: &str) -> World {
    let mut world = World::new();
    let test = world
        .plan
        .body
        .stages
        .iter_mut()
        .find(|s| s.id == "Test")
        .unwrap();
    test.owner = Some(owner.to_owned());
    world
}

/// Binds `owner` in the world's plan to the org whose key has seed `seed`.
fn bind(world: &mut World, owner: &str, org: &str, seed: u8) {
    let (name, binding) = bound(owner, org, seed);
    world.plan.body.owners.insert(name, binding);
}

/// Deploy's offer from dev, whose `Test` receipt `tester` signed.
fn offer_tested_by(world: &World, tester: &Node) -> Offer {
    let build = sign_receipt(
        &world.builder,
        &world.receipt(&world.builder, "Build", Outcome::Success, vec![]),
    );
    let test = sign_receipt(
        tester,
        &world.receipt(tester, "Test", Outcome::Success, vec![digest(&build)]),
    );
    let mut offer = world.offer();
    offer.receipts = vec![build, test];
    offer.certificates = vec![world.builder.cert.clone(), tester.cert.clone()];
    offer
}

fn check(
    world: &World,
    offer: &Offer,
    policy: OwnerPolicy,
) -> Result<otto_handoff::AcceptedOffer, Rejection> {
    let trust = world.ops_trust();
    let names = ops_names();
    let ctx = VerifyContext::new(&trust, ops_org(), &names).with_owners(policy);
    verify_offer(world.signed(offer), &ctx, NOW)
}

#[track_caller]
fn refused(result: Result<otto_handoff::AcceptedOffer, Rejection>, code: RejectCode) -> String {
    let rejection = result.expect_err("the offer must be refused");
    assert_eq!(rejection.code, code, "{rejection:?}");
    rejection.message
}

#[test]
fn a_stage_signed_by_its_owners_org_is_accepted() {
    let mut world = tested_by_owner("qa");
    bind(&mut world, "qa", "acme-qa", 0x0f);
    let offer = offer_tested_by(&world, &world.qa);
    let accepted = check(&world, &offer, OwnerPolicy::Pinned).unwrap();
    assert_eq!(accepted.upstream().len(), 2);
}

#[test]
fn another_orgs_node_that_answers_to_the_owner_is_the_wrong_signer() {
    // The plan binds qa honestly; a dev node that also answers to qa ran Test itself.
    let mut world = tested_by_owner("qa");
    bind(&mut world, "qa", "acme-qa", 0x0f);
    let offer = offer_tested_by(&world, &rogue());
    let message = refused(
        check(&world, &offer, OwnerPolicy::Pinned),
        RejectCode::UpstreamReceiptWrongSigner,
    );
    assert_eq!(
        message,
        "the receipt of stage \"Test\" is signed by node \"dev-2\" of org \"dev\", but the \
         stage's owner \"qa\" is bound to org \"qa\""
    );
}

#[test]
fn a_plan_that_binds_the_owner_to_the_signers_org_is_refused_all_the_same() {
    // The rogue node started the run and bound qa to its own org, as it answers to qa.
    let mut world = tested_by_owner("qa");
    bind(&mut world, "qa", "acme-dev", 0x0d);
    let offer = offer_tested_by(&world, &rogue());
    let message = refused(
        check(&world, &offer, OwnerPolicy::Pinned),
        RejectCode::UpstreamReceiptWrongSigner,
    );
    assert!(message.contains("stage \"Test\""), "{message}");
    assert!(message.contains("org \"dev\""), "{message}");
    assert!(
        message.contains(
            "the plan binds owner \"qa\" to org \"acme-dev\", but here \"qa\" is org \"qa\""
        ),
        "{message}"
    );
}

#[test]
fn an_org_this_node_never_pinned_is_refused_unless_the_policy_takes_the_binding() {
    // Test belongs to `sec`, bound to an org ops has never pinned.
    let sec = Node::new("sec-1", "acme-sec", 0x1c, 0x2c);
    let mut world = tested_by_owner("sec");
    bind(&mut world, "sec", "acme-sec", 0x1c);
    let offer = offer_tested_by(&world, &sec);
    let message = refused(
        check(&world, &offer, OwnerPolicy::Pinned),
        RejectCode::UpstreamReceiptInvalid,
    );
    assert!(message.contains("not trusted"), "{message}");
    check(&world, &offer, OwnerPolicy::Bound).unwrap();

    // Taking the plan's key still holds the signer to it.
    let offer = offer_tested_by(&world, &rogue());
    let message = refused(
        check(&world, &offer, OwnerPolicy::Bound),
        RejectCode::UpstreamReceiptWrongSigner,
    );
    assert!(message.contains("bound to org \"acme-sec\""), "{message}");
}

#[test]
fn an_owner_bound_to_an_unpinned_org_counts_no_receipt_of_a_pinned_one() {
    // The plan binds `sec` to an org ops never pinned; a pinned org's node signed Test.
    let mut world = tested_by_owner("sec");
    bind(&mut world, "sec", "acme-sec", 0x1c);
    let offer = offer_tested_by(&world, &world.qa);
    let message = refused(
        check(&world, &offer, OwnerPolicy::Pinned),
        RejectCode::UpstreamReceiptWrongSigner,
    );
    assert!(
        message
            .contains("the plan binds owner \"sec\" to org \"acme-sec\", which is not pinned here"),
        "{message}"
    );
}

#[test]
fn a_plan_that_binds_this_nodes_name_to_another_org_is_not_its_stage() {
    let mut world = World::new();
    bind(&mut world, "ops", "acme-dev", 0x0d);
    let offer = world.offer();
    let message = refused(
        check(&world, &offer, OwnerPolicy::Pinned),
        RejectCode::StageNotOwned,
    );
    assert!(
        message.contains(
            "the plan binds owner \"ops\" to org \"acme-dev\", but here \"ops\" is org \"ops\""
        ),
        "{message}"
    );
}

#[test]
fn a_plan_that_binds_a_later_owner_to_another_org_is_a_binding_mismatch() {
    // Smoke (after Deploy) is qa's; the plan says qa is the dev org.
    let mut world = World::new();
    bind(&mut world, "qa", "acme-dev", 0x0d);
    let offer = world.offer();
    let message = refused(
        check(&world, &offer, OwnerPolicy::Pinned),
        RejectCode::OwnerBindingMismatch,
    );
    assert!(message.contains("owner \"qa\""), "{message}");
}

#[test]
fn a_plan_without_a_binding_counts_no_receipt() {
    let mut world = World::new();
    world.plan.body.owners.remove(ORIGIN);
    let offer = world.offer();
    let message = refused(
        check(&world, &offer, OwnerPolicy::Bound),
        RejectCode::UpstreamReceiptWrongSigner,
    );
    assert!(
        message
            .contains("the plan binds no org to owner \"origin\", and this node does not know it"),
        "{message}"
    );
}

#[test]
fn a_name_the_origin_left_unbound_goes_by_what_the_checking_node_knows() {
    // The origin could not resolve qa (two orgs away); ops knows qa itself.
    let mut world = tested_by_owner("qa");
    world.plan.body.owners.remove("qa");
    world.plan.body.owners.remove("ops");
    check(
        &world,
        &offer_tested_by(&world, &world.qa),
        OwnerPolicy::Pinned,
    )
    .unwrap();
    let message = refused(
        check(
            &world,
            &offer_tested_by(&world, &rogue()),
            OwnerPolicy::Pinned,
        ),
        RejectCode::UpstreamReceiptWrongSigner,
    );
    assert!(message.contains("bound to org \"qa\""), "{message}");

    // A name neither the plan nor ops knows counts no receipt, whatever the policy.
    let mut world = tested_by_owner("qa-team");
    world.plan.body.owners.remove("qa-team");
    let message = refused(
        check(
            &world,
            &offer_tested_by(&world, &world.qa),
            OwnerPolicy::Bound,
        ),
        RejectCode::UpstreamReceiptWrongSigner,
    );
    assert!(
        message.contains("binds no org to owner \"qa-team\""),
        "{message}"
    );
}

#[test]
fn a_binding_that_is_not_a_key_id_is_refused() {
    let mut world = World::new();
    world.plan.body.owners.insert(
        ORIGIN.to_owned(),
        OwnerBinding {
            key: "ed25519:zz".to_owned(),
            org: "dev".to_owned(),
            node: None,
        },
    );
    let offer = world.offer();
    let message = refused(
        check(&world, &offer, OwnerPolicy::Pinned),
        RejectCode::UpstreamReceiptWrongSigner,
    );
    assert!(message.contains("which is not a key id"), "{message}");
}

#[test]
fn verify_chain_marks_a_stage_signed_by_the_wrong_org_invalid() {
    let mut world = tested_by_owner("qa");
    bind(&mut world, "qa", "acme-qa", 0x0f);
    let trust = world.ops_trust();
    let owners = Owners::new(&trust, None, &[]);
    let report = |tester: &Node| {
        let offer = offer_tested_by(&world, tester);
        verify_chain(
            RUN,
            &world.plan,
            &offer.receipts,
            &offer.certificates,
            &owners,
            NOW,
        )
    };

    let honest = report(&world.qa);
    assert_eq!(honest.stage("Test").unwrap().status, StageStatus::Verified);

    let forged = report(&rogue());
    let test = forged.stage("Test").unwrap();
    assert_eq!(test.status, StageStatus::Invalid);
    assert_eq!(
        test.reason.as_deref(),
        Some(
            "the receipt of stage \"Test\" is signed by node \"dev-2\" of org \"dev\", but \
             the stage's owner \"qa\" is bound to org \"qa\""
        )
    );
    assert!(!forged.is_verified());
}

#[test]
fn the_origin_binds_every_owner_it_can_resolve() {
    let world = World::new();
    let dev_org = world.dev.org.public_key();
    let mut trust = TrustStore::new();
    trust.pin_org("acme-dev", dev_org, T0).unwrap();
    trust
        .pin_org("acme-ops", world.ops.org.public_key(), T0)
        .unwrap();
    trust
        .set_alias("ops", AliasTarget::Org("acme-ops".to_owned()))
        .unwrap();
    let mut body = world.plan.body.clone();
    body.stages
        .iter_mut()
        .find(|s| s.id == "Lint")
        .unwrap()
        .owner = Some("linter".to_owned());
    body.stages
        .iter_mut()
        .find(|s| s.id == "Docs")
        .unwrap()
        .owner = Some("writer".to_owned());
    let qa_org = OrgKey::from_seed(&[0x0f; 32]).public_key();
    // `writer` is a known node of the qa org; `qa` and `linter` resolve to nothing, but
    // `linter` is one of the origin's own names.
    let node_org = |name: &str| (name == "writer").then_some(qa_org);
    let answers_to = vec!["linter".to_owned()];
    let dev_node = world.dev.key.public_key();
    let binding = bind_owners(
        &body,
        &trust,
        "acme-dev",
        &dev_org,
        &dev_node,
        &answers_to,
        &node_org,
    );

    let key = |name: &str| {
        binding
            .owners
            .get(name)
            .map(|b| (b.key.clone(), b.org.clone()))
    };
    assert_eq!(key(ORIGIN), Some((dev_org.keyid(), "acme-dev".to_owned())));
    // The origin also names the node that started the run; no other name does.
    assert_eq!(binding.owners[ORIGIN].node, Some(dev_node.keyid()));
    assert_eq!(binding.owners["linter"].node, None);
    assert_eq!(
        key("linter"),
        Some((dev_org.keyid(), "acme-dev".to_owned()))
    );
    assert_eq!(
        key("ops"),
        Some((world.ops.org.public_key().keyid(), "acme-ops".to_owned()))
    );
    assert_eq!(key("writer"), Some((qa_org.keyid(), qa_org.keyid())));
    assert_eq!(binding.unresolved, vec!["qa".to_owned()]);
}
