//! Costs of the durable writes the node makes: one state transition, a received offer
//! (alone and in a batch of 64), a batch of log lines, and a 1 MiB blob. Each write is
//! flushed to disk before it returns, so these numbers are mostly the file system's
//! `fsync`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use otto_node::blobs::{BlobStore, Digest};
use otto_node::store::{NewLine, NewRun, NewStage, RunId, Source, StageState, Store, Stream};

fn bench_store(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open(dir.path().join("store.redb")).expect("store opens");
    let run = RunId::new(1, [1; 10]);
    store
        .create_run(NewRun {
            id: run,
            pipeline: "bench".into(),
            plan: b"{}".to_vec(),
            source: Source::Snapshot {
                digest: Digest::of(b"src"),
            },
            facts: Default::default(),
            created_at: 1,
            started_by: "bench".into(),
            stages: vec![NewStage {
                id: "Build".into(),
                state: StageState::Pending,
            }],
        })
        .expect("run recorded");

    let mut group = c.benchmark_group("store");
    let mut n = 0u64;
    group.bench_function("set_stage_state", |b| {
        b.iter(|| {
            n += 1;
            store
                .set_stage_state(&run, "Build", StageState::Pending, None, n)
                .expect("state set")
        })
    });

    let mut next_id = 0u128;
    let mut id = || {
        next_id += 1;
        next_id.to_be_bytes()
    };
    let offer = vec![0u8; 2_000];
    group.throughput(Throughput::Elements(1));
    group.bench_function("inbox_put", |b| {
        b.iter(|| store.inbox_put(&id(), &offer, 0).expect("offer stored"))
    });
    group.throughput(Throughput::Elements(64));
    group.bench_function("inbox_put_many_64", |b| {
        b.iter(|| {
            let batch: Vec<_> = (0..64).map(|_| (id(), offer.as_slice())).collect();
            store.inbox_put_many(&batch, 0).expect("offers stored")
        })
    });

    let lines: Vec<_> = (0..100)
        .map(|i| NewLine {
            time: i,
            stream: Stream::Stdout,
            step: Some(0),
            text: format!("compiling crate number {i} of the workspace"),
        })
        .collect();
    group.throughput(Throughput::Elements(100));
    let logs =
        otto_node::store::Logs::open(dir.path().join("logs"), u64::MAX / 8).expect("logs open");
    group.bench_function("append_log_lines_100", |b| {
        b.iter(|| {
            logs.append(&run, "Build", 1, black_box(&lines))
                .expect("lines stored")
        })
    });
    group.finish();

    let blobs = BlobStore::open(dir.path().join("blobs")).expect("blob store opens");
    let mut group = c.benchmark_group("blobs");
    let mut bytes = vec![0u8; 1 << 20];
    let mut k = 0u64;
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("put_1MiB", |b| {
        b.iter(|| {
            k += 1;
            bytes[..8].copy_from_slice(&k.to_be_bytes());
            blobs.put_bytes(&bytes).expect("blob stored")
        })
    });
    group.finish();
}

criterion_group!(benches, bench_store);
criterion_main!(benches);
