//! Revocation lists on `/otto/handoff/1`: delivered to a peer that allows the sender, and
//! refused with a signed `unknown_org` reject from a peer that does not.

use futures::future;
use otto_node::mesh::Event;
use otto_protocol::{Accept, HandoffId, Kind, Message, RejectCode};
use otto_trust::OrgKey;
use otto_trust::revocation::{revocation, sign_revocation};

use crate::mesh_support::{
    Transport, next_event, open_answer, sign, spawn, trust_each_other, within,
};

//   a ──revocation_list──▶ b ──accept──▶ a      (a and b trust each other)
//   u ──revocation_list──▶ b ──reject──▶ u      (b does not trust u)
#[tokio::test]
async fn revocation_lists_reach_trusting_peers_only() {
    let mut a = spawn(41, Transport::Tcp).await;
    let mut b = spawn(42, Transport::Tcp).await;
    let mut u = spawn(43, Transport::Tcp).await;
    trust_each_other(&a, &b);
    a.connect(&mut b).await;

    let org = OrgKey::from_seed(&[44; 32]);
    let list = sign_revocation(&org, 3, vec![revocation(&u.key.public_key(), 1, "lost")], 2)
        .expect("signs");
    let b_key = b.key.public_key();
    let (b_peer, a_peer, b_signer, b_events) = (b.peer(), a.peer(), &b.key, &mut b.events);
    let answering = async {
        let (peer, envelope, reply) = next_event(b_events, |event| match event {
            Event::Revocation {
                peer,
                envelope,
                reply,
            } => Some((peer, envelope, reply)),
            _ => None,
        })
        .await;
        assert_eq!(peer, a_peer);
        assert_eq!(envelope.peek(), &list, "the list arrives as sent");
        let ack = Message::Accept(Accept {
            id: HandoffId([0; 16]),
            stage: String::new(),
            attempt: 0,
        });
        reply.send(sign(b_signer, &ack)).await.expect("answers");
    };
    let (answer, ()) = within(future::join(
        a.client.send_revocation(b_peer, list.clone()),
        answering,
    ))
    .await;
    assert!(matches!(
        open_answer(answer.expect("an answer"), &b_key, Kind::Accept),
        Message::Accept(_)
    ));

    u.connect(&mut b).await;
    let answer = within(u.client.send_revocation(b.peer(), list))
        .await
        .expect("b answers");
    match open_answer(answer, &b_key, Kind::Reject) {
        Message::Reject(reject) => assert_eq!(reject.code, RejectCode::UnknownOrg),
        other => panic!("expected a reject, got {other:?}"),
    }
}
