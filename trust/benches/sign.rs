//! Envelope signing and verification throughput on one core, against raw Ed25519 as the
//! baseline, and a 1,000-envelope receipt chain verified one by one and in a batch.
//!
//! Run: `cargo bench -p otto-trust -- --warm-up-time 1 --measurement-time 3`. Compare
//! `envelope/verify` with `raw/verify_strict` (same bytes): the envelope layer should keep
//! at least 80% of the raw rate.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::Signer as _;
use otto_protocol::Envelope;
use otto_trust::dsse::{self, Unverified};
use otto_trust::{NodeKey, PublicKey};

const TYPE: &str = "application/vnd.otto.receipt+cbor";
/// About the size of a receipt.
const PAYLOAD_LEN: usize = 400;
const CHAIN: usize = 1000;

fn payload(i: usize) -> Vec<u8> {
    (0..PAYLOAD_LEN).map(|j| (i * 31 + j * 7) as u8).collect()
}

fn seed(i: usize) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
    s
}

fn single(c: &mut Criterion) {
    let key = NodeKey::from_seed(&seed(0));
    let public = key.public_key();
    let env = dsse::sign(TYPE, payload(0), &key).unwrap();

    let raw_key = ed25519_dalek::SigningKey::from_bytes(&seed(0));
    let raw_public = raw_key.verifying_key();
    let message = dsse::pae(TYPE, &payload(0));
    let raw_sig = raw_key.sign(&message);

    let mut group = c.benchmark_group("envelope");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sign", |b| {
        b.iter_batched(
            || payload(0),
            |p| dsse::sign(TYPE, p, &key).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("verify", |b| {
        b.iter_batched(
            || Unverified::new(env.clone()),
            |u| u.verify(&public).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("raw");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sign", |b| b.iter(|| raw_key.sign(black_box(&message))));
    group.bench_function("verify_strict", |b| {
        b.iter(|| {
            raw_public
                .verify_strict(black_box(&message), black_box(&raw_sig))
                .unwrap()
        })
    });
    group.finish();
}

fn chain(c: &mut Criterion) {
    let keys: Vec<NodeKey> = (0..CHAIN)
        .map(|i| NodeKey::from_seed(&seed(i % 8)))
        .collect();
    let envelopes: Vec<(Envelope, PublicKey)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (dsse::sign(TYPE, payload(i), k).unwrap(), k.public_key()))
        .collect();
    let raw: Vec<(
        Vec<u8>,
        ed25519_dalek::Signature,
        ed25519_dalek::VerifyingKey,
    )> = (0..CHAIN)
        .map(|i| {
            let k = ed25519_dalek::SigningKey::from_bytes(&seed(i % 8));
            let m = dsse::pae(TYPE, &payload(i));
            let s = k.sign(&m);
            (m, s, k.verifying_key())
        })
        .collect();
    let items = || -> Vec<(Unverified<Envelope>, PublicKey)> {
        envelopes
            .iter()
            .map(|(e, k)| (Unverified::new(e.clone()), *k))
            .collect()
    };

    let mut group = c.benchmark_group("chain_1000");
    group.throughput(Throughput::Elements(CHAIN as u64));
    group.sample_size(10);
    group.bench_function("raw_one_by_one", |b| {
        b.iter(|| {
            for (m, s, k) in &raw {
                k.verify_strict(m, s).unwrap();
            }
        })
    });
    group.bench_function("envelope_one_by_one", |b| {
        b.iter_batched(
            items,
            |items| {
                for (u, k) in items {
                    u.verify(&k).unwrap();
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("envelope_batch", |b| {
        b.iter_batched(
            items,
            |items| dsse::verify_batch(items).unwrap(),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, single, chain);
criterion_main!(benches);
