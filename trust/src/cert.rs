//! Node certificates: an org key's signed statement that a node key belongs to the org,
//! with the node's name, roles and validity window.
//!
//! A certificate travels as a DSSE envelope of type
//! `application/vnd.otto.node-certificate+cbor` whose payload is the CBOR of
//! `otto_protocol::NodeCertificate`, signed by the org key named inside it.
//! It is trusted only when that org key is pinned here (or, while joining, when the org key
//! came with the join request) and `now` lies in its window.

#![warn(clippy::unwrap_used)]

use otto_protocol::time::utc_text;
use otto_protocol::{Envelope, NodeCertificate, Payload as _, RejectCode};

use crate::dsse::{self, Unverified};
use crate::keys::{PublicKey, SignError, Signer};
use crate::store::PinnedOrg;
use crate::valid_name;

/// What an org certifies about one of its nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    /// The node's name within its org, e.g. `ops-1`.
    pub node: String,
    /// The org's name, e.g. `acme-ops`.
    pub org: String,
    /// The node's public key.
    pub node_key: PublicKey,
    /// The roles the org grants the node.
    pub roles: Vec<String>,
    /// Valid from, in seconds since the Unix epoch.
    pub not_before: u64,
    /// Valid until (exclusive), in seconds since the Unix epoch.
    pub not_after: u64,
}

/// A certificate whose signature chains to a trusted org key and which was valid at the
/// time it was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCert {
    node: String,
    org: String,
    org_key: PublicKey,
    node_key: PublicKey,
    roles: Vec<String>,
    not_before: u64,
    not_after: u64,
    envelope: Envelope,
}

/// Why a certificate could not be issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// A node or org name is empty, too long, or has characters other than ASCII letters,
    /// digits, `-`, `_` and `.`.
    #[error("invalid name {0:?}: use 1 to 64 ascii letters, digits, '-', '_' or '.'")]
    Name(String),
    /// The window ends before it starts.
    #[error(
        "certificate window is empty: not_before {not_before} is not before not_after {not_after}"
    )]
    Window {
        /// The requested start.
        not_before: u64,
        /// The requested end.
        not_after: u64,
    },
    /// The org key's signer failed.
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// Why a certificate is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The envelope is not a well-formed node certificate.
    #[error("malformed node certificate: {0}")]
    Malformed(String),
    /// The org key that signed it is not pinned here.
    #[error("certificate is from org {org:?} ({keyid}), which is not trusted here")]
    UnknownOrg {
        /// The org name the certificate claims.
        org: String,
        /// The key id of the org key it names.
        keyid: String,
    },
    /// The signature does not verify with the org key the certificate names.
    #[error("certificate signature does not verify with the key of org {org:?}")]
    BadSignature {
        /// The org name the certificate claims.
        org: String,
    },
    /// `now` is before the certificate's window.
    #[error("certificate is not valid before {} (now {})", utc_text(*.not_before), utc_text(*.now))]
    NotYetValid {
        /// Start of the window.
        not_before: u64,
        /// The time of the check.
        now: u64,
    },
    /// `now` is at or after the end of the certificate's window.
    #[error("certificate expired at {} (now {})", utc_text(*.not_after), utc_text(*.now))]
    Expired {
        /// End of the window.
        not_after: u64,
        /// The time of the check.
        now: u64,
    },
    /// The node key was revoked by its org.
    #[error("node {node} was revoked by org {org:?}")]
    Revoked {
        /// The revoked node's key id.
        node: String,
        /// The org that revoked it.
        org: String,
    },
}

impl CertError {
    /// The code a handoff reject carries for this error.
    pub fn reject_code(&self) -> RejectCode {
        match self {
            Self::Malformed(_) => RejectCode::Malformed,
            Self::UnknownOrg { .. } => RejectCode::UnknownOrg,
            Self::BadSignature { .. } => RejectCode::BadSignature,
            Self::NotYetValid { .. } => RejectCode::CertificateNotYetValid,
            Self::Expired { .. } => RejectCode::CertificateExpired,
            Self::Revoked { .. } => RejectCode::NodeRevoked,
        }
    }
}

/// Issues a node certificate signed by `org`; the certificate names `org`'s public key.
pub fn issue_cert<S: Signer + ?Sized>(spec: &CertSpec, org: &S) -> Result<Envelope, IssueError> {
    for name in [&spec.node, &spec.org] {
        if !valid_name(name) {
            return Err(IssueError::Name(name.clone()));
        }
    }
    if spec.not_before >= spec.not_after {
        return Err(IssueError::Window {
            not_before: spec.not_before,
            not_after: spec.not_after,
        });
    }
    let cert = NodeCertificate {
        node: spec.node.clone(),
        org: spec.org.clone(),
        org_key: org.public_key().as_bytes().to_vec(),
        node_key: spec.node_key.as_bytes().to_vec(),
        roles: spec.roles.clone(),
        not_before: spec.not_before,
        not_after: spec.not_after,
    };
    Ok(dsse::sign(
        NodeCertificate::KIND.payload_type(),
        otto_protocol::encode_payload(&cert),
        org,
    )?)
}

/// Verifies a certificate against the pinned orgs at time `now`. The org is found by its
/// key, and the verified certificate carries the org's pinned (local) name.
pub fn verify_cert(
    env: &Envelope,
    pinned: &[PinnedOrg],
    now: u64,
) -> Result<VerifiedCert, CertError> {
    verify_with(env, now, |key, _| {
        pinned
            .iter()
            .find(|p| p.key == *key)
            .map(|p| p.name.clone())
    })
}

/// Verifies a certificate against one org key presented alongside it (a joiner's org key
/// in a join request), at time `now`. The org's name is the one the certificate claims.
pub fn verify_cert_with_org_key(
    env: &Envelope,
    org_key: &PublicKey,
    now: u64,
) -> Result<VerifiedCert, CertError> {
    verify_with(env, now, |key, claimed| {
        (key == org_key).then(|| claimed.to_owned())
    })
}

/// Verifies a certificate against the org key it names itself, at time `now`: it proves
/// the certificate is intact and consistent, not that the org is trusted. Used when the
/// trust comes from elsewhere, e.g. an invite token passed out of band.
pub fn verify_presented_cert(env: &Envelope, now: u64) -> Result<VerifiedCert, CertError> {
    let org_key = presented_org_key(env)?;
    verify_cert_with_org_key(env, &org_key, now)
}

/// The org key an unverified certificate names.
pub(crate) fn presented_org_key(env: &Envelope) -> Result<PublicKey, CertError> {
    let cert = decode(env)?;
    PublicKey::from_bytes(&cert.org_key).map_err(|e| CertError::Malformed(format!("org key: {e}")))
}

/// The node key an unverified certificate names.
pub(crate) fn presented_node_key(env: &Envelope) -> Result<PublicKey, CertError> {
    let cert = decode(env)?;
    PublicKey::from_bytes(&cert.node_key)
        .map_err(|e| CertError::Malformed(format!("node key: {e}")))
}

impl VerifiedCert {
    /// The node's name within its org.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The org's name (the pinned name when verified against the trust store).
    pub fn org(&self) -> &str {
        &self.org
    }

    /// The org key that signed the certificate.
    pub fn org_key(&self) -> &PublicKey {
        &self.org_key
    }

    /// The certified node key.
    pub fn node_key(&self) -> &PublicKey {
        &self.node_key
    }

    /// The roles the org grants the node.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// Start of the validity window (seconds since the Unix epoch).
    pub fn not_before(&self) -> u64 {
        self.not_before
    }

    /// End of the validity window, exclusive (seconds since the Unix epoch).
    pub fn not_after(&self) -> u64 {
        self.not_after
    }

    /// The signed certificate, for passing on to peers.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }
}

/// The shared verification: `org_name` maps the org key the certificate names (and the
/// org name it claims) to the name to trust it under, or `None` if the key is not trusted.
fn verify_with(
    env: &Envelope,
    now: u64,
    org_name: impl FnOnce(&PublicKey, &str) -> Option<String>,
) -> Result<VerifiedCert, CertError> {
    let cert = decode(env)?;
    let org_key = PublicKey::from_bytes(&cert.org_key)
        .map_err(|e| CertError::Malformed(format!("org key: {e}")))?;
    let node_key = PublicKey::from_bytes(&cert.node_key)
        .map_err(|e| CertError::Malformed(format!("node key: {e}")))?;
    let claimed: String = cert.org.chars().take(64).collect();
    let Some(org) = org_name(&org_key, &cert.org) else {
        return Err(CertError::UnknownOrg {
            org: claimed,
            keyid: org_key.keyid(),
        });
    };
    Unverified::new(env.clone())
        .verify(&org_key)
        .map_err(|_| CertError::BadSignature { org: claimed })?;
    if !valid_name(&cert.node) || !valid_name(&cert.org) {
        return Err(CertError::Malformed("invalid node or org name".to_owned()));
    }
    if cert.not_before >= cert.not_after {
        return Err(CertError::Malformed("validity window is empty".to_owned()));
    }
    if now < cert.not_before {
        return Err(CertError::NotYetValid {
            not_before: cert.not_before,
            now,
        });
    }
    if now >= cert.not_after {
        return Err(CertError::Expired {
            not_after: cert.not_after,
            now,
        });
    }
    Ok(VerifiedCert {
        node: cert.node,
        org,
        org_key,
        node_key,
        roles: cert.roles,
        not_before: cert.not_before,
        not_after: cert.not_after,
        envelope: env.clone(),
    })
}

fn decode(env: &Envelope) -> Result<NodeCertificate, CertError> {
    env.payload_as()
        .map_err(|e| CertError::Malformed(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::keys::{NodeKey, OrgKey};
    use otto_protocol::Kind;

    fn org() -> OrgKey {
        OrgKey::from_seed(&[1; 32])
    }

    fn spec() -> CertSpec {
        CertSpec {
            node: "ops-1".into(),
            org: "acme-ops".into(),
            node_key: NodeKey::from_seed(&[2; 32]).public_key(),
            roles: vec!["deploy".into()],
            not_before: 1000,
            not_after: 2000,
        }
    }

    fn sign_raw(cert: &NodeCertificate, org: &OrgKey) -> Envelope {
        dsse::sign(
            Kind::NodeCertificate.payload_type(),
            otto_protocol::encode_payload(cert),
            org,
        )
        .unwrap()
    }

    fn pins() -> Vec<PinnedOrg> {
        vec![PinnedOrg {
            name: "ops".into(),
            key: org().public_key(),
            added_at: 0,
        }]
    }

    #[test]
    fn issued_cert_verifies_against_pinned_org() {
        let env = issue_cert(&spec(), &org()).unwrap();
        assert_eq!(env.payload_type, Kind::NodeCertificate.payload_type());
        let cert = verify_cert(&env, &pins(), 1500).unwrap();
        assert_eq!(cert.node(), "ops-1");
        assert_eq!(cert.org(), "ops", "the pinned name wins");
        assert_eq!(cert.org_key(), &org().public_key());
        assert_eq!(cert.node_key(), &spec().node_key);
        assert_eq!(cert.roles(), ["deploy"]);
        assert_eq!((cert.not_before(), cert.not_after()), (1000, 2000));
        assert_eq!(cert.envelope(), &env);
    }

    #[test]
    fn reject_codes_follow_the_error() {
        let env = issue_cert(&spec(), &org()).unwrap();
        let code = |now| verify_cert(&env, &pins(), now).unwrap_err().reject_code();
        assert_eq!(code(0), RejectCode::CertificateNotYetValid);
        assert_eq!(code(5000), RejectCode::CertificateExpired);
        let unknown = verify_cert(&env, &[], 1500).unwrap_err();
        assert_eq!(unknown.reject_code(), RejectCode::UnknownOrg);
        let revoked = CertError::Revoked {
            node: String::new(),
            org: String::new(),
        };
        assert_eq!(revoked.reject_code(), RejectCode::NodeRevoked);
    }

    #[test]
    fn window_edges() {
        let env = issue_cert(&spec(), &org()).unwrap();
        assert!(verify_cert(&env, &pins(), 1000).is_ok());
        assert!(verify_cert(&env, &pins(), 1999).is_ok());
        assert_eq!(
            verify_cert(&env, &pins(), 999),
            Err(CertError::NotYetValid {
                not_before: 1000,
                now: 999
            })
        );
        assert_eq!(
            verify_cert(&env, &pins(), 2000),
            Err(CertError::Expired {
                not_after: 2000,
                now: 2000
            })
        );
        // Said as dates, not as seconds since the epoch.
        assert_eq!(
            CertError::Expired {
                not_after: 1_796_662_709,
                now: 1_796_662_710
            }
            .to_string(),
            "certificate expired at 2026-12-07 16:58:29 UTC (now 2026-12-07 16:58:30 UTC)"
        );
    }

    #[test]
    fn unknown_org_is_named() {
        let env = issue_cert(&spec(), &OrgKey::from_seed(&[9; 32])).unwrap();
        assert_eq!(
            verify_cert(&env, &pins(), 1500),
            Err(CertError::UnknownOrg {
                org: "acme-ops".into(),
                keyid: OrgKey::from_seed(&[9; 32]).keyid().to_owned(),
            })
        );
        assert!(matches!(
            verify_cert(&env, &[], 1500),
            Err(CertError::UnknownOrg { .. })
        ));
    }

    #[test]
    fn cert_naming_a_pinned_org_but_signed_by_another_key_is_bad() {
        // A rogue org writes the pinned org's key into its certificate and signs it itself.
        let rogue = OrgKey::from_seed(&[9; 32]);
        let cert = NodeCertificate {
            node: "evil".into(),
            org: "acme-ops".into(),
            org_key: org().public_key().as_bytes().to_vec(),
            node_key: spec().node_key.as_bytes().to_vec(),
            roles: vec![],
            not_before: 0,
            not_after: 10_000,
        };
        let env = sign_raw(&cert, &rogue);
        assert_eq!(
            verify_cert(&env, &pins(), 1500),
            Err(CertError::BadSignature {
                org: "acme-ops".into()
            })
        );
    }

    #[test]
    fn tampering_is_detected() {
        let env = issue_cert(&spec(), &org()).unwrap();
        for i in 0..env.payload.len() {
            let mut bad = env.clone();
            bad.payload[i] ^= 0x01;
            assert!(
                verify_cert(&bad, &pins(), 1500).is_err(),
                "payload byte {i}"
            );
        }
        for i in 0..64 {
            let mut bad = env.clone();
            bad.signatures[0].sig[i] ^= 0x80;
            assert_eq!(
                verify_cert(&bad, &pins(), 1500),
                Err(CertError::BadSignature {
                    org: "acme-ops".into()
                })
            );
        }
    }

    #[test]
    fn malformed_certs() {
        let env = issue_cert(&spec(), &org()).unwrap();
        let mut wrong_type = env.clone();
        wrong_type.payload_type = "application/vnd.otto.offer+cbor".into();
        assert!(matches!(
            verify_cert(&wrong_type, &pins(), 1500),
            Err(CertError::Malformed(_))
        ));
        let mut garbage = env.clone();
        garbage.payload = vec![0xff, 0x00];
        assert!(matches!(
            verify_cert(&garbage, &pins(), 1500),
            Err(CertError::Malformed(_))
        ));
        let mut huge = env;
        huge.payload = vec![0; Kind::NodeCertificate.max_bytes() + 1];
        assert!(matches!(
            verify_cert(&huge, &pins(), 1500),
            Err(CertError::Malformed(_))
        ));
        // Signed, but with a bad window and a bad node key.
        let mut cert = NodeCertificate {
            node: "n".into(),
            org: "o".into(),
            org_key: org().public_key().as_bytes().to_vec(),
            node_key: spec().node_key.as_bytes().to_vec(),
            roles: vec![],
            not_before: 5,
            not_after: 5,
        };
        let env = sign_raw(&cert, &org());
        assert_eq!(
            verify_cert(&env, &pins(), 5),
            Err(CertError::Malformed("validity window is empty".into()))
        );
        cert.node_key = vec![1; 31];
        let env = sign_raw(&cert, &org());
        assert!(matches!(
            verify_cert(&env, &pins(), 5),
            Err(CertError::Malformed(m)) if m.starts_with("node key")
        ));
        cert.node_key = spec().node_key.as_bytes().to_vec();
        cert.not_after = 10;
        cert.node = "bad\nname".into();
        let env = sign_raw(&cert, &org());
        assert_eq!(
            verify_cert(&env, &pins(), 5),
            Err(CertError::Malformed("invalid node or org name".into()))
        );
    }

    #[test]
    fn issue_checks_names_and_window() {
        let mut s = spec();
        s.not_after = s.not_before;
        assert!(matches!(
            issue_cert(&s, &org()),
            Err(IssueError::Window {
                not_before: 1000,
                not_after: 1000
            })
        ));
        let mut s = spec();
        s.node = String::new();
        assert!(matches!(issue_cert(&s, &org()), Err(IssueError::Name(n)) if n.is_empty()));
        let mut s = spec();
        s.org = "a b".into();
        assert!(matches!(issue_cert(&s, &org()), Err(IssueError::Name(_))));
    }

    #[test]
    fn verify_with_presented_org_key_uses_claimed_name() {
        let env = issue_cert(&spec(), &org()).unwrap();
        let cert = verify_cert_with_org_key(&env, &org().public_key(), 1500).unwrap();
        assert_eq!(cert.org(), "acme-ops");
        let other = OrgKey::from_seed(&[3; 32]).public_key();
        assert!(matches!(
            verify_cert_with_org_key(&env, &other, 1500),
            Err(CertError::UnknownOrg { .. })
        ));
    }
}
