//! What a node tells a forge about the runs it starts from a repository: one commit status
//! per stage and one per run, posted to a real HTTP endpoint on 127.0.0.1 standing in for
//! the forge's API, with the token from the vault and never in the log; a forge that
//! fails or refuses never holds up a run.

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
