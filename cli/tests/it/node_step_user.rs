//! `otto-node init --run-as USER`: a root node's steps run as an unprivileged user that
//! init creates when it does not exist. These tests create system users, so they need
//! root; elsewhere they say `skipped: REASON`. Each uses a user name of its own and
//! removes the user afterwards.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use crate::node_support::{Node, project, text};

/// A system user name no other test uses, removed (`userdel`) when dropped.
struct TempUser(String);

impl TempUser {
    fn new(tag: &str) -> Self {
        Self(format!("ottot-{tag}-{}", std::process::id()))
    }

    fn exists(&self) -> bool {
        Command::new("getent")
            .args(["passwd", &self.0])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        if self.exists() {
            let _ = Command::new("userdel").arg(&self.0).output();
        }
    }
}

/// Why these tests cannot run here, if they cannot.
fn cannot_run() -> Option<&'static str> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root: only root can create users and run steps as one");
    }
    if Command::new("useradd").arg("--help").output().is_err() {
        return Some("no useradd on PATH");
    }
    None
}

/// A temporary directory others may pass through, as the directory above a home whose
/// steps run as another user must be.
fn passable_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    dir
}

#[test]
fn init_run_as_creates_the_step_user_and_the_nodes_steps_run_as_it() {
    if let Some(reason) = cannot_run() {
        println!("skipped: {reason}");
        return;
    }
    let user = TempUser::new("run");
    assert!(!user.exists(), "{} is left from an earlier run", user.0);
    let mut node = Node::init_in(passable_dir(), "acme", "n1", &["--run-as", &user.0]);
    // A system user with no login shell and no home directory made.
    let entry = Command::new("getent")
        .args(["passwd", &user.0])
        .output()
        .unwrap();
    let entry = text(&entry.stdout);
    let fields: Vec<&str> = entry.trim_end().split(':').collect();
    assert_eq!(fields.len(), 7, "{entry}");
    assert!(fields[6].ends_with("nologin"), "{entry}");
    assert!(!std::path::Path::new(fields[5]).exists(), "{entry}");
    let config = std::fs::read_to_string(node.home.join("config.toml")).unwrap();
    assert!(
        config.contains(&format!("\nrun_as = \"{}\"\n", user.0)),
        "{config}"
    );
    // A second home may name the same user: it is used as it is.
    let again = Node::init_in(passable_dir(), "acme", "n2", &["--run-as", &user.0]);
    assert!(again.home.join("config.toml").exists());

    node.start();
    let dir = project(&[(
        "Ottofile",
        "stage('Who') {\n  steps {\n    sh 'id -un'\n  }\n}\n",
    )]);
    let run = node.ok(&["run", "--detach", dir.path().to_str().unwrap()]);
    let run = run.trim();
    let status = node.wait_final(run);
    assert_eq!(status["run"]["state"], "succeeded", "{status}");
    let log = node.ok(&["logs", run, "Who"]);
    assert!(
        log.lines().any(|l| l.trim_end().ends_with(&user.0)),
        "{log}\nnode log:\n{}",
        node.log()
    );
    assert!(node.terminate());
}

/// #12 F6: two root nodes on one machine that shared the step user `otto-step` shared its
/// uid, and a step of one read the secrets the other gave a stage. Init as root now makes
/// each node a user of its own, named after the node, never one that exists already.
#[test]
fn init_as_root_gives_each_node_a_step_user_of_its_own() {
    if let Some(reason) = cannot_run() {
        println!("skipped: {reason}");
        return;
    }
    // A node name of this test process alone, long and with a dot, as node names may be.
    let node = format!("Ci.{}-with-a-long-name-for-a-user", std::process::id());
    let names: Vec<String> = otto_node::step_user::own_names(&node).take(2).collect();
    let made: Vec<TempUser> = names.iter().map(|n| TempUser(n.clone())).collect();
    for user in &made {
        assert!(!user.exists(), "{} is left from an earlier run", user.0);
        assert!(user.0.len() <= 32, "{}", user.0);
    }
    let dir = passable_dir();
    let init = |home: &std::path::Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_otto-node"))
            .args(["init", "--org", "acme", "--name", &node, "--json", "--home"])
            .arg(home)
            .env_remove("OTTO_HOME")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        made["run_as"].as_str().unwrap().to_owned()
    };
    // Two nodes of the same name (two orgs may name theirs alike) on one machine.
    let first = init(&dir.path().join("a"));
    let second = init(&dir.path().join("b"));
    assert_eq!([&first, &second], [&names[0], &names[1]]);
    assert!(first.starts_with("otto-step-ci-"), "{first}");
    let uid = |name: &str| otto_node::step_user::lookup(name).unwrap().unwrap().uid;
    assert_ne!(uid(&first), uid(&second));
    for (home, name) in [("a", &first), ("b", &second)] {
        let config = std::fs::read_to_string(dir.path().join(home).join("config.toml")).unwrap();
        assert!(
            config.contains(&format!("\nrun_as = \"{name}\"\n")),
            "{config}"
        );
    }
    drop(made);
}

/// A home made before each node got its own step user names the shared `otto-step`: it
/// still starts, and says at start what sharing that user means.
#[test]
fn a_node_whose_steps_run_as_the_shared_otto_step_warns_at_start() {
    if let Some(reason) = cannot_run() {
        println!("skipped: {reason}");
        return;
    }
    // The tests' nodes name otto-step when given no --run-as.
    let mut node = Node::init_in(passable_dir(), "acme", "n1", &[]);
    node.start();
    let log = node.log();
    assert!(node.terminate());
    assert!(
        log.contains(
            "steps run as otto-step, the step user root nodes shared before each got its own"
        ),
        "{log}"
    );
}

#[test]
fn init_run_as_refuses_a_home_its_user_could_not_reach_and_makes_nothing() {
    if let Some(reason) = cannot_run() {
        println!("skipped: {reason}");
        return;
    }
    let user = TempUser::new("far");
    // A directory no other user can pass through (as `mktemp -d` makes them).
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let home = dir.path().join("home");
    let out = Command::new(env!("CARGO_BIN_EXE_otto-node"))
        .args([
            "init", "--org", "acme", "--name", "n1", "--run-as", &user.0, "--home",
        ])
        .arg(&home)
        .env_remove("OTTO_HOME")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: --run-as {}: the step user could not reach the work directory {}-work: {} is mode 700;",
            user.0,
            home.display(),
            dir.path().display()
        )),
        "{stderr}"
    );
    assert!(!home.exists(), "nothing is made");
    assert!(!user.exists(), "no user is made");
}

#[test]
fn init_run_as_refuses_root_and_a_bad_name_in_one_line() {
    if let Some(reason) = cannot_run() {
        println!("skipped: {reason}");
        return;
    }
    let dir = passable_dir();
    for (name, why) in [
        ("root", "is root; steps need an unprivileged user"),
        ("-x", "\"-x\" is not a valid user name"),
    ] {
        let home = dir.path().join("home");
        let out = Command::new(env!("CARGO_BIN_EXE_otto-node"))
            .args(["init", "--org", "acme", "--name", "n1", "--home"])
            .arg(&home)
            .arg(format!("--run-as={name}"))
            .env_remove("OTTO_HOME")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            text(&out.stderr),
            format!("error: --run-as {name}: {why}\n")
        );
        assert!(!home.exists(), "nothing is made");
    }
}
