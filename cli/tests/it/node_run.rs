//! `otto run` against a real node: a pipeline green end to end, a failing step, a skipped
//! stage, secrets masked in the logs.

use std::fs;

use crate::node_support::{Node, project, stage_of, text};

const GREEN: &str = r#"
pipeline {
  name = 'demo'
  stage('Build') {
    steps {
      echo 'building'
      sh '''
        mkdir -p out
        echo "payload from build" > out/result.txt
      '''
      // The snapshot keeps file times: a zip (as `pip wheel` makes) of a source file works,
      // which it does not for a file dated 1970.
      sh '''
        test "$(stat -c %Y Ottofile)" -gt 315532800
        python3 -c 'import zipfile; zipfile.ZipFile("out/src.zip", "w").write("Ottofile")'
      '''
      archive path: 'out', name: 'result'
    }
  }
  stage('Test') {
    steps {
      unarchive name: 'result'
      sh 'cat out/result.txt'
      sh 'mkdir -p t && touch t/ok'
      archive path: 't', name: 'tested'
    }
  }
  stage('Docs') {
    when { branch == 'main' }
    steps { echo 'docs' }
  }
  // Skipped Docs must not release Publish before Test is done: Publish needs Test's
  // artifact, which exists only once Test has finished.
  stage('Publish') {
    steps {
      unarchive name: 'tested'
      sh 'test -f t/ok'
    }
  }
}
"#;

#[test]
fn a_pipeline_runs_green_end_to_end_and_a_when_skips() {
    let node = Node::start_new();
    let dir = project(&[("Ottofile", GREEN), ("target/big.bin", "ignored")]);
    let out = node.otto(&["run", dir.path().to_str().unwrap(), "--branch", "dev"]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        text(&out.stderr),
        node.log()
    );
    assert!(stdout.contains("run "), "{stdout}");
    assert!(stdout.contains("succeeded"), "{stdout}");
    let run = stdout
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .to_owned();

    let status = node.status(&run);
    assert_eq!(status["run"]["state"], "succeeded");
    assert_eq!(status["run"]["pipeline"], "demo");
    assert_eq!(status["run"]["facts"]["branch"], "dev");
    assert_eq!(stage_of(&status, "Build").unwrap()["state"], "succeeded");
    assert_eq!(stage_of(&status, "Test").unwrap()["state"], "succeeded");
    let docs = stage_of(&status, "Docs").unwrap();
    assert_eq!(docs["state"], "skipped");
    assert_eq!(docs["when"]["result"], "fail");
    assert_eq!(stage_of(&status, "Publish").unwrap()["state"], "succeeded");

    let human = node.ok(&["status", &run]);
    let docs_line = human
        .lines()
        .find(|l| l.contains("Docs"))
        .unwrap_or_default();
    assert!(
        docs_line.contains("skipped") && docs_line.contains("branch == 'main'"),
        "{human}"
    );

    let logs = node.ok(&["logs", &run, "Test"]);
    assert!(logs.contains("payload from build"), "{logs}");
    let all = node.ok(&["logs", &run]);
    assert!(all.contains("[Build] building"), "{all}");

    let list = node.ok(&["status"]);
    assert!(list.contains(&run) && list.contains("demo"), "{list}");
}

#[test]
fn a_failing_step_fails_the_run_and_its_output_is_in_the_logs() {
    let node = Node::start_new();
    let dir = project(&[(
        "Ottofile",
        "stage('Build') { steps { sh 'echo about to fail; exit 3' } }\n\
         stage('Deploy') { steps { echo 'never' } }\n",
    )]);
    let out = node.otto(&["run", dir.path().to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("about to fail"),
        "the tail of the failed stage: {stdout}"
    );
    assert!(stdout.contains("failed"), "{stdout}");
    let run = stdout
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    let logs = node.ok(&["logs", &run, "Build"]);
    assert!(logs.contains("about to fail"), "{logs}");
    let status = node.status(&run);
    assert_eq!(status["run"]["state"], "failed");
    let build = stage_of(&status, "Build").unwrap();
    assert_eq!(build["state"], "failed");
    assert_eq!(build["attempts"][0]["exit_code"], 3);
    assert_ne!(stage_of(&status, "Deploy").unwrap()["state"], "succeeded");
}

#[test]
fn a_secret_printed_by_a_step_is_masked_in_the_logs() {
    let node = Node::start_new();
    let secret = "p@ss w/rd+s3cret";
    let set = node.otto_with_stdin(&["secrets", "set", "DEPLOY_TOKEN"], Some(secret.as_bytes()));
    assert!(set.status.success(), "{}", text(&set.stderr));
    let names = node.ok(&["secrets", "list"]);
    assert_eq!(names.trim(), "DEPLOY_TOKEN");

    let dir = project(&[(
        "Ottofile",
        r#"
environments { prod { secrets { DEPLOY_TOKEN } } }
stage('Deploy') {
  environment -> prod
  steps {
    sh '''
      v=$(cat "$OTTO_SECRETS_DIR/DEPLOY_TOKEN")
      echo "plain: $v"
      echo "base64: $(printf '%s' "$v" | base64)"
      echo "url: $(printf '%s' "$v" | od -An -tx1 | tr -d ' \n' | sed 's/\(..\)/%\1/g')"
    '''
  }
}
"#,
    )]);
    let out = node.otto(&["run", dir.path().to_str().unwrap(), "--env", "prod"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let run = text(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    let logs = node.ok(&["logs", &run, "Deploy"]);
    for prefix in ["plain: ", "base64: ", "url: "] {
        let line = logs
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} line in {logs}"));
        assert!(line.contains("***"), "{line}");
    }
    let base64 = "cEBzcyB3L3JkK3MzY3JldA==";
    let url = "%70%40%73%73%20%77%2f%72%64%2b%73%33%63%72%65%74";
    for shown in [logs.clone(), node.ok(&["status", &run, "--json"])] {
        assert!(!shown.contains(secret), "{shown}");
        assert!(!shown.contains(base64), "{shown}");
        assert!(!shown.contains(url), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
    let rm = node.otto(&["secrets", "rm", "DEPLOY_TOKEN"]);
    assert!(rm.status.success());
    assert_eq!(node.ok(&["secrets", "list"]).trim(), "");
}

#[test]
fn the_local_example_runs_green_after_an_approval() {
    // Its Publish step writes to /tmp/otto-local-site, which the operator lets steps
    // write, as docs/operating.md says.
    let mut node = Node::init();
    let config = node.home.join("config.toml");
    let text = fs::read_to_string(&config)
        .unwrap()
        .replace("writable = []", "writable = [\"/tmp/otto-local-site\"]");
    fs::write(&config, text).unwrap();
    node.start();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/local");
    let run = node.ok(&["run", example, "--detach"]).trim().to_owned();
    node.wait_stage(&run, "Publish", "waiting_gate");
    node.ok(&["approve", &run, "Publish"]);
    let status = node.wait_final(&run);
    assert_eq!(
        status["run"]["state"],
        "succeeded",
        "{status}\n{}",
        node.log()
    );
    assert_eq!(status["run"]["pipeline"], "local-site");
    let logs = node.ok(&["logs", &run, "Publish"]);
    assert!(logs.contains("published"), "{logs}");
}

#[test]
fn otto_run_streams_step_output_and_status_exits_1_for_a_failed_run() {
    let node = Node::start_new();
    let dir = project(&[(
        "Ottofile",
        "stage('Build') { steps { sh 'echo compiling the thing' } }\n\
         stage('Test') { steps { sh 'echo testing; exit 4' } }\n",
    )]);
    let out = node.otto(&["run", dir.path().to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    // Each step's output, after its stage's name, while the run goes on.
    assert!(stdout.contains("[Build] compiling the thing"), "{stdout}");
    assert!(stdout.contains("[Test] testing"), "{stdout}");
    assert!(
        stdout.contains("--- Test failed; its log: otto logs"),
        "{stdout}"
    );
    let run = stdout
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap();

    // `otto status RUN` of a failed run prints it whole and exits 1, with --json too.
    let human = node.otto(&["status", run]);
    assert_eq!(human.status.code(), Some(1));
    assert!(
        text(&human.stdout).contains("failed"),
        "{}",
        text(&human.stdout)
    );
    assert_eq!(node.status(run)["run"]["state"], "failed");

    // --quiet shows the stages' progress, not the steps' output; the failed stage's tail
    // is shown at the end.
    let quiet = text(
        &node
            .otto(&["run", dir.path().to_str().unwrap(), "--quiet"])
            .stdout,
    );
    assert!(!quiet.contains("[Build] compiling"), "{quiet}");
    assert!(
        quiet.contains("--- Test failed; last lines of its log:"),
        "{quiet}"
    );
    assert!(quiet.contains("  testing"), "{quiet}");
}
