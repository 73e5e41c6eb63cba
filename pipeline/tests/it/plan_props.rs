//! Properties of plans over generated pipelines: planning never panics, and every plan is
//! a well-formed DAG in topological order with consistent handoff points.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use otto_pipeline::{Facts, StepCatalog, plan};
use proptest::prelude::*;

/// A stage name: usually a fresh word, sometimes a clash or a value of the wrong type.
fn name(in_each: bool) -> BoxedStrategy<String> {
    let fresh = "[A-Z][a-z]{3,8}".prop_map(|n| format!("'{n}'"));
    if in_each {
        prop_oneof![
            4 => fresh.prop_map(|n| format!("concat({n}, ' ', it)")),
            1 => Just("concat('T ', it, vars.v)".to_owned()),
            1 => Just("it".to_owned()),
        ]
        .boxed()
    } else {
        prop_oneof![8 => fresh, 1 => Just("'A'".to_owned()), 1 => Just("vars.w".to_owned())].boxed()
    }
}

fn body(in_each: bool) -> impl Strategy<Value = String> {
    let it = if in_each { "it" } else { "'it'" };
    (
        prop::option::of(prop_oneof![Just("'ops'"), Just("'qa'"), Just(it)]),
        prop::option::weighted(0.1, prop_oneof![Just("'A'"), Just("'W'"), Just("'Nope'")]),
        prop::option::weighted(
            0.3,
            prop_oneof![
                Just("c = ['x/']"),
                Just("use c"),
                Just("d { paths = 'y/'  key = vars.v }")
            ],
        ),
        prop::option::of(prop_oneof![
            Just("branch == 'main'"),
            Just("!(tag != '') || vars.v == 'q'"),
            Just("branch in ['a', vars.w]"),
            Just("true"),
        ]),
        prop::option::of(prop_oneof![9 => Just("prod"), 1 => Just("stage")]),
        prop::collection::vec(
            prop_oneof![
                5 => Just("sh 'make'"),
                2 => Just("echo vars.v"),
                2 => Just("dir 'x' { sh vars.v }"),
                2 => Just("archive path: 'p', name: 'n'"),
                1 => Just("unarchive nme: 'n'"),
            ],
            0..3,
        ),
    )
        .prop_map(|(owner, from, cache, when, env, steps)| {
            let mut out = String::new();
            if let Some(o) = owner {
                out.push_str(&format!(" owner = {o}"));
            }
            if let Some(f) = from {
                out.push_str(&format!(" runtime {{ from {f} }}"));
            }
            if let Some(c) = cache {
                out.push_str(&format!(" cache {{ {c} }}"));
            }
            if let Some(w) = when {
                out.push_str(&format!(" when {{ {w} }}"));
            }
            if let Some(e) = env {
                out.push_str(&format!(" environment -> {e}"));
            }
            if !steps.is_empty() {
                out.push_str(&format!(" steps {{ {} }}", steps.join("  ")));
            }
            out
        })
}

/// Stage items nested up to `depth` levels; `in_each` says whether `it` is bound.
fn items(depth: u32, in_each: bool) -> BoxedStrategy<String> {
    let leaf = (name(in_each), body(in_each))
        .prop_map(|(n, b)| format!("stage({n}) {{{b} }}\n"))
        .boxed();
    if depth == 0 {
        return leaf;
    }
    let many = |inner: BoxedStrategy<String>, n: usize| {
        prop::collection::vec(inner, 1..n).prop_map(|v| v.concat())
    };
    let values = prop::collection::vec(
        prop_oneof![Just("1"), Just("'a'"), Just("'b'"), Just("vars.l")],
        1..3,
    )
    .prop_map(|v| v.join(", "));
    prop_oneof![
        4 => leaf,
        1 => many(items(depth - 1, in_each), 4).prop_map(|v| format!("parallel {{\n{v}}}\n")),
        1 => (values, many(items(depth - 1, true), 3)).prop_map(|(vals, v)| format!("each({vals}) {{\n{v}}}\n")),
        1 => (name(in_each), many(items(depth - 1, in_each), 3))
            .prop_map(|(n, v)| format!("stage {{ name = {n} owner = 'grp'\n{v}}}\n")),
        1 => prop_oneof![
            12 => Just(if in_each { "from 'bp' { x = concat('x', it) }\n" } else { "from 'bp' { x = 'y' }\n" }),
            1 => Just("from './nope'\n"),
        ]
        .prop_map(str::to_owned),
    ]
    .boxed()
}

const HEADER: &str = "vars { v = 'q'  w = 'W'  l { type list default ['p', 'r'] } }\n\
    environments { prod { settings { K = 'v' } secrets { S } } }\n\
    blueprint { name = 'bp'  vars { x { type string default 'd' } }\n\
      stages { stage { name = concat('BP ', vars.x) steps { sh vars.x } } } }\n";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn planning_never_panics_and_plans_are_well_formed_dags(
        body in prop::collection::vec(items(3, false), 1..4),
        branch in prop::option::of(prop_oneof![Just("main"), Just("dev")]),
    ) {
        let text = format!("{HEADER}{}", body.concat());
        let source = crate::plan_support::repo(&[("Ottofile", &text)]);
        let facts = Facts { branch: branch.map(Into::into), ..Facts::default() };
        let result = plan(&source, Path::new("/repo"), &facts, &StepCatalog::builtins());
        let planned = match result {
            Ok(planned) => planned,
            Err(failed) => {
                // Failing is fine; panicking is not, and failures must say something.
                prop_assert!(!failed.diagnostics.is_empty());
                return Ok(());
            }
        };
        let plan = planned.plan;
        let mut seen = BTreeSet::new();
        let owners: HashMap<&str, &str> = plan.body.stages.iter().map(|s| (s.id.as_str(), s.owner_name())).collect();
        for stage in &plan.body.stages {
            for need in &stage.needs {
                prop_assert!(seen.contains(need.as_str()), "{} needs {} which is not earlier", stage.id, need);
            }
            let expected: BTreeSet<&str> = stage
                .needs
                .iter()
                .filter_map(|n| owners.get(n.as_str()).copied())
                .filter(|o| *o != stage.owner_name())
                .collect();
            let actual: BTreeSet<&str> = stage.handoffs_from.iter().map(String::as_str).collect();
            prop_assert_eq!(actual, expected);
            prop_assert!(seen.insert(stage.id.as_str()), "duplicate id {}", stage.id);
            prop_assert_eq!(stage.skipped, stage.when.as_ref().is_some_and(|w| w.result.as_str() == "fail"));
        }
        let again = crate::plan_support::plan_with(&[("Ottofile", &text)], &facts);
        prop_assert_eq!(again.canonical_bytes(), plan.canonical_bytes());
    }
}
