//! Behaviour of the codec that peers and the rest of Otto rely on: kinds and payload types,
//! limits on hostile input, reject codes, and the envelope's binary and JSON forms.

use std::collections::BTreeMap;

use otto_protocol::limits::{
    MAX_ARTIFACTS, MAX_ENVELOPE_BYTES, MAX_ENVELOPE_JSON_BYTES, MAX_RECEIPTS, MAX_SIGNATURES,
    MAX_VARS,
};
use otto_protocol::{
    Accept, DecodeError, Digest, Envelope, HandoffId, Kind, Message, Offer, Receipt, RejectCode,
    check_len, decode, decode_envelope, decode_payload, ed25519_keyid, encode, encode_envelope,
    encode_payload, pae,
};

fn accept() -> Accept {
    Accept {
        id: HandoffId([7; 16]),
        stage: "Deploy".to_owned(),
        attempt: 1,
    }
}

fn small_offer() -> Offer {
    let plan = crate::common::plan_json(2);
    crate::common::offer(plan.clone(), crate::common::receipt_chain(&plan, 2))
}

#[test]
fn kinds_are_found_by_name_and_by_payload_type() {
    for kind in Kind::ALL {
        assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        assert_eq!(Kind::parse(kind.payload_type()), Some(kind));
        assert_eq!(kind.to_string(), kind.as_str());
        assert!(kind.payload_type().starts_with("application/vnd.otto."));
        assert!(kind.payload_type().ends_with("+cbor"));
    }
    let mut types: Vec<_> = Kind::ALL.iter().map(|k| k.payload_type()).collect();
    types.dedup();
    assert_eq!(types.len(), Kind::ALL.len());
    assert_eq!(
        "application/vnd.otto.gossip+cbor".parse::<Kind>(),
        Err(DecodeError::UnknownKind(
            "application/vnd.otto.gossip+cbor".to_owned()
        ))
    );
}

#[test]
fn a_message_round_trips_through_decode_by_payload_type() {
    let message = Message::from(small_offer());
    let bytes = encode(&message);
    assert_eq!(decode(message.payload_type(), &bytes), Ok(message.clone()));
    assert_eq!(decode("offer", &bytes), Ok(message));
}

#[test]
fn the_version_is_the_first_key() {
    let bytes = encode_payload(&accept());
    // A map of 4 entries whose first key is "v" and first value 1.
    assert_eq!(&bytes[..4], &[0xa4, 0x61, b'v', 0x01]);
}

#[test]
fn oversize_bytes_are_refused_before_decoding() {
    for kind in Kind::ALL {
        let garbage = vec![0xff; kind.max_bytes() + 1];
        assert_eq!(
            decode(kind.as_str(), &garbage),
            Err(DecodeError::TooLarge {
                kind: kind.as_str(),
                len: kind.max_bytes() + 1,
                max: kind.max_bytes(),
            })
        );
        assert!(check_len(kind, kind.max_bytes()).is_ok());
    }
    let envelope = vec![0xff; MAX_ENVELOPE_BYTES + 1];
    assert!(matches!(
        decode_envelope(&envelope),
        Err(DecodeError::TooLarge {
            kind: "envelope",
            ..
        })
    ));
}

#[test]
fn hostile_length_prefixes_fail_without_allocating() {
    // {"v": 1, "id": <byte string claiming 2^63 bytes>}
    let mut bytes = vec![0xa2, 0x61, b'v', 0x01, 0x62, b'i', b'd', 0x5b];
    bytes.extend_from_slice(&(1u64 << 63).to_be_bytes());
    bytes.extend_from_slice(&[0; 16]);
    assert!(matches!(
        decode("accept", &bytes),
        Err(DecodeError::Malformed(_))
    ));

    // An offer whose receipt chain claims 2^32 entries.
    let mut value: ciborium::Value =
        ciborium::from_reader(&encode_payload(&small_offer())[..]).unwrap();
    let ciborium::Value::Map(entries) = &mut value else {
        panic!("an offer is a map");
    };
    entries.retain(|(k, _)| k.as_text() != Some("receipts"));
    let mut bytes = Vec::new();
    ciborium::into_writer(&value, &mut bytes).unwrap();
    bytes[0] += 1; // one more entry in the map header (the offer has fewer than 23)
    bytes.extend_from_slice(&[0x68]);
    bytes.extend_from_slice(b"receipts");
    bytes.extend_from_slice(&[0x9a, 0xff, 0xff, 0xff, 0xff]);
    let err = decode("offer", &bytes).unwrap_err();
    assert!(err.to_string().contains("at most 1024"), "{err}");
}

#[test]
fn collections_are_capped() {
    let mut offer = small_offer();
    let receipt = offer.receipts[0].clone();
    offer.receipts = vec![receipt; MAX_RECEIPTS + 1];
    let err = decode_payload::<Offer>(&encode_payload(&offer)).unwrap_err();
    assert!(err.to_string().contains("at most 1024"), "{err}");

    let mut offer = small_offer();
    offer.inputs = vec![offer.inputs[0].clone(); MAX_ARTIFACTS + 1];
    assert!(decode_payload::<Offer>(&encode_payload(&offer)).is_err());
    offer.inputs.truncate(MAX_ARTIFACTS);
    assert_eq!(decode_payload::<Offer>(&encode_payload(&offer)), Ok(offer));

    let mut offer = small_offer();
    offer.facts.vars = (0..=MAX_VARS)
        .map(|i| (format!("var{i}"), String::new()))
        .collect::<BTreeMap<_, _>>();
    assert!(decode_payload::<Offer>(&encode_payload(&offer)).is_err());

    let mut envelope = offer.sender.clone();
    envelope.signatures = vec![envelope.signatures[0].clone(); MAX_SIGNATURES + 1];
    assert!(decode_envelope(&encode_envelope(&envelope)).is_err());
}

#[test]
fn a_duplicate_fact_is_refused() {
    let offer = small_offer();
    let bytes = encode_payload(&offer);
    // The fixture has one var, "region"; write it twice.
    let needle = b"\xa1\x66region\x69eu-west-1";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the vars map is in the encoding");
    let mut twice = bytes[..at].to_vec();
    twice.extend_from_slice(b"\xa2\x66region\x69eu-west-1\x66region\x62us");
    twice.extend_from_slice(&bytes[at + needle.len()..]);
    let err = decode("offer", &twice).unwrap_err();
    assert!(err.to_string().contains("duplicate"), "{err}");
}

#[test]
fn every_reject_code_has_a_stable_wire_string() {
    let wire = [
        "bad_signature",
        "unknown_org",
        "certificate_expired",
        "certificate_not_yet_valid",
        "node_revoked",
        "out_of_scope",
        "plan_digest_mismatch",
        "stage_not_owned",
        "upstream_receipt_invalid",
        "upstream_receipt_failed",
        "upstream_receipt_missing",
        "upstream_receipt_not_preceding",
        "upstream_receipt_wrong_signer",
        "owner_binding_mismatch",
        "offer_expired",
        "replayed",
        "definition_not_approved",
        "attempt_refused",
        "source_refused",
        "receipt_refused",
        "unsupported_version",
        "malformed",
        "internal",
    ];
    for (code, text) in RejectCode::KNOWN.iter().zip(wire) {
        assert_eq!(code.as_str(), text);
        assert_eq!(&RejectCode::from_wire(text), code);
    }
    assert_eq!(
        RejectCode::from_wire("rate_limited"),
        RejectCode::Unknown("rate_limited".to_owned())
    );
}

#[test]
fn decode_errors_map_to_reject_codes() {
    let mut newer = encode_payload(&accept());
    newer[3] = 0x02;
    let err = decode("accept", &newer).unwrap_err();
    assert_eq!(
        err,
        DecodeError::UnsupportedVersion {
            got: 2,
            supported: 1
        }
    );
    assert_eq!(err.reject_code(), RejectCode::UnsupportedVersion);
    let err = decode("accept", b"\x01").unwrap_err();
    assert_eq!(err.reject_code(), RejectCode::Malformed);
}

#[test]
fn the_envelope_json_form_is_dsse() {
    let envelope = crate::common::certificate_envelope("ops-1", "acme-ops", 0x0e, 0x1e);
    let json: serde_json::Value = serde_json::from_str(&envelope.to_json()).unwrap();
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["payload", "payloadType", "signatures"]);
    assert_eq!(
        json["payloadType"],
        "application/vnd.otto.node-certificate+cbor"
    );
    let sig = json["signatures"][0]["sig"].as_str().unwrap();
    assert_eq!(sig.len(), 88, "64 bytes as padded base64");
    assert_eq!(
        Envelope::from_json(&envelope.to_json()),
        Ok(envelope.clone())
    );

    // URL-safe, unpadded base64 is accepted too, and a missing keyid is empty.
    let url_safe = serde_json::json!({
        "payloadType": "text/plain",
        "payload": "-_8",
        "signatures": [{"sig": "AAE"}],
    });
    let read = Envelope::from_json(&url_safe.to_string()).unwrap();
    assert_eq!(read.payload, vec![0xfb, 0xff]);
    assert_eq!(read.signatures[0].sig, vec![0x00, 0x01]);
    assert_eq!(read.signatures[0].keyid, "");

    let huge = " ".repeat(MAX_ENVELOPE_JSON_BYTES + 1);
    assert!(matches!(
        Envelope::from_json(&huge),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn pae_matches_the_dsse_specification() {
    assert_eq!(
        pae("http://example.com/HelloWorld", b"hello world"),
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    );
    assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
}

#[test]
fn keyids_are_prefixed_lowercase_hex() {
    let keyid = ed25519_keyid(&[0xab; 32]);
    assert_eq!(keyid, format!("ed25519:{}", "ab".repeat(32)));
}

#[test]
fn canonical_bytes_do_not_depend_on_the_received_encoding() {
    let envelope = crate::common::receipt_chain(&crate::common::plan_json(2), 1).remove(0);
    let canonical = envelope.canonical_bytes();
    // Re-encode the same envelope with its keys in another order.
    let value: ciborium::Value = ciborium::from_reader(&canonical[..]).unwrap();
    let ciborium::Value::Map(mut entries) = value else {
        panic!("an envelope is a map");
    };
    entries.reverse();
    let mut reordered = Vec::new();
    ciborium::into_writer(&ciborium::Value::Map(entries), &mut reordered).unwrap();
    assert_ne!(reordered, canonical);
    let decoded = decode_envelope(&reordered).unwrap();
    assert_eq!(decoded.canonical_bytes(), canonical);
}

#[test]
fn envelopes_decode_their_payload_by_type() {
    let envelope = crate::common::receipt_chain(&crate::common::plan_json(2), 1).remove(0);
    let receipt: Receipt = envelope.payload_as().unwrap();
    assert_eq!(envelope.message(), Ok(Message::Receipt(receipt)));
    let err = envelope.payload_as::<Accept>().unwrap_err();
    assert!(err.to_string().contains("expected payload type"), "{err}");

    let mut unknown = envelope.clone();
    unknown.payload_type = "application/vnd.otto.gossip+cbor".to_owned();
    assert!(matches!(
        unknown.message(),
        Err(DecodeError::UnknownKind(_))
    ));
}

#[test]
fn fixed_size_values_parse_from_hex() {
    let digest = crate::common::sha256(b"abc");
    assert_eq!(
        digest.to_string(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(digest.to_string().parse::<Digest>(), Ok(digest));
    assert!("abcd".parse::<Digest>().is_err());
    assert!("zz".repeat(16).parse::<HandoffId>().is_err());
    assert_eq!("07".repeat(16).parse::<HandoffId>(), Ok(HandoffId([7; 16])));
}
