//! Calls a webhook gate's URL the way an external system would: an HTTPS POST to the
//! node's webhook listener, trusting only the CA in the node's home (`ca.pem`).

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::Error;

/// The most of an answer that is read.
const MAX_ANSWER: u64 = 64 * 1024;

/// An HTTP answer: its status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

/// POSTs `body` (JSON) to `url` (`https://HOST:PORT/PATH`), trusting only the CA
/// certificate `ca_pem`; every network step is bounded by `limit`.
pub fn post(ca_pem: &str, url: &str, body: &str, limit: Duration) -> Result<Answer, Error> {
    let fail = |problem: String| Error::Webhook {
        url: url.to_owned(),
        problem,
    };
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| fail("not an https URL".into()))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();

    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|e| fail(format!("the CA certificate: {e}")))?;
    roots
        .add(ca)
        .map_err(|e| fail(format!("the CA certificate: {e}")))?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| fail(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from(host).map_err(|e| fail(e.to_string()))?;
    let conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| fail(e.to_string()))?;

    let addr = authority
        .to_socket_addrs()
        .map_err(|e| fail(e.to_string()))?
        .next()
        .ok_or_else(|| fail("the host has no address".into()))?;
    let tcp = TcpStream::connect_timeout(&addr, limit).map_err(|e| fail(e.to_string()))?;
    tcp.set_read_timeout(Some(limit))
        .and_then(|()| tcp.set_write_timeout(Some(limit)))
        .map_err(|e| fail(e.to_string()))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .and_then(|()| tls.flush())
    .map_err(|e| fail(e.to_string()))?;
    let mut raw = Vec::new();
    // A server may close without a TLS close_notify: what was read still counts.
    let _ = (&mut tls).take(MAX_ANSWER).read_to_end(&mut raw);
    parse_answer(&String::from_utf8_lossy(&raw)).ok_or_else(|| {
        fail(if raw.is_empty() {
            "no answer".into()
        } else {
            "the answer is not HTTP".into()
        })
    })
}

/// The status and body of an HTTP/1.1 answer (the body is not de-chunked; the node
/// answers with a length).
fn parse_answer(text: &str) -> Option<Answer> {
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head
        .lines()
        .next()?
        .strip_prefix("HTTP/1.")?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(Answer {
        status,
        body: body.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_gives_its_status_and_body() {
        let answer =
            parse_answer("HTTP/1.1 200 OK\r\ncontent-length: 17\r\n\r\n{\"accepted\":true}")
                .unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, "{\"accepted\":true}");
        assert_eq!(parse_answer("garbage"), None);
        assert_eq!(parse_answer("SMTP 220\r\n\r\n"), None);
    }

    #[test]
    fn only_https_urls_are_called() {
        let err = post(
            "",
            "http://127.0.0.1:1/hooks/x",
            "{}",
            Duration::from_secs(1),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not an https URL"), "{err}");
    }
}
