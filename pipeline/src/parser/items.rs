//! Top-level items: `use`, `configure`, `environments`, `triggers`, `concurrency`, `vars`, `blueprint`, `pipeline`,
//! and stage items written at top level.

use super::stage::item_span;
use super::{Items, PResult, Parser};
use crate::ast::{
    Blueprint, ConfigEntry, Environment, ExprKind, File, Pipeline, StageItem, StepDef, Str, Use,
    VarDecl, VarType,
};
use crate::diagnostic::Diagnostic;
use crate::lexer::TokenKind;
use crate::span::Span;

/// The keywords that start a top-level item (stage items aside).
pub(crate) const FILE_KEYWORDS: &[&str] = &[
    "use",
    "configure",
    "environments",
    "triggers",
    "concurrency",
    "vars",
    "blueprint",
    "step",
    "pipeline",
    "stage",
    "parallel",
    "each",
    "from",
    "stages",
    "steps",
];

/// What a `pipeline { }` or `blueprint { }` body takes besides stages and `name`.
enum Container<'a> {
    /// A pipeline's `concurrency { }`.
    Pipeline(&'a mut Option<crate::ast::Concurrency>),
    /// A blueprint's `vars { }`.
    Blueprint(&'a mut Vec<VarDecl>),
}

/// What the top level has collected so far.
#[derive(Default)]
struct TopLevel {
    file: File,
    /// The first `pipeline { }` block.
    explicit: Option<Pipeline>,
    /// Stage items written at top level.
    implicit: Vec<StageItem>,
    /// Both of the above were written (reported once).
    conflict_reported: bool,
}

impl Parser<'_> {
    /// Parses the whole text.
    pub(crate) fn file(&mut self) -> File {
        let mut top = TopLevel::default();
        loop {
            match self.peek_kind() {
                TokenKind::Eof => break,
                TokenKind::RBrace => {
                    let span = self.bump().span;
                    self.report(
                        Diagnostic::new("unexpected `}`", span)
                            .with_label("no block is open here")
                            .with_hint("remove it, or look for a missing `{` above"),
                    );
                    continue;
                }
                _ => {}
            }
            let started = self.consumed;
            let depth = self.depth;
            let result = self.file_item(&mut top);
            self.depth = depth;
            if result.is_err() {
                self.recover(Items::File, started);
            }
        }
        let mut file = top.file;
        file.pipeline = match top.explicit {
            Some(pipeline) => Some(pipeline),
            None => implicit_pipeline(top.implicit),
        };
        file
    }

    fn file_item(&mut self, top: &mut TopLevel) -> PResult<()> {
        let Some(keyword) = self.peek_ident() else {
            let want = format!(
                "a top-level item ({})",
                super::expr::list_words(FILE_KEYWORDS)
            );
            return Err(self.error_expected(&want, "", None));
        };
        match keyword {
            "use" => {
                self.bump();
                self.uses(&mut top.file.uses)?;
            }
            "configure" => {
                self.bump();
                let entries = self.config_entries("after `configure`")?;
                top.file.configure.extend(entries);
            }
            "environments" => {
                self.bump();
                self.environments(&mut top.file.environments)?;
            }
            "triggers" => {
                self.bump();
                let entries = self.config_entries("after `triggers`")?;
                top.file.triggers.extend(entries);
            }
            "concurrency" => {
                let concurrency = self.concurrency()?;
                self.set_concurrency(&mut top.file.concurrency, concurrency, "this pipeline");
            }
            "vars" => {
                self.bump();
                let vars = self.vars()?;
                top.file.vars.extend(vars);
            }
            "blueprint" => {
                let blueprint = self.blueprint()?;
                top.file.blueprints.push(blueprint);
            }
            "step" => {
                let def = self.step_def()?;
                top.file.step_defs.push(def);
            }
            "pipeline" => self.pipeline(top)?,
            "steps" => {
                let item = self.unnamed_stage()?;
                self.top_level_stage_item(top, item);
            }
            _ => {
                let mut items = Vec::new();
                match self.stage_item(&mut items) {
                    Some(result) => {
                        for item in items {
                            self.top_level_stage_item(top, item);
                        }
                        result?;
                    }
                    None => {
                        let fail = self.unknown_keyword("the file", FILE_KEYWORDS);
                        if keyword == "name" {
                            self.attach_hint(
                                "a pipeline's name is set inside it: pipeline { name = '...' ... }",
                            );
                        }
                        return Err(fail);
                    }
                }
            }
        }
        Ok(())
    }

    /// Sets the hint of the last diagnostic when it has none.
    fn attach_hint(&mut self, hint: &str) {
        if let Some(last) = self.diagnostics.last_mut()
            && last.hint.is_none()
        {
            last.hint = Some(hint.to_owned());
        }
    }

    fn top_level_stage_item(&mut self, top: &mut TopLevel, item: StageItem) {
        if let Some(pipeline) = &top.explicit {
            let first = pipeline.span;
            self.pipeline_conflict(&mut top.conflict_reported, item_span(&item), first);
            return;
        }
        top.implicit.push(item);
    }

    fn pipeline_conflict(&mut self, reported: &mut bool, span: Span, other: Span) {
        if std::mem::replace(reported, true) {
            return;
        }
        let hint = format!(
            "a file has one pipeline: put all stages inside the `pipeline` block, or drop the wrapper (the other part is at {})",
            self.position(other.start)
        );
        self.report(
            Diagnostic::new(
                "stages are written both inside and outside a `pipeline` block",
                Span::new(
                    span.file,
                    span.start,
                    span.start.max(span.end.min(span.start + 1)),
                ),
            )
            .with_label("second pipeline")
            .with_hint(hint),
        );
    }

    fn pipeline(&mut self, top: &mut TopLevel) -> PResult<()> {
        let start = self.bump().span;
        let mut pipeline = Pipeline {
            name: None,
            items: Vec::new(),
            span: start,
        };
        let mut concurrency = None;
        self.stages_container(
            "after `pipeline`",
            "a pipeline",
            &mut pipeline.name,
            &mut pipeline.items,
            Container::Pipeline(&mut concurrency),
        )?;
        if let Some(concurrency) = concurrency {
            self.set_concurrency(&mut top.file.concurrency, concurrency, "this pipeline");
        }
        pipeline.span = self.span_from(start);
        if let Some(first) = &top.explicit {
            let first = first.span;
            let hint = format!(
                "a file has one pipeline; the first `pipeline` block is at {}",
                self.position(first.start)
            );
            self.report(
                Diagnostic::new("a second `pipeline` block", start)
                    .with_label("second pipeline")
                    .with_hint(hint),
            );
            return Ok(());
        }
        if let Some(first) = top.implicit.first() {
            let first = item_span(first);
            self.pipeline_conflict(&mut top.conflict_reported, start, first);
        }
        top.explicit = Some(pipeline);
        Ok(())
    }

    fn blueprint(&mut self) -> PResult<Blueprint> {
        let start = self.bump().span;
        let mut blueprint = Blueprint {
            name: None,
            vars: Vec::new(),
            items: Vec::new(),
            span: start,
        };
        self.stages_container(
            "after `blueprint`",
            "a blueprint",
            &mut blueprint.name,
            &mut blueprint.items,
            Container::Blueprint(&mut blueprint.vars),
        )?;
        blueprint.span = self.span_from(start);
        Ok(blueprint)
    }

    /// `step { name = '...'  vars { }  steps { } }`.
    fn step_def(&mut self) -> PResult<StepDef> {
        const KNOWN: &[&str] = &["name", "vars", "steps"];
        let start = self.bump().span;
        let mut def = StepDef {
            name: None,
            vars: Vec::new(),
            steps: Vec::new(),
            span: start,
        };
        self.block("after `step`", Items::Keywords(KNOWN), |p| {
            match p.peek_ident() {
                Some("name") => {
                    let key = p.bump().span;
                    p.expect(&TokenKind::Eq, "after `name`")?;
                    let value = p.string("after `name =`")?;
                    match &def.name {
                        Some(first) => {
                            let first = first.span;
                            p.duplicate("name =", "this step", key, first);
                        }
                        None => def.name = Some(value),
                    }
                }
                Some("vars") => {
                    p.bump();
                    let declared = p.vars()?;
                    def.vars.extend(declared);
                }
                Some("steps") => {
                    p.bump();
                    let steps = p.steps_block("after `steps`")?;
                    def.steps.extend(steps);
                }
                _ => return Err(p.unknown_keyword("a step definition", KNOWN)),
            }
            Ok(())
        })?;
        def.span = self.span_from(start);
        Ok(def)
    }

    /// The body of `pipeline { }` or `blueprint { }` (which also takes `vars`).
    fn stages_container(
        &mut self,
        after: &str,
        within: &str,
        name: &mut Option<Str>,
        items: &mut Vec<StageItem>,
        mut container: Container<'_>,
    ) -> PResult<()> {
        let known: &[&str] = match container {
            Container::Blueprint(_) => &[
                "name", "vars", "stages", "stage", "parallel", "each", "from", "steps",
            ],
            Container::Pipeline(_) => &[
                "name",
                "concurrency",
                "stages",
                "stage",
                "parallel",
                "each",
                "from",
                "steps",
            ],
        };
        self.block(after, Items::Stages, |p| {
            match p.peek_ident() {
                Some("name") => {
                    let key = p.bump().span;
                    p.expect(&TokenKind::Eq, "after `name`")?;
                    let value = p.string("after `name =`")?;
                    match name {
                        Some(first) => {
                            let first = first.span;
                            p.duplicate("name =", within, key, first);
                        }
                        None => *name = Some(value),
                    }
                }
                Some("vars") if matches!(container, Container::Blueprint(_)) => {
                    p.bump();
                    let declared = p.vars()?;
                    if let Container::Blueprint(vars) = &mut container {
                        vars.extend(declared);
                    }
                }
                Some("concurrency") if matches!(container, Container::Pipeline(_)) => {
                    let concurrency = p.concurrency()?;
                    if let Container::Pipeline(slot) = &mut container {
                        p.set_concurrency(slot, concurrency, "this pipeline");
                    }
                }
                Some("steps") => items.push(p.unnamed_stage()?),
                _ => match p.stage_item(items) {
                    Some(result) => result?,
                    None => return Err(p.unknown_keyword(within, known)),
                },
            }
            Ok(())
        })?;
        Ok(())
    }

    fn uses(&mut self, uses: &mut Vec<Use>) -> PResult<()> {
        self.block("after `use`", Items::Keywords(&["stdlib"]), |p| {
            let token = p.peek().clone();
            match token.kind {
                TokenKind::Ident("stdlib") => {
                    p.bump();
                    uses.push(Use::Stdlib(token.span));
                }
                TokenKind::Str(_) => {
                    let location = p.string("")?;
                    if is_relative(&location.value) {
                        if p.at_ident("sha256") || p.at_ident("commit") {
                            let span = p.peek().span;
                            let _ = p.pins()?;
                            p.report(
                                Diagnostic::new("an in-repository path is not pinned", p.span_from(span))
                                    .with_label("not needed")
                                    .with_hint("remove `sha256 '...'` and `commit '...'`: ./ and ../ paths are part of the repository"),
                            );
                        }
                        uses.push(Use::Path(location));
                    } else if p.at_ident("sha256") || p.at_ident("commit") {
                        let (sha256, commit, wrote_sha256) = p.pins()?;
                        match sha256 {
                            Some(sha256) => uses.push(Use::External {
                                location,
                                sha256,
                                commit,
                            }),
                            // A malformed digest is reported already.
                            None if wrote_sha256 => {}
                            None => p.report(
                                Diagnostic::new(
                                    "external library must be pinned: add sha256 '<digest>'",
                                    location.span,
                                )
                                .with_label("pinned to a commit, not to its content")
                                .with_hint("a commit names where the node fetches the library; its sha256 content digest is what the plan records"),
                            ),
                        }
                    } else if could_be_in_repo(&location.value) {
                        // `'blueprints/rubygem'`: in the repository when it exists there
                        // (the planner checks), else an unpinned external library.
                        uses.push(Use::Bare(location));
                    } else {
                        p.report(
                            Diagnostic::new(
                                "external library must be pinned: add sha256 '<digest>'",
                                location.span,
                            )
                            .with_label("not pinned")
                            .with_hint("in-repository paths start with ./ or ../; anything else is external and needs its sha256 content digest"),
                        );
                    }
                }
                _ => {
                    let hint = Some(
                        "write `stdlib`, './path/in/repo' or 'https://host/lib.git' commit '<id>' sha256 '<digest>'"
                            .to_owned(),
                    );
                    return Err(p.error_expected(
                        "`stdlib`, a './path' or a pinned external library",
                        "in `use`",
                        hint,
                    ));
                }
            }
            Ok(())
        })?;
        Ok(())
    }

    /// The pins after an external library's location, in either order: `sha256 '<digest>'`
    /// and `commit '<id>'`. Each is `None` when not written or malformed (reported); the
    /// last value says whether `sha256` was written.
    fn pins(&mut self) -> PResult<(Option<Str>, Option<Str>, bool)> {
        let (mut sha256, mut commit) = (None, None);
        let mut seen = (false, false);
        while self.at_ident("sha256") || self.at_ident("commit") {
            let keyword = self.bump();
            let is_commit = matches!(keyword.kind, TokenKind::Ident("commit"));
            let value = self.string(if is_commit {
                "after `commit`"
            } else {
                "after `sha256`"
            })?;
            let twice = if is_commit { &mut seen.1 } else { &mut seen.0 };
            if std::mem::replace(twice, true) {
                self.report(
                    Diagnostic::new("this pin is written twice", self.span_from(keyword.span))
                        .with_label("written twice")
                        .with_hint("a library has one content digest and at most one commit"),
                );
                continue;
            }
            if is_commit {
                if self.check_commit(&value) {
                    commit = Some(value);
                }
            } else if self.check_digest(&value) {
                sha256 = Some(value);
            }
        }
        Ok((sha256, commit, seen.0))
    }

    /// Reports a commit pin that is not a full commit id (40 or 64 lowercase hex digits);
    /// returns whether it is good.
    fn check_commit(&mut self, commit: &Str) -> bool {
        let value = &commit.value;
        let hex = value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if matches!(value.len(), 40 | 64) && hex {
            return true;
        }
        let hint = if value.bytes().any(|b| b.is_ascii_uppercase())
            && matches!(value.len(), 40 | 64)
        {
            "write the commit id in lowercase".to_owned()
        } else {
            format!(
                "'{}' is no full commit id: a branch, a tag or a short id can move or become ambiguous; write the 40 hex digits `git rev-parse` prints",
                value
            )
        };
        self.report(
            Diagnostic::new("malformed commit pin", commit.span)
                .with_label("expected a full commit id")
                .with_hint(hint),
        );
        false
    }

    /// Reports a digest that is not 64 lowercase hex digits; returns whether it is good.
    fn check_digest(&mut self, digest: &Str) -> bool {
        let value = &digest.value;
        let problem = if value.starts_with("sha256:") {
            Some("write only the 64 hex digits, without `sha256:`".to_owned())
        } else if value.len() != 64 {
            Some(format!("it has {} characters", value.chars().count()))
        } else if value.bytes().any(|b| b.is_ascii_uppercase()) {
            Some("write the digest in lowercase".to_owned())
        } else if !value.bytes().all(|b| b.is_ascii_hexdigit()) {
            Some("only the digits 0-9 and a-f may appear".to_owned())
        } else {
            None
        };
        match problem {
            None => true,
            Some(hint) => {
                self.report(
                    Diagnostic::new("malformed sha256 digest", digest.span)
                        .with_label("expected 64 lowercase hexadecimal digits")
                        .with_hint(hint),
                );
                false
            }
        }
    }

    /// `{ key = value  key { ... } }` (after the opening keyword or key).
    fn config_entries(&mut self, after: &str) -> PResult<Vec<ConfigEntry>> {
        let mut entries = Vec::new();
        self.block(after, Items::Entries, |p| {
            let key = p.ident("a setting name", "")?;
            if p.eat(&TokenKind::Eq).is_some() {
                let value = p.value()?;
                entries.push(ConfigEntry::Set { key, value });
            } else if p.at(&TokenKind::LBrace) {
                let after = format!("after `{}`", key.name);
                let nested = p.config_entries(&after)?;
                entries.push(ConfigEntry::Block {
                    key,
                    entries: nested,
                });
            } else {
                let after = format!("after `{}`", key.name);
                return Err(p.error_expected("`=` or `{`", &after, None));
            }
            Ok(())
        })?;
        Ok(entries)
    }

    fn environments(&mut self, environments: &mut Vec<Environment>) -> PResult<()> {
        self.block("after `environments`", Items::Entries, |p| {
            let name = p.ident("an environment name", "")?;
            let mut environment = Environment {
                name,
                settings: Vec::new(),
                secrets: Vec::new(),
                inline_secret_values: Vec::new(),
                span: Span::default(),
            };
            let after = format!("after `{}`", environment.name.name);
            p.block(&after, Items::Keywords(&["settings", "secrets"]), |p| {
                match p.peek_ident() {
                    Some("settings") => {
                        p.bump();
                        let settings = &mut environment.settings;
                        p.block("after `settings`", Items::Entries, |p| {
                            settings.push(p.assignment("a setting name")?);
                            Ok(())
                        })?;
                    }
                    Some("secrets") => {
                        p.bump();
                        let env = &mut environment;
                        p.block("after `secrets`", Items::AnyIdent, |p| {
                            let name = p.ident("a secret name", "")?;
                            if p.eat(&TokenKind::Eq).is_some() {
                                // The value is dropped: it must never reach a plan. The
                                // planner reports the entry.
                                let _ = p.value()?;
                                env.inline_secret_values.push(p.span_from(name.span));
                            } else {
                                env.secrets.push(name);
                            }
                            Ok(())
                        })?;
                    }
                    _ => return Err(p.unknown_keyword("an environment", &["settings", "secrets"])),
                }
                Ok(())
            })?;
            environment.span = p.span_from(environment.name.span);
            environments.push(environment);
            Ok(())
        })?;
        Ok(())
    }

    /// `{ NAME { type ... default ... description ... }  NAME = value }` after `vars`.
    pub(crate) fn vars(&mut self) -> PResult<Vec<VarDecl>> {
        let mut vars = Vec::new();
        self.block("after `vars`", Items::Entries, |p| {
            let name = p.ident("a var name", "")?;
            if p.eat(&TokenKind::Eq).is_some() {
                let default = p.value()?;
                let ty = match default.kind {
                    ExprKind::Int(_) => VarType::Number,
                    ExprKind::Bool(_) => VarType::Bool,
                    ExprKind::List(_) => VarType::List,
                    _ => VarType::String,
                };
                vars.push(VarDecl {
                    span: p.span_from(name.span),
                    name,
                    ty,
                    default: Some(default),
                    description: None,
                });
                return Ok(());
            }
            if !p.at(&TokenKind::LBrace) {
                let after = format!("after the var name `{}`", name.name);
                let hint = Some(format!(
                    "declare it as {0} {{ type string  default '...' }} or {0} = 'default'",
                    name.name
                ));
                return Err(p.error_expected("`{` or `=`", &after, hint));
            }
            let mut decl = VarDecl {
                name,
                ty: VarType::String,
                default: None,
                description: None,
                span: Span::default(),
            };
            let mut ty_span: Option<Span> = None;
            let after = format!("after `{}`", decl.name.name);
            p.block(
                &after,
                Items::Keywords(&["type", "default", "description"]),
                |p| p.var_field(&mut decl, &mut ty_span),
            )?;
            decl.span = p.span_from(decl.name.span);
            vars.push(decl);
            Ok(())
        })?;
        Ok(vars)
    }

    fn var_field(&mut self, decl: &mut VarDecl, ty_span: &mut Option<Span>) -> PResult<()> {
        const TYPES: &[&str] = &["string", "number", "bool", "list"];
        let Some(keyword @ ("type" | "default" | "description")) = self.peek_ident() else {
            return Err(
                self.unknown_keyword("a var declaration", &["type", "default", "description"])
            );
        };
        let key = self.bump().span;
        // `default = 'x'` reads as well as `default 'x'`.
        self.eat(&TokenKind::Eq);
        let first = match keyword {
            "type" => {
                let ty = self.peek().clone();
                let ty = match ty.kind {
                    TokenKind::Ident("string") => VarType::String,
                    TokenKind::Ident("number") => VarType::Number,
                    // `boolean` is how the original Otto examples spell it.
                    TokenKind::Ident("bool" | "boolean") => VarType::Bool,
                    TokenKind::Ident("list") => VarType::List,
                    TokenKind::Ident(other) => {
                        let mut diagnostic =
                            Diagnostic::new(format!("unknown var type `{other}`"), ty.span)
                                .with_label("expected `string`, `number`, `bool` or `list`");
                        if let Some(best) = super::expr::did_you_mean(other, TYPES) {
                            diagnostic = diagnostic.with_hint(format!("did you mean `{best}`?"));
                        }
                        self.report(diagnostic);
                        self.bump();
                        return Ok(());
                    }
                    _ => {
                        return Err(self.error_expected(
                            "a type (`string`, `number`, `bool` or `list`)",
                            "after `type`",
                            None,
                        ));
                    }
                };
                self.bump();
                let first = *ty_span;
                if first.is_none() {
                    *ty_span = Some(key);
                    decl.ty = ty;
                }
                first
            }
            "default" => {
                let value = self.value()?;
                let first = decl.default.as_ref().map(|d| d.span);
                if first.is_none() {
                    decl.default = Some(value);
                }
                first
            }
            _ => {
                let value = self.string("after `description`")?;
                let first = decl.description.as_ref().map(|d| d.span);
                if first.is_none() {
                    decl.description = Some(value);
                }
                first
            }
        };
        if let Some(first) = first {
            let within = format!("the var `{}`", decl.name.name);
            self.duplicate(keyword, &within, key, first);
        }
        Ok(())
    }
}

/// Whether a `use` location names a path in the repository.
fn is_relative(location: &str) -> bool {
    location.starts_with("./") || location.starts_with("../") || location == "." || location == ".."
}

/// Whether an unpinned `use` location that is not `./`-relative may still name a path in
/// the repository: no URL scheme, not absolute, no `:` (as in `git@host:lib`), no `\\`.
pub(crate) fn could_be_in_repo(location: &str) -> bool {
    !location.is_empty()
        && !location.starts_with('/')
        && !location.contains(':')
        && !location.contains('\\')
}

/// The pipeline formed by stage items written at top level.
fn implicit_pipeline(items: Vec<StageItem>) -> Option<Pipeline> {
    let first = item_span(items.first()?);
    let last = items.last().map_or(first, item_span);
    Some(Pipeline {
        name: None,
        items,
        span: first.to(last),
    })
}
