//! Deterministic messages shared by the vector test, the property tests and the bench:
//! fixed ids, keys, times and dummy signatures, so the encodings never change by accident.
#![allow(dead_code)]

use std::collections::BTreeMap;

use otto_protocol::{
    Accept, Artifact, ArtifactChunk, ArtifactRequest, Digest, Envelope, Facts, GitBundle,
    HandoffId, InputArtifact, JoinRequest, JoinResponse, KeyBytes, LogLines, LogRequest, Message,
    NodeCertificate, NodeIdentity, Offer, Outcome, Receipt, Reject, RejectCode, Retry, Revocation,
    RevocationList, RunSource, Scope, Signature, StageState, Status, ed25519_keyid,
};
use sha2::{Digest as _, Sha256};

/// 2025-01-01T00:00:00Z, the time every fixture is built around.
pub(crate) const T0: u64 = 1_735_689_600;

pub(crate) fn sha256(bytes: &[u8]) -> Digest {
    Digest(Sha256::digest(bytes).into())
}

/// A fixed 32-byte key: every byte is `n`.
pub(crate) fn key(n: u8) -> KeyBytes {
    KeyBytes([n; 32])
}

pub(crate) const DEV_ORG: u8 = 0x0d;
pub(crate) const DEV_NODE: u8 = 0x1d;
pub(crate) const OPS_ORG: u8 = 0x0e;
pub(crate) const OPS_NODE: u8 = 0x1e;

/// A dummy signature by `key`: not valid Ed25519, the vectors test encoding only.
pub(crate) fn signature(key: KeyBytes, fill: u8) -> Signature {
    Signature {
        sig: vec![fill; 64],
        keyid: ed25519_keyid(key.as_bytes()),
    }
}

pub(crate) fn signed(message: Message, by: KeyBytes) -> Envelope {
    let mut envelope = Envelope::unsigned(&message);
    envelope.signatures.push(signature(by, 0x5a));
    envelope
}

pub(crate) fn certificate(node: &str, org: &str, org_key: u8, node_key: u8) -> NodeCertificate {
    NodeCertificate {
        node: node.to_owned(),
        org: org.to_owned(),
        org_key: key(org_key).0.to_vec(),
        node_key: key(node_key).0.to_vec(),
        roles: vec!["deploy".to_owned()],
        not_before: T0,
        not_after: T0 + 365 * 86_400,
    }
}

pub(crate) fn certificate_envelope(node: &str, org: &str, org_key: u8, node_key: u8) -> Envelope {
    signed(
        certificate(node, org, org_key, node_key).into(),
        key(org_key),
    )
}

/// A plan body in canonical JSON (sorted keys, no whitespace) with `stages` stages, the
/// last owned by `ops`.
pub(crate) fn plan_json(stages: usize) -> Vec<u8> {
    let list: Vec<String> = (0..stages)
        .map(|i| {
            let owner = if i + 1 == stages { "\"ops\"" } else { "null" };
            let needs = if i == 0 {
                String::new()
            } else {
                format!("\"stage-{:02}\"", i - 1)
            };
            format!(
                concat!(
                    "{{\"caches\":[],\"environment\":null,\"gates\":{{\"enter\":[],\"exit\":[]}},",
                    "\"group\":[],\"handoffs_from\":[],\"id\":\"stage-{i:02}\",\"name\":\"stage-{i:02}\",",
                    "\"needs\":[{needs}],\"owner\":{owner},\"parallel\":null,",
                    "\"runtime\":{{\"from\":null,\"kind\":\"local\"}},\"skipped\":false,",
                    "\"steps\":[{{\"args\":[\"cargo build --release --locked\"],\"block\":[],",
                    "\"kwargs\":{{}},\"symbol\":\"sh\"}}],\"when\":null}}"
                ),
                i = i,
                needs = needs,
                owner = owner,
            )
        })
        .collect();
    format!(
        "{{\"config\":{{}},\"environments\":{{}},\"facts\":{{\"branch\":\"main\"}},\"libraries\":[],\"pipeline\":\"webapp\",\"schema\":\"otto.plan/v1\",\"stages\":[{}]}}",
        list.join(",")
    )
    .into_bytes()
}

pub(crate) fn plan_digest(plan: &[u8]) -> String {
    format!("sha256:{}", sha256(plan))
}

pub(crate) fn ops_identity() -> NodeIdentity {
    NodeIdentity {
        name: "ops-1".to_owned(),
        org: "acme-ops".to_owned(),
        key: key(OPS_NODE),
    }
}

pub(crate) fn dev_identity() -> NodeIdentity {
    NodeIdentity {
        name: "dev-1".to_owned(),
        org: "acme-dev".to_owned(),
        key: key(DEV_NODE),
    }
}

pub(crate) fn receipt(plan: &[u8], stage: &str, upstream: Vec<Digest>) -> Receipt {
    Receipt {
        run: "run-0001".to_owned(),
        plan_digest: plan_digest(plan),
        stage: stage.to_owned(),
        attempt: 1,
        outcome: Outcome::Success,
        outputs: vec![Artifact {
            name: "site".to_owned(),
            sha256: sha256(b"site.tar contents"),
            size: 17,
        }],
        log_digest: sha256(format!("log of {stage}").as_bytes()),
        started_at: T0 + 10,
        finished_at: T0 + 70,
        started_at_ms: None,
        finished_at_ms: None,
        upstream,
        node: dev_identity(),
    }
}

/// A chain of `len` receipt envelopes, each naming the one before it.
pub(crate) fn receipt_chain(plan: &[u8], len: usize) -> Vec<Envelope> {
    let mut chain: Vec<Envelope> = Vec::with_capacity(len);
    for i in 0..len {
        let upstream = chain
            .last()
            .map(|prev| vec![sha256(&prev.canonical_bytes())])
            .unwrap_or_default();
        let stage = format!("stage-{i:02}");
        chain.push(signed(
            receipt(plan, &stage, upstream).into(),
            key(DEV_NODE),
        ));
    }
    chain
}

pub(crate) fn offer(plan: Vec<u8>, chain: Vec<Envelope>) -> Offer {
    Offer {
        id: HandoffId([
            0x3f, 0xa1, 0xc2, 0x07, 0x5e, 0x91, 0x44, 0x0b, 0x8d, 0x26, 0xf0, 0x19, 0xaa, 0x52,
            0x6e, 0xc4,
        ]),
        run: "run-0001".to_owned(),
        source: RunSource::Snapshot {
            digest: sha256(b"snapshot of /home/dev/webapp"),
        },
        plan_digest: plan_digest(&plan),
        plan,
        stage: "Deploy".to_owned(),
        attempt: 1,
        facts: Facts {
            branch: Some("main".to_owned()),
            tag: None,
            environment: Some("production".to_owned()),
            commit: Some("9fceb02d0ae598e95dc970b74767f19372d61af8".to_owned()),
            vars: BTreeMap::from([("region".to_owned(), "eu-west-1".to_owned())]),
        },
        inputs: vec![InputArtifact {
            name: "site".to_owned(),
            sha256: sha256(b"site.tar contents"),
            size: 17,
            provider: "12D3KooWDevNodePeerIdPlaceholderAAAAAAAAAAAAAAAAAAAAA".to_owned(),
        }],
        receipts: chain,
        sender: certificate_envelope("dev-1", "acme-dev", DEV_ORG, DEV_NODE),
        expires_at: T0 + 3_600,
        created_at: T0 + 75,
        certificates: Vec::new(),
        retry: None,
    }
}

/// The origin's (dev-1's) retry of Deploy as attempt 2 of the run of `plan`.
pub(crate) fn retry(plan: &[u8]) -> Retry {
    Retry {
        id: HandoffId([
            0x51, 0x7e, 0x0a, 0x42, 0x9c, 0x13, 0xd8, 0x6f, 0x20, 0xb4, 0x77, 0x05, 0xe1, 0x3a,
            0xc9, 0x68,
        ]),
        run: "run-0001".to_owned(),
        plan_digest: plan_digest(plan),
        stage: "Deploy".to_owned(),
        attempt: 2,
        reason: "retried by alice@dev-1".to_owned(),
        created_at: T0 + 600,
        sender: certificate_envelope("dev-1", "acme-dev", DEV_ORG, DEV_NODE),
    }
}

/// The messages written to `protocol/vectors/<kind>.json`, with a name for each.
pub(crate) fn vector_messages() -> Vec<(&'static str, Message)> {
    let small_plan = plan_json(2);
    let chain = receipt_chain(&small_plan, 1);
    let git_offer = Offer {
        source: RunSource::Git {
            url: "https://git.example/acme/webapp.git".to_owned(),
            commit: "9fceb02d0ae598e95dc970b74767f19372d61af8".to_owned(),
            bundle: None,
        },
        facts: Facts::default(),
        inputs: Vec::new(),
        receipts: Vec::new(),
        attempt: 2,
        ..offer(small_plan.clone(), Vec::new())
    };
    let bundled_offer = Offer {
        source: RunSource::Git {
            url: "https://git.example/acme/webapp.git".to_owned(),
            commit: "9fceb02d0ae598e95dc970b74767f19372d61af8".to_owned(),
            bundle: Some(GitBundle {
                sha256: sha256(b"a git bundle of 9fceb02"),
                size: 48_213,
            }),
        },
        facts: Facts {
            branch: Some("main".to_owned()),
            commit: Some("9fceb02d0ae598e95dc970b74767f19372d61af8".to_owned()),
            ..Facts::default()
        },
        inputs: Vec::new(),
        ..offer(small_plan.clone(), chain.clone())
    };
    let certified_offer = Offer {
        certificates: vec![certificate_envelope("build-1", "acme-dev", DEV_ORG, 0x2d)],
        ..offer(small_plan.clone(), chain.clone())
    };
    let moved_retry = Offer {
        sender: certificate_envelope("qa-1", "acme-qa", 0x4a, 0x4b),
        certificates: vec![certificate_envelope("dev-1", "acme-dev", DEV_ORG, DEV_NODE)],
        attempt: 2,
        retry: Some(signed(retry(&small_plan).into(), key(DEV_NODE))),
        ..offer(small_plan.clone(), chain.clone())
    };
    let handoff = offer(small_plan.clone(), chain.clone()).id;
    vec![
        (
            "snapshot source, one input, one upstream receipt",
            offer(small_plan.clone(), chain.clone()).into(),
        ),
        (
            "git source, no facts, no inputs, second attempt",
            git_offer.into(),
        ),
        (
            "certificate of another receipt signer",
            certified_offer.into(),
        ),
        (
            "git source with a bundle the sender serves",
            bundled_offer.into(),
        ),
        (
            "a retry as attempt 2, sent by the node that moves the stage on",
            moved_retry.into(),
        ),
        (
            "the origin's retry of Deploy as attempt 2",
            retry(&small_plan).into(),
        ),
        (
            "accept",
            Accept {
                id: handoff,
                stage: "Deploy".to_owned(),
                attempt: 1,
            }
            .into(),
        ),
        (
            "definition not approved, with hint",
            Reject {
                id: handoff,
                code: RejectCode::DefinitionNotApproved,
                message: "stage definition not approved".to_owned(),
                hint: Some(format!(
                    "run `otto-node approve {}` on ops-1",
                    sha256(b"inline steps of Deploy")
                )),
            }
            .into(),
        ),
        (
            "a code from a newer peer, kept as sent",
            Reject {
                id: handoff,
                code: RejectCode::Unknown("rate_limited".to_owned()),
                message: "too many offers".to_owned(),
                hint: None,
            }
            .into(),
        ),
        (
            "success with an output and an upstream receipt",
            Receipt {
                node: ops_identity(),
                stage: "Deploy".to_owned(),
                upstream: chain.iter().map(|e| sha256(&e.canonical_bytes())).collect(),
                ..receipt(&small_plan, "Deploy", Vec::new())
            }
            .into(),
        ),
        (
            "failure, no outputs",
            Receipt {
                outcome: Outcome::Failure,
                outputs: Vec::new(),
                ..receipt(&small_plan, "stage-00", Vec::new())
            }
            .into(),
        ),
        (
            "success with millisecond times",
            Receipt {
                node: ops_identity(),
                stage: "Deploy".to_owned(),
                started_at_ms: Some((T0 + 10) * 1000 + 250),
                finished_at_ms: Some((T0 + 70) * 1000 + 7),
                ..receipt(&small_plan, "Deploy", Vec::new())
            }
            .into(),
        ),
        (
            "running, with log lines",
            Status {
                run: "run-0001".to_owned(),
                stage: "Deploy".to_owned(),
                attempt: 1,
                seq: 3,
                state: StageState::Running,
                at: T0 + 90,
                detail: None,
                log: vec![
                    "deploying site to production".to_owned(),
                    "uploaded 17 bytes".to_owned(),
                ],
                log_seq: None,
                at_ms: None,
            }
            .into(),
        ),
        (
            "running, with numbered log lines",
            Status {
                run: "run-0001".to_owned(),
                stage: "Deploy".to_owned(),
                attempt: 1,
                seq: 4,
                state: StageState::Running,
                at: T0 + 91,
                detail: None,
                log: vec![
                    "checking the site".to_owned(),
                    "site answers 200".to_owned(),
                ],
                log_seq: Some(3),
                at_ms: None,
            }
            .into(),
        ),
        (
            "waiting on a gate, with detail",
            Status {
                run: "run-0001".to_owned(),
                stage: "Deploy".to_owned(),
                attempt: 1,
                seq: 1,
                state: StageState::WaitingGate,
                at: T0 + 80,
                detail: Some("input 'Ship it?' waits for approval".to_owned()),
                log: Vec::new(),
                log_seq: None,
                at_ms: None,
            }
            .into(),
        ),
        (
            "failed, with a millisecond time",
            Status {
                run: "run-0001".to_owned(),
                stage: "Deploy".to_owned(),
                attempt: 1,
                seq: 5,
                state: StageState::Failed,
                at: T0 + 95,
                detail: Some("'sh' exited with code 1".to_owned()),
                log: Vec::new(),
                log_seq: Some(5),
                at_ms: Some((T0 + 95) * 1000 + 481),
            }
            .into(),
        ),
        (
            "the lines dev missed of ops's Deploy",
            LogRequest {
                run: "run-0001".to_owned(),
                stage: "Deploy".to_owned(),
                after: 5,
                upto: 1208,
                max_lines: 4096,
                max_bytes: 98_304,
            }
            .into(),
        ),
        (
            "lines 6 to 8 of 1208",
            LogLines {
                run: "run-0001".to_owned(),
                stage: "Deploy".to_owned(),
                first: 6,
                lines: vec![
                    "ops line 6".to_owned(),
                    "ops line 7".to_owned(),
                    "ops line 8".to_owned(),
                ],
                last: 1208,
            }
            .into(),
        ),
        (
            "no line after 1208",
            LogLines {
                run: "run-0001".to_owned(),
                stage: "Deploy".to_owned(),
                first: 1209,
                lines: Vec::new(),
                last: 1208,
            }
            .into(),
        ),
        (
            "resume from byte 1048576",
            ArtifactRequest {
                sha256: sha256(b"site.tar contents"),
                offset: 1_048_576,
                max_len: 8_388_608,
            }
            .into(),
        ),
        (
            "a middle chunk",
            ArtifactChunk {
                sha256: sha256(b"site.tar contents"),
                offset: 0,
                data: b"site.tar".to_vec(),
                total: 17,
                last: false,
            }
            .into(),
        ),
        (
            "the last chunk",
            ArtifactChunk {
                sha256: sha256(b"site.tar contents"),
                offset: 8,
                data: b" contents".to_vec(),
                total: 17,
                last: true,
            }
            .into(),
        ),
        (
            "join with two addresses",
            JoinRequest {
                token: "otto1qv3xk2m9w0hf6c4s8yzt5n7pdj4e2rgau3l0x9k".to_owned(),
                cert: certificate_envelope("ops-1", "acme-ops", OPS_ORG, OPS_NODE),
                addrs: vec![
                    "/ip4/127.0.0.1/tcp/7410".to_owned(),
                    "/ip4/127.0.0.1/udp/7410/quic-v1".to_owned(),
                ],
            }
            .into(),
        ),
        (
            "accepted, with certificate and scope",
            JoinResponse {
                accepted: true,
                reason: None,
                cert: Some(certificate_envelope("dev-1", "acme-dev", DEV_ORG, DEV_NODE)),
                scope: Some(Scope {
                    roles: vec!["deploy".to_owned()],
                    pipelines: vec!["webapp".to_owned()],
                    stages: vec!["Deploy*".to_owned()],
                    environments: vec!["production".to_owned(), "staging".to_owned()],
                }),
            }
            .into(),
        ),
        (
            "refused",
            JoinResponse {
                accepted: false,
                reason: Some("invite already used".to_owned()),
                cert: None,
                scope: None,
            }
            .into(),
        ),
        (
            "two revoked nodes",
            RevocationList {
                org_key: key(DEV_ORG),
                seq: 7,
                revoked: vec![
                    Revocation {
                        node_key: key(0x2d),
                        at: T0 + 86_400,
                        reason: "laptop stolen".to_owned(),
                    },
                    Revocation {
                        node_key: key(0x3d),
                        at: T0 + 172_800,
                        reason: "decommissioned".to_owned(),
                    },
                ],
                issued_at: T0 + 172_800,
            }
            .into(),
        ),
        (
            "empty list",
            RevocationList {
                org_key: key(OPS_ORG),
                seq: 1,
                revoked: Vec::new(),
                issued_at: T0,
            }
            .into(),
        ),
        (
            "ops-1 of acme-ops",
            certificate("ops-1", "acme-ops", OPS_ORG, OPS_NODE).into(),
        ),
    ]
}

/// The envelopes written to `protocol/vectors/envelope.json`.
pub(crate) fn vector_envelopes() -> Vec<(&'static str, Envelope)> {
    let plan = plan_json(2);
    let accept = Accept {
        id: offer(plan.clone(), Vec::new()).id,
        stage: "Deploy".to_owned(),
        attempt: 1,
    };
    let mut twice = signed(accept.clone().into(), key(OPS_NODE));
    twice.signatures.push(signature(key(OPS_ORG), 0xa5));
    vec![
        (
            "a receipt signed by its node",
            receipt_chain(&plan, 1).remove(0),
        ),
        ("an accept with two signatures", twice),
        (
            "a node certificate signed by its org",
            certificate_envelope("ops-1", "acme-ops", OPS_ORG, OPS_NODE),
        ),
    ]
}
