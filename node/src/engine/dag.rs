//! Decisions over a plan and its stages' states, without I/O: which stages may start, what
//! a condition means at run time, where a run stands.

use std::collections::{HashMap, HashSet};

use otto_handoff::rules;
use otto_pipeline::plan::{Body, Outcome, Stage};

use crate::store::{RunState, StageState};

/// The stages that may start now, in plan order ([`otto_handoff::rules::ready`]): not
/// finished, not handed off, not already driven by a task, and every stage they need
/// succeeded or was skipped.
pub(crate) fn ready(
    body: &Body,
    states: &HashMap<String, StageState>,
    busy: &HashSet<String>,
) -> Vec<String> {
    let open = |stage: &Stage| {
        let state = states.get(&stage.id).copied();
        state.is_some_and(|s| !s.is_final() && s != StageState::HandedOff)
            && !busy.contains(&stage.id)
    };
    let passed = |need: &str| {
        matches!(
            states.get(need),
            Some(StageState::Succeeded | StageState::Skipped)
        )
    };
    rules::ready(body, open, passed)
        .into_iter()
        .map(|stage| stage.id.clone())
        .collect()
}

/// Why a stage is skipped, when its `when` does not hold. A condition that is unknown at
/// run time (it reads a fact the run was not given) counts as not holding.
pub(crate) fn skip_note(stage: &Stage) -> Option<String> {
    let when = stage.when.as_ref()?;
    match when.result {
        Outcome::Pass => None,
        Outcome::Fail => Some(format!("skipped: when {{ {} }} does not hold", when.text)),
        Outcome::Unknown => Some(format!(
            "skipped: when {{ {} }} is unknown (it reads a fact this run was not given), which counts as not holding",
            when.text
        )),
    }
}

/// Why an enter condition stops the stage, if it does. Unknown counts as failing.
pub(crate) fn condition_failure(text: &str, result: Outcome) -> Option<String> {
    match result {
        Outcome::Pass => None,
        Outcome::Fail => Some(format!("enter gate failed: {text}")),
        Outcome::Unknown => Some(format!(
            "enter gate failed: {text} (unknown: it reads a fact this run was not given, which counts as failing)"
        )),
    }
}

/// Whether a later stage starts from this stage's workspace (`runtime { from 'id' }`).
pub(crate) fn workspace_wanted(body: &Body, id: &str) -> bool {
    body.stages
        .iter()
        .any(|s| s.runtime.from.as_deref() == Some(id))
}

/// Where a run that still has stages in progress stands: running while any attempt runs,
/// waiting while everything left waits for a gate or another node.
pub(crate) fn progress(states: &HashMap<String, StageState>) -> RunState {
    let running = states.values().any(|s| *s == StageState::Running);
    let waiting = states
        .values()
        .any(|s| matches!(s, StageState::WaitingGate | StageState::HandedOff));
    if !running && waiting {
        RunState::Waiting
    } else {
        RunState::Running
    }
}

/// The first stage, in plan order, that failed or was cancelled.
pub(crate) fn first_failure(body: &Body, states: &HashMap<String, StageState>) -> Option<String> {
    body.stages
        .iter()
        .find(|s| {
            matches!(
                states.get(&s.id),
                Some(StageState::Failed | StageState::Cancelled)
            )
        })
        .map(|s| s.id.clone())
}

/// How a run with no stage in progress ends: `None` while some stage waits for the mesh
/// (or for one that does).
pub(crate) fn settled(states: &HashMap<String, StageState>) -> Option<RunState> {
    if states.values().all(|s| s.is_final()) {
        if states
            .values()
            .any(|s| matches!(s, StageState::Failed | StageState::Cancelled))
        {
            Some(RunState::Failed)
        } else {
            Some(RunState::Succeeded)
        }
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use otto_pipeline::plan::Plan;
    use otto_pipeline::{Facts, MemSource, StepCatalog};

    use super::*;

    fn plan(text: &str, facts: &Facts) -> Plan {
        let source = MemSource::new().with("p/Ottofile", text);
        otto_pipeline::plan(
            &source,
            std::path::Path::new("p/Ottofile"),
            facts,
            &StepCatalog::builtins(),
        )
        .map(|p| p.plan)
        .unwrap_or_else(|f| panic!("plan: {f}"))
    }

    fn states(pairs: &[(&str, StageState)]) -> HashMap<String, StageState> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    const DIAMOND: &str = "stage('A') { steps { sh 'a' } }
parallel {
  stage('B') { steps { sh 'b' } }
  stage('C') { steps { sh 'c' } }
}
stage('D') { steps { sh 'd' } }
";

    #[test]
    fn stages_start_when_their_needs_succeeded_or_were_skipped() {
        let plan = plan(DIAMOND, &Facts::default());
        let none = HashSet::new();
        use StageState::*;
        let s = states(&[
            ("A", Pending),
            ("B", Pending),
            ("C", Pending),
            ("D", Pending),
        ]);
        assert_eq!(ready(&plan.body, &s, &none), ["A"]);
        let s = states(&[
            ("A", Succeeded),
            ("B", Pending),
            ("C", Pending),
            ("D", Pending),
        ]);
        assert_eq!(ready(&plan.body, &s, &none), ["B", "C"]);
        let busy: HashSet<String> = ["B".to_owned()].into();
        assert_eq!(ready(&plan.body, &s, &busy), ["C"]);
        let s = states(&[
            ("A", Succeeded),
            ("B", Skipped),
            ("C", Running),
            ("D", Pending),
        ]);
        assert_eq!(ready(&plan.body, &s, &none), ["C"]);
        let s = states(&[
            ("A", Succeeded),
            ("B", Skipped),
            ("C", Succeeded),
            ("D", Pending),
        ]);
        assert_eq!(ready(&plan.body, &s, &none), ["D"]);
        let s = states(&[
            ("A", Succeeded),
            ("B", Failed),
            ("C", Succeeded),
            ("D", Pending),
        ]);
        assert!(ready(&plan.body, &s, &none).is_empty());
        let s = states(&[
            ("A", HandedOff),
            ("B", Pending),
            ("C", Pending),
            ("D", Pending),
        ]);
        assert!(ready(&plan.body, &s, &none).is_empty());
    }

    #[test]
    fn unknown_conditions_count_as_not_holding() {
        let text = "stage('S') { when { branch == 'main' } steps { sh 'x' } }";
        let unknown = plan(text, &Facts::default());
        let note = skip_note(&unknown.body.stages[0]).expect("skipped");
        assert!(note.contains("unknown"), "{note}");
        let main = Facts {
            branch: Some("main".into()),
            ..Facts::default()
        };
        assert_eq!(skip_note(&plan(text, &main).body.stages[0]), None);
        assert!(condition_failure("branch == 'main'", Outcome::Unknown).is_some());
        assert_eq!(condition_failure("x", Outcome::Pass), None);
        assert_eq!(
            condition_failure("branch == 'main'", Outcome::Fail).as_deref(),
            Some("enter gate failed: branch == 'main'")
        );
    }

    #[test]
    fn a_run_waits_only_when_nothing_runs() {
        use StageState::*;
        assert_eq!(
            progress(&states(&[("A", Running), ("B", WaitingGate)])),
            RunState::Running
        );
        assert_eq!(
            progress(&states(&[("A", Succeeded), ("B", WaitingGate)])),
            RunState::Waiting
        );
        assert_eq!(
            progress(&states(&[("A", HandedOff), ("B", Pending)])),
            RunState::Waiting
        );
        assert_eq!(
            settled(&states(&[("A", Succeeded), ("B", Skipped)])),
            Some(RunState::Succeeded)
        );
        assert_eq!(
            settled(&states(&[("A", Failed), ("B", Cancelled)])),
            Some(RunState::Failed)
        );
        assert_eq!(settled(&states(&[("A", HandedOff), ("B", Pending)])), None);
    }
}
