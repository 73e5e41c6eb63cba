//! The receiving side of the machine, one command at a time: feed a command, check the
//! event and the exact list of actions.

use std::sync::Arc;

use crate::common::*;
use crate::machine_support::*;
use otto_handoff::Definition;
use otto_handoff::machine::command::InboxRecord;
use otto_handoff::machine::event::{self, Retry};
use otto_handoff::machine::{
    Action, Command, Config, Event, InboxState, IncomingState, Machine, Verdict, command,
};
use otto_protocol::{Digest, Envelope, HandoffId, InputArtifact, Offer, Outcome, RejectCode};

/// The world's offer with one input artifact.
fn offer_with_input(world: &World) -> Offer {
    Offer {
        inputs: vec![InputArtifact {
            name: "site".to_owned(),
            sha256: Digest([7; 32]),
            size: 42,
            provider: "dev-1".to_owned(),
        }],
        ..world.offer()
    }
}

/// Ops's machine after accepting `offer` at [`AT`], actions drained.
fn accepted(world: &World, offer: &Offer) -> Machine {
    let mut machine = machine();
    let event = receive(&mut machine, sign_offer(&world.dev, offer), AT);
    assert!(
        matches!(
            event,
            Event::OfferReceived(event::OfferReceived::Accepted { .. })
        ),
        "{event:?}"
    );
    machine.drain_actions().for_each(drop);
    machine
}

/// Ops's machine with `offer`'s stage running as attempt 1, actions drained.
fn running(world: &World, offer: &Offer) -> Machine {
    let mut machine = accepted(world, offer);
    ready(&mut machine, offer.id, AT + 10);
    machine.drain_actions().for_each(drop);
    machine
}

fn ready(machine: &mut Machine, id: HandoffId, now: u64) -> Event {
    machine.handle(Command::ArtifactsReady(command::ArtifactsReady { id, now }))
}

fn finished(machine: &mut Machine, id: HandoffId, receipt: Envelope, now: u64) -> Event {
    machine.handle(Command::StageFinished(command::StageFinished {
        id,
        receipt,
        now,
    }))
}

fn accept_verdict(offer: &Offer) -> Verdict {
    Verdict::Accept(accept(offer))
}

#[test]
fn an_offer_is_persisted_before_it_is_accepted_then_its_inputs_are_fetched() {
    let world = World::new();
    let mut machine = machine();
    let offer = offer_with_input(&world);
    let envelope = sign_offer(&world.dev, &offer);
    let event = receive(&mut machine, envelope.clone(), AT);
    assert_eq!(
        event,
        Event::OfferReceived(event::OfferReceived::Accepted {
            id: offer.id,
            peer: "dev-1".to_owned(),
            run: RUN.to_owned(),
            stage: "Deploy".to_owned(),
            attempt: 1,
            org: "dev".to_owned(),
            node: "dev-1".to_owned(),
            definition: Definition::Inline {
                digest: world.deploy_digest()
            },
        })
    );
    assert_eq!(
        actions(&mut machine),
        [
            Action::PersistInbox {
                id: offer.id,
                peer: "dev-1".to_owned(),
                offer: Arc::new(envelope),
                received_at: AT,
                state: InboxState::Accepted,
                verdict: accept_verdict(&offer),
            },
            Action::Reply {
                id: offer.id,
                peer: "dev-1".to_owned(),
                verdict: accept_verdict(&offer),
            },
            Action::FetchArtifacts {
                id: offer.id,
                peer: "dev-1".to_owned(),
                inputs: offer.inputs.clone(),
            },
        ]
    );
    assert_eq!(
        machine.incoming(&offer.id),
        Some(IncomingState::Fetching {
            attempt: 1,
            tries: 0
        })
    );
}

#[test]
fn a_duplicate_gets_the_first_answer_and_nothing_else() {
    let world = World::new();
    let offer = world.offer();
    for mut machine in [accepted(&world, &offer), running(&world, &offer)] {
        let before = machine.incoming(&offer.id);
        let event = receive(&mut machine, sign_offer(&world.dev, &offer), AT + 500);
        assert_eq!(
            event,
            Event::OfferReceived(event::OfferReceived::Duplicate {
                id: offer.id,
                verdict: accept_verdict(&offer)
            })
        );
        assert_eq!(
            actions(&mut machine),
            [Action::Reply {
                id: offer.id,
                peer: "dev-1".to_owned(),
                verdict: accept_verdict(&offer),
            }]
        );
        assert_eq!(machine.incoming(&offer.id), before);
    }
}

#[test]
fn another_offer_under_a_used_id_is_refused_without_touching_the_first() {
    let world = World::new();
    let offer = world.offer();
    let mut machine = accepted(&world, &offer);
    let other = Offer {
        created_at: offer.created_at + 1,
        ..offer.clone()
    };
    let event = receive(&mut machine, sign_offer(&world.dev, &other), AT + 1);
    assert_eq!(
        event,
        Event::OfferReceived(event::OfferReceived::Conflict { id: offer.id })
    );
    let actions = actions(&mut machine);
    let [
        Action::Reply {
            verdict: Verdict::Reject(reject),
            ..
        },
    ] = actions.as_slice()
    else {
        panic!("{actions:?}");
    };
    assert_eq!(reject.code, RejectCode::Replayed);
    // The first offer still gets its accept.
    let event = receive(&mut machine, sign_offer(&world.dev, &offer), AT + 2);
    assert!(matches!(
        event,
        Event::OfferReceived(event::OfferReceived::Duplicate { .. })
    ));
}

#[test]
fn a_refusal_of_an_authenticated_sender_is_persisted_and_repeated() {
    let world = World::new();
    let trust = unapproved_trust(&world);
    let mut machine = machine();
    let offer = world.offer();
    let envelope = sign_offer(&world.dev, &offer);
    let event = receive_with(&mut machine, envelope.clone(), &trust, &|_| false, AT);
    let Event::OfferReceived(event::OfferReceived::Rejected {
        id: Some(id),
        rejection,
        persisted: true,
    }) = event
    else {
        panic!("{event:?}");
    };
    assert_eq!(id, offer.id);
    assert_eq!(rejection.code, RejectCode::DefinitionNotApproved);
    let verdict = Verdict::Reject(rejection.to_reject(id));
    assert_eq!(
        actions(&mut machine),
        [
            Action::PersistInbox {
                id,
                peer: "dev-1".to_owned(),
                offer: Arc::new(envelope.clone()),
                received_at: AT,
                state: InboxState::Rejected,
                verdict: verdict.clone(),
            },
            Action::Reply {
                id,
                peer: "dev-1".to_owned(),
                verdict: verdict.clone(),
            },
        ]
    );
    assert_eq!(machine.incoming(&id), Some(IncomingState::Rejected));

    // Approving it now does not change the first answer to this offer.
    let event = receive(&mut machine, envelope, AT + 1);
    assert_eq!(
        event,
        Event::OfferReceived(event::OfferReceived::Duplicate {
            id,
            verdict: verdict.clone()
        })
    );
    assert_eq!(
        actions(&mut machine),
        [Action::Reply {
            id,
            peer: "dev-1".to_owned(),
            verdict
        }]
    );
}

#[test]
fn a_forged_copy_is_refused_without_taking_the_id_from_its_sender() {
    let world = World::new();
    let mut machine = machine();
    let offer = world.offer();
    // Signed by ops's key, but presenting dev's certificate.
    let forged = sign_offer(&world.ops, &offer);
    let event = receive(&mut machine, forged, AT);
    let Event::OfferReceived(event::OfferReceived::Rejected {
        rejection,
        persisted: false,
        ..
    }) = event
    else {
        panic!("{event:?}");
    };
    assert_eq!(rejection.code, RejectCode::BadSignature);
    let actions = actions(&mut machine);
    assert!(
        matches!(actions.as_slice(), [Action::Reply { verdict: Verdict::Reject(r), .. }] if r.code == RejectCode::BadSignature),
        "{actions:?}"
    );
    assert_eq!(machine.incoming(&offer.id), None);
    // The real offer under that id is accepted.
    let event = receive(&mut machine, sign_offer(&world.dev, &offer), AT + 1);
    assert!(matches!(
        event,
        Event::OfferReceived(event::OfferReceived::Accepted { .. })
    ));
}

#[test]
fn garbage_is_refused_with_no_id_and_nothing_persisted() {
    let mut machine = machine();
    let garbage = Envelope {
        payload: vec![0xff; 8],
        signatures: Vec::new(),
        payload_type: "application/vnd.otto.offer+cbor".to_owned(),
    };
    let event = receive(&mut machine, garbage, AT);
    assert!(
        matches!(
            &event,
            Event::OfferReceived(event::OfferReceived::Rejected { id: None, persisted: false, rejection }) if rejection.code == RejectCode::Malformed
        ),
        "{event:?}"
    );
    let actions = actions(&mut machine);
    assert!(
        matches!(actions.as_slice(), [Action::Reply { id, .. }] if *id == HandoffId([0; 16])),
        "{actions:?}"
    );
    assert_eq!(machine.held_offers(), 0);
}

#[test]
fn an_id_the_node_remembers_is_refused_as_replayed_and_not_persisted() {
    let world = World::new();
    let mut machine = machine();
    let offer = world.offer();
    let envelope = sign_offer(&world.dev, &offer);
    let event = receive_with(&mut machine, envelope, &world.ops_trust(), &|_| true, AT);
    assert!(
        matches!(
            &event,
            Event::OfferReceived(event::OfferReceived::Rejected { persisted: false, rejection, .. }) if rejection.code == RejectCode::Replayed
        ),
        "{event:?}"
    );
    assert_eq!(actions(&mut machine).len(), 1);
}

#[test]
fn a_full_inbox_answers_busy_without_persisting() {
    let world = World::new();
    let mut machine = Machine::new(
        Config {
            max_inbox: 1,
            ..config()
        },
        7,
    );
    receive(&mut machine, sign_offer(&world.dev, &world.offer()), AT);
    machine.drain_actions().for_each(drop);
    let second = Offer {
        id: HandoffId([0x43; 16]),
        ..world.offer()
    };
    let event = receive(&mut machine, sign_offer(&world.dev, &second), AT);
    assert_eq!(
        event,
        Event::OfferReceived(event::OfferReceived::Busy {
            id: Some(second.id),
            held: 1
        })
    );
    let actions = actions(&mut machine);
    assert!(
        matches!(actions.as_slice(), [Action::Reply { verdict: Verdict::Reject(r), .. }] if r.code == RejectCode::Internal),
        "{actions:?}"
    );
    assert_eq!(machine.incoming(&second.id), None);
}

#[test]
fn finished_offers_do_not_hold_back_new_ones() {
    let world = World::new();
    let mut machine = Machine::new(
        Config {
            max_inbox: 1,
            ..config()
        },
        7,
    );
    let trust = unapproved_trust(&world);
    receive_with(
        &mut machine,
        sign_offer(&world.dev, &world.offer()),
        &trust,
        &|_| false,
        AT,
    );
    assert_eq!((machine.held_offers(), machine.open_offers()), (1, 0));
    let second = Offer {
        id: HandoffId([0x43; 16]),
        ..world.offer()
    };
    let event = receive(&mut machine, sign_offer(&world.dev, &second), AT);
    assert!(
        matches!(
            event,
            Event::OfferReceived(event::OfferReceived::Accepted { .. })
        ),
        "{event:?}"
    );
    assert_eq!((machine.held_offers(), machine.open_offers()), (2, 1));
}

#[test]
fn the_oldest_finished_offers_are_answered_from_the_durable_inbox() {
    let world = World::new();
    let mut machine = Machine::new(
        Config {
            max_finished: 1,
            ..config()
        },
        7,
    );
    let trust = unapproved_trust(&world);
    let first = world.offer();
    let second = Offer {
        id: HandoffId([0x43; 16]),
        ..world.offer()
    };
    let mut refusals = Vec::new();
    for offer in [&first, &second] {
        receive_with(
            &mut machine,
            sign_offer(&world.dev, offer),
            &trust,
            &|_| false,
            AT,
        );
        let actions = actions(&mut machine);
        let Some(Action::Reply { verdict, .. }) = actions.last() else {
            panic!("{actions:?}");
        };
        refusals.push(verdict.clone());
    }
    assert_eq!(machine.incoming(&first.id), None, "the oldest is forgotten");
    assert_eq!(machine.incoming(&second.id), Some(IncomingState::Rejected));

    // A copy of the forgotten one, with the node's record: the stored answer.
    let record = InboxRecord {
        peer: "dev-1".to_owned(),
        offer: sign_offer(&world.dev, &first),
        received_at: AT,
        state: InboxState::Rejected,
        verdict: Some(refusals[0].clone()),
        last_attempt: None,
        receipt: None,
    };
    let event = receive_stored(
        &mut machine,
        sign_offer(&world.dev, &first),
        &world.ops_trust(),
        &|_| true,
        Some(record),
        AT + 1,
    );
    assert_eq!(
        event,
        Event::OfferReceived(event::OfferReceived::Duplicate {
            id: first.id,
            verdict: refusals[0].clone()
        })
    );
    assert_eq!(
        actions(&mut machine),
        [Action::Reply {
            id: first.id,
            peer: "dev-1".to_owned(),
            verdict: refusals[0].clone()
        }]
    );

    // Without the record, the node's memory of the id still refuses a replay.
    machine.drain_actions().for_each(drop);
    let event = receive_with(
        &mut machine,
        sign_offer(&world.dev, &second),
        &world.ops_trust(),
        &|_| true,
        AT + 2,
    );
    assert!(
        matches!(
            event,
            Event::OfferReceived(event::OfferReceived::Rejected {
                persisted: false,
                ..
            })
        ),
        "{event:?}"
    );
}

#[test]
fn finished_offers_are_forgotten_after_their_expiry() {
    let world = World::new();
    let mut machine = machine();
    let trust = unapproved_trust(&world);
    receive_with(
        &mut machine,
        sign_offer(&world.dev, &world.offer()),
        &trust,
        &|_| false,
        AT,
    );
    let event = tick(&mut machine, EXPIRES + 59_999);
    assert_eq!(event, Event::Tick(event::Tick::default()));
    let event = tick(&mut machine, EXPIRES + 60_000);
    assert_eq!(
        event,
        Event::Tick(event::Tick {
            forgotten: 1,
            ..event::Tick::default()
        })
    );
    assert_eq!(machine.held_offers(), 0);
}

#[test]
fn ready_artifacts_start_the_stage_once() {
    let world = World::new();
    let offer = world.offer();
    let mut machine = accepted(&world, &offer);
    let event = ready(&mut machine, offer.id, AT + 10);
    assert_eq!(
        event,
        Event::ArtifactsReady(event::ArtifactsReady::Started {
            id: offer.id,
            attempt: 1
        })
    );
    assert_eq!(
        actions(&mut machine),
        [Action::StartStage {
            id: offer.id,
            attempt: 1,
            offer: Arc::new(offer.clone()),
        }]
    );
    assert_eq!(
        machine.incoming(&offer.id),
        Some(IncomingState::Running { attempt: 1 })
    );
    let again = ready(&mut machine, offer.id, AT + 11);
    assert_eq!(
        again,
        Event::ArtifactsReady(event::ArtifactsReady::Unknown { id: offer.id })
    );
    assert_eq!(actions(&mut machine), []);
}

#[test]
fn a_failed_fetch_is_asked_again_after_a_backoff() {
    let world = World::new();
    let offer = offer_with_input(&world);
    let mut machine = accepted(&world, &offer);
    let event = machine.handle(Command::ArtifactsFailed(command::ArtifactsFailed {
        id: offer.id,
        error: "provider unreachable".to_owned(),
        now: AT + 10,
    }));
    let Event::ArtifactsFailed(Retry::Retrying {
        tries: 1, retry_at, ..
    }) = event
    else {
        panic!("{event:?}");
    };
    assert!((AT + 210..=AT + 410).contains(&retry_at), "{retry_at}");
    assert_eq!(actions(&mut machine), [Action::Wakeup { at: retry_at }]);
    tick(&mut machine, retry_at);
    assert_eq!(
        actions(&mut machine),
        [Action::FetchArtifacts {
            id: offer.id,
            peer: "dev-1".to_owned(),
            inputs: offer.inputs.clone(),
        }]
    );
    assert_eq!(machine.next_wakeup(), None);
}

#[test]
fn a_finished_stage_sends_its_receipt_until_acknowledged() {
    let world = World::new();
    let offer = world.offer();
    let mut machine = running(&world, &offer);
    let receipt = signed_receipt(&world, 1);
    let event = finished(&mut machine, offer.id, receipt.clone(), AT + 100);
    assert_eq!(
        event,
        Event::StageFinished(event::StageFinished::Delivering {
            id: offer.id,
            attempt: 1,
            outcome: Outcome::Success
        })
    );
    assert_eq!(
        actions(&mut machine),
        [
            Action::SendReceipt {
                id: offer.id,
                peer: "dev-1".to_owned(),
                receipt: Arc::new(receipt.clone()),
            },
            Action::Wakeup { at: AT + 1_100 },
        ]
    );

    // No acknowledgement in time: back off, then send again.
    tick(&mut machine, AT + 1_100);
    let actions_now = actions(&mut machine);
    let [Action::Wakeup { at }] = actions_now.as_slice() else {
        panic!("{actions_now:?}");
    };
    assert_eq!(
        machine.incoming(&offer.id),
        Some(IncomingState::Delivering { tries: 1 })
    );
    let event = tick(&mut machine, *at);
    assert_eq!(
        event,
        Event::Tick(event::Tick {
            receipts_resent: 1,
            ..event::Tick::default()
        })
    );
    assert_eq!(
        actions(&mut machine),
        [
            Action::SendReceipt {
                id: offer.id,
                peer: "dev-1".to_owned(),
                receipt: Arc::new(receipt),
            },
            Action::Wakeup { at: at + 1_000 },
        ]
    );

    let event = machine.handle(Command::ReceiptAcked(command::ReceiptAcked {
        id: offer.id,
        now: at + 5,
    }));
    assert_eq!(
        event,
        Event::ReceiptAcked(event::ReceiptAcked::Done { id: offer.id })
    );
    assert_eq!(actions(&mut machine), [Action::InboxDone { id: offer.id }]);
    assert_eq!(machine.incoming(&offer.id), Some(IncomingState::Done));
    assert_eq!(machine.next_wakeup(), None);

    // A second acknowledgement changes nothing; a duplicate offer still gets the accept.
    let again = machine.handle(Command::ReceiptAcked(command::ReceiptAcked {
        id: offer.id,
        now: at + 6,
    }));
    assert_eq!(
        again,
        Event::ReceiptAcked(event::ReceiptAcked::Unknown { id: offer.id })
    );
    let event = receive(&mut machine, sign_offer(&world.dev, &offer), at + 7);
    assert!(matches!(
        event,
        Event::OfferReceived(event::OfferReceived::Duplicate { .. })
    ));
}

#[test]
fn a_failed_receipt_send_backs_off() {
    let world = World::new();
    let offer = world.offer();
    let mut machine = running(&world, &offer);
    finished(&mut machine, offer.id, signed_receipt(&world, 1), AT + 100);
    machine.drain_actions().for_each(drop);
    let event = machine.handle(Command::ReceiptFailed(command::ReceiptFailed {
        id: offer.id,
        error: "connection refused".to_owned(),
        now: AT + 150,
    }));
    let Event::ReceiptFailed(Retry::Retrying {
        tries: 1, retry_at, ..
    }) = event
    else {
        panic!("{event:?}");
    };
    assert_eq!(actions(&mut machine), [Action::Wakeup { at: retry_at }]);
    tick(&mut machine, retry_at);
    assert!(matches!(
        actions(&mut machine).first(),
        Some(Action::SendReceipt { .. })
    ));
}

#[test]
fn a_refused_receipt_is_not_sent_again() {
    // The sender restarted after the offer expired there: it holds no handoff of the
    // stage and refuses the receipt. Sending it again would change nothing, for ever.
    let world = World::new();
    let offer = world.offer();
    let mut machine = running(&world, &offer);
    finished(&mut machine, offer.id, signed_receipt(&world, 1), AT + 100);
    machine.drain_actions().for_each(drop);
    let reason = "this node holds no handoff of the stage to the sending node".to_owned();
    let event = machine.handle(Command::ReceiptRefused(command::ReceiptRefused {
        id: offer.id,
        reason: reason.clone(),
        now: AT + 150,
    }));
    assert_eq!(
        event,
        Event::ReceiptRefused(event::ReceiptRefused::GivenUp {
            id: offer.id,
            reason
        })
    );
    // Done durably, so a restart does not send it again either.
    assert_eq!(actions(&mut machine), [Action::InboxDone { id: offer.id }]);
    assert_eq!(machine.incoming(&offer.id), Some(IncomingState::Done));
    assert_eq!(machine.next_wakeup(), None);
    tick(&mut machine, AT + 3_600_000);
    assert!(
        !actions(&mut machine)
            .iter()
            .any(|a| matches!(a, Action::SendReceipt { .. })),
        "sent again"
    );
    // A refusal of a receipt that is not being delivered changes nothing.
    let again = machine.handle(Command::ReceiptRefused(command::ReceiptRefused {
        id: offer.id,
        reason: "again".to_owned(),
        now: AT + 3_600_001,
    }));
    assert_eq!(
        again,
        Event::ReceiptRefused(event::ReceiptRefused::Unknown { id: offer.id })
    );
    assert_eq!(actions(&mut machine), []);
}

#[test]
fn a_stage_can_end_without_running_when_its_inputs_are_bad() {
    // A tampered artifact never becomes ready: the node ends the stage with a failed
    // receipt straight from fetching.
    let world = World::new();
    let offer = offer_with_input(&world);
    let mut machine = accepted(&world, &offer);
    let receipt = otto_protocol::Receipt {
        outcome: Outcome::Failure,
        ..deploy_receipt(&world, 1)
    };
    let event = finished(
        &mut machine,
        offer.id,
        sign_receipt(&world.ops, &receipt),
        AT + 50,
    );
    assert!(matches!(
        event,
        Event::StageFinished(event::StageFinished::Delivering {
            outcome: Outcome::Failure,
            ..
        })
    ));
}

#[test]
fn a_receipt_for_another_stage_is_invalid() {
    let world = World::new();
    let offer = world.offer();
    let mut machine = running(&world, &offer);
    let wrong = sign_receipt(
        &world.ops,
        &world.receipt(&world.ops, "Smoke", Outcome::Success, Vec::new()),
    );
    let event = finished(&mut machine, offer.id, wrong, AT + 100);
    assert!(matches!(
        event,
        Event::StageFinished(event::StageFinished::Invalid { .. })
    ));
    assert_eq!(actions(&mut machine), []);
    assert_eq!(
        machine.incoming(&offer.id),
        Some(IncomingState::Running { attempt: 1 })
    );
}

#[test]
fn commands_about_unknown_offers_change_nothing() {
    let mut machine = machine();
    let id = HandoffId([5; 16]);
    let world = World::new();
    let events = [
        ready(&mut machine, id, AT),
        finished(&mut machine, id, signed_receipt(&world, 1), AT),
        machine.handle(Command::ArtifactsFailed(command::ArtifactsFailed {
            id,
            error: String::new(),
            now: AT,
        })),
        machine.handle(Command::ReceiptFailed(command::ReceiptFailed {
            id,
            error: String::new(),
            now: AT,
        })),
        machine.handle(Command::ReceiptAcked(command::ReceiptAcked { id, now: AT })),
    ];
    assert_eq!(
        events,
        [
            Event::ArtifactsReady(event::ArtifactsReady::Unknown { id }),
            Event::StageFinished(event::StageFinished::Unknown { id }),
            Event::ArtifactsFailed(Retry::Unknown { id }),
            Event::ReceiptFailed(Retry::Unknown { id }),
            Event::ReceiptAcked(event::ReceiptAcked::Unknown { id }),
        ]
    );
    assert_eq!(actions(&mut machine), []);
}

#[test]
fn durable_writes_come_before_the_messages_that_depend_on_them() {
    let world = World::new();
    let mut machine = machine();
    receive(&mut machine, sign_offer(&world.dev, &world.offer()), AT);
    let kinds: Vec<(bool, bool)> = actions(&mut machine)
        .iter()
        .map(|a| (a.is_durable_write(), a.is_message()))
        .collect();
    assert_eq!(kinds, [(true, false), (false, true), (false, false)]);
}
