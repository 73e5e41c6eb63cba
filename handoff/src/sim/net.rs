//! The simulator's network and clock: scheduled deliveries and timers, faults, and the
//! random numbers they draw.

use otto_protocol::{Envelope, HandoffId, Offer};
use otto_trust::{PublicKey, Unverified};

use super::Sim;
use crate::machine::{Command, command, mix64};

/// Something scheduled.
pub(super) enum Item {
    Deliver {
        from: usize,
        to: usize,
        message: Message,
    },
    Local {
        node: usize,
        epoch: u32,
        event: Timer,
    },
    Crash {
        node: usize,
        down_for: u64,
    },
    Restart {
        node: usize,
    },
    /// The machine of `node` (in incarnation `epoch`) asked for a tick at `at`.
    Wake {
        node: usize,
        epoch: u32,
        at: u64,
    },
    /// A hostile node does something it should not.
    Mischief {
        node: usize,
    },
    /// A run scheduled with [`Sim::schedule_run`] starts.
    StartRun {
        index: usize,
    },
}

/// A message between nodes, or a transport failure reported to a sender.
#[derive(Clone)]
pub(super) enum Message {
    Offer(Envelope),
    Answer(HandoffId, Envelope),
    Receipt(HandoffId, Envelope),
    ReceiptAck(HandoffId),
    /// The receipt of `id` is refused by the node it went to, with its words.
    ReceiptRefused(HandoffId, String),
    /// The offer `id` could not be delivered (reported to its sender).
    OfferFailed(HandoffId),
    /// The receipt of `id` could not be delivered (reported to its sender).
    ReceiptFailed(HandoffId),
    /// The sender follows the run (it subscribed to its topic, connected to this node).
    Follow(String),
    /// Ends of a run on its topic: told again to a node that follows it, or published to
    /// the run's followers (a receipt signed, an end vouched for).
    Told(String, Vec<Told>),
}

/// One end told on a run's topic.
#[derive(Clone)]
pub(super) enum Told {
    /// A receipt, as its runner signed it.
    Receipt(Envelope),
    /// A relay of an end of a stage its author did not run.
    Relay(otto_protocol::Status),
}

/// A node's own timer: work that takes time.
pub(super) enum Timer {
    Fetch {
        id: HandoffId,
        ok: bool,
    },
    OfferedStage {
        id: HandoffId,
        attempt: u32,
    },
    OwnStage {
        run: String,
        stage: String,
        attempt: u32,
    },
}

/// The simulator's random numbers: SplitMix64.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in `lo..=hi`.
    pub(super) fn range(&mut self, (lo, hi): (u64, u64)) -> u64 {
        let hi = hi.max(lo);
        lo + self.next() % (hi - lo + 1)
    }

    /// True with the chance `per_mille` / 1000.
    pub(super) fn chance(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.next() % 1000 < u64::from(per_mille)
    }
}

impl Sim {
    pub(super) fn index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub(super) fn schedule(&mut self, at: u64, item: Item) {
        self.seq += 1;
        self.queue.insert((at, self.seq), item);
    }

    pub(super) fn faulty(&self) -> bool {
        self.now < self.config.faults.heal_at
    }

    pub(super) fn partitioned(&self, a: usize, b: usize) -> bool {
        let (a, b) = (&self.nodes[a].name, &self.nodes[b].name);
        self.config.faults.partitions.iter().any(|p| {
            ((&p.a == a && &p.b == b) || (&p.a == b && &p.b == a))
                && p.from <= self.now
                && self.now < p.until
        })
    }

    pub(super) fn process(&mut self, item: Item) {
        match item {
            Item::Crash { node, down_for } => self.crash(node, down_for),
            Item::Restart { node } => {
                if self.nodes[node].machine.is_none() {
                    let name = self.nodes[node].name.clone();
                    self.log(format!("{name} restarts"));
                    self.boot(node);
                }
            }
            Item::Local { node, epoch, event } => {
                if self.nodes[node].machine.is_some() && self.nodes[node].epoch == epoch {
                    self.local(node, event);
                }
            }
            Item::Deliver { from, to, message } => self.deliver(from, to, message),
            Item::Wake { node, epoch, at } => {
                let n = &mut self.nodes[node];
                if n.machine.is_some() && n.epoch == epoch && n.wake_at == Some(at) {
                    n.wake_at = None;
                    let now = self.now;
                    self.handle(node, Command::Tick(command::Tick { now }), None);
                }
            }
            Item::Mischief { node } => {
                if self.faulty() {
                    self.mischief(node);
                    let at = self.now + self.rng.range(self.config.faults.mischief_every).max(1);
                    self.schedule(at, Item::Mischief { node });
                }
            }
            Item::StartRun { index } => {
                let Some((origin, text)) = self.scheduled.get_mut(index).and_then(Option::take)
                else {
                    return;
                };
                if let Err(error) = self.start_run_at(origin, &text) {
                    self.violate(format!("a run does not plan: {error}"));
                }
            }
        }
    }

    pub(super) fn deliver(&mut self, from: usize, to: usize, message: Message) {
        let now = self.now;
        let reachable =
            self.nodes[to].machine.is_some() && (from == to || !self.partitioned(from, to));
        if !reachable {
            // A request fails at the transport; an answer is lost with its connection.
            let latency = self.rng.range(self.config.faults.latency);
            let failure = match message {
                Message::Offer(envelope) => envelope
                    .payload_as::<Offer>()
                    .ok()
                    .map(|o| Message::OfferFailed(o.id)),
                Message::Receipt(id, _) => Some(Message::ReceiptFailed(id)),
                _ => None,
            };
            if let Some(failure) = failure {
                self.schedule(
                    now + latency,
                    Item::Deliver {
                        from,
                        to: from,
                        message: failure,
                    },
                );
            }
            return;
        }
        let peer = self.nodes[from].name.clone();
        let sender_key = self.nodes[from].key.public_key();
        self.checks.peer = Some(from);
        self.deliver_to(to, peer, sender_key, message);
        self.checks.peer = None;
    }

    fn deliver_to(&mut self, to: usize, peer: String, sender_key: PublicKey, message: Message) {
        let now = self.now;
        match message {
            Message::Offer(envelope) => self.offer_received(to, peer, sender_key, envelope),
            Message::Answer(id, envelope) => {
                if let Ok(envelope) = Unverified::new(envelope).verify(&sender_key) {
                    self.handle(
                        to,
                        Command::Answer(command::Answer { id, envelope, now }),
                        None,
                    );
                }
            }
            Message::Receipt(id, envelope) => {
                if let Ok(envelope) = Unverified::new(envelope).verify(&sender_key) {
                    // What the receiver's durable records say of the stage, as a node's
                    // store would.
                    let (given, held) = self.nodes[to].durable.knows(envelope.get());
                    self.handle(
                        to,
                        Command::Receipt(command::Receipt {
                            peer,
                            envelope,
                            given,
                            held,
                            now,
                        }),
                        Some(id),
                    );
                }
            }
            Message::ReceiptAck(id) => {
                self.handle(
                    to,
                    Command::ReceiptAcked(command::ReceiptAcked { id, now }),
                    None,
                );
                // The node the stage was given by holds its receipt now, and follows the
                // run (its given table did): the ends it may have missed are told again.
                let run = self.nodes[to]
                    .durable
                    .inbox
                    .get(&id)
                    .and_then(|entry| entry.offer.payload_as::<Offer>().ok())
                    .map(|offer| offer.run);
                if let (Some(run), Some(from)) = (run, self.index(&peer)) {
                    self.followed(to, from, &run);
                }
            }
            Message::ReceiptRefused(id, reason) => {
                self.handle(
                    to,
                    Command::ReceiptRefused(command::ReceiptRefused { id, reason, now }),
                    None,
                );
            }
            Message::Follow(run) => {
                if let Some(from) = self.index(&peer) {
                    self.followed(to, from, &run);
                }
            }
            Message::Told(run, told) => {
                if let Some(from) = self.index(&peer) {
                    self.told(to, from, &run, told);
                }
            }
            Message::OfferFailed(id) => {
                let error = "unreachable".to_owned();
                self.handle(
                    to,
                    Command::SendFailed(command::SendFailed { id, error, now }),
                    None,
                );
            }
            Message::ReceiptFailed(id) => {
                let error = "unreachable".to_owned();
                self.handle(
                    to,
                    Command::ReceiptFailed(command::ReceiptFailed { id, error, now }),
                    None,
                );
            }
        }
    }

    pub(super) fn send(&mut self, from: usize, to: usize, message: Message) {
        self.trace.messages.0 += 1;
        let faults = self.config.faults.clone();
        if self.faulty() && self.rng.chance(faults.loss) {
            self.trace.messages.1 += 1;
            return;
        }
        let copies = if self.faulty() && self.rng.chance(faults.duplicate) {
            self.trace.messages.2 += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.now + self.rng.range(faults.latency);
            let message = message.clone();
            self.schedule(at, Item::Deliver { from, to, message });
        }
    }

    /// Sends a message of a run's gossip ([`Message::Follow`], [`Message::Told`]): the
    /// same faults as [`Sim::send`], drawn from the gossip's own random numbers.
    pub(super) fn send_gossip(&mut self, from: usize, to: usize, message: Message) {
        let faults = self.config.faults.clone();
        if self.faulty() && self.gossip_rng.chance(faults.loss) {
            return;
        }
        let copies = if self.faulty() && self.gossip_rng.chance(faults.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.now + self.gossip_rng.range(faults.latency);
            let message = message.clone();
            self.schedule(at, Item::Deliver { from, to, message });
        }
    }
}
