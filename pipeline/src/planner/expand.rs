//! Expansion: stage items (sequences, `parallel`, `each`, grouping stages and blueprints)
//! become a flat list of stages with their structural dependencies.
//!
//! Every item is expanded with the set of stages it must wait for (its "entry") and returns
//! the stages that later items must wait for (its "exits"): a sequence threads exits to the
//! next item's entry; `parallel` and `each` give every member the same entry and return the
//! union of their exits.

use std::rc::Rc;

use crate::ast::{self, Expr, Ident, StageItem, Str};
use crate::diagnostic::Diagnostic;
use crate::plan::{self, BlueprintRef, RuntimeKind};
use crate::span::{FileId, Span};
use crate::steps::{StepCatalog, closest};

use super::Facts;
use super::eval::Evaluated;
use super::load::{Loaded, is_relative};
use super::stdlib;
use super::values::{Scope, Val, VarTable, bind_vars};

/// At most this many stages after expansion.
pub(crate) const MAX_STAGES: usize = 50_000;

/// At most this many stage items are expanded (counting every copy), so that a file whose
/// matrices multiply out to nothing still cannot keep the planner busy.
const MAX_WORK: usize = 1_000_000;

/// At most this many nested groups, `each`, `parallel` and `from` levels.
pub(crate) const MAX_DEPTH: usize = 64;

/// At most this many steps come out of library steps in one plan, so that steps which use
/// each other many times over cannot multiply out without bound.
pub(crate) const MAX_LIBRARY_STEPS: usize = 100_000;

/// A stage as expansion produces it, before names are resolved.
#[derive(Debug)]
pub(crate) struct Node {
    /// The stage, with `needs`, `handoffs_from`, `caches` and `secrets` still empty.
    pub(crate) stage: plan::Stage,
    /// Indices of the stages it waits for.
    pub(crate) needs: Vec<usize>,
    pub(crate) name_span: Span,
    pub(crate) runtime_from: Option<Str>,
    pub(crate) cache_defs: Vec<(plan::Cache, Span)>,
    pub(crate) cache_uses: Vec<Ident>,
    pub(crate) environment: Option<Ident>,
    /// `when { from 'Stage' }`, resolved after expansion.
    pub(crate) when_from: Vec<Str>,
    /// The paths of `uses`, as evaluated, with where each list was written; resolved to
    /// [`plan::Used`] against the source after expansion.
    pub(crate) uses: Vec<(String, Span)>,
}

/// A runtime as written, inherited by sub-stages; `from` is resolved after expansion.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeSpec {
    pub(crate) from: Option<Str>,
    pub(crate) kind: RuntimeKind,
    pub(crate) image: Option<String>,
    pub(crate) label: Option<String>,
}

/// What a stage item inherits from where it is written.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) file: FileId,
    pub(crate) vars: Rc<VarTable>,
    pub(crate) it: Option<Val>,
    pub(crate) group: Vec<String>,
    pub(crate) parallel: Option<String>,
    pub(crate) owner: Option<String>,
    pub(crate) environment: Option<Ident>,
    pub(crate) runtime: Option<RuntimeSpec>,
    pub(crate) when: Vec<Evaluated>,
    pub(crate) when_from: Vec<Str>,
    pub(crate) blueprint: Option<BlueprintRef>,
    /// Blueprints being expanded, outermost first, to catch cycles.
    pub(crate) chain: Vec<(FileId, usize)>,
    /// Library steps being expanded, outermost first, to catch cycles.
    pub(crate) step_chain: Vec<(FileId, usize)>,
    pub(crate) depth: usize,
}

/// Expands stage items into [`Node`]s.
pub(crate) struct Expander<'a> {
    pub(crate) loaded: &'a Loaded,
    pub(crate) facts: &'a Facts,
    pub(crate) catalog: &'a StepCatalog,
    /// The pipeline's `configure { }`: `configure { slack { channel = '#x' } }` sets the
    /// `channel` var of the library step `slack`.
    pub(crate) config: &'a serde_json::Value,
    pub(crate) nodes: Vec<Node>,
    pub(crate) diags: Vec<Diagnostic>,
    groups: usize,
    work: usize,
    too_many: bool,
    /// Steps made by expanding library steps so far (bounded by `MAX_LIBRARY_STEPS`).
    pub(crate) library_steps: usize,
}

impl Ctx {
    /// The context of a file's pipeline (or a blueprint's items, with `vars` replaced).
    pub(crate) fn root(file: FileId, vars: Rc<VarTable>) -> Self {
        Self {
            file,
            vars,
            it: None,
            group: Vec::new(),
            parallel: None,
            owner: None,
            environment: None,
            runtime: None,
            when: Vec::new(),
            when_from: Vec::new(),
            blueprint: None,
            chain: Vec::new(),
            step_chain: Vec::new(),
            depth: 0,
        }
    }

    pub(crate) fn scope(&self) -> Scope<'_> {
        Scope {
            it: self.it.as_ref(),
            vars: &self.vars,
        }
    }
}

impl<'a> Expander<'a> {
    pub(crate) fn new(
        loaded: &'a Loaded,
        facts: &'a Facts,
        catalog: &'a StepCatalog,
        config: &'a serde_json::Value,
    ) -> Self {
        Self {
            loaded,
            facts,
            catalog,
            config,
            library_steps: 0,
            nodes: Vec::new(),
            diags: Vec::new(),
            groups: 0,
            work: 0,
            too_many: false,
        }
    }

    /// Expands items in order; each waits for the exits of the one before.
    pub(crate) fn sequence(
        &mut self,
        items: &[StageItem],
        ctx: &Ctx,
        entry: Vec<usize>,
    ) -> Vec<usize> {
        let mut current = entry;
        for item in items {
            current = self.item(item, ctx, current);
        }
        current
    }

    fn item(&mut self, item: &StageItem, ctx: &Ctx, entry: Vec<usize>) -> Vec<usize> {
        if self.too_many {
            return entry;
        }
        self.work += 1;
        if self.work > MAX_WORK {
            self.diags.push(Diagnostic::new(
                format!("the pipeline expands to more than {MAX_WORK} items"),
                item_span(item),
            ));
            self.too_many = true;
            return entry;
        }
        if ctx.depth >= MAX_DEPTH {
            self.diags.push(Diagnostic::new(
                format!("stages are nested more than {MAX_DEPTH} levels deep"),
                item_span(item),
            ));
            return entry;
        }
        match item {
            StageItem::Stage(stage) if stage.children.is_empty() => self.leaf(stage, ctx, entry),
            StageItem::Stage(stage) => self.group(stage, ctx, entry),
            StageItem::Parallel { items, .. } => {
                let inner = self.side_by_side(ctx, "parallel");
                let mut exits = Vec::new();
                for item in items {
                    exits.extend(self.item(item, &inner, entry.clone()));
                }
                normalise(exits)
            }
            StageItem::Each { values, items, .. } => self.each(values, items, ctx, entry),
            StageItem::From { target, args, .. } => self.from(target, args, ctx, entry),
        }
    }

    /// A context for the members of a new `parallel` or `each` group.
    fn side_by_side(&mut self, ctx: &Ctx, kind: &str) -> Ctx {
        self.groups += 1;
        let mut inner = ctx.clone();
        inner.parallel = Some(format!("{kind}-{}", self.groups));
        inner.depth += 1;
        inner
    }

    fn each(
        &mut self,
        values: &[Expr],
        items: &[StageItem],
        ctx: &Ctx,
        entry: Vec<usize>,
    ) -> Vec<usize> {
        let scope = ctx.scope();
        let mut flat = Vec::new();
        for expr in values {
            let Some(value) = scope.eval(expr, &mut self.diags) else {
                continue;
            };
            let parts = match value {
                Val::List(items) => items,
                other => vec![other],
            };
            for part in parts {
                match part {
                    Val::Str(_) | Val::Int(_) => flat.push(part),
                    other => self.diags.push(
                        Diagnostic::new(
                            format!(
                                "each() values must be strings or numbers, not {}",
                                other.kind()
                            ),
                            expr.span,
                        )
                        .with_label("expected strings or numbers"),
                    ),
                }
            }
        }
        let inner = self.side_by_side(ctx, "each");
        let mut exits = Vec::new();
        for value in flat {
            if self.too_many {
                break;
            }
            let mut copy = inner.clone();
            copy.it = Some(value);
            exits.extend(self.sequence(items, &copy, entry.clone()));
        }
        if self.too_many && exits.is_empty() {
            return entry;
        }
        normalise(exits)
    }

    /// A stage that groups sub-stages: they run in order and inherit from it.
    fn group(&mut self, stage: &ast::Stage, ctx: &Ctx, entry: Vec<usize>) -> Vec<usize> {
        if !stage.steps.is_empty() {
            self.diags.push(
                Diagnostic::new("a stage cannot have both steps and sub-stages", stage.span)
                    .with_hint("move the steps into a sub-stage of their own"),
            );
        }
        for (present, what) in [
            (!stage.caches.is_empty(), "caches"),
            (!notify_is_empty(&stage.notify), "notify"),
            (stage.timeout.is_some(), "a timeout"),
            (stage.concurrency.is_some(), "concurrency"),
        ] {
            if present {
                self.diags.push(
                    Diagnostic::new(
                        format!("a stage with sub-stages cannot have {what}"),
                        stage.span,
                    )
                    .with_hint("put it on the sub-stages"),
                );
            }
        }
        let mut inner = ctx.clone();
        inner.depth += 1;
        let scope = ctx.scope();
        let name = match &stage.name {
            Some(expr) => scope.string(expr, "a stage name", &mut self.diags),
            None => None,
        };
        inner
            .group
            .push(name.unwrap_or_else(|| "(group)".to_owned()));
        if let Some(expr) = &stage.owner {
            inner.owner = scope.string(expr, "an owner", &mut self.diags);
        }
        if let Some(env) = &stage.environment {
            inner.environment = Some(env.clone());
        }
        if let Some(runtime) = &stage.runtime {
            inner.runtime = self.runtime(runtime, ctx);
        }
        inner.when.extend(self.conditions(&stage.when, ctx));
        inner.when_from.extend(stage.when_from.iter().cloned());
        let enter = self.gates(&stage.enter, ctx, true);
        let exit = self.gates(&stage.exit, ctx, false);

        let first = self.nodes.len();
        let exits = self.sequence(&stage.children, &inner, entry);
        let last = self.nodes.len();
        if last > first {
            if let Some(node) = self.nodes.get_mut(first) {
                let own = std::mem::replace(&mut node.stage.gates.enter, enter);
                node.stage.gates.enter.extend(own);
            }
            if let Some(node) = self.nodes.get_mut(last - 1) {
                node.stage.gates.exit.extend(exit);
            }
        } else if !enter.is_empty() || !exit.is_empty() {
            self.diags.push(Diagnostic::new(
                "this stage's gates apply to no stage: its sub-stages expand to nothing",
                stage.span,
            ));
        }
        exits
    }

    fn from(
        &mut self,
        target: &Str,
        args: &[(Ident, Expr)],
        ctx: &Ctx,
        entry: Vec<usize>,
    ) -> Vec<usize> {
        let Some((file, index, library)) = self.find_blueprint(ctx.file, target) else {
            return entry;
        };
        let Some(unit) = self.loaded.unit(file) else {
            return entry;
        };
        let Some(blueprint) = unit.ast.blueprints.get(index) else {
            return entry;
        };
        if let Some(pos) = ctx.chain.iter().position(|&c| c == (file, index)) {
            let mut files: Vec<&str> = ctx.chain[pos..]
                .iter()
                .filter_map(|(f, _)| self.loaded.unit(*f).map(|u| u.display.as_str()))
                .collect();
            files.push(&unit.display);
            self.diags.push(
                Diagnostic::new(
                    format!("blueprint cycle: {}", files.join(" → ")),
                    target.span,
                )
                .with_label("this from includes a blueprint that is already being included"),
            );
            return entry;
        }
        let name = blueprint_name(blueprint, &unit.rel);
        let errors_before = self.diags.len();
        let given = self.blueprint_args(&name, blueprint, args, ctx);
        let owner = format!("blueprint '{name}'");
        let hint = |var: &str| format!("add it: from '{}' {{ {var} = ... }}", target.value);
        let vars = bind_vars(
            owner,
            &blueprint.vars,
            given,
            hint,
            Some(target.span),
            &mut self.diags,
        );
        if self.diags.len() > errors_before {
            return entry;
        }
        let mut inner = ctx.clone();
        inner.file = file;
        inner.vars = Rc::new(vars);
        inner.it = None;
        inner.blueprint = Some(BlueprintRef { name, library });
        inner.chain.push((file, index));
        inner.depth += 1;
        self.sequence(&blueprint.items, &inner, entry)
    }

    /// Evaluates `from` arguments in the caller's scope and checks their names.
    fn blueprint_args(
        &mut self,
        name: &str,
        blueprint: &ast::Blueprint,
        args: &[(Ident, Expr)],
        ctx: &Ctx,
    ) -> std::collections::BTreeMap<String, (Val, Option<Span>)> {
        let scope = ctx.scope();
        let mut given = std::collections::BTreeMap::new();
        for (key, expr) in args {
            if !blueprint.vars.iter().any(|v| v.name.name == key.name) {
                let mut d = Diagnostic::new(
                    format!("blueprint '{name}' has no var '{}'", key.name),
                    key.span,
                );
                let names = blueprint.vars.iter().map(|v| v.name.name.as_str());
                d.hint = match closest(&key.name, names) {
                    Some(best) => Some(format!("did you mean '{best}'?")),
                    None if blueprint.vars.is_empty() => {
                        Some(format!("blueprint '{name}' has no vars"))
                    }
                    None => Some(format!(
                        "its vars are: {}",
                        blueprint
                            .vars
                            .iter()
                            .map(|v| v.name.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                };
                self.diags.push(d);
                continue;
            }
            if given.contains_key(&key.name) {
                self.diags.push(Diagnostic::new(
                    format!("var '{}' is given twice", key.name),
                    key.span,
                ));
                continue;
            }
            if let Some(value) = scope.eval(expr, &mut self.diags) {
                given.insert(key.name.clone(), (value, Some(expr.span)));
            }
        }
        given
    }

    /// Finds the blueprint a `from` names: a relative path, or a name defined in this file
    /// or in a library it uses. Returns (file, index in that file, library name).
    fn find_blueprint(&mut self, file: FileId, target: &Str) -> Option<(FileId, usize, String)> {
        let unit = self.loaded.unit(file)?;
        let path_key = (file, target.value.clone());
        if is_relative(&target.value) || self.loaded.from_paths.contains_key(&path_key) {
            // Load problems were reported when the path was loaded.
            let files = self.loaded.from_paths.get(&path_key)?;
            let found: Vec<(FileId, usize)> = files
                .iter()
                .filter_map(|f| self.loaded.unit(*f).map(|u| (*f, u)))
                .flat_map(|(f, u)| (0..u.ast.blueprints.len()).map(move |i| (f, i)))
                .collect();
            return match found.as_slice() {
                [(f, i)] => {
                    let display = self
                        .loaded
                        .unit(*f)
                        .map(|u| u.display.clone())
                        .unwrap_or_default();
                    Some((*f, *i, display))
                }
                [] => {
                    self.diags.push(Diagnostic::new(
                        format!("'{}' defines no blueprint", target.value),
                        target.span,
                    ));
                    None
                }
                _ => {
                    self.diags.push(
                        Diagnostic::new(
                            format!(
                                "'{}' defines {} blueprints; from a path needs exactly one",
                                target.value,
                                found.len()
                            ),
                            target.span,
                        )
                        .with_hint(
                            "name the blueprint instead: use { '<path>' } and from '<name>'",
                        ),
                    );
                    None
                }
            };
        }
        let mut found: Vec<(FileId, usize, String)> = Vec::new();
        let mut known: Vec<String> = Vec::new();
        let mut consider = |f: FileId, library: &str, found: &mut Vec<(FileId, usize, String)>| {
            let Some(u) = self.loaded.unit(f) else { return };
            for (i, bp) in u.ast.blueprints.iter().enumerate() {
                let name = blueprint_name(bp, &u.rel);
                if name == target.value && !found.iter().any(|(ff, ii, _)| (*ff, *ii) == (f, i)) {
                    found.push((f, i, library.to_owned()));
                }
                known.push(name);
            }
        };
        let own_library = unit.library.clone().unwrap_or_else(|| unit.display.clone());
        consider(file, &own_library, &mut found);
        for &lib in unit.member_of.iter().chain(&unit.uses) {
            if let Some(lib) = self.loaded.libraries.get(lib) {
                for &f in &lib.files {
                    consider(f, &lib.name, &mut found);
                }
            }
        }
        match found.len() {
            1 => found.pop(),
            0 => {
                let mut d =
                    Diagnostic::new(format!("unknown blueprint '{}'", target.value), target.span)
                        .with_label("not defined in this file or a library it uses");
                d.hint =
                    if let Some(best) = closest(&target.value, known.iter().map(String::as_str)) {
                        Some(format!("did you mean '{best}'?"))
                    } else if stdlib::has_blueprint(&target.value) {
                        Some(format!(
                            "'{}' is in the stdlib: add use {{ stdlib }}",
                            target.value
                        ))
                    } else if target.value.contains('/') {
                        Some(format!(
                            "a path must start with ./ or ../: from './{}'",
                            target.value
                        ))
                    } else {
                        None
                    };
                self.diags.push(d);
                None
            }
            _ => {
                let places: Vec<&str> = found.iter().map(|(_, _, l)| l.as_str()).collect();
                self.diags.push(Diagnostic::new(
                    format!(
                        "blueprint '{}' is defined in more than one place: {}",
                        target.value,
                        places.join(", ")
                    ),
                    target.span,
                ));
                None
            }
        }
    }

    /// Adds a stage, unless there are too many already.
    pub(crate) fn push(&mut self, node: Node, span: Span) -> Option<usize> {
        if self.nodes.len() >= MAX_STAGES {
            if !self.too_many {
                self.diags.push(Diagnostic::new(
                    format!("the pipeline expands to more than {MAX_STAGES} stages"),
                    span,
                ));
            }
            self.too_many = true;
            return None;
        }
        self.nodes.push(node);
        Some(self.nodes.len() - 1)
    }

    /// Evaluates `when` lines.
    pub(crate) fn conditions(&mut self, conds: &[ast::Cond], ctx: &Ctx) -> Vec<Evaluated> {
        let scope = ctx.scope();
        conds
            .iter()
            .filter_map(|c| super::eval::eval_cond(c, &scope, self.facts, &mut self.diags))
            .collect()
    }

    /// Evaluates a `runtime { }` block.
    pub(crate) fn runtime(&mut self, runtime: &ast::Runtime, ctx: &Ctx) -> Option<RuntimeSpec> {
        let scope = ctx.scope();
        let mut spec = RuntimeSpec {
            from: runtime.from.clone(),
            kind: RuntimeKind::Local,
            image: None,
            label: None,
        };
        match (&runtime.docker, &runtime.computer) {
            (Some(_), Some((_, span))) => {
                self.diags.push(
                    Diagnostic::new("a runtime is either docker or computer, not both", *span)
                        .with_label("second runtime"),
                );
                return None;
            }
            (Some((image, _)), None) => {
                spec.kind = RuntimeKind::Docker;
                let name = scope.string(image, "a docker image", &mut self.diags)?;
                if let Err(why) = plan::check_image(&name) {
                    self.diags.push(
                        Diagnostic::new(
                            format!("image '{name}' is not an image reference: {why}"),
                            image.span,
                        )
                        .with_label("an image such as 'localhost/tools:1'"),
                    );
                    return None;
                }
                spec.image = Some(name);
            }
            (None, Some((label, _))) => {
                spec.kind = RuntimeKind::Computer;
                spec.label = Some(scope.string(label, "a computer label", &mut self.diags)?);
            }
            (None, None) => {}
        }
        Some(spec)
    }
}

/// The name of a blueprint: `name = '...'`, or its file's name without `.otto`.
pub(crate) fn blueprint_name(blueprint: &ast::Blueprint, rel: &std::path::Path) -> String {
    match &blueprint.name {
        Some(name) => name.value.clone(),
        None => rel
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

fn notify_is_empty(notify: &ast::Notify) -> bool {
    notify.success.is_empty() && notify.failure.is_empty() && notify.complete.is_empty()
}

fn item_span(item: &StageItem) -> Span {
    match item {
        StageItem::Stage(stage) => stage.span,
        StageItem::Parallel { span, .. }
        | StageItem::Each { span, .. }
        | StageItem::From { span, .. } => *span,
    }
}

/// Sorted, without duplicates.
pub(crate) fn normalise(mut ids: Vec<usize>) -> Vec<usize> {
    ids.sort_unstable();
    ids.dedup();
    ids
}
