//! Shared helpers of the mesh tests: nodes on 127.0.0.1 with a test policy and an
//! in-memory artifact source, signed messages, and waits bounded by [`WAIT`].

#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, HashSet};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use otto_node::mesh::{
    self, ArtifactReader, ArtifactSource, Client, Event, Multiaddr, PeerId, PeerPolicy,
};
use otto_protocol::{Digest, Envelope, Kind, Message, Offer, StageState, Status};
use otto_trust::{NodeKey, PublicKey, Unverified, Verified};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The longest any test waits for anything.
pub const WAIT: Duration = Duration::from_secs(10);

/// The transport a node listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Quic,
}

/// A running mesh node.
pub struct TestNode {
    pub key: NodeKey,
    pub client: Client,
    pub events: mpsc::Receiver<Event>,
    pub policy: Arc<TestPolicy>,
    pub source: Arc<MemSource>,
    pub addr: Multiaddr,
    task: JoinHandle<()>,
}

/// A policy that allows the peers it is told to, and verifies status events with the keys
/// it is given.
#[derive(Default)]
pub struct TestPolicy {
    allowed: Mutex<HashSet<PeerId>>,
    keys: Mutex<HashMap<PeerId, PublicKey>>,
}

/// Artifacts held in memory. A cut makes every transfer break off after that many bytes,
/// like a provider that crashes mid-transfer.
#[derive(Default)]
pub struct MemSource {
    blobs: Mutex<HashMap<Digest, Arc<Vec<u8>>>>,
    cut: Mutex<Option<usize>>,
    offsets: Mutex<Vec<u64>>,
}

/// The test configuration: production limits, short intervals.
pub fn config() -> mesh::Config {
    mesh::Config {
        request_timeout: WAIT,
        ping_interval: Duration::from_millis(200),
        gossip_heartbeat: Duration::from_millis(100),
        artifact_idle_timeout: WAIT,
        ..mesh::Config::default()
    }
}

/// Starts a node with the key from `seed`, listening on 127.0.0.1.
pub async fn spawn(seed: u8, transport: Transport) -> TestNode {
    spawn_with(seed, transport, config()).await
}

/// Starts a node with the key from `seed` and `config`, listening on 127.0.0.1.
pub async fn spawn_with(seed: u8, transport: Transport, config: mesh::Config) -> TestNode {
    let key = NodeKey::from_seed(&[seed; 32]);
    let policy = Arc::new(TestPolicy::default());
    let source = Arc::new(MemSource::default());
    let (client, events, event_loop) = mesh::new(
        config,
        key.to_libp2p_keypair(),
        Arc::clone(&policy) as Arc<dyn PeerPolicy>,
        Arc::clone(&source) as Arc<dyn ArtifactSource>,
    )
    .expect("mesh builds");
    let task = tokio::spawn(event_loop.run());
    let listen: Multiaddr = match transport {
        Transport::Tcp => "/ip4/127.0.0.1/tcp/0",
        Transport::Quic => "/ip4/127.0.0.1/udp/0/quic-v1",
    }
    .parse()
    .expect("valid multiaddr");
    let addr = within(client.listen(listen)).await.expect("listens");
    TestNode {
        key,
        client,
        events,
        policy,
        source,
        addr,
        task,
    }
}

/// Makes `a` and `b` trust each other.
pub fn trust_each_other(a: &TestNode, b: &TestNode) {
    a.policy.allow(b.peer(), b.key.public_key());
    b.policy.allow(a.peer(), a.key.public_key());
}

/// Awaits `future`, failing the test after [`WAIT`].
pub async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .expect("finished within the bounded wait")
}

/// Waits for the first event that `pick` maps to `Some`, skipping the others.
pub async fn next_event<T>(
    events: &mut mpsc::Receiver<Event>,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> T {
    within(async {
        loop {
            let event = events.recv().await.expect("event channel open");
            if let Some(found) = pick(event) {
                return found;
            }
        }
    })
    .await
}

/// Signs `message` with `key` as an envelope.
pub fn sign(key: &NodeKey, message: &Message) -> Envelope {
    let payload = otto_protocol::encode(message);
    otto_trust::dsse::sign(message.payload_type(), payload, key).expect("signs")
}

/// A real offer: the first test vector of `protocol/vectors/offer.json`.
pub fn offer() -> Offer {
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("../../../../protocol/vectors/offer.json"))
            .expect("vectors are json");
    let hex = vectors[0]["cbor_hex"].as_str().expect("cbor_hex");
    let bytes = hex::decode(hex).expect("hex");
    match otto_protocol::decode("offer", &bytes).expect("the vector decodes") {
        Message::Offer(offer) => offer,
        other => panic!("not an offer: {other:?}"),
    }
}

/// A status event of `run`, number `seq`.
pub fn status(run: &str, seq: u64) -> Message {
    Message::Status(Status {
        run: run.to_owned(),
        stage: "deploy".to_owned(),
        attempt: 1,
        seq,
        state: StageState::Running,
        at: 1_700_000_000 + seq,
        detail: Some(format!("event {seq}")),
        log: vec![format!("line {seq}")],
        log_seq: Some(seq + 1),
        at_ms: None,
    })
}

/// Deterministic pseudo-random bytes (xorshift), so artifacts are not all zeros.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The sha256 of `bytes`.
pub fn digest(bytes: &[u8]) -> Digest {
    Digest(Sha256::digest(bytes).into())
}

/// Checks that an answer is an envelope of `kind` signed by `key`, and decodes it.
pub fn open_answer(answer: Unverified<Envelope>, key: &PublicKey, kind: Kind) -> Message {
    let verified = answer
        .verify(key)
        .expect("the answer is signed by the peer");
    assert_eq!(verified.payload_type(), kind.payload_type());
    verified.get().message().expect("the answer decodes")
}

impl TestNode {
    /// The node's peer id.
    pub fn peer(&self) -> PeerId {
        self.client.local_peer_id()
    }

    /// Connects to `other` and waits until both sides see the connection.
    pub async fn connect(&mut self, other: &mut Self) {
        let peer = other.peer();
        within(self.client.dial(peer, vec![other.addr.clone()]))
            .await
            .expect("dials");
        let me = self.peer();
        next_event(&mut other.events, |event| match event {
            Event::Connected { peer, .. } if peer == me => Some(()),
            _ => None,
        })
        .await;
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestPolicy {
    /// Allows `peer`, whose status events verify with `key`.
    pub fn allow(&self, peer: PeerId, key: PublicKey) {
        self.allowed.lock().unwrap().insert(peer);
        self.keys.lock().unwrap().insert(peer, key);
    }

    /// Knows the key of `peer` (to verify its status events) without allowing it.
    pub fn know(&self, peer: PeerId, key: PublicKey) {
        self.keys.lock().unwrap().insert(peer, key);
    }
}

impl PeerPolicy for TestPolicy {
    fn allowed(&self, peer: &PeerId) -> bool {
        self.allowed.lock().unwrap().contains(peer)
    }

    fn verify_status(
        &self,
        author: &PeerId,
        envelope: Unverified<Envelope>,
    ) -> Option<Verified<Envelope>> {
        let key = *self.keys.lock().unwrap().get(author)?;
        envelope.verify(&key).ok()
    }
}

impl MemSource {
    /// Holds `bytes` under `sha256` (which a corrupted source makes wrong on purpose).
    pub fn insert(&self, sha256: Digest, bytes: Vec<u8>) {
        self.blobs.lock().unwrap().insert(sha256, Arc::new(bytes));
    }

    /// Breaks every transfer off after `cut` bytes, or never with `None`.
    pub fn set_cut(&self, cut: Option<usize>) {
        *self.cut.lock().unwrap() = cut;
    }

    /// The offsets of the requests served so far.
    pub fn offsets(&self) -> Vec<u64> {
        self.offsets.lock().unwrap().clone()
    }
}

impl ArtifactSource for MemSource {
    fn open(&self, sha256: &Digest, offset: u64) -> io::Result<Option<ArtifactReader>> {
        self.offsets.lock().unwrap().push(offset);
        let Some(bytes) = self.blobs.lock().unwrap().get(sha256).cloned() else {
            return Ok(None);
        };
        let size = bytes.len() as u64;
        let pos = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let end = match *self.cut.lock().unwrap() {
            Some(cut) => cut.clamp(pos, bytes.len()),
            None => bytes.len(),
        };
        Ok(Some(ArtifactReader {
            size,
            reader: Box::pin(SliceReader { bytes, pos, end }),
        }))
    }
}

/// Reads `bytes[pos..end]` without copying the artifact first.
struct SliceReader {
    bytes: Arc<Vec<u8>>,
    pos: usize,
    end: usize,
}

impl AsyncRead for SliceReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = buf.remaining().min(self.end - self.pos);
        let start = self.pos;
        buf.put_slice(&self.bytes[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}
