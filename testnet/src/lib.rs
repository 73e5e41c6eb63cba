//! Local multi-organisation Otto meshes built from real processes.
//!
//! A [`Net`] is a directory of node homes and the `otto-node` processes started on them,
//! driven with the real `otto` and `otto-node` commands, exactly as an operator would. It
//! is what `otto-testnet demo` runs on, and what later scenarios and benchmarks build on.
//!
//! - [`bins`]: finds the `otto`, `otto-node` and `otto-agent` executables (and builds
//!   them with cargo when the net runs from this workspace's target directory).
//! - [`net`]: [`Net`] and [`NodeProc`]: `otto-node init`, `otto-node start` as a child
//!   process with its log in a file, commands with the node's home, stop by PID (SIGTERM,
//!   then SIGKILL after a grace period). Dropping a node kills its process, so nothing is
//!   left running after an error or a panic.
//! - [`netns`]: network namespaces (Linux, root): hosts on a private switch, with pulled
//!   cables, partitions and `tc netem` delay and loss. [`Net::with_namespaces`] runs
//!   each node in one (`up --netns`, `run --netns`).
//! - [`timeline`]: turns successive `otto status --json` answers of several nodes into
//!   the facts that changed, once each, in order.
//! - [`webhook`]: calls a node's webhook URL over HTTPS, trusting only the node's CA.
//! - [`process`]: commands with bounded waits, and stopping a child by its PID.
//! - [`sample`]: the sample application (`testnet/sample/`), built into the binary.
//! - [`demo`]: the `demo` scenario: two orgs deliver the sample application together.
//! - [`up`]: `otto-testnet up`: a mesh of orgs that trust each other, until Ctrl-C.
//! - [`scenario`]: the TOML scenario format of `otto-testnet run`, read and checked.
//! - [`play`]: plays a scenario's timeline and checks its invariants.
//! - [`bench`](mod@bench): `otto-testnet bench`: performance figures, each next to a baseline
//!   measured in the same run.
//! - [`sim`]: `otto-testnet sim`: the deterministic simulator of `otto-handoff` at 1,000
//!   nodes, timed and measured.
//!
//! Every wait is bounded and says what it waited for when it runs out.

pub mod bench;
pub mod bins;
pub mod demo;
pub mod net;
pub mod netns;
pub mod play;
pub mod process;
pub mod sample;
pub mod scenario;
pub mod sim;
pub mod timeline;
pub mod up;
pub mod webhook;

pub use bins::Bins;
pub use net::{Net, NodeId, NodeProc};

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// What can go wrong while driving a net.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Some of the Otto executables are not in the directory they were looked for in.
    #[error("{} not found in {}: build {} with `{build}`", missing.join(", "), dir.display(), if missing.len() == 1 { "it" } else { "them" })]
    MissingBinaries {
        /// The directory searched.
        dir: PathBuf,
        /// The executables that are not there.
        missing: Vec<String>,
        /// The command that builds them.
        build: String,
    },
    /// Building the Otto executables with cargo failed.
    #[error("`{command}` failed ({status})")]
    Build {
        /// The cargo command.
        command: String,
        /// How it exited.
        status: ExitStatus,
    },
    /// A process could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The executable.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// A bounded wait ran out.
    #[error("gave up after {} waiting for {what}", human(*limit))]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long it was waited for.
        limit: Duration,
    },
    /// A command exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command, as a person would type it.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// The last lines of its standard error.
        stderr: String,
    },
    /// A node process exited while it was expected to run.
    #[error("{node} exited ({status}); the end of its log:\n{log}")]
    NodeExited {
        /// The node.
        node: String,
        /// How it exited.
        status: ExitStatus,
        /// The end of its log.
        log: String,
    },
    /// A file or directory could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A command's output was not what was expected.
    #[error("unexpected output of `{command}`: {problem}")]
    Output {
        /// The command.
        command: String,
        /// What is wrong with its output.
        problem: String,
    },
    /// A webhook call failed before an HTTP answer came back.
    #[error("calling {url}: {problem}")]
    Webhook {
        /// The URL.
        url: String,
        /// What went wrong.
        problem: String,
    },
}

/// A duration for people: `850ms`, `12.3s`, `4m 05s`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m {:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human(Duration::from_millis(850)), "850ms");
        assert_eq!(human(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(human(Duration::from_secs(245)), "4m 05s");
    }
}
