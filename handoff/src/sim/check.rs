//! What must hold in every simulation, checked as it goes: on the very step that could
//! break it, so a failure names the step, the time and what broke.
//!
//! - **No stage accepted twice**: one accepted handoff per stage of a run, over all nodes.
//! - **No stage run twice**: every start of a stage is on one node, at most once per
//!   incarnation of that node (a crash interrupts an attempt; the next one is not a rerun).
//! - **No hostile receipt accepted**: a node takes a receipt only from the node it gave
//!   the stage to; no accepted offer's chain holds a receipt a hostile node forged, or a
//!   receipt signed by an org other than the one the stage's owner is bound to.
//! - **Every end is vouched for once**: the stage-end relay ([`crate::relay`]) makes a
//!   node vouch at most once per end and incarnation, never for a stage it ran, in words
//!   that read back as that end.
//! - **Every finished run's chain verifies**: when the last stage of a run succeeds, the
//!   receipts its nodes signed verify as a chain, owners bound to orgs, for an auditor
//!   that pins every org.
//! - **Nothing lost** ([`Sim::check_settled`]): once the faults healed and everything
//!   settled, every run finished, no offer waits in an outbox and every accepted offer is
//!   done.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;

use otto_protocol::{Digest, HandoffId, Offer, Receipt};

use super::{START, Sim};
use crate::chain::{StageStatus, digest_of, verify_chain};
use crate::owners::Owners;

/// How many trace lines a failure shows.
const RECENT: usize = 40;

/// A broken invariant: when, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The step it broke at.
    pub step: u64,
    /// The simulated time, in milliseconds since the start.
    pub at_ms: u64,
    /// What broke, in words.
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {} at {} ms: {}", self.step, self.at_ms, self.what)
    }
}

/// What the checks remember.
#[derive(Default)]
pub(crate) struct Checks {
    pub(crate) violation: Option<Violation>,
    /// The node whose message is being handled.
    pub(crate) peer: Option<usize>,
    /// Handoffs: (from, to, run, stage).
    given: HashSet<(usize, usize, String, String)>,
    /// The node that gave each (run, stage) to another.
    givers: HashMap<(String, String), usize>,
    /// The accepted handoff of each (run, stage).
    accepted: HashMap<(String, String), HandoffId>,
    /// Where each (run, stage) started: the node and its incarnations.
    starts: HashMap<(String, String), (usize, BTreeSet<u32>)>,
    /// Receipts hostile nodes forged.
    pub(crate) forged: HashSet<Digest>,
    /// Ends each node vouched for: (node, incarnation, run, stage, attempt).
    vouched: HashSet<(usize, u32, String, String, u32)>,
}

impl Checks {
    /// Node `n` in incarnation `epoch` vouches for `end`: `false` if it did before.
    pub(crate) fn vouch(&mut self, n: usize, epoch: u32, end: &crate::relay::End) -> bool {
        self.vouched
            .insert((n, epoch, end.run.clone(), end.stage.clone(), end.attempt))
    }

    /// The node that gave `stage` of `run` to another, if one did.
    pub(crate) fn giver(&self, run: &str, stage: &str) -> Option<usize> {
        self.givers
            .get(&(run.to_owned(), stage.to_owned()))
            .copied()
    }
}

/// Who wants every line of the trace.
pub type Observer = Box<dyn FnMut(&str)>;

/// The trace: the last lines, and whoever wants every line.
#[derive(Default)]
pub(crate) struct Log {
    pub(crate) recent: VecDeque<String>,
    pub(crate) observer: Option<Observer>,
}

impl Sim {
    /// Records a line of the trace.
    pub(crate) fn log(&mut self, what: String) {
        let line = format!(
            "#{:<8} {:>9} ms  {what}",
            self.steps,
            self.now.saturating_sub(START)
        );
        if let Some(observer) = self.log.observer.as_mut() {
            observer(&line);
        }
        if self.log.recent.len() == RECENT {
            self.log.recent.pop_front();
        }
        self.log.recent.push_back(line);
    }

    /// Records the first broken invariant.
    pub(crate) fn violate(&mut self, what: String) {
        self.log(format!("VIOLATION: {what}"));
        if self.checks.violation.is_none() {
            self.checks.violation = Some(Violation {
                step: self.steps,
                at_ms: self.now.saturating_sub(START),
                what,
            });
        }
    }

    /// Node `from` gave `stage` of `run` to node `to`.
    pub(crate) fn note_given(&mut self, from: usize, to: usize, run: &str, stage: &str) {
        self.checks
            .given
            .insert((from, to, run.to_owned(), stage.to_owned()));
        self.checks
            .givers
            .insert((run.to_owned(), stage.to_owned()), from);
    }

    /// Node `n` took a receipt of `stage` of `run` from the node whose message it handles:
    /// it must have given it the stage.
    pub(crate) fn check_receipt_taken(&mut self, n: usize, run: &str, stage: &str) {
        let Some(peer) = self.checks.peer else {
            return;
        };
        let key = (n, peer, run.to_owned(), stage.to_owned());
        if !self.checks.given.contains(&key) {
            let (me, from) = (&self.nodes[n].name, &self.nodes[peer].name);
            let what = format!(
                "{me} accepted a receipt of {stage} of {run} from {from}, to which it never \
                 gave the stage"
            );
            self.violate(what);
        }
    }

    /// Node `n` accepted offer `id`: no other handoff of the stage was accepted, and its
    /// chain holds no forged receipt and no receipt of an org its stage's owner is not
    /// bound to.
    pub(crate) fn check_accepted(&mut self, n: usize, id: HandoffId, offer: &Offer) {
        let key = (offer.run.clone(), offer.stage.clone());
        match self.checks.accepted.get(&key) {
            Some(first) if *first != id => {
                let what = format!(
                    "{} accepted handoff {id} of {} of {}, whose handoff {first} was accepted \
                     already: the stage is accepted twice",
                    self.nodes[n].name, offer.stage, offer.run
                );
                return self.violate(what);
            }
            Some(_) => {}
            None => {
                self.checks.accepted.insert(key, id);
            }
        }
        let Some(info) = self.runs.get(&offer.run) else {
            return;
        };
        let origin_org = self.nodes[info.origin].org.clone();
        let plan = std::sync::Arc::clone(&info.plan);
        for envelope in &offer.receipts {
            let forged = self.checks.forged.contains(&digest_of(envelope));
            let Ok(receipt) = envelope.payload_as::<Receipt>() else {
                continue;
            };
            let signer_org = self
                .by_key
                .get(&receipt.node.key)
                .map(|&s| self.nodes[s].org.clone());
            let owner = plan.stage(&receipt.stage).map(|stage| match &stage.owner {
                None => origin_org.clone(),
                Some(owner) => owner.clone(),
            });
            let wrong = owner.is_some() && signer_org != owner;
            if forged || wrong {
                let what = format!(
                    "{} accepted the offer of {} of {} with a hostile receipt of {} signed by \
                     {} (org {}; the stage's owner is {})",
                    self.nodes[n].name,
                    offer.stage,
                    offer.run,
                    receipt.stage,
                    receipt.node.name,
                    signer_org.unwrap_or_default(),
                    owner.unwrap_or_default()
                );
                return self.violate(what);
            }
        }
    }

    /// Node `n` starts `stage` of `run`: never on two nodes, never twice in one
    /// incarnation.
    pub(crate) fn check_start(&mut self, n: usize, run: &str, stage: &str) {
        let epoch = self.nodes[n].epoch;
        let key = (run.to_owned(), stage.to_owned());
        let what = match self.checks.starts.get_mut(&key) {
            None => {
                self.checks.starts.insert(key, (n, BTreeSet::from([epoch])));
                None
            }
            Some((first, _)) if *first != n => Some(format!(
                "{stage} of {run} starts on {}, but it started on {} already: it runs twice",
                self.nodes[n].name, self.nodes[*first].name
            )),
            Some((_, epochs)) => (!epochs.insert(epoch)).then(|| {
                format!(
                    "{stage} of {run} starts again on {} without a crash in between: it runs \
                     twice",
                    self.nodes[n].name
                )
            }),
        };
        if let Some(what) = what {
            self.violate(what);
        }
    }

    /// A successful receipt of `stage` of `run` was signed by node `n`: when every stage
    /// has one, the run finished, and the receipts its nodes signed must verify as its
    /// chain.
    pub(crate) fn note_success(&mut self, n: usize, run: &str, stage: &str) {
        let Some(info) = self.runs.get_mut(run) else {
            return;
        };
        info.succeeded.insert(stage.to_owned());
        if info.finished || info.succeeded.len() < info.plan.body.stages.len() {
            return;
        }
        info.finished = true;
        if info.failed.is_none() {
            self.ended += 1;
        }
        let plan = std::sync::Arc::clone(&info.plan);
        let held = info.signed.clone();
        let certificates: Vec<_> = held
            .iter()
            .filter_map(|envelope| envelope.payload_as::<Receipt>().ok())
            .filter_map(|receipt| self.by_key.get(&receipt.node.key))
            .map(|&s| self.nodes[s].cert.clone())
            .collect();
        let trust = self.auditor_trust();
        let owners = Owners::new(&trust, None, &[]);
        let report = verify_chain(run, &plan, &held, &certificates, &owners, self.now / 1000);
        let bad = report
            .stages
            .iter()
            .find(|s| s.status != StageStatus::Verified);
        if let Some(bad) = bad {
            let what = format!(
                "run {run} finished on {}, but its chain does not verify: stage {} is {:?}",
                self.nodes[n].name, bad.stage, bad.status
            );
            self.violate(what);
        } else {
            self.log(format!("run {run} finished; its chain verifies"));
        }
    }
}
