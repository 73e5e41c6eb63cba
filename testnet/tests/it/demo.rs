//! `otto-testnet demo` as a newcomer runs it: two real nodes of two orgs deliver the
//! sample application, and the demo exits 0 only if everything held.
//!
//! ```text
//!   dev-1 (acme-dev)  ── Deploy staging offer ──▶  ops-1 (acme-ops)
//!     Build, Test     ◀──────── receipts ────────    Deploy staging (poll gate)
//!                                                    Deploy production (webhook gate)
//! ```

use std::process::Command;
use std::time::Duration;

use otto_testnet::process::output_within;

use crate::support::bin_dir;

fn demo(args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_otto-testnet"));
    cmd.arg("demo").args(args);
    let out = output_within(&mut cmd, None, Duration::from_secs(600)).expect("the demo ends");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_demo_delivers_across_two_orgs_and_everything_holds() {
    let bin_dir = bin_dir();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("demo");
    let (ok, out, err) = demo(&[
        "--bin-dir",
        &bin_dir.to_string_lossy(),
        "--dir",
        &dir.to_string_lossy(),
    ]);
    assert!(ok, "the demo failed:\n{out}\n{err}");

    // In order: the refusal with the command that fixes it, the approval on ops, the
    // accepted handoff, both gates on ops, the callback, the verified chain.
    let expected = [
        "handoff Deploy staging → ops-1: refused: ",
        "hint: run `otto-node approve sha256:",
        "ops-1    ops approves dev's steps for Deploy staging by the digest the refusal names: \
         otto-node approve sha256:",
        "handoff Deploy staging → ops-1: accepted",
        "ops-1    Build: succeeded on dev-1 (its signed receipt verified here)",
        "ops-1    Deploy staging: waits at its exit gate: polling `sh ./healthy.sh staging`",
        "ops-1    Deploy staging: poll gate passed",
        "Deploy production | authenticating to shop.example.com with token ***",
        "ops-1    Deploy production: waits at its exit gate: waiting for a callback",
        "monitor  production looks healthy: POST https://127.0.0.1:",
        "ops-1    Deploy production: webhook gate passed",
        "dev-1    Deploy production: succeeded on ops-1",
        "verified: all 4 stages proven by receipts of nodes of trusted orgs",
        "everything held",
    ];
    let mut from = 0;
    for line in expected {
        let at = out[from..]
            .find(line)
            .unwrap_or_else(|| panic!("{line:?} is missing after byte {from} of:\n{out}"));
        from += at + line.len();
    }
    assert!(!out.contains('✗'), "{out}");
    assert!(dir.join("attestations.json").is_file());
    assert!(dir.join("dev-1.log").is_file() && dir.join("ops-1.log").is_file());

    // The nodes it started are gone.
    for pid in pids(&out) {
        let gone = rustix::process::Pid::from_raw(pid)
            .is_none_or(|p| rustix::process::test_kill_process(p).is_err());
        assert!(gone, "node process {pid} still runs");
    }
}

#[test]
fn a_missing_binary_is_named_with_the_command_that_builds_it() {
    let empty = tempfile::tempdir().unwrap();
    let (ok, out, err) = demo(&["--bin-dir", &empty.path().to_string_lossy()]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("otto, otto-node, otto-agent not found in ")
            && err.contains("`cargo build --release --bin otto --bin otto-node --bin otto-agent`"),
        "{err}"
    );
}

/// The PIDs of the nodes the demo says it started.
fn pids(out: &str) -> Vec<i32> {
    out.lines()
        .filter(|l| l.contains("otto-node start: pid "))
        .filter_map(|l| l.split("pid ").nth(1)?.split(',').next()?.parse().ok())
        .collect()
}
