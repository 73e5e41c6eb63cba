//! Expansion: matrices, parallel groups, grouping stages, blueprints and libraries.

use crate::plan_support::{fail_one, ids, on_branch, plan_one, plan_with, stage};
use otto_pipeline::Facts;
use otto_pipeline::plan::{BlueprintRef, Gate, RuntimeKind};
use serde_json::json;
use sha2::{Digest, Sha256};

#[test]
fn each_makes_one_stage_per_value_side_by_side() {
    let plan = plan_one(
        "stage('Build') { steps { sh 'make' } }\n\
         each('linux', 'macos') {\n\
           stage { name = concat('Package ', it)  runtime { computer { label = it } }\n\
                   steps { sh concat('make package OS=', it) } }\n\
         }\n\
         stage('Publish') { steps { sh 'publish' } }\n",
    );
    assert_eq!(
        ids(&plan),
        ["Build", "Package linux", "Package macos", "Publish"]
    );
    let linux = stage(&plan, "Package linux");
    let macos = stage(&plan, "Package macos");
    assert_eq!(linux.needs, ["Build"]);
    assert_eq!(macos.needs, ["Build"]);
    assert!(
        linux
            .parallel
            .as_deref()
            .is_some_and(|p| p.starts_with("each"))
    );
    assert_eq!(linux.parallel, macos.parallel);
    assert_eq!(linux.steps[0].args, [json!("make package OS=linux")]);
    assert_eq!(macos.runtime.kind, RuntimeKind::Computer);
    assert_eq!(macos.runtime.label.as_deref(), Some("macos"));
    assert_eq!(
        stage(&plan, "Publish").needs,
        ["Package linux", "Package macos"]
    );
    assert_eq!(stage(&plan, "Publish").parallel, None);
}

#[test]
fn each_flattens_list_values_and_accepts_numbers() {
    let plan = plan_one(
        "vars { oses { type list default ['a', 'b'] } }\n\
         each(vars.oses, 'c', 3) { stage(concat('T ', it)) { steps { sh 'x' } } }\n",
    );
    assert_eq!(ids(&plan), ["T a", "T b", "T c", "T 3"]);
}

#[test]
fn nested_each_binds_it_to_the_innermost_value() {
    let plan = plan_one(
        "each('x') {\n\
           stage(concat('Prep ', it)) { steps { sh 'prep' } }\n\
           each(1, 2) { stage(concat('Run ', it)) { steps { sh concat('run ', it) } } }\n\
         }\n",
    );
    assert_eq!(ids(&plan), ["Prep x", "Run 1", "Run 2"]);
    assert_eq!(stage(&plan, "Run 2").needs, ["Prep x"]);
    assert_eq!(stage(&plan, "Run 2").steps[0].args, [json!("run 2")]);
    assert_ne!(
        stage(&plan, "Run 1").parallel,
        stage(&plan, "Prep x").parallel
    );
}

#[test]
fn parallel_members_share_the_entry_and_the_next_item_waits_for_all() {
    let plan = plan_one(
        "stage('Build') { steps { sh 'b' } }\n\
         parallel {\n\
           stage('Unit') { steps { sh 'u' } }\n\
           stage { name = 'Checks'\n\
             stage('Lint') { steps { sh 'l' } }\n\
             stage('Audit') { steps { sh 'a' } }\n\
           }\n\
         }\n\
         stage('Ship') { steps { sh 's' } }\n",
    );
    assert_eq!(ids(&plan), ["Build", "Unit", "Lint", "Audit", "Ship"]);
    assert_eq!(stage(&plan, "Unit").needs, ["Build"]);
    assert_eq!(stage(&plan, "Lint").needs, ["Build"]);
    assert_eq!(stage(&plan, "Audit").needs, ["Lint"]);
    assert_eq!(stage(&plan, "Ship").needs, ["Audit", "Unit"]);
    let group = stage(&plan, "Unit").parallel.clone();
    assert!(group.as_deref().is_some_and(|p| p.starts_with("parallel")));
    assert_eq!(stage(&plan, "Audit").parallel, group);
    assert_eq!(stage(&plan, "Audit").group, ["Checks"]);
}

#[test]
fn grouping_stages_pass_owner_environment_runtime_when_and_gates_down() {
    let plan = plan_with(
        &[(
            "Ottofile",
            "environments { prod { settings { HOST = 'example.com' } secrets { TOKEN } } }\n\
             stage('Build') { steps { sh 'b' } }\n\
             stage {\n\
               name = 'Deploy'  owner = 'ops'  environment -> prod\n\
               runtime { docker { image = 'alpine' } }\n\
               when { branch == 'main' }\n\
               gates { enter { input 'Go?' }  exit { webhook { description = 'done' } } }\n\
               stage('Staging') { steps { sh 'stage' } }\n\
               stage('Production') { owner = 'ops-prod'  when { tag != '' }  steps { sh 'prod' } }\n\
             }\n",
        )],
        &on_branch("main"),
    );
    assert_eq!(ids(&plan), ["Build", "Staging", "Production"]);
    let staging = stage(&plan, "Staging");
    assert_eq!(staging.group, ["Deploy"]);
    assert_eq!(staging.owner.as_deref(), Some("ops"));
    assert_eq!(staging.environment.as_deref(), Some("prod"));
    assert_eq!(staging.secrets, ["TOKEN"]);
    assert_eq!(staging.runtime.image.as_deref(), Some("alpine"));
    assert_eq!(
        staging.when.as_ref().map(|w| w.text.as_str()),
        Some("branch == 'main'")
    );
    assert!(
        matches!(staging.gates.enter.as_slice(), [Gate::Input { message, .. }] if message == "Go?")
    );
    assert!(staging.gates.exit.is_empty());
    let production = stage(&plan, "Production");
    assert_eq!(production.owner.as_deref(), Some("ops-prod"));
    assert_eq!(production.environment.as_deref(), Some("prod"));
    assert_eq!(
        production.when.as_ref().map(|w| w.text.as_str()),
        Some("branch == 'main' && tag != ''")
    );
    assert!(production.gates.enter.is_empty());
    assert!(matches!(
        production.gates.exit.as_slice(),
        [Gate::Webhook { .. }]
    ));
    assert_eq!(production.needs, ["Staging"]);
    assert_eq!(production.handoffs_from, ["ops"]);
    assert_eq!(plan.body.environments.keys().collect::<Vec<_>>(), ["prod"]);
}

const BUILD_BLUEPRINT: &str = "blueprint {\n\
    vars { target { type string default 'debug' }  who { type string } }\n\
    stages {\n\
      stage { name = concat('Build ', vars.who)  steps { sh concat('make ', vars.target) } }\n\
      stage { name = concat('Check ', vars.who)  steps { sh 'make check' } }\n\
    }\n\
  }\n";

#[test]
fn blueprint_from_a_relative_file_with_and_without_extension() {
    let plan = plan_with(
        &[
            (
                "Ottofile",
                "from './ci/build.otto' { who = 'api'  target = 'release' }\n\
                 from './ci/build' { who = 'web' }\n",
            ),
            ("ci/build.otto", BUILD_BLUEPRINT),
        ],
        &Facts::default(),
    );
    assert_eq!(
        ids(&plan),
        ["Build api", "Check api", "Build web", "Check web"]
    );
    assert_eq!(
        stage(&plan, "Build api").steps[0].args,
        [json!("make release")]
    );
    assert_eq!(
        stage(&plan, "Build web").steps[0].args,
        [json!("make debug")]
    );
    assert_eq!(stage(&plan, "Build web").needs, ["Check api"]);
    assert_eq!(
        stage(&plan, "Check web").blueprint,
        Some(BlueprintRef {
            name: "build".into(),
            library: "ci/build.otto".into()
        })
    );
}

#[test]
fn blueprints_from_the_stdlib_take_vars() {
    let plan = plan_one(
        "use { stdlib }\n\
         from 'cargo' { profile = 'release' }\n\
         from 'npm' { prefix = 'web: '  test = 'npm run test:ci' }\n",
    );
    assert_eq!(
        ids(&plan),
        ["Build", "Test", "web: Install", "web: Build", "web: Test"]
    );
    let build = stage(&plan, "Build");
    assert_eq!(
        build.steps[0].args,
        [json!(
            "cargo build --all-targets --profile release --workspace"
        )]
    );
    assert_eq!(build.caches[0].name, "cargo-target");
    assert!(build.caches[0].defined_here);
    assert!(!stage(&plan, "Test").caches[0].defined_here);
    assert_eq!(
        stage(&plan, "web: Test").steps[1].args,
        [json!("npm run test:ci")]
    );
    assert_eq!(
        build.blueprint,
        Some(BlueprintRef {
            name: "cargo".into(),
            library: "stdlib".into()
        })
    );
    assert_eq!(plan.body.libraries.len(), 1);
    assert_eq!(plan.body.libraries[0].name, "stdlib");
    assert!(plan.body.libraries[0].digest.starts_with("sha256:"));
}

#[test]
fn every_stdlib_blueprint_plans_with_its_defaults() {
    for name in [
        "cargo", "go", "gradle", "make", "maven", "npm", "python", "rails",
    ] {
        let plan = plan_one(&format!("use {{ stdlib }}\nfrom '{name}'\n"));
        assert!(plan.body.stages.len() >= 2, "{name}");
        assert!(
            plan.body.stages.iter().all(|s| !s.steps.is_empty()),
            "{name}"
        );
    }
}

#[test]
fn stdlib_blueprints_cache_download_caches_in_the_workspace_never_node_modules_or_a_venv() {
    for (name, path, key) in [
        ("npm", ".npm/", "package-lock.json"),
        ("python", ".cache/pip/", "requirements.txt"),
        ("go", ".cache/go/", "go.sum"),
        ("maven", ".cache/maven/", "pom.xml"),
        ("gradle", ".cache/gradle/caches/modules-2/", "build.gradle"),
        ("rails", "vendor/bundle/", "Gemfile.lock"),
        ("cargo", "target/", "Cargo.lock"),
    ] {
        let plan = plan_one(&format!("use {{ stdlib }}\nfrom '{name}'\n"));
        let defined: Vec<_> = plan
            .body
            .stages
            .iter()
            .flat_map(|s| &s.caches)
            .filter(|c| c.defined_here)
            .collect();
        assert_eq!(defined.len(), 1, "{name}: one cache, defined once");
        assert_eq!(defined[0].paths[0], path, "{name}");
        assert_eq!(defined[0].key_files[0], key, "{name}");
        // Every later stage restores it.
        assert!(
            plan.body.stages.iter().all(|s| s.caches.len() == 1),
            "{name}"
        );
        let text = serde_json::to_string(&plan.body).unwrap();
        assert!(!text.contains("node_modules/"), "{name}");
        assert!(!text.contains("paths\":[\".venv"), "{name}");
    }
    // A venv is never restored: every stage that runs in one creates it first.
    let plan = plan_one("use { stdlib }\nfrom 'python'\n");
    for stage in &plan.body.stages {
        assert_eq!(
            stage.steps[0].args,
            [json!("python3 -m venv .venv")],
            "{}",
            stage.id
        );
    }
    let plan = plan_one("use { stdlib }\nfrom 'npm'\n");
    assert_eq!(
        stage(&plan, "Test").steps[0].args,
        [json!(
            "npm ci --cache .npm --prefer-offline --no-audit --no-fund"
        )]
    );
}

/// The documented library digest framing, written out independently of the planner.
fn framed_digest(files: &[(&str, &str)]) -> String {
    let mut sorted = files.to_vec();
    sorted.sort();
    let mut h = Sha256::new();
    for (path, text) in sorted {
        h.update((path.len() as u64).to_be_bytes());
        h.update(path.as_bytes());
        h.update((text.len() as u64).to_be_bytes());
        h.update(text.as_bytes());
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

const ALPHA: &str =
    "blueprint { name = 'alpha'  stages { stage('Alpha') { steps { sh 'a' } } } }\n";
const BETA: &str = "blueprint { stages { stage('Beta') { steps { sh 'b' } } } }\n";

#[test]
fn use_of_a_directory_loads_all_its_otto_files() {
    let plan = plan_with(
        &[
            ("Ottofile", "use { './lib' }\nfrom 'alpha'\nfrom 'b'\n"),
            ("lib/a.otto", ALPHA),
            ("lib/b.otto", BETA),
            ("lib/README.md", "not a library file"),
        ],
        &Facts::default(),
    );
    assert_eq!(ids(&plan), ["Alpha", "Beta"]);
    assert_eq!(plan.body.libraries.len(), 1);
    assert_eq!(plan.body.libraries[0].name, "lib");
    assert_eq!(
        plan.body.libraries[0].digest,
        framed_digest(&[("a.otto", ALPHA), ("b.otto", BETA)])
    );
    let sources: Vec<&str> = plan
        .provenance
        .sources
        .iter()
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(sources, ["Ottofile", "lib/a.otto", "lib/b.otto"]);
}

#[test]
fn a_pinned_external_library_is_read_from_the_library_cache() {
    let digest = framed_digest(&[("deploy.otto", ALPHA)]);
    let hex = digest.trim_start_matches("sha256:");
    let cached = format!(".otto/libs/sha256-{hex}/deploy.otto");
    let plan = plan_with(
        &[
            (
                "Ottofile",
                &format!("use {{ 'https://example.com/ops.git' sha256 '{hex}' }}\nfrom 'alpha'\n"),
            ),
            (&cached, ALPHA),
        ],
        &Facts::default(),
    );
    assert_eq!(ids(&plan), ["Alpha"]);
    assert_eq!(plan.body.libraries[0].name, "https://example.com/ops.git");
    assert_eq!(plan.body.libraries[0].digest, digest);
    assert_eq!(
        stage(&plan, "Alpha")
            .blueprint
            .as_ref()
            .map(|b| b.library.as_str()),
        Some("https://example.com/ops.git")
    );
}

#[test]
fn a_library_pinned_to_a_commit_is_planned_from_the_files_the_caller_fetched() {
    let digest = framed_digest(&[("deploy.otto", ALPHA), ("more.otto", BETA)]);
    let hex = digest.trim_start_matches("sha256:");
    let commit = "89abcdef".repeat(5);
    let ottofile = format!(
        "use {{ 'file:///libs/ops.git' commit '{commit}' sha256 '{hex}' }}\nfrom 'alpha'\n"
    );
    let repo = otto_pipeline::MemSource::new().with("/repo/Ottofile", ottofile.as_str());
    let plan_of = |libraries: &otto_pipeline::Libraries| {
        otto_pipeline::plan_with_libraries(
            &repo,
            std::path::Path::new("/repo"),
            &Facts::default(),
            &otto_pipeline::StepCatalog::builtins(),
            libraries,
        )
    };
    // Not given: the planner names what to fetch, and reads nothing anywhere else.
    let failed = plan_of(&otto_pipeline::Libraries::new()).unwrap_err();
    let pin = otto_pipeline::LibraryPin {
        location: "file:///libs/ops.git".into(),
        commit: commit.clone(),
    };
    assert_eq!(failed.wanted, std::slice::from_ref(&pin));
    // Given, with a subdirectory the digest does not cover and a `use` inside the library
    // that stays inside it.
    let mut libraries = otto_pipeline::Libraries::new();
    libraries.insert(
        pin.clone(),
        otto_pipeline::MemSource::new()
            .with("deploy.otto", ALPHA)
            .with("more.otto", BETA)
            .with("sub/ignored.otto", "this is not read"),
    );
    let plan = plan_of(&libraries).unwrap_or_else(|f| panic!("{f}")).plan;
    assert_eq!(ids(&plan), ["Alpha"]);
    assert_eq!(plan.body.libraries[0].name, "file:///libs/ops.git");
    assert_eq!(plan.body.libraries[0].digest, digest);
    // What the caller could not fetch is reported at the `use`, and not asked for again.
    libraries.refuse(pin.clone(), "the repository has no such commit");
    let failed = plan_of(&libraries).unwrap_err();
    assert!(failed.wanted.is_empty());
    assert_eq!(
        failed.diagnostics[0].message,
        format!(
            "external library file:///libs/ops.git at commit {commit} cannot be had: the repository has no such commit"
        )
    );
    // Other files than pinned: refused, naming the commit that holds them.
    libraries.insert(
        pin,
        otto_pipeline::MemSource::new().with("deploy.otto", BETA),
    );
    let failed = plan_of(&libraries).unwrap_err();
    assert!(failed.wanted.is_empty());
    let d = &failed.diagnostics[0];
    assert_eq!(d.message, "pinned digest does not match", "{failed}");
    assert!(
        d.label
            .as_deref()
            .unwrap_or("")
            .starts_with(&format!("commit {commit} holds sha256:")),
        "{failed}"
    );
}

#[test]
fn a_failing_when_skips_the_stage_but_dependents_still_wait_for_it() {
    let plan = plan_with(
        &[(
            "Ottofile",
            "stage('Docs') { when { branch == 'docs' } steps { sh 'd' } }\n\
             stage('After') { steps { sh 'a' } }\n",
        )],
        &on_branch("main"),
    );
    assert!(stage(&plan, "Docs").skipped);
    assert!(!stage(&plan, "After").skipped);
    assert_eq!(stage(&plan, "After").needs, ["Docs"]);
}

#[test]
fn runtime_from_an_earlier_stage_adds_a_dependency() {
    let plan = plan_one(
        "stage('Build') { steps { sh 'b' } }\n\
         stage('Docs') { steps { sh 'd' } }\n\
         stage('Test') { runtime { from 'Build' } steps { sh 't' } }\n",
    );
    let test = stage(&plan, "Test");
    assert_eq!(test.needs, ["Build", "Docs"]);
    assert_eq!(test.runtime.from.as_deref(), Some("Build"));
}

#[test]
fn top_level_steps_form_one_stage() {
    let plan = plan_one("steps { sh 'make' echo 'done' }\n");
    assert_eq!(plan.body.stages.len(), 1);
    assert_eq!(plan.body.stages[0].steps.len(), 2);
}

#[test]
fn too_many_stages_is_an_error_not_a_hang() {
    let failed = fail_one(
        "each(1,2,3,4,5,6,7,8,9,10) { each(1,2,3,4,5,6,7,8,9,10) { each(1,2,3,4,5,6,7,8,9,10) {\n\
         each(1,2,3,4,5,6,7,8,9,10) { each(1,2,3,4,5,6,7,8,9,10) { stage { steps { sh 'x' } } } } } } }\n",
    );
    assert!(
        failed
            .diagnostics
            .iter()
            .any(|d| d.message == "the pipeline expands to more than 50000 stages"),
        "{failed}"
    );
}

#[test]
fn blueprints_in_one_library_see_each_other_by_name() {
    let plan = plan_with(
        &[
            ("Ottofile", "use { './lib' }\nfrom 'both'\n"),
            ("lib/a.otto", ALPHA),
            (
                "lib/both.otto",
                "blueprint { stages { from 'alpha'  stage('After') { steps { sh 'z' } } } }\n",
            ),
        ],
        &Facts::default(),
    );
    assert_eq!(ids(&plan), ["Alpha", "After"]);
    assert_eq!(
        stage(&plan, "Alpha")
            .blueprint
            .as_ref()
            .map(|b| b.name.as_str()),
        Some("alpha")
    );
}

#[test]
fn matrices_that_multiply_out_to_nothing_still_stop() {
    let ten = "1,2,3,4,5,6,7,8,9,10";
    let mut text = String::from("vars { none { type list default [] } }\n");
    for _ in 0..7 {
        text.push_str(&format!("each({ten}) {{\n"));
    }
    text.push_str("each(vars.none) { stage { steps { sh 'x' } } }\n");
    text.push_str(&"}\n".repeat(7));
    let failed = fail_one(&text);
    assert!(
        failed
            .diagnostics
            .iter()
            .any(|d| d.message == "the pipeline expands to more than 1000000 items"),
        "{failed}"
    );
}
