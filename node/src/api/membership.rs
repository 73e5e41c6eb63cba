//! Membership endpoints: invites, joining, peers, the trust store, aliases, revocation and
//! approvals. The work is [`crate::membership::Membership`]'s; these handlers check the
//! request, run it off the async threads where it blocks, and map its errors.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, Json, blocking};
use crate::membership::{
    AliasView, ApprovalView, InviteRequest, Invited, JoinOptions, Joined, MembershipError,
    PeerView, Policy, PolicyRequest, Revoked, TrustView,
};

/// The body of `POST /v1/trust/aliases`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasRequest {
    /// The alias, e.g. `ops`.
    pub alias: String,
    /// What it names: a pinned org (or an alias of one), a node key id or a known node's
    /// name.
    pub target: String,
}

/// The body of `POST /v1/trust/revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// The node: a key id (`ed25519:…`) or a known node's name.
    pub node: String,
    /// Why, for people; default empty.
    #[serde(default)]
    pub reason: String,
}

/// The body of `POST /v1/approvals`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// The stage definition digest, `sha256:` and 64 lowercase hex digits.
    pub digest: String,
}

/// `GET /v1/peers` answers this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peers {
    /// Every known node and every connected peer.
    pub peers: Vec<PeerView>,
}

/// The longest revocation reason accepted, in bytes.
/// The longest revocation reason, in characters: 64 characters of UTF-8 stay within the
/// protocol's 256-byte bound for a reason.
const MAX_REASON_LEN: usize = 64;

/// `POST /v1/invites`.
pub(super) async fn invite(
    State(state): State<ApiState>,
    Json(request): Json<InviteRequest>,
) -> Result<(StatusCode, Json<Invited>), ApiError> {
    let membership = state.membership.clone();
    let invited = blocking(move || {
        let now = crate::daemon::unix_now();
        Ok(membership.invite(&request, &mut crate::daemon::system_rng(), now)?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(invited)))
}

/// `POST /v1/join`.
pub(super) async fn join(
    State(state): State<ApiState>,
    Json(options): Json<JoinOptions>,
) -> Result<Json<Joined>, ApiError> {
    Ok(Json(state.membership.join(&options).await?))
}

/// `GET /v1/peers`.
pub(super) async fn peers(State(state): State<ApiState>) -> Json<Peers> {
    Json(Peers {
        peers: state.membership.peers(),
    })
}

/// `GET /v1/trust`.
pub(super) async fn trust(State(state): State<ApiState>) -> Json<TrustView> {
    Json(state.membership.trust_view())
}

/// `POST /v1/trust/aliases`.
pub(super) async fn alias(
    State(state): State<ApiState>,
    Json(request): Json<AliasRequest>,
) -> Result<Json<AliasView>, ApiError> {
    let membership = state.membership.clone();
    let view = blocking(move || Ok(membership.set_alias(&request.alias, &request.target)?)).await?;
    Ok(Json(view))
}

/// `POST /v1/trust/policy`.
pub(super) async fn policy(
    State(state): State<ApiState>,
    Json(request): Json<PolicyRequest>,
) -> Result<Json<Policy>, ApiError> {
    let membership = state.membership.clone();
    let policy = blocking(move || Ok(membership.set_policy_limits(&request)?)).await?;
    Ok(Json(policy))
}

/// `POST /v1/trust/revoke`.
pub(super) async fn revoke(
    State(state): State<ApiState>,
    Json(request): Json<RevokeRequest>,
) -> Result<Json<Revoked>, ApiError> {
    if request.reason.chars().count() > MAX_REASON_LEN
        || request.reason.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(format!(
            "reason must be one line of at most {MAX_REASON_LEN} characters"
        )));
    }
    Ok(Json(
        state
            .membership
            .revoke(&request.node, &request.reason)
            .await?,
    ))
}

/// `POST /v1/approvals`.
pub(super) async fn approve(
    State(state): State<ApiState>,
    Json(request): Json<ApproveRequest>,
) -> Result<Json<ApprovalView>, ApiError> {
    let membership = state.membership.clone();
    let view = blocking(move || Ok(membership.approve(&request.digest)?)).await?;
    Ok(Json(view))
}

impl From<MembershipError> for ApiError {
    fn from(e: MembershipError) -> Self {
        use MembershipError as E;
        match e {
            E::Invalid(_) | E::Trust(_) | E::Invite(_) | E::Cert(_) | E::Revocation(_) => {
                Self::invalid(e.to_string())
            }
            E::Refused { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "join_refused",
                e.to_string(),
            ),
            E::Unknown(_) => Self::not_found(e.to_string()),
            E::NoOrgKey | E::AlreadyRevoked(_) => Self::conflict(e.to_string()),
            E::Mesh(_) | E::BadAnswer(_) => {
                Self::new(StatusCode::BAD_GATEWAY, "unreachable", e.to_string())
            }
            E::NoMesh => Self::new(StatusCode::SERVICE_UNAVAILABLE, "no_mesh", e.to_string()),
            other => Self::internal(other),
        }
    }
}
