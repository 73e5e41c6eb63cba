//! `triggers { }`: which events start a pipeline, in the plan and its digest.

use crate::plan_support::{assert_diag, fail_one, plan_one};
use otto_pipeline::plan::{Event, EventKind, Started};

const TRIGGERS: &str = "
triggers {
  push { branches = ['main', 'release/*'] }
  tag { pattern = 'v*' }
  pull_request { }
  schedule { cron = '0 3 * * *' }
}
stage('Build') { steps { sh 'make' } }
";

fn event(kind: EventKind, branch: Option<&str>, tag: Option<&str>) -> Event {
    Event {
        kind,
        branch: branch.map(Into::into),
        tag: tag.map(Into::into),
    }
}

fn starts(text: &str, e: &Event) -> bool {
    !matches!(plan_one(text).body.started_by(e), Started::No)
}

#[test]
fn pushes_tags_pull_requests_and_schedules_start_it_as_written() {
    use EventKind::*;
    let push = |b: &str| starts(TRIGGERS, &event(Push, Some(b), None));
    assert!(push("main"));
    assert!(push("release/1.2"));
    assert!(!push("release/1.2/hotfix"), "`*` stays within a segment");
    assert!(!push("dev"));
    assert!(!push("mainline"));
    assert!(starts(TRIGGERS, &event(Tag, None, Some("v1.0"))));
    assert!(!starts(TRIGGERS, &event(Tag, None, Some("1.0"))));
    assert!(
        !starts(TRIGGERS, &event(Tag, None, None)),
        "a tag event names its tag"
    );
    assert!(starts(
        TRIGGERS,
        &event(PullRequest, Some("anything"), None)
    ));
    assert!(starts(TRIGGERS, &event(Schedule, None, None)));
    // `**` crosses segments.
    let deep = "triggers { push { branches = 'feature/**' } }\nstage('B') { steps { sh 'x' } }\n";
    assert!(starts(deep, &event(Push, Some("feature/a/b"), None)));

    let plan = plan_one(TRIGGERS);
    let schedule = plan
        .body
        .triggers
        .iter()
        .find(|t| t.event == Schedule)
        .unwrap();
    assert_eq!(
        schedule.timezone.as_deref(),
        Some("UTC"),
        "time zones are explicit"
    );
}

#[test]
fn without_triggers_every_push_starts_it_and_nothing_else() {
    use EventKind::*;
    let text = "stage('Build') { steps { sh 'make' } }\n";
    let plan = plan_one(text);
    assert!(plan.body.triggers.is_empty());
    assert_eq!(
        plan.body.started_by(&event(Push, Some("any"), None)),
        Started::ByDefault
    );
    assert_eq!(
        plan.body.started_by(&event(Tag, None, Some("v1"))),
        Started::No
    );
    assert_eq!(
        plan.body.started_by(&event(Schedule, None, None)),
        Started::No
    );
    // A plan without triggers keeps the canonical bytes it had before triggers existed.
    assert!(
        !String::from_utf8(plan.canonical_bytes())
            .unwrap()
            .contains("triggers")
    );
}

#[test]
fn triggers_are_part_of_the_digest() {
    let a = plan_one(TRIGGERS);
    let b = plan_one(&TRIGGERS.replace("'v*'", "'release-*'"));
    assert_ne!(a.digest(), b.digest());
    let json = otto_pipeline::explain::json(&a);
    assert!(json.contains("\"event\": \"schedule\""), "{json}");
    let human = otto_pipeline::explain::human(&a);
    assert!(
        human.contains("triggers: push to main, release/*; tag v*; pull_request to any branch; schedule '0 3 * * *' (UTC)"),
        "{human}"
    );
}

#[test]
fn bad_triggers_are_refused_where_they_are_written() {
    let failed = fail_one("triggers { pushh { } }\nstage('B') { steps { sh 'x' } }\n");
    let d = assert_diag(&failed, "Ottofile:1:12", "unknown trigger `pushh`");
    assert_eq!(d.hint.as_deref(), Some("did you mean `push`?"));

    let failed =
        fail_one("triggers { push { branch = 'main' } }\nstage('B') { steps { sh 'x' } }\n");
    let d = assert_diag(
        &failed,
        "Ottofile:1:19",
        "trigger `push` has no setting `branch`",
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `branches`?"));

    let failed =
        fail_one("triggers { schedule { cron = '0 3 * *' } }\nstage('B') { steps { sh 'x' } }\n");
    assert_diag(
        &failed,
        "Ottofile:1:23",
        "`0 3 * *` is not a five-field cron expression",
    );

    let failed = fail_one(
        "triggers { schedule { cron = '0 25 * * *' } }\nstage('B') { steps { sh 'x' } }\n",
    );
    assert!(
        failed.diagnostics.iter().any(|d| d
            .message
            .starts_with("`0 25 * * *` is not a valid cron expression")),
        "{failed}"
    );

    let failed =
        fail_one("triggers { schedule { timezone = 'UTC' } }\nstage('B') { steps { sh 'x' } }\n");
    assert_diag(
        &failed,
        "Ottofile:1:12",
        "trigger `schedule` needs a `cron`",
    );

    let failed = fail_one("triggers { tag { pattern = 'v[' } }\nstage('B') { steps { sh 'x' } }\n");
    assert!(
        failed
            .diagnostics
            .iter()
            .any(|d| d.message.starts_with("`v[` is not a valid pattern")),
        "{failed}"
    );

    let failed =
        fail_one("triggers { push { branches = [1] } }\nstage('B') { steps { sh 'x' } }\n");
    assert!(
        failed
            .diagnostics
            .iter()
            .any(|d| d.message.starts_with("`branches` takes text")),
        "{failed}"
    );
}
