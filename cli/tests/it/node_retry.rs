//! `otto retry` across two organisations, two real `otto-node` processes on 127.0.0.1: ops
//! refuses Deploy, approves it, and dev retries the failed stage with one command, as
//! attempt 2 of the same run; Build is not run again, and nothing that succeeded can be
//! retried into a second receipt. A stage that ran on ops and failed there is offered to
//! ops again, as attempt 3, by one `otto retry` on dev.

use serde_json::Value;

use crate::node_support::{Node, project, stage_of, text};

const OTTOFILE: &str = "
stage('Build') {
  steps {
    sh 'mkdir -p out && echo release-7 > out/version.txt'
    archive path: 'out/', name: 'app'
  }
}
stage('Deploy') {
  owner = 'ops'
  steps {
    unarchive name: 'app'
    sh 'echo deploying $(cat out/version.txt)'
  }
}
";

/// dev-1 of acme-dev and ops-1 of acme-ops, started, dev joined to ops for `Deploy*`
/// stages with approved definitions.
fn two_orgs() -> (Node, Node) {
    let mut dev = Node::init_as("acme-dev", "dev-1", &["--answers-to", "dev"]);
    let mut ops = Node::init_as("acme-ops", "ops-1", &["--answers-to", "ops"]);
    dev.start();
    ops.start();
    let invite = ops.otto_node(&[
        "invite",
        "--role",
        "deploy",
        "--stages",
        "Deploy*",
        "--definitions",
        "approved",
    ]);
    assert!(invite.status.success(), "invite: {}", text(&invite.stderr));
    let token = text(&invite.stdout).trim().to_owned();
    let joined = dev.otto_node(&["join", &token, "--alias", "ops"]);
    assert!(joined.status.success(), "join: {}", text(&joined.stderr));
    (dev, ops)
}

fn stage<'a>(status: &'a Value, id: &str) -> &'a Value {
    stage_of(status, id).unwrap_or_else(|| panic!("no stage {id} in {status}"))
}

fn attempts(status: &Value, id: &str) -> Vec<u64> {
    stage(status, id)["attempts"]
        .as_array()
        .map(|a| a.iter().filter_map(|a| a["n"].as_u64()).collect())
        .unwrap_or_default()
}

#[test]
fn a_refused_stage_is_retried_after_approval_as_the_next_attempt_of_the_same_run() {
    let (dev, ops) = two_orgs();
    let dir = project(&[("Ottofile", OTTOFILE)]);
    let run = dev
        .ok(&["run", dir.path().to_str().unwrap(), "--detach"])
        .trim()
        .to_owned();
    let status = dev.wait_final(&run);
    assert_eq!(status["run"]["state"], "failed", "{status}");
    assert_eq!(stage(&status, "Build")["state"], "succeeded");
    let why = stage(&status, "Deploy")["note"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(why.contains("ops-1 rejected Deploy"), "{why}");

    // Nothing that succeeded is retried, and only the node that started the run retries.
    let again = dev.otto(&["retry", &run, "Build"]);
    assert_eq!(again.status.code(), Some(1));
    let err = text(&again.stderr);
    assert!(
        err.contains(
            "stage \"Build\" is succeeded; only a failed, refused or cancelled stage is retried"
        ),
        "{err}"
    );
    let unknown = dev.otto(&["retry", &run, "Nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("has no stage \"Nope\""));

    // Ops approves the definition its refusal named; dev retries with one command.
    let digest = why
        .split_whitespace()
        .find_map(|w| {
            w.trim_matches(|c| c == '`' || c == ';')
                .strip_prefix("sha256:")
        })
        .map(|hex| format!("sha256:{}", &hex[..64]))
        .expect("a digest in the note");
    let approved = ops.otto_node(&["approve", &digest]);
    assert!(approved.status.success(), "{}", text(&approved.stderr));
    let said = dev.ok(&["retry", &run, "--as", "alice"]);
    assert!(
        said.starts_with(&format!("retrying Deploy of run {run} as alice")),
        "{said}"
    );
    // (Waited for on ops, so that a timeout shows ops's log.)
    let status = ops.wait_for("the retried run to end on dev", || {
        let status = dev.status(&run);
        let state = status["run"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        ["succeeded", "failed", "cancelled"]
            .contains(&state.as_str())
            .then_some(status)
    });
    assert_eq!(
        status["run"]["state"],
        "succeeded",
        "{status}\n{}\n{}",
        dev.log(),
        ops.log()
    );
    // Build ran once; its artifact and receipt served the retry. Deploy's second attempt
    // ran on ops, under that number on both nodes.
    assert_eq!(attempts(&status, "Build"), [1]);
    assert_eq!(attempts(&status, "Deploy"), [1, 2], "{status}");
    let on_ops = ops.wait_for("Deploy to end on ops", || {
        let s = ops.status(&run);
        (stage(&s, "Deploy")["state"] == "succeeded").then_some(s)
    });
    assert_eq!(attempts(&on_ops, "Deploy"), [2], "{on_ops}");
    let log = ops.ok(&["logs", &run, "Deploy"]);
    assert!(log.contains("deploying release-7"), "{log}");
    let verified = dev.ok(&["verify", &run]);
    assert!(verified.contains("verified"), "{verified}");

    // A run that succeeded is never retried: no second receipt of anything in it.
    let done = dev.otto(&["retry", &run]);
    assert_eq!(done.status.code(), Some(1));
    assert!(
        text(&done.stderr).contains("succeeded"),
        "{}",
        text(&done.stderr)
    );
    // Ops did not start the run: it retries nothing of it.
    let foreign = ops.otto(&["retry", &run, "Deploy"]);
    assert_eq!(foreign.status.code(), Some(1));
    assert!(
        text(&foreign.stderr).contains("only the node that started a run retries"),
        "{}",
        text(&foreign.stderr)
    );
}

const NEEDS_SECRET: &str = r#"
environments { production { secrets { DEPLOY_TOKEN } } }
stage('Build') { steps { echo 'built' } }
stage('Deploy') {
  environment -> production
  steps { sh 'test -s "$OTTO_SECRETS_DIR/DEPLOY_TOKEN" && echo deployed' }
}
stage('Announce') { steps { echo 'announced' } }
"#;

#[test]
fn a_failed_stage_and_what_depends_on_it_are_retried_on_one_node() {
    let node = Node::start_new();
    let dir = project(&[("Ottofile", NEEDS_SECRET)]);
    let run = node
        .ok(&["run", dir.path().to_str().unwrap(), "--detach"])
        .trim()
        .to_owned();
    let status = node.wait_final(&run);
    assert_eq!(status["run"]["state"], "failed", "{status}");
    assert_eq!(stage(&status, "Deploy")["state"], "failed");
    assert_eq!(stage(&status, "Announce")["state"], "cancelled");

    let set = node.otto_with_stdin(&["secrets", "set", "DEPLOY_TOKEN"], Some(b"s3cret"));
    assert!(set.status.success(), "{}", text(&set.stderr));
    let said = node.ok(&["retry", &run, "Deploy", "--as", "bob"]);
    assert!(
        said.starts_with(&format!("retrying Deploy, Announce of run {run} as bob")),
        "{said}"
    );
    let status = node.wait_final(&run);
    assert_eq!(status["run"]["state"], "succeeded", "{status}");
    assert_eq!(attempts(&status, "Build"), [1]);
    assert_eq!(attempts(&status, "Deploy"), [1, 2]);
    assert_eq!(attempts(&status, "Announce"), [1]);
    let log = node.ok(&["logs", &run, "Deploy"]);
    assert!(
        log.contains("attempt 2: a retry by bob after attempt 1"),
        "{log}"
    );
    assert!(log.contains("deployed"), "{log}");
}

#[test]
fn a_stage_that_failed_on_the_other_orgs_node_is_offered_again_as_the_next_attempt() {
    let (dev, ops) = two_orgs();
    let gate = tempfile::tempdir().unwrap();
    let flag = gate.path().join("go");
    let ottofile = format!(
        "stage('Build') {{ steps {{ echo 'built' }} }}
stage('Deploy') {{
  owner = 'ops'
  steps {{ sh 'test -e {} && echo deployed || {{ echo not yet; exit 3; }}' }}
}}
",
        flag.display()
    );
    let dir = project(&[("Ottofile", &ottofile)]);
    let run = dev
        .ok(&["run", dir.path().to_str().unwrap(), "--detach"])
        .trim()
        .to_owned();
    let status = dev.wait_final(&run);
    let why = stage(&status, "Deploy")["note"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let digest = why
        .split_whitespace()
        .find_map(|w| {
            w.trim_matches(|c| c == '`' || c == ';')
                .strip_prefix("sha256:")
        })
        .map(|hex| format!("sha256:{}", &hex[..64]))
        .unwrap_or_else(|| panic!("a digest in the note: {status}"));
    let approved = ops.otto_node(&["approve", &digest]);
    assert!(approved.status.success(), "{}", text(&approved.stderr));

    // Attempt 2 runs on ops and fails there: the run fails on dev with ops's receipt.
    dev.ok(&["retry", &run, "Deploy"]);
    let ended = |what: &str| {
        ops.wait_for(what, || {
            let status = dev.status(&run);
            let state = status["run"]["state"].as_str().unwrap_or_default();
            (["succeeded", "failed"].contains(&state) && attempts(&status, "Deploy").len() >= 2)
                .then_some(status)
        })
    };
    let status = ended("attempt 2 to end on dev");
    assert_eq!(status["run"]["state"], "failed", "{status}");
    assert_eq!(attempts(&status, "Deploy"), [1, 2], "{status}");
    let on_ops = ops.wait_for("Deploy to fail on ops", || {
        let s = ops.status(&run);
        (stage(&s, "Deploy")["state"] == "failed").then_some(s)
    });
    assert_eq!(attempts(&on_ops, "Deploy"), [2], "{on_ops}");
    assert!(ops.ok(&["logs", &run, "Deploy"]).contains("not yet"));

    // Fixed on ops's side; dev retries the stage ops ran and failed: ops gets a new
    // offer for attempt 3, runs it, and the run succeeds on both nodes. Build stays at 1.
    std::fs::write(&flag, "").unwrap();
    let said = dev.ok(&["retry", &run, "Deploy"]);
    assert!(
        said.starts_with(&format!("retrying Deploy of run {run}")),
        "{said}"
    );
    let status = ops.wait_for("attempt 3 to end on dev", || {
        let status = dev.status(&run);
        let state = status["run"]["state"].as_str().unwrap_or_default();
        (["succeeded", "failed"].contains(&state) && attempts(&status, "Deploy").len() >= 3)
            .then_some(status)
    });
    assert_eq!(
        status["run"]["state"],
        "succeeded",
        "{status}\n{}\n{}",
        dev.log(),
        ops.log()
    );
    assert_eq!(attempts(&status, "Build"), [1]);
    assert_eq!(attempts(&status, "Deploy"), [1, 2, 3], "{status}");
    let on_ops = ops.wait_for("Deploy to succeed on ops", || {
        let s = ops.status(&run);
        (stage(&s, "Deploy")["state"] == "succeeded").then_some(s)
    });
    assert_eq!(attempts(&on_ops, "Deploy"), [2, 3], "{on_ops}");
    assert!(ops.ok(&["logs", &run, "Deploy"]).contains("deployed"));
    let verified = dev.ok(&["verify", &run]);
    assert!(verified.contains("verified"), "{verified}");
}
