//! The testnet's control: endpoints that only a node started by `otto-testnet` serves
//! (`otto-node start --testnet-control`, a hidden flag). Without the flag they are not
//! routed at all, so they answer 404 like any unknown path. Like every `/v1` endpoint
//! they need the bearer token, and the API listens on loopback only.
//!
//! - `PUT /v1/testnet/blocked` `{"peers": [peer id, …]}`: the whole set of peers this
//!   node refuses connections with, either way (a partition); connections with a newly
//!   blocked peer close at once. Answers the set.
//! - `POST /v1/testnet/learn` `{"cert": HEX, "addrs": [multiaddr, …], "alias": NAME}`:
//!   makes this node believe in another node without any invite, as an intruder that
//!   learnt a victim's certificate and address would: pins the org the certificate
//!   claims (one-sidedly: the other node knows nothing of this one), names it `alias`,
//!   records the node with its addresses, and dials it.

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::middleware;
use axum::routing::{post, put};
use otto_trust::cert::verify_presented_cert;
use otto_trust::store::AliasTarget;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, Json, blocking};
use crate::mesh::{Multiaddr, PeerId};
use crate::store::KnownNode;

/// The body of `PUT /v1/testnet/blocked`, and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blocked {
    /// The blocked peers' ids (base58).
    pub peers: Vec<String>,
}

/// The body of `POST /v1/testnet/learn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Learn {
    /// The other node's certificate envelope (its `node.cert`), in hex.
    pub cert: String,
    /// Where it listens, multiaddrs (a `/p2p/…` suffix is allowed).
    #[serde(default)]
    pub addrs: Vec<String>,
    /// The name this node gives the other node's org (the owner name its Ottofiles use).
    pub alias: String,
}

/// What `POST /v1/testnet/learn` answers: the node now known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Learned {
    /// Its name.
    pub node: String,
    /// Its org, now pinned here.
    pub org: String,
    /// Its peer id.
    pub peer_id: String,
    /// Whether a connection with it was made now.
    pub connected: bool,
}

/// The most peers a block list holds, and the most addresses `learn` takes.
const MAX_ITEMS: usize = 256;

/// The testnet's control endpoints, behind the bearer token; the daemon merges them into
/// [`super::router`] only when started with `--testnet-control`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/testnet/blocked", put(set_blocked))
        .route("/v1/testnet/learn", post(learn))
        .layer(DefaultBodyLimit::max(state.limits.max_json_bytes))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            super::authenticate,
        ))
        .with_state(state)
}

/// `PUT /v1/testnet/blocked`.
async fn set_blocked(
    State(state): State<ApiState>,
    Json(request): Json<Blocked>,
) -> Result<Json<Blocked>, ApiError> {
    if request.peers.len() > MAX_ITEMS {
        return Err(ApiError::invalid(format!("at most {MAX_ITEMS} peers")));
    }
    let peers = request
        .peers
        .iter()
        .map(|p| {
            p.parse::<PeerId>()
                .map_err(|e| ApiError::invalid(format!("peer id {p:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    state
        .mesh
        .set_blocked(peers.clone())
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(Blocked {
        peers: peers.iter().map(ToString::to_string).collect(),
    }))
}

/// `POST /v1/testnet/learn`.
async fn learn(
    State(state): State<ApiState>,
    Json(request): Json<Learn>,
) -> Result<Json<Learned>, ApiError> {
    if request.addrs.len() > MAX_ITEMS {
        return Err(ApiError::invalid(format!("at most {MAX_ITEMS} addresses")));
    }
    let bytes = hex::decode(request.cert.trim())
        .map_err(|e| ApiError::invalid(format!("cert: not hex: {e}")))?;
    let envelope = otto_protocol::decode_envelope(&bytes)
        .map_err(|e| ApiError::invalid(format!("cert: {e}")))?;
    let now = crate::daemon::unix_now();
    let cert = verify_presented_cert(&envelope, now)
        .map_err(|e| ApiError::invalid(format!("cert: {e}")))?;
    let mut addrs = Vec::new();
    for addr in &request.addrs {
        let mut parsed: Multiaddr = addr
            .parse()
            .map_err(|e| ApiError::invalid(format!("address {addr:?}: {e}")))?;
        if matches!(
            parsed.iter().last(),
            Some(libp2p::multiaddr::Protocol::P2p(_))
        ) {
            parsed.pop();
        }
        addrs.push(parsed);
    }
    let peer = cert.node_key().peer_id();
    let org = cert.org().to_owned();
    let alias = request.alias.clone();
    let record = KnownNode {
        keyid: cert.node_key().keyid(),
        peer_id: peer.to_string(),
        name: cert.node().to_owned(),
        org: org.clone(),
        cert: bytes,
        addrs: addrs.iter().map(ToString::to_string).collect(),
        joined: false,
        added_at: now,
        last_seen: None,
    };
    let membership = state.membership.clone();
    let store = state.store.clone();
    let org_key = *cert.org_key();
    let pinned = org.clone();
    blocking(move || {
        membership.update_trust(|trust| {
            trust.pin_org(&pinned, org_key, now)?;
            if alias != pinned {
                trust.set_alias(&alias, AliasTarget::Org(pinned.clone()))?;
            }
            Ok(())
        })?;
        // Addresses first: recording the certificate keeps those of the stored record.
        store.put_node(&record)?;
        membership.record_cert(&envelope, now)?;
        Ok(())
    })
    .await?;
    let connected = state.mesh.dial(peer, addrs).await.is_ok();
    tracing::info!(target: super::TARGET, node = %cert.node(), %org, %peer, connected, "testnet control: learnt a node without an invite");
    Ok(Json(Learned {
        node: cert.node().to_owned(),
        org,
        peer_id: peer.to_string(),
        connected,
    }))
}
