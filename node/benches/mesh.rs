//! What the mesh costs on loopback: the round trip of a signed offer over `/otto/handoff/1`
//! (TCP, Noise, Yamux) answered at once by a trusted peer, and the throughput of an
//! artifact fetched over `/otto/artifact/1` (chunked, hashed, written to a file) against a
//! plain TCP copy of the same bytes into a file in the same run.
//!
//! It also times what a receiving node does before it answers (the exchange's
//! `PersistInbox`): the offer and its signed accept written to the store in one
//! transaction, then the answer, sequentially per node as the exchange does, one by one
//! (p50/p99 over 1,000 offers) and with 64 offers in flight (offers per second).
//!
//! `cargo bench -p otto-node --bench mesh`. `OTTO_BENCH_ARTIFACT_MIB` sets the artifact
//! size (default 64). After criterion's numbers the bench prints the offer round trip's
//! p50 and p99 over 1,000 offers, and the median throughput of both transfers over a few
//! runs with their ratio.

#[path = "../tests/it/mesh_support/mod.rs"]
mod mesh_support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt as _;
use mesh_support::{TestNode, Transport, bytes, digest, sign, spawn, trust_each_other};
use otto_node::mesh::Event;
use otto_node::store::{InboxState, Store};
use otto_protocol::{Accept, Digest, Envelope, HandoffId, Message, Offer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Offers timed for the latency percentiles.
const LATENCY_OFFERS: usize = 1_000;

/// Offers sent for the throughput with 64 in flight.
const THROUGHPUT_OFFERS: usize = 2_000;

/// Offers in flight at once for the throughput.
const IN_FLIGHT: usize = 64;

/// Transfers timed for the throughput comparison.
const TRANSFER_RUNS: usize = 5;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(store_dir.path().join("store.redb")).expect("store");
    let (a, b, artifact) = rt.block_on(setup(store));
    let offer = sign(&a.key, &Message::Offer(mesh_support::offer()));
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("artifact");
    let plain = rt.block_on(plain_server(Arc::clone(&artifact)));

    let mut group = c.benchmark_group("mesh");
    group.bench_function("offer_round_trip_tcp", |bench| {
        bench.iter(|| rt.block_on(round_trip(&a, &b, &offer)));
    });
    group.throughput(Throughput::Bytes(artifact.len() as u64));
    group.sample_size(10);
    let sha256 = digest(&artifact);
    group.bench_function("artifact_otto", |bench| {
        bench.iter(|| rt.block_on(fetch(&a, &b, sha256, &dest)));
    });
    group.bench_function("artifact_plain_tcp", |bench| {
        bench.iter(|| rt.block_on(plain_copy(plain, &dest)));
    });
    group.finish();

    let mut latencies: Vec<Duration> = (0..LATENCY_OFFERS)
        .map(|_| {
            let start = Instant::now();
            rt.block_on(round_trip(&a, &b, &offer));
            start.elapsed()
        })
        .collect();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    eprintln!(
        "offer round trip over {LATENCY_OFFERS} offers: p50 {:?}, p99 {:?}",
        at(0.50),
        at(0.99)
    );

    let durable_offers: Vec<Envelope> = (0..LATENCY_OFFERS + THROUGHPUT_OFFERS)
        .map(|n| {
            let mut offer = mesh_support::offer();
            offer.id = HandoffId(distinct_id(n));
            sign(&a.key, &Message::Offer(offer))
        })
        .collect();
    let (one_by_one, in_flight) = durable_offers.split_at(LATENCY_OFFERS);
    let mut durable: Vec<Duration> = one_by_one
        .iter()
        .map(|offer| timed(|| rt.block_on(round_trip(&a, &b, offer))))
        .collect();
    durable.sort();
    let dat = |q: f64| durable[((durable.len() as f64 * q) as usize).min(durable.len() - 1)];
    eprintln!(
        "offer answered after a durable inbox write, over {LATENCY_OFFERS} offers: p50 {:?}, p99 {:?} (plain round trip p50 {:?}: the write costs {:.1}x)",
        dat(0.50),
        dat(0.99),
        at(0.50),
        dat(0.50).as_secs_f64() / at(0.50).as_secs_f64()
    );
    let start = Instant::now();
    rt.block_on(async {
        futures::stream::iter(in_flight.iter())
            .map(|offer| round_trip(&a, &b, offer))
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<()>>()
            .await
    });
    let rate = THROUGHPUT_OFFERS as f64 / start.elapsed().as_secs_f64();
    eprintln!(
        "durable offers with {IN_FLIGHT} in flight: {rate:.0} per second over {THROUGHPUT_OFFERS}"
    );

    let mib = artifact.len() as f64 / (1024.0 * 1024.0);
    let median = |mut runs: Vec<Duration>| {
        runs.sort();
        mib / runs[runs.len() / 2].as_secs_f64()
    };
    let otto = median(
        (0..TRANSFER_RUNS)
            .map(|_| timed(|| rt.block_on(fetch(&a, &b, sha256, &dest))))
            .collect(),
    );
    let tcp = median(
        (0..TRANSFER_RUNS)
            .map(|_| timed(|| rt.block_on(plain_copy(plain, &dest))))
            .collect(),
    );
    eprintln!(
        "artifact of {mib:.0} MiB: /otto/artifact/1 {otto:.0} MiB/s, plain TCP {tcp:.0} MiB/s, ratio {:.0}%",
        otto / tcp * 100.0
    );
}

/// Two trusted nodes over TCP; `b` serves the artifact and answers every offer with an
/// accept, after writing it and the accept to `store` when its id is not the vector's.
async fn setup(store: Store) -> (TestNode, TestNode, Arc<Vec<u8>>) {
    let mut a = spawn(1, Transport::Tcp).await;
    let mut b = spawn(2, Transport::Tcp).await;
    trust_each_other(&a, &b);
    a.connect(&mut b).await;
    let mib: usize = std::env::var("OTTO_BENCH_ARTIFACT_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let artifact = Arc::new(bytes(mib * 1024 * 1024, 5));
    b.source.insert(digest(&artifact), artifact.to_vec());
    let plain_id = mesh_support::offer().id;
    let accept = sign(
        &b.key,
        &Message::Accept(Accept {
            id: plain_id,
            stage: "deploy".to_owned(),
            attempt: 1,
        }),
    );
    let mut events = std::mem::replace(&mut b.events, tokio::sync::mpsc::channel(1).1);
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let Event::Offer {
                envelope, reply, ..
            } = event
            else {
                continue;
            };
            let id = envelope.peek().payload_as::<Offer>().map(|o| o.id).ok();
            if let Some(id) = id.filter(|id| *id != plain_id) {
                let offer = otto_protocol::encode_envelope(envelope.peek());
                let answer = otto_protocol::encode_envelope(&accept);
                let store = store.clone();
                tokio::task::spawn_blocking(move || {
                    store.inbox_put_answered(&id.0, &offer, 1, &answer, InboxState::Accepted, 1)
                })
                .await
                .expect("joins")
                .expect("stored");
            }
            let _ = reply.send(accept.clone()).await;
        }
    });
    (a, b, artifact)
}

/// A handoff id of its own for offer `n`.
fn distinct_id(n: usize) -> [u8; 16] {
    let mut id = [0xee; 16];
    id[..8].copy_from_slice(&(n as u64).to_be_bytes());
    id
}

async fn round_trip(a: &TestNode, b: &TestNode, offer: &Envelope) {
    a.client
        .send_offer(b.peer(), offer.clone())
        .await
        .expect("answered");
}

async fn fetch(a: &TestNode, b: &TestNode, sha256: Digest, dest: &Path) {
    a.client
        .fetch_artifact(b.peer(), sha256, dest, 0)
        .await
        .expect("fetched");
}

/// A plain TCP server that writes the artifact to every connection and closes it.
async fn plain_server(artifact: Arc<Vec<u8>>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let artifact = Arc::clone(&artifact);
            tokio::spawn(async move {
                let _ = socket.write_all(&artifact).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    addr
}

/// Copies the artifact from the plain server into the file at `dest`.
async fn plain_copy(addr: std::net::SocketAddr, dest: &Path) {
    let mut socket = TcpStream::connect(addr).await.expect("connects");
    let mut file = tokio::fs::File::create(dest).await.expect("file");
    // Writes in pieces of up to 1 MiB, as the artifact fetch writes its chunks (tokio's
    // `copy` would write 8 KiB at a time, each a trip to the blocking pool).
    let mut buf = vec![0; 1024 * 1024];
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match socket.read(&mut buf[filled..]).await.expect("reads") {
                0 => break,
                n => filled += n,
            }
        }
        if filled == 0 {
            break;
        }
        file.write_all(&buf[..filled]).await.expect("written");
    }
    file.flush().await.expect("flushed");
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

criterion_group!(benches, bench);
criterion_main!(benches);
