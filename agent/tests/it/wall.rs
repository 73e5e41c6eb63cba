//! Hostile steps against the wall: the real `otto-agent` runs real steps that try to get
//! out, and each attempt must fail, while ordinary builds still work inside.
//!
//! The layout is the node's: a home holding `node.key` and `api.token`, and a work
//! directory outside it with this stage's workspace next to another stage's workspace and
//! private directory. Tests that need Landlock print `skipped: REASON` without it; the
//! ones that switch users need root and run as the node's own user otherwise.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::common::*;
use otto_agent::protocol::{
    CacheRestore, CacheSave, EventBody, Job, Limits, Outcome, SecretValue, StepUser, Stream, Wall,
};

/// The unprivileged user the root-only tests run steps as.
const NOBODY: StepUser = StepUser {
    uid: 65534,
    gid: 65534,
};

/// A node's directories for one walled stage.
struct Layout {
    _dir: tempfile::TempDir,
    home: PathBuf,
    work: PathBuf,
    workspace: PathBuf,
    /// Another stage's secret file, in its private directory.
    other_secret: PathBuf,
}

impl Layout {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = fs::canonicalize(dir.path()).expect("canonical");
        // A step user must reach its workspace: the directories on the way are 0711, as
        // the node makes its work directory.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o711)).expect("chmod");
        let home = root.join("home");
        let work = root.join("home-work");
        let run = work.join("run-1");
        fs::create_dir_all(home.join("blobs")).expect("home");
        fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).expect("chmod");
        fs::write(home.join("node.key"), "NODE-KEY-BYTES").expect("key");
        fs::write(home.join("api.token"), "API-TOKEN-BYTES").expect("token");
        let other = run.join(".otto-private-other").join("secrets");
        fs::create_dir_all(&other).expect("other stage");
        fs::write(other.join("PROD_DB_PASSWORD"), "OTHER-STAGE-SECRET").expect("secret");
        fs::create_dir_all(run.join("deploy-1")).expect("other workspace");
        for dir in [&work, &run] {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o711)).expect("chmod");
        }
        Self {
            workspace: run.join("build-1"),
            other_secret: other.join("PROD_DB_PASSWORD"),
            home,
            work,
            _dir: dir,
        }
    }

    /// Sets up `job` to run walled in this layout.
    fn wall(&self, job: &mut Job, user: Option<StepUser>) {
        job.workspace = self.workspace.clone();
        job.wall = Some(Wall {
            hidden: vec![self.home.clone(), self.work.clone()],
            writable: Vec::new(),
            user,
            required: true,
        });
        job.env
            .insert("NODE_HOME".into(), self.home.display().to_string());
        job.env.insert(
            "OTHER_SECRET".into(),
            self.other_secret.display().to_string(),
        );
        job.env
            .insert("TEST_PID".into(), std::process::id().to_string());
    }
}

/// Why the wall's tests cannot run here, if they cannot.
fn no_landlock() -> Option<String> {
    (otto_agent::wall::landlock_abi() == 0)
        .then(|| "skipped: the kernel has no Landlock (not built in or not enabled)".to_owned())
}

/// The user to run steps as: nobody when the test runs as root (which ignores process
/// limits), else the test's own.
fn step_user() -> Option<StepUser> {
    rustix::process::geteuid().is_root().then_some(NOBODY)
}

/// Runs `script` walled in a fresh layout; returns the node and the layout.
async fn run_walled(script: &str, edit: impl FnOnce(&mut Job)) -> (TestNode, Layout) {
    let layout = Layout::new();
    let node = TestNode::start_with(vec![sh(script)], |job| {
        layout.wall(job, step_user());
        job.secrets
            .insert("MY_TOKEN".into(), SecretValue::new("MY-OWN-SECRET"));
        job.timeout_secs = Some(120);
        edit(job);
    })
    .await;
    node.run().await;
    (node, layout)
}

#[tokio::test]
async fn a_step_cannot_read_the_node_home_walking_up_or_by_name() {
    if let Some(skip) = no_landlock() {
        println!("{skip}");
        return;
    }
    let script = r#"
        d="$PWD"
        while [ "$d" != / ]; do
          d=$(dirname "$d")
          for f in node.key api.token; do
            if cat "$d/$f" 2>/dev/null; then echo "LEAK $d/$f"; fi
          done
        done
        if cat "$NODE_HOME/api.token"; then echo LEAK-BY-NAME; fi
        if ls "$NODE_HOME"; then echo LEAK-LISTING; fi
        if ls "$NODE_HOME/blobs"; then echo LEAK-BLOBS; fi
        echo done
    "#;
    let (node, _layout) = run_walled(script, |_| {}).await;
    let text = node.all_text();
    assert_eq!(node.result().outcome, Outcome::Success, "{text}");
    assert!(text.contains("done"), "{text}");
    for leak in ["LEAK", "NODE-KEY-BYTES", "API-TOKEN-BYTES"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
    assert!(text.contains("Permission denied"), "{text}");
}

#[tokio::test]
async fn a_step_cannot_read_another_stages_secrets_or_workspace() {
    if let Some(skip) = no_landlock() {
        println!("{skip}");
        return;
    }
    let script = r#"
        if cat "$OTHER_SECRET"; then echo LEAK-SECRET; fi
        if ls "$(dirname "$OTTO_WORKSPACE")"; then echo LEAK-LISTING; fi
        if ls "$(dirname "$OTTO_WORKSPACE")/deploy-1"; then echo LEAK-WORKSPACE; fi
        cat "$OTTO_SECRETS_DIR/MY_TOKEN" > /dev/null && echo own-secret-readable
    "#;
    let (node, _layout) = run_walled(script, |_| {}).await;
    let text = node.all_text();
    assert!(!text.contains("LEAK"), "{text}");
    assert!(!text.contains("OTHER-STAGE-SECRET"), "{text}");
    assert!(text.contains("own-secret-readable"), "{text}");
}

#[tokio::test]
async fn a_step_cannot_read_or_trace_processes_outside_its_wall() {
    if let Some(skip) = no_landlock() {
        println!("{skip}");
        return;
    }
    // The agent (its parent) and the process that started it, which stands for the node.
    let script = r#"
        for pid in "$PPID" "$TEST_PID" 1; do
          if cat "/proc/$pid/environ" > /dev/null; then echo "LEAK-ENVIRON $pid"; fi
          if head -c 1 "/proc/$pid/mem" > /dev/null; then echo "LEAK-MEM $pid"; fi
          if kill -0 "$pid"; then echo "SIGNALLED $pid"; fi
          python3 -c '
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH = 16
if libc.ptrace(PTRACE_ATTACH, int(sys.argv[1]), 0, 0) == 0:
    print("TRACED", sys.argv[1])
' "$pid"
        done
        echo done
    "#;
    let (node, _layout) = run_walled(script, |_| {}).await;
    let text = node.all_text();
    assert!(text.contains("done"), "{text}");
    for leak in ["LEAK", "SIGNALLED", "TRACED"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
}

#[tokio::test]
async fn a_step_writes_only_its_workspace_and_temporary_directory() {
    if let Some(skip) = no_landlock() {
        println!("{skip}");
        return;
    }
    let script = r#"
        probe="otto-wall-probe-$$"
        for dir in /tmp /var/tmp "$NODE_HOME" "$(dirname "$OTTO_WORKSPACE")" /dev/shm; do
          if echo x > "$dir/$probe"; then echo "WROTE $dir"; rm -f "$dir/$probe"; fi
        done
        echo ok > "$OTTO_WORKSPACE/inside" && echo wrote-workspace
        echo ok > "$TMPDIR/scratch" && echo wrote-tmpdir
        echo ok > /dev/null && echo wrote-dev-null
    "#;
    let (node, layout) = run_walled(script, |_| {}).await;
    let text = node.all_text();
    assert!(!text.contains("WROTE"), "{text}");
    for ok in ["wrote-workspace", "wrote-tmpdir", "wrote-dev-null"] {
        assert!(text.contains(ok), "{ok} missing from {text}");
    }
    assert!(layout.workspace.join("inside").is_file());
}

#[tokio::test]
async fn an_escaped_setsid_child_does_not_outlive_its_step() {
    if let Some(skip) = no_landlock() {
        println!("{skip}");
        return;
    }
    let script = r#"
        setsid sh -c 'sleep 600; echo outlived > "$OTTO_WORKSPACE/late"' > /dev/null 2>&1 < /dev/null &
        sh -c 'sh -c "sleep 600" & echo $! > "$OTTO_WORKSPACE/grandchild"' > /dev/null 2>&1
        echo $! > "$OTTO_WORKSPACE/escaped"
    "#;
    let (node, layout) = run_walled(script, |_| {}).await;
    assert_eq!(
        node.result().outcome,
        Outcome::Success,
        "{}",
        node.all_text()
    );
    for file in ["escaped", "grandchild"] {
        let pid: u32 = fs::read_to_string(layout.workspace.join(file))
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        assert!(
            !alive(pid),
            "the step's background process {pid} ({file}) outlived it"
        );
    }
}

#[tokio::test]
async fn a_fork_bomb_fails_within_the_process_limit_and_leaves_nothing() {
    if let Some(skip) = no_landlock() {
        println!("{skip}");
        return;
    }
    let script = r#"
        echo $$ > "$OTTO_WORKSPACE/bomb"
        bomb() { bomb & bomb & wait; }
        bomb
    "#;
    let (node, layout) = run_walled(script, |job| {
        job.limits = Limits {
            processes: 64,
            ..Limits::default()
        };
        job.timeout_secs = Some(20);
    })
    .await;
    let text = node.all_text();
    // The bomb hit the limit and collapsed (how its first shell exits does not matter);
    // the machine still starts processes.
    assert!(text.contains("Cannot fork"), "{text}");
    assert!(
        std::process::Command::new("true")
            .status()
            .expect("start a process")
            .success()
    );
    // Nothing of the stage is left: no process has its cwd in the workspace.
    let workspace = fs::canonicalize(&layout.workspace).expect("workspace");
    let left: Vec<String> = fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter(|e| {
            fs::read_link(e.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(&workspace))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "processes left: {left:?}");
}

#[tokio::test]
async fn output_beyond_the_limit_is_dropped_with_one_line_saying_so() {
    if let Some(skip) = no_landlock() {
        println!("{skip}");
        return;
    }
    // 16 MiB of output against a 1 MiB limit; the step itself succeeds.
    let script = "head -c 16777216 /dev/zero | tr '\\0' 'x' | fold -w 1000";
    let (node, _layout) = run_walled(script, |job| {
        job.limits = Limits {
            output_bytes: 1 << 20,
            ..Limits::default()
        };
    })
    .await;
    assert_eq!(node.result().outcome, Outcome::Success);
    let seen = node.seen();
    let mut bytes = 0;
    let mut notices = Vec::new();
    for event in &seen.events {
        if let EventBody::Log(line) = &event.body {
            match line.stream {
                Stream::Agent if line.line.contains("truncated") => {
                    notices.push(line.line.clone());
                }
                Stream::Stdout | Stream::Stderr => bytes += line.line.len() + 1,
                Stream::Agent => {}
            }
        }
    }
    assert!(bytes <= 1 << 20, "{bytes} bytes logged");
    assert!(bytes > (1 << 20) - 2000, "only {bytes} bytes logged");
    assert_eq!(
        notices,
        [
            "output truncated after 1 MiB: the stage's output limit ([agent] limits.output_bytes = 1048576)"
        ]
    );
}

#[tokio::test]
async fn ordinary_builds_work_inside_the_wall() {
    if let Some(skip) = no_landlock() {
        println!("{skip}");
        return;
    }
    let script = r#"
        git init -q repo
        cd repo
        echo hello > README
        git add README
        git -c user.email=ci@example.com -c user.name=ci commit -q -m first
        git log --oneline | wc -l
        cd ..
        python3 -m venv --without-pip venv
        venv/bin/python -c 'import sys, tempfile; f = tempfile.NamedTemporaryFile(); print("venv", sys.prefix != sys.base_prefix)'
        mkdir -p out && sh -c 'echo built > out/result' && cat out/result
    "#;
    let (node, layout) = run_walled(script, |_| {}).await;
    let text = node.all_text();
    assert_eq!(node.result().outcome, Outcome::Success, "{text}");
    assert_eq!(node.output(), ["1", "venv True", "built"], "{text}");
    assert!(layout.workspace.join("repo/.git").is_dir());
}

#[tokio::test]
async fn a_required_wall_runs_as_the_step_user_and_hands_it_the_workspace() {
    if let Some(skip) = no_landlock() {
        println!("{skip}");
        return;
    }
    if !rustix::process::geteuid().is_root() {
        println!("skipped: switching the step's user needs root");
        return;
    }
    let script = r#"
        id -u
        touch "$OTTO_WORKSPACE/mine" && stat -c %u "$OTTO_WORKSPACE/mine"
        cat "$OTTO_SECRETS_DIR/MY_TOKEN" > /dev/null && echo secret-readable
        echo "$HOME" | grep -q otto-private && echo home-private
    "#;
    let (node, _layout) = run_walled(script, |_| {}).await;
    let text = node.all_text();
    assert_eq!(
        node.output(),
        ["65534", "65534", "secret-readable", "home-private"],
        "{text}"
    );
}

/// A root agent with no step user (a root node without `[agent] run_as`, #12 F3): the
/// step still runs as uid 0, but with no capability in any set and no way to gain one, so
/// it can neither open a raw socket (sniffing the loopback for API tokens) nor read a root
/// process's environment.
#[tokio::test]
async fn a_root_step_without_a_step_user_has_no_capabilities_and_gains_none() {
    if let Some(skip) = no_landlock() {
        println!("{skip}");
        return;
    }
    if !rustix::process::geteuid().is_root() {
        println!("skipped: only a root agent has capabilities to drop");
        return;
    }
    if let Some(skip) = missing_tool("python3") {
        println!("{skip}");
        return;
    }
    let script = r#"
        grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status
        id -u
        python3 -c '
import socket
try:
    socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    print("RAW-SOCKET")
except OSError as e:
    print("raw socket refused:", e.strerror)
'
        for pid in "$PPID" "$TEST_PID" 1; do
          if cat "/proc/$pid/environ" > /dev/null; then echo "LEAK-ENVIRON $pid"; fi
        done
        echo done
    "#;
    let layout = Layout::new();
    let node = TestNode::start_with(vec![sh(script)], |job| {
        layout.wall(job, None);
        job.timeout_secs = Some(120);
    })
    .await;
    node.run().await;
    let text = node.all_text();
    assert_eq!(node.result().outcome, Outcome::Success, "{text}");
    let out = node.output();
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        let line = format!("{set}:\t0000000000000000");
        assert!(out.contains(&line), "{line:?} not in {text}");
    }
    assert!(out.contains(&"NoNewPrivs:\t1".to_owned()), "{text}");
    assert!(out.contains(&"0".to_owned()), "still uid 0: {text}");
    assert!(
        text.contains("raw socket refused: Operation not permitted"),
        "{text}"
    );
    assert!(text.contains("done"), "{text}");
    for leak in ["RAW-SOCKET", "LEAK"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
}

#[tokio::test]
async fn a_step_cannot_unwall_the_steps_after_it() {
    if let Some(skip) = no_landlock() {
        println!("{skip}");
        return;
    }
    // The first step overwrites every file it can reach in its private directory with a
    // wall that lets everything through and keeps the agent's user; the second must still
    // be walled (and still be the step user when the test runs as root).
    let forge = r#"
        open='{"read":["/"],"write":["/"],"landlock":false,"user":null,"nproc":null,"memory":1073741824}'
        private=$(dirname "$OTTO_SECRETS_DIR")
        find "$private" -type f 2>/dev/null | while read -r f; do
          printf '%s' "$open" > "$f" 2>/dev/null && echo "rewrote $f"
        done
        for d in "$private" "$private"/*; do printf '%s' "$open" > "$d/wall.json" 2>/dev/null; done
        echo forged
    "#;
    let probe = r#"
        if cat "$NODE_HOME/api.token"; then echo LEAK-HOME; fi
        if touch /etc/otto-unwalled 2>/dev/null; then echo LEAK-WRITE; rm -f /etc/otto-unwalled; fi
        id -u
    "#;
    let layout = Layout::new();
    let node = TestNode::start_with(vec![sh(forge), sh(probe)], |job| {
        layout.wall(job, step_user());
        job.secrets
            .insert("MY_TOKEN".into(), SecretValue::new("MY-OWN-SECRET"));
        job.timeout_secs = Some(120);
    })
    .await;
    node.run().await;
    let text = node.all_text();
    assert_eq!(node.result().outcome, Outcome::Success, "{text}");
    assert!(text.contains("forged"), "{text}");
    for leak in ["LEAK", "API-TOKEN-BYTES"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
    let me = rustix::process::geteuid().as_raw();
    let expected = step_user().map_or(me, |u| u.uid).to_string();
    assert_eq!(node.output().last(), Some(&expected), "{text}");
}

#[tokio::test]
async fn secrets_and_the_temporary_directory_live_next_to_the_workspace_not_in_tmp() {
    let (node, layout) = run_walled("echo \"$OTTO_SECRETS_DIR\"; echo \"$TMPDIR\"", |_| {}).await;
    let output = node.output();
    assert_eq!(output.len(), 2, "{}", node.all_text());
    let run = layout.workspace.parent().expect("run directory");
    for dir in &output {
        assert!(
            Path::new(dir).starts_with(run) && dir.contains("/.otto-private-"),
            "{dir} is not a private directory next to the workspace"
        );
    }
}

#[tokio::test]
async fn a_walled_step_gets_a_private_writable_home_no_other_stage_sees() {
    if let Some(skip) = no_landlock() {
        println!("{skip}");
        return;
    }
    // As the node's own user too (no step user): the wall alone decides where it writes.
    let layout = Layout::new();
    let agent_home = std::env::var("HOME").unwrap_or_default();
    let script = r#"
        echo "$HOME"
        mkdir -p "$HOME/.npm/_cacache" && echo cached > "$HOME/.npm/_cacache/x"
        cat "$HOME/.npm/_cacache/x"
        ls "$HOME/.pip-seen" 2>/dev/null || echo fresh
        touch "$HOME/.pip-seen"
    "#;
    let mut homes = Vec::new();
    for stage in ["build-1", "test-1"] {
        let node = TestNode::start_with(vec![sh(script)], |job| {
            layout.wall(job, None);
            job.workspace = layout.workspace.with_file_name(stage);
        })
        .await;
        let result = node.run().await;
        let text = node.all_text();
        assert_eq!(result.outcome, Outcome::Success, "{text}");
        let output = node.output();
        assert_eq!(
            output.get(1..),
            Some(&["cached".to_owned(), "fresh".to_owned()][..]),
            "{text}"
        );
        homes.push(output[0].clone());
    }
    let run = layout.workspace.parent().expect("run directory");
    for home in &homes {
        assert!(
            Path::new(home).starts_with(run)
                && home.contains("/.otto-private-")
                && home.ends_with("/home"),
            "{home} is not in the stage's private directory"
        );
        assert_ne!(home, &agent_home);
    }
    assert_ne!(homes[0], homes[1], "two stages share a HOME");
    assert!(!Path::new(&agent_home).join(".pip-seen").exists());
}

/// Why `tool --version` cannot run here, if it cannot.
fn missing_tool(tool: &str) -> Option<String> {
    let ran = std::process::Command::new(tool)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match ran {
        Ok(status) if status.success() => None,
        _ => Some(format!("skipped: {tool} is not installed here")),
    }
}

/// Runs `script` walled in `layout` (as the agent's own user) in the workspace `stage`
/// of its run, with `edit` applied to the job and `blob` stored on the test node.
async fn run_in(
    layout: &Layout,
    stage: &str,
    script: &str,
    blob: Option<Vec<u8>>,
    edit: impl FnOnce(&mut Job),
) -> TestNode {
    let node = TestNode::start_with(vec![sh(script)], |job| {
        layout.wall(job, None);
        job.workspace = layout.workspace.with_file_name(stage);
        job.timeout_secs = Some(300);
        edit(job);
    })
    .await;
    if let Some(blob) = blob {
        node.put_blob(blob);
    }
    node.run().await;
    node
}

#[tokio::test]
async fn cargo_builds_offline_inside_the_wall_with_a_cached_target() {
    if let Some(skip) = no_landlock().or_else(|| missing_tool("cargo")) {
        println!("{skip}");
        return;
    }
    let layout = Layout::new();
    let make_crate = r#"
        mkdir -p src
        printf '[package]\nname = "hello"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n' > Cargo.toml
        printf 'fn main() { println!("hello from the wall"); }\n' > src/main.rs
    "#;
    let first = run_in(
        &layout,
        "build-1",
        &format!("{make_crate}\ncargo build --offline --quiet\n./target/debug/hello"),
        None,
        |job| {
            job.save_caches = vec![CacheSave {
                name: "target".into(),
                paths: vec!["target/".into()],
            }];
        },
    )
    .await;
    let text = first.all_text();
    let result = first.result();
    assert_eq!(result.outcome, Outcome::Success, "{text}");
    assert_eq!(first.output(), ["hello from the wall"], "{text}");
    let cache = result.caches_saved.first().cloned().expect("target/ saved");
    let bytes = first
        .seen()
        .blobs
        .get(&cache.digest)
        .cloned()
        .expect("cache stored");

    // A later stage restores target/ and builds again, in its own workspace and HOME.
    let second = run_in(
        &layout,
        "build-2",
        &format!(
            "test -d target/debug && echo target-restored\n{make_crate}\ncargo build --offline --quiet\n./target/debug/hello"
        ),
        Some(bytes),
        |job| {
            job.restore_caches = vec![CacheRestore {
                name: "target".into(),
                paths: vec!["target/".into()],
                digest: cache.digest.clone(),
            }];
        },
    )
    .await;
    let text = second.all_text();
    assert_eq!(second.result().outcome, Outcome::Success, "{text}");
    assert_eq!(
        second.output(),
        ["target-restored", "hello from the wall"],
        "{text}"
    );
}

#[tokio::test]
async fn npm_ci_works_inside_the_wall_without_the_network() {
    if let Some(skip) = no_landlock().or_else(|| missing_tool("npm")) {
        println!("{skip}");
        return;
    }
    let layout = Layout::new();
    let script = r#"
        cat > package.json <<'JSON'
{"name": "walled", "version": "1.0.0", "private": true,
 "scripts": {"test": "node -e \"console.log('tests ran')\""}}
JSON
        cat > package-lock.json <<'JSON'
{"name": "walled", "version": "1.0.0", "lockfileVersion": 3, "requires": true,
 "packages": {"": {"name": "walled", "version": "1.0.0"}}}
JSON
        export npm_config_update_notifier=false
        npm ci --offline --no-audit --no-fund --loglevel=error && echo installed
        npm test --silent
        test -d "$HOME/.npm" && echo npm-home-private
    "#;
    let node = run_in(&layout, "build-1", script, None, |_| {}).await;
    let text = node.all_text();
    assert_eq!(node.result().outcome, Outcome::Success, "{text}");
    let ours: Vec<String> = node
        .output()
        .into_iter()
        .filter(|l| ["installed", "tests ran", "npm-home-private"].contains(&l.as_str()))
        .collect();
    assert_eq!(
        ours,
        ["installed", "tests ran", "npm-home-private"],
        "{text}"
    );
}

/// The reviewer's payload (issue #12, F1): a shared object whose constructor reads the
/// node's key as soon as the dynamic loader maps it into a process.
const PRELOAD_PAYLOAD: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((constructor)) static void evil(void) {
    const char *home = getenv("NODE_HOME");
    char path[4096], buf[64] = {0};
    snprintf(path, sizeof path, "%s/node.key", home ? home : "/nonexistent");
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        fprintf(stderr, "EVIL uid=%d LEAK %s\n", (int)getuid(), buf);
        fclose(f);
    } else {
        fprintf(stderr, "EVIL uid=%d walled\n", (int)getuid());
    }
}
"#;

/// Compiles [`PRELOAD_PAYLOAD`] into `dir/evil.so` (readable by anyone).
fn build_payload(dir: &Path) -> Result<PathBuf, String> {
    let source = dir.join("evil.c");
    let object = dir.join("evil.so");
    fs::write(&source, PRELOAD_PAYLOAD).expect("payload source");
    let built = std::process::Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&object)
        .arg(&source)
        .output();
    match built {
        Ok(out) if out.status.success() => {
            fs::set_permissions(&object, fs::Permissions::from_mode(0o755)).expect("chmod");
            Ok(object)
        }
        Ok(out) => Err(format!(
            "skipped: gcc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => Err(format!("skipped: no gcc ({e})")),
    }
}

#[tokio::test]
async fn a_loader_variable_in_the_settings_runs_nothing_before_the_wall() {
    if let Some(skip) = no_landlock() {
        println!("{skip}");
        return;
    }
    // The step user (nobody when the test is root: a run_as node) and the agent's own
    // user (the unprivileged node, or root without run_as): in neither may the payload
    // run outside the wall, where it could read the node's key.
    let mut users = vec![step_user()];
    if step_user().is_some() {
        users.push(None);
    }
    for user in users {
        let layout = Layout::new();
        let payload = match build_payload(layout.home.parent().expect("layout root")) {
            Ok(path) => path,
            Err(skip) => {
                println!("{skip}");
                return;
            }
        };
        let node = TestNode::start_with(vec![sh("echo step ran")], |job| {
            layout.wall(job, user);
            job.env
                .insert("LD_PRELOAD".into(), payload.display().to_string());
            job.secrets
                .insert("MY_TOKEN".into(), SecretValue::new("MY-OWN-SECRET"));
            job.secret_env = true;
            job.timeout_secs = Some(120);
        })
        .await;
        node.run().await;
        let text = node.all_text();
        assert_eq!(node.result().outcome, Outcome::Success, "{user:?}: {text}");
        assert!(text.contains("step ran"), "{user:?}: {text}");
        for leak in ["LEAK", "NODE-KEY-BYTES"] {
            assert!(!text.contains(leak), "{user:?}: {leak} in {text}");
        }
        // The payload did run, but only in the step, inside the wall, as the step's user.
        let me = rustix::process::geteuid().as_raw();
        let uid = user.map_or(me, |u| u.uid);
        assert!(
            text.contains(&format!("EVIL uid={uid} walled")),
            "{user:?}: {text}"
        );
    }
}

/// pip installs into a venv in the workspace what it unpacks in `TMPDIR`, which is another
/// mount than the workspace inside the wall (a rename between them fails with `EXDEV`),
/// and sets modes on what it installs: it still works.
#[tokio::test]
async fn pip_installs_a_wheel_into_a_venv_inside_the_wall() {
    if let Some(skip) = no_landlock() {
        println!("{skip}");
        return;
    }
    if let Some(skip) = missing_tool("python3") {
        println!("{skip}");
        return;
    }
    let script = r##"
        python3 -m venv venv || { echo "skipped: no venv with pip here"; exit 0; }
        python3 - <<'PY'
import zipfile
with zipfile.ZipFile("hello-1.0-py3-none-any.whl", "w") as z:
    z.writestr("hello/__init__.py", "X = 'hi from hello'\n")
    z.writestr("hello/run.sh", "#!/bin/sh\necho run\n")
    z.writestr("hello-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: hello\nVersion: 1.0\n")
    z.writestr("hello-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: otto\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr("hello-1.0.dist-info/RECORD", "")
PY
        venv/bin/pip install --no-index --disable-pip-version-check -q ./hello-1.0-py3-none-any.whl
        venv/bin/python -c 'import hello; print(hello.X)'
        chmod +x venv/lib/python3*/site-packages/hello/run.sh && echo chmod-installed
    "##;
    let (node, _layout) = run_walled(script, |_| {}).await;
    let text = node.all_text();
    if text.contains("skipped:") {
        println!("skipped: python3 has no venv with pip here");
        return;
    }
    assert_eq!(node.result().outcome, Outcome::Success, "{text}");
    assert_eq!(
        node.output(),
        ["hi from hello", "chmod-installed"],
        "{text}"
    );
}

/// Mode, owner, times and extended attributes of `path`, as the tests compare them.
fn attributes(path: &Path) -> (u32, u32, i64) {
    use std::os::unix::fs::MetadataExt as _;
    let meta = fs::metadata(path).expect("stat");
    (meta.mode(), meta.uid(), meta.mtime())
}

/// Tries, from a step, what Landlock does not govern: mode, owner, times and extended
/// attributes of each path in `$TARGETS` (space-separated); prints `CHANGED WHAT PATH` for
/// each that works.
const CHANGE_ATTRIBUTES: &str = r#"
    for f in $TARGETS; do
      chmod 4777 "$f" 2>/dev/null && echo "CHANGED mode $f"
      chown 65534:65534 "$f" 2>/dev/null && echo "CHANGED owner $f"
      touch -c -d 2001-02-03 "$f" 2>/dev/null && echo "CHANGED times $f"
      if command -v python3 > /dev/null; then
        python3 -c 'import os, sys; os.setxattr(sys.argv[1], "user.otto", b"x")' "$f" 2>/dev/null \
          && echo "CHANGED xattr $f"
      fi
    done
    chmod 0755 "$OTTO_WORKSPACE" && echo chmod-workspace
    echo x > "$OTTO_WORKSPACE/mine" && chmod 0600 "$OTTO_WORKSPACE/mine" && echo chmod-own-file
    mkdir -p "$TMPDIR/t" && chmod 0700 "$TMPDIR/t" && echo chmod-tmpdir
    echo x > /dev/null && echo wrote-dev-null
"#;

/// #12 F3a: a root node's step with no step user runs as uid 0 without capabilities, and
/// Landlock does not govern mode changes: it made a set-user-id-root copy of `id` that
/// `nobody` ran as euid 0, and chmod'ed its own node's home open. Outside its own
/// directories the file system is now read-only to it, and the set-user-id copy it may
/// still make in its workspace is out of every other user's reach.
#[tokio::test]
async fn a_root_step_cannot_chmod_chown_or_touch_what_root_owns_nor_leave_a_setuid_copy_others_reach()
 {
    if let Some(skip) = no_landlock() {
        println!("{skip}");
        return;
    }
    if !rustix::process::geteuid().is_root() {
        println!("skipped: only a root agent runs steps as uid 0");
        return;
    }
    let layout = Layout::new();
    let root = layout.home.parent().expect("layout root").to_owned();
    let file = root.join("roots-file");
    fs::write(&file, "root's").expect("file");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
    let dir = root.join("roots-dir");
    fs::create_dir(&dir).expect("dir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod");
    let targets = [
        file.clone(),
        dir.clone(),
        layout.home.clone(),
        layout.home.join("node.key"),
    ];
    let before: Vec<_> = targets.iter().map(|p| attributes(p)).collect();
    let id = ["/usr/bin/id", "/bin/id"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("id");
    let script = format!(
        r#"{CHANGE_ATTRIBUTES}
        cp {id} "$OTTO_WORKSPACE/id" && chmod 4755 "$OTTO_WORKSPACE/id" && echo setuid-in-workspace
        for d in /tmp "$NODE_HOME" "$(dirname "$OTTO_WORKSPACE")"; do
          cp {id} "$d/otto-id" 2>/dev/null && chmod 4755 "$d/otto-id" 2>/dev/null && echo "SETUID $d"
        done
        echo done
    "#
    );
    let node = TestNode::start_with(vec![sh(&script)], |job| {
        layout.wall(job, None);
        job.env.insert(
            "TARGETS".into(),
            targets
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" "),
        );
        job.timeout_secs = Some(120);
    })
    .await;
    node.run().await;
    let text = node.all_text();
    assert_eq!(node.result().outcome, Outcome::Success, "{text}");
    for leak in ["CHANGED", "SETUID"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
    for ok in [
        "chmod-workspace",
        "chmod-own-file",
        "chmod-tmpdir",
        "wrote-dev-null",
        "done",
    ] {
        assert!(text.contains(ok), "{ok} missing from {text}");
    }
    let after: Vec<_> = targets.iter().map(|p| attributes(p)).collect();
    assert_eq!(before, after, "{targets:?} changed: {text}");
    // The copy in the workspace is set-user-id root, but nobody else can reach it.
    let copy = layout.workspace.join("id");
    if text.contains("setuid-in-workspace") {
        use std::os::unix::process::CommandExt as _;
        let ran = std::process::Command::new(&copy)
            .arg("-u")
            .uid(NOBODY.uid)
            .gid(NOBODY.gid)
            .output();
        if let Ok(out) = ran {
            let said = String::from_utf8_lossy(&out.stdout);
            assert_ne!(said.trim(), "0", "nobody ran the step's copy of id as root");
        }
    }
}

/// #12 F3a for a step user: Landlock keeps it from writing files its uid owns outside its
/// writable directories, but not from changing their mode, owner or times; the read-only
/// file system around it does.
#[tokio::test]
async fn a_step_user_cannot_chmod_what_its_uid_owns_outside_its_writable_dirs() {
    if let Some(skip) = no_landlock() {
        println!("{skip}");
        return;
    }
    if !rustix::process::geteuid().is_root() {
        println!("skipped: switching the step's user needs root");
        return;
    }
    let layout = Layout::new();
    let root = layout.home.parent().expect("layout root").to_owned();
    let file = root.join("nobodys-file");
    let dir = root.join("nobodys-dir");
    fs::write(&file, "nobody's").expect("file");
    fs::create_dir(&dir).expect("dir");
    for (path, mode) in [(&file, 0o644), (&dir, 0o700)] {
        std::os::unix::fs::chown(path, Some(NOBODY.uid), Some(NOBODY.gid)).expect("chown");
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let targets = [file.clone(), dir.clone()];
    let before: Vec<_> = targets.iter().map(|p| attributes(p)).collect();
    let node = TestNode::start_with(vec![sh(CHANGE_ATTRIBUTES)], |job| {
        layout.wall(job, Some(NOBODY));
        job.env.insert(
            "TARGETS".into(),
            format!("{} {}", file.display(), dir.display()),
        );
        job.timeout_secs = Some(120);
    })
    .await;
    node.run().await;
    let text = node.all_text();
    assert_eq!(node.result().outcome, Outcome::Success, "{text}");
    assert!(!text.contains("CHANGED"), "{text}");
    for ok in [
        "chmod-workspace",
        "chmod-own-file",
        "chmod-tmpdir",
        "wrote-dev-null",
    ] {
        assert!(text.contains(ok), "{ok} missing from {text}");
    }
    let after: Vec<_> = targets.iter().map(|p| attributes(p)).collect();
    assert_eq!(before, after, "{text}");
}

/// An agent that is not root makes the file system read-only around its steps in a user
/// namespace of its own: run here as `nobody`, straight through `otto-agent --wall`, a
/// step cannot chmod a file of its own outside its writable directory, and can inside.
#[test]
fn an_unprivileged_agent_makes_the_file_system_read_only_around_its_steps() {
    use std::io::Write as _;
    use std::os::unix::process::CommandExt as _;
    if !rustix::process::geteuid().is_root() {
        println!("skipped: the test runs the agent as nobody, which needs root");
        return;
    }
    let probe = std::process::Command::new(env!("CARGO_BIN_EXE_otto-agent"))
        .arg("--wall-mounts")
        .uid(NOBODY.uid)
        .gid(NOBODY.gid)
        .current_dir("/")
        .output()
        .expect("otto-agent --wall-mounts");
    let said = String::from_utf8_lossy(&probe.stdout);
    if said.trim() != "ok" {
        println!("skipped: no user namespaces for nobody here: {said}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let root = fs::canonicalize(dir.path()).expect("canonical");
    let (mine, outside) = (root.join("writable"), root.join("outside"));
    fs::create_dir(&mine).expect("mkdir");
    fs::write(&outside, "x").expect("write");
    for path in [&mine, &outside] {
        std::os::unix::fs::chown(path, Some(NOBODY.uid), Some(NOBODY.gid)).expect("chown");
    }
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o644)).expect("chmod");
    // Each step making its own namespaces, and a step entering those a holder made for
    // the stage (`otto-agent --wall-hold`), as the agent's steps do.
    let mut holder = std::process::Command::new(env!("CARGO_BIN_EXE_otto-agent"))
        .arg("--wall-hold")
        .arg(serde_json::json!([mine]).to_string())
        .uid(NOBODY.uid)
        .gid(NOBODY.gid)
        .current_dir("/")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("otto-agent --wall-hold");
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().expect("stdout")),
        &mut ready,
    )
    .expect("ready");
    assert_eq!(ready.trim(), "ready");
    for enter in [None, Some(holder.id())] {
        let _ = fs::remove_file(mine.join("f"));
        let spec = serde_json::json!({
            "read": ["/"], "write": [mine, "/dev/null"], "landlock": false, "read_only": true,
            "required": true, "enter": enter, "user": null, "nproc": null, "memory": 1u64 << 30,
        });
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_otto-agent"))
            .arg("--wall")
            .arg(spec.to_string())
            .args(["--", "/bin/sh", "-c"])
            .arg(
                r#"chmod 0777 "$1" 2>/dev/null && echo CHANGED; touch -c -d 2001-02-03 "$1" 2>/dev/null && echo CHANGED
                   echo x > "$2/f" && chmod 0600 "$2/f" && echo chmod-inside
                   echo x > /dev/null && echo wrote-dev-null; id -u"#,
            )
            .arg("sh")
            .args([&outside, &mine])
            .uid(NOBODY.uid)
            .gid(NOBODY.gid)
            .current_dir(&mine)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("otto-agent --wall");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"PATH=/usr/bin:/bin\0")
            .expect("env");
        let out = child.wait_with_output().expect("wait");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(!text.contains("CHANGED"), "{text}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .collect::<Vec<_>>(),
            ["chmod-inside", "wrote-dev-null", "65534"],
            "{text}"
        );
    }
    drop(holder.stdin.take());
    assert!(holder.wait().expect("holder").success());
    assert_eq!(attributes(&outside).0 & 0o7777, 0o644);
}

/// Why the stable workspace cannot be tested here: only a root agent may mount.
fn not_root() -> Option<String> {
    (!rustix::process::geteuid().is_root())
        .then(|| "skipped: only a root agent sees its workspace at a stable directory".to_owned())
}

/// The lines of `/proc/self/mountinfo` that name `path`: mounts of this (the machine's)
/// namespace there.
fn mounts_at(path: &Path) -> Vec<String> {
    let text = path.display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|line| line.contains(&text))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn steps_of_every_attempt_see_their_workspace_at_the_same_directory() {
    if let Some(skip) = no_landlock().or_else(not_root) {
        println!("{skip}");
        return;
    }
    let layout = Layout::new();
    let stable = layout.work.join(".workspace");
    let script = r#"
        echo "at $(pwd) PWD=$PWD"
        echo "mine $OTTO_STAGE" > mine
        ls -A
    "#;
    let mut seen = Vec::new();
    for stage in ["build-1", "build-2"] {
        let node = TestNode::start_with(vec![sh(script), dir("sub", vec![sh("pwd")])], |job| {
            layout.wall(job, step_user());
            job.workspace = layout.workspace.with_file_name(stage);
            job.stage = stage.into();
            job.stable_workspace = Some(stable.clone());
        })
        .await;
        let result = node.run().await;
        let text = node.all_text();
        assert_eq!(result.outcome, Outcome::Success, "{text}");
        let output = node.output();
        // The step ran at the stable directory, and what it wrote is in its workspace.
        assert_eq!(
            output,
            [
                format!("at {0} PWD={0}", stable.display()),
                "mine".to_owned(),
                stable.join("sub").display().to_string(),
            ],
            "{text}"
        );
        let real = layout.workspace.with_file_name(stage);
        assert_eq!(
            fs::read_to_string(real.join("mine")).expect("written in the workspace"),
            format!("mine {stage}\n")
        );
        seen.push(output);
    }
    assert_eq!(seen[0], seen[1]);
    // Nothing of the steps' mounts is left in the machine's namespace, and the directory
    // itself holds nothing.
    assert!(mounts_at(&stable).is_empty(), "{:?}", mounts_at(&stable));
    assert_eq!(fs::read_dir(&stable).expect("stable dir").count(), 0);
}

#[tokio::test]
async fn a_step_sees_only_its_own_workspace_at_the_stable_directory_and_cannot_unmount_it() {
    if let Some(skip) = no_landlock().or_else(not_root) {
        println!("{skip}");
        return;
    }
    let layout = Layout::new();
    let stable = layout.work.join(".workspace");
    // A directory both stages may write, where each says it is running: each stage's step
    // waits (bounded) until the other's runs too, so the two are in the stable directory
    // at the same time.
    let meet = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(meet.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
    let meet = fs::canonicalize(meet.path()).expect("canonical");
    let script = |me: &str, other: &str| {
        format!(
            r#"
            echo "{me}" > "{me}.marker"
            touch "$MEET/{me}"
            i=0
            while [ ! -e "$MEET/{other}" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
            [ -e "$MEET/{other}" ] && echo "met {other}"
            ls -A "{stable}"
            cat "{stable}/{other}.marker" 2>/dev/null && echo "LEAK {other}"
            if umount "$PWD" 2>/dev/null || umount -l "{stable}" 2>/dev/null; then echo UNMOUNTED; fi
            if mount --bind / "$PWD" 2>/dev/null; then echo MOUNTED; fi
            ls -A "{stable}"
            "#,
            stable = stable.display()
        )
    };
    let start = |stage: &'static str, script: String| {
        let (layout, stable, meet) = (&layout, stable.clone(), meet.clone());
        async move {
            TestNode::start_with(vec![sh(&script)], move |job| {
                layout.wall(job, step_user());
                job.workspace = layout.workspace.with_file_name(stage);
                job.stage = stage.into();
                job.stable_workspace = Some(stable);
                job.wall
                    .as_mut()
                    .expect("walled")
                    .writable
                    .push(meet.clone());
                job.env.insert("MEET".into(), meet.display().to_string());
                job.timeout_secs = Some(120);
            })
            .await
        }
    };
    let a = start("build-1", script("build-1", "build-2")).await;
    let b = start("build-2", script("build-2", "build-1")).await;
    let (ra, rb) = tokio::join!(a.run(), b.run());
    for (node, result, me, other) in [
        (&a, ra, "build-1", "build-2"),
        (&b, rb, "build-2", "build-1"),
    ] {
        let text = node.all_text();
        assert_eq!(result.outcome, Outcome::Success, "{text}");
        let output = node.output();
        assert!(output.contains(&format!("met {other}")), "{text}");
        for leak in ["LEAK", "UNMOUNTED", "MOUNTED"] {
            assert!(!text.contains(leak), "{leak} in {text}");
        }
        // Both listings, before and after the tries, show this stage's own marker only.
        let marker = format!("{me}.marker");
        let listed: Vec<&String> = output.iter().filter(|l| l.ends_with(".marker")).collect();
        assert_eq!(listed, [&marker, &marker], "{text}");
    }
    assert!(mounts_at(&stable).is_empty(), "{:?}", mounts_at(&stable));
}

/// What a step run by `otto-agent --wall` (started the way `sh` starts it: with
/// descriptor 7 open on `outside`) prints: its `/proc/self/stat` fields, whether it could
/// write through descriptor 7, and its IPC namespace.
fn run_wall_with_descriptor_7(outside: &Path, writable: &Path) -> String {
    let spec = serde_json::json!({
        "read": ["/"], "write": [writable, "/dev/null"], "landlock": false, "read_only": true,
        "required": true, "enter": null, "user": null, "nproc": null, "memory": 1u64 << 30,
    });
    let step = r#"read -r pid comm state ppid pgrp session tty rest < /proc/self/stat
echo "pid=$pid session=$session tty=$tty"
(echo pwned >&7) 2>/dev/null && echo WROTE-THROUGH-7
echo "ipc=$(readlink /proc/self/ns/ipc)""#;
    let mut child = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"exec 7>>"$1"; shift; exec "$@""#)
        .arg("sh")
        .arg(outside)
        .arg(env!("CARGO_BIN_EXE_otto-agent"))
        .arg("--wall")
        .arg(spec.to_string())
        .args(["--", "/bin/sh", "-c", step])
        .current_dir(writable)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("otto-agent --wall");
    std::io::Write::write_all(
        &mut child.stdin.take().expect("stdin"),
        b"PATH=/usr/bin:/bin\0",
    )
    .expect("env");
    let out = child.wait_with_output().expect("wait");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn a_step_has_no_terminal_no_inherited_descriptor_and_a_system_v_ipc_namespace_of_its_own() {
    if let Some(skip) = not_root() {
        println!("{skip}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = fs::canonicalize(dir.path()).expect("canonical");
    let (mine, outside) = (root.join("writable"), root.join("outside"));
    fs::create_dir(&mine).expect("mkdir");
    fs::write(&outside, "").expect("write");
    let text = run_wall_with_descriptor_7(&outside, &mine);
    // A session of its own: no controlling terminal to push input into (TIOCSTI).
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")).map(str::to_owned))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    assert_eq!(field("session"), field("pid"), "{text}");
    assert_eq!(field("tty"), "0", "{text}");
    // Descriptor 7, opened before the wall, was closed at exec.
    assert!(!text.contains("WROTE-THROUGH-7"), "{text}");
    assert_eq!(fs::read_to_string(&outside).expect("read"), "");
    // System V objects it makes go with its namespace.
    let machine = fs::read_link("/proc/self/ns/ipc").expect("ipc ns");
    assert_ne!(field("ipc"), machine.display().to_string(), "{text}");
}
