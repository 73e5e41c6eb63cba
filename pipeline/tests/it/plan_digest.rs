//! The digest covers what runs and nothing else; output is byte-identical for the same
//! inputs.

use crate::plan_support::{on_branch, plan_one, plan_with};
use otto_pipeline::plan::Document;
use otto_pipeline::{Facts, Plan, explain};
use proptest::prelude::*;

const BASE: &str = "// The base pipeline.\n\
configure { slack { channel = '#deploys'  mention = true }  retries = 2 }\n\
environments {\n\
  staging { settings { HOST = 'staging.example.com'  MODE = 'staging' } secrets { TOKEN } }\n\
  production { settings { HOST = 'example.com'  MODE = 'production' } secrets { TOKEN KEY } }\n\
}\n\
stage('Build') {\n\
  cache { gems = ['vendor/']  assets { paths = ['public/'] key = ['Gemfile.lock'] } }\n\
  steps { sh 'make'  archive path: 'dist/', name: 'site' }\n\
}\n\
stage('Deploy') {\n\
  owner = 'ops'\n\
  environment -> production\n\
  gates { enter { branch == 'main'  input 'Ship it?' } }\n\
  steps { unarchive name: 'site'  sh './deploy.sh' }\n\
}\n";

const PRODUCTION: &str =
    "production { settings { HOST = 'example.com'  MODE = 'production' } secrets { TOKEN KEY } }\n";
const STAGING: &str =
    "staging { settings { HOST = 'staging.example.com'  MODE = 'staging' } secrets { TOKEN } }\n";

fn digest_of(text: &str) -> String {
    plan_one(text).digest()
}

fn digest_with(text: &str, facts: &Facts) -> String {
    plan_with(&[("Ottofile", text)], facts).digest()
}

fn replaced(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from:?} is not in the base pipeline");
    BASE.replacen(from, to, 1)
}

#[test]
fn comments_and_whitespace_do_not_change_the_digest() {
    let reformatted = BASE
        .replace(
            "// The base pipeline.\n",
            "/* a /* nested */ comment */\n\n",
        )
        .replace("owner = 'ops'\n", "  owner   =   'ops'    // who runs it\n")
        .replace("{ sh 'make'", "{\n    sh \"make\"\n   ");
    assert!(reformatted.contains("// who runs it") && reformatted.contains("\"make\""));
    assert_eq!(digest_of(&reformatted), digest_of(BASE));
}

#[test]
fn order_of_settings_config_kwargs_caches_and_environments_does_not_matter() {
    let base = digest_of(BASE);
    let variants = [
        replaced(
            "HOST = 'example.com'  MODE = 'production'",
            "MODE = 'production'  HOST = 'example.com'",
        ),
        replaced(
            "slack { channel = '#deploys'  mention = true }  retries = 2",
            "retries = 2  slack { mention = true  channel = '#deploys' }",
        ),
        replaced(
            "archive path: 'dist/', name: 'site'",
            "archive name: 'site', path: 'dist/'",
        ),
        replaced(
            "gems = ['vendor/']  assets { paths = ['public/'] key = ['Gemfile.lock'] }",
            "assets { key = ['Gemfile.lock']  paths = ['public/'] }  gems = ['vendor/']",
        ),
        replaced("secrets { TOKEN KEY }", "secrets { KEY TOKEN }"),
        replaced(
            &format!("{STAGING}{PRODUCTION}"),
            &format!("{PRODUCTION}{STAGING}"),
        ),
    ];
    for v in variants {
        assert_ne!(v, BASE);
        assert_eq!(digest_of(&v), base, "changed by:\n{v}");
    }
}

#[test]
fn what_runs_changes_the_digest() {
    let base = digest_of(BASE);
    let changes = [
        ("a step", replaced("sh 'make'", "sh 'make all'")),
        ("an owner", replaced("owner = 'ops'", "owner = 'ops2'")),
        (
            "a gate",
            replaced("input 'Ship it?'", "input 'Ship it now?'"),
        ),
        (
            "a setting",
            replaced("HOST = 'example.com'", "HOST = 'example.org'"),
        ),
        (
            "a secret name",
            replaced("secrets { TOKEN KEY }", "secrets { TOKEN KEY2 }"),
        ),
        (
            "a need",
            replaced(
                "stage('Deploy') {",
                "parallel { stage('Other') { steps { sh 'o' } } }\nstage('Deploy') {",
            ),
        ),
        (
            "a runtime",
            replaced(
                "owner = 'ops'",
                "owner = 'ops'  runtime { docker { image = 'alpine' } }",
            ),
        ),
        ("a config value", replaced("retries = 2", "retries = 3")),
    ];
    for (what, text) in changes {
        assert_ne!(digest_of(&text), base, "changing {what} kept the digest");
    }
    assert_ne!(digest_with(BASE, &on_branch("main")), base, "a fact");
    assert_ne!(
        digest_with(BASE, &on_branch("main")),
        digest_with(BASE, &on_branch("dev"))
    );
}

#[test]
fn a_unused_environment_and_provenance_are_not_in_the_digest() {
    let without_staging = replaced(STAGING, "");
    assert_eq!(digest_of(&without_staging), digest_of(BASE));
    let mut plan = plan_one(BASE);
    let digest = plan.digest();
    plan.provenance.root = "/elsewhere".into();
    plan.provenance.sources.clear();
    assert_eq!(plan.digest(), digest);
}

#[test]
fn same_inputs_give_byte_identical_outputs() {
    let a = plan_with(&[("Ottofile", BASE)], &on_branch("main"));
    let b = plan_with(&[("Ottofile", BASE)], &on_branch("main"));
    assert_eq!(a.canonical_bytes(), b.canonical_bytes());
    assert_eq!(explain::json(&a), explain::json(&b));
    assert_eq!(explain::human(&a), explain::human(&b));
    assert_eq!(explain::dot(&a), explain::dot(&b));
}

#[test]
fn canonical_bytes_are_compact_json_with_sorted_keys() {
    let every_kind = replaced(
        "input 'Ship it?' } }",
        "input 'Ship it?', approvers: ['a'], timeout: '1h' }\n\
         exit { webhook { description = 'd'  timeout = '1m' }  poll { command = 'c'  every = '5s' } } }\n\
         runtime { from 'Build'  docker { image = 'alpine' } }  when { tag != '' }  timeout = '2h'\n\
         notify { success { dir 'x' { echo 'ok' } } }",
    );
    let plan = plan_one(&every_kind);
    let bytes = plan.canonical_bytes();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.starts_with("{\"config\":{\"retries\":2,\"slack\":{\"channel\":\"#deploys\",\"mention\":true}},\"environments\":"), "{text}");
    assert!(!text.contains('\n') && !text.contains(": "));
    assert!(text.contains("\"schema\":\"otto.plan/v1\""));
    // Re-reading and re-writing through a sorted JSON tree gives the same bytes.
    let tree: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(serde_json::to_vec(&tree).unwrap(), bytes);
    let expected = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
    );
    assert_eq!(plan.digest(), expected);
}

#[test]
fn json_output_round_trips_and_carries_the_digest() {
    let plan = plan_with(&[("Ottofile", BASE)], &on_branch("main"));
    let json = explain::json(&plan);
    assert!(json.ends_with("}\n"));
    assert!(json.starts_with("{\n  \"digest\": \"sha256:"));
    let doc = Document::from_json(&json).unwrap();
    assert_eq!(doc.digest, plan.digest());
    assert!(doc.digest_matches());
    assert_eq!(doc.into_plan(), plan);
}

#[test]
fn human_output_shows_what_people_need() {
    let plan = plan_with(&[("Ottofile", BASE)], &on_branch("main"));
    let text = explain::human(&plan);
    for needle in [
        &format!("digest {}", plan.digest()) as &str,
        "facts: branch=main, tag=(not given)",
        "Deploy  ops     needs Build  ⇢ handoff origin → ops",
        "environment production: HOST=example.com, MODE=production; secrets: KEY, TOKEN (held by ops)",
        "cache assets: public/ (key Gemfile.lock) (defined here)",
        "archive name: 'site', path: 'dist/'",
        "enter: branch == 'main'  ✓ holds (branch=main)",
        "input 'Ship it?'  waits for approval",
        "handoffs: origin → ops before Deploy",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(!text.contains("/repo"), "no absolute paths:\n{text}");
}

/// Pieces of a small pipeline; the generator joins them with random separators.
fn tokens(stages: &[(String, bool, u8)]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, (name, parallel, steps)) in stages.iter().enumerate() {
        if *parallel {
            out.extend(["parallel".into(), "{".into()]);
        }
        out.extend([
            "stage".into(),
            "(".into(),
            format!("'{name}{i}'"),
            ")".into(),
            "{".into(),
        ]);
        if i % 2 == 1 {
            out.extend(["owner".into(), "=".into(), "'ops'".into()]);
        }
        out.extend(["steps".into(), "{".into()]);
        for s in 0..*steps {
            out.extend(["sh".into(), format!("'step {s}'")]);
        }
        out.extend(["}".into(), "}".into()]);
        if *parallel {
            out.push("}".into());
        }
    }
    out
}

fn join(tokens: &[String], separators: &[String]) -> String {
    let mut text = String::new();
    for (i, t) in tokens.iter().enumerate() {
        text.push_str(t);
        text.push_str(separators.get(i).map_or(" ", String::as_str));
    }
    text
}

fn separator() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(" ".to_owned()),
        Just("\n".to_owned()),
        Just("\t  \n  ".to_owned()),
        Just(" // a comment\n".to_owned()),
        Just(" /* block */ ".to_owned()),
        Just("/* nested /* comment */ here */".to_owned()),
        "[ \n]{1,4}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn digest_is_invariant_under_comments_and_whitespace(
        stages in prop::collection::vec(("[A-Z][a-z]{0,6}", any::<bool>(), 1u8..3), 1..5),
        separators in prop::collection::vec(separator(), 0..200),
    ) {
        let tokens = tokens(&stages);
        let plain = join(&tokens, &[]);
        let decorated = join(&tokens, &separators);
        let a: Plan = plan_one(&plain);
        let b: Plan = plan_one(&decorated);
        prop_assert_eq!(a.digest(), b.digest());
    }
}

#[test]
fn the_owner_binding_is_in_the_digest_in_key_order() {
    use otto_pipeline::plan::OwnerBinding;
    let mut plan = plan_one(BASE);
    let unbound = plan.digest();
    let text = String::from_utf8(plan.canonical_bytes()).unwrap();
    assert!(
        !text.contains("\"owners\""),
        "an unbound plan writes no owners: {text}"
    );

    let ops = |key: &str| OwnerBinding {
        key: format!("ed25519:{}", key.repeat(64)),
        org: "acme-ops".to_owned(),
        node: None,
    };
    plan.body.owners.insert("ops".to_owned(), ops("a"));
    let text = String::from_utf8(plan.canonical_bytes()).unwrap();
    let entry = format!(
        "\"libraries\":[],\"owners\":{{\"ops\":{{\"key\":\"ed25519:{}\",\"org\":\"acme-ops\"}}}},\"pipeline\":",
        "a".repeat(64)
    );
    assert!(text.contains(&entry), "{text}");
    let bound = plan.digest();
    assert_ne!(bound, unbound);

    // Another org key for the same name is another plan.
    plan.body.owners.insert("ops".to_owned(), ops("b"));
    assert_ne!(plan.digest(), bound);

    // Explain shows each owner's org and flags a name the binding lacks.
    assert!(!explain::human(&plan_one(BASE)).contains("owners:"));
    let text = explain::human(&plan);
    assert!(
        text.contains(&format!(
            "  ops → org acme-ops (ed25519:{}…)",
            "b".repeat(16)
        )),
        "{text}"
    );
    assert!(text.contains("  origin → NOT BOUND"), "{text}");

    // The binding survives the JSON document.
    let json = explain::json(&plan);
    let back = Document::from_json(&json).unwrap();
    assert!(back.digest_matches());
    assert_eq!(back.into_plan().body.owners, plan.body.owners);
}

#[test]
fn a_runs_orgs_are_the_orgs_its_owner_names_are_bound_to() {
    use otto_pipeline::plan::{ORIGIN, OwnerBinding};
    let mut plan = plan_one(
        "stage('Build') { steps { echo 'b' } }\n\
         stage('Test') { owner = 'qa'  steps { echo 't' } }\n\
         stage('Deploy') { owner = 'ops'  steps { echo 'd' } }\n\
         stage('Smoke') { owner = 'ops-1'  steps { echo 's' } }\n",
    );
    let stages = plan.body.stages.clone();
    let stage = |id: &str| stages.iter().find(|s| s.id == id).unwrap().clone();
    let body = &plan.body;
    // Unbound (no node started it): the owner names as written.
    assert_eq!(body.org_of(&stage("Deploy")), None);
    assert_eq!(body.orgs(), ["ops", "ops-1", ORIGIN, "qa"]);
    let bind = |org: &str| OwnerBinding {
        key: format!("ed25519:{}", "a".repeat(64)),
        org: org.to_owned(),
        node: None,
    };
    // The starting node's aliases (ops, and ops-1 for a node of the same org) name orgs.
    plan.body.owners.insert(ORIGIN.to_owned(), bind("acme-dev"));
    plan.body.owners.insert("ops".to_owned(), bind("acme-ops"));
    plan.body
        .owners
        .insert("ops-1".to_owned(), bind("acme-ops"));
    plan.body.owners.insert("qa".to_owned(), bind("acme-qa"));
    let body = &plan.body;
    assert_eq!(body.org_of(&stage("Build")), Some("acme-dev"));
    assert_eq!(body.org_of(&stage("Smoke")), Some("acme-ops"));
    assert_eq!(body.orgs(), ["acme-dev", "acme-ops", "acme-qa"]);
}
