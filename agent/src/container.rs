//! Program steps of a `runtime docker` stage, each in a container of its own.
//!
//! The container is the step's wall. It sees the image, its workspace and its private
//! directory (mounted at the same paths, so `OTTO_WORKSPACE`, `TMPDIR`, `HOME` and
//! `OTTO_SECRETS_DIR` mean the same inside), and nothing else of the machine: not the
//! node's home, its API token or the agent's socket. It runs:
//!
//! - as the job's step user (or the agent's own user), never as a privileged container:
//!   every capability dropped, `no-new-privileges`, the image's file system read-only
//!   (the engine puts a `tmpfs` on `/tmp`);
//! - without a network (`--network=none`), so it reaches neither the node's API nor
//!   anything else;
//! - with the job's limits: `--pids-limit` at `limits.processes`, `RLIMIT_NPROC` as the
//!   wall sets it (the user's tasks when the step starts plus `limits.processes`),
//!   `RLIMIT_DATA` at `limits.memory_bytes`, no core files, and the agent's own open-file
//!   limit (an engine's defaults may be above what the machine allows);
//! - from an image the engine already has (`--pull=never`), never pulled from a registry;
//! - with the engine's own log off (`--log-driver=none`): output reaches the agent through
//!   the engine's standard output and error only, within the stage's output budget.
//!
//! Values of settings go on the engine's command line; secret values (when the job exports
//! secrets as variables) go only in the engine's environment, named with `-e NAME`, so no
//! other process of the machine reads them from `/proc`. The engine's own environment is
//! otherwise `PATH` and `LANG`: a step's variables cannot reconfigure the engine. After
//! each step the container is removed by name, whether it ended, was stopped or its
//! engine was killed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::process::{Resource, Rlimit, getrlimit};

use crate::protocol::{Container, EngineKind, Limits, StepUser};

/// How long removing a step's container may take.
const REMOVE_PATIENCE: Duration = Duration::from_secs(30);

/// Names a container step may not export as secret variables: the engine reads them.
const ENGINE_VARIABLES: &[&str] = &[
    "PATH",
    "LANG",
    "HOME",
    "TMPDIR",
    "CONTAINERS_",
    "CONTAINER_",
    "DOCKER_",
    "PODMAN_",
    "BUILDAH_",
    "REGISTRY_",
    "STORAGE_",
    "XDG_",
];

/// What one program step's container is made of.
pub(crate) struct StepContainer {
    pub(crate) container: Container,
    /// A name no other container of the engine has.
    pub(crate) name: String,
    pub(crate) workspace: PathBuf,
    pub(crate) private: PathBuf,
    pub(crate) cwd: PathBuf,
    pub(crate) user: StepUser,
    pub(crate) limits: Limits,
    /// The step's variables that are not secret: on the command line.
    pub(crate) settings: Vec<(String, String)>,
    /// The secret variables: in the engine's environment only.
    pub(crate) secrets: Vec<(String, String)>,
}

impl StepContainer {
    /// The engine's command that runs `program args` in the container.
    pub(crate) fn command(
        &self,
        program: &Path,
        args: &[OsString],
    ) -> Result<tokio::process::Command, String> {
        for path in [&self.workspace, &self.private, &self.cwd] {
            mountable(path)?;
        }
        for (name, _) in &self.secrets {
            if ENGINE_VARIABLES
                .iter()
                .any(|v| name == v || (v.ends_with('_') && name.starts_with(v)))
            {
                return Err(format!(
                    "secret '{name}' cannot be a variable of a container step: the container engine reads that name itself"
                ));
            }
        }
        let c = &self.container;
        otto_pipeline::plan::check_image(&c.image)
            .map_err(|why| format!("image '{}': {why}", c.image))?;
        let mut command = tokio::process::Command::new(&c.engine);
        command.env_clear();
        for name in ["PATH", "LANG"] {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        command.args(&c.options).arg("run").args(self.options());
        for (name, value) in &self.settings {
            command.arg("--env").arg(format!("{name}={value}"));
        }
        for (name, value) in &self.secrets {
            command.arg("--env").arg(name).env(name, value);
        }
        command
            .arg(format!("--entrypoint={}", program.display()))
            .arg("--")
            .arg(&c.image)
            .args(args);
        Ok(command)
    }

    /// The options of `run` before the variables: what the container may do.
    fn options(&self) -> Vec<String> {
        let mut out: Vec<String> = [
            "--rm",
            "--pull=never",
            "--network=none",
            "--log-driver=none",
            "--read-only",
            "--cap-drop=all",
            "--security-opt=no-new-privileges",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        out.push(format!("--name={}", self.name));
        for (name, value) in &self.container.labels {
            out.push(format!("--label={name}={value}"));
        }
        if self.container.kind == EngineKind::Docker {
            // Podman mounts a tmpfs on /tmp of a read-only container by itself.
            out.push("--tmpfs=/tmp".into());
        }
        out.push(format!("--user={}:{}", self.user.uid, self.user.gid));
        if self.container.kind == EngineKind::Podman && !rustix::process::geteuid().is_root() {
            // Rootless podman: the step user's files keep their owner in the container.
            out.push("--userns=keep-id".into());
        }
        out.push(format!("--pids-limit={}", self.limits.processes.max(1)));
        out.push("--ulimit=core=0:0".into());
        out.push(format!(
            "--ulimit=nofile={}",
            current_limit(Resource::Nofile)
        ));
        // RLIMIT_NPROC counts the user's processes on the whole machine, as the wall's
        // does; the container's own are capped by --pids-limit.
        let nproc = crate::wall::tasks_of(self.user.uid).saturating_add(self.limits.processes);
        out.push(format!("--ulimit=nproc={nproc}:{nproc}"));
        let data = getrlimit(Resource::Data);
        if data
            .maximum
            .is_none_or(|max| self.limits.memory_bytes <= max)
        {
            let bytes = self.limits.memory_bytes;
            out.push(format!("--ulimit=data={bytes}:{bytes}"));
        }
        for dir in [&self.workspace, &self.private] {
            out.push(format!("--volume={}:{}", dir.display(), dir.display()));
        }
        out.push(format!("--workdir={}", self.cwd.display()));
        out
    }

    /// Removes the container by name, whatever state it is in; bounded in time. A
    /// container already gone (`--rm` removed it) is fine.
    pub(crate) async fn remove(&self) {
        let c = &self.container;
        let mut command = tokio::process::Command::new(&c.engine);
        command.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        command.args(&c.options).args(["rm", "--force"]);
        if c.kind == EngineKind::Podman {
            command.args(["--ignore", "--time=0"]);
        }
        command
            .arg(&self.name)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        match tokio::time::timeout(REMOVE_PATIENCE, command.status()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::warn!(target: "otto_agent::container", %error, name = %self.name, "cannot remove a step's container");
            }
            Err(_) => {
                tracing::warn!(target: "otto_agent::container", name = %self.name, "removing a step's container took too long");
            }
        }
    }
}

/// `soft:hard` of the agent's own limit, as the engine's `--ulimit` takes it.
fn current_limit(resource: Resource) -> String {
    let Rlimit { current, maximum } = getrlimit(resource);
    let hard = maximum.map_or_else(|| "-1".to_owned(), |m| m.to_string());
    let soft = current.map_or_else(|| hard.clone(), |c| c.to_string());
    format!("{soft}:{hard}")
}

/// A path an engine's `--volume SRC:DST` takes whole: absolute, without ':' or ','.
fn mountable(path: &Path) -> Result<(), String> {
    let text = path
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8 and cannot be mounted", path.display()))?;
    if !text.starts_with('/') || text.contains([':', ',', '\n']) {
        return Err(format!(
            "{text} cannot be mounted in a container (a path with ':' or ','); set [agent] work_dir elsewhere"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container() -> Container {
        Container {
            engine: "/usr/bin/podman".into(),
            kind: EngineKind::Podman,
            options: vec!["--root=/r".into()],
            image: "localhost/x:1".into(),
            labels: [("otto.job".to_owned(), "0a1b2c".to_owned())].into(),
        }
    }

    #[test]
    fn the_command_keeps_the_container_walled_in() {
        let step = StepContainer {
            container: container(),
            name: "otto-1-0".into(),
            workspace: "/w/run/ws".into(),
            private: "/w/run/.otto-private-x".into(),
            cwd: "/w/run/ws/sub".into(),
            user: StepUser {
                uid: 1000,
                gid: 1000,
            },
            limits: Limits::default(),
            settings: vec![("MODE".to_owned(), "fast".to_owned())],
            secrets: vec![("TOKEN".to_owned(), "s3cr3t-value".to_owned())],
        };
        let command = step
            .command(Path::new("/bin/sh"), &["-c".into(), "true".into()])
            .expect("command");
        let std = command.as_std();
        let args: Vec<String> = std
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let line = args.join(" ");
        for wanted in [
            "--root=/r run --rm --pull=never --network=none",
            "--cap-drop=all",
            "--security-opt=no-new-privileges",
            "--read-only",
            "--user=1000:1000",
            "--volume=/w/run/ws:/w/run/ws",
            "--volume=/w/run/.otto-private-x:/w/run/.otto-private-x",
            "--workdir=/w/run/ws/sub",
            "--env MODE=fast",
            "--env TOKEN ",
            "--entrypoint=/bin/sh -- localhost/x:1 -c true",
            // The node finds a dead agent's containers by their labels.
            "--label=otto.job=0a1b2c",
        ] {
            assert!(line.contains(wanted), "{wanted:?} missing from {line}");
        }
        assert!(
            !line.contains("s3cr3t"),
            "a secret on the command line: {line}"
        );
        assert_eq!(args.iter().filter(|a| a.starts_with("--volume")).count(), 2);
        for refused in [
            "--privileged",
            "--network=host",
            "--pid=host",
            "docker.sock",
        ] {
            assert!(!line.contains(refused), "{refused} in {line}");
        }
        let env: Vec<(String, String)> = std
            .get_envs()
            .filter_map(|(k, v)| {
                Some((
                    k.to_string_lossy().into_owned(),
                    v?.to_string_lossy().into_owned(),
                ))
            })
            .collect();
        assert!(env.contains(&("TOKEN".into(), "s3cr3t-value".into())));
        assert!(
            env.iter()
                .all(|(k, _)| ["PATH", "LANG", "TOKEN"].contains(&k.as_str()))
        );
    }

    #[test]
    fn engine_variables_and_unmountable_paths_are_refused() {
        let mut step = StepContainer {
            container: container(),
            name: "otto-1-0".into(),
            workspace: "/w/ws".into(),
            private: "/w/p".into(),
            cwd: "/w/ws".into(),
            user: StepUser { uid: 1, gid: 1 },
            limits: Limits::default(),
            settings: Vec::new(),
            secrets: vec![("CONTAINERS_CONF".to_owned(), "/tmp/evil.conf".to_owned())],
        };
        let refused = step
            .command(Path::new("/bin/sh"), &[])
            .err()
            .unwrap_or_default();
        assert!(refused.contains("container engine reads"), "{refused}");
        step.secrets = Vec::new();
        step.workspace = "/w/a:b".into();
        let refused = step
            .command(Path::new("/bin/sh"), &[])
            .err()
            .unwrap_or_default();
        assert!(refused.contains("cannot be mounted"), "{refused}");
        step.container.image = "--privileged".into();
        step.workspace = "/w/ws".into();
        let refused = step
            .command(Path::new("/bin/sh"), &[])
            .err()
            .unwrap_or_default();
        assert!(refused.contains("image '--privileged'"), "{refused}");
    }
}
