//! The plan's stages as a graph: lookup by id and the stages each one transitively needs.
#![warn(clippy::unwrap_used)]

use std::collections::HashMap;

use otto_pipeline::plan::{Body, Stage};

/// Index over the stages of a plan body. A plan from a peer may be hostile: ids that repeat
/// resolve to their first stage, `needs` naming no stage are ignored, and cycles end.
pub(crate) struct Dag<'a> {
    body: &'a Body,
    index: HashMap<&'a str, usize>,
}

impl<'a> Dag<'a> {
    /// Indexes the stages of `body`.
    pub(crate) fn new(body: &'a Body) -> Self {
        let mut index = HashMap::with_capacity(body.stages.len());
        for (i, stage) in body.stages.iter().enumerate() {
            index.entry(stage.id.as_str()).or_insert(i);
        }
        Self { body, index }
    }

    /// The position of the stage with this id.
    pub(crate) fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// The stage at this position.
    pub(crate) fn stage_at(&self, position: usize) -> Option<&'a Stage> {
        self.body.stages.get(position)
    }

    /// Positions of every stage that the stage at `position` needs, directly or through
    /// others, in plan order; the stage itself is never among them.
    pub(crate) fn ancestors(&self, position: usize) -> Vec<usize> {
        let mut seen = vec![false; self.body.stages.len()];
        let mut todo = vec![position];
        while let Some(current) = todo.pop() {
            let Some(stage) = self.body.stages.get(current) else {
                continue;
            };
            for need in &stage.needs {
                if let Some(dep) = self.position(need)
                    && let Some(slot) = seen.get_mut(dep)
                    && !*slot
                {
                    *slot = true;
                    todo.push(dep);
                }
            }
        }
        if let Some(slot) = seen.get_mut(position) {
            *slot = false;
        }
        seen.iter()
            .enumerate()
            .filter_map(|(i, &is)| is.then_some(i))
            .collect()
    }
}
