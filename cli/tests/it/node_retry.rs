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

/// Build on dev, Test on qa, Deploy on ops, which fails until `flag` exists; with `smoke`,
/// a second stage of ops after Deploy, Smoke, which fails until `flag` exists instead.
fn three_org_ottofile(flag: &std::path::Path, smoke: bool) -> String {
    let check = format!(
        "sh 'test -e {} && echo passed || {{ echo not yet; exit 3; }}'",
        flag.display()
    );
    let (deploy, smoke) = if smoke {
        (
            "echo 'deployed'".to_owned(),
            format!("stage('Smoke') {{\n  owner = 'ops'\n  steps {{ {check} }}\n}}\n"),
        )
    } else {
        (check, String::new())
    };
    format!(
        "stage('Build') {{ steps {{ echo 'built' }} }}
stage('Test') {{ owner = 'qa'  steps {{ echo 'tested' }} }}
stage('Deploy') {{
  owner = 'ops'
  steps {{ {deploy} }}
}}
{smoke}"
    )
}

/// dev-1, qa-1 and ops-1 of three orgs, started: dev hands Test to qa, qa hands Deploy to
/// ops; ops pins acme-dev (Build's receipt and dev's retries) and knows qa as `qa`; dev
/// knows ops too, and so takes ops's receipts itself.
fn three_orgs() -> (Node, Node, Node) {
    use crate::node_handoff::{join, know_as};
    let mut dev = Node::init_as("acme-dev", "dev-1", &["--answers-to", "dev"]);
    let mut qa = Node::init_as("acme-qa", "qa-1", &["--answers-to", "qa"]);
    let mut ops = Node::init_as("acme-ops", "ops-1", &["--answers-to", "ops"]);
    for node in [&mut dev, &mut qa, &mut ops] {
        node.start();
    }
    join(&dev, &qa, "Test*", "qa");
    join(&qa, &ops, "*", "ops");
    join(&dev, &ops, "*", "ops");
    know_as(&ops, "qa", "acme-qa");
    (dev, qa, ops)
}

/// Waits until `node` holds `stage` of `run` in `state` with at least `attempts` attempts.
fn wait_attempts(node: &Node, run: &str, stage: &str, state: &str, attempts: usize) -> Value {
    node.wait_for(
        &format!("{stage} {state} after {attempts} attempts"),
        || {
            let status = node.status(run);
            let s = stage_of(&status, stage)?;
            (s["state"] == state && s["attempts"].as_array().map_or(0, Vec::len) >= attempts)
                .then_some(status)
        },
    )
}

#[test]
fn a_stage_a_third_orgs_node_moves_on_is_retried_from_the_origin_through_that_node() {
    use crate::node_handoff::{approve_after_refusal, start_run};
    let (dev, qa, ops) = three_orgs();
    let gate = tempfile::tempdir().unwrap();
    let flag = gate.path().join("go");
    let dir = project(&[("Ottofile", &three_org_ottofile(&flag, false))]);
    approve_after_refusal(&dev, &qa, &dir, "Test");
    approve_after_refusal(&dev, &ops, &dir, "Deploy");

    // Qa moves Deploy on to ops, where it fails: the run fails on dev.
    let run = start_run(&dev, &dir);
    let status = dev.wait_final(&run);
    assert_eq!(status["run"]["state"], "failed", "{status}");
    assert_eq!(stage(&status, "Test")["state"], "succeeded", "{status}");
    assert_eq!(stage(&status, "Deploy")["state"], "failed", "{status}");
    let on_ops = wait_attempts(&ops, &run, "Deploy", "failed", 1);
    assert_eq!(attempts(&on_ops, "Deploy"), [1], "{on_ops}");

    // Qa, which moves it on, cannot retry it on its own: the run is dev's.
    let refused = qa.otto(&["retry", &run, "Deploy"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("only the node that started a run retries"),
        "{}",
        text(&refused.stderr)
    );

    // Fixed on ops's side; one `otto retry` on dev: dev's signed retry goes to qa, qa
    // offers Deploy again as attempt 2 carrying it, ops runs it, and the run succeeds.
    std::fs::write(&flag, "").unwrap();
    let said = dev.ok(&["retry", &run, "Deploy"]);
    assert!(
        said.starts_with(&format!("retrying Deploy of run {run}")),
        "{said}"
    );
    let on_ops = wait_attempts(&ops, &run, "Deploy", "succeeded", 2);
    assert_eq!(attempts(&on_ops, "Deploy"), [1, 2], "{on_ops}");
    assert!(ops.ok(&["logs", &run, "Deploy"]).contains("passed"));
    let status = dev.wait_final(&run);
    assert_eq!(
        status["run"]["state"],
        "succeeded",
        "{status}\n{}\n{}\n{}",
        dev.log(),
        qa.log(),
        ops.log()
    );
    assert_eq!(attempts(&status, "Build"), [1]);
    assert_eq!(attempts(&status, "Test"), [1]);
    assert_eq!(attempts(&status, "Deploy"), [1, 2], "{status}");
    let on_qa = wait_attempts(&qa, &run, "Deploy", "succeeded", 2);
    assert_eq!(attempts(&on_qa, "Deploy"), [1, 2], "{on_qa}");
    let verified = dev.ok(&["verify", &run]);
    assert!(verified.contains("verified"), "{verified}");
}

#[test]
fn the_second_of_two_stages_of_one_org_is_retried_by_that_org_for_the_origin() {
    use crate::node_handoff::{approve_after_refusal, start_run};
    let (dev, qa, ops) = three_orgs();
    let gate = tempfile::tempdir().unwrap();
    let flag = gate.path().join("go");
    let dir = project(&[("Ottofile", &three_org_ottofile(&flag, true))]);
    approve_after_refusal(&dev, &qa, &dir, "Test");
    approve_after_refusal(&dev, &ops, &dir, "Deploy");
    // Ops moves Smoke on itself and refuses its unapproved steps: approved there.
    let refused = start_run(&dev, &dir);
    dev.wait_final(&refused);
    let on_ops = wait_attempts(&ops, &refused, "Smoke", "failed", 1);
    let why = stage(&on_ops, "Smoke")["attempts"][0]["error"]
        .as_str()
        .unwrap_or_default();
    let digest = why
        .split_whitespace()
        .find_map(|w| {
            w.trim_matches(|c| c == '`' || c == ';' || c == ')' || c == '(')
                .strip_prefix("sha256:")
        })
        .map(|hex| format!("sha256:{}", &hex[..64]))
        .unwrap_or_else(|| panic!("no digest in {on_ops}"));
    let approved = ops.otto_node(&["approve", &digest]);
    assert!(approved.status.success(), "{}", text(&approved.stderr));

    // Ops ran Deploy, so it moves Smoke on itself, runs it, and it fails.
    let run = start_run(&dev, &dir);
    let status = dev.wait_final(&run);
    assert_eq!(status["run"]["state"], "failed", "{status}");
    assert_eq!(stage(&status, "Deploy")["state"], "succeeded", "{status}");
    assert_eq!(stage(&status, "Smoke")["state"], "failed", "{status}");
    wait_attempts(&ops, &run, "Smoke", "failed", 1);

    // Dev's retry goes to ops, which moves Smoke on: it runs it again as attempt 2.
    std::fs::write(&flag, "").unwrap();
    dev.ok(&["retry", &run, "Smoke"]);
    let on_ops = wait_attempts(&ops, &run, "Smoke", "succeeded", 2);
    assert_eq!(attempts(&on_ops, "Smoke"), [1, 2], "{on_ops}");
    assert_eq!(attempts(&on_ops, "Deploy"), [1], "{on_ops}");
    let status = dev.wait_final(&run);
    assert_eq!(
        status["run"]["state"],
        "succeeded",
        "{status}\n{}\n{}",
        dev.log(),
        ops.log()
    );
    assert_eq!(attempts(&status, "Smoke"), [1, 2], "{status}");
    assert_eq!(attempts(&status, "Deploy"), [1], "{status}");
    let verified = dev.ok(&["verify", &run]);
    assert!(verified.contains("verified"), "{verified}");
}
