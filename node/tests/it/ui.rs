//! The web UI of a real node on a real socket: sign in with a one-time link, run a
//! pipeline whose step prints a secret, and read every page of the run.
//!
//! ```text
//!   test ──HTTP/1.1 on 127.0.0.1──▶ otto node (in-process daemon) ──▶ otto-agent
//! ```

use std::time::{Duration, Instant};

use otto_node::home::{self, Home, InitOptions};
use rand::SeedableRng as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::engine_support::{PATIENCE, agent_path};

const SECRET: &str = "hunter2-very-secret-value";

const OTTOFILE: &str = r#"
environments { prod { secrets { TOKEN } } }
stage('Build') {
  steps {
    sh 'mkdir -p dist && echo hello > dist/site.txt'
    archive path: 'dist/', name: 'site'
  }
}
stage('Deploy') {
  environment -> prod
  steps { sh 'echo "token is $(cat "$OTTO_SECRETS_DIR/TOKEN")"' }
}
"#;

/// An HTTP answer.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One HTTP/1.1 request on a fresh connection; reads the whole answer (or only the head,
/// for an event stream).
async fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("the node answers")
            .unwrap();
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if text.contains("text/event-stream") && text.contains("\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Answer {
        status,
        head: head.to_owned(),
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        std::fs::write(dir.path().join(path), text).unwrap();
    }
    let mut tar = Vec::new();
    otto_node::snapshot::create(dir.path(), &mut tar).unwrap();
    tar
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_browser_sees_every_page_of_a_run_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("home");
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let options = InitOptions {
        org: "acme".into(),
        name: "dev-1".into(),
        org_key: None,
        answers_to: vec![],
        run_as: None,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    home::init(&root, &options, &mut rng, now).unwrap();
    let home = Home::new(&root);
    let config = std::fs::read_to_string(home.config_file()).unwrap();
    let config = config.replacen(
        "[agent]\n",
        &format!("[agent]\npath = {:?}\n", agent_path().display().to_string()),
        1,
    );
    std::fs::write(home.config_file(), config).unwrap();

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(otto_node::daemon::run_until(home.clone(), async {
        let _ = stop_rx.await;
    }));
    let started = Instant::now();
    let addr = loop {
        if let Ok(addr) = home.read_api_addr() {
            break addr.to_string();
        }
        assert!(started.elapsed() < PATIENCE, "the node did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let token = home.read_api_token().unwrap();
    let bearer = format!("Bearer {}", token.as_str());
    let auth = [("Authorization", bearer.as_str())];

    // A secret, a snapshot and a run.
    let put = http(&addr, "PUT", "/v1/secrets/TOKEN", &auth, SECRET.as_bytes()).await;
    assert!(put.status < 300, "{}", put.body);
    let tar = tar_of(&[("Ottofile", OTTOFILE)]);
    let snap = http(
        &addr,
        "POST",
        "/v1/snapshots",
        &[auth[0], ("Content-Type", "application/x-tar")],
        &tar,
    )
    .await;
    let digest: serde_json::Value = serde_json::from_str(&snap.body).unwrap();
    let create = serde_json::json!({"source": {"kind": "snapshot", "digest": digest["digest"]}});
    let created = http(
        &addr,
        "POST",
        "/v1/runs",
        &[auth[0], ("Content-Type", "application/json")],
        create.to_string().as_bytes(),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let run = serde_json::from_str::<serde_json::Value>(&created.body).unwrap()["run"]
        .as_str()
        .unwrap()
        .to_owned();
    loop {
        let detail = http(&addr, "GET", &format!("/v1/runs/{run}"), &auth, b"").await;
        let v: serde_json::Value = serde_json::from_str(&detail.body).unwrap();
        if v["run"]["state"] == "succeeded" {
            break;
        }
        assert_ne!(v["run"]["state"], "failed", "{}", detail.body);
        assert!(started.elapsed() < PATIENCE * 2, "the run did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Without a session: 401 everywhere, the event stream included.
    assert_eq!(http(&addr, "GET", "/ui/runs", &[], b"").await.status, 401);
    assert_eq!(http(&addr, "GET", "/ui/events", &[], b"").await.status, 401);

    // Sign in through the one-time URL.
    let login = http(&addr, "POST", "/v1/ui/logins", &auth, b"").await;
    assert_eq!(login.status, 201, "{}", login.body);
    let url = serde_json::from_str::<serde_json::Value>(&login.body).unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = url
        .strip_prefix(&format!("http://{addr}"))
        .expect("the node's own address");
    let signed = http(&addr, "GET", path, &[], b"").await;
    assert_eq!(signed.status, 303);
    let cookie = signed
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        http(&addr, "GET", path, &[], b"").await.status,
        403,
        "the link works once"
    );
    let session = [("Cookie", cookie.as_str())];

    // Every page of the run renders, and none shows the secret.
    let mut pages = vec![
        "/ui/runs".to_owned(),
        format!("/ui/runs?state=succeeded&pipeline="),
        format!("/ui/runs/{run}"),
        format!("/ui/runs/{run}/stages/Build"),
        format!("/ui/runs/{run}/stages/Deploy"),
        "/ui/mesh".to_owned(),
        "/ui/explain".to_owned(),
    ];
    pages.push(format!("/ui/runs/{run}/stages/Deploy/attestation"));
    for page in &pages {
        let answer = http(&addr, "GET", page, &session, b"").await;
        assert_eq!(answer.status, 200, "{page}: {}", answer.body);
        assert!(!answer.body.contains(SECRET), "{page} shows the secret");
    }
    let run_page = http(&addr, "GET", &format!("/ui/runs/{run}"), &session, b"").await;
    assert!(
        run_page
            .body
            .contains("data-testid=\"run-state\" class=\"run-state\" data-state=\"succeeded\"")
    );
    assert!(
        run_page
            .body
            .contains("data-testid=\"verify-result\" class=\"verified\">verified"),
        "{}",
        run_page.body
    );
    let deploy = http(
        &addr,
        "GET",
        &format!("/ui/runs/{run}/stages/Deploy"),
        &session,
        b"",
    )
    .await;
    let masked = deploy
        .body
        .split("data-testid=\"log-line\"")
        .any(|l| l.contains("token is ") && l.contains("***"));
    assert!(masked, "the log shows the masked line: {}", deploy.body);
    assert!(deploy.body.contains("data-testid=\"receipt\""));
    let build = http(
        &addr,
        "GET",
        &format!("/ui/runs/{run}/stages/Build"),
        &session,
        b"",
    )
    .await;
    let link = build
        .body
        .split("data-testid=\"artifact\"")
        .nth(1)
        .and_then(|a| a.split("href=\"").nth(1))
        .and_then(|a| a.split('"').next())
        .expect("an artifact link")
        .to_owned();
    let artifact = http(&addr, "GET", &link, &session, b"").await;
    assert_eq!(artifact.status, 200);
    assert!(!artifact.body.is_empty());
    let events = http(
        &addr,
        "GET",
        &format!("/ui/events?run={run}"),
        &session,
        b"",
    )
    .await;
    assert_eq!(events.status, 200);
    assert!(
        events
            .header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );

    stop_tx.send(()).unwrap();
    tokio::time::timeout(PATIENCE, daemon)
        .await
        .expect("the node stops")
        .unwrap()
        .unwrap();
}
