//! The HTTP client the node posts statuses and notifications with: hyper's client over
//! rustls (ring, the system's root certificates), HTTP/1.1, no redirects followed (a token
//! goes only to the URL it was meant for), a deadline per request and a cap on what is read
//! of an answer.

use std::time::Duration;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How long one request may take, connecting included.
const DEADLINE: Duration = Duration::from_secs(10);

/// The most bytes of an answer that are read (for the log).
const MAX_ANSWER: usize = 16 * 1024;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The URL or a header is not one a request can carry.
    #[error("the request is malformed: {0}")]
    Malformed(String),
    /// No answer in time.
    #[error("no answer within {} s", DEADLINE.as_secs())]
    Timeout,
    /// The connection failed (refused, reset, TLS).
    #[error("the connection failed: {0}")]
    Connection(String),
}

/// An answer: its status code and the start of its body, as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The first [`MAX_ANSWER`] bytes of the body, lossily decoded.
    pub body: String,
}

/// A client. Cheap to clone.
#[derive(Clone)]
pub struct Http {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Http")
    }
}

impl Http {
    /// A client trusting the system's root certificates (none when they cannot be read:
    /// then every `https` request fails, and says so).
    pub fn new() -> Self {
        let provider = || rustls::crypto::ring::default_provider();
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match builder.with_provider_and_native_roots(provider()) {
            Ok(builder) => builder,
            Err(error) => {
                tracing::warn!(target: super::TARGET, %error, "no system root certificates: https requests will fail");
                let config = rustls::ClientConfig::builder_with_provider(provider().into())
                    .with_safe_default_protocol_versions()
                    .map(|b| {
                        b.with_root_certificates(rustls::RootCertStore::empty())
                            .with_no_client_auth()
                    });
                match config {
                    Ok(config) => {
                        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
                    }
                    Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                        rustls::ClientConfig::builder()
                            .with_root_certificates(rustls::RootCertStore::empty())
                            .with_no_client_auth(),
                    ),
                }
            }
        };
        let connector = builder.https_or_http().enable_http1().build();
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// POSTs `body` as JSON to `url` with `headers`, and reads the answer.
    pub async fn post_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Answer, SendError> {
        let mut request = hyper::Request::post(url)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, USER_AGENT);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            // Never the header values: one may be a token.
            .map_err(|_| SendError::Malformed(format!("POST {}", redact_url(url))))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| SendError::Connection(error_chain(&e)))?;
            let status = response.status().as_u16();
            let body = match Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
            {
                Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
                Err(_) => String::new(),
            };
            Ok(Answer { status, body })
        };
        tokio::time::timeout(DEADLINE, exchange)
            .await
            .map_err(|_| SendError::Timeout)?
    }
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

/// What the node says it is.
const USER_AGENT: &str = concat!("otto-node/", env!("CARGO_PKG_VERSION"));

/// `url` without its query and user info, for logs (a Slack webhook URL's path is its
/// credential, so the caller logs only the host).
pub fn redact_url(url: &str) -> String {
    match url.parse::<hyper::Uri>() {
        Ok(uri) => format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("?"),
            uri.host().unwrap_or("?")
        ),
        Err(_) => "(not a URL)".to_owned(),
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}
