//! The rules of a run that every node applies, written once: the node (its engine and its
//! exchange) and the simulator ([`sim`](crate::sim)) both call these functions, so what the
//! simulator checks at scale is what the node does.
//!
//! - **Which stages may start** ([`ready`]): a stage that is still open whose needs all
//!   passed (succeeded, or were skipped by the plan).
//! - **The upstream chain** ([`upstream`], [`chain`], [`upstream_digests`]): every stage a
//!   stage needs, directly or through others, in plan order, and the latest receipt of
//!   each: the chain an offer carries and the `upstream` of the stage's own receipt.
//! - **Ownership** ([`owns`]): a stage with an owner belongs to the nodes that answer to
//!   that name; a stage without one to the node that started the run, which the plan's
//!   binding names ([`origin_node`]) and which alone may run it when another node offers
//!   it ([`runs_for_origin`], [`offer_to`]). (Which *org* a name is bound to, and so whose
//!   receipts count, is [`crate::owners`].)
//! - **Who moves a stage on** ([`mover`]) and **what a node does with a ready stage**
//!   ([`next`]): the node that ran the last (in plan order) of the stages it needs that
//!   have a receipt moves it on, or the node that started the run when there is none; the
//!   mover runs the stage if it owns it and offers it to its owner if not; every other
//!   node waits (DESIGN §6, "the next handoff leaves from ops").
//! - **Whose word about a stage counts** ([`may_tell`]): the status events, relayed ends
//!   and receipts other nodes gossip about a stage, by the owner binding, the node it was
//!   given to and who moves it on.
//! - **What an offer carries** ([`draft`]): the chain, the artifacts of its stages as
//!   inputs, and the signers whose certificates must go along.
//! - **Whether a peer org may have a stage run here** ([`check_scope`],
//!   [`check_definition`], [`check_stage`]): checks 11 and 22 of [`verify_offer`]
//!   (crate::verify_offer), also applied when a node moves on a stage of another org's run
//!   itself, without an offer.
//! - **Attempts and retries** ([`check_attempt`], check 12b of
//!   [`verify_offer`](crate::verify_offer)): a stage that succeeded on its owner never runs
//!   again, an offered attempt is above every attempt of the stage the owner began, and
//!   a retry (an attempt above 1) carries the run's origin's signed decision
//!   ([`crate::retry`]).
//! - **Outcomes and states** ([`outcome_of`], [`state_of`], [`verb`]): how a receipt's
//!   outcome reads as a stage state and back.
#![warn(clippy::unwrap_used)]

use otto_pipeline::plan::{Body, ORIGIN, Stage};
use otto_protocol::{
    Digest, Envelope, InputArtifact, KeyBytes, NodeIdentity, Outcome, Receipt, RejectCode,
    StageState,
};
use otto_trust::policy::ScopeError;
use otto_trust::{PublicKey, StageDefinition, TrustStore, VerifiedCert};

pub use crate::chain::digest_of;
use crate::chain::quoted;
use crate::dag::Dag;
use crate::owners::Owners;
use crate::verify::{Definition, Rejection, definition_digest};

/// A receipt a node holds, decoded, with its signed envelope.
pub type Held = (Receipt, Envelope);

/// The stages of `body` that may start now, in plan order: those `open` says are still to
/// be done (not ended, not handed off, not driven already) whose every need `passed`
/// (succeeded, or was skipped).
pub fn ready(
    body: &Body,
    open: impl Fn(&Stage) -> bool,
    passed: impl Fn(&str) -> bool,
) -> Vec<&Stage> {
    body.stages
        .iter()
        .filter(|stage| open(stage) && stage.needs.iter().all(|need| passed(need)))
        .collect()
}

/// Every stage the stage `id` needs, directly or through others, in plan order; the stage
/// itself is never among them. A hostile plan's repeated ids resolve to their first stage
/// and its cycles end.
pub fn upstream<'a>(body: &'a Body, id: &str) -> Vec<&'a Stage> {
    let dag = Dag::new(body);
    let Some(position) = dag.position(id) else {
        return Vec::new();
    };
    dag.ancestors(position)
        .into_iter()
        .filter_map(|p| dag.stage_at(p))
        .collect()
}

/// The receipt of the highest attempt of `stage` among `receipts` (the last one held, if
/// two have the same attempt).
pub fn latest<'a>(receipts: &'a [Held], stage: &str) -> Option<&'a Held> {
    receipts
        .iter()
        .filter(|(receipt, _)| receipt.stage == stage)
        .max_by_key(|(receipt, _)| receipt.attempt)
}

/// The chain of stage `id`: the latest receipt of every stage before it (see
/// [`upstream`]) that has one, in plan order.
pub fn chain<'a>(body: &Body, id: &str, receipts: &'a [Held]) -> Vec<&'a Held> {
    upstream(body, id)
        .into_iter()
        .filter_map(|stage| latest(receipts, &stage.id))
        .collect()
}

/// The digests of [`chain`]'s receipts: the `upstream` of the receipt of stage `id`.
pub fn upstream_digests(body: &Body, id: &str, receipts: &[Held]) -> Vec<Digest> {
    chain(body, id, receipts)
        .into_iter()
        .map(|(_, envelope)| digest_of(envelope))
        .collect()
}

/// Whether a node that answers to `names` runs a stage whose owner is `owner` (the
/// stage's `owner`, `None` when it has none): a stage with an owner if one of the names is
/// that owner, a stage without one if the node started the run.
pub fn owns(owner: Option<&str>, names: &[String], started_here: bool) -> bool {
    match owner {
        None => started_here,
        Some(owner) => names.iter().any(|name| name == owner),
    }
}

/// The node that started the run of `body`, as its owner binding records it: the one node
/// that runs the stages without an owner and signs their receipts. `None` for a plan no
/// node started, or one bound before bindings named the node.
pub fn origin_node(body: &Body) -> Option<PublicKey> {
    let node = body.owners.get(ORIGIN)?.node.as_deref()?;
    PublicKey::from_keyid(node).ok()
}

/// Whether the node with key `me` runs the stages without an owner of a run of `body` that
/// another node offers it: the plan's binding names it as the node that started the run,
/// **and** its own records say it started that run with this plan (`started`). The plan
/// alone proves nothing (anyone can write a binding that names any key), so a peer cannot
/// make a node run the steps of a plan it never started as its own, and no node but the
/// origin can claim its stages.
pub fn runs_for_origin(body: &Body, me: &PublicKey, started: bool) -> bool {
    started && origin_node(body).is_some_and(|node| node == *me)
}

/// Where the offer of a stage goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferTo {
    /// A stage without an owner: the node that started the run, by its key.
    Origin(PublicKey),
    /// A node that answers to this owner name.
    Owner(String),
}

/// Where the node that moves `stage` on and does not own it offers it: a stage without an
/// owner to the node that started the run (see [`origin_node`]), any other to a node that
/// answers to its owner.
pub fn offer_to(body: &Body, stage: &Stage) -> OfferTo {
    match (&stage.owner, origin_node(body)) {
        (None, Some(node)) => OfferTo::Origin(node),
        _ => OfferTo::Owner(stage.owner_name().to_owned()),
    }
}

/// Who moves a stage on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mover {
    /// This node.
    Me,
    /// Another node, by name (`None`: the node that started the run, not known here).
    Other(Option<String>),
}

/// Who moves `stage` on, given the run's receipts held here, this node's key `me`, and
/// whether this node started the run: the signer of the latest receipt of the last stage,
/// in plan order, of those `stage` needs that have one ([`mover_node`]); with none, the
/// node that started the run.
pub fn mover(
    body: &Body,
    stage: &Stage,
    receipts: &[Held],
    me: &KeyBytes,
    started_here: bool,
) -> Mover {
    match mover_node(body, stage, receipts) {
        Some(node) if node.key == *me => Mover::Me,
        Some(node) => Mover::Other(Some(node.name.clone())),
        None if started_here => Mover::Me,
        None => Mover::Other(None),
    }
}

/// The node that moves `stage` on, by the receipts held here: the signer of the latest
/// receipt of the last stage, in plan order, of those `stage` needs that have one. `None`
/// when none has: then the node that started the run moves it on. Where the run's origin
/// sends its retry of the stage ([`crate::retry`]).
pub fn mover_node<'a>(
    body: &Body,
    stage: &Stage,
    receipts: &'a [Held],
) -> Option<&'a NodeIdentity> {
    body.stages
        .iter()
        .filter(|s| stage.needs.contains(&s.id))
        .filter_map(|s| latest(receipts, &s.id))
        .next_back()
        .map(|(receipt, _)| &receipt.node)
}

/// Whether the node that starts a run of `body`, answering to `names`, moves `stage` on
/// itself, as the plan alone says before any receipt exists: [`mover`] with the receipts
/// the run will hold, where the last stage `stage` needs (in plan order) is signed for by
/// the node that runs it, the starter when that stage has no owner or one of `names`; with
/// no needs, the starter moves it on.
pub fn starter_moves_on(body: &Body, stage: &Stage, names: &[String]) -> bool {
    body.stages
        .iter()
        .rfind(|s| stage.needs.contains(&s.id))
        .is_none_or(|need| owns(need.owner.as_deref(), names, true))
}

/// The stages of `body` the node that starts its run would offer to an owner it cannot
/// resolve, with that owner: stages with an owner not in `names` (the starter's own),
/// that the run does not skip ([`runs_at_all`]), that the starter moves on ([`starter_moves_on`]), whose
/// owner is in `unresolved` (see [`crate::owners::Binding`]). A run of such a plan would
/// wait for a node nothing names; an owner another node moves its stage on to is that
/// node's to resolve and is not listed.
pub fn unreachable<'a>(
    body: &'a Body,
    names: &[String],
    unresolved: &[String],
) -> Vec<(&'a str, &'a str)> {
    body.stages
        .iter()
        .filter(|stage| runs_at_all(stage))
        .filter_map(|stage| Some((stage, stage.owner.as_deref()?)))
        .filter(|(_, owner)| !names.iter().any(|n| n == owner))
        .filter(|(_, owner)| unresolved.iter().any(|u| u == owner))
        .filter(|(stage, _)| starter_moves_on(body, stage, names))
        .map(|(stage, owner)| (stage.id.as_str(), owner))
        .collect()
}

/// Whether a run ever runs (or offers) `stage`: not when its `when` fails or is unknown
/// for the run's facts (unknown counts as not holding), where whichever node reaches it
/// marks it skipped.
pub fn runs_at_all(stage: &Stage) -> bool {
    !stage.skipped
        && stage
            .when
            .as_ref()
            .is_none_or(|when| when.result == otto_pipeline::plan::Outcome::Pass)
}

/// What a node does with a stage that is ready (see [`ready`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Run it here.
    Run,
    /// Offer it to its owner: this node moves it on and does not own it.
    HandOff {
        /// For people, e.g. "to be offered to ops".
        note: String,
    },
    /// Leave it to the node that moves it on.
    Wait {
        /// For people, e.g. "ops-1 moves it on to qa".
        note: String,
    },
}

/// What this node does with the ready `stage`: `owned` is [`owns`], `offered` whether a
/// peer offered this node the stage and it accepted, `mover` is [`mover`] (not read when
/// the stage is owned and was offered: an accepted offer runs).
pub fn next(stage: &Stage, owned: bool, offered: bool, mover: &Mover) -> Next {
    if owned && offered {
        return Next::Run;
    }
    let owner = stage.owner_name();
    match (mover, owned) {
        (Mover::Me, true) => Next::Run,
        (Mover::Me, false) => Next::HandOff {
            note: format!("to be offered to {owner}"),
        },
        (Mover::Other(Some(node)), _) => Next::Wait {
            note: format!("{node} moves it on to {owner}"),
        },
        (Mover::Other(None), _) => Next::Wait {
            note: format!("the node that started the run moves it on to {owner}"),
        },
    }
}

/// What another node tells this one about a stage on the run's gossip (see [`may_tell`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Word {
    /// How the stage goes: a runner's status event (state, note, log lines).
    Progress,
    /// That it ended: a `failed` status event, or a relayed end.
    End,
    /// Its receipt.
    Receipt,
}

/// Whether the node of certificate `signer` may tell this node `word` about `stage` of a
/// run of `body` on gossip, or why not: what is not taken is dropped, and never shown as
/// the stage's state. `owners` is this node's knowledge of owner names, `receipts` the
/// run's receipts held here, `given_to` the node this node gave the stage to (its offer
/// is out, or was accepted and its receipt has not come).
///
/// - A stage this node gave to a node is that node's to report: no other node's word
///   about it counts (its receipt comes from that node alone, as through the handoff).
/// - Otherwise the owner speaks: a node of the org the stage's owner is bound to (for a
///   stage without an owner, the node that started the run), the same rule as for a
///   receipt in a chain.
/// - The node that moves the stage on ([`mover`], from the receipts held here) may also
///   tell that it ended: it fails a stage whose offer was refused, and vouches for an end
///   it learnt from the owner, whom this node may not know. Not its receipt, and not its
///   progress.
pub fn may_tell(
    body: &Body,
    stage: &Stage,
    owners: &Owners<'_>,
    signer: &VerifiedCert,
    word: Word,
    receipts: &[Held],
    given_to: Option<&PublicKey>,
) -> Result<(), String> {
    let node = *signer.node_key();
    let who = format!(
        "node {} of org {}",
        quoted(signer.node()),
        quoted(signer.org())
    );
    if let Some(given) = given_to {
        if *given == node {
            return Ok(());
        }
        return Err(format!(
            "{who} is not the node this node gave stage {} to ({})",
            quoted(&stage.id),
            given.keyid()
        ));
    }
    let Some(problem) = crate::chain::not_the_owner(body, owners, stage.owner_name(), signer)
    else {
        return Ok(());
    };
    if word == Word::End {
        let me = KeyBytes(*node.as_bytes());
        let started = origin_node(body).is_some_and(|origin| origin == node);
        if mover(body, stage, receipts, &me, started) == Mover::Me {
            return Ok(());
        }
    }
    Err(format!("about stage {}: {problem}", quoted(&stage.id)))
}

/// What the offer of a stage carries besides the plan: see [`draft`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft<'a> {
    /// The chain: [`chain`] of the stage.
    pub chain: Vec<&'a Held>,
    /// The artifacts of the chain's stages, each with the node that serves it.
    pub inputs: Vec<InputArtifact>,
    /// The keys of the chain's signers other than this node, first appearance first: the
    /// offer carries their certificates.
    pub signers: Vec<KeyBytes>,
}

/// The parts of the offer of stage `id` that come from the receipts held here: the chain,
/// the inputs (every artifact of the chain, served by the node that signed its receipt,
/// named by `provider`), and the signers whose certificates go along (not `me`).
pub fn draft<'a>(
    body: &Body,
    id: &str,
    receipts: &'a [Held],
    me: &KeyBytes,
    provider: impl Fn(&Receipt) -> Option<String>,
) -> Draft<'a> {
    let chain = chain(body, id, receipts);
    let mut inputs = Vec::new();
    let mut signers: Vec<KeyBytes> = Vec::new();
    for (receipt, _) in &chain {
        let Some(node) = provider(receipt) else {
            continue;
        };
        inputs.extend(receipt.outputs.iter().map(|artifact| InputArtifact {
            name: artifact.name.clone(),
            sha256: artifact.sha256,
            size: artifact.size,
            provider: node.clone(),
        }));
        if receipt.node.key != *me && !signers.contains(&receipt.node.key) {
            signers.push(receipt.node.key);
        }
    }
    Draft {
        chain,
        inputs,
        signers,
    }
}

/// Check 11: the policy of org `org` (pinned here) lets its runs have `stage` of `body` run
/// here: the pipeline, the stage and its environment are in scope, and it names every
/// secret the stage receives.
pub fn check_scope(
    trust: &TrustStore,
    org: &str,
    body: &Body,
    stage: &Stage,
) -> Result<(), Rejection> {
    trust
        .check_scope(org, &body.pipeline, &stage.id, stage.environment.as_deref())
        .map_err(|err| scope(&err, org))?;
    trust
        .check_secrets(org, &stage.secrets)
        .map_err(|err| scope(&err, org))
}

/// The last check of an offer: how `stage` is defined (a blueprint this node publishes, as
/// `publishes` says, or inline steps by their [`definition_digest`]) and whether the policy
/// of org `org` lets it run here.
pub fn check_definition(
    trust: &TrustStore,
    org: &str,
    body: &Body,
    stage: &Stage,
    publishes: &dyn Fn(&Body, &Stage) -> bool,
) -> Result<Definition, Rejection> {
    let definition = match &stage.blueprint {
        Some(blueprint) if publishes(body, stage) => Definition::Blueprint {
            library: blueprint.library.clone(),
            name: blueprint.name.clone(),
        },
        _ => Definition::Inline {
            digest: definition_digest(body, stage),
        },
    };
    let asked = match &definition {
        Definition::Blueprint { name, .. } => StageDefinition::Blueprint(name),
        Definition::Inline { digest } | Definition::Own { digest } => {
            StageDefinition::Inline { digest }
        }
    };
    trust
        .check_definition(org, asked)
        .map_err(|err| not_approved(&err, stage, &definition, org))?;
    Ok(definition)
}

/// [`check_scope`] then [`check_definition`]: whether this node runs `stage` of a run org
/// `org` started. What an offer of the stage from that org would meet, for a stage this
/// node moves on itself.
pub fn check_stage(
    trust: &TrustStore,
    org: &str,
    body: &Body,
    stage: &Stage,
    publishes: &dyn Fn(&Body, &Stage) -> bool,
) -> Result<Definition, Rejection> {
    check_scope(trust, org, body, stage)?;
    check_definition(trust, org, body, stage, publishes)
}

/// What the owner knows of an offered stage from its own records, for [`check_attempt`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prior {
    /// The highest attempt of the stage this node began (or recorded), if any.
    pub last_attempt: Option<u32>,
    /// Whether the stage succeeded here: a succeeded stage never runs again.
    pub succeeded: bool,
}

/// Check 12b, the part this node's records decide: whether attempt `attempt` of `stage`
/// may run here, given what this node holds of the stage (`prior`).
///
/// - a stage that succeeded here is never run again, whatever the attempt: a second
///   receipt of a succeeded stage is what a retry must never give;
/// - the attempt is above every attempt of the stage begun here (a stale or repeated offer
///   under a new handoff id runs nothing, and neither does an old retry replayed).
///
/// An attempt above 1 is a retry, and only the run's origin retries: the offer must also
/// carry the origin's signed retry for exactly this attempt ([`crate::retry::check_offered`]),
/// whoever sends it.
pub fn check_attempt(stage: &Stage, attempt: u32, prior: Prior) -> Result<(), Rejection> {
    let refused = |message: String| Rejection::new(RejectCode::AttemptRefused, message);
    if attempt == 0 {
        return Err(Rejection::new(
            RejectCode::Malformed,
            "the offer's attempt is 0; attempts count from 1".to_owned(),
        ));
    }
    if prior.succeeded {
        return Err(refused(format!(
            "stage {} already succeeded here; a succeeded stage never runs again",
            quoted(&stage.id)
        ))
        .hint("retry only stages that failed or were refused"));
    }
    if let Some(last) = prior.last_attempt
        && attempt <= last
    {
        return Err(refused(format!(
            "attempt {attempt} of stage {} is not above attempt {last}, which this node began already",
            quoted(&stage.id)
        ))
        .hint("a retry is offered as the next attempt"));
    }
    Ok(())
}

/// The outcome a receipt gives a stage that ended in `state`; `None` for a state that is
/// not an end.
pub fn outcome_of(state: StageState) -> Option<Outcome> {
    match state {
        StageState::Succeeded => Some(Outcome::Success),
        StageState::Failed => Some(Outcome::Failure),
        StageState::Cancelled => Some(Outcome::Cancelled),
        StageState::Skipped => Some(Outcome::Skipped),
        StageState::Queued | StageState::WaitingGate | StageState::Running => None,
    }
}

/// The state of a stage whose receipt says `outcome`.
pub fn state_of(outcome: Outcome) -> StageState {
    match outcome {
        Outcome::Success => StageState::Succeeded,
        Outcome::Failure => StageState::Failed,
        Outcome::Cancelled => StageState::Cancelled,
        Outcome::Skipped => StageState::Skipped,
    }
}

/// How people read `outcome` in "ran on ops-1": `ran`, `failed`, `skipped`, `cancelled`.
pub fn verb(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "ran",
        Outcome::Failure => "failed",
        Outcome::Skipped => "skipped",
        Outcome::Cancelled => "cancelled",
    }
}

/// A policy scope failure, as a rejection.
fn scope(err: &ScopeError, org: &str) -> Rejection {
    let hint = match err {
        ScopeError::Secret { secret, .. } => format!(
            "give it with `otto-node trust policy {org} --secrets {secret}` on this node, or \
             leave it out of the stage's environment"
        ),
        _ => format!(
            "the policy for org {} on this node must allow it",
            quoted(org)
        ),
    };
    Rejection::new(err.reject_code(), err.to_string()).hint(hint)
}

/// A definition failure, as a rejection naming the digest and the command to approve it.
fn not_approved(err: &ScopeError, stage: &Stage, definition: &Definition, org: &str) -> Rejection {
    let Definition::Inline { digest } = definition else {
        return Rejection::new(err.reject_code(), err.to_string());
    };
    let origin = match &stage.blueprint {
        Some(b) => format!(
            "comes from blueprint {} of {}, which this node does not publish",
            quoted(&b.name),
            quoted(&b.library)
        ),
        None => "has inline steps".to_owned(),
    };
    match err {
        ScopeError::InlineSteps { .. } => Rejection::new(
            RejectCode::DefinitionNotApproved,
            format!(
                "stage {} {origin}, and the policy for org {} allows only blueprints this \
                 node publishes (definition {digest})",
                quoted(&stage.id),
                quoted(org)
            ),
        )
        .hint(format!(
            "set definitions = \"approved\" in the policy for org {} and run `otto-node \
             approve {digest}` on this node",
            quoted(org)
        )),
        ScopeError::NotApproved { .. } => Rejection::new(
            RejectCode::DefinitionNotApproved,
            format!(
                "stage {} {origin}; its definition {digest} is not approved here",
                quoted(&stage.id)
            ),
        )
        .hint(format!("run `otto-node approve {digest}` on this node")),
        _ => Rejection::new(err.reject_code(), err.to_string()),
    }
}
