//! Receipts as in-toto attestations, for supply-chain tools that know nothing of Otto.
//!
//! [`export`] turns a node's signed receipt into an [in-toto Statement v1] whose subjects
//! are the stage's output artifacts and whose predicate (type [`PREDICATE_TYPE`]) carries
//! the receipt's facts, and signs it as a DSSE envelope of payload type [`PAYLOAD_TYPE`]
//! with the node key that signed the receipt. The payload is the statement's JSON bytes;
//! the DSSE signature covers them as they are, so nothing is canonicalised.
//! [`Envelope::to_json`] gives the standard DSSE JSON form that tools such as
//! `securesystemslib` verify. `docs/attestations.md` describes the format field by field.
//!
//! [in-toto Statement v1]: https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md

use std::collections::BTreeMap;

use otto_protocol::{Digest, Envelope, Outcome, Receipt};
use otto_trust::dsse::{self, Unverified, VerifyError};
use otto_trust::{PublicKey, SignError, Signer, Verified};
use serde::{Deserialize, Serialize};

use crate::chain::digest_of;

/// The statement type of in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";

/// The predicate type of an Otto receipt. It is a name, not a URL anything is fetched from.
pub const PREDICATE_TYPE: &str = "https://otto.dev/attestation/receipt/v1";

/// The DSSE payload type of in-toto statements.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// The subject name used when a stage produced no artifact: the attestation is then about
/// the receipt itself.
pub const RECEIPT_SUBJECT: &str = "otto-receipt";

/// An in-toto Statement v1 about one stage attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// `_type`: always [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// `subject`: the stage's output artifacts, or the receipt when there are none.
    pub subject: Vec<Subject>,
    /// `predicateType`: always [`PREDICATE_TYPE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// `predicate`: the receipt's facts.
    pub predicate: ReceiptPredicate,
}

/// One subject of a statement: an in-toto resource descriptor with a name and digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// `name`: the artifact's name in the plan, or [`RECEIPT_SUBJECT`].
    pub name: String,
    /// `digest`: `{"sha256": "<64 hex>"}`.
    pub digest: DigestSet,
}

/// An in-toto digest set: algorithm name to lowercase hex, here always `sha256`.
pub type DigestSet = BTreeMap<String, String>;

/// The predicate of an Otto receipt attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptPredicate {
    /// `run`: the run id.
    pub run: String,
    /// `stage`: the stage id in the plan.
    pub stage: String,
    /// `attempt`: the attempt number, 1 for the first.
    pub attempt: u32,
    /// `planDigest`: the digest of the plan the stage ran under.
    pub plan_digest: DigestSet,
    /// `owner`: the node that ran the stage and signed the receipt.
    pub owner: Owner,
    /// `outcome`: `success`, `failure`, `skipped` or `cancelled`.
    pub outcome: Outcome,
    /// `startedAt`: when the attempt started, RFC 3339 in UTC.
    pub started_at: String,
    /// `finishedAt`: when the attempt ended, RFC 3339 in UTC.
    pub finished_at: String,
    /// `logDigest`: the digest of the stage's complete log.
    pub log_digest: DigestSet,
    /// `receipt`: the digest of the signed Otto receipt (its envelope's canonical bytes).
    pub receipt: DigestSet,
    /// `upstream`: the digests of the receipts the stage ran on, in chain order.
    pub upstream: Vec<DigestSet>,
}

/// The node that ran a stage, in a predicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// `node`: the node's name within its org.
    pub node: String,
    /// `org`: the org's name, as the node's certificate gives it.
    pub org: String,
    /// `key`: the node key's id, `ed25519:<64 hex>`; the attestation is signed by it.
    pub key: String,
}

/// Why an attestation could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The receipt envelope does not hold a receipt.
    #[error("not a receipt: {0}")]
    NotAReceipt(String),
    /// The signer is not the node that ran the stage and signed the receipt.
    #[error("the receipt was signed by {receipt_key}, not by the attesting key {signer}")]
    NotOwnReceipt {
        /// The key id in the receipt.
        receipt_key: String,
        /// The key id of the would-be signer.
        signer: String,
    },
    /// The receipt's plan digest is not `sha256:` and 64 lowercase hex digits.
    #[error("the receipt's plan digest {0:?} is not sha256:<64 hex>")]
    PlanDigest(String),
    /// The node key's signer failed.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The attestation's signature does not verify with the key given.
    #[error("the attestation's signature does not verify: {0}")]
    Signature(#[from] VerifyError),
    /// The envelope's payload type is not [`PAYLOAD_TYPE`].
    #[error("payload type {0:?} is not {PAYLOAD_TYPE}")]
    PayloadType(String),
    /// The payload is not an in-toto Statement v1 with an Otto receipt predicate.
    #[error("not an otto receipt statement: {0}")]
    Statement(String),
}

/// The statement for `receipt`, whose signed envelope has canonical-bytes digest
/// `receipt_digest`.
pub fn statement(receipt: &Receipt, receipt_digest: &Digest) -> Result<Statement, AttestError> {
    let plan_digest = receipt
        .plan_digest
        .strip_prefix("sha256:")
        .filter(|hex| {
            hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
        .ok_or_else(|| AttestError::PlanDigest(receipt.plan_digest.chars().take(80).collect()))?;
    let subject = if receipt.outputs.is_empty() {
        vec![Subject {
            name: RECEIPT_SUBJECT.to_owned(),
            digest: sha256_set(&receipt_digest.to_hex()),
        }]
    } else {
        receipt
            .outputs
            .iter()
            .map(|artifact| Subject {
                name: artifact.name.clone(),
                digest: sha256_set(&artifact.sha256.to_hex()),
            })
            .collect()
    };
    Ok(Statement {
        statement_type: STATEMENT_TYPE.to_owned(),
        subject,
        predicate_type: PREDICATE_TYPE.to_owned(),
        predicate: ReceiptPredicate {
            run: receipt.run.clone(),
            stage: receipt.stage.clone(),
            attempt: receipt.attempt,
            plan_digest: sha256_set(plan_digest),
            owner: Owner {
                node: receipt.node.name.clone(),
                org: receipt.node.org.clone(),
                key: otto_protocol::ed25519_keyid(receipt.node.key.as_bytes()),
            },
            outcome: receipt.outcome,
            started_at: rfc3339(receipt.started_at),
            finished_at: rfc3339(receipt.finished_at),
            log_digest: sha256_set(&receipt.log_digest.to_hex()),
            receipt: sha256_set(&receipt_digest.to_hex()),
            upstream: receipt
                .upstream
                .iter()
                .map(|d| sha256_set(&d.to_hex()))
                .collect(),
        },
    })
}

/// Exports a receipt as a signed attestation. `signer` must hold the node key that signed
/// the receipt (and that the receipt names): a node attests its own receipts.
pub fn export<S: Signer + ?Sized>(
    receipt: &Verified<Envelope>,
    signer: &S,
) -> Result<Envelope, AttestError> {
    let decoded: Receipt = receipt
        .get()
        .payload_as()
        .map_err(|err| AttestError::NotAReceipt(err.to_string()))?;
    let key = signer.public_key();
    if decoded.node.key.as_bytes() != key.as_bytes() || receipt.signer() != &key {
        return Err(AttestError::NotOwnReceipt {
            receipt_key: otto_protocol::ed25519_keyid(decoded.node.key.as_bytes()),
            signer: key.keyid(),
        });
    }
    let statement = statement(&decoded, &digest_of(receipt.get()))?;
    // SAFETY: a statement is strings, integers, lists and string-keyed maps, which always
    // serialize to JSON.
    #[allow(clippy::expect_used)]
    let payload = serde_json::to_vec(&statement).expect("a statement always serializes");
    Ok(dsse::sign(PAYLOAD_TYPE, payload, signer)?)
}

/// Verifies an attestation with the node key `key` (obtained from a trusted source, never
/// from the envelope) and reads its statement.
pub fn verify(envelope: Unverified<Envelope>, key: &PublicKey) -> Result<Statement, AttestError> {
    let verified = envelope.verify(key)?;
    if verified.payload_type() != PAYLOAD_TYPE {
        return Err(AttestError::PayloadType(
            verified.payload_type().chars().take(80).collect(),
        ));
    }
    let statement: Statement = serde_json::from_slice(verified.payload())
        .map_err(|err| AttestError::Statement(err.to_string()))?;
    if statement.statement_type != STATEMENT_TYPE {
        return Err(AttestError::Statement(format!(
            "_type is {:?}",
            statement
                .statement_type
                .chars()
                .take(80)
                .collect::<String>()
        )));
    }
    if statement.predicate_type != PREDICATE_TYPE {
        return Err(AttestError::Statement(format!(
            "predicateType is {:?}",
            statement
                .predicate_type
                .chars()
                .take(80)
                .collect::<String>()
        )));
    }
    Ok(statement)
}

pub(crate) fn sha256_set(hex: &str) -> DigestSet {
    BTreeMap::from([("sha256".to_owned(), hex.to_owned())])
}

/// Seconds since the Unix epoch as RFC 3339 in UTC, e.g. `2025-01-01T00:00:10Z`.
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01: shift the epoch to 0000-03-01 so
/// leap days fall at the end of a year, split into 400-year eras of 146,097 days, then
/// into years of the era and days of the year, and count months from March.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_735_689_610), "2025-01-01T00:00:10Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
    }
}
