//! Properties of the codec over generated messages: every kind round-trips through CBOR and
//! JSON, decoding never panics on random or mangled bytes, and messages whose fields stay
//! within the documented sender bounds always fit their kind's limit.

use otto_protocol::limits::{
    MAX_ADDRS, MAX_ARTIFACT_CHUNK_DATA, MAX_ARTIFACTS, MAX_LOG_FETCH_BYTES, MAX_LOG_FETCH_LINES,
    MAX_LOG_LINE_LEN, MAX_LOG_LINES, MAX_NAME_LEN, MAX_NODE_CERTIFICATE_BYTES, MAX_REVOKED,
    MAX_SCOPE_ENTRIES, MAX_SIGNATURES, MAX_TEXT_LEN, MAX_TOKEN_LEN, MAX_UPSTREAM,
};
use otto_protocol::{
    Accept, Artifact, ArtifactChunk, ArtifactRequest, Digest, Envelope, Facts, GitBundle,
    HandoffId, InputArtifact, JoinRequest, JoinResponse, KeyBytes, Kind, LogLines, LogRequest,
    Message, NodeCertificate, NodeIdentity, Offer, Outcome, Receipt, Reject, RejectCode, Retry,
    Revocation, RevocationList, RunSource, Scope, Signature, StageState, Status, decode,
    decode_envelope, encode, encode_envelope,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_kind_round_trips(message in any_message()) {
        let bytes = encode(&message);
        prop_assert_eq!(decode(message.payload_type(), &bytes), Ok(message.clone()));
        let json = message.to_json();
        prop_assert_eq!(Message::from_json(message.kind().as_str(), json), Ok(message));
    }

    #[test]
    fn envelopes_round_trip(envelope in envelope(64)) {
        let bytes = encode_envelope(&envelope);
        prop_assert_eq!(decode_envelope(&bytes), Ok(envelope.clone()));
        prop_assert_eq!(Envelope::from_json(&envelope.to_json()), Ok(envelope));
    }

    #[test]
    fn decode_never_panics_on_random_bytes(bytes in vec(any::<u8>(), 0..512)) {
        for kind in Kind::ALL {
            let _ = decode(kind.as_str(), &bytes);
        }
        let _ = decode_envelope(&bytes);
    }

    #[test]
    fn decode_never_panics_on_mangled_messages(
        message in any_message(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encode(&message);
        for (at, byte) in edits {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        for kind in Kind::ALL {
            let _ = decode(kind.as_str(), &bytes);
        }
        let _ = decode_envelope(&bytes);
        let cut = cut.index(bytes.len() + 1);
        let _ = decode(message.payload_type(), &bytes[..cut]);
    }
}

proptest! {
    // Values at the bounds are large (up to a few MiB), so fewer cases.
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn messages_within_bounds_fit_their_limit(message in bounded_message()) {
        let len = encode(&message).len();
        let max = message.kind().max_bytes();
        prop_assert!(len <= max, "{} of {len} bytes over {max}", message.kind());
    }
}

/// The largest message of each kind that has per-field bounds fits its limit.
#[test]
fn the_largest_messages_within_bounds_fit() {
    for message in largest_messages() {
        let len = encode(&message).len();
        let max = message.kind().max_bytes();
        assert!(len <= max, "{} of {len} bytes over {max}", message.kind());
        assert_eq!(
            decode(message.payload_type(), &encode(&message)),
            Ok(message)
        );
    }
}

/// Moderate random messages of every kind.
fn any_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        offer().prop_map(Message::from),
        accept(text(32)).prop_map(Message::from),
        reject(text(32), text(64)).prop_map(Message::from),
        receipt(text(32), 4).prop_map(Message::from),
        status(text(32), 4, 64).prop_map(Message::from),
        artifact_request().prop_map(Message::from),
        artifact_chunk(256).prop_map(Message::from),
        join_request(text(32), 4, 64).prop_map(Message::from),
        join_response(text(32), 4, 64).prop_map(Message::from),
        revocation_list(text(32), 4).prop_map(Message::from),
        certificate(text(32), 4).prop_map(Message::from),
        retry(text(32), text(64), envelope(256).boxed()).prop_map(Message::from),
        log_request(text(32)).prop_map(Message::from),
        log_lines(text(32), text(64), 8).prop_map(Message::from),
    ]
}

/// Messages of the kinds with per-field bounds, with fields anywhere up to those bounds.
fn bounded_message() -> impl Strategy<Value = Message> {
    let name = || text(MAX_NAME_LEN);
    prop_oneof![
        accept(name()).prop_map(Message::from),
        reject(name(), text(MAX_TEXT_LEN)).prop_map(Message::from),
        receipt(name(), MAX_ARTIFACTS).prop_map(Message::from),
        status(text(MAX_LOG_LINE_LEN), MAX_LOG_LINES, MAX_TEXT_LEN).prop_map(Message::from),
        artifact_request().prop_map(Message::from),
        artifact_chunk(MAX_ARTIFACT_CHUNK_DATA).prop_map(Message::from),
        join_request(name(), MAX_ADDRS, MAX_TOKEN_LEN).prop_map(Message::from),
        join_response(name(), MAX_SCOPE_ENTRIES, MAX_TEXT_LEN).prop_map(Message::from),
        revocation_list(name(), MAX_REVOKED).prop_map(Message::from),
        certificate(name(), MAX_SCOPE_ENTRIES).prop_map(Message::from),
        retry(
            name(),
            text(MAX_TEXT_LEN),
            certificate_envelope(name(), MAX_SCOPE_ENTRIES).boxed()
        )
        .prop_map(Message::from),
        log_request(name()).prop_map(Message::from),
        log_lines(
            name(),
            text(MAX_LOG_LINE_LEN),
            MAX_LOG_FETCH_BYTES / MAX_LOG_LINE_LEN
        )
        .prop_map(Message::from),
    ]
}

/// Text of at most `max` bytes of UTF-8: short random text, or ASCII or multi-byte filler up
/// to the bound (cheap to generate at any length).
fn text(max: usize) -> BoxedStrategy<String> {
    prop_oneof![
        "\\PC{0,8}".prop_filter("within the bound", move |s: &String| s.len() <= max),
        (0..=max).prop_map(|n| "a".repeat(n)),
        Just("a".repeat(max)),
        (0..=max / 3).prop_map(|n| "€".repeat(n)),
    ]
    .boxed()
}

fn digest() -> impl Strategy<Value = Digest> {
    any::<[u8; 32]>().prop_map(Digest)
}

fn key() -> impl Strategy<Value = KeyBytes> {
    any::<[u8; 32]>().prop_map(KeyBytes)
}

fn handoff_id() -> impl Strategy<Value = HandoffId> {
    any::<[u8; 16]>().prop_map(HandoffId)
}

fn bytes(max: usize) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..=max.min(64)),
        (0..=max).prop_map(|n| vec![0xa5; n]),
    ]
    .boxed()
}

fn envelope(max_payload: usize) -> impl Strategy<Value = Envelope> {
    let signature = (vec(any::<u8>(), 64), text(MAX_NAME_LEN))
        .prop_map(|(sig, keyid)| Signature { sig, keyid });
    (
        bytes(max_payload),
        vec(signature, 0..=3),
        text(MAX_NAME_LEN),
    )
        .prop_map(|(payload, signatures, payload_type)| Envelope {
            payload,
            signatures,
            payload_type,
        })
}

fn certificate(
    name: BoxedStrategy<String>,
    roles: usize,
) -> impl Strategy<Value = NodeCertificate> {
    (
        name.clone(),
        name.clone(),
        key(),
        key(),
        vec(name, 0..=roles),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(node, org, org_key, node_key, roles, not_before, not_after)| NodeCertificate {
                node,
                org,
                org_key: org_key.0.to_vec(),
                node_key: node_key.0.to_vec(),
                roles,
                not_before,
                not_after,
            },
        )
}

/// A certificate envelope within bounds: the payload is a bounded certificate, signed up to
/// [`MAX_SIGNATURES`] times.
fn certificate_envelope(
    name: BoxedStrategy<String>,
    roles: usize,
) -> impl Strategy<Value = Envelope> {
    let signature = text(MAX_NAME_LEN).prop_map(|keyid| Signature {
        sig: vec![0x5a; 64],
        keyid,
    });
    (certificate(name, roles), vec(signature, 1..=MAX_SIGNATURES)).prop_map(|(cert, signatures)| {
        let mut envelope = Envelope::unsigned(&cert.into());
        envelope.signatures = signatures;
        envelope
    })
}

fn offer() -> impl Strategy<Value = Offer> {
    let source = prop_oneof![
        digest().prop_map(|digest| RunSource::Snapshot { digest }),
        (
            text(64),
            text(40),
            proptest::option::of((digest(), any::<u64>()))
        )
            .prop_map(|(url, commit, bundle)| RunSource::Git {
                url,
                commit,
                bundle: bundle.map(|(sha256, size)| GitBundle { sha256, size }),
            }),
    ];
    let facts = (
        proptest::option::of(text(16)),
        proptest::option::of(text(16)),
        proptest::option::of(text(16)),
        proptest::option::of(text(40)),
        btree_map(text(16), text(16), 0..4),
    )
        .prop_map(|(branch, tag, environment, commit, vars)| Facts {
            branch,
            tag,
            environment,
            commit,
            vars,
        });
    let input =
        (text(32), digest(), any::<u64>(), text(52)).prop_map(|(name, sha256, size, provider)| {
            InputArtifact {
                name,
                sha256,
                size,
                provider,
            }
        });
    (
        (
            handoff_id(),
            text(32),
            source,
            bytes(4096),
            text(71),
            text(32),
        ),
        (any::<u32>(), facts, vec(input, 0..4)),
        (
            vec(envelope(512), 0..4),
            envelope(512),
            any::<u64>(),
            any::<u64>(),
            vec(envelope(512), 0..3),
            proptest::option::of(envelope(512)),
        ),
    )
        .prop_map(
            |(
                (id, run, source, plan, plan_digest, stage),
                (attempt, facts, inputs),
                (receipts, sender, expires_at, created_at, certificates, retry),
            )| Offer {
                id,
                run,
                source,
                plan,
                plan_digest,
                stage,
                attempt,
                facts,
                inputs,
                receipts,
                sender,
                expires_at,
                created_at,
                certificates,
                retry,
            },
        )
}

fn retry(
    name: BoxedStrategy<String>,
    reason: BoxedStrategy<String>,
    sender: BoxedStrategy<Envelope>,
) -> impl Strategy<Value = Retry> {
    (
        (handoff_id(), name.clone(), name.clone(), name),
        (any::<u32>(), reason, any::<u64>(), sender),
    )
        .prop_map(
            |((id, run, plan_digest, stage), (attempt, reason, created_at, sender))| Retry {
                id,
                run,
                plan_digest,
                stage,
                attempt,
                reason,
                created_at,
                sender,
            },
        )
}

fn accept(name: BoxedStrategy<String>) -> impl Strategy<Value = Accept> {
    (handoff_id(), name, any::<u32>()).prop_map(|(id, stage, attempt)| Accept {
        id,
        stage,
        attempt,
    })
}

fn reject(
    name: BoxedStrategy<String>,
    message: BoxedStrategy<String>,
) -> impl Strategy<Value = Reject> {
    let code = prop_oneof![
        proptest::sample::select(RejectCode::KNOWN.to_vec()),
        name.prop_filter_map("not a known code", |code| {
            let code = RejectCode::from_wire(&code);
            matches!(code, RejectCode::Unknown(_)).then_some(code)
        }),
    ];
    (
        handoff_id(),
        code,
        message.clone(),
        proptest::option::of(message),
    )
        .prop_map(|(id, code, message, hint)| Reject {
            id,
            code,
            message,
            hint,
        })
}

fn receipt(name: BoxedStrategy<String>, artifacts: usize) -> impl Strategy<Value = Receipt> {
    let outcome = prop_oneof![
        Just(Outcome::Success),
        Just(Outcome::Failure),
        Just(Outcome::Skipped),
        Just(Outcome::Cancelled),
    ];
    let artifact = (name.clone(), digest(), any::<u64>())
        .prop_map(|(name, sha256, size)| Artifact { name, sha256, size });
    let node = (name.clone(), name.clone(), key()).prop_map(|(name, org, key)| NodeIdentity {
        name,
        org,
        key,
    });
    (
        (name.clone(), name.clone(), name, any::<u32>(), outcome),
        (
            vec(artifact, 0..=artifacts),
            digest(),
            any::<u64>(),
            any::<u64>(),
        ),
        (
            vec(digest(), 0..=artifacts.min(MAX_UPSTREAM)),
            node,
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
        ),
    )
        .prop_map(
            |(
                (run, plan_digest, stage, attempt, outcome),
                (outputs, log_digest, started_at, finished_at),
                (upstream, node, started_at_ms, finished_at_ms),
            )| Receipt {
                run,
                plan_digest,
                stage,
                attempt,
                outcome,
                outputs,
                log_digest,
                started_at,
                finished_at,
                started_at_ms,
                finished_at_ms,
                upstream,
                node,
            },
        )
}

fn status(
    line: BoxedStrategy<String>,
    lines: usize,
    detail: usize,
) -> impl Strategy<Value = Status> {
    let state = prop_oneof![
        Just(StageState::Queued),
        Just(StageState::WaitingGate),
        Just(StageState::Running),
        Just(StageState::Succeeded),
        Just(StageState::Failed),
        Just(StageState::Skipped),
        Just(StageState::Cancelled),
    ];
    (
        (
            text(MAX_NAME_LEN),
            text(MAX_NAME_LEN),
            any::<u32>(),
            any::<u64>(),
        ),
        (state, any::<u64>(), proptest::option::of(text(detail))),
        vec(line, 0..=lines),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(
            |((run, stage, attempt, seq), (state, at, detail), log, log_seq, at_ms)| Status {
                run,
                stage,
                attempt,
                seq,
                state,
                at,
                detail,
                log,
                log_seq,
                at_ms,
            },
        )
}

fn log_request(name: BoxedStrategy<String>) -> impl Strategy<Value = LogRequest> {
    (
        name.clone(),
        name,
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(run, stage, after, upto, max_lines, max_bytes)| LogRequest {
                run,
                stage,
                after,
                upto,
                max_lines,
                max_bytes,
            },
        )
}

fn log_lines(
    name: BoxedStrategy<String>,
    line: BoxedStrategy<String>,
    lines: usize,
) -> impl Strategy<Value = LogLines> {
    (
        name.clone(),
        name,
        any::<u64>(),
        vec(line, 0..=lines),
        any::<u64>(),
    )
        .prop_map(|(run, stage, first, lines, last)| LogLines {
            run,
            stage,
            first,
            lines,
            last,
        })
}

fn artifact_request() -> impl Strategy<Value = ArtifactRequest> {
    (digest(), any::<u64>(), any::<u64>()).prop_map(|(sha256, offset, max_len)| ArtifactRequest {
        sha256,
        offset,
        max_len,
    })
}

fn artifact_chunk(max_data: usize) -> impl Strategy<Value = ArtifactChunk> {
    (
        digest(),
        any::<u64>(),
        bytes(max_data),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|(sha256, offset, data, total, last)| ArtifactChunk {
            sha256,
            offset,
            data,
            total,
            last,
        })
}

fn join_request(
    name: BoxedStrategy<String>,
    addrs: usize,
    token: usize,
) -> impl Strategy<Value = JoinRequest> {
    (
        text(token),
        certificate_envelope(name.clone(), MAX_SCOPE_ENTRIES.min(addrs * 2)),
        vec(name, 0..=addrs),
    )
        .prop_map(|(token, cert, addrs)| JoinRequest { token, cert, addrs })
}

fn join_response(
    name: BoxedStrategy<String>,
    entries: usize,
    reason: usize,
) -> impl Strategy<Value = JoinResponse> {
    let scope = (
        vec(name.clone(), 0..=entries),
        vec(name.clone(), 0..=entries),
        vec(name.clone(), 0..=entries),
        vec(name.clone(), 0..=entries),
    )
        .prop_map(|(roles, pipelines, stages, environments)| Scope {
            roles,
            pipelines,
            stages,
            environments,
        });
    (
        any::<bool>(),
        proptest::option::of(text(reason)),
        proptest::option::of(certificate_envelope(name, entries)),
        proptest::option::of(scope),
    )
        .prop_map(|(accepted, reason, cert, scope)| JoinResponse {
            accepted,
            reason,
            cert,
            scope,
        })
}

fn revocation_list(
    name: BoxedStrategy<String>,
    revoked: usize,
) -> impl Strategy<Value = RevocationList> {
    let revocation = (key(), any::<u64>(), name).prop_map(|(node_key, at, reason)| Revocation {
        node_key,
        at,
        reason,
    });
    (
        key(),
        any::<u64>(),
        vec(revocation, 0..=revoked),
        any::<u64>(),
    )
        .prop_map(|(org_key, seq, revoked, issued_at)| RevocationList {
            org_key,
            seq,
            revoked,
            issued_at,
        })
}

/// Every kind with per-field bounds, with every field at its bound.
fn largest_messages() -> Vec<Message> {
    let name = "n".repeat(MAX_NAME_LEN);
    let text = "t".repeat(MAX_TEXT_LEN);
    let max = u64::MAX;
    let names = |n: usize| vec![name.clone(); n];
    let certificate = NodeCertificate {
        node: name.clone(),
        org: name.clone(),
        org_key: vec![0xff; 32],
        node_key: vec![0xff; 32],
        roles: names(MAX_SCOPE_ENTRIES),
        not_before: max,
        not_after: max,
    };
    assert!(
        otto_protocol::encode_payload(&certificate).len() <= MAX_NODE_CERTIFICATE_BYTES,
        "the largest certificate fits"
    );
    let mut cert = Envelope::unsigned(&certificate.clone().into());
    cert.signatures = vec![
        Signature {
            sig: vec![0xff; 64],
            keyid: name.clone(),
        };
        MAX_SIGNATURES
    ];
    let artifact = Artifact {
        name: name.clone(),
        sha256: Digest([0xff; 32]),
        size: max,
    };
    vec![
        Accept {
            id: HandoffId([0xff; 16]),
            stage: name.clone(),
            attempt: u32::MAX,
        }
        .into(),
        Reject {
            id: HandoffId([0xff; 16]),
            code: RejectCode::Unknown(name.clone()),
            message: text.clone(),
            hint: Some(text.clone()),
        }
        .into(),
        Receipt {
            run: name.clone(),
            plan_digest: name.clone(),
            stage: name.clone(),
            attempt: u32::MAX,
            outcome: Outcome::Cancelled,
            outputs: vec![artifact; MAX_ARTIFACTS],
            log_digest: Digest([0xff; 32]),
            started_at: max,
            finished_at: max,
            started_at_ms: Some(max),
            finished_at_ms: Some(max),
            upstream: vec![Digest([0xff; 32]); MAX_UPSTREAM],
            node: NodeIdentity {
                name: name.clone(),
                org: name.clone(),
                key: KeyBytes([0xff; 32]),
            },
        }
        .into(),
        Status {
            run: name.clone(),
            stage: name.clone(),
            attempt: u32::MAX,
            seq: max,
            state: StageState::WaitingGate,
            at: max,
            detail: Some(text.clone()),
            log: vec!["l".repeat(MAX_LOG_LINE_LEN); MAX_LOG_LINES],
            log_seq: Some(max),
            at_ms: Some(max),
        }
        .into(),
        ArtifactRequest {
            sha256: Digest([0xff; 32]),
            offset: max,
            max_len: max,
        }
        .into(),
        ArtifactChunk {
            sha256: Digest([0xff; 32]),
            offset: max,
            data: vec![0xff; MAX_ARTIFACT_CHUNK_DATA],
            total: max,
            last: true,
        }
        .into(),
        Retry {
            id: HandoffId([0xff; 16]),
            run: name.clone(),
            plan_digest: name.clone(),
            stage: name.clone(),
            attempt: u32::MAX,
            reason: text.clone(),
            created_at: max,
            sender: cert.clone(),
        }
        .into(),
        JoinRequest {
            token: "k".repeat(MAX_TOKEN_LEN),
            cert: cert.clone(),
            addrs: names(MAX_ADDRS),
        }
        .into(),
        JoinResponse {
            accepted: true,
            reason: Some(text.clone()),
            cert: Some(cert),
            scope: Some(Scope {
                roles: names(MAX_SCOPE_ENTRIES),
                pipelines: names(MAX_SCOPE_ENTRIES),
                stages: names(MAX_SCOPE_ENTRIES),
                environments: names(MAX_SCOPE_ENTRIES),
            }),
        }
        .into(),
        RevocationList {
            org_key: KeyBytes([0xff; 32]),
            seq: max,
            revoked: vec![
                Revocation {
                    node_key: KeyBytes([0xff; 32]),
                    at: max,
                    reason: name.clone(),
                };
                MAX_REVOKED
            ],
            issued_at: max,
        }
        .into(),
        certificate.into(),
        LogRequest {
            run: name.clone(),
            stage: name.clone(),
            after: max,
            upto: max,
            max_lines: u32::MAX,
            max_bytes: u32::MAX,
        }
        .into(),
        // The most lines, and the longest lines, within the answer's text bound.
        LogLines {
            run: name.clone(),
            stage: name.clone(),
            first: max,
            lines: vec!["l".repeat(MAX_LOG_FETCH_BYTES / MAX_LOG_FETCH_LINES); MAX_LOG_FETCH_LINES],
            last: max,
        }
        .into(),
        LogLines {
            run: name.clone(),
            stage: name.clone(),
            first: max,
            lines: vec!["l".repeat(MAX_LOG_LINE_LEN); MAX_LOG_FETCH_BYTES / MAX_LOG_LINE_LEN],
            last: max,
        }
        .into(),
    ]
}
