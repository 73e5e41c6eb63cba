//! The dispatcher of mesh events: membership takes joins, revocation lists and
//! connections; everything else (offers, receipts, status events, subscriptions) goes on to
//! the handoff exchange.

use tokio::sync::mpsc;

use super::{Membership, MembershipError, TARGET};
use crate::mesh::{Event, ResponseHandle};

/// Reads the mesh's events until the mesh stops: join requests and revocation lists are
/// answered by `membership` (on a blocking thread, as they write `trust.toml` and the
/// store), connections update its connected set and last-seen times (and a new connection
/// gets this node's org's revocation list), and every
/// other event is handed to `exchange` without waiting. When `exchange` is full the event
/// is dropped: a request then times out on the asking side, whose outbox sends it again.
pub async fn dispatch(
    membership: Membership,
    mut events: mpsc::Receiver<Event>,
    exchange: mpsc::Sender<Event>,
) {
    while let Some(event) = events.recv().await {
        match event {
            Event::Join {
                peer,
                envelope,
                reply,
            } => {
                let membership = membership.clone();
                answer(reply, move || membership.handle_join(peer, envelope));
            }
            Event::Revocation {
                peer,
                envelope,
                reply,
            } => {
                let membership = membership.clone();
                answer(reply, move || membership.handle_revocation(peer, envelope));
            }
            Event::Connected { peer, address } => {
                membership.on_connected(peer, address);
                let membership = membership.clone();
                tokio::spawn(async move {
                    let m = membership.clone();
                    let _ = tokio::task::spawn_blocking(move || m.store_seen(&peer)).await;
                    membership.push_revocations(peer).await;
                });
            }
            Event::Disconnected { peer } => {
                membership.on_disconnected(&peer);
                let membership = membership.clone();
                tokio::task::spawn_blocking(move || membership.store_seen(&peer));
            }
            other => {
                if let Err(err) = exchange.try_send(other) {
                    tracing::warn!(target: TARGET, "mesh event dropped, the exchange is behind: {:?}", err.into_inner());
                }
            }
        }
    }
    tracing::debug!(target: TARGET, "the mesh's events ended");
}

/// Computes an answer on a blocking thread and sends it back to the asking peer.
fn answer(
    reply: ResponseHandle,
    compute: impl FnOnce() -> Result<otto_protocol::Envelope, MembershipError> + Send + 'static,
) {
    tokio::spawn(async move {
        let peer = *reply.peer();
        match tokio::task::spawn_blocking(compute).await {
            Ok(Ok(envelope)) => {
                if let Err(err) = reply.send(envelope).await {
                    tracing::debug!(target: TARGET, %peer, "cannot answer: {err}");
                }
            }
            Ok(Err(err)) => tracing::warn!(target: TARGET, %peer, "cannot answer a request: {err}"),
            Err(err) => tracing::warn!(target: TARGET, %peer, "answering a request failed: {err}"),
        }
    });
}
