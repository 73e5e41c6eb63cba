//! `GET /ui/events`: server-sent events that tell the pages to refresh.
//!
//! Built on the engine's event broadcast ([`Engine::events`](crate::engine::Engine::events)),
//! which carries every run, stage, gate and log change the engine records, including what
//! other nodes report about the stages they run. Events are coalesced: after the first
//! change, the stream waits [`COALESCE`] and sends one `change` event naming the run that
//! changed last, so a page refreshes at most about four times a second however busy the
//! node is. A receiver that fell behind sends a change too. A comment every 15 seconds
//! keeps the connection open; `retry: 1000` makes browsers reconnect after a second.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::Ui;
use crate::store::RunId;

/// How long changes are gathered into one event.
pub(crate) const COALESCE: Duration = Duration::from_millis(250);

/// How often a comment keeps the stream open.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Query of `GET /ui/events`.
#[derive(Debug, Deserialize)]
pub(crate) struct EventsQuery {
    /// Only changes of this run.
    run: Option<String>,
    /// The run's tag when the page was drawn: when the run has changed since, a change is
    /// sent at once, so nothing between drawing the page and connecting is missed.
    etag: Option<String>,
}

/// `GET /ui/events?run=<id>`.
pub(crate) async fn events(
    State(ui): State<Ui>,
    Query(query): Query<EventsQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let only: Option<RunId> = query.run.as_deref().and_then(|r| r.parse().ok());
    let receiver = ui.api.engine.events();
    let first = Event::default()
        .retry(Duration::from_secs(1))
        .comment("otto");
    // Subscribed first, then compared: a change after the comparison is in the receiver.
    let stale = match (only, query.etag) {
        (Some(run), Some(seen)) => crate::api::runs::run_etag(&ui.api, run)
            .await
            .is_ok_and(|now| now != seen),
        _ => false,
    };
    let missed = stale.then(|| {
        let data = serde_json::json!({ "run": only.map(|r| r.to_string()) });
        Ok(Event::default().event("change").data(data.to_string()))
    });
    let changes = futures::stream::unfold((receiver, only), |(mut rx, only)| async move {
        // Wait for the first change that concerns the page.
        let mut last = loop {
            match rx.recv().await {
                Ok(event) => {
                    let run = event.run();
                    if only.is_none_or(|o| o == run) {
                        break Some(run);
                    }
                }
                Err(RecvError::Lagged(_)) => break None,
                Err(RecvError::Closed) => return None,
            }
        };
        // Gather what follows for a moment.
        let deadline = tokio::time::Instant::now() + COALESCE;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => break,
                Ok(Ok(event)) => {
                    let run = event.run();
                    if only.is_none_or(|o| o == run) {
                        last = Some(run);
                    }
                }
                Ok(Err(RecvError::Lagged(_))) => {}
                Ok(Err(RecvError::Closed)) => break,
            }
        }
        let data = match last {
            Some(run) => serde_json::json!({ "run": run.to_string() }),
            None => serde_json::json!({ "run": only.map(|r| r.to_string()) }),
        };
        let event = Event::default().event("change").data(data.to_string());
        Some((Ok(event), (rx, only)))
    });
    let opening = futures::stream::iter(std::iter::once(Ok(first)).chain(missed));
    let stream = futures::StreamExt::chain(opening, changes);
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
}
