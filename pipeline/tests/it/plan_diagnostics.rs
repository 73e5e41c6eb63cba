//! Semantic errors: each points at file:line:column with a precise message.

use std::collections::BTreeMap;

use crate::plan_support::{assert_diag, diag, fail_one, fail_with, plan_with};
use otto_pipeline::Facts;

const PIN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn duplicate_stage_names_point_at_the_second_and_name_the_first() {
    let failed = fail_one(
        "stage('Build') { steps { sh 'a' } }\n\
         stage('Build') { steps { sh 'b' } }\n",
    );
    let d = assert_diag(&failed, "Ottofile:2:7", "duplicate stage name 'Build'");
    assert_eq!(d.hint.as_deref(), Some("first defined at Ottofile:1:7"));
}

#[test]
fn a_matrix_stage_without_it_in_its_name_is_a_duplicate() {
    let failed = fail_one("each('a', 'b') { stage('Test') { steps { sh 'x' } } }\n");
    let d = assert_diag(&failed, "Ottofile:1:24", "duplicate stage name 'Test'");
    assert!(
        d.hint.as_deref().unwrap_or("").contains("use `it`"),
        "{d:?}"
    );
}

#[test]
fn unknown_runtime_from_stage_suggests_the_closest_name() {
    let failed = fail_one(
        "stage('Build') { steps { sh 'a' } }\n\
         stage('Unit') {\n  runtime { from 'Biuld' }\n  steps { sh 'b' }\n}\n",
    );
    let d = assert_diag(
        &failed,
        "Ottofile:3:18",
        "unknown stage 'Biuld' in runtime from",
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean 'Build'?"));
}

#[test]
fn runtime_from_a_later_stage_is_a_cycle_naming_the_path() {
    let failed = fail_one(
        "stage('A') {\n  runtime { from 'B' }\n  steps { sh 'a' }\n}\n\
         stage('B') { steps { sh 'b' } }\n",
    );
    assert_diag(
        &failed,
        "Ottofile:2:18",
        "runtime from 'B' creates a cycle: A → B → A",
    );
}

#[test]
fn runtime_from_itself_is_a_cycle() {
    let failed = fail_one("stage('A') { runtime { from 'A' } steps { sh 'a' } }\n");
    assert_diag(
        &failed,
        "Ottofile:1:29",
        "runtime from 'A' creates a cycle: A → A",
    );
}

#[test]
fn unknown_cache_in_use() {
    let failed = fail_one(
        "stage('Build') { cache { gems = ['vendor/'] } steps { sh 'a' } }\n\
         stage('Test') { cache { use gem } steps { sh 'b' } }\n",
    );
    let d = assert_diag(&failed, "Ottofile:2:29", "unknown cache 'gem'");
    assert_eq!(d.hint.as_deref(), Some("did you mean 'gems'?"));
}

#[test]
fn unknown_environment() {
    let failed = fail_one(
        "environments { staging { settings { HOST = 'x' } } }\n\
         stage('Deploy') {\n  environment -> stagin\n  steps { sh 'a' }\n}\n",
    );
    let d = assert_diag(&failed, "Ottofile:3:18", "unknown environment 'stagin'");
    assert_eq!(d.hint.as_deref(), Some("did you mean 'staging'?"));
}

#[test]
fn unknown_var_suggests_the_declared_one() {
    let failed = fail_one(
        "vars { channel = 'nightly' }\n\
         stage('Build') { steps { sh concat('make ', vars.chanel) } }\n",
    );
    let d = assert_diag(&failed, "Ottofile:2:45", "unknown var 'chanel'");
    assert_eq!(d.hint.as_deref(), Some("did you mean 'vars.channel'?"));
}

#[test]
fn it_outside_each() {
    let failed = fail_one("stage {\n  name = concat('Build ', it)\n  steps { sh 'a' }\n}\n");
    assert_diag(
        &failed,
        "Ottofile:2:27",
        "`it` can only be used inside each(...)",
    );
}

#[test]
fn inline_secret_value_is_refused_and_never_echoed() {
    let failed = fail_one(
        "environments {\n  prod { secrets { TOKEN = 'hunter2' } }\n}\n\
         stage('A') { environment -> prod  steps { sh 'a' } }\n",
    );
    let d = assert_diag(
        &failed,
        "Ottofile:2:20",
        "secret values must not be written in an Ottofile",
    );
    let hint = d.hint.as_deref().unwrap_or("");
    assert!(hint.contains("otto secrets set TOKEN"), "{hint}");
    assert!(!failed.to_string().contains("hunter2"));
    let shown = failed.render();
    assert!(
        !shown.contains("hunter2"),
        "the rendered source line hides the value:\n{shown}"
    );
    assert!(shown.contains("prod { secrets { ****"), "{shown}");
}

#[test]
fn use_cycle_names_the_chain_of_files() {
    let failed = fail_with(
        &[
            (
                "Ottofile",
                "use { './a' }\nstage('A') { steps { sh 'a' } }\n",
            ),
            ("a.otto", "use { './b' }\n"),
            ("b.otto", "use { './a.otto' }\n"),
        ],
        &Facts::default(),
    );
    assert_diag(&failed, "b.otto:1:7", "use cycle: a.otto → b.otto → a.otto");
}

#[test]
fn from_cycle_names_the_chain_of_files() {
    let failed = fail_with(
        &[
            ("Ottofile", "from './a'\n"),
            ("a.otto", "blueprint { stages { from './b' } }\n"),
            ("b.otto", "blueprint {\n  stages { from './a' }\n}\n"),
        ],
        &Facts::default(),
    );
    assert_diag(
        &failed,
        "b.otto:2:17",
        "blueprint cycle: a.otto → b.otto → a.otto",
    );
}

#[test]
fn unknown_step_symbol() {
    let failed = fail_one("stage('A') { steps { shh 'make' } }\n");
    let d = assert_diag(&failed, "Ottofile:1:22", "unknown step 'shh'");
    assert_eq!(d.hint.as_deref(), Some("did you mean 'sh'?"));
}

#[test]
fn bad_step_arguments() {
    let failed = fail_one(
        "stage('A') { steps { archive path: 'dist/' } }\n\
         stage('B') { steps { sh 'a', 'b' } }\n",
    );
    assert_diag(
        &failed,
        "Ottofile:1:22",
        "'archive' needs 'name:' (a string)",
    );
    assert_diag(&failed, "Ottofile:2:30", "'sh' takes 1 argument, got 2");
}

#[test]
fn bad_duration() {
    let failed = fail_one("stage('A') { timeout = '30 minutes' steps { sh 'a' } }\n");
    let d = assert_diag(&failed, "Ottofile:1:24", "bad duration '30 minutes'");
    assert!(d.hint.as_deref().unwrap_or("").contains("'2h30m'"));
}

const SERVICE: &str = "blueprint {\n  name = 'service'\n  vars {\n    service { type string }\n    \
                       image { type string default 'rust' }\n  }\n  \
                       stages { stage { name = vars.service  steps { sh 'make' } } }\n}\n";

#[test]
fn missing_required_blueprint_var() {
    let failed = fail_with(
        &[
            (
                "Ottofile",
                "use { './lib' }\nfrom 'service' { image = 'ruby' }\n",
            ),
            ("lib/service.otto", SERVICE),
        ],
        &Facts::default(),
    );
    let d = assert_diag(
        &failed,
        "Ottofile:2:6",
        "blueprint 'service' needs var 'service'",
    );
    assert!(d.hint.as_deref().unwrap_or("").contains("service = ..."));
}

#[test]
fn wrong_and_unknown_blueprint_var() {
    let failed = fail_with(
        &[
            (
                "Ottofile",
                "use { './lib' }\nfrom 'service' { service = 3  imag = 'x' }\n",
            ),
            ("lib/service.otto", SERVICE),
        ],
        &Facts::default(),
    );
    assert_diag(
        &failed,
        "Ottofile:2:28",
        "var 'service' of blueprint 'service' is a string, not a number",
    );
    let d = assert_diag(
        &failed,
        "Ottofile:2:31",
        "blueprint 'service' has no var 'imag'",
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean 'image'?"));
}

fn with_vars(vars: &[(&str, &str)]) -> Facts {
    Facts {
        vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ..Facts::default()
    }
}

const COUNTED: &str = "vars { count { type number default 1 } }\n\
                       stage('A') { steps { echo concat('n=', vars.count) } }\n";

#[test]
fn wrong_var_type_from_the_command_line() {
    let failed = fail_with(&[("Ottofile", COUNTED)], &with_vars(&[("count", "abc")]));
    let d = assert_diag(
        &failed,
        "Ottofile:1:8",
        "--var count=abc: 'abc' is not a whole number",
    );
    assert_eq!(d.label.as_deref(), Some("declared as a number"));
    // And the right type goes through, typed.
    let plan = plan_with(&[("Ottofile", COUNTED)], &with_vars(&[("count", "7")]));
    assert_eq!(plan.body.facts.vars["count"], serde_json::json!(7));
    assert_eq!(
        plan.body.stages[0].steps[0].args[0],
        serde_json::json!("n=7")
    );
}

#[test]
fn unknown_var_key_from_the_command_line() {
    let failed = fail_with(&[("Ottofile", COUNTED)], &with_vars(&[("cuont", "2")]));
    let d = diag(&failed, "unknown var 'cuont' given with --var");
    assert_eq!(d.span, None);
    assert_eq!(d.hint.as_deref(), Some("did you mean 'count'?"));
}

#[test]
fn pipeline_var_without_value() {
    let failed =
        fail_one("vars { target { type string } }\nstage('A') { steps { sh vars.target } }\n");
    assert_diag(
        &failed,
        "Ottofile:1:8",
        "var target needs a value: pass --var target=...",
    );
}

#[test]
fn stage_with_steps_and_sub_stages() {
    let failed = fail_one(
        "stage('Deploy') {\n  steps { sh 'a' }\n  stage('Inner') { steps { sh 'b' } }\n}\n",
    );
    assert_diag(
        &failed,
        "Ottofile:1:1",
        "a stage cannot have both steps and sub-stages",
    );
}

#[test]
fn external_library_not_in_the_cache() {
    let failed = fail_one(&format!(
        "use {{ 'https://example.com/lib.git' sha256 '{PIN}' }}\nstage('A') {{ steps {{ sh 'a' }} }}\n"
    ));
    assert_diag(
        &failed,
        "Ottofile:1:7",
        "external library https://example.com/lib.git is not in the library cache, and without a commit pin it cannot be fetched",
    );
    assert!(
        failed.wanted.is_empty(),
        "nothing without a commit is fetched"
    );
}

#[test]
fn external_library_pinned_to_a_commit_and_not_given_is_wanted() {
    let commit = "0123abcd".repeat(5);
    let failed = fail_one(&format!(
        "use {{ 'https://example.com/lib.git' commit '{commit}' sha256 '{PIN}' }}\nuse {{ 'https://example.com/lib.git' sha256 '{PIN}' commit '{commit}' }}\nstage('A') {{ steps {{ sh 'a' }} }}\n"
    ));
    let message = format!(
        "external library https://example.com/lib.git at commit {commit} has not been fetched"
    );
    let found: Vec<_> = failed
        .diagnostics
        .iter()
        .filter(|d| d.message == message)
        .collect();
    assert_eq!(
        found.len(),
        2,
        "one for each use, pins in either order: {failed}"
    );
    assert!(
        found[0]
            .hint
            .as_deref()
            .unwrap_or("")
            .contains("the node that starts a run fetches it")
    );
    assert_eq!(failed.wanted.len(), 1, "asked for once");
    assert_eq!(failed.wanted[0].commit, commit);
}

#[test]
fn pinned_digest_mismatch() {
    let cached = format!(".otto/libs/sha256-{PIN}/deploy.otto");
    let failed = fail_with(
        &[
            (
                "Ottofile",
                &format!(
                    "use {{ 'https://e.com/l.git' sha256 '{PIN}' }}\nstage('A') {{ steps {{ sh 'a' }} }}\n"
                ),
            ),
            (
                &cached,
                "blueprint { stages { stage('Deploy') { steps { sh 'x' } } } }\n",
            ),
        ],
        &Facts::default(),
    );
    let d = assert_diag(&failed, "Ottofile:1:36", "pinned digest does not match");
    assert!(
        d.label
            .as_deref()
            .unwrap_or("")
            .starts_with("the library cache holds sha256:")
    );
}

#[test]
fn unknown_blueprint_hints_at_the_stdlib() {
    let failed = fail_one("from 'cargo'\n");
    let d = assert_diag(&failed, "Ottofile:1:6", "unknown blueprint 'cargo'");
    assert_eq!(
        d.hint.as_deref(),
        Some("'cargo' is in the stdlib: add use { stdlib }")
    );
}

#[test]
fn fact_outside_a_condition() {
    let failed = fail_one("stage('A') { steps { sh concat('x', branch) } }\n");
    assert_diag(
        &failed,
        "Ottofile:1:37",
        "the fact `branch` can only be used in conditions",
    );
}

#[test]
fn several_independent_errors_are_reported_together() {
    let failed = fail_one(
        "stage('A') { steps { shh 'a' } }\n\
         stage('B') { timeout = 'soon' steps { sh 'b' } }\n\
         stage('C') { environment -> nowhere steps { sh 'c' } }\n",
    );
    let messages: Vec<&str> = failed
        .diagnostics
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(
        messages,
        [
            "unknown step 'shh'",
            "bad duration 'soon'",
            "unknown environment 'nowhere'"
        ]
    );
}

#[test]
fn a_directory_without_an_ottofile() {
    let failed = fail_with(&[("README", "hello")], &Facts::default());
    assert_eq!(failed.diagnostics.len(), 1);
    assert_eq!(failed.diagnostics[0].message, "no Ottofile in /repo");
}

#[test]
fn a_file_with_no_stages() {
    let failed = fail_one("configure { a = 1 }\n");
    assert_diag(&failed, "Ottofile:1:1", "the Ottofile defines no stages");
}

#[test]
fn an_unknown_environment_given_with_env_is_an_error() {
    let file = "environments { staging { } production { } }\nstage('S') { environment -> staging  steps { sh 'x' } }\n";
    let facts = |env: &str| Facts {
        environment: Some(env.into()),
        ..Facts::default()
    };
    let failed = fail_with(&[("Ottofile", file)], &facts("prodution"));
    let d = diag(&failed, "unknown environment 'prodution' given with --env");
    assert_eq!(d.hint.as_deref(), Some("did you mean 'production'?"));
    let failed = fail_with(
        &[("Ottofile", "stage('S') { steps { sh 'x' } }\n")],
        &facts("staging"),
    );
    let d = diag(&failed, "unknown environment 'staging' given with --env");
    assert_eq!(
        d.hint.as_deref(),
        Some("the Ottofile defines no environments")
    );
    plan_with(&[("Ottofile", file)], &facts("production"));
}
