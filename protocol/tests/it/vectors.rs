//! The test vectors in `protocol/vectors/`: hex CBOR and the JSON it decodes to, for every
//! message kind, plus encodings a decoder must tolerate and encodings it must refuse.
//!
//! `OTTO_BLESS=1 cargo test -p otto-protocol --test vectors` rewrites the files from the
//! fixtures; otherwise the test checks the committed files, both against the fixtures and
//! on their own terms (decode(hex) == decoded, encode(decoded) == hex), the way another
//! implementation would use them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ciborium::Value;
use otto_protocol::{
    Accept, Envelope, Kind, Message, decode, decode_envelope, encode, encode_envelope, pae,
};
use serde_json::json;

#[test]
fn vectors_match_fixtures_and_decode_as_stated() {
    let generated = generated();
    let dir = vectors_dir();
    if std::env::var_os("OTTO_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(&dir).unwrap();
        for (file, value) in &generated {
            let text = serde_json::to_string_pretty(value).unwrap() + "\n";
            std::fs::write(dir.join(file), text).unwrap();
        }
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".json"))
        .collect();
    on_disk.sort();
    let expected: Vec<String> = generated.keys().cloned().collect();
    assert_eq!(on_disk, expected, "vector files (run with OTTO_BLESS=1)");

    for (file, value) in &generated {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let committed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(&committed, value, "{file} is stale (run with OTTO_BLESS=1)");
        check_file(file, &committed);
    }
}

#[test]
fn every_kind_has_a_vector() {
    let generated = generated();
    for kind in Kind::ALL {
        let file = format!("{kind}.json");
        let vectors = generated[&file].as_array().unwrap();
        assert!(!vectors.is_empty(), "no vector for {kind}");
    }
}

/// Checks one committed file the way an independent implementation would.
fn check_file(file: &str, vectors: &serde_json::Value) {
    for vector in vectors.as_array().unwrap() {
        let name = vector["name"].as_str().unwrap();
        let kind = vector["kind"].as_str().unwrap();
        let bytes = hex::decode(vector["cbor_hex"].as_str().unwrap()).unwrap();
        let context = format!("{file}: {name}");
        match file {
            "envelope.json" => {
                let envelope = decode_envelope(&bytes).unwrap();
                assert_eq!(
                    serde_json::to_value(&envelope).unwrap(),
                    vector["decoded"],
                    "{context}"
                );
                let from_json = Envelope::from_json(&vector["decoded"].to_string()).unwrap();
                assert_eq!(encode_envelope(&from_json), bytes, "{context}");
                let expected_pae = hex::decode(vector["pae_hex"].as_str().unwrap()).unwrap();
                assert_eq!(
                    pae(&envelope.payload_type, &envelope.payload),
                    expected_pae,
                    "{context}"
                );
            }
            "rejected.json" => {
                let err = decode(kind, &bytes).unwrap_err();
                assert_eq!(err.code(), vector["error"], "{context}: {err}");
            }
            "tolerated.json" => {
                let message = decode(kind, &bytes).unwrap();
                assert_eq!(message.to_json(), vector["decoded"], "{context}");
                let canonical = hex::decode(vector["canonical_hex"].as_str().unwrap()).unwrap();
                let reparsed = Message::from_json(kind, vector["decoded"].clone()).unwrap();
                assert_eq!(encode(&reparsed), canonical, "{context}");
            }
            _ => {
                assert_eq!(file, format!("{kind}.json"));
                let message = decode(kind, &bytes).unwrap();
                assert_eq!(message.to_json(), vector["decoded"], "{context}");
                let reparsed = Message::from_json(kind, vector["decoded"].clone()).unwrap();
                assert_eq!(encode(&reparsed), bytes, "{context}");
            }
        }
    }
}

/// Every vector file's content, by file name.
fn generated() -> BTreeMap<String, serde_json::Value> {
    let mut files: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for (name, message) in crate::common::vector_messages() {
        let kind = message.kind();
        files
            .entry(format!("{kind}.json"))
            .or_default()
            .push(json!({
                "name": name,
                "kind": kind.as_str(),
                "cbor_hex": hex::encode(encode(&message)),
                "decoded": message.to_json(),
            }));
    }
    for (name, envelope) in crate::common::vector_envelopes() {
        files
            .entry("envelope.json".to_owned())
            .or_default()
            .push(json!({
                "name": name,
                "kind": "envelope",
                "cbor_hex": hex::encode(encode_envelope(&envelope)),
                "decoded": serde_json::to_value(&envelope).unwrap(),
                "pae_hex": hex::encode(envelope.pae()),
            }));
    }
    for (name, kind, bytes) in tolerated() {
        let message = decode(kind.as_str(), &bytes).unwrap();
        files
            .entry("tolerated.json".to_owned())
            .or_default()
            .push(json!({
                "name": name,
                "kind": kind.as_str(),
                "cbor_hex": hex::encode(&bytes),
                "decoded": message.to_json(),
                "canonical_hex": hex::encode(encode(&message)),
            }));
    }
    for (name, kind, bytes, error) in rejected() {
        files
            .entry("rejected.json".to_owned())
            .or_default()
            .push(json!({
                "name": name,
                "kind": kind,
                "cbor_hex": hex::encode(&bytes),
                "error": error,
            }));
    }
    files
        .into_iter()
        .map(|(file, vectors)| (file, serde_json::Value::Array(vectors)))
        .collect()
}

/// Encodings that differ from this crate's but must decode.
fn tolerated() -> Vec<(&'static str, Kind, Vec<u8>)> {
    let accept = accept_value();
    let mut extra = accept.clone();
    push(&mut extra, "priority", Value::from(5));
    push(
        &mut extra,
        "routing",
        Value::Map(vec![(
            Value::from("via"),
            Value::Array(vec![Value::from("relay-1")]),
        )]),
    );

    let mut reordered = accept.clone();
    if let Value::Map(entries) = &mut reordered {
        entries[1..].reverse();
    }

    let mut indefinite = vec![0xbf];
    let canonical = cbor(&accept);
    indefinite.extend_from_slice(&canonical[1..]);
    indefinite.push(0xff);

    let receipt = crate::common::vector_messages()
        .into_iter()
        .find_map(|(_, m)| matches!(m, Message::Receipt(_)).then_some(m))
        .unwrap();
    let mut nested = value_of(&encode(&receipt));
    if let Some(Value::Map(node)) = field(&mut nested, "node") {
        node.push((Value::from("region"), Value::from("eu-west-1")));
    }

    vec![
        ("unknown fields are ignored", Kind::Accept, cbor(&extra)),
        (
            "fields after v in any order",
            Kind::Accept,
            cbor(&reordered),
        ),
        ("an indefinite-length map", Kind::Accept, indefinite),
        (
            "an unknown field in a nested map",
            Kind::Receipt,
            cbor(&nested),
        ),
    ]
}

/// Encodings a decoder must refuse, with the error it must give.
fn rejected() -> Vec<(&'static str, String, Vec<u8>, &'static str)> {
    let accept = accept_value();
    let accept_bytes = cbor(&accept);
    let with_version = |v: Value| {
        let mut value = accept.clone();
        if let Value::Map(entries) = &mut value {
            entries[0].1 = v;
        }
        cbor(&value)
    };

    let mut oversize = accept.clone();
    push(&mut oversize, "pad", Value::Bytes(Vec::new()));
    let pad = otto_protocol::limits::MAX_ACCEPT_BYTES + 1 - cbor(&oversize).len();
    // Growing the byte string past 23 and 255 bytes lengthens its header by 2 bytes.
    let pad = pad - 2;
    if let Some(Value::Bytes(bytes)) = field(&mut oversize, "pad") {
        bytes.resize(pad, 0);
    }
    let oversize = cbor(&oversize);
    assert_eq!(oversize.len(), otto_protocol::limits::MAX_ACCEPT_BYTES + 1);

    let newer_shape = cbor(&Value::Map(vec![
        (Value::from("v"), Value::from(2)),
        (Value::from("handoff"), Value::from("a different layout")),
    ]));

    let mut no_version = accept.clone();
    if let Value::Map(entries) = &mut no_version {
        entries.remove(0);
    }
    let mut version_second = accept.clone();
    if let Value::Map(entries) = &mut version_second {
        entries.swap(0, 1);
    }

    let mut trailing = accept_bytes.clone();
    trailing.push(0x00);
    let truncated = accept_bytes[..accept_bytes.len() - 1].to_vec();

    let mut short_id = accept.clone();
    if let Some(Value::Bytes(id)) = field(&mut short_id, "id") {
        id.pop();
    }

    let status = Message::Status(otto_protocol::Status {
        run: "run-0001".to_owned(),
        stage: "Deploy".to_owned(),
        attempt: 1,
        seq: 0,
        state: otto_protocol::StageState::Running,
        at: crate::common::T0,
        detail: None,
        log: vec!["x".to_owned(); otto_protocol::limits::MAX_LOG_LINES + 1],
        log_seq: None,
        at_ms: None,
    });

    let mut deep = Value::from(0);
    for _ in 0..=otto_protocol::limits::MAX_DEPTH {
        deep = Value::Array(vec![deep]);
    }
    let mut too_deep = accept.clone();
    push(&mut too_deep, "deep", deep);

    let offer = crate::common::vector_messages().remove(0).1;
    let mut svn = value_of(&encode(&offer));
    if let Some(Value::Map(source)) = field(&mut svn, "source") {
        source[0].1 = Value::from("svn");
    }

    let receipt = crate::common::vector_messages()
        .into_iter()
        .find_map(|(_, m)| matches!(m, Message::Receipt(_)).then_some(m))
        .unwrap();
    let mut exploded = value_of(&encode(&receipt));
    if let Some(outcome) = field(&mut exploded, "outcome") {
        *outcome = Value::from("exploded");
    }

    let gossip = cbor(&Value::Map(vec![
        (Value::from("v"), Value::from(1)),
        (Value::from("topic"), Value::from("runs")),
    ]));

    let accept = || "accept".to_owned();
    vec![
        (
            "an unknown kind name",
            "gossip".to_owned(),
            gossip.clone(),
            "unknown_kind",
        ),
        (
            "an unknown payload type",
            "application/vnd.otto.gossip+cbor".to_owned(),
            gossip,
            "unknown_kind",
        ),
        ("one byte over the limit", accept(), oversize, "too_large"),
        (
            "a newer major version",
            accept(),
            with_version(Value::from(2)),
            "unsupported_version",
        ),
        (
            "a newer major version with another layout",
            accept(),
            newer_shape,
            "unsupported_version",
        ),
        (
            "version 0",
            accept(),
            with_version(Value::from(0)),
            "unsupported_version",
        ),
        ("no version", accept(), cbor(&no_version), "malformed"),
        (
            "the version not first",
            accept(),
            cbor(&version_second),
            "malformed",
        ),
        (
            "the version as text",
            accept(),
            with_version(Value::from("1")),
            "malformed",
        ),
        (
            "not a map",
            accept(),
            cbor(&Value::Array(vec![Value::from(1)])),
            "malformed",
        ),
        ("empty input", accept(), Vec::new(), "malformed"),
        ("a trailing byte", accept(), trailing, "malformed"),
        ("truncated", accept(), truncated, "malformed"),
        (
            "a 15-byte handoff id",
            accept(),
            cbor(&short_id),
            "malformed",
        ),
        (
            "too many log lines",
            "status".to_owned(),
            encode(&status),
            "malformed",
        ),
        ("nested too deep", accept(), cbor(&too_deep), "malformed"),
        (
            "an unknown run source kind",
            "offer".to_owned(),
            cbor(&svn),
            "malformed",
        ),
        (
            "an unknown outcome",
            "receipt".to_owned(),
            cbor(&exploded),
            "malformed",
        ),
    ]
}

fn accept_value() -> Value {
    let accept = Accept {
        id: otto_protocol::HandoffId([0x3f; 16]),
        stage: "Deploy".to_owned(),
        attempt: 1,
    };
    value_of(&encode(&accept.into()))
}

fn value_of(bytes: &[u8]) -> Value {
    ciborium::from_reader(bytes).unwrap()
}

fn cbor(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).unwrap();
    out
}

fn push(map: &mut Value, key: &str, value: Value) {
    if let Value::Map(entries) = map {
        entries.push((Value::from(key), value));
    }
}

fn field<'a>(map: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    match map {
        Value::Map(entries) => entries
            .iter_mut()
            .find(|(k, _)| k.as_text() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors")
}
