//! Invites: single-use, expiring tokens that let another org's node join this one.
//!
//! The inviting node signs an [`Invite`] (its certificate, which carries its org key, its
//! addresses, the scope it offers and a random secret) and prints it as a token:
//! `otto1` followed by lowercase unpadded base32 of the envelope's CBOR and a 4-byte
//! checksum (the first bytes of its SHA-512). The `1` is the token format's version. The
//! checksum only catches copy-paste damage early; the signature is what authenticates.
//!
//! The joiner checks the token with [`open_invite`], dials an address from it and presents
//! it in a join request; the inviter checks it with [`InviteBook::redeem`], which also marks
//! it used.

#![warn(clippy::unwrap_used)]

use std::collections::BTreeMap;

use data_encoding::BASE32_NOPAD;
use ed25519_dalek::{Digest as _, Sha512};
use otto_protocol::time::utc_text;
use otto_protocol::{Envelope, JoinRequest, Scope};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};

use crate::cbor;
use crate::cert::{self, CertError, VerifiedCert};
use crate::dsse::{self, Unverified, VerifyError};
use crate::keys::{PublicKey, SignError, Signer};
use crate::policy::Definitions;

/// What every invite token starts with.
pub const TOKEN_PREFIX: &str = "otto1";

/// The DSSE payload type of an invite.
pub const INVITE_PAYLOAD_TYPE: &str = "application/vnd.otto.invite+cbor";

/// The longest text [`parse_token`] looks at, whitespace included.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// The largest invite payload accepted, in bytes.
pub const MAX_INVITE_LEN: usize = 32 * 1024;

/// The number of random secret bytes in an invite.
pub const SECRET_LEN: usize = 32;

/// The number of checksum bytes at the end of a token.
const CHECKSUM_LEN: usize = 4;

/// The payload of an invite envelope, signed by the inviting node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// The inviting node's certificate; it names the inviter's org key.
    pub cert: Envelope,
    /// Multiaddrs where the inviting node listens.
    pub addrs: Vec<String>,
    /// What the joiner's org will be allowed to ask of the inviting node.
    pub scope: Scope,
    /// Which stage definitions the inviting node will run for the joiner's org.
    pub definitions: Definitions,
    /// A random secret that makes the invite single-use.
    #[serde(with = "serde_bytes")]
    pub secret: Vec<u8>,
    /// When the invite expires, in seconds since the Unix epoch.
    pub expires_at: u64,
}

/// What the inviting node puts in an invite besides the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteParams {
    /// The inviting node's certificate.
    pub cert: Envelope,
    /// Multiaddrs where the inviting node listens.
    pub addrs: Vec<String>,
    /// The scope offered to the joiner's org.
    pub scope: Scope,
    /// Which stage definitions will be run for the joiner's org.
    pub definitions: Definitions,
    /// The secrets (name globs) the joiner's stages may receive; kept here, not sent.
    pub secrets: Vec<String>,
    /// How many stages of one of the joiner's runs this node runs at once; kept here.
    pub max_parallel: u32,
    /// When the invite expires, in seconds since the Unix epoch.
    pub expires_at: u64,
}

/// An invite the joiner checked: signed by the node its certificate names, and unexpired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedInvite {
    /// The invite.
    pub invite: Invite,
    /// The inviting node's certificate, valid under the org key it names.
    pub inviter: VerifiedCert,
}

/// A peer that redeemed an invite: what the inviter records about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPeer {
    /// The joining node's certificate, valid under the org key it names.
    pub cert: VerifiedCert,
    /// Where the joining node says it can be reached.
    pub addrs: Vec<String>,
    /// The scope the invite offered.
    pub scope: Scope,
    /// The definition rule the invite offered.
    pub definitions: Definitions,
    /// The secrets (name globs) the issued invite gives.
    pub secrets: Vec<String>,
    /// The issued invite's cap on stages of one run at once.
    pub max_parallel: u32,
}

/// The invites a node issued, by secret id, so that each is used at most once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteBook {
    #[serde(default)]
    issued: BTreeMap<String, IssuedInvite>,
}

/// The record of one issued invite. The secret itself is not kept, only its id (a hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedInvite {
    /// When it was issued.
    pub issued_at: u64,
    /// When it expires.
    pub expires_at: u64,
    /// The roles it offers.
    #[serde(default)]
    pub roles: Vec<String>,
    /// When it was redeemed, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_at: Option<u64>,
    /// The org that redeemed it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_by: Option<String>,
    /// The secrets (name globs) the joining org's stages may receive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// How many stages of one of the joining org's runs run here at once.
    #[serde(default = "crate::policy::default_max_parallel")]
    pub max_parallel: u32,
}

/// Why text is not an invite token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The text is longer than [`MAX_TOKEN_LEN`].
    #[error("invite token is too long ({0} characters)")]
    TooLong(usize),
    /// The text does not start with [`TOKEN_PREFIX`].
    #[error("not an otto invite token: it must start with {TOKEN_PREFIX}")]
    Prefix,
    /// The text has a character that is not in the token alphabet.
    #[error("invite token has an invalid character at position {0}: it is mistyped")]
    Character(usize),
    /// The checksum does not match, or the token has an impossible length.
    #[error("invite token is truncated or mistyped")]
    Checksum,
    /// The checksum matches but the bytes are not an envelope.
    #[error("invite token does not hold an envelope: {0}")]
    Malformed(String),
}

/// Why an invite was not issued, opened or redeemed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InviteError {
    /// The token text is damaged or not a token.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The token holds something other than a well-formed invite.
    #[error("malformed invite: {0}")]
    Malformed(String),
    /// The inviting node's certificate is not valid.
    #[error("inviter certificate: {0}")]
    InviterCert(CertError),
    /// The joining node's certificate is not valid.
    #[error("joiner certificate: {0}")]
    JoinerCert(CertError),
    /// The invite's signature does not verify with the inviting node's key.
    #[error("invite signature does not verify")]
    BadSignature,
    /// The invite was signed by another node than this one.
    #[error("invite was issued by another node")]
    NotOurs,
    /// The invite expired.
    #[error("invite expired at {} (now {})", utc_text(*.expires_at), utc_text(*.now))]
    Expired {
        /// When it expired.
        expires_at: u64,
        /// The time of the check.
        now: u64,
    },
    /// This node has no record of issuing the invite.
    #[error("this node has no record of issuing this invite")]
    NotIssued,
    /// The invite was redeemed before.
    #[error("invite was already used at {}", utc_text(*.used_at))]
    AlreadyUsed {
        /// When it was redeemed.
        used_at: u64,
    },
    /// The joiner's certificate is for another node than the one on the connection.
    #[error("joiner certificate is for node {cert}, but the request came from {presenter}")]
    PeerMismatch {
        /// The key id in the certificate.
        cert: String,
        /// The key id of the connection's peer.
        presenter: String,
    },
    /// Signing the invite failed.
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// The printable token of a signed invite envelope.
pub fn encode_token(env: &Envelope) -> String {
    let mut bytes = otto_protocol::encode_envelope(env);
    let sum = checksum(&bytes);
    bytes.extend_from_slice(&sum);
    let mut token = String::from(TOKEN_PREFIX);
    token.push_str(&BASE32_NOPAD.encode(&bytes).to_ascii_lowercase());
    token
}

/// Reads a token as pasted: whitespace anywhere (line breaks from wrapping, spaces around
/// it) is ignored, and so is letter case. Never panics, whatever the text.
pub fn parse_token(text: &str) -> Result<Unverified<Envelope>, TokenError> {
    if text.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong(text.len()));
    }
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let prefix = TOKEN_PREFIX.len();
    match compact.get(..prefix) {
        Some(p) if p.eq_ignore_ascii_case(TOKEN_PREFIX) => {}
        _ => return Err(TokenError::Prefix),
    }
    let body = compact
        .get(prefix..)
        .unwrap_or_default()
        .to_ascii_uppercase();
    let bytes = BASE32_NOPAD
        .decode(body.as_bytes())
        .map_err(|e| match e.kind {
            data_encoding::DecodeKind::Symbol => TokenError::Character(prefix + e.position),
            _ => TokenError::Checksum,
        })?;
    let Some(split) = bytes.len().checked_sub(CHECKSUM_LEN).filter(|n| *n > 0) else {
        return Err(TokenError::Checksum);
    };
    let (envelope, sum) = bytes.split_at(split);
    if checksum(envelope) != sum {
        return Err(TokenError::Checksum);
    }
    otto_protocol::decode_envelope(envelope)
        .map(Unverified::new)
        .map_err(|e| TokenError::Malformed(e.to_string()))
}

/// The joiner's check of a token: the inviter's certificate is valid under the org key it
/// names, the invite is signed by the certified node, and it has not expired at `now`.
///
/// This proves the token is intact and self-consistent; trusting the inviter's org rests on
/// the token having come from the inviter out of band.
pub fn open_invite(token: &str, now: u64) -> Result<OpenedInvite, InviteError> {
    let env = parse_token(token)?;
    let invite = decode_invite(env.peek())?;
    let inviter =
        cert::verify_presented_cert(&invite.cert, now).map_err(InviteError::InviterCert)?;
    env.verify(inviter.node_key())
        .map_err(|_| InviteError::BadSignature)?;
    if now >= invite.expires_at {
        return Err(InviteError::Expired {
            expires_at: invite.expires_at,
            now,
        });
    }
    Ok(OpenedInvite { invite, inviter })
}

impl InviteBook {
    /// Issues an invite signed by `signer` (this node's key, which `params.cert` must
    /// certify), records it, and returns its token.
    pub fn issue<S: Signer + ?Sized, R: CryptoRng + ?Sized>(
        &mut self,
        params: InviteParams,
        signer: &S,
        rng: &mut R,
        now: u64,
    ) -> Result<String, InviteError> {
        if params.expires_at <= now {
            return Err(InviteError::Expired {
                expires_at: params.expires_at,
                now,
            });
        }
        let certified = cert::presented_node_key(&params.cert).map_err(InviteError::InviterCert)?;
        if certified != signer.public_key() {
            return Err(InviteError::Malformed(
                "the certificate is not for the signing node".to_owned(),
            ));
        }
        let mut secret = vec![0u8; SECRET_LEN];
        rng.fill_bytes(&mut secret);
        let roles = params.scope.roles.clone();
        let (secrets, max_parallel) = (params.secrets, params.max_parallel);
        let invite = Invite {
            cert: params.cert,
            addrs: params.addrs,
            scope: params.scope,
            definitions: params.definitions,
            secret,
            expires_at: params.expires_at,
        };
        let env = dsse::sign(INVITE_PAYLOAD_TYPE, cbor::encode(&invite), signer)?;
        self.issued.insert(
            secret_id(&invite.secret),
            IssuedInvite {
                issued_at: now,
                expires_at: invite.expires_at,
                roles,
                used_at: None,
                used_by: None,
                secrets,
                max_parallel,
            },
        );
        Ok(encode_token(&env))
    }

    /// The inviter's check of a join request: the token is an invite signed by this node
    /// (`me`), unexpired at `now`, issued here and not used before; the joiner's certificate
    /// is valid under the org key it names and certifies `presenter`, the key the transport
    /// authenticated. On success the invite is marked used.
    pub fn redeem(
        &mut self,
        request: &JoinRequest,
        me: &PublicKey,
        presenter: &PublicKey,
        now: u64,
    ) -> Result<NewPeer, InviteError> {
        let env = parse_token(&request.token)?;
        let invite = decode_invite(env.peek())?;
        env.verify(me).map_err(|e| match e {
            VerifyError::UnknownKey { .. } => InviteError::NotOurs,
            _ => InviteError::BadSignature,
        })?;
        if now >= invite.expires_at {
            return Err(InviteError::Expired {
                expires_at: invite.expires_at,
                now,
            });
        }
        let id = secret_id(&invite.secret);
        let Some(entry) = self.issued.get(&id) else {
            return Err(InviteError::NotIssued);
        };
        if let Some(used_at) = entry.used_at {
            return Err(InviteError::AlreadyUsed { used_at });
        }
        let cert =
            cert::verify_presented_cert(&request.cert, now).map_err(InviteError::JoinerCert)?;
        if cert.node_key() != presenter {
            return Err(InviteError::PeerMismatch {
                cert: cert.node_key().keyid(),
                presenter: presenter.keyid(),
            });
        }
        let (mut secrets, mut max_parallel) = (Vec::new(), crate::policy::DEFAULT_MAX_PARALLEL);
        if let Some(entry) = self.issued.get_mut(&id) {
            entry.used_at = Some(now);
            entry.used_by = Some(cert.org().to_owned());
            secrets.clone_from(&entry.secrets);
            max_parallel = entry.max_parallel;
        }
        Ok(NewPeer {
            cert,
            addrs: request.addrs.clone(),
            scope: invite.scope,
            definitions: invite.definitions,
            secrets,
            max_parallel,
        })
    }

    /// Forgets invites that expired at or before `now` (used or not: an expired token is
    /// refused by its expiry anyway). Returns how many were forgotten.
    pub fn prune(&mut self, now: u64) -> usize {
        let before = self.issued.len();
        self.issued.retain(|_, entry| entry.expires_at > now);
        before - self.issued.len()
    }

    /// The issued invites, by secret id.
    pub fn issued(&self) -> impl Iterator<Item = (&str, &IssuedInvite)> {
        self.issued.iter().map(|(k, v)| (k.as_str(), v))
    }
}

fn decode_invite(env: &Envelope) -> Result<Invite, InviteError> {
    if env.payload_type != INVITE_PAYLOAD_TYPE {
        return Err(InviteError::Malformed("not an invite".to_owned()));
    }
    let invite: Invite = cbor::decode(&env.payload, MAX_INVITE_LEN)
        .map_err(|e| InviteError::Malformed(e.to_string()))?;
    if invite.secret.len() != SECRET_LEN {
        return Err(InviteError::Malformed(format!(
            "secret must be {SECRET_LEN} bytes"
        )));
    }
    Ok(invite)
}

/// The name under which an invite's secret is recorded: a hash, so the store does not
/// hold the secret.
fn secret_id(secret: &[u8]) -> String {
    let digest = Sha512::new_with_prefix(b"otto invite secret\0")
        .chain_update(secret)
        .finalize();
    hex::encode(digest.get(..16).unwrap_or_default())
}

fn checksum(bytes: &[u8]) -> [u8; CHECKSUM_LEN] {
    let digest = Sha512::digest(bytes);
    let mut sum = [0u8; CHECKSUM_LEN];
    sum.copy_from_slice(digest.get(..CHECKSUM_LEN).unwrap_or(&[0; CHECKSUM_LEN]));
    sum
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "invite_tests.rs"]
mod tests;
