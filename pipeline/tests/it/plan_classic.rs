//! The original Otto examples' spellings load as synonyms of today's forms: the same plan
//! (same digest) as the form written today, or the same problems reported.

use std::path::Path;

use crate::plan_support::{assert_diag, fail_with, on_branch, plan_with, stage};
use otto_pipeline::plan::{Gate, Outcome};
use otto_pipeline::{Facts, FsSource, StepCatalog, explain, plan};

/// Plans two single-file repositories and asserts they give the same plan.
fn same_plan(classic: &[(&str, &str)], today: &[(&str, &str)], facts: &Facts) {
    let a = plan_with(classic, facts);
    let b = plan_with(today, facts);
    assert_eq!(
        explain::human(&a),
        explain::human(&b),
        "the classic spelling plans differently"
    );
    assert_eq!(a.digest(), b.digest());
}

#[test]
fn type_boolean_is_bool() {
    let classic = "blueprint { name = 'b' vars { deploy { type boolean  default true } } stages { stage('D') { when { vars.deploy } steps { sh 'x' } } } }\nfrom 'b' { deploy = false }\n";
    let today = &classic.replace("boolean", "bool");
    same_plan(
        &[("Ottofile", classic)],
        &[("Ottofile", today)],
        &Facts::default(),
    );
    let plan = plan_with(&[("Ottofile", classic)], &Facts::default());
    assert!(stage(&plan, "D").skipped);
}

#[test]
fn gates_in_feedback_and_before_are_exit_and_enter_gates() {
    let classic = "stage('Ship') {\n  before { branch == 'main'  input 'Sure?' }\n  feedback { input 'Looks good?'  webhook { description = 'health'  timeout = '30m' } }\n  steps { sh './ship' }\n}\n";
    let today = "stage('Ship') {\n  gates { enter { branch == 'main'  input 'Sure?' }\n    exit { input 'Looks good?'  webhook { description = 'health'  timeout = '30m' } } }\n  steps { sh './ship' }\n}\n";
    same_plan(
        &[("Ottofile", classic)],
        &[("Ottofile", today)],
        &on_branch("main"),
    );
    let plan = plan_with(&[("Ottofile", classic)], &on_branch("main"));
    let gates = &stage(&plan, "Ship").gates;
    assert!(matches!(gates.enter[1], Gate::Input { .. }));
    assert!(matches!(gates.exit[1], Gate::Webhook { .. }));
}

#[test]
fn feedback_and_before_keep_the_gate_rules() {
    let failed = fail_with(
        &[(
            "Ottofile",
            "stage('S') {\n  feedback { branch == 'main' }\n  before { webhook { description = 'x' } }\n  steps { sh 'x' } }\n",
        )],
        &Facts::default(),
    );
    assert_diag(
        &failed,
        "Ottofile:2:14",
        "conditions are not allowed in an exit gate",
    );
    assert_diag(
        &failed,
        "Ottofile:3:12",
        "a `webhook` gate belongs in `exit`",
    );
}

#[test]
fn cache_from_reuses_a_cache() {
    let classic = "stage('A') { cache { gems = ['vendor/'] } steps { sh 'x' } }\nstage('B') { cache { from 'gems' } steps { sh 'y' } }\n";
    let today = &classic.replace("from 'gems'", "use gems");
    same_plan(
        &[("Ottofile", classic)],
        &[("Ottofile", today)],
        &Facts::default(),
    );
    let failed = fail_with(
        &[(
            "Ottofile",
            "stage('B') { cache { from 'gemz' } steps { sh 'y' } }\n",
        )],
        &Facts::default(),
    );
    assert!(failed.to_string().contains("gemz"), "{failed}");
}

#[test]
fn when_from_reuses_another_stages_conditions() {
    let file = "stage('Pre') { when { branch == 'main' } steps { sh 'a' } }\nstage('Prod') { when { from 'Pre'  tag != '' } steps { sh 'b' } }\n";
    let plan = plan_with(&[("Ottofile", file)], &on_branch("dev"));
    let prod = stage(&plan, "Prod");
    let when = prod.when.as_ref().expect("a when");
    assert_eq!(when.text, "tag != '' && branch == 'main'");
    assert_eq!(when.result, Outcome::Fail);
    assert!(prod.skipped, "Pre's failing condition skips Prod");
    let on_main = Facts {
        branch: Some("main".into()),
        tag: Some("v1".into()),
        ..Facts::default()
    };
    let plan = plan_with(&[("Ottofile", file)], &on_main);
    assert!(!stage(&plan, "Prod").skipped);
    // No dependency is added: reusing conditions is not ordering.
    assert_eq!(stage(&plan, "Prod").needs, ["Pre"]);
}

#[test]
fn when_from_chains_and_refuses_circles_and_unknown_stages() {
    let chain = "stage('A') { when { branch == 'main' } steps { sh 'a' } }\nstage('B') { when { from 'A' } steps { sh 'b' } }\nstage('C') { when { from 'B' } steps { sh 'c' } }\n";
    let plan = plan_with(&[("Ottofile", chain)], &on_branch("dev"));
    assert!(stage(&plan, "C").skipped);
    let circle = "stage('A') { when { from 'B' } steps { sh 'a' } }\nstage('B') { when { from 'A' } steps { sh 'b' } }\nstage('C') { when { from 'Prd' } steps { sh 'c' } }\nstage('Prod') { when { from 'Prod' } steps { sh 'd' } }\n";
    let failed = fail_with(&[("Ottofile", circle)], &Facts::default());
    let text = failed.to_string();
    assert!(
        text.contains("when from 'A' goes round in a circle")
            || text.contains("when from 'B' goes round in a circle"),
        "{text}"
    );
    assert_diag(
        &failed,
        "Ottofile:4:29",
        "when from 'Prod' goes round in a circle",
    );
    let unknown = assert_diag(&failed, "Ottofile:3:26", "unknown stage 'Prd' in when from");
    assert_eq!(unknown.hint.as_deref(), Some("did you mean 'Prod'?"));
}

#[test]
fn a_long_chain_of_when_from_does_not_exhaust_the_stack() {
    let mut file = String::from("stage('s0') { when { branch == 'main' } steps { sh 'x' } }\n");
    for i in 1..20_000 {
        file.push_str(&format!(
            "stage('s{i}') {{ when {{ from 's{}' }} steps {{ sh 'x' }} }}\n",
            i - 1
        ));
    }
    let plan = plan_with(&[("Ottofile", &file)], &on_branch("dev"));
    assert!(stage(&plan, "s19999").skipped);
}

#[test]
fn a_bare_use_path_resolves_in_the_repository_when_it_exists() {
    let blueprint = "blueprint { stages { stage('Gem') { steps { sh 'rake build' } } } }\n";
    let classic = [
        ("Ottofile", "use { 'blueprints/rubygem' }\nfrom 'rubygem'\n"),
        ("blueprints/rubygem.otto", blueprint),
    ];
    let today = [
        (
            "Ottofile",
            "use { './blueprints/rubygem' }\nfrom 'rubygem'\n",
        ),
        ("blueprints/rubygem.otto", blueprint),
    ];
    same_plan(&classic, &today, &Facts::default());
    // `from` with the same bare path names the file.
    let from_path = [
        ("Ottofile", "from 'blueprints/rubygem'\n"),
        ("blueprints/rubygem.otto", blueprint),
    ];
    let plan = plan_with(&from_path, &Facts::default());
    assert_eq!(plan.body.stages[0].name, "Gem");
}

#[test]
fn a_bare_use_path_that_does_not_exist_must_be_pinned() {
    let failed = fail_with(
        &[(
            "Ottofile",
            "use { 'blueprints/rubygem' }\nstage('S') { steps { sh 'x' } }\n",
        )],
        &Facts::default(),
    );
    let d = assert_diag(
        &failed,
        "Ottofile:1:7",
        "external library must be pinned: add sha256 '<digest>'",
    );
    assert!(
        d.hint
            .as_deref()
            .unwrap()
            .contains("'./blueprints/rubygem'")
    );
    // A location that cannot be a path is refused by the parser, as before.
    let failed = fail_with(
        &[(
            "Ottofile",
            "use { 'https://example.com/lib.git' }\nstage('S') { steps { sh 'x' } }\n",
        )],
        &Facts::default(),
    );
    assert_diag(
        &failed,
        "Ottofile:1:7",
        "external library must be pinned: add sha256 '<digest>'",
    );
    // Nor may a bare path climb out of the repository.
    let failed = fail_with(
        &[(
            "Ottofile",
            "use { 'lib/../../etc' }\nstage('S') { steps { sh 'x' } }\n",
        )],
        &Facts::default(),
    );
    assert_diag(
        &failed,
        "Ottofile:1:7",
        "external library must be pinned: add sha256 '<digest>'",
    );
}

const SLACK: &str = "step {\n  vars {\n    text    { type string }\n    channel { type string  default '#general' }\n  }\n  steps { echo concat(vars.channel, ': ', vars.text) }\n}\n";

fn echoed(plan: &otto_pipeline::Plan, stage_name: &str) -> Vec<String> {
    stage(plan, stage_name)
        .steps
        .iter()
        .map(|s| format!("{} {}", s.symbol, s.args[0]))
        .collect()
}

#[test]
fn a_library_step_expands_with_arguments_configure_and_defaults() {
    let files = [
        (
            "Ottofile",
            "use { 'common/slack' }\nconfigure { slack { channel = '#otto' } }\nstage('S') { steps { slack 'one'  slack 'two', channel: '#alerts'  sh 'x' } }\n",
        ),
        ("common/slack/slack.otto", SLACK),
    ];
    let plan = plan_with(&files, &Facts::default());
    assert_eq!(
        echoed(&plan, "S"),
        ["echo \"#otto: one\"", "echo \"#alerts: two\"", "sh \"x\""]
    );
    // Without configure, the default.
    let files = [
        (
            "Ottofile",
            "use { './common/slack' }\nstage('S') { notify { complete { slack 'done' } } steps { sh 'x' } }\n",
        ),
        ("common/slack/slack.otto", SLACK),
    ];
    let plan = plan_with(&files, &Facts::default());
    let complete = &stage(&plan, "S").notify.complete;
    assert_eq!(complete[0].args[0], "#general: done");
}

#[test]
fn a_library_step_checks_its_arguments() {
    let files = [
        (
            "Ottofile",
            "use { './slack.otto' }\nstage('S') { steps {\n  slack\n  slack 'a', 'b', 'c'\n  slack 'a', chanel: '#x'\n  slack 3\n} }\n",
        ),
        ("slack.otto", SLACK),
    ];
    let failed = fail_with(&files, &Facts::default());
    let text = failed.to_string();
    assert!(
        text.contains("var 'text'"),
        "missing text is reported:\n{text}"
    );
    assert_diag(
        &failed,
        "Ottofile:4:19",
        "'slack' takes 2 positional arguments, got 3",
    );
    let d = assert_diag(&failed, "Ottofile:5:14", "step 'slack' has no var 'chanel'");
    assert_eq!(d.hint.as_deref(), Some("did you mean 'channel'?"));
    assert!(
        text.contains("var 'text' of step 'slack' is a string, not a number"),
        "{text}"
    );
}

#[test]
fn library_steps_that_use_themselves_or_multiply_are_refused() {
    let files = [
        (
            "Ottofile",
            "use { './lib.otto' }\nstage('S') { steps { a } }\n",
        ),
        (
            "lib.otto",
            "step { name = 'a' steps { b } }\nstep { name = 'b' steps { a } }\n",
        ),
    ];
    let failed = fail_with(&files, &Facts::default());
    assert!(
        failed.to_string().contains("step 'a' uses itself"),
        "{failed}"
    );

    // Ten levels, each using the one below ten times: 10^10 steps unless bounded.
    let mut lib = String::from("step { name = 's0' steps { sh 'x' } }\n");
    for i in 1..10 {
        let calls = format!("s{} ", i - 1).repeat(10);
        lib.push_str(&format!("step {{ name = 's{i}' steps {{ {calls} }} }}\n"));
    }
    let files = [
        (
            "Ottofile",
            "use { './lib.otto' }\nstage('S') { steps { s9 } }\n",
        ),
        ("lib.otto", lib.as_str()),
    ];
    let failed = fail_with(&files, &Facts::default());
    assert!(
        failed
            .to_string()
            .contains("library steps expand to more than 100000 steps"),
        "{failed}"
    );
}

#[test]
fn the_classic_examples_plan() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let classic = plan(
        &FsSource::new(),
        &examples.join("classic"),
        &on_branch("main"),
        &StepCatalog::builtins(),
    )
    .unwrap_or_else(|f| panic!("{f}"))
    .plan;
    let pre = stage(&classic, "Pre-production");
    assert!(matches!(pre.gates.exit[..], [Gate::Input { .. }]));
    assert_eq!(
        pre.notify.success[0].args[0],
        "slack #otto: Pushed to preprod"
    );
    let prod = stage(&classic, "Production");
    assert!(matches!(prod.gates.enter[..], [Gate::Input { .. }]));
    assert!(matches!(prod.gates.exit[..], [Gate::Webhook { .. }]));
    assert_eq!(prod.when.as_ref().unwrap().text, "branch == 'main'");
    assert_eq!(stage(&classic, "Test").caches[0].name, "gems");

    let gem = plan(
        &FsSource::new(),
        &examples.join("rubygem"),
        &Facts::default(),
        &StepCatalog::builtins(),
    )
    .unwrap_or_else(|f| panic!("{f}"))
    .plan;
    assert!(stage(&gem, "Deploy").skipped);
}
