//! The JSON shapes of membership: what the API takes and answers (the `otto-node` CLI
//! deserializes these).

use otto_protocol::Scope;
use otto_trust::cert::CertError;
use otto_trust::store::AliasTarget;
use otto_trust::{Definitions, Policy, PublicKey, TrustStore, VerifiedCert};
use serde::{Deserialize, Serialize};

use crate::mesh::{Multiaddr, PeerId};
use crate::store::KnownNode;

/// The body of `POST /v1/invites`: what the invite offers the joining org.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    /// The roles granted, e.g. `["deploy"]` (at least one).
    pub roles: Vec<String>,
    /// Pipeline name globs the joining org may hand stages of; default `["*"]`.
    #[serde(default)]
    pub pipelines: Vec<String>,
    /// Stage id globs the joining org may hand to this node (at least one).
    pub stages: Vec<String>,
    /// Environment globs the handed stages may target; default none (only stages
    /// without an environment).
    #[serde(default)]
    pub environments: Vec<String>,
    /// Which stage definitions this node runs for the joining org: `owned` (its published
    /// blueprints, the default) or `approved` (also inline steps approved by digest).
    #[serde(default)]
    pub definitions: Definitions,
    /// Globs of the names of this node's secrets the joining org's stages may receive;
    /// default none. Kept on this node, not sent in the token.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// How many stages of one of the joining org's runs this node runs at once; default
    /// [`otto_trust::policy::DEFAULT_MAX_PARALLEL`].
    #[serde(default, deserialize_with = "whole_count")]
    pub max_parallel: Option<u32>,
    /// How long the invite stays valid, in seconds (1 to 30 days' worth). JSON has one
    /// number type, so `3600.0` is read as 3600; a fraction is refused.
    #[serde(deserialize_with = "whole_seconds")]
    pub expires_in_secs: u64,
}

/// A JSON number that is a whole, non-negative number of seconds: `60` or `60.0`.
fn whole_seconds<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    whole(&number).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "expires_in_secs must be a whole number of seconds, got {number}"
        ))
    })
}

/// An optional count that JSON may write as `3` or `3.0` (JSON has one number type); a
/// fraction or a count past `u32` is refused.
fn whole_count<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    whole(&number)
        .and_then(|n| u32::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom(format!("max_parallel must be a whole number, got {number}"))
        })
}

/// The value of a JSON number that is whole and non-negative.
fn whole(number: &serde_json::Number) -> Option<u64> {
    if let Some(n) = number.as_u64() {
        return Some(n);
    }
    match number.as_f64() {
        // SAFETY of the cast: the value is whole and within u64 range, checked first.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some(f) if f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&f) => Some(f as u64),
        _ => None,
    }
}

/// The body of `POST /v1/trust/policy`: changes what a pinned org's stages may receive
/// and how many run at once. A field left out stays as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    /// The org: its pinned name or an alias of it.
    pub org: String,
    /// Globs of the secret names its stages may receive (replacing the list).
    #[serde(default)]
    pub secrets: Option<Vec<String>>,
    /// How many stages of one of its runs run here at once (at least 1).
    #[serde(default, deserialize_with = "whole_count")]
    pub max_parallel: Option<u32>,
    /// The git repositories (exact URLs) this node fetches itself for its runs (replacing
    /// the list; empty: it takes every commit from the asking node's bundles).
    #[serde(default)]
    pub repos: Option<Vec<String>>,
}

/// `POST /v1/invites` answers this (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invited {
    /// The token to give the joining org out of band.
    pub token: String,
    /// When the invite expires, in seconds since the Unix epoch.
    pub expires_at: u64,
    /// What the joining org may ask of this node.
    pub scope: Scope,
    /// Which stage definitions this node runs for it.
    pub definitions: Definitions,
    /// The secrets (name globs) its stages may receive.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// How many stages of one of its runs run here at once.
    #[serde(default = "default_max_parallel")]
    pub max_parallel: u32,
    /// The addresses the joining node dials.
    pub addrs: Vec<String>,
}

fn default_max_parallel() -> u32 {
    otto_trust::policy::DEFAULT_MAX_PARALLEL
}

/// The body of `POST /v1/join`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinOptions {
    /// The invite token, as printed by `otto-node invite`.
    pub token: String,
    /// The local name for the inviting org, e.g. `ops`; default its org name.
    #[serde(default)]
    pub alias: Option<String>,
    /// What the inviting org may ask of this node in return; default nothing.
    #[serde(default)]
    pub grant: Option<Policy>,
}

/// `POST /v1/join` answers this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    /// The inviting org, as pinned here.
    pub org: String,
    /// The alias set for it, if other than its name.
    pub alias: Option<String>,
    /// The inviting node's name.
    pub node: String,
    /// Its peer id.
    pub peer_id: String,
    /// The inviting org's key id.
    pub org_key: String,
    /// What this node's org may ask of the inviting node.
    pub scope: Scope,
    /// What the inviting org may ask of this node (none when absent).
    pub granted: Option<Policy>,
}

/// One peer as `GET /v1/peers` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    /// The node's org as pinned here (or as its certificate claims when not pinned); none
    /// for a connected peer this node does not know.
    pub org: Option<String>,
    /// The aliases that name its org or its key.
    pub aliases: Vec<String>,
    /// The node's name, from its certificate.
    pub node: Option<String>,
    /// The node key's id.
    pub node_key: Option<String>,
    /// The libp2p peer id.
    pub peer_id: String,
    /// Whether the mesh is connected to it now.
    pub connected: bool,
    /// Where it can be reached: the connection's address first when connected, then the
    /// addresses it gave.
    pub addresses: Vec<String>,
    /// When it was last connected, in seconds since the Unix epoch.
    pub last_seen: Option<u64>,
    /// Whether it joined through an invite (either way).
    pub joined: bool,
    /// `trusted`, `revoked`, `expired`, `not_yet_valid`, `untrusted_org`, `invalid` or
    /// `unknown` (connected, never introduced).
    pub status: String,
    /// Why it is not trusted, for people.
    pub reason: Option<String>,
    /// What its org may ask of this node, when it has a policy here.
    pub scope: Option<Policy>,
}

/// `GET /v1/trust` answers this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustView {
    /// The pinned orgs.
    pub orgs: Vec<OrgView>,
    /// Every alias.
    pub aliases: Vec<AliasView>,
    /// The approved definition digests.
    pub approvals: Vec<ApprovalView>,
    /// The invites this node issued and has not forgotten.
    pub invites: Vec<InviteView>,
}

/// A pinned org in a [`TrustView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgView {
    /// Its local name.
    pub name: String,
    /// Its key id.
    pub key: String,
    /// Whether it is this node's own org.
    pub own: bool,
    /// When it was pinned.
    pub added_at: u64,
    /// What it may ask of this node, when it has a policy.
    pub policy: Option<Policy>,
    /// The sequence number of its revocation list held here.
    pub revocation_seq: Option<u64>,
    /// The node keys it revoked.
    pub revoked: Vec<RevokedKey>,
}

/// A revoked node key in an [`OrgView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedKey {
    /// The node key's id.
    pub node_key: String,
    /// Since when, in seconds since the Unix epoch.
    pub at: u64,
    /// Why, for people.
    pub reason: String,
}

/// An alias: the body of `POST /v1/trust/aliases` is `{"alias", "target"}`, and this is
/// what it answers and `GET /v1/trust` lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasView {
    /// The alias.
    pub alias: String,
    /// The pinned org it names.
    pub org: Option<String>,
    /// The node key it names.
    pub node: Option<String>,
}

/// An approved definition digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalView {
    /// The digest, `sha256:…`.
    pub digest: String,
    /// When it was approved.
    pub approved_at: u64,
}

/// An issued invite (its secret is not kept, only an id derived from it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteView {
    /// The id of its secret.
    pub id: String,
    /// When it was issued.
    pub issued_at: u64,
    /// When it expires.
    pub expires_at: u64,
    /// The roles it offers.
    pub roles: Vec<String>,
    /// When it was used.
    pub used_at: Option<u64>,
    /// The org that used it.
    pub used_by: Option<String>,
}

/// `POST /v1/trust/revoke` answers this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    /// This node's org, whose list it is.
    pub org: String,
    /// The revoked node key.
    pub node_key: String,
    /// The revoked node's name, when it is known here.
    pub node: Option<String>,
    /// The new list's sequence number.
    pub seq: u64,
    /// The known nodes that took the list (by name).
    pub delivered: Vec<String>,
    /// The known nodes that could not be given the list, and why.
    pub failed: Vec<(String, String)>,
}

impl AliasView {
    /// The view of `alias` for `target`.
    pub(crate) fn new(alias: &str, target: &AliasTarget) -> Self {
        let (org, node) = match target {
            AliasTarget::Org(org) => (Some(org.clone()), None),
            AliasTarget::Node(key) => (None, Some(key.keyid())),
        };
        Self {
            alias: alias.to_owned(),
            org,
            node,
        }
    }
}

impl TrustView {
    /// The view of `trust`; `own` is this node's org key.
    pub(crate) fn of(trust: &TrustStore, own: &PublicKey) -> Self {
        let orgs = trust
            .orgs()
            .iter()
            .map(|org| {
                let list = trust.revocations(&org.name);
                OrgView {
                    name: org.name.clone(),
                    key: org.key.keyid(),
                    own: org.key == *own,
                    added_at: org.added_at,
                    policy: trust.policy(&org.name).cloned(),
                    revocation_seq: list.map(|l| l.seq),
                    revoked: list
                        .map(|l| {
                            l.revoked
                                .iter()
                                .map(|r| RevokedKey {
                                    node_key: otto_protocol::ed25519_keyid(&r.node_key.0),
                                    at: r.at,
                                    reason: r.reason.clone(),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            })
            .collect();
        Self {
            orgs,
            aliases: trust
                .aliases()
                .map(|(alias, target)| AliasView::new(alias, target))
                .collect(),
            approvals: trust
                .approvals()
                .map(|(digest, approval)| ApprovalView {
                    digest: digest.to_owned(),
                    approved_at: approval.approved_at,
                })
                .collect(),
            invites: trust
                .invites()
                .issued()
                .map(|(id, issued)| InviteView {
                    id: id.to_owned(),
                    issued_at: issued.issued_at,
                    expires_at: issued.expires_at,
                    roles: issued.roles.clone(),
                    used_at: issued.used_at,
                    used_by: issued.used_by.clone(),
                })
                .collect(),
        }
    }
}

impl PeerView {
    /// The view of a known node.
    pub(crate) fn known(
        trust: &TrustStore,
        node: &KnownNode,
        key: &PublicKey,
        verdict: Result<&VerifiedCert, &CertError>,
        now: u64,
        connection: Option<&Multiaddr>,
    ) -> Self {
        let (status, reason) = match verdict {
            Ok(cert) if now < cert.not_before() => ("not_yet_valid", None),
            Ok(cert) if now >= cert.not_after() => ("expired", None),
            Ok(_) => ("trusted", None),
            Err(err) => (
                match err {
                    CertError::Revoked { .. } => "revoked",
                    CertError::Expired { .. } => "expired",
                    CertError::NotYetValid { .. } => "not_yet_valid",
                    CertError::UnknownOrg { .. } => "untrusted_org",
                    _ => "invalid",
                },
                Some(err.to_string()),
            ),
        };
        let org = verdict.map_or_else(|_| node.org.clone(), |cert| cert.org().to_owned());
        let aliases = trust
            .aliases()
            .filter(|(_, target)| match target {
                AliasTarget::Org(name) => *name == org,
                AliasTarget::Node(k) => k == key,
            })
            .map(|(alias, _)| alias.to_owned())
            .collect();
        let mut addresses: Vec<String> = connection.map(ToString::to_string).into_iter().collect();
        for addr in &node.addrs {
            if !addresses.contains(addr) {
                addresses.push(addr.clone());
            }
        }
        Self {
            scope: trust.policy(&org).cloned(),
            org: Some(org),
            aliases,
            node: Some(node.name.clone()),
            node_key: Some(node.keyid.clone()),
            peer_id: node.peer_id.clone(),
            connected: connection.is_some(),
            addresses,
            last_seen: node.last_seen,
            joined: node.joined,
            status: status.to_owned(),
            reason,
        }
    }

    /// The view of a connected peer this node does not know.
    pub(crate) fn stranger(peer: &PeerId, address: &Multiaddr) -> Self {
        Self {
            org: None,
            aliases: Vec::new(),
            node: None,
            node_key: None,
            peer_id: peer.to_string(),
            connected: true,
            addresses: vec![address.to_string()],
            last_seen: None,
            joined: false,
            status: "unknown".to_owned(),
            reason: None,
            scope: None,
        }
    }
}

#[cfg(test)]
mod whole_number_tests {
    use super::*;

    #[test]
    fn counts_and_seconds_may_be_written_as_whole_floats_but_not_fractions() {
        let policy: PolicyRequest =
            serde_json::from_str(r#"{"org": "acme", "max_parallel": 3.0}"#).unwrap();
        assert_eq!(policy.max_parallel, Some(3));
        let policy: PolicyRequest =
            serde_json::from_str(r#"{"org": "acme", "max_parallel": null}"#).unwrap();
        assert_eq!(policy.max_parallel, None);
        assert_eq!(
            serde_json::from_str::<PolicyRequest>(r#"{"org": "acme"}"#)
                .unwrap()
                .max_parallel,
            None
        );
        for bad in ["2.5", "-1", "4294967296"] {
            let text = format!(r#"{{"org": "acme", "max_parallel": {bad}}}"#);
            let e = serde_json::from_str::<PolicyRequest>(&text).unwrap_err();
            assert!(
                e.to_string()
                    .contains("max_parallel must be a whole number"),
                "{e}"
            );
        }
        let invite: InviteRequest = serde_json::from_str(
            r#"{"roles": ["deploy"], "stages": ["*"], "expires_in_secs": 60.0, "max_parallel": 217.0}"#,
        )
        .unwrap();
        assert_eq!(
            (invite.expires_in_secs, invite.max_parallel),
            (60, Some(217))
        );
    }
}
