//! The API driven with `oneshot`, no socket: authentication, the error shape, limits,
//! unknown ids, plan errors, secrets.

use std::path::PathBuf;

use axum::Router;
use axum::body::Body as HttpBody;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use rand::SeedableRng as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::*;
use crate::engine::Context;
use crate::home::{self, Home, InitOptions};

pub(crate) const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

struct Fixture {
    _dir: tempfile::TempDir,
    home: Home,
    store: Store,
    api: Router,
    hooks: Router,
}

/// A node's API state on a fresh home under `dir` (org acme, node n1, bearer [`TOKEN`]),
/// with an engine whose agent does not exist: for tests that drive routers with `oneshot`.
pub(crate) async fn state(dir: &std::path::Path, max_json_bytes: usize) -> ApiState {
    let root = dir.join("home");
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let options = InitOptions {
        org: "acme".into(),
        name: "n1".into(),
        org_key: None,
        answers_to: vec![],
        run_as: None,
    };
    home::init(&root, &options, &mut rng, 1_700_000_000).unwrap();
    let home = Home::new(&root);
    let store = Store::open(home.store_file()).unwrap();
    let blobs = BlobStore::open(home.blobs_dir()).unwrap();
    let vault = Vault::new(store.clone(), &[7; 32]);
    let (engine, _task) = Engine::start(Context {
        store: store.clone(),
        logs: crate::store::Logs::open(home.logs_dir(), crate::store::logs::DEFAULT_MAX_BYTES)
            .unwrap(),
        blobs: blobs.clone(),
        vault: vault.clone(),
        node_name: "n1".into(),
        answers_to: vec![],
        agent_path: PathBuf::from("/nonexistent/otto-agent"),
        work_dir: home.work_dir(),
        run_dir: home.run_dir(),
        packages: vec![],
        max_artifact_bytes: None,
        wall: crate::engine::WallSettings::default(),
        webhook_base: None,
        signer: None,
        definitions: None,
        slots: 8,
        max_parallel: None,
        checkouts: None,
        notifier: None,
        runtimes: crate::capabilities::Runtimes::default(),
    });
    let membership = Membership::open(
        &home,
        home.identity(1_700_000_000).unwrap(),
        store.clone(),
        Arc::new(|| 1_700_000_000),
    )
    .unwrap();
    let (mesh, _, _) = mesh::new(
        mesh::Config::default(),
        membership.node_key().to_libp2p_keypair(),
        Arc::new(membership.clone()),
        Arc::new(crate::artifacts::BlobArtifacts::new(blobs.clone())),
    )
    .unwrap();
    ApiState::new(ApiParts {
        repos: crate::sources::Repos::new(home.root()),
        mesh,
        membership,
        store,
        blobs,
        vault,
        engine,
        token: Zeroizing::new(TOKEN.into()),
        node: types::NodeInfo {
            name: "n1".into(),
            org: "acme".into(),
            peer_id: "peer".into(),
            node_key: "ed25519:00".into(),
            org_key: "ed25519:11".into(),
            answers_to: vec![],
            cert_not_after: 0,
            webhook_base: None,
            version: "test".into(),
            wall: types::WallInfo::default(),
            runtimes: types::RuntimesInfo::default(),
        },
        limits: Limits {
            max_snapshot_bytes: 64 * 1024,
            max_json_bytes,
        },
        packages: vec![],
        home,
        owners: otto_handoff::OwnerPolicy::default(),
    })
}

async fn fixture() -> Fixture {
    fixture_with(1024 * 1024).await
}

async fn fixture_with(max_json_bytes: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), max_json_bytes).await;
    Fixture {
        _dir: dir,
        home: state.home.clone(),
        store: state.store.clone(),
        api: router(state.clone()),
        hooks: hooks_router(state),
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not json ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Checks the error shape and returns (code, message).
    fn error(&self) -> (String, String) {
        let v = self.json();
        let code = v["error"]["code"].as_str().expect("error.code").to_owned();
        let message = v["error"]["message"]
            .as_str()
            .expect("error.message")
            .to_owned();
        (code, message)
    }
}

impl Fixture {
    async fn send(&self, request: Request<HttpBody>) -> Answer {
        let app = if request.uri().path().starts_with("/hooks/") {
            &self.hooks
        } else {
            &self.api
        };
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, format!("Bearer {TOKEN}"));
        let body = match body {
            Some(v) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                HttpBody::from(v.to_string())
            }
            None => HttpBody::empty(),
        };
        self.send(request.body(body).unwrap()).await
    }

    async fn raw(&self, method: Method, uri: &str, content_type: &str, body: Vec<u8>) -> Answer {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(header::CONTENT_TYPE, content_type)
            .body(HttpBody::from(body))
            .unwrap();
        self.send(request).await
    }

    /// Uploads a snapshot of these files and returns its digest.
    async fn snapshot(&self, files: &[(&str, &str)]) -> String {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let mut tar = Vec::new();
        crate::snapshot::create(dir.path(), &mut tar).unwrap();
        let answer = self
            .raw(Method::POST, "/v1/snapshots", "application/x-tar", tar)
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json());
        answer.json()["digest"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn v1_needs_the_bearer_token() {
    let f = fixture().await;
    let bare = Request::get("/v1/node").body(HttpBody::empty()).unwrap();
    let answer = f.send(bare).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.error().0, "unauthorized");
    for value in [
        "Bearer wrong".to_owned(),
        format!("Bearer {}", &TOKEN[..63]),
        format!("Basic {TOKEN}"),
        format!("Bearer {TOKEN}x"),
    ] {
        let request = Request::get("/v1/runs")
            .header(AUTHORIZATION, value.as_str())
            .body(HttpBody::empty())
            .unwrap();
        let answer = f.send(request).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{value}");
        assert_eq!(answer.error().0, "unauthorized");
    }
    let answer = f.call(Method::GET, "/v1/node", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["name"], "n1");
    // Refused before the body is read: a large body without the token is still a 401.
    let request = Request::post("/v1/snapshots")
        .body(HttpBody::from(vec![0u8; 200 * 1024]))
        .unwrap();
    assert_eq!(f.send(request).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn malformed_json_gets_the_json_error_shape() {
    let f = fixture().await;
    let answer = f
        .raw(
            Method::POST,
            "/v1/runs",
            "application/json",
            b"{\"source\": ".to_vec(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error().0, "bad_json");

    let answer = f
        .call(
            Method::POST,
            "/v1/runs",
            Some(json!({"source": {"kind": "snapshot"}})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer.error().0, "invalid");

    let answer = f
        .call(
            Method::POST,
            "/v1/runs",
            Some(json!({"source": {"kind": "snapshot", "digest": "sha256:nothex"}})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);

    let answer = f
        .call(Method::POST, "/v1/runs", Some(json!({"sauce": 1})))
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(answer.error().1.contains("sauce"), "{}", answer.error().1);

    let answer = f
        .raw(Method::POST, "/v1/runs", "text/plain", b"{}".to_vec())
        .await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(answer.error().0, "unsupported_media_type");

    let answer = f.call(Method::GET, "/v1/runs?limit=lots", None).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error().0, "bad_request");
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let f = fixture_with(1024).await;
    let big = json!({"source": {"kind": "snapshot", "digest": "x".repeat(2000)}});
    let answer = f.call(Method::POST, "/v1/runs", Some(big)).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.error().0, "too_large");

    let answer = f
        .raw(
            Method::POST,
            "/v1/snapshots",
            "application/x-tar",
            vec![0; 65 * 1024],
        )
        .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.error().0, "too_large");

    let answer = f
        .raw(
            Method::PUT,
            "/v1/secrets/BIG",
            "application/octet-stream",
            vec![b'x'; crate::vault::MAX_VALUE + 1],
        )
        .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn unknown_runs_and_endpoints_get_404() {
    let f = fixture().await;
    let id = crate::store::RunId::new(1, [0; 10]).to_string();
    for uri in [
        format!("/v1/runs/{id}"),
        format!("/v1/runs/{id}/logs?stage=build"),
        "/v1/runs/not-a-run".to_owned(),
        "/v1/nothing".to_owned(),
    ] {
        let answer = f.call(Method::GET, &uri, None).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(answer.error().0, "not_found", "{uri}");
    }
    let answer = f
        .call(
            Method::POST,
            &format!("/v1/runs/{id}/gates/deploy/approve"),
            Some(json!({"who": "alice"})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    // The testnet's control is routed only by a node started with --testnet-control.
    let answer = f
        .call(
            Method::PUT,
            "/v1/testnet/blocked",
            Some(json!({"peers": []})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let answer = f.call(Method::DELETE, "/v1/runs", None).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.error().0, "method_not_allowed");
    let answer = f
        .call(Method::POST, &format!("/hooks/{}", "ab".repeat(32)), None)
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let answer = f.call(Method::POST, "/hooks/short", None).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_ottofile_with_errors_gets_422_with_its_location() {
    let f = fixture().await;
    let digest = f
        .snapshot(&[("Ottofile", "stage('Build') {\n  stpes { sh 'make' }\n}\n")])
        .await;
    let answer = f
        .call(
            Method::POST,
            "/v1/runs",
            Some(json!({"source": {"kind": "snapshot", "digest": digest}})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    let (code, message) = answer.error();
    assert_eq!(code, "plan_failed");
    assert!(message.starts_with("Ottofile:2:3:"), "{message}");
    let details = answer.json()["error"]["details"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(details.contains("--> Ottofile:2:3"), "{details}");

    let missing = format!("sha256:{}", "0".repeat(64));
    let answer = f
        .call(
            Method::POST,
            "/v1/runs",
            Some(json!({"source": {"kind": "snapshot", "digest": missing}})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer.error().0, "unknown_snapshot");

    let answer = f
        .call(
            Method::POST,
            "/v1/runs",
            Some(json!({"source": {"kind": "snapshot", "digest": digest}, "path": "../x"})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);

    let answer = f
        .raw(
            Method::POST,
            "/v1/snapshots",
            "application/x-tar",
            vec![1; 1000],
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn source_facts_are_checked_before_planning() {
    let f = fixture().await;
    let digest = f
        .snapshot(&[("Ottofile", "stage('Build') { steps { echo 'hi' } }\n")])
        .await;
    let commit = "a".repeat(40);
    let dirty = format!("sha256:{}", "b".repeat(64));
    for (facts, why) in [
        (
            json!({"commit": commit, "dirty": "sha256:xyz"}),
            "facts.dirty must be",
        ),
        (
            json!({"commit": commit, "dirty": format!("sha256:{}", "B".repeat(64))}),
            "facts.dirty must be",
        ),
        (json!({"dirty": dirty}), "give facts.commit too"),
        (
            json!({"commit": commit, "repository": ""}),
            "facts.repository must be",
        ),
        (
            json!({"commit": commit, "repository": "https://x/\u{7}"}),
            "facts.repository must be",
        ),
        (
            json!({"commit": commit, "repository": "x".repeat(2049)}),
            "facts.repository must be",
        ),
        (
            json!({"commit": commit, "repository": "https://bob:pw@git.example.com/a.git"}),
            "credentials",
        ),
    ] {
        let answer = f
            .call(
                Method::POST,
                "/v1/runs",
                Some(json!({"source": {"kind": "snapshot", "digest": digest}, "facts": facts})),
            )
            .await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{facts}");
        let (code, message) = answer.error();
        assert_eq!(code, "invalid", "{facts}");
        assert!(message.contains(why), "{facts}: {message}");
    }
    let answer = f
        .call(
            Method::POST,
            "/v1/runs",
            Some(json!({
                "source": {"kind": "snapshot", "digest": digest},
                "facts": {"commit": commit, "repository": "https://git.example.com/a.git", "dirty": dirty}
            })),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json());
    let run = answer.json()["run"].as_str().unwrap().to_owned();
    let detail = f
        .call(Method::GET, &format!("/v1/runs/{run}"), None)
        .await
        .json();
    assert_eq!(detail["run"]["facts"]["dirty"], dirty.as_str());
    assert_eq!(
        detail["run"]["facts"]["repository"],
        "https://git.example.com/a.git"
    );
}

#[tokio::test]
async fn a_run_is_created_listed_and_shown() {
    let f = fixture().await;
    let digest = f
        .snapshot(&[(
            "ci/Ottofile",
            "pipeline { name = 'demo'\n stage('Build') { steps { echo 'hi' } }\n \
             stage('Docs') { when { branch == 'main' } steps { echo 'docs' } } }\n",
        )])
        .await;
    let answer = f
        .call(
            Method::POST,
            "/v1/runs",
            Some(json!({
                "source": {"kind": "snapshot", "digest": digest},
                "path": "ci",
                "facts": {"branch": "dev"},
                "started_by": "alice"
            })),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json());
    let created = answer.json();
    assert_eq!(created["pipeline"], "demo");
    assert_eq!(created["stages"], json!(["Build", "Docs"]));
    let run = created["run"].as_str().unwrap().to_owned();

    let answer = f.call(Method::GET, &format!("/v1/runs/{run}"), None).await;
    assert_eq!(answer.status, StatusCode::OK);
    let detail = answer.json();
    assert_eq!(detail["run"]["started_by"], "alice");
    assert_eq!(detail["run"]["facts"]["branch"], "dev");
    // The plan already says Docs will be skipped; the engine marks it so when Build is
    // done, which may or may not have happened yet.
    let docs_state = detail["stages"][1]["state"].as_str().unwrap_or_default();
    assert!(matches!(docs_state, "pending" | "skipped"), "{docs_state}");
    assert_eq!(detail["stages"][1]["when"]["result"], "fail");
    let etag = answer.headers[header::ETAG].to_str().unwrap().to_owned();

    let list = f.call(Method::GET, "/v1/runs?limit=5", None).await.json();
    assert_eq!(list["runs"][0]["id"], run.as_str());

    let logs = f
        .call(
            Method::GET,
            &format!("/v1/runs/{run}/logs?stage=Docs"),
            None,
        )
        .await
        .json();
    assert_eq!(logs["lines"], json!([]));
    let answer = f
        .call(Method::GET, &format!("/v1/runs/{run}/logs"), None)
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);

    // With the version it has, and no time to wait, an unchanged run answers 304.
    let request = Request::get(format!("/v1/runs/{run}?wait=0"))
        .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::IF_NONE_MATCH, etag.as_str())
        .body(HttpBody::empty())
        .unwrap();
    let answer = f.send(request).await;
    if answer.status != StatusCode::OK {
        assert_eq!(answer.status, StatusCode::NOT_MODIFIED);
    }
}

#[tokio::test]
async fn secrets_go_in_and_only_names_come_out() {
    let f = fixture().await;
    let value = b"hunter2-very-secret".to_vec();
    let answer = f
        .raw(
            Method::PUT,
            "/v1/secrets/DEPLOY_TOKEN",
            "application/octet-stream",
            value.clone(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    let mut bodies = Vec::new();
    let list = f.call(Method::GET, "/v1/secrets", None).await;
    assert_eq!(list.json(), json!({"secrets": ["DEPLOY_TOKEN"]}));
    bodies.push(list.body);
    let one = f.call(Method::GET, "/v1/secrets/DEPLOY_TOKEN", None).await;
    assert_eq!(one.status, StatusCode::OK);
    bodies.push(one.body);
    let bad = f
        .raw(
            Method::PUT,
            "/v1/secrets/lower",
            "text/plain",
            value.clone(),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    bodies.push(bad.body);
    for body in &bodies {
        let text = String::from_utf8_lossy(body);
        assert!(!text.contains("hunter2"), "{text}");
    }
    let gone = f
        .call(Method::DELETE, "/v1/secrets/DEPLOY_TOKEN", None)
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let again = f
        .call(Method::DELETE, "/v1/secrets/DEPLOY_TOKEN", None)
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let missing = f.call(Method::GET, "/v1/secrets/DEPLOY_TOKEN", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

/// `GET /v1/runs/{run}/verify` and `GET /v1/runs/{run}/bundle`: receipts put into the
/// store directly, signed by this node and by a node of another org it knows.
mod receipt_chains {
    use otto_handoff::bundle::{Bundle, verify_bundle};
    use otto_handoff::{Owners, StageStatus};
    use otto_pipeline::{Facts, MemSource, StepCatalog};
    use otto_protocol::{Digest as Sha256Digest, Envelope, KeyBytes, NodeIdentity, Outcome};
    use otto_protocol::{Payload as _, Receipt};
    use otto_trust::cert::issue_cert;
    use otto_trust::{CertSpec, NodeKey, OrgKey, PublicKey, TrustStore, dsse, persist};
    use sha2::{Digest as _, Sha256};

    use super::*;
    use crate::blobs::Digest;
    use crate::store::{KnownNode, NewRun, NewStage, RunId, Source, StageState};

    const OTTOFILE: &str = "pipeline {
  name = 'shop'
  stages {
    stage { name = 'Build'  steps { sh 'make' } }
    stage { name = 'Deploy'  owner = 'ops'  steps { sh './deploy.sh' } }
  }
}
";

    /// A node and its certificate.
    struct Signer {
        name: &'static str,
        org: &'static str,
        key: NodeKey,
        cert: Envelope,
    }

    /// The fixture's node `n1` of org `acme`, with a certificate valid now (the API checks
    /// at the real time; the fixture's home was made in 2023).
    fn this_node(home: &Home) -> Signer {
        let org = persist::load_org_key(&home.org_key_file()).unwrap();
        let key = persist::load_node_key(&home.node_key_file()).unwrap();
        let cert = certificate(&org, "acme", "n1", &key);
        std::fs::write(home.node_cert_file(), otto_protocol::encode_envelope(&cert)).unwrap();
        Signer {
            name: "n1",
            org: "acme",
            key,
            cert,
        }
    }

    /// `ops-1` of org `acme-ops`, whose org key is [`ops_org`].
    fn ops_node() -> Signer {
        let key = NodeKey::from_seed(&[0x1e; 32]);
        let cert = certificate(&ops_org(), "acme-ops", "ops-1", &key);
        Signer {
            name: "ops-1",
            org: "acme-ops",
            key,
            cert,
        }
    }

    fn ops_org() -> OrgKey {
        OrgKey::from_seed(&[0x0e; 32])
    }

    fn certificate(org: &OrgKey, org_name: &str, node: &str, key: &NodeKey) -> Envelope {
        let now = now_secs();
        let spec = CertSpec {
            node: node.to_owned(),
            org: org_name.to_owned(),
            node_key: key.public_key(),
            roles: vec![],
            not_before: now - 3_600,
            not_after: now + 86_400,
        };
        issue_cert(&spec, org).unwrap()
    }

    fn now_secs() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// The plan as the node of `home` starts it: `origin` bound to its org, `ops` to
    /// acme-ops.
    fn plan(home: &Home) -> otto_pipeline::Plan {
        let source = MemSource::new().with("shop/Ottofile", OTTOFILE);
        let mut plan = otto_pipeline::plan(
            &source,
            std::path::Path::new("shop/Ottofile"),
            &Facts::default(),
            &StepCatalog::builtins(),
        )
        .map(|p| p.plan)
        .unwrap_or_else(|f| panic!("plan: {f}"));
        let acme = persist::load_org_key(&home.org_key_file())
            .unwrap()
            .public_key();
        for (owner, org, key) in [
            ("origin", "acme", acme),
            ("ops", "acme-ops", ops_org().public_key()),
        ] {
            plan.body.owners.insert(
                owner.to_owned(),
                otto_pipeline::plan::OwnerBinding {
                    key: key.keyid(),
                    org: org.to_owned(),
                    node: None,
                },
            );
        }
        plan
    }

    /// Records a run of [`plan`] in the store (the engine never sees it).
    fn create_run(store: &Store, plan: &otto_pipeline::Plan) -> RunId {
        let id = RunId::new(now_secs() * 1000, [7; 10]);
        store
            .create_run(NewRun {
                id,
                pipeline: plan.body.pipeline.clone(),
                plan: plan.canonical_bytes(),
                source: Source::Snapshot {
                    digest: Digest::of(b"snapshot"),
                },
                facts: plan.body.facts.clone(),
                created_at: now_secs() * 1000,
                started_by: "test".into(),
                stages: plan
                    .body
                    .stages
                    .iter()
                    .map(|s| NewStage {
                        id: s.id.clone(),
                        state: StageState::Pending,
                    })
                    .collect(),
            })
            .unwrap();
        id
    }

    /// Signs a successful receipt of `stage` by `by` and puts it in the store.
    fn put_receipt(
        store: &Store,
        run: RunId,
        plan: &otto_pipeline::Plan,
        by: &Signer,
        stage: &str,
        upstream: Vec<Sha256Digest>,
    ) -> Envelope {
        let receipt = Receipt {
            run: run.to_string(),
            plan_digest: plan.digest(),
            stage: stage.to_owned(),
            attempt: 1,
            outcome: Outcome::Success,
            outputs: vec![],
            log_digest: Sha256Digest([3; 32]),
            started_at: now_secs() - 60,
            finished_at: now_secs() - 30,
            started_at_ms: None,
            finished_at_ms: None,
            upstream,
            node: NodeIdentity {
                name: by.name.to_owned(),
                org: by.org.to_owned(),
                key: KeyBytes(*by.key.public_key().as_bytes()),
            },
        };
        let env = dsse::sign(
            Receipt::KIND.payload_type(),
            otto_protocol::encode_payload(&receipt),
            &by.key,
        )
        .unwrap();
        store
            .put_receipt(&run, stage, 1, &otto_protocol::encode_envelope(&env))
            .unwrap();
        env
    }

    fn digest(env: &Envelope) -> Sha256Digest {
        Sha256Digest(Sha256::digest(env.canonical_bytes()).into())
    }

    /// Records `node` as a known node, as the mesh does when it meets one.
    fn know(store: &Store, node: &Signer) {
        store
            .put_node(&KnownNode {
                keyid: node.key.keyid().to_owned(),
                peer_id: node.key.peer_id().to_string(),
                name: node.name.to_owned(),
                org: node.org.to_owned(),
                cert: otto_protocol::encode_envelope(&node.cert),
                addrs: vec![],
                joined: true,
                added_at: 0,
                last_seen: None,
            })
            .unwrap();
    }

    /// Pins the ops org in the node's `trust.toml` as `ops`, as `otto-node join --alias
    /// ops` would.
    fn pin_ops(home: &Home) {
        let path = home.trust_file();
        let mut trust = persist::load_trust_store(&path).unwrap();
        trust
            .pin_org("acme-ops", ops_org().public_key(), now_secs())
            .unwrap();
        trust
            .set_alias(
                "ops",
                otto_trust::store::AliasTarget::Org("acme-ops".to_owned()),
            )
            .unwrap();
        persist::save_trust_store(&path, &trust).unwrap();
    }

    fn statuses(report: &Value) -> Vec<(String, String)> {
        report["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["stage"].as_str().unwrap().to_owned(),
                    s["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn pair(stage: &str, status: &str) -> (String, String) {
        (stage.to_owned(), status.to_owned())
    }

    #[tokio::test]
    async fn verify_checks_the_runs_receipts_against_the_current_trust_store() {
        let f = fixture().await;
        let me = this_node(&f.home);
        let ops = ops_node();
        let plan = plan(&f.home);
        let run = create_run(&f.store, &plan);
        let uri = format!("/v1/runs/{run}/verify");

        // Only Build has run.
        let build = put_receipt(&f.store, run, &plan, &me, "Build", vec![]);
        let answer = f.call(Method::GET, &uri, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.json());
        let report = answer.json();
        assert_eq!(report["verified"], false);
        assert_eq!(report["run"], run.to_string());
        assert_eq!(report["plan_digest"], plan.digest());
        assert_eq!(
            statuses(&report),
            [pair("Build", "verified"), pair("Deploy", "missing")]
        );
        assert_eq!(report["stages"][0]["receipt"]["node"], "n1");
        assert_eq!(report["stages"][0]["receipt"]["org"], "acme");

        // Deploy ran on ops-1, whose org this node has not pinned yet.
        put_receipt(&f.store, run, &plan, &ops, "Deploy", vec![digest(&build)]);
        know(&f.store, &ops);
        let report = f.call(Method::GET, &uri, None).await.json();
        assert_eq!(report["verified"], false);
        assert_eq!(report["stages"][1]["status"], "invalid");
        let reason = report["stages"][1]["reason"].as_str().unwrap();
        assert!(reason.contains("not trusted"), "{reason}");

        // Pinning the org in trust.toml counts at the next request, without a restart.
        pin_ops(&f.home);
        let report = f.call(Method::GET, &uri, None).await.json();
        assert_eq!(report["verified"], true, "{report:#}");
        assert_eq!(
            statuses(&report),
            [pair("Build", "verified"), pair("Deploy", "verified")]
        );
        assert_eq!(report["stages"][1]["receipt"]["node"], "ops-1");
        assert_eq!(report["stages"][1]["receipt"]["org"], "acme-ops");
        assert_eq!(report["attestations"], json!([]));
    }

    #[tokio::test]
    async fn the_bundle_verifies_offline_with_only_the_org_keys() {
        let f = fixture().await;
        let me = this_node(&f.home);
        let ops = ops_node();
        let plan = plan(&f.home);
        let run = create_run(&f.store, &plan);
        let build = put_receipt(&f.store, run, &plan, &me, "Build", vec![]);
        let deploy = put_receipt(&f.store, run, &plan, &ops, "Deploy", vec![digest(&build)]);
        know(&f.store, &ops);

        let answer = f
            .call(Method::GET, &format!("/v1/runs/{run}/bundle"), None)
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.headers[header::CONTENT_TYPE], "application/json");
        let bundle = Bundle::from_json(std::str::from_utf8(&answer.body).unwrap()).unwrap();
        assert_eq!(bundle.run, run.to_string());
        assert_eq!(bundle.plan.digest(), plan.digest());
        let receipt_digests = [digest(&build).to_hex(), digest(&deploy).to_hex()];
        assert_eq!(bundle.receipts, [build, deploy]);
        assert_eq!(bundle.certificates, [me.cert.clone(), ops.cert.clone()]);
        // This node attests only the receipt it signed itself.
        assert_eq!(bundle.attestations.len(), 1);
        assert_eq!(bundle.attestations[0].signatures[0].keyid, me.key.keyid());
        // The node's verification summary: FAILED while it has not pinned ops' org,
        // signed by this node's key either way.
        let summary = |bundle: &Bundle| {
            let envelope = bundle.verification_summary.clone().unwrap();
            let verified = dsse::Unverified::new(envelope)
                .verify(&me.key.public_key())
                .unwrap();
            serde_json::from_slice::<Value>(verified.payload()).unwrap()
        };
        let vsa = summary(&bundle);
        assert_eq!(
            vsa["predicateType"],
            "https://slsa.dev/verification_summary/v1"
        );
        assert_eq!(vsa["predicate"]["verificationResult"], "FAILED");
        assert_eq!(vsa["predicate"]["verifier"]["id"], "otto:node/acme/n1");
        assert!(
            vsa["predicate"]["resourceUri"]
                .as_str()
                .unwrap()
                .starts_with("otto:snapshot/sha256:"),
            "{vsa:#}"
        );
        pin_ops(&f.home);
        let answer = f
            .call(Method::GET, &format!("/v1/runs/{run}/bundle"), None)
            .await;
        let again = Bundle::from_json(std::str::from_utf8(&answer.body).unwrap()).unwrap();
        let vsa = summary(&again);
        assert_eq!(vsa["predicate"]["verificationResult"], "PASSED", "{vsa:#}");
        let inputs: Vec<&str> = vsa["predicate"]["inputAttestations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["digest"]["sha256"].as_str().unwrap())
            .collect();
        assert_eq!(inputs, receipt_digests);

        let org_keys = |orgs: &[(&str, PublicKey)]| {
            let mut trust = TrustStore::new();
            for (name, key) in orgs {
                trust.pin_org(name, *key, 0).unwrap();
            }
            trust
        };
        let acme = persist::load_org_key(&f.home.org_key_file())
            .unwrap()
            .public_key();
        let both = org_keys(&[("acme", acme), ("ops", ops_org().public_key())]);
        let report = verify_bundle(&bundle, &Owners::new(&both, None, &[]), now_secs());
        assert!(report.verified, "{report:#?}");
        assert!(report.attestations[0].verified);

        let only_acme = org_keys(&[("acme", acme)]);
        let report = verify_bundle(&bundle, &Owners::new(&only_acme, None, &[]), now_secs());
        assert!(!report.verified);
        assert_eq!(
            report.chain.stage("Deploy").unwrap().status,
            StageStatus::Invalid
        );
    }

    #[tokio::test]
    async fn unknown_runs_get_404() {
        let f = fixture().await;
        this_node(&f.home);
        let unknown = RunId::new(1, [1; 10]);
        for uri in [
            format!("/v1/runs/{unknown}/verify"),
            format!("/v1/runs/{unknown}/bundle"),
            "/v1/runs/not-a-run/verify".to_owned(),
            "/v1/runs/not-a-run/bundle".to_owned(),
        ] {
            let answer = f.call(Method::GET, &uri, None).await;
            assert_eq!(answer.status, StatusCode::NOT_FOUND, "{uri}");
            let (code, message) = answer.error();
            assert_eq!(code, "not_found");
            assert!(message.starts_with("no run"), "{message}");
        }
    }
}

/// docs/openapi.yaml against the node: every `/v1` and `/hooks` route of the routers is in
/// the spec and every path of the spec is a route; every query parameter a handler reads
/// is documented for its operation; every status the node answers to a set of good and
/// bad requests is listed for its operation. (CI also drives a real node from the spec
/// with schemathesis, `.ci/api-check.py`.)
mod contract {
    use std::collections::BTreeSet;

    use super::*;

    fn spec() -> Value {
        let text = include_str!("../../../docs/openapi.yaml");
        yaml_serde::from_str(text).expect("docs/openapi.yaml parses")
    }

    const METHODS: [&str; 4] = ["get", "post", "put", "delete"];

    /// `(METHOD, path)` of every `.route(PATH, METHOD(..)...)` in `source`, for the API's
    /// paths (`/v1/…`, `/hooks/…`; the HTML pages under `/ui` are docs/ui.md's).
    fn routes_in(source: &str, out: &mut BTreeSet<(String, String)>) {
        for (at, _) in source.match_indices(".route(") {
            let rest = &source[at + ".route(".len()..];
            let Some(open) = rest.find('"') else { continue };
            let Some(len) = rest[open + 1..].find('"') else {
                continue;
            };
            let path = &rest[open + 1..open + 1 + len];
            if !(path.starts_with("/v1/") || path.starts_with("/hooks/"))
                || path.starts_with("/v1/testnet/")
            {
                continue;
            }
            // The route's expression ends where its parentheses close.
            let mut depth = 1;
            let mut end = 0;
            for (i, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = i;
                    break;
                }
            }
            let expression = &rest[..end];
            for method in METHODS {
                let call = format!("{method}(");
                if expression
                    .match_indices(&call)
                    .any(|(i, _)| i == 0 || !expression.as_bytes()[i - 1].is_ascii_alphanumeric())
                {
                    out.insert((method.to_uppercase(), path.to_owned()));
                }
            }
        }
    }

    #[test]
    fn every_route_is_in_the_spec_and_every_spec_path_is_a_route() {
        let mut code = BTreeSet::new();
        routes_in(include_str!("mod.rs"), &mut code);
        routes_in(include_str!("../ui/mod.rs"), &mut code);
        assert!(
            code.len() > 20,
            "the route parser finds the routes: {code:?}"
        );
        let spec = spec();
        let mut documented = BTreeSet::new();
        for (path, item) in spec["paths"].as_object().unwrap() {
            for method in METHODS {
                if item.get(method).is_some() {
                    documented.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        let undocumented: Vec<_> = code.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&code).collect();
        assert!(
            undocumented.is_empty() && unserved.is_empty(),
            "routes missing from docs/openapi.yaml: {undocumented:?}; \
             paths of docs/openapi.yaml the node does not serve: {unserved:?}"
        );
    }

    /// The query parameters the spec documents for `method path`.
    fn documented_parameters(spec: &Value, method: &str, path: &str) -> BTreeSet<String> {
        let op = &spec["paths"][path][method];
        let mut out = BTreeSet::new();
        for list in [&spec["paths"][path]["parameters"], &op["parameters"]] {
            for p in list.as_array().into_iter().flatten() {
                if p["in"] == "query" {
                    out.insert(p["name"].as_str().unwrap().to_owned());
                }
            }
        }
        out
    }

    /// The field names of `struct NAME { ... }` in `source`.
    fn fields(source: &str, name: &str) -> BTreeSet<String> {
        let start = source
            .find(&format!("struct {name} {{"))
            .unwrap_or_else(|| panic!("struct {name} is where the table says"));
        let body = &source[start..];
        let body = &body[body.find('{').unwrap() + 1..body.find('}').unwrap()];
        body.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("//") && !l.starts_with('#') && l.contains(':'))
            .map(|l| {
                l.trim_start_matches("pub ")
                    .split(':')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn every_query_parameter_a_handler_reads_is_documented() {
        let spec = spec();
        // Every query struct of the API, with the operation that reads it.
        let table = [
            (include_str!("runs.rs"), "ListQuery", "get", "/v1/runs"),
            (include_str!("runs.rs"), "GetQuery", "get", "/v1/runs/{run}"),
            (
                include_str!("logs.rs"),
                "LogQuery",
                "get",
                "/v1/runs/{run}/logs",
            ),
        ];
        let mut structs = 0;
        for source in [
            include_str!("runs.rs"),
            include_str!("logs.rs"),
            include_str!("membership.rs"),
            include_str!("secrets.rs"),
            include_str!("verify.rs"),
            include_str!("mod.rs"),
        ] {
            structs += source.matches("Query<").count();
        }
        assert_eq!(
            structs,
            table.len(),
            "a handler reads a query struct this table does not name"
        );
        for (source, name, method, path) in table {
            let read = fields(source, name);
            let documented = documented_parameters(&spec, method, path);
            assert_eq!(
                read, documented,
                "{method} {path}: the handler reads {read:?}, docs/openapi.yaml documents {documented:?}"
            );
        }
    }

    /// The statuses the spec lists for `method path`.
    fn statuses(spec: &Value, method: &str, path: &str) -> Vec<String> {
        spec["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("docs/openapi.yaml has no {method} {path}"))
            .keys()
            .cloned()
            .collect()
    }

    #[tokio::test]
    async fn every_status_the_node_answers_is_documented() {
        let f = fixture_with(4096).await;
        let spec = spec();
        let run = f.snapshot(&[("Ottofile", OTTOFILE_WITH_GATE)]).await;
        let created = f
            .call(
                Method::POST,
                "/v1/runs",
                Some(json!({"source": {"kind": "snapshot", "digest": run}})),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.json());
        let run = created.json()["run"].as_str().unwrap().to_owned();
        let unknown = "01J9ZQ3M5V8R2K4T6W8Y0A2C4E";
        let big = vec![b'x'; 8192];
        let json_ops: [(&str, String, Value); 9] = [
            ("/v1/gc", "/v1/gc".into(), json!({"older_than_days": -1})),
            (
                "/v1/runs/{run}/retry",
                format!("/v1/runs/{run}/retry"),
                json!({"stage": ""}),
            ),
            (
                "/v1/repos",
                "/v1/repos".into(),
                json!({"url": "ext::sh -c id", "name": "app"}),
            ),
            (
                "/v1/runs/{run}/gates/{stage}/approve",
                format!("/v1/runs/{run}/gates/Deploy/approve"),
                json!({"who": "\u{7}"}),
            ),
            (
                "/v1/invites",
                "/v1/invites".into(),
                json!({"roles": [""], "stages": ["x"], "expires_in_secs": 60}),
            ),
            ("/v1/join", "/v1/join".into(), json!({"token": "otto1nope"})),
            (
                "/v1/trust/aliases",
                "/v1/trust/aliases".into(),
                json!({"alias": "ops", "target": "nobody"}),
            ),
            (
                "/v1/trust/revoke",
                "/v1/trust/revoke".into(),
                json!({"node": "nobody"}),
            ),
            (
                "/v1/approvals",
                "/v1/approvals".into(),
                json!({"digest": "sha256:00"}),
            ),
        ];
        let mut seen: Vec<(String, String, u16)> = Vec::new();
        let mut note = |method: &Method, template: &str, answer: &Answer| {
            seen.push((
                method.as_str().to_lowercase(),
                template.to_owned(),
                answer.status.as_u16(),
            ));
        };
        for (template, uri, wrong) in &json_ops {
            let m = Method::POST;
            note(
                &m,
                template,
                &f.raw(m.clone(), uri, "text/plain", b"{}".to_vec()).await,
            );
            note(
                &m,
                template,
                &f.raw(m.clone(), uri, "application/json", b"{".to_vec())
                    .await,
            );
            note(
                &m,
                template,
                &f.raw(m.clone(), uri, "application/json", big.clone()).await,
            );
            note(
                &m,
                template,
                &f.call(m.clone(), uri, Some(json!({"nope": 1}))).await,
            );
            note(
                &m,
                template,
                &f.call(m.clone(), uri, Some(wrong.clone())).await,
            );
            let unauthenticated = Request::builder()
                .method(m.clone())
                .uri(uri.as_str())
                .body(HttpBody::empty())
                .unwrap();
            note(&m, template, &f.send(unauthenticated).await);
        }
        let gets = [
            ("/v1/runs", "/v1/runs?limit=501".to_owned()),
            ("/v1/runs", "/v1/runs?before=x".to_owned()),
            ("/v1/runs", "/v1/runs?state=nope".to_owned()),
            ("/v1/runs", "/v1/runs?limit=2".to_owned()),
            ("/v1/runs/{run}", format!("/v1/runs/{run}")),
            ("/v1/runs/{run}", format!("/v1/runs/{unknown}")),
            ("/v1/runs/{run}", format!("/v1/runs/{run}?wait=61")),
            (
                "/v1/runs/{run}/logs",
                format!("/v1/runs/{run}/logs?stage=Deploy"),
            ),
            ("/v1/runs/{run}/logs", format!("/v1/runs/{run}/logs")),
            (
                "/v1/runs/{run}/logs",
                format!("/v1/runs/{run}/logs?stage=Deploy&after=9007199254740992"),
            ),
            (
                "/v1/runs/{run}/logs",
                format!("/v1/runs/{run}/logs?stage=Nope"),
            ),
            (
                "/v1/runs/{run}/verify",
                format!("/v1/runs/{unknown}/verify"),
            ),
            (
                "/v1/runs/{run}/bundle",
                format!("/v1/runs/{unknown}/bundle"),
            ),
            ("/v1/secrets", "/v1/secrets".to_owned()),
            ("/v1/secrets/{name}", "/v1/secrets/NOPE".to_owned()),
            ("/v1/secrets/{name}", "/v1/secrets/bad-name".to_owned()),
            ("/v1/node", "/v1/node".to_owned()),
            ("/v1/peers", "/v1/peers".to_owned()),
            ("/v1/trust", "/v1/trust".to_owned()),
            ("/v1/repos", "/v1/repos".to_owned()),
        ];
        for (template, uri) in &gets {
            note(
                &Method::GET,
                template,
                &f.call(Method::GET, uri, None).await,
            );
        }
        let secret = "/v1/secrets/{name}";
        for (method, uri, body) in [
            (Method::PUT, "/v1/secrets/TOKEN", b"value".to_vec()),
            (Method::PUT, "/v1/secrets/TOKEN", Vec::new()),
            (Method::PUT, "/v1/secrets/bad-name", b"value".to_vec()),
            (Method::PUT, "/v1/secrets/TOKEN", vec![b'x'; 70_000]),
            (Method::DELETE, "/v1/secrets/TOKEN", Vec::new()),
            (Method::DELETE, "/v1/secrets/TOKEN", Vec::new()),
        ] {
            note(
                &method,
                secret,
                &f.raw(method.clone(), uri, "application/octet-stream", body)
                    .await,
            );
        }
        // Retry: an unknown run, a run still waiting, a stage that is not there.
        let retry = "/v1/runs/{run}/retry";
        // A body that is not an object is refused, though serde would read the struct
        // from an array.
        for (template, uri, body) in [
            (retry, format!("/v1/runs/{run}/retry"), json!([null, null])),
            (
                "/v1/runs/{run}/cancel",
                format!("/v1/runs/{run}/cancel"),
                json!([null]),
            ),
        ] {
            let answer = f.call(Method::POST, &uri, Some(body)).await;
            assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
            note(&Method::POST, template, &answer);
        }
        for (uri, body) in [
            (format!("/v1/runs/{unknown}/retry"), json!({})),
            (format!("/v1/runs/{run}/retry"), json!({"who": "alice"})),
            (format!("/v1/runs/{run}/retry"), json!({"stage": "Nope"})),
        ] {
            note(
                &Method::POST,
                retry,
                &f.call(Method::POST, &uri, Some(body)).await,
            );
        }
        for (method, template, uri) in [
            (
                Method::POST,
                "/v1/runs/{run}/cancel",
                format!("/v1/runs/{unknown}/cancel"),
            ),
            (
                Method::POST,
                "/v1/runs/{run}/cancel",
                format!("/v1/runs/{run}/cancel"),
            ),
            (
                Method::POST,
                "/v1/runs/{run}/cancel",
                format!("/v1/runs/{run}/cancel"),
            ),
            (Method::POST, "/v1/snapshots", "/v1/snapshots".to_owned()),
            (
                Method::DELETE,
                "/v1/repos/{name}",
                "/v1/repos/nope".to_owned(),
            ),
            (
                Method::DELETE,
                "/v1/repos/{name}",
                "/v1/repos/Bad".to_owned(),
            ),
            (
                Method::POST,
                "/v1/repos/{name}/fetch",
                "/v1/repos/nope/fetch".to_owned(),
            ),
            (
                Method::POST,
                "/hooks/{forge}/{name}",
                "/hooks/github/nope".to_owned(),
            ),
            (
                Method::POST,
                "/hooks/{forge}/{name}",
                "/hooks/forgejo/nope".to_owned(),
            ),
        ] {
            note(
                &method,
                template,
                &f.raw(
                    method.clone(),
                    &uri,
                    "application/x-tar",
                    b"not a tar".to_vec(),
                )
                .await,
            );
        }
        // The cancelled run's stage is retried once its run has ended; the run is then in
        // progress again. Each look waits (long poll) for the run to change.
        let id: crate::store::RunId = run.parse().unwrap();
        let cancelled = f
            .call(
                Method::POST,
                &format!("/v1/runs/{run}/cancel"),
                Some(json!({})),
            )
            .await;
        assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.json());
        for _ in 0..50 {
            let ended = f
                .store
                .run(&id)
                .unwrap()
                .is_some_and(|r| r.state.is_final());
            if ended {
                break;
            }
            let etag = f.call(Method::GET, &format!("/v1/runs/{run}"), None).await;
            let tag = etag.headers.get(header::ETAG).cloned().unwrap();
            let look = Request::builder()
                .method(Method::GET)
                .uri(format!("/v1/runs/{run}?wait=2"))
                .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
                .header(header::IF_NONE_MATCH, tag)
                .body(HttpBody::empty())
                .unwrap();
            f.send(look).await;
        }
        let retried = f
            .call(
                Method::POST,
                &format!("/v1/runs/{run}/retry"),
                Some(json!({"who": "alice"})),
            )
            .await;
        assert_eq!(retried.status, StatusCode::OK, "{}", retried.json());
        assert_eq!(retried.json()["stages"], json!(["Deploy"]));
        note(&Method::POST, retry, &retried);
        note(
            &Method::POST,
            "/hooks/{token}",
            &f.raw(
                Method::POST,
                &format!("/hooks/{}", "0".repeat(64)),
                "application/json",
                b"{}".to_vec(),
            )
            .await,
        );

        let missing: Vec<String> = seen
            .iter()
            .filter(|(method, template, status)| {
                !statuses(&spec, method, template).contains(&status.to_string())
            })
            .map(|(method, template, status)| {
                format!("{} {template} -> {status}", method.to_uppercase())
            })
            .collect();
        assert!(
            missing.is_empty(),
            "statuses the node answers that docs/openapi.yaml does not list: {missing:#?}"
        );
        // The table reaches every operation of the spec but the UI login and the
        // snapshot upload's success.
        let reached: BTreeSet<(String, String)> = seen
            .iter()
            .map(|(m, t, _)| (m.clone(), t.clone()))
            .collect();
        assert!(reached.len() >= 20, "{reached:?}");
    }

    const OTTOFILE_WITH_GATE: &str = "pipeline {
  name = 'contract'
  stages {
    stage { name = 'Deploy'  gates { enter { input 'Ship it?' } }  steps { sh 'true' } }
  }
}
";
}
