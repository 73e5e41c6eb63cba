//! The agent's side of the node protocol: an HTTP/1.1 client on the node's unix socket.
//!
//! Every request opens its own connection: on a unix socket that costs a few
//! microseconds, and no request can then be stuck behind another.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncWriteExt as _, ReadBuf};
use tokio::net::UnixStream;

use crate::error::Error;
use crate::protocol::{
    BLOBS_PATH, BlobRef, EVENTS_PATH, JOB_PATH, MAX_JOB_BYTES, PROTOCOL_VERSION, RESULT_PATH,
    RunResult, VERSION_HEADER, is_digest,
};

/// How long the agent keeps trying to reach the socket when it starts.
const CONNECT_PATIENCE: Duration = Duration::from_secs(5);

/// The pause between two connection attempts.
const CONNECT_RETRY: Duration = Duration::from_millis(20);

/// How long a small request (a batch of events, the result) may take, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The first pause before the result is sent again; each further pause doubles.
const RESULT_RETRY: Duration = Duration::from_millis(100);

/// The largest small answer (a [`BlobRef`], an error text) read, in bytes.
const MAX_SMALL_BODY: usize = 64 * 1024;

/// The request body type: bytes in memory or a file streamed from disk.
type ReqBody = BoxBody<Bytes, io::Error>;

/// A client of one node socket.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    socket: PathBuf,
}

impl Client {
    /// Waits until the socket accepts a connection, for up to [`CONNECT_PATIENCE`].
    pub(crate) async fn connect(socket: &Path) -> Result<Self, Error> {
        let deadline = tokio::time::Instant::now() + CONNECT_PATIENCE;
        loop {
            match UnixStream::connect(socket).await {
                Ok(_) => {
                    return Ok(Self {
                        socket: socket.to_owned(),
                    });
                }
                Err(source) if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::Connect {
                        path: socket.to_owned(),
                        source,
                    });
                }
                Err(_) => tokio::time::sleep(CONNECT_RETRY).await,
            }
        }
    }

    /// `GET /job`.
    pub(crate) async fn job<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let request = format!("GET {JOB_PATH}");
        let response = self.send(Method::GET, JOB_PATH, empty(), None).await?;
        let bytes = read_body(response, MAX_JOB_BYTES, &request).await?;
        // The job holds secrets and serde's messages may quote values: report only where
        // the problem is.
        serde_json::from_slice(&bytes).map_err(|e| Error::Body {
            request,
            message: format!(
                "the job does not have the expected shape ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
        })
    }

    /// `POST /events` with one batch, already encoded as a JSON array of events.
    pub(crate) async fn post_events(&self, body: Bytes) -> Result<(), Error> {
        self.post_body(EVENTS_PATH, body).await
    }

    /// `POST /result`. While the node refuses the connection (so it cannot have taken the
    /// result), tries again for up to `patience`.
    pub(crate) async fn post_result(
        &self,
        result: &RunResult,
        patience: Duration,
    ) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut pause = RESULT_RETRY;
        loop {
            match self.post_json(RESULT_PATH, result).await {
                Err(error @ Error::Connect { .. })
                    if tokio::time::Instant::now() + pause < deadline =>
                {
                    tracing::warn!(target: "otto_agent::client", %error, "the result is not taken; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                posted => return posted,
            }
        }
    }

    /// Checks that the node still accepts connections on its socket.
    pub(crate) async fn probe(&self) -> Result<(), Error> {
        UnixStream::connect(&self.socket)
            .await
            .map(drop)
            .map_err(|source| Error::Connect {
                path: self.socket.clone(),
                source,
            })
    }

    /// `PUT /blobs` with the contents of a file whose digest is known; checks that the
    /// node stored it under that digest.
    pub(crate) async fn put_blob(&self, file: &Path, digest: &str) -> Result<BlobRef, Error> {
        let request = format!("PUT {BLOBS_PATH}");
        let opened = tokio::fs::File::open(file)
            .await
            .map_err(Error::io(format!("open {}", file.display())))?;
        let len = opened
            .metadata()
            .await
            .map_err(Error::io(format!("stat {}", file.display())))?
            .len();
        let body = FileBody {
            file: opened,
            remaining: len,
            buf: vec![0; 64 * 1024].into_boxed_slice(),
        };
        let response = self
            .send(
                Method::PUT,
                BLOBS_PATH,
                body.boxed(),
                Some("application/octet-stream"),
            )
            .await?;
        let bytes = read_body(response, MAX_SMALL_BODY, &request).await?;
        let blob: BlobRef =
            serde_json::from_slice(&bytes).map_err(|source| Error::Json { request, source })?;
        if blob.digest != digest {
            return Err(Error::Digest {
                expected: digest.to_owned(),
                actual: blob.digest,
            });
        }
        Ok(blob)
    }

    /// `GET /blobs/{digest}` into a new file at `dest`, hashing while it streams. Fails
    /// (and leaves `dest` behind for the caller to remove) when the bytes do not match.
    pub(crate) async fn get_blob(&self, digest: &str, dest: &Path) -> Result<u64, Error> {
        if !is_digest(digest) {
            return Err(Error::Body {
                request: format!("GET {BLOBS_PATH}/…"),
                message: format!("'{digest}' is not a blob digest"),
            });
        }
        let path = format!("{BLOBS_PATH}/{digest}");
        let request = format!("GET {path}");
        let response = self.send(Method::GET, &path, empty(), None).await?;
        let mut body = response.into_body();
        let mut file = tokio::fs::File::create(dest)
            .await
            .map_err(Error::io(format!("create {}", dest.display())))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|source| Error::Http {
                request: request.clone(),
                source,
            })?;
            if let Ok(data) = frame.into_data() {
                hasher.update(&data);
                size += data.len() as u64;
                file.write_all(&data)
                    .await
                    .map_err(Error::io(format!("write {}", dest.display())))?;
            }
        }
        file.flush()
            .await
            .map_err(Error::io(format!("write {}", dest.display())))?;
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest {
            return Err(Error::Digest {
                expected: digest.to_owned(),
                actual,
            });
        }
        Ok(size)
    }

    /// Posts `value` as JSON.
    async fn post_json<T: Serialize + ?Sized>(&self, path: &str, value: &T) -> Result<(), Error> {
        let request = format!("POST {path}");
        let bytes = serde_json::to_vec(value).map_err(|source| Error::Json { request, source })?;
        self.post_body(path, Bytes::from(bytes)).await
    }

    /// `POST` of a JSON body; a small answer is read and dropped. Fails when the exchange
    /// takes longer than [`REQUEST_TIMEOUT`].
    async fn post_body(&self, path: &str, bytes: Bytes) -> Result<(), Error> {
        let request = format!("POST {path}");
        let body = Full::new(bytes).map_err(|never| match never {}).boxed();
        let exchange = async {
            let response = self
                .send(Method::POST, path, body, Some("application/json"))
                .await?;
            read_body(response, MAX_SMALL_BODY, &request).await
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(answer) => answer.map(drop),
            Err(_) => Err(Error::Body {
                message: format!(
                    "the node did not answer within {} s",
                    REQUEST_TIMEOUT.as_secs()
                ),
                request,
            }),
        }
    }

    /// Sends one request on a new connection; an answer outside 2xx is an error.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
        content_type: Option<&str>,
    ) -> Result<Response<Incoming>, Error> {
        let request = format!("{method} {path}");
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|source| Error::Connect {
                path: self.socket.clone(),
                source,
            })?;
        let http_err = |source| Error::Http {
            request: request.clone(),
            source,
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http_err)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(target: "otto_agent::client", %error, "connection closed");
            }
        });
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "otto-node")
            .header(VERSION_HEADER, PROTOCOL_VERSION.to_string());
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        let req = builder.body(body).map_err(|e| Error::Body {
            request: request.clone(),
            message: e.to_string(),
        })?;
        let response = sender.send_request(req).await.map_err(http_err)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = read_body(response, MAX_SMALL_BODY, &request)
            .await
            .map(|b| String::from_utf8_lossy(&b).chars().take(500).collect())
            .unwrap_or_default();
        Err(Error::Status {
            request,
            status: status.as_u16(),
            body: text,
        })
    }
}

/// The whole body of a response, refused when larger than `limit` bytes.
async fn read_body(
    response: Response<Incoming>,
    limit: usize,
    request: &str,
) -> Result<Vec<u8>, Error> {
    if response.status() == StatusCode::NO_CONTENT {
        return Ok(Vec::new());
    }
    let mut body = response.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|source| Error::Http {
            request: request.to_owned(),
            source,
        })?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(Error::Body {
                    request: request.to_owned(),
                    message: format!("the answer is larger than {limit} bytes"),
                });
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

fn empty() -> ReqBody {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

/// A request body read from a file of known length.
struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buf: Box<[u8]>,
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let mut buf = ReadBuf::new(&mut this.buf);
        ready!(Pin::new(&mut this.file).poll_read(cx, &mut buf))?;
        let filled = buf.filled();
        if filled.is_empty() {
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was sent",
            ))));
        }
        let len = (filled.len() as u64).min(this.remaining);
        this.remaining -= len;
        let chunk = filled.get(..len as usize).unwrap_or(filled);
        Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
