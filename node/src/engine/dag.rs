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

/// Why a retry cannot be made as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RetryRefusal {
    /// The plan has no such stage.
    UnknownStage(String),
    /// Why not, for people.
    Refused(String),
}

/// The stages `otto retry` reopens, in plan order: `stage` (every stage that failed when
/// `None`; every cancelled one when none failed, as in a cancelled run), every stage that
/// depends on one of them, and every stage cancelled because the run ended ([`reopened`]).
/// A named stage must have failed or been cancelled (a succeeded stage never runs again),
/// and no other failed stage may be left out: the run would fail again at once.
pub(crate) fn retry_set(
    body: &Body,
    states: &HashMap<String, StageState>,
    stage: Option<&str>,
) -> Result<Vec<String>, RetryRefusal> {
    let retryable = |state: Option<&StageState>| {
        matches!(state, Some(StageState::Failed | StageState::Cancelled))
    };
    let targets: Vec<String> = match stage {
        Some(id) => {
            if !body.stages.iter().any(|s| s.id == id) {
                return Err(RetryRefusal::UnknownStage(id.to_owned()));
            }
            let state = states.get(id);
            if !retryable(state) {
                let state = state
                    .and_then(|s| serde_json::to_value(s).ok())
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "not recorded".into());
                return Err(RetryRefusal::Refused(format!(
                    "stage {id:?} is {state}; only a failed, refused or cancelled stage is retried"
                )));
            }
            vec![id.to_owned()]
        }
        None => {
            let of = |wanted: StageState| -> Vec<String> {
                body.stages
                    .iter()
                    .filter(|s| states.get(&s.id) == Some(&wanted))
                    .map(|s| s.id.clone())
                    .collect()
            };
            let failed = of(StageState::Failed);
            if failed.is_empty() {
                of(StageState::Cancelled)
            } else {
                failed
            }
        }
    };
    if targets.is_empty() {
        return Err(RetryRefusal::Refused(
            "no stage of the run failed or was cancelled".into(),
        ));
    }
    let set = reopened(body, states, &targets);
    if let Some(other) = body
        .stages
        .iter()
        .find(|s| states.get(&s.id) == Some(&StageState::Failed) && !set.contains(&s.id))
    {
        return Err(RetryRefusal::Refused(format!(
            "stage {:?} failed too and does not depend on {}: retry it as well, or every \
             failed stage with no STAGE",
            other.id,
            targets.join(", ")
        )));
    }
    Ok(set)
}

/// The stages a retry of `targets` reopens, in plan order: of the stages that failed or
/// were cancelled, the targets, the stages that depend on one of them (directly or
/// through others), and the other cancelled ones (cancelled because the run ended).
pub(crate) fn reopened(
    body: &Body,
    states: &HashMap<String, StageState>,
    targets: &[String],
) -> Vec<String> {
    body.stages
        .iter()
        .filter(|s| {
            let state = states.get(&s.id);
            let open = matches!(state, Some(StageState::Failed | StageState::Cancelled));
            open && (targets.contains(&s.id)
                || state == Some(&StageState::Cancelled)
                || rules::upstream(body, &s.id)
                    .iter()
                    .any(|u| targets.contains(&u.id)))
        })
        .map(|s| s.id.clone())
        .collect()
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
    fn a_retry_reopens_what_failed_and_what_depends_on_it_never_what_succeeded() {
        use StageState::*;
        let plan = plan(DIAMOND, &Facts::default());
        let s = states(&[
            ("A", Succeeded),
            ("B", Failed),
            ("C", Cancelled),
            ("D", Cancelled),
        ]);
        assert_eq!(retry_set(&plan.body, &s, None).unwrap(), ["B", "C", "D"]);
        assert_eq!(
            retry_set(&plan.body, &s, Some("B")).unwrap(),
            ["B", "C", "D"]
        );
        assert!(matches!(
            retry_set(&plan.body, &s, Some("A")),
            Err(RetryRefusal::Refused(why)) if why.contains("succeeded")
        ));
        assert_eq!(
            retry_set(&plan.body, &s, Some("Z")),
            Err(RetryRefusal::UnknownStage("Z".into()))
        );
        // Two failed stages: one alone would fail the run again at once.
        let s = states(&[
            ("A", Succeeded),
            ("B", Failed),
            ("C", Failed),
            ("D", Cancelled),
        ]);
        assert!(matches!(
            retry_set(&plan.body, &s, Some("B")),
            Err(RetryRefusal::Refused(why)) if why.contains("\"C\" failed too")
        ));
        assert_eq!(retry_set(&plan.body, &s, None).unwrap(), ["B", "C", "D"]);
        // A cancelled run: its cancelled stages.
        let s = states(&[
            ("A", Succeeded),
            ("B", Succeeded),
            ("C", Cancelled),
            ("D", Cancelled),
        ]);
        assert_eq!(retry_set(&plan.body, &s, None).unwrap(), ["C", "D"]);
        let done = states(&[
            ("A", Succeeded),
            ("B", Succeeded),
            ("C", Succeeded),
            ("D", Succeeded),
        ]);
        assert!(retry_set(&plan.body, &done, None).is_err());
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
