//! The mesh: the node's libp2p swarm and the Otto protocols on it.
//!
//! An Otto node speaks the standard libp2p protocols, so any libp2p implementation can
//! connect, identify and ping it, and three Otto protocols:
//!
//! | protocol | what | shape |
//! |---|---|---|
//! | `/ipfs/id/1.0.0`, `/ipfs/ping/1.0.0` | identify, ping | standard, open to every peer |
//! | [`HANDOFF_PROTOCOL`] `/otto/handoff/1` | offers, receipts, join requests, revocation lists and log requests, each answered by one envelope | request-response (`codec.rs`) |
//! | [`ARTIFACT_PROTOCOL`] `/otto/artifact/1` | artifact bytes, chunked and resumable | one stream per fetch (`artifact.rs`) |
//! | gossipsub `otto/run/<run>/status` | signed status events of a run | gossip (`gossip.rs`) |
//!
//! Transports are TCP (with Noise and Yamux) and QUIC. `docs/mesh.md` describes the
//! protocols, limits and gating for operators and other implementations.
//!
//! # Shape
//!
//! [`new`] returns three parts:
//!
//! - a [`Client`], cloneable, whose async methods send a command to the event loop over a
//!   bounded channel and wait for its answer on a oneshot channel;
//! - a bounded receiver of [`Event`]s: incoming offers, receipts, join requests and
//!   revocation lists (each with a [`ResponseHandle`] to answer it later), verified status
//!   events, connections;
//! - the [`EventLoop`], which the caller spawns: it owns the swarm and `select!`s over it and
//!   the commands, keeping the requests in flight in maps keyed by request id.
//!
//! The event loop never waits for the node: when the event channel is full, an incoming
//! request is answered with an `internal` reject ("busy") and a status event is dropped
//! (its `seq` lets receivers notice the gap).
//!
//! # Gating
//!
//! A [`PeerPolicy`] says which peers may use the Otto protocols (trusted peers, and peers
//! with an invite in hand). Every peer may identify and ping. A peer the policy does not
//! allow gets a signed `unknown_org` reject to its offers, receipts and revocation lists, a
//! closed stream to its artifact requests, and is shut out of gossip; only its join requests
//! reach the node, which checks the invite they carry.
//!
//! A node started by `otto-testnet` (with `--testnet-control`) may also be told to block
//! peers outright ([`Client::set_blocked`]): no connection with them either way, as a
//! network partition would do. Nothing else sets the block list.

mod artifact;
mod behaviour;
mod codec;
mod gossip;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use libp2p::core::ConnectedPoint;
use libp2p::gossipsub::{self, MessageAcceptance};
use libp2p::request_response::{
    self, InboundRequestId, OutboundFailure, OutboundRequestId, ResponseChannel,
};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, SwarmEvent};
use libp2p::{StreamProtocol, Swarm, identify, ping};
use otto_protocol::{
    DecodeError, Digest, Envelope, HandoffId, Kind, Message, Offer, Reject, RejectCode,
};
use otto_trust::{PublicKey, SignError, Signer, Unverified, Verified};
use tokio::sync::{mpsc, oneshot};

pub use artifact::{ArtifactReader, ArtifactSource, Fetched, MAX_FRAME_BYTES};
pub use codec::{MAX_ANSWER_BYTES, MAX_REQUEST_BYTES};
pub use gossip::{MAX_GOSSIP_BYTES, run_of_topic, status_topic};
pub use libp2p::identity::Keypair;
pub use libp2p::{Multiaddr, PeerId};

use behaviour::{Behaviour, BehaviourEvent};
use codec::HandoffRequest;

/// The request-response protocol that carries offers, receipts, join requests and
/// revocation lists.
pub const HANDOFF_PROTOCOL: &str = "/otto/handoff/1";

/// The stream protocol that carries artifact bytes.
pub const ARTIFACT_PROTOCOL: &str = "/otto/artifact/1";

/// The protocol version an Otto node announces in identify.
pub const IDENTIFY_PROTOCOL_VERSION: &str = "/otto/1";

/// How often the event loop prunes answers nobody waits for any more and re-applies the
/// peer policy to connected peers.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The tunable limits and timeouts of the mesh. [`Config::default`] suits a node; tests
/// shorten the intervals.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long a request on `/otto/handoff/1` may take, on both sides: the requester's
    /// wait for the answer, and the time the node has to answer an incoming request.
    pub request_timeout: Duration,
    /// How long a connection with no stream in use stays open.
    pub idle_connection_timeout: Duration,
    /// How often each connection is pinged.
    pub ping_interval: Duration,
    /// The gossipsub heartbeat.
    pub gossip_heartbeat: Duration,
    /// The most established connections in total.
    pub max_connections: u32,
    /// The most established connections with one peer.
    pub max_connections_per_peer: u32,
    /// The most incoming connections still handshaking.
    pub max_pending_incoming: u32,
    /// The most streams open at once on one connection (Yamux).
    pub max_streams_per_connection: usize,
    /// The most `/otto/handoff/1` requests in flight on one connection, both directions.
    pub max_handoff_streams: usize,
    /// The most outgoing requests waiting for their answer.
    pub max_pending_requests: usize,
    /// The most incoming requests waiting for the node's answer.
    pub max_pending_answers: usize,
    /// The most artifact transfers served at once.
    pub max_artifact_streams: usize,
    /// Bytes of data in each artifact chunk this node serves (at most 1 MiB).
    pub artifact_chunk_size: usize,
    /// The longest wait for the next artifact frame, either side.
    pub artifact_idle_timeout: Duration,
    /// The largest artifact this node fetches.
    pub max_artifact_bytes: u64,
    /// The capacity of the command channel from the [`Client`]s.
    pub command_buffer: usize,
    /// The capacity of the [`Event`] channel to the node.
    pub event_buffer: usize,
}

/// Which peers may use the Otto protocols, and which status events are genuine. The node
/// implements it over its trust store.
pub trait PeerPolicy: Send + Sync + 'static {
    /// Whether `peer` may use the Otto protocols: it is a node of a trusted org and not
    /// revoked, or it is presenting an invite right now.
    fn allowed(&self, peer: &PeerId) -> bool;

    /// Checks the signature of a status event published by `author`, returning it
    /// verified, or `None` to reject the message (gossipsub then penalises the peer that
    /// forwarded it and does not forward it further).
    fn verify_status(
        &self,
        author: &PeerId,
        envelope: Unverified<Envelope>,
    ) -> Option<Verified<Envelope>>;

    /// Whether this node knows and allows `author`, so its status events can be judged. A
    /// message of any other author (another org's node, further along the run) is ignored,
    /// not rejected: the peer that forwarded it did nothing wrong. Every author by default.
    fn knows_author(&self, author: &PeerId) -> bool {
        let _ = author;
        true
    }
}

/// What the mesh tells the node.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A peer the policy allows offers a stage; answer with an accept or reject envelope
    /// through `reply` within [`Config::request_timeout`].
    Offer {
        /// The offering peer.
        peer: PeerId,
        /// The offer envelope, its signatures not yet checked.
        envelope: Unverified<Envelope>,
        /// Where the answer goes.
        reply: ResponseHandle,
    },
    /// A peer the policy allows delivers a receipt; acknowledge it through `reply`.
    Receipt {
        /// The peer that ran the stage.
        peer: PeerId,
        /// The receipt envelope, its signatures not yet checked.
        envelope: Unverified<Envelope>,
        /// Where the acknowledgement goes.
        reply: ResponseHandle,
    },
    /// A peer the policy allows asks this node, as the node that moves a stage on, to run
    /// it again for the run's origin (a signed [`otto_protocol::Retry`]); answer with an
    /// accept or reject envelope through `reply`.
    Retry {
        /// The asking peer.
        peer: PeerId,
        /// The retry envelope, its signature not yet checked.
        envelope: Unverified<Envelope>,
        /// Where the answer goes.
        reply: ResponseHandle,
    },
    /// A peer presents an invite to join; answer with a join response through `reply`.
    /// Join requests reach the node whatever the policy says: the invite they carry is
    /// what the node checks.
    Join {
        /// The joining peer.
        peer: PeerId,
        /// The join request envelope, its signatures not yet checked.
        envelope: Unverified<Envelope>,
        /// Where the join response goes.
        reply: ResponseHandle,
    },
    /// A peer the policy allows delivers an org's revocation list; acknowledge it through
    /// `reply` with an `accept` (all-zero id) or refuse it with a `reject`.
    Revocation {
        /// The delivering peer (not necessarily of the org that signed the list).
        peer: PeerId,
        /// The revocation list envelope, its signature (by the org key) not yet checked.
        envelope: Unverified<Envelope>,
        /// Where the answer goes.
        reply: ResponseHandle,
    },
    /// A peer the policy allows asks for lines of a stage's log; answer with the
    /// `log_lines` (or a `reject`) through `reply`.
    LogRequest {
        /// The asking peer.
        peer: PeerId,
        /// The log request envelope, its signatures not yet checked.
        envelope: Unverified<Envelope>,
        /// Where the answer goes.
        reply: ResponseHandle,
    },
    /// A status event of a run this node subscribed to, verified by
    /// [`PeerPolicy::verify_status`].
    Status {
        /// The run, from the topic (and the same as the status's own `run`).
        run: String,
        /// The node that published the event.
        author: PeerId,
        /// The status envelope, verified.
        envelope: Verified<Envelope>,
    },
    /// A peer the policy allows subscribed to the status topic of a run.
    Subscribed {
        /// The peer.
        peer: PeerId,
        /// The run.
        run: String,
    },
    /// The first connection with a peer is established.
    Connected {
        /// The peer.
        peer: PeerId,
        /// The peer's address on that connection.
        address: Multiaddr,
    },
    /// The last connection with a peer is closed.
    Disconnected {
        /// The peer.
        peer: PeerId,
    },
}

/// The way back to a peer waiting for the answer to its request. Answer at most once;
/// dropping it leaves the request to time out on the peer's side.
#[derive(Debug)]
pub struct ResponseHandle {
    peer: PeerId,
    id: InboundRequestId,
    commands: mpsc::Sender<Command>,
}

/// What the mesh knows about a connected peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer.
    pub peer: PeerId,
    /// The remote address of each open connection.
    pub addresses: Vec<Multiaddr>,
    /// Whether the policy allowed the peer when last asked.
    pub allowed: bool,
    /// The agent the peer announced in identify, e.g. `otto-node/0.1.0`.
    pub agent_version: Option<String>,
    /// The protocol version the peer announced in identify, e.g. `/otto/1`.
    pub protocol_version: Option<String>,
    /// The protocols the peer announced in identify.
    pub protocols: Vec<String>,
    /// The latest ping round-trip time.
    pub rtt: Option<Duration>,
}

/// Why a mesh operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeshError {
    /// The event loop has stopped.
    #[error("the mesh has shut down")]
    Shutdown,
    /// The swarm could not be built.
    #[error("cannot set up the mesh: {0}")]
    Setup(String),
    /// Listening on an address failed.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// No connection to a peer could be made.
    #[error("cannot reach {peer}: {reason}")]
    Dial {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// A peer did not answer in time.
    #[error("{peer} did not answer in time")]
    Timeout {
        /// The peer.
        peer: PeerId,
    },
    /// The connection closed before the peer answered.
    #[error("the connection to {peer} closed before it answered")]
    ConnectionClosed {
        /// The peer.
        peer: PeerId,
    },
    /// The peer does not speak the protocol.
    #[error("{peer} does not speak {protocol}")]
    Unsupported {
        /// The peer.
        peer: PeerId,
        /// The protocol id.
        protocol: &'static str,
    },
    /// A stream with the peer failed, or its answer was not a valid envelope.
    #[error("stream with {peer} failed: {reason}")]
    Stream {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// The envelope is not of a kind this operation sends.
    #[error("expected a {expected} envelope, got {got}")]
    WrongKind {
        /// What the operation sends.
        expected: String,
        /// The envelope's payload type.
        got: String,
    },
    /// The message is not valid as it stands, e.g. over its size limit.
    #[error("invalid message: {0}")]
    Invalid(#[from] DecodeError),
    /// Too many requests are waiting for answers already.
    #[error("too many requests in flight")]
    Busy,
    /// The request this answer is for is no longer waiting (answered, timed out or its
    /// connection closed).
    #[error("the request is no longer waiting for an answer")]
    AnswerExpired,
    /// No peer is subscribed to the run's status topic yet.
    #[error("no peer is subscribed to the status of this run")]
    NoSubscribers,
    /// Gossipsub refused the operation.
    #[error("gossip: {0}")]
    Gossip(String),
    /// Signing a reject with the node key failed.
    #[error("cannot sign: {0}")]
    Sign(#[from] SignError),
    /// The peer closed the artifact stream without sending a chunk: it does not hold the
    /// artifact, does not allow this node, or is busy.
    #[error("{peer} did not serve artifact {}", sha256.to_hex())]
    ArtifactUnavailable {
        /// The peer.
        peer: PeerId,
        /// The artifact's digest.
        sha256: Digest,
    },
    /// The transfer broke off; the file holds the bytes received and a fetch can resume
    /// from `received`.
    #[error("artifact transfer from {peer} broke off after {received} of {total} bytes")]
    Incomplete {
        /// The peer.
        peer: PeerId,
        /// Bytes in the file now.
        received: u64,
        /// The artifact's size.
        total: u64,
    },
    /// The peer sent a chunk that does not fit the fetch.
    #[error("bad artifact chunk from {peer}: {reason}")]
    BadChunk {
        /// The peer.
        peer: PeerId,
        /// What was wrong.
        reason: String,
    },
    /// The artifact's bytes do not hash to the requested digest; the file was removed.
    #[error("artifact digest mismatch: expected {}, got {}", expected.to_hex(), actual.to_hex())]
    DigestMismatch {
        /// The requested digest.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// The file to resume holds fewer bytes than the offset to resume from.
    #[error("cannot resume at byte {resume_from}: the file holds {have} bytes")]
    ResumeBeyondFile {
        /// The file's length.
        have: u64,
        /// The requested offset.
        resume_from: u64,
    },
    /// Reading or writing the artifact file failed.
    #[error("artifact file: {0}")]
    Io(#[from] std::io::Error),
}

/// Builds the mesh of the node with `keypair` (an Ed25519 key: the node key).
///
/// Spawn the [`EventLoop`]'s [`run`](EventLoop::run), use the [`Client`], and read the
/// events; the loop stops on [`Client::shutdown`] or when every client is dropped.
pub fn new(
    config: Config,
    keypair: Keypair,
    policy: Arc<dyn PeerPolicy>,
    artifacts: Arc<dyn ArtifactSource>,
) -> Result<(Client, mpsc::Receiver<Event>, EventLoop), MeshError> {
    let signer = NodeSigner::new(keypair.clone())?;
    let swarm = behaviour::swarm(&config, keypair)?;
    let mut control = swarm.behaviour().artifact.new_control();
    let incoming = control
        .accept(StreamProtocol::new(ARTIFACT_PROTOCOL))
        .map_err(|err| MeshError::Setup(err.to_string()))?;
    let (command_tx, command_rx) = mpsc::channel(config.command_buffer.max(1));
    let (event_tx, event_rx) = mpsc::channel(config.event_buffer.max(1));
    let limits = artifact::Limits {
        chunk_size: config.artifact_chunk_size,
        idle_timeout: config.artifact_idle_timeout,
        max_size: config.max_artifact_bytes,
        max_streams: config.max_artifact_streams,
    };
    let client = Client {
        peer_id: *swarm.local_peer_id(),
        commands: command_tx.clone(),
        control,
        limits,
    };
    let event_loop = EventLoop {
        swarm,
        commands: command_rx,
        handles: command_tx.downgrade(),
        events: event_tx,
        policy: Arc::clone(&policy),
        signer,
        config,
        server: Some((incoming, policy, artifacts, limits)),
        pending_listen: HashMap::new(),
        pending_dial: HashMap::new(),
        pending_requests: HashMap::new(),
        pending_answers: HashMap::new(),
        peers: HashMap::new(),
    };
    Ok((client, event_rx, event_loop))
}

/// The node's handle on the mesh. Cloning is cheap; every clone talks to the same
/// event loop.
#[derive(Clone)]
pub struct Client {
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    control: libp2p_stream::Control,
    limits: artifact::Limits,
}

/// The task that owns the swarm. Run it with [`EventLoop::run`].
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    /// Mints the senders of [`ResponseHandle`]s without keeping the channel open.
    handles: mpsc::WeakSender<Command>,
    events: mpsc::Sender<Event>,
    policy: Arc<dyn PeerPolicy>,
    signer: NodeSigner,
    config: Config,
    /// The artifact server, until `run` spawns it.
    server: Option<ArtifactServer>,
    pending_listen: HashMap<libp2p::core::transport::ListenerId, Reply<Multiaddr>>,
    pending_dial: HashMap<PeerId, Vec<Reply<()>>>,
    pending_requests: HashMap<OutboundRequestId, (PeerId, Reply<Unverified<Envelope>>)>,
    pending_answers: HashMap<InboundRequestId, ResponseChannel<Envelope>>,
    peers: HashMap<PeerId, PeerState>,
}

/// The parts the artifact server task needs.
type ArtifactServer = (
    libp2p_stream::IncomingStreams,
    Arc<dyn PeerPolicy>,
    Arc<dyn ArtifactSource>,
    artifact::Limits,
);

/// The oneshot sender of a command's answer.
type Reply<T> = oneshot::Sender<Result<T, MeshError>>;

/// A request from a [`Client`] to the event loop, with the channel for its answer.
#[derive(Debug)]
enum Command {
    Listen {
        addr: Multiaddr,
        reply: Reply<Multiaddr>,
    },
    Dial {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        reply: Reply<()>,
    },
    Request {
        peer: PeerId,
        kind: Kind,
        envelope: Envelope,
        reply: Reply<Unverified<Envelope>>,
    },
    Respond {
        id: InboundRequestId,
        envelope: Envelope,
        reply: Reply<()>,
    },
    Subscribe {
        run: String,
        reply: Reply<()>,
    },
    Unsubscribe {
        run: String,
        reply: Reply<()>,
    },
    Publish {
        run: String,
        envelope: Envelope,
        reply: Reply<()>,
    },
    Peers {
        reply: Reply<Vec<PeerInfo>>,
    },
    RefreshPolicy {
        reply: Reply<()>,
    },
    Disconnect {
        peer: PeerId,
        reply: Reply<()>,
    },
    SetBlocked {
        peers: Vec<PeerId>,
        reply: Reply<()>,
    },
    Shutdown {
        reply: Reply<()>,
    },
}

/// The event loop's record of a connected peer.
#[derive(Debug, Default)]
struct PeerState {
    connections: HashMap<ConnectionId, Multiaddr>,
    allowed: bool,
    agent_version: Option<String>,
    protocol_version: Option<String>,
    protocols: Vec<String>,
    rtt: Option<Duration>,
}

/// Signs the mesh's own rejects with the node key held by the swarm.
struct NodeSigner {
    keypair: Keypair,
    public: PublicKey,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            idle_connection_timeout: Duration::from_secs(60),
            ping_interval: Duration::from_secs(15),
            gossip_heartbeat: Duration::from_secs(1),
            max_connections: 256,
            max_connections_per_peer: 4,
            max_pending_incoming: 64,
            max_streams_per_connection: 256,
            max_handoff_streams: 64,
            max_pending_requests: 1024,
            max_pending_answers: 1024,
            max_artifact_streams: 16,
            artifact_chunk_size: otto_protocol::limits::MAX_ARTIFACT_CHUNK_DATA,
            artifact_idle_timeout: Duration::from_secs(30),
            max_artifact_bytes: 64 << 30,
            command_buffer: 64,
            event_buffer: 256,
        }
    }
}

impl ResponseHandle {
    /// The peer waiting for the answer.
    pub fn peer(&self) -> &PeerId {
        &self.peer
    }

    /// Sends the answer: an accept or reject envelope for an offer or receipt, a join
    /// response for a join request.
    pub async fn send(self, answer: Envelope) -> Result<(), MeshError> {
        let (reply, rx) = oneshot::channel();
        let command = Command::Respond {
            id: self.id,
            envelope: answer,
            reply,
        };
        self.commands
            .send(command)
            .await
            .map_err(|_| MeshError::Shutdown)?;
        rx.await.map_err(|_| MeshError::Shutdown)?
    }
}

impl Client {
    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Starts listening on `addr` (e.g. `/ip4/127.0.0.1/tcp/0` or
    /// `/ip4/127.0.0.1/udp/0/quic-v1`) and returns the first address actually bound.
    pub async fn listen(&self, addr: Multiaddr) -> Result<Multiaddr, MeshError> {
        self.call(|reply| Command::Listen { addr, reply }).await
    }

    /// Connects to `peer`, trying `addrs` and any address learnt before; returns once a
    /// connection is established (at once if one is already).
    pub async fn dial(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> Result<(), MeshError> {
        self.call(|reply| Command::Dial { peer, addrs, reply })
            .await
    }

    /// Sends a signed offer to `peer` over `/otto/handoff/1` and returns its answer, an
    /// accept or reject envelope whose signature the caller checks.
    pub async fn send_offer(
        &self,
        peer: PeerId,
        offer: Envelope,
    ) -> Result<Unverified<Envelope>, MeshError> {
        self.request(peer, Kind::Offer, offer).await
    }

    /// Sends a signed receipt to `peer` over `/otto/handoff/1` and returns its
    /// acknowledgement.
    pub async fn send_receipt(
        &self,
        peer: PeerId,
        receipt: Envelope,
    ) -> Result<Unverified<Envelope>, MeshError> {
        self.request(peer, Kind::Receipt, receipt).await
    }

    /// Sends the run's origin's signed retry of a stage to `peer`, the node that moves the
    /// stage on, over `/otto/handoff/1`, and returns its answer: an accept or a reject.
    pub async fn send_retry(
        &self,
        peer: PeerId,
        retry: Envelope,
    ) -> Result<Unverified<Envelope>, MeshError> {
        self.request(peer, Kind::Retry, retry).await
    }

    /// Sends a signed join request to `peer` over `/otto/handoff/1` and returns its join
    /// response (or a reject).
    pub async fn send_join(
        &self,
        peer: PeerId,
        join: Envelope,
    ) -> Result<Unverified<Envelope>, MeshError> {
        self.request(peer, Kind::JoinRequest, join).await
    }

    /// Delivers an org's signed revocation list to `peer` over `/otto/handoff/1` and
    /// returns its answer: an `accept` once the peer holds the list (or a newer one), or a
    /// `reject` saying why not.
    pub async fn send_revocation(
        &self,
        peer: PeerId,
        list: Envelope,
    ) -> Result<Unverified<Envelope>, MeshError> {
        self.request(peer, Kind::RevocationList, list).await
    }

    /// Sends a signed log request to `peer` over `/otto/handoff/1` and returns its answer:
    /// the `log_lines` (or a `reject`), whose signature the caller checks.
    pub async fn request_log(
        &self,
        peer: PeerId,
        request: Envelope,
    ) -> Result<Unverified<Envelope>, MeshError> {
        self.request(peer, Kind::LogRequest, request).await
    }

    /// Fetches the artifact `sha256` from `peer` over `/otto/artifact/1` into the file at
    /// `dest` and checks its digest.
    ///
    /// `resume_from` is the number of bytes at the start of `dest` to keep from an earlier,
    /// interrupted fetch (0 to fetch it all); only the rest is transferred. On success the
    /// file holds exactly the artifact. On [`MeshError::DigestMismatch`] the file is
    /// removed; on any other error it holds the bytes received so far, so a later fetch can
    /// resume from its length.
    pub async fn fetch_artifact(
        &self,
        peer: PeerId,
        sha256: Digest,
        dest: &Path,
        resume_from: u64,
    ) -> Result<Fetched, MeshError> {
        let mut control = self.control.clone();
        artifact::fetch(&mut control, peer, sha256, dest, resume_from, self.limits).await
    }

    /// Subscribes to the status events of `run`; they arrive as [`Event::Status`].
    pub async fn subscribe(&self, run: &str) -> Result<(), MeshError> {
        let run = run.to_owned();
        self.call(|reply| Command::Subscribe { run, reply }).await
    }

    /// Stops receiving the status events of `run`.
    pub async fn unsubscribe(&self, run: &str) -> Result<(), MeshError> {
        let run = run.to_owned();
        self.call(|reply| Command::Unsubscribe { run, reply }).await
    }

    /// Publishes a signed status event of `run` to the peers subscribed to it. Publishing
    /// the same envelope again is a no-op.
    pub async fn publish_status(&self, run: &str, status: Envelope) -> Result<(), MeshError> {
        let run = run.to_owned();
        self.call(|reply| Command::Publish {
            run,
            envelope: status,
            reply,
        })
        .await
    }

    /// The connected peers.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, MeshError> {
        self.call(|reply| Command::Peers { reply }).await
    }

    /// Applies the policy again to every connected peer, e.g. after a join or a
    /// revocation. (The event loop also does this every few seconds.)
    pub async fn refresh_policy(&self) -> Result<(), MeshError> {
        self.call(|reply| Command::RefreshPolicy { reply }).await
    }

    /// Closes every connection with `peer`.
    pub async fn disconnect(&self, peer: PeerId) -> Result<(), MeshError> {
        self.call(|reply| Command::Disconnect { peer, reply }).await
    }

    /// Makes `peers` the whole set of blocked peers, for the testnet's partitions only:
    /// connections with a newly blocked peer close at once and no new one is made or
    /// accepted; a peer no longer blocked can connect again (the exchange redials it when
    /// it next sends). The node calls this only when started with `--testnet-control`.
    pub async fn set_blocked(&self, peers: Vec<PeerId>) -> Result<(), MeshError> {
        self.call(|reply| Command::SetBlocked { peers, reply })
            .await
    }

    /// Stops the event loop, closing every connection; returns once it has stopped.
    pub async fn shutdown(&self) -> Result<(), MeshError> {
        self.call(|reply| Command::Shutdown { reply }).await
    }

    async fn request(
        &self,
        peer: PeerId,
        kind: Kind,
        envelope: Envelope,
    ) -> Result<Unverified<Envelope>, MeshError> {
        self.call(|reply| Command::Request {
            peer,
            kind,
            envelope,
            reply,
        })
        .await
    }

    async fn call<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, MeshError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| MeshError::Shutdown)?;
        rx.await.map_err(|_| MeshError::Shutdown)?
    }
}

impl EventLoop {
    /// Runs the mesh until [`Client::shutdown`] or until every [`Client`] is dropped.
    pub async fn run(mut self) {
        let server = self
            .server
            .take()
            .map(|(incoming, policy, source, limits)| {
                tokio::spawn(artifact::serve(incoming, policy, source, limits))
            });
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopped = None;
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        stopped = Some(reply);
                        break;
                    }
                    Some(command) => self.on_command(command),
                    None => break,
                },
                _ = sweep.tick() => self.sweep(),
            }
        }
        if let Some(server) = server {
            server.abort();
        }
        drop(self.swarm);
        if let Some(reply) = stopped {
            let _ = reply.send(Ok(()));
        }
        tracing::debug!(target: "otto::mesh", "event loop stopped");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Listen { addr, reply } => match self.swarm.listen_on(addr.clone()) {
                Ok(id) => {
                    self.pending_listen.insert(id, reply);
                }
                Err(err) => {
                    let _ = reply.send(Err(MeshError::Listen {
                        addr,
                        reason: err.to_string(),
                    }));
                }
            },
            Command::Dial { peer, addrs, reply } => self.dial(peer, addrs, reply),
            Command::Request {
                peer,
                kind,
                envelope,
                reply,
            } => {
                if let Err(err) = self.check_request(kind, &envelope) {
                    let _ = reply.send(Err(err));
                    return;
                }
                let id = self
                    .swarm
                    .behaviour_mut()
                    .handoff
                    .send_request(&peer, HandoffRequest::Envelope(envelope));
                self.pending_requests.insert(id, (peer, reply));
            }
            Command::Respond {
                id,
                envelope,
                reply,
            } => {
                let _ = reply.send(self.respond(id, envelope));
            }
            Command::Subscribe { run, reply } => {
                let topic = status_topic(&run);
                let gossip = &mut self.swarm.behaviour_mut().gossip;
                let result = gossip
                    .subscribe(&topic)
                    .map_err(|err| MeshError::Gossip(err.to_string()))
                    .and_then(|_| {
                        gossip
                            .set_topic_params(topic, gossip::topic_params())
                            .map_err(|err| MeshError::Gossip(err.to_owned()))
                    });
                let _ = reply.send(result);
            }
            Command::Unsubscribe { run, reply } => {
                self.swarm
                    .behaviour_mut()
                    .gossip
                    .unsubscribe(&status_topic(&run));
                let _ = reply.send(Ok(()));
            }
            Command::Publish {
                run,
                envelope,
                reply,
            } => {
                let _ = reply.send(self.publish(&run, &envelope));
            }
            Command::Peers { reply } => {
                let _ = reply.send(Ok(self.peer_infos()));
            }
            Command::RefreshPolicy { reply } => {
                self.gate_all();
                let _ = reply.send(Ok(()));
            }
            Command::Disconnect { peer, reply } => {
                let _ = self.swarm.disconnect_peer_id(peer);
                let _ = reply.send(Ok(()));
            }
            Command::SetBlocked { peers, reply } => {
                let blocked = &mut self.swarm.behaviour_mut().blocked;
                let before: Vec<PeerId> = blocked.blocked_peers().iter().copied().collect();
                for peer in before.iter().filter(|p| !peers.contains(p)) {
                    blocked.unblock_peer(*peer);
                }
                for peer in &peers {
                    blocked.block_peer(*peer);
                }
                tracing::info!(target: "otto::mesh", blocked = ?peers.iter().map(ToString::to_string).collect::<Vec<_>>(), "testnet control: blocked peers set");
                let _ = reply.send(Ok(()));
            }
            Command::Shutdown { reply } => {
                // Handled in `run`; answering here keeps the match total.
                let _ = reply.send(Ok(()));
            }
        }
    }

    fn dial(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, reply: Reply<()>) {
        if self.swarm.is_connected(&peer) {
            let _ = reply.send(Ok(()));
            return;
        }
        for addr in &addrs {
            self.swarm.add_peer_address(peer, addr.clone());
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .extend_addresses_through_behaviour()
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        match self.swarm.dial(opts) {
            Ok(()) | Err(DialError::DialPeerConditionFalse(_)) => {
                self.pending_dial.entry(peer).or_default().push(reply);
            }
            Err(err) => {
                let _ = reply.send(Err(MeshError::Dial {
                    peer,
                    reason: err.to_string(),
                }));
            }
        }
    }

    /// Checks an outgoing request before it leaves: its kind, its sizes, and room in the
    /// map of requests in flight.
    fn check_request(&self, kind: Kind, envelope: &Envelope) -> Result<(), MeshError> {
        if envelope.payload_type != kind.payload_type() {
            return Err(MeshError::WrongKind {
                expected: kind.to_string(),
                got: envelope.payload_type.clone(),
            });
        }
        otto_protocol::check_len(kind, envelope.payload.len())?;
        let len = otto_protocol::encode_envelope(envelope).len();
        if len > MAX_REQUEST_BYTES {
            return Err(MeshError::Invalid(DecodeError::TooLarge {
                kind: "envelope",
                len,
                max: MAX_REQUEST_BYTES,
            }));
        }
        if self.pending_requests.len() >= self.config.max_pending_requests {
            return Err(MeshError::Busy);
        }
        Ok(())
    }

    fn respond(&mut self, id: InboundRequestId, envelope: Envelope) -> Result<(), MeshError> {
        let bytes = otto_protocol::encode_envelope(&envelope);
        if let Err(err) = codec::decode_answer(&bytes) {
            return Err(match err {
                DecodeError::UnknownKind(got) | DecodeError::Malformed(got) => {
                    MeshError::WrongKind {
                        expected: "accept, reject, join_response or log_lines".to_owned(),
                        got,
                    }
                }
                other => MeshError::Invalid(other),
            });
        }
        let channel = self
            .pending_answers
            .remove(&id)
            .ok_or(MeshError::AnswerExpired)?;
        self.swarm
            .behaviour_mut()
            .handoff
            .send_response(channel, envelope)
            .map_err(|_| MeshError::AnswerExpired)
    }

    fn publish(&mut self, run: &str, envelope: &Envelope) -> Result<(), MeshError> {
        let topic = status_topic(run);
        let data = otto_protocol::encode_envelope(envelope);
        gossip::check(&topic.hash(), &data)?;
        match self.swarm.behaviour_mut().gossip.publish(topic, data) {
            Ok(_) | Err(gossipsub::PublishError::Duplicate) => Ok(()),
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => Err(MeshError::NoSubscribers),
            Err(err) => Err(MeshError::Gossip(err.to_string())),
        }
    }

    fn peer_infos(&self) -> Vec<PeerInfo> {
        let mut infos: Vec<PeerInfo> = self
            .peers
            .iter()
            .map(|(peer, state)| PeerInfo {
                peer: *peer,
                addresses: state.connections.values().cloned().collect(),
                allowed: state.allowed,
                agent_version: state.agent_version.clone(),
                protocol_version: state.protocol_version.clone(),
                protocols: state.protocols.clone(),
                rtt: state.rtt,
            })
            .collect();
        infos.sort_by_key(|info| info.peer);
        infos
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                tracing::info!(target: "otto::mesh", %address, "listening");
                if let Some(reply) = self.pending_listen.remove(&listener_id) {
                    let _ = reply.send(Ok(address));
                }
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                if let Some(reply) = self.pending_listen.remove(&listener_id) {
                    let _ = reply.send(Err(MeshError::Listen {
                        addr: addresses
                            .into_iter()
                            .next()
                            .unwrap_or_else(Multiaddr::empty),
                        reason: match reason {
                            Ok(()) => "listener closed".to_owned(),
                            Err(err) => err.to_string(),
                        },
                    }));
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                let address = remote_address(&endpoint);
                tracing::debug!(target: "otto::mesh", peer = %peer_id, %address, "connected");
                self.peers
                    .entry(peer_id)
                    .or_default()
                    .connections
                    .insert(connection_id, address.clone());
                if num_established.get() == 1 {
                    self.gate(&peer_id);
                    self.emit(Event::Connected {
                        peer: peer_id,
                        address,
                    });
                }
                for reply in self.pending_dial.remove(&peer_id).unwrap_or_default() {
                    let _ = reply.send(Ok(()));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                if let Some(state) = self.peers.get_mut(&peer_id) {
                    state.connections.remove(&connection_id);
                }
                if num_established == 0 {
                    tracing::debug!(target: "otto::mesh", peer = %peer_id, "disconnected");
                    self.peers.remove(&peer_id);
                    self.emit(Event::Disconnected { peer: peer_id });
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } if !self.swarm.is_connected(&peer) => {
                for reply in self.pending_dial.remove(&peer).unwrap_or_default() {
                    let _ = reply.send(Err(MeshError::Dial {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                let allowed = self.policy.allowed(&peer_id);
                if allowed {
                    for addr in &info.listen_addrs {
                        self.swarm.add_peer_address(peer_id, addr.clone());
                    }
                }
                if let Some(state) = self.peers.get_mut(&peer_id) {
                    state.agent_version = Some(info.agent_version);
                    state.protocol_version = Some(info.protocol_version);
                    state.protocols = info.protocols.iter().map(ToString::to_string).collect();
                }
            }
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) => {
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.rtt = Some(rtt);
                }
            }
            BehaviourEvent::Handoff(event) => self.on_handoff_event(event),
            BehaviourEvent::Gossip(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, &message_id, message),
            BehaviourEvent::Gossip(gossipsub::Event::Subscribed { peer_id, topic }) => {
                if let Some(run) = run_of_topic(&topic)
                    && self.policy.allowed(&peer_id)
                {
                    let run = run.to_owned();
                    self.emit(Event::Subscribed { peer: peer_id, run });
                }
            }
            _ => {}
        }
    }

    fn on_handoff_event(&mut self, event: request_response::Event<HandoffRequest, Envelope>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request_id,
                    request,
                    channel,
                } => self.on_request(peer, request_id, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((_, reply)) = self.pending_requests.remove(&request_id) {
                        let _ = reply.send(Ok(Unverified::new(response)));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((_, reply)) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Err(request_error(peer, error)));
                }
            }
            request_response::Event::InboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(target: "otto::mesh", %peer, "incoming request failed: {error}");
                self.pending_answers.remove(&request_id);
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Routes an incoming request: refuses what is malformed or from a peer the policy
    /// does not allow, and hands the rest to the node.
    fn on_request(
        &mut self,
        peer: PeerId,
        id: InboundRequestId,
        request: HandoffRequest,
        channel: ResponseChannel<Envelope>,
    ) {
        let envelope = match request {
            HandoffRequest::Envelope(envelope) => envelope,
            HandoffRequest::Malformed(err) => {
                tracing::debug!(target: "otto::mesh", %peer, "malformed request: {err}");
                let code = err.reject_code();
                self.refuse(channel, HandoffId([0; 16]), code, &err.to_string(), None);
                return;
            }
        };
        let kind = Kind::parse(&envelope.payload_type);
        if kind != Some(Kind::JoinRequest) && !self.policy.allowed(&peer) {
            // Info, not debug: an operator (and the testnet's intruder check) sees who was
            // turned away.
            tracing::info!(target: "otto::mesh", %peer, kind = %envelope.payload_type, "request refused: peer not allowed");
            self.refuse(
                channel,
                offer_id(&envelope),
                RejectCode::UnknownOrg,
                "this node does not trust the sending node",
                Some("join this node with an invite first (`otto-node join TOKEN`)"),
            );
            return;
        }
        if self.pending_answers.len() >= self.config.max_pending_answers {
            self.refuse_busy(channel, &envelope);
            return;
        }
        let Some(commands) = self.handles.upgrade() else {
            self.refuse_busy(channel, &envelope);
            return;
        };
        let reply = ResponseHandle { peer, id, commands };
        let unverified = Unverified::new(envelope.clone());
        let event = match kind {
            Some(Kind::Offer) => Event::Offer {
                peer,
                envelope: unverified,
                reply,
            },
            Some(Kind::Receipt) => Event::Receipt {
                peer,
                envelope: unverified,
                reply,
            },
            Some(Kind::JoinRequest) => Event::Join {
                peer,
                envelope: unverified,
                reply,
            },
            Some(Kind::RevocationList) => Event::Revocation {
                peer,
                envelope: unverified,
                reply,
            },
            Some(Kind::LogRequest) => Event::LogRequest {
                peer,
                envelope: unverified,
                reply,
            },
            Some(Kind::Retry) => Event::Retry {
                peer,
                envelope: unverified,
                reply,
            },
            // The codec lets no other kind through; refuse rather than trust that here.
            _ => {
                let message = format!("a {} is not a request", envelope.payload_type);
                self.refuse(
                    channel,
                    HandoffId([0; 16]),
                    RejectCode::Malformed,
                    &message,
                    None,
                );
                return;
            }
        };
        match self.events.try_send(event) {
            Ok(()) => {
                self.pending_answers.insert(id, channel);
            }
            Err(_) => {
                tracing::warn!(target: "otto::mesh", %peer, "request refused: node busy");
                self.refuse_busy(channel, &envelope);
            }
        }
    }

    fn refuse_busy(&mut self, channel: ResponseChannel<Envelope>, envelope: &Envelope) {
        self.refuse(
            channel,
            offer_id(envelope),
            RejectCode::Internal,
            "the node is busy",
            Some("send it again later"),
        );
    }

    /// Answers a request with a reject signed by this node.
    fn refuse(
        &mut self,
        channel: ResponseChannel<Envelope>,
        id: HandoffId,
        code: RejectCode,
        message: &str,
        hint: Option<&str>,
    ) {
        let reject = Message::Reject(Reject {
            id,
            code,
            message: message.to_owned(),
            hint: hint.map(str::to_owned),
        });
        let payload = otto_protocol::encode(&reject);
        match otto_trust::dsse::sign(Kind::Reject.payload_type(), payload, &self.signer) {
            Ok(envelope) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .handoff
                    .send_response(channel, envelope);
            }
            Err(err) => {
                tracing::warn!(target: "otto::mesh", "cannot sign a reject: {err}");
            }
        }
    }

    /// Judges a gossip message before gossipsub forwards it.
    fn on_gossip(
        &mut self,
        source: PeerId,
        message_id: &gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        let acceptance = if !self.policy.allowed(&source) {
            MessageAcceptance::Ignore
        } else {
            match (gossip::check(&message.topic, &message.data), message.source) {
                // A node this one does not know (another org's, two hops away): not the
                // forwarder's fault, so no penalty, and not forwarded from here.
                (Ok(_), Some(author)) if !self.policy.knows_author(&author) => {
                    MessageAcceptance::Ignore
                }
                (Ok((run, envelope)), Some(author)) => {
                    match self
                        .policy
                        .verify_status(&author, Unverified::new(envelope))
                    {
                        Some(envelope) => {
                            self.emit(Event::Status {
                                run,
                                author,
                                envelope,
                            });
                            MessageAcceptance::Accept
                        }
                        None => {
                            tracing::debug!(target: "otto::mesh", %source, %author, "status rejected: signature");
                            MessageAcceptance::Reject
                        }
                    }
                }
                (Ok(_), None) => MessageAcceptance::Reject,
                (Err(err), _) => {
                    tracing::debug!(target: "otto::mesh", %source, "gossip rejected: {err}");
                    MessageAcceptance::Reject
                }
            }
        };
        self.swarm
            .behaviour_mut()
            .gossip
            .report_message_validation_result(message_id, &source, acceptance);
    }

    /// Applies the policy to a connected peer: an allowed peer takes part in gossip, any
    /// other is scored out of it.
    fn gate(&mut self, peer: &PeerId) {
        let allowed = self.policy.allowed(peer);
        let score = if allowed {
            0.0
        } else {
            gossip::UNTRUSTED_SCORE
        };
        self.swarm
            .behaviour_mut()
            .gossip
            .set_application_score(peer, score);
        if let Some(state) = self.peers.get_mut(peer) {
            state.allowed = allowed;
        }
    }

    fn gate_all(&mut self) {
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in &peers {
            self.gate(peer);
        }
    }

    fn sweep(&mut self) {
        self.pending_answers.retain(|_, channel| channel.is_open());
        self.gate_all();
    }

    /// Hands an event to the node without waiting: when the node is behind, the event is
    /// dropped and logged.
    fn emit(&self, event: Event) {
        if let Err(err) = self.events.try_send(event) {
            tracing::warn!(target: "otto::mesh", "event dropped, the node is behind: {:?}", err.into_inner());
        }
    }
}

impl NodeSigner {
    fn new(keypair: Keypair) -> Result<Self, MeshError> {
        let ed25519 = keypair
            .public()
            .try_into_ed25519()
            .map_err(|_| MeshError::Setup("the node key must be an Ed25519 key".to_owned()))?;
        let public = PublicKey::from_bytes(&ed25519.to_bytes())
            .map_err(|err| MeshError::Setup(format!("node key: {err}")))?;
        Ok(Self { keypair, public })
    }
}

impl Signer for NodeSigner {
    fn public_key(&self) -> PublicKey {
        self.public
    }

    fn try_sign(&self, msg: &[u8]) -> Result<otto_protocol::Signature, SignError> {
        let sig = self
            .keypair
            .sign(msg)
            .map_err(|err| SignError::Unavailable(err.to_string()))?;
        Ok(otto_protocol::Signature {
            sig,
            keyid: self.public.keyid(),
        })
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("peer_id", self.swarm.local_peer_id())
            .finish_non_exhaustive()
    }
}

/// The handoff id of an offer envelope, or zeros for anything else (or an offer that
/// does not decode).
fn offer_id(envelope: &Envelope) -> HandoffId {
    if let Ok(retry) = envelope.payload_as::<otto_protocol::Retry>() {
        return retry.id;
    }
    envelope
        .payload_as::<Offer>()
        .map_or(HandoffId([0; 16]), |offer| offer.id)
}

fn remote_address(endpoint: &ConnectedPoint) -> Multiaddr {
    endpoint.get_remote_address().clone()
}

fn request_error(peer: PeerId, error: OutboundFailure) -> MeshError {
    match error {
        OutboundFailure::DialFailure => MeshError::Dial {
            peer,
            reason: "no connection could be made".to_owned(),
        },
        OutboundFailure::Timeout => MeshError::Timeout { peer },
        OutboundFailure::ConnectionClosed => MeshError::ConnectionClosed { peer },
        OutboundFailure::UnsupportedProtocols => MeshError::Unsupported {
            peer,
            protocol: HANDOFF_PROTOCOL,
        },
        OutboundFailure::Io(err) => MeshError::Stream {
            peer,
            reason: err.to_string(),
        },
    }
}
