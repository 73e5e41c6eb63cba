//! The vault: the node's secrets, encrypted at rest in the store, and the one component
//! that hands them out.
//!
//! # Cryptography
//!
//! The vault key is derived from a 32-byte node secret (the seed of the node key, supplied
//! by the caller) with HKDF-SHA256, no salt, and the info string `otto vault v1`. Each
//! value is sealed with XChaCha20-Poly1305 under a fresh random 24-byte nonce from the
//! caller's RNG; the associated data is the format version byte followed by the secret's
//! name, so a sealed value copied under another name does not open. A sealed value is
//! stored as `version (1 byte) || nonce (24 bytes) || ciphertext and tag`.
//!
//! # Handing out
//!
//! [`Vault::secrets_for`] is the only way code gives secret values to something else (an
//! agent, a broker): the decision of which secret reaches which step lives with its
//! callers in one place, and can later be replaced by a broker that uses the secrets on
//! the step's behalf. Values come back as [`Secret`], which wipes its memory when dropped
//! and never prints its bytes.
#![warn(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::store::{self, Store};

/// The HKDF info string of the vault key.
pub const KEY_INFO: &[u8] = b"otto vault v1";

/// The longest secret name, in bytes.
pub const MAX_NAME: usize = 128;

/// The largest secret value, in bytes.
pub const MAX_VALUE: usize = 64 * 1024;

/// The version byte of a sealed value.
const SEALED_VERSION: u8 = 1;

/// The nonce length of XChaCha20-Poly1305.
const NONCE_LEN: usize = 24;

/// The node's secrets, sealed in the store.
#[derive(Clone)]
pub struct Vault {
    store: Store,
    cipher: XChaCha20Poly1305,
}

/// A secret value. Its memory is wiped when it is dropped, and `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

/// What went wrong in the vault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The name is not a valid secret name.
    #[error(
        "secret names are 1 to 128 characters of A-Z, 0-9 and _, not starting with a digit: {0:?}"
    )]
    Name(String),
    /// The value is larger than [`MAX_VALUE`].
    #[error("a secret value is at most 64 KiB, this one has {0} bytes")]
    TooLarge(usize),
    /// A sealed value did not open: it was damaged, moved to another name, or sealed with
    /// another node key.
    #[error("secret {0} cannot be decrypted with this node's key")]
    Decrypt(String),
    /// Some secrets asked for are not in the vault.
    #[error("missing secrets: {}", .0.join(", "))]
    Missing(Vec<String>),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl Vault {
    /// The vault of `store`, with the key derived from the node secret.
    pub fn new(store: Store, node_secret: &[u8; 32]) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        let hkdf = Hkdf::<Sha256>::new(None, node_secret);
        // SAFETY: HKDF-SHA256 expands to up to 255 * 32 bytes and the cipher takes exactly
        // 32 bytes, so neither call can fail.
        hkdf.expand(KEY_INFO, key.as_mut_slice())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let cipher =
            XChaCha20Poly1305::new_from_slice(key.as_slice()).expect("the vault key has 32 bytes");
        Self { store, cipher }
    }

    /// Stores a secret under `name`, replacing any value it had, sealed with a new nonce
    /// drawn from `rng`.
    pub fn set(
        &self,
        name: &str,
        value: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Result<(), VaultError> {
        validate_name(name)?;
        if value.len() > MAX_VALUE {
            return Err(VaultError::TooLarge(value.len()));
        }
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let aad = associated_data(name);
        let ciphertext = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: value,
                    aad: &aad,
                },
            )
            // Encryption fails only for messages longer than the cipher allows (256 GiB).
            .map_err(|_| VaultError::TooLarge(value.len()))?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        sealed.push(SEALED_VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        self.store.secret_put(name, &sealed)?;
        Ok(())
    }

    /// The secret stored under `name`, if any.
    pub fn get(&self, name: &str) -> Result<Option<Secret>, VaultError> {
        validate_name(name)?;
        match self.store.secret_get(name)? {
            Some(sealed) => self.open(name, &sealed).map(Some),
            None => Ok(None),
        }
    }

    /// The names of the stored secrets, sorted. Never values.
    pub fn list(&self) -> Result<Vec<String>, VaultError> {
        Ok(self.store.secret_names()?)
    }

    /// Removes the secret stored under `name`; whether there was one.
    pub fn remove(&self, name: &str) -> Result<bool, VaultError> {
        validate_name(name)?;
        Ok(self.store.secret_remove(name)?)
    }

    /// The secrets with these names, for handing to the one stage that needs them. Fails
    /// with [`VaultError::Missing`] naming every absent secret, so nothing runs with part
    /// of its secrets.
    pub fn secrets_for<S: AsRef<str>>(
        &self,
        names: &[S],
    ) -> Result<BTreeMap<String, Secret>, VaultError> {
        let mut found = BTreeMap::new();
        let mut missing = Vec::new();
        for name in names {
            let name = name.as_ref();
            match self.get(name)? {
                Some(secret) => {
                    found.insert(name.to_owned(), secret);
                }
                None => missing.push(name.to_owned()),
            }
        }
        if missing.is_empty() {
            Ok(found)
        } else {
            missing.sort();
            missing.dedup();
            Err(VaultError::Missing(missing))
        }
    }

    fn open(&self, name: &str, sealed: &[u8]) -> Result<Secret, VaultError> {
        let fail = || VaultError::Decrypt(name.to_owned());
        let (&version, rest) = sealed.split_first().ok_or_else(fail)?;
        if version != SEALED_VERSION {
            return Err(fail());
        }
        let (nonce, ciphertext) = rest.split_first_chunk::<NONCE_LEN>().ok_or_else(fail)?;
        let aad = associated_data(name);
        let plain = self
            .cipher
            .decrypt(
                &XNonce::from(*nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| fail())?;
        Ok(Secret(Zeroizing::new(plain)))
    }
}

/// Checks a secret name: 1 to [`MAX_NAME`] characters of `A-Z`, `0-9` and `_`, not
/// starting with a digit (so every name is also a valid environment variable name).
pub fn validate_name(name: &str) -> Result<(), VaultError> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_uppercase() || b == b'_');
    let rest_ok = bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if first_ok && rest_ok && name.len() <= MAX_NAME {
        Ok(())
    } else {
        // Cut what is echoed back, so a huge bad name does not flood an error message.
        Err(VaultError::Name(name.chars().take(MAX_NAME).collect()))
    }
}

impl Secret {
    /// The secret's bytes, for the code that hands them on.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret's bytes as text, if they are UTF-8.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The bytes in their wiping buffer.
    pub fn into_zeroizing(self) -> Zeroizing<Vec<u8>> {
        self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

fn associated_data(name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + name.len());
    aad.push(SEALED_VERSION);
    aad.extend_from_slice(name.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn a_value_moved_to_another_name_does_not_open() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path().join("store.redb"))?;
        let vault = Vault::new(store.clone(), &[7; 32]);
        let mut rng = StdRng::seed_from_u64(1);
        vault.set("DEPLOY_TOKEN", b"hunter2", &mut rng)?;
        let sealed = store.secret_get("DEPLOY_TOKEN")?.ok_or("not stored")?;
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        store.secret_put("OTHER", &sealed)?;
        assert!(matches!(vault.get("OTHER"), Err(VaultError::Decrypt(name)) if name == "OTHER"));
        assert_eq!(
            vault.get("DEPLOY_TOKEN")?.map(Secret::into_zeroizing),
            Some(Zeroizing::new(b"hunter2".to_vec()))
        );
        Ok(())
    }

    #[test]
    fn each_write_draws_a_new_nonce() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path().join("store.redb"))?;
        let vault = Vault::new(store.clone(), &[7; 32]);
        let mut rng = StdRng::seed_from_u64(3);
        vault.set("ONE", b"same value", &mut rng)?;
        let first = store.secret_get("ONE")?.ok_or("not stored")?;
        vault.set("ONE", b"same value", &mut rng)?;
        let second = store.secret_get("ONE")?.ok_or("not stored")?;
        assert_eq!(first.len(), 1 + NONCE_LEN + b"same value".len() + 16);
        assert_eq!(first[0], SEALED_VERSION);
        assert_ne!(first[1..1 + NONCE_LEN], second[1..1 + NONCE_LEN]);
        assert_ne!(first[1 + NONCE_LEN..], second[1 + NONCE_LEN..]);
        Ok(())
    }

    #[test]
    fn a_damaged_value_does_not_open() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path().join("store.redb"))?;
        let vault = Vault::new(store.clone(), &[7; 32]);
        vault.set("A", b"value", &mut StdRng::seed_from_u64(2))?;
        let mut sealed = store.secret_get("A")?.ok_or("not stored")?;
        if let Some(last) = sealed.last_mut() {
            *last ^= 1;
        }
        store.secret_put("A", &sealed)?;
        assert!(matches!(vault.get("A"), Err(VaultError::Decrypt(_))));
        store.secret_put("A", &[])?;
        assert!(matches!(vault.get("A"), Err(VaultError::Decrypt(_))));
        Ok(())
    }
}
