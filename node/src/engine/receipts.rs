//! Receipts of the stages this node runs, and who moves a stage on.
//!
//! When an attempt of a stage this node ran ends (succeeded, failed or cancelled), the
//! engine signs a [`Receipt`] with the node key and stores it before it publishes the
//! stage's final state, so a receipt exists for every attempt that ended here. Its fields:
//!
//! - `log_digest`: sha256 of the attempt's log lines as stored (masked), each followed by
//!   a line feed, in order;
//! - `upstream`: the sha256 of the canonical bytes of the latest receipt of every stage
//!   the stage depends on, directly or not, in plan order (the order of an offer's chain);
//! - `outputs`: the artifacts the attempt archived.
//!
//! **Who moves a stage on**, the upstream chain and the outcome a state reads as are rules
//! of [`otto_handoff::rules`], which the simulator applies too.

use otto_handoff::rules;
use otto_pipeline::plan::Body;
use otto_protocol::{
    Artifact, Digest as WireDigest, Envelope, KeyBytes, NodeIdentity, Payload, Receipt,
};
use otto_trust::NodeKey;
use sha2::{Digest as _, Sha256};

use crate::store::{self, Logs, RunId, StageState, Store};

pub(crate) use otto_handoff::rules::{digest_of, latest};

/// What the engine signs receipts with: the node key and the node's names.
pub struct ReceiptSigner {
    /// The node key.
    pub key: NodeKey,
    /// The node's name within its org.
    pub name: String,
    /// The node's org.
    pub org: String,
}

impl std::fmt::Debug for ReceiptSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptSigner")
            .field("key", &self.key.keyid())
            .field("name", &self.name)
            .field("org", &self.org)
            .finish()
    }
}

/// The receipts of a run in the store, decoded: (stage, attempt, receipt, envelope).
/// Undecodable entries are skipped (the store only holds receipts checked on the way in).
pub(crate) fn stored(store: &Store, run: &RunId) -> Result<Vec<rules::Held>, store::Error> {
    Ok(store
        .receipts(run)?
        .into_iter()
        .filter_map(|entry| {
            let envelope = otto_protocol::decode_envelope(&entry.bytes).ok()?;
            let receipt = envelope.payload_as::<Receipt>().ok()?;
            Some((receipt, envelope))
        })
        .collect())
}

/// Everything a receipt says about one ended attempt, gathered by the stage task.
pub(crate) struct Ended<'a> {
    pub(crate) run: RunId,
    pub(crate) plan_digest: String,
    pub(crate) body: &'a Body,
    pub(crate) stage: &'a str,
    pub(crate) attempt: u32,
    pub(crate) state: StageState,
    pub(crate) started_at_ms: u64,
    pub(crate) finished_at_ms: u64,
    pub(crate) outputs: Vec<Artifact>,
}

/// Signs the receipt of an ended attempt (the caller stores it, with the stage's final
/// state). Blocks on the store, which it reads. Returns the envelope, or `None` for a
/// state that is not an ending.
pub(crate) fn sign_ended(
    store: &Store,
    logs: &Logs,
    signer: &ReceiptSigner,
    ended: Ended<'_>,
) -> Result<Option<Envelope>, store::Error> {
    let Some(outcome) = ended.state.to_wire().and_then(rules::outcome_of) else {
        return Ok(None);
    };
    let receipts = stored(store, &ended.run)?;
    let upstream = rules::upstream_digests(ended.body, ended.stage, &receipts);
    let (started_at, started_at_ms) = otto_protocol::time::split(ended.started_at_ms);
    let (finished_at, finished_at_ms) = otto_protocol::time::split(ended.finished_at_ms);
    let receipt = Receipt {
        run: ended.run.to_string(),
        plan_digest: ended.plan_digest,
        stage: ended.stage.to_owned(),
        attempt: ended.attempt,
        outcome,
        outputs: ended.outputs,
        log_digest: log_digest(logs, &ended.run, ended.stage, ended.attempt)?,
        started_at,
        finished_at,
        started_at_ms,
        finished_at_ms,
        upstream,
        node: NodeIdentity {
            name: signer.name.clone(),
            org: signer.org.clone(),
            key: KeyBytes(*signer.key.public_key().as_bytes()),
        },
    };
    sign(&signer.key, &receipt).map(Some)
}

/// Signs `message` with the node key as a DSSE envelope of its kind.
pub(crate) fn sign<T: Payload>(key: &NodeKey, message: &T) -> Result<Envelope, store::Error> {
    let payload = otto_protocol::encode_payload(message);
    otto_trust::dsse::sign(T::KIND.payload_type(), payload, key)
        .map_err(|error| store::Error::Encode(format!("cannot sign: {error}")))
}

/// The sha256 of attempt `attempt`'s log lines, each followed by a line feed.
fn log_digest(
    logs: &Logs,
    run: &RunId,
    stage: &str,
    attempt: u32,
) -> Result<WireDigest, store::Error> {
    const PAGE: usize = 1000;
    let mut hasher = Sha256::new();
    let mut after = 0;
    loop {
        let page = logs.read(run, stage, after, PAGE)?;
        for line in page.lines.iter().filter(|l| l.attempt == attempt) {
            hasher.update(line.text.as_bytes());
            hasher.update(b"\n");
        }
        match page.lines.last() {
            Some(last) if !page.end => after = last.seq,
            _ => break,
        }
    }
    Ok(WireDigest(hasher.finalize().into()))
}
