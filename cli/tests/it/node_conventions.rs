//! Zero-configuration runs on a real node with the toolchains this machine has: the
//! `make`, `configure` and `cargo` conventions (gcc, make and cargo are on every machine
//! Otto is built on) and, where `go` is installed, the Go convention with its caches.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::node_support::{Node, stage_of, text};

/// A copy of `examples/conventions/NAME` (modes kept: `configure` is executable).
fn example(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/conventions")
        .join(name);
    copy_dir(&from, dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            fs::create_dir(&dest).unwrap();
            copy_dir(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// Runs the directory with no Ottofile; returns the run id after checking it succeeded.
fn run_green(node: &Node, dir: &Path) -> String {
    let out = node.otto(&["run", dir.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("succeeded"),
        "{stdout}\n{}\n{}",
        text(&out.stderr),
        node.log()
    );
    stdout
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .to_owned()
}

/// The cache hits of the last attempt of a stage.
fn hits(node: &Node, run: &str, stage: &str) -> Vec<String> {
    let status = node.status(run);
    let stage = stage_of(&status, stage).unwrap_or_else(|| panic!("{stage}: {status}"));
    let attempt = stage["attempts"]
        .as_array()
        .and_then(|a| a.last())
        .unwrap_or_else(|| panic!("no attempt: {stage}"));
    attempt["cache_hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no cache_hits: {attempt}"))
        .iter()
        .map(|h| h.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn make_and_configure_projects_build_then_test_in_the_built_tree() {
    let node = Node::start_new();
    for name in ["make", "configure"] {
        let dir = example(name);
        assert!(!dir.path().join("Ottofile").exists());
        let run = run_green(&node, dir.path());
        let build = node.ok(&["logs", &run, "Build"]);
        assert!(build.contains("cc -o hello hello.c"), "{name}: {build}");
        let tests = node.ok(&["logs", &run, "Test"]);
        let test = format!("./hello | grep -q 'hello from {name}'");
        assert!(tests.contains(&test), "{name}: {tests}");
        // The Build stage's tree, times kept: make finds hello up to date.
        assert!(
            !tests.contains("cc -o hello"),
            "{name}: the test stage rebuilt: {tests}"
        );
    }
}

#[test]
fn a_go_module_runs_green_and_the_second_run_uses_its_caches() {
    if Command::new("go").arg("version").output().is_err() {
        eprintln!("skipped: go is not installed");
        return;
    }
    let node = Node::start_new();
    let dir = example("go");
    let first = run_green(&node, dir.path());
    assert!(hits(&node, &first, "Build").is_empty());
    let tests = node.ok(&["logs", &first, "Test"]);
    assert!(tests.contains("ok  \texample.com/hello"), "{tests}");

    let warm = run_green(&node, dir.path());
    assert_eq!(hits(&node, &warm, "Build"), ["go"]);
    assert_eq!(hits(&node, &warm, "Test"), ["go"]);
    let tests = node.ok(&["logs", &warm, "Test"]);
    assert!(tests.contains("ok  \texample.com/hello"), "{tests}");
}

#[test]
fn a_cargo_crate_runs_green_and_the_second_run_builds_nothing_again() {
    let node = Node::start_new();
    let dir = example("cargo");
    let first = run_green(&node, dir.path());
    assert!(hits(&node, &first, "Build").is_empty());
    let tests = node.ok(&["logs", &first, "Test"]);
    assert!(tests.contains("test tests::greets ... ok"), "{tests}");

    // target/ comes back with its times, in another workspace: cargo finds it fresh. (A
    // crate without dependencies downloads nothing, so its `cargo` cache is never saved.)
    let warm = run_green(&node, dir.path());
    assert_eq!(hits(&node, &warm, "Build"), ["target"]);
    let build = node.ok(&["logs", &warm, "Build"]);
    assert!(
        !build.contains("Compiling hello"),
        "the warm run rebuilt: {build}"
    );
    let tests = node.ok(&["logs", &warm, "Test"]);
    assert!(tests.contains("test tests::greets ... ok"), "{tests}");
}

#[test]
fn a_cargo_crate_with_a_registry_dependency_compiles_nothing_in_the_warm_run() {
    // greet comes from vendor/ through a source replacement: a registry package, whose
    // fingerprint in target/ holds the absolute path of its sources. In a workspace at
    // another path each run, cargo compiled it (and what depends on it) again every time;
    // steps see their workspace at the same directory in every run, so it does not.
    let node = Node::start_new();
    let dir = example("cargo-vendored");
    let first = run_green(&node, dir.path());
    let build = node.ok(&["logs", &first, "Build"]);
    assert!(build.contains("Compiling greet"), "{build}");
    let tests = node.ok(&["logs", &first, "Test"]);
    assert!(tests.contains("test tests::greets ... ok"), "{tests}");

    let warm = run_green(&node, dir.path());
    assert_eq!(hits(&node, &warm, "Build"), ["target"]);
    for stage in ["Build", "Test"] {
        let log = node.ok(&["logs", &warm, stage]);
        assert!(
            !log.contains("Compiling"),
            "the warm run's {stage} compiled again: {log}"
        );
    }
    let tests = node.ok(&["logs", &warm, "Test"]);
    assert!(tests.contains("test tests::greets ... ok"), "{tests}");
}
