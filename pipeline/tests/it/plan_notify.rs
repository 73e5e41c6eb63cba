//! `notify` messages: `slack` and `webhook` in a `notify` block are messages the node sends,
//! by outcome (`complete` either way), unless the Ottofile brings a step of that name.

use crate::plan_support::{diag, fail_one, plan_one, plan_with, stage};
use otto_pipeline::Facts;
use otto_pipeline::plan::{Message, Messages};

#[test]
fn slack_and_webhook_are_messages_by_outcome() {
    let plan = plan_one(
        "stage('Deploy') {
  steps { sh './deploy.sh' }
  notify {
    failure { slack channel: '#deploys'  echo 'failed' }
    success { webhook url: 'https://hooks.example.com/otto' }
    complete { slack 'deploy finished' }
  }
}
",
    );
    let notify = &stage(&plan, "Deploy").notify;
    assert_eq!(
        notify.messages,
        Messages {
            complete: vec![Message::Slack {
                channel: None,
                text: Some("deploy finished".into())
            }],
            failure: vec![Message::Slack {
                channel: Some("#deploys".into()),
                text: None
            }],
            success: vec![Message::Webhook {
                url: "https://hooks.example.com/otto".into()
            }],
        }
    );
    // The steps stay steps.
    assert_eq!(notify.failure.len(), 1);
    assert_eq!(notify.failure[0].symbol, "echo");
    assert!(notify.success.is_empty() && notify.complete.is_empty());
    assert_eq!(
        notify.messages.for_outcome(false),
        vec![
            Message::Slack {
                channel: Some("#deploys".into()),
                text: None
            },
            Message::Slack {
                channel: None,
                text: Some("deploy finished".into())
            }
        ]
    );
    let json = serde_json::to_value(notify).unwrap();
    assert_eq!(
        json["messages"]["success"][0],
        serde_json::json!({"kind": "webhook", "url": "https://hooks.example.com/otto"})
    );
}

#[test]
fn a_plan_without_messages_keeps_its_json_and_digest() {
    let plan = plan_one("stage('S') { steps { sh 'x' }  notify { failure { echo 'no' } } }\n");
    let json = serde_json::to_value(&stage(&plan, "S").notify).unwrap();
    assert!(
        json.get("failure").is_some() && json.get("messages").is_none(),
        "{json}"
    );
}

#[test]
fn a_library_step_named_slack_wins_over_the_message() {
    let plan = plan_with(
        &[
            (
                "Ottofile",
                "use { './common/slack' }\nstage('Ship') { steps { sh 'x' }  notify { failure { slack 'ship failed' } } }\n",
            ),
            (
                "common/slack/slack.otto",
                "step { vars { text { type string } } steps { echo concat('slack: ', vars.text) } }\n",
            ),
        ],
        &Facts::default(),
    );
    let notify = &stage(&plan, "Ship").notify;
    assert!(notify.messages.is_empty());
    assert_eq!(notify.failure[0].symbol, "echo");
}

#[test]
fn bad_messages_are_errors_that_say_what_is_expected() {
    for (text, message) in [
        ("webhook", "`webhook` needs `url: 'https://…'`"),
        (
            "webhook url: 'ftp://x'",
            "a webhook's url must be an http or https URL",
        ),
        (
            "webhook url: 3",
            "webhook's url must be a string, not a number",
        ),
        (
            "slack channel: '#a', to: 'b'",
            "`slack` has no argument `to`",
        ),
        (
            "slack 'a', 'b'",
            "`slack` takes one positional argument, its text",
        ),
        ("slack { echo 'x' }", "`slack` takes no block"),
    ] {
        let failed = fail_one(&format!(
            "stage('S') {{ steps {{ sh 'x' }}  notify {{ failure {{ {text} }} }} }}\n"
        ));
        diag(&failed, message);
    }
    // Outside `notify`, `slack` is no step.
    let failed = fail_one("stage('S') { steps { slack 'x' } }\n");
    diag(&failed, "unknown step 'slack'");
}
