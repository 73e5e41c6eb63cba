//! Gossip of signed status events, one gossipsub topic per run.
//!
//! A run's status events travel on the topic `otto/run/<run-id>/status` ([`status_topic`]).
//! Each gossip message is the binary form of one envelope whose payload is a `status` of
//! that run. Messages are signed by gossipsub with the author's node key (strict
//! validation), and named by the sha256 of their bytes, so the same envelope published
//! twice is one message.
//!
//! Nothing is forwarded before the node has judged it ([`check`] and the policy's
//! [`verify_status`](super::PeerPolicy::verify_status)): a message that does not decode or
//! whose signature does not verify is rejected, which gossipsub's peer score counts
//! against the peer that sent it; a message from a peer the policy does not allow is
//! ignored. Peers the policy does not allow get an application score far below the
//! graylist threshold, so gossipsub neither sends to them nor listens to them.
#![warn(clippy::unwrap_used)]

use std::time::Duration;

use libp2p::gossipsub::{
    self, IdentTopic, MessageAuthenticity, MessageId, PeerScoreParams, PeerScoreThresholds,
    TopicHash, TopicScoreParams, ValidationMode,
};
use libp2p::identity::Keypair;
use otto_protocol::limits::MAX_STATUS_BYTES;
use otto_protocol::{DecodeError, Envelope, Receipt, Status};
use sha2::{Digest as _, Sha256};

use super::{Config, MeshError};

/// The largest gossip message: an envelope of the largest status event plus 64 KiB for its
/// signatures and gossipsub's own framing.
pub const MAX_GOSSIP_BYTES: usize = MAX_STATUS_BYTES + 64 * 1024;

/// The application score given to a connected peer the policy does not allow: far below
/// gossipsub's graylist threshold (-80 by default, after the weight of 10).
pub(crate) const UNTRUSTED_SCORE: f64 = -1_000.0;

/// The topic prefix and suffix around a run id.
const TOPIC_PREFIX: &str = "otto/run/";
const TOPIC_SUFFIX: &str = "/status";

/// The gossipsub topic that carries the status events of `run`: `otto/run/<run>/status`.
pub fn status_topic(run: &str) -> IdentTopic {
    IdentTopic::new(format!("{TOPIC_PREFIX}{run}{TOPIC_SUFFIX}"))
}

/// The run id of a status topic, or `None` for any other topic.
pub fn run_of_topic(topic: &TopicHash) -> Option<&str> {
    topic
        .as_str()
        .strip_prefix(TOPIC_PREFIX)?
        .strip_suffix(TOPIC_SUFFIX)
        .filter(|run| !run.is_empty())
}

/// Builds the gossipsub behaviour: signed messages, strict validation, validation by the
/// node before forwarding, message ids of each publication ([`message_id`]) and peer
/// scoring.
pub(crate) fn behaviour(config: &Config, key: &Keypair) -> Result<gossipsub::Behaviour, MeshError> {
    let setup = |err: &dyn std::fmt::Display| MeshError::Setup(format!("gossipsub: {err}"));
    let gossip_config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(config.gossip_heartbeat)
        .max_transmit_size(MAX_GOSSIP_BYTES)
        .validation_mode(ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(message_id)
        .build()
        .map_err(|err| setup(&err))?;
    let mut gossip =
        gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), gossip_config)
            .map_err(|err| setup(&err))?;
    let params = PeerScoreParams {
        // Otto meshes are small and often share a host; colocation says nothing here.
        ip_colocation_factor_weight: 0.0,
        ..PeerScoreParams::default()
    };
    gossip
        .with_peer_score(params, PeerScoreThresholds::default())
        .map_err(|err| setup(&err))?;
    Ok(gossip)
}

/// The id of a gossip message: sha256 of its author, the author's number of the message and
/// its bytes (all covered by the author's signature). Copies of one publication forwarded
/// by several peers share it and are delivered once; the same bytes published again are a
/// new message. A node tells a run's ends again for a node that missed them (a receipt it
/// published before is published again, byte for byte): with ids of the bytes alone, its
/// own gossipsub would drop that as a copy of the first for a minute, and the node that
/// restarted would never hold the receipt.
fn message_id(message: &gossipsub::Message) -> MessageId {
    let mut hasher = Sha256::new();
    let source = message.source.map(|p| p.to_bytes()).unwrap_or_default();
    hasher.update(
        u64::try_from(source.len())
            .unwrap_or(u64::MAX)
            .to_be_bytes(),
    );
    hasher.update(&source);
    hasher.update(message.sequence_number.unwrap_or(0).to_be_bytes());
    hasher.update(&message.data);
    MessageId::from(hasher.finalize().to_vec())
}

/// The score parameters of a run's topic: status topics are quiet, so nothing is expected
/// of a peer's delivery rate; invalid messages cost their sender the square of their
/// count times 10, so three in a row put it below the graylist threshold of -80.
pub(crate) fn topic_params() -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: 1.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.5,
        first_message_deliveries_weight: 0.1,
        time_in_mesh_quantum: Duration::from_secs(1),
        ..TopicScoreParams::default()
    }
}

/// Decodes a gossip message as a status or receipt envelope of the run its topic names:
/// the run id and the envelope, whose signatures are still unchecked.
pub(crate) fn check(topic: &TopicHash, data: &[u8]) -> Result<(String, Envelope), DecodeError> {
    let run = run_of_topic(topic)
        .ok_or_else(|| DecodeError::Malformed(format!("`{topic}` is not a status topic")))?;
    let envelope = otto_protocol::decode_envelope(data)?;
    let of = match envelope.payload_as::<Status>() {
        Ok(status) => status.run,
        Err(_) => envelope.payload_as::<Receipt>()?.run,
    };
    if of != run {
        return Err(DecodeError::Malformed(format!(
            "a message of run `{of}` on the topic of run `{run}`"
        )));
    }
    Ok((run.to_owned(), envelope))
}

#[cfg(test)]
mod tests {
    use otto_protocol::{Message, StageState};

    use super::*;

    fn status(run: &str) -> Vec<u8> {
        otto_protocol::encode_envelope(&Envelope::unsigned(&Message::Status(Status {
            run: run.to_owned(),
            stage: "build".to_owned(),
            attempt: 1,
            seq: 0,
            state: StageState::Running,
            at: 1_700_000_000,
            detail: None,
            log: Vec::new(),
            log_seq: None,
            at_ms: None,
        })))
    }

    #[test]
    fn topics_name_their_run() {
        let topic = status_topic("r-42").hash();
        assert_eq!(topic.as_str(), "otto/run/r-42/status");
        assert_eq!(run_of_topic(&topic), Some("r-42"));
        assert_eq!(run_of_topic(&TopicHash::from_raw("otto/run//status")), None);
        assert_eq!(run_of_topic(&TopicHash::from_raw("other")), None);
    }

    #[test]
    fn a_status_must_belong_to_its_topic() {
        let topic = status_topic("r-1").hash();
        assert!(check(&topic, &status("r-1")).is_ok());
        assert!(check(&topic, &status("r-2")).is_err());
        assert!(check(&topic, b"not cbor").is_err());
        assert!(check(&TopicHash::from_raw("x"), &status("r-1")).is_err());
    }
}
