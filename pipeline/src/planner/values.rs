//! Values: evaluating expressions, var tables, durations and canonical printing.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value as Json;

use crate::ast::{Expr, ExprKind, Fact, VarDecl, VarType};
use crate::diagnostic::Diagnostic;
use crate::plan;
use crate::span::Span;
use crate::steps::closest;

/// A value after evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Val {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<Self>),
}

/// The vars visible in one place: the pipeline's, or one blueprint instance's.
#[derive(Debug, Clone, Default)]
pub(crate) struct VarTable {
    /// Who declares them, for messages: "the pipeline" or "blueprint 'x'".
    pub(crate) owner: String,
    pub(crate) values: BTreeMap<String, Val>,
}

/// What an expression may refer to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    pub(crate) it: Option<&'a Val>,
    pub(crate) vars: &'a VarTable,
}

/// The functions expressions may call.
const FUNCTIONS: [&str; 4] = ["concat", "join", "lower", "upper"];

impl Val {
    pub(crate) fn to_json(&self) -> Json {
        match self {
            Self::Str(s) => Json::String(s.clone()),
            Self::Int(i) => Json::from(*i),
            Self::Bool(b) => Json::Bool(*b),
            Self::List(items) => Json::Array(items.iter().map(Self::to_json).collect()),
        }
    }

    /// A value of the `configure { }` tree (which holds only values of this kind); `None`
    /// for a nested block.
    pub(crate) fn from_json(json: &Json) -> Option<Self> {
        Some(match json {
            Json::String(s) => Self::Str(s.clone()),
            Json::Number(n) => Self::Int(n.as_i64()?),
            Json::Bool(b) => Self::Bool(*b),
            Json::Array(items) => {
                Self::List(items.iter().map(Self::from_json).collect::<Option<_>>()?)
            }
            Json::Null | Json::Object(_) => return None,
        })
    }

    /// "a string", "a number", ... for messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Str(_) => "a string",
            Self::Int(_) => "a number",
            Self::Bool(_) => "a boolean",
            Self::List(_) => "a list",
        }
    }

    /// The value as text, for strings and numbers.
    pub(crate) fn as_text(&self) -> Option<String> {
        match self {
            Self::Str(s) => Some(s.clone()),
            Self::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }

    /// Whether it has the declared type (a list holds strings or numbers).
    pub(crate) fn has_type(&self, ty: VarType) -> bool {
        match (ty, self) {
            (VarType::String, Self::Str(_))
            | (VarType::Number, Self::Int(_))
            | (VarType::Bool, Self::Bool(_)) => true,
            (VarType::List, Self::List(items)) => items
                .iter()
                .all(|v| matches!(v, Self::Str(_) | Self::Int(_))),
            _ => false,
        }
    }

    /// The value written as an Ottofile literal: `'text'`, `42`, `true`, `['a', 'b']`.
    pub(crate) fn literal(&self) -> String {
        let mut out = String::new();
        self.write_literal(&mut out);
        out
    }

    fn write_literal(&self, out: &mut String) {
        match self {
            Self::Str(s) => write_quoted(s, out),
            Self::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Self::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Self::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write_literal(out);
                }
                out.push(']');
            }
        }
    }
}

/// Writes `s` single-quoted, escaping what the lexer would not read back as itself.
pub(crate) fn write_quoted(s: &str, out: &mut String) {
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('\'');
}

/// The name of a var type, for messages.
pub(crate) fn type_name(ty: VarType) -> &'static str {
    match ty {
        VarType::String => "a string",
        VarType::Number => "a number",
        VarType::Bool => "a boolean",
        VarType::List => "a list",
    }
}

/// The keyword of a fact as written.
pub(crate) fn fact_name(fact: Fact) -> &'static str {
    match fact {
        Fact::Branch => "branch",
        Fact::Tag => "tag",
        Fact::Environment => "environment",
        Fact::Commit => "commit",
    }
}

/// Converts a `--var NAME=TEXT` value to the var's type. Lists are comma-separated.
pub(crate) fn parse_var_text(ty: VarType, text: &str) -> Result<Val, String> {
    match ty {
        VarType::String => Ok(Val::Str(text.to_owned())),
        VarType::Number => text
            .trim()
            .parse::<i64>()
            .map(Val::Int)
            .map_err(|_| format!("'{text}' is not a whole number")),
        VarType::Bool => match text.trim() {
            "true" => Ok(Val::Bool(true)),
            "false" => Ok(Val::Bool(false)),
            _ => Err(format!("'{text}' is not true or false")),
        },
        VarType::List => Ok(Val::List(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Val::Str(s.to_owned()))
                .collect(),
        )),
    }
}

impl Scope<'_> {
    /// Evaluates a value expression; reports problems to `diags` and returns `None` then.
    pub(crate) fn eval(&self, expr: &Expr, diags: &mut Vec<Diagnostic>) -> Option<Val> {
        match &expr.kind {
            ExprKind::Str(s) => Some(Val::Str(s.clone())),
            ExprKind::Int(i) => Some(Val::Int(*i)),
            ExprKind::Bool(b) => Some(Val::Bool(*b)),
            ExprKind::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for item in items {
                    match self.eval(item, diags) {
                        Some(v) => out.push(v),
                        None => ok = false,
                    }
                }
                ok.then_some(Val::List(out))
            }
            ExprKind::Call { name, args } => {
                let mut values = Vec::with_capacity(args.len());
                for arg in args {
                    values.push((self.eval(arg, diags)?, arg.span));
                }
                call(&name.name, name.span, expr.span, &values, diags)
            }
            ExprKind::It => match self.it {
                Some(v) => Some(v.clone()),
                None => {
                    diags.push(
                        Diagnostic::new("`it` can only be used inside each(...)", expr.span)
                            .with_label("not inside an each block"),
                    );
                    None
                }
            },
            ExprKind::Var(name) => self.var(&name.name, name.span.to(expr.span), diags),
            ExprKind::Fact(fact) => {
                let name = fact_name(*fact);
                diags.push(
                    Diagnostic::new(
                        format!("the fact `{name}` can only be used in conditions"),
                        expr.span,
                    )
                    .with_hint("use it in when { } or an enter gate, e.g. branch == 'main'"),
                );
                None
            }
        }
    }

    /// Looks up `vars.NAME`.
    pub(crate) fn var(&self, name: &str, span: Span, diags: &mut Vec<Diagnostic>) -> Option<Val> {
        if let Some(v) = self.vars.values.get(name) {
            return Some(v.clone());
        }
        let mut d = Diagnostic::new(format!("unknown var '{name}'"), span)
            .with_label(format!("not declared by {}", self.vars.owner));
        d.hint = match closest(name, self.vars.values.keys().map(String::as_str)) {
            Some(best) => Some(format!("did you mean 'vars.{best}'?")),
            None if self.vars.values.is_empty() => {
                Some(format!("{} declares no vars", self.vars.owner))
            }
            None => Some(format!(
                "{} declares: {}",
                self.vars.owner,
                self.vars
                    .values
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
        diags.push(d);
        None
    }

    /// Evaluates an expression that must give a string.
    pub(crate) fn string(
        &self,
        expr: &Expr,
        what: &str,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<String> {
        match self.eval(expr, diags)? {
            Val::Str(s) => Some(s),
            other => {
                diags.push(
                    Diagnostic::new(
                        format!("{what} must be a string, not {}", other.kind()),
                        expr.span,
                    )
                    .with_label("expected a string"),
                );
                None
            }
        }
    }

    /// Evaluates a `concurrency { }` block: its group a string [`plan::check_group`] takes,
    /// `cancel_in_progress` a boolean (false when not written). `None` after an error.
    pub(crate) fn concurrency(
        &self,
        block: &crate::ast::Concurrency,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<plan::Concurrency> {
        let expr = block.group.as_ref()?;
        let group = self.string(expr, "a concurrency group", diags)?;
        // A literal was checked by the parser; a computed name is checked here.
        if !matches!(expr.kind, ExprKind::Str(_))
            && let Err(why) = plan::check_group(&group)
        {
            diags.push(
                Diagnostic::new(format!("bad concurrency group: {why}"), expr.span)
                    .with_label("not a group name"),
            );
            return None;
        }
        let cancel_in_progress = match &block.cancel_in_progress {
            None => false,
            Some(expr) => match self.eval(expr, diags)? {
                Val::Bool(b) => b,
                other => {
                    diags.push(
                        Diagnostic::new(
                            format!(
                                "cancel_in_progress must be true or false, not {}",
                                other.kind()
                            ),
                            expr.span,
                        )
                        .with_label("expected a boolean"),
                    );
                    return None;
                }
            },
        };
        plan::check_group(&group).ok()?;
        Some(plan::Concurrency {
            cancel_in_progress,
            group,
        })
    }

    /// Evaluates an expression that must give a string or a list of strings.
    pub(crate) fn strings(
        &self,
        expr: &Expr,
        what: &str,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<Vec<String>> {
        let bad = |diags: &mut Vec<Diagnostic>, kind: &str| {
            diags.push(
                Diagnostic::new(
                    format!("{what} must be a list of strings, not {kind}"),
                    expr.span,
                )
                .with_label("expected a list of strings"),
            );
        };
        match self.eval(expr, diags)? {
            Val::Str(s) => Some(vec![s]),
            Val::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Val::Str(s) => out.push(s),
                        other => {
                            bad(diags, &format!("a list holding {}", other.kind()));
                            return None;
                        }
                    }
                }
                Some(out)
            }
            other => {
                bad(diags, other.kind());
                None
            }
        }
    }

    /// Evaluates an expression that must give a duration such as `'30m'`.
    pub(crate) fn duration(
        &self,
        expr: &Expr,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<plan::Duration> {
        let text = self.string(expr, "a duration", diags)?;
        match parse_duration(&text) {
            Some(d) => Some(d),
            None => {
                diags.push(
                    Diagnostic::new(format!("bad duration '{text}'"), expr.span)
                        .with_label("expected a duration")
                        .with_hint(
                            "write a whole number and a unit: '30s', '10m', '1h', '2h30m', '1d'",
                        ),
                );
                None
            }
        }
    }
}

/// Builds the var table of the pipeline or a blueprint instance from the declarations, the
/// given values (already evaluated, with where they were given) and the defaults.
pub(crate) fn bind_vars(
    owner: String,
    decls: &[VarDecl],
    mut given: BTreeMap<String, (Val, Option<Span>)>,
    missing_hint: impl Fn(&str) -> String,
    at: Option<Span>,
    diags: &mut Vec<Diagnostic>,
) -> VarTable {
    let empty = VarTable {
        owner: owner.clone(),
        values: BTreeMap::new(),
    };
    let mut table = VarTable {
        owner,
        values: BTreeMap::new(),
    };
    for decl in decls {
        let name = &decl.name.name;
        if table.values.contains_key(name) {
            diags.push(Diagnostic::new(
                format!("var '{name}' is declared twice"),
                decl.name.span,
            ));
            continue;
        }
        let value = match given.remove(name) {
            Some((value, span)) => {
                if !value.has_type(decl.ty) {
                    let span = span.unwrap_or(decl.name.span);
                    diags.push(
                        Diagnostic::new(
                            format!(
                                "var '{name}' of {} is {}, not {}",
                                table.owner,
                                type_name(decl.ty),
                                value.kind()
                            ),
                            span,
                        )
                        .with_label(format!("expected {}", type_name(decl.ty))),
                    );
                    continue;
                }
                value
            }
            None => match &decl.default {
                Some(default) => {
                    let scope = Scope {
                        it: None,
                        vars: &empty,
                    };
                    let Some(value) = scope.eval(default, diags) else {
                        continue;
                    };
                    if !value.has_type(decl.ty) {
                        diags.push(
                            Diagnostic::new(
                                format!(
                                    "the default of var '{name}' is {}, but the var is {}",
                                    value.kind(),
                                    type_name(decl.ty)
                                ),
                                default.span,
                            )
                            .with_label(format!("expected {}", type_name(decl.ty))),
                        );
                        continue;
                    }
                    value
                }
                None => {
                    let d = match at {
                        Some(at) => {
                            Diagnostic::new(format!("{} needs var '{name}'", table.owner), at)
                        }
                        None => Diagnostic::new(
                            format!("var {name} needs a value: pass --var {name}=..."),
                            decl.name.span,
                        ),
                    };
                    diags.push(d.with_hint(missing_hint(name)));
                    continue;
                }
            },
        };
        table.values.insert(name.clone(), value);
    }
    // Vars that were given but not declared: the caller reports those, since only it knows
    // where they were written; keep them out of the table.
    table
}

/// Parses a duration: one or more `<whole number><unit>` parts with units `d`, `h`, `m`,
/// `s` in that order, each at most once, more than zero in total.
pub(crate) fn parse_duration(text: &str) -> Option<plan::Duration> {
    const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];
    let mut seconds: u64 = 0;
    let mut next_unit = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let index = UNITS.iter().position(|&(u, _)| u == c)?;
        if digits.is_empty() || index < next_unit {
            return None;
        }
        let n: u64 = digits.parse().ok()?;
        seconds = seconds.checked_add(n.checked_mul(UNITS[index].1)?)?;
        digits.clear();
        next_unit = index + 1;
    }
    if !digits.is_empty() || seconds == 0 {
        return None;
    }
    Some(plan::Duration {
        text: format_duration(seconds),
        seconds,
    })
}

fn format_duration(mut seconds: u64) -> String {
    let mut out = String::new();
    for (unit, size) in [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)] {
        let n = seconds / size;
        seconds %= size;
        if n > 0 {
            let _ = write!(out, "{n}{unit}");
        }
    }
    out
}

fn call(
    name: &str,
    name_span: Span,
    span: Span,
    args: &[(Val, Span)],
    diags: &mut Vec<Diagnostic>,
) -> Option<Val> {
    let text_arg = |(v, s): &(Val, Span), diags: &mut Vec<Diagnostic>| match v.as_text() {
        Some(t) => Some(t),
        None => {
            diags.push(
                Diagnostic::new(
                    format!("{name}() takes strings and numbers, not {}", v.kind()),
                    *s,
                )
                .with_label("expected a string or a number"),
            );
            None
        }
    };
    let arity = |n: usize, diags: &mut Vec<Diagnostic>| {
        if args.len() == n {
            return true;
        }
        diags.push(Diagnostic::new(
            format!(
                "{name}() takes {n} argument{}, got {}",
                if n == 1 { "" } else { "s" },
                args.len()
            ),
            span,
        ));
        false
    };
    match name {
        "concat" => {
            let mut out = String::new();
            for arg in args {
                out.push_str(&text_arg(arg, diags)?);
            }
            Some(Val::Str(out))
        }
        "lower" | "upper" => {
            if !arity(1, diags) {
                return None;
            }
            let text = text_arg(&args[0], diags)?;
            Some(Val::Str(if name == "lower" {
                text.to_lowercase()
            } else {
                text.to_uppercase()
            }))
        }
        "join" => {
            if !arity(2, diags) {
                return None;
            }
            let Val::List(items) = &args[0].0 else {
                diags.push(
                    Diagnostic::new(
                        format!("join() takes a list first, not {}", args[0].0.kind()),
                        args[0].1,
                    )
                    .with_label("expected a list"),
                );
                return None;
            };
            let sep = text_arg(&args[1], diags)?;
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                parts.push(text_arg(&(item.clone(), args[0].1), diags)?);
            }
            Some(Val::Str(parts.join(&sep)))
        }
        _ => {
            let mut d = Diagnostic::new(format!("unknown function '{name}'"), name_span)
                .with_label("not a function");
            d.hint = Some(match closest(name, FUNCTIONS.into_iter()) {
                Some(best) => format!("did you mean '{best}'?"),
                None => format!("the functions are {}", FUNCTIONS.join(", ")),
            });
            diags.push(d);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_validated_and_normalised() {
        let d = |t: &str| parse_duration(t).map(|d| (d.text, d.seconds));
        assert_eq!(d("30m"), Some(("30m".into(), 1800)));
        assert_eq!(d("10s"), Some(("10s".into(), 10)));
        assert_eq!(d("2h30m"), Some(("2h30m".into(), 9000)));
        assert_eq!(d("90m"), Some(("1h30m".into(), 5400)));
        assert_eq!(d("1d"), Some(("1d".into(), 86_400)));
        for bad in [
            "",
            "30",
            "m",
            "0s",
            "30x",
            "1m1h",
            "1h1h",
            "30 m",
            "-5m",
            "99999999999999999999d",
        ] {
            assert_eq!(d(bad), None, "{bad:?} should be refused");
        }
    }

    #[test]
    fn literals_round_trip_quotes_and_escapes() {
        let v = Val::List(vec![
            Val::Str("it's".into()),
            Val::Int(-3),
            Val::Bool(true),
            Val::Str("a\\b\n".into()),
        ]);
        assert_eq!(v.literal(), r"['it\'s', -3, true, 'a\\b\n']");
    }

    #[test]
    fn var_text_is_converted_to_the_declared_type() {
        assert_eq!(parse_var_text(VarType::Number, "42"), Ok(Val::Int(42)));
        assert!(parse_var_text(VarType::Number, "4x").is_err());
        assert_eq!(parse_var_text(VarType::Bool, "false"), Ok(Val::Bool(false)));
        assert!(parse_var_text(VarType::Bool, "yes").is_err());
        assert_eq!(
            parse_var_text(VarType::List, "a, b,,c"),
            Ok(Val::List(vec![
                Val::Str("a".into()),
                Val::Str("b".into()),
                Val::Str("c".into())
            ]))
        );
    }
}
