//! Conditions: three-valued evaluation against the facts, and canonical printing.
//!
//! A fact that was not given makes any comparison that reads it `unknown`; `&&`, `||` and
//! `!` then follow Kleene's strong logic (`fail && unknown` is `fail`, `pass || unknown` is
//! `pass`). The canonical text prints facts by name and every other operand (`it`,
//! `vars.x`, function calls) as the literal it evaluates to, so two conditions print the
//! same exactly when they decide the same way for every set of facts.

use crate::ast::{Cond, CondKind, Expr, ExprKind, Fact};
use crate::diagnostic::Diagnostic;
use crate::plan::Outcome;

use super::Facts;
use super::values::{Scope, Val, fact_name};

/// A condition evaluated for the plan's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Evaluated {
    pub(crate) text: String,
    pub(crate) outcome: Outcome,
}

/// One side of a comparison.
enum Operand {
    Known(Val),
    Fact(Fact, Option<String>),
}

/// Binding strength, for printing parentheses only where needed.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Prec {
    Or,
    And,
    Not,
    Atom,
}

/// Evaluates a condition; `None` after reporting a problem.
pub(crate) fn eval_cond(
    cond: &Cond,
    scope: &Scope<'_>,
    facts: &Facts,
    diags: &mut Vec<Diagnostic>,
) -> Option<Evaluated> {
    let (text, outcome, _) = eval(cond, scope, facts, diags)?;
    Some(Evaluated { text, outcome })
}

/// ANDs several evaluated conditions (the lines of a `when`, a group's and a stage's).
pub(crate) fn all(conds: &[Evaluated]) -> Option<Evaluated> {
    let (first, rest) = conds.split_first()?;
    if rest.is_empty() {
        return Some(first.clone());
    }
    let mut text = String::new();
    let mut outcome = Outcome::Pass;
    for (i, c) in conds.iter().enumerate() {
        if i > 0 {
            text.push_str(" && ");
        }
        // A line that is an `||` binds looser than the `&&` joining the lines.
        if needs_parens_in_and(&c.text) {
            text.push('(');
            text.push_str(&c.text);
            text.push(')');
        } else {
            text.push_str(&c.text);
        }
        outcome = outcome.and(c.outcome);
    }
    Some(Evaluated { text, outcome })
}

fn eval(
    cond: &Cond,
    scope: &Scope<'_>,
    facts: &Facts,
    diags: &mut Vec<Diagnostic>,
) -> Option<(String, Outcome, Prec)> {
    match &cond.kind {
        CondKind::And(a, b) | CondKind::Or(a, b) => {
            let is_and = matches!(cond.kind, CondKind::And(..));
            let prec = if is_and { Prec::And } else { Prec::Or };
            // Evaluate both sides even if one fails, so both report their problems.
            let left = eval(a, scope, facts, diags);
            let right = eval(b, scope, facts, diags);
            let (lt, lo, lp) = left?;
            let (rt, ro, rp) = right?;
            let op = if is_and { "&&" } else { "||" };
            let text = format!("{} {op} {}", wrap(lt, lp, prec), wrap(rt, rp, prec));
            let outcome = if is_and { lo.and(ro) } else { lo.or(ro) };
            Some((text, outcome, prec))
        }
        CondKind::Not(inner) => {
            let (t, o, p) = eval(inner, scope, facts, diags)?;
            // Parenthesise comparisons too: `!(branch == 'main')` reads better than
            // `!branch == 'main'`, and parses the same.
            let t = if p == Prec::Atom && t.contains(' ') {
                format!("({t})")
            } else {
                wrap(t, p, Prec::Not)
            };
            Some((format!("!{t}"), !o, Prec::Not))
        }
        CondKind::Eq(a, b) | CondKind::Ne(a, b) => {
            let eq = matches!(cond.kind, CondKind::Eq(..));
            let left = operand(a, scope, facts, diags);
            let right = operand(b, scope, facts, diags);
            let (left, right) = (left?, right?);
            let op = if eq { "==" } else { "!=" };
            let text = format!("{} {op} {}", left.text(), right.text());
            let outcome = match (left.value(), right.value()) {
                (Some(l), Some(r)) => Outcome::from_bool((l == r) == eq),
                _ => Outcome::Unknown,
            };
            Some((text, outcome, Prec::Atom))
        }
        CondKind::In(a, b) => {
            let left = operand(a, scope, facts, diags);
            let right = operand(b, scope, facts, diags);
            let (left, right) = (left?, right?);
            let Operand::Known(Val::List(items)) = &right else {
                let kind = match &right {
                    Operand::Known(v) => v.kind(),
                    Operand::Fact(..) => "a fact",
                };
                diags.push(
                    Diagnostic::new(
                        format!("the right side of `in` must be a list, not {kind}"),
                        b.span,
                    )
                    .with_label("expected a list"),
                );
                return None;
            };
            let text = format!("{} in {}", left.text(), right.text());
            let outcome = match left.value() {
                Some(v) => Outcome::from_bool(items.contains(&v)),
                None => Outcome::Unknown,
            };
            Some((text, outcome, Prec::Atom))
        }
        CondKind::Value(expr) => value_cond(expr, scope, diags),
    }
}

fn value_cond(
    expr: &Expr,
    scope: &Scope<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Option<(String, Outcome, Prec)> {
    if let ExprKind::Fact(fact) = expr.kind {
        let name = fact_name(fact);
        diags.push(
            Diagnostic::new(
                format!("the fact `{name}` is not a condition by itself"),
                expr.span,
            )
            .with_label("expected a comparison")
            .with_hint(format!("compare it, e.g. {name} == '...' or {name} != ''")),
        );
        return None;
    }
    match scope.eval(expr, diags)? {
        Val::Bool(b) => Some((b.to_string(), Outcome::from_bool(b), Prec::Atom)),
        other => {
            diags.push(
                Diagnostic::new(
                    format!("a condition must be true or false, not {}", other.kind()),
                    expr.span,
                )
                .with_label("expected a comparison or a boolean"),
            );
            None
        }
    }
}

fn operand(
    expr: &Expr,
    scope: &Scope<'_>,
    facts: &Facts,
    diags: &mut Vec<Diagnostic>,
) -> Option<Operand> {
    if let ExprKind::Fact(fact) = expr.kind {
        return Some(Operand::Fact(fact, facts.get(fact).map(str::to_owned)));
    }
    scope.eval(expr, diags).map(Operand::Known)
}

impl Operand {
    fn text(&self) -> String {
        match self {
            Self::Known(v) => v.literal(),
            Self::Fact(f, _) => fact_name(*f).to_owned(),
        }
    }

    fn value(&self) -> Option<Val> {
        match self {
            Self::Known(v) => Some(v.clone()),
            Self::Fact(_, v) => v.clone().map(Val::Str),
        }
    }
}

impl Outcome {
    fn from_bool(b: bool) -> Self {
        if b { Self::Pass } else { Self::Fail }
    }
}

fn wrap(text: String, own: Prec, context: Prec) -> String {
    if own < context {
        format!("({text})")
    } else {
        text
    }
}

/// Whether a printed condition has a top-level `||` (outside parentheses and quotes).
fn needs_parens_in_and(text: &str) -> bool {
    let mut depth = 0i32;
    let mut quoted = false;
    let mut escaped = false;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if quoted {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'\'' => quoted = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'\'' => quoted = true,
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth -= 1,
            b'|' if depth == 0 && bytes.get(i + 1) == Some(&b'|') => return true,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::Span;

    use super::super::values::VarTable;

    fn e(kind: ExprKind) -> Expr {
        Expr {
            kind,
            span: Span::default(),
        }
    }
    fn s(text: &str) -> Expr {
        e(ExprKind::Str(text.into()))
    }
    fn fact(f: Fact) -> Expr {
        e(ExprKind::Fact(f))
    }
    fn c(kind: CondKind) -> Cond {
        Cond {
            kind,
            span: Span::default(),
        }
    }
    fn eq(a: Expr, b: Expr) -> Cond {
        c(CondKind::Eq(a, b))
    }
    fn and(a: Cond, b: Cond) -> Cond {
        c(CondKind::And(Box::new(a), Box::new(b)))
    }
    fn or(a: Cond, b: Cond) -> Cond {
        c(CondKind::Or(Box::new(a), Box::new(b)))
    }
    fn not(a: Cond) -> Cond {
        c(CondKind::Not(Box::new(a)))
    }
    fn bool_(b: bool) -> Cond {
        c(CondKind::Value(e(ExprKind::Bool(b))))
    }

    fn run(cond: &Cond, facts: &Facts) -> (String, Outcome) {
        let vars = VarTable::default();
        let scope = Scope {
            it: None,
            vars: &vars,
        };
        let mut diags = Vec::new();
        let r = eval_cond(cond, &scope, facts, &mut diags).expect("evaluates");
        assert!(diags.is_empty(), "{diags:?}");
        (r.text, r.outcome)
    }

    fn main_facts() -> Facts {
        Facts {
            branch: Some("main".into()),
            ..Facts::default()
        }
    }

    #[test]
    fn comparisons_pass_fail_or_are_unknown_without_the_fact() {
        let cond = eq(fact(Fact::Branch), s("main"));
        assert_eq!(
            run(&cond, &main_facts()),
            ("branch == 'main'".into(), Outcome::Pass)
        );
        let other = Facts {
            branch: Some("dev".into()),
            ..Facts::default()
        };
        assert_eq!(run(&cond, &other).1, Outcome::Fail);
        assert_eq!(run(&cond, &Facts::default()).1, Outcome::Unknown);
        let ne = c(CondKind::Ne(fact(Fact::Tag), s("")));
        assert_eq!(run(&ne, &Facts::default()).1, Outcome::Unknown);
        let tagged = Facts {
            tag: Some("v1.0".into()),
            ..Facts::default()
        };
        assert_eq!(run(&ne, &tagged), ("tag != ''".into(), Outcome::Pass));
    }

    #[test]
    fn kleene_logic_for_and_or_not() {
        let unknown = eq(fact(Fact::Commit), s("abc"));
        let facts = Facts::default();
        let (t, f) = (bool_(true), bool_(false));
        assert_eq!(
            run(&and(f.clone(), unknown.clone()), &facts).1,
            Outcome::Fail
        );
        assert_eq!(
            run(&and(t.clone(), unknown.clone()), &facts).1,
            Outcome::Unknown
        );
        assert_eq!(
            run(&or(t.clone(), unknown.clone()), &facts).1,
            Outcome::Pass
        );
        assert_eq!(
            run(&or(f.clone(), unknown.clone()), &facts).1,
            Outcome::Unknown
        );
        assert_eq!(run(&not(unknown.clone()), &facts).1, Outcome::Unknown);
        assert_eq!(run(&not(t.clone()), &facts).1, Outcome::Fail);
        assert_eq!(run(&and(t.clone(), t.clone()), &facts).1, Outcome::Pass);
        assert_eq!(run(&or(f.clone(), f.clone()), &facts).1, Outcome::Fail);
    }

    #[test]
    fn in_tests_membership_of_a_list() {
        let list = e(ExprKind::List(vec![s("main"), s("release")]));
        let cond = c(CondKind::In(fact(Fact::Branch), list));
        assert_eq!(
            run(&cond, &main_facts()),
            ("branch in ['main', 'release']".into(), Outcome::Pass)
        );
        let dev = Facts {
            branch: Some("dev".into()),
            ..Facts::default()
        };
        assert_eq!(run(&cond, &dev).1, Outcome::Fail);
        assert_eq!(run(&cond, &Facts::default()).1, Outcome::Unknown);
    }

    #[test]
    fn printing_keeps_only_needed_parentheses() {
        let a = eq(fact(Fact::Branch), s("main"));
        let b = eq(fact(Fact::Tag), s("v1"));
        let cond = and(or(a.clone(), b.clone()), not(a.clone()));
        assert_eq!(
            run(&cond, &Facts::default()).0,
            "(branch == 'main' || tag == 'v1') && !(branch == 'main')"
        );
        let lines = [
            Evaluated {
                text: "branch == 'a' || tag == 'b'".into(),
                outcome: Outcome::Pass,
            },
            Evaluated {
                text: "'x||y' == 'x||y'".into(),
                outcome: Outcome::Unknown,
            },
        ];
        let joined = all(&lines).expect("two lines");
        assert_eq!(
            joined.text,
            "(branch == 'a' || tag == 'b') && 'x||y' == 'x||y'"
        );
        assert_eq!(joined.outcome, Outcome::Unknown);
    }

    #[test]
    fn a_bare_fact_or_a_string_is_not_a_condition() {
        let vars = VarTable::default();
        let scope = Scope {
            it: None,
            vars: &vars,
        };
        let mut diags = Vec::new();
        let bare = c(CondKind::Value(fact(Fact::Branch)));
        assert!(eval_cond(&bare, &scope, &Facts::default(), &mut diags).is_none());
        let text = c(CondKind::Value(s("yes")));
        assert!(eval_cond(&text, &scope, &Facts::default(), &mut diags).is_none());
        assert_eq!(diags.len(), 2);
        assert_eq!(
            diags[0].message,
            "the fact `branch` is not a condition by itself"
        );
    }
}
