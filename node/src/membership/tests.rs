//! Unit tests of membership: owner resolution, the peer policy, joins and revocation
//! lists, on a real home and store with a clock the test moves.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use otto_protocol::{JoinRequest, JoinResponse, Kind, Message, RejectCode};
use otto_trust::cert::{CertSpec, issue_cert};
use otto_trust::revocation::{revocation, sign_revocation};
use otto_trust::{NodeKey, OrgKey};
use rand::SeedableRng as _;

use super::*;
use crate::home::{self, InitOptions};

const NOW: u64 = 1_700_000_000;
const YEAR: u64 = 365 * 24 * 60 * 60;

/// A node home of org `dev` with its membership, and the clock it reads.
struct Fixture {
    _dir: tempfile::TempDir,
    home: Home,
    clock: Arc<AtomicU64>,
    membership: Membership,
}

/// A node of another org: its keys and certificate.
struct Peer {
    key: NodeKey,
    cert: Envelope,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("home");
    let options = InitOptions {
        org: "dev".into(),
        name: "dev-1".into(),
        org_key: None,
        answers_to: vec![],
        run_as: None,
    };
    home::init(
        &root,
        &options,
        &mut rand::rngs::StdRng::seed_from_u64(1),
        NOW,
    )
    .unwrap();
    let home = Home::new(&root);
    let store = Store::open(home.store_file()).unwrap();
    let clock = Arc::new(AtomicU64::new(NOW + 10));
    let ticks = Arc::clone(&clock);
    let membership = Membership::open(
        &home,
        home.identity(NOW).unwrap(),
        store,
        Arc::new(move || ticks.load(Ordering::SeqCst)),
    )
    .unwrap();
    Fixture {
        _dir: dir,
        home,
        clock,
        membership,
    }
}

fn org(seed: u8) -> OrgKey {
    OrgKey::from_seed(&[seed; 32])
}

/// Node `name` of the org with key `org` (named `org_name`), key from `seed`, valid for a
/// year from `NOW`.
fn peer(org: &OrgKey, org_name: &str, name: &str, seed: u8) -> Peer {
    let key = NodeKey::from_seed(&[seed; 32]);
    let spec = CertSpec {
        node: name.into(),
        org: org_name.into(),
        node_key: key.public_key(),
        roles: vec![],
        not_before: NOW,
        not_after: NOW + YEAR,
    };
    let cert = issue_cert(&spec, org).unwrap();
    Peer { key, cert }
}

impl Fixture {
    fn at(&self, now: u64) {
        self.clock.store(now, Ordering::SeqCst);
    }

    fn pin(&self, name: &str, org: &OrgKey) {
        self.membership
            .update_trust(|t| Ok(t.pin_org(name, org.public_key(), NOW)?))
            .unwrap();
    }

    fn alias(&self, alias: &str, target: AliasTarget) {
        self.membership
            .update_trust(|t| Ok(t.set_alias(alias, target)?))
            .unwrap();
    }

    fn record(&self, peer: &Peer) -> KnownNode {
        self.membership.record_cert(&peer.cert, NOW + 10).unwrap()
    }

    fn resolve(&self, owner: &str) -> Option<String> {
        self.membership.resolve_owner(owner).map(|node| node.name)
    }
}

impl Peer {
    fn id(&self) -> PeerId {
        self.key.peer_id()
    }

    fn addr(&self) -> Multiaddr {
        "/ip4/127.0.0.1/tcp/4001".parse().unwrap()
    }
}

#[test]
fn owners_resolve_through_aliases_org_names_and_node_names() {
    let f = fixture();
    let ops = org(7);
    f.pin("acme-ops", &ops);
    f.alias("ops", AliasTarget::Org("acme-ops".into()));
    let ops1 = peer(&ops, "acme-ops", "ops-1", 11);
    let ops2 = peer(&ops, "acme-ops", "ops-2", 12);
    f.record(&ops1);
    f.record(&ops2);
    f.alias("deployer", AliasTarget::Node(ops1.key.public_key()));

    // Neither connected nor seen: the one recorded first loses to neither; both qualify.
    assert!(f.resolve("ops").is_some());

    // The most recently seen wins among the disconnected ones.
    f.at(NOW + 100);
    f.membership.on_connected(ops1.id(), ops1.addr());
    f.membership.on_disconnected(&ops1.id());
    f.at(NOW + 200);
    f.membership.on_connected(ops2.id(), ops2.addr());
    f.membership.on_disconnected(&ops2.id());
    assert_eq!(f.resolve("ops").as_deref(), Some("ops-2"));

    // A connected node beats a more recently seen one.
    f.at(NOW + 300);
    f.membership.on_connected(ops1.id(), ops1.addr());
    assert!(f.membership.is_connected(&ops1.id()));
    assert_eq!(f.resolve("ops").as_deref(), Some("ops-1"));

    // The org's own name, a node alias and a node name resolve too.
    assert_eq!(f.resolve("acme-ops").as_deref(), Some("ops-1"));
    assert_eq!(f.resolve("deployer").as_deref(), Some("ops-1"));
    assert_eq!(f.resolve("ops-2").as_deref(), Some("ops-2"));
    assert_eq!(f.resolve("qa"), None);
}

#[test]
fn owners_never_resolve_to_untrusted_nodes() {
    let f = fixture();
    let ops = org(7);
    f.pin("acme-ops", &ops);
    f.alias("ops", AliasTarget::Org("acme-ops".into()));
    let ops1 = peer(&ops, "acme-ops", "ops-1", 11);
    f.record(&ops1);
    assert_eq!(f.resolve("ops").as_deref(), Some("ops-1"));

    // Revoked by its org: gone.
    let list = sign_revocation(
        &ops,
        1,
        vec![revocation(&ops1.key.public_key(), NOW, "lost")],
        NOW,
    )
    .unwrap();
    f.membership
        .update_trust(|t| Ok(t.apply_revocation(&list)?))
        .unwrap();
    assert_eq!(f.resolve("ops"), None);
    assert_eq!(f.resolve("ops-1"), None);

    // Its certificate expired: gone as well.
    let ops2 = peer(&ops, "acme-ops", "ops-2", 12);
    f.record(&ops2);
    assert_eq!(f.resolve("ops").as_deref(), Some("ops-2"));
    f.at(NOW + YEAR);
    assert_eq!(f.resolve("ops"), None);
}

#[test]
fn the_policy_allows_known_nodes_of_pinned_orgs_only() {
    let f = fixture();
    let ops = org(7);
    let ops1 = peer(&ops, "acme-ops", "ops-1", 11);
    let stranger = peer(&org(8), "other", "x-1", 13);

    // Unknown org: the certificate is refused, the peer is not allowed.
    assert!(matches!(
        f.membership.record_cert(&ops1.cert, NOW + 10),
        Err(MembershipError::Cert(CertError::UnknownOrg { .. }))
    ));
    assert!(!f.membership.allowed(&ops1.id()));

    f.pin("acme-ops", &ops);
    assert!(!f.membership.allowed(&ops1.id()), "pinned but not known");
    f.record(&ops1);
    assert!(f.membership.allowed(&ops1.id()));
    assert!(!f.membership.allowed(&stranger.id()));
    assert_eq!(
        f.membership.node_by_peer(&ops1.id()).map(|n| n.name),
        Some("ops-1".to_owned())
    );

    // Status events verify with the author's key only, and only for allowed authors.
    let status = Message::Status(otto_protocol::Status {
        run: "r".into(),
        stage: "Deploy".into(),
        attempt: 1,
        seq: 0,
        state: otto_protocol::StageState::Running,
        at: NOW,
        detail: None,
        log: vec![],
        log_seq: None,
        at_ms: None,
    });
    let signed = |key: &NodeKey| {
        otto_trust::dsse::sign(
            Kind::Status.payload_type(),
            otto_protocol::encode(&status),
            key,
        )
        .unwrap()
    };
    assert!(
        f.membership
            .verify_status(&ops1.id(), Unverified::new(signed(&ops1.key)))
            .is_some()
    );
    assert!(
        f.membership
            .verify_status(&ops1.id(), Unverified::new(signed(&stranger.key)))
            .is_none()
    );
    assert!(
        f.membership
            .verify_status(&stranger.id(), Unverified::new(signed(&stranger.key)))
            .is_none()
    );

    // Unpinning the org withdraws the node's permission at once.
    f.membership
        .update_trust(|t| {
            t.unpin_org("acme-ops");
            Ok(())
        })
        .unwrap();
    assert!(!f.membership.allowed(&ops1.id()));

    // The trust store on disk follows every change.
    let on_disk = persist::load_trust_store(&f.home.trust_file()).unwrap();
    assert!(on_disk.org("acme-ops").is_none());
}

#[test]
fn known_nodes_and_trust_survive_a_reopen() {
    let f = fixture();
    let ops = org(7);
    f.pin("acme-ops", &ops);
    let ops1 = peer(&ops, "acme-ops", "ops-1", 11);
    f.record(&ops1);
    let store = f.membership.0.store.clone();
    let reopened = Membership::open(
        &f.home,
        f.home.identity(NOW).unwrap(),
        store,
        Arc::new(|| NOW + 20),
    )
    .unwrap();
    assert!(reopened.allowed(&ops1.id()));
    assert_eq!(
        reopened
            .resolve_owner("acme-ops")
            .map(|n| n.name)
            .as_deref(),
        Some("ops-1")
    );
}

#[test]
fn revocation_lists_apply_when_pinned_signed_and_newer() {
    let f = fixture();
    let ops = org(7);
    f.pin("acme-ops", &ops);
    let ops1 = peer(&ops, "acme-ops", "ops-1", 11);
    f.record(&ops1);
    let answer_of = |list: &Envelope| {
        let answer = f
            .membership
            .handle_revocation(ops1.id(), Unverified::new(list.clone()))
            .unwrap();
        assert!(answer.signatures[0].keyid == f.membership.node_key().keyid());
        answer.message().unwrap()
    };

    let v2 = sign_revocation(
        &ops,
        2,
        vec![revocation(&ops1.key.public_key(), NOW, "lost")],
        NOW,
    )
    .unwrap();
    assert!(matches!(answer_of(&v2), Message::Accept(_)));
    assert!(!f.membership.allowed(&ops1.id()));

    // An older list is acknowledged but changes nothing.
    let v1 = sign_revocation(&ops, 1, vec![], NOW).unwrap();
    assert!(matches!(answer_of(&v1), Message::Accept(_)));
    assert!(!f.membership.allowed(&ops1.id()));

    // A list of an org not pinned here is refused.
    let foreign = sign_revocation(&org(9), 5, vec![], NOW).unwrap();
    match answer_of(&foreign) {
        Message::Reject(reject) => assert_eq!(reject.code, RejectCode::UnknownOrg),
        other => panic!("expected a reject, got {other:?}"),
    }
}

#[test]
fn revoking_needs_the_org_key_and_signs_the_next_list() {
    let f = fixture();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A home made by `init` holds its org key.
    let first = runtime
        .block_on(f.membership.revoke("ed25519:".to_owned().as_str(), ""))
        .unwrap_err();
    assert!(matches!(first, MembershipError::Invalid(_)), "{first}");
    let lost = NodeKey::from_seed(&[42; 32]).public_key();
    let revoked = runtime
        .block_on(f.membership.revoke(&lost.keyid(), "laptop stolen"))
        .unwrap();
    assert_eq!((revoked.org.as_str(), revoked.seq), ("dev", 1));
    let again = runtime
        .block_on(f.membership.revoke(&lost.keyid(), ""))
        .unwrap_err();
    assert!(
        matches!(again, MembershipError::AlreadyRevoked(_)),
        "{again}"
    );
    let other = NodeKey::from_seed(&[43; 32]).public_key();
    let second = runtime
        .block_on(f.membership.revoke(&other.keyid(), ""))
        .unwrap();
    assert_eq!(second.seq, 2);
    let trust = f.membership.trust();
    assert!(trust.is_revoked("dev", &lost) && trust.is_revoked("dev", &other));

    // Without the org key in the home, revoking is refused.
    std::fs::remove_file(f.home.org_key_file()).unwrap();
    let keyless = Membership::open(
        &f.home,
        f.home.identity(NOW).unwrap(),
        f.membership.0.store.clone(),
        Arc::new(|| NOW + 20),
    )
    .unwrap();
    let err = runtime
        .block_on(keyless.revoke(&other.keyid(), ""))
        .unwrap_err();
    assert!(matches!(err, MembershipError::NoOrgKey), "{err}");
}

#[test]
fn a_join_request_is_accepted_once_and_pins_the_joiners_org() {
    let f = fixture();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let (client, _events, _loop) = mesh::new(
        mesh::Config::default(),
        f.membership.node_key().to_libp2p_keypair(),
        Arc::new(f.membership.clone()),
        Arc::new(crate::artifacts::BlobArtifacts::new(
            crate::blobs::BlobStore::open(f.home.blobs_dir()).unwrap(),
        )),
    )
    .unwrap();
    let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{}", f.membership.peer_id())
        .parse()
        .unwrap();
    f.membership.set_mesh(client, vec![addr]);
    let request = InviteRequest {
        roles: vec!["deploy".into()],
        stages: vec!["Deploy*".into()],
        expires_in_secs: 3600,
        ..InviteRequest::default()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let invited = f.membership.invite(&request, &mut rng, NOW + 10).unwrap();
    assert_eq!(invited.scope.pipelines, ["*"]);

    let ops = org(7);
    let ops1 = peer(&ops, "acme-ops", "ops-1", 11);
    let join = |from: &Peer| {
        let request = Message::JoinRequest(JoinRequest {
            token: invited.token.clone(),
            cert: ops1.cert.clone(),
            addrs: vec!["/ip4/127.0.0.1/tcp/5001".into(), "not an address".into()],
        });
        let envelope = otto_trust::dsse::sign(
            Kind::JoinRequest.payload_type(),
            otto_protocol::encode(&request),
            &from.key,
        )
        .unwrap();
        let answer = f
            .membership
            .handle_join(from.id(), Unverified::new(envelope))
            .unwrap();
        match answer.message().unwrap() {
            Message::JoinResponse(response) => response,
            other => panic!("expected a join response, got {other:?}"),
        }
    };

    // Presented by another node than the certificate's: refused, the invite stays unused.
    let impostor = peer(&org(8), "other", "x-1", 13);
    let refused = join(&impostor);
    assert!(!refused.accepted);

    let accepted = join(&ops1);
    assert!(accepted.accepted, "{accepted:?}");
    assert_eq!(accepted.scope.unwrap().stages, ["Deploy*"]);
    assert!(f.membership.allowed(&ops1.id()));
    let known = f.membership.node_by_peer(&ops1.id()).unwrap();
    assert!(known.joined);
    assert_eq!(known.addrs, ["/ip4/127.0.0.1/tcp/5001"]);
    let trust = f.membership.trust();
    assert_eq!(trust.policy("acme-ops").unwrap().stages, ["Deploy*"]);

    let JoinResponse {
        accepted, reason, ..
    } = join(&ops1);
    assert!(!accepted);
    assert!(reason.unwrap().contains("already used"));

    // Once its org revoked it, a fresh invite does not let the node back in.
    let list = sign_revocation(
        &ops,
        1,
        vec![revocation(&ops1.key.public_key(), NOW, "")],
        NOW,
    )
    .unwrap();
    f.membership
        .update_trust(|t| Ok(t.apply_revocation(&list)?))
        .unwrap();
    let fresh = f.membership.invite(&request, &mut rng, NOW + 20).unwrap();
    let request = Message::JoinRequest(JoinRequest {
        token: fresh.token,
        cert: ops1.cert.clone(),
        addrs: vec![],
    });
    let envelope = otto_trust::dsse::sign(
        Kind::JoinRequest.payload_type(),
        otto_protocol::encode(&request),
        &ops1.key,
    )
    .unwrap();
    let answer = f
        .membership
        .handle_join(ops1.id(), Unverified::new(envelope))
        .unwrap();
    match answer.message().unwrap() {
        Message::JoinResponse(response) => {
            assert!(!response.accepted);
            assert!(response.reason.unwrap().contains("revoked"));
        }
        other => panic!("expected a join response, got {other:?}"),
    }
    assert!(!f.membership.allowed(&ops1.id()));
}

#[test]
fn approvals_and_aliases_check_their_input() {
    let f = fixture();
    let digest = format!("sha256:{}", "ab".repeat(32));
    assert_eq!(f.membership.approve(&digest).unwrap().digest, digest);
    assert!(f.membership.trust().is_approved(&digest));
    for bad in ["sha256:abc", "ab", &format!("sha256:{}", "AB".repeat(32))] {
        assert!(matches!(
            f.membership.approve(bad),
            Err(MembershipError::Invalid(_))
        ));
    }
    let ops = org(7);
    f.pin("acme-ops", &ops);
    let alias = f.membership.set_alias("ops", "acme-ops").unwrap();
    assert_eq!(alias.org.as_deref(), Some("acme-ops"));
    assert!(matches!(
        f.membership.set_alias("qa", "nobody"),
        Err(MembershipError::Unknown(_))
    ));
    let view = f.membership.trust_view();
    assert_eq!(view.aliases.len(), 1);
    assert!(view.orgs.iter().any(|o| o.name == "dev" && o.own));
}
