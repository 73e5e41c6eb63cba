//! Building the signed offer of a stage this node moves on, and the guest record of a run
//! another node offered a stage of.

use std::collections::BTreeMap;

use otto_handoff::rules;
use otto_pipeline::plan::Body;
use otto_protocol::{
    Digest as WireDigest, Envelope, Facts as WireFacts, GitBundle, HandoffId, KeyBytes, Offer,
    RunSource,
};
use otto_trust::PublicKey;

use crate::engine::receipts;
use crate::store::{self, NewRun, NewStage, RunId, Source, StageState, Store};

/// Why an offer could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OfferError {
    /// The run or its plan is not in the store.
    #[error("{0}")]
    Missing(String),
    /// The run's plan binds the stage's owner to another org than the one of the node it
    /// would go to.
    #[error("{0}")]
    Unbound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// What goes into an offer besides the run's own records.
pub(crate) struct OfferSpec {
    pub(crate) run: RunId,
    pub(crate) stage: String,
    pub(crate) id: HandoffId,
    pub(crate) attempt: u32,
    pub(crate) sender: Envelope,
    pub(crate) me: PublicKey,
    /// The org key of the node the offer goes to.
    pub(crate) to_org: PublicKey,
    pub(crate) now: u64,
    pub(crate) ttl: u64,
    /// The git bundle of the run's commit this node serves, for a run from a commit.
    pub(crate) bundle: Option<GitBundle>,
    /// For an attempt above 1, the run's origin's signed retry of it.
    pub(crate) retry: Option<Envelope>,
}

/// Builds the (unsigned) offer of `spec.stage`: the run's plan, facts and source, the
/// latest receipt of every stage before it with the certificates of their signers, and the
/// artifacts those stages archived with the node that serves each. Blocks on the store.
pub(crate) fn build(store: &Store, spec: &OfferSpec) -> Result<Offer, OfferError> {
    let run = store
        .run(&spec.run)?
        .ok_or_else(|| OfferError::Missing(format!("no run {}", spec.run)))?;
    let plan = store
        .plan(&run.plan_digest)?
        .ok_or_else(|| OfferError::Missing(format!("the plan of run {} is missing", spec.run)))?;
    let body: Body = serde_json::from_slice(&plan)
        .map_err(|e| OfferError::Missing(format!("the plan does not read: {e}")))?;
    check_binding(&body, &spec.stage, &spec.to_org)?;
    let stored = receipts::stored(store, &spec.run)?;
    let me = KeyBytes(*spec.me.as_bytes());
    let draft = rules::draft(&body, &spec.stage, &stored, &me, |receipt| {
        PublicKey::from_bytes(&receipt.node.key.0)
            .ok()
            .map(|key| key.peer_id().to_string())
    });
    let mut certificates: Vec<Envelope> = Vec::new();
    for signer in &draft.signers {
        let Ok(key) = PublicKey::from_bytes(&signer.0) else {
            continue;
        };
        if let Some(node) = store.node(&key.keyid())?
            && let Ok(cert) = otto_protocol::decode_envelope(&node.cert)
            && !certificates.contains(&cert)
        {
            certificates.push(cert);
        }
    }
    let source = match &run.source {
        Source::Snapshot { digest } => RunSource::Snapshot {
            digest: WireDigest(*digest.as_bytes()),
        },
        Source::Git { url, commit } => RunSource::Git {
            url: url.clone(),
            commit: commit.clone(),
            bundle: spec.bundle,
        },
    };
    Ok(Offer {
        id: spec.id,
        run: spec.run.to_string(),
        source,
        plan_digest: run.plan_digest.to_string(),
        plan,
        stage: spec.stage.clone(),
        attempt: spec.attempt,
        facts: wire_facts(&run.facts),
        inputs: draft.inputs,
        receipts: draft
            .chain
            .iter()
            .map(|(_, envelope)| envelope.clone())
            .collect(),
        sender: spec.sender.clone(),
        expires_at: spec.now + spec.ttl,
        created_at: spec.now,
        certificates,
        retry: spec.retry.clone(),
    })
}

/// Whether the plan, if it binds the owner of `stage`, binds it to the org `to_org`: an
/// offer to a node of any other org would be refused by it, and its receipt would not
/// count.
fn check_binding(body: &Body, stage: &str, to_org: &PublicKey) -> Result<(), OfferError> {
    let Some(owner) = body
        .stages
        .iter()
        .find(|s| s.id == stage)
        .map(|s| s.owner_name())
    else {
        return Err(OfferError::Missing(format!(
            "the plan has no stage {stage:?}"
        )));
    };
    match body.owners.get(owner) {
        // The origin could not resolve the name; this node did, and the owner checks it.
        None => Ok(()),
        Some(bound) if bound.key != to_org.keyid() => Err(OfferError::Unbound(format!(
            "the run binds owner {owner:?} to org {:?}, but the node that answers to it here \
             is of org {}",
            bound.org,
            to_org.keyid()
        ))),
        Some(_) => Ok(()),
    }
}

/// Records the run of an accepted offer, if this node has no record of it yet: the same
/// run id, plan, facts and source, started by the offering node. Blocks on the store.
/// Returns whether it was created.
pub(crate) fn record_guest_run(
    store: &Store,
    offer: &Offer,
    offered_by: &str,
    now: u64,
) -> Result<bool, OfferError> {
    let run: RunId = offer
        .run
        .parse()
        .map_err(|e| OfferError::Missing(format!("run id {:?}: {e}", offer.run)))?;
    if store.run(&run)?.is_some() {
        return Ok(false);
    }
    let body: Body = serde_json::from_slice(&offer.plan)
        .map_err(|e| OfferError::Missing(format!("the plan does not read: {e}")))?;
    let source = match &offer.source {
        RunSource::Snapshot { digest } => Source::Snapshot {
            digest: crate::blobs::Digest::from_bytes(digest.0),
        },
        RunSource::Git { url, commit, .. } => Source::Git {
            url: url.clone(),
            commit: commit.clone(),
        },
    };
    // Every stage starts pending, as in a run started here: the engine skips what the plan
    // skips when its turn comes.
    let stages = body
        .stages
        .iter()
        .map(|stage| NewStage {
            id: stage.id.clone(),
            state: StageState::Pending,
        })
        .collect();
    store.create_run(NewRun {
        id: run,
        pipeline: body.pipeline.clone(),
        plan: offer.plan.clone(),
        source,
        facts: body.facts.clone(),
        created_at: now,
        started_by: format!("{}{offered_by}", crate::engine::OFFERED_BY),
        stages,
    })?;
    Ok(true)
}

/// The facts of a plan as an offer carries them (vars as text).
fn wire_facts(facts: &otto_pipeline::plan::Facts) -> WireFacts {
    WireFacts {
        branch: facts.branch.clone(),
        tag: facts.tag.clone(),
        environment: facts.environment.clone(),
        commit: facts.commit.clone(),
        vars: facts
            .vars
            .iter()
            .map(|(k, v)| {
                let text = match serde_json::to_value(v) {
                    Ok(serde_json::Value::String(s)) => s,
                    Ok(other) => other.to_string(),
                    Err(_) => String::new(),
                };
                (k.clone(), text)
            })
            .collect::<BTreeMap<_, _>>(),
    }
}
