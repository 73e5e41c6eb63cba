//! [`ApiError`]: every failure of the API as one JSON shape,
//! `{"error": {"code": "...", "message": "..."}}`, with the HTTP status that fits.
//!
//! Internal failures (the store, the blob store, a task that died) answer 500 with a
//! message that says only that something went wrong inside the node; the cause goes to the
//! node's log, never to the client, so no path, secret or internal detail leaks.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::engine::EngineError;

/// The log target of API errors.
const TARGET: &str = "otto_node::api";

/// A failed API request: the status, a stable code for programs and a message for people.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Option<String>,
}

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong, in an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A stable code for programs, e.g. `not_found`.
    pub code: String,
    /// One line for people.
    pub message: String,
    /// More text for people, e.g. Ottofile diagnostics with the source lines underlined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 422 `invalid`: the request is well-formed but its content is not acceptable.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token (the token is in api.token in the node's home)",
        )
    }

    /// 500 `internal`: logs `cause` and tells the client nothing more.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(target: TARGET, error = %cause, "request failed inside the node");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the node failed to handle the request; its log has the cause",
        )
    }

    /// Adds longer text for people.
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The one-line message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_client_error() {
            tracing::debug!(target: TARGET, status = %self.status, code = self.code, message = %self.message, "request refused");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                details: self.details,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::UnknownRun(_)
            | EngineError::UnknownGate
            | EngineError::UnknownStage { .. } => Self::not_found(e.to_string()),
            EngineError::GateNotWaiting
            | EngineError::GateElsewhere { .. }
            | EngineError::Finished(_)
            | EngineError::NotRetryable(_)
            | EngineError::GroupFull { .. }
            | EngineError::Store(crate::store::Error::NotRetryable(_)) => {
                Self::conflict(e.to_string())
            }
            EngineError::NotApprover { .. } => {
                Self::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
            }
            other => Self::internal(other),
        }
    }
}

impl From<crate::store::Error> for ApiError {
    fn from(e: crate::store::Error) -> Self {
        use crate::store::Error as E;
        match e {
            E::UnknownRun(_) | E::UnknownStage { .. } | E::UnknownGate(_) => {
                Self::not_found(e.to_string())
            }
            E::RunFinished { .. } | E::StageFinished { .. } | E::GateClosed { .. } => {
                Self::conflict(e.to_string())
            }
            other => Self::internal(other),
        }
    }
}

impl From<crate::blobs::BlobError> for ApiError {
    fn from(e: crate::blobs::BlobError) -> Self {
        match e {
            crate::blobs::BlobError::NotFound(_) => Self::not_found(e.to_string()),
            other => Self::internal(other),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::internal(e)
    }
}
