//! `otto-testnet bench --quick` on real nodes: every figure is measured, with a positive
//! value and baseline, and written as JSON and as an SVG chart with a bar pair per
//! figure. No timing is judged here: the figures are ratios for people to read.

use std::process::Command;
use std::time::Duration;

use otto_testnet::process::output_within;
use serde_json::Value;

use crate::support::bin_dir;

/// The figures the bench always reports.
const FIGURES: [&str; 6] = [
    "handoff_latency_p50",
    "handoff_latency_p99",
    "handoffs_per_second",
    "artifact_throughput",
    "status_propagation",
    "idle_rss",
];

#[test]
fn a_quick_bench_reports_every_figure_with_its_baseline_as_json_and_svg() {
    let bin_dir = bin_dir();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("bench");
    let (json, svg) = (work.path().join("out.json"), work.path().join("out.svg"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_otto-testnet"));
    cmd.args(["bench", "--quick", "--bin-dir"])
        .arg(&bin_dir)
        .arg("--dir")
        .arg(&dir)
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(&svg);
    let out = output_within(&mut cmd, None, Duration::from_secs(300)).expect("the bench ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("figure") && stdout.contains("baseline"),
        "{stdout}"
    );

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let figures = report["figures"].as_array().expect("a list of figures");
    let ids: Vec<&str> = figures.iter().filter_map(|f| f["id"].as_str()).collect();
    assert_eq!(ids, FIGURES, "{report:#}");
    for figure in figures {
        for field in ["value", "baseline", "ratio"] {
            let v = figure[field].as_f64().unwrap_or(-1.0);
            assert!(v > 0.0 && v.is_finite(), "{field} of {figure}");
        }
        assert!(figure["samples"].as_u64().unwrap_or(0) >= 1, "{figure}");
        assert!(
            ["lower", "higher"].contains(&figure["better"].as_str().unwrap_or("")),
            "{figure}"
        );
    }
    assert_eq!(report["options"]["handoffs"], 3);
    assert!(
        report["command"]
            .as_str()
            .unwrap()
            .contains("bench --quick")
    );

    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg "), "{chart}");
    assert!(chart.trim_end().ends_with("</svg>"));
    assert_eq!(chart.matches("<svg").count(), 1);
    assert_eq!(chart.matches(r#"class="value""#).count(), FIGURES.len());
    assert_eq!(chart.matches(r#"class="baseline""#).count(), FIGURES.len());
    // Every element opened is closed: self-closing, or with its end tag.
    for tag in ["g", "text"] {
        assert_eq!(
            chart.matches(&format!("<{tag} ")).count(),
            chart.matches(&format!("</{tag}>")).count(),
            "<{tag}> in {chart}"
        );
    }
    assert_eq!(chart.matches("<rect ").count(), chart.matches("/>").count());

    // Every node the bench started is gone: no otto-node runs on a home of its directory.
    let procs = std::fs::read_dir("/proc").unwrap();
    for entry in procs.flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert!(
            !(cmdline.contains("otto-node") && cmdline.contains(&*dir.to_string_lossy())),
            "a node still runs: {cmdline}"
        );
    }
}
