//! The simulator at scale (`otto_handoff::sim::scale`), on a budget a test can afford:
//! many nodes per org, random plans, every fault and hostile nodes, every invariant
//! checked on every step. `otto-testnet sim` runs the same at 1,000 nodes.

use otto_handoff::sim::scale::{FaultSpec, Report, Scale};

fn small(seed: u64, faults: FaultSpec) -> Scale {
    Scale {
        orgs: 4,
        nodes: 12,
        runs: 24,
        seed,
        faults,
        max_steps: 200_000,
    }
}

#[track_caller]
fn holds(scale: &Scale) -> Report {
    let report = scale.run().unwrap();
    assert!(
        report.violation.is_none(),
        "seed {}: {}\n{}",
        scale.seed,
        report.violation.as_ref().unwrap(),
        report.recent.join("\n")
    );
    assert_eq!(report.finished, report.runs, "{report:?}");
    assert!(report.handoffs > 0, "{report:?}");
    // Every handoff's receipt tells its sender an end it vouches for.
    assert!(report.relays > 0, "{report:?}");
    report
}

#[test]
fn crashes_partitions_loss_and_duplicates_lose_nothing_and_run_nothing_twice() {
    let faults = FaultSpec {
        crashes: 3,
        partitions: 3,
        ..FaultSpec::default()
    };
    for seed in 1..=2 {
        let report = holds(&small(seed, faults.clone()));
        assert!(report.crashes > 0 && report.messages.1 > 0, "{report:?}");
    }
}

#[test]
fn hostile_nodes_get_no_forged_receipt_replay_or_wrong_signer_accepted() {
    // Forged receipts to the node that gave the stage, offers with forged chains, and
    // offers replayed to another node of the hostile node's org; on a lossy network with
    // partitions.
    let faults = FaultSpec {
        torn: 0,
        partitions: 3,
        hostile: 3,
        ..FaultSpec::default()
    };
    for seed in 1..=2 {
        let report = holds(&small(seed, faults.clone()));
        assert!(
            report.refused > 0,
            "the hostile offers are refused: {report:?}"
        );
    }
}

#[test]
fn hostile_nodes_with_stray_receipts_and_crashes_get_no_receipt_taken() {
    // Stray receipts (to nodes that gave the stage to nobody, or gave it to another node)
    // together with crashes and torn crashes: a node takes a receipt only from the node its
    // durable records say it gave the stage to.
    let faults = FaultSpec {
        crashes: 3,
        partitions: 3,
        hostile: 3,
        stray: true,
        ..FaultSpec::default()
    };
    for seed in 1..=2 {
        let report = holds(&small(seed, faults.clone()));
        assert!(report.crashes > 0, "{report:?}");
    }
}

#[test]
fn the_same_seed_replays_the_same_simulation() {
    let scale = small(7, FaultSpec::for_nodes(12));
    let first = scale.run().unwrap();
    let again = scale.run().unwrap();
    assert_eq!(first, again);
    let other = small(8, FaultSpec::for_nodes(12)).run().unwrap();
    assert_ne!(first.recent, other.recent);
}

#[test]
fn fault_specs_read_as_documented_and_bad_ones_say_what_is_wrong() {
    let base = FaultSpec::none();
    let spec = FaultSpec::parse("loss=50,dup=10,latency=1-9,hostile=2", base.clone()).unwrap();
    assert_eq!(
        (spec.loss, spec.duplicate, spec.latency, spec.hostile),
        (50, 10, (1, 9), 2)
    );
    assert_eq!(
        FaultSpec::parse(&spec.to_string(), base.clone()).unwrap(),
        spec
    );
    assert_eq!(
        FaultSpec::parse("none", spec.clone()).unwrap(),
        FaultSpec::none()
    );
    for (bad, says) in [
        ("loss=2000", "per-mille"),
        ("latency=9-1", "more than"),
        ("speed=3", "unknown fault"),
        ("loss", "KEY=VALUE"),
        ("crashes=x", "whole number"),
    ] {
        let err = FaultSpec::parse(bad, base.clone()).unwrap_err();
        assert!(err.contains(says), "{bad}: {err}");
    }
    let too_few = Scale {
        nodes: 3,
        ..small(1, FaultSpec::none())
    };
    assert!(
        too_few
            .run()
            .unwrap_err()
            .contains("every org needs a node")
    );
}
