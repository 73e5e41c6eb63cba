//! Orchestration overhead per step: a stage of 200 `sh 'true'` steps run by the real agent
//! against a test node, against running `/bin/sh -e -c true` 200 times directly; and the
//! wall's cost: the same stage with every step walled in (`otto-agent --wall`, Landlock
//! hiding a node home and work directory, rlimits) against the same stage unwalled; and
//! the cost of keeping `uses` files as approved: the same stage with a used script and a
//! used directory of 50 files of 4 KiB, checked again before every step.

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::process::{Command, Stdio};

use common::{TestNode, digest, sh};
use criterion::{Criterion, criterion_group, criterion_main};
use otto_agent::protocol::{Outcome, SourceRef, Wall};
use otto_pipeline::plan::{Used, tree_digest};

const STEPS: usize = 200;

fn steps(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("200 sh true steps");
    group.sample_size(10);
    group.bench_function("direct", |b| {
        b.iter(|| {
            for _ in 0..STEPS {
                let status = Command::new("/bin/sh")
                    .args(["-e", "-c", "true"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .output()
                    .expect("sh");
                black_box(status);
            }
        });
    });
    group.bench_function("agent", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let node = TestNode::start(vec![sh("true"); STEPS]).await;
                let result = node.run().await;
                assert_eq!(result.outcome, Outcome::Success);
            });
        });
    });
    // A node's home and work directory for the wall to hide, as the node's job names them.
    let dirs = tempfile::tempdir().expect("tempdir");
    let hidden = vec![dirs.path().join("home"), dirs.path().join("home-work")];
    for dir in &hidden {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    group.bench_function("agent walled", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let node = TestNode::start_with(vec![sh("true"); STEPS], |job| {
                    job.wall = Some(Wall {
                        hidden: hidden.clone(),
                        ..Wall::default()
                    });
                })
                .await;
                let result = node.run().await;
                assert_eq!(result.outcome, Outcome::Success, "{}", node.all_text());
            });
        });
    });
    // A source of deploy.sh and k8s/ (50 files of 4 KiB), both used.
    let mut source = tar::Builder::new(Vec::new());
    let mut files = Vec::new();
    let script = b"echo deploy\n".to_vec();
    let mut add = |name: String, bytes: Vec<u8>| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        source
            .append_data(&mut header, &name, &bytes[..])
            .expect("append");
    };
    add("deploy.sh".into(), script.clone());
    for i in 0..50 {
        let bytes = vec![b'a' + (i % 26) as u8; 4096];
        files.push((format!("k8s/f{i}.yaml"), digest(&bytes)));
        add(format!("k8s/f{i}.yaml"), bytes);
    }
    let source = source.into_inner().expect("tar");
    let uses = vec![
        Used {
            path: "deploy.sh".into(),
            sha256: digest(&script),
        },
        Used {
            path: "k8s".into(),
            sha256: tree_digest(&files),
        },
    ];
    group.bench_function("agent with uses", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let node = TestNode::start_with(vec![sh("true"); STEPS], |job| {
                    job.uses = uses.clone();
                })
                .await;
                let blob = node.put_blob(source.clone());
                node.edit_job(|job| job.source = Some(SourceRef { digest: blob }));
                let result = node.run().await;
                assert_eq!(result.outcome, Outcome::Success, "{}", node.all_text());
            });
        });
    });
    group.bench_function("agent with the same source, no uses", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let node = TestNode::start(vec![sh("true"); STEPS]).await;
                let blob = node.put_blob(source.clone());
                node.edit_job(|job| job.source = Some(SourceRef { digest: blob }));
                let result = node.run().await;
                assert_eq!(result.outcome, Outcome::Success, "{}", node.all_text());
            });
        });
    });
    group.finish();
}

criterion_group!(benches, steps);
criterion_main!(benches);
