//! Conventions on the files real projects have: what they install, how they test, what
//! their caches hold and are keyed by, and what `explain` says about why.

use std::path::Path;

use crate::plan_support::repo;
use otto_pipeline::conventions::{Detected, MINIMAL_OTTOFILE, detect};
use otto_pipeline::{Facts, StepCatalog, plan_text};

fn detected(files: &[(&str, &str)]) -> Detected {
    let detected = detect(&repo(files), Path::new("/repo")).expect("a convention");
    // Whatever a convention writes plans.
    plan_text(
        &repo(files),
        Path::new("/repo/Ottofile"),
        &detected.ottofile,
        &Facts::default(),
        &StepCatalog::builtins(),
        None,
    )
    .unwrap_or_else(|f| panic!("{}\n{f}", detected.ottofile));
    detected
}

const PYPROJECT: &str = "[build-system]\nrequires = ['flit_core']\nbuild-backend = 'flit_core.buildapi'\n[project]\nname = 'x'\n";

#[test]
fn python_installs_test_extras_and_caches_pips_cache_not_the_venv() {
    let text = format!(
        "{PYPROJECT}[project.optional-dependencies]\ntests = ['pytest>=7', 'hypothesis']\n"
    );
    let d = detected(&[("pyproject.toml", &text)]);
    assert!(
        d.ottofile.contains(
            "pip install --cache-dir .cache/pip --disable-pip-version-check \".[tests]\" pytest"
        ),
        "{}",
        d.ottofile
    );
    assert!(
        d.ottofile.contains("sh '.venv/bin/python -m pytest'"),
        "{}",
        d.ottofile
    );
    assert!(
        d.ottofile
            .contains("pip { paths = ['.cache/pip/']  key = ['pyproject.toml'] }"),
        "{}",
        d.ottofile
    );
    assert!(
        !d.ottofile.contains("paths = ['.venv"),
        "the venv is rebuilt, never restored"
    );
    assert!(
        !d.ottofile.contains("activate"),
        "no script with absolute paths is sourced"
    );
    assert_eq!(
        d.reason,
        "found pyproject.toml with test extras `tests`; tests with pytest"
    );
}

#[test]
fn python_dependency_groups_and_requirements_files_are_installed() {
    let text = format!(
        "{PYPROJECT}[dependency-groups]\ndev = ['pytest', 'coverage[toml]>=7', {{include-group = 'x'}}, \"bad'quote\"]\n"
    );
    let d = detected(&[
        ("pyproject.toml", &text),
        ("requirements-dev.txt", "ruff\n"),
    ]);
    assert!(
        d.ottofile
            .contains(". \"pytest\" \"coverage[toml]>=7\" -r requirements-dev.txt pytest'"),
        "{}",
        d.ottofile
    );
    assert!(
        !d.ottofile.contains("bad"),
        "a requirement that could break the quoting is left out"
    );
    assert!(
        d.ottofile
            .contains("key = ['pyproject.toml', 'requirements-dev.txt']"),
        "{}",
        d.ottofile
    );
    assert!(d.reason.contains("dependency group `dev`"), "{}", d.reason);

    // requirements.txt alone: no package to install, pytest named in it.
    let d = detected(&[("requirements.txt", "pytest==8.0\nrequests\n")]);
    assert!(
        d.ottofile.contains(
            "install --cache-dir .cache/pip --disable-pip-version-check -r requirements.txt pytest'"
        ),
        "{}",
        d.ottofile
    );
    assert!(
        d.ottofile.contains("key = ['requirements.txt']"),
        "{}",
        d.ottofile
    );
}

#[test]
fn python_without_pytest_uses_unittest() {
    let d = detected(&[
        ("pyproject.toml", PYPROJECT),
        ("tests/__init__.py", ""),
        ("tests/test_x.py", "import unittest\n"),
    ]);
    assert!(
        d.ottofile
            .contains("sh '.venv/bin/python -m unittest discover -s tests -t .'"),
        "{}",
        d.ottofile
    );
    assert!(
        d.ottofile.contains("--disable-pip-version-check .'"),
        "{}",
        d.ottofile
    );
    assert!(d.reason.contains("unittest"), "{}", d.reason);
    let d = detected(&[("pyproject.toml", PYPROJECT), ("tests/test_x.py", "")]);
    assert!(
        d.ottofile.contains("unittest discover -s tests'"),
        "{}",
        d.ottofile
    );
    // A pyproject.toml that only configures tools is not installed.
    let d = detected(&[("pyproject.toml", "[tool.ruff]\nline-length = 100\n")]);
    assert!(!d.ottofile.contains("pip install"), "{}", d.ottofile);
}

#[test]
fn npm_caches_its_download_cache_keyed_by_the_lockfile() {
    let manifest = r#"{"name":"x","scripts":{"build":"tsc","test":"node --test"}}"#;
    let d = detected(&[("package.json", manifest), ("package-lock.json", "{}")]);
    assert!(
        d.ottofile
            .contains("npm { paths = ['.npm/']  key = ['package-lock.json'] }"),
        "{}",
        d.ottofile
    );
    assert!(
        d.ottofile.contains("npm ci --cache .npm --prefer-offline"),
        "{}",
        d.ottofile
    );
    assert!(!d.ottofile.contains("node_modules"), "{}", d.ottofile);
    assert!(
        d.ottofile
            .contains("stage('Build') {\n  runtime { from 'Install' }"),
        "{}",
        d.ottofile
    );
    assert!(
        d.ottofile
            .contains("stage('Test') {\n  runtime { from 'Build' }"),
        "{}",
        d.ottofile
    );
    assert_eq!(
        d.reason,
        "found package.json and package-lock.json; the npm cache is keyed by package-lock.json; scripts build, test"
    );
    // Without a lockfile the manifest is the key.
    let d = detected(&[("package.json", manifest)]);
    assert!(
        d.ottofile.contains("key = ['package.json']"),
        "{}",
        d.ottofile
    );
    assert!(
        d.ottofile.contains("npm install --cache .npm"),
        "{}",
        d.ottofile
    );
}

#[test]
fn an_unknown_stack_gets_the_minimal_ottofile_and_it_plans() {
    assert!(detect(&repo(&[("notes.txt", "x")]), Path::new("/repo")).is_none());
    otto_pipeline::plan(
        &repo(&[("Ottofile", MINIMAL_OTTOFILE)]),
        Path::new("/repo"),
        &Facts::default(),
        &StepCatalog::builtins(),
    )
    .unwrap();
}
