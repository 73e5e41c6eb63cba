//! Fetching an artifact from a peer: an [`ArtifactRequest`] for a byte range, answered by
//! [`ArtifactChunk`]s.

use serde::{Deserialize, Serialize};

use crate::bytes::{Digest, hex_bytes};

/// A request for part of an artifact, named by its digest.
///
/// The provider answers with chunks starting at `offset`, together at most `max_len` bytes;
/// a fetch resumes after a break by asking again from the first byte it lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRequest {
    /// `sha256`: digest of the whole artifact.
    pub sha256: Digest,
    /// `offset`: the first byte wanted.
    pub offset: u64,
    /// `max_len`: the most bytes wanted from `offset` on, over all chunks of the answer.
    pub max_len: u64,
}

/// A piece of an artifact. The receiver checks each chunk's place and the digest of the
/// whole once the last chunk is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactChunk {
    /// `sha256`: digest of the whole artifact.
    pub sha256: Digest,
    /// `offset`: where `data` starts in the artifact.
    pub offset: u64,
    /// `data`: the bytes, at most [`MAX_ARTIFACT_CHUNK_DATA`](crate::limits::MAX_ARTIFACT_CHUNK_DATA).
    #[serde(with = "hex_bytes")]
    pub data: Vec<u8>,
    /// `total`: the artifact's full size in bytes.
    pub total: u64,
    /// `last`: true on the last chunk of this answer.
    pub last: bool,
}
