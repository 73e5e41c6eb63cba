//! Retries across handoffs: the run's origin decides, the node that moves the stage on
//! offers it again, the owner checks the origin's word.
//!
//! A stage that failed (or was refused) is run again as a new attempt of the same run only
//! when the node that started the run (its **origin**, the node the plan's binding of
//! [`ORIGIN`] names) says so, in a signed [`Retry`]: run, plan digest, stage, attempt,
//! reason, and the origin's node certificate, signed by the origin's node key. The origin
//! sends it to the stage's **mover** ([`rules::mover`]): the node that ran the last of the
//! stages it needs, which may be the origin itself, a node of a third org (dev → qa → ops:
//! qa moves Deploy on), or the owner (two consecutive stages of ops). The mover checks it
//! ([`check_request`]) and offers the stage again as that attempt with the retry in
//! [`Offer::retry`](otto_protocol::Offer::retry), or runs it itself when it owns the stage;
//! the owner takes an offer of an attempt above 1 only with a retry that [`check_offered`]
//! accepts (check 12b of [`verify_offer`](crate::verify_offer)).
//!
//! So no node but the origin can make another org run a stage again: a mover cannot retry
//! on its own (it holds no retry signed by the origin), a retry of one stage or attempt
//! cannot be carried over to another, and an old retry is refused once its attempt began
//! (the owner runs only attempts above the last one it began, the mover takes only
//! attempts above the last it recorded).
#![warn(clippy::unwrap_used)]

use otto_pipeline::plan::{Body, ORIGIN, Stage};
use otto_protocol::{Envelope, KeyBytes, NodeCertificate, Offer, Outcome, RejectCode, Retry};
use otto_trust::{PublicKey, TrustStore, Unverified, VerifiedCert};

use crate::chain::quoted;
use crate::rules::{self, Held, Mover};
use crate::verify::Rejection;

/// A retry whose signature and certificate verified and whose signer is the run's origin.
#[derive(Debug, Clone)]
pub struct SignedRetry {
    /// The decoded retry.
    pub retry: Retry,
    /// The origin's verified certificate.
    pub signer: VerifiedCert,
}

/// What the mover knows of the run a retry names, for [`check_request`].
#[derive(Clone, Copy)]
pub struct Holding<'a> {
    /// The run's plan, as this node holds it.
    pub body: &'a Body,
    /// Its digest.
    pub plan_digest: &'a str,
    /// The run's receipts held here.
    pub receipts: &'a [Held],
    /// This node's key.
    pub me: &'a KeyBytes,
    /// Whether this node started the run.
    pub started_here: bool,
    /// The highest attempt of the stage recorded here, if any.
    pub last_attempt: Option<u32>,
}

/// Authenticates a retry envelope for a run of `body`: it decodes, its signature verifies
/// with the node key of the certificate it carries, that certificate chains to an org
/// `trust` holds (valid at `now`, not revoked), and its signer is the run's origin: a node
/// of the org the plan binds [`ORIGIN`] to, and the very node when the binding names one.
/// Every failure is `attempt_refused` (a malformed retry `malformed`), one line.
pub fn authenticate(
    envelope: &Envelope,
    body: &Body,
    trust: &TrustStore,
    now: u64,
) -> Result<SignedRetry, Rejection> {
    let refused = |message: String| Rejection::new(RejectCode::AttemptRefused, message);
    let retry: Retry = envelope.payload_as().map_err(|err| {
        Rejection::new(
            RejectCode::Malformed,
            format!("the retry does not decode: {err}"),
        )
    })?;
    let presented: NodeCertificate = retry.sender.payload_as().map_err(|err| {
        Rejection::new(
            RejectCode::Malformed,
            format!("the retry's certificate does not decode: {err}"),
        )
    })?;
    let node_key = PublicKey::from_bytes(&presented.node_key).map_err(|err| {
        Rejection::new(
            RejectCode::Malformed,
            format!("the retry's certificate holds no usable node key: {err}"),
        )
    })?;
    Unverified::new(envelope.clone())
        .verify(&node_key)
        .map_err(|err| {
            refused(format!(
                "the retry's signature does not verify with the node key of its certificate \
                 ({}): {err}",
                quoted(&presented.node)
            ))
        })?;
    let signer = trust.verify_cert(&retry.sender, now).map_err(|err| {
        refused(format!(
            "the retry is signed by node {}, whose certificate is not trusted here: {err}",
            quoted(&presented.node)
        ))
    })?;
    let who = format!(
        "node {} of org {}",
        quoted(signer.node()),
        quoted(signer.org())
    );
    match body.owners.get(ORIGIN) {
        Some(origin)
            if origin.key == signer.org_key().keyid()
                && origin
                    .node
                    .as_deref()
                    .is_none_or(|n| n == signer.node_key().keyid()) => {}
        Some(origin) => {
            return Err(refused(format!(
                "the retry of stage {} is signed by {who}, and only the node of org {} that \
                 started run {} retries its stages",
                quoted(&retry.stage),
                quoted(&origin.org),
                quoted(&retry.run)
            ))
            .hint("ask the run's origin to run `otto retry`"));
        }
        None => {
            return Err(refused(format!(
                "the retry of stage {} is signed by {who}, and the plan binds no org as the \
                 run's origin",
                quoted(&retry.stage)
            )));
        }
    }
    Ok(SignedRetry { retry, signer })
}

/// The retry part of check 12b: an offer of an attempt above 1 carries a retry that
/// [`authenticate`]s for the offer's plan and is for exactly the offer's run, plan digest,
/// stage and attempt. `trust` is what receipt signers are checked against (the origin's
/// org is one of them: it signed the first stages). Returns `None` for a first attempt.
pub fn check_offered(
    offer: &Offer,
    body: &Body,
    trust: &TrustStore,
    now: u64,
) -> Result<Option<SignedRetry>, Rejection> {
    if offer.attempt <= 1 {
        return Ok(None);
    }
    let stage = quoted(&offer.stage);
    let Some(envelope) = &offer.retry else {
        return Err(Rejection::new(
            RejectCode::AttemptRefused,
            format!(
                "attempt {} of stage {stage} is a retry, and the offer carries no retry signed \
                 by the node that started run {}",
                offer.attempt,
                quoted(&offer.run)
            ),
        )
        .hint("ask the run's origin to run `otto retry`"));
    };
    let signed = authenticate(envelope, body, trust, now)?;
    same_target(
        &signed.retry,
        (&offer.run, &offer.plan_digest, &offer.stage, offer.attempt),
    )?;
    Ok(Some(signed))
}

/// What the mover checks on a retry request before it offers the stage again (or runs it,
/// when it owns it): the retry [`authenticate`]s for the run's plan held here (`trust` as
/// for receipts), names this plan's digest and a stage of it above attempt 1, this node
/// moves that stage on ([`rules::mover`] from the receipts held here), the stage has no
/// successful receipt here, and the attempt is above the last one recorded here (an old
/// retry replayed is refused).
pub fn check_request(
    envelope: &Envelope,
    held: &Holding<'_>,
    trust: &TrustStore,
    now: u64,
) -> Result<SignedRetry, Rejection> {
    let signed = authenticate(envelope, held.body, trust, now)?;
    let retry = &signed.retry;
    let refused = |message: String| Rejection::new(RejectCode::AttemptRefused, message);
    if retry.plan_digest != held.plan_digest {
        return Err(Rejection::new(
            RejectCode::PlanDigestMismatch,
            format!(
                "the retry is for plan {}, but run {} has plan {}",
                quoted(&retry.plan_digest),
                quoted(&retry.run),
                quoted(held.plan_digest)
            ),
        ));
    }
    let Some(stage) = held.body.stages.iter().find(|s| s.id == retry.stage) else {
        return Err(Rejection::new(
            RejectCode::StageNotOwned,
            format!(
                "run {} has no stage {}",
                quoted(&retry.run),
                quoted(&retry.stage)
            ),
        ));
    };
    if retry.attempt < 2 {
        return Err(Rejection::new(
            RejectCode::Malformed,
            format!(
                "the retry of stage {} names attempt {}; a retry is attempt 2 or above",
                quoted(&stage.id),
                retry.attempt
            ),
        ));
    }
    if let Mover::Other(who) =
        rules::mover(held.body, stage, held.receipts, held.me, held.started_here)
    {
        return Err(Rejection::new(
            RejectCode::StageNotOwned,
            format!(
                "this node does not move stage {} on; {} does",
                quoted(&stage.id),
                who.map_or_else(
                    || "the node that started the run".to_owned(),
                    |w| quoted(&w)
                )
            ),
        )
        .hint("send the retry to the node that ran the last stage it needs"));
    }
    if succeeded(held.receipts, stage) {
        return Err(refused(format!(
            "stage {} succeeded; a succeeded stage never runs again",
            quoted(&stage.id)
        ))
        .hint("retry only stages that failed or were refused"));
    }
    if let Some(last) = held.last_attempt
        && retry.attempt <= last
    {
        return Err(refused(format!(
            "the retry is for attempt {} of stage {}, not above attempt {last}, which this \
             node recorded already",
            retry.attempt,
            quoted(&stage.id)
        ))
        .hint("a retry is for the next attempt"));
    }
    Ok(signed)
}

/// Whether the run's receipts held here say `stage` succeeded (its latest attempt).
fn succeeded(receipts: &[Held], stage: &Stage) -> bool {
    rules::latest(receipts, &stage.id).is_some_and(|(r, _)| r.outcome == Outcome::Success)
}

/// Whether `retry` is for exactly (run, plan digest, stage, attempt).
fn same_target(
    retry: &Retry,
    (run, plan, stage, attempt): (&str, &str, &str, u32),
) -> Result<(), Rejection> {
    let mut wrong = Vec::new();
    if retry.run != run {
        wrong.push(format!("run {}", quoted(&retry.run)));
    }
    if retry.plan_digest != plan {
        wrong.push(format!("plan {}", quoted(&retry.plan_digest)));
    }
    if retry.stage != stage {
        wrong.push(format!("stage {}", quoted(&retry.stage)));
    }
    if retry.attempt != attempt {
        wrong.push(format!("attempt {}", retry.attempt));
    }
    if wrong.is_empty() {
        return Ok(());
    }
    Err(Rejection::new(
        RejectCode::AttemptRefused,
        format!(
            "the offer's retry is for {}, not for attempt {attempt} of stage {} of run {}",
            wrong.join(", "),
            quoted(stage),
            quoted(run)
        ),
    )
    .hint("a retry counts only for the run, stage and attempt it names"))
}
