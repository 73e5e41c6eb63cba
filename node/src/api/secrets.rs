//! `/v1/secrets`: set, list and remove the vault's secrets. Values go in, never out.

use axum::extract::State;
use axum::http::StatusCode;

use super::types::{SecretInfo, SecretNames};
use super::{ApiError, ApiState, Body, Json, Path, blocking};
use crate::vault::VaultError;

/// `PUT /v1/secrets/{name}`: stores the request body as the secret's value.
pub(super) async fn set(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Body(value): Body,
) -> Result<StatusCode, ApiError> {
    if value.is_empty() {
        return Err(ApiError::invalid(format!(
            "the value of secret {:?} is empty; send the value as the request body",
            name.chars().take(130).collect::<String>()
        )));
    }
    let vault = state.vault.clone();
    let shown = name.clone();
    blocking(move || {
        let value = zeroize::Zeroizing::new(value.to_vec());
        let mut rng = crate::daemon::system_rng();
        vault.set(&name, &value, &mut rng).map_err(vault_error)
    })
    .await?;
    tracing::info!(target: super::TARGET, secret = %shown, "secret set");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/secrets`: the names of the stored secrets.
pub(super) async fn list(State(state): State<ApiState>) -> Result<Json<SecretNames>, ApiError> {
    let vault = state.vault.clone();
    let secrets = blocking(move || vault.list().map_err(vault_error)).await?;
    Ok(Json(SecretNames { secrets }))
}

/// `GET /v1/secrets/{name}`: whether the secret exists (its name), never its value.
pub(super) async fn get(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<SecretInfo>, ApiError> {
    let vault = state.vault.clone();
    blocking(move || {
        crate::vault::validate_name(&name).map_err(vault_error)?;
        if vault.list().map_err(vault_error)?.contains(&name) {
            Ok(Json(SecretInfo { name }))
        } else {
            Err(ApiError::not_found(format!("no secret {name}")))
        }
    })
    .await
}

/// `DELETE /v1/secrets/{name}`: removes a secret.
pub(super) async fn remove(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let vault = state.vault.clone();
    let shown = name.clone();
    let existed = blocking(move || vault.remove(&name).map_err(vault_error)).await?;
    if existed {
        tracing::info!(target: super::TARGET, secret = %shown, "secret removed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no secret {shown}")))
    }
}

/// Vault errors name the secret and the rule, never a value.
fn vault_error(e: VaultError) -> ApiError {
    match e {
        VaultError::Name(_) => ApiError::invalid(e.to_string()),
        VaultError::TooLarge(_) => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
        }
        other => ApiError::internal(other),
    }
}
