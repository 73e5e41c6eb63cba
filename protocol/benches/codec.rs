//! Encode and decode of a typical offer: a plan of 50 stages (canonical JSON bytes) and a
//! chain of 10 signed receipts. Prints the encoded sizes and the ratio against the same
//! message in its JSON form.
//!
//! `cargo bench -p otto-protocol -- --warm-up-time 1 --measurement-time 3`

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use otto_protocol::{
    Envelope, Message, Offer, decode_envelope, decode_payload, encode_envelope, encode_payload,
};

fn typical_offer() -> Offer {
    let plan = common::plan_json(50);
    let chain = common::receipt_chain(&plan, 10);
    common::offer(plan, chain)
}

fn codec(c: &mut Criterion) {
    let offer = typical_offer();
    let cbor = encode_payload(&offer);
    let json = serde_json::to_vec(&Message::from(offer.clone()).to_json()).unwrap_or_default();
    let envelope = common::signed(offer.clone().into(), common::key(common::DEV_NODE));
    let envelope_bytes = encode_envelope(&envelope);
    println!(
        "offer (plan {} B, 10 receipts): cbor {} B, json {} B, cbor/json {:.3}; \
         signed envelope {} B, as DSSE JSON {} B",
        offer.plan.len(),
        cbor.len(),
        json.len(),
        cbor.len() as f64 / json.len() as f64,
        envelope_bytes.len(),
        envelope.to_json().len(),
    );

    let mut group = c.benchmark_group("offer");
    group.throughput(Throughput::Bytes(cbor.len() as u64));
    group.bench_function("encode", |b| b.iter(|| encode_payload(black_box(&offer))));
    group.bench_function("decode", |b| {
        b.iter(|| decode_payload::<Offer>(black_box(&cbor)))
    });
    group.bench_function("json_encode", |b| {
        b.iter(|| serde_json::to_vec(black_box(&offer)))
    });
    group.bench_function("json_decode", |b| {
        b.iter(|| serde_json::from_slice::<Offer>(black_box(&json)))
    });
    group.finish();

    let mut group = c.benchmark_group("offer_envelope");
    group.throughput(Throughput::Bytes(envelope_bytes.len() as u64));
    group.bench_function("encode", |b| {
        b.iter(|| encode_envelope(black_box(&envelope)))
    });
    group.bench_function("decode_and_open", |b| {
        b.iter(|| decode_envelope(black_box(&envelope_bytes)).and_then(|e: Envelope| e.message()))
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
