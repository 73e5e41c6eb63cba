//! `otto-testnet up`: a mesh of `orgs × nodes_per_org` real nodes that trust each other,
//! kept running until SIGINT or SIGTERM, then stopped by PID.

use std::path::Path;

use crate::{Bins, Error, Net, NodeId};

/// Makes and starts the mesh in `dir`: orgs `org-1…org-N`, nodes `org-I-nJ` (the first
/// of each org holds its org key), each answering to its org's name; every org's first
/// node invites every node of every other org (`--stages '*' --pipelines '*'
/// --definitions approved`), which joins naming the inviter's org; with several nodes per
/// org, each other node of an org then invites the first node of every other org, so any
/// node takes any other org's stages. `say` is told each step.
pub fn build(
    dir: &Path,
    bins: Bins,
    orgs: usize,
    nodes_per_org: usize,
    say: &mut dyn FnMut(&str),
) -> anyhow::Result<Net> {
    build_on(Net::new(dir, bins)?, orgs, nodes_per_org, say)
}

/// [`build`] on `net`, which has no nodes yet: made with [`Net::with_namespaces`], each
/// node runs in a network namespace of its own (`up --netns`).
pub fn build_on(
    mut net: Net,
    orgs: usize,
    nodes_per_org: usize,
    say: &mut dyn FnMut(&str),
) -> anyhow::Result<Net> {
    let mut firsts: Vec<(String, NodeId)> = Vec::new();
    let mut members: Vec<Vec<NodeId>> = Vec::new();
    for o in 1..=orgs {
        let org = format!("org-{o}");
        let first = net.add(&org, &format!("{org}-n1"), &[&org])?;
        let mut ids = vec![first];
        for n in 2..=nodes_per_org {
            ids.push(net.add_to_org(first, &format!("{org}-n{n}"), &[&org])?);
        }
        firsts.push((org, first));
        members.push(ids);
    }
    net.start_all()?;
    for node in net.nodes() {
        let host = node.host().map_or_else(String::new, |h| {
            format!(", host {} (namespace {})", h.ip(), h.namespace())
        });
        say(&format!(
            "{} ({}) started: pid {}, API {}{host}",
            node.name,
            node.org,
            node.pid().unwrap_or_default(),
            node.api_addr().unwrap_or_default()
        ));
    }
    for (i, (org, inviter)) in firsts.iter().enumerate() {
        for (j, joiners) in members.iter().enumerate() {
            if i == j {
                continue;
            }
            for &joiner in joiners {
                net.connect(*inviter, joiner, &TRUST_ALL, org)?;
                say(&format!(
                    "{} invited {}, which joined naming it {org}",
                    net[*inviter].name, net[joiner].name
                ));
            }
        }
    }
    if nodes_per_org > 1 {
        let more = open_every_node(&net)?;
        say(&format!(
            "the other nodes of each org invited the first node of every other org ({more} invites), so every node takes other orgs' stages"
        ));
    }
    Ok(net)
}

/// Lets every node of the mesh take stages from every other org, not only each org's
/// first node (a run's owner may resolve to any node of the org, and each node keeps its
/// own policy): each other node invites the first node of every other org, which joins
/// naming the inviter's org. How many invites that took.
fn open_every_node(net: &Net) -> Result<usize, Error> {
    let nodes = net.nodes();
    let mut made = 0;
    for node in nodes {
        let first_of_org = nodes.iter().find(|n| n.org == node.org);
        if first_of_org.is_some_and(|f| std::ptr::eq(f, node)) {
            continue;
        }
        let mut orgs_done: Vec<&str> = Vec::new();
        for other in nodes.iter().filter(|n| n.org != node.org) {
            if orgs_done.contains(&other.org.as_str()) {
                continue;
            }
            orgs_done.push(&other.org);
            let mut args = vec!["invite"];
            args.extend_from_slice(&TRUST_ALL);
            let token = node.otto_node_ok(&args)?;
            other.otto_node_ok(&["join", token.trim(), "--alias", &node.org])?;
            made += 1;
        }
    }
    Ok(made)
}

/// The invite every org of an `up` mesh gives every node of the others: any stage of any
/// pipeline, definitions approved.
pub const TRUST_ALL: [&str; 8] = [
    "--role",
    "deliver",
    "--stages",
    "*",
    "--pipelines",
    "*",
    "--definitions",
    "approved",
];

/// Waits for SIGINT or SIGTERM; the signal's name.
pub fn wait_for_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        Ok(name)
    })
}
