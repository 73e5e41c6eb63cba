//! The cost of accepting an offer whose receipt chain holds 1,000 receipts, against raw
//! Ed25519 verification of the same 1,001 signatures (the offer's and the receipts').
//!
//! Run: `cargo bench -p otto-handoff -- --warm-up-time 1 --measurement-time 5`. Compare
//! `offer_1000/verify_offer` with `offer_1000/raw_verify_strict` (one by one) and
//! `offer_1000/raw_batch`: the envelope, certificate, plan and policy layers should keep at
//! least 80% of the raw rate.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use otto_handoff::{VerifyContext, definition_digest, verify_offer};
use otto_pipeline::Plan;
use otto_pipeline::plan::{
    Body, Facts, Gates, Notify, ORIGIN, OwnerBinding, Provenance, Runtime, RuntimeKind, SCHEMA,
    Stage, Step,
};
use otto_protocol::{
    Artifact, Digest, Envelope, HandoffId, KeyBytes, NodeIdentity, Offer, Outcome, Payload as _,
    Receipt, RunSource,
};
use otto_trust::cert::issue_cert;
use otto_trust::{
    CertSpec, Definitions, NodeKey, OrgKey, Policy, PublicKey, TrustStore, Unverified, dsse,
};
use serde_json::Value;

const CHAIN: usize = 1000;
/// Receipts are signed by this many nodes of the dev org, in turn.
const SIGNERS: usize = 10;
const T0: u64 = 1_735_689_600;

fn seed(i: usize) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
    s
}

fn stage(i: usize) -> Stage {
    let id = format!("s{i:04}");
    Stage {
        concurrency: None,
        blueprint: None,
        caches: Vec::new(),
        environment: None,
        gates: Gates::default(),
        group: Vec::new(),
        handoffs_from: Vec::new(),
        name: id.clone(),
        needs: if i == 0 {
            Vec::new()
        } else {
            vec![format!("s{:04}", i - 1)]
        },
        id,
        notify: Notify::default(),
        owner: (i == CHAIN).then(|| "ops".to_owned()),
        parallel: None,
        runtime: Runtime {
            from: None,
            image: None,
            kind: RuntimeKind::Local,
            label: None,
        },
        secrets: Vec::new(),
        skipped: false,
        steps: vec![Step {
            args: vec![Value::String(format!("make step-{i}"))],
            block: Vec::new(),
            kwargs: BTreeMap::new(),
            symbol: "sh".to_owned(),
        }],
        timeout: None,
        uses: Vec::new(),
        when: None,
    }
}

struct Fixture {
    trust: TrustStore,
    /// The org of the node the offer goes to.
    ops_org: PublicKey,
    offer: Envelope,
    /// What raw verification checks: (public key, PAE, signature) per signature.
    raw: Vec<(
        ed25519_dalek::VerifyingKey,
        Vec<u8>,
        ed25519_dalek::Signature,
    )>,
}

fn fixture() -> Fixture {
    let dev_org = OrgKey::from_seed(&[0xd0; 32]);
    let ops_org = OrgKey::from_seed(&[0xe0; 32]).public_key();
    let nodes: Vec<NodeKey> = (0..SIGNERS).map(|i| NodeKey::from_seed(&seed(i))).collect();
    let certs: Vec<Envelope> = nodes
        .iter()
        .enumerate()
        .map(|(i, key)| {
            issue_cert(
                &CertSpec {
                    node: format!("dev-{i}"),
                    org: "acme-dev".to_owned(),
                    node_key: key.public_key(),
                    roles: Vec::new(),
                    not_before: T0,
                    not_after: T0 + 86_400,
                },
                &dev_org,
            )
            .unwrap()
        })
        .collect();
    let plan = Plan {
        body: Body {
            concurrency: None,
            config: Value::Object(serde_json::Map::new()),
            environments: BTreeMap::new(),
            facts: Facts::default(),
            libraries: Vec::new(),
            owners: BTreeMap::from([
                (
                    ORIGIN.to_owned(),
                    OwnerBinding {
                        key: dev_org.public_key().keyid(),
                        org: "dev".to_owned(),
                        node: None,
                    },
                ),
                (
                    "ops".to_owned(),
                    OwnerBinding {
                        key: ops_org.keyid(),
                        org: "ops".to_owned(),
                        node: None,
                    },
                ),
            ]),
            pipeline: "bench".to_owned(),
            schema: SCHEMA.to_owned(),
            stages: (0..=CHAIN).map(stage).collect(),
            triggers: Vec::new(),
        },
        provenance: Provenance::default(),
    };
    let plan_digest = plan.digest();
    let receipts: Vec<Envelope> = (0..CHAIN)
        .map(|i| {
            let key = &nodes[i % SIGNERS];
            let receipt = Receipt {
                run: "run-1".to_owned(),
                plan_digest: plan_digest.clone(),
                stage: format!("s{i:04}"),
                attempt: 1,
                outcome: Outcome::Success,
                outputs: vec![Artifact {
                    name: "out.tar".to_owned(),
                    sha256: Digest([i as u8; 32]),
                    size: 1000,
                }],
                log_digest: Digest([7; 32]),
                started_at: T0 + 1,
                finished_at: T0 + 2,
                started_at_ms: None,
                finished_at_ms: None,
                upstream: Vec::new(),
                node: NodeIdentity {
                    name: format!("dev-{}", i % SIGNERS),
                    org: "acme-dev".to_owned(),
                    key: KeyBytes(*key.public_key().as_bytes()),
                },
            };
            dsse::sign(
                Receipt::KIND.payload_type(),
                otto_protocol::encode_payload(&receipt),
                key,
            )
            .unwrap()
        })
        .collect();
    let offer = Offer {
        id: HandoffId([1; 16]),
        run: "run-1".to_owned(),
        source: RunSource::Snapshot {
            digest: Digest([2; 32]),
        },
        plan: plan.canonical_bytes(),
        plan_digest,
        stage: format!("s{CHAIN:04}"),
        attempt: 1,
        facts: otto_protocol::Facts::default(),
        inputs: Vec::new(),
        receipts: receipts.clone(),
        sender: certs[0].clone(),
        expires_at: T0 + 3_600,
        created_at: T0,
        certificates: certs[1..].to_vec(),
        retry: None,
    };
    let offer = dsse::sign(
        Offer::KIND.payload_type(),
        otto_protocol::encode_payload(&offer),
        &nodes[0],
    )
    .unwrap();

    let mut trust = TrustStore::new();
    trust.pin_org("dev", dev_org.public_key(), T0).unwrap();
    trust.pin_org("ops", ops_org, T0).unwrap();
    trust
        .set_policy(
            "dev",
            Policy {
                roles: Vec::new(),
                pipelines: vec!["*".to_owned()],
                stages: vec!["*".to_owned()],
                environments: vec!["*".to_owned()],
                definitions: Definitions::Approved,
                ..Policy::default()
            },
        )
        .unwrap();
    trust.approve(&definition_digest(&plan.body, &stage(CHAIN)), T0);

    let raw = std::iter::once(&offer)
        .chain(&receipts)
        .map(|env| {
            let key = PublicKey::from_keyid(&env.signatures[0].keyid).unwrap();
            (
                ed25519_dalek::VerifyingKey::from_bytes(key.as_bytes()).unwrap(),
                env.pae(),
                ed25519_dalek::Signature::from_slice(&env.signatures[0].sig).unwrap(),
            )
        })
        .collect();
    Fixture {
        trust,
        ops_org,
        offer,
        raw,
    }
}

fn offer_1000(c: &mut Criterion) {
    let f = fixture();
    let names = vec!["ops".to_owned()];
    let ctx = VerifyContext::new(&f.trust, &f.ops_org, &names);
    assert!(verify_offer(Unverified::new(f.offer.clone()), &ctx, T0 + 10).is_ok());
    println!(
        "offer with {CHAIN} receipts: {} bytes on the wire",
        otto_protocol::encode_envelope(&f.offer).len()
    );

    let mut group = c.benchmark_group("offer_1000");
    group.throughput(Throughput::Elements(f.raw.len() as u64));
    group.sample_size(10);
    group.bench_function("raw_verify_strict", |b| {
        b.iter(|| {
            for (key, msg, sig) in &f.raw {
                key.verify_strict(black_box(msg), sig).unwrap();
            }
        })
    });
    group.bench_function("raw_batch", |b| {
        let msgs: Vec<&[u8]> = f.raw.iter().map(|(_, m, _)| m.as_slice()).collect();
        let sigs: Vec<_> = f.raw.iter().map(|(_, _, s)| *s).collect();
        let keys: Vec<_> = f.raw.iter().map(|(k, _, _)| *k).collect();
        b.iter(|| ed25519_dalek::verify_batch(black_box(&msgs), &sigs, &keys).unwrap())
    });
    group.bench_function("verify_offer", |b| {
        b.iter(|| verify_offer(Unverified::new(black_box(f.offer.clone())), &ctx, T0 + 10).unwrap())
    });
    group.finish();
}

criterion_group!(benches, offer_1000);
criterion_main!(benches);
