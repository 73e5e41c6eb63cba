//! The Explain page: plans a pasted Ottofile and draws the plan, without running it.
//!
//! The text is planned on its own: the planner sees an empty source besides it, so a
//! relative `use` or `from` fails with a diagnostic that names the missing file, and
//! nothing on the node's filesystem is read.

use std::fmt::Write as _;
use std::path::Path as FsPath;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use otto_pipeline::{Facts, MemSource, StepCatalog};

use super::graph;
use super::html::{self, esc};
use super::stage::step_text;
use super::{Current, Ui, UiError, blocking, form_field, html_response};
use crate::blobs::Digest;

/// An example to start from.
const EXAMPLE: &str = "pipeline {
  stages {
    stage { name = 'Build'  steps { sh 'make build' } }
    parallel {
      stage { name = 'Unit'  steps { sh 'make test' } }
      stage { name = 'Lint'  steps { sh 'make lint' } }
    }
    stage {
      name = 'Deploy'
      owner = 'ops'
      gates { enter { input 'Ship it?' } }
      steps { sh './deploy.sh' }
    }
  }
}
";

/// `GET /ui/explain`.
pub(crate) async fn form(State(ui): State<Ui>, Extension(current): Extension<Current>) -> Response {
    let body = page_body(&current, EXAMPLE, "main", "");
    html_response(
        StatusCode::OK,
        html::page(&ui.frame("Explain", "explain", &current), &body),
    )
}

/// `POST /ui/explain`: the same page with the plan's graph, or its diagnostics.
pub(crate) async fn plan(
    State(ui): State<Ui>,
    Extension(current): Extension<Current>,
    form: Bytes,
) -> Result<Response, UiError> {
    let text = form_field(&form, "ottofile").unwrap_or_default();
    let branch = form_field(&form, "branch")
        .map(|b| b.trim().to_owned())
        .unwrap_or_default();
    let api = ui.api.clone();
    let (t, b) = (text.clone(), branch.clone());
    let outcome = blocking(move || Ok(explain(&t, &b, &api))).await?;
    let body = page_body(&current, &text, &branch, &outcome);
    Ok(html_response(
        StatusCode::OK,
        html::page(&ui.frame("Explain", "explain", &current), &body),
    ))
}

/// The owner binding a run of `body` started here would get: each owner name and its org,
/// names nothing here resolves flagged.
fn owners(body: &otto_pipeline::plan::Body, binding: &otto_handoff::Binding, out: &mut String) {
    out.push_str(
        "<section aria-label=\"Owners\"><h2>Owners</h2><table data-testid=\"owners\"><thead>\
         <tr><th>Owner</th><th>Bound to org</th></tr></thead><tbody>",
    );
    for name in body.owner_names() {
        match binding.owners.get(name) {
            Some(b) => {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{} <code>{}</code></td></tr>",
                    esc(name),
                    esc(&b.org),
                    esc(&b.key)
                );
            }
            None => {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td><strong>unresolved</strong>: no pinned org, alias or \
                     known node answers to it here; each node would check its stages by its \
                     own knowledge of it</td></tr>",
                    esc(name)
                );
            }
        }
    }
    out.push_str("</tbody></table></section>");
}

/// Plans `text` and renders the result as HTML, with the org each owner would be bound
/// to if this node started the run.
fn explain(text: &str, branch: &str, api: &crate::api::ApiParts) -> String {
    let mut catalog = StepCatalog::builtins();
    for dir in &api.packages {
        if let Ok(loaded) = otto_agent_protocol::packages::load_dir(dir) {
            for package in loaded {
                catalog.add(package.spec());
            }
        }
    }
    let facts = Facts {
        branch: (!branch.is_empty()).then(|| branch.to_owned()),
        ..Facts::default()
    };
    let source = MemSource::default();
    match otto_pipeline::plan_text(
        &source,
        FsPath::new("Ottofile"),
        text,
        &facts,
        &catalog,
        None,
    ) {
        Ok(planned) => {
            let plan = planned.plan;
            let nodes: Vec<graph::Node> = plan
                .body
                .stages
                .iter()
                .map(|s| graph::Node {
                    id: s.id.clone(),
                    owner: s.owner.clone().unwrap_or_else(|| "(this node)".to_owned()),
                    icon: if s.skipped { "–" } else { "◌" },
                    state: if s.skipped { "skipped" } else { "planned" },
                    detail: format!("{} steps", s.steps.len()),
                    href: None,
                    needs: s.needs.clone(),
                })
                .collect();
            let digest = Digest::of(&plan.canonical_bytes());
            let mut out = String::new();
            let _ = write!(
                out,
                "<section aria-label=\"Plan\"><h2>Plan of <q>{p}</q></h2>\
                 <p>Digest <code data-testid=\"plan-digest\">{d}</code> · {n} stages</p><div class=\"graph-wrap\">{g}</div>\
                 <div class=\"scroll\"><table><thead><tr><th>Stage</th><th>Owner</th><th>Needs</th><th>Steps</th>\
                 <th>Gates</th></tr></thead><tbody>",
                p = esc(&plan.body.pipeline),
                d = esc(&digest.to_string()),
                n = plan.body.stages.len(),
                g = graph::svg(&nodes, &Default::default(), "plan graph"),
            );
            for s in &plan.body.stages {
                let gates = s.gates.enter.len() + s.gates.exit.len();
                let _ = write!(
                    out,
                    "<tr><td>{id}{skip}</td><td>{o}</td><td>{needs}</td><td>{steps}</td><td>{gates}</td></tr>",
                    id = esc(&s.id),
                    skip = if s.skipped {
                        " <span class=\"muted\">(skipped)</span>"
                    } else {
                        ""
                    },
                    o = esc(s.owner.as_deref().unwrap_or("")),
                    needs = esc(&s.needs.join(", ")),
                    steps = s
                        .steps
                        .iter()
                        .map(|st| format!("<code>{}</code>", esc(&step_text(st))))
                        .collect::<Vec<_>>()
                        .join("<br>"),
                );
            }
            out.push_str("</tbody></table></div></section>");
            owners(
                &plan.body,
                &crate::api::runs::bind_owners(api, &plan.body),
                &mut out,
            );
            out
        }
        Err(failed) => {
            let mut out = String::from(
                "<section aria-label=\"Problems\"><h2>Problems</h2><ul data-testid=\"diagnostics\" class=\"diagnostics\">",
            );
            for line in failed.to_string().lines().filter(|l| !l.trim().is_empty()) {
                let _ = write!(out, "<li>{}</li>", esc(line));
            }
            let _ = write!(
                out,
                "</ul><details><summary>Details</summary><pre class=\"log\">{}</pre></details></section>",
                esc(&failed.render())
            );
            out
        }
    }
}

fn page_body(current: &Current, text: &str, branch: &str, result: &str) -> String {
    format!(
        "<div class=\"head\"><h1>Explain</h1></div>\
         <p class=\"muted\">Paste an Ottofile to see its plan without running anything. The text is planned on its own: \
         a relative <code>use</code> or <code>from</code> cannot be read here.</p>\
         <form data-testid=\"explain-form\" class=\"explain\" method=\"post\" action=\"/ui/explain\">{csrf}\
         <label for=\"ottofile\">Ottofile</label>\
         <textarea id=\"ottofile\" name=\"ottofile\" rows=\"16\" spellcheck=\"false\">{text}</textarea>\
         <div class=\"row\"><label>Branch <input name=\"branch\" value=\"{branch}\" autocomplete=\"off\"></label>\
         <button type=\"submit\">Explain</button></div></form>{result}",
        csrf = html::csrf_field(&current.csrf),
        text = esc(text),
        branch = esc(branch),
    )
}
