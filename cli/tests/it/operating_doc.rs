//! The sample output in docs/operating.md is what the commands print: each sample below
//! is run on a real node, and every line it prints (its run id put in the doc's place) is
//! a line of the guide as it stands.

use std::path::Path;

use crate::node_support::{Node, project, text};

/// Fails unless every non-empty line of `output`, after `prefix`, is a line of `doc`.
fn shown(doc: &str, what: &str, output: &str, prefix: &str) {
    assert!(!output.trim().is_empty(), "{what}: no output");
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        let expected = format!("{prefix}{line}");
        assert!(
            doc.lines().any(|l| l.trim_end() == expected.trim_end()),
            "{what}: docs/operating.md does not show the real line\n{expected}\n(the whole output:\n{output})"
        );
    }
}

#[test]
fn the_operating_guide_shows_what_the_commands_print() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operating.md"))
            .unwrap();
    let node = Node::start_new();

    // A typo in the Ottofile (the sample sits in a list item, two spaces in).
    let dir = project(&[("Ottofile", "stage('Build') {\n  stpes { sh 'make' }\n}\n")]);
    let out = node.otto(&["run", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    shown(&doc, "a typo", &text(&out.stderr), "  ");

    // Secrets.
    let out = node.otto_with_stdin(&["secrets", "set", "DEPLOY_TOKEN"], Some(b"t0ken"));
    shown(&doc, "secrets set", &text(&out.stderr), "");
    node.otto_with_stdin(&["secrets", "set", "TLS_KEY"], Some(b"k"));
    shown(&doc, "secrets list", &node.ok(&["secrets", "list"]), "");

    // An invite.
    let out = node.otto_node(&[
        "invite", "--role", "deploy", "--stages", "Deploy*", "--envs", "prod",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // What it grants on stderr; the token alone on stdout.
    assert!(text(&out.stdout).trim().starts_with("otto1"));
    shown(&doc, "invite", &text(&out.stderr), "");

    // A skipped stage and a gate, approved: the run id as the doc writes it.
    let dir = project(&[(
        "Ottofile",
        "pipeline {\n  name = 'myapp'\n\
           stage('Docs') { when { tag != '' } steps { sh 'true' } }\n\
           stage('Deploy') { gates { enter { input 'Ship it?', approvers: ['alice', 'bob'] } } steps { sh 'true' } }\n\
         }\n",
    )]);
    let run = node
        .ok(&[
            "run",
            dir.path().to_str().unwrap(),
            "--branch",
            "main",
            "--detach",
        ])
        .trim()
        .to_owned();
    node.wait_stage(&run, "Deploy", "waiting_gate");
    let short = "01M8…";
    let logs = node.ok(&["logs", &run, "Deploy"]).replace(&run, short);
    let waiting: String = logs
        .lines()
        .filter(|l| l.contains("waiting for approval"))
        .collect();
    shown(&doc, "an input gate", &waiting, "");
    let approved = node
        .ok(&["approve", &run, "Deploy", "--as", "alice"])
        .replace(&run, short);
    shown(&doc, "approve", &approved, "");
    let status = node.wait_final(&run);
    assert_eq!(status["run"]["state"], "succeeded", "{status}");
    // A skipped stage's line, as a terminal shows it ("- Docs    " before its text).
    let dir = project(&[(
        "Ottofile",
        "pipeline {\n  name = 'myapp'\n\
           stage('Build') { steps { sh 'true' } }\n\
           stage('Docs') { when { tag != '' } steps { sh 'true' } }\n\
         }\n",
    )]);
    let out = node.otto(&[
        "run",
        dir.path().to_str().unwrap(),
        "--branch",
        "main",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = text(&out.stdout);
    let skipped = lines
        .lines()
        .find_map(|l| l.strip_prefix("Docs: "))
        .unwrap_or_else(|| panic!("no line of Docs: {lines}"));
    shown(&doc, "a skipped stage", skipped, "- Docs    ");
}
