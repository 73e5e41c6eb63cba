//! `otto-node peers`: the nodes this node knows and the peers it is connected to.

use std::io::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use otto_node::api::Peers;
use otto_node::membership::PeerView;

use crate::client::NodeArgs;
use crate::invite::list_or_none;

/// List the known nodes: org, alias, status, connection, last seen, address, scope.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto-node peers
  otto-node peers --json | jq '.peers[] | select(.connected)'

STATUS is trusted (its org is pinned, its certificate valid, it is not revoked),
revoked, expired, not_yet_valid, untrusted_org, invalid, or unknown (connected but
never introduced by a join or a certificate). SCOPE is what the node's org may hand
this node. --json prints the API's answer (docs/api.md), with peer ids, every address
and the full scope.")]
pub(crate) struct Args {
    #[command(flatten)]
    node: NodeArgs,
    /// Print the peers as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let client = args.node.client()?;
    let peers: Peers = client.get("/v1/peers")?;
    let mut out = io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&peers)?)?;
        return Ok(());
    }
    if peers.peers.is_empty() {
        writeln!(
            out,
            "no peers yet: invite another org's node with `otto-node invite` or join one with `otto-node join`"
        )?;
        return Ok(());
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = [
        "NODE",
        "ORG",
        "ALIAS",
        "STATUS",
        "CONNECTED",
        "LAST SEEN",
        "ADDRESS",
        "SCOPE",
    ];
    let rows: Vec<[String; 8]> = peers.peers.iter().map(|peer| row(peer, now)).collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text
    };
    writeln!(out, "{}", line(&header))?;
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        writeln!(out, "{}", line(&cells).trim_end())?;
    }
    Ok(())
}

/// The table cells of one peer.
fn row(peer: &PeerView, now: u64) -> [String; 8] {
    let dash = || "-".to_owned();
    [
        peer.node.clone().unwrap_or_else(|| short(&peer.peer_id)),
        peer.org.clone().unwrap_or_else(dash),
        if peer.aliases.is_empty() {
            dash()
        } else {
            peer.aliases.join(",")
        },
        peer.status.clone(),
        if peer.connected { "yes" } else { "no" }.to_owned(),
        match peer.last_seen {
            _ if peer.connected => "now".to_owned(),
            Some(seen) => ago(now.saturating_sub(seen)),
            None => "never".to_owned(),
        },
        peer.addresses.first().cloned().unwrap_or_else(dash),
        match &peer.scope {
            Some(policy) => format!(
                "stages {}; pipelines {}; envs {}",
                list_or_none(&policy.stages),
                list_or_none(&policy.pipelines),
                list_or_none(&policy.environments)
            ),
            None => "nothing".to_owned(),
        },
    ]
}

/// `12s ago`, `3m ago`, `2h ago`, `4d ago`.
fn ago(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3_600 => format!("{}m ago", secs / 60),
        3_600..86_400 => format!("{}h ago", secs / 3_600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// The first characters of a long peer id.
fn short(peer_id: &str) -> String {
    match peer_id.get(..16) {
        Some(head) if peer_id.len() > 16 => format!("{head}…"),
        _ => peer_id.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(ago(5), "5s ago");
        assert_eq!(ago(125), "2m ago");
        assert_eq!(ago(7_200), "2h ago");
        assert_eq!(ago(200_000), "2d ago");
    }
}
