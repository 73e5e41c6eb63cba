//! An owner no node answers to, on a real node: refused at planning with the name it was
//! probably meant to be, and a handoff that finds no node fails the stage with the reason
//! once `[node] owner_wait_secs` has passed, instead of waiting for ever.

use std::fs;

use crate::node_support::{Node, project, stage_of, text};

/// A node of acme-dev that pins acme-ops, whose node it has never seen, under the alias
/// `ops`, and waits `wait` seconds for a node that answers to an owner.
fn dev_pinning_ops(wait: u64) -> Node {
    let ops = Node::init_as("acme-ops", "ops-1", &[]);
    let ops_trust = fs::read_to_string(ops.home.join("trust.toml")).unwrap();
    let key = ops_trust
        .lines()
        .find_map(|l| l.strip_prefix("key = "))
        .unwrap()
        .to_owned();
    let mut dev = Node::init_as("acme-dev", "dev-1", &["--answers-to", "dev"]);
    let trust = dev.home.join("trust.toml");
    let text = fs::read_to_string(&trust).unwrap().replace(
        "\n[aliases]\n",
        &format!(
            "\n[[orgs]]\nname = \"acme-ops\"\nkey = {key}\nadded_at = 1796600000\n\n\
             [aliases]\nops = {{ org = \"acme-ops\" }}\n"
        ),
    );
    fs::write(&trust, text).unwrap();
    let config = dev.home.join("config.toml");
    let text = fs::read_to_string(&config)
        .unwrap()
        .replace("[node]\n", &format!("[node]\nowner_wait_secs = {wait}\n"));
    fs::write(&config, text).unwrap();
    dev.start();
    dev
}

#[test]
fn an_owner_nothing_answers_to_is_refused_at_planning_with_did_you_mean() {
    let dev = dev_pinning_ops(300);
    let dir = project(&[(
        "Ottofile",
        "stage('Build') { steps { sh 'true' } }\n\
         stage('Deploy') { owner = 'opps'  steps { sh 'true' } }\n",
    )]);
    let out = dev.otto(&["run", dir.path().to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("stage 'Deploy' is owned by 'opps'"), "{err}");
    assert!(err.contains("did you mean 'ops'?"), "{err}");
    let list: serde_json::Value = serde_json::from_str(&dev.ok(&["status", "--json"])).unwrap();
    assert_eq!(list["runs"].as_array().unwrap().len(), 0, "{list}");

    // A name far from any known one gets no guess; the stage another node moves on to
    // an owner this node does not know is that node's to resolve, and plans.
    let dir = project(&[(
        "Ottofile",
        "stage('Build') { steps { sh 'true' } }\n\
         stage('Deploy') { owner = 'ops'  steps { sh 'true' } }\n\
         stage('Audit') { owner = 'auditors'  steps { sh 'true' } }\n",
    )]);
    let run = dev.ok(&["run", dir.path().to_str().unwrap(), "--detach"]);
    assert!(!run.trim().is_empty());
    let dir = project(&[(
        "Ottofile",
        "stage('Audit') { owner = 'auditors'  steps { sh 'true' } }\n",
    )]);
    let out = dev.otto(&["run", dir.path().to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(
        err.contains("owned by 'auditors'") && !err.contains("did you mean"),
        "{err}"
    );
}

#[test]
fn a_handoff_that_finds_no_node_fails_the_stage_with_the_reason() {
    let dev = dev_pinning_ops(0);
    let dir = project(&[(
        "Ottofile",
        "stage('Build') { steps { sh 'echo built' } }\n\
         stage('Deploy') { owner = 'ops'  steps { sh 'true' } }\n",
    )]);
    let out = dev.otto(&["run", dir.path().to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("no known node answers to ops"), "{stdout}");
    let list: serde_json::Value = serde_json::from_str(&dev.ok(&["status", "--json"])).unwrap();
    let run = list["runs"][0]["id"].as_str().unwrap().to_owned();
    let status = dev.status(&run);
    assert_eq!(status["run"]["state"], "failed", "{status}");
    let deploy = stage_of(&status, "Deploy").unwrap();
    assert_eq!(deploy["state"], "failed", "{status}");
    let note = deploy["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("no known node answers to ops") && note.contains("owner_wait_secs"),
        "{note}"
    );
    let out = dev.otto(&["status", &run]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("no known node answers to ops"));
}
