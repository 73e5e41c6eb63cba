//! Snapshots and runs: upload, create, list, show, approve, cancel.

use std::path::{Component, PathBuf};
use std::time::Duration;

use axum::extract::State;
use axum::http::header::{ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use otto_pipeline::source::{EntryKind, Source as _};
use otto_pipeline::{Facts, StepCatalog, conventions, plan::Body};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::types::{
    Approve, Approved, Cancel, Cancelled, ConditionView, CreateRun, FactsInput, ListedRun, Retried,
    Retry, RunCreated, RunDetail, RunList, SnapshotCreated, StageDetail,
};
use super::{
    ApiError, ApiParts, ApiState, Body as RawBody, Json, MAX_WAIT_SECS, Path, Query, blocking,
    now_ms, query_int,
};
use crate::blobs::Digest;
use crate::snapshot::{self, SnapshotSource};
use crate::store::{NewRun, NewStage, RunFilter, RunId, RunState, Source, StageState};

/// The most runs one `GET /v1/runs` returns.
const MAX_LIST: usize = 500;

/// How often a waiting request looks again even without an engine event.
const RECHECK: Duration = Duration::from_secs(1);

/// `POST /v1/snapshots`: stores a tar of a source directory.
pub(super) async fn upload_snapshot(
    State(state): State<ApiState>,
    RawBody(bytes): RawBody,
) -> Result<(StatusCode, Json<SnapshotCreated>), ApiError> {
    let blobs = state.blobs.clone();
    let created = blocking(move || {
        let source = snapshot::read(&bytes).map_err(|e| ApiError::invalid(e.to_string()))?;
        let digest = blobs.put_bytes(&bytes)?;
        Ok(SnapshotCreated {
            digest,
            size: bytes.len() as u64,
            files: source.0.len() as u64,
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `POST /v1/runs`: plans the pipeline in a snapshot and starts a run of it.
pub(super) async fn create(
    State(state): State<ApiState>,
    Json(request): Json<CreateRun>,
) -> Result<(StatusCode, Json<RunCreated>), ApiError> {
    let planning = state.clone();
    let new = blocking(move || plan_run(&planning, request)).await?;
    let created = RunCreated {
        run: new.id,
        pipeline: new.pipeline.clone(),
        plan_digest: Digest::of(&new.plan),
        stages: new.stages.iter().map(|s| s.id.clone()).collect(),
    };
    let store = state.store.clone();
    blocking(move || Ok(store.create_run(new)?)).await?;
    state.engine.submit(created.run).await?;
    tracing::info!(target: super::TARGET, run = %created.run, pipeline = %created.pipeline, "run created");
    Ok((StatusCode::CREATED, Json(created)))
}

/// Query of `GET /v1/runs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    /// At most this many runs (default 20, at most [`MAX_LIST`]).
    limit: Option<String>,
    /// Runs older than this one.
    before: Option<String>,
    /// Only runs in this state.
    state: Option<RunState>,
    /// Only runs of this pipeline.
    pipeline: Option<String>,
}

/// `GET /v1/runs`: recent runs, newest first.
pub(super) async fn list(
    State(state): State<ApiState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<RunList>, ApiError> {
    let before = query
        .before
        .as_deref()
        .map(|text| {
            text.parse::<RunId>().map_err(|e| {
                ApiError::bad_request(format!(
                    "before must be a run id: {e}, got {:?}",
                    text.chars().take(40).collect::<String>()
                ))
            })
        })
        .transpose()?;
    let limit = query_int("limit", query.limit.as_deref(), 0, MAX_LIST as u64)?;
    let filter = RunFilter {
        state: query.state,
        pipeline: query.pipeline,
        before,
        limit: limit.map_or(20, |n| n as usize),
    };
    let store = state.store.clone();
    let runs = blocking(move || {
        let runs = store.list_runs(&filter)?;
        let mut listed = Vec::with_capacity(runs.len());
        for run in runs {
            let orgs = orgs_of(&store, &run)?;
            listed.push(ListedRun { run, orgs });
        }
        Ok(listed)
    })
    .await?;
    Ok(Json(RunList { runs }))
}

/// The orgs that run the stages of `run`, by its plan's owner bindings
/// ([`Body::orgs`]): org names, as every node of the run reads them, not the aliases of
/// the node that started it. Empty when the plan cannot be read.
pub(crate) fn orgs_of(
    store: &crate::store::Store,
    run: &crate::store::Run,
) -> Result<Vec<String>, crate::store::Error> {
    Ok(store
        .plan(&run.plan_digest)?
        .and_then(|bytes| serde_json::from_slice::<Body>(&bytes).ok())
        .map(|body| body.orgs().into_iter().map(str::to_owned).collect())
        .unwrap_or_default())
}

/// Query of `GET /v1/runs/{run}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GetQuery {
    /// With `If-None-Match`: wait up to this many seconds for the run to change (at
    /// most [`MAX_WAIT_SECS`](super::MAX_WAIT_SECS)).
    wait: Option<String>,
}

/// `GET /v1/runs/{run}`: the run with its stages. With `If-None-Match: <etag>` and
/// `wait=N`, answers when the run differs from that version, or 304 after N seconds.
pub(super) async fn get(
    State(state): State<ApiState>,
    Path(run): Path<String>,
    Query(query): Query<GetQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let run = parse_run(&run)?;
    let known = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let wait = query_int("wait", query.wait.as_deref(), 0, MAX_WAIT_SECS)?;
    let wait = Duration::from_secs(wait.unwrap_or(0));
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribe before reading, so a change between the read and the wait is not missed.
    let mut events = state.engine.events();
    loop {
        let (detail, etag) = detail_with_etag(&state, run).await?;
        let unchanged = known.as_deref() == Some(etag.as_str());
        if !unchanged {
            let mut response = Json(detail).into_response();
            if let Ok(value) = HeaderValue::from_str(&etag) {
                response.headers_mut().insert(ETAG, value);
            }
            return Ok(response);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            if let Ok(value) = HeaderValue::from_str(&etag) {
                response.headers_mut().insert(ETAG, value);
            }
            return Ok(response);
        }
        let nap = (deadline - now).min(RECHECK);
        let _ = tokio::time::timeout(nap, events.recv()).await;
    }
}

/// `POST /v1/runs/{run}/gates/{stage}/approve`: approves the stage's waiting input gate.
pub(super) async fn approve(
    State(state): State<ApiState>,
    Path((run, stage)): Path<(String, String)>,
    Json(body): Json<Approve>,
) -> Result<Json<Approved>, ApiError> {
    let run = parse_run(&run)?;
    let who = who_or_local(body.who)?;
    let store = state.store.clone();
    let check = stage.clone();
    blocking(move || {
        store.run(&run)?.ok_or_else(|| no_run(&run))?;
        store
            .stage(&run, &check)?
            .ok_or_else(|| ApiError::not_found(format!("run {run} has no stage {check:?}")))?;
        Ok(())
    })
    .await?;
    state
        .engine
        .approve(run, stage.clone(), who.clone())
        .await?;
    tracing::info!(target: super::TARGET, %run, %stage, %who, "gate approved");
    Ok(Json(Approved { run, stage, who }))
}

/// `POST /v1/runs/{run}/cancel`: cancels a run; the body, if any, names who cancels.
pub(super) async fn cancel(
    State(state): State<ApiState>,
    Path(run): Path<String>,
    body: Option<Json<serde_json::Map<String, serde_json::Value>>>,
) -> Result<Json<Cancelled>, ApiError> {
    let run = parse_run(&run)?;
    let body: Cancel = optional_object(body)?;
    let who = who_or_local(body.who)?;
    let store = state.store.clone();
    blocking(move || store.run(&run)?.map(|_| ()).ok_or_else(|| no_run(&run))).await?;
    state.engine.cancel(run, who.clone()).await?;
    tracing::info!(target: super::TARGET, %run, %who, "run cancelled");
    Ok(Json(Cancelled { run, who }))
}

/// `POST /v1/runs/{run}/retry`: retries the run's failed stage (every failed stage when
/// the body names none) and what depends on it, as new attempts of the same run.
pub(super) async fn retry(
    State(state): State<ApiState>,
    Path(run): Path<String>,
    body: Option<Json<serde_json::Map<String, serde_json::Value>>>,
) -> Result<Json<Retried>, ApiError> {
    let run = parse_run(&run)?;
    let body: Retry = optional_object(body)?;
    let who = who_or_local(body.who)?;
    if let Some(stage) = &body.stage
        && (stage.is_empty() || stage.chars().count() > 256)
    {
        return Err(ApiError::invalid("stage must be 1 to 256 characters"));
    }
    let store = state.store.clone();
    blocking(move || store.run(&run)?.map(|_| ()).ok_or_else(|| no_run(&run))).await?;
    let stages = state.engine.retry(run, body.stage, who.clone()).await?;
    tracing::info!(target: super::TARGET, %run, %who, ?stages, "run retried");
    Ok(Json(Retried { run, stages, who }))
}

/// An optional body that must be a JSON object when it is there (serde alone would also
/// read a struct from an array such as `[null]`); none is `T`'s default.
fn optional_object<T: serde::de::DeserializeOwned + Default>(
    body: Option<Json<serde_json::Map<String, serde_json::Value>>>,
) -> Result<T, ApiError> {
    match body {
        None => Ok(T::default()),
        Some(Json(map)) => serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| ApiError::invalid(format!("bad request body: {e}"))),
    }
}

/// The name a person gave for an approval or a cancel, or `local` when none was given.
fn who_or_local(who: Option<String>) -> Result<String, ApiError> {
    let who = who.unwrap_or_else(|| "local".to_owned());
    if who.is_empty() || who.chars().count() > 128 || who.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "who must be 1 to 128 characters without control characters",
        ));
    }
    Ok(who)
}

/// Parses a run id from a URL; text that is no run id names no run, so it is a 404.
pub(super) fn parse_run(text: &str) -> Result<RunId, ApiError> {
    text.parse()
        .map_err(|e| ApiError::not_found(format!("no run {text:?}: {e}")))
}

pub(super) fn no_run(run: &RunId) -> ApiError {
    ApiError::not_found(format!("no run {run}"))
}

/// The tag of the run's detail now (the `ETag` of `GET /v1/runs/{run}`): the web UI
/// compares it with the one its page was drawn at.
pub(crate) async fn run_etag(state: &ApiState, run: RunId) -> Result<String, ApiError> {
    detail_with_etag(state, run).await.map(|(_, etag)| etag)
}

/// The run's detail and a tag that changes whenever the detail does.
async fn detail_with_etag(state: &ApiState, run: RunId) -> Result<(RunDetail, String), ApiError> {
    let store = state.store.clone();
    let detail = blocking(move || run_detail(&store, run)).await?;
    let bytes = serde_json::to_vec(&detail).map_err(ApiError::internal)?;
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&bytes)[..12]));
    Ok((detail, etag))
}

fn run_detail(store: &crate::store::Store, id: RunId) -> Result<RunDetail, ApiError> {
    let run = store.run(&id)?.ok_or_else(|| no_run(&id))?;
    let stages = store.stages(&id)?;
    let gates = store.gates(&id)?;
    let body: Option<Body> = store
        .plan(&run.plan_digest)?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let stages = stages
        .into_iter()
        .map(|stage| {
            let planned = body
                .as_ref()
                .and_then(|b| b.stages.iter().find(|s| s.id == stage.id));
            StageDetail {
                name: planned.map_or_else(|| stage.id.clone(), |p| p.name.clone()),
                owner: planned.and_then(|p| p.owner.clone()),
                needs: planned.map(|p| p.needs.clone()).unwrap_or_default(),
                when: planned
                    .and_then(|p| p.when.as_ref())
                    .map(|c| ConditionView {
                        text: c.text.clone(),
                        result: c.result.as_str().to_owned(),
                    }),
                gates: gates
                    .iter()
                    .filter(|g| g.at.stage == stage.id)
                    .cloned()
                    .collect(),
                stage,
            }
        })
        .collect();
    Ok(RunDetail { run, stages })
}

/// Everything `POST /v1/runs` does before it records the run: reads the snapshot, plans,
/// and makes the run's record.
fn plan_run(state: &ApiState, request: CreateRun) -> Result<NewRun, ApiError> {
    let digest = match &request.source {
        Source::Snapshot { digest } => *digest,
        _ => {
            return Err(ApiError::invalid(
                "only snapshot sources are supported (upload one with POST /v1/snapshots)",
            ));
        }
    };
    let bytes = state.blobs.read(&digest).map_err(|e| match e {
        crate::blobs::BlobError::NotFound(_) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_snapshot",
            format!("no snapshot {digest}; upload it with POST /v1/snapshots first"),
        ),
        other => ApiError::internal(other),
    })?;
    check_source_facts(&request.facts)?;
    let plan = plan_snapshot(
        state,
        &bytes,
        request.root_name,
        request.path.as_deref().unwrap_or(""),
        Facts {
            branch: request.facts.branch,
            tag: request.facts.tag,
            environment: request.facts.environment,
            commit: request.facts.commit,
            repository: request.facts.repository,
            dirty: request.facts.dirty,
            vars: request.facts.vars,
        },
    )?;
    Ok(new_run(
        &plan,
        request.source,
        request
            .started_by
            .filter(|s| !s.is_empty() && s.len() <= 128)
            .unwrap_or_else(|| "local".to_owned()),
    ))
}

/// The longest `repository` fact taken.
const MAX_REPOSITORY: usize = 2048;

/// Refuses a `repository` that is empty, too long, has control characters or carries
/// credentials (`scheme://user@…`), and a `dirty` that is not `sha256:` and 64 lowercase
/// hex digits or comes without a `commit`.
fn check_source_facts(facts: &FactsInput) -> Result<(), ApiError> {
    if let Some(repository) = &facts.repository {
        if repository.is_empty()
            || repository.len() > MAX_REPOSITORY
            || repository.chars().any(char::is_control)
        {
            return Err(ApiError::invalid(format!(
                "facts.repository must be 1 to {MAX_REPOSITORY} characters without control characters"
            )));
        }
        if let Some((_, rest)) = repository.split_once("://")
            && rest
                .split('/')
                .next()
                .is_some_and(|host| host.contains('@'))
        {
            return Err(ApiError::invalid(
                "facts.repository must not carry credentials (user@ in the URL)",
            ));
        }
    }
    if let Some(dirty) = &facts.dirty {
        let hex = dirty.strip_prefix("sha256:").unwrap_or_default();
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(ApiError::invalid(
                "facts.dirty must be sha256: and 64 lowercase hex digits",
            ));
        }
        if facts.commit.is_none() {
            return Err(ApiError::invalid(
                "facts.dirty names changes on top of a commit: give facts.commit too",
            ));
        }
    }
    Ok(())
}

/// Plans the pipeline at `path` in the snapshot `bytes` with `facts`; `root_name` names
/// the directory the snapshot was made from.
pub(super) fn plan_snapshot(
    state: &ApiState,
    bytes: &[u8],
    root_name: Option<String>,
    path: &str,
    facts: Facts,
) -> Result<otto_pipeline::Plan, ApiError> {
    let root_name =
        root_name.filter(|n| !n.is_empty() && n.len() <= 128 && !n.contains(['/', '\\']));
    let source =
        snapshot::read_source(bytes, root_name).map_err(|e| ApiError::invalid(e.to_string()))?;
    let path = relative_path(path)?;
    let catalog = step_catalog(&state.packages)?;
    let planned = plan_fetching(state, &source, &path, &facts, &catalog).map_err(|failed| {
        let lines = failed.to_string();
        let message = lines
            .lines()
            .next()
            .unwrap_or("the pipeline has errors")
            .to_owned();
        let message = match failed.diagnostics.len() {
            0 | 1 => message,
            n => format!("{message} (and {} more)", n - 1),
        };
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "plan_failed", message)
            .with_details(failed.render())
    })?;
    let mut plan = planned.plan;
    runnable_here(state, &plan)?;
    // The run binds every owner name to an org now; names nothing here resolves stay
    // unbound (docs/plan-format.md, owner binding), unless this node would have to offer
    // a stage to one.
    let binding = bind_owners(state, &plan.body);
    reachable_owners(state, &plan.body, &binding.unresolved)?;
    plan.body.owners = binding.owners;
    Ok(plan)
}

/// Plans as [`plan_in`] does, fetching the external libraries pinned to a commit that the
/// planner asks for (see [`crate::sources::libs`]) and planning again, until nothing more
/// is asked for or the limits are reached: what cannot be had is given to the planner as
/// refused, so it reports it at the `use` that names it. Runs on a blocking thread.
fn plan_fetching(
    state: &ApiState,
    source: &SnapshotSource,
    path: &std::path::Path,
    facts: &Facts,
    catalog: &StepCatalog,
) -> Result<otto_pipeline::Planned, otto_pipeline::Failed> {
    use crate::sources::libs::{MAX_LIBRARIES, MAX_ROUNDS};
    let mut libraries = otto_pipeline::Libraries::new();
    let mut round = 0;
    loop {
        let failed = match plan_in(source, path, facts, catalog, &libraries) {
            Err(failed) if !failed.wanted.is_empty() && round < MAX_ROUNDS => failed,
            done => return done,
        };
        round += 1;
        for pin in failed.wanted {
            if libraries.contains(&pin) {
                continue;
            }
            if libraries.len() >= MAX_LIBRARIES {
                libraries.refuse(
                    pin,
                    format!("a plan fetches at most {MAX_LIBRARIES} external libraries"),
                );
                continue;
            }
            let fetched = match tokio::runtime::Handle::try_current() {
                Ok(runtime) => runtime.block_on(state.repos.library(&pin.location, &pin.commit)),
                Err(_) => Err("the node cannot fetch here".to_owned()),
            };
            match fetched {
                Ok(files) => {
                    tracing::info!(target: super::TARGET, library = %pin.location, commit = %pin.commit, "fetched an external library");
                    libraries.insert(pin, files);
                }
                Err(reason) => {
                    tracing::warn!(target: super::TARGET, library = %pin.location, commit = %pin.commit, %reason, "an external library cannot be had");
                    libraries.refuse(pin, reason);
                }
            }
        }
    }
}

/// Refuses a plan with a stage this node would offer to an owner nothing here resolves
/// (`otto_handoff::rules::unreachable`): no node of the run could ever take it, so the run
/// would wait for nothing. Says the closest name this node knows (its own names, its
/// aliases, pinned orgs and known nodes) and how to make the name known.
fn reachable_owners(state: &ApiState, body: &Body, unresolved: &[String]) -> Result<(), ApiError> {
    let mut names = state.node.answers_to.clone();
    names.push(state.node.name.clone());
    let lost = otto_handoff::rules::unreachable(body, &names, unresolved);
    if lost.is_empty() {
        return Ok(());
    }
    let trust = state.membership.trust();
    let mut known: Vec<String> = names.clone();
    known.extend(trust.aliases().map(|(alias, _)| alias.to_owned()));
    known.extend(trust.orgs().iter().map(|org| org.name.clone()));
    known.extend(
        state
            .membership
            .peers()
            .into_iter()
            .filter_map(|peer| peer.node),
    );
    known.sort();
    known.dedup();
    let lines: Vec<String> = lost
        .iter()
        .map(|(stage, owner)| {
            let hint = match otto_pipeline::steps::closest(owner, known.iter().map(String::as_str))
            {
                Some(name) => format!("did you mean '{name}'? "),
                None => String::new(),
            };
            format!(
                "stage '{stage}' is owned by '{owner}', which no node, org or alias known here \
                 answers to: {hint}fix the owner, or join that org first (otto-node join \
                 TOKEN --alias {owner})"
            )
        })
        .collect();
    let message = match lines.len() {
        1 => lines[0].clone(),
        n => format!("{} (and {} more)", lines[0], n - 1),
    };
    Err(
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_owner", message)
            .with_details(lines.join("\n")),
    )
}

/// Refuses a plan with a stage this node would run (no owner, or one it answers to) on a
/// runtime it does not have: a container image without an engine, a computer label it
/// does not declare. Stages the plan skips do not count.
fn runnable_here(state: &ApiState, plan: &otto_pipeline::Plan) -> Result<(), ApiError> {
    let refused: Vec<String> = plan
        .body
        .stages
        .iter()
        .filter(|stage| !stage.skipped && state.engine.runs_here(stage.owner.as_deref()))
        .filter_map(|stage| {
            let why = state.engine.runtimes().problem(stage)?;
            Some(format!(
                "stage '{}' cannot run on this node: {why}",
                stage.id
            ))
        })
        .collect();
    let Some(first) = refused.first() else {
        return Ok(());
    };
    let message = match refused.len() {
        1 => first.clone(),
        n => format!("{first} (and {} more)", n - 1),
    };
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "runtime_unavailable",
        message,
    )
    .with_details(refused.join("\n")))
}

/// The record of a new run of `plan` from `source`.
pub(super) fn new_run(plan: &otto_pipeline::Plan, source: Source, started_by: String) -> NewRun {
    let created_at = now_ms();
    let mut random = [0u8; 10];
    crate::daemon::fill_random(&mut random);
    NewRun {
        id: RunId::new(created_at, random),
        pipeline: plan.body.pipeline.clone(),
        plan: plan.canonical_bytes(),
        source,
        facts: plan.body.facts.clone(),
        created_at,
        started_by,
        stages: plan
            .body
            .stages
            .iter()
            // Every stage starts pending, a stage the plan skips included: the engine
            // marks it skipped when its turn comes, so the stages after it still wait for
            // the stages before it.
            .map(|s| NewStage {
                id: s.id.clone(),
                state: StageState::Pending,
            })
            .collect(),
    }
}

/// The org each owner name of `body` stands for on this node: its own org for `origin`
/// (and this node as the one that runs its stages) and its own names, then its aliases,
/// pinned orgs and known nodes.
pub(crate) fn bind_owners(parts: &ApiParts, body: &Body) -> otto_handoff::Binding {
    let membership = &parts.membership;
    let mut names = parts.node.answers_to.clone();
    names.push(parts.node.name.clone());
    otto_handoff::bind_owners(
        body,
        &membership.trust(),
        &parts.node.org,
        membership.verified_certificate().org_key(),
        &membership.node_key().public_key(),
        &names,
        &|name| membership.owner_org_key(name),
    )
}

/// Plans the Ottofile at `path` in the snapshot, the `Ottofile` of the directory `path`,
/// or the directory's stack convention.
fn plan_in(
    source: &SnapshotSource,
    path: &std::path::Path,
    facts: &Facts,
    catalog: &StepCatalog,
    libraries: &otto_pipeline::Libraries,
) -> Result<otto_pipeline::Planned, otto_pipeline::Failed> {
    let global = |message: String| otto_pipeline::Failed {
        sources: Default::default(),
        diagnostics: vec![otto_pipeline::diagnostic::Diagnostic::global(message)],
        wanted: Vec::new(),
    };
    match source.kind(path) {
        Some(EntryKind::File) => {
            otto_pipeline::plan_with_libraries(source, path, facts, catalog, libraries)
        }
        Some(EntryKind::Dir) => {
            let ottofile = path.join("Ottofile");
            if source.kind(&ottofile).is_some() {
                return otto_pipeline::plan_with_libraries(
                    source, &ottofile, facts, catalog, libraries,
                );
            }
            let Some(detected) = conventions::detect(source, path) else {
                return Err(global(format!(
                    "{}: no Ottofile and no known stack in the snapshot; write an Ottofile with what a person runs, e.g. {}",
                    shown(path),
                    conventions::MINIMAL_OTTOFILE
                )));
            };
            otto_pipeline::plan_text(
                source,
                &path.join(format!("Ottofile ({} convention)", detected.name)),
                &detected.ottofile,
                facts,
                catalog,
                Some(otto_pipeline::Convention {
                    name: detected.name.into(),
                    reason: detected.reason,
                }),
            )
        }
        // An empty snapshot has no entries, not even its root directory.
        None if path.as_os_str().is_empty() => Err(global(format!(
            "the snapshot is empty: no Ottofile and no known stack (otto run sends the \
             directory it is given, less what .gitignore and .ottoignore leave out); write an \
             Ottofile, e.g. {}",
            conventions::MINIMAL_OTTOFILE
        ))),
        None => Err(global(format!(
            "{}: no such file or directory in the snapshot",
            shown(path)
        ))),
    }
}

fn shown(path: &std::path::Path) -> String {
    if path.as_os_str().is_empty() {
        ".".to_owned()
    } else {
        path.display().to_string()
    }
}

/// The built-in steps and the steps of the node's step packages.
fn step_catalog(packages: &[PathBuf]) -> Result<StepCatalog, ApiError> {
    crate::capabilities::step_catalog(packages).map_err(|message| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_step_package",
            message,
        )
    })
}

/// A path inside the snapshot, from a request: relative, without `..`.
fn relative_path(text: &str) -> Result<PathBuf, ApiError> {
    let mut out = PathBuf::new();
    for c in std::path::Path::new(text).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => {
                return Err(ApiError::invalid(format!(
                    "path {text:?} must be relative to the snapshot's root, without '..'"
                )));
            }
        }
    }
    Ok(out)
}
