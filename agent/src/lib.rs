//! The Otto agent: the process that runs one stage attempt's steps, each as its own OS
//! process.
//!
//! The node never runs user code itself. For every stage attempt it creates a unix socket,
//! serves the [node↔agent protocol](protocol) on it and starts `otto-agent --socket PATH`.
//! The agent ([`run`]):
//!
//! 1. asks for the job (`GET /job`): the steps, the workspace, settings, secrets, the source
//!    snapshot, artifacts, caches and step packages;
//! 2. writes the secrets as files (mode 0600) in a private directory (mode 0700) next to
//!    the workspace, named by `OTTO_SECRETS_DIR`, and exports them as variables only when
//!    the job says `secret_env`;
//! 3. restores the source snapshot and the caches into the workspace;
//! 4. runs the steps in order, each process in its own process group, and streams their
//!    output line by line with every secret masked ([`mask`]);
//! 5. saves the caches when every step succeeded, posts the result, removes its private
//!    directory and exits with code 0, whatever the stage's outcome.
//!
//! Each step process runs inside the job's wall ([`wall`]): Landlock keeps it to its
//! workspace and private directory and away from the node's home and every other stage;
//! it runs as the job's step user when there is one, with the job's limits. The agent is
//! a child subreaper, so every process a step starts, in its process group or not, is
//! killed when the step ends.
//!
//! A stage timeout, or SIGTERM/SIGINT to the agent, stops the running step's whole process
//! group: SIGTERM, then SIGKILL after the job's grace period. Processes a step leaves
//! behind in its group are stopped the same way when the step ends. This does not depend
//! on the node: when it is gone (killed, its socket refusing connections), a SIGTERM still
//! stops the step, and the agent gives up sending what is left after a few seconds.
//! Without a signal, the agent notices a lost node by itself: when the node takes no
//! events, or refuses connections while there is nothing to send, for a few seconds, the
//! agent stops its step the same way and exits with code 1, so no step outlives its node
//! for long.
//!
//! The protocol, masking and step package format live in `otto-agent-protocol`, which the
//! node uses; the node links nothing of this crate. They are re-exported here under their
//! old names.

pub use otto_agent_protocol as protocol;
pub use otto_agent_protocol::{mask, packages};

mod client;
mod container;
mod error;
mod events;
mod files;
mod process;
mod stage;
mod stop;
pub mod wall;

use std::path::Path;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

pub use error::Error;

use crate::client::Client;
use crate::protocol::{Job, SecretValue};
use crate::stop::{Stop, StopReason};

/// How long the agent keeps trying to reach a node that refuses the result's connection.
const RESULT_PATIENCE: Duration = Duration::from_secs(3);

/// Runs the stage attempt served on `socket` to its end: fetches the job, runs it, reports
/// events and the result. Returns an error only when the agent itself could not work (the
/// node was unreachable or sent no usable job); a failing step is reported to the node and
/// gives `Ok`.
///
/// Must run inside a tokio runtime with I/O, time and signal drivers enabled.
pub async fn run(socket: &Path) -> Result<(), Error> {
    let began = std::time::Instant::now();
    let stop = Stop::new();
    let signals = watch_signals(stop.clone())?;
    let client = Client::connect(socket).await?;
    let job: Job = tokio::select! {
        job = client.job() => job?,
        reason = stop.wait() => {
            return Err(Error::Body { request: "GET /job".into(), message: reason.to_string() });
        }
    };
    tracing::info!(target: "otto_agent", run = %job.run, stage = %job.stage, attempt = job.attempt, "job received");
    stage::took("job received", began);
    let masker = mask::Masker::new(job.secrets.values().map(SecretValue::expose));
    let timer = job.timeout_secs.map(|secs| {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            stop.fire(StopReason::Timeout(secs));
        })
    });
    let (events, forwarder) = events::channel();
    let forwarding = tokio::spawn(forwarder.run(client.clone(), stop.clone()));
    let result = stage::run(job, client.clone(), events, masker, stop).await;
    if let Some(timer) = timer {
        timer.abort();
    }
    signals.abort();
    let forwarded = forwarding.await.map_err(|e| Error::Body {
        request: "POST /events".into(),
        message: e.to_string(),
    })?;
    tracing::info!(target: "otto_agent", outcome = result.outcome.as_str(), "stage finished");
    // A node that did not take the events is lost: one try for the result, no more.
    let patience = if forwarded.is_ok() {
        RESULT_PATIENCE
    } else {
        Duration::ZERO
    };
    let posted = client.post_result(&result, patience).await;
    stage::took("result posted (whole agent)", began);
    forwarded?;
    posted
}

/// Fires `stop` on SIGTERM or SIGINT.
fn watch_signals(stop: Stop) -> Result<tokio::task::JoinHandle<()>, Error> {
    let mut term =
        signal(SignalKind::terminate()).map_err(Error::io("cannot watch for SIGTERM"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(Error::io("cannot watch for SIGINT"))?;
    Ok(tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        // Stop first: nothing, not even logging, may come between the signal and the stop.
        stop.fire(StopReason::Cancelled);
        tracing::info!(target: "otto_agent", "stop requested by signal");
    }))
}
