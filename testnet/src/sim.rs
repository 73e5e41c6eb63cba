//! `otto-testnet sim`: the deterministic simulator of `otto-handoff` at scale, on the
//! nodes' own rules (`otto_handoff::rules`, the handoff machine, offer verification),
//! with the wall time and memory it took.
//!
//! The simulation itself is pure ([`otto_handoff::sim::scale`]); this module times it,
//! reads the process's memory from `/proc/self/status`, and words the report.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use otto_handoff::sim::Observer;
use otto_handoff::sim::scale::{Report, Scale};

/// What one seed gave, with what it cost.
#[derive(Debug)]
pub struct Outcome {
    /// The simulation's report.
    pub report: Report,
    /// Wall time to build the network (keys, certificates, trust stores, plans).
    pub build: Duration,
    /// Wall time to run it.
    pub run: Duration,
    /// Resident memory before building, after building, and at its peak, in bytes (0
    /// where `/proc` does not say).
    pub memory: (u64, u64, u64),
}

/// Builds and runs `scale`, timing both and reading the memory around them. With
/// `observe`, every line of the simulation's trace goes there as it happens.
pub fn run(scale: &Scale, observe: Option<Observer>) -> Result<Outcome, String> {
    let before = rss().0;
    let started = Instant::now();
    let mut sim = scale.build()?;
    let build = started.elapsed();
    let built = rss().0;
    if let Some(observe) = observe {
        sim.observe(observe);
    }
    let started = Instant::now();
    let report = scale.drive(&mut sim);
    let run = started.elapsed();
    let peak = rss().1;
    drop(sim);
    Ok(Outcome {
        report,
        build,
        run,
        memory: (before, built, peak),
    })
}

impl Outcome {
    /// Accepted handoffs per second of wall time spent running.
    pub fn handoffs_per_second(&self) -> f64 {
        self.report.handoffs as f64 / self.run.as_secs_f64().max(1e-9)
    }

    /// Memory per simulated node, in bytes: (after building, at the peak), above what
    /// the process held before.
    pub fn per_node(&self, nodes: usize) -> (u64, u64) {
        let (before, built, peak) = self.memory;
        let nodes = nodes.max(1) as u64;
        (
            built.saturating_sub(before) / nodes,
            peak.saturating_sub(before) / nodes,
        )
    }

    /// The report for people.
    pub fn describe(&self, scale: &Scale) -> String {
        let r = &self.report;
        let mut out = String::new();
        let (built, peak) = self.per_node(scale.nodes);
        let _ = writeln!(
            out,
            "  built   {} nodes of {} orgs in {:.1} s; {} per node",
            scale.nodes,
            scale.orgs,
            self.build.as_secs_f64(),
            kib(built)
        );
        let _ = writeln!(
            out,
            "  ran     {} steps in {:.1} s of wall time ({:.1} s simulated)",
            r.steps,
            self.run.as_secs_f64(),
            r.sim_ms as f64 / 1000.0
        );
        let _ = writeln!(
            out,
            "  runs    {} of {} finished, every chain verified",
            r.finished, r.runs
        );
        let _ = writeln!(
            out,
            "  offers  {} sent, {} accepted ({:.0} handoffs per second of wall time), {} refused",
            r.offers,
            r.handoffs,
            self.handoffs_per_second(),
            r.refused
        );
        let _ = writeln!(
            out,
            "  network {} messages, {} lost, {} twice; {} crashes",
            r.messages.0, r.messages.1, r.messages.2, r.crashes
        );
        let _ = writeln!(
            out,
            "  memory  peak {} above the start: {} per node",
            mib(self.memory.2.saturating_sub(self.memory.0)),
            kib(peak)
        );
        out
    }
}

/// `VmRSS` and `VmHWM` of this process, in bytes (0 where `/proc` does not say).
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
