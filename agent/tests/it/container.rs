//! Steps of a `runtime docker` stage in real containers: podman runs them in a tiny image
//! built here from a static busybox, kept in an image store of the test's own (so no
//! registry is needed and nothing of the machine's store is touched). Hostile steps try
//! to get out of the container; each attempt must fail, while the workspace still works.
//! Without podman and a static busybox the tests print `skipped: REASON`.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use otto_agent::protocol::{Container, EngineKind, Job, Outcome, SecretValue, StepUser};

/// A podman with an image store of its own holding `localhost/otto-test:1`.
struct Engine {
    dir: tempfile::TempDir,
    podman: PathBuf,
    options: Vec<String>,
}

const IMAGE: &str = "localhost/otto-test:1";

impl Engine {
    /// The engine, or why the tests cannot use one here.
    fn new() -> Result<Self, String> {
        let podman = std::env::var_os("PATH")
            .and_then(|path| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join("podman"))
                    .find(|p| p.is_file())
            })
            .ok_or(
                "skipped: no podman on PATH (Debian: apt-get install podman runc busybox-static)",
            )?;
        let busybox = Path::new("/bin/busybox");
        if !is_static(busybox) {
            return Err("skipped: no static /bin/busybox to build the test image from (Debian: busybox-static)".into());
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let root = fs::canonicalize(dir.path()).map_err(|e| e.to_string())?;
        let rootfs = root.join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).map_err(|e| e.to_string())?;
        fs::copy(busybox, rootfs.join("bin/busybox")).map_err(|e| e.to_string())?;
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).map_err(|e| e.to_string())?;
        let tar = root.join("image.tar");
        let tarred = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .map_err(|e| e.to_string())?;
        if !tarred.success() {
            return Err("skipped: tar failed".into());
        }
        let options = vec![
            format!("--root={}", root.join("storage").display()),
            format!("--runroot={}", root.join("run").display()),
            // Podman's state directory is machine-wide by default (/run/libpod), and a
            // reset of another test's store would take it away.
            format!("--tmpdir={}", root.join("tmp").display()),
        ];
        let imported = Command::new(&podman)
            .args(&options)
            .arg("import")
            .arg(&tar)
            .arg(IMAGE)
            .output()
            .map_err(|e| e.to_string())?;
        if !imported.status.success() {
            return Err(format!(
                "skipped: podman cannot import an image here: {}",
                String::from_utf8_lossy(&imported.stderr).trim()
            ));
        }
        Ok(Self {
            dir,
            podman,
            options,
        })
    }

    /// What a job names to run its steps in `image` with this engine.
    fn container(&self, image: &str) -> Container {
        Container {
            engine: self.podman.clone(),
            kind: EngineKind::Podman,
            options: self.options.clone(),
            image: image.into(),
            labels: std::collections::BTreeMap::new(),
        }
    }

    /// The names of every container in this engine's store, running or not.
    fn containers(&self) -> Vec<String> {
        let out = Command::new(&self.podman)
            .args(&self.options)
            .args(["ps", "--all", "--format", "{{.Names}}"])
            .output()
            .expect("podman ps");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // The store's layers may be read-only and mounted; podman takes them apart.
        let _ = Command::new(&self.podman)
            .args(&self.options)
            .args(["system", "reset", "--force"])
            .output();
        let _ = self.dir.path();
    }
}

/// A node's layout: a home with a key in it, and a work directory with this stage's
/// workspace beside another stage's.
struct Layout {
    _dir: tempfile::TempDir,
    home: PathBuf,
    workspace: PathBuf,
    other: PathBuf,
}

impl Layout {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = fs::canonicalize(dir.path()).expect("canonical");
        fs::set_permissions(&root, fs::Permissions::from_mode(0o711)).expect("chmod");
        let home = root.join("home");
        fs::create_dir_all(&home).expect("home");
        fs::write(home.join("node.key"), "NODE-KEY-BYTES").expect("key");
        let run = root.join("home-work").join("run-1");
        let other = run.join("deploy-1");
        fs::create_dir_all(&other).expect("other");
        fs::write(other.join("secret.txt"), "OTHER-STAGE-BYTES").expect("other");
        for d in [root.join("home-work"), run.clone()] {
            fs::set_permissions(&d, fs::Permissions::from_mode(0o711)).expect("chmod");
        }
        Self {
            workspace: run.join("build-1"),
            home,
            other,
            _dir: dir,
        }
    }

    fn set(&self, job: &mut Job, engine: &Engine, image: &str) {
        job.workspace = self.workspace.clone();
        job.container = Some(engine.container(image));
        if rustix::process::geteuid().is_root() {
            job.wall = Some(otto_agent::protocol::Wall {
                user: Some(StepUser {
                    uid: 65534,
                    gid: 65534,
                }),
                ..Default::default()
            });
        }
        job.timeout_secs = Some(120);
        job.env
            .insert("NODE_HOME".into(), self.home.display().to_string());
        job.env
            .insert("OTHER_STAGE".into(), self.other.display().to_string());
        job.env
            .insert("TEST_PID".into(), std::process::id().to_string());
    }
}

macro_rules! engine_or_skip {
    () => {
        match Engine::new() {
            Ok(engine) => engine,
            Err(skip) => {
                println!("{skip}");
                return;
            }
        }
    };
}

#[tokio::test]
async fn a_container_stage_runs_its_steps_in_the_image_on_its_workspace() {
    let engine = engine_or_skip!();
    let layout = Layout::new();
    let steps = vec![
        sh(r#"
            echo "in the image: $(ls /)"
            test -x /bin/busybox
            if [ -e /usr/bin/cargo ] || [ -e /usr/lib/x86_64-linux-gnu ]; then echo HOST-FILES; fi
            echo built > out.txt
            echo "uid=$(id -u)"
            [ "$TOKEN" = tok-3141-secret ] && echo token-in-env
            [ "$(cat "$OTTO_SECRETS_DIR/TOKEN")" = tok-3141-secret ] && echo token-in-file
            echo x > "$TMPDIR/t" && echo x > "$HOME/h" 2>/dev/null; echo tmp-ok
            echo "mode=$MODE"
        "#),
        dir("sub", vec![sh("pwd; cat ../out.txt")]),
        archive("out.txt", "out"),
    ];
    let node = TestNode::start_with(steps, |job| {
        layout.set(job, &engine, IMAGE);
        job.env.insert("MODE".into(), "fast".into());
        job.secrets
            .insert("TOKEN".into(), SecretValue::new("tok-3141-secret"));
        job.secret_env = true;
    })
    .await;
    let result = node.run().await;
    let text = node.all_text();
    assert_eq!(result.outcome, Outcome::Success, "{text}");
    assert!(text.contains("in the image: bin"), "{text}");
    assert!(!text.contains("HOST-FILES"), "{text}");
    for wanted in ["token-in-env", "token-in-file", "tmp-ok", "mode=fast"] {
        assert!(text.contains(wanted), "{wanted} missing: {text}");
    }
    assert!(!text.contains("tok-3141-secret"), "{text}");
    if rustix::process::geteuid().is_root() {
        assert!(text.contains("uid=65534"), "{text}");
    }
    let sub = layout.workspace.join("sub");
    assert!(text.contains(&sub.display().to_string()), "{text}");
    assert_eq!(
        fs::read_to_string(layout.workspace.join("out.txt")).expect("out.txt"),
        "built\n"
    );
    assert_eq!(result.artifacts.len(), 1);
    assert!(engine.containers().is_empty(), "{:?}", engine.containers());
}

#[tokio::test]
async fn a_hostile_container_step_reaches_nothing_outside_its_workspace() {
    let engine = engine_or_skip!();
    let layout = Layout::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let script = format!(
        r#"
        if cat "$NODE_HOME/node.key"; then echo LEAK-KEY; fi
        if ls "$NODE_HOME"; then echo LEAK-HOME; fi
        if cat "$OTHER_STAGE/secret.txt"; then echo LEAK-OTHER-STAGE; fi
        if ls "$(dirname "$OTTO_WORKSPACE")/deploy-1"; then echo LEAK-LISTING; fi
        if echo x > /probe; then echo WROTE-ROOT; fi
        if echo x > /bin/probe; then echo WROTE-IMAGE; fi
        if wget -q -T 3 -O - http://127.0.0.1:{port}/; then echo LEAK-NET; fi
        if kill -0 "$TEST_PID"; then echo SIGNALLED-HOST; fi
        if [ -e "/proc/$TEST_PID" ]; then echo SEES-HOST-PID; fi
        if mount -t tmpfs none "$TMPDIR"; then echo MOUNTED; fi
        if chroot / true; then echo CHROOT; fi
        grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status
        echo "interfaces: $(ls /sys/class/net)"
        echo done
    "#
    );
    let node = TestNode::start_with(vec![sh(&script)], |job| {
        layout.set(job, &engine, IMAGE);
    })
    .await;
    node.run().await;
    let text = node.all_text();
    assert!(text.contains("done"), "{text}");
    for leak in [
        "LEAK",
        "WROTE",
        "SIGNALLED",
        "SEES-HOST",
        "MOUNTED",
        "CHROOT",
        "NODE-KEY-BYTES",
        "OTHER-STAGE-BYTES",
    ] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
    assert!(text.contains("CapEff:\t0000000000000000"), "{text}");
    assert!(text.contains("CapBnd:\t0000000000000000"), "{text}");
    assert!(text.contains("NoNewPrivs:\t1"), "{text}");
    assert!(
        text.contains("interfaces: lo\n") || text.ends_with("interfaces: lo"),
        "{text}"
    );
    assert!(
        listener.accept().is_err(),
        "the container reached the machine's loopback"
    );
}

#[tokio::test]
async fn a_timed_out_container_step_is_stopped_and_its_container_removed() {
    let engine = engine_or_skip!();
    let layout = Layout::new();
    let node = TestNode::start_with(
        vec![sh("echo started; sleep 600"), sh("echo LATER")],
        |job| {
            layout.set(job, &engine, IMAGE);
            job.timeout_secs = Some(2);
            job.kill_grace_secs = 1;
        },
    )
    .await;
    let result = node.run().await;
    let text = node.all_text();
    assert_eq!(result.outcome, Outcome::Failure, "{text}");
    assert!(text.contains("started"), "{text}");
    assert!(!text.contains("LATER"), "{text}");
    assert!(
        result.error.as_deref().unwrap_or("").contains("timed out"),
        "{result:?}"
    );
    assert!(engine.containers().is_empty(), "{:?}", engine.containers());
}

#[tokio::test]
async fn an_image_the_engine_does_not_have_is_not_pulled() {
    let engine = engine_or_skip!();
    let layout = Layout::new();
    let node = TestNode::start_with(vec![sh("echo RAN")], |job| {
        layout.set(job, &engine, "localhost/otto-absent:1");
    })
    .await;
    let result = node.run().await;
    let text = node.all_text();
    assert_eq!(result.outcome, Outcome::Failure, "{text}");
    assert!(!text.contains("RAN"), "{text}");
    assert!(text.contains("otto-absent"), "{text}");
}

/// Whether the ELF executable at `path` is statically linked (it has no `PT_INTERP`
/// program header, so it runs in an image that holds nothing else).
fn is_static(path: &Path) -> bool {
    let Ok(bytes) = fs::read(path) else {
        return false;
    };
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    // A 64-bit little-endian ELF file: program headers at e_phoff, e_phnum of e_phentsize.
    if bytes.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return false;
    }
    let (Some(phoff), Some(size), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..usize::from(count)).all(|i| {
        let at = phoff + i * usize::from(size);
        bytes.get(at..at + 4) != Some(3u32.to_le_bytes().as_slice())
    })
}
