//! Planning through the real filesystem: a temporary repository, and the examples shipped
//! in the repository. Also conventions planned from text.

use std::fs;
use std::path::Path;

use crate::plan_support::{ids, on_branch, repo, stage};
use otto_pipeline::{Convention, Facts, FsSource, StepCatalog, explain, plan, plan_text};

#[test]
fn fs_source_plans_a_repository_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("ci")).unwrap();
    fs::write(
        dir.path().join("Ottofile"),
        "use { './ci' }\nfrom 'test' { suite = 'unit' }\nstage('Ship') { owner = 'ops' steps { sh 'ship' } }\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("ci/test.otto"),
        "blueprint { vars { suite { type string } } stages { stage { name = concat('Test ', vars.suite) steps { sh 'make test' } } } }\n",
    )
    .unwrap();
    let planned = plan(
        &FsSource::new(),
        dir.path(),
        &Facts::default(),
        &StepCatalog::builtins(),
    )
    .unwrap();
    let first = &planned.plan;
    assert_eq!(ids(first), ["Test unit", "Ship"]);
    let name = dir.path().file_name().unwrap().to_string_lossy();
    assert_eq!(first.body.pipeline, name, "named after the directory");
    let sources: Vec<&str> = first
        .provenance
        .sources
        .iter()
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(
        sources,
        ["Ottofile", "ci/test.otto"],
        "paths relative to the root"
    );
    assert_eq!(first.provenance.root, dir.path().display().to_string());
    assert!(!explain::human(first).contains(&dir.path().display().to_string()));

    // The same files in memory plan to the same digest: provenance is not in it.
    let mem = repo(&[
        (
            "Ottofile",
            &fs::read_to_string(dir.path().join("Ottofile")).unwrap(),
        ),
        (
            "ci/test.otto",
            &fs::read_to_string(dir.path().join("ci/test.otto")).unwrap(),
        ),
    ]);
    let renamed = format!("/x/{name}");
    let mut moved = otto_pipeline::MemSource::new();
    for (path, text) in &mem.0 {
        moved.insert(
            Path::new(&renamed).join(path.strip_prefix("/repo").unwrap()),
            text.clone(),
        );
    }
    let again = plan(
        &moved,
        Path::new(&renamed),
        &Facts::default(),
        &StepCatalog::builtins(),
    )
    .unwrap();
    assert_eq!(again.plan.digest(), first.digest());
}

#[test]
fn the_examples_plan() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let run = |name: &str, facts: &Facts| {
        plan(
            &FsSource::new(),
            &examples.join(name),
            facts,
            &StepCatalog::builtins(),
        )
        .unwrap_or_else(|f| panic!("{name}:\n{f}"))
        .plan
    };
    let webapp = run("webapp", &on_branch("main"));
    assert_eq!(
        ids(&webapp),
        [
            "Build",
            "Unit",
            "Lint",
            "Deploy staging",
            "Deploy production"
        ]
    );
    assert_eq!(stage(&webapp, "Deploy staging").handoffs_from, ["origin"]);
    assert!(stage(&webapp, "Deploy production").handoffs_from.is_empty());

    let matrix = run("matrix", &Facts::default());
    assert_eq!(matrix.body.stages.len(), 7);

    let services = run("blueprint", &Facts::default());
    assert!(stage(&services, "Test worker").skipped);
    assert_eq!(stage(&services, "Release").handoffs_from, ["origin"]);
    // Each member of the `parallel` is a sequence: `Test api` is shown under `Build api`,
    // not as a third stage side by side.
    let text = explain::human(&services);
    let names: Vec<&str> = text
        .lines()
        .filter(|l| {
            [" 1 ", " 2 ", " 3 ", " 4 "]
                .iter()
                .any(|n| l.starts_with(n))
        })
        .map(|l| l.split("origin").next().unwrap().trim_end())
        .collect();
    assert_eq!(
        names,
        [
            " 1  ├ Build api",
            " 2  │ Test api",
            " 3  └ Build worker",
            " 4    Test worker"
        ],
        "{text}"
    );
}

#[test]
fn plan_text_records_the_convention_outside_the_digest() {
    let text = "stage('Build') { steps { sh 'cargo build' } }\n";
    let source = repo(&[("Cargo.toml", "[package]\n")]);
    let convention = Convention {
        name: "cargo".into(),
        reason: "found Cargo.toml".into(),
    };
    let virtual_path = Path::new("/repo/Ottofile");
    let inferred = plan_text(
        &source,
        virtual_path,
        text,
        &Facts::default(),
        &StepCatalog::builtins(),
        Some(convention.clone()),
    )
    .unwrap();
    assert_eq!(inferred.plan.provenance.convention, Some(convention));
    assert_eq!(inferred.plan.body.pipeline, "repo");
    assert!(explain::human(&inferred.plan).contains("convention cargo (found Cargo.toml)"));
    let written = plan(
        &repo(&[("Ottofile", text)]),
        Path::new("/repo"),
        &Facts::default(),
        &StepCatalog::builtins(),
    )
    .unwrap();
    assert_eq!(inferred.plan.digest(), written.plan.digest());
}

#[test]
fn step_packages_extend_the_catalog() {
    use otto_pipeline::steps::{ParamKind, StepSpec};
    let text = "stage('Notify') { steps { slack channel: '#ci', text: 'done' } }\n";
    let source = repo(&[("Ottofile", text)]);
    let builtins = StepCatalog::builtins();
    assert!(plan(&source, Path::new("/repo"), &Facts::default(), &builtins).is_err());
    let mut catalog = StepCatalog::builtins();
    catalog.add(
        StepSpec::new("slack")
            .keyword("channel", ParamKind::String, true)
            .keyword("text", ParamKind::String, true),
    );
    let planned = plan(&source, Path::new("/repo"), &Facts::default(), &catalog).unwrap();
    assert_eq!(planned.plan.body.stages[0].steps[0].symbol, "slack");
}
