//! The stage-end relay (`otto_handoff::relay`): a node vouches once for each end of a
//! stage it does not run, in words that read back as that end, and a relayed success is
//! recorded only once the stages that need it ended here.

use crate::common::*;
use otto_handoff::relay::{End, RELAY_SEQ, Relays, may_record, relayed};
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
    let status = relays.relay(&deploy, false, false, "qa-1", 42).unwrap();
    assert_eq!(
        (status.seq, status.state, status.at),
        (RELAY_SEQ, StageState::Succeeded, 42)
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
