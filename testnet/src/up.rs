//! `otto-testnet up`: a mesh of `orgs × nodes_per_org` real nodes that trust each other,
//! kept running until SIGINT or SIGTERM, then stopped by PID.

use std::path::Path;

use crate::{Bins, Net, NodeId};

/// Makes and starts the mesh in `dir`: orgs `org-1…org-N`, nodes `org-I-nJ` (the first
/// of each org holds its org key), each answering to its org's name; every org's first
/// node invites every node of every other org (`--stages '*' --pipelines '*'
/// --definitions approved`), which joins naming the inviter's org. `say` is told each
/// step.
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
    Ok(net)
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
