//! Gates against a real node: an input gate approved with `otto approve`, and a webhook
//! gate passed by a real HTTPS request to the node's webhook listener, trusting only the
//! org CA from the node's home.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;

use crate::node_support::{Node, project, stage_of, text};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

#[test]
fn an_input_gate_waits_for_otto_approve() {
    let node = Node::start_new();
    let dir = project(&[(
        "Ottofile",
        "stage('Build') { steps { echo 'built' } }\n\
         stage('Deploy') {\n\
           gates { enter { input 'Ship it?', approvers: ['alice'] } }\n\
           steps { echo 'shipped' }\n\
         }\n",
    )]);
    let run = node.ok(&["run", dir.path().to_str().unwrap(), "--detach"]);
    let run = run.trim();
    node.wait_stage(run, "Deploy", "waiting_gate");

    let logs = node.ok(&["logs", run, "Deploy"]);
    assert!(
        logs.contains(&format!("otto approve {run} Deploy")),
        "{logs}"
    );

    let wrong = node.otto(&["approve", run, "Deploy", "--as", "mallory"]);
    assert_eq!(wrong.status.code(), Some(1));
    let err = text(&wrong.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("mallory"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let approved = node.ok(&["approve", run, "Deploy", "--as", "alice"]);
    assert!(approved.contains("approved Deploy"), "{approved}");
    let status = node.wait_final(run);
    assert_eq!(status["run"]["state"], "succeeded", "{status}");
    let gate = &stage_of(&status, "Deploy").unwrap()["gates"][0];
    assert_eq!(gate["state"], "passed");
    assert_eq!(gate["approved_by"], "alice");

    let again = node.otto(&["approve", run, "Deploy", "--as", "alice"]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "a passed gate is not approved twice"
    );
}

#[test]
fn a_stage_waiting_at_its_input_gate_is_not_described_by_the_poll_that_passed() {
    let node = Node::start_new();
    let dir = project(&[(
        "Ottofile",
        "stage('Deploy') {\n\
           gates {\n\
             exit {\n\
               poll { command = 'test -f ready || { touch ready; exit 1; }'  every = '1s'  timeout = '1m' }\n\
               input 'Healthy?'\n\
             }\n\
           }\n\
           steps { echo 'shipped' }\n\
         }\n",
    )]);
    let run = node.ok(&["run", dir.path().to_str().unwrap(), "--detach"]);
    let run = run.trim();
    node.wait_for("the exit gate to wait", || {
        let status = node.status(run);
        let gates = stage_of(&status, "Deploy").unwrap()["gates"]
            .as_array()?
            .clone();
        (gates.len() == 2 && gates[1]["state"] == "waiting").then_some(())
    });
    let human = node.ok(&["status", run]);
    let line = human.lines().find(|l| l.contains("Deploy")).unwrap();
    assert!(line.contains("waiting for its exit input gate"), "{human}");
    assert!(
        !line.contains("passed"),
        "a gate that passed does not describe the wait: {human}"
    );
    node.ok(&["approve", run, "Deploy"]);
    assert_eq!(node.wait_final(run)["run"]["state"], "succeeded");
}

#[test]
fn a_webhook_gate_passes_with_an_https_callback_once() {
    let node = Node::start_new();
    let dir = project(&[(
        "Ottofile",
        "stage('Deploy') {\n\
           steps { echo 'deployed' }\n\
           gates { exit { webhook { description = 'health check'  timeout = '10m' } } }\n\
         }\n",
    )]);
    let run = node.ok(&["run", dir.path().to_str().unwrap(), "--detach"]);
    let run = run.trim();
    node.wait_stage(run, "Deploy", "waiting_gate");
    let logs = node.ok(&["logs", run, "Deploy"]);
    let url = logs
        .split_whitespace()
        .find(|w| w.starts_with("https://") && w.contains("/hooks/"))
        .unwrap_or_else(|| panic!("no webhook url in the log: {logs}"))
        .to_owned();

    let (status, body) = https_post(&node.ca_pem(), &url);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"accepted\":true"), "{body}");
    let status = node.wait_final(run);
    assert_eq!(status["run"]["state"], "succeeded", "{status}");
    assert_eq!(
        stage_of(&status, "Deploy").unwrap()["gates"][0]["state"],
        "passed"
    );

    // The token is accepted once.
    let (again, body) = https_post(&node.ca_pem(), &url);
    assert!(again == 409 || again == 404, "{again} {body}");
    assert!(body.contains("\"error\""), "{body}");
}

/// POSTs to an https URL of 127.0.0.1, trusting only `ca_pem`; returns the status and
/// the body.
fn https_post(ca_pem: &str, url: &str) -> (u16, String) {
    let rest = url.strip_prefix("https://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let host = authority.rsplit_once(':').unwrap().0.to_owned();
    let name = ServerName::try_from(host).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(authority).unwrap();
    tcp.set_read_timeout(Some(crate::node_support::PATIENCE))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let body = "{\"status\":\"healthy\"}";
    write!(
        tls,
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = Vec::new();
    // The server closes without a TLS close_notify sometimes; what was read counts.
    let _ = tls.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no http answer: {answer:?}"));
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}
