//! Gossip of signed status events on real swarms over loopback.

use crate::mesh_support::{
    TestNode, Transport, next_event, sign, spawn, status, trust_each_other, within,
};
use otto_node::mesh::{Event, MeshError, PeerId};
use otto_protocol::{Message, Status};
use otto_trust::NodeKey;

const RUN: &str = "run-7";

/// Starts the line a ── b ── c: neighbours trust each other, a and c are not connected, and
/// c knows a's key to verify its status events. All three subscribe to the run.
async fn line() -> (TestNode, TestNode, TestNode) {
    let mut a = spawn(40, Transport::Tcp).await;
    let mut b = spawn(41, Transport::Tcp).await;
    let mut c = spawn(42, Transport::Tcp).await;
    trust_each_other(&a, &b);
    trust_each_other(&b, &c);
    c.policy.know(a.peer(), a.key.public_key());
    a.connect(&mut b).await;
    c.connect(&mut b).await;
    for node in [&a, &b, &c] {
        within(node.client.subscribe(RUN))
            .await
            .expect("subscribes");
    }
    // Wait until each hop knows the next one listens to the run.
    wait_subscribed(&mut a, b.peer()).await;
    wait_subscribed(&mut b, c.peer()).await;
    (a, b, c)
}

async fn wait_subscribed(node: &mut TestNode, peer: PeerId) {
    next_event(&mut node.events, |event| match event {
        Event::Subscribed { peer: p, run } if p == peer && run == RUN => Some(()),
        _ => None,
    })
    .await;
}

/// Waits for the next status event and decodes it.
async fn next_status(node: &mut TestNode) -> (PeerId, Status) {
    next_event(&mut node.events, |event| match event {
        Event::Status {
            run,
            author,
            envelope,
        } => {
            assert_eq!(run, RUN);
            match envelope.get().message().expect("decodes") {
                Message::Status(status) => Some((author, status)),
                other => panic!("not a status: {other:?}"),
            }
        }
        _ => None,
    })
    .await
}

//   a ── b ── c      a publishes; c, subscribed, hears it through b
#[tokio::test]
async fn a_status_reaches_a_subscribed_node_two_hops_away() {
    let (a, mut b, mut c) = line().await;
    let published = sign(&a.key, &status(RUN, 0));
    within(a.client.publish_status(RUN, published.clone()))
        .await
        .expect("published");

    let (author, got) = next_status(&mut c).await;
    assert_eq!(author, a.peer());
    assert_eq!(Message::Status(got), status(RUN, 0));
    let (author, _) = next_status(&mut b).await;
    assert_eq!(author, a.peer());

    let peers = within(c.client.peers()).await.expect("peers");
    assert!(
        peers.iter().all(|info| info.peer != a.peer()),
        "c has no connection with a: it heard a through b"
    );
}

//   a ── b ── c      a publishes a forged status, then a genuine one
#[tokio::test]
async fn a_status_with_an_invalid_signature_is_dropped() {
    let (a, mut b, mut c) = line().await;
    let mallory = NodeKey::from_seed(&[99; 32]);
    let forged = sign(&mallory, &status(RUN, 0));
    within(a.client.publish_status(RUN, forged))
        .await
        .expect("a publishes whatever it likes");
    let genuine = sign(&a.key, &status(RUN, 1));
    within(a.client.publish_status(RUN, genuine))
        .await
        .expect("published");

    // The forged event was published first; neither b nor c ever delivers it.
    let (_, first_at_b) = next_status(&mut b).await;
    assert_eq!(first_at_b.seq, 1);
    let (_, first_at_c) = next_status(&mut c).await;
    assert_eq!(first_at_c.seq, 1);
}

//   a ── b      only b follows the run; a publishes the same event twice
#[tokio::test]
async fn the_same_event_published_again_reaches_a_subscriber_again_from_a_node_off_the_topic() {
    let mut a = spawn(44, Transport::Tcp).await;
    let mut b = spawn(45, Transport::Tcp).await;
    trust_each_other(&a, &b);
    a.connect(&mut b).await;
    within(b.client.subscribe(RUN)).await.expect("subscribes");
    wait_subscribed(&mut a, b.peer()).await;
    // A node tells a run's ends again, byte for byte, for a node that (re)subscribed: not
    // a copy of the first publication, and heard although a left the run's topic.
    let told = sign(&a.key, &status(RUN, 3));
    for _ in 0..2 {
        within(a.client.publish_status(RUN, told.clone()))
            .await
            .expect("published");
        let (author, got) = next_status(&mut b).await;
        assert_eq!((author, Message::Status(got)), (a.peer(), status(RUN, 3)));
    }
}

//   a      nobody subscribed to the run: publishing says so
#[tokio::test]
async fn publishing_with_no_subscriber_is_an_error() {
    let a = spawn(43, Transport::Tcp).await;
    let result = within(a.client.publish_status(RUN, sign(&a.key, &status(RUN, 0)))).await;
    assert!(
        matches!(result, Err(MeshError::NoSubscribers)),
        "{result:?}"
    );
    let wrong_run = within(
        a.client
            .publish_status("other", sign(&a.key, &status(RUN, 0))),
    )
    .await;
    assert!(
        matches!(wrong_run, Err(MeshError::Invalid(_))),
        "{wrong_run:?}"
    );
}
