//! Small helpers of the engine: the clock, randomness, blocking calls, names on disk.

use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::TryRng as _;
use sha2::{Digest as _, Sha256};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `n` bytes from the operating system's random source, as lowercase hex.
pub(crate) fn random_hex(n: usize) -> std::io::Result<String> {
    let mut bytes = vec![0u8; n];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(hex::encode(bytes))
}

/// Runs a blocking call (the store, the blob store) on tokio's blocking threads.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        // Blocking tasks are cancelled only when the runtime shuts down, and then nothing
        // waits for this answer any more.
        Err(_) => std::future::pending().await,
    }
}

/// Locks a mutex; a poisoned one is still used (the data it guards stays consistent: every
/// critical section is a single insert, remove or read).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A directory name for a stage id: the id's safe characters and a short hash of the whole
/// id, so that two ids never share a directory.
pub(crate) fn dir_name(stage: &str) -> String {
    let safe: String = stage
        .chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let hash = Sha256::digest(stage.as_bytes());
    format!("{safe}-{}", hex::encode(&hash[..4]))
}

/// A duration in seconds as people write it: `90s`, `2m`, `1h30m`.
pub(crate) fn human_secs(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// Logs at debug level how long a phase of a stage attempt took, for measuring where an
/// attempt's time goes (`RUST_LOG=otto_node::timing=debug`).
pub(crate) fn took(stage: &str, phase: &str, since: std::time::Instant) {
    let ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::debug!(target: "otto_node::timing", stage, ms, "{phase}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_directories_are_safe_and_distinct() {
        let a = dir_name("Deploy production");
        let b = dir_name("Deploy_production");
        assert!(a.starts_with("Deploy_production-"));
        assert_ne!(a, b);
        assert!(!dir_name("../x").contains('/'));
        assert!(!dir_name("..").starts_with(".."));
    }

    #[test]
    fn durations_read_like_the_ottofile() {
        assert_eq!(human_secs(0), "0s");
        assert_eq!(human_secs(90), "1m30s");
        assert_eq!(human_secs(3600), "1h");
    }

    #[test]
    fn random_hex_has_the_asked_length() {
        let token = random_hex(32).expect("random bytes");
        assert_eq!(token.len(), 64);
        assert_ne!(token, random_hex(32).expect("random bytes"));
    }
}
