//! Who may fetch the lines of a stage's log from the node that ran it
//! (`logseq::may_fetch`): the node that gave it the stage, or a node of an org the run's
//! plan binds an owner to; any other trusted node is refused.

use crate::common::*;
use otto_handoff::logseq::may_fetch;

#[test]
fn only_nodes_of_the_run_may_fetch_its_lines() {
    let world = World::new();
    let body = &world.plan.body;
    let (dev, qa) = (&world.dev, &world.qa);
    // Dev's org is the origin's, qa's an owner's: both take part.
    assert!(may_fetch(body, &dev.key.public_key(), &dev.org.public_key(), None).is_ok());
    assert!(may_fetch(body, &qa.key.public_key(), &qa.org.public_key(), None).is_ok());
    // A node of an org the plan binds no owner to, trusted or not: refused, named.
    let stranger = Node::new("x-1", "acme-x", 0x33, 0x34);
    let refused = may_fetch(
        body,
        &stranger.key.public_key(),
        &stranger.org.public_key(),
        Some(&dev.key.public_key()),
    )
    .unwrap_err();
    assert!(refused.contains("takes no part in the run"), "{refused}");
    assert!(
        refused.contains(&stranger.key.public_key().keyid()),
        "{refused}"
    );
    // Unless it is the node that gave the stage.
    assert!(
        may_fetch(
            body,
            &stranger.key.public_key(),
            &stranger.org.public_key(),
            Some(&stranger.key.public_key()),
        )
        .is_ok()
    );
}
