//! Two organisations, two real `otto-node` processes on 127.0.0.1: dev builds, ops deploys.
//! The handoff is refused until ops approves the stage's definition, with the reason and
//! the command shown on dev; then ops runs the stage with the artifact dev built, behind
//! an approval gate on ops, and both nodes see the whole run.

use serde_json::Value;

use crate::node_support::{Node, project, stage_of, text};

const OTTOFILE: &str = "
stage('Build') {
  steps {
    sh 'mkdir -p out && echo release-42 > out/version.txt'
    archive path: 'out/', name: 'app'
  }
}
stage('Deploy') {
  owner = 'ops'
  gates { enter { input 'Ship it?' } }
  steps {
    unarchive name: 'app'
    sh 'echo deploying $(cat out/version.txt)'
  }
}
";

/// dev-1 of acme-dev and ops-1 of acme-ops, started, with dev joined to ops through an
/// invite that lets acme-dev hand ops its `Deploy*` stages with approved definitions.
pub(crate) fn two_orgs() -> (Node, Node) {
    two_orgs_with(&[])
}

/// [`two_orgs`] with more invite flags.
fn two_orgs_with(invite_flags: &[&str]) -> (Node, Node) {
    let mut dev = Node::init_as("acme-dev", "dev-1", &["--answers-to", "dev"]);
    let mut ops = Node::init_as("acme-ops", "ops-1", &["--answers-to", "ops"]);
    dev.start();
    ops.start();
    let invite = ops.otto_node(
        &[
            "invite",
            "--role",
            "deploy",
            "--stages",
            "Deploy*",
            "--definitions",
            "approved",
        ]
        .iter()
        .chain(invite_flags)
        .copied()
        .collect::<Vec<_>>(),
    );
    assert!(invite.status.success(), "invite: {}", text(&invite.stderr));
    let token = text(&invite.stdout).trim().to_owned();
    let joined = dev.otto_node(&["join", &token, "--alias", "ops"]);
    assert!(joined.status.success(), "join: {}", text(&joined.stderr));
    (dev, ops)
}

pub(crate) fn start_run(dev: &Node, dir: &tempfile::TempDir) -> String {
    dev.ok(&["run", dir.path().to_str().unwrap(), "--detach"])
        .trim()
        .to_owned()
}

fn note<'a>(status: &'a Value, stage: &str) -> &'a str {
    stage_of(status, stage)
        .and_then(|s| s["note"].as_str())
        .unwrap_or_default()
}

#[test]
fn dev_hands_deploy_to_ops_which_runs_it_with_the_artifact_after_approval() {
    let (dev, ops) = two_orgs();
    let dir = project(&[("Ottofile", OTTOFILE)]);

    // First run: ops refuses the inline steps it has not approved; dev shows why and how.
    let refused = start_run(&dev, &dir);
    let status = dev.wait_final(&refused);
    assert_eq!(status["run"]["state"], "failed", "{status}");
    let why = note(&status, "Deploy");
    assert!(why.contains("ops-1 rejected Deploy"), "{why}");
    assert!(why.contains("otto-node approve sha256:"), "{why}");
    let digest = why
        .split_whitespace()
        .find_map(|w| {
            w.trim_matches(|c| c == '`' || c == ';')
                .strip_prefix("sha256:")
        })
        .map(|hex| format!("sha256:{}", &hex[..64]))
        .expect("a digest in the note");
    let approved = ops.otto_node(&["approve", &digest]);
    assert!(
        approved.status.success(),
        "approve: {}",
        text(&approved.stderr)
    );

    // Second run: accepted; ops waits for its own approval, then runs Deploy.
    let run = start_run(&dev, &dir);
    ops.wait_for("the run on ops", || {
        ops.otto(&["status", &run]).status.success().then_some(())
    });
    ops.wait_stage(&run, "Deploy", "waiting_gate");
    // Approving on dev says where the gate waits instead of "not waiting".
    let elsewhere = dev.otto(&["approve", &run, "Deploy"]);
    assert_eq!(elsewhere.status.code(), Some(1));
    let err = text(&elsewhere.stderr);
    assert!(
        err.contains(
            "the gates of Deploy wait on the node that answers to \"ops\", not on this node"
        ),
        "{err}"
    );
    ops.ok(&["approve", &run, "Deploy"]);
    let status = dev.wait_final(&run);
    assert_eq!(
        status["run"]["state"],
        "succeeded",
        "{status}\n{}",
        ops.log()
    );
    assert!(note(&status, "Deploy").contains("ran on ops-1"), "{status}");

    // The artifact dev built is what ran on ops, and dev sees ops's log lines.
    let ops_log = ops.ok(&["logs", &run, "Deploy"]);
    assert!(ops_log.contains("deploying release-42"), "{ops_log}");
    let dev_view = dev.wait_for("ops's log lines on dev", || {
        let log = dev.ok(&["logs", &run, "Deploy"]);
        log.contains("deploying release-42").then_some(log)
    });
    assert!(dev_view.contains("deploying release-42"));

    // Ops sees dev's stage too, from the receipt in the offer.
    let on_ops = ops.status(&run);
    assert_eq!(stage_of(&on_ops, "Build").unwrap()["state"], "succeeded");
}

/// Runs the project once on dev, which ops refuses for its unapproved steps, and approves
/// the digest the refusal names on ops.
pub(crate) fn approve_after_refusal(dev: &Node, ops: &Node, dir: &tempfile::TempDir, stage: &str) {
    let refused = start_run(dev, dir);
    let status = dev.wait_final(&refused);
    let why = note(&status, stage).to_owned();
    let digest = why
        .split_whitespace()
        .find_map(|w| {
            w.trim_matches(|c| c == '`' || c == ';')
                .strip_prefix("sha256:")
        })
        .map(|hex| format!("sha256:{}", &hex[..64]))
        .unwrap_or_else(|| panic!("no digest in {why:?}"));
    let approved = ops.otto_node(&["approve", &digest]);
    assert!(
        approved.status.success(),
        "approve: {}",
        text(&approved.stderr)
    );
}

const WITH_SECRET: &str = r#"
environments { production { secrets { DEPLOY_TOKEN } } }
stage('Build') { steps { echo 'built' } }
stage('Deploy') {
  owner = 'ops'
  environment -> production
  steps { sh 'echo "token: $(cat "$OTTO_SECRETS_DIR/DEPLOY_TOKEN")"' }
}
"#;

const SECRET: &str = "hunter2-ops-only";

#[test]
fn an_offer_waits_for_a_stopped_owner_and_its_secret_stays_on_ops() {
    let (mut dev, mut ops) = two_orgs_with(&["--envs", "production", "--secrets", "DEPLOY_TOKEN"]);
    let set = ops.otto_with_stdin(&["secrets", "set", "DEPLOY_TOKEN"], Some(SECRET.as_bytes()));
    assert!(set.status.success(), "secrets set: {}", text(&set.stderr));
    let dir = project(&[("Ottofile", WITH_SECRET)]);
    approve_after_refusal(&dev, &ops, &dir, "Deploy");

    // Ops is down when dev offers Deploy: the offer waits in dev's outbox.
    assert!(ops.terminate(), "ops stopped cleanly");
    let run = start_run(&dev, &dir);
    dev.wait_for("the offer to be waiting", || {
        let status = dev.status(&run);
        note(&status, "Deploy")
            .starts_with("offered to ops-1")
            .then_some(())
    });
    ops.start();
    let status = dev.wait_final(&run);
    assert_eq!(
        status["run"]["state"],
        "succeeded",
        "{status}\n{}",
        ops.log()
    );

    // Ops used its secret, masked; nothing of it reached dev.
    let ops_log = ops.ok(&["logs", &run, "Deploy"]);
    assert!(ops_log.contains("token: ***"), "{ops_log}");
    assert!(!ops_log.contains(SECRET));
    let dev_log = dev.ok(&["logs", &run, "Deploy"]);
    assert!(!dev_log.contains(SECRET), "{dev_log}");
    assert!(!dev.ok(&["status", &run, "--json"]).contains(SECRET));
    assert!(dev.terminate());
    for entry in walk(&dev.home) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "the secret is in {}",
            entry.display()
        );
    }
}

#[test]
fn a_stage_outside_the_granted_scope_is_refused_with_the_reason_on_dev() {
    let (dev, _ops) = two_orgs();
    let dir = project(&[(
        "Ottofile",
        "stage('Build') { steps { echo 'built' } }\nstage('Migrate') { owner = 'ops'  steps { echo 'migrating' } }\n",
    )]);
    let run = start_run(&dev, &dir);
    let status = dev.wait_final(&run);
    assert_eq!(status["run"]["state"], "failed");
    let why = note(&status, "Migrate");
    assert!(why.starts_with("ops-1 rejected Migrate: "), "{why}");
    assert!(why.contains("Migrate"), "{why}");
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.is_file() {
            out.push(path);
        }
    }
    out
}

const SLOW_DEPLOY: &str = "
stage('Build') { steps { echo 'built' } }
stage('Deploy') { owner = 'ops'  steps { sh 'echo starting; sleep 2; echo deployed' } }
";

#[test]
fn killing_either_node_mid_handoff_loses_nothing() {
    let (mut dev, mut ops) = two_orgs();
    let dir = project(&[("Ottofile", SLOW_DEPLOY)]);
    approve_after_refusal(&dev, &ops, &dir, "Deploy");

    // Ops is killed while it runs Deploy: it runs it again as attempt 2 after its restart.
    let run = start_run(&dev, &dir);
    ops.wait_for("the run on ops", || {
        ops.otto(&["status", &run]).status.success().then_some(())
    });
    ops.wait_stage(&run, "Deploy", "running");
    ops.kill9();
    ops.start();
    let status = dev.wait_final(&run);
    assert_eq!(
        status["run"]["state"],
        "succeeded",
        "{status}\n{}",
        ops.log()
    );
    let on_ops = ops.status(&run);
    let attempts = stage_of(&on_ops, "Deploy").unwrap()["attempts"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(attempts, 2, "{on_ops}");

    // Dev is killed while it waits for the receipt: after its restart the receipt still
    // arrives and the run ends.
    let run = start_run(&dev, &dir);
    ops.wait_for("the run on ops", || {
        ops.otto(&["status", &run]).status.success().then_some(())
    });
    ops.wait_stage(&run, "Deploy", "running");
    dev.kill9();
    ops.wait_stage(&run, "Deploy", "succeeded");
    dev.start();
    let status = dev.wait_final(&run);
    assert_eq!(
        status["run"]["state"],
        "succeeded",
        "{status}\n{}",
        dev.log()
    );
}

const TWO_DEPLOYS: &str = "
stage('Build') { steps { echo 'built' } }
stage('Deploy staging') { owner = 'ops'  steps { echo 'to staging' } }
stage('Deploy production') { owner = 'ops'  steps { echo 'to production' } }
";

#[test]
fn ops_moves_on_only_stages_it_approved() {
    let (dev, ops) = two_orgs();
    let dir = project(&[("Ottofile", TWO_DEPLOYS)]);
    // Approves staging's steps only.
    approve_after_refusal(&dev, &ops, &dir, "Deploy staging");
    let run = start_run(&dev, &dir);
    let status = dev.wait_final(&run);
    assert_eq!(status["run"]["state"], "failed", "{status}");
    assert_eq!(
        stage_of(&status, "Deploy staging").unwrap()["state"],
        "succeeded"
    );
    assert_eq!(
        stage_of(&status, "Deploy production").unwrap()["state"],
        "failed"
    );
    // From ops's failed status event, then from its receipt.
    let why = note(&status, "Deploy production");
    assert!(
        why.starts_with("failed on ops-1") || why.starts_with("ops-1: not run here"),
        "{status}"
    );
    let on_ops = ops.ok(&["logs", &run, "Deploy production"]);
    assert!(on_ops.contains("is not approved here"), "{on_ops}");
    assert!(on_ops.contains("otto-node approve sha256:"), "{on_ops}");
    assert!(!on_ops.contains("to production"), "{on_ops}");
}

#[test]
fn a_revoked_node_has_its_offers_refused_with_the_reason() {
    let mut ops = Node::init_as("acme-ops", "ops-1", &["--answers-to", "ops"]);
    let mut dev1 = Node::init_as("acme-dev", "dev-1", &["--answers-to", "dev"]);
    let org_key = dev1.home.join("org.key");
    let mut dev2 = Node::init_as(
        "acme-dev",
        "dev-2",
        &[
            "--answers-to",
            "dev",
            "--org-key",
            org_key.to_str().unwrap(),
        ],
    );
    ops.start();
    dev1.start();
    dev2.start();
    for dev in [&dev1, &dev2] {
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
    }
    let dir = project(&[("Ottofile", SLOW_DEPLOY)]);
    approve_after_refusal(&dev2, &ops, &dir, "Deploy");

    // acme-dev revokes dev-2 (its key was stolen): ops learns it from dev-1 and refuses
    // dev-2's next offer, and dev-2 shows why.
    let peers = ops.otto_node(&["peers", "--json"]);
    assert!(peers.status.success(), "peers: {}", text(&peers.stderr));
    let peers: Value = serde_json::from_slice(&peers.stdout).unwrap();
    let node_key = peers["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["node"] == "dev-2")
        .and_then(|p| p["node_key"].as_str())
        .expect("ops knows dev-2")
        .to_owned();
    let revoked = dev1.otto_node(&["trust", "revoke", &node_key, "--reason", "key stolen"]);
    assert!(
        revoked.status.success(),
        "revoke: {}",
        text(&revoked.stderr)
    );
    ops.wait_for("ops to learn the revocation", || {
        let out = ops.otto_node(&["peers", "--json"]);
        let peers: Value = serde_json::from_slice(&out.stdout).ok()?;
        peers["peers"]
            .as_array()?
            .iter()
            .any(|p| p["node"] == "dev-2" && p["status"] == "revoked")
            .then_some(())
    });
    let run = start_run(&dev2, &dir);
    let status = dev2.wait_final(&run);
    assert_eq!(status["run"]["state"], "failed", "{status}");
    let why = note(&status, "Deploy");
    assert!(why.contains("ops-1 rejected Deploy"), "{why}");
    assert!(
        !ops.otto(&["status", &run]).status.success(),
        "ops has no record of the revoked node's run"
    );
}

const THREE_ORGS: &str = "
stage('Build') { steps { echo 'built' } }
stage('Test') { owner = 'qa'  steps { echo 'tested' } }
stage('Deploy') { owner = 'ops'  steps { echo 'deployed' } }
";

/// `inviter` invites `joiner`'s org for stages `stages`, which joins naming it `alias`.
pub(crate) fn join(joiner: &Node, inviter: &Node, stages: &str, alias: &str) {
    let invite = inviter.otto_node(&[
        "invite",
        "--role",
        "deploy",
        "--stages",
        stages,
        "--definitions",
        "approved",
    ]);
    assert!(invite.status.success(), "invite: {}", text(&invite.stderr));
    let token = text(&invite.stdout).trim().to_owned();
    let joined = joiner.otto_node(&["join", &token, "--alias", alias]);
    assert!(joined.status.success(), "join: {}", text(&joined.stderr));
}

/// `node` calls the org `org` it pinned by the owner name `name`.
pub(crate) fn know_as(node: &Node, name: &str, org: &str) {
    let out = node.otto_node(&["trust", "alias", name, org]);
    assert!(out.status.success(), "alias: {}", text(&out.stderr));
}

#[test]
fn a_refusal_two_handoffs_away_reaches_the_node_that_started_the_run() {
    let mut dev = Node::init_as("acme-dev", "dev-1", &["--answers-to", "dev"]);
    let mut qa = Node::init_as("acme-qa", "qa-1", &["--answers-to", "qa"]);
    let mut ops = Node::init_as("acme-ops", "ops-1", &["--answers-to", "ops"]);
    for node in [&mut dev, &mut qa, &mut ops] {
        node.start();
    }
    join(&dev, &qa, "Test*", "qa");
    join(&qa, &ops, "Deploy*", "ops");
    know_as(&ops, "qa", "acme-qa");
    let dir = project(&[("Ottofile", THREE_ORGS)]);
    approve_after_refusal(&dev, &qa, &dir, "Test");

    // Qa runs Test and offers Deploy to ops, which refuses it: dev hears of it from qa.
    let run = start_run(&dev, &dir);
    let status = dev.wait_final(&run);
    assert_eq!(status["run"]["state"], "failed", "{status}");
    assert_eq!(stage_of(&status, "Test").unwrap()["state"], "succeeded");
    assert_eq!(stage_of(&status, "Deploy").unwrap()["state"], "failed");
    let why = note(&status, "Deploy");
    assert!(why.contains("ops-1 rejected Deploy"), "{why}");
}

#[test]
fn the_end_of_a_stage_two_orgs_away_reaches_the_node_that_started_the_run() {
    // Dev-1 knows qa-1 only: it never heard of acme-ops, so it drops ops-1's gossip. Ops-1
    // pins acme-dev (through dev-2, of the same org) to verify Build's receipt in the chain.
    let mut dev = Node::init_as("acme-dev", "dev-1", &["--answers-to", "dev"]);
    let org_key = dev.home.join("org.key");
    let mut dev2 = Node::init_as(
        "acme-dev",
        "dev-2",
        &["--org-key", org_key.to_str().unwrap()],
    );
    let mut qa = Node::init_as("acme-qa", "qa-1", &["--answers-to", "qa"]);
    let mut ops = Node::init_as("acme-ops", "ops-1", &["--answers-to", "ops"]);
    for node in [&mut dev, &mut dev2, &mut qa, &mut ops] {
        node.start();
    }
    join(&dev, &qa, "Test*", "qa");
    join(&qa, &ops, "Deploy*", "ops");
    join(&dev2, &ops, "Deploy*", "ops");
    // Dev-1 cannot bind `ops`; ops knows `qa` itself, so Test's receipt counts from acme-qa.
    know_as(&ops, "qa", "acme-qa");
    let dir = project(&[("Ottofile", THREE_ORGS)]);
    approve_after_refusal(&dev, &qa, &dir, "Test");
    approve_after_refusal(&dev, &ops, &dir, "Deploy");

    let run = start_run(&dev, &dir);
    let status = dev.wait_final(&run);
    assert_eq!(status["run"]["state"], "succeeded", "{status}");
    assert_eq!(stage_of(&status, "Test").unwrap()["state"], "succeeded");
    assert_eq!(stage_of(&status, "Deploy").unwrap()["state"], "succeeded");
    // Dev took qa's word for it; qa, which handed Deploy to ops, verified its receipt.
    let why = note(&status, "Deploy");
    assert!(why.contains("ran on ops-1 (acme-ops)"), "{why}");
    assert!(why.contains("relayed by qa-1"), "{why}");
    let on_qa = qa.wait_stage(&run, "Deploy", "succeeded");
    assert!(
        note(&on_qa, "Deploy").contains("receipt verified"),
        "{on_qa}"
    );
    let trust = dev.otto_node(&["trust", "list", "--json"]);
    assert!(
        !text(&trust.stdout).contains("acme-ops"),
        "dev pins acme-ops"
    );
}

const NOTIFY_AFTER_DEPLOY: &str = "
stage('Build') { steps { echo 'built' } }
stage('Deploy') { owner = 'ops'  steps { echo 'deployed' } }
stage('Notify') { steps { echo 'notified by the node that started the run' } }
";

#[test]
fn a_stage_without_owner_after_a_foreign_stage_runs_on_the_origin_and_the_run_ends() {
    // Ops ran Deploy, so it moves Notify on; Notify has no owner, so it belongs to the node
    // that started the run, which the plan's binding names: ops offers it back to dev-1.
    let (dev, ops) = two_orgs();
    let dir = project(&[("Ottofile", NOTIFY_AFTER_DEPLOY)]);
    approve_after_refusal(&dev, &ops, &dir, "Deploy");

    let run = start_run(&dev, &dir);
    let status = dev.wait_final(&run);
    assert_eq!(
        status["run"]["state"],
        "succeeded",
        "{status}\n{}",
        ops.log()
    );
    assert_eq!(stage_of(&status, "Notify").unwrap()["state"], "succeeded");
    let on_dev = dev.ok(&["logs", &run, "Notify"]);
    assert!(
        on_dev.contains("notified by the node that started the run"),
        "{on_dev}"
    );
    // Ops handed it to dev and took dev's receipt for it.
    let on_ops = ops.wait_stage(&run, "Notify", "succeeded");
    let why = note(&on_ops, "Notify");
    assert!(why.contains("ran on dev-1 (acme-dev)"), "{on_ops}");
    assert!(why.contains("receipt verified"), "{on_ops}");
}
