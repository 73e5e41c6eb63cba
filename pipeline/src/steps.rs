//! The steps a pipeline may use and the arguments each takes.
//!
//! The planner checks every step against a [`StepCatalog`], so an unknown step or a
//! missing argument is an error when the plan is made, not when the stage runs. The
//! catalog starts with the built-in steps ([`StepCatalog::builtins`]); a node adds the
//! step packages it has installed with [`StepCatalog::add`].

use std::collections::BTreeMap;

use serde_json::Value;

use crate::ast::Ident;
use crate::diagnostic::Diagnostic;
use crate::span::Span;

/// The type of one step argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A string.
    String,
    /// A whole number.
    Number,
    /// `true` or `false`.
    Bool,
    /// A list.
    List,
    /// Any value.
    Any,
}

/// One parameter of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The keyword (`name` in `name: 'x'`), or `None` for a positional parameter.
    pub name: Option<String>,
    /// The type its value must have.
    pub kind: ParamKind,
    /// Whether the step needs it.
    pub required: bool,
}

/// Whether a step takes a nested block of steps (`dir 'x' { ... }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockRule {
    /// A block is an error.
    Forbidden,
    /// A block may be given.
    Optional,
    /// A block must be given.
    Required,
}

/// What the planner knows about one step symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSpec {
    /// The symbol written in the Ottofile, e.g. `sh`.
    pub symbol: String,
    /// Its parameters: positional ones in order, then keyword ones in any order.
    pub params: Vec<Param>,
    /// Whether it takes a nested block of steps.
    pub block: BlockRule,
}

/// The set of steps a plan may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepCatalog {
    specs: BTreeMap<String, StepSpec>,
}

impl StepSpec {
    /// A step with no parameters and no block; add them with the builder methods.
    pub fn new(symbol: impl Into<String>) -> Self {
        Self {
            symbol: symbol.into(),
            params: Vec::new(),
            block: BlockRule::Forbidden,
        }
    }

    /// Adds a positional parameter.
    pub fn positional(mut self, kind: ParamKind, required: bool) -> Self {
        self.params.push(Param {
            name: None,
            kind,
            required,
        });
        self
    }

    /// Adds a keyword parameter.
    pub fn keyword(mut self, name: impl Into<String>, kind: ParamKind, required: bool) -> Self {
        self.params.push(Param {
            name: Some(name.into()),
            kind,
            required,
        });
        self
    }

    /// Sets whether the step takes a nested block.
    pub fn with_block(mut self, block: BlockRule) -> Self {
        self.block = block;
        self
    }
}

impl StepCatalog {
    /// A catalog with no steps at all.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The built-in steps: `sh 'script'`, `echo 'text'`, `dir 'path' { steps }`,
    /// `archive path: 'dir/', name: 'artifact'` and `unarchive name: 'artifact'`.
    pub fn builtins() -> Self {
        use ParamKind::String as S;
        let mut catalog = Self::empty();
        catalog.add(StepSpec::new("sh").positional(S, true));
        catalog.add(StepSpec::new("echo").positional(S, true));
        catalog.add(
            StepSpec::new("dir")
                .positional(S, true)
                .with_block(BlockRule::Required),
        );
        catalog.add(
            StepSpec::new("archive")
                .keyword("path", S, true)
                .keyword("name", S, true),
        );
        catalog.add(StepSpec::new("unarchive").keyword("name", S, true));
        catalog
    }

    /// Adds a step (a step package, say), replacing one with the same symbol.
    pub fn add(&mut self, spec: StepSpec) {
        self.specs.insert(spec.symbol.clone(), spec);
    }

    /// The step with this symbol.
    pub fn get(&self, symbol: &str) -> Option<&StepSpec> {
        self.specs.get(symbol)
    }

    /// All symbols, sorted.
    pub fn symbols(&self) -> impl Iterator<Item = &str> {
        self.specs.keys().map(String::as_str)
    }
}

/// A step's evaluated arguments, with where each was written, for [`StepCatalog::check`].
#[derive(Debug, Clone, Copy)]
pub struct StepCall<'a> {
    /// The symbol as written.
    pub symbol: &'a Ident,
    /// Positional arguments and their spans.
    pub args: &'a [(Value, Span)],
    /// Keyword arguments, their values and spans.
    pub kwargs: &'a [(&'a Ident, Value, Span)],
    /// Whether a nested block was written.
    pub has_block: bool,
    /// Where the whole step was written.
    pub span: Span,
}

impl StepCatalog {
    /// Checks one step's symbol and arguments; returns the problems found.
    pub fn check(&self, call: &StepCall<'_>) -> Vec<Diagnostic> {
        let symbol = &call.symbol.name;
        let Some(spec) = self.get(symbol) else {
            let mut d = Diagnostic::new(format!("unknown step '{symbol}'"), call.symbol.span)
                .with_label("not a built-in step or an installed step package");
            d.hint = match closest(symbol, self.symbols()) {
                Some(best) => Some(format!("did you mean '{best}'?")),
                None => Some(format!(
                    "known steps: {}",
                    self.symbols().collect::<Vec<_>>().join(", ")
                )),
            };
            return vec![d];
        };
        let mut out = Vec::new();
        check_positional(spec, call, &mut out);
        check_keywords(spec, call, &mut out);
        match spec.block {
            BlockRule::Required if !call.has_block => out.push(
                Diagnostic::new(format!("'{symbol}' needs a block of steps"), call.span)
                    .with_hint(format!("write {symbol} ... {{ sh '...' }}")),
            ),
            BlockRule::Forbidden if call.has_block => out.push(Diagnostic::new(
                format!("'{symbol}' takes no block of steps"),
                call.span,
            )),
            _ => {}
        }
        out
    }
}

fn check_positional(spec: &StepSpec, call: &StepCall<'_>, out: &mut Vec<Diagnostic>) {
    let symbol = &spec.symbol;
    let params: Vec<&Param> = spec.params.iter().filter(|p| p.name.is_none()).collect();
    for (i, (value, span)) in call.args.iter().enumerate() {
        match params.get(i) {
            Some(param) => {
                if !fits(param.kind, value) {
                    out.push(
                        Diagnostic::new(
                            format!(
                                "'{symbol}' expects {}, got {}",
                                kind_name(param.kind),
                                value_kind(value)
                            ),
                            *span,
                        )
                        .with_label(format!("expected {}", kind_name(param.kind))),
                    );
                }
            }
            None if params.is_empty() => {
                let mut d =
                    Diagnostic::new(format!("'{symbol}' takes no positional arguments"), *span);
                let names: Vec<String> = keyword_names(spec).map(|n| format!("{n}:")).collect();
                if !names.is_empty() {
                    d = d.with_hint(format!("name them: {}", names.join(", ")));
                }
                out.push(d);
                return;
            }
            None => {
                out.push(Diagnostic::new(
                    format!(
                        "'{symbol}' takes {} argument{}, got {}",
                        params.len(),
                        if params.len() == 1 { "" } else { "s" },
                        call.args.len()
                    ),
                    *span,
                ));
                return;
            }
        }
    }
    if let Some(missing) = params.iter().skip(call.args.len()).find(|p| p.required) {
        out.push(
            Diagnostic::new(
                format!("'{symbol}' needs {} argument", kind_name(missing.kind)),
                call.symbol.span,
            )
            .with_label(format!(
                "expected {} after {symbol}",
                kind_name(missing.kind)
            )),
        );
    }
}

fn check_keywords(spec: &StepSpec, call: &StepCall<'_>, out: &mut Vec<Diagnostic>) {
    let symbol = &spec.symbol;
    let mut seen: Vec<&str> = Vec::new();
    for (key, value, span) in call.kwargs {
        let name = key.name.as_str();
        if seen.contains(&name) {
            out.push(Diagnostic::new(
                format!("argument '{name}:' is given twice"),
                key.span,
            ));
            continue;
        }
        seen.push(name);
        let Some(param) = spec.params.iter().find(|p| p.name.as_deref() == Some(name)) else {
            let mut d = Diagnostic::new(format!("'{symbol}' has no argument '{name}:'"), key.span);
            d.hint = match closest(name, keyword_names(spec)) {
                Some(best) => Some(format!("did you mean '{best}:'?")),
                None => {
                    let names: Vec<String> = keyword_names(spec).map(|n| format!("{n}:")).collect();
                    if names.is_empty() {
                        Some(format!("'{symbol}' takes no keyword arguments"))
                    } else {
                        Some(format!("'{symbol}' takes {}", names.join(", ")))
                    }
                }
            };
            out.push(d);
            continue;
        };
        if !fits(param.kind, value) {
            out.push(
                Diagnostic::new(
                    format!(
                        "'{symbol}' expects {} for '{name}:', got {}",
                        kind_name(param.kind),
                        value_kind(value)
                    ),
                    *span,
                )
                .with_label(format!("expected {}", kind_name(param.kind))),
            );
        }
    }
    for param in &spec.params {
        let Some(name) = &param.name else { continue };
        if param.required && !seen.contains(&name.as_str()) {
            out.push(
                Diagnostic::new(
                    format!("'{symbol}' needs '{name}:' ({})", kind_name(param.kind)),
                    call.symbol.span,
                )
                .with_label(format!("add {name}: ...")),
            );
        }
    }
}

fn keyword_names(spec: &StepSpec) -> impl Iterator<Item = &str> {
    spec.params.iter().filter_map(|p| p.name.as_deref())
}

fn fits(kind: ParamKind, value: &Value) -> bool {
    match kind {
        ParamKind::String => value.is_string(),
        ParamKind::Number => value.is_i64(),
        ParamKind::Bool => value.is_boolean(),
        ParamKind::List => value.is_array(),
        ParamKind::Any => true,
    }
}

fn kind_name(kind: ParamKind) -> &'static str {
    match kind {
        ParamKind::String => "a string",
        ParamKind::Number => "a number",
        ParamKind::Bool => "a boolean",
        ParamKind::List => "a list",
        ParamKind::Any => "a value",
    }
}

fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
        Value::Null => "nothing",
    }
}

/// The candidate closest to `word`, if one is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|&(d, c)| d > 0 && d <= (c.chars().count().max(word.chars().count()) / 3).max(1))
        .min_by_key(|&(d, c)| (d, c))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::FileId;

    fn ident(name: &str) -> Ident {
        Ident {
            name: name.into(),
            span: Span::new(FileId(0), 0, name.len() as u32),
        }
    }

    fn check(
        symbol: &str,
        args: Vec<Value>,
        kwargs: Vec<(&str, Value)>,
        block: bool,
    ) -> Vec<String> {
        let catalog = StepCatalog::builtins();
        let symbol = ident(symbol);
        let span = Span::default();
        let args: Vec<(Value, Span)> = args.into_iter().map(|v| (v, span)).collect();
        let keys: Vec<Ident> = kwargs.iter().map(|(k, _)| ident(k)).collect();
        let kwargs: Vec<(&Ident, Value, Span)> = keys
            .iter()
            .zip(kwargs)
            .map(|(k, (_, v))| (k, v, span))
            .collect();
        let call = StepCall {
            symbol: &symbol,
            args: &args,
            kwargs: &kwargs,
            has_block: block,
            span,
        };
        catalog
            .check(&call)
            .into_iter()
            .map(|d| d.message)
            .collect()
    }

    #[test]
    fn builtins_accept_their_documented_forms() {
        assert!(check("sh", vec!["make".into()], vec![], false).is_empty());
        assert!(check("echo", vec!["hi".into()], vec![], false).is_empty());
        assert!(check("dir", vec!["sub".into()], vec![], true).is_empty());
        let kw = vec![("path", "dist/".into()), ("name", "site".into())];
        assert!(check("archive", vec![], kw, false).is_empty());
        assert!(check("unarchive", vec![], vec![("name", "site".into())], false).is_empty());
    }

    #[test]
    fn builtins_refuse_bad_arguments() {
        assert_eq!(
            check("sh", vec![], vec![], false),
            ["'sh' needs a string argument"]
        );
        assert_eq!(
            check("sh", vec!["a".into(), "b".into()], vec![], false),
            ["'sh' takes 1 argument, got 2"]
        );
        assert_eq!(
            check("echo", vec![Value::from(3)], vec![], false),
            ["'echo' expects a string, got a number"]
        );
        assert_eq!(
            check("dir", vec!["x".into()], vec![], false),
            ["'dir' needs a block of steps"]
        );
        assert_eq!(
            check("sh", vec!["x".into()], vec![], true),
            ["'sh' takes no block of steps"]
        );
        assert_eq!(
            check("archive", vec![], vec![("path", "d/".into())], false),
            ["'archive' needs 'name:' (a string)"]
        );
        assert_eq!(
            check("unarchive", vec![], vec![("nme", "x".into())], false),
            [
                "'unarchive' has no argument 'nme:'",
                "'unarchive' needs 'name:' (a string)"
            ]
        );
        assert_eq!(check("shh", vec![], vec![], false), ["unknown step 'shh'"]);
    }

    #[test]
    fn closest_finds_typos_only() {
        let names = ["Build", "Deploy production", "Lint"];
        assert_eq!(closest("Biuld", names.into_iter()), Some("Build"));
        assert_eq!(closest("Zebra", names.into_iter()), None);
    }
}
