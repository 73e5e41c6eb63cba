//! What the tests of `otto-testnet` share: the sibling binaries, built once.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use otto_testnet::bins;
use otto_testnet::process::output_within;

/// The directory cargo put `otto-testnet` in, with `otto`, `otto-node` and `otto-agent`
/// built next to it (they belong to other packages, so cargo does not build them for
/// this one's tests). Built once per test run.
pub(crate) fn bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(build).clone()
}

fn build() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_otto-testnet"))
        .parent()
        .expect("the binary is in a directory")
        .to_owned();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cargo = bins::cargo();
    cargo
        .args(
            bins::build_command(&dir, &bins::BINARIES)
                .get(1..)
                .unwrap_or_default(),
        )
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(
            dir.parent()
                .expect("a profile directory is in a target directory"),
        );
    let out = output_within(&mut cargo, None, Duration::from_secs(1800)).expect("cargo build runs");
    assert!(
        out.status.success(),
        "building otto, otto-node and otto-agent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}
