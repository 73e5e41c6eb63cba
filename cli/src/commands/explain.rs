//! `otto explain`: what a pipeline will do, without running anything.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
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
  otto explain . --dot | dot -Tsvg > plan.svg")]
pub(crate) struct Args {
    /// An Ottofile, or a directory holding one (without one, Otto infers the plan from the
    /// repository's stack: Rails, Cargo, npm/pnpm/yarn, Go, Maven, Gradle, Python, Make).
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
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let facts = Facts {
        vars: args.facts.var_map(),
        branch: args.facts.branch,
        tag: args.facts.tag,
        environment: args.facts.environment,
        commit: args.facts.commit,
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
    let steps = StepCatalog::builtins();
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
    let out = if args.json {
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
    Ok(())
}

fn source_kind(path: &Path) -> Option<EntryKind> {
    FsSource::default().kind(path)
}

fn bail_failure<T>(e: anyhow::Error) -> Result<T, Failure> {
    Err(Failure::Error(e))
}

fn no_stack(dir: &Path) -> Failure {
    Failure::Error(anyhow!(
        "{}: no Ottofile and no known stack (looked for {})",
        dir.display(),
        "a Gemfile with rails, Cargo.toml, package.json, go.mod, pom.xml, build.gradle, \
         pyproject.toml, requirements.txt or a Makefile"
    ))
}
