//! Killing the node: `kill -9` mid-stage and a restart finish the run with the stage's
//! second attempt recorded and nothing duplicated; SIGTERM stops cleanly.

use crate::node_support::{Node, project, stage_of};

#[test]
fn a_run_survives_kill_9_mid_stage_and_retries_as_attempt_2() {
    let mut node = Node::start_new();
    let dir = project(&[(
        "Ottofile",
        r#"
stage('Build') { steps { echo 'built' } }
stage('Slow') {
  steps {
    sh '''
      echo "attempt $OTTO_ATTEMPT started"
      if [ "$OTTO_ATTEMPT" = 1 ]; then sleep 60; fi
      echo "attempt $OTTO_ATTEMPT done"
    '''
  }
}
stage('After') { steps { echo 'after' } }
"#,
    )]);
    let run = node.ok(&["run", dir.path().to_str().unwrap(), "--detach"]);
    let run = run.trim().to_owned();
    node.wait_for("attempt 1 to start its step", || {
        node.ok(&["logs", &run, "Slow"])
            .contains("attempt 1 started")
            .then_some(())
    });

    node.kill9();
    node.start();
    let status = node.wait_final(&run);
    assert_eq!(
        status["run"]["state"],
        "succeeded",
        "{status}\n{}",
        node.log()
    );

    let slow = stage_of(&status, "Slow").unwrap();
    let attempts = slow["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{slow}");
    assert_eq!(attempts[0]["state"], "interrupted");
    assert_eq!(attempts[1]["n"], 2);
    assert_eq!(attempts[1]["state"], "succeeded");
    for stage in ["Build", "After"] {
        let s = stage_of(&status, stage).unwrap();
        assert_eq!(s["attempts"].as_array().unwrap().len(), 1, "{s}");
    }

    let logs = node.ok(&["logs", &run, "Slow"]);
    assert_eq!(logs.matches("attempt 2 done").count(), 1, "{logs}");
    assert!(!logs.contains("attempt 1 done"), "{logs}");
    assert!(logs.contains("--- attempt 2 ---"), "{logs}");
    let after = node.ok(&["logs", &run, "After"]);
    assert_eq!(after.matches("after").count(), 1, "{after}");

    let list: serde_json::Value = serde_json::from_str(&node.ok(&["status", "--json"])).unwrap();
    assert_eq!(list["runs"].as_array().unwrap().len(), 1, "{list}");
}

#[test]
fn a_run_survives_kill_9_while_a_gate_waits() {
    let mut node = Node::start_new();
    let dir = project(&[(
        "Ottofile",
        r#"
stage('Build') { steps { echo 'built' } }
stage('Ship') {
  gates { enter { input 'Ship it?' } }
  steps { echo 'shipped' }
}
"#,
    )]);
    let run = node.ok(&["run", dir.path().to_str().unwrap(), "--detach"]);
    let run = run.trim().to_owned();
    node.wait_stage(&run, "Ship", "waiting_gate");

    node.kill9();
    node.start();
    // The gate still waits after the restart, and an approval given to the new process
    // lets the run finish; nothing before the gate runs again.
    node.wait_stage(&run, "Ship", "waiting_gate");
    node.ok(&["approve", &run, "Ship"]);
    let status = node.wait_final(&run);
    assert_eq!(
        status["run"]["state"],
        "succeeded",
        "{status}\n{}",
        node.log()
    );
    for stage in ["Build", "Ship"] {
        let s = stage_of(&status, stage).unwrap();
        assert_eq!(s["attempts"].as_array().unwrap().len(), 1, "{s}");
    }
    let logs = node.ok(&["logs", &run, "Ship"]);
    assert_eq!(logs.matches("shipped").count(), 1, "{logs}");
}

#[test]
fn the_killed_nodes_agent_is_stopped_after_a_restart() {
    let mut node = Node::start_new();
    let dir = project(&[(
        "Ottofile",
        "stage('Slow') { steps { sh 'echo started; if [ \"$OTTO_ATTEMPT\" = 1 ]; then sleep 120; fi' } }\n",
    )]);
    let run = node.ok(&["run", dir.path().to_str().unwrap(), "--detach"]);
    let run = run.trim().to_owned();
    node.wait_for("the step to start", || {
        node.ok(&["logs", &run, "Slow"])
            .contains("started")
            .then_some(())
    });
    let status = node.status(&run);
    let pid = stage_of(&status, "Slow").unwrap()["attempts"][0]["agent_pid"]
        .as_u64()
        .expect("attempt 1 records its agent's pid");
    node.kill9();
    assert!(alive(pid), "the agent outlives its node");
    node.start();
    // The new node stops the agent the old one left, and with it the step it ran.
    node.wait_for("the first attempt's agent to be gone", || {
        (!alive(pid)).then_some(())
    });
    assert_eq!(node.wait_final(&run)["run"]["state"], "succeeded");
}

/// Whether a process exists and is not a zombie.
fn alive(pid: u64) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(") ").next().and_then(|r| r.chars().next());
    !stat.is_empty() && state != Some('Z')
}

#[test]
fn sigterm_stops_the_node_cleanly() {
    let mut node = Node::start_new();
    assert!(node.home.join("api.addr").exists());
    let token = std::fs::read_to_string(node.home.join("api.token")).unwrap();
    assert!(node.terminate(), "{}", node.log());
    assert!(!node.home.join("api.addr").exists(), "api.addr is removed");
    assert!(node.log().contains("stopped"), "{}", node.log());
    // The token is kept across restarts.
    node.start();
    assert_eq!(
        std::fs::read_to_string(node.home.join("api.token")).unwrap(),
        token
    );
    let out = node.otto(&["status"]);
    assert!(out.status.success());
}
