//! Stage logs on disk (`otto_node::store::Logs`): lines in order across attempts, pages,
//! the node's own budget with its one truncation line, torn and missing files after a
//! crash, the move out of an older store, and real steps that print far too much.

use std::fs::{self, OpenOptions};
use std::io::Write as _;

use otto_node::blobs::Digest;
use otto_node::store::logs::{MAX_LINE, STAGE_BUDGETS, STRIDE};
use otto_node::store::{
    Logs, NewLine, NewRun, NewStage, RunId, RunState, Source, StageState, Store, Stream,
};
use otto_pipeline::Facts;

use crate::engine_support::TestNode;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn run_id(n: u8) -> RunId {
    RunId::new(1_700_000_000_000, [n; 10])
}

fn line(time: u64, text: &str) -> NewLine {
    NewLine {
        time,
        stream: Stream::Stdout,
        step: Some(0),
        text: text.to_owned(),
    }
}

fn all(logs: &Logs, run: &RunId, stage: &str) -> Result<Vec<otto_node::store::LogLine>> {
    let mut out: Vec<otto_node::store::LogLine> = Vec::new();
    loop {
        let after = out.last().map_or(0, |l| l.seq);
        let page = logs.read(run, stage, after, 1000)?;
        out.extend(page.lines);
        if page.end {
            return Ok(out);
        }
    }
}

#[test]
fn lines_append_in_order_across_attempts_and_read_in_pages() -> Result {
    let dir = tempfile::tempdir()?;
    let logs = Logs::open(dir.path().join("logs"), 1 << 20)?;
    let run = run_id(1);
    let first: Vec<_> = (0..10).map(|i| line(i, &format!("one {i}"))).collect();
    assert_eq!(logs.append(&run, "Build", 1, &first)?.last, 10);
    let second: Vec<_> = (0..15)
        .map(|i| line(100 + i, &format!("two {i}")))
        .collect();
    let appended = logs.append(&run, "Build", 2, &second)?;
    assert_eq!((appended.first, appended.last), (11, 25));
    let none = logs.append(&run, "Build", 2, &[])?;
    assert!(none.first > none.last);
    logs.append(&run, "Test linux/x", 1, &[line(0, "other stage")])?;

    let page = logs.read(&run, "Build", 0, 8)?;
    assert_eq!(page.lines.len(), 8);
    assert!(!page.end);
    assert_eq!(page.lines[0].seq, 1);
    assert_eq!(page.lines[0].text, "one 0");
    assert_eq!(page.lines[0].step, Some(0));
    let page = logs.read(&run, "Build", 8, 8)?;
    let seqs: Vec<_> = page.lines.iter().map(|l| l.seq).collect();
    assert_eq!(seqs, [9, 10, 11, 12, 13, 14, 15, 16]);
    assert_eq!((page.lines[1].attempt, page.lines[2].attempt), (1, 2));
    assert_eq!(page.lines[2].text, "two 0");
    assert_eq!(page.lines[2].time, 100);
    let rest = logs.read(&run, "Build", 16, 100)?;
    assert_eq!(rest.lines.len(), 9);
    assert!(rest.end);
    assert_eq!(rest.lines.last().map(|l| l.seq), Some(25));
    assert!(logs.read(&run, "Build", 25, 100)?.lines.is_empty());
    assert!(logs.read(&run, "Build", u64::MAX, 100)?.end);
    assert_eq!(logs.last_seq(&run, "Build")?, 25);
    let other = logs.read(&run, "Test linux/x", 0, 100)?;
    assert_eq!(other.lines.len(), 1);
    assert_eq!(other.lines[0].text, "other stage");
    // A stage with no log reads empty, and a second Logs on the same directory (a node
    // started again) reads and numbers on from the same files.
    assert_eq!(logs.read(&run, "Nope", 0, 10)?.lines, []);
    let again = Logs::open(dir.path().join("logs"), 1 << 20)?;
    assert_eq!(again.last_seq(&run, "Build")?, 25);
    assert_eq!(again.append(&run, "Build", 2, &[line(1, "on")])?.first, 26);

    // A line longer than the longest kept is cut at a character boundary.
    let long = format!("é{}", "x".repeat(100_000));
    logs.append(&run, "Long", 1, &[line(0, &long)])?;
    let cut = &logs.read(&run, "Long", 0, 1)?.lines[0].text;
    assert!(
        cut.len() <= MAX_LINE && cut.len() > MAX_LINE - 4,
        "{}",
        cut.len()
    );
    Ok(())
}

#[test]
fn the_index_finds_any_line_of_a_long_log_and_a_page_is_bounded_in_bytes() -> Result {
    let dir = tempfile::tempdir()?;
    let logs = Logs::open(dir.path().join("logs"), 1 << 30)?;
    let run = run_id(2);
    let n = STRIDE * 10 + 7;
    let lines: Vec<_> = (0..n)
        .map(|i| line(i, &format!("line {}", i + 1)))
        .collect();
    for chunk in lines.chunks(100) {
        logs.append(&run, "Build", 1, chunk)?;
    }
    for after in [0, 1, STRIDE - 1, STRIDE, STRIDE + 1, 5 * STRIDE + 3, n - 1] {
        let page = logs.read(&run, "Build", after, 3)?;
        assert_eq!(page.lines[0].seq, after + 1);
        assert_eq!(page.lines[0].text, format!("line {}", after + 1));
    }
    // 64 KiB lines: a page stops after 4 MiB of text, short of its limit, and says so.
    let big = "y".repeat(MAX_LINE);
    let bigs: Vec<_> = (0..100).map(|i| line(i, &big)).collect();
    logs.append(&run, "Big", 1, &bigs)?;
    let page = logs.read(&run, "Big", 0, 5000)?;
    assert_eq!(page.lines.len(), 64);
    assert!(!page.end);
    let rest = logs.read(&run, "Big", 64, 5000)?;
    assert_eq!(rest.lines.len(), 36);
    assert!(rest.end);
    Ok(())
}

#[test]
fn an_attempt_past_its_budget_ends_with_one_truncation_line_and_the_stage_has_a_ceiling() -> Result
{
    let dir = tempfile::tempdir()?;
    let max = 64 * 1024;
    let logs = Logs::open(dir.path().join("logs"), max)?;
    let run = run_id(3);
    let text = "z".repeat(1000);
    let flood: Vec<_> = (0..500).map(|i| line(i, &text)).collect();
    // Attempt 1 floods in several batches: one truncation line, then nothing.
    for batch in flood.chunks(50) {
        logs.append(&run, "Flood", 1, batch)?;
    }
    let lines = all(&logs, &run, "Flood")?;
    let last = lines.last().ok_or("no lines")?;
    assert_eq!(last.stream, Stream::System);
    assert!(
        last.text.starts_with("otto: log truncated after 0.06 MiB"),
        "{}",
        last.text
    );
    assert!(last.text.contains("[node] max_log_bytes"), "{}", last.text);
    let truncations = lines
        .iter()
        .filter(|l| l.text.contains("truncated"))
        .count();
    assert_eq!(truncations, 1);
    assert!(lines.len() < 70, "{}", lines.len());
    let size = fs::metadata(logs.run_dir(&run).join("Flood.log"))?.len();
    assert!(size <= max + 1024, "{size}");
    // A node started again knows the attempt is cut.
    let again = Logs::open(dir.path().join("logs"), max)?;
    let after = again.append(&run, "Flood", 1, &flood[..5])?;
    assert!(after.first > after.last, "nothing more of attempt 1");
    // The next attempt has a budget of its own.
    let next = again.append(&run, "Flood", 2, &flood[..5])?;
    assert_eq!(next.last - next.first + 1, 5);
    // Attempts without end: the stage's ceiling stops them all with one more line.
    for attempt in 3..20 {
        again.append(&run, "Flood", attempt, &flood)?;
    }
    let lines = all(&again, &run, "Flood")?;
    let last = lines.last().ok_or("no lines")?;
    assert!(last.text.contains("of a stage's log"), "{}", last.text);
    let size = fs::metadata(again.run_dir(&run).join("Flood.log"))?.len();
    assert!(size <= max * STAGE_BUDGETS + 20 * 1024, "{size}");
    let late = again.append(&run, "Flood", 40, &flood[..1])?;
    assert!(late.first > late.last);
    Ok(())
}

#[test]
fn a_torn_record_is_never_read_and_is_cut_when_the_log_is_opened_again() -> Result {
    let dir = tempfile::tempdir()?;
    let logs = Logs::open(dir.path().join("logs"), 1 << 30)?;
    let run = run_id(4);
    let lines: Vec<_> = (0..(STRIDE * 3))
        .map(|i| line(i, &format!("l{i}")))
        .collect();
    logs.append(&run, "Build", 1, &lines)?;
    let path = logs.run_dir(&run).join("Build.log");
    let whole = fs::metadata(&path)?.len();
    // Half a record at the end, as a crash in the middle of a write leaves it.
    let mut file = OpenOptions::new().append(true).open(&path)?;
    file.write_all(&[0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 3, 1, 0])?;
    drop(file);
    assert_eq!(all(&logs, &run, "Build")?.len(), lines.len());
    // The index is gone, or damaged: it is rebuilt; readers fall back to scanning.
    let idx = logs.run_dir(&run).join("Build.idx");
    fs::write(&idx, [0xffu8; 20])?;
    assert_eq!(logs.read(&run, "Build", 600, 1)?.lines[0].text, "l600");
    let again = Logs::open(dir.path().join("logs"), 1 << 30)?;
    let next = again.append(&run, "Build", 2, &[line(0, "after")])?;
    assert_eq!(next.first, STRIDE * 3 + 1);
    assert!(fs::metadata(&path)?.len() > whole);
    assert_eq!(fs::metadata(&idx)?.len(), 8 * 4);
    let read = all(&again, &run, "Build")?;
    assert_eq!(read.len() as u64, STRIDE * 3 + 1);
    assert_eq!(read.last().map(|l| l.text.as_str()), Some("after"));
    assert_eq!(
        again.read(&run, "Build", 2 * STRIDE, 1)?.lines[0].seq,
        2 * STRIDE + 1
    );
    // A file that is not a log is refused with its name, not read as one.
    fs::write(
        logs.run_dir(&run).join("Bad.log"),
        b"something else entirely",
    )?;
    let error = logs
        .read(&run, "Bad", 0, 1)
        .expect_err("not a log")
        .to_string();
    assert!(
        error.contains("Bad.log") && error.contains("OTTOLOG1"),
        "{error}"
    );
    Ok(())
}

#[test]
fn an_older_stores_log_lines_move_to_files_with_their_numbers() -> Result {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("store.redb"))?;
    let run = run_id(5);
    store.create_run(NewRun {
        id: run,
        pipeline: "p".into(),
        plan: b"{}".to_vec(),
        source: Source::Snapshot {
            digest: Digest::of(b"src"),
        },
        facts: Default::default(),
        created_at: 1,
        started_by: "test".into(),
        stages: ["Build", "Test linux"]
            .iter()
            .map(|s| NewStage {
                id: (*s).into(),
                state: StageState::Pending,
            })
            .collect(),
    })?;
    let first: Vec<_> = (0..1500).map(|i| line(i, &format!("one {i}"))).collect();
    store.legacy_append_log_lines(&run, "Build", 1, &first)?;
    store.legacy_append_log_lines(&run, "Build", 2, &first[..3])?;
    store.legacy_append_log_lines(&run, "Test linux", 1, &[line(7, "t")])?;
    assert_eq!(store.legacy_log_stages()?.len(), 2);
    let logs = Logs::open(dir.path().join("logs"), 1024)?;
    // A migration cut short earlier left a half-written file behind: it is written anew.
    fs::create_dir_all(logs.run_dir(&run))?;
    fs::write(
        logs.run_dir(&run).join(".migrating-Build.log"),
        b"OTTOLOG1junk",
    )?;
    let moved = logs.migrate(&store)?;
    assert_eq!((moved.stages, moved.lines), (2, 1504));
    assert!(store.legacy_log_stages()?.is_empty());
    assert!(store.legacy_log_lines(&run, "Build", 0, 10)?.is_empty());
    // Every line, with its number, attempt and time; the budget does not cut old logs.
    let build = all(&logs, &run, "Build")?;
    assert_eq!(build.len(), 1503);
    assert_eq!(build[1499].text, "one 1499");
    assert_eq!((build[1500].seq, build[1500].attempt), (1501, 2));
    assert_eq!(build[1500].time, 0);
    assert_eq!(all(&logs, &run, "Test linux")?[0].text, "t");
    assert!(!logs.run_dir(&run).join(".migrating-Build.log").exists());
    // Again: nothing to do.
    assert_eq!(logs.migrate(&store)?.stages, 0);
    // New lines go on from the old numbers.
    assert_eq!(
        logs.append(&run, "Build", 3, &[line(0, "new")])?.first,
        1504
    );
    Ok(())
}

/// Runs one stage of `script` on `node` and returns the run's state and the stage's log.
async fn run_script(
    node: &mut TestNode,
    script: &str,
) -> (RunState, Vec<otto_node::store::LogLine>) {
    let ottofile = format!("stage('Loud') {{\n  steps {{\n    sh '''\n{script}\n'''\n  }}\n}}\n");
    let run = node.submit(&ottofile, Facts::default(), &[]).await;
    let state = node.wait_run(run).await;
    (state, node.log(run, "Loud"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_printing_far_past_the_nodes_budget_leaves_a_bounded_log_ending_in_one_line() {
    // The agent lets 64 MiB through; the node keeps 1 MiB of the attempt.
    let max = 1 << 20;
    let mut node = TestNode::start_bounded(max, 64 << 20);
    let (state, log) = run_script(
        &mut node,
        "i=0; while [ $i -lt 200 ]; do head -c 100000 /dev/zero | tr -c a a; echo; i=$((i+1)); done; echo done",
    )
    .await;
    assert_eq!(state, RunState::Succeeded);
    let truncated: Vec<_> = log
        .iter()
        .filter(|l| l.text.contains("truncated"))
        .collect();
    assert_eq!(truncated.len(), 1, "one truncation line");
    assert!(
        truncated[0]
            .text
            .starts_with("otto: log truncated after 0.9"),
        "{}",
        truncated[0].text
    );
    // Nothing of the step after the cut: its last words are dropped too.
    assert!(!log.iter().any(|l| l.text == "done"));
    let size = dir_size(&node.path("logs"));
    assert!(size <= max + 64 * 1024, "{size} bytes of logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_300_mb_line_without_a_newline_is_cut_and_the_log_stays_bounded() {
    let max = 1 << 20;
    let mut node = TestNode::start_bounded(max, 8 << 20);
    let (state, log) = run_script(&mut node, "head -c 300000000 /dev/zero | tr -c x x").await;
    assert_eq!(state, RunState::Succeeded);
    assert!(log.iter().all(|l| l.text.len() <= MAX_LINE));
    let last = log.last().expect("lines");
    assert!(
        last.text.starts_with("otto: log truncated after"),
        "{}",
        last.text
    );
    let size = dir_size(&node.path("logs"));
    assert!(size <= max + 64 * 1024, "{size} bytes of logs");
}

fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in fs::read_dir(dir).expect("dir").flatten() {
        let meta = entry.metadata().expect("meta");
        total += if meta.is_dir() {
            dir_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// Writes a stand-in agent into `dir`: a script that posts each of `requests` (a path and
/// a file of the body) to the node in order, from one `curl` process (the node serves only
/// the process it started), and keeps each answer's head and body in `dir/answer-N` and
/// `dir/body-N`.
fn fake_agent(dir: &std::path::Path, requests: &[(&str, &str)]) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let version = otto_agent_protocol::PROTOCOL_VERSION;
    let dir = dir.display();
    let transfers: Vec<String> = requests
        .iter()
        .enumerate()
        .map(|(i, (path, body))| {
            format!(
                "--unix-socket \"$2\" -sS -H '{}: {version}' -H 'content-type: application/json' \
                 -H 'expect: 100-continue' --data-binary '@{dir}/{body}' -D '{dir}/answer-{i}' \
                 -o '{dir}/body-{i}' 'http://otto-node{path}'",
                otto_agent_protocol::VERSION_HEADER
            )
        })
        .collect();
    let script = format!("#!/bin/sh\nexec curl {}\n", transfers.join(" --next "));
    let path = std::path::Path::new(&dir.to_string()).join("agent");
    fs::write(&path, script).expect("script");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// The status and the body of the fake agent's `n`th answer.
fn answer(dir: &std::path::Path, n: usize) -> (u16, String) {
    let head = fs::read_to_string(dir.join(format!("answer-{n}"))).unwrap_or_default();
    // The last head (after a `100 Continue`) holds the final status.
    let status = head
        .split("HTTP/1.1 ")
        .filter_map(|h| h.get(..3)?.parse().ok())
        .last()
        .unwrap_or(0);
    let body = fs::read_to_string(dir.join(format!("body-{n}"))).unwrap_or_default();
    (status, body)
}

fn log_events(lines: &[String], first_seq: u64) -> Vec<u8> {
    let events: Vec<serde_json::Value> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            serde_json::json!({"seq": first_seq + i as u64, "time": 1, "kind": "log",
                "step": 0, "stream": "stdout", "line": line})
        })
        .collect();
    serde_json::to_vec(&events).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_body_past_the_protocols_bound_is_refused_whole_and_nothing_is_lost() {
    use otto_agent_protocol::MAX_EVENTS_BODY_BYTES;
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: no curl on PATH to speak for the hostile agent");
        return;
    }
    // 20 lines of 60,000 bytes: 1.2 MB of JSON in one body, past the bound; then the same
    // events in two bodies within it, then the result.
    let lines: Vec<String> = (0..20u8)
        .map(|i| char::from(b'a' + i).to_string().repeat(60_000))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let whole = log_events(&lines, 0);
    assert!(whole.len() > MAX_EVENTS_BODY_BYTES);
    fs::write(dir.path().join("whole.json"), &whole).expect("write");
    fs::write(dir.path().join("first.json"), log_events(&lines[..10], 0)).expect("write");
    fs::write(dir.path().join("second.json"), log_events(&lines[10..], 10)).expect("write");
    fs::write(
        dir.path().join("result.json"),
        r#"{"outcome": "success", "artifacts": [], "caches_saved": []}"#,
    )
    .expect("write");
    let agent = fake_agent(
        dir.path(),
        &[
            ("/events", "whole.json"),
            ("/events", "first.json"),
            ("/events", "second.json"),
            ("/result", "result.json"),
        ],
    );
    let mut node = TestNode::start_with_agent(agent);
    let run = node
        .submit(
            "stage('Loud') {\n  steps {\n    sh 'true'\n  }\n}\n",
            Facts::default(),
            &[],
        )
        .await;
    assert_eq!(node.wait_run(run).await, RunState::Succeeded);
    let refused = answer(dir.path(), 0);
    assert_eq!(refused.0, 413, "{}", refused.1);
    assert_eq!(
        refused.1,
        format!(
            "an events body may hold at most {MAX_EVENTS_BODY_BYTES} bytes (agent protocol {}); \
             none of this batch was taken: send its events in smaller batches",
            otto_agent_protocol::PROTOCOL_VERSION
        )
    );
    for n in 1..4 {
        assert_eq!(answer(dir.path(), n).0, 204, "answer {n}");
    }
    // Every line once, in order: none from the refused body, none lost.
    let log: Vec<String> = node.log(run, "Loud").into_iter().map(|l| l.text).collect();
    assert_eq!(log, lines);
}

fn texts(logs: &Logs, run: &RunId, stage: &str) -> Result<Vec<String>> {
    Ok(all(logs, run, stage)?.into_iter().map(|l| l.text).collect())
}

fn numbered(from: u64, count: u64) -> Vec<NewLine> {
    (from..from + count)
        .map(|n| line(n, &format!("ops line {n}")))
        .collect()
}

const OPS: [u8; 8] = [0x0a; 8];

/// A copy of another node's log takes its lines by the runner's numbers: repeats,
/// overlaps and numbers going backwards add nothing; a jump is one bounded gap line (or
/// nothing, held for a fetch); numbers that cannot be right (0, past u64::MAX) are
/// refused; and across a restart the copy still knows where it stands.
#[test]
fn a_copy_of_another_nodes_log_keeps_the_runners_order_and_marks_jumps() -> Result {
    use otto_node::store::{Placed, Tail};
    let dir = tempfile::tempdir()?;
    let run = run_id(9);
    let mut expected: Vec<String> = Vec::new();
    {
        let logs = Logs::open(dir.path().join("logs"), 1 << 20)?;
        let placed = logs.append_numbered(&run, "Deploy", 1, OPS, 1, &numbered(1, 3), false)?;
        assert!(
            matches!(placed, Placed::Written { gap: None, .. }),
            "{placed:?}"
        );
        expected.extend((1..=3).map(|n| format!("ops line {n}")));
        // The same event again, an overlap, and lines from before: only 4 and 5 are new.
        logs.append_numbered(&run, "Deploy", 1, OPS, 1, &numbered(1, 3), false)?;
        logs.append_numbered(&run, "Deploy", 1, OPS, 2, &numbered(2, 4), false)?;
        logs.append_numbered(&run, "Deploy", 1, OPS, 1, &numbered(1, 1), false)?;
        expected.extend((4..=5).map(|n| format!("ops line {n}")));
        assert_eq!(texts(&logs, &run, "Deploy")?, expected);
        // A jump held for a fetch writes nothing and says from where to fetch.
        let held = logs.append_numbered(&run, "Deploy", 1, OPS, 1209, &numbered(1209, 2), true)?;
        assert_eq!(
            held,
            Placed::Held {
                after: 5,
                first: 1209
            }
        );
        assert_eq!(texts(&logs, &run, "Deploy")?, expected);
        // Not held: one line for lines 6..=1208, then the new lines.
        let placed =
            logs.append_numbered(&run, "Deploy", 1, OPS, 1209, &numbered(1209, 2), false)?;
        assert!(
            matches!(
                placed,
                Placed::Written {
                    gap: Some((6, 1208)),
                    ..
                }
            ),
            "{placed:?}"
        );
        expected.push("… 1,203 lines not received …".to_owned());
        expected.extend((1209..=1210).map(|n| format!("ops line {n}")));
        // Lines from inside the gap that come late are not slipped in out of order.
        logs.append_numbered(&run, "Deploy", 1, OPS, 7, &numbered(7, 3), false)?;
        // Numbers that cannot be right.
        for (first, count) in [(0, 2), (u64::MAX, 2)] {
            let refused = logs.append_numbered(
                &run,
                "Deploy",
                1,
                OPS,
                first,
                &numbered(first.min(10), count),
                false,
            )?;
            assert!(matches!(refused, Placed::Refused(_)), "{refused:?}");
        }
        // The node's own line (an artifact record) keeps where the copy stands.
        logs.append(&run, "Deploy", 1, &[line(0, "otto: output app")])?;
        expected.push("otto: output app".to_owned());
        assert_eq!(texts(&logs, &run, "Deploy")?, expected);
        assert_eq!(
            logs.tail(&run, "Deploy")?,
            Some(Tail {
                runner: OPS,
                last: 1210
            })
        );
    }
    // Restarted: the copy still stands at 1210, so a repeat adds nothing.
    let logs = Logs::open(dir.path().join("logs"), 1 << 20)?;
    assert_eq!(
        logs.tail(&run, "Deploy")?,
        Some(Tail {
            runner: OPS,
            last: 1210
        })
    );
    logs.append_numbered(&run, "Deploy", 1, OPS, 1205, &numbered(1205, 7), false)?;
    expected.push("ops line 1211".to_owned());
    assert_eq!(texts(&logs, &run, "Deploy")?, expected);
    // A number far ahead: one gap line with an exact count, then nothing after it wraps.
    let far = u64::MAX - 1;
    let placed = logs.append_numbered(&run, "Deploy", 1, OPS, far, &[line(0, "far")], false)?;
    assert!(
        matches!(placed, Placed::Written { gap: Some((1212, to)), .. } if to == far - 1),
        "{placed:?}"
    );
    logs.append_numbered(&run, "Deploy", 1, OPS, u64::MAX, &[line(0, "last")], false)?;
    let refused = logs.append_numbered(&run, "Deploy", 1, OPS, u64::MAX, &numbered(1, 2), false)?;
    assert!(matches!(refused, Placed::Refused(_)), "{refused:?}");
    let got = texts(&logs, &run, "Deploy")?;
    assert_eq!(got.len(), expected.len() + 3, "{got:?}");
    assert_eq!(
        got[expected.len()],
        "… 18,446,744,073,709,550,402 lines not received …"
    );
    assert!(
        got.iter()
            .all(|t| t.len() < 100 || t.starts_with("ops line"))
    );
    // A log of this node's own has no tail; nor has a stage with no log.
    logs.append(&run, "Build", 1, &[line(0, "built")])?;
    assert_eq!(logs.tail(&run, "Build")?, None);
    assert_eq!(logs.tail(&run, "Nothing")?, None);
    Ok(())
}

/// The lines of a copy past its budget are dropped as the runner's are, and count as held:
/// the copy does not ask for them again.
#[test]
fn a_copy_past_its_budget_counts_the_dropped_lines_as_held() -> Result {
    use otto_node::store::Placed;
    let dir = tempfile::tempdir()?;
    let logs = Logs::open(dir.path().join("logs"), 4096)?;
    let run = run_id(10);
    let lines = numbered(1, 200);
    let placed = logs.append_numbered(&run, "Deploy", 1, OPS, 1, &lines, true)?;
    assert!(
        matches!(placed, Placed::Written { gap: None, .. }),
        "{placed:?}"
    );
    let got = texts(&logs, &run, "Deploy")?;
    assert!(got.len() < 200, "{}", got.len());
    assert!(
        got.last()
            .is_some_and(|t| t.starts_with("otto: log truncated")),
        "{got:?}"
    );
    // The next lines follow on: not a jump to fetch.
    let next = logs.append_numbered(&run, "Deploy", 1, OPS, 201, &numbered(201, 1), true)?;
    assert!(
        matches!(next, Placed::Written { gap: None, .. }),
        "{next:?}"
    );
    Ok(())
}
