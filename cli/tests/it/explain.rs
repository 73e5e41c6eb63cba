//! `otto explain` as a user runs it: the real binary on the repository's examples.
//!
//! Golden files live in `tests/golden/`; run with `OTTO_BLESS=1` to rewrite them after an
//! intended change, and review the diff.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `otto` from the repository root, so paths in its output are stable.
fn otto(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_otto"))
        .args(args)
        .current_dir(repo())
        .env_remove("RUST_LOG")
        .output()
        .expect("otto runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("stderr is UTF-8")
}

/// Compares `actual` with the golden file `name`, or rewrites it under `OTTO_BLESS=1`.
fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("OTTO_BLESS").is_some() {
        fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing golden file {} (run with OTTO_BLESS=1)",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "output differs from {}; run with OTTO_BLESS=1 to accept\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// Every example, with the facts its golden output was made with.
const EXAMPLES: &[(&str, &str, &[&str])] = &[
    (
        "webapp",
        "examples/webapp",
        &["--branch", "main", "--commit", "4f2a9c1"],
    ),
    (
        "webapp-feature",
        "examples/webapp",
        &["--branch", "feature/login"],
    ),
    ("webapp-nofacts", "examples/webapp", &[]),
    ("local", "examples/local", &[]),
    (
        "matrix",
        "examples/matrix",
        &["--branch", "main", "--var", "channel=stable"],
    ),
    ("blueprint", "examples/blueprint", &["--tag", "v1.2.0"]),
    ("classic", "examples/classic", &["--branch", "main"]),
    ("rubygem", "examples/rubygem", &[]),
    ("notify", "examples/notify", &[]),
    ("conv-rails", "examples/conventions/rails", &[]),
    ("conv-cargo", "examples/conventions/cargo", &[]),
    ("conv-npm", "examples/conventions/npm", &[]),
    ("conv-pnpm", "examples/conventions/pnpm", &[]),
    ("conv-yarn", "examples/conventions/yarn", &[]),
    ("conv-go", "examples/conventions/go", &[]),
    ("conv-maven", "examples/conventions/maven", &[]),
    ("conv-gradle", "examples/conventions/gradle", &[]),
    (
        "conv-python-pyproject",
        "examples/conventions/python-pyproject",
        &[],
    ),
    (
        "conv-python-requirements",
        "examples/conventions/python-requirements",
        &[],
    ),
    ("conv-make", "examples/conventions/make", &[]),
    ("conv-configure", "examples/conventions/configure", &[]),
    ("conv-bundler", "examples/conventions/bundler", &[]),
];

#[test]
fn examples_match_golden_output_in_every_format() {
    for (name, path, facts) in EXAMPLES {
        for (format, ext) in [
            (None, "txt"),
            (Some("--json"), "json"),
            (Some("--dot"), "dot"),
        ] {
            let mut args = vec!["explain", path];
            args.extend_from_slice(facts);
            args.extend(format);
            let out = otto(&args);
            assert!(
                out.status.success(),
                "otto {} failed:\n{}",
                args.join(" "),
                stderr(&out)
            );
            golden(&format!("{name}.{ext}"), &stdout(&out));
        }
    }
}

#[test]
fn same_inputs_give_byte_identical_output() {
    for args in [
        &["explain", "examples/webapp", "--branch", "main"][..],
        &["explain", "examples/webapp", "--json"],
        &["explain", "examples/matrix", "--dot"],
    ] {
        let first = otto(args);
        let second = otto(args);
        assert!(first.status.success());
        assert_eq!(
            first.stdout,
            second.stdout,
            "otto {} is not deterministic",
            args.join(" ")
        );
    }
}

#[test]
fn the_plan_names_the_convention_it_used() {
    let out = otto(&["explain", "examples/conventions/pnpm"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("npm"), "{text}");
    assert!(
        text.contains("pnpm-lock.yaml"),
        "the reason names the lockfile: {text}"
    );
    assert!(text.contains("pnpm install --frozen-lockfile"), "{text}");
}

#[test]
fn facts_decide_gates_and_the_digest() {
    let main = otto(&["explain", "examples/webapp", "--branch", "main", "--json"]);
    let feature = otto(&[
        "explain",
        "examples/webapp",
        "--branch",
        "feature/x",
        "--json",
    ]);
    assert!(main.status.success() && feature.status.success());
    let digest = |o: &Output| {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        v["digest"].as_str().expect("digest").to_owned()
    };
    assert_ne!(digest(&main), digest(&feature));
    assert!(digest(&main).starts_with("sha256:"));
}

/// Asserts a failed run with exactly one line on stderr containing `needle`.
fn fails_with_one_line(out: &Output, needle: &str) {
    assert!(!out.status.success(), "expected failure, got success");
    let err = stderr(out);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "expected one line, got:\n{err}"
    );
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
}

#[test]
fn a_missing_path_is_one_line_error() {
    let out = otto(&["explain", "examples/does-not-exist"]);
    fails_with_one_line(&out, "examples/does-not-exist: no such file or directory");
}

#[test]
fn a_directory_with_no_ottofile_and_no_stack_is_one_line_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("notes.txt"), "nothing to build").expect("write");
    let out = otto(&["explain", dir.path().to_str().expect("utf-8 path")]);
    fails_with_one_line(&out, "no Ottofile and no known stack");
}

#[test]
fn binary_garbage_is_one_line_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("Ottofile");
    fs::write(&file, [0xff, 0xfe, 0x00, 0x13, 0x37, 0x80, 0x81]).expect("write");
    let out = otto(&["explain", file.to_str().expect("utf-8 path")]);
    fails_with_one_line(&out, "not UTF-8");
}

#[test]
fn a_50_mb_file_is_refused_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("Ottofile");
    let line = "stage { name = 'x' steps { sh 'true' } }\n";
    fs::write(&file, line.repeat(50 * 1024 * 1024 / line.len())).expect("write");
    let out = otto(&["explain", file.to_str().expect("utf-8 path")]);
    fails_with_one_line(&out, "too large");
}

#[test]
fn ottofile_errors_point_at_file_line_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("Ottofile");
    fs::write(
        &file,
        "stage('Build') { steps { sh 'make' } }\nstage('Test') {\n  runtime { from 'Biuld' }\n  steps { sh 'make test' }\n}\n",
    )
    .expect("write");
    let out = otto(&["explain", file.to_str().expect("utf-8 path")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("Ottofile:3:18"), "{err}");
    assert!(err.contains("did you mean 'Build'"), "{err}");
    assert!(
        err.contains("^^^^^^^"),
        "the offending text is underlined: {err}"
    );
}

#[test]
fn a_bad_var_flag_is_a_usage_error() {
    let out = otto(&["explain", "examples/matrix", "--var", "novalue"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("expected NAME=VALUE"));
}

#[test]
fn a_symlink_leading_outside_the_repository_is_refused() {
    let outside = tempfile::tempdir().expect("tempdir");
    let secret = outside.path().join("node.key");
    fs::write(&secret, "SECRET-KEY-MATERIAL\n").expect("write");
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir(dir.path().join("lib")).expect("mkdir");
    std::os::unix::fs::symlink(&secret, dir.path().join("lib/evil.otto")).expect("symlink");
    fs::write(
        dir.path().join("Ottofile"),
        "use { './lib' }\nstage('S') { steps { sh 'x' } }\n",
    )
    .expect("write");
    let out = otto(&["explain", dir.path().to_str().expect("utf-8 path")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("leads outside the repository"), "{err}");
    assert!(
        !err.contains("SECRET"),
        "the file's text is not shown: {err}"
    );
    // The Ottofile itself as a link to a file outside.
    let linked = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(&secret, linked.path().join("Ottofile")).expect("symlink");
    let out = otto(&["explain", linked.path().to_str().expect("utf-8 path")]);
    fails_with_one_line(&out, "leads outside the repository");
    assert!(!stderr(&out).contains("SECRET"));
    // A link inside the repository is read as before.
    let inside = tempfile::tempdir().expect("tempdir");
    fs::write(
        inside.path().join("real.otto"),
        "stage('S') { steps { sh 'x' } }\n",
    )
    .expect("write");
    std::os::unix::fs::symlink("real.otto", inside.path().join("Ottofile")).expect("symlink");
    let out = otto(&["explain", inside.path().to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn long_lines_and_many_problems_give_a_bounded_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("Ottofile");
    // One 3 MB line with a problem every few characters.
    let line = format!(
        "stage {{ stpes {{ sh 'x' }} {} }}\n",
        "name = 'a' ".repeat(300_000)
    );
    fs::write(&file, line).expect("write");
    let out = otto(&["explain", file.to_str().expect("utf-8 path")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.len() < 16 * 1024, "{} bytes of errors", err.len());
    assert!(err.contains("did you mean `steps`?"), "{err}");
    assert!(
        err.ends_with("problems found (the first 20 are shown)\n"),
        "{err}"
    );

    // A matrix of 1000 x 1000 x 1000 copies of one stage name.
    let values = (0..1000)
        .map(|i| format!("'{i}'"))
        .collect::<Vec<_>>()
        .join(",");
    fs::write(
        &file,
        format!("each({values}) {{ each({values}) {{ each({values}) {{ stage {{ name = 'x' steps {{ sh 'y' }} }} }} }} }}\n"),
    )
    .expect("write");
    let out = otto(&["explain", file.to_str().expect("utf-8 path")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.len() < 4 * 1024, "{} bytes of errors", err.len());
    assert!(err.contains("expands to more than"), "{err}");
}

#[test]
fn explain_event_says_whether_the_event_starts_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("Ottofile"),
        "pipeline {\n  name = 'app'\n  stage('Build') { steps { sh 'make' } }\n}\n\
         triggers {\n  push { branches = ['main', 'release/*'] }\n  tag { pattern = 'v*' }\n}\n",
    )
    .unwrap();
    let path = dir.path().to_str().unwrap();
    let out = otto(&["explain", path, "--event", "push", "--branch", "release/2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "push to release/2 starts pipeline app (trigger: push to main, release/*)\n"
    );
    let out = otto(&["explain", path, "--event", "push", "--branch", "dev"]);
    assert_eq!(
        stdout(&out),
        "push to dev does not start pipeline app (its triggers: push to main, release/*; tag v*)\n"
    );
    let out = otto(&["explain", path, "--event", "tag", "--tag", "v1.0", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["starts"], true);
    assert_eq!(json["trigger"]["pattern"], "v*");
    // The plan itself lists its triggers.
    let plan = stdout(&otto(&["explain", path]));
    assert!(
        plan.contains("triggers: push to main, release/*; tag v*"),
        "{plan}"
    );
    // An event without what it is about is refused in one line.
    let out = otto(&["explain", path, "--event", "push"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "error: --event push needs --branch\n");
}

#[test]
fn explain_with_a_home_plans_with_its_step_packages_and_names_the_stages_it_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let init = Command::new(env!("CARGO_BIN_EXE_otto-node"))
        .args([
            "init",
            "--org",
            "acme",
            "--name",
            "n1",
            "--no-run-as",
            "--home",
        ])
        .arg(&home)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let package = home.join("steps/greet");
    fs::create_dir_all(&package).unwrap();
    fs::write(
        package.join("manifest.yml"),
        "symbol: greet\ndescription: Greets.\nparameters:\n  name:\n    type: string\nentrypoint: run.sh\n",
    )
    .unwrap();
    fs::write(package.join("run.sh"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(
        package.join("run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let config = home.join("config.toml");
    let text = fs::read_to_string(&config).unwrap();
    assert!(text.contains("packages = []"), "{text}");
    // No container engine, whatever this machine has: the lines below are the same
    // everywhere.
    fs::write(
        &config,
        text.replace("packages = []", "packages = [\"steps\"]")
            .replace("# engine = \"podman\"", "engine = \"none\""),
    )
    .unwrap();

    let project = dir.path().join("project");
    fs::create_dir_all(&project).unwrap();
    fs::write(
        project.join("Ottofile"),
        "stage('Hi') { steps { greet 'world' } }\n\
         stage('Image') { runtime { docker { image = 'localhost/x:1' } }  steps { sh 'true' } }\n",
    )
    .unwrap();
    let project = project.to_str().unwrap();
    let home = home.to_str().unwrap();

    // Without the home, the package's step is unknown.
    let out = otto(&["explain", project]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("greet"), "{}", stderr(&out));

    let out = Command::new(env!("CARGO_BIN_EXE_otto"))
        .args(["explain", project, "--home", home])
        .env("OTTO_AGENT", crate::node_support::agent())
        .env_remove("RUST_LOG")
        .output()
        .expect("otto runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "node n1 of org acme ({home}): runs stages as local processes (no containers: [containers] engine = \"none\"); no computer labels"
        )),
        "{text}"
    );
    assert!(
        text.contains("steps: the built-ins and 1 step package directory"),
        "{text}"
    );
    assert!(
        text.contains("  Image would be refused: runtime docker (image localhost/x:1) needs a container engine, and this node has none: [containers] engine = \"none\""),
        "{text}"
    );
    assert!(!text.contains("Hi would be refused"), "{text}");
    // The wall, as the node's agent says it can build it.
    assert!(
        text.contains("  wall: steps run walled in (Landlock ABI ")
            || text.contains("  wall: steps run without a wall: the kernel has no Landlock")
            || text.contains("  wall: steps run without a wall: steps run as root"),
        "{text}"
    );
    // A home made as root with --no-run-as: the node would run steps as root, and says
    // so with what to set (#12 F3).
    assert_eq!(
        text.contains("steps run as root: set [agent] run_as to an unprivileged user"),
        rustix::process::geteuid().is_root(),
        "{text}"
    );
    // A root agent can always make the file system read-only around its steps (#12
    // F3a); one that is not needs user namespaces, and says so when it has none.
    if rustix::process::geteuid().is_root() {
        assert!(!text.contains("steps can chmod"), "{text}");
    } else {
        assert!(
            !text.contains("steps can chmod")
                || text.contains("the file system cannot be made read-only around them: "),
            "{text}"
        );
    }

    // JSON stays the plan alone; the node's lines go to stderr.
    let out = otto(&["explain", project, "--home", home, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(plan["plan"]["stages"][0]["id"], "Hi");
    assert!(
        stderr(&out).contains("Image would be refused"),
        "{}",
        stderr(&out)
    );

    // A directory that is not a home: one line saying so.
    let out = otto(&["explain", project, "--home", project]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not an otto node home"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}
