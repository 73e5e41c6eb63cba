//! Crash recovery: the engine task dies with an attempt running and its agent is killed;
//! a new engine on the same store retries the stage as attempt 2 and finishes the run.

use std::time::Duration;

use crate::engine_support::{PATIENCE, TestNode};
use otto_node::engine::EngineEvent;
use otto_node::store::{AttemptState, RunState, StageState};
use otto_pipeline::Facts;
use rustix::process::{Pid, Signal, kill_process_group};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_attempt_is_retried_after_a_restart() {
    let mut node = TestNode::start();
    // Outside the home, which steps cannot see; the test makes it once the first attempt
    // waits, so the second attempt does not wait.
    let outside = tempfile::tempdir().expect("tempdir");
    let marker = outside.path().join("marker");
    let text = format!(
        "
stage('Build') {{ steps {{ echo 'built' }} }}
stage('Slow') {{
  steps {{ sh 'test -f {m} || {{ echo waiting; sleep 30; }}'  echo 'second time lucky' }}
}}
stage('After') {{ steps {{ echo 'after' }} }}
",
        m = marker.display()
    );
    let run = node.submit(&text, Facts::default(), &[]).await;
    let step_group = match node
        .wait_for("the slow step to start", |e| {
            matches!(e, EngineEvent::StepStarted { run: r, stage, .. } if *r == run && stage == "Slow")
        })
        .await
    {
        EngineEvent::StepStarted { pgid, .. } => pgid.expect("sh runs as a process"),
        _ => unreachable!(),
    };
    let agent = agent_pid(&node, run).await;
    for _ in 0..600 {
        if node.log_text(run, "Slow").contains("waiting") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(node.log_text(run, "Slow").contains("waiting"));
    std::fs::write(&marker, "").expect("marker");

    // The node dies: its task stops without recording anything, and the agent and the
    // step's processes die with the machine.
    node.task.abort();
    let _ = (&mut node.task).await;
    kill_group(agent);
    kill_group(step_group);
    assert!(marker.exists());
    let slow = node.stage(run, "Slow");
    assert_eq!(slow.state, StageState::Running);
    assert_eq!(slow.attempts[0].state, AttemptState::Running);

    node.restart();
    assert_eq!(node.wait_run(run).await, RunState::Succeeded);
    let slow = node.stage(run, "Slow");
    let attempts: Vec<(u32, AttemptState)> = slow.attempts.iter().map(|a| (a.n, a.state)).collect();
    assert_eq!(
        attempts,
        [(1, AttemptState::Interrupted), (2, AttemptState::Succeeded)]
    );
    let log = node.log_text(run, "Slow");
    assert!(log.contains("attempt 1 was interrupted"), "{log}");
    assert!(log.contains("second time lucky"), "{log}");
    assert_eq!(
        node.stage(run, "Build").attempts.len(),
        1,
        "finished stages do not run again"
    );
    assert_eq!(node.stage(run, "After").state, StageState::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_fails_its_attempt_cleanly() {
    let mut node = TestNode::start();
    let text = "stage('Slow') { steps { sh 'echo going; sleep 30' } }";
    let run = node.submit(text, Facts::default(), &[]).await;
    let step_group = match node
        .wait_for(
            "the step to start",
            |e| matches!(e, EngineEvent::StepStarted { run: r, .. } if *r == run),
        )
        .await
    {
        EngineEvent::StepStarted { pgid, .. } => pgid.expect("sh runs as a process"),
        _ => unreachable!(),
    };
    let agent = agent_pid(&node, run).await;
    let pid = Pid::from_raw(i32::try_from(agent).expect("pid")).expect("non-zero");
    rustix::process::kill_process(pid, Signal::KILL).expect("kill the agent");
    assert_eq!(node.wait_run(run).await, RunState::Failed);
    let attempt = node.stage(run, "Slow").attempts[0].clone();
    assert_eq!(attempt.state, AttemptState::Failed);
    let error = attempt.error.expect("an error");
    assert!(error.contains("exited without a result"), "{error}");
    kill_group(step_group);
}

/// The recorded pid of the Slow stage's agent (recorded right after it is spawned).
async fn agent_pid(node: &TestNode, run: otto_node::store::RunId) -> u32 {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(pid) = node
            .stage(run, "Slow")
            .attempts
            .first()
            .and_then(|a| a.agent_pid)
        {
            return pid;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no agent pid recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kill_group(pgid: u32) {
    let pid = Pid::from_raw(i32::try_from(pgid).expect("pid")).expect("non-zero");
    let _ = kill_process_group(pid, Signal::KILL);
}
