//! The composed libp2p behaviour of an Otto node and the swarm that runs it.
//!
//! One behaviour per protocol, in the order the swarm consults them: the block list first
//! (empty unless the testnet's control partitions this node from some peers), connection
//! limits (so a connection over a limit is denied before any other behaviour sees it), then
//! the standard `identify` and `ping`, then Otto's three protocols.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    StreamProtocol, Swarm, SwarmBuilder, allow_block_list, connection_limits, gossipsub, identify,
    noise, ping, request_response, tcp, yamux,
};

use super::codec::HandoffCodec;
use super::{Config, HANDOFF_PROTOCOL, IDENTIFY_PROTOCOL_VERSION, MeshError, gossip};

/// Everything an Otto node speaks on a connection.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Peers no connection is made with, either way: set only by the testnet's control
    /// (`otto-node start --testnet-control`) to partition nodes.
    pub(crate) blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    /// Caps on pending and established connections, in total and per peer.
    pub(crate) limits: connection_limits::Behaviour,
    /// The standard `/ipfs/id/1.0.0` exchange of keys, addresses and protocols.
    pub(crate) identify: identify::Behaviour,
    /// The standard `/ipfs/ping/1.0.0` liveness check.
    pub(crate) ping: ping::Behaviour,
    /// `/otto/handoff/1`: offers, receipts and join requests, one envelope each way.
    pub(crate) handoff: request_response::Behaviour<HandoffCodec>,
    /// `/otto/artifact/1`: raw streams, driven by [`super::artifact`].
    pub(crate) artifact: libp2p_stream::Behaviour,
    /// Gossipsub, for the signed status events of each run.
    pub(crate) gossip: gossipsub::Behaviour,
}

/// Builds the swarm: TCP and QUIC transports, Noise and Yamux on TCP, and the behaviour.
pub(crate) fn swarm(config: &Config, keypair: Keypair) -> Result<Swarm<Behaviour>, MeshError> {
    let setup = |err: &dyn std::fmt::Display| MeshError::Setup(err.to_string());
    let max_streams = config.max_streams_per_connection;
    let behaviour = behaviour(config, &keypair)?;
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            move || {
                let mut yamux = yamux::Config::default();
                yamux.set_max_num_streams(max_streams);
                yamux
            },
        )
        .map_err(|err| setup(&err))?
        .with_quic()
        .with_behaviour(|_| behaviour)
        .map_err(|err| setup(&err))?
        .with_swarm_config(|swarm| {
            swarm.with_idle_connection_timeout(config.idle_connection_timeout)
        })
        .build();
    Ok(swarm)
}

/// Builds the composed behaviour for the node with `key`.
fn behaviour(config: &Config, key: &Keypair) -> Result<Behaviour, MeshError> {
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_pending_incoming(Some(config.max_pending_incoming))
        .with_max_established(Some(config.max_connections))
        .with_max_established_per_peer(Some(config.max_connections_per_peer));
    let identify = identify::Config::new(IDENTIFY_PROTOCOL_VERSION.to_owned(), key.public())
        .with_agent_version(format!("otto-node/{}", env!("CARGO_PKG_VERSION")));
    let ping = ping::Config::new()
        .with_interval(config.ping_interval)
        .with_timeout(config.ping_interval.max(Duration::from_secs(1)) * 2);
    let handoff = request_response::Behaviour::with_codec(
        HandoffCodec,
        [(
            StreamProtocol::new(HANDOFF_PROTOCOL),
            request_response::ProtocolSupport::Full,
        )],
        request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(config.max_handoff_streams),
    );
    Ok(Behaviour {
        blocked: allow_block_list::Behaviour::default(),
        limits: connection_limits::Behaviour::new(limits),
        identify: identify::Behaviour::new(identify),
        ping: ping::Behaviour::new(ping),
        handoff,
        artifact: libp2p_stream::Behaviour::new(),
        gossip: gossip::behaviour(config, key)?,
    })
}
