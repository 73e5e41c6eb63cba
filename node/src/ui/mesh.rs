//! The Mesh page: this node, its peers, stage definitions waiting for approval, and
//! revocations; and approving a definition.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use otto_pipeline::plan::Body;
use otto_protocol::{Offer, Reject, RejectCode};
use otto_trust::Policy;

use super::html::{self, badge, esc};
use super::stage::step_text;
use super::{Current, Ui, UiError, blocking, form_field, html_response, see_other};
use crate::membership::MembershipError;
use crate::store::InboxState;

/// How many received offers the page looks through for definitions to approve.
const INBOX_SCAN: usize = 500;

/// A foreign stage definition that an offer brought and this node refused because it is
/// not approved.
struct Pending {
    digest: String,
    run: String,
    stage: String,
    steps: Vec<String>,
    message: String,
    received_at: u64,
}

/// `GET /ui/mesh`.
pub(crate) async fn show(
    State(ui): State<Ui>,
    Extension(current): Extension<Current>,
) -> Result<Response, UiError> {
    let store = ui.api.store.clone();
    let trust = ui.api.membership.trust();
    let pending = blocking(move || {
        let mut found: BTreeMap<String, Pending> = BTreeMap::new();
        for entry in store.inbox_recent(INBOX_SCAN)? {
            if entry.state != InboxState::Rejected {
                continue;
            }
            if let Some(p) = pending_of(&entry.offer, entry.answer.as_deref(), entry.received_at)
                && !trust.is_approved(&p.digest)
            {
                found.entry(p.digest.clone()).or_insert(p);
            }
        }
        Ok(found.into_values().collect::<Vec<_>>())
    })
    .await?;
    let node = &ui.api.node;
    let addrs: Vec<String> = ui
        .api
        .membership
        .addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut b = String::new();
    let _ = write!(
        b,
        "<div class=\"head\"><h1>Mesh</h1></div>\
         <section aria-label=\"This node\"><h2>This node</h2><dl class=\"facts\" data-testid=\"node-info\">\
         <dt>Name</dt><dd data-testid=\"node-name-value\">{name}</dd><dt>Org</dt><dd data-testid=\"node-org\">{org}</dd>\
         <dt>Peer id</dt><dd class=\"mono\">{peer}</dd><dt>Node key</dt><dd class=\"mono\">{key}</dd>\
         <dt>Org key</dt><dd class=\"mono\">{okey}</dd><dt>Runs stages of</dt><dd>{answers}</dd>\
         <dt>Addresses</dt><dd class=\"mono\">{addrs}</dd><dt>Version</dt><dd>{version}</dd>\
         <dt>Wall</dt><dd data-testid=\"node-wall\" data-walled=\"{walled}\">{wall}</dd></dl></section>",
        name = esc(&node.name),
        org = esc(&node.org),
        peer = esc(&node.peer_id),
        key = esc(&node.node_key),
        okey = esc(&node.org_key),
        answers = if node.answers_to.is_empty() {
            "stages without an owner only".to_owned()
        } else {
            esc(&node.answers_to.join(", ")).to_string()
        },
        addrs = addrs
            .iter()
            .map(|a| esc(a).to_string())
            .collect::<Vec<_>>()
            .join("<br>"),
        version = esc(&node.version),
        walled = node.wall.walled,
        wall = esc(&node.wall.summary()),
    );

    let peers = ui.api.membership.peers();
    b.push_str("<section aria-label=\"Peers\"><h2>Peers</h2>");
    if peers.is_empty() {
        b.push_str(
            "<p class=\"empty\">No peers yet. Invite one with <code>otto-node invite</code>.</p>",
        );
    } else {
        b.push_str(
            "<div class=\"scroll\"><table><thead><tr><th>Node</th><th>Org</th><th>Connected</th>\
             <th>Last seen</th><th>Trust</th><th>Scope</th><th>Peer id</th></tr></thead><tbody>",
        );
        for p in &peers {
            let connected = if p.connected {
                badge("●", "yes")
            } else {
                badge("○", "no")
            };
            let _ = write!(
                b,
                "<tr data-testid=\"peer\" data-peer=\"{pid}\" data-connected=\"{c}\"><td>{n}</td><td>{o}</td><td>{conn}</td>\
                 <td>{seen}</td><td>{status}</td><td>{scope}</td><td class=\"mono\">{pshort}</td></tr>",
                pid = esc(&p.peer_id),
                c = p.connected,
                n = esc(p.node.as_deref().unwrap_or("(unknown)")),
                o = esc(&org_text(p.org.as_deref(), &p.aliases)),
                conn = connected,
                seen = p
                    .last_seen
                    .map_or_else(|| "never".to_owned(), |s| esc(&html::utc(s)).to_string()),
                status = esc(&match &p.reason {
                    Some(r) => format!("{}: {r}", p.status),
                    None => p.status.clone(),
                }),
                scope = esc(&p
                    .scope
                    .as_ref()
                    .map_or_else(|| "none".to_owned(), scope_text)),
                pshort = esc(&html::short(&p.peer_id, 18)),
            );
        }
        b.push_str("</tbody></table></div>");
    }
    b.push_str("</section>");

    b.push_str("<section aria-label=\"Definitions waiting for approval\"><h2>Stage definitions waiting for approval</h2>");
    if pending.is_empty() {
        b.push_str(
            "<p class=\"empty\">None: no offer was refused for an unapproved definition.</p>",
        );
    }
    for p in &pending {
        let _ = write!(
            b,
            "<div class=\"card\" data-testid=\"pending-approval\" data-digest=\"{d}\">\
             <p><strong>{stage}</strong> of run <span class=\"mono\">{run}</span>, offered {when}</p>\
             <p class=\"muted\">{msg}</p><p>Digest <code>{d}</code></p><ol class=\"steps\">",
            d = esc(&p.digest),
            stage = esc(&p.stage),
            run = esc(&p.run),
            when = html::time(p.received_at),
            msg = esc(&p.message),
        );
        for s in &p.steps {
            let _ = write!(b, "<li><code>{}</code></li>", esc(s));
        }
        let _ = write!(
            b,
            "</ol><form method=\"post\" action=\"/ui/approvals\">{csrf}\
             <input type=\"hidden\" name=\"digest\" value=\"{d}\">\
             <button type=\"submit\">Approve this definition</button></form>\
             <p class=\"hint\">Approving lets peers whose policy allows approved definitions run exactly these steps here. \
             The sender has to offer the stage again.</p></div>",
            csrf = html::csrf_field(&current.csrf),
            d = esc(&p.digest),
        );
    }
    b.push_str("</section>");

    let trust = ui.api.membership.trust_view();
    b.push_str("<section aria-label=\"Revocations\"><h2>Revocations</h2>");
    let revoked: Vec<_> = trust
        .orgs
        .iter()
        .flat_map(|o| o.revoked.iter().map(move |r| (o, r)))
        .collect();
    if revoked.is_empty() {
        b.push_str("<p class=\"empty\">No node key is revoked.</p>");
    } else {
        b.push_str(
            "<div class=\"scroll\"><table><thead><tr><th>Org</th><th>Node key</th><th>Since</th><th>Reason</th>\
             </tr></thead><tbody>",
        );
        for (org, r) in revoked {
            let _ = write!(
                b,
                "<tr data-testid=\"revocation\"><td>{o}</td><td class=\"mono\">{k}</td><td>{t}</td><td>{why}</td></tr>",
                o = esc(&org.name),
                k = esc(&r.node_key),
                t = esc(&html::utc(r.at)),
                why = esc(&r.reason),
            );
        }
        b.push_str("</tbody></table></div>");
    }
    b.push_str("</section>");
    let mut frame = ui.frame("Mesh", "mesh", &current);
    frame.live = true;
    Ok(html_response(StatusCode::OK, html::page(&frame, &b)))
}

/// `POST /ui/approvals`: approves a stage definition digest, as `otto-node approve` does.
pub(crate) async fn approve(State(ui): State<Ui>, form: Bytes) -> Result<Response, UiError> {
    let digest = form_field(&form, "digest").unwrap_or_default();
    let membership = ui.api.membership.clone();
    blocking(move || {
        membership.approve(&digest).map_err(|e| match e {
            MembershipError::Invalid(_) => {
                UiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            other => UiError::internal(other),
        })
    })
    .await?;
    Ok(see_other("/ui/mesh"))
}

/// The definition an offer refused as not approved brought, if that is why it was refused.
fn pending_of(offer: &[u8], answer: Option<&[u8]>, received_at: u64) -> Option<Pending> {
    let reject: Reject = otto_protocol::decode_envelope(answer?)
        .ok()?
        .payload_as()
        .ok()?;
    if reject.code != RejectCode::DefinitionNotApproved {
        return None;
    }
    let offer: Offer = otto_protocol::decode_envelope(offer)
        .ok()?
        .payload_as()
        .ok()?;
    let body: Body = serde_json::from_slice(&offer.plan).ok()?;
    let stage = body.stages.iter().find(|s| s.id == offer.stage)?;
    Some(Pending {
        digest: otto_handoff::verify::definition_digest(&body, stage),
        run: offer.run.clone(),
        stage: stage.id.clone(),
        steps: stage.steps.iter().map(step_text).collect(),
        message: reject.message,
        received_at,
    })
}

fn org_text(org: Option<&str>, aliases: &[String]) -> String {
    let org = org.unwrap_or("(unknown)");
    if aliases.is_empty() {
        org.to_owned()
    } else {
        format!("{org} (alias {})", aliases.join(", "))
    }
}

fn scope_text(p: &Policy) -> String {
    let list = |v: &[String]| {
        if v.is_empty() {
            "any".to_owned()
        } else {
            v.join(", ")
        }
    };
    format!(
        "pipelines {}; stages {}; environments {}",
        list(&p.pipelines),
        list(&p.stages),
        list(&p.environments)
    )
}
