//! Signing and verifying DSSE envelopes, with the verification state in the type.
//!
//! A signature covers the DSSE pre-authentication encoding ([`pae`]) of the payload type
//! and payload, so there is nothing to canonicalise: the payload bytes are signed exactly as
//! they travel. Bytes from the wire become an [`Unverified`] envelope; only a check against
//! a key the caller already trusts turns it into a [`Verified`] one, and code that acts on a
//! message takes `Verified<Envelope>`.
//!
//! The binary (CBOR) form of an envelope is `otto_protocol::Envelope`; [`to_json`] and
//! [`from_json`] give the standard DSSE JSON form for export (the encoding itself lives in
//! `otto-protocol`, so every crate reads and writes the same bytes).

#![warn(clippy::unwrap_used)]

use std::ops::Deref;

use curve25519_dalek::edwards::CompressedEdwardsY;
use otto_protocol::{DecodeError, Envelope, Payload, RejectCode};

use crate::keys::{KEYID_PREFIX, PUBLIC_KEY_LEN, PublicKey, SIGNATURE_LEN, SignError, Signer};

pub use otto_protocol::limits::MAX_SIGNATURES;
pub use otto_protocol::pae;

/// A value read from an untrusted source whose signature has not been checked yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified<T>(T);

/// A value whose signature was checked against a key the caller trusts. Only this crate's
/// verification functions build one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<T> {
    value: T,
    signer: PublicKey,
}

/// Why an envelope did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The envelope carries no signature at all.
    #[error("envelope is not signed")]
    NoSignatures,
    /// The envelope carries more signatures than [`MAX_SIGNATURES`].
    #[error("envelope carries {0} signatures, more than the {MAX_SIGNATURES} allowed")]
    TooManySignatures(usize),
    /// No signature names a key among the trusted ones.
    #[error("envelope is signed by {}, none of which is trusted here", keyids.join(", "))]
    UnknownKey {
        /// The key ids the envelope's signatures name (shortened if absurdly long).
        keyids: Vec<String>,
    },
    /// A signature names a trusted key but does not verify with it.
    #[error("signature by {keyid} does not verify")]
    BadSignature {
        /// The key id of the failing signature.
        keyid: String,
    },
}

/// Which envelope of a batch failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("envelope {index} of the batch: {error}")]
pub struct BatchError {
    /// The position of the first failing envelope in the batch.
    pub index: usize,
    /// Why it failed.
    pub error: VerifyError,
}

/// Signs `payload` as a DSSE envelope of type `payload_type` with one signature.
pub fn sign<S: Signer + ?Sized>(
    payload_type: &str,
    payload: Vec<u8>,
    signer: &S,
) -> Result<Envelope, SignError> {
    let signature = signer.try_sign(&pae(payload_type, &payload))?;
    Ok(Envelope {
        payload_type: payload_type.to_owned(),
        payload,
        signatures: vec![signature],
    })
}

/// Verifies many envelopes at once, each against its own key, with Ed25519 batch
/// verification; returns them verified, in order, or the first one that fails.
///
/// The batch check accepts every envelope that [`Unverified::verify`] accepts. The only
/// signatures it may accept that the single check refuses are ones crafted by the holder
/// of the signing key itself (points with a torsion component), so it never accepts a
/// forgery. When the batch check fails, each envelope is checked alone to name the culprit.
pub fn verify_batch(
    items: Vec<(Unverified<Envelope>, PublicKey)>,
) -> Result<Vec<Verified<Envelope>>, BatchError> {
    let mut messages = Vec::with_capacity(items.len());
    let mut signatures = Vec::with_capacity(items.len());
    let mut keys = Vec::with_capacity(items.len());
    for (index, (env, key)) in items.iter().enumerate() {
        match batch_parts(&env.0, key) {
            Ok(sig) => {
                messages.push(pae(&env.0.payload_type, &env.0.payload));
                signatures.push(sig);
                keys.push(*key.dalek());
            }
            Err(error) => return Err(BatchError { index, error }),
        }
    }
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    if ed25519_dalek::verify_batch(&refs, &signatures, &keys).is_ok() {
        return Ok(items
            .into_iter()
            .map(|(env, key)| Verified {
                value: env.0,
                signer: key,
            })
            .collect());
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, (env, key))| {
            env.verify(&key)
                .map_err(|error| BatchError { index, error })
        })
        .collect()
}

/// The standard DSSE JSON form of an envelope:
/// `{"payload" (base64), "payloadType", "signatures": [{"keyid", "sig" (base64)}]}`.
pub fn to_json(env: &Envelope) -> String {
    env.to_json()
}

/// Parses the DSSE JSON form. Base64 fields may use the standard or URL-safe alphabet,
/// with or without padding; a missing `keyid` reads as empty. The result is unverified.
pub fn from_json(text: &str) -> Result<Unverified<Envelope>, DecodeError> {
    Envelope::from_json(text).map(Unverified)
}

impl VerifyError {
    /// The code a handoff reject carries for this error: every signature failure is
    /// `bad_signature`.
    pub fn reject_code(&self) -> RejectCode {
        RejectCode::BadSignature
    }
}

impl<T> Unverified<T> {
    /// Wraps a value just read from an untrusted source.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// Looks at the unverified value, e.g. to read a key id or a payload type to route on.
    /// Nothing read here may be trusted.
    pub fn peek(&self) -> &T {
        &self.0
    }

    /// Gives the value back without verifying it.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl Unverified<Envelope> {
    /// Verifies the envelope against one trusted key.
    pub fn verify(self, key: &PublicKey) -> Result<Verified<Envelope>, VerifyError> {
        self.verify_any(std::slice::from_ref(key))
    }

    /// Verifies the envelope against a set of trusted keys: it is accepted when a signature
    /// names one of them (or names no key) and verifies with it.
    pub fn verify_any(self, keys: &[PublicKey]) -> Result<Verified<Envelope>, VerifyError> {
        let signer = check(&self.0, keys)?;
        Ok(Verified {
            value: self.0,
            signer,
        })
    }
}

impl<T> Verified<T> {
    /// The key whose signature was checked.
    pub fn signer(&self) -> &PublicKey {
        &self.signer
    }

    /// The verified value.
    pub fn get(&self) -> &T {
        &self.value
    }

    /// Gives the verified value back, dropping the witness.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl Verified<Envelope> {
    /// The payload type that was signed.
    pub fn payload_type(&self) -> &str {
        &self.value.payload_type
    }

    /// The payload bytes that were signed.
    pub fn payload(&self) -> &[u8] {
        &self.value.payload
    }

    /// Decodes the payload as a `T` (failing if the payload type is not `T`'s), keeping the
    /// signer: a verified envelope gives a verified message.
    pub fn decode<T: Payload>(&self) -> Result<Verified<T>, DecodeError> {
        Ok(Verified {
            value: self.value.payload_as()?,
            signer: self.signer,
        })
    }
}

impl<T> Deref for Verified<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

/// Checks `env` against `keys` and returns the key that verified it.
fn check(env: &Envelope, keys: &[PublicKey]) -> Result<PublicKey, VerifyError> {
    let sigs = &env.signatures;
    if sigs.is_empty() {
        return Err(VerifyError::NoSignatures);
    }
    if sigs.len() > MAX_SIGNATURES {
        return Err(VerifyError::TooManySignatures(sigs.len()));
    }
    let mut message = None;
    let mut bad = None;
    for sig in sigs {
        for key in keys.iter().filter(|k| names_key(&sig.keyid, k)) {
            let message = message.get_or_insert_with(|| pae(&env.payload_type, &env.payload));
            if key.verify(message, &sig.sig).is_ok() {
                return Ok(*key);
            }
            bad.get_or_insert_with(|| shorten(&sig.keyid));
        }
    }
    match bad {
        Some(keyid) => Err(VerifyError::BadSignature { keyid }),
        None => Err(VerifyError::UnknownKey {
            keyids: sigs.iter().map(|s| shorten(&s.keyid)).collect(),
        }),
    }
}

/// Picks the signature of `env` made by `key` and checks the parts the batch equation does
/// not: its length, and that neither the key nor the signature's R is of small order (the
/// checks `verify_strict` makes).
fn batch_parts(env: &Envelope, key: &PublicKey) -> Result<ed25519_dalek::Signature, VerifyError> {
    if env.signatures.is_empty() {
        return Err(VerifyError::NoSignatures);
    }
    if env.signatures.len() > MAX_SIGNATURES {
        return Err(VerifyError::TooManySignatures(env.signatures.len()));
    }
    let Some(sig) = env.signatures.iter().find(|s| names_key(&s.keyid, key)) else {
        return Err(VerifyError::UnknownKey {
            keyids: env.signatures.iter().map(|s| shorten(&s.keyid)).collect(),
        });
    };
    let bad = || VerifyError::BadSignature {
        keyid: shorten(&sig.keyid),
    };
    let bytes: [u8; SIGNATURE_LEN] = sig.sig.as_slice().try_into().map_err(|_| bad())?;
    let signature = ed25519_dalek::Signature::from_bytes(&bytes);
    let small_r = CompressedEdwardsY(*signature.r_bytes())
        .decompress()
        .is_none_or(|r| r.is_small_order());
    if small_r {
        return Err(bad());
    }
    Ok(signature)
}

/// Whether a signature's key id names `key`; an empty key id names every key.
fn names_key(keyid: &str, key: &PublicKey) -> bool {
    if keyid.is_empty() {
        return true;
    }
    let Some(hex_part) = keyid.strip_prefix(KEYID_PREFIX) else {
        return false;
    };
    let hex_part = hex_part.as_bytes();
    hex_part.len() == 2 * PUBLIC_KEY_LEN
        && key.as_bytes().iter().enumerate().all(|(i, byte)| {
            let hi = hex_part.get(2 * i).copied().and_then(hex_digit);
            let lo = hex_part.get(2 * i + 1).copied().and_then(hex_digit);
            matches!((hi, lo), (Some(hi), Some(lo)) if hi << 4 | lo == *byte)
        })
}

/// The value of a lowercase hex digit.
fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Cuts a hostile key id down to a length fit for an error message.
fn shorten(keyid: &str) -> String {
    const MAX: usize = 80;
    if keyid.len() <= MAX {
        keyid.to_owned()
    } else {
        let cut: String = keyid.chars().take(MAX).collect();
        cut + "…"
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::keys::{NodeKey, OrgKey};

    const TYPE: &str = "application/vnd.otto.test+cbor";

    fn key(seed: u8) -> NodeKey {
        NodeKey::from_seed(&[seed; 32])
    }

    fn signed(payload: &[u8]) -> Envelope {
        sign(TYPE, payload.to_vec(), &key(1)).unwrap()
    }

    #[test]
    fn pae_matches_the_dsse_definition() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn signed_envelope_verifies_with_its_key() {
        let env = signed(b"payload");
        assert_eq!(env.signatures.len(), 1);
        assert_eq!(env.signatures[0].keyid, key(1).keyid());
        let verified = Unverified::new(env.clone())
            .verify(&key(1).public_key())
            .unwrap();
        assert_eq!(verified.payload(), b"payload");
        assert_eq!(verified.payload_type(), TYPE);
        assert_eq!(verified.signer(), &key(1).public_key());
        assert_eq!(verified.into_inner(), env);
    }

    #[test]
    fn verify_any_picks_the_named_key() {
        let keys = [
            key(2).public_key(),
            key(1).public_key(),
            key(3).public_key(),
        ];
        let verified = Unverified::new(signed(b"x")).verify_any(&keys).unwrap();
        assert_eq!(verified.signer(), &keys[1]);
    }

    #[test]
    fn unknown_key_is_reported_with_keyids() {
        let err = Unverified::new(signed(b"x"))
            .verify(&key(2).public_key())
            .unwrap_err();
        assert_eq!(
            err,
            VerifyError::UnknownKey {
                keyids: vec![key(1).keyid().to_owned()]
            }
        );
    }

    #[test]
    fn unsigned_and_oversigned_envelopes_are_refused() {
        let mut env = signed(b"x");
        let sig = env.signatures[0].clone();
        env.signatures.clear();
        assert_eq!(
            Unverified::new(env.clone()).verify(&key(1).public_key()),
            Err(VerifyError::NoSignatures)
        );
        env.signatures = vec![sig; MAX_SIGNATURES + 1];
        assert_eq!(
            Unverified::new(env).verify(&key(1).public_key()),
            Err(VerifyError::TooManySignatures(MAX_SIGNATURES + 1))
        );
    }

    #[test]
    fn signature_by_the_wrong_key_under_a_trusted_keyid_is_bad() {
        let mut env = signed(b"x");
        env.signatures[0].keyid = key(2).keyid().to_owned();
        assert_eq!(
            Unverified::new(env).verify(&key(2).public_key()),
            Err(VerifyError::BadSignature {
                keyid: key(2).keyid().to_owned()
            })
        );
    }

    #[test]
    fn empty_keyid_is_tried_against_every_key() {
        let mut env = signed(b"x");
        env.signatures[0].keyid.clear();
        let keys = [key(2).public_key(), key(1).public_key()];
        let verified = Unverified::new(env).verify_any(&keys).unwrap();
        assert_eq!(verified.signer(), &keys[1]);
    }

    #[test]
    fn one_good_signature_among_others_is_enough() {
        let mut env = signed(b"x");
        let other = sign(TYPE, b"x".to_vec(), &OrgKey::from_seed(&[5; 32])).unwrap();
        env.signatures.insert(0, other.signatures[0].clone());
        assert!(Unverified::new(env).verify(&key(1).public_key()).is_ok());
    }

    #[test]
    fn flipping_any_byte_breaks_verification() {
        let env = signed(b"a payload of some length");
        let public = key(1).public_key();
        for i in 0..env.payload.len() {
            let mut bad = env.clone();
            bad.payload[i] ^= 0x01;
            assert!(matches!(
                Unverified::new(bad).verify(&public),
                Err(VerifyError::BadSignature { .. })
            ));
        }
        for i in 0..env.payload_type.len() {
            let mut bytes = env.payload_type.clone().into_bytes();
            bytes[i] ^= 0x01;
            let mut bad = env.clone();
            bad.payload_type = String::from_utf8(bytes).unwrap();
            assert!(Unverified::new(bad).verify(&public).is_err());
        }
        for i in 0..env.signatures[0].sig.len() {
            let mut bad = env.clone();
            bad.signatures[0].sig[i] ^= 0x01;
            assert!(
                Unverified::new(bad).verify(&public).is_err(),
                "sig byte {i}"
            );
        }
        for i in 0..env.signatures[0].keyid.len() {
            let mut bytes = env.signatures[0].keyid.clone().into_bytes();
            bytes[i] ^= 0x01;
            let mut bad = env.clone();
            bad.signatures[0].keyid = String::from_utf8(bytes).unwrap();
            assert!(
                Unverified::new(bad).verify(&public).is_err(),
                "keyid byte {i}"
            );
        }
    }

    #[test]
    fn truncated_and_extended_payloads_fail() {
        let env = signed(b"abc");
        let public = key(1).public_key();
        let mut shorter = env.clone();
        shorter.payload.pop();
        assert!(Unverified::new(shorter).verify(&public).is_err());
        let mut longer = env;
        longer.payload.push(0);
        assert!(Unverified::new(longer).verify(&public).is_err());
    }

    #[test]
    fn json_round_trips_and_uses_dsse_field_names() {
        let env = signed(b"\x00\xffhello");
        let json = to_json(&env);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["payloadType"], TYPE);
        assert_eq!(value["payload"], "AP9oZWxsbw==");
        assert_eq!(value["signatures"][0]["keyid"], key(1).keyid());
        let back = from_json(&json).unwrap();
        assert_eq!(back.peek(), &env);
        assert!(back.verify(&key(1).public_key()).is_ok());
    }

    #[test]
    fn json_accepts_url_safe_unpadded_base64_and_missing_keyid() {
        let env = signed(&[0xfb, 0xff]);
        use base64::Engine as _;
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&env.signatures[0].sig);
        let json = format!(
            r#"{{"payloadType":"{TYPE}","payload":"-_8","signatures":[{{"sig":"{sig}"}}]}}"#
        );
        let parsed = from_json(&json).unwrap();
        assert_eq!(parsed.peek().payload, vec![0xfb, 0xff]);
        assert_eq!(parsed.peek().signatures[0].keyid, "");
        assert!(parsed.verify(&key(1).public_key()).is_ok());
    }

    #[test]
    fn json_errors_are_decode_errors() {
        for bad in [
            "{",
            r#"{"payload":"","signatures":[]}"#,
            r#"{"payloadType":"t","payload":"!!","signatures":[]}"#,
            r#"{"payloadType":"t","payload":"","signatures":[{"keyid":"k","sig":"%"}]}"#,
        ] {
            assert!(
                matches!(from_json(bad), Err(DecodeError::Malformed(_))),
                "{bad}"
            );
        }
        let huge = " ".repeat(otto_protocol::limits::MAX_ENVELOPE_JSON_BYTES + 1);
        assert!(matches!(
            from_json(&huge),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn batch_verifies_a_chain_of_different_signers() {
        let items: Vec<_> = (1..=20u8)
            .map(|i| {
                let k = key(i);
                (
                    Unverified::new(sign(TYPE, vec![i; 100], &k).unwrap()),
                    k.public_key(),
                )
            })
            .collect();
        let verified = verify_batch(items).unwrap();
        assert_eq!(verified.len(), 20);
        assert_eq!(verified[4].payload(), &[5u8; 100][..]);
        assert_eq!(verified[4].signer(), &key(5).public_key());
        assert_eq!(verify_batch(Vec::new()).unwrap(), Vec::new());
    }

    #[test]
    fn batch_names_the_first_bad_envelope() {
        let mut items: Vec<_> = (1..=10u8)
            .map(|i| {
                let k = key(i);
                (
                    Unverified::new(sign(TYPE, vec![i; 10], &k).unwrap()),
                    k.public_key(),
                )
            })
            .collect();
        let mut tampered = items[6].0.clone().into_inner();
        tampered.payload[0] ^= 1;
        items[6].0 = Unverified::new(tampered);
        let err = verify_batch(items.clone()).unwrap_err();
        assert_eq!(err.index, 6);
        assert!(matches!(err.error, VerifyError::BadSignature { .. }));

        items[3].1 = key(99).public_key();
        let err = verify_batch(items).unwrap_err();
        assert_eq!(err.index, 3);
        assert!(matches!(err.error, VerifyError::UnknownKey { .. }));
    }

    #[test]
    fn batch_refuses_short_and_small_order_signatures() {
        let k = key(1);
        let mut short = signed(b"x");
        short.signatures[0].sig.pop();
        let err = verify_batch(vec![(Unverified::new(short), k.public_key())]).unwrap_err();
        assert!(matches!(err.error, VerifyError::BadSignature { .. }));

        // R = the identity point (small order), s = 0.
        let mut small = signed(b"x");
        let mut sig = [0u8; 64];
        sig[0] = 1;
        small.signatures[0].sig = sig.to_vec();
        let err = verify_batch(vec![(Unverified::new(small), k.public_key())]).unwrap_err();
        assert!(matches!(err.error, VerifyError::BadSignature { .. }));
    }

    #[test]
    fn long_hostile_keyids_are_shortened_in_errors() {
        let mut env = signed(b"x");
        env.signatures[0].keyid = "k".repeat(10_000);
        let Err(VerifyError::UnknownKey { keyids }) =
            Unverified::new(env).verify(&key(1).public_key())
        else {
            panic!("expected unknown key");
        };
        assert!(keyids[0].chars().count() <= 81);
    }

    #[test]
    fn no_flipped_byte_of_the_wire_form_verifies_with_other_content() {
        let env = signed(b"wire form payload");
        let bytes = otto_protocol::encode_envelope(&env);
        let public = key(1).public_key();
        for i in 0..bytes.len() {
            for bit in [0x01, 0x80] {
                let mut bad = bytes.clone();
                bad[i] ^= bit;
                let Ok(decoded) = otto_protocol::decode_envelope(&bad) else {
                    continue;
                };
                if let Ok(verified) = Unverified::new(decoded).verify(&public) {
                    assert_eq!(verified.payload(), env.payload.as_slice(), "byte {i}");
                    assert_eq!(verified.payload_type(), env.payload_type, "byte {i}");
                }
            }
        }
    }

    #[test]
    fn verified_envelope_decodes_to_a_verified_message() {
        use otto_protocol::{NodeCertificate, Payload as _};
        let cert = NodeCertificate {
            node: "n".into(),
            org: "o".into(),
            org_key: vec![1; 32],
            node_key: vec![2; 32],
            roles: vec![],
            not_before: 0,
            not_after: 1,
        };
        let env = sign(
            NodeCertificate::KIND.payload_type(),
            otto_protocol::encode_payload(&cert),
            &key(1),
        )
        .unwrap();
        let verified = Unverified::new(env).verify(&key(1).public_key()).unwrap();
        let message: Verified<NodeCertificate> = verified.decode().unwrap();
        assert_eq!(message.get(), &cert);
        assert_eq!(message.signer(), &key(1).public_key());
        let wrong = Unverified::new(signed(b"x"))
            .verify(&key(1).public_key())
            .unwrap();
        assert!(wrong.decode::<NodeCertificate>().is_err());
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            #[test]
            fn sign_then_verify_round_trips(
                payload_type in "[ -~]{0,60}",
                payload in proptest::collection::vec(any::<u8>(), 0..512),
                seed in any::<u8>(),
            ) {
                let k = key(seed);
                let env = sign(&payload_type, payload.clone(), &k).unwrap();
                let verified = Unverified::new(env).verify(&k.public_key()).unwrap();
                prop_assert_eq!(verified.payload(), payload.as_slice());
                prop_assert_eq!(verified.payload_type(), payload_type.as_str());
            }

            #[test]
            fn any_flipped_bit_fails(
                payload in proptest::collection::vec(any::<u8>(), 1..256),
                which in 0usize..3,
                index in any::<prop::sample::Index>(),
                bit in 0u8..8,
            ) {
                let k = key(1);
                let mut env = sign(TYPE, payload, &k).unwrap();
                let flip = 1u8 << bit;
                match which {
                    0 => {
                        let i = index.index(env.payload.len());
                        env.payload[i] ^= flip;
                    }
                    1 => {
                        let i = index.index(env.signatures[0].sig.len());
                        env.signatures[0].sig[i] ^= flip;
                    }
                    _ => {
                        let mut bytes = env.payload_type.clone().into_bytes();
                        let i = index.index(bytes.len());
                        bytes[i] ^= flip;
                        env.payload_type = String::from_utf8_lossy(&bytes).into_owned();
                    }
                }
                prop_assert!(Unverified::new(env).verify(&k.public_key()).is_err());
            }

            #[test]
            fn decoding_random_bytes_as_an_envelope_never_panics(
                bytes in proptest::collection::vec(any::<u8>(), 0..512),
            ) {
                if let Ok(env) = otto_protocol::decode_envelope(&bytes) {
                    let _ = Unverified::new(env.clone()).verify(&key(1).public_key());
                    let _ = verify_batch(vec![(Unverified::new(env), key(1).public_key())]);
                }
            }
        }
    }
}
