//! Gates with real agents: input (approve, refuse, time out), webhook (accepted once),
//! poll (passes when its command succeeds, times out when it never does).

use crate::engine_support::TestNode;
use otto_node::engine::{EngineError, EngineEvent};
use otto_node::store::{GateKind, GateState, RunState, StageState};
use otto_pipeline::Facts;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_gate_waits_for_an_approver() {
    let mut node = TestNode::start();
    let text = "
stage('Build') { steps { echo 'built' } }
stage('Deploy') {
  gates { enter { input 'Ship it?', approvers: ['alice', 'bob'] } }
  steps { echo 'shipped' }
}
";
    let run = node.submit(text, Facts::default(), &[]).await;
    node.wait_gate(run, "Deploy").await;
    assert_eq!(node.stage(run, "Deploy").state, StageState::WaitingGate);
    assert!(
        node.stage(run, "Deploy").attempts.is_empty(),
        "nothing runs while it waits"
    );
    node.wait_for(
        "the run to wait",
        |e| matches!(e, EngineEvent::Run { run: r, state: RunState::Waiting } if *r == run),
    )
    .await;

    let refused = node
        .engine
        .approve(run, "Deploy".into(), "mallory".into())
        .await;
    assert!(
        matches!(refused, Err(EngineError::NotApprover { .. })),
        "{refused:?}"
    );
    let unknown = node
        .engine
        .approve(run, "Build".into(), "alice".into())
        .await;
    assert!(
        matches!(unknown, Err(EngineError::UnknownGate)),
        "{unknown:?}"
    );

    node.engine
        .approve(run, "Deploy".into(), "bob".into())
        .await
        .expect("bob may approve");
    assert_eq!(node.wait_run(run).await, RunState::Succeeded);
    let gates = node.store.gates(&run).expect("gates");
    assert_eq!(gates.len(), 1);
    assert_eq!(gates[0].kind, GateKind::Input);
    assert_eq!(gates[0].state, GateState::Passed);
    assert_eq!(gates[0].approved_by.as_deref(), Some("bob"));
    assert!(node.log_text(run, "Deploy").contains("shipped"));

    let again = node
        .engine
        .approve(run, "Deploy".into(), "alice".into())
        .await;
    assert!(
        matches!(again, Err(EngineError::GateNotWaiting)),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_gate_times_out_cleanly() {
    let mut node = TestNode::start();
    let text = "
stage('Deploy') {
  gates { enter { input 'Ship it?', timeout: '1s' } }
  steps { sh 'touch should-not-run' }
}
";
    let run = node.submit(text, Facts::default(), &[]).await;
    assert_eq!(node.wait_run(run).await, RunState::Failed);
    let gates = node.store.gates(&run).expect("gates");
    assert_eq!(gates[0].state, GateState::TimedOut);
    let deploy = node.stage(run, "Deploy");
    assert_eq!(deploy.state, StageState::Failed);
    assert!(deploy.attempts.is_empty());
    assert!(
        deploy
            .note
            .as_deref()
            .is_some_and(|n| n.contains("timed out after 1s")),
        "{:?}",
        deploy.note
    );
    let late = node
        .engine
        .approve(run, "Deploy".into(), "alice".into())
        .await;
    assert!(matches!(late, Err(EngineError::GateNotWaiting)), "{late:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_gate_accepts_its_callback_once() {
    let mut node = TestNode::start();
    let text = "
stage('Deploy') {
  gates { exit { webhook { description = 'health check calls back' } } }
  steps { echo 'deployed' }
}
stage('Announce') { steps { echo 'announced' } }
";
    let run = node.submit(text, Facts::default(), &[]).await;
    let url = node
        .wait_gate(run, "Deploy")
        .await
        .expect("the gate shows its URL");
    let token = url
        .strip_prefix("https://127.0.0.1:8443/hooks/")
        .unwrap_or_else(|| panic!("unexpected URL {url}"))
        .to_owned();
    assert!(
        node.log_text(run, "Deploy").contains(&url),
        "the URL is in the log"
    );
    assert_eq!(node.stage(run, "Announce").state, StageState::Pending);

    let wrong = node.engine.webhook("0".repeat(64)).await;
    assert!(matches!(wrong, Err(EngineError::UnknownGate)), "{wrong:?}");
    let junk = node.engine.webhook("../etc".into()).await;
    assert!(matches!(junk, Err(EngineError::UnknownGate)), "{junk:?}");

    node.engine.webhook(token.clone()).await.expect("callback");
    let again = node.engine.webhook(token).await;
    assert!(
        matches!(again, Err(EngineError::GateNotWaiting)),
        "{again:?}"
    );
    assert_eq!(node.wait_run(run).await, RunState::Succeeded);
    let gate = &node.store.gates(&run).expect("gates")[0];
    assert_eq!(gate.state, GateState::Passed);
    assert!(gate.token_hash.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_gate_passes_once_its_command_succeeds() {
    let mut node = TestNode::start();
    let flag = node.path("flag");
    let text = format!(
        "
stage('Deploy') {{
  gates {{ exit {{ poll {{ command = 'test -f {}'  every = '1s'  timeout = '5m' }} }} }}
  steps {{ echo 'deployed' }}
}}
",
        flag.display()
    );
    let run = node.submit(&text, Facts::default(), &[]).await;
    node.wait_gate(run, "Deploy").await;
    std::fs::write(&flag, "up").expect("flag");
    assert_eq!(node.wait_run(run).await, RunState::Succeeded);
    let gate = &node.store.gates(&run).expect("gates")[0];
    assert_eq!(gate.state, GateState::Passed);
    assert!(gate.polls >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_gate_that_never_passes_times_out() {
    let mut node = TestNode::start();
    let text = "
stage('Deploy') {
  gates { exit { poll { command = 'exit 1'  every = '1s'  timeout = '2s' } } }
  steps { echo 'deployed' }
}
";
    let run = node.submit(text, Facts::default(), &[]).await;
    assert_eq!(node.wait_run(run).await, RunState::Failed);
    let gate = &node.store.gates(&run).expect("gates")[0];
    assert_eq!(gate.state, GateState::TimedOut);
    let deploy = node.stage(run, "Deploy");
    assert_eq!(deploy.state, StageState::Failed);
    assert!(
        deploy
            .note
            .as_deref()
            .is_some_and(|n| n.contains("timed out"))
    );
}
