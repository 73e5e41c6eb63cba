//! A run's checkout of a commit from the node's warm bare mirror (`git archive` rewritten as
//! a snapshot tar, what every stage starts from), against the baseline of a plain
//! `git clone` from the same mirror, in the same run. The repository holds
//! `OTTO_BENCH_REPO_MB` MiB (default 20; the figure is 100) of incompressible files
//! in one commit. Compare the two as a ratio; absolute times depend on the disk.

use std::path::Path;
use std::process::Command;

use criterion::{Criterion, criterion_group, criterion_main};
use otto_node::sources::Mirror;
use rand::SeedableRng as _;
use rand_core::Rng as _;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "Bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn bench_checkout(c: &mut Criterion) {
    let megabytes: usize = std::env::var("OTTO_BENCH_REPO_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().expect("temporary directory");
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("src")).expect("work tree");
    git(&work, &["init", "--quiet", "-b", "main"]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let files = megabytes * 4;
    for i in 0..files {
        let mut bytes = vec![0u8; 256 * 1024];
        rng.fill_bytes(&mut bytes);
        std::fs::write(work.join(format!("src/f{i:04}.bin")), &bytes).expect("file");
    }
    git(&work, &["add", "."]);
    git(&work, &["commit", "--quiet", "-m", "bench"]);
    let commit = git(&work, &["rev-parse", "HEAD"]);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mirror_dir = dir.path().join("mirror.git");
    let url = format!("file://{}", work.display());
    let mirror = runtime.block_on(async {
        let mirror = Mirror::create(mirror_dir.clone(), &url)
            .await
            .expect("mirror");
        mirror.fetch(&[]).await.expect("fetch");
        mirror
    });
    let limit = (megabytes + 16) << 20;

    let mut group = c.benchmark_group(format!("checkout_{megabytes}MiB"));
    group.sample_size(10);
    group.bench_function("mirror_checkout_snapshot", |b| {
        b.iter(|| {
            let tar = runtime
                .block_on(mirror.checkout(&commit, limit))
                .expect("checkout");
            assert!(tar.len() > megabytes << 20);
        });
    });
    let mirror_url = format!("file://{}", mirror_dir.display());
    let mut n = 0;
    group.bench_function("baseline_git_clone_from_mirror", |b| {
        b.iter(|| {
            n += 1;
            let dest = dir.path().join(format!("clone-{n}"));
            let out = Command::new("git")
                .args(["clone", "--quiet", "--no-hardlinks", &mirror_url])
                .arg(&dest)
                .output()
                .expect("git clone runs");
            assert!(out.status.success());
            std::fs::remove_dir_all(&dest).expect("clone removed");
        });
    });
    group.finish();
}

criterion_group!(benches, bench_checkout);
criterion_main!(benches);
