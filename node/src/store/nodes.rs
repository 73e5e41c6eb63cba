//! Known nodes: the certificates and addresses of the nodes this node has met.

use redb::ReadableTable as _;

use super::codec::{self, NODES};
use super::{Error, KnownNode, Store};

impl Store {
    /// Records a known node, or updates it. What an update keeps: the first `added_at`,
    /// `joined` once true, and the addresses of both records (the new ones first, without
    /// repeats). Returns the stored record.
    pub fn put_node(&self, node: &KnownNode) -> Result<KnownNode, Error> {
        self.write(|txn| {
            let mut table = txn.open_table(NODES)?;
            let key = node.keyid.as_bytes();
            let merged = match codec::get::<KnownNode>(&table, "nodes", key)? {
                Some(old) => {
                    let mut addrs = node.addrs.clone();
                    for addr in old.addrs {
                        if !addrs.contains(&addr) {
                            addrs.push(addr);
                        }
                    }
                    addrs.truncate(MAX_ADDRS);
                    KnownNode {
                        addrs,
                        joined: old.joined || node.joined,
                        added_at: old.added_at,
                        last_seen: node.last_seen.max(old.last_seen),
                        ..node.clone()
                    }
                }
                None => node.clone(),
            };
            table.insert(key, codec::encode(&merged)?.as_slice())?;
            Ok(merged)
        })
    }

    /// The known node with this keyid.
    pub fn node(&self, keyid: &str) -> Result<Option<KnownNode>, Error> {
        self.read(|txn| codec::get(&txn.open_table(NODES)?, "nodes", keyid.as_bytes()))
    }

    /// Every known node, by keyid.
    pub fn nodes(&self) -> Result<Vec<KnownNode>, Error> {
        self.read(|txn| {
            let table = txn.open_table(NODES)?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (_, value) = entry?;
                out.push(codec::decode("nodes", value.value())?);
            }
            Ok(out)
        })
    }

    /// Records that this node had a connection with the node of `keyid` at `now`, through
    /// `addr` when given. Unknown keyids are ignored.
    pub fn node_seen(&self, keyid: &str, now: u64, addr: Option<&str>) -> Result<(), Error> {
        self.write(|txn| {
            let mut table = txn.open_table(NODES)?;
            let key = keyid.as_bytes();
            let Some(mut node) = codec::get::<KnownNode>(&table, "nodes", key)? else {
                return Ok(());
            };
            node.last_seen = Some(now);
            if let Some(addr) = addr
                && !node.addrs.iter().any(|a| a == addr)
            {
                node.addrs.insert(0, addr.to_owned());
                node.addrs.truncate(MAX_ADDRS);
            }
            table.insert(key, codec::encode(&node)?.as_slice())?;
            Ok(())
        })
    }

    /// Forgets a known node. Returns whether it was known.
    pub fn remove_node(&self, keyid: &str) -> Result<bool, Error> {
        self.write(|txn| Ok(txn.open_table(NODES)?.remove(keyid.as_bytes())?.is_some()))
    }
}

/// The most addresses kept per node.
const MAX_ADDRS: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    fn node(keyid: &str, addrs: &[&str], joined: bool, added_at: u64) -> KnownNode {
        KnownNode {
            keyid: keyid.to_owned(),
            peer_id: format!("peer-{keyid}"),
            name: "ops-1".to_owned(),
            org: "acme-ops".to_owned(),
            cert: vec![1, 2, 3],
            addrs: addrs.iter().map(|a| (*a).to_owned()).collect(),
            joined,
            added_at,
            last_seen: None,
        }
    }

    #[test]
    fn an_update_keeps_joined_first_seen_and_every_address() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.redb")).unwrap();
        store.put_node(&node("k1", &["/a"], true, 10)).unwrap();
        let merged = store
            .put_node(&node("k1", &["/b", "/a"], false, 20))
            .unwrap();
        assert!(merged.joined);
        assert_eq!(merged.added_at, 10);
        assert_eq!(merged.addrs, ["/b", "/a"]);
        store.node_seen("k1", 30, Some("/c")).unwrap();
        store.node_seen("unknown", 30, None).unwrap();
        let stored = store.node("k1").unwrap().unwrap();
        assert_eq!(stored.last_seen, Some(30));
        assert_eq!(stored.addrs, ["/c", "/b", "/a"]);
        assert_eq!(store.nodes().unwrap().len(), 1);
        assert!(store.remove_node("k1").unwrap());
        assert!(store.node("k1").unwrap().is_none());
    }
}
