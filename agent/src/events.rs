//! Batching events to the node: bounded buffering, a batch at most every
//! [`FLUSH_INTERVAL_MS`], every [`MAX_BATCH_EVENTS`] events or before its body would grow past
//! [`MAX_EVENTS_BODY_BYTES`]; and watching that the node is still there.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::client::Client;
use crate::error::Error;
use bytes::Bytes;

use crate::protocol::{
    Event, EventBody, FLUSH_INTERVAL_MS, MAX_BATCH_EVENTS, MAX_EVENTS_BODY_BYTES,
};
use crate::stop::{Stop, StopReason};

/// How many events may wait to be sent before producers wait (and with them the steps,
/// whose output pipes fill up).
const BUFFER: usize = 4 * MAX_BATCH_EVENTS;

/// How long the node may keep failing (not taking a batch, or refusing connections while
/// there is nothing to send) before it counts as lost.
const NODE_PATIENCE: Duration = Duration::from_secs(5);

/// How long the forwarder waits for an event before it checks that the node still
/// accepts connections.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The first pause before a batch is sent again; each further pause doubles, up to
/// [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// The longest pause between two tries of a batch.
const MAX_RETRY: Duration = Duration::from_secs(1);

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
    /// sent. While there is nothing to send, checks every [`PROBE_INTERVAL`] that the node
    /// still accepts connections. When the node has failed for [`NODE_PATIENCE`], fires
    /// `stop` and returns the last error; the events still queued, and any sent later, are
    /// dropped.
    pub(crate) async fn run(mut self, client: Client, stop: Stop) -> Result<u64, Error> {
        let mut seq = 0u64;
        let mut batch = Batch::default();
        // An event that did not fit in the last batch: the first of the next.
        let mut carried: Option<Vec<u8>> = None;
        let interval = Duration::from_millis(FLUSH_INTERVAL_MS);
        let mut health = Health::default();
        let mut open = true;
        while open {
            let first = match carried.take() {
                Some(first) => first,
                None => match tokio::time::timeout(PROBE_INTERVAL, self.rx.recv()).await {
                    Ok(Some(first)) => encode(&mut seq, first)?,
                    Ok(None) => break,
                    Err(_) => {
                        match client.probe().await {
                            Ok(()) => health.ok(),
                            Err(error) if health.failed() => return Err(lost(&stop, error)),
                            Err(error) => {
                                tracing::debug!(target: "otto_agent::events", %error, "the node refuses connections");
                            }
                        }
                        continue;
                    }
                },
            };
            let deadline = Instant::now() + interval;
            batch.push(&first);
            while batch.events < MAX_BATCH_EVENTS {
                match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                    Ok(Some(event)) => {
                        let event = encode(&mut seq, event)?;
                        if !batch.fits(&event) {
                            carried = Some(event);
                            break;
                        }
                        batch.push(&event);
                    }
                    Ok(None) => {
                        open = false;
                        break;
                    }
                    Err(_) => break,
                }
            }
            if let Err(error) = deliver(&client, batch.finish(), &mut health).await {
                return Err(lost(&stop, error));
            }
        }
        Ok(seq)
    }
}

/// The JSON body of a batch being gathered: `[`, the events, `,` between them, `]`.
#[derive(Debug, Default)]
struct Batch {
    body: Vec<u8>,
    events: usize,
}

impl Batch {
    /// Whether one more encoded event keeps the body within [`MAX_EVENTS_BODY_BYTES`]. The
    /// first event always fits: the protocol's bounds on a line make any one event fit.
    fn fits(&self, event: &[u8]) -> bool {
        // The separator before it and the closing bracket after it.
        let grown = self.body.len() + 1 + event.len() + 1;
        self.events == 0 || grown <= MAX_EVENTS_BODY_BYTES
    }

    fn push(&mut self, event: &[u8]) {
        self.body.push(if self.events == 0 { b'[' } else { b',' });
        self.body.extend_from_slice(event);
        self.events += 1;
    }

    /// The finished body; the batch is empty again.
    fn finish(&mut self) -> Bytes {
        self.body.push(b']');
        self.events = 0;
        Bytes::from(std::mem::take(&mut self.body))
    }
}

/// Numbers an event and encodes it as JSON.
fn encode(seq: &mut u64, (time, body): (u64, EventBody)) -> Result<Vec<u8>, Error> {
    let event = Event {
        seq: *seq,
        time,
        body,
    };
    *seq += 1;
    serde_json::to_vec(&event).map_err(|source| Error::Json {
        request: "POST /events".into(),
        source,
    })
}

/// Since when the node has been failing, if it is.
#[derive(Debug, Default)]
struct Health {
    failing_since: Option<Instant>,
}

impl Health {
    /// The node answered.
    fn ok(&mut self) {
        self.failing_since = None;
    }

    /// The node failed; returns whether it has been failing for [`NODE_PATIENCE`].
    fn failed(&mut self) -> bool {
        self.failing_since
            .get_or_insert_with(Instant::now)
            .elapsed()
            >= NODE_PATIENCE
    }
}

/// Gives up on the node: fires `stop`, so the running step is stopped.
fn lost(stop: &Stop, error: Error) -> Error {
    tracing::warn!(target: "otto_agent::events", %error, "the node is lost; stopping");
    stop.fire(StopReason::NodeLost);
    error
}

/// Sends one batch, again and again until the node takes it or has failed for
/// [`NODE_PATIENCE`].
async fn deliver(client: &Client, batch: Bytes, health: &mut Health) -> Result<(), Error> {
    let mut pause = FIRST_RETRY;
    loop {
        match client.post_events(batch.clone()).await {
            Ok(()) => {
                health.ok();
                return Ok(());
            }
            Err(error) if health.failed() => return Err(error),
            Err(error) => {
                tracing::warn!(target: "otto_agent::events", %error, "event batch not taken; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_RETRY);
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
