//! The errors that stop the agent itself (not a step).

use std::io;
use std::path::PathBuf;

/// Why the agent could not do its work. A failing step is not an error of the agent: it is
/// reported in the [`crate::protocol::RunResult`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The node's socket could not be reached.
    #[error("cannot connect to {}: {source}", path.display())]
    Connect {
        /// The socket's path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// An HTTP exchange with the node failed.
    #[error("{request}: {source}")]
    Http {
        /// The request, e.g. `GET /job`.
        request: String,
        /// Why.
        source: hyper::Error,
    },
    /// The node answered with a status outside 2xx.
    #[error("{request}: the node answered {status}: {body}")]
    Status {
        /// The request.
        request: String,
        /// The status code.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// A body could not be read, or was larger than allowed.
    #[error("{request}: {message}")]
    Body {
        /// The request.
        request: String,
        /// What went wrong.
        message: String,
    },
    /// A JSON body could not be decoded.
    #[error("{request}: bad JSON: {source}")]
    Json {
        /// The request.
        request: String,
        /// Why.
        source: serde_json::Error,
    },
    /// A blob's bytes do not match its digest.
    #[error("blob {expected} does not match its digest (its bytes hash to {actual})")]
    Digest {
        /// The digest asked for.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// A local file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}
