//! `GET /v1/runs/{run}/logs`: a stage's masked log lines, by page, with long-polling, read
//! from its log file ([`Logs`](crate::store::Logs)).

use std::time::Duration;

use axum::extract::State;
use serde::Deserialize;

use super::runs::{no_run, parse_run};
use super::types::LogPage;
use super::{ApiError, ApiState, Json, MAX_WAIT_SECS, Path, Query, blocking, query_int};

/// The most lines one request returns.
pub(super) const MAX_LINES: usize = 5000;

/// The largest `after`: 2^53 - 1, the largest integer every JSON reader keeps exact.
pub(super) const MAX_AFTER: u64 = (1 << 53) - 1;

/// How often a waiting request looks again even without an engine event.
const RECHECK: Duration = Duration::from_millis(500);

/// Query of `GET /v1/runs/{run}/logs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogQuery {
    /// The stage (required).
    stage: Option<String>,
    /// Lines after this number (default 0: from the start; at most [`MAX_AFTER`]).
    after: Option<String>,
    /// At most this many lines (default and maximum 5000).
    limit: Option<String>,
    /// When no line is there yet and the stage is not over, wait up to this many seconds
    /// for one (long-polling; at most 60).
    wait: Option<String>,
}

/// `GET /v1/runs/{run}/logs?stage=S&after=N&limit=L&wait=W`.
pub(super) async fn get(
    State(state): State<ApiState>,
    Path(run): Path<String>,
    Query(query): Query<LogQuery>,
) -> Result<Json<LogPage>, ApiError> {
    let run = parse_run(&run)?;
    let stage = query
        .stage
        .ok_or_else(|| ApiError::bad_request("the query parameter stage is required"))?;
    let after = query_int("after", query.after.as_deref(), 0, MAX_AFTER)?.unwrap_or(0);
    let limit = query_int("limit", query.limit.as_deref(), 1, MAX_LINES as u64)?;
    let limit = limit.map_or(MAX_LINES, |n| n as usize);
    let wait = query_int("wait", query.wait.as_deref(), 0, MAX_WAIT_SECS)?;
    let wait = Duration::from_secs(wait.unwrap_or(0));
    let deadline = tokio::time::Instant::now() + wait;
    let mut events = state.engine.events();
    loop {
        let store = state.store.clone();
        let logs = state.engine.logs().clone();
        let id = stage.clone();
        let page = blocking(move || {
            store.run(&run)?.ok_or_else(|| no_run(&run))?;
            // The state is read before the lines: when it is final, every line was
            // written before it, so `done` never cuts a log short.
            let found = store
                .stage(&run, &id)?
                .ok_or_else(|| ApiError::not_found(format!("run {run} has no stage {id:?}")))?;
            let page = logs.read(&run, &id, after, limit)?;
            let last = page.lines.last().map_or(after, |l| l.seq);
            let done = found.state.is_final() && page.end;
            Ok(LogPage {
                run,
                stage: id,
                lines: page.lines,
                last,
                state: found.state,
                done,
            })
        })
        .await?;
        let now = tokio::time::Instant::now();
        if !page.lines.is_empty() || page.done || now >= deadline {
            return Ok(Json(page));
        }
        let nap = (deadline - now).min(RECHECK);
        let _ = tokio::time::timeout(nap, events.recv()).await;
    }
}
