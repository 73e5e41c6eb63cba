//! The planner: (Ottofile, libraries, facts, step catalog) → [`Plan`].
//!
//! Planning runs in phases, each collecting diagnostics rather than stopping at the first:
//!
//! 1. **Load** (`load`): read the root file, the libraries its `use` names (stdlib,
//!    in-repository paths, pinned external libraries from the library cache or as the
//!    caller fetched them, see [`Libraries`]) and the files
//!    its relative `from` paths name; parse each once. Syntax errors and missing files end
//!    planning here, since later phases would only report their echoes.
//! 2. **Inputs**: bind the pipeline's vars from `--var` values and defaults; evaluate
//!    `configure` and `environments`.
//! 3. **Expand** (`expand`, `stage`): turn sequences, `parallel`, `each`, grouping
//!    stages and blueprints into a flat list of stages with structural dependencies,
//!    evaluating every expression and condition and checking every step.
//! 4. **Check** (`check`): unique names, `runtime from`, caches, environments; final
//!    dependencies and handoff points.
//!
//! The planner is pure: it reads files only through a [`Source`]. Ottofiles are untrusted
//! input: nothing here unwraps or indexes on what they contain.

#![warn(clippy::unwrap_used)]

mod check;
mod eval;
mod expand;
mod load;
mod stage;
mod stdlib;
mod triggers;
mod uses;
pub(crate) mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::ast::{ConfigEntry, Fact, VarDecl};
use crate::diagnostic::Diagnostic;
use crate::plan::{self, Plan, Provenance, SCHEMA, SourceRecord, sha256_digest};
use crate::source::{EntryKind, Source};
use crate::span::{FileId, SourceMap, Span};
use crate::steps::{StepCatalog, closest};

pub use crate::plan::Convention;

use self::expand::{Ctx, Expander};
use self::load::Loaded;
use self::values::{Scope, Val, VarTable, bind_vars, parse_var_text};

/// The file name looked for in a directory.
pub const OTTOFILE: &str = "Ottofile";

/// At most this many diagnostics are returned.
pub const MAX_DIAGNOSTICS: usize = 100;

/// The runtime facts a plan is made for: explicit inputs, never read from the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The branch being delivered.
    pub branch: Option<String>,
    /// The tag being delivered.
    pub tag: Option<String>,
    /// The target environment of the run.
    pub environment: Option<String>,
    /// The commit being delivered.
    pub commit: Option<String>,
    /// The repository the commit is from (its URL, or the work tree's path).
    pub repository: Option<String>,
    /// `sha256:<hex>` of the changes on top of `commit` the run was started with (`otto
    /// run --dirty`); `None` when there were none.
    pub dirty: Option<String>,
    /// Values for the pipeline's vars (`--var NAME=VALUE`), as text.
    pub vars: BTreeMap<String, String>,
}

/// An external library pinned to a commit: where the caller fetches it from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LibraryPin {
    /// The location as written in `use`.
    pub location: String,
    /// The full commit id as written (checked by the parser).
    pub commit: String,
}

/// External libraries the caller fetched for the planner (the planner never fetches):
/// each pin's files, named relative to the library's root, or why they could not be had.
/// The planner checks the files against the pinned content digest as it does the library
/// cache's, and reports a refusal at the `use` that names the library.
#[derive(Debug, Clone, Default)]
pub struct Libraries {
    fetched: Vec<(LibraryPin, Result<crate::source::MemSource, String>)>,
}

impl Libraries {
    /// None fetched.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives the files of `pin` (replacing anything given for it before).
    pub fn insert(&mut self, pin: LibraryPin, files: crate::source::MemSource) {
        self.set(pin, Ok(files));
    }

    /// Says why the files of `pin` could not be had (one line).
    pub fn refuse(&mut self, pin: LibraryPin, reason: impl Into<String>) {
        self.set(pin, Err(reason.into()));
    }

    fn set(&mut self, pin: LibraryPin, entry: Result<crate::source::MemSource, String>) {
        match self.fetched.iter_mut().find(|(p, _)| *p == pin) {
            Some(slot) => slot.1 = entry,
            None => self.fetched.push((pin, entry)),
        }
    }

    /// Whether `pin` was given (its files or a refusal).
    pub fn contains(&self, pin: &LibraryPin) -> bool {
        self.position(pin).is_some()
    }

    /// How many libraries were given (files or refusals).
    pub fn len(&self) -> usize {
        self.fetched.len()
    }

    /// Whether none was given.
    pub fn is_empty(&self) -> bool {
        self.fetched.is_empty()
    }

    pub(crate) fn position(&self, pin: &LibraryPin) -> Option<usize> {
        self.fetched.iter().position(|(p, _)| p == pin)
    }

    pub(crate) fn get(
        &self,
        index: usize,
    ) -> Option<&(LibraryPin, Result<crate::source::MemSource, String>)> {
        self.fetched.get(index)
    }
}

/// A successful plan with the files it was made from.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The plan.
    pub plan: Plan,
    /// The files read, for showing spans.
    pub sources: SourceMap,
}

/// Planning failed: the problems found, with the files needed to show them.
#[derive(Debug, Clone)]
pub struct Failed {
    /// The files read.
    pub sources: SourceMap,
    /// The problems, sorted by file and position (problems outside any file first).
    pub diagnostics: Vec<Diagnostic>,
    /// External libraries pinned to a commit that were neither in the library cache nor
    /// given in [`Libraries`]: the caller may fetch them and plan again.
    pub wanted: Vec<LibraryPin>,
}

/// Plans the Ottofile at `path`, or the `Ottofile` in the directory `path`.
pub fn plan(
    source: &dyn Source,
    path: &Path,
    facts: &Facts,
    steps: &StepCatalog,
) -> Result<Planned, Failed> {
    plan_with_libraries(source, path, facts, steps, &Libraries::new())
}

/// [`plan`], with the external libraries the caller fetched.
pub fn plan_with_libraries(
    source: &dyn Source,
    path: &Path,
    facts: &Facts,
    steps: &StepCatalog,
    libraries: &Libraries,
) -> Result<Planned, Failed> {
    let fail = |message: String| Failed {
        sources: SourceMap::new(),
        diagnostics: vec![Diagnostic::global(message)],
        wanted: Vec::new(),
    };
    let file = match source.kind(path) {
        Some(EntryKind::Dir) => {
            let file = path.join(OTTOFILE);
            if source.kind(&file) != Some(EntryKind::File) {
                return Err(fail(format!("no Ottofile in {}", path.display())));
            }
            file
        }
        Some(EntryKind::File) => path.to_path_buf(),
        None => return Err(fail(format!("{} does not exist", path.display()))),
    };
    let text = source.read(&file).map_err(|e| fail(e.to_string()))?;
    Planner {
        source,
        facts,
        catalog: steps,
        root: path,
        libraries,
    }
    .run(&file, text, None)
}

/// Plans Ottofile text that stands at `virtual_path` (which need not exist; libraries and
/// `from` paths resolve relative to it). Conventions use this, recording themselves in the
/// plan's provenance.
pub fn plan_text(
    source: &dyn Source,
    virtual_path: &Path,
    text: &str,
    facts: &Facts,
    steps: &StepCatalog,
    convention: Option<Convention>,
) -> Result<Planned, Failed> {
    Planner {
        source,
        facts,
        catalog: steps,
        root: virtual_path,
        libraries: &Libraries::new(),
    }
    .run(virtual_path, text.to_owned(), convention)
}

impl Facts {
    /// The value of a fact, if given.
    pub fn get(&self, fact: Fact) -> Option<&str> {
        match fact {
            Fact::Branch => self.branch.as_deref(),
            Fact::Tag => self.tag.as_deref(),
            Fact::Environment => self.environment.as_deref(),
            Fact::Commit => self.commit.as_deref(),
        }
    }
}

impl Failed {
    /// `path:line:column` of a diagnostic, or `None` for one outside any file.
    pub fn location(&self, diagnostic: &Diagnostic) -> Option<String> {
        diagnostic.span.map(|s| check::location(&self.sources, s))
    }

    /// All problems rendered for people, with source lines underlined (see [`crate::render`]).
    pub fn render(&self) -> String {
        crate::render::render_all(&self.diagnostics, &self.sources)
    }
}

impl fmt::Display for Failed {
    /// One line per problem: `path:line:column: message (hint)`; at most
    /// [`crate::render::MAX_RENDERED`] of them, then how many there were.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = crate::render::MAX_RENDERED;
        for d in self.diagnostics.iter().take(shown) {
            write!(f, "{}", crate::render::one_line(d, &self.sources))?;
            if let Some(hint) = &d.hint {
                write!(f, " ({})", crate::render::capped(hint))?;
            }
            writeln!(f)?;
        }
        if self.diagnostics.len() > shown {
            writeln!(
                f,
                "{} problems found (the first {shown} are shown)",
                self.diagnostics.len()
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Failed {}

struct Planner<'a> {
    source: &'a dyn Source,
    facts: &'a Facts,
    catalog: &'a StepCatalog,
    root: &'a Path,
    libraries: &'a Libraries,
}

impl Planner<'_> {
    fn run(
        &self,
        file: &Path,
        text: String,
        convention: Option<Convention>,
    ) -> Result<Planned, Failed> {
        let root_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let root_rel = PathBuf::from(file.file_name().unwrap_or(OTTOFILE.as_ref()));
        let mut sources = SourceMap::new();
        let mut diags = Vec::new();
        let loaded = load::load(
            self.source,
            self.libraries,
            &root_dir,
            &root_rel,
            text,
            &mut sources,
            &mut diags,
        );
        if !diags.is_empty() {
            let mut failed = failed(sources, diags);
            failed.wanted = loaded.wanted;
            return Err(failed);
        }
        let root = FileId(0);
        let Some(unit) = loaded.unit(root) else {
            return Err(failed(
                sources,
                vec![Diagnostic::global("the Ottofile could not be loaded")],
            ));
        };
        let ast = &unit.ast;

        let vars = Rc::new(self.pipeline_vars(&ast.vars, &mut diags));
        let scope = Scope {
            it: None,
            vars: &vars,
        };
        let config = configure(&ast.configure, &scope, &mut diags);
        let environments = environments(ast, &scope, &sources, &mut diags);
        let triggers = triggers::triggers(&ast.triggers, &scope, &mut diags);
        let concurrency = ast
            .concurrency
            .as_ref()
            .and_then(|c| scope.concurrency(c, &mut diags));
        if let Some(given) = &self.facts.environment
            && !environments.contains_key(given)
        {
            let mut d =
                Diagnostic::global(format!("unknown environment '{given}' given with --env"));
            d.hint = Some(
                match closest(given, environments.keys().map(String::as_str)) {
                    Some(best) => format!("did you mean '{best}'?"),
                    None if environments.is_empty() => {
                        "the Ottofile defines no environments".to_owned()
                    }
                    None => format!(
                        "the Ottofile defines: {}",
                        environments.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                },
            );
            diags.push(d);
        }

        let Some(pipeline) = &ast.pipeline else {
            diags.push(
                Diagnostic::new("the Ottofile defines no stages", Span::new(root, 0, 0))
                    .with_hint("add stage { } blocks, or a steps { } block"),
            );
            return Err(failed(sources, diags));
        };
        let mut expander = Expander::new(&loaded, self.facts, self.catalog, &config);
        expander.sequence(&pipeline.items, &Ctx::root(root, vars.clone()), Vec::new());
        diags.append(&mut expander.diags);
        uses::resolve(self.source, &root_dir, &mut expander.nodes, &mut diags);
        let (stages, environments) =
            check::finish(expander.nodes, &environments, &sources, &mut diags);
        if !diags.is_empty() {
            return Err(failed(sources, diags));
        }

        let name = match &pipeline.name {
            Some(name) => name.value.clone(),
            None => self
                .source
                .dir_name(&root_dir)
                .unwrap_or_else(|| "pipeline".to_owned()),
        };
        let body = plan::Body {
            concurrency,
            schema: SCHEMA.to_owned(),
            pipeline: name,
            facts: plan::Facts {
                branch: self.facts.branch.clone(),
                tag: self.facts.tag.clone(),
                environment: self.facts.environment.clone(),
                commit: self.facts.commit.clone(),
                repository: self.facts.repository.clone(),
                dirty: self.facts.dirty.clone(),
                vars: vars
                    .values
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            },
            config,
            environments,
            libraries: libraries(&loaded),
            owners: BTreeMap::new(),
            stages,
            triggers,
        };
        let provenance = Provenance {
            root: self.root.display().to_string(),
            sources: sources
                .files()
                .map(|(_, f)| SourceRecord {
                    path: f.path.display().to_string(),
                    sha256: sha256_digest(f.text.as_bytes()),
                })
                .collect(),
            convention,
        };
        Ok(Planned {
            plan: Plan { body, provenance },
            sources,
        })
    }

    /// Binds the pipeline's vars from `--var` text and defaults; reports unknown `--var` keys.
    fn pipeline_vars(&self, decls: &[VarDecl], diags: &mut Vec<Diagnostic>) -> VarTable {
        let mut given = BTreeMap::new();
        for (key, text) in &self.facts.vars {
            let Some(decl) = decls.iter().find(|d| d.name.name == *key) else {
                let mut d = Diagnostic::global(format!("unknown var '{key}' given with --var"));
                d.hint = Some(
                    match closest(key, decls.iter().map(|d| d.name.name.as_str())) {
                        Some(best) => format!("did you mean '{best}'?"),
                        None if decls.is_empty() => "the Ottofile declares no vars".to_owned(),
                        None => format!(
                            "the Ottofile declares: {}",
                            decls
                                .iter()
                                .map(|d| d.name.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    },
                );
                diags.push(d);
                continue;
            };
            match parse_var_text(decl.ty, text) {
                Ok(value) => {
                    given.insert(key.clone(), (value, None));
                }
                Err(why) => diags.push(
                    Diagnostic::new(format!("--var {key}={text}: {why}"), decl.name.span)
                        .with_label(format!("declared as {}", values::type_name(decl.ty))),
                ),
            }
        }
        let hint = |name: &str| format!("or give it a default: {name} {{ default '...' }}");
        bind_vars("the pipeline".to_owned(), decls, given, hint, None, diags)
    }
}

/// The `configure { }` tree as a JSON object; a key set twice is an error.
fn configure(
    entries: &[ConfigEntry],
    scope: &Scope<'_>,
    diags: &mut Vec<Diagnostic>,
) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for entry in entries {
        match entry {
            ConfigEntry::Set { key, value } => {
                let Some(value) = scope.eval(value, diags) else {
                    continue;
                };
                if map.contains_key(&key.name) {
                    diags.push(Diagnostic::new(
                        format!("configure key '{}' is set twice", key.name),
                        key.span,
                    ));
                } else {
                    map.insert(key.name.clone(), value.to_json());
                }
            }
            ConfigEntry::Block { key, entries } => {
                let inner = configure(entries, scope, diags);
                match map.get_mut(&key.name) {
                    None => {
                        map.insert(key.name.clone(), inner);
                    }
                    Some(serde_json::Value::Object(existing)) => {
                        if let serde_json::Value::Object(inner) = inner {
                            for (k, v) in inner {
                                if existing.contains_key(&k) {
                                    diags.push(Diagnostic::new(
                                        format!("configure key '{}.{k}' is set twice", key.name),
                                        key.span,
                                    ));
                                } else {
                                    existing.insert(k, v);
                                }
                            }
                        }
                    }
                    Some(_) => diags.push(Diagnostic::new(
                        format!("configure key '{}' is set twice", key.name),
                        key.span,
                    )),
                }
            }
        }
    }
    plan::to_sorted_value(&serde_json::Value::Object(map))
}

/// The root file's environments; inline secret values are refused.
fn environments(
    ast: &crate::ast::File,
    scope: &Scope<'_>,
    sources: &SourceMap,
    diags: &mut Vec<Diagnostic>,
) -> BTreeMap<String, plan::Environment> {
    let mut out = BTreeMap::new();
    for env in &ast.environments {
        for &span in &env.inline_secret_values {
            let name = secret_name(sources, span);
            diags.push(
                Diagnostic::new("secret values must not be written in an Ottofile", span)
                    .with_label("a secret value")
                    .redacted()
                    .with_hint(format!(
                        "store it with `otto secrets set {name}` on the node that runs the stage, and list only its name here"
                    )),
            );
        }
        if out.contains_key(&env.name.name) {
            diags.push(Diagnostic::new(
                format!("environment '{}' is defined twice", env.name.name),
                env.name.span,
            ));
            continue;
        }
        let mut settings = BTreeMap::new();
        for (key, expr) in &env.settings {
            let Some(value) = scope.eval(expr, diags) else {
                continue;
            };
            let text = match value {
                Val::Str(s) => s,
                Val::Int(i) => i.to_string(),
                Val::Bool(b) => b.to_string(),
                Val::List(_) => {
                    diags.push(
                        Diagnostic::new(
                            format!("setting '{}' must be a string, number or boolean", key.name),
                            expr.span,
                        )
                        .with_label("a list"),
                    );
                    continue;
                }
            };
            if settings.insert(key.name.clone(), text).is_some() {
                diags.push(Diagnostic::new(
                    format!("setting '{}' is set twice", key.name),
                    key.span,
                ));
            }
        }
        let mut secrets: Vec<String> = env.secrets.iter().map(|s| s.name.clone()).collect();
        secrets.sort();
        secrets.dedup();
        out.insert(
            env.name.name.clone(),
            plan::Environment { settings, secrets },
        );
    }
    out
}

/// The name written before `=` in an inline secret entry, for the hint.
fn secret_name(sources: &SourceMap, span: Span) -> String {
    let text = sources
        .get(span.file)
        .and_then(|f| f.text.get(span.start as usize..span.end as usize))
        .unwrap_or("");
    let name: String = text
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    if name.is_empty() {
        "NAME".to_owned()
    } else {
        name
    }
}

fn libraries(loaded: &Loaded) -> Vec<plan::Library> {
    let mut libs: Vec<plan::Library> = loaded
        .libraries
        .iter()
        .map(|l| plan::Library {
            name: l.name.clone(),
            digest: l.digest.clone(),
        })
        .collect();
    libs.sort_by(|a, b| (&a.name, &a.digest).cmp(&(&b.name, &b.digest)));
    libs.dedup();
    libs
}

/// Sorts, de-duplicates and caps diagnostics.
fn failed(sources: SourceMap, mut diagnostics: Vec<Diagnostic>) -> Failed {
    diagnostics.sort_by(|a, b| {
        let key = |d: &Diagnostic| d.span.map(|s| (s.file, s.start, s.end));
        key(a).cmp(&key(b)).then_with(|| a.message.cmp(&b.message))
    });
    diagnostics.dedup();
    diagnostics.truncate(MAX_DIAGNOSTICS);
    Failed {
        sources,
        diagnostics,
        wanted: Vec::new(),
    }
}
