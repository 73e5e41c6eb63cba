//! Values, conditions and steps.

use super::{Fail, Items, PResult, Parser};
use crate::ast::{Cond, CondKind, Expr, ExprKind, Fact, Ident, Step, Str};
use crate::diagnostic::Diagnostic;
use crate::lexer::TokenKind;

/// The identifiers that are values by themselves.
const VALUE_WORDS: &[&str] = &[
    "true",
    "false",
    "it",
    "vars",
    "branch",
    "tag",
    "environment",
    "commit",
];

/// What "expected a value" means, spelled out.
const A_VALUE: &str =
    "a value (a string, number, boolean, list, function call, `it` or `vars.NAME`)";

impl Parser<'_> {
    /// Parses a value expression.
    pub(crate) fn value(&mut self) -> PResult<Expr> {
        let span = self.peek_span();
        let kind = match *self.peek_kind() {
            TokenKind::Str(_) => {
                let TokenKind::Str(value) = self.bump().kind else {
                    return Err(Fail);
                };
                ExprKind::Str(value)
            }
            TokenKind::Int(value) => {
                self.bump();
                ExprKind::Int(value)
            }
            TokenKind::LBracket => return self.list(),
            TokenKind::Ident(name) => {
                if self.peek_at(1).kind == TokenKind::LParen {
                    return self.call();
                }
                let kind = match name {
                    "true" => ExprKind::Bool(true),
                    "false" => ExprKind::Bool(false),
                    "it" => ExprKind::It,
                    "vars" => return self.var(),
                    "branch" => ExprKind::Fact(Fact::Branch),
                    "tag" => ExprKind::Fact(Fact::Tag),
                    "environment" => ExprKind::Fact(Fact::Environment),
                    "commit" => ExprKind::Fact(Fact::Commit),
                    _ => return Err(self.expected_value()),
                };
                self.bump();
                kind
            }
            _ => return Err(self.expected_value()),
        };
        Ok(Expr { kind, span })
    }

    /// Whether the next token starts the first argument of a step (which follows the
    /// step's symbol without a comma). A bare identifier does so only when it is a value
    /// word such as `true` or `it`, a call `f(`, or a keyword `key:`; any other
    /// identifier starts the next step.
    pub(crate) fn starts_step_arg(&mut self) -> bool {
        match self.peek_kind() {
            TokenKind::Str(_) | TokenKind::Int(_) | TokenKind::LBracket => true,
            TokenKind::Ident(name) => {
                let name = *name;
                matches!(name, "true" | "false" | "it" | "vars")
                    || matches!(self.peek_at(1).kind, TokenKind::LParen | TokenKind::Colon)
            }
            _ => false,
        }
    }

    /// Parses a string literal, reporting "expected a string {after}" otherwise.
    pub(crate) fn string(&mut self, after: &str) -> PResult<Str> {
        match *self.peek_kind() {
            TokenKind::Str(_) => {
                let token = self.bump();
                let TokenKind::Str(value) = token.kind else {
                    return Err(Fail);
                };
                Ok(Str {
                    value,
                    span: token.span,
                })
            }
            TokenKind::Ident(name) => {
                let hint = format!("quote it: '{name}'");
                Err(self.error_expected("a string", after, Some(hint)))
            }
            _ => Err(self.error_expected("a string", after, None)),
        }
    }

    /// Parses `IDENT = value`, the entry form of most small blocks.
    pub(crate) fn assignment(&mut self, what: &str) -> PResult<(Ident, Expr)> {
        let key = self.ident(what, "")?;
        let after = format!("after `{}`", key.name);
        self.expect(&TokenKind::Eq, &after)?;
        let value = self.value()?;
        Ok((key, value))
    }

    fn expected_value(&mut self) -> Fail {
        let token = self.peek().clone();
        if token.kind == TokenKind::Eof && self.eof_reported {
            return Fail;
        }
        let mut diagnostic = Diagnostic::new(
            format!("expected {A_VALUE}, found {}", token.kind.describe()),
            token.span,
        )
        .with_label("expected a value");
        if let TokenKind::Ident(name) = token.kind {
            let hint = match did_you_mean(name, VALUE_WORDS) {
                Some(best) => format!("did you mean `{best}`? To write text, quote it: '{name}'"),
                None => {
                    format!("to write text, quote it: '{name}'; to read a var, write vars.{name}")
                }
            };
            diagnostic = diagnostic.with_hint(hint);
        }
        if token.kind == TokenKind::Eof {
            self.eof_reported = true;
        }
        self.report(diagnostic);
        Fail
    }

    fn list(&mut self) -> PResult<Expr> {
        let open = self.bump().span;
        self.nest()?;
        let mut elements = Vec::new();
        loop {
            if self.eat(&TokenKind::RBracket).is_some() {
                break;
            }
            elements.push(self.value()?);
            if self.eat(&TokenKind::Comma).is_none() {
                if self.eat(&TokenKind::RBracket).is_some() {
                    break;
                }
                return Err(self.error_expected("`,` or `]`", "in the list", None));
            }
        }
        self.unnest();
        elements.shrink_to_fit();
        Ok(Expr {
            kind: ExprKind::List(elements),
            span: self.span_from(open),
        })
    }

    fn call(&mut self) -> PResult<Expr> {
        let name = self.ident("a function name", "")?;
        self.bump();
        self.nest()?;
        let args = self.call_args(&name.name)?;
        self.unnest();
        Ok(Expr {
            span: self.span_from(name.span),
            kind: ExprKind::Call { name, args },
        })
    }

    /// The values of `(a, b, ...)` after the `(`, through the `)`.
    pub(crate) fn call_args(&mut self, name: &str) -> PResult<Vec<Expr>> {
        let mut args = Vec::new();
        loop {
            if self.eat(&TokenKind::RParen).is_some() {
                args.shrink_to_fit();
                return Ok(args);
            }
            args.push(self.value()?);
            if self.eat(&TokenKind::Comma).is_none() {
                if self.eat(&TokenKind::RParen).is_some() {
                    args.shrink_to_fit();
                    return Ok(args);
                }
                let after = format!("in the arguments of `{name}`");
                return Err(self.error_expected("`,` or `)`", &after, None));
            }
        }
    }

    fn var(&mut self) -> PResult<Expr> {
        let start = self.bump().span;
        let hint = Some("read a var as vars.NAME".to_owned());
        if self.eat(&TokenKind::Dot).is_none() {
            return Err(self.error_expected("`.`", "after `vars`", hint));
        }
        if self.peek_ident().is_none() {
            return Err(self.error_expected("a var name", "after `vars.`", hint));
        }
        let name = self.ident("a var name", "after `vars.`")?;
        Ok(Expr {
            kind: ExprKind::Var(name),
            span: self.span_from(start),
        })
    }

    // ---- conditions ----

    /// Parses a condition: `||` of `&&` of `!` of comparisons.
    ///
    /// Every `&&`, `||`, `!` and `(` counts as a level of nesting, so a condition's tree
    /// stays shallow enough to walk recursively.
    pub(crate) fn cond(&mut self) -> PResult<Cond> {
        let depth = self.depth;
        let result = self.cond_or();
        self.depth = depth;
        result
    }

    fn cond_or(&mut self) -> PResult<Cond> {
        let mut left = self.cond_and()?;
        while self.at(&TokenKind::OrOr) {
            self.nest()?;
            self.bump();
            let right = self.cond_and()?;
            let span = left.span.to(right.span);
            left = Cond {
                kind: CondKind::Or(Box::new(left), Box::new(right)),
                span,
            };
        }
        Ok(left)
    }

    fn cond_and(&mut self) -> PResult<Cond> {
        let mut left = self.cond_not()?;
        while self.at(&TokenKind::AndAnd) {
            self.nest()?;
            self.bump();
            let right = self.cond_not()?;
            let span = left.span.to(right.span);
            left = Cond {
                kind: CondKind::And(Box::new(left), Box::new(right)),
                span,
            };
        }
        Ok(left)
    }

    fn cond_not(&mut self) -> PResult<Cond> {
        if !self.at(&TokenKind::Bang) {
            return self.cond_atom();
        }
        self.nest()?;
        let start = self.bump().span;
        let inner = self.cond_not()?;
        Ok(Cond {
            span: start.to(inner.span),
            kind: CondKind::Not(Box::new(inner)),
        })
    }

    fn cond_atom(&mut self) -> PResult<Cond> {
        if self.at(&TokenKind::LParen) {
            self.nest()?;
            let open = self.bump().span;
            let inner = self.cond_or()?;
            self.expect(&TokenKind::RParen, "to close the condition")?;
            return Ok(Cond {
                kind: inner.kind,
                span: self.span_from(open),
            });
        }
        let left = self.value()?;
        let op = match self.peek_kind() {
            TokenKind::EqEq => CondKind::Eq,
            TokenKind::NotEq => CondKind::Ne,
            TokenKind::Ident("in") => CondKind::In,
            TokenKind::Eq => {
                let hint = Some("compare with `==`".to_owned());
                return Err(self.error_expected("`==`", "in the condition", hint));
            }
            _ => {
                let span = left.span;
                return Ok(Cond {
                    kind: CondKind::Value(left),
                    span,
                });
            }
        };
        self.bump();
        let right = self.value()?;
        Ok(Cond {
            span: left.span.to(right.span),
            kind: op(left, right),
        })
    }

    // ---- steps ----

    /// Parses `{ step* }`.
    pub(crate) fn steps_block(&mut self, after: &str) -> PResult<Vec<Step>> {
        let mut steps = Vec::new();
        self.block(after, Items::AnyIdent, |p| {
            if p.peek_ident().is_none() {
                let hint = Some("a step starts with its name, e.g. sh 'make'".to_owned());
                return Err(p.error_expected("a step", "", hint));
            }
            steps.push(p.step()?);
            Ok(())
        })?;
        steps.shrink_to_fit();
        Ok(steps)
    }

    /// Parses `SYMBOL arg, arg, key: value [{ steps }]`.
    fn step(&mut self) -> PResult<Step> {
        let symbol = self.ident("a step", "")?;
        let mut step = Step {
            span: symbol.span,
            symbol,
            args: Vec::new(),
            kwargs: Vec::new(),
            block: None,
        };
        if self.starts_step_arg() {
            self.step_arg(&mut step)?;
            while self.eat(&TokenKind::Comma).is_some() {
                self.step_arg(&mut step)?;
            }
        }
        if self.at(&TokenKind::LBrace) {
            let after = format!("after `{}`", step.symbol.name);
            step.block = Some(self.steps_block(&after)?);
        }
        step.span = self.span_from(step.span);
        // Vectors grow by doubling; a big file has many small ones, so trim them.
        step.args.shrink_to_fit();
        step.kwargs.shrink_to_fit();
        Ok(step)
    }

    fn step_arg(&mut self, step: &mut Step) -> PResult<()> {
        let is_keyword = self.peek_ident().is_some() && self.peek_at(1).kind == TokenKind::Colon;
        if !is_keyword {
            let value = self.value()?;
            step.args.push(value);
            return Ok(());
        }
        let key = self.ident("an argument name", "")?;
        self.bump();
        let value = self.value()?;
        if let Some((first, _)) = step.kwargs.iter().find(|(k, _)| k.name == key.name) {
            let first = first.span;
            let within = format!("this `{}` step", step.symbol.name);
            self.duplicate(&format!("{}:", key.name), &within, key.span, first);
        }
        step.kwargs.push((key, value));
        Ok(())
    }
}

/// Whether `name` is one of `words`.
pub(crate) fn one_of(name: &str, words: &[&str]) -> bool {
    words.contains(&name)
}

/// "`a`, `b` or `c`".
pub(crate) fn list_words(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// The word of `known` closest to `name`, when it is close enough to be a likely typo
/// (at least half of it survives the edit).
pub(crate) fn did_you_mean<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|&word| (strsim::normalized_damerau_levenshtein(name, word), word))
        .filter(|&(similarity, _)| similarity >= 0.5)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, word)| word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_close_words_only() {
        assert_eq!(did_you_mean("stpes", &["steps", "stage"]), Some("steps"));
        assert_eq!(did_you_mean("banana", &["steps", "stage"]), None);
    }

    #[test]
    fn word_lists_read_naturally() {
        assert_eq!(list_words(&["a"]), "`a`");
        assert_eq!(list_words(&["a", "b", "c"]), "`a`, `b` or `c`");
    }
}
