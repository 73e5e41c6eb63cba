//! The Stage page (log, steps, artifacts, receipt), artifact downloads and the in-toto
//! attestation of a stage's receipt.

use std::fmt::Write as _;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use otto_protocol::{Envelope, Outcome, Receipt};
use otto_trust::Unverified;

use super::html::{self, badge, esc, seg};
use super::runs::{self, RunView, StageView, parse_run};
use super::{Current, Ui, UiError, blocking, html_response};
use crate::store::{AttemptState, Stream};

/// The most log lines the page shows (the newest ones).
const MAX_LINES: usize = 5000;

/// `GET /ui/runs/{run}/stages/{stage}`.
pub(crate) async fn show(
    State(ui): State<Ui>,
    Extension(current): Extension<Current>,
    Path((run, stage)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let id = parse_run(&run)?;
    let etag = crate::api::runs::run_etag(&ui.api, id).await.ok();
    let view = runs::load(&ui, id).await?;
    let Some(s) = view.stages.iter().find(|s| s.stage.id == stage) else {
        return Err(UiError::not_found(format!(
            "run {id} has no stage {stage:?}"
        )));
    };
    let store = ui.api.store.clone();
    let logs = ui.api.engine.logs().clone();
    let name = stage.clone();
    let (lines, envelope) = blocking(move || {
        // The last MAX_LINES lines, and no more than MAX_PAGE_BYTES of their text.
        let mut lines = std::collections::VecDeque::new();
        let mut bytes = 0;
        let mut after = logs.last_seq(&id, &name)?.saturating_sub(MAX_LINES as u64);
        loop {
            let page = logs.read(&id, &name, after, 1000)?;
            if let Some(last) = page.lines.last() {
                after = last.seq;
            }
            for line in page.lines {
                bytes += line.text.len();
                lines.push_back(line);
            }
            while lines.len() > MAX_LINES
                || (bytes > crate::store::logs::MAX_PAGE_BYTES && lines.len() > 1)
            {
                if let Some(gone) = lines.pop_front() {
                    bytes -= gone.text.len();
                }
            }
            if page.end {
                break;
            }
        }
        let lines: Vec<_> = lines.into();
        let receipts = crate::engine::receipts::stored(&store, &id)?;
        let envelope = crate::engine::receipts::latest(&receipts, &name).map(|(_, e)| e.clone());
        Ok((lines, envelope))
    })
    .await?;
    let body = stage_body(&ui, &view, s, &lines, envelope.as_ref());
    let run_id = id.to_string();
    let title = format!("{stage} · {}", view.run.pipeline);
    let mut frame = ui.frame(&title, "runs", &current);
    frame.live = true;
    frame.run = Some(&run_id);
    frame.etag = etag.as_deref();
    Ok(html_response(StatusCode::OK, html::page(&frame, &body)))
}

/// `GET /ui/runs/{run}/stages/{stage}/attestation`: the in-toto Statement (DSSE JSON) of
/// the stage's latest receipt, made now with the node key, as `otto attest export` makes
/// it. Only receipts this node signed can be attested here.
pub(crate) async fn attestation(
    State(ui): State<Ui>,
    Path((run, stage)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let id = parse_run(&run)?;
    let parts = ui.clone();
    let name = stage.clone();
    let json = blocking(move || {
        let store = &parts.api.store;
        store
            .run(&id)?
            .ok_or_else(|| UiError::not_found(format!("no run {id}")))?;
        let receipts = crate::engine::receipts::stored(store, &id)?;
        let (_, envelope) = crate::engine::receipts::latest(&receipts, &name)
            .ok_or_else(|| UiError::not_found(format!("stage {name:?} has no receipt yet")))?;
        let identity = parts
            .api
            .home
            .identity(crate::daemon::unix_now())
            .map_err(UiError::internal)?;
        let verified = Unverified::new(envelope.clone())
            .verify(&identity.key.public_key())
            .map_err(|_| {
                UiError::not_found(
                    "the receipt was signed by another node; ask that node for its attestation",
                )
            })?;
        let attestation =
            otto_handoff::attest::export(&verified, &identity.key).map_err(UiError::internal)?;
        Ok(otto_trust::dsse::to_json(&attestation))
    })
    .await?;
    let file = format!("attachment; filename=\"{}.intoto.json\"", file_name(&stage));
    let mut response = ([(CONTENT_TYPE, "application/json")], json).into_response();
    if let Ok(value) = HeaderValue::from_str(&file) {
        response.headers_mut().insert(CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// `GET /ui/runs/{run}/artifacts/{digest}`: an artifact's bytes, when a receipt of the run
/// names the digest as an output (nothing else in the blob store is served).
pub(crate) async fn artifact(
    State(ui): State<Ui>,
    Path((run, digest)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let id = parse_run(&run)?;
    let parts = ui.clone();
    let (name, bytes) = blocking(move || {
        let store = &parts.api.store;
        let receipts = crate::engine::receipts::stored(store, &id)?;
        let wanted = digest.strip_prefix("sha256:").unwrap_or(&digest).to_owned();
        let found = receipts
            .iter()
            .flat_map(|(r, _)| r.outputs.iter())
            .find(|a| hex::encode(a.sha256.0) == wanted)
            .ok_or_else(|| UiError::not_found("no artifact of this run has that digest"))?;
        let blob = crate::blobs::Digest::from_bytes(found.sha256.0);
        let bytes = parts.api.blobs.read(&blob).map_err(|e| match e {
            crate::blobs::BlobError::NotFound(_) => UiError::not_found(
                "the artifact is not stored on this node (it was made and kept elsewhere)",
            ),
            other => UiError::internal(other),
        })?;
        Ok((found.name.clone(), bytes))
    })
    .await?;
    let file = format!("attachment; filename=\"{}\"", file_name(&name));
    let mut response = ([(CONTENT_TYPE, "application/octet-stream")], bytes).into_response();
    if let Ok(value) = HeaderValue::from_str(&file) {
        response.headers_mut().insert(CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

fn stage_body(
    ui: &Ui,
    view: &RunView,
    s: &StageView,
    lines: &[crate::store::LogLine],
    envelope: Option<&Envelope>,
) -> String {
    let run = view.run.id.to_string();
    let now = runs::now_ms();
    let (icon, word) = html::stage_state(s.stage.state);
    let mut b = String::new();
    let _ = write!(
        b,
        "<nav class=\"crumbs\" aria-label=\"Breadcrumb\"><a href=\"/ui/runs\">Runs</a> › \
         <a href=\"/ui/runs/{r}\">{p} <span class=\"mono\">{rs}</span></a> › {st}</nav>\
         <div class=\"head\"><h1>{st}</h1><p data-testid=\"stage-state\" class=\"run-state\" data-state=\"{word}\">{badge}</p></div>\
         <dl class=\"facts\"><dt>Owner</dt><dd>{owner}</dd><dt>Ran on</dt><dd>{on}</dd>\
         <dt>Duration</dt><dd>{dur}</dd>",
        r = seg(&run),
        p = esc(&view.run.pipeline),
        rs = esc(&html::short(&run, 14)),
        st = esc(&s.stage.id),
        badge = badge(icon, word),
        owner = esc(&runs::lane_of(ui, &view.run, s.planned.as_ref())),
        on = esc(&runs::ran_on(ui, view, s)),
        dur = runs::stage_duration(&s.stage, now).map_or_else(String::new, html::duration),
    );
    if let Some(note) = &s.stage.note {
        let _ = write!(
            b,
            "<dt>Note</dt><dd data-testid=\"stage-note\">{}</dd>",
            esc(note)
        );
    }
    if !s.gates.is_empty() {
        let _ = write!(
            b,
            "<dt>Gates</dt><dd>{}</dd>",
            runs::gates_text(&s.gates, now)
        );
    }
    b.push_str("</dl>");

    // Attempts.
    if !s.stage.attempts.is_empty() {
        b.push_str(
            "<h2>Attempts</h2><div class=\"scroll\"><table><thead><tr><th>#</th><th>State</th><th>Ran on</th>\
             <th>Started</th><th>Duration</th><th>Exit</th><th>Cache</th><th>Error</th></tr></thead><tbody>",
        );
        for a in &s.stage.attempts {
            let (icon, word) = attempt_state(a.state);
            let _ = write!(
                b,
                "<tr data-testid=\"attempt\"><td>{n}</td><td>{badge}</td><td>{on}</td><td>{t}</td><td>{d}</td>\
                 <td>{e}</td><td>{c}</td><td>{err}</td></tr>",
                n = a.n,
                badge = badge(icon, word),
                on = esc(&a.node.as_ref().map(ToString::to_string).unwrap_or_default()),
                t = html::time(a.started_at),
                d = html::duration(a.finished_at.unwrap_or(now).saturating_sub(a.started_at)),
                e = a.exit_code.map_or_else(String::new, |c| c.to_string()),
                c = esc(&cache_line(&a.cache_hits, &a.cache_misses)),
                err = esc(a.error.as_deref().unwrap_or("")),
            );
        }
        b.push_str("</tbody></table></div>");
    }

    // Steps, with what the last attempt recorded about them.
    if let Some(planned) = &s.planned
        && !planned.steps.is_empty()
    {
        let last = s.stage.last_attempt();
        b.push_str("<h2>Steps</h2><ol class=\"steps\">");
        for (i, step) in planned.steps.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            let (icon, word, exit) = match last {
                Some(a) if a.failed_step == Some(i) => (
                    "✗",
                    "failed",
                    a.exit_code
                        .map_or_else(String::new, |c| format!("exit {c}")),
                ),
                Some(a) if a.failed_step.is_some_and(|f| i < f) => {
                    ("✓", "succeeded", "exit 0".into())
                }
                Some(a) if a.failed_step.is_some() => ("–", "not run", String::new()),
                Some(a) if a.state == AttemptState::Succeeded => {
                    ("✓", "succeeded", "exit 0".into())
                }
                Some(a) if a.state == AttemptState::Running => ("●", "running", String::new()),
                _ => ("◌", "pending", String::new()),
            };
            let _ = write!(
                b,
                "<li data-testid=\"step\"><code>{}</code> {} <span class=\"muted\">{}</span></li>",
                esc(&step_text(step)),
                badge(icon, word),
                esc(&exit)
            );
        }
        b.push_str("</ol>");
    }

    // Log.
    let _ = write!(
        b,
        "<h2>Log</h2><pre data-testid=\"log\" class=\"log\" tabindex=\"0\" aria-label=\"Log of {}\">",
        esc(&s.stage.id)
    );
    if lines.is_empty() {
        b.push_str("<span class=\"muted\">no output yet</span>");
    }
    for l in lines {
        let stream = match l.stream {
            Stream::Stdout => "out",
            Stream::Stderr => "err",
            Stream::System => "sys",
        };
        let _ = writeln!(
            b,
            "<span data-testid=\"log-line\" data-seq=\"{}\" class=\"line {stream}\">{}</span>",
            l.seq,
            esc(&l.text)
        );
    }
    b.push_str("</pre>");

    // Artifacts and receipt.
    if let Some(r) = &s.receipt {
        if !r.outputs.is_empty() {
            b.push_str("<h2>Artifacts</h2><ul class=\"artifacts\">");
            for a in &r.outputs {
                let hex = hex::encode(a.sha256.0);
                let _ = write!(
                    b,
                    "<li data-testid=\"artifact\" data-name=\"{n}\"><a href=\"/ui/runs/{r}/artifacts/sha256:{hex}\" download>{n}</a> \
                     <span class=\"muted\">{size} bytes</span> <code class=\"digest\">sha256:{hex}</code></li>",
                    n = esc(&a.name),
                    r = seg(&run),
                    size = a.size,
                );
            }
            b.push_str("</ul>");
        }
        receipt_section(&mut b, &run, &s.stage.id, r, envelope);
    } else {
        b.push_str("<h2>Receipt</h2><p class=\"muted\">No signed receipt yet.</p>");
    }
    b
}

fn receipt_section(
    b: &mut String,
    run: &str,
    stage: &str,
    r: &Receipt,
    envelope: Option<&Envelope>,
) {
    let outcome = match r.outcome {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
        Outcome::Skipped => "skipped",
        Outcome::Cancelled => "cancelled",
    };
    let digest = envelope.map(|e| hex::encode(crate::engine::receipts::digest_of(e).0));
    let signer = envelope
        .and_then(|e| e.signatures.first())
        .map(|s| s.keyid.clone())
        .unwrap_or_default();
    let _ = write!(
        b,
        "<h2>Receipt</h2><dl class=\"facts\" data-testid=\"receipt\">\
         <dt>Signed by</dt><dd data-testid=\"receipt-signer\">{node} ({org}) <code>{key}</code></dd>\
         <dt>Outcome</dt><dd data-testid=\"receipt-outcome\">{outcome}</dd><dt>Attempt</dt><dd>{att}</dd>\
         <dt>Plan digest</dt><dd><code>{plan}</code></dd><dt>Log digest</dt><dd><code>sha256:{log}</code></dd>",
        node = esc(&r.node.name),
        org = esc(&r.node.org),
        key = esc(&signer),
        att = r.attempt,
        plan = esc(&r.plan_digest),
        log = hex::encode(r.log_digest.0),
    );
    if let Some(d) = digest {
        let _ = write!(b, "<dt>Receipt digest</dt><dd><code>sha256:{d}</code></dd>");
    }
    if !r.upstream.is_empty() {
        b.push_str("<dt>Upstream</dt><dd>");
        for u in &r.upstream {
            let _ = write!(b, "<code>sha256:{}</code><br>", hex::encode(u.0));
        }
        b.push_str("</dd>");
    }
    let _ = write!(
        b,
        "<dt>Times</dt><dd>{} – {}</dd></dl>\
         <p><a data-testid=\"attestation-link\" href=\"/ui/runs/{}/stages/{}/attestation\" download>Download the in-toto attestation (DSSE JSON)</a></p>",
        esc(&html::utc(r.started_at)),
        esc(&html::utc(r.finished_at)),
        seg(run),
        seg(stage)
    );
}

fn attempt_state(state: AttemptState) -> (&'static str, &'static str) {
    match state {
        AttemptState::Running => ("●", "running"),
        AttemptState::Succeeded => ("✓", "succeeded"),
        AttemptState::Failed => ("✗", "failed"),
        AttemptState::Interrupted => ("↯", "interrupted"),
        AttemptState::Cancelled => ("⊘", "cancelled"),
    }
}

fn cache_line(hits: &[String], misses: &[String]) -> String {
    let mut parts: Vec<String> = hits.iter().map(|h| format!("hit {h}")).collect();
    parts.extend(misses.iter().map(|m| format!("miss {m}")));
    parts.join(", ")
}

/// A step as one line: its symbol and arguments.
pub(crate) fn step_text(step: &otto_pipeline::plan::Step) -> String {
    let mut out = step.symbol.clone();
    for a in &step.args {
        out.push(' ');
        out.push_str(&value_text(a));
    }
    for (k, v) in &step.kwargs {
        let _ = write!(out, " {k}: {}", value_text(v));
    }
    if !step.block.is_empty() {
        let _ = write!(out, " {{ {} steps }}", step.block.len());
    }
    html::short(&out, 200)
}

fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => format!("'{s}'"),
        other => other.to_string(),
    }
}

/// A name safe for a `Content-Disposition` file name.
fn file_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    if cleaned.is_empty() {
        "artifact".into()
    } else {
        cleaned
    }
}
