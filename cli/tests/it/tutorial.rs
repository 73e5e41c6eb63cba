//! `docs/tutorial.md` works as written: its `sh` blocks, in order, run as one bash script
//! with the built binaries on the `PATH`, and the script succeeds.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::node_support::{agent, text, wait_output_within};

/// The `sh` code blocks of a markdown text, in order.
fn shell_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn the_tutorial_runs_as_written() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/tutorial.md");
    let blocks = shell_blocks(&std::fs::read_to_string(doc).unwrap());
    assert!(blocks.len() >= 10, "the tutorial has its steps");
    // Nodes the script started are stopped even when a step fails.
    let mut script = String::from(
        "set -euo pipefail\ntrap 'kill ${DEV_PID:-} ${OPS_PID:-} 2>/dev/null || true' EXIT\n",
    );
    script.push_str(&blocks.join("\n"));
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_otto")).parent().unwrap();
    assert_eq!(agent().parent(), Some(bin_dir), "otto-agent is beside otto");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Its own process group, so that whatever the script started is ended with it.
    let child = Command::new("bash")
        .args(["-c", &script])
        .process_group(0)
        .env("PATH", path)
        .env_remove("OTTO_HOME")
        .env_remove("OTTO_NODE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let group = rustix::process::Pid::from_child(&child);
    let out = wait_output_within(child, Duration::from_secs(240));
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "the tutorial failed:\n{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("ops-1 rejected Deploy"), "{stdout}");
    assert!(stdout.contains("deploying release 1.0"), "{stdout}");
    assert!(stdout.contains("verified: all 2 stages"), "{stdout}");
}
