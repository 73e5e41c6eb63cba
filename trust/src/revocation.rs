//! Revocation: an org's signed list of the node keys it no longer vouches for.
//!
//! A list travels as an envelope of type `application/vnd.otto.revocation-list+cbor`
//! (`otto_protocol::RevocationList`) signed by the org key. Each list is the org's full set
//! with a sequence number; a node keeps the highest-numbered list per org, and a list whose
//! number is not higher than the kept one never replaces it, so an old list replayed by
//! anyone cannot bring a revoked key back.

#![warn(clippy::unwrap_used)]

use otto_protocol::{Envelope, KeyBytes, Kind, Payload as _, Revocation, RevocationList};
use serde::{Deserialize, Serialize};

use crate::dsse::{self, Unverified};
use crate::keys::{PublicKey, SignError, Signer};
use crate::store::TrustStore;

/// The revocation list kept for one org.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationRecord {
    /// The list's sequence number.
    pub seq: u64,
    /// When the org signed it, in seconds since the Unix epoch.
    pub issued_at: u64,
    /// The revoked node keys.
    #[serde(default)]
    pub revoked: Vec<Revocation>,
    /// The signed list in DSSE JSON form, to pass on to peers.
    pub envelope: String,
}

/// Why a revocation list was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationError {
    /// The envelope is not a well-formed revocation list.
    #[error("malformed revocation list: {0}")]
    Malformed(String),
    /// The list is from an org that is not pinned here.
    #[error("revocation list from org key {keyid}, which is not trusted here")]
    UnknownOrg {
        /// The key id of the org key the list names.
        keyid: String,
    },
    /// The signature does not verify with the org key the list names.
    #[error("revocation list signature does not verify with the key of org {org:?}")]
    BadSignature {
        /// The pinned name of the org.
        org: String,
    },
    /// The list is not newer than the one kept.
    #[error("revocation list {offered} of org {org:?} is not newer than the kept list {current}")]
    Stale {
        /// The pinned name of the org.
        org: String,
        /// The sequence number kept.
        current: u64,
        /// The sequence number offered.
        offered: u64,
    },
}

/// Signs a revocation list of the org holding `org` with sequence number `seq`.
pub fn sign_revocation<S: Signer + ?Sized>(
    org: &S,
    seq: u64,
    revoked: Vec<Revocation>,
    issued_at: u64,
) -> Result<Envelope, SignError> {
    let list = RevocationList {
        org_key: KeyBytes(*org.public_key().as_bytes()),
        seq,
        revoked,
        issued_at,
    };
    dsse::sign(
        RevocationList::KIND.payload_type(),
        otto_protocol::encode_payload(&list),
        org,
    )
}

/// One revoked node key, revoked from `at` for `reason`.
pub fn revocation(node_key: &PublicKey, at: u64, reason: &str) -> Revocation {
    Revocation {
        node_key: KeyBytes(*node_key.as_bytes()),
        at,
        reason: reason.to_owned(),
    }
}

impl TrustStore {
    /// Verifies a revocation list against the pinned orgs and keeps it if it is newer than
    /// the one kept for its org. Returns the org's pinned name.
    pub fn apply_revocation(&mut self, env: &Envelope) -> Result<String, RevocationError> {
        let list: RevocationList = env
            .payload_as()
            .map_err(|e| RevocationError::Malformed(e.to_string()))?;
        let org_key = PublicKey::from_bytes(list.org_key.as_bytes())
            .map_err(|e| RevocationError::Malformed(format!("org key: {e}")))?;
        let Some(org) = self.org_by_key(&org_key).map(|o| o.name.clone()) else {
            return Err(RevocationError::UnknownOrg {
                keyid: org_key.keyid(),
            });
        };
        Unverified::new(env.clone())
            .verify(&org_key)
            .map_err(|_| RevocationError::BadSignature { org: org.clone() })?;
        if let Some(kept) = self.revocations.get(&org)
            && kept.seq >= list.seq
        {
            return Err(RevocationError::Stale {
                org,
                current: kept.seq,
                offered: list.seq,
            });
        }
        self.revocations.insert(
            org.clone(),
            RevocationRecord {
                seq: list.seq,
                issued_at: list.issued_at,
                revoked: list.revoked,
                envelope: env.to_json(),
            },
        );
        Ok(org)
    }

    /// Whether pinned org `org` has revoked `node_key`. Only the node's own org can revoke
    /// it: a list from one org never affects another org's nodes.
    pub fn is_revoked(&self, org: &str, node_key: &PublicKey) -> bool {
        self.revocation_of(org, node_key).is_some()
    }

    /// The revocation of `node_key` by pinned org `org`, if any.
    pub fn revocation_of(&self, org: &str, node_key: &PublicKey) -> Option<&Revocation> {
        self.revocations
            .get(org)?
            .revoked
            .iter()
            .find(|r| r.node_key.as_bytes() == node_key.as_bytes())
    }

    /// The revocation list kept for pinned org `org`.
    pub fn revocations(&self, org: &str) -> Option<&RevocationRecord> {
        self.revocations.get(org)
    }
}

/// The payload type of revocation lists, for routing gossip.
pub fn revocation_payload_type() -> &'static str {
    Kind::RevocationList.payload_type()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cert::{CertError, CertSpec, issue_cert};
    use crate::keys::{NodeKey, OrgKey};

    fn org() -> OrgKey {
        OrgKey::from_seed(&[1; 32])
    }

    fn node(seed: u8) -> PublicKey {
        NodeKey::from_seed(&[seed; 32]).public_key()
    }

    fn store() -> TrustStore {
        let mut s = TrustStore::new();
        s.pin_org("ops", org().public_key(), 0).unwrap();
        s
    }

    #[test]
    fn applied_list_revokes_its_keys_only_for_its_org() {
        let mut s = store();
        s.pin_org("dev", OrgKey::from_seed(&[2; 32]).public_key(), 0)
            .unwrap();
        let env =
            sign_revocation(&org(), 1, vec![revocation(&node(10), 50, "stolen")], 60).unwrap();
        assert_eq!(env.payload_type, revocation_payload_type());
        assert_eq!(s.apply_revocation(&env), Ok("ops".into()));
        assert!(s.is_revoked("ops", &node(10)));
        assert!(!s.is_revoked("ops", &node(11)));
        assert!(!s.is_revoked("dev", &node(10)));
        assert_eq!(s.revocation_of("ops", &node(10)).unwrap().reason, "stolen");
        let kept = s.revocations("ops").unwrap();
        assert_eq!((kept.seq, kept.issued_at), (1, 60));
        assert_eq!(Envelope::from_json(&kept.envelope), Ok(env));
    }

    #[test]
    fn older_or_equal_lists_never_replace_newer_ones() {
        let mut s = store();
        let v2 = sign_revocation(&org(), 2, vec![revocation(&node(10), 0, "")], 0).unwrap();
        let v1 = sign_revocation(&org(), 1, vec![], 0).unwrap();
        let v2b = sign_revocation(&org(), 2, vec![], 0).unwrap();
        s.apply_revocation(&v2).unwrap();
        assert_eq!(
            s.apply_revocation(&v1),
            Err(RevocationError::Stale {
                org: "ops".into(),
                current: 2,
                offered: 1
            })
        );
        assert_eq!(
            s.apply_revocation(&v2b),
            Err(RevocationError::Stale {
                org: "ops".into(),
                current: 2,
                offered: 2
            })
        );
        assert!(s.is_revoked("ops", &node(10)));
        let v3 = sign_revocation(&org(), 3, vec![], 0).unwrap();
        s.apply_revocation(&v3).unwrap();
        assert!(
            !s.is_revoked("ops", &node(10)),
            "a newer full list can un-revoke"
        );
    }

    #[test]
    fn unknown_org_bad_signature_and_malformed() {
        let mut s = store();
        let stranger = OrgKey::from_seed(&[7; 32]);
        let env = sign_revocation(&stranger, 1, vec![], 0).unwrap();
        assert_eq!(
            s.apply_revocation(&env),
            Err(RevocationError::UnknownOrg {
                keyid: stranger.keyid().to_owned()
            })
        );

        // A list naming the pinned org key but signed by someone else.
        let forged_list = RevocationList {
            org_key: KeyBytes(*org().public_key().as_bytes()),
            seq: 9,
            revoked: vec![],
            issued_at: 0,
        };
        let forged = dsse::sign(
            revocation_payload_type(),
            otto_protocol::encode_payload(&forged_list),
            &stranger,
        )
        .unwrap();
        assert_eq!(
            s.apply_revocation(&forged),
            Err(RevocationError::BadSignature { org: "ops".into() })
        );

        let mut tampered = sign_revocation(&org(), 1, vec![], 0).unwrap();
        let last = tampered.payload.len() - 1;
        tampered.payload[last] ^= 1;
        assert!(s.apply_revocation(&tampered).is_err());

        let mut garbage = sign_revocation(&org(), 1, vec![], 0).unwrap();
        garbage.payload = vec![1, 2, 3];
        assert!(matches!(
            s.apply_revocation(&garbage),
            Err(RevocationError::Malformed(_))
        ));
        assert!(s.revocations("ops").is_none());
    }

    #[test]
    fn revoked_node_certificate_is_refused_by_the_store() {
        let mut s = store();
        let key = node(10);
        let spec = CertSpec {
            node: "ops-1".into(),
            org: "ops".into(),
            node_key: key,
            roles: vec![],
            not_before: 0,
            not_after: 100,
        };
        let cert = issue_cert(&spec, &org()).unwrap();
        assert!(s.verify_cert(&cert, 10).is_ok());
        s.apply_revocation(&sign_revocation(&org(), 1, vec![revocation(&key, 5, "")], 5).unwrap())
            .unwrap();
        assert_eq!(
            s.verify_cert(&cert, 10),
            Err(CertError::Revoked {
                node: key.keyid(),
                org: "ops".into()
            })
        );
    }

    #[test]
    fn kept_lists_survive_toml() {
        let mut s = store();
        s.apply_revocation(
            &sign_revocation(&org(), 4, vec![revocation(&node(3), 1, "x")], 2).unwrap(),
        )
        .unwrap();
        let back = TrustStore::from_toml(&s.to_toml()).unwrap();
        assert!(back.is_revoked("ops", &node(3)));
        assert_eq!(back, s);
    }
}
