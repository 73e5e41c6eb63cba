//! The files an approval covers (`uses`) stay as approved, tried with a real agent: the
//! review of #12, F2. An input artifact or a cache that would replace, shadow or add to a
//! covered file is refused, however its entries get there (a link in the archive, a link a
//! step left, a directory entry); a step that rewrote one stops the stage before the next
//! program step runs.

use otto_agent::protocol::{CacheRestore, Outcome, SourceRef};
use otto_pipeline::plan::{Used, tree_digest};
use tar::EntryType;

use crate::common::*;

const DEPLOY: &[u8] = b"echo approved deploy\n";
const APP: &[u8] = b"kind: Deployment\n";

/// A tar of entries whose headers are written by hand, so nothing checks them: name,
/// kind, link target, bytes.
fn raw_tar(entries: &[(&str, EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(*kind);
        header.set_mode(if *kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, *data).expect("append");
    }
    builder.into_inner().expect("tar")
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> (&'a str, EntryType, &'a str, &'a [u8]) {
    (name, EntryType::Regular, "", data)
}

fn link<'a>(name: &'a str, target: &'a str) -> (&'a str, EntryType, &'a str, &'a [u8]) {
    (name, EntryType::Symlink, target, b"")
}

fn dir_entry(name: &str) -> (&str, EntryType, &str, &[u8]) {
    (name, EntryType::Directory, "", b"")
}

/// `uses ['deploy.sh', 'k8s/']` as the node gives it, with those files as the source.
fn approved() -> (Vec<u8>, Vec<Used>) {
    let source = raw_tar(&[file("deploy.sh", DEPLOY), file("k8s/app.yaml", APP)]);
    let uses = vec![
        Used {
            path: "deploy.sh".into(),
            sha256: digest(DEPLOY),
        },
        Used {
            path: "k8s".into(),
            sha256: tree_digest(&[("k8s/app.yaml".into(), digest(APP))]),
        },
    ];
    (source, uses)
}

/// A node whose job has the approved source and `uses`, `steps`, and `artifact` as the
/// input artifact `app`.
async fn guarded(steps: Vec<otto_pipeline::plan::Step>, artifact: Option<Vec<u8>>) -> TestNode {
    let (source, uses) = approved();
    let node = TestNode::start_with(steps, |job| job.uses = uses).await;
    let source = node.put_blob(source);
    let artifact = artifact.map(|bytes| node.put_blob(bytes));
    node.edit_job(|job| {
        job.source = Some(SourceRef { digest: source });
        if let Some(digest) = artifact {
            job.artifacts.insert("app".into(), digest);
        }
    });
    node
}

fn deploy_sh(node: &TestNode) -> Vec<u8> {
    std::fs::read(node.workspace().join("deploy.sh")).expect("deploy.sh")
}

#[tokio::test]
async fn an_artifact_entry_over_a_covered_file_is_refused_however_it_gets_there() {
    let evil: &[u8] = b"echo EVIL\n";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "other bytes",
            raw_tar(&[file("out/v.txt", b"v1"), file("deploy.sh", evil)]),
            "it would replace 'deploy.sh' with sha256:",
        ),
        (
            "spelled ./",
            raw_tar(&[file("./deploy.sh", evil)]),
            "it would replace 'deploy.sh'",
        ),
        (
            "a link in its place",
            raw_tar(&[file("out/evil.sh", evil), link("deploy.sh", "out/evil.sh")]),
            "a file the stage's approval covers",
        ),
        (
            "through a link the archive made",
            raw_tar(&[link("x", "."), file("x/deploy.sh", evil)]),
            "it would replace 'deploy.sh'",
        ),
        (
            "through a chain of links",
            raw_tar(&[
                link("a", "."),
                link("b", "a"),
                dir_entry("b/c"),
                link("b/c/up", ".."),
                file("b/c/up/deploy.sh", evil),
            ]),
            "it would replace 'deploy.sh'",
        ),
        (
            "a file added inside a used directory",
            raw_tar(&[dir_entry("k8s"), file("k8s/extra.yaml", evil)]),
            "inside 'k8s'",
        ),
        (
            "a used directory replaced by a link",
            raw_tar(&[file("evil/app.yaml", evil), link("k8s", "evil")]),
            "the directory 'k8s'",
        ),
        (
            "a used directory's file through a link to it",
            raw_tar(&[link("kk", "k8s"), file("kk/app.yaml", evil)]),
            "it would replace 'k8s/app.yaml'",
        ),
    ];
    for (what, artifact, expect) in cases {
        let node = guarded(vec![unarchive("app"), sh("sh ./deploy.sh")], Some(artifact)).await;
        let result = node.run().await;
        let text = node.all_text();
        assert_eq!(result.outcome, Outcome::Failure, "{what}: {text}");
        assert_eq!(result.failed_step, Some(0), "{what}: {text}");
        let error = result.error.unwrap_or_default();
        assert!(
            error.starts_with("artifact 'app': refused archive entry '"),
            "{what}: {error}"
        );
        assert!(error.contains(expect), "{what}: {error}");
        assert!(!text.contains("EVIL"), "{what}: {text}");
        assert_eq!(deploy_sh(&node), DEPLOY, "{what}");
        assert_eq!(
            std::fs::read(node.workspace().join("k8s/app.yaml")).expect("app.yaml"),
            APP,
            "{what}"
        );
    }
}

/// A link a step left in the workspace leads an entry onto a covered file: the entry is
/// judged where it lands.
#[tokio::test]
async fn a_link_a_step_made_does_not_lead_an_entry_past_the_guard() {
    let artifact = raw_tar(&[file("x/deploy.sh", b"echo EVIL\n")]);
    let node = guarded(
        vec![sh("ln -s . x"), unarchive("app"), sh("sh ./deploy.sh")],
        Some(artifact),
    )
    .await;
    let result = node.run().await;
    assert_eq!(result.failed_step, Some(1), "{}", node.all_text());
    let error = result.error.unwrap_or_default();
    assert!(
        error.contains("refused archive entry 'x/deploy.sh': it would replace 'deploy.sh'"),
        "{error}"
    );
    assert_eq!(deploy_sh(&node), DEPLOY);
}

/// An artifact of the whole source tree holds the covered files with their approved
/// bytes: they are left as they are, the rest is unpacked, and the steps run.
#[tokio::test]
async fn an_artifact_holding_the_approved_bytes_unpacks_and_runs() {
    let artifact = raw_tar(&[
        dir_entry("."),
        file("deploy.sh", DEPLOY),
        dir_entry("k8s"),
        file("k8s/app.yaml", APP),
        file("out/version.txt", b"v1\n"),
        link("current", "out"),
    ]);
    let node = guarded(
        vec![
            unarchive("app"),
            sh("sh ./deploy.sh; cat current/version.txt"),
        ],
        Some(artifact),
    )
    .await;
    let result = node.run().await;
    let text = node.all_text();
    assert_eq!(result.outcome, Outcome::Success, "{text}");
    assert_eq!(node.output(), ["approved deploy", "v1"]);
    assert!(
        text.contains("restored 'app' (2 entries, 4 already here as the approval covers them)"),
        "{text}"
    );
}

/// A restored cache cannot replace a covered file either: it is not restored, one line
/// says why, and the approved file runs.
#[tokio::test]
async fn a_cache_that_would_replace_a_covered_file_is_not_restored() {
    let node = guarded(vec![sh("sh ./deploy.sh; ls")], None).await;
    let cache = node.put_blob(raw_tar(&[
        dir_entry("vendor"),
        file("vendor/lib.txt", b"dep"),
        file("deploy.sh", b"echo EVIL\n"),
    ]));
    node.edit_job(|job| {
        job.restore_caches = vec![CacheRestore {
            name: "deps".into(),
            paths: vec![".".into()],
            digest: cache,
        }];
    });
    let result = node.run().await;
    let text = node.all_text();
    assert_eq!(result.outcome, Outcome::Success, "{text}");
    assert!(
        text.contains(
            "cache 'deps' not restored: refused archive entry 'deploy.sh': it would replace 'deploy.sh'"
        ),
        "{text}"
    );
    assert!(!text.contains("EVIL"), "{text}");
    assert_eq!(node.output()[0], "approved deploy");
}

/// A step that changes what the approval covers stops the stage before the next program
/// step: what runs by path is what was approved. Steps that change nothing covered run.
#[tokio::test]
async fn a_program_step_runs_only_while_the_covered_files_are_as_approved() {
    let cases = [
        ("echo 'echo EVIL' > deploy.sh", "it holds sha256:"),
        ("rm deploy.sh", "it is missing"),
        (
            "mv deploy.sh d && ln -s d deploy.sh",
            "'deploy.sh' is a symbolic link",
        ),
        ("echo x > k8s/extra.yaml", "its files give sha256:"),
        ("mv k8s k && ln -s k k8s", "'k8s' is a symbolic link"),
        ("ln -s /etc k8s/etc", "'k8s/etc' is a symbolic link"),
    ];
    for (change, expect) in cases {
        let node = guarded(
            vec![sh(change), echo("between"), sh("sh ./deploy.sh")],
            None,
        )
        .await;
        let result = node.run().await;
        let text = node.all_text();
        assert_eq!(result.failed_step, Some(2), "{change}: {text}");
        let error = result.error.unwrap_or_default();
        assert!(error.starts_with("'sh' not run: '"), "{change}: {error}");
        assert!(
            error.contains("the stage's approval covers"),
            "{change}: {error}"
        );
        assert!(error.contains(expect), "{change}: {error}");
        assert!(!text.contains("EVIL"), "{change}: {text}");
        assert_eq!(node.output(), ["between"], "{change}");
    }

    let node = guarded(
        vec![
            sh("mkdir -p out && echo built > out/x && cat k8s/app.yaml > out/y"),
            sh("sh ./deploy.sh"),
        ],
        None,
    )
    .await;
    let result = node.run().await;
    assert_eq!(result.outcome, Outcome::Success, "{}", node.all_text());
    assert_eq!(node.output(), ["approved deploy"]);
}

/// A source that does not hold what the node says the approval covers fails the stage
/// before any step.
#[tokio::test]
async fn a_source_other_than_the_approved_files_fails_before_any_step() {
    let node = guarded(vec![sh("echo ran")], None).await;
    let other = node.put_blob(raw_tar(&[
        file("deploy.sh", b"echo other\n"),
        file("k8s/app.yaml", APP),
    ]));
    node.edit_job(|job| job.source = Some(SourceRef { digest: other }));
    let result = node.run().await;
    assert_eq!(result.failed_step, None);
    let error = result.error.unwrap_or_default();
    assert!(
        error.starts_with("cannot prepare the stage: 'deploy.sh' is not what"),
        "{error}"
    );
    assert!(node.output().is_empty());
}

/// Without `uses` (a stage of the node's own run) nothing is guarded, and a hand-made
/// chain of links still cannot write outside the workspace.
#[tokio::test]
async fn without_uses_a_chain_of_links_still_cannot_leave_the_workspace() {
    let node = TestNode::start(vec![unarchive("app")]).await;
    let digest = node.put_blob(raw_tar(&[
        link("a", "."),
        link("a/b", ".."),
        file("b/escaped.txt", b"out"),
    ]));
    node.edit_job(|job| {
        job.artifacts.insert("app".into(), digest);
    });
    let result = node.run().await;
    assert_eq!(result.failed_step, Some(0), "{}", node.all_text());
    let parent = node.workspace().parent().expect("parent").to_owned();
    assert!(!parent.join("escaped.txt").exists());
}
