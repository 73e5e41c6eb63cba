//! The node's web UI, served under `/ui` on the API address.
//!
//! Server-rendered HTML with one small script (`/ui/assets/otto.js`) for live updates;
//! the stylesheet and the script are compiled into the binary, so the UI needs no other
//! server, no CDN and no network. `docs/ui.md` describes the pages and the security model,
//! `docs/architecture.md` why the front end is built this way.
//!
//! # Signing in
//!
//! `otto ui` calls `POST /v1/ui/logins` with the API's bearer token and gets a one-time
//! URL `http://<api addr>/ui/login/<token>` (valid 5 minutes, usable once). Opening it
//! starts a session: a cookie `otto_ui` (`HttpOnly; SameSite=Strict; Path=/ui`) naming an
//! in-memory session that lasts 12 hours or until the node restarts. A session acts as
//! the node's operator, with the same power as the bearer token.
//!
//! # Rules every page keeps
//!
//! - Without a session every `/ui` page, and `/ui/events`, answers 401 with a page that
//!   says to run `otto ui`.
//! - Every POST needs the session's CSRF token (form field `_csrf` or header
//!   `X-Otto-CSRF`), else 403; a POST whose `Origin` is present and not the node's own is
//!   refused as well.
//! - Every response carries a Content-Security-Policy without inline scripts or styles,
//!   `X-Frame-Options: DENY`, `Referrer-Policy: same-origin` and `nosniff`; pages are
//!   `Cache-Control: no-store`.
//! - Everything shown is escaped, and nothing shown holds a secret value: pages read the
//!   same store records as the API (log lines are masked before they are stored).

mod explain;
mod graph;
mod html;
mod mesh;
mod runs;
mod session;
mod sse;
mod stage;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, HOST, LOCATION, ORIGIN,
    REFERRER_POLICY, SET_COOKIE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use crate::api::{ApiError, ApiState};

pub use session::{LOGIN_TTL, MAX_LOGINS, SESSION_TTL};

/// The log target of the UI.
const TARGET: &str = "otto_node::ui";

/// The session cookie's name.
pub const COOKIE_NAME: &str = "otto_ui";

/// The largest form a POST under `/ui` may send (an Ottofile pasted into Explain).
pub const MAX_FORM_BYTES: usize = 512 * 1024;

/// The Content-Security-Policy of every `/ui` response.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// The stylesheet, compiled in.
const CSS: &str = include_str!("assets/otto.css");

/// The script, compiled in.
const JS: &str = include_str!("assets/otto.js");

/// `POST /v1/ui/logins` answers this (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LoginCreated {
    /// The one-time URL that signs a browser in.
    pub url: String,
    /// How long the URL works, in seconds.
    pub expires_in_secs: u64,
}

/// The UI's shared state. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Ui(Arc<UiParts>);

pub(crate) struct UiParts {
    /// The API's state: store, engine, membership, home.
    pub(crate) api: ApiState,
    /// The node's own origin, `http://<api addr>`.
    origin: String,
    /// The same origin spelt `http://localhost:<port>` when the address is loopback.
    local_origin: Option<String>,
    /// Logins and sessions.
    sessions: session::Sessions,
}

/// The signed-in session of a request, put there by the session check.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    /// The session's CSRF token.
    pub(crate) csrf: String,
}

impl std::ops::Deref for Ui {
    type Target = UiParts;

    fn deref(&self) -> &UiParts {
        &self.0
    }
}

/// The UI's routes, to merge into the API's router: `/ui/*` and `POST /v1/ui/logins`
/// (behind the API's bearer token). `addr` is the API's listening address, the origin of
/// the login URLs and the only origin POSTs may come from.
pub fn router(api: ApiState, addr: SocketAddr) -> Router {
    let local_origin = addr
        .ip()
        .is_loopback()
        .then(|| format!("http://localhost:{}", addr.port()));
    let ui = Ui(Arc::new(UiParts {
        api: api.clone(),
        origin: format!("http://{addr}"),
        local_origin,
        sessions: session::Sessions::default(),
    }));
    let logins = Router::new()
        .route("/v1/ui/logins", post(create_login))
        .route_layer(middleware::from_fn_with_state(
            api,
            crate::api::authenticate,
        ));
    let pages = Router::new()
        .route("/ui/runs", get(runs::list))
        .route("/ui/runs/{run}", get(runs::show))
        .route("/ui/runs/{run}/gates/{stage}/approve", post(runs::approve))
        .route("/ui/runs/{run}/retry", post(runs::retry))
        .route("/ui/runs/{run}/cancel", post(runs::cancel))
        .route("/ui/runs/{run}/stages/{stage}", get(stage::show))
        .route(
            "/ui/runs/{run}/stages/{stage}/attestation",
            get(stage::attestation),
        )
        .route("/ui/runs/{run}/artifacts/{digest}", get(stage::artifact))
        .route("/ui/mesh", get(mesh::show))
        .route("/ui/approvals", post(mesh::approve))
        .route("/ui/explain", get(explain::form).post(explain::plan))
        .route("/ui/events", get(sse::events))
        .route("/ui/logout", post(logout))
        .route("/ui/{*rest}", get(not_found).post(not_found))
        .route_layer(middleware::from_fn_with_state(ui.clone(), require_session));
    let open = Router::new()
        .route("/ui", get(to_runs))
        .route("/ui/", get(to_runs))
        .route("/ui/login/{token}", get(login))
        .route("/ui/assets/otto.css", get(css))
        .route("/ui/assets/otto.js", get(js));
    logins
        .merge(pages.merge(open).layer(middleware::from_fn(headers)))
        .layer(middleware::from_fn(log_request))
        .with_state(ui)
}

/// A failed UI request: a status and one line for people, shown as a small page.
#[derive(Debug)]
pub(crate) struct UiError {
    status: StatusCode,
    message: String,
}

impl UiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(target: TARGET, error = %cause, "ui request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "something went wrong inside the node; its log says what",
        )
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error").to_owned();
        html_response(
            self.status,
            html::notice(&title, &self.message, "Go back to the runs: /ui/runs"),
        )
    }
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        let message = match e.status() {
            StatusCode::NOT_FOUND => "not found",
            StatusCode::CONFLICT => "that is no longer possible (it changed meanwhile)",
            StatusCode::FORBIDDEN => "not allowed",
            s if s.is_client_error() => "the request was not accepted",
            _ => "something went wrong inside the node; its log says what",
        };
        Self::new(e.status(), message)
    }
}

impl UiError {
    /// `message` with the status the API gives the same error: a server error is logged
    /// and shown as the generic internal page.
    fn like_api(message: String, status: StatusCode) -> Self {
        if status.is_server_error() {
            Self::internal(message)
        } else {
            Self::new(status, message)
        }
    }
}

impl From<crate::store::Error> for UiError {
    fn from(e: crate::store::Error) -> Self {
        let message = e.to_string();
        Self::like_api(message, ApiError::from(e).status())
    }
}

impl From<crate::engine::EngineError> for UiError {
    fn from(e: crate::engine::EngineError) -> Self {
        let message = e.to_string();
        Self::like_api(message, ApiError::from(e).status())
    }
}

impl From<tokio::task::JoinError> for UiError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::internal(e)
    }
}

/// Runs blocking store work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, UiError> + Send + 'static,
) -> Result<T, UiError> {
    tokio::task::spawn_blocking(f).await?
}

/// A page as a response.
pub(crate) fn html_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// A 303 to `to`.
pub(crate) fn see_other(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

impl Ui {
    /// The frame of a page for this node.
    pub(crate) fn frame<'a>(
        &'a self,
        title: &'a str,
        nav: &'a str,
        current: &'a Current,
    ) -> html::Frame<'a> {
        html::Frame {
            title,
            nav,
            node: &self.api.node.name,
            org: &self.api.node.org,
            csrf: Some(&current.csrf),
            run: None,
            etag: None,
            live: false,
        }
    }
}

/// `POST /v1/ui/logins`: a one-time login URL.
async fn create_login(State(ui): State<Ui>) -> (StatusCode, axum::Json<LoginCreated>) {
    let token = ui.sessions.new_login(Instant::now());
    tracing::info!(target: TARGET, "login url issued");
    (
        StatusCode::CREATED,
        axum::Json(LoginCreated {
            url: format!("{}/ui/login/{token}", ui.origin),
            expires_in_secs: LOGIN_TTL.as_secs(),
        }),
    )
}

/// `GET /ui/login/{token}`: trades the token for a session cookie.
async fn login(State(ui): State<Ui>, Path(token): Path<String>) -> Response {
    let Some(started) = ui.sessions.redeem(&token, Instant::now()) else {
        return html_response(
            StatusCode::FORBIDDEN,
            html::notice(
                "Sign-in link not valid",
                "This sign-in link is not valid: it was already used or it expired.",
                "Run `otto ui` for a new one.",
            ),
        );
    };
    tracing::info!(target: TARGET, "ui session started");
    let mut response = see_other("/ui/runs");
    let cookie = format!(
        "{COOKIE_NAME}={}; HttpOnly; SameSite=Strict; Path=/ui; Max-Age={}",
        started.id,
        SESSION_TTL.as_secs()
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

/// `POST /ui/logout`: ends the session.
async fn logout(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        ui.sessions.end(id);
    }
    let mut response = html_response(
        StatusCode::OK,
        html::notice(
            "Signed out",
            "You are signed out of this node's UI.",
            "Run `otto ui` to sign in again.",
        ),
    );
    let cookie = format!("{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

async fn to_runs() -> Response {
    see_other("/ui/runs")
}

async fn not_found() -> UiError {
    UiError::not_found("there is no such page")
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

fn asset(kind: &'static str, text: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(kind)),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        text,
    )
        .into_response()
}

/// The session check: a valid session cookie, and for a POST the right Origin and CSRF
/// token. Puts the [`Current`] session in the request's extensions.
async fn require_session(State(ui): State<Ui>, request: Request, next: Next) -> Response {
    let now = Instant::now();
    let Some(session) = session_cookie(request.headers()).and_then(|id| ui.sessions.get(id, now))
    else {
        return html_response(
            StatusCode::UNAUTHORIZED,
            html::notice(
                "Signed out",
                "You are not signed in to this node's UI (a restart of the node ends every session).",
                "Run `otto ui` on the node's machine for a sign-in link.",
            ),
        );
    };
    let request = if request.method() == Method::POST {
        if let Some(origin) = request.headers().get(ORIGIN) {
            let ok = origin
                .to_str()
                .is_ok_and(|o| o == ui.origin || ui.local_origin.as_deref() == Some(o));
            if !ok {
                return forbidden("this request came from another site");
            }
        }
        let (parts, body) = request.into_parts();
        let Ok(bytes) = to_bytes(body, MAX_FORM_BYTES).await else {
            return html_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                html::notice("Too large", "The form is too large.", "Send less text."),
            );
        };
        let presented = parts
            .headers
            .get("x-otto-csrf")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| form_field(&bytes, "_csrf"));
        if !presented.is_some_and(|p| session::same_secret(&p, &session.csrf)) {
            return forbidden("CSRF token missing or wrong");
        }
        Request::from_parts(parts, Body::from(bytes))
    } else {
        request
    };
    let mut request = request;
    request
        .extensions_mut()
        .insert(Current { csrf: session.csrf });
    next.run(request).await
}

fn forbidden(message: &str) -> Response {
    html_response(
        StatusCode::FORBIDDEN,
        html::notice(
            "Forbidden",
            message,
            "Reload the page and try again; if you signed out, run `otto ui`.",
        ),
    )
}

/// The security headers of every `/ui` response; `no-store` on everything but assets.
async fn headers(request: Request, next: Next) -> Response {
    let is_asset = request.uri().path().starts_with("/ui/assets/");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if !is_asset {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // Login paths carry a token: never log it.
    let shown = if path.starts_with("/ui/login/") {
        "/ui/login/…".to_owned()
    } else {
        path
    };
    let host = request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let response = next.run(request).await;
    tracing::debug!(target: TARGET, %method, path = %shown, %host, status = %response.status(), "request");
    response
}

/// The session id in the request's cookies.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// The first value of `name` in an `application/x-www-form-urlencoded` body.
pub(crate) fn form_field(body: &[u8], name: &str) -> Option<String> {
    body.split(|b| *b == b'&').find_map(|pair| {
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        (url_decode(k)? == name).then(|| url_decode(v)).flatten()
    })
}

/// Decodes one form-encoded component: `+` is a space, `%XX` a byte; `None` when the
/// result is not UTF-8 or an escape is malformed.
fn url_decode(bytes: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests;
