//! Crash safety: a process writing to the store and the blob store is killed with SIGKILL
//! in the middle of its writes, and everything it committed is still there, whole.
//!
//! The writing process is this test binary again, running the ignored test
//! [`crash_child`] with [`CHILD_ENV`] naming the home to write to. It reports on stdout
//! each record it committed; the parent kills it while one thread is committing runs in a
//! loop and another is stuck half-way through writing a blob.
#![cfg(unix)]

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;

use otto_node::blobs::{BlobStore, Digest};
use otto_node::store::{
    AttemptEnd, AttemptState, Logs, NewLine, NewRun, NewStage, RunFilter, RunId, RunState, Source,
    StageState, Store, Stream,
};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Set in the child's environment to the home it writes to.
const CHILD_ENV: &str = "OTTO_STORE_CRASH_CHILD";

/// What the child prints in front of each report, so that libtest's own output on the
/// same line does not matter.
const MARK: &str = "@@ ";

/// Log lines appended per run, in one write.
const LINES: usize = 20;

/// How many runs the child commits at most (it is killed long before).
const RUNS: u64 = 3_000;

/// How many whole blobs the child writes before it stalls in the middle of one.
const BLOBS: usize = 8;

/// How many runs the parent waits to see committed before it kills the child.
const KILL_AFTER_RUNS: usize = 25;

#[test]
fn a_killed_writer_leaves_every_commit_whole_and_no_half_blob() -> Result {
    let dir = tempfile::tempdir()?;
    let home = dir.path();
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "store_crash::crash_child",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut runs = Vec::new();
    let mut blobs = Vec::new();
    let mut began = None;
    let mut stalled = false;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let Some((_, report)) = line.split_once(MARK) else {
            continue;
        };
        let words: Vec<&str> = report.split_whitespace().collect();
        match words.as_slice() {
            ["run", id] => runs.push(id.parse::<RunId>()?),
            ["began", id] => began = Some(id.parse::<RunId>()?),
            ["blob", digest] => blobs.push(digest.parse::<Digest>()?),
            ["stalled"] => stalled = true,
            _ => return Err(format!("unexpected report {report:?}").into()),
        }
        // Kill while a run is half-way: its attempt has begun, and its log lines and
        // results are being written.
        let cut_short = began.is_some_and(|id| !runs.contains(&id));
        if stalled && runs.len() >= KILL_AFTER_RUNS && cut_short {
            break;
        }
    }
    // SIGKILL: no destructor, no flush, no clean close of the database.
    child.kill()?;
    child.wait()?;
    assert!(stalled, "the child never reached the half-written blob");
    assert!(runs.len() >= KILL_AFTER_RUNS, "the child stopped early");
    let began = began.ok_or("no run began")?;
    assert_eq!(blobs.len(), BLOBS);

    // The half-written blob is on disk, under tmp/ only.
    let tmp = home.join("blobs").join("tmp");
    let leftovers: Vec<_> = fs::read_dir(&tmp)?.collect::<io::Result<_>>()?;
    assert_eq!(leftovers.len(), 1);
    assert!(leftovers[0].metadata()?.len() > 0);

    let blob_store = BlobStore::open(home.join("blobs"))?;
    assert_eq!(fs::read_dir(&tmp)?.count(), 0, "tmp is cleaned on open");
    let stored = stored_blobs(&home.join("blobs").join("sha256"))?;
    for digest in &stored {
        blob_store.verify(digest)?;
    }
    // Every blob the child reported is there; nothing else is (the half one is not).
    assert_eq!(stored, blobs.iter().copied().collect::<BTreeSet<_>>());

    let store = Store::open(home.join("store.redb"))?;
    let logs = Logs::open(home.join("logs"), u64::MAX / 8)?;
    for id in &runs {
        let run = store.run(id)?.ok_or("a committed run is missing")?;
        assert_eq!(run.state, RunState::Succeeded);
        let stage = store
            .stage(id, "Build")?
            .ok_or("a committed stage is missing")?;
        assert_eq!(stage.state, StageState::Succeeded);
        assert_eq!(stage.attempts.len(), 1);
        assert_eq!(stage.attempts[0].state, AttemptState::Succeeded);
        let lines = logs.read(id, "Build", 0, 100)?.lines;
        let texts: Vec<_> = lines.iter().map(|l| l.text.clone()).collect();
        assert_eq!(texts, expected_lines(id));
    }
    // Every run in the store, including one the kill may have cut short, reads whole: its
    // log is what was written, from its first line on (a record cut short by the kill is
    // never read), and opening it to write again cuts that record off and goes on.
    let all = store.list_runs(&RunFilter {
        limit: usize::MAX,
        ..RunFilter::default()
    })?;
    assert!(all.len() >= runs.len());
    for run in &all {
        for stage in store.stages(&run.id)? {
            assert!(stage.attempts.len() <= 1);
            let lines = logs.read(&run.id, &stage.id, 0, 100)?.lines;
            let texts: Vec<_> = lines.iter().map(|l| l.text.clone()).collect();
            let expected = expected_lines(&run.id);
            assert_eq!(
                texts,
                expected[..texts.len()],
                "a prefix of what was written"
            );
            let seqs: Vec<u64> = lines.iter().map(|l| l.seq).collect();
            assert!(seqs.iter().copied().eq(1..=seqs.len() as u64));
            let more = logs.append(
                &run.id,
                &stage.id,
                2,
                &[NewLine {
                    time: 0,
                    stream: Stream::System,
                    step: None,
                    text: "after the crash".into(),
                }],
            )?;
            assert_eq!(more.first, lines.len() as u64 + 1);
        }
    }
    // The run cut short has its one attempt, ended or not.
    let cut = store
        .stage(&began, "Build")?
        .ok_or("the run cut short is missing")?;
    assert_eq!(cut.attempts.len(), 1);
    let was_running = cut.attempts[0].state == AttemptState::Running;

    // Recovery interrupts what was running and is idempotent.
    let first = store.recover(u64::MAX / 2)?;
    let second = store.recover(u64::MAX / 2)?;
    assert!(second.interrupted.is_empty());
    assert_eq!(first.retry, second.retry);
    assert_eq!(first.runs, second.runs);
    let interrupted: Vec<_> = first
        .interrupted
        .iter()
        .map(|a| (a.run, a.attempt))
        .collect();
    let expected = if was_running {
        vec![(began, 1)]
    } else {
        vec![]
    };
    assert_eq!(interrupted, expected);
    for retry in &first.retry {
        let stage = store
            .stage(&retry.run, &retry.stage)?
            .ok_or("stage missing")?;
        assert_eq!(stage.attempts.len() as u32, retry.attempt);
    }
    Ok(())
}

/// The writing process. Does nothing unless started by the test above.
#[test]
#[ignore = "the child process of a_killed_writer_leaves_every_commit_whole_and_no_half_blob"]
fn crash_child() -> Result {
    let Some(home) = std::env::var_os(CHILD_ENV).map(PathBuf::from) else {
        return Ok(());
    };
    let store = Store::open(home.join("store.redb"))?;
    let logs = Logs::open(home.join("logs"), u64::MAX / 8)?;
    let blobs = BlobStore::open(home.join("blobs"))?;
    let writer = thread::spawn(move || -> std::result::Result<(), String> {
        for i in 0..RUNS {
            write_run(&store, &logs, i).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    for i in 0..BLOBS {
        let mut bytes = format!("blob {i}\n").into_bytes();
        bytes.resize(200_000, i as u8);
        let digest = blobs.put_bytes(&bytes)?;
        println!("{MARK}blob {digest}");
    }
    // Never returns: the reader stalls after 1 MiB until the parent kills this process.
    blobs.put(Stall { sent: 0 })?;
    writer.join().map_err(|_| "writer panicked")??;
    Ok(())
}

fn write_run(store: &Store, logs: &Logs, i: u64) -> Result {
    let id = RunId::new(1_000_000 + i, [(i % 251) as u8; 10]);
    store.create_run(NewRun {
        id,
        pipeline: "crash".into(),
        plan: b"{\"pipeline\":\"crash\"}".to_vec(),
        source: Source::Snapshot {
            digest: Digest::of(b"src"),
        },
        facts: Default::default(),
        created_at: i,
        started_by: "test".into(),
        stages: vec![NewStage {
            id: "Build".into(),
            state: StageState::Pending,
        }],
    })?;
    store.set_run_state(&id, RunState::Running, i)?;
    let n = store.begin_attempt(&id, "Build", i)?;
    println!("{MARK}began {id}");
    let lines: Vec<_> = expected_lines(&id)
        .into_iter()
        .map(|text| NewLine {
            time: i,
            stream: Stream::Stdout,
            step: Some(0),
            text,
        })
        .collect();
    logs.append(&id, "Build", n, &lines)?;
    store.finish_attempt(
        &id,
        "Build",
        n,
        AttemptEnd {
            state: AttemptState::Succeeded,
            finished_at: i,
            exit_code: None,
            failed_step: None,
            error: None,
            log: None,
        },
        StageState::Succeeded,
    )?;
    store.set_run_state(&id, RunState::Succeeded, i)?;
    println!("{MARK}run {id}");
    Ok(())
}

fn expected_lines(id: &RunId) -> Vec<String> {
    (0..LINES).map(|n| format!("{id} line {n}")).collect()
}

/// A source that gives 1 MiB, then blocks reading stdin (which the parent never writes
/// and closes only by dying).
struct Stall {
    sent: usize,
}

impl Read for Stall {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.sent < 1 << 20 {
            let n = buf.len().min((1 << 20) - self.sent);
            buf[..n].fill(0x5a);
            self.sent += n;
            return Ok(n);
        }
        println!("{MARK}stalled");
        let mut byte = [0];
        io::stdin().read(&mut byte)?;
        Err(io::Error::other("the parent went away"))
    }
}

/// The digests of the blob files under `sha256/`, from their paths.
fn stored_blobs(objects: &Path) -> Result<BTreeSet<Digest>> {
    let mut out = BTreeSet::new();
    for shard in fs::read_dir(objects)? {
        let shard = shard?;
        for file in fs::read_dir(shard.path())? {
            let file = file?;
            let name = format!(
                "sha256:{}{}",
                shard.file_name().to_string_lossy(),
                file.file_name().to_string_lossy()
            );
            out.insert(name.parse()?);
        }
    }
    Ok(out)
}
