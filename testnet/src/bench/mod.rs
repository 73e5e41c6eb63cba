//! `otto-testnet bench`: performance figures of real nodes on this machine, each next to
//! a baseline measured in the same run, so the ratio says what Otto costs here whatever
//! the machine's speed or load.
//!
//! | figure | value | baseline |
//! |---|---|---|
//! | handoff latency p50, p99 | Build's end on dev-1 → Deploy's start on ops-1 | both stages on dev-1 |
//! | handoffs per second | runs started at once, Build on dev-1, Deploy on ops-1 | the same runs, both stages on dev-1 |
//! | status propagation | a stage's end on its node → every node of the run shows it, in a mesh of `orgs × nodes_per_org` | the same in a 2-node mesh |
//! | artifact throughput | the fetch of a Build artifact by ops-1 over the mesh | a plain 127.0.0.1 TCP copy of the same bytes |
//! | idle memory | mean RSS of a mesh node after it idled | a fresh node with no peers |
//!
//! Times come from the nodes' own records (milliseconds, one machine clock) where they
//! have them, and from observers on the nodes' run watch (`GET /v1/runs/RUN?wait=N`)
//! where they do not. docs/performance.md describes each figure and the JSON.

mod api;
mod measure;
pub mod svg;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Bins;

/// How much the bench measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Runs of each kind (across orgs, local) for the handoff latency, one at a time.
    pub handoffs: usize,
    /// Runs started at once for handoffs per second.
    pub concurrent: usize,
    /// The artifact's size in MiB.
    pub artifact_mib: u64,
    /// Runs that fetch an artifact (the median is reported).
    pub artifact_runs: usize,
    /// Runs across orgs per mesh for the status propagation (the median is reported).
    pub gossip_runs: usize,
    /// Orgs of the large mesh.
    pub orgs: usize,
    /// Nodes per org of the large mesh.
    pub nodes_per_org: usize,
    /// How long the nodes idle before their memory is read.
    pub idle: Duration,
}

/// One measured figure and its same-run baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// A stable name (`handoff_latency_p50`).
    pub id: String,
    /// What it is, for people.
    pub title: String,
    /// The unit of the value and the baseline (`ms`, `1/s`, `MiB/s`, `MiB`).
    pub unit: String,
    /// Otto's figure.
    pub value: f64,
    /// The baseline's figure, measured in the same run.
    pub baseline: f64,
    /// What the baseline is.
    pub baseline_label: String,
    /// Whether a lower value is better (latency, memory) or a higher one (rates).
    pub lower_is_better: bool,
    /// How many samples the value rests on.
    pub samples: usize,
    /// What exactly was measured, in one line.
    pub detail: String,
}

/// What a bench run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The figures, in the order they were measured.
    pub figures: Vec<Figure>,
    /// What was measured.
    pub options: Options,
    /// The work directory: homes and logs.
    pub dir: PathBuf,
    /// How long it took.
    pub took: Duration,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// CPUs this process may use.
    pub cpus: usize,
    /// The 1-minute load average before and after (`/proc/loadavg`), a sign of how busy
    /// the machine was.
    pub load: (Option<f64>, Option<f64>),
}

impl Options {
    /// The full bench: 30 handoffs of each kind, 20 runs at once, a 64 MiB artifact three
    /// times, five runs across a mesh of 4 orgs × 5 nodes, 10 s of idling.
    pub fn full() -> Self {
        Self {
            handoffs: 30,
            concurrent: 20,
            artifact_mib: 64,
            artifact_runs: 3,
            gossip_runs: 5,
            orgs: 4,
            nodes_per_org: 5,
            idle: Duration::from_secs(10),
        }
    }

    /// Small counts, for a test: every figure, measured once or a few times, in a mesh
    /// of 2 orgs × 2 nodes.
    pub fn quick() -> Self {
        Self {
            handoffs: 3,
            concurrent: 3,
            artifact_mib: 1,
            artifact_runs: 1,
            gossip_runs: 1,
            orgs: 2,
            nodes_per_org: 2,
            idle: Duration::from_secs(1),
        }
    }
}

impl Figure {
    /// The value over the baseline (infinite when the baseline is zero).
    pub fn ratio(&self) -> f64 {
        if self.baseline == 0.0 {
            f64::INFINITY
        } else {
            self.value / self.baseline
        }
    }
}

impl Report {
    /// The report as JSON (the schema is in docs/performance.md).
    pub fn to_json(&self, command: &str) -> Value {
        let finite = |v: f64| if v.is_finite() { json!(v) } else { Value::Null };
        json!({
            "bench": "otto-testnet bench",
            "version": env!("CARGO_PKG_VERSION"),
            "command": command,
            "started_at_ms": self.started_ms,
            "took_ms": u64::try_from(self.took.as_millis()).unwrap_or(u64::MAX),
            "dir": self.dir,
            "machine": {
                "cpus": self.cpus,
                "load_before": self.load.0,
                "load_after": self.load.1,
            },
            "options": {
                "handoffs": self.options.handoffs,
                "concurrent": self.options.concurrent,
                "artifact_mib": self.options.artifact_mib,
                "artifact_runs": self.options.artifact_runs,
                "gossip_runs": self.options.gossip_runs,
                "orgs": self.options.orgs,
                "nodes_per_org": self.options.nodes_per_org,
                "idle_ms": u64::try_from(self.options.idle.as_millis()).unwrap_or(u64::MAX),
            },
            "figures": self.figures.iter().map(|f| json!({
                "id": f.id,
                "title": f.title,
                "unit": f.unit,
                "value": finite(f.value),
                "baseline": finite(f.baseline),
                "baseline_label": f.baseline_label,
                "ratio": finite(f.ratio()),
                "better": if f.lower_is_better { "lower" } else { "higher" },
                "samples": f.samples,
                "detail": f.detail,
            })).collect::<Vec<_>>(),
        })
    }

    /// The figures as a table for people: figure, value, baseline, ratio.
    pub fn table(&self) -> String {
        let rows: Vec<[String; 4]> = self
            .figures
            .iter()
            .map(|f| {
                [
                    f.title.clone(),
                    format!("{} {}", svg::number(f.value), f.unit),
                    format!(
                        "{} {} ({})",
                        svg::number(f.baseline),
                        f.unit,
                        f.baseline_label
                    ),
                    svg::ratio_text(f.ratio()),
                ]
            })
            .collect();
        let head = ["figure", "value", "baseline", "ratio"].map(str::to_owned);
        let mut widths = [0; 4];
        for row in std::iter::once(&head).chain(&rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&head).chain(&rows) {
            let mut line = String::new();
            for (i, (w, cell)) in widths.iter().zip(row).enumerate() {
                let pad = w - cell.chars().count();
                if i == 0 || i == 2 {
                    let _ = write!(line, "{cell}{:pad$}  ", "");
                } else {
                    let _ = write!(line, "{:pad$}{cell}  ", "");
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }

    /// The chart of the figures as SVG.
    pub fn svg(&self) -> String {
        svg::chart(
            &format!(
                "otto-testnet bench: Otto vs same-run baselines ({} CPUs)",
                self.cpus
            ),
            &self.figures,
        )
    }
}

/// Runs the bench in `dir` (new or empty) with the executables `bins`, telling progress
/// to `say`. Every node it starts is stopped when it returns.
pub fn run(
    options: &Options,
    bins: Bins,
    dir: &Path,
    say: &mut dyn FnMut(&str),
) -> anyhow::Result<Report> {
    let start = Instant::now();
    let started_ms = crate::timeline::now_ms();
    let load_before = load_average();
    let figures = measure::all(options, bins, dir, say)?;
    Ok(Report {
        figures,
        options: options.clone(),
        dir: dir.to_owned(),
        took: start.elapsed(),
        started_ms,
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        load: (load_before, load_average()),
    })
}

/// The `p`th percentile (0 to 100) of `values` by the nearest-rank method: the smallest
/// value with at least `p` % of the values at or below it. `None` for no values.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    let rank = (p.clamp(0.0, 100.0) / 100.0 * n).ceil().max(1.0);
    // rank is in 1..=n, so the index is in bounds.
    let index = (rank as usize).min(sorted.len()) - 1;
    sorted.get(index).copied()
}

/// The median (the 50th percentile, nearest rank).
pub fn median(values: &[f64]) -> Option<f64> {
    percentile(values, 50.0)
}

/// The 1-minute load average.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 99.0), Some(99.0));
        assert_eq!(percentile(&values, 100.0), Some(100.0));
        assert_eq!(percentile(&values, 0.0), Some(1.0));
        // Few samples: p99 is the largest, the median the lower middle.
        let few = [7.0, 3.0, 5.0, 9.0];
        assert_eq!(percentile(&few, 99.0), Some(9.0));
        assert_eq!(median(&few), Some(5.0));
        assert_eq!(median(&[4.0]), Some(4.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(median(&[f64::NAN, 2.0]), Some(2.0));
    }

    #[test]
    fn the_table_and_json_show_each_figure_with_its_baseline_and_ratio() {
        let report = Report {
            figures: vec![Figure {
                id: "handoff_latency_p50".into(),
                title: "handoff latency p50".into(),
                unit: "ms".into(),
                value: 12.0,
                baseline: 4.0,
                baseline_label: "local stage to stage".into(),
                lower_is_better: true,
                samples: 30,
                detail: String::new(),
            }],
            options: Options::quick(),
            dir: PathBuf::from("/tmp/x"),
            took: Duration::from_secs(3),
            started_ms: 1,
            cpus: 2,
            load: (Some(1.5), None),
        };
        let table = report.table();
        assert!(table.starts_with("figure"), "{table}");
        assert!(
            table.contains("handoff latency p50  12.0 ms  4.00 ms (local stage to stage)  3.00×"),
            "{table}"
        );
        let json = report.to_json("otto-testnet bench --quick");
        let figure = &json["figures"][0];
        assert_eq!(figure["ratio"], 3.0);
        assert_eq!(figure["better"], "lower");
        assert_eq!(json["machine"]["cpus"], 2);
        assert_eq!(json["command"], "otto-testnet bench --quick");
    }
}
