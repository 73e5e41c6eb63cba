//! The syntax tree of one `.otto` file, as the parser produces it.
//!
//! The tree keeps what was written and where (every node carries a [`Span`]); it resolves
//! nothing. Names of stages, caches, environments and vars, `use` and `from` paths and
//! `it` are checked and expanded by the planner, which reports its own diagnostics with
//! these spans.

use crate::span::Span;

/// A name as written, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    /// The name.
    pub name: String,
    /// Where it was written.
    pub span: Span,
}

/// One parsed `.otto` file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct File {
    /// `use { ... }` blocks, in order.
    pub uses: Vec<Use>,
    /// `configure { ... }` blocks, in order.
    pub configure: Vec<ConfigEntry>,
    /// `environments { ... }` entries, in order.
    pub environments: Vec<Environment>,
    /// Top-level `vars { ... }`: the pipeline's inputs, set with `--var K=V`.
    pub vars: Vec<VarDecl>,
    /// `blueprint { ... }` blocks defined in this file.
    pub blueprints: Vec<Blueprint>,
    /// `step { ... }` blocks: steps defined in this file, used like built-in steps.
    pub step_defs: Vec<StepDef>,
    /// `triggers { push { ... } tag { ... } ... }` entries, in order: the events that start
    /// the pipeline (checked by the planner).
    pub triggers: Vec<ConfigEntry>,
    /// The pipeline: `pipeline { ... }`, or stage items / `steps { }` written at top level.
    /// `None` when the file defines no stages (a library of blueprints, say).
    pub pipeline: Option<Pipeline>,
    /// `concurrency { }` of the pipeline, written inside `pipeline { }` or at top level.
    pub concurrency: Option<Concurrency>,
}

/// `concurrency { group = 'deploy-production'  cancel_in_progress = false }`: at most one
/// run of the pipeline (or one running instance of the stage) in the group at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct Concurrency {
    /// `group = value`: the group's name (`None` only after an error, already reported).
    pub group: Option<Expr>,
    /// `cancel_in_progress = value`: a newer run cancels the one in progress instead of
    /// waiting for it.
    pub cancel_in_progress: Option<Expr>,
    /// Where the block was written (the `concurrency` keyword to the closing brace).
    pub span: Span,
}

/// One reference inside `use { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub enum Use {
    /// `stdlib`: the library that ships with Otto.
    Stdlib(Span),
    /// `'./path'` or `'../path'`: an in-repository `.otto` file (extension optional) or a
    /// directory of them, relative to the file that names it.
    Path(Str),
    /// An unpinned path without `./`, as in `'blueprints/rubygem'`: a path in the
    /// repository relative to the naming file when it exists there; otherwise the planner
    /// reports it as an external library that must be pinned.
    Bare(Str),
    /// An external library pinned by content digest:
    /// `'https://example.com/libs/rails.git' sha256 '0123…'` (64 lowercase hex digits),
    /// and, for one a node fetches from a git repository, by the commit that holds it:
    /// `'https://example.com/libs/rails.git' commit '89ab…' sha256 '0123…'`.
    External {
        /// Where the library comes from.
        location: Str,
        /// The pinned sha256 content digest, as written (already checked to be 64 hex digits).
        sha256: Str,
        /// The pinned commit, as written (already checked to be a full commit id: 40 or 64
        /// lowercase hex digits), when the library is fetched from a git repository.
        commit: Option<Str>,
    },
}

/// A string literal with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Str {
    /// The unescaped value.
    pub value: String,
    /// Where the literal was written, quotes included.
    pub span: Span,
}

/// An entry of `configure { }`: free-form tool configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigEntry {
    /// `name = value`.
    Set { key: Ident, value: Expr },
    /// `name { entries }`.
    Block { key: Ident, entries: Vec<Self> },
}

/// `name { settings { K = v } secrets { NAME } }` inside `environments { }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    /// The environment's name.
    pub name: Ident,
    /// `settings { K = v }`: plain values given to stages in this environment.
    pub settings: Vec<(Ident, Expr)>,
    /// `secrets { NAME }`: names of secrets held in the vault of the node that runs the stage.
    pub secrets: Vec<Ident>,
    /// `secrets { NAME = 'value' }` entries, kept so the planner can refuse them by name
    /// with a precise span. The value itself is dropped by the parser and never stored.
    pub inline_secret_values: Vec<Span>,
    /// Where the whole entry was written.
    pub span: Span,
}

/// A var declaration: `name { type string default 'x' description '...' }`.
#[derive(Debug, Clone, PartialEq)]
pub struct VarDecl {
    /// The var's name, read as `vars.name`.
    pub name: Ident,
    /// Its declared type; `string` when not written.
    pub ty: VarType,
    /// Its default; a var without one must be given.
    pub default: Option<Expr>,
    /// A line for people.
    pub description: Option<Str>,
    /// Where the declaration was written.
    pub span: Span,
}

/// The type of a var.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarType {
    /// `string`.
    String,
    /// `number`: a whole number.
    Number,
    /// `bool`.
    Bool,
    /// `list`: a list of strings.
    List,
}

/// `blueprint { name = 'x'  vars { } stages { } }`: stages to be included with `from`.
#[derive(Debug, Clone, PartialEq)]
pub struct Blueprint {
    /// `name = '...'`; when absent the blueprint is named after its file.
    pub name: Option<Str>,
    /// Its vars.
    pub vars: Vec<VarDecl>,
    /// Its stages.
    pub items: Vec<StageItem>,
    /// Where the block was written.
    pub span: Span,
}

/// `step { name = 'slack'  vars { text { } }  steps { sh ... } }`: a step a library
/// defines. `slack 'hi'` expands to its steps with its vars bound: positional arguments in
/// the order the vars are declared, keyword arguments by name, then `configure { slack {
/// var = ... } }` of the pipeline, then defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct StepDef {
    /// `name = '...'`; when absent the step is named after its file.
    pub name: Option<Str>,
    /// Its parameters.
    pub vars: Vec<VarDecl>,
    /// What it runs.
    pub steps: Vec<Step>,
    /// Where the block was written.
    pub span: Span,
}

/// The pipeline of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// `name = '...'` inside `pipeline { }`.
    pub name: Option<Str>,
    /// The stage items in order (a `stages { }` wrapper is flattened away; top-level
    /// `steps { }` becomes one [`StageItem::Stage`] with no name).
    pub items: Vec<StageItem>,
    /// Where the pipeline was written.
    pub span: Span,
}

/// What can stand in a list of stages.
#[derive(Debug, Clone, PartialEq)]
pub enum StageItem {
    /// `stage { }` or `stage('Name') { }`.
    Stage(Box<Stage>),
    /// `parallel { items }`: the items run side by side.
    Parallel { items: Vec<Self>, span: Span },
    /// `each(v1, v2, ...) { items }`: the items once per value, side by side, with `it` bound.
    Each {
        values: Vec<Expr>,
        items: Vec<Self>,
        span: Span,
    },
    /// `from 'blueprint' { var = value ... }`: the blueprint's stages, in place.
    From {
        target: Str,
        args: Vec<(Ident, Expr)>,
        span: Span,
    },
}

/// One `stage { }` block.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stage {
    /// `name = expr` or the `stage('Name')` shorthand.
    pub name: Option<Expr>,
    /// `owner = expr`.
    pub owner: Option<Expr>,
    /// `environment -> name`.
    pub environment: Option<Ident>,
    /// `when { condition }`; several lines must all hold.
    pub when: Vec<Cond>,
    /// `when { from 'Stage' }`: that stage's conditions hold here too.
    pub when_from: Vec<Str>,
    /// `runtime { }`.
    pub runtime: Option<Runtime>,
    /// `cache { }` entries.
    pub caches: Vec<CacheEntry>,
    /// `gates { enter { } }` items.
    pub enter: Vec<GateItem>,
    /// `gates { exit { } }` items.
    pub exit: Vec<GateItem>,
    /// `steps { }`, in order (several `steps` blocks are concatenated).
    pub steps: Vec<Step>,
    /// `notify { success { } failure { } complete { } }`.
    pub notify: Notify,
    /// `timeout = '30m'`.
    pub timeout: Option<Expr>,
    /// `uses ['deploy.sh', 'k8s/']`: the source files the stage needs where it is not the
    /// node that started the run (several `uses` lines add up).
    pub uses: Vec<Expr>,
    /// Sub-stages: a stage that groups stages runs them in order.
    pub children: Vec<StageItem>,
    /// `concurrency { }`: one running instance of the stage in the group at a time.
    pub concurrency: Option<Concurrency>,
    /// Where the block was written (the `stage` keyword to the closing brace).
    pub span: Span,
}

/// `runtime { from 'Stage'  docker { image = 'x' }  computer { label = 'y' } }`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Runtime {
    /// `from 'Stage'`: start from that stage's workspace and outputs.
    pub from: Option<Str>,
    /// `docker { image = expr }`.
    pub docker: Option<(Expr, Span)>,
    /// `computer { label = expr }`.
    pub computer: Option<(Expr, Span)>,
}

/// An entry of `cache { }`.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheEntry {
    /// `name = ['path', ...]` or `name { paths = [...]  key = ['Gemfile.lock'] }`.
    Define {
        name: Ident,
        paths: Expr,
        key: Option<Expr>,
    },
    /// `use name`: reuse a cache defined by another stage.
    Use(Ident),
}

/// One item of `enter { }` or `exit { }`.
#[derive(Debug, Clone, PartialEq)]
pub enum GateItem {
    /// A condition over facts and vars.
    Cond(Cond),
    /// `input 'Ship it?'` with optional `approvers: [...]`, `timeout: '1h'`.
    Input {
        message: Expr,
        args: Vec<(Ident, Expr)>,
        span: Span,
    },
    /// `webhook { description = '...'  timeout = '30m' }`.
    Webhook {
        fields: Vec<(Ident, Expr)>,
        span: Span,
    },
    /// `poll { command = '...' (or url = '...')  every = '10s'  timeout = '5m' }`.
    Poll {
        fields: Vec<(Ident, Expr)>,
        span: Span,
    },
}

/// `notify { }`: steps run after the stage, by outcome.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Notify {
    /// Run when the stage succeeded.
    pub success: Vec<Step>,
    /// Run when the stage failed.
    pub failure: Vec<Step>,
    /// Run in either case.
    pub complete: Vec<Step>,
}

/// A step: `symbol positional..., key: value, ... { nested steps }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The step's symbol (`sh`, `archive`, a step package's name).
    pub symbol: Ident,
    /// Positional arguments, in order.
    pub args: Vec<Expr>,
    /// Keyword arguments, in the order written.
    pub kwargs: Vec<(Ident, Expr)>,
    /// A nested block of steps (`dir 'sub' { ... }`).
    pub block: Option<Vec<Self>>,
    /// Where the step was written.
    pub span: Span,
}

/// A value expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where it was written.
    pub span: Span,
}

/// The kinds of value expression.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// A string literal (single, double or triple quoted).
    Str(String),
    /// A whole number.
    Int(i64),
    /// `true` or `false`.
    Bool(bool),
    /// `[a, b, ...]`.
    List(Vec<Expr>),
    /// `name(args)`, e.g. `concat('Package ', it)`.
    Call { name: Ident, args: Vec<Expr> },
    /// `it`: the current value of the innermost `each`.
    It,
    /// `vars.name`.
    Var(Ident),
    /// A fact: `branch`, `tag`, `environment`, `commit`. Only in conditions.
    Fact(Fact),
}

/// A runtime fact: an explicit input to the planner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fact {
    /// The branch being delivered.
    Branch,
    /// The tag being delivered.
    Tag,
    /// The target environment of the run.
    Environment,
    /// The commit being delivered.
    Commit,
}

/// A condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    /// What it is.
    pub kind: CondKind,
    /// Where it was written.
    pub span: Span,
}

/// The kinds of condition.
#[derive(Debug, Clone, PartialEq)]
pub enum CondKind {
    /// `a == b`.
    Eq(Expr, Expr),
    /// `a != b`.
    Ne(Expr, Expr),
    /// `a in [list]` (or `a in vars.list`).
    In(Expr, Expr),
    /// `a && b`.
    And(Box<Cond>, Box<Cond>),
    /// `a || b`.
    Or(Box<Cond>, Box<Cond>),
    /// `!a`.
    Not(Box<Cond>),
    /// A value used as a condition: `true`, `false`, a `bool` var.
    Value(Expr),
}
