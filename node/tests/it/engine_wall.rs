//! The wall seen from the node: a real engine runs real steps in real agents, and the
//! steps try to reach the node: the agent's socket, the node's home (where `node.key` and
//! `api.token` live), the node process's environment and memory. Each attempt must fail.

use otto_agent_protocol::StepUser;
use otto_node::store::RunState;
use otto_pipeline::Facts;

use crate::engine_support::TestNode;

/// Why these tests cannot run here, if they cannot.
fn no_landlock() -> Option<&'static str> {
    let abi = otto_node::engine::wall_abi(&crate::engine_support::agent_path())
        .expect("the agent says which wall it builds");
    (abi == 0).then_some("skipped: the kernel has no Landlock (not built in or not enabled)")
}

/// Runs one stage of `script` and returns its log, after checking the run succeeded.
async fn run_stage(node: &mut TestNode, script: &str) -> String {
    let ottofile =
        format!("stage('Hostile') {{\n  steps {{\n    sh '''\n{script}\n'''\n  }}\n}}\n");
    let run = node.submit(&ottofile, Facts::default(), &[]).await;
    let state = node.wait_run(run).await;
    let log = node.log_text(run, "Hostile");
    assert_eq!(state, RunState::Succeeded, "{log}");
    assert!(log.contains("done"), "{log}");
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_of_the_nodes_own_user_cannot_use_the_agent_socket() {
    if let Some(skip) = no_landlock() {
        println!("{skip}");
        return;
    }
    // Steps of the node's own user: the socket's file permissions let them in, so the
    // node must refuse them by process id. The step finds the socket in the agent's
    // command line (world-readable) and speaks the agent protocol on it.
    let mut node = TestNode::start();
    let script = r#"
      socket=$(tr '\0' '\n' < /proc/$PPID/cmdline | grep 'agent.sock$')
      echo "socket found: ${socket:+yes}"
      python3 - "$socket" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
    s.sendall(b"GET /job HTTP/1.1\r\nhost: otto-node\r\notto-agent-protocol: 1\r\n\r\n")
    s.settimeout(10)
    answer = s.recv(65536)
    print("ANSWERED" if answer else "socket: no answer")
except OSError as error:
    print("socket: no answer, errno", error.errno)
PY
      echo done
    "#;
    let log = run_stage(&mut node, script).await;
    assert!(log.contains("socket found: yes"), "{log}");
    assert!(log.contains("socket: no answer"), "{log}");
    assert!(!log.contains("ANSWERED"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_cannot_read_the_nodes_files_environment_or_memory() {
    if let Some(skip) = no_landlock() {
        println!("{skip}");
        return;
    }
    // As root, steps run as nobody, as a root node's steps run as its `run_as` user;
    // otherwise as the test's user, as an unprivileged node's steps do.
    let user = rustix::process::geteuid().is_root().then_some(StepUser {
        uid: 65534,
        gid: 65534,
    });
    let mut node = TestNode::start_as(Vec::new(), user);
    // The node is not dumpable (otto-node start makes it so): its /proc files are root's.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .expect("not dumpable");
    std::fs::write(node.path("node.key"), "NODE-KEY-BYTES").expect("key");
    std::fs::write(node.path("api.token"), "API-TOKEN-BYTES").expect("token");
    let home = node.dir.path().display().to_string();
    let me = std::process::id();
    let script = format!(
        r#"
      for f in node.key api.token store.redb; do
        if cat "{home}/$f" > /dev/null; then echo "LEAK $f"; fi
      done
      if cat /proc/{me}/environ > /dev/null; then echo LEAK-ENVIRON; fi
      if head -c 1 /proc/{me}/mem > /dev/null; then echo LEAK-MEM; fi
      if kill -0 {me}; then echo SIGNALLED; fi
      echo done
    "#
    );
    let log = run_stage(&mut node, &script).await;
    for leak in ["LEAK", "SIGNALLED", "NODE-KEY", "API-TOKEN"] {
        assert!(!log.contains(leak), "{leak} in {log}");
    }
    assert!(log.contains("Permission denied"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_packages_reach_the_agent_through_its_protocol_not_through_the_home() {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(skip) = no_landlock() {
        println!("{skip}");
        return;
    }
    // The package lives in the node's home, which the wall hides: the node sends it to
    // the agent as a blob, so the step runs while the home stays out of reach.
    let mut node = TestNode::start_with_packages(&["steps"]);
    let package = node.path("steps/greet");
    std::fs::create_dir_all(&package).expect("mkdir");
    std::fs::write(
        package.join("manifest.yml"),
        "symbol: greet\ndescription: Greets.\nparameters:\n  name:\n    type: string\n    required: true\nentrypoint: run.sh\n",
    )
    .expect("manifest");
    std::fs::write(
        package.join("run.sh"),
        "#!/bin/sh\necho \"greeted from $(dirname \"$0\")\"\n",
    )
    .expect("run.sh");
    std::fs::set_permissions(
        package.join("run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    let source = package.display().to_string();
    let ottofile = format!(
        "stage('Hostile') {{\n  steps {{\n    greet 'world'\n    sh 'cat {source}/run.sh || echo home-hidden'\n  }}\n}}\n"
    );
    let dirs = [node.path("steps")];
    let catalog = otto_node::capabilities::step_catalog(&dirs).expect("catalog");
    let plan = otto_pipeline::plan(
        &otto_pipeline::MemSource::new().with("pipeline/Ottofile", &ottofile),
        std::path::Path::new("pipeline/Ottofile"),
        &Facts::default(),
        &catalog,
    )
    .map(|p| p.plan)
    .unwrap_or_else(|failed| panic!("does not plan:\n{failed}"));
    let run = node.create_run(&plan, &ottofile, &[]);
    node.engine.submit(run).await.expect("submit");
    let state = node.wait_run(run).await;
    let log = node.log_text(run, "Hostile");
    assert_eq!(state, RunState::Succeeded, "{log}");
    assert!(log.contains("greeted from /"), "{log}");
    assert!(!log.contains(&format!("greeted from {source}")), "{log}");
    assert!(log.contains("home-hidden"), "{log}");
}
