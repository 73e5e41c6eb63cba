//! The parser: Ottofile text to an [`ast::File`] plus diagnostics.
//!
//! The parser is hand-written recursive descent and context-sensitive: every kind of block
//! (`use`, `environments`, a stage body, `gates`, `cache`, ...) has its own small grammar,
//! which is what lets it say precisely what it expected. Keywords are plain identifiers
//! that mean something only where the grammar expects them.
//!
//! Errors never stop the parse. An item that goes wrong is reported and skipped up to the
//! end of its own `{ }` block (brace-balanced) or up to the next keyword that starts an
//! item of the enclosing block, so independent mistakes are all reported in one run. At
//! most [`MAX_DIAGNOSTICS`] diagnostics are reported; nesting deeper than [`MAX_DEPTH`]
//! is an error rather than a stack overflow.

#![warn(clippy::unwrap_used)]

mod expr;
mod items;
pub(crate) use items::could_be_in_repo;
mod stage;

use std::collections::VecDeque;

use crate::ast;
use crate::diagnostic::Diagnostic;
use crate::lexer::{Lexer, Token, TokenKind};
use crate::span::{FileId, Span};

/// The most diagnostics one parse reports; the last one says that parsing stopped.
pub const MAX_DIAGNOSTICS: usize = 50;

/// The deepest nesting of blocks, lists, calls and parenthesised conditions accepted.
pub const MAX_DEPTH: u32 = 128;

/// Parses one Ottofile.
///
/// Always returns a file (partial when there were errors) and every problem found, sorted
/// by position. Never panics, whatever the input; time and memory are linear in the size
/// of the text.
pub fn parse(file: FileId, text: &str) -> (ast::File, Vec<Diagnostic>) {
    let mut parser = Parser::new(file, text);
    let ast = parser.file();
    let mut diagnostics = parser.diagnostics;
    // Sort by position, keeping "too many problems" last.
    let stop = parser.stopped.then(|| diagnostics.pop()).flatten();
    diagnostics.sort_by_key(|d| d.span.map(|s| s.start));
    diagnostics.extend(stop);
    (ast, diagnostics)
}

/// Marks an item that went wrong: the diagnostic has been recorded, and the caller
/// recovers by skipping.
#[derive(Debug)]
pub(crate) struct Fail;

/// The result of parsing one piece of an item.
pub(crate) type PResult<T> = Result<T, Fail>;

/// Which identifiers start an item of the block being read: recovery after an error stops
/// before one of them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Items {
    /// Top level.
    File,
    /// `pipeline { }`, `stages { }`, `parallel { }`, `each() { }`, `blueprint { }`.
    Stages,
    /// A stage body.
    StageBody,
    /// Every identifier starts an item: steps, conditions, secret names.
    AnyIdent,
    /// Free-form `key = value` and `key { }` entries: an identifier followed by `=` or
    /// `{` starts one.
    Entries,
    /// Items start with one of these keywords.
    Keywords(&'static [&'static str]),
}

impl Items {
    /// Whether `name`, followed by `next`, starts an item.
    fn starts_item(self, name: &str, next: &TokenKind<'_>) -> bool {
        const STAGE_ITEMS: &[&str] = &["stage", "parallel", "each", "from", "stages", "steps"];
        match self {
            Self::File => STAGE_ITEMS.contains(&name) || expr::one_of(name, items::FILE_KEYWORDS),
            Self::Stages => {
                STAGE_ITEMS.contains(&name) || matches!(name, "name" | "vars" | "concurrency")
            }
            Self::StageBody => {
                STAGE_ITEMS.contains(&name) || expr::one_of(name, stage::BODY_KEYWORDS)
            }
            Self::AnyIdent => true,
            Self::Entries => matches!(next, TokenKind::Eq | TokenKind::LBrace),
            Self::Keywords(keywords) => keywords.contains(&name),
        }
    }
}

pub(crate) struct Parser<'a> {
    file: FileId,
    text: &'a str,
    lexer: Lexer<'a>,
    ahead: VecDeque<Token<'a>>,
    /// End of the last consumed token.
    prev_end: u32,
    /// How many tokens have been consumed; recovery uses it to ensure progress.
    consumed: u64,
    depth: u32,
    diagnostics: Vec<Diagnostic>,
    /// An unclosed block at the end of the file has been reported.
    eof_reported: bool,
    /// Too many diagnostics: the rest of the text is ignored.
    stopped: bool,
    /// The nesting limit was hit: recovery skips to the end of the enclosing block rather
    /// than stopping at the next keyword, which would be deep inside the nesting.
    too_deep: bool,
}

impl<'a> Parser<'a> {
    fn new(file: FileId, text: &'a str) -> Self {
        Self {
            file,
            text,
            lexer: Lexer::new(file, text),
            ahead: VecDeque::new(),
            prev_end: 0,
            consumed: 0,
            depth: 0,
            diagnostics: Vec::new(),
            eof_reported: false,
            stopped: false,
            too_deep: false,
        }
    }

    // ---- tokens ----

    fn fill(&mut self, n: usize) {
        while self.ahead.len() <= n {
            let token = if self.stopped {
                Token {
                    kind: TokenKind::Eof,
                    span: self.eof_span(),
                }
            } else {
                self.lexer.next_token()
            };
            if self.lexer.has_diagnostics() {
                for diagnostic in self.lexer.take_diagnostics() {
                    self.report(diagnostic);
                }
            }
            self.ahead.push_back(token);
        }
    }

    /// The token `n` ahead of the next one (0 = the next one).
    fn peek_at(&mut self, n: usize) -> &Token<'a> {
        self.fill(n);
        // SAFETY: `fill(n)` leaves more than `n` tokens in `ahead`.
        #[allow(clippy::unwrap_used)]
        self.ahead.get(n).unwrap()
    }

    fn peek(&mut self) -> &Token<'a> {
        self.peek_at(0)
    }

    fn peek_kind(&mut self) -> &TokenKind<'a> {
        &self.peek().kind
    }

    fn peek_span(&mut self) -> Span {
        self.peek().span
    }

    /// The identifier `n` tokens ahead, if it is one.
    fn peek_ident_at(&mut self, n: usize) -> Option<&'a str> {
        match self.peek_at(n).kind {
            TokenKind::Ident(name) => Some(name),
            _ => None,
        }
    }

    fn peek_ident(&mut self) -> Option<&'a str> {
        self.peek_ident_at(0)
    }

    fn at(&mut self, kind: &TokenKind<'_>) -> bool {
        self.peek_kind() == kind
    }

    fn at_ident(&mut self, name: &str) -> bool {
        self.peek_ident() == Some(name)
    }

    fn bump(&mut self) -> Token<'a> {
        self.fill(0);
        let token = self.ahead.pop_front().unwrap_or(Token {
            kind: TokenKind::Eof,
            span: self.eof_span(),
        });
        if token.kind != TokenKind::Eof {
            self.prev_end = token.span.end;
            self.consumed += 1;
        }
        token
    }

    fn eat(&mut self, kind: &TokenKind<'_>) -> Option<Span> {
        if self.at(kind) {
            Some(self.bump().span)
        } else {
            None
        }
    }

    /// Consumes the token of `kind` or reports "expected ..." (with `after` naming what
    /// it should follow, like "after `stage`").
    fn expect(&mut self, kind: &TokenKind<'_>, after: &str) -> PResult<Span> {
        if let Some(span) = self.eat(kind) {
            return Ok(span);
        }
        let want = format!("`{}`", kind.punct());
        Err(self.error_expected(&want, after, None))
    }

    /// Reports that `want` was expected at the next token and returns [`Fail`].
    fn error_expected(&mut self, want: &str, after: &str, hint: Option<String>) -> Fail {
        let token = self.peek().clone();
        if token.kind == TokenKind::Eof && self.eof_reported {
            return Fail;
        }
        let mut message = format!("expected {want}");
        if !after.is_empty() {
            message.push(' ');
            message.push_str(after);
        }
        message.push_str(", found ");
        message.push_str(&token.kind.describe());
        let mut diagnostic =
            Diagnostic::new(message, token.span).with_label(format!("expected {want}"));
        if let Some(hint) = hint {
            diagnostic = diagnostic.with_hint(hint);
        }
        self.report(diagnostic);
        if token.kind == TokenKind::Eof {
            self.eof_reported = true;
        }
        Fail
    }

    fn ident(&mut self, what: &str, after: &str) -> PResult<ast::Ident> {
        match self.peek_ident() {
            Some(name) => {
                let span = self.bump().span;
                Ok(ast::Ident {
                    name: name.to_owned(),
                    span,
                })
            }
            None => Err(self.error_expected(what, after, None)),
        }
    }

    fn eof_span(&self) -> Span {
        let end = self.text.len().min(u32::MAX as usize) as u32;
        Span::new(self.file, end, end)
    }

    fn span_from(&self, start: Span) -> Span {
        Span::new(self.file, start.start, self.prev_end.max(start.end))
    }

    // ---- diagnostics ----

    fn report(&mut self, diagnostic: Diagnostic) {
        if self.stopped {
            return;
        }
        if self.diagnostics.len() + 1 >= MAX_DIAGNOSTICS {
            let stop = match diagnostic.span {
                Some(span) => Diagnostic::new("too many problems; stopped reading here", span),
                None => Diagnostic::global("too many problems; stopped reading the file"),
            };
            self.diagnostics.push(stop.with_hint(format!(
                "only the first {} problems are reported; fix them and run again",
                MAX_DIAGNOSTICS - 1
            )));
            self.stopped = true;
            return;
        }
        self.diagnostics.push(diagnostic);
    }

    /// "line L, column C" of a byte offset, for hints that point at another place.
    fn position(&self, offset: u32) -> String {
        let before = self.text.get(..offset as usize).unwrap_or(self.text);
        let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        format!("line {line}, column {column}")
    }

    // ---- nesting and recovery ----

    /// Enters one level of nesting, or reports that the text nests too deeply.
    fn nest(&mut self) -> PResult<()> {
        if self.depth >= MAX_DEPTH {
            let span = self.peek_span();
            self.report(
                Diagnostic::new("nesting is too deep", span)
                    .with_label(format!(
                        "more than {MAX_DEPTH} levels of blocks, lists, calls or parentheses"
                    ))
                    .with_hint("split the pipeline into blueprints or flatten the structure"),
            );
            self.too_deep = true;
            return Err(Fail);
        }
        self.depth += 1;
        Ok(())
    }

    fn unnest(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Skips the rest of an item that went wrong: up to and including the `{ }` group it
    /// opened, or up to the `}` closing the enclosing block, or up to an identifier that
    /// starts a new item of `items` (once at least one token has been skipped since
    /// `started`).
    fn recover(&mut self, items: Items, started: u64) {
        let whole_block = std::mem::take(&mut self.too_deep);
        let mut depth = 0usize;
        loop {
            let token_kind = self.peek_kind().clone();
            match token_kind {
                TokenKind::Eof => return,
                TokenKind::RBrace if depth == 0 => return,
                TokenKind::RBrace => {
                    self.bump();
                    depth -= 1;
                    if depth == 0 && !whole_block {
                        return;
                    }
                }
                TokenKind::LBrace => {
                    self.bump();
                    depth += 1;
                }
                TokenKind::Ident(name)
                    if !whole_block
                        && depth == 0
                        && self.consumed > started
                        && items.starts_item(name, &self.peek_at(1).kind.clone()) =>
                {
                    return;
                }
                _ => {
                    self.bump();
                }
            }
        }
    }

    /// Parses `{ item* }` calling `item` for every item, with recovery after items that
    /// fail. Returns the span of the braces. `after` names what the block follows, for
    /// the "expected `{`" message.
    fn block(
        &mut self,
        after: &str,
        items: Items,
        mut item: impl FnMut(&mut Self) -> PResult<()>,
    ) -> PResult<Span> {
        let open = self.expect(&TokenKind::LBrace, after)?;
        if self.nest().is_err() {
            self.skip_rest_of_block(open);
            return Err(Fail);
        }
        loop {
            match self.peek_kind() {
                TokenKind::RBrace => {
                    self.bump();
                    break;
                }
                TokenKind::Eof => {
                    self.unclosed(open);
                    break;
                }
                _ => {}
            }
            let started = self.consumed;
            let depth = self.depth;
            let result = item(self);
            // An item that failed may have left nesting levels entered.
            self.depth = depth;
            if result.is_err() {
                // Recovery skips at least one token unless `}` or the end of the file is
                // next, which the loop handles.
                self.recover(items, started);
            } else if self.consumed == started {
                // Every item consumes its first token; this guards the loop regardless.
                self.bump();
            }
        }
        self.unnest();
        Ok(self.span_from(open))
    }

    /// Skips to the `}` matching an already consumed `{`, inclusive.
    fn skip_rest_of_block(&mut self, open: Span) {
        let mut depth = 1usize;
        loop {
            match self.bump().kind {
                TokenKind::Eof => {
                    self.unclosed(open);
                    return;
                }
                TokenKind::LBrace => depth += 1,
                TokenKind::RBrace => {
                    depth -= 1;
                    if depth == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
    }

    /// Reports a block left open at the end of the file (once per parse).
    fn unclosed(&mut self, open: Span) {
        if self.eof_reported || self.stopped {
            return;
        }
        self.eof_reported = true;
        let span = self.eof_span();
        let hint = format!("the `{{` at {} is never closed", self.position(open.start));
        self.report(
            Diagnostic::new("unexpected end of file", span)
                .with_label("expected `}`")
                .with_hint(hint),
        );
    }

    /// Reports an unknown keyword at the next token (in `within`, like "a stage body"),
    /// suggesting the closest of `known`.
    fn unknown_keyword(&mut self, within: &str, known: &[&str]) -> Fail {
        let token = self.peek().clone();
        let TokenKind::Ident(name) = token.kind else {
            let want = expr::list_words(known);
            let after = format!("in {within}");
            return self.error_expected(&want, &after, None);
        };
        let diagnostic =
            Diagnostic::new(format!("unknown keyword `{name}` in {within}"), token.span)
                .with_label("unknown keyword");
        let diagnostic = match expr::did_you_mean(name, known) {
            Some(best) => diagnostic.with_hint(format!("did you mean `{best}`?")),
            None => diagnostic.with_hint(format!("expected {}", expr::list_words(known))),
        };
        self.report(diagnostic);
        Fail
    }

    /// Reports a key set twice; `first` is where it was set first.
    fn duplicate(&mut self, key: &str, within: &str, span: Span, first: Span) {
        let hint = format!(
            "it is first set at {}; keep one of them",
            self.position(first.start)
        );
        self.report(
            Diagnostic::new(format!("`{key}` is set twice in {within}"), span)
                .with_label("set again here")
                .with_hint(hint),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_stops_at_the_next_keyword() {
        let (file, diagnostics) =
            parse(FileId(0), "stage { name = owner = 'ops' steps { sh 'x' } }");
        assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
        let pipeline = file.pipeline.expect("pipeline");
        let ast::StageItem::Stage(stage) = &pipeline.items[0] else {
            panic!("not a stage")
        };
        assert!(stage.owner.is_some());
        assert_eq!(stage.steps.len(), 1);
    }

    #[test]
    fn position_counts_characters() {
        let parser = Parser::new(FileId(0), "ab\nçd x");
        assert_eq!(parser.position(7), "line 2, column 4");
    }
}
