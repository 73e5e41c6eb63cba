//! Batching events to the node: bounded buffering, a batch at most every
//! [`FLUSH_INTERVAL_MS`] or every [`MAX_BATCH_EVENTS`] events.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::client::Client;
use crate::error::Error;
use crate::protocol::{Event, EventBody, FLUSH_INTERVAL_MS, MAX_BATCH_EVENTS};
use crate::stop::{Stop, StopReason};

/// How many events may wait to be sent before producers wait (and with them the steps,
/// whose output pipes fill up).
const BUFFER: usize = 4 * MAX_BATCH_EVENTS;

/// How often a batch is tried before the node counts as lost.
const ATTEMPTS: u32 = 3;

/// The producing side: cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Events {
    tx: mpsc::Sender<(u64, EventBody)>,
}

/// The consuming side, run as a task by [`Forwarder::run`].
#[derive(Debug)]
pub(crate) struct Forwarder {
    rx: mpsc::Receiver<(u64, EventBody)>,
}

/// A new event channel.
pub(crate) fn channel() -> (Events, Forwarder) {
    let (tx, rx) = mpsc::channel(BUFFER);
    (Events { tx }, Forwarder { rx })
}

impl Events {
    /// Queues an event, stamped now; waits while the buffer is full. Events are dropped
    /// once the forwarder has given up (the stop signal says so).
    pub(crate) async fn send(&self, body: EventBody) {
        let _ = self.tx.send((now_ms(), body)).await;
    }
}

impl Forwarder {
    /// Sends batches until every [`Events`] handle is dropped; returns the number of events
    /// sent. When the node does not take a batch after [`ATTEMPTS`] tries, fires `stop`
    /// and returns the error.
    pub(crate) async fn run(mut self, client: Client, stop: Stop) -> Result<u64, Error> {
        let mut seq = 0u64;
        let mut batch: Vec<Event> = Vec::with_capacity(MAX_BATCH_EVENTS);
        let interval = Duration::from_millis(FLUSH_INTERVAL_MS);
        let mut open = true;
        while open {
            let Some(first) = self.rx.recv().await else {
                break;
            };
            let deadline = Instant::now() + interval;
            push(&mut batch, &mut seq, first);
            while batch.len() < MAX_BATCH_EVENTS {
                match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                    Ok(Some(event)) => push(&mut batch, &mut seq, event),
                    Ok(None) => {
                        open = false;
                        break;
                    }
                    Err(_) => break,
                }
            }
            if let Err(error) = deliver(&client, &batch).await {
                stop.fire(StopReason::NodeLost);
                return Err(error);
            }
            batch.clear();
        }
        Ok(seq)
    }
}

fn push(batch: &mut Vec<Event>, seq: &mut u64, (time, body): (u64, EventBody)) {
    batch.push(Event {
        seq: *seq,
        time,
        body,
    });
    *seq += 1;
}

async fn deliver(client: &Client, batch: &[Event]) -> Result<(), Error> {
    let mut attempt = 1;
    loop {
        match client.post_events(batch).await {
            Ok(()) => return Ok(()),
            Err(error) if attempt >= ATTEMPTS => return Err(error),
            Err(error) => {
                tracing::warn!(target: "otto_agent::events", %error, attempt, "event batch not taken; retrying");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                attempt += 1;
            }
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
