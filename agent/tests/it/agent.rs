//! The real `otto-agent` binary against a test node on a unix socket.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::common::*;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use otto_agent::mask::MASK;
use otto_agent::packages;
use otto_agent::protocol::{
    CacheRestore, CacheSave, EventBody, MAX_BATCH_EVENTS, MAX_EVENTS_BODY_BYTES, MAX_LINE_BYTES,
    Outcome, PackageRef, SecretValue, SourceRef, Stream,
};
use serde_json::{Value, json};

fn started(node: &TestNode) -> Vec<(usize, String)> {
    node.seen()
        .events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::StepStarted(s) => Some((s.index, s.symbol.clone())),
            _ => None,
        })
        .collect()
}

fn finished(node: &TestNode) -> Vec<(usize, Outcome, Option<i32>)> {
    node.seen()
        .events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::StepFinished(s) => Some((s.index, s.outcome, s.exit_code)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_successful_sh_step_streams_its_output() {
    let node = TestNode::start(vec![sh("echo hello; echo oops >&2"), sh("echo second")]).await;
    let result = node.run().await;
    assert_eq!(result.outcome, Outcome::Success);
    assert_eq!(result.failed_step, None);
    let lines = node.lines();
    assert!(
        lines.contains(&(Some(0), Stream::Stdout, "hello".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&(Some(0), Stream::Stderr, "oops".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&(Some(1), Stream::Stdout, "second".into())),
        "{lines:?}"
    );
    assert_eq!(started(&node), [(0, "sh".into()), (1, "sh".into())]);
    assert_eq!(
        finished(&node),
        [
            (0, Outcome::Success, Some(0)),
            (1, Outcome::Success, Some(0))
        ]
    );
    let seen = node.seen();
    let seqs: Vec<u64> = seen.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    assert!(seen.events.iter().all(|e| e.time > 1_600_000_000_000));
    assert_eq!(seen.job_requests, 1);
}

#[tokio::test]
async fn a_failing_sh_step_fails_the_stage_with_its_output() {
    let node = TestNode::start(vec![sh("echo before; exit 3"), sh("echo never")]).await;
    let result = node.run().await;
    assert_eq!(result.outcome, Outcome::Failure);
    assert_eq!(result.failed_step, Some(0));
    assert_eq!(result.error.as_deref(), Some("'sh' exited with code 3"));
    assert_eq!(node.output(), ["before"]);
    assert_eq!(started(&node), [(0, "sh".into())]);
    assert_eq!(finished(&node), [(0, Outcome::Failure, Some(3))]);
}

#[tokio::test]
async fn multi_line_scripts_run_with_errexit() {
    let node = TestNode::start(vec![sh(
        "echo one\necho two\n\nfor i in 1 2; do\n  echo loop $i\ndone\n",
    )])
    .await;
    assert_eq!(node.run().await.outcome, Outcome::Success);
    assert_eq!(node.output(), ["one", "two", "loop 1", "loop 2"]);

    let node = TestNode::start(vec![sh("echo a\nfalse\necho b")]).await;
    let result = node.run().await;
    assert_eq!(result.outcome, Outcome::Failure);
    assert_eq!(node.output(), ["a"]);
    assert_eq!(finished(&node), [(0, Outcome::Failure, Some(1))]);
}

#[tokio::test]
async fn echo_writes_its_text_without_a_process() {
    let node = TestNode::start(vec![echo("hello from echo\nsecond line")]).await;
    assert_eq!(node.run().await.outcome, Outcome::Success);
    assert_eq!(
        node.lines(),
        [
            (Some(0), Stream::Stdout, "hello from echo".into()),
            (Some(0), Stream::Stdout, "second line".into())
        ]
    );
    let pgids: Vec<Option<u32>> = node
        .seen()
        .events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::StepStarted(s) => Some(s.pgid),
            _ => None,
        })
        .collect();
    assert_eq!(pgids, [None]);
}

#[tokio::test]
async fn dir_runs_its_block_in_a_subdirectory_and_numbers_steps_depth_first() {
    let node = TestNode::start(vec![
        dir("sub/deeper", vec![sh("pwd; touch made-here")]),
        sh("test -f sub/deeper/made-here && echo found"),
    ])
    .await;
    let result = node.run().await;
    assert_eq!(result.outcome, Outcome::Success, "{:?}", node.all_text());
    let ws = fs::canonicalize(node.workspace()).expect("workspace");
    assert_eq!(
        node.output(),
        [ws.join("sub/deeper").display().to_string(), "found".into()]
    );
    assert_eq!(
        started(&node),
        [(0, "dir".into()), (1, "sh".into()), (2, "sh".into())]
    );

    let node = TestNode::start(vec![dir("a", vec![sh("exit 4")]), echo("after")]).await;
    let result = node.run().await;
    assert_eq!(result.failed_step, Some(1));
    assert_eq!(
        finished(&node),
        [(1, Outcome::Failure, Some(4)), (0, Outcome::Failure, None)]
    );
    assert!(!node.output().contains(&"after".to_string()));
}

#[tokio::test]
async fn dir_refuses_paths_outside_the_workspace() {
    for (path, expect) in [
        ("../x", "'..' is not allowed"),
        ("/tmp", "is absolute"),
        ("link", "through a symbolic link"),
    ] {
        let node = TestNode::start(vec![
            sh("ln -s /tmp link"),
            dir(path, vec![sh("echo inside")]),
        ])
        .await;
        let result = node.run().await;
        assert_eq!(result.outcome, Outcome::Failure, "{path}");
        assert_eq!(result.failed_step, Some(1), "{path}");
        let error = result.error.unwrap_or_default();
        assert!(error.contains(expect), "{path}: {error}");
        assert!(!node.output().contains(&"inside".to_string()));
    }
}

#[tokio::test]
async fn archive_and_unarchive_round_trip_through_the_blob_store() {
    let build = TestNode::start(vec![
        sh(
            "mkdir -p dist/sub && echo alpha > dist/a.txt && echo beta > dist/sub/b.txt\n\
            printf '#!/bin/sh\\necho ran\\n' > dist/run.sh && chmod +x dist/run.sh\n\
            ln -s a.txt dist/link",
        ),
        archive("dist/", "site"),
    ])
    .await;
    let result = build.run().await;
    assert_eq!(result.outcome, Outcome::Success, "{}", build.all_text());
    assert_eq!(result.artifacts.len(), 1);
    let artifact = &result.artifacts[0];
    assert_eq!(artifact.name, "site");
    let bytes = build
        .seen()
        .blobs
        .get(&artifact.digest)
        .cloned()
        .expect("stored");
    assert_eq!(digest(&bytes), artifact.digest);
    assert_eq!(bytes.len() as u64, artifact.size);

    let deploy = TestNode::start_with(
        vec![
            unarchive("site"),
            sh("cat dist/a.txt dist/sub/b.txt dist/link; ./dist/run.sh"),
        ],
        |job| {
            job.artifacts.insert("site".into(), artifact.digest.clone());
        },
    )
    .await;
    deploy.put_blob(bytes.clone());
    let result = deploy.run().await;
    assert_eq!(result.outcome, Outcome::Success, "{}", deploy.all_text());
    assert_eq!(deploy.output(), ["alpha", "beta", "alpha", "ran"]);

    // The same bytes under the same digest, with one byte changed.
    let mut tampered = bytes;
    let at = tampered
        .iter()
        .position(|&b| b == b'a')
        .expect("a byte to change");
    tampered[at] = b'A';
    let node = TestNode::start_with(vec![unarchive("site"), sh("echo never")], |job| {
        job.artifacts.insert("site".into(), artifact.digest.clone());
    })
    .await;
    node.put_blob_as(&artifact.digest, tampered);
    let result = node.run().await;
    assert_eq!(result.outcome, Outcome::Failure);
    assert_eq!(result.failed_step, Some(0));
    let error = result.error.unwrap_or_default();
    assert!(error.contains("does not match its digest"), "{error}");
    assert!(!node.workspace().join("dist").exists());
}

#[tokio::test]
async fn archive_refuses_paths_outside_the_workspace_and_missing_paths() {
    for (path, expect) in [
        ("..", "'..' is not allowed"),
        ("/etc", "is absolute"),
        ("out", "leads outside the workspace"),
        ("missing", "nothing at 'missing' to archive"),
    ] {
        let node = TestNode::start(vec![sh("ln -s /etc out"), archive(path, "x")]).await;
        let result = node.run().await;
        assert_eq!(result.failed_step, Some(1), "{path}");
        let error = result.error.unwrap_or_default();
        assert!(error.contains(expect), "{path}: {error}");
        assert!(result.artifacts.is_empty());
    }
}

/// A tar with one entry whose header is written by hand, so nothing checks it.
fn raw_tar(name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, data).expect("append");
    builder.into_inner().expect("tar")
}

#[tokio::test]
async fn unarchive_refuses_entries_that_escape_the_workspace() {
    let cases = [
        (
            raw_tar(b"../evil.txt", tar::EntryType::Regular, b"", b"evil"),
            "'..' is not allowed",
        ),
        (
            raw_tar(b"/abs-evil.txt", tar::EntryType::Regular, b"", b"evil"),
            "is absolute",
        ),
        (
            raw_tar(b"link", tar::EntryType::Symlink, b"/etc", b""),
            "leads outside the workspace",
        ),
        (
            raw_tar(b"sub/link", tar::EntryType::Symlink, b"../../x", b""),
            "leads outside the workspace",
        ),
        (
            raw_tar(b"hard", tar::EntryType::Link, b"/etc/passwd", b""),
            "not supported",
        ),
    ];
    for (bytes, expect) in cases {
        let node = TestNode::start(vec![unarchive("evil")]).await;
        let digest = node.put_blob(bytes);
        node.edit_job(|job| {
            job.artifacts.insert("evil".into(), digest);
        });
        let result = node.run().await;
        assert_eq!(result.failed_step, Some(0));
        let error = result.error.unwrap_or_default();
        assert!(error.contains("refused archive entry"), "{error}");
        assert!(error.contains(expect), "{error}");
        assert!(!node.dir.path().join("evil.txt").exists());
        assert!(!Path::new("/abs-evil.txt").exists());
    }
}

#[tokio::test]
async fn unarchive_of_an_unknown_artifact_names_the_ones_available() {
    let node = TestNode::start_with(vec![unarchive("sight")], |job| {
        job.artifacts.insert("site".into(), digest(b"x"));
    })
    .await;
    let result = node.run().await;
    assert_eq!(
        result.error.as_deref(),
        Some("no artifact named 'sight' (available: site)")
    );
}

#[tokio::test]
async fn the_source_snapshot_and_caches_are_restored_and_caches_saved_after_success() {
    let mut snapshot = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(6);
    header.set_mode(0o644);
    snapshot
        .append_data(&mut header, "hello.txt", &b"hello\n"[..])
        .expect("append");
    let snapshot = snapshot.into_inner().expect("tar");

    let node = TestNode::start_with(
        vec![sh(
            "cat hello.txt; mkdir -p vendor && echo dep > vendor/lib.txt",
        )],
        |job| {
            job.save_caches = vec![
                CacheSave {
                    name: "deps".into(),
                    paths: vec!["vendor/".into()],
                },
                CacheSave {
                    name: "none".into(),
                    paths: vec!["absent".into()],
                },
            ];
        },
    )
    .await;
    let source = node.put_blob(snapshot);
    node.edit_job(|job| job.source = Some(SourceRef { digest: source }));
    let result = node.run().await;
    assert_eq!(result.outcome, Outcome::Success, "{}", node.all_text());
    assert_eq!(node.output(), ["hello"]);
    assert_eq!(result.caches_saved.len(), 1);
    let cache = result.caches_saved[0].clone();
    assert_eq!(cache.name, "deps");
    let bytes = node
        .seen()
        .blobs
        .get(&cache.digest)
        .cloned()
        .expect("cache stored");
    assert!(
        node.all_text()
            .contains("cache 'none' not saved: none of its paths exist")
    );

    let next = TestNode::start_with(vec![sh("cat vendor/lib.txt"), sh("exit 1")], |job| {
        job.restore_caches = vec![CacheRestore {
            name: "deps".into(),
            paths: vec!["vendor/".into()],
            digest: cache.digest.clone(),
        }];
        job.save_caches = vec![CacheSave {
            name: "deps".into(),
            paths: vec!["vendor/".into()],
        }];
    })
    .await;
    next.put_blob(bytes);
    let result = next.run().await;
    assert_eq!(next.output(), ["dep"]);
    assert!(next.all_text().contains("restored cache 'deps'"));
    assert_eq!(result.outcome, Outcome::Failure);
    assert!(
        result.caches_saved.is_empty(),
        "no cache is saved after a failure"
    );
}

const TOKEN: &str = "s3cr3t-Value/with+chars?&=";
const KEY: &str =
    "-----BEGIN TEST KEY-----\nMIIBVQIBADANBgkqhkiG9w0B\nAQEFAASCAT8wggE7\n-----END TEST KEY-----";

#[tokio::test]
async fn secrets_are_masked_in_every_form_in_every_event() {
    let url = percent_encoding::utf8_percent_encode(TOKEN, percent_encoding::NON_ALPHANUMERIC)
        .to_string();
    let script = format!(
        "T=$(cat \"$OTTO_SECRETS_DIR/DEPLOY_TOKEN\")\n\
         echo \"plain: $T\"\n\
         printf '%s' \"$T\" | base64\n\
         echo \"$T\" | base64\n\
         printf '%s' \"$T\" | base64 | tr '+/' '-_' | tr -d '='\n\
         echo 'url: https://x.test/?t={url}&more'\n\
         cat \"$OTTO_SECRETS_DIR/SIGNING_KEY\"\n\
         echo \"to stderr: $T\" >&2\n\
         exit 1"
    );
    let node = TestNode::start_with(vec![sh(&script)], |job| {
        job.secrets
            .insert("DEPLOY_TOKEN".into(), SecretValue::new(TOKEN));
        job.secrets
            .insert("SIGNING_KEY".into(), SecretValue::new(KEY));
    })
    .await;
    let result = node.run().await;
    assert_eq!(result.outcome, Outcome::Failure);
    let output = node.output();
    assert!(output.contains(&format!("plain: {MASK}")), "{output:?}");
    assert!(
        output.contains(&format!("url: https://x.test/?t={MASK}&more")),
        "{output:?}"
    );
    assert!(output.contains(&format!("to stderr: {MASK}")), "{output:?}");
    assert!(
        output.iter().filter(|l| l.as_str() == MASK).count() >= 3,
        "{output:?}"
    );

    let mut forms = vec![
        TOKEN.to_string(),
        STANDARD.encode(TOKEN),
        URL_SAFE_NO_PAD.encode(TOKEN),
        STANDARD.encode(format!("{TOKEN}\n"))[..32].to_string(),
        url,
    ];
    forms.extend(KEY.lines().map(str::to_owned));
    let everything = serde_json::to_string(&node.seen().events).expect("json")
        + &serde_json::to_string(&result).expect("json");
    for form in &forms {
        assert!(
            !everything.contains(form.as_str()),
            "{form} leaked: {output:?}"
        );
    }
}

#[tokio::test]
async fn secrets_are_files_in_a_private_directory_and_env_only_on_request() {
    let script = "echo \"env=${DEPLOY_TOKEN:-unset}\"\n\
                  stat -c %a \"$OTTO_SECRETS_DIR\" \"$OTTO_SECRETS_DIR/DEPLOY_TOKEN\"\n\
                  echo \"dir=$OTTO_SECRETS_DIR\"\n\
                  case \"$OTTO_SECRETS_DIR\" in \"$OTTO_WORKSPACE\"*) echo inside;; *) echo outside;; esac";
    for secret_env in [false, true] {
        let node = TestNode::start_with(vec![sh(script)], |job| {
            job.secrets
                .insert("DEPLOY_TOKEN".into(), SecretValue::new(TOKEN));
            job.secret_env = secret_env;
            job.env.insert("REGION".into(), "eu-1".into());
        })
        .await;
        let result = node.run().await;
        assert_eq!(result.outcome, Outcome::Success, "{}", node.all_text());
        let output = node.output();
        let expected_env = if secret_env {
            format!("env={MASK}")
        } else {
            "env=unset".into()
        };
        assert_eq!(output[0], expected_env);
        assert_eq!(output[1..3], ["700", "600"]);
        assert_eq!(output[4], "outside");
        let dir = output[3].strip_prefix("dir=").expect("dir line");
        assert!(
            !Path::new(dir).exists(),
            "the secrets directory {dir} is removed"
        );
    }

    let node = TestNode::start_with(
        vec![sh("echo \"$REGION $OTTO_STAGE $OTTO_ATTEMPT\"")],
        |job| {
            job.env.insert("REGION".into(), "eu-1".into());
        },
    )
    .await;
    node.run().await;
    assert_eq!(node.output(), ["eu-1 build 1"]);
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let node = TestNode::start_with(
        vec![
            sh("sleep 300 &\necho $! > bg.pid\necho started\nsleep 300"),
            echo("never"),
        ],
        |job| {
            job.timeout_secs = Some(1);
            job.kill_grace_secs = 1;
        },
    )
    .await;
    let result = node.run().await;
    assert_eq!(result.outcome, Outcome::Failure);
    assert_eq!(result.failed_step, Some(0));
    assert_eq!(result.error.as_deref(), Some("timed out after 1 s"));
    assert_eq!(started(&node).len(), 1);
    let pid = read_pid(&node.workspace().join("bg.pid")).await;
    assert!(
        gone(pid).await,
        "the background child {pid} of the step still runs"
    );
}

#[tokio::test]
async fn processes_a_step_leaves_behind_end_with_it() {
    let node = TestNode::start(vec![sh("sleep 300 &\necho $! > bg.pid"), echo("next")]).await;
    let result = node.run().await;
    assert_eq!(result.outcome, Outcome::Success);
    let pid = read_pid(&node.workspace().join("bg.pid")).await;
    assert!(gone(pid).await, "the background child {pid} still runs");
}

#[tokio::test]
async fn sigterm_to_the_agent_stops_the_step_group_and_reports_a_cancel() {
    let node = TestNode::start_with(
        vec![sh("sleep 300 &\necho $! > bg.pid\nsleep 300")],
        |job| job.kill_grace_secs = 1,
    )
    .await;
    let child = node.spawn_agent();
    let agent = child.id().expect("agent pid");
    let pid = read_pid(&node.workspace().join("bg.pid")).await;
    let agent_pid = rustix::process::Pid::from_raw(agent as i32).expect("pid");
    rustix::process::kill_process(agent_pid, rustix::process::Signal::TERM).expect("signal");
    let run = finish(child).await;
    assert!(run.status.success(), "{}", run.stderr);
    let result = node.result();
    assert_eq!(result.outcome, Outcome::Failure);
    assert_eq!(result.error.as_deref(), Some("cancelled"));
    assert!(gone(pid).await, "the background child {pid} still runs");
}

#[tokio::test]
async fn output_is_sent_in_bounded_batches() {
    let node = TestNode::start(vec![sh(
        "i=0; while [ $i -lt 700 ]; do echo line $i; i=$((i+1)); done",
    )])
    .await;
    node.run().await;
    let output = node.output();
    assert_eq!(output.len(), 700);
    assert_eq!(output[699], "line 699");
    let seen = node.seen();
    assert!(seen.batches.len() >= 3, "{:?}", seen.batches);
    assert!(seen.batches.iter().all(|&n| n <= MAX_BATCH_EVENTS));
    assert!(seen.batch_bytes.iter().all(|&n| n <= MAX_EVENTS_BODY_BYTES));
}

#[tokio::test]
async fn one_huge_line_is_sent_in_batches_bounded_by_bytes() {
    // One 300 MB line without a newline: the agent cuts it into lines of the longest size
    // and lets 32 MiB through. However long the lines, no events body may be larger than
    // the bound the node takes (a batch of 256 such lines would be 16 MiB of JSON).
    let node = TestNode::start_with(vec![sh("head -c 300000000 /dev/zero | tr -c x x")], |job| {
        job.limits.output_bytes = 32 << 20;
    })
    .await;
    let result = node.run().await;
    assert_eq!(result.outcome, Outcome::Success);
    let output = node.output();
    assert!(output.iter().all(|l| l.len() <= MAX_LINE_BYTES));
    let kept: usize = output.iter().map(String::len).sum();
    assert!(kept > 31 << 20, "{kept} bytes of output arrived");
    let seen = node.seen();
    let largest = seen.batch_bytes.iter().copied().max().unwrap_or(0);
    assert!(
        largest <= MAX_EVENTS_BODY_BYTES,
        "an events body of {largest} bytes (bound {MAX_EVENTS_BODY_BYTES})"
    );
    assert!(seen.batches.iter().all(|&n| n <= MAX_BATCH_EVENTS));
}

#[tokio::test]
async fn an_unreachable_node_makes_the_agent_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_otto-agent"))
        .arg("--socket")
        .arg(dir.path().join("nobody.sock"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let run = finish(child).await;
    assert_eq!(run.status.code(), Some(1));
    assert!(run.stderr.contains("cannot connect to"), "{}", run.stderr);
}

const MANIFEST: &str = "\
symbol: greet
description: Greets someone.
parameters:
  name:
    type: string
    required: true
  loud:
    type: bool
entrypoint: run.sh
";

/// A step package as the node sends it: a tar of its directory.
fn package_tar(dir: &Path) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.append_dir_all(".", dir).expect("tar the package");
    builder.into_inner().expect("tar")
}

/// Gives the job the package in `root/greet` under `name`.
fn give_package(node: &TestNode, root: &Path, name: &str) {
    let digest = node.put_blob(package_tar(&root.join("greet")));
    node.edit_job(|job| {
        job.packages.push(PackageRef {
            name: name.into(),
            digest,
        });
    });
}

fn install_package(root: &Path, manifest: &str) {
    let dir = root.join("greet");
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join("manifest.yml"), manifest).expect("manifest");
    let mut run = fs::File::create(dir.join("run.sh")).expect("run.sh");
    run.write_all(b"#!/bin/sh\ntouch \"$OTTO_WORKSPACE/ran\"\necho \"cwd=$(pwd)\"\ncat \"$OTTO_INVOCATION\"\necho\n")
        .expect("write");
    fs::set_permissions(dir.join("run.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[tokio::test]
async fn a_step_package_runs_with_its_invocation_file() {
    let packages = tempfile::tempdir().expect("tempdir");
    install_package(packages.path(), MANIFEST);
    let greet = step(
        "greet",
        vec!["world".into()],
        &[("loud", json!(true))],
        vec![],
    );
    let node = TestNode::start(vec![dir("sub", vec![greet])]).await;
    give_package(&node, packages.path(), "greet");
    let result = node.run().await;
    assert_eq!(result.outcome, Outcome::Success, "{}", node.all_text());
    let ws = fs::canonicalize(node.workspace()).expect("workspace");
    let output = node.output();
    assert_eq!(output[0], format!("cwd={}", ws.join("sub").display()));
    let invocation: Value = serde_json::from_str(&output[1]).expect("invocation json");
    assert_eq!(
        invocation,
        json!({"symbol": "greet", "args": {"name": "world", "loud": true}, "workspace": ws})
    );
}

#[tokio::test]
async fn step_package_arguments_are_checked_before_it_runs() {
    let packages = tempfile::tempdir().expect("tempdir");
    install_package(packages.path(), MANIFEST);
    for (greet, expect) in [
        (
            step("greet", vec![], &[("loud", json!(true))], vec![]),
            "'greet' needs 'name' (a string)",
        ),
        (
            step("greet", vec![json!(42)], &[], vec![]),
            "'greet' expects a string for 'name', got a number",
        ),
        (
            step(
                "greet",
                vec!["x".into()],
                &[("colour", json!("red"))],
                vec![],
            ),
            "'greet' has no parameter 'colour'",
        ),
    ] {
        let node = TestNode::start(vec![greet]).await;
        give_package(&node, packages.path(), "greet");
        let result = node.run().await;
        assert_eq!(result.failed_step, Some(0));
        assert_eq!(result.error.as_deref(), Some(expect));
        assert!(
            !node.workspace().join("ran").exists(),
            "the entrypoint must not run"
        );
    }

    let node = TestNode::start(vec![step("deploy", vec![], &[], vec![])]).await;
    let result = node.run().await;
    let error = result.error.unwrap_or_default();
    assert!(error.starts_with("unknown step 'deploy'"), "{error}");
}

#[tokio::test]
async fn a_bad_manifest_fails_the_stage_with_the_file_and_the_problem() {
    let packages = tempfile::tempdir().expect("tempdir");
    install_package(
        packages.path(),
        &MANIFEST.replace("type: bool", "type: boolean"),
    );
    let manifest = packages.path().join("greet/manifest.yml");
    let problem =
        "parameter 'loud' has unknown type 'boolean' (expected string, number, bool or list)";
    let err = packages::load_dir(packages.path()).expect_err("bad manifest");
    assert_eq!(
        err.to_string(),
        format!("{}: {problem}", manifest.display())
    );

    let node = TestNode::start(vec![sh("echo never")]).await;
    give_package(&node, packages.path(), "greet");
    let result = node.run().await;
    assert_eq!(result.outcome, Outcome::Failure);
    assert_eq!(result.failed_step, None);
    // The agent names the manifest where it unpacked the package, in its private directory.
    let error = result.error.unwrap_or_default();
    assert!(
        error.starts_with("cannot prepare the stage: /")
            && error.ends_with(&format!("/packages/greet/manifest.yml: {problem}")),
        "{error}"
    );
    assert!(node.output().is_empty());
}

#[tokio::test]
async fn a_step_package_named_out_of_its_directory_or_after_another_step_is_refused() {
    let packages = tempfile::tempdir().expect("tempdir");
    install_package(packages.path(), MANIFEST);
    for (name, expect) in [
        (
            "../escape",
            "cannot prepare the stage: step package name '../escape' cannot be a directory name",
        ),
        (
            "deploy",
            "cannot prepare the stage: step package 'deploy' defines step 'greet', not 'deploy'",
        ),
    ] {
        let node = TestNode::start(vec![sh("echo never")]).await;
        give_package(&node, packages.path(), name);
        let result = node.run().await;
        assert_eq!(result.error.as_deref(), Some(expect));
        assert!(node.output().is_empty());
    }
    let node = TestNode::start(vec![sh("echo never")]).await;
    give_package(&node, packages.path(), "greet");
    give_package(&node, packages.path(), "greet");
    let result = node.run().await;
    assert_eq!(
        result.error.as_deref(),
        Some("cannot prepare the stage: two step packages are named 'greet'")
    );
}

#[tokio::test]
async fn an_artifact_over_the_size_limit_fails_the_step_without_filling_the_disk() {
    // A 1 GiB sparse file: a few KiB on disk, 1 GiB in a tar.
    let node = TestNode::start_with(
        vec![
            sh("mkdir out && truncate -s 1G out/big && echo small > out/small"),
            archive("out/", "big"),
        ],
        |job| job.max_artifact_bytes = Some(1 << 20),
    )
    .await;
    let result = node.run().await;
    assert_eq!(result.failed_step, Some(1), "{}", node.all_text());
    let error = result.error.unwrap_or_default();
    assert!(
        error.contains("artifact 'big' is larger than the limit of 1048576 bytes (1 MiB)"),
        "{error}"
    );
    assert!(error.contains("[agent] max_artifact_bytes"), "{error}");
    assert!(result.artifacts.is_empty());
    assert!(node.seen().blobs.is_empty(), "nothing was stored");

    // Under the limit the same step works.
    let node = TestNode::start_with(
        vec![
            sh("mkdir out && echo small > out/small"),
            archive("out/", "small"),
        ],
        |job| job.max_artifact_bytes = Some(1 << 20),
    )
    .await;
    let result = node.run().await;
    assert_eq!(result.outcome, Outcome::Success, "{}", node.all_text());
}
