//! Offers that must not run: the reason reaches the sender in words, nothing starts, and
//! an offer nobody answers expires.
//!
//! ```text
//!   dev-1 ──offer S1──▶ ops-1 ──reject (code, message, hint)──▶ dev-1
//! ```

use crate::sim_support::*;
use otto_handoff::definition_digest;
use otto_handoff::machine::Verdict;
use otto_handoff::sim::{Crash, Faults, Partition, RunState, START, SenderOutcome, Sim, SimConfig};
use otto_protocol::RejectCode;
use otto_trust::{Definitions, Policy};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn dev_ops(seed: u64, faults: Faults, offer_ttl: u64) -> (Sim, String) {
    let mut sim = Sim::new(SimConfig {
        seed,
        orgs: orgs(2),
        faults,
        offer_ttl,
        ..SimConfig::default()
    });
    let run = sim
        .start_run("dev-1", &chain(&[None, Some("ops")]))
        .unwrap();
    (sim, run)
}

/// Runs until `run` no longer runs, and returns how it ended.
fn settle(sim: &mut Sim, run: &str) -> RunState {
    sim.run_until(|s| s.run_state(run) != RunState::Running, 100_000)
        .unwrap();
    sim.run_state(run)
}

fn s1_digest(sim: &Sim, run: &str) -> String {
    definition_digest(
        &sim.plan(run).unwrap().body,
        sim.plan(run).unwrap().stage("S1").unwrap(),
    )
}

#[test]
fn an_unapproved_definition_is_refused_with_the_command_that_approves_it() {
    let (mut sim, run) = dev_ops(1, Faults::default(), 3_600);
    let digest = s1_digest(&sim, &run);
    assert!(sim.trust_mut("ops-1").unwrap().unapprove(&digest));
    let RunState::Failed {
        stage,
        code,
        message,
        hint,
    } = settle(&mut sim, &run)
    else {
        panic!("the run did not fail");
    };
    assert_eq!(stage, "S1");
    assert_eq!(code, Some(RejectCode::DefinitionNotApproved));
    assert!(message.starts_with("ops-1 rejected S1: "), "{message}");
    assert!(message.contains("not approved"), "{message}");
    assert_eq!(
        hint,
        Some(format!("run `otto-node approve {digest}` on this node"))
    );
    assert!(sim.trace().starts.is_empty(), "nothing ran");
    assert!(
        matches!(
            sim.trace().decisions.values().next(),
            Some(Verdict::Reject(_))
        ),
        "the refusal was persisted"
    );
}

#[test]
fn a_stage_outside_the_policy_is_refused_as_out_of_scope() {
    let (mut sim, run) = dev_ops(2, Faults::default(), 3_600);
    let policy = Policy {
        roles: Vec::new(),
        pipelines: vec!["*".to_owned()],
        stages: vec!["Build".to_owned()],
        environments: vec!["*".to_owned()],
        definitions: Definitions::Approved,
        ..Policy::default()
    };
    sim.trust_mut("ops-1")
        .unwrap()
        .set_policy("dev", policy)
        .unwrap();
    let RunState::Failed { code, hint, .. } = settle(&mut sim, &run) else {
        panic!("the run did not fail");
    };
    assert_eq!(code, Some(RejectCode::OutOfScope));
    assert!(hint.unwrap().contains("policy for org \"dev\""));
    assert!(sim.trace().starts.is_empty());
}

#[test]
fn an_untrusted_sender_is_refused_and_leaves_no_trace_in_the_inbox() {
    let (mut sim, run) = dev_ops(3, Faults::default(), 3_600);
    assert!(sim.trust_mut("ops-1").unwrap().unpin_org("dev"));
    let RunState::Failed { code, hint, .. } = settle(&mut sim, &run) else {
        panic!("the run did not fail");
    };
    assert_eq!(code, Some(RejectCode::UnknownOrg));
    assert!(hint.unwrap().contains("otto-node invite"));
    assert!(sim.trace().decisions.is_empty(), "nothing persisted");
    assert_eq!(sim.machine("ops-1").unwrap().held_offers(), 0);
}

#[test]
fn an_offer_nobody_answers_expires() {
    let (mut sim, run) = dev_ops(
        4,
        Faults {
            latency: (5, 5),
            partitions: vec![Partition {
                a: "dev-1".to_owned(),
                b: "ops-1".to_owned(),
                from: START,
                until: START + 600_000,
            }],
            ..Faults::default()
        },
        20,
    );
    let RunState::Failed {
        stage,
        code,
        message,
        ..
    } = settle(&mut sim, &run)
    else {
        panic!("the run did not fail");
    };
    assert_eq!((stage.as_str(), code), ("S1", None));
    assert_eq!(message, "ops-1 did not answer the offer of S1");
    let outcomes: Vec<&Vec<SenderOutcome>> = sim.trace().outcomes.values().collect();
    assert_eq!(outcomes, [&vec![SenderOutcome::Expired]]);
    assert!(sim.now() >= START + 20_000, "not before the expiry");
    assert!(sim.now() < START + 40_000, "soon after the expiry");
    assert_eq!(sim.machine("dev-1").unwrap().pending_offers(), 0);

    // The network heals; the expired offer never runs.
    let _ = sim.run_until(|_| false, 10_000);
    assert!(sim.trace().starts.is_empty());
    assert!(sim.is_quiet());
}

#[test]
fn an_offer_to_a_node_down_past_the_expiry_expires() {
    let (mut sim, run) = dev_ops(
        5,
        Faults {
            latency: (5, 5),
            crashes: vec![Crash {
                node: "ops-1".to_owned(),
                at: START,
                down_for: 120_000,
            }],
            ..Faults::default()
        },
        30,
    );
    assert!(matches!(
        settle(&mut sim, &run),
        RunState::Failed { code: None, .. }
    ));
    let _ = sim.run_until(|_| false, 10_000);
    assert!(
        sim.trace().starts.is_empty(),
        "ops came back to nothing to do"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(16),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/it/sim_rejects.proptest-regressions"
        ))),
        ..ProptestConfig::default()
    })]

    /// However the network misbehaves, the sender learns the receiver's reason, once.
    #[test]
    fn refusals_reach_the_sender_through_a_faulty_network(seed in any::<u64>(), faults in faults(2)) {
        let (mut sim, run) = dev_ops(seed, faults, 3_600);
        let digest = s1_digest(&sim, &run);
        sim.trust_mut("ops-1").unwrap().unapprove(&digest);
        let state = settle(&mut sim, &run);
        let is_refusal = matches!(
            &state,
            RunState::Failed { code: Some(RejectCode::DefinitionNotApproved), .. }
        );
        prop_assert!(is_refusal, "{:?}", state);
        assert_exactly_once(&sim);
        prop_assert!(sim.trace().starts.is_empty());
    }
}
