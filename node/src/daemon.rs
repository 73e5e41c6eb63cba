//! The node daemon: opens a home, starts the engine, serves the API on a loopback address
//! and webhook callbacks over HTTPS, and stops cleanly on SIGINT or SIGTERM.
//!
//! This module (with the binary) is where the operating system's clock and randomness
//! enter: everything below it takes them as arguments.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use otto_trust::persist;
use otto_trust::x509::{OrgCa, X509Error, server_config};
use rand::rngs::SysRng;
use rand_core::{CryptoRng, Rng as _, UnwrapErr};
use tokio::net::TcpListener;
use tokio::signal::unix::Signal;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use zeroize::Zeroizing;

use crate::api::types::{NodeInfo, WallInfo};
use crate::api::{self, ApiParts, ApiState, Limits};
use crate::artifacts::BlobArtifacts;
use crate::blobs::{BlobError, BlobStore};
use crate::engine::{Context, Engine, ReceiptSigner, WallSettings};
use crate::exchange::{self, ExchangeParts};
use crate::home::{Config, Home, HomeError};
use crate::membership::{self, Membership, MembershipError};
use crate::mesh::{self, MeshError};
use crate::store::{self, Logs, Store};
use crate::vault::Vault;

/// The log target of the daemon.
const TARGET: &str = "otto_node::daemon";

/// How long the webhook listener's certificate, issued at every start, is valid.
const SERVER_CERT_SECS: u64 = 365 * 24 * 60 * 60;

/// How long a stop waits for open API requests before it drops them.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long a TLS handshake on the webhook listener may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an API client may take to send a request's headers, or stay idle between
/// requests.
const API_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The most API connections served at once; a new one beyond closes the oldest.
const MAX_API_CONNECTIONS: usize = 256;

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The home could not be read.
    #[error(transparent)]
    Home(#[from] HomeError),
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] store::Error),
    /// The blob store could not be opened.
    #[error("blob store: {0}")]
    Blobs(#[from] BlobError),
    /// A key or file of the home could not be read or written.
    #[error(transparent)]
    Persist(#[from] persist::PersistError),
    /// The webhook listener's TLS could not be set up.
    #[error("webhook tls: {0}")]
    Tls(#[from] X509Error),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The agent executable was not found.
    #[error(
        "cannot find the otto-agent executable at {}; set [agent] path in config.toml or OTTO_AGENT",
        .0.display()
    )]
    Agent(PathBuf),
    /// Any other I/O failure.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The engine stopped on its own.
    #[error("the engine stopped unexpectedly")]
    EngineStopped,
    /// A task the node cannot do without ended (the handoff exchange, the mesh's event
    /// loop or its dispatcher): the node stops rather than run on handing nothing off.
    #[error("{task} stopped: {reason}")]
    TaskStopped {
        /// Which task.
        task: &'static str,
        /// Why, in words.
        reason: String,
    },
    /// `OTTO_FAILPOINT` names no fail point.
    #[error("{0}")]
    FailPoint(String),
    /// The mesh could not be set up or could not listen.
    #[error("mesh: {0}")]
    Mesh(#[from] MeshError),
    /// The trust store or the known nodes could not be loaded.
    #[error(transparent)]
    Membership(#[from] MembershipError),
}

/// How the daemon runs, besides its home's configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// Serve the testnet's control endpoints (`/v1/testnet/*`: partitions and the
    /// intruder's learning), for nodes started by `otto-testnet` only. Off by default.
    pub testnet_control: bool,
}

impl Options {
    /// The default options with the testnet's control set to `on`.
    pub fn with_testnet_control(on: bool) -> Self {
        Self {
            testnet_control: on,
        }
    }
}

/// Runs the node of `home` until SIGINT or SIGTERM, then stops cleanly: stops taking
/// requests, shuts the engine down, removes `api.addr`.
pub async fn run(home: Home) -> Result<(), DaemonError> {
    run_with(home, Options::default()).await
}

/// [`run`] with `options`.
pub async fn run_with(home: Home, options: Options) -> Result<(), DaemonError> {
    // The handlers are in place before `api.addr` is written: a SIGTERM sent as soon as
    // the address appears stops the node cleanly instead of killing it.
    let signals = listen_for_signals();
    let stop = async {
        match signals {
            Ok(signals) => wait_for_signal(signals).await,
            Err(e) => {
                tracing::error!(target: TARGET, error = %e, "cannot listen for signals; stopping");
            }
        }
    };
    run_until_with(home, options, stop).await
}

/// Runs the node of `home` until `stop` completes (the signal handling of [`run`] is one
/// such future; tests pass their own).
pub async fn run_until(
    home: Home,
    stop: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    run_until_with(home, Options::default(), stop).await
}

/// [`run_until`] with `options`.
pub async fn run_until_with(
    home: Home,
    options: Options,
    stop: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    crate::failpoint::check_env().map_err(DaemonError::FailPoint)?;
    let config = home.load_config()?;
    let now = unix_now();
    let identity = home.identity(now)?;
    if identity.cert.not_after() < now + 30 * 24 * 60 * 60 {
        tracing::warn!(target: TARGET, not_after = identity.cert.not_after(), "the node certificate expires within 30 days");
    }
    let agent_path = agent_path(&config)?;
    let store = Store::open(home.store_file())?;
    let logs = Logs::open(home.logs_dir(), config.node.max_log_bytes)?;
    let migrated = logs.migrate(&store)?;
    if migrated.stages > 0 {
        tracing::info!(target: TARGET, stages = migrated.stages, lines = migrated.lines,
            "moved the log lines of an older store into logs/");
    }
    let blobs = BlobStore::open(home.blobs_dir())?;
    let vault = Vault::new(store.clone(), &*node_secret(&identity.key)?);
    let token = home.ensure_api_token(&mut system_rng())?;
    create_private_dir(&home.run_dir())?;
    let (wall, wall_info, work_dir) = wall_settings(&home, &config, &agent_path)?;
    let (mut node_mesh, exchange_rx) = start_mesh(&home, &config, &store, &blobs, now).await?;

    let api_listener = bind(config.api.listen).await?;
    let api_addr = local_addr(&api_listener)?;
    let hooks_listener = bind_hooks(&home, &config).await?;
    let hooks_addr = local_addr(&hooks_listener)?;
    persist::write_private_file(&home.hooks_addr_file(), hooks_addr.to_string().as_bytes())?;
    let tls = tls_acceptor(&home, &config)?;
    let webhook_base = config.webhooks.public_url.clone().unwrap_or_else(|| {
        let ip = if hooks_addr.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            hooks_addr.ip().to_string()
        };
        format!("https://{ip}:{}", hooks_addr.port())
    });
    let packages = crate::capabilities::package_dirs(&home, &config);
    let owner = identity.key.keyid().to_owned();
    let runtimes = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            let mut runtimes = crate::capabilities::Runtimes::detect(&config);
            runtimes.owner = Some(owner);
            runtimes
        })
        .await
        .unwrap_or_default()
    };
    match &runtimes.engine {
        Ok(engine) => {
            tracing::info!(target: TARGET, engine = %engine.path.display(), version = %engine.version, "runtime docker stages run in containers");
            // No agent of this node process runs yet: every container labelled with this
            // node was left by an agent of an earlier one (killed, or the node was).
            let (engine, owner) = (engine.clone(), runtimes.owner.clone().unwrap_or_default());
            let swept = tokio::task::spawn_blocking(move || {
                engine.remove_labelled(crate::capabilities::LABEL_NODE, &owner)
            })
            .await;
            match swept {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => {
                    tracing::info!(target: TARGET, containers = n, "removed the containers agents of an earlier node process left behind");
                }
                Ok(Err(error)) => {
                    tracing::warn!(target: TARGET, %error, "cannot look for containers earlier agents left behind");
                }
                Err(error) => {
                    tracing::warn!(target: TARGET, %error, "cannot look for containers earlier agents left behind");
                }
            }
        }
        Err(why) => {
            tracing::info!(target: TARGET, reason = %why, "no container engine: runtime docker stages are refused");
        }
    }
    let runtimes_info = api::types::RuntimesInfo::from(&runtimes);

    let repos = crate::sources::Repos::new(home.root());
    let max_snapshot_bytes = usize::try_from(config.api.max_snapshot_bytes).unwrap_or(usize::MAX);
    let refuses_others = wall.refuses_others();
    let (engine, mut engine_task) = Engine::start(Context {
        store: store.clone(),
        logs: logs.clone(),
        blobs: blobs.clone(),
        vault: vault.clone(),
        node_name: config.node.name.clone(),
        answers_to: config.node.answers_to.clone(),
        agent_path: agent_path.clone(),
        work_dir: work_dir.clone(),
        run_dir: home.run_dir(),
        packages: packages.clone(),
        max_artifact_bytes: config.agent.max_artifact_bytes,
        wall,
        webhook_base: Some(webhook_base.clone()),
        signer: Some(ReceiptSigner {
            key: home.identity(now)?.key,
            name: config.node.name.clone(),
            org: config.node.org.clone(),
        }),
        definitions: Some(definition_check(node_mesh.membership.clone())),
        slots: config.agent.slots(),
        max_parallel: Some(max_parallel(node_mesh.membership.clone())),
        notifier: Some(crate::engine::Notifier {
            http: crate::outbound::http::Http::new(),
            config: config.notify.clone(),
        }),
        checkouts: Some(crate::engine::Checkouts {
            repos: repos.clone(),
            max_bytes: max_snapshot_bytes,
        }),
        runtimes,
    });
    if config.node.retention_days > 0 {
        tokio::spawn(collect_daily(
            store.clone(),
            logs.clone(),
            blobs.clone(),
            work_dir,
            config.node.retention_days,
        ));
    }
    let notices = engine.notices().ok_or(DaemonError::EngineStopped)?;
    let mut exchange_task = exchange::start(
        ExchangeParts {
            store: store.clone(),
            blobs: blobs.clone(),
            engine: engine.clone(),
            mesh: node_mesh.client.clone(),
            membership: node_mesh.membership.clone(),
            answers_to: answers_to(&config),
            owners: config.node.upstream_owners,
            fetch_dir: home.root().join("fetch"),
            sources: Some(crate::engine::Checkouts {
                repos: repos.clone(),
                max_bytes: max_snapshot_bytes,
            }),
            offer_ttl: exchange::DEFAULT_OFFER_TTL,
            owner_wait: Duration::from_secs(config.node.owner_wait_secs),
            machine: otto_handoff::machine::Config {
                backoff_max: exchange::BACKOFF_MAX_MS,
                ..otto_handoff::machine::Config::default()
            },
            refuses_others,
        },
        exchange_rx,
        notices,
    );
    let state = ApiState::new(ApiParts {
        store,
        blobs,
        vault,
        engine: engine.clone(),
        token,
        node: NodeInfo {
            name: config.node.name.clone(),
            org: config.node.org.clone(),
            peer_id: identity.key.peer_id().to_string(),
            node_key: identity.key.keyid().to_owned(),
            org_key: identity.cert.org_key().keyid(),
            answers_to: config.node.answers_to.clone(),
            cert_not_after: identity.cert.not_after(),
            webhook_base: Some(webhook_base.clone()),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            wall: wall_info,
            runtimes: runtimes_info,
        },
        limits: Limits {
            max_snapshot_bytes,
            max_json_bytes: usize::try_from(config.api.max_json_bytes).unwrap_or(usize::MAX),
        },
        packages,
        home: home.clone(),
        mesh: node_mesh.client.clone(),
        membership: node_mesh.membership.clone(),
        owners: config.node.upstream_owners,
        repos,
    });

    let (stopping, stopped) = watch::channel(false);
    let api_stopped = stopped.clone();
    let mut api_app = api::router(state.clone()).merge(crate::ui::router(state.clone(), api_addr));
    if options.testnet_control {
        tracing::warn!(target: TARGET, "the testnet's control is on (--testnet-control): /v1/testnet/* can partition this node; never use it outside otto-testnet");
        api_app = api_app.merge(api::testnet_router(state.clone()));
    }
    let mut api_task = tokio::spawn(async move {
        serve_api(api_listener, api_app, api_stopped).await;
        Ok::<(), std::io::Error>(())
    });
    let poll_task = tokio::spawn(api::poll_repos(state.clone()));
    let status_task = tokio::spawn(crate::outbound::status::report(
        crate::outbound::status::Parts {
            store: state.store.clone(),
            repos: state.repos.clone(),
            vault: state.vault.clone(),
            http: crate::outbound::http::Http::new(),
        },
        engine.events(),
    ));
    let hooks_task = tokio::spawn(serve_hooks(
        hooks_listener,
        tls,
        api::hooks_router(state),
        stopped,
    ));
    persist::write_private_file(&home.api_addr_file(), api_addr.to_string().as_bytes())?;
    tracing::info!(
        target: TARGET,
        node = %config.node.name,
        org = %config.node.org,
        api = %api_addr,
        webhooks = %webhook_base,
        agent = %agent_path.display(),
        "node started"
    );

    let outcome = tokio::select! {
        () = stop => Ok(()),
        _ = &mut engine_task => Err(DaemonError::EngineStopped),
        ended = &mut exchange_task => Err(DaemonError::TaskStopped {
            task: "the handoff exchange",
            reason: match ended {
                Ok(Ok(())) => "its events ended".to_owned(),
                Ok(Err(reason)) => reason,
                Err(error) => task_failure(error),
            },
        }),
        ended = &mut node_mesh.event_loop => Err(DaemonError::TaskStopped {
            task: "the mesh's event loop",
            reason: ended.map_or_else(task_failure, |()| "it ended".to_owned()),
        }),
        ended = &mut node_mesh.dispatcher => Err(DaemonError::TaskStopped {
            task: "the mesh's dispatcher",
            reason: ended.map_or_else(task_failure, |()| "it ended".to_owned()),
        }),
        served = &mut api_task => Err(DaemonError::Io {
            what: "the api server stopped".into(),
            source: match served {
                Ok(Err(e)) => e,
                _ => std::io::Error::other("the api task ended"),
            },
        }),
    };
    match &outcome {
        Ok(()) => tracing::info!(target: TARGET, "stopping"),
        Err(error) => tracing::error!(target: TARGET, %error, "stopping"),
    }
    let _ = std::fs::remove_file(home.api_addr_file());
    let _ = std::fs::remove_file(home.mesh_addrs_file());
    node_mesh.stop().await;
    if !exchange_task.is_finished() {
        exchange_task.abort();
    }
    let _ = stopping.send(true);
    engine.shutdown().await;
    if tokio::time::timeout(STOP_GRACE, &mut api_task)
        .await
        .is_err()
    {
        api_task.abort();
    }
    hooks_task.abort();
    poll_task.abort();
    status_task.abort();
    if !engine_task.is_finished()
        && tokio::time::timeout(STOP_GRACE, &mut engine_task)
            .await
            .is_err()
    {
        engine_task.abort();
    }
    tracing::info!(target: TARGET, "stopped");
    outcome
}

/// The running mesh: its client, the membership it asks, and its tasks.
struct NodeMesh {
    client: mesh::Client,
    membership: Membership,
    event_loop: tokio::task::JoinHandle<()>,
    dispatcher: tokio::task::JoinHandle<()>,
}

/// The capacity of the channel of mesh events to the handoff exchange.
const EXCHANGE_EVENTS: usize = 1024;

/// The file in the home that keeps the mesh addresses bound last, reused on the next
/// start for ports left to the system.
const MESH_LAST_FILE: &str = "mesh.last";

/// The mesh addresses bound by the previous start, if it left them.
fn last_mesh_addrs(home: &Home) -> Vec<mesh::Multiaddr> {
    std::fs::read_to_string(home.root().join(MESH_LAST_FILE))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// `addr` with its TCP or UDP port set to 0.
fn any_port(addr: &mesh::Multiaddr) -> mesh::Multiaddr {
    use libp2p::multiaddr::Protocol;
    addr.iter()
        .map(|p| match p {
            Protocol::Tcp(_) => Protocol::Tcp(0),
            Protocol::Udp(_) => Protocol::Udp(0),
            other => other,
        })
        .collect()
}

/// Starts the mesh with the node key, the membership as its policy and the blob store as
/// its artifact source; listens on every `[mesh] listen` address, writes them to
/// `mesh.addrs`, and starts the dispatcher of mesh events. Returns the mesh and the
/// receiver of the events for the handoff exchange.
async fn start_mesh(
    home: &Home,
    config: &Config,
    store: &Store,
    blobs: &BlobStore,
    now: u64,
) -> Result<(NodeMesh, tokio::sync::mpsc::Receiver<mesh::Event>), DaemonError> {
    let membership =
        Membership::open(home, home.identity(now)?, store.clone(), Arc::new(unix_now))?;
    let (client, events, event_loop) = mesh::new(
        mesh::Config::default(),
        membership.node_key().to_libp2p_keypair(),
        Arc::new(membership.clone()),
        Arc::new(BlobArtifacts::new(blobs.clone())),
    )?;
    let event_loop = tokio::spawn(event_loop.run());
    let peer = client.local_peer_id();
    let mut addrs = Vec::new();
    let last = last_mesh_addrs(home);
    for listen in config.mesh.listen_addrs() {
        // A port left to the system is the one bound last time, when it is free: peers
        // that knew this node find it again after a restart.
        let again = last.iter().find(|l| any_port(l) == listen && **l != listen);
        let bound = match again {
            Some(previous) => match client.listen(previous.clone()).await {
                Ok(bound) => Ok(bound),
                Err(_) => client.listen(listen).await,
            },
            None => client.listen(listen).await,
        };
        match bound {
            Ok(bound) => addrs.push(bound),
            Err(err) => {
                let _ = client.shutdown().await;
                return Err(err.into());
            }
        }
    }
    let last: String = addrs.iter().map(|a| format!("{a}\n")).collect();
    persist::write_private_file(&home.root().join(MESH_LAST_FILE), last.as_bytes())?;
    let addrs: Vec<_> = addrs
        .into_iter()
        .map(|a| a.with(libp2p::multiaddr::Protocol::P2p(peer)))
        .collect();
    let lines: String = addrs.iter().map(|a| format!("{a}\n")).collect();
    persist::write_private_file(&home.mesh_addrs_file(), lines.as_bytes())?;
    tracing::info!(target: TARGET, %peer, addrs = ?addrs.iter().map(ToString::to_string).collect::<Vec<_>>(), "mesh listening");
    membership.set_mesh(client.clone(), addrs);
    let (exchange_events, exchange_rx) = tokio::sync::mpsc::channel(EXCHANGE_EVENTS);
    let dispatcher = tokio::spawn(membership::dispatch(
        membership.clone(),
        events,
        exchange_events,
    ));
    // Let the nodes this one joined with know where it is now.
    let reconnecting = membership.clone();
    tokio::spawn(async move { reconnecting.reconnect().await });
    let node_mesh = NodeMesh {
        client,
        membership,
        event_loop,
        dispatcher,
    };
    Ok((node_mesh, exchange_rx))
}

impl NodeMesh {
    /// Closes every connection and stops the mesh's tasks (either may have ended).
    async fn stop(mut self) {
        if !self.event_loop.is_finished() {
            if tokio::time::timeout(STOP_GRACE, self.client.shutdown())
                .await
                .is_err()
            {
                self.event_loop.abort();
            }
            if tokio::time::timeout(STOP_GRACE, &mut self.event_loop)
                .await
                .is_err()
            {
                self.event_loop.abort();
            }
        }
        if !self.dispatcher.is_finished() {
            self.dispatcher.abort();
        }
    }
}

/// A task's end by panic or abort, in words.
fn task_failure(error: tokio::task::JoinError) -> String {
    if error.is_panic() {
        let panic = error.into_panic();
        let text = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        format!("it panicked: {text}")
    } else {
        "it was cancelled".to_owned()
    }
}

/// The check of a stage this node moves on itself in a run another org started: the same
/// scope and definition rules as an offer of that stage from that org
/// ([`otto_handoff::rules::check_stage`]); a refusal reads "not run here: WHY; HINT".
fn definition_check(membership: Membership) -> crate::engine::DefinitionCheck {
    crate::engine::DefinitionCheck(Arc::new(move |org, body, stage| {
        let trust = membership.trust();
        // This node publishes no blueprints yet, as for offers (exchange).
        let publishes = |_: &otto_pipeline::plan::Body, _: &otto_pipeline::plan::Stage| false;
        otto_handoff::rules::check_stage(&trust, org, body, stage, &publishes)
            .map(|_| ())
            .map_err(|refused| match refused.hint {
                Some(hint) => format!("not run here: {}; {hint}", refused.message),
                None => format!("not run here: {}", refused.message),
            })
    }))
}

/// How many stages of one run an org started run here at once: its policy's
/// `max_parallel`, read when the first stage of the run here takes its turn.
fn max_parallel(membership: Membership) -> crate::engine::MaxParallel {
    crate::engine::MaxParallel(Arc::new(move |org| membership.trust().max_parallel(org)))
}

/// The owner names this node answers to in offers: its configured names and its own node
/// name.
fn answers_to(config: &Config) -> Vec<String> {
    let mut names = config.node.answers_to.clone();
    if !names.contains(&config.node.name) {
        names.push(config.node.name.clone());
    }
    names
}

/// The operating system's cryptographic random generator.
pub fn system_rng() -> impl CryptoRng {
    UnwrapErr(SysRng)
}

/// Fills `buf` from the operating system's cryptographic random generator.
pub fn fill_random(buf: &mut [u8]) {
    system_rng().fill_bytes(buf);
}

/// Removes what runs that ended more than `days` days ago left behind, at start and then
/// every day ([`crate::gc`]), and says what it removed.
async fn collect_daily(store: Store, logs: Logs, blobs: BlobStore, work_dir: PathBuf, days: u32) {
    let mut every = tokio::time::interval(Duration::from_secs(24 * 60 * 60));
    loop {
        every.tick().await;
        let (store, logs, blobs, work_dir) =
            (store.clone(), logs.clone(), blobs.clone(), work_dir.clone());
        let done = tokio::task::spawn_blocking(move || {
            let parts = crate::gc::Parts {
                store: &store,
                logs: &logs,
                blobs: &blobs,
                work_dir: &work_dir,
            };
            crate::gc::collect(&parts, days, unix_now().saturating_mul(1000), false)
        })
        .await;
        match done {
            Ok(Ok(report)) if report.runs.is_empty() => {}
            Ok(Ok(report)) => {
                for line in report.lines() {
                    tracing::info!(target: TARGET, "retention ([node] retention_days = {days}): {line}");
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(target: TARGET, %error, "retention: cannot remove old runs' logs, workspaces and blobs");
            }
            Err(error) => {
                tracing::warn!(target: TARGET, %error, "retention stopped");
            }
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where the agent executable is: `[agent] path`, else `$OTTO_AGENT`, else `otto-agent`
/// next to this executable. It must exist.
pub fn agent_path(config: &Config) -> Result<PathBuf, DaemonError> {
    let path = match (&config.agent.path, std::env::var_os("OTTO_AGENT")) {
        (Some(path), _) => path.clone(),
        (None, Some(env)) if !env.is_empty() => PathBuf::from(env),
        _ => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("otto-agent")))
            .unwrap_or_else(|| PathBuf::from("otto-agent")),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(DaemonError::Agent(path))
    }
}

/// The node key's 32-byte secret seed, from which the vault key is derived.
fn node_secret(key: &otto_trust::NodeKey) -> Result<Zeroizing<[u8; 32]>, DaemonError> {
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;
    let pem = key.to_pkcs8_pem();
    let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).map_err(|e| DaemonError::Io {
        what: "reading the node key".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(Zeroizing::new(signing.to_bytes()))
}

/// SIGTERM and SIGINT streams, registered when this is called.
fn listen_for_signals() -> std::io::Result<(Signal, Signal)> {
    use tokio::signal::unix::{SignalKind, signal};
    Ok((
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
    ))
}

async fn wait_for_signal((mut term, mut int): (Signal, Signal)) {
    tokio::select! {
        _ = term.recv() => tracing::info!(target: TARGET, "SIGTERM"),
        _ = int.recv() => tracing::info!(target: TARGET, "SIGINT"),
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, DaemonError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Bind { addr, source })
}

/// Binds the webhook listener; with port 0, the previous start's port when it is free,
/// so the webhook URLs handed out before a restart keep working.
async fn bind_hooks(home: &Home, config: &Config) -> Result<TcpListener, DaemonError> {
    let listen = config.webhooks.listen;
    if listen.port() == 0 {
        let previous = std::fs::read_to_string(home.hooks_addr_file())
            .ok()
            .and_then(|t| t.trim().parse::<SocketAddr>().ok())
            .filter(|a| a.ip() == listen.ip());
        if let Some(previous) = previous
            && let Ok(listener) = TcpListener::bind(previous).await
        {
            return Ok(listener);
        }
    }
    bind(listen).await
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, DaemonError> {
    listener.local_addr().map_err(|source| DaemonError::Io {
        what: "reading a listener's address".into(),
        source,
    })
}

/// The TLS setup of the webhook listener: a server certificate for the configured names,
/// issued now by the org CA in the home.
fn tls_acceptor(home: &Home, config: &Config) -> Result<TlsAcceptor, DaemonError> {
    let read = |path: PathBuf| {
        std::fs::read_to_string(&path).map_err(|source| DaemonError::Io {
            what: format!("reading {}", path.display()),
            source,
        })
    };
    let cert = read(home.ca_cert_file())?;
    let key = Zeroizing::new(read(home.ca_key_file())?);
    let ca = OrgCa::from_pem(&cert, &key)?;
    let now = unix_now();
    let names: Vec<&str> = config.webhooks.names.iter().map(String::as_str).collect();
    // Valid from a minute ago, for clients whose clocks are slightly behind.
    let leaf = ca.issue_server_cert(
        &names,
        &mut system_rng(),
        now.saturating_sub(60),
        now + SERVER_CERT_SECS,
    )?;
    let mut tls = server_config(&leaf, None)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(tls)))
}

/// Accepts TLS connections and serves the webhook router on each until `stopped`.
/// Serves the local API: each connection must send a request's headers within
/// [`API_HEADER_TIMEOUT`] (waiting between requests included), and at most
/// [`MAX_API_CONNECTIONS`] are served at once: a new connection beyond closes the oldest,
/// so idle or half-sent connections cannot lock the node's users out (nor use up its file
/// descriptors). The token is checked before a request's body is read.
async fn serve_api(listener: TcpListener, app: axum::Router, mut stopped: watch::Receiver<bool>) {
    let mut connections = tokio::task::JoinSet::new();
    let mut open: std::collections::VecDeque<tokio::sync::oneshot::Sender<()>> =
        std::collections::VecDeque::new();
    loop {
        let accepted = tokio::select! {
            _ = stopped.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(target: TARGET, error = %e, "api listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        open.retain(|evict| !evict.is_closed());
        if open.len() >= MAX_API_CONNECTIONS
            && let Some(oldest) = open.pop_front()
        {
            tracing::debug!(target: TARGET, "api listener: too many connections, closing the oldest");
            let _ = oldest.send(());
        }
        let (evict, evicted) = tokio::sync::oneshot::channel();
        open.push_back(evict);
        let app = app.clone();
        let mut stopped = stopped.clone();
        connections.spawn(async move {
            let service = TowerToHyperService::new(app);
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(API_HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), service);
            let mut connection = std::pin::pin!(connection);
            let stopping = tokio::select! {
                served = connection.as_mut() => Err(served),
                _ = evicted => return,
                stop = stopped.wait_for(|s| *s) => Ok(stop.is_ok()),
            };
            let served = match stopping {
                Err(served) => served,
                Ok(_) => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = served {
                tracing::debug!(target: TARGET, %peer, error = %e, "api connection ended with an error");
            }
        });
    }
    while connections.join_next().await.is_some() {}
}

async fn serve_hooks(
    listener: TcpListener,
    tls: TlsAcceptor,
    app: axum::Router,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stopped.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(target: TARGET, error = %e, "webhook listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let tls = tls.clone();
        let app = app.clone();
        connections.spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(target: TARGET, %peer, error = %e, "webhook listener: tls handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = TowerToHyperService::new(app);
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(target: TARGET, %peer, error = %e, "webhook connection ended with an error");
            }
        });
    }
    connections.shutdown().await;
}

/// The wall around the steps this node runs: the work directory (made here, mode 0711
/// so that a step user can reach its own workspace, owned by the node), the step user, the
/// limits, and what the kernel offers. Says at start what is missing.
fn wall_settings(
    home: &Home,
    config: &Config,
    agent: &Path,
) -> Result<(WallSettings, WallInfo, PathBuf), DaemonError> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let io = |what: String| move |source| DaemonError::Io { what, source };
    let root = std::fs::canonicalize(home.root())
        .map_err(io(format!("reading {}", home.root().display())))?;
    let work_dir = config
        .agent
        .work_dir
        .clone()
        .unwrap_or_else(|| Home::new(&root).work_dir());
    std::fs::create_dir_all(&work_dir)
        .and_then(|()| std::fs::set_permissions(&work_dir, std::fs::Permissions::from_mode(0o711)))
        .map_err(io(format!("creating {}", work_dir.display())))?;
    let work_dir =
        std::fs::canonicalize(&work_dir).map_err(io(format!("reading {}", work_dir.display())))?;
    let bad = |reason: String| DaemonError::Io {
        what: format!("agent.work_dir {}", work_dir.display()),
        source: std::io::Error::other(reason),
    };
    if work_dir.starts_with(&root) || root.starts_with(&work_dir) {
        return Err(bad(format!(
            "must be outside the home {} (a step's wall hides the home)",
            root.display()
        )));
    }
    let me = rustix::process::geteuid().as_raw();
    let owner = std::fs::metadata(&work_dir)
        .map_err(io(format!("reading {}", work_dir.display())))?
        .uid();
    if owner != me {
        return Err(bad(format!(
            "is owned by uid {owner}, not by the node's user (uid {me})"
        )));
    }
    let user = match &config.agent.run_as {
        Some(name) if me != 0 => {
            return Err(DaemonError::Io {
                what: format!("agent.run_as {name:?}"),
                source: std::io::Error::other(
                    "only a node running as root can run steps as another user; remove the setting",
                ),
            });
        }
        Some(name) => {
            let user = step_user(name)?;
            if name == crate::step_user::DEFAULT_NAME {
                tracing::warn!(target: TARGET, "steps run as {name}, the step user root nodes shared before each got its own: the steps of another root node on this machine with that user have the same uid and can read this node's workspaces; give this node a user of its own (useradd --system --no-create-home --shell /usr/sbin/nologin otto-step-NODE, then [agent] run_as)");
            }
            crate::step_user::reachable(&work_dir, user).map_err(|reason| bad(format!(
                "cannot be reached by the step user {name:?}: {reason}; make it searchable (chmod o+x) or set [agent] work_dir elsewhere"
            )))?;
            Some(user)
        }
        None => None,
    };
    // A directory the operator lets steps write but that is not there yet is made now,
    // for the step user when there is one: the wall can only grant what exists.
    for dir in &config.agent.writable {
        if !dir.exists() {
            std::fs::create_dir_all(dir)
                .and_then(|()| match user {
                    Some(u) => std::os::unix::fs::chown(dir, Some(u.uid), Some(u.gid)),
                    None => Ok(()),
                })
                .map_err(io(format!("creating agent.writable {}", dir.display())))?;
        }
    }
    // Landlock rules only grant: a writable directory that holds the home or the work
    // directory (or lies inside one) would open them to every step.
    for dir in &config.agent.writable {
        let path = std::fs::canonicalize(dir)
            .map_err(io(format!("reading agent.writable {}", dir.display())))?;
        let reason = if root.starts_with(&path) {
            Some(format!("holds the home {}", root.display()))
        } else if path.starts_with(&root) {
            Some(format!("is inside the home {}", root.display()))
        } else if work_dir.starts_with(&path) {
            Some(format!("holds the work directory {}", work_dir.display()))
        } else if path.starts_with(&work_dir) {
            Some(format!(
                "is inside the work directory {}",
                work_dir.display()
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(DaemonError::Io {
                what: format!("agent.writable {}", dir.display()),
                source: std::io::Error::other(format!(
                    "{reason}, which the wall hides from steps; name a directory outside both"
                )),
            });
        }
    }
    let landlock_abi = crate::engine::wall_abi(agent).unwrap_or_else(|reason| {
        tracing::warn!(target: TARGET, "cannot ask the agent which wall it builds: {reason}");
        0
    });
    let mounts_missing = crate::engine::wall_mounts(agent).err();
    let wall = WallSettings {
        mounts_missing,
        hidden: vec![root, work_dir.clone()],
        writable: config.agent.writable.clone(),
        user,
        limits: config.agent.limits.into(),
        landlock_abi,
        refuse_foreign_unwalled: config.agent.refuse_foreign_unwalled,
        steps_as_root: me == 0 && user.is_none(),
    };
    let missing = wall.missing();
    match &missing {
        Some(reason) => {
            tracing::warn!(target: TARGET, "steps run without a wall: {reason}; other orgs' stages are {}", if wall.refuse_foreign_unwalled { "refused" } else { "run anyway ([agent] refuse_foreign_unwalled = false)" })
        }
        None => {
            tracing::info!(target: TARGET, landlock_abi = wall.landlock_abi, work_dir = %work_dir.display(), run_as = config.agent.run_as.as_deref().unwrap_or("(the node's user)"), "steps run walled in")
        }
    }
    let steps_as_root = wall.steps_as_root;
    let info = WallInfo {
        walled: missing.is_none(),
        landlock_abi: wall.landlock_abi,
        missing,
        run_as: config.agent.run_as.clone(),
        steps_as_root,
        read_only_mounts: wall.mounts_missing.is_none(),
        work_dir: work_dir.display().to_string(),
        refuse_foreign_unwalled: wall.refuse_foreign_unwalled,
    };
    Ok((wall, info, work_dir))
}

/// The user and group ids of user `name`, which must exist and not be root.
fn step_user(name: &str) -> Result<otto_agent_protocol::StepUser, DaemonError> {
    let bad = |reason: String| DaemonError::Io {
        what: format!("agent.run_as {name:?}"),
        source: std::io::Error::other(reason),
    };
    crate::step_user::lookup(name).map_err(bad)?.ok_or_else(|| {
        bad("no such user; create it (useradd --system --no-create-home --shell /usr/sbin/nologin NAME, or otto-node init --run-as NAME for a new home, as root) or change the setting".into())
    })
}

fn create_private_dir(dir: &Path) -> Result<(), DaemonError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|source| DaemonError::Io {
            what: format!("creating {}", dir.display()),
            source,
        })
}
