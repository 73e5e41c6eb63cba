//! Retention: what runs that ended long ago leave behind, removed.
//!
//! [`collect`] removes, for every run that reached a final state more than `older_than`
//! days ago: its stage logs (`<home>/logs/<run>/`), its workspaces and their private
//! directories (`<work_dir>/<run>/`), and the blobs only it names (its source snapshot, the
//! artifacts and workspaces its stages stored, its attempts' log blobs). A blob stays when
//! a run that is kept names it (a run not yet ended, or ended within the window), when a
//! cache entry holds it, or when it was written or stored again within the last day (a run
//! being started may be about to name it). Nothing of a run that has not ended is touched.
//! The run's records stay in the store: `otto status` still shows it; its log is gone.
//!
//! The node runs it by itself every day with `[node] retention_days`; `otto-node gc` runs
//! it on demand. Blocks on disk I/O.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::blobs::{BlobStore, Digest};
use crate::engine::outputs::Record;
use crate::home::Home;
use crate::store::{self, Logs, Run, RunFilter, RunId, Source, Store, Stream};

/// A day in milliseconds.
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// What one [`collect`] removed (or, with `dry_run`, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Whether nothing was removed, only counted.
    pub dry_run: bool,
    /// The window: runs that ended more than this many days ago.
    pub older_than_days: u32,
    /// Per run: what went.
    pub runs: Vec<RunReport>,
    /// Blobs removed.
    pub blobs: u64,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Everything removed, in bytes.
    pub bytes: u64,
}

/// What went of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// The run.
    pub run: RunId,
    /// Its pipeline.
    pub pipeline: String,
    /// When it ended (milliseconds since the Unix epoch).
    pub ended_at: u64,
    /// The bytes of its logs.
    pub log_bytes: u64,
    /// The bytes of its workspaces.
    pub workspace_bytes: u64,
}

/// Why a collection stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GcError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// A file or directory could not be removed or measured.
    #[error("{0}: {1}")]
    Io(PathBuf, io::Error),
    /// The blob store could not be opened.
    #[error("the blob store: {0}")]
    Blobs(String),
    /// The home's configuration could not be read.
    #[error(transparent)]
    Home(#[from] crate::home::HomeError),
    /// No window given and retention is off.
    #[error("retention is off ([node] retention_days = 0): say which runs with --older-than DAYS")]
    NoWindow,
}

/// What [`collect`] works on.
pub struct Parts<'a> {
    /// The store (runs, stages, caches).
    pub store: &'a Store,
    /// The stage logs.
    pub logs: &'a Logs,
    /// The blob store.
    pub blobs: &'a BlobStore,
    /// The work directory holding `<run>/` workspaces.
    pub work_dir: &'a Path,
}

impl Report {
    /// The report for people, one line per run and a total.
    pub fn lines(&self) -> Vec<String> {
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        let mut out: Vec<String> = self
            .runs
            .iter()
            .map(|r| {
                format!(
                    "{verb} run {} ({}, ended {}): logs {}, workspaces {}",
                    r.run,
                    r.pipeline,
                    day(r.ended_at),
                    size(r.log_bytes),
                    size(r.workspace_bytes)
                )
            })
            .collect();
        let runs = self.runs.len();
        out.push(format!(
            "{verb} {runs} run{} that ended more than {} day{} ago and {} blob{} ({}): {} in all",
            if runs == 1 { "" } else { "s" },
            self.older_than_days,
            if self.older_than_days == 1 { "" } else { "s" },
            self.blobs,
            if self.blobs == 1 { "" } else { "s" },
            size(self.blob_bytes),
            size(self.bytes)
        ));
        out
    }
}

/// [`collect`] on the home of a stopped node: opens its store, logs and blobs, and takes
/// the window from `older_than_days` or else `[node] retention_days`.
pub fn collect_home(
    home: &Home,
    older_than_days: Option<u32>,
    now_ms: u64,
    dry_run: bool,
) -> Result<Report, GcError> {
    let config = home.load_config()?;
    let days = window(older_than_days, config.node.retention_days)?;
    let store = Store::open(home.store_file())?;
    let logs = Logs::open(home.logs_dir(), config.node.max_log_bytes)?;
    let blobs = BlobStore::open(home.blobs_dir()).map_err(|e| GcError::Blobs(e.to_string()))?;
    let root = fs::canonicalize(home.root()).map_err(|e| GcError::Io(home.root().to_owned(), e))?;
    let work_dir = config
        .agent
        .work_dir
        .clone()
        .unwrap_or_else(|| Home::new(&root).work_dir());
    let parts = Parts {
        store: &store,
        logs: &logs,
        blobs: &blobs,
        work_dir: &work_dir,
    };
    collect(&parts, days, now_ms, dry_run)
}

/// The window of a collection: the days asked for, else the configured retention.
pub fn window(asked: Option<u32>, retention_days: u32) -> Result<u32, GcError> {
    match (asked, retention_days) {
        (Some(days), _) => Ok(days),
        (None, 0) => Err(GcError::NoWindow),
        (None, days) => Ok(days),
    }
}

/// Removes what runs that ended more than `older_than_days` days before `now_ms` left
/// behind (see the module's documentation); with `dry_run`, only says what it would.
pub fn collect(
    parts: &Parts<'_>,
    older_than_days: u32,
    now_ms: u64,
    dry_run: bool,
) -> Result<Report, GcError> {
    let cutoff = now_ms.saturating_sub(u64::from(older_than_days).saturating_mul(DAY_MS));
    let runs = parts.store.list_runs(&RunFilter {
        limit: usize::MAX,
        ..RunFilter::default()
    })?;
    let (old, kept): (Vec<Run>, Vec<Run>) = runs.into_iter().partition(|run| {
        run.state.is_final() && run.finished_at.unwrap_or(run.updated_at) <= cutoff
    });
    let mut keep = HashSet::new();
    for run in &kept {
        keep.extend(named_blobs(parts, run)?);
    }
    keep.extend(parts.store.cache_blobs()?);
    let mut report = Report {
        dry_run,
        older_than_days,
        ..Report::default()
    };
    let mut doomed = HashSet::new();
    let recent = SystemTime::now() - Duration::from_secs(24 * 60 * 60);
    for run in &old {
        let log_dir = parts.logs.run_dir(&run.id);
        let work = parts.work_dir.join(run.id.to_string());
        let mut gone = Vec::new();
        for digest in named_blobs(parts, run)? {
            if keep.contains(&digest) || doomed.contains(&digest) {
                continue;
            }
            let path = parts.blobs.path(&digest);
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            if meta.modified().is_ok_and(|m| m > recent) {
                continue;
            }
            doomed.insert(digest);
            gone.push((digest, meta.len()));
        }
        let log_bytes = du(&log_dir)?;
        let workspace_bytes = du(&work)?;
        if gone.is_empty() && !log_dir.exists() && !work.exists() {
            continue;
        }
        if !dry_run {
            parts.logs.forget(&run.id);
            remove_tree(&log_dir)?;
            remove_tree(&work)?;
            for (digest, _) in &gone {
                let path = parts.blobs.path(digest);
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(GcError::Io(path, e));
                    }
                    _ => {}
                }
            }
        }
        let blob_bytes: u64 = gone.iter().map(|(_, n)| n).sum();
        report.blobs += gone.len() as u64;
        report.blob_bytes += blob_bytes;
        report.bytes += log_bytes + workspace_bytes + blob_bytes;
        report.runs.push(RunReport {
            run: run.id,
            pipeline: run.pipeline.clone(),
            ended_at: run.finished_at.unwrap_or(run.updated_at),
            log_bytes,
            workspace_bytes,
        });
    }
    Ok(report)
}

/// The blobs a run names: its source snapshot, what its stages stored (from their logs'
/// output lines) and its attempts' log blobs.
fn named_blobs(parts: &Parts<'_>, run: &Run) -> Result<HashSet<Digest>, GcError> {
    const PAGE: usize = 1000;
    let mut out = HashSet::new();
    if let Source::Snapshot { digest } = &run.source {
        out.insert(*digest);
    }
    for stage in parts.store.stages(&run.id)? {
        out.extend(stage.attempts.iter().filter_map(|a| a.log));
        let mut after = 0;
        loop {
            let page = parts.logs.read(&run.id, &stage.id, after, PAGE)?;
            for line in &page.lines {
                if line.stream == Stream::System
                    && line.step.is_none()
                    && let Some(record) = Record::parse(&line.text)
                {
                    match record {
                        Record::Artifact(_, digest, _) | Record::Workspace(digest, _) => {
                            out.insert(digest);
                        }
                        // A directory in the run's work directory, which goes with it.
                        Record::HandedOn(..) => {}
                    }
                }
            }
            match page.lines.last() {
                Some(last) if !page.end => after = last.seq,
                _ => break,
            }
        }
    }
    Ok(out)
}

/// The bytes of the files under `path` (0 when it is missing).
fn du(path: &Path) -> Result<u64, GcError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(GcError::Io(path.to_owned(), e)),
    };
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        // A directory a step made unreadable: counted as empty, removed all the same.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(0),
        Err(e) => return Err(GcError::Io(path.to_owned(), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| GcError::Io(path.to_owned(), e))?;
        total += du(&entry.path())?;
    }
    Ok(total)
}

/// Removes `path` and everything under it, making directories a step left read-only
/// writable first (never following a symbolic link).
fn remove_tree(path: &Path) -> Result<(), GcError> {
    match fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    open_up(path);
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(GcError::Io(path.to_owned(), e)),
        _ => Ok(()),
    }
}

fn open_up(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            open_up(&entry.path());
        }
    }
}

fn day(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(i64::try_from(ms).unwrap_or(i64::MAX))
        .map_or_else(|_| ms.to_string(), |t| t.strftime("%Y-%m-%d").to_string())
}

fn size(bytes: u64) -> String {
    if bytes < 1 << 20 {
        format!("{} KiB", bytes.div_ceil(1024))
    } else {
        store::logs::mib(bytes)
    }
}
