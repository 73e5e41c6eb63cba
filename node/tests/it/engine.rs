//! The engine runs whole pipelines with real agents: DAG order, artifacts between stages,
//! failures, conditions, secrets masked in the stored logs, caches between runs, stages
//! owned elsewhere, timeouts and cancelling.

use crate::engine_support::{TestNode, on_branch, plan, states};
use base64::Engine as _;
use otto_node::engine::{EngineEvent, Notice, RemoteEnd, RemoteStage};
use otto_node::store::{AttemptState, RunId, RunState, StageState, Stream};
use otto_pipeline::Facts;
use otto_protocol::{Envelope, KeyBytes, Kind, NodeIdentity, Outcome, Receipt};
use otto_trust::{NodeKey, Unverified};

const GREEN: &str = r#"
stage('Build') {
  steps {
    sh 'mkdir -p out && echo "hello from build" > out/greeting.txt'
    archive path: 'out/', name: 'site'
  }
}
parallel {
  stage('Unit') {
    steps {
      unarchive name: 'site'
      sh 'cat out/greeting.txt && cat input.txt'
    }
  }
  stage('Lint') { steps { echo 'lint ok' } }
}
stage('Package') {
  steps {
    dir 'pkg' { unarchive name: 'site' }
    sh 'test -f pkg/out/greeting.txt && echo packaged'
  }
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_runs_green_end_to_end() {
    let mut node = TestNode::start();
    let run = node
        .submit(GREEN, Facts::default(), &[("input.txt", "from the source")])
        .await;
    assert_eq!(node.wait_run(run).await, RunState::Succeeded);

    let stages = node.store.stages(&run).expect("stages");
    assert!(
        stages.iter().all(|s| s.state == StageState::Succeeded),
        "{:?}",
        states(&stages)
    );
    for stage in &stages {
        let attempts: Vec<AttemptState> = stage.attempts.iter().map(|a| a.state).collect();
        assert_eq!(attempts, [AttemptState::Succeeded], "{}", stage.id);
    }
    let unit = node.log_text(run, "Unit");
    assert!(unit.contains("hello from build"), "{unit}");
    assert!(unit.contains("from the source"), "{unit}");
    assert!(node.log_text(run, "Package").contains("packaged"));
    assert!(
        node.log_text(run, "Build")
            .contains("artifact 'site' stored as sha256:")
    );
    // The parallel stages both started after Build ended and before Package started.
    let build = &stages[0].attempts[0];
    let package = &stages[3].attempts[0];
    for stage in &stages[1..3] {
        let attempt = &stage.attempts[0];
        assert!(attempt.started_at >= build.finished_at.expect("ended"));
        assert!(package.started_at >= attempt.finished_at.expect("ended"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_fails_the_run_with_its_output_in_the_log() {
    let mut node = TestNode::start();
    let text = r#"
stage('Test') {
  steps {
    sh 'echo "checking things"; echo "something broke" >&2; exit 3'
    sh 'echo never'
  }
  notify { failure { echo 'the tests failed' } }
}
stage('Deploy') { steps { sh 'echo deploying' } }
"#;
    let run = node.submit(text, Facts::default(), &[]).await;
    assert_eq!(node.wait_run(run).await, RunState::Failed);

    let test = node.stage(run, "Test");
    assert_eq!(test.state, StageState::Failed);
    let attempt = &test.attempts[0];
    assert_eq!(attempt.state, AttemptState::Failed);
    assert_eq!(attempt.exit_code, Some(3));
    assert_eq!(attempt.failed_step, Some(0));
    let log = node.log(run, "Test");
    assert!(
        log.iter()
            .any(|l| l.text == "checking things" && l.stream == Stream::Stdout)
    );
    assert!(
        log.iter()
            .any(|l| l.text == "something broke" && l.stream == Stream::Stderr)
    );
    assert!(!log.iter().any(|l| l.text == "never"));
    assert!(
        log.iter().any(|l| l.text == "the tests failed"),
        "notify ran"
    );

    let deploy = node.stage(run, "Deploy");
    assert_eq!(deploy.state, StageState::Cancelled);
    assert!(deploy.attempts.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_whose_when_fails_is_skipped_and_the_run_succeeds() {
    let mut node = TestNode::start();
    let text = "
stage('Build') { steps { echo 'built' } }
stage('Docs') { when { branch == 'main' } steps { echo 'docs' } }
stage('Unknown') { when { tag == 'v1' } steps { echo 'tagged' } }
stage('After') { steps { echo 'after' } }
";
    let run = node.submit(text, on_branch("dev"), &[]).await;
    assert_eq!(node.wait_run(run).await, RunState::Succeeded);
    let stages = states(&node.store.stages(&run).expect("stages"));
    assert_eq!(stages["Build"], StageState::Succeeded);
    assert_eq!(stages["Docs"], StageState::Skipped);
    assert_eq!(stages["Unknown"], StageState::Skipped);
    assert_eq!(stages["After"], StageState::Succeeded);
    let unknown = node.stage(run, "Unknown");
    assert!(
        unknown
            .note
            .as_deref()
            .is_some_and(|n| n.contains("unknown")),
        "{:?}",
        unknown.note
    );
    assert!(node.stage(run, "Docs").attempts.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_enter_condition_stops_the_run() {
    let mut node = TestNode::start();
    let text = "
stage('Build') { steps { echo 'built' } }
stage('Deploy') { gates { enter { branch == 'main' } } steps { echo 'deployed' } }
stage('Announce') { steps { echo 'announced' } }
";
    let run = node.submit(text, on_branch("dev"), &[]).await;
    assert_eq!(node.wait_run(run).await, RunState::Failed);
    let deploy = node.stage(run, "Deploy");
    assert_eq!(deploy.state, StageState::Failed);
    assert_eq!(
        deploy.note.as_deref(),
        Some("enter gate failed: branch == 'main'")
    );
    assert!(deploy.attempts.is_empty());
    assert_eq!(node.stage(run, "Announce").state, StageState::Cancelled);
    assert_eq!(node.stage(run, "Build").state, StageState::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_masked_in_the_stored_logs_in_every_form() {
    let mut node = TestNode::start();
    let secret = "s3cr3t/p@ss w0rd!";
    node.set_secret("TOKEN", secret);
    let text = r#"
environments { prod { settings { REGION = 'eu-1' } secrets { TOKEN } } }
stage('Deploy') {
  environment -> prod
  steps {
    sh '''
      echo "plain: $(cat "$OTTO_SECRETS_DIR/TOKEN")"
      echo "base64: $(base64 < "$OTTO_SECRETS_DIR/TOKEN")"
      echo "url: $(sed -e 's/%/%25/g' -e 's/ /%20/g' -e 's/@/%40/g' -e 's|/|%2F|g' -e 's/!/%21/g' "$OTTO_SECRETS_DIR/TOKEN")"
      echo "region: $REGION"
      '''
  }
}
"#;
    let run = node.submit(text, Facts::default(), &[]).await;
    assert_eq!(node.wait_run(run).await, RunState::Succeeded);
    let log = node.log_text(run, "Deploy");
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    let url = "s3cr3t%2Fp%40ss%20w0rd%21";
    for form in [secret, b64.as_str(), url] {
        assert!(!log.contains(form), "{form} leaked:\n{log}");
    }
    for line in ["plain: ***", "base64: ***", "url: ***", "region: eu-1"] {
        assert!(log.contains(line), "no '{line}' in:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_fails_the_stage_and_names_it() {
    let mut node = TestNode::start();
    let text = "
environments { prod { secrets { NOT_SET } } }
stage('Deploy') { environment -> prod  steps { echo 'x' } }
";
    let run = node.submit(text, Facts::default(), &[]).await;
    assert_eq!(node.wait_run(run).await, RunState::Failed);
    let error = node.stage(run, "Deploy").attempts[0].error.clone();
    assert!(error.is_some_and(|e| e.contains("NOT_SET")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_restores_the_cache_the_first_saved() {
    let mut node = TestNode::start();
    let text = "
stage('Build') {
  cache { deps { paths = ['deps/']  key = ['deps.lock'] } }
  steps {
    sh 'if [ -d deps ]; then echo reused; else mkdir deps && echo fetched > deps/lib; fi'
    sh 'cat deps/lib'
  }
}
";
    let files = [("deps.lock", "lib 1.0")];
    let first = node.submit(text, Facts::default(), &files).await;
    assert_eq!(node.wait_run(first).await, RunState::Succeeded);
    let attempt = node.stage(first, "Build").attempts[0].clone();
    assert_eq!(attempt.cache_misses, ["deps"]);
    assert!(attempt.cache_hits.is_empty());
    assert!(node.log_text(first, "Build").contains("fetched"));

    let second = node.submit(text, Facts::default(), &files).await;
    assert_eq!(node.wait_run(second).await, RunState::Succeeded);
    let attempt = node.stage(second, "Build").attempts[0].clone();
    assert_eq!(attempt.cache_hits, ["deps"]);
    assert!(attempt.cache_misses.is_empty());
    assert!(node.log_text(second, "Build").contains("reused"));

    // Other key files make another cache.
    let third = node
        .submit(text, Facts::default(), &[("deps.lock", "lib 2.0")])
        .await;
    assert_eq!(node.wait_run(third).await, RunState::Succeeded);
    assert_eq!(
        node.stage(third, "Build").attempts[0].cache_misses,
        ["deps"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_orgs_run_neither_reads_nor_poisons_the_owners_cache_of_the_same_pipeline() {
    // Peer orgs name their pipeline, stage and cache exactly as the owner's: their stage
    // must start without the owner's cache (nor another peer's), and what they save must
    // never reach the owner's runs.
    let mut node = TestNode::start_with(vec!["ops".into()]);
    let text = "
stage('Build') {
  owner = 'ops'
  cache { deps { paths = ['deps/'] } }
  steps {
    sh 'cat deps/secret 2>/dev/null || echo no-cache'
    sh 'mkdir -p deps && echo \"$CACHE_TEXT\" > deps/secret'
  }
}
";
    let owner_text = text.replace("$CACHE_TEXT", "OWNER-CACHE-BYTES");
    let own = node.submit(&owner_text, Facts::default(), &[]).await;
    assert_eq!(node.wait_run(own).await, RunState::Succeeded);
    assert!(node.log_text(own, "Build").contains("no-cache"));

    for started_by in ["node:evil-1@acme-dev", "node:evil-2@acme-qa"] {
        let guest_text = text.replace("$CACHE_TEXT", "POISONED-BY-A-PEER");
        let plan = plan(&guest_text, &Facts::default());
        let guest = node.create_run_by(&plan, &guest_text, &[], started_by);
        node.engine
            .start_offered(guest, "Build".into(), 1, started_by.into())
            .await
            .unwrap();
        assert_eq!(node.wait_run(guest).await, RunState::Succeeded);
        let log = node.log_text(guest, "Build");
        assert!(!log.contains("OWNER-CACHE-BYTES"), "{log}");
        assert!(log.contains("no-cache"), "{log}");
    }

    let again = node.submit(&owner_text, Facts::default(), &[]).await;
    assert_eq!(node.wait_run(again).await, RunState::Succeeded);
    let log = node.log_text(again, "Build");
    assert!(log.contains("OWNER-CACHE-BYTES"), "{log}");
    assert!(!log.contains("POISONED"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_owned_elsewhere_is_handed_off_and_its_receipt_moves_the_run_on() {
    let mut node = TestNode::start_with(vec!["dev".into()]);
    let text = "
stage('Build') { owner = 'dev'  steps { sh 'mkdir -p out && echo built > out/app' archive path: 'out/', name: 'app' } }
stage('Deploy') { owner = 'ops'  steps { sh 'touch should-not-exist' } }
stage('Verify') { owner = 'dev'  steps { echo 'verified' } }
";
    let run = node.submit(text, Facts::default(), &[]).await;
    node.wait_for("the hand-off of Deploy", |e| {
        matches!(e, EngineEvent::HandOff { run: r, stage, owner } if *r == run && stage == "Deploy" && owner == "ops")
    })
    .await;
    node.wait_for(
        "the run to wait",
        |e| matches!(e, EngineEvent::Run { run: r, state: RunState::Waiting } if *r == run),
    )
    .await;
    assert_eq!(node.stage(run, "Build").state, StageState::Succeeded);
    let deploy = node.stage(run, "Deploy");
    assert_eq!(deploy.state, StageState::HandedOff);
    assert_eq!(deploy.note.as_deref(), Some("to be offered to ops"));
    assert!(deploy.attempts.is_empty());
    assert!(!node.path("work").join("should-not-exist").exists());
    assert_eq!(node.stage(run, "Verify").state, StageState::Pending);

    // What the exchange needs is in the store, and it is told on its own channel: Build's
    // receipt, then the intent to offer Deploy to ops.
    let intents = node.store.handoff_intents().unwrap();
    assert_eq!(intents.len(), 1, "{intents:?}");
    assert_eq!(
        (intents[0].stage.as_str(), intents[0].owner.as_str()),
        ("Deploy", "ops")
    );
    let mut notices = node.engine.notices().expect("the notices are taken once");
    assert!(node.engine.notices().is_none());
    let first = notices.recv().await;
    assert!(
        matches!(&first, Some(Notice::Receipt { run: r, stage, attempt: 1, .. }) if *r == run && stage == "Build"),
        "{first:?}"
    );
    assert_eq!(
        notices.recv().await,
        Some(Notice::HandOff {
            run,
            stage: "Deploy".into()
        })
    );
    assert!(!notices.missed());

    // The engine signed Build's receipt with the node key.
    let build = receipt(&node, run, "Build");
    assert_eq!(build.0.outcome, Outcome::Success);
    assert_eq!(build.0.node.name, "test-1");
    assert_eq!(build.0.outputs.len(), 1);
    assert_eq!(build.0.outputs[0].name, "app");
    assert!(build.0.upstream.is_empty());
    let dev_key = NodeKey::from_seed(&[7; 32]).public_key();
    assert!(Unverified::new(build.1.clone()).verify(&dev_key).is_ok());

    // Ops runs Deploy and its receipt comes back: Deploy succeeds here, and Verify waits
    // for ops, which ran the stage Verify needs, to offer it.
    let ops = NodeKey::from_seed(&[9; 32]);
    let deploy_receipt = Receipt {
        run: run.to_string(),
        plan_digest: node
            .store
            .run(&run)
            .unwrap()
            .unwrap()
            .plan_digest
            .to_string(),
        stage: "Deploy".into(),
        attempt: 1,
        outcome: Outcome::Success,
        outputs: vec![],
        log_digest: otto_protocol::Digest([0; 32]),
        started_at: 1,
        finished_at: 2,
        started_at_ms: None,
        finished_at_ms: None,
        upstream: vec![],
        node: NodeIdentity {
            name: "ops-1".into(),
            org: "acme-ops".into(),
            key: KeyBytes(*ops.public_key().as_bytes()),
        },
    };
    let envelope = otto_trust::dsse::sign(
        Kind::Receipt.payload_type(),
        otto_protocol::encode_payload(&deploy_receipt),
        &ops,
    )
    .unwrap();
    node.store
        .put_receipt(
            &run,
            "Deploy",
            1,
            &otto_protocol::encode_envelope(&envelope),
        )
        .unwrap();
    node.engine
        .remote_stage(RemoteStage {
            run,
            stage: "Deploy".into(),
            ended: Some(RemoteEnd {
                state: StageState::Succeeded,
                started_at: 1000,
                finished_at: 2000,
                artifacts: vec![],
                node: None,
            }),
            note: Some("ran on ops-1 (acme-ops)".into()),
            log: vec!["deployed".into()],
            attempt: 1,
            numbered: None,
            hold_jumps: false,
        })
        .await
        .unwrap();
    let deploy = node.stage(run, "Deploy");
    assert_eq!(deploy.state, StageState::Succeeded);
    assert_eq!(deploy.attempts.len(), 1);
    assert!(node.log_text(run, "Deploy").contains("deployed"));
    node.wait_for("Verify to wait for ops", |e| {
        matches!(e, EngineEvent::Stage { run: r, stage, state: StageState::HandedOff, .. } if *r == run && stage == "Verify")
    })
    .await;
    assert_eq!(
        node.stage(run, "Verify").note.as_deref(),
        Some("ops-1 moves it on to dev")
    );

    // Ops offers Verify back; it runs here, and its receipt names both before it.
    node.engine
        .start_offered(run, "Verify".into(), 1, "node:ops-1@ops".into())
        .await
        .unwrap();
    assert_eq!(node.wait_run(run).await, RunState::Succeeded);
    let verify = receipt(&node, run, "Verify");
    assert_eq!(verify.0.upstream.len(), 2);
}

fn receipt(node: &TestNode, run: RunId, stage: &str) -> (Receipt, Envelope) {
    let bytes = node
        .store
        .receipt(&run, stage, 1)
        .unwrap()
        .unwrap_or_else(|| panic!("no receipt of {stage}"));
    let envelope = otto_protocol::decode_envelope(&bytes).unwrap();
    (envelope.payload_as::<Receipt>().unwrap(), envelope)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_that_overstays_its_timeout_fails() {
    let mut node = TestNode::start();
    let text = "stage('Slow') { timeout = '1s'  steps { sh 'sleep 30' } }";
    let run = node.submit(text, Facts::default(), &[]).await;
    assert_eq!(node.wait_run(run).await, RunState::Failed);
    let error = node.stage(run, "Slow").attempts[0].error.clone();
    assert!(error.is_some_and(|e| e.contains("timed out")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_stops_its_attempt() {
    let mut node = TestNode::start();
    let text = "
stage('Slow') { steps { sh 'echo started; sleep 30' } }
stage('Later') { steps { echo 'later' } }
";
    let run = node.submit(text, Facts::default(), &[]).await;
    node.wait_for(
        "the step to start",
        |e| matches!(e, EngineEvent::StepStarted { run: r, .. } if *r == run),
    )
    .await;
    node.engine
        .cancel(run, "alice".into())
        .await
        .expect("cancel");
    assert_eq!(node.wait_run(run).await, RunState::Cancelled);
    let slow = node.stage(run, "Slow");
    assert_eq!(slow.state, StageState::Cancelled);
    assert_eq!(slow.attempts[0].state, AttemptState::Cancelled);
    let later = node.stage(run, "Later");
    assert_eq!(later.state, StageState::Cancelled);
    assert_eq!(
        later.note.as_deref(),
        Some("not run: the run was cancelled by alice"),
        "who cancelled is recorded"
    );
    assert!(matches!(
        node.engine.cancel(run, "alice".into()).await,
        Err(otto_node::engine::EngineError::Finished(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_runs_are_refused() {
    let node = TestNode::start();
    let id = RunId::new(1, [0; 10]);
    assert!(matches!(
        node.engine.submit(id).await,
        Err(otto_node::engine::EngineError::UnknownRun(_))
    ));
}

/// The window of each stage's steps, from the `start`/`end` nanosecond clock lines that
/// [`TIMED`] prints, and the most windows open at one moment.
fn most_at_once(node: &TestNode, run: RunId, stages: &[&str]) -> usize {
    let clock = |log: &str, word: &str| -> u128 {
        log.lines()
            .find_map(|l| l.strip_prefix(word)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {word} line in {log}"))
    };
    let windows: Vec<(u128, u128)> = stages
        .iter()
        .map(|s| {
            let log = node.log_text(run, s);
            (clock(&log, "start "), clock(&log, "end "))
        })
        .collect();
    windows
        .iter()
        .map(|(start, _)| {
            windows
                .iter()
                .filter(|(s, e)| s <= start && start < e)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Steps that print when they start and end, and take a while in between.
const TIMED: &str = r#"sh 'echo "start $(date +%s%N)"; sleep 0.3; echo "end $(date +%s%N)"'"#;

/// Issue #12, row 11: `[agent] slots` caps the agents of the whole node; the stages that
/// find no free slot wait, queued with a note, and all run in the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_runs_no_more_agents_than_its_slots_and_queues_the_rest() {
    let mut node = TestNode::start_with_slots(Vec::new(), 1);
    let ottofile = format!(
        "each('a', 'b', 'c', 'd') {{ stage {{ name = concat('Copy ', it)  steps {{ {TIMED} }} }} }}\n"
    );
    let run = node.submit(&ottofile, Facts::default(), &[]).await;
    let queued = node
        .wait_for("a queued stage", |e| {
            matches!(e, EngineEvent::Stage { state: StageState::Pending, note: Some(note), .. }
                if note.starts_with("queued: all 1 agent slots of this node are busy"))
        })
        .await;
    assert!(matches!(queued, EngineEvent::Stage { run: r, .. } if r == run));
    assert_eq!(node.wait_run(run).await, RunState::Succeeded);
    let stages = ["Copy a", "Copy b", "Copy c", "Copy d"];
    assert_eq!(most_at_once(&node, run, &stages), 1);
}

/// `runtime { from }` on one node: the later stages start from a copy of the workspace as
/// the earlier stage's steps left it (not as its exit gate's poll left it afterwards),
/// each in a workspace of its own, without the earlier stage's cache paths (a stage that
/// wants them uses the cache), and the workspace is never archived into a blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_is_handed_on_as_the_steps_left_it_without_its_caches() {
    let mut node = TestNode::start();
    let text = "
stage('Build') {
  cache { dl { paths = ['.dl/']  key = ['deps.lock'] } }
  steps { sh 'mkdir -p .dl out && echo downloaded > .dl/pkg && echo built > out/app && touch -d @1600000000 out/app' }
  feedback { poll { command = 'echo changed-by-the-poll > out/app'  every = '1s'  timeout = '1m' } }
}
stage('Lint') {
  runtime { from 'Build' }
  steps { sh 'cat out/app && test ! -e .dl && stat -c %Y out/app | grep -qx 1600000000 && echo linted > out/app' }
}
stage('Test') {
  runtime { from 'Build' }
  cache { use dl }
  steps { sh 'cat out/app && cat .dl/pkg' }
}
";
    let run = node
        .submit(text, Facts::default(), &[("deps.lock", "pkg 1")])
        .await;
    let state = node.wait_run(run).await;
    let logs: Vec<String> = ["Build", "Lint", "Test"]
        .iter()
        .map(|s| node.log_text(run, s))
        .collect();
    assert_eq!(state, RunState::Succeeded, "{logs:#?}");
    let build = node.log_text(run, "Build");
    assert!(
        build.contains("workspace of attempt 1 handed on (") && !build.contains("saved cache '("),
        "{build}"
    );
    let lint = node.log_text(run, "Lint");
    assert!(
        lint.contains("started from the workspace handed on"),
        "{lint}"
    );
    assert!(lint.lines().any(|l| l == "built"), "{lint}");
    let test = node.log_text(run, "Test");
    // Lint's change stayed in Lint's workspace; the cache came from the cache.
    assert!(test.lines().any(|l| l == "built"), "{test}");
    assert!(test.lines().any(|l| l == "downloaded"), "{test}");
    assert_eq!(node.stage(run, "Test").attempts[0].cache_hits, ["dl"]);
}

/// A workspace whose steps left a symbolic link leading out of it is not handed on: the
/// later stage starts from the source snapshot and never reads what the link names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_with_a_link_leading_out_is_not_handed_on() {
    let mut node = TestNode::start();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "the node's secret").unwrap();
    let text = format!(
        "
stage('Build') {{ steps {{ sh 'echo built > app && ln -s {} leak && mkfifo pipe' }} }}
stage('Test') {{
  runtime {{ from 'Build' }}
  steps {{ sh 'cat input.txt; test ! -e app; test ! -e pipe; cat leak || echo no leak' }}
}}
",
        outside.path().join("secret").display()
    );
    let run = node
        .submit(&text, Facts::default(), &[("input.txt", "from the source")])
        .await;
    assert_eq!(node.wait_run(run).await, RunState::Succeeded);
    let build = node.log_text(run, "Build");
    assert!(
        build.contains("workspace not handed on: 'leak' is a symbolic link"),
        "{build}"
    );
    let test = node.log_text(run, "Test");
    assert!(
        test.contains("the workspace of Build is not available; starting from the source snapshot"),
        "{test}"
    );
    assert!(
        test.contains("from the source") && test.contains("no leak"),
        "{test}"
    );
    assert!(!test.contains("the node's secret"), "{test}");
}
