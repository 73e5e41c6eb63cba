//! The cost of the handoff machine around `verify_offer`: what one node spends per handoff,
//! without disk or network.
//!
//! Run: `cargo bench -p otto-handoff --bench machine -- --warm-up-time 1 --measurement-time 5`.
//!
//! - `receiver/accept`: a new offer (chain of 2 receipts) through `OfferReceived` until
//!   its accept, fetch and start are queued: `verify_offer` plus the machine;
//!   `receiver/verify_offer_only` is `verify_offer` alone on the same offers.
//! - `receiver/duplicate`: a copy of an accepted offer: the first answer again.
//! - `sender/cycle`: `HandOff`, the accept, the receipt: the sender's whole bookkeeping.
//! - `sim/handoff`: one handoff of a four-stage run through the simulator (signing,
//!   verification, both machines), per handoff.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::hint::black_box;

use common::*;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use otto_handoff::machine::{Command, Config, Machine, command};
use otto_handoff::sim::{Sim, SimConfig};
use otto_handoff::{VerifyContext, verify_offer};
use otto_protocol::{Accept, Envelope, HandoffId, Offer, Outcome};
use otto_trust::{Unverified, Verified, dsse};

const AT: u64 = NOW * 1000;

fn verified<T: otto_protocol::Payload>(by: &Node, message: &T) -> Verified<Envelope> {
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

fn offers(world: &World, n: usize) -> Vec<Envelope> {
    (0..n)
        .map(|i| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            sign_offer(
                &world.dev,
                &Offer {
                    id: HandoffId(id),
                    ..world.offer()
                },
            )
        })
        .collect()
}

fn receive(machine: &mut Machine, envelope: Envelope, ctx: &VerifyContext<'_>) {
    machine.handle(Command::OfferReceived(command::OfferReceived {
        peer: "dev-1".to_owned(),
        envelope: Unverified::new(envelope),
        stored: None,
        verify: ctx,
        now: AT,
    }));
    machine.drain_actions().for_each(drop);
}

fn receiver(c: &mut Criterion) {
    let world = World::new();
    let trust = world.ops_trust();
    let names = ops_names();
    let ctx = VerifyContext::new(&trust, ops_org(), &names);
    let mut group = c.benchmark_group("receiver");
    group.throughput(Throughput::Elements(64));
    group.bench_function("accept", |b| {
        let pool = offers(&world, 64);
        b.iter_batched(
            || (Machine::new(Config::default(), 1), pool.clone()),
            |(mut machine, pool)| {
                for envelope in pool {
                    receive(&mut machine, envelope, &ctx);
                }
                machine
            },
            BatchSize::LargeInput,
        );
    });
    group.bench_function("verify_offer_only", |b| {
        let pool = offers(&world, 64);
        b.iter_batched(
            || pool.clone(),
            |pool| {
                for envelope in pool {
                    black_box(verify_offer(Unverified::new(envelope), &ctx, NOW).unwrap());
                }
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();

    let mut group = c.benchmark_group("receiver");
    group.throughput(Throughput::Elements(1));
    group.bench_function("duplicate", |b| {
        let envelope = sign_offer(&world.dev, &world.offer());
        let mut machine = Machine::new(Config::default(), 1);
        receive(&mut machine, envelope.clone(), &ctx);
        b.iter_batched(
            || envelope.clone(),
            |envelope| receive(&mut machine, black_box(envelope), &ctx),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn sender(c: &mut Criterion) {
    let world = World::new();
    let offer = world.offer();
    let envelope = sign_offer(&world.dev, &offer);
    let accept = verified(
        &world.ops,
        &Accept {
            id: offer.id,
            stage: offer.stage.clone(),
            attempt: 1,
        },
    );
    let receipt = verified(
        &world.ops,
        &world.receipt(&world.ops, "Deploy", Outcome::Success, Vec::new()),
    );
    let mut group = c.benchmark_group("sender");
    group.throughput(Throughput::Elements(1));
    group.bench_function("cycle", |b| {
        let mut machine = Machine::new(Config::default(), 1);
        b.iter_batched(
            || (envelope.clone(), accept.clone(), receipt.clone()),
            |(envelope, accept, receipt)| {
                let commands = [
                    Command::HandOff(command::HandOff {
                        peer: "ops-1".to_owned(),
                        envelope,
                        now: AT,
                    }),
                    Command::Answer(command::Answer {
                        id: offer.id,
                        envelope: accept,
                        now: AT,
                    }),
                    Command::Receipt(command::Receipt {
                        peer: "ops-1".to_owned(),
                        envelope: receipt,
                        given: None,
                        held: false,
                        now: AT,
                    }),
                ];
                for command in commands {
                    machine.handle(command);
                    machine.drain_actions().for_each(drop);
                }
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn simulator(c: &mut Criterion) {
    let ottofile = "pipeline {\n  name = 'bench'\n  stages {\n    stage { name = 'S0' steps { sh 'a' } }\n    stage { name = 'S1' owner = 'ops' steps { sh 'b' } }\n    stage { name = 'S2' owner = 'qa' steps { sh 'c' } }\n    stage { name = 'S3' steps { sh 'd' } }\n  }\n}\n";
    let mut group = c.benchmark_group("sim");
    group.throughput(Throughput::Elements(3));
    group.sample_size(20);
    group.bench_function("handoff", |b| {
        b.iter_batched(
            || {
                let mut sim = Sim::new(SimConfig {
                    orgs: vec!["dev".into(), "ops".into(), "qa".into()],
                    ..SimConfig::default()
                });
                sim.start_run("dev-1", ottofile).unwrap();
                sim
            },
            |mut sim| {
                sim.run_until(Sim::all_finished, 10_000).unwrap();
                sim
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, receiver, sender, simulator);
criterion_main!(benches);
