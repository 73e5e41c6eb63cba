//! Parser throughput: a realistic Ottofile repeated to about 1 MiB, and the same amount of
//! text that is nothing but errors (which recovery must skip in linear time).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use otto_pipeline::parse;
use otto_pipeline::span::FileId;

/// One stage of a typical pipeline.
const STAGE: &str = r#"
stage {
  name = 'Deploy production'
  owner = 'ops'
  environment -> production
  cache { gems = ['vendor/'] }
  gates {
    enter { branch == 'main'  input 'Ship it?', approvers: ['alice'] }
    exit  { webhook { description = 'health check calls back'  timeout = '30m' } }
  }
  steps {
    sh 'bundle install --path=vendor'   // a comment
    archive path: 'dist/', name: 'site'
    dir 'sub' { sh """
      make
      make install
      """ }
  }
  notify { failure { echo 'deploy failed' } }
}
"#;

fn repeated(unit: &str, bytes: usize) -> String {
    unit.repeat(bytes / unit.len() + 1)
}

fn bench_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    let valid = repeated(STAGE, 1 << 20);
    group.throughput(Throughput::Bytes(valid.len() as u64));
    group.bench_function("valid 1 MiB", |b| {
        b.iter(|| parse(FileId(0), black_box(&valid)))
    });
    let broken = repeated("stage { stpes { sh 'x' } name = }\n", 1 << 20);
    group.throughput(Throughput::Bytes(broken.len() as u64));
    group.bench_function("errors 1 MiB", |b| {
        b.iter(|| parse(FileId(0), black_box(&broken)))
    });
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
