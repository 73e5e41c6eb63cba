//! Issue #14 item 1 across a handoff, with two real `otto-node` processes of two orgs and a
//! real git repository (file://): a run started by a push on dev hands `Deploy` to ops,
//! which gets exactly that commit, from dev's git bundle or by fetching the repository
//! itself when its policy lists it, and refuses a bundle that does not hold the commit.

use std::path::PathBuf;

use serde_json::Value;

use crate::node_repo::{Remote, fetch, git, node_fails, node_ok};
use crate::node_support::{Node, stage_of};

const OTTOFILE: &str = "pipeline {
  name = 'app'
  stage('Build') { steps { sh 'cat version.txt' } }
  stage('Deploy') {
    owner = 'ops'
    uses ['version.txt']
    steps { sh 'echo \"deploying $(cat version.txt) at $SOURCE_DATE_EPOCH\"; ls' }
  }
}
triggers { push { branches = ['main'] } }
";

/// dev-1 of acme-dev (with the repository added) joined to ops-1 of acme-ops, which lets
/// acme-dev hand it `Deploy*` stages with approved inline steps.
fn two_orgs(remote: &Remote) -> (Node, Node) {
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
    node_ok(&dev, &["repo", "add", &remote.url(), "--name", "app"]);
    (dev, ops)
}

/// Pushes a commit changing `file` and has dev look: the run it started.
fn push(dev: &Node, remote: &Remote, file: &str, content: &str) -> (String, String) {
    let commit = remote.commit(file, content, content.trim());
    remote.push("main");
    let looked = fetch(dev, "app");
    let run = looked["runs"][0]["run"]
        .as_str()
        .unwrap_or_else(|| panic!("no run started: {looked}"))
        .to_owned();
    assert_eq!(looked["runs"][0]["commit"], commit.as_str());
    (run, commit)
}

fn note(status: &Value, stage: &str) -> String {
    stage_of(status, stage)
        .and_then(|s| s["note"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// What a stage's note and last attempt say about why it failed.
fn why(status: &Value, stage: &str) -> String {
    let stage = stage_of(status, stage).cloned().unwrap_or_default();
    let error = stage["attempts"]
        .as_array()
        .and_then(|a| a.last())
        .and_then(|a| a["error"].as_str())
        .unwrap_or_default();
    format!("{} {error}", stage["note"].as_str().unwrap_or_default())
}

/// The directories under `<home>/mirrors/*/` named `name`.
fn mirror_dirs(node: &Node, name: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(node.home.join("mirrors")) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().path().join(name))
        .filter(|p| p.exists())
        .collect()
}

fn commit_time(remote: &Remote, commit: &str) -> String {
    git(&remote.work(), &["show", "-s", "--format=%ct", commit])
}

#[test]
fn the_owner_checks_out_the_same_commit_from_a_bundle_or_its_own_fetch_and_refuses_a_wrong_bundle()
{
    let remote = Remote::new(OTTOFILE);
    let (dev, ops) = two_orgs(&remote);

    // A push: dev runs Build at the commit and offers Deploy to ops, which has not approved
    // its steps yet; approved, `otto retry` offers it again.
    let (run, two) = push(&dev, &remote, "version.txt", "two\n");
    let refused = dev.wait_final(&run);
    let first = note(&refused, "Deploy");
    assert!(first.contains("is not approved here"), "{refused}");
    let digest = first
        .split_whitespace()
        .find_map(|w| w.trim_matches(['`', ';']).strip_prefix("sha256:"))
        .map(|hex| format!("sha256:{}", &hex[..64]))
        .unwrap();
    node_ok(&ops, &["approve", &digest]);
    dev.ok(&["retry", &run]);
    let status = dev.wait_final(&run);
    assert_eq!(
        status["run"]["state"],
        "succeeded",
        "{status}\n{}",
        ops.log()
    );

    // Ops took the commit out of dev's bundle (its policy lists no repository) and ran
    // Deploy on that very commit: the file as it is in it, and the commit's own time.
    let log = ops.ok(&["logs", &run, "Deploy"]);
    assert!(
        log.contains(&format!("deploying two at {}", commit_time(&remote, &two))),
        "{log}"
    );
    assert!(
        !log.contains("Ottofile"),
        "only the used file reaches ops: {log}"
    );
    assert!(
        log.contains(&format!("source: commit {two} of {}", remote.url())),
        "{log}"
    );
    assert_eq!(mirror_dirs(&ops, "received.git").len(), 1);
    assert!(mirror_dirs(&ops, "fetched.git").is_empty());
    let on_ops = ops.status(&run);
    assert_eq!(on_ops["run"]["source"]["commit"], two.as_str(), "{on_ops}");

    // A hostile asker: dev's bundle of the next commit is swapped for the bundle of `two`
    // (its only ref has the same name). Ops fetches it, finds the commit missing, and the
    // stage fails saying so on both nodes; nothing runs.
    let bundles = mirror_dirs(&dev, "bundles");
    assert_eq!(bundles.len(), 1, "{bundles:?}");
    let bundle_of_two = std::fs::read_to_string(bundles[0].join(&two)).unwrap();
    let three = remote.commit("README", "three\n", "three");
    std::fs::write(bundles[0].join(&three), &bundle_of_two).unwrap();
    remote.push("main");
    let looked = fetch(&dev, "app");
    let hostile = looked["runs"][0]["run"].as_str().unwrap().to_owned();
    let status = dev.wait_final(&hostile);
    assert_eq!(status["run"]["state"], "failed", "{status}");
    let on_ops = ops.wait_final(&hostile);
    let said = why(&on_ops, "Deploy");
    assert!(
        said.contains(&format!("does not give commit {three}")),
        "{on_ops}\n{}",
        ops.log()
    );
    assert!(!said.contains("/blobs/"), "no path of ops's home: {said}");
    // The log lines come by gossip, maybe after the receipt.
    dev.wait_for("dev to be told why in Deploy's log", || {
        dev.ok(&["logs", &hostile, "Deploy"])
            .contains(&format!("does not give commit {three}"))
            .then_some(())
    });
    assert!(
        !ops.ok(&["logs", &hostile, "Deploy"]).contains("deploying"),
        "nothing ran"
    );

    // Ops's policy now lists the repository: it fetches the commit itself and ignores the
    // bundle (swapped again, to prove it).
    let err = node_fails(
        &ops,
        &["trust", "policy", "acme-dev", "--repos", "ext::sh -c id"],
    );
    assert!(err.contains("is refused"), "{err}");
    let set = node_ok(
        &ops,
        &["trust", "policy", "acme-dev", "--repos", &remote.url()],
    );
    assert!(set.contains("repositories fetched here"), "{set}");
    let four = remote.commit("README", "four\n", "four");
    std::fs::write(bundles[0].join(&four), &bundle_of_two).unwrap();
    remote.push("main");
    let looked = fetch(&dev, "app");
    let fetched = looked["runs"][0]["run"].as_str().unwrap().to_owned();
    let status = dev.wait_final(&fetched);
    assert_eq!(
        status["run"]["state"],
        "succeeded",
        "{status}\n{}",
        ops.log()
    );
    let log = ops.ok(&["logs", &fetched, "Deploy"]);
    assert!(
        log.contains(&format!("deploying two at {}", commit_time(&remote, &four))),
        "{log}"
    );
    assert_eq!(mirror_dirs(&ops, "fetched.git").len(), 1);
}
