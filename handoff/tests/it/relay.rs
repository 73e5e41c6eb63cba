//! The stage-end relay (`otto_handoff::relay`): a node vouches once for each end of a
//! stage it does not run, in words that read back as that end, and a relayed success is
//! recorded only once the stages that need it ended here.

use crate::common::*;
use otto_handoff::relay::{
    Again, End, RELAY_SEQ, Relays, again, follow, may_record, origin_of, relayed,
};
use otto_handoff::rules::Held;
use otto_protocol::{Outcome, StageState, Status};

fn end(stage: &str, attempt: u32, outcome: Outcome) -> End {
    End {
        run: RUN.to_owned(),
        stage: stage.to_owned(),
        attempt,
        outcome,
        origin: "ran on ops-1 (acme-ops)".to_owned(),
    }
}

#[test]
fn an_end_is_vouched_for_once_and_reads_back_as_itself() {
    let mut relays = Relays::default();
    let deploy = end("Deploy", 1, Outcome::Success);
    let status = relays.relay(&deploy, false, false, "qa-1", 42_317).unwrap();
    assert_eq!(
        (status.seq, status.state, status.at, status.at_ms),
        (RELAY_SEQ, StageState::Succeeded, 42, Some(42_317))
    );
    assert_eq!(
        status.detail.as_deref(),
        Some("ran on ops-1 (acme-ops); relayed by qa-1")
    );
    assert_eq!(relayed(&status), Some(deploy.clone()));
    assert_eq!(relays.relay(&deploy, false, false, "qa-1", 43), None);
    // The next attempt is news; a stage run here, or an end recorded before, is not.
    assert!(
        relays
            .relay(
                &end("Deploy", 2, Outcome::Failure),
                false,
                false,
                "qa-1",
                44
            )
            .is_some()
    );
    assert_eq!(
        relays.relay(&end("Build", 1, Outcome::Success), true, false, "qa-1", 45),
        None
    );
    assert_eq!(
        relays.relay(&end("Test", 1, Outcome::Success), false, true, "qa-1", 46),
        None
    );
    relays.forget(RUN);
    assert!(relays.is_empty());
}

#[test]
fn only_relays_of_ends_read_as_ends() {
    let mut relays = Relays::default();
    let status = relays
        .relay(&end("Deploy", 1, Outcome::Skipped), false, false, "qa-1", 1)
        .unwrap();
    let runner = Status {
        seq: 3,
        ..status.clone()
    };
    assert_eq!(relayed(&runner), None);
    let running = Status {
        state: StageState::Running,
        ..status
    };
    assert_eq!(relayed(&running), None);
}

#[test]
fn a_relayed_success_waits_for_the_stages_that_need_it() {
    // Deploy needs Test and Docs; Smoke needs Deploy.
    let body = &World::new().plan.body;
    let none = |_: &str| false;
    assert!(!may_record(body, "Test", Outcome::Success, none));
    assert!(!may_record(body, "Test", Outcome::Skipped, none));
    assert!(may_record(body, "Test", Outcome::Failure, none));
    assert!(may_record(body, "Test", Outcome::Cancelled, none));
    assert!(may_record(body, "Smoke", Outcome::Success, none));
    assert!(may_record(body, "Test", Outcome::Success, |s| s == "Deploy"));
}

/// The ends a node holds of a run: Build (its own, twice: attempt 2 after a retry), Test
/// (qa's) and Deploy (ops's, failed).
fn held(world: &World) -> Vec<Held> {
    let mut build_2 = world.receipt(&world.dev, "Build", Outcome::Success, vec![]);
    build_2.attempt = 2;
    [
        (
            &world.dev,
            world.receipt(&world.dev, "Build", Outcome::Failure, vec![]),
        ),
        (
            &world.qa,
            world.receipt(&world.qa, "Test", Outcome::Success, vec![]),
        ),
        (&world.dev, build_2),
        (
            &world.ops,
            world.receipt(&world.ops, "Deploy", Outcome::Failure, vec![]),
        ),
    ]
    .into_iter()
    .map(|(by, receipt)| {
        let envelope = sign_receipt(by, &receipt);
        (receipt, envelope)
    })
    .collect()
}

#[test]
fn a_node_tells_again_its_own_receipts_and_relays_the_others_latest_ends() {
    let world = World::new();
    let held = held(&world);
    let me = world.dev.identity().key;
    let told = again(&held, &[], &me, "dev-1", 77_001);
    // One word per stage, in the order the stages were first held; the latest attempt.
    assert_eq!(told.len(), 3, "{told:?}");
    assert_eq!(
        told[0],
        Again::Receipt(&held[2].1),
        "Build: its own attempt 2, as signed"
    );
    let Again::Relay(test) = &told[1] else {
        panic!("Test is qa's: relayed, {told:?}")
    };
    assert_eq!(
        (test.seq, test.state, test.attempt, test.at, test.at_ms),
        (RELAY_SEQ, StageState::Succeeded, 1, 77, Some(77_001))
    );
    assert_eq!(
        test.detail.as_deref(),
        Some("ran on qa-1 (acme-qa); relayed by dev-1")
    );
    // Each relay reads back as the end its receipt says.
    assert_eq!(
        relayed(test),
        Some(End {
            run: RUN.to_owned(),
            stage: "Test".to_owned(),
            attempt: 1,
            outcome: Outcome::Success,
            origin: origin_of(&held[1].0),
        })
    );
    let Again::Relay(deploy) = &told[2] else {
        panic!("Deploy is ops's: relayed, {told:?}")
    };
    assert_eq!(deploy.state, StageState::Failed);
    assert_eq!(relayed(deploy).map(|e| e.outcome), Some(Outcome::Failure));
    // Telling again is not vouching the first time: it never uses up a node's relays, and
    // the node that knew the end (it holds it) records and relays nothing.
    let mut relays = Relays::default();
    let end = relayed(test).unwrap();
    assert!(relays.relay(&end, false, false, "ops-1", 78).is_some());
    assert_eq!(again(&held, &[], &me, "dev-1", 79).len(), 3);
    assert_eq!(relays.relay(&end, false, true, "ops-1", 80), None);
    // Nothing held, nothing told.
    assert!(again(&[], &[], &me, "dev-1", 81).is_empty());
}

/// Receipts as a node holds them: each (signer, stage) signed by its node.
fn holding(world: &World, ends: &[(&Node, &str)]) -> Vec<Held> {
    ends.iter()
        .map(|(by, stage)| {
            let receipt = world.receipt(by, stage, Outcome::Success, vec![]);
            let envelope = sign_receipt(by, &receipt);
            (receipt, envelope)
        })
        .collect()
}

#[test]
fn a_restarted_node_follows_its_open_stages_through_the_nodes_that_move_them_on() {
    // Deploy needs Docs (skipped by the plan) and Test; Smoke needs Deploy.
    let world = World::new();
    let body = &world.plan.body;
    let dev = world.dev.identity().key;
    let (qa, ops) = (world.qa.identity().key, world.ops.identity().key);
    let ended = |stages: &'static [&'static str]| move |stage: &str| !stages.contains(&stage);
    // The origin, killed while ops ran Deploy, which qa moved on (it ran Test): it holds
    // Test's receipt, so it gave Test to nobody it still waits for; it asks qa.
    let held = holding(
        &world,
        &[
            (&world.dev, "Build"),
            (&world.qa, "Test"),
            (&world.dev, "Lint"),
        ],
    );
    let open = ended(&["Build", "Test", "Lint", "Docs"]);
    assert_eq!(follow(body, &held, &dev, true, open), vec![qa]);
    // Once Deploy ended here, Smoke is what is open: ops moves it on.
    let mut more = held.clone();
    more.extend(holding(&world, &[(&world.ops, "Deploy")]));
    let open = ended(&["Build", "Test", "Lint", "Docs", "Deploy"]);
    assert_eq!(follow(body, &more, &dev, true, open), vec![ops]);
    // Stages this node moves on itself ask nobody: before Test's receipt came, dev moves
    // Test on (it gave it: its given table follows it) and Deploy is its too (no need of
    // Deploy has a receipt yet, and dev started the run).
    let built = holding(&world, &[(&world.dev, "Build")]);
    let open = ended(&["Build", "Docs"]);
    assert!(follow(body, &built, &dev, true, open).is_empty());
    // Nor does a node ask itself: ops, which ran Deploy, follows Smoke through nobody.
    let open = ended(&["Build", "Test", "Lint", "Docs", "Deploy"]);
    assert!(follow(body, &more, &ops, false, open).is_empty());
    // A node that did not start the run and holds no receipt that says asks the node that
    // started it, when the plan's binding names it; each node once.
    let all_open = |_: &str| true;
    assert!(follow(body, &[], &ops, false, all_open).is_empty());
    let mut bound = world.plan.body.clone();
    bound
        .owners
        .get_mut(otto_pipeline::plan::ORIGIN)
        .unwrap()
        .node = Some(world.dev.key.public_key().keyid());
    assert_eq!(follow(&bound, &[], &ops, false, all_open), vec![dev]);
    assert_eq!(follow(&bound, &held, &ops, false, all_open), vec![dev, qa]);
    // Only open stages count: everything ended, nobody is asked.
    assert!(follow(body, &more, &dev, true, |_: &str| false).is_empty());
}

#[test]
fn an_end_known_without_a_receipt_is_told_again_as_a_relay() {
    // qa moved Deploy on and ops refused it: qa holds no receipt of Deploy, only the end
    // it recorded (failed at the handoff), and tells it again as a relay.
    let world = World::new();
    let held = holding(&world, &[(&world.dev, "Build"), (&world.qa, "Test")]);
    let qa = world.qa.identity().key;
    let refused = End {
        origin: "ops-1 rejected Deploy: not approved here".to_owned(),
        ..end("Deploy", 1, Outcome::Failure)
    };
    let told = again(&held, std::slice::from_ref(&refused), &qa, "qa-1", 90);
    assert_eq!(told.len(), 3, "{told:?}");
    let Again::Relay(deploy) = &told[2] else {
        panic!("Deploy's end is relayed: {told:?}")
    };
    assert_eq!(
        (deploy.seq, deploy.state, deploy.attempt),
        (RELAY_SEQ, StageState::Failed, 1)
    );
    assert_eq!(
        deploy.detail.as_deref(),
        Some("ops-1 rejected Deploy: not approved here; relayed by qa-1")
    );
    assert_eq!(relayed(deploy), Some(refused.clone()));
    // One word per stage: the latest attempt of the ends known so.
    let retried = End {
        attempt: 2,
        ..refused.clone()
    };
    let both = [retried.clone(), refused.clone()];
    let told = again(&held, &both, &qa, "qa-1", 91);
    assert_eq!(told.len(), 3, "{told:?}");
    assert!(matches!(&told[2], Again::Relay(s) if s.attempt == 2));
    // A receipt of that attempt or a later one is told instead, as the receipt says.
    let mut signed = held.clone();
    signed.extend(holding(&world, &[(&world.ops, "Deploy")]));
    let told = again(&signed, std::slice::from_ref(&refused), &qa, "qa-1", 92);
    assert_eq!(told.len(), 3, "{told:?}");
    assert!(matches!(&told[2], Again::Relay(s) if s.state == StageState::Succeeded));
    let told = again(&signed, &[retried], &qa, "qa-1", 93);
    assert_eq!(
        told.len(),
        4,
        "attempt 2 comes after the receipt of attempt 1: {told:?}"
    );
}
