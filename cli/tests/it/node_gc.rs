//! `otto-node gc` against a real node: through the running node's API, then on the
//! stopped node's home, and refused with one line when retention is off and no window is
//! given.

use std::fs;

use crate::node_support::{Node, project, text};

#[test]
fn gc_removes_an_ended_runs_log_and_keeps_the_run() {
    let mut node = Node::start_new();
    let dir = project(&[(
        "Ottofile",
        "stage('Build') { steps { sh 'echo hello from build; echo data > file.txt' } }\n",
    )]);
    let out = node.otto(&["run", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        node.log()
    );
    let run = text(&out.stdout)
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .to_owned();
    let logs = node.home.join("logs").join(&run);
    assert!(logs.is_dir());
    assert!(node.ok(&["logs", &run]).contains("hello from build"));

    // The run ended just now: 30 days keep it.
    let out = node.otto_node(&["gc", "--dry-run", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["runs"], serde_json::json!([]));
    assert_eq!(report["older_than_days"], 30);

    // Every ended run: its log goes, through the running node.
    let out = node.otto_node(&["gc", "--older-than", "0"]);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(said.contains(&format!("removed run {run}")), "{said}");
    assert!(
        said.contains("removed 1 run that ended more than 0 days ago"),
        "{said}"
    );
    assert!(!logs.exists());
    assert!(!node.ok(&["logs", &run]).contains("hello from build"));
    assert_eq!(node.status(&run)["run"]["state"], "succeeded");

    // The node stopped: gc works on its home, with nothing left to do.
    assert!(node.terminate());
    let out = node.otto_node(&["gc", "--older-than", "0"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("removed 0 runs"),
        "{}",
        text(&out.stdout)
    );

    // Retention off and no window: one line saying what to do.
    let config = node.home.join("config.toml");
    let text_of = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        text_of.replace("retention_days = 30", "retention_days = 0"),
    )
    .unwrap();
    let out = node.otto_node(&["gc"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("--older-than DAYS"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
