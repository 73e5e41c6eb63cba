//! Whose word about a stage counts on a run's gossip (`rules::may_tell`): the status
//! events, relayed ends and receipts other nodes publish are taken only from the node a
//! stage was given to, else from a node of the org its owner is bound to (the origin node
//! for a stage without an owner), and an end also from the node that moves the stage on.
//! Everything else is dropped, never shown as the stage's state.

use crate::common::*;
use otto_handoff::Owners;
use otto_handoff::rules::{self, Held, Word};
use otto_pipeline::plan::ORIGIN;
use otto_protocol::Outcome;
use otto_trust::{PublicKey, TrustStore, VerifiedCert};

/// The world's plan, started by dev-1 (the binding names it the origin), as dev-1 sees
/// it: every org pinned; Build and Test signed by dev-1, Deploy by ops-1.
struct Gossip {
    world: World,
    trust: TrustStore,
    receipts: Vec<Held>,
}

impl Gossip {
    fn new() -> Self {
        let mut world = World::new();
        if let Some(origin) = world.plan.body.owners.get_mut(ORIGIN) {
            origin.node = Some(world.dev.key.public_key().keyid());
        }
        let mut trust = TrustStore::new();
        trust
            .pin_org("dev", world.dev.org.public_key(), T0)
            .unwrap();
        trust
            .pin_org("ops", world.ops.org.public_key(), T0)
            .unwrap();
        trust.pin_org("qa", world.qa.org.public_key(), T0).unwrap();
        let held = |by: &Node, stage: &str| {
            let receipt = world.receipt(by, stage, Outcome::Success, vec![]);
            let envelope = sign_receipt(by, &receipt);
            (receipt, envelope)
        };
        let receipts = vec![
            held(&world.dev, "Build"),
            held(&world.dev, "Test"),
            held(&world.ops, "Deploy"),
        ];
        Self {
            world,
            trust,
            receipts,
        }
    }

    fn cert(&self, node: &Node) -> VerifiedCert {
        self.trust.verify_cert(&node.cert, NOW).unwrap()
    }

    /// Whether `node` may tell dev-1 `word` about `stage`, which dev-1 gave to `given`.
    fn tell(
        &self,
        node: &Node,
        stage: &str,
        word: Word,
        given: Option<&PublicKey>,
    ) -> Result<(), String> {
        let names = vec!["dev".to_owned()];
        let org = self.world.dev.org.public_key();
        let owners = Owners::new(&self.trust, Some(&org), &names);
        let body = &self.world.plan.body;
        let stage = body.stages.iter().find(|s| s.id == stage).unwrap();
        rules::may_tell(
            body,
            stage,
            &owners,
            &self.cert(node),
            word,
            &self.receipts,
            given,
        )
    }
}

fn ops2() -> Node {
    Node::new("ops-2", "acme-ops", 0x0e, 0x2e)
}

#[test]
fn a_stage_is_reported_by_a_node_of_its_owners_org_only() {
    let g = Gossip::new();
    for word in [Word::Progress, Word::End, Word::Receipt] {
        g.tell(&g.world.ops, "Deploy", word, None).unwrap();
    }
    // Qa is trusted here, and says Deploy (owned by ops) is running, or has ended.
    let err = g
        .tell(&g.world.qa, "Deploy", Word::Progress, None)
        .unwrap_err();
    assert_eq!(
        err,
        "about stage \"Deploy\": node \"qa-1\" of org \"qa\", but the stage's owner \"ops\" \
         is bound to org \"ops\""
    );
    for word in [Word::End, Word::Receipt] {
        assert!(g.tell(&g.world.qa, "Deploy", word, None).is_err());
    }
}

#[test]
fn a_stage_without_owner_is_reported_by_the_node_that_started_the_run_only() {
    let g = Gossip::new();
    g.tell(&g.world.dev, "Lint", Word::Progress, None).unwrap();
    // build-1 is of dev's org, but did not start the run.
    let err = g
        .tell(&g.world.builder, "Lint", Word::Progress, None)
        .unwrap_err();
    assert!(err.contains("only the node that started the run"), "{err}");
    assert!(
        g.tell(&g.world.builder, "Lint", Word::Receipt, None)
            .is_err()
    );
}

#[test]
fn the_node_that_moves_a_stage_on_may_tell_its_end_and_nothing_else() {
    // Smoke (qa) follows Deploy, whose receipt ops-1 signed: ops-1 moves Smoke on, fails
    // it when qa refuses the offer and relays its end; another ops node does not.
    let g = Gossip::new();
    g.tell(&g.world.ops, "Smoke", Word::End, None).unwrap();
    assert!(g.tell(&g.world.ops, "Smoke", Word::Progress, None).is_err());
    assert!(g.tell(&g.world.ops, "Smoke", Word::Receipt, None).is_err());
    let err = g.tell(&ops2(), "Smoke", Word::End, None).unwrap_err();
    assert!(err.contains("node \"ops-2\""), "{err}");
}

#[test]
fn a_stage_given_to_a_node_is_that_nodes_to_report() {
    // Dev gave Deploy to ops-1: ops-2, of the owner's org, is not believed about it, not
    // even its receipt (stray receipts through gossip are refused and not stored).
    let g = Gossip::new();
    let ops1 = g.world.ops.key.public_key();
    for word in [Word::Progress, Word::End, Word::Receipt] {
        g.tell(&g.world.ops, "Deploy", word, Some(&ops1)).unwrap();
        let err = g.tell(&ops2(), "Deploy", word, Some(&ops1)).unwrap_err();
        assert_eq!(
            err,
            format!(
                "node \"ops-2\" of org \"ops\" is not the node this node gave stage \
                 \"Deploy\" to ({})",
                ops1.keyid()
            )
        );
    }
}
