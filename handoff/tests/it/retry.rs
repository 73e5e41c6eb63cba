//! Retries across handoffs (`otto_handoff::retry`): the run's origin (dev) signs a retry,
//! the node that moves the stage on offers it again carrying it, the owner checks it. What
//! an attacker does first: a retry signed by another org, a retry of another stage or
//! attempt carried over, an offer of a retry without one, an old retry replayed.

use crate::common::*;
use otto_handoff::retry::{Holding, check_request};
use otto_handoff::rules::{Held, Prior};
use otto_handoff::{Rejection, VerifyContext, verify_offer};
use otto_protocol::{Envelope, KeyBytes, Offer, Outcome, Receipt, RejectCode};
use otto_trust::{TrustStore, Unverified};

#[track_caller]
fn refused<T: std::fmt::Debug>(
    result: Result<T, Rejection>,
    code: RejectCode,
    needle: &str,
) -> Rejection {
    let rejection = result.expect_err("must be refused");
    assert_eq!(rejection.code, code, "{rejection:?}");
    assert!(
        rejection.message.contains(needle),
        "message {:?} lacks {needle:?}",
        rejection.message
    );
    rejection
}

/// Ops's trust store where qa, which moves Deploy on in these tests, may offer it too.
fn ops_trust(world: &World) -> TrustStore {
    let mut trust = world.ops_trust();
    trust.set_policy("qa", World::policy()).unwrap();
    trust
}

/// Attempt `attempt` of Deploy offered by qa (the node that moves it on after its Test),
/// carrying `retry`.
fn qa_offer(world: &World, attempt: u32, retry: Option<Envelope>) -> Offer {
    Offer {
        sender: world.qa.cert.clone(),
        certificates: vec![world.builder.cert.clone(), world.dev.cert.clone()],
        attempt,
        retry,
        ..world.offer()
    }
}

/// Verifies `offer`, signed by qa, at ops, which began attempt 1 of Deploy (`last`).
fn at_ops(world: &World, offer: &Offer, last: Option<u32>) -> Result<u32, Rejection> {
    let trust = ops_trust(world);
    let names = ["ops".to_owned()];
    let ops_key = world.ops.org.public_key();
    let prior = move |_: &str, _: &str| Prior {
        last_attempt: last,
        succeeded: false,
    };
    verify_offer(
        Unverified::new(sign_offer(&world.qa, offer)),
        &VerifyContext::new(&trust, &ops_key, &names).with_prior(&prior),
        NOW,
    )
    .map(|accepted| accepted.offer().attempt)
}

#[test]
fn the_mover_offers_a_retry_with_the_origins_signed_word_and_the_owner_runs_it() {
    let world = World::new();
    let offer = qa_offer(&world, 2, Some(world.retry(&world.dev, "Deploy", 2)));
    assert_eq!(at_ops(&world, &offer, Some(1)), Ok(2));
    assert_eq!(at_ops(&world, &offer, None), Ok(2));
}

#[test]
fn a_retry_offer_without_the_signed_retry_is_refused() {
    let world = World::new();
    for sender in [&world.qa, &world.dev] {
        let offer = Offer {
            sender: sender.cert.clone(),
            certificates: vec![world.builder.cert.clone(), world.dev.cert.clone()],
            attempt: 2,
            ..world.offer()
        };
        let names = ["ops".to_owned()];
        let ops_key = world.ops.org.public_key();
        let trust = ops_trust(&world);
        let rejection = refused(
            verify_offer(
                Unverified::new(sign_offer(sender, &offer)),
                &VerifyContext::new(&trust, &ops_key, &names),
                NOW,
            ),
            RejectCode::AttemptRefused,
            "carries no retry signed by the node that started run",
        );
        assert!(rejection.hint.unwrap().contains("otto retry"));
    }
}

#[test]
fn a_retry_signed_by_the_mover_or_another_org_is_refused() {
    let world = World::new();
    for by in [&world.qa, &world.ops] {
        let offer = qa_offer(&world, 2, Some(world.retry(by, "Deploy", 2)));
        refused(
            at_ops(&world, &offer, Some(1)),
            RejectCode::AttemptRefused,
            "only the node of org \"dev\" that started run",
        );
    }
}

#[test]
fn a_retry_of_another_stage_attempt_or_run_is_not_carried_over() {
    let world = World::new();
    // The origin retried Smoke, or attempt 2 of Deploy; qa offers attempt 3 with it.
    let smoke = qa_offer(&world, 2, Some(world.retry(&world.dev, "Smoke", 2)));
    refused(
        at_ops(&world, &smoke, Some(1)),
        RejectCode::AttemptRefused,
        "the offer's retry is for stage \"Smoke\"",
    );
    let old = qa_offer(&world, 3, Some(world.retry(&world.dev, "Deploy", 2)));
    refused(
        at_ops(&world, &old, Some(2)),
        RejectCode::AttemptRefused,
        "the offer's retry is for attempt 2, not for attempt 3",
    );
    // Another run's retry, signed by the origin, is no retry of this one.
    let mut other = otto_protocol::Retry {
        run: "run-0002".to_owned(),
        ..world.retry_of("Deploy", 2)
    };
    other.sender = world.dev.cert.clone();
    let offer = qa_offer(&world, 2, Some(sign_retry(&world.dev, &other)));
    refused(
        at_ops(&world, &offer, Some(1)),
        RejectCode::AttemptRefused,
        "the offer's retry is for run \"run-0002\"",
    );
}

#[test]
fn a_retry_changed_after_the_origin_signed_it_is_refused() {
    let world = World::new();
    let mut envelope = world.retry(&world.dev, "Deploy", 2);
    let mut retry: otto_protocol::Retry = envelope.payload_as().unwrap();
    retry.attempt = 3;
    envelope.payload = otto_protocol::encode_payload(&retry);
    let offer = qa_offer(&world, 3, Some(envelope));
    refused(
        at_ops(&world, &offer, Some(2)),
        RejectCode::AttemptRefused,
        "the retry's signature does not verify",
    );
}

#[test]
fn an_old_retry_replayed_for_an_attempt_already_run_is_refused() {
    let world = World::new();
    // Attempt 2 ran on ops with the origin's retry; qa offers it again under a new id.
    let offer = qa_offer(&world, 2, Some(world.retry(&world.dev, "Deploy", 2)));
    refused(
        at_ops(&world, &offer, Some(2)),
        RejectCode::AttemptRefused,
        "not above attempt 2",
    );
}

/// What ops holds of the run after Smoke (qa's) failed as attempt 1: Build, Test, its own
/// Deploy and Smoke's failed receipt; ops ran Deploy, so it moves Smoke on.
fn ops_holds(world: &World) -> Vec<Held> {
    let chain = world.chain();
    let deploy = world.receipt(&world.ops, "Deploy", Outcome::Success, Vec::new());
    let smoke = world.receipt(&world.qa, "Smoke", Outcome::Failure, Vec::new());
    let mut held: Vec<Held> = chain
        .into_iter()
        .map(|e| (e.payload_as::<Receipt>().unwrap(), e))
        .collect();
    for (by, receipt) in [(&world.ops, deploy), (&world.qa, smoke)] {
        let envelope = sign_receipt(by, &receipt);
        held.push((receipt, envelope));
    }
    held
}

fn at_mover(
    world: &World,
    retry: &Envelope,
    me: &Node,
    held: &[Held],
    last: Option<u32>,
) -> Result<u32, Rejection> {
    let digest = world.plan.digest();
    let me = KeyBytes(*me.key.public_key().as_bytes());
    let holding = Holding {
        body: &world.plan.body,
        plan_digest: &digest,
        receipts: held,
        me: &me,
        started_here: false,
        last_attempt: last,
    };
    check_request(retry, &holding, &world.ops_trust(), NOW).map(|s| s.retry.attempt)
}

#[test]
fn the_mover_takes_the_origins_retry_of_a_stage_it_moves_on() {
    let world = World::new();
    let held = ops_holds(&world);
    let retry = world.retry(&world.dev, "Smoke", 2);
    assert_eq!(at_mover(&world, &retry, &world.ops, &held, Some(1)), Ok(2));
}

#[test]
fn the_mover_does_not_retry_on_its_own_word_or_another_orgs() {
    let world = World::new();
    let held = ops_holds(&world);
    for by in [&world.ops, &world.qa] {
        let retry = world.retry(by, "Smoke", 2);
        refused(
            at_mover(&world, &retry, &world.ops, &held, Some(1)),
            RejectCode::AttemptRefused,
            "only the node of org \"dev\" that started run",
        );
    }
}

#[test]
fn a_retry_sent_to_a_node_that_does_not_move_the_stage_on_is_refused() {
    let world = World::new();
    let held = ops_holds(&world);
    // Smoke is ops's to move on, not qa's.
    let retry = world.retry(&world.dev, "Smoke", 2);
    refused(
        at_mover(&world, &retry, &world.qa, &held, Some(1)),
        RejectCode::StageNotOwned,
        "this node does not move stage \"Smoke\" on; \"ops-1\" does",
    );
}

#[test]
fn the_mover_refuses_an_old_retry_a_succeeded_stage_and_another_plan() {
    let world = World::new();
    let held = ops_holds(&world);
    // Attempt 2 was offered already: the same retry again is a replay.
    let retry = world.retry(&world.dev, "Smoke", 2);
    refused(
        at_mover(&world, &retry, &world.ops, &held, Some(2)),
        RejectCode::AttemptRefused,
        "not above attempt 2",
    );
    // Deploy succeeded (ops's receipt): never again, even were ops its mover.
    let mut mine = held.clone();
    mine.retain(|(r, _)| r.stage != "Test");
    let test = world.receipt(&world.ops, "Test", Outcome::Success, Vec::new());
    let test_env = sign_receipt(&world.ops, &test);
    mine.push((test, test_env));
    let deploy = world.retry(&world.dev, "Deploy", 2);
    refused(
        at_mover(&world, &deploy, &world.ops, &mine, Some(1)),
        RejectCode::AttemptRefused,
        "succeeded; a succeeded stage never runs again",
    );
    // A retry of a plan other than the run's.
    let other = otto_protocol::Retry {
        plan_digest: "sha256:00".to_owned(),
        ..world.retry_of("Smoke", 2)
    };
    refused(
        at_mover(
            &world,
            &sign_retry(&world.dev, &other),
            &world.ops,
            &held,
            Some(1),
        ),
        RejectCode::PlanDigestMismatch,
        "the retry is for plan",
    );
}

#[test]
fn three_orgs_end_to_end_the_origins_retry_reaches_the_owner_through_the_mover() {
    // Dev retries Smoke (qa's), which ops moves on: ops checks the retry, offers attempt
    // 2 carrying it, and qa runs it.
    let world = World::new();
    let held = ops_holds(&world);
    let retry = world.retry(&world.dev, "Smoke", 2);
    assert_eq!(at_mover(&world, &retry, &world.ops, &held, Some(1)), Ok(2));
    let chain: Vec<Envelope> = held
        .iter()
        .filter(|(r, _)| r.stage != "Smoke")
        .map(|(_, e)| e.clone())
        .collect();
    let offer = Offer {
        stage: "Smoke".to_owned(),
        sender: world.ops.cert.clone(),
        attempt: 2,
        receipts: chain,
        certificates: vec![world.builder.cert.clone(), world.dev.cert.clone()],
        retry: Some(retry),
        ..world.offer()
    };
    let mut trust = TrustStore::new();
    trust
        .pin_org("dev", world.dev.org.public_key(), T0)
        .unwrap();
    trust
        .pin_org("ops", world.ops.org.public_key(), T0)
        .unwrap();
    trust.pin_org("qa", world.qa.org.public_key(), T0).unwrap();
    trust.set_policy("ops", World::policy()).unwrap();
    let smoke = world.plan.stage("Smoke").unwrap();
    trust.approve(
        &otto_handoff::definition_digest(&world.plan.body, smoke),
        T0,
    );
    let names = ["qa".to_owned()];
    let qa_key = world.qa.org.public_key();
    let prior = |_: &str, _: &str| Prior {
        last_attempt: Some(1),
        succeeded: false,
    };
    let accepted = verify_offer(
        Unverified::new(sign_offer(&world.ops, &offer)),
        &VerifyContext::new(&trust, &qa_key, &names).with_prior(&prior),
        NOW,
    )
    .unwrap();
    assert_eq!(accepted.offer().attempt, 2);
    // Without it, ops's own offer of attempt 2 is refused.
    let bare = Offer {
        retry: None,
        ..offer
    };
    refused(
        verify_offer(
            Unverified::new(sign_offer(&world.ops, &bare)),
            &VerifyContext::new(&trust, &qa_key, &names).with_prior(&prior),
            NOW,
        ),
        RejectCode::AttemptRefused,
        "carries no retry",
    );
}
