//! The node's HTTP API: JSON over HTTP on a loopback address, for the `otto` CLI.
//!
//! [`router`] builds the `/v1` API, [`hooks_router`] the webhook callback endpoint that
//! the daemon serves on its separate HTTPS listener. Both take an [`ApiState`] and do no
//! I/O of their own beyond the store, the blob store, the vault and the engine, so tests
//! drive them with `tower::ServiceExt::oneshot` and no socket.
//!
//! # Rules every endpoint keeps
//!
//! - `/v1/*` needs `Authorization: Bearer <token>`, the token in the home's `api.token`,
//!   compared in constant time; anything else answers 401.
//! - Every failure is an [`ApiError`]: `{"error": {"code", "message"}}` with a 4xx status
//!   for bad requests (malformed JSON, wrong shapes, unknown ids, bodies over the limit) and
//!   500 only for failures inside the node, whose cause is logged, not returned.
//! - Bodies are limited: snapshots to `api.max_snapshot_bytes`, secret values to the
//!   vault's limit, everything else to `api.max_json_bytes`.
//! - No response carries a secret value: the secrets endpoints return names only, and
//!   everything else comes from the store, which never holds one.
//!
//! `docs/api.md` documents every endpoint; `docs/openapi.yaml` is the schema.

mod error;
mod extract;
mod gc;
mod hooks;
mod logs;
mod membership;
mod repos;
pub(crate) mod runs;
mod secrets;
mod testnet;
pub mod types;
pub(crate) mod verify;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use extract::{Body, Json, Path, Query, query_int};
pub use gc::GcRequest;
pub use membership::{AliasRequest, ApproveRequest, Peers, RevokeRequest};
pub(crate) use repos::poll as poll_repos;
pub use testnet::{Blocked, Learn, Learned, router as testnet_router};

use crate::blobs::BlobStore;
use crate::engine::Engine;
use crate::home::Home;
use crate::membership::Membership;
use crate::mesh;
use crate::store::Store;
use crate::vault::Vault;

/// The log target of the API.
const TARGET: &str = "otto_node::api";

/// The longest a request may wait for a change (`wait=` on runs and logs), in seconds.
pub const MAX_WAIT_SECS: u64 = 60;

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ApiState(Arc<ApiParts>);

/// What [`ApiState::new`] is made of.
pub struct ApiParts {
    /// The store.
    pub store: Store,
    /// The blob store (snapshots).
    pub blobs: BlobStore,
    /// The vault (secrets).
    pub vault: Vault,
    /// The engine that runs the runs.
    pub engine: Engine,
    /// The bearer token clients must send.
    pub token: Zeroizing<String>,
    /// What `GET /v1/node` answers.
    pub node: types::NodeInfo,
    /// Body size limits.
    pub limits: Limits,
    /// Step package directories, loaded again for every run so that a changed package
    /// is seen without a restart.
    pub packages: Vec<PathBuf>,
    /// The node's home: the verify and bundle endpoints read its certificate, key and
    /// trust store from there at every request.
    pub home: Home,
    /// The mesh.
    pub mesh: mesh::Client,
    /// Who the node trusts: invites, joins, peers, the trust store.
    pub membership: Membership,
    /// Whether upstream owners may be bound to orgs this node never pinned.
    pub owners: otto_handoff::OwnerPolicy,
    /// The repositories the node watches.
    pub repos: crate::sources::Repos,
}

/// Request body limits, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest snapshot upload.
    pub max_snapshot_bytes: usize,
    /// The largest JSON body.
    pub max_json_bytes: usize,
}

impl ApiState {
    /// The state made of `parts`.
    pub fn new(parts: ApiParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for ApiState {
    type Target = ApiParts;

    fn deref(&self) -> &ApiParts {
        &self.0
    }
}

/// The `/v1` API, authenticated with the bearer token.
pub fn router(state: ApiState) -> Router {
    let limits = state.limits;
    let v1 = Router::new()
        .route(
            "/v1/snapshots",
            post(runs::upload_snapshot).layer(DefaultBodyLimit::max(limits.max_snapshot_bytes)),
        )
        .route("/v1/runs", get(runs::list).post(runs::create))
        .route("/v1/runs/{run}", get(runs::get))
        .route("/v1/runs/{run}/logs", get(logs::get))
        .route("/v1/runs/{run}/cancel", post(runs::cancel))
        .route("/v1/runs/{run}/retry", post(runs::retry))
        .route("/v1/runs/{run}/verify", get(verify::verify))
        .route("/v1/runs/{run}/bundle", get(verify::bundle))
        .route("/v1/runs/{run}/gates/{stage}/approve", post(runs::approve))
        .route("/v1/secrets", get(secrets::list))
        .route(
            "/v1/secrets/{name}",
            put(secrets::set)
                .get(secrets::get)
                .delete(secrets::remove)
                .layer(DefaultBodyLimit::max(crate::vault::MAX_VALUE)),
        )
        .route("/v1/node", get(node))
        .route("/v1/gc", post(gc::collect))
        .route("/v1/invites", post(membership::invite))
        .route("/v1/join", post(membership::join))
        .route("/v1/peers", get(membership::peers))
        .route("/v1/trust", get(membership::trust))
        .route("/v1/trust/aliases", post(membership::alias))
        .route("/v1/trust/revoke", post(membership::revoke))
        .route("/v1/trust/policy", post(membership::policy))
        .route("/v1/approvals", post(membership::approve))
        .route("/v1/repos", get(repos::list).post(repos::add))
        .route("/v1/repos/{name}", delete(repos::remove))
        .route("/v1/repos/{name}/fetch", post(repos::fetch))
        .layer(DefaultBodyLimit::max(limits.max_json_bytes))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    v1.route(
        "/hooks/{forge}/{name}",
        post(repos::webhook).layer(DefaultBodyLimit::max(repos::MAX_WEBHOOK_BODY)),
    )
    .fallback(not_found)
    .method_not_allowed_fallback(method_not_allowed)
    .layer(middleware::from_fn(log_request))
    .with_state(state)
}

/// The webhook callback endpoint, `POST /hooks/{token}`: no bearer token (the token in
/// the URL is the credential), a small body limit, for the HTTPS listener only.
pub fn hooks_router(state: ApiState) -> Router {
    Router::new()
        .route("/hooks/{token}", post(hooks::callback))
        .layer(DefaultBodyLimit::max(hooks::MAX_BODY))
        .route(
            "/hooks/{forge}/{name}",
            post(repos::webhook).layer(DefaultBodyLimit::max(repos::MAX_WEBHOOK_BODY)),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// `GET /v1/node`.
async fn node(State(state): State<ApiState>) -> Json<types::NodeInfo> {
    Json(state.node.clone())
}

pub(crate) async fn authenticate(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    match presented {
        Some(token) if bool::from(token.as_bytes().ct_eq(state.token.as_bytes())) => {
            Ok(next.run(request).await)
        }
        _ => Err(ApiError::unauthorized()),
    }
}

async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    // The path only: queries carry nothing secret, but webhook paths carry tokens.
    let path = request.uri().path().to_owned();
    let shown = if path.starts_with("/hooks/") {
        "/hooks/…".to_owned()
    } else {
        path
    };
    let response = next.run(request).await;
    tracing::debug!(target: TARGET, %method, path = %shown, status = %response.status(), "request");
    response
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint (see docs/api.md)")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method (see docs/api.md)",
    )
}

/// Runs blocking store or blob work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await?
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
pub(crate) mod tests;
