//! Node and org keys, public keys and their key ids, and the [`Signer`] trait.
//!
//! Every Otto key is Ed25519. A key is named on the wire by its **key id**:
//! `ed25519:` followed by the 32 public-key bytes in lowercase hex (64 digits). The key id
//! is only a hint that lets a verifier pick a key from a set it already trusts; a verifier
//! never trusts a key because a key id names it.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, KeypairBytes};
use ed25519_dalek::{SigningKey, VerifyingKey};
use libp2p_identity::PeerId;
use otto_protocol::Signature;
use rand_core::CryptoRng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// The prefix of every Otto key id.
pub const KEYID_PREFIX: &str = "ed25519:";

/// The length of an Ed25519 public key in bytes.
pub const PUBLIC_KEY_LEN: usize = 32;

/// The length of an Ed25519 signature in bytes.
pub const SIGNATURE_LEN: usize = 64;

/// An Ed25519 public key: a node's identity or an org's certifying key.
///
/// A `PublicKey` is always a valid curve point of full order: weak (small-order) keys are
/// refused when the key is built, so every signature check on it can be strict.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

/// Something that can sign bytes with an Ed25519 key: a key in memory here, a hardware
/// module or an agent later. Signing may fail, for example when a device is unplugged.
pub trait Signer {
    /// The public key that verifies this signer's signatures.
    fn public_key(&self) -> PublicKey;

    /// Signs `msg` and returns the signature labelled with this signer's key id.
    fn try_sign(&self, msg: &[u8]) -> Result<Signature, SignError>;
}

/// A node's secret key: its identity on the mesh (its libp2p `PeerId` derives from it)
/// and the key that signs its handoffs, receipts and invites.
pub struct NodeKey(Keypair);

/// An org's secret key: it certifies the org's node keys and signs its revocation lists.
pub struct OrgKey(Keypair);

/// Why a signer could not sign.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The signing device or service did not produce a signature.
    #[error("signer unavailable: {0}")]
    Unavailable(String),
}

/// Why bytes or text could not be turned into a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The public key does not have 32 bytes.
    #[error("public key must be 32 bytes, got {0}")]
    Length(usize),
    /// The bytes are not the encoding of a point on the curve.
    #[error("bytes are not a valid ed25519 public key")]
    Point,
    /// The key has small order, so signatures by it prove nothing.
    #[error("public key has small order and cannot be used")]
    Weak,
    /// The text is not `ed25519:` followed by 64 lowercase hex digits.
    #[error("key id {0:?} is not of the form ed25519:<64 lowercase hex digits>")]
    KeyId(String),
    /// The PEM text is not an Ed25519 PKCS#8 private key.
    #[error("not an ed25519 pkcs#8 private key: {0}")]
    Pem(String),
}

/// A signature did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("signature does not verify")]
pub struct InvalidSignature;

impl PublicKey {
    /// Builds a key from its 32 bytes, refusing invalid and small-order points.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let arr: &[u8; PUBLIC_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| KeyError::Length(bytes.len()))?;
        let key = VerifyingKey::from_bytes(arr).map_err(|_| KeyError::Point)?;
        if key.is_weak() {
            return Err(KeyError::Weak);
        }
        Ok(Self(key))
    }

    /// Parses a key id (`ed25519:<64 lowercase hex digits>`) into the key it names.
    pub fn from_keyid(keyid: &str) -> Result<Self, KeyError> {
        let bad = || KeyError::KeyId(keyid.chars().take(80).collect());
        let hex_part = keyid.strip_prefix(KEYID_PREFIX).ok_or_else(bad)?;
        if hex_part.len() != 2 * PUBLIC_KEY_LEN
            || !hex_part
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(bad());
        }
        let bytes = hex::decode(hex_part).map_err(|_| bad())?;
        Self::from_bytes(&bytes)
    }

    /// The 32 bytes of the key.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        self.0.as_bytes()
    }

    /// The 32 key bytes in lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }

    /// The key id: `ed25519:` followed by the key bytes in lowercase hex.
    pub fn keyid(&self) -> String {
        let mut id = String::with_capacity(KEYID_PREFIX.len() + 2 * PUBLIC_KEY_LEN);
        id.push_str(KEYID_PREFIX);
        id.push_str(&hex::encode(self.as_bytes()));
        id
    }

    /// The libp2p peer id of a node with this key.
    pub fn peer_id(&self) -> PeerId {
        // SAFETY: the bytes come from a valid `VerifyingKey`, and libp2p's Ed25519 parser
        // accepts every valid point, so this cannot fail.
        #[allow(clippy::expect_used)]
        let key = libp2p_identity::ed25519::PublicKey::try_from_bytes(self.as_bytes())
            .expect("a valid ed25519 key is a valid libp2p ed25519 key");
        libp2p_identity::PublicKey::from(key).to_peer_id()
    }

    /// Checks an Ed25519 signature of `msg` strictly (no malleable or small-order forms).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), InvalidSignature> {
        let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|_| InvalidSignature)?;
        self.0
            .verify_strict(msg, &sig)
            .map_err(|_| InvalidSignature)
    }

    pub(crate) fn dalek(&self) -> &VerifyingKey {
        &self.0
    }

    /// The key as an X.509 SubjectPublicKeyInfo PEM document (`-----BEGIN PUBLIC
    /// KEY-----`, RFC 8410): what `openssl pkey -pubin` and most libraries read.
    pub fn to_spki_pem(&self) -> String {
        // SAFETY: encoding a 32-byte Ed25519 key as SPKI only fails on allocation failure.
        #[allow(clippy::expect_used)]
        self.0
            .to_public_key_pem(LineEnding::LF)
            .expect("an ed25519 key always encodes as spki")
    }

    /// The key as one OpenSSH public key line (`ssh-ed25519 <base64> <comment>`), the
    /// form of `authorized_keys` and `allowed_signers` files. `comment` is left out when
    /// empty; whitespace and control characters in it become `_`.
    pub fn to_openssh(&self, comment: &str) -> String {
        use base64::Engine as _;
        const ALGORITHM: &[u8] = b"ssh-ed25519";
        let mut blob = Vec::with_capacity(4 + ALGORITHM.len() + 4 + PUBLIC_KEY_LEN);
        for part in [ALGORITHM, self.as_bytes().as_slice()] {
            // SAFETY: both parts are far shorter than 2^32 bytes.
            #[allow(clippy::cast_possible_truncation)]
            blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
            blob.extend_from_slice(part);
        }
        let mut line = format!(
            "ssh-ed25519 {}",
            base64::engine::general_purpose::STANDARD.encode(&blob)
        );
        if !comment.is_empty() {
            line.push(' ');
            line.extend(comment.chars().map(|c| {
                if c.is_whitespace() || c.is_control() {
                    '_'
                } else {
                    c
                }
            }));
        }
        line
    }

    /// The key as a securesystemslib / in-toto key object: `keytype` and `scheme`
    /// `ed25519`, `keyval.public` the key in lowercase hex, and `keyid` Otto's key id,
    /// the one Otto writes in the `keyid` of every signature it makes. In Python,
    /// `SSlibKey.from_dict(obj.pop("keyid"), obj)` builds the verifier.
    pub fn to_sslib(&self) -> SslibKey {
        SslibKey {
            keyid: self.keyid(),
            keytype: "ed25519".to_owned(),
            scheme: "ed25519".to_owned(),
            keyval: SslibKeyVal {
                public: self.to_hex(),
            },
        }
    }
}

/// A public key as securesystemslib and in-toto describe one (see
/// [`PublicKey::to_sslib`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SslibKey {
    /// Otto's key id, `ed25519:<64 hex>`.
    pub keyid: String,
    /// Always `ed25519`.
    pub keytype: String,
    /// Always `ed25519`.
    pub scheme: String,
    /// The key material.
    pub keyval: SslibKeyVal,
}

/// The `keyval` of an [`SslibKey`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SslibKeyVal {
    /// The 32 key bytes in lowercase hex.
    pub public: String,
}

impl NodeKey {
    /// Generates a new node key from a cryptographically secure random generator.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(Keypair::generate(rng))
    }

    /// Builds the node key with the given 32-byte secret seed (deterministic test keys).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(Keypair::from_seed(seed))
    }

    /// The node's public key.
    pub fn public_key(&self) -> PublicKey {
        self.0.public
    }

    /// The node's key id (see the module docs).
    pub fn keyid(&self) -> &str {
        &self.0.keyid
    }

    /// The node's libp2p peer id.
    pub fn peer_id(&self) -> PeerId {
        self.0.public.peer_id()
    }

    /// The same key as a libp2p identity keypair, for building the node's swarm.
    pub fn to_libp2p_keypair(&self) -> libp2p_identity::Keypair {
        let mut secret = Zeroizing::new(self.0.signing.to_bytes());
        // SAFETY: any 32 bytes are a valid ed25519 secret key for libp2p.
        #[allow(clippy::expect_used)]
        libp2p_identity::Keypair::ed25519_from_bytes(&mut secret[..])
            .expect("32 bytes are a valid ed25519 secret")
    }

    /// The key as PKCS#8 v1 PEM (`-----BEGIN PRIVATE KEY-----`, RFC 8410: the seed only,
    /// the form OpenSSL, Python `cryptography`, Go and Java read), zeroed when dropped.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        self.0.to_pem()
    }

    /// Parses a PKCS#8 PEM Ed25519 private key, v1 or v2 (v2 carries the public key too,
    /// which must then match the secret key).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        Keypair::from_pem(pem).map(Self)
    }
}

impl OrgKey {
    /// Generates a new org key from a cryptographically secure random generator.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(Keypair::generate(rng))
    }

    /// Builds the org key with the given 32-byte secret seed (deterministic test keys).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(Keypair::from_seed(seed))
    }

    /// The org's public key: the key peers pin.
    pub fn public_key(&self) -> PublicKey {
        self.0.public
    }

    /// The org's key id (see the module docs).
    pub fn keyid(&self) -> &str {
        &self.0.keyid
    }

    /// The key as PKCS#8 v1 PEM (`-----BEGIN PRIVATE KEY-----`, RFC 8410: the seed only,
    /// the form OpenSSL, Python `cryptography`, Go and Java read), zeroed when dropped.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        self.0.to_pem()
    }

    /// Parses a PKCS#8 PEM Ed25519 private key, v1 or v2 (v2 carries the public key too,
    /// which must then match the secret key).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        Keypair::from_pem(pem).map(Self)
    }
}

/// The secret key with its public key and key id computed once.
pub(crate) struct Keypair {
    signing: SigningKey,
    public: PublicKey,
    keyid: String,
}

impl Keypair {
    pub(crate) fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::new(SigningKey::generate(rng))
    }

    pub(crate) fn from_seed(seed: &[u8; 32]) -> Self {
        Self::new(SigningKey::from_bytes(seed))
    }

    fn new(signing: SigningKey) -> Self {
        let public = PublicKey(signing.verifying_key());
        let keyid = public.keyid();
        Self {
            signing,
            public,
            keyid,
        }
    }

    /// The seed only, without the public key: PKCS#8 v1 (RFC 8410). ed25519-dalek on
    /// its own writes v2 (with the public key), which OpenSSL 3.0 and Python
    /// `cryptography` refuse.
    fn v1(&self) -> KeypairBytes {
        KeypairBytes {
            secret_key: self.signing.to_bytes(),
            public_key: None,
        }
    }

    pub(crate) fn to_pem(&self) -> Zeroizing<String> {
        // SAFETY: encoding an in-memory Ed25519 key as PKCS#8 only fails on allocation
        // failure in the DER writer, which aborts anyway.
        #[allow(clippy::expect_used)]
        let pem = self
            .v1()
            .to_pkcs8_pem(LineEnding::LF)
            .expect("an ed25519 key always encodes as pkcs#8");
        Zeroizing::new(pem.as_str().to_owned())
    }

    pub(crate) fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let signing = SigningKey::from_pkcs8_pem(pem).map_err(|e| KeyError::Pem(e.to_string()))?;
        Ok(Self::new(signing))
    }

    pub(crate) fn pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        // SAFETY: as in `to_pem`.
        #[allow(clippy::expect_used)]
        let der = self
            .v1()
            .to_pkcs8_der()
            .expect("an ed25519 key always encodes as pkcs#8");
        Zeroizing::new(der.as_bytes().to_vec())
    }

    fn sign(&self, msg: &[u8]) -> Signature {
        use ed25519_dalek::Signer as _;
        Signature {
            keyid: self.keyid.clone(),
            sig: self.signing.sign(msg).to_bytes().to_vec(),
        }
    }
}

impl Signer for NodeKey {
    fn public_key(&self) -> PublicKey {
        self.0.public
    }

    fn try_sign(&self, msg: &[u8]) -> Result<Signature, SignError> {
        Ok(self.0.sign(msg))
    }
}

impl Signer for OrgKey {
    fn public_key(&self) -> PublicKey {
        self.0.public
    }

    fn try_sign(&self, msg: &[u8]) -> Result<Signature, SignError> {
        Ok(self.0.sign(msg))
    }
}

impl<S: Signer + ?Sized> Signer for &S {
    fn public_key(&self) -> PublicKey {
        (**self).public_key()
    }

    fn try_sign(&self, msg: &[u8]) -> Result<Signature, SignError> {
        (**self).try_sign(msg)
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("NodeKey").field(&self.0.keyid).finish()
    }
}

impl fmt::Debug for OrgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OrgKey").field(&self.0.keyid).finish()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.keyid())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(KEYID_PREFIX)?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_keyid(s)
    }
}

impl Hash for PublicKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialOrd for PublicKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PublicKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

/// Keys appear in text files (the trust store) as their key id.
impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.keyid())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::from_keyid(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeKey {
        NodeKey::from_seed(&[7; 32])
    }

    #[test]
    fn keyid_is_prefix_and_lowercase_hex_and_round_trips() {
        let key = node().public_key();
        let id = key.keyid();
        assert!(id.starts_with("ed25519:"));
        assert_eq!(id.len(), 8 + 64);
        assert_eq!(id, id.to_lowercase());
        assert_eq!(id, key.to_string());
        assert_eq!(PublicKey::from_keyid(&id), Ok(key));
        assert_eq!(node().keyid(), id);
    }

    #[test]
    fn bad_keyids_are_refused() {
        let id = node().public_key().keyid();
        let upper = format!("ed25519:{}", id[8..].to_uppercase());
        for bad in [
            "",
            "ed25519:",
            &id[8..],
            &id[..id.len() - 1],
            &upper,
            &format!("ed448:{}", &id[8..]),
        ] {
            assert!(
                matches!(PublicKey::from_keyid(bad), Err(KeyError::KeyId(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn public_key_bytes_are_checked() {
        assert_eq!(PublicKey::from_bytes(&[1; 31]), Err(KeyError::Length(31)));
        // The identity point (y = 1) is a valid encoding of a small-order point.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(PublicKey::from_bytes(&identity), Err(KeyError::Weak));
        // y = 2 is not on the curve.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert_eq!(PublicKey::from_bytes(&off_curve), Err(KeyError::Point));
    }

    #[test]
    fn pem_round_trips_and_garbage_is_refused() {
        let key = node();
        let pem = key.to_pkcs8_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = NodeKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        assert!(matches!(
            NodeKey::from_pkcs8_pem(
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
            ),
            Err(KeyError::Pem(_))
        ));
        assert!(matches!(
            OrgKey::from_pkcs8_pem("hello"),
            Err(KeyError::Pem(_))
        ));
    }

    #[test]
    fn key_files_are_pkcs8_v1_and_v2_files_still_load() {
        use base64::Engine as _;
        let key = node();
        let pem = key.to_pkcs8_pem();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        // RFC 8410 section 10.3: SEQUENCE { INTEGER 0, AlgorithmIdentifier { 1.3.101.112 },
        // OCTET STRING { OCTET STRING seed } }, 48 bytes, no public key attached.
        let mut expected = hex::decode("302e020100300506032b657004220420").unwrap();
        expected.extend_from_slice(&[7; 32]);
        assert_eq!(der, expected);
        // A v2 document (what Otto wrote before, and what ed25519-dalek writes) loads.
        let v2 = SigningKey::from_bytes(&[7; 32])
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap();
        assert!(v2.len() > pem.len(), "v2 carries the public key");
        let back = NodeKey::from_pkcs8_pem(&v2).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        assert_eq!(*back.to_pkcs8_pem(), *pem);
    }

    #[test]
    fn public_key_formats() {
        let key = node().public_key();
        let pem = key.to_spki_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
        use ed25519_dalek::pkcs8::DecodePublicKey as _;
        assert_eq!(
            VerifyingKey::from_public_key_pem(&pem).unwrap(),
            *key.dalek()
        );
        let ssh = key.to_openssh("ops-1 of acme");
        let mut parts = ssh.split(' ');
        assert_eq!(parts.next(), Some("ssh-ed25519"));
        use base64::Engine as _;
        let blob = base64::engine::general_purpose::STANDARD
            .decode(parts.next().unwrap())
            .unwrap();
        assert_eq!(&blob[..15], b"\0\0\0\x0bssh-ed25519");
        assert_eq!(&blob[15..19], &[0, 0, 0, 32]);
        assert_eq!(&blob[19..], key.as_bytes());
        assert_eq!(parts.next(), Some("ops-1_of_acme"));
        assert_eq!(parts.next(), None);
        assert_eq!(key.to_openssh("").split(' ').count(), 2);
        let sslib = key.to_sslib();
        assert_eq!(sslib.keyid, key.keyid());
        assert_eq!(sslib.keyval.public, hex::encode(key.as_bytes()));
        assert_eq!((&*sslib.keytype, &*sslib.scheme), ("ed25519", "ed25519"));
    }

    #[test]
    fn peer_id_matches_libp2p_keypair() {
        let key = node();
        assert_eq!(key.peer_id(), key.to_libp2p_keypair().public().to_peer_id());
    }

    #[test]
    fn signatures_verify_strictly_and_only_for_their_message() {
        let key = OrgKey::from_seed(&[9; 32]);
        let sig = key.try_sign(b"hello").unwrap();
        assert_eq!(sig.keyid, key.keyid());
        let public = key.public_key();
        assert_eq!(public.verify(b"hello", &sig.sig), Ok(()));
        assert_eq!(public.verify(b"hellp", &sig.sig), Err(InvalidSignature));
        assert_eq!(
            public.verify(b"hello", &sig.sig[..63]),
            Err(InvalidSignature)
        );
        let other = NodeKey::from_seed(&[1; 32]).public_key();
        assert_eq!(other.verify(b"hello", &sig.sig), Err(InvalidSignature));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = node();
        let secret_hex = hex::encode([7u8; 32]);
        let shown = format!("{key:?}");
        assert!(!shown.contains(&secret_hex));
        assert!(shown.contains(key.keyid()));
    }
}
