//! `otto explain`: what a pipeline will do, without running anything.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use otto_node::capabilities;
use otto_node::home::Home;
use otto_pipeline::plan::{Event, EventKind, Started};
use otto_pipeline::source::{EntryKind, FsSource, Source};
use otto_pipeline::{Facts, StepCatalog, conventions, explain, render};

use super::facts::FactsArgs;
use crate::Failure;

/// Explain a pipeline: stages, owners, handoffs, gates, environments, caches and steps.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto explain                          # the Ottofile (or the inferred stack) in this directory
  otto explain examples/webapp --branch main
  otto explain Ottofile --var channel=stable --json
  otto explain . --dot | dot -Tsvg > plan.svg
  otto explain --event push --branch main      # does a push to main start it?
  otto explain --event tag --tag v1.2.0
  otto explain --home /srv/otto           # as that node plans it: its step packages, its runtimes")]
pub(crate) struct Args {
    /// An Ottofile, or a directory holding one (without one, Otto infers the plan from the
    /// repository's stack: Rails, Bundler, Cargo, npm/pnpm/yarn, Go, Maven, Gradle, Python,
    /// Make).
    #[arg(default_value = ".")]
    path: PathBuf,
    #[command(flatten)]
    facts: FactsArgs,
    /// Print the plan as JSON (schema: docs/plan-format.md).
    #[arg(long, conflicts_with = "dot")]
    json: bool,
    /// Print the plan as a Graphviz graph, stages clustered by owner.
    #[arg(long)]
    dot: bool,
    /// Instead of the plan, say whether this event starts the pipeline (with `--branch`
    /// for push and pull_request, `--tag` for tag), by the Ottofile's `triggers { }`.
    #[arg(long, value_enum, conflicts_with = "dot")]
    event: Option<EventArg>,
    /// Plan as the node of this home would: with its step packages, saying which runtimes
    /// it has and which stages it would refuse (read from the home; the node need not
    /// run). Without it, only the built-in steps are known.
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
}

/// An event `--event` names.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
enum EventArg {
    Push,
    Tag,
    PullRequest,
    Schedule,
}

impl From<EventArg> for EventKind {
    fn from(arg: EventArg) -> Self {
        match arg {
            EventArg::Push => Self::Push,
            EventArg::Tag => Self::Tag,
            EventArg::PullRequest => Self::PullRequest,
            EventArg::Schedule => Self::Schedule,
        }
    }
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let event = match args.event {
        Some(kind) => Some(event(kind.into(), &args.facts)?),
        None => None,
    };
    let facts = Facts {
        vars: args.facts.var_map(),
        branch: args.facts.branch,
        tag: args.facts.tag,
        environment: args.facts.environment,
        commit: args.facts.commit,
        repository: None,
        dirty: None,
    };
    // Like a node reading a snapshot, read nothing outside the repository: the directory
    // given, or the one holding the file given.
    let repo = match source_kind(&args.path) {
        Some(EntryKind::File) => args.path.parent().unwrap_or(Path::new("")).to_path_buf(),
        _ => args.path.clone(),
    };
    let repo = if repo.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        repo
    };
    let source = FsSource::default().confined_to(&repo).unwrap_or_default();
    let node = args.home.as_deref().map(NodeView::read).transpose()?;
    let steps = match &node {
        Some(node) => node.steps.clone(),
        None => StepCatalog::builtins(),
    };
    let planned = match source.kind(&args.path) {
        None => bail_failure(anyhow!(
            "{}: no such file or directory",
            args.path.display()
        ))?,
        Some(EntryKind::File) => otto_pipeline::plan(&source, &args.path, &facts, &steps),
        Some(EntryKind::Dir) => {
            let ottofile = args.path.join("Ottofile");
            if source.kind(&ottofile).is_some() {
                otto_pipeline::plan(&source, &ottofile, &facts, &steps)
            } else {
                let detected =
                    conventions::detect(&source, &args.path).ok_or_else(|| no_stack(&args.path))?;
                otto_pipeline::plan_text(
                    &source,
                    &args
                        .path
                        .join(format!("Ottofile ({} convention)", detected.name)),
                    &detected.ottofile,
                    &facts,
                    &steps,
                    Some(otto_pipeline::Convention {
                        name: detected.name.into(),
                        reason: detected.reason,
                    }),
                )
            }
        }
    };
    let planned = match planned {
        Ok(planned) => planned,
        Err(failed) => {
            let text = render::render_all(&failed.diagnostics, &failed.sources);
            let _ = io::stderr().write_all(text.as_bytes());
            return Err(Failure::Reported);
        }
    };
    let out = if let Some(event) = &event {
        verdict(&planned.plan, event, args.json)
    } else if args.json {
        explain::json(&planned.plan)
    } else if args.dot {
        explain::dot(&planned.plan)
    } else {
        explain::human(&planned.plan)
    };
    io::stdout()
        .lock()
        .write_all(out.as_bytes())
        .context("writing the explanation")?;
    if let Some(node) = &node {
        // After the plan for people; on stderr when stdout is JSON or a graph.
        let text = node.describe(&planned.plan);
        if args.json || args.dot {
            let _ = io::stderr().write_all(text.as_bytes());
        } else {
            io::stdout()
                .lock()
                .write_all(format!("\n{text}").as_bytes())
                .context("writing the explanation")?;
        }
    }
    Ok(())
}

/// What `--home` tells about a node: who it is, the steps it knows and its runtimes.
struct NodeView {
    name: String,
    org: String,
    home: PathBuf,
    steps: StepCatalog,
    packages: usize,
    wall: otto_node::api::types::WallInfo,
    runtimes: capabilities::Runtimes,
    answers_to: Vec<String>,
}

impl NodeView {
    fn read(dir: &Path) -> anyhow::Result<Self> {
        let home = Home::new(dir);
        let config = home
            .load_config()
            .with_context(|| format!("--home {}", dir.display()))?;
        let packages = capabilities::package_dirs(&home, &config);
        let steps = capabilities::step_catalog(&packages)
            .map_err(|e| anyhow!("--home {}: {e}", dir.display()))?;
        let wall = capabilities::wall_info(&home, &config);
        let runtimes = capabilities::Runtimes::detect(&config);
        let mut answers_to = config.node.answers_to.clone();
        answers_to.push(config.node.name.clone());
        Ok(Self {
            wall,
            name: config.node.name,
            org: config.node.org,
            home: dir.to_path_buf(),
            steps,
            packages: packages.len(),
            runtimes,
            answers_to,
        })
    }

    /// The node's runtimes and the stages of `plan` it would refuse, one line each.
    fn describe(&self, plan: &otto_pipeline::Plan) -> String {
        let mut out = format!(
            "node {} of org {} ({}): runs stages as {}; steps: the built-ins and {} step package {}\n",
            self.name,
            self.org,
            self.home.display(),
            self.runtimes.describe(),
            self.packages,
            if self.packages == 1 {
                "directory"
            } else {
                "directories"
            },
        );
        out.push_str(&format!("  wall: {}\n", self.wall.summary()));
        let refused: Vec<String> = plan
            .body
            .stages
            .iter()
            .filter(|stage| {
                !stage.skipped
                    && otto_handoff::rules::owns(stage.owner.as_deref(), &self.answers_to, true)
            })
            .filter_map(|stage| {
                self.runtimes
                    .problem(stage)
                    .map(|why| format!("  {} would be refused: {why}\n", stage.id))
            })
            .collect();
        if refused.is_empty() {
            out.push_str("  it can run every stage of this plan\n");
        }
        out.extend(refused);
        out
    }
}

/// The event `--event` describes, with the branch or tag it needs.
fn event(kind: EventKind, facts: &FactsArgs) -> anyhow::Result<Event> {
    let needs = match kind {
        EventKind::Push | EventKind::PullRequest if facts.branch.is_none() => Some("--branch"),
        EventKind::Tag if facts.tag.is_none() => Some("--tag"),
        _ => None,
    };
    if let Some(flag) = needs {
        return Err(anyhow!("--event {} needs {flag}", kind.name()));
    }
    Ok(Event {
        kind,
        branch: facts.branch.clone(),
        tag: facts.tag.clone(),
    })
}

/// Whether the event starts the plan's pipeline, for people or as JSON.
fn verdict(plan: &otto_pipeline::Plan, event: &Event, json: bool) -> String {
    let started = plan.body.started_by(event);
    let what = match (event.kind, &event.branch, &event.tag) {
        (EventKind::Tag, _, Some(tag)) => format!("tag {tag}"),
        (EventKind::Schedule, ..) => "a schedule".to_owned(),
        (kind, Some(branch), _) => format!("{} to {branch}", kind.name()),
        (kind, ..) => kind.name().to_owned(),
    };
    let pipeline = &plan.body.pipeline;
    if json {
        let trigger = match started {
            Started::By(t) => serde_json::to_value(t).unwrap_or_default(),
            _ => serde_json::Value::Null,
        };
        let doc = serde_json::json!({
            "event": event.kind,
            "branch": event.branch,
            "tag": event.tag,
            "pipeline": pipeline,
            "starts": !matches!(started, Started::No),
            "trigger": trigger,
        });
        return format!(
            "{}\n",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
    }
    let all: Vec<String> = plan.body.triggers.iter().map(|t| t.describe()).collect();
    match started {
        Started::By(t) => format!(
            "{what} starts pipeline {pipeline} (trigger: {})\n",
            t.describe()
        ),
        Started::ByDefault => {
            format!("{what} starts pipeline {pipeline} (it has no triggers, so every push does)\n")
        }
        Started::No if all.is_empty() => format!(
            "{what} does not start pipeline {pipeline} (it has no triggers: only pushes start it)\n"
        ),
        Started::No => format!(
            "{what} does not start pipeline {pipeline} (its triggers: {})\n",
            all.join("; ")
        ),
    }
}

fn source_kind(path: &Path) -> Option<EntryKind> {
    FsSource::default().kind(path)
}

fn bail_failure<T>(e: anyhow::Error) -> Result<T, Failure> {
    Err(Failure::Error(e))
}

fn no_stack(dir: &Path) -> Failure {
    Failure::Error(anyhow!(
        "{}: no Ottofile and no known stack (looked for {}); write an Ottofile with what a person runs, e.g. {}",
        dir.display(),
        "a Gemfile, Cargo.toml, package.json, go.mod, pom.xml, build.gradle, \
         pyproject.toml, requirements.txt, a Makefile or a configure script",
        conventions::MINIMAL_OTTOFILE
    ))
}
