//! The Otto executables a net runs, found side by side in one directory: by default the
//! directory of the running `otto-testnet`, which is where cargo puts every binary of the
//! workspace.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// The executables a net runs.
pub const BINARIES: [&str; 3] = ["otto", "otto-node", "otto-agent"];

/// The paths of `otto`, `otto-node` and `otto-agent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bins {
    /// The directory they are in.
    pub dir: PathBuf,
    /// The user's CLI.
    pub otto: PathBuf,
    /// The node daemon and its admin commands.
    pub otto_node: PathBuf,
    /// The execution process the node starts for each stage.
    pub otto_agent: PathBuf,
}

impl Bins {
    /// The executables in `dir`; fails naming the missing ones and the cargo command
    /// that builds them.
    pub fn in_dir(dir: &Path) -> Result<Self, Error> {
        let missing: Vec<&str> = BINARIES
            .into_iter()
            .filter(|name| !dir.join(name).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(Error::MissingBinaries {
                dir: dir.to_owned(),
                missing: missing.iter().map(|n| (*n).to_owned()).collect(),
                build: build_command(dir, &missing).join(" "),
            });
        }
        Ok(Self {
            dir: dir.to_owned(),
            otto: dir.join("otto"),
            otto_node: dir.join("otto-node"),
            otto_agent: dir.join("otto-agent"),
        })
    }

    /// The directory of the running executable.
    pub fn exe_dir() -> Result<PathBuf, Error> {
        let exe = std::env::current_exe().map_err(|source| Error::Io {
            what: "finding the running executable".into(),
            source,
        })?;
        Ok(exe
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_owned))
    }
}

/// The workspace this crate was built from, if its sources are still there.
pub fn workspace() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    root.join("Cargo.toml")
        .is_file()
        .then(|| root.join("cli").is_dir())
        .filter(|&cli| cli)
        .map(|_| root.to_owned())
}

/// Whether `dir` is a profile directory of a cargo target directory (`target/release`):
/// cargo marks a target directory with `CACHEDIR.TAG`.
pub fn is_cargo_profile_dir(dir: &Path) -> bool {
    dir.parent()
        .is_some_and(|target| target.join("CACHEDIR.TAG").is_file())
}

/// Builds the executables with cargo into `dir`, a profile directory of a cargo target
/// directory (`target/release`), from the workspace at `workspace`. Cargo prints its
/// progress on standard error; when everything is fresh it only checks and returns.
pub fn build(dir: &Path, workspace: &Path) -> Result<Bins, Error> {
    let words = build_command(dir, &BINARIES);
    let mut cmd = cargo();
    cmd.args(&words[1..])
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"));
    if let Some(target) = dir.parent() {
        cmd.arg("--target-dir").arg(target);
    }
    let status = cmd.status().map_err(|source| Error::Spawn {
        program: "cargo".into(),
        source,
    })?;
    if !status.success() {
        return Err(Error::Build {
            command: words.join(" "),
            status,
        });
    }
    Bins::in_dir(dir)
}

/// `cargo build` of the executables `names`, as words: in debug for a `debug` directory
/// (`target/debug`), else in release. Without `-p`, cargo resolves features for the
/// whole workspace, as `cargo run --bin otto-testnet` does, so both builds share every
/// compiled dependency.
pub fn build_command(dir: &Path, names: &[&str]) -> Vec<String> {
    let mut words = vec!["cargo".to_owned(), "build".to_owned()];
    if dir.file_name().is_none_or(|n| n != "debug") {
        words.push("--release".into());
    }
    for name in names {
        words.extend(["--bin".to_owned(), (*name).to_owned()]);
    }
    words
}

/// A `cargo` command: the cargo that runs this program (`cargo run` and `cargo test`
/// say which), else the one that built it, else `cargo` from the `PATH`. It runs without
/// the variables cargo sets for the program it runs (`CARGO_MANIFEST_DIR`,
/// `CARGO_PKG_NAME`, …): some build scripts rerun when those change, so a nested build
/// that kept them would rebuild those crates, and the next ordinary build again.
pub fn cargo() -> Command {
    let program = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO").map(PathBuf::from))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("cargo"));
    let mut cmd = Command::new(program);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_MANIFEST_LINKS",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_RUSTC_CURRENT_DIR",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ]
            .contains(&name.as_ref())
        {
            cmd.env_remove(name.as_ref());
        }
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_is_named_with_the_command_that_builds_it() {
        let dir = tempfile::tempdir().unwrap();
        let release = dir.path().join("release");
        std::fs::create_dir(&release).unwrap();
        std::fs::write(release.join("otto"), "").unwrap();
        std::fs::write(release.join("otto-node"), "").unwrap();
        let err = Bins::in_dir(&release).unwrap_err().to_string();
        assert!(err.starts_with("otto-agent not found in "), "{err}");
        assert!(
            err.ends_with("build it with `cargo build --release --bin otto-agent`"),
            "{err}"
        );

        std::fs::write(release.join("otto-agent"), "").unwrap();
        let bins = Bins::in_dir(&release).unwrap();
        assert_eq!(bins.otto_agent, release.join("otto-agent"));
    }

    #[test]
    fn the_build_command_follows_the_profile_directory() {
        let words = |dir: &str| build_command(Path::new(dir), &["otto", "otto-agent"]).join(" ");
        assert_eq!(
            words("target/debug"),
            "cargo build --bin otto --bin otto-agent"
        );
        assert_eq!(
            words("target/release"),
            "cargo build --release --bin otto --bin otto-agent"
        );
        assert_eq!(
            words("/opt/otto/bin"),
            "cargo build --release --bin otto --bin otto-agent"
        );
    }
}
