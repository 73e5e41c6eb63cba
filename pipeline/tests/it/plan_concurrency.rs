//! `concurrency { }` on a pipeline and on a stage: in the plan, its digest and explain;
//! bad group names are refused where they are written, with one line.

use crate::plan_support::{assert_diag, fail_one, plan_one, stage};
use otto_pipeline::plan::{Concurrency, MAX_GROUP_BYTES};

#[test]
fn a_pipeline_and_a_stage_name_their_groups() {
    let plan = plan_one(
        "pipeline {\n  concurrency { group = 'webapp-main' }\n  stage('Build') { steps { sh 'make' } }\n  stage('Deploy') {\n    concurrency { group = 'deploy-production'  cancel_in_progress = true }\n    steps { sh './deploy.sh' }\n  }\n}\n",
    );
    assert_eq!(
        plan.body.concurrency,
        Some(Concurrency {
            group: "webapp-main".into(),
            cancel_in_progress: false
        })
    );
    assert_eq!(stage(&plan, "Build").concurrency, None);
    assert_eq!(
        stage(&plan, "Deploy").concurrency,
        Some(Concurrency {
            group: "deploy-production".into(),
            cancel_in_progress: true
        })
    );
    let human = otto_pipeline::explain::human(&plan);
    assert!(
        human.contains(
            "concurrency: group 'webapp-main' (one run at a time; the others wait their turn)"
        ),
        "{human}"
    );
    assert!(
        human.contains("concurrency: group 'deploy-production' (one running stage at a time; a newer running stage cancels the one in progress)"),
        "{human}"
    );
}

#[test]
fn top_level_concurrency_is_the_pipelines_and_values_may_be_computed() {
    let plan = plan_one(
        "vars { region = 'eu'  replace = true }\nconcurrency { group = concat('deploy-', vars.region)  cancel_in_progress = vars.replace }\neach('a', 'b') { stage { name = concat('Ship ', it)  concurrency { group = upper(it) }  steps { sh 'x' } } }\n",
    );
    assert_eq!(
        plan.body.concurrency,
        Some(Concurrency {
            group: "deploy-eu".into(),
            cancel_in_progress: true
        })
    );
    assert_eq!(
        stage(&plan, "Ship a").concurrency.as_ref().unwrap().group,
        "A"
    );
    assert_eq!(
        stage(&plan, "Ship b").concurrency.as_ref().unwrap().group,
        "B"
    );
}

#[test]
fn a_plan_without_concurrency_keeps_its_bytes_and_the_group_is_in_the_digest() {
    let base = "stage('Build') { steps { sh 'make' } }\n";
    let plan = plan_one(base);
    let bytes = String::from_utf8(plan.canonical_bytes()).unwrap();
    assert!(!bytes.contains("concurrency"), "{bytes}");

    let grouped = |group: &str, cancel: bool| {
        plan_one(&format!(
            "stage('Build') {{ concurrency {{ group = '{group}'  cancel_in_progress = {cancel} }}  steps {{ sh 'make' }} }}\n"
        ))
        .digest()
    };
    let digests = [
        plan.digest(),
        grouped("a", false),
        grouped("b", false),
        grouped("a", true),
        plan_one(&format!("concurrency {{ group = 'a' }}\n{base}")).digest(),
    ];
    let mut distinct = digests.to_vec();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), digests.len(), "{digests:#?}");
}

#[test]
fn bad_group_names_are_refused_at_parse_with_one_line() {
    // 1 MB of name: one diagnostic, which neither repeats the name nor grows with it.
    let long = "x".repeat(1 << 20);
    let failed = fail_one(&format!(
        "stage('B') {{ concurrency {{ group = '{long}' }}  steps {{ sh 'x' }} }}\n"
    ));
    assert_eq!(failed.diagnostics.len(), 1, "{failed}");
    let d = assert_diag(
        &failed,
        "Ottofile:1:36",
        &format!(
            "bad concurrency group: a group name has at most {MAX_GROUP_BYTES} bytes, this one has 1048576"
        ),
    );
    assert!(d.message.len() < 200);
    assert!(
        failed.to_string().len() < 2000,
        "{}",
        failed.to_string().len()
    );

    let failed =
        fail_one("concurrency { group = 'deploy\\u{1b}[2J' }\nstage('B') { steps { sh 'x' } }\n");
    assert_diag(
        &failed,
        "Ottofile:1:23",
        "bad concurrency group: a group name must not hold control characters (found U+001B)",
    );
    let failed = fail_one("concurrency { group = 'a\\nb' }\nstage('B') { steps { sh 'x' } }\n");
    assert_diag(
        &failed,
        "Ottofile:1:23",
        "bad concurrency group: a group name must not hold control characters (found U+000A)",
    );
    let failed = fail_one("concurrency { group = '' }\nstage('B') { steps { sh 'x' } }\n");
    assert_diag(
        &failed,
        "Ottofile:1:23",
        "bad concurrency group: a group name must not be empty",
    );
    // A computed name is checked by the planner.
    let failed = fail_one(&format!(
        "vars {{ g = '{}' }}\nconcurrency {{ group = concat(vars.g, 'x') }}\nstage('B') {{ steps {{ sh 'x' }} }}\n",
        "y".repeat(MAX_GROUP_BYTES)
    ));
    assert_diag(
        &failed,
        "Ottofile:2:23",
        "bad concurrency group: a group name has at most 128 bytes, this one has 129",
    );
}

#[test]
fn the_block_is_checked_where_it_is_written() {
    let failed = fail_one("stage('B') { concurrency { grop = 'a' }  steps { sh 'x' } }\n");
    let d = assert_diag(
        &failed,
        "Ottofile:1:28",
        "unknown keyword `grop` in `concurrency`",
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `group`?"));

    let failed =
        fail_one("stage('B') { concurrency { cancel_in_progress = true }  steps { sh 'x' } }\n");
    assert_diag(
        &failed,
        "Ottofile:1:14",
        "`concurrency` needs `group = ...`",
    );

    let failed =
        fail_one("stage('B') { concurrency { group = 'a'  group = 'b' }  steps { sh 'x' } }\n");
    assert_diag(
        &failed,
        "Ottofile:1:41",
        "`group` is set twice in this `concurrency`",
    );

    let failed = fail_one(
        "stage('B') { concurrency { group = 'a' }  concurrency { group = 'b' }  steps { sh 'x' } }\n",
    );
    assert_diag(
        &failed,
        "Ottofile:1:43",
        "`concurrency` is set twice in this stage",
    );

    let failed = fail_one(
        "concurrency { group = 'a' }\npipeline { concurrency { group = 'b' }  stage('B') { steps { sh 'x' } } }\n",
    );
    assert_diag(
        &failed,
        "Ottofile:2:12",
        "`concurrency` is set twice in this pipeline",
    );

    let failed = fail_one(
        "stage('B') { concurrency { group = 'a'  cancel_in_progress = 'yes' }  steps { sh 'x' } }\n",
    );
    assert_diag(
        &failed,
        "Ottofile:1:62",
        "cancel_in_progress must be true or false, not a string",
    );

    let failed = fail_one("stage('B') { concurrency { group = branch }  steps { sh 'x' } }\n");
    assert_diag(
        &failed,
        "Ottofile:1:36",
        "the fact `branch` can only be used in conditions",
    );

    let failed = fail_one(
        "stage('Deploy') { concurrency { group = 'd' }  stage('A') { steps { sh 'x' } } }\n",
    );
    assert!(
        failed
            .diagnostics
            .iter()
            .any(|d| d.message == "a stage with sub-stages cannot have concurrency"),
        "{failed}"
    );
}
