//! Caches between runs: which to restore before an attempt, which to save after it.
//!
//! A cache is found by the org that started the run, its pipeline, its name and, when it
//! declares key files, the digest of those files as they are in the run's source snapshot
//! (so the node computes the key, never the agent). The store's cache index holds the
//! caches of this node's own org's runs under `<pipeline>/<name>` and those of another
//! org's run under `org:<org>/<pipeline>/<name>`, the org as this node's trust store names
//! it: cache names are identifiers, so pipelines never share a cache by accident, and a
//! peer org that names its pipeline, stage and cache like the owner's neither reads nor
//! replaces the owner's cache (nor another org's).
//!
//! - A cache found in the index (and whose blob is still there) is restored: a **hit**.
//! - Otherwise it is a **miss**; the stage that defines it saves it after its steps
//!   succeed. A stage that only reuses it (`cache { use NAME }`) restores it but leaves
//!   saving to the stage that defines it.
//! - A hit with key files is not saved again: the same key means the same inputs. A cache
//!   without key files is saved after every successful attempt of its defining stage, so
//!   it does not go stale.
#![warn(clippy::unwrap_used)]

use std::io::Read as _;
use std::path::{Component, Path, PathBuf};

use otto_agent_protocol::{CacheRestore, CacheSave};
use otto_pipeline::plan::Cache;
use sha2::{Digest as _, Sha256};

use crate::blobs::{BlobStore, Digest};
use crate::store::{self, Store};

/// The most bytes of one key file that are read to compute a key.
const MAX_KEY_FILE: u64 = 64 * 1024 * 1024;

/// What to do about a stage's caches in one attempt.
#[derive(Debug, Default)]
pub(crate) struct CachePlan {
    /// Caches to restore, for the job.
    pub(crate) restore: Vec<CacheRestore>,
    /// Caches to save, for the job.
    pub(crate) save: Vec<CacheSave>,
    /// Names restored.
    pub(crate) hits: Vec<String>,
    /// Names not found.
    pub(crate) misses: Vec<String>,
    /// The key of each cache to save, by name, for recording it once saved.
    pub(crate) keys: Vec<(String, Option<Digest>)>,
}

/// The index name of a pipeline's cache, for a run of this node's own org (`org` is
/// `None`) or of another org.
pub(crate) fn index_name(org: Option<&str>, pipeline: &str, name: &str) -> String {
    match org {
        None => format!("{pipeline}/{name}"),
        Some(org) => format!("org:{org}/{pipeline}/{name}"),
    }
}

/// Decides what to restore and save for `caches`, given the run's source snapshot. Blocks
/// on the store and the blob store.
pub(crate) fn plan(
    store: &Store,
    blobs: &BlobStore,
    org: Option<&str>,
    pipeline: &str,
    source: Option<&Digest>,
    caches: &[Cache],
) -> Result<CachePlan, store::Error> {
    let mut out = CachePlan::default();
    for cache in caches {
        let key = if cache.key_files.is_empty() {
            None
        } else {
            Some(key_digest(blobs, source, &cache.key_files))
        };
        let found = store
            .cache_get(&index_name(org, pipeline, &cache.name), key.as_ref())?
            .filter(|entry| blobs.has(&entry.blob));
        let hit = found.is_some();
        if let Some(entry) = found {
            out.restore.push(CacheRestore {
                name: cache.name.clone(),
                paths: cache.paths.clone(),
                digest: entry.blob.to_string(),
            });
            out.hits.push(cache.name.clone());
        } else {
            out.misses.push(cache.name.clone());
        }
        if cache.defined_here && (!hit || key.is_none()) {
            out.save.push(CacheSave {
                name: cache.name.clone(),
                paths: cache.paths.clone(),
            });
            out.keys.push((cache.name.clone(), key));
        }
    }
    Ok(out)
}

/// The digest of a cache's key files as they are in the source snapshot: for each file in
/// the order declared, its path, a zero byte, and the SHA-256 of its bytes (or `-` when the
/// snapshot does not have it). Without a snapshot every file counts as missing.
pub(crate) fn key_digest(blobs: &BlobStore, source: Option<&Digest>, files: &[String]) -> Digest {
    let wanted: Vec<PathBuf> = files.iter().map(|f| normal(Path::new(f))).collect();
    let mut found: Vec<Option<[u8; 32]>> = vec![None; files.len()];
    if let Some(source) = source
        && let Err(error) = hash_from_tar(blobs, source, &wanted, &mut found)
    {
        tracing::warn!(target: "otto_node::engine", %error, "cannot read key files from the source snapshot");
    }
    let mut hasher = Sha256::new();
    for (file, hash) in files.iter().zip(&found) {
        hasher.update(file.as_bytes());
        hasher.update([0]);
        match hash {
            Some(hash) => hasher.update(hash),
            None => hasher.update(b"-"),
        }
    }
    Digest::from_bytes(hasher.finalize().into())
}

fn hash_from_tar(
    blobs: &BlobStore,
    source: &Digest,
    wanted: &[PathBuf],
    found: &mut [Option<[u8; 32]>],
) -> std::io::Result<()> {
    let file = blobs.file(source).map_err(std::io::Error::other)?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    for entry in archive.entries()? {
        let entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = normal(&entry.path()?);
        let Some(i) = wanted.iter().position(|w| *w == path) else {
            continue;
        };
        let mut hasher = Sha256::new();
        let mut limited = entry.take(MAX_KEY_FILE);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = limited.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(buf.get(..n).unwrap_or_default());
        }
        if let Some(slot) = found.get_mut(i) {
            *slot = Some(hasher.finalize().into());
        }
    }
    Ok(())
}

/// A relative path without `.` parts, so `./Gemfile.lock` and `Gemfile.lock` are equal.
fn normal(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir | Component::RootDir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(blobs: &BlobStore, files: &[(&str, &str)]) -> Digest {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, text) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, path, text.as_bytes())
                .expect("append");
        }
        let bytes = builder.into_inner().expect("tar");
        blobs.put_bytes(&bytes).expect("put")
    }

    #[test]
    fn keys_follow_the_key_files_contents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = BlobStore::open(dir.path()).expect("blobs");
        let files = vec!["Gemfile.lock".to_owned()];
        let a = snapshot(&blobs, &[("./Gemfile.lock", "rails 7"), ("x", "1")]);
        let b = snapshot(&blobs, &[("Gemfile.lock", "rails 7"), ("x", "2")]);
        let c = snapshot(&blobs, &[("Gemfile.lock", "rails 8")]);
        let ka = key_digest(&blobs, Some(&a), &files);
        assert_eq!(ka, key_digest(&blobs, Some(&b), &files));
        assert_ne!(ka, key_digest(&blobs, Some(&c), &files));
        assert_ne!(ka, key_digest(&blobs, None, &files));
    }
}
