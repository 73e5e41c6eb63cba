//! Conditions are three-valued over the facts; handoff points follow owners.

use crate::plan_support::{on_branch, plan_one, plan_with, stage};
use otto_pipeline::plan::{Duration, Gate, Outcome};
use otto_pipeline::{Facts, explain};

fn when_result(cond: &str, facts: &Facts) -> Outcome {
    let text = format!(
        "vars {{ branches = ['main', 'release'] }}\nstage('S') {{ when {{ {cond} }} steps {{ sh 'x' }} }}\n"
    );
    let plan = plan_with(&[("Ottofile", &text)], facts);
    let when = stage(&plan, "S").when.clone().expect("a when");
    assert_eq!(stage(&plan, "S").skipped, when.result == Outcome::Fail);
    when.result
}

fn facts(branch: Option<&str>, tag: Option<&str>) -> Facts {
    Facts {
        branch: branch.map(Into::into),
        tag: tag.map(Into::into),
        ..Facts::default()
    }
}

#[test]
fn given_facts_pass_or_fail_and_missing_facts_are_unknown() {
    assert_eq!(
        when_result("branch == 'main'", &on_branch("main")),
        Outcome::Pass
    );
    assert_eq!(
        when_result("branch == 'main'", &on_branch("dev")),
        Outcome::Fail
    );
    assert_eq!(
        when_result("branch == 'main'", &Facts::default()),
        Outcome::Unknown
    );
    assert_eq!(
        when_result("branch != 'main'", &on_branch("dev")),
        Outcome::Pass
    );
    assert_eq!(when_result("true", &Facts::default()), Outcome::Pass);
}

#[test]
fn and_or_not_follow_kleene_logic() {
    let main_untagged = facts(Some("main"), None);
    let dev_untagged = facts(Some("dev"), None);
    // pass || unknown = pass; fail || unknown = unknown
    assert_eq!(
        when_result("branch == 'main' || tag != ''", &main_untagged),
        Outcome::Pass
    );
    assert_eq!(
        when_result("branch == 'main' || tag != ''", &dev_untagged),
        Outcome::Unknown
    );
    // pass && unknown = unknown; fail && unknown = fail
    assert_eq!(
        when_result("branch == 'main' && tag != ''", &main_untagged),
        Outcome::Unknown
    );
    assert_eq!(
        when_result("branch == 'main' && tag != ''", &dev_untagged),
        Outcome::Fail
    );
    // !unknown = unknown; !pass = fail
    assert_eq!(
        when_result("!(tag == 'v1')", &main_untagged),
        Outcome::Unknown
    );
    assert_eq!(
        when_result("!(branch == 'main')", &main_untagged),
        Outcome::Fail
    );
    // Several lines are ANDed.
    assert_eq!(
        when_result(
            "branch == 'main'  tag == 'v1'",
            &facts(Some("main"), Some("v1"))
        ),
        Outcome::Pass
    );
    assert_eq!(
        when_result(
            "branch == 'main'  tag == 'v1'",
            &facts(Some("main"), Some("v2"))
        ),
        Outcome::Fail
    );
}

#[test]
fn in_checks_membership_in_literal_and_var_lists() {
    assert_eq!(
        when_result("branch in ['main', 'release']", &on_branch("release")),
        Outcome::Pass
    );
    assert_eq!(
        when_result("branch in ['main', 'release']", &on_branch("dev")),
        Outcome::Fail
    );
    assert_eq!(
        when_result("branch in vars.branches", &on_branch("main")),
        Outcome::Pass
    );
    assert_eq!(
        when_result("branch in vars.branches", &Facts::default()),
        Outcome::Unknown
    );
    assert_eq!(
        when_result("'x' in vars.branches", &Facts::default()),
        Outcome::Fail
    );
}

#[test]
fn condition_text_is_canonical_with_values_substituted() {
    let plan = plan_one(
        "vars { channel = 'nightly' }\n\
         stage('S') { when { vars.channel != 'dev'  (branch == 'main' || tag != '') } steps { sh 'x' } }\n",
    );
    let when = stage(&plan, "S").when.clone().unwrap();
    assert_eq!(
        when.text,
        "'nightly' != 'dev' && (branch == 'main' || tag != '')"
    );
    assert_eq!(when.result, Outcome::Unknown);
}

#[test]
fn a_failing_enter_condition_is_kept_and_does_not_skip_the_stage() {
    let plan = plan_with(
        &[(
            "Ottofile",
            "stage('Deploy') {\n\
               gates { enter { branch == 'main'  input 'Ship it?', approvers: ['ops-leads'], timeout: '90m' } }\n\
               steps { sh 'deploy' }\n\
             }\n",
        )],
        &on_branch("dev"),
    );
    let deploy = stage(&plan, "Deploy");
    assert!(!deploy.skipped);
    assert_eq!(
        deploy.gates.enter,
        [
            Gate::Condition {
                text: "branch == 'main'".into(),
                result: Outcome::Fail
            },
            Gate::Input {
                message: "Ship it?".into(),
                approvers: vec!["ops-leads".into()],
                timeout: Some(Duration {
                    text: "1h30m".into(),
                    seconds: 5400
                }),
            },
        ]
    );
    let text = explain::human(&plan);
    assert!(
        text.contains("branch == 'main'  ✗ fails (branch=dev): the run will stop here"),
        "{text}"
    );
}

#[test]
fn exit_gates_webhook_and_poll_are_recorded() {
    let plan = plan_one(
        "stage('Deploy') {\n\
           gates { exit {\n\
             webhook { description = 'health check calls back'  timeout = '30m' }\n\
             poll { url = 'https://example.com/health'  every = '10s'  timeout = '5m' }\n\
           } }\n\
           steps { sh 'deploy' }\n\
         }\n",
    );
    let exit = &stage(&plan, "Deploy").gates.exit;
    assert!(
        matches!(&exit[0], Gate::Webhook { description: Some(d), timeout: Some(t) }
        if d == "health check calls back" && t.seconds == 1800)
    );
    assert!(
        matches!(&exit[1], Gate::Poll { url: Some(u), command: None, every: Some(e), .. }
        if u == "https://example.com/health" && e.seconds == 10)
    );
}

const OWNERS: &str = "stage('Build') { steps { sh 'b' } }\n\
    stage('Package') { steps { sh 'p' } }\n\
    parallel {\n\
      stage('Scan') { owner = 'security'  steps { sh 's' } }\n\
      stage('Docs') { steps { sh 'd' } }\n\
    }\n\
    stage('Deploy') { owner = 'ops'  steps { sh 'd' } }\n\
    stage('Verify') { owner = 'ops'  steps { sh 'v' } }\n\
    stage('Report') { steps { sh 'r' } }\n";

#[test]
fn owner_changes_are_handoff_points() {
    let plan = plan_one(OWNERS);
    let from = |id: &str| stage(&plan, id).handoffs_from.clone();
    assert!(
        from("Package").is_empty(),
        "same owner (origin): no handoff"
    );
    assert_eq!(from("Scan"), ["origin"]);
    assert!(from("Docs").is_empty());
    assert_eq!(from("Deploy"), ["origin", "security"]);
    assert!(from("Verify").is_empty(), "ops to ops: no handoff");
    assert_eq!(from("Report"), ["ops"]);
    let points: Vec<&str> = plan.handoffs().map(|s| s.id.as_str()).collect();
    assert_eq!(points, ["Scan", "Deploy", "Report"]);
    let text = explain::human(&plan);
    assert!(
        text.contains("origin, security → ops before Deploy"),
        "{text}"
    );
    let dot = explain::dot(&plan);
    assert!(
        dot.contains("\"Docs\" -> \"Deploy\" [style=\"bold,dashed\", label=\"handoff\"];"),
        "{dot}"
    );
    assert!(dot.contains("\"Build\" -> \"Package\";"), "{dot}");
    assert!(dot.contains("subgraph \"cluster_security\""), "{dot}");
}
