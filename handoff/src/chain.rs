//! Receipt chains: checking every receipt of a run against its plan and the trust store.
//!
//! A run leaves one signed receipt per stage attempt. [`verify_chain`] takes them all (in
//! any order, with the node certificates of their signers) and reports, for every stage of
//! the plan, whether a receipt proves it ran and succeeded. This is what `otto verify`
//! shows. The same receipt checks back [`verify_offer`](crate::verify_offer), which needs
//! them for the part of the chain an offer carries.
//!
//! # What makes a receipt count
//!
//! 1. It decodes as a receipt, and its `node.key` has a certificate among those given that
//!    chains to an org pinned in the trust store, is valid at `now` and is not revoked;
//!    the certificate names the same node and org as the receipt.
//! 2. Its signature verifies with that key. All signatures are checked in one Ed25519
//!    batch; only when the batch fails is each checked alone, to name the bad ones.
//! 3. It is for this run and this plan (same run id, same plan digest), and for a stage of
//!    the plan.
//! 4. Its signer's org is the org the stage's owner is bound to
//!    ([`Owners::expected`](crate::owners::Owners::expected)): a trusted org's node
//!    cannot stand in for a stage another org owns.
//!
//! Receipts that fail 1, 2 or 4 make their stage **invalid**; receipts that fail 3, or do not
//! decode, are listed as stray. Of the receipts left for a stage, the highest attempt
//! decides; two different receipts for the same attempt make the stage invalid (a node
//! signed two stories). The deciding receipt must name as `upstream` only receipts of
//! stages its stage needs (directly or not) that are in the chain, and its outcome must be
//! `success`, or `skipped` for a stage the plan skips.
#![warn(clippy::unwrap_used)]

use std::collections::HashMap;
use std::fmt;

use otto_pipeline::Plan;
use otto_pipeline::plan::{Body, ORIGIN, Stage};
use otto_protocol::{Digest, Envelope, NodeCertificate, Outcome, Receipt};
use otto_trust::dsse::{self, Unverified};
use otto_trust::{PublicKey, TrustStore, VerifiedCert};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::dag::Dag;
use crate::owners::Owners;
use crate::rules;

/// The result of checking a run's receipts: one entry per stage of the plan, in plan
/// order, and the receipts that belong to no stage of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Every stage of the plan, in plan order.
    pub stages: Vec<StageReport>,
    /// Receipts that do not decode, or are for another run, another plan or a stage the
    /// plan does not have.
    pub stray: Vec<StrayReceipt>,
}

/// What the receipts say about one stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageReport {
    /// The stage id.
    pub stage: String,
    /// The verdict.
    pub status: StageStatus,
    /// Why the stage is not verified; `None` for verified and skipped stages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The receipt that decided the verdict, if a valid one exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<ReceiptSummary>,
}

/// The verdict on one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// A valid receipt shows the stage succeeded.
    Verified,
    /// The plan skips the stage, and no receipt says otherwise.
    Skipped,
    /// A valid receipt shows the stage did not succeed.
    Failed,
    /// No receipt for the stage; it has not run (yet).
    Missing,
    /// A receipt for the stage does not verify, or contradicts the chain.
    Invalid,
}

/// The facts of the receipt a verdict rests on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceiptSummary {
    /// sha256 of the receipt envelope's canonical bytes, as other receipts name it.
    pub digest: Digest,
    /// The attempt it reports.
    pub attempt: u32,
    /// How the attempt ended.
    pub outcome: Outcome,
    /// The node that ran the stage and signed the receipt.
    pub node: String,
    /// That node's org, by its pinned name on this node.
    pub org: String,
}

/// A receipt that belongs to no stage of the checked run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StrayReceipt {
    /// Its position in the receipts given.
    pub index: usize,
    /// Why it belongs nowhere.
    pub reason: String,
}

/// Checks every receipt of run `run` against `plan`, with the signers' node certificates
/// `certificates`, the pinned orgs, revocations and owner names that `owners` knows, at
/// time `now`.
///
/// To audit an old run, pass the current time: a receipt whose signer's certificate has
/// since expired or been revoked no longer counts.
pub fn verify_chain(
    run: &str,
    plan: &Plan,
    receipts: &[Envelope],
    certificates: &[Envelope],
    owners: &Owners<'_>,
    now: u64,
) -> ChainReport {
    let trust = owners.trust_for(&plan.body, now);
    let trust = &*trust;
    let plan_digest = plan.digest();
    let dag = Dag::new(&plan.body);
    let stages = &plan.body.stages;
    let certificates: Vec<&Envelope> = certificates.iter().collect();
    let checked = authenticate(receipts, &certificates, trust, now);

    let mut candidates: Vec<Vec<SignedReceipt>> = vec![Vec::new(); stages.len()];
    let mut invalid: Vec<Vec<String>> = vec![Vec::new(); stages.len()];
    let mut stray = Vec::new();
    for result in checked {
        match result {
            Err(bad) => match bad.stage.as_deref().and_then(|s| dag.position(s)) {
                Some(pos) => push_at(&mut invalid, pos, bad.reason),
                None => stray.push(StrayReceipt {
                    index: bad.index,
                    reason: bad.reason,
                }),
            },
            Ok(signed) => {
                let receipt = &signed.receipt;
                let stage = quoted(&receipt.stage);
                let misfit = if receipt.run != run {
                    Some(format!(
                        "the receipt of stage {stage} is for run {}, not {}",
                        quoted(&receipt.run),
                        quoted(run)
                    ))
                } else if receipt.plan_digest != plan_digest {
                    Some(format!(
                        "the receipt of stage {stage} is for plan {}, not {plan_digest}",
                        quoted(&receipt.plan_digest)
                    ))
                } else {
                    None
                };
                match (misfit, dag.position(&receipt.stage)) {
                    (Some(reason), _) => stray.push(StrayReceipt {
                        index: signed.index,
                        reason,
                    }),
                    (None, None) => stray.push(StrayReceipt {
                        index: signed.index,
                        reason: format!("the plan has no stage {stage}"),
                    }),
                    (None, Some(pos)) => {
                        let owner = stages.get(pos).map_or(ORIGIN, Stage::owner_name);
                        match wrong_signer(&plan.body, owners, owner, &signed) {
                            Some(reason) => push_at(&mut invalid, pos, reason),
                            None => push_at(&mut candidates, pos, signed),
                        }
                    }
                }
            }
        }
    }

    let placed: HashMap<Digest, usize> = candidates
        .iter()
        .enumerate()
        .flat_map(|(pos, list)| list.iter().map(move |s| (s.digest, pos)))
        .collect();

    let reports = stages
        .iter()
        .enumerate()
        .map(|(pos, stage)| {
            let invalid = invalid.get(pos).map(Vec::as_slice).unwrap_or_default();
            let candidates = candidates.get(pos).map(Vec::as_slice).unwrap_or_default();
            stage_report(stage, pos, invalid, candidates, &placed, &dag)
        })
        .collect();
    ChainReport {
        stages: reports,
        stray,
    }
}

impl ChainReport {
    /// Whether the run is fully proven: every stage verified or skipped, and no stray
    /// receipt. A run still in progress is not (its later stages are missing).
    pub fn is_verified(&self) -> bool {
        self.stray.is_empty()
            && self
                .stages
                .iter()
                .all(|s| matches!(s.status, StageStatus::Verified | StageStatus::Skipped))
    }

    /// The report of the stage with this id.
    pub fn stage(&self, id: &str) -> Option<&StageReport> {
        self.stages.iter().find(|s| s.stage == id)
    }
}

impl StageStatus {
    /// The status as `otto verify` prints it, e.g. `verified`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
            Self::Missing => "missing",
            Self::Invalid => "invalid",
        }
    }
}

impl fmt::Display for StageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict on one stage from its valid receipts and the reasons its invalid ones
/// failed.
fn stage_report(
    stage: &Stage,
    pos: usize,
    invalid: &[String],
    candidates: &[SignedReceipt],
    placed: &HashMap<Digest, usize>,
    dag: &Dag<'_>,
) -> StageReport {
    let report = |status, reason, receipt: Option<&SignedReceipt>| StageReport {
        stage: stage.id.clone(),
        status,
        reason,
        receipt: receipt.map(SignedReceipt::summary),
    };
    if !invalid.is_empty() {
        return report(StageStatus::Invalid, Some(invalid.join("; ")), None);
    }
    if let Some(reason) = conflict(candidates) {
        return report(StageStatus::Invalid, Some(reason), None);
    }
    let Some(latest) = latest(candidates) else {
        return if stage.skipped {
            report(StageStatus::Skipped, None, None)
        } else {
            report(
                StageStatus::Missing,
                Some(format!("no receipt for stage {}", quoted(&stage.id))),
                None,
            )
        };
    };
    let ancestors = dag.ancestors(pos);
    if let Some(unknown) = latest
        .receipt
        .upstream
        .iter()
        .find(|d| !placed.get(d).is_some_and(|p| ancestors.contains(p)))
    {
        let reason = format!(
            "the receipt of stage {} names upstream receipt {unknown}, which is not a \
             verified receipt of a stage it needs",
            quoted(&stage.id)
        );
        return report(StageStatus::Invalid, Some(reason), Some(latest));
    }
    match outcome_problem(stage, &latest.receipt) {
        Some(reason) => report(StageStatus::Failed, Some(reason), Some(latest)),
        None if stage.skipped => report(StageStatus::Skipped, None, Some(latest)),
        None => report(StageStatus::Verified, None, Some(latest)),
    }
}

/// A receipt that decoded, whose signer's certificate chains to a pinned org, and whose
/// signature verified with the certified key.
#[derive(Debug, Clone)]
pub(crate) struct SignedReceipt {
    /// Its position in the receipts given.
    pub(crate) index: usize,
    /// The receipt.
    pub(crate) receipt: Receipt,
    /// sha256 of the envelope's canonical bytes.
    pub(crate) digest: Digest,
    /// The signer's verified certificate.
    pub(crate) signer: VerifiedCert,
}

/// A receipt that did not verify, with the stage it claims if it decoded.
#[derive(Debug, Clone)]
pub(crate) struct BadReceipt {
    /// Its position in the receipts given.
    pub(crate) index: usize,
    /// The stage it claims (untrusted), if it decoded.
    pub(crate) stage: Option<String>,
    /// Why it does not verify.
    pub(crate) reason: String,
}

/// Checks each receipt's decoding, signer certificate and signature (see the module
/// docs, steps 1 and 2). The result has one entry per receipt, in order.
pub(crate) fn authenticate(
    receipts: &[Envelope],
    certificates: &[&Envelope],
    trust: &TrustStore,
    now: u64,
) -> Vec<Result<SignedReceipt, BadReceipt>> {
    let mut certs = Certificates::new(certificates);
    let mut results = Vec::with_capacity(receipts.len());
    let mut pending: Vec<(usize, PublicKey)> = Vec::with_capacity(receipts.len());
    for (index, env) in receipts.iter().enumerate() {
        let receipt: Receipt = match env.payload_as() {
            Ok(receipt) => receipt,
            Err(err) => {
                results.push(Err(BadReceipt {
                    index,
                    stage: None,
                    reason: format!("receipt {index} of the chain does not decode: {err}"),
                }));
                continue;
            }
        };
        let bad = |reason| {
            Err(BadReceipt {
                index,
                stage: Some(receipt.stage.clone()),
                reason,
            })
        };
        let stage = quoted(&receipt.stage);
        let node = quoted(&receipt.node.name);
        let signer = match certs.lookup(receipt.node.key.as_bytes(), trust, now) {
            None => bad(format!(
                "the receipt of stage {stage} is signed by node {node} (ed25519:{}), and no \
                 certificate for that key came with it",
                receipt.node.key
            )),
            Some(Err(reason)) => bad(format!(
                "the receipt of stage {stage} is signed by node {node}, whose certificate \
                 is not trusted: {reason}"
            )),
            Some(Ok((cert, _))) if cert.node() != receipt.node.name => bad(format!(
                "the receipt of stage {stage} names node {node}, but its key is certified \
                 for node {}",
                quoted(cert.node())
            )),
            Some(Ok((cert, claimed))) if *claimed != receipt.node.org => bad(format!(
                "the receipt of stage {stage} names org {}, but its key is certified by org \
                 {}",
                quoted(&receipt.node.org),
                quoted(claimed)
            )),
            Some(Ok((cert, _))) => Ok(cert.clone()),
        };
        match signer {
            Ok(signer) => {
                pending.push((index, *signer.node_key()));
                results.push(Ok(SignedReceipt {
                    index,
                    digest: digest_of(env),
                    receipt,
                    signer,
                }));
            }
            Err(bad) => results.push(Err(bad)),
        }
    }

    let batch = pending
        .iter()
        .filter_map(|&(i, key)| {
            receipts
                .get(i)
                .map(|env| (Unverified::new(env.clone()), key))
        })
        .collect();
    if dsse::verify_batch(batch).is_err() {
        for (index, key) in pending {
            let (Some(env), Some(slot)) = (receipts.get(index), results.get_mut(index)) else {
                continue;
            };
            if let Err(err) = Unverified::new(env.clone()).verify(&key)
                && let Ok(signed) = slot
            {
                let reason = format!(
                    "the signature on the receipt of stage {} does not verify with the key \
                     of node {}: {err}",
                    quoted(&signed.receipt.stage),
                    quoted(signed.signer.node())
                );
                *slot = Err(BadReceipt {
                    index,
                    stage: Some(signed.receipt.stage.clone()),
                    reason,
                });
            }
        }
    }
    results
}

/// Why `signed`, a receipt of a stage owned by `owner` in `body`, does not count: its
/// signer's org is not the org the owner is bound to, or the owner is bound to none.
pub(crate) fn wrong_signer(
    body: &Body,
    owners: &Owners<'_>,
    owner: &str,
    signed: &SignedReceipt,
) -> Option<String> {
    let stage = quoted(&signed.receipt.stage);
    not_the_owner(body, owners, owner, &signed.signer)
        .map(|reason| format!("the receipt of stage {stage} is signed by {reason}"))
}

/// Why the node of certificate `signer` does not speak for a stage owned by `owner` in
/// `body`: it is not a node of the org the owner is bound to (for a stage without an
/// owner, the node that started the run), or the owner is bound to none. The reason reads
/// after "… is signed by".
pub(crate) fn not_the_owner(
    body: &Body,
    owners: &Owners<'_>,
    owner: &str,
    signer: &VerifiedCert,
) -> Option<String> {
    let who = format!(
        "node {} of org {}",
        quoted(signer.node()),
        quoted(signer.org())
    );
    let origin = (owner == ORIGIN)
        .then(|| rules::origin_node(body))
        .flatten();
    match owners.expected(body, owner) {
        // A stage without an owner runs on the node that started the run, and on no other
        // node of its org.
        Ok(bound) if bound.key == *signer.org_key() => match origin {
            Some(node) if node != *signer.node_key() => Some(format!(
                "{who}, but the stage has no owner: only the node that started the run ({}) \
                 runs it",
                node.keyid()
            )),
            _ => None,
        },
        Ok(bound) => Some(format!(
            "{who}, but the stage's owner {} is bound to org {}",
            quoted(owner),
            quoted(&bound.name)
        )),
        Err(unbound) => Some(format!(
            "{who}, and no org's receipt counts for it: {}",
            unbound.describe(owner)
        )),
    }
}

/// Why a receipt's outcome does not let the stages after it run, if it does not: a stage
/// the plan runs must have succeeded, a stage the plan skips must say skipped.
pub(crate) fn outcome_problem(stage: &Stage, receipt: &Receipt) -> Option<String> {
    let id = quoted(&stage.id);
    let by = format!(
        "attempt {} on node {} of org {}",
        receipt.attempt,
        quoted(&receipt.node.name),
        quoted(&receipt.node.org)
    );
    match (stage.skipped, receipt.outcome) {
        (false, Outcome::Success) | (true, Outcome::Skipped) => None,
        (false, Outcome::Skipped) => Some(format!(
            "stage {id} did not run ({by} says skipped), but the plan runs it"
        )),
        (false, outcome) => Some(format!(
            "stage {id} did not succeed: {by} ended with {}",
            outcome_str(outcome)
        )),
        (true, outcome) => Some(format!(
            "stage {id} is skipped in the plan, but {by} says {}",
            outcome_str(outcome)
        )),
    }
}

/// The receipt with the highest attempt among `candidates`.
pub(crate) fn latest(candidates: &[SignedReceipt]) -> Option<&SignedReceipt> {
    candidates.iter().max_by_key(|s| s.receipt.attempt)
}

/// Why receipts of one stage contradict each other: two different receipts for the same
/// attempt.
pub(crate) fn conflict(candidates: &[SignedReceipt]) -> Option<String> {
    candidates.iter().enumerate().find_map(|(i, a)| {
        candidates
            .iter()
            .skip(i + 1)
            .find(|b| b.receipt.attempt == a.receipt.attempt && b.digest != a.digest)
            .map(|_| {
                format!(
                    "two different receipts for attempt {} of stage {}",
                    a.receipt.attempt,
                    quoted(&a.receipt.stage)
                )
            })
    })
}

/// sha256 of an envelope's canonical bytes: how receipts name each other.
pub fn digest_of(env: &Envelope) -> Digest {
    Digest(Sha256::digest(env.canonical_bytes()).into())
}

/// A peer-supplied string for a message: quoted, escaped, and cut to a sane length.
pub(crate) fn quoted(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        format!("{text:?}")
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut:?}…")
    }
}

/// The wire spelling of an outcome.
pub(crate) fn outcome_str(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
        Outcome::Skipped => "skipped",
        Outcome::Cancelled => "cancelled",
    }
}

impl SignedReceipt {
    fn summary(&self) -> ReceiptSummary {
        ReceiptSummary {
            digest: self.digest,
            attempt: self.receipt.attempt,
            outcome: self.receipt.outcome,
            node: self.signer.node().to_owned(),
            org: self.signer.org().to_owned(),
        }
    }
}

/// The certificates that came with a chain, by the node key they certify, each verified
/// at most once.
struct Certificates<'a> {
    by_key: HashMap<[u8; 32], Vec<&'a Envelope>>,
    verified: HashMap<[u8; 32], Result<(VerifiedCert, String), String>>,
}

impl<'a> Certificates<'a> {
    fn new(certificates: &[&'a Envelope]) -> Self {
        let mut by_key: HashMap<[u8; 32], Vec<&'a Envelope>> = HashMap::new();
        for &env in certificates {
            if let Ok(cert) = env.payload_as::<NodeCertificate>()
                && let Ok(key) = <[u8; 32]>::try_from(cert.node_key.as_slice())
            {
                by_key.entry(key).or_default().push(env);
            }
        }
        Self {
            by_key,
            verified: HashMap::new(),
        }
    }

    /// The verified certificate of `key` with the org name it claims, the reason none of
    /// its certificates is trusted, or `None` if no certificate names it.
    fn lookup(
        &mut self,
        key: &[u8; 32],
        trust: &TrustStore,
        now: u64,
    ) -> Option<&Result<(VerifiedCert, String), String>> {
        let candidates = self.by_key.get(key)?;
        Some(self.verified.entry(*key).or_insert_with(|| {
            let mut first_error = None;
            for env in candidates {
                match trust.verify_cert(env, now) {
                    Ok(cert) => {
                        let claimed = env
                            .payload_as::<NodeCertificate>()
                            .map(|c| c.org)
                            .unwrap_or_default();
                        return Ok((cert, claimed));
                    }
                    Err(err) => {
                        first_error.get_or_insert_with(|| err.to_string());
                    }
                }
            }
            Err(first_error.unwrap_or_default())
        }))
    }
}

fn push_at<T>(lists: &mut [Vec<T>], pos: usize, item: T) {
    if let Some(list) = lists.get_mut(pos) {
        list.push(item);
    }
}
