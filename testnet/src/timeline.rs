//! The timeline of a run across nodes: [`Watch`] turns each node's successive
//! `otto status RUN --json` answers into the [`Fact`]s that are new, once each, and
//! [`Timeline`] prints them with the time since the start and the node that saw them.
//!
//! What a stage's `note` says (docs/api.md) is read for the handoff: on the node that
//! moves a stage on, `offered to NODE (ORG)`, then `accepted by NODE; …` or
//! `NODE rejected STAGE: REASON; HINT`, and at the end `ran on NODE (ORG), receipt
//! verified`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// How a node's note begins when it refused to run a stage of another org's run that no
/// offer asked for.
const NOT_RUN_HERE: &str = "not run here: ";

/// Something that happened to a run, as one node tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    /// When, in milliseconds since the Unix epoch, as the node recorded it.
    pub at_ms: u64,
    /// The node that tells it.
    pub node: String,
    /// What happened.
    pub event: Event,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A stage this node runs (or records) changed state.
    Stage {
        /// The stage.
        stage: String,
        /// Its new state (`running`, `succeeded`, …).
        state: String,
        /// How long its last attempt took, when it ended.
        took_ms: Option<u64>,
        /// Why it is there, when the node says.
        note: Option<String>,
    },
    /// This node offered a stage to the node that owns it.
    Offered {
        /// The stage.
        stage: String,
        /// The owner's node.
        to: String,
    },
    /// The owner's node accepted the offer: every check on it passed.
    Accepted {
        /// The stage.
        stage: String,
        /// The owner's node.
        by: String,
    },
    /// The owner's node refused the offer.
    Refused {
        /// The stage.
        stage: String,
        /// The owner's node.
        by: String,
        /// Its reason.
        reason: String,
        /// What to do about it, when it says.
        hint: Option<String>,
    },
    /// Another node ran a stage; this node verified its signed receipt.
    Receipt {
        /// The stage.
        stage: String,
        /// The node that ran it.
        ran_on: String,
        /// How it ended.
        state: String,
    },
    /// A gate of a stage opened and waits.
    GateWaiting {
        /// The stage.
        stage: String,
        /// `enter` or `exit`.
        phase: String,
        /// `input`, `webhook` or `poll`.
        kind: String,
    },
    /// A gate closed.
    GateClosed {
        /// The stage.
        stage: String,
        /// `input`, `webhook` or `poll`.
        kind: String,
        /// `passed`, `failed` or `timed_out`.
        state: String,
        /// What the node says about it.
        note: Option<String>,
    },
    /// The run ended.
    RunEnded {
        /// `succeeded`, `failed` or `cancelled`.
        state: String,
    },
}

/// Remembers what was reported of one run, so each fact is reported once.
#[derive(Debug, Default)]
pub struct Watch {
    /// The node that runs each stage owner name.
    owners: HashMap<String, String>,
    /// The node that started the run (it runs the stages without an owner).
    starter: String,
    seen: HashSet<String>,
    offered: HashSet<(String, String)>,
    accepted: HashSet<(String, String)>,
}

/// Prints facts and the driver's own actions, each with the seconds since the start.
#[derive(Debug)]
pub struct Timeline {
    start_ms: u64,
}

impl Watch {
    /// A watch that has reported nothing, of a run started by node `starter`, where
    /// `owners` says which node runs each stage owner (`("ops", "ops-1")`).
    pub fn new(starter: &str, owners: &[(&str, &str)]) -> Self {
        Self {
            owners: owners
                .iter()
                .map(|(o, n)| ((*o).to_owned(), (*n).to_owned()))
                .collect(),
            starter: starter.to_owned(),
            ..Self::default()
        }
    }

    /// The facts in `status` (a node's `otto status RUN --json`) not reported before, in
    /// the order they happened.
    pub fn news(&mut self, node: &str, status: &Value) -> Vec<Fact> {
        let stages = status["stages"].as_array().map_or(&[][..], Vec::as_slice);
        let runners: HashMap<String, String> = stages
            .iter()
            .map(|s| (text(&s["id"]), self.runner(s)))
            .collect();
        let mut facts = Vec::new();
        for stage in stages {
            // A stage this node hands off: another node runs it, after a stage run here.
            let handoff = runners.get(&text(&stage["id"])).is_some_and(|r| r != node)
                && stage["needs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|n| runners.get(&text(n)).is_some_and(|r| r == node));
            self.stage_news(node, stage, handoff, &mut facts);
        }
        let run = &status["run"];
        let state = text(&run["state"]);
        if ["succeeded", "failed", "cancelled"].contains(&state.as_str())
            && self.first(&[node, "run", &state])
        {
            facts.push(Fact {
                at_ms: number(&run["finished_at"])
                    .or_else(|| number(&run["updated_at"]))
                    .unwrap_or(0),
                node: node.to_owned(),
                event: Event::RunEnded { state },
            });
        }
        facts.sort_by_key(|f| f.at_ms);
        facts
    }

    /// The node that runs a stage.
    fn runner(&self, stage: &Value) -> String {
        match stage["owner"].as_str() {
            Some(owner) => self
                .owners
                .get(owner)
                .cloned()
                .unwrap_or_else(|| owner.to_owned()),
            None => self.starter.clone(),
        }
    }

    fn stage_news(&mut self, node: &str, stage: &Value, handoff: bool, facts: &mut Vec<Fact>) {
        let id = text(&stage["id"]);
        let state = text(&stage["state"]);
        let note = stage["note"].as_str().map(str::to_owned);
        let updated = number(&stage["updated_at"]).unwrap_or(0);
        let last = stage["attempts"].as_array().and_then(|a| a.last());
        let started = last.and_then(|a| number(&a["started_at"]));
        let finished = last.and_then(|a| number(&a["finished_at"]));
        let error = last.and_then(|a| a["error"].as_str()).unwrap_or_default();
        let key = (node.to_owned(), id.clone());
        let n = note.as_deref().unwrap_or_default();
        let to = self.runner(stage);
        let refusal = n.split_once(&format!(" rejected {id}: "));
        if handoff {
            // The notes may move on faster than this watch looks: an offer is told when
            // any later state shows, an accept when the owner's progress or receipt does.
            let offered = n.starts_with("offered to ");
            let accepted =
                n.starts_with("accepted by ") || n.starts_with("ran on ") || mirror(n).is_some();
            if (offered || accepted || refusal.is_some()) && self.offered.insert(key.clone()) {
                facts.push(Fact {
                    at_ms: updated,
                    node: node.to_owned(),
                    event: Event::Offered {
                        stage: id.clone(),
                        to: to.clone(),
                    },
                });
            }
            if accepted && self.accepted.insert(key.clone()) {
                facts.push(Fact {
                    at_ms: updated,
                    node: node.to_owned(),
                    event: Event::Accepted {
                        stage: id.clone(),
                        by: to.clone(),
                    },
                });
            }
        }
        let event = match (state.as_str(), refusal) {
            ("pending" | "waiting_gate", _) => None,
            // Told above, or the owner's own timeline tells it.
            ("handed_off", _)
                if n.starts_with("offered to ")
                    || n.starts_with("accepted by ")
                    || mirror(n).is_some() =>
            {
                None
            }
            // The owner refused to move on a stage it was not offered (its definition is
            // not approved here): a refusal too, told by the owner itself.
            ("failed", None) if error.starts_with(NOT_RUN_HERE) => {
                let (reason, hint) = split_hint(&error[NOT_RUN_HERE.len()..]);
                Some(Event::Refused {
                    stage: id.clone(),
                    by: node.to_owned(),
                    reason,
                    hint,
                })
            }
            ("failed", Some((by, rest))) => {
                let (reason, hint) = split_hint(rest);
                Some(Event::Refused {
                    stage: id.clone(),
                    by: by.to_owned(),
                    reason,
                    hint,
                })
            }
            _ if n.starts_with("ran on ") => Some(Event::Receipt {
                stage: id.clone(),
                ran_on: node_of(&n["ran on ".len()..]),
                state: state.clone(),
            }),
            _ => Some(Event::Stage {
                stage: id.clone(),
                state: state.clone(),
                took_ms: finished
                    .zip(started)
                    .filter(|_| state != "running")
                    .map(|(f, s)| f.saturating_sub(s)),
                note: note.clone().filter(|_| state != "running"),
            }),
        };
        // A gate closes before the stage it holds ends.
        for gate in stage["gates"].as_array().into_iter().flatten() {
            let gate_state = text(&gate["state"]);
            let at = [
                node,
                &id,
                &text(&gate["phase"]),
                &gate["index"].to_string(),
                &gate_state,
            ];
            if !self.first(&at) {
                continue;
            }
            let (kind, phase) = (text(&gate["kind"]), text(&gate["phase"]));
            let (at_ms, event) = if gate_state == "waiting" {
                (
                    number(&gate["opened_at"]).unwrap_or(updated),
                    Event::GateWaiting {
                        stage: id.clone(),
                        phase,
                        kind,
                    },
                )
            } else {
                (
                    number(&gate["closed_at"]).unwrap_or(updated),
                    Event::GateClosed {
                        stage: id.clone(),
                        kind,
                        state: gate_state,
                        note: gate["note"].as_str().map(str::to_owned),
                    },
                )
            };
            facts.push(Fact {
                at_ms,
                node: node.to_owned(),
                event,
            });
        }
        if let Some(event) = event
            && self.first(&[node, &id, &state, n])
        {
            let at_ms = match state.as_str() {
                "running" => started.unwrap_or(updated),
                _ => updated,
            };
            facts.push(Fact {
                at_ms,
                node: node.to_owned(),
                event,
            });
        }
    }

    /// Whether `parts` were not reported before (and remembers them).
    fn first(&mut self, parts: &[&str]) -> bool {
        self.seen.insert(parts.join("\u{0}"))
    }
}

impl Timeline {
    /// A timeline that starts now.
    pub fn new() -> Self {
        Self { start_ms: now_ms() }
    }

    /// Prints a fact at the time the node recorded it.
    pub fn fact(&self, fact: &Fact) {
        self.at(fact.at_ms, &fact.node, &fact.event.to_string());
    }

    /// Prints something `who` does now.
    pub fn say(&self, who: &str, text: &str) {
        self.at(now_ms(), who, text);
    }

    /// Prints lines that belong to the line above (a log, a report), indented.
    pub fn detail(&self, lines: &str) {
        let mut out = std::io::stdout().lock();
        for line in lines.lines() {
            let _ = writeln!(out, "{:18}│ {line}", "");
        }
        let _ = out.flush();
    }

    /// Prints a heading line between the parts of the timeline.
    pub fn heading(&self, text: &str) {
        println!("\n{text}");
    }

    /// Seconds since the start, for people.
    pub fn elapsed(&self) -> String {
        format!(
            "{:.1}s",
            now_ms().saturating_sub(self.start_ms) as f64 / 1000.0
        )
    }

    /// Prints `text` as something `who` did at `at_ms` (milliseconds since the epoch).
    pub fn at(&self, at_ms: u64, who: &str, text: &str) {
        let secs = at_ms.saturating_sub(self.start_ms) as f64 / 1000.0;
        let mut out = std::io::stdout().lock();
        let mut lines = text.lines();
        let first = lines.next().unwrap_or_default();
        let _ = writeln!(out, "{secs:>7.1}s  {who:<8} {first}");
        for line in lines {
            let _ = writeln!(out, "{:18}{line}", "");
        }
        let _ = out.flush();
    }
}

impl Default for Timeline {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stage {
                stage,
                state,
                took_ms,
                note,
            } => {
                write!(f, "{stage}: {}", state.replace('_', " "))?;
                if let Some(ms) = took_ms {
                    write!(
                        f,
                        " in {}",
                        crate::human(std::time::Duration::from_millis(*ms))
                    )?;
                }
                if let Some(note) = note {
                    write!(f, " ({note})")?;
                }
                Ok(())
            }
            Self::Offered { stage, to } => write!(
                f,
                "handoff {stage} → {to}: offered (signed by this node, with the plan and the receipts so far)"
            ),
            Self::Accepted { stage, by } => write!(
                f,
                "handoff {stage} → {by}: accepted ({by} verified the signature, the certificate \
                 chain, the scope, the plan digest, the receipts before it and the approved steps)"
            ),
            Self::Refused {
                stage,
                by,
                reason,
                hint,
            } => {
                write!(f, "handoff {stage} → {by}: refused: {reason}")?;
                if let Some(hint) = hint {
                    write!(f, "\nhint: {hint}")?;
                }
                Ok(())
            }
            Self::Receipt {
                stage,
                ran_on,
                state,
            } => write!(
                f,
                "{stage}: {} on {ran_on} (its signed receipt verified here)",
                state.replace('_', " ")
            ),
            Self::GateWaiting { stage, phase, kind } => {
                write!(f, "{stage}: waits at its {phase} gate ({kind})")
            }
            Self::GateClosed {
                stage,
                kind,
                state,
                note,
            } => {
                write!(f, "{stage}: {kind} gate {}", state.replace('_', " "))?;
                if let Some(note) = note {
                    write!(f, " ({note})")?;
                }
                Ok(())
            }
            Self::RunEnded { state } => write!(f, "run {state}"),
        }
    }
}

/// The time now, in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `NODE` of `NODE (ORG)…` or `NODE; …`.
fn node_of(text: &str) -> String {
    text.split([' ', ';', ','])
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// `NODE` of the owner's progress note `NODE: STATE…`.
fn mirror(note: &str) -> Option<String> {
    let (node, rest) = note.split_once(": ")?;
    (!node.contains(' ') && !rest.is_empty()).then(|| node.to_owned())
}

/// A refusal's reason and, when its last part says what to run, that part as the hint.
fn split_hint(text: &str) -> (String, Option<String>) {
    match text.rsplit_once("; ") {
        Some((reason, hint)) if hint.contains('`') => (reason.to_owned(), Some(hint.to_owned())),
        _ => (text.to_owned(), None),
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

fn number(value: &Value) -> Option<u64> {
    value.as_u64()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn watch() -> Watch {
        Watch::new("dev-1", &[("dev", "dev-1"), ("ops", "ops-1")])
    }

    fn status(run_state: &str, stages: Value) -> Value {
        json!({"run": {"state": run_state, "updated_at": 100, "finished_at": null},
               "stages": stages})
    }

    /// A stage owned by `owner` that needs `needs`, last changed at `at`.
    fn stage(
        id: &str,
        owner: &str,
        needs: &[&str],
        state: &str,
        note: Option<&str>,
        at: u64,
    ) -> Value {
        json!({"id": id, "owner": owner, "needs": needs, "state": state, "note": note,
               "updated_at": at, "attempts": [{"n": 1, "started_at": at - 5, "finished_at": at}],
               "gates": []})
    }

    fn texts(facts: &[Fact]) -> Vec<String> {
        facts
            .iter()
            .map(|f| format!("{} {}", f.node, f.event))
            .collect()
    }

    #[test]
    fn each_fact_is_reported_once_in_the_order_it_happened() {
        let mut watch = watch();
        let first = status(
            "running",
            json!([
                stage("Test", "dev", &["Build"], "succeeded", None, 20),
                stage("Build", "dev", &[], "succeeded", None, 10),
            ]),
        );
        assert_eq!(
            texts(&watch.news("dev-1", &first)),
            [
                "dev-1 Build: succeeded in 5ms",
                "dev-1 Test: succeeded in 5ms"
            ]
        );
        assert!(watch.news("dev-1", &first).is_empty());
        // The same stage seen by another node is that node's fact.
        assert_eq!(watch.news("ops-1", &first).len(), 2);
    }

    fn deploy(state: &str, note: &str) -> Value {
        status(
            "running",
            json!([
                stage("Test", "dev", &[], "succeeded", None, 20),
                stage("Deploy", "ops", &["Test"], state, Some(note), 30),
            ]),
        )
    }

    #[test]
    fn a_handoff_reads_as_offered_accepted_and_ended_with_a_verified_receipt() {
        let mut watch = watch();
        let _ = watch.news(
            "dev-1",
            &status(
                "running",
                json!([stage("Test", "dev", &[], "succeeded", None, 20)]),
            ),
        );
        let offered = watch.news(
            "dev-1",
            &deploy("handed_off", "offered to ops-1 (acme-ops)"),
        );
        assert_eq!(
            texts(&offered)[0],
            "dev-1 handoff Deploy → ops-1: offered (signed by this node, with the plan and the receipts so far)"
        );
        let accepted = watch.news(
            "dev-1",
            &deploy("handed_off", "accepted by ops-1; running there"),
        );
        assert_eq!(
            accepted.iter().map(|f| &f.event).collect::<Vec<_>>(),
            [&Event::Accepted {
                stage: "Deploy".into(),
                by: "ops-1".into()
            }]
        );
        assert!(
            watch
                .news("dev-1", &deploy("handed_off", "ops-1: waiting (attempt 1)"))
                .is_empty()
        );
        let ended = watch.news(
            "dev-1",
            &deploy("succeeded", "ran on ops-1 (acme-ops), receipt verified"),
        );
        assert_eq!(
            texts(&ended),
            ["dev-1 Deploy: succeeded on ops-1 (its signed receipt verified here)"]
        );
    }

    #[test]
    fn an_offer_and_accept_missed_between_two_looks_are_still_told_before_the_receipt() {
        let mut watch = watch();
        let ended = watch.news(
            "dev-1",
            &deploy("succeeded", "ran on ops-1 (acme-ops), receipt verified"),
        );
        let events: Vec<&Event> = ended.iter().map(|f| &f.event).collect();
        assert!(
            matches!(
                events[1..],
                [
                    Event::Offered { .. },
                    Event::Accepted { .. },
                    Event::Receipt { .. }
                ]
            ),
            "{events:?}"
        );
    }

    #[test]
    fn a_stage_the_owner_moves_on_itself_is_no_handoff_of_the_starter() {
        let mut watch = watch();
        let status = status(
            "running",
            json!([
                stage(
                    "Deploy",
                    "ops",
                    &[],
                    "succeeded",
                    Some("ran on ops-1 (acme-ops), receipt verified"),
                    30
                ),
                stage(
                    "Prod",
                    "ops",
                    &["Deploy"],
                    "handed_off",
                    Some("ops-1: running (attempt 1)"),
                    40
                ),
            ]),
        );
        let events: Vec<Event> = watch
            .news("dev-1", &status)
            .into_iter()
            .map(|f| f.event)
            .collect();
        assert!(!events.iter().any(|e| matches!(e, Event::Offered { stage, .. } | Event::Accepted { stage, .. } if stage == "Prod")), "{events:?}");
    }

    #[test]
    fn a_refusal_gives_its_reason_and_the_command_that_fixes_it() {
        let mut watch = watch();
        let note = "ops-1 rejected Deploy: stage \"Deploy\" has inline steps; its definition \
                    sha256:ab is not approved here; run `otto-node approve sha256:ab` on this node";
        let facts = watch.news("dev-1", &{
            let mut s = deploy("failed", note);
            s["run"]["state"] = json!("failed");
            s
        });
        let events: Vec<&Event> = facts.iter().map(|f| &f.event).collect();
        assert_eq!(
            events[1..],
            [
                &Event::Offered { stage: "Deploy".into(), to: "ops-1".into() },
                &Event::Refused {
                    stage: "Deploy".into(),
                    by: "ops-1".into(),
                    reason: "stage \"Deploy\" has inline steps; its definition sha256:ab is not approved here".into(),
                    hint: Some("run `otto-node approve sha256:ab` on this node".into()),
                },
                &Event::RunEnded { state: "failed".into() },
            ]
        );
    }

    #[test]
    fn gates_are_reported_when_they_open_and_when_they_close() {
        let mut watch = watch();
        let with_gate = |gate_state: &str, note: Option<&str>| {
            let mut s = stage("Deploy", "ops", &[], "waiting_gate", None, 50);
            s["gates"] = json!([{"phase": "exit", "index": 0, "kind": "poll", "state": gate_state,
                                  "opened_at": 45, "closed_at": 60, "note": note}]);
            status("running", json!([s]))
        };
        assert_eq!(
            texts(&watch.news("ops-1", &with_gate("waiting", None))),
            ["ops-1 Deploy: waits at its exit gate (poll)"]
        );
        assert!(watch.news("ops-1", &with_gate("waiting", None)).is_empty());
        assert_eq!(
            texts(&watch.news(
                "ops-1",
                &with_gate("passed", Some("the check passed after 3 polls"))
            )),
            ["ops-1 Deploy: poll gate passed (the check passed after 3 polls)"]
        );
    }
}
