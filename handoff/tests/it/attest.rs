//! Attestation export: a receipt as an in-toto statement in a DSSE envelope, and back.

use crate::common::*;
use otto_handoff::attest::{
    self, AttestError, PAYLOAD_TYPE, PREDICATE_TYPE, RECEIPT_SUBJECT, STATEMENT_TYPE,
};
use otto_protocol::{Envelope, Outcome};
use otto_trust::{Unverified, Verified, dsse};
use serde_json::Value;

/// Deploy's receipt, signed by ops and verified with ops's key.
fn deploy_receipt(world: &World) -> (Verified<Envelope>, Vec<Envelope>) {
    let chain = world.chain();
    let receipt = world.receipt(
        &world.ops,
        "Deploy",
        Outcome::Success,
        chain.iter().map(digest).collect(),
    );
    let env = sign_receipt(&world.ops, &receipt);
    (
        Unverified::new(env)
            .verify(&world.ops.key.public_key())
            .unwrap(),
        chain,
    )
}

#[test]
fn an_exported_attestation_round_trips_and_verifies_with_the_node_key() {
    let world = World::new();
    let (receipt, chain) = deploy_receipt(&world);
    let env = attest::export(&receipt, &world.ops.key).unwrap();
    assert_eq!(env.payload_type, PAYLOAD_TYPE);
    assert_eq!(env.signatures[0].keyid, world.ops.key.keyid());

    let json = env.to_json();
    let parsed = dsse::from_json(&json).unwrap();
    let statement = attest::verify(parsed, &world.ops.key.public_key()).unwrap();
    assert_eq!(statement.statement_type, STATEMENT_TYPE);
    assert_eq!(statement.predicate_type, PREDICATE_TYPE);
    assert_eq!(statement.subject.len(), 1);
    assert_eq!(statement.subject[0].name, "deploy.tar");
    assert_eq!(
        statement.subject[0].digest["sha256"],
        sha256(b"output of Deploy").to_hex()
    );
    let p = &statement.predicate;
    assert_eq!(p.run, RUN);
    assert_eq!(p.stage, "Deploy");
    assert_eq!(p.attempt, 1);
    assert_eq!(
        format!("sha256:{}", p.plan_digest["sha256"]),
        world.plan.digest()
    );
    assert_eq!(p.owner.node, "ops-1");
    assert_eq!(p.owner.org, "acme-ops");
    assert_eq!(p.owner.key, world.ops.key.keyid());
    assert_eq!(p.outcome, Outcome::Success);
    assert_eq!(p.started_at, "2025-01-01T00:00:10Z");
    assert_eq!(p.finished_at, "2025-01-01T00:00:20Z");
    assert_eq!(p.log_digest["sha256"], sha256(b"log of Deploy").to_hex());
    assert_eq!(p.receipt["sha256"], digest(receipt.get()).to_hex());
    let upstream: Vec<_> = p.upstream.iter().map(|d| d["sha256"].clone()).collect();
    let expected: Vec<_> = chain.iter().map(|e| digest(e).to_hex()).collect();
    assert_eq!(upstream, expected);
}

#[test]
fn the_payload_is_plain_in_toto_json() {
    let world = World::new();
    let (receipt, _) = deploy_receipt(&world);
    let env = attest::export(&receipt, &world.ops.key).unwrap();
    let value: Value = serde_json::from_slice(&env.payload).unwrap();
    let keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["_type", "predicate", "predicateType", "subject"]);
    assert_eq!(value["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(
        value["predicateType"],
        "https://otto.dev/attestation/receipt/v1"
    );
    let predicate = value["predicate"].as_object().unwrap();
    let mut fields: Vec<_> = predicate.keys().cloned().collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "attempt",
            "finishedAt",
            "logDigest",
            "outcome",
            "owner",
            "planDigest",
            "receipt",
            "run",
            "stage",
            "startedAt",
            "upstream"
        ]
    );
    assert_eq!(value["predicate"]["outcome"], "success");

    // The DSSE JSON form carries the statement as base64 and is what tools read.
    let json: Value = serde_json::from_str(&env.to_json()).unwrap();
    assert_eq!(json["payloadType"], "application/vnd.in-toto+json");
    assert!(json["payload"].is_string());
}

#[test]
fn a_stage_without_outputs_attests_its_receipt() {
    let world = World::new();
    let mut receipt = world.receipt(&world.ops, "Deploy", Outcome::Success, vec![]);
    receipt.outputs.clear();
    let env = sign_receipt(&world.ops, &receipt);
    let verified = Unverified::new(env.clone())
        .verify(&world.ops.key.public_key())
        .unwrap();
    let exported = attest::export(&verified, &world.ops.key).unwrap();
    let statement = attest::verify(Unverified::new(exported), &world.ops.key.public_key()).unwrap();
    assert_eq!(statement.subject.len(), 1);
    assert_eq!(statement.subject[0].name, RECEIPT_SUBJECT);
    assert_eq!(statement.subject[0].digest["sha256"], digest(&env).to_hex());
}

#[test]
fn a_node_attests_only_its_own_receipts() {
    let world = World::new();
    let (receipt, _) = deploy_receipt(&world);
    assert!(matches!(
        attest::export(&receipt, &world.dev.key),
        Err(AttestError::NotOwnReceipt { .. })
    ));
}

#[test]
fn a_tampered_or_foreign_attestation_does_not_verify() {
    let world = World::new();
    let (receipt, _) = deploy_receipt(&world);
    let env = attest::export(&receipt, &world.ops.key).unwrap();
    let key = world.ops.key.public_key();

    assert!(matches!(
        attest::verify(Unverified::new(env.clone()), &world.dev.key.public_key()),
        Err(AttestError::Signature(_))
    ));
    for i in [0, env.payload.len() / 2, env.payload.len() - 1] {
        let mut bad = env.clone();
        bad.payload[i] ^= 0x01;
        assert!(matches!(
            attest::verify(Unverified::new(bad), &key),
            Err(AttestError::Signature(_))
        ));
    }

    // Correctly signed, but not an Otto receipt statement.
    let other = dsse::sign(PAYLOAD_TYPE, br#"{"_type":"x"}"#.to_vec(), &world.ops.key).unwrap();
    assert!(matches!(
        attest::verify(Unverified::new(other), &key),
        Err(AttestError::Statement(_))
    ));
    let receipt_env = receipt.into_inner();
    assert!(matches!(
        attest::verify(Unverified::new(receipt_env), &key),
        Err(AttestError::PayloadType(_))
    ));
}

#[test]
fn export_is_deterministic() {
    let world = World::new();
    let (receipt, _) = deploy_receipt(&world);
    assert_eq!(
        attest::export(&receipt, &world.ops.key).unwrap(),
        attest::export(&receipt, &world.ops.key).unwrap()
    );
}
