//! Helpers for the machine's unit tests: a machine with short timers, and the messages of
//! the three-org world in `common` signed by the right nodes. Machine times are
//! milliseconds; [`AT`] is the world's [`NOW`] in milliseconds.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use otto_handoff::machine::command::InboxRecord;
use otto_handoff::machine::{Action, Command, Config, Event, Machine, command};
use otto_handoff::{VerifyContext, definition_digest};
use otto_protocol::{
    Accept, Envelope, HandoffId, Offer, Outcome, Payload as _, Receipt, Reject, RejectCode,
};
use otto_trust::{TrustStore, Unverified, Verified, dsse};

use crate::common::*;

/// The world's [`NOW`] in milliseconds.
pub(crate) const AT: u64 = NOW * 1000;
/// When the world's offer expires, in milliseconds.
pub(crate) const EXPIRES: u64 = (T0 + 3_600) * 1000;

/// Short, round timers: answers time out after 1 s, backoff from 400 ms to 3.2 s.
pub(crate) fn config() -> Config {
    Config {
        answer_timeout: 1_000,
        backoff_initial: 400,
        backoff_max: 3_200,
        receipt_timeout: 1_000,
        retain_after_expiry: 60_000,
        ..Config::default()
    }
}

pub(crate) fn machine() -> Machine {
    Machine::new(config(), 7)
}

/// Every action queued so far.
pub(crate) fn actions(machine: &mut Machine) -> Vec<Action> {
    machine.drain_actions().collect()
}

/// Dev hands the world's offer (signed by dev) to `ops-1`.
pub(crate) fn hand_off(machine: &mut Machine, offer: &Offer, now: u64) -> Event {
    let envelope = sign_offer(&World::new().dev, offer);
    machine.handle(Command::HandOff(command::HandOff {
        peer: "ops-1".to_owned(),
        envelope,
        now,
    }))
}

/// `message` signed by `by`, verified against its key: what the node gives the machine.
pub(crate) fn verified<T: otto_protocol::Payload>(by: &Node, message: &T) -> Verified<Envelope> {
    let envelope = dsse::sign(
        T::KIND.payload_type(),
        otto_protocol::encode_payload(message),
        &by.key,
    )
    .unwrap();
    Unverified::new(envelope)
        .verify(&by.key.public_key())
        .unwrap()
}

pub(crate) fn accept(offer: &Offer) -> Accept {
    Accept {
        id: offer.id,
        stage: offer.stage.clone(),
        attempt: offer.attempt,
    }
}

pub(crate) fn reject(id: HandoffId, code: RejectCode, message: &str) -> Reject {
    Reject {
        id,
        code,
        message: message.to_owned(),
        hint: Some("do something".to_owned()),
    }
}

pub(crate) fn answer(
    machine: &mut Machine,
    id: HandoffId,
    envelope: Verified<Envelope>,
    now: u64,
) -> Event {
    machine.handle(Command::Answer(command::Answer { id, envelope, now }))
}

pub(crate) fn tick(machine: &mut Machine, now: u64) -> Event {
    machine.handle(Command::Tick(command::Tick { now }))
}

/// Ops's receipt for Deploy, `attempt`.
pub(crate) fn deploy_receipt(world: &World, attempt: u32) -> Receipt {
    Receipt {
        attempt,
        ..world.receipt(&world.ops, "Deploy", Outcome::Success, Vec::new())
    }
}

pub(crate) fn signed_receipt(world: &World, attempt: u32) -> Envelope {
    sign_receipt(&world.ops, &deploy_receipt(world, attempt))
}

/// Ops receives `envelope` from `dev-1` with its usual trust store.
pub(crate) fn receive(machine: &mut Machine, envelope: Envelope, now: u64) -> Event {
    receive_with(
        machine,
        envelope,
        &World::new().ops_trust(),
        &|_| false,
        now,
    )
}

/// Ops receives `envelope` with `trust`, its durable inbox answering `seen`.
pub(crate) fn receive_with(
    machine: &mut Machine,
    envelope: Envelope,
    trust: &TrustStore,
    seen: &dyn Fn(&HandoffId) -> bool,
    now: u64,
) -> Event {
    receive_stored(machine, envelope, trust, seen, None, now)
}

/// Ops receives `envelope` with `trust`, passing its durable inbox entry `stored`.
pub(crate) fn receive_stored(
    machine: &mut Machine,
    envelope: Envelope,
    trust: &TrustStore,
    seen: &dyn Fn(&HandoffId) -> bool,
    stored: Option<InboxRecord>,
    now: u64,
) -> Event {
    let names = ops_names();
    let verify = VerifyContext::new(trust, ops_org(), &names).with_seen(seen);
    machine.handle(Command::OfferReceived(command::OfferReceived {
        peer: "dev-1".to_owned(),
        envelope: Unverified::new(envelope),
        stored,
        verify: &verify,
        now,
    }))
}

/// Ops's trust store without the approval of Deploy's definition.
pub(crate) fn unapproved_trust(world: &World) -> TrustStore {
    let mut trust = world.ops_trust();
    assert!(trust.unapprove(&definition_digest(
        &world.plan.body,
        world.plan.stage("Deploy").unwrap()
    )));
    trust
}

/// The offer as a shared envelope, as actions carry it.
pub(crate) fn offer_envelope(world: &World, offer: &Offer) -> std::sync::Arc<Envelope> {
    std::sync::Arc::new(sign_offer(&world.dev, offer))
}

/// The payload type check used by tests that look inside replies.
pub(crate) fn is_offer(envelope: &Envelope) -> bool {
    envelope.payload_type == Offer::KIND.payload_type()
}
