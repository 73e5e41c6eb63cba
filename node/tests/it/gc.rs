//! Retention (`otto_node::gc`): with real files, a run that ended long ago loses its
//! logs, workspaces and the blobs only it names; a run still going, a recent run, a cache
//! and a blob stored again lately keep theirs.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use otto_node::blobs::{BlobStore, Digest};
use otto_node::gc::{self, Parts};
use otto_node::store::{
    CacheEntry, Logs, NewLine, NewRun, NewStage, RunId, RunState, Source, StageState, Store, Stream,
};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

const DAY: u64 = 24 * 60 * 60 * 1000;

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    logs: Logs,
    blobs: BlobStore,
    work: std::path::PathBuf,
    now: u64,
}

impl World {
    fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)?
            .as_millis() as u64;
        Ok(Self {
            store: Store::open(dir.path().join("store.redb"))?,
            logs: Logs::open(dir.path().join("logs"), 1 << 30)?,
            blobs: BlobStore::open(dir.path().join("blobs"))?,
            work: dir.path().join("work"),
            _dir: dir,
            now,
        })
    }

    fn parts(&self) -> Parts<'_> {
        Parts {
            store: &self.store,
            logs: &self.logs,
            blobs: &self.blobs,
            work_dir: &self.work,
        }
    }

    /// A blob whose file looks `days` old.
    fn blob(&self, text: &str, days: u64) -> Result<Digest> {
        let digest = self.blobs.put_bytes(text.repeat(1000).as_bytes())?;
        let when = SystemTime::now() - Duration::from_millis(days * DAY);
        File::open(self.blob_path(&digest))?.set_modified(when)?;
        Ok(digest)
    }

    fn blob_path(&self, digest: &Digest) -> std::path::PathBuf {
        let hex = digest.hex();
        self._dir
            .path()
            .join("blobs/sha256")
            .join(&hex[..2])
            .join(&hex[2..])
    }

    /// A run of one stage `Build`, created `days_ago`, ended then when `state` is final,
    /// whose log names `outputs` and whose workspace holds a file.
    fn run(
        &self,
        n: u8,
        days_ago: u64,
        state: RunState,
        source: Digest,
        outputs: &[Digest],
    ) -> Result<RunId> {
        let at = self.now - days_ago * DAY;
        let id = RunId::new(at, [n; 10]);
        self.store.create_run(NewRun {
            id,
            pipeline: format!("p{n}"),
            plan: b"{}".to_vec(),
            source: Source::Snapshot { digest: source },
            facts: Default::default(),
            created_at: at,
            started_by: "test".into(),
            stages: vec![NewStage {
                id: "Build".into(),
                state: StageState::Pending,
            }],
        })?;
        self.store.set_run_state(&id, RunState::Running, at)?;
        if state != RunState::Running {
            self.store.set_run_state(&id, state, at)?;
        }
        let mut lines = vec![NewLine {
            time: at,
            stream: Stream::Stdout,
            step: Some(0),
            text: "x".repeat(5000),
        }];
        for (i, digest) in outputs.iter().enumerate() {
            lines.push(NewLine {
                time: at,
                stream: Stream::System,
                step: None,
                text: format!("artifact 'a{i}' stored as {digest} (3000 bytes)"),
            });
        }
        self.logs.append(&id, "Build", 1, &lines)?;
        let ws = self.work.join(id.to_string()).join("Build-1");
        fs::create_dir_all(ws.join("locked"))?;
        fs::write(ws.join("out.bin"), vec![7u8; 10_000])?;
        fs::write(ws.join("locked/inside"), b"kept read-only by a step")?;
        fs::set_permissions(ws.join("locked"), fs::Permissions::from_mode(0o500))?;
        Ok(id)
    }
}

fn exists(path: &Path) -> bool {
    path.exists()
}

#[test]
fn an_old_run_loses_its_logs_workspaces_and_own_blobs_and_nothing_else() -> Result {
    let w = World::new()?;
    let only_old = w.blob("snapshot of the old run", 40)?;
    let old_artifact = w.blob("artifact only the old run made", 40)?;
    let shared = w.blob("artifact the recent run made too", 40)?;
    let live_source = w.blob("the running run's snapshot", 40)?;
    let cached = w.blob("a cache archive", 40)?;
    let touched = w.blob("stored again an hour ago", 0)?;
    w.store.cache_put(&CacheEntry {
        name: "deps".into(),
        key: None,
        blob: cached,
        size: 3000,
        saved_at: w.now - 40 * DAY,
    })?;
    let old = w.run(
        1,
        40,
        RunState::Succeeded,
        only_old,
        &[old_artifact, shared, live_source, cached, touched],
    )?;
    let recent = w.run(2, 1, RunState::Failed, shared, &[])?;
    // Started 40 days ago and still going (waiting at a gate, say): untouched.
    let running = w.run(3, 40, RunState::Running, live_source, &[])?;

    let dry = gc::collect(&w.parts(), 30, w.now, true)?;
    assert!(dry.dry_run);
    assert_eq!(dry.runs.len(), 1);
    assert_eq!(dry.runs[0].run, old);
    assert_eq!(dry.blobs, 2, "the old snapshot and the old artifact");
    assert!(dry.runs[0].log_bytes > 5000);
    assert!(dry.runs[0].workspace_bytes >= 10_000);
    assert!(dry.lines()[0].starts_with(&format!("would remove run {old} (p1, ended ")));
    // A dry run removes nothing.
    assert!(exists(&w.logs.run_dir(&old)));
    assert!(w.blobs.has(&only_old) && w.blobs.has(&old_artifact));

    let done = gc::collect(&w.parts(), 30, w.now, false)?;
    assert_eq!(done.runs, dry.runs);
    assert_eq!((done.blobs, done.blob_bytes), (dry.blobs, dry.blob_bytes));
    assert_eq!(done.bytes, dry.bytes);
    let total = done.lines().pop().unwrap_or_default();
    assert!(
        total.starts_with("removed 1 run that ended more than 30 days ago and 2 blobs"),
        "{total}"
    );
    assert!(!exists(&w.logs.run_dir(&old)));
    assert!(!exists(&w.work.join(old.to_string())));
    assert!(!w.blobs.has(&only_old) && !w.blobs.has(&old_artifact));
    for kept in [shared, live_source, cached, touched] {
        assert!(w.blobs.has(&kept), "{kept} is still named or fresh");
    }
    for run in [recent, running] {
        assert!(exists(&w.logs.run_dir(&run)));
        assert!(exists(
            &w.work.join(run.to_string()).join("Build-1/out.bin")
        ));
        assert!(!w.logs.read(&run, "Build", 0, 10)?.lines.is_empty());
    }
    // The old run is still on record; its log reads empty.
    assert_eq!(
        w.store.run(&old)?.map(|r| r.state),
        Some(RunState::Succeeded)
    );
    assert!(w.logs.read(&old, "Build", 0, 10)?.lines.is_empty());
    // Again: nothing left to remove.
    let again = gc::collect(&w.parts(), 30, w.now, false)?;
    assert!(again.runs.is_empty());
    assert_eq!(again.bytes, 0);
    // A window of 0 days takes every ended run, never the running one.
    let all = gc::collect(&w.parts(), 0, w.now, false)?;
    assert_eq!(all.runs.iter().map(|r| r.run).collect::<Vec<_>>(), [recent]);
    assert!(exists(&w.logs.run_dir(&running)));
    assert!(w.blobs.has(&live_source));
    Ok(())
}

#[test]
fn a_blob_stored_again_counts_as_fresh() -> Result {
    let w = World::new()?;
    let digest = w.blob("same bytes", 40)?;
    let before = fs::metadata(w.blob_path(&digest))?.modified()?;
    // `otto run` of the same tree uploads the same snapshot again.
    w.blobs.put_bytes("same bytes".repeat(1000).as_bytes())?;
    let after = fs::metadata(w.blob_path(&digest))?.modified()?;
    assert!(after > before + Duration::from_secs(30 * 24 * 3600));
    Ok(())
}
