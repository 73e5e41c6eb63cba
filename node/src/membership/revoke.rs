//! Revocation: an org's node with the org key signs a new revocation list, applies it, and
//! delivers it to every known node over `/otto/handoff/1`; receivers apply a list only when
//! its org is pinned, the org key signed it and it is newer than the list they hold.
//!
//! A list also travels when a connection opens: a node hands its own org's latest list to
//! every allowed peer it connects with, so a peer that was away when a node was revoked
//! learns it at the next connection; [`Membership::reconnect`] opens those connections
//! when the node starts.

use std::time::Duration;

use futures::future::join_all;
use otto_protocol::{Accept, Envelope, HandoffId, Message, RejectCode};
use otto_trust::revocation::{RevocationError, revocation, sign_revocation};
use otto_trust::{PublicKey, Unverified};

use super::invite::reject;
use super::{Membership, MembershipError, Revoked, TARGET, dial_targets};
use crate::mesh::{Multiaddr, PeerId, PeerPolicy as _};

/// How long the delivery of a revocation list to one peer may take, dial included.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);

impl Membership {
    /// Revokes a node of this node's org, named by key id (`ed25519:…`) or by its name
    /// (a known node's, or this node's own): signs the org's next revocation list with the
    /// org key, applies it here, and delivers it to every known node. Needs the org key.
    pub async fn revoke(&self, node: &str, reason: &str) -> Result<Revoked, MembershipError> {
        let Some(org_key) = &self.0.org_key else {
            return Err(MembershipError::NoOrgKey);
        };
        let (key, name) = self.revocation_target(node)?;
        let now = self.now();
        let own_org = *self.0.cert.org_key();
        let (org, seq, list) = self.update_trust(|trust| {
            let org = trust
                .org_by_key(&own_org)
                .map(|o| o.name.clone())
                .ok_or_else(|| {
                    MembershipError::Invalid(
                        "this node's own org is not pinned in trust.toml".to_owned(),
                    )
                })?;
            if trust.is_revoked(&org, &key) {
                return Err(MembershipError::AlreadyRevoked(key.keyid()));
            }
            let kept = trust.revocations(&org);
            let seq = kept.map_or(1, |list| list.seq + 1);
            let mut revoked = kept.map(|list| list.revoked.clone()).unwrap_or_default();
            revoked.push(revocation(&key, now, reason));
            let list = sign_revocation(org_key, seq, revoked, now)?;
            trust.apply_revocation(&list)?;
            Ok((org, seq, list))
        })?;
        tracing::info!(target: TARGET, node = %key.keyid(), seq, "node revoked");
        let (delivered, failed) = self.deliver(&list, &key).await;
        Ok(Revoked {
            org,
            node_key: key.keyid(),
            node: name,
            seq,
            delivered,
            failed,
        })
    }

    /// Answers a revocation list delivered by `peer`: applies it when its org is pinned
    /// here, the org key signed it and it is newer than the one held. The answer is a
    /// signed `accept` (all-zero id) when this node now holds that list or a newer one, or
    /// a signed `reject` saying why not. Blocks on `trust.toml`.
    pub fn handle_revocation(
        &self,
        peer: PeerId,
        envelope: Unverified<Envelope>,
    ) -> Result<Envelope, MembershipError> {
        let list = envelope.into_inner();
        let (code, message) = match self.update_trust(|trust| Ok(trust.apply_revocation(&list)?)) {
            Ok(org) => {
                tracing::info!(target: TARGET, %peer, %org, "revocation list applied");
                return accept(self);
            }
            Err(MembershipError::Revocation(RevocationError::Stale { .. })) => {
                return accept(self);
            }
            Err(MembershipError::Revocation(err)) => {
                let code = match err {
                    RevocationError::UnknownOrg { .. } => RejectCode::UnknownOrg,
                    RevocationError::BadSignature { .. } => RejectCode::BadSignature,
                    _ => RejectCode::Malformed,
                };
                (code, err.to_string())
            }
            Err(err) => {
                tracing::warn!(target: TARGET, %peer, "cannot apply a revocation list: {err}");
                (
                    RejectCode::Internal,
                    "the node could not store the list".to_owned(),
                )
            }
        };
        tracing::debug!(target: TARGET, %peer, "revocation list refused: {message}");
        reject(self, code, &message)
    }

    /// Hands this node's own org's latest revocation list, if it holds one, to `peer`
    /// when the policy allows it (a new connection). Failures are logged only.
    pub async fn push_revocations(&self, peer: PeerId) {
        if !self.allowed(&peer) {
            return;
        }
        let trust = self.trust();
        let Some(list) = trust
            .org_by_key(self.0.cert.org_key())
            .and_then(|org| trust.revocations(&org.name))
            .and_then(|kept| Envelope::from_json(&kept.envelope).ok())
        else {
            return;
        };
        let Ok(client) = self.client() else {
            return;
        };
        match tokio::time::timeout(DELIVERY_TIMEOUT, client.send_revocation(peer, list)).await {
            Ok(Ok(_)) => tracing::debug!(target: TARGET, %peer, "revocation list handed on"),
            Ok(Err(err)) => {
                tracing::debug!(target: TARGET, %peer, "cannot hand on the revocation list: {err}");
            }
            Err(_) => {
                tracing::debug!(target: TARGET, %peer, "handing on the revocation list timed out")
            }
        }
    }

    /// Dials every node that joined (either way), so that peers learn this node's
    /// current addresses after a restart and exchange what they hold for each other (a
    /// new connection carries this org's revocation list). Failures are logged only.
    pub async fn reconnect(&self) {
        let Ok(client) = self.client() else {
            return;
        };
        let joined: Vec<(String, PeerId, Vec<Multiaddr>)> = dial_targets(self)
            .into_iter()
            .filter(|(_, peer, _, _)| {
                self.node_by_peer(peer).is_some_and(|node| node.joined) && self.allowed(peer)
            })
            .map(|(name, peer, addrs, _)| (name, peer, addrs))
            .collect();
        let dials = joined.into_iter().map(|(name, peer, addrs)| async move {
            match tokio::time::timeout(DELIVERY_TIMEOUT, client.dial(peer, addrs)).await {
                Ok(Ok(())) => tracing::debug!(target: TARGET, node = %name, "reconnected"),
                Ok(Err(err)) => {
                    tracing::debug!(target: TARGET, node = %name, "cannot reconnect: {err}");
                }
                Err(_) => tracing::debug!(target: TARGET, node = %name, "reconnecting timed out"),
            }
        });
        join_all(dials).await;
    }

    /// The key and, when known, the name of the node `node` names: a key id, this node's
    /// own name, or a known node's name. It must belong to this node's org.
    fn revocation_target(
        &self,
        node: &str,
    ) -> Result<(PublicKey, Option<String>), MembershipError> {
        let own_org = *self.0.cert.org_key();
        if node.starts_with("ed25519:") {
            let key = PublicKey::from_keyid(node)
                .map_err(|err| MembershipError::Invalid(err.to_string()))?;
            let name = self
                .node_by_peer(&key.peer_id())
                .map(|known| known.name)
                .or_else(|| {
                    (key == self.0.key.public_key()).then(|| self.0.cert.node().to_owned())
                });
            return Ok((key, name));
        }
        if node == self.0.cert.node() {
            return Ok((self.0.key.public_key(), Some(node.to_owned())));
        }
        let key = self.node_named(node)?;
        let org_key = self.known_org_key(&key);
        if org_key.is_some_and(|k| k != own_org) {
            return Err(MembershipError::Invalid(format!(
                "node {node:?} is not of this node's org: an org revokes only its own nodes"
            )));
        }
        Ok((key, Some(node.to_owned())))
    }

    /// The org key in a known node's certificate.
    fn known_org_key(&self, key: &PublicKey) -> Option<PublicKey> {
        let node = self.node_by_peer(&key.peer_id())?;
        let envelope = otto_protocol::decode_envelope(&node.cert).ok()?;
        otto_trust::cert::verify_presented_cert(&envelope, self.now())
            .ok()
            .map(|cert| *cert.org_key())
    }

    /// Delivers a revocation list to every known node but this one and the revoked one;
    /// returns the names of those that took it and of those that did not, with why.
    async fn deliver(
        &self,
        list: &Envelope,
        revoked: &PublicKey,
    ) -> (Vec<String>, Vec<(String, String)>) {
        let Ok(client) = self.client() else {
            return (Vec::new(), Vec::new());
        };
        let targets: Vec<(String, PeerId, Vec<Multiaddr>, PublicKey)> = dial_targets(self)
            .into_iter()
            .filter(|(_, _, _, key)| key != revoked)
            .collect();
        let sends = targets.into_iter().map(|(name, peer, addrs, key)| {
            let list = list.clone();
            async move {
                let sent = tokio::time::timeout(DELIVERY_TIMEOUT, async {
                    client.dial(peer, addrs).await?;
                    client.send_revocation(peer, list).await
                })
                .await;
                let outcome = match sent {
                    Ok(Ok(answer)) => match answer.verify(&key).map(|a| a.get().message()) {
                        Ok(Ok(Message::Accept(_))) => Ok(()),
                        Ok(Ok(Message::Reject(reject))) => Err(reject.message),
                        _ => Err("its answer is not a signed accept or reject".to_owned()),
                    },
                    Ok(Err(err)) => Err(err.to_string()),
                    Err(_) => Err("it did not answer in time".to_owned()),
                };
                (name, outcome)
            }
        });
        let mut delivered = Vec::new();
        let mut failed = Vec::new();
        for (name, outcome) in join_all(sends).await {
            match outcome {
                Ok(()) => delivered.push(name),
                Err(reason) => {
                    tracing::warn!(target: TARGET, node = %name, "revocation list not delivered: {reason}");
                    failed.push((name, reason));
                }
            }
        }
        (delivered, failed)
    }
}

/// A signed `accept` with an all-zero id: the acknowledgement of a revocation list.
fn accept(membership: &Membership) -> Result<Envelope, MembershipError> {
    let accept = Message::Accept(Accept {
        id: HandoffId([0; 16]),
        stage: String::new(),
        attempt: 0,
    });
    Ok(membership.sign(&accept)?)
}
