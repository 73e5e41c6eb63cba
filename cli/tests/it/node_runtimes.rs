//! Runtimes on a real node: `runtime docker` stages run in containers of a locally built
//! image where podman is installed (skipped with the reason elsewhere), `runtime
//! computer` matches `[node] labels`, and a node refuses at planning, with one line per
//! stage, a run whose stages need a runtime it lacks.

use std::fs;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::node_support::{Node, project, text};

const IMAGE: &str = "localhost/otto-test:1";

/// Podman options for an image store in `dir` holding [`IMAGE`] (a static busybox), or
/// why the test cannot run here.
fn image_store(dir: &Path) -> Result<Vec<String>, String> {
    let podman = std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("podman"))
                .find(|p| p.is_file())
        })
        .ok_or("skipped: no podman on PATH (Debian: apt-get install podman runc busybox-static)")?;
    let busybox = Path::new("/bin/busybox");
    if !is_static(busybox) {
        return Err(
            "skipped: no static /bin/busybox for the test image (Debian: busybox-static)".into(),
        );
    }
    let rootfs = dir.join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    let tar = dir.join("image.tar");
    let tarred = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(tarred.success());
    let options = vec![
        format!("--root={}", dir.join("storage").display()),
        format!("--runroot={}", dir.join("run").display()),
        format!("--tmpdir={}", dir.join("tmp").display()),
    ];
    let imported = Command::new(&podman)
        .args(&options)
        .arg("import")
        .arg(&tar)
        .arg(IMAGE)
        .output()
        .unwrap();
    if !imported.status.success() {
        return Err(format!(
            "skipped: podman cannot import an image here: {}",
            text(&imported.stderr).trim()
        ));
    }
    Ok(options)
}

/// Sets `[containers]` and `[node] labels` in the home's config.
fn configure(node: &Node, engine: Option<&str>, options: &[String], labels: &[&str]) {
    let file = node.home.join("config.toml");
    let mut config = fs::read_to_string(&file).unwrap();
    let quoted = |items: Vec<String>| {
        let items: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
        format!("[{}]", items.join(", "))
    };
    assert!(config.contains("\nlabels = []\n") && config.contains("\noptions = []\n"));
    config = config.replace(
        "\nlabels = []\n",
        &format!(
            "\nlabels = {}\n",
            quoted(labels.iter().map(|s| (*s).to_owned()).collect())
        ),
    );
    config = config.replace(
        "\noptions = []\n",
        &format!("\noptions = {}\n", quoted(options.to_vec())),
    );
    if let Some(engine) = engine {
        config = config.replace("# engine = \"podman\"", &format!("engine = {engine:?}"));
    }
    fs::write(&file, config).unwrap();
}

/// `GET /v1/node` of a running node, as JSON.
fn node_info(node: &Node) -> serde_json::Value {
    let addr = fs::read_to_string(node.home.join("api.addr")).unwrap();
    let token = fs::read_to_string(node.home.join("api.token")).unwrap();
    let mut stream = std::net::TcpStream::connect(addr.trim()).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET /v1/node HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token.trim()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

fn run_id(stdout: &str) -> String {
    stdout
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .to_owned()
}

#[test]
fn a_node_refuses_at_planning_the_stages_whose_runtime_it_lacks() {
    let mut node = Node::init();
    configure(&node, Some("none"), &[], &["linux", "x86_64"]);
    node.start();
    let info = node_info(&node);
    assert_eq!(
        info["runtimes"]["containers"],
        serde_json::Value::Null,
        "{info}"
    );
    assert_eq!(
        info["runtimes"]["containers_missing"],
        "[containers] engine = \"none\""
    );
    assert_eq!(
        info["runtimes"]["labels"],
        serde_json::json!(["linux", "x86_64"])
    );

    // A label the node declares: the stage runs here, as local processes.
    let dir = project(&[(
        "Ottofile",
        "stage('Test linux') { runtime { computer { label = 'linux' } } steps { sh 'echo on-linux' } }\n",
    )]);
    let out = node.otto(&["run", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        node.log()
    );
    let logs = node.ok(&["logs", &run_id(&text(&out.stdout)), "Test linux"]);
    assert!(logs.contains("on-linux"), "{logs}");

    // An image without an engine and a label the node lacks: refused before any run,
    // one line per stage; a stage the plan skips does not count.
    let dir = project(&[(
        "Ottofile",
        "stage('Image') { runtime { docker { image = 'localhost/tools:1' } } steps { sh 'true' } }\n\
         stage('Test macos') { runtime { computer { label = 'macos' } } steps { sh 'true' } }\n\
         stage('Skipped') { when { branch == 'never' } runtime { computer { label = 'sparc' } } steps { sh 'true' } }\n",
    )]);
    let out = node.otto(&["run", dir.path().to_str().unwrap(), "--branch", "main"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("stage 'Image' cannot run on this node: runtime docker (image localhost/tools:1) needs a container engine, and this node has none: [containers] engine = \"none\" (and 1 more)"),
        "{err}"
    );
    assert!(!err.contains("sparc"), "{err}");
    let runs = node.ok(&["status", "--json"]);
    assert!(!runs.contains("Image"), "a refused plan left a run: {runs}");

    // explain --home says the same before anything runs.
    let home = node.home.to_str().unwrap();
    let out = node.otto(&[
        "explain",
        dir.path().to_str().unwrap(),
        "--home",
        home,
        "--branch",
        "main",
    ]);
    let explained = text(&out.stdout);
    assert!(
        explained.contains("runs stages as local processes (no containers: [containers] engine = \"none\"); computer labels linux, x86_64"),
        "{explained}"
    );
    assert!(
        explained.contains("  Test macos would be refused: runtime computer (label macos) needs a node with that label; this node's are linux, x86_64 ([node] labels)"),
        "{explained}"
    );
    assert!(
        !explained.contains("Skipped would be refused"),
        "{explained}"
    );
}

#[test]
fn a_container_stage_runs_in_a_local_image_and_hands_its_artifact_on() {
    let store = tempfile::tempdir().unwrap();
    let store_dir: PathBuf = fs::canonicalize(store.path()).unwrap();
    let options = match image_store(&store_dir) {
        Ok(options) => options,
        Err(skip) => {
            println!("{skip}");
            return;
        }
    };
    let mut node = Node::init();
    configure(&node, Some("podman"), &options, &[]);
    node.start();
    let info = node_info(&node);
    let engine = info["runtimes"]["containers"].as_str().unwrap_or_default();
    assert!(engine.starts_with("podman "), "{info}");

    let dir = project(&[
        (
            "Ottofile",
            "stage('Build') {\n\
               runtime { docker { image = 'localhost/otto-test:1' } }\n\
               steps {\n\
                 sh 'echo \"files at the root: $(ls /)\"; if [ -e /usr/bin/cargo ]; then echo HOST; fi'\n\
                 sh 'cat input.txt > out.txt; echo built-in-container >> out.txt'\n\
                 archive path: 'out.txt', name: 'out'\n\
               }\n\
             }\n\
             stage('Check') {\n\
               steps { unarchive name: 'out'  sh 'cat out.txt' }\n\
             }\n",
        ),
        ("input.txt", "from the snapshot\n"),
    ]);
    let out = node.otto(&["run", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr),
        node.log()
    );
    let run = run_id(&text(&out.stdout));
    let build = node.ok(&["logs", &run, "Build"]);
    assert!(build.contains("files at the root: bin"), "{build}");
    assert!(!build.contains("HOST"), "{build}");
    let check = node.ok(&["logs", &run, "Check"]);
    assert!(check.contains("from the snapshot"), "{check}");
    assert!(check.contains("built-in-container"), "{check}");

    // An image the store does not have fails the stage with the engine's reason; nothing
    // is pulled.
    let dir = project(&[(
        "Ottofile",
        "stage('Absent') { runtime { docker { image = 'localhost/otto-absent:1' } } steps { sh 'echo RAN' } }\n",
    )]);
    let out = node.otto(&["run", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let run = run_id(&text(&out.stdout));
    let absent = text(&node.otto(&["logs", &run, "Absent"]).stdout);
    assert!(absent.contains("otto-absent"), "{absent}");
    assert!(!absent.contains("RAN"), "{absent}");

    node.terminate();
    let _ = Command::new("podman")
        .args(&options)
        .args(["system", "reset", "--force"])
        .output();
}

/// The ids of the containers of the podman store `options` labelled `label`.
fn labelled(options: &[String], label: &str) -> Vec<String> {
    let out = Command::new("podman")
        .args(options)
        .args(["ps", "--all", "--quiet", "--filter"])
        .arg(format!("label={label}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).lines().map(str::to_owned).collect()
}

#[test]
fn a_container_an_agent_killed_mid_step_left_is_removed() {
    let store = tempfile::tempdir().unwrap();
    let store_dir: PathBuf = fs::canonicalize(store.path()).unwrap();
    let options = match image_store(&store_dir) {
        Ok(options) => options,
        Err(skip) => {
            println!("{skip}");
            return;
        }
    };
    let mut node = Node::init();
    configure(&node, Some("podman"), &options, &[]);
    node.start();
    let key = node_info(&node)["node_key"].as_str().unwrap().to_owned();
    let ours = format!("otto.node={key}");

    let dir = project(&[(
        "Ottofile",
        "stage('Sleep') { runtime { docker { image = 'localhost/otto-test:1' } } steps { sh 'echo started; sleep 600' } }\n",
    )]);
    let run = node
        .ok(&["run", dir.path().to_str().unwrap(), "--detach"])
        .trim()
        .to_owned();
    // The step runs in its container, labelled with this node.
    node.wait_for("the step to start in its container", || {
        let logs = text(&node.otto(&["logs", &run, "Sleep"]).stdout);
        logs.contains("started").then_some(())
    });
    assert_eq!(labelled(&options, &ours).len(), 1, "{}", node.log());
    let status = node.status(&run);
    let agent = status["stages"][0]["attempts"][0]["agent_pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no agent pid: {status}"));

    // The agent dies at once: nothing of it removes the container, which podman's
    // monitor keeps running outside the step's process group.
    let pid = rustix::process::Pid::from_raw(i32::try_from(agent).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    let status = node.wait_final(&run);
    assert_eq!(status["run"]["state"], "failed", "{status}");
    assert_eq!(
        labelled(&options, &ours),
        Vec::<String>::new(),
        "the container outlived its agent: {}",
        node.log()
    );

    // A container an agent of an earlier node process left (the node was killed too) is
    // removed when the node starts; another node's is left alone.
    node.terminate();
    for label in [ours.as_str(), "otto.node=ed25519:another"] {
        let created = Command::new("podman")
            .args(&options)
            .args(["create", "--label", label, IMAGE, "sh"])
            .output()
            .unwrap();
        assert!(created.status.success(), "{}", text(&created.stderr));
    }
    assert_eq!(labelled(&options, &ours).len(), 1);
    node.start();
    assert_eq!(
        labelled(&options, &ours),
        Vec::<String>::new(),
        "{}",
        node.log()
    );
    assert_eq!(labelled(&options, "otto.node=ed25519:another").len(), 1);

    node.terminate();
    let _ = Command::new("podman")
        .args(&options)
        .args(["system", "reset", "--force"])
        .output();
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
