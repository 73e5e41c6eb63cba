//! The node's side of `/otto/artifact/1`: peers fetch blobs of the node's blob store.
//!
//! Any blob the store holds is served to a peer the mesh's policy allows (the mesh checks
//! the policy before it asks this source). A peer must name the blob by its sha256, which
//! it learns from a signed offer or receipt; there is no listing.

use std::io::{self, Seek as _, SeekFrom};

use otto_protocol::Digest;

use crate::blobs::{self, BlobError, BlobStore};
use crate::mesh::{ArtifactReader, ArtifactSource};

/// Serves the blobs of a [`BlobStore`] over the mesh.
#[derive(Clone)]
pub struct BlobArtifacts {
    blobs: BlobStore,
}

impl BlobArtifacts {
    /// Serves the blobs of `blobs`.
    pub fn new(blobs: BlobStore) -> Self {
        Self { blobs }
    }
}

impl ArtifactSource for BlobArtifacts {
    fn open(&self, sha256: &Digest, offset: u64) -> io::Result<Option<ArtifactReader>> {
        let digest = blobs::Digest::from_bytes(sha256.0);
        let mut file = match self.blobs.file(&digest) {
            Ok(file) => file,
            Err(BlobError::NotFound(_)) => return Ok(None),
            Err(err) => return Err(io::Error::other(err.to_string())),
        };
        let size = file.metadata()?.len();
        file.seek(SeekFrom::Start(offset.min(size)))?;
        Ok(Some(ArtifactReader {
            size,
            reader: Box::pin(tokio::fs::File::from_std(file)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt as _;

    use super::*;

    #[tokio::test]
    async fn serves_stored_blobs_from_an_offset_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path()).unwrap();
        let stored = blobs.put_bytes(b"0123456789").unwrap();
        let source = BlobArtifacts::new(blobs);
        let mut open = source
            .open(&Digest(*stored.as_bytes()), 4)
            .unwrap()
            .expect("a stored blob is served");
        assert_eq!(open.size, 10);
        let mut rest = Vec::new();
        open.reader.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"456789");
        assert!(source.open(&Digest([9; 32]), 0).unwrap().is_none());
    }
}
