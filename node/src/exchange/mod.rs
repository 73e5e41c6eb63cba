//! The exchange: the task that hands stages to other nodes and runs the stages they hand
//! to this one, by driving the handoff state machine ([`otto_handoff::machine`]) with the
//! mesh, the store and the engine.
//!
//! # What flows where
//!
//! - **Sending.** The engine publishes [`EngineEvent::HandOff`] for a stage this node moves
//!   on and does not own. The exchange resolves the owner's name to a known node
//!   ([`Membership::resolve_owner`]), builds and signs the offer (`offers.rs`), and gives it
//!   to the machine, whose actions persist it in the durable outbox and send it, retrying
//!   with backoff until an answer comes or it expires. An accept is shown on the stage; a
//!   reject fails the stage with the owner's reason and hint, in words.
//! - **Receiving.** An offer from the mesh goes to the machine, which verifies it
//!   ([`otto_handoff::verify_offer`] against the trust store) and persists it with its
//!   answer in the durable inbox before the answer leaves. An accepted offer's run is
//!   recorded here (same run id), its input artifacts and source snapshot are fetched and
//!   checked, and the engine runs the stage ([`Engine::start_offered`]) with this node's
//!   agent, environment and secrets. Its receipt goes back to the sender until
//!   acknowledged.
//! - **Watching.** Both sides subscribe to the run's gossip topic. Every node publishes a
//!   signed status event for each change of a stage it runs (state, note, log lines) and
//!   every receipt it signs; the others record them ([`Engine::remote_stage`]), so `otto
//!   status` and `otto logs` show the whole run on every node. A node records such events
//!   only from nodes it trusts, so it vouches for every end of another node's stage it
//!   learns, once, with a status event of its own ("relayed by"): the end reaches the
//!   nodes of orgs that do not trust the runner's org, org by org (`status.rs`). No other
//!   node's word changes a stage this node runs or ran.
//!
//! # Durability
//!
//! The machine's action order is the contract: every durable write queued before a
//! message is committed before that message leaves (the exchange carries out actions in
//! order and awaits each store write). A durable write that fails stops the exchange
//! before anything queued after it is done; it starts again from the store (a few times
//! a minute at most, then the node stops with the reason). After a restart the machine
//! is restored from the outbox and the inbox, so offers are resent, accepted offers run
//! again as the next attempt, and receipts are delivered again; `docs/handoff.md` has the
//! whole story.
//!
//! The engine tells the exchange what to hand off and which receipts it signed on a
//! bounded channel of its own ([`NoticeFeed`]), after the store holds them: the stage's
//! `HandedOff` and its handoff intent are one transaction, the intent leaves the store in
//! the transaction that puts its offer in the outbox. The exchange reads the intents and
//! the receipts again when it starts, when a notice was dropped, and every
//! [`MAINTAIN_EVERY`] (an owner no known node answered to yet, a full machine).

pub mod logfetch;
mod offers;
mod status;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use otto_handoff::machine::{self, Action, Command, Event, Verdict, command, event};
use otto_handoff::source::Obtain;
use otto_handoff::{Definition, VerifyContext, relay, rules};
use otto_pipeline::plan::Body;
use otto_protocol::{
    Accept, Digest as WireDigest, Envelope, HandoffId, Message, Offer, Receipt, RunSource,
};
use otto_trust::{PublicKey, Unverified, Verified};
use tokio::sync::{broadcast, mpsc};

use crate::blobs::{BlobStore, Digest};
use crate::engine::{Engine, EngineEvent, Notice, NoticeFeed, RemoteEnd, RemoteStage};
use crate::failpoint;
use crate::membership::{Membership, peer_key};
use crate::mesh::{self, PeerId, ResponseHandle};
use crate::store::{self, AttemptNode, OutboxEntry, RunId, StageState, Store};

const TARGET: &str = "otto_node::exchange";

/// How long an offer stays valid by default: a day, so an owner that is down for hours
/// still gets it when it comes back.
pub const DEFAULT_OFFER_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest wait between two sends of an unanswered offer: short, so an owner that
/// comes back is served within seconds (an offer is small).
pub const BACKOFF_MAX_MS: u64 = 10_000;

/// The largest git bundle this node makes for an offer or takes from one: 1 GiB.
pub const MAX_BUNDLE_BYTES: u64 = 1 << 30;

/// How often buffered status events (log lines) are published.
const STATUS_FLUSH: Duration = Duration::from_millis(250);

/// How often the exchange reads the handoff intents and receipts the store holds again,
/// and forgets the runs that ended.
pub const MAINTAIN_EVERY: Duration = Duration::from_secs(10);

/// How long a run that ended here keeps its state and its status topic: late status
/// events and relays still reach the nodes that follow it.
const RUN_LINGER_MS: u64 = 60_000;

/// How many times within [`RESTART_WINDOW`] the exchange starts again after a failed
/// durable write before it gives up (and the node stops).
const MAX_RESTARTS: usize = 3;

/// See [`MAX_RESTARTS`].
const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// Everything the exchange works with, built by the daemon.
pub struct ExchangeParts {
    /// The store.
    pub store: Store,
    /// The blob store (artifacts and snapshots to serve and to fetch into).
    pub blobs: BlobStore,
    /// The engine.
    pub engine: Engine,
    /// The mesh.
    pub mesh: mesh::Client,
    /// Trust, known nodes and this node's identity.
    pub membership: Membership,
    /// The owner names this node answers to.
    pub answers_to: Vec<String>,
    /// Whether upstream owners may be bound to orgs this node never pinned.
    pub owners: otto_handoff::OwnerPolicy,
    /// Where fetches in progress are kept (a private directory of the home).
    pub fetch_dir: PathBuf,
    /// The node's repositories and mirrors: bundles of the commits of runs this node
    /// offers stages of, and the commits of runs offered to it (`None`: runs from a
    /// commit are offered without a bundle, and their stages here get no checkout).
    pub sources: Option<crate::engine::Checkouts>,
    /// How long offers stay valid.
    pub offer_ttl: Duration,
    /// How long a stage to offer waits for a known node that answers to its owner before
    /// it fails (`[node] owner_wait_secs`).
    pub owner_wait: Duration,
    /// The machine's limits and timings.
    pub machine: machine::Config,
    /// Why this node runs no stage of another org's run, when it runs none
    /// ([`crate::engine::WallSettings::refuses_others`]): such offers are refused with it.
    pub refuses_others: Option<String>,
}

/// Starts the exchange task: it restores the machine from the store, then serves mesh
/// events and the engine's notices and events until `mesh_events` closes (`Ok`). After a
/// failed durable write it starts again from the store, up to [`MAX_RESTARTS`] times in
/// [`RESTART_WINDOW`]; then it ends with the reason, and the node stops.
pub fn start(
    parts: ExchangeParts,
    mesh_events: mpsc::Receiver<mesh::Event>,
    notices: NoticeFeed,
) -> tokio::task::JoinHandle<Result<(), String>> {
    tokio::spawn(supervise(Arc::new(parts), mesh_events, notices))
}

async fn supervise(
    parts: Arc<ExchangeParts>,
    mut mesh_events: mpsc::Receiver<mesh::Event>,
    mut notices: NoticeFeed,
) -> Result<(), String> {
    let mut failures: VecDeque<tokio::time::Instant> = VecDeque::new();
    loop {
        let (exchange, done) = Exchange::new(parts.clone());
        let Err(Halt(error)) = exchange.run(&mut mesh_events, &mut notices, done).await else {
            return Ok(());
        };
        let now = tokio::time::Instant::now();
        failures.retain(|at| now.duration_since(*at) < RESTART_WINDOW);
        failures.push_back(now);
        if failures.len() > MAX_RESTARTS {
            return Err(format!(
                "{error} ({} times within {} s)",
                failures.len(),
                RESTART_WINDOW.as_secs()
            ));
        }
        tracing::error!(target: TARGET, %error, "a durable write failed: the exchange stopped before anything after it left, and starts again from the store");
        let pause = 500 * u64::try_from(failures.len()).unwrap_or(1);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// A durable write failed: the exchange stops before any message queued after it leaves.
#[derive(Debug)]
struct Halt(String);

/// What an operation the exchange started in the background reports back.
enum Done {
    Answer(HandoffId, Result<Box<Verified<Envelope>>, String>),
    Fetched(HandoffId, Result<(), String>),
    ReceiptSent(HandoffId, Result<(), String>),
    /// The node the receipt went to refused it with a signed reject, in these words.
    ReceiptRefused(HandoffId, String),
    /// A fetch of the missed lines of another node's stage log ended, after this many
    /// requests: caught up, or why not.
    LogFetched(RunId, String, u32, Result<(), String>),
    /// How the node that moves a stage on answered this node's retry of it (run, stage,
    /// attempt, that node's name): `Ok` when it took it, the reason in words when not.
    RetryAnswer(RunId, String, u32, String, Result<(), String>),
}

/// The fetches of the missed lines of another node's stage log, per copy (run, stage).
#[derive(Debug)]
struct LogFetch {
    /// The node whose numbering the copy follows, and its key: the only one asked.
    peer: PeerId,
    key: PublicKey,
    /// The attempt the lines are written under.
    attempt: u32,
    /// The runner's number of the last line it is known to have written.
    want: u64,
    /// Requests this copy may still make ([`otto_handoff::logseq::FETCH_REQUESTS`]).
    left: u32,
    /// Whether a fetch is under way.
    busy: bool,
    /// Whether fetching ended for good: jumps are marked as gaps at once.
    done: bool,
}

struct Exchange {
    parts: Arc<ExchangeParts>,
    /// Handoff intents whose owner no known node answers to, already noted on the stage,
    /// with when that was first found (milliseconds).
    unresolved: HashMap<(RunId, String), u64>,
    machine: machine::Machine,
    done_tx: mpsc::Sender<Done>,
    /// The peers waiting for the answer to an offer, by handoff id.
    replies: HashMap<HandoffId, ResponseHandle>,
    /// The peers waiting for the acknowledgement of a receipt, by (run, stage, attempt).
    receipt_replies: HashMap<(String, String, u32), ResponseHandle>,
    /// Offers this node accepted, by handoff id.
    offers: HashMap<HandoffId, Arc<Offer>>,
    /// The handoff id of each offered stage this node runs, by (run, stage).
    running: HashMap<(RunId, String), HandoffId>,
    /// Runs other nodes take part in: their stages' status is published.
    shared: HashSet<RunId>,
    /// When the machine wants its next tick (milliseconds).
    wakeup: Option<u64>,
    status: status::Publisher,
    /// What this node knows of each run's plan, read once per run.
    views: HashMap<RunId, Arc<status::RunView>>,
    /// The plan of each run gossip came for, read once per run.
    plans: HashMap<RunId, Arc<Body>>,
    /// Relayed ends waiting for the stages that need them to end here.
    deferred: Vec<RemoteStage>,
    /// When this node last told a run's ends again on a node's subscription.
    told: Told,
    /// The run's origin's signed retries of stages this node moves on, by (run, stage),
    /// with their attempt: the next offer of the stage carries it.
    retries: HashMap<(RunId, String), (u32, Envelope)>,
    /// Fetches of lines missed from other nodes' stage logs.
    fetches: HashMap<(RunId, String), LogFetch>,
    /// The runs this node follows again since it started, with the nodes it asks for the
    /// ends it missed ([`relay::follow`]), dialled until connected.
    asked: HashMap<RunId, Vec<PeerId>>,
}

/// When the ends of each run were last told again on each peer's subscription: at most
/// once per run and peer every [`Told::EVERY_MS`], so a peer that subscribes and leaves
/// over and over cannot keep this node reading and signing.
#[derive(Debug, Default)]
struct Told {
    at: HashMap<(RunId, PeerId), u64>,
}

impl Told {
    const EVERY_MS: u64 = 2_000;
    const MAX_RUNS: usize = 4096;

    /// Whether the ends of `run` may be told again at `now` (milliseconds) on `peer`'s
    /// subscription; if so, notes it.
    fn may_tell(&mut self, run: RunId, peer: PeerId, now: u64) -> bool {
        if self
            .at
            .get(&(run, peer))
            .is_some_and(|at| now.saturating_sub(*at) < Self::EVERY_MS)
        {
            return false;
        }
        if self.at.len() >= Self::MAX_RUNS {
            self.at
                .retain(|_, at| now.saturating_sub(*at) < Self::EVERY_MS);
            if self.at.len() >= Self::MAX_RUNS {
                self.at.clear();
            }
        }
        self.at.insert((run, peer), now);
        true
    }
}

/// Where a stage of another node's report stands here.
struct Here {
    view: Arc<status::RunView>,
    stage: Option<store::Stage>,
    /// Whether the stage is this node's (see [`status::RunView::runs_here`]).
    mine: bool,
}

impl Here {
    /// Whether the stage already ended here.
    fn ended(&self) -> bool {
        self.stage.as_ref().is_some_and(|s| s.state.is_final())
    }

    /// Whether attempt `n` already ended here.
    fn attempt_ended(&self, n: u32) -> bool {
        self.stage
            .as_ref()
            .is_some_and(|s| s.state.is_final() && s.attempts.iter().any(|a| a.n == n))
    }
}

impl Exchange {
    /// A fresh exchange with nothing in flight (then [`Self::run`] restores it), and the
    /// receiver of its background operations' reports.
    fn new(parts: Arc<ExchangeParts>) -> (Self, mpsc::Receiver<Done>) {
        let (done_tx, done) = mpsc::channel(1024);
        let mut seed = [0u8; 8];
        crate::daemon::fill_random(&mut seed);
        let exchange = Self {
            machine: machine::Machine::new(parts.machine, u64::from_le_bytes(seed)),
            parts,
            unresolved: HashMap::new(),
            done_tx,
            replies: HashMap::new(),
            receipt_replies: HashMap::new(),
            offers: HashMap::new(),
            running: HashMap::new(),
            shared: HashSet::new(),
            wakeup: None,
            status: status::Publisher::default(),
            views: HashMap::new(),
            plans: HashMap::new(),
            deferred: Vec::new(),
            told: Told::default(),
            retries: HashMap::new(),
            fetches: HashMap::new(),
            asked: HashMap::new(),
        };
        (exchange, done)
    }

    async fn run(
        mut self,
        mesh_events: &mut mpsc::Receiver<mesh::Event>,
        notices: &mut NoticeFeed,
        mut done: mpsc::Receiver<Done>,
    ) -> Result<(), Halt> {
        let mut engine_events = self.parts.engine.events();
        self.restore().await?;
        self.resume().await?;
        let mut flush = tokio::time::interval(STATUS_FLUSH);
        let mut maintain = tokio::time::interval(MAINTAIN_EVERY);
        maintain.tick().await;
        loop {
            let sleep = match self.wakeup {
                Some(at) => Duration::from_millis(at.saturating_sub(now_ms())),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                event = mesh_events.recv() => match event {
                    Some(event) => self.on_mesh(event).await?,
                    None => return Ok(()),
                },
                notice = notices.recv() => match notice {
                    Some(notice) => {
                        self.on_notice(notice).await?;
                        if notices.missed() {
                            tracing::warn!(target: TARGET, "the engine's notices were dropped while the exchange was behind; reading the store again");
                            self.resume().await?;
                        }
                    }
                    None => return Ok(()),
                },
                event = engine_events.recv() => match event {
                    Ok(event) => self.on_engine(&event),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(target: TARGET, missed, "fell behind the engine's events; some status events were not published");
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
                Some(report) = done.recv() => self.on_done(report).await?,
                () = tokio::time::sleep(sleep) => {
                    self.wakeup = None;
                    let event = self.machine.handle(command::Tick { now: now_ms() }.into());
                    self.after(event).await?;
                }
                _ = flush.tick() => self.flush_status().await,
                _ = maintain.tick() => {
                    self.resume().await?;
                    self.prune().await;
                    self.dial_asked();
                }
            }
        }
    }

    /// Feeds the machine what the store holds after a (re)start. An accepted offer's run
    /// is recorded again first: a crash may have come between the inbox write and that.
    async fn restore(&mut self) -> Result<(), Halt> {
        let store = self.parts.store.clone();
        let loaded = blocking(move || -> Result<_, store::Error> {
            let outbox = store.outbox_due(u64::MAX, usize::MAX)?;
            let mut given = Vec::new();
            for entry in store.given()? {
                // A stage that ended here on another node's word (a relayed end, a
                // cancelled run) still takes its receipt from the peer it was given to,
                // and from no other: the entry goes when that receipt comes.
                if store.run(&entry.run)?.is_none() {
                    store.drop_given(&entry.run, &entry.stage)?;
                } else {
                    given.push(entry);
                }
            }
            let inbox = store.inbox_pending()?;
            let mut records = Vec::new();
            for entry in inbox {
                let Ok(envelope) = otto_protocol::decode_envelope(&entry.offer) else {
                    continue;
                };
                let Ok(offer) = envelope.payload_as::<Offer>() else {
                    continue;
                };
                let peer = sender_peer(&offer).unwrap_or_default();
                let (last_attempt, receipt) = match offer.run.parse::<RunId>() {
                    Ok(run) => {
                        let last = store
                            .stage(&run, &offer.stage)?
                            .and_then(|s| s.last_attempt().map(|a| a.n));
                        let receipt = match last {
                            Some(n) => store
                                .receipt(&run, &offer.stage, n)?
                                .and_then(|b| otto_protocol::decode_envelope(&b).ok()),
                            None => None,
                        };
                        (last, receipt)
                    }
                    Err(_) => (None, None),
                };
                records.push(command::InboxRecord {
                    last_attempt,
                    receipt,
                    ..inbox_record(peer, envelope, &entry)
                });
            }
            Ok((outbox, given, records))
        })
        .await
        .map_err(|e| Halt(format!("cannot read the outbox and inbox: {e}")))?;
        let (outbox, given, inbox) = loaded;
        // The runs of offers in flight and of stages given to others: their status (and
        // the log lines missed while this node was down, as a gap) comes on the topic.
        for entry in outbox.iter().chain(&given) {
            self.shared.insert(entry.run);
            self.subscribe(entry.run).await;
        }
        for record in &inbox {
            let Ok(offer) = record.offer.payload_as::<Offer>() else {
                continue;
            };
            if record.state == machine::InboxState::Accepted {
                self.accepted(offer.id, &record.peer, offer)
                    .await
                    .map_err(Halt)?;
            } else {
                if let Ok(run) = offer.run.parse::<RunId>() {
                    self.shared.insert(run);
                    self.subscribe(run).await;
                }
                self.offers.insert(offer.id, Arc::new(offer));
            }
        }
        let records = |entries: Vec<OutboxEntry>| {
            entries
                .into_iter()
                .filter_map(|entry| {
                    Some(command::OutboxRecord {
                        peer: entry.peer,
                        envelope: otto_protocol::decode_envelope(&entry.message).ok()?,
                        tries: entry.tries,
                    })
                })
                .collect()
        };
        let event = self.machine.handle(
            command::Restore {
                outbox: records(outbox),
                given: records(given),
                inbox,
                now: now_ms(),
            }
            .into(),
        );
        self.after(event).await?;
        self.follow_open_runs().await;
        Ok(())
    }

    /// Follows again, after a (re)start, the runs that have not ended here and whose open
    /// stages another node moves on ([`relay::follow`]): subscribes to their topics and
    /// dials those nodes, which answer the subscription with the ends this node missed
    /// ([`relay::again`]) and publish the ends to come. A run whose stages this node only
    /// gave (the outbox and the given table follow them) or runs asks nobody.
    async fn follow_open_runs(&mut self) {
        let store = self.parts.store.clone();
        let me = otto_protocol::KeyBytes(*self.parts.membership.node_key().public_key().as_bytes());
        let found = blocking(move || -> Result<_, store::Error> {
            let mut found = Vec::new();
            for run in store.unfinished_runs()? {
                let Some(plan) = store.plan(&run.plan_digest)? else {
                    continue;
                };
                let Ok(body) = serde_json::from_slice::<Body>(&plan) else {
                    continue;
                };
                let ended: HashSet<String> = store
                    .stages(&run.id)?
                    .into_iter()
                    .filter(|s| s.state.is_final())
                    .map(|s| s.id)
                    .collect();
                let held = crate::engine::receipts::stored(&store, &run.id)?;
                let started_here = !run.started_by.starts_with(crate::engine::OFFERED_BY);
                let asked = relay::follow(&body, &held, &me, started_here, |stage| {
                    !ended.contains(stage)
                });
                if !asked.is_empty() {
                    found.push((run.id, asked));
                }
            }
            Ok(found)
        })
        .await;
        let found = match found {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(target: TARGET, %error, "cannot read the unfinished runs to follow them again");
                return;
            }
        };
        for (run, asked) in found {
            let peers: Vec<PeerId> = asked
                .iter()
                .filter_map(|key| PublicKey::from_bytes(&key.0).ok())
                .map(|key| key.peer_id())
                .collect();
            tracing::debug!(target: TARGET, %run, asked = peers.len(), "following the run again");
            self.shared.insert(run);
            self.subscribe(run).await;
            self.asked.insert(run, peers);
        }
        self.dial_asked();
    }

    /// Dials the nodes asked for the ends of the runs followed again that are not
    /// connected now (in the background: a node that is down is dialled again at the next
    /// [`MAINTAIN_EVERY`]). A new connection carries this node's subscriptions, which the
    /// other node answers with the run's ends.
    fn dial_asked(&self) {
        let peers: HashSet<PeerId> = self.asked.values().flatten().copied().collect();
        for peer in peers {
            if self.parts.membership.is_connected(&peer) {
                continue;
            }
            let parts = self.parts.clone();
            tokio::spawn(async move {
                if let Err(error) = connect(&parts, peer).await {
                    tracing::debug!(target: TARGET, %peer, %error, "cannot reach a node asked for a run's ends; trying again later");
                }
            });
        }
    }

    /// Takes up what the store says is owed: handoff intents that no offer in the outbox
    /// carries yet, and receipts of offered stages that ended here while their notice was
    /// dropped.
    async fn resume(&mut self) -> Result<(), Halt> {
        let running: Vec<(RunId, String)> = self
            .running
            .iter()
            .filter(|(_, id)| {
                matches!(
                    self.machine.incoming(id),
                    Some(
                        machine::IncomingState::Fetching { .. }
                            | machine::IncomingState::Running { .. }
                    )
                )
            })
            .map(|((run, stage), _)| (*run, stage.clone()))
            .collect();
        let store = self.parts.store.clone();
        let found = blocking(move || -> Result<_, store::Error> {
            let intents = store.handoff_intents()?;
            let mut receipts = Vec::new();
            for (run, stage) in running {
                let Some(record) = store.stage(&run, &stage)? else {
                    continue;
                };
                let Some(n) = record.last_attempt().map(|a| a.n) else {
                    continue;
                };
                if let Some(bytes) = store.receipt(&run, &stage, n)? {
                    receipts.push((run, stage, n, bytes));
                }
            }
            Ok((intents, receipts))
        })
        .await;
        let (intents, receipts) = match found {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(target: TARGET, %error, "cannot read the handoff intents; trying again later");
                return Ok(());
            }
        };
        for intent in intents {
            self.hand_off(intent.run, intent.stage).await?;
        }
        for (run, stage, attempt, envelope) in receipts {
            self.own_receipt(run, stage, attempt, &envelope).await?;
        }
        Ok(())
    }

    /// Forgets the runs that ended here more than [`RUN_LINGER_MS`] ago: their state in
    /// this task and their status topic.
    async fn prune(&mut self) {
        let mut runs: HashSet<RunId> = self.shared.iter().copied().collect();
        runs.extend(self.views.keys().copied());
        runs.extend(self.plans.keys().copied());
        runs.extend(self.running.keys().map(|(run, _)| *run));
        runs.extend(self.deferred.iter().map(|d| d.run));
        runs.extend(
            self.offers
                .values()
                .filter_map(|o| o.run.parse::<RunId>().ok()),
        );
        if runs.is_empty() {
            return;
        }
        let store = self.parts.store.clone();
        let now = now_ms();
        let ended = blocking(move || -> Result<Vec<RunId>, store::Error> {
            let mut ended = Vec::new();
            for run in runs {
                if store.run(&run)?.is_some_and(|r| {
                    r.state.is_final()
                        && r.finished_at
                            .is_some_and(|at| at.saturating_add(RUN_LINGER_MS) <= now)
                }) {
                    ended.push(run);
                }
            }
            Ok(ended)
        })
        .await
        .unwrap_or_default();
        for run in ended {
            self.forget_run(run).await;
        }
    }

    async fn forget_run(&mut self, run: RunId) {
        let text = run.to_string();
        self.shared.remove(&run);
        self.views.remove(&run);
        self.plans.remove(&run);
        self.running.retain(|(r, _), _| *r != run);
        self.offers.retain(|_, offer| offer.run != text);
        self.deferred.retain(|d| d.run != run);
        self.receipt_replies.retain(|(r, _, _), _| *r != text);
        self.unresolved.retain(|(r, _), _| *r != run);
        self.retries.retain(|(r, _), _| *r != run);
        self.fetches.retain(|(r, _), f| *r != run || f.busy);
        self.asked.remove(&run);
        self.status.forget(run);
        if let Err(error) = self.parts.mesh.unsubscribe(&text).await {
            tracing::debug!(target: TARGET, %run, %error, "cannot leave the run's topic");
        }
        tracing::debug!(target: TARGET, %run, "the run ended: its state here is dropped");
    }

    async fn on_mesh(&mut self, event: mesh::Event) -> Result<(), Halt> {
        match event {
            mesh::Event::Offer {
                peer,
                envelope,
                reply,
            } => self.on_offer(peer, envelope, reply).await,
            mesh::Event::Receipt {
                peer,
                envelope,
                reply,
            } => self.on_receipt(peer, envelope, reply).await,
            mesh::Event::Retry {
                peer,
                envelope,
                reply,
            } => {
                self.on_retry(peer, envelope, reply).await;
                Ok(())
            }
            mesh::Event::Status {
                run,
                author,
                envelope,
            } => {
                self.on_gossip(&run, &author, envelope.into_inner()).await;
                Ok(())
            }
            mesh::Event::LogRequest {
                peer,
                envelope,
                reply,
            } => {
                self.on_log_request(peer, envelope, reply).await;
                Ok(())
            }
            mesh::Event::Subscribed { run, peer } => {
                if let Ok(run) = run.parse::<RunId>() {
                    self.status.subscribed(run);
                    if self.told.may_tell(run, peer, now_ms()) {
                        self.tell_again(run).await;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn on_offer(
        &mut self,
        peer: PeerId,
        envelope: Unverified<Envelope>,
        reply: ResponseHandle,
    ) -> Result<(), Halt> {
        let id = machine::offer_id(envelope.peek());
        let stored = match id {
            Some(id) => {
                let store = self.parts.store.clone();
                blocking(move || store.inbox_get(&id.0))
                    .await
                    .ok()
                    .flatten()
            }
            None => None,
        };
        let stored = stored.and_then(|entry| {
            let offer = otto_protocol::decode_envelope(&entry.offer).ok()?;
            Some(inbox_record(peer.to_string(), offer, &entry))
        });
        if let Some(id) = id {
            self.replies.insert(id, reply);
        }
        let event = {
            let trust = self.parts.membership.trust();
            let store = self.parts.store.clone();
            let seen = {
                let store = store.clone();
                move |id: &HandoffId| store.inbox_get(&id.0).ok().flatten().is_some()
            };
            // What this node holds of the offered stage: the attempts it began, whether it
            // succeeded here. A store that cannot say refuses nothing it would not refuse
            // anyway: it reads as a stage never seen, and the run's record decides later.
            let prior = move |run: &str, stage: &str| {
                let Ok(run) = run.parse::<RunId>() else {
                    return rules::Prior::default();
                };
                match store.stage(&run, stage) {
                    Ok(Some(record)) => rules::Prior {
                        last_attempt: record.attempts.iter().map(|a| a.n).max(),
                        succeeded: record.state == StageState::Succeeded,
                    },
                    _ => rules::Prior::default(),
                }
            };
            // This node publishes no blueprints yet: every foreign stage is approved by
            // its definition digest.
            let publishes = |_: &Body, _: &otto_pipeline::plan::Stage| false;
            let org = *self.parts.membership.verified_certificate().org_key();
            let me = self.parts.membership.node_key().public_key();
            // A stage without an owner runs here only if this node started its run, with
            // this plan: its own records say so, not the plan.
            let runs = self.parts.store.clone();
            let started = move |run: &str, digest: &str| {
                run.parse::<RunId>()
                    .ok()
                    .and_then(|run| runs.run(&run).ok().flatten())
                    .is_some_and(|record| {
                        !record.started_by.starts_with(crate::engine::OFFERED_BY)
                            && record.plan_digest.to_string() == digest
                    })
            };
            // The transport authenticated the peer: the offer must be its own.
            let from = peer_key(&peer);
            let verify = VerifyContext {
                trust: &trust,
                org: &org,
                from: from.as_ref(),
                owners: self.parts.owners,
                answers_to: &self.parts.answers_to,
                node: Some(&me),
                started: &started,
                seen: &seen,
                prior: &prior,
                publishes: &publishes,
                refuses_others: self.parts.refuses_others.as_deref(),
            };
            // Checking signatures and the chain is CPU work: off the async workers.
            let machine = &mut self.machine;
            offload(|| {
                machine.handle(Command::OfferReceived(command::OfferReceived {
                    peer: peer.to_string(),
                    envelope,
                    stored,
                    verify: &verify,
                    now: now_ms(),
                }))
            })
        };
        self.after(event).await
    }

    async fn on_receipt(
        &mut self,
        peer: PeerId,
        envelope: Unverified<Envelope>,
        reply: ResponseHandle,
    ) -> Result<(), Halt> {
        let Some(key) = peer_key(&peer) else {
            return Ok(());
        };
        let Ok(envelope) = offload(|| envelope.verify(&key)) else {
            tracing::warn!(target: TARGET, %peer, "a receipt whose signature does not verify; dropped");
            return Ok(());
        };
        let mut known = (None, false);
        if let Ok(receipt) = envelope.payload_as::<Receipt>() {
            // What the store says of the stage: whom it was given to, and whether this very
            // receipt is held (a copy sent again after a lost acknowledgement).
            if let Ok(run) = receipt.run.parse::<RunId>() {
                let store = self.parts.store.clone();
                let (stage, attempt) = (receipt.stage.clone(), receipt.attempt);
                let bytes = otto_protocol::encode_envelope(envelope.get());
                let read = blocking(move || -> Result<_, store::Error> {
                    let given = store.given_of(&run, &stage)?.map(|entry| entry.peer);
                    let held = store.receipt(&run, &stage, attempt)?.as_deref() == Some(&bytes);
                    Ok((given, held))
                })
                .await;
                match read {
                    Ok(found) => known = found,
                    Err(error) => {
                        tracing::warn!(target: TARGET, %error, "cannot read what the store knows of a receipt; it is not taken now");
                        return Ok(());
                    }
                }
            }
            self.receipt_replies.insert(
                (receipt.run.clone(), receipt.stage.clone(), receipt.attempt),
                reply,
            );
        }
        let (given, held) = known;
        let event = self.machine.handle(
            command::Receipt {
                peer: peer.to_string(),
                envelope,
                given,
                held,
                now: now_ms(),
            }
            .into(),
        );
        self.after(event).await
    }

    /// A notice of the engine: a stage to hand off, or a receipt it signed.
    async fn on_notice(&mut self, notice: Notice) -> Result<(), Halt> {
        match notice {
            Notice::HandOff { run, stage } => self.hand_off(run, stage).await,
            Notice::Retry {
                run,
                stage,
                attempt,
                mover,
                mover_name,
                by,
            } => {
                self.ask_retry(run, stage, attempt, mover, mover_name, by)
                    .await;
                Ok(())
            }
            Notice::Receipt {
                run,
                stage,
                attempt,
                envelope,
            } => self.own_receipt(run, stage, attempt, &envelope).await,
        }
    }

    /// A receipt this node signed: published to the run's other nodes, and sent back to
    /// the sender when it ends a stage offered here.
    async fn own_receipt(
        &mut self,
        run: RunId,
        stage: String,
        attempt: u32,
        envelope: &[u8],
    ) -> Result<(), Halt> {
        let Ok(envelope) = otto_protocol::decode_envelope(envelope) else {
            return Ok(());
        };
        if self.shared.contains(&run) {
            self.publish(run, &envelope).await;
        }
        let Some(id) = self.running.get(&(run, stage.clone())).copied() else {
            return Ok(());
        };
        if !matches!(
            self.machine.incoming(&id),
            Some(machine::IncomingState::Fetching { .. } | machine::IncomingState::Running { .. })
        ) {
            return Ok(());
        }
        tracing::info!(target: TARGET, %run, %stage, attempt, "the offered stage ended; its receipt goes back");
        let event = self.machine.handle(
            command::StageFinished {
                id,
                receipt: envelope,
                now: now_ms(),
            }
            .into(),
        );
        self.after(event).await
    }

    /// An event of the engine's broadcast: the status of the stages this node runs.
    fn on_engine(&mut self, event: &EngineEvent) {
        if self.shared.contains(&event.run()) && self.status.is_local(event) {
            self.status.record(event);
        }
    }

    async fn on_done(&mut self, report: Done) -> Result<(), Halt> {
        let now = now_ms();
        let command = match report {
            Done::Answer(id, Ok(envelope)) => command::Answer {
                id,
                envelope: *envelope,
                now,
            }
            .into(),
            Done::Answer(id, Err(error)) => command::SendFailed { id, error, now }.into(),
            Done::Fetched(id, Ok(())) => command::ArtifactsReady { id, now }.into(),
            Done::Fetched(id, Err(error)) => command::ArtifactsFailed { id, error, now }.into(),
            Done::ReceiptSent(id, Ok(())) => {
                // The node the stage was given by holds its receipt now: the ends it may
                // have missed while it was down are told again, and now it can judge them
                // (who moves the next stage on is read from that receipt).
                if let Some(run) = self.offers.get(&id).and_then(|o| o.run.parse().ok()) {
                    self.tell_again(run).await;
                }
                command::ReceiptAcked { id, now }.into()
            }
            Done::ReceiptSent(id, Err(error)) => command::ReceiptFailed { id, error, now }.into(),
            Done::ReceiptRefused(id, reason) => command::ReceiptRefused { id, reason, now }.into(),
            Done::LogFetched(run, stage, used, result) => {
                self.log_fetched(run, stage, used, result).await;
                return Ok(());
            }
            Done::RetryAnswer(run, stage, attempt, mover, answer) => {
                let run_text = run.to_string();
                match answer {
                    Ok(()) => {
                        tracing::info!(target: TARGET, %run, %stage, attempt, %mover, "the node that moves the stage on took the retry");
                        let note = format!(
                            "retried as attempt {attempt}: {mover}, which moves it on, offers it again"
                        );
                        self.note(&run_text, &stage, note).await;
                    }
                    Err(reason) => {
                        tracing::warn!(target: TARGET, %run, %stage, attempt, %mover, %reason, "the retry did not reach the node that moves the stage on, or it refused it");
                        let note =
                            format!("the retry of {stage} as attempt {attempt} failed: {reason}");
                        self.fail(&run_text, &stage, note).await;
                    }
                }
                return Ok(());
            }
        };
        let event = self.machine.handle(command);
        self.after(event).await
    }

    /// Reacts to a machine event, then carries out its queued actions in order. A durable
    /// write that fails stops here, before any action after it (a message that must not
    /// leave without it): the exchange halts and starts again from the store.
    async fn after(&mut self, event: Event) -> Result<(), Halt> {
        self.on_event(event).await?;
        let actions: Vec<Action> = self.machine.drain_actions().collect();
        for action in actions {
            let durable = action.is_durable_write();
            if let Err(error) = self.act(action).await {
                if durable {
                    return Err(Halt(error));
                }
                tracing::error!(target: TARGET, %error, "a handoff action failed");
            }
        }
        Ok(())
    }

    /// Shows what the machine decided on the stages concerned.
    async fn on_event(&mut self, event: Event) -> Result<(), Halt> {
        match event {
            Event::Answer(event::Answer::Accepted {
                id,
                run,
                stage,
                peer,
            }) => {
                // Kept until its receipt comes, before the outbox lets it go: after a
                // restart only this peer may still end the stage.
                let store = self.parts.store.clone();
                blocking(move || store.outbox_given(&id.0))
                    .await
                    .map_err(|e| Halt(format!("cannot keep an accepted offer: {e}")))?;
                let who = self.node_name(&peer);
                self.note(&run, &stage, format!("accepted by {who}; running there"))
                    .await;
            }
            Event::Answer(event::Answer::Rejected {
                run,
                stage,
                peer,
                code,
                message,
                hint,
                ..
            }) => {
                let who = self.node_name(&peer);
                let mut note = format!("{who} rejected {stage}: {message}");
                if let Some(hint) = hint {
                    // The owner words its hint for itself; here it names the owner.
                    let hint = hint.replace("on this node", &format!("on {who}"));
                    note.push_str(&format!("; {hint}"));
                }
                note.push_str(&format!(" ({code})"));
                tracing::warn!(target: TARGET, %run, %stage, %code, %note, "offer rejected");
                let by = self.attempt_node(&peer).map(|node| AttemptNode {
                    refused: true,
                    ..node
                });
                self.fail_by(&run, &stage, note, by).await;
            }
            Event::Tick(tick) => {
                for expired in tick.expired {
                    let who = self.node_name(&expired.peer);
                    let note = format!(
                        "the offer of {} to {who} expired without an answer",
                        expired.stage
                    );
                    self.fail(&expired.run, &expired.stage, note).await;
                }
            }
            Event::OfferReceived(event::OfferReceived::Accepted {
                id,
                run,
                stage,
                org,
                node,
                definition,
                ..
            }) => {
                let how = match definition {
                    Definition::Blueprint { library, name } => {
                        format!("blueprint {name} of {library}")
                    }
                    Definition::Inline { digest } => format!("approved steps {digest}"),
                    Definition::Own { digest } => format!("its own run's steps {digest}"),
                };
                tracing::info!(target: TARGET, %run, %stage, %org, %node, id = %id, %how, "offer accepted");
            }
            Event::Receipt(event::Receipt::Refused {
                peer,
                run,
                stage,
                attempt,
                given_to,
            }) => {
                // Not stored; the refusal answers the request (Action::RefuseReceipt).
                let (who, owner) = (self.node_name(&peer), self.node_name(&given_to));
                tracing::warn!(target: TARGET, %run, %stage, attempt, from = %who, given_to = %owner, "a receipt from a node the stage was not given to; refused");
            }
            Event::Receipt(event::Receipt::Stray {
                peer,
                run,
                stage,
                attempt,
            }) => {
                // Not stored: nobody was given the stage by this node (its offer expired
                // before an accept came, say, and the node restarted since). The refusal
                // answers the request (Action::RefuseReceipt), and the sender stops.
                let who = self.node_name(&peer);
                tracing::warn!(target: TARGET, %run, %stage, attempt, from = %who, "a receipt for a stage this node gave to nobody; refused");
            }
            Event::ReceiptRefused(event::ReceiptRefused::GivenUp { id, reason }) => {
                let (run, stage) = self
                    .offers
                    .get(&id)
                    .map(|o| (o.run.clone(), o.stage.clone()))
                    .unwrap_or_default();
                tracing::warn!(target: TARGET, %run, %stage, id = %id, %reason, "the node that offered the stage refused its receipt; it is not sent again");
            }
            Event::OfferReceived(event::OfferReceived::Rejected { rejection, .. }) => {
                tracing::warn!(target: TARGET, code = %rejection.code, message = %rejection.message, "offer rejected");
            }
            _ => {}
        }
        Ok(())
    }

    /// Carries out one action of the machine.
    async fn act(&mut self, action: Action) -> Result<(), String> {
        let store = self.parts.store.clone();
        match action {
            Action::PersistOutbox {
                id,
                run,
                stage,
                peer,
                envelope,
                created_at,
                next_attempt_at,
            } => {
                let run: RunId = run.parse().map_err(|e| format!("run id: {e}"))?;
                let entry = OutboxEntry {
                    id: id.0,
                    run,
                    stage,
                    peer,
                    message: otto_protocol::encode_envelope(&envelope),
                    created_at,
                    next_attempt_at,
                    tries: 0,
                    last_error: None,
                };
                // The offer's handoff intent leaves the store in the same transaction.
                blocking(move || store.outbox_put(&entry))
                    .await
                    .map_err(err)?;
                failpoint::hit(failpoint::OUTBOX_WRITTEN);
            }
            Action::Send { id, peer, envelope } => {
                let parts = self.parts.clone();
                let done = self.done_tx.clone();
                tokio::spawn(async move {
                    let result = send_offer(&parts, &peer, (*envelope).clone())
                        .await
                        .map(Box::new);
                    let _ = done.send(Done::Answer(id, result)).await;
                });
            }
            Action::RetryOutbox {
                id,
                next_attempt_at,
                error,
                ..
            } => {
                blocking(move || store.outbox_retry(&id.0, next_attempt_at, &error))
                    .await
                    .map_err(err)?;
            }
            Action::AckOutbox { id } => {
                blocking(move || store.outbox_ack(&id.0))
                    .await
                    .map_err(err)?;
            }
            Action::PersistReceipt {
                run,
                stage,
                attempt,
                receipt,
            } => {
                let run_id: RunId = run.parse().map_err(|e| format!("run id: {e}"))?;
                let bytes = otto_protocol::encode_envelope(&receipt);
                let (s, st) = (store.clone(), stage.clone());
                match blocking(move || s.put_receipt(&run_id, &st, attempt, &bytes)).await {
                    Ok(_) | Err(store::Error::ReceiptConflict { .. }) => {}
                    Err(error) => return Err(error.to_string()),
                }
                failpoint::hit(failpoint::RECEIPT_STORED);
                let (s, st) = (store.clone(), stage.clone());
                blocking(move || s.drop_given(&run_id, &st))
                    .await
                    .map_err(err)?;
                if let Ok(decoded) = receipt.payload_as::<Receipt>() {
                    self.record_receipt(run_id, decoded).await;
                }
            }
            Action::AckReceipt {
                run,
                stage,
                attempt,
                ..
            } => {
                if let Some(reply) = self.receipt_replies.remove(&(run, stage.clone(), attempt)) {
                    // A receipt names no handoff id: the acknowledgement's is all zero.
                    let ack = Message::Accept(Accept {
                        id: HandoffId([0; 16]),
                        stage,
                        attempt,
                    });
                    let signed = self
                        .parts
                        .membership
                        .sign(&ack)
                        .map_err(|e| e.to_string())?;
                    tokio::spawn(async move {
                        let _ = reply.send(signed).await;
                    });
                }
            }
            Action::RefuseReceipt {
                run,
                stage,
                attempt,
                reason,
                ..
            } => {
                if let Some(reply) = self.receipt_replies.remove(&(run, stage, attempt)) {
                    // A receipt names no handoff id: the refusal's is all zero.
                    let refusal = Message::Reject(otto_protocol::Reject {
                        id: HandoffId([0; 16]),
                        code: otto_protocol::RejectCode::ReceiptRefused,
                        message: reason,
                        hint: None,
                    });
                    let signed = self
                        .parts
                        .membership
                        .sign(&refusal)
                        .map_err(|e| e.to_string())?;
                    tokio::spawn(async move {
                        let _ = reply.send(signed).await;
                    });
                }
            }
            Action::PersistInbox {
                id,
                peer,
                offer,
                received_at,
                state,
                verdict,
            } => {
                let answer = self.sign_verdict(&verdict)?;
                let bytes = otto_protocol::encode_envelope(&offer);
                let answer_bytes = otto_protocol::encode_envelope(&answer);
                let (s, now) = (store.clone(), now_ms());
                blocking(move || {
                    s.inbox_put_answered(&id.0, &bytes, received_at, &answer_bytes, state, now)
                })
                .await
                .map_err(err)?;
                failpoint::hit(failpoint::INBOX_WRITTEN);
                if state == machine::InboxState::Accepted
                    && let Ok(decoded) = offer.payload_as::<Offer>()
                {
                    self.accepted(id, &peer, decoded).await?;
                    failpoint::hit(failpoint::GUEST_RUN_RECORDED);
                }
            }
            Action::Reply { id, verdict, .. } => {
                let answer = self.sign_verdict(&verdict)?;
                if let Some(reply) = self.replies.remove(&id) {
                    tokio::spawn(async move {
                        let _ = reply.send(answer).await;
                    });
                }
            }
            Action::FetchArtifacts { id, peer, inputs } => {
                let parts = self.parts.clone();
                let done = self.done_tx.clone();
                let obtain = self.offers.get(&id).map(|offer| self.obtain(offer));
                tokio::spawn(async move {
                    let mut wanted: Vec<(WireDigest, String)> = inputs
                        .iter()
                        .map(|i| (i.sha256, i.provider.clone()))
                        .collect();
                    let result = match obtain {
                        Some(Ok(Obtain::Snapshot { digest })) => {
                            wanted.push((digest, peer.clone()));
                            Ok(())
                        }
                        Some(Ok(obtain)) => obtain_commit(&parts, &peer, &obtain).await,
                        Some(Err(reason)) => {
                            tracing::warn!(target: TARGET, %reason, "the run's source cannot be had");
                            Ok(())
                        }
                        None => Ok(()),
                    };
                    let result = match result {
                        Ok(()) => fetch_all(&parts, &wanted).await,
                        Err(error) => Err(error),
                    };
                    let _ = done.send(Done::Fetched(id, result)).await;
                });
            }
            Action::StartStage { id, offer, attempt } => {
                let run: RunId = offer.run.parse().map_err(|e| format!("run id: {e}"))?;
                self.running.insert((run, offer.stage.clone()), id);
                let by = offer
                    .sender
                    .payload_as::<otto_protocol::NodeCertificate>()
                    .map_or_else(
                        |_| "the node that offered it".to_owned(),
                        |c| format!("{}{}@{}", crate::engine::OFFERED_BY, c.node, c.org),
                    );
                self.parts
                    .engine
                    .start_offered(run, offer.stage.clone(), attempt, by)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Action::SendReceipt { id, peer, receipt } => {
                let parts = self.parts.clone();
                let done = self.done_tx.clone();
                tokio::spawn(async move {
                    let report = match send_receipt(&parts, &peer, (*receipt).clone()).await {
                        Ok(Delivery::Acked) => Done::ReceiptSent(id, Ok(())),
                        Ok(Delivery::Refused(reason)) => Done::ReceiptRefused(id, reason),
                        Err(error) => Done::ReceiptSent(id, Err(error)),
                    };
                    let _ = done.send(report).await;
                });
            }
            Action::InboxDone { id } => {
                blocking(move || store.inbox_done(&id.0))
                    .await
                    .map_err(err)?;
            }
            Action::Wakeup { at } => self.wakeup = Some(at),
        }
        Ok(())
    }

    /// How this node gets the source of an accepted offer's run, by the same rule
    /// `verify_offer` applied (check 11b), against the trust store as it is now. `Err`:
    /// it cannot be had any more (the policy changed, say), recorded for the stage to say.
    fn obtain(&self, offer: &Offer) -> Result<Obtain, String> {
        let own = offer.run.parse::<RunId>().ok().is_some_and(|run| {
            self.parts
                .store
                .run(&run)
                .ok()
                .flatten()
                .is_some_and(|r| !r.started_by.starts_with(crate::engine::OFFERED_BY))
        });
        let refused = |reason: String| {
            if let (RunSource::Git { url, commit, .. }, Some(sources)) =
                (&offer.source, &self.parts.sources)
            {
                sources.repos.record_refusal(url, commit, &reason);
            }
            reason
        };
        let trust = self.parts.membership.trust();
        let cert = trust
            .verify_cert(&offer.sender, now_ms() / 1000)
            .map_err(|e| refused(format!("the sender's certificate: {e}")))?;
        let body: Body = serde_json::from_slice(&offer.plan)
            .map_err(|e| refused(format!("the plan does not read: {e}")))?;
        otto_handoff::source::check_source(&trust, cert.org(), &body, &offer.source, own)
            .map_err(|rejection| refused(rejection.message))
    }

    /// The git bundle of the commit of `run`, when its source is one and a mirror here
    /// has the commit; `None` otherwise (the owner then fetches the commit itself, if its
    /// policy lets it, or refuses the offer saying so).
    async fn bundle_of(&self, run: RunId) -> Option<otto_protocol::GitBundle> {
        let sources = self.parts.sources.clone()?;
        let store = self.parts.store.clone();
        let record = blocking(move || store.run(&run)).await.ok().flatten()?;
        let store::Source::Git { url, commit } = record.source else {
            return None;
        };
        match sources
            .repos
            .bundle(&url, &commit, &self.parts.blobs, MAX_BUNDLE_BYTES)
            .await
        {
            Ok(bundle) => bundle,
            Err(error) => {
                tracing::warn!(target: TARGET, %run, %error, "no git bundle of the run's commit goes with its offer");
                None
            }
        }
    }

    /// An offer is accepted and persisted: record its run here (the upstream stages from
    /// its receipts), learn its signers' certificates, and follow the run's status.
    async fn accepted(&mut self, id: HandoffId, peer: &str, offer: Offer) -> Result<(), String> {
        let now = now_ms();
        let membership = &self.parts.membership;
        for cert in std::iter::once(&offer.sender).chain(offer.certificates.iter()) {
            if let Err(error) = membership.record_cert(cert, now / 1000) {
                tracing::debug!(target: TARGET, %error, "a certificate in an offer was not recorded");
            }
        }
        // Who offered it, by the org this node's trust store pins its certificate's key
        // under: the org name a certificate claims is the peer's to choose (it could
        // claim this node's own), the pinned name is not.
        let offered_by = match membership.trust().verify_cert(&offer.sender, now / 1000) {
            Ok(cert) => format!("{}@{}", cert.node(), cert.org()),
            Err(_) => peer.to_owned(),
        };
        let store = self.parts.store.clone();
        let copy = offer.clone();
        blocking(move || offers::record_guest_run(&store, &copy, &offered_by, now))
            .await
            .map_err(|e| e.to_string())?;
        let run: RunId = offer.run.parse().map_err(|e| format!("run id: {e}"))?;
        for envelope in &offer.receipts {
            if let Ok(receipt) = envelope.payload_as::<Receipt>() {
                let bytes = otto_protocol::encode_envelope(envelope);
                let store = self.parts.store.clone();
                let (stage, attempt) = (receipt.stage.clone(), receipt.attempt);
                let _ = blocking(move || store.put_receipt(&run, &stage, attempt, &bytes)).await;
                self.record_receipt(run, receipt).await;
            }
        }
        self.shared.insert(run);
        self.subscribe(run).await;
        self.offers.insert(id, Arc::new(offer));
        Ok(())
    }

    /// Tells the run's other nodes again the ends this node holds of `run`
    /// ([`relay::again`]): its own receipts, relays of the other nodes' ends, and relays
    /// of the failures of other nodes' stages it recorded without a receipt. Gossip
    /// does not reach a node that is down, and each end is told once: a node that
    /// restarted (the node that started the run, say, while another org's node moved the
    /// next stage on to a third org) learns this way how its run went on.
    async fn tell_again(&mut self, run: RunId) {
        let store = self.parts.store.clone();
        let read = blocking(move || -> Result<_, store::Error> {
            Ok((
                crate::engine::receipts::stored(&store, &run)?,
                store.stages(&run)?,
            ))
        })
        .await;
        let (held, stages) = match read {
            Ok(read) => read,
            Err(error) => {
                tracing::debug!(target: TARGET, %run, %error, "cannot read the run's receipts to tell them again");
                return;
            }
        };
        // The failures recorded here of stages another node runs that no receipt holds:
        // a stage refused at a handoff, two orgs away or failed here as its mover.
        let mut unsigned = Vec::new();
        for stage in stages {
            if stage.state != StageState::Failed
                || held.iter().any(|(receipt, _)| receipt.stage == stage.id)
            {
                continue;
            }
            if self.here(run, &stage.id).await.is_none_or(|here| here.mine) {
                continue;
            }
            unsigned.push(relay::End {
                run: run.to_string(),
                attempt: stage.last_attempt().map_or(1, |a| a.n),
                outcome: otto_protocol::Outcome::Failure,
                origin: stage
                    .note
                    .as_deref()
                    .unwrap_or("failed on another node")
                    .chars()
                    .take(relay::MAX_ORIGIN)
                    .collect(),
                stage: stage.id,
            });
        }
        let membership = &self.parts.membership;
        let me = otto_protocol::KeyBytes(*membership.node_key().public_key().as_bytes());
        let name = membership.verified_certificate().node().to_owned();
        let told = relay::again(&held, &unsigned, &me, &name, now_ms());
        if !told.is_empty() {
            tracing::debug!(target: TARGET, %run, ends = told.len(), "telling the run's ends again");
        }
        for again in told {
            match again {
                relay::Again::Receipt(envelope) => self.publish(run, envelope).await,
                relay::Again::Relay(status) => {
                    match self.parts.membership.sign(&Message::Status(status)) {
                        Ok(envelope) => self.publish(run, &envelope).await,
                        Err(error) => {
                            tracing::warn!(target: TARGET, %error, "cannot sign a status event");
                        }
                    }
                }
            }
        }
    }

    /// Records a verified receipt of a stage another node ran on the stage here.
    async fn record_receipt(&mut self, run: RunId, receipt: Receipt) {
        if receipt.node.key.0 == *self.parts.membership.node_key().public_key().as_bytes() {
            return;
        }
        let here = self.here(run, &receipt.stage).await;
        if here.as_ref().is_some_and(|h| h.mine) {
            return;
        }
        let known = here
            .as_ref()
            .is_some_and(|h| h.attempt_ended(receipt.attempt));
        self.status.remote(run, &receipt.stage);
        let state = StageState::from_wire(rules::state_of(receipt.outcome));
        let update = RemoteStage {
            run,
            stage: receipt.stage.clone(),
            ended: Some(RemoteEnd {
                state,
                started_at: receipt.started_ms(),
                finished_at: receipt.finished_ms(),
                artifacts: receipt
                    .outputs
                    .iter()
                    .map(|a| (a.name.clone(), Digest::from_bytes(a.sha256.0), a.size))
                    .collect(),
                node: Some(AttemptNode::ran(&receipt.node.name, &receipt.node.org)),
            }),
            note: None,
            log: Vec::new(),
            attempt: receipt.attempt,
            numbered: None,
            hold_jumps: false,
        };
        let origin = relay::origin_of(&receipt);
        let update = RemoteStage {
            note: Some(format!("{origin}, receipt verified")),
            ..update
        };
        if let Err(error) = self.parts.engine.remote_stage(update).await {
            tracing::warn!(target: TARGET, %run, stage = %receipt.stage, %error, "cannot record a receipt");
            return;
        }
        let end = status::LearntEnd {
            run,
            stage: receipt.stage,
            attempt: receipt.attempt,
            state,
            origin,
        };
        self.ended_elsewhere(&end, known).await;
    }

    /// After the end of another node's stage was recorded here: records the relayed ends
    /// it unblocks and vouches for it on the run's topic the first time (`known`: the end
    /// was recorded here before).
    async fn ended_elsewhere(&mut self, end: &status::LearntEnd, known: bool) {
        self.record_deferred(end.run).await;
        let me = self
            .parts
            .membership
            .verified_certificate()
            .node()
            .to_owned();
        let Some(relay) = self.status.relay(end, false, known, &me, now_ms()) else {
            return;
        };
        match self.parts.membership.sign(&Message::Status(relay)) {
            Ok(envelope) => self.publish(end.run, &envelope).await,
            Err(error) => tracing::warn!(target: TARGET, %error, "cannot sign a status event"),
        }
    }

    /// Records the deferred relayed ends of `run` that may be recorded now.
    async fn record_deferred(&mut self, run: RunId) {
        loop {
            if !self.deferred.iter().any(|d| d.run == run) {
                return;
            }
            let Some(view) = self.views.get(&run).cloned() else {
                return;
            };
            let ended = self.ended_stages(run).await;
            let Some(i) = self.deferred.iter().position(|d| {
                d.run == run
                    && (ended.contains(&d.stage)
                        || d.ended
                            .as_ref()
                            .is_none_or(|e| view.may_record(&d.stage, e.state, &ended)))
            }) else {
                return;
            };
            let update = self.deferred.swap_remove(i);
            if ended.contains(&update.stage) {
                continue;
            }
            let stage = update.stage.clone();
            if let Err(error) = self.parts.engine.remote_stage(update).await {
                tracing::debug!(target: TARGET, %run, %stage, %error, "cannot record a relayed end");
            }
        }
    }

    /// The stages of `run` that ended here.
    async fn ended_stages(&self, run: RunId) -> HashSet<String> {
        let store = self.parts.store.clone();
        blocking(move || store.stages(&run))
            .await
            .map(|stages| {
                stages
                    .into_iter()
                    .filter(|s| s.state.is_final())
                    .map(|s| s.id)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Where `stage` of `run` stands here, or `None` when the run or its plan is not here.
    async fn here(&mut self, run: RunId, stage: &str) -> Option<Here> {
        let view = match self.views.get(&run) {
            Some(view) => view.clone(),
            None => {
                let store = self.parts.store.clone();
                let answers_to = self.parts.answers_to.clone();
                let view = blocking(move || {
                    let Some(record) = store.run(&run)? else {
                        return Ok(None);
                    };
                    let Some(plan) = store.plan(&record.plan_digest)? else {
                        return Ok(None);
                    };
                    let Ok(body) = serde_json::from_slice::<Body>(&plan) else {
                        return Ok(None);
                    };
                    let started_here = !record.started_by.starts_with(crate::engine::OFFERED_BY);
                    Ok::<_, store::Error>(Some(status::RunView::new(
                        &body,
                        started_here,
                        &answers_to,
                    )))
                })
                .await
                .ok()
                .flatten()?;
                let view = Arc::new(view);
                self.views.insert(run, view.clone());
                view
            }
        };
        let store = self.parts.store.clone();
        let id = stage.to_owned();
        let me = *self.parts.membership.node_key().public_key().as_bytes();
        let (record, signed_here) = blocking(move || {
            let record = store.stage(&run, &id)?;
            // Only a stage that ended here can have a receipt of this node.
            let signed_here = record.as_ref().is_some_and(|s| s.state.is_final())
                && crate::engine::receipts::stored(&store, &run)?
                    .iter()
                    .any(|(r, _)| r.stage == id && r.node.key.0 == me);
            Ok::<_, store::Error>((record, signed_here))
        })
        .await
        .ok()?;
        let offered_here = self.running.contains_key(&(run, stage.to_owned()));
        let mine = view.runs_here(
            stage,
            record.as_ref().map(|s| s.state),
            offered_here,
            signed_here,
        );
        Some(Here {
            view,
            stage: record,
            mine,
        })
    }

    /// Builds, signs and hands to the machine the offer of a stage this node moves on, if
    /// the stage's handoff intent is still in the store (no offer in the outbox carries it
    /// yet) and a known node answers to its owner. Otherwise the intent stays and is taken
    /// up again later ([`MAINTAIN_EVERY`]).
    async fn hand_off(&mut self, run: RunId, stage: String) -> Result<(), Halt> {
        let store = self.parts.store.clone();
        let id = stage.clone();
        let found = blocking(move || -> Result<_, store::Error> {
            let Some(intent) = store.handoff_intent(&run, &id)? else {
                return Ok(None);
            };
            let stage = store.stage(&run, &id)?;
            let Some(stage) = stage.filter(|s| s.state == StageState::HandedOff) else {
                // It ended (or was never handed off here): nothing is owed any more.
                store.drop_handoff_intent(&run, &id)?;
                return Ok(None);
            };
            // Where it goes is the core's rule, read from the run's plan.
            let record = store.run(&run)?;
            let body = match &record {
                Some(record) => store
                    .plan(&record.plan_digest)?
                    .and_then(|bytes| serde_json::from_slice::<Body>(&bytes).ok()),
                None => None,
            };
            let to = body
                .as_ref()
                .and_then(|body| {
                    let stage = body.stages.iter().find(|s| s.id == id)?;
                    Some(rules::offer_to(body, stage))
                })
                .unwrap_or(rules::OfferTo::Owner(intent.owner));
            // A retry this node decides itself: the run started here.
            let origin = record
                .filter(|r| !r.started_by.starts_with(crate::engine::OFFERED_BY))
                .map(|r| {
                    let by = stage.retries.last().map(|r| r.by.clone());
                    (r.plan_digest.to_string(), by)
                });
            Ok(Some((to, next_attempt(&stage), origin)))
        })
        .await;
        let (to, attempt, origin) = match found {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(()),
            Err(error) => {
                tracing::warn!(target: TARGET, %run, %stage, %error, "cannot read a handoff intent; trying again later");
                return Ok(());
            }
        };
        let parts = self.parts.clone();
        let membership = &parts.membership;
        let resolved = match &to {
            rules::OfferTo::Owner(owner) => membership
                .resolve_owner(owner)
                .map(|node| (node, membership.owner_org_key(owner))),
            rules::OfferTo::Origin(key) => membership
                .resolve_node(key)
                .map(|(node, org)| (node, Some(org))),
        };
        let (node, to_org) = match resolved {
            Some((node, Some(to_org))) => (node, to_org),
            unresolved => {
                let now = now_ms();
                let key = (run, stage.clone());
                let first = !self.unresolved.contains_key(&key);
                let since = *self.unresolved.entry(key.clone()).or_insert(now);
                let waited = Duration::from_millis(now.saturating_sub(since));
                let note = match (unresolved, &to) {
                    (Some((node, _)), _) => {
                        format!("the certificate of {} names no usable org key", node.name)
                    }
                    (None, rules::OfferTo::Owner(owner)) => format!(
                        "no known node answers to {owner}: join its org first (otto-node join TOKEN)"
                    ),
                    (None, rules::OfferTo::Origin(key)) => format!(
                        "the node that started the run ({}) is not a node this node knows and trusts",
                        key.keyid()
                    ),
                };
                if waited >= self.parts.owner_wait {
                    self.unresolved.remove(&key);
                    let wait = self.parts.owner_wait.as_secs();
                    self.give_up(
                        run,
                        &stage,
                        format!("{note}; gave up after waiting {wait} s ([node] owner_wait_secs)"),
                    )
                    .await;
                } else if first {
                    self.note(&run.to_string(), &stage, note).await;
                }
                return Ok(());
            }
        };
        self.unresolved.remove(&(run, stage.clone()));
        // An attempt above 1 carries the origin's signed retry: one the origin sent this
        // node, the mover, or this node's own when it started the run.
        let (attempt, retry) = match self.retries.get(&(run, stage.clone())) {
            Some((n, retry)) if *n >= attempt => (*n, Some(retry.clone())),
            _ if attempt > 1 => match origin {
                Some((plan_digest, by)) => {
                    let reason = by.map_or_else(
                        || "retried by the node that started the run".to_owned(),
                        |by| format!("retried by {by}"),
                    );
                    let retry = self.sign_retry(run, &stage, attempt, plan_digest, reason);
                    (attempt, retry)
                }
                None => (attempt, None),
            },
            _ => (attempt, None),
        };
        let bundle = self.bundle_of(run).await;
        let mut id = [0u8; 16];
        crate::daemon::fill_random(&mut id);
        let spec = offers::OfferSpec {
            run,
            stage: stage.clone(),
            id: HandoffId(id),
            attempt,
            sender: membership.certificate().clone(),
            me: membership.node_key().public_key(),
            to_org,
            now: now_ms() / 1000,
            ttl: self.parts.offer_ttl.as_secs(),
            bundle,
            retry,
        };
        let store = self.parts.store.clone();
        let offer = match blocking(move || offers::build(&store, &spec)).await {
            Ok(offer) => offer,
            Err(error) => {
                self.give_up(run, &stage, format!("cannot offer {stage}: {error}"))
                    .await;
                return Ok(());
            }
        };
        let envelope = match membership.sign(&Message::Offer(offer)) {
            Ok(envelope) => envelope,
            Err(error) => {
                self.give_up(run, &stage, format!("cannot sign the offer: {error}"))
                    .await;
                return Ok(());
            }
        };
        failpoint::hit(failpoint::OFFER_SIGNED);
        self.shared.insert(run);
        self.subscribe(run).await;
        let event = self.machine.handle(
            command::HandOff {
                peer: node.peer_id.clone(),
                envelope,
                now: now_ms(),
            }
            .into(),
        );
        match &event {
            Event::HandOff(event::HandOff::Queued { .. }) => {
                tracing::info!(target: TARGET, %run, %stage, to = %node.name, org = %node.org, "offering the stage");
                let note = format!("offered to {} ({})", node.name, node.org);
                self.note(&run.to_string(), &stage, note).await;
            }
            Event::HandOff(event::HandOff::Full { pending, .. }) => {
                tracing::info!(target: TARGET, %run, %stage, pending, "too many offers wait for an answer; this one is made again later");
            }
            Event::HandOff(event::HandOff::Invalid { reason }) => {
                let note = format!("cannot offer {stage}: {reason}");
                self.give_up(run, &stage, note).await;
            }
            _ => {}
        }
        self.after(event).await
    }

    /// Fails a stage whose offer cannot be made, and forgets its handoff intent.
    /// `otto retry` here, the run's origin, of a stage another node moves on: sends that
    /// node this node's signed retry in the background; its answer comes back as
    /// [`Done::RetryAnswer`] (a refusal, or no answer, fails the stage here again with the
    /// reason).
    async fn ask_retry(
        &mut self,
        run: RunId,
        stage: String,
        attempt: u32,
        mover: otto_protocol::KeyBytes,
        mover_name: String,
        by: String,
    ) {
        let store = self.parts.store.clone();
        let digest = blocking(move || store.run(&run))
            .await
            .ok()
            .flatten()
            .map(|r| r.plan_digest.to_string());
        let node = PublicKey::from_bytes(&mover.0)
            .ok()
            .and_then(|key| self.parts.membership.resolve_node(&key));
        let reason = format!("retried by {by}");
        let signed = digest.and_then(|d| self.sign_retry(run, &stage, attempt, d, reason));
        let (Some(envelope), Some((node, _))) = (signed, node) else {
            let why = format!(
                "this node cannot ask {mover_name}, which moves {stage} on, to run it again: \
                 it is not a node this node knows and trusts (or the retry could not be signed)"
            );
            let _ = self
                .done_tx
                .send(Done::RetryAnswer(run, stage, attempt, mover_name, Err(why)))
                .await;
            return;
        };
        self.shared.insert(run);
        self.subscribe(run).await;
        let (mesh, done) = (self.parts.mesh.clone(), self.done_tx.clone());
        let peer = node.peer_id.clone();
        tokio::spawn(async move {
            let answer = match peer.parse::<PeerId>() {
                Ok(peer) => match mesh.send_retry(peer, envelope).await {
                    Ok(answer) => retry_answer(&peer, answer, &node.name),
                    Err(error) => Err(format!("{} did not answer: {error}", node.name)),
                },
                Err(error) => Err(format!("{} has no usable peer id: {error}", node.name)),
            };
            let _ = done
                .send(Done::RetryAnswer(run, stage, attempt, mover_name, answer))
                .await;
        });
    }

    /// The run's origin asks this node, the one that moves a stage on, to run it again:
    /// the core's rule checks the signed retry against what this node holds of the run
    /// ([`otto_handoff::retry::check_request`]); taken, the stage is reopened here with
    /// what depends on it and its next offer carries the retry (or it runs here, when
    /// this node owns it). The answer is a signed accept or reject.
    async fn on_retry(
        &mut self,
        peer: PeerId,
        envelope: Unverified<Envelope>,
        reply: ResponseHandle,
    ) {
        let envelope = envelope.into_inner();
        let retry = envelope.payload_as::<otto_protocol::Retry>();
        let id = retry.as_ref().map_or(HandoffId([0; 16]), |r| r.id);
        let verdict = match retry {
            Err(error) => Err(otto_handoff::Rejection::new(
                otto_protocol::RejectCode::Malformed,
                format!("the retry does not decode: {error}"),
            )),
            Ok(retry) => self.check_retry(&envelope, retry).await,
        };
        let answer = match &verdict {
            Ok((_, retry)) => Message::Accept(Accept {
                id,
                stage: retry.stage.clone(),
                attempt: retry.attempt,
            }),
            Err(rejection) => Message::Reject(rejection.to_reject(id)),
        };
        match &verdict {
            Ok((run, retry)) => {
                tracing::info!(target: TARGET, %run, stage = %retry.stage, attempt = retry.attempt, %peer, "the run's origin retries a stage this node moves on");
                self.retries.insert(
                    (*run, retry.stage.clone()),
                    (retry.attempt, envelope.clone()),
                );
                self.shared.insert(*run);
                self.subscribe(*run).await;
                let by = format!("{} (the run's origin)", retry.reason);
                if let Err(error) = self
                    .parts
                    .engine
                    .reopen(*run, retry.stage.clone(), by)
                    .await
                {
                    tracing::warn!(target: TARGET, %run, stage = %retry.stage, %error, "cannot reopen the retried stage");
                }
            }
            Err(rejection) => {
                tracing::warn!(target: TARGET, %peer, code = %rejection.code, reason = %rejection.message, "a retry refused");
            }
        }
        match self.parts.membership.sign(&answer) {
            Ok(signed) => {
                if let Err(error) = reply.send(signed).await {
                    tracing::debug!(target: TARGET, %peer, %error, "cannot answer a retry");
                }
            }
            Err(error) => {
                tracing::warn!(target: TARGET, %error, "cannot sign the answer to a retry")
            }
        }
    }

    /// What this node holds of the run a retry names, and the core's verdict on it.
    async fn check_retry(
        &self,
        envelope: &Envelope,
        retry: otto_protocol::Retry,
    ) -> Result<(RunId, otto_protocol::Retry), otto_handoff::Rejection> {
        let unknown = || {
            otto_handoff::Rejection::new(
                otto_protocol::RejectCode::StageNotOwned,
                format!("this node holds no run {:?}", retry.run),
            )
        };
        let run: RunId = retry.run.parse().map_err(|_| unknown())?;
        let store = self.parts.store.clone();
        let stage = retry.stage.clone();
        let held = blocking(move || -> Result<_, store::Error> {
            let Some(record) = store.run(&run)? else {
                return Ok(None);
            };
            let Some(plan) = store.plan(&record.plan_digest)? else {
                return Ok(None);
            };
            let receipts = crate::engine::receipts::stored(&store, &run)?;
            let last = store
                .stage(&run, &stage)?
                .and_then(|s| s.attempts.iter().map(|a| a.n).max());
            let started_here = !record.started_by.starts_with(crate::engine::OFFERED_BY);
            Ok(Some((
                record.plan_digest.to_string(),
                plan,
                receipts,
                last,
                started_here,
            )))
        })
        .await
        .map_err(|error| {
            otto_handoff::Rejection::new(
                otto_protocol::RejectCode::Internal,
                format!("cannot read the run: {error}"),
            )
        })?
        .ok_or_else(unknown)?;
        let (digest, plan, receipts, last_attempt, started_here) = held;
        let body: Body = serde_json::from_slice(&plan).map_err(|_| unknown())?;
        let me = otto_protocol::KeyBytes(*self.parts.membership.node_key().public_key().as_bytes());
        let trust = self.parts.membership.trust();
        let org = *self.parts.membership.verified_certificate().org_key();
        let owners = otto_handoff::Owners::new(&trust, Some(&org), &self.parts.answers_to)
            .with_policy(self.parts.owners);
        let now = now_ms() / 1000;
        let holding = otto_handoff::retry::Holding {
            body: &body,
            plan_digest: &digest,
            receipts: &receipts,
            me: &me,
            started_here,
            last_attempt,
        };
        let signed = otto_handoff::retry::check_request(
            envelope,
            &holding,
            &owners.trust_for(&body, now),
            now,
        )?;
        Ok((run, signed.retry))
    }

    /// This node's signed retry, as the run's origin, of attempt `attempt` of `stage`
    /// (`None`, logged, when it cannot sign).
    fn sign_retry(
        &self,
        run: RunId,
        stage: &str,
        attempt: u32,
        plan_digest: String,
        reason: String,
    ) -> Option<Envelope> {
        let mut id = [0u8; 16];
        crate::daemon::fill_random(&mut id);
        let retry = otto_protocol::Retry {
            id: HandoffId(id),
            run: run.to_string(),
            plan_digest,
            stage: stage.to_owned(),
            attempt,
            reason: truncated(&reason, otto_protocol::limits::MAX_TEXT_LEN),
            created_at: now_ms() / 1000,
            sender: self.parts.membership.certificate().clone(),
        };
        match self.parts.membership.sign(&Message::Retry(retry)) {
            Ok(envelope) => Some(envelope),
            Err(error) => {
                tracing::warn!(target: TARGET, %run, %stage, %error, "cannot sign the retry");
                None
            }
        }
    }

    async fn give_up(&mut self, run: RunId, stage: &str, note: String) {
        self.fail(&run.to_string(), stage, note).await;
        let store = self.parts.store.clone();
        let id = stage.to_owned();
        if let Err(error) = blocking(move || store.drop_handoff_intent(&run, &id)).await {
            tracing::warn!(target: TARGET, %run, %stage, %error, "cannot drop a handoff intent");
        }
    }

    async fn on_gossip(&mut self, run: &str, author: &PeerId, envelope: Envelope) {
        let Ok(run) = run.parse::<RunId>() else {
            return;
        };
        if let Ok(receipt) = envelope.payload_as::<Receipt>() {
            // Signed by the author (the mesh checked it); its signer must be the author.
            let Some(key) = peer_key(author) else {
                return;
            };
            if receipt.node.key.0 != *key.as_bytes() || receipt.run != run.to_string() {
                return;
            }
            if !self
                .may_tell(run, &receipt.stage, author, rules::Word::Receipt)
                .await
            {
                return;
            }
            let bytes = otto_protocol::encode_envelope(&envelope);
            let store = self.parts.store.clone();
            let (stage, attempt) = (receipt.stage.clone(), receipt.attempt);
            match blocking(move || store.put_receipt(&run, &stage, attempt, &bytes)).await {
                Ok(_) | Err(store::Error::ReceiptConflict { .. }) => {}
                Err(error) => {
                    tracing::warn!(target: TARGET, %error, "cannot store a gossiped receipt");
                    return;
                }
            }
            self.record_receipt(run, receipt).await;
        } else if let Ok(status) = envelope.payload_as::<otto_protocol::Status>() {
            let here = self.here(run, &status.stage).await;
            if here.as_ref().is_some_and(|h| h.mine) {
                // Another node's word never changes a stage this node runs or ran.
                return;
            }
            let relayed = status.seq == status::RELAY_SEQ;
            let word = if relayed || status.state == otto_protocol::StageState::Failed {
                rules::Word::End
            } else {
                rules::Word::Progress
            };
            if !self.may_tell(run, &status.stage, author, word).await {
                return;
            }
            let known_author = self.parts.membership.node_by_peer(author);
            let who = known_author
                .as_ref()
                .map_or_else(|| author.to_string(), |n| n.name.clone());
            if let Some((update, end)) = status::relayed_end(run, &who, &status) {
                self.on_relayed(here, update, end).await;
                return;
            }
            self.status.remote(run, &status.stage);
            let (stage, attempt) = (status.stage.clone(), status.attempt.max(1));
            let known = here.as_ref().is_some_and(|h| h.attempt_ended(attempt));
            let key = peer_key(author);
            let runner = key.as_ref().map_or([0; 8], logfetch::runner_tag);
            let by = known_author.map(|n| AttemptNode::ran(n.name, n.org));
            let mut update = status::remote_update(run, &who, by, runner, status);
            let copy = (run, update.stage.clone());
            // A jump is held back while the missed lines can still be fetched.
            update.hold_jumps = key.is_some() && !self.fetches.get(&copy).is_some_and(|f| f.done);
            let arriving = update.log.len() as u64;
            let end = update.ended.as_ref().map(|e| status::LearntEnd {
                run,
                stage,
                attempt,
                state: e.state,
                origin: update.note.clone().unwrap_or_default(),
            });
            let placed = match self.parts.engine.remote_stage(update).await {
                Ok(placed) => placed,
                Err(error) => {
                    tracing::debug!(target: TARGET, %run, %error, "cannot record a status event");
                    return;
                }
            };
            if let (Some(store::Placed::Held { first, .. }), Some(key)) = (placed, key) {
                // The runner wrote every line up to the last that arrived (with none, up
                // to the one before its next). `first` is at least 1 and the last line's
                // number was checked to fit (`logseq::place`), so this cannot overflow,
                // even for a peer that numbers its lines up to u64::MAX.
                let want = (first - 1).saturating_add(arriving);
                self.held(copy, *author, key, attempt, want);
            }
            if let Some(end) = end {
                self.ended_elsewhere(&end, known).await;
            }
        }
    }

    /// Lines of `copy` up to the runner's line `want` were held back: fetches the missed
    /// ones from the runner (`peer`, whose key is `key`), unless a fetch is under way (it
    /// goes on to `want` when it ends).
    fn held(
        &mut self,
        copy: (RunId, String),
        peer: PeerId,
        key: PublicKey,
        attempt: u32,
        want: u64,
    ) {
        let fetch = self.fetches.entry(copy.clone()).or_insert(LogFetch {
            peer,
            key,
            attempt,
            want,
            left: otto_handoff::logseq::FETCH_REQUESTS,
            busy: false,
            done: false,
        });
        if fetch.peer != peer {
            // Another runner (a later attempt elsewhere): its numbering starts afresh.
            fetch.peer = peer;
            fetch.key = key;
            fetch.want = want;
        }
        fetch.attempt = attempt;
        fetch.want = fetch.want.max(want);
        if !fetch.busy {
            self.start_fetch(copy);
        }
    }

    /// Starts the fetch of `copy`'s missed lines in the background; it reports with
    /// [`Done::LogFetched`].
    fn start_fetch(&mut self, copy: (RunId, String)) {
        let Some(fetch) = self.fetches.get_mut(&copy) else {
            return;
        };
        fetch.busy = true;
        let (peer, key, attempt, want, left) =
            (fetch.peer, fetch.key, fetch.attempt, fetch.want, fetch.left);
        let parts = self.parts.clone();
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let (run, stage) = copy;
            let mut used = 0;
            let fill = fill(
                &parts, run, &stage, peer, &key, attempt, want, left, &mut used,
            );
            let result = match tokio::time::timeout(logfetch::FETCH_DEADLINE, fill).await {
                Ok(result) => result,
                Err(_) => Err(format!(
                    "the missed lines of stage '{stage}' did not come within {} s",
                    logfetch::FETCH_DEADLINE.as_secs()
                )),
            };
            let _ = done.send(Done::LogFetched(run, stage, used, result)).await;
        });
    }

    /// A fetch of `stage`'s missed lines ended: goes on when more were held meanwhile, and
    /// when it failed or ran out of requests marks what is still missing as a gap, and
    /// fetches no more for this copy.
    async fn log_fetched(
        &mut self,
        run: RunId,
        stage: String,
        used: u32,
        result: Result<(), String>,
    ) {
        let copy = (run, stage);
        let Some(fetch) = self.fetches.get_mut(&copy) else {
            return;
        };
        fetch.busy = false;
        fetch.left = fetch.left.saturating_sub(used);
        let logs = self.parts.engine.logs().clone();
        let (tail_run, tail_stage) = copy.clone();
        let tail = blocking(move || logs.tail(&tail_run, &tail_stage))
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let runner = logfetch::runner_tag(&fetch.key);
        let missing = otto_handoff::logseq::ask(tail, runner, fetch.want).is_some();
        let error = match result {
            Err(error) => Some(error),
            Ok(()) if missing && fetch.left == 0 => Some(format!(
                "stage '{}': at most {} requests for the missed lines of one log",
                copy.1,
                otto_handoff::logseq::FETCH_REQUESTS
            )),
            Ok(()) => None,
        };
        match error {
            None if missing => self.start_fetch(copy),
            None => {
                if used > 0 {
                    tracing::info!(target: TARGET, %run, stage = %copy.1, requests = used, upto = fetch.want, "fetched the log lines missed from the stage's runner");
                }
            }
            Some(error) => {
                tracing::warn!(target: TARGET, %run, %error, "missed log lines not fetched; they are marked as not received");
                fetch.done = true;
                let mark = RemoteStage {
                    run,
                    stage: copy.1.clone(),
                    ended: None,
                    note: None,
                    log: Vec::new(),
                    attempt: fetch.attempt,
                    numbered: Some((runner, fetch.want.saturating_add(1))),
                    hold_jumps: false,
                };
                if let Err(error) = self.parts.engine.remote_stage(mark).await {
                    tracing::warn!(target: TARGET, %run, %error, "cannot mark missed log lines");
                }
            }
        }
    }

    /// Answers a node's request for lines of a stage log of this node's own
    /// ([`otto_handoff::logseq`]: a node of the run asks, this node ran the stage; its own
    /// lines, within the bounds), signed; anything else gets a signed reject.
    async fn on_log_request(
        &mut self,
        peer: PeerId,
        envelope: Unverified<Envelope>,
        reply: ResponseHandle,
    ) {
        let refuse = |code: otto_protocol::RejectCode, message: String| otto_protocol::Reject {
            id: HandoffId([0; 16]),
            code,
            message,
            hint: None,
        };
        let verdict = self.judge_log_request(&peer, envelope).await;
        let message = match verdict {
            Ok((request, serve, run)) => {
                let logs = self.parts.engine.logs().clone();
                let membership = self.parts.membership.clone();
                tokio::spawn(async move {
                    let stage = request.stage.clone();
                    let read = blocking(move || -> Result<_, store::Error> {
                        let page = logs.read(&run, &stage, serve.after, serve.lines)?;
                        let last = logs.last_seq(&run, &stage)?;
                        Ok((page, last))
                    })
                    .await;
                    let message = match read {
                        Ok((page, last)) => Message::LogLines(otto_handoff::logseq::answer(
                            &request,
                            &serve,
                            page.lines.into_iter().map(|l| l.text),
                            last,
                        )),
                        Err(error) => Message::Reject(refuse(
                            otto_protocol::RejectCode::Internal,
                            format!("cannot read the log: {error}"),
                        )),
                    };
                    answer_with(&membership, reply, &message).await;
                });
                return;
            }
            Err((code, reason)) => {
                tracing::debug!(target: TARGET, %peer, %reason, "a request for log lines refused");
                Message::Reject(refuse(code, reason))
            }
        };
        answer_with(&self.parts.membership, reply, &message).await;
    }

    /// Whether `peer`'s log request is served, and what to read for it.
    async fn judge_log_request(
        &mut self,
        peer: &PeerId,
        envelope: Unverified<Envelope>,
    ) -> Result<
        (
            otto_protocol::LogRequest,
            otto_handoff::logseq::Serve,
            RunId,
        ),
        (otto_protocol::RejectCode, String),
    > {
        use otto_protocol::RejectCode;
        let key = peer_key(peer).ok_or((RejectCode::BadSignature, "no Ed25519 key".to_owned()))?;
        let envelope = envelope.verify(&key).map_err(|e| {
            (
                RejectCode::BadSignature,
                format!("the request's signature: {e}"),
            )
        })?;
        let request: otto_protocol::LogRequest = envelope
            .payload_as()
            .map_err(|e| (RejectCode::Malformed, e.to_string()))?;
        let serve =
            otto_handoff::logseq::serve(&request).map_err(|e| (RejectCode::Malformed, e))?;
        let unknown = || {
            (
                RejectCode::Malformed,
                format!(
                    "no stage '{}' of run {} ran here",
                    request.stage.escape_default(),
                    request.run.escape_default()
                ),
            )
        };
        let run: RunId = request.run.parse().map_err(|_| unknown())?;
        let cert = self.parts.membership.verified_peer(peer).ok_or((
            RejectCode::UnknownOrg,
            "this node does not trust the asking node".to_owned(),
        ))?;
        let here = self.here(run, &request.stage).await.ok_or_else(unknown)?;
        if !here.mine || here.stage.is_none() {
            return Err(unknown());
        }
        let body = self.plan(run).await.ok_or_else(unknown)?;
        let given_by = self
            .running
            .get(&(run, request.stage.clone()))
            .and_then(|id| self.offers.get(id))
            .and_then(|offer| sender_peer(offer))
            .and_then(|p| p.parse::<PeerId>().ok())
            .and_then(|p| peer_key(&p));
        otto_handoff::logseq::may_fetch(&body, cert.node_key(), cert.org_key(), given_by.as_ref())
            .map_err(|e| (RejectCode::UnknownOrg, e))?;
        Ok((request, serve, run))
    }

    /// Whether `author`'s `word` about `stage` of `run` counts here ([`rules::may_tell`]:
    /// the owner binding, the node the stage was given to, who moves it on). What does not
    /// is dropped with a debug line, and never shown as the stage's state.
    async fn may_tell(
        &mut self,
        run: RunId,
        stage: &str,
        author: &PeerId,
        word: rules::Word,
    ) -> bool {
        let Some(signer) = self.parts.membership.verified_peer(author) else {
            tracing::debug!(target: TARGET, %run, %stage, %author, "gossip from a node not allowed here; dropped");
            return false;
        };
        let Some(body) = self.plan(run).await else {
            return false;
        };
        let Some(plan_stage) = body.stages.iter().find(|s| s.id == stage) else {
            tracing::debug!(target: TARGET, %run, %stage, %author, "gossip about a stage the run's plan does not have; dropped");
            return false;
        };
        let in_memory = self
            .machine
            .given_to(&run.to_string(), stage)
            .and_then(|peer| peer.parse::<PeerId>().ok());
        let store = self.parts.store.clone();
        let id = stage.to_owned();
        let read = blocking(move || -> Result<_, store::Error> {
            let given = match in_memory {
                Some(peer) => Some(peer),
                None => store
                    .given_of(&run, &id)?
                    .and_then(|entry| entry.peer.parse::<PeerId>().ok()),
            };
            Ok((given, crate::engine::receipts::stored(&store, &run)?))
        })
        .await;
        let (given, receipts) = match read {
            Ok(read) => read,
            Err(error) => {
                tracing::debug!(target: TARGET, %run, %stage, %error, "cannot read the run's receipts; gossip dropped");
                return false;
            }
        };
        let given = given.as_ref().and_then(peer_key);
        let trust = self.parts.membership.trust();
        let org = *self.parts.membership.verified_certificate().org_key();
        let owners = otto_handoff::Owners::new(&trust, Some(&org), &self.parts.answers_to)
            .with_policy(self.parts.owners);
        match rules::may_tell(
            &body,
            plan_stage,
            &owners,
            &signer,
            word,
            &receipts,
            given.as_ref(),
        ) {
            Ok(()) => true,
            Err(reason) => {
                tracing::debug!(target: TARGET, %run, %stage, ?word, %reason, "gossip about a stage from a node whose word does not count for it; dropped");
                false
            }
        }
    }

    /// The plan of `run` as this node holds it, read once per run.
    async fn plan(&mut self, run: RunId) -> Option<Arc<Body>> {
        if let Some(body) = self.plans.get(&run) {
            return Some(body.clone());
        }
        let store = self.parts.store.clone();
        let body = blocking(move || -> Result<_, store::Error> {
            let Some(record) = store.run(&run)? else {
                return Ok(None);
            };
            Ok(store
                .plan(&record.plan_digest)?
                .and_then(|bytes| serde_json::from_slice::<Body>(&bytes).ok()))
        })
        .await
        .ok()
        .flatten()?;
        let body = Arc::new(body);
        self.plans.insert(run, body.clone());
        Some(body)
    }

    /// Records an end a trusted node relays (unless it already ended here: a relay never
    /// overwrites a receipt), deferring a success until the stages that need it ended
    /// here, and relays it on.
    async fn on_relayed(
        &mut self,
        here: Option<Here>,
        update: RemoteStage,
        end: status::LearntEnd,
    ) {
        let Some(here) = here else {
            return;
        };
        if here.ended() {
            return;
        }
        let run = end.run;
        self.status.remote(run, &end.stage);
        let ended = self.ended_stages(run).await;
        if here.view.may_record(&end.stage, end.state, &ended) {
            if let Err(error) = self.parts.engine.remote_stage(update).await {
                tracing::debug!(target: TARGET, %run, %error, "cannot record a relayed end");
                return;
            }
        } else {
            self.deferred
                .retain(|d| d.run != run || d.stage != end.stage);
            self.deferred.push(update);
        }
        self.ended_elsewhere(&end, false).await;
    }

    async fn flush_status(&mut self) {
        for (run, gathered, mut after) in self.status.take() {
            let mut more = false;
            for _ in 0..status::MAX_EVENTS_PER_FLUSH {
                let mut event = gathered.clone();
                let mut lines = None;
                if let Some(from) = after {
                    let logs = self.parts.engine.logs().clone();
                    let stage = event.stage.clone();
                    let read =
                        blocking(move || logs.read(&run, &stage, from, status::MAX_LINES)).await;
                    match read {
                        Ok(page) => {
                            if let (Some(first), Some(last)) =
                                (page.lines.first(), page.lines.last())
                            {
                                lines = Some((first.seq, last.seq));
                            }
                            event.log = page
                                .lines
                                .into_iter()
                                .map(|l| status::relay_text(l.text))
                                .collect();
                        }
                        Err(error) => {
                            tracing::warn!(target: TARGET, %run, %error, "cannot read a log to relay");
                        }
                    }
                }
                more = self.status.next(run, &mut event, lines);
                match self.parts.membership.sign(&Message::Status(event)) {
                    Ok(envelope) => self.publish(run, &envelope).await,
                    Err(error) => {
                        tracing::warn!(target: TARGET, %error, "cannot sign a status event");
                    }
                }
                let Some((_, last)) = lines else {
                    break;
                };
                if !more {
                    break;
                }
                after = Some(last);
            }
            if more {
                self.status.again(run, gathered);
            }
        }
    }

    async fn publish(&self, run: RunId, envelope: &Envelope) {
        if let Err(error) = self
            .parts
            .mesh
            .publish_status(&run.to_string(), envelope.clone())
            .await
        {
            tracing::debug!(target: TARGET, %run, %error, "a status event was not published");
        }
    }

    async fn subscribe(&self, run: RunId) {
        if let Err(error) = self.parts.mesh.subscribe(&run.to_string()).await {
            tracing::warn!(target: TARGET, %run, %error, "cannot follow the run's status");
        }
    }

    /// Shows `note` on a stage this node does not run.
    async fn note(&mut self, run: &str, stage: &str, note: String) {
        let Ok(run) = run.parse::<RunId>() else {
            return;
        };
        self.status.remote(run, stage);
        let update = RemoteStage {
            run,
            stage: stage.to_owned(),
            ended: None,
            note: Some(note),
            log: Vec::new(),
            attempt: 1,
            numbered: None,
            hold_jumps: false,
        };
        if let Err(error) = self.parts.engine.remote_stage(update).await {
            tracing::debug!(target: TARGET, %run, %stage, %error, "cannot show a note");
        }
    }

    /// Fails a stage this node handed off, with `note` as the reason.
    async fn fail(&mut self, run: &str, stage: &str, note: String) {
        self.fail_by(run, stage, note, None).await;
    }

    /// [`Self::fail`], with the node that refused the stage when one did.
    async fn fail_by(&mut self, run: &str, stage: &str, note: String, by: Option<AttemptNode>) {
        let Ok(run) = run.parse::<RunId>() else {
            return;
        };
        self.status.remote(run, stage);
        let now = now_ms();
        // The attempt that was offered: the one after the stage's last.
        let (store, id) = (self.parts.store.clone(), stage.to_owned());
        let attempt = blocking(move || store.stage(&run, &id))
            .await
            .ok()
            .flatten()
            .map_or(1, |s| next_attempt(&s));
        let update = RemoteStage {
            run,
            stage: stage.to_owned(),
            ended: Some(RemoteEnd {
                state: StageState::Failed,
                started_at: now,
                finished_at: now,
                artifacts: Vec::new(),
                node: by,
            }),
            note: Some(note.clone()),
            log: vec![note.clone()],
            attempt,
            numbered: None,
            hold_jumps: false,
        };
        if let Err(error) = self.parts.engine.remote_stage(update).await {
            tracing::warn!(target: TARGET, %run, %stage, %error, "cannot fail a handed-off stage");
        }
        // The other nodes of the run learn it from this node: no receipt will ever come for
        // a stage that never ran.
        let status = otto_protocol::Status {
            run: run.to_string(),
            stage: stage.to_owned(),
            attempt,
            seq: 0,
            state: otto_protocol::StageState::Failed,
            at: now / 1000,
            detail: Some(note.clone()),
            log: Vec::new(),
            log_seq: None,
            at_ms: Some(now),
        };
        match self.parts.membership.sign(&Message::Status(status)) {
            Ok(envelope) => self.publish(run, &envelope).await,
            Err(error) => tracing::warn!(target: TARGET, %error, "cannot sign a status event"),
        }
    }

    fn sign_verdict(&self, verdict: &Verdict) -> Result<Envelope, String> {
        let message = match verdict {
            Verdict::Accept(accept) => Message::Accept(accept.clone()),
            Verdict::Reject(reject) => Message::Reject(reject.clone()),
        };
        self.parts
            .membership
            .sign(&message)
            .map_err(|e| e.to_string())
    }

    /// A peer as an attempt records its node, when the peer is a known node.
    fn attempt_node(&self, peer: &str) -> Option<AttemptNode> {
        let peer = peer.parse::<PeerId>().ok()?;
        let node = self.parts.membership.node_by_peer(&peer)?;
        Some(AttemptNode::ran(node.name, node.org))
    }

    /// A peer's node name when it is known, else its peer id.
    fn node_name(&self, peer: &str) -> String {
        peer.parse::<PeerId>()
            .ok()
            .and_then(|p| self.parts.membership.node_by_peer(&p))
            .map_or_else(|| peer.to_owned(), |n| n.name)
    }
}

/// Sends an offer to `peer` (dialing its known addresses first when not connected) and
/// checks the answer's signature against the peer's key.
async fn send_offer(
    parts: &ExchangeParts,
    peer: &str,
    envelope: Envelope,
) -> Result<Verified<Envelope>, String> {
    let (peer, key) = peer_and_key(peer)?;
    connect(parts, peer).await?;
    let answer = parts
        .mesh
        .send_offer(peer, envelope)
        .await
        .map_err(|e| e.to_string())?;
    answer
        .verify(&key)
        .map_err(|e| format!("the answer's signature does not verify: {e}"))
}

/// What the node a receipt went to answered.
enum Delivery {
    /// It took the receipt.
    Acked,
    /// It takes it from no one (`receipt_refused`), in these words.
    Refused(String),
}

/// Sends a receipt to `peer` and waits for its answer, checked against the peer's key: an
/// acknowledgement, or a refusal (`receipt_refused`) after which it is not sent again.
/// Anything else is an error (sent again later).
async fn send_receipt(
    parts: &ExchangeParts,
    peer: &str,
    envelope: Envelope,
) -> Result<Delivery, String> {
    let (peer, key) = peer_and_key(peer)?;
    connect(parts, peer).await?;
    let ack = parts
        .mesh
        .send_receipt(peer, envelope)
        .await
        .map_err(|e| e.to_string())?;
    let ack = ack
        .verify(&key)
        .map_err(|e| format!("the acknowledgement's signature does not verify: {e}"))?;
    if ack.payload_as::<Accept>().is_ok() {
        return Ok(Delivery::Acked);
    }
    match ack.payload_as::<otto_protocol::Reject>() {
        Ok(reject) if reject.code == otto_protocol::RejectCode::ReceiptRefused => {
            Ok(Delivery::Refused(reject.message))
        }
        _ => Err("the receipt was not acknowledged".to_owned()),
    }
}

/// Fetches the missed lines of `stage`'s copy from its runner `peer` (key `key`) up to the
/// runner's line `want`, request after request ([`otto_handoff::logseq::ask`]), each
/// answer judged by [`logfetch::request`] and written as the runner numbered it; at most
/// `left` requests, counted in `used`. `Ok` once the copy holds every line up to `want`.
#[allow(clippy::too_many_arguments)]
async fn fill(
    parts: &ExchangeParts,
    run: RunId,
    stage: &str,
    peer: PeerId,
    key: &PublicKey,
    attempt: u32,
    want: u64,
    left: u32,
    used: &mut u32,
) -> Result<(), String> {
    let runner = logfetch::runner_tag(key);
    let text = run.to_string();
    loop {
        let logs = parts.engine.logs().clone();
        let id = stage.to_owned();
        let tail = blocking(move || logs.tail(&run, &id))
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let Some(ask) = otto_handoff::logseq::ask(tail, runner, want) else {
            return Ok(());
        };
        if *used >= left {
            return Ok(());
        }
        *used += 1;
        connect(parts, peer).await?;
        let request = parts
            .membership
            .sign(&Message::LogRequest(ask.request(&text, stage)))
            .map_err(|e| e.to_string())?;
        let (taken, lines) =
            logfetch::request(&parts.mesh, peer, key, request, &ask, &text, stage).await?;
        if taken.count > 0 {
            let update = RemoteStage {
                run,
                stage: stage.to_owned(),
                ended: None,
                note: None,
                log: lines,
                attempt,
                numbered: Some((runner, taken.first)),
                hold_jumps: false,
            };
            parts
                .engine
                .remote_stage(update)
                .await
                .map_err(|e| e.to_string())?;
        }
        if taken.done {
            let logs = parts.engine.logs().clone();
            let id = stage.to_owned();
            let tail = blocking(move || logs.tail(&run, &id))
                .await
                .map_err(|e| e.to_string())?
                .unwrap_or_default();
            if otto_handoff::logseq::ask(tail, runner, want).is_some() {
                return Err(format!(
                    "the node that ran stage '{stage}' holds no more of the lines missed here"
                ));
            }
            return Ok(());
        }
    }
}

/// Signs `message` and sends it as the answer through `reply`.
async fn answer_with(membership: &Membership, reply: ResponseHandle, message: &Message) {
    let peer = *reply.peer();
    match membership.sign(message) {
        Ok(envelope) => {
            if let Err(error) = reply.send(envelope).await {
                tracing::debug!(target: TARGET, %peer, %error, "cannot answer a log request");
            }
        }
        Err(error) => tracing::warn!(target: TARGET, %error, "cannot sign an answer"),
    }
}

/// Dials `peer` at its known addresses unless a connection is open.
async fn connect(parts: &ExchangeParts, peer: PeerId) -> Result<(), String> {
    if parts.membership.is_connected(&peer) {
        return Ok(());
    }
    let addrs = parts
        .membership
        .node_by_peer(&peer)
        .map(|n| n.addrs)
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    parts
        .mesh
        .dial(peer, addrs)
        .await
        .map_err(|e| e.to_string())
}

fn peer_and_key(peer: &str) -> Result<(PeerId, PublicKey), String> {
    let peer: PeerId = peer.parse().map_err(|e| format!("peer id {peer:?}: {e}"))?;
    let key = peer_key(&peer).ok_or_else(|| format!("peer {peer} has no Ed25519 key"))?;
    Ok((peer, key))
}

/// Gets the commit of an accepted offer's run as `obtain` says: fetched from the
/// repository itself, or taken out of the sender's (`peer`'s) bundle, fetched over the mesh
/// like an artifact (its digest checked, at most [`MAX_BUNDLE_BYTES`]). A transfer that
/// broke is `Err` (fetched again later); a commit that cannot be had from what came (a
/// bundle without it, a repository that does not have it) is recorded as refused, and the
/// stage fails saying so when it starts.
async fn obtain_commit(parts: &ExchangeParts, peer: &str, obtain: &Obtain) -> Result<(), String> {
    let Some(sources) = &parts.sources else {
        return Ok(());
    };
    let repos = &sources.repos;
    let refuse = |url: &str, commit: &str, reason: String| {
        tracing::warn!(target: TARGET, %url, %commit, %reason, "the run's commit cannot be had");
        repos.record_refusal(url, commit, &reason);
        Ok(())
    };
    match obtain {
        Obtain::Snapshot { .. } | Obtain::Own { .. } => Ok(()),
        Obtain::Fetch { url, commit } => match repos.fetch_commit(url, commit).await {
            Ok(()) => Ok(()),
            Err(e) => refuse(url, commit, format!("fetching it from {url}: {e}")),
        },
        Obtain::Bundle {
            url,
            commit,
            bundle,
        } => {
            if bundle.size > MAX_BUNDLE_BYTES {
                return refuse(
                    url,
                    commit,
                    format!(
                        "the git bundle the asking node offers has {} bytes, more than the {}                          this node takes",
                        bundle.size, MAX_BUNDLE_BYTES
                    ),
                );
            }
            fetch_all(parts, &[(bundle.sha256, peer.to_owned())]).await?;
            let digest = Digest::from_bytes(bundle.sha256.0);
            let path = parts.blobs.path(&digest);
            match repos.import_bundle(url, commit, &path).await {
                Ok(()) => {
                    tracing::info!(target: TARGET, %url, %commit, "took the run's commit out of the asking node's git bundle");
                    Ok(())
                }
                Err(e) => refuse(
                    url,
                    commit,
                    format!(
                        "the git bundle {digest} from the asking node does not give commit \
                         {commit}: {}",
                        // The asker is told why, not where this node keeps its blobs.
                        e.to_string()
                            .replace(&path.display().to_string(), "the bundle")
                    ),
                ),
            }
        }
    }
}

/// Fetches every (digest, provider) not already in the blob store, checking digests.
async fn fetch_all(parts: &ExchangeParts, wanted: &[(WireDigest, String)]) -> Result<(), String> {
    for (digest, provider) in wanted {
        let blob = Digest::from_bytes(digest.0);
        if parts.blobs.has(&blob) {
            continue;
        }
        let peer: PeerId = provider
            .parse()
            .map_err(|e| format!("provider {provider:?}: {e}"))?;
        connect(parts, peer).await?;
        std::fs::create_dir_all(&parts.fetch_dir).map_err(|e| e.to_string())?;
        let path = parts.fetch_dir.join(blob.hex());
        let resume = std::fs::metadata(&path).map_or(0, |m| m.len());
        parts
            .mesh
            .fetch_artifact(peer, *digest, &path, resume)
            .await
            .map_err(|e| format!("fetching {blob} from {provider}: {e}"))?;
        let blobs = parts.blobs.clone();
        let file = path.clone();
        blocking(move || {
            let reader = std::fs::File::open(&file)?;
            blobs
                .put_expected(reader, &blob)
                .map_err(|e| std::io::Error::other(e.to_string()))
        })
        .await
        .map_err(|e| format!("storing {blob}: {e}"))?;
        let _ = std::fs::remove_file(&path);
    }
    Ok(())
}

/// What the answer to a retry says: taken, or why not, in words. The answer must be
/// signed by the node it was sent to.
fn retry_answer(peer: &PeerId, answer: Unverified<Envelope>, name: &str) -> Result<(), String> {
    let Some(key) = peer_key(peer) else {
        return Err(format!("{name} has no usable key"));
    };
    let Ok(answer) = answer.verify(&key) else {
        return Err(format!("{name}'s answer is not signed by it"));
    };
    match answer.get().message() {
        Ok(Message::Accept(_)) => Ok(()),
        Ok(Message::Reject(reject)) => Err(match reject.hint {
            Some(hint) => format!(
                "{name} refused it ({}): {} ({hint})",
                reject.code, reject.message
            ),
            None => format!("{name} refused it ({}): {}", reject.code, reject.message),
        }),
        Ok(_) | Err(_) => Err(format!(
            "{name} answered with something else than an accept or a reject"
        )),
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncated(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_owned()
}

/// The peer id of an offer's sender, from its certificate.
fn sender_peer(offer: &Offer) -> Option<String> {
    let cert = otto_trust::cert::verify_presented_cert(&offer.sender, offer.created_at).ok()?;
    Some(cert.node_key().peer_id().to_string())
}

/// The attempt a stage handed off from here is offered as: the one after the last attempt
/// recorded of it (1 for the first offer; after `otto retry`, above the attempt that failed
/// or was refused).
fn next_attempt(stage: &store::Stage) -> u32 {
    stage
        .attempts
        .iter()
        .map(|a| a.n)
        .max()
        .unwrap_or(0)
        .saturating_add(1)
}

/// A stored inbox entry as the machine takes it, without the stage's attempt and receipt.
fn inbox_record(peer: String, offer: Envelope, entry: &store::InboxEntry) -> command::InboxRecord {
    command::InboxRecord {
        peer,
        offer,
        received_at: entry.received_at,
        state: entry.state,
        verdict: entry
            .answer
            .as_deref()
            .and_then(|a| otto_protocol::decode_envelope(a).ok())
            .and_then(|a| Verdict::from_envelope(&a).ok()),
        last_attempt: None,
        receipt: None,
    }
}

fn err(error: store::Error) -> String {
    error.to_string()
}

/// Runs CPU-bound work (checking signatures and chains) without stalling the async
/// workers: on a multi-threaded runtime this worker hands its other tasks to another
/// first.
fn offload<T>(f: impl FnOnce() -> T) -> T {
    let multi = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// Runs blocking store or file work off the async threads.
async fn blocking<T: Send + 'static, E: Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
