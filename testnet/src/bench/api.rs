//! A minimal client of a node's HTTP API for the bench: `GET` with the node's token, and
//! the run watch (`If-None-Match` with `wait=N`), so an observer learns of a change as
//! soon as the node records it, without starting an `otto` process per look.

#![warn(clippy::unwrap_used)]

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::Error;

/// The most of an answer that is read.
const MAX_ANSWER: u64 = 16 * 1024 * 1024;

/// How long a watch asks the node to hold its answer, in seconds.
const WATCH_S: u64 = 5;

/// A node's API: its address and token, read from its home.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    addr: String,
    token: String,
}

/// An answer: its status code, its `ETag` and its body as JSON (null when empty).
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) etag: Option<String>,
    pub(crate) body: Value,
}

impl Api {
    /// The API of the node whose home is `home` (it must run: `api.addr` is there).
    pub(crate) fn of_home(home: &Path) -> Result<Self, Error> {
        let read = |name: &str| {
            let path = home.join(name);
            fs::read_to_string(&path)
                .map(|t| t.trim().to_owned())
                .map_err(|source| Error::Io {
                    what: format!("reading {}", path.display()),
                    source,
                })
        };
        Ok(Self {
            addr: read("api.addr")?,
            token: read("api.token")?,
        })
    }

    /// `GET /v1/runs/RUN`: the run and its stages, or `None` when the node has no record
    /// of it.
    pub(crate) fn run(&self, run: &str) -> Result<Option<Value>, Error> {
        let answer = self.get(&format!("/v1/runs/{run}"), None, 0)?;
        match answer.status {
            200 => Ok(Some(answer.body)),
            404 => Ok(None),
            status => Err(self.unexpected(run, status)),
        }
    }

    /// Waits (at most [`WATCH_S`] seconds) for run `run` to differ from the version
    /// `etag`; its new version, or `None` if it did not change.
    pub(crate) fn watch(&self, run: &str, etag: &str) -> Result<Option<Answer>, Error> {
        let answer = self.get(
            &format!("/v1/runs/{run}?wait={WATCH_S}"),
            Some(etag),
            WATCH_S,
        )?;
        match answer.status {
            200 => Ok(Some(answer)),
            304 => Ok(None),
            status => Err(self.unexpected(run, status)),
        }
    }

    /// The run's current version with its `ETag`, or `None` when the node has no record
    /// of it.
    pub(crate) fn version(&self, run: &str) -> Result<Option<Answer>, Error> {
        let answer = self.get(&format!("/v1/runs/{run}"), None, 0)?;
        match answer.status {
            200 => Ok(Some(answer)),
            404 => Ok(None),
            status => Err(self.unexpected(run, status)),
        }
    }

    /// The log of stage `stage` (a name without spaces) of run `run`, its lines' texts
    /// joined with newlines.
    pub(crate) fn logs(&self, run: &str, stage: &str) -> Result<String, Error> {
        let answer = self.get(&format!("/v1/runs/{run}/logs?stage={stage}"), None, 0)?;
        if answer.status != 200 {
            return Err(self.unexpected(run, answer.status));
        }
        let lines = answer.body["lines"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        Ok(lines
            .iter()
            .filter_map(|l| l["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"))
    }

    /// One `GET` of `path` over a new connection, waiting at most `hold` seconds more
    /// than usual for the answer.
    fn get(&self, path: &str, etag: Option<&str>, hold: u64) -> Result<Answer, Error> {
        let fail = |problem: String| Error::Output {
            command: format!("GET http://{}{path}", self.addr),
            problem,
        };
        let limit = Duration::from_secs(10 + hold);
        let mut stream = TcpStream::connect(&self.addr).map_err(|e| fail(e.to_string()))?;
        stream
            .set_read_timeout(Some(limit))
            .and_then(|()| stream.set_write_timeout(Some(limit)))
            .and_then(|()| stream.set_nodelay(true))
            .map_err(|e| fail(e.to_string()))?;
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n",
            self.addr, self.token
        );
        if let Some(etag) = etag {
            request.push_str(&format!("If-None-Match: {etag}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
        let mut raw = Vec::new();
        stream
            .take(MAX_ANSWER)
            .read_to_end(&mut raw)
            .map_err(|e| fail(e.to_string()))?;
        parse_answer(&raw).map_err(fail)
    }

    fn unexpected(&self, run: &str, status: u16) -> Error {
        Error::Output {
            command: format!("GET http://{}/v1/runs/{run}", self.addr),
            problem: format!("status {status}"),
        }
    }
}

/// Reads an HTTP/1.1 answer: its status line, headers and body (whole or chunked).
fn parse_answer(raw: &[u8]) -> Result<Answer, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the answer has no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let rest = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or("the answer has no status line")?;
    let mut etag = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("etag") {
            etag = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).map_err(|e| format!("the body is not JSON: {e}"))?
    };
    Ok(Answer { status, etag, body })
}

/// The data of a chunked body.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk has no size line")?;
        let size = String::from_utf8_lossy(&rest[..line_end]);
        let size = size.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|e| format!("chunk size: {e}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let data = rest.get(..size).ok_or("a chunk is cut short")?;
        out.extend_from_slice(data);
        rest = rest.get(size + 2..).ok_or("a chunk is cut short")?;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_read_whole_or_chunked() {
        let whole = b"HTTP/1.1 200 OK\r\nETag: \"ab\"\r\ncontent-length: 8\r\n\r\n{\"a\": 1}";
        let answer = parse_answer(whole).unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.etag.as_deref(), Some("\"ab\""));
        assert_eq!(answer.body["a"], 1);

        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n4\r\n: 2}\r\n0\r\n\r\n";
        assert_eq!(parse_answer(chunked).unwrap().body["a"], 2);

        let unchanged = b"HTTP/1.1 304 Not Modified\r\n\r\n";
        let answer = parse_answer(unchanged).unwrap();
        assert_eq!(answer.status, 304);
        assert!(answer.body.is_null());
        assert!(parse_answer(b"HTTP/1.1 200").is_err());
    }
}
