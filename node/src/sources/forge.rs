//! Forge webhooks: checking a delivery's signature and reading what it says happened.
//!
//! Pure: headers and body in, a [`Delivery`] or a [`Refused`] out. A webhook is
//! unauthenticated network input until its signature checks, so nothing here is read
//! before that, and what is read afterwards is only a hint: the node fetches from the URL
//! it was given and takes commit ids from its own mirror, never from the payload.

use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

/// Which forge sends a repository's webhooks, and so how they are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forge {
    /// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
    Github,
    /// GitLab: `X-Gitlab-Token: <the secret>`.
    Gitlab,
    /// Gitea and Forgejo: `X-Gitea-Signature: <hex HMAC-SHA256 of the body>`.
    Gitea,
    /// Anything else: signed as GitHub does; every delivery means "fetch and look".
    Generic,
}

impl Forge {
    /// Every forge, in the order of its names.
    pub const ALL: [Self; 4] = [Self::Generic, Self::Gitea, Self::Github, Self::Gitlab];

    /// The name used in URLs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::Gitlab => "gitlab",
            Self::Gitea => "gitea",
            Self::Generic => "generic",
        }
    }

    /// The forge named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The header naming a delivery, which a forge keeps when it redelivers.
    fn delivery_header(self) -> &'static str {
        match self {
            Self::Github | Self::Generic => "x-github-delivery",
            Self::Gitlab => "x-gitlab-event-uuid",
            Self::Gitea => "x-gitea-delivery",
        }
    }
}

/// Why a delivery is refused before anything in it is read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The signature header is missing.
    #[error("the {0} header is missing")]
    Unsigned(&'static str),
    /// The signature does not match the body and the secret.
    #[error("the {0} header does not match the body")]
    BadSignature(&'static str),
}

/// What a signed delivery asks of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The forge's id of this delivery, when it sends one.
    pub id: Option<String>,
    /// What happened.
    pub event: Hint,
}

/// What a delivery says happened, as far as the node acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// The forge checks the hook is there: nothing to do.
    Ping,
    /// Something was pushed (branches or tags): fetch and look at what changed.
    Fetch,
    /// A pull (merge) request was opened or updated: fetch its head, run for its target.
    PullRequest {
        /// The request's number.
        number: u64,
        /// Its target branch.
        base: String,
    },
    /// An event the node does not act on (its name, for the log).
    Ignored(String),
}

/// Checks the signature of a delivery of `forge` made with `secret`, then reads it.
/// `header` gives a request header's value by its lowercase name.
pub fn verify<'a>(
    forge: Forge,
    secret: &[u8],
    header: impl Fn(&str) -> Option<&'a str>,
    body: &[u8],
) -> Result<Delivery, Refused> {
    match forge {
        Forge::Github | Forge::Generic => {
            check_hmac(
                "X-Hub-Signature-256",
                header("x-hub-signature-256"),
                "sha256=",
                secret,
                body,
            )?;
        }
        Forge::Gitea => {
            check_hmac(
                "X-Gitea-Signature",
                header("x-gitea-signature"),
                "",
                secret,
                body,
            )?;
        }
        Forge::Gitlab => {
            let given = header("x-gitlab-token").ok_or(Refused::Unsigned("X-Gitlab-Token"))?;
            if !bool::from(given.as_bytes().ct_eq(secret)) {
                return Err(Refused::BadSignature("X-Gitlab-Token"));
            }
        }
    }
    let id = header(forge.delivery_header())
        .or_else(|| header("idempotency-key"))
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.is_ascii())
        .map(str::to_owned);
    let event = match forge {
        Forge::Generic => Hint::Fetch,
        Forge::Github => github_like(header("x-github-event"), body),
        Forge::Gitea => github_like(
            header("x-gitea-event").or_else(|| header("x-github-event")),
            body,
        ),
        Forge::Gitlab => gitlab(header("x-gitlab-event"), body),
    };
    Ok(Delivery { id, event })
}

fn check_hmac(
    name: &'static str,
    given: Option<&str>,
    prefix: &str,
    secret: &[u8],
    body: &[u8],
) -> Result<(), Refused> {
    let given = given.ok_or(Refused::Unsigned(name))?;
    let hex_text = given
        .strip_prefix(prefix)
        .ok_or(Refused::BadSignature(name))?;
    let given = hex::decode(hex_text.trim()).map_err(|_| Refused::BadSignature(name))?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret).map_err(|_| Refused::BadSignature(name))?;
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&given)
        .map_err(|_| Refused::BadSignature(name))
}

/// The HMAC-SHA256 of `body` with `secret`, as lowercase hex: what GitHub and Gitea send.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[derive(Deserialize)]
struct PullRequestPayload {
    action: Option<String>,
    number: Option<u64>,
    pull_request: Option<PullRequestBody>,
}

#[derive(Deserialize)]
struct PullRequestBody {
    number: Option<u64>,
    base: Option<BaseRef>,
    head: Option<BaseRef>,
}

#[derive(Deserialize)]
struct BaseRef {
    #[serde(rename = "ref")]
    name: String,
    repo: Option<RepoRef>,
}

#[derive(Deserialize, PartialEq, Eq)]
struct RepoRef {
    full_name: Option<String>,
}

/// Why a pull request from a fork starts nothing: its author may not push to the
/// repository, and its steps would run with this node's secrets.
const FORK: &str = "pull_request from a fork (not run: its steps would get this node's secrets)";

/// GitHub's and Gitea's events: `push` (and `create` of a tag or branch) fetch,
/// `pull_request` opened, reopened or synchronized names its request.
fn github_like(event: Option<&str>, body: &[u8]) -> Hint {
    match event.unwrap_or("") {
        "ping" => Hint::Ping,
        "push" | "create" => Hint::Fetch,
        "pull_request" => {
            let Ok(payload) = serde_json::from_slice::<PullRequestPayload>(body) else {
                return Hint::Ignored("pull_request (unreadable)".into());
            };
            let action = payload.action.unwrap_or_default();
            if !matches!(
                action.as_str(),
                "opened" | "reopened" | "synchronize" | "synchronized"
            ) {
                return Hint::Ignored(format!("pull_request {action}"));
            }
            let Some(pr) = payload.pull_request else {
                return Hint::Ignored("pull_request without a pull_request".into());
            };
            let same_repository = match (&pr.head, &pr.base) {
                (Some(head), Some(base)) => {
                    head.repo
                        .as_ref()
                        .and_then(|r| r.full_name.as_ref())
                        .is_some()
                        && head.repo == base.repo
                }
                _ => false,
            };
            if !same_repository {
                return Hint::Ignored(FORK.into());
            }
            match (pr.number.or(payload.number), pr.base) {
                (Some(number), Some(base)) => Hint::PullRequest {
                    number,
                    base: base.name,
                },
                _ => Hint::Ignored("pull_request without a number or base".into()),
            }
        }
        other => Hint::Ignored(other.chars().take(64).collect()),
    }
}

#[derive(Deserialize)]
struct MergeRequestPayload {
    object_attributes: Option<MergeRequestAttributes>,
}

#[derive(Deserialize)]
struct MergeRequestAttributes {
    iid: Option<u64>,
    target_branch: Option<String>,
    action: Option<String>,
    source_project_id: Option<u64>,
    target_project_id: Option<u64>,
}

/// GitLab's events: `Push Hook` and `Tag Push Hook` fetch, `Merge Request Hook` opened,
/// reopened or updated names its request.
fn gitlab(event: Option<&str>, body: &[u8]) -> Hint {
    match event.unwrap_or("") {
        "Push Hook" | "Tag Push Hook" => Hint::Fetch,
        "Merge Request Hook" => {
            let attributes = serde_json::from_slice::<MergeRequestPayload>(body)
                .ok()
                .and_then(|p| p.object_attributes);
            match attributes {
                Some(MergeRequestAttributes {
                    source_project_id: Some(source),
                    target_project_id: Some(target),
                    ..
                }) if source != target => Hint::Ignored(FORK.into()),
                Some(MergeRequestAttributes {
                    iid: Some(number),
                    target_branch: Some(base),
                    action,
                    source_project_id: Some(_),
                    ..
                }) if matches!(action.as_deref(), Some("open" | "reopen" | "update")) => {
                    Hint::PullRequest { number, base }
                }
                _ => Hint::Ignored("Merge Request Hook (not opened or updated)".into()),
            }
        }
        other => Hint::Ignored(other.chars().take(64).collect()),
    }
}

/// The ref a forge keeps a pull request's head at.
pub fn pull_request_ref(forge: Forge, number: u64) -> String {
    match forge {
        Forge::Gitlab => format!("refs/merge-requests/{number}/head"),
        _ => format!("refs/pull/{number}/head"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    #[test]
    fn a_github_delivery_needs_the_right_signature() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = format!("sha256={}", sign(b"s3cret", body));
        let ok = verify(
            Forge::Github,
            b"s3cret",
            headers(&[
                ("x-hub-signature-256", &good),
                ("x-github-event", "push"),
                ("x-github-delivery", "d-1"),
            ]),
            body,
        )
        .unwrap();
        assert_eq!(
            ok,
            Delivery {
                id: Some("d-1".into()),
                event: Hint::Fetch
            }
        );
        let wrong_key = format!("sha256={}", sign(b"other", body));
        for (value, expected) in [
            (None, Refused::Unsigned("X-Hub-Signature-256")),
            (
                Some(wrong_key.as_str()),
                Refused::BadSignature("X-Hub-Signature-256"),
            ),
            (
                Some("sha256=zz"),
                Refused::BadSignature("X-Hub-Signature-256"),
            ),
            (
                Some(&good[7..]),
                Refused::BadSignature("X-Hub-Signature-256"),
            ),
            (
                Some("sha1=00"),
                Refused::BadSignature("X-Hub-Signature-256"),
            ),
        ] {
            let pairs: Vec<(&str, &str)> = value
                .map(|v| ("x-hub-signature-256", v))
                .into_iter()
                .collect();
            assert_eq!(
                verify(Forge::Github, b"s3cret", headers(&pairs), body),
                Err(expected)
            );
        }
        // The same signature over another body.
        let pairs = [("x-hub-signature-256", good.as_str())];
        assert!(verify(Forge::Github, b"s3cret", headers(&pairs), b"{}").is_err());
    }

    #[test]
    fn gitlab_and_gitea_are_checked_their_way() {
        let body = b"{}";
        let pairs = [
            ("x-gitlab-token", "tok"),
            ("x-gitlab-event", "Tag Push Hook"),
        ];
        assert_eq!(
            verify(Forge::Gitlab, b"tok", headers(&pairs), body)
                .unwrap()
                .event,
            Hint::Fetch
        );
        assert_eq!(
            verify(Forge::Gitlab, b"tok2", headers(&pairs), body),
            Err(Refused::BadSignature("X-Gitlab-Token"))
        );
        let sig = sign(b"k", body);
        let pairs = [
            ("x-gitea-signature", sig.as_str()),
            ("x-gitea-event", "push"),
        ];
        assert_eq!(
            verify(Forge::Gitea, b"k", headers(&pairs), body)
                .unwrap()
                .event,
            Hint::Fetch
        );
        assert!(verify(Forge::Gitea, b"j", headers(&pairs), body).is_err());
    }

    #[test]
    fn pull_requests_name_their_number_and_target() {
        let body = br#"{"action":"synchronize","number":7,"pull_request":{"number":7,
            "base":{"ref":"main","repo":{"full_name":"acme/app"}},
            "head":{"ref":"fix","repo":{"full_name":"acme/app"}}}}"#;
        assert_eq!(
            github_like(Some("pull_request"), body),
            Hint::PullRequest {
                number: 7,
                base: "main".into()
            }
        );
        // From a fork, or from a fork since deleted: not run.
        for head in [
            r#"{"ref":"fix","repo":{"full_name":"mallory/app"}}"#,
            r#"{"ref":"fix","repo":null}"#,
        ] {
            let body = format!(
                r#"{{"action":"opened","number":8,"pull_request":{{"number":8,"base":{{"ref":"main","repo":{{"full_name":"acme/app"}}}},"head":{head}}}}}"#
            );
            assert_eq!(
                github_like(Some("pull_request"), body.as_bytes()),
                Hint::Ignored(FORK.into())
            );
        }
        let fork = br#"{"object_attributes":{"iid":3,"target_branch":"dev","action":"open","source_project_id":9,"target_project_id":1}}"#;
        assert_eq!(
            gitlab(Some("Merge Request Hook"), fork),
            Hint::Ignored(FORK.into())
        );
        let closed =
            br#"{"action":"closed","number":7,"pull_request":{"number":7,"base":{"ref":"main"}}}"#;
        assert!(matches!(
            github_like(Some("pull_request"), closed),
            Hint::Ignored(_)
        ));
        assert!(matches!(
            github_like(Some("pull_request"), b"not json"),
            Hint::Ignored(_)
        ));
        let mr = br#"{"object_attributes":{"iid":3,"target_branch":"dev","action":"open","source_project_id":1,"target_project_id":1}}"#;
        assert_eq!(
            gitlab(Some("Merge Request Hook"), mr),
            Hint::PullRequest {
                number: 3,
                base: "dev".into()
            }
        );
        assert_eq!(
            pull_request_ref(Forge::Gitlab, 3),
            "refs/merge-requests/3/head"
        );
        assert_eq!(pull_request_ref(Forge::Github, 7), "refs/pull/7/head");
    }
}
