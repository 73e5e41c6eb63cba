//! What the node sends to other systems on its own: commit statuses to forges
//! ([`status`], from the engine's events) and the messages of `notify` blocks
//! ([`notify`], sent by the engine after a stage). Both post over [`http`], retry a
//! bounded number of times with backoff, and never hold up a run: a run goes on whatever
//! the other system answers, and a message that cannot be delivered is dropped with one
//! line that says so.

pub mod http;
pub mod notify;
pub mod status;

use std::time::Duration;

use http::{Answer, Http};

/// The `tracing` target of everything here.
pub const TARGET: &str = "otto_node::outbound";

/// How many times a message is sent at most.
pub const MAX_TRIES: u32 = 5;

/// The wait before the second try; each later wait doubles (0.5, 1, 2, 4 s: about 7.5 s
/// between the first try and the last).
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// The wait after try `n` (1-based) failed; `None` after the last.
pub fn backoff(n: u32) -> Option<Duration> {
    (n < MAX_TRIES).then(|| FIRST_BACKOFF.saturating_mul(1 << (n - 1).min(16)))
}

/// Whether an answer with this status code is worth another try: the other side was
/// busy or broken (429, 408, 5xx), not refusing the message.
pub fn retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// Why a message was given up.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The other side refused it.
    #[error("refused with HTTP {status}: {body}")]
    Refused {
        /// The status code.
        status: u16,
        /// The start of the answer, with the credential masked.
        body: String,
    },
    /// Every try failed.
    #[error("{tries} tries failed, the last: {last}")]
    GaveUp {
        /// How many.
        tries: u32,
        /// What the last one met.
        last: String,
    },
}

/// POSTs `body` to `url` until it is taken (2xx), refused (another status that is not
/// [`retryable`]) or [`MAX_TRIES`] tries failed, waiting [`backoff`] between tries.
/// `credential` is masked in whatever is reported.
pub async fn retry(
    http: &Http,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    credential: &str,
) -> Result<Answer, Failure> {
    let mut n = 1;
    loop {
        let last = match http.post_json(url, headers, body.clone()).await {
            Ok(answer) if (200..300).contains(&answer.status) => return Ok(answer),
            Ok(answer) if !retryable(answer.status) => {
                return Err(Failure::Refused {
                    status: answer.status,
                    body: mask(&answer.body, credential),
                });
            }
            Ok(answer) => format!("HTTP {}: {}", answer.status, mask(&answer.body, credential)),
            Err(error) => mask(&error.to_string(), credential),
        };
        let Some(wait) = backoff(n) else {
            return Err(Failure::GaveUp { tries: n, last });
        };
        tracing::debug!(target: TARGET, host = %http::redact_url(url), try_ = n, %last, "will try again");
        tokio::time::sleep(wait).await;
        n += 1;
    }
}

/// `text` cut to 200 characters, on one line, with `credential` replaced by `***`.
pub fn mask(text: &str, credential: &str) -> String {
    let text = if credential.len() >= 4 {
        text.replace(credential, "***")
    } else {
        text.to_owned()
    };
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_ends() {
        let waits: Vec<_> = (1..=MAX_TRIES).map(backoff).collect();
        assert_eq!(
            waits,
            vec![
                Some(Duration::from_millis(500)),
                Some(Duration::from_secs(1)),
                Some(Duration::from_secs(2)),
                Some(Duration::from_secs(4)),
                None
            ]
        );
        assert!(retryable(503) && retryable(429) && !retryable(404) && !retryable(422));
    }

    #[test]
    fn a_credential_never_reaches_the_log() {
        assert_eq!(
            mask(
                "bad credentials for ghp_s3cret\nagain ghp_s3cret",
                "ghp_s3cret"
            ),
            "bad credentials for *** again ***"
        );
        assert_eq!(mask(&"x".repeat(500), "tok!").len(), 200);
    }
}
