//! Another org's copy of a stage log, with two real nodes: dev hands `Deploy` to ops, and
//! dev's `otto logs` of it holds exactly ops's lines, in order, nothing invented; across a
//! crash of dev, dev fetches the lines it missed from ops, and ends with every line ops
//! wrote, in order, with no gap.

use crate::node_handoff::{approve_after_refusal, start_run, two_orgs};
use crate::node_support::{Node, project, stage_of};

/// A stage that prints `LINES` numbered lines, as fast as the shell can.
const MANY_LINES: &str = r#"
stage('Build') { steps { echo 'built' } }
stage('Deploy') {
  owner = 'ops'
  steps { sh 'i=1; while [ $i -le 20000 ]; do echo "ops line $i"; i=$((i+1)); done' }
}
"#;

const LINES: usize = 20_000;

/// A stage that prints its lines in bursts, with pauses between them (the step's own
/// pace), so that dev can be killed while it runs.
const PACED_LINES: &str = r#"
stage('Build') { steps { echo 'built' } }
stage('Deploy') {
  owner = 'ops'
  steps { sh 'i=1; while [ $i -le 3000 ]; do echo "ops line $i"; [ $((i % 500)) -eq 0 ] && sleep 1; i=$((i+1)); done' }
}
"#;

const PACED: usize = 3000;

fn lines_of(node: &Node, run: &str) -> Vec<String> {
    node.ok(&["logs", run, "Deploy"])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The number of lines a gap line stands for, or `None` for any other line.
fn gap(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("otto: … ")?;
    let count = rest
        .strip_suffix(" lines not received …")
        .or_else(|| rest.strip_suffix(" line not received …"))?;
    count.replace(',', "").parse().ok()
}

/// Checks that `copy` is `owner`'s lines in order, with runs of them replaced by gap lines
/// that count them exactly, and nothing else but dev's own `otto:` lines; returns the number
/// of owner lines marked as not received.
fn check_copy(owner: &[String], copy: &[String]) -> u64 {
    let mut at = 0usize;
    let mut missing = 0u64;
    for line in copy {
        if let Some(n) = gap(line) {
            at += usize::try_from(n).unwrap();
            missing += n;
            assert!(at <= owner.len(), "a gap past the owner's end: {line}");
            continue;
        }
        if at < owner.len() && *line == owner[at] {
            at += 1;
            continue;
        }
        assert!(
            line.starts_with("otto: ") && !line.contains("ops line"),
            "line {line:?} on dev is not ops's line {} ({:?})",
            at + 1,
            owner.get(at)
        );
    }
    assert_eq!(at, owner.len(), "dev's copy ends before ops's log does");
    missing
}

#[test]
fn dev_shows_exactly_the_lines_ops_wrote_in_order() {
    let (dev, ops) = two_orgs();
    let dir = project(&[("Ottofile", MANY_LINES)]);
    approve_after_refusal(&dev, &ops, &dir, "Deploy");

    let run = start_run(&dev, &dir);
    let status = dev.wait_final(&run);
    assert_eq!(
        status["run"]["state"],
        "succeeded",
        "{status}\n{}",
        ops.log()
    );
    let owner = lines_of(&ops, &run);
    let printed: Vec<&String> = owner
        .iter()
        .filter(|l| l.starts_with("ops line "))
        .collect();
    assert_eq!(printed.len(), LINES);
    let last = format!("ops line {LINES}");
    let copy = dev.wait_for("ops's last line on dev", || {
        let copy = lines_of(&dev, &run);
        copy.contains(&last).then_some(copy)
    });
    let missing = check_copy(&owner, &copy);
    assert_eq!(missing, 0, "nothing was lost on the way");
    let on_dev: Vec<&String> = copy.iter().filter(|l| l.starts_with("ops line ")).collect();
    assert_eq!(on_dev, printed, "the same lines, each once, in order");
}

// Not steady yet: in one CI run under load, dev restarted, saw the run succeed, and its
// copy of ops's log stayed short with no gap line for 90 s (docs/handoff.md, Limits: a
// copy learns where the runner's log ends only from status events; the receipt does not
// carry the log's last line number). Run it with `--ignored`.
#[test]
#[ignore = "flaky under load until the receipt carries the log's last line number (docs/handoff.md, Limits)"]
fn a_crash_of_dev_mid_stage_loses_no_line() {
    let (mut dev, ops) = two_orgs();
    let dir = project(&[("Ottofile", PACED_LINES)]);
    approve_after_refusal(&dev, &ops, &dir, "Deploy");

    let run = start_run(&dev, &dir);
    dev.wait_for("ops's first lines on dev", || {
        lines_of(&dev, &run)
            .iter()
            .any(|l| l == "ops line 1")
            .then_some(())
    });
    dev.kill9();
    let killed_while = stage_of(&ops.status(&run), "Deploy").unwrap()["state"].clone();
    ops.wait_stage(&run, "Deploy", "succeeded");
    dev.start();
    let status = dev.wait_final(&run);
    assert_eq!(
        status["run"]["state"],
        "succeeded",
        "{status}\n{}",
        dev.log()
    );
    let owner = lines_of(&ops, &run);
    let last = format!("ops line {PACED}");
    // Dev learns where ops's log ends when it subscribes again, and fetches the lines it
    // missed from ops.
    let copy = dev.wait_for("ops's log accounted for on dev", || {
        let copy = lines_of(&dev, &run);
        let accounted = copy.contains(&last) || copy.last().is_some_and(|l| gap(l).is_some());
        accounted.then_some(copy)
    });
    let missing = check_copy(&owner, &copy);
    eprintln!(
        "dev was killed while Deploy was {killed_while} on ops; {missing} of {} lines marked as not received",
        owner.len()
    );
    assert_eq!(
        missing,
        0,
        "dev fetched every line it missed:\n{}",
        dev.log()
    );
    let printed: Vec<&String> = owner
        .iter()
        .filter(|l| l.starts_with("ops line "))
        .collect();
    let on_dev: Vec<&String> = copy.iter().filter(|l| l.starts_with("ops line ")).collect();
    assert_eq!(on_dev, printed, "the same lines, each once, in order");
    assert_eq!(printed.len(), PACED);
}
