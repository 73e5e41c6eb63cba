//! The plan as a Graphviz `digraph`: one cluster per owner, stages as nodes, dependencies
//! as edges, handoff edges bold and dashed.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::plan::Plan;

/// The plan in Graphviz DOT. Deterministic: owners appear in the order of their first stage.
pub fn dot(plan: &Plan) -> String {
    let stages = &plan.body.stages;
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", quote(&plan.body.pipeline));
    out.push_str("  rankdir=LR;\n");
    out.push_str("  node [shape=box, style=rounded];\n");
    let mut owners: Vec<&str> = Vec::new();
    for stage in stages {
        if !owners.contains(&stage.owner_name()) {
            owners.push(stage.owner_name());
        }
    }
    for owner in &owners {
        let _ = writeln!(out, "  subgraph {} {{", quote(&format!("cluster_{owner}")));
        let _ = writeln!(out, "    label={};", quote(owner));
        for stage in stages.iter().filter(|s| s.owner_name() == *owner) {
            let mut attrs = Vec::new();
            let has_gates = !stage.gates.enter.is_empty() || !stage.gates.exit.is_empty();
            if has_gates {
                attrs.push("peripheries=2".to_owned());
            }
            if stage.skipped {
                attrs.push("style=\"rounded,dotted\"".to_owned());
                attrs.push(format!(
                    "label={}",
                    quote(&format!("{}\n(skipped)", stage.name))
                ));
            }
            if attrs.is_empty() {
                let _ = writeln!(out, "    {};", quote(&stage.id));
            } else {
                let _ = writeln!(out, "    {} [{}];", quote(&stage.id), attrs.join(", "));
            }
        }
        out.push_str("  }\n");
    }
    let owner_of: HashMap<&str, &str> = stages
        .iter()
        .map(|s| (s.id.as_str(), s.owner_name()))
        .collect();
    for stage in stages {
        for need in &stage.needs {
            let other = owner_of.get(need.as_str()).copied();
            let handoff = other.is_some_and(|o| o != stage.owner_name());
            let _ = write!(out, "  {} -> {}", quote(need), quote(&stage.id));
            if handoff {
                out.push_str(" [style=\"bold,dashed\", label=\"handoff\"]");
            }
            out.push_str(";\n");
        }
    }
    out.push_str("}\n");
    out
}

/// A DOT double-quoted string.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
