//! Delivery bundles: everything needed to check a run's receipt chain offline, in one
//! JSON document.
//!
//! A [`Bundle`] holds a run's plan, the signed receipts of its stage attempts, the node
//! certificates of the nodes that signed them, and in-toto attestations of receipts
//! (see [`attest`](crate::attest)). A node writes one for `otto attest export`; anyone
//! checks it with `otto verify --bundle`, which calls [`verify_bundle`] with a trust store
//! made of the org keys they trust and the owner names they know.
//!
//! **A bundle carries no trust.** Its certificates are only candidates: a receipt counts
//! when its signer's certificate chains to an org pinned in the trust store the *caller*
//! passes. A bundle made by anyone, with any keys, proves nothing until then.
//!
//! # Wire format
//!
//! ```json
//! {
//!   "format": "otto.bundle/v1",
//!   "run": "01J9ZQ3M5V8R2K4T6W8Y0A2C4E",
//!   "plan": { "config": {}, "environments": {}, "…": "the plan body" },
//!   "plan_digest": "sha256:<64 hex>",
//!   "receipts": [ <DSSE JSON envelope of a receipt>, … ],
//!   "certificates": [ <DSSE JSON envelope of a node certificate>, … ],
//!   "attestations": [ <DSSE JSON envelope of an in-toto statement>, … ],
//!   "verification_summary": <DSSE JSON envelope of a SLSA verification summary>
//! }
//! ```
//!
//! - `plan` is the plan's body as its canonical JSON object (`docs/plan-format.md`);
//!   `plan_digest` is its digest, which [`Bundle::from_json`] checks.
//! - Envelopes are in the standard DSSE JSON form ([`Envelope::to_json`]); receipts and
//!   certificates keep their CBOR payloads, base64 encoded.
//! - `attestations` holds one attestation per receipt that the exporting node signed
//!   itself (a node attests only its own receipts), signed by the same node key.
//! - `verification_summary` (optional) is the exporting node's verdict on the chain as a
//!   SLSA verification summary ([`vsa`](crate::vsa)), signed by its node key.
//! - Readers ignore fields they do not know; an incompatible change gets a new `format`.
#![warn(clippy::unwrap_used)]

use std::collections::HashMap;

use otto_pipeline::Plan;
use otto_pipeline::plan::{Body, Provenance};
use otto_protocol::{Digest, Envelope, NodeCertificate};
use otto_trust::{PublicKey, Unverified};
use serde::{Deserialize, Serialize};

use crate::attest::{self, PAYLOAD_TYPE, Statement};
use crate::chain::{ChainReport, SignedReceipt, authenticate, digest_of, quoted, verify_chain};
use crate::owners::Owners;

/// The `format` of a bundle this crate writes and reads.
pub const FORMAT: &str = "otto.bundle/v1";

/// The largest bundle [`Bundle::from_json`] reads: 64 MiB.
pub const MAX_BUNDLE_BYTES: usize = 64 * 1024 * 1024;

/// The most envelopes in each list of a bundle (receipts, certificates, attestations).
pub const MAX_BUNDLE_ENVELOPES: usize = 4096;

/// A run's plan with its receipts, the certificates of their signers and attestations of
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The run id, as the receipts name it.
    pub run: String,
    /// The plan the run ran. Only its body travels; a bundle read back has an empty
    /// provenance.
    pub plan: Plan,
    /// The signed receipts of the run's stage attempts, in any order.
    pub receipts: Vec<Envelope>,
    /// Node certificates of the receipts' signers (candidates; trust comes from the
    /// caller).
    pub certificates: Vec<Envelope>,
    /// In-toto attestations of receipts, each signed by the node that signed its receipt.
    pub attestations: Vec<Envelope>,
    /// The exporting node's SLSA verification summary of the chain
    /// ([`vsa`](crate::vsa)), signed by that node; a claim, not checked by
    /// [`verify_bundle`].
    pub verification_summary: Option<Envelope>,
}

/// Why a text is not a bundle this crate reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The text is longer than [`MAX_BUNDLE_BYTES`].
    #[error("the bundle is {len} bytes, more than the limit of {MAX_BUNDLE_BYTES}")]
    TooLarge {
        /// The text's length in bytes.
        len: usize,
    },
    /// The text is not a JSON object with a `format` field.
    #[error("not an otto bundle: {0}")]
    NotABundle(String),
    /// The `format` is not [`FORMAT`].
    #[error("unsupported bundle format {0} (this otto reads {FORMAT})")]
    Format(String),
    /// The document has the right format but a field is missing or malformed.
    #[error("malformed bundle: {0}")]
    Malformed(String),
    /// A list holds more than [`MAX_BUNDLE_ENVELOPES`] envelopes.
    #[error("the bundle has {count} {what}, more than the limit of {MAX_BUNDLE_ENVELOPES}")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// How many it holds.
        count: usize,
    },
    /// `plan_digest` is not the digest of `plan`.
    #[error("the bundle's plan_digest {claimed} is not the digest of its plan ({actual})")]
    PlanDigest {
        /// The digest the bundle states (quoted, shortened).
        claimed: String,
        /// The digest of the plan it holds.
        actual: String,
    },
}

/// The result of checking a bundle: the receipt chain stage by stage, and each
/// attestation.
///
/// In JSON the chain report's `stages` and `stray` appear at the top level, next to
/// `run`, `plan_digest`, `verified` and `attestations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleReport {
    /// The run id the bundle names.
    pub run: String,
    /// The digest of the bundle's plan.
    pub plan_digest: String,
    /// Whether the whole delivery is proven: the chain verifies
    /// ([`ChainReport::is_verified`]) and so does every attestation.
    pub verified: bool,
    /// The receipt chain against the plan.
    #[serde(flatten)]
    pub chain: ChainReport,
    /// Every attestation, in bundle order.
    pub attestations: Vec<AttestationReport>,
}

/// What checking one attestation found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationReport {
    /// Its position in the bundle's attestations.
    pub index: usize,
    /// The stage of the receipt it is about, when that receipt verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// The attempt of that receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The digest of the receipt it claims to be about, if it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Digest>,
    /// Whether it is signed by the node that signed that receipt and states exactly
    /// that receipt's facts.
    pub verified: bool,
    /// Why not, when it is not verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Bundle {
    /// The bundle as pretty-printed JSON (see the module docs for the format).
    pub fn to_json(&self) -> String {
        let wire = WireOut {
            format: FORMAT,
            run: &self.run,
            plan: &self.plan.body,
            plan_digest: self.plan.digest(),
            receipts: &self.receipts,
            certificates: &self.certificates,
            attestations: &self.attestations,
            verification_summary: self.verification_summary.as_ref(),
        };
        // SAFETY: the plan body and envelopes serialize with string keys only, which JSON
        // always represents; the fallback is never taken.
        serde_json::to_string_pretty(&wire).unwrap_or_default()
    }

    /// Reads a bundle written by [`Bundle::to_json`], at most [`MAX_BUNDLE_BYTES`] long.
    /// Checks the format, the list sizes and that `plan_digest` is the plan's digest;
    /// nothing is verified (see [`verify_bundle`]).
    pub fn from_json(text: &str) -> Result<Self, BundleError> {
        if text.len() > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge { len: text.len() });
        }
        let header: Header = serde_json::from_str(text)
            .map_err(|err| BundleError::NotABundle(short(&err.to_string())))?;
        match header.format {
            None => {
                return Err(BundleError::NotABundle(
                    "the JSON object has no \"format\" field".to_owned(),
                ));
            }
            Some(format) if format != FORMAT => return Err(BundleError::Format(quoted(&format))),
            Some(_) => {}
        }
        let wire: WireIn = serde_json::from_str(text)
            .map_err(|err| BundleError::Malformed(short(&err.to_string())))?;
        for (what, count) in [
            ("receipts", wire.receipts.len()),
            ("certificates", wire.certificates.len()),
            ("attestations", wire.attestations.len()),
        ] {
            if count > MAX_BUNDLE_ENVELOPES {
                return Err(BundleError::TooMany { what, count });
            }
        }
        let plan = Plan {
            body: wire.plan,
            provenance: Provenance::default(),
        };
        let actual = plan.digest();
        if wire.plan_digest != actual {
            return Err(BundleError::PlanDigest {
                claimed: quoted(&wire.plan_digest),
                actual,
            });
        }
        Ok(Self {
            run: wire.run,
            plan,
            receipts: wire.receipts,
            certificates: wire.certificates,
            attestations: wire.attestations,
            verification_summary: wire.verification_summary,
        })
    }
}

/// A key that signed something in a bundle, with what the bundle's certificates claim
/// about it. Nothing here is verified: the certificates are the bundle's, not the
/// reader's, so a reader decides for themselves which of these keys to trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerKey {
    /// The key.
    pub key: PublicKey,
    /// `node` when a certificate in the bundle certifies it as a node key, `org` when
    /// one is signed by it, `unknown` otherwise.
    pub kind: &'static str,
    /// The node's name, for a node key, as its certificate claims.
    pub node: Option<String>,
    /// The org's name, as the certificates claim.
    pub org: Option<String>,
    /// What it signed: `receipt`, `attestation`, `certificate`, `verification_summary`.
    pub roles: Vec<&'static str>,
}

impl Bundle {
    /// Every key that signed an envelope of the bundle, in order of first appearance:
    /// the receipts' and attestations' node keys, the certificates' org keys and the key
    /// of the verification summary. A signature whose key id is not a valid key is
    /// left out.
    pub fn signer_keys(&self) -> Vec<SignerKey> {
        let certs: Vec<NodeCertificate> = self
            .certificates
            .iter()
            .filter_map(|c| c.payload_as::<NodeCertificate>().ok())
            .collect();
        let lists: [(&'static str, &[Envelope]); 4] = [
            ("receipt", &self.receipts),
            ("attestation", &self.attestations),
            ("certificate", &self.certificates),
            ("verification_summary", self.verification_summary.as_slice()),
        ];
        let mut out: Vec<SignerKey> = Vec::new();
        for (role, envelopes) in lists {
            for signature in envelopes.iter().flat_map(|e| &e.signatures) {
                let Ok(key) = PublicKey::from_keyid(&signature.keyid) else {
                    continue;
                };
                if let Some(known) = out.iter_mut().find(|k| k.key == key) {
                    if !known.roles.contains(&role) {
                        known.roles.push(role);
                    }
                    continue;
                }
                let bytes = key.as_bytes().as_slice();
                let (kind, node, org) = if let Some(c) = certs.iter().find(|c| c.node_key == bytes)
                {
                    ("node", Some(c.node.clone()), Some(c.org.clone()))
                } else if let Some(c) = certs.iter().find(|c| c.org_key == bytes) {
                    ("org", None, Some(c.org.clone()))
                } else {
                    ("unknown", None, None)
                };
                out.push(SignerKey {
                    key,
                    kind,
                    node,
                    org,
                    roles: vec![role],
                });
            }
        }
        out
    }
}

/// Checks a bundle against `trust` at time `now`: its receipts with
/// [`verify_chain`](crate::verify_chain) against its plan and certificates, and each
/// attestation with [`attest::verify`], with the key of the node that signed the receipt
/// it names. An attestation counts only if that receipt verifies, the attestation is
/// signed by the same node key, and its statement is exactly the statement of that
/// receipt ([`attest::statement`]).
///
/// Trust comes only from `owners`: the bundle's certificates count only when they chain
/// to an org pinned in its trust store, valid at `now` and not revoked, and a receipt
/// counts only when its signer's org is the org its stage's owner is bound to.
pub fn verify_bundle(bundle: &Bundle, owners: &Owners<'_>, now: u64) -> BundleReport {
    let trust = owners.trust_for(&bundle.plan.body, now);
    let trust = &*trust;
    let chain = verify_chain(
        &bundle.run,
        &bundle.plan,
        &bundle.receipts,
        &bundle.certificates,
        owners,
        now,
    );
    let attestations = if bundle.attestations.is_empty() {
        Vec::new()
    } else {
        let certificates: Vec<&Envelope> = bundle.certificates.iter().collect();
        let mut receipts = Receipts::default();
        for (result, env) in authenticate(&bundle.receipts, &certificates, trust, now)
            .into_iter()
            .zip(&bundle.receipts)
        {
            match result {
                Ok(signed) => {
                    receipts.signed.insert(signed.digest, signed);
                }
                Err(bad) => {
                    receipts.bad.insert(digest_of(env), bad.stage);
                }
            }
        }
        bundle
            .attestations
            .iter()
            .enumerate()
            .map(|(index, env)| check_attestation(index, env, &receipts))
            .collect()
    };
    let verified = chain.is_verified() && attestations.iter().all(|a| a.verified);
    BundleReport {
        run: bundle.run.clone(),
        plan_digest: bundle.plan.digest(),
        verified,
        chain,
        attestations,
    }
}

impl BundleReport {
    /// The attestations that did not verify.
    pub fn failed_attestations(&self) -> impl Iterator<Item = &AttestationReport> {
        self.attestations.iter().filter(|a| !a.verified)
    }
}

/// The bundle's receipts by digest: those that verified, and the stage the others claim.
#[derive(Default)]
struct Receipts {
    signed: HashMap<Digest, SignedReceipt>,
    bad: HashMap<Digest, Option<String>>,
}

/// The part of an unverified statement that says which receipt it is about: read only to
/// pick the key to verify with.
#[derive(Deserialize)]
struct Claim {
    predicate: ClaimPredicate,
}

#[derive(Deserialize)]
struct ClaimPredicate {
    receipt: ClaimDigest,
}

#[derive(Deserialize)]
struct ClaimDigest {
    sha256: String,
}

fn check_attestation(index: usize, env: &Envelope, receipts: &Receipts) -> AttestationReport {
    let failed = |receipt, reason: String| AttestationReport {
        index,
        stage: None,
        attempt: None,
        receipt,
        verified: false,
        reason: Some(reason),
    };
    if env.payload_type != PAYLOAD_TYPE {
        return failed(
            None,
            format!(
                "attestation {index} has payload type {}, not {PAYLOAD_TYPE}",
                quoted(&env.payload_type)
            ),
        );
    }
    let digest = match serde_json::from_slice::<Claim>(&env.payload) {
        Ok(claim) => claim.predicate.receipt.sha256.parse::<Digest>().ok(),
        Err(_) => None,
    };
    let Some(digest) = digest else {
        return failed(
            None,
            format!("attestation {index} does not name an otto receipt (predicate.receipt)"),
        );
    };
    let Some(signed) = receipts.signed.get(&digest) else {
        let reason = match receipts.bad.get(&digest) {
            Some(Some(stage)) => format!(
                "attestation {index} is about the receipt of stage {} ({digest}), which does \
                 not verify",
                quoted(stage)
            ),
            Some(None) => {
                format!("attestation {index} is about receipt {digest}, which does not verify")
            }
            None => {
                format!("attestation {index} is about receipt {digest}, which is not in the bundle")
            }
        };
        return failed(Some(digest), reason);
    };
    let receipt = &signed.receipt;
    let about = format!(
        "attestation {index} (stage {} attempt {})",
        quoted(&receipt.stage),
        receipt.attempt
    );
    let problem = match attest::verify(Unverified::new(env.clone()), signed.signer.node_key()) {
        Err(err) => Some(format!(
            "{about} is not signed by node {}, which signed the receipt: {err}",
            quoted(signed.signer.node())
        )),
        Ok(statement) => match attest::statement(receipt, &digest) {
            Err(err) => Some(format!("{about}: the receipt cannot be attested: {err}")),
            Ok(expected) => differs(&expected, &statement).map(|field| {
                format!("{about} states a different {field} than the receipt it names")
            }),
        },
    };
    AttestationReport {
        index,
        stage: Some(receipt.stage.clone()),
        attempt: Some(receipt.attempt),
        receipt: Some(digest),
        verified: problem.is_none(),
        reason: problem,
    }
}

/// The first field in which `got` differs from the statement `expected` of a receipt.
fn differs(expected: &Statement, got: &Statement) -> Option<&'static str> {
    let (e, g) = (&expected.predicate, &got.predicate);
    [
        ("subject", expected.subject == got.subject),
        ("run", e.run == g.run),
        ("stage", e.stage == g.stage),
        ("attempt", e.attempt == g.attempt),
        ("planDigest", e.plan_digest == g.plan_digest),
        ("owner", e.owner == g.owner),
        ("outcome", e.outcome == g.outcome),
        ("startedAt", e.started_at == g.started_at),
        ("finishedAt", e.finished_at == g.finished_at),
        ("logDigest", e.log_digest == g.log_digest),
        ("receipt", e.receipt == g.receipt),
        ("upstream", e.upstream == g.upstream),
    ]
    .into_iter()
    .find(|(_, same)| !same)
    .map(|(field, _)| field)
    .or_else(|| (expected != got).then_some("statement"))
}

/// A serde message, cut to a sane length (it may quote hostile input).
fn short(text: &str) -> String {
    const MAX: usize = 200;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

#[derive(Serialize)]
struct WireOut<'a> {
    format: &'static str,
    run: &'a str,
    plan: &'a Body,
    plan_digest: String,
    receipts: &'a [Envelope],
    certificates: &'a [Envelope],
    attestations: &'a [Envelope],
    #[serde(skip_serializing_if = "Option::is_none")]
    verification_summary: Option<&'a Envelope>,
}

#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    format: Option<String>,
}

#[derive(Deserialize)]
struct WireIn {
    run: String,
    plan: Body,
    plan_digest: String,
    #[serde(default)]
    receipts: Vec<Envelope>,
    #[serde(default)]
    certificates: Vec<Envelope>,
    #[serde(default)]
    attestations: Vec<Envelope>,
    #[serde(default)]
    verification_summary: Option<Envelope>,
}
