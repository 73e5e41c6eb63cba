//! Gates closed from outside the engine task: approvals and webhook callbacks; and the
//! checks of poll gates that the node makes itself.
//!
//! An approval or a callback is checked against the store and recorded there with
//! [`Store::resolve_gate`](crate::store::Store::resolve_gate), which closes a gate at most
//! once; only then is the stage task that waits on the gate woken. So a second callback
//! with the same token, or an approval racing a timeout, is refused cleanly.
#![warn(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use otto_pipeline::plan::{Body, Gate as PlanGate};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::stage::next_state;
use super::util::{blocking, now_ms};
use super::{EngineError, OFFERED_BY, Shared};
use crate::blobs::Digest;
use crate::store::{self, Gate, GateKind, GatePhase, GateResolution, GateState, RunId};

/// The length of a webhook token: 32 random bytes as hex.
const TOKEN_LEN: usize = 64;

/// The most bytes of an answer read to find its status line.
const MAX_STATUS_LINE: usize = 1024;

/// The URL an external system calls back for a webhook gate with this token.
pub(crate) fn webhook_url(base: Option<&str>, token: &str) -> String {
    let base = base.unwrap_or("").trim_end_matches('/');
    format!("{base}/hooks/{token}")
}

/// Approves the waiting input gate of a stage.
pub(crate) async fn approve(
    sh: &Arc<Shared>,
    run: RunId,
    stage: String,
    who: String,
) -> Result<(), EngineError> {
    let store = sh.store.clone();
    let (gate, approvers) = {
        let stage = stage.clone();
        let sh = Arc::clone(sh);
        blocking(move || -> Result<(Gate, Vec<String>), EngineError> {
            let record = store.run(&run)?.ok_or(EngineError::UnknownRun(run))?;
            let inputs: Vec<Gate> = store
                .gates(&run)?
                .into_iter()
                .filter(|g| g.at.stage == stage && g.kind == GateKind::Input)
                .collect();
            let waiting = inputs
                .iter()
                .find(|g| g.state == GateState::Waiting)
                .cloned();
            let Some(gate) = waiting else {
                let (planned, owner) = planned_inputs(&store, &record.plan_digest, &stage)?;
                let started_here = !record.started_by.starts_with(OFFERED_BY);
                return Err(if inputs.is_empty() && planned == 0 {
                    EngineError::UnknownGate
                } else if !sh.owns(owner.as_deref(), started_here) {
                    // Its gates open on the node that runs it.
                    EngineError::GateElsewhere {
                        stage,
                        runs_on: match owner {
                            Some(owner) => format!("the node that answers to {owner:?}"),
                            None => format!(
                                "the node that started the run ({})",
                                record.started_by.trim_start_matches(OFFERED_BY)
                            ),
                        },
                    }
                } else {
                    EngineError::GateNotWaiting
                });
            };
            let body = super::stored_plan(&store, run, &record.plan_digest)?;
            let approvers = body
                .stages
                .iter()
                .find(|s| s.id == stage)
                .and_then(|s| {
                    let list = match gate.at.phase {
                        GatePhase::Enter => &s.gates.enter,
                        GatePhase::Exit => &s.gates.exit,
                    };
                    list.get(gate.at.index as usize)
                })
                .and_then(|g| match g {
                    PlanGate::Input { approvers, .. } => Some(approvers.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            Ok((gate, approvers))
        })
        .await?
    };
    if !approvers.is_empty() && !approvers.contains(&who) {
        return Err(EngineError::NotApprover { who, approvers });
    }
    let resolution = GateResolution {
        state: GateState::Passed,
        approved_by: Some(who.clone()),
        note: Some(format!("approved by {who}")),
        at: now_ms(),
    };
    closed(
        sh.resolve_gate(
            &gate.at,
            GateKind::Input,
            resolution,
            next_state(gate.at.phase),
        )
        .await,
    )
}

/// Accepts a webhook callback given the token from its URL.
pub(crate) async fn webhook(sh: &Arc<Shared>, token: &str) -> Result<(), EngineError> {
    let well_formed = token.len() == TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !well_formed {
        return Err(EngineError::UnknownGate);
    }
    let hash = Digest::of(token.as_bytes());
    let store = sh.store.clone();
    let gate = blocking(move || store.gate_by_token(&hash))
        .await?
        .ok_or(EngineError::UnknownGate)?;
    if gate.state != GateState::Waiting {
        return Err(EngineError::GateNotWaiting);
    }
    let resolution = GateResolution {
        state: GateState::Passed,
        approved_by: None,
        note: Some("called back".into()),
        at: now_ms(),
    };
    closed(
        sh.resolve_gate(
            &gate.at,
            GateKind::Webhook,
            resolution,
            next_state(gate.at.phase),
        )
        .await,
    )
}

/// GETs an `http://` URL; succeeds when the answer's status is 2xx.
pub(crate) async fn http_get(url: &str, timeout: Duration) -> Result<(), String> {
    tokio::time::timeout(timeout, get(url))
        .await
        .map_err(|_| format!("GET {url}: no answer within {}s", timeout.as_secs()))?
}

/// A shell command that succeeds when a GET of the URL answers 2xx (for `https://`, which
/// the node does not speak itself).
pub(crate) fn curl_command(url: &str) -> String {
    let quoted = url.replace('\'', "'\\''");
    format!("curl -fsS -o /dev/null --max-time 30 -- '{quoted}'")
}

async fn get(url: &str) -> Result<(), String> {
    let uri: axum::http::Uri = url.parse().map_err(|e| format!("bad URL {url}: {e}"))?;
    let host = uri.host().ok_or_else(|| format!("no host in {url}"))?;
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut stream = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: otto-node\r\nConnection: close\r\n\r\n",
        uri.authority().map_or(host, |a| a.as_str())
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 256];
    while !answer.contains(&b'\n') && answer.len() < MAX_STATUS_LINE {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let line = String::from_utf8_lossy(&answer);
    let status = line
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("GET {url}: not an HTTP answer"))?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("GET {url}: status {status}"))
    }
}

/// How many input gates the plan gives a stage.
/// How many input gates the plan gives the stage, and the stage's owner.
fn planned_inputs(
    store: &store::Store,
    digest: &Digest,
    stage: &str,
) -> Result<(usize, Option<String>), store::Error> {
    let Some(bytes) = store.plan(digest)? else {
        return Ok((0, None));
    };
    let Ok(body) = serde_json::from_slice::<Body>(&bytes) else {
        return Ok((0, None));
    };
    let Some(planned) = body.stages.iter().find(|s| s.id == stage) else {
        return Ok((0, None));
    };
    let inputs = planned
        .gates
        .enter
        .iter()
        .chain(&planned.gates.exit)
        .filter(|g| matches!(g, PlanGate::Input { .. }))
        .count();
    Ok((inputs, planned.owner.clone()))
}

/// A gate that closed in the meantime was not waiting any more.
fn closed(result: Result<(), store::Error>) -> Result<(), EngineError> {
    match result {
        Ok(()) => Ok(()),
        Err(store::Error::GateClosed { .. }) => Err(EngineError::GateNotWaiting),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_join_the_base_and_the_token() {
        assert_eq!(
            webhook_url(Some("https://127.0.0.1:8443/"), "ab"),
            "https://127.0.0.1:8443/hooks/ab"
        );
        assert_eq!(webhook_url(None, "ab"), "/hooks/ab");
    }

    #[test]
    fn curl_commands_quote_the_url() {
        assert_eq!(
            curl_command("https://x/'a"),
            "curl -fsS -o /dev/null --max-time 30 -- 'https://x/'\\''a'"
        );
    }

    #[tokio::test]
    async fn http_polls_pass_on_2xx_only() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut socket, _) = listener.accept().await.expect("accept");
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                socket.write_all(answer.as_bytes()).await.expect("write");
            }
        });
        let url = format!("http://{addr}/health");
        assert_eq!(http_get(&url, Duration::from_secs(10)).await, Ok(()));
        let err = http_get(&url, Duration::from_secs(10))
            .await
            .expect_err("503");
        assert!(err.contains("503"), "{err}");
        server.await.expect("server");
    }
}
