//! The stage graph as SVG, laid out on the server.
//!
//! The layout is a layered drawing of the plan's DAG:
//!
//! - columns are DAG depths: a stage that needs nothing is in column 0, any other stage
//!   one column right of the deepest stage it needs, so every edge goes left to right and
//!   the stages of a parallel group (same needs) share a column;
//! - rows are grouped in horizontal lanes, one per owner (org or node), in the order the
//!   owners first appear in the plan; inside a lane, the stages of one column stack in
//!   plan order, and the lane is as tall as its fullest column;
//! - edges are cubic paths from the right side of a stage to the left side of the stage
//!   that needs it, with an arrowhead; an edge between two owners is a handoff and
//!   carries a ✓ or ✗ mark.
//!
//! The same inputs always give the same drawing. The SVG has a `viewBox`, so it scales
//! down, and the page lets it scroll sideways on narrow screens.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::html::{esc, short};

/// Width of the lane labels on the left.
const LABEL_W: u32 = 120;
/// A stage box's width.
const BOX_W: u32 = 176;
/// A stage box's height.
const BOX_H: u32 = 46;
/// Space between columns (where the edges run).
const COL_GAP: u32 = 64;
/// Space between stacked boxes.
const ROW_GAP: u32 = 14;
/// Space inside a lane above and below its boxes.
const LANE_PAD: u32 = 14;
/// Space around the drawing.
const PAD: u32 = 8;
/// The most characters of a stage name shown in its box (the full name is in its title).
const NAME_CHARS: usize = 20;

/// One stage to draw.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// The stage id (as the run and the plan name it).
    pub(crate) id: String,
    /// The lane it belongs to: its owner's name.
    pub(crate) owner: String,
    /// The state icon.
    pub(crate) icon: &'static str,
    /// The state word.
    pub(crate) state: &'static str,
    /// The second line of its box, e.g. `attempt 2 · 12.3s`.
    pub(crate) detail: String,
    /// Where its box links to.
    pub(crate) href: Option<String>,
    /// The stages it needs.
    pub(crate) needs: Vec<String>,
}

/// What is known about a handoff edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Whether the receiving side's receipt verifies (the handoff was accepted and is
    /// proven).
    pub(crate) verified: bool,
    /// Why, for people (the mark's title).
    pub(crate) why: String,
}

/// Where everything goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// The box of each node, in the order given: x, y (top left).
    pub(crate) boxes: Vec<(u32, u32)>,
    /// The lanes, top to bottom: owner, y, height.
    pub(crate) lanes: Vec<(String, u32, u32)>,
    /// The edges: index of the needed stage, index of the stage that needs it.
    pub(crate) edges: Vec<(usize, usize)>,
    /// The drawing's width.
    pub(crate) width: u32,
    /// The drawing's height.
    pub(crate) height: u32,
}

/// Lays out `nodes`. Needs that name no node are left out.
pub(crate) fn layout(nodes: &[Node]) -> Layout {
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut edges = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        for need in &n.needs {
            if let Some(&j) = index.get(need.as_str())
                && j != i
            {
                edges.push((j, i));
            }
        }
    }
    // Longest-path depth; at most n rounds, so a cycle (which a plan never has) cannot
    // loop forever.
    let mut depth = vec![0usize; nodes.len()];
    for _ in 0..nodes.len() {
        let mut changed = false;
        for &(from, to) in &edges {
            if depth[to] < depth[from] + 1 && depth[from] < nodes.len() {
                depth[to] = depth[from] + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    // A cycle would let an edge point left; keep only the edges that go right.
    edges.retain(|&(from, to)| depth[from] < depth[to]);

    let mut owners: Vec<&str> = Vec::new();
    for n in nodes {
        if !owners.contains(&n.owner.as_str()) {
            owners.push(&n.owner);
        }
    }
    let columns = depth.iter().copied().max().map_or(0, |d| d + 1);
    let mut boxes = vec![(0, 0); nodes.len()];
    let mut lanes = Vec::new();
    let mut y = PAD;
    for owner in owners {
        let mut filled = vec![0u32; columns];
        for (i, n) in nodes.iter().enumerate() {
            if n.owner == owner {
                let row = filled[depth[i]];
                filled[depth[i]] += 1;
                boxes[i] = (
                    PAD + LABEL_W + to_u32(depth[i]) * (BOX_W + COL_GAP),
                    y + LANE_PAD + row * (BOX_H + ROW_GAP),
                );
            }
        }
        let rows = filled.iter().copied().max().unwrap_or(1).max(1);
        let height = 2 * LANE_PAD + rows * BOX_H + (rows - 1) * ROW_GAP;
        lanes.push((owner.to_owned(), y, height));
        y += height;
    }
    let width = PAD * 2 + LABEL_W + to_u32(columns.max(1)) * (BOX_W + COL_GAP) - COL_GAP;
    Layout {
        boxes,
        lanes,
        edges,
        width,
        height: y + PAD,
    }
}

/// The graph as an `<svg>` element. `verdicts` says what is known about each handoff
/// edge (by needed stage and needing stage); a handoff without one is not verified yet.
pub(crate) fn svg(
    nodes: &[Node],
    verdicts: &HashMap<(String, String), Verdict>,
    label: &str,
) -> String {
    let l = layout(nodes);
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg data-testid=\"stage-graph\" class=\"graph\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" \
         role=\"group\" aria-label=\"{a}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\">\
         <path class=\"arrowhead\" d=\"M0,0 L10,5 L0,10 z\"/></marker></defs>",
        w = l.width,
        h = l.height,
        a = esc(label)
    );
    for (owner, y, height) in &l.lanes {
        let _ = write!(
            out,
            "<g data-testid=\"lane\" data-owner=\"{o}\" class=\"lane\">\
             <rect class=\"lane-bg\" x=\"{PAD}\" y=\"{y}\" width=\"{w}\" height=\"{height}\" rx=\"8\"/>\
             <text class=\"lane-label\" x=\"{tx}\" y=\"{ty}\">{s}</text><title>lane {o}</title></g>",
            o = esc(owner),
            w = l.width - 2 * PAD,
            tx = PAD + 12,
            ty = y + LANE_PAD + 16,
            s = esc(&short(owner, 14)),
        );
    }
    for &(from, to) in &l.edges {
        let (a, b) = (&nodes[from], &nodes[to]);
        let (x1, y1) = (l.boxes[from].0 + BOX_W, l.boxes[from].1 + BOX_H / 2);
        let (x2, y2) = (l.boxes[to].0, l.boxes[to].1 + BOX_H / 2);
        let mx = (x1 + x2) / 2;
        let path = format!("M{x1},{y1} C{mx},{y1} {mx},{y2} {}, {y2}", x2 - 2);
        if a.owner == b.owner {
            let _ = write!(
                out,
                "<path class=\"edge\" d=\"{path}\" marker-end=\"url(#arrow)\"/>"
            );
            continue;
        }
        let verdict = verdicts.get(&(a.id.clone(), b.id.clone()));
        let verified = verdict.is_some_and(|v| v.verified);
        let why = verdict.map_or(
            "not verified yet: no receipt from the receiving node",
            |v| v.why.as_str(),
        );
        let (mark, class) = if verified {
            ("✓", "ok")
        } else {
            ("✗", "bad")
        };
        let my = (y1 + y2) / 2;
        let _ = write!(
            out,
            "<g data-testid=\"handoff\" data-from=\"{f}\" data-to=\"{t}\" data-verified=\"{verified}\" class=\"handoff {class}\">\
             <title>handoff {f} → {t}: {why}</title>\
             <path class=\"edge\" d=\"{path}\" marker-end=\"url(#arrow)\"/>\
             <circle class=\"mark\" cx=\"{mx}\" cy=\"{my}\" r=\"9\"/>\
             <text class=\"mark-text\" x=\"{mx}\" y=\"{ty}\" text-anchor=\"middle\">{mark}</text></g>",
            f = esc(&a.id),
            t = esc(&b.id),
            why = esc(why),
            ty = my + 4,
        );
    }
    for (i, n) in nodes.iter().enumerate() {
        let (x, y) = l.boxes[i];
        let _ = write!(
            out,
            "<g data-testid=\"stage\" data-stage=\"{id}\" data-state=\"{s}\" class=\"stage s-{s}\">",
            id = esc(&n.id),
            s = esc(n.state)
        );
        if let Some(href) = &n.href {
            let _ = write!(out, "<a href=\"{}\">", esc(href));
        }
        let _ = write!(
            out,
            "<title>{id}: {s}{sep}{d}</title>\
             <rect class=\"box\" x=\"{x}\" y=\"{y}\" width=\"{BOX_W}\" height=\"{BOX_H}\" rx=\"6\"/>\
             <text class=\"name\" x=\"{tx}\" y=\"{ty1}\"><tspan class=\"icon\">{i}</tspan> {name}</text>\
             <text class=\"sub\" x=\"{tx}\" y=\"{ty2}\">{s}{sep}{d}</text>",
            id = esc(&n.id),
            s = esc(&n.state.replace('_', " ")),
            sep = if n.detail.is_empty() { "" } else { " · " },
            d = esc(&n.detail),
            tx = x + 10,
            ty1 = y + 19,
            ty2 = y + 36,
            i = esc(n.icon),
            name = esc(&short(&n.id, NAME_CHARS)),
        );
        if n.href.is_some() {
            out.push_str("</a>");
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    out
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, owner: &str, needs: &[&str]) -> Node {
        Node {
            id: id.into(),
            owner: owner.into(),
            icon: "◌",
            state: "planned",
            detail: String::new(),
            href: None,
            needs: needs.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn overlaps(a: (u32, u32), b: (u32, u32)) -> bool {
        a.0 < b.0 + BOX_W && b.0 < a.0 + BOX_W && a.1 < b.1 + BOX_H && b.1 < a.1 + BOX_H
    }

    fn check(nodes: &[Node]) -> Layout {
        let l = layout(nodes);
        for i in 0..nodes.len() {
            for j in i + 1..nodes.len() {
                assert!(
                    !overlaps(l.boxes[i], l.boxes[j]),
                    "{} and {} overlap",
                    nodes[i].id,
                    nodes[j].id
                );
            }
            assert!(l.boxes[i].0 + BOX_W <= l.width && l.boxes[i].1 + BOX_H <= l.height);
        }
        for &(from, to) in &l.edges {
            assert!(
                l.boxes[from].0 + BOX_W < l.boxes[to].0,
                "edge {} -> {} does not go right",
                nodes[from].id,
                nodes[to].id
            );
        }
        l
    }

    #[test]
    fn parallel_stages_share_a_column_and_owners_get_lanes() {
        let nodes = [
            node("Build", "dev", &[]),
            node("Unit", "dev", &["Build"]),
            node("Lint", "dev", &["Build"]),
            node("Deploy", "ops", &["Unit", "Lint"]),
            node("Smoke", "ops", &["Deploy"]),
        ];
        let l = check(&nodes);
        assert_eq!(
            l.boxes[1].0, l.boxes[2].0,
            "a parallel group shares a column"
        );
        assert_ne!(l.boxes[1].1, l.boxes[2].1);
        assert!(l.boxes[3].0 > l.boxes[1].0);
        assert_eq!(
            l.lanes
                .iter()
                .map(|(o, _, _)| o.as_str())
                .collect::<Vec<_>>(),
            ["dev", "ops"]
        );
        let (_, ops_y, _) = l.lanes[1];
        assert!(l.boxes[3].1 >= ops_y && l.boxes[4].1 >= ops_y);
        assert_eq!(l.edges.len(), 5);
    }

    #[test]
    fn thirty_stages_in_mixed_shapes_never_overlap() {
        let mut nodes = Vec::new();
        for i in 0..30 {
            let owner = ["dev", "ops", "partner"][i % 3];
            let needs: Vec<String> = match i {
                0 => vec![],
                i if i % 5 == 0 => vec![format!("s{}", i - 5), format!("s{}", i - 1)],
                i if i % 2 == 0 => vec![format!("s{}", i - 2)],
                i => vec![format!("s{}", i - 1)],
            };
            let needs: Vec<&str> = needs.iter().map(String::as_str).collect();
            nodes.push(node(&format!("s{i}"), owner, &needs));
        }
        nodes.push(node("orphan", "dev", &["missing"]));
        let l = check(&nodes);
        assert_eq!(l, layout(&nodes), "the layout is deterministic");
    }

    #[test]
    fn a_cycle_does_not_hang_or_draw_leftward_edges() {
        let nodes = [node("a", "x", &["b"]), node("b", "x", &["a"])];
        check(&nodes);
    }

    #[test]
    fn the_svg_marks_handoffs_and_escapes_names() {
        let nodes = [
            node("Build <1>", "dev", &[]),
            node("Deploy", "ops", &["Build <1>"]),
        ];
        let mut verdicts = HashMap::new();
        verdicts.insert(
            ("Build <1>".to_owned(), "Deploy".to_owned()),
            Verdict {
                verified: true,
                why: "receipt of ops-1 verifies".into(),
            },
        );
        let svg = svg(&nodes, &verdicts, "plan");
        assert!(
            svg.contains("data-from=\"Build &lt;1&gt;\" data-to=\"Deploy\" data-verified=\"true\"")
        );
        assert!(!svg.contains("<1>"));
        assert_eq!(svg.matches("data-testid=\"stage\"").count(), 2);
        assert_eq!(svg.matches("data-testid=\"lane\"").count(), 2);
        let none = super::svg(&nodes, &HashMap::new(), "plan");
        assert!(none.contains("data-verified=\"false\""));
    }
}
