//! What a node tells a forge about the runs it starts from a repository: one commit status
//! per stage and one per run, posted to a real HTTP endpoint on 127.0.0.1 standing in for
//! the forge's API, with the token from the vault and never in the log; a forge that
//! fails or refuses never holds up a run. With two orgs, the stage the other org's node
//! runs is reported by the node that started the run, from the receipt that ended it.

use std::collections::BTreeMap;

use crate::node_repo::{Remote, fetch, node_fails, node_ok};
use crate::node_support::forge::{Endpoint, Request};
use crate::node_support::{Node, text};

const TOKEN: &str = "ghp_0tt0T0kenThatMustNeverBeLogged";

const OTTOFILE: &str = "pipeline {
  name = 'app'
  stage('Build') { steps { sh 'cat version.txt' } }
  stage('Test') { steps { sh 'test \"$(cat version.txt)\" = good' } }
}
triggers { push { branches = ['main'] } }
";

/// The last status each context got (retried ones count once).
fn last_states(requests: &[Request]) -> BTreeMap<String, String> {
    requests
        .iter()
        .map(|r| {
            let body = r.json();
            (
                body["context"].as_str().unwrap().to_owned(),
                body["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn each_stage_and_the_run_report_their_status_to_the_forge_with_the_token_never_logged() {
    // The forge answers the first request with 502, as a busy forge does: it is tried again.
    let forge = Endpoint::start(Box::new(|n, _| if n == 0 { 502 } else { 201 }));
    let node = Node::start_new();
    let remote = Remote::new(OTTOFILE);
    let set = node.otto_with_stdin(&["secrets", "set", "GH_TOKEN"], Some(TOKEN.as_bytes()));
    assert!(set.status.success(), "{}", text(&set.stderr));

    // A token is never sent in the clear to another machine, nor by a generic forge.
    let err = node_fails(
        &node,
        &[
            "repo",
            "add",
            &remote.url(),
            "--name",
            "app",
            "--forge",
            "github",
            "--api-url",
            "http://forge.example",
            "--token-secret",
            "GH_TOKEN",
        ],
    );
    assert!(err.contains("must be https"), "{err}");
    let err = node_fails(
        &node,
        &[
            "repo",
            "add",
            &remote.url(),
            "--name",
            "app",
            "--token-secret",
            "GH_TOKEN",
        ],
    );
    assert!(err.contains("give --forge"), "{err}");

    node_ok(
        &node,
        &[
            "repo",
            "add",
            &remote.url(),
            "--name",
            "app",
            "--forge",
            "github",
            "--api-url",
            &forge.url(),
            "--token-secret",
            "GH_TOKEN",
        ],
    );
    let failing = remote.commit("version.txt", "bad\n", "bad");
    remote.push("main");
    let run = fetch(&node, "app")["runs"][0]["run"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(node.wait_final(&run)["run"]["state"], "failed");
    let requests = node.wait_for("the run's final status", || {
        let requests = forge.requests();
        (last_states(&requests).get("otto").map(String::as_str) == Some("failure"))
            .then_some(requests)
    });
    let states = last_states(&requests);
    assert_eq!(states["otto/Build"], "success", "{requests:#?}");
    assert_eq!(states["otto/Test"], "failure", "{requests:#?}");
    assert_eq!(states.len(), 3, "{states:?}");
    // In order per context: a stage is pending (running) before it ends.
    let build: Vec<_> = requests
        .iter()
        .map(Request::json)
        .filter(|b| b["context"] == "otto/Build")
        .map(|b| b["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(build.last().map(String::as_str), Some("success"));
    assert!(build.iter().any(|s| s == "pending"), "{build:?}");
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.path,
            format!("/repos/{}/statuses/{failing}", repo_path(&remote))
        );
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(request.header("x-github-api-version"), Some("2022-11-28"));
        let body = request.json();
        assert!(
            body["description"].as_str().unwrap().contains(&run),
            "{body}"
        );
        assert!(!text(&request.body).contains(TOKEN));
    }
    // The 502 was tried again: the first body arrived twice.
    assert_eq!(requests[0].body, requests[1].body);

    // A forge that refuses every status (a revoked token) holds up nothing: the next
    // run succeeds, the refusals are logged, and the token never is.
    drop(forge);
    let refusing = Endpoint::start(Box::new(|_, _| 401));
    node_ok(&node, &["repo", "rm", "app"]);
    node_ok(
        &node,
        &[
            "repo",
            "add",
            &remote.url(),
            "--name",
            "app",
            "--forge",
            "github",
            "--api-url",
            &refusing.url(),
            "--token-secret",
            "GH_TOKEN",
        ],
    );
    remote.commit("version.txt", "good\n", "good");
    remote.push("main");
    let run = fetch(&node, "app")["runs"][0]["run"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(node.wait_final(&run)["run"]["state"], "succeeded");
    node.wait_for("the refusals in the log", || {
        node.log().contains("refused with HTTP 401").then_some(())
    });
    assert!(
        !node.log().contains(TOKEN),
        "the token is in the node's log"
    );
}

/// The `owner/name` a repository's statuses go to: the last two segments of its path.
fn repo_path(remote: &Remote) -> String {
    let url = remote.url();
    let mut segments: Vec<&str> = url.trim_end_matches(".git").rsplit('/').take(2).collect();
    segments.reverse();
    segments.join("/")
}

/// The node's `[notify]` targets in its config.toml: the vault secret holding the Slack
/// URL, and the one URL `webhook` may name with the secret holding its key.
fn allow_targets(node: &Node, hook_url: &str) {
    let config = node.home.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replace(
            "# slack_url_secret = \"SLACK_WEBHOOK_URL\"",
            "slack_url_secret = \"SLACK_URL\"",
        )
        .replace(
            "webhooks = []",
            &format!("webhooks = [{{ url = \"{hook_url}\", secret = \"HOOK_KEY\" }}]"),
        );
    assert!(
        text.contains("SLACK_URL") && text.contains("HOOK_KEY"),
        "{text}"
    );
    std::fs::write(&config, text).unwrap();
}

#[test]
fn notify_messages_go_only_where_the_operator_allows_signed_and_never_hold_up_the_run() {
    let slack = Endpoint::start(Box::new(|_, _| 200));
    // The webhook receiver is busy once: the message is tried again.
    let hooks = Endpoint::start(Box::new(|n, _| if n == 0 { 503 } else { 204 }));
    let elsewhere = Endpoint::start(Box::new(|_, _| 200));
    let hook_url = format!("{}/otto", hooks.url());
    let mut node = Node::init();
    allow_targets(&node, &hook_url);
    node.start();
    let slack_url = format!("{}/services/T0/B0/sl4ckP4th", slack.url());
    for (name, value) in [("SLACK_URL", slack_url.as_str()), ("HOOK_KEY", "h00k-k3y")] {
        let set = node.otto_with_stdin(&["secrets", "set", name], Some(value.as_bytes()));
        assert!(set.status.success(), "{}", text(&set.stderr));
    }
    // A hostile Ottofile names a URL of its own: it gets nothing, signed or not.
    let ottofile = format!(
        "pipeline {{
  name = 'notify'
  stage('Deploy') {{
    steps {{ sh 'exit 3' }}
    notify {{
      failure {{ slack 'deploy failed', channel: '#deploys' }}
      complete {{ webhook url: '{hook_url}'  webhook url: '{}/steal' }}
      success {{ slack 'never sent' }}
    }}
  }}
}}
",
        elsewhere.url()
    );
    let project = crate::node_support::project(&[("Ottofile", &ottofile)]);
    let run = node
        .ok(&["run", project.path().to_str().unwrap(), "--detach"])
        .trim()
        .to_owned();
    assert_eq!(node.wait_final(&run)["run"]["state"], "failed");
    let logs = node.wait_for("what came of the messages", || {
        let logs = node.ok(&["logs", &run, "Deploy"]);
        (logs.contains("slack message sent")
            && logs.contains(&format!("webhook {hook_url}: sent"))
            && logs.contains("not a URL this node's operator allows"))
        .then_some(logs)
    });

    let sent = slack.requests();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0].path, "/services/T0/B0/sl4ckP4th");
    let body = sent[0].json();
    assert_eq!(body["channel"], "#deploys");
    let message = body["text"].as_str().unwrap();
    assert!(
        message.starts_with("deploy failed (notify: Deploy failed (run "),
        "{message}"
    );

    let hooked = hooks.requests();
    assert_eq!(hooked.len(), 2, "tried again after the 503: {hooked:#?}");
    assert_eq!(hooked[0].body, hooked[1].body);
    let body = hooked[1].json();
    assert_eq!(body["outcome"], "failure");
    assert_eq!(body["stage"], "Deploy");
    assert_eq!(body["run"], run.as_str());
    // Signed with the operator's key, as Python's hmac computes it.
    let expected = crate::node_repo::github_signature("h00k-k3y", &hooked[1].body);
    assert_eq!(
        hooked[1].header("x-otto-signature-256"),
        Some(expected.as_str())
    );

    assert!(
        elsewhere.requests().is_empty(),
        "{:#?}",
        elsewhere.requests()
    );
    for secret in ["sl4ckP4th", "h00k-k3y"] {
        assert!(!logs.contains(secret), "{logs}");
        assert!(
            !node.log().contains(secret),
            "{secret} is in the node's log"
        );
    }
}

const TWO_ORGS: &str = "pipeline {
  name = 'app'
  stage('Build') { steps { sh 'cat version.txt' } }
  stage('Deploy') { owner = 'ops'  steps { sh 'echo deploying' } }
}
triggers { push { branches = ['main'] } }
";

#[test]
fn a_stage_another_org_runs_is_reported_to_the_forge_by_the_node_that_started_the_run() {
    let forge = Endpoint::start(Box::new(|_, _| 201));
    let remote = Remote::new(TWO_ORGS);
    let mut dev = Node::init_as("acme-dev", "dev-1", &["--answers-to", "dev"]);
    let mut ops = Node::init_as("acme-ops", "ops-1", &["--answers-to", "ops"]);
    dev.start();
    ops.start();
    let token = node_ok(
        &ops,
        &[
            "invite",
            "--role",
            "deploy",
            "--stages",
            "Deploy*",
            "--definitions",
            "approved",
        ],
    );
    node_ok(&dev, &["join", token.trim(), "--alias", "ops"]);
    let set = dev.otto_with_stdin(&["secrets", "set", "GH_TOKEN"], Some(TOKEN.as_bytes()));
    assert!(set.status.success(), "{}", text(&set.stderr));
    node_ok(
        &dev,
        &[
            "repo",
            "add",
            &remote.url(),
            "--name",
            "app",
            "--forge",
            "github",
            "--api-url",
            &forge.url(),
            "--token-secret",
            "GH_TOKEN",
        ],
    );
    let commit = remote.commit("version.txt", "two\n", "two");
    remote.push("main");
    let run = fetch(&dev, "app")["runs"][0]["run"]
        .as_str()
        .unwrap()
        .to_owned();

    // Ops refuses Deploy (its steps are not approved there): dev reports the refusal.
    let refused = dev.wait_final(&run);
    assert_eq!(refused["run"]["state"], "failed", "{refused}");
    let states = dev.wait_for("the refused run's status", || {
        let states = last_states(&forge.requests());
        (states.get("otto").map(String::as_str) == Some("failure")).then_some(states)
    });
    assert_eq!(states["otto/Build"], "success", "{states:?}");
    assert_eq!(states["otto/Deploy"], "failure", "{states:?}");

    // Approved on ops and retried on dev: Deploy runs on ops, and its outcome reaches the
    // forge from dev, once ops's receipt ended it there.
    let note = crate::node_support::stage_of(&refused, "Deploy").unwrap()["note"]
        .as_str()
        .unwrap()
        .to_owned();
    let digest = note
        .split_whitespace()
        .find_map(|w| w.trim_matches(['`', ';']).strip_prefix("sha256:"))
        .map(|hex| format!("sha256:{}", &hex[..64]))
        .unwrap_or_else(|| panic!("a digest in {note}"));
    node_ok(&ops, &["approve", &digest]);
    dev.ok(&["retry", &run]);
    let status = dev.wait_final(&run);
    assert_eq!(
        status["run"]["state"],
        "succeeded",
        "{status}\n{}",
        ops.log()
    );
    let requests = dev.wait_for("the retried run's status", || {
        let requests = forge.requests();
        (last_states(&requests).get("otto").map(String::as_str) == Some("success"))
            .then_some(requests)
    });
    let states = last_states(&requests);
    assert_eq!(states["otto/Deploy"], "success", "{requests:#?}");
    assert_eq!(states["otto/Build"], "success", "{requests:#?}");
    assert_eq!(states.len(), 3, "{states:?}");
    assert!(
        ops.ok(&["logs", &run, "Deploy"]).contains("deploying"),
        "Deploy ran on ops"
    );
    // Every status is about that commit, from dev's token; ops has no token, no
    // repository, and posted nothing (one endpoint, and every request carries dev's token).
    for request in &requests {
        assert_eq!(
            request.path,
            format!("/repos/{}/statuses/{commit}", repo_path(&remote))
        );
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
    let deploy: Vec<String> = requests
        .iter()
        .map(Request::json)
        .filter(|b| b["context"] == "otto/Deploy")
        .map(|b| b["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        deploy.iter().filter(|s| *s == "success").count(),
        1,
        "one success for Deploy: {deploy:?}"
    );
    let repos: serde_json::Value =
        serde_json::from_str(&node_ok(&ops, &["repo", "list", "--json"])).unwrap();
    assert_eq!(repos["repos"], serde_json::json!([]));
}
