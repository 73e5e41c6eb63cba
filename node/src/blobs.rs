//! The content-addressed blob store: artifacts, caches, source snapshots and archived logs.
//!
//! A blob is a file named by the SHA-256 of its bytes. The layout under the store's root
//! (the home's `blobs/` directory) is:
//!
//! ```text
//! blobs/sha256/<first 2 hex digits>/<other 62 hex digits>   one file per blob, read-only
//! blobs/tmp/<pid>-<n>                                       a blob being written
//! ```
//!
//! # Crash safety
//!
//! A blob is written to a new file under `tmp/` while its digest is computed, the file is
//! flushed to disk (`fsync`), renamed to its final name and the directory holding it is
//! flushed too. A rename within one file system is atomic, so a blob under `sha256/` is
//! either absent or whole: a process killed half-way leaves only a file under `tmp/`, and
//! [`BlobStore::open`] deletes everything under `tmp/`. Open one `BlobStore` per home and
//! process, since opening deletes the files other writers are still writing.
//!
//! The methods do blocking `std` I/O; async callers run them on a blocking thread.
#![warn(clippy::unwrap_used)]

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// The size of the buffer blobs are copied and hashed through.
const CHUNK: usize = 64 * 1024;

/// A SHA-256 content digest, written `sha256:` followed by 64 lowercase hex digits.
///
/// Parsing accepts only that exact form, so a digest taken from an API request or a peer
/// can name nothing but a blob file (no path separators, no other encodings).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

/// Why a text is not a [`Digest`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// The text does not start with `sha256:`.
    #[error("a digest starts with `sha256:`")]
    Prefix,
    /// The hex part does not have 64 digits.
    #[error("a sha256 digest has 64 hex digits, got {0}")]
    Length(usize),
    /// The hex part has a character other than `0-9` and `a-f`.
    #[error("a digest has only lowercase hex digits after `sha256:`")]
    NotHex,
}

/// A directory of blobs named by their SHA-256.
#[derive(Debug, Clone)]
pub struct BlobStore {
    objects: PathBuf,
    tmp: PathBuf,
}

/// What went wrong in the blob store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// A file system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Reading the source of a new blob failed; nothing was stored.
    #[error("reading the blob's bytes: {0}")]
    Source(io::Error),
    /// No blob has this digest.
    #[error("no blob {0}")]
    NotFound(Digest),
    /// A stored blob's bytes no longer have its digest: the file was damaged.
    #[error("blob {expected} is corrupt: its bytes hash to {actual}")]
    Corrupt {
        /// The blob's name.
        expected: Digest,
        /// The digest of the bytes on disk.
        actual: Digest,
    },
    /// New bytes did not have the digest the caller expected; nothing was stored.
    #[error("expected a blob with digest {expected}, got {actual}")]
    Mismatch {
        /// The digest the caller asked for.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
}

impl Digest {
    /// The text every digest starts with.
    pub const PREFIX: &'static str = "sha256:";

    /// The digest of some bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The digest with these 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes of the digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex digits, without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl BlobStore {
    /// Opens the blob store rooted at `root` (the home's `blobs/` directory), creating
    /// `sha256/` and `tmp/` under it, and deletes every file left in `tmp/` by a writer
    /// that did not finish.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, BlobError> {
        let root = root.as_ref();
        let objects = root.join("sha256");
        let tmp = root.join("tmp");
        for dir in [root, &objects, &tmp] {
            create_dir(dir)?;
        }
        let entries = fs::read_dir(&tmp).map_err(io_err("list", &tmp))?;
        for entry in entries {
            let path = entry.map_err(io_err("list", &tmp))?.path();
            let removed = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.map_err(io_err("remove leftover", &path))?;
        }
        sync_dir(&tmp)?;
        Ok(Self { objects, tmp })
    }

    /// Stores the bytes read from `reader` and returns their digest. Storing bytes that are
    /// already there leaves the existing blob alone.
    pub fn put(&self, reader: impl Read) -> Result<Digest, BlobError> {
        self.write(reader, None)
    }

    /// Stores a byte slice and returns its digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, BlobError> {
        self.write(bytes, None)
    }

    /// Stores the bytes read from `reader` only if they have the `expected` digest; bytes
    /// with another digest are discarded and give [`BlobError::Mismatch`]. For bytes from
    /// a peer or an agent that named the blob beforehand.
    pub fn put_expected(&self, reader: impl Read, expected: &Digest) -> Result<Digest, BlobError> {
        self.write(reader, Some(expected))
    }

    /// Opens a blob for reading. The bytes are not checked against the digest: a caller that
    /// streams them on checks them as it goes, or calls [`Self::verify`].
    pub fn file(&self, digest: &Digest) -> Result<File, BlobError> {
        let path = self.path(digest);
        File::open(&path).map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => BlobError::NotFound(*digest),
            _ => BlobError::Io {
                action: "open",
                path,
                source: err,
            },
        })
    }

    /// Reads a whole blob into memory and checks that its bytes have its digest.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, BlobError> {
        let mut bytes = Vec::new();
        self.file(digest)?
            .read_to_end(&mut bytes)
            .map_err(io_err("read", &self.path(digest)))?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(BlobError::Corrupt {
                expected: *digest,
                actual,
            });
        }
        Ok(bytes)
    }

    /// Reads a blob through and checks that its bytes have its digest.
    pub fn verify(&self, digest: &Digest) -> Result<(), BlobError> {
        let path = self.path(digest);
        let (actual, _) = hash_to(self.file(digest)?, io::sink())
            .map_err(|err| err.into_blob_error("read", &path))?;
        if actual != *digest {
            return Err(BlobError::Corrupt {
                expected: *digest,
                actual,
            });
        }
        Ok(())
    }

    /// Whether a blob with this digest is stored.
    pub fn has(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// The size of a stored blob in bytes.
    pub fn size(&self, digest: &Digest) -> Result<u64, BlobError> {
        Ok(self
            .file(digest)?
            .metadata()
            .map_err(io_err("stat", &self.path(digest)))?
            .len())
    }

    /// Where a blob's file is, whether or not it exists. Only for code inside the node
    /// that hands a file to the operating system; everything else goes through the
    /// methods above, and nothing outside the node ever sees blob paths.
    pub(crate) fn path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        let (dir, file) = hex.split_at(2);
        self.objects.join(dir).join(file)
    }

    fn write(&self, reader: impl Read, expected: Option<&Digest>) -> Result<Digest, BlobError> {
        let (tmp_path, file) = self.create_tmp()?;
        // From here on the temporary file is removed on every error path.
        let result = self.fill_and_place(reader, expected, &tmp_path, file);
        if result.is_err() {
            let _ = fs::remove_file(&tmp_path);
        }
        result
    }

    fn fill_and_place(
        &self,
        reader: impl Read,
        expected: Option<&Digest>,
        tmp_path: &Path,
        mut file: File,
    ) -> Result<Digest, BlobError> {
        let (digest, size) = hash_to(reader, &mut file).map_err(|err| match err {
            CopyError::Read(err) => BlobError::Source(err),
            CopyError::Write(err) => BlobError::Io {
                action: "write",
                path: tmp_path.to_path_buf(),
                source: err,
            },
        })?;
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(BlobError::Mismatch {
                expected: *expected,
                actual: digest,
            });
        }
        let target = self.path(&digest);
        if let Ok(meta) = fs::metadata(&target)
            && meta.len() == size
        {
            // The same bytes are already stored; a blob is never rewritten. (A file of the
            // wrong size is a damaged copy and is replaced below.) Its time says it was
            // stored again, so that retention keeps it for a run about to name it.
            drop(file);
            if let Ok(existing) = File::open(&target) {
                let _ = existing.set_modified(std::time::SystemTime::now());
            }
            fs::remove_file(tmp_path).map_err(io_err("remove", tmp_path))?;
            return Ok(digest);
        }
        file.sync_all().map_err(io_err("sync", tmp_path))?;
        drop(file);
        // `target` always has a parent: it is `objects/<2 hex>/<62 hex>`.
        let shard = target.parent().unwrap_or(&self.objects);
        if !shard.is_dir() {
            create_dir(shard)?;
            sync_dir(&self.objects)?;
        }
        fs::rename(tmp_path, &target).map_err(io_err("rename into", &target))?;
        sync_dir(shard)?;
        Ok(digest)
    }

    fn create_tmp(&self) -> Result<(PathBuf, File), BlobError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = self.tmp.join(format!("{}-{n}", std::process::id()));
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(&path) {
                Ok(file) => return Ok((path, file)),
                // A name left by an earlier process with the same pid: take the next one.
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => {
                    return Err(BlobError::Io {
                        action: "create",
                        path,
                        source: err,
                    });
                }
            }
        }
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let hex = text.strip_prefix(Self::PREFIX).ok_or(DigestError::Prefix)?;
        if hex.len() != 64 {
            return Err(DigestError::Length(hex.len()));
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(DigestError::NotHex);
        }
        let mut bytes = [0; 32];
        hex::decode_to_slice(hex, &mut bytes).map_err(|_| DigestError::NotHex)?;
        Ok(Self(bytes))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// In text formats (JSON) a digest is its `sha256:<hex>` string; in binary formats (the
/// store's CBOR records) it is its 32 bytes.
impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(DigestVisitor)
        } else {
            deserializer.deserialize_bytes(DigestVisitor)
        }
    }
}

/// Accepts both forms, whatever the format claims, so that a digest inside a buffered
/// (internally tagged) enum decodes too.
struct DigestVisitor;

impl Visitor<'_> for DigestVisitor {
    type Value = Digest;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sha256 digest")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Digest, E> {
        text.parse().map_err(E::custom)
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Digest, E> {
        <[u8; 32]>::try_from(bytes)
            .map(Digest)
            .map_err(|_| E::invalid_length(bytes.len(), &self))
    }
}

/// A copy that failed on one side.
enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

impl CopyError {
    fn into_blob_error(self, action: &'static str, path: &Path) -> BlobError {
        let (Self::Read(source) | Self::Write(source)) = self;
        BlobError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Copies `reader` to `writer`, returning the digest and length of the bytes.
fn hash_to(mut reader: impl Read, mut writer: impl Write) -> Result<(Digest, u64), CopyError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0; CHUNK];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(CopyError::Read(err)),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        hasher.update(chunk);
        writer.write_all(chunk).map_err(CopyError::Write)?;
        size += n as u64;
    }
    writer.flush().map_err(CopyError::Write)?;
    Ok((Digest(hasher.finalize().into()), size))
}

fn create_dir(dir: &Path) -> Result<(), BlobError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io_err("create", dir))
}

/// Flushes a directory's entries to disk, so that a rename or removal in it survives a
/// crash of the machine.
fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync", dir))
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BlobError {
    move |source| BlobError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_text_round_trips() {
        let digest = Digest::of(b"hello");
        let text = digest.to_string();
        assert_eq!(
            text,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(text.parse::<Digest>(), Ok(digest));
    }

    #[test]
    fn digest_serde_uses_text_in_json_and_bytes_in_cbor() {
        let digest = Digest::of(b"x");
        let json = serde_json::to_string(&digest).unwrap_or_default();
        assert_eq!(json, format!("\"{digest}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).ok(), Some(digest));
        let mut cbor = Vec::new();
        ciborium::into_writer(&digest, &mut cbor).unwrap_or_default();
        assert_eq!(cbor.len(), 2 + 32);
        assert_eq!(
            ciborium::from_reader::<Digest, _>(&cbor[..]).ok(),
            Some(digest)
        );
    }
}
