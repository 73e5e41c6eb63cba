//! Tidy checks over the whole workspace, run as ordinary tests.
//!
//! The pure crates (protocol, trust, pipeline, handoff) must stay free of async runtimes,
//! networking stacks and HTTP: that is what keeps them fast to test and easy to fuzz, and
//! what lets the node swap its I/O without touching them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Crates that must stay pure.
const PURE: &[&str] = &[
    "otto-protocol",
    "otto-trust",
    "otto-pipeline",
    "otto-handoff",
];

/// Packages a pure crate may not depend on, directly or through others. `libp2p-identity`
/// (key types and PeerId only) is allowed; the rest of libp2p is not.
const BANNED: &[&str] = &[
    "tokio",
    "async-std",
    "smol",
    "mio",
    "libp2p",
    "libp2p-swarm",
    "libp2p-core",
    "libp2p-tcp",
    "libp2p-quic",
    "hyper",
    "reqwest",
    "axum",
    "tower",
    "h2",
    "ureq",
];

#[test]
fn pure_crates_do_not_depend_on_io_stacks() {
    let graph = dependency_graph();
    let mut problems = Vec::new();
    for (id, (name, _)) in &graph {
        if !PURE.contains(&name.as_str()) {
            continue;
        }
        problems.extend(reaching(&graph, id, BANNED));
    }
    assert!(
        problems.is_empty(),
        "pure crates reach I/O stacks:\n{}",
        problems.join("\n")
    );
}

/// Crates that manage and must link no execution code: the node never runs user code,
/// so it speaks to its agents through `otto-agent-protocol` and links nothing of
/// `otto-agent` (nor the crates that build the wall).
const MANAGERS: &[&str] = &["otto-node", "otto-cli"];

/// What a managing crate may not depend on, directly or through others.
const EXECUTION: &[&str] = &["otto-agent", "landlock"];

#[test]
fn the_node_links_no_execution_code() {
    let graph = dependency_graph();
    let mut problems = Vec::new();
    let mut checked = 0;
    for (id, (name, _)) in &graph {
        if !MANAGERS.contains(&name.as_str()) {
            continue;
        }
        checked += 1;
        problems.extend(reaching(&graph, id, EXECUTION));
    }
    assert_eq!(
        checked,
        MANAGERS.len(),
        "a managing crate is missing from the workspace"
    );
    assert!(
        problems.is_empty(),
        "the node links execution code:\n{}",
        problems.join("\n")
    );
    // The check can fail: otto-agent itself reaches what it bans.
    let agent = graph
        .iter()
        .find(|(_, (name, _))| name == "otto-agent")
        .map(|(id, _)| id.clone())
        .expect("otto-agent is in the workspace");
    assert!(!reaching(&graph, &agent, &["landlock"]).is_empty());
}

/// Package id -> (name, normal and build dependency ids) over the whole resolved graph.
type Graph = BTreeMap<String, (String, Vec<String>)>;

/// Each path from `from` to a package named in `banned`, as "a -> b -> c".
fn reaching(graph: &Graph, from: &str, banned: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    let name = graph.get(from).map(|(n, _)| n.clone()).unwrap_or_default();
    let mut seen = BTreeSet::new();
    let mut stack = vec![(from.to_owned(), vec![name])];
    while let Some((at, path)) = stack.pop() {
        if !seen.insert(at.clone()) {
            continue;
        }
        for dep in graph
            .get(&at)
            .map(|(_, d)| d.as_slice())
            .unwrap_or_default()
        {
            let dep_name = graph.get(dep).map(|(n, _)| n.clone()).unwrap_or_default();
            let mut next = path.clone();
            next.push(dep_name.clone());
            if banned.contains(&dep_name.as_str()) {
                problems.push(next.join(" -> "));
            } else {
                stack.push((dep.clone(), next));
            }
        }
    }
    problems
}

/// The workspace's resolved dependency graph, from `cargo metadata`.
fn dependency_graph() -> Graph {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // Offline first, so the check works without a network once the build has fetched what
    // it needs; cargo may still want the manifests of packages for other platforms, which
    // a build never downloads, so fall back to letting it fetch them.
    let metadata = |offline: bool| {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["metadata", "--format-version", "1", "--manifest-path"])
            .arg(root.join("Cargo.toml"));
        if offline {
            cmd.arg("--offline");
        }
        cmd.output().expect("cargo metadata runs")
    };
    let mut out = metadata(true);
    if !out.status.success() {
        out = metadata(false);
    }
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");

    // Package id -> (name, normal and build dependency ids). Dev-dependencies are not part
    // of what a crate pulls into its users, so they are left out.
    let mut graph: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    let names: BTreeMap<String, String> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap_or_default().to_owned(),
                p["name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for node in meta["resolve"]["nodes"].as_array().expect("resolve graph") {
        let id = node["id"].as_str().unwrap_or_default().to_owned();
        let deps = node["deps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|k| k["kind"].as_str() != Some("dev"))
            })
            .filter_map(|d| d["pkg"].as_str().map(str::to_owned))
            .collect();
        graph.insert(
            id.clone(),
            (names.get(&id).cloned().unwrap_or_default(), deps),
        );
    }

    graph
}
