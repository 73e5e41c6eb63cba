//! `POST /hooks/{token}`: a webhook gate's callback. The token in the URL is the only
//! credential; it is accepted once.

use axum::extract::State;

use super::types::HookAccepted;
use super::{ApiError, ApiState, Json, Path};

/// The largest callback body; the body is not read, only allowed.
pub(super) const MAX_BODY: usize = 64 * 1024;

/// `POST /hooks/{token}`.
pub(super) async fn callback(
    State(state): State<ApiState>,
    Path(token): Path<String>,
) -> Result<Json<HookAccepted>, ApiError> {
    // A token is 32 random bytes as 64 lowercase hex digits; anything else names no gate,
    // and the engine never sees it.
    if token.len() != 64
        || !token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(ApiError::not_found("no webhook gate has this token"));
    }
    state.engine.webhook(token).await?;
    tracing::info!(target: super::TARGET, "webhook callback accepted");
    Ok(Json(HookAccepted { accepted: true }))
}
