//! The node the simulator plays around each machine: its durable records, its runs, and
//! how it carries out the machine's actions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use otto_pipeline::Plan;
use otto_protocol::{
    Artifact, Digest, Envelope, HandoffId, KeyBytes, NodeIdentity, Offer, Outcome, Payload,
    Receipt, RunSource,
};
use otto_trust::cert::issue_cert;
use otto_trust::{
    CertSpec, Definitions, NodeKey, OrgKey, Policy, PublicKey, TrustStore, Unverified, dsse,
};
use sha2::{Digest as _, Sha256};

use super::net::{Item, Message, Timer, Told};
use super::{OfferInfo, RunState, START, SenderOutcome, Sim, Start};
use crate::machine::command::{self, InboxRecord, OutboxRecord};
use crate::machine::{
    Action, Command, Event, InboxState, Machine, Verdict, event, mix64, offer_id,
};
use crate::relay::{self, Relays};
use crate::rules::{self, Held, Next, digest_of};
use crate::verify::VerifyContext;

/// One simulated node.
pub(super) struct Node {
    pub(super) name: String,
    /// The owner names it answers to: its org's and its own.
    pub(super) names: Vec<String>,
    /// Whether it misbehaves (see [`Faults::hostile`](super::Faults::hostile)).
    pub(super) hostile: bool,
    /// What a hostile node saw and may replay: offers it received, receipts in them.
    pub(super) seen: Vec<Envelope>,
    pub(super) org: String,
    pub(super) key: NodeKey,
    pub(super) cert: Envelope,
    pub(super) trust: TrustStore,
    /// `None` while the node is down.
    pub(super) machine: Option<Machine>,
    /// Incarnation: timers of an earlier one are void.
    pub(super) epoch: u32,
    /// The latest [`Action::Wakeup`].
    pub(super) wake_at: Option<u64>,
    pub(super) durable: Durable,
    /// Stages this incarnation runs locally (not through a handoff): (run, stage).
    pub(super) running: BTreeSet<(String, String)>,
    /// The ends this incarnation vouched for (the stage-end relay; memory only).
    pub(super) relays: Relays,
    /// The nodes that follow each run through this one (subscribed to the run's topic
    /// while connected to it), which its gossip reaches; memory only.
    pub(super) followers: BTreeMap<String, BTreeSet<usize>>,
}

/// What a node keeps across crashes.
#[derive(Default)]
pub(super) struct Durable {
    pub(super) outbox: BTreeMap<HandoffId, OutboxRecord>,
    /// Offers accepted by their owner whose receipt has not come, by (run, stage), as the
    /// node's `given` table keeps them.
    pub(super) given: BTreeMap<(String, String), OutboxRecord>,
    pub(super) inbox: BTreeMap<HandoffId, InboxEntry>,
    pub(super) runs: BTreeMap<String, RunRecord>,
}

/// A received offer as the node's inbox keeps it.
pub(super) struct InboxEntry {
    pub(super) peer: String,
    pub(super) offer: Envelope,
    pub(super) received_at: u64,
    pub(super) state: InboxState,
    /// The signed answer.
    pub(super) answer: Option<Envelope>,
    pub(super) last_attempt: Option<u32>,
    pub(super) receipt: Option<Envelope>,
}

/// What a node knows about a run.
pub(super) struct RunRecord {
    pub(super) plan: Arc<Plan>,
    /// Receipts held, as the node's store holds them.
    pub(super) receipts: Vec<Held>,
    /// Stages this node handed off, and the handoff id.
    pub(super) handed: BTreeMap<String, HandoffId>,
    /// Attempts of stages run locally, begun so far.
    pub(super) local_attempts: BTreeMap<String, u32>,
    pub(super) failed: Option<RunState>,
    /// Ends of stages learnt without a receipt (a relay), with their attempt, as the
    /// node's stage table records them.
    pub(super) told: BTreeMap<String, (u32, Outcome)>,
}

/// What the simulator knows about a run as a whole.
pub(super) struct RunInfo {
    pub(super) origin: usize,
    pub(super) plan: Arc<Plan>,
    pub(super) signed: Vec<Envelope>,
    /// Stages with a successful receipt.
    pub(super) succeeded: BTreeSet<String>,
    /// Every stage has a successful receipt (and the chain was checked).
    pub(super) finished: bool,
    /// Why the run failed, as the first node that failed it said.
    pub(super) failed: Option<RunState>,
}

impl Sim {
    /// The node an offer of `stage` of run `run` goes to ([`rules::offer_to`]): the node
    /// the plan's binding names as the origin for a stage without an owner, else one of
    /// the owner org's nodes, picked by the run (as a node picks one it knows).
    pub(super) fn owner(&self, run: &str, stage: &otto_pipeline::plan::Stage) -> Option<usize> {
        let body = &self.runs.get(run)?.plan.body;
        let owner = match rules::offer_to(body, stage) {
            rules::OfferTo::Origin(key) => {
                return self.by_key.get(&KeyBytes(*key.as_bytes())).copied();
            }
            rules::OfferTo::Owner(owner) => owner,
        };
        let nodes = self.owners_of(run, &owner);
        let pick = mix64(
            run.bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b)),
        );
        let len = u64::try_from(nodes.len()).ok().filter(|len| *len > 0)?;
        nodes.get(usize::try_from(pick % len).ok()?).copied()
    }

    /// Every node that answers to owner name `owner` in run `run`.
    pub(super) fn owners_of(&self, run: &str, owner: &str) -> Vec<usize> {
        if owner == otto_pipeline::plan::ORIGIN {
            return self
                .runs
                .get(run)
                .map(|info| vec![info.origin])
                .unwrap_or_default();
        }
        self.by_org.get(owner).cloned().unwrap_or_default()
    }

    /// Starts (or restarts) node `n` from its durable maps.
    pub(super) fn boot(&mut self, n: usize) {
        let seed = mix64(self.config.seed ^ ((n as u64) << 32) ^ u64::from(self.nodes[n].epoch));
        let mut machine = Machine::new(self.config.machine, seed);
        let durable = &self.nodes[n].durable;
        let restore = command::Restore {
            given: durable.given.values().cloned().collect(),
            outbox: durable.outbox.values().cloned().collect(),
            inbox: durable.inbox.values().map(InboxEntry::record).collect(),
            now: self.now,
        };
        let event = machine.handle(Command::Restore(restore));
        let actions: Vec<Action> = machine.drain_actions().collect();
        self.nodes[n].machine = Some(machine);
        self.nodes[n].wake_at = None;
        self.nodes[n].running.clear();
        self.nodes[n].relays = Relays::default();
        self.nodes[n].followers.clear();
        self.settle(n, &event, actions, None);
        self.advance(n);
        self.follow_again(n);
    }

    pub(super) fn crash(&mut self, n: usize, down_for: u64) {
        let node = &mut self.nodes[n];
        if node.machine.is_none() {
            return;
        }
        node.machine = None;
        node.wake_at = None;
        node.running.clear();
        node.relays = Relays::default();
        node.followers.clear();
        node.epoch += 1;
        // Its connections close: no node's gossip reaches it until it follows again.
        for other in &mut self.nodes {
            for followers in other.followers.values_mut() {
                followers.remove(&n);
            }
        }
        let node = &mut self.nodes[n];
        *self.trace.crashes.entry(node.name.clone()).or_default() += 1;
        let what = format!("{} crashes", node.name);
        self.log(what);
        self.schedule(self.now + down_for.max(1), Item::Restart { node: n });
    }

    pub(super) fn offer_received(
        &mut self,
        n: usize,
        peer: String,
        from: PublicKey,
        envelope: Envelope,
    ) {
        let now = self.now;
        // This node answers to its org's name and its own; it runs the stages without an
        // owner of the runs it started (with the plan it started them with).
        let names = self.nodes[n].names.clone();
        let runs = &self.runs;
        let started = |run: &str, digest: &str| {
            runs.get(run)
                .is_some_and(|info| info.origin == n && info.plan.digest() == digest)
        };
        let me = self.nodes[n].key.public_key();
        let node = &mut self.nodes[n];
        if node.hostile && node.seen.len() < 64 {
            node.seen.push(envelope.clone());
        }
        let Some(org_key) = node.trust.org(&node.org).map(|o| o.key) else {
            return;
        };
        let Some(machine) = node.machine.as_mut() else {
            return;
        };
        let inbox = &node.durable.inbox;
        let stored = offer_id(&envelope)
            .and_then(|id| inbox.get(&id))
            .map(InboxEntry::record);
        let seen = |id: &HandoffId| inbox.contains_key(id);
        let verify = VerifyContext::new(&node.trust, &org_key, &names)
            .with_seen(&seen)
            .with_from(&from)
            .with_origin(&me, &started);
        let event = machine.handle(Command::OfferReceived(command::OfferReceived {
            peer,
            envelope: Unverified::new(envelope),
            stored,
            verify: &verify,
            now,
        }));
        let actions: Vec<Action> = machine.drain_actions().collect();
        self.settle(n, &event, actions, None);
        self.advance(n);
    }

    /// Feeds a command to node `n` and carries out what follows. `request` is the handoff
    /// id of the request being answered, for acknowledgements.
    pub(super) fn handle(&mut self, n: usize, command: Command<'_>, request: Option<HandoffId>) {
        let Some(machine) = self.nodes[n].machine.as_mut() else {
            return;
        };
        let event = machine.handle(command);
        let actions: Vec<Action> = machine.drain_actions().collect();
        self.settle(n, &event, actions, request);
        self.advance(n);
    }

    /// Records the outcome of `event` durably, then carries out `actions` in order,
    /// maybe crashing half-way.
    pub(super) fn settle(
        &mut self,
        n: usize,
        event: &Event,
        actions: Vec<Action>,
        request: Option<HandoffId>,
    ) {
        self.record(n, event);
        let faults = &self.config.faults;
        let cut = if !actions.is_empty()
            && self.faulty()
            && self.torn < faults.max_torn
            && self.rng.chance(faults.torn)
        {
            Some(self.rng.range((0, actions.len() as u64 - 1)))
        } else {
            None
        };
        for (k, action) in actions.into_iter().enumerate() {
            if cut == Some(k as u64) {
                self.torn += 1;
                self.crash(n, self.config.faults.down_for);
                return;
            }
            self.act(n, action, request);
        }
    }

    /// The durable outcome of a sender's event: a handoff accepted, rejected or expired.
    pub(super) fn record(&mut self, n: usize, event: &Event) {
        let expired: &[event::Expired] = match event {
            Event::Tick(tick) => &tick.expired,
            Event::Restore(restore) => &restore.expired,
            Event::Answer(event::Answer::Accepted { id, run, stage, .. }) => {
                self.trace
                    .outcomes
                    .entry(*id)
                    .or_default()
                    .push(SenderOutcome::Accepted);
                // Kept as given until its receipt comes, before the outbox lets it go.
                let durable = &mut self.nodes[n].durable;
                if let Some(record) = durable.outbox.get(id).cloned() {
                    durable.given.insert((run.clone(), stage.clone()), record);
                }
                return;
            }
            Event::Answer(event::Answer::Rejected {
                id,
                run,
                stage,
                peer,
                code,
                message,
                hint,
            }) => {
                self.trace
                    .outcomes
                    .entry(*id)
                    .or_default()
                    .push(SenderOutcome::Rejected {
                        code: code.clone(),
                        message: message.clone(),
                        hint: hint.clone(),
                    });
                let failed = RunState::Failed {
                    stage: stage.clone(),
                    code: Some(code.clone()),
                    message: format!("{peer} rejected {stage}: {message}"),
                    hint: hint.clone(),
                };
                self.fail_run(n, run, failed);
                return;
            }
            Event::Receipt(event::Receipt::StageFinished {
                handoff,
                run,
                stage,
                attempt,
                ..
            }) => {
                let me = self.nodes[n].name.clone();
                self.log(format!(
                    "{me} takes the receipt of {stage}#{attempt} of {run}"
                ));
                self.check_receipt_taken(n, run, stage);
                // A receipt proves the offer was accepted, even if the accept was lost.
                if let Some(id) = handoff {
                    let outcomes = self.trace.outcomes.entry(*id).or_default();
                    if outcomes.is_empty() {
                        outcomes.push(SenderOutcome::Accepted);
                    }
                }
                return;
            }
            _ => return,
        };
        for gone in expired {
            self.trace
                .outcomes
                .entry(gone.id)
                .or_default()
                .push(SenderOutcome::Expired);
            let failed = RunState::Failed {
                stage: gone.stage.clone(),
                code: None,
                message: format!("{} did not answer the offer of {}", gone.peer, gone.stage),
                hint: None,
            };
            self.fail_run(n, &gone.run, failed);
        }
    }

    /// Fails run `run` on node `n` (the first reason stays).
    pub(super) fn fail_run(&mut self, n: usize, run: &str, failed: RunState) {
        let me = self.nodes[n].name.clone();
        self.log(format!("{me} fails {run}: {failed:?}"));
        if let Some(record) = self.nodes[n].durable.runs.get_mut(run) {
            record.failed.get_or_insert(failed.clone());
        }
        if let Some(info) = self.runs.get_mut(run)
            && info.failed.is_none()
        {
            if !info.finished {
                self.ended += 1;
            }
            info.failed = Some(failed);
        }
    }

    /// Carries out one action of node `n`.
    pub(super) fn act(&mut self, n: usize, action: Action, request: Option<HandoffId>) {
        let now = self.now;
        match action {
            Action::PersistOutbox {
                id,
                run,
                stage,
                peer,
                envelope,
                ..
            } => {
                let to = peer.clone();
                let node = &mut self.nodes[n];
                node.durable.outbox.insert(
                    id,
                    OutboxRecord {
                        peer,
                        envelope: (*envelope).clone(),
                        tries: 0,
                    },
                );
                if let Some(record) = node.durable.runs.get_mut(&run) {
                    record.handed.insert(stage.clone(), id);
                }
                let from = node.name.clone();
                if let Some(&receiver) = self.by_name.get(&to) {
                    self.note_given(n, receiver, &run, &stage);
                }
                self.log(format!("{from} offers {stage} of {run} to {to} ({id})"));
                self.trace.offers.insert(
                    id,
                    OfferInfo {
                        from,
                        to,
                        run,
                        stage,
                    },
                );
            }
            Action::Send { peer, envelope, .. } => {
                if let Some(to) = self.index(&peer) {
                    self.send(n, to, Message::Offer((*envelope).clone()));
                }
            }
            Action::RetryOutbox { id, tries, .. } => {
                if let Some(record) = self.nodes[n].durable.outbox.get_mut(&id) {
                    record.tries = tries;
                }
            }
            Action::AckOutbox { id } => {
                self.nodes[n].durable.outbox.remove(&id);
            }
            Action::PersistReceipt {
                run,
                stage,
                attempt,
                receipt,
            } => {
                self.nodes[n]
                    .durable
                    .given
                    .remove(&(run.clone(), stage.clone()));
                if let Ok(decoded) = receipt.payload_as::<Receipt>() {
                    self.learn_end(n, &decoded);
                }
                if let (Some(record), Ok(decoded)) = (
                    self.nodes[n].durable.runs.get_mut(&run),
                    receipt.payload_as::<Receipt>(),
                ) {
                    debug_assert_eq!((&decoded.stage, decoded.attempt), (&stage, attempt));
                    record.add(decoded, (*receipt).clone());
                }
            }
            Action::AckReceipt { peer, .. } => {
                if let (Some(to), Some(id)) = (self.index(&peer), request) {
                    self.send(n, to, Message::ReceiptAck(id));
                }
            }
            Action::RefuseReceipt { peer, reason, .. } => {
                if let (Some(to), Some(id)) = (self.index(&peer), request) {
                    self.send(n, to, Message::ReceiptRefused(id, reason));
                }
            }
            Action::PersistInbox {
                id,
                peer,
                offer,
                received_at,
                state,
                verdict,
            } => self.persist_inbox(n, id, peer, &offer, received_at, state, &verdict),
            Action::Reply { id, peer, verdict } => {
                self.trace
                    .replies
                    .entry(id)
                    .or_default()
                    .push(verdict.clone());
                let answer = self.sign_verdict(n, &verdict);
                if let Some(to) = self.index(&peer) {
                    self.send(n, to, Message::Answer(id, answer));
                }
            }
            Action::FetchArtifacts { id, .. } => {
                let ok = !(self.faulty() && self.rng.chance(self.config.faults.fetch_failure));
                let at = now + self.rng.range(self.config.fetch_time);
                let epoch = self.nodes[n].epoch;
                self.schedule(
                    at,
                    Item::Local {
                        node: n,
                        epoch,
                        event: Timer::Fetch { id, ok },
                    },
                );
            }
            Action::StartStage { id, attempt, offer } => {
                let me = self.nodes[n].name.clone();
                self.log(format!(
                    "{me} starts offered {}#{attempt} of {}",
                    offer.stage, offer.run
                ));
                self.check_start(n, &offer.run, &offer.stage);
                let node = &mut self.nodes[n];
                if let Some(entry) = node.durable.inbox.get_mut(&id) {
                    entry.last_attempt = Some(attempt);
                }
                let epoch = node.epoch;
                self.trace.starts.push(Start {
                    node: node.name.clone(),
                    id,
                    attempt,
                    epoch,
                });
                let at = now + self.rng.range(self.config.stage_time);
                self.schedule(
                    at,
                    Item::Local {
                        node: n,
                        epoch,
                        event: Timer::OfferedStage { id, attempt },
                    },
                );
            }
            Action::SendReceipt { id, peer, receipt } => {
                if let Some(to) = self.index(&peer) {
                    self.send(n, to, Message::Receipt(id, (*receipt).clone()));
                }
            }
            Action::InboxDone { id } => {
                if let Some(entry) = self.nodes[n].durable.inbox.get_mut(&id) {
                    entry.state = InboxState::Done;
                }
            }
            Action::Wakeup { at } => {
                self.nodes[n].wake_at = Some(at);
                let epoch = self.nodes[n].epoch;
                self.schedule(at, Item::Wake { node: n, epoch, at });
            }
        }
    }

    /// The store's `inbox_put`: the first entry for an id stays; an entry without an
    /// answer takes the answer.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn persist_inbox(
        &mut self,
        n: usize,
        id: HandoffId,
        peer: String,
        offer: &Envelope,
        received_at: u64,
        state: InboxState,
        verdict: &Verdict,
    ) {
        let answer = self.sign_verdict(n, verdict);
        self.trace
            .decisions
            .entry(id)
            .or_insert_with(|| verdict.clone());
        if let Verdict::Reject(reject) = verdict {
            let me = self.nodes[n].name.clone();
            self.log(format!(
                "{me} rejects {id}: {} {}",
                reject.code, reject.message
            ));
        }
        let durable = &mut self.nodes[n].durable;
        match durable.inbox.get_mut(&id) {
            Some(entry) if entry.answer.is_none() => {
                entry.answer = Some(answer);
                entry.state = state;
            }
            Some(_) => return,
            None => {
                durable.inbox.insert(
                    id,
                    InboxEntry {
                        peer,
                        offer: offer.clone(),
                        received_at,
                        state,
                        answer: Some(answer),
                        last_attempt: None,
                        receipt: None,
                    },
                );
            }
        }
        if state != InboxState::Accepted {
            return;
        }
        // Accepting creates the node's record of the run, or adds to it, with the chain so
        // far (receipts sent to this node may still be on their way).
        let Ok(offer) = offer.payload_as::<Offer>() else {
            return;
        };
        let me = self.nodes[n].name.clone();
        self.log(format!(
            "{me} accepts {} of {} ({id})",
            offer.stage, offer.run
        ));
        self.check_accepted(n, id, &offer);
        // The offer's plan passed its digest check: it is the run's plan.
        let Some(plan) = self.runs.get(&offer.run).map(|info| Arc::clone(&info.plan)) else {
            return;
        };
        let record = self.nodes[n]
            .durable
            .runs
            .entry(offer.run.clone())
            .or_insert_with(|| RunRecord::new(plan));
        let mut learnt = Vec::new();
        for env in &offer.receipts {
            if let Ok(receipt) = env.payload_as::<Receipt>() {
                learnt.push(receipt.clone());
                record.add(receipt, env.clone());
            }
        }
        for receipt in learnt {
            self.learn_end(n, &receipt);
        }
    }

    /// Node `n` learns the end a receipt tells (before it holds it): the stage-end relay
    /// decides whether it vouches for it to the run's other nodes, as a node would on the
    /// run's gossip. It must vouch at most once for an end in one incarnation, never for
    /// a stage it ran, and its word must read back as the end it vouches for.
    pub(super) fn learn_end(&mut self, n: usize, receipt: &Receipt) {
        let node = &self.nodes[n];
        let known = node
            .durable
            .runs
            .get(&receipt.run)
            .is_some_and(|record| record.knows(&receipt.stage, receipt.attempt));
        let runs_here = receipt.node.key == KeyBytes(*node.key.public_key().as_bytes());
        let end = relay::End {
            run: receipt.run.clone(),
            stage: receipt.stage.clone(),
            attempt: receipt.attempt,
            outcome: receipt.outcome,
            origin: relay::origin_of(receipt),
        };
        self.learn(n, &end, runs_here, known);
    }

    /// Node `n` learns `end` (`runs_here`: of a stage it ran; `known`: it had recorded
    /// it): vouches for it the first time ([`Relays::relay`]), checked, and publishes the
    /// relay to the run's followers.
    fn learn(&mut self, n: usize, end: &relay::End, runs_here: bool, known: bool) {
        let node = &self.nodes[n];
        let (me, epoch) = (node.name.clone(), node.epoch);
        let now = self.now;
        let Some(status) = self.nodes[n].relays.relay(end, runs_here, known, &me, now) else {
            return;
        };
        self.trace.relays += 1;
        let what = format!("{}#{} of {}", end.stage, end.attempt, end.run);
        if runs_here {
            self.violate(format!("{me} vouches for the end of its own {what}"));
        } else if !self.checks.vouch(n, epoch, end) {
            self.violate(format!(
                "{me} vouches twice for the end of {what} in one incarnation"
            ));
        } else if relay::relayed(&status).as_ref() != Some(end) {
            self.violate(format!(
                "{me}'s relay of the end of {what} does not read back as that end"
            ));
        }
        self.publish(n, &end.run, Told::Relay(status));
    }

    /// Node `n` publishes `told` on the run's topic: it reaches the nodes that follow the
    /// run through `n`.
    fn publish(&mut self, n: usize, run: &str, told: Told) {
        let followers: Vec<usize> = self.nodes[n]
            .followers
            .get(run)
            .map(|f| f.iter().copied().collect())
            .unwrap_or_default();
        for to in followers {
            self.send_gossip(n, to, Message::Told(run.to_owned(), vec![told.clone()]));
        }
    }

    /// Node `n`, just (re)started, follows again the runs it holds that have not ended
    /// here, through the nodes that move their open stages on ([`relay::follow`]), as the
    /// node's exchange does: it subscribes to the run's topic and connects to them.
    fn follow_again(&mut self, n: usize) {
        let node = &self.nodes[n];
        let me = KeyBytes(*node.key.public_key().as_bytes());
        let mut asks = Vec::new();
        for (run, record) in &node.durable.runs {
            if record.failed.is_some() {
                continue;
            }
            let started_here = self.runs.get(run).is_some_and(|info| info.origin == n);
            let open = |stage: &str| !record.ended(stage);
            for key in relay::follow(&record.plan.body, &record.receipts, &me, started_here, open) {
                match self.by_key.get(&key) {
                    Some(&to) if to != n => asks.push((to, run.clone())),
                    _ => {}
                }
            }
        }
        // The runs of its offers out and of the stages it gave: it follows them too, and
        // the machine sends to those nodes (an offer again, an acknowledgement).
        let given = node
            .durable
            .given
            .iter()
            .map(|((run, _), record)| (run.clone(), record));
        let out = node.durable.outbox.values().filter_map(|record| {
            let offer = record.envelope.payload_as::<Offer>().ok()?;
            Some((offer.run, record))
        });
        for (run, record) in given.chain(out).collect::<Vec<_>>() {
            if let Some(to) = self.index(&record.peer) {
                asks.push((to, run));
            }
        }
        asks.sort_unstable();
        asks.dedup();
        for (to, run) in asks {
            self.send_gossip(n, to, Message::Follow(run));
        }
    }

    /// Node `from` follows `run` through node `n`: `n` tells it again the ends it holds
    /// ([`relay::again`]) and publishes the ends to come to it.
    pub(super) fn followed(&mut self, n: usize, from: usize, run: &str) {
        if self.nodes[n].machine.is_none() {
            return;
        }
        self.nodes[n]
            .followers
            .entry(run.to_owned())
            .or_default()
            .insert(from);
        let node = &self.nodes[n];
        let Some(record) = node.durable.runs.get(run) else {
            return;
        };
        let me = KeyBytes(*node.key.public_key().as_bytes());
        let unsigned = record.unsigned(run);
        let told: Vec<Told> = relay::again(&record.receipts, &unsigned, &me, &node.name, self.now)
            .into_iter()
            .map(|again| match again {
                relay::Again::Receipt(envelope) => Told::Receipt(envelope.clone()),
                relay::Again::Relay(status) => Told::Relay(status),
            })
            .collect();
        if !told.is_empty() {
            self.send_gossip(n, from, Message::Told(run.to_owned(), told));
        }
    }

    /// Node `n` takes the ends node `from` told of `run`: a receipt only as its runner
    /// signed it (what a node tells again of its own), a relay only if it reads back as
    /// an end; each is learnt (and vouched for the first time) and recorded, unless it is
    /// of a stage `n` ran.
    pub(super) fn told(&mut self, n: usize, from: usize, run: &str, told: Vec<Told>) {
        let teller = KeyBytes(*self.nodes[from].key.public_key().as_bytes());
        let mine = KeyBytes(*self.nodes[n].key.public_key().as_bytes());
        let (me, them) = (self.nodes[n].name.clone(), self.nodes[from].name.clone());
        for word in told {
            if self.nodes[n].machine.is_none() || !self.nodes[n].durable.runs.contains_key(run) {
                return;
            }
            match word {
                Told::Receipt(envelope) => {
                    let Ok(receipt) = envelope.payload_as::<Receipt>() else {
                        self.violate(format!("{them} tells {me} a receipt that does not decode"));
                        continue;
                    };
                    if receipt.node.key != teller || receipt.run != run {
                        self.violate(format!(
                            "{them} tells {me} of {run} a receipt it did not sign, of {} of {}",
                            receipt.stage, receipt.run
                        ));
                        continue;
                    }
                    self.learn_end(n, &receipt);
                    if let Some(record) = self.nodes[n].durable.runs.get_mut(run) {
                        record.add(receipt, envelope);
                    }
                }
                Told::Relay(status) => {
                    let Some(end) = relay::relayed(&status) else {
                        self.violate(format!(
                            "{them} tells {me} of {} of {run} a relay that does not read as an end",
                            status.stage
                        ));
                        continue;
                    };
                    let Some(record) = self.nodes[n].durable.runs.get(run) else {
                        continue;
                    };
                    // Another node's word never changes a stage this node ran.
                    let runs_here = record
                        .receipts
                        .iter()
                        .any(|(r, _)| r.stage == end.stage && r.node.key == mine);
                    if runs_here {
                        continue;
                    }
                    let known = record.knows(&end.stage, end.attempt);
                    self.learn(n, &end, false, known);
                    if let Some(record) = self.nodes[n].durable.runs.get_mut(run)
                        && !record.knows(&end.stage, end.attempt)
                    {
                        record
                            .told
                            .insert(end.stage.clone(), (end.attempt, end.outcome));
                        // A failed stage fails the run here, as a node records it.
                        if end.outcome == Outcome::Failure {
                            record.failed.get_or_insert(RunState::Failed {
                                stage: end.stage.clone(),
                                code: None,
                                message: end.origin.clone(),
                                hint: None,
                            });
                        }
                    }
                }
            }
        }
    }

    /// Whether node `node` knows how `stage` of `run` ended: it holds a receipt of it, or
    /// was told its end.
    pub fn knows_end(&self, node: &str, run: &str, stage: &str) -> bool {
        self.index(node)
            .and_then(|n| self.nodes[n].durable.runs.get(run))
            .is_some_and(|record| record.ended(stage))
    }

    pub(super) fn local(&mut self, n: usize, event: Timer) {
        let now = self.now;
        match event {
            Timer::Fetch { id, ok: true } => self.handle(
                n,
                Command::ArtifactsReady(command::ArtifactsReady { id, now }),
                None,
            ),
            Timer::Fetch { id, ok: false } => {
                let error = "fetch failed".to_owned();
                self.handle(
                    n,
                    Command::ArtifactsFailed(command::ArtifactsFailed { id, error, now }),
                    None,
                );
            }
            Timer::OfferedStage { id, attempt } => {
                let Some(offer) = self.nodes[n]
                    .durable
                    .inbox
                    .get(&id)
                    .and_then(|e| e.offer.payload_as::<Offer>().ok())
                else {
                    return;
                };
                let upstream = offer.receipts.iter().map(digest_of).collect();
                let plan_digest = offer.plan_digest.clone();
                let receipt =
                    self.sign_receipt(n, &offer.run, plan_digest, &offer.stage, attempt, upstream);
                let given_by = match self.nodes[n].durable.inbox.get_mut(&id) {
                    Some(entry) => {
                        entry.receipt = Some(receipt.clone());
                        entry.peer.clone()
                    }
                    None => String::new(),
                };
                self.misdirect(n, &offer.run, &given_by, &receipt);
                self.handle(
                    n,
                    Command::StageFinished(command::StageFinished { id, receipt, now }),
                    None,
                );
            }
            Timer::OwnStage {
                run,
                stage,
                attempt,
            } => {
                let key = (run.clone(), stage.clone());
                if !self.nodes[n].running.remove(&key) {
                    return;
                }
                let Some(record) = self.nodes[n].durable.runs.get(&run) else {
                    return;
                };
                let upstream = rules::upstream_digests(&record.plan.body, &stage, &record.receipts);
                let plan_digest = record.plan.digest();
                self.sign_receipt(n, &run, plan_digest, &stage, attempt, upstream);
                self.advance(n);
            }
        }
    }

    /// Signs the successful receipt of `attempt` of `stage`, stores it in the node's run
    /// record and in the simulator's list, and returns it.
    pub(super) fn sign_receipt(
        &mut self,
        n: usize,
        run: &str,
        plan_digest: String,
        stage: &str,
        attempt: u32,
        upstream: Vec<Digest>,
    ) -> Envelope {
        let node = &self.nodes[n];
        let seconds = self.now / 1000;
        let receipt = Receipt {
            run: run.to_owned(),
            plan_digest,
            stage: stage.to_owned(),
            attempt,
            outcome: Outcome::Success,
            outputs: vec![Artifact {
                name: format!("{stage}.out"),
                sha256: sha256(format!("{run}/{stage}/{attempt}").as_bytes()),
                size: 1,
            }],
            log_digest: sha256(format!("log {run}/{stage}/{attempt}").as_bytes()),
            started_at: seconds.saturating_sub(1),
            finished_at: seconds,
            started_at_ms: Some(self.now.saturating_sub(1000)),
            finished_at_ms: Some(self.now),
            upstream,
            node: NodeIdentity {
                name: node.name.clone(),
                org: node.org.clone(),
                key: KeyBytes(*node.key.public_key().as_bytes()),
            },
        };
        let envelope = sign(&node.key, &receipt);
        if let Some(record) = self.nodes[n].durable.runs.get_mut(run) {
            record.add(receipt, envelope.clone());
        }
        self.publish(n, run, Told::Receipt(envelope.clone()));
        if let Some(info) = self.runs.get_mut(run) {
            info.signed.push(envelope.clone());
        }
        self.note_success(n, run, stage);
        envelope
    }

    pub(super) fn sign_verdict(&self, n: usize, verdict: &Verdict) -> Envelope {
        let unsigned = verdict.to_unsigned();
        // Signing with an in-memory key cannot fail.
        dsse::sign(
            &unsigned.payload_type,
            unsigned.payload.clone(),
            &self.nodes[n].key,
        )
        .unwrap_or(unsigned)
    }

    /// Moves node `n`'s runs on: starts its own stages that are ready and hands the others
    /// to their owners.
    pub(super) fn advance(&mut self, n: usize) {
        if self.nodes[n].machine.is_none() {
            return;
        }
        let runs: Vec<String> = self.nodes[n].durable.runs.keys().cloned().collect();
        for run in runs {
            for (stage, owner) in self.ready(n, &run) {
                // A torn crash may have taken the node down half-way.
                if self.nodes[n].machine.is_none() {
                    return;
                }
                if owner == n {
                    self.start_local(n, &run, &stage);
                } else {
                    self.hand_off(n, &run, &stage, owner);
                }
            }
        }
    }

    /// The stages of `run` that node `n` should start or hand off now, with their owners:
    /// the node's own rules ([`rules::ready`], [`rules::owns`], [`rules::mover`],
    /// [`rules::next`]) over what it holds.
    pub(super) fn ready(&self, n: usize, run: &str) -> Vec<(String, usize)> {
        let node = &self.nodes[n];
        let Some(record) = node.durable.runs.get(run) else {
            return Vec::new();
        };
        if record.failed.is_some() {
            return Vec::new();
        }
        let me = KeyBytes(*node.key.public_key().as_bytes());
        let started_here = self.runs.get(run).is_some_and(|info| info.origin == n);
        let body = &record.plan.body;
        let open = |stage: &otto_pipeline::plan::Stage| {
            !record.succeeded(&stage.id)
                && !record.handed.contains_key(&stage.id)
                && !node.running.contains(&(run.to_owned(), stage.id.clone()))
        };
        let mut out = Vec::new();
        for stage in rules::ready(body, open, |need| record.succeeded(need)) {
            let owned = rules::owns(stage.owner.as_deref(), &node.names, started_here);
            let mover = rules::mover(body, stage, &record.receipts, &me, started_here);
            // Stages offered to this node run through its machine, never from here.
            let Some(owner) = (match rules::next(stage, owned, false, &mover) {
                Next::Run => Some(n),
                Next::HandOff { .. } => self.owner(run, stage),
                Next::Wait { .. } => None,
            }) else {
                continue;
            };
            out.push((stage.id.clone(), owner));
        }
        out
    }

    pub(super) fn start_local(&mut self, n: usize, run: &str, stage: &str) {
        let me = self.nodes[n].name.clone();
        self.log(format!("{me} starts its own {stage} of {run}"));
        self.check_start(n, run, stage);
        let node = &mut self.nodes[n];
        let Some(record) = node.durable.runs.get_mut(run) else {
            return;
        };
        let attempt = record.local_attempts.entry(stage.to_owned()).or_default();
        *attempt += 1;
        let attempt = *attempt;
        node.running.insert((run.to_owned(), stage.to_owned()));
        let epoch = node.epoch;
        let at = self.now + self.rng.range(self.config.stage_time);
        self.schedule(
            at,
            Item::Local {
                node: n,
                epoch,
                event: Timer::OwnStage {
                    run: run.to_owned(),
                    stage: stage.to_owned(),
                    attempt,
                },
            },
        );
    }

    pub(super) fn hand_off(&mut self, n: usize, run: &str, stage: &str, owner: usize) {
        let Some(record) = self.nodes[n].durable.runs.get(run) else {
            return;
        };
        let plan = Arc::clone(&record.plan);
        let me = KeyBytes(*self.nodes[n].key.public_key().as_bytes());
        let draft = rules::draft(&plan.body, stage, &record.receipts, &me, |receipt| {
            Some(receipt.node.name.clone())
        });
        let certificates: Vec<Envelope> = draft
            .signers
            .iter()
            .filter_map(|key| self.by_key.get(key))
            .map(|&signer| self.nodes[signer].cert.clone())
            .collect();
        let inputs = draft.inputs;
        let receipts: Vec<Envelope> = draft.chain.iter().map(|(_, env)| env.clone()).collect();
        let seconds = self.now / 1000;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.rng.next().to_le_bytes());
        id[8..].copy_from_slice(&self.rng.next().to_le_bytes());
        let offer = Offer {
            id: HandoffId(id),
            run: run.to_owned(),
            source: RunSource::Snapshot {
                digest: sha256(run.as_bytes()),
            },
            plan: plan.canonical_bytes(),
            plan_digest: plan.digest(),
            stage: stage.to_owned(),
            attempt: 1,
            facts: otto_protocol::Facts::default(),
            inputs,
            receipts,
            sender: self.nodes[n].cert.clone(),
            expires_at: seconds + self.config.offer_ttl,
            created_at: seconds,
            certificates,
            retry: None,
        };
        let envelope = sign(&self.nodes[n].key, &offer);
        let peer = self.nodes[owner].name.clone();
        let now = self.now;
        let Some(machine) = self.nodes[n].machine.as_mut() else {
            return;
        };
        let event = machine.handle(Command::HandOff(command::HandOff {
            peer,
            envelope,
            now,
        }));
        let actions: Vec<Action> = machine.drain_actions().collect();
        self.settle(n, &event, actions, None);
    }
}

impl Durable {
    /// What these records say of the stage of `receipt` (an envelope holding one): the
    /// peer it was given to, if it waits for its receipt, and whether this very receipt
    /// is held.
    pub(super) fn knows(&self, receipt: &Envelope) -> (Option<String>, bool) {
        let Ok(decoded) = receipt.payload_as::<Receipt>() else {
            return (None, false);
        };
        let given = self
            .given
            .get(&(decoded.run.clone(), decoded.stage.clone()))
            .map(|record| record.peer.clone());
        let held = self
            .runs
            .get(&decoded.run)
            .is_some_and(|record| record.receipts.iter().any(|(_, env)| env == receipt));
        (given, held)
    }
}

impl InboxEntry {
    /// The entry as the machine takes it back.
    pub(super) fn record(&self) -> InboxRecord {
        InboxRecord {
            peer: self.peer.clone(),
            offer: self.offer.clone(),
            received_at: self.received_at,
            state: self.state,
            verdict: self
                .answer
                .as_ref()
                .and_then(|answer| Verdict::from_envelope(answer).ok()),
            last_attempt: self.last_attempt,
            receipt: self.receipt.clone(),
        }
    }
}

impl RunRecord {
    pub(super) fn new(plan: Arc<Plan>) -> Self {
        Self {
            plan,
            receipts: Vec::new(),
            handed: BTreeMap::new(),
            local_attempts: BTreeMap::new(),
            failed: None,
            told: BTreeMap::new(),
        }
    }

    /// Holds a receipt, as the store's `put_receipt` does: the first one of an attempt stays.
    pub(super) fn add(&mut self, receipt: Receipt, envelope: Envelope) {
        let held = self
            .receipts
            .iter()
            .any(|(r, _)| r.stage == receipt.stage && r.attempt == receipt.attempt);
        if !held {
            self.receipts.push((receipt, envelope));
        }
    }

    /// Whether the end of attempt `attempt` of `stage` is recorded: a receipt of it, or
    /// an end told of it or of a later attempt.
    pub(super) fn knows(&self, stage: &str, attempt: u32) -> bool {
        self.receipts
            .iter()
            .any(|(r, _)| r.stage == stage && r.attempt == attempt)
            || self
                .told
                .get(stage)
                .is_some_and(|(told, _)| *told >= attempt)
    }

    /// The ends of `run` recorded here without a receipt, for [`relay::again`]: the
    /// stage that failed the run here (a refused handoff) and the failures told by relay.
    pub(super) fn unsigned(&self, run: &str) -> Vec<relay::End> {
        let mut ends = Vec::new();
        if let Some(RunState::Failed { stage, message, .. }) = &self.failed {
            ends.push(relay::End {
                run: run.to_owned(),
                stage: stage.clone(),
                attempt: self.told.get(stage).map_or(1, |(attempt, _)| *attempt),
                outcome: Outcome::Failure,
                origin: message.clone(),
            });
        }
        for (stage, (attempt, outcome)) in &self.told {
            if *outcome == Outcome::Failure && !ends.iter().any(|e| e.stage == *stage) {
                ends.push(relay::End {
                    run: run.to_owned(),
                    stage: stage.clone(),
                    attempt: *attempt,
                    outcome: *outcome,
                    origin: "failed on another node".to_owned(),
                });
            }
        }
        ends
    }

    /// Whether `stage` ended here: a receipt of it is held, or its end was told.
    pub(super) fn ended(&self, stage: &str) -> bool {
        rules::latest(&self.receipts, stage).is_some() || self.told.contains_key(stage)
    }

    /// Whether the latest receipt of `stage` says it succeeded.
    pub(super) fn succeeded(&self, stage: &str) -> bool {
        rules::latest(&self.receipts, stage)
            .is_some_and(|(receipt, _)| receipt.outcome == Outcome::Success)
    }
}

pub(super) fn open_policy() -> Policy {
    Policy {
        roles: Vec::new(),
        pipelines: vec!["*".to_owned()],
        stages: vec!["*".to_owned()],
        environments: vec!["*".to_owned()],
        definitions: Definitions::Approved,
        ..Policy::default()
    }
}

pub(super) fn certificate(org: &OrgKey, org_name: &str, node: &str, key: &NodeKey) -> Envelope {
    let spec = CertSpec {
        node: node.to_owned(),
        org: org_name.to_owned(),
        node_key: key.public_key(),
        roles: Vec::new(),
        not_before: START / 1000 - 86_400,
        not_after: START / 1000 + 10 * 365 * 86_400,
    };
    // The names come from the test and the window is fixed; a failure is a bug in the test,
    // which then sees every offer rejected.
    issue_cert(&spec, org).unwrap_or_else(|_| Envelope {
        payload: Vec::new(),
        signatures: Vec::new(),
        payload_type: String::new(),
    })
}

pub(super) fn sign<T: Payload>(key: &NodeKey, message: &T) -> Envelope {
    let payload_type = T::KIND.payload_type();
    let payload = otto_protocol::encode_payload(message);
    // Signing with an in-memory key cannot fail.
    dsse::sign(payload_type, payload.clone(), key).unwrap_or(Envelope {
        payload,
        signatures: Vec::new(),
        payload_type: payload_type.to_owned(),
    })
}

pub(super) fn sha256(bytes: &[u8]) -> Digest {
    Digest(Sha256::digest(bytes).into())
}

pub(super) fn seed_bytes(tag: u8, index: usize) -> [u8; 32] {
    let mut seed = [tag; 32];
    seed[0] = u8::try_from(index % 256).unwrap_or(0);
    seed[1] = tag ^ u8::try_from((index / 256) % 256).unwrap_or(0);
    seed
}
