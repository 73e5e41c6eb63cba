//! What this node can run: the steps it knows (the built-ins and its home's step
//! packages) and the runtimes it has (its machine's processes, a container engine when one
//! answers, the labels it declares). The API refuses at planning a run with a stage this
//! node would run but cannot, the engine refuses such a stage offered by another node,
//! and `otto explain --home` shows both before anything runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use otto_agent_protocol::{Container, EngineKind};
use otto_pipeline::StepCatalog;
use otto_pipeline::plan::{self, RuntimeKind};

use crate::api::types::WallInfo;
use crate::home::{Config, Home};

/// How long an engine may take to say its version before it counts as missing.
const ENGINE_PATIENCE: Duration = Duration::from_secs(10);

/// A container engine that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    /// Its executable.
    pub path: PathBuf,
    /// Which command line it speaks.
    pub kind: EngineKind,
    /// The version it reported.
    pub version: String,
    /// Options before every command (`[containers] options`).
    pub options: Vec<String>,
}

/// The runtimes of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtimes {
    /// The container engine, or why there is none.
    pub engine: Result<Engine, String>,
    /// The labels `runtime computer { label }` matches.
    pub labels: Vec<String>,
    /// The value of [`LABEL_NODE`] on the containers this node's agents start (the
    /// node's key id), when it runs them.
    pub owner: Option<String>,
}

/// The label naming the node whose agent started a container.
pub const LABEL_NODE: &str = "otto.node";
/// The label naming the agent job that started a container.
pub const LABEL_JOB: &str = "otto.job";

impl Default for Runtimes {
    /// Local processes only, no labels.
    fn default() -> Self {
        Self {
            engine: Err("no container engine was looked for".into()),
            labels: Vec::new(),
            owner: None,
        }
    }
}

impl Runtimes {
    /// The runtimes `config` gives: its labels, and the container engine it names (or
    /// podman, else docker, on `PATH`) if that engine answers `version` in time.
    pub fn detect(config: &Config) -> Self {
        Self {
            engine: detect_engine(
                config.containers.engine.as_deref(),
                &config.containers.options,
            ),
            labels: config.node.labels.clone(),
            owner: None,
        }
    }

    /// The runtimes, for people: one line.
    pub fn describe(&self) -> String {
        let mut out = String::from("local processes");
        match &self.engine {
            Ok(engine) => out.push_str(&format!(
                ", containers ({} {} at {}, images present here, never pulled)",
                engine.kind.name(),
                engine.version,
                engine.path.display()
            )),
            Err(why) => out.push_str(&format!(" (no containers: {why})")),
        }
        if self.labels.is_empty() {
            out.push_str("; no computer labels");
        } else {
            out.push_str(&format!("; computer labels {}", self.labels.join(", ")));
        }
        out
    }

    /// Why `stage` cannot run on this node, if it cannot.
    pub fn problem(&self, stage: &plan::Stage) -> Option<String> {
        let runtime = &stage.runtime;
        match runtime.kind {
            RuntimeKind::Local => None,
            RuntimeKind::Docker => match &self.engine {
                Ok(_) => None,
                Err(why) => Some(format!(
                    "runtime docker (image {}) needs a container engine, and this node has none: {why}",
                    runtime.image.as_deref().unwrap_or("?")
                )),
            },
            RuntimeKind::Computer => {
                let label = runtime.label.as_deref().unwrap_or("");
                if self.labels.iter().any(|l| l == label) {
                    None
                } else if self.labels.is_empty() {
                    Some(format!(
                        "runtime computer (label {label}) needs a node with that label, and this node declares none ([node] labels)"
                    ))
                } else {
                    Some(format!(
                        "runtime computer (label {label}) needs a node with that label; this node's are {} ([node] labels)",
                        self.labels.join(", ")
                    ))
                }
            }
        }
    }

    /// The container `stage`'s program steps run in, when it is a `runtime docker` stage
    /// and this node has an engine.
    pub fn container(&self, stage: &plan::Stage) -> Option<Container> {
        let runtime = &stage.runtime;
        if runtime.kind != RuntimeKind::Docker {
            return None;
        }
        let engine = self.engine.as_ref().ok()?;
        Some(Container {
            engine: engine.path.clone(),
            kind: engine.kind,
            options: engine.options.clone(),
            image: runtime.image.clone()?,
            labels: self
                .owner
                .iter()
                .map(|owner| (LABEL_NODE.to_owned(), owner.clone()))
                .collect(),
        })
    }
}

impl Engine {
    /// Removes every container of this engine labelled `label=value`, running or not
    /// (`ps --all --filter`, then `rm --force`); returns how many it removed. Each engine
    /// command is bounded by [`ENGINE_PATIENCE`].
    pub fn remove_labelled(&self, label: &str, value: &str) -> Result<usize, String> {
        let filter = format!("label={label}={value}");
        let listed =
            self.command(&["ps", "--all", "--quiet", "--no-trunc", "--filter", &filter])?;
        let ids: Vec<&str> = listed
            .lines()
            .map(str::trim)
            .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let mut args = vec!["rm", "--force"];
        if self.kind == EngineKind::Podman {
            args.extend(["--ignore", "--time=0"]);
        }
        args.extend(&ids);
        self.command(&args)?;
        Ok(ids.len())
    }

    /// Runs the engine with its options and `args`; its standard output, or the first
    /// line of its error.
    fn command(&self, args: &[&str]) -> Result<String, String> {
        let mut command = std::process::Command::new(&self.path);
        command.args(&self.options).args(args);
        bounded_output(command, args.first().copied().unwrap_or("?"))
    }
}

/// Finds and asks the engine `named` (a name on `PATH` or a path; `"none"` for none), or
/// podman, else docker, when it is `None`.
fn detect_engine(named: Option<&str>, options: &[String]) -> Result<Engine, String> {
    let candidates: Vec<&str> = match named {
        Some("none") => return Err("[containers] engine = \"none\"".into()),
        Some(name) => vec![name],
        None => vec!["podman", "docker"],
    };
    let mut reasons = Vec::new();
    for name in &candidates {
        let Some(path) = find_program(name) else {
            reasons.push(if name.contains('/') {
                format!("{name} is not an executable file")
            } else {
                format!("no {name} on PATH")
            });
            continue;
        };
        let kind = if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("docker"))
        {
            EngineKind::Docker
        } else {
            EngineKind::Podman
        };
        match version(&path, kind, options) {
            Ok(version) => {
                return Ok(Engine {
                    path,
                    kind,
                    version,
                    options: options.to_vec(),
                });
            }
            Err(why) => reasons.push(format!("{} does not answer: {why}", path.display())),
        }
    }
    Err(reasons.join("; "))
}

/// `name` itself when it holds a '/', else the first executable of that name on `PATH`.
fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let path = PathBuf::from(name);
        return executable(&path).then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
}

/// The engine's version: podman's own, docker's daemon's (a docker command line without
/// a daemon cannot run anything). Bounded by [`ENGINE_PATIENCE`].
fn version(path: &Path, kind: EngineKind, options: &[String]) -> Result<String, String> {
    let format = match kind {
        EngineKind::Podman => "{{.Client.Version}}",
        EngineKind::Docker => "{{.Server.Version}}",
    };
    let mut command = std::process::Command::new(path);
    command.args(options).args(["version", "--format", format]);
    let out = bounded_output(command, "version")?;
    let out = out.trim();
    if out.is_empty() {
        Err("no version".into())
    } else {
        Ok(out.chars().take(64).collect())
    }
}

/// Runs an engine `command` (`what` names it in errors) with no input, for at most
/// [`ENGINE_PATIENCE`]; its standard output (the first 64 KiB) when it succeeds, else the
/// first line of its error.
fn bounded_output(mut command: std::process::Command, what: &str) -> Result<String, String> {
    use std::io::Read as _;
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    // Read both pipes while waiting, so that a chatty engine cannot block on a full one.
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(pipe) = pipe {
                let _ = pipe.take(64 * 1024).read_to_string(&mut text);
            }
            text
        })
    };
    let out = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let err = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let started = Instant::now();
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break status,
            None if started.elapsed() > ENGINE_PATIENCE => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "no answer to `{what}` within {} s",
                    ENGINE_PATIENCE.as_secs()
                ));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    if status.success() {
        Ok(out)
    } else {
        Err(err
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("failed")
            .chars()
            .take(200)
            .collect())
    }
}

/// How the node of `home` walls in its steps, as `GET /v1/node` says once it runs,
/// worked out without starting it (for `otto explain --home`): the agent says which wall
/// it can build, the config the rest.
pub fn wall_info(home: &Home, config: &Config) -> WallInfo {
    let abi = crate::daemon::agent_path(config)
        .map_err(|e| e.to_string())
        .and_then(|agent| crate::engine::wall_abi(&agent));
    // The node runs as the user that owns its home (it must own its work directory too).
    let root_home =
        std::fs::metadata(home.root()).is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
    let steps_as_root = root_home && config.agent.run_as.is_none();
    let mounts = crate::daemon::agent_path(config)
        .map_err(|e| e.to_string())
        .and_then(|agent| crate::engine::wall_mounts(&agent));
    let (landlock_abi, missing) = match abi {
        Ok(abi) => (
            abi,
            crate::engine::wall_missing(
                abi,
                steps_as_root,
                mounts.as_ref().err().map(String::as_str),
            ),
        ),
        Err(why) => (
            0,
            Some(format!("cannot ask the agent which wall it builds: {why}")),
        ),
    };
    WallInfo {
        walled: missing.is_none(),
        landlock_abi,
        missing,
        run_as: config.agent.run_as.clone(),
        steps_as_root,
        read_only_mounts: mounts.is_ok(),
        work_dir: config
            .agent
            .work_dir
            .clone()
            .unwrap_or_else(|| home.work_dir())
            .display()
            .to_string(),
        refuse_foreign_unwalled: config.agent.refuse_foreign_unwalled,
    }
}

/// The step package directories a node's config names, resolved against its home.
pub fn package_dirs(home: &Home, config: &Config) -> Vec<PathBuf> {
    config
        .agent
        .packages
        .iter()
        .map(|p| home.root().join(p))
        .collect()
}

/// The built-in steps and the steps of these step package directories.
pub fn step_catalog(packages: &[PathBuf]) -> Result<StepCatalog, String> {
    let mut catalog = StepCatalog::builtins();
    for dir in packages {
        let loaded = otto_agent_protocol::packages::load_dir(dir)
            .map_err(|e| format!("step package: {e}"))?;
        for package in loaded {
            catalog.add(package.spec());
        }
    }
    Ok(catalog)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(text: &str) -> plan::Stage {
        let source = otto_pipeline::MemSource::new().with("Ottofile", text);
        let planned = otto_pipeline::plan(
            &source,
            Path::new("Ottofile"),
            &Default::default(),
            &StepCatalog::builtins(),
        )
        .expect("plans");
        planned.plan.body.stages[0].clone()
    }

    #[test]
    fn stages_are_refused_for_the_runtimes_this_node_lacks() {
        let docker = stage(
            "stage('B') { runtime { docker { image = 'localhost/x:1' } } steps { sh 'true' } }",
        );
        let linux =
            stage("stage('T') { runtime { computer { label = 'linux' } } steps { sh 'true' } }");
        let plain = stage("stage('P') { steps { sh 'true' } }");
        let none = Runtimes {
            engine: Err("no podman on PATH".into()),
            labels: Vec::new(),
            owner: None,
        };
        let why = none.problem(&docker).expect("refused");
        assert!(
            why.contains("image localhost/x:1") && why.contains("no podman on PATH"),
            "{why}"
        );
        let why = none.problem(&linux).expect("refused");
        assert!(why.contains("declares none"), "{why}");
        assert_eq!(none.problem(&plain), None);
        assert_eq!(none.container(&docker), None);

        let some = Runtimes {
            engine: Ok(Engine {
                path: "/usr/bin/podman".into(),
                kind: EngineKind::Podman,
                version: "4.3.1".into(),
                options: vec!["--root=/s".into()],
            }),
            labels: vec!["gpu".into(), "linux".into()],
            owner: Some("ed25519:ab".into()),
        };
        assert_eq!(some.problem(&docker), None);
        assert_eq!(some.problem(&linux), None);
        let c = some.container(&docker).expect("a container");
        assert_eq!((c.image.as_str(), c.options.len()), ("localhost/x:1", 1));
        // Every container says which node's agent started it.
        assert_eq!(
            c.labels.get(LABEL_NODE).map(String::as_str),
            Some("ed25519:ab")
        );
        assert_eq!(some.container(&plain), None);
        let mac =
            stage("stage('M') { runtime { computer { label = 'macos' } } steps { sh 'true' } }");
        let why = some.problem(&mac).expect("refused");
        assert!(why.contains("this node's are gpu, linux"), "{why}");
        assert!(
            some.describe().contains("containers (podman 4.3.1"),
            "{}",
            some.describe()
        );
    }

    #[test]
    fn an_engine_that_does_not_answer_is_no_engine() {
        let missing = detect_engine(Some("/nonexistent/podman"), &[]).expect_err("missing");
        assert!(
            missing.contains("/nonexistent/podman is not an executable file"),
            "{missing}"
        );
        assert!(detect_engine(Some("none"), &[]).is_err());
        // `false` runs and fails, as docker does without its daemon.
        let silent = detect_engine(Some("false"), &[]).expect_err("fails");
        assert!(silent.contains("does not answer"), "{silent}");
    }
}
