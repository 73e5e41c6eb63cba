//! The mesh on real swarms over loopback: connecting over TCP and QUIC, the handoff
//! request-response protocol, gating of untrusted peers, and hostile requests.

use std::io;
use std::time::Duration;

use crate::mesh_support::{
    Transport, WAIT, digest, next_event, offer, open_answer, sign, spawn, trust_each_other, within,
};
use futures::prelude::*;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{StreamProtocol, Swarm, SwarmBuilder, identify, noise, ping, tcp, yamux};
use otto_node::mesh::{Event, HANDOFF_PROTOCOL, MAX_REQUEST_BYTES, MeshError};
use otto_protocol::{Accept, Kind, Message, RejectCode};

//   a ──dial──▶ b        (TCP, then QUIC)
//   a ──offer──▶ b ──accept──▶ a
async fn connect_and_hand_off(transport: Transport) {
    let mut a = spawn(1, transport).await;
    let mut b = spawn(2, transport).await;
    trust_each_other(&a, &b);
    a.connect(&mut b).await;

    let peers = within(a.client.peers()).await.expect("peers");
    let seen = peers
        .iter()
        .find(|info| info.peer == b.peer())
        .expect("a lists b");
    let proto = match transport {
        Transport::Tcp => "/tcp/",
        Transport::Quic => "/quic-v1",
    };
    assert!(
        seen.addresses
            .iter()
            .any(|addr| addr.to_string().contains(proto)),
        "{seen:?}"
    );
    assert!(seen.allowed);

    let offer = offer();
    let sent = sign(&a.key, &Message::Offer(offer.clone()));
    let b_key = b.key.public_key();
    let b_peer = b.peer();
    let (a_peer, b_signer, b_events) = (a.peer(), &b.key, &mut b.events);
    let answering = async {
        let (peer, envelope, reply) = next_event(b_events, |event| match event {
            Event::Offer {
                peer,
                envelope,
                reply,
            } => Some((peer, envelope, reply)),
            _ => None,
        })
        .await;
        assert_eq!(peer, a_peer);
        assert_eq!(envelope.peek(), &sent, "the offer arrives as sent");
        let accept = Message::Accept(Accept {
            id: offer.id,
            stage: offer.stage.clone(),
            attempt: offer.attempt,
        });
        reply.send(sign(b_signer, &accept)).await.expect("answers");
    };
    let (answer, ()) = within(future::join(
        a.client.send_offer(b_peer, sent.clone()),
        answering,
    ))
    .await;
    let answer = answer.expect("an answer");
    match open_answer(answer, &b_key, Kind::Accept) {
        Message::Accept(accept) => assert_eq!(accept.id, offer.id),
        other => panic!("expected an accept, got {other:?}"),
    }
}

//   a ──tcp──▶ b
#[tokio::test]
async fn two_nodes_connect_and_hand_off_over_tcp() {
    connect_and_hand_off(Transport::Tcp).await;
}

//   a ──quic──▶ b
#[tokio::test]
async fn two_nodes_connect_and_hand_off_over_quic() {
    connect_and_hand_off(Transport::Quic).await;
}

//   plain libp2p peer (identify + ping only) ──▶ m ◀── u (Otto node, untrusted by m)
//
// Any libp2p implementation may identify and ping an Otto node; an Otto node that m does
// not trust gets a signed `unknown_org` reject to its offer and no artifact.
#[tokio::test]
async fn untrusted_peers_may_identify_and_ping_but_every_otto_protocol_refuses_them() {
    let mut m = spawn(10, Transport::Tcp).await;
    let m_key = m.key.public_key();

    let mut plain = plain_swarm();
    plain.dial(m.addr.clone()).expect("dials");
    let (mut identified, mut pinged) = (None, false);
    within(async {
        while identified.is_none() || !pinged {
            match plain.select_next_some().await {
                SwarmEvent::Behaviour(PlainEvent::Identify(identify::Event::Received {
                    peer_id,
                    info,
                    ..
                })) if peer_id == m.peer() => identified = Some(info),
                SwarmEvent::Behaviour(PlainEvent::Ping(ping::Event {
                    peer,
                    result: Ok(_),
                    ..
                })) if peer == m.peer() => pinged = true,
                _ => {}
            }
        }
    })
    .await;
    let info = identified.expect("identified");
    assert_eq!(info.protocol_version, "/otto/1");
    assert!(info.agent_version.starts_with("otto-node/"));
    let protocols: Vec<String> = info.protocols.iter().map(ToString::to_string).collect();
    for expected in ["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", HANDOFF_PROTOCOL] {
        assert!(protocols.iter().any(|p| p == expected), "{protocols:?}");
    }

    let mut u = spawn(11, Transport::Tcp).await;
    u.policy.allow(m.peer(), m.key.public_key());
    u.connect(&mut m).await;
    let offer = offer();
    let answer = within(
        u.client
            .send_offer(m.peer(), sign(&u.key, &Message::Offer(offer.clone()))),
    )
    .await
    .expect("m answers");
    match open_answer(answer, &m_key, Kind::Reject) {
        Message::Reject(reject) => {
            assert_eq!(reject.code, RejectCode::UnknownOrg);
            assert_eq!(reject.id, offer.id);
        }
        other => panic!("expected a reject, got {other:?}"),
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let artifact = crate::mesh_support::bytes(1000, 7);
    m.source.insert(digest(&artifact), artifact.clone());
    let fetched =
        within(
            u.client
                .fetch_artifact(m.peer(), digest(&artifact), &dir.path().join("a"), 0),
        )
        .await;
    assert!(
        matches!(fetched, Err(MeshError::ArtifactUnavailable { .. })),
        "{fetched:?}"
    );

    // u still pings m over the same connection, and m never heard of the offer.
    within(async {
        loop {
            let peers = u.client.peers().await.expect("peers");
            if peers
                .iter()
                .any(|info| info.peer == m.peer() && info.rtt.is_some())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    while let Ok(event) = m.events.try_recv() {
        assert!(
            matches!(event, Event::Connected { .. } | Event::Disconnected { .. }),
            "m saw {event:?}"
        );
    }
}

//   raw request-response peer ──garbage / 17 MiB──▶ m
//
// Hostile bytes on /otto/handoff/1 are refused without a panic: garbage gets a signed
// `malformed` reject, an oversized request a dropped stream, and m keeps answering.
#[tokio::test]
async fn garbage_and_oversized_requests_are_refused_and_the_node_carries_on() {
    let m = spawn(20, Transport::Tcp).await;
    let m_key = m.key.public_key();
    let mut raw = raw_swarm();
    raw.add_peer_address(m.peer(), m.addr.clone());

    let garbage = b"\xa1\x61v\x01 this is not an envelope".to_vec();
    let answer = raw_request(&mut raw, m.peer(), garbage.clone())
        .await
        .expect("garbage is answered");
    let envelope = otto_protocol::decode_envelope(&answer).expect("an envelope");
    match open_answer(otto_trust::Unverified::new(envelope), &m_key, Kind::Reject) {
        Message::Reject(reject) => assert_eq!(reject.code, RejectCode::Malformed),
        other => panic!("expected a reject, got {other:?}"),
    }

    let oversized = vec![0x5a; MAX_REQUEST_BYTES + 1];
    let refused = raw_request(&mut raw, m.peer(), oversized).await;
    assert!(
        refused.as_ref().map_or(true, Vec::is_empty),
        "an oversized request is dropped without an answer: {refused:?}"
    );

    // The node carries on: the same peer (reconnecting if it must) is answered again.
    let again = raw_request(&mut raw, m.peer(), garbage).await;
    assert!(again.is_ok(), "{again:?}");
    within(m.client.peers()).await.expect("m's event loop runs");
}

/// The behaviour of a plain libp2p peer that knows nothing of Otto.
#[derive(NetworkBehaviour)]
struct Plain {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

/// The behaviour of a raw peer that writes arbitrary bytes on `/otto/handoff/1`.
#[derive(NetworkBehaviour)]
struct Raw {
    handoff: request_response::Behaviour<RawCodec>,
}

/// Sends and receives bytes as they are.
#[derive(Debug, Clone, Default)]
struct RawCodec;

fn plain_swarm() -> Swarm<Plain> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|key| Plain {
            identify: identify::Behaviour::new(identify::Config::new(
                "/other/1".to_owned(),
                key.public(),
            )),
            ping: ping::Behaviour::new(
                ping::Config::new().with_interval(Duration::from_millis(200)),
            ),
        })
        .expect("behaviour")
        .build()
}

fn raw_swarm() -> Swarm<Raw> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|_| Raw {
            handoff: request_response::Behaviour::with_codec(
                RawCodec,
                [(
                    StreamProtocol::new(HANDOFF_PROTOCOL),
                    ProtocolSupport::Outbound,
                )],
                request_response::Config::default().with_request_timeout(WAIT / 2),
            ),
        })
        .expect("behaviour")
        .build()
}

/// Sends `bytes` as a request and drives the swarm until its answer or failure.
async fn raw_request(
    swarm: &mut Swarm<Raw>,
    peer: libp2p::PeerId,
    bytes: Vec<u8>,
) -> Result<Vec<u8>, String> {
    let id = swarm.behaviour_mut().handoff.send_request(&peer, bytes);
    within(async {
        loop {
            if let SwarmEvent::Behaviour(RawEvent::Handoff(event)) = swarm.select_next_some().await
            {
                match event {
                    request_response::Event::Message {
                        message:
                            request_response::Message::Response {
                                request_id,
                                response,
                            },
                        ..
                    } if request_id == id => return Ok(response),
                    request_response::Event::OutboundFailure {
                        request_id, error, ..
                    } if request_id == id => return Err(error.to_string()),
                    _ => {}
                }
            }
        }
    })
    .await
}

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut bytes = Vec::new();
        io.take(1 << 20).read_to_end(&mut bytes).await?;
        Ok(bytes)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut bytes = Vec::new();
        io.take(1 << 20).read_to_end(&mut bytes).await?;
        Ok(bytes)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        bytes: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&bytes).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        bytes: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&bytes).await?;
        io.close().await
    }
}
