//! Joining a mesh and leaving it: [`JoinRequest`] and [`JoinResponse`] after an invite,
//! and an org's signed [`RevocationList`].

use serde::{Deserialize, Serialize};

use crate::bytes::{KeyBytes, bounded_vec};
use crate::envelope::Envelope;
use crate::limits::{MAX_ADDRS, MAX_REVOKED, MAX_SCOPE_ENTRIES};

/// A joiner's request to the inviting node, presenting the invite token it got out of band.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// `token`: the invite token in its printable form, exactly as given to `otto-node join`.
    pub token: String,
    /// `cert`: the joiner's node certificate (an envelope whose payload is a
    /// [`NodeCertificate`](crate::NodeCertificate), signed by the joiner's org key).
    pub cert: Envelope,
    /// `addrs`: multiaddrs where the joiner can be reached.
    #[serde(deserialize_with = "bounded_vec::<_, _, MAX_ADDRS>")]
    pub addrs: Vec<String>,
}

/// The inviter's answer to a [`JoinRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinResponse {
    /// `accepted`: true when both sides now trust each other within `scope`.
    pub accepted: bool,
    /// `reason`: why the join was refused (present when `accepted` is false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `cert`: the inviter's node certificate (present when `accepted` is true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<Envelope>,
    /// `scope`: what the joiner's org may ask of the inviter (present when `accepted` is true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
}

/// What a peer org may ask of a node. Each list holds glob patterns; an empty list grants
/// nothing and `["*"]` grants everything of that sort.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// `roles`: the roles granted, e.g. `["deploy"]`.
    #[serde(default, deserialize_with = "bounded_vec::<_, _, MAX_SCOPE_ENTRIES>")]
    pub roles: Vec<String>,
    /// `pipelines`: pipeline name globs.
    #[serde(default, deserialize_with = "bounded_vec::<_, _, MAX_SCOPE_ENTRIES>")]
    pub pipelines: Vec<String>,
    /// `stages`: stage id globs.
    #[serde(default, deserialize_with = "bounded_vec::<_, _, MAX_SCOPE_ENTRIES>")]
    pub stages: Vec<String>,
    /// `environments`: environment name globs.
    #[serde(default, deserialize_with = "bounded_vec::<_, _, MAX_SCOPE_ENTRIES>")]
    pub environments: Vec<String>,
}

/// An org's signed list of the node keys it no longer vouches for.
///
/// Travels as the payload of an [`Envelope`] signed by the org key. A node keeps the list
/// with the highest `seq` per org and never replaces it with a lower one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationList {
    /// `org_key`: the Ed25519 public key of the org that issues the list.
    pub org_key: KeyBytes,
    /// `seq`: the list's sequence number; each new list of an org has a higher one.
    pub seq: u64,
    /// `revoked`: every node key the org has revoked (the full set, not a delta).
    #[serde(deserialize_with = "bounded_vec::<_, _, MAX_REVOKED>")]
    pub revoked: Vec<Revocation>,
    /// `issued_at`: when the list was signed, in seconds since the Unix epoch.
    pub issued_at: u64,
}

/// One revoked node key in a [`RevocationList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// `node_key`: the revoked node's Ed25519 public key.
    pub node_key: KeyBytes,
    /// `at`: since when the key is revoked, in seconds since the Unix epoch.
    pub at: u64,
    /// `reason`: why, for people, e.g. `laptop stolen`.
    pub reason: String,
}
