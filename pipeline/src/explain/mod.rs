//! `otto explain`: a plan for people ([`human`]), for programs ([`json`]) and as a picture
//! ([`dot`]). Every renderer is a pure function of the plan, so the same plan always gives
//! byte-identical output.

mod dot;
mod human;

pub use dot::dot;
pub use human::human;

use crate::plan::{Plan, to_sorted_value};

/// The `--json` document: `{"digest", "plan", "provenance"}`, pretty-printed with two-space
/// indentation and sorted keys, ending in a newline. The schema is in `docs/plan-format.md`.
pub fn json(plan: &Plan) -> String {
    let value = to_sorted_value(&plan.to_document());
    // Printing a `Value` cannot fail: every map key is a string.
    let mut out = serde_json::to_string_pretty(&value).unwrap_or_default();
    out.push('\n');
    out
}
