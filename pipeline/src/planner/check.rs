//! Checks over the expanded stages: unique names, `runtime from`, caches, environments;
//! then the final dependencies and handoff points.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::diagnostic::Diagnostic;
use crate::plan::{self, ORIGIN};
use crate::span::{SourceMap, Span};
use crate::steps::closest;

use super::eval::{Evaluated, all};
use super::expand::{Node, normalise};

/// Resolves names across stages and returns the final stages and the environments they use.
pub(crate) fn finish(
    mut nodes: Vec<Node>,
    environments: &BTreeMap<String, plan::Environment>,
    sources: &SourceMap,
    diags: &mut Vec<Diagnostic>,
) -> (Vec<plan::Stage>, BTreeMap<String, plan::Environment>) {
    let index = unique_names(&nodes, sources, diags);
    runtime_from(&mut nodes, &index, diags);
    when_from(&mut nodes, &index, diags);
    caches(&mut nodes, diags);
    let used = assign_environments(&mut nodes, environments, diags);

    let ids: Vec<String> = nodes.iter().map(|n| n.stage.id.clone()).collect();
    let owners: Vec<Option<String>> = nodes.iter().map(|n| n.stage.owner.clone()).collect();
    let stages = nodes
        .into_iter()
        .map(|node| {
            let mut stage = node.stage;
            let needs = normalise(node.needs);
            let own = stage.owner.as_deref().unwrap_or(ORIGIN);
            let from: BTreeSet<String> = needs
                .iter()
                .filter_map(|&i| owners.get(i))
                .map(|o| o.as_deref().unwrap_or(ORIGIN))
                .filter(|o| *o != own)
                .map(str::to_owned)
                .collect();
            stage.handoffs_from = from.into_iter().collect();
            let mut need_ids: Vec<String> =
                needs.iter().filter_map(|&i| ids.get(i).cloned()).collect();
            need_ids.sort();
            need_ids.dedup();
            stage.needs = need_ids;
            stage
        })
        .collect();
    (stages, used)
}

/// Reports duplicate names; returns the index of each name's first stage.
fn unique_names(
    nodes: &[Node],
    sources: &SourceMap,
    diags: &mut Vec<Diagnostic>,
) -> HashMap<String, usize> {
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        let name = &node.stage.id;
        match index.get(name) {
            None => {
                index.insert(name.clone(), i);
            }
            Some(&first) => {
                let first_span = nodes[first].name_span;
                let hint = if first_span == node.name_span {
                    "every copy needs its own name: use `it` in it, e.g. concat('Build ', it)"
                        .to_owned()
                } else {
                    format!("first defined at {}", location(sources, first_span))
                };
                diags.push(
                    Diagnostic::new(format!("duplicate stage name '{name}'"), node.name_span)
                        .with_label("a stage with this name already exists")
                        .with_hint(hint),
                );
            }
        }
    }
    index
}

/// Resolves `runtime { from 'X' }`: X must be an earlier stage; it becomes a dependency.
fn runtime_from(nodes: &mut [Node], index: &HashMap<String, usize>, diags: &mut Vec<Diagnostic>) {
    for i in 0..nodes.len() {
        let Some(from) = nodes[i].runtime_from.clone() else {
            continue;
        };
        let Some(&j) = index.get(&from.value) else {
            let mut d = Diagnostic::new(
                format!("unknown stage '{}' in runtime from", from.value),
                from.span,
            )
            .with_label("no stage has this name");
            if let Some(best) = closest(&from.value, index.keys().map(String::as_str)) {
                d = d.with_hint(format!("did you mean '{best}'?"));
            }
            diags.push(d);
            continue;
        };
        if j < i {
            nodes[i].stage.runtime.from = Some(nodes[j].stage.id.clone());
            nodes[i].needs.push(j);
            continue;
        }
        let me = nodes[i].stage.id.clone();
        let d = match path_back(nodes, j, i) {
            Some(path) => {
                let mut names: Vec<&str> =
                    path.iter().map(|&k| nodes[k].stage.id.as_str()).collect();
                names.push(&me);
                Diagnostic::new(
                    format!(
                        "runtime from '{}' creates a cycle: {}",
                        from.value,
                        names.join(" → ")
                    ),
                    from.span,
                )
                .with_label(format!("'{}' runs after '{me}'", from.value))
                .with_hint("a stage can only start from a stage that runs before it")
            }
            None => Diagnostic::new(
                format!(
                    "runtime from '{}' names a stage defined after '{me}'",
                    from.value
                ),
                from.span,
            )
            .with_hint("a stage can only start from a stage defined before it"),
        };
        diags.push(d);
    }
}

/// Resolves `when { from 'X' }`: X's conditions (its own and those it reuses) are ANDed
/// into the stage's; the stage is skipped when they fail. Reuse may not go round in a circle.
/// Depth-first without recursion, since a hostile file may chain 50 000 stages.
fn when_from(nodes: &mut [Node], index: &HashMap<String, usize>, diags: &mut Vec<Diagnostic>) {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Todo,
        /// Its reused stages are being resolved: it is on the current path.
        Busy,
        Done,
    }
    let mut state = vec![State::Todo; nodes.len()];
    for start in 0..nodes.len() {
        let mut stack = vec![start];
        while let Some(&i) = stack.last() {
            match state[i] {
                State::Done => {
                    stack.pop();
                }
                State::Todo => {
                    state[i] = State::Busy;
                    for from in &nodes[i].when_from {
                        if let Some(&j) = index.get(&from.value)
                            && state[j] == State::Todo
                        {
                            stack.push(j);
                        }
                    }
                }
                State::Busy => {
                    stack.pop();
                    let mut conds: Vec<Evaluated> =
                        nodes[i].stage.when.iter().map(evaluated).collect();
                    for from in std::mem::take(&mut nodes[i].when_from) {
                        match index.get(&from.value) {
                            Some(&j) if state[j] == State::Done => {
                                conds.extend(nodes[j].stage.when.iter().map(evaluated));
                            }
                            Some(_) => diags.push(
                                Diagnostic::new(
                                    format!("when from '{}' goes round in a circle", from.value),
                                    from.span,
                                )
                                .with_hint("a stage cannot reuse conditions that reuse its own"),
                            ),
                            None => {
                                let mut d = Diagnostic::new(
                                    format!("unknown stage '{}' in when from", from.value),
                                    from.span,
                                )
                                .with_label("no stage has this name");
                                let names = index.keys().map(String::as_str);
                                if let Some(best) = closest(&from.value, names) {
                                    d = d.with_hint(format!("did you mean '{best}'?"));
                                }
                                diags.push(d);
                            }
                        }
                    }
                    if let Some(all) = all(&conds) {
                        nodes[i].stage.skipped = all.outcome == plan::Outcome::Fail;
                        nodes[i].stage.when = Some(plan::Condition {
                            text: all.text,
                            result: all.outcome,
                        });
                    }
                    state[i] = State::Done;
                }
            }
        }
    }
}

fn evaluated(c: &plan::Condition) -> Evaluated {
    Evaluated {
        text: c.text.clone(),
        outcome: c.result,
    }
}

/// A chain of dependencies from `from` back to `to` (following `needs`), in run order:
/// `to`, ..., `from`. `None` when `from` does not depend on `to`.
fn path_back(nodes: &[Node], from: usize, to: usize) -> Option<Vec<usize>> {
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([from]);
    let mut seen = BTreeSet::from([from]);
    while let Some(k) = queue.pop_front() {
        if k == to {
            let mut path = vec![k];
            let mut cur = k;
            while let Some(&p) = parent.get(&cur) {
                path.push(p);
                cur = p;
            }
            return Some(path);
        }
        for &n in &nodes.get(k)?.needs {
            if seen.insert(n) {
                parent.insert(n, k);
                queue.push_back(n);
            }
        }
    }
    None
}

/// Gives each stage its caches: the ones it defines and the ones it uses, sorted by name.
fn caches(nodes: &mut [Node], diags: &mut Vec<Diagnostic>) {
    let mut defined: BTreeMap<String, (plan::Cache, Span)> = BTreeMap::new();
    for node in nodes.iter() {
        for (cache, span) in &node.cache_defs {
            match defined.get(&cache.name) {
                None => {
                    defined.insert(cache.name.clone(), (cache.clone(), *span));
                }
                Some((first, _)) if first == cache => {}
                Some(_) => diags.push(
                    Diagnostic::new(
                        format!(
                            "cache '{}' is defined again with different paths or keys",
                            cache.name
                        ),
                        *span,
                    )
                    .with_hint("give it another name, or reuse it with cache { use NAME }"),
                ),
            }
        }
    }
    for node in nodes.iter_mut() {
        let mut caches: BTreeMap<String, plan::Cache> = BTreeMap::new();
        for (cache, _) in &node.cache_defs {
            caches.insert(cache.name.clone(), cache.clone());
        }
        for name in &node.cache_uses {
            if caches.contains_key(&name.name) {
                continue;
            }
            match defined.get(&name.name) {
                Some((cache, _)) => {
                    let mut cache = cache.clone();
                    cache.defined_here = false;
                    caches.insert(name.name.clone(), cache);
                }
                None => {
                    let mut d =
                        Diagnostic::new(format!("unknown cache '{}'", name.name), name.span)
                            .with_label("no stage defines this cache");
                    d.hint = Some(
                        match closest(&name.name, defined.keys().map(String::as_str)) {
                            Some(best) => format!("did you mean '{best}'?"),
                            None => format!(
                                "define it in a stage: cache {{ {} = ['path/'] }}",
                                name.name
                            ),
                        },
                    );
                    diags.push(d);
                }
            }
        }
        node.stage.caches = caches.into_values().collect();
    }
}

/// Checks each stage's environment and gives it the environment's secret names.
fn assign_environments(
    nodes: &mut [Node],
    environments: &BTreeMap<String, plan::Environment>,
    diags: &mut Vec<Diagnostic>,
) -> BTreeMap<String, plan::Environment> {
    let mut used = BTreeMap::new();
    let mut reported: BTreeSet<Span> = BTreeSet::new();
    for node in nodes.iter_mut() {
        let Some(env) = &node.environment else {
            continue;
        };
        match environments.get(&env.name) {
            Some(def) => {
                node.stage.environment = Some(env.name.clone());
                node.stage.secrets = def.secrets.clone();
                used.insert(env.name.clone(), def.clone());
            }
            None if reported.insert(env.span) => {
                let mut d =
                    Diagnostic::new(format!("unknown environment '{}'", env.name), env.span)
                        .with_label("not defined in environments { }");
                d.hint = Some(
                    match closest(&env.name, environments.keys().map(String::as_str)) {
                        Some(best) => format!("did you mean '{best}'?"),
                        None if environments.is_empty() => {
                            "define it: environments { NAME { settings { } } }".to_owned()
                        }
                        None => format!(
                            "the environments are: {}",
                            environments.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    },
                );
                diags.push(d);
            }
            None => {}
        }
    }
    used
}

/// `path:line:column` of the start of a span.
pub(crate) fn location(sources: &SourceMap, span: Span) -> String {
    match sources.get(span.file) {
        Some(file) => {
            let (line, col) = file.line_col(span.start);
            format!("{}:{line}:{col}", file.path.display())
        }
        None => "?".to_owned(),
    }
}
