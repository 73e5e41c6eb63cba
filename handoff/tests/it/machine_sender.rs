//! The sending side of the machine, one command at a time: feed a command, check the event
//! and the exact list of actions.

use std::sync::Arc;

use crate::common::*;
use crate::machine_support::*;
use otto_handoff::machine::event::{self, Expired, Retry};
use otto_handoff::machine::{Action, Command, Config, Event, Machine, OutgoingState, command};
use otto_protocol::{HandoffId, Outcome, RejectCode};

/// Dev's machine after handing off the world's offer at [`AT`], actions drained.
fn sent(world: &World) -> (Machine, otto_protocol::Offer) {
    let mut machine = machine();
    let offer = world.offer();
    hand_off(&mut machine, &offer, AT);
    machine.drain_actions().for_each(drop);
    (machine, offer)
}

fn retry_at(event: &Event) -> u64 {
    match event {
        Event::SendFailed(Retry::Retrying { retry_at, .. })
        | Event::Answer(event::Answer::Busy { retry_at, .. }) => *retry_at,
        other => panic!("no retry in {other:?}"),
    }
}

#[test]
fn hand_off_persists_the_offer_before_sending_it() {
    let world = World::new();
    let mut machine = machine();
    let offer = world.offer();
    let event = hand_off(&mut machine, &offer, AT);
    assert_eq!(
        event,
        Event::HandOff(event::HandOff::Queued {
            id: offer.id,
            expires_at: EXPIRES
        })
    );
    let envelope = offer_envelope(&world, &offer);
    assert_eq!(
        actions(&mut machine),
        [
            Action::PersistOutbox {
                id: offer.id,
                run: RUN.to_owned(),
                stage: "Deploy".to_owned(),
                peer: "ops-1".to_owned(),
                envelope: Arc::clone(&envelope),
                created_at: AT,
                next_attempt_at: AT + 1_000,
            },
            Action::Send {
                id: offer.id,
                peer: "ops-1".to_owned(),
                envelope,
            },
            Action::Wakeup { at: AT + 1_000 },
        ]
    );
    assert_eq!(
        machine.outgoing(&offer.id),
        Some(OutgoingState::Awaiting {
            deadline: AT + 1_000,
            tries: 0
        })
    );
    assert_eq!(machine.pending_offers(), 1);
}

#[test]
fn hand_off_of_a_tracked_offer_changes_nothing() {
    let world = World::new();
    let (mut machine, offer) = sent(&world);
    let event = hand_off(&mut machine, &offer, AT + 10);
    assert_eq!(
        event,
        Event::HandOff(event::HandOff::AlreadyKnown { id: offer.id })
    );
    assert_eq!(actions(&mut machine), []);
}

#[test]
fn hand_off_beyond_max_pending_is_refused_without_actions() {
    let world = World::new();
    let mut machine = Machine::new(
        Config {
            max_pending: 1,
            ..config()
        },
        7,
    );
    hand_off(&mut machine, &world.offer(), AT);
    machine.drain_actions().for_each(drop);
    let second = otto_protocol::Offer {
        id: HandoffId([0x43; 16]),
        ..world.offer()
    };
    let event = hand_off(&mut machine, &second, AT);
    assert_eq!(
        event,
        Event::HandOff(event::HandOff::Full {
            id: second.id,
            pending: 1
        })
    );
    assert_eq!(actions(&mut machine), []);
    assert_eq!(machine.outgoing(&second.id), None);
}

#[test]
fn hand_off_of_an_expired_offer_sends_nothing() {
    let world = World::new();
    let mut machine = machine();
    let offer = world.offer();
    let event = hand_off(&mut machine, &offer, EXPIRES);
    assert_eq!(
        event,
        Event::HandOff(event::HandOff::Expired { id: offer.id })
    );
    assert_eq!(actions(&mut machine), []);
}

#[test]
fn hand_off_of_something_else_is_invalid() {
    let world = World::new();
    let mut machine = machine();
    let receipt = signed_receipt(&world, 1);
    let event = machine.handle(Command::HandOff(command::HandOff {
        peer: "ops-1".to_owned(),
        envelope: receipt,
        now: AT,
    }));
    assert!(
        matches!(&event, Event::HandOff(event::HandOff::Invalid { reason }) if reason.contains("does not hold an offer")),
        "{event:?}"
    );
    assert_eq!(actions(&mut machine), []);
}

#[test]
fn an_accept_acknowledges_the_outbox_and_ends_the_wait() {
    let world = World::new();
    let (mut machine, offer) = sent(&world);
    let event = answer(
        &mut machine,
        offer.id,
        verified(&world.ops, &accept(&offer)),
        AT + 5,
    );
    assert_eq!(
        event,
        Event::Answer(event::Answer::Accepted {
            id: offer.id,
            run: RUN.to_owned(),
            stage: "Deploy".to_owned(),
            peer: "ops-1".to_owned(),
        })
    );
    assert_eq!(actions(&mut machine), [Action::AckOutbox { id: offer.id }]);
    assert_eq!(machine.outgoing(&offer.id), Some(OutgoingState::Accepted));
    assert_eq!(machine.pending_offers(), 0);
    assert_eq!(machine.next_wakeup(), None);

    // A late copy of the same answer changes nothing.
    let again = answer(
        &mut machine,
        offer.id,
        verified(&world.ops, &accept(&offer)),
        AT + 6,
    );
    assert_eq!(
        again,
        Event::Answer(event::Answer::Unknown { id: offer.id })
    );
    assert_eq!(actions(&mut machine), []);
}

#[test]
fn a_reject_surfaces_its_reason_and_ends_the_offer() {
    let world = World::new();
    let (mut machine, offer) = sent(&world);
    let refusal = reject(
        offer.id,
        RejectCode::DefinitionNotApproved,
        "stage definition not approved",
    );
    let event = answer(
        &mut machine,
        offer.id,
        verified(&world.ops, &refusal),
        AT + 5,
    );
    assert_eq!(
        event,
        Event::Answer(event::Answer::Rejected {
            id: offer.id,
            run: RUN.to_owned(),
            stage: "Deploy".to_owned(),
            peer: "ops-1".to_owned(),
            code: RejectCode::DefinitionNotApproved,
            message: "stage definition not approved".to_owned(),
            hint: Some("do something".to_owned()),
        })
    );
    assert_eq!(actions(&mut machine), [Action::AckOutbox { id: offer.id }]);
    assert_eq!(machine.outgoing(&offer.id), None);
}

#[test]
fn a_busy_reject_backs_off_and_sends_again() {
    let world = World::new();
    let (mut machine, offer) = sent(&world);
    let busy = reject(offer.id, RejectCode::Internal, "busy");
    let event = answer(&mut machine, offer.id, verified(&world.ops, &busy), AT + 5);
    let at = retry_at(&event);
    assert!((AT + 5 + 200..=AT + 5 + 400).contains(&at), "{at}");
    assert_eq!(
        actions(&mut machine),
        [
            Action::RetryOutbox {
                id: offer.id,
                next_attempt_at: at,
                tries: 1,
                error: "busy".to_owned(),
            },
            Action::Wakeup { at },
        ]
    );
    tick(&mut machine, at);
    assert!(matches!(
        actions(&mut machine).first(),
        Some(Action::Send { .. })
    ));
}

#[test]
fn an_answer_for_another_offer_or_stage_is_invalid() {
    let world = World::new();
    let (mut machine, offer) = sent(&world);
    let other = accept(&otto_protocol::Offer {
        id: HandoffId([9; 16]),
        ..offer.clone()
    });
    let event = answer(&mut machine, offer.id, verified(&world.ops, &other), AT);
    assert!(
        matches!(event, Event::Answer(event::Answer::Invalid { .. })),
        "{event:?}"
    );
    let wrong_stage = otto_protocol::Accept {
        stage: "Smoke".to_owned(),
        ..accept(&offer)
    };
    let event = answer(
        &mut machine,
        offer.id,
        verified(&world.ops, &wrong_stage),
        AT,
    );
    assert!(
        matches!(event, Event::Answer(event::Answer::Invalid { .. })),
        "{event:?}"
    );
    assert_eq!(actions(&mut machine), []);
    assert!(machine.outgoing(&offer.id).is_some());
}

#[test]
fn an_answer_for_an_unknown_offer_changes_nothing() {
    let world = World::new();
    let mut machine = machine();
    let offer = world.offer();
    let event = answer(
        &mut machine,
        offer.id,
        verified(&world.ops, &accept(&offer)),
        AT,
    );
    assert_eq!(
        event,
        Event::Answer(event::Answer::Unknown { id: offer.id })
    );
    assert_eq!(actions(&mut machine), []);
}

#[test]
fn a_failed_send_backs_off_then_sends_again() {
    let world = World::new();
    let (mut machine, offer) = sent(&world);
    let event = machine.handle(Command::SendFailed(command::SendFailed {
        id: offer.id,
        error: "connection refused".to_owned(),
        now: AT + 20,
    }));
    let at = retry_at(&event);
    assert!((AT + 20 + 200..=AT + 20 + 400).contains(&at), "{at}");
    assert_eq!(
        actions(&mut machine),
        [
            Action::RetryOutbox {
                id: offer.id,
                next_attempt_at: at,
                tries: 1,
                error: "connection refused".to_owned(),
            },
            Action::Wakeup { at },
        ]
    );

    // A second failure report during the backoff (an older send) changes nothing.
    let again = machine.handle(Command::SendFailed(command::SendFailed {
        id: offer.id,
        error: "connection refused".to_owned(),
        now: AT + 30,
    }));
    assert_eq!(retry_at(&again), at);
    assert_eq!(actions(&mut machine), []);

    // Too early: nothing. On time: the offer goes again and its answer is awaited.
    let early = tick(&mut machine, at - 1);
    assert_eq!(early, Event::Tick(event::Tick::default()));
    assert_eq!(actions(&mut machine), []);
    tick(&mut machine, at);
    assert_eq!(
        actions(&mut machine),
        [
            Action::Send {
                id: offer.id,
                peer: "ops-1".to_owned(),
                envelope: offer_envelope(&world, &offer),
            },
            Action::Wakeup { at: at + 1_000 },
        ]
    );
}

#[test]
fn no_answer_in_time_counts_as_a_failed_send() {
    let world = World::new();
    let (mut machine, offer) = sent(&world);
    let event = tick(&mut machine, AT + 1_000);
    assert_eq!(
        event,
        Event::Tick(event::Tick {
            timed_out: 1,
            ..event::Tick::default()
        })
    );
    let actions = actions(&mut machine);
    let [
        Action::RetryOutbox {
            id,
            tries: 1,
            next_attempt_at,
            error,
        },
        Action::Wakeup { at },
    ] = actions.as_slice()
    else {
        panic!("{actions:?}");
    };
    assert_eq!(*id, offer.id);
    assert_eq!(next_attempt_at, at);
    assert_eq!(error, "no answer within 1000 ms");
    assert!((AT + 1_200..=AT + 1_400).contains(at), "{at}");
}

#[test]
fn backoff_doubles_up_to_its_cap_with_jitter_from_the_seed() {
    let world = World::new();
    let delays = |seed: u64| -> Vec<u64> {
        let mut machine = Machine::new(config(), seed);
        let offer = world.offer();
        hand_off(&mut machine, &offer, AT);
        let mut now = AT;
        let mut delays = Vec::new();
        for _ in 0..8 {
            let event = machine.handle(Command::SendFailed(command::SendFailed {
                id: offer.id,
                error: "down".to_owned(),
                now,
            }));
            let at = retry_at(&event);
            delays.push(at - now);
            tick(&mut machine, at);
            now = at;
        }
        delays
    };
    let first = delays(7);
    for (n, delay) in first.iter().enumerate() {
        let full = (400u64 << n).min(3_200);
        assert!(
            (full / 2..=full).contains(delay),
            "try {}: {delay} of {full}",
            n + 1
        );
    }
    assert_eq!(delays(7), first, "the same seed gives the same delays");
    assert_ne!(delays(8), first, "another seed gives other delays");
}

#[test]
fn an_offer_without_an_answer_expires_and_leaves_the_outbox() {
    let world = World::new();
    let (mut machine, offer) = sent(&world);
    assert_eq!(machine.next_wakeup(), Some(AT + 1_000));
    let event = tick(&mut machine, EXPIRES);
    assert_eq!(
        event,
        Event::Tick(event::Tick {
            expired: vec![Expired {
                id: offer.id,
                run: RUN.to_owned(),
                stage: "Deploy".to_owned(),
                peer: "ops-1".to_owned(),
            }],
            ..event::Tick::default()
        })
    );
    assert_eq!(actions(&mut machine), [Action::AckOutbox { id: offer.id }]);
    assert_eq!(machine.outgoing(&offer.id), None);
    assert_eq!(machine.next_wakeup(), None);
}

#[test]
fn the_wakeup_never_lies_past_the_expiry() {
    let world = World::new();
    let mut machine = Machine::new(
        Config {
            answer_timeout: 10_000_000,
            ..config()
        },
        7,
    );
    let offer = world.offer();
    hand_off(&mut machine, &offer, AT);
    assert_eq!(
        actions(&mut machine).last(),
        Some(&Action::Wakeup { at: EXPIRES })
    );
}

#[test]
fn a_receipt_is_stored_before_it_is_acknowledged() {
    let world = World::new();
    let (mut machine, offer) = sent(&world);
    answer(
        &mut machine,
        offer.id,
        verified(&world.ops, &accept(&offer)),
        AT + 5,
    );
    machine.drain_actions().for_each(drop);
    let receipt = deploy_receipt(&world, 1);
    let envelope = verified(&world.ops, &receipt);
    let event = machine.handle(Command::Receipt(command::Receipt {
        peer: "ops-1".to_owned(),
        envelope: envelope.clone(),
        given: None,
        held: false,
        now: AT + 60_000,
    }));
    assert_eq!(
        event,
        Event::Receipt(event::Receipt::StageFinished {
            handoff: Some(offer.id),
            run: RUN.to_owned(),
            stage: "Deploy".to_owned(),
            attempt: 1,
            outcome: Outcome::Success,
        })
    );
    assert_eq!(
        actions(&mut machine),
        [
            Action::PersistReceipt {
                run: RUN.to_owned(),
                stage: "Deploy".to_owned(),
                attempt: 1,
                receipt: Arc::new(envelope.get().clone()),
            },
            Action::AckReceipt {
                peer: "ops-1".to_owned(),
                run: RUN.to_owned(),
                stage: "Deploy".to_owned(),
                attempt: 1,
            },
        ]
    );
    assert_eq!(machine.outgoing(&offer.id), None);

    // A copy is stored (the store ignores same bytes) and acknowledged again.
    let again = machine.handle(Command::Receipt(command::Receipt {
        peer: "ops-1".to_owned(),
        envelope,
        given: None,
        held: false,
        now: AT + 60_001,
    }));
    assert!(matches!(
        again,
        Event::Receipt(event::Receipt::StageFinished { handoff: None, .. })
    ));
    assert_eq!(actions(&mut machine).len(), 2);
}

#[test]
fn a_receipt_before_the_accept_ends_the_offer_too() {
    // The accept was lost, but the stage ran: the receipt proves the offer was accepted.
    let world = World::new();
    let (mut machine, offer) = sent(&world);
    let envelope = verified(&world.ops, &deploy_receipt(&world, 2));
    let event = machine.handle(Command::Receipt(command::Receipt {
        peer: "ops-1".to_owned(),
        envelope,
        given: None,
        held: false,
        now: AT + 60_000,
    }));
    assert!(
        matches!(
            event,
            Event::Receipt(event::Receipt::StageFinished { handoff: Some(id), attempt: 2, .. }) if id == offer.id
        ),
        "{event:?}"
    );
    // The receipt is stored before the outbox entry goes (see the next test).
    let actions = actions(&mut machine);
    assert!(matches!(
        actions.first(),
        Some(Action::PersistReceipt { .. })
    ));
    assert_eq!(actions.get(1), Some(&Action::AckOutbox { id: offer.id }));
    assert!(matches!(actions.get(2), Some(Action::AckReceipt { .. })));
    assert_eq!(machine.pending_offers(), 0);
}

#[test]
fn a_crash_between_the_actions_of_a_receipt_before_the_accept_loses_nothing() {
    // The receipt comes before the accept, so no `given` entry was written: the outbox
    // entry is the only record of whom Deploy was given to. A node commits each write on
    // its own and may die after any of them; from every store that leaves, the owner's
    // next copy of the receipt is stored (or found held) and acknowledged. With the outbox
    // entry dropped first, a crash before the receipt was stored left it Stray for ever
    // (sim_properties, PROPTEST_RNG_SEED=2; sim_faults.rs replays that case).
    let world = World::new();
    let (mut machine, offer) = sent(&world);
    let receipt = deploy_receipt(&world, 1);
    machine.handle(receipt_from(
        &world.ops,
        "ops-1",
        &receipt,
        None,
        false,
        AT + 1_000,
    ));
    let writes: Vec<Action> = actions(&mut machine)
        .into_iter()
        .filter(Action::is_durable_write)
        .collect();
    assert_eq!(writes.len(), 2, "{writes:?}");
    for done in 0..=writes.len() {
        let (mut outbox, mut held) = (true, false);
        for write in &writes[..done] {
            match write {
                Action::AckOutbox { id } if *id == offer.id => outbox = false,
                Action::PersistReceipt { .. } => held = true,
                other => panic!("an unexpected write: {other:?}"),
            }
        }
        let mut restarted = crate::machine_support::machine();
        restarted.handle(Command::Restore(command::Restore {
            outbox: if outbox {
                vec![command::OutboxRecord {
                    peer: "ops-1".to_owned(),
                    envelope: sign_offer(&world.dev, &offer),
                    tries: 0,
                }]
            } else {
                Vec::new()
            },
            now: AT + 2_000,
            ..command::Restore::default()
        }));
        restarted.drain_actions().for_each(drop);
        let event = restarted.handle(receipt_from(
            &world.ops,
            "ops-1",
            &receipt,
            None,
            held,
            AT + 3_000,
        ));
        assert!(
            matches!(
                event,
                Event::Receipt(event::Receipt::StageFinished { .. } | event::Receipt::Again { .. })
            ),
            "after {done} of the writes {writes:?}: {event:?}"
        );
        let after = actions(&mut restarted);
        assert!(
            held || after
                .iter()
                .any(|a| matches!(a, Action::PersistReceipt { .. })),
            "after {done} writes the receipt is not stored: {after:?}"
        );
        assert!(
            after.iter().any(|a| matches!(a, Action::AckReceipt { .. })),
            "after {done} writes the receipt is not acknowledged: {after:?}"
        );
    }
}

#[test]
fn a_receipt_from_a_peer_the_stage_was_not_given_to_is_refused_and_not_stored() {
    // The offer went to ops-1; qa-1, a trusted node too, sends a receipt for the same run,
    // stage and attempt, before the accept and after it.
    let world = World::new();
    let (mut machine, offer) = sent(&world);
    let forged = || verified(&world.qa, &deploy_receipt(&world, 1));
    let refused = |event: Event| {
        assert_eq!(
            event,
            Event::Receipt(event::Receipt::Refused {
                peer: "qa-1".to_owned(),
                run: RUN.to_owned(),
                stage: "Deploy".to_owned(),
                attempt: 1,
                given_to: "ops-1".to_owned(),
            })
        );
    };
    refused(machine.handle(Command::Receipt(command::Receipt {
        peer: "qa-1".to_owned(),
        envelope: forged(),
        given: None,
        held: false,
        now: AT + 1,
    })));
    assert_refused(&mut machine, "qa-1");
    assert_eq!(machine.pending_offers(), 1);

    answer(
        &mut machine,
        offer.id,
        verified(&world.ops, &accept(&offer)),
        AT + 5,
    );
    actions(&mut machine);
    refused(machine.handle(Command::Receipt(command::Receipt {
        peer: "qa-1".to_owned(),
        envelope: forged(),
        given: None,
        held: false,
        now: AT + 6,
    })));
    assert_refused(&mut machine, "qa-1");

    // The owner's own receipt still ends the handoff.
    let event = machine.handle(Command::Receipt(command::Receipt {
        peer: "ops-1".to_owned(),
        envelope: verified(&world.ops, &deploy_receipt(&world, 1)),
        given: None,
        held: false,
        now: AT + 7,
    }));
    assert!(
        matches!(
            event,
            Event::Receipt(event::Receipt::StageFinished { handoff: Some(id), .. }) if id == offer.id
        ),
        "{event:?}"
    );
    assert!(matches!(
        actions(&mut machine).first(),
        Some(Action::PersistReceipt { .. })
    ));

    // After the handoff ended, a forged copy from qa-1 is still refused (the simulator
    // found a hostile node's receipt taken once the real one had come); the owner's own
    // copy, sent again because its acknowledgement was lost, is taken and acknowledged.
    refused(machine.handle(Command::Receipt(command::Receipt {
        peer: "qa-1".to_owned(),
        envelope: forged(),
        given: None,
        held: false,
        now: AT + 8,
    })));
    assert_refused(&mut machine, "qa-1");
    let again = machine.handle(Command::Receipt(command::Receipt {
        peer: "ops-1".to_owned(),
        envelope: verified(&world.ops, &deploy_receipt(&world, 1)),
        given: None,
        held: false,
        now: AT + 9,
    }));
    assert!(
        matches!(
            again,
            Event::Receipt(event::Receipt::StageFinished { handoff: None, .. })
        ),
        "{again:?}"
    );
    assert_eq!(machine.outgoing(&offer.id), None);
}

#[test]
fn a_receipt_envelope_that_holds_something_else_is_invalid() {
    let world = World::new();
    let mut machine = machine();
    let offer = world.offer();
    let event = machine.handle(Command::Receipt(command::Receipt {
        peer: "ops-1".to_owned(),
        envelope: verified(&world.dev, &offer),
        given: None,
        held: false,
        now: AT,
    }));
    assert!(
        matches!(event, Event::Receipt(event::Receipt::Invalid { .. })),
        "{event:?}"
    );
    assert_eq!(actions(&mut machine), []);
}

#[test]
fn accepted_offers_awaiting_receipts_are_bounded() {
    let world = World::new();
    let mut machine = Machine::new(
        Config {
            max_awaiting: 2,
            ..config()
        },
        7,
    );
    let ids: Vec<HandoffId> = (1..=3).map(|i| HandoffId([i; 16])).collect();
    for id in &ids {
        let offer = otto_protocol::Offer {
            id: *id,
            ..world.offer()
        };
        hand_off(&mut machine, &offer, AT);
        answer(&mut machine, *id, verified(&world.ops, &accept(&offer)), AT);
    }
    assert_eq!(machine.outgoing(&ids[0]), None, "the oldest is forgotten");
    assert_eq!(machine.outgoing(&ids[1]), Some(OutgoingState::Accepted));
    assert_eq!(machine.outgoing(&ids[2]), Some(OutgoingState::Accepted));
}

#[test]
fn after_a_restart_an_accepted_offer_still_takes_a_receipt_only_from_its_peer() {
    // Dev's node kept the offer ops-1 accepted (its outbox entry, as given) and restarted:
    // nothing is sent again, and qa-1's receipt for the stage is still refused.
    let world = World::new();
    let offer = world.offer();
    let mut machine = machine();
    machine.handle(Command::Restore(command::Restore {
        given: vec![command::OutboxRecord {
            peer: "ops-1".to_owned(),
            envelope: sign_offer(&world.dev, &offer),
            tries: 0,
        }],
        now: AT,
        ..command::Restore::default()
    }));
    assert_eq!(actions(&mut machine), []);
    assert_eq!(machine.outgoing(&offer.id), Some(OutgoingState::Accepted));
    assert_eq!(machine.pending_offers(), 0);
    let event = machine.handle(Command::Receipt(command::Receipt {
        peer: "qa-1".to_owned(),
        envelope: verified(&world.qa, &deploy_receipt(&world, 1)),
        given: None,
        held: false,
        now: AT + 1,
    }));
    assert!(
        matches!(&event, Event::Receipt(event::Receipt::Refused { given_to, .. }) if given_to == "ops-1"),
        "{event:?}"
    );
    assert_refused(&mut machine, "qa-1");
    let event = machine.handle(Command::Receipt(command::Receipt {
        peer: "ops-1".to_owned(),
        envelope: verified(&world.ops, &deploy_receipt(&world, 1)),
        given: None,
        held: false,
        now: AT + 2,
    }));
    assert!(
        matches!(event, Event::Receipt(event::Receipt::StageFinished { handoff: Some(id), .. }) if id == offer.id),
        "{event:?}"
    );
    assert_eq!(machine.outgoing(&offer.id), None);
}

/// The only action after a refused receipt: its refusal to `peer`, so that `peer` stops
/// sending it. Nothing stored, nothing acknowledged.
#[track_caller]
fn assert_refused(machine: &mut Machine, peer: &str) {
    let taken = actions(machine);
    assert!(
        matches!(
            taken.as_slice(),
            [Action::RefuseReceipt { peer: p, run, stage, attempt: 1, reason }]
                if p == peer && run == RUN && stage == "Deploy" && !reason.is_empty()
        ),
        "{taken:?}"
    );
}

/// Command::Receipt of `receipt` signed by `by`, from peer `peer`, with what the store says.
fn receipt_from(
    by: &Node,
    peer: &str,
    receipt: &otto_protocol::Receipt,
    given: Option<&str>,
    held: bool,
    now: u64,
) -> Command<'static> {
    Command::Receipt(command::Receipt {
        peer: peer.to_owned(),
        envelope: verified(by, receipt),
        given: given.map(str::to_owned),
        held,
        now,
    })
}

#[test]
fn a_receipt_for_a_stage_given_to_nobody_is_refused_and_not_stored() {
    // Ops-1 is trusted, and its receipt is genuine, but this node never gave it Deploy (or
    // gave it, the offer expired before the accept came, and the node restarted since):
    // nothing is stored, nothing acknowledged, and the run is not moved on from ops-1. The
    // refusal answers it, so ops-1 stops sending it.
    let world = World::new();
    let mut machine = machine();
    let event = machine.handle(receipt_from(
        &world.ops,
        "ops-1",
        &deploy_receipt(&world, 1),
        None,
        false,
        AT,
    ));
    assert_eq!(
        event,
        Event::Receipt(event::Receipt::Stray {
            peer: "ops-1".to_owned(),
            run: RUN.to_owned(),
            stage: "Deploy".to_owned(),
            attempt: 1,
        })
    );
    assert_refused(&mut machine, "ops-1");
}

#[test]
fn after_a_restart_a_copy_of_a_receipt_already_held_is_acknowledged_and_not_stored_again() {
    // The handoff ended before the restart (its given entry left with the receipt); the
    // owner sends the receipt again because the acknowledgement was lost.
    let world = World::new();
    let mut machine = machine();
    let event = machine.handle(receipt_from(
        &world.ops,
        "ops-1",
        &deploy_receipt(&world, 1),
        None,
        true,
        AT,
    ));
    assert_eq!(
        event,
        Event::Receipt(event::Receipt::Again {
            run: RUN.to_owned(),
            stage: "Deploy".to_owned(),
            attempt: 1,
        })
    );
    assert_eq!(
        actions(&mut machine),
        [Action::AckReceipt {
            peer: "ops-1".to_owned(),
            run: RUN.to_owned(),
            stage: "Deploy".to_owned(),
            attempt: 1,
        }]
    );
}

#[test]
fn a_handoff_the_machine_forgot_is_matched_by_the_stores_given_record() {
    // Beyond max_awaiting the machine forgets the oldest accepted offer; the store still
    // says ops-1 was given Deploy, so only ops-1's receipt is taken.
    let world = World::new();
    let mut machine = Machine::new(
        Config {
            max_awaiting: 0,
            ..config()
        },
        7,
    );
    let offer = world.offer();
    hand_off(&mut machine, &offer, AT);
    answer(
        &mut machine,
        offer.id,
        verified(&world.ops, &accept(&offer)),
        AT,
    );
    actions(&mut machine);
    assert_eq!(machine.outgoing(&offer.id), None, "forgotten");
    let event = machine.handle(receipt_from(
        &world.qa,
        "qa-1",
        &deploy_receipt(&world, 1),
        Some("ops-1"),
        false,
        AT + 1,
    ));
    assert!(
        matches!(&event, Event::Receipt(event::Receipt::Refused { given_to, .. }) if given_to == "ops-1"),
        "{event:?}"
    );
    assert_refused(&mut machine, "qa-1");
    let event = machine.handle(receipt_from(
        &world.ops,
        "ops-1",
        &deploy_receipt(&world, 1),
        Some("ops-1"),
        false,
        AT + 2,
    ));
    assert!(
        matches!(
            event,
            Event::Receipt(event::Receipt::StageFinished { handoff: None, .. })
        ),
        "{event:?}"
    );
    assert!(matches!(
        actions(&mut machine).first(),
        Some(Action::PersistReceipt { .. })
    ));
}

#[test]
fn a_late_receipt_of_an_expired_offer_is_taken_from_its_peer_only() {
    // The accept was lost and the offer expired, while ops-1 ran the stage.
    let world = World::new();
    let (mut machine, offer) = sent(&world);
    tick(&mut machine, EXPIRES);
    actions(&mut machine);
    assert_eq!(machine.outgoing(&offer.id), None);
    let event = machine.handle(receipt_from(
        &world.qa,
        "qa-1",
        &deploy_receipt(&world, 1),
        None,
        false,
        EXPIRES + 1,
    ));
    assert!(
        matches!(&event, Event::Receipt(event::Receipt::Refused { given_to, .. }) if given_to == "ops-1"),
        "{event:?}"
    );
    let event = machine.handle(receipt_from(
        &world.ops,
        "ops-1",
        &deploy_receipt(&world, 1),
        None,
        false,
        EXPIRES + 2,
    ));
    assert!(
        matches!(event, Event::Receipt(event::Receipt::StageFinished { .. })),
        "{event:?}"
    );
}
