//! Bad input through the CLI: one line on standard error and a non-zero exit, never a
//! crash. Unknown runs, a wrong token, an Ottofile with errors, a node that is not
//! running, an existing home.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::node_support::{Node, PATIENCE, agent, project, text, wait_output_within};

#[test]
fn bad_input_gets_one_line_and_a_non_zero_exit() {
    let node = Node::start_new();
    let one_line = |args: &[&str], needle: &str| {
        let out = node.otto(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    };
    one_line(
        &["status", "01J9ZQ3M5V8R2K4T6W8Y0A2C4E"],
        "no run 01J9ZQ3M5V8R2K4T6W8Y0A2C4E",
    );
    one_line(&["status", "nope"], "no run");
    one_line(&["logs", "01J9ZQ3M5V8R2K4T6W8Y0A2C4E"], "no run");
    one_line(
        &["approve", "01J9ZQ3M5V8R2K4T6W8Y0A2C4E", "Deploy"],
        "no run",
    );
    one_line(&["secrets", "rm", "NOPE"], "no secret NOPE");
    one_line(&["run", "/nonexistent/dir"], "no such file or directory");
    let bad_name = node.otto_with_stdin(&["secrets", "set", "lower"], Some(b"v"));
    assert_eq!(bad_name.status.code(), Some(1));
    assert!(
        text(&bad_name.stderr).contains("secret names"),
        "{}",
        text(&bad_name.stderr)
    );

    // An Ottofile with errors: the diagnostics with file:line:column, exit 1.
    let dir = project(&[("Ottofile", "stage('Build') {\n  stpes { sh 'make' }\n}\n")]);
    let out = node.otto(&["run", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("--> Ottofile:2:3"), "{err}");
    assert!(err.contains("did you mean `steps`?"), "{err}");
    assert!(text(&out.stdout).is_empty());

    // An Ottofile that is not UTF-8 is reported as such by the node, not as a file
    // without stages.
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("Ottofile"),
        b"stage('B') { steps { sh '\xff\xfe' } }\n",
    )
    .unwrap();
    let out = node.otto(&["run", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("Ottofile is not UTF-8 text"), "{err}");

    // An empty directory: the snapshot is empty, said as such.
    let empty = tempfile::tempdir().unwrap();
    let out = node.otto(&["run", empty.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("the snapshot is empty: no Ottofile and no known stack"),
        "{err}"
    );
    assert!(!err.contains("no such file or directory"), "{err}");

    // A wrong token: a copy of the home with another api.token.
    let other = tempfile::tempdir().unwrap();
    fs::write(other.path().join("api.token"), "0".repeat(64)).unwrap();
    fs::copy(node.home.join("api.addr"), other.path().join("api.addr")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_otto"))
        .args(["status", "--home"])
        .arg(other.path())
        .env_remove("OTTO_NODE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("bearer token"), "{err}");

    // A second node on the same home: one line, each cause said once.
    let out = node.otto_node(&["start"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(
        err.matches("is open in another process").count(),
        1,
        "{err}"
    );

    // --node with a home that has the right token works.
    let addr = fs::read_to_string(node.home.join("api.addr")).unwrap();
    let out = node.otto(&["status", "--node", addr.trim()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn commands_fail_cleanly_without_a_running_node_or_with_an_existing_home() {
    let node = Node::init();
    let out = node.otto(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    // The hint names the home it looked in, so it can be pasted as it is.
    let hint = format!(
        "start it with `otto-node start --home {}`",
        node.home.display()
    );
    assert!(text(&out.stderr).contains(&hint), "{}", text(&out.stderr));

    let out = Command::new(env!("CARGO_BIN_EXE_otto-node"))
        .args([
            "init",
            "--org",
            "acme",
            "--name",
            "n2",
            "--no-run-as",
            "--home",
        ])
        .arg(&node.home)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // `origin` is the plan's name for the node that started a run: no node answers to it.
    let third = node.dir.path().join("third");
    let out = Command::new(env!("CARGO_BIN_EXE_otto-node"))
        .args([
            "init",
            "--org",
            "acme",
            "--name",
            "n3",
            "--answers-to",
            "origin",
            "--no-run-as",
        ])
        .arg("--home")
        .arg(&third)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("--answers-to origin"), "{err}");
    assert!(err.contains("\"origin\" is reserved"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!third.exists());

    // A second node of the same org, from the first one's org key.
    let second = node.dir.path().join("second");
    let out = Command::new(env!("CARGO_BIN_EXE_otto-node"))
        .args([
            "init",
            "--org",
            "acme",
            "--name",
            "n2",
            "--json",
            "--no-run-as",
            "--home",
        ])
        .arg(&second)
        .arg("--org-key")
        .arg(node.home.join("org.key"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(made["org"], "acme");
    assert!(!second.join("org.key").exists());
}

#[test]
fn every_command_has_help_with_examples() {
    for args in [
        &["run", "--help"][..],
        &["status", "--help"],
        &["logs", "--help"],
        &["approve", "--help"],
        &["secrets", "--help"],
        &["explain", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_otto"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(text(&out.stdout).contains("Examples:"), "{args:?}");
    }
    for args in [&["init", "--help"][..], &["start", "--help"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_otto-node"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(text(&out.stdout).contains("Examples:"), "{args:?}");
    }
}

#[test]
fn status_answers_while_1100_idle_or_half_sent_connections_are_open() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    use std::io::Write as _;
    // The test itself holds 1,100 sockets: lift its descriptor limit to the hard one.
    let limit = getrlimit(Resource::Nofile);
    if limit.maximum.is_some_and(|max| max < 1_200) {
        println!("skipped: the hard limit on open files is below 1200");
        return;
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )
    .unwrap();
    let node = Node::start_new();
    let addr = fs::read_to_string(node.home.join("api.addr")).unwrap();
    let mut held = Vec::new();
    for i in 0..1_100 {
        let mut stream = std::net::TcpStream::connect(addr.trim()).unwrap();
        if i % 2 == 1 {
            // Half a request: headers that never end.
            stream
                .write_all(b"GET /v1/runs HTTP/1.1\r\nhost: x\r\n")
                .unwrap();
        }
        held.push(stream);
    }
    // Answers in the patience of every CLI call in these tests, with a token; without one,
    // 401 before anything else.
    node.ok(&["status"]);
    let unauthorized = reqwest::blocking::Client::new()
        .get(format!("http://{}/v1/runs", addr.trim()))
        .send()
        .unwrap();
    assert_eq!(unauthorized.status().as_u16(), 401);
    drop(held);
}

#[test]
fn a_writable_directory_holding_or_inside_the_home_or_work_dir_stops_the_start() {
    // Landlock rules only grant: a step allowed to write a directory holding the home can
    // read its keys and rewrite trust.toml (review of #12, F4). The node must not start.
    let node = Node::init();
    let config = fs::read_to_string(node.home.join("config.toml")).unwrap();
    assert!(config.contains("writable = []"), "{config}");
    let parent = node.home.parent().unwrap().to_owned();
    let work = parent.join("home-work");
    for (writable, says) in [
        (parent.clone(), "holds the home"),
        (PathBuf::from("/"), "holds the home"),
        (node.home.join("site"), "is inside the home"),
        (work.clone(), "holds the work directory"),
        (work.join("site"), "is inside the work directory"),
    ] {
        let edited = config.replace(
            "writable = []",
            &format!("writable = [{:?}]", writable.display().to_string()),
        );
        fs::write(node.home.join("config.toml"), edited).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_otto-node"))
            .args(["start", "--home"])
            .arg(&node.home)
            .env("OTTO_AGENT", agent())
            .env_remove("OTTO_HOME")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = wait_output_within(child, PATIENCE);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", writable.display());
        let line = err.lines().last().unwrap_or_default();
        assert!(
            line.contains(&format!("agent.writable {}", writable.display())) && line.contains(says),
            "{}: {err}",
            writable.display()
        );
        assert!(!node.home.join("api.addr").exists(), "{err}");
    }
}
