//! `otto run` in a git work tree, on a real node: repository, branch and commit become the
//! run's facts; uncommitted changes are refused unless `--dirty`, which records their
//! digest; `--commit` and `--branch` are checked; and nothing the work tree's git
//! configuration names ever runs.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::node_repo::git;
use crate::node_support::{Node, text};

const OTTOFILE: &str = "pipeline {
  name = 'app'
  stage('Build') { steps { sh 'cat version.txt' } }
}
";

/// A work tree with an Ottofile and `version.txt` committed on `main`, and an `origin`
/// whose URL carries credentials.
fn work_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    git(work, &["init", "--quiet", "-b", "main"]);
    git(
        work,
        &[
            "remote",
            "add",
            "origin",
            "https://bob:s3cret@git.example.com/acme/app.git",
        ],
    );
    fs::write(work.join("Ottofile"), OTTOFILE).unwrap();
    fs::write(work.join("version.txt"), "one\n").unwrap();
    git(work, &["add", "."]);
    git(work, &["commit", "--quiet", "-m", "one"]);
    dir
}

/// `otto run DIR --detach ARGS…`, which must fail with one line on stderr; that line.
fn refused(node: &Node, dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["run", dir.to_str().unwrap(), "--detach"];
    all.extend_from_slice(args);
    let out = node.otto(&all);
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "otto {all:?} succeeded: {}",
        text(&out.stdout)
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    err
}

/// `otto run DIR --detach ARGS…`; the new run's facts.
fn facts(node: &Node, dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["run", dir.to_str().unwrap(), "--detach"];
    all.extend_from_slice(args);
    let run = node.ok(&all).trim().to_owned();
    node.status(&run)["run"]["facts"].clone()
}

fn runs(node: &Node) -> usize {
    let list: Value = serde_json::from_str(&node.ok(&["status", "--json"])).unwrap();
    list["runs"].as_array().unwrap().len()
}

/// The `dirty` digest as docs/operating.md says it is computed, for regular files and
/// deletions.
fn expected_digest(top: &Path, changed: &[&str]) -> String {
    let mut paths = changed.to_vec();
    paths.sort_unstable();
    let mut hash = Sha256::new();
    for path in paths {
        hash.update(path.as_bytes());
        hash.update([0]);
        match fs::read(top.join(path)) {
            Ok(bytes) => {
                hash.update(b"file\0");
                hash.update(bytes.len().to_string().as_bytes());
                hash.update([0]);
                hash.update(&bytes);
            }
            Err(_) => hash.update(b"deleted\x000\0"),
        }
    }
    format!("sha256:{}", hex::encode(hash.finalize()))
}

#[test]
fn a_run_in_a_work_tree_records_repository_branch_and_commit() {
    let node = Node::start_new();
    let tree = work_tree();
    let head = git(tree.path(), &["rev-parse", "HEAD"]);
    let facts = facts(&node, tree.path(), &[]);
    assert_eq!(facts["commit"], head.as_str(), "{facts}");
    assert_eq!(facts["branch"], "main", "{facts}");
    // The origin's URL, never its credentials.
    assert_eq!(
        facts["repository"], "https://git.example.com/acme/app.git",
        "{facts}"
    );
    assert!(facts.get("dirty").is_none(), "{facts}");
    let list: Value = serde_json::from_str(&node.ok(&["status", "--json"])).unwrap();
    let run = list["runs"][0]["id"].as_str().unwrap().to_owned();
    let shown = node.ok(&["status", &run]);
    assert!(
        shown.contains(&format!(
            "commit {head} of https://git.example.com/acme/app.git, branch main"
        )),
        "{shown}"
    );
    assert!(!node.log().contains("s3cret"));

    // Without an origin, the work tree's own directory names the repository; a detached
    // HEAD has no branch unless --branch gives one.
    git(tree.path(), &["remote", "remove", "origin"]);
    git(tree.path(), &["checkout", "--quiet", "--detach"]);
    let facts = self::facts(&node, tree.path(), &["--branch", "release"]);
    let top = fs::canonicalize(tree.path()).unwrap();
    assert_eq!(facts["repository"], top.to_str().unwrap(), "{facts}");
    assert_eq!(facts["branch"], "release", "{facts}");
    assert_eq!(facts["commit"], head.as_str(), "{facts}");
}

#[test]
fn a_dirty_tree_is_refused_unless_dirty_which_records_the_changes_digest() {
    let node = Node::start_new();
    let tree = work_tree();
    let head = git(tree.path(), &["rev-parse", "HEAD"]);
    fs::write(tree.path().join("version.txt"), "two\n").unwrap();
    fs::write(tree.path().join("notes.txt"), "not committed\n").unwrap();
    let err = refused(&node, tree.path(), &[]);
    assert!(err.contains("M version.txt"), "{err}");
    assert!(err.contains("and 1 more"), "{err}");
    assert!(err.contains("--dirty"), "{err}");
    assert!(err.contains(&head[..12]), "{err}");
    assert_eq!(runs(&node), 0, "a refused tree started a run");

    let facts = facts(&node, tree.path(), &["--dirty"]);
    assert_eq!(facts["commit"], head.as_str(), "{facts}");
    let digest = expected_digest(tree.path(), &["version.txt", "notes.txt"]);
    assert_eq!(facts["dirty"], digest.as_str(), "{facts}");

    // Other changes, another digest; a deletion counts.
    fs::remove_file(tree.path().join("notes.txt")).unwrap();
    fs::remove_file(tree.path().join("version.txt")).unwrap();
    let facts = self::facts(&node, tree.path(), &["--dirty"]);
    let deleted = expected_digest(tree.path(), &["version.txt"]);
    assert_eq!(facts["dirty"], deleted.as_str(), "{facts}");
    assert_ne!(deleted, digest);

    // Changes outside the directory that is run are not its changes.
    git(tree.path(), &["checkout", "--quiet", "--", "version.txt"]);
    fs::create_dir(tree.path().join("site")).unwrap();
    fs::write(tree.path().join("site/Ottofile"), OTTOFILE).unwrap();
    fs::write(tree.path().join("site/version.txt"), "site\n").unwrap();
    git(tree.path(), &["add", "site"]);
    git(tree.path(), &["commit", "--quiet", "-m", "site"]);
    fs::write(tree.path().join("version.txt"), "three\n").unwrap();
    let facts = self::facts(&node, &tree.path().join("site"), &[]);
    assert!(facts.get("dirty").is_none(), "{facts}");
    let err = refused(&node, tree.path(), &[]);
    assert!(err.contains("M version.txt"), "{err}");
}

#[test]
fn commit_and_branch_are_checked_against_the_work_tree() {
    let node = Node::start_new();
    let tree = work_tree();
    let first = git(tree.path(), &["rev-parse", "HEAD"]);
    fs::write(tree.path().join("version.txt"), "two\n").unwrap();
    git(tree.path(), &["commit", "--quiet", "-am", "two"]);
    let head = git(tree.path(), &["rev-parse", "HEAD"]);

    let err = refused(&node, tree.path(), &["--commit", &first]);
    assert!(
        err.contains(&first[..12]) && err.contains(&head[..12]),
        "{err}"
    );
    let err = refused(&node, tree.path(), &["--commit", "0123456789abcdef"]);
    assert!(err.contains("no such commit"), "{err}");
    let err = refused(&node, tree.path(), &["--commit=--output=/tmp/x"]);
    assert!(err.contains("is not a commit"), "{err}");
    let err = refused(&node, tree.path(), &["--branch", "release"]);
    assert!(err.contains("branch main checked out"), "{err}");
    assert_eq!(runs(&node), 0);

    // Any name of HEAD's commit is taken, and the full id recorded.
    let facts = facts(&node, tree.path(), &["--commit", &head[..8]]);
    assert_eq!(facts["commit"], head.as_str(), "{facts}");

    // Outside a work tree nothing can check a commit.
    let plain = tempfile::tempdir().unwrap();
    fs::write(plain.path().join("Ottofile"), OTTOFILE).unwrap();
    fs::write(plain.path().join("version.txt"), "one\n").unwrap();
    let err = refused(&node, plain.path(), &["--commit", &head]);
    assert!(err.contains("not in a git work tree"), "{err}");
    let facts = self::facts(&node, plain.path(), &[]);
    assert!(
        facts["commit"].is_null() && facts.get("repository").is_none(),
        "{facts}"
    );

    // A directory the work tree ignores (a build's output) is no commit's either.
    fs::write(tree.path().join(".gitignore"), "out/\n").unwrap();
    git(tree.path(), &["add", ".gitignore"]);
    git(tree.path(), &["commit", "--quiet", "-m", "ignore"]);
    fs::create_dir(tree.path().join("out")).unwrap();
    fs::write(tree.path().join("out/Ottofile"), OTTOFILE).unwrap();
    fs::write(tree.path().join("out/version.txt"), "built\n").unwrap();
    let facts = self::facts(&node, &tree.path().join("out"), &[]);
    assert!(facts["commit"].is_null(), "{facts}");
}

#[test]
fn nothing_the_work_tree_configuration_names_runs() {
    let node = Node::start_new();
    let tree = work_tree();
    let work = tree.path();
    let trap = tempfile::tempdir().unwrap();
    let marker = trap.path().join("ran");
    let evil = trap.path().join("evil.sh");
    fs::write(
        &evil,
        format!("#!/bin/sh\necho \"$0 $*\" >> '{}'\ncat\n", marker.display()),
    )
    .unwrap();
    fs::set_permissions(&evil, fs::Permissions::from_mode(0o755)).unwrap();
    let evil = evil.to_str().unwrap();
    let hooks = trap.path().join("hooks");
    fs::create_dir(&hooks).unwrap();
    for hook in [
        "pre-commit",
        "post-checkout",
        "post-index-change",
        "reference-transaction",
        "fsmonitor-watchman",
        "pre-auto-gc",
    ] {
        fs::copy(evil, hooks.join(hook)).unwrap();
        fs::copy(evil, work.join(".git/hooks").join(hook)).unwrap();
    }
    fs::write(work.join(".gitattributes"), "*.txt filter=evil diff=evil\n").unwrap();
    git(work, &["add", ".gitattributes"]);
    git(work, &["commit", "--quiet", "-m", "attributes"]);
    for (key, value) in [
        ("core.fsmonitor", evil),
        ("core.hooksPath", hooks.to_str().unwrap()),
        ("core.pager", evil),
        ("filter.evil.clean", evil),
        ("filter.evil.smudge", evil),
        ("filter.evil.process", evil),
        ("filter.evil.required", "true"),
        ("diff.evil.textconv", evil),
        ("diff.evil.command", evil),
        ("diff.external", evil),
    ] {
        git(work, &["config", key, value]);
    }
    // A tracked file changed with an old time (git must look at its content), and a new
    // file.
    fs::write(work.join("version.txt"), "two\n").unwrap();
    Command::new("touch")
        .args(["-d", "2001-01-01"])
        .arg(work.join("version.txt"))
        .status()
        .unwrap();
    fs::write(work.join("new.txt"), "new\n").unwrap();

    // The trap is live: a plain `git status` there runs it (and fails on it).
    Command::new("git")
        .arg("-C")
        .arg(work)
        .args(["status", "--porcelain"])
        .output()
        .unwrap();
    assert!(
        marker.exists(),
        "git status ran nothing: the test sets no trap"
    );
    fs::remove_file(&marker).unwrap();

    let err = refused(&node, work, &[]);
    assert!(err.contains("--dirty"), "{err}");
    let facts = facts(&node, work, &["--dirty"]);
    assert!(
        facts["dirty"].as_str().unwrap().starts_with("sha256:"),
        "{facts}"
    );
    assert!(
        !marker.exists(),
        "otto run ran a program the work tree's configuration names: {}",
        fs::read_to_string(&marker).unwrap_or_default()
    );
}
