//! Otto's trust: node and org keys, org-signed node certificates, signed envelopes, the
//! trust store and its policies, invites, revocation, and X.509 for HTTPS endpoints.
//!
//! The crate is pure: no network, no clock, no ambient randomness. Time comes in as
//! `now` (seconds since the Unix epoch) and randomness as a `rand_core` CSPRNG (this
//! crate re-exports [`rand_core`] so callers pick a matching version). The only file I/O
//! is in [`persist`].
//!
//! # Map
//!
//! - [`keys`]: [`NodeKey`], [`OrgKey`], [`PublicKey`] and its key id, the [`Signer`] trait.
//! - [`dsse`]: signing envelopes, [`Unverified`] → [`Verified`], batch verification, JSON.
//! - [`cert`]: node certificates issued by an org key and their verification.
//! - [`store`]: the [`TrustStore`] (pinned orgs, aliases, policies, approvals, revocations,
//!   invites) with [`policy`] scope checks and [`revocation`] lists.
//! - [`invite`]: invite tokens, the joiner's and the inviter's checks.
//! - [`x509`]: an org CA for HTTPS endpoints and rustls configurations trusting only it.
//! - [`persist`]: key files (PKCS#8 PEM, mode 0600) and the trust store file.

mod cbor;
pub mod cert;
pub mod dsse;
pub mod glob;
pub mod invite;
pub mod keys;
pub mod persist;
pub mod policy;
pub mod revocation;
pub mod store;
pub mod x509;

pub use cert::{CertError, CertSpec, VerifiedCert};
pub use dsse::{Unverified, Verified};
pub use keys::{NodeKey, OrgKey, PublicKey, SignError, Signer};
pub use policy::{Definitions, Policy, ScopeError, StageDefinition};
pub use rand_core;
pub use store::TrustStore;

/// The longest org, node or alias name.
pub const MAX_NAME_LEN: usize = 64;

/// Whether `name` is usable as an org, node or alias name: 1 to [`MAX_NAME_LEN`] ASCII
/// letters, digits, `-`, `_` or `.`, not starting with `.` or `-`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["ops", "acme-ops", "ops_1", "a.b", "A9", &"x".repeat(64)] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            "a b",
            "ops\n",
            "ö",
            ".hidden",
            "-x",
            "a/b",
            &"x".repeat(65),
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
