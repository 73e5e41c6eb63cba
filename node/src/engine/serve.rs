//! The node's side of the agent protocol: the HTTP server on one attempt's unix socket.
//!
//! The routes are those of [`otto_agent_protocol`]. What the node adds:
//!
//! - every request must carry the protocol version header, or it gets `400`;
//! - `GET /blobs/{digest}` serves only the blobs the job names (the source snapshot,
//!   input artifacts, caches to restore) and those the agent stored itself, never any
//!   other blob of the node;
//! - events are taken in order by `seq`; a batch sent again is ignored up to what was
//!   already stored, so a retried batch never duplicates lines. A body larger than
//!   [`MAX_EVENTS_BODY_BYTES`] is refused whole (`413`). Log lines are masked again with
//!   the job's secrets, appended to the stage's log file (synced once per batch), and then
//!   announced (the event carries their numbers, not their text);
//! - the first result is kept; a second one gets `409`.
#![warn(clippy::unwrap_used)]

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use http_body_util::BodyExt as _;
use hyper::body::Frame;
use otto_agent_protocol::mask::Masker;
use otto_agent_protocol::{
    BLOBS_PATH, BlobRef, EVENTS_PATH, Event, EventBody, JOB_PATH, MAX_EVENTS_BODY_BYTES,
    MAX_RESULT_BYTES, Outcome, PROTOCOL_VERSION, RESULT_PATH, RunResult, Stream as WireStream,
    VERSION_HEADER,
};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{mpsc, oneshot};

use super::util::{blocking, lock};
use super::{EngineEvent, Shared};
use crate::blobs::Digest;
use crate::store::{NewLine, RunId, Stream};

/// The largest blob an agent may store, in bytes.
pub(crate) const MAX_BLOB_BYTES: u64 = 16 * 1024 * 1024 * 1024;

/// One attempt's server state.
pub(crate) struct Served {
    sh: Arc<Shared>,
    run: RunId,
    stage: String,
    /// The attempt whose log the lines go to.
    attempt: u32,
    /// The job, as JSON.
    job: Bytes,
    masker: Masker,
    /// Whether step events belong to the stage's own steps (published, step numbers kept)
    /// or to a helper job (a poll, `notify`), whose lines are stored without step numbers.
    own_steps: bool,
    /// Blobs the agent may fetch.
    allowed: Mutex<HashSet<Digest>>,
    /// The next event number expected; held while a batch is stored, so batches are taken
    /// one at a time, in order.
    next_seq: tokio::sync::Mutex<u64>,
    /// What the steps did, for the attempt's record.
    steps: Mutex<StepsSeen>,
    /// Where the result goes; taken by the first result.
    result: Mutex<Option<oneshot::Sender<RunResult>>>,
}

/// What the events said about the steps.
#[derive(Debug, Default)]
pub(crate) struct StepsSeen {
    /// The process group of the last step that started one.
    pub(crate) pgid: Option<u32>,
    /// Exit codes of steps that failed, by step number.
    pub(crate) exit_codes: HashMap<usize, i32>,
}

impl Served {
    /// The state for one agent: the job it gets, the blobs it may fetch, and where its
    /// result goes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        sh: Arc<Shared>,
        run: RunId,
        stage: String,
        attempt: u32,
        job: Bytes,
        masker: Masker,
        own_steps: bool,
        allowed: HashSet<Digest>,
        result: oneshot::Sender<RunResult>,
    ) -> Self {
        Self {
            sh,
            run,
            stage,
            attempt,
            job,
            masker,
            own_steps,
            allowed: Mutex::new(allowed),
            next_seq: tokio::sync::Mutex::new(0),
            steps: Mutex::new(StepsSeen::default()),
            result: Mutex::new(Some(result)),
        }
    }

    /// The process group of the last step that ran as a process.
    pub(crate) fn last_pgid(&self) -> Option<u32> {
        lock(&self.steps).pgid
    }

    /// The exit code of a failed step.
    pub(crate) fn exit_code(&self, step: usize) -> Option<i32> {
        lock(&self.steps).exit_codes.get(&step).copied()
    }
}

/// The protocol's routes for one attempt.
pub(crate) fn router(served: Arc<Served>) -> Router {
    Router::new()
        .route(JOB_PATH, get(job))
        .route(&format!("{BLOBS_PATH}/{{digest}}"), get(get_blob))
        .route(BLOBS_PATH, put(put_blob).layer(DefaultBodyLimit::disable()))
        .route(
            EVENTS_PATH,
            post(events).layer(DefaultBodyLimit::max(MAX_EVENTS_BODY_BYTES)),
        )
        .route(
            RESULT_PATH,
            post(result).layer(DefaultBodyLimit::max(MAX_RESULT_BYTES)),
        )
        .layer(middleware::from_fn(check_version))
        .with_state(served)
}

type Refusal = (StatusCode, String);

async fn check_version(request: Request, next: Next) -> Response {
    let version = request
        .headers()
        .get(VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    if version != Some(PROTOCOL_VERSION) {
        return (
            StatusCode::BAD_REQUEST,
            format!("this node speaks agent protocol {PROTOCOL_VERSION}"),
        )
            .into_response();
    }
    next.run(request).await
}

async fn job(State(served): State<Arc<Served>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        served.job.clone(),
    )
        .into_response()
}

async fn get_blob(
    State(served): State<Arc<Served>>,
    Path(digest): Path<String>,
) -> Result<Response, Refusal> {
    let digest: Digest = digest
        .parse()
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("bad digest: {e}")))?;
    if !lock(&served.allowed).contains(&digest) {
        return Err((
            StatusCode::NOT_FOUND,
            format!("blob {digest} is not part of this job"),
        ));
    }
    let blobs = served.sh.blobs.clone();
    let file = blocking(move || blobs.file(&digest))
        .await
        .map_err(|e| (StatusCode::NOT_FOUND, e.to_string()))?;
    let file = tokio::fs::File::from_std(file);
    let size = file
        .metadata()
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .len();
    let body = FileBody {
        file,
        remaining: size,
        buf: vec![0; 64 * 1024].into_boxed_slice(),
    };
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::new(body),
    )
        .into_response())
}

async fn put_blob(State(served): State<Arc<Served>>, body: Body) -> Result<Json<BlobRef>, Refusal> {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(16);
    let blobs = served.sh.blobs.clone();
    let writer = tokio::task::spawn_blocking(move || {
        blobs.put(ChannelReader {
            rx,
            current: Bytes::new(),
        })
    });
    let mut body = body;
    let mut size: u64 = 0;
    loop {
        let item = match body.frame().await {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    size += data.len() as u64;
                    if size > MAX_BLOB_BYTES {
                        Err(io::Error::other("the blob is too large"))
                    } else {
                        Ok(data)
                    }
                }
                Err(_) => continue,
            },
            Some(Err(error)) => Err(io::Error::other(error.to_string())),
        };
        let stop = item.is_err();
        if tx.send(item).await.is_err() || stop {
            break;
        }
    }
    drop(tx);
    let stored = writer
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let digest = stored.map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    lock(&served.allowed).insert(digest);
    Ok(Json(BlobRef {
        digest: digest.to_string(),
        size,
    }))
}

async fn events(
    State(served): State<Arc<Served>>,
    batch: Result<Json<Vec<Event>>, JsonRejection>,
) -> Result<StatusCode, Refusal> {
    let Json(batch) = batch.map_err(|rejection| refuse_events(&served, &rejection))?;
    let mut next_seq = served.next_seq.lock().await;
    let mut expected = *next_seq;
    let mut lines = Vec::new();
    let mut published = Vec::new();
    for event in batch {
        if event.seq < expected {
            continue;
        }
        if event.seq > expected {
            tracing::warn!(target: "otto_node::engine", run = %served.run, stage = %served.stage,
                expected, got = event.seq, "events are missing from the agent's stream");
        }
        expected = event.seq + 1;
        match event.body {
            EventBody::Log(log) => {
                let stream = match log.stream {
                    WireStream::Stdout => Stream::Stdout,
                    WireStream::Stderr => Stream::Stderr,
                    WireStream::Agent => Stream::System,
                };
                let step = if served.own_steps {
                    log.step.and_then(|s| u32::try_from(s).ok())
                } else {
                    None
                };
                // The line itself when masking changed nothing: no copy of it.
                let masked = match served.masker.mask(&log.line) {
                    Cow::Owned(masked) => Some(masked),
                    Cow::Borrowed(_) => None,
                };
                lines.push(NewLine {
                    time: event.time,
                    stream,
                    step,
                    text: masked.unwrap_or(log.line),
                });
            }
            EventBody::StepStarted(started) => {
                if started.pgid.is_some() {
                    lock(&served.steps).pgid = started.pgid;
                }
                if served.own_steps {
                    published.push(EngineEvent::StepStarted {
                        run: served.run,
                        stage: served.stage.clone(),
                        attempt: served.attempt,
                        index: u32::try_from(started.index).unwrap_or(u32::MAX),
                        symbol: started.symbol,
                        pgid: started.pgid,
                        time: event.time,
                    });
                }
            }
            EventBody::StepFinished(finished) => {
                if let Some(code) = finished.exit_code
                    && finished.outcome == Outcome::Failure
                {
                    lock(&served.steps).exit_codes.insert(finished.index, code);
                }
                if served.own_steps {
                    published.push(EngineEvent::StepFinished {
                        run: served.run,
                        stage: served.stage.clone(),
                        attempt: served.attempt,
                        index: u32::try_from(finished.index).unwrap_or(u32::MAX),
                        success: finished.outcome == Outcome::Success,
                        exit_code: finished.exit_code,
                        duration_ms: finished.duration_ms,
                        time: event.time,
                    });
                }
            }
        }
    }
    let written = if lines.is_empty() {
        None
    } else {
        let logs = served.sh.logs.clone();
        let (run, stage, attempt) = (served.run, served.stage.clone(), served.attempt);
        let appended = blocking(move || logs.append(&run, &stage, attempt, &lines))
            .await
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Some(appended)
    };
    *next_seq = expected;
    drop(next_seq);
    for event in published {
        served.sh.publish(event);
    }
    if let Some(appended) = written.filter(|a| a.first <= a.last) {
        served.sh.publish(EngineEvent::Log {
            run: served.run,
            stage: served.stage.clone(),
            attempt: served.attempt,
            first: appended.first,
            last: appended.last,
        });
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Why an events body was not taken. One larger than the protocol allows is refused
/// whole (`413`): none of its events are stored, so the agent can send them again in
/// smaller batches and nothing is lost.
fn refuse_events(served: &Served, rejection: &JsonRejection) -> Refusal {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        tracing::warn!(target: "otto_node::engine", run = %served.run, stage = %served.stage,
            "an agent sent an events body larger than the agent protocol allows; refused");
        return (
            status,
            format!(
                "an events body may hold at most {MAX_EVENTS_BODY_BYTES} bytes (agent protocol \
                 {PROTOCOL_VERSION}); none of this batch was taken: send its events in smaller \
                 batches"
            ),
        );
    }
    (
        status,
        format!("bad events body: {}", rejection.body_text()),
    )
}

async fn result(
    State(served): State<Arc<Served>>,
    Json(mut result): Json<RunResult>,
) -> Result<StatusCode, Refusal> {
    let sender = lock(&served.result).take();
    let Some(sender) = sender else {
        return Err((StatusCode::CONFLICT, "the result is already in".into()));
    };
    result.error = result.error.map(|e| served.masker.mask_text(&e));
    let _ = sender.send(result);
    Ok(StatusCode::NO_CONTENT)
}

/// A stored blob streamed as a response body.
struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buf: Box<[u8]>,
}

impl HttpBody for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let mut buf = ReadBuf::new(&mut this.buf);
        ready!(Pin::new(&mut this.file).poll_read(cx, &mut buf))?;
        let filled = buf.filled();
        if filled.is_empty() {
            return Poll::Ready(Some(Err(io::Error::from(io::ErrorKind::UnexpectedEof))));
        }
        this.remaining = this.remaining.saturating_sub(filled.len() as u64);
        Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(filled)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}

/// The bytes of a request body, read on a blocking thread.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(error)) => return Err(error),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        let chunk = self.current.split_to(n);
        out.get_mut(..n)
            .ok_or_else(|| io::Error::other("short buffer"))?
            .copy_from_slice(&chunk);
        Ok(n)
    }
}
