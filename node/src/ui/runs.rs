//! The Runs page (recent runs, filtered) and the Run page (the stage graph, gates,
//! verification), and approving an input gate.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use otto_handoff::bundle::BundleReport;
use otto_handoff::chain::StageStatus;
use otto_pipeline::plan::{Body, Gate as PlanGate, Stage as PlanStage};
use otto_protocol::Receipt;
use serde::Deserialize;

use super::graph::{self, Verdict};
use super::html::{self, badge, esc, seg};
use super::{Current, Ui, UiError, blocking, form_field, html_response, see_other};
use crate::api::verify;
use crate::store::{
    Gate, GateKind, GatePhase, GateState, Run, RunFilter, RunId, RunState, Stage, StageState, Store,
};

/// The most runs the Runs page lists.
const LIST: usize = 100;

/// Query of `GET /ui/runs`.
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    /// Only runs in this state (empty: all).
    #[serde(default)]
    state: String,
    /// Only runs of this pipeline (empty: all).
    #[serde(default)]
    pipeline: String,
}

/// A run with everything its page shows.
pub(crate) struct RunView {
    pub(crate) run: Run,
    pub(crate) stages: Vec<StageView>,
    /// The chain check, or why it could not be made.
    pub(crate) report: Result<BundleReport, String>,
}

/// A stage with its plan entry, gates and latest receipt.
pub(crate) struct StageView {
    pub(crate) stage: Stage,
    pub(crate) planned: Option<PlanStage>,
    pub(crate) gates: Vec<Gate>,
    pub(crate) receipt: Option<Receipt>,
}

/// `GET /ui/runs`.
pub(crate) async fn list(
    State(ui): State<Ui>,
    Extension(current): Extension<Current>,
    Query(query): Query<ListQuery>,
) -> Result<Response, UiError> {
    let state = parse_state(&query.state);
    let pipeline = query.pipeline.trim().to_owned();
    let store = ui.api.store.clone();
    let local = ui.api.node.org.clone();
    let (runs, pipelines) = {
        let pipeline = pipeline.clone();
        blocking(move || {
            let runs = store.list_runs(&RunFilter {
                state,
                pipeline: (!pipeline.is_empty()).then_some(pipeline),
                before: None,
                limit: LIST,
            })?;
            let all = store.list_runs(&RunFilter {
                state: None,
                pipeline: None,
                before: None,
                limit: 500,
            })?;
            let pipelines: BTreeSet<String> = all.into_iter().map(|r| r.pipeline).collect();
            let mut rows = Vec::new();
            for run in runs {
                let orgs = orgs_of(&store, &run, &local)?;
                rows.push((run, orgs));
            }
            Ok((rows, pipelines))
        })
        .await?
    };
    let mut body = String::new();
    body.push_str("<div class=\"head\"><h1>Runs</h1></div>");
    let _ = write!(
        body,
        "<form data-testid=\"run-filter\" class=\"filter\" method=\"get\" action=\"/ui/runs\">\
         <label>State <select name=\"state\"><option value=\"\">all</option>"
    );
    for s in [
        RunState::Queued,
        RunState::Running,
        RunState::Waiting,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Cancelled,
    ] {
        let (_, word) = html::run_state(s);
        let selected = if state == Some(s) { " selected" } else { "" };
        let _ = write!(body, "<option value=\"{word}\"{selected}>{word}</option>");
    }
    body.push_str("</select></label><label>Pipeline <select name=\"pipeline\"><option value=\"\">all</option>");
    for p in &pipelines {
        let selected = if *p == pipeline { " selected" } else { "" };
        let _ = write!(
            body,
            "<option value=\"{v}\"{selected}>{v}</option>",
            v = esc(p)
        );
    }
    body.push_str("</select></label><button type=\"submit\">Filter</button></form>");
    if runs.is_empty() {
        body.push_str("<p class=\"empty\">No runs yet. Start one with <code>otto run</code>.</p>");
    } else {
        body.push_str(
            "<div class=\"scroll\"><table class=\"runs\"><thead><tr><th>Run</th><th>Pipeline</th>\
             <th>Branch / commit</th><th>State</th><th>Started</th><th>Duration</th><th>Orgs</th></tr></thead><tbody>",
        );
        let now = now_ms();
        for (run, orgs) in &runs {
            let (icon, word) = html::run_state(run.state);
            let id = run.id.to_string();
            let end = run.finished_at.unwrap_or(now);
            let _ = write!(
                body,
                "<tr data-testid=\"run-row\" data-run=\"{id}\" data-state=\"{word}\">\
                 <td><a href=\"/ui/runs/{id}\" class=\"mono\">{short}</a></td><td>{p}</td><td>{src}</td>\
                 <td>{b}</td><td>{t}</td><td>{d}</td><td>{o}</td></tr>",
                id = esc(&id),
                short = esc(&html::short(&id, 14)),
                p = esc(&run.pipeline),
                src = branch_commit(run),
                b = badge(icon, word),
                t = html::time(run.created_at),
                d = html::duration(end.saturating_sub(run.created_at)),
                o = esc(&orgs.join(", ")),
            );
        }
        body.push_str("</tbody></table></div>");
    }
    let mut frame = ui.frame("Runs", "runs", &current);
    frame.live = true;
    Ok(html_response(StatusCode::OK, html::page(&frame, &body)))
}

/// `GET /ui/runs/{run}`.
pub(crate) async fn show(
    State(ui): State<Ui>,
    Extension(current): Extension<Current>,
    Path(run): Path<String>,
) -> Result<Response, UiError> {
    let id = parse_run(&run)?;
    // The tag first: a change after it makes the page's tag stale, never the reverse.
    let etag = crate::api::runs::run_etag(&ui.api, id).await.ok();
    let view = load(&ui, id).await?;
    let body = run_body(&ui, &view, &current);
    let id = view.run.id.to_string();
    let title = format!("{} {}", view.run.pipeline, id);
    let mut frame = ui.frame(&title, "runs", &current);
    frame.live = true;
    frame.run = Some(&id);
    frame.etag = etag.as_deref();
    Ok(html_response(StatusCode::OK, html::page(&frame, &body)))
}

/// `POST /ui/runs/{run}/gates/{stage}/approve`: passes the stage's waiting input gate,
/// through the same engine call as the API, then back to the run page.
pub(crate) async fn approve(
    State(ui): State<Ui>,
    Path((run, stage)): Path<(String, String)>,
    form: Bytes,
) -> Result<Response, UiError> {
    let id = parse_run(&run)?;
    let who = form_field(&form, "who")
        .filter(|w| !w.is_empty())
        .unwrap_or_else(operator);
    if who.len() > 128 || who.chars().any(char::is_control) {
        return Err(UiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the approver's name must be 1 to 128 characters without control characters",
        ));
    }
    ui.api
        .engine
        .approve(id, stage.clone(), who.clone())
        .await?;
    tracing::info!(target: super::TARGET, run = %id, %stage, %who, "gate approved in the ui");
    Ok(see_other(&format!("/ui/runs/{}", seg(&id.to_string()))))
}

/// `POST /ui/runs/{run}/retry`: retries the run's failed stages (or the one the form
/// names) through the same engine call as the API, then back to the run page.
pub(crate) async fn retry(
    State(ui): State<Ui>,
    Path(run): Path<String>,
    form: Bytes,
) -> Result<Response, UiError> {
    let id = parse_run(&run)?;
    let stage = form_field(&form, "stage").filter(|s| !s.is_empty());
    let who = operator();
    let stages = ui.api.engine.retry(id, stage, who.clone()).await?;
    tracing::info!(target: super::TARGET, run = %id, ?stages, %who, "run retried in the ui");
    Ok(see_other(&format!("/ui/runs/{}", seg(&id.to_string()))))
}

/// `POST /ui/runs/{run}/cancel`: cancels the run through the same engine call as the API,
/// then back to the run page.
pub(crate) async fn cancel(
    State(ui): State<Ui>,
    Path(run): Path<String>,
) -> Result<Response, UiError> {
    let id = parse_run(&run)?;
    let who = operator();
    ui.api.engine.cancel(id, who.clone()).await?;
    tracing::info!(target: super::TARGET, run = %id, %who, "run cancelled in the ui");
    Ok(see_other(&format!("/ui/runs/{}", seg(&id.to_string()))))
}

/// The name an approval in the UI is recorded with when the gate names no approvers:
/// the node's operator, as the user the node runs as.
fn operator() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty() && u.len() <= 64)
        .unwrap_or_else(|| "operator".to_owned())
}

/// Reads a run and checks its chain. 404 for an unknown run.
pub(crate) async fn load(ui: &Ui, id: RunId) -> Result<RunView, UiError> {
    let ui = ui.clone();
    blocking(move || {
        let store = &ui.api.store;
        let run = store
            .run(&id)?
            .ok_or_else(|| UiError::not_found(format!("no run {id}")))?;
        let body: Option<Body> = store
            .plan(&run.plan_digest)?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let gates = store.gates(&id)?;
        let receipts = crate::engine::receipts::stored(store, &id)?;
        let stages = store
            .stages(&id)?
            .into_iter()
            .map(|stage| StageView {
                planned: body
                    .as_ref()
                    .and_then(|b| b.stages.iter().find(|s| s.id == stage.id).cloned()),
                gates: gates
                    .iter()
                    .filter(|g| g.at.stage == stage.id)
                    .cloned()
                    .collect(),
                receipt: crate::engine::receipts::latest(&receipts, &stage.id)
                    .map(|(r, _)| r.clone()),
                stage,
            })
            .collect();
        let report = check_chain(&ui, id);
        Ok(RunView {
            run,
            stages,
            report,
        })
    })
    .await
}

/// The same check as `GET /v1/runs/{run}/verify`.
fn check_chain(ui: &Ui, id: RunId) -> Result<BundleReport, String> {
    let parts = &*ui.api;
    let run = || -> Result<BundleReport, crate::api::ApiError> {
        let certificates = verify::with_own(
            verify::own_certificate(parts)?,
            verify::known_certificates(parts)?,
        );
        let bundle = verify::evidence(parts, id, certificates)?;
        verify::check(parts, &bundle, verify::now_secs())
    };
    run().map_err(|e| format!("the check could not be made ({})", e.code()))
}

fn run_body(ui: &Ui, view: &RunView, current: &Current) -> String {
    let run = &view.run;
    let id = run.id.to_string();
    let (icon, word) = html::run_state(run.state);
    let now = now_ms();
    let mut b = String::new();
    let _ = write!(
        b,
        "<div class=\"head\"><h1>{p} <span class=\"mono muted\">{id}</span></h1>\
         <p data-testid=\"run-state\" class=\"run-state\" data-state=\"{word}\">{badge}{note}</p></div>\
         <dl class=\"facts\"><dt>Pipeline</dt><dd>{p}</dd><dt>Branch / commit</dt><dd>{src}</dd>\
         <dt>Started by</dt><dd>{by}</dd><dt>Created</dt><dd>{created}</dd><dt>Duration</dt><dd>{dur}</dd>\
         <dt>Plan digest</dt><dd data-testid=\"plan-digest\" class=\"mono\">{digest}</dd>\
         <dt>Chain</dt><dd data-testid=\"verify-result\" class=\"{vclass}\">{verify}</dd></dl>",
        p = esc(&run.pipeline),
        id = esc(&id),
        badge = badge(icon, word),
        // Why it is where it is: `queued — waiting for run X in group G`.
        note = run.note.as_deref().map_or(String::new(), |n| format!(
            " <span data-testid=\"run-note\" class=\"muted\">— {}</span>",
            esc(n)
        )),
        src = branch_commit(run),
        by = esc(&run.started_by),
        created = html::time(run.created_at),
        dur = html::duration(
            run.finished_at
                .unwrap_or(now)
                .saturating_sub(run.created_at)
        ),
        digest = esc(&run.plan_digest.to_string()),
        vclass = if view.report.as_ref().is_ok_and(|r| r.verified) {
            "verified"
        } else if run.finished_at.is_none() {
            "incomplete"
        } else {
            "unverified"
        },
        verify = if run.finished_at.is_none() && !view.report.as_ref().is_ok_and(|r| r.verified) {
            "not verified yet: the run has not ended".to_owned()
        } else {
            verify_text(&view.report)
        },
    );
    // Approvals first: they are what a person came for.
    let mut forms = String::new();
    for s in &view.stages {
        for gate in s
            .gates
            .iter()
            .filter(|g| g.kind == GateKind::Input && g.state == GateState::Waiting)
        {
            let (message, approvers) = input_gate(s.planned.as_ref(), gate);
            let _ = write!(
                forms,
                "<form data-testid=\"approve-form\" data-stage=\"{st}\" class=\"approve\" method=\"post\" \
                 action=\"/ui/runs/{r}/gates/{sg}/approve\">{csrf}<p><strong>{st}</strong> waits at its {phase} gate: \
                 <q>{m}</q> (since {since})</p>",
                st = esc(&s.stage.id),
                r = seg(&id),
                sg = seg(&s.stage.id),
                csrf = html::csrf_field(&current.csrf),
                phase = phase(gate.at.phase),
                m = esc(&message),
                since = html::time(gate.opened_at),
            );
            if approvers.is_empty() {
                forms.push_str("<button type=\"submit\">Approve</button>");
            } else {
                for who in &approvers {
                    let _ = write!(
                        forms,
                        "<button type=\"submit\" name=\"who\" value=\"{w}\">Approve as {w}</button> ",
                        w = esc(who)
                    );
                }
            }
            forms.push_str("</form>");
        }
    }
    if !forms.is_empty() {
        let _ = write!(
            b,
            "<section class=\"gates\" aria-label=\"Waiting for approval\"><h2>Waiting for approval</h2>{forms}</section>"
        );
    }
    // Retry and cancel, on the node that started the run (the one that retries it).
    let started_here = !run.started_by.starts_with(crate::engine::OFFERED_BY);
    if started_here && matches!(run.state, RunState::Failed | RunState::Cancelled) {
        let failed: Vec<&str> = view
            .stages
            .iter()
            .filter(|s| s.stage.state == StageState::Failed)
            .map(|s| s.stage.id.as_str())
            .collect();
        let what = if failed.is_empty() {
            "the cancelled stages".to_owned()
        } else {
            esc(&failed.join(", ")).to_string()
        };
        let _ = write!(
            b,
            "<section class=\"actions\" aria-label=\"Retry\"><form data-testid=\"retry-form\" \
             method=\"post\" action=\"/ui/runs/{r}/retry\">{csrf}<p>Retry {what} and the stages \
             that depend on them, as new attempts of this run (the stages that succeeded are not \
             run again).</p><button type=\"submit\">Retry</button></form></section>",
            r = seg(&id),
            csrf = html::csrf_field(&current.csrf),
        );
    } else if started_here && !run.state.is_final() {
        let _ = write!(
            b,
            "<section class=\"actions\" aria-label=\"Cancel\"><form data-testid=\"cancel-form\" \
             method=\"post\" action=\"/ui/runs/{r}/cancel\">{csrf}<button type=\"submit\">Cancel \
             the run</button></form></section>",
            r = seg(&id),
            csrf = html::csrf_field(&current.csrf),
        );
    }
    let _ = write!(
        b,
        "<section aria-label=\"Stage graph\"><h2>Stages</h2><div class=\"graph-wrap\">{}</div></section>",
        graph_of(ui, view)
    );
    b.push_str(
        "<div class=\"scroll\"><table class=\"stages\"><thead><tr><th>Stage</th><th>State</th><th>Ran on</th>\
         <th>Attempts</th><th>Duration</th><th>Cache</th><th>Gates</th><th>Note</th></tr></thead><tbody>",
    );
    for s in &view.stages {
        let (icon, word) = html::stage_state(s.stage.state);
        let _ = write!(
            b,
            "<tr data-testid=\"stage-row\" data-stage=\"{st}\" data-state=\"{word}\"><td><a href=\"/ui/runs/{r}/stages/{sg}\">{st}</a></td>\
             <td>{badge}</td><td>{on}</td><td>{att}</td><td>{dur}</td><td>{cache}</td><td>{gates}</td><td>{note}</td></tr>",
            st = esc(&s.stage.id),
            r = seg(&id),
            sg = seg(&s.stage.id),
            badge = badge(icon, word),
            on = esc(&ran_on(ui, view, s)),
            att = s.stage.attempts.len(),
            dur = shown_duration(ui, s, now).unwrap_or_default(),
            cache = cache_text(&s.stage),
            gates = gates_text(&s.gates, now),
            note = esc(s.stage.note.as_deref().unwrap_or("")),
        );
    }
    b.push_str("</tbody></table></div>");
    b
}

/// The stage graph of a run, with states and handoff verdicts.
fn graph_of(ui: &Ui, view: &RunView) -> String {
    let id = view.run.id.to_string();
    let now = now_ms();
    let nodes: Vec<graph::Node> = view
        .stages
        .iter()
        .map(|s| {
            let (icon, state) = html::stage_state(s.stage.state);
            let mut detail = Vec::new();
            if s.stage.attempts.len() > 1 {
                detail.push(format!("attempt {}", s.stage.attempts.len()));
            }
            if let Some(d) = shown_duration(ui, s, now) {
                detail.push(d);
            }
            graph::Node {
                id: s.stage.id.clone(),
                owner: lane_of(ui, &view.run, s.planned.as_ref()),
                icon,
                state,
                detail: detail.join(" · "),
                href: Some(format!("/ui/runs/{}/stages/{}", seg(&id), seg(&s.stage.id))),
                needs: s
                    .planned
                    .as_ref()
                    .map(|p| p.needs.clone())
                    .unwrap_or_default(),
            }
        })
        .collect();
    let mut verdicts = HashMap::new();
    for s in &view.stages {
        let Some(planned) = &s.planned else { continue };
        for need in &planned.needs {
            verdicts.insert((need.clone(), s.stage.id.clone()), verdict(view, s));
        }
    }
    graph::svg(&nodes, &verdicts, &format!("stage graph of run {id}"))
}

/// What is known about the handoff into stage `s`: verified when its latest receipt
/// verifies in the chain check; not verified when the receiving node rejected the offer
/// (the stage's note says so), when its receipt does not verify, or while there is none.
fn verdict(view: &RunView, s: &StageView) -> Verdict {
    if let Some(note) = s.stage.note.as_deref()
        && note.contains(" rejected ")
    {
        return Verdict {
            verified: false,
            why: note.to_owned(),
        };
    }
    let Ok(report) = &view.report else {
        return Verdict {
            verified: false,
            why: "the chain could not be checked".into(),
        };
    };
    match report.chain.stage(&s.stage.id) {
        Some(r) if matches!(r.status, StageStatus::Verified | StageStatus::Failed) => {
            let by = r
                .receipt
                .as_ref()
                .map_or_else(String::new, |x| format!(" of {} ({})", x.node, x.org));
            Verdict {
                verified: true,
                why: format!("accepted; the receipt{by} verifies"),
            }
        }
        Some(r) if r.status == StageStatus::Invalid => Verdict {
            verified: false,
            why: format!(
                "the receipt does not verify: {}",
                r.reason.as_deref().unwrap_or("invalid")
            ),
        },
        _ => Verdict {
            verified: false,
            why: format!(
                "not verified yet: no receipt (stage {})",
                html::stage_state(s.stage.state).1
            ),
        },
    }
}

/// The lane of a stage: its owner, or the node that started the run for a stage without
/// one.
pub(crate) fn lane_of(ui: &Ui, run: &Run, planned: Option<&PlanStage>) -> String {
    if let Some(owner) = planned.and_then(|p| p.owner.clone()) {
        return owner;
    }
    run.started_by
        .strip_prefix("node:")
        .map_or_else(|| ui.api.node.name.clone(), str::to_owned)
}

/// Who ran (or runs) the stage: the node its last attempt records (the signer of its
/// receipt for another node's attempt; the node that refused it, said so), else the signer
/// of its receipt, else this node when it ran here, else its owner.
pub(crate) fn ran_on(ui: &Ui, view: &RunView, s: &StageView) -> String {
    if let Some(node) = s.stage.last_attempt().and_then(|a| a.node.as_ref()) {
        return node.to_string();
    }
    if let Some(r) = &s.receipt {
        return format!("{} ({})", r.node.name, r.node.org);
    }
    match s.stage.state {
        StageState::HandedOff => format!(
            "{} (handed off)",
            lane_of(ui, &view.run, s.planned.as_ref())
        ),
        StageState::Pending | StageState::Skipped => String::new(),
        _ if s.stage.attempts.is_empty() => String::new(),
        _ => format!("{} ({})", ui.api.node.name, ui.api.node.org),
    }
}

/// The question and approvers of an input gate, from the plan.
pub(crate) fn input_gate(planned: Option<&PlanStage>, gate: &Gate) -> (String, Vec<String>) {
    planned
        .and_then(|p| {
            let list = match gate.at.phase {
                GatePhase::Enter => &p.gates.enter,
                GatePhase::Exit => &p.gates.exit,
            };
            list.get(gate.at.index as usize)
        })
        .and_then(|g| match g {
            PlanGate::Input {
                message, approvers, ..
            } => Some((message.clone(), approvers.clone())),
            _ => None,
        })
        .unwrap_or_else(|| ("approve?".to_owned(), Vec::new()))
}

pub(crate) fn phase(phase: GatePhase) -> &'static str {
    match phase {
        GatePhase::Enter => "enter",
        GatePhase::Exit => "exit",
    }
}

pub(crate) fn verify_text(report: &Result<BundleReport, String>) -> String {
    match report {
        Ok(r) if r.verified => "verified: every receipt checks out against the plan".to_owned(),
        Ok(r) => {
            let why = r
                .chain
                .stages
                .iter()
                .find(|s| !matches!(s.status, StageStatus::Verified | StageStatus::Skipped))
                .map(|s| {
                    format!(
                        "{}: {}",
                        s.stage,
                        s.reason
                            .clone()
                            .unwrap_or_else(|| format!("{:?}", s.status).to_lowercase())
                    )
                })
                .or_else(|| r.chain.stray.first().map(|s| s.reason.clone()))
                .unwrap_or_else(|| "an attestation does not verify".to_owned());
            format!("not verified: {}", esc(&why))
        }
        Err(e) => format!("not verified: {}", esc(e)),
    }
}

/// How long a stage took (or has taken): first attempt's start to last attempt's end.
pub(crate) fn stage_duration(stage: &Stage, now: u64) -> Option<u64> {
    let first = stage.attempts.first()?;
    let last = stage.attempts.last()?;
    Some(
        last.finished_at
            .unwrap_or(now)
            .saturating_sub(first.started_at),
    )
}

/// A stage's duration for people, to the millisecond. A receipt of another node that
/// gives whole seconds only (an older node's: it carries no `*_ms` times) makes its stage
/// show `< 1s` or `Ns` rather than a precise-looking `0ms`.
fn shown_duration(ui: &Ui, s: &StageView, now: u64) -> Option<String> {
    let ms = stage_duration(&s.stage, now)?;
    let remote = s.receipt.as_ref().is_some_and(|r| {
        !r.has_millis() && (&r.node.name, &r.node.org) != (&ui.api.node.name, &ui.api.node.org)
    });
    Some(match (remote, ms / 1000) {
        (false, _) => html::duration(ms),
        (true, 0) => "< 1s".to_owned(),
        (true, secs) if secs < 60 => format!("{secs}s"),
        (true, _) => html::duration(ms),
    })
}

fn cache_text(stage: &Stage) -> String {
    let Some(a) = stage.last_attempt() else {
        return String::new();
    };
    let mut parts = Vec::new();
    for h in &a.cache_hits {
        parts.push(format!("<span class=\"hit\">hit {}</span>", esc(h)));
    }
    for m in &a.cache_misses {
        parts.push(format!("<span class=\"miss\">miss {}</span>", esc(m)));
    }
    parts.join(" ")
}

pub(crate) fn gates_text(gates: &[Gate], now: u64) -> String {
    gates
        .iter()
        .map(|g| {
            let kind = match g.kind {
                GateKind::Input => "input",
                GateKind::Webhook => "webhook",
                GateKind::Poll => "poll",
            };
            let (icon, state) = match g.state {
                GateState::Waiting => ("◔", "waiting"),
                GateState::Passed => ("✓", "passed"),
                GateState::Failed => ("✗", "failed"),
                GateState::TimedOut => ("◷", "timed out"),
            };
            let waited = g.closed_at.unwrap_or(now).saturating_sub(g.opened_at);
            let by = g
                .approved_by
                .as_deref()
                .map_or_else(String::new, |w| format!(" by {}", esc(w)));
            format!(
                "<span class=\"gate\">{icon} {kind} {state}{by}, waited {}</span>",
                html::duration(waited)
            )
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

fn branch_commit(run: &Run) -> String {
    let branch = run.facts.branch.as_deref().unwrap_or("");
    let commit = run
        .facts
        .commit
        .as_deref()
        .map(|c| html::short(c, 10))
        .unwrap_or_default();
    match (branch.is_empty(), commit.is_empty()) {
        (true, true) => "<span class=\"muted\">–</span>".to_owned(),
        (false, true) => esc(branch).to_string(),
        (true, false) => format!("<span class=\"mono\">{}</span>", esc(&commit)),
        (false, false) => format!(
            "{} <span class=\"mono\">{}</span>",
            esc(branch),
            esc(&commit)
        ),
    }
}

/// The orgs that run a run's stages, by its plan's owner bindings (org names, not this
/// node's aliases); this node's org when the plan cannot be read.
fn orgs_of(store: &Store, run: &Run, local: &str) -> Result<Vec<String>, UiError> {
    let orgs = crate::api::runs::orgs_of(store, run)?;
    Ok(if orgs.is_empty() {
        vec![local.to_owned()]
    } else {
        orgs
    })
}

fn parse_state(text: &str) -> Option<RunState> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
}

pub(crate) fn parse_run(text: &str) -> Result<RunId, UiError> {
    text.parse()
        .map_err(|_| UiError::not_found(format!("no run {text:?}")))
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
