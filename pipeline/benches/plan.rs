//! Planning cost: a generated 10,000-stage Ottofile (parallel groups and a matrix), a
//! typical ~50-line Ottofile, and, as the baseline, reading the large file from disk.
//!
//! Run: `cargo bench -p otto-pipeline --bench plan`.

use std::fmt::Write as _;
use std::fs;
use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use otto_pipeline::{Facts, FsSource, StepCatalog, plan};

/// Blocks of ten stages: a parallel group of five, then a five-way matrix.
const BLOCKS: usize = 1_000;

const TYPICAL: &str = r#"// A web application built by the dev team and deployed by ops.
configure { slack { channel = '#deploys' } }
environments {
  staging    { settings { HOSTNAME = 'staging.example.com' } secrets { DEPLOY_TOKEN } }
  production { settings { HOSTNAME = "example.com"  RAILS_ENV = 'production' }
               secrets { DEPLOY_TOKEN } }
}
vars { channel = 'stable' }
pipeline {
  name = 'webapp'
  stages {
    stage {
      name = 'Build'
      cache { gems = ['vendor/'] }
      steps {
        sh 'bundle install --path=vendor'
        archive path: 'dist/', name: 'site'
      }
    }
    parallel {
      stage { name = 'Unit'  runtime { from 'Build' }  cache { use gems }  steps { sh 'rake spec' } }
      stage { name = 'Lint'  steps { sh 'rubocop' } }
    }
    each('linux', 'macos') {
      stage {
        name = concat('Package ', it)
        runtime { computer { label = it } }
        when { vars.channel != 'dev' }
        steps { sh concat('make package OS=', it) }
      }
    }
    stage {
      name = 'Deploy staging'
      owner = 'ops'
      environment -> staging
      steps { unarchive name: 'site'  sh './deploy.sh' }
      gates { exit { poll { command = 'curl -fsS https://staging.example.com/'  every = '10s'  timeout = '5m' } } }
    }
    stage {
      name = 'Deploy production'
      owner = 'ops'
      environment -> production
      gates {
        enter { branch == 'main'
                input 'Ship it?', approvers: ['ops-leads'] }
        exit  { webhook { description = 'health check calls back'  timeout = '30m' } }
      }
      steps { unarchive name: 'site'  sh './deploy.sh' }
      notify { failure { echo 'deploy failed' } }
    }
  }
}
"#;

fn generated() -> String {
    let mut text = String::from(
        "environments { prod { settings { HOST = 'example.com' } secrets { TOKEN } } }\n\
         stage('Build') { cache { target = ['target/'] } steps { sh 'make'  archive path: 'out/', name: 'build' } }\n",
    );
    for b in 0..BLOCKS {
        text.push_str("parallel {\n");
        for p in 0..5 {
            let owner = if p == 4 {
                "  owner = 'ops'  environment -> prod"
            } else {
                ""
            };
            let _ = writeln!(
                text,
                "  stage('Block {b} part {p}') {{{owner}\n    cache {{ use target }}\n    \
                 steps {{ sh 'make part{p}'  echo 'block {b}' }}\n  }}"
            );
        }
        text.push_str("}\n");
        let _ = writeln!(
            text,
            "each('a', 'b', 'c', 'd', 'e') {{\n  stage {{ name = concat('Block {b} matrix ', it)  \
             when {{ branch == 'main' }}\n    steps {{ sh concat('make matrix-', it) }} }}\n}}"
        );
    }
    text
}

fn write_repo(dir: &Path, text: &str) {
    fs::create_dir_all(dir).expect("create the bench directory");
    fs::write(dir.join("Ottofile"), text).expect("write the Ottofile");
}

fn benches(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let large = tmp.path().join("large");
    let typical = tmp.path().join("typical");
    let text = generated();
    write_repo(&large, &text);
    write_repo(&typical, TYPICAL);
    let facts = Facts {
        branch: Some("main".into()),
        ..Facts::default()
    };
    let steps = StepCatalog::builtins();
    let source = FsSource::new();

    // Check once that both plan, and how big the large one is.
    let planned = plan(&source, &large, &facts, &steps).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(planned.plan.body.stages.len(), 1 + BLOCKS * 10);
    eprintln!(
        "generated Ottofile: {} lines, {} bytes, {} stages",
        text.lines().count(),
        text.len(),
        planned.plan.body.stages.len()
    );
    plan(&source, &typical, &facts, &steps).unwrap_or_else(|f| panic!("{f}"));

    let mut group = c.benchmark_group("plan");
    group.sample_size(10);
    group.bench_function("parse_and_plan_10k_stages", |b| {
        b.iter(|| {
            plan(&source, black_box(&large), &facts, &steps).map(|p| p.plan.body.stages.len())
        })
    });
    group.bench_function("read_10k_file_baseline", |b| {
        b.iter(|| fs::read(black_box(large.join("Ottofile"))).map(|bytes| bytes.len()))
    });
    group.bench_function("digest_10k_plan", |b| {
        b.iter(|| black_box(&planned.plan).digest())
    });
    group.finish();

    c.bench_function("plan/parse_and_plan_typical_50_lines", |b| {
        b.iter(|| {
            plan(&source, black_box(&typical), &facts, &steps).map(|p| p.plan.body.stages.len())
        })
    });
}

criterion_group!(plan_benches, benches);
criterion_main!(plan_benches);
