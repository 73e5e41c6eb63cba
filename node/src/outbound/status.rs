//! Commit statuses back to the forge: for each run this node started from a repository
//! whose settings name a token secret (`otto-node repo add --token-secret`), one status per
//! stage (context `otto/<stage>`) and one for the run (context `otto`), posted to GitHub,
//! GitLab or Gitea as each changes.
//!
//! The reporter reads the engine's events and never writes back: a status that cannot be
//! posted is retried with backoff ([`super::retry`]) and then dropped with one log line;
//! a run never waits for it. Stages other nodes run are reported here too, when their
//! verified receipts end them. A node runs a stage of another org's run and reports
//! nothing: the node that started the run owns the commit's statuses.
//!
//! The token is read from the vault for each request, sent only in the forge's
//! authentication header to the repository's API URL, and never logged; an answer that
//! echoes it is masked before it is logged. A status carries the stage's name, its state
//! and the run id, nothing a step printed.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use super::http::Http;
use crate::engine::EngineEvent;
use crate::sources::{Forge, RepoConfig, Repos};
use crate::store::{RunId, RunState, Source, StageState, Store};
use crate::vault::Vault;

/// How many statuses of one run may wait to be posted; more are dropped (and logged).
const QUEUE: usize = 256;

/// The longest description a status carries (GitHub's limit).
const MAX_DESCRIPTION: usize = 140;

/// The context of a run's own status; a stage's is `otto/<stage>`.
pub const RUN_CONTEXT: &str = "otto";

/// Where a repository's statuses go: its forge, the API's base URL and the repository's
/// path there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The forge.
    pub forge: Forge,
    /// The API's base URL, without a trailing `/` (e.g. `https://api.github.com`).
    pub api: String,
    /// `owner/name` (GitLab: `group/.../name`).
    pub path: String,
}

/// How a stage or run stands, as a status says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Waiting: for a gate, another node, a free slot.
    Pending,
    /// Running.
    Running,
    /// It succeeded.
    Success,
    /// It failed.
    Failure,
    /// It was cancelled.
    Cancelled,
    /// Its condition did not hold.
    Skipped,
}

impl Outcome {
    /// A stage's state as a status; `None` for a stage not started.
    pub fn of_stage(state: StageState) -> Option<Self> {
        Some(match state {
            StageState::Pending => return None,
            StageState::WaitingGate | StageState::HandedOff => Self::Pending,
            StageState::Running => Self::Running,
            StageState::Succeeded => Self::Success,
            StageState::Failed => Self::Failure,
            StageState::Skipped => Self::Skipped,
            StageState::Cancelled => Self::Cancelled,
        })
    }

    /// A run's state as a status.
    pub fn of_run(state: RunState) -> Self {
        match state {
            RunState::Queued | RunState::Waiting => Self::Pending,
            RunState::Running => Self::Running,
            RunState::Succeeded => Self::Success,
            RunState::Failed => Self::Failure,
            RunState::Cancelled => Self::Cancelled,
        }
    }

    /// Whether nothing follows it.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Running)
    }

    /// The state as `forge` names it. GitHub and Gitea know pending, success, failure
    /// and error: running is pending, a skipped stage a success, a cancelled one an error.
    pub fn state(self, forge: Forge) -> &'static str {
        match (forge, self) {
            (Forge::Gitlab, Self::Pending) => "pending",
            (Forge::Gitlab, Self::Running) => "running",
            (Forge::Gitlab, Self::Success) => "success",
            (Forge::Gitlab, Self::Failure) => "failed",
            (Forge::Gitlab, Self::Cancelled) => "canceled",
            (Forge::Gitlab, Self::Skipped) => "skipped",
            (_, Self::Pending | Self::Running) => "pending",
            (_, Self::Success | Self::Skipped) => "success",
            (_, Self::Failure) => "failure",
            (_, Self::Cancelled) => "error",
        }
    }

    fn words(self) -> &'static str {
        match self {
            Self::Pending => "is waiting",
            Self::Running => "is running",
            Self::Success => "succeeded",
            Self::Failure => "failed",
            Self::Cancelled => "was cancelled",
            Self::Skipped => "was skipped",
        }
    }
}

/// One status to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `otto` or `otto/<stage>`.
    pub context: String,
    /// How it stands.
    pub outcome: Outcome,
    /// For people: what stands how, and the run.
    pub description: String,
}

impl Status {
    /// The status of stage `stage` of `run`.
    pub fn stage(run: &RunId, stage: &str, outcome: Outcome) -> Self {
        Self {
            context: format!("{RUN_CONTEXT}/{stage}"),
            outcome,
            description: describe(&format!("{stage} {}", outcome.words()), run),
        }
    }

    /// The status of `run` itself.
    pub fn run(run: &RunId, pipeline: &str, outcome: Outcome) -> Self {
        Self {
            context: RUN_CONTEXT.to_owned(),
            outcome,
            description: describe(&format!("{pipeline} {}", outcome.words()), run),
        }
    }
}

fn describe(what: &str, run: &RunId) -> String {
    let text = format!("{what} (run {run})");
    if text.chars().count() <= MAX_DESCRIPTION {
        return text;
    }
    let mut cut: String = text.chars().take(MAX_DESCRIPTION - 1).collect();
    cut.push('…');
    cut
}

impl Target {
    /// Where the statuses of `config` go; `Err` says why nowhere (logged once per run).
    pub fn of(config: &RepoConfig) -> Result<Self, String> {
        let (host, segments) = locate(&config.url)
            .ok_or_else(|| format!("cannot read a repository path out of {}", config.url))?;
        let api = match (&config.api_url, config.forge, host.as_deref()) {
            (Some(api), ..) => api.trim_end_matches('/').to_owned(),
            (None, Forge::Github, Some("github.com")) => "https://api.github.com".to_owned(),
            (None, Forge::Github, Some(host)) => format!("https://{host}/api/v3"),
            (None, Forge::Gitlab, Some(host)) => format!("https://{host}/api/v4"),
            (None, Forge::Gitea, Some(host)) => format!("https://{host}/api/v1"),
            (None, Forge::Generic, _) => {
                return Err("a generic forge has no status API".to_owned());
            }
            (None, _, None) => {
                return Err("the repository URL names no host: give --api-url".to_owned());
            }
        };
        let keep = match config.forge {
            Forge::Gitlab if host.is_some() => segments.len(),
            _ => 2,
        };
        if segments.len() < 2 {
            return Err(format!(
                "{} has no owner/name path for the forge's API",
                config.url
            ));
        }
        let path = segments[segments.len() - keep..].join("/");
        Ok(Self {
            forge: config.forge,
            api,
            path,
        })
    }

    /// The URL and JSON body that post `status` for `commit`.
    pub fn request(&self, commit: &str, status: &Status) -> (String, Vec<u8>) {
        let state = status.outcome.state(self.forge);
        let (url, body) = match self.forge {
            Forge::Gitlab => (
                format!(
                    "{}/projects/{}/statuses/{commit}",
                    self.api,
                    self.path.replace('/', "%2F")
                ),
                json!({
                    "state": state,
                    "name": status.context,
                    "description": status.description,
                }),
            ),
            _ => (
                format!("{}/repos/{}/statuses/{commit}", self.api, self.path),
                json!({
                    "state": state,
                    "context": status.context,
                    "description": status.description,
                }),
            ),
        };
        (url, body.to_string().into_bytes())
    }

    /// The headers that carry `token` (and, for GitHub, the API version).
    pub fn headers(&self, token: &str) -> Vec<(&'static str, String)> {
        match self.forge {
            Forge::Gitlab => vec![("private-token", token.to_owned())],
            Forge::Gitea => vec![("authorization", format!("token {token}"))],
            Forge::Github | Forge::Generic => vec![
                ("authorization", format!("Bearer {token}")),
                ("accept", "application/vnd.github+json".to_owned()),
                ("x-github-api-version", "2022-11-28".to_owned()),
            ],
        }
    }
}

/// The host (when the URL names one) and the path segments of a repository URL, `.git`
/// left off; `None` when a segment holds anything but `A-Z a-z 0-9 . _ -`.
fn locate(url: &str) -> Option<(Option<String>, Vec<String>)> {
    let (host, path) = if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = authority.rsplit('@').next().unwrap_or(authority);
        let host = (scheme != "file" && !host.is_empty()).then(|| host.to_owned());
        (host, path)
    } else if let Some((authority, path)) = url
        .split_once(':')
        .filter(|(authority, _)| !authority.contains('/'))
    {
        let host = authority.rsplit('@').next().unwrap_or(authority);
        (Some(host.to_owned()), path)
    } else {
        (None, url)
    };
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let fine = |s: &String| {
        s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if host.as_deref().is_some_and(|h| {
        h.is_empty()
            || !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    }) {
        return None;
    }
    segments.iter().all(fine).then_some((host, segments))
}

/// Checks an API URL a token will be sent to: `https`, or `http` to this machine only
/// (a token never crosses a network in the clear); no user info, query or fragment.
pub fn check_api_url(url: &str) -> Result<(), String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|_| format!("the API URL {url:?} is not a URL"))?;
    let host = uri.host().unwrap_or("");
    let local = matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1");
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if local => {}
        Some("http") => {
            return Err(format!(
                "the API URL {url:?} must be https (http only to 127.0.0.1 or localhost): the token would cross the network in the clear"
            ));
        }
        _ => return Err(format!("the API URL {url:?} must be an https URL")),
    }
    if host.is_empty()
        || url.contains('@')
        || uri.query().is_some()
        || url.contains('#')
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "the API URL {url:?} must be scheme://host[:port][/path], with no user, query or fragment"
        ));
    }
    Ok(())
}

/// What the reporter knows of one run.
enum Tracked {
    /// Its statuses go to a forge: the queue its poster reads, and what was queued last
    /// per context.
    Report {
        queue: mpsc::Sender<Status>,
        last: HashMap<String, Outcome>,
        pipeline: String,
    },
    /// Ended, its poster gone: what was queued last per context is kept, so a late event
    /// (a receipt verified after the run's end) posts nothing twice, and a retry starts a
    /// poster that says only what changed.
    Ended {
        last: HashMap<String, Outcome>,
        pipeline: String,
    },
    /// No statuses (not started here, not from a repository with a token, ...).
    Skip,
}

/// How many ended runs the reporter remembers (a few bytes per context each).
const ENDED_KEPT: usize = 1024;

/// Whether `status` repeats what was last said of its context for `run`, which ended.
fn said_already(runs: &HashMap<RunId, Tracked>, run: &RunId, status: &Status) -> bool {
    matches!(runs.get(run), Some(Tracked::Ended { last, .. })
        if last.get(&status.context) == Some(&status.outcome))
}

/// The parts the reporter needs.
pub(crate) struct Parts {
    pub(crate) store: Store,
    pub(crate) repos: Repos,
    pub(crate) vault: Vault,
    pub(crate) http: Http,
}

/// Reports the statuses of `events` until the engine is gone.
pub(crate) async fn report(parts: Parts, mut events: broadcast::Receiver<EngineEvent>) {
    let parts = Arc::new(parts);
    let mut runs: HashMap<RunId, Tracked> = HashMap::new();
    let mut ended: VecDeque<RunId> = VecDeque::new();
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Closed) => return,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(target: super::TARGET, missed, "the status reporter fell behind; it reads the store again");
                let ids: Vec<RunId> = runs.keys().copied().collect();
                for run in ids {
                    resync(&parts, &mut runs, run, false).await;
                }
                continue;
            }
        };
        match event {
            EngineEvent::Stage {
                run, stage, state, ..
            } => {
                let Some(outcome) = Outcome::of_stage(state) else {
                    continue;
                };
                let status = Status::stage(&run, &stage, outcome);
                if said_already(&runs, &run, &status) {
                    continue;
                }
                track(&parts, &mut runs, run).await;
                queue(&mut runs, run, status);
            }
            EngineEvent::Run { run, state } => {
                let outcome = Outcome::of_run(state);
                if let Some(Tracked::Ended { pipeline, .. }) = runs.get(&run)
                    && said_already(&runs, &run, &Status::run(&run, pipeline, outcome))
                {
                    continue;
                }
                track(&parts, &mut runs, run).await;
                if outcome.is_final() {
                    // Every stage's last word first (an event may have been missed),
                    // then the run's; then its poster ends once its queue is empty.
                    resync(&parts, &mut runs, run, true).await;
                    end(&mut runs, &mut ended, run);
                } else if let Some(Tracked::Report { pipeline, .. }) = runs.get(&run) {
                    let status = Status::run(&run, &pipeline.clone(), outcome);
                    queue(&mut runs, run, status);
                }
            }
            _ => {}
        }
    }
}

/// Starts tracking `run` when it is new: decides whether its statuses go anywhere and,
/// when they do, starts its poster.
async fn track(parts: &Arc<Parts>, runs: &mut HashMap<RunId, Tracked>, run: RunId) {
    let last = match runs.remove(&run) {
        Some(Tracked::Ended { last, .. }) => last,
        Some(tracked) => {
            runs.insert(run, tracked);
            return;
        }
        None => HashMap::new(),
    };
    let looked = {
        let parts = parts.clone();
        tokio::task::spawn_blocking(move || {
            let record = parts.store.run(&run).ok().flatten()?;
            let Source::Git { url, commit } = record.source else {
                return None;
            };
            if record.started_by.starts_with(crate::engine::OFFERED_BY) {
                return None;
            }
            let config = parts.repos.by_url(&url)?;
            let secret = config.token_secret.clone()?;
            Some((config, secret, commit, record.pipeline))
        })
        .await
        .ok()
        .flatten()
    };
    let Some((config, secret, commit, pipeline)) = looked else {
        runs.insert(run, Tracked::Skip);
        return;
    };
    let target = match Target::of(&config) {
        Ok(target) => target,
        Err(reason) => {
            tracing::warn!(target: super::TARGET, repo = %config.name, %run, %reason, "no commit statuses for this run");
            runs.insert(run, Tracked::Skip);
            return;
        }
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(post_all(
        parts.clone(),
        config.name.clone(),
        target,
        secret,
        commit,
        rx,
    ));
    // Bounded: an ended run's poster ends and at most ENDED_KEPT ended runs are kept; one
    // that never ends stays, as a few bytes.
    runs.insert(
        run,
        Tracked::Report {
            queue: tx,
            last,
            pipeline,
        },
    );
}

/// Ends `run`'s poster (once its queue is empty) and keeps what it said last.
fn end(runs: &mut HashMap<RunId, Tracked>, ended: &mut VecDeque<RunId>, run: RunId) {
    if let Some(Tracked::Report { last, pipeline, .. }) = runs.remove(&run) {
        runs.insert(run, Tracked::Ended { last, pipeline });
        ended.push_back(run);
        while ended.len() > ENDED_KEPT {
            if let Some(old) = ended.pop_front()
                && matches!(runs.get(&old), Some(Tracked::Ended { .. }))
            {
                runs.remove(&old);
            }
        }
    }
}

/// Queues `status` unless it says what the last one of its context said.
fn queue(runs: &mut HashMap<RunId, Tracked>, run: RunId, status: Status) {
    let Some(Tracked::Report { queue, last, .. }) = runs.get_mut(&run) else {
        return;
    };
    if last.get(&status.context) == Some(&status.outcome) {
        return;
    }
    last.insert(status.context.clone(), status.outcome);
    if let Err(mpsc::error::TrySendError::Full(status)) = queue.try_send(status) {
        tracing::warn!(target: super::TARGET, %run, context = %status.context, "too many statuses wait to be posted; this one is dropped");
    }
}

/// Queues each stage's status as the store has it (and, when `end`, the run's).
async fn resync(parts: &Arc<Parts>, runs: &mut HashMap<RunId, Tracked>, run: RunId, end: bool) {
    if !matches!(runs.get(&run), Some(Tracked::Report { .. })) {
        return;
    }
    let read = {
        let parts = parts.clone();
        tokio::task::spawn_blocking(move || {
            let stages = parts.store.stages(&run).ok()?;
            let record = parts.store.run(&run).ok().flatten()?;
            Some((stages, record))
        })
        .await
        .ok()
        .flatten()
    };
    let Some((stages, record)) = read else {
        return;
    };
    for stage in stages {
        if let Some(outcome) = Outcome::of_stage(stage.state) {
            queue(runs, run, Status::stage(&run, &stage.id, outcome));
        }
    }
    if end || !Outcome::of_run(record.state).is_final() {
        let status = Status::run(&run, &record.pipeline, Outcome::of_run(record.state));
        queue(runs, run, status);
    }
}

/// Posts the statuses of one run in order, each retried as [`super::retry`] says.
async fn post_all(
    parts: Arc<Parts>,
    repo: String,
    target: Target,
    secret: String,
    commit: String,
    mut statuses: mpsc::Receiver<Status>,
) {
    let mut warned = false;
    while let Some(status) = statuses.recv().await {
        let token = {
            let (vault, name) = (parts.vault.clone(), secret.clone());
            tokio::task::spawn_blocking(move || vault.get(&name))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
        };
        let Some(token) = token.and_then(|t| t.expose_str().map(str::to_owned)) else {
            if !warned {
                tracing::warn!(target: super::TARGET, %repo, secret = %secret, "the token secret is not in the vault (otto secrets set): no commit statuses");
                warned = true;
            }
            continue;
        };
        let token = zeroize::Zeroizing::new(token);
        let (url, body) = target.request(&commit, &status);
        let headers = target.headers(&token);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let sent = super::retry(&parts.http, &url, &headers, body, &token).await;
        match sent {
            Ok(answer) => {
                tracing::debug!(target: super::TARGET, %repo, context = %status.context, state = status.outcome.state(target.forge), status = answer.status, "commit status posted");
            }
            Err(failure) => {
                tracing::warn!(target: super::TARGET, %repo, context = %status.context, %failure, "a commit status could not be posted; the run goes on");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, forge: Forge, api: Option<&str>) -> RepoConfig {
        RepoConfig {
            name: "app".into(),
            url: url.into(),
            forge,
            branch: "main".into(),
            poll_secs: None,
            api_url: api.map(str::to_owned),
            token_secret: Some("TOKEN".into()),
            added_at: 0,
        }
    }

    #[test]
    fn targets_come_from_the_repository_url_or_the_api_url() {
        let github = Target::of(&config(
            "https://github.com/acme/app.git",
            Forge::Github,
            None,
        ))
        .unwrap();
        assert_eq!(github.api, "https://api.github.com");
        assert_eq!(github.path, "acme/app");
        let scp = Target::of(&config("git@github.com:acme/app.git", Forge::Github, None)).unwrap();
        assert_eq!(scp.path, "acme/app");
        let gitlab = Target::of(&config(
            "https://gitlab.example/group/sub/app.git",
            Forge::Gitlab,
            None,
        ))
        .unwrap();
        assert_eq!(gitlab.api, "https://gitlab.example/api/v4");
        assert_eq!(gitlab.path, "group/sub/app");
        let local = Target::of(&config(
            "file:///tmp/x/acme/app.git",
            Forge::Gitea,
            Some("http://127.0.0.1:3000/api/v1/"),
        ))
        .unwrap();
        assert_eq!(local.api, "http://127.0.0.1:3000/api/v1");
        assert_eq!(local.path, "acme/app");
        assert!(Target::of(&config("file:///tmp/app.git", Forge::Gitea, None)).is_err());
        assert!(Target::of(&config("https://h/a/b", Forge::Generic, None)).is_err());
        // A path segment that would change the request's path is refused.
        for bad in [
            "https://github.com/acme/a%2F..",
            "https://github.com/acme/a?b",
            "https://github.com/ac me/app",
        ] {
            assert!(
                Target::of(&config(bad, Forge::Github, None)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn each_forge_gets_its_own_request() {
        let run: RunId = "01JABCDEFGHJKMNPQRSTVWXYZ0".parse().unwrap();
        let commit = "a".repeat(40);
        let status = Status::stage(&run, "Deploy staging", Outcome::Cancelled);
        let github = Target {
            forge: Forge::Github,
            api: "https://api.github.com".into(),
            path: "acme/app".into(),
        };
        let (url, body) = github.request(&commit, &status);
        assert_eq!(
            url,
            format!("https://api.github.com/repos/acme/app/statuses/{commit}")
        );
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["state"], "error");
        assert_eq!(body["context"], "otto/Deploy staging");
        assert_eq!(
            body["description"],
            format!("Deploy staging was cancelled (run {run})")
        );
        assert_eq!(
            github.headers("t0k")[0],
            ("authorization", "Bearer t0k".to_owned())
        );
        let gitlab = Target {
            forge: Forge::Gitlab,
            api: "https://gitlab.example/api/v4".into(),
            path: "group/app".into(),
        };
        let (url, body) = gitlab.request(&commit, &status);
        assert_eq!(
            url,
            format!("https://gitlab.example/api/v4/projects/group%2Fapp/statuses/{commit}")
        );
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["state"], "canceled");
        assert_eq!(body["name"], "otto/Deploy staging");
        assert_eq!(gitlab.headers("t")[0], ("private-token", "t".to_owned()));
        let gitea = Target {
            forge: Forge::Gitea,
            ..github
        };
        assert_eq!(
            gitea.headers("t")[0],
            ("authorization", "token t".to_owned())
        );
        let long = Status::run(&run, &"x".repeat(300), Outcome::Success);
        assert_eq!(long.description.chars().count(), MAX_DESCRIPTION);
    }

    #[test]
    fn a_token_goes_only_over_https_or_to_this_machine() {
        for ok in [
            "https://api.github.com",
            "https://gitlab.example:8443/api/v4",
            "http://127.0.0.1:8080",
            "http://localhost/api",
        ] {
            check_api_url(ok).unwrap();
        }
        for bad in [
            "http://api.github.com",
            "ftp://h",
            "https://user:pw@h",
            "https://h/?x=1",
            "https://h/#f",
            "not a url",
            "file:///etc",
        ] {
            assert!(check_api_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn states_map_to_each_forge() {
        assert_eq!(Outcome::Running.state(Forge::Github), "pending");
        assert_eq!(Outcome::Running.state(Forge::Gitlab), "running");
        assert_eq!(Outcome::Skipped.state(Forge::Gitea), "success");
        assert_eq!(Outcome::Failure.state(Forge::Gitlab), "failed");
        assert_eq!(Outcome::of_stage(StageState::Pending), None);
        assert_eq!(
            Outcome::of_stage(StageState::HandedOff),
            Some(Outcome::Pending)
        );
        assert!(Outcome::of_run(RunState::Cancelled).is_final());
    }
}
