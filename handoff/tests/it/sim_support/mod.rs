//! Helpers for the simulator tests: Ottofiles of chained stages, fault schedules, and the
//! properties every simulation must keep.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use otto_handoff::machine::{Config, Verdict};
use otto_handoff::sim::{Crash, Faults, Partition, RunState, START, SenderOutcome, Sim, SimConfig};
use otto_handoff::verify_chain;
use otto_protocol::{HandoffId, RejectCode};
use proptest::prelude::*;

/// `PROPTEST_CASES` if set (for long runs: `PROPTEST_CASES=5000 cargo test --release`),
/// else `default`: whole simulations are costly in debug builds.
pub(crate) fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// One minute after the start: when the random faults stop.
pub(crate) const HEAL: u64 = START + 60_000;

/// An Ottofile whose stages run one after the other, owned as given (`None`: the node
/// that starts the run).
pub(crate) fn chain(owners: &[Option<&str>]) -> String {
    let mut text = String::from("pipeline {\n  name = 'sim'\n  stages {\n");
    for (i, owner) in owners.iter().enumerate() {
        let owner = owner.map(|o| format!("owner = '{o}' ")).unwrap_or_default();
        writeln!(
            text,
            "    stage {{ name = 'S{i}' {owner}steps {{ sh 'make step{i}' }} }}"
        )
        .unwrap();
    }
    text.push_str("  }\n}\n");
    text
}

pub(crate) fn orgs(n: usize) -> Vec<String> {
    ["dev", "ops", "qa", "sec"][..n]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

/// A network of `orgs` with `faults` and the simulator's default timings.
pub(crate) fn sim(seed: u64, orgs: Vec<String>, faults: Faults) -> Sim {
    Sim::new(SimConfig {
        seed,
        orgs,
        faults,
        ..SimConfig::default()
    })
}

/// The machines' limits: the defaults, or tiny ones that make receivers busy and forget
/// finished offers at once.
pub(crate) fn limits() -> impl Strategy<Value = Config> {
    let base = SimConfig::default().machine;
    prop_oneof![
        Just(base),
        (1usize..=2, 0usize..=2).prop_map(move |(max_inbox, max_finished)| Config {
            max_inbox,
            max_finished,
            ..base
        }),
    ]
}

/// Runs the simulation until every run finished and everything settled.
pub(crate) fn finish(sim: &mut Sim) {
    if let Err(err) = sim.run_until(Sim::all_finished, 200_000) {
        let states: Vec<(String, RunState)> = sim
            .runs()
            .into_iter()
            .map(|r| (r.clone(), sim.run_state(&r)))
            .collect();
        panic!("{err}: {states:?}\n{:#?}", sim.trace());
    }
    if let Some(violation) = sim.violation() {
        panic!("{violation}\n{}", sim.recent().join("\n"));
    }
}

/// The properties that hold for every simulation, whatever its faults:
///
/// - every handoff id got one answer from its receiver, however often it was asked;
/// - a receiver never started the stage of a handoff twice in one incarnation, and each
///   restart after a crash is a higher attempt;
/// - every offer persisted by a sender got an answer back or expired, and the sender saw
///   the same outcome every time it saw one, matching what the receiver answered.
pub(crate) fn assert_exactly_once(sim: &Sim) {
    let trace = sim.trace();
    for (id, replies) in &trace.replies {
        // "Busy" (`internal`) is no answer: the sender asks again.
        let answers: Vec<&Verdict> = replies
            .iter()
            .filter(|r| !matches!(r, Verdict::Reject(r) if r.code == RejectCode::Internal))
            .collect();
        let Some(first) = answers.first() else {
            continue;
        };
        assert!(
            answers.iter().all(|r| r == first),
            "handoff {id} got different answers: {replies:?}"
        );
        if let Some(decision) = trace.decisions.get(id) {
            assert_eq!(
                *first, decision,
                "handoff {id} was answered against its decision"
            );
        }
    }
    let mut starts: BTreeMap<HandoffId, Vec<(u32, u32)>> = BTreeMap::new();
    for start in &trace.starts {
        starts
            .entry(start.id)
            .or_default()
            .push((start.epoch, start.attempt));
    }
    for (id, list) in &starts {
        let epochs: BTreeSet<u32> = list.iter().map(|(e, _)| *e).collect();
        assert_eq!(
            epochs.len(),
            list.len(),
            "handoff {id} started twice in one incarnation: {list:?}"
        );
        assert!(
            list.windows(2).all(|w| w[0].1 < w[1].1),
            "handoff {id} restarted without a new attempt: {list:?}"
        );
        assert!(
            matches!(trace.decisions.get(id), Some(Verdict::Accept(_))),
            "handoff {id} started without a persisted accept: {:?}",
            trace.decisions.get(id)
        );
    }
    for (id, info) in &trace.offers {
        let outcomes = trace.outcomes.get(id).unwrap_or_else(|| {
            panic!(
                "offer {id} of {} from {} to {} got no answer",
                info.stage, info.from, info.to
            )
        });
        assert!(
            outcomes.iter().all(|o| o == &outcomes[0]),
            "offer {id} ended differently: {outcomes:?}"
        );
        match (&outcomes[0], trace.decisions.get(id)) {
            (SenderOutcome::Accepted, Some(Verdict::Accept(_))) | (SenderOutcome::Expired, _) => {}
            (SenderOutcome::Rejected { code, .. }, Some(Verdict::Reject(r))) if *code == r.code => {
            }
            (SenderOutcome::Rejected { code, .. }, None) if trace.replies.contains_key(id) => {
                // A refusal that is not persisted (an unauthenticated sender).
                assert!(matches!(&trace.replies[id][0], Verdict::Reject(r) if r.code == *code));
            }
            (outcome, decision) => {
                panic!("offer {id}: the sender saw {outcome:?}, the receiver decided {decision:?}")
            }
        }
    }
}

/// Every run finished and its receipts verify as a chain against every org.
pub(crate) fn assert_runs_verify(sim: &Sim) {
    let trust = sim.auditor_trust();
    let certificates = sim.certificates();
    for run in sim.runs() {
        assert_eq!(sim.run_state(&run), RunState::Finished, "{run}");
        let plan = sim.plan(&run).unwrap();
        let report = verify_chain(
            &run,
            plan,
            &sim.receipts(&run),
            &certificates,
            &otto_handoff::Owners::new(&trust, None, &[]),
            sim.now() / 1000,
        );
        assert!(report.is_verified(), "{run}: {report:#?}");
    }
}

/// Random faults over the first minute: loss, duplication, failed fetches, torn crashes,
/// partitions and crashes between the nodes of `orgs` orgs.
pub(crate) fn faults(orgs: usize) -> impl Strategy<Value = Faults> {
    let node = move || (0..orgs).prop_map(|i| format!("{}-1", ["dev", "ops", "qa", "sec"][i]));
    let window = || (0u64..50_000, 1u64..20_000);
    (
        (1u64..20, 20u64..1_500),
        0u32..300,
        0u32..300,
        0u32..300,
        0u32..150,
        0u32..5,
        prop::collection::vec((node(), node(), window()), 0..3),
        prop::collection::vec((node(), window()), 0..3),
    )
        .prop_map(
            |(latency, loss, duplicate, fetch_failure, torn, max_torn, partitions, crashes)| {
                Faults {
                    latency,
                    loss,
                    duplicate,
                    fetch_failure,
                    torn,
                    max_torn,
                    down_for: 3_000,
                    heal_at: HEAL,
                    partitions: partitions
                        .into_iter()
                        .filter(|(a, b, _)| a != b)
                        .map(|(a, b, (from, len))| Partition {
                            a,
                            b,
                            from: START + from,
                            until: START + from + len,
                        })
                        .collect(),
                    crashes: crashes
                        .into_iter()
                        .map(|(node, (at, down_for))| Crash {
                            node,
                            at: START + at,
                            down_for,
                        })
                        .collect(),
                    ..Faults::default()
                }
            },
        )
}

/// A chain of 2 to 6 stages over `orgs` orgs, the first run by the origin.
pub(crate) fn owners(orgs: usize) -> impl Strategy<Value = Vec<Option<&'static str>>> {
    prop::collection::vec(prop::option::weighted(0.8, 0..orgs), 1..6).prop_map(|rest| {
        let names = ["dev", "ops", "qa", "sec"];
        std::iter::once(None)
            .chain(rest.into_iter().map(|o| o.map(|i| names[i])))
            .collect()
    })
}
