//! The simulator at scale (`otto_handoff::sim::scale`), on a budget a test can afford:
//! many nodes per org, random plans, every fault and hostile nodes, every invariant
//! checked on every step. `otto-testnet sim` runs the same at 1,000 nodes.

use otto_handoff::sim::scale::{FaultSpec, Scale};

fn small(seed: u64, faults: FaultSpec) -> Scale {
    Scale {
        orgs: 6,
        nodes: 18,
        runs: 40,
        seed,
        faults,
        max_steps: 200_000,
    }
}

#[test]
fn a_small_mesh_with_every_fault_and_hostile_nodes_keeps_every_invariant() {
    let faults = FaultSpec {
        crashes: 3,
        partitions: 3,
        hostile: 3,
        ..FaultSpec::default()
    };
    for seed in 1..=3 {
        let report = small(seed, faults.clone()).run().unwrap();
        assert!(
            report.violation.is_none(),
            "seed {seed}: {}\n{}",
            report.violation.unwrap(),
            report.recent.join("\n")
        );
        assert_eq!(report.finished, report.runs, "seed {seed}");
        assert!(report.handoffs > 0 && report.crashes > 0, "{report:?}");
    }
}

#[test]
fn the_same_seed_replays_the_same_simulation() {
    let scale = small(7, FaultSpec::for_nodes(18));
    let first = scale.run().unwrap();
    let again = scale.run().unwrap();
    assert_eq!(first, again);
    let other = small(8, FaultSpec::for_nodes(18)).run().unwrap();
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
