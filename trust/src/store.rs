//! The trust store: the pinned org keys, aliases, policies, approved step digests,
//! revocation lists and invites of one node, as one serde value kept in a TOML file under
//! the node's home (see [`crate::persist`] for reading and writing it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cert::{self, CertError, VerifiedCert};
use crate::invite::{InviteBook, NewPeer};
use crate::keys::PublicKey;
use crate::policy::{Definitions, Policy, ScopeError, StageDefinition};
use crate::revocation::RevocationRecord;
use crate::valid_name;

/// The version of the trust store file format this crate reads and writes.
pub const STORE_VERSION: u32 = 1;

/// The largest trust store file read, in bytes.
pub const MAX_STORE_LEN: usize = 16 << 20;

/// A node's trust decisions. Every method is pure; persistence is separate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustStore {
    version: u32,
    #[serde(default)]
    orgs: Vec<PinnedOrg>,
    #[serde(default)]
    aliases: BTreeMap<String, AliasTarget>,
    #[serde(default)]
    policies: BTreeMap<String, Policy>,
    #[serde(default)]
    approved: BTreeMap<String, Approval>,
    #[serde(default)]
    pub(crate) revocations: BTreeMap<String, RevocationRecord>,
    #[serde(default)]
    invites: InviteBook,
}

/// An org key this node trusts, under a local name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedOrg {
    /// The local name of the org, used by policies and revocations.
    pub name: String,
    /// The org's public key.
    pub key: PublicKey,
    /// When it was pinned, in seconds since the Unix epoch.
    pub added_at: u64,
}

/// What an alias stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AliasTarget {
    /// A pinned org, by name.
    Org(String),
    /// One node, by its key.
    Node(PublicKey),
}

/// The record of an approved inline step digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// When it was approved, in seconds since the Unix epoch.
    pub approved_at: u64,
}

/// Why a change to the trust store was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A name is empty, too long, or has characters other than ASCII letters, digits,
    /// `-`, `_` and `.`.
    #[error("invalid name {0:?}: use 1 to 64 ascii letters, digits, '-', '_' or '.'")]
    Name(String),
    /// Another key is already pinned under this org name.
    #[error("another key is already pinned as org {0:?}")]
    NameTaken(String),
    /// The key is already pinned under another name.
    #[error("this org key is already pinned as {0:?}")]
    KeyPinned(String),
    /// No org of that name is pinned.
    #[error("no org {0:?} is pinned here")]
    UnknownOrg(String),
    /// The alias is already the name of a pinned org.
    #[error("{0:?} is the name of a pinned org and cannot be an alias")]
    AliasIsOrg(String),
}

/// Why a trust store file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The file is larger than [`MAX_STORE_LEN`].
    #[error("trust store of {0} bytes exceeds the limit of {MAX_STORE_LEN}")]
    TooLarge(usize),
    /// The file is written in a version this node does not read.
    #[error("trust store version {0} is not supported (this node reads version {STORE_VERSION})")]
    Version(u32),
    /// The file is not valid trust store TOML.
    #[error("invalid trust store: {0}")]
    Toml(String),
}

impl TrustStore {
    /// An empty trust store: nothing pinned, nothing allowed.
    pub fn new() -> Self {
        Self {
            version: STORE_VERSION,
            orgs: Vec::new(),
            aliases: BTreeMap::new(),
            policies: BTreeMap::new(),
            approved: BTreeMap::new(),
            revocations: BTreeMap::new(),
            invites: InviteBook::default(),
        }
    }

    /// Reads a trust store from its TOML text.
    pub fn from_toml(text: &str) -> Result<Self, FormatError> {
        if text.len() > MAX_STORE_LEN {
            return Err(FormatError::TooLarge(text.len()));
        }
        #[derive(Deserialize)]
        struct Header {
            version: u32,
        }
        let header: Header = toml::from_str(text).map_err(|e| FormatError::Toml(e.to_string()))?;
        if header.version != STORE_VERSION {
            return Err(FormatError::Version(header.version));
        }
        toml::from_str(text).map_err(|e| FormatError::Toml(e.to_string()))
    }

    /// Writes the trust store as TOML text.
    pub fn to_toml(&self) -> String {
        // SAFETY: every field is a string, integer, list or string-keyed map, which TOML
        // always represents.
        #[allow(clippy::expect_used)]
        toml::to_string(self).expect("the trust store always serialises to toml")
    }

    /// Pins an org key under a local name. Pinning the same key under the same name again
    /// changes nothing.
    pub fn pin_org(&mut self, name: &str, key: PublicKey, now: u64) -> Result<(), StoreError> {
        if !valid_name(name) {
            return Err(StoreError::Name(name.to_owned()));
        }
        if let Some(existing) = self.orgs.iter().find(|o| o.key == key) {
            return if existing.name == name {
                Ok(())
            } else {
                Err(StoreError::KeyPinned(existing.name.clone()))
            };
        }
        if self.orgs.iter().any(|o| o.name == name) {
            return Err(StoreError::NameTaken(name.to_owned()));
        }
        if self.aliases.contains_key(name) {
            return Err(StoreError::NameTaken(name.to_owned()));
        }
        self.orgs.push(PinnedOrg {
            name: name.to_owned(),
            key,
            added_at: now,
        });
        Ok(())
    }

    /// Forgets an org with its policy, revocations and the aliases that point to it.
    /// Returns whether it was pinned.
    pub fn unpin_org(&mut self, name: &str) -> bool {
        let before = self.orgs.len();
        self.orgs.retain(|o| o.name != name);
        self.policies.remove(name);
        self.revocations.remove(name);
        self.aliases
            .retain(|_, target| !matches!(target, AliasTarget::Org(org) if org == name));
        before != self.orgs.len()
    }

    /// The pinned orgs.
    pub fn orgs(&self) -> &[PinnedOrg] {
        &self.orgs
    }

    /// The pinned org of that name.
    pub fn org(&self, name: &str) -> Option<&PinnedOrg> {
        self.orgs.iter().find(|o| o.name == name)
    }

    /// The pinned org with that key.
    pub fn org_by_key(&self, key: &PublicKey) -> Option<&PinnedOrg> {
        self.orgs.iter().find(|o| o.key == *key)
    }

    /// Sets an alias (e.g. `ops`) for a pinned org or a node key, replacing an older one.
    pub fn set_alias(&mut self, alias: &str, target: AliasTarget) -> Result<(), StoreError> {
        if !valid_name(alias) {
            return Err(StoreError::Name(alias.to_owned()));
        }
        if self.org(alias).is_some() {
            return Err(StoreError::AliasIsOrg(alias.to_owned()));
        }
        if let AliasTarget::Org(org) = &target
            && self.org(org).is_none()
        {
            return Err(StoreError::UnknownOrg(org.clone()));
        }
        self.aliases.insert(alias.to_owned(), target);
        Ok(())
    }

    /// Removes an alias; returns whether it existed.
    pub fn remove_alias(&mut self, alias: &str) -> bool {
        self.aliases.remove(alias).is_some()
    }

    /// What an alias stands for.
    pub fn alias(&self, alias: &str) -> Option<&AliasTarget> {
        self.aliases.get(alias)
    }

    /// Every alias, sorted.
    pub fn aliases(&self) -> impl Iterator<Item = (&str, &AliasTarget)> {
        self.aliases.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The pinned org a name or an org alias stands for.
    pub fn resolve_org(&self, name_or_alias: &str) -> Option<&PinnedOrg> {
        self.org(name_or_alias)
            .or_else(|| match self.aliases.get(name_or_alias) {
                Some(AliasTarget::Org(org)) => self.org(org),
                _ => None,
            })
    }

    /// Sets the policy of a pinned org, replacing an older one.
    pub fn set_policy(&mut self, org: &str, policy: Policy) -> Result<(), StoreError> {
        if self.org(org).is_none() {
            return Err(StoreError::UnknownOrg(org.to_owned()));
        }
        self.policies.insert(org.to_owned(), policy);
        Ok(())
    }

    /// The policy of a pinned org.
    pub fn policy(&self, org: &str) -> Option<&Policy> {
        self.policies.get(org)
    }

    /// Checks that peer `org` may hand stage `stage` of pipeline `pipeline`, targeting
    /// `environment` (if the stage has one), to this node.
    pub fn check_scope(
        &self,
        org: &str,
        pipeline: &str,
        stage: &str,
        environment: Option<&str>,
    ) -> Result<(), ScopeError> {
        self.policy_or_err(org)?
            .check(org, pipeline, stage, environment)
    }

    /// Checks that a stage handed by peer `org` may receive the secrets named `secrets`:
    /// the policy for the org must name each (see [`Policy::check_secrets`]).
    pub fn check_secrets(&self, org: &str, secrets: &[String]) -> Result<(), ScopeError> {
        self.policy_or_err(org)?.check_secrets(org, secrets)
    }

    /// How many stages of one run of peer `org` this node runs at once: its policy's
    /// `max_parallel` (at least 1), or 1 for an org with no policy.
    pub fn max_parallel(&self, org: &str) -> u32 {
        self.policy(org).map_or(1, |p| p.max_parallel.max(1))
    }

    /// Checks that this node runs a stage defined this way for peer `org`: a blueprint is
    /// always allowed here (the caller checks that the node publishes it); inline steps need
    /// a policy with `definitions = "approved"` and an approved digest.
    pub fn check_definition(
        &self,
        org: &str,
        definition: StageDefinition<'_>,
    ) -> Result<(), ScopeError> {
        let policy = self.policy_or_err(org)?;
        match definition {
            StageDefinition::Blueprint(_) => Ok(()),
            StageDefinition::Inline { .. } if policy.definitions == Definitions::Owned => {
                Err(ScopeError::InlineSteps {
                    org: org.to_owned(),
                })
            }
            StageDefinition::Inline { digest } if self.is_approved(digest) => Ok(()),
            StageDefinition::Inline { digest } => Err(ScopeError::NotApproved {
                digest: digest.to_owned(),
            }),
        }
    }

    /// Approves inline steps by digest (`otto-node approve DIGEST`).
    pub fn approve(&mut self, digest: &str, now: u64) {
        self.approved
            .entry(digest.to_owned())
            .or_insert(Approval { approved_at: now });
    }

    /// Withdraws an approval; returns whether it existed.
    pub fn unapprove(&mut self, digest: &str) -> bool {
        self.approved.remove(digest).is_some()
    }

    /// Whether inline steps with this digest are approved.
    pub fn is_approved(&self, digest: &str) -> bool {
        self.approved.contains_key(digest)
    }

    /// Every approved digest, sorted.
    pub fn approvals(&self) -> impl Iterator<Item = (&str, &Approval)> {
        self.approved.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Verifies a node certificate against the pinned orgs at `now` and checks that its org
    /// has not revoked the node key.
    pub fn verify_cert(
        &self,
        env: &otto_protocol::Envelope,
        now: u64,
    ) -> Result<VerifiedCert, CertError> {
        let cert = cert::verify_cert(env, &self.orgs, now)?;
        if self.is_revoked(cert.org(), cert.node_key()) {
            return Err(CertError::Revoked {
                node: cert.node_key().keyid(),
                org: cert.org().to_owned(),
            });
        }
        Ok(cert)
    }

    /// Records a peer that joined through an invite: pins its org under the name its
    /// certificate claims and grants it the invite's scope.
    pub fn add_peer(&mut self, peer: &NewPeer, now: u64) -> Result<(), StoreError> {
        let org = peer.cert.org();
        self.pin_org(org, *peer.cert.org_key(), now)?;
        let policy = Policy {
            secrets: peer.secrets.clone(),
            max_parallel: peer.max_parallel,
            ..Policy::from_scope(&peer.scope, peer.definitions)
        };
        self.set_policy(org, policy)
    }

    /// The invites this node issued.
    pub fn invites(&self) -> &InviteBook {
        &self.invites
    }

    /// The invites this node issued, to issue or redeem one.
    pub fn invites_mut(&mut self) -> &mut InviteBook {
        &mut self.invites
    }

    fn policy_or_err(&self, org: &str) -> Result<&Policy, ScopeError> {
        self.policies.get(org).ok_or_else(|| ScopeError::NoPolicy {
            org: org.to_owned(),
        })
    }
}

impl Default for TrustStore {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{NodeKey, OrgKey};

    fn key(seed: u8) -> PublicKey {
        OrgKey::from_seed(&[seed; 32]).public_key()
    }

    fn store() -> TrustStore {
        let mut s = TrustStore::new();
        s.pin_org("acme-dev", key(1), 100).unwrap();
        s.pin_org("acme-ops", key(2), 200).unwrap();
        s
    }

    #[test]
    fn pinning_rules() {
        let mut s = store();
        assert_eq!(s.pin_org("acme-dev", key(1), 999), Ok(()));
        assert_eq!(s.org("acme-dev").unwrap().added_at, 100);
        assert_eq!(
            s.pin_org("acme-dev", key(3), 0),
            Err(StoreError::NameTaken("acme-dev".into()))
        );
        assert_eq!(
            s.pin_org("other", key(1), 0),
            Err(StoreError::KeyPinned("acme-dev".into()))
        );
        assert_eq!(
            s.pin_org("", key(3), 0),
            Err(StoreError::Name(String::new()))
        );
        assert_eq!(s.org_by_key(&key(2)).unwrap().name, "acme-ops");
        assert_eq!(s.orgs().len(), 2);
    }

    #[test]
    fn aliases_resolve_and_follow_unpinning() {
        let mut s = store();
        s.set_alias("ops", AliasTarget::Org("acme-ops".into()))
            .unwrap();
        let node = NodeKey::from_seed(&[5; 32]).public_key();
        s.set_alias("ops1", AliasTarget::Node(node)).unwrap();
        assert_eq!(s.resolve_org("ops").unwrap().key, key(2));
        assert_eq!(s.resolve_org("acme-ops").unwrap().key, key(2));
        assert!(s.resolve_org("ops1").is_none());
        assert_eq!(s.alias("ops1"), Some(&AliasTarget::Node(node)));
        assert_eq!(
            s.set_alias("dev", AliasTarget::Org("nope".into())),
            Err(StoreError::UnknownOrg("nope".into()))
        );
        assert_eq!(
            s.set_alias("acme-dev", AliasTarget::Org("acme-ops".into())),
            Err(StoreError::AliasIsOrg("acme-dev".into()))
        );
        assert_eq!(
            s.set_alias("a b", AliasTarget::Org("acme-ops".into())),
            Err(StoreError::Name("a b".into()))
        );
        assert_eq!(
            s.pin_org("ops", key(9), 0),
            Err(StoreError::NameTaken("ops".into()))
        );
        assert!(s.unpin_org("acme-ops"));
        assert!(!s.unpin_org("acme-ops"));
        assert_eq!(s.alias("ops"), None);
        assert!(s.alias("ops1").is_some());
        assert!(s.remove_alias("ops1"));
        assert_eq!(s.aliases().count(), 0);
    }

    #[test]
    fn scope_checks_use_the_org_policy() {
        let mut s = store();
        assert_eq!(
            s.check_scope("acme-dev", "shop", "Deploy", None),
            Err(ScopeError::NoPolicy {
                org: "acme-dev".into()
            })
        );
        let policy = Policy {
            pipelines: vec!["shop".into()],
            stages: vec!["Deploy".into()],
            environments: vec!["prod".into()],
            ..Policy::default()
        };
        assert_eq!(
            s.set_policy("nope", policy.clone()),
            Err(StoreError::UnknownOrg("nope".into()))
        );
        s.set_policy("acme-dev", policy).unwrap();
        assert_eq!(
            s.check_scope("acme-dev", "shop", "Deploy", Some("prod")),
            Ok(())
        );
        assert!(matches!(
            s.check_scope("acme-dev", "shop", "Deploy", Some("dev")),
            Err(ScopeError::Environment { .. })
        ));
        assert!(matches!(
            s.check_scope("acme-ops", "shop", "Deploy", Some("prod")),
            Err(ScopeError::NoPolicy { .. })
        ));
    }

    #[test]
    fn definition_rules() {
        let mut s = store();
        let inline = StageDefinition::Inline {
            digest: "sha256:abc",
        };
        assert!(matches!(
            s.check_definition("acme-dev", inline),
            Err(ScopeError::NoPolicy { .. })
        ));
        s.set_policy("acme-dev", Policy::default()).unwrap();
        assert_eq!(
            s.check_definition("acme-dev", StageDefinition::Blueprint("deploy")),
            Ok(())
        );
        assert_eq!(
            s.check_definition("acme-dev", inline),
            Err(ScopeError::InlineSteps {
                org: "acme-dev".into()
            })
        );
        let approving = Policy {
            definitions: Definitions::Approved,
            ..Policy::default()
        };
        s.set_policy("acme-dev", approving).unwrap();
        assert_eq!(
            s.check_definition("acme-dev", inline),
            Err(ScopeError::NotApproved {
                digest: "sha256:abc".into()
            })
        );
        s.approve("sha256:abc", 7);
        assert!(s.is_approved("sha256:abc"));
        assert_eq!(s.check_definition("acme-dev", inline), Ok(()));
        assert_eq!(
            s.approvals().next(),
            Some(("sha256:abc", &Approval { approved_at: 7 }))
        );
        assert!(s.unapprove("sha256:abc"));
        assert!(s.check_definition("acme-dev", inline).is_err());
    }

    #[test]
    fn toml_round_trip() {
        let mut s = store();
        s.set_alias("ops", AliasTarget::Org("acme-ops".into()))
            .unwrap();
        s.set_alias("n1", AliasTarget::Node(key(7))).unwrap();
        s.set_policy(
            "acme-dev",
            Policy {
                roles: vec!["deploy".into()],
                pipelines: vec!["*".into()],
                stages: vec!["Deploy*".into()],
                environments: vec!["prod".into()],
                definitions: Definitions::Approved,
                ..Policy::default()
            },
        )
        .unwrap();
        s.approve("sha256:0123", 5);
        let text = s.to_toml();
        assert!(text.contains("version = 1"), "{text}");
        assert!(text.contains(&key(1).keyid()), "{text}");
        assert!(text.contains("definitions = \"approved\""), "{text}");
        assert_eq!(TrustStore::from_toml(&text), Ok(s));
    }

    #[test]
    fn toml_errors() {
        assert_eq!(
            TrustStore::from_toml("version = 2"),
            Err(FormatError::Version(2))
        );
        assert!(matches!(
            TrustStore::from_toml("orgs = 3"),
            Err(FormatError::Toml(_))
        ));
        assert!(matches!(
            TrustStore::from_toml(
                "version = 1\n[[orgs]]\nname = \"x\"\nkey = \"ed25519:00\"\nadded_at = 0\n"
            ),
            Err(FormatError::Toml(_))
        ));
        let huge = "#".repeat(MAX_STORE_LEN + 1);
        assert_eq!(
            TrustStore::from_toml(&huge),
            Err(FormatError::TooLarge(MAX_STORE_LEN + 1))
        );
        assert_eq!(TrustStore::from_toml("version = 1"), Ok(TrustStore::new()));
    }
}
