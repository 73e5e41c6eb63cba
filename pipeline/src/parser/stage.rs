//! Stage items and stage bodies: `stage`, `parallel`, `each`, `from`, `stages`, and what
//! a stage holds (`runtime`, `cache`, `gates`, `steps`, `notify`, ...).

use super::{Fail, Items, PResult, Parser};
use crate::ast::{
    CacheEntry, Concurrency, Expr, ExprKind, GateItem, Ident, Notify, Runtime, Stage, StageItem,
    Step,
};
use crate::diagnostic::Diagnostic;
use crate::lexer::TokenKind;
use crate::span::Span;

/// The keywords of a stage body.
pub(crate) const BODY_KEYWORDS: &[&str] = &[
    "name",
    "owner",
    "timeout",
    "uses",
    "environment",
    "when",
    "runtime",
    "cache",
    "gates",
    "steps",
    "notify",
    "concurrency",
    "before",
    "feedback",
    "stage",
    "parallel",
    "each",
    "from",
    "stages",
];

/// The keywords that start a stage item.
pub(crate) const STAGE_ITEM_KEYWORDS: &[&str] = &["stage", "parallel", "each", "from", "stages"];

/// The identifiers that start an item of a gate block (for recovery).
const GATE_STARTS: &[&str] = &[
    "input",
    "webhook",
    "poll",
    "true",
    "false",
    "vars",
    "branch",
    "tag",
    "environment",
    "commit",
];

/// Where single-valued keys of a stage were first set.
#[derive(Default)]
struct Seen {
    name: Option<Span>,
    owner: Option<Span>,
    timeout: Option<Span>,
    environment: Option<Span>,
    runtime: Option<Span>,
}

/// The keys of a `concurrency { }` block.
const CONCURRENCY_KEYS: &[&str] = &["group", "cancel_in_progress"];

impl Parser<'_> {
    /// Parses a stage item into `items` when the next token starts one; `None` otherwise
    /// (nothing consumed).
    pub(crate) fn stage_item(&mut self, items: &mut Vec<StageItem>) -> Option<PResult<()>> {
        let result = match self.peek_ident()? {
            "stage" => self
                .stage()
                .map(|stage| items.push(StageItem::Stage(Box::new(stage)))),
            "parallel" => self.parallel().map(|item| items.push(item)),
            "each" => self.each().map(|item| items.push(item)),
            "from" => self.from().map(|item| items.push(item)),
            "stages" => {
                self.bump();
                self.stage_items_into(items, "after `stages`").map(|_| ())
            }
            _ => return None,
        };
        Some(result)
    }

    /// Parses `steps { }` standing where stage items stand: a stage without a name.
    pub(crate) fn unnamed_stage(&mut self) -> PResult<StageItem> {
        let start = self.bump().span;
        let steps = self.steps_block("after `steps`")?;
        Ok(StageItem::Stage(Box::new(Stage {
            steps,
            span: self.span_from(start),
            ..Stage::default()
        })))
    }

    /// Parses `{ stage items }`, appending to `items`.
    fn stage_items_into(&mut self, items: &mut Vec<StageItem>, after: &str) -> PResult<Span> {
        self.block(after, Items::Stages, |p| match p.stage_item(items) {
            Some(result) => result,
            None if p.at_ident("steps") => {
                let span = p.peek_span();
                p.report(
                    Diagnostic::new("`steps` must be inside a stage here", span)
                        .with_label("steps outside a stage")
                        .with_hint("write stage { name = '...'  steps { ... } }"),
                );
                Err(Fail)
            }
            None => Err(p.unknown_keyword("a list of stages", STAGE_ITEM_KEYWORDS)),
        })
    }

    fn parallel(&mut self) -> PResult<StageItem> {
        let start = self.bump().span;
        let mut items = Vec::new();
        self.stage_items_into(&mut items, "after `parallel`")?;
        Ok(StageItem::Parallel {
            items,
            span: self.span_from(start),
        })
    }

    fn each(&mut self) -> PResult<StageItem> {
        let start = self.bump().span;
        if !self.at(&TokenKind::LParen) {
            let hint = Some("list the values: each('linux', 'macos') { ... }".to_owned());
            return Err(self.error_expected("`(`", "after `each`", hint));
        }
        self.bump();
        let values = self.call_args("each")?;
        if values.is_empty() {
            let span = self.span_from(start);
            self.report(
                Diagnostic::new("`each` needs at least one value", span)
                    .with_label("no values")
                    .with_hint("list the values: each('linux', 'macos') { ... }"),
            );
        }
        let mut items = Vec::new();
        self.stage_items_into(&mut items, "after `each(...)`")?;
        Ok(StageItem::Each {
            values,
            items,
            span: self.span_from(start),
        })
    }

    fn from(&mut self) -> PResult<StageItem> {
        let start = self.bump().span;
        let target = self.string("after `from`")?;
        let mut args = Vec::new();
        if self.at(&TokenKind::LBrace) {
            self.block("after the blueprint", Items::Entries, |p| {
                let (key, value) = p.assignment("a var name")?;
                if let Some((first, _)) = args
                    .iter()
                    .find(|(k, _): &&(Ident, Expr)| k.name == key.name)
                {
                    let first = first.span;
                    p.duplicate(&key.name, "this `from`", key.span, first);
                }
                args.push((key, value));
                Ok(())
            })?;
        }
        Ok(StageItem::From {
            target,
            args,
            span: self.span_from(start),
        })
    }

    fn stage(&mut self) -> PResult<Stage> {
        let start = self.bump().span;
        let mut stage = Stage::default();
        let mut seen = Seen::default();
        if self.at(&TokenKind::LParen) {
            self.bump();
            let name = self.value()?;
            self.expect(&TokenKind::RParen, "after the stage name")?;
            seen.name = Some(name.span);
            stage.name = Some(name);
        } else if !self.at(&TokenKind::LBrace) {
            let hint = self.stage_name_hint();
            return Err(self.error_expected("`{`", "after `stage`", hint));
        }
        self.block("after `stage`", Items::StageBody, |p| {
            p.stage_body_item(&mut stage, &mut seen)
        })?;
        stage.span = self.span_from(start);
        Ok(stage)
    }

    /// For `stage 'x' {`, `stage name 'x' {` and `stage Build {`: how to name a stage.
    fn stage_name_hint(&mut self) -> Option<String> {
        let name = match (self.peek().kind.clone(), self.peek_at(1).kind.clone()) {
            (TokenKind::Str(name), _) => name,
            (TokenKind::Ident("name"), TokenKind::Str(name)) => name,
            (TokenKind::Ident(name), _) => name.to_owned(),
            _ => return None,
        };
        Some(format!(
            "write stage('{name}') {{ or name = '{name}' inside the block"
        ))
    }

    fn stage_body_item(&mut self, stage: &mut Stage, seen: &mut Seen) -> PResult<()> {
        let Some(keyword) = self.peek_ident() else {
            return Err(self.unknown_keyword("a stage body", BODY_KEYWORDS));
        };
        match keyword {
            "name" | "owner" | "timeout" => {
                let key = self.bump().span;
                let after = format!("after `{keyword}`");
                let hint = self
                    .at(&TokenKind::Colon)
                    .then(|| format!("write {keyword} = ..."));
                if self.eat(&TokenKind::Eq).is_none() {
                    return Err(self.error_expected("`=`", &after, hint));
                }
                let value = self.value()?;
                let (slot, first) = match keyword {
                    "name" => (&mut stage.name, &mut seen.name),
                    "owner" => (&mut stage.owner, &mut seen.owner),
                    _ => (&mut stage.timeout, &mut seen.timeout),
                };
                match first {
                    Some(first) => {
                        let first = *first;
                        self.duplicate(&format!("{keyword} ="), "this stage", key, first);
                    }
                    None => {
                        *first = Some(key);
                        *slot = Some(value);
                    }
                }
            }
            "uses" => {
                self.bump();
                stage.uses.push(self.value()?);
            }
            "environment" => {
                let key = self.bump().span;
                if self.eat(&TokenKind::Arrow).is_none() {
                    let hint =
                        Some("choose the stage's environment with environment -> NAME".to_owned());
                    return Err(self.error_expected("`->`", "after `environment`", hint));
                }
                let name = self.ident("an environment name", "after `->`")?;
                match seen.environment {
                    Some(first) => self.duplicate("environment ->", "this stage", key, first),
                    None => {
                        seen.environment = Some(key);
                        stage.environment = Some(name);
                    }
                }
            }
            "when" => {
                self.bump();
                let (when, when_from) = (&mut stage.when, &mut stage.when_from);
                self.block("after `when`", Items::AnyIdent, |p| {
                    // `from 'Stage'`: reuse that stage's conditions.
                    if p.at_ident("from") && matches!(p.peek_at(1).kind, TokenKind::Str(_)) {
                        p.bump();
                        when_from.push(p.string("after `from`")?);
                    } else {
                        when.push(p.cond()?);
                    }
                    Ok(())
                })?;
            }
            "runtime" => {
                let key = self.bump().span;
                if let Some(first) = seen.runtime {
                    self.duplicate("runtime", "this stage", key, first);
                }
                seen.runtime = Some(key);
                let runtime = stage.runtime.get_or_insert_with(Runtime::default);
                self.runtime(runtime)?;
            }
            "cache" => {
                self.bump();
                self.cache(&mut stage.caches)?;
            }
            "gates" => {
                self.bump();
                self.gates(&mut stage.enter, &mut stage.exit)?;
            }
            // The original Otto examples' spellings: `before { }` is an enter gate and
            // `feedback { }` an exit gate.
            "before" => {
                self.bump();
                let items = self.gate_items(GateBlock::Before)?;
                stage.enter.extend(items);
            }
            "feedback" => {
                self.bump();
                let items = self.gate_items(GateBlock::Feedback)?;
                stage.exit.extend(items);
            }
            "steps" => {
                self.bump();
                let steps = self.steps_block("after `steps`")?;
                stage.steps.extend(steps);
            }
            "notify" => {
                self.bump();
                self.notify(&mut stage.notify)?;
            }
            "concurrency" => {
                let concurrency = self.concurrency()?;
                self.set_concurrency(&mut stage.concurrency, concurrency, "this stage");
            }
            _ => match self.stage_item(&mut stage.children) {
                Some(result) => return result,
                None => return Err(self.unknown_keyword("a stage body", BODY_KEYWORDS)),
            },
        }
        Ok(())
    }

    /// `concurrency { group = '...'  cancel_in_progress = true }`, the keyword next. A group
    /// written as a string is checked here ([`crate::plan::check_group`]): an empty one, one
    /// too long or one with control characters is one diagnostic at the string.
    pub(crate) fn concurrency(&mut self) -> PResult<Concurrency> {
        let start = self.bump().span;
        let mut group: Option<Expr> = None;
        let mut cancel: Option<Expr> = None;
        let reported = self.diagnostics.len();
        self.block(
            "after `concurrency`",
            Items::Keywords(CONCURRENCY_KEYS),
            |p| {
                if p.peek_ident()
                    .is_some_and(|k| !CONCURRENCY_KEYS.contains(&k))
                {
                    return Err(p.unknown_keyword("`concurrency`", CONCURRENCY_KEYS));
                }
                let (key, value) = p.assignment("`group` or `cancel_in_progress`")?;
                if key.name == "group"
                    && let ExprKind::Str(name) = &value.kind
                    && let Err(why) = crate::plan::check_group(name)
                {
                    p.report(
                        Diagnostic::new(format!("bad concurrency group: {why}"), value.span)
                            .with_label("not a group name"),
                    );
                }
                let slot = if key.name == "group" {
                    &mut group
                } else {
                    &mut cancel
                };
                match slot {
                    Some(first) => {
                        let first = first.span;
                        p.duplicate(&key.name, "this `concurrency`", key.span, first);
                    }
                    None => *slot = Some(value),
                }
                Ok(())
            },
        )?;
        let span = self.span_from(start);
        if group.is_none() && self.diagnostics.len() == reported {
            self.report(
                Diagnostic::new("`concurrency` needs `group = ...`", span)
                    .with_label("no `group`")
                    .with_hint("write concurrency { group = 'deploy-production' }"),
            );
        }
        Ok(Concurrency {
            group,
            cancel_in_progress: cancel,
            span,
        })
    }

    /// Keeps the first `concurrency { }` of a stage or pipeline; a second is reported.
    pub(crate) fn set_concurrency(
        &mut self,
        slot: &mut Option<Concurrency>,
        concurrency: Concurrency,
        within: &str,
    ) {
        match slot {
            Some(first) => {
                let first = first.span;
                self.duplicate("concurrency", within, concurrency.span, first);
            }
            None => *slot = Some(concurrency),
        }
    }

    fn runtime(&mut self, runtime: &mut Runtime) -> PResult<()> {
        const KEYWORDS: &[&str] = &["from", "docker", "computer"];
        self.block("after `runtime`", Items::Keywords(KEYWORDS), |p| {
            let key = p.peek_span();
            match p.peek_ident() {
                Some("from") => {
                    p.bump();
                    let from = p.string("after `from`")?;
                    match &runtime.from {
                        Some(first) => {
                            let first = first.span;
                            p.duplicate("from", "this runtime", key, first);
                        }
                        None => runtime.from = Some(from),
                    }
                }
                Some(kind @ ("docker" | "computer")) => {
                    p.bump();
                    let field = if kind == "docker" { "image" } else { "label" };
                    let value = p.runtime_kind(kind, field, key)?;
                    let slot = if kind == "docker" {
                        &mut runtime.docker
                    } else {
                        &mut runtime.computer
                    };
                    match slot {
                        Some((_, first)) => {
                            let first = *first;
                            p.duplicate(kind, "this runtime", key, first);
                        }
                        None => *slot = value,
                    }
                }
                _ => return Err(p.unknown_keyword("a runtime", KEYWORDS)),
            }
            Ok(())
        })?;
        Ok(())
    }

    /// `{ field = value }` after `docker` or `computer`.
    fn runtime_kind(
        &mut self,
        kind: &str,
        field: &'static str,
        start: Span,
    ) -> PResult<Option<(Expr, Span)>> {
        let mut value: Option<Expr> = None;
        let reported = self.diagnostics.len();
        let after = format!("after `{kind}`");
        self.block(&after, Items::Entries, |p| {
            if p.peek_ident().is_some_and(|name| name != field) {
                let within = format!("`{kind}`");
                return Err(p.unknown_keyword(&within, &[field]));
            }
            let (key, v) = p.assignment("a setting")?;
            match &value {
                Some(first) => {
                    let first = first.span;
                    p.duplicate(field, &format!("`{kind}`"), key.span, first);
                }
                None => value = Some(v),
            }
            Ok(())
        })?;
        let span = self.span_from(start);
        // A missing field is not worth a second diagnostic after an error in the block.
        if value.is_none() && self.diagnostics.len() == reported {
            self.report(
                Diagnostic::new(format!("`{kind}` needs `{field} = ...`"), span)
                    .with_label(format!("no `{field}`"))
                    .with_hint(format!("write {kind} {{ {field} = '...' }}")),
            );
        }
        Ok(value.map(|v| (v, span)))
    }

    fn cache(&mut self, caches: &mut Vec<CacheEntry>) -> PResult<()> {
        self.block("after `cache`", Items::Entries, |p| {
            if p.peek_ident().is_none() {
                let hint = Some("define a cache with NAME = ['path'] or reuse one with use NAME".to_owned());
                return Err(p.error_expected("a cache name", "in `cache`", hint));
            }
            // `from 'gems'`, as the original Otto examples write `use gems`.
            if p.at_ident("from") && matches!(p.peek_at(1).kind, TokenKind::Str(_)) {
                p.bump();
                let name = p.string("after `from`")?;
                caches.push(CacheEntry::Use(Ident {
                    name: name.value,
                    span: name.span,
                }));
                return Ok(());
            }
            if p.at_ident("use") && p.peek_ident_at(1).is_some() {
                p.bump();
                let name = p.ident("a cache name", "after `use`")?;
                caches.push(CacheEntry::Use(name));
                return Ok(());
            }
            let name = p.ident("a cache name", "in `cache`")?;
            if p.eat(&TokenKind::Eq).is_some() {
                let paths = p.value()?;
                caches.push(CacheEntry::Define {
                    name,
                    paths,
                    key: None,
                });
                return Ok(());
            }
            if !p.at(&TokenKind::LBrace) {
                let after = format!("after the cache name `{}`", name.name);
                let hint = Some("define a cache with NAME = ['path'] or NAME { paths = [...]  key = [...] }, or reuse one with use NAME".to_owned());
                return Err(p.error_expected("`=` or `{`", &after, hint));
            }
            let mut paths: Option<Expr> = None;
            let reported = p.diagnostics.len();
            let mut key: Option<Expr> = None;
            let after = format!("after `{}`", name.name);
            p.block(&after, Items::Entries, |p| {
                if p.peek_ident().is_some_and(|k| k != "paths" && k != "key") {
                    return Err(p.unknown_keyword("a cache", &["paths", "key"]));
                }
                let (field, value) = p.assignment("`paths` or `key`")?;
                let slot = if field.name == "paths" { &mut paths } else { &mut key };
                match slot {
                    Some(first) => {
                        let first = first.span;
                        p.duplicate(&field.name, "this cache", field.span, first);
                    }
                    None => *slot = Some(value),
                }
                Ok(())
            })?;
            match paths {
                Some(paths) => caches.push(CacheEntry::Define { name, paths, key }),
                None if p.diagnostics.len() > reported => {}
                None => p.report(
                    Diagnostic::new(format!("cache `{}` needs `paths = [...]`", name.name), name.span)
                        .with_label("no `paths`")
                        .with_hint(format!("write {} {{ paths = ['dir/']  key = ['lockfile'] }}", name.name)),
                ),
            }
            Ok(())
        })?;
        Ok(())
    }

    fn gates(&mut self, enter: &mut Vec<GateItem>, exit: &mut Vec<GateItem>) -> PResult<()> {
        self.block("after `gates`", Items::Keywords(&["enter", "exit"]), |p| {
            match p.peek_ident() {
                Some("enter") => {
                    p.bump();
                    let items = p.gate_items(GateBlock::Enter)?;
                    enter.extend(items);
                }
                Some("exit") => {
                    p.bump();
                    let items = p.gate_items(GateBlock::Exit)?;
                    exit.extend(items);
                }
                _ => return Err(p.unknown_keyword("`gates`", &["enter", "exit"])),
            }
            Ok(())
        })?;
        Ok(())
    }

    /// The items of a gate block: `enter { }` / `before { }` or `exit { }` / `feedback { }`.
    fn gate_items(&mut self, block: GateBlock) -> PResult<Vec<GateItem>> {
        let mut items = Vec::new();
        let is_enter = matches!(block, GateBlock::Enter | GateBlock::Before);
        let after = format!("after `{}`", block.keyword());
        let after = after.as_str();
        self.block(after, Items::Keywords(GATE_STARTS), |p| {
            let next_is_call = p.peek_at(1).kind == TokenKind::LParen;
            match p.peek_ident() {
                Some("input") if !next_is_call => items.push(p.input()?),
                Some(kind @ ("webhook" | "poll")) if !next_is_call => {
                    let item = p.evented_gate(kind)?;
                    if is_enter {
                        let span = match &item {
                            GateItem::Webhook { span, .. } | GateItem::Poll { span, .. } => *span,
                            _ => p.peek_span(),
                        };
                        p.report(
                            Diagnostic::new(format!("a `{kind}` gate belongs in `exit`"), span)
                                .with_label("not allowed in an enter gate")
                                .with_hint("an enter gate takes conditions and `input`; webhook and poll wait for the stage's result in `exit { }`"),
                        );
                    } else {
                        items.push(item);
                    }
                }
                Some(name) if p.is_gate_typo(name) => {
                    let known: &[&str] = if is_enter {
                        &["input"]
                    } else {
                        &["input", "webhook", "poll"]
                    };
                    let within = if is_enter { "an enter gate" } else { "an exit gate" };
                    return Err(p.unknown_keyword(within, known));
                }
                _ => {
                    let cond = p.cond()?;
                    if is_enter {
                        items.push(GateItem::Cond(cond));
                    } else {
                        p.report(
                            Diagnostic::new("conditions are not allowed in an exit gate", cond.span)
                                .with_label("a condition")
                                .with_hint("an exit gate takes `input`, `webhook` and `poll`; put conditions in `enter { }` or `when { }`"),
                        );
                    }
                }
            }
            Ok(())
        })?;
        Ok(items)
    }

    /// Whether an identifier in a gate block is a misspelt gate keyword rather than the
    /// start of a condition: it is not a value word and is followed by a string or `{`.
    fn is_gate_typo(&mut self, name: &str) -> bool {
        let value_word = matches!(
            name,
            "true" | "false" | "it" | "vars" | "branch" | "tag" | "environment" | "commit"
        );
        !value_word && matches!(self.peek_at(1).kind, TokenKind::Str(_) | TokenKind::LBrace)
    }

    fn input(&mut self) -> PResult<GateItem> {
        let start = self.bump().span;
        let message = self.value()?;
        let mut args: Vec<(Ident, Expr)> = Vec::new();
        while self.eat(&TokenKind::Comma).is_some() {
            let hint = || {
                Some(
                    "input options are keyword arguments: approvers: ['alice'], timeout: '1h'"
                        .to_owned(),
                )
            };
            if self.peek_ident().is_none() {
                return Err(self.error_expected("an option name", "after `,`", hint()));
            }
            let key = self.ident("an option name", "after `,`")?;
            if self.eat(&TokenKind::Colon).is_none() {
                let after = format!("after `{}`", key.name);
                return Err(self.error_expected("`:`", &after, hint()));
            }
            let value = self.value()?;
            if let Some((first, _)) = args.iter().find(|(k, _)| k.name == key.name) {
                let first = first.span;
                self.duplicate(&format!("{}:", key.name), "this input", key.span, first);
            }
            args.push((key, value));
        }
        Ok(GateItem::Input {
            message,
            args,
            span: self.span_from(start),
        })
    }

    /// `webhook { k = v }` or `poll { k = v }`.
    fn evented_gate(&mut self, kind: &str) -> PResult<GateItem> {
        let start = self.bump().span;
        let mut fields: Vec<(Ident, Expr)> = Vec::new();
        let after = format!("after `{kind}`");
        self.block(&after, Items::Entries, |p| {
            let (key, value) = p.assignment("a setting name")?;
            if let Some((first, _)) = fields.iter().find(|(k, _)| k.name == key.name) {
                let first = first.span;
                let within = format!("this {kind}");
                p.duplicate(&key.name, &within, key.span, first);
            }
            fields.push((key, value));
            Ok(())
        })?;
        let span = self.span_from(start);
        Ok(if kind == "webhook" {
            GateItem::Webhook { fields, span }
        } else {
            GateItem::Poll { fields, span }
        })
    }

    fn notify(&mut self, notify: &mut Notify) -> PResult<()> {
        const KEYWORDS: &[&str] = &["success", "failure", "complete"];
        self.block("after `notify`", Items::Keywords(KEYWORDS), |p| {
            let target: &mut Vec<Step> = match p.peek_ident() {
                Some("success") => &mut notify.success,
                Some("failure") => &mut notify.failure,
                Some("complete") => &mut notify.complete,
                _ => return Err(p.unknown_keyword("`notify`", KEYWORDS)),
            };
            let keyword = p.bump();
            let after = format!("after {}", keyword.kind.describe());
            target.extend(p.steps_block(&after)?);
            Ok(())
        })?;
        Ok(())
    }
}

/// Which block gate items are read from.
#[derive(Clone, Copy)]
enum GateBlock {
    Enter,
    Exit,
    /// `before { }` in a stage body: the same as `gates { enter { } }`.
    Before,
    /// `feedback { }` in a stage body: the same as `gates { exit { } }`.
    Feedback,
}

impl GateBlock {
    fn keyword(self) -> &'static str {
        match self {
            Self::Enter => "enter",
            Self::Exit => "exit",
            Self::Before => "before",
            Self::Feedback => "feedback",
        }
    }
}

/// Where a stage item was written.
pub(crate) fn item_span(item: &StageItem) -> Span {
    match item {
        StageItem::Stage(stage) => stage.span,
        StageItem::Parallel { span, .. }
        | StageItem::Each { span, .. }
        | StageItem::From { span, .. } => *span,
    }
}
