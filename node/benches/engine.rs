//! What the engine costs: a stage of 200 `sh 'true'` steps run through the engine (a real
//! agent, the store, events) against 200 `sh -c true` processes spawned directly, and the
//! latencies at both ends of a run.
//!
//! `cargo bench -p otto-node --bench engine`. The agent binary is found (or built) as the
//! tests find it; see `tests/engine_support/mod.rs`. After criterion's numbers, the bench
//! prints the ratio of the two means and, over a few runs of the 200-step pipeline, the
//! time from `submit` to the first step starting and from the last step ending to the
//! run being recorded complete.

#[path = "../tests/it/engine_support/mod.rs"]
mod engine_support;

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use engine_support::TestNode;
use otto_node::engine::EngineEvent;
use otto_node::store::{RunId, RunState};
use otto_pipeline::Facts;

/// Steps in the benchmarked stage.
const STEPS: usize = 200;

/// Runs measured for the latencies.
const LATENCY_RUNS: usize = 5;

fn ottofile() -> String {
    let steps = vec!["sh 'true'"; STEPS].join("\n    ");
    format!("stage('Many') {{\n  steps {{\n    {steps}\n  }}\n}}\n")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// One run of the pipeline, from submit to the run's final event.
async fn one_run(node: &mut TestNode, text: &str) -> RunId {
    let run = node.submit(text, Facts::default(), &[]).await;
    let state = node.wait_run(run).await;
    assert_eq!(state, RunState::Succeeded);
    run
}

fn direct() {
    for _ in 0..STEPS {
        let status = std::process::Command::new("sh")
            .args(["-c", "true"])
            .status()
            .expect("spawn sh");
        assert!(status.success());
    }
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let text = ottofile();
    let mut node = rt.block_on(async { TestNode::start() });
    rt.block_on(one_run(&mut node, &text));

    let mut group = c.benchmark_group("engine");
    group.sample_size(10);
    group.bench_function("200 sh steps through the engine", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    one_run(&mut node, &text).await;
                }
                start.elapsed()
            })
        });
    });
    group.bench_function("200 sh -c true spawned directly", |b| b.iter(direct));
    group.finish();

    // The ratio and the latencies, measured on their own so they can be printed.
    let mut engine_total = Duration::ZERO;
    let mut direct_total = Duration::ZERO;
    let mut to_first = Vec::new();
    let mut to_complete = Vec::new();
    for _ in 0..LATENCY_RUNS {
        let start = Instant::now();
        direct();
        direct_total += start.elapsed();

        let (first, complete, took) = rt.block_on(latencies(&mut node, &text));
        engine_total += took;
        to_first.push(first);
        to_complete.push(complete);
    }
    let ratio = engine_total.as_secs_f64() / direct_total.as_secs_f64();
    eprintln!(
        "engine/direct: {:.1} ms / {:.1} ms per 200 steps = {ratio:.2}x",
        engine_total.as_secs_f64() * 1000.0 / LATENCY_RUNS as f64,
        direct_total.as_secs_f64() * 1000.0 / LATENCY_RUNS as f64,
    );
    eprintln!("submit -> first step started (ms): {to_first:?}");
    eprintln!("last step ended -> run recorded complete (ms): {to_complete:?}");
    drop(node);
}

/// One run: milliseconds from submit to the first step's start, from the last step's end
/// to the run's recorded end, and the whole run's duration.
async fn latencies(node: &mut TestNode, text: &str) -> (u64, u64, Duration) {
    let plan = engine_support::plan(text, &Facts::default());
    let run = node.create_run(&plan, text, &[]);
    let start = Instant::now();
    let submitted = engine_support::now_ms();
    node.engine.submit(run).await.expect("submit");
    let mut first = None;
    let mut last_end = 0;
    loop {
        match node.wait_for("run events", |_| true).await {
            EngineEvent::StepStarted { run: r, time, .. } if r == run && first.is_none() => {
                first = Some(time);
            }
            EngineEvent::StepFinished { run: r, time, .. } if r == run => last_end = time,
            EngineEvent::Run { run: r, state } if r == run && state.is_final() => break,
            _ => {}
        }
    }
    let took = start.elapsed();
    let record = node.store.run(&run).expect("store").expect("run");
    let finished = record.finished_at.expect("finished");
    (
        first.unwrap_or(submitted).saturating_sub(submitted),
        finished.saturating_sub(last_end),
        took,
    )
}

criterion_group!(benches, bench);
criterion_main!(benches);
