//! One stage: evaluating its name, owner, conditions, gates, caches, steps and notify.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::ast::{self, CacheEntry, GateItem, Ident};
use crate::diagnostic::Diagnostic;
use crate::plan::{self, Gate, Gates, Outcome};
use crate::span::{FileId, Span};
use crate::steps::{StepCall, closest};

use super::eval::{all, eval_cond};
use super::expand::{Ctx, Expander, MAX_DEPTH, MAX_LIBRARY_STEPS, Node, RuntimeSpec};
use super::values::{Val, bind_vars};

impl Expander<'_> {
    /// A stage with steps (or nothing): one node that waits for `entry`.
    pub(crate) fn leaf(&mut self, stage: &ast::Stage, ctx: &Ctx, entry: Vec<usize>) -> Vec<usize> {
        let scope = ctx.scope();
        let name = match &stage.name {
            Some(expr) => scope.string(expr, "a stage name", &mut self.diags),
            None => Some(format!("stage {}", self.nodes.len() + 1)),
        };
        let name_span = stage.name.as_ref().map_or(stage.span, |e| e.span);
        if name.as_deref() == Some("") {
            self.diags
                .push(Diagnostic::new("a stage name must not be empty", name_span));
        }
        let owner = match &stage.owner {
            Some(expr) => scope.string(expr, "an owner", &mut self.diags),
            None => ctx.owner.clone(),
        };
        let mut when = ctx.when.clone();
        when.extend(self.conditions(&stage.when, ctx));
        let when = all(&when).map(|e| plan::Condition {
            text: e.text,
            result: e.outcome,
        });
        let runtime = match &stage.runtime {
            Some(runtime) => self.runtime(runtime, ctx),
            None => ctx.runtime.clone(),
        };
        let runtime = runtime.unwrap_or(RuntimeSpec {
            from: None,
            kind: plan::RuntimeKind::Local,
            image: None,
            label: None,
        });
        let (cache_defs, cache_uses) = self.caches(&stage.caches, ctx);
        let gates = Gates {
            enter: self.gates(&stage.enter, ctx, true),
            exit: self.gates(&stage.exit, ctx, false),
        };
        let steps = self.steps(&stage.steps, ctx);
        let (success, success_messages) = self.notify_steps(&stage.notify.success, ctx);
        let (failure, failure_messages) = self.notify_steps(&stage.notify.failure, ctx);
        let (complete, complete_messages) = self.notify_steps(&stage.notify.complete, ctx);
        let notify = plan::Notify {
            success,
            failure,
            complete,
            messages: plan::Messages {
                complete: complete_messages,
                failure: failure_messages,
                success: success_messages,
            },
        };
        let timeout = match &stage.timeout {
            Some(expr) => scope.duration(expr, &mut self.diags),
            None => None,
        };
        let mut uses = Vec::new();
        for expr in &stage.uses {
            let paths = scope.strings(expr, "uses", &mut self.diags);
            uses.extend(paths.into_iter().flatten().map(|p| (p, expr.span)));
        }
        let concurrency = stage
            .concurrency
            .as_ref()
            .and_then(|c| scope.concurrency(c, &mut self.diags));
        let Some(name) = name else {
            return entry;
        };
        let skipped = when.as_ref().is_some_and(|w| w.result == Outcome::Fail);
        let node = Node {
            stage: plan::Stage {
                id: name.clone(),
                name,
                group: ctx.group.clone(),
                parallel: ctx.parallel.clone(),
                needs: Vec::new(),
                owner,
                handoffs_from: Vec::new(),
                environment: None,
                when,
                skipped,
                gates,
                runtime: plan::Runtime {
                    from: None,
                    kind: runtime.kind,
                    image: runtime.image,
                    label: runtime.label,
                },
                caches: Vec::new(),
                concurrency,
                steps,
                notify,
                timeout,
                secrets: Vec::new(),
                uses: Vec::new(),
                blueprint: ctx.blueprint.clone(),
            },
            needs: entry.clone(),
            name_span,
            runtime_from: runtime.from,
            cache_defs,
            cache_uses,
            uses,
            environment: stage
                .environment
                .clone()
                .or_else(|| ctx.environment.clone()),
            when_from: ctx
                .when_from
                .iter()
                .chain(&stage.when_from)
                .cloned()
                .collect(),
        };
        match self.push(node, stage.span) {
            Some(index) => vec![index],
            None => entry,
        }
    }

    /// Evaluates the items of `enter { }` (when `enter`) or `exit { }`.
    pub(crate) fn gates(&mut self, items: &[GateItem], ctx: &Ctx, enter: bool) -> Vec<Gate> {
        let mut out = Vec::new();
        for item in items {
            let gate = match item {
                GateItem::Cond(cond) if enter => {
                    eval_cond(cond, &ctx.scope(), self.facts, &mut self.diags).map(|e| {
                        Gate::Condition {
                            text: e.text,
                            result: e.outcome,
                        }
                    })
                }
                GateItem::Cond(cond) => {
                    self.diags.push(
                        Diagnostic::new("conditions go in enter { }, not exit { }", cond.span)
                            .with_hint("exit gates are input, webhook and poll"),
                    );
                    None
                }
                GateItem::Input { message, args, .. } => self.input_gate(message, args, ctx),
                GateItem::Webhook { span, .. } | GateItem::Poll { span, .. } if enter => {
                    self.diags.push(
                        Diagnostic::new("webhook and poll gates go in exit { }", *span)
                            .with_hint("enter gates are conditions and input"),
                    );
                    None
                }
                GateItem::Webhook { fields, .. } => {
                    let mut f = self.fields(fields, &["description", "timeout"], "webhook");
                    let scope = ctx.scope();
                    let description = f
                        .remove("description")
                        .and_then(|e| scope.string(e, "a description", &mut self.diags));
                    let timeout = f
                        .remove("timeout")
                        .and_then(|e| scope.duration(e, &mut self.diags));
                    Some(Gate::Webhook {
                        description,
                        timeout,
                    })
                }
                GateItem::Poll { fields, span } => self.poll_gate(fields, *span, ctx),
            };
            out.extend(gate);
        }
        out
    }

    fn input_gate(
        &mut self,
        message: &ast::Expr,
        args: &[(Ident, ast::Expr)],
        ctx: &Ctx,
    ) -> Option<Gate> {
        let scope = ctx.scope();
        let message = scope.string(message, "an input message", &mut self.diags);
        let mut f = self.fields(args, &["approvers", "timeout"], "input");
        let approvers = match f.remove("approvers") {
            Some(e) => scope.strings(e, "approvers", &mut self.diags)?,
            None => Vec::new(),
        };
        let timeout = f
            .remove("timeout")
            .and_then(|e| scope.duration(e, &mut self.diags));
        Some(Gate::Input {
            message: message?,
            approvers,
            timeout,
        })
    }

    fn poll_gate(&mut self, fields: &[(Ident, ast::Expr)], span: Span, ctx: &Ctx) -> Option<Gate> {
        let scope = ctx.scope();
        let mut f = self.fields(fields, &["command", "url", "every", "timeout"], "poll");
        let command = f
            .remove("command")
            .and_then(|e| scope.string(e, "a poll command", &mut self.diags));
        let url = f
            .remove("url")
            .and_then(|e| scope.string(e, "a poll url", &mut self.diags));
        let every = f
            .remove("every")
            .and_then(|e| scope.duration(e, &mut self.diags));
        let timeout = f
            .remove("timeout")
            .and_then(|e| scope.duration(e, &mut self.diags));
        let named = fields
            .iter()
            .filter(|(k, _)| k.name == "command" || k.name == "url")
            .count();
        if named != 1 {
            self.diags.push(
                Diagnostic::new("a poll gate needs either command or url", span)
                    .with_hint("poll { command = './healthy.sh'  every = '10s'  timeout = '5m' }"),
            );
            return None;
        }
        Some(Gate::Poll {
            command,
            url,
            every,
            timeout,
        })
    }

    /// Checks `key = value` fields against the allowed names; returns them by name.
    fn fields<'e>(
        &mut self,
        fields: &'e [(Ident, ast::Expr)],
        allowed: &[&str],
        what: &str,
    ) -> BTreeMap<&'e str, &'e ast::Expr> {
        let mut out = BTreeMap::new();
        for (key, expr) in fields {
            if !allowed.contains(&key.name.as_str()) {
                let mut d =
                    Diagnostic::new(format!("{what} has no field '{}'", key.name), key.span);
                d.hint = Some(match closest(&key.name, allowed.iter().copied()) {
                    Some(best) => format!("did you mean '{best}'?"),
                    None => format!("{what} takes {}", allowed.join(", ")),
                });
                self.diags.push(d);
            } else if out.insert(key.name.as_str(), expr).is_some() {
                self.diags.push(Diagnostic::new(
                    format!("'{}' is given twice", key.name),
                    key.span,
                ));
            }
        }
        out
    }

    /// Evaluates `cache { }` entries: definitions now, uses resolved after expansion.
    fn caches(
        &mut self,
        entries: &[CacheEntry],
        ctx: &Ctx,
    ) -> (Vec<(plan::Cache, Span)>, Vec<Ident>) {
        let scope = ctx.scope();
        let mut defs = Vec::new();
        let mut uses = Vec::new();
        for entry in entries {
            match entry {
                CacheEntry::Define { name, paths, key } => {
                    let paths = scope.strings(paths, "cache paths", &mut self.diags);
                    let key_files = match key {
                        Some(key) => scope.strings(key, "cache key files", &mut self.diags),
                        None => Some(Vec::new()),
                    };
                    if let (Some(paths), Some(key_files)) = (paths, key_files) {
                        let cache = plan::Cache {
                            name: name.name.clone(),
                            paths,
                            key_files,
                            defined_here: true,
                        };
                        defs.push((cache, name.span));
                    }
                }
                CacheEntry::Use(name) => uses.push(name.clone()),
            }
        }
        (defs, uses)
    }

    /// Evaluates and checks steps; a library step becomes the steps it defines.
    pub(crate) fn steps(&mut self, steps: &[ast::Step], ctx: &Ctx) -> Vec<plan::Step> {
        let mut out = Vec::new();
        for step in steps {
            if self.library_steps >= MAX_LIBRARY_STEPS {
                break;
            }
            if self.catalog.get(&step.symbol.name).is_none()
                && let Some(found) = self.find_step_def(ctx.file, &step.symbol)
            {
                self.library_step(step, ctx, found, &mut out);
            } else {
                out.extend(self.step(step, ctx));
            }
        }
        out
    }

    /// The steps of a `notify` block, and its messages: `slack` and `webhook` are messages
    /// the node sends, unless a step package or a library step of that name is there (the
    /// step the Ottofile's author brought wins).
    fn notify_steps(
        &mut self,
        steps: &[ast::Step],
        ctx: &Ctx,
    ) -> (Vec<plan::Step>, Vec<plan::Message>) {
        let mut plain = Vec::new();
        let mut messages = Vec::new();
        for step in steps {
            let name = step.symbol.name.as_str();
            let message = matches!(name, "slack" | "webhook")
                && self.catalog.get(name).is_none()
                && self.find_step_def(ctx.file, &step.symbol).is_none();
            if message {
                messages.extend(self.message(step, ctx));
            } else {
                plain.extend(self.steps(std::slice::from_ref(step), ctx));
            }
        }
        (plain, messages)
    }

    /// `slack ['text'] [, channel: '#c'] [, text: '...']` or `webhook url: 'https://…'`
    /// (or `webhook 'https://…'`).
    fn message(&mut self, step: &ast::Step, ctx: &Ctx) -> Option<plan::Message> {
        let scope = ctx.scope();
        let name = step.symbol.name.as_str();
        if step.block.is_some() {
            self.diags.push(
                Diagnostic::new(format!("`{name}` takes no block"), step.span)
                    .with_label("a message, not a step with steps"),
            );
            return None;
        }
        let (first, keywords): (&str, &[&str]) = match name {
            "slack" => ("text", &["channel", "text"]),
            _ => ("url", &["url"]),
        };
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        let before = self.diags.len();
        for (i, arg) in step.args.iter().enumerate() {
            if i > 0 {
                self.diags.push(Diagnostic::new(
                    format!("`{name}` takes one positional argument, its {first}"),
                    arg.span,
                ));
                continue;
            }
            if let Some(v) = scope.string(arg, &format!("{name}'s {first}"), &mut self.diags) {
                values.insert(first.to_owned(), v);
            }
        }
        for (key, arg) in &step.kwargs {
            if !keywords.contains(&key.name.as_str()) {
                self.diags.push(
                    Diagnostic::new(format!("`{name}` has no argument `{}`", key.name), key.span)
                        .with_label(format!("expected {}", keywords.join(" or "))),
                );
                continue;
            }
            if let Some(v) = scope.string(arg, &format!("{name}'s {}", key.name), &mut self.diags) {
                values.insert(key.name.clone(), v);
            }
        }
        if self.diags.len() > before {
            return None;
        }
        if name == "slack" {
            return Some(plan::Message::Slack {
                channel: values.remove("channel"),
                text: values.remove("text"),
            });
        }
        let Some(url) = values.remove("url") else {
            self.diags.push(
                Diagnostic::new("`webhook` needs `url: 'https://…'`", step.span)
                    .with_label("the URL the node's operator allows"),
            );
            return None;
        };
        if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2048 {
            self.diags.push(
                Diagnostic::new("a webhook's url must be an http or https URL", step.span)
                    .with_label("e.g. url: 'https://hooks.example.com/otto'"),
            );
            return None;
        }
        Some(plan::Message::Webhook { url })
    }

    /// The `step { }` definition a step's symbol names: in this file or in a library it
    /// uses (or belongs to). `None` (nothing reported) when there is none; reported when
    /// there are several.
    fn find_step_def(&mut self, file: FileId, symbol: &Ident) -> Option<(FileId, usize)> {
        let unit = self.loaded.unit(file)?;
        let mut files = vec![file];
        for &lib in unit.member_of.iter().chain(&unit.uses) {
            if let Some(lib) = self.loaded.libraries.get(lib) {
                files.extend(&lib.files);
            }
        }
        let mut found: Vec<(FileId, usize)> = Vec::new();
        for f in files {
            let Some(u) = self.loaded.unit(f) else {
                continue;
            };
            for (i, def) in u.ast.step_defs.iter().enumerate() {
                if step_def_name(def, &u.rel) == symbol.name && !found.contains(&(f, i)) {
                    found.push((f, i));
                }
            }
        }
        if found.len() > 1 {
            let places: Vec<&str> = found
                .iter()
                .filter_map(|(f, _)| self.loaded.unit(*f).map(|u| u.display.as_str()))
                .collect();
            let message = format!(
                "step '{}' is defined in more than one place: {}",
                symbol.name,
                places.join(", ")
            );
            self.diags.push(Diagnostic::new(message, symbol.span));
            return None;
        }
        found.pop()
    }

    /// Expands `slack 'text'` into the steps of the library's `step { }`, its vars bound
    /// from positional arguments (in declaration order), keyword arguments, the pipeline's
    /// `configure { slack { ... } }` and defaults.
    fn library_step(
        &mut self,
        step: &ast::Step,
        ctx: &Ctx,
        (file, index): (FileId, usize),
        out: &mut Vec<plan::Step>,
    ) {
        let loaded = self.loaded;
        let Some(def) = loaded.unit(file).and_then(|u| u.ast.step_defs.get(index)) else {
            return;
        };
        let name = &step.symbol.name;
        if ctx.step_chain.contains(&(file, index)) || ctx.depth >= MAX_DEPTH {
            self.diags.push(
                Diagnostic::new(format!("step '{name}' uses itself"), step.symbol.span)
                    .with_label("a library step that is already being expanded"),
            );
            return;
        }
        if self.library_steps >= MAX_LIBRARY_STEPS {
            return;
        }
        let before = self.diags.len();
        if step.block.is_some() {
            self.diags.push(Diagnostic::new(
                format!("'{name}' takes no block of steps"),
                step.span,
            ));
        }
        let scope = ctx.scope();
        let mut given: BTreeMap<String, (Val, Option<Span>)> = BTreeMap::new();
        if step.args.len() > def.vars.len() {
            let n = def.vars.len();
            let span = step.args.get(n).map_or(step.span, |a| a.span);
            self.diags.push(Diagnostic::new(
                format!(
                    "'{name}' takes {n} positional argument{}, got {}",
                    if n == 1 { "" } else { "s" },
                    step.args.len()
                ),
                span,
            ));
        }
        for (expr, decl) in step.args.iter().zip(&def.vars) {
            if let Some(value) = scope.eval(expr, &mut self.diags) {
                given.insert(decl.name.name.clone(), (value, Some(expr.span)));
            }
        }
        for (key, expr) in &step.kwargs {
            if !def.vars.iter().any(|v| v.name.name == key.name) {
                let mut d =
                    Diagnostic::new(format!("step '{name}' has no var '{}'", key.name), key.span);
                let names = def.vars.iter().map(|v| v.name.name.as_str());
                if let Some(best) = closest(&key.name, names) {
                    d = d.with_hint(format!("did you mean '{best}'?"));
                }
                self.diags.push(d);
            } else if given.contains_key(&key.name) {
                self.diags.push(Diagnostic::new(
                    format!("var '{}' is given twice", key.name),
                    key.span,
                ));
            } else if let Some(value) = scope.eval(expr, &mut self.diags) {
                given.insert(key.name.clone(), (value, Some(expr.span)));
            }
        }
        if let Some(serde_json::Value::Object(configured)) = self.config.get(name.as_str()) {
            for decl in &def.vars {
                let var = &decl.name.name;
                if given.contains_key(var) {
                    continue;
                }
                if let Some(value) = configured.get(var).and_then(Val::from_json) {
                    given.insert(var.clone(), (value, None));
                }
            }
        }
        let hint = |var: &str| {
            format!(
                "pass it ({name} {var}: ...) or configure it: configure {{ {name} {{ {var} = ... }} }}"
            )
        };
        let vars = bind_vars(
            format!("step '{name}'"),
            &def.vars,
            given,
            hint,
            Some(step.span),
            &mut self.diags,
        );
        if self.diags.len() > before {
            return;
        }
        let mut inner = ctx.clone();
        inner.file = file;
        inner.vars = Rc::new(vars);
        inner.it = None;
        inner.step_chain.push((file, index));
        inner.depth += 1;
        let steps = self.steps(&def.steps, &inner);
        self.library_steps += steps.len().max(1);
        if self.library_steps >= MAX_LIBRARY_STEPS {
            if !self
                .diags
                .iter()
                .any(|d| d.message.starts_with("library steps expand"))
            {
                self.diags.push(Diagnostic::new(
                    format!("library steps expand to more than {MAX_LIBRARY_STEPS} steps"),
                    step.span,
                ));
            }
            return;
        }
        out.extend(steps);
    }

    fn step(&mut self, step: &ast::Step, ctx: &Ctx) -> Option<plan::Step> {
        let scope = ctx.scope();
        let before = self.diags.len();
        let args: Vec<(serde_json::Value, Span)> = step
            .args
            .iter()
            .filter_map(|a| {
                scope
                    .eval(a, &mut self.diags)
                    .map(|v| (v.to_json(), a.span))
            })
            .collect();
        let kwargs: Vec<(&Ident, serde_json::Value, Span)> = step
            .kwargs
            .iter()
            .filter_map(|(k, a)| {
                scope
                    .eval(a, &mut self.diags)
                    .map(|v| (k, v.to_json(), a.span))
            })
            .collect();
        let block = step.block.as_ref().map(|b| self.steps(b, ctx));
        if self.diags.len() > before {
            return None;
        }
        let call = StepCall {
            symbol: &step.symbol,
            args: &args,
            kwargs: &kwargs,
            has_block: step.block.is_some(),
            span: step.span,
        };
        let problems = self.catalog.check(&call);
        if !problems.is_empty() {
            self.diags.extend(problems);
            return None;
        }
        Some(plan::Step {
            symbol: step.symbol.name.clone(),
            args: args.into_iter().map(|(v, _)| v).collect(),
            kwargs: kwargs
                .into_iter()
                .map(|(k, v, _)| (k.name.clone(), v))
                .collect(),
            block: block.unwrap_or_default(),
        })
    }
}

/// The name of a library step: `name = '...'`, or its file's name without `.otto`.
fn step_def_name(def: &ast::StepDef, rel: &std::path::Path) -> String {
    match &def.name {
        Some(name) => name.value.clone(),
        None => rel
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}
