//! `otto status`: a run's stages, or the recent runs.

use std::io::{self, Write as _};

use anyhow::Context as _;
use otto_node::api::types::{RunDetail, RunList, StageDetail};
use otto_node::store::{AttemptState, GateKind, GatePhase, GateState, RunState, StageState};

use super::run::{human_ms, path_segment, state_word};
use crate::Failure;
use crate::client::NodeArgs;

/// Show a run, or the recent runs.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto status                           # the 20 most recent runs
  otto status 01J9ZQ3M5V8R2K4T6W8Y0A2C4E
  otto status 01J9ZQ3M5V8R2K4T6W8Y0A2C4E --json | jq '.stages[].state'

Exit status of `otto status RUN`: 1 when the run failed or was cancelled, 0 when it
succeeded or is still going (queued, running, waiting), so a script can test it.")]
pub(crate) struct Args {
    /// The run; without it, the recent runs.
    run: Option<String>,
    /// How many recent runs to list.
    #[arg(long, default_value_t = 20, conflicts_with = "run")]
    limit: usize,
    /// Print the node's JSON answer (schema: docs/api.md).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    node: NodeArgs,
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let client = args.node.client()?;
    let mut out = io::stdout().lock();
    match &args.run {
        Some(run) => {
            let detail: RunDetail = client.get(&format!("/v1/runs/{}", path_segment(run)))?;
            if args.json {
                serde_json::to_writer_pretty(&mut out, &detail).context("writing json")?;
                writeln!(out).context("writing json")?;
            } else {
                print_detail(&detail, &mut out).context("writing the status")?;
            }
            if matches!(detail.run.state, RunState::Failed | RunState::Cancelled) {
                return Err(Failure::Reported);
            }
        }
        None => {
            let list: RunList = client.get(&format!("/v1/runs?limit={}", args.limit))?;
            if args.json {
                serde_json::to_writer_pretty(&mut out, &list).context("writing json")?;
                writeln!(out).context("writing json")?;
            } else {
                print_list(&list, &mut out).context("writing the status")?;
            }
        }
    }
    Ok(())
}

fn print_detail(detail: &RunDetail, out: &mut impl io::Write) -> io::Result<()> {
    let run = &detail.run;
    let elapsed = run
        .finished_at
        .map(|end| format!(" in {}", human_ms(end.saturating_sub(run.created_at))))
        .unwrap_or_default();
    // Why the run is where it is: `queued — waiting for run X in group G`.
    let note = run
        .note
        .as_deref()
        .map(|n| format!(" — {n}"))
        .unwrap_or_default();
    writeln!(
        out,
        "run {}  {}  {}{note}{elapsed}  (started by {})",
        run.id,
        run.pipeline,
        state_word(run.state),
        run.started_by
    )?;
    let from = match &run.source {
        otto_node::store::Source::Git { url, commit } => Some((commit, Some(url))),
        _ => run
            .facts
            .commit
            .as_ref()
            .map(|commit| (commit, run.facts.repository.as_ref())),
    };
    if let Some((commit, repository)) = from {
        let of = repository.map(|r| format!(" of {r}")).unwrap_or_default();
        let on = match (&run.facts.branch, &run.facts.tag) {
            (_, Some(tag)) => format!(", tag {tag}"),
            (Some(branch), None) => format!(", branch {branch}"),
            (None, None) => String::new(),
        };
        let dirty = run
            .facts
            .dirty
            .as_ref()
            .map(|d| format!(", with uncommitted changes {d}"))
            .unwrap_or_default();
        writeln!(out, "  commit {commit}{of}{on}{dirty}")?;
    }
    let width = detail
        .stages
        .iter()
        .map(|s| s.stage.id.len())
        .max()
        .unwrap_or(5)
        .max(5);
    for stage in &detail.stages {
        writeln!(
            out,
            "  {} {:width$}  {}",
            stage_symbol(stage.stage.state),
            stage.stage.id,
            describe_stage(stage)
        )?;
        for attempt in stage
            .stage
            .attempts
            .iter()
            .filter(|_| stage.stage.attempts.len() > 1)
        {
            let how = match attempt.state {
                AttemptState::Running => "running",
                AttemptState::Succeeded => "succeeded",
                AttemptState::Failed => "failed",
                AttemptState::Interrupted => "interrupted",
                AttemptState::Cancelled => "cancelled",
            };
            // Where it ran, or which node refused it.
            let how = match &attempt.node {
                Some(node) if node.refused => {
                    format!("refused by {} ({})", node.name, node.org)
                }
                Some(node) => format!("{how} on {} ({})", node.name, node.org),
                None => how.to_owned(),
            };
            let error = attempt
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            writeln!(
                out,
                "  {:width$}     attempt {} {how}{error}",
                "", attempt.n
            )?;
        }
        for gate in &stage.gates {
            let kind = gate_kind(gate.kind);
            let state = match gate.state {
                GateState::Waiting => "waiting",
                GateState::Passed => "passed",
                GateState::Failed => "failed",
                GateState::TimedOut => "timed out",
            };
            let by = gate
                .approved_by
                .as_deref()
                .map(|w| format!(" by {w}"))
                .unwrap_or_default();
            let note = gate
                .note
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            writeln!(out, "  {:width$}     {kind} gate {state}{by}{note}", "")?;
        }
    }
    Ok(())
}

fn print_list(list: &RunList, out: &mut impl io::Write) -> io::Result<()> {
    if list.runs.is_empty() {
        return writeln!(out, "no runs yet; start one with `otto run`");
    }
    let width = list
        .runs
        .iter()
        .map(|r| r.run.pipeline.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let by_width = list
        .runs
        .iter()
        .map(|r| r.run.started_by.len())
        .max()
        .unwrap_or(2)
        .max(2);
    writeln!(
        out,
        "{:26}  {:width$}  {:9}  {:by_width$}  ORGS",
        "RUN", "PIPELINE", "STATE", "BY"
    )?;
    for listed in &list.runs {
        let run = &listed.run;
        writeln!(
            out,
            "{}  {:width$}  {:9}  {:by_width$}  {}",
            run.id,
            run.pipeline,
            state_word(run.state),
            run.started_by,
            listed.orgs.join(", ")
        )?;
    }
    Ok(())
}

/// One line about a stage: its state, attempt, duration, caches, why it is where it is.
pub(crate) fn describe_stage(stage: &StageDetail) -> String {
    let s = &stage.stage;
    let last = s.last_attempt();
    let waiting = stage.gates.iter().find(|g| g.state == GateState::Waiting);
    let mut text = match s.state {
        // Queued for a concurrency group or an agent slot: the note says for what.
        StageState::Pending if s.note.as_deref().is_some_and(|n| n.starts_with("queued")) => {
            return s.note.clone().unwrap_or_default();
        }
        StageState::Pending => "pending".to_owned(),
        StageState::WaitingGate => match waiting {
            Some(gate) => format!(
                "waiting for its {} {} gate",
                gate_phase(gate.at.phase),
                gate_kind(gate.kind)
            ),
            // No gate waits: between one gate and the next, or after the last one. The gate
            // that closed last says where the stage stands (a poll that passed, not the
            // polls that failed before it).
            None => match stage
                .gates
                .iter()
                .filter(|g| g.state != GateState::Waiting)
                .max_by_key(|g| (g.closed_at, g.at.phase, g.at.index))
            {
                Some(gate) if gate.state == GateState::Passed => {
                    let how = gate
                        .note
                        .as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default();
                    format!(
                        "passed its {} {} gate{how}",
                        gate_phase(gate.at.phase),
                        gate_kind(gate.kind)
                    )
                }
                _ => "waiting for a gate".to_owned(),
            },
        },
        StageState::Running => "running".to_owned(),
        StageState::Succeeded => "succeeded".to_owned(),
        StageState::Failed => "failed".to_owned(),
        StageState::Skipped => "skipped".to_owned(),
        StageState::Cancelled => "cancelled".to_owned(),
        StageState::HandedOff => "handed off".to_owned(),
    };
    if let Some(a) = last {
        if a.n > 1 || s.state == StageState::Running {
            text.push_str(&format!(" (attempt {})", a.n));
        }
        if let Some(end) = a.finished_at.filter(|_| s.state.is_final()) {
            text.push_str(&format!(
                " in {}",
                human_ms(end.saturating_sub(a.started_at))
            ));
        }
        for hit in &a.cache_hits {
            text.push_str(&format!(", cache {hit}: hit"));
        }
        for miss in &a.cache_misses {
            text.push_str(&format!(", cache {miss}: miss"));
        }
        if s.state == StageState::Failed
            && let Some(error) = &a.error
        {
            text.push_str(&format!(": {error}"));
        }
    }
    match &s.note {
        // A waiting gate is described above; the note may be of an earlier gate.
        Some(_) if s.state == StageState::WaitingGate => {}
        // The note a gate left when it passed ("the check passed after 2 polls") is that
        // gate's outcome, not where the stage stands after it (running, or failed later).
        Some(note)
            if stage
                .gates
                .iter()
                .any(|g| g.state == GateState::Passed && g.note.as_ref() == Some(note)) => {}
        // The attempt's error is shown already.
        Some(note)
            if s.state == StageState::Failed
                && last.and_then(|a| a.error.as_ref()) == Some(note) => {}
        Some(note) if s.state == StageState::Skipped => {
            text.push_str(&format!(": {}", note.trim_start_matches("skipped: ")))
        }
        Some(note) => text.push_str(&format!(" — {note}")),
        None => {
            if s.state == StageState::Skipped
                && let Some(when) = &stage.when
            {
                text.push_str(&format!(": when {} is {}", when.text, when.result));
            }
        }
    }
    text
}

fn gate_phase(phase: GatePhase) -> &'static str {
    match phase {
        GatePhase::Enter => "enter",
        GatePhase::Exit => "exit",
    }
}

fn gate_kind(kind: GateKind) -> &'static str {
    match kind {
        GateKind::Input => "input",
        GateKind::Webhook => "webhook",
        GateKind::Poll => "poll",
    }
}

/// A mark for a stage's state.
pub(crate) fn stage_symbol(state: StageState) -> &'static str {
    match state {
        StageState::Succeeded => "✓",
        StageState::Failed => "✗",
        StageState::Skipped => "-",
        StageState::Cancelled => "✗",
        StageState::WaitingGate => "…",
        StageState::HandedOff => "→",
        StageState::Running => "▸",
        StageState::Pending => " ",
    }
}
