//! Hostile nodes: members of a trusted org that misbehave. They hold a real node key and
//! certificate of their org, so everything they send is well signed; what they send is
//! what the rules must refuse.
//!
//! Each misdeed, at random:
//!
//! - **forged receipt**: a successful receipt, signed with its own key, for a stage its org
//!   does not own, sent to the node that gave that stage to another node, as if it ran it
//!   (with [`Faults::stray`](super::Faults::stray), also to the node that started the run,
//!   whether or not it gave the stage to anyone);
//! - **forged chain**: an offer of a stage to a node of its owner org, carrying forged
//!   receipts for the stages before it (at least one of which another org owns);
//! - **replayed offer**: an offer it received, sent again as is to another node of its own
//!   org (which also answers to the stage's owner);
//! - and (with [`Faults::stray`](super::Faults::stray)), whenever it runs an offered stage,
//!   **its receipt to the wrong node**: a copy to the node that started the run, which did
//!   not give it the stage.
//!
//! Every forged receipt's digest is remembered, so the checks know one if a node takes it.

use std::sync::Arc;

use otto_protocol::{Digest, Envelope, HandoffId, Offer, Outcome, Receipt, RunSource};

use super::Sim;
use super::net::Message;
use super::node::{sha256, sign};
use crate::rules::{self, digest_of};

impl Sim {
    /// Hostile node `n` does one thing it should not.
    pub(super) fn mischief(&mut self, n: usize) {
        if self.nodes[n].machine.is_none() || self.runs.is_empty() {
            return;
        }
        match self.rng.next() % 3 {
            0 => self.forge_receipt(n),
            1 => self.forge_chain(n),
            _ => self.replay_offer(n),
        }
    }

    /// A run and a stage of it whose owner org is not `n`'s, picked at random.
    fn foreign_stage(&mut self, n: usize) -> Option<(String, usize)> {
        let pick = usize::try_from(self.rng.next() % self.runs.len() as u64).ok()?;
        let (run, info) = self.runs.iter().nth(pick)?;
        let mine = &self.nodes[n].org;
        let origin_org = &self.nodes[info.origin].org;
        let foreign: Vec<usize> = info
            .plan
            .body
            .stages
            .iter()
            .enumerate()
            .filter(|(_, s)| s.owner.as_ref().unwrap_or(origin_org) != mine)
            .map(|(i, _)| i)
            .collect();
        let i = *foreign.get(usize::try_from(self.rng.next()).ok()? % foreign.len().max(1))?;
        Some((run.clone(), i))
    }

    /// A successful receipt of `stage` of `run` signed by `n`, remembered as forged.
    fn forged(&mut self, n: usize, run: &str, stage: &str, upstream: Vec<Digest>) -> Envelope {
        let node = &self.nodes[n];
        let seconds = self.now / 1000;
        let plan_digest = self
            .runs
            .get(run)
            .map(|info| info.plan.digest())
            .unwrap_or_default();
        let receipt = Receipt {
            run: run.to_owned(),
            plan_digest,
            stage: stage.to_owned(),
            attempt: 1,
            outcome: Outcome::Success,
            outputs: Vec::new(),
            log_digest: sha256(b"forged"),
            started_at: seconds.saturating_sub(1),
            finished_at: seconds,
            started_at_ms: None,
            finished_at_ms: None,
            upstream,
            node: otto_protocol::NodeIdentity {
                name: node.name.clone(),
                org: node.org.clone(),
                key: otto_protocol::KeyBytes(*node.key.public_key().as_bytes()),
            },
        };
        let envelope = sign(&node.key, &receipt);
        self.checks.forged.insert(digest_of(&envelope));
        envelope
    }

    fn forge_receipt(&mut self, n: usize) {
        let Some((run, i)) = self.foreign_stage(n) else {
            return;
        };
        let Some(info) = self.runs.get(&run) else {
            return;
        };
        let stage = info.plan.body.stages[i].clone();
        // To the node that gave the stage to another, which waits for its receipt; with
        // stray receipts on, also to the node that started the run, whether or not it gave
        // the stage to anyone.
        let giver = self.checks.giver(&run, &stage.id);
        let to = if self.config.faults.stray && self.rng.next().is_multiple_of(2) {
            Some(info.origin)
        } else {
            giver
        };
        let Some(to) = to.filter(|to| *to != n) else {
            return;
        };
        let envelope = self.forged(n, &run, &stage.id, Vec::new());
        let (me, them) = (self.nodes[n].name.clone(), self.nodes[to].name.clone());
        self.log(format!(
            "HOSTILE {me} sends {them} a forged receipt of {} of {run}",
            stage.id
        ));
        self.send(n, to, Message::Receipt(HandoffId([0; 16]), envelope));
    }

    fn forge_chain(&mut self, n: usize) {
        let Some((run, i)) = self.foreign_stage(n) else {
            return;
        };
        let Some(info) = self.runs.get(&run) else {
            return;
        };
        let plan = Arc::clone(&info.plan);
        let origin_org = self.nodes[info.origin].org.clone();
        let stage = &plan.body.stages[i];
        let before = rules::upstream(&plan.body, &stage.id);
        let mine = self.nodes[n].org.clone();
        // Stages of its own org it may vouch for: the chain must lie about another org's.
        let lies = before
            .iter()
            .any(|s| *s.owner.as_ref().unwrap_or(&origin_org) != mine);
        let Some(to) = self.owner(&run, stage).filter(|to| *to != n) else {
            return;
        };
        if !lies {
            return;
        }
        let mut receipts = Vec::new();
        for s in &before {
            let upstream = receipts.iter().map(digest_of).collect();
            let forged = self.forged(n, &run, &s.id, upstream);
            receipts.push(forged);
        }
        let seconds = self.now / 1000;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.rng.next().to_le_bytes());
        id[8..].copy_from_slice(&self.rng.next().to_le_bytes());
        let offer = Offer {
            id: HandoffId(id),
            run: run.clone(),
            source: RunSource::Snapshot {
                digest: sha256(run.as_bytes()),
            },
            plan: plan.canonical_bytes(),
            plan_digest: plan.digest(),
            stage: stage.id.clone(),
            attempt: 1,
            facts: otto_protocol::Facts::default(),
            inputs: Vec::new(),
            receipts,
            sender: self.nodes[n].cert.clone(),
            expires_at: seconds + self.config.offer_ttl,
            created_at: seconds,
            certificates: Vec::new(),
            retry: None,
        };
        let envelope = sign(&self.nodes[n].key, &offer);
        let (me, them) = (self.nodes[n].name.clone(), self.nodes[to].name.clone());
        self.log(format!(
            "HOSTILE {me} offers {them} {} of {run} with a forged chain",
            stage.id
        ));
        self.send(n, to, Message::Offer(envelope));
    }

    fn replay_offer(&mut self, n: usize) {
        let seen = self.nodes[n].seen.len() as u64;
        if seen == 0 {
            return;
        }
        let Ok(pick) = usize::try_from(self.rng.next() % seen) else {
            return;
        };
        let envelope = self.nodes[n].seen[pick].clone();
        let org = self.nodes[n].org.clone();
        let siblings: Vec<usize> = self
            .by_org
            .get(&org)
            .map(|nodes| nodes.iter().copied().filter(|s| *s != n).collect())
            .unwrap_or_default();
        let Some(&to) = siblings
            .get(usize::try_from(self.rng.next() % (siblings.len() as u64).max(1)).unwrap_or(0))
        else {
            return;
        };
        let what = envelope
            .payload_as::<Offer>()
            .map(|o| format!("{} of {} ({})", o.stage, o.run, o.id))
            .unwrap_or_default();
        let (me, them) = (self.nodes[n].name.clone(), self.nodes[to].name.clone());
        self.log(format!(
            "HOSTILE {me} replays the offer of {what} to {them}"
        ));
        self.send(n, to, Message::Offer(envelope));
    }

    /// Hostile node `n` ran an offered stage of `run` for `given_by`: it also sends the
    /// receipt to the node that started the run, which did not give it the stage.
    pub(super) fn misdirect(&mut self, n: usize, run: &str, given_by: &str, receipt: &Envelope) {
        if !self.nodes[n].hostile || !self.faulty() || !self.config.faults.stray {
            return;
        }
        let Some(origin) = self.runs.get(run).map(|info| info.origin) else {
            return;
        };
        if origin == n || self.nodes[origin].name == given_by {
            return;
        }
        let (me, them) = (self.nodes[n].name.clone(), self.nodes[origin].name.clone());
        self.log(format!(
            "HOSTILE {me} sends its receipt for {run} to {them} as well"
        ));
        self.send(
            n,
            origin,
            Message::Receipt(HandoffId([0; 16]), receipt.clone()),
        );
    }
}
