//! Tests of invites: issuing, opening, redeeming, and every way a token can be wrong.

use otto_protocol::Scope;
use rand::SeedableRng as _;
use rand::rngs::StdRng;

use super::*;
use crate::cert::{CertSpec, issue_cert};
use crate::keys::{NodeKey, OrgKey};

const NOW: u64 = 1_000;

struct Side {
    org: OrgKey,
    node: NodeKey,
    cert: Envelope,
}

fn side(org_seed: u8, node_seed: u8, org: &str, node: &str) -> Side {
    let org_key = OrgKey::from_seed(&[org_seed; 32]);
    let node_key = NodeKey::from_seed(&[node_seed; 32]);
    let cert = issue_cert(
        &CertSpec {
            node: node.into(),
            org: org.into(),
            node_key: node_key.public_key(),
            roles: vec![],
            not_before: 0,
            not_after: 10_000,
        },
        &org_key,
    )
    .unwrap();
    Side {
        org: org_key,
        node: node_key,
        cert,
    }
}

fn ops() -> Side {
    side(1, 2, "acme-ops", "ops-1")
}

fn dev() -> Side {
    side(3, 4, "acme-dev", "dev-1")
}

fn scope() -> Scope {
    Scope {
        roles: vec!["deploy".into()],
        pipelines: vec!["*".into()],
        stages: vec!["Deploy*".into()],
        environments: vec!["prod".into()],
    }
}

fn params(inviter: &Side, expires_at: u64) -> InviteParams {
    InviteParams {
        cert: inviter.cert.clone(),
        addrs: vec!["/ip4/127.0.0.1/tcp/4001".into()],
        scope: scope(),
        definitions: Definitions::Approved,
        secrets: vec!["DEPLOY_KEY".into()],
        max_parallel: 4,
        expires_at,
    }
}

fn issue(book: &mut InviteBook, inviter: &Side) -> String {
    let mut rng = StdRng::seed_from_u64(7);
    book.issue(params(inviter, NOW + 3600), &inviter.node, &mut rng, NOW)
        .unwrap()
}

fn request(token: &str, joiner: &Side) -> JoinRequest {
    JoinRequest {
        token: token.to_owned(),
        cert: joiner.cert.clone(),
        addrs: vec!["/ip4/127.0.0.1/tcp/4002".into()],
    }
}

/// Signs `invite` with `signer` and prints it as a token, bypassing the book.
fn forge(invite: &Invite, signer: &NodeKey) -> String {
    encode_token(&dsse::sign(INVITE_PAYLOAD_TYPE, cbor::encode(invite), signer).unwrap())
}

fn invite_of(token: &str) -> Invite {
    decode_invite(parse_token(token).unwrap().peek()).unwrap()
}

#[test]
fn token_is_prefixed_lowercase_base32() {
    let token = issue(&mut InviteBook::default(), &ops());
    assert!(token.starts_with("otto1"));
    assert!(
        token[5..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)),
        "{token}"
    );
}

#[test]
fn joiner_opens_the_invite() {
    let inviter = ops();
    let token = issue(&mut InviteBook::default(), &inviter);
    let opened = open_invite(&token, NOW).unwrap();
    assert_eq!(opened.inviter.org(), "acme-ops");
    assert_eq!(opened.inviter.node(), "ops-1");
    assert_eq!(opened.inviter.org_key(), &inviter.org.public_key());
    assert_eq!(opened.inviter.node_key(), &inviter.node.public_key());
    assert_eq!(opened.invite.addrs, ["/ip4/127.0.0.1/tcp/4001"]);
    assert_eq!(opened.invite.scope, scope());
    assert_eq!(opened.invite.secret.len(), SECRET_LEN);
}

#[test]
fn inviter_redeems_once() {
    let inviter = ops();
    let joiner = dev();
    let mut book = InviteBook::default();
    let token = issue(&mut book, &inviter);
    let peer = book
        .redeem(
            &request(&token, &joiner),
            &inviter.node.public_key(),
            &joiner.node.public_key(),
            NOW + 10,
        )
        .unwrap();
    assert_eq!(peer.cert.org(), "acme-dev");
    assert_eq!(peer.cert.org_key(), &joiner.org.public_key());
    assert_eq!(peer.cert.node_key(), &joiner.node.public_key());
    assert_eq!(peer.scope, scope());
    assert_eq!(peer.definitions, Definitions::Approved);
    assert_eq!(peer.addrs, ["/ip4/127.0.0.1/tcp/4002"]);
    let (_, entry) = book.issued().next().unwrap();
    assert_eq!(entry.used_at, Some(NOW + 10));
    assert_eq!(entry.used_by.as_deref(), Some("acme-dev"));
    assert_eq!(entry.roles, ["deploy"]);

    let again = book.redeem(
        &request(&token, &joiner),
        &inviter.node.public_key(),
        &joiner.node.public_key(),
        NOW + 20,
    );
    assert!(matches!(again, Err(InviteError::AlreadyUsed { used_at }) if used_at == NOW + 10));
    // The time is said as a date, not as seconds since the epoch.
    assert_eq!(
        again.err().map(|e| e.to_string()).as_deref(),
        Some("invite was already used at 1970-01-01 00:16:50 UTC")
    );
}

#[test]
fn redeemed_peer_lands_in_the_trust_store() {
    let inviter = ops();
    let joiner = dev();
    let mut store = crate::TrustStore::new();
    let mut rng = StdRng::seed_from_u64(1);
    let token = store
        .invites_mut()
        .issue(params(&inviter, NOW + 60), &inviter.node, &mut rng, NOW)
        .unwrap();
    let peer = store
        .invites_mut()
        .redeem(
            &request(&token, &joiner),
            &inviter.node.public_key(),
            &joiner.node.public_key(),
            NOW,
        )
        .unwrap();
    store.add_peer(&peer, NOW).unwrap();
    assert_eq!(
        store.check_scope("acme-dev", "shop", "DeployEU", Some("prod")),
        Ok(())
    );
    // The invite's secrets and cap, kept on the inviter's side, are the org's policy.
    assert_eq!(
        store.check_secrets("acme-dev", &["DEPLOY_KEY".to_owned()]),
        Ok(())
    );
    assert!(
        store
            .check_secrets("acme-dev", &["PROD_DB_PASSWORD".to_owned()])
            .is_err()
    );
    assert_eq!(store.max_parallel("acme-dev"), 4);
    assert!(!invite_of(&token).scope.roles.is_empty());
    assert!(
        !format!("{:?}", invite_of(&token)).contains("DEPLOY_KEY"),
        "the invite sent to the joiner names no secret"
    );
    assert!(store.verify_cert(&joiner.cert, NOW).is_ok());
    let text = store.to_toml();
    assert!(
        !text.contains(&hex::encode(invite_of(&token).secret)),
        "secret stored"
    );
    let back = crate::TrustStore::from_toml(&text).unwrap();
    assert_eq!(back, store);
}

#[test]
fn expired_invites_are_refused_on_both_sides() {
    let inviter = ops();
    let joiner = dev();
    let mut book = InviteBook::default();
    let token = issue(&mut book, &inviter);
    let at = NOW + 3600;
    assert!(matches!(
        open_invite(&token, at),
        Err(InviteError::Expired { expires_at, now }) if expires_at == at && now == at
    ));
    assert_eq!(
        open_invite(&token, at)
            .err()
            .map(|e| e.to_string())
            .as_deref(),
        Some("invite expired at 1970-01-01 01:16:40 UTC (now 1970-01-01 01:16:40 UTC)")
    );
    assert!(matches!(
        book.redeem(
            &request(&token, &joiner),
            &inviter.node.public_key(),
            &joiner.node.public_key(),
            at
        ),
        Err(InviteError::Expired { .. })
    ));
    assert_eq!(book.prune(at - 1), 0);
    assert_eq!(book.prune(at), 1);
    assert_eq!(book.issued().count(), 0);
}

#[test]
fn invite_of_another_node_is_not_ours() {
    let inviter = ops();
    let other = side(5, 6, "acme-qa", "qa-1");
    let joiner = dev();
    let token = issue(&mut InviteBook::default(), &other);
    let result = InviteBook::default().redeem(
        &request(&token, &joiner),
        &inviter.node.public_key(),
        &joiner.node.public_key(),
        NOW,
    );
    assert!(matches!(result, Err(InviteError::NotOurs)));
}

#[test]
fn invite_signed_here_but_not_recorded_is_not_issued() {
    let inviter = ops();
    let joiner = dev();
    let token = issue(&mut InviteBook::default(), &inviter);
    let result = InviteBook::default().redeem(
        &request(&token, &joiner),
        &inviter.node.public_key(),
        &joiner.node.public_key(),
        NOW,
    );
    assert!(matches!(result, Err(InviteError::NotIssued)));
}

#[test]
fn forged_scope_breaks_the_signature() {
    let inviter = ops();
    let joiner = dev();
    let mut book = InviteBook::default();
    let token = issue(&mut book, &inviter);
    // Widen the scope, keep the original signature, fix up the checksum.
    let env = parse_token(&token).unwrap().into_inner();
    let mut invite = invite_of(&token);
    invite.scope.stages = vec!["*".into()];
    let forged = Envelope {
        payload: cbor::encode(&invite),
        ..env
    };
    let forged = encode_token(&forged);
    assert!(matches!(
        book.redeem(
            &request(&forged, &joiner),
            &inviter.node.public_key(),
            &joiner.node.public_key(),
            NOW
        ),
        Err(InviteError::BadSignature)
    ));
    assert!(matches!(
        open_invite(&forged, NOW),
        Err(InviteError::BadSignature)
    ));
}

#[test]
fn invite_signed_by_someone_else_than_its_certificate_fails_to_open() {
    let inviter = ops();
    let invite = Invite {
        cert: inviter.cert.clone(),
        addrs: vec![],
        scope: scope(),
        definitions: Definitions::Owned,
        secret: vec![0; SECRET_LEN],
        expires_at: NOW + 10,
    };
    let token = forge(&invite, &NodeKey::from_seed(&[99; 32]));
    assert!(matches!(
        open_invite(&token, NOW),
        Err(InviteError::BadSignature)
    ));
}

#[test]
fn inviter_certificate_must_be_valid() {
    let mut inviter = ops();
    inviter.cert.signatures[0].sig[0] ^= 1;
    let invite = Invite {
        cert: inviter.cert.clone(),
        addrs: vec![],
        scope: scope(),
        definitions: Definitions::Owned,
        secret: vec![0; SECRET_LEN],
        expires_at: NOW + 10,
    };
    let token = forge(&invite, &inviter.node);
    assert!(matches!(
        open_invite(&token, NOW),
        Err(InviteError::InviterCert(CertError::BadSignature { .. }))
    ));
}

#[test]
fn joiner_certificate_must_be_valid_and_match_the_connection() {
    let inviter = ops();
    let mut book = InviteBook::default();
    let token = issue(&mut book, &inviter);

    let expired = side(3, 4, "acme-dev", "dev-1");
    let mut req = request(&token, &expired);
    req.cert = issue_cert(
        &CertSpec {
            node: "dev-1".into(),
            org: "acme-dev".into(),
            node_key: expired.node.public_key(),
            roles: vec![],
            not_before: 0,
            not_after: NOW,
        },
        &expired.org,
    )
    .unwrap();
    assert!(matches!(
        book.redeem(
            &req,
            &inviter.node.public_key(),
            &expired.node.public_key(),
            NOW
        ),
        Err(InviteError::JoinerCert(CertError::Expired { .. }))
    ));

    let mut tampered = request(&token, &dev());
    tampered.cert.payload[3] ^= 1;
    assert!(matches!(
        book.redeem(
            &tampered,
            &inviter.node.public_key(),
            &dev().node.public_key(),
            NOW
        ),
        Err(InviteError::JoinerCert(_))
    ));

    let stranger = NodeKey::from_seed(&[77; 32]).public_key();
    let result = book.redeem(
        &request(&token, &dev()),
        &inviter.node.public_key(),
        &stranger,
        NOW,
    );
    assert!(matches!(result, Err(InviteError::PeerMismatch { .. })));
    // None of the failures used the invite up.
    assert!(
        book.redeem(
            &request(&token, &dev()),
            &inviter.node.public_key(),
            &dev().node.public_key(),
            NOW
        )
        .is_ok()
    );
}

#[test]
fn issue_refuses_past_expiry_and_foreign_certificate() {
    let inviter = ops();
    let mut rng = StdRng::seed_from_u64(1);
    let mut book = InviteBook::default();
    assert!(matches!(
        book.issue(params(&inviter, NOW), &inviter.node, &mut rng, NOW),
        Err(InviteError::Expired { .. })
    ));
    assert!(matches!(
        book.issue(params(&inviter, NOW + 1), &dev().node, &mut rng, NOW),
        Err(InviteError::Malformed(_))
    ));
    assert_eq!(book.issued().count(), 0);
}

#[test]
fn secrets_differ_between_invites() {
    let inviter = ops();
    let mut rng = StdRng::seed_from_u64(1);
    let mut book = InviteBook::default();
    let a = book
        .issue(params(&inviter, NOW + 1), &inviter.node, &mut rng, NOW)
        .unwrap();
    let b = book
        .issue(params(&inviter, NOW + 1), &inviter.node, &mut rng, NOW)
        .unwrap();
    assert_ne!(invite_of(&a).secret, invite_of(&b).secret);
    assert_eq!(book.issued().count(), 2);
}

#[test]
fn pasted_tokens_with_whitespace_and_case_changes_parse() {
    let token = issue(&mut InviteBook::default(), &ops());
    let wrapped: String = token
        .as_bytes()
        .chunks(60)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\n  ");
    let pasted = format!("\n\t  {wrapped}  \r\n");
    assert_eq!(parse_token(&pasted), parse_token(&token));
    assert_eq!(parse_token(&token.to_uppercase()), parse_token(&token));
    assert!(open_invite(&pasted, NOW).is_ok());
}

#[test]
fn damaged_tokens_give_friendly_errors() {
    let token = issue(&mut InviteBook::default(), &ops());
    assert_eq!(parse_token(""), Err(TokenError::Prefix));
    assert_eq!(parse_token("otto"), Err(TokenError::Prefix));
    assert_eq!(parse_token(&token[3..]), Err(TokenError::Prefix));
    assert_eq!(
        parse_token(&format!("otto2{}", &token[5..])),
        Err(TokenError::Prefix)
    );
    assert_eq!(parse_token("ottö1abc"), Err(TokenError::Prefix));
    assert_eq!(parse_token("otto1"), Err(TokenError::Checksum));
    assert_eq!(parse_token("otto1aaaaaaaa"), Err(TokenError::Checksum));

    let mut typo = token.clone().into_bytes();
    typo[20] = b'1';
    assert_eq!(
        parse_token(std::str::from_utf8(&typo).unwrap()),
        Err(TokenError::Character(20))
    );
    // Every truncation is caught, whatever its length.
    for cut in 6..token.len() {
        assert_eq!(
            parse_token(&token[..cut]),
            Err(TokenError::Checksum),
            "cut at {cut}"
        );
    }
    // Every single-letter substitution is caught.
    for i in 5..token.len() {
        let mut bytes = token.clone().into_bytes();
        bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
        let changed = String::from_utf8(bytes).unwrap();
        assert_eq!(parse_token(&changed), Err(TokenError::Checksum), "at {i}");
    }
    let long = "a".repeat(MAX_TOKEN_LEN + 1);
    assert_eq!(
        parse_token(&long),
        Err(TokenError::TooLong(MAX_TOKEN_LEN + 1))
    );
}

#[test]
fn intact_checksum_over_garbage_is_malformed() {
    let garbage = b"not cbor".to_vec();
    let mut bytes = garbage.clone();
    bytes.extend_from_slice(&checksum(&garbage));
    let token = format!("otto1{}", BASE32_NOPAD.encode(&bytes).to_ascii_lowercase());
    assert!(matches!(parse_token(&token), Err(TokenError::Malformed(_))));

    // An intact envelope of another type is not an invite.
    let env = dsse::sign("application/vnd.otto.offer+cbor", vec![1], &ops().node).unwrap();
    assert!(matches!(
        open_invite(&encode_token(&env), NOW),
        Err(InviteError::Malformed(_))
    ));
    // An invite whose secret has the wrong length.
    let mut invite = invite_of(&issue(&mut InviteBook::default(), &ops()));
    invite.secret.pop();
    assert!(matches!(
        open_invite(&forge(&invite, &ops().node), NOW),
        Err(InviteError::Malformed(_))
    ));
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn parsing_arbitrary_text_never_panics(text in ".{0,400}") {
            let _ = parse_token(&text);
            let _ = open_invite(&text, NOW);
        }

        #[test]
        fn parsing_arbitrary_base32_bodies_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let token = format!("otto1{}", BASE32_NOPAD.encode(&bytes).to_ascii_lowercase());
            let _ = parse_token(&token);
            let _ = open_invite(&token, NOW);
        }

        #[test]
        fn any_checksummed_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut body = bytes.clone();
            body.extend_from_slice(&checksum(&bytes));
            let token = format!("otto1{}", BASE32_NOPAD.encode(&body).to_ascii_lowercase());
            let _ = parse_token(&token);
            let _ = open_invite(&token, NOW);
            let _ = InviteBook::default().redeem(
                &JoinRequest { token, cert: ops().cert, addrs: vec![] },
                &ops().node.public_key(),
                &ops().node.public_key(),
                NOW,
            );
        }
    }
}
