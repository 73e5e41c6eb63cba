//! `otto run`: snapshot a directory, start a run of its pipeline on the node, and watch
//! it to the end.

use std::collections::BTreeMap;
use std::io::{self, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use otto_node::api::types::{
    CreateRun, FactsInput, LogPage, RunCreated, RunDetail, SnapshotCreated, StageDetail,
};
use otto_node::store::{GateState, RunId, RunState, Source, StageState, Stream};

use super::facts::FactsArgs;
use super::status::{describe_stage, stage_symbol};
use super::worktree;
use crate::Failure;
use crate::client::{ApiFailure, Client, NodeArgs, Polled, user_name};

/// How long one watch request waits on the node for a change, in seconds.
const WATCH_WAIT: u64 = 30;

/// How long `otto run` waits, once the run is over, for the last log lines to be printed.
const FOLLOW_GRACE: Duration = Duration::from_secs(10);

/// How many log lines of a failed stage `otto run` shows.
const FAILED_TAIL: usize = 20;

/// Run a pipeline on the node and watch it.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto run                              # the Ottofile (or stack convention) in this directory
  otto run examples/webapp --branch main --env staging
  otto run ci/Ottofile --var channel=stable --detach
  otto run --node 127.0.0.1:7070 --home /srv/otto

The directory is uploaded as a snapshot. Left out: .git/, target/ and node_modules/
anywhere, and what the directory's .gitignore and .ottoignore list (see docs/operating.md).
In a git work tree the run records repository, branch and commit; uncommitted changes
under the directory are refused unless --dirty (then their digest is recorded), and
--commit must name HEAD's commit.
While it watches, the steps' output is shown as it comes, each line after its stage's
name (`--quiet` shows only the stages' progress). Exit status: 0 when the run succeeds, 1
when it fails or is cancelled. Ctrl-C stops watching (exit status 130); the run goes on:
follow it with `otto status RUN` or `otto logs RUN -f`, stop it with `otto cancel RUN`.")]
pub(crate) struct Args {
    /// An Ottofile, or a directory holding one (or a known stack).
    #[arg(default_value = ".")]
    path: PathBuf,
    #[command(flatten)]
    facts: FactsArgs,
    /// Print the run id and return at once instead of watching.
    #[arg(long)]
    detach: bool,
    /// While watching, show only the stages' progress, not their steps' output.
    #[arg(long, short, conflicts_with = "detach")]
    quiet: bool,
    /// In a git work tree with uncommitted changes under the directory: run them anyway,
    /// recording their digest as the run's `dirty` fact.
    #[arg(long)]
    dirty: bool,
    #[command(flatten)]
    node: NodeArgs,
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let client = args.node.client()?;
    let (dir, path) = split_path(&args.path)?;
    let git = git_facts(&dir, &args.facts, args.dirty)?;
    let mut tar = Vec::new();
    otto_node::snapshot::create(&dir, &mut tar)
        .with_context(|| format!("cannot snapshot {}", dir.display()))?;
    let snapshot: SnapshotCreated = client
        .post_bytes("/v1/snapshots", "application/x-tar", tar)
        .context("uploading the snapshot")?;
    let request = CreateRun {
        source: Source::Snapshot {
            digest: snapshot.digest,
        },
        path: Some(path),
        root_name: std::fs::canonicalize(&dir)
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned())),
        facts: FactsInput {
            vars: args.facts.var_map(),
            branch: args.facts.branch.or(git.branch),
            tag: args.facts.tag,
            environment: args.facts.environment,
            commit: git.commit.or(args.facts.commit),
            repository: git.repository,
            dirty: git.dirty,
        },
        started_by: Some(user_name()),
    };
    let created: RunCreated = match client.post("/v1/runs", &request) {
        Ok(created) => created,
        Err(e) => return Err(plan_failure(e)),
    };
    if args.detach {
        writeln!(io::stdout(), "{}", created.run).context("writing the run id")?;
        return Ok(());
    }
    on_interrupt(created.run);
    let logs = (!args.quiet).then(|| args.node.clone());
    let outcome = watch(&client, &created, logs)?;
    match outcome {
        RunState::Succeeded => Ok(()),
        _ => Err(Failure::Reported),
    }
}

/// What the git work tree adds to the facts.
#[derive(Debug, Default)]
struct GitFacts {
    repository: Option<String>,
    branch: Option<String>,
    commit: Option<String>,
    dirty: Option<String>,
}

/// Reads the git work tree `dir` is in (see [`worktree`]): repository, branch and commit
/// become facts; changes under `dir` are refused unless `dirty`, which records their
/// digest. `--commit` must name HEAD's commit and `--branch` the checked-out branch.
/// Outside a work tree nothing is added, and `--commit` is refused (nothing can check it).
fn git_facts(dir: &Path, given: &FactsArgs, dirty: bool) -> anyhow::Result<GitFacts> {
    let Some(tree) = worktree::WorkTree::of(dir)? else {
        if let Some(commit) = &given.commit {
            return Err(anyhow!(
                "--commit {commit}: {} is not in a git work tree, so nothing can check that                  its files are that commit's",
                dir.display()
            ));
        }
        return Ok(GitFacts::default());
    };
    if let Some(commit) = &given.commit {
        worktree::check_commit(dir, &tree, commit)?;
    }
    if let (Some(given), Some(on)) = (&given.branch, &tree.branch)
        && given != on
    {
        return Err(anyhow!(
            "--branch {given}: the work tree of {} has branch {on} checked out (leave              --branch out: otto run records the branch it runs)",
            dir.display()
        ));
    }
    let dirty = match (tree.changes.is_empty(), dirty) {
        (true, _) => None,
        (false, true) => Some(tree.digest()?),
        (false, false) => return Err(anyhow!("{}", tree.dirty_message(dir))),
    };
    Ok(GitFacts {
        repository: Some(tree.repository),
        branch: tree.branch,
        commit: Some(tree.commit),
        dirty,
    })
}

/// A plan failure prints its diagnostics in full; other errors stay one line.
pub(crate) fn plan_failure(e: anyhow::Error) -> Failure {
    match e.downcast_ref::<ApiFailure>() {
        Some(failure) if failure.code == "plan_failed" => {
            let text = failure.details.as_deref().unwrap_or(&failure.message);
            let _ = io::stderr().write_all(text.as_bytes());
            if !text.ends_with('\n') {
                let _ = writeln!(io::stderr());
            }
            Failure::Reported
        }
        _ => Failure::Error(e),
    }
}

/// The directory to snapshot and the path inside it to plan.
fn split_path(path: &Path) -> anyhow::Result<(PathBuf, String)> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("{}: no such file or directory", path.display()))?;
    if meta.is_dir() {
        return Ok((path.to_owned(), String::new()));
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("{}: not a file name", path.display()))?
        .to_owned();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

/// On Ctrl-C, says that the run goes on and how to follow or stop it, then exits 130
/// (the status a shell gives a command SIGINT ended).
fn on_interrupt(run: RunId) {
    let handler = move || {
        let _ = writeln!(
            io::stderr(),
            "\nstopped watching; run {run} goes on on the node. Follow it: otto status {run} \
             (or otto logs {run} -f); stop it: otto cancel {run}"
        );
        std::process::exit(130);
    };
    if let Err(error) = ctrlc::set_handler(handler) {
        tracing::debug!(%error, "no Ctrl-C handler");
    }
}

/// Shows the run's stages until it ends, and with `logs` (the node to read them from) the
/// steps' output as it comes; returns how the run ended.
fn watch(
    client: &Client,
    created: &RunCreated,
    logs: Option<NodeArgs>,
) -> anyhow::Result<RunState> {
    let tty = io::stdout().is_terminal();
    let mut view = if tty {
        View::bars(created)
    } else {
        View::Lines {
            shown: BTreeMap::new(),
        }
    };
    if !tty {
        writeln!(io::stdout(), "run {} ({})", created.run, created.pipeline)?;
    }
    let follower = match logs {
        Some(node) => Some(follow_logs(node, created, view.multi())?),
        None => None,
    };
    let path = format!("/v1/runs/{}", created.run);
    let mut etag: Option<String> = None;
    let detail = loop {
        let detail: RunDetail = match client.poll(&path, etag.as_deref(), WATCH_WAIT)? {
            Polled::Unchanged => continue,
            Polled::Changed(detail, tag) => {
                etag = tag;
                detail
            }
        };
        view.update(client, &detail)?;
        if detail.run.state.is_final() {
            break detail;
        }
    };
    let streamed = follower.is_some();
    if let Some(follower) = follower {
        // Every stage is over, so the follower reads what is left and returns; it is given
        // a bounded time, so that a stage the node still reports as going cannot hang us.
        let deadline = std::time::Instant::now() + FOLLOW_GRACE;
        while !follower.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if follower.is_finished() {
            match follower.join() {
                Ok(result) => result?,
                Err(_) => return Err(anyhow!("the log follower failed")),
            }
        }
    }
    view.finish();
    let mut out = io::stdout().lock();
    for stage in detail
        .stages
        .iter()
        .filter(|s| s.stage.state == StageState::Failed)
    {
        show_tail(client, detail.run.id, stage, streamed, &mut out)?;
    }
    let elapsed = detail
        .run
        .finished_at
        .map(|end| human_ms(end.saturating_sub(detail.run.created_at)))
        .unwrap_or_default();
    writeln!(
        out,
        "run {} {} in {elapsed}",
        detail.run.id,
        state_word(detail.run.state)
    )?;
    Ok(detail.run.state)
}

/// Follows every stage's log in plan order on a thread of its own, printing each line
/// after its stage's name: above the bars on a terminal, else to stdout. Stages that run
/// side by side are shown one after the other: a later stage's lines come once the earlier
/// stage is over. Returns when every stage is over.
fn follow_logs(
    node: NodeArgs,
    created: &RunCreated,
    multi: Option<MultiProgress>,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<()>>> {
    let client = node.client()?;
    let run = created.run.to_string();
    let stages = created.stages.clone();
    Ok(std::thread::spawn(move || {
        let mut sink = LineSink {
            multi,
            pending: Vec::new(),
        };
        for stage in &stages {
            super::logs::print_stage(&client, &run, stage, true, true, &mut sink)?;
        }
        Ok(())
    }))
}

/// Where followed log lines go: whole lines above the progress bars, or stdout.
struct LineSink {
    multi: Option<MultiProgress>,
    /// Bytes of a line not yet ended.
    pending: Vec<u8>,
}

impl io::Write for LineSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(multi) = &self.multi else {
            return io::stdout().write(buf);
        };
        self.pending.extend_from_slice(buf);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            multi.println(String::from_utf8_lossy(&line[..end]))?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.multi {
            Some(_) => Ok(()),
            None => io::stdout().flush(),
        }
    }
}

/// How progress is shown: bars on a terminal, plain lines otherwise.
enum View {
    Bars {
        multi: MultiProgress,
        bars: BTreeMap<String, ProgressBar>,
        /// The width of the longest stage id, to align the lines.
        width: usize,
    },
    Lines {
        shown: BTreeMap<String, String>,
    },
}

impl View {
    /// The bars' handle, to print lines above them.
    fn multi(&self) -> Option<MultiProgress> {
        match self {
            Self::Bars { multi, .. } => Some(multi.clone()),
            Self::Lines { .. } => None,
        }
    }

    fn bars(created: &RunCreated) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let header = multi.add(ProgressBar::new_spinner());
        header.set_style(
            ProgressStyle::with_template("{msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        header.finish_with_message(format!("run {} ({})", created.run, created.pipeline));
        let width = created.stages.iter().map(String::len).max().unwrap_or(0);
        let style = ProgressStyle::with_template(&format!(
            "{{spinner}} {{prefix:{width}}}  {{msg}} {{elapsed:.dim}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let mut bars = BTreeMap::new();
        for id in &created.stages {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(style.clone());
            bar.set_prefix(id.clone());
            bar.set_message("pending");
            bar.enable_steady_tick(Duration::from_millis(120));
            bars.insert(id.clone(), bar);
        }
        Self::Bars { multi, bars, width }
    }

    fn update(&mut self, client: &Client, detail: &RunDetail) -> anyhow::Result<()> {
        for stage in &detail.stages {
            let line = if gate_waits(stage) {
                last_system_line(client, detail.run.id, stage)?
            } else {
                None
            };
            let text = progress_text(stage, line);
            match self {
                Self::Bars { bars, width, .. } => {
                    let Some(bar) = bars.get(&stage.stage.id) else {
                        continue;
                    };
                    if stage.stage.state.is_final() {
                        if !bar.is_finished() {
                            // The prefix gains the mark and a space: two more columns.
                            let template = format!("{{prefix:{}}}  {{msg}}", *width + 2);
                            let done_style = ProgressStyle::with_template(&template)
                                .unwrap_or_else(|_| ProgressStyle::default_spinner());
                            bar.set_style(done_style);
                            bar.set_prefix(format!(
                                "{} {}",
                                stage_symbol(stage.stage.state),
                                bar.prefix()
                            ));
                            bar.finish_with_message(text);
                        }
                    } else {
                        bar.set_message(text);
                    }
                }
                Self::Lines { shown } => {
                    let first_and_pending = stage.stage.state == StageState::Pending
                        && !shown.contains_key(&stage.stage.id);
                    if !first_and_pending && shown.get(&stage.stage.id) != Some(&text) {
                        writeln!(io::stdout(), "{}: {text}", stage.stage.id)?;
                        shown.insert(stage.stage.id.clone(), text);
                    }
                }
            }
        }
        Ok(())
    }

    /// Leaves the bars on screen in their last state.
    fn finish(self) {
        if let Self::Bars { bars, .. } = self {
            for bar in bars.values().filter(|b| !b.is_finished()) {
                bar.abandon();
            }
        }
    }
}

/// Whether a gate of the stage waits now: only then does its progress line end with the
/// node's last line about it (how to pass the gate, or what its last poll gave).
fn gate_waits(stage: &StageDetail) -> bool {
    stage.stage.state == StageState::WaitingGate
        && stage.gates.iter().any(|g| g.state == GateState::Waiting)
}

/// A stage's progress line: [`describe_stage`], and while a gate waits ([`gate_waits`]) the
/// node's last line about it, `line`. A line of a gate that has closed since (a poll that
/// failed before the check passed) is never added: the line tells the stage's state now.
fn progress_text(stage: &StageDetail, line: Option<String>) -> String {
    let text = describe_stage(stage);
    match line {
        Some(line) if gate_waits(stage) => format!("{text}: {line}"),
        _ => text,
    }
}

/// The last line the node itself wrote in a stage's log (e.g. how to pass its gate).
fn last_system_line(
    client: &Client,
    run: RunId,
    stage: &StageDetail,
) -> anyhow::Result<Option<String>> {
    let mut after = 0;
    let mut last = None;
    loop {
        let page: LogPage = client.get(&format!(
            "/v1/runs/{run}/logs?stage={}&after={after}",
            query_value(&stage.stage.id)
        ))?;
        if let Some(line) = page.lines.iter().rev().find(|l| l.stream == Stream::System) {
            last = Some(line.text.clone());
        }
        if page.lines.is_empty() || page.done || page.last == after {
            return Ok(last);
        }
        after = page.last;
    }
}

/// Prints the last lines of a failed stage's log, unless they were `streamed` already, and
/// how to see the whole log.
fn show_tail(
    client: &Client,
    run: RunId,
    stage: &StageDetail,
    streamed: bool,
    out: &mut impl io::Write,
) -> anyhow::Result<()> {
    if streamed {
        writeln!(
            out,
            "--- {} failed; its log: otto logs {run} {}",
            stage.stage.id,
            shell_word(&stage.stage.id)
        )?;
        return Ok(());
    }
    let mut lines = Vec::new();
    let mut after = 0;
    loop {
        let page: LogPage = client.get(&format!(
            "/v1/runs/{run}/logs?stage={}&after={after}",
            query_value(&stage.stage.id)
        ))?;
        let n = page.lines.len();
        lines.extend(page.lines);
        if lines.len() > FAILED_TAIL {
            lines.drain(..lines.len() - FAILED_TAIL);
        }
        if n == 0 || page.done || page.last == after {
            break;
        }
        after = page.last;
    }
    writeln!(out, "--- {} failed; last lines of its log:", stage.stage.id)?;
    for line in &lines {
        writeln!(out, "  {}", super::logs::format_line(line))?;
    }
    writeln!(
        out,
        "--- the whole log: otto logs {run} {}",
        shell_word(&stage.stage.id)
    )?;
    Ok(())
}

/// A run state as a word.
pub(crate) fn state_word(state: RunState) -> &'static str {
    match state {
        RunState::Queued => "queued",
        RunState::Running => "running",
        RunState::Waiting => "waiting",
        RunState::Succeeded => "succeeded",
        RunState::Failed => "failed",
        RunState::Cancelled => "cancelled",
    }
}

/// Milliseconds for people: `850ms`, `12.3s`, `4m05s`.
pub(crate) fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

/// Percent-encodes a query parameter value.
pub(crate) fn query_value(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a path segment.
pub(crate) fn path_segment(text: &str) -> String {
    query_value(text)
}

/// A stage id as a shell word: quoted when it has characters the shell would split on.
pub(crate) fn shell_word(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(query_value("Deploy prod/eu"), "Deploy%20prod%2Feu");
        assert_eq!(shell_word("Build"), "Build");
        assert_eq!(shell_word("Deploy prod"), "'Deploy prod'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(human_ms(850), "850ms");
        assert_eq!(human_ms(12_345), "12.3s");
        assert_eq!(human_ms(245_000), "4m05s");
    }

    /// Deploy after its exit poll gate, as `otto status --json` gives it: `state`, the
    /// stage's `note`, and its gates as (state, note).
    fn deploy(state: &str, note: Option<&str>, gates: &[(&str, Option<&str>)]) -> StageDetail {
        let gates: Vec<serde_json::Value> = gates
            .iter()
            .enumerate()
            .map(|(i, (state, note))| {
                serde_json::json!({
                    "run": "01M99GD91KHA7WPFRDWSGPR1GC", "stage": "Deploy", "phase": "exit",
                    "index": i, "kind": if i == 0 { "poll" } else { "input" },
                    "state": state, "opened_at": 1_000 + i, "polls": 2,
                    "closed_at": (*state != "waiting").then_some(2_000 + i),
                    "note": note,
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "run": "01M99GD91KHA7WPFRDWSGPR1GC", "id": "Deploy", "index": 0, "state": state,
            "note": note, "updated_at": 2_000, "name": "Deploy", "owner": null, "needs": [],
            "when": null, "gates": gates,
            "attempts": [{"n": 1, "state": "running", "started_at": 500}],
        }))
        .unwrap()
    }

    #[test]
    fn a_progress_line_tells_the_stages_state_now() {
        let failed_poll = Some("'sh' exited with code 1".to_owned());
        // The poll waits: its last failure says why.
        let polling = deploy("waiting_gate", None, &[("waiting", None)]);
        assert_eq!(
            progress_text(&polling, failed_poll.clone()),
            "waiting for its exit poll gate: 'sh' exited with code 1"
        );
        // The check passed (the stage is about to end): the failure of an earlier poll is
        // not its state any more, nor is "waiting for a gate".
        let passed = Some("the check passed after 2 polls");
        let after = deploy("waiting_gate", passed, &[("passed", passed)]);
        assert!(!gate_waits(&after));
        assert_eq!(
            progress_text(&after, failed_poll.clone()),
            "passed its exit poll gate (the check passed after 2 polls)"
        );
        // The next gate waits: it, not the poll, is the state.
        let input = deploy(
            "waiting_gate",
            passed,
            &[("passed", passed), ("waiting", None)],
        );
        assert_eq!(
            progress_text(&input, Some("approve with otto approve".to_owned())),
            "waiting for its exit input gate: approve with otto approve"
        );
        // A later failure is the state; the passed check, whose note may stay on the
        // stage, is not added to it.
        let mut failed = deploy("failed", passed, &[("passed", passed)]);
        failed.stage.attempts[0].state = otto_node::store::AttemptState::Failed;
        failed.stage.attempts[0].finished_at = Some(900);
        failed.stage.attempts[0].error = Some("'sh' exited with code 1".to_owned());
        assert_eq!(
            progress_text(&failed, failed_poll.clone()),
            "failed in 400ms: 'sh' exited with code 1"
        );
        failed.stage.note = Some("'sh' exited with code 1".to_owned());
        assert_eq!(
            progress_text(&failed, failed_poll),
            "failed in 400ms: 'sh' exited with code 1"
        );
    }
}
