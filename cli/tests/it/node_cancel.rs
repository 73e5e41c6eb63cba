//! `otto cancel` and Ctrl-C on `otto run`, against a real node.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::node_support::{Node, project, stage_of, text, wait_output_within};

const SLOW: &str = "stage('Slow') { steps { sh 'echo started; sleep 60' } }\n\
                    stage('Later') { steps { echo 'later' } }\n";

#[test]
fn cancel_stops_a_running_stage_and_records_who() {
    let node = Node::start_new();
    let dir = project(&[("Ottofile", SLOW)]);
    let run = node
        .ok(&["run", dir.path().to_str().unwrap(), "--detach"])
        .trim()
        .to_owned();
    node.wait_stage(&run, "Slow", "running");

    let said = node.ok(&["cancel", &run, "--as", "alice"]);
    assert_eq!(said.trim(), format!("cancelled run {run} as alice"));
    let status = node.wait_final(&run);
    assert_eq!(status["run"]["state"], "cancelled", "{status}");
    let slow = stage_of(&status, "Slow").unwrap();
    assert_eq!(slow["state"], "cancelled", "{status}");
    assert_eq!(slow["attempts"][0]["state"], "cancelled", "{status}");
    assert_eq!(
        stage_of(&status, "Later").unwrap()["note"],
        "not run: the run was cancelled by alice"
    );
    assert_eq!(node.otto(&["status", &run]).status.code(), Some(1));

    // A run that is over is left as it is, with a one-line reason.
    let again = node.otto(&["cancel", &run]);
    assert_eq!(again.status.code(), Some(1));
    let err = text(&again.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    // And an unknown run is refused.
    let unknown = node.otto(&["cancel", "01J9ZQ3M5V8R2K4T6W8Y0A2C4E"]);
    assert!(
        text(&unknown.stderr).contains("no run"),
        "{}",
        text(&unknown.stderr)
    );
}

#[test]
fn ctrl_c_on_otto_run_says_the_run_goes_on_and_how_to_stop_it() {
    let node = Node::start_new();
    let dir = project(&[("Ottofile", SLOW)]);
    let child = Command::new(env!("CARGO_BIN_EXE_otto"))
        .args(["run", dir.path().to_str().unwrap()])
        .env("OTTO_HOME", &node.home)
        .env_remove("OTTO_NODE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = rustix::process::Pid::from_child(&child);
    // The run exists once the node lists one; then its step runs.
    let run = node.wait_for("the run to start", || {
        let list: serde_json::Value =
            serde_json::from_str(&node.ok(&["status", "--json"])).unwrap();
        list["runs"][0]["id"].as_str().map(str::to_owned)
    });
    node.wait_stage(&run, "Slow", "running");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let out = wait_output_within(child, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("run {run} goes on")), "{err}");
    assert!(err.contains(&format!("otto cancel {run}")), "{err}");
    // The run did go on.
    assert_eq!(node.status(&run)["run"]["state"], "running");
    node.ok(&["cancel", &run]);
    assert_eq!(node.wait_final(&run)["run"]["state"], "cancelled");
}
