//! Repositories on a real node: `otto-node repo add|list|fetch|rm`, runs started by a push
//! at exactly that commit, forge webhooks (signed, refused when not), `otto hook install`.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::node_support::{Node, text};

pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_NAME", "Dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

/// A bare "remote" and a work tree cloned from it, outside the node's home.
pub(crate) struct Remote {
    dir: tempfile::TempDir,
}

impl Remote {
    pub(crate) fn new(ottofile: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("origin.git");
        let work = dir.path().join("work");
        git(
            dir.path(),
            &[
                "init",
                "--quiet",
                "--bare",
                "-b",
                "main",
                bare.to_str().unwrap(),
            ],
        );
        git(
            dir.path(),
            &["init", "--quiet", "-b", "main", work.to_str().unwrap()],
        );
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        let remote = Self { dir };
        remote.commit("Ottofile", ottofile, "pipeline");
        remote.commit("version.txt", "one\n", "one");
        remote.push("main");
        remote
    }

    pub(crate) fn bare(&self) -> std::path::PathBuf {
        self.dir.path().join("origin.git")
    }

    pub(crate) fn url(&self) -> String {
        format!("file://{}", self.bare().display())
    }

    pub(crate) fn work(&self) -> std::path::PathBuf {
        self.dir.path().join("work")
    }

    pub(crate) fn commit(&self, file: &str, content: &str, message: &str) -> String {
        std::fs::write(self.work().join(file), content).unwrap();
        git(&self.work(), &["add", file]);
        git(&self.work(), &["commit", "--quiet", "-m", message]);
        git(&self.work(), &["rev-parse", "HEAD"])
    }

    pub(crate) fn push(&self, refspec: &str) {
        git(&self.work(), &["push", "--quiet", "origin", refspec]);
    }
}

const OTTOFILE: &str = "pipeline {
  name = 'app'
  stage('Build') { steps { sh 'cat version.txt' } }
}
triggers {
  push { branches = ['main'] }
  tag { pattern = 'v*' }
}
";

pub(crate) fn node_ok(node: &Node, args: &[&str]) -> String {
    let out = node.otto_node(args);
    assert!(
        out.status.success(),
        "otto-node {args:?}: {}\nnode log:\n{}",
        text(&out.stderr),
        node.log()
    );
    text(&out.stdout)
}

pub(crate) fn node_fails(node: &Node, args: &[&str]) -> String {
    let out = node.otto_node(args);
    assert!(
        !out.status.success(),
        "otto-node {args:?} succeeded: {}",
        text(&out.stdout)
    );
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    err
}

pub(crate) fn fetch(node: &Node, name: &str) -> Value {
    serde_json::from_str(&node_ok(node, &["repo", "fetch", name, "--json"])).unwrap()
}

#[test]
fn hostile_repository_urls_and_names_are_refused_and_leave_nothing() {
    let node = Node::start_new();
    let home_url = format!("file://{}", node.home.display());
    for (url, why) in [
        ("--upload-pack=/tmp/otto-pwned", "start with '-'"),
        ("ext::sh -c touch% /tmp/otto-pwned", "not contain spaces"),
        ("ext::sh", "transport helpers"),
        ("ftp://example.com/r.git", "scheme `ftp`"),
        (home_url.as_str(), "inside the node's home"),
    ] {
        let err = node_fails(&node, &["repo", "add", "--name", "x", "--", url]);
        assert!(err.contains(why), "{url}: {err}");
    }
    let remote = Remote::new(OTTOFILE);
    let err = node_fails(&node, &["repo", "add", &remote.url(), "--name", "../up"]);
    assert!(err.contains("repository name"), "{err}");
    // A URL that git cannot fetch leaves no repository behind.
    let err = node_fails(
        &node,
        &["repo", "add", "file:///nonexistent/r.git", "--name", "gone"],
    );
    assert!(err.contains("git fetch failed"), "{err}");
    let list: Value = serde_json::from_str(&node_ok(&node, &["repo", "list", "--json"])).unwrap();
    assert_eq!(list["repos"], serde_json::json!([]));
    assert!(!node.home.join("repos/gone").exists());
}

#[test]
fn a_push_starts_a_run_at_exactly_that_commit_and_is_acted_on_once() {
    let node = Node::start_new();
    let remote = Remote::new(OTTOFILE);
    let added = node_ok(&node, &["repo", "add", &remote.url(), "--name", "app"]);
    assert!(added.contains("added app"), "{added}");
    assert!(added.contains("webhook secret (shown once)"), "{added}");
    // What was there when the repository was added starts nothing.
    assert_eq!(
        fetch(&node, "app"),
        serde_json::json!({"runs": [], "skipped": []})
    );

    let first = remote.commit("version.txt", "two\n", "two");
    remote.push("main");
    // The next commit is pushed before the run's stage checks out: the run still gets
    // exactly the commit it was started for.
    let looked = fetch(&node, "app");
    let runs = looked["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{looked}");
    assert_eq!(runs[0]["commit"], first.as_str());
    assert_eq!(runs[0]["ref"], "refs/heads/main");
    assert_eq!(runs[0]["event"], "push");
    remote.commit("version.txt", "three\n", "three");
    let run = runs[0]["run"].as_str().unwrap().to_owned();
    let status = node.wait_final(&run);
    assert_eq!(status["run"]["state"], "succeeded", "{status}");
    assert_eq!(status["run"]["source"]["kind"], "git");
    assert_eq!(status["run"]["source"]["commit"], first.as_str());
    assert_eq!(status["run"]["source"]["url"], remote.url().as_str());
    assert_eq!(status["run"]["facts"]["branch"], "main");
    assert_eq!(status["run"]["facts"]["commit"], first.as_str());
    let logs = node.ok(&["logs", &run]);
    assert!(logs.contains("two"), "{logs}");
    assert!(!logs.contains("three"), "{logs}");

    // Nothing new: nothing starts, however often the node looks.
    assert_eq!(fetch(&node, "app")["runs"], serde_json::json!([]));

    // A branch outside the filter starts nothing, and says why.
    git(&remote.work(), &["checkout", "--quiet", "-b", "feature"]);
    let feature = remote.commit("version.txt", "feature\n", "feature");
    remote.push("feature");
    let looked = fetch(&node, "app");
    assert_eq!(looked["runs"], serde_json::json!([]), "{looked}");
    assert_eq!(looked["skipped"][0]["ref"], "refs/heads/feature");
    assert_eq!(looked["skipped"][0]["commit"], feature.as_str());
    assert!(
        looked["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("push to feature"),
        "{looked}"
    );

    // A tag matching the pattern starts the pipeline with the tag as a fact.
    git(&remote.work(), &["tag", "-a", "v1.0", "-m", "release"]);
    remote.push("v1.0");
    let looked = fetch(&node, "app");
    assert_eq!(looked["runs"][0]["event"], "tag", "{looked}");
    assert_eq!(
        looked["runs"][0]["commit"],
        feature.as_str(),
        "annotated tags are peeled"
    );
    let run = looked["runs"][0]["run"].as_str().unwrap().to_owned();
    let status = node.wait_final(&run);
    assert_eq!(status["run"]["facts"]["tag"], "v1.0");
    assert!(node.ok(&["logs", &run]).contains("feature"));

    // Removed: gone from the list, its mirror with it.
    node_ok(&node, &["repo", "rm", "app"]);
    assert!(!node.home.join("repos/app").exists());
    let err = node_fails(&node, &["repo", "fetch", "app"]);
    assert!(err.contains("no repository is named \"app\""), "{err}");
}

/// The HMAC-SHA256 of `body` with `key` as GitHub sends it, computed by Python's hmac
/// module (not by the code under test).
pub(crate) fn github_signature(key: &str, body: &[u8]) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import hmac,hashlib,sys; print('sha256=' + hmac.new(sys.argv[1].encode(), sys.stdin.buffer.read(), hashlib.sha256).hexdigest())",
            key,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(body)?;
            child.wait_with_output()
        })
        .unwrap();
    text(&out.stdout).trim().to_owned()
}

#[test]
fn a_run_of_a_commit_builds_with_source_date_epoch_at_the_commit_time() {
    // Reproducible-build tools (wheel, jar, tar --mtime) read SOURCE_DATE_EPOCH; the
    // checkout's files carry the same time.
    let node = Node::start_new();
    let remote = Remote::new(
        "pipeline {
  name = 'app'
  stage('Build') { steps { sh 'echo \"epoch=$SOURCE_DATE_EPOCH\"; stat -c mtime=%Y version.txt' } }
}
triggers { push { branches = ['main'] } }
",
    );
    node_ok(&node, &["repo", "add", &remote.url(), "--name", "app"]);
    std::fs::write(remote.work().join("version.txt"), "dated\n").unwrap();
    git(&remote.work(), &["add", "version.txt"]);
    let out = Command::new("git")
        .arg("-C")
        .arg(remote.work())
        .args(["commit", "--quiet", "-m", "dated"])
        .env("GIT_AUTHOR_NAME", "Dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_NAME", "Dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_DATE", "@1000000000 +0000")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    remote.push("main");
    let looked = fetch(&node, "app");
    let run = looked["runs"][0]["run"].as_str().unwrap().to_owned();
    let status = node.wait_final(&run);
    assert_eq!(status["run"]["state"], "succeeded", "{status}");
    let logs = node.ok(&["logs", &run]);
    assert!(logs.contains("epoch=1000000000"), "{logs}");
    assert!(logs.contains("mtime=1000000000"), "{logs}");
}

#[test]
fn signed_webhooks_start_runs_and_bad_ones_are_refused_without_a_run() {
    let node = Node::start_new();
    let remote = Remote::new(OTTOFILE);
    let secret_file = node.dir.path().join("hook.secret");
    std::fs::write(&secret_file, "It's a Secret to Everybody\n").unwrap();
    node_ok(
        &node,
        &[
            "repo",
            "add",
            &remote.url(),
            "--name",
            "app",
            "--forge",
            "github",
            "--secret-file",
            secret_file.to_str().unwrap(),
        ],
    );
    let addr = std::fs::read_to_string(node.home.join("api.addr")).unwrap();
    let url = format!("http://{}/hooks/github/app", addr.trim());
    // A new connection for each request: the node closes one whose body it refused.
    let http = reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let send = |url: &str, body: &[u8], headers: &[(&str, &str)]| {
        let mut request = http.post(url).body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        (status, response.text().unwrap_or_default())
    };
    let commit = remote.commit("version.txt", "hooked\n", "hooked");
    remote.push("main");
    let body = format!(
        r#"{{"ref":"refs/heads/main","after":"{commit}","repository":{{"clone_url":"ext::sh -c evil"}}}}"#
    );
    let body = body.as_bytes();
    let good = github_signature("It's a Secret to Everybody", body);
    let wrong = github_signature("another secret", body);

    // Refused: each answers with its status, and no run starts.
    let refused = [
        (
            send(
                &url,
                body,
                &[("X-GitHub-Event", "push"), ("X-GitHub-Delivery", "d-0")],
            ),
            401,
        ),
        (
            send(
                &url,
                body,
                &[("X-Hub-Signature-256", &wrong), ("X-GitHub-Event", "push")],
            ),
            401,
        ),
        (
            send(
                &url,
                b"{}",
                &[("X-Hub-Signature-256", &good), ("X-GitHub-Event", "push")],
            ),
            401,
        ),
        (
            send(
                &url,
                &vec![b' '; 2 << 20],
                &[("X-Hub-Signature-256", &good)],
            ),
            413,
        ),
        (
            send(
                &url.replace("/app", "/nope"),
                body,
                &[("X-Hub-Signature-256", &good)],
            ),
            404,
        ),
        (
            send(
                &url.replace("/github/", "/gitlab/"),
                body,
                &[("X-Gitlab-Token", "x")],
            ),
            404,
        ),
    ];
    for ((status, answer), expected) in refused {
        assert_eq!(status, expected, "{answer}");
    }
    let runs: Value = serde_json::from_str(&node.ok(&["status", "--json"])).unwrap_or(Value::Null);
    assert!(runs["runs"].as_array().is_none_or(Vec::is_empty), "{runs}");

    let headers = [
        ("X-Hub-Signature-256", good.as_str()),
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", "d-1"),
    ];
    let (status, answer) = send(&url, body, &headers);
    assert_eq!(status, 202, "{answer}");
    // The same delivery again is a replay.
    let (status, answer) = send(&url, body, &headers);
    assert_eq!(status, 409, "{answer}");
    // The run starts after the answer; the payload's URL was never used.
    let run = node.wait_for("the webhook's run", || {
        let list: Value = serde_json::from_str(&node.ok(&["status", "--json"])).ok()?;
        list["runs"].as_array()?.first().cloned()
    });
    assert_eq!(run["source"]["commit"], commit.as_str(), "{run}");
    assert_eq!(run["source"]["url"], remote.url().as_str());
    // A redelivery with a new id finds nothing new: still one run.
    let headers = [
        ("X-Hub-Signature-256", good.as_str()),
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", "d-2"),
    ];
    assert_eq!(send(&url, body, &headers).0, 202);
    assert_eq!(fetch(&node, "app")["runs"], serde_json::json!([]));
    let list: Value = serde_json::from_str(&node.ok(&["status", "--json"])).unwrap();
    assert_eq!(list["runs"].as_array().unwrap().len(), 1, "{list}");
    let log = node.log();
    assert!(log.contains("webhook refused"), "{log}");
    assert!(!log.contains("Everybody"), "the secret is never logged");
}

#[test]
fn a_local_hook_starts_a_run_when_the_bare_repository_receives_a_push() {
    let node = Node::start_new();
    let remote = Remote::new(OTTOFILE);
    node_ok(&node, &["repo", "add", &remote.url(), "--name", "app"]);
    let out = node.ok(&[
        "hook",
        "install",
        "app",
        "--repo",
        remote.bare().to_str().unwrap(),
    ]);
    assert!(out.contains("post-receive"), "{out}");
    // Installing twice is fine; a hook someone else wrote is left alone.
    node.ok(&[
        "hook",
        "install",
        "app",
        "--repo",
        remote.bare().to_str().unwrap(),
    ]);
    std::fs::write(
        remote.work().join(".git/hooks/post-commit"),
        "#!/bin/sh\necho mine\n",
    )
    .unwrap();
    let out = node.otto(&[
        "hook",
        "install",
        "app",
        "--repo",
        remote.work().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("was not written by otto hook install"),
        "{}",
        text(&out.stderr)
    );

    let commit = remote.commit("version.txt", "pushed\n", "pushed");
    let pushed = Command::new("git")
        .arg("-C")
        .arg(remote.work())
        .args(["push", "origin", "main"])
        .env("OTTO_HOME", &node.home)
        .output()
        .unwrap();
    assert!(pushed.status.success());
    // The hook's output comes back through git push.
    let said = text(&pushed.stderr);
    assert!(
        said.contains("otto: started run"),
        "{said}\nnode log:\n{}",
        node.log()
    );
    let run = said
        .split("started run ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    let status = node.wait_final(&run);
    assert_eq!(status["run"]["source"]["commit"], commit.as_str());
    assert_eq!(status["run"]["state"], "succeeded", "{status}");
}

#[test]
fn polling_finds_a_push_nobody_told_the_node_about_and_it_starts_once() {
    let node = Node::start_new();
    let remote = Remote::new(OTTOFILE);
    node_ok(
        &node,
        &[
            "repo",
            "add",
            &remote.url(),
            "--name",
            "app",
            "--poll",
            "10s",
        ],
    );
    let list: Value = serde_json::from_str(&node_ok(&node, &["repo", "list", "--json"])).unwrap();
    assert_eq!(list["repos"][0]["poll_secs"], 10);
    let commit = remote.commit("version.txt", "polled\n", "polled");
    remote.push("main");
    let run = node.wait_for("the poll's run", || {
        let list: Value = serde_json::from_str(&node.ok(&["status", "--json"])).ok()?;
        list["runs"].as_array()?.first().cloned()
    });
    assert_eq!(run["source"]["commit"], commit.as_str(), "{run}");
    // The same commit, looked at again: no second run.
    assert_eq!(fetch(&node, "app")["runs"], serde_json::json!([]));
    let list: Value = serde_json::from_str(&node.ok(&["status", "--json"])).unwrap();
    assert_eq!(list["runs"].as_array().unwrap().len(), 1, "{list}");
    let out = node.otto_node(&[
        "repo",
        "add",
        &remote.url(),
        "--name",
        "fast",
        "--poll",
        "5s",
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("poll at most every 10 seconds"), "{err}");
}

#[test]
fn a_schedule_starts_a_run_of_the_branch_head_when_it_comes_due() {
    let node = Node::start_new();
    let remote = Remote::new(
        "pipeline {\n  name = 'nightly'\n  stage('Build') { steps { sh 'cat version.txt' } }\n}\n\
         triggers {\n  schedule { cron = '* * * * *' }\n}\n",
    );
    node_ok(&node, &["repo", "add", &remote.url(), "--name", "app"]);
    // A push is no trigger of this pipeline.
    let head = remote.commit("version.txt", "scheduled\n", "scheduled");
    remote.push("main");
    let looked = fetch(&node, "app");
    assert_eq!(looked["runs"], serde_json::json!([]), "{looked}");
    // Every minute: the next one comes within about 70 s (a look every 10 s).
    let started = std::time::Instant::now();
    let run = loop {
        let list: Value = serde_json::from_str(&node.ok(&["status", "--json"])).unwrap();
        if let Some(run) = list["runs"].as_array().and_then(|r| r.first()).cloned() {
            break run;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(180),
            "no scheduled run; node log:\n{}",
            node.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert_eq!(run["source"]["commit"], head.as_str(), "{run}");
    assert_eq!(run["facts"]["branch"], "main");
    assert_eq!(run["started_by"], "schedule app");
}
