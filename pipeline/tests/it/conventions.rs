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
    let manifest =
        r#"{"name":"x","scripts":{"build":"tsc","lint":"eslint .","test":"node --test"}}"#;
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
    // Lint and Test both start from Build's workspace, so Lint's is never saved.
    for stage in ["Lint", "Test"] {
        assert!(
            d.ottofile.contains(&format!(
                "stage('{stage}') {{\n  runtime {{ from 'Build' }}"
            )),
            "{}",
            d.ottofile
        );
    }
    assert_eq!(
        d.reason,
        "found package.json and package-lock.json; the npm cache is keyed by package-lock.json; scripts build, lint, test"
    );
    let plan = otto_pipeline::plan(
        &repo(&[
            ("package.json", manifest),
            ("package-lock.json", "{}"),
            ("Ottofile", &d.ottofile),
        ]),
        Path::new("/repo"),
        &Facts::default(),
        &StepCatalog::builtins(),
    )
    .unwrap()
    .plan;
    let needs = |id: &str| {
        plan.body
            .stages
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.needs.clone())
            .unwrap()
    };
    assert_eq!(needs("Lint"), ["Build"]);
    assert!(
        needs("Test").contains(&"Build".to_owned()),
        "{:?}",
        needs("Test")
    );
    // Without a build script, both start from Install.
    let d = detected(&[(
        "package.json",
        r#"{"scripts":{"lint":"eslint .","test":"tape"}}"#,
    )]);
    assert!(
        d.ottofile
            .contains("stage('Test') {\n  runtime { from 'Install' }"),
        "{}",
        d.ottofile
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

#[test]
fn go_keeps_its_module_and_build_caches_in_the_workspace_keyed_by_go_sum() {
    let d = detected(&[("go.mod", "module x\n"), ("go.sum", "")]);
    assert!(
        d.ottofile
            .contains("go { paths = ['.cache/go/']  key = ['go.sum'] }"),
        "{}",
        d.ottofile
    );
    // Every go command sees the same caches, and -trimpath keeps the per-run workspace
    // path out of the build cache's keys, so a restored cache is used.
    let env = "GOMODCACHE=\"$PWD/.cache/go/mod\" GOCACHE=\"$PWD/.cache/go/build\" GOFLAGS=\"-modcacherw -trimpath\"";
    for command in ["go build ./...", "go vet ./...", "go test ./..."] {
        assert!(
            d.ottofile.contains(&format!("sh '{env} {command}'")),
            "{command}: {}",
            d.ottofile
        );
    }
    assert!(d.ottofile.contains("cache { use go }"), "{}", d.ottofile);
    assert_eq!(
        d.reason,
        "found go.mod; module and build caches in .cache/go, keyed by go.sum"
    );
    // A module without dependencies has no go.sum: go.mod is the key.
    let d = detected(&[("go.mod", "module x\n")]);
    assert!(d.ottofile.contains("key = ['go.mod']"), "{}", d.ottofile);
}

#[test]
fn maven_and_gradle_cache_their_downloads_in_the_workspace() {
    let d = detected(&[("pom.xml", "<project/>")]);
    assert!(
        d.ottofile.contains(
            "sh 'mvn -B -Dmaven.repo.local=\"$PWD/.cache/maven/repository\" -DskipTests package'"
        ),
        "{}",
        d.ottofile
    );
    assert!(
        d.ottofile
            .contains("maven { paths = ['.cache/maven/']  key = ['pom.xml'] }"),
        "{}",
        d.ottofile
    );
    assert!(d.ottofile.contains("cache { use maven }"), "{}", d.ottofile);
    // The wrapper keeps the Maven it downloads in the cached directory too.
    let d = detected(&[
        ("pom.xml", "<project/>"),
        ("mvnw", "#!/bin/sh\n"),
        (
            ".mvn/wrapper/maven-wrapper.properties",
            "distributionUrl=x\n",
        ),
    ]);
    assert!(
        d.ottofile
            .contains("sh 'MAVEN_USER_HOME=\"$PWD/.cache/maven\" ./mvnw -B "),
        "{}",
        d.ottofile
    );
    assert!(
        d.ottofile
            .contains("key = ['pom.xml', '.mvn/wrapper/maven-wrapper.properties']"),
        "{}",
        d.ottofile
    );
    assert_eq!(
        d.reason,
        "found pom.xml, run through mvnw; the local repository in .cache/maven, keyed by pom.xml, .mvn/wrapper/maven-wrapper.properties"
    );

    let d = detected(&[
        ("build.gradle.kts", "plugins { java }\n"),
        ("settings.gradle.kts", "rootProject.name = \"x\"\n"),
        ("gradlew", "#!/bin/sh\n"),
        (
            "gradle/wrapper/gradle-wrapper.properties",
            "distributionUrl=x\n",
        ),
        ("gradle/libs.versions.toml", "[versions]\n"),
    ]);
    assert!(
        d.ottofile.contains(
            "gradle { paths = ['.cache/gradle/caches/modules-2/', '.cache/gradle/wrapper/dists/']  key = ['settings.gradle.kts', 'build.gradle.kts', 'gradle/libs.versions.toml', 'gradle/wrapper/gradle-wrapper.properties'] }"
        ),
        "{}",
        d.ottofile
    );
    assert!(
        d.ottofile.contains(
            "sh 'GRADLE_USER_HOME=\"$PWD/.cache/gradle\" ./gradlew --no-daemon assemble'"
        ),
        "{}",
        d.ottofile
    );
    assert!(
        d.ottofile
            .contains("sh 'GRADLE_USER_HOME=\"$PWD/.cache/gradle\" ./gradlew --no-daemon check'"),
        "{}",
        d.ottofile
    );
    assert!(
        d.reason
            .starts_with("found build.gradle.kts, run through gradlew;"),
        "{}",
        d.reason
    );
}

#[test]
fn bundler_projects_test_with_rails_rspec_or_rake() {
    let lock = "GEM\n  specs:\n    rspec (3.13.0)\n    rake (13.1.0)\n";
    let d = detected(&[
        (
            "Gemfile",
            "source 'https://rubygems.org'\ngem \"rails\", '~> 7.1'\n",
        ),
        ("Gemfile.lock", lock),
        ("bin/rails", "#!/usr/bin/env ruby\n"),
    ]);
    assert_eq!(d.name, "rails");
    assert!(d.ottofile.contains("sh 'bin/rails test'"), "{}", d.ottofile);
    assert!(
        d.ottofile
            .contains("gems { paths = ['vendor/bundle/']  key = ['Gemfile.lock'] }"),
        "{}",
        d.ottofile
    );

    // rspec only through the gemspec: named in the lockfile, with a spec/ directory.
    let d = detected(&[
        ("Gemfile", "source 'https://rubygems.org'\ngemspec\n"),
        ("Gemfile.lock", lock),
        ("Rakefile", "task default: :spec\n"),
        ("spec/x_spec.rb", ""),
    ]);
    assert_eq!(d.name, "bundler");
    assert!(
        d.ottofile.contains("sh 'bundle exec rspec'"),
        "{}",
        d.ottofile
    );
    // Named but without specs: the Rakefile's default task.
    let d = detected(&[
        ("Gemfile", "gem 'rspec'\n"),
        ("Rakefile", "task default: :test\n"),
    ]);
    assert!(
        d.ottofile.contains("sh 'bundle exec rake'"),
        "{}",
        d.ottofile
    );
    assert!(d.ottofile.contains("key = ['Gemfile']"), "{}", d.ottofile);
    assert_eq!(
        d.reason,
        "found Gemfile and Rakefile; tests with the Rakefile's default task; gems in vendor/bundle, cached by Gemfile"
    );
    // Nothing to test with: install only, and say so.
    let d = detected(&[("Gemfile", "gem 'sinatra'\n")]);
    assert!(!d.ottofile.contains("stage('Test')"), "{}", d.ottofile);
    assert!(d.reason.contains("so no Test stage"), "{}", d.reason);
}

#[test]
fn make_tests_in_the_built_tree_and_configure_writes_the_makefile() {
    let d = detected(&[("Makefile", "all:\n\tcc x.c\n\ncheck: all\n\t./a.out\n")]);
    assert!(
        d.ottofile
            .contains("stage('Test') {\n  runtime { from 'Build' }\n  steps { sh 'make check' }"),
        "{}",
        d.ottofile
    );
    assert_eq!(
        d.reason,
        "found Makefile; `make check` runs in the built tree"
    );
    let d = detected(&[("Makefile", "all:\n\tcc x.c\n")]);
    assert!(!d.ottofile.contains("stage('Test')"), "{}", d.ottofile);
    assert!(d.reason.ends_with("so no Test stage"), "{}", d.reason);

    let d = detected(&[
        ("configure", "#!/bin/sh\n"),
        ("Makefile.in", "all: x\n\ncheck: check-am\n"),
    ]);
    assert!(
        d.ottofile
            .contains("steps {\n    sh './configure'\n    sh 'make'\n  }"),
        "{}",
        d.ottofile
    );
    assert!(d.ottofile.contains("sh 'make check'"), "{}", d.ottofile);
    assert_eq!(
        d.reason,
        "found configure and no Makefile: ./configure writes it; `make check` runs in the built tree"
    );
    // A configure script beside a Makefile: the Makefile is what a person runs.
    let d = detected(&[("configure", "#!/bin/sh\n"), ("Makefile", "all:\n")]);
    assert!(!d.ottofile.contains("./configure"), "{}", d.ottofile);
}

#[test]
fn cargo_caches_its_download_cache_in_the_workspace_keyed_by_the_lockfile() {
    let toml = "[package]\nname = 'x'\nversion = '0.1.0'\n";
    let locked = detected(&[("Cargo.toml", toml), ("Cargo.lock", "version = 4\n")]);
    let text = &locked.ottofile;
    // A walled step's HOME is new in every attempt: cargo's home is in the workspace.
    assert!(
        text.contains(
            "sh 'CARGO_HOME=\"$PWD/.cache/cargo\" cargo build --workspace --all-targets --locked'"
        ) && text.contains("sh 'CARGO_HOME=\"$PWD/.cache/cargo\" cargo test --workspace --locked'"),
        "{text}"
    );
    assert!(
        text.contains("cargo { paths = ['.cache/cargo/registry/index/', '.cache/cargo/registry/cache/', '.cache/cargo/git/db/']  key = ['Cargo.lock'] }")
            && text.contains("target { paths = ['target/']  key = ['Cargo.lock'] }")
            && text.contains("cache { use cargo  use target }"),
        "{text}"
    );
    assert!(
        locked.reason.contains("keyed by Cargo.lock"),
        "{}",
        locked.reason
    );

    // Without a lockfile the manifest keys the downloads, and target/ is saved each time.
    let unlocked = detected(&[("Cargo.toml", toml)]);
    let text = &unlocked.ottofile;
    assert!(!text.contains("--locked"), "{text}");
    assert!(text.contains("key = ['Cargo.toml']"), "{text}");
    assert!(text.contains("target { paths = ['target/'] }"), "{text}");
}
