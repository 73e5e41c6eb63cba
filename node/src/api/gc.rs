//! `POST /v1/gc`: removes what runs that ended long ago left behind ([`crate::gc`]).

use std::path::PathBuf;

use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, Json, blocking, now_ms};
use crate::gc::{self, GcError, Parts, Report};

/// The body of `POST /v1/gc`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcRequest {
    /// Runs that ended more than this many days ago (default: `[node] retention_days`).
    #[serde(default)]
    pub older_than_days: Option<u32>,
    /// Say what would go, remove nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /v1/gc`.
pub(super) async fn collect(
    State(state): State<ApiState>,
    Json(request): Json<GcRequest>,
) -> Result<Json<Report>, ApiError> {
    let config = state.home.load_config().map_err(ApiError::internal)?;
    let days = gc::window(request.older_than_days, config.node.retention_days)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let (store, logs, blobs) = (
        state.store.clone(),
        state.engine.logs().clone(),
        state.blobs.clone(),
    );
    let work_dir = PathBuf::from(&state.node.wall.work_dir);
    let dry_run = request.dry_run;
    let report = blocking(move || {
        let parts = Parts {
            store: &store,
            logs: &logs,
            blobs: &blobs,
            work_dir: &work_dir,
        };
        gc::collect(&parts, days, now_ms(), dry_run).map_err(|e| match e {
            GcError::Store(e) => ApiError::from(e),
            other => ApiError::internal(other),
        })
    })
    .await?;
    for line in report.lines() {
        tracing::info!(target: super::TARGET, "{line}");
    }
    Ok(Json(report))
}
