//! The messages of `notify { }` blocks: `slack` posts Slack's incoming-webhook JSON to the
//! URL in the vault secret `[notify] slack_url_secret` names; `webhook url: '...'` posts a
//! JSON description of the outcome, signed with HMAC-SHA256 (`X-Otto-Signature-256:
//! sha256=<hex>` over the body, the key from the vault), to that URL, but only when
//! `[notify] webhooks` lists it.
//!
//! Who may point messages where: the node's operator. An Ottofile (which anyone who can
//! push writes) picks a Slack channel and one of the listed URLs; it can name no secret and
//! no other URL, so a hostile repository can neither send the node's signed messages to
//! itself nor learn the Slack URL. A message carries the pipeline, stage, outcome, run id
//! and, for a repository's run, its commit and branch: never a step's output or a secret.
//! The node that runs the stage sends them, with its own targets, after the stage ends;
//! they are sent by a task of their own and never hold up the run.

use serde_json::json;

use super::http::Http;
use crate::home::NotifyConfig;
use crate::vault::Vault;
use otto_pipeline::plan::Message;

/// The header a `webhook` message is signed in.
pub const SIGNATURE_HEADER: &str = "x-otto-signature-256";

/// What a message is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct About {
    /// The pipeline.
    pub pipeline: String,
    /// The stage.
    pub stage: String,
    /// The run.
    pub run: String,
    /// Whether the stage succeeded.
    pub success: bool,
    /// The commit, for a repository's run.
    pub commit: Option<String>,
    /// The branch, when the run has one.
    pub branch: Option<String>,
    /// This node's name.
    pub node: String,
}

impl About {
    fn outcome(&self) -> &'static str {
        if self.success { "succeeded" } else { "failed" }
    }

    fn headline(&self) -> String {
        let mut text = format!(
            "{}: {} {} (run {}",
            self.pipeline,
            self.stage,
            self.outcome(),
            self.run
        );
        if let Some(commit) = &self.commit {
            text.push_str(&format!(", commit {}", &commit[..commit.len().min(12)]));
        }
        if let Some(branch) = &self.branch {
            text.push_str(&format!(" on {branch}"));
        }
        text.push(')');
        text
    }
}

/// The body of a Slack-compatible incoming-webhook message.
pub fn slack_body(about: &About, channel: Option<&str>, text: Option<&str>) -> Vec<u8> {
    let text = match text {
        Some(text) => format!("{text} ({})", about.headline()),
        None => about.headline(),
    };
    let mut body = json!({ "text": text });
    if let Some(channel) = channel {
        body["channel"] = json!(channel);
    }
    body.to_string().into_bytes()
}

/// The body of a `webhook` message.
pub fn webhook_body(about: &About) -> Vec<u8> {
    json!({
        "event": "stage_finished",
        "pipeline": about.pipeline,
        "stage": about.stage,
        "run": about.run,
        "outcome": if about.success { "success" } else { "failure" },
        "commit": about.commit,
        "branch": about.branch,
        "node": about.node,
    })
    .to_string()
    .into_bytes()
}

/// Sends `messages` about `about`, each retried as [`super::retry`] says. A message with
/// no target here is logged and left. Returns one line per message, for the stage's log
/// (never a URL's path or a secret).
pub async fn send(
    http: &Http,
    vault: &Vault,
    config: &NotifyConfig,
    about: &About,
    messages: &[Message],
) -> Vec<String> {
    let mut lines = Vec::new();
    for message in messages {
        let line = match message {
            Message::Slack { channel, text } => {
                let Some(secret) = &config.slack_url_secret else {
                    lines.push(
                        "notify: slack: this node has no [notify] slack_url_secret; not sent"
                            .to_owned(),
                    );
                    continue;
                };
                let Some(url) = read(vault, secret).await else {
                    lines.push(format!(
                        "notify: slack: the secret {secret} is not in this node's vault; not sent"
                    ));
                    continue;
                };
                let body = slack_body(about, channel.as_deref(), text.as_deref());
                match super::retry(http, &url, &[], body, &url).await {
                    Ok(_) => format!(
                        "notify: slack message sent{}",
                        channel
                            .as_ref()
                            .map(|c| format!(" to {c}"))
                            .unwrap_or_default()
                    ),
                    Err(failure) => format!("notify: slack message not sent: {failure}"),
                }
            }
            Message::Webhook { url } => {
                let Some(target) = config.webhooks.iter().find(|w| &w.url == url) else {
                    lines.push(format!("notify: webhook {url}: not a URL this node's operator allows ([notify] webhooks); not sent"));
                    continue;
                };
                let Some(key) = read(vault, &target.secret).await else {
                    lines.push(format!("notify: webhook {url}: the secret {} is not in this node's vault; not sent", target.secret));
                    continue;
                };
                let body = webhook_body(about);
                let signature = format!(
                    "sha256={}",
                    crate::sources::forge::sign(key.as_bytes(), &body)
                );
                let headers = [(SIGNATURE_HEADER, signature.as_str())];
                match super::retry(http, url, &headers, body, &key).await {
                    Ok(_) => format!("notify: webhook {url}: sent"),
                    Err(failure) => format!("notify: webhook {url}: not sent: {failure}"),
                }
            }
        };
        lines.push(line);
    }
    lines
}

async fn read(vault: &Vault, name: &str) -> Option<zeroize::Zeroizing<String>> {
    let (vault, name) = (vault.clone(), name.to_owned());
    tokio::task::spawn_blocking(move || vault.get(&name))
        .await
        .ok()?
        .ok()?
        .and_then(|s| {
            s.expose_str()
                .map(|t| zeroize::Zeroizing::new(t.trim().to_owned()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn about() -> About {
        About {
            pipeline: "app".into(),
            stage: "Deploy".into(),
            run: "01J".into(),
            success: false,
            commit: Some("0123456789abcdef0123".into()),
            branch: Some("main".into()),
            node: "ops-1".into(),
        }
    }

    #[test]
    fn slack_gets_text_and_channel() {
        let body: serde_json::Value =
            serde_json::from_slice(&slack_body(&about(), Some("#deploys"), Some("ship failed")))
                .unwrap();
        assert_eq!(body["channel"], "#deploys");
        assert_eq!(
            body["text"],
            "ship failed (app: Deploy failed (run 01J, commit 0123456789ab on main))"
        );
        let plain: serde_json::Value =
            serde_json::from_slice(&slack_body(&about(), None, None)).unwrap();
        assert!(plain.get("channel").is_none());
    }

    #[test]
    fn a_webhook_body_names_the_outcome() {
        let body: serde_json::Value = serde_json::from_slice(&webhook_body(&about())).unwrap();
        assert_eq!(body["outcome"], "failure");
        assert_eq!(body["stage"], "Deploy");
        assert_eq!(body["event"], "stage_finished");
    }
}
