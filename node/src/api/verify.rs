//! A run's receipt chain: `GET /v1/runs/{run}/verify` checks it, `GET
//! /v1/runs/{run}/bundle` exports it for offline checks.
//!
//! Both gather the same evidence: the run's stored plan, every receipt the store holds
//! for the run (this node's own and those other nodes sent), and the node certificates
//! this node knows (its own, `node.cert` in the home, and every known node's). The check
//! uses the node's trust store as it is in `trust.toml` at the time of the request, so a
//! revocation or a newly pinned org counts at once. The bundle adds an in-toto
//! attestation of each receipt this node signed, made at the time of the request with
//! the node key, and the node's SLSA verification summary of the whole chain (checked
//! against its trust store at that moment), signed with the node key.

use std::fs;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use otto_handoff::bundle::{Bundle, BundleReport, verify_bundle};
use otto_handoff::{Owners, attest, vsa};
use otto_pipeline::Plan;
use otto_pipeline::plan::{Body, Provenance};
use otto_protocol::{Envelope, Receipt};
use otto_trust::{Unverified, persist};

use super::runs::{no_run, parse_run};
use super::{ApiError, ApiParts, ApiState, Json, Path, blocking};
use crate::store::{GateKind, GatePhase, GateState, RunId, Source};

/// `GET /v1/runs/{run}/verify`: the run's receipt chain checked against its plan and the
/// node's current trust store.
pub(super) async fn verify(
    State(state): State<ApiState>,
    Path(run): Path<String>,
) -> Result<Json<BundleReport>, ApiError> {
    let run = parse_run(&run)?;
    let report = blocking(move || {
        let now = now_secs();
        let certificates = with_own(own_certificate(&state)?, known_certificates(&state)?);
        let bundle = evidence(&state, run, certificates)?;
        check(&state, &bundle, now)
    })
    .await?;
    Ok(Json(report))
}

/// `bundle` checked with the node's trust store as it is in `trust.toml` now and the owner
/// names the node knows: its own names, its aliases and its pinned orgs' names.
pub(crate) fn check(parts: &ApiParts, bundle: &Bundle, now: u64) -> Result<BundleReport, ApiError> {
    let trust = persist::load_trust_store(&parts.home.trust_file()).map_err(ApiError::internal)?;
    let org = *parts.membership.verified_certificate().org_key();
    let mut names = parts.node.answers_to.clone();
    names.push(parts.node.name.clone());
    let owners = Owners::new(&trust, Some(&org), &names).with_policy(parts.owners);
    Ok(verify_bundle(bundle, &owners, now))
}

/// `GET /v1/runs/{run}/bundle`: the run's plan, receipts and certificates, with an
/// attestation of each receipt this node signed and this node's verification summary
/// of the chain, as an `otto.bundle/v1` document.
pub(super) async fn bundle(
    State(state): State<ApiState>,
    Path(run): Path<String>,
) -> Result<Response, ApiError> {
    let run = parse_run(&run)?;
    let json = blocking(move || {
        // An unknown run is a 404 whatever the state of the node's identity.
        state.store.run(&run)?.ok_or_else(|| no_run(&run))?;
        let identity = state
            .home
            .identity(now_secs())
            .map_err(ApiError::internal)?;
        let certificates = with_own(
            identity.cert.envelope().clone(),
            known_certificates(&state)?,
        );
        let mut bundle = evidence(&state, run, certificates)?;
        let now = now_secs();
        let report = check(&state, &bundle, now)?;
        let own = identity.key.public_key();
        for receipt in &bundle.receipts {
            let Ok(verified) = Unverified::new(receipt.clone()).verify(&own) else {
                continue;
            };
            match attest::export(&verified, &identity.key) {
                Ok(attestation) => bundle.attestations.push(attestation),
                Err(err) => {
                    tracing::warn!(target: super::TARGET, %run, error = %err, "a receipt of this node cannot be attested");
                }
            }
        }
        let context = summary_context(&state, run, &identity.cert, now)?;
        let statement = vsa::summary(&bundle, &report, &context);
        bundle.verification_summary =
            Some(vsa::sign(&statement, &identity.key).map_err(ApiError::internal)?);
        Ok(bundle.to_json())
    })
    .await?;
    Ok(([(CONTENT_TYPE, "application/json")], json).into_response())
}

/// What the verification summary of `run` says beyond the bundle: this node, the run's
/// source and the approvals of its input gates.
fn summary_context(
    state: &ApiParts,
    run: RunId,
    cert: &otto_trust::VerifiedCert,
    now: u64,
) -> Result<vsa::Context, ApiError> {
    let record = state.store.run(&run)?.ok_or_else(|| no_run(&run))?;
    let resource_uri = match &record.source {
        Source::Git { url, commit } => format!("git+{url}@{commit}"),
        Source::Snapshot { digest } => format!("otto:snapshot/{digest}"),
    };
    let approvals = state
        .store
        .gates(&run)?
        .into_iter()
        .filter(|g| g.kind == GateKind::Input && g.state == GateState::Passed)
        .filter_map(|g| {
            let phase = match g.at.phase {
                GatePhase::Enter => "enter",
                GatePhase::Exit => "exit",
            };
            Some((
                g.at.stage,
                phase.to_owned(),
                g.approved_by?,
                g.closed_at.unwrap_or(g.opened_at),
            ))
        })
        .collect();
    Ok(vsa::Context {
        node: cert.node().to_owned(),
        org: cert.org().to_owned(),
        resource_uri,
        approvals,
        now,
    })
}

/// The run's plan and receipts with `certificates`, as a bundle without attestations.
pub(crate) fn evidence(
    state: &ApiParts,
    run: RunId,
    certificates: Vec<Envelope>,
) -> Result<Bundle, ApiError> {
    let record = state.store.run(&run)?.ok_or_else(|| no_run(&run))?;
    let bytes = state.store.plan(&record.plan_digest)?.ok_or_else(|| {
        ApiError::internal(format!(
            "the plan {} of run {run} is not in the store",
            record.plan_digest
        ))
    })?;
    let body: Body = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::internal(format!("the stored plan of run {run} does not read: {e}"))
    })?;
    let mut receipts = Vec::new();
    for entry in state.store.receipts(&run)? {
        match otto_protocol::decode_envelope(&entry.bytes) {
            Ok(env) => receipts.push(env),
            Err(err) => tracing::warn!(
                target: super::TARGET, %run, stage = %entry.stage, attempt = entry.attempt, error = %err,
                "a stored receipt does not decode; left out"
            ),
        }
    }
    // Receipts in chain order reads best: by when the attempt finished.
    receipts.sort_by_key(|env| {
        env.payload_as::<Receipt>()
            .map(|r| (r.finished_at, r.started_at))
            .unwrap_or_default()
    });
    Ok(Bundle {
        run: run.to_string(),
        plan: Plan {
            body,
            provenance: Provenance::default(),
        },
        receipts,
        certificates,
        attestations: Vec::new(),
        verification_summary: None,
    })
}

/// This node's certificate, `node.cert` in the home.
pub(crate) fn own_certificate(state: &ApiParts) -> Result<Envelope, ApiError> {
    let path = state.home.node_cert_file();
    let bytes = fs::read(&path)
        .map_err(|e| ApiError::internal(format!("reading {}: {e}", path.display())))?;
    otto_protocol::decode_envelope(&bytes)
        .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))
}

/// The certificates of the nodes this node knows; one that does not decode is left out.
pub(crate) fn known_certificates(state: &ApiParts) -> Result<Vec<Envelope>, ApiError> {
    let mut out: Vec<Envelope> = Vec::new();
    for node in state.store.nodes()? {
        match otto_protocol::decode_envelope(&node.cert) {
            Ok(env) if !out.contains(&env) => out.push(env),
            Ok(_) => {}
            Err(err) => tracing::warn!(
                target: super::TARGET, node = %node.keyid, error = %err,
                "a known node's certificate does not decode; left out"
            ),
        }
    }
    Ok(out)
}

/// This node's certificate first, then the others without it.
pub(crate) fn with_own(own: Envelope, mut known: Vec<Envelope>) -> Vec<Envelope> {
    known.retain(|c| *c != own);
    known.insert(0, own);
    known
}

/// Seconds since the Unix epoch: the time certificates are checked at.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
