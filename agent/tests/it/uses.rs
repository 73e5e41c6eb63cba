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
    // The steps make `in/`, a directory of the stage's own that leads to nothing covered,
    // so links the archive makes there are written and what is judged is where they lead.
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "other bytes",
            raw_tar(&[file("deploy.sh", evil), file("in/v.txt", b"v1")]),
            "it would replace 'deploy.sh' with sha256:",
        ),
        (
            "spelled ./",
            raw_tar(&[file("./deploy.sh", evil)]),
            "it would replace 'deploy.sh'",
        ),
        (
            "a link in its place",
            raw_tar(&[file("in/evil.sh", evil), link("deploy.sh", "in/evil.sh")]),
            "a file the stage's approval covers",
        ),
        (
            "through a link the archive made",
            raw_tar(&[link("in/x", ".."), file("in/x/deploy.sh", evil)]),
            "it would replace 'deploy.sh'",
        ),
        (
            "through a chain of links",
            raw_tar(&[
                link("in/a", "."),
                link("in/b", "a"),
                dir_entry("in/b/c"),
                link("in/b/c/up", "../.."),
                file("in/b/c/up/deploy.sh", evil),
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
            raw_tar(&[file("in/evil/app.yaml", evil), link("k8s", "in/evil")]),
            "the directory 'k8s'",
        ),
        (
            "a used directory's file through a link to it",
            raw_tar(&[link("in/kk", "../k8s"), file("in/kk/app.yaml", evil)]),
            "it would replace 'k8s/app.yaml'",
        ),
    ];
    for (what, artifact, expect) in cases {
        let node = guarded(
            vec![sh("mkdir in"), unarchive("app"), sh("sh ./deploy.sh")],
            Some(artifact),
        )
        .await;
        let result = node.run().await;
        let text = node.all_text();
        assert_eq!(result.outcome, Outcome::Failure, "{what}: {text}");
        assert_eq!(result.failed_step, Some(1), "{what}: {text}");
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
/// bytes: they are left as they are, the rest is unpacked where the steps made room for it
/// (`out/`, a directory of the stage's own), and the steps run.
#[tokio::test]
async fn an_artifact_holding_the_approved_bytes_unpacks_and_runs() {
    let artifact = raw_tar(&[
        dir_entry("."),
        file("deploy.sh", DEPLOY),
        dir_entry("k8s"),
        file("k8s/app.yaml", APP),
        dir_entry("out"),
        file("out/version.txt", b"v1\n"),
        link("out/current", "version.txt"),
    ]);
    let node = guarded(
        vec![
            sh("mkdir out"),
            unarchive("app"),
            sh("sh ./deploy.sh; cat out/current"),
        ],
        Some(artifact),
    )
    .await;
    let result = node.run().await;
    let text = node.all_text();
    assert_eq!(result.outcome, Outcome::Success, "{text}");
    assert_eq!(node.output(), ["approved deploy", "v1"]);
    assert!(
        text.contains("restored 'app' (3 entries, 4 already here as the approval covers them)"),
        "{text}"
    );
}

/// A restored cache cannot replace a covered file either: it is not restored, one line
/// says why, and the approved file runs.
#[tokio::test]
async fn a_cache_that_would_replace_a_covered_file_is_not_restored() {
    let node = guarded(vec![sh("sh ./deploy.sh; ls")], None).await;
    let cache = node.put_blob(raw_tar(&[
        file("deploy.sh", b"echo EVIL\n"),
        dir_entry("vendor"),
        file("vendor/lib.txt", b"dep"),
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

// F2-e of the review of #12: an approval covers a used file's bytes, and the file loads
// what lies beside it (Python's `json.py`, a sourced `lib.sh`) or above it (Node's
// `node_modules/`, looked up in every directory on the way to the root). No artifact or
// cache entry may add to a directory that leads to a used path.

const SCRIPT: &[u8] = b"[ -f ./lib.sh ] && . ./lib.sh; echo approved script\n";
const PY: &[u8] = b"import json\nprint('approved py', json.dumps(1))\n";
const JS: &[u8] = b"let pad = 'none';\ntry { pad = require('left-pad'); } catch (e) {}\nconsole.log('approved js', typeof pad);\n";

/// `uses ['deploy.sh', 'ci/deploy.py', 'ci/deploy.js']`, with those files as the source.
async fn loading(steps: Vec<otto_pipeline::plan::Step>, artifact: Option<Vec<u8>>) -> TestNode {
    let source = raw_tar(&[
        file("deploy.sh", SCRIPT),
        file("ci/deploy.py", PY),
        file("ci/deploy.js", JS),
    ]);
    let uses: Vec<Used> = [
        ("deploy.sh", SCRIPT),
        ("ci/deploy.py", PY),
        ("ci/deploy.js", JS),
    ]
    .iter()
    .map(|(path, bytes)| Used {
        path: (*path).into(),
        sha256: digest(bytes),
    })
    .collect();
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

#[tokio::test]
async fn an_artifact_cannot_add_what_a_used_file_loads_beside_or_above_it() {
    let evil_sh: &[u8] = b"echo EVIL-SH\n";
    let evil_py: &[u8] = b"def dumps(x):\n    return 'EVIL-PY'\n";
    let evil_js: &[u8] = b"console.log('EVIL-JS'); module.exports = 1;\n";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "json.py beside deploy.py",
            raw_tar(&[file("ci/json.py", evil_py)]),
            "it would add 'json.py' to 'ci', the directory of 'ci/deploy.",
        ),
        (
            "a package directory beside deploy.py",
            raw_tar(&[dir_entry("ci/json"), file("ci/json/__init__.py", evil_py)]),
            "it would add 'json' to 'ci'",
        ),
        (
            "a byte-compiled json beside deploy.py",
            raw_tar(&[file("ci/__pycache__/json.cpython-311.pyc", evil_py)]),
            "it would add '__pycache__' to 'ci'",
        ),
        (
            "node_modules beside deploy.js, no directory entries",
            raw_tar(&[file("ci/node_modules/left-pad/index.js", evil_js)]),
            "it would add 'node_modules' to 'ci'",
        ),
        (
            "node_modules at the root, which require() looks in too",
            raw_tar(&[
                dir_entry("node_modules"),
                file("node_modules/left-pad/index.js", evil_js),
            ]),
            "it would add 'node_modules' to the top of the workspace",
        ),
        (
            "a lib.sh the used script sources",
            raw_tar(&[file("lib.sh", evil_sh)]),
            "it would add 'lib.sh' to the top of the workspace",
        ),
        (
            "through a link the archive made",
            raw_tar(&[link("x", "ci"), file("x/json.py", evil_py)]),
            "it would add 'x' to the top of the workspace",
        ),
    ];
    for (what, artifact, expect) in cases {
        let node = loading(
            vec![
                unarchive("app"),
                sh("sh ./deploy.sh; python3 ci/deploy.py; node ci/deploy.js"),
            ],
            Some(artifact),
        )
        .await;
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
        assert!(error.contains("uses"), "{what}: {error}");
        assert!(!error.contains('\n'), "{what}: one line: {error}");
        assert!(!text.contains("EVIL"), "{what}: {text}");
        for name in [
            "ci/json.py",
            "ci/json",
            "ci/__pycache__",
            "ci/node_modules",
            "lib.sh",
        ] {
            assert!(
                !node.workspace().join(name).exists(),
                "{what}: {name} was written"
            );
        }
    }
}

/// A link a step left leads an entry into a directory that leads to a used file: judged
/// where it lands, refused.
#[tokio::test]
async fn a_link_a_step_made_does_not_lead_an_addition_beside_a_used_file() {
    let artifact = raw_tar(&[file("x/json.py", b"def dumps(x):\n    return 'EVIL'\n")]);
    let node = loading(
        vec![
            sh("ln -s ci x"),
            unarchive("app"),
            sh("python3 ci/deploy.py"),
        ],
        Some(artifact),
    )
    .await;
    let result = node.run().await;
    assert_eq!(result.failed_step, Some(1), "{}", node.all_text());
    let error = result.error.unwrap_or_default();
    assert!(
        error.contains("refused archive entry 'x/json.py': it would add 'json.py' to 'ci'"),
        "{error}"
    );
    assert!(!node.workspace().join("ci/json.py").exists());
}

/// Inputs unpack in a directory of their own (`dir 'in' { unarchive … }`), or in a
/// directory a step made: what lies there is no neighbour of a used file, and the steps
/// run. At the top of the workspace the same artifact is refused, saying so.
#[tokio::test]
async fn inputs_unpack_in_a_directory_of_their_own() {
    let artifact = || {
        raw_tar(&[
            dir_entry("."),
            file("deploy.sh", SCRIPT),
            file("lib.sh", b"echo from the artifact\n"),
            dir_entry("out"),
            file("out/version.txt", b"v1\n"),
            link("current", "out"),
        ])
    };
    let node = loading(
        vec![
            dir("in", vec![unarchive("app")]),
            sh("sh ./deploy.sh; cat in/current/version.txt"),
        ],
        Some(artifact()),
    )
    .await;
    let result = node.run().await;
    let text = node.all_text();
    assert_eq!(result.outcome, Outcome::Success, "{text}");
    assert_eq!(node.output(), ["approved script", "v1"]);

    let node = loading(
        vec![unarchive("app"), sh("sh ./deploy.sh")],
        Some(artifact()),
    )
    .await;
    let result = node.run().await;
    let error = result.error.unwrap_or_default();
    assert_eq!(result.failed_step, Some(0), "{error}");
    assert!(error.contains("dir 'in' { unarchive"), "{error}");

    // A directory a step made is the steps' own: entries land in it.
    let outputs = raw_tar(&[dir_entry("out"), file("out/version.txt", b"v2\n")]);
    let node = loading(
        vec![
            sh("mkdir out"),
            unarchive("app"),
            sh("sh ./deploy.sh; cat out/version.txt"),
        ],
        Some(outputs),
    )
    .await;
    let result = node.run().await;
    assert_eq!(result.outcome, Outcome::Success, "{}", node.all_text());
    assert_eq!(node.output(), ["approved script", "v2"]);
}

/// A cache of `node_modules/` restored at the top of the workspace would be looked up by
/// the used `ci/deploy.js`: not restored, one line says why, and the approved file runs.
#[tokio::test]
async fn a_cache_that_would_add_beside_a_used_file_is_not_restored() {
    let node = loading(vec![sh("node ci/deploy.js")], None).await;
    let cache = node.put_blob(raw_tar(&[
        dir_entry("node_modules"),
        file(
            "node_modules/left-pad/index.js",
            b"console.log('EVIL'); module.exports = 1;\n",
        ),
    ]));
    node.edit_job(|job| {
        job.restore_caches = vec![CacheRestore {
            name: "npm".into(),
            paths: vec!["node_modules/".into()],
            digest: cache,
        }];
    });
    let result = node.run().await;
    let text = node.all_text();
    assert_eq!(result.outcome, Outcome::Success, "{text}");
    assert!(
        text.contains("cache 'npm' not restored: refused archive entry 'node_modules': it would add 'node_modules' to the top of the workspace"),
        "{text}"
    );
    assert!(!text.contains("EVIL"), "{text}");
    assert!(!node.workspace().join("node_modules").exists());
}

/// A workspace handed on (`runtime { from }`) that holds a file beside a used one fails
/// the stage before any step, naming it.
#[tokio::test]
async fn a_workspace_handed_on_with_a_file_beside_a_used_one_fails_before_any_step() {
    let handed = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(handed.path().join("ci")).expect("ci");
    std::fs::write(handed.path().join("ci/deploy.py"), PY).expect("deploy.py");
    std::fs::write(
        handed.path().join("ci/json.py"),
        b"def dumps(x):\n    return 'EVIL'\n",
    )
    .expect("json.py");
    let node = loading(vec![sh("python3 ci/deploy.py")], None).await;
    let from = handed.path().to_owned();
    node.edit_job(|job| job.start_from = Some(from));
    let result = node.run().await;
    let text = node.all_text();
    assert_eq!(result.outcome, Outcome::Failure, "{text}");
    assert_eq!(result.failed_step, None, "{text}");
    let error = result.error.unwrap_or_default();
    assert!(
        error.contains("'ci/json.py'") && error.contains("'ci/deploy.py'"),
        "{error}"
    );
    assert!(error.contains("workspace handed on"), "{error}");
    assert!(!text.contains("EVIL"), "{text}");
}

/// A workspace handed on (`runtime { from 'Build' }`) whose `k8s` is a link that leads
/// nowhere: the source's used `k8s/` cannot be put over it. The stage fails before any
/// step with one line naming the workspace, the entry and why.
#[tokio::test]
async fn a_source_that_cannot_go_over_the_workspace_handed_on_says_where_and_why() {
    let handed = tempfile::tempdir().expect("tempdir");
    let from = handed.path().join("Build-1");
    std::fs::create_dir(&from).expect("Build-1");
    std::os::unix::fs::symlink("gone", from.join("k8s")).expect("link");
    let (_, uses) = approved();
    let node = TestNode::start_with(vec![sh("echo ran")], |job| job.uses = uses).await;
    let source = node.put_blob(raw_tar(&[
        file("deploy.sh", DEPLOY),
        dir_entry("k8s"),
        file("k8s/app.yaml", APP),
    ]));
    node.edit_job(|job| {
        job.source = Some(SourceRef { digest: source });
        job.start_from = Some(from);
    });
    let result = node.run().await;
    assert_eq!(result.failed_step, None, "{}", node.all_text());
    let error = result.error.unwrap_or_default();
    assert!(!error.contains('\n'), "one line: {error}");
    assert!(
        error.contains("the workspace handed on by 'Build-1'"),
        "{error}"
    );
    assert!(error.contains("'k8s'"), "{error}");
    assert!(error.contains("File exists"), "the why: {error}");
    assert!(node.output().is_empty());
}
