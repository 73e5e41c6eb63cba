//! The owner's checks on an offered stage: [`verify_offer`] accepts an offer or says
//! precisely why not.
//!
//! # The checks, in order
//!
//! The first check that fails decides the [`Rejection`]; its code is what the sender sees.
//!
//! | # | check | code |
//! |---|---|---|
//! | 1 | the envelope holds an offer (payload type and CBOR), and the sender's certificate decodes | `malformed`, `unsupported_version` |
//! | 2 | the envelope's signature verifies with the node key of the certificate the offer presents (`sender`) | `bad_signature` |
//! | 2b | the node that delivered the offer, when the transport names it ([`VerifyContext::from`]), is that node: a node offers only its own offers, so a trusted node cannot replay another's to a second node of the owner org | `replayed` |
//! | 3 | that certificate is signed by an org key pinned here | `unknown_org`, `bad_signature` |
//! | 4 | `not_before ≤ now < not_after` | `certificate_not_yet_valid`, `certificate_expired` |
//! | 5 | the sender's org has not revoked the node key | `node_revoked` |
//! | 6 | `now < expires_at` | `offer_expired` |
//! | 7 | the handoff id was not seen before | `replayed` |
//! | 8 | the plan bytes hash to `plan_digest` | `plan_digest_mismatch` |
//! | 9 | the plan bytes parse as a plan body (schema `otto.plan/v1`) | `malformed` |
//! | 10 | the plan has the offered stage | `stage_not_owned` |
//! | 11 | the policy of the sender's org allows the plan's pipeline, the stage and the stage's environment, and names every secret the stage receives (not for a stage of a run this node started: its own plan) | `out_of_scope` |
//! | 11b | the run's source ([`source::check_source`](crate::source::check_source)): a git repository URL of a form the owner would fetch, a full commit id, the commit the plan's facts name, and a way to get it: the policy lists the repository (the owner fetches it itself) or the offer carries a bundle (for a run this node started: its own) | `source_refused` |
//! | 12 | the stage's owner in the plan is one of the names this node answers to, and the plan binds that name to this node's org; a stage without an owner only when this node started the run with this plan ([`VerifyContext::started`]) and the plan's binding names it as the origin ([`rules::runs_for_origin`]) | `stage_not_owned` |
//! | 12b | the attempt ([`rules::check_attempt`], [`retry::check_offered`](crate::retry::check_offered)): the stage did not succeed here ([`VerifyContext::prior`]), the attempt is above every attempt of it begun here, and an attempt above 1 (a retry) carries a retry signed by the node the plan binds `origin` to (a node of its org, in a plan that names no node), certified by an org trusted as for receipts, for exactly this run, plan, stage and attempt; whoever sends the offer (the node that moves the stage on) | `attempt_refused` |
//! | 13 | every receipt in the chain decodes, is signed by a node whose certificate (the sender's or one in `certificates`) chains to a pinned org, is valid and not revoked, and names that node; all signatures verify (one batch) | `upstream_receipt_invalid` |
//! | 14 | each receipt, in chain order: it is for this run | `upstream_receipt_invalid` |
//! | 15 | … it names this plan's digest | `plan_digest_mismatch` |
//! | 16 | … it is for a stage the offered stage needs, directly or through others | `upstream_receipt_not_preceding` |
//! | 17 | … its signer's org is the org the stage's owner is bound to ([`Owners::expected`]: the org this node knows by the name, else the org the plan binds it to, which must be pinned here unless the policy is [`OwnerPolicy::Bound`]) | `upstream_receipt_wrong_signer` |
//! | 18 | per stage before the offered one, in plan order: no two different receipts for one attempt | `upstream_receipt_invalid` |
//! | 19 | … a receipt exists, unless the plan skips the stage | `upstream_receipt_missing` |
//! | 20 | … the highest attempt's outcome is `success` (`skipped` for a stage the plan skips) | `upstream_receipt_failed` |
//! | 21 | every owner name the plan binds and this node knows is bound to the org this node knows by that name | `owner_binding_mismatch` |
//! | 21b | this node runs stages of other orgs' runs at all ([`VerifyContext::refuses_others`]: not when its steps cannot be walled in and it is set to refuse such stages); a stage of a run this node started, or one offered by a node of its own org, is not another org's | `out_of_scope` |
//! | 22 | the stage's definition: a blueprint this node publishes, or inline steps whose [`definition_digest`] (steps, gates, runtime, secret names, `uses` files, concurrency group) is approved here under a policy with `definitions = "approved"`; for a stage of a run this node started, its own plan ([`Definition::Own`]) | `definition_not_approved` |
//!
//! Authentication comes first, so nothing unauthenticated decides more than `malformed`
//! or `bad_signature`; cheap freshness checks come before the plan is parsed; the receipt
//! chain, the costliest part, comes after everything that can refuse the offer cheaply;
//! a receipt signed by the wrong org is named as such before the plan's other bindings
//! are compared; the definition check comes last, so that approving the digest it names is all that is
//! left to do when it fails.
//!
//! The sender's transport identity (its libp2p peer id) is the node's to compare with
//! [`AcceptedOffer::sender`]; this crate never sees a connection.
#![warn(clippy::unwrap_used)]

use std::collections::HashMap;
use std::iter;

use otto_pipeline::Plan;
use otto_pipeline::plan::{
    Body, Cache, Concurrency, Gates, Notify, Provenance, Runtime, SCHEMA, Stage, Step, Used,
    sha256_digest,
};
use otto_protocol::limits::MAX_TEXT_LEN;
use otto_protocol::{
    DecodeError, Digest, Envelope, HandoffId, NodeCertificate, Offer, Reject, RejectCode,
};
use otto_trust::{CertError, PublicKey, TrustStore, Unverified, Verified, VerifiedCert};
use serde::Serialize;

use crate::chain::{self, SignedReceipt, conflict, latest, outcome_problem, quoted};
use crate::dag::Dag;
use crate::owners::{OwnerPolicy, Owners};
use crate::rules;
use crate::source::Obtain;

/// What the receiving node knows and decides, for [`verify_offer`].
#[derive(Clone, Copy)]
pub struct VerifyContext<'a> {
    /// The receiver's trust store: pinned orgs, policies, approvals, revocations.
    pub trust: &'a TrustStore,
    /// The receiver's org key: the names in `answers_to` must be bound to it.
    pub org: &'a PublicKey,
    /// The node key of the peer that delivered the offer, as the transport authenticated
    /// it (a libp2p peer id is one): the offer must be that node's own. `None` where
    /// nothing delivered it (an offer read back from the node's own records).
    pub from: Option<&'a PublicKey>,
    /// Whether upstream owners may be bound to orgs this node never pinned.
    pub owners: OwnerPolicy,
    /// The owner names in plans that mean this node, e.g. `["ops"]`. [`ORIGIN`](otto_pipeline::plan::ORIGIN) among
    /// them counts for nothing: whether this node runs a stage without an owner is
    /// [`VerifyContext::started`]'s and the plan binding's to say.
    pub answers_to: &'a [String],
    /// This node's key: a stage without an owner is offered only to the node the plan's
    /// binding names as the one that started the run. `None`: no such stage is run here.
    pub node: Option<&'a PublicKey>,
    /// Whether this node started run `run` (first argument) with the plan of digest
    /// `plan_digest` (second), by its own records.
    pub started: &'a dyn Fn(&str, &str) -> bool,
    /// Whether a handoff id was seen before (the node's inbox remembers them).
    pub seen: &'a dyn Fn(&HandoffId) -> bool,
    /// What this node holds of a stage of a run (run id, stage id): the last attempt it
    /// began and whether it succeeded here (check 12b).
    pub prior: &'a dyn Fn(&str, &str) -> rules::Prior,
    /// Whether a stage that names a blueprint is this node's own definition: it names a
    /// blueprint this node publishes, from the library version this node publishes, and
    /// the stage is what that blueprint expands to. Only then does the stage run without
    /// an approved digest.
    pub publishes: &'a dyn Fn(&Body, &Stage) -> bool,
    /// Why this node runs no stage of another org's run, when it runs none (its steps
    /// cannot be walled in and it is set to refuse such stages): check 21b refuses the
    /// offer with it, before anything is accepted. `None`: it runs them.
    pub refuses_others: Option<&'a str>,
}

/// An offer that passed every check: what the node persists, answers with an accept for,
/// and later runs.
#[derive(Debug, Clone)]
pub struct AcceptedOffer {
    envelope: Verified<Envelope>,
    offer: Offer,
    plan: Plan,
    stage: usize,
    sender: VerifiedCert,
    upstream: Vec<Digest>,
    definition: Definition,
    obtain: Obtain,
}

/// How the accepted stage is defined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Definition {
    /// A blueprint this node publishes.
    Blueprint {
        /// The library it is from, as the plan names it.
        library: String,
        /// The blueprint's name.
        name: String,
    },
    /// Steps written by the asker, approved here by their digest.
    Inline {
        /// The [`definition_digest`] of the stage.
        digest: String,
    },
    /// A stage without an owner of a run this node started: its own plan, offered back
    /// by the node that moved it on.
    Own {
        /// The [`definition_digest`] of the stage.
        digest: String,
    },
}

/// Why an offer is refused: the reject code, a message for people and, where there is
/// something to do about it, a hint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    /// The machine-readable reason.
    pub code: RejectCode,
    /// What is wrong, in one line.
    pub message: String,
    /// What to do about it, e.g. the command that approves a definition.
    pub hint: Option<String>,
}

/// Checks an offer as received from a peer (see the [module docs](self) for the checks and
/// their order) at time `now`.
pub fn verify_offer(
    envelope: Unverified<Envelope>,
    ctx: &VerifyContext<'_>,
    now: u64,
) -> Result<AcceptedOffer, Rejection> {
    // 1. Decode.
    let offer: Offer = envelope.peek().payload_as().map_err(|err| decode(&err))?;
    let presented: NodeCertificate = offer.sender.payload_as().map_err(|err| {
        Rejection::new(
            RejectCode::Malformed,
            format!("the sender's certificate does not decode: {err}"),
        )
    })?;
    let node_key = PublicKey::from_bytes(&presented.node_key).map_err(|err| {
        Rejection::new(
            RejectCode::Malformed,
            format!("the sender's certificate holds no usable node key: {err}"),
        )
    })?;

    // 2. The offer's signature.
    let envelope = envelope.verify(&node_key).map_err(|err| {
        Rejection::new(
            RejectCode::BadSignature,
            format!(
                "the offer's signature does not verify with the node key of its sender's \
                 certificate: {err}"
            ),
        )
    })?;

    // 2b. Delivered by its signer.
    if let Some(from) = ctx.from
        && *from != node_key
    {
        return Err(Rejection::new(
            RejectCode::Replayed,
            format!(
                "the offer is node {}'s, but it was delivered by another node ({}): a copy \
                 of another node's offer",
                quoted(&presented.node),
                from.keyid()
            ),
        )
        .hint("a node sends only its own offers; the owner takes them from their sender"));
    }

    // 3-5. The sender's certificate: pinned org, window, revocation.
    let sender = ctx
        .trust
        .verify_cert(&offer.sender, now)
        .map_err(|err| certificate(&err))?;

    // 6-7. Freshness.
    if now >= offer.expires_at {
        return Err(Rejection::new(
            RejectCode::OfferExpired,
            format!(
                "the offer expired at {} (now {})",
                otto_protocol::time::utc_text(offer.expires_at),
                otto_protocol::time::utc_text(now)
            ),
        )
        .hint("send a new offer"));
    }
    if (ctx.seen)(&offer.id) {
        return Err(Rejection::new(
            RejectCode::Replayed,
            format!("handoff {} was seen before", offer.id),
        )
        .hint("a new handoff needs a new handoff id"));
    }

    // 8-10. The plan and the stage in it.
    let digest = sha256_digest(&offer.plan);
    if digest != offer.plan_digest {
        return Err(Rejection::new(
            RejectCode::PlanDigestMismatch,
            format!(
                "the plan hashes to {digest}, but the offer names {}",
                quoted(&offer.plan_digest)
            ),
        ));
    }
    let body: Body = serde_json::from_slice(&offer.plan).map_err(|err| {
        Rejection::new(
            RejectCode::Malformed,
            format!("the plan does not parse: {err}"),
        )
    })?;
    if body.schema != SCHEMA {
        return Err(Rejection::new(
            RejectCode::Malformed,
            format!(
                "the plan has schema {}, this node reads {SCHEMA}",
                quoted(&body.schema)
            ),
        ));
    }
    let dag = Dag::new(&body);
    let Some((position, stage)) = dag
        .position(&offer.stage)
        .and_then(|p| dag.stage_at(p).map(|s| (p, s)))
    else {
        return Err(Rejection::new(
            RejectCode::StageNotOwned,
            format!("the plan has no stage {}", quoted(&offer.stage)),
        ));
    };

    // A stage without an owner of a run this node started with this very plan: its own.
    let own = stage.owner.is_none()
        && ctx.node.is_some_and(|me| {
            rules::runs_for_origin(&body, me, (ctx.started)(&offer.run, &offer.plan_digest))
        });

    // 11. Policy scope.
    if !own {
        rules::check_scope(ctx.trust, sender.org(), &body, stage)?;
    }

    // 11b. The run's source, and how this node gets it.
    let obtain = crate::source::check_source(ctx.trust, sender.org(), &body, &offer.source, own)?;

    // 12. Ownership.
    let owners = Owners::new(ctx.trust, Some(ctx.org), ctx.answers_to).with_policy(ctx.owners);
    if stage.owner.is_none() && !own {
        return Err(Rejection::new(
            RejectCode::StageNotOwned,
            format!(
                "stage {} has no owner, so it belongs to {}, the node that started run {}; \
                 this node did not start it with this plan",
                quoted(&stage.id),
                quoted(stage.owner_name()),
                quoted(&offer.run)
            ),
        )
        .hint("offer the stage to the node the plan's owner binding names as the origin"));
    }
    if !own && !ctx.answers_to.iter().any(|name| name == stage.owner_name()) {
        return Err(Rejection::new(
            RejectCode::StageNotOwned,
            format!(
                "the plan gives stage {} to {}, which is not this node ({})",
                quoted(&stage.id),
                quoted(stage.owner_name()),
                ctx.answers_to.join(", ")
            ),
        )
        .hint("offer the stage to the node its owner names"));
    }
    if let Err(unbound) = owners.expected(&body, stage.owner_name()) {
        return Err(Rejection::new(
            RejectCode::StageNotOwned,
            format!(
                "stage {}: {}",
                quoted(&stage.id),
                unbound.describe(stage.owner_name())
            ),
        )
        .hint("start the run on a node whose trust store binds the owner to this node's org"));
    }

    // 12b. The attempt: never a succeeded stage again, always a new attempt, and a retry
    // only with the origin's signed word for exactly this attempt.
    rules::check_attempt(stage, offer.attempt, (ctx.prior)(&offer.run, &stage.id))?;
    crate::retry::check_offered(&offer, &body, &owners.trust_for(&body, now), now)?;

    // 13-20. The receipt chain.
    let signers: Vec<&Envelope> = iter::once(&offer.sender)
        .chain(offer.certificates.iter())
        .collect();
    let upstream = check_receipts(&offer, &body, &dag, position, &signers, &owners, now)?;

    // 21. The plan's other bindings.
    if let Some((name, unbound)) = owners.disagreement(&body) {
        return Err(Rejection::new(
            RejectCode::OwnerBindingMismatch,
            unbound.describe(&name),
        ));
    }

    // 21b. Whether this node runs another org's stages at all: no approval could make
    // it run this one, so it says so before the definition is looked at.
    if let Some(why) = ctx.refuses_others
        && !own
        && sender.org_key() != ctx.org
    {
        return Err(Rejection::new(
            RejectCode::OutOfScope,
            format!("stage {}: {why}", quoted(&stage.id)),
        )
        .hint("the owner's operator fixes what the message names, or offers the stage to another node"));
    }

    // 22. The stage's definition.
    let definition = if own {
        Definition::Own {
            digest: definition_digest(&body, stage),
        }
    } else {
        rules::check_definition(ctx.trust, sender.org(), &body, stage, ctx.publishes)?
    };

    Ok(AcceptedOffer {
        envelope,
        stage: position,
        plan: Plan {
            body,
            provenance: Provenance::default(),
        },
        offer,
        sender,
        upstream,
        definition,
        obtain,
    })
}

/// The digest by which a node approves a stage's inline definition
/// (`otto-node approve DIGEST`): `sha256:` and the lowercase hex SHA-256 of the canonical
/// JSON (keys sorted, no whitespace, as for plans) of
/// `{"caches", "concurrency", "environment", "gates", "notify", "runtime", "schema":
/// "otto.stage-definition/v1", "secrets", "steps", "uses"}`, with the stage's fields as the
/// plan format writes them and `environment` as `{"name", "settings"}` (the environment
/// the stage names and its settings in `body`); `caches`, `concurrency`, `environment`,
/// `secrets` and `uses` are left out when empty, so a stage without them has the digest it
/// had before they were covered.
///
/// It covers everything the owner would execute or hand over, or that decides how: the
/// steps, the notify steps, the gates (a poll gate runs a command), the runtime (the
/// image), the names of the secrets the stage receives, the environment it runs in and
/// that environment's settings (a variable such as `LD_PRELOAD` changes what the steps
/// run), the caches it restores and saves (what they put in the workspace), and the
/// source files it names with `uses` by their digests (a changed `deploy.sh` is a new
/// definition), and its concurrency group (which deploys of this node it queues behind or,
/// with `cancel_in_progress`, cancels: a peer cannot name the owner's group unapproved).
/// It does not cover the stage's name, owner or needs, so an approval
/// survives renaming or moving the stage.
pub fn definition_digest(body: &Body, stage: &Stage) -> String {
    #[derive(Serialize)]
    struct EnvironmentDoc<'a> {
        name: &'a str,
        settings: Option<&'a std::collections::BTreeMap<String, String>>,
    }
    #[derive(Serialize)]
    struct DefinitionDoc<'a> {
        #[serde(skip_serializing_if = "<[Cache]>::is_empty")]
        caches: &'a [Cache],
        #[serde(skip_serializing_if = "Option::is_none")]
        concurrency: &'a Option<Concurrency>,
        #[serde(skip_serializing_if = "Option::is_none")]
        environment: Option<EnvironmentDoc<'a>>,
        gates: &'a Gates,
        notify: &'a Notify,
        runtime: &'a Runtime,
        schema: &'static str,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        secrets: &'a [String],
        steps: &'a [Step],
        #[serde(skip_serializing_if = "<[Used]>::is_empty")]
        uses: &'a [Used],
    }
    let environment = stage.environment.as_deref().map(|name| EnvironmentDoc {
        name,
        settings: body.environments.get(name).map(|e| &e.settings),
    });
    let doc = DefinitionDoc {
        caches: &stage.caches,
        concurrency: &stage.concurrency,
        environment,
        gates: &stage.gates,
        notify: &stage.notify,
        runtime: &stage.runtime,
        schema: DEFINITION_SCHEMA,
        secrets: &stage.secrets,
        steps: &stage.steps,
        uses: &stage.uses,
    };
    // A plan's types serialize with string keys only; were one not to, the digest would be
    // of `null`, which no one has approved.
    sha256_digest(&otto_pipeline::plan::canonical_json(&doc))
}

/// The schema name inside the document [`definition_digest`] hashes.
pub const DEFINITION_SCHEMA: &str = "otto.stage-definition/v1";

impl VerifyContext<'_> {
    /// A context for a node of the org with key `org` that has seen no handoff id,
    /// publishes no blueprint and takes upstream owners only bound to orgs it pinned.
    pub fn new<'a>(
        trust: &'a TrustStore,
        org: &'a PublicKey,
        answers_to: &'a [String],
    ) -> VerifyContext<'a> {
        VerifyContext {
            trust,
            org,
            from: None,
            owners: OwnerPolicy::default(),
            answers_to,
            node: None,
            started: &started_nothing,
            seen: &never_seen,
            prior: &no_prior,
            publishes: &publishes_nothing,
            refuses_others: None,
        }
    }
}

impl<'a> VerifyContext<'a> {
    /// The same context, for an offer that the node with key `from` delivered.
    pub fn with_from(self, from: &'a PublicKey) -> Self {
        Self {
            from: Some(from),
            ..self
        }
    }

    /// The same context, for the node with key `node`, asking `started` whether it started
    /// a run with a plan (see [`VerifyContext::started`]).
    pub fn with_origin(self, node: &'a PublicKey, started: &'a dyn Fn(&str, &str) -> bool) -> Self {
        Self {
            node: Some(node),
            started,
            ..self
        }
    }

    /// The same context, asking `seen` whether a handoff id was seen before.
    pub fn with_seen(self, seen: &'a dyn Fn(&HandoffId) -> bool) -> Self {
        Self { seen, ..self }
    }

    /// The same context, asking `prior` what this node holds of an offered stage.
    pub fn with_prior(self, prior: &'a dyn Fn(&str, &str) -> rules::Prior) -> Self {
        Self { prior, ..self }
    }

    /// The same context, taking upstream owners under `policy`.
    pub fn with_owners(self, policy: OwnerPolicy) -> Self {
        Self {
            owners: policy,
            ..self
        }
    }

    /// The same context, asking `publishes` whether a blueprint stage is this node's own.
    pub fn with_publishes(self, publishes: &'a dyn Fn(&Body, &Stage) -> bool) -> Self {
        Self { publishes, ..self }
    }

    /// The same context, for a node that runs no stage of another org's run, for the
    /// reason `why` (see [`VerifyContext::refuses_others`]).
    pub fn refusing_others(self, why: &'a str) -> Self {
        Self {
            refuses_others: Some(why),
            ..self
        }
    }
}

impl AcceptedOffer {
    /// The offer's handoff id.
    pub fn id(&self) -> HandoffId {
        self.offer.id
    }

    /// The signed offer, as received and verified: what the node persists.
    pub fn envelope(&self) -> &Verified<Envelope> {
        &self.envelope
    }

    /// The offer.
    pub fn offer(&self) -> &Offer {
        &self.offer
    }

    /// How this node gets the run's source (check 11b).
    pub fn obtain(&self) -> &Obtain {
        &self.obtain
    }

    /// The plan the offer carries (its provenance is not sent, so it is empty).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The offered stage, as the plan defines it.
    pub fn stage(&self) -> &Stage {
        // SAFETY: `verify_offer` found the stage at this position of this plan, and neither
        // changes afterwards (the fields are private), so the index is in bounds.
        &self.plan.body.stages[self.stage]
    }

    /// The sender's verified certificate; its org is the pinned name on this node.
    pub fn sender(&self) -> &VerifiedCert {
        &self.sender
    }

    /// The digests of the offer's receipt envelopes, in chain order: the `upstream` of the
    /// receipt this node signs when the stage ends.
    pub fn upstream(&self) -> &[Digest] {
        &self.upstream
    }

    /// How the stage is defined: a published blueprint or approved inline steps.
    pub fn definition(&self) -> &Definition {
        &self.definition
    }

    /// The answer the node sends once it has persisted the offer.
    pub fn accept(&self) -> otto_protocol::Accept {
        otto_protocol::Accept {
            id: self.offer.id,
            stage: self.offer.stage.clone(),
            attempt: self.offer.attempt,
        }
    }

    /// Gives the offer back, dropping the rest.
    pub fn into_offer(self) -> Offer {
        self.offer
    }
}

impl Rejection {
    /// A rejection without a hint.
    pub fn new(code: RejectCode, message: String) -> Self {
        Self {
            code,
            message,
            hint: None,
        }
    }

    /// The same rejection with a hint.
    pub fn hint(self, hint: impl Into<String>) -> Self {
        Self {
            hint: Some(hint.into()),
            ..self
        }
    }

    /// The reject message for the offer with handoff id `id`, its texts cut to the
    /// protocol's bound for human text.
    pub fn to_reject(&self, id: HandoffId) -> Reject {
        Reject {
            id,
            code: self.code.clone(),
            message: truncate(&self.message, MAX_TEXT_LEN),
            hint: self.hint.as_deref().map(|h| truncate(h, MAX_TEXT_LEN)),
        }
    }
}

/// Checks 13 to 20: the receipt chain of `offer` for the stage at `position`. Returns the
/// digests of the receipts in chain order.
fn check_receipts(
    offer: &Offer,
    body: &Body,
    dag: &Dag<'_>,
    position: usize,
    signers: &[&Envelope],
    owners: &Owners<'_>,
    now: u64,
) -> Result<Vec<Digest>, Rejection> {
    let invalid = |message| Rejection::new(RejectCode::UpstreamReceiptInvalid, message);
    let mut signed: Vec<SignedReceipt> = Vec::with_capacity(offer.receipts.len());
    let trust = owners.trust_for(body, now);
    for result in chain::authenticate(&offer.receipts, signers, &trust, now) {
        signed.push(result.map_err(|bad| invalid(bad.reason))?);
    }
    let upstream = signed.iter().map(|s| s.digest).collect();

    let offered = quoted(&offer.stage);
    let ancestors = dag.ancestors(position);
    let mut by_stage: HashMap<usize, Vec<SignedReceipt>> = HashMap::new();
    for s in signed {
        let receipt = &s.receipt;
        let stage = quoted(&receipt.stage);
        if receipt.run != offer.run {
            return Err(invalid(format!(
                "the receipt of stage {stage} is for run {}, not {}",
                quoted(&receipt.run),
                quoted(&offer.run)
            )));
        }
        if receipt.plan_digest != offer.plan_digest {
            return Err(Rejection::new(
                RejectCode::PlanDigestMismatch,
                format!(
                    "the receipt of stage {stage} is for plan {}, but the offer's plan is {}",
                    quoted(&receipt.plan_digest),
                    quoted(&offer.plan_digest)
                ),
            ));
        }
        let Some(pos) = dag.position(&receipt.stage) else {
            return Err(Rejection::new(
                RejectCode::UpstreamReceiptNotPreceding,
                format!("the chain has a receipt for stage {stage}, which the plan does not have"),
            ));
        };
        if !ancestors.contains(&pos) {
            return Err(Rejection::new(
                RejectCode::UpstreamReceiptNotPreceding,
                format!("stage {stage} does not precede stage {offered} in the plan"),
            ));
        }
        if let Some(owner) = dag.stage_at(pos).map(Stage::owner_name)
            && let Some(reason) = chain::wrong_signer(body, owners, owner, &s)
        {
            return Err(
                Rejection::new(RejectCode::UpstreamReceiptWrongSigner, reason)
                    .hint("a stage's receipt counts only when a node of its owner's org signed it"),
            );
        }
        by_stage.entry(pos).or_default().push(s);
    }

    for pos in ancestors {
        let Some(stage) = dag.stage_at(pos) else {
            continue;
        };
        let candidates = by_stage.remove(&pos).unwrap_or_default();
        if let Some(reason) = conflict(&candidates) {
            return Err(invalid(reason));
        }
        match latest(&candidates) {
            None if stage.skipped => {}
            None => {
                return Err(Rejection::new(
                    RejectCode::UpstreamReceiptMissing,
                    format!(
                        "the chain has no receipt for stage {}, which stage {offered} needs",
                        quoted(&stage.id)
                    ),
                )
                .hint("offer the stage once every stage before it has a receipt"));
            }
            Some(chosen) => {
                if let Some(reason) = outcome_problem(stage, &chosen.receipt) {
                    return Err(Rejection::new(RejectCode::UpstreamReceiptFailed, reason));
                }
            }
        }
    }
    Ok(upstream)
}

/// A decode failure of the offer, as a rejection.
fn decode(err: &DecodeError) -> Rejection {
    let code = match err {
        DecodeError::UnsupportedVersion { .. } => RejectCode::UnsupportedVersion,
        _ => RejectCode::Malformed,
    };
    Rejection::new(code, format!("the offer does not decode: {err}"))
}

/// A certificate failure of the sender, as a rejection.
fn certificate(err: &CertError) -> Rejection {
    let rejection = Rejection::new(err.reject_code(), format!("sender: {err}"));
    match err {
        CertError::UnknownOrg { .. } => rejection.hint(
            "this node trusts only orgs it has pinned; join it with an invite from this node \
             (`otto-node invite` here, `otto-node join TOKEN` on the sender)",
        ),
        CertError::Expired { .. } => {
            rejection.hint("the sender's org must issue the sender a new node certificate")
        }
        CertError::NotYetValid { .. } => {
            rejection.hint("check the clocks of both nodes, or wait until the certificate starts")
        }
        _ => rejection,
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_owned()
}

fn never_seen(_: &HandoffId) -> bool {
    false
}

fn no_prior(_: &str, _: &str) -> rules::Prior {
    rules::Prior::default()
}

fn publishes_nothing(_: &Body, _: &Stage) -> bool {
    false
}

fn started_nothing(_: &str, _: &str) -> bool {
    false
}
