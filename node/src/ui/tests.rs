//! The UI driven with `oneshot`, no socket: sign-in, sessions, CSRF, security headers,
//! and the pages of a run.

use axum::body::Body as HttpBody;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{Method, Request};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::*;
use crate::api::tests::TOKEN;

const ADDR: &str = "127.0.0.1:7777";

struct Fixture {
    _dir: tempfile::TempDir,
    app: Router,
    state: ApiState,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let state = crate::api::tests::state(dir.path(), 1024 * 1024).await;
    let app = crate::api::router(state.clone()).merge(router(state.clone(), ADDR.parse().unwrap()));
    Fixture {
        _dir: dir,
        app,
        state,
    }
}

impl Fixture {
    async fn send(&self, request: Request<HttpBody>) -> Answer {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn api(&self, method: Method, uri: &str, body: Option<Value>) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, format!("Bearer {TOKEN}"));
        let body = match body {
            Some(v) => {
                request = request.header(CONTENT_TYPE, "application/json");
                HttpBody::from(v.to_string())
            }
            None => HttpBody::empty(),
        };
        self.send(request.body(body).unwrap()).await
    }

    /// A login URL's path, from the API.
    async fn login_path(&self) -> String {
        let answer = self.api(Method::POST, "/v1/ui/logins", None).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        let v: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(v["expires_in_secs"], 300);
        let url = v["url"].as_str().unwrap();
        let path = url
            .strip_prefix(&format!("http://{ADDR}"))
            .expect("the URL is on the API address");
        path.to_owned()
    }

    /// Signs in: the session cookie and the CSRF token.
    async fn sign_in(&self) -> (String, String) {
        let path = self.login_path().await;
        let answer = self.get(&path, None).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER);
        let cookie = answer.headers[SET_COOKIE].to_str().unwrap();
        let pair = cookie.split(';').next().unwrap().to_owned();
        let page = self.get("/ui/runs", Some(&pair)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let csrf = page
            .body
            .split("name=\"otto-csrf\" content=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("every page has the CSRF meta tag")
            .to_owned();
        (pair, csrf)
    }

    async fn get(&self, uri: &str, cookie: Option<&str>) -> Answer {
        let mut request = Request::builder().uri(uri);
        if let Some(c) = cookie {
            request = request.header(COOKIE, c);
        }
        self.send(request.body(HttpBody::empty()).unwrap()).await
    }

    async fn post_form(&self, uri: &str, cookie: &str, form: &str, origin: Option<&str>) -> Answer {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(COOKIE, cookie)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(o) = origin {
            request = request.header(ORIGIN, o);
        }
        self.send(request.body(HttpBody::from(form.to_owned())).unwrap())
            .await
    }
}

#[tokio::test]
async fn a_login_url_needs_the_token_and_works_once() {
    let f = fixture().await;
    let refused = f
        .send(
            Request::post("/v1/ui/logins")
                .body(HttpBody::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    let path = f.login_path().await;
    let token = path.strip_prefix("/ui/login/").unwrap();
    assert_eq!(token.len(), 43, "32 bytes in unpadded base64url");
    let first = f.get(&path, None).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    assert_eq!(first.headers[LOCATION], "/ui/runs");
    let cookie = first.headers[SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("otto_ui="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(!cookie.contains("Secure"));

    let second = f.get(&path, None).await;
    assert_eq!(second.status, StatusCode::FORBIDDEN);
    assert!(second.body.contains("already used or it expired"));
    assert!(second.body.contains("otto ui"));
    let unknown = f.get("/ui/login/not-a-token", None).await;
    assert_eq!(unknown.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn nothing_under_ui_answers_without_a_session() {
    let f = fixture().await;
    for path in [
        "/ui/runs",
        "/ui/runs/01J9ZQ3M5V8R2K4T6W8Y0A2C4E",
        "/ui/mesh",
        "/ui/explain",
        "/ui/events",
        "/ui/anything",
    ] {
        let answer = f.get(path, None).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(answer.body.contains("otto ui"), "{path}");
        let forged = f.get(path, Some("otto_ui=forged")).await;
        assert_eq!(forged.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let root = f.get("/ui", None).await;
    assert_eq!(root.status, StatusCode::SEE_OTHER);
    assert_eq!(root.headers[LOCATION], "/ui/runs");
    assert_eq!(f.get("/ui/", None).await.headers[LOCATION], "/ui/runs");
}

#[tokio::test]
async fn posts_need_the_sessions_csrf_token_and_the_nodes_origin() {
    let f = fixture().await;
    let (cookie, csrf) = f.sign_in().await;
    let (_, other_csrf) = f.sign_in().await;
    assert_ne!(csrf, other_csrf, "each session has its own token");
    let text = "ottofile=stage+%7B+name+%3D+%27A%27+steps+%7B+sh+%27true%27+%7D+%7D";

    let missing = f.post_form("/ui/explain", &cookie, text, None).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert!(missing.body.contains("CSRF token missing or wrong"));
    let wrong = f
        .post_form(
            "/ui/explain",
            &cookie,
            &format!("_csrf={other_csrf}&{text}"),
            None,
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);

    let foreign = f
        .post_form(
            "/ui/explain",
            &cookie,
            &format!("_csrf={csrf}&{text}"),
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);

    let ok = f
        .post_form(
            "/ui/explain",
            &cookie,
            &format!("_csrf={csrf}&{text}"),
            Some(&format!("http://{ADDR}")),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert!(ok.body.contains("data-testid=\"stage-graph\""));

    let header = f
        .send(
            Request::post("/ui/explain")
                .header(COOKIE, &cookie)
                .header("x-otto-csrf", &csrf)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(HttpBody::from(text))
                .unwrap(),
        )
        .await;
    assert_eq!(header.status, StatusCode::OK);

    let out = f
        .post_form("/ui/logout", &cookie, &format!("_csrf={csrf}"), None)
        .await;
    assert_eq!(out.status, StatusCode::OK);
    assert_eq!(
        f.get("/ui/runs", Some(&cookie)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn pages_carry_the_security_headers() {
    let f = fixture().await;
    let (cookie, _) = f.sign_in().await;
    for (path, c) in [("/ui/runs", Some(cookie.as_str())), ("/ui/runs", None)] {
        let answer = f.get(path, c).await;
        let csp = answer.headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(answer.headers[X_FRAME_OPTIONS], "DENY");
        assert_eq!(answer.headers[REFERRER_POLICY], "same-origin");
        assert_eq!(answer.headers[CACHE_CONTROL], "no-store");
    }
    let js = f.get("/ui/assets/otto.js", None).await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(
        js.headers[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let page = f.get("/ui/runs", Some(&cookie)).await;
    assert!(!page.body.contains("<script>"), "no inline script");
    assert!(!page.body.contains("style=\""), "no inline style");
}

#[tokio::test]
async fn explain_draws_the_plan_or_lists_the_problems() {
    let f = fixture().await;
    let (cookie, csrf) = f.sign_in().await;
    let form = |text: &str| {
        let mut out = format!("_csrf={csrf}&ottofile=");
        for b in text.bytes() {
            out.push_str(&format!("%{b:02X}"));
        }
        out
    };
    let good = "pipeline { stages {\n stage { name = 'Build' steps { sh 'make' } }\n \
                parallel { stage { name = 'Unit' steps { sh 'a' } } stage { name = 'Lint' steps { sh 'b' } } }\n \
                stage { name = 'Deploy' owner = 'ops' steps { sh 'c' } } } }";
    let answer = f.post_form("/ui/explain", &cookie, &form(good), None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body.matches("data-testid=\"stage\"").count(), 4);
    assert!(
        answer
            .body
            .contains("data-testid=\"lane\" data-owner=\"ops\"")
    );
    assert!(
        answer
            .body
            .contains("data-testid=\"handoff\" data-from=\"Lint\" data-to=\"Deploy\"")
    );
    // The node binds origin to its own org; nothing here answers to ops.
    assert!(
        answer.body.contains("data-testid=\"owners\""),
        "{}",
        answer.body
    );
    assert!(
        answer
            .body
            .contains("<tr><td>ops</td><td><strong>unresolved</strong>"),
        "{}",
        answer.body
    );
    assert!(
        answer.body.contains("<tr><td>origin</td><td>"),
        "{}",
        answer.body
    );

    let broken = f
        .post_form("/ui/explain", &cookie, &form("stage { name = }"), None)
        .await;
    assert_eq!(broken.status, StatusCode::OK);
    assert!(broken.body.contains("data-testid=\"diagnostics\""));
    assert!(!broken.body.contains("data-testid=\"stage-graph\""));

    let relative = f
        .post_form(
            "/ui/explain",
            &cookie,
            &form("use { './lib' }\nstage { name = 'A' steps { sh 'x' } }"),
            None,
        )
        .await;
    assert!(
        relative.body.contains("data-testid=\"diagnostics\""),
        "{}",
        relative.body
    );

    let hostile = f
        .post_form(
            "/ui/explain",
            &cookie,
            &form("stage { name = '<script>x</script>' steps { sh 'x' } }"),
            None,
        )
        .await;
    assert!(!hostile.body.contains("<script>x"), "names are escaped");
}

#[tokio::test]
async fn a_run_has_its_pages() {
    let f = fixture().await;
    let (cookie, _) = f.sign_in().await;
    // A snapshot with an Ottofile, and a run of it (its agent does not exist, so the
    // run fails; the pages still show it). `ops` is an org pinned here, none of whose
    // nodes is known.
    let ops = otto_trust::OrgKey::from_seed(&[0x0e; 32]).public_key();
    f.state
        .membership
        .update_trust(|trust| Ok(trust.pin_org("ops", ops, 0)?))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Ottofile"),
        "stage { name = 'Build' steps { sh 'true' } }\nstage { name = 'Ship' owner = 'ops' steps { sh 'true' } }",
    )
    .unwrap();
    let mut tar = Vec::new();
    crate::snapshot::create(dir.path(), &mut tar).unwrap();
    let upload = f
        .send(
            Request::post("/v1/snapshots")
                .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
                .header(CONTENT_TYPE, "application/x-tar")
                .body(HttpBody::from(tar))
                .unwrap(),
        )
        .await;
    let digest: Value = serde_json::from_str(&upload.body).unwrap();
    let created = f
        .api(
            Method::POST,
            "/v1/runs",
            Some(json!({"source": {"kind": "snapshot", "digest": digest["digest"]}})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let run: Value = serde_json::from_str(&created.body).unwrap();
    let run = run["run"].as_str().unwrap().to_owned();

    let list = f.get("/ui/runs", Some(&cookie)).await;
    assert!(
        list.body
            .contains(&format!("data-testid=\"run-row\" data-run=\"{run}\""))
    );
    assert!(list.body.contains("data-testid=\"run-filter\""));
    let filtered = f
        .get("/ui/runs?state=succeeded&pipeline=", Some(&cookie))
        .await;
    assert!(!filtered.body.contains(&run));

    let page = f.get(&format!("/ui/runs/{run}"), Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for needle in [
        "data-testid=\"run-state\"",
        "data-testid=\"plan-digest\"",
        "data-testid=\"verify-result\"",
        "svg data-testid=\"stage-graph\"",
        "data-testid=\"stage\" data-stage=\"Build\"",
        "data-testid=\"lane\" data-owner=\"ops\"",
        "data-testid=\"handoff\" data-from=\"Build\" data-to=\"Ship\" data-verified=\"false\"",
    ] {
        assert!(page.body.contains(needle), "the run page lacks {needle}");
    }
    // The page carries the run's tag; a stream opened with an older tag starts with a
    // change, so a page drawn just before a change still hears of it. The run has ended
    // first, so no later change of the engine can be what the stream sends.
    for _ in 0..200 {
        let detail = f.api(Method::GET, &format!("/v1/runs/{run}"), None).await;
        let v: Value = serde_json::from_str(&detail.body).unwrap();
        if v["run"]["state"] == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A run's note (why it is where it is, e.g. queued behind its concurrency group) is
    // on its page, escaped.
    let id: crate::store::RunId = run.parse().unwrap();
    f.state
        .store
        .set_run_note(&id, Some("waiting for run <b>X</b> in group deploy".into()))
        .unwrap();
    let page = f.get(&format!("/ui/runs/{run}"), Some(&cookie)).await;
    assert!(
        page.body.contains(
            "data-testid=\"run-note\" class=\"muted\">— waiting for run &lt;b&gt;X&lt;/b&gt; in group deploy</span>"
        ),
        "{}",
        page.body
    );
    // The failed run can be retried from its page, with the session's CSRF token only.
    let (_, csrf) = f.sign_in().await;
    let page = f.get(&format!("/ui/runs/{run}"), Some(&cookie)).await;
    assert!(
        page.body.contains("data-testid=\"retry-form\""),
        "{}",
        page.body
    );
    let forged = f
        .post_form(&format!("/ui/runs/{run}/retry"), &cookie, "", None)
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let page_csrf = page
        .body
        .split("name=\"_csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the retry form carries the CSRF token")
        .to_owned();
    assert_ne!(page_csrf, csrf, "each session has its own token");
    let retried = f
        .post_form(
            &format!("/ui/runs/{run}/retry"),
            &cookie,
            &format!("_csrf={page_csrf}"),
            None,
        )
        .await;
    assert_eq!(retried.status, StatusCode::SEE_OTHER, "{}", retried.body);
    let detail = f.api(Method::GET, &format!("/v1/runs/{run}"), None).await;
    let v: Value = serde_json::from_str(&detail.body).unwrap();
    assert_eq!(v["stages"][0]["retries"][0]["after"], 1, "{v}");
    for _ in 0..200 {
        let detail = f.api(Method::GET, &format!("/v1/runs/{run}"), None).await;
        let v: Value = serde_json::from_str(&detail.body).unwrap();
        if v["run"]["state"] == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let etag = page
        .body
        .split("data-etag=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the run page carries the run's tag")
        .to_owned();
    assert!(!etag.is_empty());
    let request = Request::builder()
        .uri(format!("/ui/events?run={run}&etag=%22stale%22"))
        .header(COOKIE, &cookie)
        .body(HttpBody::empty())
        .unwrap();
    let response = f.app.clone().oneshot(request).await.unwrap();
    let mut body = response.into_body();
    let mut seen = String::new();
    while !seen.contains("event: change") {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
            .await
            .expect("the stream answers at once")
            .expect("the stream stays open")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(seen.contains(&format!("\"run\":\"{run}\"")), "{seen}");
    let stage = f
        .get(&format!("/ui/runs/{run}/stages/Build"), Some(&cookie))
        .await;
    assert_eq!(stage.status, StatusCode::OK);
    assert!(stage.body.contains("data-testid=\"stage-state\""));
    assert!(stage.body.contains("data-testid=\"log\""));
    let none = f
        .get(&format!("/ui/runs/{run}/stages/Nope"), Some(&cookie))
        .await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    let mesh = f.get("/ui/mesh", Some(&cookie)).await;
    assert_eq!(mesh.status, StatusCode::OK);
    assert!(mesh.body.contains("data-testid=\"node-info\""));
    let artifact = f
        .get(
            &format!("/ui/runs/{run}/artifacts/sha256:{}", "0".repeat(64)),
            Some(&cookie),
        )
        .await;
    assert_eq!(
        artifact.status,
        StatusCode::NOT_FOUND,
        "only the run's artifacts are served"
    );
}

#[test]
fn form_fields_decode() {
    assert_eq!(
        form_field(b"a=1&_csrf=x%2By+z", "_csrf").as_deref(),
        Some("x+y z")
    );
    assert_eq!(form_field(b"a=1", "_csrf"), None);
    assert_eq!(form_field(b"_csrf=%ZZ", "_csrf"), None);
    assert_eq!(form_field(b"_csrf", "_csrf").as_deref(), Some(""));
}
