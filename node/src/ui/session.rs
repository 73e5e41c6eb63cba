//! One-time login tokens and browser sessions, kept in memory only.
//!
//! `otto ui` asks the node for a login token (`POST /v1/ui/logins`, with the bearer
//! token); the browser trades it once for a session (`GET /ui/login/{token}`). A session
//! is a random id in an `HttpOnly`, `SameSite=Strict` cookie, with its own random CSRF
//! token. Tokens and session ids are 32 random bytes in unpadded base64url; the maps are
//! keyed by their SHA-256, so a lookup never compares the secret itself byte by byte.
//! Nothing is written to disk: a restart of the node ends every session.
//!
//! Time comes in as an argument (`now`), so tests move it without sleeping.
#![warn(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

/// How long a login token may be used.
pub const LOGIN_TTL: Duration = Duration::from_secs(5 * 60);

/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);

/// The most login tokens kept at once; asking for more forgets the oldest.
pub const MAX_LOGINS: usize = 100;

/// The most sessions kept at once; signing in once more ends the oldest.
pub(crate) const MAX_SESSIONS: usize = 1000;

/// The length of tokens, session ids and CSRF tokens, in random bytes.
const SECRET_BYTES: usize = 32;

/// The logins and sessions of one node.
#[derive(Default)]
pub(crate) struct Sessions {
    inner: Mutex<Inner>,
}

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    /// The CSRF token every form of this session carries.
    pub(crate) csrf: String,
    /// When it ends.
    pub(crate) expires: Instant,
}

/// A new session: the cookie value and the session.
#[derive(Debug, Clone)]
pub(crate) struct Started {
    /// The session id, the cookie's value.
    pub(crate) id: String,
}

#[derive(Default)]
struct Inner {
    /// Login tokens by their hash: when each expires.
    logins: HashMap<[u8; 32], Instant>,
    /// Sessions by the hash of their id.
    sessions: HashMap<[u8; 32], Session>,
}

impl Sessions {
    /// A new one-time login token, valid for [`LOGIN_TTL`] from `now`.
    pub(crate) fn new_login(&self, now: Instant) -> String {
        let token = random_secret();
        let mut inner = lock(&self.inner);
        inner.logins.retain(|_, expires| *expires > now);
        while inner.logins.len() >= MAX_LOGINS {
            let Some(oldest) = inner
                .logins
                .iter()
                .min_by_key(|(_, expires)| **expires)
                .map(|(k, _)| *k)
            else {
                break;
            };
            inner.logins.remove(&oldest);
        }
        inner.logins.insert(hash(&token), now + LOGIN_TTL);
        token
    }

    /// Trades a login token for a new session: `None` when the token is unknown, used or
    /// expired. A token works once.
    pub(crate) fn redeem(&self, token: &str, now: Instant) -> Option<Started> {
        let mut inner = lock(&self.inner);
        let expires = inner.logins.remove(&hash(token))?;
        if expires <= now {
            return None;
        }
        inner.sessions.retain(|_, s| s.expires > now);
        while inner.sessions.len() >= MAX_SESSIONS {
            let Some(oldest) = inner
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| *k)
            else {
                break;
            };
            inner.sessions.remove(&oldest);
        }
        let id = random_secret();
        let session = Session {
            csrf: random_secret(),
            expires: now + SESSION_TTL,
        };
        inner.sessions.insert(hash(&id), session);
        Some(Started { id })
    }

    /// The session with this id, if it exists and has not ended.
    pub(crate) fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let inner = lock(&self.inner);
        inner
            .sessions
            .get(&hash(id))
            .filter(|s| s.expires > now)
            .cloned()
    }

    /// Ends a session.
    pub(crate) fn end(&self, id: &str) {
        lock(&self.inner).sessions.remove(&hash(id));
    }
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    bool::from(hash(a).ct_eq(&hash(b)))
}

fn random_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    crate::daemon::fill_random(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn lock(inner: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_login_token_works_once_and_only_before_it_expires() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let token = sessions.new_login(t0);
        assert_eq!(URL_SAFE_NO_PAD.decode(&token).unwrap().len(), 32);
        let started = sessions.redeem(&token, t0).expect("first use works");
        assert!(sessions.redeem(&token, t0).is_none(), "second use fails");
        assert!(
            sessions
                .get(&started.id, t0 + Duration::from_secs(60))
                .is_some()
        );
        assert!(sessions.get(&started.id, t0 + SESSION_TTL).is_none());

        let late = sessions.new_login(t0);
        assert!(sessions.redeem(&late, t0 + LOGIN_TTL).is_none());
        assert!(sessions.redeem("made-up", t0).is_none());
    }

    #[test]
    fn sessions_have_their_own_csrf_tokens_and_end_on_logout() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let a = sessions.redeem(&sessions.new_login(now), now).unwrap();
        let b = sessions.redeem(&sessions.new_login(now), now).unwrap();
        assert_ne!(a.id, b.id);
        let csrf = |id: &str| sessions.get(id, now).unwrap().csrf;
        assert_ne!(csrf(&a.id), csrf(&b.id));
        sessions.end(&a.id);
        assert!(sessions.get(&a.id, now).is_none());
        assert!(sessions.get(&b.id, now).is_some());
    }

    #[test]
    fn at_most_max_logins_are_kept_and_the_oldest_goes_first() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let first = sessions.new_login(t0);
        for i in 0..MAX_LOGINS {
            sessions.new_login(t0 + Duration::from_millis(1 + i as u64));
        }
        assert_eq!(lock(&sessions.inner).logins.len(), MAX_LOGINS);
        assert!(sessions.redeem(&first, t0).is_none());
    }
}
