//! Concurrency groups with real agents (issue #14, item 4): a pipeline's group holds one
//! run at a time and queues the others in arrival order, across a restart; a stage's group
//! holds one running stage; `cancel_in_progress` cancels the one in progress in favour of
//! the newer run; a queued run can be cancelled; a full group refuses, never queues.

use std::time::{Duration, Instant};

use otto_node::engine::{EngineError, EngineEvent, MAX_GROUP_MEMBERS};
use otto_node::store::{AttemptState, GateState, RunId, RunState, StageState};
use otto_pipeline::Facts;

use crate::engine_support::{PATIENCE, TestNode, plan};

/// A pipeline in group `deploy` whose one stage waits for a person before it runs, so a
/// test holds a run in progress for as long as it likes.
const GROUPED: &str = "
concurrency { group = 'deploy' }
stage('Deploy') { gates { enter { input 'Ship it?' } }  steps { echo 'deployed' } }
";

/// Polls `check` until it holds, for at most [`PATIENCE`]: what the engine does after an
/// event (a queued run's note, say) is in the store a moment later.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn run_note(node: &TestNode, run: RunId) -> Option<String> {
    node.store.run(&run).expect("store").expect("run").note
}

fn run_state(node: &TestNode, run: RunId) -> RunState {
    node.store.run(&run).expect("store").expect("run").state
}

fn waiting_for(holder: RunId) -> Option<String> {
    Some(format!("waiting for run {holder} in group deploy"))
}

async fn approve(node: &mut TestNode, run: RunId) {
    node.wait_gate(run, "Deploy").await;
    node.engine
        .approve(run, "Deploy".into(), "alice".into())
        .await
        .expect("approve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_of_a_group_run_one_at_a_time_in_arrival_order_and_a_queued_one_can_be_cancelled() {
    let mut node = TestNode::start();
    let a = node.submit(GROUPED, Facts::default(), &[]).await;
    node.wait_gate(a, "Deploy").await;
    let b = node.submit(GROUPED, Facts::default(), &[]).await;
    let c = node.submit(GROUPED, Facts::default(), &[]).await;
    let d = node.submit(GROUPED, Facts::default(), &[]).await;
    for queued in [b, c, d] {
        assert_eq!(run_state(&node, queued), RunState::Queued);
        assert_eq!(run_note(&node, queued), waiting_for(a));
        let deploy = node.stage(queued, "Deploy");
        assert_eq!(
            deploy.state,
            StageState::Pending,
            "nothing of a queued run starts"
        );
        assert!(deploy.attempts.is_empty());
        assert!(node.store.gates(&queued).expect("gates").is_empty());
    }

    // A queued run is cancelled where it waits, and leaves the queue.
    node.engine.cancel(c, "alice".into()).await.expect("cancel");
    assert_eq!(node.wait_run(c).await, RunState::Cancelled);
    assert_eq!(
        node.stage(c, "Deploy").note.as_deref(),
        Some("not run: the run was cancelled by alice")
    );

    // A ends: B, the next to arrive, takes the group; D waits for B now.
    node.engine
        .approve(a, "Deploy".into(), "alice".into())
        .await
        .expect("approve");
    assert_eq!(node.wait_run(a).await, RunState::Succeeded);
    node.wait_gate(b, "Deploy").await;
    assert_eq!(
        run_note(&node, b),
        None,
        "the queued note goes with the queue"
    );
    eventually("D to wait for B", || run_note(&node, d) == waiting_for(b)).await;
    assert_eq!(run_state(&node, d), RunState::Queued);

    node.engine
        .approve(b, "Deploy".into(), "alice".into())
        .await
        .expect("approve");
    assert_eq!(node.wait_run(b).await, RunState::Succeeded);
    approve(&mut node, d).await;
    assert_eq!(node.wait_run(d).await, RunState::Succeeded);

    // One after the other: each run's stage started after the one before it ended.
    let window = |run| {
        let stage = node.stage(run, "Deploy");
        let attempt = &stage.attempts[0];
        (attempt.started_at, attempt.finished_at.expect("ended"))
    };
    let (a_end, b, d) = (window(a).1, window(b), window(d));
    assert!(a_end <= b.0 && b.1 <= d.0, "{a_end} {b:?} {d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_run_cancels_the_one_in_progress_with_cancel_in_progress() {
    let mut node = TestNode::start();
    let text = "
concurrency { group = 'deploy'  cancel_in_progress = true }
stage('Deploy') { steps { sh 'echo started; sleep 60' } }
stage('Smoke') { steps { echo 'smoke' } }
";
    let first = node.submit(text, Facts::default(), &[]).await;
    node.wait_for(
        "the first run's step to start",
        |e| matches!(e, EngineEvent::StepStarted { run, .. } if *run == first),
    )
    .await;
    let second = node.submit(text, Facts::default(), &[]).await;
    assert_eq!(node.wait_run(first).await, RunState::Cancelled);
    let by = format!("concurrency group deploy in favour of run {second}");
    let deploy = node.stage(first, "Deploy");
    assert_eq!(deploy.state, StageState::Cancelled);
    assert_eq!(deploy.attempts[0].state, AttemptState::Cancelled);
    assert_eq!(deploy.note, Some(format!("cancelled by {by}")));
    assert_eq!(
        node.stage(first, "Smoke").note,
        Some(format!("not run: the run was cancelled by {by}"))
    );
    assert_eq!(run_note(&node, first), Some(format!("cancelled by {by}")));

    // The newer run starts once the first has let go of the group.
    node.wait_for(
        "the second run's step to start",
        |e| matches!(e, EngineEvent::StepStarted { run, .. } if *run == second),
    )
    .await;
    node.engine
        .cancel(second, "alice".into())
        .await
        .expect("cancel");
    assert_eq!(node.wait_run(second).await, RunState::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_group_holds_one_running_stage_across_runs() {
    let mut node = TestNode::start();
    let text = "
stage('Build') { steps { echo 'built' } }
stage('Deploy') {
  concurrency { group = 'production' }
  gates { exit { input 'Healthy?' } }
  steps { echo 'deployed' }
}
";
    let a = node.submit(text, Facts::default(), &[]).await;
    node.wait_gate(a, "Deploy").await;
    let b = node.submit(text, Facts::default(), &[]).await;
    let note = Some(format!("queued — waiting for run {a} in group production"));
    node.wait_for("B's Deploy to queue", |e| {
        matches!(e, EngineEvent::Stage { run, stage, state: StageState::Pending, note: n, .. }
            if *run == b && stage == "Deploy" && *n == note)
    })
    .await;
    assert_eq!(node.stage(b, "Build").state, StageState::Succeeded);
    let deploy = node.stage(b, "Deploy");
    assert_eq!(deploy.note, note);
    assert!(deploy.attempts.is_empty(), "a queued stage runs nothing");

    node.engine
        .approve(a, "Deploy".into(), "alice".into())
        .await
        .expect("approve");
    assert_eq!(node.wait_run(a).await, RunState::Succeeded);
    node.wait_gate(b, "Deploy").await;
    node.engine
        .approve(b, "Deploy".into(), "alice".into())
        .await
        .expect("approve");
    assert_eq!(node.wait_run(b).await, RunState::Succeeded);
    let (a, b) = (node.stage(a, "Deploy"), node.stage(b, "Deploy"));
    assert!(a.updated_at <= b.attempts[0].started_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_survives_a_restart_in_its_order() {
    let mut node = TestNode::start();
    let a = node.submit(GROUPED, Facts::default(), &[]).await;
    node.wait_gate(a, "Deploy").await;
    let b = node.submit(GROUPED, Facts::default(), &[]).await;
    let c = node.submit(GROUPED, Facts::default(), &[]).await;
    assert_eq!(run_note(&node, c), waiting_for(a));

    node.engine.shutdown().await;
    let _ = (&mut node.task).await;
    node.restart();
    eventually("A's gate to wait again", || {
        node.store
            .gates(&a)
            .expect("gates")
            .iter()
            .any(|g| g.state == GateState::Waiting)
    })
    .await;
    for queued in [b, c] {
        assert_eq!(run_state(&node, queued), RunState::Queued);
        assert_eq!(run_note(&node, queued), waiting_for(a));
    }
    node.engine
        .approve(a, "Deploy".into(), "alice".into())
        .await
        .expect("approve");
    assert_eq!(node.wait_run(a).await, RunState::Succeeded);
    // B arrived before C, and goes before it.
    node.wait_gate(b, "Deploy").await;
    eventually("C to wait for B", || run_note(&node, c) == waiting_for(b)).await;
    assert!(node.stage(c, "Deploy").attempts.is_empty());
    node.engine
        .approve(b, "Deploy".into(), "alice".into())
        .await
        .expect("approve");
    approve(&mut node, c).await;
    assert_eq!(node.wait_run(c).await, RunState::Succeeded);
}

/// 1,000 runs for one group do not make a queue of 1,000: past [`MAX_GROUP_MEMBERS`] a run
/// is refused with one clear error, recorded as failed with the reason, and nothing else of
/// the group changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_group_refuses_more_runs() {
    let mut node = TestNode::start();
    let plan = plan(GROUPED, &Facts::default());
    let first = node.create_run(&plan, GROUPED, &[]);
    node.engine.submit(first).await.expect("submit");
    node.wait_gate(first, "Deploy").await;
    for _ in 1..MAX_GROUP_MEMBERS {
        let run = node.create_run(&plan, GROUPED, &[]);
        node.engine.submit(run).await.expect("queued");
        assert_eq!(run_state(&node, run), RunState::Queued);
    }
    for _ in 0..3 {
        let refused = node.create_run(&plan, GROUPED, &[]);
        let error = node.engine.submit(refused).await.expect_err("refused");
        assert!(matches!(error, EngineError::GroupFull { .. }), "{error}");
        let text = error.to_string();
        assert_eq!(
            text,
            format!(
                "concurrency group deploy already has {MAX_GROUP_MEMBERS} runs running or waiting, as many as a group holds ({MAX_GROUP_MEMBERS}); run {refused} was refused, not queued"
            )
        );
        assert_eq!(run_state(&node, refused), RunState::Failed);
        assert_eq!(run_note(&node, refused).as_deref(), Some(text.as_str()));
        assert_eq!(
            node.stage(refused, "Deploy").note,
            Some(format!("not run: {text}"))
        );
    }
    let members = node
        .store
        .group_members(otto_node::store::GroupKind::Run, "deploy")
        .expect("members");
    assert_eq!(members.len(), MAX_GROUP_MEMBERS);
    assert_eq!(members[0].run, first);
}

/// A plan is checked when it is made, but a stored or offered plan is read again: a group
/// name no planner would have made (control characters, a megabyte) fails the stage, or
/// refuses the run, with a one-line reason that does not repeat the name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_group_name_in_a_plan_fails_with_one_line() {
    let mut node = TestNode::start();
    let text = "stage('Deploy') { concurrency { group = 'ok' }  steps { echo 'deployed' } }\n";
    let mut bad = plan(text, &Facts::default());
    bad.body.stages[0].concurrency.as_mut().unwrap().group = "deploy\u{1b}[2J".into();
    let run = node.create_run(&bad, text, &[]);
    node.engine.submit(run).await.expect("submit");
    assert_eq!(node.wait_run(run).await, RunState::Failed);
    let deploy = node.stage(run, "Deploy");
    assert_eq!(
        deploy.attempts[0].error.as_deref(),
        Some("bad concurrency group: a group name must not hold control characters (found U+001B)")
    );

    let mut huge = plan(text, &Facts::default());
    huge.body.concurrency = Some(otto_pipeline::plan::Concurrency {
        group: "x".repeat(1 << 20),
        cancel_in_progress: false,
    });
    let run = node.create_run(&huge, text, &[]);
    node.engine.submit(run).await.expect("submit");
    assert_eq!(node.wait_run(run).await, RunState::Failed);
    let note = run_note(&node, run).expect("a note");
    assert_eq!(
        note,
        "bad concurrency group: a group name has at most 128 bytes, this one has 1048576"
    );
}
