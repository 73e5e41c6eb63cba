//! `concurrency { }` on a real node (issue #14, item 4): two runs of a pipeline with a
//! group run one after the other, the second queued with a note `otto status` shows; with
//! `cancel_in_progress = true` the newer run cancels the one in progress.

use crate::node_support::{Node, project, stage_of};

const ONE_AT_A_TIME: &str = "
concurrency { group = 'deploy' }
stage('Deploy') { gates { enter { input 'Ship it?' } }  steps { echo 'deployed' } }
";

const NEWEST_WINS: &str = "
concurrency { group = 'deploy-now'  cancel_in_progress = true }
stage('Deploy') { steps { sh 'echo started; sleep 60' } }
";

fn detach(node: &Node, dir: &tempfile::TempDir) -> String {
    node.ok(&["run", dir.path().to_str().unwrap(), "--detach"])
        .trim()
        .to_owned()
}

#[test]
fn runs_of_a_group_go_one_after_the_other_and_a_newer_one_cancels_the_first() {
    let node = Node::start_new();

    // One at a time: the second run waits, queued, until the first has ended.
    let dir = project(&[("Ottofile", ONE_AT_A_TIME)]);
    let first = detach(&node, &dir);
    node.wait_stage(&first, "Deploy", "waiting_gate");
    let second = detach(&node, &dir);
    let note = format!("waiting for run {first} in group deploy");
    let status = node.wait_for("the second run to queue", || {
        let status = node.status(&second);
        (status["run"]["note"] == note.as_str()).then_some(status)
    });
    assert_eq!(status["run"]["state"], "queued", "{status}");
    let deploy = stage_of(&status, "Deploy").unwrap();
    assert_eq!(deploy["state"], "pending", "{status}");
    assert_eq!(deploy["attempts"].as_array().unwrap().len(), 0, "{status}");
    let shown = node.ok(&["status", &second]);
    assert!(
        shown
            .lines()
            .next()
            .unwrap()
            .contains(&format!("queued — {note}")),
        "{shown}"
    );

    node.ok(&["approve", &first, "Deploy", "--as", "alice"]);
    let done = node.wait_final(&first);
    assert_eq!(done["run"]["state"], "succeeded", "{done}");
    let status = node.wait_stage(&second, "Deploy", "waiting_gate");
    assert!(status["run"].get("note").is_none(), "{status}");
    node.ok(&["approve", &second, "Deploy", "--as", "alice"]);
    let later = node.wait_final(&second);
    assert_eq!(later["run"]["state"], "succeeded", "{later}");
    let ended = stage_of(&done, "Deploy").unwrap()["attempts"][0]["finished_at"]
        .as_u64()
        .unwrap();
    let started = stage_of(&later, "Deploy").unwrap()["attempts"][0]["started_at"]
        .as_u64()
        .unwrap();
    assert!(ended <= started, "{ended} {started}");

    // The newest wins: the first run, running, is cancelled in favour of the second.
    let dir = project(&[("Ottofile", NEWEST_WINS)]);
    let first = detach(&node, &dir);
    node.wait_stage(&first, "Deploy", "running");
    let second = detach(&node, &dir);
    let cancelled = node.wait_final(&first);
    assert_eq!(cancelled["run"]["state"], "cancelled", "{cancelled}");
    let by = format!("concurrency group deploy-now in favour of run {second}");
    assert_eq!(
        cancelled["run"]["note"],
        format!("cancelled by {by}").as_str()
    );
    let deploy = stage_of(&cancelled, "Deploy").unwrap();
    assert_eq!(
        deploy["note"],
        format!("cancelled by {by}").as_str(),
        "{cancelled}"
    );
    assert_eq!(deploy["attempts"][0]["state"], "cancelled", "{cancelled}");
    node.wait_stage(&second, "Deploy", "running");
    node.ok(&["cancel", &second, "--as", "alice"]);
    assert_eq!(node.wait_final(&second)["run"]["state"], "cancelled");
}
