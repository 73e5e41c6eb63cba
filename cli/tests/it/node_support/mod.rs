//! Real processes for the node tests: a node home in a temporary directory, the
//! `otto-node` binary started on it, and the `otto` binary driving it. Every wait is
//! bounded; processes are ended by their own handles.
#![allow(dead_code, unreachable_pub)]

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod forge;

use serde_json::Value;

/// How long any single wait in these tests may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// A node's home and, while it runs, its process.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Node {
    /// A fresh home (`otto-node init`), not started. It runs only its own org's stages,
    /// so it names no step user (`--no-run-as`): as root its steps run as root, without
    /// capabilities.
    pub fn init() -> Self {
        Self::init_as("acme", "n1", &["--no-run-as"])
    }

    /// A fresh home of node `name` of org `org`, made with the `extra` init flags (e.g.
    /// `--org-key FILE`), not started.
    pub fn init_as(org: &str, name: &str, extra: &[&str]) -> Self {
        Self::init_in(tempfile::tempdir().unwrap(), org, name, extra)
    }

    /// [`Node::init_as`] with the home in `dir`. As root, unless `extra` says
    /// `--run-as` or `--no-run-as`, the node runs steps as `otto-step` (other orgs' stages
    /// need a step user; the tests share that one rather than have init make a user per
    /// node, as it does by default), so `dir` is made passable (0711) for that user, which
    /// is made once per test process.
    pub fn init_in(dir: tempfile::TempDir, org: &str, name: &str, extra: &[&str]) -> Self {
        let chosen = extra
            .iter()
            .any(|a| a.starts_with("--run-as") || *a == "--no-run-as");
        let shared = !chosen && rustix::process::geteuid().is_root();
        if shared {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
            static STEP_USER: OnceLock<()> = OnceLock::new();
            STEP_USER.get_or_init(|| {
                otto_node::step_user::ensure(otto_node::step_user::DEFAULT_NAME)
                    .expect("the step user otto-step");
            });
        }
        let home = dir.path().join("home");
        let out = Command::new(env!("CARGO_BIN_EXE_otto-node"))
            .args(["init", "--org", org, "--name", name, "--json"])
            .args(extra)
            .args(if shared {
                &["--run-as", otto_node::step_user::DEFAULT_NAME][..]
            } else {
                &[]
            })
            .arg("--home")
            .arg(&home)
            .env_remove("OTTO_HOME")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let made: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(made["node"], name);
        Self {
            dir,
            home,
            child: None,
            starts: 0,
        }
    }

    /// A started node.
    pub fn start_new() -> Self {
        let mut node = Self::init();
        node.start();
        node
    }

    /// Starts `otto-node start` and waits until it has written its API address.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "the node already runs");
        // A node killed with SIGKILL leaves api.addr behind: wait for the new one.
        let _ = fs::remove_file(self.home.join("api.addr"));
        self.starts += 1;
        let log =
            fs::File::create(self.dir.path().join(format!("node-{}.log", self.starts))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_otto-node"))
            .args(["start", "--home"])
            .arg(&self.home)
            .env("OTTO_AGENT", agent())
            .env("RUST_LOG", "info")
            .env_remove("OTTO_HOME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut child = child;
        let addr = self.home.join("api.addr");
        let start = Instant::now();
        while !addr.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("otto-node exited with {status}: {}", self.log());
            }
            if start.elapsed() > PATIENCE {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the node did not write api.addr: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    /// Kills the node with SIGKILL (no clean-up at all) and reaps it.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("the node runs");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Stops the node with SIGTERM and waits (bounded) for it to exit; returns whether it
    /// exited successfully.
    pub fn terminate(&mut self) -> bool {
        let mut child = self.child.take().expect("the node runs");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            if start.elapsed() > PATIENCE {
                let _ = child.kill();
                panic!("the node did not stop on SIGTERM: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The node's log so far (all starts).
    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                fs::read_to_string(self.dir.path().join(format!("node-{n}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n--- restart ---\n")
    }

    /// Runs `otto` with this node's home.
    pub fn otto(&self, args: &[&str]) -> Output {
        self.otto_with_stdin(args, None)
    }

    /// Runs `otto` with this node's home and `input` on its standard input.
    pub fn otto_with_stdin(&self, args: &[&str], input: Option<&[u8]>) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_otto"))
            .args(args)
            .env("OTTO_HOME", &self.home)
            .env_remove("OTTO_NODE")
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = input {
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        wait_output(child)
    }

    /// `otto ARGS`, which must succeed; its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.otto(args);
        assert!(
            out.status.success(),
            "otto {args:?} failed: {}\n{}\nnode log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `otto-node ARGS` with this node's home.
    pub fn otto_node(&self, args: &[&str]) -> Output {
        let child = Command::new(env!("CARGO_BIN_EXE_otto-node"))
            .args(args)
            .env("OTTO_HOME", &self.home)
            .env_remove("OTTO_NODE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_output(child)
    }

    /// `otto status RUN --json` (which exits 1, with the whole answer, for a run that
    /// failed or was cancelled).
    pub fn status(&self, run: &str) -> Value {
        let out = self.otto(&["status", run, "--json"]);
        let value: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "otto status {run} --json: {e}: {}\nnode log:\n{}",
                text(&out.stderr),
                self.log()
            )
        });
        let failed = matches!(value["run"]["state"].as_str(), Some("failed" | "cancelled"));
        assert_eq!(
            out.status.code(),
            Some(if failed { 1 } else { 0 }),
            "{value}"
        );
        value
    }

    /// Waits until the run is in a final state; returns its status.
    pub fn wait_final(&self, run: &str) -> Value {
        self.wait_for("the run to end", || {
            let status = self.status(run);
            let state = status["run"]["state"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            ["succeeded", "failed", "cancelled"]
                .contains(&state.as_str())
                .then_some(status)
        })
    }

    /// Waits until a stage of the run is in `state`; returns the run's status.
    pub fn wait_stage(&self, run: &str, stage: &str, state: &str) -> Value {
        self.wait_for(&format!("stage {stage} to be {state}"), || {
            let status = self.status(run);
            stage_of(&status, stage)
                .filter(|s| s["state"] == state)
                .map(|_| status.clone())
        })
    }

    /// Calls `check` every 100 ms until it gives a value; fails after [`PATIENCE`].
    pub fn wait_for<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(value) = check() {
                return value;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "timed out waiting for {what}; node log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The CA certificate webhook callers trust, PEM.
    pub fn ca_pem(&self) -> String {
        fs::read_to_string(self.home.join("ca.pem")).unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The stage with this id in a run's status JSON.
pub fn stage_of<'a>(status: &'a Value, id: &str) -> Option<&'a Value> {
    status["stages"].as_array()?.iter().find(|s| s["id"] == id)
}

/// A project directory with these files.
pub fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    dir
}

/// Text of an output stream.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits (bounded by [`PATIENCE`]) for a child and collects its output.
pub fn wait_output(child: Child) -> Output {
    wait_output_within(child, PATIENCE)
}

/// Waits at most `limit` for a child and collects its output.
pub fn wait_output_within(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    // Read the pipes on threads so a chatty child never blocks on a full pipe.
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = std::io::Read::read_to_end(s, &mut buf);
        }
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = std::io::Read::read_to_end(s, &mut buf);
        }
        buf
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a command took longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// The `otto-agent` executable, built once per test binary into the same target
/// directory as `otto-node` (it belongs to another package, so cargo does not build it for
/// this one's tests).
pub fn agent() -> &'static Path {
    static AGENT: OnceLock<PathBuf> = OnceLock::new();
    AGENT.get_or_init(|| {
        let node = Path::new(env!("CARGO_BIN_EXE_otto-node"));
        let profile_dir = node.parent().unwrap();
        let target_dir = profile_dir.parent().unwrap();
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args([
                "build",
                "--quiet",
                "-p",
                "otto-agent",
                "--bin",
                "otto-agent",
                "--target-dir",
            ])
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cargo.arg("--release");
        }
        let child = cargo
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = wait_output_within(child, Duration::from_secs(900));
        assert!(
            out.status.success(),
            "building otto-agent: {}",
            text(&out.stderr)
        );
        let agent = profile_dir.join("otto-agent");
        assert!(agent.is_file(), "{} was not built", agent.display());
        agent
    })
}
