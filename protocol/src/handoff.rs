//! The handoff exchange: an [`Offer`] of a stage to its owner, answered by an [`Accept`] or
//! a [`Reject`] with a machine-readable [`RejectCode`].

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::bytes::{Digest, HandoffId, bounded_map, bounded_vec, hex_bytes};
use crate::envelope::Envelope;
use crate::limits::{MAX_ARTIFACTS, MAX_RECEIPTS, MAX_VARS};

/// A signed request to the owner of a stage to run it as part of a run.
///
/// Sent by the node that finished the stage's upstream work; travels as the payload of an
/// [`Envelope`] signed by the sender's node key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// `id`: 16 random bytes naming this handoff; the receiver refuses an id it has seen.
    pub id: HandoffId,
    /// `run`: the run id, the same on every node the run touches.
    pub run: String,
    /// `source`: where the run's code came from.
    pub source: RunSource,
    /// `plan`: the canonical plan JSON bytes (the plan digest covers exactly these bytes).
    #[serde(with = "hex_bytes")]
    pub plan: Vec<u8>,
    /// `plan_digest`: `"sha256:"` plus the lowercase hex sha256 of `plan`.
    pub plan_digest: String,
    /// `stage`: the id of the offered stage in the plan.
    pub stage: String,
    /// `attempt`: the attempt number, 1 for the first.
    pub attempt: u32,
    /// `facts`: the run's facts, as the plan was made with.
    pub facts: Facts,
    /// `inputs`: the artifacts the stage needs and where to fetch them.
    #[serde(deserialize_with = "bounded_vec::<_, _, MAX_ARTIFACTS>")]
    pub inputs: Vec<InputArtifact>,
    /// `receipts`: the signed receipts of the stages before this one in the plan, back to
    /// the run's start (envelopes whose payload is a [`Receipt`](crate::Receipt)).
    #[serde(deserialize_with = "bounded_vec::<_, _, MAX_RECEIPTS>")]
    pub receipts: Vec<Envelope>,
    /// `sender`: the sender's node certificate (an envelope whose payload is a
    /// [`NodeCertificate`](crate::NodeCertificate), signed by the sender's org key).
    pub sender: Envelope,
    /// `expires_at`: the offer is void from this time on, in seconds since the Unix epoch.
    pub expires_at: u64,
    /// `created_at`: when the sender made the offer, in seconds since the Unix epoch.
    pub created_at: u64,
    /// `certificates`: node certificates of the nodes that signed the `receipts` (other
    /// than the sender, whose certificate is `sender`), so the receiver can check each
    /// receipt signer's key against its pinned orgs. Omitted when empty; an older sender
    /// never writes it.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "bounded_vec::<_, _, MAX_RECEIPTS>"
    )]
    pub certificates: Vec<Envelope>,
    /// `retry`: for an attempt above 1, the run's origin's signed decision to run the stage
    /// again (an envelope whose payload is a [`Retry`] for exactly this run, plan, stage
    /// and attempt, signed by the origin's node key). The sender is the node that moves the
    /// stage on, which need not be the origin. Omitted on a first attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Envelope>,
}

/// The run's origin's signed decision to run a stage that failed (or was refused) again,
/// as attempt `attempt` of the same run.
///
/// The node that started the run (its *origin*) signs it with its node key and sends it
/// to the node that moves the stage on under the plan's rules; that node offers the stage
/// again carrying this envelope in [`Offer::retry`] (or runs it itself when it owns the
/// stage). The answer to it is an [`Accept`] or a [`Reject`] with the same `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    /// `id`: 16 random bytes naming this request; the answer names it.
    pub id: HandoffId,
    /// `run`: the run id.
    pub run: String,
    /// `plan_digest`: the digest of the run's plan.
    pub plan_digest: String,
    /// `stage`: the stage to run again.
    pub stage: String,
    /// `attempt`: the attempt it runs as (above every attempt of it so far).
    pub attempt: u32,
    /// `reason`: why, for people (e.g. `retried by alice@dev-1`).
    pub reason: String,
    /// `created_at`: when the origin decided it, in seconds since the Unix epoch.
    pub created_at: u64,
    /// `sender`: the origin's node certificate (an envelope whose payload is a
    /// [`NodeCertificate`](crate::NodeCertificate), signed by its org key).
    pub sender: Envelope,
}

/// Where a run's code came from.
///
/// On the wire a map with a `kind` key: `{"kind": "snapshot", "digest": h'…'}` or
/// `{"kind": "git", "url": "…", "commit": "…"}`, the latter with `"bundle": {"sha256":
/// h'…', "size": n}` when the sender serves a git bundle of the commit (a sender that
/// never writes it, or a receiver that does not read it, still understands the rest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RunSourceWire", into = "RunSourceWire")]
pub enum RunSource {
    /// A snapshot of a local directory, named by the sha256 of its archive.
    Snapshot {
        /// `digest`: sha256 of the snapshot.
        digest: Digest,
    },
    /// A commit of a git repository.
    Git {
        /// `url`: the repository URL.
        url: String,
        /// `commit`: the full commit id (40 or 64 lowercase hex digits).
        commit: String,
        /// `bundle`: a git bundle holding the commit that the sender serves as an
        /// artifact, for an owner that does not fetch the repository itself.
        bundle: Option<GitBundle>,
    },
}

/// A git bundle a sender serves over the artifact protocol: its digest and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitBundle {
    /// `sha256`: digest of the bundle's bytes.
    pub sha256: Digest,
    /// `size`: its length in bytes.
    pub size: u64,
}

/// The facts a plan was made with: runtime data given to the planner as explicit input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// `branch`: the branch name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// `tag`: the tag name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// `environment`: the target environment, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// `commit`: the commit id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// `vars`: extra facts by name (omitted when empty).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "bounded_map::<_, _, MAX_VARS>"
    )]
    pub vars: BTreeMap<String, String>,
}

/// An artifact an offered stage needs, and the peer that serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputArtifact {
    /// `name`: the artifact's name in the plan.
    pub name: String,
    /// `sha256`: digest of the artifact's bytes.
    pub sha256: Digest,
    /// `size`: length of the artifact in bytes.
    pub size: u64,
    /// `provider`: the libp2p peer id (base58 text) of a node that serves it.
    pub provider: String,
}

/// The owner's signed promise to run an offered stage: the offer is persisted and will run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accept {
    /// `id`: the handoff id of the offer.
    pub id: HandoffId,
    /// `stage`: the offered stage id.
    pub stage: String,
    /// `attempt`: the offered attempt.
    pub attempt: u32,
}

/// The owner's signed refusal of an offer, with a reason the sender can show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    /// `id`: the handoff id of the offer.
    pub id: HandoffId,
    /// `code`: why, for programs.
    pub code: RejectCode,
    /// `message`: why, for people, e.g. `stage definition not approved`.
    pub message: String,
    /// `hint`: what to do about it, e.g. `run otto-node approve 3fa1… on ops-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Why an offer (or another message) was refused. On the wire a snake_case string.
///
/// Decoding never fails on a code this version does not know: a newer peer's code comes
/// back as [`RejectCode::Unknown`] holding the string as sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RejectCode {
    /// `bad_signature`: a signature does not verify.
    BadSignature,
    /// `unknown_org`: the sender's org key is not pinned by the receiver.
    UnknownOrg,
    /// `certificate_expired`: the sender's certificate is past its `not_after`.
    CertificateExpired,
    /// `certificate_not_yet_valid`: the sender's certificate is before its `not_before`.
    CertificateNotYetValid,
    /// `node_revoked`: the sender's node key is revoked by its org.
    NodeRevoked,
    /// `out_of_scope`: the receiver's policy does not let the sender's org ask this.
    OutOfScope,
    /// `plan_digest_mismatch`: the plan bytes do not hash to the plan digest.
    PlanDigestMismatch,
    /// `stage_not_owned`: the plan does not give the stage to the receiver.
    StageNotOwned,
    /// `upstream_receipt_invalid`: an upstream receipt does not verify.
    UpstreamReceiptInvalid,
    /// `upstream_receipt_failed`: an upstream stage did not succeed.
    UpstreamReceiptFailed,
    /// `upstream_receipt_missing`: an upstream stage has no receipt in the chain.
    UpstreamReceiptMissing,
    /// `upstream_receipt_not_preceding`: a receipt is for a stage that does not precede the
    /// offered stage in the plan.
    UpstreamReceiptNotPreceding,
    /// `upstream_receipt_wrong_signer`: an upstream receipt is signed by a node of another
    /// org than the one its stage's owner is bound to.
    UpstreamReceiptWrongSigner,
    /// `owner_binding_mismatch`: the plan binds an owner name to another org than the one
    /// the receiver knows by that name.
    OwnerBindingMismatch,
    /// `offer_expired`: the offer is past its `expires_at`.
    OfferExpired,
    /// `replayed`: the handoff id was seen before.
    Replayed,
    /// `definition_not_approved`: the stage's inline steps have a digest the owner has not
    /// approved.
    DefinitionNotApproved,
    /// `attempt_refused`: the offered attempt may not run: the stage already succeeded on
    /// the owner, the attempt is not above the last one the owner began, or a retry (an
    /// attempt above 1) carries no valid [`Retry`] signed by the node that started the run
    /// for exactly that run, stage and attempt. Also the answer to a [`Retry`] the node it
    /// went to does not take (it does not move the stage on, or the attempt is stale).
    AttemptRefused,
    /// `source_refused`: the run's source cannot be taken as offered: a git repository URL
    /// or commit id the owner refuses, a commit other than the plan's, or a repository the
    /// owner's policy does not let it fetch itself while the offer carries no bundle.
    SourceRefused,
    /// `receipt_refused`: the answer to a receipt (not to an offer): the node it went to
    /// holds no handoff of its stage to the sender (its offer expired before an accept
    /// came, none was made, or the stage went to another node), takes it from no one, and
    /// the sender stops sending it.
    ReceiptRefused,
    /// `unsupported_version`: the message's protocol version is not spoken here.
    UnsupportedVersion,
    /// `malformed`: the message does not decode.
    Malformed,
    /// `internal`: the receiver failed on its side; the sender may retry.
    Internal,
    /// A code this version does not know, as sent by a newer peer.
    Unknown(String),
}

impl RejectCode {
    /// Every code this version knows, in the order of the documentation.
    pub const KNOWN: [Self; 23] = [
        Self::BadSignature,
        Self::UnknownOrg,
        Self::CertificateExpired,
        Self::CertificateNotYetValid,
        Self::NodeRevoked,
        Self::OutOfScope,
        Self::PlanDigestMismatch,
        Self::StageNotOwned,
        Self::UpstreamReceiptInvalid,
        Self::UpstreamReceiptFailed,
        Self::UpstreamReceiptMissing,
        Self::UpstreamReceiptNotPreceding,
        Self::UpstreamReceiptWrongSigner,
        Self::OwnerBindingMismatch,
        Self::OfferExpired,
        Self::Replayed,
        Self::DefinitionNotApproved,
        Self::AttemptRefused,
        Self::SourceRefused,
        Self::ReceiptRefused,
        Self::UnsupportedVersion,
        Self::Malformed,
        Self::Internal,
    ];

    /// The code as it appears on the wire, e.g. `"bad_signature"`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::BadSignature => "bad_signature",
            Self::UnknownOrg => "unknown_org",
            Self::CertificateExpired => "certificate_expired",
            Self::CertificateNotYetValid => "certificate_not_yet_valid",
            Self::NodeRevoked => "node_revoked",
            Self::OutOfScope => "out_of_scope",
            Self::PlanDigestMismatch => "plan_digest_mismatch",
            Self::StageNotOwned => "stage_not_owned",
            Self::UpstreamReceiptInvalid => "upstream_receipt_invalid",
            Self::UpstreamReceiptFailed => "upstream_receipt_failed",
            Self::UpstreamReceiptMissing => "upstream_receipt_missing",
            Self::UpstreamReceiptNotPreceding => "upstream_receipt_not_preceding",
            Self::UpstreamReceiptWrongSigner => "upstream_receipt_wrong_signer",
            Self::OwnerBindingMismatch => "owner_binding_mismatch",
            Self::OfferExpired => "offer_expired",
            Self::Replayed => "replayed",
            Self::DefinitionNotApproved => "definition_not_approved",
            Self::AttemptRefused => "attempt_refused",
            Self::SourceRefused => "source_refused",
            Self::ReceiptRefused => "receipt_refused",
            Self::UnsupportedVersion => "unsupported_version",
            Self::Malformed => "malformed",
            Self::Internal => "internal",
            Self::Unknown(code) => code,
        }
    }

    /// The code for a wire string: a known code, or [`RejectCode::Unknown`] holding it.
    pub fn from_wire(code: &str) -> Self {
        Self::KNOWN
            .iter()
            .find(|known| known.as_str() == code)
            .cloned()
            .unwrap_or_else(|| Self::Unknown(code.to_owned()))
    }
}

impl From<RunSource> for RunSourceWire {
    fn from(source: RunSource) -> Self {
        match source {
            RunSource::Snapshot { digest } => Self {
                kind: "snapshot".to_owned(),
                digest: Some(digest),
                url: None,
                commit: None,
                bundle: None,
            },
            RunSource::Git {
                url,
                commit,
                bundle,
            } => Self {
                kind: "git".to_owned(),
                digest: None,
                url: Some(url),
                commit: Some(commit),
                bundle,
            },
        }
    }
}

impl TryFrom<RunSourceWire> for RunSource {
    type Error = String;

    fn try_from(wire: RunSourceWire) -> Result<Self, Self::Error> {
        match (wire.kind.as_str(), wire.digest, wire.url, wire.commit) {
            ("snapshot", Some(digest), _, _) => Ok(Self::Snapshot { digest }),
            ("snapshot", None, _, _) => Err("a snapshot source needs a digest".to_owned()),
            ("git", _, Some(url), Some(commit)) => Ok(Self::Git {
                url,
                commit,
                bundle: wire.bundle,
            }),
            ("git", _, _, _) => Err("a git source needs a url and a commit".to_owned()),
            (other, _, _, _) => Err(format!("unknown run source kind `{other}`")),
        }
    }
}

/// The wire shape of a [`RunSource`]: one map, the `kind` says which other keys matter.
#[derive(Clone, Serialize, Deserialize)]
struct RunSourceWire {
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    digest: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bundle: Option<GitBundle>,
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RejectCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RejectCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Ok(Self::from_wire(&code))
    }
}
