//! The stage-end relay: what a node tells the other nodes of a run when it learns that a
//! stage it does not run ended, and how it takes such a word from another node.
//!
//! Trust is pairwise: a node records gossip only from nodes it trusts, so in a run that
//! crosses orgs which do not all trust each other, the end of a stage would never reach
//! the nodes two orgs away. So a node vouches for every end it learns of a stage it does
//! not run (a verified receipt, a `failed` status, a relay it takes): the first time, it
//! publishes one status event of its own ([`Relays::relay`]) with the final state, the
//! stage's attempt, `seq` [`RELAY_SEQ`] and a `detail` saying who ran the stage and who
//! relays it. Nodes that take its word ([`rules::may_tell`](crate::rules::may_tell)) read
//! the end back ([`relayed`]), record it, unless a success or skip would move a stage on
//! here before its own needs ended ([`may_record`]), and relay it once in turn, so the end
//! spreads org by org; "the first time" stops the echo.
//!
//! Gossip is lost on a node that is down, and the ends are told once: so when a node
//! (re)subscribes to a run's topic, or takes a receipt a node delivered to it, the nodes
//! that hold ends of the run tell them again ([`again`]): a node that was down while the
//! run went on (the node that started it, killed while another org's node moved the next
//! stage on to a third org) learns how it ended. Gossip reaches only the nodes connected
//! and subscribed, so a node that (re)starts follows again every run that has not ended
//! there, and reaches the nodes that move its open stages on ([`follow`]).
//!
//! The node's exchange publishes what this decides; the simulator calls it on every end a
//! node learns and checks that no node vouches twice for one end in one incarnation.
#![warn(clippy::unwrap_used)]

use std::collections::HashSet;

use otto_pipeline::plan::Body;
use otto_protocol::{Envelope, KeyBytes, Outcome, Status};

use crate::rules::{self, Held};

/// The `seq` of a status event that relays the end of a stage its author did not run: a
/// runner numbers its own events from 0 and never reaches it.
pub const RELAY_SEQ: u64 = u64::MAX;

/// The most characters kept of a relayed account of who ran a stage.
pub const MAX_ORIGIN: usize = 1024;

/// The end of an attempt of a stage another node ran, as a node learnt it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    /// The run.
    pub run: String,
    /// The stage.
    pub stage: String,
    /// The attempt that ended.
    pub attempt: u32,
    /// How it ended.
    pub outcome: Outcome,
    /// Who ran it and how it ended, for people (e.g. "ran on ops-4 (acme-ops4)").
    pub origin: String,
}

/// The ends a node vouched for already, per (run, stage, attempt). In memory only: after a
/// restart a node may vouch once more for an end it relayed before.
#[derive(Debug, Default, Clone)]
pub struct Relays {
    relayed: HashSet<(String, String, u32)>,
}

impl Relays {
    /// Whether this node, named `me`, vouches for `end`, which it just learnt: the first
    /// time it learns the end of an attempt of a stage it does not run (`runs_here`) and
    /// had not recorded before (`known`). Returns the status event to sign and publish at
    /// `now` (milliseconds since the Unix epoch).
    pub fn relay(
        &mut self,
        end: &End,
        runs_here: bool,
        known: bool,
        me: &str,
        now: u64,
    ) -> Option<Status> {
        if runs_here {
            return None;
        }
        let first = self
            .relayed
            .insert((end.run.clone(), end.stage.clone(), end.attempt));
        if !first || known {
            return None;
        }
        Some(words(end, me, now))
    }

    /// Forgets everything about `run` (it ended).
    pub fn forget(&mut self, run: &str) {
        self.relayed.retain(|(r, _, _)| r != run);
    }

    /// How many ends this holds, over every run.
    pub fn len(&self) -> usize {
        self.relayed.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.relayed.is_empty()
    }
}

/// The end a relayed status event vouches for (`seq` [`RELAY_SEQ`], a final state), with
/// the account of who ran it up to the last relayer's name; `None` for any other event.
pub fn relayed(status: &Status) -> Option<End> {
    if status.seq != RELAY_SEQ {
        return None;
    }
    let outcome = rules::outcome_of(status.state)?;
    let detail = status.detail.as_deref().unwrap_or("ended on another node");
    let origin = detail
        .rsplit_once("; relayed by ")
        .map_or(detail, |(origin, _)| origin);
    Some(End {
        run: status.run.clone(),
        stage: status.stage.clone(),
        attempt: status.attempt.max(1),
        outcome,
        origin: origin.chars().take(MAX_ORIGIN).collect(),
    })
}

/// Whether a relayed end of `stage` of a run of `body`, which says `outcome`, may be
/// recorded now, given which stages ended here (`ended`). A success or a skip waits until
/// every stage that needs it ended here: who moves a stage on is read from its needs'
/// receipts, and a relayed end has none, so recording it early could make this node move
/// on a stage that is not its to move. A failure or a cancellation moves nothing on.
pub fn may_record(
    body: &Body,
    stage: &str,
    outcome: Outcome,
    ended: impl Fn(&str) -> bool,
) -> bool {
    if !matches!(outcome, Outcome::Success | Outcome::Skipped) {
        return true;
    }
    body.stages
        .iter()
        .filter(|later| later.needs.iter().any(|need| need == stage))
        .all(|later| ended(&later.id))
}

/// The status event that relays `end`, signed by the node named `me` at `now`
/// (milliseconds since the Unix epoch).
fn words(end: &End, me: &str, now: u64) -> Status {
    let (at, at_ms) = otto_protocol::time::split(now);
    Status {
        run: end.run.clone(),
        stage: end.stage.clone(),
        attempt: end.attempt,
        seq: RELAY_SEQ,
        state: rules::state_of(end.outcome),
        at,
        detail: Some(format!("{}; relayed by {me}", end.origin)),
        log: Vec::new(),
        log_seq: None,
        at_ms,
    }
}

/// Who ran a stage and how it ended, in the words of a relay ("ran on ops-1 (acme-ops)"),
/// from its receipt.
pub fn origin_of(receipt: &otto_protocol::Receipt) -> String {
    format!(
        "{} on {} ({})",
        rules::verb(receipt.outcome),
        receipt.node.name,
        receipt.node.org
    )
}

/// What a node tells a run's other nodes again about an end it holds (see [`again`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Again<'a> {
    /// Its own receipt of a stage it ran, as it signed it.
    Receipt(&'a Envelope),
    /// An end of a stage another node ran: a relay, to sign and publish.
    Relay(Status),
}

/// What a node, key `me` and named `name`, tells the run's other nodes again at `now`
/// (milliseconds) when a node (re)subscribed to the run's topic or took a receipt it delivered:
/// for each stage it holds receipts of, the latest attempt's end: its own receipt if it
/// ran that attempt, else a relay of the end in [`Relays::relay`]'s words; then each end
/// in `unsigned` (ends it recorded of stages it does not run with no receipt: a stage
/// refused at a handoff, known from a `failed` status or failed by this node as the one
/// that moved it on; a relayed end) of a stage it holds no receipt of at that attempt or
/// later, as a relay, once per stage (the latest attempt). An end is told once on gossip,
/// and gossip does not reach a node that is down: without this, a node that restarted
/// would never learn the ends it missed, and a run whose next stage another org's node
/// moved on would never end on the node that started it. Unlike [`Relays::relay`] this
/// is not "the first time": it answers a node that may have missed it. A node that knew
/// the end already records nothing and relays nothing (its [`Relays`] and its records say
/// it knew), so telling again starts no echo.
pub fn again<'a>(
    held: &'a [Held],
    unsigned: &[End],
    me: &KeyBytes,
    name: &str,
    now: u64,
) -> Vec<Again<'a>> {
    let mut stages: Vec<&str> = Vec::new();
    for (receipt, _) in held {
        if !stages.contains(&receipt.stage.as_str()) {
            stages.push(&receipt.stage);
        }
    }
    let mut told: Vec<Again<'a>> = stages
        .into_iter()
        .filter_map(|stage| rules::latest(held, stage))
        .map(|(receipt, envelope)| {
            if receipt.node.key == *me {
                return Again::Receipt(envelope);
            }
            let end = End {
                run: receipt.run.clone(),
                stage: receipt.stage.clone(),
                attempt: receipt.attempt,
                outcome: receipt.outcome,
                origin: origin_of(receipt),
            };
            Again::Relay(words(&end, name, now))
        })
        .collect();
    let mut relayed: Vec<&End> = Vec::new();
    for end in unsigned {
        let signed = rules::latest(held, &end.stage)
            .is_some_and(|(receipt, _)| receipt.attempt >= end.attempt);
        if signed {
            continue;
        }
        match relayed.iter_mut().find(|told| told.stage == end.stage) {
            Some(told) if told.attempt < end.attempt => *told = end,
            Some(_) => {}
            None => relayed.push(end),
        }
    }
    told.extend(
        relayed
            .into_iter()
            .map(|end| Again::Relay(words(end, name, now))),
    );
    told
}

/// The nodes a node, key `me`, that holds a run of `body` which has not ended here asks
/// for the ends it may have missed when it (re)starts: for each stage `open` says has not
/// ended here, the node that moves it on ([`rules::mover`]) when that is another node:
/// the signer of the receipt it moves the stage on from ([`rules::mover_node`]), or,
/// when no receipt held here says, the node that started the run (the plan's binding
/// names it; `started_here`: this node did). A stage this node moves on itself is not
/// asked for: it runs it, or gave it, and then its receipt comes from the node it gave it
/// to, whom its outbox and given table keep sending to.
///
/// The node follows the run's topic again and connects to these nodes; their answer to
/// its subscription is [`again`]. Without this, a node killed while a third org's node
/// ran a stage, and back before that stage ended, would never learn how it ended: it
/// holds the receipt of the stage it gave, so nothing of the run is in its outbox or
/// given table; gossip reaches only the nodes connected and subscribed; and no node dials
/// a node it owes nothing. In first-asked order, each node once, never `me`.
pub fn follow(
    body: &Body,
    held: &[Held],
    me: &KeyBytes,
    started_here: bool,
    open: impl Fn(&str) -> bool,
) -> Vec<KeyBytes> {
    let mut asked = Vec::new();
    for stage in body.stages.iter().filter(|stage| open(&stage.id)) {
        let key = match rules::mover_node(body, stage, held) {
            Some(node) => node.key,
            None if started_here => continue,
            None => match rules::origin_node(body) {
                Some(origin) => KeyBytes(*origin.as_bytes()),
                None => continue,
            },
        };
        if key != *me && !asked.contains(&key) {
            asked.push(key);
        }
    }
    asked
}
