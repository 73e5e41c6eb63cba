//! The real `otto-agent` binary when its node is gone: killed with SIGKILL, the node no
//! longer serves the socket and no longer reads the agent's stderr. A SIGTERM must still
//! stop the running step, and without one the agent stops the step by itself.

use std::time::Duration;

use crate::common::*;
use otto_agent::protocol::{EventBody, Outcome};
use rustix::process::Signal;

/// How long the tests wait for the agent and its step to be gone.
const LIMIT: Duration = Duration::from_secs(20);

/// A step that records its pid (it stays the same through `exec`) and sleeps a minute.
const SLEEPER: &str = "echo $$ > step.pid; exec sleep 60";

#[tokio::test]
async fn sigterm_stops_the_step_and_the_agent_when_the_node_is_gone() {
    let mut node = TestNode::start(vec![sh(SLEEPER)]).await;
    // The node runs the agent at log level `info`, so the agent writes to its stderr.
    let mut child = node
        .agent_command()
        .env("OTTO_LOG", "info")
        .spawn()
        .expect("spawn otto-agent");
    let agent = child.id().expect("agent pid");
    let step = running_step(&node).await;

    // The node dies: nobody serves the socket or reads the agent's stderr any more.
    node.stop_serving().await;
    drop(child.stderr.take());
    // A restarted node stops the agent the old one left.
    send_signal(agent, Signal::TERM);

    let status = exited_within(&mut child, LIMIT).await;
    assert!(gone_within(step, LIMIT).await, "the step {step} still runs");
    let status = status.expect("the agent exits");
    assert_eq!(status.code(), Some(1), "no node took the result: {status}");
}

#[tokio::test]
async fn sigterm_still_cancels_when_the_agents_stderr_is_closed() {
    let node = TestNode::start_with(vec![sh(SLEEPER), echo("never")], |job| {
        job.kill_grace_secs = 1;
    })
    .await;
    let mut child = node
        .agent_command()
        .env("OTTO_LOG", "info")
        .spawn()
        .expect("spawn otto-agent");
    let agent = child.id().expect("agent pid");
    let step = running_step(&node).await;

    // Logging to a stderr nobody reads must not get in the way of stopping.
    drop(child.stderr.take());
    send_signal(agent, Signal::TERM);

    let status = exited_within(&mut child, LIMIT).await;
    assert!(gone_within(step, LIMIT).await, "the step {step} still runs");
    let status = status.expect("the agent exits");
    assert!(status.success(), "{status}");
    let result = node.result();
    assert_eq!(result.outcome, Outcome::Failure);
    assert_eq!(result.failed_step, Some(0));
    assert_eq!(result.error.as_deref(), Some("cancelled"));
    assert!(!node.output().iter().any(|line| line == "never"));
}

#[tokio::test]
async fn the_agent_stops_its_step_and_exits_when_the_node_socket_goes_away() {
    let mut node = TestNode::start(vec![sh(SLEEPER)]).await;
    let mut child = node.spawn_agent();
    let mut stderr = child.stderr.take().expect("stderr");
    let log = tokio::spawn(async move {
        let mut text = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
        text
    });
    let step = running_step(&node).await;

    node.stop_serving().await;

    let status = exited_within(&mut child, LIMIT).await;
    assert!(gone_within(step, LIMIT).await, "the step {step} still runs");
    let status = status.expect("the agent exits by itself");
    let log = log.await.expect("stderr");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("cannot connect to"), "{log}");
    assert!(node.seen().result.is_none());
}

/// Waits until the step runs and the node has heard so; returns the step's pid.
async fn running_step(node: &TestNode) -> u32 {
    let pid = read_pid(&node.workspace().join("step.pid")).await;
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !node
        .seen()
        .events
        .iter()
        .any(|e| matches!(e.body, EventBody::StepStarted(_)))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node never heard that the step started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pid
}
