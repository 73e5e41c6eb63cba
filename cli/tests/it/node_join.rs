//! Node membership with real processes: invites, joins, peers, aliases, approvals and
//! revocation between the nodes of two orgs.

use serde_json::Value;

use crate::node_support::{Node, text};

/// `otto-node ARGS` on `node`, which must succeed; its standard output.
fn ok(node: &Node, args: &[&str]) -> String {
    let out = node.otto_node(args);
    assert!(
        out.status.success(),
        "otto-node {args:?} failed: {}\n{}\nnode log:\n{}",
        text(&out.stderr),
        text(&out.stdout),
        node.log()
    );
    text(&out.stdout)
}

/// `otto-node ARGS` on `node`, which must fail with one line on standard error; that line.
fn fails(node: &Node, args: &[&str]) -> String {
    let out = node.otto_node(args);
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "otto-node {args:?} succeeded: {}",
        text(&out.stdout)
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

/// `otto-node peers --json` on `node`.
fn peers(node: &Node) -> Vec<Value> {
    let answer: Value = serde_json::from_str(&ok(node, &["peers", "--json"])).unwrap();
    answer["peers"].as_array().unwrap().clone()
}

/// The peer named `name` in `node`'s peers, once `check` holds for it.
fn wait_peer(node: &Node, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    node.wait_for(&format!("{name} to be {what}"), || {
        peers(node)
            .into_iter()
            .find(|peer| peer["node"] == name && check(peer))
    })
}

/// An invite token from `node` for role deploy and `extra` flags.
fn invite(node: &Node, extra: &[&str]) -> String {
    let mut args = vec!["invite", "--role", "deploy"];
    args.extend_from_slice(extra);
    let token = ok(node, &args).trim().to_owned();
    assert!(token.starts_with("otto1"), "{token}");
    token
}

//   ops-1 (acme-ops) ◀──join TOKEN── dev-1 (acme-dev)
//   both list the other as a trusted, connected peer; the token is spent
#[test]
fn two_orgs_join_once_and_list_each_other() {
    let mut ops = Node::init_as("acme-ops", "ops-1", &["--answers-to", "ops"]);
    let mut dev = Node::init_as("acme-dev", "dev-1", &[]);
    ops.start();
    dev.start();
    let addrs = std::fs::read_to_string(ops.home.join("mesh.addrs")).unwrap();
    assert!(
        addrs.lines().all(|a| a.contains("/p2p/12D3KooW")) && addrs.lines().count() == 2,
        "{addrs}"
    );

    let token = invite(&ops, &["--stages", "Deploy*", "--envs", "prod,staging"]);
    let joined = ok(&dev, &["join", &token, "--alias", "ops"]);
    assert!(
        joined.contains("joined ops-1 of org acme-ops as ops"),
        "{joined}"
    );
    assert!(joined.contains("stages Deploy*"), "{joined}");
    assert!(
        joined.contains("it may hand this node: nothing"),
        "{joined}"
    );

    let seen_by_ops = wait_peer(&ops, "dev-1", "connected", |p| p["connected"] == true);
    assert_eq!(seen_by_ops["org"], "acme-dev");
    assert_eq!(seen_by_ops["status"], "trusted");
    assert_eq!(seen_by_ops["joined"], true);
    assert_eq!(seen_by_ops["scope"]["stages"][0], "Deploy*");
    assert_eq!(seen_by_ops["scope"]["environments"][1], "staging");
    let seen_by_dev = wait_peer(&dev, "ops-1", "connected", |p| p["connected"] == true);
    assert_eq!(seen_by_dev["org"], "acme-ops");
    assert_eq!(seen_by_dev["aliases"][0], "ops");
    assert_eq!(seen_by_dev["status"], "trusted");
    assert!(seen_by_dev["scope"].is_null(), "{seen_by_dev}");
    let table = ok(&dev, &["peers"]);
    assert!(table.starts_with("NODE"), "{table}");
    let row = table.lines().find(|l| l.starts_with("ops-1")).unwrap();
    for cell in ["acme-ops", "ops", "trusted", "yes", "now"] {
        assert!(row.contains(cell), "{cell} in {row}");
    }

    let again = fails(&dev, &["join", &token]);
    assert!(
        again.contains("ops-1 (acme-ops) refused the join: invite was already used"),
        "{again}"
    );

    // Aliases and the trust store.
    assert_eq!(
        ok(&ops, &["trust", "alias", "dev", "acme-dev"]).trim(),
        "dev = org acme-dev"
    );
    let listed = ok(&ops, &["trust", "list"]);
    assert!(listed.contains("dev = org acme-dev"), "{listed}");
    assert!(listed.contains("acme-ops (this node's org)"), "{listed}");
    assert!(listed.contains("used by acme-dev"), "{listed}");
    let trust: Value = serde_json::from_str(&ok(&dev, &["trust", "list", "--json"])).unwrap();
    let pinned = trust["orgs"].as_array().unwrap();
    assert!(
        pinned
            .iter()
            .any(|o| o["name"] == "acme-ops" && o["own"] == false)
    );
    assert_eq!(trust["aliases"][0]["alias"], "ops");
    let unknown = fails(&ops, &["trust", "alias", "qa", "nobody"]);
    assert!(unknown.contains("\"nobody\""), "{unknown}");

    // Approvals.
    let digest = format!("sha256:{}", "3f".repeat(32));
    assert_eq!(
        ok(&ops, &["approve", &digest]).trim(),
        format!("approved {digest}")
    );
    assert!(ok(&ops, &["trust", "list"]).contains(&digest));
    let bad = fails(&ops, &["approve", "3fa1"]);
    assert!(bad.contains("not a definition digest"), "{bad}");
}

//   ops-1 ──token (expires in 1s)──▶ dev-1: refused once expired; bad input refused
#[test]
fn expired_and_damaged_invites_are_refused() {
    let mut ops = Node::init_as("acme-ops", "ops-1", &[]);
    let mut dev = Node::init_as("acme-dev", "dev-1", &[]);
    ops.start();
    dev.start();
    let token = invite(&ops, &["--stages", "Deploy", "--expires", "1s"]);
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    let expired = fails(&dev, &["join", &token]);
    assert!(expired.contains("invite expired"), "{expired}");

    let fresh = invite(&ops, &["--stages", "Deploy"]);
    let swap = if &fresh[40..41] == "x" { "y" } else { "x" };
    let damaged = format!("{}{swap}{}", &fresh[..40], &fresh[41..]);
    let refused = fails(&dev, &["join", &damaged]);
    assert!(refused.contains("mistyped"), "{refused}");
    let no_stage = fails(&ops, &["invite", "--role", "deploy"]);
    assert!(no_stage.contains("--stages"), "{no_stage}");
    // A flag that does not parse is a usage error, as clap reports them.
    let bad_expiry = ops.otto_node(&["invite", "--role", "deploy", "--expires", "2w"]);
    assert!(!bad_expiry.status.success());
    let first = text(&bad_expiry.stderr);
    assert!(
        first.lines().next().unwrap().contains("unknown unit"),
        "{first}"
    );
    assert!(peers(&dev).is_empty());
}

//   ops-1 (acme-ops, holds org.key) ◀──join── dev-1 (acme-dev) ──join──▶ ops-2 (acme-ops)
//   ops-1: trust revoke ops-2 ──revocation list──▶ dev-1
//   dev-1 now refuses ops-2: not trusted, disconnected, and a new invite does not help
#[test]
fn a_revoked_node_is_refused_by_the_other_org() {
    let mut ops1 = Node::init_as("acme-ops", "ops-1", &[]);
    let org_key = ops1.home.join("org.key");
    let mut ops2 = Node::init_as(
        "acme-ops",
        "ops-2",
        &["--org-key", org_key.to_str().unwrap()],
    );
    let mut dev = Node::init_as("acme-dev", "dev-1", &[]);
    ops1.start();
    ops2.start();
    dev.start();
    ok(
        &dev,
        &[
            "join",
            &invite(&ops1, &["--stages", "Deploy"]),
            "--alias",
            "ops",
        ],
    );
    ok(&dev, &["join", &invite(&ops2, &["--stages", "Deploy"])]);
    let ops2_seen = wait_peer(&dev, "ops-2", "connected", |p| p["connected"] == true);
    let ops2_key = ops2_seen["node_key"].as_str().unwrap().to_owned();

    let keyless = fails(&ops2, &["trust", "revoke", &ops2_key]);
    assert!(keyless.contains("holds no org key"), "{keyless}");

    let revoked = ok(
        &ops1,
        &["trust", "revoke", &ops2_key, "--reason", "laptop stolen"],
    );
    assert!(
        revoked.contains("revocation list 1 of org acme-ops"),
        "{revoked}"
    );
    assert!(
        revoked.contains("delivered to: dev-1 (acme-dev)"),
        "{revoked}"
    );

    let refused = wait_peer(&dev, "ops-2", "revoked and disconnected", |p| {
        p["status"] == "revoked" && p["connected"] == false
    });
    assert!(
        refused["reason"].as_str().unwrap().contains("revoked"),
        "{refused}"
    );
    let still = wait_peer(&dev, "ops-1", "trusted", |p| p["status"] == "trusted");
    assert_eq!(still["connected"], true);
    let listed = ok(&dev, &["trust", "list"]);
    assert!(
        listed.contains(&format!("revoked {ops2_key} (laptop stolen)")),
        "{listed}"
    );

    let back = fails(&ops2, &["join", &invite(&dev, &["--stages", "Build"])]);
    assert!(back.contains("refused the join"), "{back}");
    assert!(back.contains("revoked"), "{back}");
    let again = fails(&ops1, &["trust", "revoke", &ops2_key]);
    assert!(again.contains("already revoked"), "{again}");
}
