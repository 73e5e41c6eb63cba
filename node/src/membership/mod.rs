//! Membership: who this node trusts at runtime, and how that changes.
//!
//! [`Membership`] holds the node's [`TrustStore`] (loaded from `trust.toml` and replaced
//! atomically on every change), the node's identity, the org key when the home has one, the
//! known nodes (from the store) with the trust store's verdict on each, and the peers the
//! mesh is connected to. It is the mesh's [`PeerPolicy`]: a peer may use the Otto protocols
//! when it is a known node whose certificate verifies against the current trust store (its
//! org pinned, the certificate within its window, the node not revoked).
//!
//! What changes trust:
//!
//! - **invites** ([`Membership::invite`], [`Membership::handle_join`],
//!   [`Membership::join`]): the inviter issues a token, the joiner presents it in a join
//!   request, and both sides pin the other's org and record the other node;
//! - **revocation** ([`Membership::revoke`], [`Membership::handle_revocation`]): a node
//!   holding its org's key signs a new revocation list, applies it and delivers it to every
//!   known node over `/otto/handoff/1`; a node applies a list only when its org is pinned,
//!   the org key signed it and it is newer than the one held;
//! - **aliases and approvals** ([`Membership::set_alias`], [`Membership::approve`]).
//!
//! Every change goes through [`Membership::update_trust`]: change a copy, write it to
//! `trust.toml` (atomically, mode 0600), swap it in, recompute the verdicts, ask the mesh
//! to apply the policy again, and disconnect the peers no longer allowed.
//!
//! Time comes from the [`Clock`] given to [`Membership::open`]; randomness comes in as an
//! argument. Methods that touch the store or `trust.toml` block: async callers run them on
//! a blocking thread.

mod dispatch;
mod invite;
mod revoke;
mod types;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use otto_protocol::{Envelope, Message};
use otto_trust::cert::CertError;
use otto_trust::invite::InviteError;
use otto_trust::keys::KeyError;
use otto_trust::persist::{self, PersistError};
use otto_trust::revocation::RevocationError;
use otto_trust::store::{AliasTarget, StoreError};
use otto_trust::{
    NodeKey, OrgKey, PublicKey, SignError, TrustStore, Unverified, Verified, VerifiedCert,
};

pub use dispatch::dispatch;
pub use invite::{MAX_INVITE_SECS, MAX_PARALLEL_LIMIT};
pub use otto_trust::{Definitions, Policy};
pub use types::{
    AliasView, ApprovalView, InviteRequest, InviteView, Invited, JoinOptions, Joined, OrgView,
    PeerView, PolicyRequest, Revoked, RevokedKey, TrustView,
};

use crate::home::{Home, Identity};

/// The most repositories a policy lists.
pub const MAX_POLICY_REPOS: usize = 256;
use crate::mesh::{self, MeshError, Multiaddr, PeerId, PeerPolicy};
use crate::store::{self, KnownNode, Store};

/// The log target of membership.
const TARGET: &str = "otto_node::membership";

/// The node's clock: seconds since the Unix epoch.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Who this node trusts, and the peers it knows. Cheap to clone: clones share one state.
#[derive(Clone)]
pub struct Membership(Arc<Inner>);

/// Why a membership operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] store::Error),
    /// `trust.toml` or a key file could not be read or written.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// The trust store refused the change.
    #[error(transparent)]
    Trust(#[from] StoreError),
    /// An invite could not be issued, opened or redeemed.
    #[error(transparent)]
    Invite(#[from] InviteError),
    /// A certificate does not verify against the trust store.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// A revocation list was not applied.
    #[error(transparent)]
    Revocation(#[from] RevocationError),
    /// Signing with the node or org key failed.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The mesh failed, e.g. the peer could not be reached.
    #[error(transparent)]
    Mesh(#[from] MeshError),
    /// The mesh is not running yet.
    #[error("the mesh is not running")]
    NoMesh,
    /// The request is not acceptable as it stands.
    #[error("{0}")]
    Invalid(String),
    /// No known node, org or key goes by that name.
    #[error("{0}")]
    Unknown(String),
    /// The operation needs the org key, which this node's home does not hold.
    #[error(
        "this node holds no org key (org.key in its home); revoke on the node that holds the org key"
    )]
    NoOrgKey,
    /// The node is already revoked.
    #[error("node {0} is already revoked")]
    AlreadyRevoked(String),
    /// The inviting node refused the join.
    #[error("{inviter} refused the join: {reason}")]
    Refused {
        /// The inviting node, as `node (org)`.
        inviter: String,
        /// Its reason.
        reason: String,
    },
    /// A peer's answer is not what the protocol says it sends.
    #[error("{0}")]
    BadAnswer(String),
}

/// The shared state behind [`Membership`].
struct Inner {
    trust_file: PathBuf,
    trust: RwLock<Arc<TrustStore>>,
    /// Serialises changes to the trust store (read, change, persist, swap).
    updates: Mutex<()>,
    key: NodeKey,
    cert: VerifiedCert,
    org_key: Option<OrgKey>,
    store: Store,
    clock: Clock,
    mesh: OnceLock<mesh::Client>,
    /// This node's mesh listen addresses, each ending in `/p2p/<peer id>`.
    addrs: RwLock<Vec<Multiaddr>>,
    /// The known nodes by peer id, with the trust store's verdict on each.
    book: RwLock<HashMap<PeerId, Entry>>,
    /// The connected peers and the address of their first connection.
    connected: Mutex<HashMap<PeerId, Multiaddr>>,
}

/// A known node and the trust store's verdict on its certificate.
struct Entry {
    node: KnownNode,
    key: PublicKey,
    verdict: Result<VerifiedCert, CertError>,
}

impl Membership {
    /// Opens the membership of the node of `home`: loads `trust.toml`, the org key when the
    /// home has one (and it certifies this node), and the known nodes from `store`.
    pub fn open(
        home: &Home,
        identity: Identity,
        store: Store,
        clock: Clock,
    ) -> Result<Self, MembershipError> {
        let trust = persist::load_trust_store(&home.trust_file())?;
        let org_file = home.org_key_file();
        let org_key = if org_file.exists() {
            let key = persist::load_org_key(&org_file)?;
            if key.public_key() == *identity.cert.org_key() {
                Some(key)
            } else {
                tracing::warn!(target: TARGET, file = %org_file.display(), "org.key is not the key of this node's org; ignoring it");
                None
            }
        } else {
            None
        };
        let membership = Self(Arc::new(Inner {
            trust_file: home.trust_file(),
            trust: RwLock::new(Arc::new(trust)),
            updates: Mutex::new(()),
            key: identity.key,
            cert: identity.cert,
            org_key,
            store,
            clock,
            mesh: OnceLock::new(),
            addrs: RwLock::new(Vec::new()),
            book: RwLock::new(HashMap::new()),
            connected: Mutex::new(HashMap::new()),
        }));
        for node in membership.0.store.nodes()? {
            membership.remember(node);
        }
        Ok(membership)
    }

    /// Hands the membership the running mesh and this node's listen addresses (each
    /// ending in `/p2p/<peer id>`); invites and joins carry these addresses. Only the first
    /// call sets the client.
    pub fn set_mesh(&self, client: mesh::Client, addrs: Vec<Multiaddr>) {
        let _ = self.0.mesh.set(client);
        *write(&self.0.addrs) = addrs;
    }

    /// The mesh client, once the mesh runs.
    pub fn mesh(&self) -> Option<&mesh::Client> {
        self.0.mesh.get()
    }

    /// This node's mesh listen addresses, each ending in `/p2p/<peer id>`.
    pub fn addrs(&self) -> Vec<Multiaddr> {
        read(&self.0.addrs).clone()
    }

    /// A snapshot of the current trust store.
    pub fn trust(&self) -> Arc<TrustStore> {
        Arc::clone(&read(&self.0.trust))
    }

    /// Changes the trust store: `f` changes a copy; when it succeeds the copy is written to
    /// `trust.toml` and replaces the current store, the verdicts on known nodes are
    /// recomputed, and the mesh applies the policy again (peers no longer allowed are
    /// disconnected). When `f` fails nothing changes.
    pub fn update_trust<T>(
        &self,
        f: impl FnOnce(&mut TrustStore) -> Result<T, MembershipError>,
    ) -> Result<T, MembershipError> {
        let _guard = self
            .0
            .updates
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut next = TrustStore::clone(&self.trust());
        let out = f(&mut next)?;
        persist::save_trust_store(&self.0.trust_file, &next)?;
        *write(&self.0.trust) = Arc::new(next);
        let dropped = self.reverify();
        self.refresh_mesh(dropped);
        Ok(out)
    }

    /// The node a plan's stage owner names, to offer the stage to: an alias of an org (a
    /// node of that org, connected ones first, then the most recently seen), an alias of a
    /// node key, a pinned org's name, or a known node's name. Only nodes the policy allows
    /// (certificate valid, org pinned, not revoked) are returned; `None` when there is
    /// none.
    pub fn resolve_owner(&self, owner: &str) -> Option<KnownNode> {
        let trust = self.trust();
        let book = read(&self.0.book);
        let now = self.now();
        let connected = lock(&self.0.connected);
        let allowed = |entry: &&Entry| allowed_at(entry, now);
        let best = |candidates: Vec<&Entry>| {
            candidates
                .into_iter()
                .max_by_key(|entry| {
                    let peer = entry.key.peer_id();
                    (
                        connected.contains_key(&peer),
                        entry.node.last_seen,
                        entry.node.added_at,
                    )
                })
                .map(|entry| entry.node.clone())
        };
        let of_org = |org: &str| -> Vec<&Entry> {
            book.values()
                .filter(allowed)
                .filter(|entry| entry.verdict.as_ref().is_ok_and(|cert| cert.org() == org))
                .collect()
        };
        match trust.alias(owner) {
            Some(AliasTarget::Org(org)) => return best(of_org(org)),
            Some(AliasTarget::Node(key)) => {
                return book
                    .values()
                    .filter(allowed)
                    .find(|entry| entry.key == *key)
                    .map(|entry| entry.node.clone());
            }
            None => {}
        }
        if trust.org(owner).is_some() {
            return best(of_org(owner));
        }
        best(
            book.values()
                .filter(allowed)
                .filter(|entry| entry.node.name == owner)
                .collect(),
        )
    }

    /// The key of the org whose node [`Membership::resolve_owner`] picks for `owner`: what
    /// a run started here binds the owner name to when no pinned org or alias names it.
    pub fn owner_org_key(&self, owner: &str) -> Option<PublicKey> {
        org_key_of(&self.resolve_owner(owner)?)
    }

    /// The known node with node key `key`, if the policy allows it (certificate valid, org
    /// pinned, not revoked): where a stage without an owner goes, to the node that started
    /// its run. With the key of its org.
    pub fn resolve_node(&self, key: &PublicKey) -> Option<(KnownNode, PublicKey)> {
        let book = read(&self.0.book);
        let now = self.now();
        let entry = book.get(&key.peer_id()).filter(|e| allowed_at(e, now))?;
        let org = *entry.verdict.as_ref().ok()?.org_key();
        Some((entry.node.clone(), org))
    }

    /// Records the node a certificate names (seen in a verified offer, receipt or
    /// revocation) as a known node, after verifying the certificate against the trust
    /// store at `now`. A node already known keeps its addresses and whether it joined.
    pub fn record_cert(&self, cert: &Envelope, now: u64) -> Result<KnownNode, MembershipError> {
        let verified = self.trust().verify_cert(cert, now)?;
        let node = self
            .0
            .store
            .put_node(&known_node(&verified, Vec::new(), false, now))?;
        self.remember(node.clone());
        Ok(node)
    }

    /// The verified certificate of the known node with this peer id, if the policy allows
    /// it now (certificate valid, org pinned, not revoked).
    pub fn verified_peer(&self, peer: &PeerId) -> Option<VerifiedCert> {
        let book = read(&self.0.book);
        let entry = book.get(peer).filter(|e| allowed_at(e, self.now()))?;
        entry.verdict.as_ref().ok().cloned()
    }

    /// The known node with this peer id.
    pub fn node_by_peer(&self, peer: &PeerId) -> Option<KnownNode> {
        read(&self.0.book).get(peer).map(|entry| entry.node.clone())
    }

    /// This node's certificate.
    pub fn certificate(&self) -> &Envelope {
        self.0.cert.envelope()
    }

    /// This node's certificate, verified when the node started.
    pub fn verified_certificate(&self) -> &VerifiedCert {
        &self.0.cert
    }

    /// This node's key, which signs its handoffs, receipts and answers.
    pub fn node_key(&self) -> &NodeKey {
        &self.0.key
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.0.key.peer_id()
    }

    /// Whether the mesh has a connection with `peer` now.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        lock(&self.0.connected).contains_key(peer)
    }

    /// Signs `message` with the node key as an envelope.
    pub fn sign(&self, message: &Message) -> Result<Envelope, SignError> {
        let payload = otto_protocol::encode(message);
        otto_trust::dsse::sign(message.payload_type(), payload, &self.0.key)
    }

    /// Approves inline stage steps by their definition digest (`sha256:` and 64 lowercase
    /// hex digits), as `otto-node approve DIGEST` does.
    pub fn approve(&self, digest: &str) -> Result<ApprovalView, MembershipError> {
        check_digest(digest)?;
        let now = self.now();
        self.update_trust(|trust| {
            trust.approve(digest, now);
            Ok(())
        })?;
        let approved_at = self
            .trust()
            .approvals()
            .find(|(d, _)| *d == digest)
            .map_or(now, |(_, approval)| approval.approved_at);
        Ok(ApprovalView {
            digest: digest.to_owned(),
            approved_at,
        })
    }

    /// Changes the secrets a pinned org's stages may receive, how many of one of its runs
    /// run at once and which git repositories this node fetches itself for its runs
    /// (`otto-node trust policy`); the org must have a policy here.
    /// Returns the policy as it now is.
    pub fn set_policy_limits(&self, request: &PolicyRequest) -> Result<Policy, MembershipError> {
        if let Some(secrets) = &request.secrets {
            invite::check_secret_globs(secrets)?;
        }
        if let Some(repos) = &request.repos {
            if repos.len() > MAX_POLICY_REPOS {
                return Err(MembershipError::Invalid(format!(
                    "at most {MAX_POLICY_REPOS} repositories, not {}",
                    repos.len()
                )));
            }
            for url in repos {
                otto_handoff::source::check_repo_url(url).map_err(|why| {
                    MembershipError::Invalid(format!(
                        "the repository URL {:?} is refused: {why}",
                        url.chars().take(256).collect::<String>()
                    ))
                })?;
            }
        }
        let max_parallel = request
            .max_parallel
            .map(invite::check_max_parallel)
            .transpose()?;
        self.update_trust(|trust| {
            let org = trust
                .resolve_org(&request.org)
                .map(|o| o.name.clone())
                .ok_or_else(|| MembershipError::Unknown(format!("no org {:?} is pinned here", request.org)))?;
            let mut policy = trust.policy(&org).cloned().ok_or_else(|| {
                MembershipError::Invalid(format!(
                    "org {org:?} has no policy here, so it may ask nothing; invite it (otto-node invite) first"
                ))
            })?;
            if let Some(secrets) = &request.secrets {
                policy.secrets.clone_from(secrets);
            }
            if let Some(n) = max_parallel {
                policy.max_parallel = n;
            }
            if let Some(repos) = &request.repos {
                policy.repos.clone_from(repos);
            }
            trust.set_policy(&org, policy.clone())?;
            Ok(policy)
        })
    }

    /// Sets `alias` for `target`: a pinned org (by name or by another alias), a node key
    /// id (`ed25519:…`) or a known node's name.
    pub fn set_alias(&self, alias: &str, target: &str) -> Result<AliasView, MembershipError> {
        let resolved = self.alias_target(target)?;
        self.update_trust(|trust| {
            trust.set_alias(alias, resolved.clone())?;
            Ok(())
        })?;
        Ok(AliasView::new(alias, &resolved))
    }

    /// The trust store as the API shows it.
    pub fn trust_view(&self) -> TrustView {
        TrustView::of(&self.trust(), self.0.cert.org_key())
    }

    /// Every known node, and every connected peer that is not one, as the API shows them.
    pub fn peers(&self) -> Vec<PeerView> {
        let trust = self.trust();
        let now = self.now();
        let book = read(&self.0.book);
        let connected = lock(&self.0.connected).clone();
        let mut views: Vec<PeerView> = book
            .iter()
            .map(|(peer, entry)| {
                PeerView::known(
                    &trust,
                    &entry.node,
                    &entry.key,
                    entry.verdict.as_ref(),
                    now,
                    connected.get(peer),
                )
            })
            .collect();
        for (peer, address) in &connected {
            if !book.contains_key(peer) {
                views.push(PeerView::stranger(peer, address));
            }
        }
        views.sort_by(|a, b| (&a.org, &a.node, &a.peer_id).cmp(&(&b.org, &b.node, &b.peer_id)));
        views
    }

    /// Notes a new connection: the peer joins the connected set and, when known, its
    /// last-seen time is now and its certificate is checked again (it may have entered its
    /// validity window since it was recorded). Does not touch the store; see
    /// [`Self::store_seen`].
    pub fn on_connected(&self, peer: PeerId, address: Multiaddr) {
        lock(&self.0.connected).insert(peer, address);
        self.touch(&peer);
    }

    /// Notes that the last connection with `peer` closed. Does not touch the store; see
    /// [`Self::store_seen`].
    pub fn on_disconnected(&self, peer: &PeerId) {
        lock(&self.0.connected).remove(peer);
        self.touch(peer);
    }

    /// Writes a known peer's last-seen time to the store. Blocks on the store.
    pub fn store_seen(&self, peer: &PeerId) {
        let Some((keyid, seen)) = read(&self.0.book)
            .get(peer)
            .and_then(|entry| Some((entry.node.keyid.clone(), entry.node.last_seen?)))
        else {
            return;
        };
        if let Err(err) = self.0.store.node_seen(&keyid, seen, None) {
            tracing::warn!(target: TARGET, %peer, "cannot record when the node was seen: {err}");
        }
    }

    /// Sets a known peer's last-seen time to now and checks its certificate again.
    fn touch(&self, peer: &PeerId) {
        let now = self.now();
        let trust = self.trust();
        if let Some(entry) = write(&self.0.book).get_mut(peer) {
            entry.node.last_seen = Some(now);
            entry.verdict = verdict(&trust, &entry.node, now);
        }
    }

    /// Adds or replaces a known node in the book, with the trust store's verdict, and lets
    /// the mesh apply the policy to it.
    fn remember(&self, node: KnownNode) {
        let Ok(key) = PublicKey::from_keyid(&node.keyid) else {
            tracing::warn!(target: TARGET, keyid = %node.keyid, "a known node has an invalid key id; ignoring it");
            return;
        };
        if key == self.0.key.public_key() {
            // This node's own certificate, seen in a chain: it is not a peer.
            return;
        }
        let verdict = verdict(&self.trust(), &node, self.now());
        write(&self.0.book).insert(key.peer_id(), Entry { node, key, verdict });
        self.refresh_mesh(Vec::new());
    }

    /// Recomputes the verdict on every known node; returns the connected peers that were
    /// allowed before and are not any more.
    fn reverify(&self) -> Vec<PeerId> {
        let trust = self.trust();
        let now = self.now();
        let connected = lock(&self.0.connected).clone();
        let mut dropped = Vec::new();
        for (peer, entry) in write(&self.0.book).iter_mut() {
            let before = allowed_at(entry, now);
            entry.verdict = verdict(&trust, &entry.node, now);
            if before && !allowed_at(entry, now) && connected.contains_key(peer) {
                dropped.push(*peer);
            }
        }
        dropped
    }

    /// Asks the mesh (when it runs, from a task) to apply the policy again and to close
    /// the connections with `dropped`.
    fn refresh_mesh(&self, dropped: Vec<PeerId>) {
        let (Some(client), Ok(runtime)) =
            (self.mesh().cloned(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        runtime.spawn(async move {
            if let Err(err) = client.refresh_policy().await {
                tracing::debug!(target: TARGET, "cannot refresh the mesh policy: {err}");
            }
            for peer in dropped {
                tracing::info!(target: TARGET, %peer, "disconnecting a peer no longer trusted");
                let _ = client.disconnect(peer).await;
            }
        });
    }

    /// What an alias target names: a pinned org, a node key id or a known node's name.
    fn alias_target(&self, target: &str) -> Result<AliasTarget, MembershipError> {
        if let Some(org) = self.trust().resolve_org(target) {
            return Ok(AliasTarget::Org(org.name.clone()));
        }
        if target.starts_with("ed25519:") {
            let key = PublicKey::from_keyid(target)
                .map_err(|err: KeyError| MembershipError::Invalid(err.to_string()))?;
            return Ok(AliasTarget::Node(key));
        }
        let key = self.node_named(target)?;
        Ok(AliasTarget::Node(key))
    }

    /// The key of the one known node named `name`.
    fn node_named(&self, name: &str) -> Result<PublicKey, MembershipError> {
        let book = read(&self.0.book);
        let matches: Vec<&Entry> = book
            .values()
            .filter(|entry| entry.node.name == name)
            .collect();
        match matches.as_slice() {
            [one] => Ok(one.key),
            [] => Err(MembershipError::Unknown(format!(
                "no pinned org, alias or known node is named {name:?} (see `otto-node peers` and `otto-node trust list`)"
            ))),
            many => Err(MembershipError::Invalid(format!(
                "{} known nodes are named {name:?}; name one by its key id: {}",
                many.len(),
                many.iter()
                    .map(|entry| entry.node.keyid.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    fn now(&self) -> u64 {
        (self.0.clock)()
    }

    fn client(&self) -> Result<&mesh::Client, MembershipError> {
        self.mesh().ok_or(MembershipError::NoMesh)
    }
}

impl PeerPolicy for Membership {
    fn allowed(&self, peer: &PeerId) -> bool {
        let now = self.now();
        read(&self.0.book)
            .get(peer)
            .is_some_and(|entry| allowed_at(entry, now))
    }

    fn knows_author(&self, author: &PeerId) -> bool {
        self.allowed(author)
    }

    fn verify_status(
        &self,
        author: &PeerId,
        envelope: Unverified<Envelope>,
    ) -> Option<Verified<Envelope>> {
        let now = self.now();
        let key = read(&self.0.book)
            .get(author)
            .filter(|entry| allowed_at(entry, now))
            .map(|entry| entry.key)?;
        envelope.verify(&key).ok()
    }
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("node", &self.0.cert.node())
            .field("org", &self.0.cert.org())
            .finish_non_exhaustive()
    }
}

/// The known-node record of a verified certificate.
fn known_node(cert: &VerifiedCert, addrs: Vec<String>, joined: bool, now: u64) -> KnownNode {
    KnownNode {
        keyid: cert.node_key().keyid(),
        peer_id: cert.node_key().peer_id().to_string(),
        name: cert.node().to_owned(),
        org: cert.org().to_owned(),
        cert: otto_protocol::encode_envelope(cert.envelope()),
        addrs,
        joined,
        added_at: now,
        last_seen: joined.then_some(now),
    }
}

/// The known nodes to dial, but this one: name (`node (org)`), peer id, addresses
/// without their `/p2p/…` suffix, node key.
fn dial_targets(membership: &Membership) -> Vec<(String, PeerId, Vec<Multiaddr>, PublicKey)> {
    read(&membership.0.book)
        .iter()
        .map(|(peer, entry)| {
            (
                format!("{} ({})", entry.node.name, entry.node.org),
                *peer,
                dial_addrs(&entry.node.addrs),
                entry.key,
            )
        })
        .collect()
}

/// The addresses that parse, without their `/p2p/…` suffix (the peer id comes from the
/// node's certificate).
fn dial_addrs(addrs: &[String]) -> Vec<Multiaddr> {
    addrs
        .iter()
        .filter_map(|addr| addr.parse::<Multiaddr>().ok())
        .map(|mut addr| {
            if matches!(
                addr.iter().last(),
                Some(libp2p::multiaddr::Protocol::P2p(_))
            ) {
                addr.pop();
            }
            addr
        })
        .collect()
}

/// The trust store's verdict on a known node's certificate at `now`.
fn verdict(trust: &TrustStore, node: &KnownNode, now: u64) -> Result<VerifiedCert, CertError> {
    let envelope = otto_protocol::decode_envelope(&node.cert)
        .map_err(|err| CertError::Malformed(err.to_string()))?;
    let cert = trust.verify_cert(&envelope, now)?;
    if cert.node_key().keyid() != node.keyid {
        return Err(CertError::Malformed(
            "the certificate is for another key than the known node's".to_owned(),
        ));
    }
    Ok(cert)
}

/// Whether a known node is allowed at `now`: its certificate verified and is within its
/// window.
/// The org key a known node's certificate names.
fn org_key_of(node: &KnownNode) -> Option<PublicKey> {
    let cert = otto_protocol::decode_envelope(&node.cert).ok()?;
    let cert: otto_protocol::NodeCertificate = cert.payload_as().ok()?;
    PublicKey::from_bytes(&cert.org_key).ok()
}

fn allowed_at(entry: &Entry, now: u64) -> bool {
    entry
        .verdict
        .as_ref()
        .is_ok_and(|cert| cert.not_before() <= now && now < cert.not_after())
}

/// The node key behind a peer id, when it is an Ed25519 key inlined in the id (as every
/// Otto node's is).
pub fn peer_key(peer: &PeerId) -> Option<PublicKey> {
    let multihash = peer.as_ref();
    // Code 0 is the identity hash: the digest is the protobuf-encoded public key.
    if multihash.code() != 0 {
        return None;
    }
    let key = libp2p::identity::PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    let ed25519 = key.try_into_ed25519().ok()?;
    PublicKey::from_bytes(&ed25519.to_bytes()).ok()
}

/// Checks a definition digest: `sha256:` and 64 lowercase hex digits.
fn check_digest(digest: &str) -> Result<(), MembershipError> {
    let hex = digest.strip_prefix("sha256:").unwrap_or_default();
    if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(MembershipError::Invalid(format!(
            "{digest:?} is not a definition digest: expected sha256: and 64 lowercase hex digits"
        )))
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
