//! What the node that started a run knows of the stages other orgs' nodes ran: their times
//! to the millisecond, and which node ran each attempt or refused it (two real nodes).

use serde_json::Value;

use crate::node_handoff::{approve_after_refusal, start_run, two_orgs};
use crate::node_support::{project, stage_of, text};

const OTTOFILE: &str = "
stage('Build') { steps { sh 'echo built' } }
stage('Deploy') {
  owner = 'ops'
  steps { sh 'echo deploying' }
}
";

/// The `n`th attempt of `stage` in a run's status JSON.
fn attempt<'a>(status: &'a Value, stage: &str, n: u64) -> &'a Value {
    stage_of(status, stage)
        .and_then(|s| s["attempts"].as_array())
        .and_then(|a| a.iter().find(|a| a["n"] == n))
        .unwrap_or_else(|| panic!("no attempt {n} of {stage} in {status}"))
}

fn millis(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{value} is not a time"))
}

/// `otto status`'s way of writing a duration.
fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

#[test]
fn the_origin_shows_a_remote_stage_with_its_runners_times_to_the_millisecond() {
    let (dev, ops) = two_orgs();
    let dir = project(&[("Ottofile", OTTOFILE)]);
    approve_after_refusal(&dev, &ops, &dir, "Deploy");
    let run = start_run(&dev, &dir);
    let status = dev.wait_final(&run);
    assert_eq!(status["run"]["state"], "succeeded", "{status}");
    let on_ops = ops.wait_stage(&run, "Deploy", "succeeded");

    // Dev records ops's attempt with the times ops measured, to the millisecond (the
    // receipt's milliseconds), not the whole seconds of the receipt.
    let (ours, theirs) = (attempt(&status, "Deploy", 1), attempt(&on_ops, "Deploy", 1));
    let started = millis(&ours["started_at"]);
    let finished = millis(&ours["finished_at"]);
    assert_eq!(started, millis(&theirs["started_at"]), "{ours} vs {theirs}");
    assert_eq!(
        finished,
        millis(&theirs["finished_at"]),
        "{ours} vs {theirs}"
    );
    // Both nodes read one clock: ops started Deploy after dev created the run and ended
    // Build (a start rounded down to its second could come before either).
    let created = millis(&status["run"]["created_at"]);
    let built = millis(&attempt(&status, "Build", 1)["finished_at"]);
    assert!(started >= created && started >= built, "{status}");
    assert!(finished >= started, "{ours}");

    // `otto status` on dev says how long Deploy took on ops, to the millisecond.
    let text = dev.ok(&["status", &run]);
    let line = text
        .lines()
        .find(|l| l.contains("Deploy"))
        .unwrap_or_else(|| panic!("no Deploy line in {text}"));
    let took = format!("succeeded in {}", human_ms(finished - started));
    assert!(line.contains(&took), "{line:?} does not say {took:?}");

    // The runs list names the orgs by the plan's owner bindings, on both nodes: acme-ops,
    // not dev's alias `ops` for it.
    for node in [&dev, &ops] {
        let list = node.ok(&["status"]);
        let row = list
            .lines()
            .find(|l| l.starts_with(run.as_str()))
            .unwrap_or_else(|| panic!("no {run} in {list}"));
        assert!(row.ends_with("  acme-dev, acme-ops"), "{list}");
        assert!(list.lines().next().unwrap().ends_with("  ORGS"), "{list}");
    }
}

#[test]
fn each_attempt_names_the_node_it_ran_on_or_the_node_that_refused_it() {
    let (dev, ops) = two_orgs();
    let dir = project(&[("Ottofile", OTTOFILE)]);
    // Ops refuses the steps it has not approved: Deploy's attempt names ops-1 as the node
    // that refused it, not dev-1 (where the refusal was recorded).
    let refused = start_run(&dev, &dir);
    let status = dev.wait_final(&refused);
    assert_eq!(status["run"]["state"], "failed", "{status}");
    let node = &attempt(&status, "Deploy", 1)["node"];
    assert_eq!(
        node,
        &serde_json::json!({"name": "ops-1", "org": "acme-ops", "refused": true}),
        "{status}"
    );
    let built = &attempt(&status, "Build", 1)["node"];
    assert_eq!(
        built,
        &serde_json::json!({"name": "dev-1", "org": "acme-dev", "refused": false}),
        "{status}"
    );

    // Approved on ops and retried from dev: attempt 2 ran on ops-1, and `otto status` says
    // where each attempt went.
    let why = stage_of(&status, "Deploy").unwrap()["note"]
        .as_str()
        .unwrap()
        .to_owned();
    let digest = why
        .split_whitespace()
        .find_map(|w| {
            w.trim_matches(|c| c == '`' || c == ';')
                .strip_prefix("sha256:")
        })
        .map(|hex| format!("sha256:{}", &hex[..64]))
        .unwrap_or_else(|| panic!("no digest in {why:?}"));
    let approved = ops.otto_node(&["approve", &digest]);
    assert!(approved.status.success(), "{}", text(&approved.stderr));
    dev.ok(&["retry", &refused, "Deploy"]);
    let status = dev.wait_final(&refused);
    assert_eq!(
        status["run"]["state"],
        "succeeded",
        "{status}\n{}",
        ops.log()
    );
    assert_eq!(
        attempt(&status, "Deploy", 2)["node"],
        serde_json::json!({"name": "ops-1", "org": "acme-ops", "refused": false}),
        "{status}"
    );
    let on_ops = ops.wait_stage(&refused, "Deploy", "succeeded");
    assert_eq!(
        attempt(&on_ops, "Deploy", 2)["node"],
        serde_json::json!({"name": "ops-1", "org": "acme-ops", "refused": false}),
        "{on_ops}"
    );
    let text = dev.ok(&["status", &refused]);
    assert!(
        text.contains("attempt 1 refused by ops-1 (acme-ops)"),
        "{text}"
    );
    assert!(
        text.contains("attempt 2 succeeded on ops-1 (acme-ops)"),
        "{text}"
    );
}
