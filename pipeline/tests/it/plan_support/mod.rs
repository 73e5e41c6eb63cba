//! Helpers shared by the planner tests: plan files held in memory, find diagnostics.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;

use otto_pipeline::diagnostic::Diagnostic;
use otto_pipeline::{Facts, Failed, MemSource, Plan, StepCatalog};

/// The directory the in-memory repositories live in.
pub const ROOT: &str = "/repo";

/// A repository in memory: (path relative to /repo, text).
pub fn repo(files: &[(&str, &str)]) -> MemSource {
    let mut src = MemSource::new();
    for (path, text) in files {
        src.insert(Path::new(ROOT).join(path), *text);
    }
    src
}

/// Plans /repo with these files and facts; panics with the diagnostics on failure.
pub fn plan_with(files: &[(&str, &str)], facts: &Facts) -> Plan {
    match otto_pipeline::plan(
        &repo(files),
        Path::new(ROOT),
        facts,
        &StepCatalog::builtins(),
    ) {
        Ok(planned) => planned.plan,
        Err(failed) => panic!("planning failed:\n{failed}"),
    }
}

/// Plans a repository holding only this Ottofile.
pub fn plan_one(ottofile: &str) -> Plan {
    plan_with(&[("Ottofile", ottofile)], &Facts::default())
}

/// Plans /repo expecting failure.
pub fn fail_with(files: &[(&str, &str)], facts: &Facts) -> Failed {
    match otto_pipeline::plan(
        &repo(files),
        Path::new(ROOT),
        facts,
        &StepCatalog::builtins(),
    ) {
        Ok(planned) => panic!(
            "planning succeeded:\n{}",
            otto_pipeline::explain::human(&planned.plan)
        ),
        Err(failed) => failed,
    }
}

/// Plans a repository holding only this Ottofile, expecting failure.
pub fn fail_one(ottofile: &str) -> Failed {
    fail_with(&[("Ottofile", ottofile)], &Facts::default())
}

/// The one diagnostic with this message; panics (listing all) when there is not exactly one.
pub fn diag<'a>(failed: &'a Failed, message: &str) -> &'a Diagnostic {
    let found: Vec<&Diagnostic> = failed
        .diagnostics
        .iter()
        .filter(|d| d.message == message)
        .collect();
    match found.as_slice() {
        [one] => one,
        _ => panic!("expected one diagnostic {message:?}, got:\n{failed}"),
    }
}

/// Asserts a diagnostic with this message at `path:line:column`; returns it for more checks.
pub fn assert_diag<'a>(failed: &'a Failed, location: &str, message: &str) -> &'a Diagnostic {
    let d = diag(failed, message);
    assert_eq!(
        failed.location(d).as_deref(),
        Some(location),
        "location of {message:?}:\n{failed}"
    );
    d
}

/// Facts with a branch.
pub fn on_branch(branch: &str) -> Facts {
    Facts {
        branch: Some(branch.into()),
        ..Facts::default()
    }
}

/// The stage with this id.
pub fn stage<'a>(plan: &'a Plan, id: &str) -> &'a otto_pipeline::plan::Stage {
    plan.stage(id).unwrap_or_else(|| {
        let ids: Vec<&str> = plan.body.stages.iter().map(|s| s.id.as_str()).collect();
        panic!("no stage {id:?}; stages: {ids:?}")
    })
}

/// Stage ids in plan order.
pub fn ids(plan: &Plan) -> Vec<&str> {
    plan.body.stages.iter().map(|s| s.id.as_str()).collect()
}
