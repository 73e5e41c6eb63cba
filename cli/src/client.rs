//! The `otto` CLI's client of the node API: finds the node (from `--node` or the home's
//! `api.addr`), reads the bearer token from the home's `api.token`, and turns the API's
//! JSON errors into one-line errors.
//!
//! Plain HTTP to a loopback address: the API never leaves the machine, so there is no TLS
//! here (and no TLS library in the client).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use otto_node::api::ErrorBody;
use otto_node::home::Home;
use reqwest::StatusCode;
use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

/// How long a request without a wait may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Where the node is: the flags every command that talks to a node takes.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct NodeArgs {
    /// The node's API address, HOST:PORT or http://HOST:PORT [default: api.addr in the
    /// home].
    #[arg(long, value_name = "ADDR", env = "OTTO_NODE", global = true)]
    node: Option<NodeAddr>,
    /// The node's home, holding api.token (and api.addr) [default: ~/.otto].
    #[arg(long, value_name = "DIR", env = "OTTO_HOME", global = true)]
    home: Option<PathBuf>,
}

/// A node API address: `HOST:PORT` or `http://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeAddr(String);

/// A client of one node's API.
pub(crate) struct Client {
    base: String,
    token: Zeroizing<String>,
    http: Http,
}

/// An error answer of the API.
#[derive(Debug)]
pub(crate) struct ApiFailure {
    /// The error code, e.g. `plan_failed`.
    pub(crate) code: String,
    /// The one-line message.
    pub(crate) message: String,
    /// Longer text for people, if any.
    pub(crate) details: Option<String>,
}

/// A long-polled answer: the new value, or nothing new before the wait ran out.
pub(crate) enum Polled<T> {
    /// The value changed (or was asked for the first time), with its version tag.
    Changed(T, Option<String>),
    /// Nothing changed.
    Unchanged,
}

impl FromStr for NodeAddr {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        let rest = text.strip_prefix("http://").unwrap_or(text);
        if text.starts_with("https://") {
            bail!("the node API speaks plain HTTP on a loopback address; use http:// or HOST:PORT");
        }
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| anyhow!("expected HOST:PORT, got {text:?}"))?;
        if host.is_empty() || host.contains('/') {
            bail!("expected HOST:PORT, got {text:?}");
        }
        port.parse::<u16>()
            .map_err(|_| anyhow!("{port:?} is not a port number"))?;
        Ok(Self(format!("http://{rest}")))
    }
}

impl NodeArgs {
    /// The home these flags name.
    pub(crate) fn home(&self) -> anyhow::Result<Home> {
        Ok(Home::resolve(self.home.clone())?)
    }

    /// A client for the node these flags name.
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        let home = self.home()?;
        let token = home.read_api_token().with_context(|| {
            format!(
                "cannot read the API token in {} (pass --home or set OTTO_HOME to the node's home)",
                home.root().display()
            )
        })?;
        let base = match &self.node {
            Some(NodeAddr(base)) => base.clone(),
            None => {
                let addr = home.read_api_addr().map_err(|_| {
                    anyhow!(
                        "the node of {} is not running (no api.addr); start it with `otto-node start --home {}`",
                        home.root().display(),
                        home.root().display()
                    )
                })?;
                format!("http://{addr}")
            }
        };
        Client::new(base, token)
    }
}

impl Client {
    /// A client of the API at `base` (`http://HOST:PORT`) with this bearer token.
    pub(crate) fn new(base: String, token: Zeroizing<String>) -> anyhow::Result<Self> {
        let http = Http::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(TIMEOUT)
            .no_proxy()
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Self { base, token, http })
    }

    /// GET a JSON answer.
    pub(crate) fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.json(self.request(reqwest::Method::GET, path))
    }

    /// GET that waits up to `wait` seconds on the server for a change from version
    /// `known` (`If-None-Match`).
    pub(crate) fn poll<T: DeserializeOwned>(
        &self,
        path: &str,
        known: Option<&str>,
        wait: u64,
    ) -> anyhow::Result<Polled<T>> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut request = self
            .request(reqwest::Method::GET, &format!("{path}{sep}wait={wait}"))
            .timeout(TIMEOUT + Duration::from_secs(wait));
        if let Some(known) = known {
            request = request.header(IF_NONE_MATCH, known);
        }
        let response = self.send(request)?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Ok(Polled::Unchanged);
        }
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let response = check(response)?;
        let value = response
            .json()
            .context("the node's answer is not what was expected")?;
        Ok(Polled::Changed(value, etag))
    }

    /// GET with a long wait that the server bounds (`wait=` in `path`).
    pub(crate) fn get_waiting<T: DeserializeOwned>(
        &self,
        path: &str,
        wait: u64,
    ) -> anyhow::Result<T> {
        let request = self
            .request(reqwest::Method::GET, path)
            .timeout(TIMEOUT + Duration::from_secs(wait));
        self.json(request)
    }

    /// POST a JSON body, get a JSON answer.
    pub(crate) fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.json(self.request(reqwest::Method::POST, path).json(body))
    }

    /// POST raw bytes, get a JSON answer.
    pub(crate) fn post_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<T> {
        let request = self
            .request(reqwest::Method::POST, path)
            .header(CONTENT_TYPE, content_type)
            .body(body);
        self.json(request)
    }

    /// PUT raw bytes; no answer body.
    pub(crate) fn put_bytes(&self, path: &str, body: Vec<u8>) -> anyhow::Result<()> {
        let request = self
            .request(reqwest::Method::PUT, path)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body);
        check(self.send(request)?)?;
        Ok(())
    }

    /// DELETE; no answer body.
    pub(crate) fn delete(&self, path: &str) -> anyhow::Result<()> {
        check(self.send(self.request(reqwest::Method::DELETE, path))?)?;
        Ok(())
    }

    fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header(AUTHORIZATION, format!("Bearer {}", self.token.as_str()))
    }

    fn send(&self, request: RequestBuilder) -> anyhow::Result<Response> {
        request.send().map_err(|e| {
            if e.is_connect() {
                anyhow!(
                    "cannot reach the node at {} (is `otto-node start` running?)",
                    self.base
                )
            } else if e.is_timeout() {
                anyhow!("the node at {} did not answer in time", self.base)
            } else {
                anyhow!("request to the node at {} failed: {e}", self.base)
            }
        })
    }

    fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> anyhow::Result<T> {
        let response = check(self.send(request)?)?;
        response
            .json()
            .context("the node's answer is not what was expected")
    }
}

/// Turns an error answer into an [`ApiFailure`].
fn check(response: Response) -> anyhow::Result<Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().unwrap_or_default();
    let failure = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => ApiFailure {
            code: body.error.code,
            message: body.error.message,
            details: body.error.details,
        },
        Err(_) => ApiFailure {
            code: "http".into(),
            message: format!("the node answered {status}"),
            details: None,
        },
    };
    Err(failure.into())
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiFailure {}

/// The user name recorded as who started a run or approved a gate: `$USER`, else
/// `local`.
pub(crate) fn user_name() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "local".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses() {
        assert_eq!(
            "127.0.0.1:7000".parse::<NodeAddr>().unwrap(),
            NodeAddr("http://127.0.0.1:7000".into())
        );
        assert_eq!(
            "http://localhost:80/".parse::<NodeAddr>().unwrap(),
            NodeAddr("http://localhost:80".into())
        );
        assert_eq!(
            "[::1]:9".parse::<NodeAddr>().unwrap(),
            NodeAddr("http://[::1]:9".into())
        );
        for bad in ["127.0.0.1", "https://h:1", ":80", "h:port", "a/b:1"] {
            assert!(bad.parse::<NodeAddr>().is_err(), "{bad}");
        }
    }
}
