//! Restoring a machine from the node's durable outbox and inbox after a crash: it resumes
//! exactly where the records say.

use std::sync::Arc;

use crate::common::*;
use crate::machine_support::*;
use otto_handoff::machine::command::{InboxRecord, OutboxRecord};
use otto_handoff::machine::event::{self, Expired};
use otto_handoff::machine::{
    Action, Command, Event, InboxState, IncomingState, Machine, OutgoingState, Verdict, command,
};
use otto_protocol::{Envelope, HandoffId, Offer, RejectCode};

fn restore(
    machine: &mut Machine,
    outbox: Vec<OutboxRecord>,
    inbox: Vec<InboxRecord>,
    now: u64,
) -> Event {
    machine.handle(Command::Restore(command::Restore {
        outbox,
        given: Vec::new(),
        inbox,
        now,
    }))
}

fn inbox_record(
    world: &World,
    offer: &Offer,
    state: InboxState,
    verdict: Option<Verdict>,
) -> InboxRecord {
    InboxRecord {
        peer: "dev-1".to_owned(),
        offer: sign_offer(&world.dev, offer),
        received_at: AT,
        state,
        verdict,
        last_attempt: None,
        receipt: None,
    }
}

fn accept_verdict(offer: &Offer) -> Option<Verdict> {
    Some(Verdict::Accept(accept(offer)))
}

#[test]
fn offers_in_the_outbox_are_sent_again() {
    let world = World::new();
    let offer = world.offer();
    let mut machine = machine();
    let envelope = sign_offer(&world.dev, &offer);
    let event = restore(
        &mut machine,
        vec![OutboxRecord {
            peer: "ops-1".to_owned(),
            envelope: envelope.clone(),
            tries: 3,
        }],
        Vec::new(),
        AT,
    );
    assert_eq!(
        event,
        Event::Restore(event::Restore {
            offers: 1,
            ..event::Restore::default()
        })
    );
    assert_eq!(
        actions(&mut machine),
        [
            Action::Send {
                id: offer.id,
                peer: "ops-1".to_owned(),
                envelope: Arc::new(envelope),
            },
            Action::Wakeup { at: AT + 1_000 },
        ]
    );
    assert_eq!(
        machine.outgoing(&offer.id),
        Some(OutgoingState::Awaiting {
            deadline: AT + 1_000,
            tries: 3
        })
    );
}

#[test]
fn offers_that_expired_while_down_leave_the_outbox() {
    let world = World::new();
    let offer = world.offer();
    let mut machine = machine();
    let event = restore(
        &mut machine,
        vec![OutboxRecord {
            peer: "ops-1".to_owned(),
            envelope: sign_offer(&world.dev, &offer),
            tries: 0,
        }],
        Vec::new(),
        EXPIRES,
    );
    assert_eq!(
        event,
        Event::Restore(event::Restore {
            expired: vec![Expired {
                id: offer.id,
                run: RUN.to_owned(),
                stage: "Deploy".to_owned(),
                peer: "ops-1".to_owned(),
            }],
            ..event::Restore::default()
        })
    );
    assert_eq!(actions(&mut machine), [Action::AckOutbox { id: offer.id }]);
}

#[test]
fn an_accepted_stage_that_had_begun_starts_again_as_the_next_attempt() {
    let world = World::new();
    let offer = world.offer();
    let mut machine = machine();
    let record = InboxRecord {
        last_attempt: Some(1),
        ..inbox_record(&world, &offer, InboxState::Accepted, accept_verdict(&offer))
    };
    let event = restore(&mut machine, Vec::new(), vec![record], AT + 5_000);
    assert_eq!(
        event,
        Event::Restore(event::Restore {
            restarted: 1,
            ..event::Restore::default()
        })
    );
    assert_eq!(
        actions(&mut machine),
        [Action::FetchArtifacts {
            id: offer.id,
            peer: "dev-1".to_owned(),
            inputs: Vec::new(),
        }]
    );
    machine.handle(Command::ArtifactsReady(command::ArtifactsReady {
        id: offer.id,
        now: AT + 5_001,
    }));
    assert_eq!(
        actions(&mut machine),
        [Action::StartStage {
            id: offer.id,
            attempt: 2,
            offer: Arc::new(offer.clone()),
        }]
    );
    // A copy of the offer gets the stored accept and starts nothing more.
    let event = receive(&mut machine, sign_offer(&world.dev, &offer), AT + 5_002);
    assert!(matches!(
        event,
        Event::OfferReceived(event::OfferReceived::Duplicate { .. })
    ));
    assert_eq!(actions(&mut machine).len(), 1);
}

#[test]
fn an_accepted_stage_that_never_began_starts_as_the_offered_attempt() {
    let world = World::new();
    let offer = world.offer();
    let mut machine = machine();
    // The accept was persisted but the crash came before the answer was signed into it.
    let record = inbox_record(&world, &offer, InboxState::Accepted, None);
    restore(&mut machine, Vec::new(), vec![record], AT);
    assert_eq!(
        machine.incoming(&offer.id),
        Some(IncomingState::Fetching {
            attempt: 1,
            tries: 0
        })
    );
}

#[test]
fn a_receipt_not_yet_acknowledged_is_sent_again() {
    let world = World::new();
    let offer = world.offer();
    let receipt = signed_receipt(&world, 1);
    let mut machine = machine();
    let record = InboxRecord {
        last_attempt: Some(1),
        receipt: Some(receipt.clone()),
        ..inbox_record(&world, &offer, InboxState::Accepted, accept_verdict(&offer))
    };
    let event = restore(&mut machine, Vec::new(), vec![record], AT);
    assert_eq!(
        event,
        Event::Restore(event::Restore {
            receipts: 1,
            ..event::Restore::default()
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
            Action::Wakeup { at: AT + 1_000 },
        ]
    );
}

#[test]
fn finished_entries_answer_duplicates_with_the_stored_answer() {
    let world = World::new();
    let done = world.offer();
    let rejected = Offer {
        id: HandoffId([0x43; 16]),
        ..world.offer()
    };
    let refusal = Verdict::Reject(reject(rejected.id, RejectCode::OutOfScope, "not in scope"));
    let mut machine = machine();
    let event = restore(
        &mut machine,
        Vec::new(),
        vec![
            inbox_record(&world, &done, InboxState::Done, accept_verdict(&done)),
            inbox_record(
                &world,
                &rejected,
                InboxState::Rejected,
                Some(refusal.clone()),
            ),
        ],
        AT,
    );
    assert_eq!(
        event,
        Event::Restore(event::Restore {
            answered: 2,
            ..event::Restore::default()
        })
    );
    assert_eq!(actions(&mut machine), []);
    for (offer, verdict) in [
        (&done, accept_verdict(&done).unwrap()),
        (&rejected, refusal),
    ] {
        let event = receive(&mut machine, sign_offer(&world.dev, offer), AT + 1);
        assert_eq!(
            event,
            Event::OfferReceived(event::OfferReceived::Duplicate {
                id: offer.id,
                verdict: verdict.clone()
            })
        );
        assert_eq!(
            actions(&mut machine),
            [Action::Reply {
                id: offer.id,
                peer: "dev-1".to_owned(),
                verdict
            }]
        );
    }
}

#[test]
fn an_entry_persisted_without_an_answer_is_checked_again_when_it_comes_again() {
    let world = World::new();
    let offer = world.offer();
    let mut machine = machine();
    let event = restore(
        &mut machine,
        Vec::new(),
        vec![inbox_record(&world, &offer, InboxState::Received, None)],
        AT,
    );
    assert_eq!(
        event,
        Event::Restore(event::Restore {
            unanswered: 1,
            ..event::Restore::default()
        })
    );
    assert_eq!(machine.incoming(&offer.id), Some(IncomingState::Unanswered));
    // The node's inbox holds the id, but that is this very offer: not a replay.
    let event = receive_with(
        &mut machine,
        sign_offer(&world.dev, &offer),
        &world.ops_trust(),
        &|id| *id == offer.id,
        AT + 1,
    );
    assert!(
        matches!(
            event,
            Event::OfferReceived(event::OfferReceived::Accepted { .. })
        ),
        "{event:?}"
    );
}

#[test]
fn finished_entries_past_their_expiry_are_not_held() {
    let world = World::new();
    let offer = world.offer();
    let mut machine = machine();
    let event = restore(
        &mut machine,
        Vec::new(),
        vec![inbox_record(
            &world,
            &offer,
            InboxState::Done,
            accept_verdict(&offer),
        )],
        EXPIRES + 60_000,
    );
    assert_eq!(event, Event::Restore(event::Restore::default()));
    assert_eq!(machine.held_offers(), 0);
}

#[test]
fn records_that_do_not_hold_offers_are_skipped() {
    let mut machine = machine();
    let junk = Envelope {
        payload: vec![1, 2, 3],
        signatures: Vec::new(),
        payload_type: "x".to_owned(),
    };
    let event = restore(
        &mut machine,
        vec![OutboxRecord {
            peer: "ops-1".to_owned(),
            envelope: junk.clone(),
            tries: 0,
        }],
        vec![InboxRecord {
            peer: "dev-1".to_owned(),
            offer: junk,
            received_at: AT,
            state: InboxState::Accepted,
            verdict: None,
            last_attempt: None,
            receipt: None,
        }],
        AT,
    );
    let Event::Restore(restore) = event else {
        panic!("{event:?}");
    };
    assert_eq!(restore.skipped.len(), 2, "{:?}", restore.skipped);
    assert_eq!(actions(&mut machine), []);
}

#[test]
fn a_restored_machine_acts_like_the_one_that_crashed() {
    // Run the sender until it has sent twice, "crash", restore from what the actions
    // persisted, and check the restored machine awaits the same offer.
    let world = World::new();
    let offer = world.offer();
    let mut first = machine();
    hand_off(&mut first, &offer, AT);
    let mut outbox: Vec<OutboxRecord> = Vec::new();
    for action in first.drain_actions() {
        if let Action::PersistOutbox { peer, envelope, .. } = action {
            outbox.push(OutboxRecord {
                peer,
                envelope: (*envelope).clone(),
                tries: 0,
            });
        }
    }
    drop(first);
    let mut second = Machine::new(config(), 8);
    restore(&mut second, outbox, Vec::new(), AT + 2_000);
    answer(
        &mut second,
        offer.id,
        verified(&world.ops, &accept(&offer)),
        AT + 2_010,
    );
    assert_eq!(
        actions(&mut second)
            .into_iter()
            .filter(|a| !matches!(a, Action::Wakeup { .. }))
            .collect::<Vec<_>>()
            .last(),
        Some(&Action::AckOutbox { id: offer.id })
    );
}
