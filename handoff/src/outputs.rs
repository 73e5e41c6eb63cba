//! Which artifacts a plan lets a stage produce.
//!
//! A receipt's `outputs` are what its signer says the stage archived. A signer that owns
//! a stage can write any name and digest there, so a reader that reports outputs (the
//! verification summary's subjects, say) keeps only those the plan declares for that
//! stage: the `name` of an `archive` step among its steps, nested ones included.

use std::collections::BTreeSet;

use otto_pipeline::plan::{Stage, Step};
use otto_protocol::Artifact;

/// The artifact names `stage`'s `archive` steps declare.
pub fn declared(stage: &Stage) -> BTreeSet<&str> {
    fn walk<'a>(steps: &'a [Step], names: &mut BTreeSet<&'a str>) {
        for step in steps {
            if step.symbol == "archive"
                && let Some(name) = step.kwargs.get("name").and_then(|v| v.as_str())
            {
                names.insert(name);
            }
            walk(&step.block, names);
        }
    }
    let mut names = BTreeSet::new();
    walk(&stage.steps, &mut names);
    names
}

/// Splits `outputs` of a receipt for `stage` into those the plan declares for the stage
/// and the names of those it does not, each in receipt order.
pub fn split<'a>(stage: &Stage, outputs: &'a [Artifact]) -> (Vec<&'a Artifact>, Vec<&'a str>) {
    let names = declared(stage);
    let mut ok = Vec::new();
    let mut undeclared = Vec::new();
    for artifact in outputs {
        if names.contains(artifact.name.as_str()) {
            ok.push(artifact);
        } else {
            undeclared.push(artifact.name.as_str());
        }
    }
    (ok, undeclared)
}
