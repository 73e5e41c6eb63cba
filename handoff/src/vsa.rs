//! SLSA Verification Summary Attestations: what a node found when it checked a run's
//! whole receipt chain, signed by that node, for tools that take a verdict instead of
//! checking every receipt themselves.
//!
//! [`summary`] turns a checked [`Bundle`] and its [`BundleReport`] into an in-toto
//! Statement v1 whose predicate (type [`PREDICATE_TYPE`]) is a [SLSA verification
//! summary v1]; [`sign`] signs it as a DSSE envelope of payload type
//! [`attest::PAYLOAD_TYPE`] with the verifying node's key. `docs/attestations.md`
//! describes the fields.
//!
//! A summary is a claim of the node that signed it: it is worth what that node's key is
//! worth to the reader. It names its inputs (the receipts' digests) so a reader who
//! trusts less can check them too.
//!
//! [SLSA verification summary v1]: https://slsa.dev/spec/v1.0/verification_summary

use otto_protocol::{Envelope, Receipt};
use otto_trust::dsse;
use otto_trust::{SignError, Signer};
use serde::{Deserialize, Serialize};

use crate::attest::{self, DigestSet, STATEMENT_TYPE, Subject, rfc3339, sha256_set};
use crate::bundle::{Bundle, BundleReport};
use crate::chain::{StageStatus, digest_of};
use crate::outputs;

/// The predicate type of a SLSA verification summary v1.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/verification_summary/v1";

/// `verificationResult` when the whole chain verified.
pub const PASSED: &str = "PASSED";

/// `verificationResult` when it did not.
pub const FAILED: &str = "FAILED";

/// The `verifiedLevels` entry of a verified chain. SLSA reserves names starting with
/// `SLSA_`; Otto's receipt chain is its own track, not a SLSA build level.
pub const VERIFIED_LEVEL: &str = "OTTO_RECEIPT_CHAIN_VERIFIED";

/// The subject name used when no stage of the run produced an artifact: the summary is
/// then about the plan.
pub const PLAN_SUBJECT: &str = "otto-plan";

/// An in-toto Statement v1 with a verification summary predicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryStatement {
    /// `_type`: always [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// `subject`: the artifacts the verified stages produced that the plan archives in
    /// those stages, or the plan.
    pub subject: Vec<Subject>,
    /// `predicateType`: always [`PREDICATE_TYPE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// `predicate`: the verdict.
    pub predicate: Summary,
}

/// A SLSA verification summary v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// `verifier`: the node that checked and signed.
    pub verifier: Verifier,
    /// `timeVerified`: when, RFC 3339 in UTC.
    pub time_verified: String,
    /// `resourceUri`: the run's source.
    pub resource_uri: String,
    /// `policy`: the plan, with the owner bindings and approvals that applied.
    pub policy: Policy,
    /// `inputAttestations`: the receipts the verdict rests on.
    pub input_attestations: Vec<Resource>,
    /// `verificationResult`: [`PASSED`] or [`FAILED`].
    pub verification_result: String,
    /// `verifiedLevels`: `[VERIFIED_LEVEL]` or `["FAILED"]`.
    pub verified_levels: Vec<String>,
    /// `slsaVersion`: `1.0`.
    pub slsa_version: String,
}

/// The `verifier` of a summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verifier {
    /// `otto:node/<org>/<node>`.
    pub id: String,
    /// `{"otto": "<version>"}`.
    pub version: std::collections::BTreeMap<String, String>,
}

/// An in-toto resource descriptor with a URI and digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// What it is.
    pub uri: String,
    /// Its digests.
    pub digest: DigestSet,
}

/// The `policy` of a summary: the plan the chain was checked against, and what of it
/// applied, in `annotations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// `otto:plan/sha256:<hex>`.
    pub uri: String,
    /// The plan's digest.
    pub digest: DigestSet,
    /// The owner bindings and approvals.
    pub annotations: PolicyDetails,
}

/// What of the plan applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDetails {
    /// One per stage of the plan, in plan order: who owns it and who signed for it.
    pub owners: Vec<OwnerBinding>,
    /// The input gates people approved, as the verifying node recorded them.
    pub approvals: Vec<Approval>,
    /// Why a chain that verified is still [`FAILED`]: each output a verified receipt
    /// lists that the plan does not archive in that stage. Absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// A stage's owner binding and the verdict on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerBinding {
    /// The stage id.
    pub stage: String,
    /// The owner the plan names for the stage (`None`: the node that started the run).
    pub owner: Option<String>,
    /// The verdict: `verified`, `skipped`, `failed`, `missing` or `invalid`.
    pub status: StageStatus,
    /// The node that signed the receipt the verdict rests on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// That node's org, by the name the verifying node pinned it under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
}

/// An approval of an input gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The stage.
    pub stage: String,
    /// `enter` or `exit`.
    pub phase: String,
    /// Who approved.
    #[serde(rename = "approvedBy")]
    pub approved_by: String,
    /// When, RFC 3339 in UTC.
    pub at: String,
}

/// What the verifying node knows that the bundle does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The verifying node's name.
    pub node: String,
    /// Its org's name.
    pub org: String,
    /// The run's source as a URI: the commit for a git source, the snapshot's digest
    /// otherwise.
    pub resource_uri: String,
    /// The approvals of the run's input gates: `(stage, phase, approved_by, at)`, `at`
    /// in milliseconds since the Unix epoch, as the node's gate records keep it.
    pub approvals: Vec<(String, String, String, u64)>,
    /// When the chain was checked, seconds since the Unix epoch.
    pub now: u64,
}

/// The summary of checking `bundle`, whose report is `report`.
pub fn summary(bundle: &Bundle, report: &BundleReport, context: &Context) -> SummaryStatement {
    let plan_hex = bundle
        .plan
        .digest()
        .strip_prefix("sha256:")
        .unwrap_or_default()
        .to_owned();
    let mut subject: Vec<Subject> = Vec::new();
    let mut inputs = Vec::new();
    let mut owners = Vec::new();
    let mut problems = Vec::new();
    for stage in &report.chain.stages {
        let owner = bundle
            .plan
            .body
            .stages
            .iter()
            .find(|s| s.id == stage.stage)
            .and_then(|s| s.owner.clone());
        owners.push(OwnerBinding {
            stage: stage.stage.clone(),
            owner,
            status: stage.status,
            node: stage.receipt.as_ref().map(|r| r.node.clone()),
            org: stage.receipt.as_ref().map(|r| r.org.clone()),
        });
        let Some(summary) = &stage.receipt else {
            continue;
        };
        inputs.push(Resource {
            uri: format!(
                "otto:receipt/{}/{}/{}",
                uri_segment(&report.run),
                uri_segment(&stage.stage),
                summary.attempt
            ),
            digest: sha256_set(&summary.digest.to_hex()),
        });
        if stage.status != StageStatus::Verified {
            continue;
        }
        let receipt = bundle
            .receipts
            .iter()
            .find(|env| digest_of(env) == summary.digest)
            .and_then(|env| env.payload_as::<Receipt>().ok());
        let (Some(receipt), Some(planned)) = (receipt, bundle.plan.stage(&stage.stage)) else {
            continue;
        };
        let (declared, undeclared) = outputs::split(planned, &receipt.outputs);
        for name in undeclared {
            problems.push(format!(
                "stage '{}' output '{name}' is not an artifact the plan archives in that stage",
                stage.stage
            ));
        }
        for artifact in declared {
            let item = Subject {
                name: artifact.name.clone(),
                digest: sha256_set(&artifact.sha256.to_hex()),
            };
            if !subject.contains(&item) {
                subject.push(item);
            }
        }
    }
    if subject.is_empty() {
        subject.push(Subject {
            name: PLAN_SUBJECT.to_owned(),
            digest: sha256_set(&plan_hex),
        });
    }
    let passed = report.verified && problems.is_empty();
    SummaryStatement {
        statement_type: STATEMENT_TYPE.to_owned(),
        subject,
        predicate_type: PREDICATE_TYPE.to_owned(),
        predicate: Summary {
            verifier: Verifier {
                id: format!("otto:node/{}/{}", context.org, context.node),
                version: [("otto".to_owned(), env!("CARGO_PKG_VERSION").to_owned())].into(),
            },
            time_verified: rfc3339(context.now),
            resource_uri: context.resource_uri.clone(),
            policy: Policy {
                uri: format!("otto:plan/sha256:{plan_hex}"),
                digest: sha256_set(&plan_hex),
                annotations: PolicyDetails {
                    owners,
                    approvals: context
                        .approvals
                        .iter()
                        .map(|(stage, phase, by, at)| Approval {
                            stage: stage.clone(),
                            phase: phase.clone(),
                            approved_by: by.clone(),
                            at: rfc3339(*at / 1000),
                        })
                        .collect(),
                    problems,
                },
            },
            input_attestations: inputs,
            verification_result: if passed { PASSED } else { FAILED }.to_owned(),
            verified_levels: vec![if passed { VERIFIED_LEVEL } else { FAILED }.to_owned()],
            slsa_version: "1.0".to_owned(),
        },
    }
}

/// `text` with every byte but ASCII letters, digits and `-._~` percent-encoded, for one
/// segment of a URI.
fn uri_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Signs `statement` as a DSSE envelope (payload type `application/vnd.in-toto+json`,
/// the statement's compact JSON as payload) with the verifying node's key.
pub fn sign<S: Signer + ?Sized>(
    statement: &SummaryStatement,
    signer: &S,
) -> Result<Envelope, SignError> {
    // SAFETY: a statement is strings, lists and string-keyed maps, which always serialize.
    #[allow(clippy::expect_used)]
    let payload = serde_json::to_vec(statement).expect("a statement always serializes");
    dsse::sign(attest::PAYLOAD_TYPE, payload, signer)
}

#[cfg(test)]
mod tests {
    use super::uri_segment;

    #[test]
    fn a_uri_segment_has_no_space_or_slash() {
        assert_eq!(uri_segment("Deploy staging/eu"), "Deploy%20staging%2Feu");
        assert_eq!(uri_segment("01J9Z-a_b.c~"), "01J9Z-a_b.c~");
        assert_eq!(uri_segment("é"), "%C3%A9");
    }
}
