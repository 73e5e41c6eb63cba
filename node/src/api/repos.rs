//! Repositories and what starts runs from them: `/v1/repos` (add, list, remove, look
//! now), the forges' webhooks at `/hooks/{forge}/{name}`, and the poller.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use otto_pipeline::Facts;
use otto_pipeline::plan::{Event, EventKind, Started};

use super::types::{
    Looked, NotTriggered, RepoAdd, RepoList, RepoView, TriggeredRun, WebhookAccepted,
};
use super::{ApiError, ApiState, Body as RawBody, Json, Path, blocking, now_ms};
use crate::sources::forge::{self, Hint};
use crate::sources::{Forge, RepoConfig, RepoError, check_ref_name, name_from_url};
use crate::store::Source;

/// The largest webhook body (GitHub's push payloads with many commits run to a few
/// hundred kilobytes).
pub(super) const MAX_WEBHOOK_BODY: usize = 1 << 20;

/// How often the poller wakes to see which repository is due.
const POLL_TICK: Duration = Duration::from_secs(2);

/// How often schedules are looked at (cron has minute resolution: a schedule starts its
/// run within this much after it comes due).
const SCHEDULE_EVERY: Duration = Duration::from_secs(10);

impl From<RepoError> for ApiError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::Unknown(_) => Self::not_found(e.to_string()),
            RepoError::Exists(_) => Self::conflict(e.to_string()),
            RepoError::BadName(_) | RepoError::BadUrl(_) | RepoError::Invalid(_) => {
                Self::invalid(e.to_string())
            }
            RepoError::Git(_) => Self::new(StatusCode::BAD_GATEWAY, "git_failed", e.to_string()),
            RepoError::Io { .. } => Self::internal(e),
        }
    }
}

fn view(config: RepoConfig, secret: Option<String>) -> RepoView {
    RepoView {
        webhook_path: format!("/hooks/{}/{}", config.forge.name(), config.name),
        config,
        secret,
    }
}

/// `POST /v1/repos`: adds a repository, makes its mirror and fetches it.
pub(super) async fn add(
    State(state): State<ApiState>,
    Json(request): Json<RepoAdd>,
) -> Result<(StatusCode, Json<RepoView>), ApiError> {
    let forge = match request.forge.as_deref() {
        None => Forge::Generic,
        Some(name) => Forge::from_name(name).ok_or_else(|| {
            ApiError::invalid(format!(
                "unknown forge {name:?}: github, gitlab, gitea or generic"
            ))
        })?,
    };
    let name = match request.name {
        Some(name) => name,
        None => name_from_url(&request.url).ok_or_else(|| {
            ApiError::invalid("cannot name the repository after its URL; give a name")
        })?,
    };
    if let Some(secret) = &request.token_secret {
        crate::vault::validate_name(secret).map_err(|e| ApiError::invalid(e.to_string()))?;
    }
    let made = request.secret.is_none();
    let secret = request.secret.unwrap_or_else(|| {
        let mut bytes = [0u8; 32];
        crate::daemon::fill_random(&mut bytes);
        hex::encode(bytes)
    });
    let config = RepoConfig {
        name,
        url: request.url,
        forge,
        branch: request.branch.unwrap_or_default(),
        poll_secs: request.poll_secs,
        api_url: request.api_url,
        token_secret: request.token_secret,
        added_at: now_ms(),
    };
    let config = state.repos.add(config, secret.as_bytes()).await?;
    tracing::info!(target: super::TARGET, repo = %config.name, url = %config.url, "repository added");
    Ok((
        StatusCode::CREATED,
        Json(view(config, made.then_some(secret))),
    ))
}

/// `GET /v1/repos`.
pub(super) async fn list(State(state): State<ApiState>) -> Result<Json<RepoList>, ApiError> {
    let repos = state.repos.clone();
    let list = blocking(move || Ok(repos.list()?)).await?;
    Ok(Json(RepoList {
        repos: list.into_iter().map(|c| view(c, None)).collect(),
    }))
}

/// `DELETE /v1/repos/{name}`.
pub(super) async fn remove(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<RepoView>, ApiError> {
    let config = state.repos.remove(&name).await?;
    tracing::info!(target: super::TARGET, repo = %config.name, "repository removed");
    Ok(Json(view(config, None)))
}

/// `POST /v1/repos/{name}/fetch`: fetch now and start runs for what changed (what a local
/// git hook calls).
pub(super) async fn fetch(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<Looked>, ApiError> {
    Ok(Json(look(&state, &name, Look::Fetch).await?))
}

/// How to look for changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Look {
    /// Ask the remote with `git ls-remote` first; fetch only when something moved.
    Poll,
    /// Fetch, then compare.
    Fetch,
    /// Fetch the head of pull request `number` too, and run it for its target `base`.
    PullRequest { number: u64, base: String },
}

/// Looks for changes in repository `name` and starts a run for each changed branch or
/// tag whose pipeline a trigger starts. Under the repository's lock: a change is acted on
/// once, whoever saw it first.
pub(crate) async fn look(state: &ApiState, name: &str, how: Look) -> Result<Looked, ApiError> {
    let locked = state.repos.lock(name).await?;
    let mirror = locked.mirror();
    let mut seen = locked.seen()?;
    if how == Look::Poll {
        let remote = mirror.ls_remote().await.map_err(RepoError::from)?;
        let wanted = |r: &&String| r.starts_with("refs/heads/") || r.starts_with("refs/tags/");
        let known: Vec<_> = seen.refs.iter().filter(|(r, _)| wanted(r)).collect();
        let now: Vec<_> = remote.iter().filter(|(r, _)| wanted(r)).collect();
        if known == now {
            return Ok(Looked::default());
        }
    }
    let pull = match &how {
        Look::PullRequest { number, base } => {
            if !check_ref_name(base) {
                return Err(ApiError::invalid(
                    "the pull request's target is not a branch name",
                ));
            }
            Some((
                forge::pull_request_ref(locked.config.forge, *number),
                base.clone(),
            ))
        }
        _ => None,
    };
    let extra: Vec<String> = pull.iter().map(|(r, _)| r.clone()).collect();
    mirror.fetch(&extra).await.map_err(RepoError::from)?;
    let now = mirror.refs().await.map_err(RepoError::from)?;
    let changed = crate::sources::changed(&seen.refs, &now);
    // Recorded before runs start: a crash in between loses a run rather than starting
    // one twice.
    seen.refs = now;
    locked.record(&seen)?;
    let config = locked.config.clone();
    drop(locked);
    let mut looked = Looked::default();
    for (reference, commit) in changed {
        let event = if let Some(branch) = reference.strip_prefix("refs/heads/") {
            Event {
                kind: EventKind::Push,
                branch: Some(branch.to_owned()),
                tag: None,
            }
        } else if let Some(tag) = reference.strip_prefix("refs/tags/") {
            Event {
                kind: EventKind::Tag,
                branch: None,
                tag: Some(tag.to_owned()),
            }
        } else if let Some((_, base)) = pull.as_ref().filter(|(r, _)| *r == reference) {
            Event {
                kind: EventKind::PullRequest,
                branch: Some(base.clone()),
                tag: None,
            }
        } else {
            continue;
        };
        if !event
            .branch
            .iter()
            .chain(&event.tag)
            .all(|n| check_ref_name(n))
        {
            looked.skipped.push(NotTriggered {
                reference,
                commit,
                reason: "the ref's name is not one Otto starts runs for".into(),
            });
            continue;
        }
        match start(state, &config, &event, &commit).await {
            Ok(Some(run)) => looked.runs.push(TriggeredRun {
                run: run.0,
                pipeline: run.1,
                event: event.kind.name().to_owned(),
                reference,
                commit,
            }),
            Ok(None) => looked.skipped.push(NotTriggered {
                reference,
                commit,
                reason: format!("no trigger starts the pipeline for {}", describe(&event)),
            }),
            Err(e) => {
                tracing::warn!(target: super::TARGET, repo = %config.name, %reference, %commit, error = %e.message(), "a change started no run");
                looked.skipped.push(NotTriggered {
                    reference,
                    commit,
                    reason: e.message().to_owned(),
                });
            }
        }
    }
    Ok(looked)
}

fn describe(event: &Event) -> String {
    match (&event.branch, &event.tag) {
        (Some(branch), _) => format!("{} to {branch}", event.kind.name()),
        (_, Some(tag)) => format!("{} {tag}", event.kind.name()),
        _ => event.kind.name().to_owned(),
    }
}

/// Starts a run of `config`'s pipeline at `commit` when `event` starts it: checks the
/// commit out of the mirror, plans it with the event's facts, records and submits the
/// run. `None` when no trigger matches.
pub(crate) async fn start(
    state: &ApiState,
    config: &RepoConfig,
    event: &Event,
    commit: &str,
) -> Result<Option<(crate::store::RunId, String)>, ApiError> {
    let digest = state
        .repos
        .checkout(
            &config.url,
            commit,
            &state.blobs,
            state.limits.max_snapshot_bytes,
        )
        .await?;
    let planning = state.clone();
    let facts = Facts {
        branch: event.branch.clone(),
        tag: event.tag.clone(),
        environment: None,
        commit: Some(commit.to_owned()),
        repository: Some(crate::sources::git::without_credentials(&config.url)),
        dirty: None,
        vars: Default::default(),
    };
    let (url, name, commit) = (config.url.clone(), config.name.clone(), commit.to_owned());
    let by = format!("{} {}", event.kind.name(), name);
    let event = event.clone();
    let new = blocking(move || {
        let bytes = planning.blobs.read(&digest).map_err(ApiError::internal)?;
        let plan = super::runs::plan_snapshot(&planning, &bytes, Some(name), "", facts)?;
        if plan.body.started_by(&event) == Started::No {
            return Ok(None);
        }
        let new = super::runs::new_run(&plan, Source::Git { url, commit }, by);
        let pipeline = new.pipeline.clone();
        let id = new.id;
        planning.store.create_run(new)?;
        Ok(Some((id, pipeline)))
    })
    .await?;
    if let Some((run, pipeline)) = &new {
        state.engine.submit(*run).await?;
        tracing::info!(target: super::TARGET, %run, %pipeline, repo = %config.name, "run started by a change");
    }
    Ok(new)
}

/// `POST /hooks/{forge}/{name}`: a forge's webhook. Refused, with one log line and never
/// a run: an unknown forge or repository (404), a body over [`MAX_WEBHOOK_BODY`] (413), a
/// missing or wrong signature (401), a delivery id seen before (409). Otherwise answered
/// at once (202); the node fetches and starts runs after.
pub(super) async fn webhook(
    State(state): State<ApiState>,
    Path((forge_name, name)): Path<(String, String)>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<WebhookAccepted>), ApiError> {
    let unknown = || ApiError::not_found(format!("no {forge_name} repository {name:?} here"));
    let forge = Forge::from_name(&forge_name).ok_or_else(unknown)?;
    let config = match state.repos.get(&name) {
        Ok(config) if config.forge == forge => config,
        Ok(_) | Err(RepoError::Unknown(_) | RepoError::BadName(_)) => {
            tracing::info!(target: super::TARGET, forge = %forge_name, repo = %name.chars().take(64).collect::<String>(), "webhook refused: no such repository");
            return Err(unknown());
        }
        Err(e) => return Err(e.into()),
    };
    let secret = state.repos.secret(&config.name)?;
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let delivery = match forge::verify(forge, &secret, header, &body) {
        Ok(delivery) => delivery,
        Err(refused) => {
            tracing::warn!(target: super::TARGET, repo = %config.name, reason = %refused, "webhook refused");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "bad_signature",
                format!("webhook refused: {refused}"),
            ));
        }
    };
    if let Some(id) = &delivery.id {
        let (repos, name, id_) = (state.repos.clone(), config.name.clone(), id.clone());
        if !blocking(move || Ok(repos.first_delivery(&name, &id_)?)).await? {
            tracing::warn!(target: super::TARGET, repo = %config.name, delivery = %id, "webhook refused: replayed delivery");
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "replayed",
                format!("delivery {id} was received before"),
            ));
        }
    }
    let (how, action) = match delivery.event {
        Hint::Ping => (None, "ping".to_owned()),
        Hint::Ignored(event) => (None, format!("ignored: {event}")),
        Hint::Fetch => (Some(Look::Fetch), "fetch".to_owned()),
        Hint::PullRequest { number, base } => (
            Some(Look::PullRequest { number, base }),
            "pull_request".to_owned(),
        ),
    };
    tracing::info!(target: super::TARGET, repo = %config.name, %action, "webhook accepted");
    if let Some(how) = how {
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = look(&state, &config.name, how).await {
                tracing::warn!(target: super::TARGET, repo = %config.name, error = %e.message(), "after a webhook: cannot look for changes");
            }
        });
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(WebhookAccepted {
            accepted: true,
            action,
        }),
    ))
}

/// Polls every repository that asks for it, each at its interval, and starts the runs
/// its schedules call for, until the task is dropped.
pub(crate) async fn poll(state: ApiState) {
    let mut last: HashMap<String, tokio::time::Instant> = HashMap::new();
    let mut schedules: HashMap<String, Schedule> = HashMap::new();
    let mut schedules_at = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(POLL_TICK);
    loop {
        tick.tick().await;
        let repos = state.repos.clone();
        let Ok(Ok(list)) = tokio::task::spawn_blocking(move || repos.list()).await else {
            continue;
        };
        let now = tokio::time::Instant::now();
        last.retain(|name, _| list.iter().any(|r| &r.name == name));
        for repo in &list {
            let Some(every) = repo.poll_secs else {
                continue;
            };
            let due = last
                .get(&repo.name)
                .is_none_or(|at| now.duration_since(*at) >= Duration::from_secs(every));
            if !due {
                continue;
            }
            last.insert(repo.name.clone(), now);
            if let Err(e) = look(&state, &repo.name, Look::Poll).await {
                tracing::warn!(target: super::TARGET, repo = %repo.name, error = %e.message(), "poll failed");
            }
        }
        if now.duration_since(schedules_at) >= SCHEDULE_EVERY {
            schedules_at = now;
            run_schedules(&state, &mut schedules, &list).await;
        }
    }
}

/// The `schedule` triggers of a repository's branch, as planned at `commit`, and the
/// instant after which an occurrence is due.
struct Schedule {
    commit: String,
    crons: Vec<(croner::Cron, jiff::tz::TimeZone)>,
    since: jiff::Timestamp,
}

/// Whether `cron`, read in `zone`, has an occurrence after `since` and at or before `now`.
pub(crate) fn comes_due(
    cron: &croner::Cron,
    zone: &jiff::tz::TimeZone,
    since: jiff::Timestamp,
    now: jiff::Timestamp,
) -> bool {
    cron.find_next_occurrence(&since.to_zoned(zone.clone()), false)
        .is_ok_and(|next| next.timestamp() <= now)
}

/// Starts a run of each repository whose branch's schedule came due since the last look.
/// A schedule counts from when the node first saw it: occurrences while the node was
/// stopped are not made up.
async fn run_schedules(
    state: &ApiState,
    schedules: &mut HashMap<String, Schedule>,
    list: &[RepoConfig],
) {
    let now = jiff::Timestamp::now();
    schedules.retain(|name, _| list.iter().any(|r| &r.name == name));
    for repo in list {
        let Ok(refs) = state.repos.mirror(&repo.name).refs().await else {
            continue;
        };
        let Some(head) = refs.get(&format!("refs/heads/{}", repo.branch)) else {
            continue;
        };
        let schedule = schedules
            .entry(repo.name.clone())
            .or_insert_with(|| Schedule {
                commit: String::new(),
                crons: Vec::new(),
                since: now,
            });
        if schedule.commit != *head {
            schedule.crons = schedule_of(state, repo, head).await;
            schedule.commit.clone_from(head);
        }
        let due = schedule
            .crons
            .iter()
            .any(|(cron, zone)| comes_due(cron, zone, schedule.since, now));
        schedule.since = now;
        if due && let Err(e) = start_scheduled(state, repo).await {
            tracing::warn!(target: super::TARGET, repo = %repo.name, error = %e.message(), "a schedule came due but started no run");
        }
    }
}

/// The schedules of `repo`'s pipeline at `commit`; a time zone the node does not know is
/// logged and its schedule left out.
async fn schedule_of(
    state: &ApiState,
    repo: &RepoConfig,
    commit: &str,
) -> Vec<(croner::Cron, jiff::tz::TimeZone)> {
    let digest = match state
        .repos
        .checkout(
            &repo.url,
            commit,
            &state.blobs,
            state.limits.max_snapshot_bytes,
        )
        .await
    {
        Ok(digest) => digest,
        Err(e) => {
            tracing::warn!(target: super::TARGET, repo = %repo.name, error = %e, "cannot read the schedules");
            return Vec::new();
        }
    };
    let (planning, name, branch, commit) = (
        state.clone(),
        repo.name.clone(),
        repo.branch.clone(),
        commit.to_owned(),
    );
    let triggers = blocking(move || {
        let bytes = planning.blobs.read(&digest).map_err(ApiError::internal)?;
        let facts = Facts {
            branch: Some(branch),
            commit: Some(commit),
            ..Facts::default()
        };
        let plan = super::runs::plan_snapshot(&planning, &bytes, Some(name), "", facts)?;
        Ok(plan.body.triggers)
    })
    .await
    .unwrap_or_default();
    triggers
        .iter()
        .filter(|t| t.event == EventKind::Schedule)
        .filter_map(|t| {
            let cron = t.cron.as_deref()?.parse::<croner::Cron>().ok()?;
            let zone_name = t.timezone.as_deref().unwrap_or("UTC");
            match jiff::tz::TimeZone::get(zone_name) {
                Ok(zone) => Some((cron, zone)),
                Err(e) => {
                    tracing::warn!(target: super::TARGET, repo = %repo.name, timezone = %zone_name, error = %e, "a schedule's time zone is unknown here; it never comes due");
                    None
                }
            }
        })
        .collect()
}

/// Fetches `repo` and starts a run of its branch's head as a `schedule` event.
async fn start_scheduled(state: &ApiState, repo: &RepoConfig) -> Result<(), ApiError> {
    let head = {
        let locked = state.repos.lock(&repo.name).await?;
        let mirror = locked.mirror();
        mirror.fetch(&[]).await.map_err(RepoError::from)?;
        let refs = mirror.refs().await.map_err(RepoError::from)?;
        refs.get(&format!("refs/heads/{}", repo.branch))
            .cloned()
            .ok_or_else(|| ApiError::invalid(format!("the branch {} is gone", repo.branch)))?
    };
    let event = Event {
        kind: EventKind::Schedule,
        branch: Some(repo.branch.clone()),
        tag: None,
    };
    if let Some((run, _)) = start(state, repo, &event, &head).await? {
        tracing::info!(target: super::TARGET, %run, repo = %repo.name, commit = %head, "a schedule started a run");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::comes_due;

    #[test]
    fn a_schedule_comes_due_once_its_time_passed_in_its_time_zone() {
        let cron: croner::Cron = "0 3 * * *".parse().unwrap();
        let utc = jiff::tz::TimeZone::UTC;
        let at = |text: &str| text.parse::<jiff::Timestamp>().unwrap();
        assert!(!comes_due(
            &cron,
            &utc,
            at("2026-01-01T02:58:00Z"),
            at("2026-01-01T02:59:59Z")
        ));
        assert!(comes_due(
            &cron,
            &utc,
            at("2026-01-01T02:58:00Z"),
            at("2026-01-01T03:00:00Z")
        ));
        // Due only once: the next look starts after it.
        assert!(!comes_due(
            &cron,
            &utc,
            at("2026-01-01T03:00:00Z"),
            at("2026-01-01T03:00:10Z")
        ));
        // 03:00 at UTC+2 is 01:00 UTC.
        let plus_two = jiff::tz::TimeZone::fixed(jiff::tz::offset(2));
        assert!(comes_due(
            &cron,
            &plus_two,
            at("2026-01-01T00:59:00Z"),
            at("2026-01-01T01:00:05Z")
        ));
        assert!(!comes_due(
            &cron,
            &plus_two,
            at("2026-01-01T02:58:00Z"),
            at("2026-01-01T03:00:05Z")
        ));
    }
}
