//! Step packages: steps defined outside Otto, as a manifest and an executable.
//!
//! A step package is a directory holding a `manifest.yml` and the executable it names:
//!
//! ```yaml
//! symbol: greet
//! description: Greets someone.
//! parameters:
//!   name:
//!     type: string
//!     required: true
//!     description: Who to greet.
//!   loud:
//!     type: bool
//! entrypoint: run.sh
//! ```
//!
//! Parameter types are `string`, `number`, `bool` and `list`; `required` defaults to
//! `false`. An Ottofile calls the step as `greet 'world', loud: true`: positional arguments
//! fill the parameters in the order the manifest lists them, keyword arguments fill them by
//! name. Before it runs the step the agent checks the arguments against the manifest
//! ([`Package::bind`]), writes an [`Invocation`] as a JSON file and runs the entrypoint in
//! the step's directory with the file's path in `OTTO_INVOCATION`.
//!
//! The node gives the planner each package's [`Package::spec`], so an unknown step or an
//! argument of the wrong type fails when the pipeline is planned. [`otto_pipeline::steps`]
//! has no way to say "positional or by name", so a required parameter is checked only by
//! the agent; everything else is checked at both times.
#![warn(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Read as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use otto_pipeline::plan::Step;
use otto_pipeline::steps::{BlockRule, ParamKind, StepSpec};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// The file name of a package's manifest.
pub const MANIFEST_FILE: &str = "manifest.yml";

/// The largest manifest read, in bytes.
pub const MAX_MANIFEST_BYTES: u64 = 256 * 1024;

/// The symbols of the built-in steps, which no package may take.
pub const BUILTIN_SYMBOLS: [&str; 5] = ["sh", "echo", "dir", "archive", "unarchive"];

/// An installed step package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// The package's directory.
    dir: PathBuf,
    /// Its checked manifest.
    manifest: Manifest,
}

/// A package's checked manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The step's symbol as written in an Ottofile.
    pub symbol: String,
    /// What the step does, in a sentence.
    pub description: String,
    /// Its parameters, in the manifest's order (the order of positional arguments).
    pub parameters: Vec<Parameter>,
    /// The executable, relative to the package directory.
    pub entrypoint: String,
}

/// One parameter of a step package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    /// Its name, used for keyword arguments and in the invocation file.
    pub name: String,
    /// The type its value must have.
    pub kind: ParamType,
    /// Whether a call must give it.
    pub required: bool,
    /// What it means, if the manifest says.
    pub description: Option<String>,
}

/// The type of a package parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// A string.
    String,
    /// A number.
    Number,
    /// `true` or `false`.
    Bool,
    /// A list of values.
    List,
}

/// What the entrypoint of a package finds in the file named by `OTTO_INVOCATION`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    /// The step's symbol.
    pub symbol: String,
    /// The arguments, by parameter name; parameters not given are absent.
    pub args: BTreeMap<String, Value>,
    /// The stage's workspace directory.
    pub workspace: PathBuf,
}

/// A package that cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The manifest is not valid YAML of the expected shape.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The manifest's path.
        path: PathBuf,
        /// What is wrong, with the line and column.
        message: String,
    },
    /// The manifest parses but says something impossible.
    #[error("{}: {problem}", path.display())]
    Invalid {
        /// The manifest's path.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Two packages define the same symbol.
    #[error("step '{symbol}' is defined twice: by {} and by {}", first.display(), second.display())]
    Duplicate {
        /// The symbol.
        symbol: String,
        /// The first manifest defining it.
        first: PathBuf,
        /// The second manifest defining it.
        second: PathBuf,
    },
}

/// Arguments of a step that do not fit its package's manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArgsError {
    /// More positional arguments than parameters.
    #[error("'{symbol}' takes at most {max} positional argument(s), got {got}")]
    TooMany {
        /// The step.
        symbol: String,
        /// How many parameters it has.
        max: usize,
        /// How many were given.
        got: usize,
    },
    /// A keyword argument no parameter has.
    #[error("'{symbol}' has no parameter '{name}'")]
    Unknown {
        /// The step.
        symbol: String,
        /// The keyword.
        name: String,
    },
    /// A parameter given both positionally and by name.
    #[error("'{symbol}' gets '{name}' twice")]
    Twice {
        /// The step.
        symbol: String,
        /// The parameter.
        name: String,
    },
    /// A required parameter not given.
    #[error("'{symbol}' needs '{name}' ({kind})")]
    Missing {
        /// The step.
        symbol: String,
        /// The parameter.
        name: String,
        /// Its type.
        kind: ParamType,
    },
    /// A value of the wrong type.
    #[error("'{symbol}' expects {kind} for '{name}', got {got}")]
    WrongType {
        /// The step.
        symbol: String,
        /// The parameter.
        name: String,
        /// Its type.
        kind: ParamType,
        /// What was given.
        got: &'static str,
    },
    /// A block of steps given to a package step.
    #[error("'{symbol}' takes no block of steps")]
    Block {
        /// The step.
        symbol: String,
    },
}

/// Loads the packages in `path`: the package at `path` itself when it holds a
/// [`MANIFEST_FILE`], else every subdirectory that holds one, sorted by name.
pub fn load_dir(path: &Path) -> Result<Vec<Package>, ManifestError> {
    if path.join(MANIFEST_FILE).exists() {
        return Ok(vec![load(path)?]);
    }
    let read_err = |source| ManifestError::Read {
        path: path.to_owned(),
        source,
    };
    let mut dirs = Vec::new();
    for entry in fs::read_dir(path).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let dir = entry.path();
        if dir.is_dir() && dir.join(MANIFEST_FILE).exists() {
            dirs.push(dir);
        }
    }
    dirs.sort();
    let mut packages: Vec<Package> = Vec::new();
    for dir in dirs {
        let package = load(&dir)?;
        if let Some(other) = packages.iter().find(|p| p.symbol() == package.symbol()) {
            return Err(ManifestError::Duplicate {
                symbol: package.manifest.symbol.clone(),
                first: other.manifest_path(),
                second: package.manifest_path(),
            });
        }
        packages.push(package);
    }
    Ok(packages)
}

/// Loads the one package in directory `dir`.
pub fn load(dir: &Path) -> Result<Package, ManifestError> {
    let path = dir.join(MANIFEST_FILE);
    let text = read_capped(&path)?;
    let raw: RawManifest = yaml_serde::from_str(&text).map_err(|e| ManifestError::Parse {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let invalid = |problem: String| ManifestError::Invalid {
        path: path.clone(),
        problem,
    };
    let manifest = raw.check().map_err(invalid)?;
    check_entrypoint(dir, &manifest.entrypoint).map_err(invalid)?;
    Ok(Package {
        dir: dir.to_owned(),
        manifest,
    })
}

impl Package {
    /// The step's symbol.
    pub fn symbol(&self) -> &str {
        &self.manifest.symbol
    }

    /// The checked manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The package's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest file's path.
    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST_FILE)
    }

    /// The executable's path.
    pub fn entrypoint(&self) -> PathBuf {
        self.dir.join(&self.manifest.entrypoint)
    }

    /// What the planner needs to check calls of this step: every parameter may be given
    /// positionally (in manifest order) or by name, with its type; none is marked required
    /// (see the module docs); no block.
    pub fn spec(&self) -> StepSpec {
        let mut spec = StepSpec::new(self.symbol()).with_block(BlockRule::Forbidden);
        for param in &self.manifest.parameters {
            spec = spec.positional(param.kind.into(), false);
        }
        for param in &self.manifest.parameters {
            spec = spec.keyword(param.name.clone(), param.kind.into(), false);
        }
        spec
    }

    /// Checks a call of this step against the manifest and names its arguments.
    pub fn bind(&self, step: &Step) -> Result<BTreeMap<String, Value>, ArgsError> {
        let symbol = || self.symbol().to_owned();
        let params = &self.manifest.parameters;
        if !step.block.is_empty() {
            return Err(ArgsError::Block { symbol: symbol() });
        }
        if step.args.len() > params.len() {
            return Err(ArgsError::TooMany {
                symbol: symbol(),
                max: params.len(),
                got: step.args.len(),
            });
        }
        let mut args = BTreeMap::new();
        for (param, value) in params.iter().zip(&step.args) {
            param.check(self.symbol(), value)?;
            args.insert(param.name.clone(), value.clone());
        }
        for (name, value) in &step.kwargs {
            let Some(param) = params.iter().find(|p| &p.name == name) else {
                return Err(ArgsError::Unknown {
                    symbol: symbol(),
                    name: name.clone(),
                });
            };
            if args.contains_key(name) {
                return Err(ArgsError::Twice {
                    symbol: symbol(),
                    name: name.clone(),
                });
            }
            param.check(self.symbol(), value)?;
            args.insert(name.clone(), value.clone());
        }
        if let Some(missing) = params
            .iter()
            .find(|p| p.required && !args.contains_key(&p.name))
        {
            return Err(ArgsError::Missing {
                symbol: symbol(),
                name: missing.name.clone(),
                kind: missing.kind,
            });
        }
        Ok(args)
    }
}

impl Parameter {
    fn check(&self, symbol: &str, value: &Value) -> Result<(), ArgsError> {
        let fits = match self.kind {
            ParamType::String => value.is_string(),
            ParamType::Number => value.is_number(),
            ParamType::Bool => value.is_boolean(),
            ParamType::List => value.is_array(),
        };
        if fits {
            return Ok(());
        }
        Err(ArgsError::WrongType {
            symbol: symbol.to_owned(),
            name: self.name.clone(),
            kind: self.kind,
            got: value_kind(value),
        })
    }
}

impl ParamType {
    /// The name used in manifests: `string`, `number`, `bool` or `list`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Bool => "bool",
            Self::List => "list",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "string" => Some(Self::String),
            "number" => Some(Self::Number),
            "bool" => Some(Self::Bool),
            "list" => Some(Self::List),
            _ => None,
        }
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::String => "a string",
            Self::Number => "a number",
            Self::Bool => "a boolean",
            Self::List => "a list",
        };
        f.write_str(text)
    }
}

impl From<ParamType> for ParamKind {
    fn from(kind: ParamType) -> Self {
        match kind {
            ParamType::String => Self::String,
            ParamType::Number => Self::Number,
            ParamType::Bool => Self::Bool,
            ParamType::List => Self::List,
        }
    }
}

/// The manifest as written, before checks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    symbol: String,
    description: String,
    #[serde(default)]
    parameters: Option<RawParams>,
    entrypoint: String,
}

/// Parameters in the order written.
struct RawParams(Vec<(String, RawParam)>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    description: Option<String>,
}

impl RawManifest {
    fn check(self) -> Result<Manifest, String> {
        if !is_symbol(&self.symbol) {
            return Err(format!(
                "symbol '{}' is not a valid step name (use letters, digits, '_' and '-', \
                 starting with a letter or '_')",
                self.symbol
            ));
        }
        if BUILTIN_SYMBOLS.contains(&self.symbol.as_str()) {
            return Err(format!("symbol '{}' is a built-in step", self.symbol));
        }
        if self.description.trim().is_empty() {
            return Err("description is empty".into());
        }
        let mut parameters = Vec::new();
        for (name, raw) in self.parameters.map(|p| p.0).unwrap_or_default() {
            if !is_symbol(&name) {
                return Err(format!("parameter '{name}' is not a valid name"));
            }
            if parameters.iter().any(|p: &Parameter| p.name == name) {
                return Err(format!("parameter '{name}' is listed twice"));
            }
            let Some(kind) = ParamType::parse(&raw.kind) else {
                return Err(format!(
                    "parameter '{name}' has unknown type '{}' (expected string, number, bool or list)",
                    raw.kind
                ));
            };
            parameters.push(Parameter {
                name,
                kind,
                required: raw.required,
                description: raw.description,
            });
        }
        Ok(Manifest {
            symbol: self.symbol,
            description: self.description,
            parameters,
            entrypoint: self.entrypoint,
        })
    }
}

impl<'de> Deserialize<'de> for RawParams {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ParamsVisitor;

        impl<'de> Visitor<'de> for ParamsVisitor {
            type Value = RawParams;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map from parameter names to {type, required, description}")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawParams, A::Error> {
                let mut params = Vec::new();
                while let Some((name, param)) = map.next_entry::<String, RawParam>()? {
                    params.push((name, param));
                }
                Ok(RawParams(params))
            }
        }

        deserializer.deserialize_map(ParamsVisitor)
    }
}

fn read_capped(path: &Path) -> Result<String, ManifestError> {
    let read_err = |source| ManifestError::Read {
        path: path.to_owned(),
        source,
    };
    let file = fs::File::open(path).map_err(read_err)?;
    let mut text = String::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ManifestError::Invalid {
            path: path.to_owned(),
            problem: format!("larger than {MAX_MANIFEST_BYTES} bytes"),
        });
    }
    Ok(text)
}

fn check_entrypoint(dir: &Path, entrypoint: &str) -> Result<(), String> {
    let rel = Path::new(entrypoint);
    let inside = !entrypoint.is_empty()
        && rel
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !inside {
        return Err(format!(
            "entrypoint '{entrypoint}' must be a relative path inside the package"
        ));
    }
    let path = dir.join(rel);
    let meta = fs::metadata(&path)
        .map_err(|e| format!("entrypoint '{entrypoint}' cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err(format!("entrypoint '{entrypoint}' is not a file"));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!(
            "entrypoint '{entrypoint}' is not executable (chmod +x it)"
        ));
    }
    Ok(())
}

fn is_symbol(text: &str) -> bool {
    let bytes = text.as_bytes();
    let Some(&first) = bytes.first() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == b'_')
        && bytes.iter().enumerate().all(|(i, &b)| {
            b.is_ascii_alphanumeric()
                || b == b'_'
                || (b == b'-'
                    && bytes
                        .get(i + 1)
                        .is_some_and(|&n| n.is_ascii_alphanumeric() || n == b'_'))
        })
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use serde_json::json;

    use super::*;

    const GOOD: &str = "\
symbol: greet
description: Greets someone.
parameters:
  name:
    type: string
    required: true
    description: Who to greet.
  times:
    type: number
  loud:
    type: bool
entrypoint: bin/run
";

    fn package_dir(manifest: &str, executable: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(MANIFEST_FILE), manifest).expect("write manifest");
        fs::create_dir(dir.path().join("bin")).expect("mkdir");
        let run = dir.path().join("bin/run");
        fs::write(&run, "#!/bin/sh\n").expect("write entrypoint");
        let mode = if executable { 0o755 } else { 0o644 };
        fs::set_permissions(&run, fs::Permissions::from_mode(mode)).expect("chmod");
        dir
    }

    fn error(manifest: &str) -> String {
        let dir = package_dir(manifest, true);
        let err = load(dir.path()).expect_err("bad manifest");
        let text = err.to_string();
        let path = dir.path().join(MANIFEST_FILE);
        assert!(text.starts_with(&path.display().to_string()), "{text}");
        text[path.display().to_string().len()..].to_string()
    }

    fn step(args: Vec<Value>, kwargs: &[(&str, Value)]) -> Step {
        Step {
            symbol: "greet".into(),
            args,
            kwargs: kwargs
                .iter()
                .map(|(k, v)| ((*k).to_string(), v.clone()))
                .collect(),
            block: vec![],
        }
    }

    #[test]
    fn a_good_manifest_loads_with_parameters_in_order() {
        let dir = package_dir(GOOD, true);
        let package = load(dir.path()).expect("loads");
        assert_eq!(package.symbol(), "greet");
        let names: Vec<&str> = package
            .manifest()
            .parameters
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["name", "times", "loud"]);
        assert!(package.manifest().parameters[0].required);
        assert!(!package.manifest().parameters[1].required);
        assert_eq!(package.entrypoint(), dir.path().join("bin/run"));
    }

    #[test]
    fn bad_manifests_name_the_file_and_the_problem() {
        assert_eq!(
            error(&GOOD.replace("type: number", "type: integer")),
            ": parameter 'times' has unknown type 'integer' (expected string, number, bool or list)"
        );
        let typo = error(&GOOD.replace("entrypoint:", "entrypiont:"));
        assert!(typo.contains("unknown field `entrypiont`"), "{typo}");
        assert!(typo.contains("line 12"), "{typo}");
        let missing = error("symbol: greet\nentrypoint: bin/run\n");
        assert!(missing.contains("missing field `description`"), "{missing}");
        assert_eq!(
            error(&GOOD.replace("symbol: greet", "symbol: sh")),
            ": symbol 'sh' is a built-in step"
        );
        assert!(
            error(&GOOD.replace("symbol: greet", "symbol: 'no spaces'"))
                .contains("not a valid step name")
        );
        assert_eq!(
            error(&GOOD.replace("entrypoint: bin/run", "entrypoint: ../run")),
            ": entrypoint '../run' must be a relative path inside the package"
        );
        assert!(
            error(&GOOD.replace("entrypoint: bin/run", "entrypoint: bin/nope"))
                .starts_with(": entrypoint 'bin/nope' cannot be read")
        );
        let yaml = error("symbol: [greet\n");
        assert!(yaml.contains("line"), "{yaml}");
    }

    #[test]
    fn a_non_executable_entrypoint_is_refused() {
        let dir = package_dir(GOOD, false);
        let err = load(dir.path()).expect_err("not executable").to_string();
        assert!(
            err.ends_with("entrypoint 'bin/run' is not executable (chmod +x it)"),
            "{err}"
        );
    }

    #[test]
    fn load_dir_reads_every_package_and_refuses_duplicates() {
        let root = tempfile::tempdir().expect("tempdir");
        for (name, symbol) in [("b", "second"), ("a", "first")] {
            let pkg = package_dir(
                &GOOD.replace("symbol: greet", &format!("symbol: {symbol}")),
                true,
            );
            fs::rename(pkg.path(), root.path().join(name)).expect("move");
        }
        fs::create_dir(root.path().join("not-a-package")).expect("mkdir");
        let symbols: Vec<String> = load_dir(root.path())
            .expect("loads")
            .iter()
            .map(|p| p.symbol().to_owned())
            .collect();
        assert_eq!(symbols, ["first", "second"]);

        let pkg = package_dir(&GOOD.replace("symbol: greet", "symbol: first"), true);
        fs::rename(pkg.path(), root.path().join("c")).expect("move");
        let err = load_dir(root.path()).expect_err("duplicate").to_string();
        assert!(err.starts_with("step 'first' is defined twice"), "{err}");

        let single = package_dir(GOOD, true);
        assert_eq!(load_dir(single.path()).expect("loads").len(), 1);
    }

    #[test]
    fn arguments_are_bound_by_position_and_by_name() {
        let dir = package_dir(GOOD, true);
        let package = load(dir.path()).expect("loads");
        let args = package
            .bind(&step(
                vec!["world".into(), json!(3)],
                &[("loud", json!(true))],
            ))
            .expect("binds");
        assert_eq!(
            json!(args),
            json!({"name": "world", "times": 3, "loud": true})
        );
        let args = package
            .bind(&step(vec![], &[("name", json!("x"))]))
            .expect("binds");
        assert_eq!(json!(args), json!({"name": "x"}));
    }

    #[test]
    fn bad_arguments_are_refused_with_the_reason() {
        let dir = package_dir(GOOD, true);
        let package = load(dir.path()).expect("loads");
        let err = |args, kwargs: &[(&str, Value)]| {
            package
                .bind(&step(args, kwargs))
                .expect_err("refused")
                .to_string()
        };
        assert_eq!(err(vec![], &[]), "'greet' needs 'name' (a string)");
        assert_eq!(
            err(vec![json!(1)], &[]),
            "'greet' expects a string for 'name', got a number"
        );
        assert_eq!(
            err(vec!["a".into()], &[("loud", json!("yes"))]),
            "'greet' expects a boolean for 'loud', got a string"
        );
        assert_eq!(
            err(vec!["a".into()], &[("name", json!("b"))]),
            "'greet' gets 'name' twice"
        );
        assert_eq!(
            err(vec!["a".into()], &[("colour", json!("b"))]),
            "'greet' has no parameter 'colour'"
        );
        assert_eq!(
            err(vec!["a".into(), json!(1), json!(true), json!(4)], &[]),
            "'greet' takes at most 3 positional argument(s), got 4"
        );
        let mut with_block = step(vec!["a".into()], &[]);
        with_block.block.push(step(vec![], &[]));
        assert_eq!(
            package.bind(&with_block).expect_err("block").to_string(),
            "'greet' takes no block of steps"
        );
    }

    #[test]
    fn the_spec_lets_the_planner_check_types_and_names() {
        let dir = package_dir(GOOD, true);
        let spec = load(dir.path()).expect("loads").spec();
        assert_eq!(spec.symbol, "greet");
        assert_eq!(spec.block, BlockRule::Forbidden);
        let positional: Vec<ParamKind> = spec
            .params
            .iter()
            .filter(|p| p.name.is_none())
            .map(|p| p.kind)
            .collect();
        assert_eq!(
            positional,
            [ParamKind::String, ParamKind::Number, ParamKind::Bool]
        );
        let named: Vec<&str> = spec
            .params
            .iter()
            .filter_map(|p| p.name.as_deref())
            .collect();
        assert_eq!(named, ["name", "times", "loud"]);
    }
}
