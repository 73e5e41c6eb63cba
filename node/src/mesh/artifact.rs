//! `/otto/artifact/1`: fetching an artifact from a peer as a stream of chunks, resumable
//! from any offset and verified against its sha256 digest.
//!
//! # Wire format
//!
//! The fetching node opens a stream and writes one **frame** holding an
//! `artifact_request` (digest, first byte wanted, most bytes wanted), then closes its
//! writing side. The serving node answers with frames each holding one `artifact_chunk`,
//! in order and without gaps, the last one marked `last`, and closes the stream. A frame is
//! a 4-byte big-endian length followed by that many bytes of the message's CBOR payload
//! (`otto_protocol::encode_payload`); a length over the kind's limit
//! ([`MAX_FRAME_BYTES`] for chunks) ends the stream.
//!
//! Frames are not signed envelopes: the stream is already authenticated by the
//! connection (Noise or TLS with the peer's node key), and the digest the fetcher asked for
//! binds the content, so a per-chunk signature would cost time and prove nothing more.
//!
//! A serving node that does not allow the peer, does not hold the artifact, or is busy
//! closes the stream without a chunk. The fetcher checks that each chunk names the
//! requested digest, starts where the previous one ended, carries data unless it is the
//! last, and stays within the total size; it hashes every byte, and after the last chunk
//! compares the digest of the whole.
#![warn(clippy::unwrap_used)]

use std::io::{self, Read as _, Seek as _, Write as _};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::{PeerId, Stream, StreamProtocol};
use otto_protocol::limits::{
    MAX_ARTIFACT_CHUNK_BYTES, MAX_ARTIFACT_CHUNK_DATA, MAX_ARTIFACT_REQUEST_BYTES,
};
use otto_protocol::{ArtifactChunk, ArtifactRequest, Digest};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::{ARTIFACT_PROTOCOL, MeshError, PeerPolicy};

/// The largest frame on `/otto/artifact/1`: one encoded artifact chunk.
pub const MAX_FRAME_BYTES: usize = MAX_ARTIFACT_CHUNK_BYTES;

/// Where a node's artifacts come from when a peer fetches one: the node implements it over
/// its blob store.
pub trait ArtifactSource: Send + Sync + 'static {
    /// Opens the artifact whose bytes hash to `sha256`, positioned at `offset`, or `None`
    /// when this node does not hold it. `offset` is at most the artifact's size.
    fn open(&self, sha256: &Digest, offset: u64) -> io::Result<Option<ArtifactReader>>;
}

/// An open artifact: its full size and a reader of its bytes from the requested offset.
pub struct ArtifactReader {
    /// The artifact's full size in bytes, whatever the offset.
    pub size: u64,
    /// The artifact's bytes from the requested offset to the end.
    pub reader: Pin<Box<dyn AsyncRead + Send>>,
}

/// The outcome of a successful fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    /// The artifact's size in bytes: the length of the file now.
    pub size: u64,
    /// How many bytes were already in the file and kept.
    pub resumed_from: u64,
}

/// The limits of artifact transfers, from the mesh [`Config`](super::Config).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Bytes of data per chunk the server sends.
    pub(crate) chunk_size: usize,
    /// The longest wait for the next frame, or to write one.
    pub(crate) idle_timeout: Duration,
    /// The largest artifact a fetch accepts.
    pub(crate) max_size: u64,
    /// The most transfers served at once.
    pub(crate) max_streams: usize,
}

/// Serves artifact streams opened by peers until `incoming` ends or the task is aborted;
/// aborting it aborts every transfer in progress.
pub(crate) async fn serve(
    mut incoming: libp2p_stream::IncomingStreams,
    policy: Arc<dyn PeerPolicy>,
    source: Arc<dyn ArtifactSource>,
    limits: Limits,
) {
    let permits = Arc::new(Semaphore::new(limits.max_streams));
    let mut transfers = JoinSet::new();
    loop {
        tokio::select! {
            next = incoming.next() => {
                let Some((peer, stream)) = next else { break };
                if !policy.allowed(&peer) {
                    tracing::debug!(target: "otto::mesh", %peer, "artifact stream refused: peer not allowed");
                    continue;
                }
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    tracing::warn!(target: "otto::mesh", %peer, "artifact stream refused: too many transfers");
                    continue;
                };
                let source = Arc::clone(&source);
                transfers.spawn(async move {
                    let _permit = permit;
                    if let Err(err) = serve_one(stream, source.as_ref(), limits).await {
                        tracing::debug!(target: "otto::mesh", %peer, "artifact transfer ended: {err}");
                    }
                });
            }
            Some(_) = transfers.join_next(), if !transfers.is_empty() => {}
        }
    }
}

/// Fetches the artifact `sha256` from `peer` into the file at `dest`, keeping its first
/// `resume_from` bytes (from an earlier, interrupted fetch) and asking only for the rest.
///
/// On success the file holds exactly the artifact. On a digest mismatch the file is
/// removed. On any other failure it holds the bytes received so far, so a later fetch can
/// resume from its length.
pub(crate) async fn fetch(
    control: &mut libp2p_stream::Control,
    peer: PeerId,
    sha256: Digest,
    dest: &Path,
    resume_from: u64,
    limits: Limits,
) -> Result<Fetched, MeshError> {
    let path = dest.to_owned();
    let (file, hasher) = tokio::task::spawn_blocking(move || prepare(&path, resume_from))
        .await
        .map_err(io::Error::other)??;

    // The file is written and hashed on the blocking pool while the next chunks arrive.
    let (chunks, mut pending) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    let writer = tokio::task::spawn_blocking(move || {
        let (mut file, mut hasher) = (file, hasher);
        while let Some(data) = pending.blocking_recv() {
            file.write_all(&data)?;
            hasher.update(&data);
        }
        file.flush()?;
        Ok::<_, io::Error>(hasher)
    });
    let received = receive(control, peer, sha256, resume_from, limits, &chunks).await;
    drop(chunks);
    let hasher = writer.await.map_err(io::Error::other)??;
    let size = received?;

    let actual = Digest(hasher.finalize().into());
    if actual != sha256 {
        tokio::fs::remove_file(dest).await?;
        return Err(MeshError::DigestMismatch {
            expected: sha256,
            actual,
        });
    }
    Ok(Fetched {
        size,
        resumed_from: resume_from,
    })
}

/// How many received chunks may wait for the file writer.
const WRITE_QUEUE: usize = 4;

/// Opens the file to fetch into, keeps its first `resume_from` bytes and hashes them.
fn prepare(path: &Path, resume_from: u64) -> Result<(std::fs::File, Sha256), MeshError> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let have = file.metadata()?.len();
    if have < resume_from {
        return Err(MeshError::ResumeBeyondFile { have, resume_from });
    }
    file.set_len(resume_from)?;
    let mut hasher = Sha256::new();
    io::copy(&mut (&mut file).take(resume_from), &mut hasher)?;
    file.seek(io::SeekFrom::Start(resume_from))?;
    Ok((file, hasher))
}

/// Requests the artifact from `resume_from` on and passes each chunk's data to `chunks`;
/// returns the artifact's size once the last chunk is in.
async fn receive(
    control: &mut libp2p_stream::Control,
    peer: PeerId,
    sha256: Digest,
    resume_from: u64,
    limits: Limits,
    chunks: &mpsc::Sender<Vec<u8>>,
) -> Result<u64, MeshError> {
    let idle = limits.idle_timeout;
    let protocol = StreamProtocol::new(ARTIFACT_PROTOCOL);
    let mut stream = tokio::time::timeout(idle, control.open_stream(peer, protocol))
        .await
        .map_err(|_| MeshError::Timeout { peer })?
        .map_err(|err| match err {
            libp2p_stream::OpenStreamError::UnsupportedProtocol(_) => MeshError::Unsupported {
                peer,
                protocol: ARTIFACT_PROTOCOL,
            },
            other => MeshError::Stream {
                peer,
                reason: other.to_string(),
            },
        })?;
    let request = ArtifactRequest {
        sha256,
        offset: resume_from,
        max_len: u64::MAX - resume_from,
    };
    // A server that refuses the fetch may drop the stream before the request is written.
    tokio::time::timeout(idle, async {
        write_frame(&mut stream, &otto_protocol::encode_payload(&request)).await?;
        stream.close().await
    })
    .await
    .map_err(|_| MeshError::Timeout { peer })?
    .map_err(|_| MeshError::ArtifactUnavailable { peer, sha256 })?;

    let mut received = resume_from;
    let mut total = None;
    loop {
        let frame = match tokio::time::timeout(idle, read_frame(&mut stream, MAX_FRAME_BYTES)).await
        {
            Err(_) => return Err(MeshError::Timeout { peer }),
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None) | Err(_)) => {
                return Err(match total {
                    None => MeshError::ArtifactUnavailable { peer, sha256 },
                    Some(total) => MeshError::Incomplete {
                        peer,
                        received,
                        total,
                    },
                });
            }
        };
        let chunk: ArtifactChunk = otto_protocol::decode_payload(&frame)
            .map_err(|err| bad_chunk(peer, err.to_string()))?;
        let size = *total.get_or_insert(chunk.total);
        check_chunk(&chunk, &sha256, received, size, limits.max_size)
            .map_err(|reason| bad_chunk(peer, reason))?;
        received += chunk.data.len() as u64;
        let last = chunk.last;
        if chunks.send(chunk.data).await.is_err() {
            // The writer stopped on an error, which `fetch` reports.
            return Err(MeshError::Io(io::Error::other(
                "the artifact file writer stopped",
            )));
        }
        if last {
            if received != size {
                return Err(MeshError::Incomplete {
                    peer,
                    received,
                    total: size,
                });
            }
            return Ok(size);
        }
    }
}

/// Serves one stream: reads the request, then sends the chunks.
async fn serve_one(
    mut stream: Stream,
    source: &dyn ArtifactSource,
    limits: Limits,
) -> io::Result<()> {
    let idle = limits.idle_timeout;
    let frame = tokio::time::timeout(idle, read_frame(&mut stream, MAX_ARTIFACT_REQUEST_BYTES))
        .await??
        .ok_or_else(|| invalid("stream closed before the request"))?;
    let request: ArtifactRequest =
        otto_protocol::decode_payload(&frame).map_err(|err| invalid(&err.to_string()))?;
    let Some(artifact) = source.open(&request.sha256, request.offset)? else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no artifact {}", request.sha256.to_hex()),
        ));
    };
    if request.offset > artifact.size {
        return Err(invalid("offset beyond the artifact"));
    }
    let end = artifact
        .size
        .min(request.offset.saturating_add(request.max_len));
    let chunk_size = limits.chunk_size.clamp(1, MAX_ARTIFACT_CHUNK_DATA);
    let mut reader = artifact.reader;
    let mut offset = request.offset;
    loop {
        let want = usize::try_from(end - offset).map_or(chunk_size, |left| left.min(chunk_size));
        let mut data = vec![0; want];
        tokio::time::timeout(idle, reader.read_exact(&mut data)).await??;
        let last = offset + want as u64 == end;
        let chunk = ArtifactChunk {
            sha256: request.sha256,
            offset,
            data,
            total: artifact.size,
            last,
        };
        let bytes = otto_protocol::encode_payload(&chunk);
        tokio::time::timeout(idle, write_frame(&mut stream, &bytes)).await??;
        offset += want as u64;
        if last {
            break;
        }
    }
    tokio::time::timeout(idle, stream.close()).await?
}

/// Checks one chunk against the fetch so far.
fn check_chunk(
    chunk: &ArtifactChunk,
    sha256: &Digest,
    received: u64,
    total: u64,
    max_size: u64,
) -> Result<(), String> {
    let len = chunk.data.len() as u64;
    if chunk.sha256 != *sha256 {
        return Err(format!(
            "chunk of another artifact {}",
            chunk.sha256.to_hex()
        ));
    }
    if chunk.total != total {
        return Err(format!("total changed from {total} to {}", chunk.total));
    }
    if total > max_size {
        return Err(format!("{total} bytes is over the limit of {max_size}"));
    }
    if chunk.offset != received {
        return Err(format!(
            "chunk at {} where {received} was next",
            chunk.offset
        ));
    }
    if chunk.data.len() > MAX_ARTIFACT_CHUNK_DATA {
        return Err(format!("chunk of {len} bytes"));
    }
    if len == 0 && !chunk.last {
        return Err("empty chunk before the last".to_owned());
    }
    if received.checked_add(len).is_none_or(|end| end > total) {
        return Err(format!("chunk ends past the total of {total} bytes"));
    }
    Ok(())
}

/// Writes one frame: the length as 4 big-endian bytes, then the bytes.
async fn write_frame(stream: &mut Stream, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| invalid("frame too long"))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// Reads one frame of at most `limit` bytes; `None` when the stream ends cleanly before it.
async fn read_frame(stream: &mut Stream, limit: usize) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 4];
    let mut filled = 0;
    while filled < header.len() {
        let n = stream
            .read(header.get_mut(filled..).unwrap_or_default())
            .await?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        filled += n;
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > limit {
        return Err(invalid(&format!(
            "frame of {len} bytes, over the limit of {limit}"
        )));
    }
    let mut bytes = vec![0; len];
    stream.read_exact(&mut bytes).await?;
    Ok(Some(bytes))
}

fn bad_chunk(peer: PeerId, reason: String) -> MeshError {
    MeshError::BadChunk { peer, reason }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(offset: u64, len: usize, total: u64, last: bool) -> ArtifactChunk {
        ArtifactChunk {
            sha256: Digest([1; 32]),
            offset,
            data: vec![0; len],
            total,
            last,
        }
    }

    #[test]
    fn chunks_must_follow_each_other_within_the_total() {
        let digest = Digest([1; 32]);
        let check = |c: &ArtifactChunk, received| check_chunk(c, &digest, received, 10, 100);
        assert_eq!(check(&chunk(0, 4, 10, false), 0), Ok(()));
        assert_eq!(check(&chunk(4, 6, 10, true), 4), Ok(()));
        assert!(check(&chunk(5, 4, 10, false), 4).is_err(), "gap");
        assert!(check(&chunk(4, 7, 10, true), 4).is_err(), "past the total");
        assert!(
            check(&chunk(4, 0, 10, false), 4).is_err(),
            "empty, not last"
        );
        assert!(check(&chunk(4, 2, 11, false), 4).is_err(), "total changed");
        assert!(
            check_chunk(&chunk(0, 1, 200, false), &digest, 0, 200, 100).is_err(),
            "over the size limit"
        );
        let other = ArtifactChunk {
            sha256: Digest([2; 32]),
            ..chunk(0, 1, 10, false)
        };
        assert!(check(&other, 0).is_err(), "another artifact");
    }
}
